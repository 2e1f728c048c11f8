//! The training spec (`train.toml`): what to train, on what data, with which declared
//! optimizer, for how long. Unknown keys are refused and every value is range-checked
//! ([`TrainSpec::validate`]); paths are relative to the spec's own directory.
//!
//! ```toml
//! [model]                       # an MXNet Module checkpoint ending in SoftmaxOutput
//! symbol = "lenet-symbol.json"
//! params = "lenet-0000.params"
//! states = "lenet-0000.states"  # optional: MXNet's optimizer state to continue from
//!
//! [data]
//! batch_size = 64
//!
//! [data.train]                  # MNIST IDX files (gzip or not); or recordio, csv, npy
//! format = "mnist"
//! images = "train-images-idx3-ubyte.gz"
//! labels = "train-labels-idx1-ubyte.gz"
//!
//! [data.val]                    # held out, evaluated after each epoch
//! format = "recordio"
//! rec = "t10k.rec"
//! idx = "t10k.idx"
//! data_shape = [1, 28, 28]
//! scale = 0.00392156862745098   # 1/255
//!
//! [init]                        # for weights the params file lacks (optional)
//! name = "xavier"
//! rnd_type = "gaussian"
//! factor_type = "in"
//! magnitude = 2.0
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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ward_mxnet::limits::RecordIoLimits;

use crate::data::csv::CsvDataset;
use crate::data::idx::{MnistDataset, MnistOptions};
use crate::data::image::ImageParams;
use crate::data::npy::NpyDataset;
use crate::data::recordio::ImageRecordDataset;
use crate::data::{DataError, DataLimits, Dataset};

use crate::init::{InitError, InitSpec};
use crate::loss::{LossError, LossSpec};
use crate::metrics::{MetricError, MetricSpec};
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
    /// How parameters the model's `.params` lacks are initialised (all of them when it
    /// names none): one of MXNet's initializers, drawn from the run's stream.
    #[serde(default)]
    pub init: Option<InitSpec>,
    /// For a graph without a loss head (a Gluon export): the Gluon loss applied to its
    /// first output, e.g. `[loss] name = "softmax_cross_entropy"`. Without it the graph
    /// must end in SoftmaxOutput, fed by its label variable.
    #[serde(default)]
    pub loss: Option<LossSpec>,
    pub run: RunSpec,
}

/// What trains: MXNet files or a ward package.
///
/// - `symbol` (+ `params`): an MXNet Module checkpoint (`prefix-symbol.json`,
///   `prefix-EPOCH.params`, `arg:`/`aux:` keys) or Gluon export: ending in SoftmaxOutput
///   with its label variable, or without a head, trained with the spec's `[loss]`.
///   Without `params`, or for weights the file lacks (a new layer to fine-tune), the
///   spec's `[init]` initialises them, with the shapes MXNet's shape inference gives.
/// - `package`: a ward package (one `ward import` or `ward train` wrote) to fine-tune,
///   opened by the verified loader: its signatures are checked against `ward train
///   --trust` before its graph and weights are parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    #[serde(default)]
    pub symbol: Option<PathBuf>,
    #[serde(default)]
    pub params: Option<PathBuf>,
    #[serde(default)]
    pub package: Option<PathBuf>,
    /// MXNet optimizer states to continue from: a Module checkpoint's `.states` or a
    /// Gluon `Trainer.save_states` file (read without running its pickle), with MXNet
    /// files only.
    #[serde(default)]
    pub states: Option<PathBuf>,
    /// The name of the package written (default: the symbol file's stem, or the source
    /// package's name).
    #[serde(default)]
    pub name: Option<String>,
    /// The name of the data input (default `data`; a package's is its own).
    #[serde(default)]
    pub data_input: Option<String>,
}

/// Where a model's graph and weights come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource<'a> {
    Mxnet {
        symbol: &'a Path,
        params: Option<&'a Path>,
    },
    Package(&'a Path),
}

impl ModelSpec {
    /// The one source the spec names.
    pub fn source(&self) -> Result<ModelSource<'_>, SpecError> {
        let invalid = |reason: &'static str| Err(SpecError::Model(reason));
        match (&self.symbol, &self.package) {
            (Some(symbol), None) => Ok(ModelSource::Mxnet {
                symbol,
                params: self.params.as_deref(),
            }),
            (None, Some(_)) if self.params.is_some() => {
                invalid("params: a package holds its own weights")
            }
            (None, Some(_)) if self.states.is_some() => {
                invalid("states: MXNet optimizer states continue MXNet files (symbol, params)")
            }
            (None, Some(package)) => Ok(ModelSource::Package(package)),
            (Some(_), Some(_)) => {
                invalid("give symbol (MXNet files) or package (a ward package), not both")
            }
            (None, None) => {
                invalid("give symbol (MXNet files, with params) or package (a ward package)")
            }
        }
    }

    /// The data input's name as the spec gives it (`data` by default).
    pub fn data_input(&self) -> &str {
        self.data_input.as_deref().unwrap_or(DEFAULT_DATA_INPUT)
    }
}

/// The data input's name when the spec names none.
pub const DEFAULT_DATA_INPUT: &str = "data";

/// The training data (and, optionally, held-out data), batched alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub train: DataSource,
    /// Evaluated after each epoch, in file order.
    #[serde(default)]
    pub val: Option<DataSource>,
    pub batch_size: usize,
    /// A new order each epoch, from the run's stream (default true).
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Threads decoding batches ahead of training (default 1; 0: on the training thread).
    #[serde(default = "one")]
    pub threads: usize,
}

/// One set of examples with class labels, in one of the formats MXNet's iterators read.
/// Paths are relative to the spec's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSource {
    /// MNIST IDX image and label files, gzip or not (`MNISTIter`): pixels scaled to
    /// `[0, 1]`, each example `[1, rows, cols]`.
    Mnist { images: PathBuf, labels: PathBuf },
    /// Image records (`ImageRecordIter`): a `.rec`, its `.idx` (optional; without one the
    /// file is scanned in order), and the iterator's image parameters.
    Recordio {
        rec: PathBuf,
        #[serde(default)]
        idx: Option<PathBuf>,
        /// `[channels, height, width]` (channels 1 or 3).
        data_shape: [usize; 3],
        /// Resize the shorter side to this first.
        #[serde(default)]
        resize: Option<usize>,
        #[serde(default)]
        rand_crop: bool,
        #[serde(default)]
        rand_mirror: bool,
        /// Per channel (`mean_r`, `mean_g`, `mean_b`; only the first for gray).
        #[serde(default)]
        mean: [f32; 3],
        #[serde(default = "unit3")]
        std: [f32; 3],
        /// Multiplies each value after the mean and std (`scale`; 1/255 for `[0, 1]`).
        #[serde(default = "unit")]
        scale: f32,
    },
    /// Comma-separated values (`CSVIter`): one example per row of `data`, one label per
    /// row of `labels`.
    Csv {
        data: PathBuf,
        data_shape: Vec<usize>,
        labels: PathBuf,
    },
    /// `.npy` arrays: examples along the first axis of `data`, one label each in `labels`.
    Npy { data: PathBuf, labels: PathBuf },
}

fn unit() -> f32 {
    1.0
}

fn unit3() -> [f32; 3] {
    [1.0; 3]
}

impl DataSource {
    /// Opens the files (relative paths against `base`), checking every limit.
    pub fn open(&self, base: &Path, limits: &DataLimits) -> Result<Arc<dyn Dataset>, DataError> {
        let at = |p: &Path| base.join(p);
        Ok(match self {
            DataSource::Mnist { images, labels } => Arc::new(MnistDataset::open(
                &at(images),
                &at(labels),
                &MnistOptions::default(),
                limits,
            )?),
            DataSource::Recordio {
                rec,
                idx,
                data_shape,
                resize,
                rand_crop,
                rand_mirror,
                mean,
                std,
                scale,
            } => {
                let params = ImageParams {
                    data_shape: *data_shape,
                    resize: *resize,
                    rand_crop: *rand_crop,
                    rand_mirror: *rand_mirror,
                    mirror: false,
                    mean: *mean,
                    std: *std,
                    scale: *scale,
                    label_width: 1,
                };
                let idx = idx.as_deref().map(at);
                Arc::new(ImageRecordDataset::open(
                    &at(rec),
                    idx.as_deref(),
                    params,
                    limits,
                    &RecordIoLimits::default(),
                )?)
            }
            DataSource::Csv {
                data,
                data_shape,
                labels,
            } => Arc::new(CsvDataset::open(
                &at(data),
                data_shape,
                Some(&at(labels)),
                &[1],
                limits,
            )?),
            DataSource::Npy { data, labels } => {
                Arc::new(NpyDataset::open(&at(data), Some(&at(labels)), limits)?)
            }
        })
    }
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
    /// Measured on the validation data after each epoch, besides the loss and accuracy:
    /// MXNet's metrics, e.g. `[{ name = "top_k_accuracy", top_k = 5 }]`.
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
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
    #[error(transparent)]
    Optimizer(#[from] OptimError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("run.metrics: {0}")]
    Metric(#[from] MetricError),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error("model: no params file and no [init]: say how the weights start (e.g. [init] name = \"xavier\")")]
    NoWeights,
    #[error("model: {0}")]
    Model(&'static str),
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
        self.optimizer.validate()?;
        if let Some(init) = &self.init {
            init.validate()?;
        }
        for metric in &self.run.metrics {
            metric.validate()?;
        }
        if let Some(loss) = &self.loss {
            loss.validate()?;
        }
        match self.model.source()? {
            ModelSource::Mxnet { params: None, .. } if self.init.is_none() => {
                return Err(SpecError::NoWeights)
            }
            ModelSource::Package(_) if self.init.is_some() => {
                return Err(SpecError::Model(
                    "[init]: a package holds all its weights; there is nothing to initialise",
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
[model]
symbol = "m-symbol.json"

[init]
name = "xavier"

[data]
batch_size = 8
train = { format = "recordio", rec = "t.rec", data_shape = [3, 32, 32] }
val = { format = "csv", data = "v.csv", data_shape = [4], labels = "l.csv" }

[optimizer]
name = "sgd"
learning_rate = 0.1

[run]
epochs = 2
metrics = [{ name = "top_k_accuracy", top_k = 3 }, { name = "perplexity" }]
"#;

    #[test]
    fn sources_take_mxnets_defaults() {
        let spec: TrainSpec = toml::from_str(SPEC).unwrap();
        spec.validate().unwrap();
        assert_eq!(
            spec.data.train,
            DataSource::Recordio {
                rec: "t.rec".into(),
                idx: None,
                data_shape: [3, 32, 32],
                resize: None,
                rand_crop: false,
                rand_mirror: false,
                mean: [0.0; 3],
                std: [1.0; 3],
                scale: 1.0,
            }
        );
        assert!(matches!(spec.data.val, Some(DataSource::Csv { .. })));
        assert!(spec.data.shuffle);
        assert_eq!(spec.run.metrics.len(), 2);
        assert_eq!(spec.model.params, None);
    }

    #[test]
    fn unknown_keys_and_formats_are_refused_by_name() {
        for (from, to, needle) in [
            ("rec = \"t.rec\"", "rec = \"t.rec\", recc = 1", "recc"),
            ("format = \"csv\"", "format = \"hdf5\"", "hdf5"),
            ("epochs = 2", "epochs = 2\nepoch = 3", "epoch"),
            ("top_k = 3", "top_k = 3, topk = 2", "topk"),
            (
                "[init]\nname = \"xavier\"",
                "[init]\nname = \"xavier\"\nmagnitud = 2",
                "magnitud",
            ),
        ] {
            let text = SPEC.replace(from, to);
            assert_ne!(text, SPEC, "{from}");
            let err = toml::from_str::<TrainSpec>(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{to}: {err}");
        }
    }

    #[test]
    fn weights_must_come_from_somewhere() {
        let text = SPEC.replace("[init]\nname = \"xavier\"\n", "");
        let spec: TrainSpec = toml::from_str(&text).unwrap();
        assert!(matches!(spec.validate(), Err(SpecError::NoWeights)));
        let text = SPEC.replace(
            "[init]\nname = \"xavier\"",
            "[init]\nname = \"uniform\"\nscale = -1.0",
        );
        let spec: TrainSpec = toml::from_str(&text).unwrap();
        assert!(matches!(spec.validate(), Err(SpecError::Init(_))));
    }

    #[test]
    fn the_model_is_mxnet_files_or_a_package() {
        let spec: TrainSpec = toml::from_str(SPEC).unwrap();
        assert_eq!(
            spec.model.source().unwrap(),
            ModelSource::Mxnet {
                symbol: Path::new("m-symbol.json"),
                params: None
            }
        );
        assert_eq!(spec.model.data_input(), "data");
        let package = SPEC
            .replace("symbol = \"m-symbol.json\"", "package = \"runs/a/package\"")
            .replace("[init]\nname = \"xavier\"\n", "");
        let spec: TrainSpec = toml::from_str(&package).unwrap();
        spec.validate().unwrap();
        assert_eq!(
            spec.model.source().unwrap(),
            ModelSource::Package(Path::new("runs/a/package"))
        );
        for (text, needle) in [
            (
                SPEC.replace(
                    "symbol = \"m-symbol.json\"",
                    "symbol = \"m-symbol.json\"\npackage = \"p\"",
                ),
                "not both",
            ),
            (
                SPEC.replace("symbol = \"m-symbol.json\"", ""),
                "give symbol",
            ),
            (
                package.replace("[data]", "[init]\nname = \"zero\"\n\n[data]"),
                "nothing to initialise",
            ),
            (
                package.replace(
                    "package = \"runs/a/package\"",
                    "package = \"p\"\nparams = \"x.params\"",
                ),
                "holds its own weights",
            ),
        ] {
            let spec: TrainSpec = toml::from_str(&text).unwrap();
            let err = spec.validate().unwrap_err().to_string();
            assert!(err.starts_with("model: ") && err.contains(needle), "{err}");
        }
    }
}
