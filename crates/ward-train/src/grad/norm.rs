//! BatchNorm (training mode), LayerNorm, InstanceNorm and GroupNorm.
//!
//! Each normalises groups of elements by their own mean and (biased) variance and then
//! scales and shifts them by an affine parameter chosen per element: per channel for
//! BatchNorm and InstanceNorm, per feature for LayerNorm, per group for GroupNorm. One
//! rule serves them all: for a group of `m` elements with `x̂ = (x − μ)·s`,
//! `s = 1/√(σ² + ε)`, and `d = dy·γ`,
//! `dx = s/m · (m·d − Σd − x̂·Σ(d·x̂))`, `dγ = Σ dy·x̂`, `dβ = Σ dy`.

use ward_graph::interp::elementwise::{binary, BinaryKind};
use ward_graph::interp::norm::{batch_norm_training, BatchNormParams, BatchNormTrainingParams};
use ward_graph::interp::reduce::{reduce_over, Reduction};
use ward_graph::interp::Array;
use ward_graph::ops::norm::{BatchNorm, GroupNorm, InstanceNorm, L2Normalization, LayerNorm};
use ward_graph::ops::reduce::ReduceKind;

use super::{arrays, Ctx, Rule};

/// How the elements of `x` form groups and pick their affine parameter.
struct Grouping {
    /// Each group's element offsets.
    groups: Vec<Vec<usize>>,
    /// The affine parameter index of each element of `x`.
    affine: Vec<usize>,
}

/// Groups along `axis`'s complement: every element with the same (outer, inner) position
/// around `axis` forms a group; the affine index is the position along `axis`.
fn along_axis(shape: &[usize], axis: usize) -> Result<Grouping, String> {
    let (outer, len, inner) = arrays::around(shape, axis)?;
    let mut groups = Vec::with_capacity(outer * inner);
    let mut affine = vec![0; outer * len * inner];
    for o in 0..outer {
        for i in 0..inner {
            let members: Vec<usize> = (0..len).map(|j| (o * len + j) * inner + i).collect();
            for (j, &m) in members.iter().enumerate() {
                if let Some(a) = affine.get_mut(m) {
                    *a = j;
                }
            }
            groups.push(members);
        }
    }
    Ok(Grouping { groups, affine })
}

/// Contiguous blocks of `size` elements, the `b`-th block's affine index `pick(b)`.
fn blocks(total: usize, size: usize, pick: impl Fn(usize) -> usize) -> Grouping {
    let size = size.max(1);
    let groups: Vec<Vec<usize>> = (0..total.div_ceil(size))
        .map(|b| (b * size..((b + 1) * size).min(total)).collect())
        .collect();
    let affine = (0..total).map(|e| pick(e / size)).collect();
    Grouping { groups, affine }
}

/// For every channel of `axis`, the elements over all other axes (BatchNorm's groups);
/// the affine index is the channel.
fn per_channel(shape: &[usize], axis: usize) -> Result<Grouping, String> {
    let (outer, channels, inner) = arrays::around(shape, axis)?;
    let mut groups = vec![Vec::with_capacity(outer * inner); channels];
    let mut affine = vec![0; outer * channels * inner];
    for o in 0..outer {
        for (c, group) in groups.iter_mut().enumerate() {
            for i in 0..inner {
                let e = (o * channels + c) * inner + i;
                group.push(e);
                if let Some(a) = affine.get_mut(e) {
                    *a = c;
                }
            }
        }
    }
    Ok(Grouping { groups, affine })
}

/// The gradients of `x`, `gamma` and `beta` for normalisation by each group's own
/// statistics (`batch_stats`), or by fixed ones (`fixed`: mean and variance per affine
/// index, BatchNorm with `use_global_stats`). `unit_gamma`: gamma is taken as 1 and gets
/// no gradient (BatchNorm's `fix_gamma`).
struct Normalisation<'a> {
    x: &'a Array,
    gamma: &'a Array,
    eps: f64,
    grouping: Grouping,
    fixed: Option<(&'a [f64], &'a [f64])>,
    unit_gamma: bool,
}

impl Normalisation<'_> {
    fn backward(&self, dy: &Array) -> Result<(Array, Array, Array), String> {
        let n = self.x.data.len();
        let params = self.gamma.data.len();
        let mut dx = vec![0.0; n];
        let mut dgamma = vec![0.0; params];
        let mut dbeta = vec![0.0; params];
        let get = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(0.0);
        let affine = |e: usize| self.grouping.affine.get(e).copied().unwrap_or(0);
        let gamma = |a: usize| {
            if self.unit_gamma {
                1.0
            } else {
                get(&self.gamma.data, a)
            }
        };
        for group in &self.grouping.groups {
            let Some(&first) = group.first() else {
                continue;
            };
            let m = group.len() as f64;
            // This group's statistics: its own, or the fixed ones of its affine index.
            let (mean, inv) = match self.fixed {
                Some((means, vars)) => {
                    let a = affine(first);
                    (get(means, a), 1.0 / (get(vars, a) + self.eps).sqrt())
                }
                None => {
                    let mean = group.iter().map(|&e| get(&self.x.data, e)).sum::<f64>() / m;
                    let var = group
                        .iter()
                        .map(|&e| (get(&self.x.data, e) - mean).powi(2))
                        .sum::<f64>()
                        / m;
                    (mean, 1.0 / (var + self.eps).sqrt())
                }
            };
            let xhat = |e: usize| (get(&self.x.data, e) - mean) * inv;
            let d = |e: usize| get(&dy.data, e) * gamma(affine(e));
            let (sum_d, sum_dx) = group
                .iter()
                .fold((0.0, 0.0), |(s, t), &e| (s + d(e), t + d(e) * xhat(e)));
            for &e in group {
                let a = affine(e);
                if let Some(slot) = dx.get_mut(e) {
                    *slot = if self.fixed.is_some() {
                        d(e) * inv
                    } else {
                        inv / m * (m * d(e) - sum_d - xhat(e) * sum_dx)
                    };
                }
                if let Some(slot) = dgamma.get_mut(a) {
                    *slot += get(&dy.data, e) * xhat(e);
                }
                if let Some(slot) = dbeta.get_mut(a) {
                    *slot += get(&dy.data, e);
                }
            }
        }
        if self.unit_gamma {
            dgamma.iter_mut().for_each(|g| *g = 0.0);
        }
        let shaped = |data: Vec<f64>, like: &Array| {
            Array::new(like.shape.clone(), data).map_err(|e| e.to_string())
        };
        Ok((
            shaped(dx, self.x)?,
            shaped(dgamma, self.gamma)?,
            shaped(dbeta, self.gamma)?,
        ))
    }
}

/// The training-mode forward pass of BatchNorm (batch statistics unless
/// `use_global_stats`): what the tape records for the nodes after it.
pub fn batch_norm_forward(ins: &[Option<&Array>], op: &BatchNorm) -> Result<Array, String> {
    let arg = |i: usize| {
        ins.get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input {i} is missing"))
    };
    let out = batch_norm_training(
        arg(0)?,
        arg(1)?,
        arg(2)?,
        arg(3)?,
        arg(4)?,
        &BatchNormParams {
            axis: op.axis,
            eps: op.eps,
            fix_gamma: op.fix_gamma,
        },
        &BatchNormTrainingParams {
            momentum: op.momentum,
            use_global_stats: op.use_global_stats,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(out.output)
}

/// BatchNorm in training mode; the moving statistics (inputs 3 and 4) get no gradient.
pub fn batch_norm(ctx: &Ctx<'_>, op: &BatchNorm) -> Rule {
    let x = ctx.input(0)?;
    let axis = arrays::axis(op.axis, x.shape.len())?;
    let (moving_mean, moving_var) = (ctx.input(3)?, ctx.input(4)?);
    let norm = Normalisation {
        x,
        gamma: ctx.input(1)?,
        eps: op.eps,
        grouping: per_channel(&x.shape, axis)?,
        fixed: op
            .use_global_stats
            .then_some((&moving_mean.data[..], &moving_var.data[..])),
        unit_gamma: op.fix_gamma,
    };
    let (dx, dgamma, dbeta) = norm.backward(&ctx.grad(0)?)?;
    Ok(vec![Some(dx), Some(dgamma), Some(dbeta), None, None])
}

pub fn layer_norm(ctx: &Ctx<'_>, op: &LayerNorm) -> Rule {
    let x = ctx.input(0)?;
    let axis = arrays::axis(op.axis, x.shape.len())?;
    normalised(ctx, op.eps, along_axis(&x.shape, axis)?)
}

pub fn instance_norm(ctx: &Ctx<'_>, op: &InstanceNorm) -> Rule {
    let x = ctx.input(0)?;
    let channels = x.shape.get(1).copied().unwrap_or(1).max(1);
    let plane: usize = x.shape.iter().skip(2).product();
    normalised(ctx, op.eps, blocks(x.data.len(), plane, |b| b % channels))
}

pub fn group_norm(ctx: &Ctx<'_>, op: &GroupNorm) -> Rule {
    let x = ctx.input(0)?;
    let channels = x.shape.get(1).copied().unwrap_or(0);
    let groups = op.groups.max(1);
    let per_group = (channels / groups) * x.shape.iter().skip(2).product::<usize>();
    normalised(ctx, op.eps, blocks(x.data.len(), per_group, |b| b % groups))
}

/// y = x/n with n = √(Σ x² + eps) over the mode's axes: dx = (g − y·Σ(g·y)) / n.
pub fn l2_normalization(ctx: &Ctx<'_>, op: &L2Normalization) -> Rule {
    let x = ctx.input(0)?;
    let y = ctx.output(0)?;
    let g = ctx.grad(0)?;
    let axes = op.axes(x.shape.len());
    let sum = |a: &Array| {
        reduce_over(a, Reduction::Of(ReduceKind::Sum), &axes, true).map_err(|e| e.to_string())
    };
    let along = |a: &Array, b: &Array, kind| binary(a, b, kind, true).map_err(|e| e.to_string());
    let norms = sum(&x.map(|v| v * v))?.map(|s| (s + op.eps).sqrt());
    let gy = sum(&arrays::zip(&g, y, |g, y| g * y)?)?;
    let along_y = along(y, &gy, BinaryKind::Mul)?;
    let centred = arrays::zip(&g, &along_y, |g, t| g - t)?;
    Ok(vec![Some(along(&centred, &norms, BinaryKind::Div)?)])
}

fn normalised(ctx: &Ctx<'_>, eps: f64, grouping: Grouping) -> Rule {
    let norm = Normalisation {
        x: ctx.input(0)?,
        gamma: ctx.input(1)?,
        eps,
        grouping,
        fixed: None,
        unit_gamma: false,
    };
    let (dx, dgamma, dbeta) = norm.backward(&ctx.grad(0)?)?;
    Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
}
