//! The ward model package: a directory holding a manifest (`ward.json`), the graph IR
//! (`graph.json`), the weights (`weights.safetensors`) and signatures (`model.sig`,
//! `model.N.sig`) in the OpenSSF model-signing format ([`signature`]).
//!
//! Which files a signed directory holds is a description, a [`Layout`] ([`layout`]); the
//! package is one, a checkpoint another. Opening is done in one place, the verified
//! loader ([`loader`]), which is one pipeline of stages that can only be taken in order
//! ([`pipeline`]): every file is read once ([`read`]), with size limits and without
//! following links; the signatures are checked against the trust policy over those bytes;
//! only then are the same bytes parsed. The parsers (manifest, safetensors) are strict and
//! bounded by the limits in [`limits`]. Writing is done in one place too, whole or not at
//! all ([`mod@write`]). A model's name follows one rule ([`model_name`]).

// Data from outside must never be unwrapped; tests may.

pub mod error;
pub mod from_mxnet;
pub mod layout;
pub mod limits;
pub mod loader;
pub mod manifest;
pub mod model_name;
pub mod package;
pub mod pipeline;
pub mod problem;
pub mod read;
pub mod sign_model;
pub mod signature;
pub mod tree;
pub mod weights;
pub mod write;

pub use error::PackageError;
pub use layout::{
    is_signature_name, Layout, CHECKPOINT_INDEX_FILE, CHECKPOINT_STATE_FILE, GRAPH_FILE,
    MANIFEST_FILE, SIGNATURE_FILE, WEIGHTS_FILE,
};
pub use limits::PackageLimits;
pub use loader::{
    open_layout, open_package, verify_directory, verify_package, OpenedPackage, Trust,
    Verification, VerifiedPackage, VerifiedTree,
};
pub use manifest::{FileDigest, FileSizes, Manifest, Origin, OutputPolicy};
pub use package::{
    read_raw_package, sign_options, write_package, write_signed_package, PackageFiles, RawPackage,
};
pub use signature::TrustPolicy;
pub use ward_graph::schema::{InputLimits, InputSpec, OutputSpec};
pub use weights::{
    read_weights, read_weights_owned, read_weights_parts, read_weights_with_metadata,
    write_tensor_views, write_tensor_views_to, write_weights, TensorView, ViewData, Weights,
};
