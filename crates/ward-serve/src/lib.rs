//! `ward serve`: the Open Inference Protocol v2 server (KServe v2 / Triton HTTP) over TLS.
//!
//! Secure by default: TLS on (plaintext only on loopback, by explicit flag), every route
//! behind a bearer token with scopes, models only from the verified loader, every request
//! bounded before allocation and validated against the package's schema, an output policy
//! against model extraction, per-principal rate limits and budgets, and an audit line per
//! request. TLS, principals, tokens, rate limits, connection caps and the request memory
//! are ward-net's; this crate is the HTTP server around them. See docs/ARCHITECTURE.md,
//! "ward-serve".

pub mod app;
pub mod batch;
pub mod batch_cost;
pub mod config;
mod connection;
pub mod error;
pub mod extraction;
pub mod limits;
pub mod metrics;
mod model_threads;
pub mod policy;
pub mod protocol;
pub mod repo;
pub mod scopes;
pub mod server;

pub use config::ServeConfig;
pub use error::{ApiError, ServeError};
pub use server::Server;
