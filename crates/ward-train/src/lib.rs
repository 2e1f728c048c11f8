//! Training for ward: gradients over the ward graph IR, as MXNet 1.9.1 computes them.
//!
//! This crate starts with the reference gradients ([`grad`]): reverse-mode
//! differentiation of an IR graph on the reference interpreter's `f64` arrays, one rule
//! per operator next to its family, each checked against MXNet 1.9.1's autograd on the
//! one-operator cases of `tests/fixtures/grads/` (`tools/make_grad_fixtures.py`). They
//! define the numbers a fast training backend must reproduce, as the interpreter does for
//! inference. An operator without an exact rule is refused before anything runs, naming
//! the node ([`grad::check_differentiable`]).
//!
//! The optimizers ([`optim`]) and learning-rate schedules ([`schedule`]) are declared as
//! data, never code: an [`OptimizerSpec`] (MXNet's registry name and keyword arguments,
//! defaults explicit, every value range-checked) and a [`ScheduleSpec`], applied to `f32`
//! weights with MXNet 1.9.1's exact update rules, order of operations and quirks, and held
//! to MXNet's own `Updater` on the cases of `tests/fixtures/optim/`
//! (`tools/make_optim_fixtures.py`). The per-parameter state ([`ParamState`]) is explicit
//! and named, for checkpoints.
//!
//! [`data`] reads training data (MNIST IDX, CSV, `.npy`, RecordIO images) as untrusted
//! input, with limits, and makes shuffled, augmented batches from the run's random stream.
//!
//! [`loss`] holds Gluon's losses for graphs without a loss head (a Gluon export trains
//! with a loss the export does not contain).
//!
//! [`init`] holds MXNet's initializers and [`metrics`] its evaluation metrics, both
//! declared as data and held to MXNet 1.9.1; [`plot`] reads a run's `metrics.jsonl` as
//! untrusted input and draws its curves as a PNG (`ward plot`).
//!
//! [`run`] drives a whole run from a training spec (`ward train`, and `ward.train` in
//! Python): data, model, seed, steps, validation, checkpoints, the trained package.

pub mod checkpoint;
pub mod data;
#[cfg(feature = "distributed")]
pub mod distributed;
pub mod engine;
pub mod grad;
pub mod init;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod spec;
pub mod trainer;

pub use grad::{backward, check_differentiable, forward, GradError, Gradients};
pub use optim::{
    clip_global_norm, OptimError, Optimizer, OptimizerSpec, OptimizerState, ParamMults, ParamState,
    ParamUpdate,
};
pub use schedule::{Schedule, ScheduleError, ScheduleSpec, WarmupMode};
