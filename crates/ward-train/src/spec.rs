//! The training spec (`train.toml`): what to train, on what data, with which declared
//! optimizer, for how long. Unknown keys are refused and every value is range-checked
//! ([`TrainSpec::validate`]); paths are relative to the spec's own directory.
//!
//! ```toml
//! [model]                       # an MXNet Module checkpoint ending in SoftmaxOutput
//! symbol = "lenet-symbol.json"
//! params = "lenet-0000.params"
//!
//! [data]                        # MNIST IDX files (gzip or not)
//! format = "mnist"
//! train_images = "train-images-idx3-ubyte.gz"
//! train_labels = "train-labels-idx1-ubyte.gz"
//! val_images = "t10k-images-idx3-ubyte.gz"
//! val_labels = "t10k-labels-idx1-ubyte.gz"
//! batch_size = 64
//!
//! [optimizer]                   # any of `OptimizerSpec`'s names and keyword arguments
//! name = "sgd"
//! learning_rate = 0.1
//! momentum = 0.9
//! wd = 0.0001
//!
//! [run]
//! epochs = 3
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::optim::{OptimError, OptimizerSpec};
use crate::schedule::ScheduleSpec;
use crate::trainer::Multipliers;

/// Most epochs a spec may ask for.
pub const MAX_EPOCHS: u64 = 100_000;
/// Largest batch.
pub const MAX_BATCH_SIZE: usize = 65_536;
/// Most compute and data threads.
pub const MAX_THREADS: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub model: ModelSpec,
    pub data: DataSpec,
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    pub run: RunSpec,
}

/// An MXNet Module checkpoint (`prefix-symbol.json`, `prefix-EPOCH.params`, `arg:`/`aux:`
/// keys) or Gluon export ending in SoftmaxOutput with its label variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub symbol: PathBuf,
    pub params: PathBuf,
    /// The name of the package written (default: the symbol file's stem).
    #[serde(default)]
    pub name: Option<String>,
    /// The name of the data input (default `data`).
    #[serde(default = "default_data_name")]
    pub data_input: String,
}

fn default_data_name() -> String {
    "data".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// MNIST IDX image and label files (`MNISTIter`).
    Mnist,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub format: DataFormat,
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    #[serde(default)]
    pub val_images: Option<PathBuf>,
    #[serde(default)]
    pub val_labels: Option<PathBuf>,
    pub batch_size: usize,
    /// A new order each epoch, from the run's stream (default true).
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Threads decoding batches ahead of training (default 1; 0: on the training thread).
    #[serde(default = "one")]
    pub threads: usize,
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub epochs: u64,
    /// The run's seed (a decimal number or 64 hexadecimal digits); default: from the
    /// operating system, printed and recorded.
    #[serde(default)]
    pub seed: Option<String>,
    /// Compute threads (default: the machine's cores).
    #[serde(default)]
    pub threads: Option<usize>,
    /// How per-parameter multipliers are read (default `module`, as a Module checkpoint
    /// was trained).
    #[serde(default = "module")]
    pub multipliers: Multipliers,
    /// Write a metrics line every this many steps (default 50), besides each epoch's.
    #[serde(default = "fifty")]
    pub log_every: u64,
}

fn module() -> Multipliers {
    Multipliers::Module
}

fn fifty() -> u64 {
    50
}

/// A value of the spec is out of range.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{field} = {value}: must be {allowed}")]
    OutOfRange {
        field: &'static str,
        value: String,
        allowed: String,
    },
    #[error("data: val_images and val_labels must be given together")]
    ValidationPair,
    #[error(transparent)]
    Optimizer(#[from] OptimError),
}

impl TrainSpec {
    /// Checks every value's range (the optimizer's through its own checks).
    pub fn validate(&self) -> Result<(), SpecError> {
        let range = |field: &'static str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(SpecError::OutOfRange {
                    field,
                    value: value.to_string(),
                    allowed: format!("in {min}..={max}"),
                })
            }
        };
        range("run.epochs", self.run.epochs, 1, MAX_EPOCHS)?;
        range("run.log_every", self.run.log_every, 1, u64::MAX)?;
        range(
            "data.batch_size",
            self.data.batch_size as u64,
            1,
            MAX_BATCH_SIZE as u64,
        )?;
        range(
            "data.threads",
            self.data.threads as u64,
            0,
            MAX_THREADS as u64,
        )?;
        if let Some(t) = self.run.threads {
            range("run.threads", t as u64, 1, MAX_THREADS as u64)?;
        }
        if self.data.val_images.is_some() != self.data.val_labels.is_some() {
            return Err(SpecError::ValidationPair);
        }
        self.optimizer.validate()?;
        Ok(())
    }
}
