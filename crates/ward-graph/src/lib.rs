//! The ward graph IR: typed operators with typed attributes, by family; versioned JSON;
//! shape inference; the input schema and its validation; and the reading of MXNet's
//! encodings and of the first IR version.
//!
//! The IR ([`ir`], [`ops`]) knows nothing of MXNet or of any engine: `ward-exec` lowers it
//! to an engine, `ward-mxnet` translates MXNet graphs into it.

// Data from outside must never be unwrapped; tests may.

pub mod compat;
pub mod dtypes;
mod error;
pub mod interp;
pub mod ir;
pub mod limits;
pub mod ops;
pub mod schema;
pub mod shape;

pub use error::GraphError;
pub use ir::{Graph, Node, Op, Source};
