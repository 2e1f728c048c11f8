//! Conversion of an MXNet symbol and its parameters into a ward graph.
//!
//! One converter per MXNet operator reads the node's attributes through
//! [`AttrReader`] with MXNet 1.9.1's defaults written out, and
//! refuses any attribute it does not consume: an operator or attribute value ward does not
//! support fails the import with the node, the operator and the attribute named, never a
//! silently different result.

mod foreach;
mod fused;

use std::collections::{HashMap, HashSet};

use ward_core::{DType, Tensor};
use ward_graph::compat::{mark_states, mxnet_reshape, prune, unpack_rnn_params};
use ward_graph::ir::{
    Graph, GraphInput, GraphOutput, InputRole, Node, Op, ParamDecl, ParamRole, Source,
};
use ward_graph::limits::{MAX_ONE_HOT_DEPTH, MAX_REPEAT, MAX_UPSAMPLING_SCALE};
use ward_graph::ops::activation::{Activation, ActivationKind, LeakyRelu, LeakyReluKind, Softmax};
use ward_graph::ops::anchor::MultiBoxPrior;
use ward_graph::ops::conv::{Conv, Deconv, DeformableConv};
use ward_graph::ops::detection::{
    BoxDecode, BoxEncode, BoxFormat, BoxNms, MultiBoxDetection, MultiProposal, Proposal,
};
use ward_graph::ops::dropout::Dropout;
use ward_graph::ops::elementwise::{
    AddN, Binary, BinaryKind, Cast, CastType, Clip, Scalar, ScalarKind, Unary, UnaryKind, Where,
};
use ward_graph::ops::index::{Embedding, GatherNd, IndexMode, OneHot, Pick, Take};
use ward_graph::ops::linear::{AttentionKind, BatchDot, Dense, InterleavedMatmul};
use ward_graph::ops::loss::{
    BlockGrad, MakeLoss, Normalization, RegressionKind, RegressionOutput, SoftmaxOutput,
    SoftmaxOutputMode,
};
use ward_graph::ops::norm::{
    BatchNorm, GroupNorm, InstanceNorm, L2NormMode, L2Normalization, LayerNorm,
};
use ward_graph::ops::order::{Topk, TopkReturn};
use ward_graph::ops::pool::{AdaptiveAvgPool, Pool, PoolKind};
use ward_graph::ops::reduce::{ArgKind, ArgReduce, Mean, Reduce, ReduceKind};
use ward_graph::ops::resize::{BilinearResize, ResizeTarget, UpSampling};
use ward_graph::ops::rnn::{Rnn, RnnMode};
use ward_graph::ops::roi::{RoiAlign, RoiPool};
use ward_graph::ops::sequence::{SequenceLast, SequenceMask, SequenceReverse};
use ward_graph::ops::shape::{
    Arange, BroadcastDim, BroadcastTo, Concat, ExpandDims, Fill, FillDim, Flatten, OnesLike, Pad,
    PadMode, Repeat, Reverse, ShapeArray, SizeArray, Slice, SliceAxis, Split, Squeeze, Stack,
    SwapAxes, Tile, Transpose,
};
use ward_graph::ops::OpDef;
use ward_graph::shape::MAX_VALUE_ELEMENTS;
use ward_graph::shape::{infer_shapes, Shapes};

use crate::attrs::{AttrError, AttrReader};
use crate::limits::MAX_DENSE_PARAM_BYTES;
use crate::params::{split_key, NdArray, ParamKind, ParamsError, ParamsFile};
use crate::symbol::{Entry, Symbol, SymbolNode};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Attr(#[from] AttrError),
    #[error("node {node:?} ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    /// An attribute value the importer does not implement: refused by name, never
    /// computed differently.
    #[error("node {node:?} ({op}): attribute {attr:?} = {value} is not supported{only}")]
    Unsupported {
        node: String,
        op: String,
        attr: &'static str,
        value: String,
        /// What is supported, when it says more than the refusal (` (only float32)`).
        only: &'static str,
    },
    #[error("node {node:?}: operator {op:?} is not supported")]
    UnsupportedOp { node: String, op: String },
    #[error("parameter {name:?}: {reason}")]
    Param { name: String, reason: String },
    #[error("input {name:?}: {reason}")]
    Input { name: String, reason: String },
    #[error("the .params file {0}")]
    ParamsLayout(String),
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error("the imported graph does not check: {0}")]
    Graph(#[from] ward_graph::GraphError),
}

/// A model input as the user declares it: `-1` marks a variable dim.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredInput {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
}

/// What an import produces: the graph, its weights in param order, and each output's
/// shape with `-1` where it follows a variable input dim.
#[derive(Debug)]
pub struct Imported {
    pub graph: Graph,
    pub weights: Vec<(String, Tensor)>,
    pub output_shapes: Vec<Vec<i64>>,
    /// Parameters in the file that the graph never reads.
    pub unused_params: Vec<String>,
}

impl Imported {
    /// Each graph parameter's weights as `f32`, in the graph's order; `None` for a
    /// parameter the import holds no weights for (a new one, see `new_params`).
    pub fn f32_weights(&self) -> Vec<Option<Vec<f32>>> {
        self.graph
            .params
            .iter()
            .map(|p| {
                self.weights
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, t)| t.to_f32_vec())
            })
            .collect()
    }

    /// The declared outputs of the imported graph: its names, float32 (every output is
    /// computed in float32), and the inferred shapes (-1 where an input dim is variable).
    pub fn output_specs(&self) -> Vec<ward_graph::schema::OutputSpec> {
        self.graph
            .outputs
            .iter()
            .zip(&self.output_shapes)
            .map(|(o, shape)| ward_graph::schema::OutputSpec {
                name: o.name.clone(),
                dtype: DType::F32,
                shape: shape.clone(),
            })
            .collect()
    }
}

/// How a symbol node's output maps into the ward graph.
#[derive(Debug, Clone)]
enum Value {
    Ready(Source),
    /// A `_zeros`/`_ones` whose unknown (0) dims take the batch size from its consumer.
    PendingFill {
        name: String,
        value: f64,
        shape: Vec<i64>,
    },
}

struct Importer<'a> {
    graph: Graph,
    weights: Vec<(String, Tensor)>,
    params: HashMap<String, Tensor>,
    /// Whether each parameter was saved as `arg:` or `aux:` (or neither).
    param_kinds: HashMap<String, ParamKind>,
    used_params: HashSet<String>,
    declared: &'a [DeclaredInput],
    /// Per symbol node, per output.
    values: Vec<Vec<Value>>,
    /// Variables read only as the labels of loss heads: label inputs of the graph.
    label_only: HashSet<usize>,
    /// While an RNN's inputs are resolved: its data, the batch reference for its states.
    pending_rnn_data: Option<Source>,
}

/// Converts `symbol` with `params` into a ward graph. `inputs` declares every data input of
/// the graph (the symbol does not record them); everything else must be a parameter.
pub fn import(
    symbol: &Symbol,
    params: ParamsFile,
    inputs: &[DeclaredInput],
) -> Result<Imported, ImportError> {
    // A graph saved after MXNet's oneDNN pass is imported as it was before the pass.
    let expanded = fused::expand_fused(symbol)?;
    let symbol = expanded.as_ref();
    let (params, param_kinds) = named_params(params)?;
    let mut importer = Importer {
        graph: Graph::new(),
        weights: Vec::new(),
        params,
        param_kinds,
        used_params: HashSet::new(),
        declared: inputs,
        values: Vec::with_capacity(symbol.nodes.len()),
        label_only: label_only_variables(symbol),
        pending_rnn_data: None,
    };
    for input in inputs {
        if !symbol
            .nodes
            .iter()
            .any(|n| n.op == "null" && n.name == input.name)
        {
            return Err(ImportError::Input {
                name: input.name.clone(),
                reason: "is declared but the symbol has no such variable".into(),
            });
        }
    }
    importer.convert_graph(symbol)?;
    for (k, head) in symbol.heads.iter().enumerate() {
        let source = importer.ready(symbol, *head, "graph output")?;
        // `ready` found the head's value, so its node exists.
        let Some(node) = symbol.nodes.get(head.node) else {
            continue;
        };
        let name = output_name(node, head.output);
        // A head listed twice gets a second name: a package's outputs are named uniquely.
        let name = if importer.graph.outputs.iter().any(|o| o.name == name) {
            format!("{name}_{k}")
        } else {
            name
        };
        importer.graph.outputs.push(GraphOutput { name, source });
    }
    // Resolving MXNet's encodings leaves what only they read (an RNN's packed
    // parameters and the nodes that packed them).
    prune(&mut importer.graph, &mut importer.weights);
    mark_states(&mut importer.graph);
    importer.graph.validate()?;
    // Operands of types MXNet refuses together (int32 + float32) are refused here too.
    ward_graph::dtypes::infer_dtypes(&importer.graph)?;
    let output_shapes = importer.output_shapes()?;
    let mut unused_params: Vec<String> = importer
        .params
        .keys()
        .filter(|k| !importer.used_params.contains(*k))
        .cloned()
        .collect();
    unused_params.sort();
    Ok(Imported {
        graph: importer.graph,
        weights: importer.weights,
        output_shapes,
        unused_params,
    })
}

/// `zeros_like` and `ones_like` are registered in MXNet 1.9.1 without parameters: a
/// `dtype` written on them (GluonCV's CenterNet writes `int64`) is ignored and the result
/// has the data's type (checked: `zeros_like` of float32 data with `dtype="int64"` is
/// float32). Ward reads it as a type name and ignores it likewise.
fn ignore_like_dtype(a: &mut AttrReader<'_>) -> Result<(), AttrError> {
    if a.contains("dtype") {
        a.dtype("dtype", DType::F32)?;
    }
    Ok(())
}

/// MXNet 1.9.1's name for output `k` of a head node, as `Symbol.list_outputs()` gives it
/// (nnvm's `ListOutputNames`): a variable's own name; `NAME_` and the operator's own name
/// for the output where it declares names (`FListOutputNames`: RNN's `output`,
/// `state_output`, `statecell_output`); otherwise `NAME_output`, numbered for an operator
/// whose outputs are a list (SliceChannel, sort and topk of values number even a single
/// one). Checked against MXNet on `tests/fixtures/output_names` and every model fixture.
fn output_name(node: &SymbolNode, k: usize) -> String {
    const RNN_OUTPUTS: [&str; 3] = ["output", "state_output", "statecell_output"];
    match node.op.as_str() {
        "null" => node.name.clone(),
        "RNN" => format!(
            "{}_{}",
            node.name,
            RNN_OUTPUTS.get(k).copied().unwrap_or("output")
        ),
        // Operators with a hidden second output (MXNet's topk gives its indices along
        // with the values, box_nms the rows it kept) number even one visible output.
        "SliceChannel" | "sort" | "_contrib_box_nms" | "_contrib_box_encode" => {
            format!("{}_output{k}", node.name)
        }
        // Numbered as nnvm numbers any node with more than one output.
        "_foreach"
            if node
                .attrs
                .get("num_outputs")
                .is_some_and(|n| crate::attrs::parse_int(n).is_ok_and(|n| n > 1)) =>
        {
            format!("{}_output{k}", node.name)
        }
        // MXNet's FListOutputNames: output, score.
        "_contrib_Proposal" | "_contrib_MultiProposal" if k == 1 => {
            format!("{}_score", node.name)
        }
        "topk"
            if matches!(
                node.attrs.get("ret_typ").map(String::as_str),
                Some("value" | "both")
            ) =>
        {
            format!("{}_output{k}", node.name)
        }
        _ => format!("{}_output", node.name),
    }
}

/// The tensors of a `.params` file by parameter name, and each name's `arg:`/`aux:` kind.
type NamedParams = (HashMap<String, Tensor>, HashMap<String, ParamKind>);

/// Maps `.params` keys to dense tensors by parameter name.
fn named_params(params: ParamsFile) -> Result<NamedParams, ImportError> {
    if params.names.is_none() && !params.arrays.is_empty() {
        return Err(ImportError::ParamsLayout(
            "holds an unnamed list of arrays; export the model with HybridBlock.export or Module.save_checkpoint".into(),
        ));
    }
    let mut out = HashMap::new();
    let mut kinds = HashMap::new();
    let mut dense_bytes = 0u64;
    for (key, array) in params.into_named()? {
        // Checked before densifying: a few bytes of sparse storage can describe terabytes.
        if let Some(stored) = &array.value {
            let bytes = ward_core::tensor::byte_len(stored.shape(), stored.dtype())
                .map_or(u64::MAX, |b| b as u64);
            dense_bytes = dense_bytes.saturating_add(bytes);
            if dense_bytes > MAX_DENSE_PARAM_BYTES {
                return Err(ImportError::Param {
                    name: key,
                    reason: format!("brings the dense parameters past the limit of {MAX_DENSE_PARAM_BYTES} bytes"),
                });
            }
        }
        let (kind, name) = split_key(&key);
        if kind == ParamKind::Plain
            && name.split('.').all(|part| !part.is_empty())
            && name.contains('.')
        {
            return Err(ImportError::ParamsLayout(format!(
                "uses structural names such as {key:?} (Block.save_parameters), which a symbol cannot bind; export the model with HybridBlock.export"
            )));
        }
        let tensor = dense(&key, array)?;
        kinds.insert(name.to_string(), kind);
        if out.insert(name.to_string(), tensor).is_some() {
            return Err(ImportError::Param {
                name: name.to_string(),
                reason: "appears twice (as arg: and aux:)".into(),
            });
        }
    }
    Ok((out, kinds))
}

fn dense(key: &str, array: NdArray) -> Result<Tensor, ImportError> {
    match array.value {
        Some(stored) => Ok(stored.to_dense()?),
        None => Err(ImportError::Param {
            name: key.to_string(),
            reason: "is an empty (none) array slot".into(),
        }),
    }
}

/// The loss heads whose second input is a label.
const LABELLED_HEADS: [&str; 4] = [
    "SoftmaxOutput",
    "LinearRegressionOutput",
    "LogisticRegressionOutput",
    "MAERegressionOutput",
];

/// Variables that only loss heads read, as their label: fed in training only.
pub(crate) fn label_only_variables(symbol: &Symbol) -> HashSet<usize> {
    let mut readers: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
    for (index, node) in symbol.nodes.iter().enumerate() {
        for (pos, e) in node.inputs.iter().enumerate() {
            readers.entry(e.node).or_default().push((index, pos));
        }
    }
    symbol
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op == "null")
        .filter(|(i, _)| {
            readers.get(i).is_some_and(|r| {
                r.iter().all(|&(reader, pos)| {
                    pos == 1
                        && symbol
                            .nodes
                            .get(reader)
                            .is_some_and(|n| LABELLED_HEADS.contains(&n.op.as_str()))
                })
            })
        })
        .map(|(i, _)| i)
        .collect()
}

impl Importer<'_> {
    fn convert_graph(&mut self, symbol: &Symbol) -> Result<(), ImportError> {
        for (index, node) in symbol.nodes.iter().enumerate() {
            let values = if node.op == "null" {
                vec![self.variable(index, node)?]
            } else {
                self.convert_operator(symbol, node)?
            };
            self.values.push(values);
        }
        Ok(())
    }

    /// One operator node's outputs; control flow is written out or refused here.
    fn convert_operator(
        &mut self,
        symbol: &Symbol,
        node: &SymbolNode,
    ) -> Result<Vec<Value>, ImportError> {
        match node.op.as_str() {
            "_foreach" => self.foreach(symbol, node),
            "_while_loop" | "_cond" => Err(ImportError::Node {
                node: node.name.clone(),
                op: node.source_op.clone(),
                reason: "is control flow whose trip count or branch depends on the data; ward's graphs have none, and it unrolls only a _foreach over a length the declared input shapes fix".into(),
            }),
            _ => self.operator(symbol, node),
        }
    }

    fn variable(&mut self, index: usize, node: &SymbolNode) -> Result<Value, ImportError> {
        if let Some(decl) = self.declared.iter().find(|d| d.name == node.name) {
            self.graph.inputs.push(GraphInput {
                name: decl.name.clone(),
                dtype: decl.dtype,
                role: InputRole::Data,
            });
            return Ok(Value::Ready(Source::Input(self.graph.inputs.len() - 1)));
        }
        if let Some(tensor) = self.params.get(&node.name) {
            self.used_params.insert(node.name.clone());
            let multiplier = |key: &str| -> Result<f64, ImportError> {
                let value = match node.attrs.get(key) {
                    None => return Ok(1.0),
                    Some(text) => {
                        crate::attrs::parse_float(text).map_err(|_| ImportError::Param {
                            name: node.name.clone(),
                            reason: format!("attribute {key:?} = {text:?} is not a number"),
                        })?
                    }
                };
                if !value.is_finite() || value < 0.0 {
                    return Err(ImportError::Param {
                        name: node.name.clone(),
                        reason: format!(
                            "attribute {key:?} = {value} must be finite and non-negative"
                        ),
                    });
                }
                Ok(value)
            };
            let role = match self.param_kinds.get(&node.name) {
                Some(ParamKind::Aux) => ParamRole::State,
                _ => ParamRole::Trainable,
            };
            self.graph.params.push(ParamDecl {
                name: node.name.clone(),
                dtype: tensor.dtype(),
                shape: tensor.shape().to_vec(),
                role,
                lr_mult: multiplier("__lr_mult__")?,
                wd_mult: multiplier("__wd_mult__")?,
            });
            self.weights.push((node.name.clone(), tensor.clone()));
            return Ok(Value::Ready(Source::Param(self.graph.params.len() - 1)));
        }
        if self.label_only.contains(&index) {
            self.graph.inputs.push(GraphInput {
                name: node.name.clone(),
                dtype: DType::F32,
                role: InputRole::Label,
            });
            return Ok(Value::Ready(Source::Input(self.graph.inputs.len() - 1)));
        }
        Err(ImportError::Input {
            name: node.name.clone(),
            reason: "is a variable of the symbol but neither a parameter in the .params file nor a declared --input"
                .into(),
        })
    }

    /// The ward source for an entry, materialising a pending fill for its consumer.
    fn ready(
        &mut self,
        symbol: &Symbol,
        entry: Entry,
        consumer: &str,
    ) -> Result<Source, ImportError> {
        let value = self
            .values
            .get(entry.node)
            .and_then(|v| v.get(entry.output))
            .cloned()
            .ok_or_else(|| ImportError::Node {
                node: consumer.to_string(),
                op: String::new(),
                reason: format!(
                    "reads output {} of node {:?}, which has no such output",
                    entry.output,
                    symbol
                        .nodes
                        .get(entry.node)
                        .map_or("?", |n| n.name.as_str())
                ),
            })?;
        match value {
            Value::Ready(s) => Ok(s),
            Value::PendingFill { name, value, shape } => {
                let batch = self.batch_source(consumer)?;
                let dims = shape
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| match d {
                        0 => Ok(FillDim::Like {
                            input: 0,
                            axis: batch.1,
                        }),
                        d if d > 0 => Ok(FillDim::Fixed(d as usize)),
                        d => Err(ImportError::Node {
                            node: name.clone(),
                            op: "_zeros".into(),
                            reason: format!("dim {i} is {d}"),
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let fill_name = unique_node_name(&self.graph, &name);
                self.graph.nodes.push(Node {
                    name: fill_name,
                    op: Fill { value, shape: dims }.into(),
                    inputs: vec![batch.0],
                });
                Ok(Source::Node(self.graph.nodes.len() - 1, 0))
            }
        }
    }

    /// Where a fill's unknown dims come from for `consumer`: the batch axis of the RNN's
    /// data (axis 1, TNC) if the consumer is an RNN, else axis 0 of the first graph input.
    fn batch_source(&self, consumer: &str) -> Result<(Source, usize), ImportError> {
        if let Some(rnn_data) = self.pending_rnn_data {
            return Ok((rnn_data, 1));
        }
        let Some(data) = self
            .graph
            .inputs
            .iter()
            .position(|i| i.role == InputRole::Data)
        else {
            return Err(ImportError::Node {
                node: consumer.to_string(),
                op: String::new(),
                reason: "reads a constant whose dims depend on the batch size, but the graph has no input".into(),
            });
        };
        Ok((Source::Input(data), 0))
    }

    fn emit(&mut self, name: &str, op: Op, inputs: Vec<Source>) -> Source {
        self.graph.nodes.push(Node {
            name: unique_node_name(&self.graph, name),
            op,
            inputs,
        });
        Source::Node(self.graph.nodes.len() - 1, 0)
    }

    fn operator(&mut self, symbol: &Symbol, node: &SymbolNode) -> Result<Vec<Value>, ImportError> {
        let err = |reason: String| ImportError::Node {
            node: node.name.clone(),
            op: node.source_op.clone(),
            reason,
        };
        let unsupported =
            |attr: &'static str, value: &dyn std::fmt::Display, only: &'static str| {
                ImportError::Unsupported {
                    node: node.name.clone(),
                    op: node.source_op.clone(),
                    attr,
                    value: value.to_string(),
                    only,
                }
            };
        let mut a = AttrReader::new(&node.name, &node.source_op, &node.attrs);
        let nin = node.inputs.len();
        let op = node.op.as_str();

        // Constants whose dims may depend on the batch size are emitted at their consumer.
        if op == "_zeros" || op == "_ones" {
            let shape = a.req_tuple("shape")?;
            let dtype = a.string("dtype", "float32")?;
            a.ignore(&["ctx"]);
            a.finish()?;
            if dtype != "float32" {
                return Err(unsupported(
                    "dtype",
                    &format!("{dtype:?}"),
                    " (only float32)",
                ));
            }
            let value = if op == "_ones" { 1.0 } else { 0.0 };
            if shape.contains(&0) {
                return Ok(vec![Value::PendingFill {
                    name: node.name.clone(),
                    value,
                    shape,
                }]);
            }
            let dims = shape
                .iter()
                .map(|&d| {
                    usize::try_from(d)
                        .map(FillDim::Fixed)
                        .map_err(|_| err(format!("dim {d} is negative")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let s = self.emit(&node.name, Fill { value, shape: dims }.into(), vec![]);
            return Ok(vec![Value::Ready(s)]);
        }

        // The RNN's data is the batch reference for its pending initial states.
        if op == "RNN" {
            let data = node
                .inputs
                .first()
                .ok_or_else(|| err("has no data input".into()))?;
            self.pending_rnn_data = Some(self.ready(symbol, *data, &node.name)?);
        }
        let mut inputs = Vec::with_capacity(nin);
        for e in &node.inputs {
            inputs.push(self.ready(symbol, *e, &node.name)?);
        }
        self.pending_rnn_data = None;
        let need = |n: usize| -> Result<(), ImportError> {
            if nin != n {
                return Err(err(format!("has {nin} inputs, expected {n}")));
            }
            Ok(())
        };

        let converted: Op = match op {
            "Convolution" => {
                let w = conv_window(&mut a, &err)?;
                let filters = a.req_int("num_filter")?;
                let groups = a.int("num_group", 1)?;
                let no_bias = a.bool("no_bias", false)?;
                a.finish()?;
                need(if no_bias { 2 } else { 3 })?;
                if let Some(weight) = inputs.get(1) {
                    self.check_leading_dim(weight, filters, &node.name, "num_filter")?;
                }
                Conv {
                    kernel: w.kernel,
                    stride: w.stride,
                    dilation: w.dilation,
                    pad: w.pad,
                    groups: positive(groups, "num_group", &err)?,
                    bias: !no_bias,
                }
                .into()
            }
            "_contrib_DeformableConvolution" | "_contrib_ModulatedDeformableConvolution" => {
                // MXNet 1.9.1 registers only the contrib names, and implements both in 2-D.
                let modulated = op == "_contrib_ModulatedDeformableConvolution";
                let kernel = a.req_tuple("kernel")?;
                if kernel.len() != 2 {
                    return Err(err(format!(
                        "attribute \"kernel\" = {kernel:?} must have 2 dims (MXNet implements the deformable convolution in 2-D only)"
                    )));
                }
                let kernel = to_usize(&kernel, &err)?;
                let stride = window(&mut a, "stride", 2, 1, &err)?;
                let dilation = window(&mut a, "dilate", 2, 1, &err)?;
                let pad = window(&mut a, "pad", 2, 0, &err)?;
                layout(&mut a, 2, &err)?;
                let filters = a.req_int("num_filter")?;
                let groups = a.int("num_group", 1)?;
                let deformable_groups = a.int("num_deformable_group", 1)?;
                let no_bias = a.bool("no_bias", false)?;
                let im2col_step = if modulated {
                    Some(positive(a.int("im2col_step", 64)?, "im2col_step", &err)?)
                } else {
                    None
                };
                // A memory hint for MXNet's column buffer; ward's kernels size their own.
                a.ignore(&["workspace"]);
                a.finish()?;
                positive(filters, "num_filter", &err)?;
                let op = DeformableConv {
                    kernel,
                    stride,
                    dilation,
                    pad,
                    groups: positive(groups, "num_group", &err)?,
                    deformable_groups: positive(deformable_groups, "num_deformable_group", &err)?,
                    modulated,
                    bias: !no_bias,
                    im2col_step,
                };
                op.validate().map_err(|e| err(format!("attributes: {e}")))?;
                need(op.arity().0)?;
                if let Some(weight) = inputs.get(op.weight_input()) {
                    self.check_leading_dim(weight, filters, &node.name, "num_filter")?;
                }
                op.into()
            }
            "Deconvolution" => {
                let w = conv_window(&mut a, &err)?;
                let adj = window(&mut a, "adj", w.kernel.len(), 0, &err)?;
                let target = a.tuple("target_shape", &[])?;
                if !target.is_empty() && target.iter().any(|&d| d != 0) {
                    return Err(unsupported("target_shape", &format!("{target:?}"), ""));
                }
                a.req_int("num_filter")?;
                let groups = a.int("num_group", 1)?;
                // MXNet's default differs from Convolution's.
                let no_bias = a.bool("no_bias", true)?;
                a.finish()?;
                need(if no_bias { 2 } else { 3 })?;
                Deconv {
                    kernel: w.kernel,
                    stride: w.stride,
                    dilation: w.dilation,
                    pad: w.pad,
                    output_padding: adj,
                    groups: positive(groups, "num_group", &err)?,
                    bias: !no_bias,
                }
                .into()
            }
            "FullyConnected" => {
                let units = a.req_int("num_hidden")?;
                let no_bias = a.bool("no_bias", false)?;
                let flatten = a.bool("flatten", true)?;
                a.finish()?;
                need(if no_bias { 2 } else { 3 })?;
                Dense {
                    units: positive(units, "num_hidden", &err)?,
                    flatten,
                    bias: !no_bias,
                }
                .into()
            }
            "Pooling" => {
                let global = a.bool("global_pool", false)?;
                let kernel = a.tuple("kernel", &[])?;
                let kind = match a
                    .enum_of("pool_type", "max", &["max", "avg", "sum", "lp"])?
                    .as_str()
                {
                    "max" => PoolKind::Max,
                    "avg" => PoolKind::Avg,
                    "sum" => PoolKind::Sum,
                    other => return Err(unsupported("pool_type", &format!("{other:?}"), "")),
                };
                let convention =
                    a.enum_of("pooling_convention", "valid", &["valid", "full", "same"])?;
                if convention == "same" {
                    return Err(unsupported("pooling_convention", &"\"same\"", ""));
                }
                let count_include_pad = a.opt_bool("count_include_pad")?.unwrap_or(true);
                a.ignore(&["cudnn_off", "p_value"]);
                let k = if global {
                    kernel.len().max(1)
                } else {
                    kernel.len()
                };
                if !global && !(1..=3).contains(&k) {
                    return Err(err(format!("kernel {kernel:?} must have 1 to 3 dims")));
                }
                let stride = window(&mut a, "stride", k, 1, &err)?;
                let pad = window(&mut a, "pad", k, 0, &err)?;
                layout(&mut a, k, &err)?;
                a.finish()?;
                need(1)?;
                if global {
                    Pool {
                        kind,
                        kernel: vec![],
                        stride: vec![],
                        pad: vec![],
                        ceil: false,
                        global: true,
                        count_include_pad,
                    }
                    .into()
                } else {
                    Pool {
                        kind,
                        kernel: to_usize(&kernel, &err)?,
                        stride,
                        pad,
                        ceil: convention == "full",
                        global: false,
                        count_include_pad,
                    }
                    .into()
                }
            }
            "BatchNorm" | "_contrib_SyncBatchNorm" => {
                let eps = a.float("eps", 1e-3)?;
                let fix_gamma = a.bool("fix_gamma", true)?;
                let axis = if op == "BatchNorm" {
                    a.int("axis", 1)?
                } else {
                    // SyncBatchNorm normalises axis 1 and shares its batch statistics
                    // across the `ndev` devices of group `key` when training on several;
                    // ward runs one device, where it is BatchNorm.
                    a.req_string("key")?;
                    a.int("ndev", 1)?;
                    1
                };
                let momentum = a.float("momentum", 0.9)?;
                let use_global_stats = a.bool("use_global_stats", false)?;
                if a.bool("output_mean_var", false)? {
                    return Err(unsupported("output_mean_var", &true, ""));
                }
                // cuDNN switches and quantisation calibration change no result here.
                a.ignore(&["cudnn_off", "min_calib_range", "max_calib_range"]);
                a.finish()?;
                need(5)?;
                BatchNorm {
                    axis,
                    eps,
                    fix_gamma,
                    momentum,
                    use_global_stats,
                }
                .into()
            }
            "InstanceNorm" => {
                let eps = a.float("eps", 1e-3)?;
                a.finish()?;
                need(3)?;
                InstanceNorm { eps }.into()
            }
            "L2Normalization" => {
                let mode = match a
                    .enum_of("mode", "instance", &["instance", "channel", "spatial"])?
                    .as_str()
                {
                    "channel" => L2NormMode::Channel,
                    "spatial" => L2NormMode::Spatial,
                    _ => L2NormMode::Instance,
                };
                let eps = a.float("eps", 1e-10)?;
                a.finish()?;
                need(1)?;
                L2Normalization { mode, eps }.into()
            }
            "LayerNorm" => {
                let axis = a.int("axis", -1)?;
                let eps = a.float("eps", 1e-5)?;
                if a.bool("output_mean_var", false)? {
                    return Err(unsupported("output_mean_var", &true, ""));
                }
                a.finish()?;
                need(3)?;
                LayerNorm { axis, eps }.into()
            }
            "GroupNorm" => {
                let groups = a.int("num_groups", 1)?;
                let eps = a.float("eps", 1e-5)?;
                if a.bool("output_mean_var", false)? {
                    return Err(unsupported("output_mean_var", &true, ""));
                }
                a.finish()?;
                need(3)?;
                GroupNorm {
                    groups: positive(groups, "num_groups", &err)?,
                    eps,
                }
                .into()
            }
            "Activation" => {
                let kind = match a
                    .enum_of(
                        "act_type",
                        "",
                        &["relu", "sigmoid", "tanh", "softrelu", "softsign"],
                    )?
                    .as_str()
                {
                    "relu" => ActivationKind::Relu,
                    "sigmoid" => ActivationKind::Sigmoid,
                    "tanh" => ActivationKind::Tanh,
                    "softrelu" => ActivationKind::Softrelu,
                    "softsign" => ActivationKind::Softsign,
                    _ => return Err(err("attribute \"act_type\" is required".into())),
                };
                a.finish()?;
                need(1)?;
                Activation { kind }.into()
            }
            "LeakyReLU" => {
                let act = a.enum_of(
                    "act_type",
                    "leaky",
                    &["leaky", "elu", "prelu", "selu", "gelu", "rrelu"],
                )?;
                let slope = a.float("slope", 0.25)?;
                let lower = a.float("lower_bound", 0.125)?;
                let upper = a.float("upper_bound", 0.334)?;
                a.finish()?;
                let kind = match act.as_str() {
                    "leaky" => LeakyReluKind::Leaky { slope },
                    "elu" => LeakyReluKind::Elu { slope },
                    "prelu" => LeakyReluKind::Prelu,
                    "selu" => LeakyReluKind::Selu,
                    "gelu" => LeakyReluKind::Gelu,
                    // Inference uses the mean of the random slope's range.
                    _ => LeakyReluKind::Leaky {
                        slope: (lower + upper) / 2.0,
                    },
                };
                need(if kind == LeakyReluKind::Prelu { 2 } else { 1 })?;
                LeakyRelu { kind }.into()
            }
            "Dropout" => {
                let p = a.float("p", 0.5)?;
                let mode = a.enum_of("mode", "training", &["training", "always"])?;
                let axes = a.tuple("axes", &[])?;
                a.ignore(&["cudnn_off"]);
                a.finish()?;
                if mode == "always" && p > 0.0 {
                    return Err(err(format!(
                        "attribute \"mode\" = \"always\" drops at random at inference (p = {p}); ward does not run nondeterministic models"
                    )));
                }
                need(1)?;
                Dropout { p, axes }.into()
            }
            "SoftmaxOutput" => {
                let multi_output = a.bool("multi_output", false)?;
                let preserve_shape = a.bool("preserve_shape", false)?;
                let grad_scale = a.float("grad_scale", 1.0)?;
                let ignore_label = a.float("ignore_label", -1.0)?;
                let use_ignore = a.bool("use_ignore", false)?;
                let normalization = normalization(&mut a)?;
                let out_grad = a.bool("out_grad", false)?;
                let smooth_alpha = a.float("smooth_alpha", 0.0)?;
                a.finish()?;
                if !(1..=2).contains(&nin) {
                    return Err(err(format!("has {nin} inputs, expected data and a label")));
                }
                let mode = if multi_output {
                    SoftmaxOutputMode::Channel
                } else if preserve_shape {
                    SoftmaxOutputMode::Last
                } else {
                    SoftmaxOutputMode::Flatten
                };
                SoftmaxOutput {
                    mode,
                    grad_scale,
                    ignore_label,
                    use_ignore,
                    normalization,
                    smooth_alpha,
                    out_grad,
                }
                .into()
            }
            "LinearRegressionOutput" | "LogisticRegressionOutput" | "MAERegressionOutput" => {
                let grad_scale = a.float("grad_scale", 1.0)?;
                a.finish()?;
                if !(1..=2).contains(&nin) {
                    return Err(err(format!("has {nin} inputs, expected data and a label")));
                }
                let kind = match op {
                    "LinearRegressionOutput" => RegressionKind::Linear,
                    "LogisticRegressionOutput" => RegressionKind::Logistic,
                    _ => RegressionKind::Mae,
                };
                RegressionOutput { kind, grad_scale }.into()
            }
            "MakeLoss" => {
                let grad_scale = a.float("grad_scale", 1.0)?;
                let valid_thresh = a.float("valid_thresh", 0.0)?;
                let normalization = normalization(&mut a)?;
                a.finish()?;
                need(1)?;
                MakeLoss {
                    grad_scale,
                    normalization,
                    valid_thresh,
                }
                .into()
            }
            "make_loss" => {
                a.finish()?;
                need(1)?;
                MakeLoss {
                    grad_scale: 1.0,
                    normalization: Normalization::Null,
                    valid_thresh: 0.0,
                }
                .into()
            }
            "BlockGrad" => {
                a.finish()?;
                need(1)?;
                BlockGrad {}.into()
            }
            "softmax" | "log_softmax" => {
                let axis = a.int("axis", -1)?;
                let temperature = a.opt_float("temperature")?.unwrap_or(1.0);
                let dtype = a.string("dtype", "None")?;
                if dtype != "None" && dtype != "float32" {
                    return Err(unsupported(
                        "dtype",
                        &format!("{dtype:?}"),
                        " (only float32)",
                    ));
                }
                let use_length = a.bool("use_length", false)?;
                if use_length && op == "log_softmax" {
                    return Err(unsupported(
                        "use_length",
                        &true,
                        " (MXNet 1.9.1's log_softmax takes no length input)",
                    ));
                }
                a.finish()?;
                need(if use_length { 2 } else { 1 })?;
                if temperature == 0.0 || !temperature.is_finite() {
                    return Err(err(format!(
                        "temperature {temperature} must be finite and nonzero"
                    )));
                }
                Softmax {
                    axis,
                    temperature,
                    log: op == "log_softmax",
                    use_length,
                }
                .into()
            }
            "Reshape" => {
                let shape = a.tuple("shape", &[])?;
                let reverse = a.bool("reverse", false)?;
                let target = a.tuple("target_shape", &[])?;
                let keep_highest = a.bool("keep_highest", false)?;
                a.finish()?;
                need(1)?;
                if !target.is_empty() || keep_highest {
                    return Err(err(
                        "the deprecated attributes \"target_shape\"/\"keep_highest\" are not supported".into(),
                    ));
                }
                // MXNet's codes become dims in terms of the input's, for its rank.
                let x = inputs
                    .first()
                    .copied()
                    .ok_or_else(|| err("has no input".into()))?;
                let probe = self.probe_shapes()?;
                let x = probe.of(&self.graph, x)?;
                Op::Reshape(mxnet_reshape(x, &shape, reverse).map_err(err)?)
            }
            "Flatten" => {
                a.finish()?;
                need(1)?;
                Flatten {}.into()
            }
            "Concat" | "_rnn_param_concat" => {
                let n = a.req_int("num_args")?;
                let axis = a.int("dim", if op == "Concat" { 1 } else { 0 })?;
                a.finish()?;
                need(usize::try_from(n).map_err(|_| err(format!("num_args {n} is negative")))?)?;
                Concat { axis }.into()
            }
            binary if BinaryKind::from_mxnet_name(binary).is_some() => {
                a.finish()?;
                need(2)?;
                let (kind, broadcast) = BinaryKind::from_mxnet_name(binary)
                    .ok_or_else(|| err(format!("{binary} is not binary")))?;
                Binary { kind, broadcast }.into()
            }
            "add_n" => {
                a.ignore(&["num_args"]);
                a.finish()?;
                AddN {}.into()
            }
            scalar if ScalarKind::from_mxnet_name(scalar).is_some() => {
                let kind = ScalarKind::from_mxnet_name(scalar)
                    .ok_or_else(|| err(format!("{scalar} takes no scalar")))?;
                // MXNet 1.9.1's default scalar is 1. A NaN scalar is refused by the
                // attribute parser, naming the attribute.
                let value = a.float("scalar", 1.0)?;
                // `is_int` only decides the output dtype of integer data on comparisons
                // (float64 when false); on float data it changes nothing, and MXNet
                // accepts and ignores it on the arithmetic ones.
                a.bool("is_int", true)?;
                a.finish()?;
                need(1)?;
                Scalar { kind, value }.into()
            }
            "where" => {
                a.finish()?;
                need(3)?;
                Where {}.into()
            }
            unary if unary_kind(unary).is_some() => {
                a.finish()?;
                need(1)?;
                let kind = unary_kind(unary).ok_or_else(|| err(format!("{unary} is not unary")))?;
                Unary { kind }.into()
            }
            "Cast" | "amp_cast" => {
                let dtype = a.req_string("dtype")?;
                a.finish()?;
                need(1)?;
                let to = CastType::from_name(&dtype).ok_or_else(|| {
                    unsupported(
                        "dtype",
                        &format!("{dtype:?}"),
                        " (ward casts to float16, float32, float64, int8, uint8, int32 and int64)",
                    )
                })?;
                Cast { to }.into()
            }
            "clip" => {
                let min = a.req_float("a_min")?;
                let max = a.req_float("a_max")?;
                a.finish()?;
                need(1)?;
                if min.is_nan() || max.is_nan() || min > max {
                    return Err(err(format!("a_min {min} exceeds a_max {max}")));
                }
                Clip { min, max }.into()
            }
            "Embedding" => {
                let input_dim = a.req_int("input_dim")?;
                let output_dim = a.req_int("output_dim")?;
                let dtype = a.string("dtype", "float32")?;
                a.ignore(&["sparse_grad"]);
                a.finish()?;
                need(2)?;
                if dtype != "float32" {
                    return Err(unsupported(
                        "dtype",
                        &format!("{dtype:?}"),
                        " (only float32)",
                    ));
                }
                Embedding {
                    input_dim: positive(input_dim, "input_dim", &err)?,
                    output_dim: positive(output_dim, "output_dim", &err)?,
                }
                .into()
            }
            "SwapAxis" => {
                let axis1 = a.int("dim1", 0)?;
                let axis2 = a.int("dim2", 0)?;
                a.finish()?;
                need(1)?;
                SwapAxes { axis1, axis2 }.into()
            }
            "transpose" => {
                let axes = a.tuple("axes", &[])?;
                a.finish()?;
                need(1)?;
                let rank = self.input_shape(&inputs, 1)?.len();
                if axes.is_empty() {
                    Transpose::reversed(rank).into()
                } else {
                    // MXNet 1.9.1 takes no negative axes here (its check: `0 <= i < ndim`).
                    let perm = axes
                        .iter()
                        .map(|&x| {
                            usize::try_from(x).map_err(|_| {
                                err(format!(
                                    "attribute \"axes\" = {axes:?}: MXNet's transpose takes no negative axes"
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Transpose { perm }.into()
                }
            }
            "expand_dims" => {
                let axis = a.req_int("axis")?;
                a.finish()?;
                need(1)?;
                let rank = self.input_shape(&inputs, 1)?.len() as i64;
                if axis < -rank - 1 || axis > rank {
                    return Err(err(format!(
                        "attribute \"axis\" = {axis} is out of range [{}, {rank}] for an input of rank {rank}",
                        -rank - 1
                    )));
                }
                ExpandDims { axis }.into()
            }
            "squeeze" => {
                let axes = a.opt_tuple("axis")?;
                a.finish()?;
                need(1)?;
                // With variable dims at 1 and at 2: a dim is 1 only if it is in both.
                let one = self.input_shape(&inputs, 1)?;
                let two = self.input_shape(&inputs, 2)?;
                let axes = squeezed_axes(&one, &two, axes.as_deref()).map_err(err)?;
                Squeeze { axes }.into()
            }
            "slice" => {
                let begin = a.optional_int_tuple("begin", &[])?;
                let end = a.optional_int_tuple("end", &[])?;
                let step = a.optional_int_tuple("step", &[])?;
                a.finish()?;
                need(1)?;
                // An absent step is 1, as MXNet reads it.
                let step = step.iter().map(|s| s.unwrap_or(1)).collect();
                Slice { begin, end, step }.into()
            }
            "slice_axis" => {
                let axis = a.req_int("axis")?;
                let begin = a.req_int("begin")?;
                if !a.contains("end") {
                    return Err(err("attribute \"end\" is missing".into()));
                }
                let end = a.opt_int("end")?;
                a.finish()?;
                need(1)?;
                SliceAxis { axis, begin, end }.into()
            }
            "SequenceLast" | "SequenceMask" | "SequenceReverse" => {
                // With `use_sequence_length` the second input holds one length per
                // sequence; without it MXNet's node has only the data.
                let use_sequence_length = a.bool("use_sequence_length", false)?;
                let axis = a.int("axis", 0)?;
                let value = if op == "SequenceMask" {
                    // MXNet reads `value` as a float32.
                    f64::from(a.float("value", 0.0)? as f32)
                } else {
                    0.0
                };
                a.finish()?;
                need(if use_sequence_length { 2 } else { 1 })?;
                let axes: &[i64] = if op == "SequenceReverse" {
                    &[0]
                } else {
                    &[0, 1]
                };
                if !axes.contains(&axis) {
                    return Err(err(format!(
                        "attribute \"axis\" = {axis}: MXNet 1.9.1's {op} takes axis {}",
                        if axes.len() == 1 { "0 only" } else { "0 or 1" }
                    )));
                }
                match op {
                    "SequenceLast" => SequenceLast {
                        axis,
                        use_sequence_length,
                    }
                    .into(),
                    "SequenceMask" => {
                        if value.is_nan() {
                            return Err(unsupported("value", &value, " (a number)"));
                        }
                        SequenceMask {
                            axis: axis as usize,
                            value,
                            use_sequence_length,
                        }
                        .into()
                    }
                    _ => SequenceReverse {
                        use_sequence_length,
                    }
                    .into(),
                }
            }
            "batch_dot" => {
                let transpose_a = a.bool("transpose_a", false)?;
                let transpose_b = a.bool("transpose_b", false)?;
                let stype = a.enum_of(
                    "forward_stype",
                    "None",
                    &["None", "csr", "default", "row_sparse"],
                )?;
                a.finish()?;
                if stype != "None" && stype != "default" {
                    return Err(unsupported(
                        "forward_stype",
                        &format!("{stype:?}"),
                        " (only None and default: ward's tensors are dense)",
                    ));
                }
                need(2)?;
                BatchDot {
                    transpose_a,
                    transpose_b,
                }
                .into()
            }
            name if AttentionKind::from_mxnet_name(name).is_some() => {
                let kind = AttentionKind::from_mxnet_name(name)
                    .ok_or_else(|| err(format!("{name} is not an attention product")))?;
                let heads = a.req_int("heads")?;
                a.finish()?;
                need(if kind == AttentionKind::SelfattQk {
                    1
                } else {
                    2
                })?;
                let op = InterleavedMatmul {
                    kind,
                    heads: positive(heads, "heads", &err)?,
                };
                self.check_output(&op.into(), &inputs, "heads", &err)?;
                op.into()
            }
            "SliceChannel" => {
                let outputs = a.req_int("num_outputs")?;
                let axis = a.int("axis", 1)?;
                let squeeze = a.bool("squeeze_axis", false)?;
                a.finish()?;
                need(1)?;
                Split {
                    axis,
                    outputs: positive(outputs, "num_outputs", &err)?,
                    squeeze,
                }
                .into()
            }
            "stack" => {
                let axis = a.int("axis", 0)?;
                a.ignore(&["num_args"]);
                a.finish()?;
                Stack { axis }.into()
            }
            "mean" => {
                let (axes, exclude) = reduce_axes(&mut a)?;
                let keepdims = a.bool("keepdims", false)?;
                a.finish()?;
                need(1)?;
                Mean {
                    axes,
                    keepdims,
                    exclude,
                }
                .into()
            }
            "sum" | "prod" | "nansum" | "nanprod" | "max" | "min" => {
                let kind = match op {
                    "sum" => ReduceKind::Sum,
                    "prod" => ReduceKind::Prod,
                    "nansum" => ReduceKind::NanSum,
                    "nanprod" => ReduceKind::NanProd,
                    "max" => ReduceKind::Max,
                    _ => ReduceKind::Min,
                };
                let (axes, exclude) = reduce_axes(&mut a)?;
                let keepdims = a.bool("keepdims", false)?;
                a.finish()?;
                need(1)?;
                Reduce {
                    kind,
                    axes,
                    keepdims,
                    exclude,
                }
                .into()
            }
            "norm" => {
                let kind = match a.int("ord", 2)? {
                    1 => ReduceKind::L1,
                    2 => ReduceKind::L2,
                    other => return Err(unsupported("ord", &other, " (MXNet has 1 and 2)")),
                };
                let axes = match a.opt_tuple("axis")? {
                    Some(list) if list.is_empty() => None,
                    other => other,
                };
                let out_dtype = a.string("out_dtype", "None")?;
                if out_dtype != "None" && out_dtype != "float32" {
                    return Err(unsupported(
                        "out_dtype",
                        &format!("{out_dtype:?}"),
                        " (only float32)",
                    ));
                }
                let keepdims = a.bool("keepdims", false)?;
                a.finish()?;
                need(1)?;
                Reduce {
                    kind,
                    axes,
                    keepdims,
                    exclude: false,
                }
                .into()
            }
            "argmax" | "argmin" | "argmax_channel" => {
                let kind = if op == "argmin" {
                    ArgKind::Min
                } else {
                    ArgKind::Max
                };
                // MXNet's argmax_channel is argmax along axis 1, without attributes.
                let (axis, keepdims) = if op == "argmax_channel" {
                    (Some(1), false)
                } else {
                    (a.opt_int("axis")?, a.bool("keepdims", false)?)
                };
                a.finish()?;
                need(1)?;
                ArgReduce {
                    kind,
                    axis,
                    keepdims,
                }
                .into()
            }
            "_arange" => {
                let start = a.req_float("start")?;
                let stop = a.opt_float("stop")?;
                let step = a.float("step", 1.0)?;
                let repeat = a.int("repeat", 1)?;
                let infer_range = a.bool("infer_range", false)?;
                let dtype = a.string("dtype", "float32")?;
                a.ignore(&["ctx"]);
                a.finish()?;
                need(0)?;
                if infer_range {
                    return Err(unsupported("infer_range", &true, " (deprecated in MXNet)"));
                }
                if dtype != "float32" {
                    return Err(unsupported(
                        "dtype",
                        &format!("{dtype:?}"),
                        " (only float32)",
                    ));
                }
                let repeat = arange_repeat(repeat).map_err(err)?;
                let count = arange_count(start, stop, step, repeat).map_err(err)?;
                let (start, _) = arange_bounds(start, stop);
                Arange {
                    start,
                    step,
                    repeat,
                    shape: vec![FillDim::Fixed(count)],
                }
                .into()
            }
            "_contrib_arange_like" => {
                let start = a.float("start", 0.0)?;
                let step = a.float("step", 1.0)?;
                let repeat = a.int("repeat", 1)?;
                let axis = a.opt_int("axis")?;
                a.ignore(&["ctx"]);
                a.finish()?;
                need(1)?;
                let repeat = arange_repeat(repeat).map_err(err)?;
                if !start.is_finite() || !step.is_finite() {
                    return Err(err(format!(
                        "attributes \"start\" = {start} and \"step\" = {step} must be finite"
                    )));
                }
                let rank = self.input_shape(&inputs, 1)?.len();
                let shape = match axis {
                    None => FillDim::first_input(rank),
                    Some(axis) => {
                        let a = ward_graph::ops::resolve_axis(axis, rank)
                            .map_err(|e| err(format!("attribute \"axis\" = {axis}: {e}")))?;
                        vec![FillDim::Like { input: 0, axis: a }]
                    }
                };
                Arange {
                    start,
                    step,
                    repeat,
                    shape,
                }
                .into()
            }
            "topk" | "sort" | "argsort" => {
                // Absent is MXNet's -1; "None" orders the flattened input.
                let axis = if a.contains("axis") {
                    a.opt_int("axis")?
                } else {
                    Some(-1)
                };
                // MXNet runs sort and argsort as topk of every element (k <= 0).
                let (k, ret, ascend) = match op {
                    "topk" => {
                        let k = a.int("k", 1)?;
                        let ret = match a
                            .enum_of("ret_typ", "indices", &["value", "indices", "mask", "both"])?
                            .as_str()
                        {
                            "value" => TopkReturn::Value,
                            "mask" => TopkReturn::Mask,
                            "both" => TopkReturn::Both,
                            _ => TopkReturn::Indices,
                        };
                        (k, ret, a.bool("is_ascend", false)?)
                    }
                    "sort" => (0, TopkReturn::Value, a.bool("is_ascend", true)?),
                    _ => (0, TopkReturn::Indices, a.bool("is_ascend", true)?),
                };
                if op != "sort" {
                    // The indices' dtype; MXNet gives values and masks in the data's.
                    let dtype = a.enum_of(
                        "dtype",
                        "float32",
                        &["float16", "float32", "float64", "int32", "int64", "uint8"],
                    )?;
                    if dtype != "float32" && ret.gives_indices() {
                        return Err(unsupported(
                            "dtype",
                            &format!("{dtype:?}"),
                            " (ward gives indices as float32)",
                        ));
                    }
                }
                a.finish()?;
                need(1)?;
                let op = Topk {
                    axis,
                    k: usize::try_from(k).ok().filter(|&k| k > 0),
                    ret,
                    ascend,
                };
                self.check_topk(&op, &inputs, &err)?;
                op.into()
            }
            "shape_array" => {
                a.finish()?;
                need(1)?;
                ShapeArray {}.into()
            }
            "size_array" => {
                a.finish()?;
                need(1)?;
                SizeArray {}.into()
            }
            "_contrib_box_nms" => {
                let overlap_thresh = a.float("overlap_thresh", 0.5)?;
                let valid_thresh = a.float("valid_thresh", 0.0)?;
                let topk = a.int("topk", -1)?;
                let coord_start = a.int("coord_start", 2)?;
                let score_index = a.int("score_index", 1)?;
                let id_index = a.int("id_index", -1)?;
                let background_id = a.int("background_id", -1)?;
                let force_suppress = a.bool("force_suppress", false)?;
                let in_format = box_format(&mut a, "in_format", "corner")?;
                let out_format = box_format(&mut a, "out_format", "corner")?;
                a.finish()?;
                need(1)?;
                let f32_attr = |attr: &'static str, v: f64| -> Result<f64, ImportError> {
                    if v.is_nan() {
                        return Err(unsupported(attr, &v, " (a number)"));
                    }
                    Ok(f64::from(v as f32))
                };
                let index = |attr: &'static str, v: i64| -> Result<usize, ImportError> {
                    usize::try_from(v).map_err(|_| {
                        err(format!(
                            "attribute \"{attr}\" = {v}: an index in the row, not negative"
                        ))
                    })
                };
                let op = BoxNms {
                    overlap_thresh: f32_attr("overlap_thresh", overlap_thresh)?,
                    valid_thresh: f32_attr("valid_thresh", valid_thresh)?,
                    topk: usize::try_from(topk).ok(),
                    coord_start: index("coord_start", coord_start)?,
                    score_index: index("score_index", score_index)?,
                    id_index: usize::try_from(id_index).ok(),
                    background_id,
                    force_suppress,
                    in_format,
                    out_format,
                };
                if let Err(e) = op.validate() {
                    return Err(err(format!("attribute \"topk\" = {topk}: {e}")));
                }
                for fill in [1, 2] {
                    let shape = self.input_shape(&inputs, fill)?;
                    if let Err((attr, e)) = op.check(&shape) {
                        return Err(err(format!("attribute \"{attr}\": {e}")));
                    }
                }
                op.into()
            }
            "_contrib_box_decode" => {
                let mut std = [1.0f64; 4];
                for (i, (s, key)) in std
                    .iter_mut()
                    .zip(["std0", "std1", "std2", "std3"])
                    .enumerate()
                {
                    let v = a.float(key, 1.0)?;
                    if v.is_nan() {
                        return Err(unsupported(
                            ["std0", "std1", "std2", "std3"]
                                .get(i)
                                .copied()
                                .unwrap_or("std0"),
                            &v,
                            " (a number)",
                        ));
                    }
                    *s = f64::from(v as f32);
                }
                let clip = a.float("clip", -1.0)?;
                let format = box_format(&mut a, "format", "center")?;
                a.finish()?;
                need(2)?;
                if clip.is_nan() {
                    return Err(unsupported("clip", &clip, " (a number)"));
                }
                let op = BoxDecode {
                    std,
                    clip: (clip > 0.0).then_some(f64::from(clip as f32)),
                    format,
                };
                for fill in [1, 2] {
                    let data = self.input_shape(&inputs, fill)?;
                    let anchors = self.input_shape(inputs.get(1..).unwrap_or_default(), fill)?;
                    BoxDecode::layout(&data, &anchors).map_err(err)?;
                }
                op.into()
            }
            "_contrib_box_encode" => {
                a.finish()?;
                need(6)?;
                BoxEncode {}.into()
            }
            "_contrib_MultiBoxDetection" => {
                let clip = a.bool("clip", true)?;
                let threshold = a.float("threshold", 0.01)?;
                let background_id = a.int("background_id", 0)?;
                let nms_threshold = a.float("nms_threshold", 0.5)?;
                let force_suppress = a.bool("force_suppress", false)?;
                let variances = a.float_tuple("variances", &[0.1, 0.1, 0.2, 0.2])?;
                let nms_topk = a.int("nms_topk", -1)?;
                a.finish()?;
                need(3)?;
                // MXNet holds every float as a float32.
                let f32_attr = |attr: &'static str, v: f64| -> Result<f64, ImportError> {
                    if v.is_nan() {
                        return Err(unsupported(attr, &v, " (a number)"));
                    }
                    Ok(f64::from(v as f32))
                };
                let variances = <[f64; 4]>::try_from(variances.as_slice())
                    .ok()
                    .map(|v| v.map(|x| f64::from(x as f32)))
                    .filter(|v| v.iter().all(|x| x.is_finite()))
                    .ok_or_else(|| {
                        err(format!(
                            "attribute \"variances\" = {variances:?} must be 4 finite values (MXNet's check: \"Variance size must be 4\")"
                        ))
                    })?;
                let op = MultiBoxDetection {
                    clip,
                    threshold: f32_attr("threshold", threshold)?,
                    background_id,
                    nms_threshold: f32_attr("nms_threshold", nms_threshold)?,
                    force_suppress,
                    variances,
                    nms_topk: usize::try_from(nms_topk).ok().filter(|&k| k > 0),
                };
                if let Err(e) = op.validate() {
                    return Err(err(format!("attribute \"nms_topk\" = {nms_topk}: {e}")));
                }
                for fill in [1, 2] {
                    let shape =
                        |i: usize| self.input_shape(inputs.get(i..).unwrap_or_default(), fill);
                    let (c, l, an) = (shape(0)?, shape(1)?, shape(2)?);
                    if let Err((input, e)) = MultiBoxDetection::check(&c, &l, &an) {
                        return Err(err(format!("input \"{input}\": {e}")));
                    }
                }
                op.into()
            }
            "_contrib_Proposal" | "_contrib_MultiProposal" => {
                let multi = op == "_contrib_MultiProposal";
                let pre = a.int("rpn_pre_nms_top_n", 6000)?;
                let post = a.int("rpn_post_nms_top_n", 300)?;
                let threshold = a.float("threshold", 0.7)?;
                let min_size = a.int("rpn_min_size", 16)?;
                let scales = a.float_tuple("scales", &[4.0, 8.0, 16.0, 32.0])?;
                let ratios = a.float_tuple("ratios", &[0.5, 1.0, 2.0])?;
                let stride = a.int("feature_stride", 16)?;
                let output_score = a.bool("output_score", false)?;
                let iou_loss = a.bool("iou_loss", false)?;
                a.finish()?;
                need(3)?;
                if threshold.is_nan() {
                    return Err(unsupported("threshold", &threshold, " (a number)"));
                }
                // MXNet holds these as float32 and int.
                let floats = |key: &str, v: &[f64]| -> Result<Vec<f32>, ImportError> {
                    v.iter()
                        .map(|&x| {
                            let f = x as f32;
                            if f.is_finite() && f > 0.0 {
                                Ok(f)
                            } else {
                                Err(err(format!(
                                    "attribute \"{key}\" = {v:?} holds {f}: finite values above 0 expected"
                                )))
                            }
                        })
                        .collect()
                };
                let int32 = |key: &str, v: i64| -> Result<i32, ImportError> {
                    i32::try_from(v).map_err(|_| {
                        err(format!(
                            "attribute \"{key}\" = {v} is past MXNet's 32-bit int"
                        ))
                    })
                };
                let limit = ward_graph::limits::MAX_NMS_BOXES;
                let pre_top = int32("rpn_pre_nms_top_n", pre)?;
                let rpn_pre_nms_top_n = usize::try_from(pre_top).ok().filter(|&k| k > 0);
                if rpn_pre_nms_top_n.is_some_and(|k| k > limit) {
                    return Err(err(format!(
                        "attribute \"rpn_pre_nms_top_n\" = {pre} is past the limit of {limit} boxes"
                    )));
                }
                let rpn_post_nms_top_n = usize::try_from(post)
                    .ok()
                    .filter(|&k| k > 0 && k <= limit)
                    .ok_or_else(|| {
                        err(format!(
                            "attribute \"rpn_post_nms_top_n\" = {post}: the output's rows, 1 to {limit}"
                        ))
                    })?;
                let feature_stride = u32::try_from(int32("feature_stride", stride)?)
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| {
                        err(format!(
                            "attribute \"feature_stride\" = {stride} must be above 0"
                        ))
                    })?;
                let op = Proposal {
                    rpn_pre_nms_top_n,
                    rpn_post_nms_top_n,
                    threshold: f64::from(threshold as f32),
                    rpn_min_size: int32("rpn_min_size", min_size)?,
                    scales: floats("scales", &scales)?,
                    ratios: floats("ratios", &ratios)?,
                    feature_stride,
                    output_score,
                    iou_loss,
                };
                op.validate()
                    .map_err(|e| err(format!("attributes \"scales\" and \"ratios\": {e}")))?;
                for fill in [1, 2] {
                    let shape =
                        |i: usize| self.input_shape(inputs.get(i..).unwrap_or_default(), fill);
                    let (c, b, i) = (shape(0)?, shape(1)?, shape(2)?);
                    if let Err((what, e)) = op.check_images(&c, &b, &i, multi) {
                        let kind = if matches!(what, "scales" | "rpn_post_nms_top_n") {
                            "attribute"
                        } else {
                            "input"
                        };
                        return Err(err(format!("{kind} \"{what}\": {e}")));
                    }
                }
                if multi {
                    MultiProposal(op).into()
                } else {
                    op.into()
                }
            }
            "ones_like" => {
                ignore_like_dtype(&mut a)?;
                a.finish()?;
                need(1)?;
                OnesLike {}.into()
            }
            "_contrib_div_sqrt_dim" => {
                a.finish()?;
                need(1)?;
                // x / √d for the last dim d, the root taken in float32 as MXNet takes it;
                // d must not follow the batch (two probes of the batch agree on it).
                let (one, two) = self.probe_pair(&inputs, 0)?;
                let last = one
                    .last()
                    .copied()
                    .filter(|&d| d > 0 && two.last() == Some(&d))
                    .ok_or_else(|| {
                        err(format!(
                            "data's last dim must be fixed and nonzero, got {one:?} for one probe of the batch and {two:?} for another"
                        ))
                    })?;
                Scalar {
                    kind: ScalarKind::Div,
                    value: f64::from((last as f32).sqrt()),
                }
                .into()
            }
            "zeros_like" => {
                ignore_like_dtype(&mut a)?;
                a.finish()?;
                need(1)?;
                // A fill, not `x · 0`, which is NaN where x is NaN or infinite.
                let rank = self.input_shape(&inputs, 1)?.len();
                Fill {
                    value: 0.0,
                    shape: FillDim::first_input(rank),
                }
                .into()
            }
            "Pad" => {
                let mode = match a
                    .enum_of("mode", "constant", &["constant", "edge", "reflect"])?
                    .as_str()
                {
                    "edge" => PadMode::Edge,
                    "reflect" => PadMode::Reflect,
                    _ => PadMode::Constant,
                };
                let pads = a.req_tuple("pad_width")?;
                let value = a.float("constant_value", 0.0)?;
                a.finish()?;
                need(1)?;
                Pad {
                    mode,
                    pads: to_usize(&pads, &err)?,
                    value,
                }
                .into()
            }
            "RNN" => {
                let hidden = a.req_int("state_size")?;
                let layers = a.req_int("num_layers")?;
                let bidirectional = a.bool("bidirectional", false)?;
                let mode = match a
                    .enum_of("mode", "", &["lstm", "gru", "rnn_tanh", "rnn_relu"])?
                    .as_str()
                {
                    "lstm" => RnnMode::Lstm,
                    "gru" => RnnMode::Gru,
                    "rnn_tanh" => RnnMode::RnnTanh,
                    "rnn_relu" => RnnMode::RnnRelu,
                    _ => return Err(err("attribute \"mode\" is required".into())),
                };
                let state_outputs = a.bool("state_outputs", false)?;
                for key in [
                    "projection_size",
                    "lstm_state_clip_min",
                    "lstm_state_clip_max",
                ] {
                    if let Some(v) = a.opt_float(key)? {
                        return Err(unsupported(key, &v, ""));
                    }
                }
                if a.bool("use_sequence_length", false)? {
                    return Err(unsupported("use_sequence_length", &true, ""));
                }
                // Dropout between layers applies in training only.
                a.ignore(&["p", "lstm_state_clip_nan", "cudnn_off"]);
                a.finish()?;
                need(if mode == RnnMode::Lstm { 4 } else { 3 })?;
                let rnn = Rnn {
                    mode,
                    hidden: positive(hidden, "state_size", &err)?,
                    layers: positive(layers, "num_layers", &err)?,
                    bidirectional,
                    state_outputs,
                };
                rnn.validate().map_err(err)?;
                // MXNet's packed parameter vector (input 1) becomes one parameter per
                // matrix and bias, after the states.
                let (Some(&data), Some(&packed)) = (inputs.first(), inputs.get(1)) else {
                    return Err(err("has no data or parameters".into()));
                };
                let probe = self.probe_shapes()?;
                let width = probe
                    .of(&self.graph, data)?
                    .get(2)
                    .copied()
                    .ok_or_else(|| err("data must be (T, N, I)".into()))?;
                let params =
                    unpack_rnn_params(&mut self.graph, &mut self.weights, &rnn, packed, width)
                        .map_err(err)?;
                inputs.remove(1);
                inputs.extend(params);
                rnn.into()
            }
            "_contrib_MultiBoxPrior" => {
                let sizes = a.float_tuple("sizes", &[1.0])?;
                let ratios = a.float_tuple("ratios", &[1.0])?;
                let clip = a.bool("clip", false)?;
                let steps = a.float_tuple("steps", &[-1.0, -1.0])?;
                let offsets = a.float_tuple("offsets", &[0.5, 0.5])?;
                a.finish()?;
                need(1)?;
                // MXNet holds every value as a float.
                let floats = |key: &str, v: &[f64]| -> Result<Vec<f32>, ImportError> {
                    v.iter()
                        .map(|&x| {
                            let f = x as f32;
                            if f.is_finite() {
                                Ok(f)
                            } else {
                                Err(err(format!(
                                    "attribute \"{key}\" = {v:?} holds {f}, which ward does not take"
                                )))
                            }
                        })
                        .collect()
                };
                let pair = |key: &str, v: &[f64]| -> Result<[f32; 2], ImportError> {
                    <[f32; 2]>::try_from(floats(key, v)?.as_slice()).map_err(|_| {
                        err(format!(
                            "attribute \"{key}\" = {v:?} must be two values, (y, x) (MXNet's check)"
                        ))
                    })
                };
                let op = MultiBoxPrior {
                    sizes: floats("sizes", &sizes)?,
                    ratios: floats("ratios", &ratios)?,
                    clip,
                    steps: pair("steps", &steps)?,
                    offsets: pair("offsets", &offsets)?,
                };
                op.anchors()
                    .map_err(|e| err(format!("attributes \"sizes\" and \"ratios\": {e}")))?;
                if op.offsets.iter().any(|o| !(0.0..=1.0).contains(o)) {
                    return Err(err(format!(
                        "attribute \"offsets\" = {offsets:?} must be 0 to 1 (MXNet's check)"
                    )));
                }
                op.validate()
                    .map_err(|e| err(format!("attribute \"steps\": {e}")))?;
                op.into()
            }
            "ROIPooling" => {
                let pooled = a.req_tuple("pooled_size")?;
                let scale = a.req_float("spatial_scale")?;
                a.finish()?;
                need(2)?;
                let size = |v: i64| usize::try_from(v).ok().filter(|&v| v > 0);
                let spatial_scale = scale as f32;
                let &[ph, pw] = pooled.as_slice() else {
                    return Err(err(format!(
                        "attribute \"pooled_size\" = {pooled:?} must be two positive sizes (MXNet's bound)"
                    )));
                };
                let (Some(pooled_height), Some(pooled_width)) = (size(ph), size(pw)) else {
                    return Err(err(format!(
                        "attribute \"pooled_size\" = {pooled:?} must be two positive sizes (MXNet's bound)"
                    )));
                };
                // MXNet holds the scale as a float and bounds it to [0, 1].
                if !(0.0..=1.0).contains(&spatial_scale) {
                    return Err(err(format!(
                        "attribute \"spatial_scale\" = {scale} is outside MXNet's bound [0, 1]"
                    )));
                }
                let op = RoiPool {
                    pooled_height,
                    pooled_width,
                    spatial_scale,
                };
                op.validate()
                    .map_err(|e| err(format!("attribute \"pooled_size\": {e}")))?;
                op.into()
            }
            "_contrib_ROIAlign" => {
                // MXNet 1.9.1 registers only the contrib name.
                let pooled = a.req_tuple("pooled_size")?;
                let scale = a.req_float("spatial_scale")?;
                let ratio = a.int("sample_ratio", -1)?;
                let position_sensitive = a.bool("position_sensitive", false)?;
                let aligned = a.bool("aligned", false)?;
                a.finish()?;
                need(2)?;
                let size = |v: i64| usize::try_from(v).ok().filter(|&v| v > 0);
                let (Some(pooled_height), Some(pooled_width)) = (
                    pooled.first().copied().and_then(size),
                    pooled.get(1).copied().and_then(size),
                ) else {
                    return Err(err(format!(
                        "attribute \"pooled_size\" = {pooled:?} must be two positive sizes (MXNet's bound)"
                    )));
                };
                if pooled.len() != 2 {
                    return Err(err(format!(
                        "attribute \"pooled_size\" = {pooled:?} must be two positive sizes (MXNet's bound)"
                    )));
                }
                // MXNet holds the scale as a float and bounds it to [0, 1].
                let spatial_scale = scale as f32;
                if !(0.0..=1.0).contains(&spatial_scale) {
                    return Err(err(format!(
                        "attribute \"spatial_scale\" = {scale} is outside MXNet's bound [0, 1]"
                    )));
                }
                if i32::try_from(ratio).is_err() {
                    return Err(err(format!(
                        "attribute \"sample_ratio\" = {ratio} is not a 32-bit integer"
                    )));
                }
                let op = RoiAlign {
                    pooled_height,
                    pooled_width,
                    spatial_scale,
                    // MXNet samples ⌈bin⌉ points per axis for a ratio of 0 or less.
                    sample_ratio: usize::try_from(ratio).ok().filter(|&r| r > 0),
                    position_sensitive,
                    aligned,
                };
                op.bins()
                    .map_err(|e| err(format!("attribute \"pooled_size\": {e}")))?;
                op.validate()
                    .map_err(|e| err(format!("attribute \"sample_ratio\": {e}")))?;
                op.into()
            }
            "_contrib_AdaptiveAvgPooling2D" => {
                // MXNet: no value (or None, or ()) is 1×1, one value a square, two (h, w).
                let size = a.opt_tuple("output_size")?.unwrap_or_default();
                a.finish()?;
                need(1)?;
                let (height, width) = match size.as_slice() {
                    [] => (1, 1),
                    [s] => (*s, *s),
                    [h, w] => (*h, *w),
                    _ => {
                        // MXNet 1.9.1 silently pools to 1×1 for three or more values.
                        return Err(unsupported(
                            "output_size",
                            &format!("{size:?}"),
                            " (only an empty size, one value or (height, width))",
                        ));
                    }
                };
                let dim = |v: i64| {
                    usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| {
                        err(format!(
                            "attribute \"output_size\" = {size:?} must be positive (MXNet gives an empty or malformed output)"
                        ))
                    })
                };
                let op = AdaptiveAvgPool {
                    height: dim(height)?,
                    width: dim(width)?,
                };
                op.validate()
                    .map_err(|e| err(format!("attribute \"output_size\": {e}")))?;
                op.into()
            }
            "_contrib_BilinearResize2D" => {
                let height = a.int("height", 1)?;
                let width = a.int("width", 1)?;
                let scale_height = a.opt_float("scale_height")?;
                let scale_width = a.opt_float("scale_width")?;
                let mode = a.enum_of(
                    "mode",
                    "size",
                    &[
                        "size",
                        "odd_scale",
                        "like",
                        "to_even_down",
                        "to_even_up",
                        "to_odd_down",
                        "to_odd_up",
                    ],
                )?;
                let align_corners = a.bool("align_corners", true)?;
                a.finish()?;
                let scales = || -> Result<(f32, f32), ImportError> {
                    match (scale_height, scale_width) {
                        (Some(h), Some(w)) => Ok((h as f32, w as f32)),
                        _ => Err(err(format!(
                            "mode {mode:?} needs both \"scale_height\" and \"scale_width\" (MXNet fails without them)"
                        ))),
                    }
                };
                let target = match mode.as_str() {
                    // MXNet reads scale_width only when scale_height is given, and
                    // height/width only when it is not.
                    "size" if scale_height.is_some() => {
                        let (height, width) = scales()?;
                        ResizeTarget::Scale { height, width }
                    }
                    "size" => {
                        let size = |v: i64, attr: &str| {
                            usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| {
                                err(format!("attribute {attr:?} = {v} must be positive"))
                            })
                        };
                        ResizeTarget::Size {
                            height: size(height, "height")?,
                            width: size(width, "width")?,
                        }
                    }
                    "odd_scale" => {
                        let (height, width) = scales()?;
                        ResizeTarget::OddScale { height, width }
                    }
                    "like" => ResizeTarget::Like,
                    "to_even_down" => ResizeTarget::ToEvenDown,
                    "to_even_up" => ResizeTarget::ToEvenUp,
                    "to_odd_down" => ResizeTarget::ToOddDown,
                    _ => ResizeTarget::ToOddUp,
                };
                let op = BilinearResize {
                    target,
                    align_corners,
                };
                need(op.arity().0)?;
                let attr = match target {
                    ResizeTarget::Size { .. } => "height\"/\"width",
                    _ => "scale_height\"/\"scale_width",
                };
                op.validate()
                    .map_err(|e| err(format!("attribute \"{attr}\": {e}")))?;
                op.into()
            }
            "UpSampling" => {
                let scale = a.req_int("scale")?;
                let sample_type = a.enum_of("sample_type", "", &["nearest", "bilinear"])?;
                let num_args = a.req_int("num_args")?;
                let num_filter = a.int("num_filter", 0)?;
                let sum = a.enum_of("multi_input_mode", "concat", &["concat", "sum"])? == "sum";
                // A memory hint of MXNet's bilinear (deconvolution) kernel.
                a.ignore(&["workspace"]);
                a.finish()?;
                let scale = usize::try_from(scale)
                    .ok()
                    .filter(|s| (1..=MAX_UPSAMPLING_SCALE).contains(s))
                    .ok_or_else(|| {
                        err(format!(
                            "attribute \"scale\" = {scale} must be 1 to {MAX_UPSAMPLING_SCALE}"
                        ))
                    })?;
                if sample_type == "bilinear" {
                    // MXNet's bilinear UpSampling is a deconvolution with one filter per
                    // group, no bias, kernel 2s − s mod 2, stride s, pad ⌈(s − 1)/2⌉.
                    if num_args != 2 {
                        return Err(err(format!(
                            "attribute \"num_args\" = {num_args}: bilinear UpSampling takes data and weight (2)"
                        )));
                    }
                    need(2)?;
                    let groups = positive(num_filter, "num_filter", &err)?;
                    let kernel = 2 * scale - scale % 2;
                    let pad = (scale - 1).div_ceil(2);
                    Deconv {
                        kernel: vec![kernel; 2],
                        stride: vec![scale; 2],
                        dilation: vec![1; 2],
                        pad: vec![pad; 2],
                        output_padding: vec![0; 2],
                        groups,
                        bias: false,
                    }
                    .into()
                } else {
                    if usize::try_from(num_args).ok() != Some(nin) {
                        return Err(err(format!(
                            "attribute \"num_args\" = {num_args} but the node has {nin} inputs"
                        )));
                    }
                    UpSampling { scale, sum }.into()
                }
            }
            "tile" => {
                let reps = a.req_tuple("reps")?;
                a.finish()?;
                need(1)?;
                let op = Tile {
                    reps: counts(&reps, "reps", &err)?,
                };
                self.check_output(&op.clone().into(), &inputs, "reps", &err)?;
                op.into()
            }
            "repeat" => {
                let repeats = a.req_int("repeats")?;
                let axis = a.opt_int("axis")?;
                a.finish()?;
                need(1)?;
                let repeats = counts(&[repeats], "repeats", &err)?
                    .first()
                    .copied()
                    .unwrap_or(1);
                if let Some(axis) = axis {
                    let rank = self.input_shape(&inputs, 1)?.len();
                    ward_graph::ops::resolve_axis(axis, rank)
                        .map_err(|e| err(format!("attribute \"axis\": {e}")))?;
                }
                let op = Repeat { repeats, axis };
                self.check_output(&op.into(), &inputs, "repeats", &err)?;
                op.into()
            }
            "reverse" => {
                let listed = a.req_tuple("axis")?;
                a.finish()?;
                need(1)?;
                let rank = self.input_shape(&inputs, 1)?.len();
                // MXNet reverses once per listing: an axis listed twice stays as it was.
                let mut axes: Vec<usize> = Vec::new();
                for &axis in &listed {
                    let axis = usize::try_from(axis)
                        .ok()
                        .filter(|&a| a < rank)
                        .ok_or_else(|| {
                            err(format!(
                                "attribute \"axis\" = {listed:?}: {axis} is not an axis of the {rank}-d data (MXNet takes no negative axes here)"
                            ))
                        })?;
                    match axes.iter().position(|&a| a == axis) {
                        Some(k) => {
                            axes.remove(k);
                        }
                        None => axes.push(axis),
                    }
                }
                axes.sort_unstable();
                Reverse { axes }.into()
            }
            "broadcast_axis" => {
                let axes = a.tuple("axis", &[])?;
                let sizes = a.tuple("size", &[])?;
                a.finish()?;
                need(1)?;
                if axes.len() != sizes.len() {
                    return Err(err(format!(
                        "attribute \"axis\" = {axes:?} and \"size\" = {sizes:?} differ in length"
                    )));
                }
                let sizes = counts(&sizes, "size", &err)?;
                let one = self.input_shape(&inputs, 1)?;
                let two = self.input_shape(&inputs, 2)?;
                let dims = broadcast_axis_dims(&one, &two, &axes, &sizes).map_err(err)?;
                let op = BroadcastTo { dims };
                self.check_broadcast(&op, &inputs, "size", &err)?;
                op.into()
            }
            "broadcast_to" => {
                let shape = a.tuple("shape", &[])?;
                a.finish()?;
                need(1)?;
                let rank = self.input_shape(&inputs, 1)?.len();
                if shape.len() != rank {
                    return Err(err(format!(
                        "attribute \"shape\" = {shape:?} has {} dims for an input of rank {rank}",
                        shape.len()
                    )));
                }
                // MXNet: a 0 keeps the input's dim.
                let dims = shape
                    .iter()
                    .map(|&d| match d {
                        0 => Ok(BroadcastDim::Keep),
                        d => usize::try_from(d)
                            .ok()
                            .filter(|n| (1..=MAX_REPEAT).contains(n))
                            .map(BroadcastDim::Fixed)
                            .ok_or_else(|| {
                                err(format!(
                                    "attribute \"shape\" = {shape:?}: {d} is outside 1 to {MAX_REPEAT} (0 keeps the input's dim)"
                                ))
                            }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let op = BroadcastTo { dims };
                self.check_broadcast(&op, &inputs, "shape", &err)?;
                op.into()
            }
            "broadcast_like" => {
                let lhs_axes = a.opt_tuple("lhs_axes")?;
                let rhs_axes = a.opt_tuple("rhs_axes")?;
                a.finish()?;
                need(2)?;
                let rhs = inputs
                    .get(1)
                    .copied()
                    .ok_or_else(|| err("has no rhs".into()))?;
                let rhs = self.probe_shapes()?.of(&self.graph, rhs)?.to_vec();
                let (one, two) = (self.input_shape(&inputs, 1)?, self.input_shape(&inputs, 2)?);
                let dims = broadcast_like_dims(
                    (one.as_slice(), two.as_slice()),
                    &rhs,
                    lhs_axes.as_deref(),
                    rhs_axes.as_deref(),
                )
                .map_err(err)?;
                let op = BroadcastTo { dims };
                self.check_broadcast(&op, &inputs, "lhs_axes\"/\"rhs_axes", &err)?;
                op.into()
            }
            // Both read only the second input's shape, which import knows: they become a
            // slice and a reshape of fixed sizes, and the second input is dropped.
            "slice_like" => {
                let axes = a.tuple("axes", &[])?;
                a.finish()?;
                need(2)?;
                let x = self.probe_pair(&inputs, 0)?;
                let like = self.probe_pair(&inputs, 1)?;
                let op = slice_like_slice(x, like, &axes).map_err(err)?;
                inputs.truncate(1);
                op.into()
            }
            "reshape_like" => {
                let lhs = (a.opt_int("lhs_begin")?, a.opt_int("lhs_end")?);
                let rhs = (a.opt_int("rhs_begin")?, a.opt_int("rhs_end")?);
                a.finish()?;
                need(2)?;
                let x = self.probe_pair(&inputs, 0)?;
                let like = self.probe_pair(&inputs, 1)?;
                let op = reshape_like_reshape(x, like, lhs, rhs).map_err(err)?;
                inputs.truncate(1);
                op
            }
            "take" => {
                let axis = a.int("axis", 0)?;
                let mode = a.enum_of("mode", "clip", &["clip", "wrap", "raise"])?;
                a.finish()?;
                need(2)?;
                let mode = match mode.as_str() {
                    "clip" => IndexMode::Clip,
                    "wrap" => IndexMode::Wrap,
                    other => {
                        return Err(unsupported(
                            "mode",
                            &format!("{other:?}"),
                            " (only clip and wrap: MXNet's raise fails the forward pass on an index outside the axis, which a plan cannot)",
                        ))
                    }
                };
                let rank = self.input_shape(&inputs, 1)?.len();
                ward_graph::ops::resolve_axis(axis, rank)
                    .map_err(|e| err(format!("attribute \"axis\" = {axis}: {e}")))?;
                let op: Op = Take { axis, mode }.into();
                self.check_output(&op, &inputs, "axis", &err)?;
                op
            }
            "pick" => {
                // MXNet's default axis is -1; "None" (the flattened input) it refuses.
                let axis = if a.contains("axis") {
                    a.opt_int("axis")?.ok_or_else(|| {
                        unsupported(
                            "axis",
                            &"None",
                            " (MXNet 1.9.1's pick refuses it: \"Must specify an axis\")",
                        )
                    })?
                } else {
                    -1
                };
                let keepdims = a.bool("keepdims", false)?;
                let mode = match a.enum_of("mode", "clip", &["clip", "wrap"])?.as_str() {
                    "wrap" => IndexMode::Wrap,
                    _ => IndexMode::Clip,
                };
                a.finish()?;
                need(2)?;
                let rank = self.input_shape(&inputs, 1)?.len();
                ward_graph::ops::resolve_axis(axis, rank)
                    .map_err(|e| err(format!("attribute \"axis\" = {axis}: {e}")))?;
                Pick {
                    axis,
                    keepdims,
                    mode,
                }
                .into()
            }
            "gather_nd" => {
                a.finish()?;
                need(2)?;
                GatherNd {}.into()
            }
            "one_hot" => {
                let depth = a.req_int("depth")?;
                let on_value = a.float("on_value", 1.0)?;
                let off_value = a.float("off_value", 0.0)?;
                let dtype = a.string("dtype", "float32")?;
                a.finish()?;
                need(1)?;
                if dtype != "float32" {
                    return Err(unsupported(
                        "dtype",
                        &format!("{dtype:?}"),
                        " (only float32: ward computes one_hot's output in float32)",
                    ));
                }
                let depth = usize::try_from(depth)
                    .ok()
                    .filter(|d| (1..=MAX_ONE_HOT_DEPTH).contains(d))
                    .ok_or_else(|| {
                        err(format!(
                            "attribute \"depth\" = {depth} is outside 1 to {MAX_ONE_HOT_DEPTH} (0 makes an empty tensor)"
                        ))
                    })?;
                for (attr, v) in [("on_value", on_value), ("off_value", off_value)] {
                    if v.is_nan() {
                        return Err(err(format!("attribute {attr:?} is NaN")));
                    }
                }
                let op: Op = OneHot {
                    depth,
                    on_value,
                    off_value,
                }
                .into();
                self.check_output(&op, &inputs, "depth", &err)?;
                op
            }
            _ => {
                return Err(ImportError::UnsupportedOp {
                    node: node.name.clone(),
                    op: node.source_op.clone(),
                })
            }
        };
        converted.def().validate().map_err(err)?;
        let n_out = converted.num_outputs();
        self.graph.nodes.push(Node {
            name: unique_node_name(&self.graph, &node.name),
            op: converted,
            inputs,
        });
        let index = self.graph.nodes.len() - 1;
        Ok((0..n_out)
            .map(|k| Value::Ready(Source::Node(index, k)))
            .collect())
    }

    /// Checks a declared count (e.g. `num_filter`) against the weight's leading dim.
    fn check_leading_dim(
        &self,
        weight: &Source,
        expected: i64,
        node: &str,
        attr: &str,
    ) -> Result<(), ImportError> {
        if let Source::Param(p) = weight {
            let dim = (self.graph.params.get(*p))
                .and_then(|param| param.shape.first().copied())
                .unwrap_or(0);
            if dim as i64 != expected {
                return Err(ImportError::Node {
                    node: node.to_string(),
                    op: String::new(),
                    reason: format!(
                        "attribute {attr:?} = {expected} but the weight has {dim} rows"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The shape of a node's input `i` with the graph's variable input dims at 1 and at 2
    /// (a dim that differs follows a variable input dim).
    fn probe_pair(
        &self,
        inputs: &[Source],
        i: usize,
    ) -> Result<(Vec<usize>, Vec<usize>), ImportError> {
        let x = inputs.get(i).copied().ok_or_else(|| ImportError::Node {
            node: String::new(),
            op: String::new(),
            reason: format!("has no input {i}"),
        })?;
        let one = self.probe_shapes()?.of(&self.graph, x)?.to_vec();
        let two = infer_shapes(&self.graph, &self.data_shapes(2))?
            .of(&self.graph, x)?
            .to_vec();
        Ok((one, two))
    }

    /// The shape of a node's first input with the graph's variable input dims at `fill`.
    fn input_shape(&self, inputs: &[Source], fill: usize) -> Result<Vec<usize>, ImportError> {
        let x = inputs.first().copied().ok_or_else(|| ImportError::Node {
            node: String::new(),
            op: String::new(),
            reason: "has no input".into(),
        })?;
        let shapes = infer_shapes(&self.graph, &self.data_shapes(fill))?;
        Ok(shapes.of(&self.graph, x)?.to_vec())
    }

    /// A `topk`'s axis against the input's rank, its k against the axis and the axis
    /// against float32 indices, with the variable input dims at 1 and at 2: k along a
    /// variable dim would run only for some of its values.
    fn check_topk(
        &self,
        op: &Topk,
        inputs: &[Source],
        err: &impl Fn(String) -> ImportError,
    ) -> Result<(), ImportError> {
        let one = self.input_shape(inputs, 1)?;
        let two = self.input_shape(inputs, 2)?;
        let length = |shape: &[usize]| -> Result<usize, ImportError> {
            match op.axis {
                None => Ok(shape.iter().product()),
                Some(axis) => ward_graph::ops::resolve_axis(axis, shape.len())
                    .map(|a| shape.get(a).copied().unwrap_or(1))
                    .map_err(|e| err(format!("attribute \"axis\": {e}"))),
            }
        };
        let varies = length(&one)? != length(&two)?;
        for shape in [&one, &two] {
            let n = length(shape)?;
            if let Err(e) = op.lanes(shape) {
                let attr = if op.k.is_some_and(|k| k > n) || n == 0 {
                    "k"
                } else {
                    "ret_typ"
                };
                let why = if varies {
                    " (the axis follows a variable input dim; declare it fixed)"
                } else {
                    ""
                };
                return Err(err(format!("attribute \"{attr}\": {e}{why}")));
            }
        }
        Ok(())
    }

    /// Infers `op`'s output on the node's inputs with the variable input dims at 2 (the
    /// larger probe), refusing a shape past the limits in terms of `attr`: an attribute's
    /// count is checked against the element cap here, at import, before anything exists
    /// to allocate.
    fn check_output(
        &self,
        op: &Op,
        inputs: &[Source],
        attr: &str,
        err: &impl Fn(String) -> ImportError,
    ) -> Result<(), ImportError> {
        let shapes = infer_shapes(&self.graph, &self.data_shapes(2))?;
        let ins = inputs
            .iter()
            .map(|s| shapes.get(&self.graph, *s))
            .collect::<Vec<_>>();
        let outs = op
            .def()
            .infer(&ins)
            .map_err(|e| err(format!("attribute \"{attr}\": {e}")))?;
        for out in &outs {
            ward_graph::shape::check_value(out)
                .map_err(|e| err(format!("attribute \"{attr}\": {e}")))?;
        }
        Ok(())
    }

    /// A broadcast's output with the variable input dims at 1 and at 2: each axis must
    /// broadcast for every value of a variable dim. An axis of fixed size 1 may go
    /// anywhere; any other must equal its target at both probes (a variable dim kept, or
    /// following the same variable dim of the reference, or a fixed dim equal to a fixed
    /// target). A variable dim broadcast to a fixed size would run only when it happens
    /// to be 1 or that size, and is refused, as `squeeze` refuses one.
    fn check_broadcast(
        &self,
        op: &BroadcastTo,
        inputs: &[Source],
        attr: &str,
        err: &impl Fn(String) -> ImportError,
    ) -> Result<(), ImportError> {
        const VARIABLE: &str = "a variable input dim broadcast to another size runs only \
                                for some of its values; declare the dim fixed";
        let mut probes = Vec::with_capacity(2);
        for fill in [1, 2] {
            let shapes = infer_shapes(&self.graph, &self.data_shapes(fill))?;
            let x = inputs
                .first()
                .map(|s| shapes.of(&self.graph, *s))
                .ok_or_else(|| err("has no input".into()))??;
            let like = match inputs.get(1) {
                Some(s) if op.reads_like() => Some(shapes.of(&self.graph, *s)?),
                _ => None,
            };
            let out = op.output_shape(x, like).map_err(|e| {
                // Broadcasting at the first probe, not at the second: a variable dim.
                let why = if probes.is_empty() {
                    String::new()
                } else {
                    format!(" ({VARIABLE})")
                };
                err(format!("attribute \"{attr}\": {e}{why}"))
            })?;
            probes.push((x.to_vec(), out));
        }
        let (Some((x1, o1)), Some((x2, o2))) = (probes.first(), probes.get(1)) else {
            return Ok(());
        };
        for i in 0..x1.len() {
            let at = |v: &Vec<usize>| v.get(i).copied();
            let fixed_one = at(x1) == Some(1) && at(x2) == Some(1);
            let equal = at(x1) == at(o1) && at(x2) == at(o2);
            if !fixed_one && !equal {
                return Err(err(format!(
                    "attribute \"{attr}\": axis {i} of the input ({x1:?} with the variable dims \
                     at 1, {x2:?} at 2) broadcasts to {o1:?} and {o2:?}: {VARIABLE}"
                )));
            }
        }
        Ok(())
    }

    /// The shapes of the graph built so far, with every variable input dim at 1: enough
    /// to resolve MXNet's encodings, which depend on ranks and fixed dims only.
    fn probe_shapes(&self) -> Result<Shapes, ImportError> {
        Ok(infer_shapes(&self.graph, &self.data_shapes(1))?)
    }

    /// The declared data inputs' shapes with variable dims at `fill`, in graph order.
    fn data_shapes(&self, fill: usize) -> Vec<Vec<usize>> {
        self.graph
            .inputs
            .iter()
            .filter(|i| i.role == InputRole::Data)
            .map(|i| {
                let decl = self.declared.iter().find(|d| d.name == i.name);
                decl.map(|d| {
                    d.shape
                        .iter()
                        .map(|&x| if x < 0 { fill } else { x as usize })
                        .collect()
                })
                .unwrap_or_default()
            })
            .collect()
    }

    /// Output shapes with -1 where they follow a variable input dim: inference runs with
    /// variable dims set to 1 and to 2, and dims that differ are variable.
    fn output_shapes(&self) -> Result<Vec<Vec<i64>>, ImportError> {
        let one = infer_shapes(&self.graph, &self.data_shapes(1))?;
        let two = infer_shapes(&self.graph, &self.data_shapes(2))?;
        self.graph
            .outputs
            .iter()
            .map(|o| {
                let a = one.of(&self.graph, o.source)?;
                let b = two.of(&self.graph, o.source)?;
                Ok(a.iter()
                    .zip(b.iter())
                    .map(|(x, y)| if x == y { *x as i64 } else { -1 })
                    .collect())
            })
            .collect()
    }
}

/// MXNet's `normalization` of a loss: null, batch or valid.
fn normalization(a: &mut AttrReader<'_>) -> Result<Normalization, ImportError> {
    Ok(
        match a
            .enum_of("normalization", "null", &["null", "batch", "valid"])?
            .as_str()
        {
            "batch" => Normalization::Batch,
            "valid" => Normalization::Valid,
            _ => Normalization::Null,
        },
    )
}

/// `axis` and `exclude` of MXNet's `ReduceAxesParam` (`sum`, `mean`, `max`, ...): MXNet
/// 1.9.1 reduces every axis for `axis=()`, with or without `exclude`.
fn reduce_axes(a: &mut AttrReader<'_>) -> Result<(Option<Vec<i64>>, bool), ImportError> {
    let axes = a.opt_tuple("axis")?;
    let exclude = a.bool("exclude", false)?;
    Ok(match axes {
        Some(list) if list.is_empty() => (None, false),
        other => (other, exclude),
    })
}

/// The axes MXNet `squeeze` removes, given the input's shape with variable dims at 1
/// (`one`) and at 2 (`two`). With `axes`, each named axis must be 1 (negative axes count
/// from the end; a repeat is refused as MXNet refuses it); without, every dim of size 1
/// goes, and a variable dim that may be 1 is refused: MXNet would drop it only in the
/// calls where it happens to be 1.
fn squeezed_axes(one: &[usize], two: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>, String> {
    let rank = one.len();
    let variable = |i: usize| one.get(i) != two.get(i);
    let squeezed: Vec<usize> = match axes {
        Some(list) => {
            let mut picked = Vec::with_capacity(list.len());
            for &axis in list {
                let i = ward_graph::ops::resolve_axis(axis, rank)
                    .map_err(|e| format!("attribute \"axis\": {e}"))?;
                if picked.contains(&i) {
                    return Err(format!(
                        "attribute \"axis\" = {list:?} names axis {i} twice"
                    ));
                }
                if variable(i) || one.get(i) != Some(&1) {
                    return Err(format!(
                        "attribute \"axis\" = {list:?}: axis {i} of {one:?} is not of size 1"
                    ));
                }
                picked.push(i);
            }
            picked
        }
        None => {
            if let Some(i) = (0..rank).find(|&i| variable(i) && one.get(i) == Some(&1)) {
                return Err(format!(
                    "squeeze without \"axis\" over variable dim {i}: MXNet drops it only when \
                     it is 1; declare the input's dim fixed or name the axes to squeeze"
                ));
            }
            (0..rank).filter(|&i| one.get(i) == Some(&1)).collect()
        }
    };
    Ok(squeezed)
}

/// An attribute's counts (tile's reps, repeat's repeats, a broadcast size), each 1 to
/// [`MAX_REPEAT`]: 0 would make an empty tensor (MXNet allows it; ward never makes one),
/// and a larger count alone passes the element cap.
fn counts(
    values: &[i64],
    attr: &str,
    err: &impl Fn(String) -> ImportError,
) -> Result<Vec<usize>, ImportError> {
    values
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .ok()
                .filter(|n| (1..=MAX_REPEAT).contains(n))
                .ok_or_else(|| {
                    err(format!(
                        "attribute {attr:?} = {values:?}: {v} is outside 1 to {MAX_REPEAT} \
                         (0 makes an empty tensor, and a larger count passes the element limit)"
                    ))
                })
        })
        .collect()
}

/// The target of MXNet 1.9.1's `broadcast_axis`, given the input's shape with variable
/// dims at 1 (`one`) and at 2 (`two`): each listed axis, in order, must be of size 1 at
/// that point (MXNet's `BroadcastAxesShape` checks the shape as it goes, so an axis listed
/// twice must have been broadcast to 1 the first time) and becomes its size. A variable
/// dim is not of size 1.
fn broadcast_axis_dims(
    one: &[usize],
    two: &[usize],
    axes: &[i64],
    sizes: &[usize],
) -> Result<Vec<BroadcastDim>, String> {
    let mut dims = vec![BroadcastDim::Keep; one.len()];
    for (&axis, &size) in axes.iter().zip(sizes) {
        let i = broadcast_axis_index(axis, one.len())
            .map_err(|e| format!("attribute \"axis\" = {axes:?}: {e}"))?;
        let current = match dims.get(i) {
            Some(BroadcastDim::Fixed(n)) => Some(*n),
            _ if one.get(i) == two.get(i) => one.get(i).copied(),
            _ => None,
        };
        if current != Some(1) {
            return Err(format!(
                "attribute \"axis\" = {axes:?}: axis {i} of {one:?} is not of size 1 (MXNet broadcasts only axes of size 1)"
            ));
        }
        if let Some(slot) = dims.get_mut(i) {
            *slot = BroadcastDim::Fixed(size);
        }
    }
    Ok(dims)
}

/// `_arange`'s `start` and `stop`: with no stop, the range is `[0, start)`.
fn arange_bounds(start: f64, stop: Option<f64>) -> (f64, f64) {
    match stop {
        Some(stop) => (start, stop),
        None => (0.0, start),
    }
}

/// An arange's `repeat`, 1 to `MAX_REPEAT`.
fn arange_repeat(repeat: i64) -> Result<usize, String> {
    usize::try_from(repeat)
        .ok()
        .filter(|r| (1..=MAX_REPEAT).contains(r))
        .ok_or_else(|| format!("attribute \"repeat\" = {repeat} must be 1 to {MAX_REPEAT}"))
}

/// The length of `_arange(start, stop, step, repeat)`, as MXNet's `RangeShape` computes it
/// (⌈(stop − start) / step⌉ · repeat), refused where MXNet refuses it (a zero step, a range
/// empty or going the other way) and above the element limit, before anything is made.
fn arange_count(start: f64, stop: Option<f64>, step: f64, repeat: usize) -> Result<usize, String> {
    let (start, stop) = arange_bounds(start, stop);
    if !start.is_finite() || !stop.is_finite() || !step.is_finite() {
        return Err(format!(
            "attributes \"start\" = {start}, \"stop\" = {stop} and \"step\" = {step} must be finite"
        ));
    }
    if step == 0.0 {
        return Err("attribute \"step\" = 0: the range never ends".into());
    }
    if (step > 0.0 && start >= stop) || (step < 0.0 && start <= stop) {
        return Err(format!(
            "attributes \"start\" = {start}, \"stop\" = {stop}, \"step\" = {step}: an empty range, which MXNet refuses"
        ));
    }
    let steps = ((stop - start) / step).ceil();
    let limit = MAX_VALUE_ELEMENTS as f64;
    let count = steps * repeat as f64;
    if count > limit {
        return Err(format!(
            "attributes \"start\" = {start}, \"stop\" = {stop}, \"step\" = {step}, \"repeat\" = {repeat}: {count} elements, above the limit of {MAX_VALUE_ELEMENTS}"
        ));
    }
    // In range: `count` is a whole number no larger than the limit.
    Ok(count as usize)
}

/// The element-wise function of an MXNet operator named `op` (`fix` is `trunc`).
fn unary_kind(op: &str) -> Option<UnaryKind> {
    match op {
        "fix" => Some(UnaryKind::Trunc),
        "identity" => Some(UnaryKind::Copy),
        _ => UnaryKind::ALL
            .into_iter()
            .find(|&kind| unary_op_name(kind) == op),
    }
}

/// The MXNet operator that computes `kind`.
pub(crate) fn unary_op_name(kind: UnaryKind) -> &'static str {
    match kind {
        UnaryKind::Neg => "negative",
        UnaryKind::Copy => "_copy",
        other => other.name(),
    }
}

/// An axis of `broadcast_axis` for an input of `rank` dims. MXNet 1.9.1 takes no negative
/// axes here (its shape function indexes the shape with the axis as given and fails).
fn broadcast_axis_index(axis: i64, rank: usize) -> Result<usize, String> {
    if axis < 0 {
        return Err(format!(
            "axis {axis}: MXNet's broadcast_axis takes no negative axes"
        ));
    }
    ward_graph::ops::resolve_axis(axis, rank)
}

/// The target of MXNet 1.9.1's `broadcast_like` (`BroadcastLikeShape`): without both
/// `lhs_axes` and `rhs_axes` (one given alone is ignored by MXNet), every dim of the rhs,
/// which must have the lhs's rank; with both (as long as each other, not empty), lhs axis
/// `lhs_axes[k]`, which must be of size 1, takes dim `rhs_axes[k]` of the rhs, negatives
/// counting from each one's end (an lhs axis listed twice takes its last). The lhs's shape
/// comes with the variable dims at 1 and at 2: a variable dim is not of size 1.
fn broadcast_like_dims(
    (lhs, lhs_two): (&[usize], &[usize]),
    rhs: &[usize],
    lhs_axes: Option<&[i64]>,
    rhs_axes: Option<&[i64]>,
) -> Result<Vec<BroadcastDim>, String> {
    let (Some(from), Some(to)) = (lhs_axes, rhs_axes) else {
        if lhs.len() != rhs.len() {
            return Err(format!(
                "lhs {lhs:?} and rhs {rhs:?} differ in rank (without both \"lhs_axes\" and \"rhs_axes\", MXNet broadcasts to the whole rhs)"
            ));
        }
        return Ok((0..rhs.len()).map(BroadcastDim::Like).collect());
    };
    if from.len() != to.len() || from.is_empty() {
        return Err(format!(
            "attribute \"lhs_axes\" = {from:?} and \"rhs_axes\" = {to:?} must be as long as each other and not empty"
        ));
    }
    let mut dims = vec![BroadcastDim::Keep; lhs.len()];
    for (&l, &r) in from.iter().zip(to) {
        let i = ward_graph::ops::resolve_axis(l, lhs.len())
            .map_err(|e| format!("attribute \"lhs_axes\" = {from:?}: {e}"))?;
        let j = ward_graph::ops::resolve_axis(r, rhs.len())
            .map_err(|e| format!("attribute \"rhs_axes\" = {to:?}: {e}"))?;
        if lhs.get(i) != Some(&1) || lhs_two.get(i) != Some(&1) {
            return Err(format!(
                "attribute \"lhs_axes\" = {from:?}: axis {i} of {lhs:?} is not of size 1"
            ));
        }
        if let Some(slot) = dims.get_mut(i) {
            *slot = BroadcastDim::Like(j);
        }
    }
    Ok(dims)
}

/// A shape with its variable input dims at 1 and at 2.
type Probed = (Vec<usize>, Vec<usize>);

/// MXNet 1.9.1's `slice_like` as a `slice` of fixed sizes: along each of `axes` (negatives
/// counting from the first input's end, as MXNet resolves them; none listed is every axis,
/// the second input then of the same rank), the first `like[axis]` elements. MXNet refuses
/// an axis past the second input's rank, and a size larger than the first input's. The
/// size comes from the second input's shape at import: a variable dim there is refused
/// (the slice would follow it only at run time), as is a variable dim of the first input
/// that could be shorter than the size.
fn slice_like_slice(x: Probed, like: Probed, axes: &[i64]) -> Result<Slice, String> {
    let ((x1, x2), (l1, l2)) = (x, like);
    let rank = x1.len();
    let listed: Vec<usize> = if axes.is_empty() {
        if l1.len() != rank {
            return Err(format!(
                "the second input {l1:?} and the first {x1:?} differ in rank (without \"axes\", MXNet slices every axis)"
            ));
        }
        (0..rank).collect()
    } else {
        axes.iter()
            .map(|&axis| {
                let a = ward_graph::ops::resolve_axis(axis, rank)
                    .map_err(|e| format!("attribute \"axes\" = {axes:?}: {e}"))?;
                if a >= l1.len() {
                    return Err(format!(
                        "attribute \"axes\" = {axes:?}: axis {axis} is past the second input's {l1:?}"
                    ));
                }
                Ok(a)
            })
            .collect::<Result<_, _>>()?
    };
    let last = listed.iter().copied().max().map_or(0, |m| m + 1);
    let mut begin = vec![None; last];
    let mut end = vec![None; last];
    for a in listed {
        let at = |s: &Vec<usize>| s.get(a).copied().unwrap_or(0);
        let n = at(&l1);
        if n != at(&l2) {
            return Err(format!(
                "axis {a} of the second input ({l1:?} with the variable dims at 1) follows a variable input dim: slice_like's sizes are fixed at import; declare that dim fixed"
            ));
        }
        if n == 0 || n > at(&x1) || n > at(&x2) {
            let why = if at(&x1) == at(&x2) {
                ""
            } else {
                " for some values of its variable dim; declare that dim fixed"
            };
            return Err(format!(
                "axis {a}: the second input's {n} elements are not 1 to the first input's {x1:?}{why}"
            ));
        }
        if let (Some(b), Some(e)) = (begin.get_mut(a), end.get_mut(a)) {
            *b = Some(0);
            *e = Some(n as i64);
        }
    }
    let step = vec![1; last];
    Ok(Slice { begin, end, step })
}

/// MXNet 1.9.1's `reshape_like` as a reshape: the first input's dims `lhs_begin..lhs_end`
/// replaced by the second input's `rhs_begin..rhs_end` (each begin 0 and each end the
/// rank when absent, negatives from the end, MXNet requiring begin < end), the element
/// count unchanged. Fixed dims are written as numbers (what MXNet's reshape codes can
/// say); a variable dim of the first input kept outside its range is copied from it; a
/// variable dim taken from the second input is inferred from the element count, which
/// gives MXNet's dim whenever MXNet runs (it requires the counts to agree). Two of those
/// are refused, as is a count that differs at either probe.
fn reshape_like_reshape(
    x: Probed,
    like: Probed,
    lhs: (Option<i64>, Option<i64>),
    rhs: (Option<i64>, Option<i64>),
) -> Result<Op, String> {
    use ward_graph::interp::shape::reshape_like_range;
    use ward_graph::ops::shape::{Reshape, ReshapeDim};
    let ((x1, x2), (l1, l2)) = (x, like);
    let (lb, le) = reshape_like_range(lhs.0, lhs.1, x1.len())
        .map_err(|e| format!("attributes \"lhs_begin\"/\"lhs_end\": {e}"))?;
    let (rb, re) = reshape_like_range(rhs.0, rhs.1, l1.len())
        .map_err(|e| format!("attributes \"rhs_begin\"/\"rhs_end\": {e}"))?;
    let part = |s: &[usize], from: usize, to: usize| s.get(from..to).unwrap_or_default().to_vec();
    let mut dims = Vec::new();
    let kept = |dims: &mut Vec<ReshapeDim>, from: usize, to: usize| {
        for i in from..to {
            match (x1.get(i), x2.get(i)) {
                (Some(&a), Some(&b)) if a == b => dims.push(ReshapeDim::Fixed(a)),
                _ => dims.push(ReshapeDim::Copy(i)),
            }
        }
    };
    kept(&mut dims, 0, lb);
    for j in rb..re {
        match (l1.get(j), l2.get(j)) {
            (Some(&a), Some(&b)) if a == b => dims.push(ReshapeDim::Fixed(a)),
            _ if dims.contains(&ReshapeDim::Infer) => {
                return Err(format!(
                    "the second input's dims {rb}..{re} of {l1:?} hold two that follow variable input dims: a reshape can infer only one; declare them fixed"
                ))
            }
            _ => dims.push(ReshapeDim::Infer),
        }
    }
    kept(&mut dims, le, x1.len());
    let op = Reshape { dims };
    for (x, l) in [(&x1, &l1), (&x2, &l2)] {
        let mut want = part(x, 0, lb);
        want.extend(part(l, rb, re));
        want.extend(part(x, le, x.len()));
        let count = |s: &[usize]| s.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if count(&want) != count(x) {
            return Err(format!(
                "the first input {x:?} cannot take the shape {want:?}: the element counts differ (MXNet refuses it)"
            ));
        }
        if op.output_shape(x).as_ref() != Ok(&want) {
            return Err(format!(
                "the first input {x:?} reshaped like {l:?} gives {want:?}, which no reshape of fixed and copied dims gives for every value of its variable dims"
            ));
        }
    }
    Ok(op.into())
}

fn unique_node_name(graph: &Graph, base: &str) -> String {
    let taken = |n: &str| graph.nodes.iter().any(|x| x.name == n);
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken(n))
        .unwrap_or_default()
}

/// MXNet's box encoding attribute (`corner` or `center`).
fn box_format(a: &mut AttrReader<'_>, key: &str, default: &str) -> Result<BoxFormat, ImportError> {
    Ok(
        match a.enum_of(key, default, &["corner", "center"])?.as_str() {
            "center" => BoxFormat::Center,
            _ => BoxFormat::Corner,
        },
    )
}

fn positive(
    v: i64,
    attr: &str,
    err: &impl Fn(String) -> ImportError,
) -> Result<usize, ImportError> {
    usize::try_from(v)
        .ok()
        .filter(|&x| x > 0)
        .ok_or_else(|| err(format!("attribute {attr:?} = {v} must be positive")))
}

fn to_usize(v: &[i64], err: &impl Fn(String) -> ImportError) -> Result<Vec<usize>, ImportError> {
    v.iter()
        .map(|&x| usize::try_from(x).map_err(|_| err(format!("value {x} in {v:?} is negative"))))
        .collect()
}

/// The window of a convolution or deconvolution.
struct ConvWindow {
    kernel: Vec<usize>,
    stride: Vec<usize>,
    dilation: Vec<usize>,
    pad: Vec<usize>,
}

/// Reads the attributes Convolution and Deconvolution share: kernel (1 to 3 dims),
/// stride, dilate, pad, layout, and the cuDNN tuning hints that do not change results.
fn conv_window(
    a: &mut AttrReader<'_>,
    err: &impl Fn(String) -> ImportError,
) -> Result<ConvWindow, ImportError> {
    let kernel = a.req_tuple("kernel")?;
    let k = kernel.len();
    if !(1..=3).contains(&k) {
        return Err(err(format!("kernel {kernel:?} must have 1 to 3 dims")));
    }
    let window = ConvWindow {
        kernel: to_usize(&kernel, err)?,
        stride: window(a, "stride", k, 1, err)?,
        dilation: window(a, "dilate", k, 1, err)?,
        pad: window(a, "pad", k, 0, err)?,
    };
    layout(a, k, err)?;
    a.ignore(&["cudnn_tune", "cudnn_off", "workspace"]);
    Ok(window)
}

/// A per-axis window attribute: empty means the default for every axis.
fn window(
    a: &mut AttrReader<'_>,
    key: &str,
    k: usize,
    default: usize,
    err: &impl Fn(String) -> ImportError,
) -> Result<Vec<usize>, ImportError> {
    let v = a.tuple(key, &[])?;
    if v.is_empty() {
        return Ok(vec![default; k]);
    }
    if v.len() != k {
        return Err(err(format!(
            "attribute {key:?} = {v:?} must have {k} values, one per spatial axis"
        )));
    }
    v.iter()
        .map(|&x| {
            usize::try_from(x)
                .map_err(|_| err(format!("attribute {key:?} = {v:?} has a negative value")))
        })
        .collect()
}

/// Only channels-first layouts are supported.
fn layout(
    a: &mut AttrReader<'_>,
    k: usize,
    err: &impl Fn(String) -> ImportError,
) -> Result<(), ImportError> {
    let expected = match k {
        0 | 1 => "NCW",
        2 => "NCHW",
        _ => "NCDHW",
    };
    let l = a.string("layout", "None")?;
    if l != "None" && l != expected {
        return Err(err(format!(
            "attribute \"layout\" = {l:?} is not supported (only {expected})"
        )));
    }
    Ok(())
}
