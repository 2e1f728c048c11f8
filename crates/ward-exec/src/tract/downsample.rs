//! Strided picks along several axes in one pass.
//!
//! tract's declutter writes a strided 1×1 convolution (ResNet's downsampling branches) as
//! a `Downsample` per spatial axis, then a 1×1 product. Run as written, the first pick
//! copies every other row, the second every other column of that: the first copy is half
//! the input, alive beside it. In an R-CNN head, where ResNet's last stage runs on 1000
//! regions of 256 × 14 × 14, that copy is 100 MB, and Mask R-CNN ResNet-18 held two of
//! them at its peak. Here a chain of `Downsample`s over distinct axes, each but the last
//! read by the next alone, becomes one [`StridedPick`], which writes only the final
//! picks.

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and input slots come from tract's own graph: a Downsample has one input"
)]

use tract_onnx::prelude::{
    tvec, Datum, IntoTValue, OutletId, TValue, TVec, Tensor, TractResult, TypedFact, TypedModel,
};
use tract_onnx::tract_core::internal::{
    as_op, ensure, op_as_typed_op, op_out_of_plan, DimLike, EvalContext, EvalOp, Op, StaticName,
    TypedOp,
};
use tract_onnx::tract_core::ndarray::Slice;
use tract_onnx::tract_core::ops::downsample::Downsample;

use super::optimizer::{Rewriter, Wire};

/// Every chain of float32 `Downsample`s of `model` over distinct axes with forward
/// strides, each but the last read by the next alone, becomes one [`StridedPick`].
pub(crate) fn merge(model: &mut TypedModel) -> TractResult<()> {
    let mut rewriter = Rewriter::of(model);
    for id in 0..model.nodes.len() {
        if let Some((input, pick)) = chain_ending_at(model, id)? {
            rewriter.replace(model, id, pick, vec![Wire::Outlet(input)])?;
        }
    }
    Ok(())
}

/// The chain's input and its picks, when node `id` ends a chain of two or more
/// `Downsample`s that [`merge`] takes, and is not read by another `Downsample` that
/// would extend it.
fn chain_ending_at(model: &TypedModel, id: usize) -> TractResult<Option<(OutletId, StridedPick)>> {
    let Some(last) = pick_of(model, id) else {
        return Ok(None);
    };
    let extended = model.nodes[id].outputs.iter().any(|output| {
        output.successors.len() == 1 && pick_of(model, output.successors[0].node).is_some()
    });
    if extended || model.outlet_fact(id.into())?.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let mut picks = tvec![last];
    let mut input = model.nodes[id].inputs[0];
    while let Some(pick) = pick_of(model, input.node) {
        let node = &model.nodes[input.node];
        let read_once = node.outputs.len() == 1
            && node.outputs[0].successors.len() == 1
            && !model.outputs.contains(&input);
        if !read_once || picks.iter().any(|p: &Pick| p.axis == pick.axis) {
            break;
        }
        picks.push(pick);
        input = node.inputs[0];
    }
    // The picks' lengths are fixed when the plan is built: a concrete input.
    if picks.len() < 2 || model.outlet_fact(input)?.shape.as_concrete().is_none() {
        return Ok(None);
    }
    picks.sort_by_key(|p| p.axis);
    Ok(Some((input, StridedPick { picks })))
}

/// Node `id`'s pick, when it is a `Downsample` with a forward stride.
fn pick_of(model: &TypedModel, id: usize) -> Option<Pick> {
    let op = model.nodes[id].op_as::<Downsample>()?;
    let stride = usize::try_from(op.stride).ok().filter(|&s| s > 0)?;
    Some(Pick {
        axis: op.axis,
        stride,
        start: op.modulo,
    })
}

/// Every `stride`-th index of `axis` from `start`, as tract's `Downsample` with that
/// stride and modulo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Pick {
    axis: usize,
    stride: usize,
    start: usize,
}

impl Pick {
    /// How many indices of an axis of `len` the pick keeps (none when `start` is past it).
    fn kept(&self, len: usize) -> usize {
        len.saturating_sub(self.start).div_ceil(self.stride)
    }
}

/// Strided picks along several distinct axes of a float32 tensor, in one copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StridedPick {
    /// By axis, each axis at most once.
    picks: TVec<Pick>,
}

impl StridedPick {
    /// Whether the pick keeps only some indices of `axis` (so the axis's elements are not
    /// each copied to the same place).
    pub(crate) fn picks_along(&self, axis: usize) -> bool {
        self.picks.iter().any(|p| p.axis == axis)
    }
}

impl Op for StridedPick {
    fn name(&self) -> StaticName {
        "WardStridedPick".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self
            .picks
            .iter()
            .map(|p| format!("axis {}: every {} from {}", p.axis, p.stride, p.start))
            .collect())
    }

    op_as_typed_op!();
}

impl EvalOp for StridedPick {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 1,
            "a strided pick takes one input, got {}",
            inputs.len()
        );
        let input = inputs[0].to_plain_array_view::<f32>()?;
        for pick in &self.picks {
            ensure!(
                pick.axis < input.ndim(),
                "axis {} of a rank-{} input",
                pick.axis,
                input.ndim()
            );
        }
        let picked = input.slice_each_axis(|axis| {
            match self.picks.iter().find(|p| p.axis == axis.axis.index()) {
                // A start past the axis keeps nothing, as tract's Downsample.
                Some(p) if p.start >= axis.len => Slice::new(0, Some(0), 1),
                Some(p) => Slice::new(p.start as isize, None, p.stride as isize),
                None => Slice::from(..),
            }
        });
        Ok(tvec![Tensor::from(picked.to_owned()).into_tvalue()])
    }
}

impl TypedOp for StridedPick {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "a strided pick takes one input");
        let mut fact = inputs[0].without_value();
        for pick in &self.picks {
            ensure!(
                pick.axis < fact.rank(),
                "axis {} past the input's rank",
                pick.axis
            );
            let len = fact.shape[pick.axis].to_usize()?;
            fact.shape.set(pick.axis, pick.kept(len).into());
        }
        Ok(tvec![fact])
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use tract_onnx::prelude::{DatumExt, IntoRunnable};
    use tract_onnx::tract_core::internal::SpecialOps;

    use super::*;

    /// Downsamples' (axis, stride, modulo), applied in turn.
    type Downs<'a> = &'a [(usize, isize, usize)];

    /// `x` of `shape` through Downsamples of (axis, stride, modulo) in turn; with
    /// `merged`, after [`merge`]; the output's values and shape and the ops that ran.
    fn run(
        shape: &[usize],
        downs: &[(usize, isize, usize)],
        merged: bool,
    ) -> (Vec<f32>, Vec<usize>, Vec<String>) {
        let mut model = TypedModel::default();
        let mut wire = model.add_source("x", f32::fact(shape)).unwrap();
        for (i, &(axis, stride, modulo)) in downs.iter().enumerate() {
            let op = Downsample::new(axis, stride, modulo);
            wire = model.wire_node(format!("down{i}"), op, &[wire]).unwrap()[0];
        }
        model.select_output_outlets(&[wire]).unwrap();
        if merged {
            merge(&mut model).unwrap();
            model.compact().unwrap();
        }
        let ops = model
            .nodes
            .iter()
            .map(|n| n.op.name().to_string())
            .collect();
        let len = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
        let x = Tensor::from_shape(shape, &values).unwrap();
        let plan = model.into_runnable().unwrap();
        let y = plan.run(tvec![x.into_tvalue()]).unwrap();
        let plain = y[0].try_as_plain_ram().unwrap();
        (
            plain.as_slice::<f32>().unwrap().to_vec(),
            y[0].shape().to_vec(),
            ops,
        )
    }

    /// Two and three picks over distinct axes, with odd lengths, strides 2 and 3 and
    /// modulos, give tract's chain's values and shape in one op.
    #[test]
    fn a_chain_of_downsamples_becomes_one_pick_with_the_same_values() {
        let cases: [(&[usize], Downs); 4] = [
            (&[3, 4, 7, 9], &[(2, 2, 0), (3, 2, 0)]),
            (&[2, 5, 14, 14], &[(3, 2, 1), (2, 2, 0)]),
            (&[2, 3, 10, 11], &[(1, 3, 0), (2, 2, 1), (3, 3, 2)]),
            (&[4, 6, 5], &[(0, 2, 1), (2, 3, 0)]),
        ];
        for (shape, downs) in cases {
            let (want, want_shape, _) = run(shape, downs, false);
            let (got, got_shape, ops) = run(shape, downs, true);
            assert_eq!(ops, ["Source", "WardStridedPick"], "{shape:?} {downs:?}");
            assert_eq!(got_shape, want_shape, "{shape:?} {downs:?}");
            assert_eq!(got, want, "{shape:?} {downs:?}");
        }
    }

    /// A pick whose output another op also reads, two picks of one axis, and a lone pick
    /// stay tract's.
    #[test]
    fn shared_repeated_and_lone_picks_stay_downsamples() {
        for downs in [&[(2, 2, 0), (2, 2, 0)][..], &[(3, 2, 0)][..]] {
            let (_, _, ops) = run(&[2, 3, 8, 8], downs, true);
            assert!(
                !ops.iter().any(|o| o == "WardStridedPick"),
                "{downs:?}: {ops:?}"
            );
        }
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 3, 8, 8])).unwrap();
        let rows = model
            .wire_node("rows", Downsample::new(2, 2, 0), &[x])
            .unwrap()[0];
        let cols = model
            .wire_node("cols", Downsample::new(3, 2, 0), &[rows])
            .unwrap()[0];
        model.select_output_outlets(&[rows, cols]).unwrap();
        merge(&mut model).unwrap();
        assert!(model.nodes.iter().all(|n| n.op.name() != "WardStridedPick"));
    }
}
