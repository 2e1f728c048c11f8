//! The plaintext of `state.age`: one safetensors file, so that any safetensors reader
//! reads a decrypted checkpoint's weights.
//!
//! - each parameter's weight (BatchNorm's running statistics included) under its own name,
//!   `f32`, in its shape;
//! - each optimizer tensor of a parameter as `optimizer/<parameter>/<state>` (`momentum`,
//!   `mean`, `var`, ...), in the parameter's shape;
//! - everything else in `__metadata__["ward.state"]`, a JSON header: the run, the spec's
//!   digest, the seed, the position, the optimizer's own state, each parameter's role,
//!   update count and state names (in the graph's order), the metrics so far. Floats that
//!   must come back bit for bit are written as their shortest exact decimal text.
//!
//! The same state always gives the same bytes.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use ward_core::{DType, Tensor};
use ward_package::{
    read_weights_with_metadata, write_tensor_views, write_tensor_views_to, PackageError, TensorView,
};

use super::index::Position;
use super::CheckpointError;
use crate::optim::{OptimizerState, ParamState};
use crate::trainer::Metrics;

/// The metadata key holding the state's JSON header.
pub const STATE_METADATA_KEY: &str = "ward.state";
/// The `format` of every state header.
pub const STATE_FORMAT: &str = "ward-checkpoint-state";
/// The state version this ward writes and reads.
pub const STATE_VERSION: u32 = 1;
/// The prefix of an optimizer tensor's name.
const OPTIMIZER_PREFIX: &str = "optimizer/";

/// An `f64` written as the shortest decimal text that reads back to the same bits
/// (`0.1`, `1e-7`, `inf`, `NaN`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExactF64(pub f64);

impl From<ExactF64> for String {
    fn from(v: ExactF64) -> String {
        format!("{:?}", v.0)
    }
}

impl TryFrom<String> for ExactF64 {
    type Error = String;
    fn try_from(text: String) -> Result<ExactF64, String> {
        text.parse()
            .map(ExactF64)
            .map_err(|_| format!("{text:?} is not a number"))
    }
}

/// [`Metrics`], exactly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedMetrics {
    pub loss_sum: ExactF64,
    pub examples: u64,
    pub correct: u64,
    pub classified: u64,
}

impl From<Metrics> for SavedMetrics {
    fn from(m: Metrics) -> SavedMetrics {
        SavedMetrics {
            loss_sum: ExactF64(m.loss_sum),
            examples: m.examples as u64,
            correct: m.correct as u64,
            classified: m.classified as u64,
        }
    }
}

impl SavedMetrics {
    pub fn to_metrics(self) -> Metrics {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Metrics {
            loss_sum: self.loss_sum.0,
            examples: count(self.examples),
            correct: count(self.correct),
            classified: count(self.classified),
        }
    }
}

/// The optimizer's own state, exactly, and its name (a checkpoint resumes only under the
/// same optimizer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedOptimizer {
    pub name: String,
    pub num_update: u64,
    pub nadam_m_schedule: ExactF64,
    pub lars_lrs: Option<[ExactF64; 2]>,
}

impl SavedOptimizer {
    pub fn new(name: &str, state: OptimizerState) -> SavedOptimizer {
        SavedOptimizer {
            name: name.to_string(),
            num_update: state.num_update,
            nadam_m_schedule: ExactF64(state.nadam_m_schedule),
            lars_lrs: state.lars_lrs.map(|(a, b)| [ExactF64(a), ExactF64(b)]),
        }
    }

    pub fn state(&self) -> OptimizerState {
        OptimizerState {
            num_update: self.num_update,
            nadam_m_schedule: self.nadam_m_schedule.0,
            lars_lrs: self.lars_lrs.map(|[a, b]| (a.0, b.0)),
        }
    }
}

/// Where the run's log and counters stood.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// The metrics of the epoch so far.
    pub epoch: SavedMetrics,
    /// The metrics since the last log line.
    pub window: SavedMetrics,
    /// The length of `metrics.jsonl` when the checkpoint was written: a resumed run cuts
    /// the log back to it, so no line is written twice.
    pub log_bytes: u64,
}

/// What a checkpoint's state says of the run, beside the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateInfo {
    pub run: String,
    pub spec_sha256: String,
    /// The run's seed, as `ward train` prints it.
    pub seed: String,
    pub position: Position,
    pub optimizer: SavedOptimizer,
    pub progress: Progress,
}

/// One parameter's entry in the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedParam {
    name: String,
    /// Updated by the optimizer (false: a state such as BatchNorm's running mean; MXNet's
    /// `aux:`).
    trainable: bool,
    update_count: u64,
    state: Vec<String>,
}

/// `__metadata__["ward.state"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateHeader {
    format: String,
    version: u32,
    info: StateInfo,
    params: Vec<SavedParam>,
}

/// One parameter to write, borrowed from the trainer.
#[derive(Debug, Clone, Copy)]
pub struct ParamView<'a> {
    pub name: &'a str,
    pub trainable: bool,
    pub shape: &'a [usize],
    pub weight: &'a [f32],
    pub state: &'a ParamState,
}

/// One parameter read back.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedParamState {
    pub name: String,
    pub trainable: bool,
    pub shape: Vec<usize>,
    pub weight: Vec<f32>,
    pub update_count: u64,
    /// The optimizer's tensors by name, in the order written.
    pub tensors: Vec<(String, Vec<f32>)>,
}

/// A decrypted state, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedState {
    pub info: StateInfo,
    /// In the graph's order, as written.
    pub params: Vec<SavedParamState>,
}

fn optimizer_tensor(param: &str, state: &str) -> String {
    format!("{OPTIMIZER_PREFIX}{param}/{state}")
}

/// The state as the bytes of a safetensors file.
pub fn encode_state(
    info: &StateInfo,
    params: &[ParamView<'_>],
) -> Result<Vec<u8>, CheckpointError> {
    with_views(info, params, write_tensor_views)
}

/// [`encode_state`] written to `out` as it is made (the plaintext is never whole in
/// memory); returns its length.
pub fn encode_state_to(
    info: &StateInfo,
    params: &[ParamView<'_>],
    out: &mut dyn std::io::Write,
) -> Result<u64, CheckpointError> {
    with_views(info, params, |views, metadata| {
        write_tensor_views_to(views, metadata, out)
    })
}

/// Calls `write` with the state's tensors and metadata.
fn with_views<T>(
    info: &StateInfo,
    params: &[ParamView<'_>],
    write: impl FnOnce(&[TensorView<'_>], &BTreeMap<String, String>) -> Result<T, PackageError>,
) -> Result<T, CheckpointError> {
    let header = StateHeader {
        format: STATE_FORMAT.into(),
        version: STATE_VERSION,
        info: info.clone(),
        params: params
            .iter()
            .map(|p| SavedParam {
                name: p.name.to_string(),
                trainable: p.trainable,
                update_count: p.state.update_count,
                state: p.state.tensors.iter().map(|(n, _)| n.to_string()).collect(),
            })
            .collect(),
    };
    let names: Vec<Vec<String>> = params
        .iter()
        .map(|p| {
            p.state
                .tensors
                .iter()
                .map(|(n, _)| optimizer_tensor(p.name, n))
                .collect()
        })
        .collect();
    let mut views = Vec::new();
    for (p, state_names) in params.iter().zip(&names) {
        if p.name.starts_with(OPTIMIZER_PREFIX) {
            return Err(CheckpointError::State(format!(
                "parameter {:?} starts with {OPTIMIZER_PREFIX:?}, which names optimizer tensors",
                p.name
            )));
        }
        views.push(TensorView::f32(p.name, p.shape, p.weight));
        for (name, (_, values)) in state_names.iter().zip(&p.state.tensors) {
            views.push(TensorView::f32(name, p.shape, values));
        }
    }
    let json = serde_json::to_string(&header).map_err(|e| CheckpointError::State(e.to_string()))?;
    let metadata = BTreeMap::from([(STATE_METADATA_KEY.to_string(), json)]);
    write(&views, &metadata).map_err(|e| CheckpointError::State(e.to_string()))
}

/// Parses a decrypted state: the strict safetensors reader, then the header, then every
/// tensor the header names (`f32`, the parameter's shape), and nothing else.
pub fn decode_state(bytes: &[u8]) -> Result<DecodedState, CheckpointError> {
    let bad = |reason: String| CheckpointError::State(reason);
    let weights = read_weights_with_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let json = weights
        .metadata
        .get(STATE_METADATA_KEY)
        .ok_or_else(|| bad(format!("no __metadata__ entry {STATE_METADATA_KEY:?}")))?;
    let header: StateHeader = serde_json::from_str(json)
        .map_err(|e| bad(format!("__metadata__ {STATE_METADATA_KEY:?}: {e}")))?;
    if header.format != STATE_FORMAT || header.version != STATE_VERSION {
        return Err(bad(format!(
            "state format {:?} version {}, this ward reads {STATE_FORMAT:?} version {STATE_VERSION}",
            header.format, header.version
        )));
    }
    let mut tensors: HashMap<String, Tensor> = weights.tensors.into_iter().collect();
    let mut take = |name: &str, shape: Option<&[usize]>| -> Result<Tensor, CheckpointError> {
        let t = tensors
            .remove(name)
            .ok_or_else(|| bad(format!("tensor {name:?} is missing")))?;
        if t.dtype() != DType::F32 || shape.is_some_and(|s| s != t.shape()) {
            return Err(bad(format!(
                "tensor {name:?} is {:?} {:?}, not f32 in its parameter's shape",
                t.dtype(),
                t.shape()
            )));
        }
        Ok(t)
    };
    let mut params = Vec::with_capacity(header.params.len());
    for p in &header.params {
        let weight = take(&p.name, None)?;
        let mut state = Vec::with_capacity(p.state.len());
        for s in &p.state {
            let t = take(&optimizer_tensor(&p.name, s), Some(weight.shape()))?;
            state.push((s.clone(), t.to_f32_vec()));
        }
        params.push(SavedParamState {
            name: p.name.clone(),
            trainable: p.trainable,
            shape: weight.shape().to_vec(),
            weight: weight.to_f32_vec(),
            update_count: p.update_count,
            tensors: state,
        });
    }
    if let Some(extra) = tensors.keys().min() {
        return Err(bad(format!(
            "tensor {extra:?} is not named by the state's header"
        )));
    }
    Ok(DecodedState {
        info: header.info,
        params,
    })
}
