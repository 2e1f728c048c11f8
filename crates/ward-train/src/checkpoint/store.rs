//! A run's checkpoints on disk: `RUN/checkpoints/step-NNNNNNNNNNNN/`, each a directory of
//! the checkpoint layout, written whole through the one atomic writer, opened only through
//! the one verified loader, and pruned by a retention policy once a newer one is complete.

use std::fs;

use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ward_package::loader::open_layout;
use ward_package::package::sign_options;
use ward_package::pipeline::Accepted;
use ward_package::read::Keep;
use ward_package::signature::verify::Digests;
use ward_package::signature::{sign_with_digests, FileSet, Hashing, PrivateKey};
use ward_package::write::{mode_of, NewDir};
use ward_package::{
    Layout, PackageError, Trust, Verification, CHECKPOINT_INDEX_FILE, CHECKPOINT_STATE_FILE,
    SIGNATURE_FILE,
};

use super::age_writer::Sealed;
use super::index::CheckpointIndex;
use super::seal::{Sealing, Unsealing};
use super::state::{decode_state, encode_state_to, DecodedState, ParamView, StateInfo};
use super::CheckpointError;

/// The directory of a run's checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Largest `checkpoint.json`.
pub const MAX_INDEX_BYTES: u64 = 1 << 20;
/// Largest `state.age`: weights and up to three optimizer tensors per weight, for models
/// up to the package limit of 8 GiB of weights.
pub const MAX_STATE_BYTES: u64 = 32 << 30;

/// The checkpoints of `run`: `run/checkpoints/` when `run` is a run's directory, else
/// `run` itself (given the checkpoints directory directly).
pub fn checkpoints_dir(run: &Path) -> PathBuf {
    let dir = run.join(CHECKPOINTS_DIR);
    if dir.is_dir() {
        dir
    } else {
        run.to_path_buf()
    }
}

/// The checkpoint layout with ward's limits.
pub fn checkpoint_layout() -> Layout {
    Layout::checkpoint(MAX_INDEX_BYTES, MAX_STATE_BYTES)
}

/// The directory name of the checkpoint at `step`: `step-` and twelve digits, so that
/// names sort as steps do.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:012}")
}

/// The step a checkpoint directory's name gives, if it is one.
pub fn step_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.len() < 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The checkpoints in `dir` (a run's `checkpoints/`), oldest first: the entries named as
/// [`checkpoint_name`] names them that are directories (not links). Temporary directories
/// of an interrupted write and superseded checkpoints are not listed.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let io = |e: std::io::Error| CheckpointError::io(dir, e);
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Some(step) = entry.file_name().to_str().and_then(step_of) else {
            continue;
        };
        if entry.file_type().map_err(io)?.is_dir() {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Removes what an interrupted write left in `dir`: the atomic writer's temporary
/// directories (`.step-….ward-tmp-…`) and the retention's half-deleted ones
/// (`.deleting-step-…`). None of them was ever a checkpoint. Returns what was removed.
pub fn remove_leftovers(dir: &Path) -> Result<Vec<String>, CheckpointError> {
    let io = |e: std::io::Error| CheckpointError::io(dir, e);
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let temporary = name.starts_with(".step-") && name.contains(".ward-tmp-");
        if (temporary || name.starts_with(".deleting-step-"))
            && entry.file_type().map_err(io)?.is_dir()
        {
            fs::remove_dir_all(entry.path()).map_err(|e| CheckpointError::io(&entry.path(), e))?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Which checkpoints to keep once a newer one is complete.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// The newest `keep_last` (at least 1).
    pub keep_last: usize,
    /// Every checkpoint whose step is a multiple of this.
    pub keep_every: Option<u64>,
    /// The best by a validation metric its index records.
    pub keep_best: Option<BestBy>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 3,
            keep_every: None,
            keep_best: None,
        }
    }
}

/// A validation metric and which way is better.
#[derive(Debug, Clone, PartialEq)]
pub struct BestBy {
    /// The name `metrics.jsonl` gives it (`val_accuracy`, `val_loss`, ...).
    pub metric: String,
    pub higher_is_better: bool,
}

impl BestBy {
    /// `metric`, better when higher unless it is a loss or an error (`loss`, `mae`,
    /// `mse`, `rmse`, `ce`, `nll_loss`, `perplexity` in its name).
    pub fn named(metric: &str) -> BestBy {
        let lower = ["loss", "mae", "mse", "rmse", "ce", "perplexity"];
        let key = metric.strip_prefix("val_").unwrap_or(metric);
        BestBy {
            metric: metric.to_string(),
            higher_is_better: !lower
                .iter()
                .any(|l| key == *l || key.ends_with(&format!("_{l}"))),
        }
    }
}

/// The steps of `checkpoints` (step, its recorded metrics) to keep under `retention`.
pub fn kept_steps(
    checkpoints: &[(u64, Option<f64>)],
    retention: &Retention,
) -> std::collections::BTreeSet<u64> {
    let mut keep: std::collections::BTreeSet<u64> = checkpoints
        .iter()
        .rev()
        .take(retention.keep_last.max(1))
        .map(|(s, _)| *s)
        .collect();
    if let Some(k) = retention.keep_every.filter(|&k| k > 0) {
        keep.extend(
            checkpoints
                .iter()
                .map(|(s, _)| *s)
                .filter(|s| s.is_multiple_of(k)),
        );
    }
    if let Some(best) = &retention.keep_best {
        let better = |a: f64, b: f64| if best.higher_is_better { a > b } else { a < b };
        let mut top: Option<(u64, f64)> = None;
        for &(step, value) in checkpoints {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                if top.is_none_or(|(_, t)| better(v, t)) {
                    top = Some((step, v));
                }
            }
        }
        keep.extend(top.map(|(s, _)| s));
    }
    keep
}

/// Writes a run's checkpoints: encrypted to `sealing`, signed with `key`, pruned by
/// `retention`.
pub struct CheckpointWriter {
    dir: PathBuf,
    sealing: Sealing,
    key: PrivateKey,
    retention: Retention,
}

impl std::fmt::Debug for CheckpointWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointWriter")
            .field("dir", &self.dir)
            .field("sealing", &self.sealing)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// What writing a checkpoint did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub dir: PathBuf,
    pub state_bytes: u64,
    /// The SHA-256 of the `state.age` written.
    pub state_sha256: [u8; 32],
    /// The checkpoints the retention policy deleted.
    pub removed: Vec<PathBuf>,
}

impl CheckpointWriter {
    /// A writer into `dir` (created owner-only if missing).
    pub fn new(
        dir: &Path,
        sealing: Sealing,
        key: PrivateKey,
        retention: Retention,
    ) -> Result<CheckpointWriter, CheckpointError> {
        create_private_dir(dir)?;
        Ok(CheckpointWriter {
            dir: dir.to_path_buf(),
            sealing,
            key,
            retention,
        })
    }

    pub fn sealing(&self) -> &Sealing {
        &self.sealing
    }

    /// The directory the checkpoints are written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Encodes the state (`info` and `params`) straight into the cipher, records the
    /// encrypted state's size, encryption and recipients in `index`, signs both, and
    /// writes them as a new checkpoint directory named by the index's step, whole or not
    /// at all; then prunes the older ones.
    pub fn write(
        &self,
        mut index: CheckpointIndex,
        info: &StateInfo,
        params: &[ParamView<'_>],
    ) -> Result<Written, CheckpointError> {
        let layout = checkpoint_layout();
        let options = sign_options(&index.model, &[SIGNATURE_FILE.to_string()]);
        // The state's SHA-256 is computed as it is sealed and the signature reuses it:
        // it covers the whole file, the one resource of model-signing's default hashing.
        if options.hashing != Hashing::DEFAULT {
            return Err(CheckpointError::State(format!(
                "checkpoints are signed with {:?}, not the default hashing",
                options.hashing
            )));
        }
        let mode = |name: &str| mode_of(&layout, name).map_err(CheckpointError::Write);
        let dir = self.dir.join(checkpoint_name(index.position.step));
        // The state goes to disk as it is encrypted, into the new directory's temporary
        // sibling; the directory takes its name only once every file is written and
        // synced, and an error or a panic before then removes it.
        let mut new = NewDir::create(&dir, true).map_err(CheckpointError::Write)?;
        let state = new
            .stream(CHECKPOINT_STATE_FILE, mode(CHECKPOINT_STATE_FILE)?)
            .map_err(CheckpointError::Write)?;
        let Sealed {
            sink: state,
            len: state_bytes,
            sha256: state_sha256,
        } = self
            .sealing
            .seal_into(state, |w| encode_state_to(info, params, w).map(drop))?;
        new.close(state).map_err(CheckpointError::Write)?;
        index.state_bytes = state_bytes;
        index.encryption = self.sealing.encryption();
        index.recipients = self.sealing.recipient_names();
        index.validate().map_err(CheckpointError::State)?;
        let json = index.to_json();
        let files = FileSet::with_lengths([
            (
                CHECKPOINT_INDEX_FILE.to_string(),
                json.len() as u64,
                Some(json.as_slice()),
            ),
            (CHECKPOINT_STATE_FILE.to_string(), state_bytes, None),
        ]);
        let mut digests = Digests::default();
        digests.insert_whole_file_sha256(CHECKPOINT_STATE_FILE, state_bytes, state_sha256);
        let signature = sign_with_digests(&files, &self.key, &options, &mut digests);
        let (index_mode, signature_mode) = (mode(CHECKPOINT_INDEX_FILE)?, mode(SIGNATURE_FILE)?);
        new.add(CHECKPOINT_INDEX_FILE, &json, index_mode)
            .and_then(|()| new.add(SIGNATURE_FILE, &signature, signature_mode))
            .and_then(|()| new.commit_layout(&layout))
            .map_err(CheckpointError::Write)?;
        let removed = self.prune()?;
        Ok(Written {
            dir,
            state_bytes: index.state_bytes,
            state_sha256,
            removed,
        })
    }

    /// The checkpoints in the writer's directory, oldest first.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        list_checkpoints(&self.dir)
    }

    /// Deletes the checkpoints of `steps` (those that exist), each renamed out of the
    /// checkpoint names first. Returns what was deleted.
    pub fn remove(&self, steps: &[u64]) -> Result<Vec<PathBuf>, CheckpointError> {
        let mut removed = Vec::new();
        for (step, dir) in list_checkpoints(&self.dir)?
            .into_iter()
            .filter(|(s, _)| steps.contains(s))
        {
            self.delete(step, &dir)?;
            removed.push(dir);
        }
        if !removed.is_empty() {
            let _ = ward_core::files::sync_dir(&self.dir);
        }
        Ok(removed)
    }

    fn delete(&self, step: u64, dir: &Path) -> Result<(), CheckpointError> {
        let doomed = self
            .dir
            .join(format!(".deleting-{}", checkpoint_name(step)));
        fs::rename(dir, &doomed).map_err(|e| CheckpointError::io(dir, e))?;
        fs::remove_dir_all(&doomed).map_err(|e| CheckpointError::io(&doomed, e))
    }

    /// Deletes the checkpoints the retention policy does not keep: each renamed out of
    /// the checkpoint names first, so a half-deleted one is never taken for a checkpoint.
    fn prune(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        let found = list_checkpoints(&self.dir)?;
        let metric = self.retention.keep_best.as_ref().map(|b| b.metric.as_str());
        let with_metrics: Vec<(u64, Option<f64>)> = found
            .iter()
            .map(|(step, dir)| {
                let value = metric.and_then(|m| {
                    read_index_unverified(dir)
                        .ok()
                        .and_then(|i| i.metrics.get(m).copied())
                });
                (*step, value)
            })
            .collect();
        let keep = kept_steps(&with_metrics, &self.retention);
        let mut removed = Vec::new();
        for (step, dir) in found.into_iter().filter(|(s, _)| !keep.contains(s)) {
            self.delete(step, &dir)?;
            removed.push(dir);
        }
        if !removed.is_empty() {
            let _ = ward_core::files::sync_dir(&self.dir);
        }
        Ok(removed)
    }
}

/// Creates `dir` (and its parents) readable by its owner alone, or checks that an
/// existing one is a directory.
pub fn create_private_dir(dir: &Path) -> Result<(), CheckpointError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| CheckpointError::io(dir, e))
}

/// A checkpoint that passed verification, decrypted and parsed.
#[derive(Debug)]
pub struct OpenedCheckpoint {
    pub dir: PathBuf,
    pub index: CheckpointIndex,
    /// The SHA-256 of the verified `state.age` that was decrypted.
    pub state_sha256: [u8; 32],
    pub state: DecodedState,
    pub verification: Verification,
}

/// Opens the checkpoint `dir`: verifies its signatures under `trust` and its files against
/// them (the package loader), only then decrypts the verified `state.age` with `unsealing`
/// and parses it, and checks that the state is the one the index describes.
pub fn open_checkpoint(
    dir: &Path,
    trust: &Trust,
    unsealing: &Unsealing,
) -> Result<OpenedCheckpoint, CheckpointError> {
    let accepted = open_layout(
        dir,
        &checkpoint_layout(),
        trust,
        SystemTime::now(),
        Keep::Held,
        |verified: &mut ward_package::pipeline::Verified<CheckpointIndex>| {
            let digest = verified.sha256_of(CHECKPOINT_STATE_FILE);
            verified
                .take(CHECKPOINT_STATE_FILE)
                .map(|sealed| (sealed, digest))
                .ok_or(PackageError::MissingFile {
                    file: CHECKPOINT_STATE_FILE,
                })
        },
    )
    .map_err(CheckpointError::Package)?;
    let Accepted {
        index,
        parsed: (sealed, verified_sha256),
        verification,
    } = accepted;
    // Verification hashed the state as it read it; an unsigned checkpoint (opened under
    // an explicit allow-unsigned) was not, and is hashed here.
    let state_sha256 = verified_sha256.unwrap_or_else(|| sha2::Sha256::digest(&sealed).into());
    let plaintext = unsealing.open(&sealed, MAX_STATE_BYTES)?;
    drop(sealed);
    let state = decode_state(&plaintext)?;
    let info = &state.info;
    if info.run != index.run
        || info.spec_sha256 != index.spec_sha256
        || info.position != index.position
    {
        return Err(CheckpointError::Mismatch {
            dir: dir.to_path_buf(),
        });
    }
    Ok(OpenedCheckpoint {
        dir: dir.to_path_buf(),
        index,
        state_sha256,
        state,
        verification,
    })
}

/// Verifies the checkpoint `dir` under `trust` without decrypting anything: every file is
/// hashed as it is read and only the index is kept.
pub fn verify_checkpoint(
    dir: &Path,
    trust: &Trust,
) -> Result<Accepted<CheckpointIndex, ()>, CheckpointError> {
    open_layout(
        dir,
        &checkpoint_layout(),
        trust,
        SystemTime::now(),
        Keep::Streamed,
        |_: &mut ward_package::pipeline::Verified<CheckpointIndex>| Ok(()),
    )
    .map_err(CheckpointError::Package)
}

/// Reads a checkpoint's index without verifying it: for listing and pruning one's own
/// checkpoints, never for deciding what to load.
pub fn read_index_unverified(dir: &Path) -> Result<CheckpointIndex, CheckpointError> {
    let path = dir.join(CHECKPOINT_INDEX_FILE);
    let bytes = ward_core::files::read_bounded(&path, MAX_INDEX_BYTES)
        .map_err(|e| CheckpointError::io(&path, std::io::Error::other(e.to_string())))?;
    <CheckpointIndex as ward_package::layout::Index>::parse(&bytes)
        .map_err(CheckpointError::Package)
}
