//! ward's compute kernels: matrix products, 2-D convolution and pooling, forward and
//! backward, in `f32`, for the training engine (and later inference).
//!
//! Every function takes slices and a geometry, checks every length against the geometry
//! with checked arithmetic before touching memory, and returns a [`KernelError`] naming
//! the argument that does not fit. The `unsafe` code sits in [`matmul`] behind those
//! checks: the matrix-multiply crate's raw-pointer entry point, and `gemm`'s own AVX-512
//! kernel (called once the CPU feature is detected; its vector loads and stores read and
//! write inside checked slices).
//!
//! The meaning of each kernel is the reference interpreter's (`ward_graph::interp`); the
//! property tests hold each kernel to it on random shapes, strides, pads, dilations and
//! groups. Where MXNet's window rules are subtle (pooling's `full` convention, padding in
//! the divisor), the caller passes the windows the interpreter computes
//! ([`pool::Windows`]), so there is one definition of them.

pub mod conv;
mod error;
pub mod matmul;
pub mod pool;

pub use conv::Conv2d;
pub use error::KernelError;
pub use matmul::{MatMut, MatRef};
pub use pool::Windows;
