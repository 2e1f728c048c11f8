//! Verifying a model's signatures against a trust policy.
//!
//! The steps, which the verified loader ([`crate::pipeline`]) takes in order, so that no
//! file of the model is read before its signatures are known good:
//! 1. `check_signatures`: for each signature file, parse the bundle, find the signer in
//!    the policy (key hint, or certificate chain to a trusted CA at the current time), check
//!    the ECDSA signature over the envelope, and only then parse the signed statement.
//! 2. `check_files`: hash the files (read once, in memory, by the caller) and compare
//!    them with every signed statement: digests, missing and extra files.
//! 3. `check_threshold` and `check_allowed`: enough distinct signers signed, and each
//!    may sign the model's name.
//!
//! Every signature present must pass both steps, and at least `threshold` distinct
//! trusted signers must have signed. Each problem is reported on its own.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use super::bundle::{pae, Bundle, Material, PAYLOAD_TYPE};
use super::cert::verify_chain;
use super::hashing::{hash_files, Granularity, HashedItem, Hashing};
use super::policy::{name_matches, TrustPolicy};
use super::statement::{is_ignored, Statement};
use super::FileSet;
use crate::problem::Problem;

/// Digests of files by serialization, then by path: those hashed while reading, completed
/// by `check_files`.
#[derive(Debug, Default)]
pub struct Digests {
    by_hashing: HashMap<Hashing, HashMap<String, Vec<HashedItem>>>,
}

impl Digests {
    /// Records a file's items for `hashing`.
    pub fn insert(&mut self, hashing: Hashing, path: &str, items: Vec<HashedItem>) {
        self.by_hashing
            .entry(hashing)
            .or_default()
            .insert(path.to_string(), items);
    }

    /// Records the SHA-256 of the whole file `path` (of `len` bytes), computed by the
    /// caller as it wrote or read it, under model-signing's default hashing.
    pub fn insert_whole_file_sha256(&mut self, path: &str, len: u64, sha256: [u8; 32]) {
        let item = HashedItem {
            path: path.to_string(),
            range: 0..len,
            digest: sha256.to_vec(),
        };
        self.insert(Hashing::DEFAULT, path, vec![item]);
    }

    /// The SHA-256 of the whole file `path`, if it was hashed that way (model-signing's
    /// default hashing).
    pub fn whole_file_sha256(&self, path: &str) -> Option<[u8; 32]> {
        match self
            .by_hashing
            .get(&Hashing::DEFAULT)?
            .get(path)?
            .as_slice()
        {
            [item] => item.digest.as_slice().try_into().ok(),
            _ => None,
        }
    }

    /// The items of every file of `files` under `hashing`, hashing those not yet known.
    pub fn complete(
        &mut self,
        files: &FileSet<'_>,
        hashing: Hashing,
    ) -> &HashMap<String, Vec<HashedItem>> {
        let known = self.by_hashing.entry(hashing).or_default();
        // Streamed files were hashed as they were read; a held file not yet hashed is
        // hashed now.
        let missing = FileSet::new(
            files
                .held()
                .filter(|(p, _)| !known.contains_key(*p))
                .map(|(p, b)| (p.to_string(), b)),
        );
        if !missing.is_empty() {
            for (path, _) in missing.iter() {
                known.insert(path.to_string(), Vec::new());
            }
            for item in hash_files(&missing, hashing) {
                if let Some(items) = known.get_mut(&item.path) {
                    items.push(item);
                }
            }
        }
        known
    }
}

/// The serializations `signed` use, each once: what to hash while reading.
pub(crate) fn hashings(signed: &[SignedStatement]) -> Vec<Hashing> {
    let mut out: Vec<Hashing> = Vec::new();
    for s in signed {
        if !out.contains(&s.statement.hashing) {
            out.push(s.statement.hashing);
        }
    }
    out
}

/// A signature file: its name (for messages) and bytes.
#[derive(Debug, Clone, Copy)]
pub struct SignatureFile<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// A signature whose envelope verified with a trusted signer; its files are not yet
/// checked.
#[derive(Debug, Clone)]
pub(crate) struct SignedStatement {
    pub signature: String,
    /// The policy's name for the signer (`release`, or `corp:CN=...` for a certificate).
    pub signer: String,
    /// What makes two signers distinct: the signing key's hint.
    pub signer_key: String,
    /// The model names the policy lets this signer sign.
    pub models: Vec<glob::Pattern>,
    pub statement: Statement,
}

/// The signatures' verdict on a model that passed verification: its name, who signed
/// it, and what is worth telling. Only the verified loader makes one
/// ([`crate::pipeline`]), after every step.
#[derive(Debug, Clone)]
pub struct Verdict {
    model_name: String,
    signers: Vec<String>,
    warnings: Vec<String>,
}

impl Verdict {
    pub(crate) fn new(model_name: String, signers: Vec<String>, warnings: Vec<String>) -> Self {
        Verdict {
            model_name,
            signers,
            warnings,
        }
    }

    /// The name the trust policy matched: the manifest's for a package, the signed
    /// subject name for any other model directory.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// Distinct signers, by policy name.
    pub fn signers(&self) -> &[String] {
        &self.signers
    }

    /// Things worth telling the user that do not refuse the model.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Step 1: the signatures, without the files. Returns the statements that verified and
/// the problems of the others; warnings (no key hint) go to `warnings`.
pub(crate) fn check_signatures(
    signatures: &[SignatureFile<'_>],
    policy: &TrustPolicy,
    now: SystemTime,
    warnings: &mut Vec<String>,
) -> (Vec<SignedStatement>, Vec<Problem>) {
    let mut signed = Vec::new();
    let mut problems = Vec::new();
    if signatures.is_empty() {
        problems.push(Problem::Unsigned);
    }
    if policy.is_empty() {
        problems.push(Problem::NothingTrusted);
        return (signed, problems);
    }
    for sig in signatures {
        match check_one(sig, policy, now, warnings) {
            Ok(s) => signed.push(s),
            Err(p) => problems.push(p),
        }
    }
    (signed, problems)
}

// A refusal is the rare, slow path: a large error is no cost worth boxing for.
#[allow(clippy::result_large_err)]
fn check_one(
    sig: &SignatureFile<'_>,
    policy: &TrustPolicy,
    now: SystemTime,
    warnings: &mut Vec<String>,
) -> Result<SignedStatement, Problem> {
    let signature = sig.name.to_string();
    let bundle = Bundle::parse(sig.bytes).map_err(|reason| Problem::Malformed {
        signature: signature.clone(),
        reason,
    })?;
    let message = pae(PAYLOAD_TYPE, &bundle.payload);
    // (policy name, key hint, model patterns) of the signer whose key verified.
    let (signer, signer_key, models) = match &bundle.material {
        Material::PublicKey { hint: Some(hint) } => {
            let Some(k) = policy.keys.iter().find(|k| k.key.hint() == *hint) else {
                return Err(Problem::UntrustedKey {
                    signature,
                    hint: hint.clone(),
                });
            };
            if !k.key.verify(&message, &bundle.signature) {
                return Err(Problem::BadSignature {
                    signature,
                    signer: Some(k.name.clone()),
                });
            }
            (k.name.clone(), hint.clone(), &k.models)
        }
        Material::PublicKey { hint: None } => {
            warnings.push(format!(
                "{signature}: the signature names no key (legacy format); tried every key of the policy"
            ));
            let Some(k) = policy
                .keys
                .iter()
                .find(|k| k.key.verify(&message, &bundle.signature))
            else {
                return Err(Problem::BadSignature {
                    signature,
                    signer: None,
                });
            };
            (k.name.clone(), k.key.hint(), &k.models)
        }
        Material::Certificates(chain) => {
            let cas: Vec<Vec<u8>> = policy.cas.iter().map(|c| c.certificate.clone()).collect();
            if cas.is_empty() {
                return Err(Problem::UntrustedCertificate {
                    signature,
                    reason: "signed with a certificate, but the trust policy lists no CA".into(),
                });
            }
            let certified =
                verify_chain(chain, &cas, now).map_err(|reason| Problem::UntrustedCertificate {
                    signature: signature.clone(),
                    reason,
                })?;
            // `verify_chain` names one of the CAs it was given, which are the policy's.
            let Some(ca) = policy.cas.get(certified.ca) else {
                return Err(Problem::UntrustedCertificate {
                    signature,
                    reason: "the chain ends at a CA the trust policy does not list".into(),
                });
            };
            let name = format!("{}:{}", ca.name, certified.subject);
            if !certified.leaf_key.verify(&message, &bundle.signature) {
                return Err(Problem::BadSignature {
                    signature,
                    signer: Some(name),
                });
            }
            (name, certified.leaf_key.hint(), &ca.models)
        }
    };
    let statement = Statement::parse(&bundle.payload).map_err(|reason| Problem::BadStatement {
        signature: signature.clone(),
        reason,
    })?;
    Ok(SignedStatement {
        signature,
        signer,
        signer_key,
        models: models.clone(),
        statement,
    })
}

/// The paths every verified signature ignores: files under them need not be read.
pub(crate) fn common_ignores(signed: &[SignedStatement]) -> Vec<String> {
    let Some((first, rest)) = signed.split_first() else {
        return Vec::new();
    };
    first
        .statement
        .ignore_paths
        .iter()
        .filter(|p| rest.iter().all(|s| s.statement.ignore_paths.contains(p)))
        .cloned()
        .collect()
}

/// Step 2: compares the files with every verified statement. With `require_all`, every
/// file in `files` must be signed (a package's files may not hide behind ignore paths).
///
/// A sharded signature cannot list an empty file (it has no shard): such a file is
/// accepted, as by the reference, with a warning.
///
/// `digests` holds what is already hashed (files hashed while they were read, which
/// streamed files must be); the held files not yet hashed are hashed here, in parallel,
/// once per serialization however many signatures use it.
pub(crate) fn check_files(
    signed: &[SignedStatement],
    files: &FileSet<'_>,
    require_all: bool,
    warnings: &mut Vec<String>,
    digests: &mut Digests,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for s in signed {
        let st = &s.statement;
        let signature = &s.signature;
        for (path, len) in files.iter() {
            if st.files.contains_key(path) {
                continue;
            }
            if len == 0 && matches!(st.hashing.granularity, Granularity::Shards(_)) {
                warnings.push(format!(
                    "{signature}: {path} is empty, and a sharded signature cannot cover empty files"
                ));
                continue;
            }
            let problem = if is_ignored(path, &st.ignore_paths) {
                if !require_all {
                    continue;
                }
                Problem::NotCovered {
                    signature: signature.clone(),
                    file: path.to_string(),
                }
            } else {
                Problem::ExtraFile {
                    signature: signature.clone(),
                    file: path.to_string(),
                }
            };
            problems.push(problem);
        }
        for path in st.files.keys() {
            if files.len_of(path).is_none() {
                problems.push(Problem::MissingFile {
                    signature: signature.clone(),
                    file: path.clone(),
                });
            }
        }
    }
    for (path, _) in files.iter() {
        problems.extend(check_file(signed, files, path, digests));
    }
    problems
}

/// Compares one file of `files` with every statement that lists it: its length (for a
/// sharded statement) and each digest. A statement that does not list it says nothing
/// here (`check_files` reports extra files). So a small file can be checked, and then
/// parsed, before the large files of the same model are read.
pub(crate) fn check_file(
    signed: &[SignedStatement],
    files: &FileSet<'_>,
    path: &str,
    digests: &mut Digests,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(len) = files.len_of(path) else {
        return problems;
    };
    for s in signed {
        let st = &s.statement;
        let Some(ranges) = st.files.get(path) else {
            continue;
        };
        let signature = &s.signature;
        if let Granularity::Shards(_) = st.hashing.granularity {
            let signed_len = ranges.last().map_or(0, |r| r.end);
            if signed_len != len {
                problems.push(Problem::LengthChanged {
                    signature: signature.clone(),
                    file: path.to_string(),
                    signed: signed_len,
                    actual: len,
                });
                continue;
            }
        }
        let items = digests.complete(files, st.hashing);
        let actual = items.get(path).map_or(&[][..], Vec::as_slice);
        // Every signed range must have its digest: a file whose digests are missing (a
        // streamed file not hashed with this serialization) is a mismatch, never a pass.
        if actual.len() != ranges.len() {
            problems.push(Problem::DigestMismatch {
                signature: signature.clone(),
                file: path.to_string(),
                range: None,
                algorithm: st.hashing.algorithm.name(),
                expected: format!("{} digests", ranges.len()),
                actual: format!("{} digests", actual.len()),
            });
            continue;
        }
        for (r, a) in ranges.iter().zip(actual) {
            if r.digest != a.digest {
                problems.push(Problem::DigestMismatch {
                    signature: signature.clone(),
                    file: path.to_string(),
                    range: match st.hashing.granularity {
                        Granularity::Files => None,
                        Granularity::Shards(_) => Some((a.range.start, a.range.end)),
                    },
                    algorithm: st.hashing.algorithm.name(),
                    expected: hex::encode(&r.digest),
                    actual: hex::encode(&a.digest),
                });
            }
        }
    }
    problems
}

/// The length each statement that lists `path` signed for it, when it says (sharded
/// statements do; files-mode statements give only a digest).
pub(crate) fn signed_length(signed: &[SignedStatement], path: &str) -> Option<u64> {
    signed
        .iter()
        .find_map(|s| match s.statement.hashing.granularity {
            Granularity::Shards(_) => s
                .statement
                .files
                .get(path)
                .map(|ranges| ranges.last().map_or(0, |r| r.end)),
            Granularity::Files => None,
        })
}

/// The model name the statements sign (they must agree).
pub(crate) fn signed_model_name(signed: &[SignedStatement]) -> Result<String, Vec<Problem>> {
    let names: BTreeSet<&str> = signed
        .iter()
        .map(|s| s.statement.model_name.as_str())
        .collect();
    if names.len() > 1 {
        return Err(vec![Problem::NameDisagreement {
            names: names.into_iter().map(String::from).collect(),
        }]);
    }
    Ok(names.into_iter().next().unwrap_or_default().to_string())
}

/// Step 3a: at least `threshold` distinct signers. Returns their policy names.
pub(crate) fn check_threshold(
    signed: &[SignedStatement],
    policy: &TrustPolicy,
) -> Result<Vec<String>, Vec<Problem>> {
    let mut keys = BTreeSet::new();
    let mut signers = Vec::new();
    for s in signed {
        if keys.insert(s.signer_key.as_str()) {
            signers.push(s.signer.clone());
        }
    }
    if signers.len() < policy.threshold || signers.is_empty() {
        return Err(vec![Problem::ThresholdNotMet {
            have: signers.len(),
            need: policy.threshold,
            signers,
        }]);
    }
    Ok(signers)
}

/// Step 3b: every signer may sign `model_name`.
///
/// `model_name` is what the policy matches: the signed subject name for a bare model
/// directory, the manifest's (signed) name for a ward package.
pub(crate) fn check_allowed(
    signed: &[SignedStatement],
    model_name: &str,
) -> Result<(), Vec<Problem>> {
    let not_allowed: Vec<Problem> = signed
        .iter()
        .filter(|s| !name_matches(&s.models, model_name))
        .map(|s| Problem::NotAllowed {
            signature: s.signature.clone(),
            signer: s.signer.clone(),
            model: model_name.to_string(),
        })
        .collect();
    if not_allowed.is_empty() {
        Ok(())
    } else {
        Err(not_allowed)
    }
}
