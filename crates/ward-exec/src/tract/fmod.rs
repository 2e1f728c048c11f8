//! ONNX `Mod` with `fmod = 1` (C's `fmod`), in place of tract's.
//!
//! tract 0.23.9's float `Rem` computes `fmod(b, a)` instead of `fmod(a, b)` when its
//! operands broadcast in some shapes (`(3, 1) mod (1, 5)` gave the divisors back); the
//! lowering of MXNet's `mod` writes `Mod` with `fmod = 1`, so every float `Rem` of a
//! lowered model is replaced by this op, which broadcasts as NumPy does and computes
//! Rust's `%` on f32 (IEEE's `fmod`, exact).

use tract_onnx::prelude::{tvec, Datum, TValue, TVec, TractResult, TypedFact, TypedModel};
use tract_onnx::tract_core::internal::{
    as_op, bail, ensure, op_as_typed_op, op_out_of_plan, DatumTypeExt, EvalContext, EvalOp,
    IntoTValue, Op, StaticName, TypedOp,
};
use tract_onnx::tract_core::ndarray::Zip;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

/// Element-wise `fmod(a, b)` of two float32 tensors of one rank, broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Fmod;

/// Replaces every float32 `Rem` of the model.
pub(crate) fn adopt(model: &mut TypedModel) -> TractResult<()> {
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(bin) = node.op_as::<TypedBinOp>() else {
            continue;
        };
        if bin.0.name() != "Rem" {
            continue;
        }
        let Some(first) = node.inputs.first() else {
            bail!("Rem {} has no inputs", node.name);
        };
        if model.outlet_fact(*first)?.datum_type != f32::datum_type() {
            continue;
        }
        model.node_mut(id).op = Box::new(Fmod);
    }
    Ok(())
}

impl Op for Fmod {
    fn name(&self) -> StaticName {
        "WardFmod".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Fmod {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (Some(a), Some(b)) = (inputs.first(), inputs.get(1)) else {
            bail!("fmod takes two inputs");
        };
        let a = a.to_plain_array_view::<f32>()?;
        let b = b.to_plain_array_view::<f32>()?;
        let shape = tract_onnx::tract_core::broadcast::multi_broadcast(&[a.shape(), b.shape()])?;
        let (Some(a), Some(b)) = (a.broadcast(&*shape), b.broadcast(&*shape)) else {
            bail!(
                "fmod of {:?} and {:?} do not broadcast",
                a.shape(),
                b.shape()
            );
        };
        let out = Zip::from(&a).and(&b).map_collect(|&x, &y| x % y);
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for Fmod {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (Some(a), Some(b)) = (inputs.first(), inputs.get(1)) else {
            bail!("fmod takes two inputs");
        };
        ensure!(
            a.datum_type == f32::datum_type() && b.datum_type == f32::datum_type(),
            "ward's fmod takes float32"
        );
        let shape = tract_onnx::tract_core::broadcast::multi_broadcast(&[
            a.shape.to_tvec(),
            b.shape.to_tvec(),
        ])?;
        Ok(tvec![f32::datum_type().fact(shape)])
    }

    as_op!();
}
