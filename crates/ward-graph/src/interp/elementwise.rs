//! Element-wise operators: binary (same shape or broadcast), `add_n`, operations with a
//! scalar, unary functions and `clip` (MXNet 1.9.1).

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::array::{indices, strides};
use super::{Array, KResult, KernelError};

/// The binary operation of `elemwise_*`, `broadcast_*`, `_maximum`, `_minimum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    /// NaN-propagating: the result is NaN when either operand is (MXNet 1.9.1's
    /// `maximum`, checked in both operand orders).
    Max,
    /// NaN-propagating like `Max`.
    Min,
}

fn apply(kind: BinaryKind, a: f64, b: f64) -> f64 {
    match kind {
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

/// The operation of `_plus_scalar`, `_minus_scalar`, `_rminus_scalar`, `_mul_scalar`,
/// `_div_scalar`, `_rdiv_scalar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    /// x + s
    Add,
    /// x − s
    Sub,
    /// s − x
    RSub,
    /// x·s
    Mul,
    /// x / s
    Div,
    /// s / x
    RDiv,
}

/// An operation of every element with the scalar `s`.
pub fn scalar(x: &Array, kind: ScalarKind, s: f64) -> KResult<Array> {
    Ok(x.map(|v| match kind {
        ScalarKind::Add => v + s,
        ScalarKind::Sub => v - s,
        ScalarKind::RSub => s - v,
        ScalarKind::Mul => v * s,
        ScalarKind::Div => v / s,
        ScalarKind::RDiv => s / v,
    }))
}

/// The standalone unary operators `relu`, `sigmoid`, `tanh`, `exp`, `log`, `sqrt`, `abs`,
/// `negative`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryKind {
    /// Keeps NaN (MXNet's `relu` operator; `Activation(relu)` maps it to 0).
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    /// NaN below 0, −∞ at 0.
    Log,
    /// NaN below 0.
    Sqrt,
    Abs,
    Neg,
}

pub fn unary(x: &Array, kind: UnaryKind) -> KResult<Array> {
    Ok(x.map(|v| match kind {
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
    }))
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
}
