//! Element-wise maps of the training passes (BatchNorm's normalisation and its input
//! gradient, ReLU and its gradient, the sum of a residual join), each compiled from
//! one body for the workspace's baseline target (x86-64 with SSE2, four lanes and no
//! fused multiply-add), for AVX2 with FMA (eight lanes) and for AVX-512F (sixteen lanes),
//! chosen at run time (`per_isa!`). On the
//! baseline target these loops were compute-bound: a ResNet-18 step spent 12 ms in
//! BatchNorm and 6 ms in ReLU (docs/BENCHMARKS.md).
//!
//! The instances are the same Rust expressions, and Rust never fuses a multiply and an
//! add on its own, so they give the same bits.

#![allow(
    unsafe_code,
    reason = "the vector instances of each map are called once their features are detected; the instances are safe code"
)]

use crate::error::check_len;

const KERNEL: &str = "element-wise map";

/// One channel's BatchNorm constants: its batch statistics and its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Channel {
    pub mean: f32,
    pub inv_std: f32,
    pub gamma: f32,
    pub beta: f32,
}

/// Defines a public map ([`per_isa`]) that checks its slices' lengths against its
/// output's.
macro_rules! map {
    (
        $(#[$doc:meta])*
        pub fn $name:ident($out:ident: &mut [f32] $(, $input:ident: &[f32])* $(; $($param:ident: $ty:ty),+)?) $body:block
    ) => {
        per_isa! {
            $(#[$doc])*
            pub fn $name($out: &mut [f32] $(, $input: &[f32])* $($(, $param: $ty)+)?)
            check {
                $(check_len(KERNEL, stringify!($input), $input.len(), $out.len())?;)*
            }
            body $body
        }
    };
}

map! {
    /// BatchNorm's output for one plane of channel `c`: `y = (x − mean)·inv_std·gamma +
    /// beta`, evaluated left to right.
    pub fn normalize(y: &mut [f32], x: &[f32]; c: Channel) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = (x - c.mean) * c.inv_std * c.gamma + c.beta;
        }
    }
}

map! {
    /// BatchNorm's input gradient for one plane of channel `c` (its `beta` unused) from
    /// the channel's means of `dy` and of `dy·x̂`: `dx = gamma·inv_std·(dy − mean_dy − x̂·mean_dy_xhat)` with
    /// `x̂ = (x − mean)·inv_std`.
    pub fn normalize_grad(dx: &mut [f32], x: &[f32], dy: &[f32]; c: Channel, mean_dy: f32, mean_dy_xhat: f32) {
        let scale = c.gamma * c.inv_std;
        for ((d, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            let xhat = (x - c.mean) * c.inv_std;
            *d = scale * (dy - mean_dy - xhat * mean_dy_xhat);
        }
    }
}

map! {
    /// `y = max(x, 0)`, as `f32::max` (NaN gives 0).
    pub fn relu(y: &mut [f32], x: &[f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x.max(0.0);
        }
    }
}

map! {
    /// ReLU's input gradient: `dy` where `x > 0`, else 0.
    pub fn relu_grad(dx: &mut [f32], x: &[f32], dy: &[f32]) {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
            *d = if x > 0.0 { g } else { 0.0 };
        }
    }
}

map! {
    /// A numerically safe softmax of one row: `y = exp(x − max) / Σ exp(x − max)`, the
    /// maximum and the sum over sixteen lanes (so that the loops vectorise), the lanes'
    /// sums added in `f64`. NaN never wins the maximum, as it never wins `f32::max`.
    pub fn softmax(y: &mut [f32], x: &[f32]) {
        let mut highs = [f32::NEG_INFINITY; 16];
        let mut chunks = x.chunks_exact(16);
        for chunk in &mut chunks {
            for (h, &v) in highs.iter_mut().zip(chunk) {
                *h = if v > *h { v } else { *h };
            }
        }
        let max = highs
            .iter()
            .chain(chunks.remainder())
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        for (y, &x) in y.iter_mut().zip(x) {
            *y = crate::math::exp_nonpositive(x - max);
        }
        let mut lanes = [0.0f32; 16];
        let mut chunks = y.chunks_exact(16);
        for chunk in &mut chunks {
            lanes.iter_mut().zip(chunk).for_each(|(s, v)| *s += v);
        }
        let sum = lanes
            .iter()
            .chain(chunks.remainder())
            .map(|&v| f64::from(v))
            .sum::<f64>();
        let inv = (1.0 / sum) as f32;
        y.iter_mut().for_each(|y| *y *= inv);
    }
}

map! {
    /// `y += x`.
    pub fn add_assign(y: &mut [f32], x: &[f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += x;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::KernelError;

    use crate::test_values as data;

    /// Each map as the dispatched instance runs it (AVX-512 where the CPU has it) gives
    /// the bits of the scalar expression, on lengths around the vector widths, with NaN
    /// and signed zeros among the inputs.
    #[test]
    fn every_map_gives_the_scalar_expressions_bits() {
        for len in [0usize, 1, 15, 16, 17, 100, 1_037] {
            let mut x = data(len, 1);
            let dy = data(len, 2);
            for (i, special) in [f32::NAN, -0.0, 0.0, f32::INFINITY].into_iter().enumerate() {
                if let Some(v) = x.get_mut(i * 5) {
                    *v = special;
                }
            }
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let mut out = vec![7.0f32; len];

            let c = Channel {
                mean: 0.3,
                inv_std: 1.7,
                gamma: -0.9,
                beta: 0.25,
            };
            normalize(&mut out, &x, c).unwrap();
            let want: Vec<f32> = x.iter().map(|&x| (x - 0.3) * 1.7 * -0.9 + 0.25).collect();
            assert_eq!(bits(&out), bits(&want), "normalize, {len}");

            normalize_grad(&mut out, &x, &dy, c, 0.1, -0.2).unwrap();
            let want: Vec<f32> = x
                .iter()
                .zip(&dy)
                .map(|(&x, &g)| (-0.9f32 * 1.7) * (g - 0.1 - (x - 0.3) * 1.7 * -0.2))
                .collect();
            assert_eq!(bits(&out), bits(&want), "normalize_grad, {len}");

            relu(&mut out, &x).unwrap();
            let want: Vec<f32> = x.iter().map(|&x| x.max(0.0)).collect();
            assert_eq!(bits(&out), bits(&want), "relu, {len}");

            relu_grad(&mut out, &x, &dy).unwrap();
            let want: Vec<f32> = x
                .iter()
                .zip(&dy)
                .map(|(&x, &g)| if x > 0.0 { g } else { 0.0 })
                .collect();
            assert_eq!(bits(&out), bits(&want), "relu_grad, {len}");

            out.copy_from_slice(&dy);
            add_assign(&mut out, &x).unwrap();
            let want: Vec<f32> = dy.iter().zip(&x).map(|(&g, &x)| g + x).collect();
            assert_eq!(bits(&out), bits(&want), "add_assign, {len}");

            // The softmax against its baseline instance (bits), and against its sums
            // in f64 on the finite rows.
            out = crate::isa::same_on_every_isa("softmax", || {
                let mut out = vec![0.0f32; len];
                softmax(&mut out, &dy).unwrap();
                bits(&out)
            })
            .into_iter()
            .map(f32::from_bits)
            .collect();
            let max = dy
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let total: f64 = dy.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            for (&p, &v) in out.iter().zip(&dy) {
                let exact = (f64::from(v) - max).exp() / total;
                assert!((f64::from(p) - exact).abs() <= 1e-6 * exact.max(1e-30) + 1e-12);
            }
        }
    }

    #[test]
    fn a_slice_of_another_length_is_refused_and_nothing_is_written() {
        let mut out = vec![1.0f32; 4];
        let err = relu_grad(&mut out, &[1.0; 4], &[1.0; 3]).unwrap_err();
        assert_eq!(
            err,
            KernelError::Length {
                kernel: KERNEL,
                argument: "dy",
                expected: 4,
                got: 3
            }
        );
        assert_eq!(out, [1.0; 4]);
    }
}
