//! ward's compute kernels, in `f32`, forward and backward, for the training engine (and
//! later inference): matrix products, 2-D convolution, fully connected layers, pooling,
//! BatchNorm's sums, the RNN cells and element-wise maps.
//!
//! Every function takes slices and a geometry, checks every length against the geometry
//! with checked arithmetic before touching memory, and returns a [`KernelError`] naming
//! the argument that does not fit. The `unsafe` code sits behind those checks:
//! [`matmul`] (the matrix-multiply crate's raw-pointer entry point, and `gemm`'s own
//! AVX-512 kernel for short products), [`panels`] (ward's AVX-512 product on panels,
//! whose `B` is produced a row piece at a time), [`direct`] (convolution tiles read
//! straight from the padded input, which also serve [`dense`]'s products), [`depthwise`]
//! (depthwise convolution rows in masked AVX-512 or AVX2 registers), [`sums`] (BatchNorm's f64
//! sums in AVX-512 intrinsics beside portable code that gives the same bits), [`pool`]
//! (max pooling's vector instance), [`planar`] (one-group convolutions as products read
//! straight from NCHW planes, in AVX-512 and AVX2 tiles), [`winograd`] (3×3 stride-1
//! convolutions by F(4×4, 3×3), its tile transforms in AVX-512 registers), [`pool_rows`]
//! (the maximum of stride-2 windows along a row, for inference's max pools, in AVX-512
//! and AVX2), and [`maps`] and [`cells`], loops compiled from one body for each
//! instruction set (`per_isa!`).
//!
//! Which instruction set runs is detected at run time ([`Isa`]): AVX-512F, AVX2 with
//! FMA, or the portable loops, which every vector instance matches bit for bit (the same
//! terms in the same order; a test runs each instance the CPU has against them). The
//! inference kernels (planar, Winograd, depthwise, the stride-2 rows) have all three;
//! the training engine's direct and panel kernels are AVX-512 only, and without it the
//! matrix crate runs those products. The forward passes on the direct kernels give the
//! matrix crate's bits, and the gradients sum the same terms in another order.
//!
//! The meaning of each kernel is the reference interpreter's (`ward_graph::interp`); the
//! property tests hold each kernel to it on random shapes, strides, pads, dilations and
//! groups. Where MXNet's window rules are subtle (pooling's `full` convention, padding in
//! the divisor), the caller passes the windows the interpreter computes
//! ([`pool::Windows`]), so there is one definition of them.

/// Defines `pub fn $name(args) -> Result<(), KernelError>` that runs `check` (which
/// returns an error before anything is written), then `body` compiled for the best
/// instruction set this thread may use ([`Isa::current`]): AVX-512F, AVX2 with FMA, or
/// the workspace's baseline target. One source, three instances. Rust never fuses a
/// multiply and an add on its own, and `f32::mul_add` is one correctly rounded operation
/// in every instance (an instruction with FMA, the C library's `fmaf` without), so all
/// three give the same bits.
macro_rules! per_isa {
    (
        $(#[$attr:meta])*
        pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) check $check:block body $body:block
    ) => {
        $(#[$attr])*
        pub fn $name($($arg: $ty),*) -> Result<(), $crate::KernelError> {
            $check
            #[inline(always)]
            #[allow(clippy::too_many_arguments, reason = "the public function's arguments")]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments, reason = "the public function's arguments")]
            fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments, reason = "the public function's arguments")]
            fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }
            match $crate::Isa::current() {
                // SAFETY: the CPU has AVX-512F (`Isa::current` detected it), the only
                // requirement of the instance compiled for it.
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: the CPU has AVX2 and FMA (detected), the instance's only
                // requirement.
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
            Ok(())
        }
    };
}

/// Inexact test values in [−10, 10], spread by a multiplicative hash of the index and
/// `seed`.
#[cfg(test)]
fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
            ((h >> 8) % 20_001) as f32 / 1_000.0 - 10.0
        })
        .collect()
}

pub mod cells;
pub mod conv;
pub mod dense;
pub mod depthwise;
pub mod direct;
mod error;
mod isa;
pub mod maps;
pub mod math;
pub mod matmul;
mod padded;
pub mod panels;
pub mod planar;
pub mod pool;
pub mod pool_rows;
pub mod sums;
pub mod winograd;

pub use conv::Conv2d;
pub use error::KernelError;
pub use isa::Isa;
pub use matmul::{MatMut, MatRef};
pub use pool::Windows;
