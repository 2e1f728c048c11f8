//! ward-kernels' integration tests: each kernel against the reference interpreter on
//! random geometries, and each gradient as the exact adjoint of its forward map.

// Test code may panic on what it set up itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod conv;
mod dense;
mod depthwise;
mod matmul;
mod planar;
mod pool;
mod winograd;

use proptest::prelude::Rng;
use proptest::test_runner::TestRng;

/// Values in [-1, 1) from the test's RNG.
pub fn random_values(rng: &mut TestRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0)
        .collect()
}

/// A ChaCha stream from a proptest-drawn seed, so that each case's data is reproducible.
pub fn seeded_rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &bytes)
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// `|a − b| ≤ tol · max(1, |b|)` elementwise.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}
