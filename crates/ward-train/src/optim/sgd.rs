//! The SGD family: SGD, NAG, Signum, LARS and DCASGD.
//!
//! * SGD (`multi_sgd_update`/`multi_sgd_mom_update`, the aggregated kernels MXNet's
//!   updater uses): `m = momentum*m - lr*wd*w - lr*clip(rescale*g)`, `w += m` (without
//!   clipping `lr*rescale` is folded first). `lazy_update` only matters for row-sparse
//!   gradients; ward's are dense, so it changes nothing.
//! * NAG (`nag_mom_update`): MXNet writes the new weight in place before updating the
//!   momentum, so the momentum's weight-decay term reads the *new* weight (reproduced).
//!   Without momentum NAG is `sgd_update`: `(1 - lr*wd)*w - lr*clip(rescale*g)`.
//! * Signum (`signum_update`): `m = momentum*m - (1-momentum)*(wd*w + clip(rescale*g))`,
//!   `w = (1 - lr*wd_lh)*w + lr*sign(m)`. Without momentum (`signsgd_update`) the step is
//!   `(1 - lr*wd)*w - lr*sign(g)`: the raw gradient's sign, rescaling and clipping ignored.
//! * LARS (the aggregated path: `multi_sum_sq`, `multi_lars`, then the SGD kernels with
//!   the rates in an `f32` array): `lr * eta * |w| / (|g| * rescale + wd*|w| + eps)`
//!   when both norms are positive (the raw gradient's norm, before clipping), for
//!   parameters not exempt by name; the momentum is scaled by `cur_lr / last_lr`, the
//!   change of the scheduled rate between group updates.
//! * DCASGD (Python NDArray arithmetic, each operation rounded to `f32`):
//!   `w += -lr * (g + wd*w + lamda*g*g*(w - w_prev))`, `w_prev` the weight before the
//!   update.

use super::{clip, sum_sq, ParamState, ParamUpdate, Rates};
use super::{DcaSgd, Lars, Nag, Sgd, Signum};

/// `sign` as MXNet's kernels compute it: `(x > 0) - (x < 0)`.
#[inline]
fn sign(x: f32) -> f32 {
    f32::from(u8::from(x > 0.0)) - f32::from(u8::from(x < 0.0))
}

/// MXNet's `MultiSGDKernel` for one tensor: `lr`, `wd` already `f32`.
#[allow(
    clippy::too_many_arguments,
    reason = "the kernel's arguments, one to one"
)]
fn multi_sgd(
    weight: &mut [f32],
    grad: &[f32],
    mom: Option<&mut [f32]>,
    momentum: f32,
    lr: f32,
    wd: f32,
    rescale: f32,
    clip_gradient: Option<f32>,
) {
    let step = |w: f32, g: f32, m: f32| -> f32 {
        match clip_gradient {
            Some(c) => momentum * m - lr * wd * w - lr * clip(rescale * g, c),
            None => momentum * m - lr * wd * w - lr * rescale * g,
        }
    };
    match mom {
        Some(mom) => {
            for ((w, &g), m) in weight.iter_mut().zip(grad).zip(mom.iter_mut()) {
                *m = step(*w, g, *m);
                *w += *m;
            }
        }
        None => {
            for (w, &g) in weight.iter_mut().zip(grad) {
                let m = step(*w, g, 0.0);
                *w += m;
            }
        }
    }
}

fn clip_f32(c: Option<f64>) -> Option<f32> {
    c.map(|c| c as f32)
}

/// The momentum tensor of a momentum optimizer's state, if it keeps one.
fn momentum_of(state: &mut ParamState) -> Option<&mut [f32]> {
    state.tensors.first_mut().map(|(_, t)| t.as_mut_slice())
}

/// SGD over one aggregated group.
pub(crate) fn sgd_group(s: &Sgd, group: &mut [ParamUpdate<'_>], rates: &[Rates]) {
    let momentum = if s.momentum > 0.0 {
        s.momentum as f32
    } else {
        0.0
    };
    for (p, r) in group.iter_mut().zip(rates) {
        let grad = p.grad;
        let (lr, wd) = (r.lr as f32, r.wd as f32);
        let mom = momentum_of(p.state);
        multi_sgd(
            p.weight,
            grad,
            mom,
            momentum,
            lr,
            wd,
            s.rescale_grad as f32,
            clip_f32(s.clip_gradient),
        );
    }
}

/// LARS over one aggregated group; `last_lr`/`cur_lr` are the scheduled rates of the
/// previous and this group update.
pub(crate) fn lars_group(
    s: &Lars,
    group: &mut [ParamUpdate<'_>],
    rates: &[Rates],
    last_lr: f64,
    cur_lr: f64,
) {
    let momentum = if s.momentum > 0.0 {
        if s.momentum_correction && last_lr != 0.0 {
            (s.momentum * (cur_lr / last_lr)) as f32
        } else {
            s.momentum as f32
        }
    } else {
        0.0
    };
    let (eta, eps, rescale) = (s.eta as f32, s.eps as f32, s.rescale_grad as f32);
    for (p, r) in group.iter_mut().zip(rates) {
        let (mut lr, wd) = (r.lr as f32, r.wd as f32);
        if !p.mults.lars_exempt {
            let w_norm = sum_sq(p.weight).sqrt();
            let g_sum_sq = sum_sq(p.grad);
            if w_norm > 0.0 && g_sum_sq > 0.0 {
                lr = lr * eta * w_norm / (g_sum_sq.sqrt() * rescale + wd * w_norm + eps);
            }
        }
        let grad = p.grad;
        let mom = momentum_of(p.state);
        multi_sgd(
            p.weight,
            grad,
            mom,
            momentum,
            lr,
            wd,
            rescale,
            clip_f32(s.clip_gradient),
        );
    }
}

/// NAG for one parameter.
pub(crate) fn nag(s: &Nag, p: &mut ParamUpdate<'_>, r: &Rates) {
    let (lr, wd, rescale) = (r.lr as f32, r.wd as f32, s.rescale_grad as f32);
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    let scaled = |g: f32| match c {
        Some(c) => clip(rescale * g, c),
        None => rescale * g,
    };
    if s.momentum > 0.0 {
        let momentum = s.momentum as f32;
        if let Some(mom) = momentum_of(p.state) {
            for ((w, &g), m) in p.weight.iter_mut().zip(grad).zip(mom.iter_mut()) {
                *m *= momentum;
                *w = *w - *m + (momentum + 1.0) * (*m - lr * (scaled(g) + wd * *w));
                // In place: the momentum reads the weight just written.
                *m -= lr * (scaled(g) + wd * *w);
            }
        }
    } else {
        for (w, &g) in p.weight.iter_mut().zip(grad) {
            *w = match c {
                Some(c) => (1.0 - lr * wd) * *w - lr * clip(rescale * g, c),
                None => (1.0 - lr * wd) * *w - (lr * rescale) * g,
            };
        }
    }
}

/// Signum (signSGD without momentum) for one parameter.
pub(crate) fn signum(s: &Signum, p: &mut ParamUpdate<'_>, r: &Rates) {
    let (lr, wd, rescale) = (r.lr as f32, r.wd as f32, s.rescale_grad as f32);
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    if s.momentum > 0.0 {
        let momentum = s.momentum as f32;
        let wd_lh = s.wd_lh as f32;
        if let Some(mom) = momentum_of(p.state) {
            for ((w, &g), m) in p.weight.iter_mut().zip(grad).zip(mom.iter_mut()) {
                *m = match c {
                    Some(c) => {
                        momentum * *m
                            - (1.0 - momentum) * wd * *w
                            - (1.0 - momentum) * clip(rescale * g, c)
                    }
                    None => {
                        momentum * *m - (1.0 - momentum) * wd * *w - (1.0 - momentum) * rescale * g
                    }
                };
                *w = (1.0 - lr * wd_lh) * *w + lr * sign(*m);
            }
        }
    } else {
        for (w, &g) in p.weight.iter_mut().zip(grad) {
            *w = (1.0 - lr * wd) * *w - lr * sign(g);
        }
    }
}

/// DCASGD (without momentum) for one parameter.
pub(crate) fn dcasgd(s: &DcaSgd, p: &mut ParamUpdate<'_>, r: &Rates) {
    let (lr, wd, rescale) = (r.lr as f32, r.wd as f32, s.rescale_grad as f32);
    let lamda = s.lamda as f32;
    let c = clip_f32(s.clip_gradient);
    let grad = p.grad;
    if let Some((_, prev)) = p.state.tensors.first_mut() {
        for ((w, &g), pw) in p.weight.iter_mut().zip(grad).zip(prev.iter_mut()) {
            let mut g = g * rescale;
            if let Some(c) = c {
                g = clip(g, c);
            }
            let m = (g + *w * wd + g * lamda * g * (*w - *pw)) * -lr;
            *pw = *w;
            *w += m;
        }
    }
}
