//! Regions of interest: MXNet's `_contrib_ROIAlign` as a node of ward's own domain
//! ([`super::WARD_DOMAIN`]), which the tract backend runs in `crate::tract::roi`.
//!
//! ONNX's `RoiAlign` is not MXNet's: it takes the batch index as a separate integer
//! input, averages or maxes where MXNet only averages, has no position-sensitive mode,
//! samples a box thinner than a pixel as it is (MXNet stretches it to one pixel without
//! `aligned`) and computes an adaptive grid from the unstretched size. So the node carries
//! ward's operator's attributes, and `ward export onnx` refuses it by name.

use ward_graph::ops::roi::{RoiAlign, RoiPool};

use super::builder::{attr_float, attr_int, attr_ints, ints, At, Builder, R};

/// The op type of the node the tract backend reads back as ward's ROIAlign.
pub(crate) const ROI_ALIGN: &str = "WardRoiAlign";
/// The op type of the node the tract backend reads back as ward's ROIPooling.
pub(crate) const ROI_POOL: &str = "WardRoiPool";

/// MXNet's `ROIPooling`, likewise a node of ward's domain: ONNX's `MaxRoiPool` rounds
/// the box and cuts the bins as Caffe does, but has no batch index outside the batch
/// (MXNet gives zeros) and no floor value for a bin of NaN or −∞ only.
pub(super) fn roi_pool(b: &mut Builder<'_>, at: &At<'_>, op: &RoiPool) -> R<()> {
    let inputs = vec![at.input(0)?, at.input(1)?];
    b.push(
        ROI_POOL,
        inputs,
        vec![at.out()?],
        vec![
            attr_ints("pooled_size", &ints(&[op.pooled_height, op.pooled_width])),
            attr_float("spatial_scale", op.spatial_scale),
            attr_ints("out_shape", &ints(&at.out_shape)),
        ],
    );
    if let Some(node) = b.nodes.last_mut() {
        node.domain = super::WARD_DOMAIN.into();
        node.name = at.node.name.clone();
    }
    Ok(())
}

pub(super) fn roi_align(b: &mut Builder<'_>, at: &At<'_>, op: &RoiAlign) -> R<()> {
    let inputs = vec![at.input(0)?, at.input(1)?];
    b.push(
        ROI_ALIGN,
        inputs,
        vec![at.out()?],
        vec![
            attr_ints("pooled_size", &ints(&[op.pooled_height, op.pooled_width])),
            attr_float("spatial_scale", op.spatial_scale),
            attr_int(
                "sample_ratio",
                op.sample_ratio
                    .and_then(|r| i64::try_from(r).ok())
                    .unwrap_or(-1),
            ),
            attr_int("position_sensitive", i64::from(op.position_sensitive)),
            attr_int("aligned", i64::from(op.aligned)),
            attr_ints("out_shape", &ints(&at.out_shape)),
        ],
    );
    if let Some(node) = b.nodes.last_mut() {
        node.domain = super::WARD_DOMAIN.into();
        node.name = at.node.name.clone();
    }
    Ok(())
}
