//! Resizing (adaptive average pooling, bilinear resize, nearest upsampling): linear maps
//! of the data, so the gradient is the transposed map, built from the same weights the
//! forward pass uses ([`ward_graph::interp::resize`]). A `like` input of a bilinear
//! resize gives only its shape and gets no gradient (MXNet gives it zeros).

use ward_graph::interp::resize::{
    adaptive_map, bilinear_map, nearest_map, separable_transposed, AxisMap,
};
use ward_graph::interp::Array;
use ward_graph::ops::pool::AdaptiveAvgPool;
use ward_graph::ops::resize::{BilinearResize, ResizeTarget, UpSampling};

use super::{arrays, Ctx, Rule};

fn spatial(x: &Array) -> Result<(usize, usize), String> {
    match x.shape.as_slice() {
        [_, _, h, w] => Ok((*h, *w)),
        s => Err(format!("data {s:?} must be NCHW")),
    }
}

fn transposed(g: &Array, maps: (&AxisMap, &AxisMap), x: &Array) -> Result<Array, String> {
    separable_transposed("resize gradient", g, maps.0, maps.1, &x.shape).map_err(|e| e.to_string())
}

pub fn adaptive_avg_pool(ctx: &Ctx<'_>, op: &AdaptiveAvgPool) -> Rule {
    let x = ctx.input(0)?;
    let (h, w) = spatial(x)?;
    let maps = (adaptive_map(h, op.height), adaptive_map(w, op.width));
    Ok(vec![Some(transposed(
        &ctx.grad(0)?,
        (&maps.0, &maps.1),
        x,
    )?)])
}

pub fn bilinear_resize(ctx: &Ctx<'_>, op: &BilinearResize) -> Rule {
    let x = ctx.input(0)?;
    let (h, w) = spatial(x)?;
    let like = if op.target == ResizeTarget::Like {
        Some(ctx.input(1)?.shape.as_slice())
    } else {
        None
    };
    let (oh, ow) = op.output_size(h, w, like)?;
    let maps = (
        bilinear_map(h, oh, op.align_corners),
        bilinear_map(w, ow, op.align_corners),
    );
    let dx = transposed(&ctx.grad(0)?, (&maps.0, &maps.1), x)?;
    let mut grads = vec![Some(dx)];
    if like.is_some() {
        grads.push(None);
    }
    Ok(grads)
}

/// Each input gets the transposed repetition of its part of the gradient: its channels'
/// slice when concatenated, the whole gradient when summed.
pub fn upsampling(ctx: &Ctx<'_>, op: &UpSampling) -> Rule {
    let g = ctx.grad(0)?;
    let shapes: Vec<&[usize]> = ctx.ins.iter().map(|x| x.shape.as_slice()).collect();
    let (scales, _) = op.scales(&shapes)?;
    let mut start = 0;
    let mut grads = Vec::with_capacity(ctx.ins.len());
    for (x, &s) in ctx.ins.iter().zip(&scales) {
        let (h, w) = spatial(x)?;
        let c = x.shape.get(1).copied().unwrap_or(0);
        let part = if op.sum {
            g.clone()
        } else {
            arrays::slice_axis(&g, 1, start, c)?
        };
        start += c;
        let maps = (nearest_map(h, s), nearest_map(w, s));
        grads.push(Some(transposed(&part, (&maps.0, &maps.1), x)?));
    }
    Ok(grads)
}
