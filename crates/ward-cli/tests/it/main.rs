//! The `ward` binary's integration tests: one binary for the crate, so it is linked once.

// Test code may panic on what it set up itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

mod checkpoint;
mod cli;
mod cluster;
mod deny;
mod doctor;
mod export_mxnet;
mod hostile_files;
mod mxnet_states;
mod plot;
mod signing;
mod train;
mod version;
