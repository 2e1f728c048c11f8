//! Detection: MXNet's `box_nms`, `box_decode` and `box_encode`, which ONNX has no
//! operator for with MXNet's semantics (ONNX's `NonMaximumSuppression` returns selected
//! indices, not MXNet's fixed-shape rows padded with −1, and breaks ties otherwise). Each
//! is lowered to one node of ward's own domain, [`WARD_OP`], holding the ward operator as
//! JSON and its output shapes; tract runs it with ward's kernel (`crate::tract::detection`),
//! and `ward export onnx` refuses it by name ([`refuse_ward_ops`]).

use tract_onnx::pb::ModelProto;

use super::builder::{attr_ints, attr_string, ints, At, Builder, R};
use crate::error::ExecError;

/// The op type of ward's own nodes.
pub(crate) const WARD_OP: &str = "WardMxnetOp";
/// Their domain.
pub(crate) const WARD_DOMAIN: &str = "ai.ward.mxnet";

pub(super) fn ward_op(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    let json = serde_json::to_string(&at.node.op).map_err(|e| e.to_string())?;
    let mut attrs = vec![attr_string("op", &json)];
    let shapes = b
        .shapes
        .nodes
        .get(at.index)
        .cloned()
        .ok_or_else(|| "no output shapes".to_string())?;
    for (k, shape) in shapes.iter().enumerate() {
        attrs.push(attr_ints(&format!("shape{k}"), &ints(shape)));
    }
    b.push(WARD_OP, at.inputs()?, at.outs.clone(), attrs);
    if let Some(node) = b.nodes.last_mut() {
        node.name = at.node.name.clone();
        node.domain = WARD_DOMAIN.into();
    }
    Ok(())
}

/// Refuses a lowered model holding one of ward's own nodes, naming the node: ONNX has no
/// operator that computes it as MXNet does.
pub fn refuse_ward_ops(proto: &ModelProto) -> Result<(), ExecError> {
    let Some(graph) = &proto.graph else {
        return Ok(());
    };
    for node in &graph.node {
        if node.op_type != WARD_OP {
            continue;
        }
        let op = node
            .attribute
            .iter()
            .find(|a| a.name == "op")
            .and_then(|a| serde_json::from_slice::<ward_graph::ops::Op>(&a.s).ok())
            .map_or("unknown", |op| op.name());
        return Err(ExecError::Lowering {
            node: node.name.clone(),
            op,
            reason: "ONNX has no operator with MXNet's semantics for it (fixed-shape output, MXNet's order and quirks); ward runs it with its own kernel".into(),
        });
    }
    Ok(())
}
