//! `ward.checkpoint`: a run's checkpoints listed, verified, opened (verified, then
//! decrypted and parsed: weights and optimizer state as NumPy arrays) and exported as
//! MXNet Module files, as `ward checkpoint` does.

use std::path::{Path, PathBuf};

use numpy::{IntoPyArray, PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use ward_package::{Trust, TrustPolicy, Verification};
use ward_train::checkpoint::mxnet::{module_files, write_module_files};
use ward_train::checkpoint::{
    checkpoints_dir, list_checkpoints, open_checkpoint, read_index_unverified, verify_checkpoint,
    CheckpointError, CheckpointIndex, OpenedCheckpoint, Unsealing,
};

use crate::errors::{package_error, InputError, VerificationError, WardError};

/// The exception for a checkpoint error: a refusal is a `VerificationError`.
fn checkpoint_error(e: &CheckpointError) -> PyErr {
    match e {
        CheckpointError::Package(p) => package_error(p),
        _ if e.is_refusal() => VerificationError::new_err(e.to_string()),
        CheckpointError::Recipient { .. }
        | CheckpointError::NoRecipients
        | CheckpointError::NoIdentities
        | CheckpointError::KeyFile { .. } => InputError::new_err(e.to_string()),
        _ => WardError::new_err(e.to_string()),
    }
}

fn policy(trust: &Path) -> PyResult<Trust> {
    Ok(Trust::Policy(
        TrustPolicy::load(trust).map_err(|e| package_error(&e))?,
    ))
}

/// The index as JSON (`checkpoint.json`'s fields); the Python side parses it.
fn index_json(index: &CheckpointIndex) -> PyResult<String> {
    serde_json::to_string(index).map_err(|e| WardError::new_err(e.to_string()))
}

/// One checkpoint as listed: its name, path, and its index as JSON or why it could not be
/// read.
type Listed = (String, PathBuf, Option<String>, Option<String>);

/// The run's checkpoints, oldest first: `(name, path, index JSON or None, error or None)`.
/// Read from each `checkpoint.json` without verifying it.
#[pyfunction]
pub fn checkpoint_list(py: Python<'_>, run: PathBuf) -> PyResult<Vec<Listed>> {
    let dir = checkpoints_dir(&run);
    let found = py
        .detach(|| list_checkpoints(&dir))
        .map_err(|e| checkpoint_error(&e))?;
    found
        .into_iter()
        .map(|(_, path)| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match read_index_unverified(&path) {
                Ok(index) => Ok((name, path, Some(index_json(&index)?), None)),
                Err(e) => Ok((name, path, None, Some(e.to_string()))),
            }
        })
        .collect()
}

/// Verifies a checkpoint's signatures against `trust` and its files against them,
/// decrypting nothing: `(index JSON, signers, warnings)`.
#[pyfunction]
pub fn checkpoint_verify(
    py: Python<'_>,
    checkpoint: PathBuf,
    trust: PathBuf,
) -> PyResult<(String, Vec<String>, Vec<String>)> {
    let trust = policy(&trust)?;
    let accepted = py
        .detach(|| verify_checkpoint(&checkpoint, &trust))
        .map_err(|e| checkpoint_error(&e))?;
    let (signers, warnings) = who(&accepted.verification);
    Ok((index_json(&accepted.index)?, signers, warnings))
}

fn who(verification: &Verification) -> (Vec<String>, Vec<String>) {
    match verification {
        Verification::Signed(v) => (
            v.signers().iter().map(|s| s.to_string()).collect(),
            v.warnings().iter().map(|w| w.to_string()).collect(),
        ),
        _ => (Vec::new(), Vec::new()),
    }
}

/// Verified under `trust`, then decrypted with the identity files or the passphrase file.
fn open(
    py: Python<'_>,
    checkpoint: &Path,
    trust: &Path,
    identities: &[PathBuf],
    passphrase_file: Option<&Path>,
) -> PyResult<OpenedCheckpoint> {
    let trust = policy(trust)?;
    let unsealing = match (passphrase_file, identities.is_empty()) {
        (Some(_), false) => {
            return Err(InputError::new_err(
                "give identities or passphrase_file, not both",
            ))
        }
        (Some(path), true) => Unsealing::passphrase_file(path),
        (None, false) => {
            let files: Vec<&Path> = identities.iter().map(PathBuf::as_path).collect();
            Unsealing::identity_files(&files)
        }
        (None, true) => {
            return Err(InputError::new_err(
                "a checkpoint is encrypted: give identities=[KEY.txt] or passphrase_file=",
            ))
        }
    }
    .map_err(|e| checkpoint_error(&e))?;
    py.detach(|| open_checkpoint(checkpoint, &trust, &unsealing))
        .map_err(|e| checkpoint_error(&e))
}

/// Opens a checkpoint (verified, then decrypted and parsed): a dict with `index` (JSON),
/// `signers`, `warnings`, `optimizer` (name, num_update) and `params` (name → weight,
/// shape, trainable, update_count, state: name → array).
#[pyfunction]
#[pyo3(signature = (checkpoint, trust, *, identities = Vec::new(), passphrase_file = None))]
pub fn checkpoint_load<'py>(
    py: Python<'py>,
    checkpoint: PathBuf,
    trust: PathBuf,
    identities: Vec<PathBuf>,
    passphrase_file: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let opened = open(
        py,
        &checkpoint,
        &trust,
        &identities,
        passphrase_file.as_deref(),
    )?;
    let (signers, warnings) = who(&opened.verification);
    let out = PyDict::new(py);
    out.set_item("index", index_json(&opened.index)?)?;
    out.set_item("signers", signers)?;
    out.set_item("warnings", warnings)?;
    let optimizer = PyDict::new(py);
    optimizer.set_item("name", &opened.state.info.optimizer.name)?;
    optimizer.set_item("num_update", opened.state.info.optimizer.num_update)?;
    out.set_item("optimizer", optimizer)?;
    let params = PyDict::new(py);
    for p in opened.state.params {
        let param = PyDict::new(py);
        param.set_item("weight", shaped(py, p.weight, &p.shape)?)?;
        param.set_item("trainable", p.trainable)?;
        param.set_item("update_count", p.update_count)?;
        let state = PyDict::new(py);
        for (name, values) in p.tensors {
            state.set_item(name, shaped(py, values, &p.shape)?)?;
        }
        param.set_item("state", state)?;
        params.set_item(p.name, param)?;
    }
    out.set_item("params", params)?;
    Ok(out)
}

/// A float32 array of `shape` that owns `values` (no copy).
fn shaped<'py>(py: Python<'py>, values: Vec<f32>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    let flat: Bound<'py, PyArray1<f32>> = values.into_pyarray(py);
    Ok(flat.reshape(shape.to_vec())?.into_any())
}

/// Writes a checkpoint as MXNet Module files `PREFIX-symbol.json`, `PREFIX-EPOCH.params`
/// and `PREFIX-EPOCH.states` (never over an existing file; in clear); returns their paths.
#[pyfunction]
#[pyo3(signature = (checkpoint, trust, symbol, out, *, identities = Vec::new(), passphrase_file = None, epoch = None))]
#[allow(clippy::too_many_arguments)]
pub fn checkpoint_export_mxnet<'py>(
    py: Python<'py>,
    checkpoint: PathBuf,
    trust: PathBuf,
    symbol: PathBuf,
    out: PathBuf,
    identities: Vec<PathBuf>,
    passphrase_file: Option<PathBuf>,
    epoch: Option<u32>,
) -> PyResult<Bound<'py, PyList>> {
    let opened = open(
        py,
        &checkpoint,
        &trust,
        &identities,
        passphrase_file.as_deref(),
    )?;
    let symbol_bytes = ward_core::files::read_bounded(&symbol, 64 << 20)
        .map_err(|e| WardError::new_err(format!("cannot read {}: {e}", symbol.display())))?;
    let epoch =
        epoch.unwrap_or_else(|| u32::try_from(opened.index.position.epoch).unwrap_or(u32::MAX));
    let written = py
        .detach(|| {
            let files = module_files(&opened.state, symbol_bytes)?;
            write_module_files(&files, &out, epoch)
        })
        .map_err(|e| match e {
            CheckpointError::Export(_) => InputError::new_err(format!("{}: {e}", symbol.display())),
            other => checkpoint_error(&other),
        })?;
    PyList::new(py, written.into_iter().map(|(path, _)| path))
}
