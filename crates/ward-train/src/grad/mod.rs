//! Reference gradients: reverse-mode differentiation of a ward graph on the interpreter's
//! `f64` arrays.
//!
//! [`backward`] runs the graph forward with the reference interpreter, keeping every
//! node's inputs and outputs, then walks the nodes in reverse, asking each operator's
//! rule for the gradients of its inputs from the gradients of its outputs and summing
//! them where a value feeds several nodes. The rules live by family, as the operators do
//! in `ward_graph::ops`: [`dense`], [`activation`], [`elementwise`], [`reduce`], [`shape`],
//! [`conv`], [`norm`], [`rnn`], [`index`], [`sequence`], [`pool`], [`resize`], [`order`],
//! [`loss`].
//!
//! The loss heads (`SoftmaxOutput`, the `*RegressionOutput`s, `MakeLoss`) compute their
//! own gradient, as in MXNet: the head gradient given for their output is ignored (unless
//! `SoftmaxOutput` has `out_grad`). `BlockGrad` stops the gradient.
//!
//! Training mode: the forward pass is the interpreter's, except BatchNorm, which
//! normalises by the batch's statistics (unless `use_global_stats`). Dropout (a mask
//! from the run's random stream) is refused by [`check_differentiable`] until its rule
//! exists, naming the node.

pub mod activation;
mod arrays;
pub mod conv;
pub mod dense;
pub mod detection;
pub mod elementwise;
pub mod index;
pub mod loss;
pub mod norm;
pub mod order;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod rnn;
pub mod roi;
pub mod sequence;
pub mod shape;

use ward_graph::interp::eval::eval_node;
use ward_graph::interp::Array;
use ward_graph::ir::{Graph, Node, Source};
use ward_graph::ops::Op;

/// Why gradients could not be computed: the node and what was wrong there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GradError {
    /// An operator (or one of its attribute values) has no exact gradient rule yet.
    #[error("node {node:?} ({op}): no gradient: {reason}")]
    Unsupported {
        node: String,
        op: &'static str,
        reason: &'static str,
    },
    /// The forward pass or a rule failed on this node.
    #[error("node {node:?} ({op}): {reason}")]
    Node {
        node: String,
        op: &'static str,
        reason: String,
    },
    #[error("the graph has {expected} {what}, got {got}")]
    Arguments {
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

/// The result of a rule: one gradient per input of the node (`None`: nothing flows).
type Rule = Result<Vec<Option<Array>>, String>;

/// What a rule sees of its node after the forward pass.
pub struct Ctx<'a> {
    pub node: &'a Node,
    /// The node's inputs (`None` only where an input is missing, which validation forbids).
    pub ins: Vec<&'a Array>,
    pub outs: &'a [Array],
    /// The gradient arriving at each output; `None` when none reached it.
    pub grads: &'a [Option<Array>],
}

impl<'a> Ctx<'a> {
    /// Input `i`.
    pub fn input(&self, i: usize) -> Result<&'a Array, String> {
        self.ins
            .get(i)
            .copied()
            .ok_or_else(|| format!("input {i} is missing"))
    }

    /// Output `k`.
    pub fn output(&self, k: usize) -> Result<&'a Array, String> {
        self.outs
            .get(k)
            .ok_or_else(|| format!("output {k} is missing"))
    }

    /// The gradient at output `k`, zeros where none arrived.
    pub fn grad(&self, k: usize) -> Result<Array, String> {
        match self.grads.get(k) {
            Some(Some(g)) => Ok(g.clone()),
            _ => Array::zeros(self.output(k)?.shape.clone()).map_err(|e| e.to_string()),
        }
    }
}

/// Gradients of one backward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// One per graph input, in the graph's order (labels included); `None` when no
    /// gradient reaches it.
    pub inputs: Vec<Option<Array>>,
    /// One per parameter, in the graph's order; zeros when no gradient reaches it.
    pub params: Vec<Array>,
}

/// Checks that every node of `graph` has an exact gradient rule; the first that does not
/// is named. Training refuses such a graph before it reads any data.
pub fn check_differentiable(graph: &Graph) -> Result<(), GradError> {
    // Integer values (a cast to int32, integer data through arithmetic) are step
    // functions of what made them; the rules here compute in floating point.
    let types = ward_graph::dtypes::infer_dtypes(graph).map_err(|e| match e {
        ward_graph::GraphError::Node { node, op, reason } => GradError::Node { node, op, reason },
        other => GradError::Node {
            node: String::new(),
            op: "graph",
            reason: other.to_string(),
        },
    })?;
    for (index, node) in graph.nodes.iter().enumerate() {
        if let Some(t) = types
            .node(index)
            .iter()
            .find(|t| ward_graph::dtypes::is_integer(**t))
        {
            return Err(GradError::Unsupported {
                node: node.name.clone(),
                op: node.op.name(),
                reason: integer_reason(*t),
            });
        }
        if let Err(reason) = differentiable(&node.op) {
            return Err(GradError::Unsupported {
                node: node.name.clone(),
                op: node.op.name(),
                reason,
            });
        }
    }
    Ok(())
}

/// Why a node with an integer-typed output has no gradient.
fn integer_reason(dtype: ward_core::DType) -> &'static str {
    match dtype {
        ward_core::DType::I8 => {
            "its result is int8, a step function of its inputs with no gradient to train through"
        }
        ward_core::DType::U8 => {
            "its result is uint8, a step function of its inputs with no gradient to train through"
        }
        ward_core::DType::I64 => {
            "its result is int64, a step function of its inputs with no gradient to train through"
        }
        _ => "its result is int32, a step function of its inputs with no gradient to train through",
    }
}

/// Whether `op` has an exact rule here, and why not.
pub(crate) fn differentiable(op: &Op) -> Result<(), &'static str> {
    match op {
        Op::Dense(_)
        | Op::Activation(_)
        | Op::Softmax(_)
        | Op::Binary(_)
        | Op::AddN(_)
        | Op::Scalar(_)
        | Op::Unary(_)
        | Op::Clip(_)
        | Op::Cast(_)
        | Op::Where(_)
        | Op::Mean(_)
        | Op::Reduce(_)
        | Op::ArgReduce(_)
        | Op::Reshape(_)
        | Op::Flatten(_)
        | Op::Concat(_)
        | Op::SwapAxes(_)
        | Op::ExpandDims(_)
        | Op::Squeeze(_)
        | Op::Transpose(_)
        | Op::Slice(_)
        | Op::SliceAxis(_)
        | Op::Split(_)
        | Op::Stack(_)
        | Op::Fill(_)
        | Op::Arange(_)
        | Op::OnesLike(_)
        | Op::ShapeArray(_)
        | Op::SizeArray(_)
        | Op::SoftmaxOutput(_)
        | Op::RegressionOutput(_)
        | Op::MakeLoss(_)
        | Op::BlockGrad(_)
        | Op::Embedding(_)
        | Op::SequenceLast(_)
        | Op::Pad(_)
        | Op::Pool(_)
        | Op::Conv(_)
        | Op::Deconv(_)
        | Op::DeformableConv(_)
        | Op::BatchNorm(_)
        | Op::InstanceNorm(_)
        | Op::L2Normalization(_)
        | Op::LayerNorm(_)
        | Op::GroupNorm(_)
        | Op::Rnn(_)
        | Op::AdaptiveAvgPool(_)
        | Op::BilinearResize(_)
        | Op::UpSampling(_)
        | Op::Tile(_)
        | Op::Repeat(_)
        | Op::Reverse(_)
        | Op::BroadcastTo(_)
        | Op::Take(_)
        | Op::Pick(_)
        | Op::GatherNd(_)
        | Op::OneHot(_)
        | Op::Topk(_)
        | Op::BatchDot(_)
        | Op::InterleavedMatmul(_)
        | Op::SequenceMask(_)
        | Op::SequenceReverse(_)
        | Op::BoxNms(_)
        | Op::BoxDecode(_)
        | Op::BoxEncode(_)
        | Op::RoiAlign(_)
        | Op::RoiPool(_)
        | Op::MultiBoxPrior(_) => Ok(()),
        Op::LeakyRelu(op) => activation::leaky_relu_differentiable(op),
        Op::MultiBoxDetection(_) => Err(
            "MultiBoxDetection is SSD's inference post-processing (a class argmax, thresholds, sorting and suppression): MXNet 1.9.1's backward gives every input 0, so nothing upstream would train through it; train the network's heads with their losses and keep this layer in the inference graph",
        ),
        Op::Proposal(_) | Op::MultiProposal(_) => Err(
            "Proposal picks region proposals (anchors, sorting, suppression): MXNet 1.9.1's backward gives every input 0, so nothing upstream would train through it; train the RPN with its losses and keep this layer in the inference graph",
        ),
        Op::Dropout(_) => Err(
            "dropout's training mode draws a mask from the run's random stream, which the reference rules do not hold; the training engine runs it (engine::Engine::step_seeded)",
        ),
    }
}

/// The loss heads: they make their own gradient, whatever reaches their output.
pub(crate) fn is_loss_head(op: &Op) -> bool {
    matches!(
        op,
        Op::SoftmaxOutput(_) | Op::RegressionOutput(_) | Op::MakeLoss(_)
    )
}

/// Runs `graph` forward on `inputs` (one per graph input, labels included) and `params`,
/// then backward from `heads` (one per graph output; ignored for loss heads). Returns the
/// outputs and the gradients of every input and parameter.
pub fn backward(
    graph: &Graph,
    params: &[Array],
    inputs: &[Array],
    heads: &[Array],
) -> Result<(Vec<Array>, Gradients), GradError> {
    check_differentiable(graph)?;
    if heads.len() != graph.outputs.len() {
        return Err(GradError::Arguments {
            what: "outputs",
            expected: graph.outputs.len(),
            got: heads.len(),
        });
    }
    let node_error = |node: &Node, reason: String| GradError::Node {
        node: node.name.clone(),
        op: node.op.name(),
        reason,
    };
    let values = tape(graph, params, inputs)?;
    let outputs = outputs_of(graph, params, inputs, &values)?;

    // Gradients arriving at each value, summed.
    let mut node_grads: Vec<Vec<Option<Array>>> =
        values.iter().map(|outs| vec![None; outs.len()]).collect();
    let mut input_grads: Vec<Option<Array>> = vec![None; inputs.len()];
    let mut param_grads: Vec<Option<Array>> = vec![None; params.len()];
    let mut sink = Sink {
        nodes: &mut node_grads,
        inputs: &mut input_grads,
        params: &mut param_grads,
    };
    for (output, head) in graph.outputs.iter().zip(heads) {
        sink.add(output.source, head.clone())
            .map_err(|e| GradError::Node {
                node: output.name.clone(),
                op: "output",
                reason: e,
            })?;
    }

    for (index, node) in graph.nodes.iter().enumerate().rev() {
        let grads = sink
            .nodes
            .get_mut(index)
            .map(std::mem::take)
            .unwrap_or_default();
        if grads.iter().all(Option::is_none) && !is_loss_head(&node.op) {
            continue;
        }
        let ins = node
            .inputs
            .iter()
            .map(|&s| value(s, inputs, params, &values))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| node_error(node, "an input was not computed".into()))?;
        let outs = values
            .get(index)
            .ok_or_else(|| node_error(node, "its outputs were not computed".into()))?;
        let ctx = Ctx {
            node,
            ins,
            outs,
            grads: &grads,
        };
        let input_gradients = rule(&ctx).map_err(|e| node_error(node, e))?;
        for (&source, g) in node.inputs.iter().zip(input_gradients) {
            if let Some(g) = g {
                sink.add(source, g).map_err(|e| node_error(node, e))?;
            }
        }
    }

    let params = param_grads
        .into_iter()
        .zip(params)
        .map(|(g, p)| match g {
            Some(g) => Ok(g),
            None => Array::zeros(p.shape.clone()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GradError::Node {
            node: String::new(),
            op: "parameter",
            reason: e.to_string(),
        })?;
    Ok((
        outputs,
        Gradients {
            inputs: input_grads,
            params,
        },
    ))
}

/// The graph's outputs in training mode (BatchNorm by the batch's statistics): the
/// forward pass [`backward`] differentiates. A graph [`check_differentiable`] refuses
/// (Dropout, whose training mode is not built) is refused here too.
pub fn forward(graph: &Graph, params: &[Array], inputs: &[Array]) -> Result<Vec<Array>, GradError> {
    check_differentiable(graph)?;
    let values = tape(graph, params, inputs)?;
    outputs_of(graph, params, inputs, &values)
}

/// Every node's outputs of the training-mode forward pass, in node order.
fn tape(graph: &Graph, params: &[Array], inputs: &[Array]) -> Result<Vec<Vec<Array>>, GradError> {
    for (what, expected, got) in [
        ("parameters", graph.params.len(), params.len()),
        ("inputs", graph.inputs.len(), inputs.len()),
    ] {
        if expected != got {
            return Err(GradError::Arguments {
                what,
                expected,
                got,
            });
        }
    }
    let mut values: Vec<Vec<Array>> = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let ins: Vec<Option<&Array>> = node
            .inputs
            .iter()
            .map(|&s| value(s, inputs, params, &values))
            .collect();
        // Training mode: BatchNorm normalises by the batch's statistics.
        let outs = match &node.op {
            Op::BatchNorm(op) => norm::batch_norm_forward(&ins, op).map(|y| vec![y]),
            _ => eval_node(node, &ins),
        }
        .map_err(|reason| GradError::Node {
            node: node.name.clone(),
            op: node.op.name(),
            reason,
        })?;
        values.push(outs);
    }
    Ok(values)
}

fn outputs_of(
    graph: &Graph,
    params: &[Array],
    inputs: &[Array],
    values: &[Vec<Array>],
) -> Result<Vec<Array>, GradError> {
    graph
        .outputs
        .iter()
        .map(|o| {
            value(o.source, inputs, params, values)
                .cloned()
                .ok_or_else(|| GradError::Node {
                    node: o.name.clone(),
                    op: "output",
                    reason: "reads a value that was not computed".into(),
                })
        })
        .collect()
}

fn value<'a>(
    source: Source,
    inputs: &'a [Array],
    params: &'a [Array],
    values: &'a [Vec<Array>],
) -> Option<&'a Array> {
    match source {
        Source::Input(i) => inputs.get(i),
        Source::Param(p) => params.get(p),
        Source::Node(n, k) => values.get(n).and_then(|o| o.get(k)),
    }
}

/// Where gradients are summed: per node output, per graph input, per parameter.
struct Sink<'a> {
    nodes: &'a mut [Vec<Option<Array>>],
    inputs: &'a mut [Option<Array>],
    params: &'a mut [Option<Array>],
}

impl Sink<'_> {
    fn add(&mut self, source: Source, g: Array) -> Result<(), String> {
        let slot = match source {
            Source::Input(i) => self.inputs.get_mut(i),
            Source::Param(p) => self.params.get_mut(p),
            Source::Node(n, k) => self.nodes.get_mut(n).and_then(|o| o.get_mut(k)),
        }
        .ok_or("a gradient for a value that does not exist")?;
        match slot {
            None => *slot = Some(g),
            Some(sum) => arrays::add_into(sum, &g)?,
        }
        Ok(())
    }
}

/// The rule of `ctx.node`'s operator.
pub(crate) fn rule(ctx: &Ctx<'_>) -> Rule {
    match &ctx.node.op {
        Op::Dense(op) => dense::dense(ctx, op),
        Op::Activation(op) => activation::activation(ctx, op),
        Op::LeakyRelu(op) => activation::leaky_relu(ctx, op),
        Op::Softmax(op) => activation::softmax(ctx, op),
        Op::Binary(op) => elementwise::binary(ctx, op),
        Op::AddN(_) => elementwise::add_n(ctx),
        Op::Scalar(op) => elementwise::scalar(ctx, op),
        Op::Unary(op) => elementwise::unary(ctx, op),
        Op::Clip(op) => elementwise::clip(ctx, op),
        Op::Cast(op) => elementwise::cast(ctx, op),
        Op::Where(_) => elementwise::where_(ctx),
        Op::Mean(op) => reduce::mean(ctx, op),
        Op::Reduce(op) => reduce::reduce(ctx, op),
        Op::ArgReduce(_) => reduce::arg_reduce(ctx),
        Op::Reshape(_) | Op::Flatten(_) | Op::ExpandDims(_) | Op::Squeeze(_) => shape::reshape(ctx),
        Op::Concat(op) => shape::concat(ctx, op),
        Op::SwapAxes(op) => shape::swap_axes(ctx, op),
        Op::Transpose(op) => shape::transpose(ctx, op),
        Op::Slice(op) => shape::strided_slice(ctx, |x| op.ranges(x)),
        Op::SliceAxis(op) => shape::strided_slice(ctx, |x| op.ranges(x)),
        Op::Split(op) => shape::split(ctx, op),
        Op::Stack(op) => shape::stack(ctx, op),
        Op::Embedding(_) => index::embedding(ctx),
        Op::SequenceLast(op) => sequence::sequence_last(ctx, op),
        Op::SequenceMask(op) => sequence::sequence_mask_grad(ctx, op),
        Op::SequenceReverse(op) => sequence::sequence_reverse_grad(ctx, op),
        Op::BatchDot(op) => dense::batch_dot(ctx, op),
        Op::InterleavedMatmul(op) => dense::interleaved_matmul(ctx, op),
        Op::Pad(op) => index::pad(ctx, op),
        Op::Pool(op) => pool::pool(ctx, op),
        Op::Conv(op) => conv::conv(ctx, op),
        Op::Deconv(op) => conv::deconv(ctx, op),
        Op::DeformableConv(op) => conv::deformable_conv(ctx, op),
        Op::BatchNorm(op) => norm::batch_norm(ctx, op),
        Op::LayerNorm(op) => norm::layer_norm(ctx, op),
        Op::InstanceNorm(op) => norm::instance_norm(ctx, op),
        Op::L2Normalization(op) => norm::l2_normalization(ctx, op),
        Op::GroupNorm(op) => norm::group_norm(ctx, op),
        Op::Rnn(op) => rnn::rnn(ctx, op),
        Op::AdaptiveAvgPool(op) => resize::adaptive_avg_pool(ctx, op),
        Op::BilinearResize(op) => resize::bilinear_resize(ctx, op),
        Op::UpSampling(op) => resize::upsampling(ctx, op),
        Op::Tile(op) => shape::tile(ctx, op),
        Op::Repeat(op) => shape::repeat(ctx, op),
        Op::Reverse(op) => shape::reverse(ctx, op),
        Op::BroadcastTo(_) => shape::broadcast_to(ctx),
        Op::Take(op) => index::take(ctx, op),
        Op::Pick(op) => index::pick(ctx, op),
        Op::GatherNd(_) => index::gather_nd(ctx),
        // The output depends on the indices only through a step: no gradient.
        Op::OneHot(_) => Ok(vec![None]),
        Op::Topk(op) => order::topk(ctx, op),
        Op::BoxNms(op) => detection::box_nms(ctx, op),
        // MXNet 1.9.1 registers zero gradients for both (MakeZeroGradNodes).
        Op::BoxDecode(_) | Op::BoxEncode(_) => Ok(vec![None; ctx.ins.len()]),
        Op::Fill(_)
        | Op::Arange(_)
        | Op::OnesLike(_)
        | Op::ShapeArray(_)
        | Op::SizeArray(_)
        | Op::BlockGrad(_) => Ok(vec![None; ctx.ins.len()]),
        Op::RoiAlign(op) => roi::roi_align(ctx, op),
        Op::RoiPool(op) => roi::roi_pool(ctx, op),
        // The boxes depend on the data's shape only: MXNet's gradient is zero.
        Op::MultiBoxPrior(_) => Ok(vec![None]),
        Op::SoftmaxOutput(op) => loss::softmax_output(ctx, op),
        Op::RegressionOutput(op) => loss::regression_output(ctx, op),
        Op::MakeLoss(op) => loss::make_loss(ctx, op),
        other => Err(differentiable(other).err().unwrap_or("no rule").to_string()),
    }
}
