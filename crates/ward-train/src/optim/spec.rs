//! The declared optimizers: one struct per MXNet optimizer, every field with MXNet 1.9.1's
//! default, and their range checks.

use serde::{Deserialize, Serialize};

use super::OptimError;

/// The settings every optimizer takes (MXNet's `Optimizer` base class).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Common {
    /// The learning rate (the schedule's base when one is given).
    pub learning_rate: f64,
    /// Weight decay, times the parameter's `wd_mult`.
    pub wd: f64,
    /// Multiplies every gradient before anything else.
    pub rescale_grad: f64,
    /// Clips the (rescaled) gradient to `[-c, c]` where the optimizer clips.
    pub clip_gradient: Option<f64>,
}

macro_rules! spec_struct {
    (
        $(#[$meta:meta])*
        $name:ident, $opt:literal, learning_rate = $lr:expr;
        $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr ;)*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            #[doc = concat!("The learning rate (default ", stringify!($lr), ").")]
            pub learning_rate: f64,
            /// Weight decay (default 0).
            pub wd: f64,
            /// Multiplies every gradient (default 1).
            pub rescale_grad: f64,
            /// Clips the gradient to `[-c, c]` (default none; positive when given).
            #[serde(skip_serializing_if = "Option::is_none")]
            pub clip_gradient: Option<f64>,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    learning_rate: $lr,
                    wd: 0.0,
                    rescale_grad: 1.0,
                    clip_gradient: None,
                    $( $field: $default, )*
                }
            }
        }

        impl $name {
            /// The settings every optimizer takes.
            pub fn common(&self) -> Common {
                Common {
                    learning_rate: self.learning_rate,
                    wd: self.wd,
                    rescale_grad: self.rescale_grad,
                    clip_gradient: self.clip_gradient,
                }
            }

            fn check_common(&self) -> Result<(), OptimError> {
                let o = $opt;
                range(o, "learning_rate", self.learning_rate, self.learning_rate >= 0.0, "finite and >= 0")?;
                range(o, "wd", self.wd, self.wd >= 0.0, "finite and >= 0")?;
                range(o, "rescale_grad", self.rescale_grad, self.rescale_grad > 0.0, "finite and > 0")?;
                if let Some(c) = self.clip_gradient {
                    range(o, "clip_gradient", c, c > 0.0, "finite and > 0 when given")?;
                }
                Ok(())
            }
        }
    };
}

pub(crate) fn range(
    optimizer: &'static str,
    field: &'static str,
    value: f64,
    ok: bool,
    allowed: &'static str,
) -> Result<(), OptimError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(OptimError::OutOfRange {
            optimizer,
            field,
            value,
            allowed,
        })
    }
}

fn unit(o: &'static str, field: &'static str, v: f64) -> Result<(), OptimError> {
    range(o, field, v, (0.0..1.0).contains(&v), "in [0, 1)")
}

fn positive(o: &'static str, field: &'static str, v: f64) -> Result<(), OptimError> {
    range(o, field, v, v > 0.0, "finite and > 0")
}

fn non_negative(o: &'static str, field: &'static str, v: f64) -> Result<(), OptimError> {
    range(o, field, v, v >= 0.0, "finite and >= 0")
}

spec_struct! {
    /// `mx.optimizer.SGD`: momentum SGD with weight decay. `lazy_update` only changes
    /// row-sparse gradients; with ward's dense gradients both values give the same update.
    Sgd, "sgd", learning_rate = 0.01;
    /// Momentum, in [0, 1) (default 0: no momentum state).
    momentum: f64 = 0.0;
    /// Lazy update of row-sparse gradients (default true; no effect on dense gradients).
    lazy_update: bool = true;
}

spec_struct! {
    /// `mx.optimizer.NAG`: Nesterov momentum (plain SGD when `momentum` is 0).
    Nag, "nag", learning_rate = 0.01;
    /// Momentum, in [0, 1) (default 0).
    momentum: f64 = 0.0;
}

spec_struct! {
    /// `mx.optimizer.Signum`: the sign of the momentum (signSGD when `momentum` is 0).
    Signum, "signum", learning_rate = 0.01;
    /// Momentum, in [0, 1) (default 0.9).
    momentum: f64 = 0.9;
    /// Decoupled weight decay, >= 0 (default 0); needs momentum (MXNet's signsgd_update
    /// has no such argument).
    wd_lh: f64 = 0.0;
}

spec_struct! {
    /// `mx.optimizer.Adam`. `lazy_update` only changes row-sparse gradients.
    Adam, "adam", learning_rate = 0.001;
    /// First-moment decay, in [0, 1) (default 0.9).
    beta1: f64 = 0.9;
    /// Second-moment decay, in [0, 1) (default 0.999).
    beta2: f64 = 0.999;
    /// Added to the root of the second moment, > 0 (default 1e-8).
    epsilon: f64 = 1e-8;
    /// Lazy update of row-sparse gradients (default true; no effect on dense gradients).
    lazy_update: bool = true;
}

spec_struct! {
    /// `mx.optimizer.Adamax`: Adam with the infinity norm.
    Adamax, "adamax", learning_rate = 0.002;
    /// First-moment decay, in [0, 1) (default 0.9).
    beta1: f64 = 0.9;
    /// Decay of the running maximum, in [0, 1) (default 0.999).
    beta2: f64 = 0.999;
}

spec_struct! {
    /// `mx.optimizer.Nadam`: Adam with Nesterov momentum and a momentum schedule.
    Nadam, "nadam", learning_rate = 0.001;
    /// First-moment decay, in [0, 1) (default 0.9).
    beta1: f64 = 0.9;
    /// Second-moment decay, in [0, 1) (default 0.999).
    beta2: f64 = 0.999;
    /// > 0 (default 1e-8).
    epsilon: f64 = 1e-8;
    /// The momentum schedule's decay, >= 0 (default 0.004).
    schedule_decay: f64 = 0.004;
}

spec_struct! {
    /// `mx.optimizer.RMSProp`: Tieleman and Hinton's, or Graves's when `centered`.
    RmsProp, "rmsprop", learning_rate = 0.001;
    /// Decay of the squared-gradient average, in [0, 1) (default 0.9).
    gamma1: f64 = 0.9;
    /// The momentum of the centered version, in [0, 1) (default 0.9).
    gamma2: f64 = 0.9;
    /// > 0 (default 1e-8).
    epsilon: f64 = 1e-8;
    /// Graves's centered version (default false).
    centered: bool = false;
    /// Clips the weights to `[-c, c]` after the update (default none; positive when given).
    #[serde(skip_serializing_if = "Option::is_none")]
    clip_weights: Option<f64> = None;
}

spec_struct! {
    /// `mx.optimizer.AdaGrad`.
    AdaGrad, "adagrad", learning_rate = 0.01;
    /// Added to the history under the root, > 0 (default 1e-7).
    eps: f64 = 1e-7;
}

spec_struct! {
    /// `mx.optimizer.AdaDelta`. MXNet's AdaDelta ignores the learning rate (and so
    /// `lr_mult` and any schedule).
    AdaDelta, "adadelta", learning_rate = 0.01;
    /// Decay of both accumulators, in [0, 1) (default 0.9).
    rho: f64 = 0.9;
    /// > 0 (default 1e-5).
    epsilon: f64 = 1e-5;
}

spec_struct! {
    /// `mx.optimizer.Ftrl`: FTRL-proximal.
    Ftrl, "ftrl", learning_rate = 0.1;
    /// L1 regularisation, >= 0 (default 0.01).
    lamda1: f64 = 0.01;
    /// Per-coordinate rate parameter, >= 0 (default 1).
    beta: f64 = 1.0;
}

spec_struct! {
    /// `mx.optimizer.FTML`: follow the moving leader.
    Ftml, "ftml", learning_rate = 0.01;
    /// In [0, 1) (default 0.6).
    beta1: f64 = 0.6;
    /// In [0, 1) (default 0.999).
    beta2: f64 = 0.999;
    /// > 0 (default 1e-8).
    epsilon: f64 = 1e-8;
}

spec_struct! {
    /// `mx.optimizer.LAMB`: layer-wise adaptive moments.
    Lamb, "lamb", learning_rate = 0.001;
    /// In [0, 1) (default 0.9).
    beta1: f64 = 0.9;
    /// In [0, 1) (default 0.999).
    beta2: f64 = 0.999;
    /// > 0 (default 1e-6).
    epsilon: f64 = 1e-6;
    /// Lower bound of the weight norm in the trust ratio (default none; positive).
    #[serde(skip_serializing_if = "Option::is_none")]
    lower_bound: Option<f64> = None;
    /// Upper bound of the weight norm in the trust ratio (default none; positive).
    #[serde(skip_serializing_if = "Option::is_none")]
    upper_bound: Option<f64> = None;
    /// Bias-corrected moments (default true).
    bias_correction: bool = true;
}

spec_struct! {
    /// `mx.optimizer.LARS`: SGD with a layer-wise rate `eta * |w| / (|g| + wd |w| + eps)`.
    Lars, "lars", learning_rate = 0.01;
    /// Momentum, in [0, 1) (default 0).
    momentum: f64 = 0.0;
    /// Lazy update of row-sparse gradients (default true; no effect on dense gradients).
    lazy_update: bool = true;
    /// The LARS coefficient, >= 0 (default 0.001).
    eta: f64 = 0.001;
    /// Added to the denominator, >= 0 (default 0).
    eps: f64 = 0.0;
    /// Scales the momentum by the change of the scheduled rate (default true).
    momentum_correction: bool = true;
}

spec_struct! {
    /// `mx.optimizer.DCASGD`: delay-compensated asynchronous SGD.
    DcaSgd, "dcasgd", learning_rate = 0.01;
    /// Must be 0: MXNet 1.9.1's DCASGD fails with momentum (it tests an NDArray's truth
    /// value).
    momentum: f64 = 0.0;
    /// The delay-compensation scale, >= 0 (default 0.04).
    lamda: f64 = 0.04;
}

/// A declared optimizer, tagged by MXNet's registry name
/// (e.g. `{ name = "adam", learning_rate = 0.001, beta1 = 0.9 }`). The keys are MXNet's
/// keyword arguments; unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerSpec {
    Sgd(Sgd),
    Nag(Nag),
    Signum(Signum),
    Adam(Adam),
    Adamax(Adamax),
    Nadam(Nadam),
    #[serde(rename = "rmsprop")]
    RmsProp(RmsProp),
    #[serde(rename = "adagrad")]
    AdaGrad(AdaGrad),
    #[serde(rename = "adadelta")]
    AdaDelta(AdaDelta),
    Ftrl(Ftrl),
    Ftml(Ftml),
    Lamb(Lamb),
    Lars(Lars),
    #[serde(rename = "dcasgd")]
    DcaSgd(DcaSgd),
}

/// Every optimizer name ward accepts, as MXNet's registry spells them.
pub const OPTIMIZER_NAMES: [&str; 14] = [
    "sgd", "nag", "signum", "adam", "adamax", "nadam", "rmsprop", "adagrad", "adadelta", "ftrl",
    "ftml", "lamb", "lars", "dcasgd",
];

impl OptimizerSpec {
    /// MXNet's registry name.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerSpec::Sgd(_) => "sgd",
            OptimizerSpec::Nag(_) => "nag",
            OptimizerSpec::Signum(_) => "signum",
            OptimizerSpec::Adam(_) => "adam",
            OptimizerSpec::Adamax(_) => "adamax",
            OptimizerSpec::Nadam(_) => "nadam",
            OptimizerSpec::RmsProp(_) => "rmsprop",
            OptimizerSpec::AdaGrad(_) => "adagrad",
            OptimizerSpec::AdaDelta(_) => "adadelta",
            OptimizerSpec::Ftrl(_) => "ftrl",
            OptimizerSpec::Ftml(_) => "ftml",
            OptimizerSpec::Lamb(_) => "lamb",
            OptimizerSpec::Lars(_) => "lars",
            OptimizerSpec::DcaSgd(_) => "dcasgd",
        }
    }

    /// The settings every optimizer takes.
    pub fn common(&self) -> Common {
        match self {
            OptimizerSpec::Sgd(s) => s.common(),
            OptimizerSpec::Nag(s) => s.common(),
            OptimizerSpec::Signum(s) => s.common(),
            OptimizerSpec::Adam(s) => s.common(),
            OptimizerSpec::Adamax(s) => s.common(),
            OptimizerSpec::Nadam(s) => s.common(),
            OptimizerSpec::RmsProp(s) => s.common(),
            OptimizerSpec::AdaGrad(s) => s.common(),
            OptimizerSpec::AdaDelta(s) => s.common(),
            OptimizerSpec::Ftrl(s) => s.common(),
            OptimizerSpec::Ftml(s) => s.common(),
            OptimizerSpec::Lamb(s) => s.common(),
            OptimizerSpec::Lars(s) => s.common(),
            OptimizerSpec::DcaSgd(s) => s.common(),
        }
    }

    /// Range-checks every value; the error names the optimizer, the field and the
    /// allowed range. Non-finite values are always refused.
    pub fn validate(&self) -> Result<(), OptimError> {
        let o = self.name();
        match self {
            OptimizerSpec::Sgd(s) => {
                s.check_common()?;
                unit(o, "momentum", s.momentum)
            }
            OptimizerSpec::Nag(s) => {
                s.check_common()?;
                unit(o, "momentum", s.momentum)
            }
            OptimizerSpec::Signum(s) => {
                s.check_common()?;
                unit(o, "momentum", s.momentum)?;
                non_negative(o, "wd_lh", s.wd_lh)?;
                if s.momentum == 0.0 && s.wd_lh != 0.0 {
                    return Err(OptimError::Unsupported {
                        optimizer: o,
                        field: "wd_lh",
                        reason: "must be 0 without momentum (MXNet's signsgd_update has no wd_lh)",
                    });
                }
                Ok(())
            }
            OptimizerSpec::Adam(s) => {
                s.check_common()?;
                unit(o, "beta1", s.beta1)?;
                unit(o, "beta2", s.beta2)?;
                positive(o, "epsilon", s.epsilon)
            }
            OptimizerSpec::Adamax(s) => {
                s.check_common()?;
                unit(o, "beta1", s.beta1)?;
                unit(o, "beta2", s.beta2)
            }
            OptimizerSpec::Nadam(s) => {
                s.check_common()?;
                unit(o, "beta1", s.beta1)?;
                unit(o, "beta2", s.beta2)?;
                positive(o, "epsilon", s.epsilon)?;
                non_negative(o, "schedule_decay", s.schedule_decay)
            }
            OptimizerSpec::RmsProp(s) => {
                s.check_common()?;
                unit(o, "gamma1", s.gamma1)?;
                unit(o, "gamma2", s.gamma2)?;
                positive(o, "epsilon", s.epsilon)?;
                if let Some(c) = s.clip_weights {
                    range(o, "clip_weights", c, c > 0.0, "finite and > 0 when given")?;
                }
                Ok(())
            }
            OptimizerSpec::AdaGrad(s) => {
                s.check_common()?;
                positive(o, "eps", s.eps)
            }
            OptimizerSpec::AdaDelta(s) => {
                s.check_common()?;
                unit(o, "rho", s.rho)?;
                positive(o, "epsilon", s.epsilon)
            }
            OptimizerSpec::Ftrl(s) => {
                s.check_common()?;
                // FTRL divides by the learning rate.
                positive(o, "learning_rate", s.learning_rate)?;
                non_negative(o, "lamda1", s.lamda1)?;
                non_negative(o, "beta", s.beta)
            }
            OptimizerSpec::Ftml(s) => {
                s.check_common()?;
                // FTML divides by the learning rate.
                positive(o, "learning_rate", s.learning_rate)?;
                unit(o, "beta1", s.beta1)?;
                unit(o, "beta2", s.beta2)?;
                positive(o, "epsilon", s.epsilon)
            }
            OptimizerSpec::Lamb(s) => {
                s.check_common()?;
                unit(o, "beta1", s.beta1)?;
                unit(o, "beta2", s.beta2)?;
                positive(o, "epsilon", s.epsilon)?;
                if let Some(l) = s.lower_bound {
                    positive(o, "lower_bound", l)?;
                }
                if let Some(u) = s.upper_bound {
                    positive(o, "upper_bound", u)?;
                    if let Some(l) = s.lower_bound {
                        range(o, "upper_bound", u, u >= l, ">= lower_bound")?;
                    }
                }
                Ok(())
            }
            OptimizerSpec::Lars(s) => {
                s.check_common()?;
                unit(o, "momentum", s.momentum)?;
                non_negative(o, "eta", s.eta)?;
                non_negative(o, "eps", s.eps)
            }
            OptimizerSpec::DcaSgd(s) => {
                s.check_common()?;
                range(
                    o,
                    "momentum",
                    s.momentum,
                    s.momentum == 0.0,
                    "0 (MXNet 1.9.1's DCASGD fails with momentum)",
                )?;
                non_negative(o, "lamda", s.lamda)
            }
        }
    }
}
