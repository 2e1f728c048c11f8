//! Operators that only move elements: the gradient moves them back.

use ward_graph::interp::shape::{
    permuted, reverse as reversed, strided_scatter, swap_axes as swap,
};
use ward_graph::interp::Array;
use ward_graph::ops::resolve_axis;
use ward_graph::ops::shape::{
    Concat, Repeat, Reverse, Split, Stack, Strided, SwapAxes, Tile, Transpose,
};

use super::{arrays, Ctx, Rule};

/// Reshape and Flatten: the gradient in the input's shape.
pub fn reshape(ctx: &Ctx<'_>) -> Rule {
    let x = ctx.input(0)?;
    Ok(vec![Some(arrays::reshaped(&ctx.grad(0)?, &x.shape)?)])
}

/// Swapping two axes is its own inverse.
pub fn swap_axes(ctx: &Ctx<'_>, op: &SwapAxes) -> Rule {
    let g = ctx.grad(0)?;
    Ok(vec![Some(
        swap(&g, op.axis1, op.axis2).map_err(|e| e.to_string())?,
    )])
}

/// A permutation's gradient is permuted back by the inverse permutation.
pub fn transpose(ctx: &Ctx<'_>, op: &Transpose) -> Rule {
    let g = ctx.grad(0)?;
    Ok(vec![Some(
        permuted(&g, &op.inverse()).map_err(|e| e.to_string())?,
    )])
}

/// Reversing is its own inverse: the gradient is reversed along the same axes.
pub fn reverse(ctx: &Ctx<'_>, op: &Reverse) -> Rule {
    let g = ctx.grad(0)?;
    Ok(vec![Some(
        reversed(&g, &op.axes).map_err(|e| e.to_string())?,
    )])
}

/// `slice` and `slice_axis`: the gradient goes back where the slice took its elements
/// from; elements not taken get zero.
pub fn strided_slice(
    ctx: &Ctx<'_>,
    ranges: impl FnOnce(&[usize]) -> Result<Vec<Strided>, String>,
) -> Rule {
    let x = ctx.input(0)?;
    let ranges = ranges(&x.shape)?;
    let g = ctx.grad(0)?;
    Ok(vec![Some(
        strided_scatter(&g, &ranges, &x.shape).map_err(|e| e.to_string())?,
    )])
}

/// Each input gets its slice of the gradient along the axis.
pub fn concat(ctx: &Ctx<'_>, op: &Concat) -> Rule {
    let g = ctx.grad(0)?;
    let axis = arrays::axis(op.axis, g.shape.len())?;
    let mut start = 0;
    let mut grads = Vec::with_capacity(ctx.ins.len());
    for x in &ctx.ins {
        let len = x.shape.get(axis).copied().unwrap_or(0);
        grads.push(Some(arrays::slice_axis(&g, axis, start, len)?));
        start += len;
    }
    Ok(grads)
}

/// SliceChannel: the outputs' gradients (zeros where none arrived) joined back along the
/// axis, each given back its axis of 1 when `squeeze` removed it.
pub fn split(ctx: &Ctx<'_>, op: &Split) -> Rule {
    let x = ctx.input(0)?;
    let axis = arrays::axis(op.axis, x.shape.len())?;
    let parts = (0..ctx.outs.len())
        .map(|k| {
            let g = ctx.grad(k)?;
            if op.squeeze {
                let mut shape = g.shape.clone();
                shape.insert(axis.min(shape.len()), 1);
                arrays::reshaped(&g, &shape)
            } else {
                Ok(g)
            }
        })
        .collect::<Result<Vec<Array>, String>>()?;
    Ok(vec![Some(arrays::concat_axis(&parts, axis)?)])
}

/// stack: each input gets its slice along the new axis, without that axis.
pub fn stack(ctx: &Ctx<'_>, op: &Stack) -> Rule {
    let g = ctx.grad(0)?;
    let axis = arrays::axis(op.axis, g.shape.len())?;
    ctx.ins
        .iter()
        .enumerate()
        .map(|(k, x)| {
            let part = arrays::slice_axis(&g, axis, k, 1)?;
            Ok(Some(arrays::reshaped(&part, &x.shape)?))
        })
        .collect()
}

/// The gradient of `x` of shape `from` (the input's shape with axes of 1 inserted) copied
/// into `to` (of the same rank) along the axes where they differ: the sum over those
/// copies, back in the input's shape.
fn summed_back(g: &Array, to: &[usize], from: &[usize], x: &[usize]) -> Rule {
    let g = arrays::reshaped(g, to)?;
    let summed = arrays::sum_to_shape(&g, from)?;
    Ok(vec![Some(arrays::reshaped(&summed, x)?)])
}

/// tile (MXNet's `TileOpBackward`): the output read as (rep, dim) pairs per axis, summed
/// over the reps.
pub fn tile(ctx: &Ctx<'_>, op: &Tile) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    if op.reps.is_empty() {
        return Ok(vec![Some(g)]);
    }
    let (dims, reps) = op.padded(&x.shape);
    let to: Vec<usize> = reps.iter().zip(&dims).flat_map(|(&r, &d)| [r, d]).collect();
    let from: Vec<usize> = dims.iter().flat_map(|&d| [1, d]).collect();
    summed_back(&g, &to, &from, &x.shape)
}

/// repeat (MXNet's `RepeatOpBackward`): the repeated axis read as (dim, count), summed
/// over the count.
pub fn repeat(ctx: &Ctx<'_>, op: &Repeat) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    let (mut from, a) = match op.axis {
        None => (vec![x.len()], 0),
        Some(axis) => (x.shape.clone(), resolve_axis(axis, x.shape.len())?),
    };
    from.insert(a + 1, 1);
    let mut to = from.clone();
    if let Some(slot) = to.get_mut(a + 1) {
        *slot = op.repeats;
    }
    summed_back(&g, &to, &from, &x.shape)
}

/// The broadcasts: the gradient summed over the broadcast axes. `broadcast_like`'s second
/// input, whose shape alone was read, gets zeros (MXNet's `zeros_like` of it).
pub fn broadcast_to(ctx: &Ctx<'_>) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    let mut grads = vec![Some(arrays::sum_to_shape(&g, &x.shape)?)];
    if let Ok(like) = ctx.input(1) {
        grads.push(Some(
            Array::zeros(like.shape.clone()).map_err(|e| e.to_string())?,
        ));
    }
    Ok(grads)
}
