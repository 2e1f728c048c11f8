//! The ward model package: a directory holding a manifest (`ward.json`), the graph IR
//! (`graph.json`), the weights (`weights.safetensors`) and signatures (`model.sig`,
//! `model.N.sig`) in the OpenSSF model-signing format ([`signature`]).
//!
//! Opening is done in one place, the verified loader ([`loader`]): every file is read once
//! ([`read`]), with size limits and without following links; the signatures are checked
//! against the trust policy over those bytes; only then are the same bytes parsed. The
//! parsers (manifest, safetensors) are strict and bounded by the limits in [`limits`].

// Data from outside must never be unwrapped; tests may.
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod error;
pub mod limits;
pub mod loader;
pub mod manifest;
pub mod package;
pub mod read;
pub mod signature;
pub mod tree;
pub mod weights;

pub use error::PackageError;
pub use limits::PackageLimits;
pub use loader::{
    open_package, verify_directory, verify_package, OpenedPackage, Trust, Verification,
    VerifiedPackage, VerifiedTree,
};
pub use manifest::{FileDigest, FileSizes, Manifest, Origin, OutputPolicy};
pub use package::{
    is_signature_name, read_raw_package, sign_options, write_package, write_signed_package,
    PackageFiles, RawPackage, GRAPH_FILE, MANIFEST_FILE, SIGNATURE_FILE, WEIGHTS_FILE,
};
pub use signature::TrustPolicy;
pub use ward_graph::schema::{InputLimits, InputSpec, OutputSpec};
pub use weights::{read_weights, read_weights_with_metadata, write_weights, Weights};
