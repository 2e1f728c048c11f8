//! `ward.json`: what a package is, where it came from, and what it accepts and returns.
//!
//! Parsing is strict (unknown fields refused, every field checked by [`Manifest::validate`]).
//! A manifest of another `format_version` is refused by that name before its other fields
//! are looked at.

use crate::error::PackageError;
use crate::layout::{Index, GRAPH_FILE, MANIFEST_FILE, WEIGHTS_FILE};
use crate::limits::{
    MAX_FILE_NAME_LEN, MAX_IO_SPECS, MAX_MANIFEST_BYTES, MAX_ORIGIN_FILES, MAX_PRECISION,
    MAX_VERSION_LEN,
};
use crate::model_name;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use ward_graph::schema::{InputSpec, OutputSpec};

/// The manifest format this version of ward writes.
///
/// Version 2 added `file_sizes` (required) and `nonfinite_weights`. Version 1 manifests
/// are still read: their packages load as before, with the file-size limits as the only
/// bound on their graph and weights.
pub const FORMAT_VERSION: u32 = 2;

/// Every manifest format this version of ward reads.
pub const READABLE_FORMAT_VERSIONS: [u32; 2] = [1, FORMAT_VERSION];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The model's name: ASCII letters, digits, `.`, `_`, `-`; starts with a letter or digit
    /// ([`model_name::check`]).
    pub name: String,
    /// The model's version: ASCII letters, digits, `.`, `_`, `+`, `-`.
    pub version: String,
    /// When the package was made, in seconds since the Unix epoch.
    pub created_unix: u64,
    pub origin: Origin,
    /// The graph file's name: [`GRAPH_FILE`] in format version 1.
    pub graph: String,
    /// The weights file's name: [`WEIGHTS_FILE`] in format version 1.
    pub weights: String,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
    #[serde(default)]
    pub output_policy: OutputPolicy,
    /// The byte lengths of the graph and weights files (format 2; written by
    /// [`crate::write_package`]). Signed with the manifest, so the loader refuses a file of
    /// another length before reading a byte of it: a huge file dropped into a package
    /// costs nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sizes: Option<FileSizes>,
    /// The weights may hold NaN or infinities: the importer was told to accept them
    /// (`--allow-nonfinite-weights`). Otherwise a non-finite weight refuses the package.
    #[serde(default, skip_serializing_if = "is_false")]
    pub nonfinite_weights: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The byte lengths of a package's graph and weights files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSizes {
    pub graph: u64,
    pub weights: u64,
}

/// Where the model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// The framework that produced the source files, e.g. `mxnet`.
    pub framework: String,
    /// Its version when known, e.g. `1.9.1` from an MXNet symbol's `mxnet_version`.
    #[serde(default)]
    pub framework_version: Option<String>,
    /// The source files and their SHA-256 digests.
    #[serde(default)]
    pub files: Vec<FileDigest>,
}

/// A file name and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// A plain file name (no directories).
    pub name: String,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

impl FileDigest {
    /// The digest of `bytes` under `name`.
    pub fn of(name: impl Into<String>, bytes: &[u8]) -> Self {
        FileDigest {
            name: name.into(),
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }
}

/// What the server may reveal of the outputs (threat T6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputPolicy {
    /// Decimal digits kept in returned values (at most [`MAX_PRECISION`]).
    pub precision: Option<u32>,
    /// Return only the `k` highest scores (at least 1).
    pub top_k: Option<u32>,
    /// Return only the class index, not scores.
    pub label_only: bool,
}

fn field_err(field: impl Into<String>, reason: impl Into<String>) -> PackageError {
    PackageError::ManifestField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks a token field with [`model_name::check_token`], naming the field.
fn check_token(field: &str, value: &str, max: usize, extra: &[char]) -> Result<(), PackageError> {
    model_name::check_token(value, max, extra).map_err(|e| field_err(field, e.to_string()))
}

/// Checks that `name` is a plain file name: no directory part, not `.` or `..`, no
/// separators, drive letters or control characters.
pub fn check_file_name(field: &str, name: &str) -> Result<(), PackageError> {
    if name.is_empty() {
        return Err(field_err(field, "file name must not be empty"));
    }
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(field_err(
            field,
            format!("file name is longer than {MAX_FILE_NAME_LEN} bytes"),
        ));
    }
    if name == "." || name == ".." {
        return Err(field_err(field, format!("{name:?} is not a file name")));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| matches!(c, '/' | '\\' | ':') || c.is_control())
    {
        return Err(field_err(
            field,
            format!(
                "file name {name:?} contains {c:?}; it must be a plain name without directories"
            ),
        ));
    }
    Ok(())
}

impl Manifest {
    /// A manifest of the current format with the standard file names and the default
    /// output policy. The file sizes are recorded when the package is written.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        created_unix: u64,
        origin: Origin,
        inputs: Vec<InputSpec>,
        outputs: Vec<OutputSpec>,
    ) -> Self {
        Manifest {
            format_version: FORMAT_VERSION,
            name: name.into(),
            version: version.into(),
            created_unix,
            origin,
            graph: GRAPH_FILE.to_string(),
            weights: WEIGHTS_FILE.to_string(),
            inputs,
            outputs,
            output_policy: OutputPolicy::default(),
            file_sizes: None,
            nonfinite_weights: false,
        }
    }

    /// Parses and validates `ward.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, PackageError> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(PackageError::FileTooLarge {
                file: MANIFEST_FILE.to_string(),
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        /// Reads only the version, so that a newer manifest is refused by its version rather
        /// than by a field this ward does not know.
        #[derive(Deserialize)]
        struct VersionProbe {
            format_version: Option<u32>,
        }
        let probe: VersionProbe = serde_json::from_slice(bytes)
            .map_err(|source| PackageError::ManifestJson { source })?;
        if let Some(found) = probe.format_version {
            if !READABLE_FORMAT_VERSIONS.contains(&found) {
                return Err(PackageError::UnsupportedFormatVersion {
                    found,
                    supported: FORMAT_VERSION,
                });
            }
        }
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|source| PackageError::ManifestJson { source })?;
        m.validate()?;
        Ok(m)
    }

    /// Validates, then writes pretty JSON ending in a newline.
    pub fn to_json(&self) -> Result<Vec<u8>, PackageError> {
        self.validate()?;
        let mut out = serde_json::to_vec_pretty(self)
            .map_err(|source| PackageError::ManifestJson { source })?;
        out.push(b'\n');
        Ok(out)
    }

    /// Checks every field; the error names the first field that is wrong.
    pub fn validate(&self) -> Result<(), PackageError> {
        if !READABLE_FORMAT_VERSIONS.contains(&self.format_version) {
            return Err(PackageError::UnsupportedFormatVersion {
                found: self.format_version,
                supported: FORMAT_VERSION,
            });
        }
        match (self.format_version, &self.file_sizes) {
            (1, Some(_)) => {
                return Err(field_err(
                    "file_sizes",
                    "format version 1 has no file_sizes",
                ))
            }
            (1, None) if self.nonfinite_weights => {
                return Err(field_err(
                    "nonfinite_weights",
                    "format version 1 has no nonfinite_weights",
                ))
            }
            (1, None) => {}
            (_, None) => return Err(field_err("file_sizes", "is required")),
            (_, Some(_)) => {}
        }
        model_name::check(&self.name).map_err(|e| field_err("name", e.to_string()))?;
        check_token(
            "version",
            &self.version,
            MAX_VERSION_LEN,
            &['.', '_', '+', '-'],
        )?;

        let o = &self.origin;
        check_token(
            "origin.framework",
            &o.framework,
            MAX_VERSION_LEN,
            &['.', '_', '-'],
        )?;
        if let Some(v) = &o.framework_version {
            check_token(
                "origin.framework_version",
                v,
                MAX_VERSION_LEN,
                &['.', '_', '+', '-'],
            )?;
        }
        if o.files.len() > MAX_ORIGIN_FILES {
            return Err(field_err(
                "origin.files",
                format!("more than {MAX_ORIGIN_FILES} files"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, f) in o.files.iter().enumerate() {
            check_file_name(&format!("origin.files[{i}].name"), &f.name)?;
            if !seen.insert(f.name.as_str()) {
                return Err(field_err(
                    format!("origin.files[{i}].name"),
                    format!("{:?} is listed twice", f.name),
                ));
            }
            let hex_ok = f.sha256.len() == 64
                && f.sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !hex_ok {
                return Err(field_err(
                    format!("origin.files[{i}].sha256"),
                    "must be 64 lowercase hex digits",
                ));
            }
        }

        check_file_name("graph", &self.graph)?;
        if self.graph != GRAPH_FILE {
            return Err(field_err(
                "graph",
                format!(
                    "the graph file must be {GRAPH_FILE:?}, got {:?}",
                    self.graph
                ),
            ));
        }
        check_file_name("weights", &self.weights)?;
        if self.weights != WEIGHTS_FILE {
            return Err(field_err(
                "weights",
                format!(
                    "the weights file must be {WEIGHTS_FILE:?}, got {:?}",
                    self.weights
                ),
            ));
        }

        if self.inputs.is_empty() {
            return Err(field_err("inputs", "a model needs at least one input"));
        }
        if self.inputs.len() > MAX_IO_SPECS {
            return Err(field_err(
                "inputs",
                format!("more than {MAX_IO_SPECS} inputs"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, spec) in self.inputs.iter().enumerate() {
            let field = format!("inputs[{i}]");
            spec.validate_spec()
                .map_err(|source| PackageError::ManifestSpec {
                    field: field.clone(),
                    source,
                })?;
            if !seen.insert(spec.name.as_str()) {
                return Err(field_err(
                    format!("{field}.name"),
                    format!("input {:?} is declared twice", spec.name),
                ));
            }
        }
        if self.outputs.is_empty() {
            return Err(field_err("outputs", "a model needs at least one output"));
        }
        if self.outputs.len() > MAX_IO_SPECS {
            return Err(field_err(
                "outputs",
                format!("more than {MAX_IO_SPECS} outputs"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, spec) in self.outputs.iter().enumerate() {
            let field = format!("outputs[{i}]");
            spec.validate_spec()
                .map_err(|source| PackageError::ManifestSpec {
                    field: field.clone(),
                    source,
                })?;
            if !seen.insert(spec.name.as_str()) {
                return Err(field_err(
                    format!("{field}.name"),
                    format!("output {:?} is declared twice", spec.name),
                ));
            }
        }

        let p = &self.output_policy;
        if let Some(precision) = p.precision {
            if precision > MAX_PRECISION {
                return Err(field_err(
                    "output_policy.precision",
                    format!("{precision} is more than {MAX_PRECISION} digits"),
                ));
            }
        }
        if p.top_k == Some(0) {
            return Err(field_err("output_policy.top_k", "must be at least 1"));
        }
        Ok(())
    }
}

/// The package's index: the verified loader parses `ward.json` first, matches the
/// policy's model names against its `name`, and refuses a graph or weights file of
/// another size than `file_sizes` records before reading it.
impl Index for Manifest {
    fn parse(bytes: &[u8]) -> Result<Manifest, PackageError> {
        Manifest::from_json(bytes)
    }

    fn model_name(&self) -> &str {
        &self.name
    }

    fn recorded_size(&self, file: &str) -> Option<u64> {
        let sizes = self.file_sizes?;
        if file == self.graph {
            Some(sizes.graph)
        } else if file == self.weights {
            Some(sizes.weights)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ward_core::DType;

    pub(crate) fn sample() -> Manifest {
        let mut m = Manifest::new(
            "resnet18_v1",
            "1.0.0",
            1_700_000_000,
            Origin {
                framework: "mxnet".into(),
                framework_version: Some("1.9.1".into()),
                files: vec![
                    FileDigest::of("resnet18_v1-symbol.json", b"{}"),
                    FileDigest::of("resnet18_v1-0000.params", b""),
                ],
            },
            vec![InputSpec {
                name: "data".into(),
                dtype: DType::F32,
                shape: vec![-1, 3, 224, 224],
                range: Some([-3.0, 3.0]),
                allow_nonfinite: false,
            }],
            vec![OutputSpec {
                name: "softmax".into(),
                dtype: DType::F32,
                shape: vec![-1, 1000],
            }],
        );
        m.file_sizes = Some(FileSizes {
            graph: 10,
            weights: 20,
        });
        m
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let json = m.to_json().unwrap();
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
        assert!(json.ends_with(b"}\n"));
        assert_eq!(
            FileDigest::of("x", b"").sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn output_policy_defaults_when_absent() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&sample().to_json().unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("output_policy");
        let m = Manifest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(m.output_policy, OutputPolicy::default());
        v["output_policy"] = serde_json::json!({"top_k": 5});
        let m = Manifest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(m.output_policy.top_k, Some(5));
        assert!(!m.output_policy.label_only);
    }

    fn field_of(m: &Manifest) -> String {
        match m.validate().unwrap_err() {
            PackageError::ManifestField { field, .. }
            | PackageError::ManifestSpec { field, .. } => field,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn every_field_is_checked() {
        type Edit = fn(&mut Manifest);
        let edits: Vec<(&str, Edit)> = vec![
            ("name", |m| m.name.clear()),
            ("name", |m| m.name = "../evil".into()),
            ("name", |m| m.name = "a b".into()),
            ("name", |m| m.name = "x".repeat(model_name::MAX_LEN + 1)),
            ("version", |m| m.version = "1.0\n".into()),
            ("origin.framework", |m| m.origin.framework.clear()),
            ("origin.framework_version", |m| {
                m.origin.framework_version = Some(String::new())
            }),
            ("origin.files[0].name", |m| {
                m.origin.files[0].name = "../x".into()
            }),
            ("origin.files[0].name", |m| {
                m.origin.files[0].name = "/etc/passwd".into()
            }),
            ("origin.files[0].name", |m| {
                m.origin.files[0].name = "..".into()
            }),
            ("origin.files[0].name", |m| {
                m.origin.files[0].name = "a\\b".into()
            }),
            ("origin.files[0].name", |m| {
                m.origin.files[0].name = "C:x".into()
            }),
            ("origin.files[1].name", |m| {
                m.origin.files[1].name = m.origin.files[0].name.clone()
            }),
            ("origin.files[0].sha256", |m| {
                m.origin.files[0].sha256 = m.origin.files[0].sha256.to_uppercase()
            }),
            ("origin.files[0].sha256", |m| {
                m.origin.files[0].sha256.truncate(63)
            }),
            ("origin.files", |m| {
                m.origin.files = vec![FileDigest::of("a", b""); MAX_ORIGIN_FILES + 1]
            }),
            ("graph", |m| m.graph = "../graph.json".into()),
            ("graph", |m| m.graph = "/tmp/graph.json".into()),
            ("graph", |m| m.graph = "other.json".into()),
            ("weights", |m| m.weights = "sub/weights.safetensors".into()),
            ("weights", |m| m.weights = "w.safetensors".into()),
            ("inputs", |m| m.inputs.clear()),
            ("inputs[1].name", |m| m.inputs.push(m.inputs[0].clone())),
            ("inputs[0]", |m| m.inputs[0].shape = vec![1, -2]),
            ("inputs[0]", |m| m.inputs[0].range = Some([1.0, 0.0])),
            ("inputs[0]", |m| m.inputs[0].name.clear()),
            ("outputs", |m| m.outputs.clear()),
            ("outputs[1].name", |m| m.outputs.push(m.outputs[0].clone())),
            ("outputs[0]", |m| m.outputs[0].shape = vec![1; 33]),
            ("output_policy.precision", |m| {
                m.output_policy.precision = Some(18)
            }),
            ("output_policy.top_k", |m| m.output_policy.top_k = Some(0)),
            ("file_sizes", |m| m.file_sizes = None),
            ("file_sizes", |m| m.format_version = 1),
            ("nonfinite_weights", |m| {
                m.format_version = 1;
                m.file_sizes = None;
                m.nonfinite_weights = true;
            }),
        ];
        for (field, edit) in edits {
            let mut m = sample();
            edit(&mut m);
            assert_eq!(field_of(&m), field);
            // The same error when parsed from JSON.
            let json = serde_json::to_vec(&m).unwrap();
            assert!(Manifest::from_json(&json).is_err(), "{field}");
        }
    }

    #[test]
    fn json_rules() {
        let good: serde_json::Value = serde_json::from_slice(&sample().to_json().unwrap()).unwrap();
        let parse = |v: &serde_json::Value| Manifest::from_json(&serde_json::to_vec(v).unwrap());

        let mut v = good.clone();
        v["format_version"] = 3.into();
        v["new_field"] = 1.into();
        assert!(matches!(
            parse(&v),
            Err(PackageError::UnsupportedFormatVersion { found: 3, .. })
        ));

        // A version-1 manifest (written before file sizes) still reads.
        let mut v1 = good.clone();
        v1["format_version"] = 1.into();
        v1.as_object_mut().unwrap().remove("file_sizes");
        let m = parse(&v1).unwrap();
        assert_eq!((m.format_version, m.file_sizes), (1, None));

        for path in [
            "",
            "/origin",
            "/output_policy",
            "/inputs/0",
            "/outputs/0",
            "/origin/files/0",
        ] {
            let mut v = good.clone();
            v.pointer_mut(path)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert("extra".into(), 1.into());
            assert!(
                matches!(parse(&v), Err(PackageError::ManifestJson { .. })),
                "{path}"
            );
        }
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove("name");
        assert!(matches!(parse(&v), Err(PackageError::ManifestJson { .. })));

        // Duplicate keys are refused, not resolved.
        let text = String::from_utf8(sample().to_json().unwrap()).unwrap();
        let dup = text.replacen(
            "\"name\": \"resnet18_v1\",",
            "\"name\": \"a\", \"name\": \"b\",",
            1,
        );
        assert_ne!(dup, text);
        assert!(matches!(
            Manifest::from_json(dup.as_bytes()),
            Err(PackageError::ManifestJson { .. })
        ));

        assert!(matches!(
            Manifest::from_json(b"[]"),
            Err(PackageError::ManifestJson { .. })
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        assert!(matches!(
            Manifest::from_json(&big),
            Err(PackageError::FileTooLarge { .. })
        ));
    }
}
