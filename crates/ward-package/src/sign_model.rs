//! Signing a model directory (a ward package, an MXNet export folder, any model folder)
//! or one model file in the OpenSSF model-signing v1.0 format: what `ward sign` and the
//! Python binding's `ward.sign` do.
//!
//! Every file is listed with its SHA-256, except model-signing's default ignores and
//! signature files (`model.sig`, `model.N.sig`). Files are hashed as they are read and let
//! go, so signing a model of any size takes memory for two chunks; only a ward package's
//! manifest is kept, for its name and its recorded file sizes.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::PackageError;
use crate::layout::{is_signature_name, GRAPH_FILE, MANIFEST_FILE, SIGNATURE_FILE, WEIGHTS_FILE};
use crate::limits::MAX_MANIFEST_BYTES;
use crate::loader::name_inside;
use crate::manifest::Manifest;
use crate::model_name;
use crate::package::sign_options;
use crate::read::file_error;
use crate::signature::statement::is_ignored;
use crate::signature::verify::Digests;
use crate::signature::{sign_with_digests, Granularity, HashAlgorithm, Hashing, PrivateKey};
use crate::tree::{read_tree, TreeLimits};

/// How to sign: everything but the key and the model has `ward sign`'s default.
#[derive(Clone, Debug, Default)]
pub struct SignRequest {
    /// Where to write the signature (default: `MODEL/model.sig`). Never overwritten.
    pub signature: Option<PathBuf>,
    /// The model name the trust policy will match (default: the package's name, or the
    /// directory's name).
    pub name: Option<String>,
    /// Hash files in shards of this many bytes (at least 1), each hashed in parallel.
    pub shard_size: Option<u64>,
}

/// A signature written.
#[derive(Clone, Debug)]
pub struct SignedModel {
    pub signature: PathBuf,
    pub files: usize,
    pub model_name: String,
}

fn refused(model: &Path, reason: String) -> PackageError {
    PackageError::Sign {
        path: model.to_path_buf(),
        reason,
    }
}

/// Signs `model` with `key`.
pub fn sign_model(
    model: &Path,
    key: &PrivateKey,
    request: &SignRequest,
) -> Result<SignedModel, PackageError> {
    let is_dir = model.is_dir();
    let signature = match (&request.signature, is_dir) {
        (Some(s), _) => s.clone(),
        (None, true) => model.join(SIGNATURE_FILE),
        (None, false) => {
            return Err(refused(
                model,
                format!(
                    "{} is a file: give the path of the signature to write",
                    model.display()
                ),
            ))
        }
    };
    if fs::symlink_metadata(&signature).is_ok() {
        return Err(refused(
            &signature,
            format!(
                "{} already exists; remove it, or add a signature as model.2.sig, model.3.sig, ...",
                signature.display()
            ),
        ));
    }
    // Signature files in the model's root: recorded as ignored, so that model-signing's
    // verifier does not count them as extra files.
    let mut signature_files: Vec<String> = Vec::new();
    if is_dir {
        let io = |source| PackageError::Io {
            path: model.to_path_buf(),
            source,
        };
        for entry in fs::read_dir(model).map_err(io)? {
            if let Some(name) = entry.map_err(io)?.file_name().to_str() {
                if is_signature_name(name) {
                    signature_files.push(name.to_string());
                }
            }
        }
        if let Some(own) = name_inside(model, &signature) {
            signature_files.push(own);
        }
    }
    let mut options = sign_options("", &signature_files);
    if let Some(size) = request.shard_size {
        if size == 0 {
            return Err(refused(
                model,
                "the shard size must be at least 1 byte".into(),
            ));
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
    let manifest = match package_manifest(model) {
        Ok(found) => found,
        // A given name signs a folder whose ward.json is not (or not yet) a package's.
        Err(_) if request.name.is_some() => None,
        Err(e) => return Err(e),
    };
    let sizes = manifest.as_ref().and_then(|(m, _)| m.file_sizes);
    let expected_len = |rel: &str| match rel {
        GRAPH_FILE => sizes.map(|s| s.graph),
        WEIGHTS_FILE => sizes.map(|s| s.weights),
        _ => None,
    };
    let mut digests = Digests::default();
    let tree = read_tree(
        model,
        &skip,
        &|rel| rel == MANIFEST_FILE,
        &expected_len,
        &TreeLimits::default(),
        &[options.hashing],
        &mut digests,
    )
    .map_err(|e| match e {
        PackageError::SizeMismatch { .. } => refused(
            model,
            format!(
                "refusing to sign {}: {e}; the package is not the one its manifest describes \
                 (import it again rather than sign it)",
                model.display()
            ),
        ),
        other => other,
    })?;
    if let Some((_, bytes)) = &manifest {
        if tree.get(MANIFEST_FILE) != Some(bytes.as_slice()) {
            return Err(refused(
                model,
                format!(
                    "{MANIFEST_FILE} changed while {} was signed",
                    model.display()
                ),
            ));
        }
    }
    let model_name = match &request.name {
        Some(n) => n.clone(),
        None => default_model_name(model, manifest.as_ref().map(|(m, _)| m))?,
    };
    options.model_name = model_name.clone();
    let bytes = sign_with_digests(&tree.file_set(), key, &options, &mut digests);
    // Whole or not at all, and never over a signature that appeared meanwhile.
    ward_core::files::write_new_file(&signature, &bytes, 0o666)?;
    Ok(SignedModel {
        signature,
        files: tree.files.len(),
        model_name,
    })
}

/// The manifest of the ward package in `dir` (and its bytes), if `dir` has a ward.json.
fn package_manifest(dir: &Path) -> Result<Option<(Manifest, Vec<u8>)>, PackageError> {
    let path = dir.join(MANIFEST_FILE);
    if !dir.is_dir() || fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let bytes = ward_core::files::read_bounded(&path, MAX_MANIFEST_BYTES)
        .map_err(|e| file_error(&path, MANIFEST_FILE, MAX_MANIFEST_BYTES, e))?;
    let manifest = Manifest::from_json(&bytes).map_err(|e| {
        refused(
            dir,
            format!(
                "{}: the directory has a ward.json that does not parse ({e}); give a model \
                 name to sign it anyway",
                dir.display()
            ),
        )
    })?;
    Ok(Some((manifest, bytes)))
}

/// The ward package's manifest name (which follows the model-name rule), or else the
/// directory's (or file's) name as it is: the subject name model-signing gives a folder,
/// which a trust policy's globs match, and which need not be a ward model name.
fn default_model_name(model: &Path, manifest: Option<&Manifest>) -> Result<String, PackageError> {
    if let Some(m) = manifest {
        return Ok(m.name.clone());
    }
    let absolute = model.canonicalize().map_err(|source| PackageError::Io {
        path: model.to_path_buf(),
        source,
    })?;
    Ok(absolute
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(model_name::FALLBACK)
        .to_string())
}
