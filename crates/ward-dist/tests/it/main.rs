//! ward-dist's integration tests: real clusters on loopback, one binary for the crate.

// Test code may panic on what it set up itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cluster;
mod hostile;
