//! Helpers shared by the test modules.

pub mod one_op;
pub mod params_corpus;
