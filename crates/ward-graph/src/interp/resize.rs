//! Resizing kernels on NCHW data: MXNet 1.9.1's `_contrib_AdaptiveAvgPooling2D`,
//! `_contrib_BilinearResize2D` and `UpSampling` (nearest).
//!
//! All three are separable linear maps: output `(o_h, o_w)` of a plane is
//! `Σ A_h[o_h][i] · A_w[o_w][j] · x[i][j]`, with one sparse row of weights per output
//! index ([`AxisMap`]). The kernels apply the map; the backends build the same weights
//! (as matrices for ONNX `MatMul`) and the gradient applies the transposed map
//! ([`separable_transposed`]).

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them, and axis maps whose input indices are below the input length by construction; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::{Array, KResult, KernelError};

/// One axis of a separable map: for each output index, the input indices it reads and
/// their weights.
pub type AxisMap = Vec<Vec<(usize, f64)>>;

/// MXNet's adaptive pooling windows: output `k` of `output` averages inputs
/// ⌊k·I/O⌋ to ⌈(k+1)·I/O⌉ (exclusive), the quotients taken in `f32` as MXNet's
/// `START_IND`/`END_IND` do.
pub fn adaptive_map(input: usize, output: usize) -> AxisMap {
    (0..output)
        .map(|k| {
            let start = ((k as u64 * input as u64) as f32 / output as f32).floor() as usize;
            let end = (((k as u64 + 1) * input as u64) as f32 / output as f32).ceil() as usize;
            let end = end.min(input).max(start + 1);
            let start = start.min(end - 1);
            let w = 1.0 / (end - start) as f64;
            (start..end).map(|i| (i, w)).collect()
        })
        .collect()
}

/// MXNet 1.9.1's bilinear taps on one axis (`area_pixel_compute_scale` and
/// `area_pixel_compute_source_index`): the scale is `(I − 1)/(O − 1)` with
/// `align_corners`, else `I/O`, and 0 when `O` is 1; output `o` reads the input at
/// `r = scale·o` with `align_corners`, else at `max(0, scale·(o + ½) − ½)`; it takes
/// `(1 − λ)·x[⌊r⌋] + λ·x[⌊r⌋ + 1]` with `λ = r − ⌊r⌋`, the second index clamped to the
/// last input. Equal lengths copy. The coordinates are rounded to `f32`, as MXNet's are.
pub fn bilinear_map(input: usize, output: usize, align_corners: bool) -> AxisMap {
    if input == output {
        return (0..output).map(|o| vec![(o, 1.0)]).collect();
    }
    let scale: f32 = if output > 1 {
        if align_corners {
            (input - 1) as f32 / (output - 1) as f32
        } else {
            input as f32 / output as f32
        }
    } else {
        0.0
    };
    (0..output)
        .map(|o| {
            let r = if align_corners {
                scale * o as f32
            } else {
                // MXNet adds ½ to the integer index in double, then rounds to float.
                ((f64::from(scale) * (o as f64 + 0.5) - 0.5) as f32).max(0.0)
            };
            let lo = (r as usize).min(input - 1);
            let hi = if lo < input - 1 { lo + 1 } else { lo };
            let lambda = f64::from(r - lo as f32);
            if hi == lo {
                vec![(lo, 1.0)]
            } else {
                vec![(lo, 1.0 - lambda), (hi, lambda)]
            }
        })
        .collect()
}

/// Nearest-neighbour repetition: output `o` copies input `o / scale`.
pub fn nearest_map(input: usize, scale: usize) -> AxisMap {
    (0..input * scale).map(|o| vec![(o / scale, 1.0)]).collect()
}

/// Applies `rows` (height) and `cols` (width) to every plane of NCHW `x`.
pub fn separable(op: &'static str, x: &Array, rows: &AxisMap, cols: &AxisMap) -> KResult<Array> {
    x.expect_rank(op, "data", 4)?;
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    check_map(op, rows, h)?;
    check_map(op, cols, w)?;
    let (oh, ow) = (rows.len(), cols.len());
    let mut out = Array::zeros(vec![n, c, oh, ow])?;
    for p in 0..n * c {
        let src = &x.data[p * h * w..(p + 1) * h * w];
        let dst = &mut out.data[p * oh * ow..(p + 1) * oh * ow];
        for (a, row) in rows.iter().enumerate() {
            for (b, col) in cols.iter().enumerate() {
                let mut acc = 0.0;
                for &(i, wi) in row {
                    let mut inner = 0.0;
                    for &(j, wj) in col {
                        inner += wj * src[i * w + j];
                    }
                    acc += wi * inner;
                }
                dst[a * ow + b] = acc;
            }
        }
    }
    Ok(out)
}

/// The transposed map: the gradient of [`separable`] for data of shape `x_shape`.
pub fn separable_transposed(
    op: &'static str,
    g: &Array,
    rows: &AxisMap,
    cols: &AxisMap,
    x_shape: &[usize],
) -> KResult<Array> {
    g.expect_rank(op, "gradient", 4)?;
    let &[n, c, h, w] = x_shape else {
        return Err(KernelError::new(
            op,
            format!("data {x_shape:?} is not NCHW"),
        ));
    };
    check_map(op, rows, h)?;
    check_map(op, cols, w)?;
    let (oh, ow) = (rows.len(), cols.len());
    g.expect_shape(op, "gradient", &[n, c, oh, ow])?;
    let mut dx = Array::zeros(x_shape.to_vec())?;
    for p in 0..n * c {
        let src = &g.data[p * oh * ow..(p + 1) * oh * ow];
        let dst = &mut dx.data[p * h * w..(p + 1) * h * w];
        for (a, row) in rows.iter().enumerate() {
            for (b, col) in cols.iter().enumerate() {
                let gv = src[a * ow + b];
                for &(i, wi) in row {
                    for &(j, wj) in col {
                        dst[i * w + j] += wi * wj * gv;
                    }
                }
            }
        }
    }
    Ok(dx)
}

fn check_map(op: &'static str, map: &AxisMap, input: usize) -> KResult<()> {
    if map.iter().flatten().any(|&(i, _)| i >= input) {
        return Err(KernelError::new(
            op,
            format!("a resize map reads past an axis of {input}"),
        ));
    }
    Ok(())
}

/// MXNet `_contrib_AdaptiveAvgPooling2D` to `oh` × `ow` (see [`adaptive_map`]).
pub fn adaptive_avg_pool2d(x: &Array, oh: usize, ow: usize) -> KResult<Array> {
    const OP: &str = "AdaptiveAvgPooling2D";
    x.expect_rank(OP, "data", 4)?;
    if x.shape[2] == 0 || x.shape[3] == 0 || oh == 0 || ow == 0 {
        return Err(KernelError::new(OP, "an empty spatial axis"));
    }
    separable(
        OP,
        x,
        &adaptive_map(x.shape[2], oh),
        &adaptive_map(x.shape[3], ow),
    )
}

/// MXNet `_contrib_BilinearResize2D` to `oh` × `ow` (see [`bilinear_map`]).
pub fn bilinear_resize2d(x: &Array, oh: usize, ow: usize, align_corners: bool) -> KResult<Array> {
    const OP: &str = "BilinearResize2D";
    x.expect_rank(OP, "data", 4)?;
    if x.shape[2] == 0 || x.shape[3] == 0 || oh == 0 || ow == 0 {
        return Err(KernelError::new(OP, "an empty spatial axis"));
    }
    separable(
        OP,
        x,
        &bilinear_map(x.shape[2], oh, align_corners),
        &bilinear_map(x.shape[3], ow, align_corners),
    )
}

/// MXNet `UpSampling` with `sample_type='nearest'`: each input repeated by its own scale
/// (`scales`, one per input, from the op's shape rule), concatenated along the channels
/// or summed.
pub fn upsampling_nearest(xs: &[&Array], scales: &[usize], sum: bool) -> KResult<Array> {
    const OP: &str = "UpSampling";
    if xs.len() != scales.len() || xs.is_empty() {
        return Err(KernelError::new(OP, "one scale per input"));
    }
    let mut parts = Vec::with_capacity(xs.len());
    for (x, &s) in xs.iter().zip(scales) {
        x.expect_rank(OP, "data", 4)?;
        parts.push(separable(
            OP,
            x,
            &nearest_map(x.shape[2], s),
            &nearest_map(x.shape[3], s),
        )?);
    }
    if sum {
        let mut acc = parts.remove(0);
        for p in &parts {
            acc.expect_shape(OP, "upsampled input", &p.shape)?;
            for (a, b) in acc.data.iter_mut().zip(&p.data) {
                *a += b;
            }
        }
        Ok(acc)
    } else {
        let refs: Vec<&Array> = parts.iter().collect();
        super::shape::concat(&refs, 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::interp::test_util::{assert_close, pseudo_random};

    #[test]
    fn adaptive_windows_overlap_as_mxnet_s() {
        let m = adaptive_map(5, 3);
        let spans: Vec<Vec<usize>> = m.iter().map(|r| r.iter().map(|p| p.0).collect()).collect();
        assert_eq!(spans, vec![vec![0, 1], vec![1, 2, 3], vec![3, 4]]);
        // Upsampling repeats.
        let m = adaptive_map(2, 5);
        let spans: Vec<Vec<usize>> = m.iter().map(|r| r.iter().map(|p| p.0).collect()).collect();
        assert_eq!(spans, vec![vec![0], vec![0], vec![0, 1], vec![1], vec![1]]);
    }

    #[test]
    fn bilinear_corners_align_or_not() {
        let x = Array::new(vec![1, 1, 1, 2], vec![0.0, 1.0]).unwrap();
        let y = bilinear_resize2d(&x, 1, 3, true).unwrap();
        assert_close(
            &y,
            &Array::new(vec![1, 1, 1, 3], vec![0.0, 0.5, 1.0]).unwrap(),
            1e-7,
        );
        let y = bilinear_resize2d(&x, 1, 4, false).unwrap();
        assert_close(
            &y,
            &Array::new(vec![1, 1, 1, 4], vec![0.0, 0.25, 0.75, 1.0]).unwrap(),
            1e-7,
        );
    }

    #[test]
    fn the_transposed_map_is_the_adjoint() {
        let x = pseudo_random(vec![2, 3, 5, 4], 1);
        let rows = bilinear_map(5, 7, false);
        let cols = adaptive_map(4, 3);
        let y = separable("t", &x, &rows, &cols).unwrap();
        let g = pseudo_random(y.shape.clone(), 2);
        let dx = separable_transposed("t", &g, &rows, &cols, &x.shape).unwrap();
        let lhs: f64 = y.data.iter().zip(&g.data).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.data.iter().zip(&dx.data).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-9, "{lhs} vs {rhs}");
    }

    #[test]
    fn nearest_upsampling_concatenates_or_sums() {
        let a = pseudo_random(vec![1, 2, 2, 3], 3);
        let b = pseudo_random(vec![1, 2, 4, 6], 4);
        let y = upsampling_nearest(&[&a, &b], &[2, 1], false).unwrap();
        assert_eq!(y.shape, vec![1, 4, 4, 6]);
        assert_eq!(y.get(&[0, 1, 3, 5]).unwrap(), a.get(&[0, 1, 1, 2]).unwrap());
        let s = upsampling_nearest(&[&a, &b], &[2, 1], true).unwrap();
        let want = a.get(&[0, 0, 1, 0]).unwrap() + b.get(&[0, 0, 2, 1]).unwrap();
        assert!((s.get(&[0, 0, 2, 1]).unwrap() - want).abs() < 1e-12);
    }
}
