//! A whole training run, as `ward train` and `ward.train` in Python drive it: the spec
//! read and checked, the data opened, the model loaded (MXNet files, or a package the
//! caller opens through the verified loader), the seed drawn from the operating system
//! unless given, then epochs of steps with `metrics.jsonl`, validation, encrypted and
//! signed checkpoints, resuming bit for bit, and the trained package written at the end.
//!
//! What a person or a program watching the run sees goes through an [`Observer`]: the
//! CLI draws a progress bar, the Python binding calls the caller's callback. The observer
//! may end the run early ([`Flow::Stop`]): the weights so far are checkpointed and
//! written as the package, as after the last epoch.

mod checkpointing;
mod error;
pub mod evaluate;
pub mod model;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ward_core::random::RunSeed;
use ward_package::signature::read_private_key_file;
use ward_package::Trust;

pub use checkpointing::CheckpointOptions;
pub use error::RunError;
pub use model::{Model, OpenedModel, PackageOpener};

use crate::checkpoint::{new_run_id, spec_digest, Position};
use crate::data::batch::{LastBatch, Loader, LoaderConfig};
use crate::data::{DataLimits, Dataset};
use crate::init::init_missing;
use crate::metrics::Metric;
use crate::spec::TrainSpec;
use crate::trainer::Metrics;
use checkpointing::{Checkpointing, RunIdentity};
use error::refuse;

/// Largest training spec read.
pub const MAX_SPEC_BYTES: u64 = 1 << 20;

/// What to run.
pub struct RunOptions<'a> {
    /// The training spec (TOML); the paths in it are relative to its directory.
    pub config: PathBuf,
    /// A new run's directory (must not exist yet): `metrics.jsonl`, `checkpoints/` and
    /// `package/`. Exactly one of `out` and `resume`.
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its newest checkpoint (or
    /// `checkpoints.from`), verified under `checkpoint_trust` and decrypted.
    pub resume: Option<PathBuf>,
    /// Sign the trained package (and the checkpoints) with this private key file.
    pub sign_key: Option<PathBuf>,
    /// Who must have signed the checkpoint a resumed run continues from.
    pub checkpoint_trust: Option<Trust>,
    /// Opens a package model (`[model] package = ...`) through the verified loader; `None`
    /// when the caller has no trust policy, and such a spec is refused.
    pub package_opener: Option<&'a dyn PackageOpener>,
    /// The run's seed (a number or 64 hex digits), overriding the spec's.
    pub seed: Option<String>,
    pub checkpoints: CheckpointOptions,
}

/// Whether the run goes on after a step or an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// End the run now, as after its last epoch: checkpoint the weights so far and write
    /// the package.
    Stop,
    /// Abandon the run now ([`RunError::Stopped`]): no package; the checkpoints written
    /// so far stay, and `--resume` continues from the newest.
    Abort,
}

/// The run as it starts.
#[derive(Debug, Clone)]
pub struct RunStart {
    pub run_dir: PathBuf,
    pub seed: String,
    pub threads: usize,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
    /// The step a resumed run continues after.
    pub resumed_at: Option<u64>,
}

/// One step done.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub epoch: u64,
    /// Steps done in the whole run, this one included.
    pub step: u64,
    /// This step's batch.
    pub metrics: Metrics,
    /// Samples per second since the run (or its resumption) started.
    pub samples_per_s: f64,
    /// Every `log_every` steps: the steps since the last such report, as `metrics.jsonl`
    /// records them.
    pub window: Option<Metrics>,
}

/// One epoch done, validation included.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: u64,
    pub step: u64,
    pub train: Metrics,
    /// `val_loss`, `val_accuracy` and each declared metric as `val_NAME`.
    pub validation: BTreeMap<String, f64>,
    /// One line for a person: `epoch E: loss L, accuracy A; validation ...`.
    pub summary: String,
}

/// Hears what a run does. Called on the thread that runs it.
pub trait Observer: Send {
    /// A line for a person: the seed, new parameters, checkpoints set aside, warnings.
    fn note(&mut self, line: &str);
    /// The run starts its first step.
    fn started(&mut self, _start: &RunStart) {}
    /// After each step.
    fn step(&mut self, report: &StepReport) -> Flow;
    /// After each epoch.
    fn epoch(&mut self, _report: &EpochReport) -> Flow {
        Flow::Continue
    }
    /// A checkpoint was written at `position`.
    fn checkpoint(&mut self, _position: &Position) {}
    /// The last step is done; the package is being written.
    fn finished(&mut self) {}
}

/// What a finished run left.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    /// The trained package (`RUN/package`).
    pub package: PathBuf,
    pub model: String,
    pub signed: bool,
    pub seed: String,
    pub steps: u64,
    /// Epochs completed; fewer than the spec's when the observer stopped the run.
    pub epochs: u64,
    /// Whether the observer ended the run before its last epoch.
    pub stopped_early: bool,
    /// The last validation's metrics (empty without validation data).
    pub validation: BTreeMap<String, f64>,
}

/// What the epochs left: the trained weights, in the graph's parameter order.
struct Trained {
    weights: Vec<Vec<f32>>,
    epochs: u64,
    stopped_early: bool,
    validation: BTreeMap<String, f64>,
}

/// Seconds since the Unix epoch, as manifests and checkpoints record them.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Trains as `options` say; see the module's documentation.
pub fn run(options: RunOptions<'_>, observer: &mut dyn Observer) -> Result<RunOutcome, RunError> {
    let config = &options.config;
    let spec_bytes = ward_core::files::read_bounded(config, MAX_SPEC_BYTES)
        .map_err(|e| RunError::failed(format!("cannot read {}", config.display()), &e))?;
    let Ok(text) = std::str::from_utf8(&spec_bytes) else {
        refuse!("{}: not UTF-8", config.display());
    };
    let spec_sha256 = spec_digest(&spec_bytes);
    let spec: TrainSpec =
        toml::from_str(text).map_err(|e| RunError::failed(config.display().to_string(), &e))?;
    spec.validate()
        .map_err(|e| RunError::failed(config.display().to_string(), &e))?;
    let base = config.parent().unwrap_or(Path::new("."));
    let key = options
        .sign_key
        .as_deref()
        .map(read_private_key_file)
        .transpose()?;

    // A resumed run continues in its own directory from a verified, decrypted checkpoint;
    // a new one starts in a new directory.
    let (run_dir, resumed) = match (&options.resume, &options.out) {
        (Some(_), Some(_)) => refuse!("give --out DIR (a new run) or --resume DIR, not both"),
        (Some(dir), None) => {
            // A finished run is refused before any checkpoint is verified or decrypted.
            if dir.join("package").exists() {
                refuse!("{}: the run is complete (package/ exists)", dir.display());
            }
            let Some(trust) = &options.checkpoint_trust else {
                refuse!(
                    "--resume verifies the checkpoint: pass --trust KEY.pub or --trust POLICY.toml \
                     (checkpoints are always signed; --allow-unsigned does not apply to them)"
                );
            };
            let opened =
                checkpointing::open_for_resume(&options.checkpoints, dir, trust, observer)?;
            (dir.clone(), Some(opened))
        }
        (None, Some(out)) => {
            if out.exists() {
                refuse!("{} exists; a run writes a new directory", out.display());
            }
            (out.clone(), None)
        }
        (None, None) => refuse!("give --out DIR (a new run) or --resume DIR"),
    };
    let mut spec_changed = None;
    if let Some(r) = &resumed {
        if r.index.spec_sha256 != spec_sha256 {
            if !options.checkpoints.allow_spec_change {
                refuse!(
                    "{} was written by another training spec (SHA-256 {}; {} is {}): \
                     --allow-spec-change continues anyway",
                    r.dir.display(),
                    r.index.spec_sha256,
                    config.display(),
                    spec_sha256
                );
            }
            observer.note(&format!(
                "WARNING: --allow-spec-change: continuing a run of spec {} under spec {} \
                 (recorded in metrics.jsonl)",
                r.index.spec_sha256, spec_sha256
            ));
            spec_changed = Some(r.index.spec_sha256.clone());
        }
    }
    let given_seed = options.seed.as_deref();
    let seed = match (&resumed, given_seed.or(spec.run.seed.as_deref())) {
        (Some(r), _) => {
            let saved = RunSeed::parse(&r.state.info.seed)?;
            if let Some(g) = given_seed {
                if RunSeed::parse(g)?.as_bytes() != saved.as_bytes() {
                    refuse!("--seed differs from the seed the checkpoint's run used");
                }
            }
            saved
        }
        (None, Some(text)) => RunSeed::parse(text)?,
        (None, None) => RunSeed::from_os()?,
    };
    observer.note(&format!("seed: {seed}"));
    let run_id = match &resumed {
        Some(r) => r.index.run.clone(),
        None => new_run_id()?,
    };

    // The data first: its example shape is the model's input.
    let limits = DataLimits::default();
    let train = spec
        .data
        .train
        .open(base, &limits)
        .map_err(|e| RunError::failed("data.train", &e))?;
    let val = spec
        .data
        .val
        .as_ref()
        .map(|v| {
            v.open(base, &limits)
                .map_err(|e| RunError::failed("data.val", &e))
        })
        .transpose()?;
    let example_shape = train.data_shape().to_vec();
    let batch = spec.data.batch_size;

    let mut model = model::load(
        &spec,
        base,
        &example_shape,
        options.package_opener,
        resumed.is_some(),
    )?;
    let graph = model.graph.clone();
    let init = spec.init.unwrap_or_default();
    let weights = init_missing(&init, &graph, &seed, std::mem::take(&mut model.given))?;
    if !model.new.is_empty() && resumed.is_none() {
        observer.note(&format!(
            "initialised {} parameter{} with {}: {}",
            model.new.len(),
            if model.new.len() == 1 { "" } else { "s" },
            init.name(),
            model.new.join(", ")
        ));
    }

    let threads = spec
        .run
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| RunError::failed("thread pool", &e))?;
    let loader = |data: Arc<dyn Dataset>, shuffle: bool| {
        Loader::new(
            data,
            LoaderConfig {
                batch_size: batch,
                shuffle,
                last_batch: LastBatch::Pad,
                threads: spec.data.threads,
                prefetch: 4,
            },
            seed.clone(),
        )
    };
    let steps_per_epoch = train.len().div_ceil(batch) as u64;
    let train_loader = loader(train, spec.data.shuffle)?;
    let val_loader = val.map(|v| loader(v, false)).transpose()?;

    let mut trainer =
        pool.install(|| model::trainer(&spec, &model, weights, batch, &example_shape, &seed))?;
    if let (Some(path), None) = (&spec.model.states, &resumed) {
        let path = base.join(path);
        let imported = checkpointing::mxnet_states(&path, &mut trainer)?;
        observer.note(&format!(
            "optimizer state: {} ({} update counts)",
            path.display(),
            if imported {
                "with its"
            } else {
                "MXNet's Module saves no optimizer: fresh"
            }
        ));
    }
    let seed_text = seed.to_string();
    let mut checkpointing = Checkpointing::new(
        &options.checkpoints,
        &run_dir,
        options.sign_key.as_deref(),
        resumed.as_ref(),
        RunIdentity {
            model: &model.name,
            run: &run_id,
            spec_sha256: &spec_sha256,
            seed: &seed_text,
        },
    )?;
    let metrics_path = run_dir.join("metrics.jsonl");
    // Everything is checked before anything on disk changes: the checkpoint restored into
    // the trainer, then the newer checkpoints set aside and the log cut back.
    let (start, mut restored, log_bytes, resumed_step) = match resumed {
        Some(r) => {
            let position = r.index.position;
            let progress = r.state.info.progress;
            let dir = r.dir.clone();
            checkpointing::restore(&mut trainer, r)?;
            checkpointing::set_aside_newer(&dir, position.step, now_unix(), observer)?;
            (
                position,
                Some((progress.epoch.to_metrics(), progress.window.to_metrics())),
                Some(progress.log_bytes),
                Some(position.step),
            )
        }
        None => (
            Position {
                step: 0,
                epoch: 0,
                batch: 0,
            },
            None,
            None,
            None,
        ),
    };
    let io = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |e: std::io::Error| RunError::failed(what.clone(), &e)
    };
    let mut log = match (log_bytes, resumed_step) {
        (None, _) | (_, None) => {
            crate::checkpoint::store::create_private_dir(&run_dir).map_err(|e| {
                RunError::failed(format!("cannot create {}", run_dir.display()), &e)
            })?;
            let mut log = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&metrics_path)
                .map_err(io("cannot create", &metrics_path))?;
            writeln!(
                log,
                "{}",
                serde_json::json!({"seed": seed.to_string(), "threads": threads})
            )
            .map_err(io("writing", &metrics_path))?;
            log
        }
        (Some(saved), Some(step)) => {
            // Lines written after the checkpoint are written again by the resumed run.
            let mut log = std::fs::OpenOptions::new()
                .write(true)
                .open(&metrics_path)
                .map_err(io("cannot open", &metrics_path))?;
            let length = log
                .metadata()
                .map_err(io("cannot open", &metrics_path))?
                .len();
            if length < saved {
                refuse!(
                    "{} is shorter than when the checkpoint was written ({saved} bytes)",
                    metrics_path.display()
                );
            }
            log.set_len(saved)
                .and_then(|()| log.seek(SeekFrom::End(0)))
                .map_err(io("cannot cut back", &metrics_path))?;
            if let Some(from) = &spec_changed {
                writeln!(
                    log,
                    "{}",
                    serde_json::json!({"event": "spec_changed", "step": step,
                        "from_spec_sha256": from, "spec_sha256": spec_sha256})
                )
                .map_err(io("writing", &metrics_path))?;
            }
            log
        }
    };
    let log_error = io("writing", &metrics_path);

    observer.started(&RunStart {
        run_dir: run_dir.clone(),
        seed: seed_text.clone(),
        threads,
        steps_per_epoch,
        total_steps: spec.run.epochs.saturating_mul(steps_per_epoch),
        resumed_at: resumed_step,
    });
    let trained = pool.install(|| -> Result<Trained, RunError> {
        let evaluator = trainer.evaluator(batch, &example_shape)?;
        let started = Instant::now();
        let mut samples = 0usize;
        let mut val_metrics = BTreeMap::new();
        let mut epochs_done = start.epoch;
        // The observer asked to stop; before the epoch's last batch.
        let (mut stop, mut mid_epoch) = (false, false);
        for epoch in start.epoch..spec.run.epochs {
            let (mut epoch_metrics, mut window) = restored.take().unwrap_or_default();
            let first = if epoch == start.epoch { start.batch } else { 0 };
            let mut batches =
                train_loader.epoch_from(epoch, usize::try_from(first).unwrap_or(usize::MAX))?;
            while let Some(b) = batches.next() {
                let b = b?;
                let m = trainer.step(&b.data, &b.label)?;
                window.add(m);
                epoch_metrics.add(m);
                samples += batch;
                let rate = samples as f64 / started.elapsed().as_secs_f64().max(1e-9);
                let logged = trainer.steps() % spec.run.log_every == 0;
                let flow = observer.step(&StepReport {
                    epoch,
                    step: trainer.steps(),
                    metrics: m,
                    samples_per_s: rate,
                    window: logged.then_some(window),
                });
                if logged {
                    let mut line = serde_json::json!({"epoch": epoch, "step": trainer.steps(),
                            "loss": window.loss(), "samples_per_s": rate});
                    insert_accuracy(&mut line, "accuracy", &window);
                    writeln!(log, "{line}").map_err(&log_error)?;
                    window = Metrics::default();
                }
                if flow == Flow::Abort {
                    return Err(RunError::Stopped {
                        step: trainer.steps(),
                    });
                }
                let position = batches.position();
                let last_of_epoch = position >= batches.len();
                if flow == Flow::Stop {
                    stop = true;
                    if !last_of_epoch {
                        mid_epoch = true;
                    }
                }
                if let Some(c) = checkpointing.as_mut() {
                    // A stop mid-epoch is checkpointed where it stopped: the checkpoint
                    // then holds the package's weights.
                    if c.due(trainer.steps(), last_of_epoch) || mid_epoch {
                        log.sync_data().map_err(&log_error)?;
                        let at = Position {
                            step: trainer.steps(),
                            epoch,
                            batch: position as u64,
                        };
                        let saved = checkpointing::progress(epoch_metrics, window, log_len(&log)?);
                        if c.write(&trainer, at, saved, val_metrics.clone(), now_unix())?
                            .is_some()
                        {
                            observer.checkpoint(&at);
                        }
                    }
                }
                if mid_epoch {
                    break;
                }
            }
            drop(batches);
            if mid_epoch {
                break;
            }
            let mut line = serde_json::json!({"epoch": epoch, "step": trainer.steps(),
                "train_loss": epoch_metrics.loss()});
            insert_accuracy(&mut line, "train_accuracy", &epoch_metrics);
            let mut summary = format!("epoch {epoch}: {}", describe(&epoch_metrics));
            if let Some(v) = &val_loader {
                let mut m = Metrics::default();
                let mut declared = spec
                    .run
                    .metrics
                    .iter()
                    .map(|&s| Metric::new(s))
                    .collect::<Result<Vec<_>, _>>()?;
                for b in v.epoch(0)? {
                    let b = b?;
                    let examples = b.data_shape.first().copied().unwrap_or(0);
                    let valid = examples.saturating_sub(b.pad);
                    let e = trainer.evaluate(&evaluator, &b.data, &b.label, valid)?;
                    m.add(e.metrics);
                    for metric in &mut declared {
                        metric.update(&e.predictions, &e.shape, &e.labels, &e.label_shape)?;
                    }
                }
                val_metrics.clear();
                val_metrics.insert("val_loss".to_string(), m.loss());
                if let Some(a) = m.accuracy() {
                    val_metrics.insert("val_accuracy".to_string(), a);
                }
                if let Some(fields) = line.as_object_mut() {
                    fields.insert("val_loss".into(), m.loss().into());
                    for metric in &declared {
                        let key = format!("val_{}", metric.spec().key());
                        fields.insert(key.clone(), metric.get().into());
                        val_metrics.insert(key, metric.get());
                    }
                }
                insert_accuracy(&mut line, "val_accuracy", &m);
                summary += &format!("; validation {}", describe(&m));
                for metric in &declared {
                    summary += &format!(", {} {:.4}", metric.spec().mxnet_name(), metric.get());
                }
            }
            writeln!(log, "{line}").map_err(&log_error)?;
            epochs_done = epoch + 1;
            let flow = observer.epoch(&EpochReport {
                epoch,
                step: trainer.steps(),
                train: epoch_metrics,
                validation: val_metrics.clone(),
                summary,
            });
            if flow == Flow::Abort {
                return Err(RunError::Stopped {
                    step: trainer.steps(),
                });
            }
            if let Some(c) = checkpointing.as_mut() {
                log.sync_data().map_err(&log_error)?;
                let at = Position {
                    step: trainer.steps(),
                    epoch: epoch + 1,
                    batch: 0,
                };
                let saved =
                    checkpointing::progress(Metrics::default(), Metrics::default(), log_len(&log)?);
                if c.write(&trainer, at, saved, val_metrics.clone(), now_unix())?
                    .is_some()
                {
                    observer.checkpoint(&at);
                }
            }
            if stop || flow == Flow::Stop {
                break;
            }
        }
        observer.finished();
        let stopped_early = mid_epoch || epochs_done < spec.run.epochs;
        Ok(Trained {
            weights: trainer.weights().to_vec(),
            epochs: epochs_done,
            stopped_early,
            validation: val_metrics,
        })
    })?;
    let Trained {
        weights,
        epochs,
        stopped_early,
        validation,
    } = trained;
    log.sync_all().map_err(&log_error)?;

    let package = run_dir.join("package");
    let manifest =
        model::write_trained(&package, model, &graph, &weights, key.as_ref(), now_unix())?;
    Ok(RunOutcome {
        run_dir,
        package,
        model: manifest.name,
        signed: key.is_some(),
        seed: seed_text,
        steps: trainer.steps(),
        epochs,
        stopped_early,
        validation,
    })
}

/// The log's length: what a checkpoint records, and a resumed run cuts back to.
fn log_len(log: &std::fs::File) -> Result<u64, RunError> {
    log.metadata()
        .map(|m| m.len())
        .map_err(|e| RunError::failed("metrics.jsonl", &e))
}

/// `loss L, accuracy A` (the accuracy only for a classifier).
pub fn describe(m: &Metrics) -> String {
    match m.accuracy() {
        Some(a) => format!("loss {:.4}, accuracy {a:.4}", m.loss()),
        None => format!("loss {:.4}", m.loss()),
    }
}

/// Adds the accuracy to a metrics line, for a classifier.
fn insert_accuracy(line: &mut serde_json::Value, key: &str, m: &Metrics) {
    if let (Some(fields), Some(a)) = (line.as_object_mut(), m.accuracy()) {
        fields.insert(key.into(), a.into());
    }
}
