//! The verification pipeline: the one way from a directory on disk to bytes ward may parse.
//!
//! Each stage is a type with private fields that only the stage before it makes, and each
//! step consumes that stage, so the steps can only be taken in order and none skipped:
//!
//! 1. [`Listed`]: the directory, listed against its [`Layout`] (only its own regular files,
//!    every required one present; nothing read yet).
//! 2. [`SignaturesRead`]: the signature files, read (a layout's own, or any model
//!    directory's).
//! 3. [`Trusted`]: every signature verified against the trust policy, and enough distinct
//!    signers (the threshold); nothing of the model is read yet. Or, under
//!    [`Trust::AllowUnsigned`], the caller's explicit decision to accept the bytes as they
//!    are, recorded as such to the end.
//! 4. [`NameAllowed`]: the index (the manifest) read, its digest compared with every
//!    statement, then parsed ([`Index::parse`]), and its model name allowed by the policy;
//!    for any model directory, the signed subject name allowed.
//! 5. [`Verified`]: every other file opened, refused if its length is not the one the
//!    verified index records (before a byte is read), read once (held or only hashed),
//!    and every file compared with every statement: digests, missing and extra files.
//!
//! [`Verified`] hands out the verified bytes, and [`Verified::accept`] runs the caller's
//! parser over them and records the outcome. Every refusal on the way is an audit event
//! (`package.refused` with a stable reason) and a [`PackageError::Refused`] (signature
//! problems) or [`PackageError::Rejected`]; every acceptance is one `package.verified` (or
//! `package.unverified`) line.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ward_core::{AuditEvent, Buffer};

use crate::error::PackageError;
use crate::layout::{is_signature_name, Content, FileSpec, Index, Layout, Role};
use crate::limits::MAX_SIGNATURE_BYTES;
use crate::read::{
    open_model_file, read_model_file, read_tensor_parts, read_whole, Keep, ModelFile, ModelParts,
};
use crate::signature::statement::is_ignored;
use crate::signature::verify::{
    check_allowed, check_file, check_files, check_signatures, check_threshold, common_ignores,
    hashings, signed_length, signed_model_name, Digests, SignedStatement,
};
use crate::signature::{FileSet, Hashing, Problem, SignatureFile, TrustPolicy, Verdict};
use crate::tree::{read_tree, Tree, TreeFile, TreeLimits};

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
    Signed(Verdict),
    /// Accepted without verification under [`Trust::AllowUnsigned`].
    Unverified,
}

// ---- audit events: the same reasons for every loader ----

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

/// A file whose length is not the one the index or a sharded signature gives: refused as
/// changed under a policy, as unreadable without one.
fn refuse_length(
    dir: &Path,
    signature: Option<String>,
    file: String,
    declared: u64,
    actual: u64,
) -> PackageError {
    match signature {
        Some(signature) => refuse(
            dir,
            vec![Problem::LengthChanged {
                signature,
                file,
                signed: declared,
                actual,
            }],
        ),
        None => refuse_unreadable(
            dir,
            PackageError::SizeMismatch {
                file,
                declared,
                actual,
            },
        ),
    }
}

// ---- 1. the directory, listed ----

/// A directory listed against its layout: only the layout's regular files, every
/// required one present. Nothing has been read.
#[derive(Debug)]
pub struct Listed {
    dir: PathBuf,
    layout: Layout,
    /// The exact-named files present, the index first.
    files: Vec<&'static str>,
    signatures: Vec<String>,
}

impl Listed {
    /// Lists `dir` as `layout` says.
    pub(crate) fn list(dir: &Path, layout: &Layout) -> Result<Listed, PackageError> {
        let entries = layout.list(dir).map_err(|e| refuse_unreadable(dir, e))?;
        Ok(Listed {
            dir: dir.to_path_buf(),
            layout: layout.clone(),
            files: entries.files,
            signatures: entries.signatures,
        })
    }

    /// Steps 2 and 3 as `trust` says: the signatures read and checked, or the explicit
    /// decision to accept the directory unverified (its signatures are then not read).
    pub(crate) fn trust(
        self,
        trust: &Trust,
        now: SystemTime,
    ) -> Result<Trusted<LayoutFiles>, PackageError> {
        match trust {
            Trust::Policy(policy) => self.read_signatures()?.check(policy, now),
            Trust::AllowUnsigned => Ok(Trusted {
                source: LayoutFiles {
                    layout: self.layout,
                    files: self.files,
                },
                dir: self.dir,
                basis: Basis::Unsigned,
                digests: Digests::default(),
            }),
        }
    }

    /// Step 2: reads each signature file the listing found, within the layout's limit.
    pub(crate) fn read_signatures(self) -> Result<SignaturesRead<LayoutFiles>, PackageError> {
        let limit = self
            .layout
            .signatures()
            .map_or(MAX_SIGNATURE_BYTES, FileSpec::limit);
        let mut signatures = Vec::with_capacity(self.signatures.len());
        for name in self.signatures {
            let bytes =
                read_whole(&self.dir, &name, limit).map_err(|e| refuse_unreadable(&self.dir, e))?;
            signatures.push((name, bytes));
        }
        Ok(SignaturesRead {
            source: LayoutFiles {
                layout: self.layout,
                files: self.files,
            },
            dir: self.dir,
            signatures,
        })
    }
}

/// Where a model's files come from, once its signatures are read: the files a layout
/// listed.
#[derive(Debug)]
pub struct LayoutFiles {
    layout: Layout,
    /// The exact-named files present, the index first.
    files: Vec<&'static str>,
}

/// Where a model's files come from, once its signatures are read: a whole model
/// directory (or single file).
#[derive(Debug)]
pub struct TreeFiles {
    /// Signature files given inside the model directory, which its files leave out.
    signatures_inside: Vec<String>,
}

// ---- 2. the signatures, read ----

/// The signature files of a model, read; nothing of the model itself is read yet.
#[derive(Debug)]
pub struct SignaturesRead<S> {
    dir: PathBuf,
    source: S,
    signatures: Vec<(String, Vec<u8>)>,
}

impl SignaturesRead<TreeFiles> {
    /// The signatures of any model directory (or single file) `dir`: those given, or the
    /// directory's own `model.sig` and `model.N.sig`.
    pub(crate) fn of_tree(
        dir: &Path,
        signature_paths: &[PathBuf],
    ) -> Result<SignaturesRead<TreeFiles>, PackageError> {
        // The model must exist before its absence can be mistaken for "unsigned".
        std::fs::metadata(dir)
            .map_err(|source| PackageError::Io {
                path: dir.to_path_buf(),
                source,
            })
            .map_err(|e| refuse_unreadable(dir, e))?;
        let signatures =
            read_tree_signatures(dir, signature_paths).map_err(|e| refuse_unreadable(dir, e))?;
        let signatures_inside = signature_paths
            .iter()
            .filter_map(|p| name_inside(dir, p))
            .collect();
        Ok(SignaturesRead {
            dir: dir.to_path_buf(),
            source: TreeFiles { signatures_inside },
            signatures,
        })
    }
}

impl<S> SignaturesRead<S> {
    /// Step 3: every signature against `policy` (bundle, signer, ECDSA over the envelope,
    /// statement), then the threshold of distinct signers.
    pub(crate) fn check(
        self,
        policy: &TrustPolicy,
        now: SystemTime,
    ) -> Result<Trusted<S>, PackageError> {
        let dir = self.dir;
        let files: Vec<SignatureFile<'_>> = self
            .signatures
            .iter()
            .map(|(name, bytes)| SignatureFile { name, bytes })
            .collect();
        let mut warnings = Vec::new();
        let (signed, problems) = check_signatures(&files, policy, now, &mut warnings);
        if !problems.is_empty() {
            return Err(refuse(&dir, problems));
        }
        let signers = check_threshold(&signed, policy).map_err(|p| refuse(&dir, p))?;
        let hashings = hashings(&signed);
        Ok(Trusted {
            dir,
            source: self.source,
            basis: Basis::Signed(Signed {
                statements: signed,
                signers,
                warnings,
                hashings,
            }),
            digests: Digests::default(),
        })
    }
}

// ---- 3. the signatures, trusted ----

/// Statements that verified under the trust policy.
#[derive(Debug)]
struct Signed {
    statements: Vec<SignedStatement>,
    /// Distinct trusted signers, at least the policy's threshold.
    signers: Vec<String>,
    warnings: Vec<String>,
    /// Every serialization the statements use: what to hash while reading.
    hashings: Vec<Hashing>,
}

/// Why the model's bytes may be read on.
#[derive(Debug)]
enum Basis {
    Signed(Signed),
    /// [`Trust::AllowUnsigned`]: nothing to compare the bytes with.
    Unsigned,
}

impl Basis {
    fn signed(&self) -> Option<&Signed> {
        match self {
            Basis::Signed(s) => Some(s),
            Basis::Unsigned => None,
        }
    }

    fn hashings(&self) -> &[Hashing] {
        self.signed().map_or(&[], |s| &s.hashings)
    }
}

/// A model whose signatures verified and met the threshold (or that the caller chose to
/// accept unsigned); none of its files is read yet.
#[derive(Debug)]
pub struct Trusted<S> {
    dir: PathBuf,
    source: S,
    basis: Basis,
    /// Digests of files hashed while they were read.
    digests: Digests,
}

impl Trusted<LayoutFiles> {
    /// Step 4 for a layout: reads the index whole, compares it with every statement (each
    /// must list it), and only then parses it; the policy must allow its model name.
    pub(crate) fn read_index<I: Index>(
        mut self,
    ) -> Result<NameAllowed<LayoutFiles, I>, PackageError> {
        let dir = self.dir.clone();
        let layout = &self.source.layout;
        let name = layout.index_name();
        let limit = layout.index().limit();
        let path = dir.join(name);
        let read = open_model_file(&path, name)
            .and_then(|file| {
                read_model_file(
                    file,
                    &path,
                    name,
                    limit,
                    Keep::Held,
                    self.basis.hashings(),
                    &mut self.digests,
                )
            })
            .map_err(|e| refuse_unreadable(&dir, e))?;
        let bytes = read.bytes.unwrap_or_default();
        if let Basis::Signed(signed) = &self.basis {
            let set = FileSet::new([(name.to_string(), &bytes[..])]);
            let mut problems = must_list(&signed.statements, name);
            problems.extend(check_file(
                &signed.statements,
                &set,
                name,
                &mut self.digests,
            ));
            if !problems.is_empty() {
                return Err(refuse(&dir, problems));
            }
        }
        // Verified (or explicitly accepted unverified): now it may be parsed.
        let index = I::parse(&bytes).map_err(|e| refuse_malformed(&dir, e))?;
        // The policy's model names match the index's name, which the signatures cover;
        // the statement's subject name is informative, as in model-signing (which names
        // it after the directory).
        let model_name = index.model_name().to_string();
        if let Basis::Signed(signed) = &self.basis {
            check_allowed(&signed.statements, &model_name).map_err(|p| refuse(&dir, p))?;
        }
        Ok(NameAllowed {
            trusted: self,
            model_name,
            index,
            index_file: Some(VerifiedFile {
                path: name.to_string(),
                len: read.len,
                bytes: Some(bytes),
                parts: Vec::new(),
            }),
        })
    }
}

impl Trusted<TreeFiles> {
    /// Step 4 for any model directory: the statements must name the model alike, and the
    /// policy must allow that name.
    pub(crate) fn signed_name(self) -> Result<NameAllowed<TreeFiles, ()>, PackageError> {
        let Basis::Signed(signed) = &self.basis else {
            return Err(refuse(&self.dir, vec![Problem::Unsigned]));
        };
        let model_name = signed_model_name(&signed.statements).map_err(|p| refuse(&self.dir, p))?;
        check_allowed(&signed.statements, &model_name).map_err(|p| refuse(&self.dir, p))?;
        Ok(NameAllowed {
            trusted: self,
            model_name,
            index: (),
            index_file: None,
        })
    }
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

// ---- 4. the model's name, allowed ----

/// A model whose signers may sign its name; for a layout, its index verified and parsed.
/// The other files are not read yet.
#[derive(Debug)]
pub struct NameAllowed<S, I> {
    trusted: Trusted<S>,
    model_name: String,
    index: I,
    index_file: Option<VerifiedFile>,
}

impl<I: Index> NameAllowed<LayoutFiles, I> {
    /// Step 5 for a layout: each other file is opened, refused if its length is not the
    /// one the index records, then read once: held when the layout parses it and `keep`
    /// is [`Keep::Held`], otherwise only hashed. Then every file against every statement;
    /// a layout's files may not hide behind ignore paths.
    pub(crate) fn read_files(mut self, keep: Keep) -> Result<Verified<I>, PackageError> {
        let dir = self.trusted.dir.clone();
        let LayoutFiles { layout, files } = &self.trusted.source;
        let index_name = layout.index_name();
        let signed = self.trusted.basis.signed();
        let mut read = Vec::new();
        read.extend(self.index_file.take());
        for spec in layout.contents() {
            let Some(name) = spec.exact_name().filter(|n| files.contains(n)) else {
                continue;
            };
            let path = dir.join(name);
            let file = open_model_file(&path, name).map_err(|e| refuse_unreadable(&dir, e))?;
            let recorded = spec
                .is_size_recorded()
                .then(|| self.index.recorded_size(name))
                .flatten();
            if let Some(declared) = recorded {
                if file.len() != declared {
                    let signature = signed.map(|_| index_name.to_string());
                    return Err(refuse_length(
                        &dir,
                        signature,
                        name.to_string(),
                        declared,
                        file.len(),
                    ));
                }
            }
            let how = match (keep, spec.content()) {
                (Keep::Held, Content::Parsed) => Keep::Held,
                _ => Keep::Streamed,
            };
            // The weights are held a tensor to a buffer, so that each tensor's bytes can
            // be freed once the engine holds its own copy (see `read_tensor_parts`).
            let (len, bytes, parts) = if how == Keep::Held && spec.role() == Role::Weights {
                let ModelParts { len, parts } = read_tensor_parts(
                    file,
                    &path,
                    name,
                    spec.limit(),
                    self.trusted.basis.hashings(),
                    &mut self.trusted.digests,
                )
                .map_err(|e| refuse_unreadable(&dir, e))?;
                (len, None, parts)
            } else {
                let ModelFile { len, bytes } = read_model_file(
                    file,
                    &path,
                    name,
                    spec.limit(),
                    how,
                    self.trusted.basis.hashings(),
                    &mut self.trusted.digests,
                )
                .map_err(|e| refuse_unreadable(&dir, e))?;
                (len, bytes, Vec::new())
            };
            read.push(VerifiedFile {
                path: name.to_string(),
                len,
                bytes,
                parts,
            });
        }
        self.trusted
            .match_files(read, true, self.model_name, self.index)
    }
}

impl NameAllowed<TreeFiles, ()> {
    /// Step 5 for any model directory: reads it (no links or special files anywhere,
    /// bounded by `limits`), skipping signatures and the paths every statement ignores,
    /// keeping the files `keep` names and only hashing the others; a length a sharded
    /// signature gives is checked before the file is read. Then every file against every
    /// statement.
    pub(crate) fn read_tree(
        mut self,
        limits: &TreeLimits,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Verified<()>, PackageError> {
        let dir = self.trusted.dir.clone();
        let Some(signed) = self.trusted.basis.signed() else {
            return Err(refuse(&dir, vec![Problem::Unsigned]));
        };
        let inside = &self.trusted.source.signatures_inside;
        let ignored_by_all = common_ignores(&signed.statements);
        let skip = |rel: &str| {
            (!rel.contains('/') && is_signature_name(rel))
                || inside.iter().any(|n| n == rel)
                || is_ignored(rel, &ignored_by_all)
        };
        let signed_lengths = |rel: &str| signed_length(&signed.statements, rel);
        let tree = read_tree(
            &dir,
            &skip,
            keep,
            &signed_lengths,
            limits,
            &signed.hashings,
            &mut self.trusted.digests,
        );
        let tree = match tree {
            Ok(tree) => tree,
            Err(PackageError::SizeMismatch {
                file,
                declared,
                actual,
            }) => {
                let signature = signed
                    .statements
                    .iter()
                    .find(|s| s.statement.files.contains_key(&file))
                    .map_or_else(String::new, |s| s.signature.clone());
                return Err(refuse_length(&dir, Some(signature), file, declared, actual));
            }
            Err(e) => return Err(refuse_unreadable(&dir, e)),
        };
        let files = tree
            .files
            .into_iter()
            .map(|f| VerifiedFile {
                path: f.path,
                len: f.len,
                bytes: f.bytes,
                parts: Vec::new(),
            })
            .collect();
        self.trusted.match_files(files, false, self.model_name, ())
    }
}

impl<S> Trusted<S> {
    /// Compares `files` with every statement (with `require_all`, none may hide behind an
    /// ignore path), and makes the last stage.
    fn match_files<I>(
        mut self,
        files: Vec<VerifiedFile>,
        require_all: bool,
        model_name: String,
        index: I,
    ) -> Result<Verified<I>, PackageError> {
        let verification = match self.basis {
            Basis::Signed(mut signed) => {
                let set = FileSet::with_lengths(
                    files
                        .iter()
                        .map(|f| (f.path.clone(), f.len, f.bytes.as_deref())),
                );
                let problems = check_files(
                    &signed.statements,
                    &set,
                    require_all,
                    &mut signed.warnings,
                    &mut self.digests,
                );
                if !problems.is_empty() {
                    return Err(refuse(&self.dir, problems));
                }
                Verification::Signed(Verdict::new(model_name, signed.signers, signed.warnings))
            }
            Basis::Unsigned => Verification::Unverified,
        };
        Ok(Verified {
            dir: self.dir,
            index,
            files,
            verification,
            digests: self.digests,
        })
    }
}

// ---- 5. verified ----

/// One file as the pipeline read it: its path, its length, and its bytes when held,
/// whole or (the weights) in consecutive parts.
#[derive(Debug)]
struct VerifiedFile {
    path: String,
    len: u64,
    bytes: Option<Buffer>,
    parts: Vec<Buffer>,
}

/// A model whose every file matched every statement (or, under
/// [`Trust::AllowUnsigned`], was read by the same rules and is marked unverified): the
/// only holder of bytes the parsers may read. The files the layout parses are held, as
/// the caller asked; the others were only hashed.
#[derive(Debug)]
pub struct Verified<I> {
    dir: PathBuf,
    index: I,
    files: Vec<VerifiedFile>,
    verification: Verification,
    /// The digests verification computed, for callers that need a file's digest.
    digests: Digests,
}

/// What [`Verified::accept`] gives: the index, what the caller parsed, and how the model
/// was accepted.
#[derive(Debug)]
pub struct Accepted<I, T> {
    pub index: I,
    pub parsed: T,
    pub verification: Verification,
}

impl<I> Verified<I> {
    /// The directory verified.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The verified index (a package's manifest), parsed.
    pub fn index(&self) -> &I {
        &self.index
    }

    /// How the model was accepted.
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    /// The SHA-256 of file `path` as verification computed it while reading, if the
    /// signatures use model-signing's default hashing (none for an unsigned model).
    pub fn sha256_of(&self, path: &str) -> Option<[u8; 32]> {
        self.digests.whole_file_sha256(path)
    }

    /// How many files were verified, signatures aside.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Each verified file's relative path and length.
    pub fn files(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.files.iter().map(|f| (f.path.as_str(), f.len))
    }

    /// The verified bytes of a held file.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .and_then(|f| f.bytes.as_deref())
    }

    /// The verified bytes of a held file in the consecutive parts they were read in
    /// (one part for a file held whole), taken out.
    pub fn take_parts(&mut self, path: &str) -> Option<Vec<Buffer>> {
        let file = self.files.iter_mut().find(|f| f.path == path)?;
        if !file.parts.is_empty() {
            return Some(std::mem::take(&mut file.parts));
        }
        file.bytes.take().map(|b| vec![b])
    }

    /// The verified bytes of a held file, taken out (`None` for a file held in parts:
    /// see [`Verified::take_parts`]).
    pub fn take(&mut self, path: &str) -> Option<Buffer> {
        self.files
            .iter_mut()
            .find(|f| f.path == path)
            .and_then(|f| f.bytes.take())
    }

    /// The files as a [`Tree`] (those not held with their length only).
    pub(crate) fn take_tree(&mut self) -> Tree {
        Tree {
            files: std::mem::take(&mut self.files)
                .into_iter()
                .map(|f| TreeFile {
                    path: f.path,
                    len: f.len,
                    bytes: f.bytes,
                })
                .collect(),
        }
    }

    /// The end of every loader: `parse` reads what the caller needs from the verified
    /// bytes. When it fails, the model is refused as `malformed-package`; when it
    /// succeeds, the acceptance is recorded: `package.verified` (with the signers) or
    /// `package.unverified`.
    pub fn accept<T>(
        mut self,
        parse: impl FnOnce(&mut Verified<I>) -> Result<T, PackageError>,
    ) -> Result<Accepted<I, T>, PackageError> {
        let parsed = parse(&mut self).map_err(|e| refuse_malformed(&self.dir, e))?;
        match &self.verification {
            Verification::Signed(v) => AuditEvent::new("package.verified", subject(&self.dir))
                .signer(v.signers().join(","))
                .emit(),
            Verification::Unverified => AuditEvent::new("package.unverified", subject(&self.dir))
                .reason(
                    "allow-unsigned",
                    "loaded without signature verification (--allow-unsigned)",
                )
                .emit(),
        }
        Ok(Accepted {
            index: self.index,
            parsed,
            verification: self.verification,
        })
    }
}

// ---- helpers for model directories ----

/// The signature files of a model directory: those given, or `dir`'s own.
fn read_tree_signatures(
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
        Ok(read.bytes.map(Buffer::into_vec).unwrap_or_default())
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
