//! Activations and softmax: functions of one element (ReLU, sigmoid, ...), of one element
//! and a learned slope (PReLU), and of a whole axis (softmax).

use serde::{Deserialize, Serialize};
use ward_core::DType;

use super::{dim, expect_shape, input, resolve_axis, same_as_data, OpDef, Shape, R};
use crate::dtypes::is_integer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    Relu,
    Sigmoid,
    Tanh,
    /// log(1 + eˣ)
    Softrelu,
    /// x / (1 + |x|)
    Softsign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    pub kind: ActivationKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LeakyReluKind {
    Leaky {
        slope: f64,
    },
    Elu {
        slope: f64,
    },
    /// The slope is a second input: one per channel (axis 1), or one for all.
    Prelu,
    Selu,
    /// The exact erf form 0.5·x·(1 + erf(x/√2)).
    Gelu,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakyRelu {
    pub kind: LeakyReluKind,
}

/// Softmax (or its log) over `axis` of x / temperature. With `use_length` (MXNet's
/// `softmax(data, length, use_length=True)`, not `log_softmax`) a second input holds, for
/// each lane along the axis, how many of its first elements take part: the softmax is
/// over those, and the rest are 0 (a length of 0 gives a lane of zeros; one past the
/// axis, the whole lane). The lengths have the data's shape without the axis and an
/// integer type, as MXNet requires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Softmax {
    pub axis: i64,
    pub temperature: f64,
    pub log: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_length: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl OpDef for Activation {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        same_as_data(ins)
    }
}

impl OpDef for LeakyRelu {
    fn arity(&self) -> (usize, usize) {
        if self.kind == LeakyReluKind::Prelu {
            (2, 2)
        } else {
            (1, 1)
        }
    }

    fn validate(&self) -> R<()> {
        match self.kind {
            LeakyReluKind::Leaky { slope } | LeakyReluKind::Elu { slope } if !slope.is_finite() => {
                Err(format!("slope {slope} must be finite"))
            }
            _ => Ok(()),
        }
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        if self.kind == LeakyReluKind::Prelu {
            let g = input(ins, 1, "slope")?;
            let channels = if x.len() > 1 { dim(x, 1, "data")? } else { 1 };
            if g != [1] && g != [channels] {
                return Err(format!(
                    "prelu slope has shape {g:?}, expected [1] or [{channels}]"
                ));
            }
        }
        Ok(vec![x.to_vec()])
    }
}

impl OpDef for Softmax {
    fn arity(&self) -> (usize, usize) {
        if self.use_length {
            (2, 2)
        } else {
            (1, 1)
        }
    }

    fn validate(&self) -> R<()> {
        if self.temperature == 0.0 || !self.temperature.is_finite() {
            return Err(format!(
                "temperature {} must be finite and nonzero",
                self.temperature
            ));
        }
        if self.use_length && self.log {
            return Err("log_softmax takes no lengths".into());
        }
        if self.use_length && self.axis < -1 {
            return Err(format!(
                "axis {} with use_length: MXNet 1.9.1's shape inference takes only -1 or a non-negative axis there",
                self.axis
            ));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let a = resolve_axis(self.axis, x.len())?;
        if self.use_length {
            let lanes: Vec<usize> = x
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != a)
                .map(|(_, &d)| d)
                .collect();
            expect_shape("length", input(ins, 1, "length")?, &lanes)?;
        }
        Ok(vec![x.to_vec()])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        if let Some(&length) = ins.get(1) {
            if !is_integer(length) {
                return Err(format!(
                    "length is {length}: MXNet's softmax takes integer lengths only"
                ));
            }
        }
        Ok(vec![DType::F32])
    }
}
