//! `ward export onnx`

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::parse_dims;

#[derive(Subcommand)]
pub enum ExportCommand {
    /// Write the package as a standard ONNX model (opset 17).
    ///
    /// ONNX models are written for concrete shapes: variable dims become 1 unless
    /// `--shape` gives them.
    ///
    /// Example:
    ///   ward export onnx resnet18.ward --out resnet18.onnx --shape data:8,3,224,224
    #[command(verbatim_doc_comment)]
    Onnx(OnnxArgs),
}

#[derive(Args)]
pub struct OnnxArgs {
    /// The package directory.
    package: PathBuf,
    #[command(flatten)]
    trust: super::TrustArgs,
    /// The ONNX file to write.
    #[arg(long, value_name = "FILE.onnx")]
    out: PathBuf,
    /// Concrete shape for an input: NAME:DIMS.
    #[arg(long = "shape", value_name = "NAME:DIMS")]
    shapes: Vec<String>,
}

pub fn run(command: ExportCommand) -> Result<()> {
    let ExportCommand::Onnx(args) = command;
    let package = args.trust.open(&args.package, 1)?;
    let mut shapes = Vec::new();
    for spec in &package.manifest().inputs {
        let given = args
            .shapes
            .iter()
            .filter_map(|s| s.rsplit_once(':'))
            .find(|(name, _)| *name == spec.name);
        let shape: Vec<usize> = match given {
            Some((_, dims)) => {
                let dims = parse_dims(dims, false)?;
                if dims.len() != spec.shape.len()
                    || dims.iter().zip(&spec.shape).any(|(d, s)| *s >= 0 && d != s)
                {
                    bail!(
                        "--shape {}:{dims:?} does not fit the declared shape {:?}",
                        spec.name,
                        spec.shape
                    );
                }
                dims.iter().map(|&d| d as usize).collect()
            }
            None => spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect(),
        };
        shapes.push(shape);
    }
    for s in &args.shapes {
        let name = s.rsplit_once(':').map(|(n, _)| n).unwrap_or(s);
        if !package.manifest().inputs.iter().any(|i| i.name == name) {
            bail!("--shape {s:?} names no input of the model");
        }
    }
    let weights = package.executable().weights();
    let proto = ward_exec::onnx::lower(package.graph(), weights.tensors(), &shapes)?;
    let bytes = ward_exec::onnx::encode(&proto);
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} bytes, opset {})",
        args.out.display(),
        bytes.len(),
        ward_exec::onnx::OPSET
    );
    Ok(())
}
