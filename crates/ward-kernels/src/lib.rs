//! ward's compute kernels: matrix products, 2-D convolution and pooling, forward and
//! backward, in `f32`, for the training engine (and later inference).
//!
//! Every function takes slices and a geometry, checks every length against the geometry
//! with checked arithmetic before touching memory, and returns a [`KernelError`] naming
//! the argument that does not fit. The `unsafe` code sits behind those checks in three
//! modules: [`matmul`] (the matrix-multiply crate's raw-pointer entry point, and `gemm`'s
//! own AVX-512 kernel for short products), [`panels`] (ward's AVX-512 product on panels,
//! whose `B` is produced a row piece at a time, so a convolution's patches are never
//! written out whole) and [`direct`] (convolution tiles read straight from the padded
//! input), plus [`sums`], BatchNorm's f64 sums in AVX-512 intrinsics beside portable
//! code that gives the same bits, and [`maps`], element-wise loops compiled for AVX-512
//! and for the baseline target from one body. The AVX-512 kernels run once the CPU feature is
//! detected; the forward pass on them gives the matrix crate's bits, and the gradients
//! sum the same terms in another order. Without AVX-512 the matrix crate runs
//! everything.
//!
//! The meaning of each kernel is the reference interpreter's (`ward_graph::interp`); the
//! property tests hold each kernel to it on random shapes, strides, pads, dilations and
//! groups. Where MXNet's window rules are subtle (pooling's `full` convention, padding in
//! the divisor), the caller passes the windows the interpreter computes
//! ([`pool::Windows`]), so there is one definition of them.

pub mod conv;
pub mod dense;
pub mod direct;
mod error;
pub mod maps;
pub mod matmul;
pub mod panels;
pub mod pool;
pub mod sums;

pub use conv::Conv2d;
pub use error::KernelError;
pub use matmul::{MatMut, MatRef};
pub use pool::Windows;
