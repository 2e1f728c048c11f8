//! `ward.train`: the run of `ward train` (`ward_train::run`), the GIL released while it
//! trains, the caller's callbacks hearing each step and epoch. A callback that returns
//! `False` ends the run early (checkpointed, the package written); one that raises, or
//! Ctrl-C, abandons it: the exception propagates, no package is written, and the
//! checkpoints written so far stay for a resume.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};
use ward_exec::{ExecError, PackageModel};
use ward_package::{PackageLimits, Trust, TrustPolicy};
use ward_train::checkpoint::Position;
use ward_train::run::{
    run, CheckpointOptions, EpochReport, Flow, Observer, OpenedModel, PackageOpener, RunError,
    RunOptions, RunStart, StepReport,
};
use ward_train::trainer::{Metrics, TrainError};

use crate::errors::{package_error, InputError, ModelError, VerificationError, WardError};

/// Trains as `ward train --config CONFIG` does; returns what the run left.
#[pyfunction]
#[pyo3(signature = (
    config, *, out = None, resume = None, sign_key = None, trust = None,
    allow_unsigned = false, seed = None, on_step = None, on_epoch = None, logger = None,
    recipients = Vec::new(), recipients_files = Vec::new(), passphrase_file = None,
    checkpoint_every = None, keep_last = 3, keep_every = None, keep_best = None,
    from_checkpoint = None, identities = Vec::new(), allow_spec_change = false,
    max_weights_bytes = None, max_graph_bytes = None,
))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    config: PathBuf,
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    sign_key: Option<PathBuf>,
    trust: Option<PathBuf>,
    allow_unsigned: bool,
    seed: Option<String>,
    on_step: Option<Py<PyAny>>,
    on_epoch: Option<Py<PyAny>>,
    logger: Option<Py<PyAny>>,
    recipients: Vec<String>,
    recipients_files: Vec<PathBuf>,
    passphrase_file: Option<PathBuf>,
    checkpoint_every: Option<u64>,
    keep_last: u64,
    keep_every: Option<u64>,
    keep_best: Option<String>,
    from_checkpoint: Option<String>,
    identities: Vec<PathBuf>,
    allow_spec_change: bool,
    max_weights_bytes: Option<u64>,
    max_graph_bytes: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    if trust.is_some() && allow_unsigned {
        return Err(InputError::new_err(
            "give either trust or allow_unsigned=True, not both",
        ));
    }
    let policy = trust
        .as_deref()
        .map(|path| TrustPolicy::load(path).map_err(|e| package_error(&e)))
        .transpose()?;
    let opener = match (&policy, allow_unsigned) {
        (Some(p), _) => Some(VerifiedOpener {
            trust: Trust::Policy(p.clone()),
            limits: crate::package_limits(max_weights_bytes, max_graph_bytes),
        }),
        (None, true) => Some(VerifiedOpener {
            trust: Trust::AllowUnsigned,
            limits: crate::package_limits(max_weights_bytes, max_graph_bytes),
        }),
        (None, false) => None,
    };
    let options = RunOptions {
        config,
        out,
        resume,
        sign_key,
        checkpoint_trust: policy.map(Trust::Policy),
        package_opener: opener.as_ref().map(|o| o as &dyn PackageOpener),
        seed,
        checkpoints: CheckpointOptions {
            recipients,
            recipients_files,
            passphrase_file,
            every: checkpoint_every,
            keep_last,
            keep_every,
            keep_best,
            from: from_checkpoint,
            identities,
            allow_spec_change,
        },
    };
    let mut callbacks = Callbacks {
        on_step,
        on_epoch,
        logger,
        error: None,
    };
    let outcome = py.detach(|| run(options, &mut callbacks));
    let outcome = match (outcome, callbacks.error.take()) {
        (Err(_), Some(raised)) => return Err(raised),
        (Err(e), None) => return Err(run_error(&e)),
        (Ok(outcome), _) => outcome,
    };
    let result = PyDict::new(py);
    result.set_item("run_dir", outcome.run_dir)?;
    result.set_item("package", outcome.package)?;
    result.set_item("model", outcome.model)?;
    result.set_item("signed", outcome.signed)?;
    result.set_item("seed", outcome.seed)?;
    result.set_item("steps", outcome.steps)?;
    result.set_item("epochs", outcome.epochs)?;
    result.set_item("stopped_early", outcome.stopped_early)?;
    result.set_item("validation", outcome.validation)?;
    Ok(result)
}

/// A package model opened through the verified loader under the caller's trust.
struct VerifiedOpener {
    trust: Trust,
    limits: PackageLimits,
}

impl PackageOpener for VerifiedOpener {
    fn open(&self, dir: &Path) -> Result<OpenedModel, RunError> {
        let (model, _) =
            PackageModel::open(dir, &self.trust, &self.limits).map_err(|e| match e {
                ExecError::Package(p) => RunError::Package(p),
                other => RunError::failed(format!("package {}", dir.display()), &other),
            })?;
        Ok(OpenedModel {
            manifest: model.manifest,
            graph: model.graph,
            weights: model.weights,
        })
    }
}

/// The caller's callbacks, each called with the GIL held; the first exception one raises
/// (or a pending signal such as Ctrl-C) is kept and abandons the run.
struct Callbacks {
    on_step: Option<Py<PyAny>>,
    on_epoch: Option<Py<PyAny>>,
    /// A `logging.Logger` (or anything with `info` and `warning`) for the run's notes.
    logger: Option<Py<PyAny>>,
    error: Option<PyErr>,
}

impl Callbacks {
    /// Calls `callback(event)`; `False` ends the run early, an exception abandons it.
    fn call(
        &mut self,
        py: Python<'_>,
        callback: Option<&Py<PyAny>>,
        event: impl FnOnce(Python<'_>) -> PyResult<Bound<'_, PyDict>>,
    ) -> Flow {
        let flow = (|| -> PyResult<Flow> {
            py.check_signals()?;
            let Some(callback) = callback else {
                return Ok(Flow::Continue);
            };
            let answer = callback.call1(py, (event(py)?,))?;
            let stop = answer.bind(py).cast::<PyBool>().is_ok_and(|b| !b.is_true());
            Ok(if stop { Flow::Stop } else { Flow::Continue })
        })();
        flow.unwrap_or_else(|e| {
            self.error = Some(e);
            Flow::Abort
        })
    }
}

fn metrics_into(event: &Bound<'_, PyDict>, prefix: &str, m: &Metrics) -> PyResult<()> {
    event.set_item(format!("{prefix}loss"), m.loss())?;
    if let Some(a) = m.accuracy() {
        event.set_item(format!("{prefix}accuracy"), a)?;
    }
    Ok(())
}

impl Observer for Callbacks {
    fn note(&mut self, line: &str) {
        Python::attach(|py| {
            let logger = match &self.logger {
                Some(l) => l.clone_ref(py),
                None => match py
                    .import("logging")
                    .and_then(|m| m.call_method1("getLogger", ("ward.train",)))
                {
                    Ok(l) => l.unbind(),
                    Err(_) => return,
                },
            };
            let level = if line.starts_with("WARNING") {
                "warning"
            } else {
                "info"
            };
            // A logger that fails must not stop a run.
            let _ = logger.call_method1(py, level, (line,));
        });
    }

    fn started(&mut self, start: &RunStart) {
        self.note(&format!(
            "training in {} on {} thread{}: {} steps",
            start.run_dir.display(),
            start.threads,
            if start.threads == 1 { "" } else { "s" },
            start.total_steps
        ));
    }

    fn step(&mut self, r: &StepReport) -> Flow {
        let on_step = self.on_step.take();
        let flow = Python::attach(|py| {
            self.call(py, on_step.as_ref(), |py| {
                let event = PyDict::new(py);
                event.set_item("epoch", r.epoch)?;
                event.set_item("step", r.step)?;
                metrics_into(&event, "", &r.metrics)?;
                event.set_item("samples_per_s", r.samples_per_s)?;
                if let Some(window) = &r.window {
                    metrics_into(&event, "window_", window)?;
                }
                Ok(event)
            })
        });
        self.on_step = on_step;
        flow
    }

    fn epoch(&mut self, r: &EpochReport) -> Flow {
        let on_epoch = self.on_epoch.take();
        let flow = Python::attach(|py| {
            self.call(py, on_epoch.as_ref(), |py| {
                let event = PyDict::new(py);
                event.set_item("epoch", r.epoch)?;
                event.set_item("step", r.step)?;
                metrics_into(&event, "train_", &r.train)?;
                for (k, v) in &r.validation {
                    event.set_item(k, v)?;
                }
                event.set_item("summary", &r.summary)?;
                Ok(event)
            })
        });
        self.on_epoch = on_epoch;
        if flow == Flow::Continue {
            self.note(&r.summary);
        }
        flow
    }

    fn checkpoint(&mut self, position: &Position) {
        self.note(&format!(
            "checkpoint at step {} (epoch {}, batch {})",
            position.step, position.epoch, position.batch
        ));
    }
}

/// The exception for a run's error.
pub fn run_error(e: &RunError) -> PyErr {
    let message = e.to_string();
    match e {
        RunError::Package(p) => package_error(p),
        RunError::Checkpoint(ward_train::checkpoint::CheckpointError::Package(p)) => {
            package_error(p)
        }
        _ if e.is_refusal() => VerificationError::new_err(message),
        RunError::Refused(_) | RunError::Spec(_) | RunError::Seed(_) | RunError::Metric(_) => {
            InputError::new_err(message)
        }
        RunError::Train(TrainError::Grad(_) | TrainError::Graph(_)) => ModelError::new_err(message),
        _ => WardError::new_err(message),
    }
}
