//! Operators that move or copy elements without arithmetic on them: Reshape, Flatten,
//! expand_dims, squeeze, Concat, SwapAxis, transpose, slice, slice_axis, SliceChannel,
//! stack, Pad, tile, repeat, the broadcasts, and the constant fills
//! (MXNet 1.9.1).

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::array::{element_count, indices, strides};
use super::{resolve_axis, Array, KResult, KernelError};
use crate::ops::shape::{sliced_shape, Slice, SliceAxis, Strided};

/// The output shape of MXNet `Reshape` with `shape = codes`, as MXNet 1.9.1's
/// `InferReshapeShape` computes it. The codes, read left to right with a cursor on the
/// input dims:
/// * `d > 0`: the dim `d` (the cursor moves past one input dim);
/// * `0`: copy the input dim at the cursor;
/// * `−1`: inferred from the element count (at most one; the cursor moves past one
///   input dim);
/// * `−2`: copy all the remaining input dims;
/// * `−3`: the product of the next two input dims;
/// * `−4, a, b`: split the input dim at the cursor into `a` and `b`, one of which may be
///   −1.
///
/// With `reverse` both the input dims and the codes are reversed first, processed as
/// above, and the result is reversed back, so `0` copies from the right.
/// The element count must be unchanged.
///
/// MXNet writes the inferred `−1` dim at the output position equal to the **code's**
/// position. After a `−4` (three codes, two dims) or a `−2` that copies other than one
/// dim those positions differ, and MXNet 1.9.1 then produces a shape with a different
/// element count and corrupts its heap (`(2, 3, 4)` with `(−2, −1)` gives
/// `(2, 1, 4, 1)` and aborts with "double free or corruption"). Such codes are refused
/// here.
pub fn reshape_shape(input: &[usize], codes: &[i64], reverse: bool) -> KResult<Vec<usize>> {
    const OP: &str = "Reshape";
    let err = |reason: String| KernelError::new(OP, reason);
    let to_dim = |v: i64| usize::try_from(v).map_err(|_| err(format!("dim {v} is negative")));
    let mut dims = input.to_vec();
    let mut codes = codes.to_vec();
    if reverse {
        dims.reverse();
        codes.reverse();
    }
    let mut out: Vec<usize> = Vec::with_capacity(codes.len() + dims.len());
    let mut src = 0usize;
    let mut inferred: Option<usize> = None;
    let mut i = 0;
    while i < codes.len() {
        match codes[i] {
            0 => {
                let d = dims.get(src).ok_or_else(|| {
                    err(format!("code 0 at position {i} has no input dim to copy"))
                })?;
                out.push(*d);
                src += 1;
            }
            -1 => {
                if inferred.is_some() {
                    return Err(err("more than one -1".into()));
                }
                if out.len() != i {
                    return Err(err(format!(
                        "-1 at code position {i} would be output dim {}: MXNet 1.9.1 writes the inferred dim at position {i} and corrupts its heap",
                        out.len()
                    )));
                }
                inferred = Some(out.len());
                out.push(1);
                src += 1;
            }
            -2 => {
                while src < dims.len() {
                    out.push(dims[src]);
                    src += 1;
                }
            }
            -3 => {
                if src + 1 >= dims.len() {
                    return Err(err(format!(
                        "code -3 at position {i} needs two input dims, {} are left",
                        dims.len().saturating_sub(src)
                    )));
                }
                out.push(
                    dims[src]
                        .checked_mul(dims[src + 1])
                        .ok_or_else(|| err("merged dim overflows".into()))?,
                );
                src += 2;
            }
            -4 => {
                if i + 2 >= codes.len() {
                    return Err(err(format!(
                        "code -4 at position {i} must be followed by two dims"
                    )));
                }
                let d0 = *dims.get(src).ok_or_else(|| {
                    err(format!("code -4 at position {i} has no input dim to split"))
                })?;
                src += 1;
                let (a, b) = (codes[i + 1], codes[i + 2]);
                i += 2;
                let (d1, d2) = match (a, b) {
                    (-1, -1) => return Err(err("split dims cannot both be -1".into())),
                    (-1, b) if b > 0 => {
                        let b = to_dim(b)?;
                        (d0 / b, b)
                    }
                    (a, -1) if a > 0 => {
                        let a = to_dim(a)?;
                        (a, d0 / a)
                    }
                    (a, b) if a > 0 && b > 0 => (to_dim(a)?, to_dim(b)?),
                    (a, b) => {
                        return Err(err(format!("split dims ({a}, {b}) must be positive or -1")))
                    }
                };
                if d1.checked_mul(d2) != Some(d0) {
                    return Err(err(format!(
                        "split dims {d1}, {d2} do not divide the input dim {d0}"
                    )));
                }
                out.push(d1);
                out.push(d2);
            }
            d if d > 0 => {
                out.push(to_dim(d)?);
                src += 1;
            }
            d => return Err(err(format!("code {d} is not a reshape code"))),
        }
        i += 1;
    }
    let total = element_count(input)?;
    if let Some(at) = inferred {
        let known = element_count(&out)?;
        if known == 0 {
            return Err(err(format!(
                "cannot infer -1: the other dims of {out:?} hold no elements"
            )));
        }
        out[at] = total / known;
    }
    if reverse {
        out.reverse();
    }
    if element_count(&out)? != total {
        return Err(err(format!(
            "shape {out:?} does not hold the {total} elements of {input:?}"
        )));
    }
    Ok(out)
}

/// MXNet `Reshape` (the values keep their row-major order).
pub fn reshape(x: &Array, codes: &[i64], reverse: bool) -> KResult<Array> {
    x.reshaped(reshape_shape(&x.shape, codes, reverse)?)
}

/// MXNet `Flatten`: (N, product of the other dims).
pub fn flatten(x: &Array) -> KResult<Array> {
    if x.rank() == 0 {
        return Err(KernelError::new("Flatten", "cannot flatten a rank-0 array"));
    }
    let n = x.shape[0];
    let rest = x.shape[1..].iter().product();
    x.reshaped(vec![n, rest])
}

/// MXNet `Concat` (and `_rnn_param_concat`): joins along `axis` (MXNet's default 1 for
/// Concat, 0 for `_rnn_param_concat`); all other dims must agree.
pub fn concat(inputs: &[&Array], axis: i64) -> KResult<Array> {
    const OP: &str = "Concat";
    let first = inputs
        .first()
        .ok_or_else(|| KernelError::new(OP, "needs at least one input"))?;
    let a = resolve_axis(OP, axis, first.rank())?;
    let mut shape = first.shape.clone();
    shape[a] = 0;
    for (i, x) in inputs.iter().enumerate() {
        let agrees = x.rank() == first.rank()
            && x.shape
                .iter()
                .zip(&first.shape)
                .enumerate()
                .all(|(d, (p, q))| d == a || p == q);
        if !agrees {
            return Err(KernelError::new(
                OP,
                format!(
                    "input {i} has shape {:?}, which does not match {:?} outside axis {a}",
                    x.shape, first.shape
                ),
            ));
        }
        shape[a] += x.shape[a];
    }
    let outer: usize = shape[..a].iter().product();
    let mut data = Vec::with_capacity(element_count(&shape)?);
    for o in 0..outer {
        for x in inputs {
            let chunk: usize = x.shape[a..].iter().product();
            data.extend_from_slice(&x.data[o * chunk..(o + 1) * chunk]);
        }
    }
    Array::new(shape, data)
}

/// A copy of `x` with its axes permuted: output axis `i` is input axis `perm[i]`.
fn permute(x: &Array, perm: &[usize]) -> KResult<Array> {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let st = strides(&x.shape);
    let mut out = Array::zeros(shape.clone())?;
    for (flat, idx) in indices(&shape).enumerate() {
        let off: usize = idx.iter().zip(perm).map(|(&i, &p)| i * st[p]).sum();
        out.data[flat] = x.data[off];
    }
    Ok(out)
}

/// MXNet `SwapAxis`: exchanges axes `dim1` and `dim2` (MXNet's defaults are both 0).
pub fn swap_axes(x: &Array, dim1: i64, dim2: i64) -> KResult<Array> {
    let a = resolve_axis("SwapAxis", dim1, x.rank())?;
    let b = resolve_axis("SwapAxis", dim2, x.rank())?;
    let mut perm: Vec<usize> = (0..x.rank()).collect();
    perm.swap(a, b);
    permute(x, &perm)
}

/// MXNet `transpose`: output axis `i` is input axis `axes[i]`; no axes reverses them.
/// MXNet 1.9.1 refuses negative axes here, and so does this.
pub fn transpose(x: &Array, axes: &[i64]) -> KResult<Array> {
    const OP: &str = "transpose";
    if axes.is_empty() {
        let perm: Vec<usize> = (0..x.rank()).rev().collect();
        return permute(x, &perm);
    }
    if axes.len() != x.rank() {
        return Err(KernelError::new(
            OP,
            format!("axes {axes:?} for an input of rank {}", x.rank()),
        ));
    }
    let mut perm = Vec::with_capacity(axes.len());
    for &a in axes {
        let p = usize::try_from(a)
            .ok()
            .filter(|p| *p < x.rank() && !perm.contains(p))
            .ok_or_else(|| KernelError::new(OP, format!("axes {axes:?} are no permutation")))?;
        perm.push(p);
    }
    permute(x, &perm)
}

/// MXNet `expand_dims`: a new axis of size 1 at `axis` (`-rank-1 <= axis <= rank`).
pub fn expand_dims(x: &Array, axis: i64) -> KResult<Array> {
    let at = resolve_axis("expand_dims", axis, x.rank() + 1)?;
    let mut shape = x.shape.clone();
    shape.insert(at, 1);
    x.reshaped(shape)
}

/// MXNet `squeeze`: the axes listed (each of size 1), or every axis of size 1, removed;
/// removing all leaves shape (1).
pub fn squeeze(x: &Array, axes: Option<&[i64]>) -> KResult<Array> {
    const OP: &str = "squeeze";
    let gone: Vec<usize> = match axes {
        None => (0..x.rank()).filter(|&i| x.shape[i] == 1).collect(),
        Some(list) => {
            let mut gone = Vec::new();
            for &a in list {
                let i = resolve_axis(OP, a, x.rank())?;
                if x.shape[i] != 1 || gone.contains(&i) {
                    return Err(KernelError::new(OP, format!("cannot squeeze axis {a}")));
                }
                gone.push(i);
            }
            gone
        }
    };
    let mut shape: Vec<usize> = (0..x.rank())
        .filter(|i| !gone.contains(i))
        .map(|i| x.shape[i])
        .collect();
    if shape.is_empty() {
        shape.push(1);
    }
    x.reshaped(shape)
}

/// MXNet `slice` (1.9.1's clamping of begin and end; see [`Slice::ranges`]).
pub fn slice(
    x: &Array,
    begin: &[Option<i64>],
    end: &[Option<i64>],
    step: &[Option<i64>],
) -> KResult<Array> {
    let op = Slice {
        begin: begin.to_vec(),
        end: end.to_vec(),
        step: step.iter().map(|s| s.unwrap_or(1)).collect(),
    };
    let ranges = op
        .ranges(&x.shape)
        .map_err(|e| KernelError::new("slice", e))?;
    strided(x, &ranges)
}

/// MXNet `slice_axis`.
pub fn slice_axis(x: &Array, axis: i64, begin: i64, end: Option<i64>) -> KResult<Array> {
    let ranges = SliceAxis { axis, begin, end }
        .ranges(&x.shape)
        .map_err(|e| KernelError::new("slice_axis", e))?;
    strided(x, &ranges)
}

/// The elements of `x` that `ranges` (one per axis) pick, in order.
pub fn strided(x: &Array, ranges: &[Strided]) -> KResult<Array> {
    check_ranges(&x.shape, ranges)?;
    let shape = sliced_shape(ranges);
    let mut data = Vec::with_capacity(element_count(&shape)?);
    data.extend(picked_offsets(&x.shape, ranges).map(|off| x.data[off]));
    Array::new(shape, data)
}

/// The flat offsets in an array of shape `input` of the elements `ranges` pick, in the
/// order of the slice's own elements.
fn picked_offsets<'r>(input: &[usize], ranges: &'r [Strided]) -> impl Iterator<Item = usize> + 'r {
    let st = strides(input);
    indices(&sliced_shape(ranges)).map(move |idx| {
        idx.iter()
            .zip(ranges)
            .zip(&st)
            .map(|((&i, r), &s)| r.index(i) * s)
            .sum()
    })
}

/// The gradient of [`strided`]: `grad` (the picked elements' gradients) put back where
/// they were picked from, zeros elsewhere, in an array of shape `input`.
pub fn strided_scatter(grad: &Array, ranges: &[Strided], input: &[usize]) -> KResult<Array> {
    check_ranges(input, ranges)?;
    let shape = sliced_shape(ranges);
    if grad.shape != shape {
        return Err(KernelError::new(
            "slice",
            format!(
                "gradient of shape {:?} for a slice of shape {shape:?}",
                grad.shape
            ),
        ));
    }
    let mut out = Array::zeros(input.to_vec())?;
    for (flat, off) in picked_offsets(input, ranges).enumerate() {
        out.data[off] = grad.data[flat];
    }
    Ok(out)
}

/// Every range lies in its axis (ranges made by `ranges()` do; this keeps a caller's
/// mistake from becoming an out-of-bounds index).
fn check_ranges(shape: &[usize], ranges: &[Strided]) -> KResult<()> {
    let fits = shape.len() == ranges.len()
        && shape.iter().zip(ranges).all(|(&d, r)| {
            r.len == 0
                || (r.start < d && {
                    let last = r.start as i64 + (r.len as i64 - 1) * r.step;
                    last >= 0 && (last as usize) < d
                })
        });
    if fits {
        Ok(())
    } else {
        Err(KernelError::new(
            "slice",
            format!("ranges {ranges:?} do not lie in {shape:?}"),
        ))
    }
}

/// MXNet `transpose` as a permutation (for the IR's resolved `perm`).
pub fn permuted(x: &Array, perm: &[usize]) -> KResult<Array> {
    if perm.len() != x.rank() || perm.iter().any(|&p| p >= x.rank()) {
        return Err(KernelError::new(
            "transpose",
            format!("perm {perm:?} for an input of rank {}", x.rank()),
        ));
    }
    permute(x, perm)
}

/// MXNet `SliceChannel` (`split`): `num_outputs` equal slices along `axis` (MXNet's
/// default 1); with `squeeze_axis` the axis, which must then have size 1 in each
/// slice, is removed.
pub fn split(x: &Array, axis: i64, num_outputs: usize, squeeze_axis: bool) -> KResult<Vec<Array>> {
    const OP: &str = "SliceChannel";
    let a = resolve_axis(OP, axis, x.rank())?;
    let d = x.shape[a];
    if num_outputs == 0 || !d.is_multiple_of(num_outputs) {
        return Err(KernelError::new(
            OP,
            format!("axis {a} of size {d} does not split into {num_outputs} equal parts"),
        ));
    }
    let part = d / num_outputs;
    if squeeze_axis && part != 1 {
        return Err(KernelError::new(
            OP,
            format!("squeeze_axis needs slices of size 1 on axis {a}, they have {part}"),
        ));
    }
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a + 1..].iter().product();
    let mut shape = x.shape.clone();
    shape[a] = part;
    (0..num_outputs)
        .map(|k| {
            let mut data = Vec::with_capacity(outer * part * inner);
            for o in 0..outer {
                let start = (o * d + k * part) * inner;
                data.extend_from_slice(&x.data[start..start + part * inner]);
            }
            let mut s = shape.clone();
            if squeeze_axis {
                s.remove(a);
            }
            Array::new(s, data)
        })
        .collect()
}

/// MXNet `stack`: joins arrays of one shape along a new axis `axis` (in [−(r+1), r],
/// MXNet's default 0).
pub fn stack(inputs: &[&Array], axis: i64) -> KResult<Array> {
    const OP: &str = "stack";
    let first = inputs
        .first()
        .ok_or_else(|| KernelError::new(OP, "needs at least one input"))?;
    let a = resolve_axis(OP, axis, first.rank() + 1)?;
    let mut expanded = Vec::with_capacity(inputs.len());
    for (i, x) in inputs.iter().enumerate() {
        if x.shape != first.shape {
            return Err(KernelError::new(
                OP,
                format!(
                    "input {i} has shape {:?}, input 0 {:?}",
                    x.shape, first.shape
                ),
            ));
        }
        let mut s = x.shape.clone();
        s.insert(a, 1);
        expanded.push(x.reshaped(s)?);
    }
    let refs: Vec<&Array> = expanded.iter().collect();
    concat(&refs, a as i64)
}

/// MXNet `Pad`'s `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// The value `constant_value` (MXNet's default 0).
    Constant,
    /// Repeats the edge element.
    Edge,
    /// Mirrors about the edge element, which is not repeated (NumPy's `reflect`); each
    /// pad must be smaller than its dim.
    Reflect,
}

/// MXNet `Pad` with `pad_width` = (before₀, after₀, before₁, after₁, …), two values per
/// axis. MXNet itself accepts only 4-D and 5-D data with zero pads on the first two
/// axes; this reference pads any axis.
pub fn pad(x: &Array, mode: PadMode, pad_width: &[usize], value: f64) -> KResult<Array> {
    let (shape, sources) = pad_sources(&x.shape, mode, pad_width)?;
    let data = sources
        .iter()
        .map(|s| s.map_or(value, |off| x.data[off]))
        .collect();
    Array::new(shape, data)
}

/// The padded shape, and for each of its elements (row-major) the offset of the input
/// element it copies, or `None` where constant mode writes the value. [`pad`] and its
/// gradient (which sends each element's gradient back to its source) share it.
pub fn pad_sources(
    in_shape: &[usize],
    mode: PadMode,
    pad_width: &[usize],
) -> KResult<(Vec<usize>, Vec<Option<usize>>)> {
    const OP: &str = "Pad";
    let rank = in_shape.len();
    if pad_width.len() != 2 * rank {
        return Err(KernelError::new(
            OP,
            format!(
                "pad_width has {} values; data of rank {} needs {}",
                pad_width.len(),
                rank,
                2 * rank
            ),
        ));
    }
    let mut shape = Vec::with_capacity(rank);
    for (i, &d) in in_shape.iter().enumerate() {
        let (before, after) = (pad_width[2 * i], pad_width[2 * i + 1]);
        if mode == PadMode::Reflect && (before >= d || after >= d) && (before, after) != (0, 0) {
            return Err(KernelError::new(
                OP,
                format!(
                    "reflect pads ({before}, {after}) must be smaller than axis {i} of size {d}"
                ),
            ));
        }
        if mode == PadMode::Edge && d == 0 && (before, after) != (0, 0) {
            return Err(KernelError::new(
                OP,
                format!("axis {i} is empty: no edge to repeat"),
            ));
        }
        shape.push(
            d.checked_add(before)
                .and_then(|v| v.checked_add(after))
                .ok_or_else(|| KernelError::new(OP, "padded size overflows"))?,
        );
    }
    element_count(&shape)?;
    let st = strides(in_shape);
    let mut sources = Vec::with_capacity(shape.iter().product());
    for idx in indices(&shape) {
        let mut off = 0;
        let mut outside = false;
        for (i, &j) in idx.iter().enumerate() {
            let d = in_shape[i];
            let p = j as i64 - pad_width[2 * i] as i64;
            let last = d as i64 - 1;
            let src = if (0..d as i64).contains(&p) {
                p
            } else {
                match mode {
                    PadMode::Constant => {
                        outside = true;
                        break;
                    }
                    PadMode::Edge => p.clamp(0, last),
                    PadMode::Reflect => {
                        if p < 0 {
                            -p
                        } else {
                            2 * last - p
                        }
                    }
                }
            };
            off += src as usize * st[i];
        }
        sources.push((!outside).then_some(off));
    }
    Ok((shape, sources))
}

/// MXNet `_zeros` / `_ones` / `_full`: an array of `value`.
pub fn fill(shape: &[usize], value: f64) -> KResult<Array> {
    Array::full(shape.to_vec(), value)
}

/// MXNet `_arange` and `_contrib_arange_like`: element `i` of `shape` (row-major) is
/// `value(i)`.
pub fn arange(shape: &[usize], value: impl Fn(usize) -> f64) -> KResult<Array> {
    let n = super::array::element_count(shape)?;
    Ok(Array {
        shape: shape.to_vec(),
        data: (0..n).map(value).collect(),
    })
}

/// MXNet `shape_array`: the dims of `x` as a 1-D array (int64 in MXNet).
pub fn shape_array(x: &Array) -> KResult<Array> {
    let dims: Vec<f64> = x.shape.iter().map(|&d| d as f64).collect();
    Array::new(vec![dims.len()], dims)
}

/// MXNet `size_array`: the element count of `x` as a 1-element array (int64 in MXNet).
pub fn size_array(x: &Array) -> KResult<Array> {
    Array::new(vec![1], vec![x.len() as f64])
}

/// MXNet `ones_like`.
pub fn ones_like(x: &Array) -> KResult<Array> {
    Array::full(x.shape.clone(), 1.0)
}

/// MXNet `zeros_like`.
pub fn zeros_like(x: &Array) -> KResult<Array> {
    Array::full(x.shape.clone(), 0.0)
}

/// The elements of `x`, read as shape `from` (its shape with leading 1s, at most), at
/// every index of `to`: output index `i` on axis `a` reads input index `source(a, i)`.
fn gather(
    x: &Array,
    from: &[usize],
    to: &[usize],
    source: impl Fn(usize, usize) -> usize,
) -> KResult<Array> {
    let st = strides(from);
    let mut data = Vec::with_capacity(element_count(to)?);
    for idx in indices(to) {
        let off: usize = idx
            .iter()
            .enumerate()
            .map(|(a, &i)| source(a, i) * st[a])
            .sum();
        data.push(x.data[off]);
    }
    Array::new(to.to_vec(), data)
}

/// `shape` with leading 1s to rank `rank`.
fn lead_ones(shape: &[usize], rank: usize) -> Vec<usize> {
    let mut out = vec![1; rank.saturating_sub(shape.len())];
    out.extend_from_slice(shape);
    out
}

/// MXNet `tile`: `x` repeated `reps[i]` times along each axis. As MXNet 1.9.1's
/// `TileOpShape`: reps shorter than the rank are padded with leading 1s, an input of lower
/// rank than the reps gets leading axes of 1, and no reps is the identity. A rep of 0
/// (MXNet: an empty tensor) is refused.
pub fn tile(x: &Array, reps: &[usize]) -> KResult<Array> {
    const OP: &str = "tile";
    if reps.is_empty() {
        return Ok(x.clone());
    }
    if reps.contains(&0) {
        return Err(KernelError::new(OP, format!("reps {reps:?} hold a 0")));
    }
    let rank = x.rank().max(reps.len());
    let (from, reps) = (lead_ones(&x.shape, rank), lead_ones(reps, rank));
    let to = from
        .iter()
        .zip(&reps)
        .map(|(d, r)| d.checked_mul(*r))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| KernelError::new(OP, format!("reps {reps:?} overflow")))?;
    gather(x, &from, &to, |a, i| i % from[a])
}

/// MXNet `repeat`: each element `repeats` times in a row along `axis` (negative counts
/// from the end), or along the flattened input with no axis (a 1-D result). A count of 0
/// (MXNet: an empty 1-D tensor) is refused.
/// `x` with the order of its elements reversed along each of `axes`.
pub fn reverse(x: &Array, axes: &[usize]) -> KResult<Array> {
    if let Some(&axis) = axes.iter().find(|&&a| a >= x.rank()) {
        return Err(KernelError::new(
            "reverse",
            format!("axis {axis} of a {}-d array", x.rank()),
        ));
    }
    let shape = x.shape.clone();
    gather(x, &shape, &shape, |a, i| {
        match (axes.contains(&a), shape.get(a)) {
            (true, Some(&n)) => n - 1 - i,
            _ => i,
        }
    })
}

pub fn repeat(x: &Array, repeats: usize, axis: Option<i64>) -> KResult<Array> {
    const OP: &str = "repeat";
    if repeats == 0 {
        return Err(KernelError::new(OP, "repeats is 0"));
    }
    let (from, a) = match axis {
        None => (vec![x.len()], 0),
        Some(axis) => (x.shape.clone(), resolve_axis(OP, axis, x.rank())?),
    };
    let mut to = from.clone();
    to[a] = to[a]
        .checked_mul(repeats)
        .ok_or_else(|| KernelError::new(OP, "the repeated axis overflows"))?;
    gather(x, &from, &to, |ax, i| if ax == a { i / repeats } else { i })
}

/// `x` broadcast to `shape` of the same rank: each axis must be of size 1 or already the
/// target's; none may be 0.
pub fn broadcast_to(x: &Array, shape: &[usize]) -> KResult<Array> {
    let fits = shape.len() == x.rank()
        && x.shape
            .iter()
            .zip(shape)
            .all(|(&d, &t)| t > 0 && (d == t || d == 1));
    if !fits {
        return Err(KernelError::new(
            "broadcast_to",
            format!("{:?} does not broadcast to {shape:?}", x.shape),
        ));
    }
    gather(
        x,
        &x.shape,
        shape,
        |a, i| if x.shape[a] == 1 { 0 } else { i },
    )
}

/// MXNet `broadcast_axis` (`broadcast_axes`): axis `axes[k]` (of size 1) broadcast to
/// `sizes[k]`, in order, as MXNet 1.9.1's `BroadcastAxesShape` checks them (an axis
/// listed twice must still be 1 the second time). MXNet 1.9.1 refuses negative axes
/// here, and so does this.
pub fn broadcast_axis(x: &Array, axes: &[i64], sizes: &[usize]) -> KResult<Array> {
    const OP: &str = "broadcast_axis";
    if axes.len() != sizes.len() {
        return Err(KernelError::new(
            OP,
            format!("axis {axes:?} and size {sizes:?} differ in length"),
        ));
    }
    let mut shape = x.shape.clone();
    for (&axis, &size) in axes.iter().zip(sizes) {
        if axis < 0 {
            return Err(KernelError::new(OP, format!("axis {axis} is negative")));
        }
        let a = resolve_axis(OP, axis, x.rank())?;
        if shape[a] != 1 {
            return Err(KernelError::new(
                OP,
                format!("axis {axis} of {shape:?} is not of size 1"),
            ));
        }
        shape[a] = size;
    }
    broadcast_to(x, &shape)
}

/// MXNet `broadcast_to`: `shape` has the input's rank; a 0 keeps the input's dim.
pub fn broadcast_to_shape(x: &Array, shape: &[i64]) -> KResult<Array> {
    const OP: &str = "broadcast_to";
    if shape.len() != x.rank() {
        return Err(KernelError::new(
            OP,
            format!("shape {shape:?} for an input of rank {}", x.rank()),
        ));
    }
    let target = shape
        .iter()
        .zip(&x.shape)
        .map(|(&t, &d)| match t {
            0 => Ok(d),
            t => usize::try_from(t)
                .map_err(|_| KernelError::new(OP, format!("shape {shape:?} is negative"))),
        })
        .collect::<KResult<Vec<usize>>>()?;
    broadcast_to(x, &target)
}

/// MXNet `broadcast_like`: without both `lhs_axes` and `rhs_axes` (MXNet 1.9.1 ignores
/// one given alone), `x` broadcast to `like`'s shape, of the same rank; with both, axis
/// `lhs_axes[k]` of `x` (of size 1) broadcast to dim `rhs_axes[k]` of `like`, negatives
/// counting from each one's end. Only `like`'s shape is read.
pub fn broadcast_like(
    x: &Array,
    like: &[usize],
    lhs_axes: Option<&[i64]>,
    rhs_axes: Option<&[i64]>,
) -> KResult<Array> {
    const OP: &str = "broadcast_like";
    let (Some(lhs), Some(rhs)) = (lhs_axes, rhs_axes) else {
        return broadcast_to(x, like);
    };
    if lhs.len() != rhs.len() || lhs.is_empty() {
        return Err(KernelError::new(
            OP,
            format!("lhs_axes {lhs:?} and rhs_axes {rhs:?} must be as long, and not empty"),
        ));
    }
    let mut shape = x.shape.clone();
    for (&l, &r) in lhs.iter().zip(rhs) {
        let from = resolve_axis(OP, l, x.rank())?;
        let to = resolve_axis(OP, r, like.len())?;
        if x.shape[from] != 1 {
            return Err(KernelError::new(
                OP,
                format!("lhs axis {l} of {:?} is not of size 1", x.shape),
            ));
        }
        shape[from] = like[to];
    }
    broadcast_to(x, &shape)
}

/// MXNet `slice_like`: along each of `axes` (negatives count from `x`'s end; none listed
/// is every axis, and `like` must then have `x`'s rank), the first `like[axis]` elements;
/// `like` (the second input's shape) must reach the axis and be no longer than `x` there.
/// Only `like`'s shape is read.
pub fn slice_like(x: &Array, like: &[usize], axes: &[i64]) -> KResult<Array> {
    const OP: &str = "slice_like";
    let listed: Vec<usize> = if axes.is_empty() {
        if like.len() != x.rank() {
            return Err(KernelError::new(
                OP,
                format!("{like:?} and {:?} differ in rank", x.shape),
            ));
        }
        (0..x.rank()).collect()
    } else {
        axes.iter()
            .map(|&a| resolve_axis(OP, a, x.rank()))
            .collect::<KResult<_>>()?
    };
    let mut ranges: Vec<Strided> = x.shape.iter().map(|&d| Strided::whole(d)).collect();
    for a in listed {
        let n = *like.get(a).ok_or_else(|| {
            KernelError::new(OP, format!("axis {a} is past the second input's {like:?}"))
        })?;
        if n == 0 || n > x.shape[a] {
            return Err(KernelError::new(
                OP,
                format!("axis {a}: {n} elements of {:?}", x.shape),
            ));
        }
        ranges[a] = Strided {
            start: 0,
            step: 1,
            len: n,
        };
    }
    strided(x, &ranges)
}

/// One side's range of MXNet `reshape_like`: `begin` (default 0) and `end` (default the
/// rank), negatives counting from the end; 0 <= begin < end <= rank.
pub fn reshape_like_range(
    begin: Option<i64>,
    end: Option<i64>,
    rank: usize,
) -> Result<(usize, usize), String> {
    let r = i64::try_from(rank).map_err(|_| "rank too large".to_string())?;
    let b = begin.map_or(0, |b| if b < 0 { b + r } else { b });
    let e = end.map_or(r, |e| if e < 0 { e + r } else { e });
    if b < 0 || e > r || b >= e {
        return Err(format!(
            "begin {begin:?} and end {end:?} are not a non-empty range of {rank} axes"
        ));
    }
    Ok((b as usize, e as usize))
}

/// MXNet `reshape_like`: `x`'s dims `lhs` replaced by `like`'s dims `rhs` (see
/// [`reshape_like_range`]); the element count must not change. Only `like`'s shape is
/// read.
pub fn reshape_like(
    x: &Array,
    like: &[usize],
    lhs: (Option<i64>, Option<i64>),
    rhs: (Option<i64>, Option<i64>),
) -> KResult<Array> {
    const OP: &str = "reshape_like";
    let (lb, le) =
        reshape_like_range(lhs.0, lhs.1, x.rank()).map_err(|e| KernelError::new(OP, e))?;
    let (rb, re) =
        reshape_like_range(rhs.0, rhs.1, like.len()).map_err(|e| KernelError::new(OP, e))?;
    let mut shape = x.shape[..lb].to_vec();
    shape.extend_from_slice(&like[rb..re]);
    shape.extend_from_slice(&x.shape[le..]);
    if element_count(&shape)? != x.len() {
        return Err(KernelError::new(
            OP,
            format!("{:?} has another element count than {shape:?}", x.shape),
        ));
    }
    x.reshaped(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::ramp;

    #[test]
    fn reshape_codes_on_mxnets_documented_examples() {
        // The examples of MXNet's Reshape documentation (mxnet-formats.md §3.3).
        let cases: &[(&[usize], &[i64], &[usize])] = &[
            (&[2, 3, 4], &[4, 0, 2], &[4, 3, 2]),
            (&[2, 3, 4], &[2, 0, 0], &[2, 3, 4]),
            (&[2, 3, 4], &[6, 1, -1], &[6, 1, 4]),
            (&[2, 3, 4], &[3, -1, 8], &[3, 1, 8]),
            (&[2, 3, 4], &[-1], &[24]),
            (&[2, 3, 4], &[-2], &[2, 3, 4]),
            (&[2, 3, 4], &[2, -2], &[2, 3, 4]),
            (&[2, 3, 4], &[-2, 1, 1], &[2, 3, 4, 1, 1]),
            (&[2, 3, 4], &[-3, 4], &[6, 4]),
            (&[2, 3, 4, 5], &[-3, -3], &[6, 20]),
            (&[2, 3, 4], &[0, -3], &[2, 12]),
            (&[2, 3, 4], &[-3, -2], &[6, 4]),
            (&[2, 3, 4], &[-4, 1, 2, -2], &[1, 2, 3, 4]),
            (&[2, 3, 4], &[2, -4, -1, 3, -2], &[2, 1, 3, 4]),
        ];
        for (input, codes, want) in cases {
            assert_eq!(
                reshape_shape(input, codes, false).unwrap(),
                *want,
                "{input:?} {codes:?}"
            );
        }
        // reverse: (10, 5, 4) with (-1, 0) → (50, 4); without reverse (40, 5)
        assert_eq!(
            reshape_shape(&[10, 5, 4], &[-1, 0], false).unwrap(),
            vec![40, 5]
        );
        assert_eq!(
            reshape_shape(&[10, 5, 4], &[-1, 0], true).unwrap(),
            vec![50, 4]
        );
    }

    #[test]
    fn reshape_refuses_what_mxnet_refuses() {
        assert!(reshape_shape(&[2, 3, 4], &[-1, -1], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[5, -1], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[-4, -1, -1, -2], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[-4, 3, 1, -2], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[0, 0, 0, 0], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[-3, -3], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[-5], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[7], false).is_err());
        // A -1 after codes that change the position count (MXNet corrupts its heap).
        assert!(reshape_shape(&[2, 3, 4], &[-2, -1], false).is_err());
        assert!(reshape_shape(&[2, 3, 4], &[0, -2, -1], false).is_err());
        assert!(reshape_shape(&[6, 3, 2], &[-4, -1, 2, 0, -1], false).is_err());
        assert!(reshape_shape(&[4, 3], &[-4, 2, -1, -1], false).is_err());
        // ... but not after codes that keep it, nor before them.
        assert_eq!(
            reshape_shape(&[2, 3, 4], &[-3, -1], false).unwrap(),
            vec![6, 4]
        );
        assert_eq!(
            reshape_shape(&[2, 3, 4], &[0, -1, -2], false).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(
            reshape_shape(&[2, 6, 4], &[-1, -4, 3, 2], false).unwrap(),
            vec![8, 3, 2]
        );
        assert_eq!(
            reshape_shape(&[2, 3, 4], &[-2, -1], true).unwrap(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn concat_split_stack_round_trip() {
        let x = ramp(vec![2, 6, 3]);
        let parts = split(&x, 1, 3, false).unwrap();
        assert_eq!(parts[1].shape, vec![2, 2, 3]);
        assert_eq!(parts[1].data[..3], [6.0, 7.0, 8.0]);
        let refs: Vec<&Array> = parts.iter().collect();
        assert_eq!(concat(&refs, 1).unwrap(), x);
        assert_eq!(concat(&refs, -2).unwrap(), x);
        let singles = split(&x, -1, 3, true).unwrap();
        assert_eq!(singles[2].shape, vec![2, 6]);
        let refs: Vec<&Array> = singles.iter().collect();
        assert_eq!(stack(&refs, -1).unwrap(), x);
        assert_eq!(stack(&refs, 2).unwrap(), x);
        assert!(split(&x, 1, 4, false).is_err());
        assert!(split(&x, 1, 3, true).is_err());
        assert!(concat(&[&x, &ramp(vec![2, 6, 2])], 1).is_err());
        assert!(stack(&refs, 3).is_err());
    }

    #[test]
    fn swap_axes_moves_elements() {
        let x = ramp(vec![2, 3, 4]);
        let y = swap_axes(&x, 0, 2).unwrap();
        assert_eq!(y.shape, vec![4, 3, 2]);
        assert_eq!(y.get(&[3, 1, 0]).unwrap(), x.get(&[0, 1, 3]).unwrap());
        assert_eq!(swap_axes(&y, -1, 0).unwrap(), x);
    }

    #[test]
    fn slice_like_and_reshape_like_read_only_the_shape() {
        let x = ramp(vec![2, 3, 4]);
        let y = slice_like(&x, &[9, 2, 3], &[1, -1]).unwrap();
        assert_eq!(y.shape, vec![2, 2, 3]);
        assert_eq!(y.data[..3], [0.0, 1.0, 2.0]);
        assert_eq!(y.data[3..6], [4.0, 5.0, 6.0]);
        assert_eq!(
            slice_like(&x, &[1, 3, 4], &[]).unwrap().shape,
            vec![1, 3, 4]
        );
        assert!(slice_like(&x, &[1, 3], &[]).is_err());
        assert!(slice_like(&x, &[1, 3], &[2]).is_err());
        assert!(slice_like(&x, &[3], &[0]).is_err());
        assert!(slice_like(&x, &[2], &[-4]).is_err());

        let y = reshape_like(&x, &[7, 6, 2], (Some(1), None), (Some(-2), None)).unwrap();
        assert_eq!((y.shape.clone(), &y.data), (vec![2, 6, 2], &x.data));
        assert_eq!(
            reshape_like(&x, &[24], (None, None), (None, None))
                .unwrap()
                .shape,
            vec![24]
        );
        assert!(reshape_like(&x, &[5], (None, None), (None, None)).is_err());
        assert!(reshape_like(&x, &[24], (Some(1), Some(1)), (None, None)).is_err());
        assert!(reshape_like(&x, &[24], (Some(-4), None), (None, None)).is_err());
        assert!(reshape_like(&x, &[24], (None, Some(4)), (None, None)).is_err());
        assert_eq!(reshape_like_range(Some(-2), Some(-1), 3), Ok((1, 2)));
    }

    #[test]
    fn tile_repeat_and_broadcasts_refuse_empty_and_mismatched_shapes() {
        let x = ramp(vec![2, 1]);
        assert!(tile(&x, &[2, 0]).is_err());
        assert_eq!(tile(&x, &[]).unwrap(), x);
        assert!(repeat(&x, 0, None).is_err());
        assert!(repeat(&x, 2, Some(2)).is_err());
        assert!(broadcast_to(&x, &[2, 0]).is_err());
        assert!(broadcast_to(&x, &[4, 3]).is_err());
        assert!(broadcast_to(&x, &[2, 3, 1]).is_err());
        assert!(broadcast_axis(&x, &[0], &[3]).is_err());
        assert!(broadcast_axis(&x, &[1, 1], &[3, 2]).is_err());
        assert!(broadcast_axis(&x, &[1], &[]).is_err());
        assert!(broadcast_axis(&x, &[-1], &[3]).is_err());
        assert!(broadcast_to_shape(&x, &[0, -1]).is_err());
        assert!(broadcast_like(&x, &[2, 3, 4], None, None).is_err());
        assert!(broadcast_like(&x, &[5], Some(&[0]), Some(&[0])).is_err());
        assert!(broadcast_like(&x, &[5], Some(&[]), Some(&[])).is_err());
        // One of the two axis lists alone is ignored, as MXNet 1.9.1 ignores it.
        assert_eq!(
            broadcast_like(&x, &[2, 3], Some(&[1]), None).unwrap(),
            broadcast_to(&x, &[2, 3]).unwrap()
        );
    }

    #[test]
    fn pad_modes() {
        let x = Array::new(vec![1, 1, 1, 3], vec![1.0, 2.0, 3.0]).unwrap();
        let w = [0, 0, 0, 0, 0, 0, 2, 2];
        let c = pad(&x, PadMode::Constant, &w, 9.0).unwrap();
        assert_eq!(c.data, vec![9.0, 9.0, 1.0, 2.0, 3.0, 9.0, 9.0]);
        let e = pad(&x, PadMode::Edge, &w, 0.0).unwrap();
        assert_eq!(e.data, vec![1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]);
        let r = pad(&x, PadMode::Reflect, &w, 0.0).unwrap();
        assert_eq!(r.data, vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        assert!(pad(&x, PadMode::Reflect, &[0, 0, 0, 0, 0, 0, 3, 0], 0.0).is_err());
        assert!(pad(&x, PadMode::Constant, &[0, 0], 0.0).is_err());
        let h = pad(&x, PadMode::Edge, &[0, 0, 0, 0, 1, 1, 0, 0], 0.0).unwrap();
        assert_eq!(h.shape, vec![1, 1, 3, 3]);
        assert_eq!(h.data[6..], [1.0, 2.0, 3.0]);
    }
}
