//! The reference interpreter: runs any valid IR graph on the kernels of this module, in
//! f64, node by node in topological order. Every backend is checked against it operator by
//! operator (`ward-exec`'s conformance tests), and gradients can be checked against it by
//! finite differences.
//!
//! One dispatch from an operator to its kernel, as in `ward-exec`'s lowering; the
//! attribute types of the IR map onto the kernels' plain arguments here.

use ward_core::{DType, Tensor};

use super::activation::{self, LeakyReluKind as KLeaky, SoftmaxOutputMode as KSoftmaxMode};
use super::conv::{self, ConvParams, DeconvParams};
use super::detection;
use super::elementwise;
use super::norm::{self, BatchNormParams};
use super::order;
use super::pool::{self, PoolKind as KPool, PoolParams};
use super::reduce::{self, Reduction};
use super::resize;
use super::rnn::{self, RnnMode as KRnnMode, RnnWeights};
use super::shape::{self as kshape, PadMode as KPad};
use super::{dense, embedding, index, loss, sequence, Array, KernelError};
use crate::dtypes::{infer_dtypes, integer_result, is_integer};
use crate::ir::{Graph, InputRole, Node, Source};
use crate::ops::activation::{ActivationKind, LeakyReluKind};
use crate::ops::loss::{RegressionKind, SoftmaxOutputMode};
use crate::ops::pool::PoolKind;
use crate::ops::resize::ResizeTarget;
use crate::ops::rnn::{RnnMode, PARAMS_PER_CELL};
use crate::ops::shape::{FillDim, PadMode};
use crate::ops::Op;
use crate::GraphError;

/// Why the interpreter stopped: the node and what was wrong there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("node {node:?} ({op}): {reason}")]
    Node {
        node: String,
        op: &'static str,
        reason: String,
    },
    #[error("the graph takes {expected} data inputs and {params} parameters, got {inputs} and {weights}")]
    Arguments {
        expected: usize,
        params: usize,
        inputs: usize,
        weights: usize,
    },
    #[error("output {output:?} reads a value that was not computed")]
    Output { output: String },
    #[error("{0}")]
    Types(String),
}

impl From<GraphError> for InterpError {
    fn from(e: GraphError) -> Self {
        InterpError::Types(e.to_string())
    }
}

/// A tensor as the interpreter holds it.
pub fn array_of(t: &Tensor) -> Array {
    Array {
        shape: t.shape().to_vec(),
        data: t.to_f64_vec(),
    }
}

/// Runs `graph` with `weights` (one per parameter) on its data inputs (labels are not
/// fed) and returns its outputs.
pub fn run(graph: &Graph, weights: &[Tensor], data: &[Tensor]) -> Result<Vec<Array>, InterpError> {
    let params: Vec<Array> = weights.iter().map(array_of).collect();
    let data: Vec<Array> = data.iter().map(array_of).collect();
    run_arrays(graph, &params, &data)
}

/// [`run`] on arrays.
pub fn run_arrays(
    graph: &Graph,
    params: &[Array],
    data: &[Array],
) -> Result<Vec<Array>, InterpError> {
    let expected = graph
        .inputs
        .iter()
        .filter(|i| i.role == InputRole::Data)
        .count();
    if data.len() != expected || params.len() != graph.params.len() {
        return Err(InterpError::Arguments {
            expected,
            params: graph.params.len(),
            inputs: data.len(),
            weights: params.len(),
        });
    }
    let mut fed = data.iter();
    let inputs: Vec<Option<&Array>> = graph
        .inputs
        .iter()
        .map(|i| match i.role {
            InputRole::Data => fed.next(),
            InputRole::Label => None,
        })
        .collect();
    let types = infer_dtypes(graph)?;
    let mut values: Vec<Vec<Array>> = Vec::with_capacity(graph.nodes.len());
    for (index, node) in graph.nodes.iter().enumerate() {
        let ins: Vec<Option<&Array>> = node
            .inputs
            .iter()
            .map(|s| match *s {
                Source::Input(i) => inputs.get(i).copied().flatten(),
                Source::Param(p) => params.get(p),
                Source::Node(n, k) => values.get(n).and_then(|o| o.get(k)),
            })
            .collect();
        let in_types: Vec<DType> = node.inputs.iter().map(|s| types.of(*s)).collect();
        let outs = eval_node_typed(node, &ins, &in_types, types.node(index)).map_err(|reason| {
            InterpError::Node {
                node: node.name.clone(),
                op: node.op.name(),
                reason,
            }
        })?;
        values.push(outs);
    }
    graph
        .outputs
        .iter()
        .map(|o| {
            let value = match o.source {
                Source::Input(i) => inputs.get(i).copied().flatten(),
                Source::Param(p) => params.get(p),
                Source::Node(n, k) => values.get(n).and_then(|v| v.get(k)),
            };
            value.cloned().ok_or_else(|| InterpError::Output {
                output: o.name.clone(),
            })
        })
        .collect()
}

type R<T> = Result<T, String>;

fn kernel<T>(r: Result<T, KernelError>) -> R<T> {
    r.map_err(|e| e.to_string())
}

fn arg<'a>(ins: &[Option<&'a Array>], i: usize) -> R<&'a Array> {
    ins.get(i)
        .copied()
        .flatten()
        .ok_or_else(|| format!("input {i} is missing or is a label, which is not fed"))
}

/// The dims of a fill or arange, fixed or copied from an input's shape.
fn fill_shape(dims: &[FillDim], ins: &[Option<&Array>]) -> R<Vec<usize>> {
    dims.iter()
        .map(|d| match *d {
            FillDim::Fixed(n) => Ok(n),
            FillDim::Like { input, axis } => arg(ins, input)?
                .shape
                .get(axis)
                .copied()
                .ok_or_else(|| format!("input {input} has no dim {axis}")),
        })
        .collect()
}

fn one(a: Array) -> R<Vec<Array>> {
    Ok(vec![a])
}

/// [`eval_node`] with MXNet's integer semantics, for a node whose inputs and outputs have
/// the types [`infer_dtypes`] gives: a scalar operand is first converted to the data's
/// integer type (2.5 is 2 for int32 data), and each integer-typed output is converted
/// as MXNet converts a result computed in floating point ([`integer_result`]: a
/// division truncates, a `Cast` to int32 truncates).
pub fn eval_node_typed(
    node: &Node,
    ins: &[Option<&Array>],
    in_types: &[DType],
    out_types: &[DType],
) -> R<Vec<Array>> {
    let data = in_types.first().copied().filter(|t| is_integer(*t));
    let mut outs = match (&node.op, data) {
        (Op::Scalar(op), Some(t)) => {
            let mut op = *op;
            op.value = integer_result(t, op.value);
            let node = Node {
                op: op.into(),
                ..node.clone()
            };
            eval_node(&node, ins)?
        }
        _ => eval_node(node, ins)?,
    };
    for (out, &t) in outs.iter_mut().zip(out_types) {
        if is_integer(t) {
            out.data.iter_mut().for_each(|v| *v = integer_result(t, *v));
        }
    }
    Ok(outs)
}

/// A convolution's attributes as the kernel takes them.
pub fn conv_params(op: &crate::ops::conv::Conv) -> ConvParams {
    ConvParams {
        kernel: op.kernel.clone(),
        stride: op.stride.clone(),
        dilation: op.dilation.clone(),
        pad: op.pad.clone(),
        groups: op.groups,
    }
}

/// A deconvolution's attributes as the kernel takes them.
pub fn deconv_params(op: &crate::ops::conv::Deconv) -> DeconvParams {
    DeconvParams {
        kernel: op.kernel.clone(),
        stride: op.stride.clone(),
        dilation: op.dilation.clone(),
        pad: op.pad.clone(),
        adj: op.output_padding.clone(),
        groups: op.groups,
    }
}

/// A pooling's attributes as the kernel takes them.
pub fn pool_params(op: &crate::ops::pool::Pool) -> PoolParams {
    PoolParams {
        kind: match op.kind {
            PoolKind::Max => KPool::Max,
            PoolKind::Avg => KPool::Avg,
            PoolKind::Sum => KPool::Sum,
        },
        kernel: op.kernel.clone(),
        stride: op.stride.clone(),
        pad: op.pad.clone(),
        full: op.ceil,
        global: op.global,
        count_include_pad: op.count_include_pad,
    }
}

/// One node's outputs from its inputs (`None` for a label, which no forward pass reads).
/// The error is the reason, in words; [`run_arrays`] adds the node. Every value is computed
/// as a float: [`eval_node_typed`] adds MXNet's integer semantics.
pub fn eval_node(node: &Node, ins: &[Option<&Array>]) -> R<Vec<Array>> {
    let x = || arg(ins, 0);
    let bias = |has: bool| if has { arg(ins, 2).map(Some) } else { Ok(None) };
    let lengths = |has: bool| if has { arg(ins, 1).map(Some) } else { Ok(None) };
    match &node.op {
        Op::Conv(op) => one(kernel(conv::convolution(
            x()?,
            arg(ins, 1)?,
            bias(op.bias)?,
            &conv_params(op),
        ))?),
        Op::Deconv(op) => one(kernel(conv::deconvolution(
            x()?,
            arg(ins, 1)?,
            bias(op.bias)?,
            &deconv_params(op),
        ))?),
        Op::DeformableConv(op) => {
            let all = (0..ins.len()).map(|i| arg(ins, i)).collect::<R<Vec<_>>>()?;
            one(kernel(super::deform::deformable_conv(&all, op))?)
        }
        Op::Dense(op) => one(kernel(dense::fully_connected(
            x()?,
            arg(ins, 1)?,
            bias(op.bias)?,
            op.flatten,
        ))?),
        Op::Pool(op) => one(kernel(pool::pooling(x()?, &pool_params(op)))?),
        Op::BatchNorm(op) => one(kernel(norm::batch_norm_inference(
            x()?,
            arg(ins, 1)?,
            arg(ins, 2)?,
            arg(ins, 3)?,
            arg(ins, 4)?,
            &BatchNormParams {
                axis: op.axis,
                eps: op.eps,
                fix_gamma: op.fix_gamma,
            },
        ))?),
        Op::InstanceNorm(op) => one(kernel(norm::instance_norm(
            x()?,
            arg(ins, 1)?,
            arg(ins, 2)?,
            op.eps,
        ))?),
        Op::L2Normalization(op) => one(kernel(norm::l2_normalization(
            x()?,
            &op.axes(x()?.rank()),
            op.eps,
        ))?),
        Op::LayerNorm(op) => one(kernel(norm::layer_norm(
            x()?,
            arg(ins, 1)?,
            arg(ins, 2)?,
            op.axis,
            op.eps,
        ))?),
        Op::GroupNorm(op) => one(kernel(norm::group_norm(
            x()?,
            arg(ins, 1)?,
            arg(ins, 2)?,
            op.groups,
            op.eps,
        ))?),
        Op::Activation(op) => {
            let kind = match op.kind {
                ActivationKind::Relu => activation::ActivationKind::Relu,
                ActivationKind::Sigmoid => activation::ActivationKind::Sigmoid,
                ActivationKind::Tanh => activation::ActivationKind::Tanh,
                ActivationKind::Softrelu => activation::ActivationKind::Softrelu,
                ActivationKind::Softsign => activation::ActivationKind::Softsign,
            };
            one(kernel(activation::activation(x()?, kind))?)
        }
        Op::LeakyRelu(op) => {
            let (kind, gamma) = match op.kind {
                LeakyReluKind::Leaky { slope } => (KLeaky::Leaky { slope }, None),
                LeakyReluKind::Elu { slope } => (KLeaky::Elu { slope }, None),
                LeakyReluKind::Prelu => (KLeaky::Prelu, Some(arg(ins, 1)?)),
                LeakyReluKind::Selu => (KLeaky::Selu, None),
                LeakyReluKind::Gelu => (KLeaky::Gelu, None),
            };
            one(kernel(activation::leaky_relu(x()?, kind, gamma))?)
        }
        Op::Softmax(op) => one(kernel(if op.log {
            activation::log_softmax(x()?, op.axis, op.temperature)
        } else if op.use_length {
            activation::softmax_with_lengths(x()?, arg(ins, 1)?, op.axis, op.temperature)
        } else {
            activation::softmax(x()?, op.axis, op.temperature)
        })?),
        Op::SoftmaxOutput(op) => {
            let mode = match op.mode {
                SoftmaxOutputMode::Flatten => KSoftmaxMode::Flatten,
                SoftmaxOutputMode::Channel => KSoftmaxMode::MultiOutput,
                SoftmaxOutputMode::Last => KSoftmaxMode::PreserveShape,
            };
            one(kernel(activation::softmax_output(x()?, mode))?)
        }
        Op::RegressionOutput(op) => one(kernel(match op.kind {
            RegressionKind::Linear => loss::linear_regression_output(x()?),
            RegressionKind::Logistic => loss::logistic_regression_output(x()?),
            RegressionKind::Mae => loss::mae_regression_output(x()?),
        })?),
        Op::Dropout(_) => one(kernel(loss::dropout_inference(x()?))?),
        Op::MakeLoss(_) => one(kernel(loss::make_loss(x()?))?),
        Op::BlockGrad(_) => one(kernel(loss::block_grad(x()?))?),
        Op::Reshape(op) => {
            let x = x()?;
            let shape = op.output_shape(&x.shape)?;
            one(kernel(x.reshaped(shape))?)
        }
        Op::Flatten(_) => one(kernel(kshape::flatten(x()?))?),
        Op::Concat(op) => {
            let all = (0..ins.len()).map(|i| arg(ins, i)).collect::<R<Vec<_>>>()?;
            one(kernel(kshape::concat(&all, op.axis))?)
        }
        Op::SwapAxes(op) => one(kernel(kshape::swap_axes(x()?, op.axis1, op.axis2))?),
        Op::ExpandDims(op) => one(kernel(kshape::expand_dims(x()?, op.axis))?),
        Op::Squeeze(op) => {
            let x = x()?;
            let axes: Vec<i64> = op.axes.iter().map(|&a| a as i64).collect();
            one(kernel(kshape::squeeze(x, Some(&axes)))?)
        }
        Op::Transpose(op) => one(kernel(kshape::permuted(x()?, &op.perm))?),
        Op::Slice(op) => {
            let x = x()?;
            one(kernel(kshape::strided(x, &op.ranges(&x.shape)?))?)
        }
        Op::SliceAxis(op) => {
            let x = x()?;
            one(kernel(kshape::strided(x, &op.ranges(&x.shape)?))?)
        }
        Op::Split(op) => kernel(kshape::split(x()?, op.axis, op.outputs, op.squeeze)),
        Op::Stack(op) => {
            let all = (0..ins.len()).map(|i| arg(ins, i)).collect::<R<Vec<_>>>()?;
            one(kernel(kshape::stack(&all, op.axis))?)
        }
        Op::Pad(op) => {
            let mode = match op.mode {
                PadMode::Constant => KPad::Constant,
                PadMode::Edge => KPad::Edge,
                PadMode::Reflect => KPad::Reflect,
            };
            one(kernel(kshape::pad(x()?, mode, &op.pads, op.value))?)
        }
        Op::Fill(op) => one(kernel(kshape::fill(
            &fill_shape(&op.shape, ins)?,
            op.value,
        ))?),
        Op::Arange(op) => one(kernel(kshape::arange(&fill_shape(&op.shape, ins)?, |i| {
            f64::from(op.value(i))
        }))?),
        Op::OnesLike(_) => one(kernel(kshape::ones_like(x()?))?),
        Op::ShapeArray(_) => one(kernel(kshape::shape_array(x()?))?),
        Op::SizeArray(_) => one(kernel(kshape::size_array(x()?))?),
        Op::Binary(op) => one(kernel(elementwise::binary(
            x()?,
            arg(ins, 1)?,
            op.kind,
            op.broadcast,
        ))?),
        Op::AddN(_) => {
            let all = (0..ins.len()).map(|i| arg(ins, i)).collect::<R<Vec<_>>>()?;
            one(kernel(elementwise::add_n(&all))?)
        }
        Op::Scalar(op) => one(kernel(elementwise::scalar(x()?, op.kind, op.value))?),
        Op::Unary(op) => one(kernel(elementwise::unary(x()?, op.kind))?),
        Op::Cast(op) => one(kernel(elementwise::cast(x()?, op.to))?),
        Op::Clip(op) => one(kernel(elementwise::clip(x()?, op.min, op.max))?),
        Op::Where(_) => one(kernel(elementwise::where_(
            x()?,
            arg(ins, 1)?,
            arg(ins, 2)?,
        ))?),
        Op::Mean(op) => {
            let x = x()?;
            let axes = op.axes(x.shape.len())?;
            one(kernel(reduce::reduce_over(
                x,
                Reduction::Mean,
                &axes,
                op.keepdims,
            ))?)
        }
        Op::Reduce(op) => {
            let x = x()?;
            let axes = op.axes(x.shape.len())?;
            one(kernel(reduce::reduce_over(
                x,
                Reduction::Of(op.kind),
                &axes,
                op.keepdims,
            ))?)
        }
        Op::ArgReduce(op) => one(kernel(reduce::arg_reduce(
            x()?,
            op.kind,
            op.axis,
            op.keepdims,
        ))?),
        Op::Embedding(_) => one(kernel(embedding::embedding(x()?, arg(ins, 1)?))?),
        Op::SequenceLast(op) => one(kernel(sequence::sequence_last(
            x()?,
            lengths(op.use_sequence_length)?,
            op.axis,
        ))?),
        Op::SequenceMask(op) => one(kernel(sequence::sequence_mask(
            x()?,
            lengths(op.use_sequence_length)?,
            op.axis,
            op.value,
        ))?),
        Op::SequenceReverse(op) => one(kernel(sequence::sequence_reverse(
            x()?,
            lengths(op.use_sequence_length)?,
        ))?),
        Op::BatchDot(op) => one(kernel(dense::batch_dot(
            x()?,
            arg(ins, 1)?,
            op.transpose_a,
            op.transpose_b,
        ))?),
        Op::InterleavedMatmul(op) => {
            let y = if ins.len() > 1 {
                Some(arg(ins, 1)?)
            } else {
                None
            };
            one(kernel(dense::interleaved_matmul(
                op.kind,
                op.heads,
                x()?,
                y,
            ))?)
        }
        Op::Rnn(op) => {
            let first = op.state_inputs();
            let cells = op.layers * op.directions();
            let weights = (0..cells)
                .map(|c| {
                    let at = first + c * PARAMS_PER_CELL;
                    Ok(RnnWeights {
                        i2h_weight: arg(ins, at)?.clone(),
                        h2h_weight: arg(ins, at + 1)?.clone(),
                        i2h_bias: arg(ins, at + 2)?.clone(),
                        h2h_bias: arg(ins, at + 3)?.clone(),
                    })
                })
                .collect::<R<Vec<_>>>()?;
            let mode = match op.mode {
                RnnMode::Lstm => KRnnMode::Lstm,
                RnnMode::Gru => KRnnMode::Gru,
                RnnMode::RnnTanh => KRnnMode::RnnTanh,
                RnnMode::RnnRelu => KRnnMode::RnnRelu,
            };
            let cell = if op.mode == RnnMode::Lstm {
                Some(arg(ins, 2)?)
            } else {
                None
            };
            let out = kernel(rnn::rnn(
                x()?,
                &weights,
                arg(ins, 1)?,
                cell,
                mode,
                op.bidirectional,
            ))?;
            let mut outs = vec![out.output];
            if op.state_outputs {
                outs.push(out.state);
                if let Some(c) = out.state_cell {
                    outs.push(c);
                }
            }
            Ok(outs)
        }
        Op::AdaptiveAvgPool(op) => one(kernel(resize::adaptive_avg_pool2d(
            x()?,
            op.height,
            op.width,
        ))?),
        Op::BilinearResize(op) => {
            let x = x()?;
            let like = match op.target {
                ResizeTarget::Like => Some(arg(ins, 1)?.shape.as_slice()),
                _ => None,
            };
            let (h, w) = match x.shape.as_slice() {
                [_, _, h, w] => (*h, *w),
                s => return Err(format!("data {s:?} must be NCHW")),
            };
            let (oh, ow) = op.output_size(h, w, like)?;
            one(kernel(resize::bilinear_resize2d(
                x,
                oh,
                ow,
                op.align_corners,
            ))?)
        }
        Op::UpSampling(op) => {
            let all = (0..ins.len()).map(|i| arg(ins, i)).collect::<R<Vec<_>>>()?;
            let shapes: Vec<&[usize]> = all.iter().map(|a| a.shape.as_slice()).collect();
            let (scales, _) = op.scales(&shapes)?;
            one(kernel(resize::upsampling_nearest(&all, &scales, op.sum))?)
        }
        Op::Tile(op) => one(kernel(kshape::tile(x()?, &op.reps))?),
        Op::Repeat(op) => one(kernel(kshape::repeat(x()?, op.repeats, op.axis))?),
        Op::Reverse(op) => one(kernel(kshape::reverse(x()?, &op.axes))?),
        Op::BroadcastTo(op) => {
            let x = x()?;
            // Only the second input's shape is read (MXNet broadcast_like's rhs).
            let like = if op.reads_like() {
                Some(arg(ins, 1)?.shape.as_slice())
            } else {
                None
            };
            let shape = op.output_shape(&x.shape, like)?;
            one(kernel(kshape::broadcast_to(x, &shape))?)
        }
        Op::Take(op) => one(kernel(index::take(x()?, arg(ins, 1)?, op.axis, op.mode))?),
        Op::Pick(op) => one(kernel(index::pick(
            x()?,
            arg(ins, 1)?,
            op.axis,
            op.keepdims,
            op.mode,
        ))?),
        Op::GatherNd(_) => one(kernel(index::gather_nd(x()?, arg(ins, 1)?))?),
        Op::OneHot(op) => one(kernel(index::one_hot(
            x()?,
            op.depth,
            op.on_value,
            op.off_value,
        ))?),
        Op::Topk(op) => kernel(order::topk(x()?, op.axis, op.k, op.ret, op.ascend)),
        Op::BoxNms(op) => one(kernel(detection::box_nms(x()?, op))?),
        Op::BoxDecode(op) => one(kernel(detection::box_decode(x()?, arg(ins, 1)?, op))?),
        Op::BoxEncode(_) => kernel(detection::box_encode([
            arg(ins, 0)?,
            arg(ins, 1)?,
            arg(ins, 2)?,
            arg(ins, 3)?,
            arg(ins, 4)?,
            arg(ins, 5)?,
        ])),
        Op::MultiBoxDetection(op) => one(kernel(detection::multibox_detection(
            x()?,
            arg(ins, 1)?,
            arg(ins, 2)?,
            op,
        ))?),
        Op::Proposal(op) => kernel(detection::proposal(
            x()?,
            arg(ins, 1)?,
            arg(ins, 2)?,
            op,
            false,
        )),
        Op::MultiProposal(op) => kernel(detection::proposal(
            x()?,
            arg(ins, 1)?,
            arg(ins, 2)?,
            &op.0,
            true,
        )),
        Op::RoiAlign(op) => one(kernel(super::roi::roi_align(x()?, arg(ins, 1)?, op))?),
        Op::RoiPool(op) => one(kernel(super::roi::roi_pool(x()?, arg(ins, 1)?, op))?),
        Op::MultiBoxPrior(op) => one(kernel(super::anchor::multibox_prior_array(x()?, op))?),
    }
}
