//! Dropout: identity at inference; in training, each element (or each slice along the
//! axes not in `axes`) is zeroed with probability `p` and the rest scaled by 1/(1 − p).

use serde::{Deserialize, Serialize};

use super::{input, resolve_axis, same_as_data, OpDef, Shape, R};

fn default_p() -> f64 {
    0.5
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    /// The probability of dropping an element in training.
    #[serde(default = "default_p")]
    pub p: f64,
    /// Axes along which one mask value is shared (MXNet's variational dropout `axes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub axes: Vec<i64>,
}

impl Default for Dropout {
    fn default() -> Self {
        Dropout {
            p: default_p(),
            axes: Vec::new(),
        }
    }
}

impl OpDef for Dropout {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(format!("p {} must lie in [0, 1)", self.p));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        for &a in &self.axes {
            resolve_axis(a, x.len())?;
        }
        same_as_data(ins)
    }
}
