//! `ward eval`

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use ward_core::Tensor;
use ward_train::metrics::MetricSpec;
use ward_train::run::evaluate::{evaluate, open_data, EvalOptions};
use ward_train::run::RunError;

use super::parse_threads;
use super::train::into_anyhow;

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
    MetricSpec::parse(text).map_err(|e| e.to_string())
}

pub fn run(args: EvalArgs) -> Result<()> {
    let data = open_data(&args.data).map_err(into_anyhow)?;
    let package = args.trust.open(&args.package, args.threads)?;
    let input = match package.manifest().inputs.as_slice() {
        [input] => input.name.clone(),
        inputs => bail!(
            "ward eval feeds one data input; the package declares {}",
            inputs.len()
        ),
    };
    let options = EvalOptions {
        batch_size: args.batch_size,
        metrics: args.metrics.clone(),
        softmax: args.softmax,
    };
    let mut predict =
        |values: Vec<f32>, shape: &[usize]| first_output(&package, &input, values, shape);
    let measured = evaluate(data, &options, &mut predict).map_err(into_anyhow)?;
    let metrics = measured.metrics;
    if args.json {
        let mut line = serde_json::Map::new();
        line.insert("examples".into(), metrics.examples.into());
        line.insert("accuracy".into(), metrics.accuracy().into());
        line.insert("cross_entropy".into(), metrics.loss().into());
        for (key, _, value) in &measured.declared {
            line.insert(key.clone(), (*value).into());
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
        for (_, name, value) in &measured.declared {
            text += &format!(", {name} {value:.4}");
        }
        println!("{text}");
    }
    Ok(())
}

/// Runs one batch through the package: its first output's values.
pub(crate) fn first_output(
    package: &ward_exec::LoadedPackage,
    input: &str,
    values: Vec<f32>,
    shape: &[usize],
) -> Result<Vec<f32>, RunError> {
    let tensor =
        Tensor::from_f32(shape.to_vec(), &values).map_err(|e| RunError::failed("a batch", &e))?;
    let outputs = package
        .predict(vec![(input.to_owned(), tensor)])
        .map_err(|e| match e {
            ward_exec::ExecError::Package(p) => RunError::Package(p),
            other => RunError::failed("predict", &other),
        })?;
    match outputs.into_iter().next() {
        Some((_, output)) => Ok(output.to_f32_vec()),
        None => Err(RunError::Refused("the package has no output".into())),
    }
}
