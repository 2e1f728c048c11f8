//! Activation, LeakyReLU, softmax and log_softmax.

use ward_graph::interp::activation::{erf, sigmoid, SELU_ALPHA, SELU_LAMBDA};
use ward_graph::interp::Array;
use ward_graph::ops::activation::{Activation, ActivationKind, LeakyRelu, LeakyReluKind, Softmax};

use super::{arrays, Ctx, Rule};

/// `Activation`: the derivative from the input (relu, softrelu, softsign) or the output
/// (sigmoid, tanh), as MXNet's kernels compute it.
pub fn activation(ctx: &Ctx<'_>, op: &Activation) -> Rule {
    let x = ctx.input(0)?;
    let y = ctx.output(0)?;
    let g = ctx.grad(0)?;
    let dx = match op.kind {
        ActivationKind::Relu => arrays::zip(&g, x, |g, x| if x > 0.0 { g } else { 0.0 })?,
        ActivationKind::Sigmoid => arrays::zip(&g, y, |g, y| g * y * (1.0 - y))?,
        ActivationKind::Tanh => arrays::zip(&g, y, |g, y| g * (1.0 - y * y))?,
        ActivationKind::Softrelu => arrays::zip(&g, x, |g, x| g * sigmoid(x))?,
        ActivationKind::Softsign => arrays::zip(&g, x, |g, x| {
            let d = 1.0 + x.abs();
            g / (d * d)
        })?,
    };
    Ok(vec![Some(dx)])
}

/// Every LeakyReLU kind the IR holds has an exact rule.
pub fn leaky_relu_differentiable(_op: &LeakyRelu) -> Result<(), &'static str> {
    Ok(())
}

/// `LeakyReLU`: leaky, elu, selu and gelu from the input; prelu also gives its slopes'
/// gradient (per channel of axis 1, or one for all).
pub fn leaky_relu(ctx: &Ctx<'_>, op: &LeakyRelu) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    let dx = match op.kind {
        LeakyReluKind::Leaky { slope } => {
            arrays::zip(&g, x, |g, x| if x > 0.0 { g } else { g * slope })?
        }
        LeakyReluKind::Elu { slope } => {
            arrays::zip(&g, x, |g, x| if x > 0.0 { g } else { g * slope * x.exp() })?
        }
        // MXNet 1.9.1 computes SELU's slope below 0 from the output as λ·(y + α), not
        // the derivative λ·α·eˣ = y + λ·α; ward trains with MXNet's numbers.
        LeakyReluKind::Selu => arrays::zip3(&g, x, ctx.output(0)?, |g, x, y| {
            g * SELU_LAMBDA * if x > 0.0 { 1.0 } else { y + SELU_ALPHA }
        })?,
        LeakyReluKind::Gelu => arrays::zip(&g, x, |g, x| {
            let cdf = 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            g * (cdf + x * pdf)
        })?,
        LeakyReluKind::Prelu => return prelu(ctx, x, &g),
    };
    Ok(vec![Some(dx)])
}

fn prelu(ctx: &Ctx<'_>, x: &Array, g: &Array) -> Rule {
    let gamma = ctx.input(1)?;
    let (_, channels, inner) = arrays::around(&x.shape, 1)?;
    let shared = gamma.data.len() == 1;
    let slope_of = |i: usize| {
        let c = if shared {
            0
        } else {
            (i / inner.max(1)) % channels.max(1)
        };
        (c, gamma.data.get(c).copied().unwrap_or(0.0))
    };
    let mut dx = g.clone();
    let mut dgamma = vec![0.0; gamma.data.len()];
    for (i, (d, &xv)) in dx.data.iter_mut().zip(&x.data).enumerate() {
        if xv <= 0.0 {
            let (c, slope) = slope_of(i);
            if let Some(s) = dgamma.get_mut(c) {
                *s += *d * xv;
            }
            *d *= slope;
        }
    }
    let dgamma = Array::new(gamma.shape.clone(), dgamma).map_err(|e| e.to_string())?;
    Ok(vec![Some(dx), Some(dgamma)])
}

/// softmax: `dx = (y ⊙ (g − Σ g⊙y)) / T`; log_softmax: `dx = (g − softmax ⊙ Σ g) / T`,
/// the sums along the axis.
pub fn softmax(ctx: &Ctx<'_>, op: &Softmax) -> Rule {
    let y = ctx.output(0)?;
    let g = ctx.grad(0)?;
    let a = arrays::axis(op.axis, y.shape.len())?;
    let (outer, len, inner) = arrays::around(&y.shape, a)?;
    let mut dx = g.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let get = |v: &[f64], j: usize| v.get(at(j)).copied().unwrap_or(0.0);
            if op.log {
                let total: f64 = (0..len).map(|j| get(&g.data, j)).sum();
                for j in 0..len {
                    if let Some(d) = dx.data.get_mut(at(j)) {
                        *d = (get(&g.data, j) - get(&y.data, j).exp() * total) / op.temperature;
                    }
                }
            } else {
                let dot: f64 = (0..len).map(|j| get(&g.data, j) * get(&y.data, j)).sum();
                for j in 0..len {
                    if let Some(d) = dx.data.get_mut(at(j)) {
                        *d = get(&y.data, j) * (get(&g.data, j) - dot) / op.temperature;
                    }
                }
            }
        }
    }
    // Past a lane's length the output is 0, so y·(g − y·g) is too, as in MXNet's
    // backward; the lengths themselves get no gradient.
    if op.use_length {
        return Ok(vec![Some(dx), None]);
    }
    Ok(vec![Some(dx)])
}
