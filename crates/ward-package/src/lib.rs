//! The ward model package: a directory holding a manifest (`ward.json`), the graph IR
//! (`graph.json`), the weights (`weights.safetensors`) and, later, signatures
//! (`model.sig`, `model.N.sig`).
//!
//! Reading is done in one place ([`package::read_raw_package`]): every file is read once
//! into memory, with size limits and without following links, before anything is parsed;
//! signature verification will sit between reading and parsing. The parsers (manifest,
//! safetensors) are strict and bounded by the limits in [`limits`].

// Data from outside must never be unwrapped; tests may.
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod error;
pub mod limits;
pub mod manifest;
#[cfg(feature = "exec")]
pub mod model;
pub mod package;
pub mod weights;

pub use error::PackageError;
pub use manifest::{FileDigest, Manifest, Origin, OutputPolicy};
#[cfg(feature = "exec")]
pub use model::LoadedPackage;
pub use package::{
    read_package, read_package_with, read_raw_package, write_package, PackageFiles, RawPackage,
    GRAPH_FILE, MANIFEST_FILE, SIGNATURE_FILE, WEIGHTS_FILE,
};
pub use ward_graph::schema::{InputSpec, OutputSpec};
pub use weights::{read_weights, read_weights_with_metadata, write_weights, Weights};
