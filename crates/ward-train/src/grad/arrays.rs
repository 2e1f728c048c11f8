//! Array helpers the rules share: element-wise combination, summing a broadcast gradient
//! back to its operand's shape, and the (outer, axis, inner) view of an axis.
//!
//! Every helper checks lengths and returns an error in words rather than indexing out of
//! range: the rules run on shapes the forward pass produced, so an error here is a bug in
//! a rule, reported with the node by [`super::backward`].

use ward_graph::interp::Array;

/// `sum += g`, element by element (the shapes must agree).
pub fn add_into(sum: &mut Array, g: &Array) -> Result<(), String> {
    if sum.shape != g.shape {
        return Err(format!(
            "gradients of shapes {:?} and {:?} meet at one value",
            sum.shape, g.shape
        ));
    }
    for (s, v) in sum.data.iter_mut().zip(&g.data) {
        *s += v;
    }
    Ok(())
}

/// `f(a, b)` element by element over two arrays of one shape, with `a`'s shape.
pub fn zip(a: &Array, b: &Array, f: impl Fn(f64, f64) -> f64) -> Result<Array, String> {
    if a.data.len() != b.data.len() {
        return Err(format!(
            "arrays of {} and {} elements combined element-wise",
            a.data.len(),
            b.data.len()
        ));
    }
    Ok(Array {
        shape: a.shape.clone(),
        data: a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect(),
    })
}

/// `f(a, b, c)` element by element over three arrays of one shape, with `a`'s shape.
pub fn zip3(
    a: &Array,
    b: &Array,
    c: &Array,
    f: impl Fn(f64, f64, f64) -> f64,
) -> Result<Array, String> {
    if a.data.len() != b.data.len() || a.data.len() != c.data.len() {
        return Err("arrays of different sizes combined element-wise".into());
    }
    Ok(Array {
        shape: a.shape.clone(),
        data: a
            .data
            .iter()
            .zip(&b.data)
            .zip(&c.data)
            .map(|((&x, &y), &z)| f(x, y, z))
            .collect(),
    })
}

/// `g` reshaped to `shape` (same number of elements).
pub fn reshaped(g: &Array, shape: &[usize]) -> Result<Array, String> {
    g.reshaped(shape.to_vec()).map_err(|e| e.to_string())
}

/// The offset into an operand of `shape` broadcast (right-aligned, dims of 1 repeated)
/// to `out_shape`, for each element of the output in row-major order.
pub fn broadcast_offsets(shape: &[usize], out_shape: &[usize]) -> Result<Vec<usize>, String> {
    if shape.len() > out_shape.len() {
        return Err(format!("{shape:?} does not broadcast to {out_shape:?}"));
    }
    let lead = out_shape.len() - shape.len();
    // The operand's stride for each output axis (0 where it is broadcast).
    let mut strides = vec![0usize; out_shape.len()];
    let mut stride = 1usize;
    for (axis, &d) in shape.iter().enumerate().rev() {
        let out_d = out_shape.get(axis + lead).copied().unwrap_or(0);
        if d == out_d {
            if let Some(s) = strides.get_mut(axis + lead) {
                *s = stride;
            }
        } else if d != 1 {
            return Err(format!("{shape:?} does not broadcast to {out_shape:?}"));
        }
        stride = stride.saturating_mul(d);
    }
    let total: usize = out_shape.iter().product();
    let mut offsets = Vec::with_capacity(total);
    let mut index = vec![0usize; out_shape.len()];
    for _ in 0..total {
        offsets.push(index.iter().zip(&strides).map(|(i, s)| i * s).sum());
        // Next row-major index.
        for (i, &d) in index.iter_mut().zip(out_shape).rev() {
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
    Ok(offsets)
}

/// Sums `g` (of the broadcast output's shape) back onto an operand of `shape`.
pub fn sum_to_shape(g: &Array, shape: &[usize]) -> Result<Array, String> {
    if g.shape == shape {
        return Ok(g.clone());
    }
    let offsets = broadcast_offsets(shape, &g.shape)?;
    let mut out = Array::zeros(shape.to_vec()).map_err(|e| e.to_string())?;
    for (&o, &v) in offsets.iter().zip(&g.data) {
        if let Some(slot) = out.data.get_mut(o) {
            *slot += v;
        }
    }
    Ok(out)
}

/// The (outer, size, inner) geometry of `axis` in `shape`.
pub fn around(shape: &[usize], axis: usize) -> Result<(usize, usize, usize), String> {
    let size = *shape
        .get(axis)
        .ok_or_else(|| format!("axis {axis} is out of range for {shape:?}"))?;
    let outer = shape.iter().take(axis).product();
    let inner = shape.iter().skip(axis + 1).product();
    Ok((outer, size, inner))
}

/// Resolves a possibly negative axis against `rank`.
pub fn axis(axis: i64, rank: usize) -> Result<usize, String> {
    ward_graph::interp::resolve_axis("gradient", axis, rank).map_err(|e| e.to_string())
}

/// The slice `[start, start + len)` of `a` along `axis`.
pub fn slice_axis(a: &Array, axis: usize, start: usize, len: usize) -> Result<Array, String> {
    let (outer, size, inner) = around(&a.shape, axis)?;
    if start + len > size {
        return Err(format!(
            "slice {start}..{} of an axis of {size}",
            start + len
        ));
    }
    let mut data = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let from = (o * size + start) * inner;
        data.extend_from_slice(
            a.data
                .get(from..from + len * inner)
                .ok_or("slice past the array's end")?,
        );
    }
    let mut shape = a.shape.clone();
    if let Some(d) = shape.get_mut(axis) {
        *d = len;
    }
    Array::new(shape, data).map_err(|e| e.to_string())
}

/// `parts` joined along `axis` (their other dims agree).
pub fn concat_axis(parts: &[Array], axis: usize) -> Result<Array, String> {
    let refs: Vec<&Array> = parts.iter().collect();
    ward_graph::interp::shape::concat(&refs, axis as i64).map_err(|e| e.to_string())
}

/// Zeros of `a`'s shape (a step function's gradient: zero even where the head is NaN).
pub(crate) fn zeros_like(a: &Array) -> Result<Array, String> {
    Array::zeros(a.shape.clone()).map_err(|e| e.to_string())
}
