//! ward-train's integration tests: one binary for the crate, so it is linked once.

// Test code may panic on what it set up itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

mod checkpoint;
#[cfg(feature = "distributed")]
mod cluster_checkpoint;
mod data;
mod engine;
mod init;
mod losses;
mod metrics;
mod mnist;
mod models;
mod mxnet_gradients;
mod optimizers;
mod plot;
mod run;
mod training;
mod trajectories;
