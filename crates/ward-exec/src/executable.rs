//! A graph with its current weights on a backend, running through a small cache of plans
//! keyed by the weights' identity and the input shapes: a plan never outlives the weights
//! it was compiled for.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use ward_core::{Tensor, TensorView};
use ward_graph::Graph;

use crate::backend::{Backend, Plan, Staged};
use crate::error::ExecError;
use crate::weights::{WeightSet, WeightsId};

/// Most plans kept; the least recently used is dropped beyond it.
pub const MAX_CACHED_PLANS: usize = 8;

/// A plan's weights and data input shapes.
type Key = (WeightsId, Vec<Vec<usize>>);

/// Plans by key, least recently used first.
type Plans = Vec<(Key, Arc<dyn Plan>)>;

pub struct Executable {
    graph: Graph,
    weights: RwLock<Arc<WeightSet>>,
    backend: Arc<dyn Backend>,
    /// Least recently used first.
    plans: Mutex<Plans>,
}

impl Executable {
    /// `graph` with `weights` on `backend`, which must implement every operator.
    pub fn new(
        graph: Graph,
        weights: Arc<WeightSet>,
        backend: Arc<dyn Backend>,
    ) -> Result<Executable, ExecError> {
        backend.check(&graph)?;
        Ok(Executable {
            graph,
            weights: RwLock::new(weights),
            backend,
            plans: Mutex::new(Vec::new()),
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The weights the next run uses.
    pub fn weights(&self) -> Arc<WeightSet> {
        self.weights
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs with `weights` from now on; plans compiled for the old ones are dropped.
    pub fn set_weights(&self, weights: Arc<WeightSet>) -> Result<(), ExecError> {
        let id = weights.id();
        *self.weights.write().unwrap_or_else(|p| p.into_inner()) = weights;
        self.lock_plans()?.retain(|((w, _), _)| *w == id);
        Ok(())
    }

    /// The plan for these data input shapes and the current weights, compiled on first
    /// use. A client cycling through many batch sizes evicts its own plans, not the ones
    /// steady traffic keeps using.
    pub fn plan(&self, data_shapes: &[Vec<usize>]) -> Result<Arc<dyn Plan>, ExecError> {
        let id = self.weights.read().unwrap_or_else(|p| p.into_inner()).id();
        if let Some(plan) = Self::cached(&mut *self.lock_plans()?, id, data_shapes) {
            return Ok(plan);
        }
        // The weights may have been replaced meanwhile: compile for the current ones.
        let weights = self.weights();
        let id = weights.id();
        let built = self.backend.compile(&self.graph, &weights, data_shapes)?;
        let mut plans = self.lock_plans()?;
        // Another thread may have built the same plan meanwhile: keep one copy.
        if let Some(plan) = Self::cached(&mut plans, id, data_shapes) {
            return Ok(plan);
        }
        if plans.len() >= MAX_CACHED_PLANS {
            plans.remove(0);
        }
        plans.push(((id, data_shapes.to_vec()), built.clone()));
        Ok(built)
    }

    /// Compiles the plan for these data input shapes and hands it the weights: the
    /// backend may drop each weight as soon as the plan holds its own form of it
    /// ([`Backend::compile_once`]), so building it holds the weights about once. For a
    /// single run (`ward predict`); the executable is gone after.
    pub fn into_plan(self, data_shapes: &[Vec<usize>]) -> Result<Arc<dyn Plan>, ExecError> {
        let Executable {
            graph,
            weights,
            backend,
            plans,
        } = self;
        drop(plans);
        let weights = weights.into_inner().unwrap_or_else(|p| p.into_inner());
        backend.compile_once(&graph, weights, data_shapes)
    }

    fn lock_plans(&self) -> Result<MutexGuard<'_, Plans>, ExecError> {
        self.plans.lock().map_err(|_| ExecError::CachePoisoned)
    }

    /// The cached plan for these weights and shapes, moved to the most recently used end
    /// (where steady traffic finds it first, with nothing to move).
    fn cached(plans: &mut Plans, id: WeightsId, shapes: &[Vec<usize>]) -> Option<Arc<dyn Plan>> {
        let i = plans
            .iter()
            .rposition(|((w, s), _)| *w == id && s.as_slice() == shapes)?;
        if i + 1 != plans.len() {
            let hit = plans.remove(i);
            plans.push(hit);
        }
        plans.last().map(|(_, plan)| plan.clone())
    }

    /// Copies inputs, in the graph's data input order, into the backend's own tensors
    /// ([`Backend::stage`]). Callers validate inputs against the package schema first
    /// ([`crate::LoadedPackage::stage`] does both).
    pub fn stage(&self, inputs: &[TensorView<'_>]) -> Result<Staged, ExecError> {
        self.backend.stage(inputs)
    }

    /// Runs staged inputs on the plan for their shapes and the current weights (compiled
    /// on first use).
    pub fn run_staged(&self, inputs: Staged) -> Result<Vec<Tensor>, ExecError> {
        self.plan(inputs.shapes())?.run(inputs)
    }

    /// Runs on inputs in the graph's data input order: staged, then run. Callers validate
    /// inputs against the package schema first ([`crate::LoadedPackage::check_inputs`]).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, ExecError> {
        let views: Vec<TensorView<'_>> = inputs.iter().map(Tensor::view).collect();
        self.run_staged(self.stage(&views)?)
    }
}
