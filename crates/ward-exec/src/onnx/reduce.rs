//! Reductions. MXNet never gives a rank-0 result where ONNX does: every lowering ends in
//! a reshape to the node's inferred shape. Where MXNet and ONNX (tract) treat NaN
//! differently, NaN is tracked on the side.

use tract_onnx::pb::tensor_proto::DataType;
use ward_graph::ops::reduce::{ArgKind, ArgReduce, Mean, Reduce, ReduceKind};

use super::builder::{attr_int, attr_ints, ints, At, Builder, R};

pub(super) fn mean(b: &mut Builder<'_>, at: &At<'_>, op: &Mean) -> R<()> {
    let axes = op.axes(at.xs.len())?;
    let x = at.input(0)?;
    over(b, at, "ReduceMean", x, &axes, op.keepdims)
}

pub(super) fn reduce(b: &mut Builder<'_>, at: &At<'_>, op: &Reduce) -> R<()> {
    let axes = op.axes(at.xs.len())?;
    let x = at.input(0)?;
    if axes.is_empty() {
        // Nothing reduced still maps each element as a reduction of one (MXNet does so
        // when `exclude` lists every axis).
        let (name, x) = match op.kind {
            ReduceKind::L1 | ReduceKind::L2 => ("Abs", x),
            ReduceKind::NanSum | ReduceKind::NanProd => {
                ("Identity", nan_replaced(b, at, op.kind, x))
            }
            _ => ("Identity", x),
        };
        b.push(name, vec![x], vec![at.out()?], vec![]);
        return Ok(());
    }
    match op.kind {
        ReduceKind::Sum => over(b, at, "ReduceSum", x, &axes, op.keepdims),
        ReduceKind::Prod => over(b, at, "ReduceProd", x, &axes, op.keepdims),
        ReduceKind::L1 => over(b, at, "ReduceL1", x, &axes, op.keepdims),
        ReduceKind::L2 => over(b, at, "ReduceL2", x, &axes, op.keepdims),
        ReduceKind::NanSum | ReduceKind::NanProd => {
            let kept = nan_replaced(b, at, op.kind, x);
            let name = if op.kind == ReduceKind::NanSum {
                "ReduceSum"
            } else {
                "ReduceProd"
            };
            over(b, at, name, kept, &axes, op.keepdims)
        }
        ReduceKind::Max | ReduceKind::Min => {
            // tract's max and min skip NaN; MXNet's give NaN once any element is NaN.
            let name = if op.kind == ReduceKind::Max {
                "ReduceMax"
            } else {
                "ReduceMin"
            };
            let picked = reduced(b, at, name, x.clone(), &axes, op.keepdims, "picked");
            let flags = nan_flags(b, at, x);
            let has_nan = any_set(b, at, flags, &axes, op.keepdims);
            let nan = b.scalar_f32(&at.hint("nan_value"), f32::NAN);
            let out = b.op("Where", vec![has_nan, nan, picked], vec![], &at.hint("out"));
            to_out_shape(b, at, out)
        }
    }
}

/// ONNX's ArgMax/ArgMin (first index on ties), except that the first NaN along the axis
/// wins where there is one, as in MXNet; the index as a float.
pub(super) fn arg_reduce(b: &mut Builder<'_>, at: &At<'_>, op: &ArgReduce) -> R<()> {
    let mut x = at.input(0)?;
    let axis = match op.axis {
        Some(axis) => ward_graph::ops::resolve_axis(axis, at.xs.len())?,
        None => {
            let flat = b.const_i64(&at.hint("flat"), &[-1]);
            x = b.op("Reshape", vec![x, flat], vec![], &at.hint("flat_x"));
            0
        }
    };
    let name = match op.kind {
        ArgKind::Max => "ArgMax",
        ArgKind::Min => "ArgMin",
    };
    let attrs = || {
        vec![
            attr_int("axis", axis as i64),
            attr_int("keepdims", 1),
            attr_int("select_last_index", 0),
        ]
    };
    let plain = b.op(name, vec![x.clone()], attrs(), &at.hint("plain"));
    let flags = nan_flags(b, at, x);
    let first_nan = b.op(
        "ArgMax",
        vec![flags.clone()],
        attrs(),
        &at.hint("first_nan"),
    );
    let has_nan = any_set(b, at, flags, &[axis], true);
    let index = b.op(
        "Where",
        vec![has_nan, first_nan, plain],
        vec![],
        &at.hint("index"),
    );
    let index = b.op(
        "Cast",
        vec![index],
        vec![attr_int("to", DataType::Float as i64)],
        &at.hint("index_f32"),
    );
    to_out_shape(b, at, index)
}

/// `x` with NaN replaced by the neutral element of `nansum` (0) or `nanprod` (1).
fn nan_replaced(b: &mut Builder<'_>, at: &At<'_>, kind: ReduceKind, x: String) -> String {
    let neutral = if kind == ReduceKind::NanSum { 0.0 } else { 1.0 };
    let neutral = b.scalar_f32(&at.hint("neutral"), neutral);
    let nan = b.op("IsNaN", vec![x.clone()], vec![], &at.hint("nan"));
    b.op("Where", vec![nan, neutral, x], vec![], &at.hint("kept"))
}

/// 1.0 where `x` is NaN, 0.0 elsewhere.
fn nan_flags(b: &mut Builder<'_>, at: &At<'_>, x: String) -> String {
    let nan = b.op("IsNaN", vec![x], vec![], &at.hint("nan"));
    b.op(
        "Cast",
        vec![nan],
        vec![attr_int("to", DataType::Float as i64)],
        &at.hint("nan_flags"),
    )
}

/// A boolean: whether any of the `flags` (1.0 or 0.0) reduced together over `axes` is set.
fn any_set(
    b: &mut Builder<'_>,
    at: &At<'_>,
    flags: String,
    axes: &[usize],
    keepdims: bool,
) -> String {
    let any = reduced(b, at, "ReduceMax", flags, axes, keepdims, "nan_any");
    let zero = b.scalar_f32(&at.hint("zero"), 0.0);
    b.op("Greater", vec![any, zero], vec![], &at.hint("has_nan"))
}

/// ONNX reduction `name` of `x` over `axes` into the node's output.
fn over(
    b: &mut Builder<'_>,
    at: &At<'_>,
    name: &str,
    x: String,
    axes: &[usize],
    keepdims: bool,
) -> R<()> {
    if axes.is_empty() {
        b.push("Identity", vec![x], vec![at.out()?], vec![]);
        return Ok(());
    }
    let out = reduced(b, at, name, x, axes, keepdims, "reduced");
    to_out_shape(b, at, out)
}

/// ONNX reduction `name` of `x` over `axes`: opset 17's ReduceSum takes its axes as an
/// input, the others as an attribute.
fn reduced(
    b: &mut Builder<'_>,
    at: &At<'_>,
    name: &str,
    x: String,
    axes: &[usize],
    keepdims: bool,
    hint: &str,
) -> String {
    let keep = attr_int("keepdims", i64::from(keepdims));
    if name == "ReduceSum" {
        let axes = b.const_i64(&at.hint(&format!("{hint}_axes")), &ints(axes));
        return b.op(name, vec![x, axes], vec![keep], &at.hint(hint));
    }
    b.op(
        name,
        vec![x],
        vec![attr_ints("axes", &ints(axes)), keep],
        &at.hint(hint),
    )
}

/// `x` reshaped into the node's output: every axis reduced gives shape (1) in MXNet,
/// where ONNX gives a scalar.
fn to_out_shape(b: &mut Builder<'_>, at: &At<'_>, x: String) -> R<()> {
    let shape = b.const_i64(&at.hint("shape"), &ints(&at.out_shape));
    b.push("Reshape", vec![x, shape], vec![at.out()?], vec![]);
    Ok(())
}
