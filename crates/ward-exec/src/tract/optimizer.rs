//! tract's optimiser, driven by ward: the same passes in the same order, with two changes.
//!
//! 1. [`ReshapeConstsInPlace`] runs first in every round, so that a reshaped kernel is not
//!    copied whole while tract folds it (see that module).
//! 2. Patches are applied by [`apply`] instead of tract's `ModelPatch::apply`, which does
//!    the same edits but, for every node a patch adds, compares it with every node of the
//!    model twice: once looking for a duplicate whose result it never uses (the loop's
//!    `continue` only continues the search, and the node is added anyway), and once
//!    looking for a node of the same name. With a few thousand nodes and as many patches
//!    (NASNet-A: 3,600 patches over 3,200 nodes) those comparisons were half of a whole
//!    `ward predict`. Here a count of the model's names answers the second question, and
//!    the first is not asked.
//!
//! The loop is tract 0.23's `OptimizerSession::optimize`: every pass is run until it finds
//! nothing more, the model compacted after each, and the whole list again until a round
//! applies no patch. A watchdog string a patch carries is honoured as tract does: a patch
//! whose watchdog was seen before is skipped. The unit test below holds the result to
//! tract's own optimiser on nine fixture models. tract 0.23.9 is pinned: an upgrade must
//! check this loop and `apply` against its `OptimizerSession` and `ModelPatch::apply`.

#![allow(
    clippy::indexing_slicing,
    reason = "node ids and outlet slots come from tract's own graph and patch, where every input, tap and successor names a node that exists"
)]

use std::collections::{HashMap, HashSet};

use tract_onnx::prelude::{TVec, Tensor, TractResult, TypedFact, TypedModel};
use tract_onnx::tract_core::internal::{format_err, InletId, Node, OutletId, SpecialOps, TypedOp};
use tract_onnx::tract_core::model::TypedModelPatch;
use tract_onnx::tract_core::optim::{Optimizer, TypedPass};

use super::reshape_consts::ReshapeConstsInPlace;

/// Freed large blocks worth giving back to the operating system while a plan is built
/// (`ward_alloc::release_after_large_frees`): a weight's size or so, so that a freed
/// weight's pages never stay resident beside the copy that replaced it, and the
/// allocator is not asked after every small patch.
pub(crate) const TRIM_AFTER_BYTES: usize = 8 << 20;

/// tract's full optimisation: its declutter passes, then its codegen passes (what a plan
/// runs with ward's convolutions between them, `direct_conv::optimize`; the tests hold
/// this pass runner to tract's own `into_optimized`).
#[cfg(test)]
pub(crate) fn optimize(model: &mut TypedModel) -> TractResult<()> {
    declutter(model)?;
    codegen(model)
}

/// tract's declutter passes alone.
pub(crate) fn declutter(model: &mut TypedModel) -> TractResult<()> {
    run(Optimizer::declutter(), model)
}

/// tract's codegen passes alone (on a model already decluttered).
pub(crate) fn codegen(model: &mut TypedModel) -> TractResult<()> {
    run(Optimizer::codegen(), model)
}

/// Runs `optimizer`'s passes, with the in-place reshape fold first, until a round applies
/// no patch.
fn run(mut optimizer: Optimizer, model: &mut TypedModel) -> TractResult<()> {
    optimizer.add_pass(0, Box::new(ReshapeConstsInPlace));
    let passes = optimizer.passes.clone();
    let mut session = optimizer.session();
    let mut seen = HashSet::new();
    let mut applied = 0usize;
    model.compact()?;
    loop {
        let before = applied;
        for pass in &passes {
            let mut pass = pass.clone();
            loop {
                let before_pass = applied;
                applied += run_pass_once(pass.as_mut(), &mut session, &mut seen, model)?;
                if applied == before_pass {
                    break;
                }
                model.compact()?;
            }
            model.compact()?;
        }
        if applied == before {
            return Ok(());
        }
        model.compact()?;
    }
}

/// One sweep of `pass`: every patch it proposes, applied, then its in-place hook. Returns
/// how many patches were applied.
fn run_pass_once(
    pass: &mut dyn TypedPass,
    session: &mut tract_onnx::tract_core::optim::OptimizerSession,
    seen: &mut HashSet<String>,
    model: &mut TypedModel,
) -> TractResult<usize> {
    pass.reset()?;
    let mut names = Names::of(model);
    let mut applied = 0;
    while let Some(mut patch) = pass.next(session, model)? {
        if let Some(watchdog) = patch.dont_apply_twice.take() {
            if !seen.insert(watchdog) {
                continue;
            }
        }
        apply(patch, model, &mut names)?;
        // A patch that packed a weight has freed the unpacked one.
        ward_alloc::release_after_large_frees(TRIM_AFTER_BYTES);
        applied += 1;
    }
    pass.run_direct(model)?;
    Ok(applied)
}

/// An input of a node [`Rewriter::replace`] wires: an outlet of the model, or a constant
/// (its name and value) added with the node.
pub(super) enum Wire {
    Outlet(OutletId),
    Const(String, Tensor),
}

/// ward's own rewrites of the typed model before the optimiser (a pass that swaps a
/// pattern for ward's op, node by node), applied as the optimiser applies its patches:
/// without tract's scans of the whole model for every patch.
pub(super) struct Rewriter(Names);

impl Rewriter {
    pub(super) fn of(model: &TypedModel) -> Rewriter {
        Rewriter(Names::of(model))
    }

    /// Node `id` of `model` (a node of one output) replaced by `op` over `inputs`, under
    /// its name; what fed only the old node is dropped.
    pub(super) fn replace(
        &mut self,
        model: &mut TypedModel,
        id: usize,
        op: impl Into<Box<dyn TypedOp>>,
        inputs: Vec<Wire>,
    ) -> TractResult<()> {
        let name = model.nodes[id].name.clone();
        self.replace_outlets(model, &[id.into()], name, op, inputs)
    }

    /// The outlets `replaced` of `model` replaced, in order, by the outputs of one node
    /// `op` named `name` over `inputs`; what fed only the replaced outlets is dropped.
    pub(super) fn replace_outlets(
        &mut self,
        model: &mut TypedModel,
        replaced: &[OutletId],
        name: String,
        op: impl Into<Box<dyn TypedOp>>,
        inputs: Vec<Wire>,
    ) -> TractResult<()> {
        let mut patch = TypedModelPatch::default();
        let mut wires = TVec::new();
        for input in inputs {
            wires.push(match input {
                Wire::Outlet(outlet) => patch.tap_model(model, outlet)?,
                Wire::Const(name, value) => patch.add_const(name, value)?,
            });
        }
        let outputs = patch.wire_node(name, op, &wires)?;
        if outputs.len() != replaced.len() {
            return Err(format_err!(
                "{} outputs replace {} outlets",
                outputs.len(),
                replaced.len()
            ));
        }
        for (outlet, by) in replaced.iter().zip(outputs) {
            patch.shunt_outside(model, *outlet, by)?;
        }
        apply(patch, model, &mut self.0)
    }
}

/// How many nodes of the model bear each name.
struct Names(HashMap<String, usize>);

impl Names {
    fn of(model: &TypedModel) -> Names {
        let mut names = Names(HashMap::with_capacity(model.nodes.len()));
        for node in &model.nodes {
            names.add(&node.name);
        }
        names
    }

    fn add(&mut self, name: &str) {
        *self.0.entry(name.to_string()).or_default() += 1;
    }

    fn remove(&mut self, name: &str) {
        if let Some(count) = self.0.get_mut(name) {
            *count = count.saturating_sub(1);
        }
    }

    fn count(&self, name: &str) -> usize {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// `prefix` if no node bears it, else the first of `prefix.1`, `prefix.2`, ... that
    /// none bears (tract's `Graph::unique_name`).
    fn unique(&self, prefix: &str) -> String {
        if self.count(prefix) == 0 {
            return prefix.to_string();
        }
        (1..)
            .map(|i| format!("{prefix}.{i}"))
            .find(|name| self.count(name) == 0)
            .unwrap_or_default()
    }

    fn rename(&mut self, model: &mut TypedModel, node: usize, name: String) {
        self.remove(&model.nodes[node].name);
        self.add(&name);
        model.nodes[node].name = name;
    }
}

/// tract 0.23's `ModelPatch::apply`, with the model's names counted in `names` rather
/// than searched for, and without its duplicate search, whose result is never used.
fn apply(patch: TypedModelPatch, target: &mut TypedModel, names: &mut Names) -> TractResult<()> {
    let TypedModelPatch {
        model: patch,
        taps: mut mapping,
        shunts,
        obliterate,
        inputs: replaced_inputs,
        ..
    } = patch;
    let outlet = |mapping: &HashMap<OutletId, OutletId>, of: &OutletId| {
        mapping
            .get(of)
            .copied()
            .ok_or_else(|| format_err!("patch outlet {of:?} is wired to nothing"))
    };
    // The patch's nodes, added in order (so a node's inputs are mapped before it).
    let mut new_nodes: Vec<(usize, Vec<OutletId>)> = Vec::new();
    let mut model_inputs = target.input_outlets()?.to_vec();
    for node in patch.nodes {
        if TypedModel::is_source(&node.op) && mapping.contains_key(&OutletId::new(node.id, 0)) {
            continue; // a tap: it stands for an outlet of the target
        }
        let Node {
            id: patch_id,
            name,
            inputs,
            op,
            outputs,
        } = node;
        let facts: TVec<TypedFact> = outputs.into_iter().map(|output| output.fact).collect();
        let slots = facts.len();
        let added = target.add_node(name, op, facts)?;
        names.add(&target.nodes[added].name);
        for slot in 0..slots {
            mapping.insert(OutletId::new(patch_id, slot), OutletId::new(added, slot));
        }
        if TypedModel::is_source(&target.nodes[added].op) {
            // A new source replaces one of the model's inputs.
            let replaced = *replaced_inputs
                .get(&patch_id)
                .ok_or_else(|| format_err!("patch source {patch_id} replaces no input"))?;
            for input in &mut model_inputs {
                if input.node == replaced {
                    input.node = added;
                }
            }
        }
        new_nodes.push((added, inputs));
    }
    // Outlets of the target replaced by the patch's: their consumers, the model's outputs
    // and their labels move over.
    let mut shunts: Vec<(OutletId, OutletId)> = shunts.into_iter().collect();
    shunts.sort();
    for (replaced, by) in &shunts {
        let by = outlet(&mapping, by)?;
        let successors = target.nodes[replaced.node].outputs[replaced.slot]
            .successors
            .clone();
        for successor in successors {
            target.add_edge(by, successor)?;
        }
        for output in &mut target.outputs {
            if output == replaced {
                *output = by;
            }
        }
        if let Some(label) = target.outlet_labels.remove(replaced) {
            target.set_outlet_label(by, label)?;
        }
    }
    for (node, inputs) in &new_nodes {
        for (slot, input) in inputs.iter().enumerate() {
            target.add_edge(outlet(&mapping, input)?, InletId::new(*node, slot))?;
        }
    }
    for node in obliterate {
        target.nodes[node].op = target.create_dummy();
    }
    target.set_input_outlets(&model_inputs)?;
    // Nodes left without a consumer by the shunts, and what fed only them, become dummies
    // (dropping their facts and constants); compaction removes them.
    let mut maybe_garbage: Vec<usize> = shunts.iter().map(|(replaced, _)| replaced.node).collect();
    while let Some(maybe) = maybe_garbage.pop() {
        if target.outputs.iter().any(|output| output.node == maybe)
            || target.inputs.iter().any(|input| input.node == maybe)
            || target.nodes[maybe]
                .outputs
                .iter()
                .any(|o| !o.successors.is_empty())
        {
            continue;
        }
        target.nodes[maybe].op = target.create_dummy();
        names.rename(target, maybe, format!("Dummy-node-{maybe}"));
        target.nodes[maybe].outputs.clear();
        let inputs = std::mem::take(&mut target.nodes[maybe].inputs);
        for input in inputs {
            target.nodes[input.node].outputs[input.slot]
                .successors
                .retain(|s| s.node != maybe);
            maybe_garbage.push(input.node);
        }
    }
    // New names made unique as tract makes them: a `prefix#...` name becomes the first
    // free of `prefix`, `prefix.1`, ...; a name another node bears gets the first free
    // suffix.
    for (node, _) in &new_nodes {
        let name = target.nodes[*node].name.clone();
        if let Some((prefix, _)) = name.split_once('#') {
            let unique = names.unique(prefix);
            names.rename(target, *node, unique);
        } else if names.count(&name) > 1 {
            let unique = names.unique(&name);
            names.rename(target, *node, unique);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashMap;
    use std::path::Path;

    use tract_onnx::prelude::{
        Framework, InferenceModelExt, IntoRunnable, IntoTValue, IntoTensor, Tensor, TypedModel,
    };
    use ward_core::DType;
    use ward_mxnet::import::{import, DeclaredInput};
    use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
    use ward_mxnet::params::read_params;
    use ward_mxnet::symbol::read_symbol;

    use crate::onnx::{lower_with, Params};
    use crate::weights::WeightSet;

    /// Fixture `name`'s graph lowered and typed as the backend does (weights embedded).
    fn typed_fixture(name: &str) -> TypedModel {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/models")
            .join(name);
        let read = |file: &str| std::fs::read(dir.join(file)).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&read("meta.json")).unwrap();
        let symbol = read_symbol(&read("model-symbol.json"), &SymbolLimits::default()).unwrap();
        let params = read_params(&read("model-0000.params"), &ParamsLimits::default()).unwrap();
        let declared: Vec<DeclaredInput> = meta["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|input| DeclaredInput {
                name: input["name"].as_str().unwrap().to_string(),
                dtype: DType::F32,
                shape: serde_json::from_value(input["shape"].clone()).unwrap(),
            })
            .collect();
        let imported = import(&symbol, params, &declared).unwrap();
        let shapes: Vec<Vec<usize>> = imported
            .graph
            .inputs
            .iter()
            .filter(|input| input.role == ward_graph::ir::InputRole::Data)
            .map(|input| {
                let declared = declared.iter().find(|d| d.name == input.name).unwrap();
                declared.shape.iter().map(|&n| n as usize).collect()
            })
            .collect();
        let weights: HashMap<_, _> = imported.weights.into_iter().collect();
        let weights = WeightSet::new(&imported.graph, weights).unwrap();
        let (proto, _) = lower_with(
            &imported.graph,
            weights.tensors(),
            &shapes,
            Params::Initializers,
        )
        .unwrap();
        super::super::onnx()
            .model_for_proto_model(&proto)
            .unwrap()
            .into_typed()
            .unwrap()
    }

    /// A deterministic input for each of the model's inputs.
    fn inputs(model: &TypedModel) -> Vec<Tensor> {
        model
            .input_outlets()
            .unwrap()
            .iter()
            .map(|outlet| {
                let fact = model.outlet_fact(*outlet).unwrap();
                let shape = fact.shape.as_concrete().unwrap().to_vec();
                let len: usize = shape.iter().product();
                let values: Vec<f32> = (0..len).map(|i| ((i * 7919) % 97) as f32 / 97.0).collect();
                let tensor = Tensor::from_shape(&shape, &values).unwrap();
                tensor.cast_to_dt(fact.datum_type).unwrap().into_owned()
            })
            .collect()
    }

    fn run(model: TypedModel, inputs: &[Tensor]) -> Vec<Tensor> {
        let plan = model.into_runnable().unwrap();
        plan.run(inputs.iter().cloned().map(|t| t.into_tvalue()).collect())
            .unwrap()
            .into_iter()
            .map(|v| v.into_tensor())
            .collect()
    }

    /// ward's driver makes the model tract's own optimiser makes: the same operators in
    /// the same order, computing the same bits.
    #[test]
    fn the_model_is_the_one_tracts_optimiser_makes() {
        for name in [
            "resnet18_v1",
            "squeezenet1_1",
            "mobilenetv2_0_25",
            "transformer_en_de_512",
            "yolo_upsample",
            "text_lstm",
            "bert_12_768_12",
            "fastscnn_citys",
            "elmo_2x1024_128_2048cnn_1xhighway",
        ] {
            let typed = typed_fixture(name);
            let inputs = inputs(&typed);
            let theirs = typed.clone().into_optimized().unwrap();
            let mut ours = typed;
            super::optimize(&mut ours).unwrap();
            let ops = |model: &TypedModel| -> Vec<String> {
                model
                    .nodes
                    .iter()
                    .map(|n| n.op.name().to_string())
                    .collect()
            };
            assert_eq!(ops(&ours), ops(&theirs), "{name}: operators");
            let mut our_names: Vec<&str> = ours.nodes.iter().map(|n| n.name.as_str()).collect();
            let mut their_names: Vec<&str> = theirs.nodes.iter().map(|n| n.name.as_str()).collect();
            our_names.sort_unstable();
            their_names.sort_unstable();
            let unique = our_names.windows(2).all(|w| w[0] != w[1]);
            assert!(unique, "{name}: node names are unique");
            assert_eq!(
                ours.output_outlets().unwrap().len(),
                theirs.output_outlets().unwrap().len()
            );
            assert_eq!(run(ours, &inputs), run(theirs, &inputs), "{name}: outputs");
        }
    }
}
