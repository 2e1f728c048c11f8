//! A binary op's per-channel constant tiled along the batch axis, so that tract runs the
//! op as its by-scalar loop over a batch too.
//!
//! A batch norm that no convolution before it absorbs (DenseNet's, before each of its
//! convolutions) stays a `Mul` and an `Add` by constants of shape `[1, C, 1, 1]`. tract
//! runs such an op as one scalar per channel over the plane (`OptBinByScalar`) only when
//! the constant's shape equals the data's on a prefix of axes and is 1 after it. At batch
//! 1 it is; at batch 8 the leading 1 against 8 breaks the prefix, and tract falls back to
//! its generic broadcasting loop, element by element: 37 % of DenseNet-121's time at batch
//! 8. Tiled to `[N, C, 1, 1]` the constant meets the rule, for N·C values more.

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and input slots come from tract's own graph, and a binary op has two inputs"
)]

use tract_onnx::prelude::{InletId, Tensor, TractResult, TypedModel};
use tract_onnx::tract_core::internal::SpecialOps;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

/// The most bytes a tiled constant may take: a per-channel constant of 2,048 channels
/// over a batch of 64 is 512 KiB.
const MAX_TILED_BYTES: usize = 1 << 20;

/// Every constant input of a binary op of `model` that is 1 along the batch axis where the
/// other input is a batch, and otherwise one value per leading axis (see the module's
/// doc), becomes a constant tiled along the batch axis.
pub(crate) fn tile(model: &mut TypedModel) -> TractResult<()> {
    for id in 0..model.nodes.len() {
        if !model.nodes[id].op_is::<TypedBinOp>() || model.nodes[id].inputs.len() != 2 {
            continue;
        }
        for slot in 0..2 {
            let Some(tiled) = tiled_constant(model, id, slot)? else {
                continue;
            };
            let name = format!("{}.batch_tiled_{slot}", model.nodes[id].name);
            let outlet = model.add_const(name, tiled)?;
            model.add_edge(outlet, InletId::new(id, slot))?;
        }
    }
    model.compact()
}

/// Input `slot` of binary node `id` tiled to the other input's batch `N`, when it is a
/// constant to tile: the other input is `[N, …]` with N > 1 and concrete dimensions, the
/// constant has the same rank, 1 on the batch axis, matches the other input on the axes
/// after it up to some axis and is 1 from there on, is not 1 everywhere (a scalar is
/// by-scalar already), and tiled takes at most [`MAX_TILED_BYTES`].
fn tiled_constant(model: &TypedModel, id: usize, slot: usize) -> TractResult<Option<Tensor>> {
    let node = &model.nodes[id];
    let constant = model.outlet_fact(node.inputs[slot])?;
    let other = model.outlet_fact(node.inputs[1 - slot])?;
    let (Some(value), Some(data)) = (&constant.konst, other.shape.as_concrete()) else {
        return Ok(None);
    };
    let shape = value.shape();
    let (Some((&1, rest)), Some((&batch, data_rest))) = (shape.split_first(), data.split_first())
    else {
        return Ok(None);
    };
    let per_leading_axis = rest.len() == data_rest.len()
        && rest
            .iter()
            .zip(data_rest)
            .skip_while(|(c, d)| c == d)
            .all(|(&c, _)| c == 1);
    let bytes = value
        .len()
        .saturating_mul(batch)
        .saturating_mul(value.datum_type().size_of());
    if batch <= 1 || !per_leading_axis || rest.iter().all(|&d| d == 1) || bytes > MAX_TILED_BYTES {
        return Ok(None);
    }
    let mut tiled = shape.to_vec();
    tiled[0] = batch;
    Ok(Some(value.broadcast_to_shape(&tiled)?))
}

#[cfg(test)]
mod tests {
    use tract_onnx::prelude::{tvec, DatumExt, IntoRunnable, IntoTValue, Tensor};
    use tract_onnx::tract_core::ops::math;

    use super::*;

    /// `x · s + t` with per-channel `s` and `t` of shape `[1, C, 1, 1]` over `x` of shape
    /// `[N, C, H, W]`.
    fn channel_affine(batch: usize) -> (TypedModel, Vec<f32>, Vec<f32>) {
        let (channels, plane) = (3usize, 8usize);
        let scale: Vec<f32> = (0..channels).map(|c| 0.5 + c as f32).collect();
        let shift: Vec<f32> = (0..channels).map(|c| -1.0 + 0.25 * c as f32).collect();
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", f32::fact([batch, channels, plane, plane]))
            .unwrap();
        let s = model
            .add_const(
                "s",
                Tensor::from_shape(&[1, channels, 1, 1], &scale).unwrap(),
            )
            .unwrap();
        let t = model
            .add_const(
                "t",
                Tensor::from_shape(&[1, channels, 1, 1], &shift).unwrap(),
            )
            .unwrap();
        let y = model.wire_node("mul", math::mul(), &[x, s]).unwrap();
        let z = model.wire_node("add", math::add(), &[t, y[0]]).unwrap();
        model.select_output_outlets(&z).unwrap();
        (model, scale, shift)
    }

    fn run(model: TypedModel, x: &Tensor) -> Vec<f32> {
        let plan = model.into_runnable().unwrap();
        let y = plan.run(tvec![x.clone().into_tvalue()]).unwrap();
        let plain = y[0].try_as_plain_ram().unwrap();
        plain.as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn a_batch_gets_tiled_constants_and_the_same_values() {
        let batch = 5;
        let (mut model, scale, shift) = channel_affine(batch);
        let values: Vec<f32> = (0..batch * 3 * 64).map(|i| i as f32 * 0.37 - 9.0).collect();
        let x = Tensor::from_shape(&[batch, 3, 8, 8], &values).unwrap();
        tile(&mut model).unwrap();
        for name in ["mul", "add"] {
            let node = model.node_by_name(name).unwrap();
            let constants: Vec<_> = node
                .inputs
                .iter()
                .filter_map(|&i| model.outlet_fact(i).unwrap().konst.clone())
                .collect();
            assert_eq!(constants.len(), 1, "{name}");
            assert_eq!(constants[0].shape(), &[batch, 3, 1, 1], "{name}");
        }
        let generic_ops = |mut model: TypedModel| {
            super::super::optimizer::codegen(&mut model).unwrap();
            let generic = model
                .nodes
                .iter()
                .filter(|n| n.op_is::<TypedBinOp>())
                .count();
            (model, generic)
        };
        // Untiled, tract keeps its generic broadcasting loop for both ops; tiled, neither.
        let (_, untiled) = generic_ops(channel_affine(batch).0);
        assert_eq!(untiled, 2);
        let (optimized, tiled) = generic_ops(model);
        assert_eq!(tiled, 0);
        let y = run(optimized, &x);
        for (i, (&got, &x)) in y.iter().zip(&values).enumerate() {
            let c = i / 64 % 3;
            assert_eq!(got, x * scale[c] + shift[c], "element {i}");
        }
    }

    #[test]
    fn one_sample_and_scalars_are_left_alone() {
        let (mut model, _, _) = channel_affine(1);
        tile(&mut model).unwrap();
        let node = model.node_by_name("mul").unwrap();
        let fact = model.outlet_fact(node.inputs[1]).unwrap();
        assert_eq!(fact.shape.as_concrete().unwrap(), &[1, 3, 1, 1]);

        assert_eq!(tiled_shape(&[1, 1, 1, 1], &[2.0]), [1, 1, 1, 1]);
    }

    #[test]
    fn a_constant_that_varies_along_the_plane_is_left_alone() {
        // [1, 1, 2, 2] against [4, 3, 2, 2]: one value per position, not per leading axis.
        assert_eq!(
            tiled_shape(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]),
            [1, 1, 2, 2]
        );
    }

    /// The shape of the constant of `x · c` over `x` of shape `[4, 3, 2, 2]` after
    /// [`tile`], `c` of `shape` holding `values`.
    fn tiled_shape(shape: &[usize], values: &[f32]) -> Vec<usize> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([4, 3, 2, 2])).unwrap();
        let c = model
            .add_const("c", Tensor::from_shape(shape, values).unwrap())
            .unwrap();
        let y = model.wire_node("mul", math::mul(), &[x, c]).unwrap();
        model.select_output_outlets(&y).unwrap();
        tile(&mut model).unwrap();
        let node = model.node_by_name("mul").unwrap();
        let fact = model.outlet_fact(node.inputs[1]).unwrap();
        fact.shape.as_concrete().unwrap().to_vec()
    }
}
