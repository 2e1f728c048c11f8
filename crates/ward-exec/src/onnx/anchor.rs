//! Anchors: MXNet's `_contrib_MultiBoxPrior`, whose boxes depend only on the data's
//! height and width, as a constant computed at lowering by the reference kernel's own
//! float32 arithmetic (`ward_graph::interp::anchor::multibox_prior`). `ward export onnx`
//! writes the same constant, which is exact for the exported shapes.

use ward_graph::interp::anchor::multibox_prior as boxes;
use ward_graph::ops::anchor::MultiBoxPrior;

use super::builder::{At, Builder, R};

pub(super) fn multibox_prior(b: &mut Builder<'_>, at: &At<'_>, op: &MultiBoxPrior) -> R<()> {
    let values = boxes(op, at.x_dim(2)?, at.x_dim(3)?).map_err(|e| e.to_string())?;
    if values.len() != at.out_shape.iter().product::<usize>() {
        return Err(format!(
            "{} box values for an output of {:?}",
            values.len(),
            at.out_shape
        ));
    }
    let c = b.const_f32(&at.hint("anchors"), &at.out_shape, &values);
    b.push("Identity", vec![c], vec![at.out()?], vec![]);
    Ok(())
}
