//! Embedding, Pad, take, pick and gather_nd: gradients that go back to the
//! elements read; one_hot's indices get none.

use ward_graph::interp::embedding::embedding_row;
use ward_graph::interp::index::{gather_nd_sources, pick_sources, take_sources};
use ward_graph::interp::shape::{pad_sources, PadMode as KPad};
use ward_graph::interp::Array;
use ward_graph::ops::index::{Pick, Take};
use ward_graph::ops::shape::{Pad, PadMode};

use super::{Ctx, Rule};

/// Embedding: each id's row of the output gradient is added to the weight row it read
/// (ids truncated and clipped as the forward pass reads them); the ids get none.
pub fn embedding(ctx: &Ctx<'_>) -> Rule {
    let ids = ctx.input(0)?;
    let weight = ctx.input(1)?;
    let g = ctx.grad(0)?;
    let (rows, dim) = match weight.shape.as_slice() {
        [rows, dim] => (*rows, *dim),
        other => return Err(format!("weight has shape {other:?}, expected 2 axes")),
    };
    let mut dw = Array::zeros(weight.shape.clone()).map_err(|e| e.to_string())?;
    for (&id, g_row) in ids.data.iter().zip(g.data.chunks(dim.max(1))) {
        let r = embedding_row(id, rows);
        let row = dw
            .data
            .get_mut(r * dim..(r + 1) * dim)
            .ok_or("an id's row is outside the weight")?;
        for (d, v) in row.iter_mut().zip(g_row) {
            *d += v;
        }
    }
    Ok(vec![None, Some(dw)])
}

/// Pad: every output element's gradient goes to the input element it copied (edge and
/// reflect copy some more than once, and those sum); constant padding gets none.
pub fn pad(ctx: &Ctx<'_>, op: &Pad) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    let mode = match op.mode {
        PadMode::Constant => KPad::Constant,
        PadMode::Edge => KPad::Edge,
        PadMode::Reflect => KPad::Reflect,
    };
    let (_, sources) = pad_sources(&x.shape, mode, &op.pads).map_err(|e| e.to_string())?;
    let mut dx = Array::zeros(x.shape.clone()).map_err(|e| e.to_string())?;
    for (source, v) in sources.iter().zip(&g.data) {
        if let Some(d) = source.and_then(|s| dx.data.get_mut(s)) {
            *d += v;
        }
    }
    Ok(vec![Some(dx)])
}

/// The output gradient added into a zero gradient of `data` at each output element's
/// source offset (indices read twice sum, as MXNet's backward scatter-adds); the
/// indices get none (MXNet gives them zeros).
fn scattered(data: &Array, g: &Array, sources: &[usize]) -> Rule {
    if sources.len() != g.data.len() {
        return Err(format!(
            "the gradient has {} values for {} gathered elements",
            g.data.len(),
            sources.len()
        ));
    }
    let mut dx = Array::zeros(data.shape.clone()).map_err(|e| e.to_string())?;
    for (&s, v) in sources.iter().zip(&g.data) {
        *dx.data
            .get_mut(s)
            .ok_or("a gathered element is outside the data")? += v;
    }
    Ok(vec![Some(dx), None])
}

/// take (MXNet's `TakeOpBackward`): scatter-add along the axis by the indices as read.
pub fn take(ctx: &Ctx<'_>, op: &Take) -> Rule {
    let x = ctx.input(0)?;
    let sources =
        take_sources(&x.shape, ctx.input(1)?, op.axis, op.mode).map_err(|e| e.to_string())?;
    scattered(x, &ctx.grad(0)?, &sources)
}

/// pick: the gradient lands on the picked element of each row.
pub fn pick(ctx: &Ctx<'_>, op: &Pick) -> Rule {
    let x = ctx.input(0)?;
    let sources =
        pick_sources(&x.shape, ctx.input(1)?, op.axis, op.mode).map_err(|e| e.to_string())?;
    scattered(x, &ctx.grad(0)?, &sources)
}

/// gather_nd (MXNet's backward is `scatter_nd` with addition): each addressed slice
/// gets the gradient of every output that read it.
pub fn gather_nd(ctx: &Ctx<'_>) -> Rule {
    let x = ctx.input(0)?;
    let (sources, _) = gather_nd_sources(&x.shape, ctx.input(1)?).map_err(|e| e.to_string())?;
    scattered(x, &ctx.grad(0)?, &sources)
}
