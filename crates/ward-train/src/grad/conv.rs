//! Convolution and Deconvolution: every product the forward pass summed sends the
//! output's gradient back to both of its factors; the bias gets each channel's sum.

use ward_graph::interp::conv::{conv_taps, deconv_taps};
use ward_graph::interp::eval::{conv_params, deconv_params};
use ward_graph::interp::Array;
use ward_graph::ops::conv::{Conv, Deconv};

use super::arrays::zeros_like;
use super::{Ctx, Rule};

/// The bias gradient: the output gradient summed over every axis but the channels (1).
fn bias_grad(g: &Array, channels: usize) -> Result<Array, String> {
    let inner: usize = g.shape.iter().skip(2).product();
    let mut db = vec![0.0; channels];
    for (i, v) in g.data.iter().enumerate() {
        let c = (i / inner.max(1)) % channels.max(1);
        if let Some(d) = db.get_mut(c) {
            *d += v;
        }
    }
    Array::new(vec![channels], db).map_err(|e| e.to_string())
}

/// The tap visitor of both rules: each product `x[xi]·w[wi]` summed into `y[yi]` sends
/// `dy[yi]` to both factors.
fn backward_tap<'a>(
    (x, w, g): (&'a Array, &'a Array, &'a Array),
    dx: &'a mut Array,
    dw: &'a mut Array,
) -> impl FnMut(usize, usize, usize) + 'a {
    move |xi, wi, yi| {
        let gy = g.data.get(yi).copied().unwrap_or(0.0);
        if let (Some(d), Some(&wv)) = (dx.data.get_mut(xi), w.data.get(wi)) {
            *d += gy * wv;
        }
        if let (Some(d), Some(&xv)) = (dw.data.get_mut(wi), x.data.get(xi)) {
            *d += gy * xv;
        }
    }
}

pub fn conv(ctx: &Ctx<'_>, op: &Conv) -> Rule {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let g = ctx.grad(0)?;
    let (mut dx, mut dw) = (zeros_like(x)?, zeros_like(w)?);
    let bias = if op.bias {
        Some(&ctx.input(2)?.shape[..])
    } else {
        None
    };
    let tap = backward_tap((x, w, &g), &mut dx, &mut dw);
    conv_taps(&x.shape, &w.shape, bias, &conv_params(op), tap).map_err(|e| e.to_string())?;
    let mut grads = vec![Some(dx), Some(dw)];
    if op.bias {
        grads.push(Some(bias_grad(&g, w.shape.first().copied().unwrap_or(0))?));
    }
    Ok(grads)
}

pub fn deconv(ctx: &Ctx<'_>, op: &Deconv) -> Rule {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let g = ctx.grad(0)?;
    let (mut dx, mut dw) = (zeros_like(x)?, zeros_like(w)?);
    let bias = if op.bias {
        Some(&ctx.input(2)?.shape[..])
    } else {
        None
    };
    let tap = backward_tap((x, w, &g), &mut dx, &mut dw);
    deconv_taps((&x.shape, &w.shape, bias), &deconv_params(op), tap).map_err(|e| e.to_string())?;
    let mut grads = vec![Some(dx), Some(dw)];
    if op.bias {
        let channels = g.shape.get(1).copied().unwrap_or(0);
        grads.push(Some(bias_grad(&g, channels)?));
    }
    Ok(grads)
}
