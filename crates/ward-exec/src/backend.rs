//! The execution layer's contract: a backend compiles a graph with its weights, for
//! concrete input shapes, into a plan; a plan runs.

use std::sync::Arc;

use ward_core::Tensor;
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
        weights: &WeightSet,
        data_shapes: &[Vec<usize>],
    ) -> Result<Arc<dyn Plan>, ExecError>;
}

/// A graph compiled for one set of weights and input shapes.
pub trait Plan: Send + Sync {
    /// Runs on inputs of exactly the shapes the plan was built for, in the graph's data
    /// input order; every output is float32.
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, ExecError>;

    /// The engine's operators in execution order: what tests and benchmarks check to see
    /// which kernels were chosen.
    fn operators(&self) -> Vec<String>;

    /// The weights the plan was compiled for.
    fn weights(&self) -> WeightsId;

    /// The data input shapes the plan was compiled for.
    fn input_shapes(&self) -> &[Vec<usize>];
}
