//! Indexing: embedding rows gathered by clipped, truncated ids; MXNet's take, pick, gather_nd and one_hot (float indices truncated toward
//! zero, as the reference interpreter's `interp::index` reads them).

use tract_onnx::pb::tensor_proto::DataType;
use ward_graph::ops::index::{Embedding, IndexMode, OneHot, Pick, Take};
use ward_graph::ops::resolve_axis;

use super::builder::{attr_int, attr_ints, ints, At, Builder, R};

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

/// Float indices on an axis of `size` as int64 ids by `mode`: clamped to [0, size − 1]
/// and cast (the cast truncates toward zero; clamping first gives the same id for every
/// finite value, and a NaN casts to 0), or cast and taken modulo the size (ONNX `Mod`
/// with `fmod` 0 gives the divisor's sign: −1 is the last).
fn mode_ids(b: &mut Builder<'_>, at: &At<'_>, idx: String, size: usize, mode: IndexMode) -> String {
    let cast = vec![attr_int("to", DataType::Int64 as i64)];
    match mode {
        IndexMode::Clip => {
            let lo = b.scalar_f32(&at.hint("min"), 0.0);
            let hi = b.scalar_f32(&at.hint("max"), size.saturating_sub(1) as f32);
            let clipped = b.op("Clip", vec![idx, lo, hi], vec![], &at.hint("clipped"));
            b.op("Cast", vec![clipped], cast, &at.hint("ids"))
        }
        IndexMode::Wrap => {
            let ids = b.op("Cast", vec![idx], cast, &at.hint("truncated"));
            let n = b.scalar_i64(&at.hint("size"), size as i64);
            b.op(
                "Mod",
                vec![ids, n],
                vec![attr_int("fmod", 0)],
                &at.hint("ids"),
            )
        }
    }
}

/// `take`: ONNX `Gather` along the axis, whose output shape is MXNet's.
pub(super) fn take(b: &mut Builder<'_>, at: &At<'_>, op: &Take) -> R<()> {
    let a = resolve_axis(op.axis, at.xs.len())?;
    let ids = mode_ids(b, at, at.input(1)?, at.x_dim(a)?, op.mode);
    b.push(
        "Gather",
        vec![at.input(0)?, ids],
        vec![at.out()?],
        vec![attr_int("axis", a as i64)],
    );
    Ok(())
}

/// `pick`: the ids shaped as the data with the axis at 1, ONNX `GatherElements` along
/// the axis, and the result reshaped to the output (the axis dropped or kept).
pub(super) fn pick(b: &mut Builder<'_>, at: &At<'_>, op: &Pick) -> R<()> {
    let a = resolve_axis(op.axis, at.xs.len())?;
    let ids = mode_ids(b, at, at.input(1)?, at.x_dim(a)?, op.mode);
    let mut kept = at.xs.clone();
    if let Some(d) = kept.get_mut(a) {
        *d = 1;
    }
    let ids = b.reshape(ids, &kept, &at.hint("kept_ids"));
    let picked = b.op(
        "GatherElements",
        vec![at.input(0)?, ids],
        vec![attr_int("axis", a as i64)],
        &at.hint("picked"),
    );
    let shape = b.const_i64(&at.hint("shape"), &ints(&at.out_shape));
    b.push("Reshape", vec![picked, shape], vec![at.out()?], vec![]);
    Ok(())
}

/// `gather_nd`: each of the M index rows has its axis's size added where negative, is
/// clamped to the axis and cast to int64 (as `interp::index::gather_nd_index`), and the
/// rows move last for ONNX `GatherND`.
pub(super) fn gather_nd(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    let idx_shape = b.shape(at.source(1)?)?;
    let m = *idx_shape.first().ok_or("indices have no axes")?;
    let sizes = at
        .xs
        .get(..m)
        .ok_or("indices address more axes than data has")?;
    let mut dims = vec![1; idx_shape.len()];
    if let Some(d) = dims.first_mut() {
        *d = m;
    }
    let size_f: Vec<f32> = sizes.iter().map(|&s| s as f32).collect();
    let last_f: Vec<f32> = sizes.iter().map(|&s| s.saturating_sub(1) as f32).collect();
    let size_c = b.const_f32(&at.hint("sizes"), &dims, &size_f);
    let last_c = b.const_f32(&at.hint("lasts"), &dims, &last_f);
    let zero = b.scalar_f32(&at.hint("zero"), 0.0);
    let idx = at.input(1)?;
    let negative = b.op(
        "Less",
        vec![idx.clone(), zero.clone()],
        vec![],
        &at.hint("negative"),
    );
    let shifted = b.op(
        "Add",
        vec![idx.clone(), size_c],
        vec![],
        &at.hint("shifted"),
    );
    let idx = b.op(
        "Where",
        vec![negative, shifted, idx],
        vec![],
        &at.hint("from_end"),
    );
    let idx = b.op("Max", vec![idx, zero], vec![], &at.hint("at_least_0"));
    let idx = b.op("Min", vec![idx, last_c], vec![], &at.hint("clamped"));
    let ids = b.op(
        "Cast",
        vec![idx],
        vec![attr_int("to", DataType::Int64 as i64)],
        &at.hint("ids"),
    );
    let mut perm: Vec<usize> = (1..idx_shape.len()).collect();
    perm.push(0);
    let ids = b.op(
        "Transpose",
        vec![ids],
        vec![attr_ints("perm", &ints(&perm))],
        &at.hint("ids_last"),
    );
    b.push("GatherND", vec![at.input(0)?, ids], vec![at.out()?], vec![]);
    Ok(())
}

/// `one_hot`: the indices truncated toward zero in floating point (sign · floor(|x|), so
/// a NaN stays NaN and matches nothing), compared with 0 … depth − 1 along a new last
/// axis, and `on_value` where equal, `off_value` elsewhere.
pub(super) fn one_hot(b: &mut Builder<'_>, at: &At<'_>, op: &OneHot) -> R<()> {
    let x = at.input(0)?;
    let sign = b.op("Sign", vec![x.clone()], vec![], &at.hint("sign"));
    let abs = b.op("Abs", vec![x], vec![], &at.hint("abs"));
    let floor = b.op("Floor", vec![abs], vec![], &at.hint("floor"));
    let t = b.op("Mul", vec![sign, floor], vec![], &at.hint("truncated"));
    let mut lifted = at.xs.clone();
    lifted.push(1);
    let t = b.reshape(t, &lifted, &at.hint("lifted"));
    let range: Vec<f32> = (0..op.depth).map(|k| k as f32).collect();
    let range = b.const_f32(&at.hint("range"), &[op.depth], &range);
    let hit = b.op("Equal", vec![t, range], vec![], &at.hint("hit"));
    let on = b.scalar_f32(&at.hint("on"), op.on_value as f32);
    let off = b.scalar_f32(&at.hint("off"), op.off_value as f32);
    b.push("Where", vec![hit, on, off], vec![at.out()?], vec![]);
    Ok(())
}
