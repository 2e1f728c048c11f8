//! A convolution (or a transposed one) over a batch whose scratch would be large runs
//! sample by sample; so does a 1×1 convolution's product over a batch (see
//! `ConvPerSample::covering_product`).
//!
//! tract lowers a convolution over a batch of N to one im2col of the whole batch, then a
//! matrix product per sample: the im2col buffer holds N samples' patches at once. An
//! R-CNN's box head runs ResNet's last stage on its 300 pooled regions, where the 3×3
//! convolution's im2col is 300 × 4608 × 49 floats, 271 MB written and faulted in on every
//! run for products that read it one sample at a time: Faster R-CNN peaked at 867 MB for a
//! 131 MB package, a fifth of its time in the kernel clearing those pages. Here such a
//! convolution becomes [`ConvPerSample`], which holds the same convolution built and
//! optimised by tract for one sample and runs it on each sample in turn, so the scratch is
//! one sample's. The arithmetic per sample is tract's own (a test in `tests/it/ops.rs`
//! holds a 128-sample convolution to the definition and checks this op ran it).
//!
//! A transposed convolution (`Deconvolution`) is the same over a batch: tract computes
//! every sample's product (output channels · taps) × input positions at once, then sums
//! the taps into the output. Mask R-CNN's mask head upsamples 1000 regions of 256 × 7 × 7
//! with a 2 × 2 kernel: a 200 MB product beside the 200 MB output, mask_rcnn_fpn's peak.

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and input slots come from tract's own graph, and a convolution has its data, kernel and bias inputs"
)]

use std::sync::Arc;

use tract_linalg::multithread::{current_tract_executor, Executor};
use tract_onnx::prelude::{
    tvec, DatumType, IntoTValue, OutletId, TValue, TVec, Tensor, TractResult, TypedFact,
    TypedModel, TypedRunnableModel,
};
use tract_onnx::tract_core::internal::{
    as_op, ensure, op_as_typed_op, op_out_of_plan, DatumTypeExt, EvalContext, EvalOp, IntoRunnable,
    Op, SpecialOps, StaticName, TypedOp,
};
use tract_onnx::tract_core::ops::cnn::{Conv, Deconv};
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::optimizer::{Rewriter, Wire};
use crate::weights::WeightsId;

/// The batch scratch, in bytes (a convolution's im2col, a transposed convolution's
/// product), above which it runs sample by sample. tract's own rule for a single sample
/// prefers its lazy im2col (no buffer) above 4 MiB; a batch is allowed four times that
/// before its buffer is given up.
pub(crate) const BATCH_IM2COL_BYTES: usize = 16 << 20;

/// Every convolution or transposed convolution of `model` over a batch (N > 1, batch
/// axis first) with concrete shapes and a scratch (im2col, or the transposed
/// convolution's product) of more than [`BATCH_IM2COL_BYTES`], or of any size where the
/// plan runs on more than one of `threads` and its kernel and bias are constants, and
/// every 1×1 convolution's product over a batch, becomes a [`ConvPerSample`].
///
/// Why any size on several threads: tract's im2col of a batch is one thread's work,
/// while the samples of a [`ConvPerSample`] run on the threads side by side. On two
/// threads of a Zen 3 host (AVX2) at batch 8, Inception v3 took 1385 ms against 1554
/// with its batches' im2col, SqueezeNet 1.1 113 against 135, ResNet-18 312 against 351
/// (docs/BENCHMARKS.md, 2026-12-07 Zen 3); on one thread the batch's im2col is the
/// faster (SqueezeNet 130 against 190 ms per sample).
pub(crate) fn adopt(model: &mut TypedModel, weights: WeightsId, threads: usize) -> TractResult<()> {
    let mut rewriter = Rewriter::of(model);
    for id in 0..model.nodes.len() {
        let node = &model.nodes[id];
        let Some(op) = ConvPerSample::covering(model, id, weights, threads)? else {
            continue;
        };
        let inputs = std::iter::once(op.data)
            .chain(op.passed.iter().copied())
            .map(|slot| Wire::Outlet(node.inputs[slot]))
            .collect();
        rewriter.replace(model, id, op, inputs)?;
    }
    Ok(())
}

/// A convolution or transposed convolution run on each sample of its input in turn.
#[derive(Debug, Clone)]
pub(crate) struct ConvPerSample {
    /// The convolution alone on one sample, optimised by tract.
    plan: Arc<TypedRunnableModel>,
    /// The node's input slot of the data: 0 for a convolution, the one that is not the
    /// constant weight for a product.
    data: usize,
    /// The convolution's inputs (of kernel 1, bias 2) that are not constants, passed
    /// after the data as the op's own inputs.
    passed: TVec<usize>,
    /// The whole batch's input and output shapes.
    input: Vec<usize>,
    output: TypedFact,
}

impl PartialEq for ConvPerSample {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.plan, &other.plan)
    }
}

impl Eq for ConvPerSample {}

impl ConvPerSample {
    /// Node `id`'s convolution or transposed convolution, run per sample, if it is one
    /// and qualifies ([`adopt`]) in a plan on `threads`.
    fn covering(
        model: &TypedModel,
        id: usize,
        weights: WeightsId,
        threads: usize,
    ) -> TractResult<Option<ConvPerSample>> {
        let node = &model.nodes[id];
        if node.op_is::<EinSum>() {
            return Self::covering_product(model, id, weights);
        }
        let (spec, group, quantized, transposed) = if let Some(conv) = node.op_as::<Conv>() {
            (&conv.pool_spec, conv.group, conv.q_params.is_some(), false)
        } else if let Some(deconv) = node.op_as::<Deconv>() {
            (&deconv.pool_spec, deconv.group, false, true)
        } else {
            return Ok(None);
        };
        let input = model.outlet_fact(node.inputs[0])?;
        let output = model.outlet_fact(id.into())?;
        let (Some(input_shape), Some(output_shape)) =
            (input.shape.as_concrete(), output.shape.as_concrete())
        else {
            return Ok(None);
        };
        let depthwise = group > 1 && group == spec.input_channels && group == spec.output_channels;
        let taps: usize = spec.kernel_shape.iter().product();
        let batch = input_shape.first().copied().unwrap_or(1);
        if quantized
            || node.inputs.len() != 3
            || !spec.data_format.has_n()
            || batch <= 1
            || depthwise
        {
            return Ok(None);
        }
        // A convolution's packed input: (input channels per group · taps) × output
        // positions, per group and sample (im2col; for a 1×1 kernel, the input itself
        // packed). A transposed convolution's product: (output channels · taps) × input
        // positions per sample, before its taps are summed into the output.
        let (channels, positions_of) = if transposed {
            (spec.output_channels, input_shape)
        } else {
            (spec.input_channels, output_shape)
        };
        let positions: usize = spec
            .data_format
            .shape(positions_of)?
            .hw_dims()
            .iter()
            .product();
        let scratch = channels
            .saturating_mul(taps)
            .saturating_mul(positions)
            .saturating_mul(batch)
            .saturating_mul(input.datum_type.size_of());
        // Run side by side on the threads ([`Self::parallel`]): a float convolution
        // whose kernel and bias are constants.
        let side_by_side = threads > 1
            && output.datum_type == DatumType::F32
            && [1, 2].iter().all(|&slot| {
                model
                    .outlet_fact(node.inputs[slot])
                    .is_ok_and(|fact| fact.konst.is_some())
            });
        if scratch <= BATCH_IM2COL_BYTES && !side_by_side {
            return Ok(None);
        }
        let op = Self::of_one_sample(model, id, 0, weights, |single, sample| {
            let mut wires = tvec![sample];
            // The kernel and bias enter as constants when they are; a bias still computed
            // (a folded batch norm's, before tract folds it) is an input of the op.
            let mut passed = tvec![];
            for (slot, name) in [(1, "kernel"), (2, "bias")] {
                let fact = model.outlet_fact(node.inputs[slot])?;
                wires.push(match &fact.konst {
                    Some(value) => single.add_const(name, value.clone())?,
                    None => {
                        passed.push(slot);
                        single.add_source(name, fact.without_value())?
                    }
                });
            }
            Ok((wires, passed))
        })?;
        Ok(Some(op))
    }

    /// Node `id` (its data, of a concrete shape, at input `data`) as a [`ConvPerSample`]:
    /// the node alone in a model of one sample, optimised. `wire` is given that model and
    /// its sample's source, and gives the node's inputs in order and the slots of those
    /// passed as the op's own inputs. Its convolutions' laid-out weights are shared with
    /// the other plans of `weights`.
    fn of_one_sample(
        model: &TypedModel,
        id: usize,
        data: usize,
        weights: WeightsId,
        wire: impl FnOnce(&mut TypedModel, OutletId) -> TractResult<(TVec<OutletId>, TVec<usize>)>,
    ) -> TractResult<ConvPerSample> {
        let node = &model.nodes[id];
        let input = model.outlet_fact(node.inputs[data])?;
        let input_shape = input
            .shape
            .as_concrete()
            .ok_or_else(|| tract_onnx::tract_core::internal::format_err!("symbolic input"))?
            .to_vec();
        let mut sample_shape = input_shape.clone();
        sample_shape[0] = 1;
        let mut single = TypedModel::default();
        let sample = single.add_source("sample", input.datum_type.fact(&*sample_shape))?;
        let (wires, passed) = wire(&mut single, sample)?;
        let y = single.wire_node(&node.name, node.op.clone(), &wires)?;
        single.select_output_outlets(&y)?;
        // One sample: nothing left to run per sample.
        // Run once per sample: many times in one run of the whole plan.
        super::direct_conv::optimize(&mut single, weights, 1, super::direct_conv::Runs::Many)?;
        Ok(ConvPerSample {
            plan: single.into_runnable()?,
            data,
            passed,
            input: input_shape,
            output: model.outlet_fact(id.into())?.without_value(),
        })
    }

    /// Node `id`'s product, if it is a 1×1 convolution over a batch: an `EinSum` of a
    /// constant 2-D weight and a float 4-D batch `[N, C, H, W]` with N > 1, whose batch
    /// axis is the output's first and not the weight's (`oi,nihw->nohw`, as ward's
    /// lowering and tract's own write a pointwise convolution, or `nihw,oi->nohw`, as
    /// tract's declutter writes it over a large batch, maybe with axes of one before the
    /// output's batch axis, `nihw,oi->anohw`, where it pulled an added axis into it).
    ///
    /// Why: tract runs such a product over a batch as one matrix product over N·H·W
    /// positions, which needs the channels last, so it moves the input's axes before the
    /// product and the output's after: a transpose of each, 23 % of MobileNet's time at
    /// batch 8. On one sample the positions are already a matrix's columns and nothing
    /// moves, so per sample the product costs two copies (the sample in, its output out)
    /// instead of two transposes. Over an R-CNN head's 1000 regions each transpose is a
    /// copy of the whole batch, alive beside it: Mask R-CNN FPN's mask head held 200 MB
    /// of them and 213 MB of the product's packed input.
    fn covering_product(
        model: &TypedModel,
        id: usize,
        weights: WeightsId,
    ) -> TractResult<Option<ConvPerSample>> {
        let node = &model.nodes[id];
        let Some(einsum) = node.op_as::<EinSum>() else {
            return Ok(None);
        };
        if einsum.q_params.is_some() || node.inputs.len() != 2 {
            return Ok(None);
        }
        // The weight's slot: the constant one.
        let slot = usize::from(model.outlet_fact(node.inputs[0])?.konst.is_none());
        let data = 1 - slot;
        let weight = model.outlet_fact(node.inputs[slot])?;
        let input = model.outlet_fact(node.inputs[data])?;
        let output = model.outlet_fact(id.into())?;
        let (Some(kernel), Some(input_shape), Some(output_shape)) = (
            &weight.konst,
            input.shape.as_concrete(),
            output.shape.as_concrete(),
        ) else {
            return Ok(None);
        };
        let batch = input_shape.first().copied().unwrap_or(1);
        let Some(lead) = output_shape.len().checked_sub(4) else {
            return Ok(None);
        };
        let batch_axis_is_free = einsum.axes.iter_all_axes().any(|axis| {
            axis.outputs.first().is_some_and(|o| o.as_slice() == [lead])
                && axis.inputs.get(data).is_some_and(|i| i.as_slice() == [0])
                && axis.inputs.get(slot).is_some_and(|i| i.is_empty())
        });
        if kernel.rank() != 2
            || input_shape.len() != 4
            || output_shape[..lead].iter().any(|&d| d != 1)
            || output_shape.get(lead) != Some(&batch)
            || batch <= 1
            || input.datum_type != DatumType::F32
            || !batch_axis_is_free
        {
            return Ok(None);
        }
        let op = Self::of_one_sample(model, id, data, weights, |single, sample| {
            let weight = single.add_const("weight", kernel.clone())?;
            let wires = if slot == 0 {
                tvec![weight, sample]
            } else {
                tvec![sample, weight]
            };
            Ok((wires, tvec![]))
        })?;
        Ok(Some(op))
    }
}

impl Op for ConvPerSample {
    fn name(&self) -> StaticName {
        "WardConvPerSample".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self
            .plan
            .model()
            .nodes
            .iter()
            .map(|n| format!("per sample: {}", n.op.name()))
            .collect())
    }

    op_as_typed_op!();
}

impl EvalOp for ConvPerSample {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1 + self.passed.len(),
            "takes {} inputs, got {}",
            1 + self.passed.len(),
            inputs.len()
        );
        let input = &inputs[0];
        ensure!(
            input.shape() == self.input,
            "built for {:?}, got {:?}",
            self.input,
            input.shape()
        );
        let shape = self
            .output
            .shape
            .as_concrete()
            .ok_or_else(|| tract_onnx::tract_core::internal::format_err!("symbolic output"))?;
        if let Some(pool) = self.parallel() {
            let mut output = Tensor::zero::<f32>(shape)?;
            self.run_on_threads(&pool, input, &mut output)?;
            return Ok(tvec![output.into_tvalue()]);
        }
        let mut output = Tensor::zero_dt(self.output.datum_type, shape)?;
        let mut state = self.plan.spawn()?;
        for sample in 0..self.input[0] {
            let x = input.slice(0, sample, sample + 1)?;
            let mut values = tvec![x.into_tvalue()];
            values.extend(inputs.iter().skip(1).cloned());
            let y = state.run(values)?;
            let axis = self.output_batch_axis();
            output.assign_slice(sample..sample + 1, first(&y)?, 0..1, axis)?;
        }
        Ok(tvec![output.into_tvalue()])
    }
}

/// A plan's one output.
fn first(outputs: &[TValue]) -> TractResult<&TValue> {
    outputs.first().ok_or_else(|| {
        tract_onnx::tract_core::internal::format_err!("the convolution gave no output")
    })
}

impl ConvPerSample {
    /// The output's batch axis: the input's is its first, and an output has more axes only
    /// where tract's declutter pulled axes of one in before the batch (`nihw,oi->anohw`,
    /// which `covering_product` takes).
    fn output_batch_axis(&self) -> usize {
        self.output.rank().saturating_sub(self.input.len())
    }

    /// The pool to spread the samples over (there are always at least two: `covering`
    /// takes only batches): the plan's executor's, when it has more than one thread, and
    /// the op is a float32 one whose inputs other than the data are all constants (each
    /// thread then runs the one-sample plan on its samples alone).
    fn parallel(&self) -> Option<Arc<rayon::ThreadPool>> {
        match current_tract_executor() {
            Executor::MultiThread(pool)
                if pool.current_num_threads() > 1
                    && self.passed.is_empty()
                    && self.output.datum_type == DatumType::F32 =>
            {
                Some(pool)
            }
            _ => None,
        }
    }

    /// Runs the samples of `input` on `pool`'s threads, a contiguous run of samples each,
    /// each thread with its own state of the one-sample plan, writing each sample's
    /// output into its part of `output`.
    ///
    /// Why: one sample's products are too small for tract to split well over two
    /// threads, so with the samples one after the other a second thread gave MobileNet v2
    /// at batch 8 3 % (309 → 299 ms). Each sample is the same sum whichever thread runs
    /// it, so the output does not depend on the thread count.
    fn run_on_threads(
        &self,
        pool: &rayon::ThreadPool,
        input: &Tensor,
        output: &mut Tensor,
    ) -> TractResult<()> {
        use rayon::prelude::*;
        let samples = self.input[0];
        let mut plain = output.try_as_plain_ram_mut()?;
        let y = plain.as_slice_mut::<f32>()?;
        let per_sample = y.len() / samples;
        ensure!(
            per_sample * samples == y.len(),
            "the output is not {samples} samples"
        );
        let run = samples.div_ceil(pool.current_num_threads());
        pool.install(|| {
            y.par_chunks_mut(per_sample * run).enumerate().try_for_each(
                |(chunk, block)| -> TractResult<()> {
                    let mut state = self.plan.spawn()?;
                    for (i, out) in block.chunks_mut(per_sample).enumerate() {
                        let sample = chunk * run + i;
                        let x = input.slice(0, sample, sample + 1)?;
                        let y = state.run(tvec![x.into_tvalue()])?;
                        let y = first(&y)?.try_as_plain_ram()?;
                        let y = y.as_slice::<f32>()?;
                        ensure!(
                            y.len() == out.len(),
                            "a sample's output is {} values, not {}",
                            y.len(),
                            out.len()
                        );
                        out.copy_from_slice(y);
                    }
                    Ok(())
                },
            )
        })
    }
}

impl TypedOp for ConvPerSample {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 1 + self.passed.len(),
            "takes {} inputs",
            1 + self.passed.len()
        );
        Ok(tvec![self.output.clone()])
    }

    as_op!();
}
