//! Reductions over axes: `mean`, the other reductions of MXNet's `ReduceAxesParam`
//! family (`reduce`: sum, prod, max, min, the NaN-skipping sum and product, and the L1 and
//! L2 norms), and the index of the largest or smallest element along one axis
//! (`arg_reduce`).
//!
//! `mean` came first and keeps its own op, so that graphs written with it stay readable;
//! it shares the axis rules below. MXNet never gives a rank-0 result: a reduction of
//! every axis without `keepdims` has shape (1).

use serde::{Deserialize, Serialize};

use ward_core::DType;

use super::{data_dtype, input, resolve_axis, OpDef, Shape, R};
use crate::limits::MAX_RANK;

/// Mean over `axes` (all when `None`), or over all others when `exclude`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mean {
    pub axes: Option<Vec<i64>>,
    pub keepdims: bool,
    pub exclude: bool,
}

impl Mean {
    /// The axes reduced, sorted and resolved against `rank`.
    pub fn axes(&self, rank: usize) -> R<Vec<usize>> {
        // Graphs written before `reduce` existed may list an axis twice: `mean` has
        // always read that as once.
        let mut listed = resolve_axes(self.axes.as_deref(), rank)?;
        listed.dedup();
        Ok(excluded(listed, self.exclude && self.axes.is_some(), rank))
    }
}

impl OpDef for Mean {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        check_axis_count("mean", self.axes.as_deref())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        Ok(vec![reduced_shape(x, &self.axes(x.len())?, self.keepdims)])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

/// What a [`Reduce`] computes over the elements it reduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReduceKind {
    Sum,
    Prod,
    /// Any NaN gives NaN, as MXNet's.
    Max,
    /// Any NaN gives NaN, as MXNet's.
    Min,
    /// The sum with NaN read as 0 (MXNet `nansum`).
    NanSum,
    /// The product with NaN read as 1 (MXNet `nanprod`).
    NanProd,
    /// Σ|x| (MXNet `norm` with `ord=1`).
    L1,
    /// √Σx² (MXNet `norm` with `ord=2`).
    L2,
}

impl ReduceKind {
    /// MXNet's operator for this reduction.
    pub fn mxnet_name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "sum",
            ReduceKind::Prod => "prod",
            ReduceKind::Max => "max",
            ReduceKind::Min => "min",
            ReduceKind::NanSum => "nansum",
            ReduceKind::NanProd => "nanprod",
            ReduceKind::L1 | ReduceKind::L2 => "norm",
        }
    }
}

/// A reduction over `axes` (all when `None`), or over all others when `exclude`; the
/// reduced axes are kept as 1 with `keepdims`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub axes: Option<Vec<i64>>,
    pub keepdims: bool,
    pub exclude: bool,
}

impl Reduce {
    /// The axes reduced, sorted and resolved against `rank`; an axis listed twice (once
    /// negative, say) is refused, as MXNet refuses it.
    pub fn axes(&self, rank: usize) -> R<Vec<usize>> {
        let listed = resolve_axes(self.axes.as_deref(), rank)?;
        if let Some(pair) = listed.windows(2).find(|w| w.first() == w.get(1)) {
            return Err(format!(
                "axes {:?} list axis {:?} twice",
                self.axes.as_deref().unwrap_or_default(),
                pair.first().copied().unwrap_or_default()
            ));
        }
        Ok(excluded(listed, self.exclude && self.axes.is_some(), rank))
    }
}

impl OpDef for Reduce {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        check_axis_count(self.kind.mxnet_name(), self.axes.as_deref())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        Ok(vec![reduced_shape(x, &self.axes(x.len())?, self.keepdims)])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        match self.kind {
            // The norms compute in floating point.
            ReduceKind::L1 | ReduceKind::L2 => Ok(vec![DType::F32]),
            _ => data_dtype(ins, 1),
        }
    }
}

/// Which index an [`ArgReduce`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgKind {
    Max,
    Min,
}

/// The index of the largest (or smallest) element along `axis`, or of the whole tensor
/// read flat when `None`, as a float (MXNet's `argmax`/`argmin` give the input's dtype).
/// Ties give the first index; a NaN counts as both the largest and the smallest, so the
/// first NaN wins (MXNet's reducer keeps a NaN once it holds one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgReduce {
    pub kind: ArgKind,
    pub axis: Option<i64>,
    pub keepdims: bool,
}

impl OpDef for ArgReduce {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let reduced = match self.axis {
            None => (0..x.len()).collect(),
            Some(axis) => vec![resolve_axis(axis, x.len())?],
        };
        Ok(vec![reduced_shape(x, &reduced, self.keepdims)])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // MXNet gives the indices in the data's type (float32 for float data).
        data_dtype(ins, 1)
    }
}

/// At most as many axes as a tensor can have.
fn check_axis_count(op: &str, axes: Option<&[i64]>) -> R<()> {
    if axes.is_some_and(|a| a.len() > MAX_RANK) {
        return Err(format!("{op} lists more axes than a tensor has"));
    }
    Ok(())
}

/// `axes` resolved against `rank` and sorted (duplicates kept); `None` is every axis.
fn resolve_axes(axes: Option<&[i64]>, rank: usize) -> R<Vec<usize>> {
    let mut listed = match axes {
        None => (0..rank).collect::<Vec<_>>(),
        Some(a) => a
            .iter()
            .map(|&x| resolve_axis(x, rank))
            .collect::<R<Vec<_>>>()?,
    };
    listed.sort_unstable();
    Ok(listed)
}

/// The axes not in `listed` when `exclude`, else `listed`.
fn excluded(listed: Vec<usize>, exclude: bool, rank: usize) -> Vec<usize> {
    if exclude {
        (0..rank).filter(|a| !listed.contains(a)).collect()
    } else {
        listed
    }
}

/// `x` with the `reduced` axes removed, or kept as 1 with `keepdims`; (1) when nothing
/// is left.
pub fn reduced_shape(x: &[usize], reduced: &[usize], keepdims: bool) -> Shape {
    let mut out = Vec::with_capacity(x.len());
    for (i, &d) in x.iter().enumerate() {
        if !reduced.contains(&i) {
            out.push(d);
        } else if keepdims {
            out.push(1);
        }
    }
    if out.is_empty() {
        out.push(1);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reduce(axes: Option<Vec<i64>>, keepdims: bool, exclude: bool) -> Reduce {
        Reduce {
            kind: ReduceKind::Sum,
            axes,
            keepdims,
            exclude,
        }
    }

    #[test]
    fn reductions_follow_mxnets_axis_rules() {
        let x: &[usize] = &[2, 3, 4];
        let shape = |r: Reduce| r.infer(&[Some(x)]).map(|mut s| s.remove(0));
        assert_eq!(shape(reduce(None, false, false)).unwrap(), vec![1]);
        assert_eq!(shape(reduce(None, true, false)).unwrap(), vec![1, 1, 1]);
        assert_eq!(
            shape(reduce(Some(vec![-1]), false, false)).unwrap(),
            vec![2, 3]
        );
        assert_eq!(
            shape(reduce(Some(vec![1]), true, true)).unwrap(),
            vec![1, 3, 1]
        );
        // An axis listed twice is refused, even spelt once negative.
        let err = shape(reduce(Some(vec![2, -1]), false, false)).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        assert!(shape(reduce(Some(vec![3]), false, false)).is_err());
    }

    #[test]
    fn arg_reductions_keep_no_rank_zero_result() {
        let x: &[usize] = &[2, 3];
        let arg = |axis, keepdims| {
            ArgReduce {
                kind: ArgKind::Max,
                axis,
                keepdims,
            }
            .infer(&[Some(x)])
            .map(|mut s| s.remove(0))
        };
        assert_eq!(arg(None, false).unwrap(), vec![1]);
        assert_eq!(arg(None, true).unwrap(), vec![1, 1]);
        assert_eq!(arg(Some(-1), false).unwrap(), vec![2]);
        assert_eq!(arg(Some(0), true).unwrap(), vec![1, 3]);
        assert!(arg(Some(2), false).is_err());
    }
}
