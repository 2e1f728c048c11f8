//! Helpers shared by the test modules.

pub mod params_corpus;
