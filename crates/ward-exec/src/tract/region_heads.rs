//! An R-CNN's region head run a block of regions at a time.
//!
//! A detector pools every region it proposes from the backbone's features (ROIAlign,
//! ROIPooling) and runs a head on the pooled regions: Faster R-CNN's ResNet-50 runs its
//! last stage on 300 regions of 1024 × 14 × 14, 230 MiB pooled, and while the first block
//! of that stage runs, the pooled regions and both of its branches' outputs are alive:
//! 470 MiB of activations for a 131 MB package. Mask R-CNN (1000 regions) held 400 MB.
//! Every operator of such a head treats each region on its own, so the head can run on a
//! block of regions, then the next, each block's outputs written into the whole head's:
//! what is alive at once is one block's activations, and the pooled regions are never
//! whole. Here the longest chain of such operators from each pooling node becomes one
//! [`RegionBlocks`] op, which holds the chain built and optimised by ward for one block
//! and runs it block by block. Each region's arithmetic is the chain's own on that region.
//!
//! Which operators treat each region on its own ("row-wise" here) is decided by op type,
//! never assumed: products (`EinSum`) whose region axis is a free axis of the output,
//! element-wise and broadcast binary operators, convolutions and pools with the region
//! axis as their batch, axis changes that keep the region axis, and strided picks along
//! other axes. A softmax, a sort, a reduction over regions, or anything else ends the
//! chain. The chain's inputs from outside must not depend on it, so collapsing it into one
//! node keeps the graph acyclic.

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and input slots come from tract's own graph; each region axis is checked against the rank of the fact it indexes"
)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tract_onnx::prelude::{
    DatumType, IntoArcTensor, IntoTValue, OutletId, TValue, TVec, Tensor, TractResult, TypedFact,
    TypedModel, TypedRunnableModel,
};
use tract_onnx::tract_core::internal::{
    as_op, ensure, format_err, op_as_typed_op, op_out_of_plan, EvalContext, EvalOp, IntoRunnable,
    Op, SpecialOps, StaticName, TypedOp,
};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::{Conv, Deconv, MaxPool, SumPool};
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::konst::Const;

use super::dense::WeightDense;
use super::downsample::StridedPick;
use super::optimizer::{Rewriter, Wire};
use super::relu::{ClipKeepNan, ReluKeepNan};
use super::roi::{MxnetRoiAlign, MxnetRoiPool};
use super::roi_sum::MxnetRoiAlignSum;
use crate::weights::WeightsId;

/// The size above which a head runs by blocks: its largest activation over all its
/// regions, in bytes. Below it a head is a small part of a plan's memory.
pub(crate) const MIN_HEAD_ACTIVATION_BYTES: usize = 32 << 20;

/// The largest activation of one block, in bytes, that decides how many regions a block
/// holds. Large enough that a block's products keep their shapes' efficiency (each
/// region's 7 × 7 or 14 × 14 positions are a product's columns either way), small enough
/// that a block's activations are a small part of a plan.
pub(crate) const BLOCK_ACTIVATION_BYTES: usize = 16 << 20;

/// Every region head of `model` (decluttered) whose largest activation is at least
/// [`MIN_HEAD_ACTIVATION_BYTES`] becomes a [`RegionBlocks`] of blocks whose largest
/// activation is about [`BLOCK_ACTIVATION_BYTES`]; its chain is optimised for one block
/// by ward's optimisation of a decluttered model (`super::optimize_region_block`) on
/// `threads`, its convolutions' laid-out weights shared with the other plans of `weights`.
pub(crate) fn split(model: &mut TypedModel, weights: WeightsId, threads: usize) -> TractResult<()> {
    let mut tried = HashSet::new();
    loop {
        let order = model.eval_order()?;
        let Some(seed) = order
            .iter()
            .copied()
            .find(|&id| !tried.contains(&id) && pooled_rows(model, id).is_some())
        else {
            return Ok(());
        };
        tried.insert(seed);
        let Some(head) = Head::grow(model, &order, seed)? else {
            continue;
        };
        let Some(block) = head.block(MIN_HEAD_ACTIVATION_BYTES, BLOCK_ACTIVATION_BYTES) else {
            continue;
        };
        let Some(op) = head.op(model, block, weights, threads)? else {
            continue;
        };
        let inputs = head
            .inputs
            .iter()
            .filter(|(outlet, _)| !is_const(model, *outlet))
            .map(|(outlet, _)| Wire::Outlet(*outlet))
            .collect();
        let outputs: Vec<OutletId> = head.outputs.iter().map(|(outlet, _)| *outlet).collect();
        let name = format!("{}.region_blocks", model.nodes[seed].name);
        Rewriter::of(model).replace_outlets(model, &outputs, name, op, inputs)?;
    }
}

/// How a head reads one of its inputs from outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Use {
    /// Sliced along this axis, its regions'.
    Rows(usize),
    /// Whole for every block (the features the regions are pooled from, a constant).
    Whole,
}

/// A chain of row-wise nodes from one pooling node.
struct Head {
    /// The regions.
    rows: usize,
    /// The chain's nodes, in evaluation order.
    nodes: Vec<usize>,
    /// The region axis of each of its nodes' outputs.
    axis: HashMap<OutletId, usize>,
    /// Its inputs from outside, each with how it is read, in order of first use.
    inputs: Vec<(OutletId, Use)>,
    /// Its values read outside it (or the model's outputs), each with its region axis.
    outputs: Vec<(OutletId, usize)>,
    /// The largest value it writes, over all its regions, in bytes.
    largest: usize,
}

/// The regions of node `id` and its rois' input slots, if it pools regions (a ROIAlign,
/// a sum of ROIAligns or a ROIPooling) into an output whose first axis is the regions.
fn pooled_rows(model: &TypedModel, id: usize) -> Option<(usize, Vec<usize>)> {
    let node = &model.nodes[id];
    let slots: Vec<usize> = if node.op_is::<MxnetRoiAlign>() || node.op_is::<MxnetRoiPool>() {
        vec![1]
    } else if node.op_is::<MxnetRoiAlignSum>() {
        (1..node.inputs.len()).step_by(2).collect()
    } else {
        return None;
    };
    let fact = &node.outputs.first()?.fact;
    let rows = *fact.shape.as_concrete()?.first()?;
    (rows > 1 && fact.datum_type == DatumType::F32).then_some((rows, slots))
}

/// The value of `outlet` if a constant node gives it: the head's block holds it as its
/// own constant, and the op does not take it as an input.
fn constant(model: &TypedModel, outlet: OutletId) -> Option<Arc<Tensor>> {
    let node = &model.nodes[outlet.node];
    node.op_as::<Const>().map(|k| k.val().clone())
}

fn is_const(model: &TypedModel, outlet: OutletId) -> bool {
    constant(model, outlet).is_some()
}

impl Head {
    /// The chain of row-wise nodes from the pooling node `seed`, in `order` (the model's
    /// evaluation order): a node joins when it reads a value of the chain, reads each of
    /// the chain's values along its region axis, and reads nothing that depends on the
    /// chain from outside it.
    fn grow(model: &TypedModel, order: &[usize], seed: usize) -> TractResult<Option<Head>> {
        let Some((rows, roi_slots)) = pooled_rows(model, seed) else {
            return Ok(None);
        };
        let seed_node = &model.nodes[seed];
        let mut head = Head {
            rows,
            nodes: vec![seed],
            axis: HashMap::from([(OutletId::new(seed, 0), 0)]),
            inputs: Vec::new(),
            outputs: Vec::new(),
            largest: bytes(&seed_node.outputs[0].fact),
        };
        for (slot, &input) in seed_node.inputs.iter().enumerate() {
            let how = if roi_slots.contains(&slot) {
                Use::Rows(0)
            } else {
                Use::Whole
            };
            if !head.take_input(model, input, how)? {
                return Ok(None);
            }
        }
        let mut in_head: HashSet<usize> = HashSet::from([seed]);
        // Nodes outside the chain that depend on it: a node reading one cannot join.
        let mut downstream: HashSet<usize> = HashSet::new();
        let Some(start) = order.iter().position(|&id| id == seed) else {
            return Ok(None);
        };
        for &id in &order[start + 1..] {
            let node = &model.nodes[id];
            let reads_head = node.inputs.iter().any(|i| in_head.contains(&i.node));
            let reads_downstream = node.inputs.iter().any(|i| downstream.contains(&i.node));
            if !reads_head && !reads_downstream {
                continue;
            }
            if reads_downstream || !head.try_join(model, id)? {
                downstream.insert(id);
                continue;
            }
            in_head.insert(id);
        }
        for &id in &head.nodes {
            for (slot, output) in model.nodes[id].outputs.iter().enumerate() {
                let outlet = OutletId::new(id, slot);
                let read_outside = output.successors.iter().any(|s| !in_head.contains(&s.node))
                    || model.outputs.contains(&outlet);
                if read_outside {
                    head.outputs.push((outlet, head.axis[&outlet]));
                }
            }
        }
        Ok(Some(head))
    }

    /// Records `outlet`, from outside the chain, read as `how`; false when the chain
    /// already reads it otherwise or it does not hold the regions along the axis `how`
    /// names.
    fn take_input(&mut self, model: &TypedModel, outlet: OutletId, how: Use) -> TractResult<bool> {
        let how = if is_const(model, outlet) {
            Use::Whole
        } else {
            how
        };
        if let Use::Rows(axis) = how {
            let shape = model.outlet_fact(outlet)?.shape.as_concrete();
            if shape.and_then(|s| s.get(axis)) != Some(&self.rows) {
                return Ok(false);
            }
        }
        match self.inputs.iter().find(|(o, _)| *o == outlet) {
            Some((_, before)) => Ok(*before == how),
            None => {
                self.inputs.push((outlet, how));
                Ok(true)
            }
        }
    }

    /// Node `id` joins the chain if it is row-wise over the regions of the chain's values
    /// it reads; returns whether it did.
    fn try_join(&mut self, model: &TypedModel, id: usize) -> TractResult<bool> {
        let node = &model.nodes[id];
        let [output] = node.outputs.as_slice() else {
            return Ok(false);
        };
        let Some(out_shape) = output.fact.shape.as_concrete() else {
            return Ok(false);
        };
        if output.fact.datum_type != DatumType::F32 {
            return Ok(false);
        }
        let axes: Vec<Option<usize>> = node
            .inputs
            .iter()
            .map(|i| self.axis.get(i).copied())
            .collect();
        let Some((uses, out_axis)) = row_wise(model, id, &axes)? else {
            return Ok(false);
        };
        if out_shape.get(out_axis) != Some(&self.rows) {
            return Ok(false);
        }
        let before = self.inputs.len();
        for ((&input, axis), how) in node.inputs.iter().zip(&axes).zip(uses) {
            match (axis, how) {
                (Some(a), Use::Rows(b)) if *a == b => {}
                (Some(_), _) => {
                    self.inputs.truncate(before);
                    return Ok(false);
                }
                (None, how) => {
                    if !self.take_input(model, input, how)? {
                        self.inputs.truncate(before);
                        return Ok(false);
                    }
                }
            }
        }
        self.nodes.push(id);
        self.axis.insert(OutletId::new(id, 0), out_axis);
        self.largest = self.largest.max(bytes(&output.fact));
        Ok(true)
    }

    /// The regions of a block, when the chain's largest activation over all regions is at
    /// least `min_bytes`: as many as keep the largest within `block_bytes`; `None` when the
    /// head is smaller, or a block would hold every region.
    fn block(&self, min_bytes: usize, block_bytes: usize) -> Option<usize> {
        if self.largest < min_bytes {
            return None;
        }
        let per_region = self.largest.div_ceil(self.rows).max(1);
        let block = (block_bytes / per_region).max(1);
        (block < self.rows).then_some(block)
    }

    /// The chain as a [`RegionBlocks`] of `block` regions, optimised for a block; `None`
    /// when one of its nodes does not give a block's shape on a block (an op whose shape
    /// is fixed by more than its inputs), `model` then unchanged. Otherwise the constants
    /// only the chain reads are emptied in `model` ([`Head::release_constants`]), whose
    /// chain the caller must then replace by the op.
    fn op(
        &self,
        model: &mut TypedModel,
        block: usize,
        weights: WeightsId,
        threads: usize,
    ) -> TractResult<Option<RegionBlocks>> {
        let mut body = TypedModel::default();
        let mut wired: HashMap<OutletId, OutletId> = HashMap::new();
        let mut reads = Vec::new();
        for &(outlet, how) in &self.inputs {
            let fact = model.outlet_fact(outlet)?;
            let name = format!("{}.{}", model.nodes[outlet.node].name, outlet.slot);
            let wire = if let Some(value) = constant(model, outlet) {
                body.add_const(name, value)?
            } else {
                let fact = match how {
                    Use::Whole => fact.without_value(),
                    Use::Rows(axis) => block_fact(fact, axis, block)?,
                };
                reads.push(how);
                body.add_source(name, fact)?
            };
            wired.insert(outlet, wire);
        }
        for &id in &self.nodes {
            let node = &model.nodes[id];
            let inputs =
                node.inputs
                    .iter()
                    .map(|i| {
                        wired.get(i).copied().ok_or_else(|| {
                            format_err!("{} reads a value the head lacks", node.name)
                        })
                    })
                    .collect::<TractResult<TVec<_>>>()?;
            // A dense layer reading its weight in place is built for its rows: a block's.
            let op: Box<dyn TypedOp> = match node.op_as::<WeightDense>() {
                Some(dense) => Box::new(dense.on_rows(block)),
                None => node.op.clone(),
            };
            let outputs = body.wire_node(&node.name, op, &inputs)?;
            for (slot, wire) in outputs.into_iter().enumerate() {
                wired.insert(OutletId::new(id, slot), wire);
            }
        }
        let mut outputs = Vec::new();
        let mut body_outputs = Vec::new();
        for &(outlet, axis) in &self.outputs {
            let whole = model.outlet_fact(outlet)?.without_value();
            let wire = wired[&outlet];
            let got = body.outlet_fact(wire)?;
            if got.datum_type != whole.datum_type
                || got.shape != block_fact(&whole, axis, block)?.shape
            {
                return Ok(None);
            }
            body_outputs.push(wire);
            outputs.push((whole, axis));
        }
        body.select_output_outlets(&body_outputs)?;
        self.release_constants(model)?;
        super::optimize_region_block(&mut body, weights, threads)?;
        Ok(Some(RegionBlocks {
            plan: body.into_runnable()?,
            rows: self.rows,
            block,
            reads,
            outputs,
        }))
    }
}

impl Head {
    /// The model's constants that only the chain reads, now held by its block's model too,
    /// emptied in `model`, whose chain is replaced next: so the block's optimisation, which
    /// packs each weight and drops it, holds each weight once, not the model's copy beside
    /// every packed one (doublehead R-CNN's 411 MB dense weight and the rest of its head).
    fn release_constants(&self, model: &mut TypedModel) -> TractResult<()> {
        let in_head: HashSet<usize> = self.nodes.iter().copied().collect();
        for &(outlet, _) in &self.inputs {
            let only_head = model
                .outlet_successors(outlet)
                .iter()
                .all(|s| in_head.contains(&s.node))
                && !model.outputs.contains(&outlet);
            if !is_const(model, outlet) || !only_head {
                continue;
            }
            let fact = model.outlet_fact(outlet)?;
            let empty = Tensor::zero_dt(fact.datum_type, &[0])?.into_arc_tensor();
            let node = &mut model.nodes[outlet.node];
            node.op = Box::new(Const::new(empty.clone())?);
            for output in &mut node.outputs {
                output.fact = TypedFact::try_from(empty.clone())?;
            }
        }
        Ok(())
    }
}

/// `fact` with `block` elements along `axis`.
fn block_fact(fact: &TypedFact, axis: usize, block: usize) -> TractResult<TypedFact> {
    let mut shape = fact
        .shape
        .as_concrete()
        .ok_or_else(|| format_err!("a head's value has a symbolic shape"))?
        .to_vec();
    let len = shape
        .get_mut(axis)
        .ok_or_else(|| format_err!("no axis {axis} in {shape:?}", shape = fact.shape))?;
    *len = block;
    Ok(TypedFact::dt_shape(fact.datum_type, shape))
}

/// A concrete value's size in bytes (0 when its shape is symbolic).
fn bytes(fact: &TypedFact) -> usize {
    fact.shape
        .as_concrete()
        .map_or(0, |s| s.iter().product::<usize>())
        .saturating_mul(fact.datum_type.size_of())
}

/// How node `id` reads each input and where its output's region axis lies, if it is
/// row-wise over the regions of the inputs `axes` gives a region axis for (the chain's
/// values): each input read along its region axis, or whole (a constant, a broadcast
/// operand, a convolution's kernel, the features regions are pooled from).
fn row_wise(
    model: &TypedModel,
    id: usize,
    axes: &[Option<usize>],
) -> TractResult<Option<(Vec<Use>, usize)>> {
    let node = &model.nodes[id];
    let op = &node.op;
    let Some((first, axis)) = axes.iter().enumerate().find_map(|(i, a)| a.map(|a| (i, a))) else {
        return Ok(None);
    };
    let whole_but = |slot: usize, axis: usize| -> Vec<Use> {
        (0..axes.len())
            .map(|i| {
                if i == slot {
                    Use::Rows(axis)
                } else {
                    Use::Whole
                }
            })
            .collect()
    };
    // One-input operators that keep every axis where it is.
    if op.downcast_ref::<ElementWiseOp>().is_some()
        || op.downcast_ref::<ReluKeepNan>().is_some()
        || op.downcast_ref::<ClipKeepNan>().is_some()
    {
        return Ok((axes.len() == 1).then(|| (whole_but(0, axis), axis)));
    }
    if let Some(pick) = op.downcast_ref::<StridedPick>() {
        return Ok((!pick.picks_along(axis)).then(|| (whole_but(0, axis), axis)));
    }
    if let Some(down) = op.downcast_ref::<Downsample>() {
        return Ok((down.axis != axis).then(|| (whole_but(0, axis), axis)));
    }
    if let Some(change) = op.downcast_ref::<AxisOp>() {
        return Ok(change
            .transform_axis(axis)
            .map(|to| (whole_but(0, axis), to)));
    }
    // Batched image operators, and a dense layer reading its weight in place: the regions
    // are the batch, the data's first axis.
    let batched = if let Some(conv) = op.downcast_ref::<Conv>() {
        conv.q_params.is_none() && conv.pool_spec.data_format.has_n()
    } else if let Some(deconv) = op.downcast_ref::<Deconv>() {
        deconv.pool_spec.data_format.has_n()
    } else if let Some(pool) = op.downcast_ref::<MaxPool>() {
        pool.with_index_outputs.is_none() && pool.pool_spec.data_format.has_n()
    } else if let Some(pool) = op.downcast_ref::<SumPool>() {
        pool.pool_spec.data_format.has_n()
    } else {
        false
    };
    let batched = batched || op.downcast_ref::<WeightDense>().is_some();
    if batched {
        return Ok((first == 0 && axis == 0).then(|| (whole_but(0, 0), 0)));
    }
    if op.downcast_ref::<TypedBinOp>().is_some() {
        return binary(model, id, first, axis);
    }
    if let Some(einsum) = op.downcast_ref::<EinSum>() {
        if einsum.q_params.is_some() {
            return Ok(None);
        }
        let Some(letter) = einsum.axes.iter_all_axes().find(|a| {
            a.inputs
                .get(first)
                .is_some_and(|at| at.as_slice() == [axis])
        }) else {
            return Ok(None);
        };
        let Some(&[out_axis]) = letter.outputs.first().map(|o| o.as_slice()) else {
            // The regions are summed over.
            return Ok(None);
        };
        let mut uses = Vec::with_capacity(axes.len());
        for slot in 0..axes.len() {
            uses.push(match letter.inputs.get(slot).map(|at| at.as_slice()) {
                Some([]) => Use::Whole,
                Some(&[at]) => Use::Rows(at),
                _ => return Ok(None),
            });
        }
        return Ok(Some((uses, out_axis)));
    }
    Ok(None)
}

/// A broadcast binary operator whose input `first` holds the regions along `axis`: the
/// output's region axis is that axis counted from the right, and each input is read along
/// it where it spans the regions, whole where it is broadcast (one element, or fewer axes).
fn binary(
    model: &TypedModel,
    id: usize,
    first: usize,
    axis: usize,
) -> TractResult<Option<(Vec<Use>, usize)>> {
    let node = &model.nodes[id];
    let rank =
        |slot: usize| -> TractResult<usize> { Ok(model.outlet_fact(node.inputs[slot])?.rank()) };
    let out_rank = model.outlet_fact(OutletId::new(id, 0))?.rank();
    let Some(out_axis) = (axis + out_rank).checked_sub(rank(first)?) else {
        return Ok(None);
    };
    let mut uses = Vec::with_capacity(node.inputs.len());
    for (slot, &input) in node.inputs.iter().enumerate() {
        let fact = model.outlet_fact(input)?;
        let Some(at) = (out_axis + fact.rank()).checked_sub(out_rank) else {
            uses.push(Use::Whole);
            continue;
        };
        let spans = fact.shape.as_concrete().and_then(|s| s.get(at).copied());
        uses.push(match spans {
            Some(1) | None if slot != first => Use::Whole,
            _ => Use::Rows(at),
        });
    }
    Ok(Some((uses, out_axis)))
}

/// A region head run on a block of regions at a time (see the module's notes).
#[derive(Debug, Clone)]
pub(crate) struct RegionBlocks {
    /// The head on one block, optimised by ward.
    plan: Arc<TypedRunnableModel>,
    /// The regions, and how many a block holds.
    rows: usize,
    block: usize,
    /// How the head reads each of the op's inputs, in order.
    reads: Vec<Use>,
    /// Each output over all regions, with its region axis.
    outputs: Vec<(TypedFact, usize)>,
}

impl PartialEq for RegionBlocks {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.plan, &other.plan)
    }
}

impl Eq for RegionBlocks {}

impl Op for RegionBlocks {
    fn name(&self) -> StaticName {
        "WardRegionBlocks".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = vec![format!("{} regions in blocks of {}", self.rows, self.block)];
        info.extend(
            self.plan
                .model()
                .nodes
                .iter()
                .map(|n| format!("per block: {}", n.op.name())),
        );
        Ok(info)
    }

    op_as_typed_op!();
}

impl EvalOp for RegionBlocks {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(
            inputs.len() == self.reads.len(),
            "takes {} inputs, got {}",
            self.reads.len(),
            inputs.len()
        );
        let mut outputs = self
            .outputs
            .iter()
            .map(|(fact, _)| {
                let shape = fact
                    .shape
                    .as_concrete()
                    .ok_or_else(|| format_err!("symbolic output"))?;
                Tensor::zero_dt(fact.datum_type, shape)
            })
            .collect::<TractResult<Vec<_>>>()?;
        let mut state = self.plan.spawn()?;
        let mut start = 0;
        while start < self.rows {
            let end = (start + self.block).min(self.rows);
            let values = inputs
                .iter()
                .zip(&self.reads)
                .map(|(x, how)| match how {
                    Use::Whole => Ok(x.clone()),
                    Use::Rows(axis) => Ok(rows(x, *axis, start, end, self.block)?.into_tvalue()),
                })
                .collect::<TractResult<TVec<_>>>()?;
            let ys = state.run(values)?;
            ensure!(
                ys.len() == outputs.len(),
                "the head gave {} outputs",
                ys.len()
            );
            for ((out, (_, axis)), y) in outputs.iter_mut().zip(&self.outputs).zip(&ys) {
                out.assign_slice(start..end, y, 0..end - start, *axis)?;
            }
            start = end;
        }
        Ok(outputs.into_iter().map(IntoTValue::into_tvalue).collect())
    }
}

/// Regions `start..end` of `x` along `axis`, as a block of `block`: the last block of a
/// head, when short, repeats its last region to the block's size (each region's outputs
/// are its own, and the repeats' are not kept).
fn rows(x: &Tensor, axis: usize, start: usize, end: usize, block: usize) -> TractResult<Tensor> {
    let taken = x.slice(axis, start, end)?;
    let real = end - start;
    if real == block {
        return Ok(taken);
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = block;
    let mut padded = Tensor::zero_dt(x.datum_type(), &shape)?;
    padded.assign_slice(0..real, &taken, 0..real, axis)?;
    for at in real..block {
        padded.assign_slice(at..at + 1, &taken, real - 1..real, axis)?;
    }
    Ok(padded)
}

impl TypedOp for RegionBlocks {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() == self.reads.len(),
            "takes {} inputs",
            self.reads.len()
        );
        Ok(self.outputs.iter().map(|(fact, _)| fact.clone()).collect())
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tract_onnx::prelude::{tvec, Datum, TypedFact};
    use tract_onnx::tract_core::internal::DatumTypeExt;
    use tract_onnx::tract_core::ops::math::add;

    use super::*;

    const ROWS: usize = 6;

    /// A model with `x` of `[ROWS, 4]` (the regions first) and node `op` over `x` and, when
    /// given, a second input; returns the model and the node's id.
    fn model_with(op: Box<dyn TypedOp>, second: Option<TypedFact>) -> (TypedModel, usize) {
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", DatumType::F32.fact([ROWS, 4]))
            .unwrap();
        let mut inputs = vec![x];
        if let Some(fact) = second {
            let y = match fact.konst.clone() {
                Some(value) => model.add_const("y", value).unwrap(),
                None => model.add_source("y", fact).unwrap(),
            };
            inputs.push(y);
        }
        let out = model.wire_node("op", op, &inputs).unwrap();
        (model, out[0].node)
    }

    fn einsum(expr: &str) -> Box<dyn TypedOp> {
        Box::new(EinSum::new(expr.parse().unwrap(), f32::datum_type()))
    }

    fn weight(shape: &[usize]) -> Option<TypedFact> {
        let value = Tensor::zero::<f32>(shape).unwrap().into_arc_tensor();
        Some(TypedFact::try_from(value).unwrap())
    }

    #[test]
    fn a_product_keeps_the_regions_where_they_are_a_free_axis_and_not_where_it_sums_them() {
        let (model, id) = model_with(einsum("nk,ok->no"), weight(&[3, 4]));
        let got = row_wise(&model, id, &[Some(0), None]).unwrap();
        assert_eq!(got, Some((vec![Use::Rows(0), Use::Whole], 0)));
        // The regions moved to the output's second axis.
        let (model, id) = model_with(einsum("nk,ok->on"), weight(&[3, 4]));
        let got = row_wise(&model, id, &[Some(0), None]).unwrap();
        assert_eq!(got, Some((vec![Use::Rows(0), Use::Whole], 1)));
        // Summed over the regions: each output mixes them all.
        let (model, id) = model_with(einsum("nk,n->k"), Some(DatumType::F32.fact([ROWS])));
        assert_eq!(row_wise(&model, id, &[Some(0), None]).unwrap(), None);
    }

    #[test]
    fn a_broadcast_operand_is_read_whole_and_one_spanning_the_regions_by_rows() {
        let (model, id) = model_with(Box::new(add()), weight(&[1, 4]));
        let got = row_wise(&model, id, &[Some(0), None]).unwrap();
        assert_eq!(got, Some((vec![Use::Rows(0), Use::Whole], 0)));
        let (model, id) = model_with(Box::new(add()), Some(DatumType::F32.fact([ROWS, 4])));
        let got = row_wise(&model, id, &[Some(0), None]).unwrap();
        assert_eq!(got, Some((vec![Use::Rows(0), Use::Rows(0)], 0)));
    }

    #[test]
    fn an_axis_change_keeps_the_regions_unless_it_merges_them() {
        let (model, id) = model_with(Box::new(AxisOp::Add(0)), None);
        assert_eq!(
            row_wise(&model, id, &[Some(0)]).unwrap(),
            Some((vec![Use::Rows(0)], 1))
        );
        let merge = AxisOp::Reshape(0, tvec![ROWS.into(), 4.into()], tvec![(ROWS * 4).into()]);
        let (model, id) = model_with(Box::new(merge), None);
        assert_eq!(row_wise(&model, id, &[Some(0)]).unwrap(), None);
        let pick = Downsample {
            axis: 0,
            stride: 2,
            modulo: 0,
        };
        let (model, id) = model_with(Box::new(pick), None);
        assert_eq!(row_wise(&model, id, &[Some(0)]).unwrap(), None);
    }

    #[test]
    fn a_block_holds_what_keeps_its_largest_activation_within_the_bound() {
        let head = Head {
            rows: 300,
            nodes: vec![],
            axis: HashMap::new(),
            inputs: vec![],
            outputs: vec![],
            largest: 300 * 1000,
        };
        assert_eq!(head.block(1, 20_000), Some(20));
        assert_eq!(head.block(1, 10), Some(1));
        assert_eq!(
            head.block(1, 300_000),
            None,
            "one block would hold every region"
        );
        assert_eq!(
            head.block(300_001, 20_000),
            None,
            "a small head stays whole"
        );
    }
}
