//! The geometry that ward's max- and average-pool kernels share: a 2-D float32 NCHW pool
//! fixed for one input shape, its windows clipped to the input, and which output columns
//! lie wholly inside a row.

#![allow(
    clippy::indexing_slicing,
    reason = "window arithmetic over shapes tract inferred and checked at plan time"
)]

use std::ops::Range;

use rayon::prelude::*;
use tract_linalg::multithread::{current_tract_executor, Executor};

use tract_onnx::prelude::{tvec, Datum, TractResult, TypedFact, TypedModel};
use tract_onnx::tract_core::internal::{bail, Op, TValue, Tensor, TypedOp};
use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Every node of `model` whose op is a `P` that `cover` takes over (given the node's op
/// and its input's fact) runs ward's op instead; any other keeps tract's.
pub(super) fn swap<P, W>(
    model: &mut TypedModel,
    cover: impl Fn(&P, &TypedFact) -> TractResult<Option<W>>,
) -> TractResult<()>
where
    P: Op,
    W: TypedOp,
{
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(pool) = node.op_as::<P>() else {
            continue;
        };
        if let Some(ours) = cover(pool, model.outlet_fact(node.inputs[0])?)? {
            model.node_mut(id).op = Box::new(ours);
        }
    }
    Ok(())
}

/// A 2-D pool's windows for one input shape, as plans are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PoolWindows {
    /// N, C, H, W of the input.
    pub(super) input: [usize; 4],
    /// H, W of the output.
    pub(super) output: [usize; 2],
    pub(super) kernel: [usize; 2],
    pub(super) stride: [usize; 2],
    pub(super) pad_before: [usize; 2],
}

/// The output columns whose window lies wholly inside a row: `count` of them from
/// `first`, the first window starting at input column `start`.
pub(super) struct Inside {
    pub(super) first: usize,
    pub(super) count: usize,
    pub(super) start: usize,
}

impl PoolWindows {
    /// The windows of tract's pool `spec` over `input` (its output `output`), where ward's
    /// row kernels cover it: float32, NCHW, two spatial axes, no dilation, explicit
    /// padding without ONNX's ceil mode, concrete shapes.
    pub(super) fn covering(
        spec: &PoolSpec,
        input: &TypedFact,
        output: &TypedFact,
    ) -> Option<PoolWindows> {
        let pad_before = match &spec.padding {
            PaddingSpec::Explicit(before, _) | PaddingSpec::ExplicitOnnxPool(before, _, false) => {
                before
            }
            _ => return None,
        };
        let dilated = spec
            .dilations
            .as_ref()
            .is_some_and(|d| d.iter().any(|&d| d != 1));
        let (Some(shape), Some(out)) = (input.shape.as_concrete(), output.shape.as_concrete())
        else {
            return None;
        };
        if input.datum_type != f32::datum_type()
            || spec.data_format != DataFormat::NCHW
            || spec.kernel_shape.len() != 2
            || shape.len() != 4
            || out.len() != 4
            || pad_before.len() != 2
            || dilated
        {
            return None;
        }
        let strides = spec.strides.clone().unwrap_or_else(|| tvec![1, 1]);
        Some(PoolWindows {
            input: [shape[0], shape[1], shape[2], shape[3]],
            output: [out[2], out[3]],
            kernel: [spec.kernel_shape[0], spec.kernel_shape[1]],
            stride: [strides[0], strides[1]],
            pad_before: [pad_before[0], pad_before[1]],
        })
    }

    /// The input rows (or columns) that output row (or column) `o` of `axis` covers.
    pub(super) fn window(&self, axis: usize, o: usize) -> Range<usize> {
        let extent = self.input[2 + axis];
        let start = o * self.stride[axis];
        let first = start.saturating_sub(self.pad_before[axis]).min(extent);
        let end = (start + self.kernel[axis])
            .saturating_sub(self.pad_before[axis])
            .min(extent);
        first..end.max(first)
    }

    /// The output columns whose window lies wholly inside a row.
    pub(super) fn inside(&self) -> Inside {
        let width = self.input[3];
        let [kernel_width, stride] = [self.kernel[1], self.stride[1]];
        let pad = self.pad_before[1];
        let first = pad.div_ceil(stride).min(self.output[1]);
        let count = match width.checked_sub(kernel_width) {
            Some(room) => ((room + pad) / stride + 1)
                .min(self.output[1])
                .saturating_sub(first),
            None => 0,
        };
        Inside {
            first,
            count,
            start: first * stride - pad.min(first * stride),
        }
    }

    /// A new output tensor, each of whose planes `pool` fills from the matching plane of
    /// `input` (checked to be of the planned shape; `what` names the op in the error),
    /// with scratch that `scratch` makes. A plan on several threads spreads the planes
    /// over them (tract's executor, as ward's convolutions do): at batch 8 SqueezeNet's
    /// three max pools on one thread took 3.4 ms of its 24 on two.
    pub(super) fn run_planes<S>(
        &self,
        what: &str,
        input: &TValue,
        scratch: impl Fn() -> S + Sync,
        pool: impl Fn(&mut S, &[f32], &mut [f32]) + Sync,
    ) -> TractResult<Tensor> {
        if input.shape() != self.input {
            bail!("{what} built for {:?} got {:?}", self.input, input.shape());
        }
        let [n, c, h, w] = self.input;
        let [oh, ow] = self.output;
        let mut output = Tensor::zero::<f32>(&[n, c, oh, ow])?;
        let plain = input.try_as_plain_ram()?;
        let x = plain.as_slice::<f32>()?;
        {
            let mut out_plain = output.try_as_plain_ram_mut()?;
            let y = out_plain.as_slice_mut::<f32>()?;
            if h * w > 0 && oh * ow > 0 {
                match current_tract_executor() {
                    Executor::MultiThread(threads) if n * c > 1 => threads.install(|| {
                        x.par_chunks_exact(h * w)
                            .zip(y.par_chunks_exact_mut(oh * ow))
                            .for_each_init(&scratch, |s, (plane_in, plane_out)| {
                                pool(s, plane_in, plane_out)
                            })
                    }),
                    _ => {
                        let mut s = scratch();
                        for (plane_in, plane_out) in
                            x.chunks_exact(h * w).zip(y.chunks_exact_mut(oh * ow))
                        {
                            pool(&mut s, plane_in, plane_out);
                        }
                    }
                }
            }
        }
        Ok(output)
    }
}
