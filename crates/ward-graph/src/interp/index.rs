//! MXNet 1.9.1's `take`, `pick`, `gather_nd` and `one_hot`. Indices are float values,
//! truncated toward zero as MXNet casts them to integers; each gather is written as the
//! source offset of every output element, which the gradients scatter back through.

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::array::{element_count, strides};
use super::{resolve_axis, Array, KResult, KernelError};
use crate::ops::index::IndexMode;

/// The index `take` and `pick` read for value `v` on an axis of `size` (> 0): truncated
/// toward zero, then clamped to [0, size − 1] (`clip`) or taken modulo the size, −1
/// being the last (`wrap`). As MXNet 1.9.1 computes both. A NaN reads index 0; values
/// past ±2^63 saturate (MXNet's own cast of them is undefined).
pub fn mode_index(v: f64, size: usize, mode: IndexMode) -> usize {
    let last = size.saturating_sub(1);
    let t = v.trunc();
    match mode {
        IndexMode::Clip => {
            if v.is_nan() || t <= 0.0 {
                0
            } else if t >= last as f64 {
                last
            } else {
                t as usize
            }
        }
        IndexMode::Wrap => {
            let n = i64::try_from(size).unwrap_or(i64::MAX).max(1);
            // In [0, n) by `rem_euclid`, so the cast back is exact.
            (t as i64).rem_euclid(n) as usize
        }
    }
}

/// The index `gather_nd` reads for value `v` on an axis of `size` (> 0), as MXNet 1.9.1
/// computes it: a negative value has the size added (in floating point: −0.5 on an axis
/// of 2 reads 1), then it is truncated toward zero. MXNet fails the forward pass on a
/// value outside [−size, size − 1]; ward clamps the result to the axis instead (a plan
/// has no way to stop on one), and a NaN reads 0.
pub fn gather_nd_index(v: f64, size: usize) -> usize {
    let s = size as f64;
    let shifted = if v < 0.0 { v + s } else { v };
    mode_index(shifted, size, IndexMode::Clip)
}

/// (outer, size, inner) of shape `x` around the axis an index reads, which must not be
/// empty: element (o, j, i) is at `(o·size + j)·inner + i`.
fn around_read_axis(op: &'static str, x: &[usize], axis: i64) -> KResult<(usize, usize, usize)> {
    let a = resolve_axis(op, axis, x.len())?;
    let size = x[a];
    if size == 0 {
        return Err(KernelError::new(op, format!("axis {a} of {x:?} is empty")));
    }
    Ok((x[..a].iter().product(), size, x[a + 1..].iter().product()))
}

/// The offset in `a` (of shape `x`) of every element of `take`'s output.
pub fn take_sources(x: &[usize], idx: &Array, axis: i64, mode: IndexMode) -> KResult<Vec<usize>> {
    const OP: &str = "take";
    let (outer, size, inner) = around_read_axis(OP, x, axis)?;
    let n = element_count(&[outer, idx.len(), inner])?;
    let mut out = Vec::with_capacity(n);
    for o in 0..outer {
        for &v in &idx.data {
            let j = mode_index(v, size, mode);
            let base = (o * size + j) * inner;
            out.extend(base..base + inner);
        }
    }
    Ok(out)
}

/// MXNet `take`: `a`'s slices along `axis` at the indices, read by `mode`; the output
/// is `a.shape[..axis] + indices.shape + a.shape[axis + 1..]`.
pub fn take(a: &Array, idx: &Array, axis: i64, mode: IndexMode) -> KResult<Array> {
    let sources = take_sources(&a.shape, idx, axis, mode)?;
    let ax = resolve_axis("take", axis, a.rank())?;
    let mut shape = a.shape[..ax].to_vec();
    shape.extend_from_slice(&idx.shape);
    shape.extend_from_slice(&a.shape[ax + 1..]);
    Array::new(shape, sources.iter().map(|&s| a.data[s]).collect())
}

/// The offset in data (of shape `x`) of every element of `pick`'s output: one per
/// position of the other axes, the index (of as many elements) read by `mode`.
pub fn pick_sources(x: &[usize], idx: &Array, axis: i64, mode: IndexMode) -> KResult<Vec<usize>> {
    const OP: &str = "pick";
    let (outer, size, inner) = around_read_axis(OP, x, axis)?;
    if idx.len() != outer * inner {
        return Err(KernelError::new(
            OP,
            format!(
                "index {:?} has {} elements, expected {}",
                idx.shape,
                idx.len(),
                outer * inner
            ),
        ));
    }
    let mut out = Vec::with_capacity(idx.len());
    for o in 0..outer {
        for i in 0..inner {
            let j = mode_index(idx.data[o * inner + i], size, mode);
            out.push((o * size + j) * inner + i);
        }
    }
    Ok(out)
}

/// MXNet `pick`: one element along `axis` per position of the other axes; the axis is
/// dropped (a 1-D input gives shape (1)) or kept at 1.
pub fn pick(x: &Array, idx: &Array, axis: i64, keepdims: bool, mode: IndexMode) -> KResult<Array> {
    let sources = pick_sources(&x.shape, idx, axis, mode)?;
    let a = resolve_axis("pick", axis, x.rank())?;
    let mut shape = x.shape.clone();
    if keepdims {
        shape[a] = 1;
    } else {
        shape.remove(a);
        if shape.is_empty() {
            shape.push(1);
        }
    }
    Array::new(shape, sources.iter().map(|&s| x.data[s]).collect())
}

/// The offset in data (of shape `x`) of every element of `gather_nd`'s output, and the
/// output's shape: `indices.shape[1..] + x[M..]` for indices of shape (M, …).
pub fn gather_nd_sources(x: &[usize], idx: &Array) -> KResult<(Vec<usize>, Vec<usize>)> {
    const OP: &str = "gather_nd";
    let (m, rest) = match idx.shape.split_first() {
        Some((&m, rest)) if idx.rank() >= 2 && (1..=x.len()).contains(&m) => (m, rest),
        _ => {
            return Err(KernelError::new(
                OP,
                format!("indices {:?} do not address data {x:?}", idx.shape),
            ))
        }
    };
    if x[..m].contains(&0) {
        return Err(KernelError::new(
            OP,
            format!("data {x:?} has an empty axis"),
        ));
    }
    let columns: usize = rest.iter().product();
    let inner: usize = x[m..].iter().product();
    let st = strides(x);
    let mut shape = rest.to_vec();
    shape.extend_from_slice(&x[m..]);
    let mut out = Vec::with_capacity(element_count(&shape)?);
    for c in 0..columns {
        let base: usize = (0..m)
            .map(|j| gather_nd_index(idx.data[j * columns + c], x[j]) * st[j])
            .sum();
        out.extend(base..base + inner);
    }
    Ok((out, shape))
}

/// MXNet `gather_nd`: see [`gather_nd_sources`] and [`gather_nd_index`].
pub fn gather_nd(x: &Array, idx: &Array) -> KResult<Array> {
    let (sources, shape) = gather_nd_sources(&x.shape, idx)?;
    Array::new(shape, sources.iter().map(|&s| x.data[s]).collect())
}

/// MXNet `one_hot`: `indices.shape + (depth,)`, `on` at the index truncated toward zero
/// and `off` elsewhere; an index outside [0, depth) (or NaN, or infinite) gives a row of
/// `off`, as MXNet's kernel skips it.
pub fn one_hot(idx: &Array, depth: usize, on: f64, off: f64) -> KResult<Array> {
    if depth == 0 {
        return Err(KernelError::new("one_hot", "depth is 0"));
    }
    let mut shape = idx.shape.clone();
    shape.push(depth);
    let mut data = vec![off; element_count(&shape)?];
    for (i, &v) in idx.data.iter().enumerate() {
        let t = v.trunc();
        if (0.0..depth as f64).contains(&t) {
            data[i * depth + t as usize] = on;
        }
    }
    Array::new(shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_truncated_then_clipped_or_wrapped_as_mxnet() {
        let vals = [-4.0, -1.5, -0.5, 0.7, 2.9, 3.0, 5.0, f64::NAN];
        let clip: Vec<usize> = vals
            .iter()
            .map(|&v| mode_index(v, 3, IndexMode::Clip))
            .collect();
        assert_eq!(clip, vec![0, 0, 0, 0, 2, 2, 2, 0]);
        let wrap: Vec<usize> = vals
            .iter()
            .map(|&v| mode_index(v, 3, IndexMode::Wrap))
            .collect();
        assert_eq!(wrap, vec![2, 2, 0, 0, 2, 0, 2, 0]);
        // gather_nd adds the size before truncating: -0.5 on 2 reads 1, -1.5 reads 0.
        let g: Vec<usize> = [-2.0, -1.5, -0.5, 0.0, 1.0, 1.7, -3.0]
            .iter()
            .map(|&v| gather_nd_index(v, 2))
            .collect();
        assert_eq!(g, vec![0, 0, 1, 0, 1, 1, 0]);
    }

    #[test]
    fn take_pick_gather_nd_and_one_hot_shapes_and_values() {
        let a = Array::new(vec![3, 2], (0..6).map(f64::from).collect()).unwrap();
        let idx = Array::new(vec![2, 2], vec![2.0, -1.0, 0.5, 7.0]).unwrap();
        let t = take(&a, &idx, 0, IndexMode::Wrap).unwrap();
        assert_eq!(t.shape, vec![2, 2, 2]);
        assert_eq!(t.data, vec![4.0, 5.0, 4.0, 5.0, 0.0, 1.0, 2.0, 3.0]);
        let t = take(&a, &Array::vector(&[1.0, 9.0]), -1, IndexMode::Clip).unwrap();
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.data, vec![1.0, 1.0, 3.0, 3.0, 5.0, 5.0]);
        assert!(take(&a, &idx, 2, IndexMode::Clip).is_err());

        let p = pick(
            &a,
            &Array::vector(&[1.0, 0.0, -1.0]),
            -1,
            false,
            IndexMode::Wrap,
        )
        .unwrap();
        assert_eq!((p.shape.clone(), p.data), (vec![3], vec![1.0, 2.0, 5.0]));
        let p = pick(&a, &Array::vector(&[2.0, 0.0]), 0, true, IndexMode::Clip).unwrap();
        assert_eq!((p.shape.clone(), p.data), (vec![1, 2], vec![4.0, 1.0]));
        assert!(pick(&a, &Array::vector(&[1.0]), 1, false, IndexMode::Clip).is_err());

        let g = gather_nd(
            &a,
            &Array::new(vec![2, 2], vec![2.0, -3.0, 1.0, -1.0]).unwrap(),
        )
        .unwrap();
        assert_eq!((g.shape.clone(), g.data), (vec![2], vec![5.0, 1.0]));
        let g = gather_nd(&a, &Array::new(vec![1, 1], vec![-1.0]).unwrap()).unwrap();
        assert_eq!((g.shape.clone(), g.data), (vec![1, 2], vec![4.0, 5.0]));
        assert!(gather_nd(&a, &Array::vector(&[1.0])).is_err());
        assert!(gather_nd(&a, &Array::zeros(vec![3, 1]).unwrap()).is_err());

        let o = one_hot(
            &Array::vector(&[-0.5, 2.9, 3.0, -1.0, f64::NAN]),
            3,
            2.0,
            -1.0,
        )
        .unwrap();
        assert_eq!(o.shape, vec![5, 3]);
        assert_eq!(
            o.data,
            vec![
                2.0, -1.0, -1.0, -1.0, -1.0, 2.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0,
                -1.0
            ]
        );
        assert!(one_hot(&Array::vector(&[1.0]), 0, 1.0, 0.0).is_err());
    }
}
