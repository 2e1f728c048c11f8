//! Ordering, with MXNet 1.9.1's backward rule (`_backward_topk`): the values' head
//! gradient goes back to the elements they were taken from, every other element gets 0;
//! indices and masks pass no gradient (MXNet's are zero). The elements taken are found
//! again in MXNet's order among ties, as the forward pass took them.

use ward_graph::interp::order::picked_offsets;
use ward_graph::interp::Array;
use ward_graph::ops::order::{Topk, TopkReturn};

use super::{Ctx, Rule};

pub fn topk(ctx: &Ctx<'_>, op: &Topk) -> Rule {
    let x = ctx.input(0)?;
    let mut grad = Array::zeros(x.shape.clone()).map_err(|e| e.to_string())?;
    if matches!(op.ret, TopkReturn::Value | TopkReturn::Both) {
        let g = ctx.grad(0)?;
        let (_, offsets) = picked_offsets(x, op).map_err(|e| e.to_string())?;
        if g.data.len() != offsets.len() {
            return Err(format!(
                "a head gradient of {} values for {} picked",
                g.data.len(),
                offsets.len()
            ));
        }
        for (&o, &v) in offsets.iter().zip(&g.data) {
            if let Some(slot) = grad.data.get_mut(o) {
                *slot = v;
            }
        }
    }
    Ok(vec![Some(grad)])
}
