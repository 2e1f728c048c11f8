//! The checkpoints of a distributed job (`ward cluster`), in the checkpoint format of a
//! single run (encrypted with age, signed, written atomically):
//!
//! - each server writes its shard ([`ShardCheckpoints`]) after every `checkpoint_every`-th
//!   step: its parts of the keys, each named by its key and, when the key is split, its
//!   range (`fc1_weight[0:25088]`), with the optimizer's tensors and state;
//! - once every server has reported its shard of a step, the coordinator writes the
//!   cluster checkpoint ([`CoordinatorCheckpoints`]): its index records the SHA-256 of
//!   every server's encrypted state, and its state holds the run's seed and the model's
//!   state parameters (BatchNorm's running statistics, which the servers do not hold).
//!
//! A job resumes from the newest cluster checkpoint ([`open_cluster_checkpoint`]); each
//! server then opens its own shard of that step, verified under its trust policy, and
//! takes it only if its encrypted state has the digest the coordinator's signed index
//! records ([`ShardCheckpoints::resume`]): a shard from another step, another job, or
//! swapped by someone who can sign but is not the coordinator, is refused.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::Digest;
use ward_core::random::RunSeed;
use ward_dist::plan::{KeySpec, PartSpec};
use ward_dist::wire::Kept;
use ward_package::signature::PrivateKey;
use ward_package::Trust;

use super::index::{CheckpointIndex, ClusterIndex, Position};
use super::seal::{Encryption, Sealing, Unsealing};
use super::state::{ParamView, Progress, SavedOptimizer, StateInfo};
use super::store::{
    checkpoint_name, list_checkpoints, open_checkpoint, remove_leftovers, CheckpointWriter,
    OpenedCheckpoint, Retention,
};
use super::{hex, CheckpointError, CHECKPOINT_FORMAT, CHECKPOINT_VERSION};
use crate::optim::{Optimizer, OptimizerState, ParamState};
use crate::trainer::Metrics;

/// What every checkpoint of a job says of it.
#[derive(Debug, Clone)]
pub struct JobInfo {
    /// The model's name, which trust policies match.
    pub model: String,
    /// The job's name.
    pub job: String,
    pub spec_sha256: [u8; 32],
    pub seed: [u8; 32],
    pub servers: u32,
    pub workers: u32,
    /// Global batches per epoch (the position's epoch and batch come from the step).
    pub steps_per_epoch: u64,
    /// The optimizer's name (a shard resumes only under the same optimizer).
    pub optimizer: String,
}

impl JobInfo {
    /// The run's id: the same for every member and every resumption of the job, and
    /// different for another job or seed (the first 16 bytes of a SHA-256 over both).
    pub fn run(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(b"ward cluster run\0");
        h.update(self.job.as_bytes());
        h.update([0]);
        h.update(self.seed);
        hex(h.finalize().get(..16).unwrap_or_default())
    }

    pub fn position(&self, step: u64) -> Position {
        let per = self.steps_per_epoch.max(1);
        Position {
            step,
            epoch: step / per,
            batch: step % per,
        }
    }

    fn index(&self, member: &str, step: u64, shards: Vec<String>) -> CheckpointIndex {
        CheckpointIndex {
            format: CHECKPOINT_FORMAT.into(),
            version: CHECKPOINT_VERSION,
            model: self.model.clone(),
            run: self.run(),
            spec_sha256: hex(&self.spec_sha256),
            position: self.position(step),
            created: now(),
            metrics: BTreeMap::new(),
            encryption: Encryption::X25519,
            recipients: Vec::new(),
            state_bytes: 0,
            ward_version: env!("CARGO_PKG_VERSION").into(),
            cluster: Some(ClusterIndex {
                job: self.job.clone(),
                member: member.to_string(),
                servers: self.servers,
                workers: self.workers,
                shards,
            }),
        }
    }

    fn info(&self, step: u64, optimizer: OptimizerState) -> StateInfo {
        let none = Metrics::default().into();
        StateInfo {
            run: self.run(),
            spec_sha256: hex(&self.spec_sha256),
            seed: RunSeed::from_bytes(self.seed).to_string(),
            position: self.position(step),
            optimizer: SavedOptimizer::new(&self.optimizer, optimizer),
            progress: Progress {
                epoch: none,
                window: none,
                log_bytes: 0,
            },
        }
    }

    /// Checks that `opened` is `member`'s checkpoint of this job at `step`.
    fn check(
        &self,
        opened: &OpenedCheckpoint,
        member: &str,
        step: Option<u64>,
    ) -> Result<(), CheckpointError> {
        let wrong = |what: String| {
            Err(CheckpointError::State(format!(
                "{}: {what}",
                opened.dir.display()
            )))
        };
        let index = &opened.index;
        let Some(cluster) = &index.cluster else {
            return wrong("not a checkpoint of a distributed job (ward train resumes it)".into());
        };
        if cluster.member != member || cluster.job != self.job {
            return wrong(format!(
                "written by {} of job {:?}, not {member} of job {:?}",
                cluster.member, cluster.job, self.job
            ));
        }
        if (cluster.servers, cluster.workers) != (self.servers, self.workers) {
            return wrong(format!(
                "a job of {} servers and {} workers; this one has {} and {}",
                cluster.servers, cluster.workers, self.servers, self.workers
            ));
        }
        if index.spec_sha256 != hex(&self.spec_sha256) {
            return wrong("written under another training spec (SHA-256 differs)".into());
        }
        if step.is_some_and(|s| s != index.position.step) {
            return wrong(format!("at step {}", index.position.step));
        }
        if opened.state.info.optimizer.name != self.optimizer {
            return wrong(format!(
                "trained with {}, the spec declares {}",
                opened.state.info.optimizer.name, self.optimizer
            ));
        }
        Ok(())
    }
}

/// A shard restored from its checkpoint.
#[derive(Debug)]
pub struct RestoredShard {
    pub weights: Vec<Vec<f32>>,
    pub states: Vec<ParamState>,
    pub optimizer: OptimizerState,
}

/// A server's shard checkpoints, in its own directory.
pub struct ShardCheckpoints {
    writer: CheckpointWriter,
    job: JobInfo,
    member: String,
    /// Each part's name in the state, and its length.
    parts: Vec<(String, usize)>,
}

impl std::fmt::Debug for ShardCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCheckpoints")
            .field("writer", &self.writer)
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

/// The name a part of a key has in a shard's state: the key's, with the range of its
/// flattened values when the key is split.
pub fn part_name(keys: &[KeySpec], part: &PartSpec) -> String {
    let key = keys.get(part.key as usize);
    let name = key.map_or("?", |k| k.name.as_str());
    if key.is_some_and(|k| part.offset == 0 && part.len == k.len) {
        name.to_string()
    } else {
        format!("{name}[{}:{}]", part.offset, part.offset + part.len)
    }
}

impl ShardCheckpoints {
    /// Server `rank`'s checkpoints in `dir` of its `parts` of `keys`, encrypted to
    /// `sealing` and signed with `key`. Nothing is pruned but what the coordinator no
    /// longer keeps (see [`ShardCheckpoints::write`]).
    pub fn new(
        dir: &Path,
        sealing: Sealing,
        key: PrivateKey,
        job: JobInfo,
        rank: u32,
        keys: &[KeySpec],
        parts: &[PartSpec],
    ) -> Result<ShardCheckpoints, CheckpointError> {
        let retention = Retention {
            keep_last: usize::MAX,
            keep_every: None,
            keep_best: None,
        };
        Ok(ShardCheckpoints {
            writer: CheckpointWriter::new(dir, sealing, key, retention)?,
            job,
            member: format!("server/{rank}"),
            parts: parts.iter().map(|p| (part_name(keys, p), p.len)).collect(),
        })
    }

    /// Deletes the shards no cluster checkpoint the coordinator keeps needs: those at or
    /// before its newest complete one that it no longer lists.
    pub fn prune(&self, kept: &Kept) -> Result<(), CheckpointError> {
        let stale: Vec<u64> = self
            .writer
            .list()?
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| *s <= kept.complete && !kept.steps.contains(s))
            .collect();
        self.writer.remove(&stale).map(drop)
    }

    /// Writes the shard after `step`; returns the SHA-256 of the encrypted state.
    pub fn write(
        &self,
        step: u64,
        weights: &[Vec<f32>],
        states: &[ParamState],
        optimizer: OptimizerState,
    ) -> Result<[u8; 32], CheckpointError> {
        if weights.len() != self.parts.len() || states.len() != self.parts.len() {
            return Err(CheckpointError::State(format!(
                "{} weights and {} states for {} parts",
                weights.len(),
                states.len(),
                self.parts.len()
            )));
        }
        let shapes: Vec<[usize; 1]> = self.parts.iter().map(|(_, len)| [*len]).collect();
        let params: Vec<ParamView<'_>> = self
            .parts
            .iter()
            .zip(&shapes)
            .zip(weights.iter().zip(states))
            .map(|(((name, _), shape), (weight, state))| ParamView {
                name,
                trainable: true,
                shape,
                weight,
                state,
            })
            .collect();
        let written = self.writer.write(
            self.job.index(&self.member, step, Vec::new()),
            &self.job.info(step, optimizer),
            &params,
        )?;
        Ok(written.state_sha256)
    }

    /// Opens this server's shard at `step` for a resumed job: verified under `trust`,
    /// refused unless its encrypted state has the SHA-256 the cluster checkpoint records,
    /// decrypted, and checked part by part. Shards written after `step` (never part of a
    /// complete cluster checkpoint) and what an interrupted write left are deleted.
    pub fn resume(
        &self,
        trust: &Trust,
        unsealing: &Unsealing,
        step: u64,
        state_sha256: [u8; 32],
        optimizer: &Optimizer,
    ) -> Result<RestoredShard, CheckpointError> {
        remove_leftovers(self.writer.dir())?;
        let found = list_checkpoints(self.writer.dir())?;
        let dir = found
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| {
                CheckpointError::State(format!(
                    "{} holds no {}: the cluster checkpoint of step {step} needs this server's shard",
                    self.writer.dir().display(),
                    checkpoint_name(step)
                ))
            })?;
        let opened = open_checkpoint(&dir, trust, unsealing)?;
        if opened.state_sha256 != state_sha256 {
            return Err(CheckpointError::State(format!(
                "{}: not the shard the cluster checkpoint records (its state.age has SHA-256 {}, the record {})",
                dir.display(),
                hex(&opened.state_sha256),
                hex(&state_sha256)
            )));
        }
        self.job.check(&opened, &self.member, Some(step))?;
        let names = optimizer.state_names();
        let params = opened.state.params;
        if params.len() != self.parts.len() {
            return Err(CheckpointError::State(format!(
                "{}: {} parts, this server holds {}",
                dir.display(),
                params.len(),
                self.parts.len()
            )));
        }
        let mut restored = RestoredShard {
            weights: Vec::with_capacity(params.len()),
            states: Vec::with_capacity(params.len()),
            optimizer: opened.state.info.optimizer.state(),
        };
        for (p, (name, len)) in params.into_iter().zip(&self.parts) {
            if p.name != *name || p.weight.len() != *len {
                return Err(CheckpointError::State(format!(
                    "{}: part {:?} of {} values where this server holds {name:?} of {len}",
                    dir.display(),
                    p.name,
                    p.weight.len()
                )));
            }
            let mut tensors = Vec::with_capacity(p.tensors.len());
            for (state, values) in p.tensors {
                let known = names.iter().find(|n| **n == state).ok_or_else(|| {
                    CheckpointError::State(format!(
                        "{name}: optimizer state {state:?} is not one {} keeps",
                        self.job.optimizer
                    ))
                })?;
                tensors.push((*known, values));
            }
            restored.weights.push(p.weight);
            restored.states.push(ParamState {
                update_count: p.update_count,
                tensors,
            });
        }
        let newer: Vec<u64> = found
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| *s > step)
            .collect();
        self.writer.remove(&newer)?;
        Ok(restored)
    }
}

/// The coordinator's cluster checkpoints.
pub struct CoordinatorCheckpoints {
    writer: CheckpointWriter,
    job: JobInfo,
    /// The model's state parameters (name, shape, values), which no server holds.
    state_params: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl std::fmt::Debug for CoordinatorCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorCheckpoints")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl CoordinatorCheckpoints {
    pub fn new(
        writer: CheckpointWriter,
        job: JobInfo,
        state_params: Vec<(String, Vec<usize>, Vec<f32>)>,
    ) -> CoordinatorCheckpoints {
        CoordinatorCheckpoints {
            writer,
            job,
            state_params,
        }
    }

    /// The steps of the cluster checkpoints on disk.
    pub fn kept(&self) -> Result<Vec<u64>, CheckpointError> {
        Ok(self.writer.list()?.into_iter().map(|(s, _)| s).collect())
    }

    /// Writes the cluster checkpoint after `step`, recording every shard's digest;
    /// returns the steps kept once the retention policy pruned older ones.
    pub fn write(&self, step: u64, shards: &[[u8; 32]]) -> Result<Vec<u64>, CheckpointError> {
        let none = ParamState {
            update_count: 0,
            tensors: Vec::new(),
        };
        let params: Vec<ParamView<'_>> = self
            .state_params
            .iter()
            .map(|(name, shape, weight)| ParamView {
                name,
                trainable: false,
                shape,
                weight,
                state: &none,
            })
            .collect();
        let shards = shards.iter().map(|d| hex(d)).collect();
        self.writer.write(
            self.job.index("coordinator", step, shards),
            &self.job.info(step, OptimizerState::default()),
            &params,
        )?;
        self.kept()
    }
}

impl ward_dist::coordinator::ClusterCheckpoints for CoordinatorCheckpoints {
    fn write(&self, step: u64, shards: &[[u8; 32]]) -> Result<Vec<u64>, String> {
        CoordinatorCheckpoints::write(self, step, shards).map_err(|e| e.to_string())
    }
}

/// A cluster checkpoint opened to resume from.
#[derive(Debug)]
pub struct ResumedCluster {
    pub step: u64,
    pub seed: RunSeed,
    /// Each server's shard digest, by rank.
    pub shards: Vec<[u8; 32]>,
    /// The state parameters by name.
    pub state_params: Vec<(String, Vec<f32>)>,
    /// The checkpoint's directory.
    pub dir: std::path::PathBuf,
}

/// Opens the newest cluster checkpoint in `dir` (the coordinator's checkpoints) for job
/// `job` (whose `seed` is ignored: the checkpoint's is the job's), verified under `trust`
/// and decrypted with `unsealing`. `None` when `dir` holds none. A newest checkpoint that
/// fails is refused, never skipped for an older one.
pub fn open_cluster_checkpoint(
    dir: &Path,
    trust: &Trust,
    unsealing: &Unsealing,
    job: &JobInfo,
) -> Result<Option<ResumedCluster>, CheckpointError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    remove_leftovers(dir)?;
    let Some((step, newest)) = list_checkpoints(dir)?.pop() else {
        return Ok(None);
    };
    let opened = open_checkpoint(&newest, trust, unsealing)?;
    job.check(&opened, "coordinator", Some(step))?;
    let bad = |what: String| CheckpointError::State(format!("{}: {what}", newest.display()));
    let seed = RunSeed::parse(&opened.state.info.seed).map_err(|e| bad(e.to_string()))?;
    let shards = opened
        .index
        .cluster
        .as_ref()
        .map(|c| {
            c.shards
                .iter()
                .map(|d| unhex(d))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or_default()
        .ok_or_else(|| bad("a shard digest is not hexadecimal".into()))?;
    let state_params = opened
        .state
        .params
        .into_iter()
        .map(|p| (p.name, p.weight))
        .collect();
    Ok(Some(ResumedCluster {
        step,
        seed,
        shards,
        state_params,
        dir: newest,
    }))
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
