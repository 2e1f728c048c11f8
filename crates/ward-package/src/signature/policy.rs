//! The trust policy: which keys and CAs ward trusts, which model names each may sign, and
//! how many distinct trusted signers a model needs.
//!
//! `--trust` takes either a PEM public key (that key may sign any model) or a TOML policy:
//!
//! ```toml
//! threshold = 2                 # optional; distinct trusted signers required (default 1)
//!
//! [[key]]
//! name = "release"
//! public_key = "keys/release.pub"   # relative to the policy file
//! models = ["resnet*", "mlp"]       # glob patterns over the signed model name
//!
//! [[ca]]
//! name = "corp"
//! certificate = "pki/ca.crt.pem"
//! models = ["*"]
//! ```
//!
//! A policy with no key and no CA trusts nothing. `models` is required: a key that may
//! sign anything says so (`["*"]`).

use std::path::Path;

use serde::Deserialize;

use super::cert::certificates_from_pem;
use super::keys::{read_small_file, PublicKey};
use crate::error::PackageError;

/// Largest policy (or key, or CA) file, in bytes.
pub const MAX_POLICY_BYTES: u64 = 1 << 20;
/// Most keys plus CAs in a policy.
pub const MAX_POLICY_ENTRIES: usize = 1024;
/// Longest signer name.
pub const MAX_SIGNER_NAME_LEN: usize = 128;

/// A trusted key.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub name: String,
    pub key: PublicKey,
    pub models: Vec<glob::Pattern>,
}

/// A trusted certificate authority: leaves it issued may sign.
#[derive(Debug, Clone)]
pub struct TrustedCa {
    pub name: String,
    /// The CA certificate, DER.
    pub certificate: Vec<u8>,
    pub models: Vec<glob::Pattern>,
}

#[derive(Debug, Clone)]
pub struct TrustPolicy {
    pub keys: Vec<TrustedKey>,
    pub cas: Vec<TrustedCa>,
    /// Distinct trusted signers a model needs, at least 1.
    pub threshold: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    threshold: Option<usize>,
    #[serde(default)]
    key: Vec<RawKey>,
    #[serde(default)]
    ca: Vec<RawCa>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    public_key: String,
    models: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    name: String,
    certificate: String,
    models: Option<Vec<String>>,
}

fn policy_error(path: &Path, reason: impl Into<String>) -> PackageError {
    PackageError::Policy {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether a pattern matches a model name: `*`, `?` and `[...]` as in shell globs.
pub fn name_matches(patterns: &[glob::Pattern], model: &str) -> bool {
    patterns.iter().any(|p| p.matches(model))
}

impl TrustPolicy {
    /// A policy trusting one key for every model.
    pub fn single_key(name: &str, key: PublicKey) -> TrustPolicy {
        TrustPolicy {
            keys: vec![TrustedKey {
                name: name.into(),
                key,
                models: glob::Pattern::new("*").into_iter().collect(),
            }],
            cas: Vec::new(),
            threshold: 1,
        }
    }

    /// Reads `--trust`: a PEM public key, or a TOML policy.
    pub fn load(path: &Path) -> Result<TrustPolicy, PackageError> {
        let text = read_small_file(path, MAX_POLICY_BYTES)?;
        if text.trim_start().starts_with("-----BEGIN PUBLIC KEY-----") {
            let key = PublicKey::from_pem(&text).map_err(|e| policy_error(path, e.to_string()))?;
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("key")
                .to_string();
            return Ok(TrustPolicy::single_key(&name, key));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        TrustPolicy::from_toml(&text, base).map_err(|reason| policy_error(path, reason))
    }

    /// Parses a TOML policy; file names in it are relative to `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<TrustPolicy, String> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        if raw.key.len() + raw.ca.len() > MAX_POLICY_ENTRIES {
            return Err(format!("more than {MAX_POLICY_ENTRIES} keys and CAs"));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut check_name = |kind: &str, name: &str| -> Result<(), String> {
            let ok = !name.is_empty()
                && name.len() <= MAX_SIGNER_NAME_LEN
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
            if !ok {
                return Err(format!(
                    "{kind} name {name:?} must be 1 to {MAX_SIGNER_NAME_LEN} of A-Z a-z 0-9 - _ . @"
                ));
            }
            if !names.insert(name.to_string()) {
                return Err(format!("the name {name:?} is used twice"));
            }
            Ok(())
        };
        let patterns = |kind: &str, name: &str, models: Option<Vec<String>>| {
            let models = models.ok_or_else(|| {
                format!("{kind} {name:?}: `models` is required (use [\"*\"] for any model)")
            })?;
            models
                .iter()
                .map(|m| {
                    glob::Pattern::new(m)
                        .map_err(|e| format!("{kind} {name:?}: model pattern {m:?}: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        let mut keys = Vec::new();
        for k in raw.key {
            check_name("key", &k.name)?;
            let path = base.join(&k.public_key);
            let text = read_small_file(&path, MAX_POLICY_BYTES)
                .map_err(|e| format!("key {:?}: {e}", k.name))?;
            let key = PublicKey::from_pem(&text)
                .map_err(|e| format!("key {:?} ({}): {e}", k.name, path.display()))?;
            if let Some(other) = keys.iter().find(|o: &&TrustedKey| o.key == key) {
                return Err(format!(
                    "keys {:?} and {:?} are the same key; a threshold counts distinct keys",
                    other.name, k.name
                ));
            }
            let models = patterns("key", &k.name, k.models)?;
            keys.push(TrustedKey {
                name: k.name,
                key,
                models,
            });
        }
        let mut cas = Vec::new();
        for c in raw.ca {
            check_name("ca", &c.name)?;
            let path = base.join(&c.certificate);
            let text = read_small_file(&path, MAX_POLICY_BYTES)
                .map_err(|e| format!("ca {:?}: {e}", c.name))?;
            let certs = certificates_from_pem(&text)
                .map_err(|e| format!("ca {:?} ({}): {e}", c.name, path.display()))?;
            let [certificate] = <[Vec<u8>; 1]>::try_from(certs).map_err(|certs| {
                format!(
                    "ca {:?} ({}): holds {} certificates; give one CA per entry",
                    c.name,
                    path.display(),
                    certs.len()
                )
            })?;
            let models = patterns("ca", &c.name, c.models)?;
            cas.push(TrustedCa {
                name: c.name,
                certificate,
                models,
            });
        }
        let threshold = raw.threshold.unwrap_or(1);
        let signers = keys.len() + cas.len();
        if threshold == 0 {
            return Err("threshold must be at least 1".into());
        }
        if signers > 0 && threshold > signers {
            return Err(format!(
                "threshold {threshold} can never be met: the policy lists {signers} signers"
            ));
        }
        Ok(TrustPolicy {
            keys,
            cas,
            threshold,
        })
    }

    /// Whether the policy trusts anyone at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.cas.is_empty()
    }
}
