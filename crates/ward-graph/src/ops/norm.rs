//! Normalisation: batch, instance, layer and group norms, and L2 normalisation.

use serde::{Deserialize, Serialize};

use super::{dim, expect_shape, input, positive, resolve_axis, OpDef, Shape, R};

fn default_momentum() -> f64 {
    0.9
}

/// Batch normalisation. Inputs: data, gamma, beta, moving mean, moving var (state
/// parameters). At inference, and whenever `use_global_stats`, the moving statistics
/// normalise; in training the batch's do, and the moving ones are updated as
/// `moving = moving·momentum + batch·(1 − momentum)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNorm {
    pub axis: i64,
    pub eps: f64,
    /// Gamma is treated as 1 whatever the weights hold (and is not trained).
    pub fix_gamma: bool,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub use_global_stats: bool,
}

/// Per (N, C) over the spatial axes. Inputs: data, gamma (C), beta (C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceNorm {
    pub eps: f64,
}

/// Over `axis`. Inputs: data, gamma, beta (both the size of that axis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNorm {
    pub axis: i64,
    pub eps: f64,
}

/// Channels split into `groups`; gamma and beta have one value per group (as MXNet 1.9.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupNorm {
    pub groups: usize,
    pub eps: f64,
}

/// Which elements [`L2Normalization`] divides by one norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum L2NormMode {
    /// All elements of a sample (every axis after the first).
    Instance,
    /// The channels (axis 1) at each position.
    Channel,
    /// The positions (axes 2 and on) of each channel.
    Spatial,
}

/// MXNet's `L2Normalization`: `x / sqrt(Σ x² + eps)`, the sum over the mode's axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L2Normalization {
    pub mode: L2NormMode,
    pub eps: f64,
}

impl L2Normalization {
    /// The axes one norm is taken over, for data of `rank` dims (empty for a vector in
    /// instance mode: each element is divided by its own magnitude, as MXNet does).
    pub fn axes(&self, rank: usize) -> Vec<usize> {
        match self.mode {
            L2NormMode::Instance => (1..rank).collect(),
            L2NormMode::Channel => vec![1],
            L2NormMode::Spatial => (2..rank).collect(),
        }
    }
}

fn check_eps(eps: f64) -> R<()> {
    if !eps.is_finite() || eps < 0.0 {
        return Err(format!("eps {eps} must be finite and non-negative"));
    }
    Ok(())
}

impl OpDef for BatchNorm {
    fn arity(&self) -> (usize, usize) {
        (5, 5)
    }

    fn validate(&self) -> R<()> {
        check_eps(self.eps)?;
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(format!("momentum {} must lie in [0, 1]", self.momentum));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let c = dim(x, resolve_axis(self.axis, x.len())?, "data")?;
        for (i, what) in ["gamma", "beta", "moving mean", "moving var"]
            .iter()
            .enumerate()
        {
            expect_shape(what, input(ins, i + 1, what)?, &[c])?;
        }
        Ok(vec![x.to_vec()])
    }
}

impl OpDef for InstanceNorm {
    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn validate(&self) -> R<()> {
        check_eps(self.eps)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        if x.len() < 3 {
            return Err(format!("data must have spatial dims, got {x:?}"));
        }
        let c = dim(x, 1, "data")?;
        expect_shape("gamma", input(ins, 1, "gamma")?, &[c])?;
        expect_shape("beta", input(ins, 2, "beta")?, &[c])?;
        Ok(vec![x.to_vec()])
    }
}

impl OpDef for L2Normalization {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        check_eps(self.eps)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        if x.is_empty() || (self.mode != L2NormMode::Instance && x.len() < 3) {
            return Err(format!(
                "{:?} mode needs data of at least {} dims, got {x:?}",
                self.mode,
                if self.mode == L2NormMode::Instance {
                    1
                } else {
                    3
                }
            ));
        }
        Ok(vec![x.to_vec()])
    }
}

impl OpDef for LayerNorm {
    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn validate(&self) -> R<()> {
        check_eps(self.eps)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let d = dim(x, resolve_axis(self.axis, x.len())?, "data")?;
        expect_shape("gamma", input(ins, 1, "gamma")?, &[d])?;
        expect_shape("beta", input(ins, 2, "beta")?, &[d])?;
        Ok(vec![x.to_vec()])
    }
}

impl OpDef for GroupNorm {
    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn validate(&self) -> R<()> {
        check_eps(self.eps)?;
        positive("groups", &[self.groups])
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let groups = self.groups;
        if x.len() < 2 || dim(x, 1, "data")? % groups != 0 {
            return Err(format!(
                "data {x:?} must have channels divisible by {groups} groups"
            ));
        }
        expect_shape("gamma", input(ins, 1, "gamma")?, &[groups])?;
        expect_shape("beta", input(ins, 2, "beta")?, &[groups])?;
        Ok(vec![x.to_vec()])
    }
}
