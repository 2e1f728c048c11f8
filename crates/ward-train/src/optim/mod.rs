//! Declared optimizers with MXNet 1.9.1's exact update rules.
//!
//! In MXNet an optimizer is pickled Python that the parameter server executes; in ward it
//! is data: an [`OptimizerSpec`] (MXNet's registry name and keyword arguments, every
//! default explicit, every value range-checked by [`OptimizerSpec::validate`]) and
//! optionally a [`ScheduleSpec`]. [`Optimizer`] applies it to
//! `f32` weights in MXNet's order of operations, in `f32` as MXNet's kernels compute them
//! (rates and bias corrections in `f64`, as MXNet's Python computes them, then rounded to
//! `f32` where MXNet passes them to a kernel).
//!
//! One training step is [`Optimizer::step`] over every parameter, as Gluon's `Trainer`
//! and Module's `_update_params` call MXNet's `Updater`: the update counts and the
//! schedule advance per parameter, and SGD and LARS (groups of 4, MXNet's
//! `MXNET_OPTIMIZER_AGGREGATION_SIZE` default) and LAMB (groups of 45) use the
//! multi-tensor kernels MXNet uses on that path. The per-parameter state is explicit
//! ([`ParamState`]: the update count and named tensors) for checkpoints; the optimizer's
//! own state is [`OptimizerState`].
//!
//! Where rescaling, clipping and weight decay apply differs per optimizer, exactly as in
//! MXNet: SGD, NAG, Signum, LARS, FTRL, AdaGrad, AdaDelta, DCASGD and LAMB clip the rescaled
//! gradient and apply the weight decay outside the clip (FTRL in its denominator, LAMB to
//! the normalised step); Adam, Adamax, Nadam, RMSProp and FTML clip the rescaled gradient
//! *plus* the weight decay. The rules are in [`sgd`] (SGD, NAG, Signum, LARS, DCASGD), [`adam`] (Adam,
//! Adamax, Nadam, FTML, LAMB) and [`adaptive`] (RMSProp, AdaGrad, AdaDelta, FTRL), each with
//! the MXNet quirks it reproduces.

pub mod adam;
pub mod adaptive;
pub mod sgd;
pub mod spec;

pub use spec::{
    AdaDelta, AdaGrad, Adam, Adamax, Common, DcaSgd, Ftml, Ftrl, Lamb, Lars, Nadam, Nag,
    OptimizerSpec, RmsProp, Sgd, Signum, OPTIMIZER_NAMES,
};

use crate::schedule::{Schedule, ScheduleError, ScheduleSpec};

/// Why an optimizer could not be built or could not update.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimError {
    /// A declared value is outside its range.
    #[error("optimizer `{optimizer}`: `{field}` = {value} is out of range: must be {allowed}")]
    OutOfRange {
        optimizer: &'static str,
        field: &'static str,
        value: f64,
        allowed: &'static str,
    },
    /// A combination MXNet 1.9.1 cannot run.
    #[error("optimizer `{optimizer}`: `{field}`: {reason}")]
    Unsupported {
        optimizer: &'static str,
        field: &'static str,
        reason: &'static str,
    },
    /// The schedule is invalid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A gradient or state tensor of another length than its weight.
    #[error("parameter {param}: {what} has {found} elements, the weight {expected}")]
    LengthMismatch {
        param: usize,
        what: String,
        expected: usize,
        found: usize,
    },
    /// A state made by another optimizer (or with other settings).
    #[error("parameter {param}: its state holds {found}, `{optimizer}` needs {expected}")]
    StateMismatch {
        param: usize,
        optimizer: &'static str,
        expected: String,
        found: String,
    },
    /// A multiplier that is negative or not finite.
    #[error("parameter {param}: `{field}` = {value} must be finite and >= 0")]
    Multiplier {
        param: usize,
        field: &'static str,
        value: f64,
    },
    /// `clip_global_norm`'s bound is not a positive finite number.
    #[error("clip_global_norm: max_norm = {0} must be finite and > 0")]
    MaxNorm(f32),
}

/// The optimizer state of one parameter: how often it was updated (MXNet's
/// `_index_update_count[index]`, the `t` of the bias corrections) and the named tensors
/// (MXNet's `create_state`), each as long as the weight.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamState {
    /// Updates applied to this parameter.
    pub update_count: u64,
    /// The state tensors by name, in the optimizer's order (see [`Optimizer::state_names`]).
    pub tensors: Vec<(&'static str, Vec<f32>)>,
}

impl ParamState {
    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.tensors
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.as_slice())
    }
}

/// The multipliers of one parameter and whether LARS leaves its rate alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamMults {
    /// Multiplies the learning rate (0 freezes the parameter, except for FTRL and FTML,
    /// which divide by the rate as MXNet does).
    pub lr_mult: f64,
    /// Multiplies the weight decay.
    pub wd_mult: f64,
    /// LARS uses the plain rate for this parameter (MXNet: names ending in `gamma`,
    /// `beta` or `bias`, Module mode only).
    pub lars_exempt: bool,
}

impl Default for ParamMults {
    fn default() -> Self {
        ParamMults::ONE
    }
}

impl ParamMults {
    /// Both multipliers 1.
    pub const ONE: ParamMults = ParamMults {
        lr_mult: 1.0,
        wd_mult: 1.0,
        lars_exempt: false,
    };

    /// Gluon's `Trainer`: the Parameter's own multipliers; the optimizer knows no names
    /// (so LARS scales every parameter).
    pub fn gluon(lr_mult: f64, wd_mult: f64) -> ParamMults {
        ParamMults {
            lr_mult,
            wd_mult,
            lars_exempt: false,
        }
    }

    /// Module mode (`param_idx2name` given): the symbol's `__lr_mult__` (default 1) and
    /// `__wd_mult__`; without an explicit `__wd_mult__`, MXNet's `set_wd_mult` makes it 0
    /// for names that do not end in `_weight` or `_gamma` (LARS: `_weight` only). LARS
    /// keeps the plain rate for names ending in `gamma`, `beta` or `bias`.
    pub fn module(
        optimizer: &OptimizerSpec,
        name: &str,
        lr_mult: Option<f64>,
        wd_mult: Option<f64>,
    ) -> ParamMults {
        let lars = matches!(optimizer, OptimizerSpec::Lars(_));
        let decays = if lars {
            name.ends_with("_weight")
        } else {
            name.ends_with("_weight") || name.ends_with("_gamma")
        };
        ParamMults {
            lr_mult: lr_mult.unwrap_or(1.0),
            wd_mult: wd_mult.unwrap_or(if decays { 1.0 } else { 0.0 }),
            lars_exempt: lars
                && (name.ends_with("gamma") || name.ends_with("beta") || name.ends_with("bias")),
        }
    }

    /// Module mode from a graph's parameter declaration. The IR keeps a multiplier of 1
    /// only as its default, so `wd_mult == 1` counts as not declared (an explicit
    /// `__wd_mult__ = 1` on a bias is lost: MXNet would keep its decay), and a parameter
    /// the importer unpacked from an RNN's packed vector gets the name rule of its own
    /// name (`…_l0_i2h_weight` decays) where MXNet applies it to the vector's. Where the
    /// symbol is at hand, [`ParamMults::module_symbol`] has neither gap.
    pub fn module_decl(optimizer: &OptimizerSpec, decl: &ward_graph::ir::ParamDecl) -> ParamMults {
        let wd = if decl.wd_mult == 1.0 {
            None
        } else {
            Some(decl.wd_mult)
        };
        ParamMults::module(optimizer, &decl.name, Some(decl.lr_mult), wd)
    }

    /// Module mode for the graph parameter `decl` of a graph imported from `symbol`: the
    /// multipliers MXNet's Module gives the symbol's variable, read from its own
    /// `__lr_mult__`/`__wd_mult__` attributes, so an explicit `__wd_mult__ = 1` keeps its
    /// decay (Gluon's exports declare one on every parameter, biases and betas
    /// included). A parameter the importer unpacked from an RNN's packed vector
    /// (`{vector}_l0_i2h_weight`, …) takes the vector's attributes and name rule, as
    /// MXNet updates the vector as one parameter (`lstm_parameters` does not decay).
    /// Falls back to [`ParamMults::module_decl`] for a name the symbol does not have.
    pub fn module_symbol(
        optimizer: &OptimizerSpec,
        decl: &ward_graph::ir::ParamDecl,
        symbol: &ward_mxnet::symbol::Symbol,
    ) -> ParamMults {
        let variable = |name: &str| {
            symbol
                .nodes
                .iter()
                .find(|n| n.op == "null" && n.name == name)
        };
        // The packed vector: a variable feeding an RNN's parameters (input 1), whose name
        // and an unpacked piece's suffix make up `decl.name`.
        let packed = || {
            symbol
                .nodes
                .iter()
                .filter(|n| n.op == "RNN")
                .filter_map(|n| symbol.nodes.get(n.inputs.get(1)?.node))
                .find(|v| {
                    v.op == "null"
                        && decl
                            .name
                            .strip_prefix(v.name.as_str())
                            .and_then(|rest| rest.strip_prefix('_'))
                            .is_some_and(is_unpacked_suffix)
                })
        };
        let Some(node) = variable(&decl.name).or_else(packed) else {
            return ParamMults::module_decl(optimizer, decl);
        };
        let attr = |key: &str| node.attrs.get(key).and_then(|v| v.parse::<f64>().ok());
        ParamMults::module(
            optimizer,
            &node.name,
            attr("__lr_mult__"),
            attr("__wd_mult__"),
        )
    }
}

/// Whether `suffix` names a piece of an unpacked RNN vector: `l0_i2h_weight`,
/// `r1_h2h_bias`, … (the importer's names, see `ward_graph::compat`).
fn is_unpacked_suffix(suffix: &str) -> bool {
    let Some((cell, what)) = suffix.split_once('_') else {
        return false;
    };
    let mut chars = cell.chars();
    matches!(chars.next(), Some('l' | 'r'))
        && !chars.as_str().is_empty()
        && chars.as_str().chars().all(|c| c.is_ascii_digit())
        && matches!(what, "i2h_weight" | "h2h_weight" | "i2h_bias" | "h2h_bias")
}

/// One parameter of a step: its weight, gradient, state and multipliers.
#[derive(Debug)]
pub struct ParamUpdate<'a> {
    pub weight: &'a mut [f32],
    pub grad: &'a [f32],
    pub state: &'a mut ParamState,
    pub mults: ParamMults,
}

/// The optimizer's own state, beyond the per-parameter states.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerState {
    /// MXNet's `num_update`: the largest update count of any parameter; the schedule's
    /// argument.
    pub num_update: u64,
    /// Nadam's `m_schedule`: one product for the whole optimizer, multiplied on every
    /// parameter's update (MXNet's quirk: it depends on the number of parameters).
    pub nadam_m_schedule: f64,
    /// LARS's rate at the previous and the latest group update (MXNet's `last_lr`,
    /// `cur_lr`), for the momentum correction.
    pub lars_lrs: Option<(f64, f64)>,
}

impl Default for OptimizerState {
    fn default() -> Self {
        OptimizerState {
            num_update: 0,
            nadam_m_schedule: 1.0,
            lars_lrs: None,
        }
    }
}

/// A validated optimizer with its schedule and state.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    spec: OptimizerSpec,
    schedule: Option<Schedule>,
    state: OptimizerState,
}

/// What one group update needs from the optimizer: the rate and the step.
pub(crate) struct Rates {
    /// The scheduled (or fixed) rate times the parameter's `lr_mult`.
    pub lr: f64,
    /// `wd * wd_mult`.
    pub wd: f64,
    /// The parameter's update count after this update.
    pub t: u64,
}

impl Optimizer {
    /// Validates the spec and the schedule (whose base is the spec's `learning_rate`).
    pub fn new(
        spec: OptimizerSpec,
        schedule: Option<ScheduleSpec>,
    ) -> Result<Optimizer, OptimError> {
        Optimizer::resume(spec, schedule, OptimizerState::default())
    }

    /// As [`Optimizer::new`], continuing from a saved [`OptimizerState`].
    pub fn resume(
        spec: OptimizerSpec,
        schedule: Option<ScheduleSpec>,
        state: OptimizerState,
    ) -> Result<Optimizer, OptimError> {
        spec.validate()?;
        let schedule = match schedule {
            Some(s) => Some(Schedule::new(s, spec.common().learning_rate)?),
            None => None,
        };
        Ok(Optimizer {
            spec,
            schedule,
            state,
        })
    }

    /// The declaration.
    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    /// The schedule, if any.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// The optimizer's own state (for checkpoints).
    pub fn state(&self) -> OptimizerState {
        self.state
    }

    /// Continues from a saved state (a checkpoint's).
    pub fn set_state(&mut self, state: OptimizerState) {
        self.state = state;
    }

    /// The learning rate at the current `num_update` (MXNet's `Optimizer.learning_rate`).
    pub fn learning_rate(&self) -> f64 {
        self.lr_at(self.state.num_update)
    }

    fn lr_at(&self, num_update: u64) -> f64 {
        match &self.schedule {
            Some(s) => s.lr(num_update),
            None => self.spec.common().learning_rate,
        }
    }

    /// The names of the state tensors this optimizer keeps per parameter, in order.
    pub fn state_names(&self) -> &'static [&'static str] {
        match &self.spec {
            OptimizerSpec::Sgd(s) if s.momentum != 0.0 => &["momentum"],
            OptimizerSpec::Nag(s) if s.momentum != 0.0 => &["momentum"],
            OptimizerSpec::Signum(s) if s.momentum != 0.0 => &["momentum"],
            OptimizerSpec::Lars(s) if s.momentum != 0.0 => &["momentum"],
            OptimizerSpec::Sgd(_)
            | OptimizerSpec::Nag(_)
            | OptimizerSpec::Signum(_)
            | OptimizerSpec::Lars(_) => &[],
            OptimizerSpec::Adam(_) | OptimizerSpec::Nadam(_) | OptimizerSpec::Lamb(_) => {
                &["mean", "var"]
            }
            OptimizerSpec::Adamax(_) => &["mean", "u"],
            OptimizerSpec::RmsProp(s) if s.centered => &["n", "g", "delta"],
            OptimizerSpec::RmsProp(_) => &["n"],
            OptimizerSpec::AdaGrad(_) => &["history"],
            OptimizerSpec::AdaDelta(_) => &["acc_g", "acc_delta"],
            OptimizerSpec::Ftrl(_) => &["z", "n"],
            OptimizerSpec::Ftml(_) => &["d", "v", "z"],
            OptimizerSpec::DcaSgd(_) => &["previous_weight"],
        }
    }

    /// The initial state for `weight`, as MXNet's `create_state`: zeros, except DCASGD's
    /// previous weight, a copy of the weight.
    pub fn create_state(&self, weight: &[f32]) -> ParamState {
        let tensors = self
            .state_names()
            .iter()
            .map(|&name| {
                let t = if name == "previous_weight" {
                    weight.to_vec()
                } else {
                    vec![0.0; weight.len()]
                };
                (name, t)
            })
            .collect();
        ParamState {
            update_count: 0,
            tensors,
        }
    }

    /// Updates one parameter: a step of one parameter (see [`Optimizer::step`]).
    pub fn update(
        &mut self,
        weight: &mut [f32],
        grad: &[f32],
        state: &mut ParamState,
        mults: ParamMults,
    ) -> Result<(), OptimError> {
        self.step(&mut [ParamUpdate {
            weight,
            grad,
            state,
            mults,
        }])
    }

    /// One training step over `params` in order, as MXNet's `Updater` called with the
    /// lists of all indices (Gluon's `Trainer.step`, Module's `update`). Every length and
    /// state is checked before anything changes.
    pub fn step(&mut self, params: &mut [ParamUpdate<'_>]) -> Result<(), OptimError> {
        let names = self.state_names();
        for (i, p) in params.iter().enumerate() {
            let n = p.weight.len();
            if p.grad.len() != n {
                return Err(OptimError::LengthMismatch {
                    param: i,
                    what: "the gradient".into(),
                    expected: n,
                    found: p.grad.len(),
                });
            }
            let found: Vec<&str> = p.state.tensors.iter().map(|(name, _)| *name).collect();
            if found.as_slice() != names {
                return Err(OptimError::StateMismatch {
                    param: i,
                    optimizer: self.spec.name(),
                    expected: format!("{names:?}"),
                    found: format!("{found:?}"),
                });
            }
            for (name, t) in &p.state.tensors {
                if t.len() != n {
                    return Err(OptimError::LengthMismatch {
                        param: i,
                        what: format!("state `{name}`"),
                        expected: n,
                        found: t.len(),
                    });
                }
            }
            for (field, value) in [("lr_mult", p.mults.lr_mult), ("wd_mult", p.mults.wd_mult)] {
                if !value.is_finite() || value < 0.0 {
                    return Err(OptimError::Multiplier {
                        param: i,
                        field,
                        value,
                    });
                }
            }
        }
        let group = match &self.spec {
            OptimizerSpec::Sgd(_) | OptimizerSpec::Lars(_) => 4,
            OptimizerSpec::Lamb(_) => 45,
            _ => 1,
        };
        for chunk in params.chunks_mut(group) {
            self.update_group(chunk);
        }
        Ok(())
    }

    /// Counts the group's updates (MXNet's `_update_count` on the list), then applies the
    /// rule to each member with the rate at the new `num_update`.
    fn update_group(&mut self, group: &mut [ParamUpdate<'_>]) {
        for p in group.iter_mut() {
            p.state.update_count = p.state.update_count.saturating_add(1);
            self.state.num_update = self.state.num_update.max(p.state.update_count);
        }
        let lr = self.lr_at(self.state.num_update);
        let common = self.spec.common();
        let rates: Vec<Rates> = group
            .iter()
            .map(|p| Rates {
                lr: lr * p.mults.lr_mult,
                wd: common.wd * p.mults.wd_mult,
                t: p.state.update_count,
            })
            .collect();
        match &self.spec {
            OptimizerSpec::Sgd(s) => sgd::sgd_group(s, group, &rates),
            OptimizerSpec::Lars(s) => {
                let (last, cur) = match self.state.lars_lrs {
                    Some((_, cur)) => (cur, lr),
                    None => (lr, lr),
                };
                self.state.lars_lrs = Some((last, cur));
                sgd::lars_group(s, group, &rates, last, cur);
            }
            OptimizerSpec::Lamb(s) => adam::lamb_group(s, group, &rates),
            spec => {
                for (p, r) in group.iter_mut().zip(&rates) {
                    match spec {
                        OptimizerSpec::Nag(s) => sgd::nag(s, p, r),
                        OptimizerSpec::Signum(s) => sgd::signum(s, p, r),
                        OptimizerSpec::DcaSgd(s) => sgd::dcasgd(s, p, r),
                        OptimizerSpec::Adam(s) => adam::adam(s, p, r),
                        OptimizerSpec::Adamax(s) => adam::adamax(s, p, r),
                        OptimizerSpec::Nadam(s) => {
                            self.state.nadam_m_schedule =
                                adam::nadam(s, p, r, self.state.nadam_m_schedule);
                        }
                        OptimizerSpec::Ftml(s) => adam::ftml(s, p, r),
                        OptimizerSpec::RmsProp(s) => adaptive::rmsprop(s, p, r),
                        OptimizerSpec::AdaGrad(s) => adaptive::adagrad(s, p, r),
                        OptimizerSpec::AdaDelta(s) => adaptive::adadelta(s, p, r),
                        OptimizerSpec::Ftrl(s) => adaptive::ftrl(s, p, r),
                        OptimizerSpec::Sgd(_) | OptimizerSpec::Lars(_) | OptimizerSpec::Lamb(_) => {
                        }
                    }
                }
            }
        }
    }
}

/// MXNet's `clip` (mshadow `clip::Map`): NaN passes through.
#[inline]
pub(crate) fn clip(x: f32, bound: f32) -> f32 {
    if x > bound {
        bound
    } else if x < -bound {
        -bound
    } else {
        x
    }
}

/// The sum of squares in `f32`, accumulated in order (MXNet's `multi_sum_sq` on CPU).
pub(crate) fn sum_sq(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |acc, &v| acc + v * v)
}

/// `mx.gluon.utils.clip_global_norm`: scales every array by
/// `min(max_norm / (norm + 1e-8), 1)` where `norm` is the 2-norm of all of them together,
/// and returns `norm`. In `f32` as MXNet computes it.
///
/// A non-finite norm is MXNet's too: it only warns, so a NaN norm makes every element NaN
/// and an infinite norm makes every finite element 0 (and infinities NaN). The caller
/// sees the returned norm and decides (skip the step, stop the run).
pub fn clip_global_norm(arrays: &mut [&mut [f32]], max_norm: f32) -> Result<f32, OptimError> {
    if !max_norm.is_finite() || max_norm <= 0.0 {
        return Err(OptimError::MaxNorm(max_norm));
    }
    let total = arrays.iter().fold(0.0f32, |acc, a| acc + sum_sq(a)).sqrt();
    let scale = max_norm / (total + 1e-8f32);
    let scale = if scale.is_nan() {
        scale
    } else {
        scale.min(1.0)
    };
    for a in arrays.iter_mut() {
        for v in a.iter_mut() {
            *v *= scale;
        }
    }
    Ok(total)
}
