//! ward-net's integration tests, one binary for the crate (each test binary links the
//! whole crate once).

// Test code may panic on what it set up itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod mutual_tls;
