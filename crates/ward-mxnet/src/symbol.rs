//! The symbol JSON reader: `*-symbol.json` graphs as MXNet 0.8 to 1.9 write them (§2 of
//! the format reference).
//!
//! MXNet's own loader (nnvm `LoadJSON` followed by `LoadLegacyJSON`) trusts the file: it
//! accepts forward and self references (a cycle silently drops an input), duplicate node
//! names, duplicate JSON keys (the last one wins) and, when a node has both `attrs` and
//! `attr`, keeps whichever comes last. This reader is as strict as MXNet where MXNet is
//! strict, and stricter where MXNet is unsafe or ambiguous:
//!
//! * **Bounds first.** The document size is checked before anything else, then it must be
//!   UTF-8, then a linear pre-scan bounds the nesting depth of arrays and objects
//!   (serde_json's own recursion limit is fixed at 128 and does not apply to the raw
//!   values this reader captures), and only then is it parsed. The node count (subgraphs
//!   included), the attributes per node and the length of every name, op name, attribute
//!   key and value are bounded by [`SymbolLimits`]; arrays that could exceed a limit are
//!   counted without being stored.
//! * **One level at a time.** After one full syntax check, each object or array the schema
//!   descends into is split into its members, which stay raw (validated) text until they
//!   are needed. Errors therefore name the node and key rather than a byte offset, and
//!   nothing outside the schema is ever decoded. The cost is that the contents of a
//!   subgraph are scanned about four more times per level of subgraph nesting, so the work
//!   is bounded by `max_json_bytes × max_json_depth / 4`; the recursion of the reader
//!   (one frame pair per subgraph level) is bounded the same way.
//! * **Strict schema**, as the dmlc JSON reader is: unknown keys are errors (graph:
//!   `nodes`, `arg_nodes`, `heads`, `node_row_ptr`, `attrs`; node: `op`, `name`, `inputs`,
//!   `attrs`, `attr`, `param`, `control_deps`, `subgraphs`, `backward_source_id`),
//!   attribute values must be JSON strings, entries are 2 or 3 non-negative integers
//!   (`[node, output]` or `[node, output, version]`, each below 2^32 as in nnvm).
//! * **Stricter than MXNet:** every input and control dependency refers to an *earlier*
//!   node, so the graph is acyclic and already in topological order; heads and `arg_nodes`
//!   are in range; `arg_nodes` lists distinct variables (op `"null"`); variables have no
//!   inputs and no subgraphs; a variable's name is unique within its graph (parameters
//!   bind by name); a JSON key may not repeat; `attrs` and `attr` may not both appear on
//!   one node. Operator nodes *may* share a name: Gluon names an op after its block, so a
//!   block called twice yields two nodes with the same name (seen in real exports).
//!
//! What is kept and what is dropped:
//!
//! * `node_row_ptr` is checked to be a list of non-negative integers and otherwise
//!   **ignored**: it depends on the MXNet build (MKLDNN max pooling has two outputs), so
//!   the importer recomputes output offsets from its own op table.
//! * Output indices are kept as written: only the importer knows each op's output count.
//!   The entry's third element (`version`) is checked and dropped.
//! * `control_deps` are checked like inputs (earlier nodes only) and then **dropped**: they
//!   order side effects during training, and inference has none. MXNet never writes them
//!   in exports.
//! * `backward_source_id` (0.8 era) must be an integer and is ignored, as MXNet ignores it.
//! * Graph `attrs` entries are `[type, value]` pairs with type `int`, `str`, `list_int` or
//!   `list_str` (the types nnvm registers; any other type is an error, as in MXNet).
//!   `mxnet_version` and `is_np_shape` are read; other keys are checked and ignored.
//! * Nodes that no head reaches are kept (MXNet drops them when it rebuilds the graph from
//!   its outputs); the importer decides what to do with them.
//!
//! Legacy handling, mirroring `src/nnvm/legacy_json_util.cc` where that needs no operator
//! knowledge:
//!
//! * `attrs` (1.x), `attr` (0.9–1.0) and `param` (0.8) are merged into one map: `attrs` or
//!   `attr`, then the `param` entries whose keys are not already present (MXNet's
//!   `insert`).
//! * `FixParsing`: the bare keys in [`FIX_PARSING_HIDDEN_KEYS`] become `__key__`
//!   (overwriting an existing `__key__`, as MXNet does). MXNet only runs this for files
//!   older than itself; ward runs it on every file, which only affects training hints.
//!   Per-input hints such as `weight_lr_mult` are left where they are: moving them to the
//!   input variable needs the op's input names. `AttrReader::finish` skips them.
//! * The 0.9.5 upgrade: `argmax`/`argmin` with `axis = "-1"` (which meant "all axes"
//!   before 0.9.5) lose the `axis` attribute when the file's version is older than 0.9.5.
//! * The 0.9.0 upgrade that adds missing inputs (BatchNorm's moving mean and variance were
//!   not in the JSON before 0.9.0) needs each op's input list, so it is **not** done here.
//!   The data is kept: such a node simply has fewer inputs than the op declares, and
//!   [`Symbol::mxnet_version`] is below [`VERSION_WITH_ALL_INPUTS`]; the importer must
//!   refuse it (or synthesise the variables) with an error that says so.
//! * The 0.9.4 upgrade (`FSetInputVarAttrOnCompose`) only sets initialiser hints on
//!   variables and is not needed for inference.
//!
//! Op names are resolved through MXNet 1.9.1's alias table ([`canonical_op_name`]), and
//! the spelling in the file is kept in [`SymbolNode::source_op`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::ControlFlow;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::attrs::FIX_PARSING_HIDDEN_KEYS;
use crate::limits::SymbolLimits;

/// The version assumed when a file has no `mxnet_version` (MXNet 0.8.0).
pub const DEFAULT_MXNET_VERSION: u32 = 800;
/// From this version on (0.9.0), every op lists all its inputs, auxiliary states included.
/// Older files can lack BatchNorm's moving statistics.
pub const VERSION_WITH_ALL_INPUTS: u32 = 900;
/// Before this version (0.9.5), `argmax`/`argmin` with `axis = -1` meant "all axes".
const VERSION_ARGMAX_AXIS_OPTIONAL: u32 = 905;
/// Keys a graph object may have.
const GRAPH_KEYS: &str = "nodes, arg_nodes, heads, node_row_ptr, attrs";
/// Keys a node object may have.
const NODE_KEYS: &str =
    "op, name, inputs, attrs, attr, param, control_deps, subgraphs, backward_source_id";
/// Members of a graph or node object kept for inspection. Both have fewer allowed keys
/// than this, so a larger object necessarily shows an unknown or repeated key among the
/// kept ones, and nothing more needs to be stored.
const MAX_KEPT_KEYS: usize = 16;
/// The largest node index, output index or version nnvm can hold (`uint32_t`).
const MAX_ENTRY_VALUE: u64 = u32::MAX as u64;

/// A graph as read from symbol JSON: nodes in topological order (every input refers to an
/// earlier node), the indices of its variables, and its outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub nodes: Vec<SymbolNode>,
    /// The variable nodes (`op == "null"`) as the file lists them: distinct, in range.
    pub arg_nodes: Vec<usize>,
    /// The graph's outputs.
    pub heads: Vec<Entry>,
    /// `major * 10000 + minor * 100 + patch` of the MXNet that wrote the file;
    /// [`DEFAULT_MXNET_VERSION`] (0.8.0) when the file does not say. A subgraph without
    /// graph attributes inherits its parent's value.
    pub mxnet_version: u32,
    /// Written in numpy-shape mode: `-1` rather than `0` marks an unknown dimension in
    /// `__shape__` hints, and a `()` shape is a scalar.
    pub is_np_shape: bool,
}

/// One node: an operator application, or a variable when `op == "null"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolNode {
    /// The canonical op name after alias resolution ([`canonical_op_name`]); `"null"`
    /// for variables.
    pub op: String,
    /// The op name as written in the file.
    pub source_op: String,
    pub name: String,
    /// Inputs, each referring to an earlier node.
    pub inputs: Vec<Entry>,
    /// `attrs` ∪ `attr` ∪ `param`, with legacy hidden keys normalised to `__key__`.
    pub attrs: BTreeMap<String, String>,
    /// Nested graphs (control flow, backend-fused ops such as `_sg_mkldnn_conv`), read
    /// with the same rules.
    pub subgraphs: Vec<Symbol>,
}

/// A reference to output `output` of node `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    pub node: usize,
    pub output: usize,
}

/// A path from the top-level graph down to a subgraph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphPath(pub Vec<SubgraphStep>);

/// One step of a [`GraphPath`]: subgraph `subgraph` of node `node` (named `node_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubgraphStep {
    pub node: usize,
    pub node_name: String,
    pub subgraph: usize,
}

impl GraphPath {
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    fn child(&self, node: usize, node_name: &str, subgraph: usize) -> GraphPath {
        let mut steps = self.0.clone();
        steps.push(SubgraphStep {
            node,
            node_name: node_name.to_owned(),
            subgraph,
        });
        GraphPath(steps)
    }
}

impl fmt::Display for GraphPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the graph");
        }
        for (i, step) in self.0.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(" in ")?;
            }
            write!(
                f,
                "subgraph {} of node {} {:?}",
                step.subgraph, step.node, step.node_name
            )?;
        }
        Ok(())
    }
}

/// Where a problem is: a graph object, or a node of a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Graph(GraphPath),
    Node {
        graph: GraphPath,
        index: usize,
        /// `None` when the node's name is missing or not a string.
        name: Option<String>,
    },
}

impl Location {
    /// The node index, for node locations.
    pub fn node_index(&self) -> Option<usize> {
        match self {
            Location::Graph(_) => None,
            Location::Node { index, .. } => Some(*index),
        }
    }

    /// The node name, for node locations with a readable name.
    pub fn node_name(&self) -> Option<&str> {
        match self {
            Location::Graph(_) => None,
            Location::Node { name, .. } => name.as_deref(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Graph(graph) => write!(f, "{graph}"),
            Location::Node { graph, index, name } => {
                write!(f, "node {index}")?;
                match name {
                    Some(name) => write!(f, " {name:?}")?,
                    None => f.write_str(" (unnamed)")?,
                }
                if !graph.is_root() {
                    write!(f, " in {graph}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why an integer in the file was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntProblem {
    /// Not a JSON integer (a float, a string, ...); the JSON kind found.
    NotAnInteger(&'static str),
    Negative,
    /// Above the largest value the field can hold.
    TooLarge,
}

impl fmt::Display for IntProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntProblem::NotAnInteger(found) => write!(f, "expected an integer, found {found}"),
            IntProblem::Negative => f.write_str("negative"),
            IntProblem::TooLarge => f.write_str("too large"),
        }
    }
}

/// Why an input or head entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryProblem {
    /// Not a JSON array; the JSON kind found.
    NotAnArray(&'static str),
    /// An array of this many elements (2 or 3 are allowed).
    WrongLength(usize),
    /// Element `element` (0 node, 1 output, 2 version) is not a valid index.
    BadElement { element: usize, problem: IntProblem },
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryProblem::NotAnArray(found) => write!(f, "found {found}"),
            EntryProblem::WrongLength(n) => write!(f, "found {n} elements"),
            EntryProblem::BadElement { element, problem } => {
                let which = ["node", "output", "version"]
                    .get(*element)
                    .copied()
                    .unwrap_or("element");
                write!(f, "the {which} index is {problem}")
            }
        }
    }
}

/// A symbol file ward refuses. Each variant says where (graph, node index and name), which
/// key, and what was wrong. Names and keys come from the file and are printed escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolError {
    #[error("symbol JSON is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("symbol JSON is not valid UTF-8 (at byte {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("symbol JSON nests arrays and objects deeper than {limit} levels (at byte {offset})")]
    TooDeep { limit: usize, offset: usize },
    #[error("symbol JSON is malformed at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{at} must be a JSON object, found {found}")]
    NotAnObject { at: Location, found: &'static str },
    #[error("{at}: required key {key:?} is missing")]
    MissingKey { at: Location, key: &'static str },
    #[error("{at}: unknown key {key:?} (allowed: {allowed})")]
    UnknownKey {
        at: Location,
        key: String,
        allowed: &'static str,
    },
    #[error("{at}: key {key:?} appears more than once")]
    DuplicateKey { at: Location, key: String },
    #[error("{at}: {key:?} must be {expected}, found {found}")]
    WrongType {
        at: Location,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{at}: {key:?} is invalid JSON: {message}")]
    InvalidValue {
        at: Location,
        key: String,
        message: String,
    },
    #[error("the symbol has more than {limit} nodes (subgraphs included)")]
    TooManyNodes { limit: usize },
    #[error("{at}: {field:?} has {count} entries, more than the limit of {limit}")]
    TooManyAttrs {
        at: Location,
        field: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{at}: {what} is {len} bytes long, more than the limit of {limit}")]
    TooLong {
        at: Location,
        what: String,
        len: usize,
        limit: usize,
    },
    #[error("{at}: the value of attribute {key:?} in {field:?} must be a string, found {found}")]
    AttrNotString {
        at: Location,
        field: &'static str,
        key: String,
        found: &'static str,
    },
    #[error("{at}: attribute {key:?} appears more than once in {field:?}")]
    DuplicateAttr {
        at: Location,
        field: &'static str,
        key: String,
    },
    #[error(
        "{at}: has both \"attrs\" and \"attr\"; MXNet keeps whichever comes last, so the file is ambiguous"
    )]
    ConflictingAttrFields { at: Location },
    #[error("{at}: {key}[{position}] must be [node, output] or [node, output, version] with integers in 0..2^32: {problem}")]
    BadEntry {
        at: Location,
        key: &'static str,
        position: usize,
        problem: EntryProblem,
    },
    #[error("{at}: {key}[{position}] is not a valid index: {problem}")]
    BadIndex {
        at: Location,
        key: &'static str,
        position: usize,
        problem: IntProblem,
    },
    #[error("{at}: {key:?} is not a valid integer: {problem}")]
    BadInteger {
        at: Location,
        key: &'static str,
        problem: IntProblem,
    },
    #[error("{at}: {key}[{position}] refers to the node itself")]
    SelfReference {
        at: Location,
        key: &'static str,
        position: usize,
    },
    #[error("{at}: {key}[{position}] refers to node {target}, which does not come before it (forward references and cycles are refused)")]
    ForwardReference {
        at: Location,
        key: &'static str,
        position: usize,
        target: usize,
    },
    #[error("{graph}: heads[{position}] refers to node {target}, but there are {len} nodes")]
    HeadOutOfRange {
        graph: GraphPath,
        position: usize,
        target: usize,
        len: usize,
    },
    #[error("{graph}: arg_nodes[{position}] is {target}, but there are {len} nodes")]
    ArgNodeOutOfRange {
        graph: GraphPath,
        position: usize,
        target: usize,
        len: usize,
    },
    #[error("{graph}: arg_nodes[{position}] is node {target} {name:?}, whose op is {op:?}, not a variable (\"null\")")]
    ArgNodeNotVariable {
        graph: GraphPath,
        position: usize,
        target: usize,
        name: String,
        op: String,
    },
    #[error("{graph}: arg_nodes lists node {target} more than once")]
    DuplicateArgNode { graph: GraphPath, target: usize },
    #[error("{graph}: nodes {first} and {second} are both named {name:?}, and one of them is a variable")]
    DuplicateName {
        graph: GraphPath,
        name: String,
        first: usize,
        second: usize,
    },
    #[error("{at}: a variable (op \"null\") cannot have {what}")]
    VariableWithInputs { at: Location, what: &'static str },
    #[error("{graph}: graph attribute {key:?}: {problem}")]
    BadGraphAttr {
        graph: GraphPath,
        key: String,
        problem: String,
    },
}

/// The canonical name MXNet 1.9.1's `Op::Get` resolves `name` to; names that are not
/// aliases (canonical names, `"null"`, unknown ops) are returned unchanged.
///
/// The table is MXNet 1.9.1's registry (`MXListAllOpNames` against the name each handle
/// reports), recorded with the fixtures by `tools/make_symbol_fixtures.py` and checked
/// against them by the tests. Some aliases are not what the name suggests:
/// `_npi_reshape` is `_npx_reshape` (numpy reshape codes, not `Reshape`'s), `crop` is
/// `slice`, `flip` is `reverse`. `_sg_mkldnn_conv` and the other fused ops are real ops,
/// not aliases.
pub fn canonical_op_name(name: &str) -> &str {
    match OP_ALIASES.binary_search_by(|(alias, _)| (*alias).cmp(name)) {
        Ok(i) => OP_ALIASES.get(i).map_or(name, |(_, canonical)| canonical),
        Err(_) => name,
    }
}

/// Reads a symbol JSON document.
pub fn read_symbol(json: &[u8], limits: &SymbolLimits) -> Result<Symbol, SymbolError> {
    if json.len() > limits.max_json_bytes {
        return Err(SymbolError::TooLarge {
            size: json.len(),
            limit: limits.max_json_bytes,
        });
    }
    let text = std::str::from_utf8(json).map_err(|e| SymbolError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    check_nesting(text, limits.max_json_depth)?;
    // One full syntax check of the document. Every later step decodes a slice of this
    // already-validated text, one level at a time.
    let root: &RawValue = serde_json::from_str(text).map_err(|e| syntax_error(&e))?;
    let mut reader = GraphReader {
        limits,
        nodes_left: limits.max_nodes,
    };
    reader.graph(root, &GraphPath::default(), None)
}

/// Refuses nesting deeper than `limit` before anything is parsed.
fn check_nesting(text: &str, limit: usize) -> Result<(), SymbolError> {
    match ward_core::json::nesting_exceeds(text.as_bytes(), limit) {
        Some(offset) => Err(SymbolError::TooDeep { limit, offset }),
        None => Ok(()),
    }
}

fn syntax_error(e: &serde_json::Error) -> SymbolError {
    let message = e.to_string();
    // serde_json appends the position; it is reported in its own fields.
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = message
        .strip_suffix(&suffix)
        .map(str::to_owned)
        .unwrap_or(message);
    SymbolError::Syntax {
        line: e.line(),
        column: e.column(),
        message,
    }
}

// --------------------------------------------------------------------------------------
// One level of JSON at a time
// --------------------------------------------------------------------------------------

const OBJECT: &str = "an object";
const ARRAY: &str = "an array";
const STRING: &str = "a string";

/// The kind of a raw JSON value, from its first byte (the text is already validated).
fn kind_of(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => OBJECT,
        Some(b'[') => ARRAY,
        Some(b'"') => STRING,
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// The members of a JSON object in document order, repeated keys included, values kept as
/// raw text. At most `keep` members are stored; `len` counts them all.
struct RawObject<'a> {
    members: Vec<(String, &'a RawValue)>,
    len: usize,
}

/// The elements of a JSON array as raw text. At most `keep` are stored; `len` counts all.
struct RawArray<'a> {
    items: Vec<&'a RawValue>,
    len: usize,
}

struct ObjectSeed {
    keep: usize,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = RawObject<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed {
    type Value = RawObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        let mut len = 0usize;
        loop {
            if members.len() < self.keep {
                match map.next_key::<String>()? {
                    None => break,
                    Some(key) => members.push((key, map.next_value::<&'de RawValue>()?)),
                }
            } else {
                match map.next_key::<IgnoredAny>()? {
                    None => break,
                    Some(_) => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            len += 1;
        }
        Ok(RawObject { members, len })
    }
}

struct ArraySeed {
    keep: usize,
}

impl<'de> DeserializeSeed<'de> for ArraySeed {
    type Value = RawArray<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed {
    type Value = RawArray<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        let mut len = 0usize;
        loop {
            if items.len() < self.keep {
                match seq.next_element::<&'de RawValue>()? {
                    None => break,
                    Some(item) => items.push(item),
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            len += 1;
        }
        Ok(RawArray { items, len })
    }
}

/// The elements of an entry (`[node, output(, version)]`), without allocating: up to
/// three are kept, all are counted.
struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = ([Option<&'de RawValue>; 3], usize);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = ([Option<&'de RawValue>; 3], usize);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = [None; 3];
        let mut len = 0usize;
        loop {
            if let Some(slot) = kept.get_mut(len) {
                match seq.next_element::<&'de RawValue>()? {
                    None => break,
                    Some(item) => *slot = Some(item),
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            len += 1;
        }
        Ok((kept, len))
    }
}

/// Hands each element of a JSON array to a callback as it is parsed, storing nothing.
/// After the callback breaks, the remaining elements are skipped (serde_json requires the
/// array to be consumed). The value is the number of elements seen.
struct EachElement<F>(F);

impl<'de, F: FnMut(usize, &'de RawValue) -> ControlFlow<()>> DeserializeSeed<'de>
    for EachElement<F>
{
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(usize, &'de RawValue) -> ControlFlow<()>> Visitor<'de> for EachElement<F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut len = 0usize;
        let mut stopped = false;
        loop {
            if stopped {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
            } else {
                match seq.next_element::<&'de RawValue>()? {
                    None => break,
                    Some(item) => stopped = (self.0)(len, item).is_break(),
                }
            }
            len += 1;
        }
        Ok(len)
    }
}

fn decode_with<'a, S: DeserializeSeed<'a>>(
    raw: &'a RawValue,
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A JSON integer in `0..=max`, from its raw text. serde's number decoding is not used:
/// it would turn `1e400` into an error message about floats, and `1.0` into a float.
fn raw_index(raw: &RawValue, max: u64) -> Result<u64, IntProblem> {
    let text = raw.get().trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IntProblem::NotAnInteger(match kind_of(raw) {
            "a number" => "a non-integer number",
            other => other,
        }));
    }
    if negative {
        return Err(IntProblem::Negative);
    }
    match digits.parse::<u64>() {
        Ok(v) if v <= max => Ok(v),
        _ => Err(IntProblem::TooLarge),
    }
}

/// A JSON integer of either sign within `i64`.
fn raw_signed(raw: &RawValue) -> Result<i64, IntProblem> {
    let text = raw.get().trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IntProblem::NotAnInteger(match kind_of(raw) {
            "a number" => "a non-integer number",
            other => other,
        }));
    }
    text.parse::<i64>().map_err(|_| IntProblem::TooLarge)
}

fn to_usize(v: u64) -> usize {
    // Values are bounded by MAX_ENTRY_VALUE (2^32 - 1); on a 32-bit target that still fits.
    usize::try_from(v).unwrap_or(usize::MAX)
}

// --------------------------------------------------------------------------------------
// The reader
// --------------------------------------------------------------------------------------

/// The version information a graph passes on to its subgraphs.
#[derive(Clone, Copy)]
struct GraphVersion {
    mxnet_version: u32,
    is_np_shape: bool,
}

struct GraphReader<'l> {
    limits: &'l SymbolLimits,
    /// Nodes still allowed in the whole document, subgraphs included.
    nodes_left: usize,
}

#[derive(Default)]
struct GraphFields<'a> {
    nodes: Option<&'a RawValue>,
    arg_nodes: Option<&'a RawValue>,
    heads: Option<&'a RawValue>,
    node_row_ptr: Option<&'a RawValue>,
    attrs: Option<&'a RawValue>,
}

/// A graph object's parts, read before its nodes.
struct GraphHeader<'a> {
    nodes: Vec<&'a RawValue>,
    arg_nodes: &'a RawValue,
    heads: &'a RawValue,
    node_row_ptr: Option<&'a RawValue>,
    version: GraphVersion,
}

#[derive(Default)]
struct NodeFields<'a> {
    op: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    inputs: Option<&'a RawValue>,
    attrs: Option<&'a RawValue>,
    attr: Option<&'a RawValue>,
    param: Option<&'a RawValue>,
    control_deps: Option<&'a RawValue>,
    subgraphs: Option<&'a RawValue>,
    backward_source_id: Option<&'a RawValue>,
}

impl GraphReader<'_> {
    fn invalid(at: &Location, key: &str, e: &serde_json::Error) -> SymbolError {
        SymbolError::InvalidValue {
            at: at.clone(),
            key: key.to_owned(),
            message: e.to_string(),
        }
    }

    fn object<'a>(
        at: &Location,
        raw: &'a RawValue,
        keep: usize,
    ) -> Result<RawObject<'a>, SymbolError> {
        if kind_of(raw) != OBJECT {
            return Err(SymbolError::NotAnObject {
                at: at.clone(),
                found: kind_of(raw),
            });
        }
        decode_with(raw, ObjectSeed { keep }).map_err(|e| Self::invalid(at, "", &e))
    }

    fn array<'a>(
        at: &Location,
        key: &str,
        raw: &'a RawValue,
        expected: &'static str,
        keep: usize,
    ) -> Result<RawArray<'a>, SymbolError> {
        if kind_of(raw) != ARRAY {
            return Err(SymbolError::WrongType {
                at: at.clone(),
                key: key.to_owned(),
                expected,
                found: kind_of(raw),
            });
        }
        decode_with(raw, ArraySeed { keep }).map_err(|e| Self::invalid(at, key, &e))
    }

    fn string(
        &self,
        at: &Location,
        key: &str,
        what: &str,
        raw: &RawValue,
    ) -> Result<String, SymbolError> {
        if kind_of(raw) != STRING {
            return Err(SymbolError::WrongType {
                at: at.clone(),
                key: key.to_owned(),
                expected: STRING,
                found: kind_of(raw),
            });
        }
        let value: String =
            serde_json::from_str(raw.get()).map_err(|e| Self::invalid(at, key, &e))?;
        self.check_len(at, what, &value)?;
        Ok(value)
    }

    fn check_len(&self, at: &Location, what: &str, value: &str) -> Result<(), SymbolError> {
        if value.len() > self.limits.max_name_len {
            return Err(SymbolError::TooLong {
                at: at.clone(),
                what: what.to_owned(),
                len: value.len(),
                limit: self.limits.max_name_len,
            });
        }
        Ok(())
    }

    /// Calls `each` on every element of the array `raw`, stopping at its first error.
    fn for_each_element<'a>(
        at: &Location,
        key: &str,
        raw: &'a RawValue,
        expected: &'static str,
        mut each: impl FnMut(usize, &'a RawValue) -> Result<(), SymbolError>,
    ) -> Result<usize, SymbolError> {
        if kind_of(raw) != ARRAY {
            return Err(SymbolError::WrongType {
                at: at.clone(),
                key: key.to_owned(),
                expected,
                found: kind_of(raw),
            });
        }
        let mut failure = None;
        let len = decode_with(
            raw,
            EachElement(|position, item| match each(position, item) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            }),
        )
        .map_err(|e| Self::invalid(at, key, &e))?;
        match failure {
            Some(e) => Err(e),
            None => Ok(len),
        }
    }

    /// An entry list (`inputs`, `heads`).
    fn entries(
        at: &Location,
        key: &'static str,
        raw: &RawValue,
    ) -> Result<Vec<Entry>, SymbolError> {
        let mut entries = Vec::new();
        Self::for_each_element(at, key, raw, "an array of entries", |position, item| {
            let bad = |problem| SymbolError::BadEntry {
                at: at.clone(),
                key,
                position,
                problem,
            };
            if kind_of(item) != ARRAY {
                return Err(bad(EntryProblem::NotAnArray(kind_of(item))));
            }
            let (kept, len) =
                decode_with(item, EntrySeed).map_err(|e| Self::invalid(at, key, &e))?;
            if !(2..=3).contains(&len) {
                return Err(bad(EntryProblem::WrongLength(len)));
            }
            let mut values = [0u64; 3];
            for (element, (slot, value)) in kept.iter().zip(values.iter_mut()).enumerate() {
                if let Some(raw) = slot {
                    *value = raw_index(raw, MAX_ENTRY_VALUE)
                        .map_err(|problem| bad(EntryProblem::BadElement { element, problem }))?;
                }
            }
            entries.push(Entry {
                node: to_usize(values[0]),
                output: to_usize(values[1]),
            });
            Ok(())
        })?;
        Ok(entries)
    }

    /// An array of integers in `0..2^32`, all checked, the first `keep` stored.
    fn indices(
        at: &Location,
        key: &'static str,
        raw: &RawValue,
        keep: usize,
    ) -> Result<Vec<usize>, SymbolError> {
        let mut values = Vec::new();
        Self::for_each_element(at, key, raw, "an array of integers", |position, item| {
            let value =
                raw_index(item, MAX_ENTRY_VALUE).map_err(|problem| SymbolError::BadIndex {
                    at: at.clone(),
                    key,
                    position,
                    problem,
                })?;
            if values.len() < keep {
                values.push(to_usize(value));
            }
            Ok(())
        })?;
        Ok(values)
    }

    /// Reads one graph object. This is the only recursive path (graph, node, subgraph),
    /// so the work with large stack frames is done in non-inlined helpers, and the depth of
    /// the recursion is bounded by `max_json_depth` (each subgraph level nests four JSON
    /// levels: subgraphs, graph, nodes, node).
    fn graph(
        &mut self,
        raw: &RawValue,
        path: &GraphPath,
        inherited: Option<GraphVersion>,
    ) -> Result<Symbol, SymbolError> {
        let header = self.graph_header(raw, path, inherited)?;
        let mut nodes = Vec::with_capacity(header.nodes.len());
        for (index, raw_node) in header.nodes.iter().enumerate() {
            let (mut node, subgraphs) = self.node(raw_node, path, index, header.version)?;
            for (k, raw_graph) in subgraphs.iter().enumerate() {
                let child = path.child(index, &node.name, k);
                node.subgraphs
                    .push(self.graph(raw_graph, &child, Some(header.version))?);
            }
            nodes.push(node);
        }
        self.graph_footer(path, &header, nodes)
    }

    /// The keys of a graph object, its version, and its node list (counted against the
    /// node budget before anything is stored).
    #[inline(never)]
    fn graph_header<'a>(
        &mut self,
        raw: &'a RawValue,
        path: &GraphPath,
        inherited: Option<GraphVersion>,
    ) -> Result<GraphHeader<'a>, SymbolError> {
        let at = Location::Graph(path.clone());
        let object = Self::object(&at, raw, MAX_KEPT_KEYS)?;
        let mut fields = GraphFields::default();
        for (key, value) in &object.members {
            let slot = match key.as_str() {
                "nodes" => &mut fields.nodes,
                "arg_nodes" => &mut fields.arg_nodes,
                "heads" => &mut fields.heads,
                "node_row_ptr" => &mut fields.node_row_ptr,
                "attrs" => &mut fields.attrs,
                _ => {
                    return Err(SymbolError::UnknownKey {
                        at,
                        key: key.clone(),
                        allowed: GRAPH_KEYS,
                    })
                }
            };
            if slot.replace(value).is_some() {
                return Err(SymbolError::DuplicateKey {
                    at,
                    key: key.clone(),
                });
            }
        }
        let missing = |key| SymbolError::MissingKey {
            at: at.clone(),
            key,
        };
        let nodes_raw = fields.nodes.ok_or_else(|| missing("nodes"))?;
        let arg_nodes = fields.arg_nodes.ok_or_else(|| missing("arg_nodes"))?;
        let heads = fields.heads.ok_or_else(|| missing("heads"))?;

        let version = self.graph_attrs(path, fields.attrs, inherited)?;

        // Count the nodes before storing them, so an oversized list costs nothing.
        let keep = self.nodes_left.saturating_add(1);
        let node_list = Self::array(&at, "nodes", nodes_raw, "an array of nodes", keep)?;
        if node_list.len > self.nodes_left {
            return Err(SymbolError::TooManyNodes {
                limit: self.limits.max_nodes,
            });
        }
        self.nodes_left -= node_list.len;
        Ok(GraphHeader {
            nodes: node_list.items,
            arg_nodes,
            heads,
            node_row_ptr: fields.node_row_ptr,
            version,
        })
    }

    /// The checks that need all nodes: names, `arg_nodes`, `heads`, `node_row_ptr`.
    #[inline(never)]
    fn graph_footer(
        &self,
        path: &GraphPath,
        header: &GraphHeader<'_>,
        nodes: Vec<SymbolNode>,
    ) -> Result<Symbol, SymbolError> {
        let at = Location::Graph(path.clone());
        // A variable's name is how parameters and inputs bind to it, so it must be unique.
        // Operators may share names: Gluon names an op after its block, and a block called
        // twice gives two nodes with one name.
        let mut first_with_name: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
        for (index, node) in nodes.iter().enumerate() {
            let first = *first_with_name.entry(&node.name).or_insert(index);
            let first_is_variable = nodes.get(first).is_some_and(|n| n.op == "null");
            if first != index && (node.op == "null" || first_is_variable) {
                return Err(SymbolError::DuplicateName {
                    graph: path.clone(),
                    name: node.name.clone(),
                    first,
                    second: index,
                });
            }
        }

        // Distinct in-range indices: more than `nodes.len()` of them means a repeat or an
        // out-of-range value among the first `nodes.len() + 1`, so no more are stored.
        let arg_nodes = Self::indices(
            &at,
            "arg_nodes",
            header.arg_nodes,
            nodes.len().saturating_add(1),
        )?;
        let mut listed = vec![false; nodes.len()];
        for (position, &target) in arg_nodes.iter().enumerate() {
            let Some(node) = nodes.get(target) else {
                return Err(SymbolError::ArgNodeOutOfRange {
                    graph: path.clone(),
                    position,
                    target,
                    len: nodes.len(),
                });
            };
            if node.op != "null" {
                return Err(SymbolError::ArgNodeNotVariable {
                    graph: path.clone(),
                    position,
                    target,
                    name: node.name.clone(),
                    op: node.source_op.clone(),
                });
            }
            if let Some(seen) = listed.get_mut(target) {
                if std::mem::replace(seen, true) {
                    return Err(SymbolError::DuplicateArgNode {
                        graph: path.clone(),
                        target,
                    });
                }
            }
        }

        let heads = Self::entries(&at, "heads", header.heads)?;
        for (position, head) in heads.iter().enumerate() {
            if head.node >= nodes.len() {
                return Err(SymbolError::HeadOutOfRange {
                    graph: path.clone(),
                    position,
                    target: head.node,
                    len: nodes.len(),
                });
            }
        }

        if let Some(raw) = header.node_row_ptr {
            // Checked for shape, then ignored (see the module documentation).
            Self::indices(&at, "node_row_ptr", raw, 0)?;
        }

        Ok(Symbol {
            nodes,
            arg_nodes,
            heads,
            mxnet_version: header.version.mxnet_version,
            is_np_shape: header.version.is_np_shape,
        })
    }

    /// The graph attributes: `{"mxnet_version": ["int", 10901], "is_np_shape": ["int", 1]}`.
    fn graph_attrs(
        &self,
        path: &GraphPath,
        raw: Option<&RawValue>,
        inherited: Option<GraphVersion>,
    ) -> Result<GraphVersion, SymbolError> {
        let mut version = inherited.unwrap_or(GraphVersion {
            mxnet_version: DEFAULT_MXNET_VERSION,
            is_np_shape: false,
        });
        let Some(raw) = raw else {
            return Ok(version);
        };
        let at = Location::Graph(path.clone());
        if kind_of(raw) != OBJECT {
            return Err(SymbolError::WrongType {
                at,
                key: "attrs".to_owned(),
                expected: "an object of [type, value] pairs",
                found: kind_of(raw),
            });
        }
        let object = decode_with(
            raw,
            ObjectSeed {
                keep: self.limits.max_attrs,
            },
        )
        .map_err(|e| Self::invalid(&at, "attrs", &e))?;
        if object.len > self.limits.max_attrs {
            return Err(SymbolError::TooManyAttrs {
                at,
                field: "attrs",
                count: object.len,
                limit: self.limits.max_attrs,
            });
        }
        let mut seen = BTreeMap::new();
        for (key, value) in &object.members {
            self.check_len(&at, "a graph attribute name", key)?;
            if seen.insert(key.as_str(), ()).is_some() {
                return Err(SymbolError::DuplicateKey {
                    at,
                    key: format!("attrs.{key}"),
                });
            }
            let bad = |problem: String| SymbolError::BadGraphAttr {
                graph: path.clone(),
                key: key.clone(),
                problem,
            };
            let pair = Self::array(&at, key, value, "a [type, value] pair", 3)?;
            let [type_raw, value_raw] = pair.items.as_slice() else {
                return Err(bad(format!(
                    "expected a [type, value] pair, found {} elements",
                    pair.len
                )));
            };
            if kind_of(type_raw) != STRING {
                return Err(bad(format!(
                    "the type must be a string, found {}",
                    kind_of(type_raw)
                )));
            }
            let type_name: String =
                serde_json::from_str(type_raw.get()).map_err(|e| Self::invalid(&at, key, &e))?;
            match type_name.as_str() {
                "int" => {
                    let v = raw_signed(value_raw).map_err(|p| bad(format!("{p}")))?;
                    let Ok(v) = i32::try_from(v) else {
                        return Err(bad("does not fit a C++ int".to_owned()));
                    };
                    match key.as_str() {
                        "mxnet_version" => {
                            version.mxnet_version = u32::try_from(v)
                                .map_err(|_| bad("a version cannot be negative".to_owned()))?;
                        }
                        "is_np_shape" => version.is_np_shape = v != 0,
                        _ => {}
                    }
                }
                "str" => {
                    self.string(&at, key, "a graph attribute value", value_raw)?;
                }
                "list_int" => {
                    Self::for_each_element(
                        &at,
                        key,
                        value_raw,
                        "a list of integers",
                        |_, item| {
                            let v = raw_signed(item).map_err(|p| bad(format!("{p}")))?;
                            i32::try_from(v)
                                .map_err(|_| bad("does not fit a C++ int".to_owned()))?;
                            Ok(())
                        },
                    )?;
                }
                "list_str" => {
                    Self::for_each_element(&at, key, value_raw, "a list of strings", |_, item| {
                        self.string(&at, key, "a graph attribute value", item)
                            .map(drop)
                    })?;
                }
                other => {
                    return Err(bad(format!(
                        "unknown type {other:?} (expected int, str, list_int or list_str)"
                    )))
                }
            }
            if matches!(key.as_str(), "mxnet_version" | "is_np_shape") && type_name != "int" {
                return Err(bad(format!("must have type \"int\", found {type_name:?}")));
            }
        }
        Ok(version)
    }

    /// One node, with its subgraphs returned unread (the caller recurses into them).
    #[inline(never)]
    fn node<'a>(
        &mut self,
        raw: &'a RawValue,
        graph: &GraphPath,
        index: usize,
        version: GraphVersion,
    ) -> Result<(SymbolNode, Vec<&'a RawValue>), SymbolError> {
        let unnamed = Location::Node {
            graph: graph.clone(),
            index,
            name: None,
        };
        let object = Self::object(&unnamed, raw, MAX_KEPT_KEYS)?;

        // The name first, so that every later error can say which node it is about.
        let name_raw = object
            .members
            .iter()
            .find(|(key, _)| key == "name")
            .map(|(_, value)| *value);
        let name = match name_raw {
            Some(raw) if kind_of(raw) == STRING => {
                Some(self.string(&unnamed, "name", "the node name", raw)?)
            }
            _ => None,
        };
        let at = Location::Node {
            graph: graph.clone(),
            index,
            name: name.clone(),
        };

        let mut fields = NodeFields::default();
        for (key, value) in &object.members {
            let slot = match key.as_str() {
                "op" => &mut fields.op,
                "name" => &mut fields.name,
                "inputs" => &mut fields.inputs,
                "attrs" => &mut fields.attrs,
                "attr" => &mut fields.attr,
                "param" => &mut fields.param,
                "control_deps" => &mut fields.control_deps,
                "subgraphs" => &mut fields.subgraphs,
                "backward_source_id" => &mut fields.backward_source_id,
                _ => {
                    return Err(SymbolError::UnknownKey {
                        at,
                        key: key.clone(),
                        allowed: NODE_KEYS,
                    })
                }
            };
            if slot.replace(value).is_some() {
                return Err(SymbolError::DuplicateKey {
                    at,
                    key: key.clone(),
                });
            }
        }
        let missing = |key| SymbolError::MissingKey {
            at: at.clone(),
            key,
        };
        let op_raw = fields.op.ok_or_else(|| missing("op"))?;
        let name_raw = fields.name.ok_or_else(|| missing("name"))?;
        let inputs_raw = fields.inputs.ok_or_else(|| missing("inputs"))?;
        let Some(name) = name else {
            return Err(SymbolError::WrongType {
                at,
                key: "name".to_owned(),
                expected: STRING,
                found: kind_of(name_raw),
            });
        };
        let source_op = self.string(&at, "op", "the op name", op_raw)?;
        let op = canonical_op_name(&source_op).to_owned();

        let inputs = Self::entries(&at, "inputs", inputs_raw)?;
        for (position, input) in inputs.iter().enumerate() {
            check_earlier(&at, "inputs", position, input.node, index)?;
        }

        let mut attrs = match (fields.attrs, fields.attr) {
            (Some(_), Some(_)) => return Err(SymbolError::ConflictingAttrFields { at }),
            (Some(raw), None) => self.attr_map(&at, "attrs", raw)?,
            (None, Some(raw)) => self.attr_map(&at, "attr", raw)?,
            (None, None) => BTreeMap::new(),
        };
        if let Some(raw) = fields.param {
            for (key, value) in self.attr_map(&at, "param", raw)? {
                attrs.entry(key).or_insert(value);
            }
            if attrs.len() > self.limits.max_attrs {
                return Err(SymbolError::TooManyAttrs {
                    at,
                    field: "param",
                    count: attrs.len(),
                    limit: self.limits.max_attrs,
                });
            }
        }
        fix_parsing(&mut attrs);
        if version.mxnet_version < VERSION_ARGMAX_AXIS_OPTIONAL
            && matches!(op.as_str(), "argmax" | "argmin")
            && attrs.get("axis").is_some_and(|axis| axis == "-1")
        {
            attrs.remove("axis");
        }

        if let Some(raw) = fields.control_deps {
            let deps = Self::indices(&at, "control_deps", raw, usize::MAX)?;
            for (position, &dep) in deps.iter().enumerate() {
                check_earlier(&at, "control_deps", position, dep, index)?;
            }
        }
        if let Some(raw) = fields.backward_source_id {
            raw_signed(raw).map_err(|problem| SymbolError::BadInteger {
                at: at.clone(),
                key: "backward_source_id",
                problem,
            })?;
        }

        let subgraphs = match fields.subgraphs {
            Some(raw) => {
                Self::array(&at, "subgraphs", raw, "an array of graphs", usize::MAX)?.items
            }
            None => Vec::new(),
        };

        if op == "null" {
            if !inputs.is_empty() {
                return Err(SymbolError::VariableWithInputs { at, what: "inputs" });
            }
            if !subgraphs.is_empty() {
                return Err(SymbolError::VariableWithInputs {
                    at,
                    what: "subgraphs",
                });
            }
        }

        let node = SymbolNode {
            op,
            source_op,
            name,
            inputs,
            attrs,
            subgraphs: Vec::new(),
        };
        Ok((node, subgraphs))
    }

    /// One of `attrs`, `attr`, `param`: an object of string values, distinct keys.
    fn attr_map(
        &self,
        at: &Location,
        field: &'static str,
        raw: &RawValue,
    ) -> Result<BTreeMap<String, String>, SymbolError> {
        if kind_of(raw) != OBJECT {
            return Err(SymbolError::WrongType {
                at: at.clone(),
                key: field.to_owned(),
                expected: "an object of string values",
                found: kind_of(raw),
            });
        }
        let limit = self.limits.max_attrs;
        let object = decode_with(raw, ObjectSeed { keep: limit })
            .map_err(|e| Self::invalid(at, field, &e))?;
        if object.len > limit {
            return Err(SymbolError::TooManyAttrs {
                at: at.clone(),
                field,
                count: object.len,
                limit,
            });
        }
        let mut map = BTreeMap::new();
        for (key, value) in object.members {
            self.check_len(at, &format!("the key of attribute {key:?}"), &key)?;
            if kind_of(value) != STRING {
                return Err(SymbolError::AttrNotString {
                    at: at.clone(),
                    field,
                    key,
                    found: kind_of(value),
                });
            }
            let what = format!("the value of attribute {key:?}");
            let decoded: String =
                serde_json::from_str(value.get()).map_err(|e| Self::invalid(at, &key, &e))?;
            self.check_len(at, &what, &decoded)?;
            match map.entry(key) {
                std::collections::btree_map::Entry::Occupied(entry) => {
                    return Err(SymbolError::DuplicateAttr {
                        at: at.clone(),
                        field,
                        key: entry.key().clone(),
                    })
                }
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(decoded);
                }
            }
        }
        Ok(map)
    }
}

/// Inputs and control dependencies must refer to an earlier node.
fn check_earlier(
    at: &Location,
    key: &'static str,
    position: usize,
    target: usize,
    own: usize,
) -> Result<(), SymbolError> {
    if target < own {
        Ok(())
    } else if target == own {
        Err(SymbolError::SelfReference {
            at: at.clone(),
            key,
            position,
        })
    } else {
        Err(SymbolError::ForwardReference {
            at: at.clone(),
            key,
            position,
            target,
        })
    }
}

/// MXNet's `UpgradeJSON_FixParsing` for the keys it can handle without op knowledge:
/// a bare `lr_mult` becomes `__lr_mult__`, replacing any value already there.
fn fix_parsing(attrs: &mut BTreeMap<String, String>) {
    for key in FIX_PARSING_HIDDEN_KEYS {
        if let Some(value) = attrs.remove(key) {
            attrs.insert(format!("__{key}__"), value);
        }
    }
}

/// MXNet 1.9.1's operator aliases and the canonical name each resolves to, sorted by
/// alias (byte order) for binary search. Generated from the registry; see
/// [`canonical_op_name`].
static OP_ALIASES: &[(&str, &str)] = &[
    ("ElementWiseSum", "add_n"),
    ("Softmax", "SoftmaxOutput"),
    ("_Div", "elemwise_div"),
    ("_DivScalar", "_div_scalar"),
    ("_Equal", "_equal"),
    ("_EqualScalar", "_equal_scalar"),
    ("_Greater", "_greater"),
    ("_GreaterEqualScalar", "_greater_equal_scalar"),
    ("_GreaterScalar", "_greater_scalar"),
    ("_Greater_Equal", "_greater_equal"),
    ("_Hypot", "_hypot"),
    ("_HypotScalar", "_hypot_scalar"),
    ("_Lesser", "_lesser"),
    ("_LesserEqualScalar", "_lesser_equal_scalar"),
    ("_LesserScalar", "_lesser_scalar"),
    ("_Lesser_Equal", "_lesser_equal"),
    ("_LogicalAndScalar", "_logical_and_scalar"),
    ("_LogicalOrScalar", "_logical_or_scalar"),
    ("_LogicalXorScalar", "_logical_xor_scalar"),
    ("_Logical_And", "_logical_and"),
    ("_Logical_Or", "_logical_or"),
    ("_Logical_Xor", "_logical_xor"),
    ("_Maximum", "_maximum"),
    ("_MaximumScalar", "_maximum_scalar"),
    ("_Minimum", "_minimum"),
    ("_MinimumScalar", "_minimum_scalar"),
    ("_Minus", "elemwise_sub"),
    ("_MinusScalar", "_minus_scalar"),
    ("_Mod", "_mod"),
    ("_ModScalar", "_mod_scalar"),
    ("_Mul", "elemwise_mul"),
    ("_MulScalar", "_mul_scalar"),
    ("_NotEqualScalar", "_not_equal_scalar"),
    ("_Not_Equal", "_not_equal"),
    ("_Plus", "elemwise_add"),
    ("_PlusScalar", "_plus_scalar"),
    ("_Power", "_power"),
    ("_PowerScalar", "_power_scalar"),
    ("_RDivScalar", "_rdiv_scalar"),
    ("_RMinusScalar", "_rminus_scalar"),
    ("_RModScalar", "_rmod_scalar"),
    ("_RPowerScalar", "_rpower_scalar"),
    ("_add", "elemwise_add"),
    ("_contrib_CTCLoss", "CTCLoss"),
    ("_contrib_box_non_maximum_suppression", "_contrib_box_nms"),
    ("_contrib_ctc_loss", "CTCLoss"),
    ("_crop_assign", "_slice_assign"),
    ("_crop_assign_scalar", "_slice_assign_scalar"),
    ("_div", "elemwise_div"),
    ("_minus", "elemwise_sub"),
    ("_mul", "elemwise_mul"),
    ("_np_amax", "_np_max"),
    ("_np_amin", "_np_min"),
    ("_np_product", "_np_prod"),
    ("_np_repeat", "repeat"),
    ("_np_sometrue", "_np_any"),
    ("_npi_Custom", "Custom"),
    ("_npi_abs", "_npi_absolute"),
    ("_npi_argsort", "argsort"),
    ("_npi_boolean_mask", "_contrib_boolean_mask"),
    ("_npi_cast", "Cast"),
    ("_npi_clip", "clip"),
    ("_npi_copyto", "_copyto"),
    ("_npi_cvimdecode", "_cvimdecode"),
    ("_npi_cvimread", "_cvimread"),
    ("_npi_cvimresize", "_cvimresize"),
    ("_npi_det", "_linalg_det"),
    ("_npi_expand_dims", "expand_dims"),
    ("_npi_full", "_full"),
    ("_npi_gather_nd", "gather_nd"),
    ("_npi_histogram", "_histogram"),
    ("_npi_hypot_scalar", "_hypot_scalar"),
    ("_npi_inv", "_linalg_inverse"),
    ("_npi_linspace", "_linspace"),
    ("_npi_maximum", "broadcast_maximum"),
    ("_npi_maximum_scalar", "_maximum_scalar"),
    ("_npi_minimum", "broadcast_minimum"),
    ("_npi_minimum_scalar", "_minimum_scalar"),
    ("_npi_nonzero", "_npx_nonzero"),
    ("_npi_random_randint", "_random_randint"),
    ("_npi_reshape", "_npx_reshape"),
    ("_npi_rnn_param_concat", "_rnn_param_concat"),
    ("_npi_scatter_set_nd", "_scatter_set_nd"),
    ("_npi_shuffle", "_shuffle"),
    ("_npi_slice", "slice"),
    ("_npi_slice_assign", "_slice_assign"),
    ("_npi_slice_assign_scalar", "_slice_assign_scalar"),
    ("_npi_slogdet", "_linalg_slogdet"),
    ("_npi_sort", "sort"),
    ("_npi_split", "_split_v2"),
    ("_npi_swapaxes", "SwapAxis"),
    ("_npi_take", "take"),
    ("_npi_tile", "tile"),
    ("_npx__image_adjust_lighting", "_image_adjust_lighting"),
    ("_npx__image_crop", "_image_crop"),
    ("_npx__image_flip_left_right", "_image_flip_left_right"),
    ("_npx__image_flip_top_bottom", "_image_flip_top_bottom"),
    ("_npx__image_normalize", "_image_normalize"),
    ("_npx__image_random_brightness", "_image_random_brightness"),
    (
        "_npx__image_random_color_jitter",
        "_image_random_color_jitter",
    ),
    ("_npx__image_random_contrast", "_image_random_contrast"),
    (
        "_npx__image_random_flip_left_right",
        "_image_random_flip_left_right",
    ),
    (
        "_npx__image_random_flip_top_bottom",
        "_image_random_flip_top_bottom",
    ),
    ("_npx__image_random_hue", "_image_random_hue"),
    ("_npx__image_random_lighting", "_image_random_lighting"),
    ("_npx__image_random_saturation", "_image_random_saturation"),
    ("_npx__image_resize", "_image_resize"),
    ("_npx__image_to_tensor", "_image_to_tensor"),
    ("_npx_activation", "Activation"),
    ("_npx_arange_like", "_contrib_arange_like"),
    ("_npx_batch_dot", "batch_dot"),
    ("_npx_batch_flatten", "Flatten"),
    ("_npx_batch_norm", "BatchNorm"),
    ("_npx_cast", "Cast"),
    ("_npx_convolution", "Convolution"),
    ("_npx_deconvolution", "Deconvolution"),
    ("_npx_dropout", "Dropout"),
    ("_npx_embedding", "Embedding"),
    ("_npx_erf", "erf"),
    ("_npx_erfinv", "erfinv"),
    ("_npx_fully_connected", "FullyConnected"),
    ("_npx_gamma", "gamma"),
    ("_npx_gammaln", "gammaln"),
    ("_npx_gather_nd", "gather_nd"),
    ("_npx_layer_norm", "LayerNorm"),
    ("_npx_leaky_relu", "LeakyReLU"),
    ("_npx_log_softmax", "log_softmax"),
    ("_npx_multibox_detection", "_contrib_MultiBoxDetection"),
    ("_npx_multibox_prior", "_contrib_MultiBoxPrior"),
    ("_npx_multibox_target", "_contrib_MultiBoxTarget"),
    ("_npx_one_hot", "one_hot"),
    ("_npx_pick", "pick"),
    ("_npx_pooling", "Pooling"),
    ("_npx_reshape_like", "reshape_like"),
    ("_npx_rnn", "RNN"),
    ("_npx_roi_pooling", "ROIPooling"),
    ("_npx_sequence_mask", "SequenceMask"),
    ("_npx_shape_array", "shape_array"),
    ("_npx_slice", "slice"),
    ("_npx_smooth_l1", "smooth_l1"),
    ("_npx_softmax", "softmax"),
    ("_npx_topk", "topk"),
    ("_plus", "elemwise_add"),
    ("_sparse_ElementWiseSum", "add_n"),
    ("_sparse_Embedding", "Embedding"),
    ("_sparse_FullyConnected", "FullyConnected"),
    ("_sparse_LinearRegressionOutput", "LinearRegressionOutput"),
    (
        "_sparse_LogisticRegressionOutput",
        "LogisticRegressionOutput",
    ),
    ("_sparse_MAERegressionOutput", "MAERegressionOutput"),
    ("_sparse__contrib_round_ste", "_contrib_round_ste"),
    ("_sparse__contrib_sign_ste", "_contrib_sign_ste"),
    ("_sparse_abs", "abs"),
    ("_sparse_adam_update", "adam_update"),
    ("_sparse_add_n", "add_n"),
    ("_sparse_arccos", "arccos"),
    ("_sparse_arccosh", "arccosh"),
    ("_sparse_arcsin", "arcsin"),
    ("_sparse_arcsinh", "arcsinh"),
    ("_sparse_arctan", "arctan"),
    ("_sparse_arctanh", "arctanh"),
    ("_sparse_broadcast_add", "broadcast_add"),
    ("_sparse_broadcast_div", "broadcast_div"),
    ("_sparse_broadcast_minus", "broadcast_sub"),
    ("_sparse_broadcast_mul", "broadcast_mul"),
    ("_sparse_broadcast_plus", "broadcast_add"),
    ("_sparse_broadcast_sub", "broadcast_sub"),
    ("_sparse_cast_storage", "cast_storage"),
    ("_sparse_cbrt", "cbrt"),
    ("_sparse_ceil", "ceil"),
    ("_sparse_clip", "clip"),
    ("_sparse_concat", "Concat"),
    ("_sparse_cos", "cos"),
    ("_sparse_cosh", "cosh"),
    ("_sparse_degrees", "degrees"),
    ("_sparse_dot", "dot"),
    ("_sparse_elemwise_add", "elemwise_add"),
    ("_sparse_elemwise_div", "elemwise_div"),
    ("_sparse_elemwise_mul", "elemwise_mul"),
    ("_sparse_elemwise_sub", "elemwise_sub"),
    ("_sparse_exp", "exp"),
    ("_sparse_expm1", "expm1"),
    ("_sparse_fix", "fix"),
    ("_sparse_floor", "floor"),
    ("_sparse_ftrl_update", "ftrl_update"),
    ("_sparse_gamma", "gamma"),
    ("_sparse_gammaln", "gammaln"),
    ("_sparse_log", "log"),
    ("_sparse_log10", "log10"),
    ("_sparse_log1p", "log1p"),
    ("_sparse_log2", "log2"),
    ("_sparse_make_loss", "make_loss"),
    ("_sparse_mean", "mean"),
    ("_sparse_negative", "negative"),
    ("_sparse_norm", "norm"),
    ("_sparse_radians", "radians"),
    ("_sparse_relu", "relu"),
    ("_sparse_rint", "rint"),
    ("_sparse_round", "round"),
    ("_sparse_rsqrt", "rsqrt"),
    ("_sparse_sgd_mom_update", "sgd_mom_update"),
    ("_sparse_sgd_update", "sgd_update"),
    ("_sparse_sigmoid", "sigmoid"),
    ("_sparse_sign", "sign"),
    ("_sparse_sin", "sin"),
    ("_sparse_sinh", "sinh"),
    ("_sparse_slice", "slice"),
    ("_sparse_sqrt", "sqrt"),
    ("_sparse_square", "square"),
    ("_sparse_stop_gradient", "BlockGrad"),
    ("_sparse_sum", "sum"),
    ("_sparse_tan", "tan"),
    ("_sparse_tanh", "tanh"),
    ("_sparse_trunc", "trunc"),
    ("_sparse_where", "where"),
    ("_sparse_zeros_like", "zeros_like"),
    ("_sub", "elemwise_sub"),
    ("broadcast_axes", "broadcast_axis"),
    ("broadcast_minus", "broadcast_sub"),
    ("broadcast_plus", "broadcast_add"),
    ("cast", "Cast"),
    ("choose_element_0index", "pick"),
    ("concat", "Concat"),
    ("crop", "slice"),
    ("ctc_loss", "CTCLoss"),
    ("cumsum", "_np_cumsum"),
    ("flatten", "Flatten"),
    ("flip", "reverse"),
    ("identity", "_copy"),
    ("linalg_det", "_linalg_det"),
    ("linalg_extractdiag", "_linalg_extractdiag"),
    ("linalg_extracttrian", "_linalg_extracttrian"),
    ("linalg_gelqf", "_linalg_gelqf"),
    ("linalg_gemm", "_linalg_gemm"),
    ("linalg_gemm2", "_linalg_gemm2"),
    ("linalg_inverse", "_linalg_inverse"),
    ("linalg_makediag", "_linalg_makediag"),
    ("linalg_maketrian", "_linalg_maketrian"),
    ("linalg_potrf", "_linalg_potrf"),
    ("linalg_potri", "_linalg_potri"),
    ("linalg_slogdet", "_linalg_slogdet"),
    ("linalg_sumlogdiag", "_linalg_sumlogdiag"),
    ("linalg_syrk", "_linalg_syrk"),
    ("linalg_trmm", "_linalg_trmm"),
    ("linalg_trsm", "_linalg_trsm"),
    ("max_axis", "max"),
    ("min_axis", "min"),
    ("normal", "_random_normal"),
    ("pad", "Pad"),
    ("random_exponential", "_random_exponential"),
    ("random_gamma", "_random_gamma"),
    (
        "random_generalized_negative_binomial",
        "_random_generalized_negative_binomial",
    ),
    ("random_negative_binomial", "_random_negative_binomial"),
    ("random_normal", "_random_normal"),
    ("random_pdf_dirichlet", "_random_pdf_dirichlet"),
    ("random_pdf_exponential", "_random_pdf_exponential"),
    ("random_pdf_gamma", "_random_pdf_gamma"),
    (
        "random_pdf_generalized_negative_binomial",
        "_random_pdf_generalized_negative_binomial",
    ),
    (
        "random_pdf_negative_binomial",
        "_random_pdf_negative_binomial",
    ),
    ("random_pdf_normal", "_random_pdf_normal"),
    ("random_pdf_poisson", "_random_pdf_poisson"),
    ("random_pdf_uniform", "_random_pdf_uniform"),
    ("random_poisson", "_random_poisson"),
    ("random_randint", "_random_randint"),
    ("random_uniform", "_random_uniform"),
    ("ravel_multi_index", "_ravel_multi_index"),
    ("reshape", "Reshape"),
    ("sample_exponential", "_sample_exponential"),
    ("sample_gamma", "_sample_gamma"),
    (
        "sample_generalized_negative_binomial",
        "_sample_generalized_negative_binomial",
    ),
    ("sample_multinomial", "_sample_multinomial"),
    ("sample_negative_binomial", "_sample_negative_binomial"),
    ("sample_normal", "_sample_normal"),
    ("sample_poisson", "_sample_poisson"),
    ("sample_uniform", "_sample_uniform"),
    ("shuffle", "_shuffle"),
    ("split", "SliceChannel"),
    ("stop_gradient", "BlockGrad"),
    ("sum_axis", "sum"),
    ("swapaxes", "SwapAxis"),
    ("uniform", "_random_uniform"),
    ("unravel_index", "_unravel_index"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_table_is_sorted_and_resolves_in_one_step() {
        for pair in OP_ALIASES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?} before {:?}", pair[0], pair[1]);
        }
        for (alias, canonical) in OP_ALIASES {
            assert_ne!(alias, canonical);
            assert_eq!(
                canonical_op_name(canonical),
                *canonical,
                "{alias} -> {canonical}"
            );
        }
    }

    #[test]
    fn aliases_named_in_the_format_reference() {
        for (alias, canonical) in [
            ("_Plus", "elemwise_add"),
            ("_plus", "elemwise_add"),
            ("_add", "elemwise_add"),
            ("_Mul", "elemwise_mul"),
            ("_mul", "elemwise_mul"),
            ("_Minus", "elemwise_sub"),
            ("_sub", "elemwise_sub"),
            ("_Div", "elemwise_div"),
            ("_div", "elemwise_div"),
            ("ElementWiseSum", "add_n"),
            ("split", "SliceChannel"),
            ("swapaxes", "SwapAxis"),
            ("Softmax", "SoftmaxOutput"),
            ("flatten", "Flatten"),
            ("reshape", "Reshape"),
            ("concat", "Concat"),
            ("pad", "Pad"),
            ("_MulScalar", "_mul_scalar"),
            ("_PlusScalar", "_plus_scalar"),
            ("_MinusScalar", "_minus_scalar"),
            ("_DivScalar", "_div_scalar"),
            ("_npx_convolution", "Convolution"),
            ("_npi_swapaxes", "SwapAxis"),
            ("_npx_fully_connected", "FullyConnected"),
            ("_npx_batch_norm", "BatchNorm"),
            ("_npx_activation", "Activation"),
            ("_npx_pooling", "Pooling"),
            ("_npi_reshape", "_npx_reshape"),
        ] {
            assert_eq!(canonical_op_name(alias), canonical, "{alias}");
        }
        for name in [
            "null",
            "Convolution",
            "_npx_reshape",
            "_sg_mkldnn_conv",
            "_sg_mkldnn_fully_connected",
            "",
            "no_such_op",
        ] {
            assert_eq!(canonical_op_name(name), name);
        }
    }

    #[test]
    fn nesting_prescan_ignores_brackets_in_strings() {
        assert_eq!(check_nesting("[[[]]]", 3), Ok(()));
        assert_eq!(
            check_nesting("[[[[]]]]", 3),
            Err(SymbolError::TooDeep {
                limit: 3,
                offset: 3
            })
        );
        assert_eq!(check_nesting(r#"["[[[[", "\"[[[[", "\\"]"#, 1), Ok(()));
        assert_eq!(check_nesting(r#"{"a": {"b": "}}}{{{"}}"#, 2), Ok(()));
        // Unbalanced closers do not underflow; serde reports the syntax error later.
        assert_eq!(check_nesting("]]]][", 1), Ok(()));
    }
}
