//! MXNet's deformable convolutions (`_contrib_DeformableConvolution`,
//! `_contrib_ModulatedDeformableConvolution`) as a node of ward's own domain
//! ([`super::WARD_DOMAIN`]), which the tract backend runs in `crate::tract::deform`.
//!
//! ONNX has `DeformConv` only from opset 19 (ward lowers to opset 17) and tract does not
//! run it; nor does it sample as MXNet 1.9.1's CPU kernels do at the plane's border (see
//! `ward_graph::interp::deform`). So the node carries ward's operator's attributes, and
//! `ward export onnx` refuses it by name.

use ward_graph::ops::conv::DeformableConv;

use super::builder::{attr_int, attr_ints, ints, At, Builder, R};

/// The op type of the node the tract backend reads back as ward's deformable convolution.
pub(crate) const DEFORMABLE_CONV: &str = "WardDeformableConv";

pub(super) fn deformable_conv(b: &mut Builder<'_>, at: &At<'_>, op: &DeformableConv) -> R<()> {
    let step = op
        .im2col_step
        .map_or(Ok(0), i64::try_from)
        .map_err(|e| e.to_string())?;
    b.push(
        DEFORMABLE_CONV,
        at.inputs()?,
        vec![at.out()?],
        vec![
            attr_ints("kernel", &ints(&op.kernel)),
            attr_ints("stride", &ints(&op.stride)),
            attr_ints("dilation", &ints(&op.dilation)),
            attr_ints("pad", &ints(&op.pad)),
            attr_ints("groups", &ints(&[op.groups, op.deformable_groups])),
            attr_int("modulated", i64::from(op.modulated)),
            attr_int("bias", i64::from(op.bias)),
            attr_int("im2col_step", step),
            attr_ints("out_shape", &ints(&at.out_shape)),
        ],
    );
    if let Some(node) = b.nodes.last_mut() {
        node.domain = super::WARD_DOMAIN.into();
        node.name = at.node.name.clone();
    }
    Ok(())
}
