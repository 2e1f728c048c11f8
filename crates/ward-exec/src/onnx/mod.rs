//! Lowering of a ward graph to an ONNX `ModelProto` (opset 17) for concrete input shapes.
//!
//! The same proto feeds tract (the CPU backend) and `ward export onnx`. Lowering happens
//! once per set of input shapes and weights, so every shape and every weight is known:
//! semantics that ONNX has no operator for (`full` pooling divisors, per-group norms, the
//! RNN's gate order) become plain ONNX operators on constants computed here, and a batch
//! norm after a convolution is folded into the convolution's weights.
//!
//! One module per operator family, as in `ward_graph::ops`; this module holds the
//! builder they share and the walk over the graph. The graph is untrusted: nothing here
//! indexes without checking.

#![warn(clippy::indexing_slicing)]

mod activation;
mod anchor;
mod builder;
mod conv;
pub(crate) mod deform;
pub(crate) mod detection;
mod elementwise;
mod index;
mod linear;
mod loss;
mod norm;
mod order;
mod pool;
mod reduce;
mod resize;
mod rnn;
pub(crate) mod roi;
mod sequence;
mod shape;

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, OperatorSetIdProto};
use ward_core::{DType, Tensor};
use ward_graph::dtypes::{infer_dtypes, is_integer};
use ward_graph::ir::{Graph, InputRole, Node, Source};
use ward_graph::ops::Op;
use ward_graph::shape::infer_shapes;

pub(crate) use self::builder::Derived;
use self::builder::{attr_int, value_info, At, Builder, R};
use crate::error::ExecError;

pub const OPSET: i64 = 17;

/// The domain of the nodes that ONNX has no operator for (MXNet semantics ward runs in its
/// own tract kernels): the tract backend reads them back, `ward export onnx` refuses them.
pub const WARD_DOMAIN: &str = "ai.ward";

/// The first node of `model` in ward's own domain, as (its ward node's name, its op type).
pub fn ward_only_node(model: &ModelProto) -> Option<(String, String)> {
    model
        .graph
        .as_ref()?
        .node
        .iter()
        .find(|n| n.domain == WARD_DOMAIN)
        .map(|n| (n.name.clone(), n.op_type.clone()))
}

/// Refuses a lowered model holding a node of ward's own domain, naming the node and its
/// ward operator: ONNX has no operator that computes it as MXNet does (fixed-shape
/// outputs, MXNet's order and quirks), so `ward export onnx` cannot write it; ward's
/// backend runs it in its own kernel.
pub fn refuse_ward_nodes(model: &ModelProto) -> Result<(), ExecError> {
    let Some(node) = model
        .graph
        .as_ref()
        .and_then(|g| g.node.iter().find(|n| n.domain == WARD_DOMAIN))
    else {
        return Ok(());
    };
    // A generic ward node carries its operator as JSON.
    let op = if node.op_type == detection::WARD_OP {
        node.attribute
            .iter()
            .find(|a| a.name == "op")
            .and_then(|a| serde_json::from_slice::<Op>(&a.s).ok())
            .map_or_else(
                || "an unknown operator".to_string(),
                |op| op.name().to_string(),
            )
    } else {
        node.op_type.clone()
    };
    Err(ExecError::Lowering {
        node: node.name.clone(),
        op: "export onnx",
        reason: format!(
            "{op} has no ONNX operator with MXNet's semantics (fixed-shape outputs, MXNet's order and quirks); ward runs it in its own kernel"
        ),
    })
}

/// Lowers `graph` with `weights` (one tensor per param, in order) for the shapes of its
/// data inputs (labels are not fed at inference).
pub fn lower(
    graph: &Graph,
    weights: &[Tensor],
    data_shapes: &[Vec<usize>],
) -> Result<ModelProto, ExecError> {
    lower_with(graph, weights, data_shapes, Params::Initializers).map(|(proto, _)| proto)
}

/// How the params a node reads enter the proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Params {
    /// As float32 initializers holding a copy of their values: a self-contained model
    /// (what `ward export onnx` writes).
    Initializers,
    /// As graph inputs after the data inputs, declared with their dtype and shape but
    /// holding no values: the engine makes each one a constant from the weights itself,
    /// so the weights are not copied into the proto first.
    Inputs,
}

/// The params of a lowered graph, by index.
#[derive(Debug, Default)]
pub(crate) struct LoweredParams {
    /// With [`Params::Inputs`], each param made a graph input, in the order of those
    /// inputs (after the data inputs).
    pub inputs: Vec<usize>,
    /// The params dense layers read as the weight of a `Gemm` (`mk,nk->mn`).
    pub dense_weights: Vec<usize>,
    /// With [`Params::Inputs`], the constants computed from the weights, each a graph
    /// input after the params', in this order.
    pub derived: Vec<Derived>,
}

/// Lowers as [`lower`] does, with the params as `params` says.
pub(crate) fn lower_with(
    graph: &Graph,
    weights: &[Tensor],
    data_shapes: &[Vec<usize>],
    params: Params,
) -> Result<(ModelProto, LoweredParams), ExecError> {
    if weights.len() != graph.params.len() {
        return Err(ExecError::Weights {
            reason: format!(
                "{} tensors for {} parameters",
                weights.len(),
                graph.params.len()
            ),
        });
    }
    let shapes = infer_shapes(graph, data_shapes)?;
    let dtypes = infer_dtypes(graph)?;
    let mut b = Builder::new(graph, weights, &shapes, dtypes);
    b.pointwise_as_einsum = params == Params::Inputs;
    norm::plan_folding(&mut b);
    for (i, input) in graph.inputs.iter().enumerate() {
        b.used.insert(input.name.clone());
        if input.role == InputRole::Label {
            b.input_names.push(None);
            continue;
        }
        let shape = shapes.of(graph, Source::Input(i))?;
        // tract has no bfloat16: such an input is staged as float32 (see `tract::to_tract`).
        let staged = if input.dtype == DType::BF16 {
            DType::F32
        } else {
            input.dtype
        };
        b.graph_inputs.push(value_info(&input.name, staged, shape));
        if staged != DType::F32 {
            let cast = b.fresh(&format!("{}/f32", input.name));
            b.push(
                "Cast",
                vec![input.name.clone()],
                vec![cast.clone()],
                vec![attr_int("to", DataType::Float as i64)],
            );
            b.input_names.push(Some(cast));
        } else {
            b.input_names.push(Some(input.name.clone()));
        }
    }
    for (index, node) in graph.nodes.iter().enumerate() {
        let outs: Vec<String> = (0..node.op.num_outputs())
            .map(|k| {
                b.fresh(&if k == 0 {
                    node.name.clone()
                } else {
                    format!("{}:{k}", node.name)
                })
            })
            .collect();
        b.node_names.push(outs.clone());
        // An integer-typed output is computed in float32 like any other and then
        // converted as MXNet converts it (truncated toward zero, ...).
        let types = b.dtypes.node(index).to_vec();
        let computed: Vec<String> = outs
            .iter()
            .enumerate()
            .map(|(k, out)| match types.get(k) {
                Some(&t) if is_integer(t) => b.fresh(&format!("{out}/computed")),
                _ => out.clone(),
            })
            .collect();
        let at = At::new(&b, index, node, computed.clone())
            .map_err(|reason| node_error(node, reason))?;
        lower_node(&mut b, &at).map_err(|reason| node_error(node, reason))?;
        for ((raw, out), &t) in computed.into_iter().zip(outs).zip(&types) {
            if is_integer(t) {
                elementwise::integer_result(&mut b, raw, out, t);
            }
        }
    }
    let mut outputs = Vec::new();
    for output in &graph.outputs {
        let name = b
            .value(output.source)
            .map_err(|reason| ExecError::Lowering {
                node: output.name.clone(),
                op: "output",
                reason,
            })?;
        let shape = shapes.of(graph, output.source)?.to_vec();
        // ONNX names outputs by value; an alias keeps the user-facing name.
        let alias = output.name.clone();
        if b.used.contains(&alias) && name != alias {
            return Err(ExecError::Lowering {
                node: alias,
                op: "output",
                reason: "name collides with an internal value".into(),
            });
        }
        if name != alias {
            b.used.insert(alias.clone());
            b.push("Identity", vec![name], vec![alias.clone()], vec![]);
        }
        outputs.push(value_info(&alias, DType::F32, &shape));
    }
    let (param_inputs, derived) = match params {
        Params::Initializers => {
            b.param_initializers();
            b.derived_initializers()
                .map_err(|reason| ExecError::Lowering {
                    node: "weights".into(),
                    op: "constant",
                    reason,
                })?;
            (Vec::new(), Vec::new())
        }
        Params::Inputs => (b.param_inputs(), b.derived_inputs()),
    };
    let graph_proto = GraphProto {
        node: b.nodes,
        name: "ward".into(),
        initializer: b.initializers,
        input: b.graph_inputs,
        output: outputs,
        ..Default::default()
    };
    let proto = ModelProto {
        ir_version: 8,
        producer_name: "ward".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        graph: Some(graph_proto),
        ..Default::default()
    };
    Ok((
        proto,
        LoweredParams {
            inputs: param_inputs,
            dense_weights: b.dense_weights,
            derived,
        },
    ))
}

fn node_error(node: &Node, reason: String) -> ExecError {
    ExecError::Lowering {
        node: node.name.clone(),
        op: node.op.name(),
        reason,
    }
}

/// The one dispatch from an operator to its family's lowering.
fn lower_node(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    match &at.node.op {
        Op::Conv(op) => conv::conv(b, at, op),
        Op::Deconv(op) => conv::deconv(b, at, op),
        Op::DeformableConv(op) => deform::deformable_conv(b, at, op),
        Op::Dense(op) => linear::dense(b, at, op),
        Op::Pool(op) => pool::pool(b, at, op),
        Op::BatchNorm(op) => norm::batch_norm(b, at, op),
        Op::InstanceNorm(op) => norm::instance_norm(b, at, op),
        Op::L2Normalization(op) => norm::l2_normalization(b, at, op),
        Op::LayerNorm(op) => norm::layer_norm(b, at, op),
        Op::GroupNorm(op) => norm::group_norm(b, at, op),
        Op::Activation(op) => activation::activation(b, at, op),
        Op::LeakyRelu(op) => activation::leaky_relu(b, at, op),
        Op::Softmax(op) => activation::softmax(b, at, op),
        // Identity at inference.
        Op::Dropout(_) | Op::MakeLoss(_) | Op::BlockGrad(_) => loss::identity(b, at),
        Op::SoftmaxOutput(op) => loss::softmax_output(b, at, op),
        Op::RegressionOutput(op) => loss::regression_output(b, at, op),
        Op::Reshape(_) | Op::ExpandDims(_) | Op::Squeeze(_) => shape::reshape(b, at),
        Op::Flatten(_) => shape::flatten(b, at),
        Op::Concat(op) => shape::concat(b, at, op),
        Op::SwapAxes(op) => shape::swap_axes(b, at, op),
        Op::Transpose(op) => shape::transpose(b, at, op),
        Op::Slice(op) => shape::strided_slice(b, at, &op.ranges(&at.xs)?),
        Op::SliceAxis(op) => shape::strided_slice(b, at, &op.ranges(&at.xs)?),
        Op::Split(op) => shape::split(b, at, op),
        Op::Stack(op) => shape::stack(b, at, op),
        Op::Pad(op) => shape::pad(b, at, op),
        Op::Fill(op) => shape::fill(b, at, op.value),
        Op::Arange(op) => shape::arange(b, at, op),
        Op::OnesLike(_) => shape::fill(b, at, 1.0),
        Op::ShapeArray(_) | Op::SizeArray(_) => shape::shape_array(b, at),
        Op::Binary(op) => elementwise::binary(b, at, op),
        Op::AddN(_) => elementwise::add_n(b, at),
        Op::Scalar(op) => elementwise::scalar(b, at, op),
        Op::Unary(op) => elementwise::unary(b, at, op),
        Op::Cast(op) => elementwise::cast(b, at, op),
        Op::Clip(op) => elementwise::clip(b, at, op),
        Op::Where(_) => elementwise::where_(b, at),
        Op::Mean(op) => reduce::mean(b, at, op),
        Op::Reduce(op) => reduce::reduce(b, at, op),
        Op::ArgReduce(op) => reduce::arg_reduce(b, at, op),
        Op::Embedding(op) => index::embedding(b, at, op),
        Op::SequenceLast(op) => sequence::sequence_last(b, at, op),
        Op::Rnn(op) => rnn::rnn(b, at, op),
        Op::AdaptiveAvgPool(op) => pool::adaptive_avg_pool(b, at, op),
        Op::BilinearResize(op) => resize::bilinear_resize(b, at, op),
        Op::UpSampling(op) => resize::upsampling(b, at, op),
        Op::Tile(op) => shape::tile(b, at, op),
        Op::Repeat(op) => shape::repeat(b, at, op),
        Op::Reverse(op) => shape::reverse(b, at, op),
        Op::BroadcastTo(_) => shape::broadcast_to(b, at),
        Op::Take(op) => index::take(b, at, op),
        Op::Pick(op) => index::pick(b, at, op),
        Op::GatherNd(_) => index::gather_nd(b, at),
        Op::OneHot(op) => index::one_hot(b, at, op),
        Op::Topk(op) => order::topk(b, at, op),
        Op::BoxNms(_)
        | Op::BoxDecode(_)
        | Op::BoxEncode(_)
        | Op::MultiBoxDetection(_)
        | Op::Proposal(_)
        | Op::MultiProposal(_) => detection::ward_op(b, at),
        Op::BatchDot(op) => linear::batch_dot(b, at, op),
        Op::InterleavedMatmul(op) => linear::interleaved_matmul(b, at, op),
        Op::SequenceMask(op) => sequence::sequence_mask(b, at, op),
        Op::SequenceReverse(op) => sequence::sequence_reverse(b, at, op),
        Op::RoiAlign(op) => roi::roi_align(b, at, op),
        Op::RoiPool(op) => roi::roi_pool(b, at, op),
        Op::MultiBoxPrior(op) => anchor::multibox_prior(b, at, op),
    }
}

/// Encodes a model proto to bytes (what `ward export onnx` writes).
pub fn encode(model: &ModelProto) -> Vec<u8> {
    use prost::Message;
    model.encode_to_vec()
}
