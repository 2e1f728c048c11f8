//! `ward.evaluate`: a package measured on labelled data as `ward eval` measures it
//! (`ward_train::run::evaluate`), each batch predicted through the caller's
//! `Package.predict`, so that what is measured passes the same checks as what is served.

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ward_train::metrics::MetricSpec;
use ward_train::run::evaluate::{evaluate as measure, open_data, EvalOptions};
use ward_train::run::RunError;

use crate::errors::InputError;
use crate::train::run_error;

/// Measures `predict` (a batch of float32 examples in, the first output's float32 rows
/// out) on the labelled data `data` describes; returns `examples`, `correct`,
/// `accuracy`, `cross_entropy` and each declared metric by its key.
#[pyfunction]
#[pyo3(signature = (data, predict, *, batch_size = 64, metrics = Vec::new(), softmax = false))]
pub fn evaluate<'py>(
    py: Python<'py>,
    data: PathBuf,
    predict: Py<PyAny>,
    batch_size: usize,
    metrics: Vec<String>,
    softmax: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let metrics = metrics
        .iter()
        .map(|m| MetricSpec::parse(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InputError::new_err(e.to_string()))?;
    let options = EvalOptions {
        batch_size,
        metrics,
        softmax,
    };
    // The first exception `predict` raised, re-raised as it was.
    let mut raised: Option<PyErr> = None;
    let measured = py.detach(|| {
        let data = open_data(&data)?;
        let mut batch = |values: Vec<f32>, shape: &[usize]| {
            Python::attach(|py| -> PyResult<Vec<f32>> {
                let array = values.into_pyarray(py).reshape(shape.to_vec())?;
                let output = predict.call1(py, (array,))?;
                let output: PyReadonlyArrayDyn<'_, f32> = output.extract(py)?;
                Ok(output.as_array().iter().copied().collect())
            })
            .map_err(|e| {
                let message = e.to_string();
                raised.get_or_insert(e);
                RunError::Refused(message)
            })
        };
        measure(data, &options, &mut batch)
    });
    let measured = match (measured, raised) {
        (Err(_), Some(e)) => return Err(e),
        (Err(e), None) => return Err(run_error(&e)),
        (Ok(m), _) => m,
    };
    let out = PyDict::new(py);
    out.set_item("examples", measured.metrics.examples)?;
    out.set_item("correct", measured.metrics.correct)?;
    out.set_item("accuracy", measured.metrics.accuracy())?;
    out.set_item("cross_entropy", measured.metrics.loss())?;
    for (key, _, value) in measured.declared {
        out.set_item(key, value)?;
    }
    Ok(out)
}

/// The curves of a run's `metrics.jsonl` as a PNG image's bytes (`ward plot`).
#[pyfunction]
#[pyo3(signature = (log, *, width = 1200, height = 500))]
pub fn plot<'py>(
    py: Python<'py>,
    log: PathBuf,
    width: u32,
    height: u32,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    use ward_train::plot::{read_log, render, ChartOptions, LogLimits};
    let png = py.detach(|| {
        let read = read_log(&log, &LogLimits::default()).map_err(|e| e.to_string())?;
        render(&read, &ChartOptions { width, height }).map_err(|e| e.to_string())
    });
    let png =
        png.map_err(|e| crate::errors::WardError::new_err(format!("{}: {e}", log.display())))?;
    Ok(pyo3::types::PyBytes::new(py, &png))
}
