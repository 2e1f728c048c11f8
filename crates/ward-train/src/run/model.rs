//! Where a run's model comes from: MXNet files (a symbol, its params, new layers
//! initialised by the spec), or a ward package to fine-tune, which the caller opens
//! through the verified loader (ward-exec's, which this crate does not link).

use std::collections::HashMap;
use std::path::Path;

use ward_core::random::RunSeed;
use ward_core::{DType, Tensor};
use ward_graph::schema::OutputSpec;
use ward_graph::Graph;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::limits::{
    ParamsLimits, SymbolLimits, MAX_PARAMS_FILE_BYTES, MAX_SYMBOL_JSON_BYTES,
};
use ward_mxnet::new_params::import_with_new_params;
use ward_mxnet::params::ParamsFile;
use ward_mxnet::symbol::Symbol;
use ward_package::signature::PrivateKey;
use ward_package::{write_signed_package, FileDigest, InputSpec, Manifest, Origin};

use super::error::refuse;
use super::RunError;
use crate::spec::{ModelSource, TrainSpec};
use crate::trainer::{Objective, Trainer, TrainerSetup};

/// A model ready to train, and what its package will say about where it came from.
pub struct Model {
    pub graph: Graph,
    /// One per graph parameter; `None` for a new one, which the spec's `[init]` draws.
    pub given: Vec<Option<Vec<f32>>>,
    /// The new parameters' names.
    pub new: Vec<String>,
    /// The MXNet symbol, whose variables hold Module's multipliers.
    pub symbol: Option<Symbol>,
    pub name: String,
    pub origin: Origin,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
}

/// A verified package's model, parsed and checked against its manifest: what the
/// caller's [`PackageOpener`] gives back.
pub struct OpenedModel {
    pub manifest: Manifest,
    pub graph: Graph,
    /// By parameter name.
    pub weights: HashMap<String, Tensor>,
}

/// Opens the package a spec fine-tunes (`[model] package = ...`) through the verified
/// loader, under the caller's trust policy. A caller without a trust policy passes no
/// opener, and such a spec is refused.
pub trait PackageOpener: Sync {
    fn open(&self, dir: &Path) -> Result<OpenedModel, RunError>;
}

/// The spec's model, for examples of `example_shape` (paths relative to `base`).
/// `resuming`: a resumed run's trust policy verifies its checkpoint, so an opener given
/// with an MXNet model is not a mistake then.
pub fn load(
    spec: &TrainSpec,
    base: &Path,
    example_shape: &[usize],
    opener: Option<&dyn PackageOpener>,
    resuming: bool,
) -> Result<Model, RunError> {
    let source = spec.model.source()?;
    if opener.is_some() && !resuming && !matches!(source, ModelSource::Package(_)) {
        refuse!("--trust and --allow-unsigned apply to a package model ([model] package); this spec trains MXNet files");
    }
    match source {
        ModelSource::Mxnet { symbol, params } => mxnet(spec, base, symbol, params, example_shape),
        ModelSource::Package(package) => {
            let dir = base.join(package);
            let Some(opener) = opener else {
                refuse!(
                    "[model] package {}: no trust policy: pass --trust KEY.pub or --trust POLICY.toml \
                     (or --allow-unsigned for a local experiment)",
                    dir.display()
                );
            };
            from_package(spec, &dir, opener.open(&dir)?, example_shape)
        }
    }
}

fn read(path: &Path, limit: u64) -> Result<Vec<u8>, RunError> {
    ward_core::files::read_bounded(path, limit)
        .map_err(|e| RunError::failed(format!("cannot read {}", path.display()), &e))
}

fn mxnet(
    spec: &TrainSpec,
    base: &Path,
    symbol_path: &Path,
    params_path: Option<&Path>,
    example_shape: &[usize],
) -> Result<Model, RunError> {
    let symbol_bytes = read(&base.join(symbol_path), MAX_SYMBOL_JSON_BYTES as u64)?;
    let symbol = ward_mxnet::symbol::read_symbol(&symbol_bytes, &SymbolLimits::default())
        .map_err(|e| RunError::failed(symbol_path.display().to_string(), &e))?;
    let params_bytes = params_path
        .map(|p| read(&base.join(p), MAX_PARAMS_FILE_BYTES))
        .transpose()?;
    let params = match (&params_bytes, params_path) {
        (Some(bytes), Some(path)) => {
            ward_mxnet::params::read_params(bytes, &ParamsLimits::default())
                .map_err(|e| RunError::failed(path.display().to_string(), &e))?
        }
        _ => ParamsFile {
            arrays: Vec::new(),
            names: None,
        },
    };
    let mut shape = vec![-1i64];
    shape.extend(example_shape.iter().map(|&d| d as i64));
    let data_input = spec.model.data_input().to_owned();
    let declared = [DeclaredInput {
        name: data_input.clone(),
        dtype: DType::F32,
        shape: shape.clone(),
    }];
    // Weights the file lacks are new parameters only when the spec says how to start them.
    let (imported, new) = match &spec.init {
        Some(_) => import_with_new_params(&symbol, params, &declared)
            .map_err(|e| RunError::failed("import", &e))?,
        None => (
            import(&symbol, params, &declared).map_err(|e| RunError::failed("import", &e))?,
            Vec::new(),
        ),
    };
    let given = imported
        .f32_weights()
        .into_iter()
        .zip(&imported.graph.params)
        .map(|(w, p)| {
            if new.iter().any(|n| n.name == p.name) {
                return Ok(None);
            }
            match w {
                Some(w) => Ok(Some(w)),
                None => refuse!("no weights for {}", p.name),
            }
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    let v = symbol.mxnet_version;
    let origin = Origin {
        framework: "mxnet".into(),
        framework_version: Some(format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)),
        files: [
            (Some(symbol_path), Some(&symbol_bytes)),
            (params_path, params_bytes.as_ref()),
        ]
        .into_iter()
        .filter_map(|(path, bytes)| Some(FileDigest::of(file_name(path?), bytes?)))
        .collect(),
    };
    let name = match &spec.model.name {
        Some(name) => ward_package::model_name::sanitize(name),
        None => ward_package::from_mxnet::default_model_name(symbol_path),
    };
    Ok(Model {
        outputs: imported.output_specs(),
        graph: imported.graph,
        given,
        new: new.into_iter().map(|p| p.name).collect(),
        symbol: Some(symbol),
        name,
        origin,
        inputs: vec![InputSpec {
            name: data_input,
            dtype: DType::F32,
            shape,
            range: None,
            allow_nonfinite: false,
        }],
    })
}

/// A verified package to fine-tune: its one data input checked against the training
/// data, every weight an f32 tensor of its parameter's shape.
fn from_package(
    spec: &TrainSpec,
    dir: &Path,
    model: OpenedModel,
    example_shape: &[usize],
) -> Result<Model, RunError> {
    let manifest = model.manifest;
    let [input] = manifest.inputs.as_slice() else {
        refuse!(
            "package {}: ward train feeds one data input; the package declares {}",
            dir.display(),
            manifest.inputs.len()
        );
    };
    if let Some(wanted) = spec.model.data_input.as_deref() {
        if wanted != input.name {
            refuse!(
                "model.data_input = {wanted:?}, but package {} names its input {:?}",
                dir.display(),
                input.name
            );
        }
    }
    let fits = input.dtype == DType::F32
        && input.shape.len() == example_shape.len() + 1
        && input
            .shape
            .iter()
            .skip(1)
            .zip(example_shape)
            .all(|(&d, &e)| d < 0 || d as usize == e)
        && input
            .shape
            .first()
            .is_some_and(|&b| b < 0 || b as usize == spec.data.batch_size);
    if !fits {
        refuse!(
            "package {}: input {:?} is {} {:?}; the training data gives f32 batches of {:?}",
            dir.display(),
            input.name,
            input.dtype,
            input.shape,
            [&[spec.data.batch_size][..], example_shape].concat()
        );
    }
    let given = model
        .graph
        .params
        .iter()
        .map(|p| {
            let Some(tensor) = model.weights.get(&p.name) else {
                refuse!("package {}: no weights for {}", dir.display(), p.name);
            };
            if tensor.dtype() != DType::F32 || tensor.shape() != p.shape.as_slice() {
                refuse!(
                    "package {}: parameter {} is {} {:?}; training needs f32 {:?}",
                    dir.display(),
                    p.name,
                    tensor.dtype(),
                    tensor.shape(),
                    p.shape
                );
            }
            Ok(Some(tensor.to_f32_vec()))
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    let name = match &spec.model.name {
        Some(name) => ward_package::model_name::sanitize(name),
        None => manifest.name.clone(),
    };
    Ok(Model {
        graph: model.graph,
        given,
        new: Vec::new(),
        symbol: None,
        name,
        origin: manifest.origin.clone(),
        inputs: manifest.inputs.clone(),
        outputs: manifest.outputs.clone(),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A trainer of `model` with `weights` for batches of `batch` examples of
/// `example_shape`, with the spec's optimizer, schedule, objective and multipliers.
pub fn trainer(
    spec: &TrainSpec,
    model: &Model,
    weights: Vec<Vec<f32>>,
    batch: usize,
    example_shape: &[usize],
    seed: &RunSeed,
) -> Result<Trainer, RunError> {
    let optimizer = crate::Optimizer::new(spec.optimizer.clone(), spec.schedule.clone())
        .map_err(crate::trainer::TrainError::from)?;
    Ok(Trainer::new(
        model.graph.clone(),
        weights,
        &[&[batch][..], example_shape].concat(),
        optimizer,
        seed.clone(),
        setup(spec, model),
    )?)
}

/// How the spec reads the model: its objective and multipliers.
pub fn setup<'a>(spec: &TrainSpec, model: &'a Model) -> TrainerSetup<'a> {
    TrainerSetup {
        objective: spec.loss.map_or(Objective::Head, Objective::Loss),
        multipliers: spec.run.multipliers,
        symbol: model.symbol.as_ref(),
    }
}

/// Writes trained weights (one per graph parameter) as the package `dir`, signed with
/// `key` when one is given; returns its manifest.
pub fn write_trained(
    dir: &Path,
    model: Model,
    graph: &Graph,
    trained: &[Vec<f32>],
    key: Option<&PrivateKey>,
    created_unix: u64,
) -> Result<Manifest, RunError> {
    // The trained weights, under their names, as the package's weights.
    let tensors = graph
        .params
        .iter()
        .zip(trained)
        .map(|(p, w)| {
            Tensor::from_f32(p.shape.clone(), w)
                .map(|t| (p.name.clone(), t))
                .map_err(|e| RunError::failed(format!("parameter {}", p.name), &e))
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    let manifest = Manifest::new(
        model.name,
        "1",
        created_unix,
        model.origin,
        model.inputs,
        model.outputs,
    );
    write_signed_package(dir, &manifest, &graph.to_json(), &tensors, key)
        .map_err(|e| RunError::failed(format!("writing {}", dir.display()), &e))?;
    Ok(manifest)
}
