//! `Package`: a model opened for inference, from a verified package or from MXNet files
//! whose digests the caller pinned.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use numpy::PyUntypedArray;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use sha2::{Digest, Sha256};
use ward_exec::{LoadedPackage, PackageModel, TractBackend};
use ward_graph::schema::InputLimits;
use ward_package::from_mxnet::{import_sources, ImportOptions};
use ward_package::{Trust, TrustPolicy, Verification};

use crate::convert::{input_specs, output, read_source, Input, InputDecl};
use crate::errors::{exec_error, import_error, package_error, InputError, VerificationError};

/// One output as `_predict` returns it: name, `uint8` buffer, NumPy dtype, shape.
type RawOutput<'py> = (String, Bound<'py, PyAny>, &'static str, Vec<usize>);

/// A model ready to predict. Thread-safe: every method may be called from several Python
/// threads at once, and `predict` releases the GIL while ward computes.
#[pyclass(frozen, module = "ward._ward")]
pub struct Package {
    loaded: Arc<LoadedPackage>,
    /// The source files' pinned SHA-256 digests, for a model opened from MXNet files.
    pins: Option<BTreeMap<String, String>>,
}

fn backend(threads: usize) -> PyResult<Arc<TractBackend>> {
    if threads == 0 {
        return Err(InputError::new_err("threads must be at least 1"));
    }
    TractBackend::new(threads)
        .map(Arc::new)
        .map_err(|e| exec_error(&e))
}

/// Opens the package in `path` through the verified loader: its signatures are checked
/// against `trust` (a PEM public key or a TOML policy) over the bytes that are then
/// parsed. `allow_unsigned` skips the check (the Python package warns).
#[pyfunction]
#[pyo3(signature = (path, trust, allow_unsigned, threads, max_weights_bytes = None, max_graph_bytes = None))]
pub fn open_package(
    py: Python<'_>,
    path: PathBuf,
    trust: Option<PathBuf>,
    allow_unsigned: bool,
    threads: usize,
    max_weights_bytes: Option<u64>,
    max_graph_bytes: Option<u64>,
) -> PyResult<Package> {
    let trust = match (trust, allow_unsigned) {
        (Some(path), false) => {
            Trust::Policy(TrustPolicy::load(&path).map_err(|e| package_error(&e))?)
        }
        (None, true) => Trust::AllowUnsigned,
        (Some(_), true) => {
            return Err(InputError::new_err(
                "give either trust or allow_unsigned=True, not both",
            ))
        }
        (None, false) => {
            return Err(VerificationError::new_err(
                "no trust policy: pass trust=KEY.pub or trust=POLICY.toml (or \
                 allow_unsigned=True for a local experiment)",
            ))
        }
    };
    let limits = crate::package_limits(max_weights_bytes, max_graph_bytes);
    let backend = backend(threads)?;
    let loaded = py
        .detach(|| LoadedPackage::open(&path, &trust, &limits, backend))
        .map_err(|e| exec_error(&e))?;
    Ok(Package {
        loaded: Arc::new(loaded),
        pins: None,
    })
}

/// Opens an MXNet export in memory: each file's SHA-256 is checked against its pin over
/// the bytes that are then parsed. Without pins the Python package requires
/// `allow_unpinned=True` and warns.
#[pyfunction]
#[pyo3(signature = (symbol, params, inputs, sha256, threads))]
pub fn load_mxnet(
    py: Python<'_>,
    symbol: PathBuf,
    params: PathBuf,
    inputs: Vec<InputDecl>,
    sha256: Option<HashMap<String, String>>,
    threads: usize,
) -> PyResult<Package> {
    let specs = input_specs(inputs)?;
    if let Some(pins) = &sha256 {
        if let Some(unknown) = pins
            .keys()
            .find(|k| !matches!(k.as_str(), "symbol" | "params"))
        {
            return Err(InputError::new_err(format!(
                "sha256 pins files by role, \"symbol\" and \"params\"; {unknown:?} is neither"
            )));
        }
        for role in ["symbol", "params"] {
            if !pins.contains_key(role) {
                return Err(VerificationError::new_err(format!(
                    "sha256 has no pin for the {role} file: pin both files (or pass \
                     allow_unpinned=True)"
                )));
            }
        }
    }
    let backend = backend(threads)?;
    let loaded = py.detach(|| -> PyResult<LoadedPackage> {
        let sources = read_source(&symbol, &params, None)?;
        if let Some(pins) = &sha256 {
            for (role, path, bytes) in [
                ("symbol", &symbol, &sources.symbol),
                ("params", &params, &sources.params),
            ] {
                let actual = hex::encode(Sha256::digest(bytes));
                let pinned = pins.get(role).map(|p| p.trim().to_ascii_lowercase());
                if pinned.as_deref() != Some(actual.as_str()) {
                    return Err(VerificationError::new_err(format!(
                        "{}: SHA-256 is {actual}, but the {role} file is pinned to {}; \
                         nothing was parsed",
                        path.display(),
                        pinned.unwrap_or_default()
                    )));
                }
            }
        }
        let imported = import_sources(&symbol, &params, &sources, &ImportOptions::new(specs))
            .map_err(|e| import_error(&e))?;
        let model = PackageModel::from_parts(imported.manifest, imported.graph, imported.weights)
            .map_err(|e| exec_error(&e))?;
        LoadedPackage::from_model(model, backend).map_err(|e| exec_error(&e))
    })?;
    Ok(Package {
        loaded: Arc::new(loaded),
        pins: sha256.map(|p| p.into_iter().collect()),
    })
}

#[pymethods]
impl Package {
    /// The model's name.
    #[getter]
    fn name(&self) -> &str {
        &self.loaded.manifest().name
    }

    /// The model's version.
    #[getter]
    fn version(&self) -> &str {
        &self.loaded.manifest().version
    }

    /// The declared inputs: name, dtype, shape (-1 for a variable dimension), range,
    /// whether NaN and infinities are accepted.
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for i in &self.loaded.manifest().inputs {
            let d = PyDict::new(py);
            d.set_item("name", &i.name)?;
            d.set_item("dtype", i.dtype.name())?;
            d.set_item("shape", &i.shape)?;
            d.set_item("range", i.range.map(|[a, b]| (a, b)))?;
            d.set_item("allow_nonfinite", i.allow_nonfinite)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// The outputs: name, dtype, shape (-1 for a variable dimension).
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for o in &self.loaded.manifest().outputs {
            let d = PyDict::new(py);
            d.set_item("name", &o.name)?;
            d.set_item("dtype", o.dtype.name())?;
            d.set_item("shape", &o.shape)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Who signed the package (empty when it was opened unverified or from pinned files).
    #[getter]
    fn signers(&self) -> Vec<String> {
        match self.loaded.verification() {
            Verification::Signed(v) => v.signers().to_vec(),
            Verification::Unverified => Vec::new(),
        }
    }

    /// Whether the package's signatures were checked against a trust policy.
    #[getter]
    fn verified(&self) -> bool {
        matches!(self.loaded.verification(), Verification::Signed(_))
    }

    /// The verification's warnings (for example a signature close to its expiry).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        match self.loaded.verification() {
            Verification::Signed(v) => v.warnings().to_vec(),
            Verification::Unverified => Vec::new(),
        }
    }

    /// The SHA-256 pins a model opened from MXNet files was checked against.
    #[getter]
    fn pins(&self) -> Option<BTreeMap<String, String>> {
        self.pins.clone()
    }

    /// Each operator of the graph with how many nodes use it.
    #[getter]
    fn operators(&self) -> BTreeMap<&'static str, usize> {
        let mut ops = BTreeMap::new();
        for node in &self.loaded.graph().nodes {
            *ops.entry(node.op.name()).or_default() += 1;
        }
        ops
    }

    /// Checks `inputs` (name → NumPy array, C-contiguous in native byte order) against the
    /// schema where they lie and copies each once into the engine's tensors, with the GIL
    /// held; then runs the model with the GIL released, reading nothing of the arrays, and
    /// returns each output as (name, uint8 buffer, NumPy dtype, shape) for the Python
    /// package to view.
    fn _predict<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<(String, Bound<'py, PyUntypedArray>)>,
    ) -> PyResult<Vec<RawOutput<'py>>> {
        let held = inputs
            .iter()
            .map(|(name, array)| Input::new(name, array))
            .collect::<PyResult<Vec<_>>>()?;
        let views = inputs
            .iter()
            .zip(&held)
            .map(|((name, _), input)| Ok((name.as_str(), input.view(name)?)))
            .collect::<PyResult<Vec<_>>>()?;
        // The arrays are read here, under the GIL: once released, another Python thread
        // may write them.
        let staged = self
            .loaded
            .stage(&views, &InputLimits::default())
            .map_err(|e| exec_error(&e))?;
        drop(views);
        drop(held);
        let loaded = &*self.loaded;
        let outputs = py
            .detach(|| loaded.run_staged(staged))
            .map_err(|e| exec_error(&e))?;
        Ok(outputs
            .into_iter()
            .map(|(name, t)| {
                let (buffer, dtype, shape) = output(py, t);
                (name, buffer.into_any(), dtype, shape)
            })
            .collect())
    }

    /// Writes the model as ONNX for concrete input shapes (name → shape; a variable
    /// dimension not given is 1).
    #[pyo3(signature = (out, shapes = HashMap::new()))]
    fn export_onnx(
        &self,
        py: Python<'_>,
        out: PathBuf,
        shapes: HashMap<String, Vec<usize>>,
    ) -> PyResult<usize> {
        let shapes: Vec<(String, Vec<usize>)> = shapes.into_iter().collect();
        let loaded = self.loaded.clone();
        let bytes = py
            .detach(move || loaded.export_onnx(&shapes))
            .map_err(|e| exec_error(&e))?;
        ward_core::files::write_new_file(&out, &bytes, 0o666).map_err(|e| {
            crate::errors::WardError::new_err(format!("writing {}: {e}", out.display()))
        })?;
        Ok(bytes.len())
    }

    fn __repr__(&self) -> String {
        let m = self.loaded.manifest();
        format!(
            "<ward.Package {:?} version {:?}, {} inputs, {} outputs, {}>",
            m.name,
            m.version,
            m.inputs.len(),
            m.outputs.len(),
            if self.verified() {
                "verified"
            } else if self.pins.is_some() {
                "pinned"
            } else {
                "NOT verified"
            }
        )
    }
}
