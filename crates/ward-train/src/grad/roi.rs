//! Regions of interest, with MXNet 1.9.1's backward rule (`_backward_ROIAlign`): each
//! bin's head gradient, divided by its sample count, goes back to the four elements of
//! each sample that lies inside the plane with that sample's bilinear weights; samples
//! more than a pixel outside give nothing. The rois get a zero gradient, as MXNet gives
//! them (their coordinates do move the output, but MXNet does not differentiate them).
//! The samples are the forward pass's own (`ward_graph::interp::roi::roi_align_plans`).
//!
//! `_backward_ROIPooling`: each output's head gradient goes to the pixel it took (MXNet's
//! argmax, found again by `ward_graph::interp::roi::roi_pool_argmax`), summed where bins
//! share one; nothing for an empty bin or a roi outside the batch; zero into the rois.

use ward_graph::interp::roi::{roi_align_plans, roi_pool_argmax, source_channel};
use ward_graph::interp::Array;
use ward_graph::ops::roi::{RoiAlign, RoiPool};

use super::{Ctx, Rule};

pub fn roi_align(ctx: &Ctx<'_>, op: &RoiAlign) -> Rule {
    let x = ctx.input(0)?;
    let rois = ctx.input(1)?;
    let g = ctx.grad(0)?;
    let plans = roi_align_plans(op, &x.shape, rois).map_err(|e| e.to_string())?;
    let &[_, c_in, h, w] = x.shape.as_slice() else {
        return Err(format!("data {:?} is not NCHW", x.shape));
    };
    let c_out = op.out_channels(c_in)?;
    let bins = op.pooled_height * op.pooled_width;
    let plane = h * w;
    let mut grad = Array::zeros(x.shape.clone()).map_err(|e| e.to_string())?;
    let mut heads = g.data.iter();
    for plan in &plans {
        for c in 0..c_out {
            for bin in 0..bins {
                let head = *heads.next().ok_or("the head gradient is too short")?;
                let base = (plan.batch * c_in + source_channel(op, c, bin)) * plane;
                let taps = plan
                    .taps
                    .get(bin * plan.grid..(bin + 1) * plan.grid)
                    .ok_or("a bin past the plan")?;
                for t in taps.iter().filter(|t| t.inside) {
                    for (&p, &wk) in t.pos.iter().zip(&t.w) {
                        let slot = grad
                            .data
                            .get_mut(base + p)
                            .ok_or("a sample outside the data")?;
                        *slot += head * f64::from(wk) / f64::from(plan.count);
                    }
                }
            }
        }
    }
    Ok(vec![
        Some(grad),
        Some(Array::zeros(rois.shape.clone()).map_err(|e| e.to_string())?),
    ])
}

pub fn roi_pool(ctx: &Ctx<'_>, op: &RoiPool) -> Rule {
    let x = ctx.input(0)?;
    let rois = ctx.input(1)?;
    let g = ctx.grad(0)?;
    let (_, taken) = roi_pool_argmax(x, rois, op).map_err(|e| e.to_string())?;
    if taken.len() != g.data.len() {
        return Err(format!(
            "a head gradient of {} values for {} outputs",
            g.data.len(),
            taken.len()
        ));
    }
    let mut grad = Array::zeros(x.shape.clone()).map_err(|e| e.to_string())?;
    for (at, head) in taken.iter().zip(&g.data) {
        if let Some(slot) = at.and_then(|o| grad.data.get_mut(o)) {
            *slot += head;
        }
    }
    Ok(vec![
        Some(grad),
        Some(Array::zeros(rois.shape.clone()).map_err(|e| e.to_string())?),
    ])
}
