//! The graph IR: typed operators with typed attributes, serialised as versioned JSON.
//!
//! A graph is a list of nodes in topological order. Every value is named by a [`Source`]:
//! a graph input, a parameter (whose bytes live in the package's weights file), or one
//! output of an earlier node. Nothing here is MXNet-specific: the importer translates
//! MXNet's strings into these types once, with MXNet's defaults made explicit.

use serde::{Deserialize, Serialize};
use ward_core::DType;

use crate::GraphError;

/// The `format` field of every `graph.json`.
pub const GRAPH_FORMAT: &str = "ward-graph";
/// The IR version this build writes and reads.
pub const GRAPH_VERSION: u32 = 1;
/// Largest `graph.json` accepted, in bytes.
pub const MAX_GRAPH_JSON_BYTES: usize = 64 << 20;
/// Most nodes in one graph.
pub const MAX_GRAPH_NODES: usize = 1_000_000;
/// Most dimensions of any tensor.
pub const MAX_RANK: usize = 32;
/// Most outputs of one split (MXNet's SliceChannel).
pub const MAX_SPLIT_OUTPUTS: usize = 4096;
/// Most layers of one fused RNN.
pub const MAX_RNN_LAYERS: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub format: String,
    pub version: u32,
    pub inputs: Vec<GraphInput>,
    pub params: Vec<ParamDecl>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<GraphOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphInput {
    pub name: String,
    pub dtype: DType,
}

/// A constant tensor stored in the weights file under `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphOutput {
    pub name: String,
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Input(usize),
    Param(usize),
    /// Output `.1` of node `.0`.
    Node(usize, usize),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Source>,
}

/// Every operator ward executes, with its attributes made explicit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Inputs: data (N, C, spatial...), weight (F, C/groups, kernel...), [bias (F)].
    Conv {
        kernel: Vec<usize>,
        stride: Vec<usize>,
        dilation: Vec<usize>,
        pad: Vec<usize>,
        groups: usize,
        bias: bool,
    },
    /// Transposed convolution. Inputs: data, weight (C, F/groups, kernel...), [bias (F)].
    Deconv {
        kernel: Vec<usize>,
        stride: Vec<usize>,
        dilation: Vec<usize>,
        pad: Vec<usize>,
        output_padding: Vec<usize>,
        groups: usize,
        bias: bool,
    },
    /// y = x·Wᵀ + b. Inputs: data, weight (units, in), [bias (units)]. `flatten` folds all
    /// axes after the first into one; otherwise the product applies to the last axis.
    Dense {
        units: usize,
        flatten: bool,
        bias: bool,
    },
    Pool {
        kind: PoolKind,
        kernel: Vec<usize>,
        stride: Vec<usize>,
        pad: Vec<usize>,
        /// Output size rounds up (MXNet `pooling_convention=full`).
        ceil: bool,
        /// The window is the whole spatial extent.
        global: bool,
        /// Averages divide by the window clipped to the padded extent, not the input.
        count_include_pad: bool,
    },
    /// Inference-time batch normalisation with moving statistics. Inputs: data, gamma,
    /// beta, mean, var. `fix_gamma` treats gamma as 1 whatever the weights hold.
    BatchNorm {
        axis: i64,
        eps: f64,
        fix_gamma: bool,
    },
    /// Per (N, C) over the spatial axes. Inputs: data, gamma (C), beta (C).
    InstanceNorm {
        eps: f64,
    },
    /// Over `axis`. Inputs: data, gamma, beta (both the size of that axis).
    LayerNorm {
        axis: i64,
        eps: f64,
    },
    /// Channels split into `groups`; gamma and beta have one value per group.
    GroupNorm {
        groups: usize,
        eps: f64,
    },
    Activation {
        kind: ActivationKind,
    },
    /// PReLU takes a second input, the slope per channel (axis 1) or a single slope.
    LeakyRelu {
        kind: LeakyReluKind,
    },
    /// Identity at inference.
    Dropout,
    /// Softmax over `axis` of x / temperature.
    Softmax {
        axis: i64,
        temperature: f64,
        log: bool,
    },
    /// MXNet's SoftmaxOutput forward: softmax over all axes after the first (`Flatten`),
    /// over axis 1 (`Channel`) or over the last axis (`Last`).
    SoftmaxOutput {
        mode: SoftmaxOutputMode,
    },
    /// MXNet reshape codes (0 copy, -1 infer, -2 copy rest, -3 merge two, -4 split one),
    /// applied right to left when `reverse`.
    Reshape {
        shape: Vec<i64>,
        reverse: bool,
    },
    Flatten,
    Concat {
        axis: i64,
    },
    /// Elementwise on two inputs; same shapes unless `broadcast`.
    Binary {
        kind: BinaryKind,
        broadcast: bool,
    },
    /// Sum of any number of same-shaped inputs.
    AddN,
    /// Elementwise with a constant.
    Scalar {
        kind: ScalarKind,
        value: f64,
    },
    Unary {
        kind: UnaryKind,
    },
    Clip {
        min: f64,
        max: f64,
    },
    /// Inputs: ids (any float or int dtype), weight (input_dim, output_dim). Ids are
    /// truncated toward zero and clipped to [0, input_dim - 1], as MXNet does.
    Embedding {
        input_dim: usize,
        output_dim: usize,
    },
    SwapAxes {
        axis1: i64,
        axis2: i64,
    },
    /// The last step along `axis`.
    SequenceLast {
        axis: i64,
    },
    /// `outputs` equal slices along `axis`; `squeeze` drops the (then size-1) axis.
    Split {
        axis: i64,
        outputs: usize,
        squeeze: bool,
    },
    /// Inputs stacked along a new axis.
    Stack {
        axis: i64,
    },
    /// Mean over `axes` (all when `None`), or over all others when `exclude`.
    Mean {
        axes: Option<Vec<i64>>,
        keepdims: bool,
        exclude: bool,
    },
    /// A constant tensor of `value`; dims may be copied from the inputs' shapes.
    Fill {
        value: f64,
        shape: Vec<FillDim>,
    },
    /// Ones of the input's shape.
    OnesLike,
    /// `pads` holds (before, after) for each axis.
    Pad {
        mode: PadMode,
        pads: Vec<usize>,
        value: f64,
    },
    /// A fused recurrent layer stack in TNC layout. Inputs: data (T, N, I), the flat
    /// parameter vector (MXNet packing), initial state (L·D, N, H), and for LSTM the initial
    /// cell (L·D, N, H). Outputs: out (T, N, D·H), then, with `state_outputs`, the final
    /// state and (LSTM) cell.
    Rnn {
        mode: RnnMode,
        hidden: usize,
        layers: usize,
        bidirectional: bool,
        state_outputs: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Max,
    Avg,
    Sum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    Relu,
    Sigmoid,
    Tanh,
    /// log(1 + eˣ)
    Softrelu,
    /// x / (1 + |x|)
    Softsign,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LeakyReluKind {
    Leaky {
        slope: f64,
    },
    Elu {
        slope: f64,
    },
    Prelu,
    Selu,
    /// The exact erf form 0.5·x·(1 + erf(x/√2)).
    Gelu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftmaxOutputMode {
    Flatten,
    Channel,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalarKind {
    /// x + c
    Add,
    /// x - c
    Sub,
    /// c - x
    RSub,
    /// x · c
    Mul,
    /// x / c
    Div,
    /// c / x
    RDiv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryKind {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Abs,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    Constant,
    Edge,
    Reflect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RnnMode {
    Lstm,
    Gru,
    RnnTanh,
    RnnRelu,
}

impl RnnMode {
    /// Gates per cell: rows of each weight matrix are `gates · hidden`.
    pub fn gates(self) -> usize {
        match self {
            RnnMode::Lstm => 4,
            RnnMode::Gru => 3,
            RnnMode::RnnTanh | RnnMode::RnnRelu => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillDim {
    Fixed(usize),
    /// Dim `axis` of input `input` of the node.
    Like {
        input: usize,
        axis: usize,
    },
}

impl Op {
    /// The operator's name in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv",
            Op::Deconv { .. } => "deconv",
            Op::Dense { .. } => "dense",
            Op::Pool { .. } => "pool",
            Op::BatchNorm { .. } => "batch_norm",
            Op::InstanceNorm { .. } => "instance_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::GroupNorm { .. } => "group_norm",
            Op::Activation { .. } => "activation",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Dropout => "dropout",
            Op::Softmax { .. } => "softmax",
            Op::SoftmaxOutput { .. } => "softmax_output",
            Op::Reshape { .. } => "reshape",
            Op::Flatten => "flatten",
            Op::Concat { .. } => "concat",
            Op::Binary { .. } => "binary",
            Op::AddN => "add_n",
            Op::Scalar { .. } => "scalar",
            Op::Unary { .. } => "unary",
            Op::Clip { .. } => "clip",
            Op::Embedding { .. } => "embedding",
            Op::SwapAxes { .. } => "swap_axes",
            Op::SequenceLast { .. } => "sequence_last",
            Op::Split { .. } => "split",
            Op::Stack { .. } => "stack",
            Op::Mean { .. } => "mean",
            Op::Fill { .. } => "fill",
            Op::OnesLike => "ones_like",
            Op::Pad { .. } => "pad",
            Op::Rnn { .. } => "rnn",
        }
    }

    /// How many outputs the node has.
    pub fn num_outputs(&self) -> usize {
        match self {
            Op::Split { outputs, .. } => *outputs,
            Op::Rnn {
                mode,
                state_outputs,
                ..
            } => match (state_outputs, mode) {
                (false, _) => 1,
                (true, RnnMode::Lstm) => 3,
                (true, _) => 2,
            },
            _ => 1,
        }
    }

    /// The allowed number of inputs, as an inclusive range.
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Conv { bias, .. } | Op::Deconv { bias, .. } | Op::Dense { bias, .. } => {
                let n = if *bias { 3 } else { 2 };
                (n, n)
            }
            Op::BatchNorm { .. } => (5, 5),
            Op::InstanceNorm { .. } | Op::LayerNorm { .. } | Op::GroupNorm { .. } => (3, 3),
            Op::LeakyRelu {
                kind: LeakyReluKind::Prelu,
            } => (2, 2),
            Op::Binary { .. } | Op::Embedding { .. } => (2, 2),
            Op::Concat { .. } | Op::AddN | Op::Stack { .. } => (1, usize::MAX),
            Op::Fill { .. } => (0, usize::MAX),
            Op::Rnn { mode, .. } => {
                let n = if *mode == RnnMode::Lstm { 4 } else { 3 };
                (n, n)
            }
            _ => (1, 1),
        }
    }
}

impl Graph {
    /// An empty graph of the current format and version.
    pub fn new() -> Self {
        Graph {
            format: GRAPH_FORMAT.to_string(),
            version: GRAPH_VERSION,
            inputs: Vec::new(),
            params: Vec::new(),
            nodes: Vec::new(),
            outputs: Vec::new(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data structs with string keys cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses and validates `graph.json`. The bytes are untrusted: the size is bounded
    /// before parsing and the structure is checked with [`Graph::validate`].
    pub fn from_json(bytes: &[u8]) -> Result<Graph, GraphError> {
        if bytes.len() > MAX_GRAPH_JSON_BYTES {
            return Err(GraphError::TooLarge {
                what: "graph.json bytes",
                actual: bytes.len(),
                limit: MAX_GRAPH_JSON_BYTES,
            });
        }
        let graph: Graph =
            serde_json::from_slice(bytes).map_err(|e| GraphError::Json(e.to_string()))?;
        graph.validate()?;
        Ok(graph)
    }

    /// Checks what the types cannot: format and version, unique names, every source
    /// refers to an earlier node (so the graph is acyclic) and an existing output, arity,
    /// and attributes in range. Shapes are checked by shape inference.
    pub fn validate(&self) -> Result<(), GraphError> {
        if self.format != GRAPH_FORMAT {
            return Err(GraphError::Format(self.format.clone()));
        }
        if self.version != GRAPH_VERSION {
            return Err(GraphError::Version {
                found: self.version,
                supported: GRAPH_VERSION,
            });
        }
        if self.nodes.len() > MAX_GRAPH_NODES {
            return Err(GraphError::TooLarge {
                what: "nodes",
                actual: self.nodes.len(),
                limit: MAX_GRAPH_NODES,
            });
        }
        unique_names("input", self.inputs.iter().map(|i| i.name.as_str()))?;
        unique_names("param", self.params.iter().map(|p| p.name.as_str()))?;
        unique_names("node", self.nodes.iter().map(|n| n.name.as_str()))?;
        unique_names("output", self.outputs.iter().map(|o| o.name.as_str()))?;
        for p in &self.params {
            if p.shape.len() > MAX_RANK {
                return Err(GraphError::Param {
                    param: p.name.clone(),
                    reason: format!("rank {} exceeds {MAX_RANK}", p.shape.len()),
                });
            }
        }
        for (index, node) in self.nodes.iter().enumerate() {
            let (lo, hi) = node.op.arity();
            if node.inputs.len() < lo || node.inputs.len() > hi {
                return Err(GraphError::node(
                    node,
                    format!(
                        "has {} inputs, expected {}",
                        node.inputs.len(),
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("at least {lo}")
                        }
                    ),
                ));
            }
            for source in &node.inputs {
                self.check_source(*source, index)
                    .map_err(|reason| GraphError::node(node, reason))?;
            }
            validate_attrs(&node.op).map_err(|reason| GraphError::node(node, reason))?;
        }
        if self.outputs.is_empty() {
            return Err(GraphError::NoOutputs);
        }
        for output in &self.outputs {
            self.check_source(output.source, self.nodes.len())
                .map_err(|reason| GraphError::Output {
                    output: output.name.clone(),
                    reason,
                })?;
        }
        Ok(())
    }

    fn check_source(&self, source: Source, before: usize) -> Result<(), String> {
        match source {
            Source::Input(i) if i >= self.inputs.len() => Err(format!("refers to missing input {i}")),
            Source::Param(p) if p >= self.params.len() => Err(format!("refers to missing param {p}")),
            Source::Node(n, _) if n >= before => Err(format!(
                "refers to node {n}, which does not come before it (graphs must be in topological order)"
            )),
            Source::Node(n, k) if k >= self.nodes[n].op.num_outputs() => Err(format!(
                "refers to output {k} of node {:?}, which has {}",
                self.nodes[n].name,
                self.nodes[n].op.num_outputs()
            )),
            _ => Ok(()),
        }
    }

    /// The name of a value, for messages.
    pub fn source_name(&self, source: Source) -> String {
        match source {
            Source::Input(i) => self
                .inputs
                .get(i)
                .map(|x| x.name.clone())
                .unwrap_or_default(),
            Source::Param(p) => self
                .params
                .get(p)
                .map(|x| x.name.clone())
                .unwrap_or_default(),
            Source::Node(n, k) => match self.nodes.get(n) {
                Some(node) if k == 0 => node.name.clone(),
                Some(node) => format!("{}:{k}", node.name),
                None => String::new(),
            },
        }
    }
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new()
    }
}

fn unique_names<'a>(
    what: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), GraphError> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(GraphError::DuplicateName {
                what,
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

/// Checks an operator's attributes for values no graph may hold (zero kernels, counts past
/// the limits). Importers call it before using the attributes.
pub fn validate_attrs(op: &Op) -> Result<(), String> {
    let positive = |what: &str, v: &[usize]| {
        if v.contains(&0) {
            Err(format!("{what} {v:?} has a zero"))
        } else {
            Ok(())
        }
    };
    match op {
        Op::Conv {
            kernel,
            stride,
            dilation,
            pad,
            groups,
            ..
        } => {
            window_attrs(kernel, stride, pad, Some(dilation))?;
            positive("groups", &[*groups])
        }
        Op::Deconv {
            kernel,
            stride,
            dilation,
            pad,
            output_padding,
            groups,
            ..
        } => {
            window_attrs(kernel, stride, pad, Some(dilation))?;
            if output_padding.len() != kernel.len() {
                return Err("output_padding and kernel differ in length".into());
            }
            positive("groups", &[*groups])
        }
        Op::Pool {
            kernel,
            stride,
            pad,
            global,
            ..
        } => {
            if *global {
                Ok(())
            } else {
                window_attrs(kernel, stride, pad, None)
            }
        }
        Op::Dense { units, .. } => positive("units", &[*units]),
        Op::GroupNorm { groups, .. } => positive("groups", &[*groups]),
        Op::Split { outputs, .. } if *outputs > MAX_SPLIT_OUTPUTS => Err(format!(
            "{outputs} outputs exceed the limit of {MAX_SPLIT_OUTPUTS}"
        )),
        Op::Split { outputs, .. } => positive("outputs", &[*outputs]),
        Op::Rnn { layers, .. } if *layers > MAX_RNN_LAYERS => Err(format!(
            "{layers} layers exceed the limit of {MAX_RNN_LAYERS}"
        )),
        Op::Rnn { hidden, layers, .. } => positive("hidden and layers", &[*hidden, *layers]),
        Op::Embedding {
            input_dim,
            output_dim,
        } => positive("input_dim and output_dim", &[*input_dim, *output_dim]),
        Op::Reshape { shape, .. } if shape.len() > MAX_RANK => {
            Err("reshape has too many dims".into())
        }
        Op::Fill { shape, .. } if shape.len() > MAX_RANK => Err("fill has too many dims".into()),
        Op::Clip { min, max } if min.is_nan() || max.is_nan() || min > max => {
            Err(format!("clip min {min} exceeds max {max}"))
        }
        Op::Pad { pads, .. } if pads.len() % 2 != 0 || pads.len() > 2 * MAX_RANK => Err(format!(
            "pads {pads:?} must hold a (before, after) pair per axis"
        )),
        _ => Ok(()),
    }
}

fn window_attrs(
    kernel: &[usize],
    stride: &[usize],
    pad: &[usize],
    dilation: Option<&[usize]>,
) -> Result<(), String> {
    let n = kernel.len();
    if n == 0 || n > 3 {
        return Err(format!("kernel {kernel:?} must have 1 to 3 dims"));
    }
    if stride.len() != n || pad.len() != n || dilation.is_some_and(|d| d.len() != n) {
        return Err(format!(
            "kernel {kernel:?}, stride {stride:?}, pad {pad:?} and dilation differ in length"
        ));
    }
    if kernel.contains(&0) || stride.contains(&0) || dilation.is_some_and(|d| d.contains(&0)) {
        return Err(format!(
            "kernel {kernel:?}, stride {stride:?} and dilation must be positive"
        ));
    }
    Ok(())
}
