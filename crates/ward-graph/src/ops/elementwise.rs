//! Element-wise arithmetic, comparison and logic: two inputs (same shape, or broadcast),
//! any number of inputs summed, an input and a constant, one input, clipping, and
//! `where`'s choice between two inputs.
//!
//! Comparisons and logical operators give 1 or 0 in the data's dtype (MXNet 1.9.1's
//! `_greater`, `broadcast_logical_and`, `_equal_scalar`, `logical_not`, ...): a comparison
//! with NaN is false except `!=`, and in logic every nonzero value, NaN included, is true.

use serde::{Deserialize, Serialize};

use ward_core::DType;

use super::{
    broadcast, data_dtype, expect_shape, input, same_as_data, same_dtype, same_shapes, OpDef,
    Shape, R,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// a mod b with the sign of b, and 0 where b is 0 (MXNet's `mod`: C's `fmod` in
    /// double, plus b where the remainder is nonzero and its sign differs from b's)
    Mod,
    /// a^b (`powf`)
    Power,
    /// √(a² + b²) without overflow (`hypotf`)
    Hypot,
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
    pub const ALL: [BinaryKind; 18] = [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
        BinaryKind::Max,
        BinaryKind::Min,
        BinaryKind::Mod,
        BinaryKind::Power,
        BinaryKind::Hypot,
        BinaryKind::Greater,
        BinaryKind::GreaterEqual,
        BinaryKind::Lesser,
        BinaryKind::LesserEqual,
        BinaryKind::Equal,
        BinaryKind::NotEqual,
        BinaryKind::LogicalAnd,
        BinaryKind::LogicalOr,
        BinaryKind::LogicalXor,
    ];

    /// MXNet's operator for this operation on same-shaped operands or, with
    /// `broadcast`, broadcast ones (`elemwise_add`/`broadcast_add`, `_mod`/`broadcast_mod`).
    pub fn mxnet_name(self, broadcast: bool) -> &'static str {
        match (self, broadcast) {
            (BinaryKind::Add, false) => "elemwise_add",
            (BinaryKind::Sub, false) => "elemwise_sub",
            (BinaryKind::Mul, false) => "elemwise_mul",
            (BinaryKind::Div, false) => "elemwise_div",
            (BinaryKind::Max, false) => "_maximum",
            (BinaryKind::Min, false) => "_minimum",
            (BinaryKind::Mod, false) => "_mod",
            (BinaryKind::Power, false) => "_power",
            (BinaryKind::Hypot, false) => "_hypot",
            (BinaryKind::Greater, false) => "_greater",
            (BinaryKind::GreaterEqual, false) => "_greater_equal",
            (BinaryKind::Lesser, false) => "_lesser",
            (BinaryKind::LesserEqual, false) => "_lesser_equal",
            (BinaryKind::Equal, false) => "_equal",
            (BinaryKind::NotEqual, false) => "_not_equal",
            (BinaryKind::LogicalAnd, false) => "_logical_and",
            (BinaryKind::LogicalOr, false) => "_logical_or",
            (BinaryKind::LogicalXor, false) => "_logical_xor",
            (BinaryKind::Add, true) => "broadcast_add",
            (BinaryKind::Sub, true) => "broadcast_sub",
            (BinaryKind::Mul, true) => "broadcast_mul",
            (BinaryKind::Div, true) => "broadcast_div",
            (BinaryKind::Max, true) => "broadcast_maximum",
            (BinaryKind::Min, true) => "broadcast_minimum",
            (BinaryKind::Mod, true) => "broadcast_mod",
            (BinaryKind::Power, true) => "broadcast_power",
            (BinaryKind::Hypot, true) => "broadcast_hypot",
            (BinaryKind::Greater, true) => "broadcast_greater",
            (BinaryKind::GreaterEqual, true) => "broadcast_greater_equal",
            (BinaryKind::Lesser, true) => "broadcast_lesser",
            (BinaryKind::LesserEqual, true) => "broadcast_lesser_equal",
            (BinaryKind::Equal, true) => "broadcast_equal",
            (BinaryKind::NotEqual, true) => "broadcast_not_equal",
            (BinaryKind::LogicalAnd, true) => "broadcast_logical_and",
            (BinaryKind::LogicalOr, true) => "broadcast_logical_or",
            (BinaryKind::LogicalXor, true) => "broadcast_logical_xor",
        }
    }

    /// The operation, and whether it broadcasts, of an MXNet operator (with MXNet's
    /// aliases `broadcast_plus` and `broadcast_minus`).
    pub fn from_mxnet_name(name: &str) -> Option<(BinaryKind, bool)> {
        match name {
            "broadcast_plus" => return Some((BinaryKind::Add, true)),
            "broadcast_minus" => return Some((BinaryKind::Sub, true)),
            _ => {}
        }
        [false, true].into_iter().find_map(|broadcast| {
            BinaryKind::ALL
                .into_iter()
                .find(|k| k.mxnet_name(broadcast) == name)
                .map(|k| (k, broadcast))
        })
    }

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
    /// x mod c ([`BinaryKind::Mod`])
    Mod,
    /// c mod x
    RMod,
    /// x^c
    Power,
    /// c^x
    RPower,
    /// max(x, c), NaN-propagating
    Max,
    /// min(x, c)
    Min,
    /// √(x² + c²)
    Hypot,
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
            | ScalarKind::RDiv
            | ScalarKind::Mod
            | ScalarKind::RMod
            | ScalarKind::Power
            | ScalarKind::RPower
            | ScalarKind::Max
            | ScalarKind::Min
            | ScalarKind::Hypot => return None,
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
            | BinaryKind::Min
            | BinaryKind::Mod
            | BinaryKind::Power
            | BinaryKind::Hypot => return None,
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

impl ScalarKind {
    pub const ALL: [ScalarKind; 22] = [
        ScalarKind::Add,
        ScalarKind::Sub,
        ScalarKind::RSub,
        ScalarKind::Mul,
        ScalarKind::Div,
        ScalarKind::RDiv,
        ScalarKind::Mod,
        ScalarKind::RMod,
        ScalarKind::Power,
        ScalarKind::RPower,
        ScalarKind::Max,
        ScalarKind::Min,
        ScalarKind::Hypot,
        ScalarKind::Greater,
        ScalarKind::GreaterEqual,
        ScalarKind::Lesser,
        ScalarKind::LesserEqual,
        ScalarKind::Equal,
        ScalarKind::NotEqual,
        ScalarKind::LogicalAnd,
        ScalarKind::LogicalOr,
        ScalarKind::LogicalXor,
    ];

    /// MXNet's operator (`_plus_scalar`, `_rpower_scalar`, `_greater_scalar`, ...).
    pub fn mxnet_name(self) -> &'static str {
        match self {
            ScalarKind::Add => "_plus_scalar",
            ScalarKind::Sub => "_minus_scalar",
            ScalarKind::RSub => "_rminus_scalar",
            ScalarKind::Mul => "_mul_scalar",
            ScalarKind::Div => "_div_scalar",
            ScalarKind::RDiv => "_rdiv_scalar",
            ScalarKind::Mod => "_mod_scalar",
            ScalarKind::RMod => "_rmod_scalar",
            ScalarKind::Power => "_power_scalar",
            ScalarKind::RPower => "_rpower_scalar",
            ScalarKind::Max => "_maximum_scalar",
            ScalarKind::Min => "_minimum_scalar",
            ScalarKind::Hypot => "_hypot_scalar",
            ScalarKind::Greater => "_greater_scalar",
            ScalarKind::GreaterEqual => "_greater_equal_scalar",
            ScalarKind::Lesser => "_lesser_scalar",
            ScalarKind::LesserEqual => "_lesser_equal_scalar",
            ScalarKind::Equal => "_equal_scalar",
            ScalarKind::NotEqual => "_not_equal_scalar",
            ScalarKind::LogicalAnd => "_logical_and_scalar",
            ScalarKind::LogicalOr => "_logical_or_scalar",
            ScalarKind::LogicalXor => "_logical_xor_scalar",
        }
    }

    /// The operation of an MXNet operator with a scalar.
    pub fn from_mxnet_name(name: &str) -> Option<ScalarKind> {
        ScalarKind::ALL.into_iter().find(|k| k.mxnet_name() == name)
    }

    /// The binary operation this is with the constant as one operand, and whether the
    /// constant is the left one (`c - x`, `c / x`, `c mod x`, `c^x`).
    pub fn binary(self) -> (BinaryKind, bool) {
        match self {
            ScalarKind::Add => (BinaryKind::Add, false),
            ScalarKind::Sub => (BinaryKind::Sub, false),
            ScalarKind::RSub => (BinaryKind::Sub, true),
            ScalarKind::Mul => (BinaryKind::Mul, false),
            ScalarKind::Div => (BinaryKind::Div, false),
            ScalarKind::RDiv => (BinaryKind::Div, true),
            ScalarKind::Mod => (BinaryKind::Mod, false),
            ScalarKind::RMod => (BinaryKind::Mod, true),
            ScalarKind::Power => (BinaryKind::Power, false),
            ScalarKind::RPower => (BinaryKind::Power, true),
            ScalarKind::Max => (BinaryKind::Max, false),
            ScalarKind::Min => (BinaryKind::Min, false),
            ScalarKind::Hypot => (BinaryKind::Hypot, false),
            ScalarKind::Greater => (BinaryKind::Greater, false),
            ScalarKind::GreaterEqual => (BinaryKind::GreaterEqual, false),
            ScalarKind::Lesser => (BinaryKind::Lesser, false),
            ScalarKind::LesserEqual => (BinaryKind::LesserEqual, false),
            ScalarKind::Equal => (BinaryKind::Equal, false),
            ScalarKind::NotEqual => (BinaryKind::NotEqual, false),
            ScalarKind::LogicalAnd => (BinaryKind::LogicalAnd, false),
            ScalarKind::LogicalOr => (BinaryKind::LogicalOr, false),
            ScalarKind::LogicalXor => (BinaryKind::LogicalXor, false),
        }
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

/// The type a [`Cast`] converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CastType {
    Float16,
    Float32,
    Float64,
    Int8,
    Uint8,
    Int32,
    Int64,
}

impl CastType {
    pub const ALL: [CastType; 7] = [
        CastType::Float16,
        CastType::Float32,
        CastType::Float64,
        CastType::Int8,
        CastType::Uint8,
        CastType::Int32,
        CastType::Int64,
    ];

    /// The element type of the result.
    pub fn dtype(self) -> DType {
        match self {
            CastType::Float16 => DType::F16,
            CastType::Float32 => DType::F32,
            CastType::Float64 => DType::F64,
            CastType::Int8 => DType::I8,
            CastType::Uint8 => DType::U8,
            CastType::Int32 => DType::I32,
            CastType::Int64 => DType::I64,
        }
    }

    /// The name MXNet's `dtype` attribute gives it (`float16`, `int32`, ...).
    pub fn name(self) -> &'static str {
        self.dtype().name()
    }

    /// The type MXNet's `dtype` attribute names, if a cast can give it.
    pub fn from_name(name: &str) -> Option<CastType> {
        CastType::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// MXNet `Cast` and `amp_cast`. Ward's floats are float32, so a cast to float32 or
/// float64 keeps each value and a cast to float16 rounds it to the nearest float16 (ties
/// to even, ±∞ beyond 65504 as MXNet's conversion gives), and the next operator reads
/// that value in float32. A cast to an integer type truncates toward zero as MXNet's does
/// ([`crate::dtypes::integer_result`], which every backend applies to integer-typed
/// results); the value is then an integer of that type for the operators after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cast {
    pub to: CastType,
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

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // Comparisons and logic give 1 or 0 in the operands' type too.
        same_dtype(ins, 1)
    }
}

impl OpDef for AddN {
    fn arity(&self) -> (usize, usize) {
        (1, usize::MAX)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![same_shapes(ins)?])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        same_dtype(ins, 1)
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

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // MXNet converts the constant to the data's type first (2.5 is 2 for int32).
        data_dtype(ins, 1)
    }
}

impl OpDef for Unary {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        same_as_data(ins)
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // On integers MXNet computes the function and truncates (sqrt(3) is 1 in int32).
        data_dtype(ins, 1)
    }
}

impl OpDef for Cast {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        same_as_data(ins)
    }

    fn infer_dtypes(&self, _ins: &[DType]) -> R<Vec<DType>> {
        Ok(vec![self.to.dtype()])
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

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, 1)
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

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // The condition may have any type; x and y share one.
        match (ins.get(1), ins.get(2)) {
            (Some(&x), Some(&y)) if x == y => Ok(vec![x]),
            (Some(x), Some(y)) => Err(format!(
                "x is {x} and y is {y}: MXNet refuses operands of different types"
            )),
            _ => Err("x and y (inputs 1 and 2) are missing".into()),
        }
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
