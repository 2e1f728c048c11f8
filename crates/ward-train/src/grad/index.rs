//! Embedding and Pad: gradients that go back to the elements read.

use ward_graph::interp::embedding::embedding_row;
use ward_graph::interp::shape::{pad_sources, PadMode as KPad};
use ward_graph::interp::Array;
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
