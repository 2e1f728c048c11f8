//! Detection: the box operators of MXNet 1.9.1's `contrib` (GluonCV's detectors):
//! [`BoxNms`] (`_contrib_box_nms`), [`BoxDecode`] (`_contrib_box_decode`) and
//! [`BoxEncode`] (`_contrib_box_encode`); the SSD head's [`MultiBoxDetection`]
//! (`_contrib_MultiBoxDetection`) and Faster R-CNN's region proposals, [`Proposal`]
//! (`_contrib_Proposal`).
//!
//! Their meaning (MXNet's fixed-shape NMS output padded with −1, its order among equal
//! scores, the rows it leaves unconverted) is in [`crate::interp::detection`]. Float
//! attributes hold MXNet's float32 values.

use serde::{Deserialize, Serialize};

use super::{dim, expect_rank, input, product, OpDef, Shape, R};
use crate::limits::{MAX_ANCHORS_PER_CELL, MAX_NMS_BOXES};

/// How a box's four coordinates are written (MXNet's `corner` and `center`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxFormat {
    /// `[xmin, ymin, xmax, ymax]`.
    Corner,
    /// `[x, y, width, height]`.
    Center,
}

impl BoxFormat {
    /// MXNet's spelling.
    pub fn mxnet_name(self) -> &'static str {
        match self {
            BoxFormat::Corner => "corner",
            BoxFormat::Center => "center",
        }
    }
}

/// MXNet's `_contrib_box_nms`: per batch (every dim before the last two), the rows of
/// `(num_boxes, width)` whose score passes `valid_thresh` (and, with an `id_index`, whose
/// class is not `background_id`), sorted by descending score (ties by row), the first
/// `topk` of them suppressed greedily by IoU above `overlap_thresh`; the survivors first,
/// the other rows −1. The output has the input's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxNms {
    #[serde(with = "super::float")]
    pub overlap_thresh: f64,
    #[serde(with = "super::float")]
    pub valid_thresh: f64,
    /// `None`: every valid box (MXNet's `topk < 0`); `Some(0)` is MXNet's `topk = 0`, which
    /// returns the input unchanged.
    pub topk: Option<usize>,
    pub coord_start: usize,
    pub score_index: usize,
    pub id_index: Option<usize>,
    /// Compared with the class as float32, as MXNet compares it.
    pub background_id: i64,
    pub force_suppress: bool,
    pub in_format: BoxFormat,
    pub out_format: BoxFormat,
}

impl Default for BoxNms {
    /// MXNet's defaults.
    fn default() -> Self {
        BoxNms {
            overlap_thresh: 0.5,
            valid_thresh: 0.0,
            topk: None,
            coord_start: 2,
            score_index: 1,
            id_index: None,
            background_id: -1,
            force_suppress: false,
            in_format: BoxFormat::Corner,
            out_format: BoxFormat::Corner,
        }
    }
}

/// Where a [`BoxNms`] works: `batches` sets of `boxes` rows of `width` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NmsLayout {
    pub batches: usize,
    pub boxes: usize,
    pub width: usize,
}

impl BoxNms {
    /// The layout of an input of shape `x`, checked as MXNet's shape rule checks it: rank
    /// at least 2, each index within the row (the score and the class outside the four
    /// coordinates and apart), and every box counted against [`MAX_NMS_BOXES`].
    pub fn layout(&self, x: &[usize]) -> R<NmsLayout> {
        self.check(x).map_err(|(_, e)| e)
    }

    /// [`BoxNms::layout`], its refusal with the attribute it concerns (`data` for the
    /// input's own shape).
    pub fn check(&self, x: &[usize]) -> Result<NmsLayout, (&'static str, String)> {
        let data = |e: String| ("data", e);
        let rank = x.len();
        if rank < 2 {
            return Err(data(format!(
                "data {x:?} must have rank 2 or more: (..., boxes, width)"
            )));
        }
        let width = dim(x, rank - 1, "data").map_err(data)?;
        let boxes = dim(x, rank - 2, "data").map_err(data)?;
        let batches = product(x.get(..rank - 2).unwrap_or_default()).map_err(data)?;
        let least = if self.id_index.is_some() { 6 } else { 5 };
        if width < least {
            return Err(data(format!(
                "rows of {width} values: at least {least} (score, 4 coordinates{}) expected",
                if least == 6 { ", class" } else { "" }
            )));
        }
        let coord_end = self
            .coord_start
            .checked_add(3)
            .ok_or_else(|| ("coord_start", "coord_start overflows".to_string()))?;
        if coord_end >= width {
            return Err((
                "coord_start",
                format!(
                    "coordinates {}..={coord_end} past the row of {width}",
                    self.coord_start
                ),
            ));
        }
        let in_coords = |i: usize| i >= self.coord_start && i <= coord_end;
        if self.score_index >= width || in_coords(self.score_index) {
            return Err((
                "score_index",
                format!(
                    "score_index {} must be in the row of {width} and outside the coordinates {}..={coord_end}",
                    self.score_index, self.coord_start
                ),
            ));
        }
        if let Some(id) = self.id_index {
            if id >= width || in_coords(id) || id == self.score_index {
                return Err((
                    "id_index",
                    format!(
                        "id_index {id} must be in the row of {width}, outside the coordinates {}..={coord_end} and not the score_index",
                        self.coord_start
                    ),
                ));
            }
        }
        if batches
            .checked_mul(boxes)
            .is_none_or(|total| total > MAX_NMS_BOXES)
        {
            return Err(data(format!(
                "{batches} batches of {boxes} boxes: at most {MAX_NMS_BOXES} boxes in all"
            )));
        }
        Ok(NmsLayout {
            batches,
            boxes,
            width,
        })
    }
}

impl OpDef for BoxNms {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.overlap_thresh.is_nan() || self.valid_thresh.is_nan() {
            return Err("overlap_thresh and valid_thresh must be numbers".into());
        }
        if self.topk.is_some_and(|k| k > MAX_NMS_BOXES) {
            return Err(format!("topk past the limit of {MAX_NMS_BOXES} boxes"));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        self.layout(x)?;
        Ok(vec![x.to_vec()])
    }
}

/// MXNet's `_contrib_box_decode`: `data` (batch, n, 4) of encoded offsets against `anchors`
/// (n boxes of 4, in `format`), scaled by `std`, the log sizes clipped to `clip` when
/// given; the boxes in corner format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxDecode {
    pub std: [f64; 4],
    /// MXNet's `clip > 0`; `None` for its `clip <= 0` (no clipping).
    pub clip: Option<f64>,
    pub format: BoxFormat,
}

impl BoxDecode {
    /// The (batch, n) of data and anchors, checked as MXNet checks them: data of rank 3
    /// with a last dim 4, anchors of rank 3 or more with a last dim 4 and n boxes in all.
    pub fn layout(data: &[usize], anchors: &[usize]) -> R<(usize, usize)> {
        expect_rank("data", data, 3)?;
        if data.last() != Some(&4) {
            return Err(format!("data {data:?} must end in 4 coordinates"));
        }
        let b = dim(data, 0, "data")?;
        let n = dim(data, 1, "data")?;
        if anchors.len() < 3 || anchors.last() != Some(&4) {
            return Err(format!(
                "anchors {anchors:?} must have rank 3 or more and end in 4 coordinates"
            ));
        }
        let want = n
            .checked_mul(4)
            .ok_or_else(|| "anchor count overflows".to_string())?;
        if product(anchors)? != want {
            return Err(format!(
                "anchors {anchors:?} must hold the {n} boxes of data {data:?}, as (1, {n}, 4)"
            ));
        }
        Ok((b, n))
    }
}

impl OpDef for BoxDecode {
    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn validate(&self) -> R<()> {
        if self.std.iter().any(|s| s.is_nan()) || self.clip.is_some_and(|c| c.is_nan()) {
            return Err("std0..std3 and clip must be numbers".into());
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let data = input(ins, 0, "data")?;
        let anchors = input(ins, 1, "anchors")?;
        BoxDecode::layout(data, anchors)?;
        Ok(vec![data.to_vec()])
    }
}

/// MXNet's `_contrib_box_encode`: the regression targets of `anchors` (batch, n, 4, corner)
/// towards their matched `refs` (batch, m, 4, corner), `(offset − means) / stds`, where the
/// sample is positive (> 0.5), 0 elsewhere; and the masks (1 where positive). Inputs:
/// samples (batch, n), matches (batch, n), anchors, refs, means (4), stds (4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxEncode {}

impl BoxEncode {
    /// (batch, n, m), checked as MXNet's shape rule and kernel read them.
    pub fn layout(ins: &[Option<&[usize]>]) -> R<(usize, usize, usize)> {
        let samples = input(ins, 0, "samples")?;
        let matches = input(ins, 1, "matches")?;
        let anchors = input(ins, 2, "anchors")?;
        let refs = input(ins, 3, "refs")?;
        let means = input(ins, 4, "means")?;
        let stds = input(ins, 5, "stds")?;
        expect_rank("anchors", anchors, 3)?;
        if anchors.last() != Some(&4) {
            return Err(format!("anchors {anchors:?} must be (batch, n, 4)"));
        }
        let b = dim(anchors, 0, "anchors")?;
        let n = dim(anchors, 1, "anchors")?;
        super::expect_shape("samples", samples, &[b, n])?;
        super::expect_shape("matches", matches, &[b, n])?;
        expect_rank("refs", refs, 3)?;
        if refs.first() != Some(&b) || refs.last() != Some(&4) {
            return Err(format!("refs {refs:?} must be ({b}, m, 4)"));
        }
        let m = dim(refs, 1, "refs")?;
        super::expect_shape("means", means, &[4])?;
        super::expect_shape("stds", stds, &[4])?;
        Ok((b, n, m))
    }
}

impl OpDef for BoxEncode {
    fn arity(&self) -> (usize, usize) {
        (6, 6)
    }

    fn num_outputs(&self) -> usize {
        2
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let (b, n, _) = BoxEncode::layout(ins)?;
        Ok(vec![vec![b, n, 4], vec![b, n, 4]])
    }
}

/// MXNet's `_contrib_MultiBoxDetection` (SSD's output layer): `cls_prob` (batch, classes,
/// n), `loc_pred` (batch, n·4) and `anchor` (1, n, 4, corner) give (batch, n, 6) rows `[class, score, xmin, ymin, xmax, ymax]`: each anchor's
/// best non-background class (class 0 is the background) at or above `threshold`, its box
/// decoded with `variances` (clipped to [0, 1] with `clip`), sorted by score (stably) and
/// suppressed per class (every class with `force_suppress`) at an IoU of `nms_threshold` or
/// more, among the first `nms_topk`; suppressed rows keep their values with class −1, the
/// rows past the detections are −1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiBoxDetection {
    pub clip: bool,
    #[serde(with = "super::float")]
    pub threshold: f64,
    /// Read and kept, but MXNet 1.9.1's kernel never uses it: class 0 is always the
    /// background.
    pub background_id: i64,
    /// No sorting and no suppression at all unless it is in (0, 1] (MXNet's rule).
    #[serde(with = "super::float")]
    pub nms_threshold: f64,
    pub force_suppress: bool,
    pub variances: [f64; 4],
    /// `None`: every detection (MXNet's `nms_topk <= 0`).
    pub nms_topk: Option<usize>,
}

impl Default for MultiBoxDetection {
    /// MXNet's defaults.
    fn default() -> Self {
        MultiBoxDetection {
            clip: true,
            threshold: f64::from(0.01f32),
            background_id: 0,
            nms_threshold: 0.5,
            force_suppress: false,
            variances: [
                f64::from(0.1f32),
                f64::from(0.1f32),
                f64::from(0.2f32),
                f64::from(0.2f32),
            ],
            nms_topk: None,
        }
    }
}

/// Where a [`MultiBoxDetection`] works: `batches` of `classes` scores for `anchors` boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectionLayout {
    pub batches: usize,
    pub classes: usize,
    pub anchors: usize,
}

impl MultiBoxDetection {
    /// The layout of the three inputs, checked as MXNet's shape rule checks them (ranks 3,
    /// 2 and 3; the anchor counts equal and above 0; 4 coordinates), and further: `anchor`
    /// must be one set of boxes (MXNet's shape rule takes any first dim, its kernel then
    /// fails unless it is 1), and `loc_pred` must have the batch of `cls_prob` (MXNet reads
    /// past a shorter one unchecked). Each refusal names the input it concerns; every box
    /// is counted against [`MAX_NMS_BOXES`].
    pub fn check(
        cls_prob: &[usize],
        loc_pred: &[usize],
        anchor: &[usize],
    ) -> Result<DetectionLayout, (&'static str, String)> {
        let on = |what: &'static str| move |e: String| (what, e);
        expect_rank("cls_prob", cls_prob, 3).map_err(on("cls_prob"))?;
        expect_rank("loc_pred", loc_pred, 2).map_err(on("loc_pred"))?;
        expect_rank("anchor", anchor, 3).map_err(on("anchor"))?;
        let batches = dim(cls_prob, 0, "cls_prob").map_err(on("cls_prob"))?;
        let classes = dim(cls_prob, 1, "cls_prob").map_err(on("cls_prob"))?;
        let anchors = dim(cls_prob, 2, "cls_prob").map_err(on("cls_prob"))?;
        if anchor.get(1) != Some(&anchors) || anchor.get(2) != Some(&4) {
            return Err((
                "anchor",
                format!("anchor {anchor:?} must be (k, {anchors}, 4): the anchors of cls_prob {cls_prob:?}"),
            ));
        }
        if anchor.first() != Some(&1) {
            return Err((
                "anchor",
                format!("anchor {anchor:?} must be one set of boxes, (1, {anchors}, 4)"),
            ));
        }
        if anchors == 0 {
            return Err(("anchor", "the number of anchors must be above 0".into()));
        }
        let locs = anchors
            .checked_mul(4)
            .ok_or_else(|| ("loc_pred", "anchor count overflows".to_string()))?;
        if loc_pred != [batches, locs] {
            return Err((
                "loc_pred",
                format!("loc_pred {loc_pred:?} must be ({batches}, {locs}): 4 offsets per anchor of cls_prob {cls_prob:?}"),
            ));
        }
        if batches
            .checked_mul(anchors)
            .is_none_or(|total| total > MAX_NMS_BOXES)
        {
            return Err((
                "cls_prob",
                format!(
                    "{batches} batches of {anchors} anchors: at most {MAX_NMS_BOXES} boxes in all"
                ),
            ));
        }
        Ok(DetectionLayout {
            batches,
            classes,
            anchors,
        })
    }

    /// [`MultiBoxDetection::check`] with its refusal as one message.
    pub fn layout(cls_prob: &[usize], loc_pred: &[usize], anchor: &[usize]) -> R<DetectionLayout> {
        Self::check(cls_prob, loc_pred, anchor).map_err(|(_, e)| e)
    }

    /// Whether MXNet sorts and suppresses at all: `nms_threshold` in (0, 1].
    pub fn suppresses(&self) -> bool {
        self.nms_threshold > 0.0 && self.nms_threshold <= 1.0
    }
}

impl OpDef for MultiBoxDetection {
    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn validate(&self) -> R<()> {
        if self.threshold.is_nan() || self.nms_threshold.is_nan() {
            return Err("threshold and nms_threshold must be numbers".into());
        }
        if self.variances.iter().any(|v| !v.is_finite()) {
            return Err("variances must be finite".into());
        }
        if self.nms_topk.is_some_and(|k| k > MAX_NMS_BOXES) {
            return Err(format!("nms_topk past the limit of {MAX_NMS_BOXES} boxes"));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let c = input(ins, 0, "cls_prob")?;
        let l = input(ins, 1, "loc_pred")?;
        let a = input(ins, 2, "anchor")?;
        let layout = Self::layout(c, l, a)?;
        Ok(vec![vec![layout.batches, layout.anchors, 6]])
    }
}

/// MXNet's `_contrib_Proposal` (Faster R-CNN's region proposal layer), one image:
/// `cls_prob` (1, 2·A, H, W) (the last A channels the foreground scores), `bbox_pred`
/// (1, 4·A, H, W) and `im_info` (1, 3: height, width, scale). The A = ratios × scales
/// anchors of `feature_stride` are laid on every cell, moved by their deltas (or, with
/// `iou_loss`, by their corner offsets), clipped to the image; boxes below `rpn_min_size`
/// × scale (and cells outside the image) get the score −1; the first
/// `rpn_pre_nms_top_n` by score (sorted stably) are suppressed greedily at an
/// IoU above `threshold`, until `rpn_post_nms_top_n` are kept; the output has
/// `rpn_post_nms_top_n` rows `[0, x1, y1, x2, y2]`, the kept boxes repeated cyclically
/// when fewer survive, and with `output_score` their scores (rpn_post_nms_top_n, 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// `None`: every anchor (MXNet's `rpn_pre_nms_top_n <= 0`).
    pub rpn_pre_nms_top_n: Option<usize>,
    /// The output's rows; at least 1.
    pub rpn_post_nms_top_n: usize,
    #[serde(with = "super::float")]
    pub threshold: f64,
    /// MXNet's int, multiplied by the image's scale in float32.
    pub rpn_min_size: i32,
    pub scales: Vec<f32>,
    pub ratios: Vec<f32>,
    pub feature_stride: u32,
    pub output_score: bool,
    pub iou_loss: bool,
}

impl Default for Proposal {
    /// MXNet's defaults.
    fn default() -> Self {
        Proposal {
            rpn_pre_nms_top_n: Some(6000),
            rpn_post_nms_top_n: 300,
            threshold: f64::from(0.7f32),
            rpn_min_size: 16,
            scales: vec![4.0, 8.0, 16.0, 32.0],
            ratios: vec![0.5, 1.0, 2.0],
            feature_stride: 16,
            output_score: false,
            iou_loss: false,
        }
    }
}

/// Where a [`Proposal`] works: `images`, each with `anchors` per cell of an `height` ×
/// `width` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalLayout {
    pub images: usize,
    pub anchors: usize,
    pub height: usize,
    pub width: usize,
}

impl ProposalLayout {
    /// Every anchor of one image's map.
    pub fn count(&self) -> usize {
        self.anchors * self.height * self.width
    }
}

impl Proposal {
    /// The anchors per cell (ratios × scales), checked against [`MAX_ANCHORS_PER_CELL`].
    pub fn anchors_per_cell(&self) -> R<usize> {
        let a = self
            .ratios
            .len()
            .checked_mul(self.scales.len())
            .filter(|&a| a > 0 && a <= MAX_ANCHORS_PER_CELL)
            .ok_or_else(|| {
                format!(
                    "{} ratios × {} scales: 1 to {MAX_ANCHORS_PER_CELL} anchors per cell",
                    self.ratios.len(),
                    self.scales.len()
                )
            })?;
        Ok(a)
    }

    /// The layout of the three inputs, checked as MXNet's shape rule and kernel check
    /// them (bbox_pred (1, 4·A, H, W), im_info (1, 3), A = ratios × scales anchors), and
    /// further: one image (MXNet's CPU kernel refuses more at run time), an even number of
    /// score channels, a map of at least one cell (MXNet writes its anchors past an empty
    /// one), every anchor counted against [`MAX_NMS_BOXES`]. Each refusal names the input
    /// or attribute it concerns.
    pub fn check(
        &self,
        cls_prob: &[usize],
        bbox_pred: &[usize],
        im_info: &[usize],
    ) -> Result<ProposalLayout, (&'static str, String)> {
        self.check_images(cls_prob, bbox_pred, im_info, false)
    }

    /// [`Proposal::check`], for several images with `multi` ([`MultiProposal`]): a batch
    /// of any size, `bbox_pred` and `im_info` of that batch, every image's anchors and
    /// every output row counted against [`MAX_NMS_BOXES`].
    pub fn check_images(
        &self,
        cls_prob: &[usize],
        bbox_pred: &[usize],
        im_info: &[usize],
        multi: bool,
    ) -> Result<ProposalLayout, (&'static str, String)> {
        let on = |what: &'static str| move |e: String| (what, e);
        let a = self.anchors_per_cell().map_err(on("scales"))?;
        expect_rank("cls_prob", cls_prob, 4).map_err(on("cls_prob"))?;
        let (batch, channels, height, width) = match cls_prob {
            [n, c, h, w] => (*n, *c, *h, *w),
            _ => return Err(("cls_prob", format!("cls_prob {cls_prob:?} must be 4-D"))),
        };
        if batch == 0 {
            return Err(("cls_prob", format!("cls_prob {cls_prob:?} holds no image")));
        }
        if batch != 1 && !multi {
            return Err((
                "cls_prob",
                format!("cls_prob {cls_prob:?}: one image only (MXNet's CPU Proposal refuses a batch of {batch}: declare a batch of 1, or use MultiProposal, which takes several)"),
            ));
        }
        if channels != a * 2 {
            return Err((
                "cls_prob",
                format!("cls_prob {cls_prob:?} must have 2 × {a} channels: background and foreground scores of the {} ratios × {} scales", self.ratios.len(), self.scales.len()),
            ));
        }
        if height == 0 || width == 0 {
            return Err((
                "cls_prob",
                format!("cls_prob {cls_prob:?} has an empty map"),
            ));
        }
        super::expect_shape("bbox_pred", bbox_pred, &[batch, a * 4, height, width])
            .map_err(on("bbox_pred"))?;
        super::expect_shape("im_info", im_info, &[batch, 3]).map_err(on("im_info"))?;
        let count = product(&[batch, a, height, width]).map_err(on("cls_prob"))?;
        if count > MAX_NMS_BOXES {
            return Err((
                "cls_prob",
                format!("{batch} images of {a} anchors on a {height} × {width} map: at most {MAX_NMS_BOXES} boxes"),
            ));
        }
        if batch
            .checked_mul(self.rpn_post_nms_top_n)
            .is_none_or(|rows| rows > MAX_NMS_BOXES)
        {
            return Err((
                "rpn_post_nms_top_n",
                format!(
                    "{batch} images of {} rows: at most {MAX_NMS_BOXES} rows",
                    self.rpn_post_nms_top_n
                ),
            ));
        }
        Ok(ProposalLayout {
            images: batch,
            anchors: a,
            height,
            width,
        })
    }
}

impl OpDef for Proposal {
    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn num_outputs(&self) -> usize {
        if self.output_score {
            2
        } else {
            1
        }
    }

    fn validate(&self) -> R<()> {
        if self.threshold.is_nan() {
            return Err("threshold must be a number".into());
        }
        if self.rpn_post_nms_top_n == 0 || self.rpn_post_nms_top_n > MAX_NMS_BOXES {
            return Err(format!(
                "rpn_post_nms_top_n {}: 1 to {MAX_NMS_BOXES} rows",
                self.rpn_post_nms_top_n
            ));
        }
        if self.rpn_pre_nms_top_n.is_some_and(|k| k > MAX_NMS_BOXES) {
            return Err(format!(
                "rpn_pre_nms_top_n past the limit of {MAX_NMS_BOXES} boxes"
            ));
        }
        if self.feature_stride == 0 {
            return Err("feature_stride must be above 0".into());
        }
        if self
            .scales
            .iter()
            .chain(&self.ratios)
            .any(|v| !v.is_finite() || *v <= 0.0)
        {
            return Err("scales and ratios must be finite and above 0".into());
        }
        self.anchors_per_cell()?;
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let c = input(ins, 0, "cls_prob")?;
        let b = input(ins, 1, "bbox_pred")?;
        let i = input(ins, 2, "im_info")?;
        self.check(c, b, i).map_err(|(_, e)| e)?;
        let rows = self.rpn_post_nms_top_n;
        let mut out = vec![vec![rows, 5]];
        if self.output_score {
            out.push(vec![rows, 1]);
        }
        Ok(out)
    }
}

/// MXNet's `_contrib_MultiProposal`: [`Proposal`] on each image of a batch (its own
/// `im_info` row), the rois of image `b` in rows `b·n..(b+1)·n` with `b` in their first
/// column (n = `rpn_post_nms_top_n`); the same attributes, the same numbers image by
/// image (checked against MXNet 1.9.1, the `mprop_` cases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MultiProposal(pub Proposal);

impl OpDef for MultiProposal {
    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn num_outputs(&self) -> usize {
        self.0.num_outputs()
    }

    fn validate(&self) -> R<()> {
        self.0.validate()
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let c = input(ins, 0, "cls_prob")?;
        let b = input(ins, 1, "bbox_pred")?;
        let i = input(ins, 2, "im_info")?;
        let l = self.0.check_images(c, b, i, true).map_err(|(_, e)| e)?;
        let rows = l.images * self.0.rpn_post_nms_top_n;
        let mut out = vec![vec![rows, 5]];
        if self.0.output_score {
            out.push(vec![rows, 1]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nms_checks_the_row_as_mxnet() {
        let nms = BoxNms::default();
        let s: &[usize] = &[2, 3, 7, 6];
        assert_eq!(nms.infer(&[Some(s)]).unwrap(), vec![s.to_vec()]);
        assert_eq!(
            nms.layout(s).unwrap(),
            NmsLayout {
                batches: 6,
                boxes: 7,
                width: 6
            }
        );
        assert!(nms.infer(&[Some(&[5])]).is_err());
        assert!(nms.infer(&[Some(&[3, 4])]).is_err());
        let id = BoxNms {
            id_index: Some(0),
            ..BoxNms::default()
        };
        assert!(id.infer(&[Some(&[3, 5])]).is_err());
        let clash = BoxNms {
            score_index: 3,
            ..BoxNms::default()
        };
        assert!(clash.infer(&[Some(&[3, 6])]).is_err());
        let past = BoxNms {
            coord_start: 3,
            ..BoxNms::default()
        };
        assert!(past.infer(&[Some(&[3, 6])]).is_err());
        let many: &[usize] = &[MAX_NMS_BOXES, 2, 6];
        let err = nms.infer(&[Some(many)]).unwrap_err();
        assert!(err.contains("at most"), "{err}");
    }

    #[test]
    fn decode_and_encode_shapes() {
        let d = BoxDecode {
            std: [1.0; 4],
            clip: None,
            format: BoxFormat::Center,
        };
        assert_eq!(
            d.infer(&[Some(&[2, 5, 4]), Some(&[1, 5, 4])]).unwrap(),
            vec![vec![2, 5, 4]]
        );
        assert!(d.infer(&[Some(&[2, 5, 4]), Some(&[1, 4, 4])]).is_err());
        assert!(d.infer(&[Some(&[5, 4]), Some(&[1, 5, 4])]).is_err());
        let e = BoxEncode {};
        let ins: Vec<Option<&[usize]>> = vec![
            Some(&[2, 3]),
            Some(&[2, 3]),
            Some(&[2, 3, 4]),
            Some(&[2, 5, 4]),
            Some(&[4]),
            Some(&[4]),
        ];
        assert_eq!(e.infer(&ins).unwrap(), vec![vec![2, 3, 4], vec![2, 3, 4]]);
    }

    #[test]
    fn multibox_detection_shapes() {
        let d = MultiBoxDetection::default();
        let ok = |c: &[usize], l: &[usize], a: &[usize]| d.infer(&[Some(c), Some(l), Some(a)]);
        assert_eq!(
            ok(&[2, 3, 5], &[2, 20], &[1, 5, 4]).unwrap(),
            vec![vec![2, 5, 6]]
        );
        // MXNet's kernel fails on more than one set of anchors.
        assert!(ok(&[2, 3, 5], &[2, 20], &[3, 5, 4]).is_err());
        assert!(ok(&[2, 3, 5], &[1, 20], &[1, 5, 4]).is_err());
        assert!(ok(&[2, 3, 5], &[2, 16], &[1, 5, 4]).is_err());
        assert!(ok(&[2, 3, 5], &[2, 20], &[1, 4, 4]).is_err());
        assert!(ok(&[2, 3, 5], &[2, 20], &[0, 5, 4]).is_err());
        assert!(ok(&[2, 3, 0], &[2, 0], &[1, 0, 4]).is_err());
        assert!(ok(&[2, 3, 5, 1], &[2, 20], &[1, 5, 4]).is_err());
        let (what, _) =
            MultiBoxDetection::check(&[MAX_NMS_BOXES, 2, 2], &[MAX_NMS_BOXES, 8], &[1, 2, 4])
                .unwrap_err();
        assert_eq!(what, "cls_prob");
    }

    #[test]
    fn proposal_shapes() {
        let p = Proposal {
            scales: vec![8.0, 16.0],
            ratios: vec![0.5, 1.0, 2.0],
            rpn_post_nms_top_n: 20,
            output_score: true,
            ..Proposal::default()
        };
        let run = |c: &[usize], b: &[usize], i: &[usize]| p.infer(&[Some(c), Some(b), Some(i)]);
        assert_eq!(
            run(&[1, 12, 3, 4], &[1, 24, 3, 4], &[1, 3]).unwrap(),
            vec![vec![20, 5], vec![20, 1]]
        );
        assert!(run(&[2, 12, 3, 4], &[2, 24, 3, 4], &[2, 3]).is_err());
        assert!(run(&[1, 10, 3, 4], &[1, 20, 3, 4], &[1, 3]).is_err());
        assert!(run(&[1, 12, 3, 4], &[1, 24, 4, 4], &[1, 3]).is_err());
        assert!(run(&[1, 12, 3, 4], &[1, 24, 3, 4], &[1, 4]).is_err());
        assert!(run(&[1, 12, 0, 4], &[1, 24, 0, 4], &[1, 3]).is_err());
        let (what, _) = p
            .check(&[1, 12, 4096, 4096], &[1, 24, 4096, 4096], &[1, 3])
            .unwrap_err();
        assert_eq!(what, "cls_prob");
        assert!(Proposal {
            rpn_post_nms_top_n: 0,
            ..Proposal::default()
        }
        .validate()
        .is_err());
        assert!(Proposal {
            ratios: vec![],
            ..Proposal::default()
        }
        .validate()
        .is_err());
        let m = MultiProposal(p.clone());
        assert_eq!(
            m.infer(&[Some(&[3, 12, 3, 4]), Some(&[3, 24, 3, 4]), Some(&[3, 3])])
                .unwrap(),
            vec![vec![60, 5], vec![60, 1]]
        );
        assert!(m
            .infer(&[Some(&[3, 12, 3, 4]), Some(&[3, 24, 3, 4]), Some(&[1, 3])])
            .is_err());
        assert!(m
            .infer(&[Some(&[0, 12, 3, 4]), Some(&[0, 24, 3, 4]), Some(&[0, 3])])
            .is_err());
    }
}
