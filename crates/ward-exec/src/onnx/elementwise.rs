//! Element-wise arithmetic, comparison and logic: ONNX's operators broadcast as NumPy
//! does, as MXNet's `broadcast_*` do.
//!
//! MXNet's comparisons and logical operators give 1 or 0 in the data's dtype: ONNX's
//! give booleans, cast back to float32 here. ONNX's comparisons are IEEE's, as MXNet's
//! are (false with NaN, except `!=`, which is `Not(Equal)` and so true with NaN). ONNX's
//! logical operators take booleans: a value is made one as C converts to bool, by
//! `Not(Equal(x, 0))`, so that NaN is true as in MXNet (a cast to bool leaves NaN to the
//! runtime).

use tract_onnx::pb::tensor_proto::DataType;
use ward_graph::ops::elementwise::{
    Binary, BinaryKind, Cast, Clip, FloatType, Scalar, ScalarKind, Unary, UnaryKind,
};

use super::builder::{attr_int, At, Builder, R};

/// `x ≠ 0` as a boolean (NaN is true).
fn truthy(b: &mut Builder<'_>, at: &At<'_>, x: String, hint: &str) -> String {
    let zero = b.scalar_f32(&at.hint("zero"), 0.0);
    let is_zero = b.op(
        "Equal",
        vec![x, zero],
        vec![],
        &at.hint(&format!("{hint}_is_zero")),
    );
    b.op(
        "Not",
        vec![is_zero],
        vec![],
        &at.hint(&format!("{hint}_nonzero")),
    )
}

/// A boolean as float32 1 or 0, written to the node's output.
fn as_float(b: &mut Builder<'_>, at: &At<'_>, flag: String) -> R<()> {
    b.push(
        "Cast",
        vec![flag],
        vec![at.out()?],
        vec![attr_int("to", DataType::Float as i64)],
    );
    Ok(())
}

/// `kind` (a comparison or logical operation) of `x` and `y`, as float32 1 or 0.
fn predicate(b: &mut Builder<'_>, at: &At<'_>, kind: BinaryKind, x: String, y: String) -> R<()> {
    let compare = |name: &str| (name.to_string(), vec![x.clone(), y.clone()]);
    let (name, args) = match kind {
        BinaryKind::Greater => compare("Greater"),
        BinaryKind::GreaterEqual => compare("GreaterOrEqual"),
        BinaryKind::Lesser => compare("Less"),
        BinaryKind::LesserEqual => compare("LessOrEqual"),
        BinaryKind::Equal => compare("Equal"),
        BinaryKind::NotEqual => {
            let equal = b.op("Equal", vec![x, y], vec![], &at.hint("equal"));
            ("Not".to_string(), vec![equal])
        }
        BinaryKind::LogicalAnd | BinaryKind::LogicalOr | BinaryKind::LogicalXor => {
            let xb = truthy(b, at, x, "lhs");
            let yb = truthy(b, at, y, "rhs");
            let name = match kind {
                BinaryKind::LogicalAnd => "And",
                BinaryKind::LogicalOr => "Or",
                _ => "Xor",
            };
            (name.to_string(), vec![xb, yb])
        }
        other => {
            return Err(format!(
                "{other:?} is not a comparison or logical operation"
            ))
        }
    };
    let flag = b.op(&name, args, vec![], &at.hint("flag"));
    as_float(b, at, flag)
}

pub(super) fn binary(b: &mut Builder<'_>, at: &At<'_>, op: &Binary) -> R<()> {
    if op.kind.is_predicate() {
        return predicate(b, at, op.kind, at.input(0)?, at.input(1)?);
    }
    let name = match op.kind {
        BinaryKind::Add => "Add",
        BinaryKind::Sub => "Sub",
        BinaryKind::Mul => "Mul",
        BinaryKind::Div => "Div",
        BinaryKind::Max => "Max",
        BinaryKind::Min => "Min",
        other => return Err(format!("{other:?} is lowered as a predicate")),
    };
    if !matches!(op.kind, BinaryKind::Max | BinaryKind::Min) {
        b.push(name, at.inputs()?, vec![at.out()?], vec![]);
        return Ok(());
    }
    // MXNet's maximum and minimum give NaN when either side is NaN; ONNX's (tract's)
    // return the other side.
    let (x, y) = (at.input(0)?, at.input(1)?);
    let picked = b.op(name, vec![x.clone(), y.clone()], vec![], &at.hint("picked"));
    let x_nan = b.op("IsNaN", vec![x.clone()], vec![], &at.hint("x_nan"));
    let y_nan = b.op("IsNaN", vec![y.clone()], vec![], &at.hint("y_nan"));
    let either = b.op("Or", vec![x_nan, y_nan], vec![], &at.hint("nan"));
    // x + y is NaN wherever either is, and broadcasts as the result does.
    let nan_sum = b.op("Add", vec![x, y], vec![], &at.hint("nan_sum"));
    b.push(
        "Where",
        vec![either, nan_sum, picked],
        vec![at.out()?],
        vec![],
    );
    Ok(())
}

/// `f(x)`, but NaN where `x` is NaN: MXNet's `relu` and `clip` pass NaN through, ONNX's
/// (tract's) map it to a number.
fn keep_nan(b: &mut Builder<'_>, at: &At<'_>, f: String) -> R<()> {
    let x = at.input(0)?;
    let nan = b.op("IsNaN", vec![x.clone()], vec![], &at.hint("nan"));
    b.push("Where", vec![nan, x, f], vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn add_n(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    b.push("Sum", at.inputs()?, vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn scalar(b: &mut Builder<'_>, at: &At<'_>, op: &Scalar) -> R<()> {
    // A float32 constant: the predicates compare with the scalar cast to the data's
    // dtype, as MXNet does.
    let c = b.scalar_f32(&at.hint("scalar"), op.value as f32);
    let x = at.input(0)?;
    if let Some(kind) = op.kind.predicate() {
        return predicate(b, at, kind, x, c);
    }
    let (name, args) = match op.kind {
        ScalarKind::Add => ("Add", vec![x, c]),
        ScalarKind::Sub => ("Sub", vec![x, c]),
        ScalarKind::RSub => ("Sub", vec![c, x]),
        ScalarKind::Mul => ("Mul", vec![x, c]),
        ScalarKind::Div => ("Div", vec![x, c]),
        ScalarKind::RDiv => ("Div", vec![c, x]),
        other => return Err(format!("{other:?} is lowered as a predicate")),
    };
    b.push(name, args, vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn unary(b: &mut Builder<'_>, at: &At<'_>, op: &Unary) -> R<()> {
    let x = at.input(0)?;
    let direct = match op.kind {
        UnaryKind::Sigmoid => "Sigmoid",
        UnaryKind::Tanh => "Tanh",
        UnaryKind::Exp => "Exp",
        UnaryKind::Log => "Log",
        UnaryKind::Sqrt => "Sqrt",
        UnaryKind::Abs => "Abs",
        UnaryKind::Neg => "Neg",
        UnaryKind::Erf => "Erf",
        UnaryKind::Reciprocal => "Reciprocal",
        UnaryKind::Sin => "Sin",
        UnaryKind::Cos => "Cos",
        UnaryKind::Tan => "Tan",
        UnaryKind::Arcsin => "Asin",
        UnaryKind::Arccos => "Acos",
        UnaryKind::Arctan => "Atan",
        UnaryKind::Sinh => "Sinh",
        UnaryKind::Cosh => "Cosh",
        UnaryKind::Arcsinh => "Asinh",
        UnaryKind::Arccosh => "Acosh",
        UnaryKind::Arctanh => "Atanh",
        UnaryKind::Floor => "Floor",
        UnaryKind::Ceil => "Ceil",
        // ONNX's Round takes halves to even, as C's rint does.
        UnaryKind::Rint => "Round",
        UnaryKind::Softsign => "Softsign",
        UnaryKind::Copy => "Identity",
        composed => return composed_unary(b, at, composed, x),
    };
    b.push(direct, vec![x], vec![at.out()?], vec![]);
    Ok(())
}

/// The functions ONNX has no one operator for, from those it has.
fn composed_unary(b: &mut Builder<'_>, at: &At<'_>, kind: UnaryKind, x: String) -> R<()> {
    let (name, args) = match kind {
        UnaryKind::Relu => {
            let relu = b.op("Relu", vec![x], vec![], &at.hint("relu"));
            return keep_nan(b, at, relu);
        }
        UnaryKind::LogicalNot => {
            // x == 0, so NaN (true) gives 0.
            let zero = b.scalar_f32(&at.hint("zero"), 0.0);
            let flag = b.op("Equal", vec![x, zero], vec![], &at.hint("flag"));
            return as_float(b, at, flag);
        }
        UnaryKind::Square => ("Mul", vec![x.clone(), x]),
        UnaryKind::Rsqrt => (
            "Reciprocal",
            vec![b.op("Sqrt", vec![x], vec![], &at.hint("sqrt"))],
        ),
        UnaryKind::Cbrt | UnaryKind::Rcbrt => {
            // sign(x)·|x|^(1/3): Pow of a negative base to a fraction is NaN. rcbrt is its
            // reciprocal, so that 1/∛0 is infinite as in MXNet.
            let exponent = b.scalar_f32(&at.hint("third"), 1.0 / 3.0);
            let magnitude = b.op("Abs", vec![x.clone()], vec![], &at.hint("abs"));
            let root = b.op("Pow", vec![magnitude, exponent], vec![], &at.hint("root"));
            let sign = b.op("Sign", vec![x], vec![], &at.hint("sign"));
            if kind == UnaryKind::Cbrt {
                ("Mul", vec![sign, root])
            } else {
                let cbrt = b.op("Mul", vec![sign, root], vec![], &at.hint("cbrt"));
                ("Reciprocal", vec![cbrt])
            }
        }
        UnaryKind::Log1p => {
            let one = b.scalar_f32(&at.hint("one"), 1.0);
            (
                "Log",
                vec![b.op("Add", vec![x, one], vec![], &at.hint("plus_one"))],
            )
        }
        UnaryKind::Expm1 => {
            let one = b.scalar_f32(&at.hint("one"), 1.0);
            (
                "Sub",
                vec![b.op("Exp", vec![x], vec![], &at.hint("exp")), one],
            )
        }
        UnaryKind::Log2 | UnaryKind::Log10 => {
            let base = if kind == UnaryKind::Log2 {
                std::f64::consts::LN_2
            } else {
                std::f64::consts::LN_10
            };
            let ln_base = b.scalar_f32(&at.hint("ln_base"), base as f32);
            (
                "Div",
                vec![b.op("Log", vec![x], vec![], &at.hint("ln")), ln_base],
            )
        }
        UnaryKind::Degrees | UnaryKind::Radians => {
            let factor = if kind == UnaryKind::Degrees {
                180.0 / std::f64::consts::PI
            } else {
                std::f64::consts::PI / 180.0
            };
            (
                "Mul",
                vec![x, b.scalar_f32(&at.hint("factor"), factor as f32)],
            )
        }
        UnaryKind::Round | UnaryKind::Trunc => {
            // sign(x)·(⌊|x|⌋ + (|x| − ⌊|x|⌋ ≥ ½)) for round: the fraction is exact in
            // float32, where ⌊|x| + ½⌋ would round |x| + ½ up first.
            let magnitude = b.op("Abs", vec![x.clone()], vec![], &at.hint("abs"));
            let whole = b.op("Floor", vec![magnitude.clone()], vec![], &at.hint("whole"));
            let rounded = if kind == UnaryKind::Round {
                let fraction = b.op(
                    "Sub",
                    vec![magnitude, whole.clone()],
                    vec![],
                    &at.hint("fraction"),
                );
                let half = b.scalar_f32(&at.hint("half"), 0.5);
                let up = b.op(
                    "GreaterOrEqual",
                    vec![fraction, half],
                    vec![],
                    &at.hint("up"),
                );
                let step = b.op(
                    "Cast",
                    vec![up],
                    vec![attr_int("to", DataType::Float as i64)],
                    &at.hint("step"),
                );
                b.op("Add", vec![whole, step], vec![], &at.hint("rounded"))
            } else {
                whole
            };
            let sign = b.op("Sign", vec![x], vec![], &at.hint("sign"));
            ("Mul", vec![sign, rounded])
        }
        UnaryKind::Sign => {
            // ONNX's Sign keeps NaN; MXNet's gives 0 (NaN is neither below nor above 0).
            let nan = b.op("IsNaN", vec![x.clone()], vec![], &at.hint("nan"));
            let zero = b.scalar_f32(&at.hint("zero"), 0.0);
            let sign = b.op("Sign", vec![x], vec![], &at.hint("sign"));
            ("Where", vec![nan, zero, sign])
        }
        direct => return Err(format!("{direct:?} is one ONNX operator")),
    };
    b.push(name, args, vec![at.out()?], vec![]);
    Ok(())
}

/// A cast to float16 is a cast there and back (the plan computes in float32); to float32
/// or float64 it keeps the value.
pub(super) fn cast(b: &mut Builder<'_>, at: &At<'_>, op: &Cast) -> R<()> {
    let x = at.input(0)?;
    if op.to != FloatType::Float16 {
        b.push("Identity", vec![x], vec![at.out()?], vec![]);
        return Ok(());
    }
    let half = b.op(
        "Cast",
        vec![x],
        vec![attr_int("to", DataType::Float16 as i64)],
        &at.hint("half"),
    );
    b.push(
        "Cast",
        vec![half],
        vec![at.out()?],
        vec![attr_int("to", DataType::Float as i64)],
    );
    Ok(())
}

pub(super) fn clip(b: &mut Builder<'_>, at: &At<'_>, op: &Clip) -> R<()> {
    let lo = b.scalar_f32(&at.hint("min"), op.min as f32);
    let hi = b.scalar_f32(&at.hint("max"), op.max as f32);
    let clipped = b.op(
        "Clip",
        vec![at.input(0)?, lo, hi],
        vec![],
        &at.hint("clipped"),
    );
    keep_nan(b, at, clipped)
}

/// MXNet's `where`: x where the condition is nonzero (NaN included, which a cast to bool
/// would leave to the runtime), y elsewhere; a vector condition picks whole slices along
/// x's first axis, so it is shaped to broadcast along that axis.
pub(super) fn where_(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    let (x, y) = (at.input(1)?, at.input(2)?);
    let x_shape = b.shape(at.source(1)?)?;
    let mut cond = at.input(0)?;
    if b.shape(at.source(0)?)? != x_shape {
        let mut dims = vec![1; x_shape.len()];
        if let (Some(d), Some(&n)) = (dims.first_mut(), x_shape.first()) {
            *d = n;
        }
        cond = b.reshape(cond, &dims, &at.hint("condition"));
    }
    let pick = truthy(b, at, cond, "condition");
    b.push("Where", vec![pick, x, y], vec![at.out()?], vec![]);
    Ok(())
}
