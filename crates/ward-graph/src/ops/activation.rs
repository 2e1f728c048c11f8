//! Activations and softmax: functions of one element (ReLU, sigmoid, ...), of one element
//! and a learned slope (PReLU), and of a whole axis (softmax).

use serde::{Deserialize, Serialize};

use super::{dim, input, resolve_axis, same_as_data, OpDef, Shape, R};

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

/// Softmax (or its log) over `axis` of x / temperature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Softmax {
    pub axis: i64,
    pub temperature: f64,
    pub log: bool,
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
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.temperature == 0.0 || !self.temperature.is_finite() {
            return Err(format!(
                "temperature {} must be finite and nonzero",
                self.temperature
            ));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        resolve_axis(self.axis, x.len())?;
        Ok(vec![x.to_vec()])
    }
}
