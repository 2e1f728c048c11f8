//! Indexing: embedding rows gathered by clipped, truncated ids.

use tract_onnx::pb::tensor_proto::DataType;
use ward_graph::ops::index::Embedding;

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
