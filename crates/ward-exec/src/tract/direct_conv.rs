//! Convolutions on ward's own kernels (`ward_kernels::conv`, `ward_kernels::depthwise`),
//! in place of tract's, where the CPU has AVX-512F.
//!
//! tract runs a convolution as im2col and a packed matrix product: on ResNet-18 at batch 8
//! ward took 1.55× MXNet's time at one thread and 1.78× at two (docs/BENCHMARKS.md), where
//! ward's training kernels, which read the padded input straight into their tiles, run
//! the same layers' forward passes at 0.9–1.0× oneDNN's. Here a decluttered `Conv` whose
//! kernel and bias are constants (a batch norm already folded into them) becomes a
//! [`DirectConv`]: its weight laid out for the kernels once, when the plan is built, and
//! its forward pass the training engine's, which gives the matrix crate's bits. A
//! depthwise convolution (one group per input channel), whose 32-channel strips would be
//! almost empty, runs on the depthwise kernel instead, its OIHW weight used as it is:
//! tract's depthwise op took 39 % of MobileNet 1.0's time at batch 1. Anything the
//! kernels do not cover (another data or kernel format, asymmetric or `same` padding, a
//! quantised convolution) keeps tract's op.

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and input slots come from tract's own graph, and a convolution has its data, kernel and bias inputs"
)]

use std::sync::Arc;

use tract_linalg::multithread::{current_tract_executor, Executor};
use tract_onnx::prelude::{
    tvec, Datum, DatumType, OutletId, TValue, TVec, Tensor, TractResult, TypedFact, TypedModel,
};
use tract_onnx::tract_core::internal::{
    as_op, ensure, format_err, op_as_typed_op, op_out_of_plan, DatumTypeExt, EvalContext, EvalOp,
    IntoTValue, Op, StaticName, TypedOp,
};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;
use ward_kernels::conv::{Conv2d, ConvWindow, PackedWeights};
use ward_kernels::depthwise;

use super::optimizer::{self, Rewriter, Wire};

/// tract's optimisation with ward's convolutions: declutter (a convolution's kernel and
/// bias become constants, any batch norm folded in), then [`adopt`], then per-channel
/// constants of batched binary ops tiled along the batch (`batch_consts`), then the
/// batched convolutions left to tract whose im2col would be large run per sample
/// (`per_sample_conv`), then codegen for the rest.
pub(crate) fn optimize(model: &mut TypedModel) -> TractResult<()> {
    optimizer::declutter(model)?;
    adopt(model)?;
    super::batch_consts::tile(model)?;
    super::per_sample_conv::adopt(model)?;
    optimizer::codegen(model)
}

/// Every convolution of `model` (decluttered) that [`DirectConv`] covers becomes one; a
/// depthwise one whose output only a ReLU reads takes the ReLU into its last pass.
pub(crate) fn adopt(model: &mut TypedModel) -> TractResult<()> {
    let mut rewriter = Rewriter::of(model);
    for id in 0..model.nodes.len() {
        let Some(mut op) = DirectConv::covering(model, id)? else {
            continue;
        };
        let input = Wire::Outlet(model.nodes[id].inputs[0]);
        match relu_after(model, id)? {
            Some(relu) if matches!(*op.weight, Weight::Depthwise(_)) => {
                op.relu = true;
                rewriter.replace(model, relu, op, vec![input])?;
            }
            _ => rewriter.replace(model, id, op, vec![input])?,
        }
    }
    Ok(())
}

/// The node that is the only reader of node `id`'s output, when it is `max(·, 0)` (ONNX's
/// `Relu`, MXNet's `Activation(relu)`) of the same shape and `id`'s output is not one of
/// the model's.
fn relu_after(model: &TypedModel, id: usize) -> TractResult<Option<usize>> {
    let output = OutletId::new(id, 0);
    let readers = model.outlet_successors(output);
    if readers.len() != 1 || model.output_outlets()?.contains(&output) {
        return Ok(None);
    }
    let node = &model.nodes[readers[0].node];
    let is_relu = node
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.name() == "Max")
        && node.inputs.len() == 2
        && node.inputs[0] == output
        && super::relu::is_zero(model.outlet_fact(node.inputs[1])?)?
        && model.outlet_fact(OutletId::new(node.id, 0))?.shape == model.outlet_fact(output)?.shape;
    Ok(is_relu.then_some(node.id))
}

/// The shallowest sum (input channels per group × taps) a [`DirectConv`] takes.
const MIN_DEPTH: usize = 256;
/// The fewest output channels per group a [`DirectConv`] takes: two strips of the kernel.
const MIN_OUTPUT_CHANNELS: usize = 64;
/// A convolution of an image (at most this many input channels) runs direct at any
/// depth: tract's im2col product over 27 values a pixel took SqueezeNet's 3×3 stride-2
/// stem 1.0 ms against MXNet's 0.3, and on the direct kernel SqueezeNet at batch 1 runs
/// 0.3 to 0.7 ms faster (ResNet-18's and DenseNet's 7×7 stems, 147 deep, within noise).
const MAX_STEM_CHANNELS: usize = 4;

/// A 2-D float32 NCHW convolution with its geometry fixed for one input shape and its
/// weight laid out for the kernel that runs it.
#[derive(Debug, Clone)]
pub(crate) struct DirectConv {
    geometry: Conv2d,
    weight: Arc<Weight>,
    bias: Option<Arc<[f32]>>,
    /// Whether the data is one image without its batch axis (CHW).
    unbatched: bool,
    /// Whether a ReLU follows in the kernel's last pass (depthwise only).
    relu: bool,
}

/// A [`DirectConv`]'s weight, and so its kernel.
#[derive(Debug)]
enum Weight {
    /// Packed in strips for the direct kernels.
    Packed(PackedWeights),
    /// A depthwise convolution's OIHW weight, as it is.
    Depthwise(Box<[f32]>),
}

impl PartialEq for DirectConv {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weight, &other.weight)
    }
}

impl Eq for DirectConv {}

impl DirectConv {
    /// Node `id`'s convolution, if it is one the direct kernels cover.
    fn covering(model: &TypedModel, id: usize) -> TractResult<Option<DirectConv>> {
        let node = &model.nodes[id];
        let Some(conv) = node.op_as::<Conv>() else {
            return Ok(None);
        };
        let spec = &conv.pool_spec;
        let input = model.outlet_fact(node.inputs[0])?;
        let output = model.outlet_fact(id.into())?;
        let (Some(shape), Some(out_shape)) =
            (input.shape.as_concrete(), output.shape.as_concrete())
        else {
            return Ok(None);
        };
        let depthwise = conv.group > 1 && conv.group == spec.input_channels;
        if conv.q_params.is_some()
            || node.inputs.len() != 3
            || input.datum_type != f32::datum_type()
            || conv.kernel_fmt != KernelFormat::OIHW
            || spec.kernel_shape.len() != 2
        {
            return Ok(None);
        }
        // tract's declutter drops the batch axis of a one-image plan (CHW).
        let (input_shape, unbatched) = match (spec.data_format, shape) {
            (DataFormat::NCHW, &[n, c, h, w]) => ([n, c, h, w], false),
            (DataFormat::CHW, &[c, h, w]) => ([1, c, h, w], true),
            _ => return Ok(None),
        };
        let (Some(kernel), Some(bias)) = (
            model.outlet_fact(node.inputs[1])?.konst.clone(),
            model.outlet_fact(node.inputs[2])?.konst.clone(),
        ) else {
            return Ok(None);
        };
        let padding = spec.computed_padding(&input_shape[2..]);
        if padding.iter().any(|p| p.pad_before != p.pad_after) {
            return Ok(None);
        }
        let pair = |v: Option<&TVec<usize>>| match v {
            Some(v) if v.len() == 2 => Some([v[0], v[1]]),
            None => Some([1, 1]),
            _ => None,
        };
        let (Some(stride), Some(dilation)) =
            (pair(spec.strides.as_ref()), pair(spec.dilations.as_ref()))
        else {
            return Ok(None);
        };
        let window = ConvWindow {
            out_channels: spec.output_channels,
            kernel: [spec.kernel_shape[0], spec.kernel_shape[1]],
            stride,
            pad: [padding[0].pad_before, padding[1].pad_before],
            dilation,
            groups: conv.group,
        };
        let Ok(geometry) = Conv2d::new(input_shape, window) else {
            return Ok(None);
        };
        if !geometry.runs_direct() || *out_shape != *output_shape(&geometry, unbatched) {
            return Ok(None);
        }
        let kernel = kernel.cast_to::<f32>()?;
        let kernel = kernel.try_as_plain_ram()?;
        let kernel = kernel.as_slice::<f32>()?;
        let weight = if depthwise {
            if kernel.len() != geometry.weight_len() {
                return Ok(None);
            }
            Weight::Depthwise(kernel.into())
        } else {
            // A shallow sum or a narrow output leaves the tiles mostly bookkeeping (but
            // for an image's stem, whose im2col product is shallower still):
            // with every convolution of at least 128 deep and 32 wide taken,
            // squeezenet1.1 ran slower than on tract's products (its 1×1 expansions are
            // 16 to 64 deep, its squeezes 16 to 64 wide); at 256 and 64 it ran as fast,
            // and ResNet-18 kept all but its 7×7 stem (147 deep) on the direct kernels.
            let depth = spec.input_channels / conv.group * window.kernel[0] * window.kernel[1];
            let stem = spec.input_channels <= MAX_STEM_CHANNELS;
            if (depth < MIN_DEPTH && !stem)
                || spec.output_channels / conv.group < MIN_OUTPUT_CHANNELS
            {
                return Ok(None);
            }
            let Ok(weight) = geometry.pack(kernel) else {
                return Ok(None);
            };
            Weight::Packed(weight)
        };
        let bias = bias.cast_to::<f32>()?;
        let bias = bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<f32>()?;
        let bias: Option<Arc<[f32]>> = match bias.len() {
            // A scalar bias: zero is none, another value is every channel's.
            1 if bias[0] == 0.0 => None,
            1 => Some(vec![bias[0]; spec.output_channels].into()),
            n if n == spec.output_channels => Some(bias.into()),
            _ => return Ok(None),
        };
        Ok(Some(DirectConv {
            geometry,
            weight: Arc::new(weight),
            bias,
            unbatched,
            relu: false,
        }))
    }
}

/// The output's shape: `[n, o, h, w]`, or `[o, h, w]` for an `unbatched` (CHW) one.
fn output_shape(g: &Conv2d, unbatched: bool) -> TVec<usize> {
    let nchw = [g.batch, g.out_channels, g.out_h(), g.out_w()];
    nchw[usize::from(unbatched)..].into()
}

thread_local! {
    /// The calling thread as a one-thread rayon pool, for a plan run on one thread: the
    /// kernels split their work with rayon, and tract's single-thread executor has no pool
    /// of its own. Each thread is its own pool, so its work runs where it is called, with
    /// no hand-off: one pool shared by the process ran every model thread's convolutions
    /// on its one thread, and `ward serve` kept 1.2 of 2 cores busy on ResNet-18 at 16
    /// connections. `None` on a thread that already works for a rayon pool, where the
    /// kernels run in that pool.
    static THIS_THREAD: Option<rayon::ThreadPool> = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .use_current_thread()
        .build()
        .ok();
}

impl Op for DirectConv {
    fn name(&self) -> StaticName {
        match *self.weight {
            Weight::Packed(_) => "WardDirectConv".into(),
            Weight::Depthwise(_) if self.relu => "WardDepthwiseConvRelu".into(),
            Weight::Depthwise(_) => "WardDepthwiseConv".into(),
        }
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.geometry)])
    }

    op_as_typed_op!();
}

impl EvalOp for DirectConv {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == 1, "takes one input, got {}", inputs.len());
        let g = &self.geometry;
        let mut output = Tensor::zero::<f32>(&output_shape(g, self.unbatched))?;
        {
            let plain = inputs[0].try_as_plain_ram()?;
            let x = plain.as_slice::<f32>()?;
            let mut out = output.try_as_plain_ram_mut()?;
            let y = out.as_slice_mut::<f32>()?;
            let bias = self.bias.as_deref();
            let mut run = move || match &*self.weight {
                Weight::Packed(w) => g.forward_packed(x, w, bias, y),
                Weight::Depthwise(w) => depthwise::forward(g, x, w, bias, self.relu, y),
            };
            let done = match current_tract_executor() {
                Executor::MultiThread(pool) => pool.install(run),
                _ => THIS_THREAD.with(|pool| match pool {
                    Some(pool) => pool.install(run),
                    None => run(),
                }),
            };
            done.map_err(|e| format_err!("{e}"))?;
        }
        Ok(tvec![output.into_tvalue()])
    }
}

impl TypedOp for DirectConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "takes one input");
        Ok(tvec![
            DatumType::F32.fact(output_shape(&self.geometry, self.unbatched))
        ])
    }

    as_op!();
}
