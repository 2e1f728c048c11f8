//! `ward train`'s checkpoints: the flags, writing one at a position, and resuming from one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ward_package::signature::{read_private_key_file, PrivateKey};
use ward_package::{Trust, Verification};
use ward_train::checkpoint::mxnet::states_from_mxnet;
use ward_train::checkpoint::state::{Progress, SavedOptimizer};
use ward_train::checkpoint::store::{create_private_dir, remove_leftovers, MAX_STATE_BYTES};
use ward_train::checkpoint::{
    checkpoint_name, list_checkpoints, open_checkpoint, BestBy, CheckpointIndex, CheckpointWriter,
    Encryption, OpenedCheckpoint, ParamView, Position, Retention, Sealing, StateInfo, Unsealing,
    CHECKPOINTS_DIR, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
};
use ward_train::optim::ParamState;
use ward_train::trainer::{Metrics, Trainer};

/// Checkpoints: encrypted with age, signed, written atomically, pruned; and resuming.
#[derive(Args)]
pub struct CheckpointArgs {
    /// Write checkpoints encrypted to this age recipient (age1…, repeatable). Checkpoints
    /// are written only when encrypted (a recipient or --passphrase-file) and signed
    /// (--sign-key): one at the end of each epoch, and every --checkpoint-every steps.
    #[arg(long, value_name = "AGE1…")]
    recipient: Vec<String>,
    /// Encrypt checkpoints to the recipients in FILE (one per line, # comments).
    #[arg(long, value_name = "FILE")]
    recipients_file: Vec<PathBuf>,
    /// Encrypt checkpoints with the passphrase in FILE (its first line; the file must be
    /// readable by its owner alone), and decrypt them with it on --resume.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recipient", "recipients_file", "identity"])]
    passphrase_file: Option<PathBuf>,
    /// Also write a checkpoint every N steps.
    #[arg(long, value_name = "STEPS", value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: Option<u64>,
    /// Keep the newest N checkpoints (older ones are deleted once a newer one is
    /// complete).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    keep_last: u64,
    /// Also keep every checkpoint whose step is a multiple of K.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    keep_every: Option<u64>,
    /// Also keep the checkpoint with the best value of this validation metric
    /// (val_accuracy, val_loss, ...; losses and errors are better lower).
    #[arg(long, value_name = "METRIC")]
    keep_best: Option<String>,
    /// Continue the run in DIR (a --out of an earlier run) from its newest checkpoint,
    /// verified under --trust and decrypted with --identity or --passphrase-file.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// With --resume: the checkpoint to continue from (step-NNNNNNNNNNNN), not the newest.
    #[arg(long = "from", value_name = "NAME", requires = "resume")]
    from: Option<String>,
    /// With --resume: an age identity file (AGE-SECRET-KEY-1…, as age-keygen writes it).
    #[arg(long, value_name = "FILE", requires = "resume")]
    identity: Vec<PathBuf>,
    /// With --resume: continue although the spec is not the one the checkpoint was
    /// written with (recorded in metrics.jsonl).
    #[arg(long, requires = "resume")]
    allow_spec_change: bool,
}

impl CheckpointArgs {
    pub fn allow_spec_change(&self) -> bool {
        self.allow_spec_change
    }

    /// How new checkpoints are encrypted: the flags, or on resume the recipients the
    /// checkpoint was encrypted to.
    fn sealing(&self, resumed: Option<&CheckpointIndex>) -> Result<Option<Sealing>> {
        if let Some(path) = &self.passphrase_file {
            return Ok(Some(Sealing::passphrase_file(path)?));
        }
        if !self.recipient.is_empty() || !self.recipients_file.is_empty() {
            let files: Vec<&Path> = self.recipients_file.iter().map(PathBuf::as_path).collect();
            return Ok(Some(Sealing::recipients(&self.recipient, &files)?));
        }
        match resumed {
            Some(index) if index.encryption == Encryption::X25519 => {
                Ok(Some(Sealing::recipients(&index.recipients, &[])?))
            }
            Some(_) => {
                bail!("the checkpoint is encrypted with a passphrase: give --passphrase-file")
            }
            None => Ok(None),
        }
    }

    fn unsealing(&self) -> Result<Unsealing> {
        if let Some(path) = &self.passphrase_file {
            return Ok(Unsealing::passphrase_file(path)?);
        }
        if self.identity.is_empty() {
            bail!(
                "--resume decrypts the checkpoint: give --identity KEY.txt (or --passphrase-file)"
            );
        }
        let files: Vec<&Path> = self.identity.iter().map(PathBuf::as_path).collect();
        Ok(Unsealing::identity_files(&files)?)
    }

    fn retention(&self) -> Retention {
        Retention {
            keep_last: usize::try_from(self.keep_last).unwrap_or(usize::MAX),
            keep_every: self.keep_every,
            keep_best: self.keep_best.as_deref().map(BestBy::named),
        }
    }
}

/// What a run writes its checkpoints with, and what they say of it.
pub struct Checkpointing {
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
pub struct RunIdentity<'a> {
    pub model: &'a str,
    pub run: &'a str,
    pub spec_sha256: &'a str,
    pub seed: &'a str,
}

impl Checkpointing {
    /// The run's checkpointing, if its checkpoints are encrypted to someone; they must
    /// then be signed.
    pub fn new(
        args: &CheckpointArgs,
        run_dir: &Path,
        key: Option<&Path>,
        resumed: Option<&OpenedCheckpoint>,
        run: RunIdentity<'_>,
    ) -> Result<Option<Checkpointing>> {
        let Some(sealing) = args.sealing(resumed.map(|r| &r.index))? else {
            if args.checkpoint_every.is_some() || args.keep_best.is_some() {
                bail!("checkpoints are encrypted: give --recipient, --recipients-file or --passphrase-file");
            }
            return Ok(None);
        };
        let Some(key) = key else {
            bail!("checkpoints are signed: give --sign-key");
        };
        let key: PrivateKey = read_private_key_file(key)?;
        let dir = run_dir.join(CHECKPOINTS_DIR);
        let writer = CheckpointWriter::new(&dir, sealing, key, args.retention())?;
        Ok(Some(Checkpointing {
            writer,
            every: args.checkpoint_every,
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

    /// Writes a checkpoint of `trainer` at `position`.
    pub fn write(
        &mut self,
        trainer: &Trainer,
        position: Position,
        progress: Progress,
        metrics: BTreeMap<String, f64>,
    ) -> Result<()> {
        if self.last == Some(position.step) {
            return Ok(());
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
            created: super::created_now(),
            metrics,
            encryption: Encryption::X25519,
            recipients: Vec::new(),
            state_bytes: 0,
            ward_version: env!("CARGO_PKG_VERSION").into(),
            cluster: None,
        };
        let written = self
            .writer
            .write(index, &info, &params)
            .context("writing a checkpoint")?;
        self.last = Some(position.step);
        for gone in &written.removed {
            tracing::debug!(
                "checkpoint {} removed by the retention policy",
                gone.display()
            );
        }
        Ok(())
    }
}

/// Opens the checkpoint a resumed run continues from: `--from`, or the newest in
/// `RUN/checkpoints/`. A checkpoint that fails verification or decryption is refused
/// (exit 3), never skipped: the message names the older ones `--from` may name.
pub fn open_for_resume(
    args: &CheckpointArgs,
    run_dir: &Path,
    trust: &Trust,
) -> Result<OpenedCheckpoint> {
    let dir = run_dir.join(CHECKPOINTS_DIR);
    if !dir.is_dir() {
        bail!(
            "{} has no checkpoints ({} is missing)",
            run_dir.display(),
            dir.display()
        );
    }
    for gone in remove_leftovers(&dir)? {
        eprintln!("removed {gone}: a checkpoint write that did not finish");
    }
    let found = list_checkpoints(&dir)?;
    let chosen = match &args.from {
        Some(name) => found
            .iter()
            .find(|(_, p)| p.file_name().and_then(|n| n.to_str()) == Some(name.as_str()))
            .map(|(_, p)| p.clone())
            .with_context(|| format!("{} holds no checkpoint {name}", dir.display()))?,
        None => match found.last() {
            Some((_, p)) => p.clone(),
            None => bail!("{} holds no checkpoint", dir.display()),
        },
    };
    let unsealing = args.unsealing()?;
    let opened = open_checkpoint(&chosen, trust, &unsealing).map_err(|e| {
        let older: Vec<String> = found
            .iter()
            .filter(|(_, p)| *p != chosen)
            .map(|(s, _)| checkpoint_name(*s))
            .collect();
        if !older.is_empty() {
            eprintln!("other checkpoints (--from NAME): {}", older.join(", "));
        }
        anyhow::Error::from(e)
    })?;
    if let Some(cluster) = &opened.index.cluster {
        bail!(
            "{} is a checkpoint of the distributed job {:?} ({}): resume it with ward cluster --resume",
            chosen.display(),
            cluster.job,
            cluster.member
        );
    }
    if let Verification::Signed(v) = &opened.verification {
        eprintln!(
            "resuming from {} (step {}), signed by {}",
            chosen.display(),
            opened.index.position.step,
            v.signers().join(", ")
        );
    }
    Ok(opened)
}

/// Sets aside the checkpoints after `step` in the directory of the checkpoint `chosen`:
/// they belong to a future the resumed run abandons. Renamed (never deleted), so that the
/// resumed run's checkpoints do not collide with them.
pub fn set_aside_newer(chosen: &Path, step: u64) -> Result<()> {
    let Some(dir) = chosen.parent() else {
        return Ok(());
    };
    for (later, path) in list_checkpoints(dir)?
        .into_iter()
        .filter(|(s, _)| *s > step)
    {
        let aside = dir.join(format!(
            "superseded-{}-{}",
            checkpoint_name(later),
            super::created_now()
        ));
        std::fs::rename(&path, &aside)
            .with_context(|| format!("setting aside {}", path.display()))?;
        eprintln!(
            "set aside {} as {}: the run continues from an older checkpoint",
            path.display(),
            aside.display()
        );
    }
    Ok(())
}

/// The trainer's weights and optimizer states from a checkpoint, in the graph's order.
pub fn restore(trainer: &mut Trainer, opened: OpenedCheckpoint) -> Result<()> {
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
        bail!(
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
                bail!(
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
        bail!(
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
pub fn mxnet_states(path: &Path, trainer: &mut Trainer) -> Result<bool> {
    let bytes = ward_core::files::read_bounded(path, MAX_STATE_BYTES)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file = ward_mxnet::states::read_optimizer_states(&bytes, &Default::default())
        .with_context(|| format!("{}", path.display()))?;
    // Not a checkpoint's refusal (exit 3): an input that does not fit the spec.
    let imported = states_from_mxnet(&file, &trainer.graph().params, trainer.optimizer())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let weights = trainer.weights().to_vec();
    trainer.restore(weights, imported.states, imported.optimizer, 0)?;
    Ok(imported.with_counts)
}

/// Creates a new run's directory, owner-only.
pub fn create_run_dir(dir: &Path) -> Result<()> {
    create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// [`Metrics`] as the state saves them.
pub fn progress(epoch: Metrics, window: Metrics, log_bytes: u64) -> Progress {
    Progress {
        epoch: epoch.into(),
        window: window.into(),
        log_bytes,
    }
}
