//! An MXNet export made into the parts of a ward package: the manifest (declared inputs,
//! inferred outputs, the source files' digests, the output policy), the graph and the
//! weights. `ward import mxnet` writes them as a signed package; the Python binding writes
//! them the same way, or runs them in memory from files whose digests the caller pinned.
//! The bytes given are the bytes parsed: whoever verified or pinned them hands over the
//! same buffers.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ward_core::{Buffer, Tensor};
use ward_graph::schema::InputSpec;
use ward_graph::Graph;
use ward_mxnet::import::{import, DeclaredInput, ImportError};
use ward_mxnet::limits::{
    ParamsLimits, SymbolLimits, MAX_PARAMS_FILE_BYTES, MAX_SYMBOL_JSON_BYTES,
};
use ward_mxnet::params::{read_params, ParamsError};
use ward_mxnet::symbol::{read_symbol, SymbolError};

use crate::error::PackageError;
use crate::loader::verify_directory;
use crate::manifest::{FileDigest, Manifest, Origin, OutputPolicy};
use crate::model_name;
use crate::signature::verify::Verdict;
use crate::signature::TrustPolicy;
use crate::tree::TreeLimits;
use crate::weights::first_nonfinite;

/// One MXNet source file: its plain file name (recorded in the manifest) and its bytes.
#[derive(Clone, Copy)]
pub struct SourceFile<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// What the importer cannot read from the files: the data inputs, names, the policy.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Every data input, with its dtype, shape (`-1` variable), range and finiteness.
    pub inputs: Vec<InputSpec>,
    /// The package's model name; by default the symbol file's ([`default_model_name`]).
    pub name: Option<String>,
    pub model_version: String,
    pub output_policy: OutputPolicy,
    /// Accept weights holding NaN or infinities (recorded in the manifest).
    pub allow_nonfinite_weights: bool,
    /// The manifest's creation time, in Unix seconds.
    pub created_unix: u64,
}

impl ImportOptions {
    /// Options with these inputs and every other choice at `ward import mxnet`'s default;
    /// created now.
    pub fn new(inputs: Vec<InputSpec>) -> ImportOptions {
        ImportOptions {
            inputs,
            name: None,
            model_version: "1".into(),
            output_policy: OutputPolicy::default(),
            allow_nonfinite_weights: false,
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// An MXNet export made ready to write as a package or to run.
pub struct ImportedPackage {
    pub manifest: Manifest,
    pub graph: Graph,
    pub weights: Vec<(String, Tensor)>,
    /// Parameters in the `.params` file that the symbol never reads (left out).
    pub unused_params: Vec<String>,
    /// The first NaN or infinite weight, accepted under `allow_nonfinite_weights`.
    pub nonfinite_weights: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageImportError {
    #[error("input {name:?}: {reason}")]
    Input { name: String, reason: String },
    #[error("{file}: {source}")]
    Symbol {
        file: String,
        #[source]
        source: Box<SymbolError>,
    },
    #[error("{file}: {source}")]
    Params {
        file: String,
        #[source]
        source: Box<ParamsError>,
    },
    #[error("import: {0}")]
    Import(#[from] ImportError),
    #[error("{0}; pass allow_nonfinite_weights (--allow-nonfinite-weights) to import it anyway (recorded in the package)")]
    NonfiniteWeights(String),
}

/// `resnet18-symbol.json` → `resnet18`, made a valid model name ([`model_name::sanitize`]).
pub fn default_model_name(symbol: &Path) -> String {
    let file = symbol
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or(model_name::FALLBACK);
    let stem = file
        .strip_suffix("-symbol.json")
        .or_else(|| file.strip_suffix(".json"))
        .unwrap_or(file);
    model_name::sanitize(stem)
}

/// Parses the symbol and the parameters, imports them with the declared inputs and
/// builds the manifest.
pub fn import_package(
    symbol: SourceFile<'_>,
    params: SourceFile<'_>,
    options: &ImportOptions,
) -> Result<ImportedPackage, PackageImportError> {
    for (i, spec) in options.inputs.iter().enumerate() {
        spec.validate_spec()
            .map_err(|e| PackageImportError::Input {
                name: spec.name.clone(),
                reason: e.to_string(),
            })?;
        if options
            .inputs
            .get(..i)
            .is_some_and(|before| before.iter().any(|s| s.name == spec.name))
        {
            return Err(PackageImportError::Input {
                name: spec.name.clone(),
                reason: "is declared twice".into(),
            });
        }
    }
    let parsed_symbol = read_symbol(symbol.bytes, &SymbolLimits::default()).map_err(|source| {
        PackageImportError::Symbol {
            file: symbol.name.into(),
            source: Box::new(source),
        }
    })?;
    let parsed_params = read_params(params.bytes, &ParamsLimits::default()).map_err(|source| {
        PackageImportError::Params {
            file: params.name.into(),
            source: Box::new(source),
        }
    })?;
    let declared: Vec<DeclaredInput> = options
        .inputs
        .iter()
        .map(|s| DeclaredInput {
            name: s.name.clone(),
            dtype: s.dtype,
            shape: s.shape.clone(),
        })
        .collect();
    let imported = import(&parsed_symbol, parsed_params, &declared)?;
    let nonfinite = first_nonfinite(&imported.weights)
        .map(|(name, index)| format!("parameter {name:?} element {index} is NaN or infinite"));
    if let (Some(what), false) = (&nonfinite, options.allow_nonfinite_weights) {
        return Err(PackageImportError::NonfiniteWeights(what.clone()));
    }
    let outputs = imported.output_specs();
    // Inputs in the graph's order, which is the symbol's.
    let inputs: Vec<InputSpec> = imported
        .graph
        .inputs
        .iter()
        .filter_map(|i| options.inputs.iter().find(|s| s.name == i.name).cloned())
        .collect();
    let v = parsed_symbol.mxnet_version;
    let origin = Origin {
        framework: "mxnet".into(),
        framework_version: Some(format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)),
        files: vec![
            FileDigest::of(symbol.name.to_string(), symbol.bytes),
            FileDigest::of(params.name.to_string(), params.bytes),
        ],
    };
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| default_model_name(Path::new(symbol.name)));
    let mut manifest = Manifest::new(
        name,
        options.model_version.clone(),
        options.created_unix,
        origin,
        inputs,
        outputs,
    );
    manifest.nonfinite_weights = nonfinite.is_some();
    manifest.output_policy = options.output_policy;
    Ok(ImportedPackage {
        manifest,
        graph: imported.graph,
        weights: imported.weights,
        unused_params: imported.unused_params,
        nonfinite_weights: nonfinite,
    })
}

/// The bytes of an MXNet export's two files, and who signed their folder.
pub struct Sources {
    pub symbol: Buffer,
    pub params: Buffer,
    /// With a trust policy: the verdict on the folder's signatures.
    pub verified: Option<Verdict>,
}

/// Reads the symbol and params files: plainly, within the MXNet readers' file limits, or,
/// with `trust`, from their folder read once and verified (both files must be in that one
/// signed folder; the rest of it is only hashed).
pub fn read_sources(
    symbol: &Path,
    params: &Path,
    trust: Option<&TrustPolicy>,
) -> Result<Sources, PackageError> {
    let read = |path: &Path, limit: u64| {
        ward_core::files::read_bounded(path, limit).map_err(|source| PackageError::Source {
            path: path.to_path_buf(),
            source,
        })
    };
    let Some(policy) = trust else {
        return Ok(Sources {
            symbol: read(symbol, MAX_SYMBOL_JSON_BYTES as u64)?.into(),
            params: read(params, MAX_PARAMS_FILE_BYTES)?.into(),
            verified: None,
        });
    };
    let folder = |p: &Path| -> Result<PathBuf, PackageError> {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        parent.canonicalize().map_err(|source| PackageError::Io {
            path: parent.to_path_buf(),
            source,
        })
    };
    let dir = folder(symbol)?;
    if folder(params)? != dir {
        return Err(PackageError::Inconsistent {
            reason: "with a trust policy, the symbol and params files must be in the same \
                     (signed) folder"
                .into(),
        });
    }
    let wanted = [plain_name(symbol), plain_name(params)];
    let mut verified = verify_directory(
        &dir,
        &[],
        policy,
        SystemTime::now(),
        &TreeLimits::default(),
        &|rel| wanted.iter().any(|w| w == rel),
    )?;
    let mut take = |p: &Path| -> Result<Buffer, PackageError> {
        let name = plain_name(p);
        verified
            .tree
            .take(&name)
            .ok_or_else(|| PackageError::Inconsistent {
                reason: format!("{name} is not among the signed files of {}", dir.display()),
            })
    };
    Ok(Sources {
        symbol: take(symbol)?,
        params: take(params)?,
        verified: Some(verified.verified),
    })
}

/// [`import_package`] of the files read from `symbol` and `params` (named by their last
/// components, as the manifest records them).
pub fn import_sources(
    symbol: &Path,
    params: &Path,
    sources: &Sources,
    options: &ImportOptions,
) -> Result<ImportedPackage, PackageImportError> {
    let (symbol_name, params_name) = (plain_name(symbol), plain_name(params));
    import_package(
        SourceFile {
            name: &symbol_name,
            bytes: &sources.symbol,
        },
        SourceFile {
            name: &params_name,
            bytes: &sources.params,
        },
        options,
    )
}

/// A path's last component, as the manifest records a source file.
pub fn plain_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}
