//! Resizing (bilinear resize, nearest upsampling, and the adaptive average pooling of
//! `pool`): each is a separable linear map whose weights the reference interpreter
//! defines ([`ward_graph::interp::resize`]), known in full at lowering because the shapes
//! are. Each axis is lowered on its own from those same weights:
//!
//! * an identity map (equal sizes, one weight of 1 each) is no node;
//! * a map whose dense matrix has at most [`MAX_DENSE_MAP`] entries is a `MatMul` with
//!   that matrix as a constant (`x · Aᵀ` for the width, `A · x` for the height);
//! * a larger map with at most [`MAX_GATHER_TAPS`] inputs per output is a weighted sum of
//!   `Gather`s, one per tap, so that no lowering allocates a matrix a hostile size
//!   controls;
//! * anything else is refused, naming the sizes.

use ward_graph::interp::resize::{bilinear_map, nearest_map, AxisMap};
use ward_graph::ops::resize::{BilinearResize, ResizeTarget, UpSampling};

use super::builder::{attr_int, At, Builder, R};

/// Most entries of a map's dense matrix lowered as a `MatMul` (16 MiB of f32).
pub(super) const MAX_DENSE_MAP: usize = 1 << 22;
/// Most inputs one output reads in a map lowered as `Gather`s.
pub(super) const MAX_GATHER_TAPS: usize = 4;

fn is_identity(map: &AxisMap, input: usize) -> bool {
    map.len() == input
        && map
            .iter()
            .enumerate()
            .all(|(o, row)| row.as_slice() == [(o, 1.0)])
}

/// Applies `map` along `axis` (2: height, 3: width) of the NCHW value `x` of spatial
/// length `input` on that axis; returns the result's name.
pub(super) fn along(
    b: &mut Builder<'_>,
    x: String,
    map: &AxisMap,
    input: usize,
    axis: usize,
    hint: &str,
) -> R<String> {
    if is_identity(map, input) {
        return Ok(x);
    }
    let output = map.len();
    let dense = output.checked_mul(input).filter(|&n| n <= MAX_DENSE_MAP);
    if let Some(n) = dense {
        // Row-major A (output × input), or Aᵀ (input × output) for the width.
        let mut m = vec![0f32; n];
        for (o, row) in map.iter().enumerate() {
            for &(i, w) in row {
                let at = if axis == 3 {
                    i * output + o
                } else {
                    o * input + i
                };
                if let Some(slot) = m.get_mut(at) {
                    *slot += w as f32;
                }
            }
        }
        return Ok(if axis == 3 {
            let a = b.const_f32(&format!("{hint}/map_t"), &[input, output], &m);
            b.op("MatMul", vec![x, a], vec![], hint)
        } else {
            let a = b.const_f32(&format!("{hint}/map"), &[output, input], &m);
            b.op("MatMul", vec![a, x], vec![], hint)
        });
    }
    let taps = map.iter().map(Vec::len).max().unwrap_or(0);
    if taps > MAX_GATHER_TAPS {
        return Err(format!(
            "a resize from {input} to {output} reading {taps} inputs per output has no lowering within the limits ({MAX_DENSE_MAP} matrix entries or {MAX_GATHER_TAPS} inputs per output)"
        ));
    }
    let weight_dims: Vec<usize> = if axis == 3 {
        vec![output]
    } else {
        vec![output, 1]
    };
    let mut sum: Option<String> = None;
    for k in 0..taps {
        let (idx, w): (Vec<i64>, Vec<f32>) = map
            .iter()
            .map(|row| row.get(k).map_or((0, 0.0), |&(i, w)| (i as i64, w as f32)))
            .unzip();
        let idx = b.const_i64(&format!("{hint}/idx{k}"), &idx);
        let g = b.op(
            "Gather",
            vec![x.clone(), idx],
            vec![attr_int("axis", axis as i64)],
            &format!("{hint}/tap{k}"),
        );
        let w = b.const_f32(&format!("{hint}/w{k}"), &weight_dims, &w);
        let term = b.op("Mul", vec![g, w], vec![], &format!("{hint}/term{k}"));
        sum = Some(match sum {
            None => term,
            Some(s) => b.op("Add", vec![s, term], vec![], &format!("{hint}/sum{k}")),
        });
    }
    sum.ok_or_else(|| "an empty resize map".to_string())
}

/// Both axes of `x` (spatial `h` × `w`), then an `Identity` into `out`.
pub(super) fn separable(
    b: &mut Builder<'_>,
    at: &At<'_>,
    x: String,
    (h, w): (usize, usize),
    (rows, cols): (&AxisMap, &AxisMap),
    out: String,
    tag: &str,
) -> R<()> {
    let y = along(b, x, cols, w, 3, &at.hint(&format!("{tag}w")))?;
    let y = along(b, y, rows, h, 2, &at.hint(&format!("{tag}h")))?;
    b.push("Identity", vec![y], vec![out], vec![]);
    Ok(())
}

fn spatial(shape: &[usize]) -> R<(usize, usize)> {
    match shape {
        [_, _, h, w] => Ok((*h, *w)),
        s => Err(format!("data {s:?} must be NCHW")),
    }
}

pub(super) fn bilinear_resize(b: &mut Builder<'_>, at: &At<'_>, op: &BilinearResize) -> R<()> {
    let (h, w) = spatial(&at.xs)?;
    let like = if op.target == ResizeTarget::Like {
        Some(b.shape(at.source(1)?)?)
    } else {
        None
    };
    let (oh, ow) = op.output_size(h, w, like.as_deref())?;
    let rows = bilinear_map(h, oh, op.align_corners);
    let cols = bilinear_map(w, ow, op.align_corners);
    separable(b, at, at.input(0)?, (h, w), (&rows, &cols), at.out()?, "")
}

pub(super) fn upsampling(b: &mut Builder<'_>, at: &At<'_>, op: &UpSampling) -> R<()> {
    let shapes = (0..at.node.inputs.len())
        .map(|i| b.shape(at.source(i)?))
        .collect::<R<Vec<_>>>()?;
    let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
    let (scales, _) = op.scales(&refs)?;
    let mut parts = Vec::with_capacity(shapes.len());
    for (i, (shape, &s)) in shapes.iter().zip(&scales).enumerate() {
        let (h, w) = spatial(shape)?;
        let part = b.fresh(&at.hint(&format!("up{i}")));
        let tag = format!("{i}");
        separable(
            b,
            at,
            at.input(i)?,
            (h, w),
            (&nearest_map(h, s), &nearest_map(w, s)),
            part.clone(),
            &tag,
        )?;
        parts.push(part);
    }
    let op_type = if op.sum { "Sum" } else { "Concat" };
    let attrs = if op.sum {
        vec![]
    } else {
        vec![attr_int("axis", 1)]
    };
    b.push(op_type, parts, vec![at.out()?], attrs);
    Ok(())
}
