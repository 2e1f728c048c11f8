//! The Adam family: Adam, Adamax, Nadam, FTML and LAMB.
//!
//! * Adam (`adam_update`): the bias corrections fold into the rate in `f64`
//!   (`lr * sqrt(1 - beta2^t) / (1 - beta1^t)`, MXNet's Python), then the kernel:
//!   `g' = clip(rescale*g + wd*w)`, `m = beta1*m + (1-beta1)*g'`,
//!   `v = beta2*v + (1-beta2)*g'^2`, `w -= lr*m / (sqrt(v) + epsilon)`. So epsilon is
//!   added to the *uncorrected* root, as in MXNet.
//! * Adamax (Python NDArray arithmetic): `lr / (1 - beta1^t)`, `g' = clip(rescale*g +
//!   wd*w)`, `u = max(beta2*u, |g'|)`, `w -= lr*m/u`.
//! * Nadam (Python): the momentum schedule `m_schedule` is *one* product for the whole
//!   optimizer, multiplied once per parameter update, so with several parameters it
//!   advances several times per step (MXNet's quirk, reproduced: [`OptimizerState`]
//!   holds it, and the order of the parameters in a step matters).
//! * FTML (`ftml_update`, in `f32` with `powf(beta, t)`):
//!   `g' = clip(rescale*g + wd*w)`, `d_t = (1 - beta1^t)/lr * (sqrt(v/(1 - beta2^t)) +
//!   epsilon)`, `z = beta1*z + (1-beta1)*g' - (d_t - beta1*d)*w`, `w = -z/d_t`.
//! * LAMB (`multi_lamb_update`, the aggregated kernel MXNet's updater uses): the moments
//!   of `clip(rescale*g)` (no weight decay inside), `g' = m_hat/(sqrt(v_hat) + epsilon)
//!   + wd*w`, the trust ratio `|w|/|g'|` (the weight norm bounded by `lower_bound`/
//!   `upper_bound`; 1 if either norm is 0), `w -= lr * ratio * g'`.
//!
//! [`OptimizerState`]: super::OptimizerState

use super::{clip, sum_sq, ParamState, ParamUpdate, Rates};
use super::{Adam, Adamax, Ftml, Lamb, Nadam};

/// Two state tensors, mutable.
fn two(state: &mut ParamState) -> Option<(&mut [f32], &mut [f32])> {
    match state.tensors.as_mut_slice() {
        [(_, a), (_, b)] => Some((a.as_mut_slice(), b.as_mut_slice())),
        _ => None,
    }
}

fn clip_f32(c: Option<f64>) -> Option<f32> {
    c.map(|c| c as f32)
}

/// Adam for one parameter.
pub(crate) fn adam(s: &Adam, p: &mut ParamUpdate<'_>, r: &Rates) {
    let t = r.t as f64;
    let coef1 = 1.0 - s.beta1.powf(t);
    let coef2 = 1.0 - s.beta2.powf(t);
    let lr = (r.lr * (coef2.sqrt() / coef1)) as f32;
    let (wd, rescale, eps) = (r.wd as f32, s.rescale_grad as f32, s.epsilon as f32);
    let (b1, b2) = (s.beta1 as f32, s.beta2 as f32);
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    let weight = &mut *p.weight;
    if let Some((mean, var)) = two(p.state) {
        for (((w, &g), m), v) in weight.iter_mut().zip(grad).zip(mean).zip(var) {
            let mut gr = g * rescale + *w * wd;
            if let Some(c) = c {
                gr = clip(gr, c);
            }
            *m = b1 * *m + (1.0 - b1) * gr;
            *v = b2 * *v + (1.0 - b2) * gr * gr;
            *w -= lr * *m / (v.sqrt() + eps);
        }
    }
}

/// Adamax for one parameter.
pub(crate) fn adamax(s: &Adamax, p: &mut ParamUpdate<'_>, r: &Rates) {
    let lr = (r.lr / (1.0 - s.beta1.powf(r.t as f64))) as f32;
    let (wd, rescale) = (r.wd as f32, s.rescale_grad as f32);
    let (b1, one_b1, b2) = (s.beta1 as f32, (1.0 - s.beta1) as f32, s.beta2 as f32);
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    let weight = &mut *p.weight;
    if let Some((mean, u)) = two(p.state) {
        for (((w, &g), m), u) in weight.iter_mut().zip(grad).zip(mean).zip(u) {
            let mut gr = g * rescale + *w * wd;
            if let Some(c) = c {
                gr = clip(gr, c);
            }
            *m *= b1;
            *m += gr * one_b1;
            *u = (*u * b2).max(gr.abs());
            *w -= *m * lr / *u;
        }
    }
}

/// Nadam for one parameter; returns the new `m_schedule`.
pub(crate) fn nadam(s: &Nadam, p: &mut ParamUpdate<'_>, r: &Rates, m_schedule: f64) -> f64 {
    let tf = r.t as f64;
    let momentum_t = s.beta1 * (1.0 - 0.5 * 0.96f64.powf(tf * s.schedule_decay));
    let momentum_t_1 = s.beta1 * (1.0 - 0.5 * 0.96f64.powf((tf + 1.0) * s.schedule_decay));
    let m_schedule = m_schedule * momentum_t;
    let m_schedule_next = m_schedule * momentum_t_1;
    let (lr, wd, rescale, eps) = (
        r.lr as f32,
        r.wd as f32,
        s.rescale_grad as f32,
        s.epsilon as f32,
    );
    let (b1, one_b1) = (s.beta1 as f32, (1.0 - s.beta1) as f32);
    let (b2, one_b2) = (s.beta2 as f32, (1.0 - s.beta2) as f32);
    let gp_div = (1.0 - m_schedule) as f32;
    let mp_div = (1.0 - m_schedule_next) as f32;
    let vp_div = (1.0 - s.beta2.powf(tf)) as f32;
    let (one_mt, mt1) = ((1.0 - momentum_t) as f32, momentum_t_1 as f32);
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    let weight = &mut *p.weight;
    if let Some((mean, var)) = two(p.state) {
        for (((w, &g), m), v) in weight.iter_mut().zip(grad).zip(mean).zip(var) {
            let mut gr = g * rescale + *w * wd;
            if let Some(c) = c {
                gr = clip(gr, c);
            }
            *m *= b1;
            *m += gr * one_b1;
            *v *= b2;
            *v += gr * one_b2 * gr;
            let grad_prime = gr / gp_div;
            let m_prime = *m / mp_div;
            let v_prime = *v / vp_div;
            let m_bar = grad_prime * one_mt + m_prime * mt1;
            *w -= m_bar * lr / (v_prime.sqrt() + eps);
        }
    }
    m_schedule
}

/// FTML for one parameter.
pub(crate) fn ftml(s: &Ftml, p: &mut ParamUpdate<'_>, r: &Rates) {
    let (lr, wd, rescale, eps) = (
        r.lr as f32,
        r.wd as f32,
        s.rescale_grad as f32,
        s.epsilon as f32,
    );
    let (b1, b2) = (s.beta1 as f32, s.beta2 as f32);
    let t = r.t as f32;
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    let weight = &mut *p.weight;
    if let [(_, d), (_, v), (_, z)] = p.state.tensors.as_mut_slice() {
        for ((((w, &g), d), v), z) in weight.iter_mut().zip(grad).zip(d).zip(v).zip(z) {
            let gi = match c {
                Some(c) => clip(rescale * g + wd * *w, c),
                None => rescale * g + wd * *w,
            };
            *v = b2 * *v + (1.0 - b2) * (gi * gi);
            let d_t = (1.0 - b1.powf(t)) / lr * ((*v / (1.0 - b2.powf(t))).sqrt() + eps);
            *z = b1 * *z + (1.0 - b1) * gi - (d_t - b1 * *d) * *w;
            *d = d_t;
            *w = -*z / d_t;
        }
    }
}

/// LAMB over one aggregated group.
pub(crate) fn lamb_group(s: &Lamb, group: &mut [ParamUpdate<'_>], rates: &[Rates]) {
    let (b1, b2, eps) = (s.beta1 as f32, s.beta2 as f32, s.epsilon as f32);
    let rescale = s.rescale_grad as f32;
    let c = clip_f32(s.clip_gradient);
    for (p, r) in group.iter_mut().zip(rates) {
        let (lr, wd) = (r.lr as f32, r.wd as f32);
        let t = r.t as f32;
        let grad = p.grad;
        let weight = &mut *p.weight;
        let r1_sq = sum_sq(weight);
        let Some((mean, var)) = two(p.state) else {
            continue;
        };
        let mut step = Vec::with_capacity(weight.len());
        for (((w, &g), m), v) in weight.iter().zip(grad).zip(mean).zip(var) {
            let mut sg = g * rescale;
            if let Some(c) = c {
                sg = clip(sg, c);
            }
            *m = b1 * *m + (1.0 - b1) * sg;
            *v = b2 * *v + (1.0 - b2) * sg * sg;
            let gv = if s.bias_correction {
                let m_hat = *m / (1.0 - b1.powf(t));
                let v_hat = *v / (1.0 - b2.powf(t));
                m_hat / (v_hat.sqrt() + eps) + wd * *w
            } else {
                *m / (v.sqrt() + eps) + wd * *w
            };
            step.push(gv);
        }
        let mut r1 = r1_sq.sqrt();
        let r2 = sum_sq(&step).sqrt();
        if let Some(l) = s.lower_bound {
            r1 = r1.max(l as f32);
        }
        if let Some(u) = s.upper_bound {
            r1 = r1.min(u as f32);
        }
        let ratio = if r1 == 0.0 || r2 == 0.0 { 1.0 } else { r1 / r2 };
        let lr_adjusted = lr * ratio;
        for (w, gv) in weight.iter_mut().zip(step) {
            *w -= lr_adjusted * gv;
        }
    }
}
