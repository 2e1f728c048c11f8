//! The execution layer's contract: a backend compiles a graph with its weights, for
//! concrete input shapes, into a plan; it stages inputs (copies them into its own
//! tensors) apart from running them, so a caller can take that copy while it still owns
//! the bytes (a Python binding, before it releases the GIL) and run later; a plan runs
//! staged inputs.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use ward_core::{Tensor, TensorView};
use ward_graph::Graph;

use crate::error::ExecError;
use crate::weights::{WeightSet, WeightsId};

/// An engine that runs ward graphs.
pub trait Backend: Send + Sync {
    /// The backend's name, for messages (`tract`).
    fn name(&self) -> &'static str;

    /// Refuses a graph holding an operator or attribute value the backend does not
    /// implement, naming the node, before any plan is compiled.
    fn check(&self, graph: &Graph) -> Result<(), ExecError>;

    /// Compiles `graph` with `weights` for the shapes of its data inputs.
    fn compile(
        &self,
        graph: &Graph,
        weights: &Arc<WeightSet>,
        data_shapes: &[Vec<usize>],
    ) -> Result<Arc<dyn Plan>, ExecError>;

    /// Compiles as [`Backend::compile`] does, for weights nothing else will use: when the
    /// caller hands over the only reference, the backend may drop each weight as soon as
    /// the plan holds its own form of it, so the weights are held about once while the
    /// plan is built, not twice. By default, [`Backend::compile`].
    fn compile_once(
        &self,
        graph: &Graph,
        weights: Arc<WeightSet>,
        data_shapes: &[Vec<usize>],
    ) -> Result<Arc<dyn Plan>, ExecError> {
        self.compile(graph, &weights, data_shapes)
    }

    /// Copies `inputs` (in the graph's data input order) into the engine's own input
    /// tensors: the one copy of the caller's bytes. Nothing of `inputs` is kept, so the
    /// caller may change or free them as soon as this returns.
    fn stage(&self, inputs: &[TensorView<'_>]) -> Result<Staged, ExecError>;
}

/// A graph compiled for one set of weights and input shapes.
pub trait Plan: Send + Sync {
    /// Runs on inputs staged by its backend, of exactly the shapes the plan was built
    /// for, in the graph's data input order; every output is float32.
    fn run(&self, inputs: Staged) -> Result<Vec<Tensor>, ExecError>;

    /// The engine's operators in execution order: what tests and benchmarks check to see
    /// which kernels were chosen.
    fn operators(&self) -> Vec<String> {
        self.layers().into_iter().map(|(_, op)| op).collect()
    }

    /// Each step of the plan in execution order, as (the engine's node name, which names
    /// the graph node it comes from; the operator that runs it): what `ward inspect
    /// --plan` prints.
    fn layers(&self) -> Vec<(String, String)>;

    /// Runs as [`Plan::run`] does and also gives each step's wall time, in the order of
    /// [`Plan::layers`]: a benchmark's per-layer table.
    fn run_timed(&self, inputs: Staged) -> Result<(Vec<Tensor>, Vec<Duration>), ExecError>;

    /// The weights the plan was compiled for.
    fn weights(&self) -> WeightsId;

    /// The data input shapes the plan was compiled for.
    fn input_shapes(&self) -> &[Vec<usize>];
}

/// Inputs a backend copied into its own tensors ([`Backend::stage`]), owned and `Send`:
/// their shapes (which choose the plan) and the engine's tensors, which only a plan of
/// the same backend can take.
pub struct Staged {
    shapes: Vec<Vec<usize>>,
    engine: Box<dyn Any + Send>,
}

impl Staged {
    /// For a backend: inputs of `shapes`, held as the engine's own `tensors`.
    pub fn new<T: Any + Send>(shapes: Vec<Vec<usize>>, tensors: T) -> Staged {
        Staged {
            shapes,
            engine: Box::new(tensors),
        }
    }

    /// The inputs' shapes, in the graph's data input order.
    pub fn shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    /// For a plan: the engine's tensors, if a backend of its kind staged them.
    pub fn into_engine<T: Any>(self) -> Result<T, ExecError> {
        self.engine
            .downcast::<T>()
            .map(|t| *t)
            .map_err(|_| ExecError::ForeignStaged)
    }
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("shapes", &self.shapes)
            .finish_non_exhaustive()
    }
}
