//! `ward predict`

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ward_core::{npy, Tensor};

use ward_graph::schema::InputLimits;

use super::{parse_threads, read_file, safe_file_stem};

/// Run a package on inputs from .npy files; writes one OUTDIR/<output>.npy per output.
///
/// Example:
///   ward predict resnet18.ward --input data=image.npy --out predictions/
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct PredictArgs {
    /// The package directory.
    package: PathBuf,
    #[command(flatten)]
    trust: super::TrustArgs,
    /// An input: NAME=FILE.npy.
    #[arg(long = "input", value_name = "NAME=FILE.npy", required = true)]
    inputs: Vec<String>,
    /// Directory for the outputs (created if missing).
    #[arg(long, value_name = "OUTDIR")]
    out: PathBuf,
    /// Threads for matrix products (1 to 4 per core).
    #[arg(long, default_value_t = 1, value_parser = parse_threads)]
    threads: usize,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let package = args.trust.open(&args.package, args.threads)?;
    let limits = InputLimits::default();
    let mut inputs = Vec::new();
    for text in &args.inputs {
        let Some((name, file)) = text.split_once('=') else {
            bail!("--input {text:?} must have the form NAME=FILE.npy");
        };
        let Some(spec) = package.manifest().inputs.iter().find(|i| i.name == name) else {
            let names: Vec<&str> = package
                .manifest()
                .inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect();
            bail!("--input {name:?}: the model has no such input (its inputs: {names:?})");
        };
        // No input file may be larger than the schema allows: the .npy header and the
        // declared elements (the element limit where a dim is variable) at the widest
        // dtype, so a wrong dtype is still reported by the schema check.
        let elements = spec.max_elements(&limits);
        let limit = npy::MAX_PREAMBLE_BYTES + elements.saturating_mul(8);
        let path = PathBuf::from(file);
        let tensor =
            npy::read_npy(&read_file(&path, limit)?).with_context(|| path.display().to_string())?;
        inputs.push((name.to_string(), tensor));
    }
    // One run: the plan takes the weights, each dropped once the engine holds its own
    // form of it, so the weights are held about once while it is built.
    let (outputs, plan) = package.predict_once(inputs)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (name, tensor) in &outputs {
        if !safe_file_stem(name) {
            bail!("output name {name:?} cannot be used as a file name");
        }
        let path = args.out.join(format!("{name}.npy"));
        std::fs::write(&path, npy::write_npy(tensor))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{name}: shape {:?} -> {}", tensor.shape(), path.display());
        print_summary(tensor);
    }
    // The process ends here: the OS takes the plan's and the weights' memory back at once,
    // where dropping them frees each tensor and packed kernel in turn (some 4 % of a
    // small model's whole run). Nothing in a plan needs its destructor to run.
    std::mem::forget(plan);
    Ok(())
}

/// For (N, C) outputs, each row's best class; otherwise the first values.
fn print_summary(t: &Tensor) {
    let values = t.to_f32_vec();
    if let [rows, cols] = t.shape() {
        if *cols > 1 {
            for (r, row) in values.chunks(*cols).take(8).enumerate() {
                let (best, score) =
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
                        );
                println!("  row {r}: class {best} (score {score:.6})");
            }
            if *rows > 8 {
                println!("  ... {} more rows", rows - 8);
            }
            return;
        }
    }
    let head: Vec<String> = values.iter().take(8).map(|v| format!("{v:.6}")).collect();
    println!(
        "  [{}{}]",
        head.join(", "),
        if values.len() > 8 { ", ..." } else { "" }
    );
}
