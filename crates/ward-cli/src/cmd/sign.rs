//! `ward sign`

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use ward_package::limits::MAX_MANIFEST_BYTES;
use ward_package::loader::name_inside;
use ward_package::signature::statement::is_ignored;
use ward_package::signature::verify::Digests;
use ward_package::signature::{
    read_private_key_file, sign_with_digests, Granularity, HashAlgorithm, Hashing,
};
use ward_package::tree::{read_tree, TreeLimits};
use ward_package::{
    is_signature_name, model_name, sign_options, Manifest, PackageError, GRAPH_FILE, MANIFEST_FILE,
    SIGNATURE_FILE, WEIGHTS_FILE,
};

/// Sign a model directory (a ward package, an MXNet export folder, any model folder) in
/// the OpenSSF model-signing v1.0 format, which `model_signing verify key` also checks.
///
/// Every file is listed with its SHA-256, except model-signing's default ignores (.git,
/// .github, .gitattributes, .gitignore) and signature files (model.sig, model.N.sig).
/// A further signer (for a trust policy's threshold) writes model.2.sig, model.3.sig, ...
///
/// Example:
///   ward sign resnet18.ward --key keys/release.key
///   ward sign resnet18.ward --key keys/qa.key --signature resnet18.ward/model.2.sig
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct SignArgs {
    /// The model directory (or a single model file, with --signature).
    model: PathBuf,
    /// The private key (PEM; must not be readable by group or others).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Where to write the signature (default: MODEL/model.sig). Never overwritten.
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,
    /// The model name the trust policy will match (default: the package's name, or the
    /// directory's name).
    #[arg(long)]
    name: Option<String>,
    /// Hash files in shards of this many bytes, each hashed in parallel (large files on
    /// many cores). model-signing's CLI cannot verify sharded signatures; its API can.
    #[arg(long, value_name = "BYTES")]
    shard_size: Option<u64>,
}

pub fn run(args: SignArgs) -> Result<()> {
    let key = read_private_key_file(&args.key)?;
    let is_dir = args.model.is_dir();
    let signature = match (&args.signature, is_dir) {
        (Some(s), _) => s.clone(),
        (None, true) => args.model.join(SIGNATURE_FILE),
        (None, false) => bail!("{} is a file: give --signature FILE", args.model.display()),
    };
    if fs::symlink_metadata(&signature).is_ok() {
        bail!(
            "{} already exists; remove it, or add a signature as model.2.sig, model.3.sig, ...",
            signature.display()
        );
    }
    // Signature files in the model's root: recorded as ignored, so that model-signing's
    // verifier does not count them as extra files.
    let mut signature_files: Vec<String> = Vec::new();
    if is_dir {
        for entry in fs::read_dir(&args.model)
            .with_context(|| format!("reading {}", args.model.display()))?
        {
            if let Some(name) = entry?.file_name().to_str() {
                if is_signature_name(name) {
                    signature_files.push(name.to_string());
                }
            }
        }
        if let Some(own) = name_inside(&args.model, &signature) {
            signature_files.push(own);
        }
    }
    let mut options = sign_options("", &signature_files);
    if let Some(size) = args.shard_size {
        if size == 0 {
            bail!("--shard-size must be at least 1");
        }
        options.hashing = Hashing {
            granularity: Granularity::Shards(size),
            algorithm: HashAlgorithm::Sha256,
        };
    }
    let ignore = options.ignore_paths.clone();
    let skip = |rel: &str| is_ignored(rel, &ignore);
    // A ward package is signed only as its manifest describes it: a graph or weights file
    // of another size than ward.json records is refused before it is read.
    let manifest = match package_manifest(&args.model) {
        Ok(found) => found,
        // `--name` signs a folder whose ward.json is not (or not yet) a package's.
        Err(_) if args.name.is_some() => None,
        Err(e) => return Err(e),
    };
    let sizes = manifest.as_ref().and_then(|(m, _)| m.file_sizes);
    let expected_len = |rel: &str| match rel {
        GRAPH_FILE => sizes.map(|s| s.graph),
        WEIGHTS_FILE => sizes.map(|s| s.weights),
        _ => None,
    };
    // Every file is hashed as it is read and let go: signing a model of any size takes
    // memory for two chunks. Only a ward package's manifest is kept (its name).
    let mut digests = Digests::default();
    let tree = read_tree(
        &args.model,
        &skip,
        &|rel| rel == MANIFEST_FILE,
        &expected_len,
        &TreeLimits::default(),
        &[options.hashing],
        &mut digests,
    )
    .map_err(|e| match e {
        PackageError::SizeMismatch { .. } => anyhow::anyhow!(
            "refusing to sign {}: {e}; the package is not the one its manifest describes \
             (import it again rather than sign it)",
            args.model.display()
        ),
        other => other.into(),
    })?;
    if let Some((_, bytes)) = &manifest {
        if tree.get(MANIFEST_FILE) != Some(bytes.as_slice()) {
            bail!(
                "{MANIFEST_FILE} changed while {} was signed",
                args.model.display()
            );
        }
    }
    let model_name = match &args.name {
        Some(n) => n.clone(),
        None => default_model_name(&args.model, manifest.as_ref().map(|(m, _)| m))?,
    };
    options.model_name = model_name.clone();
    let bytes = sign_with_digests(&tree.file_set(), &key, &options, &mut digests);
    // Whole or not at all, and never over a signature that appeared meanwhile.
    ward_core::files::write_new_file(&signature, &bytes, 0o666)
        .with_context(|| format!("writing {}", signature.display()))?;
    println!(
        "signed {} ({} files, model name {:?}) -> {}",
        args.model.display(),
        tree.files.len(),
        model_name,
        signature.display()
    );
    Ok(())
}

/// The manifest of the ward package in `dir` (and its bytes), if `dir` has a ward.json.
fn package_manifest(dir: &Path) -> Result<Option<(Manifest, Vec<u8>)>> {
    let path = dir.join(MANIFEST_FILE);
    if !dir.is_dir() || fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let bytes = super::read_file(&path, MAX_MANIFEST_BYTES)?;
    let manifest = Manifest::from_json(&bytes).context(
        "the directory has a ward.json that does not parse; pass --name to sign it anyway",
    )?;
    Ok(Some((manifest, bytes)))
}

/// The ward package's manifest name (which follows the model-name rule), or else the
/// directory's (or file's) name as it is: the subject name model-signing gives a folder,
/// which a trust policy's globs match, and which need not be a ward model name.
fn default_model_name(model: &Path, manifest: Option<&Manifest>) -> Result<String> {
    if let Some(m) = manifest {
        return Ok(m.name.clone());
    }
    let absolute = model
        .canonicalize()
        .with_context(|| model.display().to_string())?;
    Ok(absolute
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(model_name::FALLBACK)
        .to_string())
}
