//! The CPU backend: a graph lowered to ONNX ([`crate::onnx`]) and optimised and run by
//! tract, with the weights taken from the [`WeightSet`] itself (no copy through the
//! ONNX proto), ward's own max-pool kernel, MXNet's TopK order and a correct float
//! `fmod` swapped in, and scalar ops fused into the matrix products before them.
//!
//! Threads belong to a backend instance: a backend made with more than one thread owns a
//! pool, and its plans run their matrix products on it (tract's thread-local executor
//! override), so two backends in one process do not share or change each other's
//! threading.

mod avg_pool;
mod batch_consts;
mod constants;
mod conv_taps;
mod deform;
mod dense;
mod detection;
mod direct_conv;
mod downsample;
mod fmod;
mod fusion;
mod max_pool;
mod optimizer;
mod per_sample_conv;
mod pool_windows;
mod region_heads;
mod relu;
mod reshape_consts;
mod roi;
mod roi_sum;
mod shared_weights;
mod states;
mod topk;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::{
    DatumType, Framework, InferenceModelExt, IntoRunnable, IntoTValue, TValue, TVec,
    Tensor as TractTensor, TractResult, TypedModel, TypedRunnableModel,
};
use tract_onnx::tract_core::internal::format_err;
use ward_core::{DType, Tensor, TensorView};
use ward_graph::Graph;

use crate::backend::{Backend, Plan, Staged};
use crate::error::ExecError;
use crate::onnx::{lower_with, Params};
use crate::weights::{WeightSet, WeightsId};
use constants::WeightPool;
use direct_conv::Runs;
pub(crate) use per_sample_conv::BATCH_IM2COL_BYTES;

/// tract's ONNX front end with ward's own operators registered.
fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    detection::register(&mut onnx.op_register);
    roi::register(&mut onnx.op_register);
    deform::register(&mut onnx.op_register);
    onnx
}

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

impl TractBackend {
    /// Compiles `graph`; `once`, the weights are the plan's alone when nothing else holds
    /// them, and each is dropped as soon as the plan holds its own form of it.
    fn build(
        &self,
        graph: &Graph,
        weights: Arc<WeightSet>,
        data_shapes: &[Vec<usize>],
        once: bool,
    ) -> Result<Arc<dyn Plan>, ExecError> {
        let id = weights.id();
        // WARD_LOG=debug times each stage of building a plan.
        tracing::debug!(nodes = graph.nodes.len(), "plan: lowering the graph");
        let (proto, params) = lower_with(graph, weights.tensors(), data_shapes, Params::Inputs)?;
        let mut model = onnx()
            .model_for_proto_model(&proto)
            .map_err(engine("load the lowered model"))?;
        drop(proto);
        let uses = constants::uses(weights.tensors().len(), &params.inputs, &params.derived);
        // Built once from the only reference, the weights are the plan's to drop one by
        // one; otherwise they stay whole for the executable's next plan.
        let unshared = if once {
            Arc::try_unwrap(weights)
        } else {
            Err(weights)
        };
        let mut pool = match unshared {
            Ok(set) => WeightPool::owned(set.into_tensors(), uses),
            Err(shared) => WeightPool::Shared(shared),
        };
        // Dense weights are decided on the typed model, where the rows are known: read
        // in place (no copy) or made constants as the others are.
        let deferred = constants::adopt(
            &mut model,
            &mut pool,
            &params.inputs,
            &params.dense_weights,
            params.derived,
        )?;
        tracing::debug!("plan: weights made constants");
        let mut typed = model
            .into_typed()
            .map_err(engine("load the lowered model"))?;
        dense_weights(&mut typed, &mut pool, &deferred)?;
        drop(pool);
        conv_taps::trim(&mut typed).map_err(engine("cut kernel taps that read only padding"))?;
        relu::adopt(&mut typed).map_err(engine("adopt ward's relu"))?;
        max_pool::adopt(&mut typed).map_err(engine("adopt ward's max pool"))?;
        avg_pool::adopt(&mut typed).map_err(engine("adopt ward's average pool"))?;
        topk::adopt(&mut typed).map_err(engine("adopt ward's topk"))?;
        fmod::adopt(&mut typed).map_err(engine("adopt ward's fmod"))?;
        roi_sum::adopt(&mut typed).map_err(engine("sum ROIAlign levels into one output"))?;
        tracing::debug!(nodes = typed.nodes.len(), "plan: typed; optimising");
        let mut optimized = typed;
        let runs = if once { Runs::Once } else { Runs::Many };
        direct_conv::optimize(&mut optimized, id, self.threads, runs)
            .map_err(engine("optimise"))?;
        fuse_scalar_ops(&mut optimized)?;
        tracing::debug!(nodes = optimized.nodes.len(), "plan: optimised");
        let runnable = optimized
            .into_runnable()
            .map_err(engine("make the plan runnable"))?;
        let probe = runnable.spawn().map_err(engine("make the plan runnable"))?;
        Ok(Arc::new(TractPlan {
            states: states::States::new(probe),
            runnable,
            input_shapes: data_shapes.to_vec(),
            weights: id,
            executor: self.executor.clone(),
        }))
    }
}

/// Scalar ops moved up to the products they follow, and the model optimised again where
/// any moved: the last step of building a plan.
fn fuse_scalar_ops(model: &mut TypedModel) -> Result<(), ExecError> {
    if fusion::move_scalar_ops_up(model).map_err(engine("fuse scalar ops"))? {
        tracing::debug!("plan: scalar ops moved to their products; optimising again");
        direct_conv::absorb_relus(model)
            .map_err(engine("take moved ReLUs into ward's convolutions"))?;
        optimizer::codegen(model).map_err(engine("optimise after fusion"))?;
    }
    Ok(())
}

/// A region head's block (`region_heads`), decluttered as a whole model is, optimised
/// as its plan is after its heads are split, on `threads`.
fn optimize_region_block(
    model: &mut TypedModel,
    weights: WeightsId,
    threads: usize,
) -> TractResult<()> {
    optimizer::declutter(model)?;
    downsample::merge(model)?;
    // A block's plan runs once per block: many times in one run of the whole plan.
    direct_conv::lower(model, weights, threads, Runs::Many)?;
    fuse_scalar_ops(model).map_err(|e| format_err!("{e}"))
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
        weights: &Arc<WeightSet>,
        data_shapes: &[Vec<usize>],
    ) -> Result<Arc<dyn Plan>, ExecError> {
        self.build(graph, weights.clone(), data_shapes, false)
    }

    fn compile_once(
        &self,
        graph: &Graph,
        weights: Arc<WeightSet>,
        data_shapes: &[Vec<usize>],
    ) -> Result<Arc<dyn Plan>, ExecError> {
        self.build(graph, weights, data_shapes, true)
    }

    fn stage(&self, inputs: &[TensorView<'_>]) -> Result<Staged, ExecError> {
        let shapes = inputs.iter().map(|v| v.shape().to_vec()).collect();
        let tensors = inputs.iter().map(to_tract).collect::<Result<_, _>>()?;
        Ok(Staged::new(shapes, TractInputs(tensors)))
    }
}

/// The last `deferred.len()` inputs of `typed` are the dense weights `deferred`: each read
/// in place by [`dense::WeightDense`] where it can be, made a constant otherwise; then
/// only the data inputs remain.
fn dense_weights(
    typed: &mut TypedModel,
    weights: &mut WeightPool,
    deferred: &[usize],
) -> Result<(), ExecError> {
    let inputs = typed
        .input_outlets()
        .map_err(engine("adopt the weights"))?
        .to_vec();
    let data = inputs
        .len()
        .checked_sub(deferred.len())
        .ok_or_else(|| ExecError::Engine {
            stage: "adopt the weights",
            detail: format!("{} inputs for {} weights", inputs.len(), deferred.len()),
        })?;
    let (data_inputs, weight_inputs) = inputs.split_at(data);
    for (&outlet, &index) in weight_inputs.iter().zip(deferred) {
        if !dense::adopt(typed, outlet, weights, index).map_err(engine("adopt the weights"))? {
            let tensor = constants::tract_weight(weights.get(index), index)?;
            weights.used(index);
            constants::make_typed_const(typed, outlet.node, tensor)
                .map_err(engine("adopt the weights"))?;
        }
    }
    typed
        .set_input_outlets(data_inputs)
        .map_err(engine("adopt the weights"))?;
    typed.compact().map_err(engine("adopt the weights"))
}

/// Inputs as tract's own tensors, in the graph's data input order.
struct TractInputs(Vec<TractTensor>);

/// An optimised, runnable model for one set of weights and input shapes.
struct TractPlan {
    runnable: Arc<TypedRunnableModel>,
    input_shapes: Vec<Vec<usize>>,
    weights: WeightsId,
    executor: Executor,
    /// Run states, reused by the thread that made them when no op keeps state of its own.
    states: states::States,
}

impl TractPlan {
    /// Checks `inputs` against the plan's shapes and gives tract's values of them.
    fn values(&self, inputs: Staged) -> Result<TVec<TValue>, ExecError> {
        let shapes = inputs.shapes();
        if shapes.len() != self.input_shapes.len() {
            return Err(ExecError::InputCount {
                expected: self.input_shapes.len(),
                actual: shapes.len(),
            });
        }
        for (index, (got, shape)) in shapes.iter().zip(&self.input_shapes).enumerate() {
            if got != shape {
                return Err(ExecError::InputShape {
                    index,
                    expected: shape.clone(),
                    got: got.clone(),
                });
            }
        }
        let TractInputs(tensors) = inputs.into_engine()?;
        Ok(tensors.into_iter().map(|t| t.into_tvalue()).collect())
    }
}

impl Plan for TractPlan {
    fn run(&self, inputs: Staged) -> Result<Vec<Tensor>, ExecError> {
        let values = self.values(inputs)?;
        let outputs = self.states.with(&self.runnable, |state| {
            multithread_tract_scope(self.executor.clone(), || state.run(values))
        });
        outputs
            .map_err(engine("run"))?
            .iter()
            .map(|v| from_tract(v))
            .collect()
    }

    fn run_timed(&self, inputs: Staged) -> Result<(Vec<Tensor>, Vec<Duration>), ExecError> {
        let values = self.values(inputs)?;
        let mut by_node = vec![Duration::ZERO; self.runnable.model().nodes().len()];
        let outputs = self.states.with(&self.runnable, |state| {
            multithread_tract_scope(self.executor.clone(), || {
                state.run_plan_with_eval(values, |context, op_state, node, input| {
                    let start = Instant::now();
                    let output = tract_onnx::tract_core::plan::eval(context, op_state, node, input);
                    if let Some(time) = by_node.get_mut(node.id) {
                        *time += start.elapsed();
                    }
                    output
                })
            })
        });
        let outputs = outputs
            .map_err(engine("run"))?
            .iter()
            .map(|v| from_tract(v))
            .collect::<Result<_, _>>()?;
        let times = self.runnable.order_without_consts().iter();
        let times = times.map(|&id| by_node.get(id).copied().unwrap_or_default());
        Ok((outputs, times.collect()))
    }

    fn layers(&self) -> Vec<(String, String)> {
        let model = self.runnable.model();
        self.runnable
            .order_without_consts()
            .iter()
            .map(|&id| {
                let node = model.node(id);
                (node.name.clone(), node.op.name().to_string())
            })
            .collect()
    }

    fn weights(&self) -> WeightsId {
        self.weights
    }

    fn input_shapes(&self) -> &[Vec<usize>] {
        &self.input_shapes
    }
}

/// tract's element type for a ward dtype whose little-endian bytes tract holds as they
/// are (on a little-endian machine): such an input is staged in one copy of its bytes.
/// bool is not one: tract's is Rust's, whose bytes must be 0 or 1, which only the schema
/// check (not every caller of [`Executable::run`](crate::Executable::run)) guarantees.
fn same_bytes(dtype: DType) -> Option<DatumType> {
    if cfg!(target_endian = "big") {
        return None;
    }
    Some(match dtype {
        DType::F32 => DatumType::F32,
        DType::F64 => DatumType::F64,
        DType::U8 => DatumType::U8,
        DType::I8 => DatumType::I8,
        DType::I32 => DatumType::I32,
        DType::I64 => DatumType::I64,
        DType::F16 => DatumType::F16,
        DType::BF16 | DType::Bool => return None,
    })
}

/// An input as tract's own tensor: one copy of the view's bytes where tract holds them as
/// they are, an element-wise conversion otherwise.
fn to_tract(t: &TensorView<'_>) -> Result<TractTensor, ExecError> {
    let shape = t.shape();
    let b = t.bytes();
    if let Some(dt) = same_bytes(t.dtype()) {
        let mut tensor = TractTensor::zero_dt(dt, shape).map_err(engine("take an input"))?;
        let mut plain = tensor
            .try_as_plain_ram_mut()
            .map_err(engine("take an input"))?;
        let dst = plain.as_bytes_mut();
        if dst.len() != b.len() {
            return Err(ExecError::Engine {
                stage: "take an input",
                detail: format!("{} bytes for {} of shape {shape:?}", b.len(), t.dtype()),
            });
        }
        dst.copy_from_slice(b);
        return Ok(tensor);
    }
    let r = match t.dtype() {
        DType::F32 | DType::BF16 => TractTensor::from_shape(shape, &t.to_f32_vec()),
        DType::F16 => TractTensor::from_shape(
            shape,
            &t.to_f32_vec()
                .into_iter()
                .map(half::f16::from_f32)
                .collect::<Vec<_>>(),
        ),
        DType::F64 => TractTensor::from_shape(shape, &t.to_f64_vec()),
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

/// An output as a float32 ward tensor: one copy of tract's bytes (on a little-endian
/// machine; after a cast when tract computed another type).
fn from_tract(v: &TractTensor) -> Result<Tensor, ExecError> {
    let f = v.cast_to::<f32>().map_err(engine("convert an output"))?;
    let plain = f.try_as_plain_ram().map_err(engine("read an output"))?;
    let bytes = if cfg!(target_endian = "little") {
        plain.as_bytes().to_vec()
    } else {
        plain
            .as_slice::<f32>()
            .map_err(engine("read an output"))?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()
    };
    Tensor::from_bytes(DType::F32, v.shape().to_vec(), bytes).map_err(|e| ExecError::Engine {
        stage: "shape an output",
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// Every dtype's input staged as the element-wise conversion (what ward did before the
    /// one-copy path) would make it: the same tract type, shape and bytes, NaN payloads,
    /// signed zeros and extremes included.
    #[test]
    fn an_input_is_staged_as_the_element_wise_conversion_makes_it() {
        let f32s = [
            0.0f32,
            -0.0,
            1.5,
            f32::MIN,
            f32::MAX,
            f32::from_bits(0x7fc0_1234),
            f32::INFINITY,
            f32::MIN_POSITIVE / 2.0,
        ];
        let f64s = f32s.map(|v| f64::from(v) * 1e100);
        let elementwise: [(DType, Vec<u8>, TractTensor); 6] = [
            (
                DType::F32,
                f32s.iter().flat_map(|v| v.to_le_bytes()).collect(),
                TractTensor::from_shape(&[2, 4], &f32s).unwrap(),
            ),
            (
                DType::F64,
                f64s.iter().flat_map(|v| v.to_le_bytes()).collect(),
                TractTensor::from_shape(&[2, 4], &f64s).unwrap(),
            ),
            (
                DType::U8,
                vec![0, 1, 127, 128, 200, 255, 3, 4],
                TractTensor::from_shape(&[2, 4], &[0u8, 1, 127, 128, 200, 255, 3, 4]).unwrap(),
            ),
            (
                DType::I8,
                vec![0, 1, 127, 128, 200, 255, 3, 4],
                TractTensor::from_shape(&[2, 4], &[0i8, 1, 127, -128, -56, -1, 3, 4]).unwrap(),
            ),
            (
                DType::I32,
                [0i32, -1, i32::MIN, i32::MAX, 7, -7, 65536, 3]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                TractTensor::from_shape(&[2, 4], &[0i32, -1, i32::MIN, i32::MAX, 7, -7, 65536, 3])
                    .unwrap(),
            ),
            (
                DType::I64,
                [0i64, -1, i64::MIN, i64::MAX, 7, -7, 1 << 40, 3]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                TractTensor::from_shape(
                    &[2, 4],
                    &[0i64, -1, i64::MIN, i64::MAX, 7, -7, 1 << 40, 3],
                )
                .unwrap(),
            ),
        ];
        for (dtype, bytes, want) in elementwise {
            assert!(same_bytes(dtype).is_some(), "{dtype}");
            let view = TensorView::new(dtype, &[2, 4], &bytes).unwrap();
            let got = to_tract(&view).unwrap();
            assert_eq!(got.datum_type(), want.datum_type(), "{dtype}");
            assert_eq!(got.shape(), want.shape(), "{dtype}");
            assert_eq!(got.as_bytes(), want.as_bytes(), "{dtype}");
        }
        // bool: nonzero bytes are true (only the schema check refuses them).
        let view = TensorView::new(DType::Bool, &[3], &[0, 1, 2]).unwrap();
        let got = to_tract(&view).unwrap();
        assert_eq!(
            got,
            TractTensor::from_shape(&[3], &[false, true, true]).unwrap()
        );
        // Empty and scalar inputs.
        let view = TensorView::new(DType::F32, &[0, 4], &[]).unwrap();
        assert_eq!(to_tract(&view).unwrap().shape(), &[0, 4]);
        let view = TensorView::new(DType::F32, &[], &[0, 0, 0x80, 0x3f]).unwrap();
        assert_eq!(to_tract(&view).unwrap().as_bytes(), &[0, 0, 0x80, 0x3f]);
    }

    /// An output's bytes are the float32 values tract computed, as collecting them one by
    /// one (what ward did before) gives them; another type is cast first.
    #[test]
    fn an_output_is_taken_as_the_element_wise_conversion_takes_it() {
        let values = [
            0.0f32,
            -0.0,
            f32::from_bits(0x7fc0_1234),
            1e-40,
            -3.25,
            f32::MAX,
        ];
        let t = TractTensor::from_shape(&[3, 2], &values).unwrap();
        let got = from_tract(&t).unwrap();
        let want = Tensor::from_f32(
            vec![3, 2],
            &t.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<f32>>(),
        )
        .unwrap();
        assert_eq!(got, want);
        let ints = TractTensor::from_shape(&[2], &[3i64, -4]).unwrap();
        assert_eq!(from_tract(&ints).unwrap().to_f32_vec(), vec![3.0, -4.0]);
    }
}
