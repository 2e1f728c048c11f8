//! `ward import mxnet`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ward_core::DType;
use ward_package::from_mxnet::{
    import_sources, read_sources, ImportOptions, PackageImportError, Sources,
};
use ward_package::signature::read_private_key_file;
use ward_package::{write_signed_package, InputSpec, OutputPolicy, TrustPolicy};

use super::parse_dims;

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import an MXNet 1.x export (`*-symbol.json` + `*.params`).
    ///
    /// Example:
    ///   ward import mxnet --symbol resnet18-symbol.json --params resnet18-0000.params \
    ///     --input data:float32:-1,3,224,224 --range data:-3:3 --out resnet18.ward \
    ///     --sign-key keys/release.key
    #[command(verbatim_doc_comment)]
    Mxnet(MxnetArgs),
}

#[derive(Args)]
pub struct MxnetArgs {
    /// The symbol file (`HybridBlock.export` or `Module.save_checkpoint` output).
    #[arg(long, value_name = "S.json")]
    symbol: PathBuf,
    /// The parameters file saved with the symbol.
    #[arg(long, value_name = "P.params")]
    params: PathBuf,
    /// A data input: NAME:DTYPE:DIMS, DIMS comma-separated, -1 for a variable dim.
    #[arg(long = "input", value_name = "NAME:DTYPE:DIMS", required = true)]
    inputs: Vec<String>,
    /// An inclusive value range every element of an input must lie in: NAME:MIN:MAX.
    #[arg(long = "range", value_name = "NAME:MIN:MAX")]
    ranges: Vec<String>,
    /// Accept NaN and infinities in this input (refused by default).
    #[arg(long = "allow-nonfinite", value_name = "NAME")]
    allow_nonfinite: Vec<String>,
    /// The package's model name (default: the symbol file's name without `-symbol.json`).
    #[arg(long)]
    name: Option<String>,
    /// The package's model version.
    #[arg(long = "model-version", default_value = "1")]
    model_version: String,
    /// The package directory to create (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Sign the package with this private key (writes OUT/model.sig with the package).
    #[arg(long, value_name = "KEY")]
    sign_key: Option<PathBuf>,
    /// Import only if the MXNet files are signed (`ward sign` or `model_signing sign` of
    /// their folder) by this trust policy: the symbol and params files must be in one
    /// folder, whose signature is checked before either file is parsed.
    #[arg(long, value_name = "TRUST")]
    trust: Option<PathBuf>,
    /// Output policy (signed into the package; a server can only tighten it): round
    /// returned values to this many decimals.
    #[arg(long, value_name = "DECIMALS")]
    output_precision: Option<u32>,
    /// Output policy: return only the K highest scores of each row (the rest as 0).
    #[arg(long, value_name = "K")]
    output_top_k: Option<u32>,
    /// Output policy: return only each row's class index.
    #[arg(long)]
    output_label_only: bool,
    /// Import weights that hold NaN or infinities (refused by default: a trained model
    /// has none, and one that does computes garbage). Recorded in the package.
    #[arg(long)]
    allow_nonfinite_weights: bool,
}

pub fn run(command: ImportCommand) -> Result<()> {
    match command {
        ImportCommand::Mxnet(args) => mxnet(args),
    }
}

/// Splits `A:B:C` at its last two colons, so names may hold colons.
fn split3(text: &str, what: &str) -> Result<(String, String, String)> {
    let mut parts = text.rsplitn(3, ':');
    let (c, b, a) = (parts.next(), parts.next(), parts.next());
    match (a, b, c) {
        (Some(a), Some(b), Some(c)) if !a.is_empty() => Ok((a.into(), b.into(), c.into())),
        _ => bail!("{what} {text:?} must have the form {}", what_form(what)),
    }
}

fn what_form(what: &str) -> &'static str {
    if what == "--range" {
        "NAME:MIN:MAX"
    } else {
        "NAME:DTYPE:DIMS"
    }
}

fn input_specs(args: &MxnetArgs) -> Result<Vec<InputSpec>> {
    let mut specs = Vec::new();
    for text in &args.inputs {
        let (name, dtype, dims) = split3(text, "--input")?;
        let dtype: DType = dtype.parse().with_context(|| format!("--input {text:?}"))?;
        let shape = parse_dims(&dims, true).with_context(|| format!("--input {text:?}"))?;
        if specs.iter().any(|s: &InputSpec| s.name == name) {
            bail!("--input {name:?} is given twice");
        }
        specs.push(InputSpec {
            name,
            dtype,
            shape,
            range: None,
            allow_nonfinite: false,
        });
    }
    for text in &args.ranges {
        let (name, min, max) = split3(text, "--range")?;
        let spec = specs
            .iter_mut()
            .find(|s| s.name == name)
            .with_context(|| format!("--range names {name:?}, which is not an --input"))?;
        let min: f64 = min
            .parse()
            .with_context(|| format!("--range {text:?}: bad minimum"))?;
        let max: f64 = max
            .parse()
            .with_context(|| format!("--range {text:?}: bad maximum"))?;
        spec.range = Some([min, max]);
    }
    for name in &args.allow_nonfinite {
        let spec = specs
            .iter_mut()
            .find(|s| &s.name == name)
            .with_context(|| {
                format!("--allow-nonfinite names {name:?}, which is not an --input")
            })?;
        spec.allow_nonfinite = true;
    }
    // Each spec is checked by the import itself (`import_package`), which names it.
    Ok(specs)
}

/// The symbol and params bytes: read plainly, or, with `--trust`, from their folder read
/// once and verified.
fn sources(args: &MxnetArgs) -> Result<Sources> {
    let policy = args.trust.as_deref().map(TrustPolicy::load).transpose()?;
    let sources = read_sources(&args.symbol, &args.params, policy.as_ref())?;
    if let Some(verdict) = &sources.verified {
        for w in verdict.warnings() {
            eprintln!("warning: {w}");
        }
        let dir = args.symbol.parent().unwrap_or(Path::new("."));
        eprintln!(
            "verified {} (signed by {})",
            dir.display(),
            verdict.signers().join(", ")
        );
    }
    Ok(sources)
}

fn mxnet(args: MxnetArgs) -> Result<()> {
    let specs = input_specs(&args)?;
    // Read the key first: a bad key should fail before any work.
    let key = args
        .sign_key
        .as_deref()
        .map(read_private_key_file)
        .transpose()?;
    let sources = sources(&args)?;
    let options = ImportOptions {
        name: args.name.clone(),
        model_version: args.model_version.clone(),
        output_policy: OutputPolicy {
            precision: args.output_precision,
            top_k: args.output_top_k,
            label_only: args.output_label_only,
        },
        allow_nonfinite_weights: args.allow_nonfinite_weights,
        ..ImportOptions::new(specs)
    };
    let imported =
        import_sources(&args.symbol, &args.params, &sources, &options).map_err(|e| match e {
            // The CLI names the files by the paths it was given.
            PackageImportError::Symbol { source, .. } => {
                anyhow::Error::new(*source).context(args.symbol.display().to_string())
            }
            PackageImportError::Params { source, .. } => {
                anyhow::Error::new(*source).context(args.params.display().to_string())
            }
            other => other.into(),
        })?;
    for unused in &imported.unused_params {
        eprintln!("warning: parameter {unused:?} is in the .params file but the symbol never reads it; it is left out");
    }
    if let Some(what) = &imported.nonfinite_weights {
        eprintln!("warning: {what} (--allow-nonfinite-weights)");
    }
    let manifest = &imported.manifest;
    // `--out repo/model/1`: the repository's model directory may not exist yet.
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    write_signed_package(
        &args.out,
        manifest,
        &imported.graph.to_json(),
        &imported.weights,
        key.as_ref(),
    )
    .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "imported {} ({} nodes, {} parameters) into {}{}",
        manifest.name,
        imported.graph.nodes.len(),
        imported.weights.len(),
        args.out.display(),
        if key.is_some() { ", signed" } else { "" }
    );
    Ok(())
}
