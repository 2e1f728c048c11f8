//! Network security that every ward service shares, whatever it speaks: rustls server and
//! client configurations with mutual TLS, the principals of client certificates and of the
//! tokens file, scopes, per-principal rate limits and daily budgets, the per-address
//! connection cap, the request-memory budget, and the audit event of a request.
//!
//! Nothing here knows HTTP or gRPC: errors are [`NetError`] variants that name what was
//! wrong, and each transport maps them to its own statuses (`ward-serve` to HTTP). See
//! docs/ARCHITECTURE.md, "ward-net".

// Data from outside must never be unwrapped; tests may.

pub mod audit;
pub mod connections;
pub mod devcert;
pub mod error;
pub mod memory;
pub mod peer;
pub mod pem;
pub mod ratelimit;
pub mod tls;
pub mod tokens;

pub use audit::{Decision, InputSummary, RequestEvent};
pub use error::{EntryProblem, NetError};
pub use peer::ClientCertificate;
