//! Training checkpoints: everything a run needs to continue exactly where it stood,
//! unreadable without a key, impossible to swap without a signing key, never half-written.
//!
//! A checkpoint is a directory of the checkpoint layout
//! ([`ward_package::Layout::checkpoint`]):
//! - `checkpoint.json` ([`CheckpointIndex`], in clear): the model's name (for the trust
//!   policy), the run's id, the training spec's SHA-256, the position (step, epoch, next
//!   batch), the last validation metrics, how the state is encrypted and its size;
//! - `state.age`: the state ([`state`]: a safetensors file of the weights, the optimizer's
//!   tensors and a JSON header with the rest) encrypted with age ([`seal`]) to X25519
//!   recipients or a passphrase; the plaintext is never written to disk (written by
//!   [`age_writer`], read by the age crate);
//! - `model.sig`: an OpenSSF model-signing signature over both, made over the encrypted
//!   bytes.
//!
//! Opening one ([`open_checkpoint`]) is the package loader's pipeline over that layout:
//! signatures against the trust policy before anything is read, the index verified and
//! parsed, `state.age` refused if its size is not the signed one, then read once and
//! compared with the signature; only those verified bytes are decrypted and parsed, and
//! the state must be the one the index describes (run, spec, position). Writing one
//! ([`CheckpointWriter`]) goes through the one atomic writer (a temporary sibling
//! directory, every file and the directory synced, renamed into place, the parent synced),
//! then prunes older checkpoints by a [`Retention`] policy.

pub mod age_writer;
#[cfg(feature = "distributed")]
pub mod cluster;
pub mod index;
pub mod mxnet;
pub mod seal;
pub mod state;
pub mod store;

use std::path::{Path, PathBuf};

pub use index::{CheckpointIndex, ClusterIndex, Position, CHECKPOINT_FORMAT, CHECKPOINT_VERSION};
pub use seal::{Encryption, Sealing, Unsealing};
pub use state::{decode_state, encode_state, encode_state_to, DecodedState, ParamView, StateInfo};
pub use store::{
    checkpoint_name, checkpoints_dir, list_checkpoints, open_checkpoint, read_index_unverified,
    verify_checkpoint, BestBy, CheckpointWriter, OpenedCheckpoint, Retention, CHECKPOINTS_DIR,
};

/// Why a checkpoint could not be written or opened.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The loader refused the checkpoint (signatures, files, sizes): a verification
    /// refusal.
    #[error(transparent)]
    Package(ward_package::PackageError),
    #[error("cannot write the checkpoint: {0}")]
    Write(ward_package::PackageError),
    #[error("cannot decrypt state.age: {0}")]
    Decrypt(String),
    #[error("cannot encrypt the state: {0}")]
    Encrypt(String),
    /// The encrypted state could not be written where it was going (a full disk).
    #[error("cannot write the checkpoint's state.age: {0}")]
    WriteState(std::io::Error),
    #[error("the decrypted state is larger than {limit} bytes")]
    StateTooLarge { limit: u64 },
    #[error("state: {0}")]
    State(String),
    #[error("{}: state.age is not the state checkpoint.json describes (another run, spec or step)", dir.display())]
    Mismatch { dir: PathBuf },
    #[error("{at}: {text:?} is not an age X25519 recipient (age1…)")]
    Recipient { at: String, text: String },
    #[error("no recipient: give --recipient age1… or --recipients-file")]
    NoRecipients,
    #[error("the identity files hold no identity")]
    NoIdentities,
    #[error("{}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    /// A checkpoint made into another framework's files.
    #[error("export: {0}")]
    Export(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CheckpointError {
    fn key_file(path: &Path, reason: String) -> CheckpointError {
        CheckpointError::KeyFile {
            path: path.to_path_buf(),
            reason,
        }
    }

    fn io(path: &Path, source: std::io::Error) -> CheckpointError {
        CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether this is a refusal of the checkpoint itself (its signature, its files, its
    /// encryption or its contents), as opposed to a failure to work with it.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            CheckpointError::Package(_)
                | CheckpointError::Decrypt(_)
                | CheckpointError::StateTooLarge { .. }
                | CheckpointError::State(_)
                | CheckpointError::Mismatch { .. }
        )
    }
}

/// The SHA-256 of a training spec's bytes, as a checkpoint records it.
pub fn spec_digest(spec: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(spec))
}

/// Lowercase hexadecimal, as checkpoints record ids and digests.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new run's id: 16 bytes from the operating system's random source, as 32
/// hexadecimal digits.
pub fn new_run_id() -> Result<String, ward_core::random::SeedError> {
    let bytes = ward_core::random::RunSeed::from_os()?;
    Ok(hex(bytes.as_bytes().get(..16).unwrap_or_default()))
}
