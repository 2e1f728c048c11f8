//! Detection, with MXNet 1.9.1's backward rules: `box_nms` copies each output row's head
//! gradient back to the input row it holds (`_backward_contrib_box_nms`, from the hidden
//! record of kept rows), every other row getting 0; `box_decode` and `box_encode` have
//! zero gradients in MXNet (registered as such) and so in ward (in [`super`]).

use ward_graph::interp::detection::box_nms_backward;
use ward_graph::ops::detection::BoxNms;

use super::{Ctx, Rule};

pub fn box_nms(ctx: &Ctx<'_>, op: &BoxNms) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    let grad = box_nms_backward(x, op, &g).map_err(|e| e.to_string())?;
    Ok(vec![Some(grad)])
}
