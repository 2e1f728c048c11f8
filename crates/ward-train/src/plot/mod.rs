//! Training curves: `metrics.jsonl` as `ward train` writes it, read as untrusted input
//! ([`log`]), drawn as a PNG ([`chart`]): losses on the left, the other metrics on the
//! right, against the step.
//!
//! The drawing is ward's own (a 5×7 bitmap font, lines stamped along their length, no
//! graphics library) and encoded by the `png` crate the image reader already uses.

pub mod chart;
mod font;
pub mod log;
mod raster;

pub use chart::{render, ChartError, ChartOptions};
pub use log::{parse_log, read_log, LogError, LogLimits, RunLog, Scope, Series};
