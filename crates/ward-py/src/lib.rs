//! `ward._ward`: ward's library crates bound to Python. Nothing here decides anything: a
//! package opens through the verified loader, inputs pass the package's schema, files are
//! signed, verified and imported by the functions `ward` the command uses. This module
//! converts (paths, NumPy arrays, errors) and releases the GIL while ward computes. The
//! Python package around it (`python/ward`) gives the Pythonic surface.

mod checkpoint;
mod convert;
mod errors;
mod evaluate;
mod package;
mod train;

use std::path::PathBuf;
use std::time::SystemTime;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use ward_package::from_mxnet::{import_sources, ImportOptions};
use ward_package::sign_model::{sign_model, SignRequest};
use ward_package::signature::{keygen as keygen_files, read_private_key_file};
use ward_package::tree::TreeLimits;
use ward_package::{
    verify_directory, verify_package, write_signed_package, OutputPolicy, PackageLimits,
    TrustPolicy, MANIFEST_FILE,
};

use crate::convert::{input_specs, read_source, InputDecl};
use crate::errors::{import_error, package_error, WardError};
use crate::package::Package;

/// Makes a signing key pair in `out`: `NAME.key` (private, mode 0600) and `NAME.pub`.
#[pyfunction]
#[pyo3(signature = (out, name = "ward".to_string()))]
fn keygen<'py>(py: Python<'py>, out: PathBuf, name: String) -> PyResult<Bound<'py, PyDict>> {
    let public = py
        .detach(|| keygen_files(&out, &name))
        .map_err(|e| package_error(&e))?;
    let keys = PyDict::new(py);
    keys.set_item("private_key", out.join(format!("{name}.key")))?;
    keys.set_item("public_key", out.join(format!("{name}.pub")))?;
    keys.set_item("hint", public.hint())?;
    Ok(keys)
}

/// Signs a model directory (or one file, with `signature`) with the private key `key`.
#[pyfunction]
#[pyo3(signature = (model, key, *, signature = None, name = None, shard_size = None))]
fn sign<'py>(
    py: Python<'py>,
    model: PathBuf,
    key: PathBuf,
    signature: Option<PathBuf>,
    name: Option<String>,
    shard_size: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let signed = py.detach(|| {
        let key = read_private_key_file(&key)?;
        sign_model(
            &model,
            &key,
            &SignRequest {
                signature,
                name,
                shard_size,
            },
        )
    });
    let signed = signed.map_err(|e| package_error(&e))?;
    let out = PyDict::new(py);
    out.set_item("signature", signed.signature)?;
    out.set_item("files", signed.files)?;
    out.set_item("model_name", signed.model_name)?;
    Ok(out)
}

/// Checks a model's signatures against a trust policy (a PEM public key or a TOML policy
/// file): every file's digest, no file missing or added, enough trusted signers.
#[pyfunction]
#[pyo3(signature = (model, trust, *, signatures = Vec::new(), max_weights_bytes = None, max_graph_bytes = None))]
fn verify<'py>(
    py: Python<'py>,
    model: PathBuf,
    trust: PathBuf,
    signatures: Vec<PathBuf>,
    max_weights_bytes: Option<u64>,
    max_graph_bytes: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let limits = package_limits(max_weights_bytes, max_graph_bytes);
    let verified = py.detach(|| {
        let policy = TrustPolicy::load(&trust)?;
        let is_package = signatures.is_empty() && model.join(MANIFEST_FILE).exists();
        if is_package {
            let v = verify_package(&model, &policy, SystemTime::now(), &limits)?;
            Ok((v.file_count, v.verified))
        } else {
            let v = verify_directory(
                &model,
                &signatures,
                &policy,
                SystemTime::now(),
                &TreeLimits::default(),
                &|_| false,
            )?;
            Ok((v.tree.files.len(), v.verified))
        }
    });
    let (files, verdict) = verified.map_err(|e| package_error(&e))?;
    let out = PyDict::new(py);
    out.set_item("files", files)?;
    out.set_item("model_name", verdict.model_name())?;
    out.set_item("signers", PyList::new(py, verdict.signers())?)?;
    out.set_item("warnings", PyList::new(py, verdict.warnings())?)?;
    Ok(out)
}

/// Imports an MXNet export into a (signed) ward package at `out`.
#[pyfunction]
#[pyo3(signature = (
    symbol, params, inputs, out, *, sign_key = None, trust = None, name = None,
    model_version = "1".to_string(), output_precision = None, output_top_k = None,
    output_label_only = false, allow_nonfinite_weights = false,
))]
#[allow(clippy::too_many_arguments)]
fn import_mxnet<'py>(
    py: Python<'py>,
    symbol: PathBuf,
    params: PathBuf,
    inputs: Vec<InputDecl>,
    out: PathBuf,
    sign_key: Option<PathBuf>,
    trust: Option<PathBuf>,
    name: Option<String>,
    model_version: String,
    output_precision: Option<u32>,
    output_top_k: Option<u32>,
    output_label_only: bool,
    allow_nonfinite_weights: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let specs = input_specs(inputs)?;
    let imported = py.detach(|| -> PyResult<_> {
        // A bad key fails before any work.
        let key = sign_key
            .as_deref()
            .map(read_private_key_file)
            .transpose()
            .map_err(|e| package_error(&e))?;
        let sources = read_source(&symbol, &params, trust.as_deref())?;
        let options = ImportOptions {
            name,
            model_version,
            output_policy: OutputPolicy {
                precision: output_precision,
                top_k: output_top_k,
                label_only: output_label_only,
            },
            allow_nonfinite_weights,
            ..ImportOptions::new(specs)
        };
        let imported =
            import_sources(&symbol, &params, &sources, &options).map_err(|e| import_error(&e))?;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                WardError::new_err(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        write_signed_package(
            &out,
            &imported.manifest,
            &imported.graph.to_json(),
            &imported.weights,
            key.as_ref(),
        )
        .map_err(|e| package_error(&e))?;
        Ok((imported, key.is_some()))
    })?;
    let (imported, signed) = imported;
    let report = PyDict::new(py);
    report.set_item("package", &out)?;
    report.set_item("name", &imported.manifest.name)?;
    report.set_item("nodes", imported.graph.nodes.len())?;
    report.set_item("parameters", imported.weights.len())?;
    report.set_item("signed", signed)?;
    report.set_item("unused_params", PyList::new(py, &imported.unused_params)?)?;
    report.set_item("nonfinite_weights", imported.nonfinite_weights)?;
    Ok(report)
}

/// The package limits: ward's defaults, with the largest files given.
fn package_limits(max_weights_bytes: Option<u64>, max_graph_bytes: Option<u64>) -> PackageLimits {
    let defaults = PackageLimits::default();
    PackageLimits {
        max_weights_bytes: max_weights_bytes.unwrap_or(defaults.max_weights_bytes),
        max_graph_bytes: max_graph_bytes.unwrap_or(defaults.max_graph_bytes),
        ..defaults
    }
}

#[pymodule]
fn _ward(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WardError", py.get_type::<WardError>())?;
    m.add(
        "VerificationError",
        py.get_type::<errors::VerificationError>(),
    )?;
    m.add("InputError", py.get_type::<errors::InputError>())?;
    m.add("ModelError", py.get_type::<errors::ModelError>())?;
    m.add("LimitError", py.get_type::<errors::LimitError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Package>()?;
    m.add_function(wrap_pyfunction!(keygen, m)?)?;
    m.add_function(wrap_pyfunction!(sign, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(import_mxnet, m)?)?;
    m.add_function(wrap_pyfunction!(package::open_package, m)?)?;
    m.add_function(wrap_pyfunction!(package::load_mxnet, m)?)?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate::plot, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::checkpoint_list, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::checkpoint_verify, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::checkpoint_load, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::checkpoint_export_mxnet, m)?)?;
    Ok(())
}
