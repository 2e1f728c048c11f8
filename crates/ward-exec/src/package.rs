//! A package opened for inference: the manifest, checked against the graph, and a model
//! ready to run. Every prediction goes through the schema check: the model runs only
//! [`CheckedInputs`] ([`LoadedPackage::check_inputs`], owned tensors a server can batch)
//! or [`StagedInputs`] ([`LoadedPackage::stage`], borrowed tensors checked in place and
//! copied once into the engine's own), which nothing else can make, so inputs are
//! validated against the manifest's schema exactly once, before any tensor is built for
//! the engine. Both run through the same two steps, staging then running, so a caller
//! who must not hold the input bytes while the model runs (a Python binding releasing the
//! GIL) stages them first and runs apart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ward_core::{Tensor, TensorView};
use ward_graph::compat::upgrade_v1;
use ward_graph::ir::{graph_version, InputRole, GRAPH_VERSION};
use ward_graph::schema::{validate_inputs_with, validate_views, InputLimits};
use ward_graph::shape::infer_shapes;
use ward_graph::Graph;
use ward_package::{open_package, Manifest, PackageFiles, PackageLimits, Trust, Verification};

use crate::backend::{Backend, Plan, Staged};
use crate::error::ExecError;
use crate::executable::Executable;
use crate::weights::WeightSet;

pub struct LoadedPackage {
    manifest: Manifest,
    executable: Executable,
    verification: Verification,
    /// Tells this package's [`CheckedInputs`] from another's.
    serial: u64,
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0);

/// Inputs that passed one package's schema, in the manifest's order. Only
/// [`LoadedPackage::check_inputs`] and [`LoadedPackage::join`] make them, and only that
/// package runs them.
#[derive(Debug)]
pub struct CheckedInputs {
    tensors: Vec<Tensor>,
    serial: u64,
}

impl CheckedInputs {
    /// The tensors, in the order of the manifest's inputs.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// The first dimension of the first input (1 for a scalar or no input).
    pub fn rows(&self) -> usize {
        self.tensors
            .first()
            .and_then(|t| t.shape().first().copied())
            .unwrap_or(1)
    }

    /// Whether `self` and `other` can be joined along the first dimension: the same
    /// package, and every input agreeing in every dimension after the first.
    pub fn joins_with(&self, other: &CheckedInputs) -> bool {
        self.serial == other.serial
            && self.tensors.iter().zip(&other.tensors).all(|(a, b)| {
                a.shape().len() == b.shape().len()
                    && a.shape().first() == Some(&self.rows())
                    && b.shape().first() == Some(&other.rows())
                    && a.shape().get(1..) == b.shape().get(1..)
            })
    }
}

/// Inputs that passed one package's schema, copied into its engine's own tensors: they
/// borrow nothing of the caller's. Only [`LoadedPackage::stage`] makes them, and only that
/// package runs them ([`LoadedPackage::run_staged`]).
#[derive(Debug)]
pub struct StagedInputs {
    staged: Staged,
    serial: u64,
}

impl StagedInputs {
    /// The inputs' shapes, in the order of the manifest's inputs.
    pub fn shapes(&self) -> &[Vec<usize>] {
        self.staged.shapes()
    }
}

fn inconsistent(reason: String) -> ExecError {
    ExecError::Inconsistent { reason }
}

impl LoadedPackage {
    /// Opens the package in `dir` through the verified loader, within `limits`, then
    /// checks it and prepares it to run on `backend`.
    pub fn open(
        dir: &Path,
        trust: &Trust,
        limits: &PackageLimits,
        backend: Arc<dyn Backend>,
    ) -> Result<LoadedPackage, ExecError> {
        let (model, verification) = PackageModel::open(dir, trust, limits)?;
        let mut package = LoadedPackage::from_model(model, backend)?;
        package.verification = verification;
        Ok(package)
    }

    /// A checked model made ready to run on `backend`; its verification is
    /// [`Verification::Unverified`] (whoever built it vouches for its bytes).
    pub fn from_model(
        model: PackageModel,
        backend: Arc<dyn Backend>,
    ) -> Result<LoadedPackage, ExecError> {
        let PackageModel {
            manifest,
            graph,
            weights,
        } = model;
        let weights = WeightSet::new(&graph, weights)?;
        let executable = Executable::new(graph, weights, backend)?;
        Ok(LoadedPackage {
            manifest,
            executable,
            verification: Verification::Unverified,
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
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
        self.executable.graph()
    }

    /// The graph with its weights, as it runs.
    pub fn executable(&self) -> &Executable {
        &self.executable
    }

    /// Validates `inputs` against the schema with the default limits, runs the model and
    /// names its outputs.
    pub fn predict(
        &self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        let staged = self.stage_owned(&inputs)?;
        self.run_staged(staged)
    }

    /// Owned `inputs` staged with the default limits (what both predicts take).
    fn stage_owned(&self, inputs: &[(String, Tensor)]) -> Result<StagedInputs, ExecError> {
        let views: Vec<(&str, TensorView<'_>)> = inputs
            .iter()
            .map(|(name, t)| (name.as_str(), t.view()))
            .collect();
        self.stage(&views, &InputLimits::default())
    }

    /// Validates `inputs` and runs the model once, as [`LoadedPackage::predict`] does,
    /// handing the weights to the plan ([`Executable::into_plan`]): building it holds the
    /// weights about once instead of twice. For a process that runs the model once (`ward
    /// predict`). The plan comes back with the named outputs, for a caller about to exit
    /// to leave it to the OS rather than free it piece by piece.
    #[allow(clippy::type_complexity)]
    pub fn predict_once(
        self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<(Vec<(String, Tensor)>, Arc<dyn Plan>), ExecError> {
        let StagedInputs { staged, .. } = self.stage_owned(&inputs)?;
        let LoadedPackage {
            manifest,
            executable,
            ..
        } = self;
        let plan = executable.into_plan(staged.shapes())?;
        tracing::debug!("plan: running");
        let outputs = plan.run(staged)?;
        tracing::debug!("plan: ran");
        Ok((named_outputs(&manifest, outputs), plan))
    }

    /// Validates borrowed `inputs` against the schema (names, dtypes, shapes, values,
    /// `limits`) where they lie, then copies each once, in the manifest's order, into the
    /// engine's own tensors. The result borrows nothing: the caller's buffers may change
    /// as soon as this returns, and [`LoadedPackage::run_staged`] never reads them.
    pub fn stage(
        &self,
        inputs: &[(&str, TensorView<'_>)],
        limits: &InputLimits,
    ) -> Result<StagedInputs, ExecError> {
        validate_views(&self.manifest.inputs, inputs, limits)?;
        let ordered: Vec<TensorView<'_>> = self
            .manifest
            .inputs
            .iter()
            .filter_map(|spec| {
                let (_, view) = inputs.iter().find(|(name, _)| *name == spec.name)?;
                Some(*view)
            })
            .collect();
        self.stage_checked(&ordered)
    }

    /// Stages inputs this package checked, in the manifest's order.
    fn stage_checked(&self, ordered: &[TensorView<'_>]) -> Result<StagedInputs, ExecError> {
        Ok(StagedInputs {
            staged: self.executable.stage(ordered)?,
            serial: self.serial,
        })
    }

    /// Runs the model on inputs this package staged and names its outputs.
    pub fn run_staged(&self, inputs: StagedInputs) -> Result<Vec<(String, Tensor)>, ExecError> {
        if inputs.serial != self.serial {
            return Err(ExecError::ForeignInputs);
        }
        let outputs = self.executable.run_staged(inputs.staged)?;
        Ok(named_outputs(&self.manifest, outputs))
    }

    /// Validates `inputs` against the schema (names, dtypes, shapes, values, `limits`) and
    /// orders them as the manifest does.
    pub fn check_inputs(
        &self,
        inputs: Vec<(String, Tensor)>,
        limits: &InputLimits,
    ) -> Result<CheckedInputs, ExecError> {
        validate_inputs_with(&self.manifest.inputs, &inputs, limits)?;
        let mut by_name: HashMap<String, Tensor> = inputs.into_iter().collect();
        let tensors = self
            .manifest
            .inputs
            .iter()
            .filter_map(|spec| by_name.remove(&spec.name))
            .collect();
        Ok(CheckedInputs {
            tensors,
            serial: self.serial,
        })
    }

    /// Joins checked inputs along the first dimension, for a model whose inputs all
    /// declare it variable. The join is valid under the schema because each part is: the
    /// schema's checks are per element and per dimension after the first. `None` when the
    /// parts do not join.
    pub fn join(&self, parts: &[CheckedInputs]) -> Option<CheckedInputs> {
        let first = parts.first()?;
        let variable = self
            .manifest
            .inputs
            .iter()
            .all(|i| i.shape.first() == Some(&-1));
        if !variable || first.serial != self.serial || !parts.iter().all(|p| first.joins_with(p)) {
            return None;
        }
        let total: usize = parts.iter().map(CheckedInputs::rows).sum();
        let tensors = (first.tensors.iter().enumerate())
            .map(|(i, head)| {
                let mut shape = head.shape().to_vec();
                *shape.first_mut()? = total;
                let mut bytes = Vec::new();
                for part in parts {
                    bytes.extend_from_slice(part.tensors.get(i)?.bytes());
                }
                Tensor::from_bytes(head.dtype(), shape, bytes).ok()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(CheckedInputs {
            tensors,
            serial: self.serial,
        })
    }

    /// The model as ONNX (opset [`crate::onnx::OPSET`]) for concrete input shapes: each
    /// input's shape from `shapes` by name (it must fit the declared one), or the declared
    /// shape with every variable dimension at 1.
    pub fn export_onnx(&self, shapes: &[(String, Vec<usize>)]) -> Result<Vec<u8>, ExecError> {
        let export_shape = |input: &str, reason: String| ExecError::ExportShape {
            input: input.into(),
            reason,
        };
        if let Some((name, _)) = shapes
            .iter()
            .find(|(name, _)| !self.manifest.inputs.iter().any(|i| &i.name == name))
        {
            return Err(export_shape(name, "the model has no such input".into()));
        }
        let mut concrete = Vec::new();
        for spec in &self.manifest.inputs {
            let shape = match shapes.iter().find(|(name, _)| *name == spec.name) {
                Some((_, dims)) => {
                    let fits = dims.len() == spec.shape.len()
                        && dims
                            .iter()
                            .zip(&spec.shape)
                            .all(|(&d, &s)| s < 0 || i64::try_from(d) == Ok(s));
                    if !fits {
                        return Err(export_shape(
                            &spec.name,
                            format!("{dims:?} does not fit the declared shape {:?}", spec.shape),
                        ));
                    }
                    dims.clone()
                }
                None => spec
                    .shape
                    .iter()
                    .map(|&d| usize::try_from(d).unwrap_or(1))
                    .collect(),
            };
            concrete.push(shape);
        }
        let weights = self.executable.weights();
        let proto = crate::onnx::lower(self.graph(), weights.tensors(), &concrete)?;
        crate::onnx::refuse_ward_nodes(&proto)?;
        Ok(crate::onnx::encode(&proto))
    }

    /// Runs the model on inputs this package checked and names its outputs.
    pub fn run(&self, inputs: CheckedInputs) -> Result<Vec<(String, Tensor)>, ExecError> {
        if inputs.serial != self.serial {
            return Err(ExecError::ForeignInputs);
        }
        let views: Vec<TensorView<'_>> = inputs.tensors.iter().map(Tensor::view).collect();
        let staged = self.stage_checked(&views)?;
        drop(inputs);
        self.run_staged(staged)
    }
}

/// A verified package's model, parsed and checked against its manifest, not yet planned
/// to run: what training starts from when it fine-tunes a package.
pub struct PackageModel {
    pub manifest: Manifest,
    pub graph: Graph,
    /// By parameter name.
    pub weights: HashMap<String, Tensor>,
}

/// `outputs` named as the manifest names them, in its order.
fn named_outputs(manifest: &Manifest, outputs: Vec<Tensor>) -> Vec<(String, Tensor)> {
    manifest
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .zip(outputs)
        .collect()
}

impl PackageModel {
    /// Opens a package through the verified loader (read once, verified under `trust`,
    /// then parsed) and checks its model.
    pub fn open(
        dir: &Path,
        trust: &Trust,
        limits: &PackageLimits,
    ) -> Result<(PackageModel, Verification), ExecError> {
        tracing::debug!("package: reading and verifying");
        let opened = open_package(dir, trust, std::time::SystemTime::now(), limits)?;
        tracing::debug!("package: verified; parsing");
        Ok((PackageModel::from_files(opened.files)?, opened.verification))
    }

    /// Parses the graph (a version-1 graph is upgraded with the manifest's input shapes)
    /// and checks that it agrees with the manifest: the same data inputs and outputs, in
    /// the same order, with the same dtypes, and shapes that infer.
    fn from_files(files: PackageFiles) -> Result<PackageModel, ExecError> {
        let manifest = files.manifest;
        let mut weights = files.weights;
        // Variable dims at 1: enough for a version-1 graph's encodings, which depend on
        // ranks and fixed dims only.
        let probe = probe_shapes(&manifest);
        let graph = match graph_version(&files.graph_json)? {
            1 => upgrade_v1(&files.graph_json, &probe, &mut weights)?,
            GRAPH_VERSION => Graph::from_json(&files.graph_json)?,
            found => {
                return Err(ward_graph::GraphError::Version {
                    found,
                    supported: GRAPH_VERSION,
                }
                .into())
            }
        };
        PackageModel::from_parts(manifest, graph, weights)
    }

    /// A model built in memory (an MXNet export whose files' digests the caller pinned),
    /// checked against its manifest exactly as a package's is.
    pub fn from_parts(
        manifest: Manifest,
        graph: Graph,
        weights: Vec<(String, Tensor)>,
    ) -> Result<PackageModel, ExecError> {
        let probe = probe_shapes(&manifest);
        let graph_inputs: Vec<(&str, ward_core::DType)> = graph
            .inputs
            .iter()
            .filter(|i| i.role == InputRole::Data)
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
        infer_shapes(&graph, &probe)?;
        let weights: HashMap<String, Tensor> = weights.into_iter().collect();
        Ok(PackageModel {
            manifest,
            graph,
            weights,
        })
    }
}

/// The manifest's input shapes with every variable dimension at 1.
fn probe_shapes(manifest: &Manifest) -> Vec<Vec<usize>> {
    manifest
        .inputs
        .iter()
        .map(|i| {
            i.shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(1))
                .collect()
        })
        .collect()
}
