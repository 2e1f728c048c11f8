//! Element-wise arithmetic: ONNX's operators broadcast as NumPy does, as MXNet's
//! `broadcast_*` do.

use ward_graph::ops::elementwise::{
    Binary, BinaryKind, Clip, Scalar, ScalarKind, Unary, UnaryKind,
};

use super::{At, Builder, R};

pub(super) fn binary(b: &mut Builder<'_>, at: &At<'_>, op: &Binary) -> R<()> {
    let name = match op.kind {
        BinaryKind::Add => "Add",
        BinaryKind::Sub => "Sub",
        BinaryKind::Mul => "Mul",
        BinaryKind::Div => "Div",
        BinaryKind::Max => "Max",
        BinaryKind::Min => "Min",
    };
    b.push(name, at.inputs()?, vec![at.out()?], vec![]);
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
    b.push(name, vec![at.input(0)?], vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn clip(b: &mut Builder<'_>, at: &At<'_>, op: &Clip) -> R<()> {
    let lo = b.scalar_f32(&at.hint("min"), op.min as f32);
    let hi = b.scalar_f32(&at.hint("max"), op.max as f32);
    b.push("Clip", vec![at.input(0)?, lo, hi], vec![at.out()?], vec![]);
    Ok(())
}
