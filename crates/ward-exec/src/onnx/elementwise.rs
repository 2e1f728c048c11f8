//! Element-wise arithmetic: ONNX's operators broadcast as NumPy does, as MXNet's
//! `broadcast_*` do.

use ward_graph::ops::elementwise::{
    Binary, BinaryKind, Clip, Scalar, ScalarKind, Unary, UnaryKind,
};

use super::builder::{At, Builder, R};

pub(super) fn binary(b: &mut Builder<'_>, at: &At<'_>, op: &Binary) -> R<()> {
    let name = match op.kind {
        BinaryKind::Add => "Add",
        BinaryKind::Sub => "Sub",
        BinaryKind::Mul => "Mul",
        BinaryKind::Div => "Div",
        BinaryKind::Max => "Max",
        BinaryKind::Min => "Min",
    };
    if !matches!(op.kind, BinaryKind::Max | BinaryKind::Min) {
        b.push(name, at.inputs()?, vec![at.out()?], vec![]);
        return Ok(());
    }
    // MXNet's maximum and minimum give NaN when either side is NaN; ONNX's (tract's)
    // return the other side.
    let (x, y) = (at.input(0)?, at.input(1)?);
    let picked = b.op(name, vec![x.clone(), y.clone()], vec![], &at.hint("picked"));
    let x_nan = b.op("IsNaN", vec![x.clone()], vec![], &at.hint("x_nan"));
    let y_nan = b.op("IsNaN", vec![y.clone()], vec![], &at.hint("y_nan"));
    let either = b.op("Or", vec![x_nan, y_nan], vec![], &at.hint("nan"));
    // x + y is NaN wherever either is, and broadcasts as the result does.
    let nan_sum = b.op("Add", vec![x, y], vec![], &at.hint("nan_sum"));
    b.push(
        "Where",
        vec![either, nan_sum, picked],
        vec![at.out()?],
        vec![],
    );
    Ok(())
}

/// `f(x)`, but NaN where `x` is NaN: MXNet's `relu` and `clip` pass NaN through, ONNX's
/// (tract's) map it to a number.
fn keep_nan(b: &mut Builder<'_>, at: &At<'_>, f: String) -> R<()> {
    let x = at.input(0)?;
    let nan = b.op("IsNaN", vec![x.clone()], vec![], &at.hint("nan"));
    b.push("Where", vec![nan, x, f], vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn add_n(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    b.push("Sum", at.inputs()?, vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn scalar(b: &mut Builder<'_>, at: &At<'_>, op: &Scalar) -> R<()> {
    let c = b.scalar_f32(&at.hint("scalar"), op.value as f32);
    let x = at.input(0)?;
    let (name, args) = match op.kind {
        ScalarKind::Add => ("Add", vec![x, c]),
        ScalarKind::Sub => ("Sub", vec![x, c]),
        ScalarKind::RSub => ("Sub", vec![c, x]),
        ScalarKind::Mul => ("Mul", vec![x, c]),
        ScalarKind::Div => ("Div", vec![x, c]),
        ScalarKind::RDiv => ("Div", vec![c, x]),
    };
    b.push(name, args, vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn unary(b: &mut Builder<'_>, at: &At<'_>, op: &Unary) -> R<()> {
    let name = match op.kind {
        UnaryKind::Relu => "Relu",
        UnaryKind::Sigmoid => "Sigmoid",
        UnaryKind::Tanh => "Tanh",
        UnaryKind::Exp => "Exp",
        UnaryKind::Log => "Log",
        UnaryKind::Sqrt => "Sqrt",
        UnaryKind::Abs => "Abs",
        UnaryKind::Neg => "Neg",
    };
    if op.kind == UnaryKind::Relu {
        let relu = b.op(name, vec![at.input(0)?], vec![], &at.hint("relu"));
        return keep_nan(b, at, relu);
    }
    b.push(name, vec![at.input(0)?], vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn clip(b: &mut Builder<'_>, at: &At<'_>, op: &Clip) -> R<()> {
    let lo = b.scalar_f32(&at.hint("min"), op.min as f32);
    let hi = b.scalar_f32(&at.hint("max"), op.max as f32);
    let clipped = b.op(
        "Clip",
        vec![at.input(0)?, lo, hi],
        vec![],
        &at.hint("clipped"),
    );
    keep_nan(b, at, clipped)
}
