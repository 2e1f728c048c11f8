//! A ward graph and its weights written back as MXNet 1.9.1 files: `PREFIX-symbol.json`
//! and `PREFIX-0000.params`, which `mx.gluon.nn.SymbolBlock.imports` and
//! `mx.mod.Module.load` both load.
//!
//! The export is the importer ([`crate::import`]) inverted: every IR operator is written as
//! the MXNet operator, with the attribute strings, that the importer turns back into the
//! same IR node. Attributes are written out even where they equal MXNet's defaults (as
//! Gluon's `export` does), because several of MXNet's defaults are surprising
//! (`BatchNorm.fix_gamma` is true, `Deconvolution.no_bias` is true) and a file that says
//! what it means is read the same way by every MXNet version. MXNet's encodings are
//! produced again where the IR resolved them:
//!
//! * a reshape's dims become MXNet's codes (`0`, `-1`, `-2`, `-3`, `-4`, `reverse`),
//!   found by a search and checked by decoding them with
//!   [`ward_graph::compat::mxnet_reshape_dims`], the importer's own decoder;
//! * an RNN's per-matrix parameters are packed in-graph as Gluon does it (`Reshape(-1)` of
//!   each, `_rnn_param_concat` in MXNet's order: every weight, then every bias), so the
//!   parameters keep their names and the importer unpacks them back;
//! * a constant whose dims follow the batch (`Fill` with a `Like` dim) becomes `_zeros` or
//!   `_ones` with `0` for that dim, which the importer resolves against the same batch.
//!
//! Whatever has no MXNet form that imports to the same node is refused with
//! [`ExportError`], naming the node, the operator and the attribute: a reshape MXNet's
//! codes cannot say, a fill of another value, a NaN attribute, a state parameter that is
//! not a BatchNorm statistic (MXNet's only auxiliary states here), a 0-d parameter (MXNet's
//! legacy `.params` records cannot hold one). Nothing is written differently in silence.
//!
//! Parameters are saved as `Module.save_checkpoint` and `HybridBlock.export` save them:
//! `arg:NAME` for arguments, `aux:NAME` for auxiliary states. `mx.model.load_checkpoint`
//! splits the keys on their first `:`, and Gluon's `ParameterDict.load_dict` strips both
//! prefixes (MXNet 1.9.1 `python/mxnet/gluon/parameter.py`), so both loaders accept them.
//! Only what the graph's outputs depend on is written: both loaders refuse a file with
//! parameters the symbol does not use.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use ward_core::Tensor;
use ward_graph::compat::mxnet_reshape_dims;
use ward_graph::ir::{Graph, InputRole, Op, ParamRole, Source};
use ward_graph::ops::activation::{ActivationKind, LeakyReluKind};
use ward_graph::ops::detection::MultiProposal;
use ward_graph::ops::index::IndexMode;
use ward_graph::ops::loss::{Normalization, RegressionKind, SoftmaxOutputMode};
use ward_graph::ops::norm::L2NormMode;
use ward_graph::ops::order::TopkReturn;
use ward_graph::ops::pool::PoolKind;
use ward_graph::ops::reduce::{ArgKind, ReduceKind};
use ward_graph::ops::resize::ResizeTarget;
use ward_graph::ops::rnn::{Rnn, RnnMode, PARAMS_PER_CELL};
use ward_graph::ops::shape::{BroadcastDim, FillDim, PadMode, ReshapeDim};
use ward_graph::shape::{infer_shapes, Shapes};

use crate::import::DeclaredInput;
use crate::params::{write_params, ParamsWriteError};

/// The MXNet version written into the symbol's `mxnet_version` attribute. Without it MXNet
/// takes the file for a 0.8.0 one and runs its legacy upgraders over it.
pub const MXNET_VERSION: i64 = 10901;

/// Why a graph cannot be written as MXNet files.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// An attribute value no MXNet attribute string imports back to.
    #[error("node {node:?} ({op}): {attr} = {value} has no MXNet form: {reason}")]
    Unsupported {
        node: String,
        op: &'static str,
        attr: &'static str,
        value: String,
        reason: String,
    },
    /// A node whose inputs or readers MXNet cannot express.
    #[error("node {node:?} ({op}): {reason}")]
    Node {
        node: String,
        op: &'static str,
        reason: String,
    },
    #[error("parameter {name:?}: {reason}")]
    Param { name: String, reason: String },
    #[error("input {name:?}: {reason}")]
    Input { name: String, reason: String },
    /// MXNet binds variables by name, and ward's reader refuses an operator named like an
    /// earlier variable.
    #[error(
        "the name {name:?} is used by {first} and by {second}; MXNet's symbol needs them distinct"
    )]
    NameClash {
        name: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("the graph has {params} parameters but {weights} weights were given")]
    WeightCount { params: usize, weights: usize },
    #[error("the graph does not check: {0}")]
    Graph(#[from] ward_graph::GraphError),
    #[error(transparent)]
    Params(#[from] ParamsWriteError),
}

/// A graph output and the name MXNet's `list_outputs()` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedOutput {
    /// The name the graph (the package) declares.
    pub declared: String,
    /// The name MXNet lists, and ward gives the output when the files are imported again.
    pub mxnet: String,
}

/// The two MXNet files of a model and what the export had to say about it.
#[derive(Debug, Clone)]
pub struct Exported {
    /// `PREFIX-symbol.json`.
    pub symbol_json: Vec<u8>,
    /// `PREFIX-0000.params`.
    pub params: Vec<u8>,
    /// Every graph output, in order, with its MXNet name.
    pub outputs: Vec<ExportedOutput>,
    /// Nodes no output depends on: not written (MXNet drops them when it loads a symbol).
    pub dropped_nodes: Vec<String>,
    /// Parameters only dropped nodes read, or none: not written (both MXNet loaders refuse
    /// parameters the symbol does not use).
    pub unused_params: Vec<String>,
}

impl Exported {
    /// The outputs whose MXNet name differs from the declared one.
    pub fn renamed_outputs(&self) -> impl Iterator<Item = &ExportedOutput> {
        self.outputs.iter().filter(|o| o.declared != o.mxnet)
    }
}

/// Writes `graph` with `weights` (one per parameter, in the graph's order) as MXNet files.
/// `inputs` declares the data inputs' shapes (`-1` for a variable dim), as the package's
/// manifest does: the reshape codes and the convolutions' filter counts depend on ranks and
/// shapes the graph itself does not record.
pub fn export(
    graph: &Graph,
    weights: &[Tensor],
    inputs: &[DeclaredInput],
) -> Result<Exported, ExportError> {
    graph.validate()?;
    if weights.len() != graph.params.len() {
        return Err(ExportError::WeightCount {
            params: graph.params.len(),
            weights: weights.len(),
        });
    }
    for (decl, tensor) in graph.params.iter().zip(weights) {
        if tensor.dtype() != decl.dtype || tensor.shape() != decl.shape.as_slice() {
            return Err(ExportError::Param {
                name: decl.name.clone(),
                reason: format!(
                    "the graph declares {} {:?}, the weights hold {} {:?}",
                    decl.dtype,
                    decl.shape,
                    tensor.dtype(),
                    tensor.shape()
                ),
            });
        }
    }
    let shapes = infer_shapes(graph, &probe_shapes(graph, inputs)?)?;
    let mut writer = Writer::new(graph, &shapes)?;
    writer.variables()?;
    for index in 0..graph.nodes.len() {
        if writer.live_nodes.get(index).copied().unwrap_or(false) {
            writer.node(index)?;
        }
    }
    let outputs = writer.heads()?;
    let symbol_json = writer.symbol_json();

    let mut named: Vec<(String, &Tensor)> = Vec::new();
    for (p, (decl, tensor)) in graph.params.iter().zip(weights).enumerate() {
        if !writer.live_params.contains(&p) {
            continue;
        }
        let prefix = if writer.aux_params.contains(&p) {
            "aux"
        } else {
            "arg"
        };
        named.push((format!("{prefix}:{}", decl.name), tensor));
    }
    let params = write_params(&named)?;
    let dropped_nodes = graph
        .nodes
        .iter()
        .zip(&writer.live_nodes)
        .filter(|(_, live)| !**live)
        .map(|(n, _)| n.name.clone())
        .collect();
    let unused_params = graph
        .params
        .iter()
        .enumerate()
        .filter(|(p, _)| !writer.live_params.contains(p))
        .map(|(_, d)| d.name.clone())
        .collect();
    Ok(Exported {
        symbol_json,
        params,
        outputs,
        dropped_nodes,
        unused_params,
    })
}

/// The data inputs' shapes with every variable dim at 1: ranks and fixed dims, which is
/// all the export reads (as the importer's probe does).
fn probe_shapes(graph: &Graph, inputs: &[DeclaredInput]) -> Result<Vec<Vec<usize>>, ExportError> {
    graph
        .inputs
        .iter()
        .filter(|i| i.role == InputRole::Data)
        .map(|i| {
            let decl =
                inputs
                    .iter()
                    .find(|d| d.name == i.name)
                    .ok_or_else(|| ExportError::Input {
                        name: i.name.clone(),
                        reason: "has no declared shape".into(),
                    })?;
            Ok(decl
                .shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(1))
                .collect())
        })
        .collect()
}

/// One node of MXNet's symbol JSON, with its keys in the order MXNet writes them.
#[derive(Serialize)]
struct JsonNode {
    op: String,
    name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attrs: BTreeMap<String, String>,
    inputs: Vec<[usize; 3]>,
}

#[derive(Serialize)]
struct JsonSymbol<'a> {
    nodes: &'a [JsonNode],
    arg_nodes: &'a [usize],
    heads: &'a [[usize; 3]],
    attrs: BTreeMap<&'static str, (&'static str, i64)>,
}

/// Where each IR node reads a value, for the checks that depend on a value's readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Node(usize),
    Output,
}

struct Writer<'a> {
    graph: &'a Graph,
    shapes: &'a Shapes,
    nodes: Vec<JsonNode>,
    arg_nodes: Vec<usize>,
    /// The JSON entry of each IR input, parameter and node output.
    inputs_at: Vec<Option<usize>>,
    params_at: Vec<Option<usize>>,
    nodes_at: Vec<Option<usize>>,
    live_nodes: Vec<bool>,
    live_params: HashSet<usize>,
    /// Parameters MXNet holds as auxiliary states (BatchNorm's moving statistics).
    aux_params: HashSet<usize>,
    /// Every reader of each node output, in graph order.
    readers: HashMap<Source, Vec<Reader>>,
    /// Names taken in the symbol, for the nodes the export adds (RNN packing).
    names: HashSet<String>,
    /// The name each node is written under (see [`output_node_names`]).
    node_names: Vec<String>,
}

impl<'a> Writer<'a> {
    fn new(graph: &'a Graph, shapes: &'a Shapes) -> Result<Self, ExportError> {
        // What the outputs depend on: MXNet keeps only that when it loads a symbol.
        let (live_nodes, live_params) = graph.live();
        let mut readers: HashMap<Source, Vec<Reader>> = HashMap::new();
        let mut aux_params = HashSet::new();
        let mut other_reads = HashSet::new();
        for (index, node) in graph.nodes.iter().enumerate() {
            if !live_nodes.get(index).copied().unwrap_or(false) {
                continue;
            }
            for (slot, source) in node.inputs.iter().enumerate() {
                readers
                    .entry(*source)
                    .or_default()
                    .push(Reader::Node(index));
                if let Source::Param(p) = source {
                    if matches!(node.op, Op::BatchNorm(_)) && slot >= 3 {
                        aux_params.insert(*p);
                    } else {
                        other_reads.insert(*p);
                    }
                }
            }
        }
        for output in &graph.outputs {
            readers
                .entry(output.source)
                .or_default()
                .push(Reader::Output);
            if let Source::Param(p) = output.source {
                other_reads.insert(p);
            }
        }
        for (p, decl) in graph.params.iter().enumerate() {
            if !live_params.contains(&p) {
                continue;
            }
            let reason = match (aux_params.contains(&p), decl.role) {
                (true, _) if other_reads.contains(&p) => Some(
                    "is read both as a BatchNorm moving statistic (an MXNet auxiliary state) and as an argument",
                ),
                (true, ParamRole::Trainable) => Some(
                    "is read as a BatchNorm moving statistic, which MXNet holds as an auxiliary state, but the graph declares it trainable",
                ),
                (false, ParamRole::State) => Some(
                    "is a state, but MXNet's only auxiliary states here are BatchNorm's moving statistics (inputs 3 and 4)",
                ),
                _ => None,
            };
            if let Some(reason) = reason {
                return Err(ExportError::Param {
                    name: decl.name.clone(),
                    reason: reason.into(),
                });
            }
        }
        // Variables bind by name; ward's reader also refuses an operator named like an
        // earlier variable, and the variables come first.
        let mut names: HashMap<&str, &'static str> = HashMap::new();
        let variables = graph
            .inputs
            .iter()
            .map(|i| (i.name.as_str(), "an input"))
            .chain(
                graph
                    .params
                    .iter()
                    .enumerate()
                    .filter(|(p, _)| live_params.contains(p))
                    .map(|(_, d)| (d.name.as_str(), "a parameter")),
            );
        for (name, what) in variables {
            if let Some(first) = names.insert(name, what) {
                return Err(ExportError::NameClash {
                    name: name.to_string(),
                    first,
                    second: what,
                });
            }
        }
        let node_names = output_node_names(graph, &names);
        for (index, name) in node_names.iter().enumerate() {
            if !live_nodes.get(index).copied().unwrap_or(false) {
                continue;
            }
            if let Some(first) = names.get(name.as_str()) {
                return Err(ExportError::NameClash {
                    name: name.clone(),
                    first,
                    second: "a node",
                });
            }
        }
        let taken = graph
            .inputs
            .iter()
            .map(|i| i.name.clone())
            .chain(graph.params.iter().map(|p| p.name.clone()))
            .chain(graph.nodes.iter().map(|n| n.name.clone()))
            .chain(node_names.iter().cloned())
            .collect();
        Ok(Writer {
            graph,
            shapes,
            nodes: Vec::new(),
            arg_nodes: Vec::new(),
            inputs_at: vec![None; graph.inputs.len()],
            params_at: vec![None; graph.params.len()],
            nodes_at: vec![None; graph.nodes.len()],
            live_nodes,
            live_params,
            aux_params,
            readers,
            names: taken,
            node_names,
        })
    }

    /// Every input, then every parameter the outputs depend on, in the graph's order: the
    /// importer creates inputs and parameters in the order it meets their variables, so
    /// this order comes back unchanged.
    fn variables(&mut self) -> Result<(), ExportError> {
        let graph = self.graph;
        for (i, input) in graph.inputs.iter().enumerate() {
            let at = self.push_variable(&input.name, BTreeMap::new());
            if let Some(slot) = self.inputs_at.get_mut(i) {
                *slot = Some(at);
            }
        }
        for (p, decl) in graph.params.iter().enumerate() {
            if !self.live_params.contains(&p) {
                continue;
            }
            // The shape and type hints Gluon writes: Module's `bind` infers shapes from
            // the data alone, and cannot infer a parameter that only a reshape reads
            // (an RNN's, packed below) without them.
            let mut attrs = BTreeMap::new();
            attrs.insert("__shape__".to_string(), tuple(&decl.shape));
            attrs.insert(
                "__dtype__".to_string(),
                crate::params::dtype_flag(decl.dtype).to_string(),
            );
            for (key, value) in [("__lr_mult__", decl.lr_mult), ("__wd_mult__", decl.wd_mult)] {
                if value != 1.0 {
                    attrs.insert(
                        key.to_string(),
                        float(value).ok_or_else(|| ExportError::Param {
                            name: decl.name.clone(),
                            reason: format!("{key} is {value}"),
                        })?,
                    );
                }
            }
            let at = self.push_variable(&decl.name, attrs);
            if let Some(slot) = self.params_at.get_mut(p) {
                *slot = Some(at);
            }
        }
        Ok(())
    }

    fn push_variable(&mut self, name: &str, attrs: BTreeMap<String, String>) -> usize {
        self.nodes.push(JsonNode {
            op: "null".into(),
            name: name.to_string(),
            attrs,
            inputs: Vec::new(),
        });
        let at = self.nodes.len() - 1;
        self.arg_nodes.push(at);
        at
    }

    fn push(
        &mut self,
        op: &str,
        name: &str,
        attrs: BTreeMap<String, String>,
        inputs: Vec<[usize; 3]>,
    ) -> usize {
        self.nodes.push(JsonNode {
            op: op.to_string(),
            name: name.to_string(),
            attrs,
            inputs,
        });
        self.nodes.len() - 1
    }

    /// A name for a node the export adds, distinct from every name in the graph.
    fn fresh_name(&mut self, base: &str) -> String {
        let name = if self.names.contains(base) {
            (1..)
                .map(|i| format!("{base}{i}"))
                .find(|n| !self.names.contains(n))
                .unwrap_or_default()
        } else {
            base.to_string()
        };
        self.names.insert(name.clone());
        name
    }

    /// The JSON entry `[node, output, version]` of a value.
    fn entry(&self, source: Source) -> Option<[usize; 3]> {
        match source {
            Source::Input(i) => self
                .inputs_at
                .get(i)
                .copied()
                .flatten()
                .map(|at| [at, 0, 0]),
            Source::Param(p) => self
                .params_at
                .get(p)
                .copied()
                .flatten()
                .map(|at| [at, 0, 0]),
            Source::Node(n, k) => self.nodes_at.get(n).copied().flatten().map(|at| [at, k, 0]),
        }
    }

    fn node(&mut self, index: usize) -> Result<(), ExportError> {
        let graph = self.graph;
        let Some(node) = graph.nodes.get(index) else {
            return Ok(());
        };
        let op_name = node.op.name();
        let refuse = |reason: String| ExportError::Node {
            node: node.name.clone(),
            op: op_name,
            reason,
        };
        let unsupported =
            |attr: &'static str, value: String, reason: &str| ExportError::Unsupported {
                node: node.name.clone(),
                op: op_name,
                attr,
                value,
                reason: reason.to_string(),
            };
        let num = |attr: &'static str, v: f64| -> Result<String, ExportError> {
            float(v).ok_or_else(|| {
                unsupported(attr, v.to_string(), "MXNet's attribute parser takes no NaN")
            })
        };
        let shape_of = |source: Source| -> Result<&[usize], ExportError> {
            Ok(self.shapes.of(graph, source)?)
        };
        let mut entries = Vec::with_capacity(node.inputs.len());
        for source in &node.inputs {
            entries.push(self.entry(*source).ok_or_else(|| {
                refuse(format!(
                    "reads {:?}, which was not written",
                    graph.source_name(*source)
                ))
            })?);
        }
        // A reduction's `axis`, absent for every axis. MXNet reduces every axis for
        // `axis=()`, so an empty list of axes (reduce none) has no spelling.
        let axis_attr = |axes: Option<&[i64]>| match axes {
            Some([]) => Err(unsupported(
                "axes",
                "[]".into(),
                "MXNet reads an empty axis tuple as every axis",
            )),
            Some(axes) => Ok(Some(tuple(axes))),
            None => Ok(None),
        };
        let mut attrs: BTreeMap<String, String> = BTreeMap::new();
        let mut set = |key: &str, value: String| {
            attrs.insert(key.to_string(), value);
        };
        let mxnet_op: &str = match &node.op {
            Op::Conv(c) => {
                let weight = node
                    .inputs
                    .get(1)
                    .copied()
                    .ok_or_else(|| refuse("has no weight".into()))?;
                let filters = shape_of(weight)?.first().copied().unwrap_or(0);
                set("kernel", tuple(&c.kernel));
                set("stride", tuple(&c.stride));
                set("dilate", tuple(&c.dilation));
                set("pad", tuple(&c.pad));
                set("num_filter", filters.to_string());
                set("num_group", c.groups.to_string());
                set("no_bias", boolean(!c.bias));
                "Convolution"
            }
            Op::DeformableConv(d) => {
                let weight = node
                    .inputs
                    .get(d.weight_input())
                    .copied()
                    .ok_or_else(|| refuse("has no weight".into()))?;
                let filters = shape_of(weight)?.first().copied().unwrap_or(0);
                set("kernel", tuple(&d.kernel));
                set("stride", tuple(&d.stride));
                set("dilate", tuple(&d.dilation));
                set("pad", tuple(&d.pad));
                set("num_filter", filters.to_string());
                set("num_group", d.groups.to_string());
                set("num_deformable_group", d.deformable_groups.to_string());
                set("no_bias", boolean(!d.bias));
                if let Some(step) = d.im2col_step {
                    set("im2col_step", step.to_string());
                }
                if d.modulated {
                    "_contrib_ModulatedDeformableConvolution"
                } else {
                    "_contrib_DeformableConvolution"
                }
            }
            Op::Deconv(d) => {
                let weight = node
                    .inputs
                    .get(1)
                    .copied()
                    .ok_or_else(|| refuse("has no weight".into()))?;
                // The weight is (C_in, F / groups, k...).
                let per_group = shape_of(weight)?.get(1).copied().unwrap_or(0);
                let filters = per_group
                    .checked_mul(d.groups)
                    .ok_or_else(|| refuse("the filter count overflows".into()))?;
                set("kernel", tuple(&d.kernel));
                set("stride", tuple(&d.stride));
                set("dilate", tuple(&d.dilation));
                set("pad", tuple(&d.pad));
                set("adj", tuple(&d.output_padding));
                set("num_filter", filters.to_string());
                set("num_group", d.groups.to_string());
                set("no_bias", boolean(!d.bias));
                "Deconvolution"
            }
            Op::Dense(d) => {
                set("num_hidden", d.units.to_string());
                set("no_bias", boolean(!d.bias));
                set("flatten", boolean(d.flatten));
                "FullyConnected"
            }
            Op::Pool(p) => {
                set(
                    "pool_type",
                    match p.kind {
                        PoolKind::Max => "max",
                        PoolKind::Avg => "avg",
                        PoolKind::Sum => "sum",
                    }
                    .into(),
                );
                if p.global {
                    // The importer reads a global pool as just that: any window
                    // attribute would be ignored by MXNet and is not in the IR it makes.
                    if !p.kernel.is_empty() || !p.stride.is_empty() || !p.pad.is_empty() || p.ceil {
                        return Err(unsupported(
                            "global",
                            "true".into(),
                            "a global pool with a window, stride, pad or ceil is not what MXNet's global_pool imports to",
                        ));
                    }
                    set("global_pool", boolean(true));
                } else {
                    set("kernel", tuple(&p.kernel));
                    set("stride", tuple(&p.stride));
                    set("pad", tuple(&p.pad));
                    set(
                        "pooling_convention",
                        if p.ceil { "full" } else { "valid" }.into(),
                    );
                }
                // MXNet's default (None) counts the padding, as the IR's `true` does.
                if !p.count_include_pad {
                    set("count_include_pad", boolean(false));
                }
                "Pooling"
            }
            Op::BatchNorm(b) => {
                for slot in [3, 4] {
                    if !matches!(node.inputs.get(slot), Some(Source::Param(_))) {
                        return Err(refuse(format!(
                            "input {slot} (a moving statistic) must be a parameter: MXNet's auxiliary states are variables"
                        )));
                    }
                }
                set("axis", b.axis.to_string());
                set("eps", num("eps", b.eps)?);
                set("fix_gamma", boolean(b.fix_gamma));
                set("momentum", num("momentum", b.momentum)?);
                set("use_global_stats", boolean(b.use_global_stats));
                "BatchNorm"
            }
            Op::InstanceNorm(n) => {
                set("eps", num("eps", n.eps)?);
                "InstanceNorm"
            }
            Op::L2Normalization(n) => {
                let mode = match n.mode {
                    L2NormMode::Instance => "instance",
                    L2NormMode::Channel => "channel",
                    L2NormMode::Spatial => "spatial",
                };
                set("mode", mode.to_string());
                set("eps", num("eps", n.eps)?);
                "L2Normalization"
            }
            Op::LayerNorm(n) => {
                set("axis", n.axis.to_string());
                set("eps", num("eps", n.eps)?);
                "LayerNorm"
            }
            Op::GroupNorm(n) => {
                set("num_groups", n.groups.to_string());
                set("eps", num("eps", n.eps)?);
                "GroupNorm"
            }
            Op::Activation(a) => {
                set(
                    "act_type",
                    match a.kind {
                        ActivationKind::Relu => "relu",
                        ActivationKind::Sigmoid => "sigmoid",
                        ActivationKind::Tanh => "tanh",
                        ActivationKind::Softrelu => "softrelu",
                        ActivationKind::Softsign => "softsign",
                    }
                    .into(),
                );
                "Activation"
            }
            Op::LeakyRelu(l) => {
                let act = match l.kind {
                    LeakyReluKind::Leaky { slope } => {
                        set("slope", num("slope", slope)?);
                        "leaky"
                    }
                    LeakyReluKind::Elu { slope } => {
                        set("slope", num("slope", slope)?);
                        "elu"
                    }
                    LeakyReluKind::Prelu => "prelu",
                    LeakyReluKind::Selu => "selu",
                    LeakyReluKind::Gelu => "gelu",
                };
                set("act_type", act.into());
                "LeakyReLU"
            }
            Op::Softmax(s) => {
                set("axis", s.axis.to_string());
                if s.temperature != 1.0 {
                    set("temperature", num("temperature", s.temperature)?);
                }
                if s.use_length {
                    set("use_length", "True".to_string());
                }
                if s.log {
                    "log_softmax"
                } else {
                    "softmax"
                }
            }
            Op::Dropout(d) => {
                set("p", num("p", d.p)?);
                set("axes", tuple(&d.axes));
                "Dropout"
            }
            Op::SoftmaxOutput(s) => {
                if node.inputs.len() != 2 {
                    return Err(refuse(
                        "has no label input, and MXNet's SoftmaxOutput reads one".into(),
                    ));
                }
                set(
                    "multi_output",
                    boolean(s.mode == SoftmaxOutputMode::Channel),
                );
                set("preserve_shape", boolean(s.mode == SoftmaxOutputMode::Last));
                set("grad_scale", num("grad_scale", s.grad_scale)?);
                set("ignore_label", num("ignore_label", s.ignore_label)?);
                set("use_ignore", boolean(s.use_ignore));
                set("normalization", normalization(s.normalization).into());
                set("smooth_alpha", num("smooth_alpha", s.smooth_alpha)?);
                set("out_grad", boolean(s.out_grad));
                "SoftmaxOutput"
            }
            Op::RegressionOutput(r) => {
                if node.inputs.len() != 2 {
                    return Err(refuse(
                        "has no label input, and MXNet's regression outputs read one".into(),
                    ));
                }
                set("grad_scale", num("grad_scale", r.grad_scale)?);
                match r.kind {
                    RegressionKind::Linear => "LinearRegressionOutput",
                    RegressionKind::Logistic => "LogisticRegressionOutput",
                    RegressionKind::Mae => "MAERegressionOutput",
                }
            }
            Op::MakeLoss(m) => {
                set("grad_scale", num("grad_scale", m.grad_scale)?);
                set("normalization", normalization(m.normalization).into());
                set("valid_thresh", num("valid_thresh", m.valid_thresh)?);
                "MakeLoss"
            }
            Op::BlockGrad(_) => "BlockGrad",
            Op::Reshape(r) => {
                let input = node
                    .inputs
                    .first()
                    .copied()
                    .ok_or_else(|| refuse("has no input".into()))?;
                let x = shape_of(input)?;
                let (codes, reverse) = reshape_codes(&r.dims, x).ok_or_else(|| {
                    unsupported(
                        "dims",
                        format!("{:?}", r.dims),
                        "no sequence of MXNet's reshape codes (0, -1, -2, -3, -4, n; reverse) gives these dims",
                    )
                })?;
                set("shape", tuple(&codes));
                if reverse {
                    set("reverse", boolean(true));
                }
                "Reshape"
            }
            Op::Flatten(_) => "Flatten",
            Op::Concat(c) => {
                set("dim", c.axis.to_string());
                set("num_args", node.inputs.len().to_string());
                "Concat"
            }
            Op::SwapAxes(s) => {
                set("dim1", s.axis1.to_string());
                set("dim2", s.axis2.to_string());
                "SwapAxis"
            }
            Op::ExpandDims(e) => {
                set("axis", e.axis.to_string());
                "expand_dims"
            }
            Op::Squeeze(q) if !q.axes.is_empty() => {
                set("axis", tuple(&q.axes));
                "squeeze"
            }
            // Nothing to remove: MXNet's squeeze without axes would remove any axis of
            // size 1, so the identity goes as a reshape that copies every dim.
            Op::Squeeze(_) => {
                set("shape", tuple(&[-2i64]));
                "Reshape"
            }
            Op::Transpose(t) => {
                set("axes", tuple(&t.perm));
                "transpose"
            }
            Op::Slice(s) => {
                let optional = |v: &[Option<i64>]| {
                    let words: Vec<String> = v
                        .iter()
                        .map(|x| x.map_or_else(|| "None".to_string(), |x| x.to_string()))
                        .collect();
                    tuple(&words)
                };
                set("begin", optional(&s.begin));
                set("end", optional(&s.end));
                if !s.step.is_empty() {
                    set("step", tuple(&s.step));
                }
                "slice"
            }
            Op::SliceAxis(s) => {
                set("axis", s.axis.to_string());
                set("begin", s.begin.to_string());
                set(
                    "end",
                    s.end.map_or_else(|| "None".to_string(), |e| e.to_string()),
                );
                "slice_axis"
            }
            Op::Split(s) => {
                set("num_outputs", s.outputs.to_string());
                set("axis", s.axis.to_string());
                set("squeeze_axis", boolean(s.squeeze));
                "SliceChannel"
            }
            Op::Stack(s) => {
                set("axis", s.axis.to_string());
                set("num_args", node.inputs.len().to_string());
                "stack"
            }
            Op::Pad(p) => {
                set(
                    "mode",
                    match p.mode {
                        PadMode::Constant => "constant",
                        PadMode::Edge => "edge",
                        PadMode::Reflect => "reflect",
                    }
                    .into(),
                );
                set("pad_width", tuple(&p.pads));
                set("constant_value", num("constant_value", p.value)?);
                "Pad"
            }
            // MXNet's zeros_like: zeros of its one input's shape.
            Op::Fill(f)
                if f.value == 0.0
                    && matches!(node.inputs.as_slice(), [data]
                        if shape_of(*data).is_ok_and(|s| s.len() == f.shape.len()))
                    && f.shape == FillDim::first_input(f.shape.len()) =>
            {
                "zeros_like"
            }
            Op::Fill(f) => {
                let op = if f.value == 0.0 {
                    "_zeros"
                } else if f.value == 1.0 {
                    "_ones"
                } else {
                    return Err(unsupported(
                        "value",
                        f.value.to_string(),
                        "the importer reads only _zeros and _ones",
                    ));
                };
                let codes = self.fill_shape(index)?;
                set("shape", tuple(&codes));
                // `_zeros` has no inputs: the batch dims are resolved where it is read.
                entries.clear();
                op
            }
            Op::Arange(r) => {
                set("start", num("start", r.start)?);
                set("step", num("step", r.step)?);
                set("repeat", r.repeat.to_string());
                let every_axis =
                    r.shape.len() > 1 && r.shape == FillDim::first_input(r.shape.len());
                match r.shape.as_slice() {
                    [FillDim::Fixed(n)] => {
                        // Any stop in the last step's half gives MXNet's ⌈(stop − start) /
                        // step⌉ = the count, whatever the rounding of the division.
                        let steps = n / r.repeat.max(1);
                        set(
                            "stop",
                            num("stop", r.start + (steps as f64 - 0.5) * r.step)?,
                        );
                        set("dtype", "float32".into());
                        "_arange"
                    }
                    _ if every_axis => "_contrib_arange_like",
                    [FillDim::Like { input: 0, axis }] => {
                        set("axis", axis.to_string());
                        "_contrib_arange_like"
                    }
                    other => return Err(unsupported(
                        "shape",
                        format!("{other:?}"),
                        "MXNet's arange is one fixed length or the shape (or one dim) of its input",
                    )),
                }
            }
            Op::OnesLike(_) => "ones_like",
            Op::ShapeArray(_) => "shape_array",
            Op::SizeArray(_) => "size_array",
            Op::Binary(b) => b.kind.mxnet_name(b.broadcast),
            Op::AddN(_) => {
                set("num_args", node.inputs.len().to_string());
                "add_n"
            }
            Op::Scalar(s) => {
                set("scalar", num("scalar", s.value)?);
                s.kind.mxnet_name()
            }
            Op::Unary(u) => crate::import::unary_op_name(u.kind),
            Op::Cast(c) => {
                set("dtype", c.to.name().to_string());
                "Cast"
            }
            Op::Clip(c) => {
                set("a_min", num("a_min", c.min)?);
                set("a_max", num("a_max", c.max)?);
                "clip"
            }
            Op::Where(_) => "where",
            Op::Mean(m) => {
                if let Some(axis) = axis_attr(m.axes.as_deref())? {
                    set("axis", axis);
                }
                set("keepdims", boolean(m.keepdims));
                set("exclude", boolean(m.exclude));
                "mean"
            }
            Op::Reduce(r) => {
                if let Some(axis) = axis_attr(r.axes.as_deref())? {
                    set("axis", axis);
                }
                set("keepdims", boolean(r.keepdims));
                match r.kind {
                    ReduceKind::L1 | ReduceKind::L2 if r.exclude => {
                        return Err(unsupported(
                            "exclude",
                            "true".into(),
                            "MXNet's norm has no exclude",
                        ))
                    }
                    ReduceKind::L1 => set("ord", "1".into()),
                    ReduceKind::L2 => set("ord", "2".into()),
                    _ => set("exclude", boolean(r.exclude)),
                }
                r.kind.mxnet_name()
            }
            Op::ArgReduce(r) => {
                if let Some(axis) = r.axis {
                    set("axis", axis.to_string());
                }
                set("keepdims", boolean(r.keepdims));
                match r.kind {
                    ArgKind::Max => "argmax",
                    ArgKind::Min => "argmin",
                }
            }
            Op::Embedding(e) => {
                set("input_dim", e.input_dim.to_string());
                set("output_dim", e.output_dim.to_string());
                set("dtype", "float32".into());
                "Embedding"
            }
            Op::SequenceLast(s) => {
                set("axis", s.axis.to_string());
                set("use_sequence_length", boolean(s.use_sequence_length));
                "SequenceLast"
            }
            Op::SequenceMask(m) => {
                set("axis", m.axis.to_string());
                set("value", num("value", m.value)?);
                set("use_sequence_length", boolean(m.use_sequence_length));
                "SequenceMask"
            }
            Op::SequenceReverse(r) => {
                set("axis", "0".into());
                set("use_sequence_length", boolean(r.use_sequence_length));
                "SequenceReverse"
            }
            Op::BatchDot(d) => {
                set("transpose_a", boolean(d.transpose_a));
                set("transpose_b", boolean(d.transpose_b));
                "batch_dot"
            }
            Op::InterleavedMatmul(m) => {
                set("heads", m.heads.to_string());
                m.kind.mxnet_name()
            }
            Op::Rnn(r) => {
                set(
                    "mode",
                    match r.mode {
                        RnnMode::Lstm => "lstm",
                        RnnMode::Gru => "gru",
                        RnnMode::RnnTanh => "rnn_tanh",
                        RnnMode::RnnRelu => "rnn_relu",
                    }
                    .into(),
                );
                set("state_size", r.hidden.to_string());
                set("num_layers", r.layers.to_string());
                set("bidirectional", boolean(r.bidirectional));
                set("state_outputs", boolean(r.state_outputs));
                let packed = self.pack_rnn_params(index, r)?;
                // MXNet's order: data, the packed parameters, the state(s).
                let states = entries.split_off(1.min(entries.len()));
                entries.push(packed);
                entries.extend(states.into_iter().take(r.state_inputs().saturating_sub(1)));
                "RNN"
            }
            Op::MultiBoxPrior(m) => {
                // f32 written shortest, which MXNet (and the importer) read back exactly.
                set("sizes", tuple(&m.sizes));
                set("ratios", tuple(&m.ratios));
                set("clip", boolean(m.clip));
                set("steps", tuple(&m.steps));
                set("offsets", tuple(&m.offsets));
                "_contrib_MultiBoxPrior"
            }
            Op::RoiPool(r) => {
                set("pooled_size", tuple(&[r.pooled_height, r.pooled_width]));
                set("spatial_scale", r.spatial_scale.to_string());
                "ROIPooling"
            }
            Op::RoiAlign(r) => {
                // f32 written shortest, which MXNet (and the importer) read back exactly.
                set("pooled_size", tuple(&[r.pooled_height, r.pooled_width]));
                set("spatial_scale", r.spatial_scale.to_string());
                set(
                    "sample_ratio",
                    r.sample_ratio
                        .map_or_else(|| "-1".into(), |n| n.to_string()),
                );
                set("position_sensitive", boolean(r.position_sensitive));
                set("aligned", boolean(r.aligned));
                "_contrib_ROIAlign"
            }
            Op::AdaptiveAvgPool(p) => {
                set("output_size", tuple(&[p.height, p.width]));
                "_contrib_AdaptiveAvgPooling2D"
            }
            Op::BilinearResize(r) => {
                // f32 written shortest, which MXNet (and the importer) read back exactly.
                let (mode, size, scales) = match r.target {
                    ResizeTarget::Size { height, width } => ("size", Some((height, width)), None),
                    ResizeTarget::Scale { height, width } => ("size", None, Some((height, width))),
                    ResizeTarget::OddScale { height, width } => {
                        ("odd_scale", None, Some((height, width)))
                    }
                    ResizeTarget::Like => ("like", None, None),
                    ResizeTarget::ToEvenDown => ("to_even_down", None, None),
                    ResizeTarget::ToEvenUp => ("to_even_up", None, None),
                    ResizeTarget::ToOddDown => ("to_odd_down", None, None),
                    ResizeTarget::ToOddUp => ("to_odd_up", None, None),
                };
                set("mode", mode.into());
                if let Some((h, w)) = size {
                    set("height", h.to_string());
                    set("width", w.to_string());
                }
                if let Some((h, w)) = scales {
                    set("scale_height", h.to_string());
                    set("scale_width", w.to_string());
                }
                set("align_corners", boolean(r.align_corners));
                "_contrib_BilinearResize2D"
            }
            Op::UpSampling(u) => {
                set("scale", u.scale.to_string());
                set("sample_type", "nearest".into());
                set("num_args", node.inputs.len().to_string());
                set(
                    "multi_input_mode",
                    if u.sum { "sum" } else { "concat" }.into(),
                );
                "UpSampling"
            }
            Op::Tile(t) => {
                set("reps", tuple(&t.reps));
                "tile"
            }
            // Every element's values or indices are MXNet's sort and argsort (which run as
            // topk with k 0); anything else is topk.
            Op::Topk(t) => {
                set(
                    "axis",
                    t.axis.map_or_else(|| "None".into(), |a| a.to_string()),
                );
                set("is_ascend", boolean(t.ascend));
                match (t.k, t.ret) {
                    (None, TopkReturn::Value) => "sort",
                    (None, TopkReturn::Indices) => "argsort",
                    (k, ret) => {
                        let k = k.unwrap_or(0);
                        if i32::try_from(k).is_err() {
                            return Err(unsupported(
                                "k",
                                k.to_string(),
                                "MXNet's k is a 32-bit integer",
                            ));
                        }
                        set("k", k.to_string());
                        set("ret_typ", ret.mxnet_name().into());
                        "topk"
                    }
                }
            }
            Op::BoxNms(b) => {
                set("overlap_thresh", num("overlap_thresh", b.overlap_thresh)?);
                set("valid_thresh", num("valid_thresh", b.valid_thresh)?);
                let topk = b.topk.map_or(Ok(-1), i32::try_from).map_err(|_| {
                    unsupported(
                        "topk",
                        format!("{:?}", b.topk),
                        "MXNet's topk is a 32-bit integer",
                    )
                })?;
                set("topk", topk.to_string());
                set("coord_start", b.coord_start.to_string());
                set("score_index", b.score_index.to_string());
                set(
                    "id_index",
                    b.id_index.map_or_else(|| "-1".into(), |i| i.to_string()),
                );
                set("background_id", b.background_id.to_string());
                set("force_suppress", boolean(b.force_suppress));
                set("in_format", b.in_format.mxnet_name().into());
                set("out_format", b.out_format.mxnet_name().into());
                "_contrib_box_nms"
            }
            Op::BoxDecode(d) => {
                for (key, v) in ["std0", "std1", "std2", "std3"].into_iter().zip(d.std) {
                    set(key, num(key, v)?);
                }
                set("clip", num("clip", d.clip.unwrap_or(-1.0))?);
                set("format", d.format.mxnet_name().into());
                "_contrib_box_decode"
            }
            Op::BoxEncode(_) => "_contrib_box_encode",
            Op::Proposal(p) | Op::MultiProposal(MultiProposal(p)) => {
                let pre = p.rpn_pre_nms_top_n.map_or(Ok(-1), i32::try_from);
                let post = i32::try_from(p.rpn_post_nms_top_n);
                let (Ok(pre), Ok(post)) = (pre, post) else {
                    return Err(unsupported(
                        "rpn_pre_nms_top_n",
                        format!("{:?}, {}", p.rpn_pre_nms_top_n, p.rpn_post_nms_top_n),
                        "MXNet's top-n counts are 32-bit integers",
                    ));
                };
                set("rpn_pre_nms_top_n", pre.to_string());
                set("rpn_post_nms_top_n", post.to_string());
                set("threshold", num("threshold", p.threshold)?);
                set("rpn_min_size", p.rpn_min_size.to_string());
                // f32 written shortest, which MXNet (and the importer) read back exactly.
                set("scales", tuple(&p.scales));
                set("ratios", tuple(&p.ratios));
                set("feature_stride", p.feature_stride.to_string());
                set("output_score", boolean(p.output_score));
                set("iou_loss", boolean(p.iou_loss));
                if matches!(node.op, Op::MultiProposal(_)) {
                    "_contrib_MultiProposal"
                } else {
                    "_contrib_Proposal"
                }
            }

            Op::MultiBoxDetection(d) => {
                set("clip", boolean(d.clip));
                set("threshold", num("threshold", d.threshold)?);
                set("background_id", d.background_id.to_string());
                set("nms_threshold", num("nms_threshold", d.nms_threshold)?);
                set("force_suppress", boolean(d.force_suppress));
                // float32 values written shortest, which MXNet reads back exactly.
                set("variances", tuple(&d.variances.map(|v| v as f32)));
                let topk = d.nms_topk.map_or(Ok(-1), i32::try_from).map_err(|_| {
                    unsupported(
                        "nms_topk",
                        format!("{:?}", d.nms_topk),
                        "MXNet's nms_topk is a 32-bit integer",
                    )
                })?;
                set("nms_topk", topk.to_string());
                "_contrib_MultiBoxDetection"
            }

            Op::Reverse(r) => {
                set("axis", tuple(&r.axes));
                "reverse"
            }
            Op::Repeat(r) => {
                set("repeats", r.repeats.to_string());
                if let Some(axis) = r.axis {
                    set("axis", axis.to_string());
                }
                "repeat"
            }
            // Without a dim from the second input: broadcast_to, 0 keeping a dim.
            Op::BroadcastTo(b) if !b.reads_like() => {
                let shape: Vec<usize> = b
                    .dims
                    .iter()
                    .map(|d| match *d {
                        BroadcastDim::Fixed(n) => n,
                        _ => 0,
                    })
                    .collect();
                set("shape", tuple(&shape));
                "broadcast_to"
            }
            // Every dim from the second input's own: broadcast_like without axes. Kept
            // dims and dims from the second input: broadcast_like with the axes (whose lhs
            // dims MXNet requires to be 1, as the importer checks).
            Op::BroadcastTo(b) => {
                let like = node
                    .inputs
                    .get(1)
                    .copied()
                    .ok_or_else(|| refuse("has no second input".into()))?;
                let whole = shape_of(like)?.len() == b.dims.len()
                    && b.dims
                        .iter()
                        .enumerate()
                        .all(|(i, d)| *d == BroadcastDim::Like(i));
                if !whole {
                    let mut lhs = Vec::new();
                    let mut rhs = Vec::new();
                    for (i, d) in b.dims.iter().enumerate() {
                        match *d {
                            BroadcastDim::Keep => {}
                            BroadcastDim::Like(j) => {
                                lhs.push(i);
                                rhs.push(j);
                            }
                            BroadcastDim::Fixed(n) => {
                                return Err(unsupported(
                                    "dims",
                                    format!("{:?}", b.dims),
                                    &format!(
                                        "a fixed size ({n}) next to dims from the second input has no MXNet spelling"
                                    ),
                                ))
                            }
                        }
                    }
                    set("lhs_axes", tuple(&lhs));
                    set("rhs_axes", tuple(&rhs));
                }
                "broadcast_like"
            }
            Op::Take(t) => {
                set("axis", t.axis.to_string());
                set("mode", index_mode(t.mode).into());
                "take"
            }
            Op::Pick(p) => {
                set("axis", p.axis.to_string());
                set("keepdims", boolean(p.keepdims));
                set("mode", index_mode(p.mode).into());
                "pick"
            }
            Op::GatherNd(_) => "gather_nd",
            Op::OneHot(o) => {
                set("depth", o.depth.to_string());
                set("on_value", num("on_value", o.on_value)?);
                set("off_value", num("off_value", o.off_value)?);
                set("dtype", "float32".into());
                "one_hot"
            }
        };
        let name = self
            .node_names
            .get(index)
            .cloned()
            .unwrap_or_else(|| node.name.clone());
        let at = self.push(mxnet_op, &name, attrs, entries);
        if let Some(slot) = self.nodes_at.get_mut(index) {
            *slot = Some(at);
        }
        Ok(())
    }

    /// The `shape` of the `_zeros`/`_ones` for fill node `index`: `0` where a dim follows
    /// the batch. The importer resolves a `0` at the constant's reader, from the RNN's data
    /// (axis 1) when an RNN reads it, else from axis 0 of the first data input, and makes
    /// one fill per reader; a fill whose dims follow anything else, or that several values
    /// read, would come back as another graph.
    fn fill_shape(&self, index: usize) -> Result<Vec<usize>, ExportError> {
        let graph = self.graph;
        let Some(node) = graph.nodes.get(index) else {
            return Ok(Vec::new());
        };
        let Op::Fill(fill) = &node.op else {
            return Ok(Vec::new());
        };
        let refuse = |reason: String| ExportError::Node {
            node: node.name.clone(),
            op: node.op.name(),
            reason,
        };
        let mut axis = None;
        let mut codes = Vec::with_capacity(fill.shape.len());
        for d in &fill.shape {
            match *d {
                FillDim::Fixed(0) => {
                    return Err(refuse(
                        "has a dim of 0, which MXNet's _zeros reads as a batch dim".into(),
                    ))
                }
                FillDim::Fixed(n) => codes.push(n),
                FillDim::Like { input: 0, axis: a } if axis.is_none_or(|x| x == a) => {
                    axis = Some(a);
                    codes.push(0);
                }
                FillDim::Like { input, axis: a } => {
                    return Err(refuse(format!(
                    "copies dim {a} of input {input}; MXNet's _zeros can only follow one batch dim"
                )))
                }
            }
        }
        let Some(axis) = axis else {
            if !node.inputs.is_empty() {
                return Err(refuse(
                    "reads inputs but copies none of their dims; MXNet's _zeros has no inputs"
                        .into(),
                ));
            }
            return Ok(codes);
        };
        let source = Source::Node(index, 0);
        let readers = self.readers.get(&source).map(Vec::as_slice).unwrap_or(&[]);
        let [reader] = readers else {
            return Err(refuse(format!(
                "follows the batch and is read {} times; the importer makes one such constant per reader",
                readers.len()
            )));
        };
        let first_data = graph
            .inputs
            .iter()
            .position(|i| i.role == InputRole::Data)
            .map(Source::Input);
        let expected = match reader {
            Reader::Node(r) => match graph.nodes.get(*r) {
                Some(n) if matches!(n.op, Op::Rnn(_)) => (n.inputs.first().copied(), 1),
                _ => (first_data, 0),
            },
            Reader::Output => (first_data, 0),
        };
        if (node.inputs.first().copied(), axis) != expected || node.inputs.len() != 1 {
            return Err(refuse(format!(
                "takes its batch from dim {axis} of {:?}; MXNet's _zeros would take it from {}",
                node.inputs
                    .first()
                    .map(|s| graph.source_name(*s))
                    .unwrap_or_default(),
                match expected {
                    (Some(s), a) => format!("dim {a} of {:?}", graph.source_name(s)),
                    (None, _) => "nothing (the graph has no data input)".into(),
                }
            )));
        }
        Ok(codes)
    }

    /// Packs an RNN's parameters as Gluon's export does: each one reshaped to a vector,
    /// concatenated in MXNet's order (every layer's and direction's weights, then every
    /// bias). The importer recognises this and takes the parameters as they are.
    fn pack_rnn_params(&mut self, index: usize, rnn: &Rnn) -> Result<[usize; 3], ExportError> {
        let graph = self.graph;
        let Some(node) = graph.nodes.get(index) else {
            return Err(ExportError::Node {
                node: String::new(),
                op: "rnn",
                reason: "is missing".into(),
            });
        };
        let refuse = |reason: String| ExportError::Node {
            node: node.name.clone(),
            op: node.op.name(),
            reason,
        };
        let params = node.inputs.get(rnn.state_inputs()..).unwrap_or(&[]);
        let cells = params.len() / PARAMS_PER_CELL;
        let packing = (0..cells)
            .flat_map(|c| [4 * c, 4 * c + 1])
            .chain((0..cells).flat_map(|c| [4 * c + 2, 4 * c + 3]));
        let mut parts = Vec::with_capacity(params.len());
        for at in packing {
            let source = params
                .get(at)
                .copied()
                .ok_or_else(|| refuse("has too few parameters".into()))?;
            let Source::Param(p) = source else {
                return Err(refuse(format!(
                    "parameter input {at} is {:?}, a computed value; MXNet's RNN packs variables",
                    graph.source_name(source)
                )));
            };
            let entry = self
                .entry(source)
                .ok_or_else(|| refuse("reads a parameter that was not written".into()))?;
            let name = graph
                .params
                .get(p)
                .map(|d| d.name.as_str())
                .unwrap_or("rnn_param");
            let reshape_name = self.fresh_name(&format!("{name}_reshape"));
            let mut attrs = BTreeMap::new();
            attrs.insert("shape".to_string(), tuple(&[-1i64]));
            let at = self.push("Reshape", &reshape_name, attrs, vec![entry]);
            parts.push([at, 0, 0]);
        }
        let concat_name = self.fresh_name(&format!("{}_rnn_param_concat", node.name));
        let mut attrs = BTreeMap::new();
        attrs.insert("dim".to_string(), "0".to_string());
        attrs.insert("num_args".to_string(), parts.len().to_string());
        let at = self.push("_rnn_param_concat", &concat_name, attrs, parts);
        Ok([at, 0, 0])
    }

    /// The heads, and each output's MXNet name (as `list_outputs()` and the importer give
    /// it: a variable's own name, `NODE` and [`output_suffix`], `_K` appended to a
    /// repeated name).
    fn heads(&self) -> Result<Vec<ExportedOutput>, ExportError> {
        let graph = self.graph;
        let mut outputs: Vec<ExportedOutput> = Vec::with_capacity(graph.outputs.len());
        for (k, output) in graph.outputs.iter().enumerate() {
            let name = match output.source {
                Source::Input(i) => graph.inputs.get(i).map(|x| x.name.clone()),
                Source::Param(p) => graph.params.get(p).map(|x| x.name.clone()),
                Source::Node(n, j) => graph
                    .nodes
                    .get(n)
                    .zip(self.node_names.get(n))
                    .map(|(node, name)| format!("{name}{}", output_suffix(&node.op, j))),
            }
            .unwrap_or_default();
            let name = if outputs.iter().any(|o| o.mxnet == name) {
                format!("{name}_{k}")
            } else {
                name
            };
            outputs.push(ExportedOutput {
                declared: output.name.clone(),
                mxnet: name,
            });
        }
        Ok(outputs)
    }

    fn symbol_json(&self) -> Vec<u8> {
        let heads: Vec<[usize; 3]> = self
            .graph
            .outputs
            .iter()
            .filter_map(|o| self.entry(o.source))
            .collect();
        let mut attrs = BTreeMap::new();
        attrs.insert("mxnet_version", ("int", MXNET_VERSION));
        let symbol = JsonSymbol {
            nodes: &self.nodes,
            arg_nodes: &self.arg_nodes,
            heads: &heads,
            attrs,
        };
        // Plain structs of strings and integers always serialise.
        let mut json = serde_json::to_vec_pretty(&symbol).unwrap_or_default();
        json.push(b'\n');
        json
    }
}

/// What MXNet appends to a node's name for output `k` in `list_outputs()` (and ward's
/// importer too): `_output`; `_outputK` for a split (even into one) and for the values of
/// topk and sort; RNN's own names for its states.
fn output_suffix(op: &Op, k: usize) -> String {
    match (op, k) {
        (Op::Split(_), k) => format!("_output{k}"),
        // topk of values, and sort, have a hidden second output (the indices).
        (Op::Topk(t), k) if matches!(t.ret, TopkReturn::Value | TopkReturn::Both) => {
            format!("_output{k}")
        }
        // box_nms has a hidden second output (the rows it kept); box_encode two.
        (Op::BoxNms(_) | Op::BoxEncode(_), k) => format!("_output{k}"),
        (Op::Proposal(_) | Op::MultiProposal(_), 1) => "_score".into(),
        (Op::Rnn(_), 1) => "_state_output".into(),
        (Op::Rnn(_), 2) => "_statecell_output".into(),
        _ => "_output".into(),
    }
}

/// The name each node is written under: its own, except that a node whose outputs the
/// graph declares under another MXNet-style name (`P_output` for a node not called `P`)
/// is written as `P`, so that MXNet's `list_outputs()` gives the declared names. That is
/// done only when every output of the node agrees on `P` and `P` names nothing else.
fn output_node_names(graph: &Graph, variables: &HashMap<&str, &'static str>) -> Vec<String> {
    let mut names: Vec<String> = graph.nodes.iter().map(|n| n.name.clone()).collect();
    let mut wanted: HashMap<usize, Option<String>> = HashMap::new();
    for output in &graph.outputs {
        let Source::Node(n, k) = output.source else {
            continue;
        };
        let Some(node) = graph.nodes.get(n) else {
            continue;
        };
        let base = output
            .name
            .strip_suffix(&output_suffix(&node.op, k))
            .filter(|b| !b.is_empty())
            .map(str::to_string);
        let entry = wanted.entry(n).or_insert_with(|| base.clone());
        if *entry != base {
            *entry = None;
        }
    }
    let mut taken: HashSet<String> = names.iter().cloned().collect();
    let mut renames: Vec<(usize, String)> = wanted
        .into_iter()
        .filter_map(|(n, base)| Some((n, base?)))
        .collect();
    renames.sort();
    for (n, base) in renames {
        let Some(current) = names.get_mut(n) else {
            continue;
        };
        if *current == base || taken.contains(&base) || variables.contains_key(base.as_str()) {
            continue;
        }
        taken.insert(base.clone());
        *current = base;
    }
    names
}

fn normalization(n: Normalization) -> &'static str {
    match n {
        Normalization::Null => "null",
        Normalization::Batch => "batch",
        Normalization::Valid => "valid",
    }
}

/// `take`'s and `pick`'s `mode`.
fn index_mode(mode: IndexMode) -> &'static str {
    match mode {
        IndexMode::Clip => "clip",
        IndexMode::Wrap => "wrap",
    }
}

/// A boolean as Python's `str()` writes it, as Gluon's export does.
fn boolean(b: bool) -> String {
    if b { "True" } else { "False" }.to_string()
}

/// A tuple as Python writes it: `(3, 3)`, `(4,)`, `()`.
fn tuple<T: std::fmt::Display>(values: &[T]) -> String {
    match values {
        [] => "()".into(),
        [one] => format!("({one},)"),
        many => format!(
            "({})",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A float in the shortest spelling that reads back as the same `f64` (`1e-5`, `0.9`,
/// `inf`); `None` for NaN, which MXNet's and ward's attribute parsers refuse.
fn float(v: f64) -> Option<String> {
    if v.is_nan() {
        None
    } else {
        Some(format!("{v:?}"))
    }
}

/// MXNet reshape codes (and `reverse`) that the importer decodes to exactly `dims` for an
/// input of shape `input`, or `None` if there are none.
pub fn reshape_codes(dims: &[ReshapeDim], input: &[usize]) -> Option<(Vec<i64>, bool)> {
    let rank = input.len();
    for reverse in [false, true] {
        let axes: Vec<usize> = if reverse {
            (0..rank).rev().collect()
        } else {
            (0..rank).collect()
        };
        // With `reverse`, MXNet reads the codes and the input's dims right to left and
        // reverses what it made: search in that order.
        let target: Vec<ReshapeDim> = if reverse {
            dims.iter().rev().copied().collect()
        } else {
            dims.to_vec()
        };
        let mut codes = Vec::new();
        if search(&target, &axes, input, 0, 0, &mut codes) {
            if reverse {
                codes.reverse();
            }
            // The importer's own decoder is the judge.
            if let Ok((back, requires)) = mxnet_reshape_dims(rank, &codes, reverse) {
                let fits = requires
                    .iter()
                    .all(|[axis, size]| input.get(*axis) == Some(size));
                if back == dims && fits {
                    return Some((codes, reverse));
                }
            }
        }
    }
    None
}

/// Depth-first search for codes that make `target[i..]` from input position `src`.
fn search(
    target: &[ReshapeDim],
    axes: &[usize],
    input: &[usize],
    i: usize,
    src: usize,
    codes: &mut Vec<i64>,
) -> bool {
    let Some(&dim) = target.get(i) else {
        return true;
    };
    let axis = axes.get(src).copied();
    let next = axes.get(src + 1).copied();
    let attempt = |push: &[i64], used: usize, consumed: usize, codes: &mut Vec<i64>| {
        let len = codes.len();
        codes.extend_from_slice(push);
        if search(target, axes, input, i + used, src + consumed, codes) {
            return true;
        }
        codes.truncate(len);
        false
    };
    // -2: the rest of the input's dims, copied (only when there are some left).
    let rest = axes.get(src..).unwrap_or(&[]);
    if rest.len() > 1
        && target
            .get(i..i + rest.len())
            .is_some_and(|t| t.iter().zip(rest).all(|(d, &a)| *d == ReshapeDim::Copy(a)))
        && attempt(&[-2], rest.len(), rest.len(), codes)
    {
        return true;
    }
    // One code for this dim: (code, input dims it consumes).
    let single = match dim {
        ReshapeDim::Copy(a) if Some(a) == axis => Some((0, 1)),
        ReshapeDim::Infer => Some((-1, 1)),
        ReshapeDim::Fixed(n) if n > 0 => i64::try_from(n).ok().map(|code| (code, 1)),
        ReshapeDim::Product(from, to) => match (axis, next) {
            (Some(a), Some(b)) if from == a.min(b) && to == a.max(b) + 1 => Some((-3, 2)),
            _ => None,
        },
        _ => None,
    };
    if let Some((code, consumed)) = single {
        if attempt(&[code], 1, consumed, codes) {
            return true;
        }
    }
    // -4: one input dim split in two.
    if let (Some(axis), Some(&second)) = (axis, target.get(i + 1)) {
        let split = match (dim, second) {
            (ReshapeDim::Quotient(q, b), ReshapeDim::Fixed(f)) if q == axis && b == f => {
                i64::try_from(b).ok().map(|b| [-4, -1, b])
            }
            (ReshapeDim::Fixed(f), ReshapeDim::Quotient(q, a)) if q == axis && a == f => {
                i64::try_from(a).ok().map(|a| [-4, a, -1])
            }
            (ReshapeDim::Fixed(a), ReshapeDim::Fixed(b))
                if a > 0 && b > 0 && a.checked_mul(b) == input.get(axis).copied() =>
            {
                i64::try_from(a)
                    .ok()
                    .zip(i64::try_from(b).ok())
                    .map(|(a, b)| [-4, a, b])
            }
            _ => None,
        };
        if let Some(split) = split {
            if attempt(&split, 2, 1, codes) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use ward_graph::compat::mxnet_reshape;

    #[test]
    fn reshape_codes_decode_to_the_same_dims() {
        // Every sequence of up to four codes on a few shapes: whatever the importer makes,
        // the export finds codes for that make it again.
        let shapes: [&[usize]; 4] = [&[2, 3, 4, 5], &[6, 4], &[2, 3, 4], &[24]];
        let alphabet = [0i64, -1, -2, -3, -4, 1, 2, 3, 4, 6, 12];
        let mut sequences: Vec<Vec<i64>> = vec![vec![]];
        for _ in 0..4 {
            let longer: Vec<Vec<i64>> = sequences
                .iter()
                .flat_map(|s| {
                    alphabet.iter().map(move |&c| {
                        let mut t = s.clone();
                        t.push(c);
                        t
                    })
                })
                .collect();
            sequences.extend(longer);
        }
        sequences.sort();
        sequences.dedup();
        let mut checked = 0;
        for shape in shapes {
            for codes in &sequences {
                for reverse in [false, true] {
                    let Ok(reshape) = mxnet_reshape(shape, codes, reverse) else {
                        continue;
                    };
                    let (found, rev) = reshape_codes(&reshape.dims, shape)
                        .unwrap_or_else(|| panic!("{codes:?} reverse {reverse} on {shape:?}"));
                    let back = mxnet_reshape(shape, &found, rev).unwrap();
                    assert_eq!(back, reshape, "{codes:?} on {shape:?} gave {found:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn a_reshape_without_codes_is_refused() {
        // Copying a later dim first has no MXNet code.
        let dims = [ReshapeDim::Copy(1), ReshapeDim::Copy(0)];
        assert_eq!(reshape_codes(&dims, &[2, 3]), None);
        // A fixed 0 reads as "copy" in MXNet.
        assert_eq!(reshape_codes(&[ReshapeDim::Fixed(0)], &[0]), None);
    }

    #[test]
    fn attribute_spellings_follow_python() {
        assert_eq!(tuple::<usize>(&[]), "()");
        assert_eq!(tuple(&[4usize]), "(4,)");
        assert_eq!(tuple(&[3i64, -1]), "(3, -1)");
        assert_eq!(boolean(true), "True");
        assert_eq!(float(1e-5).unwrap(), "1e-5");
        assert_eq!(float(0.9).unwrap(), "0.9");
        assert_eq!(float(f64::NEG_INFINITY).unwrap(), "-inf");
        assert_eq!(float(f64::NAN), None);
        for v in [1e-5, 0.001, 0.9, 1.0, 6.0, 1e300, 5e-324, -2.5, 0.1 + 0.2] {
            let text = float(v).unwrap();
            assert_eq!(crate::attrs::parse_float(&text).unwrap(), v, "{text}");
        }
    }
}
