//! ward-exec's integration tests: one binary for the crate, so it is linked once.

// Test code may panic on what it set up itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

mod checked_inputs;
mod conformance;
mod deform;
mod dense;
mod dtype_sweep;
mod foreach;
mod models;
mod ops;
mod roi;
mod staged;
