//! Measuring a model on labelled data, as `ward eval` and `ward.evaluate` do: the data
//! described as a training spec's `[data.val]` (or a spec itself), read in order in
//! batches, each batch run by the caller (a package opened through the verified loader,
//! which this crate does not link), its class probabilities scored.

use std::path::Path;
use std::sync::Arc;

use ward_core::random::RunSeed;

use super::error::refuse;
use super::RunError;
use crate::data::batch::{LastBatch, Loader, LoaderConfig};
use crate::data::{DataLimits, Dataset};
use crate::metrics::{Metric, MetricSpec};
use crate::spec::{DataSource, TrainSpec, MAX_BATCH_SIZE};
use crate::trainer::{check_labels, Metrics};

/// Largest data description read.
const MAX_DATA_TOML_BYTES: u64 = 1 << 20;

/// How to measure.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Examples per batch (1 to [`MAX_BATCH_SIZE`]).
    pub batch_size: usize,
    /// MXNet's metrics to measure besides accuracy and cross-entropy.
    pub metrics: Vec<MetricSpec>,
    /// The first output holds scores (logits): take each row's softmax first.
    pub softmax: bool,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Accuracy and cross-entropy over every example.
    pub metrics: Metrics,
    /// Each declared metric: its key (`top_k_accuracy_3`), MXNet's name, its value.
    pub declared: Vec<(String, String, f64)>,
}

/// Runs one batch (`f32` examples and their shape) and returns its first output.
pub type Predict<'a> = dyn FnMut(Vec<f32>, &[usize]) -> Result<Vec<f32>, RunError> + 'a;

/// A data source (`format = ...` and its files), or a training spec's validation data.
pub fn read_data_source(path: &Path) -> Result<DataSource, RunError> {
    let text = ward_core::files::read_small_text(path, MAX_DATA_TOML_BYTES)
        .map_err(|e| RunError::failed(format!("cannot read {}", path.display()), &e))?;
    let parse = |e: toml::de::Error| RunError::failed(path.display().to_string(), &e);
    let value: toml::Table = toml::from_str(&text).map_err(parse)?;
    if value.contains_key("data") {
        let spec: TrainSpec = toml::from_str(&text).map_err(parse)?;
        return match spec.data.val {
            Some(val) => Ok(val),
            None => refuse!(
                "{}: the training spec has no [data.val] to evaluate on",
                path.display()
            ),
        };
    }
    toml::from_str(&text).map_err(parse)
}

/// Opens the data `path` describes (its files relative to it).
pub fn open_data(path: &Path) -> Result<Arc<dyn Dataset>, RunError> {
    let source = read_data_source(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    source
        .open(base, &DataLimits::default())
        .map_err(|e| RunError::failed(path.display().to_string(), &e))
}

/// Measures `predict` on `data`: `predict(values, shape)` runs one batch of `f32`
/// examples and returns its first output, one row of class probabilities (or scores) per
/// example.
pub fn evaluate(
    data: Arc<dyn Dataset>,
    options: &EvalOptions,
    predict: &mut Predict<'_>,
) -> Result<Evaluation, RunError> {
    if options.batch_size == 0 || options.batch_size > MAX_BATCH_SIZE {
        refuse!("--batch-size must be in 1..={MAX_BATCH_SIZE}");
    }
    let loader = Loader::new(
        data,
        LoaderConfig {
            batch_size: options.batch_size,
            shuffle: false,
            last_batch: LastBatch::Pad,
            threads: 1,
            prefetch: 2,
        },
        // Unshuffled and unaugmented: the stream is never drawn from.
        RunSeed::from_u64(0),
    )?;
    let mut metrics = Metrics::default();
    let mut declared = options
        .metrics
        .iter()
        .map(|&s| Metric::new(s))
        .collect::<Result<Vec<_>, _>>()?;
    for batch in loader.epoch(0)? {
        let batch = batch?;
        // The last batch repeats the first examples to fill it: those rows are not scored.
        let valid = batch.label.len().saturating_sub(batch.pad);
        let labels = batch.label.get(..valid).unwrap_or_default();
        let rows = batch.data_shape.first().copied().unwrap_or(0);
        let output = predict(batch.data, &batch.data_shape)?;
        let classes = output.len() / rows.max(1);
        if classes == 0 || output.len() != classes * rows {
            refuse!(
                "the first output holds {} values for {rows} examples: not one row of class probabilities each",
                output.len(),
            );
        }
        check_labels(labels, classes, None)?;
        let mut probs = output
            .get(..labels.len() * classes)
            .unwrap_or_default()
            .to_vec();
        if options.softmax {
            crate::loss::softmax_rows(&mut probs, classes);
        }
        metrics.add(Metrics::of_probabilities(&probs, labels));
        for metric in &mut declared {
            metric.update(&probs, &[valid, classes], labels, &[valid])?;
        }
    }
    Ok(Evaluation {
        metrics,
        declared: declared
            .iter()
            .map(|m| (m.spec().key(), m.spec().mxnet_name(), m.get()))
            .collect(),
    })
}
