//! The weights enter tract's model as its constants directly: the graph is lowered with
//! each param a node reads as a graph input without values ([`Params::Inputs`]), and
//! each such input is made a constant here, from the weight itself. So a plan is built
//! with one copy of the weights (tract's), not two (an ONNX initializer's bytes, then
//! tract's tensor made from them); and a weight tract packs for its matrix products is
//! dropped once packed.
//!
//! [`Params::Inputs`]: crate::onnx::Params::Inputs

use tract_onnx::prelude::{
    InferenceFact, InferenceModel, IntoArcTensor, TractResult, TypedFact, TypedModel,
};
use tract_onnx::tract_hir::infer::InferenceOp;
use tract_onnx::tract_hir::ops::konst::Const;
use ward_core::{DType, Tensor};

use std::sync::Arc;

use super::dense::DenseWeight;
use crate::error::ExecError;
use crate::onnx::Derived;
use crate::weights::WeightSet;

/// The weights a plan is built from. Shared, every tensor stays where it is (the
/// executable keeps them for its next plan). Owned (a plan built once, for a single run),
/// each tensor is dropped as soon as the last thing the build makes from it is made, so a
/// weight's bytes and the engine's copy of them are held together one tensor at a time,
/// not for the whole model.
pub(crate) enum WeightPool {
    Shared(Arc<WeightSet>),
    Owned {
        tensors: Vec<Option<Tensor>>,
        /// Uses of each tensor the build has still to make.
        left: Vec<usize>,
    },
}

impl WeightPool {
    /// `tensors`, owned by the build, which will read param `p` `uses[p]` times.
    pub(crate) fn owned(tensors: Vec<Tensor>, uses: Vec<usize>) -> WeightPool {
        WeightPool::Owned {
            tensors: tensors.into_iter().map(Some).collect(),
            left: uses,
        }
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Tensor> {
        match self {
            WeightPool::Shared(set) => set.tensors().get(index),
            WeightPool::Owned { tensors, .. } => tensors.get(index).and_then(Option::as_ref),
        }
    }

    /// Param `index` for a use that keeps it (a dense layer reading its weight in place):
    /// the shared set itself, or an owned tensor, moved out on its last use and copied
    /// before. The use is made.
    pub(crate) fn keep(&mut self, index: usize) -> Option<DenseWeight> {
        let kept = match self {
            WeightPool::Shared(set) => Some(DenseWeight::InSet(Arc::clone(set))),
            WeightPool::Owned { tensors, left } => {
                let last = left.get(index).is_some_and(|&n| n <= 1);
                let slot = tensors.get_mut(index)?;
                let tensor = if last { slot.take() } else { slot.clone() };
                tensor.map(|t| DenseWeight::Own(Arc::new(t)))
            }
        };
        self.used(index);
        kept
    }

    /// One use of param `index` made: an owned tensor with none left is dropped.
    pub(crate) fn used(&mut self, index: usize) {
        if let WeightPool::Owned { tensors, left } = self {
            if let Some(n) = left.get_mut(index) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    if let Some(t) = tensors.get_mut(index) {
                        *t = None;
                    }
                }
            }
        }
    }
}

/// How many times a build reads each of `count` params: once per constant derived from
/// it, once per param made a constant or read in place (`params`, which holds the
/// deferred dense weights too).
pub(crate) fn uses(count: usize, params: &[usize], derived: &[Derived]) -> Vec<usize> {
    let mut uses = vec![0usize; count];
    for p in params
        .iter()
        .copied()
        .chain(derived.iter().filter_map(Derived::param))
    {
        if let Some(n) = uses.get_mut(p) {
            *n += 1;
        }
    }
    uses
}

/// Makes the inputs of `model` after its data inputs constants: first `params.len()` of
/// them (input `k` holds `weights[params[k]]` as float32), except those of the params in
/// `deferred`, which stay inputs, after the data inputs, in their order in `params` (the
/// caller decides them on the typed model); then one per `derived` constant, holding its
/// values. Each use is reported to `weights` as it is made. Returns the params left as
/// inputs, in order.
pub(crate) fn adopt(
    model: &mut InferenceModel,
    weights: &mut WeightPool,
    params: &[usize],
    deferred: &[usize],
    derived: Vec<Derived>,
) -> Result<Vec<usize>, ExecError> {
    let inputs = model
        .input_outlets()
        .map_err(super::engine("adopt the weights"))?;
    let constants = params.len().saturating_add(derived.len());
    let data = inputs
        .len()
        .checked_sub(constants)
        .ok_or_else(|| ExecError::Engine {
            stage: "adopt the weights",
            detail: format!("{} inputs for {constants} constants", inputs.len()),
        })?;
    let (data_inputs, constant_inputs) = inputs.split_at(data);
    let mut kept = data_inputs.to_vec();
    let (weight_inputs, derived_inputs) = constant_inputs.split_at(params.len());
    let weight_inputs = weight_inputs.to_vec();
    let derived_inputs = derived_inputs.to_vec();
    for (outlet, d) in derived_inputs.iter().zip(derived) {
        let mut tensor = tract_onnx::prelude::Tensor::zero::<f32>(&d.dims)
            .map_err(super::engine("adopt the weights"))?;
        let mut plain = tensor
            .try_as_plain_ram_mut()
            .map_err(super::engine("adopt the weights"))?;
        let values = plain
            .as_slice_mut::<f32>()
            .map_err(super::engine("adopt the weights"))?;
        let param = d.param();
        d.fill_from(param.and_then(|p| weights.get(p)), values)
            .map_err(|detail| ExecError::Engine {
                stage: "adopt the weights",
                detail,
            })?;
        if let Some(p) = param {
            weights.used(p);
        }
        make_const(model, outlet.node, tensor).map_err(super::engine("adopt the weights"))?;
    }
    let mut left = Vec::new();
    for (outlet, &index) in weight_inputs.iter().zip(params) {
        if deferred.contains(&index) {
            kept.push(*outlet);
            left.push(index);
            continue;
        }
        let tensor = tract_weight(weights.get(index), index)?;
        weights.used(index);
        make_const(model, outlet.node, tensor).map_err(super::engine("adopt the weights"))?;
        // An owned weight, copied, has just been freed.
        ward_alloc::release_after_large_frees(super::optimizer::TRIM_AFTER_BYTES);
    }
    model
        .set_input_outlets(&kept)
        .map_err(super::engine("adopt the weights"))?;
    Ok(left)
}

/// Param `index`'s tensor `weight` as tract's float32 tensor.
pub(crate) fn tract_weight(
    weight: Option<&Tensor>,
    index: usize,
) -> Result<tract_onnx::prelude::Tensor, ExecError> {
    let weight = weight.ok_or_else(|| ExecError::Weights {
        reason: format!("param {index} has no tensor"),
    })?;
    if weight.dtype() == DType::F32 {
        super::to_tract(&weight.view())
    } else {
        super::to_tract(&weight.to_f32().view())
    }
}

/// Node `id` (a source) becomes a constant holding `tensor`.
fn make_const(
    model: &mut InferenceModel,
    id: usize,
    tensor: tract_onnx::prelude::Tensor,
) -> TractResult<()> {
    let value = tensor.into_arc_tensor();
    let fact = InferenceFact::from(TypedFact::try_from(value.clone())?);
    let op: Box<dyn InferenceOp> = Box::new(Const::new(value)?);
    let node = model.node_mut(id);
    node.op = op;
    if let Some(output) = node.outputs.first_mut() {
        output.fact = fact;
    }
    Ok(())
}

/// Node `id` of a typed model (a source) becomes a constant holding `tensor`.
pub(crate) fn make_typed_const(
    model: &mut TypedModel,
    id: usize,
    tensor: tract_onnx::prelude::Tensor,
) -> TractResult<()> {
    let value = tensor.into_arc_tensor();
    let fact = TypedFact::try_from(value.clone())?;
    let node = model.node_mut(id);
    node.op = Box::new(Const::new(value)?);
    if let Some(output) = node.outputs.first_mut() {
        output.fact = fact;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use crate::testing::values;
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::backend::Backend;
    use crate::onnx::{lower_with, Params};
    use crate::{Executable, TractBackend, WeightSet};
    use ward_graph::ir::{Graph, GraphInput, GraphOutput, InputRole, Node, ParamDecl, Source};
    use ward_graph::ops::linear::Dense;

    /// y = x·Wᵀ + b on a (1, 4, 8) input flattened to 32 features, 48 units.
    fn dense_graph() -> Graph {
        let mut g = Graph::new();
        g.inputs.push(GraphInput {
            name: "x".into(),
            dtype: DType::F32,
            role: InputRole::Data,
        });
        g.params.push(ParamDecl::new("w", DType::F32, vec![48, 32]));
        g.params.push(ParamDecl::new("b", DType::F32, vec![48]));
        g.nodes.push(Node {
            name: "dense".into(),
            op: Dense {
                units: 48,
                flatten: true,
                bias: true,
            }
            .into(),
            inputs: vec![Source::Input(0), Source::Param(0), Source::Param(1)],
        });
        g.outputs.push(GraphOutput {
            name: "y".into(),
            source: Source::Node(0, 0),
        });
        g.validate().unwrap();
        g
    }

    /// The engine's proto holds no weight bytes: every param a node reads is a graph input
    /// after the data inputs, and the dense weight is read where it lies (no transposed
    /// copy); the plan made from it computes x·Wᵀ + b.
    #[test]
    fn the_engine_takes_the_weights_themselves_as_constants() {
        let g = dense_graph();
        let (w, b, x) = (values(48 * 32, 1), values(48, 2), values(32, 3));
        let weights = vec![
            Tensor::from_f32(vec![48, 32], &w).unwrap(),
            Tensor::from_f32(vec![48], &b).unwrap(),
        ];
        let (proto, params) = lower_with(&g, &weights, &[vec![1, 4, 8]], Params::Inputs).unwrap();
        assert_eq!(params.inputs, [0, 1]);
        assert_eq!(params.dense_weights, [0]);
        let graph = proto.graph.unwrap();
        let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(inputs, ["x", "w", "b"]);
        let held: usize = graph.initializer.iter().map(|t| t.raw_data.len()).sum();
        assert!(held < 64, "the proto holds {held} bytes of constants");
        assert!(graph.node.iter().all(|n| n.op_type != "Transpose"));

        let named = HashMap::from([
            ("w".to_string(), weights[0].clone()),
            ("b".to_string(), weights[1].clone()),
        ]);
        let set = WeightSet::new(&g, named).unwrap();
        let model = Executable::new(g, set, Arc::new(TractBackend::new(1).unwrap())).unwrap();
        let input = Tensor::from_f32(vec![1, 4, 8], &x).unwrap();
        let got = model.run(&[input]).unwrap().remove(0);
        assert_eq!(got.shape(), [1, 48]);
        let want: Vec<f32> = (0..48)
            .map(|u| b[u] + (0..32).map(|k| x[k] * w[u * 32 + k]).sum::<f32>())
            .collect();
        for (g, w) in got.to_f32_vec().iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    /// A plan built once takes the weights: each tensor is dropped once the engine holds
    /// its own form of it, and only a dense weight read in place (a product on at most
    /// 8 rows) stays, in the plan; the numbers are those of a plan built from shared
    /// weights.
    #[test]
    fn a_plan_built_once_lets_go_of_every_weight_it_copied() {
        let (w, b) = (values(48 * 32, 1), values(48, 2));
        let mut bytes: Vec<u8> = w.iter().chain(&b).flat_map(|v| v.to_le_bytes()).collect();
        bytes.shrink_to_fit();
        let buffer = Arc::new(ward_core::Buffer::from(bytes));
        let weight_bytes = 48 * 32 * 4;
        for (rows, kept) in [(1, 2), (16, 1)] {
            let g = dense_graph();
            let named = HashMap::from([
                (
                    "w".to_string(),
                    Tensor::shared(DType::F32, vec![48, 32], &buffer, 0..weight_bytes).unwrap(),
                ),
                (
                    "b".to_string(),
                    Tensor::shared(
                        DType::F32,
                        vec![48],
                        &buffer,
                        weight_bytes..weight_bytes + 48 * 4,
                    )
                    .unwrap(),
                ),
            ]);
            let set = WeightSet::new(&g, named).unwrap();
            let x = values(rows * 32, 3);
            let input = Tensor::from_f32(vec![rows, 4, 8], &x).unwrap();
            let backend = Arc::new(TractBackend::new(1).unwrap());
            let shared = Executable::new(g.clone(), set.clone(), backend.clone()).unwrap();
            let want = shared.run(std::slice::from_ref(&input)).unwrap();
            drop(shared);
            assert_eq!(Arc::strong_count(&buffer), 3, "w and b hold the buffer");

            let once = Executable::new(g, set, backend.clone()).unwrap();
            let plan = once.into_plan(&[vec![rows, 4, 8]]).unwrap();
            assert_eq!(
                Arc::strong_count(&buffer),
                kept,
                "{rows} rows: the plan keeps only what it reads in place"
            );
            let views = [input.view()];
            let got = plan.run(backend.stage(&views).unwrap()).unwrap();
            assert_eq!(got, want, "{rows} rows");
            drop(plan);
            assert_eq!(Arc::strong_count(&buffer), 1);
        }
    }
}
