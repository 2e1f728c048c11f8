//! Why a model is refused: one typed [`Problem`] per reason, each with a stable code for
//! audit lines. A leaf: it depends on nothing else of the crate, so the crate's error type
//! can carry problems without a cycle.

use std::fmt;

/// One reason a model is refused. [`Problem::reason`] is a stable code for audit lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No signature file at all.
    Unsigned,
    /// The policy lists no key and no CA.
    NothingTrusted,
    /// The signature file is not a well-formed bundle.
    Malformed {
        signature: String,
        reason: String,
    },
    /// The bundle names a key (hint) the policy does not list.
    UntrustedKey {
        signature: String,
        hint: String,
    },
    /// The signature does not verify with the key the hint names, or with any policy key
    /// when there is no hint.
    BadSignature {
        signature: String,
        signer: Option<String>,
    },
    /// The certificate chain does not lead to a trusted CA, or is not valid now.
    UntrustedCertificate {
        signature: String,
        reason: String,
    },
    /// The verified statement is malformed or inconsistent.
    BadStatement {
        signature: String,
        reason: String,
    },
    /// The signer may not sign this model name.
    NotAllowed {
        signature: String,
        signer: String,
        model: String,
    },
    DigestMismatch {
        signature: String,
        file: String,
        /// For a shard, its byte range.
        range: Option<(u64, u64)>,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    /// A file's length differs from the signed one (sharded signatures).
    LengthChanged {
        signature: String,
        file: String,
        signed: u64,
        actual: u64,
    },
    MissingFile {
        signature: String,
        file: String,
    },
    ExtraFile {
        signature: String,
        file: String,
    },
    /// A file that must be signed is excluded by the signature's ignore paths.
    NotCovered {
        signature: String,
        file: String,
    },
    /// Signatures name the model differently.
    NameDisagreement {
        names: Vec<String>,
    },
    ThresholdNotMet {
        have: usize,
        need: usize,
        signers: Vec<String>,
    },
}

impl Problem {
    /// Stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::Unsigned => "unsigned",
            Problem::NothingTrusted => "nothing-trusted",
            Problem::Malformed { .. } => "malformed-signature",
            Problem::UntrustedKey { .. } => "untrusted-key",
            Problem::BadSignature { .. } => "bad-signature",
            Problem::UntrustedCertificate { .. } => "untrusted-certificate",
            Problem::BadStatement { .. } => "bad-statement",
            Problem::NotAllowed { .. } => "signer-not-allowed",
            Problem::DigestMismatch { .. } => "digest-mismatch",
            Problem::LengthChanged { .. } => "digest-mismatch",
            Problem::MissingFile { .. } => "missing-file",
            Problem::ExtraFile { .. } => "extra-file",
            Problem::NotCovered { .. } => "file-not-covered",
            Problem::NameDisagreement { .. } => "model-name-disagreement",
            Problem::ThresholdNotMet { .. } => "threshold-not-met",
        }
    }

    /// The signer concerned, if known.
    pub fn signer(&self) -> Option<&str> {
        match self {
            Problem::BadSignature { signer, .. } => signer.as_deref(),
            Problem::NotAllowed { signer, .. } => Some(signer),
            _ => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unsigned => write!(f, "the model is not signed (no model.sig)"),
            Problem::NothingTrusted => {
                write!(f, "the trust policy lists no key and no CA, so it trusts nothing")
            }
            Problem::Malformed { signature, reason } => write!(f, "{signature}: {reason}"),
            Problem::UntrustedKey { signature, hint } => write!(
                f,
                "{signature}: signed by a key the trust policy does not list (key hint {hint})"
            ),
            Problem::BadSignature { signature, signer: Some(s) } => write!(
                f,
                "{signature}: the signature does not verify with key {s:?}: the signed payload or the signature was altered"
            ),
            Problem::BadSignature { signature, signer: None } => write!(
                f,
                "{signature}: the signature (which names no key) verifies with no key of the trust policy"
            ),
            Problem::UntrustedCertificate { signature, reason } => {
                write!(f, "{signature}: {reason}")
            }
            Problem::BadStatement { signature, reason } => write!(f, "{signature}: {reason}"),
            Problem::NotAllowed {
                signature,
                signer,
                model,
            } => write!(
                f,
                "{signature}: signer {signer:?} is trusted, but the policy does not allow it to sign model {model:?}"
            ),
            Problem::DigestMismatch {
                signature,
                file,
                range,
                algorithm,
                expected,
                actual,
            } => {
                let what = match range {
                    Some((s, e)) => format!("{file} bytes {s}..{e}"),
                    None => file.clone(),
                };
                write!(
                    f,
                    "{signature}: {what} was modified: signed {algorithm} {expected}, found {actual}"
                )
            }
            Problem::LengthChanged {
                signature,
                file,
                signed,
                actual,
            } => write!(
                f,
                "{signature}: {file} was modified: signed {signed} bytes, found {actual}"
            ),
            Problem::MissingFile { signature, file } => {
                write!(f, "{signature}: {file} is signed but missing")
            }
            Problem::ExtraFile { signature, file } => write!(
                f,
                "{signature}: {file} is not covered by the signature (an extra file)"
            ),
            Problem::NotCovered { signature, file } => write!(
                f,
                "{signature}: {file} is excluded by the signature's ignore_paths, but ward needs it signed"
            ),
            Problem::NameDisagreement { names } => {
                write!(f, "the signatures name the model differently: {names:?}")
            }
            Problem::ThresholdNotMet {
                have,
                need,
                signers,
            } => write!(
                f,
                "the policy requires {need} distinct trusted signers, found {have} ({})",
                if signers.is_empty() {
                    "none".to_string()
                } else {
                    signers.join(", ")
                }
            ),
        }
    }
}
