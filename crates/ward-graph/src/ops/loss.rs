//! Loss heads and gradient controls: the `*Output` operators MXNet graphs end in (a
//! forward function at inference, a loss in training, their label an optional input: a
//! graph input of role `label`, not fed at inference), `make_loss` and `block_grad`.

use serde::{Deserialize, Serialize};

use ward_core::DType;

use super::{data_dtype, input, OpDef, Shape, R};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftmaxOutputMode {
    /// Softmax over all axes after the first (MXNet's default).
    Flatten,
    /// Over axis 1 (MXNet `multi_output`).
    Channel,
    /// Over the last axis (MXNet `preserve_shape`).
    Last,
}

/// How a loss's gradient is divided (MXNet `normalization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Not divided.
    #[default]
    Null,
    /// By the batch size.
    Batch,
    /// By the number of labels not ignored (SoftmaxOutput) or of elements over the
    /// threshold (MakeLoss).
    Valid,
}

fn one() -> f64 {
    1.0
}

fn minus_one() -> f64 {
    -1.0
}

/// MXNet's SoftmaxOutput: softmax forward; in training, cross-entropy against the label.
/// Inputs: data, `[label]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxOutput {
    pub mode: SoftmaxOutputMode,
    #[serde(default = "one")]
    pub grad_scale: f64,
    /// Labels equal to this are ignored when `use_ignore`.
    #[serde(default = "minus_one")]
    pub ignore_label: f64,
    #[serde(default)]
    pub use_ignore: bool,
    #[serde(default)]
    pub normalization: Normalization,
    /// Label smoothing: the target puts `smooth_alpha` spread over the other classes.
    #[serde(default)]
    pub smooth_alpha: f64,
    /// MXNet `out_grad`: meant to multiply the gradient by the head gradient; MXNet 1.9.1
    /// multiplies it by the output itself (ward-train follows MXNet).
    #[serde(default)]
    pub out_grad: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionKind {
    /// Identity forward, squared error.
    Linear,
    /// Sigmoid forward, cross-entropy against 0/1 labels.
    Logistic,
    /// Identity forward, absolute error.
    Mae,
}

/// MXNet's Linear/Logistic/MAERegressionOutput. Inputs: data, `[label]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionOutput {
    pub kind: RegressionKind,
    #[serde(default = "one")]
    pub grad_scale: f64,
}

/// The input is the loss: identity forward, gradient `grad_scale` (normalised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakeLoss {
    #[serde(default = "one")]
    pub grad_scale: f64,
    #[serde(default)]
    pub normalization: Normalization,
    #[serde(default)]
    pub valid_thresh: f64,
}

/// Identity forward; no gradient flows through it (MXNet `BlockGrad`, `stop_gradient`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockGrad {}

fn finite(what: &str, v: f64) -> R<()> {
    if !v.is_finite() {
        return Err(format!("{what} {v} must be finite"));
    }
    Ok(())
}

impl OpDef for SoftmaxOutput {
    fn arity(&self) -> (usize, usize) {
        (1, 2)
    }

    fn validate(&self) -> R<()> {
        finite("grad_scale", self.grad_scale)?;
        finite("ignore_label", self.ignore_label)?;
        if !(0.0..1.0).contains(&self.smooth_alpha) {
            return Err(format!(
                "smooth_alpha {} must lie in [0, 1)",
                self.smooth_alpha
            ));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let min_rank = if self.mode == SoftmaxOutputMode::Channel {
            2
        } else {
            1
        };
        if x.len() < min_rank {
            return Err(format!("data {x:?} needs rank at least {min_rank}"));
        }
        Ok(vec![x.to_vec()])
    }
}

impl OpDef for RegressionOutput {
    fn arity(&self) -> (usize, usize) {
        (1, 2)
    }

    fn validate(&self) -> R<()> {
        finite("grad_scale", self.grad_scale)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![input(ins, 0, "data")?.to_vec()])
    }
}

impl OpDef for MakeLoss {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        finite("grad_scale", self.grad_scale)?;
        finite("valid_thresh", self.valid_thresh)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![input(ins, 0, "data")?.to_vec()])
    }
}

impl OpDef for BlockGrad {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![input(ins, 0, "data")?.to_vec()])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}
