//! Detection (MXNet 1.9.1's `contrib` box operators): `box_nms`, `box_decode` and
//! `box_encode`, computed in float32 as MXNet's CPU kernels compute them, so that every
//! comparison (a score against `valid_thresh`, an IoU against `overlap_thresh`) decides as
//! MXNet's does. The kernels on `f32` slices are shared with ward-exec's tract kernels and
//! ward-train's gradient rule; the [`Array`] functions wrap them for the interpreter.
//!
//! `box_nms`, as MXNet's `BoxNMSForward` does it:
//! - a row is valid when its score is greater than `valid_thresh` (NaN never is) and, with
//!   an `id_index`, its class differs from `background_id` (both as float32);
//! - the valid rows of each batch are sorted by descending score with a stable sort (MXNet
//!   sorts all batches' scores with `std::stable_sort`, then the batch ids, stably): equal
//!   scores keep their row order;
//! - only the first `topk` of them take part; each, in order, suppresses every later one
//!   (of the same class, unless `force_suppress` or no `id_index`; classes compared as
//!   truncated ints) whose IoU with it is greater than `overlap_thresh`, IoU being
//!   `i / (area_a + area_b − i)` with a negative width or height making an area 0;
//! - the survivors are written first, in that order, every other row −1;
//! - with `out_format` other than `in_format`, every output row is converted, except that
//!   MXNet leaves a row alone when its first coordinate is negative (a −1 row, but also a
//!   surviving box whose xmin or x is below 0);
//! - `topk = 0` (or no boxes) returns the input unchanged, unconverted.
//!
//! MXNet's hidden second output records the input row of each output row; its backward
//! copies the output's gradient rows back to those rows ([`box_nms_rows`]).

use super::{Array, KResult, KernelError};
use crate::ops::detection::{BoxDecode, BoxFormat, BoxNms, MultiBoxDetection, Proposal};

const NMS: &str = "box_nms";

/// One dimension's overlap of two boxes (MXNet's `Intersect`): `a` and `b` hold the
/// dimension's start and, two further on, its end (corner) or its size (center).
fn intersect(a0: f32, a2: f32, b0: f32, b2: f32, format: BoxFormat) -> f32 {
    let w = match format {
        BoxFormat::Corner => {
            let left = if a0 > b0 { a0 } else { b0 };
            let right = if a2 < b2 { a2 } else { b2 };
            right - left
        }
        BoxFormat::Center => {
            let aw = a2 / 2.0;
            let bw = b2 / 2.0;
            let (al, ar) = (a0 - aw, a0 + aw);
            let (bl, br) = (b0 - bw, b0 + bw);
            let left = if bl > al { bl } else { al };
            let right = if br < ar { br } else { ar };
            right - left
        }
    };
    if w > 0.0 {
        w
    } else {
        0.0
    }
}

/// A box's area (MXNet's `BoxArea`): 0 when its width or height is negative.
fn area(b: [f32; 4], format: BoxFormat) -> f32 {
    let (w, h) = match format {
        BoxFormat::Corner => (b[2] - b[0], b[3] - b[1]),
        BoxFormat::Center => (b[2], b[3]),
    };
    if w < 0.0 || h < 0.0 {
        0.0
    } else {
        w * h
    }
}

/// The four values from `at` of `x`.
fn quad(x: &[f32], at: usize) -> Option<[f32; 4]> {
    match x.get(at..at.checked_add(4)?)? {
        [a, b, c, d] => Some([*a, *b, *c, *d]),
        _ => None,
    }
}

/// MXNet's class comparison reads the class as a C++ `int`.
fn class_of(v: f32) -> i64 {
    // `as` saturates (NaN to 0) where C++ is undefined; any finite class truncates as
    // MXNet's cast does.
    v as i32 as i64
}

/// `box_nms` on a row-major f32 input of `shape`: the output (the input's shape) and, for
/// each output row, the input row it holds (MXNet's hidden record; `None` for a −1 row).
pub fn box_nms_rows(
    x: &[f32],
    shape: &[usize],
    op: &BoxNms,
) -> KResult<(Vec<f32>, Vec<Option<usize>>)> {
    let layout = op.layout(shape).map_err(|e| KernelError::new(NMS, e))?;
    let (w, n) = (layout.width, layout.boxes);
    let rows = layout
        .batches
        .checked_mul(n)
        .ok_or_else(|| KernelError::new(NMS, "too many boxes"))?;
    let len = rows
        .checked_mul(w)
        .filter(|&l| l == x.len())
        .ok_or_else(|| KernelError::new(NMS, format!("data of {} for {shape:?}", x.len())))?;
    let topk = op.topk.map_or(n, |k| k.min(n));
    if topk == 0 {
        return Ok((x.to_vec(), (0..rows).map(Some).collect()));
    }
    let at = |row: usize, i: usize| x.get(row * w + i).copied().unwrap_or(f32::NAN);
    let valid_thresh = op.valid_thresh as f32;
    let background = op.background_id as f32;
    let overlap = op.overlap_thresh as f32;
    let mut out = vec![-1.0f32; len];
    let mut record = vec![None; rows];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for b in 0..layout.batches {
        order.clear();
        order.extend((b * n..(b + 1) * n).filter(|&r| {
            at(r, op.score_index) > valid_thresh
                && op.id_index.is_none_or(|id| at(r, id) != background)
        }));
        // Stable: equal scores keep their row order (no NaN is left to compare).
        order.sort_by(|&p, &q| {
            at(q, op.score_index)
                .partial_cmp(&at(p, op.score_index))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        order.truncate(topk);
        let boxes: Vec<[f32; 4]> = order
            .iter()
            .map(|&r| quad(x, r * w + op.coord_start).unwrap_or([f32::NAN; 4]))
            .collect();
        let areas: Vec<f32> = boxes.iter().map(|&q| area(q, op.in_format)).collect();
        let mut kept = vec![true; order.len()];
        for r in 0..order.len() {
            if !kept.get(r).copied().unwrap_or(false) {
                continue;
            }
            let (Some(&rb), Some(&ra), Some(&rrow)) = (boxes.get(r), areas.get(r), order.get(r))
            else {
                continue;
            };
            for p in r + 1..order.len() {
                if !kept.get(p).copied().unwrap_or(false) {
                    continue;
                }
                let (Some(&pb), Some(&pa), Some(&prow)) =
                    (boxes.get(p), areas.get(p), order.get(p))
                else {
                    continue;
                };
                if let (false, Some(id)) = (op.force_suppress, op.id_index) {
                    if class_of(at(rrow, id)) != class_of(at(prow, id)) {
                        continue;
                    }
                }
                let i = intersect(rb[0], rb[2], pb[0], pb[2], op.in_format)
                    * intersect(rb[1], rb[3], pb[1], pb[3], op.in_format);
                let iou = i / (ra + pa - i);
                if iou > overlap {
                    if let Some(k) = kept.get_mut(p) {
                        *k = false;
                    }
                }
            }
        }
        let survivors = order.iter().zip(&kept).filter(|(_, &k)| k).map(|(&r, _)| r);
        for (slot, r) in survivors.enumerate() {
            let to = (b * n + slot) * w;
            if let (Some(dst), Some(src)) = (out.get_mut(to..to + w), x.get(r * w..r * w + w)) {
                dst.copy_from_slice(src);
            }
            if let Some(rec) = record.get_mut(b * n + slot) {
                *rec = Some(r);
            }
        }
    }
    if op.in_format != op.out_format {
        for row in 0..rows {
            let at = row * w + op.coord_start;
            let Some([a, b, cc, d]) = quad(&out, at) else {
                continue;
            };
            if a < 0.0 {
                continue;
            }
            let converted = match op.out_format {
                BoxFormat::Center => [(a + cc) / 2.0, (b + d) / 2.0, cc - a, d - b],
                BoxFormat::Corner => {
                    let (hw, hh) = (cc / 2.0, d / 2.0);
                    [a - hw, b - hh, a + hw, b + hh]
                }
            };
            if let Some(c) = out.get_mut(at..at + 4) {
                c.copy_from_slice(&converted);
            }
        }
    }
    Ok((out, record))
}

/// `box_nms` for the interpreter.
pub fn box_nms(x: &Array, op: &BoxNms) -> KResult<Array> {
    let data: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
    let (out, _) = box_nms_rows(&data, &x.shape, op)?;
    Array::new(x.shape.clone(), out.into_iter().map(f64::from).collect())
}

/// The gradient MXNet's `box_nms` backward gives its data: each output row's gradient
/// copied to the input row it holds, 0 elsewhere.
pub fn box_nms_backward(x: &Array, op: &BoxNms, head: &Array) -> KResult<Array> {
    let data: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
    let (_, record) = box_nms_rows(&data, &x.shape, op)?;
    let w = x.shape.last().copied().unwrap_or(1);
    if head.data.len() != x.data.len() {
        return Err(KernelError::new(NMS, "head gradient of another shape"));
    }
    let mut grad = vec![0.0; x.data.len()];
    for (slot, row) in record.iter().enumerate() {
        let Some(row) = *row else { continue };
        if let (Some(dst), Some(src)) = (
            grad.get_mut(row * w..row * w + w),
            head.data.get(slot * w..slot * w + w),
        ) {
            dst.copy_from_slice(src);
        }
    }
    Array::new(x.shape.clone(), grad)
}

/// `box_decode` on row-major f32 data (batch, n, 4) and anchors (n boxes of 4).
pub fn box_decode_f32(
    x: &[f32],
    data_shape: &[usize],
    anchors: &[f32],
    anchors_shape: &[usize],
    op: &BoxDecode,
) -> KResult<Vec<f32>> {
    const OP: &str = "box_decode";
    let (b, n) =
        BoxDecode::layout(data_shape, anchors_shape).map_err(|e| KernelError::new(OP, e))?;
    let rows = b
        .checked_mul(n)
        .ok_or_else(|| KernelError::new(OP, "too many boxes"))?;
    if x.len() != rows * 4 || anchors.len() != n * 4 {
        return Err(KernelError::new(OP, "inputs shorter than their shapes"));
    }
    let std = op.std.map(|s| s as f32);
    let mut out = vec![0.0f32; rows * 4];
    for i in 0..rows {
        let (Some(d), Some(a)) = (quad(x, i * 4), quad(anchors, (i % n.max(1)) * 4)) else {
            continue;
        };
        let [mut ax, mut ay, mut aw, mut ah] = a;
        if op.format == BoxFormat::Corner {
            aw -= ax;
            ah -= ay;
            // MXNet adds half the size in double, then stores the float.
            ax = (f64::from(ax) + f64::from(aw) * 0.5) as f32;
            ay = (f64::from(ay) + f64::from(ah) * 0.5) as f32;
        }
        let ox = d[0] * std[0] * aw + ax;
        let oy = d[1] * std[1] * ah + ay;
        let mut dw = d[2] * std[2];
        let mut dh = d[3] * std[3];
        if let Some(clip) = op.clip {
            let clip = clip as f32;
            dw = if dw < clip { dw } else { clip };
            dh = if dh < clip { dh } else { clip };
        }
        let ow = dw.exp() * aw * 0.5;
        let oh = dh.exp() * ah * 0.5;
        if let Some(o) = out.get_mut(i * 4..i * 4 + 4) {
            o.copy_from_slice(&[ox - ow, oy - oh, ox + ow, oy + oh]);
        }
    }
    Ok(out)
}

/// `box_decode` for the interpreter.
pub fn box_decode(x: &Array, anchors: &Array, op: &BoxDecode) -> KResult<Array> {
    let f = |a: &Array| -> Vec<f32> { a.data.iter().map(|&v| v as f32).collect() };
    let out = box_decode_f32(&f(x), &x.shape, &f(anchors), &anchors.shape, op)?;
    Array::new(x.shape.clone(), out.into_iter().map(f64::from).collect())
}

/// `box_encode` on row-major f32 inputs: samples and matches (batch, n), anchors
/// (batch, n, 4), refs (batch, m, 4), means and stds (4). The targets and the masks, each
/// (batch, n, 4). A positive sample whose match is not a row of its refs (which MXNet
/// reads out of bounds, undefined) reads the nearest row.
pub fn box_encode_f32(
    ins: [&[f32]; 6],
    b: usize,
    n: usize,
    m: usize,
) -> KResult<(Vec<f32>, Vec<f32>)> {
    const OP: &str = "box_encode";
    let [samples, matches, anchors, refs, means, stds] = ins;
    let rows = b
        .checked_mul(n)
        .ok_or_else(|| KernelError::new(OP, "too many boxes"))?;
    if samples.len() != rows
        || matches.len() != rows
        || anchors.len() != rows * 4
        || refs.len() != b * m * 4
        || means.len() != 4
        || stds.len() != 4
    {
        return Err(KernelError::new(OP, "inputs shorter than their shapes"));
    }
    let (Some(means), Some(stds)) = (quad(means, 0), quad(stds, 0)) else {
        return Err(KernelError::new(OP, "means and stds must hold 4 values"));
    };
    let mut targets = vec![0.0f32; rows * 4];
    let mut masks = vec![0.0f32; rows * 4];
    let half = |lo: f32, size: f32| (f64::from(lo) + f64::from(size) * 0.5) as f32;
    for i in 0..rows {
        let valid = samples.get(i).is_some_and(|&s| f64::from(s) > 0.5);
        if !valid {
            continue;
        }
        let j = i / n.max(1);
        let raw = matches.get(i).copied().unwrap_or(f32::NAN);
        if m == 0 {
            return Err(KernelError::new(
                OP,
                format!("positive anchor {i} has no refs to match"),
            ));
        }
        // MXNet truncates the match to an integer index, and reads outside the refs for
        // one that is not a row of them (undefined); ward reads the nearest row (NaN:
        // the first), the same in every backend.
        let matched = if raw.is_nan() {
            0
        } else {
            (raw.trunc().max(0.0) as usize).min(m - 1)
        };
        let (Some(r), Some(a)) = (quad(refs, (j * m + matched) * 4), quad(anchors, i * 4)) else {
            continue;
        };
        let (rw, rh) = (r[2] - r[0], r[3] - r[1]);
        let (rx, ry) = (half(r[0], rw), half(r[1], rh));
        let (aw, ah) = (a[2] - a[0], a[3] - a[1]);
        let (ax, ay) = (half(a[0], aw), half(a[1], ah));
        let t = [
            ((rx - ax) / aw - means[0]) / stds[0],
            ((ry - ay) / ah - means[1]) / stds[1],
            ((rw / aw).ln() - means[2]) / stds[2],
            ((rh / ah).ln() - means[3]) / stds[3],
        ];
        if let Some(o) = targets.get_mut(i * 4..i * 4 + 4) {
            o.copy_from_slice(&t);
        }
        if let Some(o) = masks.get_mut(i * 4..i * 4 + 4) {
            o.copy_from_slice(&[1.0; 4]);
        }
    }
    Ok((targets, masks))
}

/// `box_encode` for the interpreter.
pub fn box_encode(ins: [&Array; 6]) -> KResult<Vec<Array>> {
    let shapes: Vec<Option<&[usize]>> = ins.iter().map(|a| Some(a.shape.as_slice())).collect();
    let (b, n, m) = crate::ops::detection::BoxEncode::layout(&shapes)
        .map_err(|e| KernelError::new("box_encode", e))?;
    let f32s: Vec<Vec<f32>> = ins
        .iter()
        .map(|a| a.data.iter().map(|&v| v as f32).collect())
        .collect();
    let get = |i: usize| f32s.get(i).map(Vec::as_slice).unwrap_or_default();
    let (t, mk) = box_encode_f32([get(0), get(1), get(2), get(3), get(4), get(5)], b, n, m)?;
    let shape = vec![b, n, 4];
    Ok(vec![
        Array::new(shape.clone(), t.into_iter().map(f64::from).collect())?,
        Array::new(shape, mk.into_iter().map(f64::from).collect())?,
    ])
}

/// `std::min(a, b)` and `std::max(a, b)` as libstdc++ writes them: `b` only when it
/// compares below (above) `a`, so a NaN `b` gives `a` and a NaN `a` gives `a`.
fn cmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

fn cmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// MXNet's `TransformLocations`: an anchor (corner) moved by its offsets scaled by the
/// variances, in float32; with `clip`, each coordinate as `max(0, min(1, v))` (a NaN
/// becomes 1, as libstdc++'s `std::min(1, NaN)` is 1).
fn decode_multibox(anchor: [f32; 4], loc: [f32; 4], clip: bool, v: [f32; 4]) -> [f32; 4] {
    let [al, at, ar, ab] = anchor;
    let (aw, ah) = (ar - al, ab - at);
    let (ax, ay) = ((al + ar) / 2.0, (at + ab) / 2.0);
    let ox = loc[0] * v[0] * aw + ax;
    let oy = loc[1] * v[1] * ah + ay;
    let ow = (loc[2] * v[2]).exp() * aw / 2.0;
    let oh = (loc[3] * v[3]).exp() * ah / 2.0;
    let out = [ox - ow, oy - oh, ox + ow, oy + oh];
    if clip {
        out.map(|c| cmax(0.0, cmin(1.0, c)))
    } else {
        out
    }
}

/// MXNet's `CalculateOverlap` of two corner boxes: 0 when the union is not positive.
fn multibox_iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = cmax(0.0, cmin(a[2], b[2]) - cmax(a[0], b[0]));
    let h = cmax(0.0, cmin(a[3], b[3]) - cmax(a[1], b[1]));
    let i = w * h;
    let u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i;
    if u <= 0.0 {
        0.0
    } else {
        i / u
    }
}

/// `_contrib_MultiBoxDetection` on row-major f32 inputs: `cls_prob` (batch, classes, n),
/// `loc_pred` (batch, n·4) and `anchor` (k, n, 4; the first n boxes read); the output
/// (batch, n, 6), as MXNet 1.9.1's CPU kernel computes it:
/// - each anchor takes the first class above 0 with the largest probability (a
///   probability must exceed −1 to count; NaN never does), and is a detection when that
///   probability is at least `threshold`; its row is `[class − 1, score, box]`, the box
///   decoded by `decode_multibox`; the detections come first, in anchor order, every
///   other row −1;
/// - with `nms_threshold` outside (0, 1], that is all: no sorting, no `nms_topk`;
/// - else the detections are sorted by descending score, stably (equal scores keep
///   anchor order), and with `nms_topk` below their count only the first `nms_topk` are
///   written in that order: the rows after them keep the unsorted detection that was
///   there, its class set to −1 (MXNet's quirk, pinned by the `mbdet_` cases);
/// - then each kept row, in order, suppresses (class −1, the rest of the row left) every
///   later kept row of the same class (of any class with `force_suppress`) whose IoU with
///   it is `nms_threshold` or more.
pub fn multibox_detection_f32(
    cls_prob: &[f32],
    loc_pred: &[f32],
    anchor: &[f32],
    shapes: [&[usize]; 3],
    op: &MultiBoxDetection,
) -> KResult<Vec<f32>> {
    const OP: &str = "multibox_detection";
    let [cs, ls, as_] = shapes;
    let l = MultiBoxDetection::layout(cs, ls, as_).map_err(|e| KernelError::new(OP, e))?;
    let (c, n) = (l.classes, l.anchors);
    let per_batch = c
        .checked_mul(n)
        .ok_or_else(|| KernelError::new(OP, "too many scores"))?;
    if Some(cls_prob.len()) != l.batches.checked_mul(per_batch)
        || loc_pred.len() != l.batches * n * 4
        || anchor.len() != n * 4
    {
        return Err(KernelError::new(OP, "inputs shorter than their shapes"));
    }
    let v = op.variances.map(|x| x as f32);
    let threshold = op.threshold as f32;
    let nms_threshold = op.nms_threshold as f32;
    let mut out = vec![-1.0f32; l.batches * n * 6];
    let mut rows: Vec<[f32; 6]> = Vec::with_capacity(n);
    for b in 0..l.batches {
        rows.clear();
        for i in 0..n {
            let mut score = -1.0f32;
            let mut id = 0usize;
            for j in 1..c {
                let p = cls_prob
                    .get(b * per_batch + j * n + i)
                    .copied()
                    .unwrap_or(f32::NAN);
                if p > score {
                    score = p;
                    id = j;
                }
            }
            if id == 0 || score < threshold {
                continue;
            }
            let (Some(a), Some(d)) = (quad(anchor, i * 4), quad(loc_pred, (b * n + i) * 4)) else {
                continue;
            };
            let [x0, y0, x1, y1] = decode_multibox(a, d, op.clip, v);
            rows.push([(id - 1) as f32, score, x0, y0, x1, y1]);
        }
        let valid = rows.len();
        if valid > 0 && op.suppresses() {
            let mut order: Vec<usize> = (0..valid).collect();
            // Stable, as MXNet's std::stable_sort: equal scores keep anchor order (no
            // score is NaN).
            order.sort_by(|&p, &q| {
                let (sp, sq) = (
                    rows.get(p).map_or(0.0, |r| r[1]),
                    rows.get(q).map_or(0.0, |r| r[1]),
                );
                sq.partial_cmp(&sp).unwrap_or(std::cmp::Ordering::Equal)
            });
            let keep = op
                .nms_topk
                .map_or(valid, |k| if k > 0 { k.min(valid) } else { valid });
            let mut sorted: Vec<[f32; 6]> = Vec::with_capacity(valid);
            for (slot, &from) in order.iter().enumerate().take(valid) {
                if slot < keep {
                    sorted.push(rows.get(from).copied().unwrap_or([-1.0; 6]));
                } else {
                    // Past nms_topk: the unsorted row that was in this slot, dropped.
                    let mut r = rows.get(slot).copied().unwrap_or([-1.0; 6]);
                    r[0] = -1.0;
                    sorted.push(r);
                }
            }
            for i in 0..keep {
                let Some(&ri) = sorted.get(i) else { continue };
                if ri[0] < 0.0 {
                    continue;
                }
                let bi = [ri[2], ri[3], ri[4], ri[5]];
                for j in i + 1..keep {
                    let Some(rj) = sorted.get_mut(j) else {
                        continue;
                    };
                    if rj[0] < 0.0 {
                        continue;
                    }
                    if op.force_suppress || ri[0] == rj[0] {
                        let iou = multibox_iou(bi, [rj[2], rj[3], rj[4], rj[5]]);
                        if iou >= nms_threshold {
                            rj[0] = -1.0;
                        }
                    }
                }
            }
            rows = sorted;
        }
        for (slot, r) in rows.iter().enumerate() {
            let at = (b * n + slot) * 6;
            if let Some(dst) = out.get_mut(at..at + 6) {
                dst.copy_from_slice(r);
            }
        }
    }
    Ok(out)
}

/// `_contrib_MultiBoxDetection` for the interpreter.
pub fn multibox_detection(
    cls_prob: &Array,
    loc_pred: &Array,
    anchor: &Array,
    op: &MultiBoxDetection,
) -> KResult<Array> {
    let f = |a: &Array| -> Vec<f32> { a.data.iter().map(|&v| v as f32).collect() };
    let out = multibox_detection_f32(
        &f(cls_prob),
        &f(loc_pred),
        &f(anchor),
        [&cls_prob.shape, &loc_pred.shape, &anchor.shape],
        op,
    )?;
    let shape = vec![
        cls_prob.shape.first().copied().unwrap_or(0),
        cls_prob.shape.get(2).copied().unwrap_or(0),
        6,
    ];
    Array::new(shape, out.into_iter().map(f64::from).collect())
}

/// MXNet's `GenerateAnchors` for `_contrib_Proposal`: for each ratio, each scale, a box
/// around the centre of the `feature_stride` square, its sizes rounded as MXNet rounds
/// them (float32, with the double constants where MXNet's expressions hold them).
pub fn proposal_anchors(op: &Proposal) -> Vec<[f32; 4]> {
    let base = [0.0f32, 0.0, (f64::from(op.feature_stride) - 1.0) as f32];
    let w = base[2] - base[0] + 1.0;
    let h = w;
    let x_ctr = (f64::from(base[0]) + 0.5 * f64::from(w - 1.0)) as f32;
    let y_ctr = x_ctr;
    let size = w * h;
    let mut out = Vec::with_capacity(op.ratios.len() * op.scales.len());
    for &ratio in &op.ratios {
        for &scale in &op.scales {
            let size_ratios = (size / ratio).floor();
            let new_w = (size_ratios.sqrt() + 0.5).floor() * scale;
            let new_h = (new_w / scale * ratio + 0.5).floor() * scale;
            out.push([
                x_ctr - 0.5 * (new_w - 1.0),
                y_ctr - 0.5 * (new_h - 1.0),
                x_ctr + 0.5 * (new_w - 1.0),
                y_ctr + 0.5 * (new_h - 1.0),
            ]);
        }
    }
    out
}

/// `_contrib_Proposal` on row-major f32 inputs `cls_prob` (1, 2A, H, W), `bbox_pred`
/// (1, 4A, H, W) and `im_info` (1, 3): the rois (rpn_post_nms_top_n, 5) and their scores
/// (rpn_post_nms_top_n, 1), as MXNet 1.9.1's CPU kernel computes them:
/// - anchor `a` of cell (h, w) is proposal `(h·W + w)·A + a`, the base anchor shifted by
///   `feature_stride` per cell, scored by foreground channel `A + a`;
/// - it is moved by its deltas (`iou_loss`: its corners plus the deltas) in float32 with
///   MXNet's double constants, and clipped to `[0, im_width − 1] × [0, im_height − 1]`;
///   cells at or past `trunc(im_height / feature_stride)` rows or the like columns get the
///   score −1 (an image larger than the map is refused, as MXNet refuses it);
/// - a box narrower or lower than `rpn_min_size · scale` gets the score −1 and is grown
///   by half that size on every side (not clipped again: MXNet's quirk);
/// - the proposals are ordered by descending score, stably (MXNet 1.9.1's
///   `std::stable_sort`: equal scores, the −1s above all, keep the proposals' order; a
///   NaN score is refused), the first `rpn_pre_nms_top_n` taken and suppressed greedily
///   (IoU with +1 pixel sizes above `threshold`) until `rpn_post_nms_top_n` are kept;
/// - output row `i` is kept box `i mod kept`, `[0, x1, y1, x2, y2]`: when fewer than
///   `rpn_post_nms_top_n` survive, they repeat.
///
/// With `multi` (MXNet's `_contrib_MultiProposal`), each image of the batch in turn, with
/// its own `im_info` row, its rois numbered by the image in their first column.
pub fn proposal_f32(
    cls_prob: &[f32],
    bbox_pred: &[f32],
    im_info: &[f32],
    shapes: [&[usize]; 3],
    op: &Proposal,
    multi: bool,
) -> KResult<(Vec<f32>, Vec<f32>)> {
    let [cs, bs, is] = shapes;
    let l = op
        .check_images(cs, bs, is, multi)
        .map_err(|(what, e)| KernelError::new(OP_PROPOSAL, format!("{what}: {e}")))?;
    let plane = l.height * l.width;
    let (c_len, b_len) = (2 * l.anchors * plane, 4 * l.anchors * plane);
    if cls_prob.len() != l.images * c_len
        || bbox_pred.len() != l.images * b_len
        || im_info.len() != l.images * 3
    {
        return Err(KernelError::new(
            OP_PROPOSAL,
            "inputs shorter than their shapes",
        ));
    }
    let mut rois = Vec::with_capacity(l.images * op.rpn_post_nms_top_n * 5);
    let mut scores = Vec::with_capacity(l.images * op.rpn_post_nms_top_n);
    for b in 0..l.images {
        let part = |x: &[f32], len: usize| x.get(b * len..(b + 1) * len).map(<[f32]>::to_vec);
        let (Some(c), Some(d), Some(i)) = (
            part(cls_prob, c_len),
            part(bbox_pred, b_len),
            part(im_info, 3),
        ) else {
            return Err(KernelError::new(
                OP_PROPOSAL,
                "inputs shorter than their shapes",
            ));
        };
        let (r, s) = proposal_image(&c, &d, &i, &l, op, b as f32)?;
        rois.extend(r);
        scores.extend(s);
    }
    Ok((rois, scores))
}

const OP_PROPOSAL: &str = "proposal";

/// [`proposal_f32`] on one image's inputs, its rois numbered `image`.
fn proposal_image(
    cls_prob: &[f32],
    bbox_pred: &[f32],
    im_info: &[f32],
    l: &crate::ops::detection::ProposalLayout,
    op: &Proposal,
    image: f32,
) -> KResult<(Vec<f32>, Vec<f32>)> {
    const OP: &str = OP_PROPOSAL;
    let (a_n, h_n, w_n) = (l.anchors, l.height, l.width);
    let count = l.count();
    let plane = h_n * w_n;
    let info = |i: usize| im_info.get(i).copied().unwrap_or(f32::NAN);
    let (im_h, im_w, im_scale) = (info(0), info(1), info(2));
    let stride = op.feature_stride as f32;
    // MXNet truncates to an int (undefined past its range or for NaN: refused here).
    let real = |size: f32, dim: usize, what: &str| -> KResult<i64> {
        let q = size / stride;
        if q.is_nan() || q >= dim as f32 + 1.0 {
            return Err(KernelError::new(
                OP,
                format!("im_info's {what} {size} spans {q} cells of stride {stride}: the map has {dim} (MXNet's check)"),
            ));
        }
        Ok(q.max(-1.0) as i64)
    };
    let real_h = real(im_h, h_n, "height")?;
    let real_w = real(im_w, w_n, "width")?;
    let anchors = proposal_anchors(op);
    // [x1, y1, x2, y2, score] per proposal.
    let mut props = vec![[0.0f32; 5]; count];
    let clip_x = |v: f32| cmax(cmin(v, im_w - 1.0), 0.0);
    let clip_y = |v: f32| cmax(cmin(v, im_h - 1.0), 0.0);
    for (a, base) in anchors.iter().enumerate() {
        for h in 0..h_n {
            for w in 0..w_n {
                let index = (h * w_n + w) * a_n + a;
                let (dx_, dy_) = (
                    (w as u64 * u64::from(op.feature_stride)) as f32,
                    (h as u64 * u64::from(op.feature_stride)) as f32,
                );
                let b = [base[0] + dx_, base[1] + dy_, base[2] + dx_, base[3] + dy_];
                let score = cls_prob
                    .get((a_n + a) * plane + h * w_n + w)
                    .copied()
                    .unwrap_or(f32::NAN);
                let delta = |k: usize| {
                    bbox_pred
                        .get((a * 4 + k) * plane + h * w_n + w)
                        .copied()
                        .unwrap_or(f32::NAN)
                };
                let (d0, d1, d2, d3) = (delta(0), delta(1), delta(2), delta(3));
                let moved = if op.iou_loss {
                    [b[0] + d0, b[1] + d1, b[2] + d2, b[3] + d3]
                } else {
                    let width = (f64::from(b[2] - b[0]) + 1.0) as f32;
                    let height = (f64::from(b[3] - b[1]) + 1.0) as f32;
                    let ctr_x = (f64::from(b[0]) + 0.5 * (f64::from(width) - 1.0)) as f32;
                    let ctr_y = (f64::from(b[1]) + 0.5 * (f64::from(height) - 1.0)) as f32;
                    let pcx = d0 * width + ctr_x;
                    let pcy = d1 * height + ctr_y;
                    let pw = d2.exp() * width;
                    let ph = d3.exp() * height;
                    let half_w = 0.5 * (f64::from(pw) - 1.0);
                    let half_h = 0.5 * (f64::from(ph) - 1.0);
                    [
                        (f64::from(pcx) - half_w) as f32,
                        (f64::from(pcy) - half_h) as f32,
                        (f64::from(pcx) + half_w) as f32,
                        (f64::from(pcy) + half_h) as f32,
                    ]
                };
                let padded = h as i64 >= real_h || w as i64 >= real_w;
                if let Some(p) = props.get_mut(index) {
                    *p = [
                        clip_x(moved[0]),
                        clip_y(moved[1]),
                        clip_x(moved[2]),
                        clip_y(moved[3]),
                        if padded { -1.0 } else { score },
                    ];
                }
            }
        }
    }
    let min_size = op.rpn_min_size as f32 * im_scale;
    for p in &mut props {
        let iw = p[2] - p[0] + 1.0;
        let ih = p[3] - p[1] + 1.0;
        if iw < min_size || ih < min_size {
            p[0] -= min_size / 2.0;
            p[1] -= min_size / 2.0;
            p[2] += min_size / 2.0;
            p[3] += min_size / 2.0;
            p[4] = -1.0;
        }
    }
    let scores: Vec<f32> = props.iter().map(|p| p[4]).collect();
    // MXNet 1.9.1 sorts with std::stable_sort: equal scores (the −1s above all) keep the
    // proposals' order. Where a NaN score would land is its merge sort's accident, which
    // ward does not reproduce: refused.
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(KernelError::new(
            OP,
            format!("cls_prob holds NaN (the score of proposal {i}), whose place in MXNet's sort is undefined"),
        ));
    }
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|&p, &q| {
        let score = |i: usize| scores.get(i).copied().unwrap_or(0.0);
        score(q)
            .partial_cmp(&score(p))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let pre = op.rpn_pre_nms_top_n.map_or(count, |p| p.min(count));
    let post = op.rpn_post_nms_top_n.min(pre);
    let dets: Vec<[f32; 5]> = order
        .iter()
        .take(pre)
        .map(|&i| props.get(i).copied().unwrap_or([f32::NAN; 5]))
        .collect();
    let areas: Vec<f32> = dets
        .iter()
        .map(|d| (d[2] - d[0] + 1.0) * (d[3] - d[1] + 1.0))
        .collect();
    let threshold = op.threshold as f32;
    let mut suppressed = vec![false; dets.len()];
    let mut keep: Vec<usize> = Vec::with_capacity(post);
    for i in 0..dets.len() {
        if keep.len() >= post {
            break;
        }
        if suppressed.get(i).copied().unwrap_or(true) {
            continue;
        }
        let (Some(di), Some(&ai)) = (dets.get(i), areas.get(i)) else {
            continue;
        };
        keep.push(i);
        for j in i + 1..dets.len() {
            if suppressed.get(j).copied().unwrap_or(true) {
                continue;
            }
            let (Some(dj), Some(&aj)) = (dets.get(j), areas.get(j)) else {
                continue;
            };
            let xx1 = cmax(di[0], dj[0]);
            let yy1 = cmax(di[1], dj[1]);
            let xx2 = cmin(di[2], dj[2]);
            let yy2 = cmin(di[3], dj[3]);
            let w = cmax(0.0, xx2 - xx1 + 1.0);
            let h = cmax(0.0, yy2 - yy1 + 1.0);
            let inter = w * h;
            let ovr = inter / (ai + aj - inter);
            if ovr > threshold {
                if let Some(s) = suppressed.get_mut(j) {
                    *s = true;
                }
            }
        }
    }
    let rows = op.rpn_post_nms_top_n;
    let mut rois = Vec::with_capacity(rows * 5);
    let mut out_scores = Vec::with_capacity(rows);
    for i in 0..rows {
        // keep holds at least the first box (pre and post are at least 1).
        let d = keep
            .get(i % keep.len().max(1))
            .and_then(|&k| dets.get(k))
            .copied()
            .ok_or_else(|| KernelError::new(OP, "no proposal kept"))?;
        rois.extend_from_slice(&[image, d[0], d[1], d[2], d[3]]);
        out_scores.push(d[4]);
    }
    Ok((rois, out_scores))
}

/// `_contrib_Proposal` (`_contrib_MultiProposal` with `multi`) for the interpreter: the
/// rois, and with `output_score` the scores.
pub fn proposal(
    cls_prob: &Array,
    bbox_pred: &Array,
    im_info: &Array,
    op: &Proposal,
    multi: bool,
) -> KResult<Vec<Array>> {
    let f = |a: &Array| -> Vec<f32> { a.data.iter().map(|&v| v as f32).collect() };
    let (rois, scores) = proposal_f32(
        &f(cls_prob),
        &f(bbox_pred),
        &f(im_info),
        [&cls_prob.shape, &bbox_pred.shape, &im_info.shape],
        op,
        multi,
    )?;
    let rows = scores.len();
    let mut out = vec![Array::new(
        vec![rows, 5],
        rois.into_iter().map(f64::from).collect(),
    )?];
    if op.output_score {
        out.push(Array::new(
            vec![rows, 1],
            scores.into_iter().map(f64::from).collect(),
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nms_keeps_mxnets_order_and_fill() {
        // Rows: [id, score, x1, y1, x2, y2].
        let x = [
            0.0, 0.5, 0.1, 0.1, 0.4, 0.4, //
            1.0, 0.5, 0.12, 0.1, 0.4, 0.4, //
            0.0, 0.9, -0.5, 0.0, 0.2, 0.2, //
            2.0, 0.3, 0.5, 0.5, 0.9, 0.9,
        ];
        let shape = [4, 6];
        let (out, rec) = box_nms_rows(&x, &shape, &BoxNms::default()).unwrap();
        // Equal scores keep their row order; row 1 overlaps row 0 and goes.
        assert_eq!(rec, vec![Some(2), Some(0), Some(3), None]);
        assert_eq!(&out[18..], &[-1.0; 6]);
        // topk 0: the input unchanged.
        let op = BoxNms {
            topk: Some(0),
            out_format: BoxFormat::Center,
            ..BoxNms::default()
        };
        assert_eq!(box_nms_rows(&x, &shape, &op).unwrap().0, x.to_vec());
        // A box with a negative xmin is not converted.
        let op = BoxNms {
            out_format: BoxFormat::Center,
            ..BoxNms::default()
        };
        let (out, _) = box_nms_rows(&x, &shape, &op).unwrap();
        assert_eq!(&out[..6], &x[12..18]);
        assert_eq!(&out[6..12], &[0.0, 0.5, 0.25, 0.25, 0.3, 0.3]);
    }

    #[test]
    fn multibox_detection_keeps_mxnets_rows() {
        // 3 classes (0 the background), 4 anchors; zero offsets decode to the anchors.
        let cls = [
            0.1, 0.9, 0.2, 0.3, //
            0.6, 0.05, 0.5, 0.4, //
            0.3, 0.05, 0.3, 0.3,
        ];
        let loc = [0.0; 16];
        let anc = [
            0.0, 0.0, 0.5, 0.5, //
            0.1, 0.1, 0.6, 0.6, //
            0.05, 0.05, 0.5, 0.5, //
            0.5, 0.5, 1.0, 1.0,
        ];
        let shapes: [&[usize]; 3] = [&[1, 3, 4], &[1, 16], &[1, 4, 4]];
        let run =
            |op: &MultiBoxDetection| multibox_detection_f32(&cls, &loc, &anc, shapes, op).unwrap();
        let out = run(&MultiBoxDetection::default());
        // Sorted 0.6, 0.5 (suppressed by the first, kept as class -1), 0.4, 0.05.
        assert_eq!(&out[..6], &[0.0, 0.6, 0.0, 0.0, 0.5, 0.5]);
        assert_eq!(&out[6..8], &[-1.0, 0.5]);
        assert_eq!(&out[12..14], &[0.0, 0.4]);
        assert_eq!(&out[18..20], &[0.0, 0.05]);
        // nms_topk 1: the rows past it are the unsorted detections, class -1.
        let top1 = run(&MultiBoxDetection {
            nms_topk: Some(1),
            ..MultiBoxDetection::default()
        });
        assert_eq!(&top1[..2], &[0.0, 0.6]);
        assert_eq!(&top1[6..8], &[-1.0, 0.05]);
        assert_eq!(&top1[12..14], &[-1.0, 0.5]);
        // No suppression outside (0, 1]: anchor order, every detection kept.
        let none = run(&MultiBoxDetection {
            nms_threshold: 0.0,
            nms_topk: Some(1),
            ..MultiBoxDetection::default()
        });
        let classes: Vec<f32> = none.chunks(6).map(|r| r[1]).collect();
        assert_eq!(classes, vec![0.6, 0.05, 0.5, 0.4]);
    }

    #[test]
    fn proposal_anchors_are_mxnets() {
        // Faster R-CNN's well-known anchors of stride 16, ratios (0.5, 1, 2), scales
        // (8, 16, 32), as MXNet's GenerateAnchors gives them.
        let op = Proposal {
            scales: vec![8.0, 16.0, 32.0],
            ..Proposal::default()
        };
        let want: [[f32; 4]; 9] = [
            [-84.0, -40.0, 99.0, 55.0],
            [-176.0, -88.0, 191.0, 103.0],
            [-360.0, -184.0, 375.0, 199.0],
            [-56.0, -56.0, 71.0, 71.0],
            [-120.0, -120.0, 135.0, 135.0],
            [-248.0, -248.0, 263.0, 263.0],
            [-36.0, -80.0, 51.0, 95.0],
            [-80.0, -168.0, 95.0, 183.0],
            [-168.0, -344.0, 183.0, 359.0],
        ];
        assert_eq!(proposal_anchors(&op), want.to_vec());
    }

    #[test]
    fn proposal_repeats_the_kept_boxes_and_refuses_nan() {
        // One anchor of stride 4 on a 1 × 2 map: two boxes, post 5 rows.
        let op = Proposal {
            scales: vec![1.0],
            ratios: vec![1.0],
            feature_stride: 4,
            rpn_min_size: 0,
            rpn_post_nms_top_n: 5,
            threshold: 0.7,
            output_score: true,
            ..Proposal::default()
        };
        let shapes: [&[usize]; 3] = [&[1, 2, 1, 2], &[1, 4, 1, 2], &[1, 3]];
        let cls = [0.0, 0.0, 0.3, 0.9];
        let deltas = [0.0; 8];
        let info = [4.0, 8.0, 1.0];
        let (rois, scores) = proposal_f32(&cls, &deltas, &info, shapes, &op, false).unwrap();
        assert_eq!(scores, vec![0.9, 0.3, 0.9, 0.3, 0.9]);
        assert_eq!(&rois[..5], &[0.0, 4.0, 0.0, 7.0, 3.0]);
        assert_eq!(&rois[10..15], &rois[..5]);
        // An image past the map is refused, as MXNet's check refuses it.
        assert!(proposal_f32(&cls, &deltas, &[8.0, 8.0, 1.0], shapes, &op, false).is_err());
        let nan = [0.0, 0.0, f32::NAN, 0.9];
        let e = proposal_f32(&nan, &deltas, &info, shapes, &op, false).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
    }
}
