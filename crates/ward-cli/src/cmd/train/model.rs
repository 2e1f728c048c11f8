//! Where `ward train`'s model comes from: MXNet files (a symbol, its params, new layers
//! initialised by the spec), or a ward package to fine-tune, verified before it is parsed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use ward_core::DType;
use ward_graph::schema::OutputSpec;
use ward_graph::Graph;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::limits::{
    ParamsLimits, SymbolLimits, MAX_PARAMS_FILE_BYTES, MAX_SYMBOL_JSON_BYTES,
};
use ward_mxnet::new_params::import_with_new_params;
use ward_mxnet::params::ParamsFile;
use ward_mxnet::symbol::Symbol;
use ward_package::{FileDigest, InputSpec, Origin};
use ward_train::spec::{ModelSource, TrainSpec};

use crate::cmd::{read_file, TrustArgs};

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

/// The spec's model, for examples of `example_shape` (paths relative to `base`).
pub fn load(
    spec: &TrainSpec,
    base: &Path,
    example_shape: &[usize],
    trust: &TrustArgs,
    resuming: bool,
) -> Result<Model> {
    let source = spec.model.source()?;
    // On --resume, --trust also verifies the checkpoint.
    if trust.is_set() && !resuming && !matches!(source, ModelSource::Package(_)) {
        bail!("--trust and --allow-unsigned apply to a package model ([model] package); this spec trains MXNet files");
    }
    match source {
        ModelSource::Mxnet { symbol, params } => mxnet(spec, base, symbol, params, example_shape),
        ModelSource::Package(package) => {
            from_package(spec, &base.join(package), example_shape, trust)
        }
    }
}

fn mxnet(
    spec: &TrainSpec,
    base: &Path,
    symbol_path: &Path,
    params_path: Option<&Path>,
    example_shape: &[usize],
) -> Result<Model> {
    let symbol_bytes = read_file(&base.join(symbol_path), MAX_SYMBOL_JSON_BYTES as u64)?;
    let symbol = ward_mxnet::symbol::read_symbol(&symbol_bytes, &SymbolLimits::default())
        .with_context(|| format!("{}", symbol_path.display()))?;
    let params_bytes = params_path
        .map(|p| read_file(&base.join(p), MAX_PARAMS_FILE_BYTES))
        .transpose()?;
    let params = match (&params_bytes, params_path) {
        (Some(bytes), Some(path)) => {
            ward_mxnet::params::read_params(bytes, &ParamsLimits::default())
                .with_context(|| format!("{}", path.display()))?
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
        Some(_) => import_with_new_params(&symbol, params, &declared).context("import")?,
        None => (
            import(&symbol, params, &declared).context("import")?,
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
            w.map(Some)
                .with_context(|| format!("no weights for {}", p.name))
        })
        .collect::<Result<Vec<_>>>()?;
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

/// A ward package to fine-tune: opened by the verified loader under `--trust` (signatures
/// checked over the bytes that are then parsed), its one data input checked against the
/// training data, every weight an f32 tensor of its parameter's shape.
fn from_package(
    spec: &TrainSpec,
    dir: &Path,
    example_shape: &[usize],
    trust: &TrustArgs,
) -> Result<Model> {
    if !trust.is_set() {
        bail!(
            "[model] package {}: no trust policy: pass --trust KEY.pub or --trust POLICY.toml \
             (or --allow-unsigned for a local experiment)",
            dir.display()
        );
    }
    let model = trust.open_model(dir)?;
    let manifest = model.manifest;
    let [input] = manifest.inputs.as_slice() else {
        bail!(
            "package {}: ward train feeds one data input; the package declares {}",
            dir.display(),
            manifest.inputs.len()
        );
    };
    if let Some(wanted) = spec.model.data_input.as_deref() {
        if wanted != input.name {
            bail!(
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
        bail!(
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
            let tensor = model
                .weights
                .get(&p.name)
                .with_context(|| format!("package {}: no weights for {}", dir.display(), p.name))?;
            if tensor.dtype() != DType::F32 || tensor.shape() != p.shape.as_slice() {
                bail!(
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
        .collect::<Result<Vec<_>>>()?;
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
    seed: &ward_core::random::RunSeed,
) -> Result<ward_train::trainer::Trainer> {
    let optimizer = ward_train::Optimizer::new(spec.optimizer.clone(), spec.schedule.clone())?;
    Ok(ward_train::trainer::Trainer::new(
        model.graph.clone(),
        weights,
        &[&[batch][..], example_shape].concat(),
        optimizer,
        seed.clone(),
        setup(spec, model),
    )?)
}

/// How the spec reads the model: its objective and multipliers.
pub fn setup<'a>(spec: &TrainSpec, model: &'a Model) -> ward_train::trainer::TrainerSetup<'a> {
    use ward_train::trainer::{Objective, TrainerSetup};
    TrainerSetup {
        objective: spec.loss.map_or(Objective::Head, Objective::Loss),
        multipliers: spec.run.multipliers,
        symbol: model.symbol.as_ref(),
    }
}
