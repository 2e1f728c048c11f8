//! Training for ward: gradients over the ward graph IR, as MXNet 1.9.1 computes them.
//!
//! This crate starts with the reference gradients ([`grad`]): reverse-mode
//! differentiation of an IR graph on the reference interpreter's `f64` arrays, one rule
//! per operator next to its family, each checked against MXNet 1.9.1's autograd on the
//! one-operator cases of `tests/fixtures/grads/` (`tools/make_grad_fixtures.py`). They
//! define the numbers a fast training backend must reproduce, as the interpreter does for
//! inference. An operator without an exact rule is refused before anything runs, naming
//! the node ([`grad::check_differentiable`]).
//!
//! [`data`] reads training data (MNIST IDX, CSV, `.npy`, RecordIO images) as untrusted
//! input, with limits, and makes shuffled, augmented batches from the run's random stream.

pub mod data;
pub mod grad;

pub use grad::{backward, check_differentiable, forward, GradError, Gradients};
