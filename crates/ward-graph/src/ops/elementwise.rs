//! Element-wise arithmetic, comparison and logic: two inputs (same shape, or broadcast),
//! any number of inputs summed, an input and a constant, one input, clipping, and
//! `where`'s choice between two inputs.
//!
//! Comparisons and logical operators give 1 or 0 in the data's dtype (MXNet 1.9.1's
//! `_greater`, `broadcast_logical_and`, `_equal_scalar`, `logical_not`, ...): a comparison
//! with NaN is false except `!=`, and in logic every nonzero value, NaN included, is true.

use serde::{Deserialize, Serialize};

use super::{broadcast, expect_shape, input, same_as_data, same_shapes, OpDef, Shape, R};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// a > b (MXNet's `_greater`, `broadcast_greater`)
    Greater,
    /// a >= b
    GreaterEqual,
    /// a < b (MXNet's `_lesser`, `broadcast_lesser`)
    Lesser,
    /// a <= b
    LesserEqual,
    /// a == b
    Equal,
    /// a != b: the one comparison true with NaN
    NotEqual,
    /// a ≠ 0 and b ≠ 0
    LogicalAnd,
    /// a ≠ 0 or b ≠ 0
    LogicalOr,
    /// exactly one of a ≠ 0, b ≠ 0
    LogicalXor,
}

impl BinaryKind {
    /// Whether the result is 1 or 0 (a comparison or logical operator), whose gradient
    /// MXNet makes zero for both inputs.
    pub fn is_predicate(self) -> bool {
        ScalarKind::of_predicate(self).is_some()
    }
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
    /// x > c (MXNet's `_greater_scalar`); like every comparison and logical operator
    /// with a constant, with c rounded to float32 first, as MXNet casts it to the
    /// data's dtype
    Greater,
    /// x >= c
    GreaterEqual,
    /// x < c
    Lesser,
    /// x <= c
    LesserEqual,
    /// x == c
    Equal,
    /// x != c
    NotEqual,
    /// x ≠ 0 and c ≠ 0
    LogicalAnd,
    /// x ≠ 0 or c ≠ 0
    LogicalOr,
    /// exactly one of x ≠ 0, c ≠ 0
    LogicalXor,
}

impl ScalarKind {
    /// The comparison or logical operation this is, with the constant as right operand;
    /// `None` for arithmetic.
    pub fn predicate(self) -> Option<BinaryKind> {
        Some(match self {
            ScalarKind::Add
            | ScalarKind::Sub
            | ScalarKind::RSub
            | ScalarKind::Mul
            | ScalarKind::Div
            | ScalarKind::RDiv => return None,
            ScalarKind::Greater => BinaryKind::Greater,
            ScalarKind::GreaterEqual => BinaryKind::GreaterEqual,
            ScalarKind::Lesser => BinaryKind::Lesser,
            ScalarKind::LesserEqual => BinaryKind::LesserEqual,
            ScalarKind::Equal => BinaryKind::Equal,
            ScalarKind::NotEqual => BinaryKind::NotEqual,
            ScalarKind::LogicalAnd => BinaryKind::LogicalAnd,
            ScalarKind::LogicalOr => BinaryKind::LogicalOr,
            ScalarKind::LogicalXor => BinaryKind::LogicalXor,
        })
    }

    /// The operation with a constant for a comparison or logical operation; `None` for
    /// arithmetic.
    pub fn of_predicate(kind: BinaryKind) -> Option<ScalarKind> {
        Some(match kind {
            BinaryKind::Add
            | BinaryKind::Sub
            | BinaryKind::Mul
            | BinaryKind::Div
            | BinaryKind::Max
            | BinaryKind::Min => return None,
            BinaryKind::Greater => ScalarKind::Greater,
            BinaryKind::GreaterEqual => ScalarKind::GreaterEqual,
            BinaryKind::Lesser => ScalarKind::Lesser,
            BinaryKind::LesserEqual => ScalarKind::LesserEqual,
            BinaryKind::Equal => ScalarKind::Equal,
            BinaryKind::NotEqual => ScalarKind::NotEqual,
            BinaryKind::LogicalAnd => ScalarKind::LogicalAnd,
            BinaryKind::LogicalOr => ScalarKind::LogicalOr,
            BinaryKind::LogicalXor => ScalarKind::LogicalXor,
        })
    }
}

/// Element-wise with a constant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scalar {
    pub kind: ScalarKind,
    #[serde(with = "super::float")]
    pub value: f64,
}

/// One function applied to each element, with MXNet 1.9.1's semantics (its
/// `mshadow_op` functors); the names are MXNet's operator names except `neg`
/// (`negative`). Rounding functions and `sign` have a zero gradient, as in MXNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryKind {
    /// max(x, 0), keeping NaN.
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Abs,
    Neg,
    /// x == 0 (MXNet's `logical_not`; NaN counts as true, so gives 0)
    LogicalNot,
    Erf,
    /// x·x
    Square,
    /// 1/√x
    Rsqrt,
    /// 1/x
    Reciprocal,
    /// ∛x, negative for negative x
    Cbrt,
    /// 1/∛x
    Rcbrt,
    /// ln(1 + x)
    Log1p,
    /// eˣ − 1
    Expm1,
    Log2,
    Log10,
    Sin,
    Cos,
    Tan,
    Arcsin,
    Arccos,
    Arctan,
    Sinh,
    Cosh,
    Arcsinh,
    Arccosh,
    Arctanh,
    /// x·180/π
    Degrees,
    /// x·π/180
    Radians,
    Floor,
    Ceil,
    /// To the nearest integer, halves away from zero (C's `round`).
    Round,
    /// To the nearest integer, halves to even (C's `rint`).
    Rint,
    /// Toward zero (MXNet's `trunc` and `fix`).
    Trunc,
    /// −1, 0 or 1; NaN gives 0.
    Sign,
    /// x / (1 + |x|)
    Softsign,
    /// x itself (MXNet's `_copy`, alias `identity`).
    Copy,
}

impl UnaryKind {
    /// Every kind, in declaration order.
    pub const ALL: [UnaryKind; 40] = [
        UnaryKind::Relu,
        UnaryKind::Sigmoid,
        UnaryKind::Tanh,
        UnaryKind::Exp,
        UnaryKind::Log,
        UnaryKind::Sqrt,
        UnaryKind::Abs,
        UnaryKind::Neg,
        UnaryKind::LogicalNot,
        UnaryKind::Erf,
        UnaryKind::Square,
        UnaryKind::Rsqrt,
        UnaryKind::Reciprocal,
        UnaryKind::Cbrt,
        UnaryKind::Rcbrt,
        UnaryKind::Log1p,
        UnaryKind::Expm1,
        UnaryKind::Log2,
        UnaryKind::Log10,
        UnaryKind::Sin,
        UnaryKind::Cos,
        UnaryKind::Tan,
        UnaryKind::Arcsin,
        UnaryKind::Arccos,
        UnaryKind::Arctan,
        UnaryKind::Sinh,
        UnaryKind::Cosh,
        UnaryKind::Arcsinh,
        UnaryKind::Arccosh,
        UnaryKind::Arctanh,
        UnaryKind::Degrees,
        UnaryKind::Radians,
        UnaryKind::Floor,
        UnaryKind::Ceil,
        UnaryKind::Round,
        UnaryKind::Rint,
        UnaryKind::Trunc,
        UnaryKind::Sign,
        UnaryKind::Softsign,
        UnaryKind::Copy,
    ];

    /// The kind's name in `graph.json`.
    pub fn name(self) -> &'static str {
        match self {
            UnaryKind::Relu => "relu",
            UnaryKind::Sigmoid => "sigmoid",
            UnaryKind::Tanh => "tanh",
            UnaryKind::Exp => "exp",
            UnaryKind::Log => "log",
            UnaryKind::Sqrt => "sqrt",
            UnaryKind::Abs => "abs",
            UnaryKind::Neg => "neg",
            UnaryKind::LogicalNot => "logical_not",
            UnaryKind::Erf => "erf",
            UnaryKind::Square => "square",
            UnaryKind::Rsqrt => "rsqrt",
            UnaryKind::Reciprocal => "reciprocal",
            UnaryKind::Cbrt => "cbrt",
            UnaryKind::Rcbrt => "rcbrt",
            UnaryKind::Log1p => "log1p",
            UnaryKind::Expm1 => "expm1",
            UnaryKind::Log2 => "log2",
            UnaryKind::Log10 => "log10",
            UnaryKind::Sin => "sin",
            UnaryKind::Cos => "cos",
            UnaryKind::Tan => "tan",
            UnaryKind::Arcsin => "arcsin",
            UnaryKind::Arccos => "arccos",
            UnaryKind::Arctan => "arctan",
            UnaryKind::Sinh => "sinh",
            UnaryKind::Cosh => "cosh",
            UnaryKind::Arcsinh => "arcsinh",
            UnaryKind::Arccosh => "arccosh",
            UnaryKind::Arctanh => "arctanh",
            UnaryKind::Degrees => "degrees",
            UnaryKind::Radians => "radians",
            UnaryKind::Floor => "floor",
            UnaryKind::Ceil => "ceil",
            UnaryKind::Round => "round",
            UnaryKind::Rint => "rint",
            UnaryKind::Trunc => "trunc",
            UnaryKind::Sign => "sign",
            UnaryKind::Softsign => "softsign",
            UnaryKind::Copy => "copy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unary {
    pub kind: UnaryKind,
}

/// A float dtype a [`Cast`] rounds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FloatType {
    Float16,
    Float32,
    Float64,
}

/// MXNet `Cast` and `amp_cast` to a float dtype. Ward's values are float32, so a cast to
/// float32 or float64 keeps each value and a cast to float16 rounds it to the nearest
/// float16 (ties to even, ±∞ beyond 65504 as MXNet's conversion gives), and the next
/// operator reads that value in float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cast {
    pub to: FloatType,
}

/// Each element clipped to [min, max].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    #[serde(with = "super::float")]
    pub min: f64,
    #[serde(with = "super::float")]
    pub max: f64,
}

/// `where(condition, x, y)`: x where the condition is nonzero (NaN included), y
/// elsewhere. x and y have one shape; the condition has it too, or is a vector that picks
/// whole slices along x's first axis (MXNet 1.9.1's `where`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Where {}

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

impl OpDef for Cast {
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

impl OpDef for Where {
    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let cond = input(ins, 0, "condition")?;
        let x = input(ins, 1, "x")?;
        let y = input(ins, 2, "y")?;
        expect_shape("y", y, x)?;
        // MXNet: the condition has x's shape, or is 1-D with x's first dim.
        let batch = matches!((cond, x.first()), ([n], Some(first)) if n == first);
        if cond != x && !batch {
            return Err(format!(
                "condition has shape {cond:?}; it must be x's {x:?} or a vector of x's first dim"
            ));
        }
        Ok(vec![x.to_vec()])
    }
}

#[cfg(test)]
mod tests {
    use super::UnaryKind;

    #[test]
    fn every_unary_kind_is_listed_once_under_its_graph_json_name() {
        for (i, kind) in UnaryKind::ALL.iter().enumerate() {
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert!(!UnaryKind::ALL[..i].contains(kind), "{kind:?} twice");
        }
    }
}
