//! The one verified loader. Every path in ward that opens a package or a signed model
//! directory goes through here:
//!
//! 1. read each signature file, and check each signature against the trust policy
//!    (nothing of the model is read yet);
//! 2. read each file of the model once into memory, hashing large files while they are
//!    read (a second thread hashes each chunk as it arrives);
//! 3. hash the other files (in parallel) and compare every digest with the signed ones;
//! 4. only then parse the same bytes.
//!
//! Every outcome is an audit event. A refusal is [`PackageError::Refused`], listing every
//! problem found.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ward_core::AuditEvent;

use crate::limits::{PackageLimits, MAX_SIGNATURE_BYTES};
use crate::package::{
    is_signature_name, parse, read_file_at, read_raw_package, read_raw_package_with,
};
use crate::signature::verify::{
    check_allowed, check_files, check_signatures, check_threshold, common_ignores, hashings,
    signed_model_name, Digests,
};
use crate::signature::{
    statement::is_ignored, FileSet, Problem, SignatureFile, TrustPolicy, Verified,
};
use crate::tree::{read_tree, Tree, TreeLimits};
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

/// A model directory that passed verification, in memory.
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

/// Audits a failure to read the model at all (a link swapped in, an extra file, ...).
fn refuse_unreadable(dir: &Path, error: PackageError) -> PackageError {
    let reason = match &error {
        PackageError::Symlink { .. } => "symlink",
        PackageError::UnexpectedFile { .. } => "extra-file",
        PackageError::MissingFile { .. } => "missing-file",
        PackageError::NotRegularFile { .. } => "not-a-regular-file",
        PackageError::FileTooLarge { .. } | PackageError::TreeLimit { .. } => "too-large",
        _ => "unreadable",
    };
    AuditEvent::new("package.refused", subject(dir))
        .reason(reason, error.to_string())
        .emit();
    error
}

/// Audits a package whose verified (or explicitly unverified) bytes do not parse.
fn refuse_malformed(dir: &Path, error: PackageError) -> PackageError {
    AuditEvent::new("package.refused", subject(dir))
        .reason("malformed-package", error.to_string())
        .emit();
    error
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

/// Opens a ward package: reads it once, verifies it under `trust`, then parses it.
pub fn open_package(
    dir: &Path,
    trust: &Trust,
    now: SystemTime,
) -> Result<OpenedPackage, PackageError> {
    let limits = PackageLimits::default();
    let policy = match trust {
        Trust::AllowUnsigned => {
            let raw = read_raw_package(dir, &limits).map_err(|e| refuse_unreadable(dir, e))?;
            let files = parse(raw).map_err(|e| refuse_malformed(dir, e))?;
            audit_unverified(dir);
            return Ok(OpenedPackage {
                files,
                verification: Verification::Unverified,
            });
        }
        Trust::Policy(p) => p,
    };
    let mut warnings = Vec::new();
    let mut digests = Digests::default();
    let mut signed = Vec::new();
    // The signatures are checked before any other file is read; the files are then hashed
    // as they are read, with the serializations the signatures use.
    let mut check = |sigs: &[(String, Vec<u8>)]| {
        let signatures: Vec<SignatureFile<'_>> = sigs
            .iter()
            .map(|(name, bytes)| SignatureFile { name, bytes })
            .collect();
        let (ok, problems) = check_signatures(&signatures, policy, now, &mut warnings);
        if !problems.is_empty() {
            return Err(PackageError::Refused {
                package: dir.to_path_buf(),
                problems,
            });
        }
        let to_hash = hashings(&ok);
        signed = ok;
        Ok(to_hash)
    };
    let raw = match read_raw_package_with(dir, &limits, &mut check, &mut digests) {
        Ok(raw) => raw,
        Err(PackageError::Refused { problems, .. }) => return Err(refuse(dir, problems)),
        Err(e) => return Err(refuse_unreadable(dir, e)),
    };
    let files = FileSet::new([
        (MANIFEST_FILE.to_string(), raw.manifest.as_slice()),
        (GRAPH_FILE.to_string(), raw.graph.as_slice()),
        (WEIGHTS_FILE.to_string(), raw.weights.as_slice()),
    ]);
    // A package's files may not hide behind ignore paths: all three are parsed.
    let problems = check_files(&signed, &files, true, &mut warnings, &mut digests);
    if !problems.is_empty() {
        return Err(refuse(dir, problems));
    }
    let signers = check_threshold(&signed, policy).map_err(|p| refuse(dir, p))?;
    // Every byte is verified by enough trusted signers now. The policy's model names match
    // the manifest's name, which the signatures cover; the statement's subject name is
    // informative, as in model-signing (which names it after the directory).
    let manifest = Manifest::from_json(&raw.manifest).map_err(|e| refuse_malformed(dir, e))?;
    check_allowed(&signed, &manifest.name).map_err(|p| refuse(dir, p))?;
    let files = parse(raw).map_err(|e| refuse_malformed(dir, e))?;
    let verified = Verified {
        model_name: manifest.name,
        signers,
        warnings,
    };
    audit_verified(dir, &verified);
    Ok(OpenedPackage {
        files,
        verification: Verification::Signed(verified),
    })
}

/// Verifies any model directory (or single file) signed in the model-signing format and
/// returns its files in memory. `signature_paths` defaults to the directory's own
/// `model.sig` and `model.N.sig`.
pub fn verify_directory(
    dir: &Path,
    signature_paths: &[PathBuf],
    policy: &TrustPolicy,
    now: SystemTime,
    limits: &TreeLimits,
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
    let tree = read_tree(dir, &skip, limits, &hashings(&signed), &mut digests)
        .map_err(|e| refuse_unreadable(dir, e))?;
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
    let signers = check_threshold(&signed, policy).map_err(|p| refuse(dir, p))?;
    let model_name = signed_model_name(&signed).map_err(|p| refuse(dir, p))?;
    check_allowed(&signed, &model_name).map_err(|p| refuse(dir, p))?;
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
    if !signature_paths.is_empty() {
        for p in signature_paths {
            let name = p.display().to_string();
            out.push((name.clone(), read_file_at(p, &name, MAX_SIGNATURE_BYTES)?));
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
        out.push((
            name.clone(),
            read_file_at(&dir.join(&name), &name, MAX_SIGNATURE_BYTES)?,
        ));
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
