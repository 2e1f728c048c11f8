//! Per-coordinate adaptive rates: RMSProp, AdaGrad, AdaDelta and FTRL.
//!
//! * RMSProp (`rmsprop_update`): `g' = clip(rescale*g + wd*w)`,
//!   `n = (1-gamma1)*g'^2 + gamma1*n`, `w -= lr * g'/sqrt(n + epsilon)`, then the weight
//!   clipped to `clip_weights`. Centered (`rmspropalex_update`, Graves):
//!   also `gbar = (1-gamma1)*g' + gamma1*gbar`,
//!   `delta = gamma2*delta - lr*g'/sqrt(n - gbar^2 + epsilon)`, `w += delta`.
//! * AdaGrad (Python NDArray arithmetic): `g' = clip(rescale*g)`, `h += g'^2`,
//!   `w += (g'/sqrt(h + eps) + wd*w) * -lr`: weight decay outside the adaptive scaling.
//! * AdaDelta (Python): `g' = clip(rescale*g)`, the accumulators, and
//!   `w -= delta + wd*w`. There is no learning rate in MXNet's AdaDelta: `learning_rate`,
//!   `lr_mult` and a schedule change nothing. (MXNet also scales the caller's gradient
//!   array in place, `grad *= rescale_grad`; ward's gradient is read-only.)
//! * FTRL (`ftrl_update`): `g' = clip(rescale*g)`,
//!   `z += g' - (sqrt(n + g'^2) - sqrt(n)) * w / lr`, `n += g'^2`,
//!   `w = (sign(z)*lamda1 - z) / ((beta + sqrt(n))/lr + wd)` where `|z| > lamda1`, else 0.

use super::{clip, ParamUpdate, Rates};
use super::{AdaDelta, AdaGrad, Ftrl, RmsProp};

fn clip_f32(c: Option<f64>) -> Option<f32> {
    c.map(|c| c as f32)
}

/// RMSProp (plain or centered) for one parameter.
pub(crate) fn rmsprop(s: &RmsProp, p: &mut ParamUpdate<'_>, r: &Rates) {
    let (lr, wd, rescale, eps) = (
        r.lr as f32,
        r.wd as f32,
        s.rescale_grad as f32,
        s.epsilon as f32,
    );
    let (g1, g2) = (s.gamma1 as f32, s.gamma2 as f32);
    let c = clip_f32(s.clip_gradient);
    let cw = clip_f32(s.clip_weights);
    let grad = p.grad;
    let weight = &mut *p.weight;
    let rescaled = |g: f32, w: f32| {
        let gr = rescale * g + wd * w;
        match c {
            Some(c) => clip(gr, c),
            None => gr,
        }
    };
    match p.state.tensors.as_mut_slice() {
        [(_, n)] => {
            for ((w, &g), n) in weight.iter_mut().zip(grad).zip(n) {
                let gr = rescaled(g, *w);
                *n = (1.0 - g1) * (gr * gr) + g1 * *n;
                let mut nw = *w - lr * (gr / (*n + eps).sqrt());
                if let Some(cw) = cw {
                    nw = clip(nw, cw);
                }
                *w = nw;
            }
        }
        [(_, n), (_, gbar), (_, delta)] => {
            for ((((w, &g), n), gb), dl) in weight.iter_mut().zip(grad).zip(n).zip(gbar).zip(delta)
            {
                let gr = rescaled(g, *w);
                *n = (1.0 - g1) * gr * gr + g1 * *n;
                *gb = (1.0 - g1) * gr + g1 * *gb;
                *dl = g2 * *dl - (lr * gr / (*n - *gb * *gb + eps).sqrt());
                let nw = *w + *dl;
                *w = match cw {
                    Some(cw) => clip(nw, cw),
                    None => nw,
                };
            }
        }
        _ => {}
    }
}

/// AdaGrad for one parameter.
pub(crate) fn adagrad(s: &AdaGrad, p: &mut ParamUpdate<'_>, r: &Rates) {
    let (lr, wd, rescale, eps) = (
        r.lr as f32,
        r.wd as f32,
        s.rescale_grad as f32,
        s.eps as f32,
    );
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    let weight = &mut *p.weight;
    if let [(_, history)] = p.state.tensors.as_mut_slice() {
        for ((w, &g), h) in weight.iter_mut().zip(grad).zip(history) {
            let mut g = g * rescale;
            if let Some(c) = c {
                g = clip(g, c);
            }
            *h += g * g;
            let div = g / (*h + eps).sqrt();
            *w += (div + *w * wd) * -lr;
        }
    }
}

/// AdaDelta for one parameter.
pub(crate) fn adadelta(s: &AdaDelta, p: &mut ParamUpdate<'_>, r: &Rates) {
    let (wd, rescale, eps) = (r.wd as f32, s.rescale_grad as f32, s.epsilon as f32);
    let (rho, one_rho) = (s.rho as f32, (1.0 - s.rho) as f32);
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    let weight = &mut *p.weight;
    if let [(_, acc_g), (_, acc_delta)] = p.state.tensors.as_mut_slice() {
        for (((w, &g), ag), ad) in weight.iter_mut().zip(grad).zip(acc_g).zip(acc_delta) {
            let mut g = g * rescale;
            if let Some(c) = c {
                g = clip(g, c);
            }
            *ag *= rho;
            *ag += g * one_rho * g;
            let delta = (*ad + eps).sqrt() / (*ag + eps).sqrt() * g;
            *ad *= rho;
            *ad += delta * one_rho * delta;
            *w -= delta + *w * wd;
        }
    }
}

/// `sign` as mshadow's `sign::Map`: -1, 0 or 1.
#[inline]
fn sign(x: f32) -> f32 {
    if x < 0.0 {
        -1.0
    } else if x > 0.0 {
        1.0
    } else {
        0.0
    }
}

/// FTRL for one parameter.
pub(crate) fn ftrl(s: &Ftrl, p: &mut ParamUpdate<'_>, r: &Rates) {
    let (lr, wd, rescale) = (r.lr as f32, r.wd as f32, s.rescale_grad as f32);
    let (lamda1, beta) = (s.lamda1 as f32, s.beta as f32);
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    let weight = &mut *p.weight;
    if let [(_, z), (_, n)] = p.state.tensors.as_mut_slice() {
        for (((w, &g), z), n) in weight.iter_mut().zip(grad).zip(z).zip(n) {
            let mut gr = g * rescale;
            if let Some(c) = c {
                gr = clip(gr, c);
            }
            *z += gr - ((*n + gr * gr).sqrt() - n.sqrt()) * *w / lr;
            *n += gr * gr;
            let gt = if z.abs() > lamda1 { 1.0 } else { 0.0 };
            *w = (sign(*z) * lamda1 - *z) / ((beta + n.sqrt()) / lr + wd) * gt;
        }
    }
}
