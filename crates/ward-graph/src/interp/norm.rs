//! Normalisations: BatchNorm (inference and training), InstanceNorm, LayerNorm, GroupNorm
//! (MXNet 1.9.1). Every variance here is the biased one (divided by the count), as MXNet
//! computes it.

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::elementwise::{binary, BinaryKind};
use super::reduce::{reduce_over, Reduction};
use super::{resolve_axis, Array, KResult, KernelError};
use crate::ops::reduce::ReduceKind;

/// (outer, channels, inner) of `shape` around `axis`: element (o, c, i) is at
/// `(o·channels + c)·inner + i`.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// Mean and biased variance of `values`, both 0 for an empty list.
fn mean_var(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let mut n = 0usize;
    let mut sum = 0.0;
    for v in values.clone() {
        sum += v;
        n += 1;
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = sum / n as f64;
    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    (mean, var)
}

/// MXNet `BatchNorm`'s attributes that matter for the forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormParams {
    /// The channel axis (MXNet's default 1); negative counts from the end.
    pub axis: i64,
    /// MXNet's default is 1e-3 (Gluon writes 1e-5).
    pub eps: f64,
    /// MXNet's default is **true**: gamma is taken as 1 whatever the file holds.
    pub fix_gamma: bool,
}

impl Default for BatchNormParams {
    fn default() -> Self {
        BatchNormParams {
            axis: 1,
            eps: 1e-3,
            fix_gamma: true,
        }
    }
}

struct Checked {
    outer: usize,
    channels: usize,
    inner: usize,
}

fn check_bn(x: &Array, p: &BatchNormParams, vectors: [(&str, &Array); 4]) -> KResult<Checked> {
    const OP: &str = "BatchNorm";
    if x.rank() == 0 {
        return Err(KernelError::new(OP, "data must have at least one axis"));
    }
    if !p.eps.is_finite() || p.eps < 0.0 {
        return Err(KernelError::new(
            OP,
            format!("eps {} is not a finite non-negative number", p.eps),
        ));
    }
    let axis = resolve_axis(OP, p.axis, x.rank())?;
    let (outer, channels, inner) = split_at_axis(&x.shape, axis);
    for (what, v) in vectors {
        v.expect_shape(OP, what, &[channels])?;
    }
    Ok(Checked {
        outer,
        channels,
        inner,
    })
}

/// `y = (x − mean)·inv_std·γ + β` per channel, γ = 1 under `fix_gamma`.
fn normalize(
    x: &Array,
    c: &Checked,
    mean: &[f64],
    inv_std: &[f64],
    gamma: &Array,
    beta: &Array,
    fix_gamma: bool,
) -> Array {
    let mut out = x.clone();
    for o in 0..c.outer {
        for ch in 0..c.channels {
            let g = if fix_gamma { 1.0 } else { gamma.data[ch] };
            let base = (o * c.channels + ch) * c.inner;
            for v in &mut out.data[base..base + c.inner] {
                *v = (*v - mean[ch]) * inv_std[ch] * g + beta.data[ch];
            }
        }
    }
    out
}

/// MXNet `BatchNorm` at inference (and in training with `use_global_stats`): each
/// channel on `axis` is normalised with the **moving** statistics,
/// `y = (x − moving_mean)/√(moving_var + eps)·γ + β`.
pub fn batch_norm_inference(
    x: &Array,
    gamma: &Array,
    beta: &Array,
    moving_mean: &Array,
    moving_var: &Array,
    p: &BatchNormParams,
) -> KResult<Array> {
    let c = check_bn(
        x,
        p,
        [
            ("gamma", gamma),
            ("beta", beta),
            ("moving_mean", moving_mean),
            ("moving_var", moving_var),
        ],
    )?;
    let inv_std: Vec<f64> = moving_var
        .data
        .iter()
        .map(|v| 1.0 / (v + p.eps).sqrt())
        .collect();
    Ok(normalize(
        x,
        &c,
        &moving_mean.data,
        &inv_std,
        gamma,
        beta,
        p.fix_gamma,
    ))
}

/// MXNet `BatchNorm`'s training attributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormTrainingParams {
    /// MXNet's default is 0.9.
    pub momentum: f64,
    /// Normalise with the moving statistics and leave them unchanged (default false).
    pub use_global_stats: bool,
}

impl Default for BatchNormTrainingParams {
    fn default() -> Self {
        BatchNormTrainingParams {
            momentum: 0.9,
            use_global_stats: false,
        }
    }
}

/// What a training-mode BatchNorm step produces.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormTraining {
    /// The normalised output.
    pub output: Array,
    /// The statistics the output was normalised with (per channel): the batch's, or the
    /// moving ones under `use_global_stats`.
    pub mean: Array,
    /// The biased variance matching `mean`.
    pub var: Array,
    /// `1/√(var + eps)`. MXNet's second visible output with `output_mean_var` (`*_var`)
    /// is **this**, not the variance, in training and at inference alike.
    pub inv_std: Array,
    /// The moving statistics after this step.
    pub running_mean: Array,
    pub running_var: Array,
}

/// MXNet `BatchNorm` in training mode (`is_train`), and the moving statistics MXNet
/// stores after the step.
///
/// Unless `use_global_stats`, each channel is normalised with the batch's mean and its
/// **biased** variance (divided by the count, not count − 1), and the moving statistics
/// become `running·momentum + batch·(1 − momentum)` (MXNet's default momentum is 0.9),
/// the variance term being that same biased batch variance: MXNet stores
/// `1/√(var + eps)` and turns it back into `1/inv_std² − eps`. Note that MXNet 1.9.1
/// applies this update in the **backward** pass (`BatchNormBackwardImpl`): a forward
/// pass alone with `is_train=True` leaves the moving statistics unchanged. This function
/// returns them as they are after a forward and backward step.
///
/// With `use_global_stats` the moving statistics are used as at inference and are not
/// changed.
pub fn batch_norm_training(
    x: &Array,
    gamma: &Array,
    beta: &Array,
    running_mean: &Array,
    running_var: &Array,
    p: &BatchNormParams,
    t: &BatchNormTrainingParams,
) -> KResult<BatchNormTraining> {
    let BatchNormTrainingParams {
        momentum,
        use_global_stats,
    } = *t;
    let c = check_bn(
        x,
        p,
        [
            ("gamma", gamma),
            ("beta", beta),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ],
    )?;
    if !momentum.is_finite() {
        return Err(KernelError::new(
            "BatchNorm",
            format!("momentum {momentum} is not finite"),
        ));
    }
    let (mean, var) = if use_global_stats {
        (running_mean.data.clone(), running_var.data.clone())
    } else {
        let mut mean = vec![0.0; c.channels];
        let mut var = vec![0.0; c.channels];
        for ch in 0..c.channels {
            let values = (0..c.outer).flat_map(|o| {
                let base = (o * c.channels + ch) * c.inner;
                x.data[base..base + c.inner].iter().copied()
            });
            (mean[ch], var[ch]) = mean_var(values);
        }
        (mean, var)
    };
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + p.eps).sqrt()).collect();
    let output = normalize(x, &c, &mean, &inv_std, gamma, beta, p.fix_gamma);
    let (new_mean, new_var) = if use_global_stats {
        (running_mean.data.clone(), running_var.data.clone())
    } else {
        (
            running_mean
                .data
                .iter()
                .zip(&mean)
                .map(|(r, b)| r * momentum + b * (1.0 - momentum))
                .collect(),
            running_var
                .data
                .iter()
                .zip(&var)
                .map(|(r, b)| r * momentum + b * (1.0 - momentum))
                .collect(),
        )
    };
    Ok(BatchNormTraining {
        output,
        mean: Array::vector(&mean),
        var: Array::vector(&var),
        inv_std: Array::vector(&inv_std),
        running_mean: Array::vector(&new_mean),
        running_var: Array::vector(&new_var),
    })
}

fn check_eps(op: &'static str, eps: f64) -> KResult<()> {
    if !eps.is_finite() || eps < 0.0 {
        return Err(KernelError::new(
            op,
            format!("eps {eps} is not a finite non-negative number"),
        ));
    }
    Ok(())
}

/// MXNet `InstanceNorm`: each (n, c) plane is normalised over its spatial elements,
/// `y = (x − mean)/√(var + eps)·γ[c] + β[c]`; `gamma`, `beta` are (C). MXNet's default
/// eps is 1e-3 (Gluon writes 1e-5).
pub fn instance_norm(x: &Array, gamma: &Array, beta: &Array, eps: f64) -> KResult<Array> {
    const OP: &str = "InstanceNorm";
    check_eps(OP, eps)?;
    if x.rank() < 3 {
        return Err(KernelError::new(
            OP,
            format!("data must be (N, C, spatial…), got shape {:?}", x.shape),
        ));
    }
    let (n, ch) = (x.shape[0], x.shape[1]);
    gamma.expect_shape(OP, "gamma", &[ch])?;
    beta.expect_shape(OP, "beta", &[ch])?;
    let inner: usize = x.shape[2..].iter().product();
    let mut out = x.clone();
    for b in 0..n {
        for c in 0..ch {
            let base = (b * ch + c) * inner;
            let plane = &x.data[base..base + inner];
            let (mean, var) = mean_var(plane.iter().copied());
            let inv = 1.0 / (var + eps).sqrt();
            for v in &mut out.data[base..base + inner] {
                *v = (*v - mean) * inv * gamma.data[c] + beta.data[c];
            }
        }
    }
    Ok(out)
}

/// MXNet `L2Normalization`: `x / √(Σ x² + eps)`, the sum over `axes` (the mode's, from
/// [`crate::ops::norm::L2Normalization::axes`]). MXNet's default eps is 1e-10.
pub fn l2_normalization(x: &Array, axes: &[usize], eps: f64) -> KResult<Array> {
    const OP: &str = "L2Normalization";
    check_eps(OP, eps)?;
    if let Some(&bad) = axes.iter().find(|&&a| a >= x.rank()) {
        return Err(KernelError::new(
            OP,
            format!("axis {bad} is out of range for shape {:?}", x.shape),
        ));
    }
    let squares = x.map(|v| v * v);
    let sums = reduce_over(&squares, Reduction::Of(ReduceKind::Sum), axes, true)?;
    let norms = sums.map(|s| (s + eps).sqrt());
    binary(x, &norms, BinaryKind::Div, true)
}

/// MXNet `LayerNorm`: normalised over the one axis `axis` (MXNet's default −1) at every
/// position of the other axes; `gamma`, `beta` have the size of that axis. MXNet's
/// default eps is 1e-5.
pub fn layer_norm(x: &Array, gamma: &Array, beta: &Array, axis: i64, eps: f64) -> KResult<Array> {
    const OP: &str = "LayerNorm";
    check_eps(OP, eps)?;
    let a = resolve_axis(OP, axis, x.rank())?;
    let (outer, len, inner) = split_at_axis(&x.shape, a);
    gamma.expect_shape(OP, "gamma", &[len])?;
    beta.expect_shape(OP, "beta", &[len])?;
    let mut out = x.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let (mean, var) = mean_var((0..len).map(|j| x.data[at(j)]));
            let inv = 1.0 / (var + eps).sqrt();
            for j in 0..len {
                out.data[at(j)] = (x.data[at(j)] - mean) * inv * gamma.data[j] + beta.data[j];
            }
        }
    }
    Ok(out)
}

/// MXNet 1.9.1 `GroupNorm`: the C channels are split into `groups` consecutive groups
/// and each (n, group) is normalised over its channels and spatial elements together.
/// In 1.9.1 **`gamma` and `beta` have shape (groups,)** and are applied per group, not
/// per channel (MXNet's own shape inference says so; later versions changed it).
/// MXNet's default eps is 1e-5.
pub fn group_norm(
    x: &Array,
    gamma: &Array,
    beta: &Array,
    groups: usize,
    eps: f64,
) -> KResult<Array> {
    const OP: &str = "GroupNorm";
    check_eps(OP, eps)?;
    if x.rank() < 2 {
        return Err(KernelError::new(
            OP,
            format!("data must be (N, C, …), got shape {:?}", x.shape),
        ));
    }
    let (n, ch) = (x.shape[0], x.shape[1]);
    if groups == 0 || !ch.is_multiple_of(groups) {
        return Err(KernelError::new(
            OP,
            format!("{ch} channels do not split into {groups} groups"),
        ));
    }
    gamma.expect_shape(OP, "gamma", &[groups])?;
    beta.expect_shape(OP, "beta", &[groups])?;
    let per_group: usize = (ch / groups) * x.shape[2..].iter().product::<usize>();
    let mut out = x.clone();
    for b in 0..n {
        for g in 0..groups {
            let base = (b * groups + g) * per_group;
            let (mean, var) = mean_var(x.data[base..base + per_group].iter().copied());
            let inv = 1.0 / (var + eps).sqrt();
            for v in &mut out.data[base..base + per_group] {
                *v = (*v - mean) * inv * gamma.data[g] + beta.data[g];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::{assert_close, pseudo_random};

    #[test]
    fn batch_norm_inference_hand_checked() {
        // One channel on axis 1 of (2, 2): channel 0 mean 1 var 3, channel 1 mean -1 var 0
        let x = Array::new(vec![2, 2], vec![3.0, 0.0, -1.0, 2.0]).unwrap();
        let gamma = Array::vector(&[2.0, 5.0]);
        let beta = Array::vector(&[0.5, -0.5]);
        let mm = Array::vector(&[1.0, -1.0]);
        let mv = Array::vector(&[3.0, 0.0]);
        let mut p = BatchNormParams {
            axis: 1,
            eps: 1.0,
            fix_gamma: false,
        };
        let y = batch_norm_inference(&x, &gamma, &beta, &mm, &mv, &p).unwrap();
        assert_close(
            &y,
            &Array::new(
                vec![2, 2],
                vec![2.0 * 2.0 / 2.0 + 0.5, 5.0 + -0.5, -2.0 + 0.5, 15.0 - 0.5],
            )
            .unwrap(),
            1e-12,
        );
        p.fix_gamma = true;
        let y = batch_norm_inference(&x, &gamma, &beta, &mm, &mv, &p).unwrap();
        assert_eq!(y.data[0], 1.5);
        p.axis = -1;
        assert_eq!(
            batch_norm_inference(&x, &gamma, &beta, &mm, &mv, &p).unwrap(),
            y
        );
        p.axis = 0;
        // Axis 0: the rows are the channels; x[0, 1] = 0 is in channel 0.
        assert_eq!(
            batch_norm_inference(&x, &gamma, &beta, &mm, &mv, &p)
                .unwrap()
                .data[1],
            0.0
        );
        let bad = Array::vector(&[1.0]);
        assert!(batch_norm_inference(&x, &bad, &beta, &mm, &mv, &p).is_err());
        p.axis = 2;
        assert!(batch_norm_inference(&x, &gamma, &beta, &mm, &mv, &p).is_err());
    }

    #[test]
    fn batch_norm_training_uses_biased_batch_variance() {
        // channel 0: [1, 3] mean 2 var 1; channel 1: [0, 0] mean 0 var 0
        let x = Array::new(vec![2, 2], vec![1.0, 0.0, 3.0, 0.0]).unwrap();
        let ones = Array::vector(&[1.0, 1.0]);
        let zeros = Array::vector(&[0.0, 0.0]);
        let p = BatchNormParams {
            axis: 1,
            eps: 0.0,
            fix_gamma: true,
        };
        let rm = Array::vector(&[10.0, 20.0]);
        let rv = Array::vector(&[4.0, 8.0]);
        let t = batch_norm_training(
            &x,
            &ones,
            &zeros,
            &rm,
            &rv,
            &p,
            &BatchNormTrainingParams {
                momentum: 0.75,
                use_global_stats: false,
            },
        )
        .unwrap();
        assert_eq!(t.mean.data, vec![2.0, 0.0]);
        assert_eq!(t.var.data, vec![1.0, 0.0]);
        assert_eq!(t.output.data[0], -1.0);
        assert_eq!(t.output.data[2], 1.0);
        assert_eq!(t.running_mean.data, vec![10.0 * 0.75 + 2.0 * 0.25, 15.0]);
        assert_eq!(t.running_var.data, vec![3.0 + 0.25, 6.0]);
        let g = batch_norm_training(
            &x,
            &ones,
            &zeros,
            &rm,
            &rv,
            &p,
            &BatchNormTrainingParams {
                momentum: 0.75,
                use_global_stats: true,
            },
        )
        .unwrap();
        assert_eq!(g.running_mean, rm);
        assert_eq!(g.running_var, rv);
        assert_eq!(g.output.data[0], (1.0 - 10.0) / 2.0);
        assert_eq!(g.inv_std.data, vec![0.5, 1.0 / 8.0f64.sqrt()]);
    }

    #[test]
    fn normalised_outputs_have_zero_mean_unit_variance() {
        let x = pseudo_random(vec![2, 4, 3, 5], 7);
        let ones4 = Array::full(vec![4], 1.0).unwrap();
        let zeros4 = Array::zeros(vec![4]).unwrap();
        let y = instance_norm(&x, &ones4, &zeros4, 0.0).unwrap();
        let (m, v) = mean_var(y.data[15..30].iter().copied());
        assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-12);
        let y = group_norm(
            &x,
            &Array::vector(&[1.0, 1.0]),
            &Array::vector(&[0.0, 0.0]),
            2,
            0.0,
        )
        .unwrap();
        let (m, v) = mean_var(y.data[30..60].iter().copied());
        assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-12);
        let ones5 = Array::full(vec![5], 1.0).unwrap();
        let y = layer_norm(&x, &ones5, &Array::zeros(vec![5]).unwrap(), -1, 0.0).unwrap();
        let (m, v) = mean_var(y.data[5..10].iter().copied());
        assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-12);
        // LayerNorm on axis 1 normalises across channels at each position.
        let y = layer_norm(&x, &ones4, &zeros4, 1, 0.0).unwrap();
        let (m, v) = mean_var((0..4).map(|c| y.get(&[1, c, 2, 3]).unwrap()));
        assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-12);
    }

    #[test]
    fn group_norm_with_one_channel_per_group_is_instance_norm() {
        let x = pseudo_random(vec![2, 3, 4], 8);
        let g = pseudo_random(vec![3], 9);
        let b = pseudo_random(vec![3], 10);
        assert_close(
            &group_norm(&x, &g, &b, 3, 1e-5).unwrap(),
            &instance_norm(&x, &g, &b, 1e-5).unwrap(),
            1e-12,
        );
        assert!(group_norm(&x, &g, &b, 2, 1e-5).is_err());
        assert!(group_norm(&x, &Array::zeros(vec![1]).unwrap(), &b, 3, 1e-5).is_err());
        assert!(instance_norm(&Array::zeros(vec![2, 3]).unwrap(), &g, &b, 1e-5).is_err());
    }
}
