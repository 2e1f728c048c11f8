//! Regions of interest: MXNet 1.9.1's `_contrib_ROIAlign`.
//!
//! [`roi_align_plan`] is where each roi's bilinear samples are computed, in float32 and
//! in MXNet's order of operations (its `pre_calc_for_bilinear_interpolate`), so that the
//! samples' positions and weights are MXNet's to the bit; the reference kernel here, the
//! tract kernel (`ward-exec`) and the gradient (`ward-train`) all read them from it, and
//! all refuse the same rows. What MXNet does with a row, and what ward does:
//!
//! - the batch index is truncated toward zero, as MXNet casts it (−0.5 reads image 0);
//!   one that is then negative is refused: MXNet writes a single 0 and leaves the rest
//!   of that roi's output as whatever its memory held; one past the batch is refused:
//!   MXNet reads outside the data. A NaN or infinite value anywhere in a row is refused
//!   (MXNet casts it to an integer, which C++ leaves undefined);
//! - a box of width or height below 1 (after scaling; a reversed box included) is
//!   stretched to 1 without `aligned`, as MXNet does; with `aligned` a width or height
//!   that is not positive is refused (MXNet's check aborts the process);
//! - a roi whose samples (bins times the grid of each) pass
//!   [`crate::limits::MAX_ROI_SAMPLES`] is refused (the adaptive grid grows with the box).
//!
//! A sample more than one pixel outside the plane has weight 0 but still reads the
//! plane's first element, as MXNet's does (0 · ∞ is NaN there too).

#![allow(
    clippy::indexing_slicing,
    reason = "the plan's offsets are checked against the plane when made; the kernel indexes arrays whose shapes infer_shapes checked"
)]

use super::{Array, KResult, KernelError};
use crate::limits::MAX_ROI_SAMPLES;
use crate::ops::roi::RoiAlign;

/// One bilinear sample of a bin: four offsets into an image's plane and their weights
/// (MXNet's `PreCalc`); `inside` is false for a sample more than a pixel outside the plane,
/// whose weights are 0 and which MXNet's backward skips.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tap {
    pub pos: [usize; 4],
    pub w: [f32; 4],
    pub inside: bool,
}

/// The samples of one roi: the image it reads, each bin's `grid` samples (bins in row
/// order, samples in row order within a bin) and the divisor of their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct RoiPlan {
    pub batch: usize,
    pub grid: usize,
    pub count: f32,
    pub taps: Vec<Tap>,
}

/// The samples of `row` (`[batch, x1, y1, x2, y2]`, as float32) over images of
/// `batch` planes of `height × width`; refuses the rows MXNet does not compute (see the
/// module's documentation).
pub fn roi_align_plan(
    op: &RoiAlign,
    batch: usize,
    height: usize,
    width: usize,
    row: &[f32],
) -> Result<RoiPlan, String> {
    let [b, x1, y1, x2, y2] = *row else {
        return Err(format!("a roi has {} values, not 5", row.len()));
    };
    if let Some(v) = row.iter().find(|v| !v.is_finite()) {
        return Err(format!("roi {row:?} holds {v}"));
    }
    let index = b.trunc();
    if index < 0.0 || index >= batch as f32 {
        return Err(format!(
            "roi {row:?} reads image {index} of a batch of {batch} (MXNet leaves a negative one's output unwritten and reads outside the data past the batch)"
        ));
    }
    let (h, w) = (height as f32, width as f32);
    if height == 0 || width == 0 || h as usize != height || w as usize != width {
        return Err(format!("a plane of {height} × {width}"));
    }
    let offset: f32 = if op.aligned { 0.5 } else { 0.0 };
    let scale = op.spatial_scale;
    let start_w = x1 * scale - offset;
    let start_h = y1 * scale - offset;
    let end_w = x2 * scale - offset;
    let end_h = y2 * scale - offset;
    let mut roi_w = end_w - start_w;
    let mut roi_h = end_h - start_h;
    if !(roi_w.is_finite() && roi_h.is_finite()) {
        return Err(format!("roi {row:?} is wider than float32 holds"));
    }
    if op.aligned {
        if roi_w <= 0.0 || roi_h <= 0.0 {
            return Err(format!(
                "roi {row:?} has a width or height that is not positive, which aligned ROIAlign refuses (MXNet aborts)"
            ));
        }
    } else {
        roi_w = roi_w.max(1.0);
        roi_h = roi_h.max(1.0);
    }
    let (ph, pw) = (op.pooled_height, op.pooled_width);
    let bin_h = roi_h / ph as f32;
    let bin_w = roi_w / pw as f32;
    let grid_of = |bin: f32| -> Result<usize, String> {
        match op.sample_ratio {
            Some(r) => Ok(r),
            None => {
                let g = bin.ceil();
                if g > MAX_ROI_SAMPLES as f32 {
                    Err(format!(
                        "roi {row:?} samples more than {MAX_ROI_SAMPLES} points per bin"
                    ))
                } else {
                    Ok(g as usize)
                }
            }
        }
    };
    let (grid_h, grid_w) = (grid_of(bin_h)?, grid_of(bin_w)?);
    let grid = grid_h
        .checked_mul(grid_w)
        .filter(|g| g.checked_mul(ph * pw).is_some_and(|n| n <= MAX_ROI_SAMPLES))
        .ok_or_else(|| {
            format!(
                "roi {row:?} takes {grid_h} × {grid_w} samples in each of {} bins, more than {MAX_ROI_SAMPLES}",
                ph * pw
            )
        })?;
    let mut taps = Vec::with_capacity(grid * ph * pw);
    for py in 0..ph {
        for px in 0..pw {
            for iy in 0..grid_h {
                let yy = start_h + py as f32 * bin_h + (iy as f32 + 0.5) * bin_h / grid_h as f32;
                for ix in 0..grid_w {
                    let xx =
                        start_w + px as f32 * bin_w + (ix as f32 + 0.5) * bin_w / grid_w as f32;
                    taps.push(sample(yy, xx, height, width));
                }
            }
        }
    }
    Ok(RoiPlan {
        batch: index as usize,
        grid,
        count: grid as f32,
        taps,
    })
}

/// MXNet's bilinear sample at (y, x) of a `height × width` plane (both nonzero).
fn sample(mut y: f32, mut x: f32, height: usize, width: usize) -> Tap {
    let (h, w) = (height as f32, width as f32);
    if y.is_nan() || x.is_nan() || y < -1.0 || y > h || x < -1.0 || x > w {
        return Tap {
            pos: [0; 4],
            w: [0.0; 4],
            inside: false,
        };
    }
    if y <= 0.0 {
        y = 0.0;
    }
    if x <= 0.0 {
        x = 0.0;
    }
    let mut y_low = y as usize;
    let mut x_low = x as usize;
    let y_high;
    let x_high;
    if y_low >= height - 1 {
        y_low = height - 1;
        y_high = y_low;
        y = y_low as f32;
    } else {
        y_high = y_low + 1;
    }
    if x_low >= width - 1 {
        x_low = width - 1;
        x_high = x_low;
        x = x_low as f32;
    } else {
        x_high = x_low + 1;
    }
    let ly = y - y_low as f32;
    let lx = x - x_low as f32;
    let hy = 1.0 - ly;
    let hx = 1.0 - lx;
    Tap {
        pos: [
            y_low * width + x_low,
            y_low * width + x_high,
            y_high * width + x_low,
            y_high * width + x_high,
        ],
        w: [hy * hx, hy * lx, ly * hx, ly * lx],
        inside: true,
    }
}

/// The data channel bin `bin` of output channel `c` reads: `c` itself, or with
/// `position_sensitive` channel `c · bins + bin`.
pub fn source_channel(op: &RoiAlign, c: usize, bin: usize) -> usize {
    if op.position_sensitive {
        c * op.pooled_height * op.pooled_width + bin
    } else {
        c
    }
}

/// The plans of every roi of `rois` (R, 5) over data of shape `x` (N, C, H, W).
pub fn roi_align_plans(op: &RoiAlign, x: &[usize], rois: &Array) -> KResult<Vec<RoiPlan>> {
    let err = |m: String| KernelError::new("roi_align", m);
    let [n, _, h, w] = *x else {
        return Err(err(format!("data {x:?} is not NCHW")));
    };
    let [r, 5] = *rois.shape.as_slice() else {
        return Err(err(format!("rois {:?} are not (R, 5)", rois.shape)));
    };
    (0..r)
        .map(|i| {
            let row: Vec<f32> = rois.data[i * 5..i * 5 + 5]
                .iter()
                .map(|&v| v as f32)
                .collect();
            roi_align_plan(op, n, h, w, &row).map_err(|m| err(format!("roi {i}: {m}")))
        })
        .collect()
}

/// MXNet `_contrib_ROIAlign` of NCHW `x` over `rois`, accumulated in f64.
pub fn roi_align(x: &Array, rois: &Array, op: &RoiAlign) -> KResult<Array> {
    let plans = roi_align_plans(op, &x.shape, rois)?;
    let [_, c_in, h, w] = *x.shape.as_slice() else {
        return Err(KernelError::new("roi_align", "data is not NCHW"));
    };
    let c_out = op
        .out_channels(c_in)
        .map_err(|m| KernelError::new("roi_align", m))?;
    let bins = op.pooled_height * op.pooled_width;
    let plane = h * w;
    let mut out = Vec::with_capacity(plans.len() * c_out * bins);
    for plan in &plans {
        for c in 0..c_out {
            for bin in 0..bins {
                let base = (plan.batch * c_in + source_channel(op, c, bin)) * plane;
                let d = &x.data[base..base + plane];
                let mut sum = 0.0f64;
                for t in &plan.taps[bin * plan.grid..(bin + 1) * plan.grid] {
                    for k in 0..4 {
                        sum += f64::from(t.w[k]) * d[t.pos[k]];
                    }
                }
                out.push(sum / f64::from(plan.count));
            }
        }
    }
    Array::new(
        vec![plans.len(), c_out, op.pooled_height, op.pooled_width],
        out,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn op(ratio: Option<usize>, aligned: bool) -> RoiAlign {
        RoiAlign {
            pooled_height: 2,
            pooled_width: 2,
            spatial_scale: 1.0,
            sample_ratio: ratio,
            position_sensitive: false,
            aligned,
        }
    }

    fn ramp() -> Array {
        Array::new(vec![2, 2, 4, 4], (0..64).map(f64::from).collect()).unwrap()
    }

    #[test]
    fn matches_mxnet_by_hand() {
        // MXNet 1.9.1: ROIAlign(arange(64).reshape(2,2,4,4), [[r, 0, 0, 2, 2]],
        // pooled_size=(2, 2), spatial_scale=1) for r = -0.5 (image 0) and 1.9 (image 1).
        let rois = Array::new(vec![2, 5], vec![-0.5, 0., 0., 2., 2., 1.9, 0., 0., 2., 2.]).unwrap();
        let y = roi_align(&ramp(), &rois, &op(None, false)).unwrap();
        assert_eq!(&y.data[..4], &[2.5, 3.5, 6.5, 7.5]);
        assert_eq!(&y.data[8..12], &[34.5, 35.5, 38.5, 39.5]);
        // A reversed box is stretched to 1 × 1: every sample is the corner (3, 3).
        let rois = Array::new(vec![1, 5], vec![0., 3., 3., 1., 1.]).unwrap();
        let y = roi_align(&ramp(), &rois, &op(None, false)).unwrap();
        assert_eq!(&y.data[..4], &[15.0; 4]);
    }

    #[test]
    fn refuses_the_rows_mxnet_does_not_compute() {
        let x = ramp();
        for (row, aligned, what) in [
            ([-1.0, 0., 0., 2., 2.], false, "image -1"),
            ([2.0, 0., 0., 2., 2.], false, "image 2"),
            ([f64::NAN, 0., 0., 2., 2.], false, "NaN"),
            ([0.0, 0., 0., f64::INFINITY, 2.], false, "inf"),
            ([0.0, 3., 3., 1., 1.], true, "not positive"),
            ([0.0, -3e38, 0., 3e38, 2.], false, "wider than"),
            ([0.0, 0., 0., 1e30, 2.], false, "samples more"),
        ] {
            let rois = Array::new(vec![1, 5], row.to_vec()).unwrap();
            let err = roi_align(&x, &rois, &op(None, aligned)).unwrap_err();
            assert!(err.to_string().contains(what), "{row:?}: {err}");
        }
        // A fixed grid samples a huge box without refusing it: outside is weight 0.
        let rois = Array::new(vec![1, 5], vec![0., 0., 0., 1e30, 2.]).unwrap();
        assert!(roi_align(&x, &rois, &op(Some(2), false)).is_ok());
    }
}
