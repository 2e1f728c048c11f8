//! Graphs saved after MXNet's oneDNN subgraph pass (`optimize_for(..., backend="MKLDNN")`).
//!
//! The pass replaces runs of operators with one fused node (`_sg_mkldnn_conv` for
//! convolution + BatchNorm + activation + sum, `_sg_mkldnn_fully_connected` for a dense
//! layer + activation, `_sg_mkldnn_selfatt_qk`/`_valatt` for BERT's attention products)
//! and keeps the operators it fused as the node's subgraph, whose variables stand, in
//! order, for the node's inputs. MXNet computes the fused node from that subgraph (it
//! reads the convolution's, BatchNorm's and activation's attributes from it), so ward
//! imports the file by putting each subgraph back in its node's place: the same graph the
//! model had before the pass, whose semantics ward already has, with no second
//! implementation of each fused kernel to drift from it.
//!
//! Every attribute MXNet 1.9.1 declares on these ops is read: the fusion flags must
//! describe the subgraph (a `with_bn` conv without a BatchNorm in it is refused, not
//! guessed at), and quantized nodes (int8 with calibrated ranges, written by
//! `quantize_net`) are refused by name, as are the quantize and quantized operators
//! around them: ward runs float graphs.

use std::borrow::Cow;

use super::ImportError;
use crate::attrs::{parse_int, AttrReader};
use crate::symbol::{Entry, Symbol, SymbolNode};

/// MXNet 1.9.1's fused operators (every `_sg_*` op it registers).
const CONV: &str = "_sg_mkldnn_conv";
const FULLY_CONNECTED: &str = "_sg_mkldnn_fully_connected";
const SELFATT_QK: &str = "_sg_mkldnn_selfatt_qk";
const SELFATT_VALATT: &str = "_sg_mkldnn_selfatt_valatt";

/// Operators a fused conv or dense layer may apply after the product: the activations
/// the oneDNN pass fuses (`Activation`, `LeakyReLU`, the standalone `relu`/`sigmoid`,
/// `clip` as ReLU6, `square`/`sqrt`/`exp`/`abs` as element-wise post-ops).
const POST_OPS: [&str; 10] = [
    "Activation",
    "LeakyReLU",
    "relu",
    "sigmoid",
    "clip",
    "square",
    "sqrt",
    "exp",
    "abs",
    "_contrib_gelu",
];

/// Where an original node's outputs are after the expansion.
#[derive(Debug, Clone, Copy)]
enum Moved {
    /// Kept as node `usize`, outputs unchanged.
    Node(usize),
    /// A fused node (or a subgraph's variable): its one output is this entry.
    Output(Entry),
}

impl Moved {
    fn entry(self, output: usize) -> Option<Entry> {
        match self {
            Moved::Node(node) => Some(Entry { node, output }),
            Moved::Output(entry) => (output == 0).then_some(entry),
        }
    }
}

/// `symbol` with every fused node replaced by the operators of its subgraph; borrowed
/// unchanged when it has none.
pub(crate) fn expand_fused(symbol: &Symbol) -> Result<Cow<'_, Symbol>, ImportError> {
    refuse_quantized_ops(symbol)?;
    if !symbol.nodes.iter().any(|n| is_fused(&n.op)) {
        return Ok(Cow::Borrowed(symbol));
    }
    let mut out = Symbol {
        nodes: Vec::with_capacity(symbol.nodes.len()),
        arg_nodes: Vec::new(),
        heads: Vec::new(),
        mxnet_version: symbol.mxnet_version,
        is_np_shape: symbol.is_np_shape,
    };
    let mut moved: Vec<Moved> = Vec::with_capacity(symbol.nodes.len());
    for (index, node) in symbol.nodes.iter().enumerate() {
        let inputs = node
            .inputs
            .iter()
            .map(|e| relocated(&moved, *e, &node.name, &node.source_op))
            .collect::<Result<Vec<_>, _>>()?;
        if is_fused(&node.op) {
            let subgraph = check_fused(node)?;
            let expanded = expand_fused(subgraph)?;
            moved.push(Moved::Output(inline(&mut out, node, &expanded, &inputs)?));
        } else {
            if symbol.arg_nodes.contains(&index) {
                out.arg_nodes.push(out.nodes.len());
            }
            moved.push(Moved::Node(out.nodes.len()));
            out.nodes.push(SymbolNode {
                inputs,
                ..node.clone()
            });
        }
    }
    out.heads = symbol
        .heads
        .iter()
        .map(|h| relocated(&moved, *h, "graph output", "graph output"))
        .collect::<Result<_, _>>()?;
    Ok(Cow::Owned(out))
}

fn is_fused(op: &str) -> bool {
    matches!(op, CONV | FULLY_CONNECTED | SELFATT_QK | SELFATT_VALATT)
}

/// Where `entry`, read by node `reader`, is after the expansion.
fn relocated(moved: &[Moved], entry: Entry, reader: &str, op: &str) -> Result<Entry, ImportError> {
    moved
        .get(entry.node)
        .and_then(|m| m.entry(entry.output))
        .ok_or_else(|| ImportError::Node {
            node: reader.to_owned(),
            op: op.to_owned(),
            reason: format!(
                "reads output {} of node {}, which does not exist (a fused node has one output)",
                entry.output, entry.node
            ),
        })
}

/// Appends the operators of `subgraph` (already expanded) to `out`, its variables bound
/// in order to `inputs`, and returns where its output now is. The node computing that
/// output takes the fused node's name, so the graph's outputs keep the names MXNet's
/// `list_outputs()` gives the saved symbol.
fn inline(
    out: &mut Symbol,
    fused: &SymbolNode,
    subgraph: &Symbol,
    inputs: &[Entry],
) -> Result<Entry, ImportError> {
    let err = |reason: String| ImportError::Node {
        node: fused.name.clone(),
        op: fused.source_op.clone(),
        reason,
    };
    let [head] = subgraph.heads.as_slice() else {
        return Err(err(format!(
            "its subgraph has {} outputs; a fused node computes one",
            subgraph.heads.len()
        )));
    };
    if subgraph.arg_nodes.len() != inputs.len() {
        return Err(err(format!(
            "has {} inputs but its subgraph has {} variables",
            inputs.len(),
            subgraph.arg_nodes.len()
        )));
    }
    // The subgraph's variables stand for the node's inputs, in the order listed.
    let mut moved: Vec<Option<Moved>> = vec![None; subgraph.nodes.len()];
    for (var, input) in subgraph.arg_nodes.iter().zip(inputs) {
        if let Some(slot) = moved.get_mut(*var) {
            *slot = Some(Moved::Output(*input));
        }
    }
    let locate = |moved: &[Option<Moved>], e: Entry| {
        moved
            .get(e.node)
            .copied()
            .flatten()
            .and_then(|m| m.entry(e.output))
            .ok_or_else(|| {
                err(format!(
                    "its subgraph reads output {} of node {}, which is not an operator before it or a listed variable",
                    e.output, e.node
                ))
            })
    };
    for (index, node) in subgraph.nodes.iter().enumerate() {
        if node.op == "null" {
            continue;
        }
        let inputs = node
            .inputs
            .iter()
            .map(|e| locate(&moved, *e))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(slot) = moved.get_mut(index) {
            *slot = Some(Moved::Node(out.nodes.len()));
        }
        let name = if index == head.node {
            fused.name.clone()
        } else {
            node.name.clone()
        };
        out.nodes.push(SymbolNode {
            name,
            inputs,
            ..node.clone()
        });
    }
    locate(&moved, *head)
}

/// Reads every attribute of fused node `node` and checks that its flags describe its
/// subgraph; returns the subgraph.
fn check_fused(node: &SymbolNode) -> Result<&Symbol, ImportError> {
    let err = |reason: String| ImportError::Node {
        node: node.name.clone(),
        op: node.source_op.clone(),
        reason,
    };
    let [subgraph] = node.subgraphs.as_slice() else {
        return Err(err(format!(
            "has {} subgraphs; a fused node holds the one it computes",
            node.subgraphs.len()
        )));
    };
    let mut a = AttrReader::new(&node.name, &node.source_op, &node.attrs);
    refuse_quantization(&mut a, node)?;
    let ops: Vec<&str> = subgraph
        .nodes
        .iter()
        .filter(|n| n.op != "null")
        .map(|n| n.op.as_str())
        .collect();
    let count = |names: &[&str]| ops.iter().filter(|op| names.contains(op)).count();
    let expect = |what: &str, names: &[&str], flag: bool| -> Result<(), ImportError> {
        let found = count(names);
        if found == usize::from(flag) {
            Ok(())
        } else {
            Err(err(format!(
                "says {what} = {flag} but its subgraph has {found} such operators"
            )))
        }
    };
    match node.op.as_str() {
        CONV => {
            let with_bn = a.bool("with_bn", false)?;
            let with_act = a.bool("with_act", false)?;
            let with_sum = a.bool("with_sum", false)?;
            let with_postsum_act = a.bool("with_postsum_act", false)?;
            a.finish()?;
            expect("a convolution", &["Convolution"], true)?;
            expect("with_bn", &["BatchNorm"], with_bn)?;
            expect("with_sum", &["elemwise_add"], with_sum)?;
            let acts = count(&POST_OPS);
            let declared = usize::from(with_act) + usize::from(with_postsum_act);
            if acts != declared || ops.len() != 1 + acts + count(&["BatchNorm", "elemwise_add"]) {
                return Err(err(format!(
                    "says with_act = {with_act}, with_postsum_act = {with_postsum_act}, but its subgraph holds {ops:?}"
                )));
            }
        }
        FULLY_CONNECTED => {
            let with_eltwise = a.bool("with_eltwise", false)?;
            a.finish()?;
            expect("a dense layer", &["FullyConnected"], true)?;
            expect("with_eltwise", &POST_OPS, with_eltwise)?;
            if ops.len() != 1 + usize::from(with_eltwise) {
                return Err(err(format!(
                    "says with_eltwise = {with_eltwise}, but its subgraph holds {ops:?}"
                )));
            }
        }
        _ => {
            let heads = a.req_int("heads")?;
            a.finish()?;
            let inner = if node.op == SELFATT_QK {
                "_contrib_interleaved_matmul_selfatt_qk"
            } else {
                "_contrib_interleaved_matmul_selfatt_valatt"
            };
            let [op] = ops.as_slice() else {
                return Err(err(format!("its subgraph holds {ops:?}, not one {inner}")));
            };
            let inner_heads = subgraph
                .nodes
                .iter()
                .find(|n| n.op == inner)
                .and_then(|n| n.attrs.get("heads"))
                .and_then(|h| parse_int(h).ok());
            if *op != inner || inner_heads != Some(heads) {
                return Err(err(format!(
                    "says heads = {heads} but its subgraph holds {ops:?} with heads {inner_heads:?}"
                )));
            }
        }
    }
    Ok(subgraph)
}

/// Refuses the attributes of a quantized fused node and reads those that mean nothing in
/// a float one.
fn refuse_quantization(a: &mut AttrReader<'_>, node: &SymbolNode) -> Result<(), ImportError> {
    let unsupported = |attr: &'static str, value: String| ImportError::Unsupported {
        node: node.name.clone(),
        op: node.source_op.clone(),
        attr,
        value,
        only: " (ward runs float graphs: import the model as exported before quantize_net)",
    };
    if a.bool("quantized", false)? {
        return Err(unsupported("quantized", "true".into()));
    }
    for attr in ["min_calib_range", "max_calib_range"] {
        if let Some(v) = a.opt_float(attr)? {
            return Err(unsupported(attr, v.to_string()));
        }
    }
    // Settings of the quantized kernel only; MXNet's float path does not read them.
    if node.op != CONV {
        a.bool("enable_float_output", false)?;
    }
    if node.op == FULLY_CONNECTED {
        a.opt_bool("channel_wise_quantize")?;
    }
    Ok(())
}

/// Refuses the operators `quantize_net` puts into a graph, naming the first.
fn refuse_quantized_ops(symbol: &Symbol) -> Result<(), ImportError> {
    let quantized = symbol.nodes.iter().find(|n| {
        [
            "_contrib_quantize",
            "_contrib_dequantize",
            "_contrib_requantize",
        ]
        .iter()
        .any(|prefix| n.op.starts_with(prefix))
    });
    match quantized {
        Some(node) => Err(ImportError::Node {
            node: node.name.clone(),
            op: node.source_op.clone(),
            reason: "is an int8 quantization operator: ward runs float graphs; import the model as exported before quantize_net".into(),
        }),
        None => Ok(()),
    }
}
