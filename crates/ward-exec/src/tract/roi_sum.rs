//! The sum of several ROIAligns, each level aligned straight into one output.
//!
//! GluonCV's FPN detectors pool each region from every pyramid level (a region belongs to
//! one level; the others see it masked to batch -1 and give zeros) and add the levels'
//! outputs with `add_n`. Run as written, every level's output is alive when the sum
//! starts: four tensors of 1000 regions × 256 channels × 7 × 7 (48 MiB each) for
//! faster_rcnn_fpn_resnet50, the model's peak. Here an `Add` chain whose every leaf is a
//! ward ROIAlign used by the chain alone becomes [`MxnetRoiAlignSum`], which aligns the
//! first level into the output and adds each further level's values into it in turn: one
//! output instead of four, and the same additions in the same order (`((a + b) + c) + d`,
//! as MXNet's `add_n` and the chain compute it), so the same bits.

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and input slots come from tract's own graph: an Add has two inputs, a ROIAlign two"
)]

use tract_onnx::prelude::{
    tvec, Datum, OutletId, TValue, TVec, TractResult, TypedFact, TypedModel,
};
use tract_onnx::tract_core::internal::{
    as_op, bail, ensure, op_as_typed_op, op_out_of_plan, EvalContext, EvalOp, IntoTValue, Op,
    StaticName, Tensor, TypedOp,
};
use tract_onnx::tract_core::ops::binary::TypedBinOp;

use super::optimizer::{Rewriter, Wire};
use super::roi::MxnetRoiAlign;

/// Every float32 `Add` chain of `model` over ward ROIAligns of one shape, used by the chain
/// alone, becomes one [`MxnetRoiAlignSum`].
pub(crate) fn adopt(model: &mut TypedModel) -> TractResult<()> {
    let mut sums = Vec::new();
    for id in 0..model.nodes.len() {
        if let Some(levels) = roi_align_chain(model, id)? {
            sums.push((id, levels));
        }
    }
    let mut rewriter = Rewriter::of(model);
    for (id, levels) in sums {
        let mut ops = Vec::new();
        let mut inputs = Vec::new();
        for level in levels {
            let node = &model.nodes[level.node];
            let Some(op) = node.op_as::<MxnetRoiAlign>() else {
                bail!("node {} is no longer a ROIAlign", node.name);
            };
            ops.push(op.clone());
            inputs.extend([Wire::Outlet(node.inputs[0]), Wire::Outlet(node.inputs[1])]);
        }
        rewriter.replace(model, id, MxnetRoiAlignSum { levels: ops }, inputs)?;
    }
    Ok(())
}

/// The ROIAligns summed, in order, when node `id` is the last `Add` of a chain
/// `((r0 + r1) + r2) + …` of float32 ROIAligns of its own shape, each used by the chain
/// alone.
fn roi_align_chain(model: &TypedModel, id: usize) -> TractResult<Option<Vec<OutletId>>> {
    let is_add = |node: usize| {
        let node = &model.nodes[node];
        node.inputs.len() == 2
            && node
                .op_as::<TypedBinOp>()
                .is_some_and(|op| op.0.name() == "Add")
    };
    if !is_add(id) {
        return Ok(None);
    }
    let top = OutletId::new(id, 0);
    // Not the last Add: the Add it feeds extends the chain.
    if let [next] = model.outlet_successors(top) {
        if next.slot == 0 && is_add(next.node) {
            return Ok(None);
        }
    }
    let fact = model.outlet_fact(top)?;
    let Some(shape) = fact.shape.as_concrete() else {
        return Ok(None);
    };
    if fact.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let mut leaves = Vec::new();
    let mut at = id;
    loop {
        let node = &model.nodes[at];
        leaves.push(node.inputs[1]);
        let left = node.inputs[0];
        if left.slot == 0 && is_add(left.node) && model.outlet_successors(left).len() == 1 {
            at = left.node;
        } else {
            leaves.push(left);
            break;
        }
    }
    leaves.reverse();
    for &leaf in &leaves {
        let aligned = model.nodes[leaf.node].op_is::<MxnetRoiAlign>()
            && leaf.slot == 0
            && model.outlet_successors(leaf).len() == 1
            && model.outlet_fact(leaf)?.shape.as_concrete() == Some(shape);
        if !aligned {
            return Ok(None);
        }
    }
    Ok(Some(leaves))
}

/// `Σ ROIAlign_l(data_l, rois_l)` over the levels, left to right, into one output; its
/// inputs are each level's data and rois in turn.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MxnetRoiAlignSum {
    levels: Vec<MxnetRoiAlign>,
}

impl Op for MxnetRoiAlignSum {
    fn name(&self) -> StaticName {
        "WardMxnetRoiAlignSum".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} levels", self.levels.len())])
    }

    op_as_typed_op!();
}

impl EvalOp for MxnetRoiAlignSum {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == 2 * self.levels.len() && !self.levels.is_empty(),
            "a ROIAlign sum of {} levels takes {} inputs, got {}",
            self.levels.len(),
            2 * self.levels.len(),
            inputs.len()
        );
        let shape = self.levels[0].out_shape(inputs[0].shape(), inputs[1].shape())?;
        let mut out = Tensor::zero::<f32>(&shape)?;
        {
            let mut plain = out.try_as_plain_ram_mut()?;
            let ys = plain.as_slice_mut::<f32>()?;
            for (l, (level, pair)) in self.levels.iter().zip(inputs.chunks_exact(2)).enumerate() {
                let (data, rois) = (&pair[0], &pair[1]);
                ensure!(
                    level.out_shape(data.shape(), rois.shape())? == shape,
                    "ROIAlign level {l} gives another shape than level 0"
                );
                level.align_into(data, rois, ys, l > 0)?;
            }
        }
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for MxnetRoiAlignSum {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == 2 * self.levels.len() && !self.levels.is_empty(),
            "a ROIAlign sum of {} levels takes {} inputs",
            self.levels.len(),
            2 * self.levels.len()
        );
        let mut shape = None;
        for (level, pair) in self.levels.iter().zip(inputs.chunks_exact(2)) {
            let (Some(x), Some(r)) = (pair[0].shape.as_concrete(), pair[1].shape.as_concrete())
            else {
                bail!("ward's ROIAlign needs concrete shapes");
            };
            let this = level.out_shape(x, r)?;
            ensure!(
                *shape.get_or_insert(this) == this,
                "the ROIAlign levels give different shapes"
            );
        }
        let Some(shape) = shape else {
            bail!("a ROIAlign sum of no level");
        };
        Ok(tvec![TypedFact::shape::<f32, _>(shape)])
    }

    as_op!();
}
