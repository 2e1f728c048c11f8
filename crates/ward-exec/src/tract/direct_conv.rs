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
use tract_onnx::tract_core::ops::binary::{OptBinByScalar, TypedBinOp};
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::DataFormat;
use ward_kernels::conv::{Conv2d, ConvWindow, PackedWeights};
use ward_kernels::depthwise;
use ward_kernels::planar::{self, InputMap, MappedInput, PlanarWeights};
use ward_kernels::winograd::{self, WinogradWeights};
use ward_kernels::Isa;

use super::optimizer::{self, Rewriter, Wire};
use super::shared_weights::{self, Cache, Key};
use crate::weights::WeightsId;

/// tract's optimisation with ward's convolutions: declutter (a convolution's kernel and
/// bias become constants, any batch norm folded in), strided picks merged, large region
/// heads run by blocks (`region_heads`), then [`adopt`], then per-channel
/// constants of batched binary ops tiled along the batch (`batch_consts`), then the
/// batched convolutions left to tract whose im2col would be large, or any on a plan of
/// more than one of `threads`, run per sample (`per_sample_conv`), then codegen for the
/// rest.
pub(crate) fn optimize(
    model: &mut TypedModel,
    weights: WeightsId,
    threads: usize,
    runs: Runs,
) -> TractResult<()> {
    optimizer::declutter(model)?;
    super::downsample::merge(model)?;
    super::region_heads::split(model, weights, threads)?;
    lower(model, weights, threads, runs)
}

/// How many times a plan runs each of its layers: once (a plan built for a single run, a
/// whole `ward predict`), or many (an executable's plans, kept for its next run: a served
/// model, a benchmark; and the one-sample and one-block plans that run many times in one
/// run of theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runs {
    Once,
    Many,
}

/// What [`optimize`] does once the model is decluttered and its region heads split:
/// [`adopt`], the batch constants tiled, the large or threaded batched convolutions run
/// per sample, then tract's codegen.
pub(crate) fn lower(
    model: &mut TypedModel,
    weights: WeightsId,
    threads: usize,
    runs: Runs,
) -> TractResult<()> {
    adopt(model, weights, runs)?;
    super::batch_consts::tile(model)?;
    super::per_sample_conv::adopt(model, weights, threads)?;
    optimizer::codegen(model)
}

/// Every convolution of `model` (decluttered) that [`DirectConv`] covers becomes one, and
/// takes in a ReLU that alone reads its output (in its last pass); a
/// pointwise one (tract's declutter leaves every 1×1 convolution a product) takes the
/// bias and ReLU after it. Their laid-out weights are those of the other plans of
/// `weights` where one is alive ([`shared_weights`]). A plan that `runs` its layers once
/// transforms Winograd's weights on the call ([`transforms_on_call`]).
pub(crate) fn adopt(model: &mut TypedModel, weights: WeightsId, runs: Runs) -> TractResult<()> {
    let mut rewriter = Rewriter::of(model);
    for id in 0..model.nodes.len() {
        if let Some((op, last, data)) = DirectConv::covering_product(model, id, weights)? {
            rewriter.replace(model, last, op, vec![Wire::Outlet(data)])?;
            continue;
        }
        let Some(mut op) = DirectConv::covering(model, id, weights, runs)? else {
            continue;
        };
        let input = Wire::Outlet(model.nodes[id].inputs[0]);
        match relu_after(model, id)? {
            Some(relu) => {
                op.relu = true;
                rewriter.replace(model, relu, op, vec![input])?;
            }
            _ => rewriter.replace(model, id, op, vec![input])?,
        }
    }
    Ok(())
}

/// Takes into each of ward's convolutions the ReLU that alone reads its output once
/// tract's codegen has made it an op by a scalar: the ReLU that [`super::fusion`] moved
/// before a concatenation of convolutions (SqueezeNet's fire modules apply one ReLU to
/// both expand branches, concatenated), which [`adopt`] could not see.
pub(crate) fn absorb_relus(model: &mut TypedModel) -> TractResult<()> {
    let mut rewriter = Rewriter::of(model);
    for id in 0..model.nodes.len() {
        let Some(conv) = model.nodes[id].op_as::<DirectConv>() else {
            continue;
        };
        if conv.relu {
            continue;
        }
        let Some(relu) = relu_after(model, id)? else {
            continue;
        };
        let mut op = conv.clone();
        op.relu = true;
        let input = Wire::Outlet(model.nodes[id].inputs[0]);
        rewriter.replace(model, relu, op, vec![input])?;
    }
    model.compact()
}

/// The node that is the only reader of node `id`'s output, when it is `max(·, 0)` (ONNX's
/// `Relu`, MXNet's `Activation(relu)`) of the same shape and `id`'s output is not one of
/// the model's.
fn relu_after(model: &TypedModel, id: usize) -> TractResult<Option<usize>> {
    let Some((node, other)) = binary_reader(model, id, "Max")? else {
        return Ok(None);
    };
    Ok(
        (other == 1 && super::relu::is_zero(model.outlet_fact(node.inputs[1])?)?)
            .then_some(node.id),
    )
}

/// The node that is the only reader of node `id`'s output, when it adds one constant per
/// output channel (`[o, 1, 1]` after any leading 1s, for an output `[(n,) o, h, w]`) and
/// keeps the shape, and `id`'s output is not one of the model's; with that constant.
fn bias_after(model: &TypedModel, id: usize) -> TractResult<Option<(usize, Arc<[f32]>)>> {
    let Some((node, other)) = binary_reader(model, id, "Add")? else {
        return Ok(None);
    };
    let output = model.outlet_fact(id.into())?;
    let Some(&[channels, _, _]) = output
        .shape
        .as_concrete()
        .map(|s| &s[s.len().saturating_sub(3)..])
    else {
        return Ok(None);
    };
    let Some(value) = &model.outlet_fact(node.inputs[other])?.konst else {
        return Ok(None);
    };
    if value.rank() > output.rank() {
        return Ok(None);
    }
    Ok(per_channel(value, channels, false)?.map(|bias| (node.id, bias)))
}

/// `value`'s one float per channel of an NCHW (or CHW) tensor of `channels` channels: a
/// constant of shape `[channels, 1, 1]` after any leading 1s, or with `scalar`, one value
/// of any shape of 1s, repeated.
fn per_channel(value: &Tensor, channels: usize, scalar: bool) -> TractResult<Option<Arc<[f32]>>> {
    let shape = value.shape();
    if value.datum_type() != f32::datum_type() {
        return Ok(None);
    }
    let values = value.try_as_plain_ram()?;
    let values = values.as_slice::<f32>()?;
    if scalar && shape.iter().all(|&d| d == 1) {
        return Ok(values.first().map(|&v| vec![v; channels].into()));
    }
    let leading = shape.len().saturating_sub(3);
    if shape.len() < 3
        || shape[..leading].iter().any(|&d| d != 1)
        || shape[leading..] != [channels, 1, 1]
    {
        return Ok(None);
    }
    Ok(Some(values.into()))
}

/// A batch norm and a ReLU before a pointwise convolution, taken into its input read
/// ([`planar::forward_mapped`]): the map's values by input channel.
#[derive(Debug)]
struct OwnedMap {
    scale: Arc<[f32]>,
    shift: Option<Arc<[f32]>>,
    floor: Arc<[f32]>,
}

/// What produces `data` (of `channels` channels), when it is `max(x·scale (+ shift),
/// floor)` with per-channel constants (the floor maybe one value), each step read only by
/// the next and the last only by the convolution, none an output of the model: DenseNet's
/// pre-activation batch norm and ReLU as tract's declutter leaves them. With `x` and the
/// map.
fn map_before(
    model: &TypedModel,
    data: OutletId,
    channels: usize,
) -> TractResult<Option<(OutletId, OwnedMap)>> {
    let Some((max, floor)) = binary_producer(model, data, "Max")? else {
        return Ok(None);
    };
    let Some(floor) = per_channel(&floor, channels, true)? else {
        return Ok(None);
    };
    let mut below = model.nodes[max].inputs[0];
    let mut shift = None;
    if let Some((add, value)) = binary_producer(model, below, "Add")? {
        let Some(value) = per_channel(&value, channels, false)? else {
            return Ok(None);
        };
        shift = Some(value);
        below = model.nodes[add].inputs[0];
    }
    let Some((mul, scale)) = binary_producer(model, below, "Mul")? else {
        return Ok(None);
    };
    let Some(scale) = per_channel(&scale, channels, false)? else {
        return Ok(None);
    };
    let x = model.nodes[mul].inputs[0];
    let (x_fact, data_fact) = (model.outlet_fact(x)?, model.outlet_fact(data)?);
    if x_fact.shape != data_fact.shape || x_fact.datum_type != DatumType::F32 {
        return Ok(None);
    }
    Ok(Some((
        x,
        OwnedMap {
            scale,
            shift,
            floor,
        },
    )))
}

/// The node that produces `outlet`, when it is the binary op `name` of a value and a
/// constant, `outlet` is read by one node only and is not an output of the model: the
/// node, whose input 0 is then the value (tract's declutter puts the constant second),
/// and the constant.
fn binary_producer(
    model: &TypedModel,
    outlet: OutletId,
    name: &str,
) -> TractResult<Option<(usize, Arc<Tensor>)>> {
    if model.outlet_successors(outlet).len() != 1 || model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    let node = &model.nodes[outlet.node];
    let is_op = binary_op_name(node).is_some_and(|op| op == name);
    let [value, constant] = node.inputs.as_slice() else {
        return Ok(None);
    };
    let (Some(konst), None) = (
        model.outlet_fact(*constant)?.konst.clone(),
        &model.outlet_fact(*value)?.konst,
    ) else {
        return Ok(None);
    };
    Ok(is_op.then_some((node.id, konst)))
}

/// The name of `node`'s binary op (`Add`, `Max`, …) as declutter leaves it, or as codegen
/// makes an op by a scalar of it.
fn binary_op_name(node: &tract_onnx::prelude::TypedNode) -> Option<&'static str> {
    match (node.op_as::<TypedBinOp>(), node.op_as::<OptBinByScalar>()) {
        (Some(op), _) => Some(op.0.name()),
        (_, Some(op)) => Some(op.binop.name()),
        _ => None,
    }
}

/// The only reader of node `id`'s output when it is the binary op `name` (as declutter
/// leaves it, or as codegen makes an op by a scalar of it) of that output and another
/// value, with the same shape out, and `id`'s output is not one of the model's; with the
/// other value's input slot.
fn binary_reader<'m>(
    model: &'m TypedModel,
    id: usize,
    name: &str,
) -> TractResult<Option<(&'m tract_onnx::prelude::TypedNode, usize)>> {
    let output = OutletId::new(id, 0);
    let readers = model.outlet_successors(output);
    if readers.len() != 1 || model.output_outlets()?.contains(&output) {
        return Ok(None);
    }
    let node = &model.nodes[readers[0].node];
    let is_op = binary_op_name(node).is_some_and(|op| op == name)
        && model.outlet_fact(OutletId::new(node.id, 0))?.shape == model.outlet_fact(output)?.shape;
    // `x op x` reads the output twice: no other value.
    match node.inputs.as_slice() {
        [a, b] if is_op && *a == output && *b != output => Ok(Some((node, 1))),
        [a, b] if is_op && *a != output && *b == output => Ok(Some((node, 0))),
        _ => Ok(None),
    }
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
    /// Whether a ReLU follows in the kernel's last pass.
    relu: bool,
    /// A batch norm and ReLU before a pointwise convolution, applied as it reads its input.
    input_map: Option<Arc<OwnedMap>>,
}

/// A [`DirectConv`]'s weight, and so its kernel.
#[derive(Debug)]
enum Weight {
    /// Packed in strips for the direct kernels.
    Packed(PackedWeights),
    /// A depthwise convolution's OIHW weight, as it is.
    Depthwise(Box<[f32]>),
    /// In panels for `ward_kernels::planar` (a pointwise convolution's among them).
    Planar(PlanarWeights),
    /// Transformed for `ward_kernels::winograd` (a 3×3 stride-1 convolution).
    Winograd(WinogradWeights),
    /// A 3×3 stride-1 convolution's OIHW weight, as it is, transformed for
    /// `ward_kernels::winograd` on each call ([`transforms_on_call`]).
    WinogradOnCall(Box<[f32]>),
}

impl PartialEq for DirectConv {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weight, &other.weight)
    }
}

impl Eq for DirectConv {}

impl DirectConv {
    /// Node `id`'s product, with the bias and ReLU that follow it, if it is a pointwise
    /// convolution as tract's declutter leaves one: an `EinSum` of a constant float
    /// weight `[o, i]` and float data `[n, i, h, w]` (or one image's `[i, h, w]`) into
    /// `[n, o, h, w]` (`oi,nihw->nohw`); then maybe its only reader adding a constant per
    /// output channel ([`bias_after`]), then maybe `max(·, 0)` ([`relu_after`]). With the
    /// last node it covers and the product's input slot of the data.
    ///
    /// Why: tract runs that product at batch 1 as a packed matrix product (within 10 % of
    /// `ward_kernels::planar` on MobileNet's deep layers, 2× slower on its shallow
    /// first ones), and over a batch it moves the channels last or runs image by image
    /// (`per_sample_conv`), copying each image in and out.
    fn covering_product(
        model: &TypedModel,
        id: usize,
        weights: WeightsId,
    ) -> TractResult<Option<(DirectConv, usize, OutletId)>> {
        let node = &model.nodes[id];
        let Some(einsum) = node.op_as::<EinSum>() else {
            return Ok(None);
        };
        if einsum.q_params.is_some()
            || einsum.operating_dt != DatumType::F32
            || node.inputs.len() != 2
        {
            return Ok(None);
        }
        // tract's declutter writes the weight first, or (over a large batch) last.
        let slot = usize::from(model.outlet_fact(node.inputs[0])?.konst.is_none());
        let weight = model.outlet_fact(node.inputs[slot])?;
        let input = model.outlet_fact(node.inputs[1 - slot])?;
        let (Some(kernel), Some(shape), Some(out_shape)) = (
            &weight.konst,
            input.shape.as_concrete(),
            model.outlet_fact(id.into())?.shape.as_concrete(),
        ) else {
            return Ok(None);
        };
        // tract's declutter may drop a batch of one from the data or the output alone
        // (`oi,nihw->ohw`, `oi,ihw->nohw`): the same product on one image.
        let input_shape = match *shape {
            [n, c, h, w] => [n, c, h, w],
            [c, h, w] => [1, c, h, w],
            _ => return Ok(None),
        };
        let (data_batched, unbatched) = (shape.len() == 4, out_shape.len() == 3);
        if input.datum_type != DatumType::F32
            || kernel.datum_type() != DatumType::F32
            || kernel.rank() != 2
            || kernel.shape()[1] != input_shape[1]
            || (data_batched == unbatched && input_shape[0] != 1)
            || !is_pointwise_product(einsum, slot, data_batched, !unbatched)
        {
            return Ok(None);
        }
        let window = ConvWindow {
            out_channels: kernel.shape()[0],
            kernel: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            dilation: [1, 1],
            groups: 1,
        };
        let Ok(geometry) = Conv2d::new(input_shape, window) else {
            return Ok(None);
        };
        if !takes(Form::Planar, false) || *out_shape != *output_shape(&geometry, unbatched) {
            return Ok(None);
        }
        let kernel = kernel.try_as_plain_ram()?;
        let Some(weight) = Form::Planar.laid_out(weights, &geometry, kernel.as_slice::<f32>()?)
        else {
            return Ok(None);
        };
        let (mut last, mut bias) = (id, None);
        if let Some((add, value)) = bias_after(model, last)? {
            (last, bias) = (add, Some(value));
        }
        let relu = match relu_after(model, last)? {
            Some(max) => {
                last = max;
                true
            }
            None => false,
        };
        let mut data = node.inputs[1 - slot];
        let mut input_map = None;
        if let Some((x, map)) = map_before(model, data, geometry.in_channels)? {
            (data, input_map) = (x, Some(Arc::new(map)));
        }
        let op = DirectConv {
            geometry,
            weight,
            bias,
            unbatched,
            relu,
            input_map,
        };
        Ok(Some((op, last, data)))
    }

    /// Node `id`'s convolution, if it is one the direct kernels cover.
    fn covering(
        model: &TypedModel,
        id: usize,
        weights: WeightsId,
        runs: Runs,
    ) -> TractResult<Option<DirectConv>> {
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
        if !Isa::has_vector_kernels() || *out_shape != *output_shape(&geometry, unbatched) {
            return Ok(None);
        }
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
        let kernel = kernel.cast_to::<f32>()?;
        let kernel = kernel.try_as_plain_ram()?;
        let kernel = kernel.as_slice::<f32>()?;
        let (out, inp) = (spec.output_channels, spec.input_channels);
        let depth = inp / conv.group * window.kernel[0] * window.kernel[1];
        // A shallow sum or a narrow output leaves the direct kernels' tiles mostly
        // bookkeeping (but for an image's stem, whose im2col product is shallower still):
        // with every convolution of at least 128 deep and 32 wide taken, squeezenet1.1
        // ran slower than on tract's products (its 1×1 expansions are 16 to 64 deep, its
        // squeezes 16 to 64 wide); at 256 and 64 it ran as fast, and ResNet-18 kept all
        // but its 7×7 stem (147 deep) on the direct kernels.
        let stem = inp <= MAX_STEM_CHANNELS;
        let direct_refuses = (depth < MIN_DEPTH && !stem) || out / conv.group < MIN_OUTPUT_CHANNELS;
        let form = if depthwise {
            if !takes(Form::Depthwise, stem) {
                return Ok(None);
            }
            Form::Depthwise
        } else if prefers_winograd(&geometry) {
            if runs == Runs::Once || transforms_on_call(&geometry) {
                Form::WinogradOnCall
            } else {
                Form::Winograd
            }
        } else if direct_refuses {
            if !takes(Form::Planar, stem) {
                return Ok(None);
            }
            // In one group the planar kernel's tiles of 8 channels by a row's pixels
            // serve any width and depth (DenseNet's 128 → 32 layers at 7², MobileNet's
            // 3 → 32 stride-2 stem).
            if conv.group != 1 {
                return Ok(None);
            }
            Form::Planar
        } else if geometry.runs_direct() {
            Form::Packed
        } else if stem && conv.group == 1 && takes(Form::Planar, stem) {
            // Without the direct kernels (AVX2 alone), a stem of any width runs on the
            // planar kernel: SqueezeNet's 3 → 64 3×3 stride-2 stem took tract's im2col
            // and product 3.6 ms at batch 1 (4× MXNet's) and 17–32 ms at batch 8 on one
            // thread, the planar kernel 1.0–1.4 ms an image; ResNet-18's 7×7 stem ran
            // as fast on either.
            Form::Planar
        } else {
            return Ok(None);
        };
        let Some(weight) = form.laid_out(weights, &geometry, kernel) else {
            return Ok(None);
        };
        Ok(Some(DirectConv {
            geometry,
            weight,
            bias,
            unbatched,
            relu: false,
            input_map: None,
        }))
    }
}

/// The laid-out weights of every plan's convolutions, shared by the plans of one weight
/// set (a model's plans for each batch size).
static LAID_OUT: Cache<Weight> = Cache::new();

/// How a [`DirectConv`]'s weight is laid out, and so which kernel runs it.
#[derive(Debug, Clone, Copy)]
enum Form {
    Packed,
    Depthwise,
    Planar,
    Winograd,
    WinogradOnCall,
}

impl Form {
    /// `kernel` (OIHW) of the convolution `g` laid out in this form, or the one a live
    /// plan of the weight set `weights` already laid out ([`shared_weights`]); `None`
    /// when the kernel does not fit the form.
    fn laid_out(self, weights: WeightsId, g: &Conv2d, kernel: &[f32]) -> Option<Arc<Weight>> {
        let (out, inp) = (g.out_channels, g.in_channels);
        let name = match self {
            Form::Packed => "packed",
            Form::Depthwise => "depthwise",
            Form::Planar => "planar",
            Form::Winograd => "winograd",
            Form::WinogradOnCall => "winograd-on-call",
        };
        let shape = [out, inp, g.kernel[0], g.kernel[1], g.groups];
        let key = Key::of(weights, name, &shape, kernel);
        shared_weights::shared(&LAID_OUT, key, || match self {
            Form::Packed => g.pack(kernel).ok().map(Weight::Packed),
            Form::Depthwise => {
                (kernel.len() == g.weight_len()).then(|| Weight::Depthwise(kernel.into()))
            }
            Form::Planar => PlanarWeights::pack(kernel, out, g.weight_len() / out)
                .ok()
                .map(Weight::Planar),
            Form::Winograd => WinogradWeights::pack(kernel, out, inp)
                .ok()
                .map(Weight::Winograd),
            Form::WinogradOnCall => {
                (kernel.len() == g.weight_len()).then(|| Weight::WinogradOnCall(kernel.into()))
            }
        })
    }
}

/// The fewest tiles (4×4 blocks of outputs over the batch) a convolution needs to run on
/// Winograd's kernel, and the fewest input and output channels: with fewer, its products
/// are too narrow to hide reading the transformed weight (36 points where a 3×3 kernel
/// has 9 taps) and transforming each tile. By `ward-bench-conv3x3` on one Zen 5 core
/// (docs/BENCHMARKS.md, "Winograd"): from 16 tiles up (a 14² image, a 7² one at batch 4)
/// it takes 0.4–0.8× the direct kernels' time on ResNet-18's layers; at 8 tiles (7² at
/// batch 2) 1.8×, at 4 (7² at batch 1) 3–4×.
const MIN_WINOGRAD_TILES: usize = 16;
const MIN_WINOGRAD_CHANNELS: usize = 16;

/// Whether plans take ward's kernel for `form` on this CPU (for an image's `stem`, a
/// convolution of at most [`MAX_STEM_CHANNELS`] inputs): every form on AVX-512. With AVX2
/// alone (the kernels' AVX2 instances, 8 lanes), Winograd's, the depthwise kernel and
/// the planar kernel on stems (of any width), which ran faster than tract's
/// (docs/BENCHMARKS.md, 2026-12-07, Zen 3: MobileNet 1.0 at batch 1 on one thread in 25
/// ms against 34 with tract's depthwise convolution and stem); the planar kernel
/// elsewhere and the pointwise one lost to tract's packed AVX2 products (MobileNet 1.0's
/// 1×1 layers, DenseNet-121 at 1.62× MXNet's time against 1.01×).
fn takes(form: Form, stem: bool) -> bool {
    match Isa::detected() {
        Isa::Avx512 => true,
        Isa::Avx2 => match form {
            Form::Winograd | Form::WinogradOnCall | Form::Depthwise => true,
            Form::Planar => stem,
            Form::Packed => false,
        },
        Isa::Portable => false,
    }
}

/// The fewest tiles of one call, and the fewest bytes of its transformed weight, at which
/// a Winograd convolution keeps its weight as it is and transforms it on each call
/// ([`transforms_on_call`]).
const MIN_ON_CALL_TILES: usize = 1024;
const MIN_ON_CALL_WEIGHT_BYTES: usize = 8 << 20;

/// Whether the Winograd convolution `g` transforms its weight on each call instead of
/// keeping it transformed: where the kept form would be large (36 points per pair of
/// channels where the kernel has 9 taps, 4× the kernel's bytes) and a call's products
/// so many that the transform is a small part of them. An R-CNN head runs ResNet's last
/// stage on 300 or 1000 regions, 1200 or 4000 tiles a call: kept, its three 512 × 512
/// layers held 113 MB for the plan's life, and Mask R-CNN ResNet-18 peaked at 762 MB
/// against 632 without Winograd's kernel. Transforming a 512 × 512 weight took 40–75 ms
/// on a Zen 3 core against a 4000-tile call's 1.4–1.9 s; in Faster R-CNN ResNet-50 over
/// 300 regions the Winograd layers' time over the others' was 0.14–0.15 transforming on
/// each call and 0.15–0.16 keeping the transform (two runs each), within this host's
/// noise. The transformed weight lives for the call alone.
///
/// A plan built for one run ([`Runs::Once`], a whole `ward predict`) transforms every
/// Winograd weight on its call whatever its size: the transform is made once either way,
/// and the plan then holds each only while its layer runs. On an AVX2 host, where the
/// 3×3 layers of 16 to 1000 tiles are Winograd's, the kept transforms were most of a
/// segmentation model's memory (PSPNet ResNet-50: 350 MB, for a 190 MB package).
fn transforms_on_call(g: &Conv2d) -> bool {
    let (rows, cols) = winograd::tiles(g);
    let kept = g.out_channels * g.in_channels * 36 * size_of::<f32>();
    g.batch * rows * cols >= MIN_ON_CALL_TILES && kept >= MIN_ON_CALL_WEIGHT_BYTES
}

/// The largest transformed weight a Winograd layer may have: 4× its 3×3 kernel (36 points
/// where the kernel has 9 taps). A segmentation head's 3×3 layer over a pyramid's
/// concatenation (PSPNet's 4096 → 512, FCN's and DANet's 2048 → 512) would transform a
/// 75 or 38 MB kernel into 302 or 151 MB, alive at least while the layer runs: PSPNet on
/// an AVX2 host peaked at 646 MiB for a 190 MB package. The largest layer of issue 18's
/// models, ResNet-18's 512 × 512, transforms into 38 MB.
const MAX_WINOGRAD_WEIGHT_BYTES: usize = 64 << 20;

/// Whether `g` runs faster on Winograd's F(4×4, 3×3) than on the direct kernels: a 3×3
/// stride-1 convolution in one group, wide and deep enough, over enough tiles, whose
/// transformed weight is at most [`MAX_WINOGRAD_WEIGHT_BYTES`].
fn prefers_winograd(g: &Conv2d) -> bool {
    let (rows, cols) = winograd::tiles(g);
    let transformed = g
        .out_channels
        .saturating_mul(g.in_channels)
        .saturating_mul(36 * size_of::<f32>());
    winograd::covers(g)
        && g.batch * rows * cols >= MIN_WINOGRAD_TILES
        && g.in_channels >= MIN_WINOGRAD_CHANNELS
        && g.out_channels >= MIN_WINOGRAD_CHANNELS
        && transformed <= MAX_WINOGRAD_WEIGHT_BYTES
}

/// Whether `einsum` is `oi,nihw->nohw` with the weight its input `slot` and the data the
/// other, the batch axis `n` present in the data only when `data_batched` and in the
/// output only when `out_batched` (`oi,ihw->ohw` for one image without it): each of its
/// axes sits at exactly the places of one of those letters.
fn is_pointwise_product(
    einsum: &EinSum,
    slot: usize,
    data_batched: bool,
    out_batched: bool,
) -> bool {
    let (d, b) = (usize::from(data_batched), usize::from(out_batched));
    let (o, i) = ([b], [d]);
    let (h_in, w_in, h_out, w_out) = ([d + 1], [d + 2], [b + 1], [b + 2]);
    let (n_in, n_out): (&[usize], &[usize]) = (&[0][..d], &[0][..b]);
    // Per letter: its places in the weight, the data and the output.
    let mut letters: Vec<[&[usize]; 3]> = vec![
        [&[0], &[], &o],      // o
        [&[1], &i, &[]],      // i, summed
        [&[], &h_in, &h_out], // h
        [&[], &w_in, &w_out], // w
    ];
    if data_batched || out_batched {
        letters.push([&[], n_in, n_out]); // n
    }
    let axes: Vec<_> = einsum.axes.iter_all_axes().collect();
    axes.len() == letters.len()
        && axes.iter().all(|axis| {
            axis.inputs.len() == 2
                && axis.outputs.len() == 1
                && letters.contains(&[
                    axis.inputs[slot].as_slice(),
                    axis.inputs[1 - slot].as_slice(),
                    axis.outputs[0].as_slice(),
                ])
        })
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

/// `run`'s result, run in the plan's rayon pool: the executor's, or for a plan on one
/// thread the calling thread as a pool of its own ([`THIS_THREAD`]), so that a kernel
/// that splits its work with rayon uses the plan's threads and no others.
pub(crate) fn in_plan_pool<R: Send>(run: impl FnOnce() -> R + Send) -> R {
    match current_tract_executor() {
        Executor::MultiThread(pool) => pool.install(run),
        _ => THIS_THREAD.with(|pool| match pool {
            Some(pool) => pool.install(run),
            None => run(),
        }),
    }
}

impl Op for DirectConv {
    fn name(&self) -> StaticName {
        match *self.weight {
            Weight::Planar(_) if self.input_map.is_some() && self.relu => {
                "WardMappedPointwiseConvRelu".into()
            }
            Weight::Planar(_) if self.input_map.is_some() => "WardMappedPointwiseConv".into(),
            Weight::Planar(_) if self.geometry.kernel == [1, 1] && self.relu => {
                "WardPointwiseConvRelu".into()
            }
            Weight::Planar(_) if self.geometry.kernel == [1, 1] => "WardPointwiseConv".into(),
            Weight::Planar(_) if self.relu => "WardPlanarConvRelu".into(),
            Weight::Planar(_) => "WardPlanarConv".into(),
            Weight::Packed(_) if self.relu => "WardDirectConvRelu".into(),
            Weight::Packed(_) => "WardDirectConv".into(),
            Weight::Depthwise(_) if self.relu => "WardDepthwiseConvRelu".into(),
            Weight::Depthwise(_) => "WardDepthwiseConv".into(),
            Weight::Winograd(_) if self.relu => "WardWinogradConvRelu".into(),
            Weight::Winograd(_) => "WardWinogradConv".into(),
            Weight::WinogradOnCall(_) if self.relu => "WardWinogradOnCallConvRelu".into(),
            Weight::WinogradOnCall(_) => "WardWinogradOnCallConv".into(),
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
            let run = move || match &*self.weight {
                Weight::Packed(w) => g.forward_packed_relu(x, w, bias, self.relu, y),
                Weight::Depthwise(w) => depthwise::forward(g, x, w, bias, self.relu, y),
                Weight::Planar(w) => match &self.input_map {
                    Some(map) => {
                        let map = InputMap {
                            scale: &map.scale,
                            shift: map.shift.as_deref(),
                            floor: &map.floor,
                        };
                        let pixels = g.in_h * g.in_w;
                        let input = MappedInput { x, map };
                        planar::forward_mapped(g.batch, pixels, input, w, bias, self.relu, y)
                    }
                    None => planar::forward_conv(g, x, w, bias, self.relu, y),
                },
                Weight::Winograd(w) => winograd::forward(g, x, w, bias, self.relu, y),
                Weight::WinogradOnCall(kernel) => {
                    WinogradWeights::pack(kernel, g.out_channels, g.in_channels)
                        .and_then(|w| winograd::forward(g, x, &w, bias, self.relu, y))
                }
            };
            in_plan_pool(run).map_err(|e| format_err!("{e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conv3x3(batch: usize, in_channels: usize, out_channels: usize, side: usize) -> Conv2d {
        let window = ConvWindow {
            out_channels,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
        };
        Conv2d::new([batch, in_channels, side, side], window).unwrap()
    }

    /// An R-CNN head's 512 × 512 layers over 1000 or 300 regions transform their weight
    /// on each call; under 1024 tiles, a narrower weight over many tiles, and an image's
    /// layers keep it transformed.
    #[test]
    fn only_large_weights_over_many_tiles_are_transformed_on_each_call() {
        assert!(transforms_on_call(&conv3x3(1000, 512, 512, 7)));
        assert!(transforms_on_call(&conv3x3(300, 512, 512, 7)));
        assert!(transforms_on_call(&conv3x3(256, 512, 512, 7)));
        assert!(!transforms_on_call(&conv3x3(255, 512, 512, 7)));
        // 128 × 128 × 36 × 4 bytes is 2.4 MB however many tiles.
        assert!(!transforms_on_call(&conv3x3(64, 128, 128, 56)));
        assert!(!transforms_on_call(&conv3x3(8, 512, 512, 7)));
        assert!(!transforms_on_call(&conv3x3(1, 256, 256, 14)));
    }

    /// ResNet's widest 3×3 layers run on Winograd's kernel; a segmentation head's 3×3 layer
    /// over a pyramid's concatenation, whose transformed weight would pass 64 MiB, does
    /// not, over any number of tiles.
    #[test]
    fn a_weight_that_would_transform_past_the_cap_is_not_winograds() {
        assert!(prefers_winograd(&conv3x3(1, 512, 512, 14)));
        assert!(prefers_winograd(&conv3x3(1, 256, 256, 60)));
        // 2048 × 512 × 36 × 4 bytes is 151 MB; 4096 × 512, 302 MB.
        assert!(!prefers_winograd(&conv3x3(1, 2048, 512, 60)));
        assert!(!prefers_winograd(&conv3x3(1, 4096, 512, 60)));
        // 911 × 512 × 36 × 4 bytes is just past 64 MiB; 910 × 512 just within.
        assert!(!prefers_winograd(&conv3x3(1, 911, 512, 60)));
        assert!(prefers_winograd(&conv3x3(1, 910, 512, 60)));
    }

    /// Transformed on each call, a weight gives the bits of the same weight transformed
    /// once, with a bias and a ReLU (more outputs than inputs, so a swap of the two
    /// counts would show).
    #[test]
    fn a_weight_transformed_on_each_call_gives_the_kept_forms_bits() {
        if !Isa::has_vector_kernels() {
            return;
        }
        let (batch, inp, out, side) = (2, 16, 24, 9);
        let geometry = conv3x3(batch, inp, out, side);
        let values = |len: usize, step: u64| -> Vec<f32> {
            (0..len as u64)
                .map(|i| ((i.wrapping_mul(step) % 1009) as f32 / 504.5) - 1.0)
                .collect()
        };
        let kernel = values(out * inp * 9, 7919);
        let x = values(geometry.input_len(), 31);
        let bias: Arc<[f32]> = values(out, 13).into();
        let run = |weight: Weight| {
            let op = DirectConv {
                geometry,
                weight: Arc::new(weight),
                bias: Some(bias.clone()),
                unbatched: false,
                relu: true,
                input_map: None,
            };
            let input = Tensor::from_shape(&[batch, inp, side, side], &x).unwrap();
            let mut outputs = op
                .eval_out_of_plan(tvec![input.into_tvalue()])
                .unwrap()
                .unwrap();
            let y = outputs.remove(0);
            let y = y.try_as_plain_ram().unwrap();
            y.as_slice::<f32>().unwrap().to_vec()
        };
        let kept = run(Weight::Winograd(
            WinogradWeights::pack(&kernel, out, inp).unwrap(),
        ));
        let on_call = run(Weight::WinogradOnCall(kernel.clone().into()));
        assert_eq!(kept.len(), batch * out * side * side);
        assert!(kept.iter().any(|v| *v > 0.0) && kept.contains(&0.0));
        assert!(kept
            .iter()
            .zip(&on_call)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
