//! `ward import mxnet`

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ward_core::DType;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::limits::{
    ParamsLimits, SymbolLimits, MAX_PARAMS_FILE_BYTES, MAX_SYMBOL_JSON_BYTES,
};
use ward_package::signature::read_private_key_file;
use ward_package::tree::TreeLimits;
use ward_package::{
    model_name, verify_directory, write_signed_package, FileDigest, InputSpec, Manifest, Origin,
    OutputPolicy, TrustPolicy,
};

use super::{parse_dims, read_file};

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
    for spec in &specs {
        spec.validate_spec()
            .with_context(|| format!("--input {:?}", spec.name))?;
    }
    Ok(specs)
}

/// `resnet18-symbol.json` → `resnet18`, made a valid model name ([`model_name::sanitize`]).
pub(crate) fn default_name(symbol: &std::path::Path) -> String {
    let file = symbol
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or(model_name::FALLBACK);
    let stem = file
        .strip_suffix("-symbol.json")
        .or_else(|| file.strip_suffix(".json"))
        .unwrap_or(file);
    model_name::sanitize(stem)
}

/// The symbol and params bytes: read plainly, or, with `--trust`, from their folder read
/// once and verified.
fn source_bytes(args: &MxnetArgs) -> Result<(Vec<u8>, Vec<u8>)> {
    let Some(trust) = &args.trust else {
        return Ok((
            read_file(&args.symbol, MAX_SYMBOL_JSON_BYTES as u64)?,
            read_file(&args.params, MAX_PARAMS_FILE_BYTES)?,
        ));
    };
    let policy = TrustPolicy::load(trust)?;
    let folder = |p: &Path| -> Result<PathBuf> {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        parent
            .canonicalize()
            .with_context(|| parent.display().to_string())
    };
    let dir = folder(&args.symbol)?;
    if folder(&args.params)? != dir {
        bail!("with --trust, the symbol and params files must be in the same (signed) folder");
    }
    // Only the two files imported are kept; the rest of the folder is only hashed.
    let wanted = [file_name(&args.symbol), file_name(&args.params)];
    let mut verified = verify_directory(
        &dir,
        &[],
        &policy,
        SystemTime::now(),
        &TreeLimits::default(),
        &|rel| wanted.iter().any(|w| w == rel),
    )?;
    for w in verified.verified.warnings() {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "verified {} (signed by {})",
        dir.display(),
        verified.verified.signers().join(", ")
    );
    let mut take = |p: &Path| -> Result<Vec<u8>> {
        let name = file_name(p);
        verified
            .tree
            .take(&name)
            .with_context(|| format!("{name} is not among the signed files of {}", dir.display()))
    };
    Ok((take(&args.symbol)?, take(&args.params)?))
}

fn mxnet(args: MxnetArgs) -> Result<()> {
    let specs = input_specs(&args)?;
    // Read the key first: a bad key should fail before any work.
    let key = args
        .sign_key
        .as_deref()
        .map(read_private_key_file)
        .transpose()?;
    let (symbol_bytes, params_bytes) = source_bytes(&args)?;
    let symbol = ward_mxnet::symbol::read_symbol(&symbol_bytes, &SymbolLimits::default())
        .with_context(|| format!("{}", args.symbol.display()))?;
    let params = ward_mxnet::params::read_params(&params_bytes, &ParamsLimits::default())
        .with_context(|| format!("{}", args.params.display()))?;
    let declared: Vec<DeclaredInput> = specs
        .iter()
        .map(|s| DeclaredInput {
            name: s.name.clone(),
            dtype: s.dtype,
            shape: s.shape.clone(),
        })
        .collect();
    let imported = import(&symbol, params, &declared).context("import")?;
    for unused in &imported.unused_params {
        eprintln!("warning: parameter {unused:?} is in the .params file but the symbol never reads it; it is left out");
    }
    let nonfinite = ward_package::weights::first_nonfinite(&imported.weights)
        .map(|(name, index)| format!("parameter {name:?} element {index} is NaN or infinite"));
    match (&nonfinite, args.allow_nonfinite_weights) {
        (Some(what), false) => bail!(
            "{what}; pass --allow-nonfinite-weights to import it anyway (recorded in the package)"
        ),
        (Some(what), true) => eprintln!("warning: {what} (--allow-nonfinite-weights)"),
        (None, _) => {}
    }
    let outputs = imported.output_specs();
    // Inputs in the graph's order, which is the symbol's.
    let inputs: Vec<InputSpec> = imported
        .graph
        .inputs
        .iter()
        .filter_map(|i| specs.iter().find(|s| s.name == i.name).cloned())
        .collect();
    let v = symbol.mxnet_version;
    let origin = Origin {
        framework: "mxnet".into(),
        framework_version: Some(format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)),
        files: vec![
            FileDigest::of(file_name(&args.symbol), &symbol_bytes),
            FileDigest::of(file_name(&args.params), &params_bytes),
        ],
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&args.symbol));
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut manifest = Manifest::new(
        name,
        args.model_version.clone(),
        created,
        origin,
        inputs,
        outputs,
    );
    manifest.nonfinite_weights = nonfinite.is_some();
    manifest.output_policy = OutputPolicy {
        precision: args.output_precision,
        top_k: args.output_top_k,
        label_only: args.output_label_only,
    };
    // `--out repo/model/1`: the repository's model directory may not exist yet.
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    write_signed_package(
        &args.out,
        &manifest,
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

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}
