//! Safe readers for Apache MXNet 1.x model files, and their conversion into ward graphs.
//!
//! Every byte here comes from outside: `.params` files ([`params`]), symbol JSON
//! ([`symbol`], with attribute strings parsed by [`attrs`]), all bounded by [`limits`].
//! [`import`] turns a symbol and its parameters into a typed [`ward_graph::Graph`];
//! [`export`] writes a graph and its weights back as MXNet files (with
//! [`params::write_params`]), so that a model trained in ward can go back to MXNet.
//! Nothing in this crate executes a model.

// Data from outside must never be unwrapped; tests may.

pub mod attrs;
pub mod export;
pub mod import;
pub mod limits;
pub mod new_params;
pub mod params;
pub mod pickle;
pub mod recordio;
pub mod states;
pub mod symbol;
