//! A package opened for inference: the manifest, checked against the graph, and a model
//! ready to run. [`LoadedPackage::predict`] is the one entry point of every prediction:
//! inputs are validated against the manifest's schema before any tensor is built.

use std::collections::HashMap;
use std::path::Path;

use ward_core::Tensor;
use ward_graph::exec::Model;
use ward_graph::schema::validate_inputs;
use ward_graph::shape::infer_shapes;
use ward_graph::Graph;

use crate::loader::{open_package, Trust, Verification};
use crate::{Manifest, PackageError, PackageFiles};

pub struct LoadedPackage {
    manifest: Manifest,
    model: Model,
    verification: Verification,
}

fn inconsistent(reason: String) -> PackageError {
    PackageError::Inconsistent { reason }
}

impl LoadedPackage {
    /// Opens the package in `dir` through the verified loader, then checks it.
    pub fn open(dir: &Path, trust: &Trust) -> Result<LoadedPackage, PackageError> {
        let opened = open_package(dir, trust, std::time::SystemTime::now())?;
        let mut package = LoadedPackage::from_files(opened.files)?;
        package.verification = opened.verification;
        Ok(package)
    }

    /// Parses the graph and checks that it agrees with the manifest: the same inputs and
    /// outputs, in the same order, with the same dtypes, and shapes that infer. The files
    /// must come from the verified loader (or be freshly made, as by an import).
    fn from_files(files: PackageFiles) -> Result<LoadedPackage, PackageError> {
        let graph = Graph::from_json(&files.graph_json)?;
        let manifest = files.manifest;
        let graph_inputs: Vec<(&str, ward_core::DType)> = graph
            .inputs
            .iter()
            .map(|i| (i.name.as_str(), i.dtype))
            .collect();
        let manifest_inputs: Vec<(&str, ward_core::DType)> = manifest
            .inputs
            .iter()
            .map(|i| (i.name.as_str(), i.dtype))
            .collect();
        if graph_inputs != manifest_inputs {
            return Err(inconsistent(format!(
                "ward.json declares inputs {manifest_inputs:?}, graph.json has {graph_inputs:?}"
            )));
        }
        let graph_outputs: Vec<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
        let manifest_outputs: Vec<&str> =
            manifest.outputs.iter().map(|o| o.name.as_str()).collect();
        if graph_outputs != manifest_outputs {
            return Err(inconsistent(format!(
                "ward.json declares outputs {manifest_outputs:?}, graph.json has {graph_outputs:?}"
            )));
        }
        // Any failure of the graph against its weights shows now, not on the first request.
        let probe: Vec<Vec<usize>> = manifest
            .inputs
            .iter()
            .map(|i| {
                i.shape
                    .iter()
                    .map(|&d| if d < 0 { 1 } else { d as usize })
                    .collect()
            })
            .collect();
        infer_shapes(&graph, &probe)?;
        let weights: HashMap<String, Tensor> = files.weights.into_iter().collect();
        let model = Model::new(graph, weights)?;
        Ok(LoadedPackage {
            manifest,
            model,
            verification: Verification::Unverified,
        })
    }

    /// Who vouched for the package.
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn graph(&self) -> &Graph {
        self.model.graph()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Validates `inputs` against the schema, runs the model and names its outputs.
    pub fn predict(
        &self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, PackageError> {
        validate_inputs(&self.manifest.inputs, &inputs)?;
        let mut by_name: HashMap<String, Tensor> = inputs.into_iter().collect();
        let ordered: Vec<Tensor> = self
            .manifest
            .inputs
            .iter()
            .filter_map(|spec| by_name.remove(&spec.name))
            .collect();
        let outputs = self.model.run(&ordered)?;
        Ok(self
            .manifest
            .outputs
            .iter()
            .map(|o| o.name.clone())
            .zip(outputs)
            .collect())
    }
}
