//! Reductions (MXNet 1.9.1, legacy non-NumPy mode): `sum`, `mean`, `prod`, `max`, `min`,
//! `nansum`, `nanprod` and `norm` over axes, and `argmax`/`argmin` along one axis.
//!
//! The axis rules are MXNet's `ReduceAxesParam`: `axes` None **or empty** reduces every
//! axis (MXNet 1.9.1 reads `axis=()` as all axes, with or without `exclude`); with
//! `exclude` the listed axes are kept and the others reduced; an axis listed twice is
//! refused; reduced axes are kept as 1 with `keepdims`; a result with no axis left has
//! shape (1).

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::array::{indices, strides};
use super::{resolve_axis, Array, KResult, KernelError};
use crate::ops::reduce::{reduced_shape, ArgKind, ReduceKind};

/// What [`reduce`] computes: the IR's reductions and `mean`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Of(ReduceKind),
}

impl Reduction {
    fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Of(kind) => kind.mxnet_name(),
        }
    }

    /// The reduction of `values`, accumulated in f64.
    fn of(self, values: &[f64]) -> f64 {
        let finite = || values.iter().copied().filter(|v| !v.is_nan());
        let nan_or = |pick: fn(f64, f64) -> f64| {
            values
                .iter()
                .copied()
                .try_fold(None, |acc: Option<f64>, v| {
                    if v.is_nan() {
                        Err(())
                    } else {
                        Ok(Some(acc.map_or(v, |a| pick(a, v))))
                    }
                })
                .map_or(f64::NAN, |m| m.unwrap_or(f64::NAN))
        };
        match self {
            Reduction::Mean => values.iter().sum::<f64>() / values.len().max(1) as f64,
            Reduction::Of(ReduceKind::Sum) => values.iter().sum(),
            Reduction::Of(ReduceKind::Prod) => values.iter().product(),
            // MXNet's max and min give NaN once any element is NaN.
            Reduction::Of(ReduceKind::Max) => nan_or(f64::max),
            Reduction::Of(ReduceKind::Min) => nan_or(f64::min),
            Reduction::Of(ReduceKind::NanSum) => finite().sum(),
            Reduction::Of(ReduceKind::NanProd) => finite().product(),
            Reduction::Of(ReduceKind::L1) => values.iter().map(|v| v.abs()).sum(),
            Reduction::Of(ReduceKind::L2) => values.iter().map(|v| v * v).sum::<f64>().sqrt(),
        }
    }
}

/// Which axes of a rank-`rank` input MXNet reduces for `axes` and `exclude`.
pub fn reduced_axes(
    op: &'static str,
    rank: usize,
    axes: Option<&[i64]>,
    exclude: bool,
) -> KResult<Vec<usize>> {
    let listed = match axes {
        None | Some([]) => return Ok((0..rank).collect()),
        Some(list) => list,
    };
    let mut picked = vec![false; rank];
    for &ax in listed {
        let a = resolve_axis(op, ax, rank)?;
        if picked[a] {
            return Err(KernelError::new(op, format!("axis {ax} is listed twice")));
        }
        picked[a] = true;
    }
    Ok((0..rank).filter(|&a| picked[a] != exclude).collect())
}

/// The elements of `x` grouped by the output element they reduce into, each group in
/// row-major order of `x`.
fn groups(x: &Array, reduced: &[usize]) -> Vec<Vec<f64>> {
    let kept = reduced_shape(&x.shape, reduced, true);
    let ks = strides(&kept);
    let mut out = vec![Vec::new(); kept.iter().product()];
    for (flat, idx) in indices(&x.shape).enumerate() {
        let off: usize = idx
            .iter()
            .enumerate()
            .map(|(a, &i)| if reduced.contains(&a) { 0 } else { i * ks[a] })
            .sum();
        out[off].push(x.data[flat]);
    }
    out
}

/// MXNet `sum`, `mean`, `prod`, `max`, `min`, `nansum`, `nanprod`, and `norm` (ord 1 or
/// 2 as [`ReduceKind::L1`]/[`ReduceKind::L2`], which MXNet computes over every listed
/// axis as one vector, not as a matrix norm for two axes).
pub fn reduce(
    x: &Array,
    how: Reduction,
    axes: Option<&[i64]>,
    keepdims: bool,
    exclude: bool,
) -> KResult<Array> {
    let reduced = reduced_axes(how.name(), x.rank(), axes, exclude)?;
    reduce_over(x, how, &reduced, keepdims)
}

/// `x` reduced over the `reduced` axes (resolved, distinct). None reduced still maps each
/// element as a reduction of one: `nansum` and `nanprod` replace NaN, the norms take the
/// magnitude (MXNet does the same when `exclude` lists every axis).
pub fn reduce_over(x: &Array, how: Reduction, reduced: &[usize], keepdims: bool) -> KResult<Array> {
    if let Some(&bad) = reduced.iter().find(|&&a| a >= x.rank()) {
        return Err(KernelError::new(
            how.name(),
            format!("axis {bad} is out of range for rank {}", x.rank()),
        ));
    }
    let groups = groups(x, reduced);
    let data = groups.iter().map(|g| how.of(g)).collect();
    let shape = if reduced.is_empty() {
        x.shape.clone()
    } else {
        reduced_shape(&x.shape, reduced, keepdims)
    };
    Array::new(shape, data)
}

/// MXNet `mean`.
pub fn mean(x: &Array, axes: Option<&[i64]>, keepdims: bool, exclude: bool) -> KResult<Array> {
    reduce(x, Reduction::Mean, axes, keepdims, exclude)
}

/// MXNet `argmax`/`argmin`: the index along `axis` (of `x` read flat when `None`) as a
/// float. Ties give the first index; MXNet's reducer takes a NaN over any number and
/// keeps it, so the first NaN wins for both.
pub fn arg_reduce(x: &Array, kind: ArgKind, axis: Option<i64>, keepdims: bool) -> KResult<Array> {
    let op = match kind {
        ArgKind::Max => "argmax",
        ArgKind::Min => "argmin",
    };
    let reduced = match axis {
        None => (0..x.rank()).collect(),
        Some(a) => vec![resolve_axis(op, a, x.rank())?],
    };
    let groups = groups(x, &reduced);
    let mut data = Vec::with_capacity(groups.len());
    for group in &groups {
        let mut best: Option<(usize, f64)> = None;
        for (i, &v) in group.iter().enumerate() {
            let better = match best {
                None => true,
                Some((_, b)) if b.is_nan() => false,
                Some((_, b)) => {
                    v.is_nan()
                        || match kind {
                            ArgKind::Max => v > b,
                            ArgKind::Min => v < b,
                        }
                }
            };
            if better {
                best = Some((i, v));
            }
        }
        let (i, _) = best.ok_or_else(|| KernelError::new(op, "the axis is empty"))?;
        data.push(i as f64);
    }
    Array::new(reduced_shape(&x.shape, &reduced, keepdims), data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::ramp;

    #[test]
    fn mean_axes_keepdims_exclude() {
        let x = ramp(vec![2, 3, 4]);
        let all = mean(&x, None, false, false).unwrap();
        assert_eq!((all.shape.clone(), all.data[0]), (vec![1], 11.5));
        assert_eq!(
            mean(&x, Some(&[]), true, false).unwrap().shape,
            vec![1, 1, 1]
        );
        assert_eq!(mean(&x, Some(&[]), false, true).unwrap(), all);
        let m = mean(&x, Some(&[1]), true, true).unwrap();
        assert_eq!(m.shape, vec![1, 3, 1]);
        assert_eq!(m.data, vec![7.5, 11.5, 15.5]);
        let m = mean(&x, Some(&[-1, 0]), false, false).unwrap();
        assert_eq!(m.data, vec![7.5, 11.5, 15.5]);
        assert_eq!(mean(&x, Some(&[0, 1, 2]), false, false).unwrap(), all);
        assert!(mean(&x, Some(&[1, -2]), false, false).is_err());
        assert!(mean(&x, Some(&[3]), false, false).is_err());
    }

    #[test]
    fn max_and_min_give_nan_and_the_nan_variants_skip_it() {
        let x = Array::new(vec![2, 3], vec![1.0, f64::NAN, 3.0, 2.0, -2.0, 0.5]).unwrap();
        let by_row = |k| reduce(&x, Reduction::Of(k), Some(&[1]), false, false).unwrap();
        assert!(by_row(ReduceKind::Max).data[0].is_nan());
        assert_eq!(by_row(ReduceKind::Max).data[1], 2.0);
        assert_eq!(by_row(ReduceKind::Min).data[1], -2.0);
        assert_eq!(by_row(ReduceKind::NanSum).data, vec![4.0, 0.5]);
        assert_eq!(by_row(ReduceKind::NanProd).data, vec![3.0, -2.0]);
        assert_eq!(by_row(ReduceKind::L1).data[1], 4.5);
        assert_eq!(by_row(ReduceKind::L2).data[1], (8.25f64).sqrt());
    }

    #[test]
    fn arg_reductions_take_the_first_tie_and_the_first_nan() {
        let x = Array::new(vec![2, 3], vec![2.0, 7.0, 7.0, 3.0, f64::NAN, f64::NAN]).unwrap();
        let max = arg_reduce(&x, ArgKind::Max, Some(1), false).unwrap();
        assert_eq!(max.data, vec![1.0, 1.0]);
        let min = arg_reduce(&x, ArgKind::Min, Some(-1), true).unwrap();
        assert_eq!((min.shape, min.data), (vec![2, 1], vec![0.0, 1.0]));
        let flat = arg_reduce(&x, ArgKind::Min, None, false).unwrap();
        assert_eq!((flat.shape, flat.data), (vec![1], vec![4.0]));
    }
}
