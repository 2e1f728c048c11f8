//! MXNet's `relu` and `clip` in one pass over the data, in place when it can be.
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

/// Every float32 `Iff(IsNan(x), x, Max(x, 0))` of `model` becomes a [`ReluKeepNan`] of `x`,
/// and every `Iff(IsNan(x), x, Min(Max(x, lo), hi))` with scalar constants `lo ≤ hi` (the
/// lowering of MXNet's `clip`, MobileNet v2's ReLU6) a [`ClipKeepNan`].
pub(crate) fn adopt(model: &mut TypedModel) -> TractResult<()> {
    let mut rewriter = Rewriter::of(model);
    for id in 0..model.nodes.len() {
        if let Some(x) = keep_nan_relu_input(model, id)? {
            rewriter.replace(model, id, ReluKeepNan, vec![Wire::Outlet(x)])?;
        } else if let Some((x, clip)) = keep_nan_clip(model, id)? {
            rewriter.replace(model, id, clip, vec![Wire::Outlet(x)])?;
        }
    }
    Ok(())
}

/// `x` and the bounds when node `id` is `Iff(IsNan(x), x, Min(Max(x, lo), hi))` over
/// float32 with scalar constants `lo ≤ hi`. With `lo > hi` the pattern gives `hi`
/// everywhere, which [`ClipKeepNan`] does not, so it is left to tract.
fn keep_nan_clip(model: &TypedModel, id: usize) -> TractResult<Option<(OutletId, ClipKeepNan)>> {
    let Some((x, clipped)) = keep_nan_of(model, id)? else {
        return Ok(None);
    };
    let Some((max, hi)) = binary_with_scalar(model, clipped.node, "Min")? else {
        return Ok(None);
    };
    let Some((input, lo)) = binary_with_scalar(model, max.node, "Max")? else {
        return Ok(None);
    };
    Ok((input == x && lo <= hi).then_some((x, ClipKeepNan { lo, hi })))
}

/// `(a, c)` when node `id` is the binary op `name` of `a` and a float32 constant holding
/// one value `c`.
fn binary_with_scalar(
    model: &TypedModel,
    id: usize,
    name: &str,
) -> TractResult<Option<(OutletId, f32)>> {
    let node = &model.nodes[id];
    let is_op = node
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.name() == name);
    if !is_op || node.inputs.len() != 2 {
        return Ok(None);
    }
    let Some(value) = &model.outlet_fact(node.inputs[1])?.konst else {
        return Ok(None);
    };
    if value.datum_type() != f32::datum_type() || value.len() != 1 {
        return Ok(None);
    }
    let plain = value.try_as_plain_ram()?;
    Ok(plain
        .as_slice::<f32>()?
        .first()
        .map(|&c| (node.inputs[0], c)))
}

/// `(x, y)` when node `id` is `Iff(IsNan(x), x, y)` over float32.
fn keep_nan_of(model: &TypedModel, id: usize) -> TractResult<Option<(OutletId, OutletId)>> {
    let node = &model.nodes[id];
    if !node.op_is::<Iff>() || node.inputs.len() != 3 {
        return Ok(None);
    }
    let (condition, x, y) = (node.inputs[0], node.inputs[1], node.inputs[2]);
    if model.outlet_fact(x)?.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let is_nan = &model.nodes[condition.node];
    let is_nan_of_x = is_nan
        .op_as::<ElementWiseOp>()
        .is_some_and(|op| op.0.name() == "IsNan")
        && is_nan.inputs.as_slice() == [x];
    Ok(is_nan_of_x.then_some((x, y)))
}

/// `x` when node `id` is `Iff(IsNan(x), x, Max(x, 0))` over float32.
fn keep_nan_relu_input(model: &TypedModel, id: usize) -> TractResult<Option<OutletId>> {
    let Some((x, relu)) = keep_nan_of(model, id)? else {
        return Ok(None);
    };
    let max = &model.nodes[relu.node];
    let max_of_x_and_zero = max
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.name() == "Max")
        && max.inputs.len() == 2
        && max.inputs[0] == x
        && is_zero(model.outlet_fact(max.inputs[1])?)?;
    Ok(max_of_x_and_zero.then_some(x))
}

/// Whether `fact` is a constant of zeros.
pub(super) fn is_zero(fact: &TypedFact) -> TractResult<bool> {
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

/// MXNet's `clip` of a float32 tensor to `[lo, hi]` (`lo ≤ hi`): `x > hi ? hi : x < lo ?
/// lo : x`, so NaN stays (as MXNet's `mshadow_op::clip`, which the lowering's `IsNan`
/// guard keeps), in one pass that writes into its input when the plan hands it over.
///
/// Why: the lowering's `Iff(IsNan(x), x, Min(Max(x, lo), hi))` ran as three passes, the
/// `Iff` in tract's generic element-wise loop: 34 % of MobileNet v2's time at batch 8.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClipKeepNan {
    lo: f32,
    hi: f32,
}

// Sound: the bounds are never NaN (`lo ≤ hi` holds for every op `adopt` makes).
impl Eq for ClipKeepNan {}

impl std::hash::Hash for ClipKeepNan {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.lo.to_bits().hash(state);
        self.hi.to_bits().hash(state);
    }
}

impl Op for ClipKeepNan {
    fn name(&self) -> StaticName {
        "WardClipKeepNan".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("[{}, {}]", self.lo, self.hi)])
    }

    op_as_typed_op!();
}

impl EvalOp for ClipKeepNan {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1,
            "clip takes one input, got {}",
            inputs.len()
        );
        let Some(input) = inputs.into_iter().next() else {
            return Ok(tvec![]);
        };
        let mut tensor = input.into_tensor();
        {
            let mut plain = tensor.try_as_plain_ram_mut()?;
            let (lo, hi) = (self.lo, self.hi);
            for v in plain.as_slice_mut::<f32>()? {
                // NaN fails both comparisons and stays.
                *v = if *v > hi {
                    hi
                } else if *v < lo {
                    lo
                } else {
                    *v
                };
            }
        }
        Ok(tvec![tensor.into_tvalue()])
    }
}

impl TypedOp for ClipKeepNan {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "clip takes one input");
        Ok(tvec![inputs[0].without_value()])
    }

    as_op!();
}
