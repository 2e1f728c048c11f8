//! Anchors: MXNet 1.9.1's `_contrib_MultiBoxPrior`, computed in float32 in MXNet's order
//! of operations, so the boxes are MXNet's to the bit. The tract lowering writes the same
//! values as a constant.

use super::{Array, KResult, KernelError};
use crate::ops::anchor::MultiBoxPrior;

/// The boxes for an (H, W) plane, `[xmin, ymin, xmax, ymax]` per anchor, cell by cell.
pub fn multibox_prior(op: &MultiBoxPrior, height: usize, width: usize) -> KResult<Vec<f32>> {
    let anchors = op
        .anchors()
        .map_err(|m| KernelError::new("multibox_prior", m))?;
    let len = height
        .checked_mul(width)
        .and_then(|n| n.checked_mul(anchors))
        .and_then(|n| n.checked_mul(4))
        .filter(|&n| n <= super::array::MAX_ELEMENTS)
        .ok_or_else(|| KernelError::new("multibox_prior", "too many boxes"))?;
    let (h, w) = (height as f32, width as f32);
    let [mut step_y, mut step_x] = op.steps;
    if step_y <= 0.0 || step_x <= 0.0 {
        step_y = 1.0 / h;
        step_x = 1.0 / w;
    }
    let first = op.sizes.first().copied().unwrap_or(1.0);
    let first_ratio = op.ratios.first().copied().unwrap_or(1.0).sqrt();
    let mut out = Vec::with_capacity(len);
    let mut push = |cx: f32, cy: f32, bw: f32, bh: f32| {
        for v in [cx - bw, cy - bh, cx + bw, cy + bh] {
            out.push(if op.clip { clip01(v) } else { v });
        }
    };
    for r in 0..height {
        let cy = (r as f32 + op.offsets[0]) * step_y;
        for c in 0..width {
            let cx = (c as f32 + op.offsets[1]) * step_x;
            // Every size at the first ratio (MXNet 1.9.1 reads it: a first ratio other
            // than 1 reshapes these boxes too), then the first size at every other ratio.
            for &size in &op.sizes {
                push(
                    cx,
                    cy,
                    size * h / w * first_ratio / 2.0,
                    size / first_ratio / 2.0,
                );
            }
            for &ratio in op.ratios.iter().skip(1) {
                let ratio = ratio.sqrt();
                push(cx, cy, first * h / w * ratio / 2.0, first / ratio / 2.0);
            }
        }
    }
    Ok(out)
}

/// MXNet's `clip_zero_one` (NaN passes, as through `clamp`).
fn clip01(v: f32) -> f32 {
    v.clamp(0.0, 1.0)
}

/// MXNet `_contrib_MultiBoxPrior` of `x` (only its dims 2 and 3 are read).
pub fn multibox_prior_array(x: &Array, op: &MultiBoxPrior) -> KResult<Array> {
    let (Some(&h), Some(&w)) = (x.shape.get(2), x.shape.get(3)) else {
        return Err(KernelError::new(
            "multibox_prior",
            format!("data {:?} has fewer than 4 dims", x.shape),
        ));
    };
    let boxes = multibox_prior(op, h, w)?;
    let n = boxes.len() / 4;
    Array::new(vec![1, n, 4], boxes.into_iter().map(f64::from).collect())
}
