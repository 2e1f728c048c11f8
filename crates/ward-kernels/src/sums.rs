//! Sums of `f32` data in `f64` over eight lanes, compiled for AVX-512 where the CPU has
//! it: a single running `f64` sum is a chain of dependent additions (one element per 3
//! cycles), which made BatchNorm's statistics 4–5× MXNet's time, and the workspace's
//! baseline target (x86-64 with SSE2) gives two lanes a vector where AVX-512 gives eight.

#![allow(
    unsafe_code,
    reason = "calling the AVX-512 instance of the sum, a `#[target_feature]` function, once the feature is detected"
)]

/// Lanes of [`pair_sums`]: one 512-bit vector of `f64`.
const LANES: usize = 8;

/// `(Σ f(a, b), Σ g(a, b))` over the pairs of `a` and `b` (slices of equal length, taken
/// in order), accumulated in `f64` over eight lanes that are added at the end. The order
/// of the additions is fixed by the slices' lengths alone, the same with or without
/// AVX-512 (Rust never fuses a multiply and an add on its own), so the result is too.
pub fn pair_sums<'a>(
    pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    f: impl Fn(f32, f32) -> f64,
    g: impl Fn(f32, f32) -> f64,
) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (detected just above), the only requirement of
        // `pair_sums_avx512`, which is the portable sum compiled with that feature.
        return unsafe { pair_sums_avx512(pairs, f, g) };
    }
    pair_sums_portable(pairs, f, g)
}

/// [`pair_sums_portable`] compiled with AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn pair_sums_avx512<'a>(
    pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    f: impl Fn(f32, f32) -> f64,
    g: impl Fn(f32, f32) -> f64,
) -> (f64, f64) {
    pair_sums_portable(pairs, f, g)
}

#[inline(always)]
fn pair_sums_portable<'a>(
    pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    f: impl Fn(f32, f32) -> f64,
    g: impl Fn(f32, f32) -> f64,
) -> (f64, f64) {
    let mut first = [0.0f64; LANES];
    let mut second = [0.0f64; LANES];
    let (mut first_tail, mut second_tail) = (0.0f64, 0.0f64);
    for (a, b) in pairs {
        let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        for (&x, &y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
            first_tail += f(x, y);
            second_tail += g(x, y);
        }
        for (a, b) in a_chunks.zip(b_chunks) {
            for lane in 0..LANES {
                let (x, y) = (a.get(lane).copied(), b.get(lane).copied());
                if let (Some(x), Some(y), Some(s), Some(t)) =
                    (x, y, first.get_mut(lane), second.get_mut(lane))
                {
                    *s += f(x, y);
                    *t += g(x, y);
                }
            }
        }
    }
    (
        first.iter().sum::<f64>() + first_tail,
        second.iter().sum::<f64>() + second_tail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_sums_are_the_sums() {
        let a: Vec<f32> = (0..1_003).map(|i| (i % 17) as f32 * 0.25 - 2.0).collect();
        let b: Vec<f32> = (0..1_003).map(|i| (i % 5) as f32 - 1.0).collect();
        let pairs = || a.chunks(101).zip(b.chunks(101));
        let (s, t) = pair_sums(
            pairs(),
            |x, _| f64::from(x),
            |x, y| f64::from(x) * f64::from(y),
        );
        let want_s: f64 = a.iter().map(|&x| f64::from(x)).sum();
        let want_t: f64 = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        // Every term is a multiple of 1/4 below 2¹⁰: the sums are exact in any order.
        assert_eq!((s, t), (want_s, want_t));
        // The portable instance sums in the same order as the dispatched one.
        let inexact = |x: f32, y: f32| f64::from(x) / 3.0 + f64::from(y) / 7.0;
        assert_eq!(
            pair_sums(pairs(), inexact, |x, _| f64::from(x).sqrt())
                .0
                .to_bits(),
            pair_sums_portable(pairs(), inexact, |x, _| f64::from(x).sqrt())
                .0
                .to_bits()
        );
    }
}
