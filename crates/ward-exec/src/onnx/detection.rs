//! Detection: MXNet's `box_nms`, `box_decode`, `box_encode`, `MultiBoxDetection`,
//! `Proposal` and `MultiProposal`, which ONNX has no operator for with MXNet's semantics
//! (ONNX's
//! `NonMaximumSuppression` returns selected indices, not MXNet's fixed-shape rows padded
//! with −1, and breaks ties otherwise). Each is lowered to one node of ward's own domain,
//! [`WARD_OP`], holding the ward operator as JSON and its output shapes; tract runs it
//! with ward's kernel (`crate::tract::detection`), and `ward export onnx` refuses it by
//! name ([`super::refuse_ward_nodes`]).

use super::builder::{attr_ints, attr_string, ints, At, Builder, R};

/// The op type of ward's own nodes (in [`super::WARD_DOMAIN`]).
pub(crate) const WARD_OP: &str = "WardMxnetOp";

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
        node.domain = super::WARD_DOMAIN.into();
    }
    Ok(())
}
