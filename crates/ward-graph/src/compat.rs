//! MXNet's encodings, resolved into the IR's neutral terms, and the reader of graph IR
//! version 1, which still carried two of them.
//!
//! - Reshape codes (0 copy, −1 infer, −2 copy the rest, −3 merge two, −4 split one, and
//!   `reverse`) become [`ReshapeDim`]s for a known input rank: [`mxnet_reshape_dims`].
//! - The RNN's packed parameter vector (every layer's and direction's weights, then every
//!   bias) becomes one parameter per matrix and bias: [`unpack_rnn_params`], from a packed
//!   parameter (split here) or from the concatenation of reshaped parameters that Gluon
//!   exports compute in-graph (its inputs taken as they are).
//!
//! The MXNet importer and [`upgrade_v1`] both call these, so a package imported today and
//! one written by an older ward describe the same graph.

#![warn(clippy::indexing_slicing)]

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use ward_core::Tensor;

use crate::error::GraphError;
use crate::ir::{Graph, GraphInput, GraphOutput, Node, ParamDecl, ParamRole, Source};
use crate::ops::rnn::Rnn;
use crate::ops::shape::{Concat, Reshape, ReshapeDim};
use crate::ops::{product, Op, Shape, R};

/// MXNet `Reshape` codes for an input of rank `rank`, as neutral dims, following MXNet
/// 1.9.1's `InferReshapeShape` (with `reverse`, the input's dims and the codes are both
/// reversed, read left to right, and the result reversed back). The second value lists
/// `(axis, size)` pairs the input must have for the codes to be valid (a `−4` split into
/// two given sizes).
pub fn mxnet_reshape_dims(
    rank: usize,
    codes: &[i64],
    reverse: bool,
) -> R<(Vec<ReshapeDim>, Vec<[usize; 2]>)> {
    let mut axes: Vec<usize> = (0..rank).collect();
    let mut codes: Vec<i64> = codes.to_vec();
    if reverse {
        axes.reverse();
        codes.reverse();
    }
    let mut out: Vec<ReshapeDim> = Vec::new();
    let mut requires = Vec::new();
    let mut src = 0usize;
    let mut inferred = false;
    let take = |src: &mut usize, what: &str| -> R<usize> {
        let axis = axes.get(*src).copied().ok_or_else(|| {
            format!(
                "code {what} needs input dim {}, but the input has rank {rank}",
                *src
            )
        })?;
        *src += 1;
        Ok(axis)
    };
    let mut i = 0;
    while let Some(&code) = codes.get(i) {
        match code {
            0 => out.push(ReshapeDim::Copy(take(&mut src, "0")?)),
            -1 => {
                if inferred {
                    return Err("reshape has more than one -1".into());
                }
                inferred = true;
                out.push(ReshapeDim::Infer);
                src += 1;
            }
            -2 => {
                while let Some(&axis) = axes.get(src) {
                    out.push(ReshapeDim::Copy(axis));
                    src += 1;
                }
            }
            -3 => {
                let a = take(&mut src, "-3")?;
                let b = take(&mut src, "-3")?;
                // Reversed, the two dims come in descending order: the same pair.
                out.push(ReshapeDim::Product(a.min(b), a.max(b) + 1));
            }
            -4 => {
                let axis = take(&mut src, "-4")?;
                let (Some(&c1), Some(&c2)) = (codes.get(i + 1), codes.get(i + 2)) else {
                    return Err("code -4 must be followed by two values".into());
                };
                i += 2;
                let size = |c: i64| usize::try_from(c).ok().filter(|&c| c > 0);
                let parts = match (c1, c2) {
                    (-1, -1) => return Err("code -4 cannot split into -1 and -1".into()),
                    (-1, b) => {
                        let b = size(b).ok_or(format!("code -4 has invalid split (-1, {b})"))?;
                        [ReshapeDim::Quotient(axis, b), ReshapeDim::Fixed(b)]
                    }
                    (a, -1) => {
                        let a = size(a).ok_or(format!("code -4 has invalid split ({a}, -1)"))?;
                        [ReshapeDim::Fixed(a), ReshapeDim::Quotient(axis, a)]
                    }
                    (a, b) => match (size(a), size(b)) {
                        (Some(a), Some(b)) => {
                            let whole = a.checked_mul(b).ok_or("code -4's split overflows")?;
                            requires.push([axis, whole]);
                            [ReshapeDim::Fixed(a), ReshapeDim::Fixed(b)]
                        }
                        _ => return Err(format!("code -4 has invalid split ({a}, {b})")),
                    },
                };
                out.extend(parts);
            }
            d if d > 0 => {
                let d = usize::try_from(d).map_err(|_| format!("dim {d} is too large"))?;
                out.push(ReshapeDim::Fixed(d));
                src += 1;
            }
            d => return Err(format!("invalid reshape code {d}")),
        }
        i += 1;
    }
    if reverse {
        out.reverse();
    }
    Ok((out, requires))
}

/// A [`Reshape`] for MXNet codes on an input of shape `input`, checked on that shape.
pub fn mxnet_reshape(input: &[usize], codes: &[i64], reverse: bool) -> R<Reshape> {
    let (dims, requires) = mxnet_reshape_dims(input.len(), codes, reverse)?;
    for [axis, size] in requires {
        let d = input.get(axis).copied().unwrap_or(0);
        if d != size {
            return Err(format!(
                "code -4 splits dim {axis} of size {d} into parts whose product is {size}"
            ));
        }
    }
    let reshape = Reshape { dims };
    reshape.output_shape(input)?;
    Ok(reshape)
}

/// The parameters of `rnn`, one per matrix and bias in the IR's order, for MXNet's packed
/// vector `packed` whose data is `input_width` wide. A packed parameter is split into new
/// parameters (named after it, as Gluon names them: `{name}_l0_i2h_weight`,
/// `{name}_r0_h2h_bias`, ...) appended to `graph.params` and `weights`; a concatenation of
/// reshaped parameters gives those parameters. Anything else is refused: the IR has no
/// way to feed an RNN computed parameters.
pub fn unpack_rnn_params(
    graph: &mut Graph,
    weights: &mut Vec<(String, Tensor)>,
    rnn: &Rnn,
    packed: Source,
    input_width: usize,
) -> R<Vec<Source>> {
    let dirs = rnn.directions();
    // Shapes in the IR's order (layer, direction, [i2h W, h2h W, i2h b, h2h b]), and the
    // index of each in MXNet's packing: every weight first, then every bias.
    let mut shapes: Vec<Shape> = Vec::new();
    for layer in 0..rnn.layers {
        let cell = rnn.cell_param_shapes(layer, input_width)?;
        for _ in 0..dirs {
            shapes.extend(cell.iter().cloned());
        }
    }
    let cells = rnn.layers.saturating_mul(dirs);
    let packing: Vec<usize> = (0..cells)
        .flat_map(|c| [4 * c, 4 * c + 1])
        .chain((0..cells).flat_map(|c| [4 * c + 2, 4 * c + 3]))
        .collect();
    let names: Vec<String> = (0..rnn.layers)
        .flat_map(|layer| {
            (0..dirs).flat_map(move |d| {
                let dir = if d == 0 { 'l' } else { 'r' };
                ["i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias"]
                    .map(|what| format!("{dir}{layer}_{what}"))
            })
        })
        .collect();
    let expected_len = |s: &Shape| product(s);

    match packed {
        Source::Param(p) => {
            let decl = graph
                .params
                .get(p)
                .ok_or("the packed parameter is missing")?;
            let base = decl.name.clone();
            let role = decl.role;
            let (lr_mult, wd_mult) = (decl.lr_mult, decl.wd_mult);
            let tensor = weights
                .iter()
                .find(|(n, _)| *n == base)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| format!("parameter {base:?} has no weights"))?;
            let total: usize = shapes.iter().map(expected_len).sum::<R<usize>>()?;
            if tensor.shape() != [total] {
                return Err(format!(
                    "the packed parameters {base:?} have shape {:?}, the RNN needs [{total}]",
                    tensor.shape()
                ));
            }
            let width = tensor.dtype().size();
            let mut pieces: Vec<Option<Tensor>> = vec![None; shapes.len()];
            let mut offset = 0usize;
            for &at in &packing {
                let shape = shapes.get(at).ok_or("RNN parameter shapes disagree")?;
                let len = expected_len(shape)?;
                let bytes = tensor
                    .bytes()
                    .get(offset * width..(offset + len) * width)
                    .ok_or("the packed parameters are too short")?
                    .to_vec();
                offset += len;
                let piece = Tensor::from_bytes(tensor.dtype(), shape.clone(), bytes)
                    .map_err(|e| e.to_string())?;
                if let Some(slot) = pieces.get_mut(at) {
                    *slot = Some(piece);
                }
            }
            let mut sources = Vec::with_capacity(pieces.len());
            for (piece, suffix) in pieces.into_iter().zip(&names) {
                let piece = piece.ok_or("an RNN parameter was not unpacked")?;
                let name = unique_param_name(graph, &format!("{base}_{suffix}"));
                graph.params.push(ParamDecl {
                    name: name.clone(),
                    dtype: piece.dtype(),
                    shape: piece.shape().to_vec(),
                    role,
                    lr_mult,
                    wd_mult,
                });
                weights.push((name, piece));
                sources.push(Source::Param(graph.params.len() - 1));
            }
            Ok(sources)
        }
        Source::Node(n, 0) => {
            let node = graph
                .nodes
                .get(n)
                .ok_or("the packed parameters are missing")?;
            let refuse = || {
                format!(
                    "the RNN's parameters come from node {:?}; only a parameter or a \
                     concatenation of reshaped parameters can feed an RNN",
                    node.name
                )
            };
            if !matches!(node.op, Op::Concat(Concat { axis: 0 })) {
                return Err(refuse());
            }
            if node.inputs.len() != shapes.len() {
                return Err(format!(
                    "the concatenated RNN parameters have {} parts, the RNN needs {}",
                    node.inputs.len(),
                    shapes.len()
                ));
            }
            let mut sources = vec![Source::Input(0); shapes.len()];
            for (&part, &at) in node.inputs.iter().zip(&packing) {
                let param = match part {
                    Source::Node(m, 0) => match graph.nodes.get(m) {
                        Some(Node {
                            op: Op::Reshape(r),
                            inputs,
                            ..
                        }) if r.dims == [ReshapeDim::Infer] => match inputs.first() {
                            Some(&Source::Param(q)) => q,
                            _ => return Err(refuse()),
                        },
                        _ => return Err(refuse()),
                    },
                    _ => return Err(refuse()),
                };
                let decl = graph
                    .params
                    .get(param)
                    .ok_or("an RNN parameter is missing")?;
                let expected = shapes.get(at).ok_or("RNN parameter shapes disagree")?;
                if &decl.shape != expected {
                    return Err(format!(
                        "RNN parameter {:?} has shape {:?}, expected {expected:?} at its place in MXNet's packing",
                        decl.name, decl.shape
                    ));
                }
                if let Some(slot) = sources.get_mut(at) {
                    *slot = Source::Param(param);
                }
            }
            Ok(sources)
        }
        _ => Err("the RNN's parameters must be a parameter or a concatenation".into()),
    }
}

fn unique_param_name(graph: &Graph, base: &str) -> String {
    let taken = |n: &str| graph.params.iter().any(|p| p.name == n);
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| base.to_string())
}

/// Removes nodes no output depends on, and parameters no node reads (with their
/// weights). Resolving MXNet encodings leaves some: the reshapes and concatenation that
/// packed an RNN's parameters, the packed parameter itself.
pub fn prune(graph: &mut Graph, weights: &mut Vec<(String, Tensor)>) {
    let (live_nodes, live_params) = graph.live();
    let mut node_map = HashMap::new();
    let mut kept_nodes = Vec::new();
    for (i, node) in std::mem::take(&mut graph.nodes).into_iter().enumerate() {
        if live_nodes.get(i).copied().unwrap_or(false) {
            node_map.insert(i, kept_nodes.len());
            kept_nodes.push(node);
        }
    }
    let mut param_map = HashMap::new();
    let mut kept_params = Vec::new();
    let mut dropped = HashSet::new();
    for (i, p) in std::mem::take(&mut graph.params).into_iter().enumerate() {
        if live_params.contains(&i) {
            param_map.insert(i, kept_params.len());
            kept_params.push(p);
        } else {
            dropped.insert(p.name);
        }
    }
    let remap = |s: &mut Source| match s {
        Source::Node(n, _) => {
            if let Some(&m) = node_map.get(n) {
                *n = m;
            }
        }
        Source::Param(p) => {
            if let Some(&q) = param_map.get(p) {
                *p = q;
            }
        }
        Source::Input(_) => {}
    };
    for node in &mut kept_nodes {
        node.inputs.iter_mut().for_each(remap);
    }
    for output in &mut graph.outputs {
        remap(&mut output.source);
    }
    graph.nodes = kept_nodes;
    graph.params = kept_params;
    weights.retain(|(name, _)| !dropped.contains(name));
}

/// Parameters a batch norm reads as its moving statistics are states, not trainable.
pub fn mark_states(graph: &mut Graph) {
    let mut states = HashSet::new();
    for node in &graph.nodes {
        if let Op::BatchNorm(_) = node.op {
            for source in node.inputs.iter().skip(3) {
                if let Source::Param(p) = source {
                    states.insert(*p);
                }
            }
        }
    }
    for p in states {
        if let Some(decl) = graph.params.get_mut(p) {
            decl.role = ParamRole::State;
        }
    }
}

fn v1_error(reason: impl Into<String>) -> GraphError {
    GraphError::Json(format!("graph version 1: {}", reason.into()))
}

/// Reads a version-1 `graph.json` as the current IR. Version 1 carried MXNet's reshape
/// codes and RNNs fed MXNet's packed parameter vector; both need the shapes of the values
/// they read, which need the package's data input shapes (`data_shapes`, one per graph
/// input, variable dims at any valid size: only ranks matter). Unpacking a packed RNN
/// parameter changes the weights, so they are passed in and returned as the upgraded
/// graph reads them.
pub fn upgrade_v1(
    bytes: &[u8],
    data_shapes: &[Shape],
    weights: &mut Vec<(String, Tensor)>,
) -> Result<Graph, GraphError> {
    if crate::ir::graph_version(bytes)? != 1 {
        return Err(v1_error("not a version-1 graph"));
    }
    let mut v: Value =
        serde_json::from_slice(bytes).map_err(|e| GraphError::Json(e.to_string()))?;
    let take = |v: &mut Value, key: &str| -> Result<Value, GraphError> {
        v.get_mut(key)
            .map(Value::take)
            .ok_or_else(|| v1_error(format!("{key} is missing")))
    };
    let inputs: Vec<GraphInput> = serde_json::from_value(take(&mut v, "inputs")?)
        .map_err(|e| v1_error(format!("inputs: {e}")))?;
    let params: Vec<ParamDecl> = serde_json::from_value(take(&mut v, "params")?)
        .map_err(|e| v1_error(format!("params: {e}")))?;
    let outputs: Vec<GraphOutput> = serde_json::from_value(take(&mut v, "outputs")?)
        .map_err(|e| v1_error(format!("outputs: {e}")))?;
    let nodes = match take(&mut v, "nodes")? {
        Value::Array(nodes) => nodes,
        _ => return Err(v1_error("nodes is not a list")),
    };
    if nodes.len() > crate::ir::MAX_GRAPH_NODES {
        return Err(GraphError::TooLarge {
            what: "nodes",
            actual: nodes.len(),
            limit: crate::ir::MAX_GRAPH_NODES,
        });
    }
    if data_shapes.len() != inputs.len() {
        return Err(GraphError::InputCount {
            expected: inputs.len(),
            actual: data_shapes.len(),
        });
    }
    let mut graph = Graph {
        inputs,
        params,
        ..Graph::new()
    };
    let input_shapes: Vec<Option<Shape>> = data_shapes.iter().cloned().map(Some).collect();
    let mut node_shapes: Vec<Vec<Shape>> = Vec::with_capacity(nodes.len());
    for mut value in nodes {
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let node_err = |reason: String| GraphError::Node {
            node: name.clone(),
            op: "(version 1)",
            reason,
        };
        let inputs: Vec<Source> = serde_json::from_value(take(&mut value, "inputs")?)
            .map_err(|e| node_err(format!("inputs: {e}")))?;
        for s in &inputs {
            check_v1_source(&graph, *s, node_shapes.len()).map_err(node_err)?;
        }
        let shape_of = |s: Source, graph: &Graph, node_shapes: &[Vec<Shape>]| -> Option<Shape> {
            match s {
                Source::Input(i) => input_shapes.get(i).cloned().flatten(),
                Source::Param(p) => graph.params.get(p).map(|p| p.shape.clone()),
                Source::Node(n, k) => node_shapes.get(n)?.get(k).cloned(),
            }
        };
        let op_value = value.get_mut("op").map(Value::take).unwrap_or(Value::Null);
        let kind = op_value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (op, inputs) = match kind.as_str() {
            "reshape" => {
                let codes: Vec<i64> = op_value
                    .get("shape")
                    .cloned()
                    .and_then(|s| serde_json::from_value(s).ok())
                    .ok_or_else(|| node_err("reshape has no shape codes".into()))?;
                let reverse = op_value
                    .get("reverse")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let x = inputs
                    .first()
                    .and_then(|s| shape_of(*s, &graph, &node_shapes))
                    .ok_or_else(|| node_err("reshape has no input".into()))?;
                (
                    Op::Reshape(mxnet_reshape(&x, &codes, reverse).map_err(node_err)?),
                    inputs,
                )
            }
            "rnn" => {
                let mut op_value = op_value;
                if let Some(fields) = op_value.as_object_mut() {
                    fields.remove("type");
                }
                let rnn: Rnn =
                    serde_json::from_value(op_value).map_err(|e| node_err(format!("rnn: {e}")))?;
                let mut rest = inputs.into_iter();
                let (data, packed) = (rest.next(), rest.next());
                let (Some(data), Some(packed)) = (data, packed) else {
                    return Err(node_err("rnn needs data and parameters".into()));
                };
                let width = shape_of(data, &graph, &node_shapes)
                    .and_then(|s| s.get(2).copied())
                    .ok_or_else(|| node_err("rnn data must be (T, N, I)".into()))?;
                let params = unpack_rnn_params(&mut graph, weights, &rnn, packed, width)
                    .map_err(node_err)?;
                let mut inputs = vec![data];
                inputs.extend(rest);
                inputs.extend(params);
                (Op::Rnn(rnn), inputs)
            }
            _ => {
                let op: Op =
                    serde_json::from_value(op_value).map_err(|e| node_err(e.to_string()))?;
                (op, inputs)
            }
        };
        let node = Node { name, op, inputs };
        let ins: Vec<Option<Shape>> = node
            .inputs
            .iter()
            .map(|s| shape_of(*s, &graph, &node_shapes))
            .collect();
        let ins: Vec<Option<&[usize]>> = ins.iter().map(Option::as_deref).collect();
        let outs = node
            .op
            .def()
            .infer(&ins)
            .map_err(|reason| node.error(reason))?;
        node_shapes.push(outs);
        graph.nodes.push(node);
    }
    graph.outputs = outputs;
    prune(&mut graph, weights);
    mark_states(&mut graph);
    graph.validate()?;
    Ok(graph)
}

/// A version-1 source must point at an earlier node (the graph is read in one pass).
fn check_v1_source(graph: &Graph, source: Source, before: usize) -> R<()> {
    match source {
        Source::Input(i) if i >= graph.inputs.len() => Err(format!("refers to missing input {i}")),
        Source::Param(p) if p >= graph.params.len() => Err(format!("refers to missing param {p}")),
        Source::Node(n, _) if n >= before => {
            Err(format!("refers to node {n}, which does not come before it"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn codes(input: &[usize], codes: &[i64], reverse: bool) -> R<Shape> {
        mxnet_reshape(input, codes, reverse)?.output_shape(input)
    }

    /// The examples of MXNet's Reshape documentation, resolved and applied.
    #[test]
    fn reshape_codes_match_mxnet_docs() {
        type Case<'a> = (&'a [usize], &'a [i64], bool, &'a [usize]);
        let cases: [Case<'_>; 15] = [
            (&[2, 3, 4], &[4, 0, 2], false, &[4, 3, 2]),
            (&[2, 3, 4], &[2, 0, 0], false, &[2, 3, 4]),
            (&[2, 3, 4], &[6, 1, -1], false, &[6, 1, 4]),
            (&[2, 3, 4], &[3, -1, 8], false, &[3, 1, 8]),
            (&[2, 3, 4], &[-1], false, &[24]),
            (&[2, 3, 4], &[-2], false, &[2, 3, 4]),
            (&[2, 3, 4], &[2, -2], false, &[2, 3, 4]),
            (&[2, 3, 4], &[-2, 1, 1], false, &[2, 3, 4, 1, 1]),
            (&[2, 3, 4, 5], &[-3, -3], false, &[6, 20]),
            (&[2, 3, 4], &[0, -3], false, &[2, 12]),
            (&[2, 3, 4], &[-3, -2], false, &[6, 4]),
            (&[2, 3, 4], &[-4, 1, 2, -2], false, &[1, 2, 3, 4]),
            (&[2, 3, 4], &[2, -4, -1, 3, -2], false, &[2, 1, 3, 4]),
            (&[10, 5, 4], &[-1, 0], false, &[40, 5]),
            (&[10, 5, 4], &[-1, 0], true, &[50, 4]),
        ];
        for (input, c, reverse, expected) in cases {
            assert_eq!(
                codes(input, c, reverse).unwrap(),
                expected,
                "{input:?} {c:?} {reverse}"
            );
        }
        // The dims are the input's own, so a variable dim (the batch) follows the input.
        let r = mxnet_reshape(&[2, 3, 4], &[0, -1], false).unwrap();
        assert_eq!(r.output_shape(&[7, 3, 4]).unwrap(), vec![7, 12]);
    }

    #[test]
    fn reshape_refuses_bad_codes() {
        assert!(codes(&[2, 3], &[-1, -1], false).is_err());
        assert!(codes(&[2, 3], &[-5], false).is_err());
        assert!(codes(&[2, 3], &[5], false).is_err());
        assert!(codes(&[2, 3], &[0, 0, 0], false).is_err());
        assert!(codes(&[6], &[-4, -1, -1], false).is_err());
        assert!(codes(&[6], &[-4, 4, -1], false).is_err());
        // A split into two given sizes must multiply to the dim, as MXNet checks.
        assert!(codes(&[4, 12], &[-1, -4, 2, 3], false).is_err());
        assert_eq!(
            codes(&[4, 6], &[-1, -4, 2, 3], false).unwrap(),
            vec![4, 2, 3]
        );
    }

    /// MXNet's algorithm on concrete dims (ward's before the dims were resolved), as the
    /// oracle: resolving the codes for the input's rank and applying the dims must agree
    /// with it on every code sequence, both ways of `reverse`, wherever it succeeds.
    #[test]
    fn resolved_codes_agree_with_mxnets_algorithm() {
        let alphabet: [i64; 9] = [0, -1, -2, -3, -4, 1, 2, 3, 4];
        let inputs: [&[usize]; 4] = [&[2, 3, 4], &[4, 6], &[12], &[2, 2, 3, 1]];
        let mut agreed = 0;
        for input in inputs {
            for len in 1..=4usize {
                for n in 0..alphabet.len().pow(len as u32) {
                    let mut n = n;
                    let codes: Vec<i64> = (0..len)
                        .map(|_| {
                            let c = alphabet[n % alphabet.len()];
                            n /= alphabet.len();
                            c
                        })
                        .collect();
                    for reverse in [false, true] {
                        let want = concrete_mxnet_reshape(input, &codes, reverse);
                        let got = codes_to_shape(input, &codes, reverse);
                        if let Ok(want) = want {
                            assert_eq!(
                                got.as_ref().ok(),
                                Some(&want),
                                "{input:?} {codes:?} {reverse}"
                            );
                            agreed += 1;
                        }
                    }
                }
            }
        }
        assert!(agreed > 500, "only {agreed} code sequences were valid");
    }

    fn codes_to_shape(input: &[usize], codes: &[i64], reverse: bool) -> R<Shape> {
        mxnet_reshape(input, codes, reverse)?.output_shape(input)
    }

    fn concrete_mxnet_reshape(input: &[usize], codes: &[i64], reverse: bool) -> R<Shape> {
        let mut dims: Vec<usize> = input.to_vec();
        let mut codes: Vec<i64> = codes.to_vec();
        if reverse {
            dims.reverse();
            codes.reverse();
        }
        let total = product(&dims)?;
        let mut out: Vec<usize> = Vec::new();
        let mut src = 0usize;
        let mut inferred: Option<usize> = None;
        let take = |src: &mut usize, what: &str| -> R<usize> {
            let d = dims.get(*src).copied().ok_or_else(|| {
                format!(
                    "code {what} needs input dim {}, but the input {input:?} has {}",
                    *src,
                    dims.len()
                )
            })?;
            *src += 1;
            Ok(d)
        };
        let mut i = 0;
        while i < codes.len() {
            match codes[i] {
                0 => out.push(take(&mut src, "0")?),
                -1 => {
                    if inferred.is_some() {
                        return Err("reshape has more than one -1".into());
                    }
                    inferred = Some(out.len());
                    out.push(1);
                    src += 1;
                }
                -2 => {
                    while src < dims.len() {
                        out.push(dims[src]);
                        src += 1;
                    }
                }
                -3 => {
                    let a = take(&mut src, "-3")?;
                    let b = take(&mut src, "-3")?;
                    out.push(a.checked_mul(b).ok_or("merged dim overflows")?);
                }
                -4 => {
                    let d0 = take(&mut src, "-4")?;
                    let (Some(&c1), Some(&c2)) = (codes.get(i + 1), codes.get(i + 2)) else {
                        return Err("code -4 must be followed by two values".into());
                    };
                    i += 2;
                    let (d1, d2) = match (c1, c2) {
                        (-1, -1) => return Err("code -4 cannot split into -1 and -1".into()),
                        (-1, b) if b > 0 => (d0 / b as usize, b as usize),
                        (a, -1) if a > 0 => (a as usize, d0 / a as usize),
                        (a, b) if a > 0 && b > 0 => (a as usize, b as usize),
                        (a, b) => return Err(format!("code -4 has invalid split ({a}, {b})")),
                    };
                    if d1.checked_mul(d2) != Some(d0) {
                        return Err(format!(
                            "code -4 splits {d0} into {d1} × {d2}, which does not match"
                        ));
                    }
                    out.push(d1);
                    out.push(d2);
                }
                d if d > 0 => {
                    out.push(usize::try_from(d).map_err(|_| format!("dim {d} is too large"))?);
                    src += 1;
                }
                d => return Err(format!("invalid reshape code {d}")),
            }
            i += 1;
        }
        if let Some(at) = inferred {
            let known = product(&out)?;
            if known == 0 || total % known != 0 {
                return Err(format!(
                    "cannot infer -1: {total} elements do not divide by {known}"
                ));
            }
            out[at] = total / known;
        }
        if product(&out)? != total {
            return Err(format!(
                "reshape of {input:?} to {out:?} changes the element count"
            ));
        }
        if reverse {
            out.reverse();
        }
        Ok(out)
    }
}
