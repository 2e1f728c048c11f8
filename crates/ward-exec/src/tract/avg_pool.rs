//! Average pooling of float32 NCHW tensors over two spatial axes, in place of tract's.
//!
//! tract's optimised sum pool took 14.8 ms of Inception v3's 85 at batch 1 on one thread,
//! 26× MXNet's time for its ten 3×3 average pools (docs/BENCHMARKS.md). This kernel works
//! in whole rows, which vectorise: it sums an output row's input rows into one row, sums
//! every window of that row at stride 1 with one pass per tap, then takes every
//! stride-th sum and divides it, summing the windows that overlap the padding one by one.
//! A pool whose output has the input's size at stride 1 runs the same passes over the
//! whole zero-padded plane flattened, which vectorise where its rows are short, and
//! divides each output by its own divisor.
//! The divisor is the kernel's area, or with `count_include_pad` off the window's cells
//! inside the input, as tract's `SumPool` (ward's lowering then scales by MXNet's own
//! divisors where they differ). Safe Rust: the slices carry their bounds.

#![allow(
    clippy::indexing_slicing,
    reason = "window loops over shapes tract inferred and checked at plan time"
)]

use std::ops::Range;

use tract_onnx::prelude::{tvec, DatumType, TValue, TVec, TractResult, TypedFact, TypedModel};
use tract_onnx::tract_core::internal::{
    as_op, ensure, op_as_typed_op, op_out_of_plan, DatumTypeExt, EvalContext, EvalOp, IntoTValue,
    Op, StaticName, TypedOp,
};
use tract_onnx::tract_core::ops::cnn::SumPool;

use super::pool_windows::{self, Inside, PoolWindows};

/// A 2-D average (or sum) pool with its geometry fixed for one input shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PlaneAvgPool {
    windows: PoolWindows,
    /// Whether sums are divided (by the kernel's area, or the cells inside the input).
    normalize: bool,
    count_include_pad: bool,
}

/// Replaces every tract `SumPool` of the model that this kernel covers: float32, NCHW, two
/// spatial axes, no dilation, explicit padding without ONNX's ceil mode, a concrete input
/// shape. Any other keeps tract's own op.
pub(crate) fn adopt(model: &mut TypedModel) -> TractResult<()> {
    pool_windows::swap(model, PlaneAvgPool::covering)
}

impl PlaneAvgPool {
    fn covering(pool: &SumPool, fact: &TypedFact) -> TractResult<Option<PlaneAvgPool>> {
        let output = pool.output_facts(&[fact])?.remove(0);
        let windows = PoolWindows::covering(&pool.pool_spec, fact, &output);
        Ok(windows.map(|windows| PlaneAvgPool {
            windows,
            normalize: pool.normalize,
            count_include_pad: pool.count_include_pad,
        }))
    }

    /// What a window's sum is divided by: the kernel's area, or its cells inside the
    /// input; 1 for a sum pool.
    fn divisor(&self, rows: usize, cols: usize) -> f32 {
        match (self.normalize, self.count_include_pad) {
            (false, _) => 1.0,
            (true, true) => (self.windows.kernel[0] * self.windows.kernel[1]) as f32,
            (true, false) => (rows * cols) as f32,
        }
    }

    /// Whether the output has the input's size at stride 1 (Inception's 3×3 average pools
    /// padded by 1), which [`Self::pool_same_plane`] runs over the whole plane at once.
    fn same_size(&self) -> bool {
        let g = &self.windows;
        g.stride == [1, 1] && g.output == [g.input[2], g.input[3]]
    }

    /// Pools one plane of a [`Self::same_size`] pool with whole-plane passes, which
    /// vectorise even where rows are short (17 columns): the plane is copied into the
    /// middle of `padded` (zeros around it, of the padded size), each position's sum along
    /// its row's window is taken with one pass per column tap over the flattened padded
    /// plane (into `sums`), then the sum of those down the window's rows with one pass
    /// per row tap; the passes wrap from one row into the next only in columns no output
    /// reads. Each output is then divided by its window's divisor (`divisors`).
    fn pool_same_plane(
        &self,
        input: &[f32],
        output: &mut [f32],
        padded: &mut [f32],
        sums: &mut [f32],
        divisors: &[f32],
    ) {
        let w = self.windows.input[3];
        let [kh, kw] = self.windows.kernel;
        let [ph, pw] = self.windows.pad_before;
        let wide = w + kw - 1;
        for (row, from) in padded
            .chunks_exact_mut(wide)
            .skip(ph)
            .zip(input.chunks_exact(w))
        {
            row[pw..pw + w].copy_from_slice(from);
        }
        // sums[j] = Σ_kx padded[j + kx].
        let len = padded.len() + 1 - kw;
        let (row_sums, rest) = sums.split_at_mut(len);
        rest.fill(0.0);
        row_sums.copy_from_slice(&padded[..len]);
        for kx in 1..kw {
            for (s, &v) in row_sums.iter_mut().zip(&padded[kx..]) {
                *s += v;
            }
        }
        // The window sum of output (oy, ox) = Σ_ky sums[(oy + ky)·wide + ox].
        for (oy, (out, divisors)) in output
            .chunks_exact_mut(w)
            .zip(divisors.chunks_exact(w))
            .enumerate()
        {
            out.copy_from_slice(&sums[oy * wide..][..w]);
            for ky in 1..kh {
                for (o, &v) in out.iter_mut().zip(&sums[(oy + ky) * wide..]) {
                    *o += v;
                }
            }
            for (o, &d) in out.iter_mut().zip(divisors) {
                *o /= d;
            }
        }
    }

    /// Pools one channel plane. `columns` holds each output column's window; `folded` and
    /// `sliding` are scratch of one input row.
    fn pool_plane(
        &self,
        input: &[f32],
        output: &mut [f32],
        columns: &[Range<usize>],
        folded: &mut [f32],
        sliding: &mut [f32],
    ) {
        let g = &self.windows;
        let width = g.input[3];
        let [kernel_width, stride] = [g.kernel[1], g.stride[1]];
        let Inside {
            first: first_inside,
            count: inside,
            start: first_start,
        } = g.inside();
        for (oy, out_row) in output.chunks_exact_mut(g.output[1]).enumerate() {
            let window = g.window(0, oy);
            let rows = window.len();
            folded.fill(0.0);
            for row in input.chunks_exact(width).skip(window.start).take(rows) {
                for (f, &v) in folded.iter_mut().zip(row) {
                    *f += v;
                }
            }
            let (before, rest) = out_row.split_at_mut(first_inside);
            let (middle, after) = rest.split_at_mut(inside);
            if let [out] = middle {
                // One window inside (a global pool): its sum in the passes' order, without
                // a pass per tap over one value (SqueezeNet's 13 × 13 global pool took
                // 4.6× MXNet's time that way).
                let window = &folded[first_start..][..kernel_width];
                let sum = window[1..].iter().fold(window[0], |sum, &v| sum + v);
                *out = sum / self.divisor(rows, kernel_width);
            } else if !middle.is_empty() {
                // Every window's sum at stride 1, one whole-row pass per tap, then every
                // stride-th of those.
                let row = &folded[first_start..];
                let span = ((inside - 1) * stride + 1).min(row.len());
                let sliding = &mut sliding[..span];
                sliding.copy_from_slice(&row[..span]);
                for tap in 1..kernel_width {
                    for (s, &v) in sliding.iter_mut().zip(&row[tap..]) {
                        *s += v;
                    }
                }
                let divisor = self.divisor(rows, kernel_width);
                for (i, out) in middle.iter_mut().enumerate() {
                    *out = sliding[i * stride] / divisor;
                }
            }
            // Windows that overlap the padding, one by one.
            let edges = before
                .iter_mut()
                .zip(columns)
                .chain(after.iter_mut().zip(&columns[first_inside + inside..]));
            for (out, cols) in edges {
                let sum: f32 = folded[cols.clone()].iter().sum();
                *out = sum / self.divisor(rows, cols.len());
            }
        }
    }
}

impl Op for PlaneAvgPool {
    fn name(&self) -> StaticName {
        "WardPlaneAvgPool".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "kernel {:?} stride {:?} pad {:?} count_include_pad {}",
            self.windows.kernel,
            self.windows.stride,
            self.windows.pad_before,
            self.count_include_pad
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for PlaneAvgPool {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == 1, "takes one input, got {}", inputs.len());
        let g = &self.windows;
        let [_, _, h, w] = g.input;
        let [oh, ow] = g.output;
        let output = if self.same_size() {
            // The padded plane (its padding zero throughout), window sums along rows, and
            // each output's divisor.
            let [kh, kw] = g.kernel;
            let padded_len = (h + kh - 1) * (w + kw - 1);
            let divisors: Vec<f32> = (0..oh * ow)
                .map(|o| self.divisor(g.window(0, o / ow).len(), g.window(1, o % ow).len()))
                .collect();
            g.run_planes(
                "average pool",
                &inputs[0],
                || (vec![0f32; padded_len], vec![0f32; padded_len]),
                |(padded, sums), plane_in, plane_out| {
                    self.pool_same_plane(plane_in, plane_out, padded, sums, &divisors);
                },
            )?
        } else {
            let columns: Vec<_> = (0..ow).map(|ox| g.window(1, ox)).collect();
            g.run_planes(
                "average pool",
                &inputs[0],
                || (vec![0f32; w], vec![0f32; w]),
                |(folded, sliding), plane_in, plane_out| {
                    self.pool_plane(plane_in, plane_out, &columns, folded, sliding);
                },
            )?
        };
        Ok(tvec![output.into_tvalue()])
    }
}

impl TypedOp for PlaneAvgPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "takes one input");
        let [n, c, _, _] = self.windows.input;
        let [oh, ow] = self.windows.output;
        Ok(tvec![DatumType::F32.fact([n, c, oh, ow])])
    }

    as_op!();
}
