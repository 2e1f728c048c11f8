//! Convolutions: ONNX `Conv` (with a following batch norm folded in) and `ConvTranspose`.

use ward_graph::ops::conv::{Conv, Deconv};

use ward_graph::ir::Source;

use super::builder::{attr_int, attr_ints, ints, At, Builder, DerivedValues, R};

fn symmetric_pads(pad: &[usize]) -> Vec<i64> {
    ints(pad).iter().chain(ints(pad).iter()).copied().collect()
}

pub(super) fn conv(b: &mut Builder<'_>, at: &At<'_>, op: &Conv) -> R<()> {
    let mut ins = at.inputs()?;
    if let Some((scale, shift)) = b.folded_norms.remove(&at.index) {
        ins = folded_inputs(b, at, &scale, &shift)?;
    }
    b.push(
        "Conv",
        ins,
        vec![at.out()?],
        vec![
            attr_ints("kernel_shape", &ints(&op.kernel)),
            attr_ints("strides", &ints(&op.stride)),
            attr_ints("dilations", &ints(&op.dilation)),
            attr_ints("pads", &symmetric_pads(&op.pad)),
            attr_int("group", op.groups as i64),
        ],
    );
    Ok(())
}

/// The convolution's inputs with the batch norm that reads it folded in:
/// w'[f] = w[f]·scale[f], b'[f] = b[f]·scale[f] + shift[f]. The weight is left a recipe
/// (see [`DerivedValues::ScaledParam`]), computed once where the engine keeps it.
fn folded_inputs(b: &mut Builder<'_>, at: &At<'_>, scale: &[f32], shift: &[f32]) -> R<Vec<String>> {
    let weight = at.source(1)?;
    let w_shape = b.shape(weight)?;
    let Source::Param(param) = weight else {
        return Err("a folded convolution's weight must be a parameter".into());
    };
    let bias: Vec<f32> = match at.source(2).ok().and_then(|s| b.param_values(s)) {
        Some(bias) => bias
            .iter()
            .zip(scale)
            .zip(shift)
            .map(|((b, s), t)| b * s + t)
            .collect(),
        None => shift.to_vec(),
    };
    let bias_dims = vec![bias.len()];
    let scaled = DerivedValues::ScaledParam {
        param,
        scale: scale.to_vec(),
    };
    let w = b.derived_f32(&at.hint("folded_weight"), w_shape, scaled);
    let bias = b.derived_f32(
        &at.hint("folded_bias"),
        bias_dims,
        DerivedValues::Values(bias),
    );
    Ok(vec![at.input(0)?, w, bias])
}

pub(super) fn deconv(b: &mut Builder<'_>, at: &At<'_>, op: &Deconv) -> R<()> {
    b.push(
        "ConvTranspose",
        at.inputs()?,
        vec![at.out()?],
        vec![
            attr_ints("kernel_shape", &ints(&op.kernel)),
            attr_ints("strides", &ints(&op.stride)),
            attr_ints("dilations", &ints(&op.dilation)),
            attr_ints("pads", &symmetric_pads(&op.pad)),
            attr_ints("output_padding", &ints(&op.output_padding)),
            attr_int("group", op.groups as i64),
        ],
    );
    Ok(())
}
