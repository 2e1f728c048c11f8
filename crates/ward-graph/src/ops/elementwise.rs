//! Element-wise arithmetic: two inputs (same shape, or broadcast), any number of inputs
//! summed, an input and a constant, one input, and clipping.

use serde::{Deserialize, Serialize};

use super::{broadcast, input, same_as_data, same_shapes, OpDef, Shape, R};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

/// Element-wise on two inputs; same shapes unless `broadcast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binary {
    pub kind: BinaryKind,
    pub broadcast: bool,
}

/// The sum of any number of same-shaped inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddN {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalarKind {
    /// x + c
    Add,
    /// x - c
    Sub,
    /// c - x
    RSub,
    /// x · c
    Mul,
    /// x / c
    Div,
    /// c / x
    RDiv,
}

/// Element-wise with a constant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scalar {
    pub kind: ScalarKind,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryKind {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Abs,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unary {
    pub kind: UnaryKind,
}

/// Each element clipped to [min, max].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    pub min: f64,
    pub max: f64,
}

impl OpDef for Binary {
    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        if self.broadcast {
            let a = input(ins, 0, "lhs")?;
            let b = input(ins, 1, "rhs")?;
            Ok(vec![broadcast(a, b)?])
        } else {
            Ok(vec![same_shapes(ins)?])
        }
    }
}

impl OpDef for AddN {
    fn arity(&self) -> (usize, usize) {
        (1, usize::MAX)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![same_shapes(ins)?])
    }
}

impl OpDef for Scalar {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.value.is_nan() {
            return Err("the constant is NaN".into());
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        same_as_data(ins)
    }
}

impl OpDef for Unary {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        same_as_data(ins)
    }
}

impl OpDef for Clip {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.min.is_nan() || self.max.is_nan() || self.min > self.max {
            return Err(format!("clip min {} exceeds max {}", self.min, self.max));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        same_as_data(ins)
    }
}
