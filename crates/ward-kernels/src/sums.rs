//! BatchNorm's sums of `f32` data, in `f64` over eight lanes, with AVX-512 instructions
//! where the CPU has them: a single running `f64` sum is a chain of dependent additions
//! (one element per 3 cycles), which made BatchNorm's statistics 4–5× MXNet's time, and
//! the workspace's baseline target (x86-64 with SSE2) left the lane loops at one or two
//! values a vector.
//!
//! Each sum has one definition of its order: element `i` of a slice's first
//! `8·⌊len/8⌋` values goes to lane `i mod 8`, the rest to a tail, every slice in turn; at
//! the end the lanes are added in order, then the tail. The AVX-512 instance and the
//! portable one follow it operation for operation (no fused multiply-adds), so both give
//! the same bits.

#![allow(
    unsafe_code,
    reason = "AVX-512 instances of the sums, run once the feature is detected; their vector loads read whole 8-value chunks of the slices they are given"
)]

/// Lanes of the sums: one 512-bit vector of `f64`.
const LANES: usize = 8;

/// The lanes and the tail, added in the one order.
fn total(lanes: [f64; LANES], tail: f64) -> f64 {
    lanes.iter().sum::<f64>() + tail
}

/// `Σ x` over the slices.
pub fn sum<'a>(slices: impl Iterator<Item = &'a [f32]>) -> f64 {
    sums_of(slices.map(|s| (s, s)), Kind::Sum).0
}

/// `Σ (x − center)²` over the slices.
pub fn squared_deviations<'a>(slices: impl Iterator<Item = &'a [f32]>, center: f64) -> f64 {
    sums_of(slices.map(|s| (s, s)), Kind::SquaredDeviations(center)).0
}

/// `(Σ dy, Σ dy·x̂)` over pairs of slices `(dy, x)` of equal length, where `x̂ = (x −
/// mean)·inv_std` is computed in `f32`: BatchNorm's gradient sums.
pub fn gradient_sums<'a>(
    pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    mean: f32,
    inv_std: f32,
) -> (f64, f64) {
    sums_of(pairs, Kind::Gradient { mean, inv_std })
}

/// Which sum [`sums_of`] takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Sum,
    SquaredDeviations(f64),
    Gradient { mean: f32, inv_std: f32 },
}

fn sums_of<'a>(pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>, kind: Kind) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (detected just above), the only requirement of
        // `sums_avx512`.
        return unsafe { sums_avx512(pairs, kind) };
    }
    sums_portable(pairs, kind)
}

/// One element's terms of the two sums.
#[inline(always)]
fn terms(kind: Kind, a: f32, b: f32) -> (f64, f64) {
    match kind {
        Kind::Sum => (f64::from(a), 0.0),
        Kind::SquaredDeviations(center) => {
            let d = f64::from(a) - center;
            (d * d, 0.0)
        }
        Kind::Gradient { mean, inv_std } => {
            let xhat = (b - mean) * inv_std;
            (f64::from(a), f64::from(a) * f64::from(xhat))
        }
    }
}

/// Adds the terms of the values past a slice's last whole chunk to the tail sums, in
/// order: the same code for every instance.
#[inline(always)]
fn add_tail(kind: Kind, a: &[f32], b: &[f32], tail: &mut (f64, f64)) {
    for (&x, &y) in a.iter().zip(b) {
        let (s, t) = terms(kind, x, y);
        tail.0 += s;
        tail.1 += t;
    }
}

fn sums_portable<'a>(
    pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    kind: Kind,
) -> (f64, f64) {
    let (mut first, mut second) = ([0.0f64; LANES], [0.0f64; LANES]);
    let mut tail = (0.0f64, 0.0f64);
    for (a, b) in pairs {
        let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        add_tail(kind, a_chunks.remainder(), b_chunks.remainder(), &mut tail);
        for (a, b) in a_chunks.zip(b_chunks) {
            let lanes = first.iter_mut().zip(second.iter_mut());
            for ((s, t), (&x, &y)) in lanes.zip(a.iter().zip(b)) {
                let (u, v) = terms(kind, x, y);
                *s += u;
                *t += v;
            }
        }
    }
    (total(first, tail.0), total(second, tail.1))
}

/// [`sums_portable`] in AVX-512 instructions, the same operations in the same order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sums_avx512<'a>(pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>, kind: Kind) -> (f64, f64) {
    use std::arch::x86_64::{
        _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_sub_ps, _mm512_add_pd,
        _mm512_cvtps_pd, _mm512_mul_pd, _mm512_set1_pd, _mm512_setzero_pd, _mm512_storeu_pd,
        _mm512_sub_pd,
    };
    let (mut first, mut second) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    let mut tail = (0.0f64, 0.0f64);
    for (a, b) in pairs {
        let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        add_tail(kind, a_chunks.remainder(), b_chunks.remainder(), &mut tail);
        for (a, b) in a_chunks.zip(b_chunks) {
            // SAFETY: `a` and `b` are chunks of exactly LANES = 8 values: each load reads
            // one whole chunk.
            let (x, y) = unsafe { (_mm256_loadu_ps(a.as_ptr()), _mm256_loadu_ps(b.as_ptr())) };
            match kind {
                Kind::Sum => first = _mm512_add_pd(first, _mm512_cvtps_pd(x)),
                Kind::SquaredDeviations(center) => {
                    let d = _mm512_sub_pd(_mm512_cvtps_pd(x), _mm512_set1_pd(center));
                    first = _mm512_add_pd(first, _mm512_mul_pd(d, d));
                }
                Kind::Gradient { mean, inv_std } => {
                    let xhat = _mm256_mul_ps(
                        _mm256_sub_ps(y, _mm256_set1_ps(mean)),
                        _mm256_set1_ps(inv_std),
                    );
                    let dy = _mm512_cvtps_pd(x);
                    first = _mm512_add_pd(first, dy);
                    second = _mm512_add_pd(second, _mm512_mul_pd(dy, _mm512_cvtps_pd(xhat)));
                }
            }
        }
    }
    let (mut lanes_first, mut lanes_second) = ([0.0f64; LANES], [0.0f64; LANES]);
    // SAFETY: each array holds LANES = 8 `f64`, one vector.
    unsafe {
        _mm512_storeu_pd(lanes_first.as_mut_ptr(), first);
        _mm512_storeu_pd(lanes_second.as_mut_ptr(), second);
    }
    (total(lanes_first, tail.0), total(lanes_second, tail.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_values as data;

    #[test]
    fn sums_are_the_sums() {
        let a: Vec<f32> = (0..1_003).map(|i| (i % 17) as f32 * 0.25 - 2.0).collect();
        let b: Vec<f32> = (0..1_003).map(|i| (i % 5) as f32 - 1.0).collect();
        // Every term is a multiple of 1/16 below 2¹²: the sums are exact in any order.
        let want: f64 = a.iter().map(|&x| f64::from(x)).sum();
        assert_eq!(sum(a.chunks(101)), want);
        let want: f64 = a.iter().map(|&x| (f64::from(x) - 0.5).powi(2)).sum();
        assert_eq!(squared_deviations(a.chunks(101), 0.5), want);
        let (s, t) = gradient_sums(b.chunks(101).zip(a.chunks(101)), 0.25, 2.0);
        let want_t: f64 = b
            .iter()
            .zip(&a)
            .map(|(&g, &x)| f64::from(g) * f64::from((x - 0.25) * 2.0))
            .sum();
        assert_eq!((s, t), (b.iter().map(|&g| f64::from(g)).sum(), want_t));
    }

    /// The dispatched instance (AVX-512 where the CPU has it) gives the portable one's
    /// bits on inexact data, slices of every length modulo 8.
    #[test]
    fn every_instance_sums_in_the_same_order() {
        let (a, b) = (data(5_000, 1), data(5_000, 2));
        let lengths = [1usize, 7, 8, 9, 15, 16, 17, 100, 784, 1_000];
        let slices = |v: &'static [f32]| {
            let mut at = 0;
            lengths.iter().map(move |&n| {
                let s = &v[at..at + n];
                at += n;
                s
            })
        };
        let (a, b): (&'static [f32], &'static [f32]) = (a.leak(), b.leak());
        for kind in [
            Kind::Sum,
            Kind::SquaredDeviations(0.3),
            Kind::Gradient {
                mean: 0.1,
                inv_std: 1.7,
            },
        ] {
            let got = sums_of(slices(a).zip(slices(b)), kind);
            let want = sums_portable(slices(a).zip(slices(b)), kind);
            assert_eq!(
                (got.0.to_bits(), got.1.to_bits()),
                (want.0.to_bits(), want.1.to_bits()),
                "{kind:?}"
            );
        }
    }
}
