//! Regions of interest: MXNet 1.9.1's `_contrib_ROIAlign` and `ROIPooling` (whose rows
//! are read by [`roi_pool_bins`]; see there).
//!
//! [`roi_align_plan`] is where each roi's bilinear samples are computed, in float32 and
//! in MXNet's order of operations (its `pre_calc_for_bilinear_interpolate`), so that the
//! samples' positions and weights are MXNet's to the bit; the reference kernel here, the
//! tract kernel (`ward-exec`) and the gradient (`ward-train`) all read them from it, and
//! all refuse the same rows. What MXNet does with a row, and what ward does:
//!
//! - the batch index is truncated toward zero, as MXNet casts it (−0.5 reads image 0);
//!   a roi whose index is then negative gives zeros: MXNet writes a single 0 and leaves
//!   the rest of that roi's output as whatever its memory held (zeros in a fresh
//!   buffer), and detectors pad their rois with −1 rows whose outputs they discard
//!   (GluonCV's Faster R-CNN with FPN), so refusing them would refuse the model. One past
//!   the batch is refused: MXNet reads outside the data. A NaN or infinite value anywhere
//!   in a row is refused (MXNet casts it to an integer, which C++ leaves undefined);
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
use crate::ops::roi::{RoiAlign, RoiPool};

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
    if index < 0.0 {
        // No samples: every bin is 0, and nothing flows back.
        return Ok(RoiPlan {
            batch: 0,
            grid: 0,
            count: 1.0,
            taps: Vec::new(),
        });
    }
    if index >= batch as f32 {
        return Err(format!(
            "roi {row:?} reads image {index} of a batch of {batch} (MXNet reads outside the data past the batch)"
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

/// The pixels one bin of a `ROIPooling` roi pools: rows `h0..h1`, columns `w0..w1` of its
/// image's plane (empty when the bin lies outside the plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBin {
    pub h0: usize,
    pub h1: usize,
    pub w0: usize,
    pub w1: usize,
}

/// Coordinates past which ward refuses a `ROIPooling` row: MXNet rounds each scaled
/// coordinate to a C `int`, which a larger one overflows.
const MAX_ROI_POOL_COORD: f32 = (1u32 << 30) as f32;

/// The image a `ROIPooling` row (`[batch, x1, y1, x2, y2]`, as float32) reads and its bins
/// in row order, or `None` for a batch index outside the batch, whose output MXNet 1.9.1
/// fills with 0 (after truncating it toward zero: −0.5 reads image 0). Each coordinate is
/// scaled and rounded half away from zero in float32; a reversed box is one pixel; bin
/// edges are `⌊i · bin⌋` and `⌈(i + 1) · bin⌉` pixels from the box's start, clamped to the
/// plane. A NaN or infinite value, or a coordinate past 2^30 pixels, is refused (MXNet
/// casts it to an `int`, which C++ leaves undefined).
pub fn roi_pool_bins(
    op: &RoiPool,
    batch: usize,
    height: usize,
    width: usize,
    row: &[f32],
) -> Result<Option<(usize, Vec<PoolBin>)>, String> {
    let [b, x1, y1, x2, y2] = *row else {
        return Err(format!("a roi has {} values, not 5", row.len()));
    };
    if let Some(v) = row.iter().find(|v| !v.is_finite()) {
        return Err(format!("roi {row:?} holds {v}"));
    }
    let index = b.trunc();
    if index < 0.0 || index >= batch as f32 {
        return Ok(None);
    }
    let pixel = |v: f32| -> Result<i64, String> {
        let p = (v * op.spatial_scale).round();
        if p.abs() > MAX_ROI_POOL_COORD {
            return Err(format!(
                "roi {row:?} has a coordinate past {MAX_ROI_POOL_COORD} pixels"
            ));
        }
        Ok(p as i64)
    };
    let (start_w, start_h, end_w, end_h) = (pixel(x1)?, pixel(y1)?, pixel(x2)?, pixel(y2)?);
    let roi_h = (end_h - start_h + 1).max(1);
    let roi_w = (end_w - start_w + 1).max(1);
    let (ph, pw) = (op.pooled_height, op.pooled_width);
    let bin_h = roi_h as f32 / ph as f32;
    let bin_w = roi_w as f32 / pw as f32;
    let clamp = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
    let mut bins = Vec::with_capacity(ph * pw);
    for py in 0..ph {
        let h0 = (py as f32 * bin_h).floor() as i64 + start_h;
        let h1 = ((py + 1) as f32 * bin_h).ceil() as i64 + start_h;
        for px in 0..pw {
            let w0 = (px as f32 * bin_w).floor() as i64 + start_w;
            let w1 = ((px + 1) as f32 * bin_w).ceil() as i64 + start_w;
            bins.push(PoolBin {
                h0: clamp(h0, height),
                h1: clamp(h1, height),
                w0: clamp(w0, width),
                w1: clamp(w1, width),
            });
        }
    }
    Ok(Some((index as usize, bins)))
}

/// MXNet's value of a bin none of whose pixels is greater than it: `-FLT_MAX` (so a bin of
/// NaN or −∞ only gives it too).
pub const ROI_POOL_FLOOR: f32 = -f32::MAX;

/// MXNet `ROIPooling` of NCHW `x` over `rois`, and for each output element the offset in
/// `x` of the pixel it took (MXNet's argmax: the first greatest in row order), `None`
/// where it took none (an empty bin, a roi outside the batch, a bin of NaN or −∞ only).
pub fn roi_pool_argmax(
    x: &Array,
    rois: &Array,
    op: &RoiPool,
) -> KResult<(Array, Vec<Option<usize>>)> {
    let err = |m: String| KernelError::new("roi_pool", m);
    let [n, c_in, h, w] = *x.shape.as_slice() else {
        return Err(err(format!("data {:?} is not NCHW", x.shape)));
    };
    let [r, 5] = *rois.shape.as_slice() else {
        return Err(err(format!("rois {:?} are not (R, 5)", rois.shape)));
    };
    let bins_per_roi = op.pooled_height * op.pooled_width;
    let mut out = Vec::with_capacity(r * c_in * bins_per_roi);
    let mut taken = Vec::with_capacity(out.capacity());
    for i in 0..r {
        let row: Vec<f32> = rois.data[i * 5..i * 5 + 5]
            .iter()
            .map(|&v| v as f32)
            .collect();
        let plan = roi_pool_bins(op, n, h, w, &row).map_err(|m| err(format!("roi {i}: {m}")))?;
        let Some((img, bins)) = plan else {
            out.extend(std::iter::repeat_n(0.0, c_in * bins_per_roi));
            taken.extend(std::iter::repeat_n(None, c_in * bins_per_roi));
            continue;
        };
        for c in 0..c_in {
            let base = (img * c_in + c) * h * w;
            for bin in &bins {
                if bin.h1 <= bin.h0 || bin.w1 <= bin.w0 {
                    out.push(0.0);
                    taken.push(None);
                    continue;
                }
                let mut best = f64::from(ROI_POOL_FLOOR);
                let mut at = None;
                for y in bin.h0..bin.h1 {
                    for xx in bin.w0..bin.w1 {
                        let o = base + y * w + xx;
                        if x.data[o] > best {
                            best = x.data[o];
                            at = Some(o);
                        }
                    }
                }
                out.push(best);
                taken.push(at);
            }
        }
    }
    let y = Array::new(vec![r, c_in, op.pooled_height, op.pooled_width], out)?;
    Ok((y, taken))
}

/// MXNet `ROIPooling` of NCHW `x` over `rois`.
pub fn roi_pool(x: &Array, rois: &Array, op: &RoiPool) -> KResult<Array> {
    roi_pool_argmax(x, rois, op).map(|(y, _)| y)
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
    fn roi_pooling_matches_mxnet_by_hand() {
        // MXNet 1.9.1's documented example: an 8 × 6 ramp, roi (0, 0)-(4, 4).
        let x = Array::new(vec![1, 1, 8, 6], (0..48).map(f64::from).collect()).unwrap();
        let pool = |scale: f32, row: Vec<f64>| {
            let op = RoiPool {
                pooled_height: 2,
                pooled_width: 2,
                spatial_scale: scale,
            };
            roi_pool(&x, &Array::new(vec![1, 5], row).unwrap(), &op)
                .unwrap()
                .data
        };
        assert_eq!(
            pool(1.0, vec![0., 0., 0., 4., 4.]),
            vec![14., 16., 26., 28.]
        );
        assert_eq!(pool(0.7, vec![0., 0., 0., 4., 4.]), vec![7., 9., 19., 21.]);
        // Outside the batch (either way) and outside the plane: zeros.
        assert_eq!(pool(1.0, vec![-1., 0., 0., 4., 4.]), vec![0.; 4]);
        assert_eq!(pool(1.0, vec![1., 0., 0., 4., 4.]), vec![0.; 4]);
        assert_eq!(pool(1.0, vec![0., 9., 9., 12., 12.]), vec![0.; 4]);
        // A bin of NaN only keeps MXNet's floor.
        let nan = Array::new(vec![1, 1, 2, 2], vec![f64::NAN; 4]).unwrap();
        let op = RoiPool {
            pooled_height: 1,
            pooled_width: 1,
            spatial_scale: 1.0,
        };
        let rois = Array::new(vec![1, 5], vec![0., 0., 0., 1., 1.]).unwrap();
        assert_eq!(
            roi_pool(&nan, &rois, &op).unwrap().data,
            vec![f64::from(-f32::MAX)]
        );
        let rois = Array::new(vec![1, 5], vec![0., 0., 0., 3e30, 1.]).unwrap();
        assert!(roi_pool(&nan, &rois, &op).is_err());
    }

    #[test]
    fn refuses_the_rows_mxnet_does_not_compute() {
        let x = ramp();
        for (row, aligned, what) in [
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
        // A negative image (a detector's −1 padding) gives zeros, even over infinities.
        let mut inf = ramp();
        inf.data.iter_mut().for_each(|v| *v = f64::INFINITY);
        let rois = Array::new(vec![1, 5], vec![-1., -1., -1., -1., -1.]).unwrap();
        let y = roi_align(&inf, &rois, &op(None, false)).unwrap();
        assert!(y.data.iter().all(|&v| v == 0.0), "{:?}", y.data);
        // A fixed grid samples a huge box without refusing it: outside is weight 0.
        let rois = Array::new(vec![1, 5], vec![0., 0., 0., 1e30, 2.]).unwrap();
        assert!(roi_align(&x, &rois, &op(Some(2), false)).is_ok());
    }
}
