//! Max pooling of float32 NCHW tensors over two spatial axes, in place of tract's.
//!
//! tract pools a strided window one scalar at a time, reading and writing the output for
//! every tap: a third of squeezenet1.1's time went there. This kernel works in whole rows,
//! which vectorise: it folds an output row's input rows into one row, takes the maximum of
//! every window at stride 1 with one pass per tap, and then picks every stride-th of those.
//! Only windows that overlap the padding are folded one by one. Safe Rust: the slices
//! carry their bounds.

use std::ops::Range;

use tract_onnx::prelude::{
    tvec, Datum, DatumType, TValue, TVec, TractResult, TypedFact, TypedModel,
};
use tract_onnx::tract_core::internal::{
    as_op, bail, ensure, op_as_typed_op, op_out_of_plan, DatumTypeExt, EvalContext, EvalOp,
    IntoTValue, Op, StaticName, Tensor, TypedOp,
};
use tract_onnx::tract_core::ops::cnn::{MaxPool, PaddingSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// A 2-D max pool with its geometry fixed for one input shape, as plans are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PlaneMaxPool {
    /// N, C, H, W of the input.
    input: [usize; 4],
    /// H, W of the output.
    output: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad_before: [usize; 2],
}

/// Replaces every tract `MaxPool` of the model that this kernel covers: float32, NCHW, two
/// spatial axes, no dilation, explicit padding, no argmax output, a concrete input shape.
/// Any other keeps tract's own op.
pub(crate) fn adopt(model: &mut TypedModel) -> TractResult<()> {
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(pool) = node.op_as::<MaxPool>() else {
            continue;
        };
        let fact = model.outlet_fact(node.inputs[0])?;
        if let Some(ours) = PlaneMaxPool::covering(pool, fact)? {
            model.node_mut(id).op = Box::new(ours);
        }
    }
    Ok(())
}

impl PlaneMaxPool {
    fn covering(pool: &MaxPool, fact: &TypedFact) -> TractResult<Option<PlaneMaxPool>> {
        let spec = &pool.pool_spec;
        let pad_before = match &spec.padding {
            PaddingSpec::Explicit(before, _) | PaddingSpec::ExplicitOnnxPool(before, _, false) => {
                before
            }
            _ => return Ok(None),
        };
        let dilated = spec
            .dilations
            .as_ref()
            .is_some_and(|d| d.iter().any(|&d| d != 1));
        let Some(input) = fact.shape.as_concrete() else {
            return Ok(None);
        };
        if pool.with_index_outputs.is_some()
            || fact.datum_type != f32::datum_type()
            || spec.data_format != DataFormat::NCHW
            || spec.kernel_shape.len() != 2
            || input.len() != 4
            || dilated
        {
            return Ok(None);
        }
        let strides = spec.strides.clone().unwrap_or_else(|| tvec![1, 1]);
        let output_fact = pool.output_facts(&[fact])?.remove(0);
        let Some(output) = output_fact.shape.as_concrete() else {
            return Ok(None);
        };
        Ok(Some(PlaneMaxPool {
            input: [input[0], input[1], input[2], input[3]],
            output: [output[2], output[3]],
            kernel: [spec.kernel_shape[0], spec.kernel_shape[1]],
            stride: [strides[0], strides[1]],
            pad_before: [pad_before[0], pad_before[1]],
        }))
    }

    /// The input rows (or columns) that output row (or column) `o` of `axis` covers.
    fn window(&self, axis: usize, o: usize) -> Range<usize> {
        let extent = self.input[2 + axis];
        let start = o * self.stride[axis];
        let first = start.saturating_sub(self.pad_before[axis]).min(extent);
        let end = (start + self.kernel[axis])
            .saturating_sub(self.pad_before[axis])
            .min(extent);
        first..end.max(first)
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
        let width = self.input[3];
        let [kernel_width, stride] = [self.kernel[1], self.stride[1]];
        let pad = self.pad_before[1];
        // Window starts (in the row, unpadded) that lie wholly inside it.
        let inside = (width + 1).saturating_sub(kernel_width);
        for (oy, out_row) in output.chunks_exact_mut(self.output[1]).enumerate() {
            let window = self.window(0, oy);
            folded.fill(f32::MIN);
            for row in input
                .chunks_exact(width)
                .skip(window.start)
                .take(window.len())
            {
                fold_max(folded, row);
            }
            // The maximum of every window wholly inside the row, at stride 1: whole-row
            // passes, one per tap.
            let sliding = &mut sliding[..inside];
            sliding.fill(f32::MIN);
            for tap in 0..kernel_width.min(width) {
                fold_max(sliding, &folded[tap..tap + inside]);
            }
            for (ox, (out, cols)) in out_row.iter_mut().zip(columns).enumerate() {
                let start = (ox * stride).checked_sub(pad).filter(|&s| s < inside);
                *out = match start {
                    Some(s) => sliding[s],
                    None => folded[cols.clone()]
                        .iter()
                        .fold(f32::MIN, |m, &v| larger(m, v)),
                };
            }
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
            self.kernel, self.stride, self.pad_before
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
        let input = &inputs[0];
        if input.shape() != self.input {
            bail!(
                "max pool built for {:?} got {:?}",
                self.input,
                input.shape()
            );
        }
        let [n, c, h, w] = self.input;
        let [oh, ow] = self.output;
        let mut output = Tensor::zero::<f32>(&[n, c, oh, ow])?;
        let plain = input.try_as_plain_ram()?;
        let x = plain.as_slice::<f32>()?;
        {
            let mut out_plain = output.try_as_plain_ram_mut()?;
            let y = out_plain.as_slice_mut::<f32>()?;
            let columns: Vec<_> = (0..ow).map(|ox| self.window(1, ox)).collect();
            let (mut folded, mut sliding) = (vec![0f32; w], vec![0f32; w]);
            for (plane_in, plane_out) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(oh * ow)) {
                self.pool_plane(plane_in, plane_out, &columns, &mut folded, &mut sliding);
            }
        }
        Ok(tvec![output.into_tvalue()])
    }
}

impl TypedOp for PlaneMaxPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "max pool takes one input");
        let [n, c, _, _] = self.input;
        Ok(tvec![DatumType::F32.fact([
            n,
            c,
            self.output[0],
            self.output[1]
        ])])
    }

    as_op!();
}
