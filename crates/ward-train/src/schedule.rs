//! Learning-rate schedules, as MXNet 1.9.1's `mxnet/lr_scheduler.py` computes them.
//!
//! A schedule is declared as data ([`ScheduleSpec`], tagged by `name`) and turned into a
//! [`Schedule`] with the optimizer's learning rate as its base. [`Schedule::lr`] is a pure
//! function of the update count `num_update` (MXNet's `Optimizer.num_update`, 1 at the
//! first step): no state, so a run resumed from a checkpoint gets the same rates as one
//! that never stopped.
//!
//! MXNet's scheduler objects are stateful. Called with non-decreasing counts, as the
//! optimizer calls them (every count from 1, each several times), they compute exactly
//! what [`Schedule::lr`] does, and that is what the fixtures hold:
//!
//! * `FactorScheduler` multiplies its `base_lr` by `factor` once per `step` updates in a
//!   loop that catches up after a jump (`while num_update > count + step`), clamping at
//!   `stop_factor_lr` each time; the warm-up does not advance the loop, so the first count
//!   after the warm-up catches up every step since 0. Here: `k = (n - 1) / step` steps
//!   (integer division, 0 for n = 0) applied by the same repeated multiplication and clamp
//!   (beyond 10 000 steps, `max(base * factor^k, stop)`, the same value to f64 rounding).
//! * `MultiFactorScheduler` multiplies by `factor` once per listed step the count has
//!   passed (`num_update > step[i]`).
//! * `PolyScheduler` and `CosineScheduler` recompute `base_lr` while
//!   `num_update <= max_update` and return the last value after it. An uninterrupted run
//!   passes `max_update` and keeps `final_lr`; MXNet's object, first called beyond
//!   `max_update` (a resumed run), returns its *initial* `base_lr` instead: path
//!   dependence ward does not reproduce (it returns `final_lr`, the uninterrupted value).
//!
//! Warm-up (`num_update < warmup_steps`): `linear` goes from `warmup_begin_lr` towards the
//! base rate in equal steps, `constant` stays at `warmup_begin_lr`.
//!
//! MXNet quirk not reproduced: when both the optimizer's `learning_rate` and a scheduler's
//! `base_lr` are given and differ, MXNet overwrites the scheduler's `base_lr`, but its
//! warm-up target and Poly/Cosine's `base_lr_orig` keep the scheduler's own value. ward has
//! one base rate, the optimizer's `learning_rate`, used everywhere.

use serde::{Deserialize, Serialize};

/// How the learning rate rises during the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmupMode {
    /// `warmup_begin_lr + (base - warmup_begin_lr) * n / warmup_steps`.
    #[default]
    Linear,
    /// `warmup_begin_lr` throughout the warm-up.
    Constant,
}

/// A declared learning-rate schedule, tagged by `name`
/// (e.g. `{ name = "cosine", max_update = 1000, warmup_steps = 100 }`). Every field has
/// MXNet 1.9.1's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum ScheduleSpec {
    /// `mx.lr_scheduler.FactorScheduler`.
    Factor(FactorSpec),
    /// `mx.lr_scheduler.MultiFactorScheduler`.
    MultiFactor(MultiFactorSpec),
    /// `mx.lr_scheduler.PolyScheduler`.
    Poly(PolySpec),
    /// `mx.lr_scheduler.CosineScheduler`.
    Cosine(CosineSpec),
}

/// The warm-up every schedule takes (MXNet's `LRScheduler` arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    /// Updates before the schedule proper starts (default 0).
    pub warmup_steps: u64,
    /// The rate the warm-up starts from (default 0).
    pub warmup_begin_lr: f64,
    /// `linear` (default) or `constant`.
    pub warmup_mode: WarmupMode,
}

/// `FactorScheduler`: the rate times `factor` every `step` updates, never below
/// `stop_factor_lr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorSpec {
    /// Updates between reductions (required, at least 1).
    pub step: u64,
    /// The multiplier, in (0, 1] (default 1).
    #[serde(default = "one")]
    pub factor: f64,
    /// The floor (default 1e-8).
    #[serde(default = "stop_factor_lr")]
    pub stop_factor_lr: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub warmup_begin_lr: f64,
    #[serde(default)]
    pub warmup_mode: WarmupMode,
}

/// `MultiFactorScheduler`: the rate times `factor` after each listed update count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiFactorSpec {
    /// Strictly increasing update counts, each at least 1 (required, not empty).
    pub step: Vec<u64>,
    /// The multiplier, in (0, 1] (default 1).
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub warmup_begin_lr: f64,
    #[serde(default)]
    pub warmup_mode: WarmupMode,
}

/// `PolyScheduler`: `final_lr + (base - final_lr) * (1 - (n - warmup) / (max_update -
/// warmup))^pwr` up to `max_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolySpec {
    /// The update count at which the rate reaches `final_lr` (required, above
    /// `warmup_steps`).
    pub max_update: u64,
    /// The power, positive (default 2).
    #[serde(default = "two")]
    pub pwr: f64,
    /// The final rate (default 0).
    #[serde(default)]
    pub final_lr: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub warmup_begin_lr: f64,
    #[serde(default)]
    pub warmup_mode: WarmupMode,
}

/// `CosineScheduler`: `final_lr + (base - final_lr) * (1 + cos(pi * (n - warmup) /
/// (max_update - warmup))) / 2` up to `max_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineSpec {
    /// The update count at which the rate reaches `final_lr` (required, above
    /// `warmup_steps`).
    pub max_update: u64,
    /// The final rate (default 0).
    #[serde(default)]
    pub final_lr: f64,
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub warmup_begin_lr: f64,
    #[serde(default)]
    pub warmup_mode: WarmupMode,
}

fn one() -> f64 {
    1.0
}

fn two() -> f64 {
    2.0
}

fn stop_factor_lr() -> f64 {
    1e-8
}

/// A schedule value out of its range, naming the schedule, the field and the range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule `{schedule}`: `{field}` = {value} is out of range: must be {allowed}")]
    OutOfRange {
        schedule: &'static str,
        field: &'static str,
        value: f64,
        allowed: &'static str,
    },
}

fn check(
    schedule: &'static str,
    field: &'static str,
    value: f64,
    ok: bool,
    allowed: &'static str,
) -> Result<(), ScheduleError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(ScheduleError::OutOfRange {
            schedule,
            field,
            value,
            allowed,
        })
    }
}

impl ScheduleSpec {
    /// MXNet's name of the schedule (`factor`, `multifactor`, `poly`, `cosine`).
    pub fn name(&self) -> &'static str {
        match self {
            ScheduleSpec::Factor(_) => "factor",
            ScheduleSpec::MultiFactor(_) => "multifactor",
            ScheduleSpec::Poly(_) => "poly",
            ScheduleSpec::Cosine(_) => "cosine",
        }
    }

    /// The warm-up settings.
    pub fn warmup(&self) -> Warmup {
        let (warmup_steps, warmup_begin_lr, warmup_mode) = match self {
            ScheduleSpec::Factor(s) => (s.warmup_steps, s.warmup_begin_lr, s.warmup_mode),
            ScheduleSpec::MultiFactor(s) => (s.warmup_steps, s.warmup_begin_lr, s.warmup_mode),
            ScheduleSpec::Poly(s) => (s.warmup_steps, s.warmup_begin_lr, s.warmup_mode),
            ScheduleSpec::Cosine(s) => (s.warmup_steps, s.warmup_begin_lr, s.warmup_mode),
        };
        Warmup {
            warmup_steps,
            warmup_begin_lr,
            warmup_mode,
        }
    }

    /// Range-checks every value against `base_lr` (the optimizer's learning rate): MXNet's
    /// constructor checks, plus finiteness, a positive factor and power, and
    /// `warmup_steps < max_update` (MXNet divides by zero at equality).
    pub fn validate(&self, base_lr: f64) -> Result<(), ScheduleError> {
        let name = self.name();
        check(name, "base_lr", base_lr, base_lr >= 0.0, "finite and >= 0")?;
        let w = self.warmup();
        check(
            name,
            "warmup_begin_lr",
            w.warmup_begin_lr,
            w.warmup_begin_lr >= 0.0 && w.warmup_begin_lr <= base_lr,
            "finite, >= 0 and <= the base learning rate",
        )?;
        match self {
            ScheduleSpec::Factor(s) => {
                check(name, "step", s.step as f64, s.step >= 1, "an integer >= 1")?;
                check(
                    name,
                    "factor",
                    s.factor,
                    s.factor > 0.0 && s.factor <= 1.0,
                    "in (0, 1]",
                )?;
                check(
                    name,
                    "stop_factor_lr",
                    s.stop_factor_lr,
                    s.stop_factor_lr >= 0.0,
                    "finite and >= 0",
                )?;
            }
            ScheduleSpec::MultiFactor(s) => {
                check(name, "step", 0.0, !s.step.is_empty(), "a non-empty list")?;
                let mut prev = 0;
                for &st in &s.step {
                    check(
                        name,
                        "step",
                        st as f64,
                        st > prev,
                        "a strictly increasing list of integers >= 1",
                    )?;
                    prev = st;
                }
                check(
                    name,
                    "factor",
                    s.factor,
                    s.factor > 0.0 && s.factor <= 1.0,
                    "in (0, 1]",
                )?;
            }
            ScheduleSpec::Poly(s) => {
                check(
                    name,
                    "max_update",
                    s.max_update as f64,
                    s.max_update >= 1 && s.max_update > s.warmup_steps,
                    "an integer >= 1 and > warmup_steps",
                )?;
                check(name, "pwr", s.pwr, s.pwr > 0.0, "finite and > 0")?;
                check(
                    name,
                    "final_lr",
                    s.final_lr,
                    s.final_lr >= 0.0,
                    "finite and >= 0",
                )?;
            }
            ScheduleSpec::Cosine(s) => {
                check(
                    name,
                    "max_update",
                    s.max_update as f64,
                    s.max_update >= 1 && s.max_update > s.warmup_steps,
                    "an integer >= 1 and > warmup_steps",
                )?;
                check(
                    name,
                    "final_lr",
                    s.final_lr,
                    s.final_lr >= 0.0,
                    "finite and >= 0",
                )?;
            }
        }
        Ok(())
    }
}

/// A validated schedule with its base rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    spec: ScheduleSpec,
    base_lr: f64,
}

/// Beyond this many factor steps the closed form replaces the repeated multiplication.
const MAX_FACTOR_LOOP: u64 = 10_000;

impl Schedule {
    /// Validates `spec` against `base_lr` (the optimizer's learning rate).
    pub fn new(spec: ScheduleSpec, base_lr: f64) -> Result<Schedule, ScheduleError> {
        spec.validate(base_lr)?;
        Ok(Schedule { spec, base_lr })
    }

    /// The declaration.
    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The base rate.
    pub fn base_lr(&self) -> f64 {
        self.base_lr
    }

    /// The learning rate at update count `num_update`, in f64 as MXNet's Python computes it.
    pub fn lr(&self, num_update: u64) -> f64 {
        let w = self.spec.warmup();
        if num_update < w.warmup_steps {
            return match w.warmup_mode {
                WarmupMode::Linear => {
                    let increase = (self.base_lr - w.warmup_begin_lr) * num_update as f64
                        / w.warmup_steps as f64;
                    w.warmup_begin_lr + increase
                }
                WarmupMode::Constant => w.warmup_begin_lr,
            };
        }
        let base = self.base_lr;
        match &self.spec {
            ScheduleSpec::Factor(s) => {
                let k = num_update.saturating_sub(1) / s.step.max(1);
                if k > MAX_FACTOR_LOOP {
                    let exp = i32::try_from(k).unwrap_or(i32::MAX);
                    return (base * s.factor.powi(exp)).max(s.stop_factor_lr);
                }
                let mut lr = base;
                for _ in 0..k {
                    lr *= s.factor;
                    if lr < s.stop_factor_lr {
                        lr = s.stop_factor_lr;
                    }
                }
                lr
            }
            ScheduleSpec::MultiFactor(s) => {
                let mut lr = base;
                for &st in &s.step {
                    if num_update > st {
                        lr *= s.factor;
                    } else {
                        break;
                    }
                }
                lr
            }
            ScheduleSpec::Poly(s) => {
                let n = num_update.min(s.max_update);
                let max_steps = s.max_update.saturating_sub(w.warmup_steps) as f64;
                let frac = n.saturating_sub(w.warmup_steps) as f64 / max_steps;
                s.final_lr + (base - s.final_lr) * (1.0 - frac).powf(s.pwr)
            }
            ScheduleSpec::Cosine(s) => {
                let n = num_update.min(s.max_update);
                let max_steps = s.max_update.saturating_sub(w.warmup_steps) as f64;
                let angle =
                    std::f64::consts::PI * n.saturating_sub(w.warmup_steps) as f64 / max_steps;
                s.final_lr + (base - s.final_lr) * (1.0 + angle.cos()) / 2.0
            }
        }
    }
}
