//! ward-mxnet's integration tests: one binary for the crate, so it is linked once.
//! (`tests/params_alloc.rs` is a binary of its own: it counts every allocation of the
//! process, which other tests running beside it would disturb.)

// Test code may panic on what it set up itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

mod anchor_ops;
mod arange_ops;
mod compare_ops;
mod deform_ops;
mod detection_ops;
mod dtype_ops;
mod export_roundtrip;
mod foreach;
mod fused;
mod import_errors;
mod index_ops;
mod linear_ops;
mod math_ops;
mod new_params;
mod norm_ops;
mod order_ops;
mod output_names;
mod params_crafted;
mod params_fixtures;
mod params_malformed;
mod params_proptest;
mod params_writer;
mod recordio;
mod reduce_ops;
mod roi_ops;
mod sequence_ops;
mod shape_ops;
mod states;
mod symbol_reader;
mod tile_ops;
