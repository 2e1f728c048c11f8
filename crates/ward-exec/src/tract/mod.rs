//! The CPU backend: a graph lowered to ONNX ([`crate::onnx`]) and optimised and run by
//! tract, with ward's own max-pool kernel swapped in and scalar ops fused into the
//! matrix products before them.
//!
//! Threads belong to a backend instance: a backend made with more than one thread owns a
//! pool, and its plans run their matrix products on it (tract's thread-local executor
//! override), so two backends in one process do not share or change each other's
//! threading.

mod fusion;
mod max_pool;

use std::sync::Arc;

use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::{
    Framework, InferenceModelExt, IntoRunnable, IntoTValue, TValue, TVec, Tensor as TractTensor,
    TypedRunnableModel,
};
use ward_core::{DType, Tensor};
use ward_graph::Graph;

use crate::backend::{Backend, Plan};
use crate::error::ExecError;
use crate::onnx::lower;
use crate::weights::{WeightSet, WeightsId};

fn engine(stage: &'static str) -> impl Fn(tract_onnx::prelude::TractError) -> ExecError {
    move |e| ExecError::Engine {
        stage,
        detail: format!("{e:#}"),
    }
}

/// tract on the CPU, with its own threads.
pub struct TractBackend {
    executor: Executor,
    threads: usize,
}

impl TractBackend {
    /// A backend whose plans use `threads` threads for matrix products (1: the calling
    /// thread only).
    pub fn new(threads: usize) -> Result<TractBackend, ExecError> {
        let threads = threads.max(1);
        let executor = if threads == 1 {
            Executor::SingleThread
        } else {
            // tract panics when the OS refuses the threads: a refusal, not an abort.
            std::panic::catch_unwind(|| Executor::multithread_with_name(threads, "ward-tract"))
                .map_err(|panic| ExecError::Threads {
                    threads,
                    detail: panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default(),
                })?
        };
        Ok(TractBackend { executor, threads })
    }

    /// The threads its plans use.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn check(&self, _graph: &Graph) -> Result<(), ExecError> {
        // Every operator of the IR lowers to ONNX; attribute values the lowering cannot
        // express are refused by it, naming the node.
        Ok(())
    }

    fn compile(
        &self,
        graph: &Graph,
        weights: &WeightSet,
        data_shapes: &[Vec<usize>],
    ) -> Result<Arc<dyn Plan>, ExecError> {
        let proto = lower(graph, weights.tensors(), data_shapes)?;
        let mut typed = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .and_then(|m| m.into_typed())
            .map_err(engine("load the lowered model"))?;
        max_pool::adopt(&mut typed).map_err(engine("adopt ward's max pool"))?;
        let mut optimized = typed.into_optimized().map_err(engine("optimise"))?;
        if fusion::move_scalar_ops_up(&mut optimized).map_err(engine("fuse scalar ops"))? {
            optimized
                .optimize()
                .map_err(engine("optimise after fusion"))?;
        }
        let runnable = optimized
            .into_runnable()
            .map_err(engine("make the plan runnable"))?;
        Ok(Arc::new(TractPlan {
            runnable,
            input_shapes: data_shapes.to_vec(),
            weights: weights.id(),
            executor: self.executor.clone(),
        }))
    }
}

/// An optimised, runnable model for one set of weights and input shapes.
struct TractPlan {
    runnable: Arc<TypedRunnableModel>,
    input_shapes: Vec<Vec<usize>>,
    weights: WeightsId,
    executor: Executor,
}

impl Plan for TractPlan {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, ExecError> {
        if inputs.len() != self.input_shapes.len() {
            return Err(ExecError::InputCount {
                expected: self.input_shapes.len(),
                actual: inputs.len(),
            });
        }
        let mut values: TVec<TValue> = TVec::new();
        for (index, (t, shape)) in inputs.iter().zip(&self.input_shapes).enumerate() {
            if t.shape() != shape.as_slice() {
                return Err(ExecError::InputShape {
                    index,
                    expected: shape.clone(),
                    got: t.shape().to_vec(),
                });
            }
            values.push(to_tract(t)?.into_tvalue());
        }
        let outputs = multithread_tract_scope(self.executor.clone(), || self.runnable.run(values))
            .map_err(engine("run"))?;
        outputs.iter().map(|v| from_tract(v)).collect()
    }

    fn operators(&self) -> Vec<String> {
        let model = self.runnable.model();
        self.runnable
            .order_without_consts()
            .iter()
            .map(|&id| model.node(id).op.name().to_string())
            .collect()
    }

    fn weights(&self) -> WeightsId {
        self.weights
    }

    fn input_shapes(&self) -> &[Vec<usize>] {
        &self.input_shapes
    }
}

fn to_tract(t: &Tensor) -> Result<TractTensor, ExecError> {
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
            &b.as_chunks::<4>()
                .0
                .iter()
                .map(|c| i32::from_le_bytes(*c))
                .collect::<Vec<i32>>(),
        ),
        DType::I64 => TractTensor::from_shape(
            shape,
            &b.as_chunks::<8>()
                .0
                .iter()
                .map(|c| i64::from_le_bytes(*c))
                .collect::<Vec<i64>>(),
        ),
    };
    r.map_err(engine("take an input"))
}

fn from_tract(v: &TractTensor) -> Result<Tensor, ExecError> {
    let f = v.cast_to::<f32>().map_err(engine("convert an output"))?;
    let view = f
        .to_plain_array_view::<f32>()
        .map_err(engine("read an output"))?;
    let values: Vec<f32> = view.iter().copied().collect();
    Tensor::from_f32(v.shape().to_vec(), &values).map_err(|e| ExecError::Engine {
        stage: "shape an output",
        detail: e.to_string(),
    })
}
