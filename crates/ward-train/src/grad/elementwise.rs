//! Element-wise and broadcast arithmetic, comparison and logic, `add_n`, scalar
//! operations, the unary operators, `clip` and `where`.
//!
//! Comparisons and logical operators are step functions: MXNet 1.9.1 gives every input
//! a zero gradient (zeros even where the data is NaN), and so does ward.

use ward_graph::interp::Array;
use ward_graph::ops::elementwise::{Binary, BinaryKind, Cast, Clip, Scalar, Unary, UnaryKind};

use super::arrays::{self, zeros_like};
use super::{Ctx, Rule};

/// A binary operation: each operand's partial derivative at every output element, summed
/// back over the axes it was broadcast along. `maximum` sends the gradient to the left
/// operand where `a >= b` and to the right where `a < b`; `minimum` to the left where
/// `a <= b` and to the right where `a > b` (MXNet's masks), so where either is NaN
/// neither gets it.
pub fn binary(ctx: &Ctx<'_>, op: &Binary) -> Rule {
    let (a, b) = (ctx.input(0)?, ctx.input(1)?);
    if op.kind.is_predicate() {
        return Ok(vec![Some(zeros_like(a)?), Some(zeros_like(b)?)]);
    }
    let g = ctx.grad(0)?;
    let shape = g.shape.clone();
    let (oa, ob) = (
        arrays::broadcast_offsets(&a.shape, &shape)?,
        arrays::broadcast_offsets(&b.shape, &shape)?,
    );
    let mut ga = Vec::with_capacity(g.data.len());
    let mut gb = Vec::with_capacity(g.data.len());
    for ((&gv, &ia), &ib) in g.data.iter().zip(&oa).zip(&ob) {
        let x = a.data.get(ia).copied().unwrap_or(0.0);
        let y = b.data.get(ib).copied().unwrap_or(0.0);
        let (da, db) = partials(op.kind, x, y);
        ga.push(gv * da);
        gb.push(gv * db);
    }
    let ga = Array::new(shape.clone(), ga).map_err(|e| e.to_string())?;
    let gb = Array::new(shape, gb).map_err(|e| e.to_string())?;
    Ok(vec![
        Some(arrays::sum_to_shape(&ga, &a.shape)?),
        Some(arrays::sum_to_shape(&gb, &b.shape)?),
    ])
}

/// ∂(x kind y)/∂x and ∂(x kind y)/∂y, as MXNet's backward functors give them: `mod`'s
/// are 1 and −⌊x/y⌋, `power`'s y·x^(y−1) and x^y·ln x, `hypot`'s x/h and y/h.
fn partials(kind: BinaryKind, x: f64, y: f64) -> (f64, f64) {
    match kind {
        BinaryKind::Add => (1.0, 1.0),
        BinaryKind::Sub => (1.0, -1.0),
        BinaryKind::Mul => (y, x),
        BinaryKind::Div => (1.0 / y, -x / (y * y)),
        BinaryKind::Max => (mask(x >= y), mask(x < y)),
        BinaryKind::Min => (mask(x <= y), mask(x > y)),
        BinaryKind::Mod => (1.0, -(x / y).floor()),
        BinaryKind::Power => (y * x.powf(y - 1.0), x.powf(y) * x.ln()),
        BinaryKind::Hypot => {
            let h = x.hypot(y);
            (x / h, y / h)
        }
        BinaryKind::Greater
        | BinaryKind::GreaterEqual
        | BinaryKind::Lesser
        | BinaryKind::LesserEqual
        | BinaryKind::Equal
        | BinaryKind::NotEqual
        | BinaryKind::LogicalAnd
        | BinaryKind::LogicalOr
        | BinaryKind::LogicalXor => (0.0, 0.0),
    }
}

fn mask(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// Every operand of a sum gets the whole gradient.
pub fn add_n(ctx: &Ctx<'_>) -> Rule {
    let g = ctx.grad(0)?;
    Ok(vec![Some(g); ctx.ins.len()])
}

/// An operation with a constant: the partial derivative of the binary operation it is
/// with respect to the data's side, the constant rounded to float32 as the forward pass
/// reads it (`_maximum_scalar` sends the gradient where x >= c, as MXNet's `ge`).
pub fn scalar(ctx: &Ctx<'_>, op: &Scalar) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    let c = f64::from(op.value as f32);
    let (kind, constant_first) = op.kind.binary();
    if kind.is_predicate() {
        return Ok(vec![Some(zeros_like(x)?)]);
    }
    let dx = arrays::zip(&g, x, |g, x| {
        if constant_first {
            g * partials(kind, c, x).1
        } else {
            g * partials(kind, x, c).0
        }
    })?;
    Ok(vec![Some(dx)])
}

pub fn unary(ctx: &Ctx<'_>, op: &Unary) -> Rule {
    let x = ctx.input(0)?;
    let y = ctx.output(0)?;
    let g = ctx.grad(0)?;
    let dx = match op.kind {
        // The `relu` operator keeps NaN, and so does its gradient (Activation's relu,
        // which maps NaN to 0, gives 0).
        UnaryKind::Relu => arrays::zip(&g, x, |g, x| {
            if x.is_nan() {
                x
            } else if x > 0.0 {
                g
            } else {
                0.0
            }
        })?,
        UnaryKind::Sigmoid => arrays::zip(&g, y, |g, y| g * y * (1.0 - y))?,
        UnaryKind::Tanh => arrays::zip(&g, y, |g, y| g * (1.0 - y * y))?,
        UnaryKind::Exp => arrays::zip(&g, y, |g, y| g * y)?,
        UnaryKind::Log => arrays::zip(&g, x, |g, x| g / x)?,
        UnaryKind::Sqrt => arrays::zip(&g, y, |g, y| g / (2.0 * y))?,
        UnaryKind::Abs => arrays::zip(&g, x, |g, x| g * sign(x))?,
        UnaryKind::Neg => g.map(|v| -v),
        UnaryKind::Copy => g,
        UnaryKind::Erf => arrays::zip(&g, x, |g, x| {
            g * std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp()
        })?,
        UnaryKind::Square => arrays::zip(&g, x, |g, x| g * 2.0 * x)?,
        UnaryKind::Rsqrt => arrays::zip(&g, x, |g, x| -g / (2.0 * x * x.sqrt()))?,
        UnaryKind::Reciprocal => arrays::zip(&g, x, |g, x| -g / (x * x))?,
        UnaryKind::Cbrt => arrays::zip(&g, y, |g, y| g / (3.0 * y * y))?,
        UnaryKind::Rcbrt => arrays::zip(&g, x, |g, x| -g / (3.0 * x * x.cbrt()))?,
        UnaryKind::Log1p => arrays::zip(&g, x, |g, x| g / (1.0 + x))?,
        UnaryKind::Expm1 => arrays::zip(&g, x, |g, x| g * x.exp())?,
        UnaryKind::Log2 => arrays::zip(&g, x, |g, x| g / (x * std::f64::consts::LN_2))?,
        UnaryKind::Log10 => arrays::zip(&g, x, |g, x| g / (x * std::f64::consts::LN_10))?,
        UnaryKind::Sin => arrays::zip(&g, x, |g, x| g * x.cos())?,
        UnaryKind::Cos => arrays::zip(&g, x, |g, x| -g * x.sin())?,
        UnaryKind::Tan => arrays::zip(&g, y, |g, y| g * (1.0 + y * y))?,
        UnaryKind::Arcsin => arrays::zip(&g, x, |g, x| g / (1.0 - x * x).sqrt())?,
        UnaryKind::Arccos => arrays::zip(&g, x, |g, x| -g / (1.0 - x * x).sqrt())?,
        UnaryKind::Arctan => arrays::zip(&g, x, |g, x| g / (1.0 + x * x))?,
        UnaryKind::Sinh => arrays::zip(&g, x, |g, x| g * x.cosh())?,
        UnaryKind::Cosh => arrays::zip(&g, x, |g, x| g * x.sinh())?,
        UnaryKind::Arcsinh => arrays::zip(&g, x, |g, x| g / (x * x + 1.0).sqrt())?,
        UnaryKind::Arccosh => arrays::zip(&g, x, |g, x| g / (x * x - 1.0).sqrt())?,
        UnaryKind::Arctanh => arrays::zip(&g, x, |g, x| g / (1.0 - x * x))?,
        UnaryKind::Degrees => g.map(|v| v * (180.0 / std::f64::consts::PI)),
        UnaryKind::Radians => g.map(|v| v * (std::f64::consts::PI / 180.0)),
        UnaryKind::Softsign => arrays::zip(&g, x, |g, x| g / ((1.0 + x.abs()) * (1.0 + x.abs())))?,
        // Piecewise constant: MXNet gives 0 everywhere, steps included.
        UnaryKind::LogicalNot
        | UnaryKind::Floor
        | UnaryKind::Ceil
        | UnaryKind::Round
        | UnaryKind::Rint
        | UnaryKind::Trunc
        | UnaryKind::Sign => g.map(|_| 0.0),
    };
    Ok(vec![Some(dx)])
}

/// MXNet's `sign`: 0 at 0.
pub(crate) fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The gradient is cut where the input lies outside `[min, max]` and passes elsewhere,
/// NaN included (MXNet's `x > max ? 0 : (x < min ? 0 : g)`).
pub fn clip(ctx: &Ctx<'_>, op: &Clip) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    let outside = |x: f64| x > op.max || x < op.min;
    let dx = arrays::zip(&g, x, |g, x| if outside(x) { 0.0 } else { g })?;
    Ok(vec![Some(dx)])
}

/// A cast passes the gradient straight through, in the output's dtype and then the
/// input's (MXNet's `_backward_cast`): through a float16 cast, rounded to float16.
pub fn cast(ctx: &Ctx<'_>, op: &Cast) -> Rule {
    let g = ctx.grad(0)?;
    let dx = ward_graph::interp::elementwise::cast(&g, op.to).map_err(|e| e.to_string())?;
    Ok(vec![Some(dx)])
}

/// `where`: the gradient goes to x where the condition is nonzero (NaN included) and to
/// y elsewhere; the condition gets zeros (MXNet's `_backward_where`, which gives the
/// condition a zero gradient rather than none).
pub fn where_(ctx: &Ctx<'_>) -> Rule {
    let cond = ctx.input(0)?;
    let x = ctx.input(1)?;
    let g = ctx.grad(0)?;
    // Output elements per condition element: 1, or a slice along x's first axis.
    let per = if cond.shape == x.shape {
        1
    } else {
        x.shape.iter().skip(1).product::<usize>().max(1)
    };
    let picks_x = |i: usize| cond.data.get(i / per).is_some_and(|&c| c != 0.0);
    let split = |to_x: bool| -> Result<Array, String> {
        let data = g
            .data
            .iter()
            .enumerate()
            .map(|(i, &v)| if picks_x(i) == to_x { v } else { 0.0 })
            .collect();
        Array::new(g.shape.clone(), data).map_err(|e| e.to_string())
    };
    Ok(vec![
        Some(cond.map(|_| 0.0)),
        Some(split(true)?),
        Some(split(false)?),
    ])
}
