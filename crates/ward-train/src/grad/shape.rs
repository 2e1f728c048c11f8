//! Operators that only move elements: the gradient moves them back.

use ward_graph::interp::shape::{permuted, strided_scatter, swap_axes as swap};
use ward_graph::interp::Array;
use ward_graph::ops::shape::{Concat, Split, Stack, Strided, SwapAxes, Transpose};

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
