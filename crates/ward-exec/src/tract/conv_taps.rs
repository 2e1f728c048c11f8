//! Cuts from a convolution's kernel the taps that read only padding.
//!
//! A dilated convolution on a small feature map reads mostly padding. DeepLab's ASPP
//! branches (3×3 kernels at rates 12, 24 and 36) on the 16×16 map of a 128×128 image have
//! outer taps that fall in the padding for every output, yet tract pads the input
//! explicitly before its im2col: 2048 channels grown from 16² to (16 + 2·36)² positions,
//! 63 MB written on every run for products with zeros. A tap that lies in the padding
//! for every output adds nothing to any output, so the leading and trailing such taps of
//! each spatial axis are cut from the kernel and the padding shrunk by as many dilations:
//! every output then sums the same products of input values, and its shape is unchanged
//! (the padding lost and the kernel's extent lost are the same amount). A cut tap holding
//! NaN or an infinity is not cut, since its product with the padding's zeros is NaN in
//! every output it touches, which the cut would hide.
//!
//! It runs once on the typed model, before tract's optimiser, which then lowers the
//! smaller convolution (a rate-36 branch becomes a 1×1 convolution, a matrix product).

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and input slots come from tract's own graph, and a convolution's kernel is its input 1"
)]

use tract_onnx::prelude::{Datum, TVec, Tensor, TractResult, TypedFact, TypedModel};
use tract_onnx::tract_core::internal::{tvec, TypedOp};
use tract_onnx::tract_core::ops::cnn::{Conv, PaddingSpec};

use super::optimizer::{Rewriter, Wire};

/// Every float32 convolution of `model` with explicit padding, concrete shapes and a
/// constant kernel loses the kernel taps that read only padding.
pub(crate) fn trim(model: &mut TypedModel) -> TractResult<()> {
    let mut rewriter = Rewriter::of(model);
    for id in 0..model.nodes.len() {
        let node = &model.nodes[id];
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some((trimmed, kernel)) = trimmed(model, id, conv)? else {
            continue;
        };
        let mut inputs: Vec<Wire> = node.inputs.iter().map(|&o| Wire::Outlet(o)).collect();
        inputs[1] = Wire::Const(format!("{}.live_taps", node.name), kernel);
        rewriter.replace(model, id, trimmed, inputs)?;
    }
    Ok(())
}

/// Node `id`'s convolution and kernel with the dead taps cut, if it has any.
fn trimmed(model: &TypedModel, id: usize, conv: &Conv) -> TractResult<Option<(Conv, Tensor)>> {
    let node = &model.nodes[id];
    let spec = &conv.pool_spec;
    let PaddingSpec::Explicit(before, after) = &spec.padding else {
        return Ok(None);
    };
    let input = model.outlet_fact(node.inputs[0])?;
    let output = model.outlet_fact(id.into())?;
    let kernel_fact = model.outlet_fact(node.inputs[1])?;
    let (Some(input_shape), Some(output_shape), Some(kernel)) = (
        input.shape.as_concrete(),
        output.shape.as_concrete(),
        kernel_fact.konst.as_ref(),
    ) else {
        return Ok(None);
    };
    if conv.q_params.is_some() || kernel.datum_type() != f32::datum_type() {
        return Ok(None);
    }
    let input_hw = spec.data_format.shape(input_shape)?.hw_dims().to_vec();
    let output_hw = spec.data_format.shape(output_shape)?.hw_dims().to_vec();
    let rank = spec.kernel_shape.len();
    if input_hw.len() != rank || output_hw.len() != rank {
        return Ok(None);
    }
    let mut live = Vec::with_capacity(rank);
    for axis in 0..rank {
        let geometry = Axis {
            input: input_hw[axis],
            output: output_hw[axis],
            stride: spec.strides.as_ref().map_or(1, |s| s[axis]),
            dilation: spec.dilations.as_ref().map_or(1, |d| d[axis]),
            pad_before: before[axis],
            pad_after: after[axis],
            taps: spec.kernel_shape[axis],
        };
        live.push((geometry, geometry.dead_taps()));
    }
    if live.iter().all(|(_, (lead, trail))| lead + trail == 0) {
        return Ok(None);
    }
    let h_axis = conv.kernel_fmt.h_axis();
    if !cut_taps_are_finite(kernel, h_axis, &live)? {
        return Ok(None);
    }
    let mut cut: Option<Tensor> = None;
    let mut new = conv.clone();
    let (mut new_before, mut new_after) = (before.clone(), after.clone());
    for (axis, (geometry, (lead, trail))) in live.iter().enumerate() {
        if lead + trail == 0 {
            continue;
        }
        let end = geometry.taps - trail;
        let from = cut.as_ref().unwrap_or(&**kernel);
        cut = Some(from.slice(h_axis + axis, *lead, end)?);
        new.pool_spec.kernel_shape[axis] = end - lead;
        if end - lead == 1 {
            // One tap has no spacing: with a dilation of 1 tract sees a pointwise axis
            // (a 1×1 convolution becomes a matrix product, with no im2col).
            if let Some(dilations) = new.pool_spec.dilations.as_mut() {
                dilations[axis] = 1;
            }
        }
        new_before[axis] -= lead * geometry.dilation;
        new_after[axis] -= trail * geometry.dilation;
    }
    let Some(cut) = cut else {
        return Ok(None);
    };
    new.pool_spec.padding = PaddingSpec::Explicit(new_before, new_after);
    // The shape is unchanged by construction; a convolution whose shape rule disagrees is
    // left as it was.
    let kernel_fact = TypedFact::shape_and_dt_of(&cut);
    let mut facts: TVec<&TypedFact> = tvec![];
    for (slot, &outlet) in node.inputs.iter().enumerate() {
        facts.push(if slot == 1 {
            &kernel_fact
        } else {
            model.outlet_fact(outlet)?
        });
    }
    if new.output_facts(&facts)?.first().map(|f| &f.shape) != Some(&output.shape) {
        return Ok(None);
    }
    Ok(Some((new, cut)))
}

/// Whether every kernel value in a tap that `live` cuts is finite.
fn cut_taps_are_finite(
    kernel: &Tensor,
    h_axis: usize,
    live: &[(Axis, (usize, usize))],
) -> TractResult<bool> {
    // A kernel all finite (the rule) is checked in one pass over its values; only one that
    // holds a NaN or an infinity has each of those located against the cut.
    let plain = kernel.try_as_plain_ram()?;
    if plain.as_slice::<f32>()?.iter().all(|v| v.is_finite()) {
        return Ok(true);
    }
    let view = kernel.to_plain_array_view::<f32>()?;
    Ok(view.indexed_iter().all(|(index, value)| {
        value.is_finite()
            || live
                .iter()
                .enumerate()
                .all(|(axis, (geometry, (lead, trail)))| {
                    let tap = index[h_axis + axis];
                    tap >= *lead && tap < geometry.taps - trail
                })
    }))
}

/// One spatial axis of a convolution.
#[derive(Clone, Copy, Debug)]
struct Axis {
    input: usize,
    output: usize,
    stride: usize,
    dilation: usize,
    pad_before: usize,
    pad_after: usize,
    taps: usize,
}

impl Axis {
    /// How many taps at the start and at the end read padding for every output. Output
    /// `o`'s tap `k` reads input position `o·stride + k·dilation − pad_before`. At least
    /// one tap is kept, and no cut takes more padding than the axis has.
    fn dead_taps(&self) -> (usize, usize) {
        let last_output = self.output.saturating_sub(1) * self.stride;
        let mut lead = 0;
        while lead + 1 < self.taps
            && (lead + 1) * self.dilation <= self.pad_before
            && last_output + lead * self.dilation < self.pad_before
        {
            lead += 1;
        }
        let mut trail = 0;
        while lead + trail + 1 < self.taps
            && (trail + 1) * self.dilation <= self.pad_after
            && (self.taps - 1 - trail) * self.dilation >= self.pad_before + self.input
        {
            trail += 1;
        }
        (lead, trail)
    }

    /// Whether tap `k` reads an input value for some output (by trying every output).
    #[cfg(test)]
    fn reads_input(&self, k: usize) -> bool {
        (0..self.output).any(|o| {
            let position = o * self.stride + k * self.dilation;
            position >= self.pad_before && position - self.pad_before < self.input
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Axis;

    /// Over every small geometry: the cut taps read no input, no cut takes more padding
    /// than the axis has, and the cut keeps the output size.
    #[test]
    fn only_taps_that_read_padding_alone_are_cut() {
        let mut cut_some = 0;
        for input in 1usize..7 {
            for taps in 1..5 {
                for dilation in 1..6 {
                    for stride in 1..3 {
                        for pad_before in 0..12 {
                            for pad_after in 0..12 {
                                let extent = dilation * (taps - 1) + 1;
                                let Some(span) =
                                    (input + pad_before + pad_after).checked_sub(extent)
                                else {
                                    continue;
                                };
                                let axis = Axis {
                                    input,
                                    output: span / stride + 1,
                                    stride,
                                    dilation,
                                    pad_before,
                                    pad_after,
                                    taps,
                                };
                                let (lead, trail) = axis.dead_taps();
                                assert!(lead + trail < taps, "{axis:?}");
                                for k in (0..lead).chain(taps - trail..taps) {
                                    assert!(!axis.reads_input(k), "{axis:?} cuts tap {k}");
                                }
                                assert!(
                                    lead * dilation <= pad_before && trail * dilation <= pad_after
                                );
                                let left = taps - lead - trail;
                                let span_after = (input + pad_before - lead * dilation + pad_after
                                    - trail * dilation)
                                    - (dilation * (left - 1) + 1);
                                assert_eq!(span_after / stride + 1, axis.output, "{axis:?}");
                                cut_some += usize::from(lead + trail > 0);
                            }
                        }
                    }
                }
            }
        }
        assert!(
            cut_some > 1000,
            "only {cut_some} geometries had taps to cut"
        );
    }

    /// DeepLab's ASPP on a 16×16 map: rates 24 and 36 keep only the centre tap, rate 12
    /// keeps all three.
    #[test]
    fn deeplabs_widest_rates_become_a_single_tap() {
        for (rate, want) in [(12, (0, 0)), (24, (1, 1)), (36, (1, 1))] {
            let axis = Axis {
                input: 16,
                output: 16,
                stride: 1,
                dilation: rate,
                pad_before: rate,
                pad_after: rate,
                taps: 3,
            };
            assert_eq!(axis.dead_taps(), want, "rate {rate}");
        }
    }
}
