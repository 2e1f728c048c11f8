//! Training on a parameter store (`ward-dist`): the servers' update, which is the job's
//! declared optimizer applied to a shard, and a worker's training loop, which computes
//! gradients on its slice of each global batch, pushes them and takes the servers'
//! weights.
//!
//! With `W` workers of batch `B`, global batch `i` is the batch `i` a single machine with
//! batch `W·B` reads (the same order from the same seed), and worker `r` computes on its
//! rows `r·B .. (r+1)·B`. In `dist_sync` the servers sum the `W` gradients in rank order
//! and update once, so the run follows single-machine training with batch `W·B` (to
//! rounding: the sum is taken in another order), as long as the model has no batch
//! statistics (BatchNorm's are each worker's, as in MXNet) and no Dropout (whose masks
//! depend on the batch's shape).

use std::sync::Arc;

use ward_dist::client::BlockingWorker;
use ward_dist::plan::{KeySpec, PartSpec};
use ward_dist::server::{ShardCheckpoint, Updater};
use ward_dist::wire::Kept;
use ward_graph::ir::ParamRole;
use ward_graph::Graph;

use crate::checkpoint::cluster::{RestoredShard, ShardCheckpoints};
use crate::data::batch::Loader;
use crate::optim::{OptimizerSpec, ParamMults, ParamState, ParamUpdate};
use crate::trainer::{Metrics, TrainError, Trainer};
use crate::Optimizer;

/// Whether `spec` can run on a parameter store. Optimizers whose update couples
/// parameters are refused: Nadam's `m_schedule` is one product over every parameter's
/// update, LARS's and LAMB's rates come from norms over each parameter (and LARS's
/// momentum correction from the sequence of group updates), which shards of a model
/// would each compute differently from one machine. Every optimizer admitted updates
/// each value on its own, so a key may be split across servers.
pub fn distributable(spec: &OptimizerSpec) -> Result<(), String> {
    match spec {
        OptimizerSpec::Nadam(_) | OptimizerSpec::Lars(_) | OptimizerSpec::Lamb(_) => Err(format!(
            "optimizer {}: its update couples parameters across the model, which a parameter \
             store shards; use it on one machine (ward train)",
            spec.name()
        )),
        _ => Ok(()),
    }
}

/// The keys of a model: the parameters the optimizer updates (the trainable ones), in the
/// graph's order, and the graph index of each.
pub fn keys(graph: &Graph) -> (Vec<KeySpec>, Vec<usize>) {
    graph
        .params
        .iter()
        .enumerate()
        .filter(|(_, param)| param.role == ParamRole::Trainable)
        .map(|(p, param)| {
            let key = KeySpec {
                name: param.name.clone(),
                len: param.shape.iter().product(),
            };
            (key, p)
        })
        .unzip()
}

/// A server's update: the declared optimizer on its parts, each part with its own state
/// and its parameter's multipliers; and its checkpoints, when the job writes them.
pub struct ShardOptimizer {
    optimizer: Optimizer,
    states: Vec<ParamState>,
    mults: Vec<ParamMults>,
    checkpoints: Option<Arc<ShardCheckpoints>>,
}

fn part_mults(parts: &[PartSpec], mults: &[ParamMults]) -> Result<Vec<ParamMults>, String> {
    parts
        .iter()
        .map(|p| {
            mults
                .get(p.key as usize)
                .copied()
                .ok_or_else(|| format!("key {} has no multipliers", p.key))
        })
        .collect()
}

impl ShardOptimizer {
    /// For `parts` of `plan` with their `initial` weights; `mults[key]` are the
    /// multipliers of each key's parameter.
    pub fn new(
        optimizer: Optimizer,
        parts: &[PartSpec],
        initial: &[Vec<f32>],
        mults: &[ParamMults],
    ) -> Result<ShardOptimizer, String> {
        let mults = part_mults(parts, mults)?;
        let states = initial.iter().map(|w| optimizer.create_state(w)).collect();
        Ok(ShardOptimizer {
            optimizer,
            states,
            mults,
            checkpoints: None,
        })
    }

    /// For `parts` continuing from a checkpoint's shard (its weights are the caller's).
    pub fn resumed(
        mut optimizer: Optimizer,
        parts: &[PartSpec],
        restored: &mut RestoredShard,
        mults: &[ParamMults],
    ) -> Result<ShardOptimizer, String> {
        optimizer.set_state(restored.optimizer);
        Ok(ShardOptimizer {
            optimizer,
            states: std::mem::take(&mut restored.states),
            mults: part_mults(parts, mults)?,
            checkpoints: None,
        })
    }

    /// Writes checkpoints of the shard into `checkpoints`.
    pub fn with_checkpoints(mut self, checkpoints: Arc<ShardCheckpoints>) -> ShardOptimizer {
        self.checkpoints = Some(checkpoints);
        self
    }
}

impl Updater for ShardOptimizer {
    fn update(&mut self, weights: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<(), String> {
        let mut updates: Vec<ParamUpdate<'_>> = weights
            .iter_mut()
            .zip(grads)
            .zip(self.states.iter_mut())
            .zip(&self.mults)
            .map(|(((weight, grad), state), mults)| ParamUpdate {
                weight,
                grad,
                state,
                mults: *mults,
            })
            .collect();
        self.optimizer.step(&mut updates).map_err(|e| e.to_string())
    }

    fn checkpoint(
        &self,
        step: u64,
        weights: &[Vec<f32>],
    ) -> Result<Box<dyn ShardCheckpoint>, String> {
        let store = self
            .checkpoints
            .clone()
            .ok_or("this server was started without --checkpoints")?;
        Ok(Box::new(ShardCopy {
            store,
            step,
            weights: weights.to_vec(),
            states: self.states.clone(),
            optimizer: self.optimizer.state(),
        }))
    }
}

/// A shard copied after a step, for its checkpoint.
struct ShardCopy {
    store: Arc<ShardCheckpoints>,
    step: u64,
    weights: Vec<Vec<f32>>,
    states: Vec<ParamState>,
    optimizer: crate::optim::OptimizerState,
}

impl ShardCheckpoint for ShardCopy {
    fn write(&mut self) -> Result<[u8; 32], String> {
        self.store
            .write(self.step, &self.weights, &self.states, self.optimizer)
            .map_err(|e| e.to_string())
    }

    fn prune(&self, kept: &Kept) -> Result<(), String> {
        self.store.prune(kept).map_err(|e| e.to_string())
    }
}

/// The multipliers of each key (`index`: each key's graph parameter), from every graph
/// parameter's ([`crate::trainer::param_mults`]).
pub fn key_mults(mults: &[Option<ParamMults>], index: &[usize]) -> Vec<ParamMults> {
    index
        .iter()
        .filter_map(|&p| mults.get(p).copied().flatten())
        .collect()
}

/// Global batches per epoch of `examples` for `workers` workers of `batch` (the last one
/// padded, as the workers' loader reads them): the step's position in an epoch, which
/// every member computes alike.
pub fn steps_per_epoch(examples: usize, batch: usize, workers: u32) -> u64 {
    examples.div_ceil((batch * workers as usize).max(1)) as u64
}

/// What a worker's loop reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerSummary {
    pub steps: u64,
    pub metrics: Metrics,
}

/// A worker's training: `epochs` epochs of `loader` (global batches of `workers × batch`
/// examples), computing on this worker's rows, pushing every step's gradients and taking
/// the servers' weights. `log` is called after each step with the step's metrics.
#[allow(clippy::too_many_arguments)]
pub fn train_worker(
    trainer: &mut Trainer,
    worker: &mut BlockingWorker,
    loader: &Loader,
    epochs: u64,
    rank: usize,
    batch: usize,
    mut log: impl FnMut(u64, u64, Metrics),
) -> Result<WorkerSummary, TrainError> {
    let (_, index) = keys(trainer.graph());
    // The key of each graph parameter, if it has one.
    let mut key_of = vec![None; trainer.graph().params.len()];
    for (k, &p) in index.iter().enumerate() {
        if let Some(slot) = key_of.get_mut(p) {
            *slot = Some(k);
        }
    }
    let mut weights: Vec<Vec<f32>> = index
        .iter()
        .map(|&p| trainer.weights().get(p).cloned().unwrap_or_default())
        .collect();
    let start = worker
        .pull(&mut weights)
        .map_err(|e| TrainError::Distributed(e.to_string()))?;
    take_weights(trainer, &index, &weights);
    trainer.set_steps(start);
    let steps_per_epoch = loader.epoch(0)?.len() as u64;
    let mut summary = WorkerSummary::default();
    let first_epoch = start / steps_per_epoch.max(1);
    let first_batch = (start % steps_per_epoch.max(1)) as usize;
    for epoch in first_epoch..epochs {
        let from = if epoch == first_epoch { first_batch } else { 0 };
        for b in loader.epoch_from(epoch, from)? {
            let b = b?;
            let (data, labels) = rows(
                &b.data,
                &b.label,
                b.data_shape.first().copied().unwrap_or(0),
                rank,
                batch,
            )
            .ok_or_else(|| {
                TrainError::Distributed(format!("a global batch has no rows for worker {rank}"))
            })?;
            let computed = trainer.gradients(data, labels)?;
            let step = trainer.steps();
            let grads: Vec<&[f32]> = index
                .iter()
                .map(|&p| computed.param_grads().get(p).map_or(&[][..], Vec::as_slice))
                .collect();
            worker
                .push_pull(step, &grads, &mut weights)
                .map_err(|e| TrainError::Distributed(e.to_string()))?;
            // Swapped in, not copied: the next reply overwrites every value of every key
            // (the servers' parts cover each key whole), so what the trainer gives back is
            // only a buffer.
            let metrics = trainer.apply_weights(computed, |p, w| {
                if let Some(value) = key_of
                    .get(p)
                    .copied()
                    .flatten()
                    .and_then(|k| weights.get_mut(k))
                {
                    if value.len() == w.len() {
                        std::mem::swap(w, value);
                    }
                }
            });
            summary.steps += 1;
            summary.metrics.add(metrics);
            log(epoch, trainer.steps(), metrics);
        }
    }
    Ok(summary)
}

fn take_weights(trainer: &mut Trainer, index: &[usize], weights: &[Vec<f32>]) {
    trainer.set_weights(index.iter().copied().zip(weights.iter().cloned()));
}

/// Worker `rank`'s rows of a global batch of `rows` examples.
fn rows<'a>(
    data: &'a [f32],
    labels: &'a [f32],
    rows: usize,
    rank: usize,
    batch: usize,
) -> Option<(&'a [f32], &'a [f32])> {
    let rows = rows.max(1);
    let (per_data, per_label) = (data.len() / rows, labels.len() / rows);
    let (lo, hi) = (rank * batch, (rank + 1) * batch);
    Some((
        data.get(lo * per_data..hi * per_data)?,
        labels.get(lo * per_label..hi * per_label)?,
    ))
}
