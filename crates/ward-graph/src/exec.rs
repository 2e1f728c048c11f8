//! The CPU backend: a graph lowered to ONNX and optimised by tract.
//!
//! A [`Plan`] is built once per set of input shapes (the lowering needs concrete shapes);
//! [`Model`] keeps a small cache of plans so a server that sees a few batch sizes builds
//! each plan once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::{
    Framework, InferenceModelExt, IntoRunnable, IntoTValue, TValue, TVec, Tensor as TractTensor,
    TypedRunnableModel,
};
use ward_core::{DType, Tensor};

use crate::ir::Graph;
use crate::onnx::lower;
use crate::GraphError;
use crate::{fusion, max_pool};

/// Most plans kept per model; the least recently used is dropped beyond it.
pub const MAX_CACHED_PLANS: usize = 8;

fn backend(e: impl std::fmt::Display) -> GraphError {
    GraphError::Backend(format!("{e:#}"))
}

/// Sets how many threads matrix products may use (1 = single-threaded, the default).
pub fn set_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if threads <= 1 {
        set_default_executor(Executor::SingleThread);
    } else {
        set_default_executor(Executor::multithread(threads));
    }
}

/// An optimised, runnable model for one set of input shapes.
pub struct Plan {
    runnable: Arc<TypedRunnableModel>,
    input_shapes: Vec<Vec<usize>>,
}

impl Plan {
    pub fn new(
        graph: &Graph,
        weights: &[Tensor],
        input_shapes: &[Vec<usize>],
    ) -> Result<Plan, GraphError> {
        let proto = lower(graph, weights, input_shapes)?;
        let mut typed = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .and_then(|m| m.into_typed())
            .map_err(backend)?;
        max_pool::adopt(&mut typed).map_err(backend)?;
        let mut optimized = typed.into_optimized().map_err(backend)?;
        if fusion::move_scalar_ops_up(&mut optimized).map_err(backend)? {
            optimized.optimize().map_err(backend)?;
        }
        let runnable = optimized.into_runnable().map_err(backend)?;
        Ok(Plan {
            runnable,
            input_shapes: input_shapes.to_vec(),
        })
    }

    /// The plan's operators in execution order, by their engine names: what a test or a
    /// benchmark checks to see which kernels were chosen.
    pub fn operators(&self) -> Vec<String> {
        let model = self.runnable.model();
        self.runnable
            .order_without_consts()
            .iter()
            .map(|&id| model.node(id).op.name().to_string())
            .collect()
    }

    /// Runs the plan. Inputs must have the shapes the plan was built for; every output is
    /// returned as float32.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, GraphError> {
        if inputs.len() != self.input_shapes.len() {
            return Err(GraphError::InputCount {
                expected: self.input_shapes.len(),
                actual: inputs.len(),
            });
        }
        let mut values: TVec<TValue> = TVec::new();
        for (t, shape) in inputs.iter().zip(&self.input_shapes) {
            if t.shape() != shape.as_slice() {
                return Err(GraphError::Backend(format!(
                    "input of shape {:?} given to a plan built for {shape:?}",
                    t.shape()
                )));
            }
            values.push(to_tract(t)?.into_tvalue());
        }
        let outputs = self.runnable.run(values).map_err(backend)?;
        outputs.iter().map(|v| from_tract(v)).collect()
    }
}

fn to_tract(t: &Tensor) -> Result<TractTensor, GraphError> {
    let shape = t.shape();
    let b = t.bytes();
    let r = match t.dtype() {
        DType::F32 => TractTensor::from_shape(shape, &t.to_f32_vec()),
        DType::F64 => TractTensor::from_shape(shape, &t.to_f64_vec()),
        DType::F16 | DType::BF16 => TractTensor::from_shape(shape, &t.to_f32_vec()),
        DType::U8 => TractTensor::from_shape(shape, b),
        DType::Bool => {
            TractTensor::from_shape(shape, &b.iter().map(|&x| x != 0).collect::<Vec<bool>>())
        }
        DType::I8 => {
            TractTensor::from_shape(shape, &b.iter().map(|&x| x as i8).collect::<Vec<i8>>())
        }
        DType::I32 => TractTensor::from_shape(
            shape,
            &b.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<i32>>(),
        ),
        DType::I64 => TractTensor::from_shape(
            shape,
            &b.chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect::<Vec<i64>>(),
        ),
    };
    r.map_err(backend)
}

fn from_tract(v: &TractTensor) -> Result<Tensor, GraphError> {
    let f = v.cast_to::<f32>().map_err(backend)?;
    let view = f.to_plain_array_view::<f32>().map_err(backend)?;
    let values: Vec<f32> = view.iter().copied().collect();
    Tensor::from_f32(v.shape().to_vec(), &values).map_err(backend)
}

/// A plan and the input shapes it was built for.
type CachedPlan = (Vec<Vec<usize>>, Arc<Plan>);

/// A graph with its weights, running through cached plans keyed by input shapes.
pub struct Model {
    graph: Graph,
    weights: Vec<Tensor>,
    plans: Mutex<Vec<CachedPlan>>,
}

impl Model {
    /// `weights` are matched to the graph's params by name, and checked for dtype and shape.
    pub fn new(graph: Graph, mut named: HashMap<String, Tensor>) -> Result<Model, GraphError> {
        let mut weights = Vec::with_capacity(graph.params.len());
        for p in &graph.params {
            let t = named.remove(&p.name).ok_or_else(|| GraphError::Param {
                param: p.name.clone(),
                reason: "missing from the weights".into(),
            })?;
            if t.shape() != p.shape.as_slice() || t.dtype() != p.dtype {
                return Err(GraphError::Param {
                    param: p.name.clone(),
                    reason: format!(
                        "weights hold {} {:?}, the graph declares {} {:?}",
                        t.dtype(),
                        t.shape(),
                        p.dtype,
                        p.shape
                    ),
                });
            }
            weights.push(t);
        }
        if let Some(extra) = named.keys().next() {
            return Err(GraphError::Param {
                param: extra.clone(),
                reason: "is in the weights but not in the graph".into(),
            });
        }
        Ok(Model {
            graph,
            weights,
            plans: Mutex::new(Vec::new()),
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn weights(&self) -> &[Tensor] {
        &self.weights
    }

    /// The plan for these input shapes, built on first use. The cache is least recently
    /// used first, so a client cycling through many batch sizes evicts its own plans, not
    /// the ones that steady traffic keeps using.
    pub fn plan(&self, input_shapes: &[Vec<usize>]) -> Result<Arc<Plan>, GraphError> {
        {
            let mut plans = self.lock_plans()?;
            if let Some(plan) = Self::cached(&mut plans, input_shapes) {
                return Ok(plan);
            }
        }
        let built = Arc::new(Plan::new(&self.graph, &self.weights, input_shapes)?);
        let mut plans = self.lock_plans()?;
        // Another thread may have built the same plan meanwhile: keep one copy.
        if let Some(plan) = Self::cached(&mut plans, input_shapes) {
            return Ok(plan);
        }
        if plans.len() >= MAX_CACHED_PLANS {
            plans.remove(0);
        }
        plans.push((input_shapes.to_vec(), built.clone()));
        Ok(built)
    }

    fn lock_plans(&self) -> Result<std::sync::MutexGuard<'_, Vec<CachedPlan>>, GraphError> {
        self.plans
            .lock()
            .map_err(|_| GraphError::Backend("plan cache poisoned".into()))
    }

    /// The cached plan for these shapes, moved to the most recently used end.
    fn cached(plans: &mut Vec<CachedPlan>, input_shapes: &[Vec<usize>]) -> Option<Arc<Plan>> {
        let i = plans
            .iter()
            .position(|(s, _)| s.as_slice() == input_shapes)?;
        let hit = plans.remove(i);
        let plan = hit.1.clone();
        plans.push(hit);
        Some(plan)
    }

    /// Runs the model on inputs given in the graph's input order. Callers validate inputs
    /// against the package schema first (`schema::validate_inputs`).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, GraphError> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        self.plan(&shapes)?.run(inputs)
    }
}
