//! Moves an operation by a scalar (a ReLU is `max(x, 0)`) up to the matrix product that
//! feeds it, so that tract fuses it into the product's store instead of running it as a
//! pass of its own over the whole tensor.
//!
//! tract fuses such an op only when it directly follows the product. In convolutional
//! networks two things stand between them: the reshape tract adds after a 1×1 convolution
//! (the product's [C, H·W] back to [1, C, H, W]), and a concatenation of several products
//! (squeezenet's fire modules apply one ReLU after concatenating both expand branches).
//! Both commute with an element-wise op: `op(reshape(x)) = reshape(op(x))` and
//! `op(concat(a, b)) = concat(op(a), op(b))`. These standalone passes took 6 % of
//! squeezenet1.1's time.

#![allow(
    clippy::indexing_slicing,
    reason = "indices into tract's own graph: operand counts are checked before use and `wire_node` returns one outlet per output of the op it wires"
)]

use tract_onnx::prelude::{TractResult, TypedModel};
use tract_onnx::tract_core::internal::{
    IntoArcTensor, OutletId, SpecialOps, Tensor, TypedModelPatch, TypedNode, TypedOp,
};
use tract_onnx::tract_core::ops::array::TypedConcat;
use tract_onnx::tract_core::ops::binary::OptBinByScalar;
use tract_onnx::tract_core::ops::change_axes::IntoShape;

/// Applies the moves until none is left. Returns whether any was made, in which case the
/// model needs tract's optimiser again to fuse what was moved.
pub(crate) fn move_scalar_ops_up(model: &mut TypedModel) -> TractResult<bool> {
    // One move at a time, each followed by dropping the nodes it left dead, so that a dead
    // op is never moved again. The bound only guards against a loop.
    for moves in 0..1024 {
        let Some(patch) = (0..model.nodes().len()).find_map(|id| move_up(model, id).transpose())
        else {
            return Ok(moves > 0);
        };
        patch?.apply(model)?;
        model.compact()?;
    }
    Ok(true)
}

/// The node that is the only consumer of an outlet, if it has exactly one and is not a
/// model output.
pub(super) fn sole_consumer(model: &TypedModel, outlet: OutletId) -> TractResult<Option<usize>> {
    let successors = &model.node(outlet.node).outputs[outlet.slot].successors;
    if successors.len() != 1 || model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    Ok(Some(successors[0].node))
}

/// The scalar operand of `node` when it is an op by a scalar whose tensor operand comes
/// first, reshaped to `rank` ones.
fn scalar_operand(
    model: &TypedModel,
    node: &TypedNode,
    rank: usize,
) -> TractResult<Option<Tensor>> {
    let Some(konst) = model.outlet_fact(node.inputs[1])?.konst.clone() else {
        return Ok(None);
    };
    if konst.len() != 1 {
        return Ok(None);
    }
    Ok(Some(konst.as_ref().clone().into_shape(&vec![1; rank])?))
}

fn move_up(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    if !node.op_is::<OptBinByScalar>() || node.inputs.len() != 2 {
        return Ok(None);
    }
    let source = model.node(node.inputs[0].node);
    if node.inputs[0].slot != 0 || sole_consumer(model, node.inputs[0])? != Some(id) {
        return Ok(None);
    }
    let op: Box<dyn TypedOp> = node.op.clone();
    if source.op_is::<IntoShape>() {
        // op(reshape(x)) → reshape(op(x))
        let x = source.inputs[0];
        if sole_consumer(model, x)? != Some(source.id) {
            return Ok(None);
        }
        let rank = model.outlet_fact(x)?.rank();
        let Some(scalar) = scalar_operand(model, node, rank)? else {
            return Ok(None);
        };
        let mut patch = TypedModelPatch::new("ward: scalar op before reshape");
        let tapped = patch.tap_model(model, x)?;
        let scalar = patch.add_const(format!("{}.scalar", node.name), scalar.into_arc_tensor())?;
        let applied = patch.wire_node(&node.name, op, &[tapped, scalar])?[0];
        let reshaped = patch.wire_node(&source.name, source.op.clone(), &[applied])?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), reshaped)?;
        return Ok(Some(patch));
    }
    if let Some(concat) = source.op_as::<TypedConcat>() {
        // op(concat(a, b, …)) → concat(op(a), op(b), …)
        let mut patch = TypedModelPatch::new("ward: scalar op before concat");
        let mut parts = Vec::with_capacity(source.inputs.len());
        for (i, &part) in source.inputs.iter().enumerate() {
            if sole_consumer(model, part)? != Some(source.id) {
                return Ok(None);
            }
            let rank = model.outlet_fact(part)?.rank();
            let Some(scalar) = scalar_operand(model, node, rank)? else {
                return Ok(None);
            };
            let tapped = patch.tap_model(model, part)?;
            let scalar = patch.add_const(
                format!("{}.scalar.{i}", node.name),
                scalar.into_arc_tensor(),
            )?;
            parts.push(
                patch.wire_node(format!("{}.{i}", node.name), op.clone(), &[tapped, scalar])?[0],
            );
        }
        let joined = patch.wire_node(&source.name, concat.clone(), &parts)?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), joined)?;
        return Ok(Some(patch));
    }
    Ok(None)
}
