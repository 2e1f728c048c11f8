//! Convolution and Deconvolution: every product the forward pass summed sends the
//! output's gradient back to both of its factors; the bias gets each channel's sum.
//!
//! The deformable convolutions ([`deformable_conv`]) as MXNet's backward computes them:
//! the columns' gradient (each group's weight transposed times the output's gradient)
//! goes back to the data through each sample's bilinear weights (`deformable_col2im`), to
//! the offsets through the weights' slopes along the rows and columns, summed over the
//! deformable group's channels (`deformable_col2im_coord`), and, for DCNv2, to the mask as
//! the unmasked sample; the weight gets the output's gradient times the columns, the bias
//! each channel's sum. A sample MXNet's forward pass gives 0 (outside the plane, a NaN
//! offset) sends nothing anywhere.

use ward_graph::interp::conv::{conv_taps, deconv_taps};
use ward_graph::interp::deform::{columns, group_samples, offsets_f32, Geometry};
use ward_graph::interp::eval::{conv_params, deconv_params};
use ward_graph::interp::Array;
use ward_graph::ops::conv::{Conv, Deconv, DeformableConv};

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

pub fn deformable_conv(ctx: &Ctx<'_>, op: &DeformableConv) -> Rule {
    let ins: Vec<&Array> = (0..ctx.ins.len())
        .map(|i| ctx.input(i))
        .collect::<Result<_, _>>()?;
    let shapes: Vec<&[usize]> = ins.iter().map(|a| a.shape.as_slice()).collect();
    let geo = Geometry::new(op, &shapes)?;
    let wi = op.weight_input();
    let (x, w) = (ctx.input(0)?, ctx.input(wi)?);
    let offset = offsets_f32(ctx.input(1)?);
    let mask = if op.modulated {
        Some(ctx.input(2)?.data.as_slice())
    } else {
        None
    };
    let g = ctx.grad(0)?;
    let (taps, positions) = (geo.taps(), geo.positions());
    let plane = geo.height * geo.width;
    let (cg, fg) = (geo.channels / op.groups, geo.filters / op.groups);
    let per_dg = geo.channels / op.deformable_groups;
    let rows = cg * taps;
    let mut dx = zeros_like(x)?;
    let mut dw = zeros_like(w)?;
    let mut doff = zeros_like(ctx.input(1)?)?;
    let mut dmask = if op.modulated {
        Some(zeros_like(ctx.input(2)?)?)
    } else {
        None
    };
    let short = || "a gradient buffer is shorter than its shape".to_string();
    for n in 0..geo.batch {
        for grp in 0..op.groups {
            let col = columns(op, &geo, &x.data, &offset, mask, n, grp);
            // The columns' gradient: the group's weight transposed times dY.
            let mut dcol = vec![0.0f64; rows * positions];
            for fl in 0..fg {
                let f = grp * fg + fl;
                let y0 = (n * geo.filters + f) * positions;
                let dy = g.data.get(y0..y0 + positions).ok_or_else(short)?;
                let wrow = w.data.get(f * rows..(f + 1) * rows).ok_or_else(short)?;
                let dwrow = dw
                    .data
                    .get_mut(f * rows..(f + 1) * rows)
                    .ok_or_else(short)?;
                for (k, (&wv, dwv)) in wrow.iter().zip(dwrow.iter_mut()).enumerate() {
                    let c_row = col
                        .get(k * positions..(k + 1) * positions)
                        .ok_or_else(short)?;
                    let d_row = dcol
                        .get_mut(k * positions..(k + 1) * positions)
                        .ok_or_else(short)?;
                    for ((&gy, &cv), dc) in dy.iter().zip(c_row).zip(d_row.iter_mut()) {
                        *dwv += gy * cv;
                        *dc += wv * gy;
                    }
                }
            }
            // Back through the samples, channel by channel.
            let mut cached = None;
            for cl in 0..cg {
                let c = grp * cg + cl;
                let dgi = c / per_dg;
                if cached.as_ref().is_none_or(|(d, _)| *d != dgi) {
                    cached = Some((dgi, group_samples(op, &geo, &offset, mask, n, dgi)));
                }
                let Some((_, samples)) = cached.as_ref() else {
                    continue;
                };
                let base = (n * geo.channels + c) * plane;
                let data = x.data.get(base..base + plane).ok_or_else(short)?;
                for tap in 0..taps {
                    for p in 0..positions {
                        let gc = dcol
                            .get((cl * taps + tap) * positions + p)
                            .copied()
                            .ok_or_else(short)?;
                        let Some((Some(s), m)) = samples.get(tap * positions + p) else {
                            continue;
                        };
                        for (corner, &wk) in s.corners.iter().zip(&s.weights) {
                            if let Some(slot) = corner.and_then(|at| dx.data.get_mut(base + at)) {
                                *slot += f64::from(wk) * m * gc;
                            }
                        }
                        let off0 =
                            ((n * op.deformable_groups + dgi) * 2 * taps + 2 * tap) * positions + p;
                        let [sh, sw] = s.slopes(data);
                        *doff.data.get_mut(off0).ok_or_else(short)? += sh * m * gc;
                        *doff.data.get_mut(off0 + positions).ok_or_else(short)? += sw * m * gc;
                        if let Some(dm) = dmask.as_mut() {
                            let at =
                                ((n * op.deformable_groups + dgi) * taps + tap) * positions + p;
                            *dm.data.get_mut(at).ok_or_else(short)? += s.value(data) * gc;
                        }
                    }
                }
            }
        }
    }
    let mut grads = vec![Some(dx), Some(doff)];
    if let Some(dm) = dmask {
        grads.push(Some(dm));
    }
    grads.push(Some(dw));
    if op.bias {
        grads.push(Some(bias_grad(&g, geo.filters)?));
    }
    Ok(grads)
}
