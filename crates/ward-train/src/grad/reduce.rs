//! Reductions, with MXNet 1.9.1's backward rules (`ReduceAxesBackwardUseInOut`): each
//! input element's gradient is the head gradient of the output element it fed, times a
//! factor of the element and that output.

use ward_graph::interp::Array;
use ward_graph::ops::reduce::{reduced_shape, Mean, Reduce, ReduceKind};

use super::{arrays, Ctx, Rule};

/// Every input element gets the gradient of the mean it fed, divided by how many fed it.
pub fn mean(ctx: &Ctx<'_>, op: &Mean) -> Rule {
    let x = ctx.input(0)?;
    let reduced = op.axes(x.shape.len())?;
    let count: usize = reduced
        .iter()
        .map(|&a| x.shape.get(a).copied().unwrap_or(1))
        .product();
    let scale = 1.0 / count.max(1) as f64;
    spread(ctx, &reduced, |_, _, g| g * scale)
}

/// `sum` passes the gradient; `prod` scales it by the product over the element (MXNet:
/// `out / x`, so NaN or ±∞ where the element is 0); `max` and `min` give it whole to every
/// element equal to the result (all of a tie); the NaN-skipping variants give a NaN
/// element none; the L1 norm scales it by the element's sign, the L2 norm by `x / out`.
pub fn reduce(ctx: &Ctx<'_>, op: &Reduce) -> Rule {
    let x = ctx.input(0)?;
    let reduced = op.axes(x.shape.len())?;
    match op.kind {
        ReduceKind::Sum => spread(ctx, &reduced, |_, _, g| g),
        ReduceKind::Prod => spread(ctx, &reduced, |x, out, g| g * (out / x)),
        ReduceKind::NanSum => spread(ctx, &reduced, |x, _, g| if x.is_nan() { 0.0 } else { g }),
        ReduceKind::NanProd => spread(
            ctx,
            &reduced,
            |x, out, g| {
                if x.is_nan() {
                    0.0
                } else {
                    g * (out / x)
                }
            },
        ),
        ReduceKind::Max | ReduceKind::Min => {
            spread(ctx, &reduced, |x, out, g| if x == out { g } else { 0.0 })
        }
        ReduceKind::L1 => spread(ctx, &reduced, |x, _, g| g * sign(x)),
        ReduceKind::L2 => spread(ctx, &reduced, |x, out, g| g * (x / out)),
    }
}

/// `argmax` and `argmin` pass no gradient (MXNet's are zero).
pub fn arg_reduce(ctx: &Ctx<'_>) -> Rule {
    let x = ctx.input(0)?;
    Ok(vec![Some(
        Array::zeros(x.shape.clone()).map_err(|e| e.to_string())?,
    )])
}

/// MXNet's `sign`: 0 at 0 (and NaN at NaN).
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

/// The input's gradient: `f(x, out, g)` at every input element, with the output element
/// and head gradient it fed (the `reduced` axes of the input collapse onto one output
/// element; with none reduced, each element is its own output).
fn spread(ctx: &Ctx<'_>, reduced: &[usize], f: impl Fn(f64, f64, f64) -> f64) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    // The output and its gradient with the reduced axes kept as 1, broadcast back over them.
    let kept = reduced_shape(&x.shape, reduced, true);
    let g = arrays::reshaped(&g, &kept)?;
    let out = arrays::reshaped(ctx.output(0)?, &kept)?;
    let offsets = arrays::broadcast_offsets(&kept, &x.shape)?;
    let data = x
        .data
        .iter()
        .zip(&offsets)
        .map(|(&xv, &o)| {
            let at = |a: &Array| a.data.get(o).copied().unwrap_or(0.0);
            f(xv, at(&out), at(&g))
        })
        .collect();
    Ok(vec![Some(
        Array::new(x.shape.clone(), data).map_err(|e| e.to_string())?,
    )])
}
