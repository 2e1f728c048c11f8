//! Folds a reshape of a constant into the constant, in place.
//!
//! tract turns a convolution into a matrix product over its kernel reshaped to
//! [group, out, in·h·w]: a chain of reshapes between the kernel constant and the packing
//! op. Its constant folding evaluates that chain on a shared copy of the constant (the
//! constant node and its fact both hold it), so the reshape, which moves no data, copies
//! the whole kernel while the original and, one step later, the packed form are alive
//! too: three copies of the largest weight at once, and a tenth of the load time of a
//! ResNet-18 spent copying. When the reshape is the constant's only use, this pass takes
//! the constant out of its node and reshapes the tensor itself, so the copy never
//! happens. It runs first in each round of the optimiser ([`super::optimizer`]), ahead of
//! tract's own folding, which then packs the reshaped kernel as before.

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and outlet slots come from tract's own graph, where every input and successor names a node that exists"
)]

use std::sync::Arc;

use tract_onnx::prelude::{IntoArcTensor, IntoTValue, TractResult, TypedFact, TypedModel};
use tract_onnx::tract_core::internal::{bail, format_err, tvec, SpecialOps};
use tract_onnx::tract_core::model::TypedModelPatch;
use tract_onnx::tract_core::ops::change_axes::{AxisOp, IntoShape};
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::optim::{OptimizerSession, TypedPass};

use super::fusion::sole_consumer;

/// The pass: tract's optimiser runs it through its in-place hook.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReshapeConstsInPlace;

impl TypedPass for ReshapeConstsInPlace {
    fn reset(&mut self) -> TractResult<()> {
        Ok(())
    }

    fn next(
        &mut self,
        _session: &mut OptimizerSession,
        _model: &TypedModel,
    ) -> TractResult<Option<TypedModelPatch>> {
        Ok(None)
    }

    fn run_direct(&mut self, model: &mut TypedModel) -> TractResult<bool> {
        let mut changed = false;
        // Node ids follow evaluation order (the optimiser compacts before each pass), so
        // a chain of reshapes folds front to back in one sweep.
        for id in 0..model.nodes.len() {
            changed |= fold(model, id)?;
        }
        Ok(changed)
    }
}

/// Makes node `id` a constant when it is a reshape whose input is a constant used by it
/// alone. Returns whether it did.
fn fold(model: &mut TypedModel, id: usize) -> TractResult<bool> {
    let node = &model.nodes[id];
    let is_reshape = match node.op_as::<AxisOp>() {
        // A move permutes the data: tract's own folding copies it either way.
        Some(op) => !matches!(op, AxisOp::Move(..)),
        None => node.op_is::<IntoShape>(),
    };
    if !is_reshape || node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Ok(false);
    }
    let source = node.inputs[0];
    if sole_consumer(model, source)?.is_none() {
        return Ok(false);
    }
    let Some(konst) = model.nodes[source.node].op_as::<Const>() else {
        return Ok(false);
    };
    if konst.exotic_fact().is_some() || model.outlet_fact(source)?.exotic_fact.is_some() {
        return Ok(false);
    }
    let value = konst.val().clone();
    // Drop the constant node's own references (its op and its fact) so that `value` is
    // the only one left and the tensor can be taken without a copy. The node has no other
    // use; compaction removes it.
    let dummy = model.create_dummy();
    model.nodes[source.node].op = dummy;
    let outlet = &mut model.nodes[source.node].outputs[source.slot];
    outlet.fact.konst = None;
    outlet.successors.clear();
    let tensor = Arc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone());
    let op = model.nodes[id].op.clone();
    let outputs = op
        .eval_out_of_plan(tvec!(tensor.into_tvalue()))?
        .ok_or_else(|| format_err!("reshape {id} gave no value"))?;
    let Some(output) = outputs.into_iter().next() else {
        bail!("reshape {id} gave no output");
    };
    let value = output.into_arc_tensor();
    let fact = TypedFact::try_from(value.clone())?;
    let node = &mut model.nodes[id];
    node.op = Box::new(Const::new(value)?);
    node.inputs.clear();
    node.outputs[0].fact = fact;
    Ok(true)
}
