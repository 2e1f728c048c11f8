//! One exception hierarchy for every failure, each carrying the message `ward` the command
//! prints: `WardError`, and under it `VerificationError` (signatures, digests, pins),
//! `InputError` (a request outside the schema, a bad argument), `ModelError` (a model
//! file or graph ward refuses or cannot run) and `LimitError` (a size over a limit).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::PyErr;
use ward_exec::ExecError;
use ward_graph::schema::SchemaError;
use ward_package::from_mxnet::PackageImportError;
use ward_package::PackageError;

create_exception!(ward, WardError, PyException, "Every error ward raises.");
create_exception!(
    ward,
    VerificationError,
    WardError,
    "A signature, digest or pin did not check: nothing of the model was parsed."
);
create_exception!(
    ward,
    InputError,
    WardError,
    "An input or argument outside what the model or function accepts."
);
create_exception!(
    ward,
    ModelError,
    WardError,
    "A model file or graph that ward refuses, or cannot run."
);
create_exception!(
    ward,
    LimitError,
    WardError,
    "A size over one of ward's limits (files, elements, entries)."
);

/// The exception for a package error: what the verified loader refused is a
/// `VerificationError` unless a limit refused it.
pub fn package_error(e: &PackageError) -> PyErr {
    let message = e.to_string();
    match e.cause() {
        PackageError::FileTooLarge { .. }
        | PackageError::TooManyEntries { .. }
        | PackageError::TreeLimit { .. }
        | PackageError::OutOfMemory { .. } => LimitError::new_err(message),
        PackageError::Input(s) => schema_error(s, message),
        PackageError::Graph(_) => ModelError::new_err(message),
        PackageError::Source {
            source: ward_core::files::FileError::TooLarge { .. },
            ..
        } => LimitError::new_err(message),
        _ if e.is_refusal() => VerificationError::new_err(message),
        _ => WardError::new_err(message),
    }
}

fn schema_error(e: &SchemaError, message: String) -> PyErr {
    match e {
        SchemaError::TooManyElements { .. } => LimitError::new_err(message),
        _ => InputError::new_err(message),
    }
}

/// The exception for an execution error.
pub fn exec_error(e: &ExecError) -> PyErr {
    let message = e.to_string();
    match e {
        ExecError::Package(p) => package_error(p),
        ExecError::Input(s) => schema_error(s, message),
        ExecError::ExportShape { .. }
        | ExecError::InputShape { .. }
        | ExecError::InputCount { .. }
        | ExecError::ForeignInputs => InputError::new_err(message),
        ExecError::Threads { .. } => WardError::new_err(message),
        _ => ModelError::new_err(message),
    }
}

/// The exception for an MXNet import that failed.
pub fn import_error(e: &PackageImportError) -> PyErr {
    let message = e.to_string();
    match e {
        PackageImportError::Input { .. } => InputError::new_err(message),
        _ => ModelError::new_err(message),
    }
}
