//! The maximum of every window along one row at stride 2: the inner loop of max pooling
//! for inference (ward-exec folds a window's input rows into one row first, then takes
//! each output row from it here).
//!
//! At stride 2 a window's values are not contiguous, and a plain loop compiles to scalar
//! code: SqueezeNet's three 3×3 stride-2 pools took 0.51 ms at batch 1 against MXNet's
//! 0.10 ms. In AVX-512 two loads of 32 values give 16 windows' even and odd columns with
//! two permutes, and a third permute shifts the evens by one for a window's last column.

#![allow(
    unsafe_code,
    reason = "the AVX-512 and AVX2 row kernels are intrinsics, run once the CPU feature is detected, on windows checked against the row"
)]
#![allow(
    clippy::indexing_slicing,
    reason = "every window is checked against the row before the loops index it"
)]

use crate::error::KernelError;

const KERNEL: &str = "stride2_row_max";
const LANES: usize = 16;

/// `out[i]` = the maximum of `row[2i .. 2i + kernel]` (a kernel of 2 or 3): a window's
/// first value as is, then each later value only where it is greater, so a NaN after the
/// first never replaces the maximum (MXNet's comparison, and `vmaxps`'s with the running
/// maximum second). Every window must lie inside `row`.
pub fn stride2_row_max(row: &[f32], kernel: usize, out: &mut [f32]) -> Result<(), KernelError> {
    if !(2..=3).contains(&kernel) {
        return Err(KernelError::geometry(
            KERNEL,
            format!("a window of {kernel} columns; 2 or 3 are supported"),
        ));
    }
    let needed = match out.len() {
        0 => 0,
        n => (n - 1) * 2 + kernel,
    };
    if needed > row.len() {
        return Err(KernelError::Length {
            kernel: KERNEL,
            argument: "row",
            expected: needed,
            got: row.len(),
        });
    }
    match crate::Isa::current() {
        // SAFETY: the CPU has AVX-512F (detected); every window lies inside `row`
        // (checked above).
        #[cfg(target_arch = "x86_64")]
        crate::Isa::Avx512 => unsafe { stride2_avx512(row, kernel, out) },
        // SAFETY: the CPU has AVX2 (detected); every window lies inside `row`.
        #[cfg(target_arch = "x86_64")]
        crate::Isa::Avx2 => unsafe { stride2_avx2(row, kernel, out) },
        _ => windows_from(row, kernel, out, 0),
    }
    Ok(())
}

/// MXNet's comparison: a NaN never replaces the running maximum.
fn larger(max: f32, v: f32) -> f32 {
    if max < v {
        v
    } else {
        max
    }
}

/// The windows from `first` on, one by one.
fn windows_from(row: &[f32], kernel: usize, out: &mut [f32], first: usize) {
    for (i, o) in out.iter_mut().enumerate().skip(first) {
        let window = &row[2 * i..2 * i + kernel];
        *o = window[1..].iter().fold(window[0], |m, &v| larger(m, v));
    }
}

/// # Safety
/// The CPU must have AVX-512F, `kernel` is 2 or 3, and every window lies inside `row`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn stride2_avx512(row: &[f32], kernel: usize, out: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_loadu_ps, _mm512_max_ps, _mm512_permutex2var_ps, _mm512_set1_ps, _mm512_setr_epi32,
        _mm512_storeu_ps,
    };
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    // Lanes 1..16 of the first operand, then lane 0 of the second.
    let next = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    // 16 windows from 2i read row[2i .. 2i + 32], and with a third column row[2i + 32]:
    // inside `row` when the block's last window is.
    let mut i = 0;
    while i + LANES <= out.len() {
        let from = &row[2 * i..2 * i + 2 * LANES + kernel - 2];
        // SAFETY: `from` holds the 32 values the two loads read.
        let (a, b) = unsafe {
            (
                _mm512_loadu_ps(from.as_ptr()),
                _mm512_loadu_ps(from.as_ptr().add(LANES)),
            )
        };
        let first = _mm512_permutex2var_ps(a, evens, b);
        // `vmaxps(v, max)` gives `max` when either is NaN: `larger(max, v)`.
        let mut max = _mm512_max_ps(_mm512_permutex2var_ps(a, odds, b), first);
        if let Some(&last) = from.get(2 * LANES) {
            let third = _mm512_permutex2var_ps(first, next, _mm512_set1_ps(last));
            max = _mm512_max_ps(third, max);
        }
        let to = &mut out[i..i + LANES];
        // SAFETY: `to` holds the 16 values the store writes.
        unsafe { _mm512_storeu_ps(to.as_mut_ptr(), max) };
        i += LANES;
    }
    windows_from(row, kernel, out, i);
}

/// [`stride2_avx512`] in 8-lane registers: two loads of 8 give 8 windows' even and odd
/// columns by a shuffle within 128-bit halves and a permute of 64-bit pairs; a window's
/// third column is the next window's first, the evens shifted by one lane.
///
/// # Safety
/// The CPU must have AVX2, `kernel` is 2 or 3, and every window lies inside `row`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn stride2_avx2(row: &[f32], kernel: usize, out: &mut [f32]) {
    use std::arch::x86_64::{
        __m256, _mm256_blend_ps, _mm256_castpd_ps, _mm256_castps_pd, _mm256_loadu_ps,
        _mm256_max_ps, _mm256_permute4x64_pd, _mm256_permutevar8x32_ps, _mm256_set1_ps,
        _mm256_setr_epi32, _mm256_shuffle_ps, _mm256_storeu_ps,
    };
    const AVX2_LANES: usize = 8;
    // Lanes 0, 2 (or 1, 3) of each 128-bit half of `a`, then of `b`, put in row order.
    let split = |a: __m256, b: __m256, odd: bool| {
        let mixed = if odd {
            _mm256_shuffle_ps::<0xDD>(a, b)
        } else {
            _mm256_shuffle_ps::<0x88>(a, b)
        };
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(mixed)))
    };
    // 8 windows from 2i read row[2i .. 2i + 16], and with a third column row[2i + 16]:
    // inside `row` when the block's last window is.
    let mut i = 0;
    while i + AVX2_LANES <= out.len() {
        let from = &row[2 * i..2 * i + 2 * AVX2_LANES + kernel - 2];
        // SAFETY: `from` holds the 16 values the two loads read.
        let (a, b) = unsafe {
            (
                _mm256_loadu_ps(from.as_ptr()),
                _mm256_loadu_ps(from.as_ptr().add(AVX2_LANES)),
            )
        };
        let first = split(a, b, false);
        // `vmaxps(v, max)` gives `max` when either is NaN: `larger(max, v)`.
        let mut max = _mm256_max_ps(split(a, b, true), first);
        if let Some(&last) = from.get(2 * AVX2_LANES) {
            // The next window's first column: lanes 1..8 of `first`, then row[2i + 16].
            let shifted =
                _mm256_permutevar8x32_ps(first, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7));
            let third = _mm256_blend_ps::<0x80>(shifted, _mm256_set1_ps(last));
            max = _mm256_max_ps(third, max);
        }
        let to = &mut out[i..i + AVX2_LANES];
        // SAFETY: `to` holds the 8 values the store writes.
        unsafe { _mm256_storeu_ps(to.as_mut_ptr(), max) };
        i += AVX2_LANES;
    }
    windows_from(row, kernel, out, i);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::same_on_every_isa;
    use crate::test_values;

    /// Each window's maximum, computed the plain way.
    fn expected(row: &[f32], kernel: usize, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let w = &row[2 * i..2 * i + kernel];
                w[1..].iter().fold(w[0], |m, &v| larger(m, v))
            })
            .collect()
    }

    fn run(row: &[f32], kernel: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n];
        stride2_row_max(row, kernel, &mut out).unwrap();
        out
    }

    #[test]
    fn every_window_of_every_length_takes_its_maximum_with_the_same_bits_everywhere() {
        for kernel in [2, 3] {
            for len in [kernel, 17, 32, 33, 34, 35, 55, 111, 113, 200] {
                let mut row = test_values(len, len as u32 * 7 + kernel as u32);
                // NaNs (first in a window and later), signed zeros and infinities.
                for (i, v) in row.iter_mut().enumerate() {
                    match i % 23 {
                        3 => *v = f32::NAN,
                        8 => *v = -0.0,
                        9 => *v = 0.0,
                        14 => *v = f32::NEG_INFINITY,
                        _ => {}
                    }
                }
                let n = (len - kernel) / 2 + 1;
                let want = expected(&row, kernel, n);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let got = same_on_every_isa(&format!("kernel {kernel}, {len} columns"), || {
                    bits(&run(&row, kernel, n))
                });
                assert_eq!(got, bits(&want), "kernel {kernel}, {len} columns");
                // Fewer windows than the row holds.
                let some = n / 2;
                assert_eq!(bits(&run(&row, kernel, some)), bits(&want[..some]));
            }
        }
    }

    #[test]
    fn windows_past_the_row_and_other_kernels_are_refused() {
        let row = [1.0; 33];
        let mut out = [0.0; 17];
        assert_eq!(
            stride2_row_max(&row, 3, &mut out[..17]),
            Err(KernelError::Length {
                kernel: KERNEL,
                argument: "row",
                expected: 35,
                got: 33
            })
        );
        assert!(stride2_row_max(&row, 3, &mut out[..16]).is_ok());
        assert!(stride2_row_max(&row, 4, &mut out[..4]).is_err());
        assert!(stride2_row_max(&row, 1, &mut out[..4]).is_err());
        assert!(stride2_row_max(&[], 2, &mut []).is_ok());
    }
}
