//! `ward eval`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ward_core::random::RunSeed;
use ward_core::Tensor;
use ward_train::data::batch::{LastBatch, Loader, LoaderConfig};
use ward_train::data::DataLimits;
use ward_train::metrics::{Metric, MetricSpec};
use ward_train::spec::{DataSource, TrainSpec, MAX_BATCH_SIZE};
use ward_train::trainer::{check_labels, Metrics};

use super::parse_threads;

/// Largest data description read.
const MAX_DATA_TOML_BYTES: u64 = 1 << 20;

/// Measure a package's accuracy, cross-entropy and other metrics on labelled data.
///
/// The package is opened and verified exactly as `ward predict` and `ward serve` open it,
/// and every batch passes the same input checks: what is measured is what is served.
/// `--data` names a TOML file describing the data as a training spec's `[data.val]` does
/// (`format = "mnist" | "recordio" | "csv" | "npy"` and its files, relative to that
/// file), or a training spec itself, whose validation data is used. The first output
/// must hold class probabilities, one row per example, or scores that `--softmax` turns
/// into probabilities (a Gluon classifier trained with `softmax_cross_entropy` outputs
/// logits).
///
/// Example:
///   ward eval runs/lenet/package --trust keys/release.pub --data train.toml \
///       --metric top_k_accuracy=3
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct EvalArgs {
    /// The package directory.
    package: PathBuf,
    #[command(flatten)]
    trust: super::TrustArgs,
    /// The labelled data: a data source, or a training spec (its [data.val]).
    #[arg(long, value_name = "FILE.toml")]
    data: PathBuf,
    /// Examples per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Threads for matrix products (1 to 4 per core).
    #[arg(long, default_value_t = 1, value_parser = parse_threads)]
    threads: usize,
    /// Also measure one of MXNet's metrics: accuracy, top_k_accuracy=K, cross_entropy,
    /// nll_loss, perplexity, mse, mae, rmse (repeatable).
    #[arg(long = "metric", value_name = "NAME[=K]", value_parser = parse_metric)]
    metrics: Vec<MetricSpec>,
    /// The first output holds scores (logits): take each row's softmax before
    /// measuring.
    #[arg(long)]
    softmax: bool,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `NAME` or `top_k_accuracy=K`, as MXNet's registry names them.
fn parse_metric(text: &str) -> std::result::Result<MetricSpec, String> {
    let (name, k) = match text.split_once('=') {
        Some((name, k)) => (name, Some(k)),
        None => (text, None),
    };
    let mut value = serde_json::Map::new();
    value.insert("name".into(), name.into());
    if let Some(k) = k {
        let k: u64 = k
            .parse()
            .map_err(|_| format!("{k:?} is not a whole number"))?;
        value.insert("top_k".into(), k.into());
    }
    let value = serde_json::Value::Object(value);
    let spec: MetricSpec = serde_json::from_value(value).map_err(|e| e.to_string())?;
    spec.validate().map_err(|e| e.to_string())?;
    Ok(spec)
}

pub fn run(args: EvalArgs) -> Result<()> {
    if args.batch_size == 0 || args.batch_size > MAX_BATCH_SIZE {
        bail!("--batch-size must be in 1..={MAX_BATCH_SIZE}");
    }
    let source = read_source(&args.data)?;
    let base = args.data.parent().unwrap_or(Path::new("."));
    let data = source
        .open(base, &DataLimits::default())
        .with_context(|| args.data.display().to_string())?;
    let package = args.trust.open(&args.package, args.threads)?;
    let input = match package.manifest().inputs.as_slice() {
        [input] => input.name.clone(),
        inputs => bail!(
            "ward eval feeds one data input; the package declares {}",
            inputs.len()
        ),
    };
    let loader = Loader::new(
        data.clone(),
        LoaderConfig {
            batch_size: args.batch_size,
            shuffle: false,
            last_batch: LastBatch::Pad,
            threads: 1,
            prefetch: 2,
        },
        // Unshuffled and unaugmented: the stream is never drawn from.
        RunSeed::from_u64(0),
    )?;
    let mut metrics = Metrics::default();
    let mut declared = args
        .metrics
        .iter()
        .map(|&s| Metric::new(s))
        .collect::<Result<Vec<_>, _>>()?;
    for batch in loader.epoch(0)? {
        let batch = batch?;
        // The last batch repeats the first examples to fill it: those rows are not scored.
        let valid = batch.label.len().saturating_sub(batch.pad);
        let labels = batch.label.get(..valid).unwrap_or_default();
        let mut probs = predict(&package, &input, batch.data, &batch.data_shape, labels)?;
        if args.softmax {
            let classes = probs.len() / labels.len().max(1);
            ward_train::loss::softmax_rows(&mut probs, classes);
        }
        metrics.add(Metrics::of_probabilities(&probs, labels));
        let classes = probs.len() / valid.max(1);
        for metric in &mut declared {
            metric.update(&probs, &[valid, classes], labels, &[valid])?;
        }
    }
    if args.json {
        let mut line = serde_json::Map::new();
        line.insert("examples".into(), metrics.examples.into());
        line.insert("accuracy".into(), metrics.accuracy().into());
        line.insert("cross_entropy".into(), metrics.loss().into());
        for metric in &declared {
            line.insert(metric.spec().key(), metric.get().into());
        }
        println!("{}", serde_json::Value::Object(line));
    } else {
        let mut text = format!(
            "{} examples: accuracy {:.4} ({} correct), cross-entropy {:.4}",
            metrics.examples,
            metrics.accuracy().unwrap_or(0.0),
            metrics.correct,
            metrics.loss()
        );
        for metric in &declared {
            text += &format!(", {} {:.4}", metric.spec().mxnet_name(), metric.get());
        }
        println!("{text}");
    }
    Ok(())
}

/// A data source, or a training spec's validation data.
fn read_source(path: &Path) -> Result<DataSource> {
    let text = ward_core::files::read_small_text(path, MAX_DATA_TOML_BYTES)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let value: toml::Table = toml::from_str(&text).with_context(|| path.display().to_string())?;
    if value.contains_key("data") {
        let spec: TrainSpec = toml::from_str(&text).with_context(|| path.display().to_string())?;
        return spec.data.val.with_context(|| {
            format!(
                "{}: the training spec has no [data.val] to evaluate on",
                path.display()
            )
        });
    }
    toml::from_str(&text).with_context(|| path.display().to_string())
}

/// Runs one batch through the package: its first output's class probabilities for the
/// rows that `labels` label, the labels checked against the classes.
fn predict(
    package: &ward_exec::LoadedPackage,
    input: &str,
    data: Vec<f32>,
    shape: &[usize],
    labels: &[f32],
) -> Result<Vec<f32>> {
    let tensor = Tensor::from_f32(shape.to_vec(), &data)?;
    let outputs = package.predict(vec![(input.to_owned(), tensor)])?;
    let Some((name, probs)) = outputs.first() else {
        bail!("the package has no output");
    };
    let rows = shape.first().copied().unwrap_or(0);
    let probs = probs.to_f32_vec();
    let classes = probs.len() / rows.max(1);
    if classes == 0 || probs.len() != classes * rows {
        bail!(
            "output {name:?} holds {} values for {rows} examples: not one row of class probabilities each",
            probs.len(),
        );
    }
    check_labels(labels, classes, None)?;
    Ok(probs
        .get(..labels.len() * classes)
        .unwrap_or_default()
        .to_vec())
}
