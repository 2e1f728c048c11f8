//! Regions of interest: MXNet 1.9.1's `_contrib_ROIAlign` ([`RoiAlign`]), which Faster
//! and Mask R-CNN use to cut a fixed-size feature map out of each proposal, and
//! `ROIPooling` ([`RoiPool`]), Fast R-CNN's max pooling over each proposal's bins.
//!
//! The rois are data (a `(R, 5)` tensor of `[batch, x1, y1, x2, y2]` rows in image
//! coordinates), so what a row may hold is checked where it is read, by the shared
//! sampling plan [`crate::interp::roi::roi_align_plan`]: the reference interpreter, the
//! tract kernel and the gradient all refuse the same rows (see there).

use serde::{Deserialize, Serialize};

use super::{dim, expect_rank, input, OpDef, Shape, R};
use crate::limits::MAX_ROI_SAMPLES;

/// MXNet `_contrib_ROIAlign`: each roi's box, scaled by `spatial_scale`, is cut into
/// `pooled_height × pooled_width` bins, each the mean of a grid of bilinear samples
/// (`sample_ratio` per axis, or `⌈bin⌉` of the roi's size when `None`: MXNet's adaptive
/// default, `sample_ratio <= 0`). `position_sensitive` reads a different channel block
/// for each bin (R-FCN); `aligned` shifts the box by half a pixel (Detectron2).
/// Arithmetic is float32, in MXNet's order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoiAlign {
    pub pooled_height: usize,
    pub pooled_width: usize,
    pub spatial_scale: f32,
    pub sample_ratio: Option<usize>,
    pub position_sensitive: bool,
    pub aligned: bool,
}

impl RoiAlign {
    /// The bins of one roi, `pooled_height · pooled_width`, checked.
    pub fn bins(&self) -> R<usize> {
        self.pooled_height
            .checked_mul(self.pooled_width)
            .filter(|&n| n > 0 && n <= MAX_ROI_SAMPLES)
            .ok_or_else(|| {
                format!(
                    "pooled_size ({}, {}) must be positive with at most {MAX_ROI_SAMPLES} bins",
                    self.pooled_height, self.pooled_width
                )
            })
    }

    /// The output's channels for data of `channels`: all of them, or one block of
    /// `pooled_height · pooled_width` per output channel when position sensitive.
    pub fn out_channels(&self, channels: usize) -> R<usize> {
        if !self.position_sensitive {
            return Ok(channels);
        }
        let bins = self.bins()?;
        if !channels.is_multiple_of(bins) {
            return Err(format!(
                "position-sensitive ROIAlign needs channels divisible by pooled_size's {bins} bins, data has {channels}"
            ));
        }
        Ok(channels / bins)
    }
}

impl OpDef for RoiAlign {
    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn validate(&self) -> R<()> {
        let bins = self.bins()?;
        if !(self.spatial_scale.is_finite() && (0.0..=1.0).contains(&self.spatial_scale)) {
            return Err(format!(
                "spatial_scale {} must be 0 to 1 (MXNet's bound)",
                self.spatial_scale
            ));
        }
        if let Some(r) = self.sample_ratio {
            let per_roi = r
                .checked_mul(r)
                .and_then(|s| s.checked_mul(bins))
                .filter(|&n| n > 0 && n <= MAX_ROI_SAMPLES);
            if per_roi.is_none() {
                return Err(format!(
                    "sample_ratio {r} over {bins} bins takes more than {MAX_ROI_SAMPLES} samples per roi"
                ));
            }
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        self.validate()?;
        let x = input(ins, 0, "data")?;
        let rois = input(ins, 1, "rois")?;
        expect_rank("data", x, 4)?;
        expect_rank("rois", rois, 2)?;
        if dim(rois, 1, "rois")? != 5 {
            return Err(format!(
                "rois {rois:?} must be (R, 5): [batch, x1, y1, x2, y2] rows"
            ));
        }
        if dim(x, 2, "data")? == 0 || dim(x, 3, "data")? == 0 {
            return Err(format!(
                "data {x:?} has an empty plane (MXNet reads outside it)"
            ));
        }
        Ok(vec![vec![
            dim(rois, 0, "rois")?,
            self.out_channels(dim(x, 1, "data")?)?,
            self.pooled_height,
            self.pooled_width,
        ]])
    }
}

/// MXNet `ROIPooling`: each roi's box, scaled by `spatial_scale` and rounded to whole
/// pixels (half away from zero), is cut into `pooled_height × pooled_width` bins (edges
/// by float32 floor and ceil), each the maximum of its pixels, or 0 for a bin outside the
/// plane; a roi whose batch index is outside the batch gives zeros (see
/// [`crate::interp::roi::roi_pool_bins`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoiPool {
    pub pooled_height: usize,
    pub pooled_width: usize,
    pub spatial_scale: f32,
}

impl OpDef for RoiPool {
    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn validate(&self) -> R<()> {
        as_align(self).validate()
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        as_align(self).infer(ins)
    }
}

/// The ROIAlign with the same shape rules and attribute bounds as `op`.
fn as_align(op: &RoiPool) -> RoiAlign {
    RoiAlign {
        pooled_height: op.pooled_height,
        pooled_width: op.pooled_width,
        spatial_scale: op.spatial_scale,
        sample_ratio: Some(1),
        position_sensitive: false,
        aligned: false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn align(ph: usize, pw: usize, ratio: Option<usize>, ps: bool) -> RoiAlign {
        RoiAlign {
            pooled_height: ph,
            pooled_width: pw,
            spatial_scale: 0.5,
            sample_ratio: ratio,
            position_sensitive: ps,
            aligned: false,
        }
    }

    #[test]
    fn shapes_follow_mxnets_rules() {
        let x: &[usize] = &[2, 8, 5, 6];
        let r: &[usize] = &[3, 5];
        assert_eq!(
            align(2, 3, None, false).infer(&[Some(x), Some(r)]).unwrap(),
            vec![vec![3, 8, 2, 3]]
        );
        assert_eq!(
            align(2, 2, Some(2), true)
                .infer(&[Some(x), Some(r)])
                .unwrap(),
            vec![vec![3, 2, 2, 2]]
        );
        let err = align(3, 1, None, true)
            .infer(&[Some(x), Some(r)])
            .unwrap_err();
        assert!(err.contains("divisible"), "{err}");
        assert!(align(2, 2, None, false)
            .infer(&[Some(x), Some(&[3, 4])])
            .is_err());
        assert!(align(2, 2, None, false)
            .infer(&[Some(&[2, 8, 0, 6]), Some(r)])
            .is_err());
        assert!(align(0, 2, None, false).validate().is_err());
        assert!(align(1 << 20, 1 << 20, None, false).validate().is_err());
        assert!(align(7, 7, Some(1 << 12), false).validate().is_err());
        let mut bad = align(2, 2, None, false);
        bad.spatial_scale = 2.0;
        assert!(bad.validate().is_err());
    }
}
