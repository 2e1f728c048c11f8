//! A run's checkpoints: how they are encrypted, when they are written and kept, writing
//! one at a position, and resuming from one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ward_package::signature::{read_private_key_file, PrivateKey};
use ward_package::{Trust, Verification};

use super::error::refuse;
use super::{Observer, RunError};
use crate::checkpoint::mxnet::states_from_mxnet;
use crate::checkpoint::state::{Progress, SavedOptimizer};
use crate::checkpoint::store::{remove_leftovers, MAX_STATE_BYTES};
use crate::checkpoint::{
    checkpoint_name, list_checkpoints, open_checkpoint, BestBy, CheckpointIndex, CheckpointWriter,
    Encryption, OpenedCheckpoint, ParamView, Position, Retention, Sealing, StateInfo, Unsealing,
    CHECKPOINTS_DIR, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
};
use crate::optim::ParamState;
use crate::trainer::{Metrics, Trainer};

/// Checkpoints: encrypted with age, signed, written atomically, pruned; and resuming.
/// Checkpoints are written only when encrypted (recipients or a passphrase file) and
/// signed (the run's signing key): one at the end of each epoch, and every `every` steps.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// age X25519 recipients (`age1…`).
    pub recipients: Vec<String>,
    /// Files of recipients, one per line, `#` comments.
    pub recipients_files: Vec<PathBuf>,
    /// Encrypt with the passphrase in this owner-only file (and decrypt with it on
    /// resume).
    pub passphrase_file: Option<PathBuf>,
    /// Also write a checkpoint every this many steps.
    pub every: Option<u64>,
    /// Keep the newest this many checkpoints (at least 1).
    pub keep_last: u64,
    /// Also keep every checkpoint whose step is a multiple of this.
    pub keep_every: Option<u64>,
    /// Also keep the checkpoint with the best value of this validation metric.
    pub keep_best: Option<String>,
    /// On resume: the checkpoint to continue from (`step-NNNNNNNNNNNN`), not the newest.
    pub from: Option<String>,
    /// On resume: age identity files that decrypt the checkpoint.
    pub identities: Vec<PathBuf>,
    /// On resume: continue although the spec is not the one the checkpoint was written
    /// with (recorded in metrics.jsonl).
    pub allow_spec_change: bool,
}

impl Default for CheckpointOptions {
    fn default() -> CheckpointOptions {
        CheckpointOptions {
            recipients: Vec::new(),
            recipients_files: Vec::new(),
            passphrase_file: None,
            every: None,
            keep_last: 3,
            keep_every: None,
            keep_best: None,
            from: None,
            identities: Vec::new(),
            allow_spec_change: false,
        }
    }
}

impl CheckpointOptions {
    /// How new checkpoints are encrypted: the options, or on resume the recipients the
    /// checkpoint was encrypted to.
    fn sealing(&self, resumed: Option<&CheckpointIndex>) -> Result<Option<Sealing>, RunError> {
        if let Some(path) = &self.passphrase_file {
            return Ok(Some(Sealing::passphrase_file(path)?));
        }
        if !self.recipients.is_empty() || !self.recipients_files.is_empty() {
            let files: Vec<&Path> = self.recipients_files.iter().map(PathBuf::as_path).collect();
            return Ok(Some(Sealing::recipients(&self.recipients, &files)?));
        }
        match resumed {
            Some(index) if index.encryption == Encryption::X25519 => {
                Ok(Some(Sealing::recipients(&index.recipients, &[])?))
            }
            Some(_) => {
                refuse!("the checkpoint is encrypted with a passphrase: give --passphrase-file")
            }
            None => Ok(None),
        }
    }

    fn unsealing(&self) -> Result<Unsealing, RunError> {
        if let Some(path) = &self.passphrase_file {
            return Ok(Unsealing::passphrase_file(path)?);
        }
        if self.identities.is_empty() {
            refuse!(
                "--resume decrypts the checkpoint: give --identity KEY.txt (or --passphrase-file)"
            );
        }
        let files: Vec<&Path> = self.identities.iter().map(PathBuf::as_path).collect();
        Ok(Unsealing::identity_files(&files)?)
    }

    fn retention(&self) -> Retention {
        Retention {
            keep_last: usize::try_from(self.keep_last.max(1)).unwrap_or(usize::MAX),
            keep_every: self.keep_every,
            keep_best: self.keep_best.as_deref().map(BestBy::named),
        }
    }
}

/// What a run writes its checkpoints with, and what they say of it.
pub(super) struct Checkpointing {
    writer: CheckpointWriter,
    every: Option<u64>,
    model: String,
    run: String,
    spec_sha256: String,
    seed: String,
    /// The step of the last checkpoint written or resumed from.
    last: Option<u64>,
}

/// The run a checkpoint belongs to.
pub(super) struct RunIdentity<'a> {
    pub model: &'a str,
    pub run: &'a str,
    pub spec_sha256: &'a str,
    pub seed: &'a str,
}

impl Checkpointing {
    /// The run's checkpointing, if its checkpoints are encrypted to someone; they must
    /// then be signed.
    pub fn new(
        options: &CheckpointOptions,
        run_dir: &Path,
        key: Option<&Path>,
        resumed: Option<&OpenedCheckpoint>,
        run: RunIdentity<'_>,
    ) -> Result<Option<Checkpointing>, RunError> {
        let Some(sealing) = options.sealing(resumed.map(|r| &r.index))? else {
            if options.every.is_some() || options.keep_best.is_some() {
                refuse!("checkpoints are encrypted: give --recipient, --recipients-file or --passphrase-file");
            }
            return Ok(None);
        };
        let Some(key) = key else {
            refuse!("checkpoints are signed: give --sign-key");
        };
        let key: PrivateKey = read_private_key_file(key)?;
        let dir = run_dir.join(CHECKPOINTS_DIR);
        let writer = CheckpointWriter::new(&dir, sealing, key, options.retention())?;
        Ok(Some(Checkpointing {
            writer,
            every: options.every,
            model: run.model.to_string(),
            run: run.run.to_string(),
            spec_sha256: run.spec_sha256.to_string(),
            seed: run.seed.to_string(),
            last: resumed.map(|r| r.index.position.step),
        }))
    }

    /// Whether a checkpoint is due after `step` mid-epoch (`last_of_epoch`: the epoch's
    /// end writes one anyway).
    pub fn due(&self, step: u64, last_of_epoch: bool) -> bool {
        !last_of_epoch && self.every.is_some_and(|n| step.is_multiple_of(n))
    }

    /// Writes a checkpoint of `trainer` at `position`; returns its step, or `None` when
    /// one was already written (or resumed from) at this step.
    pub fn write(
        &mut self,
        trainer: &Trainer,
        position: Position,
        progress: Progress,
        metrics: BTreeMap<String, f64>,
        created_unix: u64,
    ) -> Result<Option<u64>, RunError> {
        if self.last == Some(position.step) {
            return Ok(None);
        }
        let params: Vec<ParamView<'_>> = trainer
            .graph()
            .params
            .iter()
            .zip(trainer.weights())
            .zip(trainer.param_states())
            .map(|((p, w), s)| ParamView {
                name: &p.name,
                trainable: p.role == ward_graph::ir::ParamRole::Trainable,
                shape: &p.shape,
                weight: w,
                state: s,
            })
            .collect();
        let optimizer = trainer.optimizer();
        let info = StateInfo {
            run: self.run.clone(),
            spec_sha256: self.spec_sha256.clone(),
            seed: self.seed.clone(),
            position,
            optimizer: SavedOptimizer::new(optimizer.spec().name(), optimizer.state()),
            progress,
        };
        let index = CheckpointIndex {
            format: CHECKPOINT_FORMAT.into(),
            version: CHECKPOINT_VERSION,
            model: self.model.clone(),
            run: self.run.clone(),
            spec_sha256: self.spec_sha256.clone(),
            position,
            created: created_unix,
            metrics,
            encryption: Encryption::X25519,
            recipients: Vec::new(),
            state_bytes: 0,
            ward_version: env!("CARGO_PKG_VERSION").into(),
            cluster: None,
        };
        self.writer
            .write(index, &info, &params)
            .map_err(|e| RunError::failed("writing a checkpoint", &e))?;
        self.last = Some(position.step);
        Ok(Some(position.step))
    }
}

/// Opens the checkpoint a resumed run continues from: `from`, or the newest in
/// `RUN/checkpoints/`. A checkpoint that fails verification or decryption is refused,
/// never skipped: the observer hears the older ones `from` may name.
pub(super) fn open_for_resume(
    options: &CheckpointOptions,
    run_dir: &Path,
    trust: &Trust,
    observer: &mut dyn Observer,
) -> Result<OpenedCheckpoint, RunError> {
    let dir = run_dir.join(CHECKPOINTS_DIR);
    if !dir.is_dir() {
        refuse!(
            "{} has no checkpoints ({} is missing)",
            run_dir.display(),
            dir.display()
        );
    }
    for gone in remove_leftovers(&dir)? {
        observer.note(&format!(
            "removed {gone}: a checkpoint write that did not finish"
        ));
    }
    let found = list_checkpoints(&dir)?;
    let chosen = match &options.from {
        Some(name) => match found
            .iter()
            .find(|(_, p)| p.file_name().and_then(|n| n.to_str()) == Some(name.as_str()))
        {
            Some((_, p)) => p.clone(),
            None => refuse!("{} holds no checkpoint {name}", dir.display()),
        },
        None => match found.last() {
            Some((_, p)) => p.clone(),
            None => refuse!("{} holds no checkpoint", dir.display()),
        },
    };
    let unsealing = options.unsealing()?;
    let opened = open_checkpoint(&chosen, trust, &unsealing).map_err(|e| {
        let older: Vec<String> = found
            .iter()
            .filter(|(_, p)| *p != chosen)
            .map(|(s, _)| checkpoint_name(*s))
            .collect();
        if !older.is_empty() {
            observer.note(&format!(
                "other checkpoints (--from NAME): {}",
                older.join(", ")
            ));
        }
        RunError::from(e)
    })?;
    if let Some(cluster) = &opened.index.cluster {
        refuse!(
            "{} is a checkpoint of the distributed job {:?} ({}): resume it with ward cluster --resume",
            chosen.display(),
            cluster.job,
            cluster.member
        );
    }
    if let Verification::Signed(v) = &opened.verification {
        observer.note(&format!(
            "resuming from {} (step {}), signed by {}",
            chosen.display(),
            opened.index.position.step,
            v.signers().join(", ")
        ));
    }
    Ok(opened)
}

/// Sets aside the checkpoints after `step` in the directory of the checkpoint `chosen`:
/// they belong to a future the resumed run abandons. Renamed (never deleted), so that the
/// resumed run's checkpoints do not collide with them.
pub(super) fn set_aside_newer(
    chosen: &Path,
    step: u64,
    now_unix: u64,
    observer: &mut dyn Observer,
) -> Result<(), RunError> {
    let Some(dir) = chosen.parent() else {
        return Ok(());
    };
    for (later, path) in list_checkpoints(dir)?
        .into_iter()
        .filter(|(s, _)| *s > step)
    {
        let aside = dir.join(format!("superseded-{}-{now_unix}", checkpoint_name(later),));
        std::fs::rename(&path, &aside)
            .map_err(|e| RunError::failed(format!("setting aside {}", path.display()), &e))?;
        observer.note(&format!(
            "set aside {} as {}: the run continues from an older checkpoint",
            path.display(),
            aside.display()
        ));
    }
    Ok(())
}

/// The trainer's weights and optimizer states from a checkpoint, in the graph's order.
pub(super) fn restore(trainer: &mut Trainer, opened: OpenedCheckpoint) -> Result<(), RunError> {
    let names = trainer.optimizer().state_names();
    let params = &trainer.graph().params;
    if opened.state.params.len() != params.len()
        || opened
            .state
            .params
            .iter()
            .zip(params)
            .any(|(s, p)| s.name != p.name)
    {
        refuse!(
            "the checkpoint's parameters are not the model's ({} against {})",
            opened.state.params.len(),
            params.len()
        );
    }
    let mut weights = Vec::with_capacity(params.len());
    let mut states = Vec::with_capacity(params.len());
    for p in opened.state.params {
        let mut tensors = Vec::with_capacity(p.tensors.len());
        for (name, values) in p.tensors {
            let Some(&known) = names.iter().find(|n| **n == name) else {
                refuse!(
                    "{}: optimizer state {name:?} is not one {} keeps",
                    p.name,
                    trainer.optimizer().spec().name()
                );
            };
            tensors.push((known, values));
        }
        weights.push(p.weight);
        states.push(ParamState {
            update_count: p.update_count,
            tensors,
        });
    }
    let info = opened.state.info;
    if info.optimizer.name != trainer.optimizer().spec().name() {
        refuse!(
            "the checkpoint was trained with {}, the spec declares {}",
            info.optimizer.name,
            trainer.optimizer().spec().name()
        );
    }
    trainer.restore(weights, states, info.optimizer.state(), info.position.step)?;
    Ok(())
}

/// Starts `trainer` from MXNet's optimizer states in `path` (a Module `.states` or a
/// Gluon `Trainer.save_states` file, read without running its pickle). Returns whether the
/// file carried the optimizer's update counts (Gluon's does, a Module's does not).
pub(super) fn mxnet_states(path: &Path, trainer: &mut Trainer) -> Result<bool, RunError> {
    let bytes = ward_core::files::read_bounded(path, MAX_STATE_BYTES)
        .map_err(|e| RunError::failed(format!("cannot read {}", path.display()), &e))?;
    let file = ward_mxnet::states::read_optimizer_states(&bytes, &Default::default())
        .map_err(|e| RunError::failed(path.display().to_string(), &e))?;
    // Not a checkpoint's refusal: an input that does not fit the spec.
    let imported = states_from_mxnet(&file, &trainer.graph().params, trainer.optimizer())
        .map_err(|e| RunError::failed(path.display().to_string(), &e))?;
    let weights = trainer.weights().to_vec();
    trainer.restore(weights, imported.states, imported.optimizer, 0)?;
    Ok(imported.with_counts)
}

/// [`Metrics`] as the state saves them.
pub(super) fn progress(epoch: Metrics, window: Metrics, log_bytes: u64) -> Progress {
    Progress {
        epoch: epoch.into(),
        window: window.into(),
        log_bytes,
    }
}
