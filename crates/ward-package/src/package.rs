//! Reading and writing a package directory.
//!
//! Reading happens in one place, [`read_raw_package`]: it lists the directory, refuses
//! anything that is not one of the package's regular files (links, directories, devices,
//! unknown names), checks each file's size against its limit, and reads each file exactly
//! once into memory. Only then are the bytes parsed: the verified loader
//! ([`crate::loader::open_package`]) checks the signatures between the two, so that nothing
//! is parsed before it is verified.
//!
//! Writing goes to a temporary sibling directory that is renamed into place, so a failure
//! never leaves a partial package at the target path.

use crate::limits::{PackageLimits, MAX_DIR_ENTRIES};
use crate::manifest::{FileSizes, Manifest};
use crate::read::{open_model_file, read_model_file, Keep};
use crate::signature::verify::Digests;
use crate::signature::{sign, FileSet, Hashing, PrivateKey, SignOptions, DEFAULT_IGNORE_PATHS};
use crate::weights::write_weights;
use crate::PackageError;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use ward_core::Tensor;

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "ward.json";
/// The graph IR's file name.
pub const GRAPH_FILE: &str = "graph.json";
/// The weights' file name.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The signature's file name; further signatures are `model.N.sig` (N: 1 to 4 digits).
pub const SIGNATURE_FILE: &str = "model.sig";

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

/// What a directory entry's name says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Manifest,
    Graph,
    Weights,
    Signature,
}

/// Whether `name` is a signature file's name: `model.sig` or `model.N.sig`.
pub fn is_signature_name(name: &str) -> bool {
    role_of(name) == Some(Role::Signature)
}

fn role_of(name: &str) -> Option<Role> {
    match name {
        MANIFEST_FILE => Some(Role::Manifest),
        GRAPH_FILE => Some(Role::Graph),
        WEIGHTS_FILE => Some(Role::Weights),
        SIGNATURE_FILE => Some(Role::Signature),
        _ => {
            let n = name.strip_prefix("model.")?.strip_suffix(".sig")?;
            let digits = !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit());
            digits.then_some(Role::Signature)
        }
    }
}

/// A directory entry's name, which must be UTF-8.
pub(crate) fn entry_name(entry: &fs::DirEntry) -> Result<String, PackageError> {
    entry
        .file_name()
        .into_string()
        .map_err(|n| PackageError::NonUtf8Name {
            name: n.to_string_lossy().into_owned(),
        })
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The entries of a package directory, by name: only `ward.json`, `graph.json`,
/// `weights.safetensors` (all three required) and signatures (`model.sig`,
/// `model.N.sig`), each a regular file, not a link. The directory path itself may be a
/// link. Nothing is read.
pub(crate) fn list_package(dir: &Path) -> Result<PackageEntries, PackageError> {
    let meta = fs::metadata(dir).map_err(io_err(dir))?;
    if !meta.is_dir() {
        return Err(PackageError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mut signatures = Vec::new();
    let mut required = BTreeMap::new();
    for (count, entry) in fs::read_dir(dir).map_err(io_err(dir))?.enumerate() {
        if count >= MAX_DIR_ENTRIES {
            return Err(PackageError::TooManyEntries {
                limit: MAX_DIR_ENTRIES,
            });
        }
        let entry = entry.map_err(io_err(dir))?;
        let name = entry_name(&entry)?;
        let Some(role) = role_of(&name) else {
            return Err(PackageError::UnexpectedFile { file: name });
        };
        // `file_type` does not follow links.
        let ft = entry.file_type().map_err(io_err(&entry.path()))?;
        if ft.is_symlink() {
            return Err(PackageError::Symlink { file: name });
        }
        if !ft.is_file() {
            return Err(PackageError::NotRegularFile { file: name });
        }
        match role {
            Role::Signature => signatures.push(name),
            _ => {
                required.insert(name, role);
            }
        }
    }
    for file in [MANIFEST_FILE, GRAPH_FILE, WEIGHTS_FILE] {
        if !required.contains_key(file) {
            return Err(PackageError::MissingFile { file });
        }
    }
    signatures.sort();
    Ok(PackageEntries { signatures })
}

/// What [`list_package`] found besides the three required files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageEntries {
    /// `model.sig` and `model.N.sig`, sorted by name.
    pub signatures: Vec<String>,
}

/// Reads one file of a package directory whole, within `limit`.
pub(crate) fn read_whole(dir: &Path, name: &str, limit: u64) -> Result<Vec<u8>, PackageError> {
    let path = dir.join(name);
    let file = open_model_file(&path, name)?;
    let read = read_model_file(
        file,
        &path,
        name,
        limit,
        Keep::Held,
        &[],
        &mut Digests::default(),
    )?;
    Ok(read.bytes.unwrap_or_default())
}

/// Reads every file of a package directory into memory, once, without verifying or
/// parsing anything: each file within its limit, through the rules of [`list_package`].
pub fn read_raw_package(dir: &Path, limits: &PackageLimits) -> Result<RawPackage, PackageError> {
    let entries = list_package(dir)?;
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
    let limits = PackageLimits::default();
    let weights_bytes = write_weights(weights, &BTreeMap::new())?;
    // The manifest records the other files' sizes, so that a reader refuses a file of
    // another size before reading it.
    let mut manifest = manifest.clone();
    manifest.file_sizes = Some(FileSizes {
        graph: graph_json.len() as u64,
        weights: weights_bytes.len() as u64,
    });
    let manifest_json = manifest.to_json()?;
    // Refuse to write what `read_package` would refuse to read.
    for (file, len, limit) in [
        (
            MANIFEST_FILE,
            manifest_json.len(),
            limits.max_manifest_bytes,
        ),
        (GRAPH_FILE, graph_json.len(), limits.max_graph_bytes),
        (WEIGHTS_FILE, weights_bytes.len(), limits.max_weights_bytes),
    ] {
        if len as u64 > limit {
            return Err(PackageError::FileTooLarge {
                file: file.into(),
                size: len as u64,
                limit,
            });
        }
    }
    let mut files: Vec<(&str, &[u8])> = vec![
        (MANIFEST_FILE, &manifest_json),
        (GRAPH_FILE, graph_json),
        (WEIGHTS_FILE, &weights_bytes),
    ];
    let signature;
    if let Some(key) = key {
        let set = FileSet::new(files.iter().map(|(n, b)| (n.to_string(), *b)));
        let options = sign_options(&manifest.name, &[SIGNATURE_FILE.to_string()]);
        signature = sign(&set, key, &options);
        files.push((SIGNATURE_FILE, &signature));
    }
    write_files(dir, &files)
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

/// Writes `files` into a new directory at `dir` via a temporary sibling and a rename.
fn write_files(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), PackageError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut entries = fs::read_dir(dir).map_err(io_err(dir))?;
            if entries.next().is_some() {
                return Err(PackageError::TargetExists {
                    path: dir.to_path_buf(),
                });
            }
        }
        Ok(_) => {
            return Err(PackageError::TargetExists {
                path: dir.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dir)(e)),
    }
    let Some(base) = dir.file_name().and_then(|n| n.to_str()) else {
        return Err(PackageError::InvalidTarget {
            path: dir.to_path_buf(),
        });
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = create_temp_dir(&parent, base)?;
    let result = (|| {
        for (name, bytes) in files {
            let path = tmp.join(name);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.write_all(bytes).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        sync_dir(&tmp)?;
        fs::rename(&tmp, dir).map_err(io_err(dir))
    })();
    if let Err(e) = result {
        // Best effort: the original error matters more than a failed cleanup.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Make the rename durable; the package is complete either way.
    let _ = sync_dir(&parent);
    Ok(())
}

/// Creates `.{base}.ward-tmp-{pid}-{n}` in `parent`, atomically.
fn create_temp_dir(parent: &Path, base: &str) -> Result<PathBuf, PackageError> {
    let pid = std::process::id();
    let mut last = None;
    for n in 0..1000u32 {
        let path = parent.join(format!(".{base}.ward-tmp-{pid}-{n}"));
        match fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Err(PackageError::Io {
        path: parent.to_path_buf(),
        source: last.unwrap_or_else(|| io::Error::other("no free temporary name")),
    })
}

fn sync_dir(dir: &Path) -> Result<(), PackageError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signature_names() {
        assert_eq!(role_of("model.sig"), Some(Role::Signature));
        assert_eq!(role_of("model.1.sig"), Some(Role::Signature));
        assert_eq!(role_of("model.2024.sig"), Some(Role::Signature));
        for bad in [
            "model..sig",
            "model.x.sig",
            "model.12345.sig",
            "model.-1.sig",
            "model.sig.bak",
            "MODEL.sig",
        ] {
            assert_eq!(role_of(bad), None, "{bad}");
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failure_after_the_first_file_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("pkg");
        // The second name cannot be created inside the temporary directory.
        let err = write_files(&target, &[("ward.json", b"{}"), ("no/such/dir", b"x")]).unwrap_err();
        assert!(matches!(err, PackageError::Io { .. }), "{err}");
        assert_eq!(listing(parent.path()), Vec::<String>::new());

        // Same with an existing empty target: it stays empty.
        fs::create_dir(&target).unwrap();
        write_files(&target, &[("ward.json", b"{}"), ("no/such/dir", b"x")]).unwrap_err();
        assert_eq!(listing(parent.path()), vec!["pkg".to_string()]);
        assert_eq!(listing(&target), Vec::<String>::new());

        // And a successful write replaces the empty directory.
        write_files(&target, &[("ward.json", b"{}")]).unwrap();
        assert_eq!(listing(&target), vec!["ward.json".to_string()]);
        assert_eq!(listing(parent.path()), vec!["pkg".to_string()]);
    }
}
