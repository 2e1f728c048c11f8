//! Indexing: embedding rows gathered by clipped, truncated ids; the last step of a
//! sequence.

use tract_onnx::pb::tensor_proto::DataType;
use ward_graph::ops::index::{Embedding, SequenceLast};
use ward_graph::ops::resolve_axis;

use super::builder::{attr_int, At, Builder, R};

pub(super) fn embedding(b: &mut Builder<'_>, at: &At<'_>, op: &Embedding) -> R<()> {
    let lo = b.scalar_f32(&at.hint("min"), 0.0);
    let hi = b.scalar_f32(&at.hint("max"), op.input_dim.saturating_sub(1) as f32);
    let clipped = b.op(
        "Clip",
        vec![at.input(0)?, lo, hi],
        vec![],
        &at.hint("clipped"),
    );
    // Cast truncates toward zero, as MXNet does before clipping; clipping first gives
    // the same index for every finite id.
    let ids = b.op(
        "Cast",
        vec![clipped],
        vec![attr_int("to", DataType::Int64 as i64)],
        &at.hint("ids"),
    );
    b.push(
        "Gather",
        vec![at.input(1)?, ids],
        vec![at.out()?],
        vec![attr_int("axis", 0)],
    );
    Ok(())
}

pub(super) fn sequence_last(b: &mut Builder<'_>, at: &At<'_>, op: &SequenceLast) -> R<()> {
    let a = resolve_axis(op.axis, at.xs.len())?;
    let last = at.x_dim(a)?.checked_sub(1).ok_or("the sequence is empty")?;
    let last = b.scalar_i64(&at.hint("last"), last as i64);
    b.push(
        "Gather",
        vec![at.input(0)?, last],
        vec![at.out()?],
        vec![attr_int("axis", a as i64)],
    );
    Ok(())
}
