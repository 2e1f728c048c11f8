//! The scopes of `ward serve`'s tokens: what each route needs. The tokens file is read by
//! ward-net, which knows scopes only as names; these are the names this server knows.

/// `POST …/infer`.
pub const INFER: &str = "infer";
/// `GET /v2`, `GET /v2/models/{model}`.
pub const METADATA: &str = "metadata";
/// `GET /v2/health/*`, `GET /v2/models/{model}/ready`.
pub const HEALTH: &str = "health";
/// `GET /metrics`.
pub const METRICS: &str = "metrics";

/// Every scope a tokens file for `ward serve` may name.
pub const ALL: &[&str] = &[INFER, METADATA, HEALTH, METRICS];
