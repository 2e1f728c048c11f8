//! The graph IR: typed operators with typed attributes, serialised as versioned JSON.
//!
//! A graph is a list of nodes in topological order. Every value is named by a [`Source`]:
//! a graph input (data, or a label fed only in training), a parameter (whose bytes live in
//! the package's weights file; trainable, or a state such as BatchNorm's running
//! statistics), or one output of an earlier node. The operators are defined by family in
//! [`crate::ops`]. Nothing here is MXNet-specific: the importer translates MXNet's strings
//! and encodings (reshape codes, packed RNN parameters) into these types once, with
//! MXNet's defaults made explicit.

use serde::{Deserialize, Serialize};
use ward_core::DType;

use crate::error::GraphError;
pub use crate::ops::Op;

/// The `format` field of every `graph.json`.
pub const GRAPH_FORMAT: &str = "ward-graph";
/// The IR version this build writes. Version 2 added parameter roles and multipliers,
/// label inputs, the training attributes, and neutral reshape dims and RNN parameters;
/// version 1 graphs are read by [`crate::compat::upgrade_v1`].
pub const GRAPH_VERSION: u32 = 2;
pub use crate::limits::{
    MAX_GRAPH_JSON_BYTES, MAX_GRAPH_NODES, MAX_RANK, MAX_RNN_LAYERS, MAX_SPLIT_OUTPUTS,
};

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

/// What a graph input carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputRole {
    /// Fed at inference and in training.
    #[default]
    Data,
    /// Fed only in training: the target a loss head (`softmax_output`, ...) compares its
    /// prediction with. Not part of a package's inference schema.
    Label,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphInput {
    pub name: String,
    pub dtype: DType,
    #[serde(default)]
    pub role: InputRole,
}

/// What a parameter is to training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamRole {
    /// Learned by the optimizer (MXNet `arg:` parameters).
    #[default]
    Trainable,
    /// Updated by the forward pass in training, never by the optimizer: BatchNorm's
    /// running mean and variance (MXNet `aux:` states).
    State,
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

/// A constant tensor stored in the weights file under `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    #[serde(default)]
    pub role: ParamRole,
    /// Multiplies the learning rate for this parameter (MXNet `__lr_mult__`); 0 freezes it.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub lr_mult: f64,
    /// Multiplies the weight decay for this parameter (MXNet `__wd_mult__`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub wd_mult: f64,
}

impl ParamDecl {
    /// A trainable parameter with the default multipliers.
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<usize>) -> ParamDecl {
        ParamDecl {
            name: name.into(),
            dtype,
            shape,
            role: ParamRole::Trainable,
            lr_mult: 1.0,
            wd_mult: 1.0,
        }
    }
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

impl Node {
    /// An error about this node, naming it and its operator.
    pub(crate) fn error(&self, reason: impl Into<String>) -> GraphError {
        GraphError::Node {
            node: self.name.clone(),
            op: self.op.name(),
            reason: reason.into(),
        }
    }
}

impl Graph {
    /// What the outputs depend on: for each node whether any output reads it (through
    /// any path), and the parameters such nodes (or outputs) read.
    pub fn live(&self) -> (Vec<bool>, std::collections::HashSet<usize>) {
        let mut nodes = vec![false; self.nodes.len()];
        let mut params = std::collections::HashSet::new();
        let mut stack: Vec<Source> = self.outputs.iter().map(|o| o.source).collect();
        while let Some(source) = stack.pop() {
            match source {
                Source::Node(n, _) => {
                    if let Some(live) = nodes.get_mut(n) {
                        if !*live {
                            *live = true;
                            if let Some(node) = self.nodes.get(n) {
                                stack.extend(node.inputs.iter().copied());
                            }
                        }
                    }
                }
                Source::Param(p) => {
                    params.insert(p);
                }
                Source::Input(_) => {}
            }
        }
        (nodes, params)
    }

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

    /// Parses and validates a `graph.json` of the current version. The bytes are
    /// untrusted: the size is bounded before parsing and the structure is checked with
    /// [`Graph::validate`]. A version-1 graph is refused by its version: it needs its
    /// package's input shapes and weights to be upgraded ([`crate::compat::upgrade_v1`]).
    pub fn from_json(bytes: &[u8]) -> Result<Graph, GraphError> {
        let version = graph_version(bytes)?;
        if version != GRAPH_VERSION {
            return Err(GraphError::Version {
                found: version,
                supported: GRAPH_VERSION,
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
        for p in &self.params {
            for (what, v) in [("lr_mult", p.lr_mult), ("wd_mult", p.wd_mult)] {
                if !v.is_finite() || v < 0.0 {
                    return Err(GraphError::Param {
                        param: p.name.clone(),
                        reason: format!("{what} {v} must be finite and non-negative"),
                    });
                }
            }
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
                return Err(node.error(format!(
                    "has {} inputs, expected {}",
                    node.inputs.len(),
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("at least {lo}")
                    }
                )));
            }
            for source in &node.inputs {
                self.check_source(*source, index)
                    .map_err(|reason| node.error(reason))?;
            }
            node.op
                .def()
                .validate()
                .map_err(|reason| node.error(reason))?;
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
            Source::Node(n, k) => match self.nodes.get(n) {
                Some(node) if k >= node.op.num_outputs() => Err(format!(
                    "refers to output {k} of node {:?}, which has {}",
                    node.name,
                    node.op.num_outputs()
                )),
                Some(_) => Ok(()),
                None => Err(format!("refers to missing node {n}")),
            },
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

/// The `version` of a `graph.json`, read before anything else (after checking its size
/// and `format`), so that each version is parsed by its own rules.
pub fn graph_version(bytes: &[u8]) -> Result<u32, GraphError> {
    if bytes.len() > MAX_GRAPH_JSON_BYTES {
        return Err(GraphError::TooLarge {
            what: "graph.json bytes",
            actual: bytes.len(),
            limit: MAX_GRAPH_JSON_BYTES,
        });
    }
    #[derive(Deserialize)]
    struct Probe {
        format: String,
        version: u32,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| GraphError::Json(e.to_string()))?;
    if probe.format != GRAPH_FORMAT {
        return Err(GraphError::Format(probe.format));
    }
    Ok(probe.version)
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
