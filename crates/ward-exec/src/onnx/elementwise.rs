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
use ward_core::DType;
use ward_graph::dtypes::is_integer;
use ward_graph::ops::elementwise::{
    Binary, BinaryKind, Cast, CastType, Clip, Scalar, Unary, UnaryKind,
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
    let (x, y) = (at.input(0)?, at.input(1)?);
    if op.kind.is_predicate() {
        return predicate(b, at, op.kind, x, y);
    }
    arithmetic(b, at, op.kind, x, y)
}

/// `x kind y` for an arithmetic `kind`, written to the node's output.
fn arithmetic(b: &mut Builder<'_>, at: &At<'_>, kind: BinaryKind, x: String, y: String) -> R<()> {
    let direct = match kind {
        BinaryKind::Add => "Add",
        BinaryKind::Sub => "Sub",
        BinaryKind::Mul => "Mul",
        BinaryKind::Div => "Div",
        BinaryKind::Power => "Pow",
        BinaryKind::Max | BinaryKind::Min => return nan_max_min(b, at, kind, x, y),
        BinaryKind::Mod => return modulo(b, at, x, y),
        BinaryKind::Hypot => return hypot(b, at, x, y),
        other => return Err(format!("{other:?} is lowered as a predicate")),
    };
    b.push(direct, vec![x, y], vec![at.out()?], vec![]);
    Ok(())
}

/// MXNet's maximum and minimum give NaN when either side is NaN; ONNX's (tract's)
/// return the other side.
fn nan_max_min(b: &mut Builder<'_>, at: &At<'_>, kind: BinaryKind, x: String, y: String) -> R<()> {
    let name = if kind == BinaryKind::Max {
        "Max"
    } else {
        "Min"
    };
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

/// MXNet's `mod`: 0 where y is 0; otherwise C's `fmod`, plus y where the remainder is
/// nonzero and its sign differs from y's.
fn modulo(b: &mut Builder<'_>, at: &At<'_>, x: String, y: String) -> R<()> {
    let r = b.op(
        "Mod",
        vec![x, y.clone()],
        vec![attr_int("fmod", 1)],
        &at.hint("fmod"),
    );
    let zero = b.scalar_f32(&at.hint("zero"), 0.0);
    let r_zero = b.op(
        "Equal",
        vec![r.clone(), zero.clone()],
        vec![],
        &at.hint("r_zero"),
    );
    let r_nonzero = b.op("Not", vec![r_zero], vec![], &at.hint("r_nonzero"));
    let r_negative = b.op(
        "Less",
        vec![r.clone(), zero.clone()],
        vec![],
        &at.hint("r_neg"),
    );
    let y_negative = b.op(
        "Less",
        vec![y.clone(), zero.clone()],
        vec![],
        &at.hint("y_neg"),
    );
    let signs_differ = b.op(
        "Xor",
        vec![r_negative, y_negative],
        vec![],
        &at.hint("differ"),
    );
    let adjust = b.op(
        "And",
        vec![r_nonzero, signs_differ],
        vec![],
        &at.hint("adjust"),
    );
    let shifted = b.op(
        "Add",
        vec![r.clone(), y.clone()],
        vec![],
        &at.hint("shifted"),
    );
    let python = b.op(
        "Where",
        vec![adjust, shifted, r],
        vec![],
        &at.hint("python"),
    );
    let y_zero = b.op("Equal", vec![y, zero.clone()], vec![], &at.hint("y_zero"));
    b.push("Where", vec![y_zero, zero, python], vec![at.out()?], vec![]);
    Ok(())
}

/// √(x² + y²) as `hypotf` computes it, without overflow: m·√(1 + (n/m)²) for m the
/// larger magnitude and n the smaller; 0 where both are 0, +∞ where either is infinite.
fn hypot(b: &mut Builder<'_>, at: &At<'_>, x: String, y: String) -> R<()> {
    let ax = b.op("Abs", vec![x], vec![], &at.hint("abs_x"));
    let ay = b.op("Abs", vec![y], vec![], &at.hint("abs_y"));
    let m = b.op(
        "Max",
        vec![ax.clone(), ay.clone()],
        vec![],
        &at.hint("larger"),
    );
    let n = b.op(
        "Min",
        vec![ax.clone(), ay.clone()],
        vec![],
        &at.hint("smaller"),
    );
    let ratio = b.op("Div", vec![n, m.clone()], vec![], &at.hint("ratio"));
    let square = b.op(
        "Mul",
        vec![ratio.clone(), ratio],
        vec![],
        &at.hint("square"),
    );
    let one = b.scalar_f32(&at.hint("one"), 1.0);
    let sum = b.op("Add", vec![square, one], vec![], &at.hint("sum"));
    let root = b.op("Sqrt", vec![sum], vec![], &at.hint("root"));
    let h = b.op("Mul", vec![m.clone(), root], vec![], &at.hint("h"));
    let zero = b.scalar_f32(&at.hint("zero"), 0.0);
    let both_zero = b.op(
        "Equal",
        vec![m, zero.clone()],
        vec![],
        &at.hint("both_zero"),
    );
    let finite = b.op(
        "Where",
        vec![both_zero, zero, h],
        vec![],
        &at.hint("finite"),
    );
    let x_inf = b.op("IsInf", vec![ax], vec![], &at.hint("x_inf"));
    let y_inf = b.op("IsInf", vec![ay], vec![], &at.hint("y_inf"));
    let inf = b.op("Or", vec![x_inf, y_inf], vec![], &at.hint("inf"));
    let infinity = b.scalar_f32(&at.hint("infinity"), f32::INFINITY);
    b.push(
        "Where",
        vec![inf, infinity, finite],
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
    // The scalar cast to the data's type, as MXNet does: float32, or an integer type
    // (2.5 is 2 for int32 data).
    let data = b.dtypes.of(at.source(0)?);
    let value = if is_integer(data) {
        ward_graph::dtypes::integer_result(data, op.value)
    } else {
        op.value
    };
    let c = b.scalar_f32(&at.hint("scalar"), value as f32);
    let x = at.input(0)?;
    let (kind, constant_first) = op.kind.binary();
    if kind.is_predicate() {
        return predicate(b, at, kind, x, c);
    }
    if constant_first {
        arithmetic(b, at, kind, c, x)
    } else {
        arithmetic(b, at, kind, x, c)
    }
}

pub(super) fn unary(b: &mut Builder<'_>, at: &At<'_>, op: &Unary) -> R<()> {
    let x = at.input(0)?;
    if is_integer(b.dtypes.of(at.source(0)?)) {
        if let Some(done) = saturating_on_integers(b, at, op.kind, x.clone()) {
            return done;
        }
    }
    let direct = match op.kind {
        UnaryKind::Sigmoid => return super::activation::sigmoid(b, at, x),
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

/// Sigmoid of integer data. MXNet computes it in double and truncates: 1 / (1 + e^-x) is
/// exactly 1.0 in double only from x = 37 on (e^-37 is below half of double's epsilon,
/// e^-36 is not), so the integer result is 1 from 37 on and 0 below. tract's float32
/// sigmoid cannot tell 36 from 37.
fn saturating_on_integers(
    b: &mut Builder<'_>,
    at: &At<'_>,
    kind: UnaryKind,
    x: String,
) -> Option<R<()>> {
    if kind != UnaryKind::Sigmoid {
        return None;
    }
    let threshold = b.scalar_f32(&at.hint("saturated_from"), 37.0);
    let saturated = b.op(
        "GreaterOrEqual",
        vec![x, threshold],
        vec![],
        &at.hint("saturated"),
    );
    Some(as_float(b, at, saturated))
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
/// or float64 it keeps the value; to an integer type it keeps the value too, which the
/// walk then converts as every integer-typed result ([`integer_result`]).
pub(super) fn cast(b: &mut Builder<'_>, at: &At<'_>, op: &Cast) -> R<()> {
    let x = at.input(0)?;
    if op.to != CastType::Float16 {
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

/// Writes to `out` the value MXNet stores when `x`, computed in floating point, becomes
/// an integer of type `dtype` ([`ward_graph::dtypes::integer_result`]): truncated toward
/// zero; the type's minimum past its range and for NaN (int32, int64; an 8-bit type takes
/// the low byte of the int32 conversion). Kept in float32, which holds these integers
/// exactly up to 2^24.
pub(super) fn integer_result(b: &mut Builder<'_>, x: String, out: String, dtype: DType) {
    let hint = |s: &str| format!("{out}/{s}");
    // The limit of the conversion: int64's for int64, int32's for the rest.
    let (limit, onnx_type) = if dtype == DType::I64 {
        (9_223_372_036_854_775_808.0f32, DataType::Int64)
    } else {
        (2_147_483_648.0f32, DataType::Int64)
    };
    // Truncation: a cast to int64 (exact for every float32 within the limit).
    let int = b.op(
        "Cast",
        vec![x.clone()],
        vec![attr_int("to", onnx_type as i64)],
        &hint("int"),
    );
    let truncated = b.op(
        "Cast",
        vec![int],
        vec![attr_int("to", DataType::Float as i64)],
        &hint("truncated"),
    );
    // |x| < limit is false for NaN too; −limit itself converts to −limit either way.
    let magnitude = b.op("Abs", vec![x], vec![], &hint("magnitude"));
    let limit_c = b.scalar_f32(&hint("limit"), limit);
    let within = b.op("Less", vec![magnitude, limit_c], vec![], &hint("within"));
    let minimum = b.scalar_f32(&hint("minimum"), -limit);
    if dtype != DType::I8 && dtype != DType::U8 {
        b.push("Where", vec![within, truncated, minimum], vec![out], vec![]);
        return;
    }
    let int32 = b.op(
        "Where",
        vec![within, truncated, minimum],
        vec![],
        &hint("int32"),
    );
    // The low byte: v − 256·floor(v / 256), exact in float32 for every int32 held exactly.
    let byte = b.scalar_f32(&hint("byte"), 256.0);
    let scaled = b.op(
        "Div",
        vec![int32.clone(), byte.clone()],
        vec![],
        &hint("scaled"),
    );
    let floor = b.op("Floor", vec![scaled], vec![], &hint("floor"));
    let whole = b.op("Mul", vec![floor, byte.clone()], vec![], &hint("whole"));
    if dtype == DType::U8 {
        b.push("Sub", vec![int32, whole], vec![out], vec![]);
        return;
    }
    let low = b.op("Sub", vec![int32, whole], vec![], &hint("low"));
    let half = b.scalar_f32(&hint("half"), 128.0);
    let negative = b.op(
        "GreaterOrEqual",
        vec![low.clone(), half],
        vec![],
        &hint("negative"),
    );
    let wrapped = b.op("Sub", vec![low.clone(), byte], vec![], &hint("wrapped"));
    b.push("Where", vec![negative, wrapped, low], vec![out], vec![]);
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
