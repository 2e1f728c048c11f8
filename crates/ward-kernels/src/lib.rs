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
//! (depthwise convolution rows in masked AVX-512 registers), [`sums`] (BatchNorm's f64
//! sums in AVX-512 intrinsics beside portable code that gives the same bits), [`pool`]
//! (max pooling's vector instance), [`planar`] (one-group convolutions as products read
//! straight from NCHW planes, in AVX-512 tiles), [`winograd`] (3×3 stride-1 convolutions
//! by F(4×4, 3×3), its tile transforms in AVX-512 registers), [`pool_rows`] (the maximum of stride-2 windows along a row, for inference's max pools), and [`maps`] and [`cells`], loops compiled for
//! AVX-512 and for the baseline target from one body (`twice!`). The
//! AVX-512 kernels run once the CPU feature is detected; the forward passes on them give
//! the matrix crate's bits, and the gradients sum the same terms in another order.
//! Without AVX-512 the matrix crate runs every product.
//!
//! The meaning of each kernel is the reference interpreter's (`ward_graph::interp`); the
//! property tests hold each kernel to it on random shapes, strides, pads, dilations and
//! groups. Where MXNet's window rules are subtle (pooling's `full` convention, padding in
//! the divisor), the caller passes the windows the interpreter computes
//! ([`pool::Windows`]), so there is one definition of them.

/// Defines `pub fn $name(args) -> Result<(), KernelError>` that runs `check` (which
/// returns an error before anything is written), then `body` compiled for AVX-512F where
/// the CPU has it and for the workspace's baseline target otherwise: one source, two
/// instances. Rust never fuses a multiply and an add on its own, so both instances give
/// the same bits.
macro_rules! twice {
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
            if $crate::vector_instances() && std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (detected just above), the only
                // requirement of the instance compiled for it.
                unsafe { avx512($($arg),*) };
                return Ok(());
            }
            body($($arg),*);
            Ok(())
        }
    };
}

#[cfg(test)]
thread_local! {
    /// Set by a test to run [`twice`]'s baseline instances on its thread.
    static BASELINE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether [`twice`] may run its AVX-512 instances: always, but on a test's thread that
/// asked for the baseline ones ([`with_baseline_instances`]).
#[inline(always)]
fn vector_instances() -> bool {
    #[cfg(test)]
    {
        !BASELINE_ONLY.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        true
    }
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

/// Runs `f` with [`twice`]'s baseline instances on this thread, for a test to hold the
/// AVX-512 ones to their bits.
#[cfg(test)]
fn with_baseline_instances<R>(f: impl FnOnce() -> R) -> R {
    BASELINE_ONLY.with(|b| b.set(true));
    let r = f();
    BASELINE_ONLY.with(|b| b.set(false));
    r
}

pub mod cells;
pub mod conv;
pub mod dense;
pub mod depthwise;
pub mod direct;
mod error;
pub mod maps;
pub mod math;
pub mod matmul;
pub mod panels;
pub mod planar;
pub mod pool;
pub mod pool_rows;
pub mod sums;
pub mod winograd;

pub use conv::Conv2d;
pub use error::KernelError;
pub use matmul::{MatMut, MatRef};
pub use pool::Windows;
