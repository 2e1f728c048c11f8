//! Execution: the [`Backend`] trait every engine implements (compile a graph with its
//! weights for concrete input shapes into a [`Plan`]; run a plan), the tract CPU backend
//! ([`TractBackend`], fed by the ONNX lowering in [`onnx`], which also gives `ward export
//! onnx`), the plan cache that never outlives the weights ([`Executable`]), and the package
//! opened for inference ([`LoadedPackage`]).
//!
//! `ward-package` (signing, verification, layouts) links no engine: everything that runs
//! a graph lives here.

// Data from outside must never be unwrapped; tests may.

mod backend;
mod error;
mod executable;
pub mod onnx;
mod package;
#[cfg(test)]
mod testing;
pub mod tract;
mod weights;

pub use backend::{Backend, Plan, Staged};
pub use error::ExecError;
pub use executable::{Executable, MAX_CACHED_PLANS};
pub use package::{CheckedInputs, LoadedPackage, PackageModel, StagedInputs};
pub use tract::TractBackend;
pub use weights::{WeightSet, WeightsId};
