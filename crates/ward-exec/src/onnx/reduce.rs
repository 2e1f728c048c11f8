//! Reductions.

use ward_graph::ops::reduce::Mean;

use super::builder::{attr_int, attr_ints, ints, At, Builder, R};

pub(super) fn mean(b: &mut Builder<'_>, at: &At<'_>, op: &Mean) -> R<()> {
    let axes = op.axes(at.xs.len())?;
    let x = at.input(0)?;
    if axes.is_empty() {
        b.push("Identity", vec![x], vec![at.out()?], vec![]);
        return Ok(());
    }
    let reduced = b.op(
        "ReduceMean",
        vec![x],
        vec![
            attr_ints("axes", &ints(&axes)),
            attr_int("keepdims", i64::from(op.keepdims)),
        ],
        &at.hint("reduced"),
    );
    // Every axis reduced gives shape (1) in MXNet, where ONNX gives a scalar.
    let shape = b.const_i64(&at.hint("shape"), &ints(&at.out_shape));
    b.push("Reshape", vec![reduced, shape], vec![at.out()?], vec![]);
    Ok(())
}
