//! The signed payload: an in-toto Statement v1 whose predicate
//! (`https://model_signing/signature/v1.0`) lists every file's (or shard's) digest and how
//! the files were hashed (`reference/model-signing-format.md` §1.3).
//!
//! Parsing happens only after the signature over the payload has verified. It checks
//! every structural rule the reference checks (types, one subject, the root digest) and
//! more: resource names must be plain relative paths, digests must have their
//! algorithm's length, names must be unique, and every resource must use the declared
//! serialization.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::hashing::{root_digest, Granularity, HashAlgorithm, Hashing};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The paths model-signing ignores at a model's root by default.
pub const DEFAULT_IGNORE_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];
/// Most resources in one statement.
pub const MAX_RESOURCES: usize = 1_000_000;
/// Most ignore paths in one statement.
pub const MAX_IGNORE_PATHS: usize = 1024;

/// A parsed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The subject's name: the model's name as the signer gave it.
    pub model_name: String,
    pub hashing: Hashing,
    /// Paths (relative, `/`-separated) the signer left out, with their subtrees.
    pub ignore_paths: Vec<String>,
    /// Each file's signed digests: one entry per file, with its shards in byte order
    /// (one shard, the whole file, in files mode).
    pub files: BTreeMap<String, Vec<SignedRange>>,
}

/// The digest of one file or shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRange {
    pub start: u64,
    pub end: u64,
    pub digest: Vec<u8>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    #[serde(rename = "_type")]
    statement_type: String,
    subject: Vec<RawSubject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: RawPredicate,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSubject {
    name: String,
    digest: BTreeMap<String, String>,
}

/// Other predicate keys are ignored, as the reference does.
#[derive(Deserialize, Serialize)]
struct RawPredicate {
    serialization: RawSerialization,
    resources: Vec<RawResource>,
}

#[derive(Deserialize, Serialize)]
struct RawSerialization {
    method: String,
    hash_type: String,
    allow_symlinks: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_size: Option<serde_json::Number>,
    #[serde(default)]
    ignore_paths: Vec<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: String,
    algorithm: String,
    digest: String,
}

/// Whether `path` is a plain relative POSIX path: no empty, `.` or `..` component, no
/// leading `/`, no backslash or NUL.
pub fn is_plain_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Whether `path` is `ignore` or lies under it.
pub fn is_ignored(path: &str, ignore_paths: &[String]) -> bool {
    ignore_paths.iter().any(|i| {
        path == i
            || path
                .strip_prefix(i.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn shard_size(n: &serde_json::Number) -> Option<u64> {
    // model-signing 1.1.1 stores it through a protobuf Struct, as a double (`16.0`).
    if let Some(v) = n.as_u64() {
        return (v > 0).then_some(v);
    }
    let f = n.as_f64()?;
    (f >= 1.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0).then_some(f as u64)
}

impl Statement {
    /// Parses a verified payload. Errors name the field.
    pub fn parse(payload: &[u8]) -> Result<Statement, String> {
        let raw: RawStatement = serde_json::from_slice(payload)
            .map_err(|e| format!("the signed statement is not an in-toto statement: {e}"))?;
        if raw.statement_type != STATEMENT_TYPE {
            return Err(format!(
                "statement _type is {:?}, expected {STATEMENT_TYPE:?}",
                raw.statement_type
            ));
        }
        if raw.predicate_type != PREDICATE_TYPE {
            return Err(format!(
                "predicateType is {:?}; ward reads model-signing v1.0 ({PREDICATE_TYPE:?})",
                raw.predicate_type
            ));
        }
        let [subject] = raw.subject.as_slice() else {
            return Err(format!(
                "the statement has {} subjects, expected exactly 1",
                raw.subject.len()
            ));
        };
        let root = subject
            .digest
            .get("sha256")
            .ok_or("subject[0].digest has no sha256")?;
        let ser = &raw.predicate.serialization;
        let algorithm = HashAlgorithm::from_name(&ser.hash_type).ok_or_else(|| {
            format!(
                "serialization.hash_type {:?} is not supported (sha256, blake2b, blake3)",
                ser.hash_type
            )
        })?;
        let granularity = match (ser.method.as_str(), &ser.shard_size) {
            ("files", _) => Granularity::Files,
            ("shards", Some(n)) => Granularity::Shards(shard_size(n).ok_or_else(|| {
                format!("serialization.shard_size {n} is not a positive integer")
            })?),
            ("shards", None) => return Err("serialization.shard_size is missing".into()),
            (other, _) => {
                return Err(format!(
                    "serialization.method {other:?} is not supported (files, shards)"
                ))
            }
        };
        let hashing = Hashing {
            granularity,
            algorithm,
        };
        if ser.ignore_paths.len() > MAX_IGNORE_PATHS {
            return Err(format!(
                "serialization.ignore_paths has {} entries, over the limit of {MAX_IGNORE_PATHS}",
                ser.ignore_paths.len()
            ));
        }
        for p in &ser.ignore_paths {
            if !is_plain_relative_path(p) {
                return Err(format!(
                    "serialization.ignore_paths entry {p:?} is not a relative path inside the model"
                ));
            }
        }
        let resources = &raw.predicate.resources;
        if resources.len() > MAX_RESOURCES {
            return Err(format!(
                "the statement lists {} resources, over the limit of {MAX_RESOURCES}",
                resources.len()
            ));
        }
        let expected_algorithm = hashing.resource_algorithm();
        let mut digests = Vec::with_capacity(resources.len());
        let mut files: BTreeMap<String, Vec<SignedRange>> = BTreeMap::new();
        for (i, r) in resources.iter().enumerate() {
            if r.algorithm != expected_algorithm {
                return Err(format!(
                    "resources[{i}] ({:?}) uses algorithm {:?}, but the serialization says {expected_algorithm:?}",
                    r.name, r.algorithm
                ));
            }
            let digest = hex::decode(&r.digest)
                .ok()
                .filter(|d| d.len() == algorithm.digest_len() && r.digest == hex::encode(d))
                .ok_or_else(|| {
                    format!(
                        "resources[{i}] ({:?}): digest is not {} lowercase hex bytes",
                        r.name,
                        algorithm.digest_len()
                    )
                })?;
            let (path, start, end) = match granularity {
                Granularity::Files => (r.name.as_str(), 0, 0),
                Granularity::Shards(_) => parse_shard_name(&r.name)
                    .ok_or_else(|| format!("resources[{i}]: {:?} is not PATH:START:END", r.name))?,
            };
            let single_file = path == "." && resources.len() == 1;
            if !single_file && !is_plain_relative_path(path) {
                return Err(format!(
                    "resources[{i}]: {path:?} is not a relative path inside the model"
                ));
            }
            let ranges = files.entry(path.to_string()).or_default();
            if granularity == Granularity::Files && !ranges.is_empty() {
                return Err(format!("resources[{i}]: {path:?} is listed twice"));
            }
            ranges.push(SignedRange { start, end, digest });
            digests.push(i);
        }
        let listed: Vec<Vec<u8>> = digests
            .iter()
            .filter_map(|&i| resources.get(i))
            .map(|r| hex::decode(&r.digest).unwrap_or_default())
            .collect();
        let computed = hex::encode(root_digest(listed.iter().map(Vec::as_slice)));
        if *root != computed {
            return Err(format!(
                "the root digest {root} does not match the resources (they hash to {computed})"
            ));
        }
        if let Granularity::Shards(size) = granularity {
            for (path, ranges) in &mut files {
                ranges.sort_by_key(|r| r.start);
                check_shards(path, ranges, size)?;
            }
        }
        Ok(Statement {
            model_name: subject.name.clone(),
            hashing,
            ignore_paths: ser.ignore_paths.clone(),
            files,
        })
    }

    /// A deterministic payload for `resources`, which must be in model-signing's order:
    /// compact JSON, fixed key order, ignore paths sorted.
    pub fn encode(
        model_name: &str,
        hashing: Hashing,
        ignore_paths: &[String],
        resources: &[(String, Vec<u8>)],
    ) -> Vec<u8> {
        let root = root_digest(resources.iter().map(|(_, d)| d.as_slice()));
        let mut ignore: Vec<String> = ignore_paths.to_vec();
        ignore.sort();
        ignore.dedup();
        let raw = RawStatement {
            statement_type: STATEMENT_TYPE.into(),
            subject: vec![RawSubject {
                name: model_name.into(),
                digest: BTreeMap::from([("sha256".to_string(), hex::encode(root))]),
            }],
            predicate_type: PREDICATE_TYPE.into(),
            predicate: RawPredicate {
                serialization: RawSerialization {
                    method: match hashing.granularity {
                        Granularity::Files => "files".into(),
                        Granularity::Shards(_) => "shards".into(),
                    },
                    hash_type: hashing.algorithm.name().into(),
                    allow_symlinks: false,
                    shard_size: match hashing.granularity {
                        Granularity::Files => None,
                        Granularity::Shards(n) => Some(n.into()),
                    },
                    ignore_paths: ignore,
                },
                resources: resources
                    .iter()
                    .map(|(name, digest)| RawResource {
                        name: name.clone(),
                        algorithm: hashing.resource_algorithm(),
                        digest: hex::encode(digest),
                    })
                    .collect(),
            },
        };
        serde_json::to_vec(&raw).unwrap_or_default()
    }
}

/// `path:start:end` (model-signing splits on `:`, so paths with `:` cannot be sharded).
fn parse_shard_name(name: &str) -> Option<(&str, u64, u64)> {
    let mut parts = name.split(':');
    let (path, start, end) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !digits(end) {
        return None;
    }
    Some((path, start.parse().ok()?, end.parse().ok()?))
}

/// The shards of one file must tile `[0, len)` in `size` steps, the last one shorter.
fn check_shards(path: &str, ranges: &[SignedRange], size: u64) -> Result<(), String> {
    let mut expected_start = 0;
    for (i, r) in ranges.iter().enumerate() {
        let last = i + 1 == ranges.len();
        let full = r.end.checked_sub(r.start) == Some(size);
        let short = r.end > r.start && r.end - r.start < size && last;
        if r.start != expected_start || !(full || short) {
            return Err(format!(
                "the shards of {path:?} do not tile the file in steps of {size} bytes (at {}:{})",
                r.start, r.end
            ));
        }
        expected_start = r.end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths() {
        for ok in ["a", "a/b.txt", ".gitignore", "a..b"] {
            assert!(is_plain_relative_path(ok), "{ok}");
        }
        for bad in ["", "/a", "a//b", "./a", "a/../b", "..", "a\\b", "a/"] {
            assert!(!is_plain_relative_path(bad), "{bad}");
        }
        let ig = vec![".git".to_string(), "docs/x".to_string()];
        assert!(is_ignored(".git/config", &ig));
        assert!(is_ignored("docs/x", &ig));
        assert!(!is_ignored(".gitignore", &ig));
        assert!(!is_ignored("docs/xy", &ig));
    }

    #[test]
    fn encode_then_parse() {
        let hashing = Hashing {
            granularity: Granularity::Shards(4),
            algorithm: HashAlgorithm::Sha256,
        };
        let d = HashAlgorithm::Sha256.digest(b"x");
        let resources = vec![
            ("w.bin:0:4".to_string(), d.clone()),
            ("w.bin:4:6".to_string(), d.clone()),
        ];
        let payload = Statement::encode("m", hashing, &[".git".into()], &resources);
        let s = Statement::parse(&payload).unwrap();
        assert_eq!(s.model_name, "m");
        assert_eq!(s.hashing, hashing);
        assert_eq!(s.files["w.bin"].len(), 2);
        // A gap between shards is refused.
        let gap = vec![
            ("w.bin:0:4".to_string(), d.clone()),
            ("w.bin:5:6".to_string(), d.clone()),
        ];
        let err = Statement::parse(&Statement::encode("m", hashing, &[], &gap)).unwrap_err();
        assert!(err.contains("tile"), "{err}");
        // Escaping paths are refused.
        let escape = vec![("../etc/passwd".to_string(), d)];
        let err =
            Statement::parse(&Statement::encode("m", Hashing::DEFAULT, &[], &escape)).unwrap_err();
        assert!(err.contains("not a relative path"), "{err}");
    }
}
