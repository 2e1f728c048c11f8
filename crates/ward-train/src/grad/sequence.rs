//! SequenceMask, SequenceReverse and SequenceLast: the data's gradient goes back to the
//! elements read (a masked step reads none, reversing is its own inverse); the lengths
//! get zero, as MXNet 1.9.1 gives them.

use ward_graph::interp::sequence::{sequence_last_grad, sequence_mask, sequence_reverse};
use ward_graph::interp::Array;
use ward_graph::ops::sequence::{SequenceLast, SequenceMask, SequenceReverse};

use super::{Ctx, Rule};

/// The lengths, if the node reads them, and their zero gradient.
fn lengths<'a>(
    ctx: &Ctx<'a>,
    used: bool,
) -> Result<(Option<&'a Array>, Vec<Option<Array>>), String> {
    if !used {
        return Ok((None, vec![]));
    }
    let l = ctx.input(1)?;
    let zero = Array::zeros(l.shape.clone()).map_err(|e| e.to_string())?;
    Ok((Some(l), vec![Some(zero)]))
}

pub fn sequence_mask_grad(ctx: &Ctx<'_>, op: &SequenceMask) -> Rule {
    let (l, rest) = lengths(ctx, op.use_sequence_length)?;
    let dx = sequence_mask(&ctx.grad(0)?, l, op.axis, 0.0).map_err(|e| e.to_string())?;
    Ok([vec![Some(dx)], rest].concat())
}

pub fn sequence_reverse_grad(ctx: &Ctx<'_>, op: &SequenceReverse) -> Rule {
    let (l, rest) = lengths(ctx, op.use_sequence_length)?;
    let dx = sequence_reverse(&ctx.grad(0)?, l).map_err(|e| e.to_string())?;
    Ok([vec![Some(dx)], rest].concat())
}

pub fn sequence_last(ctx: &Ctx<'_>, op: &SequenceLast) -> Rule {
    let (l, rest) = lengths(ctx, op.use_sequence_length)?;
    let dx =
        sequence_last_grad(ctx.input(0)?, l, op.axis, &ctx.grad(0)?).map_err(|e| e.to_string())?;
    Ok([vec![Some(dx)], rest].concat())
}
