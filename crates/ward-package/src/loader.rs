//! The one verified loader. Every path in ward that opens a package, a checkpoint or a
//! signed model directory goes through here, and every one is the same pipeline
//! ([`crate::pipeline`]). For a directory a [`Layout`] describes (a package):
//!
//! 1. list the directory (only the layout's own regular files);
//! 2. read each signature file and check each signature against the trust policy, and
//!    that enough distinct trusted signers signed (nothing of the model is read yet);
//! 3. read the index (`ward.json`), compare its digest with every signed statement, and
//!    only then parse it: its name must be one the signers may sign, and it gives the
//!    byte length of the other files (the graph and the weights);
//! 4. open each other file, refuse it if its length is not the signed one (so a huge file
//!    dropped into a package is refused before a byte of it is read), read each once
//!    (held, or only hashed for `ward verify`), hashing large files while they are read,
//!    and compare every file with every statement (digests, missing and extra files);
//! 5. only then parse what the caller needs from the same bytes: the weights.
//!
//! Every outcome is an audit event; every refusal is [`PackageError::Refused`] (signature
//! problems, all of them) or [`PackageError::Rejected`] (a file that cannot be read within
//! the rules, or verified bytes that do not parse), and nothing else.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ward_core::Buffer;

use crate::error::PackageError;
use crate::layout::{Index, Layout, WEIGHTS_FILE};
use crate::limits::PackageLimits;
use crate::manifest::Manifest;
use crate::package::PackageFiles;
use crate::pipeline::{Accepted, Listed, SignaturesRead, Verified};
use crate::read::Keep;
use crate::signature::{Problem, TrustPolicy, Verdict};
use crate::tree::{Tree, TreeLimits};
use crate::weights::{first_nonfinite, read_weights_parts};

pub use crate::pipeline::{name_inside, Trust, Verification};

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
    pub verified: Verdict,
    /// The files verified, signatures aside (a package has three).
    pub file_count: usize,
}

/// A model directory that passed verification, with the files asked for in memory.
#[derive(Debug)]
pub struct VerifiedTree {
    pub tree: Tree,
    pub verified: Verdict,
}

/// Opens any directory `layout` describes, under `trust`: the whole pipeline, then
/// `parse` over the verified bytes ([`Verified::accept`]). With [`Keep::Held`] the files
/// the layout parses are held for `parse`; with [`Keep::Streamed`] every file but the
/// index is only hashed.
pub fn open_layout<I: Index, T>(
    dir: &Path,
    layout: &Layout,
    trust: &Trust,
    now: SystemTime,
    keep: Keep,
    parse: impl FnOnce(&mut Verified<I>) -> Result<T, PackageError>,
) -> Result<Accepted<I, T>, PackageError> {
    Listed::list(dir, layout)?
        .trust(trust, now)?
        .read_index::<I>()?
        .read_files(keep)?
        .accept(parse)
}

/// Opens a ward package: reads it once, verifies it under `trust`, then parses it, every
/// file within `limits`.
pub fn open_package(
    dir: &Path,
    trust: &Trust,
    now: SystemTime,
    limits: &PackageLimits,
) -> Result<OpenedPackage, PackageError> {
    let layout = Layout::package(limits);
    let accepted = open_layout(dir, &layout, trust, now, Keep::Held, |verified| {
        parse_package(dir, verified)
    })?;
    let (graph_json, weights) = accepted.parsed;
    Ok(OpenedPackage {
        files: PackageFiles {
            manifest: accepted.index,
            graph_json,
            weights,
        },
        verification: accepted.verification,
    })
}

/// The graph's bytes and the weights, parsed from a verified package; a non-finite weight
/// the manifest does not declare refuses it.
#[allow(clippy::type_complexity)]
fn parse_package(
    dir: &Path,
    verified: &mut Verified<Manifest>,
) -> Result<(Vec<u8>, Vec<(String, ward_core::Tensor)>), PackageError> {
    // The verified bytes become the tensors, which share them, a part to a tensor.
    let weights = read_weights_parts(verified.take_parts(WEIGHTS_FILE).unwrap_or_default())?;
    let manifest = verified.index();
    let graph_file = manifest.graph.clone();
    if let Some((tensor, index)) = first_nonfinite(&weights) {
        let what = format!("weights.safetensors: tensor {tensor:?} element {index} is not finite");
        if manifest.format_version >= 2 && !manifest.nonfinite_weights {
            return Err(PackageError::Inconsistent {
                reason: format!(
                    "{what}, and ward.json does not declare nonfinite_weights (imported with --allow-nonfinite-weights)"
                ),
            });
        }
        if !manifest.nonfinite_weights {
            tracing::warn!("{}: {what}", dir.display());
        }
    }
    let graph_json = verified
        .take(&graph_file)
        .map(Buffer::into_vec)
        .unwrap_or_default();
    Ok((graph_json, weights))
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
    let layout = Layout::package(limits);
    let accepted = open_layout(dir, &layout, &trust, now, Keep::Streamed, |verified| {
        Ok(verified.file_count())
    })?;
    let Verification::Signed(verified) = accepted.verification else {
        // A policy never gives an unverified package.
        return Err(PackageError::Refused {
            package: dir.to_path_buf(),
            problems: vec![Problem::Unsigned],
        });
    };
    Ok(VerifiedPackage {
        manifest: accepted.index,
        verified,
        file_count: accepted.parsed,
    })
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
    let accepted = SignaturesRead::of_tree(dir, signature_paths)?
        .check(policy, now)?
        .signed_name()?
        .read_tree(limits, keep)?
        .accept(|verified| Ok(verified.take_tree()))?;
    let Verification::Signed(verified) = accepted.verification else {
        // A policy never gives an unverified model.
        return Err(PackageError::Refused {
            package: dir.to_path_buf(),
            problems: vec![Problem::Unsigned],
        });
    };
    Ok(VerifiedTree {
        tree: accepted.parsed,
        verified,
    })
}

#[cfg(test)]
mod tests {
    //! A second layout, not a package, through the same loader and the same writer.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::layout::{FileSpec, Role, MANIFEST_FILE};
    use crate::package::sign_options;
    use crate::signature::{sign, FileSet, PrivateKey};
    use crate::write::write_layout;
    use std::fs;

    const INDEX: &str = "checkpoint.json";
    const STATE: &str = "state.age";

    /// A toy checkpoint index: the model it trains, and the size of its state.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Checkpoint {
        model: String,
        state_bytes: u64,
    }

    impl Index for Checkpoint {
        fn parse(bytes: &[u8]) -> Result<Checkpoint, PackageError> {
            serde_json::from_slice(bytes).map_err(|e| PackageError::Inconsistent {
                reason: format!("{INDEX}: {e}"),
            })
        }
        fn model_name(&self) -> &str {
            &self.model
        }
        fn recorded_size(&self, file: &str) -> Option<u64> {
            (file == STATE).then_some(self.state_bytes)
        }
    }

    fn checkpoint_layout() -> Layout {
        Layout::new(
            vec![
                FileSpec::index(INDEX, 4096),
                FileSpec::file(STATE, Role::State, 1 << 20)
                    .size_recorded()
                    .private(),
                FileSpec::signatures(1 << 16),
            ],
            8,
        )
        .unwrap()
    }

    const STATE_BYTES: &[u8] = b"age-encryption.org/v1 (toy)";

    /// A signed checkpoint written by the layout writer: (guard, directory).
    fn signed_checkpoint(key: &PrivateKey) -> (tempfile::TempDir, PathBuf) {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("step-100");
        let index = format!(
            r#"{{"model": "mnist-mlp", "state_bytes": {}}}"#,
            STATE_BYTES.len()
        );
        let files = FileSet::new([
            (INDEX.to_string(), index.as_bytes()),
            (STATE.to_string(), STATE_BYTES),
        ]);
        let signature = sign(
            &files,
            key,
            &sign_options("mnist-mlp", &["model.sig".into()]),
        );
        write_layout(
            &dir,
            &checkpoint_layout(),
            &[
                (INDEX, index.as_bytes()),
                (STATE, STATE_BYTES),
                ("model.sig", &signature),
            ],
        )
        .unwrap();
        (parent, dir)
    }

    fn open(dir: &Path, trust: &Trust) -> Result<Accepted<Checkpoint, Vec<u8>>, PackageError> {
        open_layout(
            dir,
            &checkpoint_layout(),
            trust,
            SystemTime::now(),
            Keep::Held,
            |verified: &mut Verified<Checkpoint>| {
                verified
                    .take(STATE)
                    .map(Buffer::into_vec)
                    .ok_or(PackageError::MissingFile { file: STATE })
            },
        )
    }

    fn problems(result: Result<Accepted<Checkpoint, Vec<u8>>, PackageError>) -> Vec<Problem> {
        match result {
            Err(PackageError::Refused { problems, .. }) => problems,
            Err(other) => panic!("expected a refusal, got {other}"),
            Ok(a) => panic!("expected a refusal, got {:?}", a.verification),
        }
    }

    #[test]
    fn a_checkpoint_layout_verifies_and_refuses_through_the_same_loader() {
        let key = PrivateKey::generate_p256().unwrap();
        let trust = Trust::Policy(TrustPolicy::single_key("trainer", key.public_key()));
        let (_parent, dir) = signed_checkpoint(&key);

        let accepted = open(&dir, &trust).unwrap();
        assert_eq!(accepted.parsed, STATE_BYTES);
        assert_eq!(accepted.index.model, "mnist-mlp");
        let Verification::Signed(verdict) = &accepted.verification else {
            panic!("expected a signed verification");
        };
        assert_eq!(verdict.model_name(), "mnist-mlp");
        assert_eq!(verdict.signers(), ["trainer"]);

        // The same bytes, streamed: nothing of the state is kept.
        let streamed = open_layout(
            &dir,
            &checkpoint_layout(),
            &trust,
            SystemTime::now(),
            Keep::Streamed,
            |v: &mut Verified<Checkpoint>| Ok((v.get(STATE).is_some(), v.file_count())),
        )
        .unwrap();
        assert_eq!(streamed.parsed, (false, 2));

        // Another key: refused before anything of the checkpoint is read.
        let other = PrivateKey::generate_p256().unwrap();
        let untrusted = Trust::Policy(TrustPolicy::single_key("other", other.public_key()));
        assert!(matches!(
            problems(open(&dir, &untrusted)).as_slice(),
            [Problem::UntrustedKey { .. }]
        ));

        // One byte of the state changed, its length kept.
        let path = dir.join(STATE);
        let mut changed = STATE_BYTES.to_vec();
        changed[0] ^= 1;
        fs::write(&path, &changed).unwrap();
        assert!(matches!(
            problems(open(&dir, &trust)).as_slice(),
            [Problem::DigestMismatch { file, .. }] if file == STATE
        ));

        // A state of another length than the verified index records: refused before it
        // is read, naming the index.
        changed.push(0);
        fs::write(&path, &changed).unwrap();
        assert_eq!(
            problems(open(&dir, &trust)),
            [Problem::LengthChanged {
                signature: INDEX.into(),
                file: STATE.into(),
                signed: STATE_BYTES.len() as u64,
                actual: changed.len() as u64,
            }]
        );
        // Without a policy, the same size check, as an unreadable checkpoint.
        let err = open(&dir, &Trust::AllowUnsigned).unwrap_err();
        assert!(
            matches!(
                err,
                PackageError::Rejected {
                    reason: "size-mismatch",
                    ..
                }
            ),
            "{err}"
        );
        fs::write(&path, STATE_BYTES).unwrap();
        assert!(matches!(
            open(&dir, &Trust::AllowUnsigned).unwrap().verification,
            Verification::Unverified
        ));

        // A file the layout does not hold, even one a package holds.
        fs::write(dir.join(MANIFEST_FILE), b"{}").unwrap();
        let err = open(&dir, &trust).unwrap_err();
        assert!(
            matches!(err.cause(), PackageError::UnexpectedFile { file, expected }
                if file == MANIFEST_FILE && expected == "checkpoint.json, state.age, model.sig or model.N.sig"),
            "{err}"
        );
        fs::remove_file(dir.join(MANIFEST_FILE)).unwrap();
        // And the package layout does not open a checkpoint.
        let err =
            open_package(&dir, &trust, SystemTime::now(), &PackageLimits::default()).unwrap_err();
        assert!(
            matches!(err.cause(), PackageError::UnexpectedFile { file, .. } if file == INDEX),
            "{err}"
        );
        // A missing state.
        fs::remove_file(&path).unwrap();
        let err = open(&dir, &trust).unwrap_err();
        assert!(
            matches!(err.cause(), PackageError::MissingFile { file: STATE }),
            "{err}"
        );
    }

    #[test]
    fn a_checkpoint_index_is_verified_before_it_is_parsed() {
        let key = PrivateKey::generate_p256().unwrap();
        let trust = Trust::Policy(TrustPolicy::single_key("trainer", key.public_key()));
        let (_parent, dir) = signed_checkpoint(&key);
        // Not JSON any more: refused as changed, not as malformed.
        fs::write(dir.join(INDEX), b"not json, but signed? no").unwrap();
        assert!(matches!(
            problems(open(&dir, &trust)).as_slice(),
            [Problem::DigestMismatch { file, .. }] if file == INDEX
        ));
        // Unverified, the same bytes reach the parser, which refuses them.
        let err = open(&dir, &Trust::AllowUnsigned).unwrap_err();
        assert!(
            matches!(
                err,
                PackageError::Rejected {
                    reason: "malformed-package",
                    ..
                }
            ),
            "{err}"
        );
    }
}
