//! What can stop a training run, as one error type the CLI and the Python binding both
//! map: verification refusals stay [`CheckpointError`] and [`PackageError`], so that a
//! caller tells them apart from a run that merely failed.

use ward_core::random::SeedError;
use ward_package::PackageError;

use crate::checkpoint::CheckpointError;
use crate::data::DataError;
use crate::init::InitError;
use crate::metrics::MetricError;
use crate::spec::SpecError;
use crate::trainer::TrainError;

/// Why a run did not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The options or the spec do not allow this run; the message says what to give.
    #[error("{0}")]
    Refused(String),
    /// A checkpoint was refused (signatures, decryption, state) or could not be written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The package to fine-tune was refused by the verified loader, or the trained one
    /// could not be written.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// Training itself: a gradient, the optimizer, a loss or gradient that is not finite.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The training spec.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The run's seed: given, saved, or from the operating system.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// A parameter's initializer.
    #[error(transparent)]
    Init(#[from] InitError),
    /// A declared validation metric.
    #[error(transparent)]
    Metric(#[from] MetricError),
    /// What failed, with the cause's message (a file, the spec, the data, the model).
    #[error("{what}: {cause}")]
    Failed { what: String, cause: String },
    /// The observer abandoned the run after `step` ([`super::Flow::Abort`]).
    #[error("abandoned after step {step} at the caller's request")]
    Stopped { step: u64 },
}

impl RunError {
    /// `what` failed because of `cause`: its message and its sources' (as the CLI prints
    /// a chain of errors, joined by ": ").
    pub fn failed(what: impl Into<String>, cause: &dyn std::error::Error) -> RunError {
        RunError::Failed {
            what: what.into(),
            cause: chain(cause),
        }
    }

    /// Whether this is a verification refusal (a package or checkpoint the trust policy,
    /// the files or the key did not accept), not a failure of the run.
    pub fn is_refusal(&self) -> bool {
        match self {
            RunError::Checkpoint(c) => c.is_refusal(),
            RunError::Package(p) => matches!(
                p,
                PackageError::Refused { .. } | PackageError::Rejected { .. }
            ),
            _ => false,
        }
    }
}

impl From<DataError> for RunError {
    fn from(e: DataError) -> RunError {
        RunError::Train(TrainError::Data(e))
    }
}

/// `Err(RunError::Refused(..))` with a formatted message, like `anyhow::bail!`.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::run::RunError::Refused(format!($($arg)*)))
    };
}
pub(crate) use refuse;

/// An error's message followed by those of its sources that it does not already end with.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        source = e.source();
    }
    text
}
