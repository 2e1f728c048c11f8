//! A ward package as bytes: writing one ([`write_package`], [`write_signed_package`]),
//! and reading its files unverified ([`read_raw_package`], for tests and tools; opening a
//! package is the verified loader's, [`crate::loader::open_package`]).
//!
//! Which files a package holds is [`Layout::package`]; writing goes through the one atomic
//! directory writer ([`crate::write::write_layout`]), so a failure never leaves a partial
//! package at the target path.

use std::collections::BTreeMap;
use std::path::Path;

use ward_core::Tensor;

use crate::error::PackageError;
use crate::layout::{Layout, GRAPH_FILE, MANIFEST_FILE, SIGNATURE_FILE, WEIGHTS_FILE};
use crate::limits::PackageLimits;
use crate::manifest::{FileSizes, Manifest};
use crate::read::read_whole;
use crate::signature::{sign, FileSet, Hashing, PrivateKey, SignOptions, DEFAULT_IGNORE_PATHS};
use crate::weights::write_weights;
use crate::write::{check_layout, write_layout};

/// A package, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageFiles {
    pub manifest: Manifest,
    /// `graph.json` as read: its format belongs to `ward-graph`.
    pub graph_json: Vec<u8>,
    /// The weights, in the order of the safetensors header.
    pub weights: Vec<(String, Tensor)>,
}

/// The bytes of every file of a package, each read once, not yet verified or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPackage {
    pub manifest: Vec<u8>,
    pub graph: Vec<u8>,
    pub weights: Vec<u8>,
    /// `model.sig` and `model.N.sig`, sorted by name.
    pub signatures: Vec<(String, Vec<u8>)>,
}

/// Reads every file of a package directory into memory, once, without verifying or
/// parsing anything: each file within its limit, listed as [`Layout::package`] says.
pub fn read_raw_package(dir: &Path, limits: &PackageLimits) -> Result<RawPackage, PackageError> {
    let layout = Layout::package(limits);
    let entries = layout.list(dir)?;
    let mut signatures = Vec::new();
    for name in entries.signatures {
        let bytes = read_whole(dir, &name, limits.max_signature_bytes)?;
        signatures.push((name, bytes));
    }
    Ok(RawPackage {
        manifest: read_whole(dir, MANIFEST_FILE, limits.max_manifest_bytes)?,
        graph: read_whole(dir, GRAPH_FILE, limits.max_graph_bytes)?,
        weights: read_whole(dir, WEIGHTS_FILE, limits.max_weights_bytes)?,
        signatures,
    })
}

/// Writes a package to `dir`, which must not exist or be an empty directory.
///
/// The manifest is validated and the weights serialised before anything touches the disk;
/// the files are written into a temporary sibling directory, synced, and renamed to `dir`,
/// so a failure leaves neither a partial package nor the temporary directory behind.
/// No signature is written (see [`write_signed_package`]).
pub fn write_package(
    dir: &Path,
    manifest: &Manifest,
    graph_json: &[u8],
    weights: &[(String, Tensor)],
) -> Result<(), PackageError> {
    write_signed_package(dir, manifest, graph_json, weights, None)
}

/// [`write_package`], signed with `key` when one is given: the signature is computed over
/// the bytes about to be written and written with them, in the same atomic rename.
pub fn write_signed_package(
    dir: &Path,
    manifest: &Manifest,
    graph_json: &[u8],
    weights: &[(String, Tensor)],
    key: Option<&PrivateKey>,
) -> Result<(), PackageError> {
    let weights_bytes = write_weights(weights, &BTreeMap::new())?;
    // The manifest records the other files' sizes, so that a reader refuses a file of
    // another size before reading it.
    let mut manifest = manifest.clone();
    manifest.file_sizes = Some(FileSizes {
        graph: graph_json.len() as u64,
        weights: weights_bytes.len() as u64,
    });
    let manifest_json = manifest.to_json()?;
    let mut files: Vec<(&str, &[u8])> = vec![
        (MANIFEST_FILE, &manifest_json),
        (GRAPH_FILE, graph_json),
        (WEIGHTS_FILE, &weights_bytes),
    ];
    // Refuse to write (or sign) what the loader would refuse to read.
    let layout = Layout::package(&PackageLimits::default());
    check_layout(&layout, &files)?;
    let signature;
    if let Some(key) = key {
        let set = FileSet::new(files.iter().map(|(n, b)| (n.to_string(), *b)));
        let options = sign_options(&manifest.name, &[SIGNATURE_FILE.to_string()]);
        signature = sign(&set, key, &options);
        files.push((SIGNATURE_FILE, &signature));
    }
    write_layout(dir, &layout, &files)
}

/// How ward signs: files, SHA-256 (all `model_signing verify key` can check), and
/// model-signing's default ignore paths plus `signature_files`, the names of the signature
/// files in the model's root (those present and the one being written), so that the
/// reference verifier does not count them as extra files.
pub fn sign_options(model_name: &str, signature_files: &[String]) -> SignOptions {
    let mut ignore_paths: Vec<String> =
        DEFAULT_IGNORE_PATHS.iter().map(|p| p.to_string()).collect();
    ignore_paths.extend(signature_files.iter().cloned());
    SignOptions {
        model_name: model_name.to_string(),
        hashing: Hashing::DEFAULT,
        ignore_paths,
    }
}
