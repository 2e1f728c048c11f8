//! MXNet's `relu` in one pass over the data, in place when it can be.
//!
//! MXNet's `relu` operator keeps NaN (`isnan(a) ? a : max(a, 0)`), and ONNX's `Relu`, as
//! tract runs it, does not; so the lowering writes it as
//! `Where(IsNaN(x), x, Relu(x))`, which exports as plain ONNX. Run as written that is
//! three passes and three new tensors as large as the input: 600 MB at once for Mask
//! R-CNN's mask head over 1000 regions. Here that pattern becomes [`ReluKeepNan`], one
//! element-wise pass that writes into its input when the plan hands it over.

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and input slots come from tract's own graph: an Iff has three inputs, a binary op two, an element-wise op one"
)]

use tract_onnx::prelude::{
    tvec, Datum, IntoTValue, OutletId, TValue, TVec, TractResult, TypedFact, TypedModel,
};
use tract_onnx::tract_core::internal::{
    as_op, ensure, op_as_typed_op, op_out_of_plan, EvalContext, EvalOp, IntoTensor, Op, StaticName,
    TypedOp,
};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::logic::Iff;

use super::optimizer::{Rewriter, Wire};

/// Every float32 `Iff(IsNan(x), x, Max(x, 0))` of `model` becomes a [`ReluKeepNan`] of `x`.
pub(crate) fn adopt(model: &mut TypedModel) -> TractResult<()> {
    let mut rewriter = Rewriter::of(model);
    for id in 0..model.nodes.len() {
        if let Some(x) = keep_nan_relu_input(model, id)? {
            rewriter.replace(model, id, ReluKeepNan, vec![Wire::Outlet(x)])?;
        }
    }
    Ok(())
}

/// `x` when node `id` is `Iff(IsNan(x), x, Max(x, 0))` over float32.
fn keep_nan_relu_input(model: &TypedModel, id: usize) -> TractResult<Option<OutletId>> {
    let node = &model.nodes[id];
    if !node.op_is::<Iff>() || node.inputs.len() != 3 {
        return Ok(None);
    }
    let (condition, x, relu) = (node.inputs[0], node.inputs[1], node.inputs[2]);
    if model.outlet_fact(x)?.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let is_nan = &model.nodes[condition.node];
    let is_nan_of_x = is_nan
        .op_as::<ElementWiseOp>()
        .is_some_and(|op| op.0.name() == "IsNan")
        && is_nan.inputs.as_slice() == [x];
    let max = &model.nodes[relu.node];
    let max_of_x_and_zero = max
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.name() == "Max")
        && max.inputs.len() == 2
        && max.inputs[0] == x
        && is_zero(model.outlet_fact(max.inputs[1])?)?;
    Ok((is_nan_of_x && max_of_x_and_zero).then_some(x))
}

/// Whether `fact` is a constant of zeros.
fn is_zero(fact: &TypedFact) -> TractResult<bool> {
    let Some(value) = &fact.konst else {
        return Ok(false);
    };
    if value.datum_type() != f32::datum_type() {
        return Ok(false);
    }
    Ok(value
        .try_as_plain_ram()?
        .as_slice::<f32>()?
        .iter()
        .all(|&v| v == 0.0))
}

/// `max(x, 0)` for every element of a float32 tensor, NaN kept, as MXNet's `relu`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReluKeepNan;

impl Op for ReluKeepNan {
    fn name(&self) -> StaticName {
        "WardReluKeepNan".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ReluKeepNan {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1,
            "relu takes one input, got {}",
            inputs.len()
        );
        let Some(input) = inputs.into_iter().next() else {
            return Ok(tvec![]);
        };
        // The input's own storage when the plan no longer needs it, else a copy.
        let mut tensor = input.into_tensor();
        {
            let mut plain = tensor.try_as_plain_ram_mut()?;
            for v in plain.as_slice_mut::<f32>()? {
                // NaN fails the comparison and stays; -0 becomes +0, as `a > 0 ? a : 0`.
                if *v <= 0.0 {
                    *v = 0.0;
                }
            }
        }
        Ok(tvec![tensor.into_tvalue()])
    }
}

impl TypedOp for ReluKeepNan {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "relu takes one input");
        Ok(tvec![inputs[0].without_value()])
    }

    as_op!();
}
