//! Limits on packages, checked before the allocation they guard. [`PackageLimits`] carries
//! the file-size limits so that configuration can override them; the defaults are the
//! constants below.

/// Largest `ward.json`, in bytes. A manifest of a model with 1 000 inputs and outputs is
/// well under 1 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Largest `graph.json`, in bytes (as MXNet symbol files: the largest graph in the census,
/// DenseNet-121, is 325 KB as MXNet JSON).
pub const MAX_GRAPH_BYTES: u64 = 64 << 20;

/// Largest `weights.safetensors`, in bytes. The file is read into memory; the largest model
/// in the census (VGG-11-BN) has 531 MB of parameters.
pub const MAX_WEIGHTS_BYTES: u64 = 8 << 30;

/// Largest signature file, in bytes (a Sigstore bundle is a few KiB).
pub const MAX_SIGNATURE_BYTES: u64 = 1 << 20;

/// Most entries in a package directory (three files and signatures).
pub const MAX_DIR_ENTRIES: usize = 64;

/// Longest safetensors JSON header, in bytes. An entry takes about 100 bytes: this allows
/// over 100 000 tensors. (The `safetensors` crate allows 100 MB.)
pub const MAX_WEIGHTS_HEADER_BYTES: usize = 16 << 20;

/// Most dimensions of one tensor in the weights.
pub const MAX_TENSOR_NDIM: usize = 32;

/// Longest model name in the manifest, in bytes.
pub const MAX_MODEL_NAME_LEN: usize = 128;

/// Longest version string (model version, framework version), in bytes.
pub const MAX_VERSION_LEN: usize = 64;

/// Longest file name in the manifest, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Most source files listed under `origin.files`.
pub const MAX_ORIGIN_FILES: usize = 64;

/// Most declared inputs, and most declared outputs.
pub const MAX_IO_SPECS: usize = 1024;

/// Most decimal digits the output policy may keep (17 significant digits round-trip f64).
pub const MAX_PRECISION: u32 = 17;

/// File-size limits for reading a package; the defaults are the constants of this module.
/// A configuration may set any of them (`[package]` of `ward-serve.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PackageLimits {
    pub max_manifest_bytes: u64,
    pub max_graph_bytes: u64,
    pub max_weights_bytes: u64,
    pub max_signature_bytes: u64,
}

impl Default for PackageLimits {
    fn default() -> Self {
        PackageLimits {
            max_manifest_bytes: MAX_MANIFEST_BYTES,
            max_graph_bytes: MAX_GRAPH_BYTES,
            max_weights_bytes: MAX_WEIGHTS_BYTES,
            max_signature_bytes: MAX_SIGNATURE_BYTES,
        }
    }
}
