//! The reference interpreter's kernels: what each operator ward imports from MXNet 1.9.1
//! means, written as plain loops over [`Array`] (row-major `f64`).
//!
//! These functions define the numbers every backend must reproduce. They favour being
//! obviously right over being fast: no unsafe, no SIMD, no clever indexing, accumulation
//! in `f64`. Every function checks its arguments and returns a [`KernelError`] naming the
//! operator and what is wrong instead of panicking.
//!
//! Where MXNet 1.9.1 behaves in a way a reader would not guess (which variance BatchNorm
//! keeps, how max pooling treats NaN, what `mean` does with `axis=()`), the kernel's
//! documentation says so; each such claim was checked against the installed MXNet
//! 1.9.1 and is pinned by a fixture in `tests/fixtures/ops/` (see
//! `tools/make_op_fixtures.py`).
//!
//! The kernels know nothing of the graph IR: attributes arrive as plain arguments.

pub mod activation;
pub mod anchor;
pub mod array;
pub mod conv;
pub mod deform;
pub mod dense;
pub mod detection;
pub mod elementwise;
pub mod embedding;
pub mod eval;
pub mod index;
pub mod loss;
pub mod norm;
pub mod order;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod rnn;
pub mod roi;
pub mod sequence;
pub mod shape;

#[cfg(test)]
mod mxnet_fixtures;

pub use array::Array;

/// What a kernel refuses: the operator and the reason, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {reason}")]
pub struct KernelError {
    pub op: &'static str,
    pub reason: String,
}

impl KernelError {
    pub fn new(op: &'static str, reason: impl Into<String>) -> Self {
        KernelError {
            op,
            reason: reason.into(),
        }
    }
}

/// The result of every kernel.
pub type KResult<T> = Result<T, KernelError>;

/// Resolves a possibly negative axis against `rank` (MXNet's convention: −1 is the last).
pub fn resolve_axis(op: &'static str, axis: i64, rank: usize) -> KResult<usize> {
    let r = i64::try_from(rank).map_err(|_| KernelError::new(op, "rank too large"))?;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(KernelError::new(
            op,
            format!("axis {axis} is out of range for rank {rank}"),
        ));
    }
    usize::try_from(a).map_err(|_| KernelError::new(op, format!("axis {axis} is out of range")))
}

/// Helpers shared by the kernels' unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use super::Array;

    /// Deterministic values in [−1, 1) from a small linear congruential generator.
    pub fn pseudo_random(shape: Vec<usize>, seed: u64) -> Array {
        let n: usize = shape.iter().product();
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let data = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect();
        Array::new(shape, data).unwrap()
    }

    /// 0, 1, 2, … in row-major order.
    pub fn ramp(shape: Vec<usize>) -> Array {
        let n: usize = shape.iter().product();
        Array::new(shape, (0..n).map(|v| v as f64).collect()).unwrap()
    }

    /// Same shape and every value within `tol` (NaNs must match NaNs).
    pub fn assert_close(got: &Array, want: &Array, tol: f64) {
        assert_eq!(got.shape, want.shape, "shapes differ");
        for (i, (a, b)) in got.data.iter().zip(&want.data).enumerate() {
            let same = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol;
            assert!(same, "element {i}: {a} vs {b}");
        }
    }
}
