//! The ward graph IR: typed operators with typed attributes, versioned JSON, shape
//! inference, the input schema and its validation, and the CPU backend.
//!
//! The IR ([`ir`]) knows nothing of MXNet or of any engine. [`onnx`] lowers it to an ONNX
//! model for concrete shapes; [`exec`] runs that model on tract.

// Data from outside must never be unwrapped; tests may.
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod error;
pub mod interp;
pub mod ir;
pub mod schema;
pub mod shape;

#[cfg(feature = "tract")]
pub mod exec;
#[cfg(feature = "tract")]
mod fusion;
#[cfg(feature = "tract")]
mod max_pool;
#[cfg(feature = "tract")]
pub mod onnx;

pub use error::GraphError;
pub use ir::{Graph, Node, Op, Source};
