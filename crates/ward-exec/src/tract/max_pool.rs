//! Max pooling of float32 NCHW tensors over two spatial axes, in place of tract's.
//!
//! tract pools a strided window one scalar at a time, reading and writing the output for
//! every tap: a third of squeezenet1.1's time went there. This kernel works in whole rows,
//! which vectorise: it folds an output row's input rows into one row, takes the maximum of
//! every window at stride 1 with one pass per tap, and then picks every stride-th of those.
//! Only windows that overlap the padding are folded one by one. Stride-2 rows of 2- and
//! 3-wide windows run on ward-kernels' AVX-512 rows (`pool_rows`); the rest is safe Rust,
//! whose slices carry their bounds.

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
use tract_onnx::tract_core::ops::cnn::MaxPool;
use ward_kernels::pool_rows::stride2_row_max;

use super::pool_windows::{self, Inside, PoolWindows};

/// A 2-D max pool with its geometry fixed for one input shape, as plans are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PlaneMaxPool {
    windows: PoolWindows,
}

/// Replaces every tract `MaxPool` of the model that this kernel covers: float32, NCHW, two
/// spatial axes, no dilation, explicit padding, no argmax output, a concrete input shape.
/// Any other keeps tract's own op.
pub(crate) fn adopt(model: &mut TypedModel) -> TractResult<()> {
    pool_windows::swap(model, PlaneMaxPool::covering)
}

impl PlaneMaxPool {
    fn covering(pool: &MaxPool, fact: &TypedFact) -> TractResult<Option<PlaneMaxPool>> {
        if pool.with_index_outputs.is_some() {
            return Ok(None);
        }
        let output = pool.output_facts(&[fact])?.remove(0);
        let windows = PoolWindows::covering(&pool.pool_spec, fact, &output);
        Ok(windows.map(|windows| PlaneMaxPool { windows }))
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
            let mut rows = input
                .chunks_exact(width)
                .skip(window.start)
                .take(window.len());
            // Every fold starts from f32::MIN, as MXNet's does, so that a NaN is never taken.
            match rows.next() {
                Some(first) => {
                    for (f, &v) in folded.iter_mut().zip(first) {
                        *f = larger(f32::MIN, v);
                    }
                }
                None => folded.fill(f32::MIN),
            }
            for row in rows {
                fold_max(folded, row);
            }
            let (before, rest) = out_row.split_at_mut(first_inside);
            let (middle, after) = rest.split_at_mut(inside);
            let row = folded.get(first_start..).unwrap_or_default();
            // 2- and 3-wide windows at stride 2 on ward-kernels' rows (AVX-512 where the
            // CPU has it; a stride-2 loop here compiled to scalar code), the same bits. It
            // refuses only windows past the row, which the general path below clips.
            let on_kernel_rows = stride == 2
                && matches!(kernel_width, 2 | 3)
                && stride2_row_max(row, kernel_width, middle).is_ok();
            match (kernel_width, stride) {
                _ if middle.is_empty() || on_kernel_rows => {}
                (3, 1) => pool_row::<3, 1>(row, middle),
                (2, 1) => pool_row::<2, 1>(row, middle),
                _ => {
                    // The maximum of every window at stride 1, one whole-row pass per tap,
                    // then every stride-th of those.
                    let span = (inside.max(1) - 1) * stride + 1;
                    let sliding = &mut sliding[..span.min(row.len())];
                    sliding.copy_from_slice(&row[..sliding.len()]);
                    for tap in 1..kernel_width {
                        let shifted = &row[tap..];
                        let n = sliding.len().min(shifted.len());
                        fold_max(&mut sliding[..n], &shifted[..n]);
                    }
                    for (i, out) in middle.iter_mut().enumerate() {
                        *out = sliding[i * stride];
                    }
                }
            }
            // Windows that overlap the padding, one by one.
            let edges = before
                .iter_mut()
                .zip(columns)
                .chain(after.iter_mut().zip(&columns[first_inside + inside..]));
            for (out, cols) in edges {
                *out = folded[cols.clone()]
                    .iter()
                    .fold(f32::MIN, |m, &v| larger(m, v));
            }
        }
    }
}

/// `out[i]` = the maximum of `row[i·S .. i·S + K]`, for a kernel width and stride known
/// when compiling: the row is read as chunks of S, so that the strided loads vectorise.
fn pool_row<const K: usize, const S: usize>(row: &[f32], out: &mut [f32]) {
    let (chunks, _) = row.as_chunks::<S>();
    // Window i reaches into chunk i + (K - 1) / S; the last windows may end in the part of
    // the row that fills no whole chunk.
    let reach = (K - 1) / S;
    let whole = out.len().min(chunks.len().saturating_sub(reach));
    let (head, tail) = out.split_at_mut(whole);
    let chunks = &chunks[..(whole + reach).min(chunks.len())];
    for (i, o) in head.iter_mut().enumerate() {
        let mut m = chunks[i][0];
        for tap in 1..K {
            m = larger(m, chunks[i + tap / S][tap % S]);
        }
        *o = m;
    }
    for (i, o) in tail.iter_mut().enumerate() {
        let start = (whole + i) * S;
        if let Some(window) = row.get(start..start + K) {
            *o = window[1..].iter().fold(window[0], |m, &v| larger(m, v));
        }
    }
}

/// MXNet's comparison: a NaN never replaces the running maximum.
fn larger(max: f32, v: f32) -> f32 {
    if max < v {
        v
    } else {
        max
    }
}

fn fold_max(max: &mut [f32], values: &[f32]) {
    for (m, &v) in max.iter_mut().zip(values) {
        *m = larger(*m, v);
    }
}

impl Op for PlaneMaxPool {
    fn name(&self) -> StaticName {
        "WardPlaneMaxPool".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "kernel {:?} stride {:?} pad before {:?}",
            self.windows.kernel, self.windows.stride, self.windows.pad_before
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for PlaneMaxPool {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1,
            "max pool takes one input, got {}",
            inputs.len()
        );
        let g = &self.windows;
        let [_, _, _, w] = g.input;
        let columns: Vec<_> = (0..g.output[1]).map(|ox| g.window(1, ox)).collect();
        let output = g.run_planes(
            "max pool",
            &inputs[0],
            || (vec![0f32; w], vec![0f32; w]),
            |(folded, sliding), plane_in, plane_out| {
                self.pool_plane(plane_in, plane_out, &columns, folded, sliding);
            },
        )?;
        Ok(tvec![output.into_tvalue()])
    }
}

impl TypedOp for PlaneMaxPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "max pool takes one input");
        let [n, c, _, _] = self.windows.input;
        let [oh, ow] = self.windows.output;
        Ok(tvec![DatumType::F32.fact([n, c, oh, ow])])
    }

    as_op!();
}
