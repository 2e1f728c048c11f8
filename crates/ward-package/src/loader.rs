//! The one verified loader. Every path in ward that opens a package or a signed model
//! directory goes through here. For a package:
//!
//! 1. list the directory (only the package's own regular files);
//! 2. read each signature file and check each signature against the trust policy, and
//!    that enough distinct trusted signers signed (nothing of the model is read yet);
//! 3. read `ward.json`, compare its digest with every signed statement, and only then
//!    parse it: its name must be one the signers may sign, and it gives the byte length
//!    of the graph and the weights;
//! 4. open the graph and the weights, refuse either if its length is not the signed one
//!    (so a huge file dropped into a package is refused before a byte of it is read),
//!    read each once (held, or only hashed for `ward verify`), hashing large files while
//!    they are read;
//! 5. compare every file with every statement (digests, missing and extra files);
//! 6. only then parse the graph's neighbours: the weights.
//!
//! Every outcome is an audit event; every refusal is [`PackageError::Refused`] (signature
//! problems, all of them) or [`PackageError::Rejected`] (a file that cannot be read within
//! the rules, or verified bytes that do not parse), and nothing else.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ward_core::AuditEvent;

use crate::limits::{PackageLimits, MAX_SIGNATURE_BYTES};
use crate::manifest::FileSizes;
use crate::package::{is_signature_name, list_package, read_whole};
use crate::read::{open_model_file, read_model_file, Keep, ModelFile};
use crate::signature::verify::{
    check_allowed, check_file, check_files, check_signatures, check_threshold, common_ignores,
    hashings, signed_model_name, Digests, SignedStatement,
};
use crate::signature::{
    statement::is_ignored, FileSet, Hashing, Problem, SignatureFile, TrustPolicy, Verified,
};
use crate::tree::{read_tree, Tree, TreeLimits};
use crate::weights::{first_nonfinite, read_weights};
use crate::{Manifest, PackageError, PackageFiles, GRAPH_FILE, MANIFEST_FILE, WEIGHTS_FILE};

/// What the loader accepts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Signatures are checked against this policy; an unsigned model is refused.
    Policy(TrustPolicy),
    /// No verification, for local experiments (`--allow-unsigned`): recorded as an
    /// audit event every time.
    AllowUnsigned,
}

/// How a model was accepted.
#[derive(Debug, Clone)]
pub enum Verification {
    Signed(Verified),
    /// Accepted without verification under [`Trust::AllowUnsigned`].
    Unverified,
}

/// A package that passed the loader, parsed.
#[derive(Debug)]
pub struct OpenedPackage {
    pub files: PackageFiles,
    pub verification: Verification,
}

/// A package whose every file verified; only its manifest was kept and parsed.
#[derive(Debug)]
pub struct VerifiedPackage {
    pub manifest: Manifest,
    pub verified: Verified,
    /// The files verified, signatures aside (a package has three).
    pub file_count: usize,
}

/// A model directory that passed verification, with the files asked for in memory.
#[derive(Debug)]
pub struct VerifiedTree {
    pub tree: Tree,
    pub verified: Verified,
}

fn subject(dir: &Path) -> String {
    dir.display().to_string()
}

/// Emits one audit event per problem and returns the refusal.
fn refuse(dir: &Path, problems: Vec<Problem>) -> PackageError {
    for p in &problems {
        let mut event =
            AuditEvent::new("package.refused", subject(dir)).reason(p.reason(), p.to_string());
        if let Some(s) = p.signer() {
            event = event.signer(s);
        }
        event.emit();
    }
    PackageError::Refused {
        package: dir.to_path_buf(),
        problems,
    }
}

/// The audit reason for a model that could not be read within the rules.
fn unreadable_reason(error: &PackageError) -> &'static str {
    match error {
        PackageError::Symlink { .. } => "symlink",
        PackageError::UnexpectedFile { .. } => "extra-file",
        PackageError::MissingFile { .. } => "missing-file",
        PackageError::NotRegularFile { .. } => "not-a-regular-file",
        PackageError::FileTooLarge { .. }
        | PackageError::TreeLimit { .. }
        | PackageError::TooManyEntries { .. } => "too-large",
        PackageError::OutOfMemory { .. } => "out-of-memory",
        PackageError::FileChanged { .. } => "file-changed",
        PackageError::SizeMismatch { .. } => "size-mismatch",
        _ => "unreadable",
    }
}

/// Audits a rejection and returns it.
fn reject(dir: &Path, reason: &'static str, error: PackageError) -> PackageError {
    AuditEvent::new("package.refused", subject(dir))
        .reason(reason, error.to_string())
        .emit();
    PackageError::Rejected {
        package: dir.to_path_buf(),
        reason,
        source: Box::new(error),
    }
}

/// Audits a failure to read the model at all (a link swapped in, an extra file, ...).
fn refuse_unreadable(dir: &Path, error: PackageError) -> PackageError {
    let reason = unreadable_reason(&error);
    reject(dir, reason, error)
}

/// Audits a model whose verified (or explicitly unverified) bytes do not parse.
fn refuse_malformed(dir: &Path, error: PackageError) -> PackageError {
    reject(dir, "malformed-package", error)
}

fn audit_verified(dir: &Path, verified: &Verified) {
    AuditEvent::new("package.verified", subject(dir))
        .signer(verified.signers.join(","))
        .emit();
}

fn audit_unverified(dir: &Path) {
    AuditEvent::new("package.unverified", subject(dir))
        .reason(
            "allow-unsigned",
            "loaded without signature verification (--allow-unsigned)",
        )
        .emit();
}

/// A package read by [`read_package`]: its parsed manifest, and the graph and weights as
/// [`Keep`] asked.
struct ReadPackage {
    manifest: Manifest,
    graph: ModelFile,
    weights: ModelFile,
    verification: Verification,
}

/// Opens a ward package: reads it once, verifies it under `trust`, then parses it.
pub fn open_package(
    dir: &Path,
    trust: &Trust,
    now: SystemTime,
    limits: &PackageLimits,
) -> Result<OpenedPackage, PackageError> {
    let read = read_package(dir, trust, now, limits, Keep::Held)?;
    let weights_bytes = read.weights.bytes.unwrap_or_default();
    let weights = read_weights(&weights_bytes).map_err(|e| refuse_malformed(dir, e))?;
    drop(weights_bytes);
    if let Some((tensor, index)) = first_nonfinite(&weights) {
        let what = format!("weights.safetensors: tensor {tensor:?} element {index} is not finite");
        if read.manifest.format_version >= 2 && !read.manifest.nonfinite_weights {
            return Err(refuse_malformed(
                dir,
                PackageError::Inconsistent {
                    reason: format!(
                        "{what}, and ward.json does not declare nonfinite_weights (imported with --allow-nonfinite-weights)"
                    ),
                },
            ));
        }
        if !read.manifest.nonfinite_weights {
            tracing::warn!("{}: {what}", dir.display());
        }
    }
    let files = PackageFiles {
        manifest: read.manifest,
        graph_json: read.graph.bytes.unwrap_or_default(),
        weights,
    };
    if let Verification::Signed(v) = &read.verification {
        audit_verified(dir, v);
    } else {
        audit_unverified(dir);
    }
    Ok(OpenedPackage {
        files,
        verification: read.verification,
    })
}

/// Verifies a ward package without keeping its graph or weights: each is hashed as it is
/// read, so memory stays bounded whatever their size. Only the manifest is parsed.
pub fn verify_package(
    dir: &Path,
    policy: &TrustPolicy,
    now: SystemTime,
    limits: &PackageLimits,
) -> Result<VerifiedPackage, PackageError> {
    let trust = Trust::Policy(policy.clone());
    let read = read_package(dir, &trust, now, limits, Keep::Streamed)?;
    let Verification::Signed(verified) = read.verification else {
        // A policy never gives an unverified package.
        return Err(refuse(dir, vec![Problem::Unsigned]));
    };
    audit_verified(dir, &verified);
    Ok(VerifiedPackage {
        manifest: read.manifest,
        verified,
        file_count: 3,
    })
}

/// Reads a package under `trust`, verifying every file, and parses its manifest.
fn read_package(
    dir: &Path,
    trust: &Trust,
    now: SystemTime,
    limits: &PackageLimits,
    keep: Keep,
) -> Result<ReadPackage, PackageError> {
    let entries = list_package(dir).map_err(|e| refuse_unreadable(dir, e))?;
    let policy = match trust {
        Trust::Policy(p) => p,
        Trust::AllowUnsigned => {
            let manifest_bytes = read_whole(dir, MANIFEST_FILE, limits.max_manifest_bytes)
                .map_err(|e| refuse_unreadable(dir, e))?;
            let manifest =
                Manifest::from_json(&manifest_bytes).map_err(|e| refuse_malformed(dir, e))?;
            let (graph, weights) =
                read_contents(dir, &manifest, limits, keep, &[], &mut Digests::default())
                    .map_err(|e| refuse_unreadable(dir, e))?;
            return Ok(ReadPackage {
                manifest,
                graph,
                weights,
                verification: Verification::Unverified,
            });
        }
    };

    // 2. The signatures, before anything of the model is read.
    let mut signature_files = Vec::new();
    for name in &entries.signatures {
        let bytes = read_whole(dir, name, limits.max_signature_bytes)
            .map_err(|e| refuse_unreadable(dir, e))?;
        signature_files.push((name.clone(), bytes));
    }
    let signatures: Vec<SignatureFile<'_>> = signature_files
        .iter()
        .map(|(name, bytes)| SignatureFile { name, bytes })
        .collect();
    let mut warnings = Vec::new();
    let (signed, problems) = check_signatures(&signatures, policy, now, &mut warnings);
    if !problems.is_empty() {
        return Err(refuse(dir, problems));
    }
    let signers = check_threshold(&signed, policy).map_err(|p| refuse(dir, p))?;
    let to_hash = hashings(&signed);
    let mut digests = Digests::default();

    // 3. The manifest: verified on its own, then parsed.
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_file =
        open_model_file(&manifest_path, MANIFEST_FILE).map_err(|e| refuse_unreadable(dir, e))?;
    let manifest_read = read_model_file(
        manifest_file,
        &manifest_path,
        MANIFEST_FILE,
        limits.max_manifest_bytes,
        Keep::Held,
        &to_hash,
        &mut digests,
    )
    .map_err(|e| refuse_unreadable(dir, e))?;
    let manifest_bytes = manifest_read.bytes.unwrap_or_default();
    let manifest_set = FileSet::new([(MANIFEST_FILE.to_string(), manifest_bytes.as_slice())]);
    let mut problems = must_list(&signed, MANIFEST_FILE);
    problems.extend(check_file(
        &signed,
        &manifest_set,
        MANIFEST_FILE,
        &mut digests,
    ));
    if !problems.is_empty() {
        return Err(refuse(dir, problems));
    }
    // The policy's model names match the manifest's name, which the signatures cover; the
    // statement's subject name is informative, as in model-signing (which names it after
    // the directory).
    let manifest = Manifest::from_json(&manifest_bytes).map_err(|e| refuse_malformed(dir, e))?;
    check_allowed(&signed, &manifest.name).map_err(|p| refuse(dir, p))?;

    // 4. The graph and the weights, each of its signed length.
    let (graph, weights) = match read_contents(dir, &manifest, limits, keep, &to_hash, &mut digests)
    {
        Ok(read) => read,
        Err(PackageError::SizeMismatch {
            file,
            declared,
            actual,
        }) => {
            return Err(refuse(
                dir,
                vec![Problem::LengthChanged {
                    signature: MANIFEST_FILE.to_string(),
                    file,
                    signed: declared,
                    actual,
                }],
            ))
        }
        Err(e) => return Err(refuse_unreadable(dir, e)),
    };

    // 5. Every file against every statement. A package's files may not hide behind
    // ignore paths: all three are parsed.
    let files = FileSet::with_lengths([
        (
            MANIFEST_FILE.to_string(),
            manifest_read.len,
            Some(manifest_bytes.as_slice()),
        ),
        (GRAPH_FILE.to_string(), graph.len, graph.bytes.as_deref()),
        (
            WEIGHTS_FILE.to_string(),
            weights.len,
            weights.bytes.as_deref(),
        ),
    ]);
    let problems = check_files(&signed, &files, true, &mut warnings, &mut digests);
    if !problems.is_empty() {
        return Err(refuse(dir, problems));
    }
    drop(files);
    Ok(ReadPackage {
        verification: Verification::Signed(Verified {
            model_name: manifest.name.clone(),
            signers,
            warnings,
        }),
        manifest,
        graph,
        weights,
    })
}

/// Every statement must list `file` (not leave it out or ignore it) before it is parsed.
fn must_list(signed: &[SignedStatement], file: &str) -> Vec<Problem> {
    signed
        .iter()
        .filter(|s| !s.statement.files.contains_key(file))
        .map(|s| {
            if is_ignored(file, &s.statement.ignore_paths) {
                Problem::NotCovered {
                    signature: s.signature.clone(),
                    file: file.to_string(),
                }
            } else {
                Problem::MissingFile {
                    signature: s.signature.clone(),
                    file: file.to_string(),
                }
            }
        })
        .collect()
}

/// Reads the graph and the weights, each refused with [`PackageError::SizeMismatch`]
/// before it is read when the manifest records another length.
fn read_contents(
    dir: &Path,
    manifest: &Manifest,
    limits: &PackageLimits,
    keep: Keep,
    to_hash: &[Hashing],
    digests: &mut Digests,
) -> Result<(ModelFile, ModelFile), PackageError> {
    let sizes = manifest.file_sizes;
    let size = |f: fn(&FileSizes) -> u64| sizes.as_ref().map(f);
    let mut read = |name: &str, limit: u64, declared: Option<u64>| {
        let path = dir.join(name);
        let file = open_model_file(&path, name)?;
        if let Some(declared) = declared {
            if file.len() != declared {
                return Err(PackageError::SizeMismatch {
                    file: name.to_string(),
                    declared,
                    actual: file.len(),
                });
            }
        }
        read_model_file(file, &path, name, limit, keep, to_hash, digests)
    };
    let graph = read(GRAPH_FILE, limits.max_graph_bytes, size(|s| s.graph))?;
    let weights = read(WEIGHTS_FILE, limits.max_weights_bytes, size(|s| s.weights))?;
    Ok((graph, weights))
}

/// Verifies any model directory (or single file) signed in the model-signing format and
/// returns the files `keep` names in memory (the others are only hashed, as they are
/// read). `signature_paths` defaults to the directory's own `model.sig` and `model.N.sig`.
pub fn verify_directory(
    dir: &Path,
    signature_paths: &[PathBuf],
    policy: &TrustPolicy,
    now: SystemTime,
    limits: &TreeLimits,
    keep: &dyn Fn(&str) -> bool,
) -> Result<VerifiedTree, PackageError> {
    // The model must exist before its absence can be mistaken for "unsigned".
    std::fs::metadata(dir)
        .map_err(|source| PackageError::Io {
            path: dir.to_path_buf(),
            source,
        })
        .map_err(|e| refuse_unreadable(dir, e))?;
    let sig_files = read_signatures(dir, signature_paths).map_err(|e| refuse_unreadable(dir, e))?;
    let signatures: Vec<SignatureFile<'_>> = sig_files
        .iter()
        .map(|(name, bytes)| SignatureFile { name, bytes })
        .collect();
    let mut warnings = Vec::new();
    let (signed, problems) = check_signatures(&signatures, policy, now, &mut warnings);
    if !problems.is_empty() {
        return Err(refuse(dir, problems));
    }
    let signers = check_threshold(&signed, policy).map_err(|p| refuse(dir, p))?;
    let model_name = signed_model_name(&signed).map_err(|p| refuse(dir, p))?;
    check_allowed(&signed, &model_name).map_err(|p| refuse(dir, p))?;
    let ignored_by_all = common_ignores(&signed);
    let inside: Vec<String> = signature_paths
        .iter()
        .filter_map(|p| name_inside(dir, p))
        .collect();
    let skip = |rel: &str| {
        (!rel.contains('/') && is_signature_name(rel))
            || inside.iter().any(|n| n == rel)
            || is_ignored(rel, &ignored_by_all)
    };
    let mut digests = Digests::default();
    let signed_lengths = |rel: &str| crate::signature::verify::signed_length(&signed, rel);
    let tree = read_tree(
        dir,
        &skip,
        keep,
        &signed_lengths,
        limits,
        &hashings(&signed),
        &mut digests,
    );
    let tree = match tree {
        Ok(tree) => tree,
        Err(PackageError::SizeMismatch {
            file,
            declared,
            actual,
        }) => {
            let signature = signed
                .iter()
                .find(|s| s.statement.files.contains_key(&file))
                .map_or_else(String::new, |s| s.signature.clone());
            return Err(refuse(
                dir,
                vec![Problem::LengthChanged {
                    signature,
                    file,
                    signed: declared,
                    actual,
                }],
            ));
        }
        Err(e) => return Err(refuse_unreadable(dir, e)),
    };
    let problems = check_files(
        &signed,
        &tree.file_set(),
        false,
        &mut warnings,
        &mut digests,
    );
    if !problems.is_empty() {
        return Err(refuse(dir, problems));
    }
    let verified = Verified {
        model_name,
        signers,
        warnings,
    };
    audit_verified(dir, &verified);
    Ok(VerifiedTree { tree, verified })
}

/// The signature files: those given, or `dir`'s own.
fn read_signatures(
    dir: &Path,
    signature_paths: &[PathBuf],
) -> Result<Vec<(String, Vec<u8>)>, PackageError> {
    let mut out = Vec::new();
    let read = |path: &Path, name: &str| -> Result<Vec<u8>, PackageError> {
        let file = open_model_file(path, name)?;
        let read = read_model_file(
            file,
            path,
            name,
            MAX_SIGNATURE_BYTES,
            Keep::Held,
            &[],
            &mut Digests::default(),
        )?;
        Ok(read.bytes.unwrap_or_default())
    };
    if !signature_paths.is_empty() {
        for p in signature_paths {
            let name = p.display().to_string();
            out.push((name.clone(), read(p, &name)?));
        }
        return Ok(out);
    }
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| PackageError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_signature_name(n))
        .collect();
    names.sort();
    for name in names {
        out.push((name.clone(), read(&dir.join(&name), &name)?));
    }
    Ok(out)
}

/// The name of `file` if it lies directly in `dir` (a signature written into the model it
/// signs, which the model's files must then leave out).
pub fn name_inside(dir: &Path, file: &Path) -> Option<String> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    (parent.canonicalize().ok()? == dir.canonicalize().ok()?)
        .then(|| file.file_name()?.to_str().map(String::from))
        .flatten()
}
