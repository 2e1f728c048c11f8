//! Element-wise operators: binary (same shape or broadcast), `add_n`, operations with a
//! scalar, unary functions, `clip` and `where` (MXNet 1.9.1). Comparisons and logical
//! operators give 1.0 or 0.0, as MXNet gives 1 or 0 in the data's dtype.

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::array::{indices, strides};
use super::{Array, KResult, KernelError};
/// The binary operations of `elemwise_*`, `broadcast_*`, `_maximum`, `_minimum`, `_mod`,
/// `_power`, `_hypot`: `Max` and `Min` propagate NaN (MXNet 1.9.1's `maximum`, checked in
/// both operand orders); comparisons are false when either side is NaN except `!=`;
/// logic converts operands to bool, NaN to true.
pub use crate::ops::elementwise::{BinaryKind, CastType, ScalarKind, UnaryKind};

/// 1.0 for true, 0.0 for false: MXNet's predicates give 1 or 0 in the data's dtype.
fn truth(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// C's conversion to bool: every value but ±0 is true, NaN included.
fn nonzero(v: f64) -> bool {
    v != 0.0
}

fn apply(kind: BinaryKind, a: f64, b: f64) -> f64 {
    match kind {
        BinaryKind::Greater => truth(a > b),
        BinaryKind::GreaterEqual => truth(a >= b),
        BinaryKind::Lesser => truth(a < b),
        BinaryKind::LesserEqual => truth(a <= b),
        BinaryKind::Equal => truth(a == b),
        BinaryKind::NotEqual => truth(a != b),
        BinaryKind::LogicalAnd => truth(nonzero(a) && nonzero(b)),
        BinaryKind::LogicalOr => truth(nonzero(a) || nonzero(b)),
        BinaryKind::LogicalXor => truth(nonzero(a) != nonzero(b)),
        BinaryKind::Add => a + b,
        BinaryKind::Sub => a - b,
        BinaryKind::Mul => a * b,
        BinaryKind::Div => a / b,
        BinaryKind::Max => {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        }
        BinaryKind::Min => {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }
        }
        BinaryKind::Mod => modulo(a, b),
        BinaryKind::Power => a.powf(b),
        BinaryKind::Hypot => a.hypot(b),
    }
}

/// MXNet's `mod`: 0 where b is 0; otherwise C's `fmod`, plus b where the remainder is
/// nonzero and its sign differs from b's (the remainder takes b's sign, as Python's).
pub fn modulo(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        return 0.0;
    }
    let r = a % b;
    if r != 0.0 && (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

/// The shape two operands broadcast to, NumPy's rule (which MXNet's `broadcast_*`
/// operators follow): shapes are aligned at their last axes, missing leading axes count
/// as 1, and each pair of dims must be equal or contain a 1.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> KResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(KernelError::new(
                op,
                format!("shapes {a:?} and {b:?} do not broadcast"),
            )),
        })
        .collect()
}

/// The flat offset in an operand of `shape` (right-aligned, broadcast) for `index` of
/// the output.
fn broadcast_offset(shape: &[usize], st: &[usize], index: &[usize]) -> usize {
    let skip = index.len() - shape.len();
    shape
        .iter()
        .zip(st)
        .zip(&index[skip..])
        .map(|((&d, &s), &i)| if d == 1 { 0 } else { i * s })
        .sum()
}

/// A binary operation. Without `broadcast` (`elemwise_*`, `_maximum`, `_minimum`) the
/// shapes must be equal; with it (`broadcast_*`) they broadcast as [`broadcast_shape`].
pub fn binary(a: &Array, b: &Array, kind: BinaryKind, broadcast: bool) -> KResult<Array> {
    let op = if broadcast { "broadcast" } else { "elemwise" };
    if !broadcast {
        if a.shape != b.shape {
            return Err(KernelError::new(
                op,
                format!(
                    "operands have shapes {:?} and {:?}; element-wise operators do not broadcast",
                    a.shape, b.shape
                ),
            ));
        }
        return Array::new(
            a.shape.clone(),
            a.data
                .iter()
                .zip(&b.data)
                .map(|(&x, &y)| apply(kind, x, y))
                .collect(),
        );
    }
    let shape = broadcast_shape(op, &a.shape, &b.shape)?;
    let (sa, sb) = (strides(&a.shape), strides(&b.shape));
    let mut out = Array::zeros(shape.clone())?;
    for (flat, idx) in indices(&shape).enumerate() {
        let x = a.data[broadcast_offset(&a.shape, &sa, &idx)];
        let y = b.data[broadcast_offset(&b.shape, &sb, &idx)];
        out.data[flat] = apply(kind, x, y);
    }
    Ok(out)
}

/// MXNet `add_n` (`ElementWiseSum`): the sum of one or more arrays of one shape.
pub fn add_n(inputs: &[&Array]) -> KResult<Array> {
    const OP: &str = "add_n";
    let first = inputs
        .first()
        .ok_or_else(|| KernelError::new(OP, "needs at least one input"))?;
    let mut out = (*first).clone();
    for (i, x) in inputs.iter().enumerate().skip(1) {
        if x.shape != first.shape {
            return Err(KernelError::new(
                OP,
                format!(
                    "input {i} has shape {:?}, input 0 {:?}",
                    x.shape, first.shape
                ),
            ));
        }
        for (o, v) in out.data.iter_mut().zip(&x.data) {
            *o += v;
        }
    }
    Ok(out)
}

/// An operation of every element with the scalar `s`. The predicates compare with `s`
/// rounded to float32: MXNet casts the scalar to the data's dtype before comparing
/// (`x == 0.1` holds for the float32 nearest 0.1, `x == 1e300` for +∞).
pub fn scalar(x: &Array, kind: ScalarKind, s: f64) -> KResult<Array> {
    // MXNet casts the scalar to the data's dtype (float32) before it computes.
    let c = f64::from(s as f32);
    let (binary, constant_first) = kind.binary();
    Ok(x.map(|v| {
        if constant_first {
            apply(binary, c, v)
        } else {
            apply(binary, v, c)
        }
    }))
}

/// One [`UnaryKind`] on each element, computed in f64 the way MXNet's functors compute
/// it in f32.
pub fn unary(x: &Array, kind: UnaryKind) -> KResult<Array> {
    Ok(x.map(|v| unary_value(kind, v)))
}

/// One element of [`unary`].
pub fn unary_value(kind: UnaryKind, v: f64) -> f64 {
    use std::f64::consts::PI;
    match kind {
        // MXNet's `relu` operator keeps NaN (`Activation(relu)` maps it to 0).
        UnaryKind::Relu => {
            if v.is_nan() || v > 0.0 {
                v
            } else {
                0.0
            }
        }
        UnaryKind::Sigmoid => super::activation::sigmoid(v),
        UnaryKind::Tanh => v.tanh(),
        UnaryKind::Exp => v.exp(),
        UnaryKind::Log => v.ln(),
        UnaryKind::Sqrt => v.sqrt(),
        UnaryKind::Abs => v.abs(),
        UnaryKind::Neg => -v,
        UnaryKind::LogicalNot => truth(!nonzero(v)),
        UnaryKind::Erf => super::activation::erf(v),
        UnaryKind::Square => v * v,
        UnaryKind::Rsqrt => 1.0 / v.sqrt(),
        UnaryKind::Reciprocal => 1.0 / v,
        UnaryKind::Cbrt => v.cbrt(),
        UnaryKind::Rcbrt => 1.0 / v.cbrt(),
        UnaryKind::Log1p => v.ln_1p(),
        UnaryKind::Expm1 => v.exp_m1(),
        UnaryKind::Log2 => v.log2(),
        UnaryKind::Log10 => v.log10(),
        UnaryKind::Sin => v.sin(),
        UnaryKind::Cos => v.cos(),
        UnaryKind::Tan => v.tan(),
        UnaryKind::Arcsin => v.asin(),
        UnaryKind::Arccos => v.acos(),
        UnaryKind::Arctan => v.atan(),
        UnaryKind::Sinh => v.sinh(),
        UnaryKind::Cosh => v.cosh(),
        UnaryKind::Arcsinh => v.asinh(),
        UnaryKind::Arccosh => v.acosh(),
        UnaryKind::Arctanh => v.atanh(),
        UnaryKind::Degrees => v * (180.0 / PI),
        UnaryKind::Radians => v * (PI / 180.0),
        UnaryKind::Floor => v.floor(),
        UnaryKind::Ceil => v.ceil(),
        UnaryKind::Round => v.round(),
        UnaryKind::Rint => v.round_ties_even(),
        UnaryKind::Trunc => v.trunc(),
        // NaN is neither below nor above 0.
        UnaryKind::Sign => {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryKind::Softsign => v / (1.0 + v.abs()),
        UnaryKind::Copy => v,
    }
}

/// MXNet `Cast`/`amp_cast`, the value kept in f64: float16 rounds, an integer type
/// truncates as MXNet converts.
pub fn cast(x: &Array, to: CastType) -> KResult<Array> {
    Ok(match to {
        CastType::Float16 => x.map(|v| half::f16::from_f64(v).to_f64()),
        CastType::Float32 | CastType::Float64 => x.clone(),
        // The conversion is the one every integer-typed result gets.
        int => x.map(|v| crate::dtypes::integer_result(int.dtype(), v)),
    })
}

/// MXNet `clip`: `x > max ? max : (x < min ? min : x)`, so NaN passes through.
pub fn clip(x: &Array, min: f64, max: f64) -> KResult<Array> {
    if min.is_nan() || max.is_nan() || min > max {
        return Err(KernelError::new(
            "clip",
            format!("a_min {min} must not exceed a_max {max}"),
        ));
    }
    Ok(x.map(|v| {
        if v > max {
            max
        } else if v < min {
            min
        } else {
            v
        }
    }))
}

/// MXNet `where`: `x` where `cond` is nonzero (NaN included: MXNet tests `cond != 0`),
/// `y` elsewhere. `x` and `y` have one shape; `cond` has it too, or is a vector of x's
/// first dim whose element picks a whole slice along that axis.
pub fn where_(cond: &Array, x: &Array, y: &Array) -> KResult<Array> {
    const OP: &str = "where";
    if x.shape != y.shape {
        return Err(KernelError::new(
            OP,
            format!("x has shape {:?}, y {:?}", x.shape, y.shape),
        ));
    }
    // Elements of x per element of the condition: 1, or a slice along axis 0.
    let per = if cond.shape == x.shape {
        1
    } else if cond.shape.len() == 1 && x.shape.first() == cond.shape.first() {
        x.shape[1..].iter().product()
    } else {
        return Err(KernelError::new(
            OP,
            format!(
                "condition has shape {:?}; it must be x's {:?} or a vector of its first dim",
                cond.shape, x.shape
            ),
        ));
    };
    let data = x
        .data
        .iter()
        .zip(&y.data)
        .enumerate()
        .map(|(i, (&a, &b))| {
            if nonzero(cond.data[i / per.max(1)]) {
                a
            } else {
                b
            }
        })
        .collect();
    Array::new(x.shape.clone(), data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_aligns_trailing_axes() {
        let a = Array::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let row = Array::vector(&[10.0, 20.0, 30.0]);
        let col = Array::new(vec![2, 1], vec![100.0, 200.0]).unwrap();
        let y = binary(&a, &row, BinaryKind::Add, true).unwrap();
        assert_eq!(y.data, vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        let y = binary(&col, &row, BinaryKind::Sub, true).unwrap();
        assert_eq!(y.shape, vec![2, 3]);
        assert_eq!(y.data, vec![90.0, 80.0, 70.0, 190.0, 180.0, 170.0]);
        let y = binary(&row, &a, BinaryKind::Div, true).unwrap();
        assert_eq!(y.data[5], 5.0);
        assert!(binary(&a, &Array::vector(&[1.0, 2.0]), BinaryKind::Add, true).is_err());
        assert!(binary(&a, &row, BinaryKind::Add, false).is_err());
        assert_eq!(
            broadcast_shape("t", &[2, 1, 4], &[3, 1]).unwrap(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn max_and_min_propagate_nan() {
        let a = Array::vector(&[f64::NAN, 1.0, 0.0]);
        let b = Array::vector(&[0.0, f64::NAN, -1.0]);
        for kind in [BinaryKind::Max, BinaryKind::Min] {
            let y = binary(&a, &b, kind, false).unwrap();
            assert!(y.data[0].is_nan() && y.data[1].is_nan());
        }
        assert_eq!(binary(&a, &b, BinaryKind::Max, false).unwrap().data[2], 0.0);
        assert_eq!(
            binary(&a, &b, BinaryKind::Min, false).unwrap().data[2],
            -1.0
        );
    }

    #[test]
    fn scalars_unary_and_clip() {
        let x = Array::vector(&[-2.0, 4.0, f64::NAN]);
        assert_eq!(
            scalar(&x, ScalarKind::RSub, 1.0).unwrap().data[..2],
            [3.0, -3.0]
        );
        assert_eq!(
            scalar(&x, ScalarKind::RDiv, 2.0).unwrap().data[..2],
            [-1.0, 0.5]
        );
        assert_eq!(
            scalar(&x, ScalarKind::Div, 2.0).unwrap().data[..2],
            [-1.0, 2.0]
        );
        let r = unary(&x, UnaryKind::Relu).unwrap();
        assert_eq!(r.data[..2], [0.0, 4.0]);
        assert!(r.data[2].is_nan(), "the relu operator keeps NaN");
        assert!(unary(&x, UnaryKind::Sqrt).unwrap().data[0].is_nan());
        let c = clip(&x, -1.0, 1.0).unwrap();
        assert_eq!(c.data[..2], [-1.0, 1.0]);
        assert!(c.data[2].is_nan());
        assert!(clip(&x, 1.0, -1.0).is_err());
        let s = add_n(&[&x, &x, &x]).unwrap();
        assert_eq!(s.data[..2], [-6.0, 12.0]);
        assert!(add_n(&[]).is_err());
        assert!(add_n(&[&x, &Array::vector(&[1.0])]).is_err());
    }

    #[test]
    fn predicates_follow_mxnet_on_nan_and_ties() {
        let a = Array::vector(&[1.0, 1.0, f64::NAN, 0.0, -0.0, 2.0]);
        let b = Array::vector(&[1.0, 2.0, f64::NAN, f64::NAN, 0.0, 0.0]);
        let run = |k| binary(&a, &b, k, false).unwrap().data;
        assert_eq!(
            run(BinaryKind::GreaterEqual),
            [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
        );
        assert_eq!(run(BinaryKind::Equal), [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(run(BinaryKind::NotEqual), [0.0, 1.0, 1.0, 1.0, 0.0, 1.0]);
        assert_eq!(run(BinaryKind::LogicalAnd), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(run(BinaryKind::LogicalXor), [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
        assert_eq!(
            unary(&a, UnaryKind::LogicalNot).unwrap().data,
            [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
        );
        // The scalar is rounded to float32 first, as MXNet casts it.
        let tenth = Array::vector(&[f64::from(0.1f32), f64::INFINITY]);
        assert_eq!(
            scalar(&tenth, ScalarKind::Equal, 0.1).unwrap().data,
            [1.0, 0.0]
        );
        assert_eq!(
            scalar(&tenth, ScalarKind::Equal, 1e300).unwrap().data,
            [0.0, 1.0]
        );
        assert_eq!(
            scalar(&tenth, ScalarKind::LogicalAnd, 1e-50).unwrap().data,
            [0.0, 0.0]
        );
    }

    #[test]
    fn where_picks_by_element_or_by_row() {
        let x = Array::new(vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let y = x.map(|v| -v);
        let rows = Array::vector(&[1.0, 0.0, f64::NAN]);
        assert_eq!(
            where_(&rows, &x, &y).unwrap().data,
            [1.0, 2.0, -3.0, -4.0, 5.0, 6.0]
        );
        let each = Array::new(vec![3, 2], vec![0.0, 1.0, 0.0, 1.0, 0.0, -0.0]).unwrap();
        assert_eq!(
            where_(&each, &x, &y).unwrap().data,
            [-1.0, 2.0, -3.0, 4.0, -5.0, -6.0]
        );
        assert!(where_(&Array::vector(&[1.0, 0.0]), &x, &y).is_err());
        assert!(where_(&rows, &x, &Array::vector(&[1.0, 2.0, 3.0])).is_err());
    }
}
