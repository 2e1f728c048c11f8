//! `ward export onnx`, `ward export mxnet`

use std::path::{Path, PathBuf};

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
    /// Write the package as MXNet 1.9.1 files: PREFIX-symbol.json and PREFIX-0000.params.
    ///
    /// MXNet loads them with mx.gluon.nn.SymbolBlock.imports(PREFIX-symbol.json,
    /// [INPUTS], PREFIX-0000.params) or mx.mod.Module.load(PREFIX, 0), and predicts what
    /// `ward predict` predicts. Parameters are saved with MXNet's arg:/aux: keys. An
    /// operator or attribute MXNet cannot express is refused, naming the node; existing
    /// files are never overwritten.
    ///
    /// Example:
    ///   ward export mxnet lenet.ward --trust signer.pub --out exported/lenet
    #[command(verbatim_doc_comment)]
    Mxnet(MxnetArgs),
}

#[derive(Args)]
pub struct MxnetArgs {
    /// The package directory.
    package: PathBuf,
    #[command(flatten)]
    trust: super::TrustArgs,
    /// The prefix of the files to write: PREFIX-symbol.json and PREFIX-0000.params (its
    /// directory is created if missing).
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
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
    match command {
        ExportCommand::Onnx(args) => onnx(args),
        ExportCommand::Mxnet(args) => mxnet(args),
    }
}

fn onnx(args: OnnxArgs) -> Result<()> {
    let mut shapes = Vec::new();
    for s in &args.shapes {
        let Some((name, dims)) = s.rsplit_once(':') else {
            bail!("--shape {s:?} must have the form NAME:DIMS");
        };
        let dims: Vec<usize> = parse_dims(dims, false)?
            .into_iter()
            .map(|d| usize::try_from(d).unwrap_or(0))
            .collect();
        shapes.push((name.to_string(), dims));
    }
    let package = args.trust.open(&args.package, 1)?;
    let bytes = package.export_onnx(&shapes)?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} bytes, opset {})",
        args.out.display(),
        bytes.len(),
        ward_exec::onnx::OPSET
    );
    Ok(())
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn mxnet(args: MxnetArgs) -> Result<()> {
    if args.out.as_os_str().is_empty() || args.out.file_name().is_none() {
        bail!("--out {:?} must end in a file name prefix", args.out);
    }
    let symbol_path = with_suffix(&args.out, "-symbol.json");
    let params_path = with_suffix(&args.out, "-0000.params");
    // Checked before the package is opened, so that a name in the way costs nothing; the
    // writer checks again as it links each file.
    for path in [&symbol_path, &params_path] {
        if std::fs::symlink_metadata(path).is_ok() {
            bail!(
                "{} exists; ward export never overwrites a file",
                path.display()
            );
        }
    }
    let package = args.trust.open(&args.package, 1)?;
    let declared: Vec<ward_mxnet::import::DeclaredInput> = package
        .manifest()
        .inputs
        .iter()
        .map(|i| ward_mxnet::import::DeclaredInput {
            name: i.name.clone(),
            dtype: i.dtype,
            shape: i.shape.clone(),
        })
        .collect();
    let weights = package.executable().weights();
    let exported = ward_mxnet::export::export(package.graph(), weights.tensors(), &declared)
        .with_context(|| {
            format!(
                "package {} cannot be written as MXNet files",
                args.package.display()
            )
        })?;
    if let Some(dir) = symbol_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    ward_core::files::write_new_file(&symbol_path, &exported.symbol_json, 0o666)
        .with_context(|| format!("writing {}", symbol_path.display()))?;
    if let Err(e) = ward_core::files::write_new_file(&params_path, &exported.params, 0o666) {
        // One file without the other is no model: take back the one this command wrote.
        let _ = std::fs::remove_file(&symbol_path);
        return Err(e).with_context(|| format!("writing {}", params_path.display()));
    }
    println!(
        "wrote {} ({} bytes) and {} ({} bytes)",
        symbol_path.display(),
        exported.symbol_json.len(),
        params_path.display(),
        exported.params.len()
    );
    let inputs: Vec<&str> = package
        .graph()
        .inputs
        .iter()
        .filter(|i| i.role == ward_graph::ir::InputRole::Data)
        .map(|i| i.name.as_str())
        .collect();
    println!("inputs: {}", inputs.join(", "));
    for o in &exported.outputs {
        if o.declared == o.mxnet {
            println!("output: {}", o.mxnet);
        } else {
            println!("output: {} (MXNet lists it as {})", o.declared, o.mxnet);
        }
    }
    if !exported.dropped_nodes.is_empty() || !exported.unused_params.is_empty() {
        eprintln!(
            "note: not written, as no output depends on them: nodes {:?}, parameters {:?}",
            exported.dropped_nodes, exported.unused_params
        );
    }
    Ok(())
}
