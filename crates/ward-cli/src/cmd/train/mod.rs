//! `ward train`

mod checkpoint;
pub(crate) mod model;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ward_core::random::RunSeed;
use ward_core::Tensor;
use ward_package::signature::read_private_key_file;
use ward_package::{write_signed_package, Manifest};
use ward_train::checkpoint::{new_run_id, spec_digest, Position};
use ward_train::data::batch::{LastBatch, Loader, LoaderConfig};
use ward_train::data::{DataLimits, Dataset};
use ward_train::init::init_missing;
use ward_train::metrics::Metric;
use ward_train::spec::TrainSpec;
use ward_train::trainer::Metrics;

use checkpoint::{CheckpointArgs, Checkpointing, RunIdentity};

/// Largest training spec read.
const MAX_SPEC_BYTES: u64 = 1 << 20;

/// Train a model from a training spec and write it as a (signed) ward package.
///
/// Reads `train.toml` (see `ward_train::spec`: the model, MXNet files or a ward package
/// verified under --trust, the data, the declared loss, optimizer and schedule, the
/// epochs), trains on ward's engine, and writes
/// `OUT/metrics.jsonl` (one JSON line every `log_every` steps and after each epoch) and
/// the trained package `OUT/package`. The run's seed comes from the operating system
/// unless given; it is printed and recorded in the metrics. A loss or gradient that is
/// not finite stops the run (exit 1), naming the step and the parameter.
///
/// Example:
///   ward train --config train.toml --out runs/lenet --sign-key keys/release.key
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct TrainArgs {
    /// The training spec (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The run's directory: metrics.jsonl, checkpoints/ and package/ (must not exist yet).
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Sign the trained package (and the checkpoints) with this private key.
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// Whom to trust when the model is a ward package ([model] package = ...) and, with
    /// --resume, who must have signed the checkpoint: verified before anything is read.
    #[command(flatten)]
    trust: super::TrustArgs,
    /// The run's seed (a number or 64 hex digits), overriding the spec's.
    #[arg(long)]
    seed: Option<String>,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let spec_bytes = ward_core::files::read_bounded(&args.config, MAX_SPEC_BYTES)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let text = String::from_utf8(spec_bytes.clone())
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8", args.config.display()))?;
    let spec_sha256 = spec_digest(&spec_bytes);
    let spec: TrainSpec =
        toml::from_str(&text).with_context(|| format!("{}", args.config.display()))?;
    spec.validate()
        .with_context(|| format!("{}", args.config.display()))?;
    let base = args.config.parent().unwrap_or(Path::new("."));
    let key = args
        .sign_key
        .as_deref()
        .map(read_private_key_file)
        .transpose()?;

    // A resumed run continues in its own directory from a verified, decrypted checkpoint;
    // a new one starts in a new directory.
    let (run_dir, resumed) = match &args.checkpoints.resume {
        Some(dir) => {
            // A finished run is refused before any checkpoint is verified or decrypted.
            if dir.join("package").exists() {
                bail!("{}: the run is complete (package/ exists)", dir.display());
            }
            let trust = args.trust.checkpoint_trust()?;
            let opened = checkpoint::open_for_resume(&args.checkpoints, dir, &trust)?;
            (dir.clone(), Some(opened))
        }
        None => {
            let Some(out) = args.out.clone() else {
                bail!("give --out DIR (a new run) or --resume DIR");
            };
            if out.exists() {
                bail!("{} exists; a run writes a new directory", out.display());
            }
            (out, None)
        }
    };
    let mut spec_changed = None;
    if let Some(r) = &resumed {
        if r.index.spec_sha256 != spec_sha256 {
            if !args.checkpoints.allow_spec_change() {
                bail!(
                    "{} was written by another training spec (SHA-256 {}; {} is {}): \
                     --allow-spec-change continues anyway",
                    r.dir.display(),
                    r.index.spec_sha256,
                    args.config.display(),
                    spec_sha256
                );
            }
            eprintln!(
                "WARNING: --allow-spec-change: continuing a run of spec {} under spec {} \
                 (recorded in metrics.jsonl)",
                r.index.spec_sha256, spec_sha256
            );
            spec_changed = Some(r.index.spec_sha256.clone());
        }
    }
    let seed = match (&resumed, args.seed.as_deref().or(spec.run.seed.as_deref())) {
        (Some(r), given) => {
            let saved = RunSeed::parse(&r.state.info.seed)?;
            if let Some(g) = given.filter(|_| args.seed.is_some()) {
                if RunSeed::parse(g)?.as_bytes() != saved.as_bytes() {
                    bail!("--seed differs from the seed the checkpoint's run used");
                }
            }
            saved
        }
        (None, Some(text)) => RunSeed::parse(text)?,
        (None, None) => RunSeed::from_os()?,
    };
    eprintln!("seed: {seed}");
    let run_id = match &resumed {
        Some(r) => r.index.run.clone(),
        None => new_run_id()?,
    };

    // The data first: its example shape is the model's input.
    let limits = DataLimits::default();
    let train = spec.data.train.open(base, &limits).context("data.train")?;
    let val = spec
        .data
        .val
        .as_ref()
        .map(|v| v.open(base, &limits).context("data.val"))
        .transpose()?;
    let example_shape = train.data_shape().to_vec();
    let batch = spec.data.batch_size;

    let mut model = model::load(&spec, base, &example_shape, &args.trust, resumed.is_some())?;
    let graph = model.graph.clone();
    let init = spec.init.unwrap_or_default();
    let weights = init_missing(&init, &graph, &seed, std::mem::take(&mut model.given))?;
    if !model.new.is_empty() && resumed.is_none() {
        eprintln!(
            "initialised {} parameter{} with {}: {}",
            model.new.len(),
            if model.new.len() == 1 { "" } else { "s" },
            init.name(),
            model.new.join(", ")
        );
    }

    let threads = spec
        .run
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
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
        let imported = checkpoint::mxnet_states(&path, &mut trainer)?;
        eprintln!(
            "optimizer state: {} ({} update counts)",
            path.display(),
            if imported {
                "with its"
            } else {
                "MXNet's Module saves no optimizer: fresh"
            }
        );
    }
    let seed_text = seed.to_string();
    let mut checkpointing = Checkpointing::new(
        &args.checkpoints,
        &run_dir,
        args.sign_key.as_deref(),
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
            checkpoint::restore(&mut trainer, r)?;
            checkpoint::set_aside_newer(&dir, position.step)?;
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
    let mut log = match (log_bytes, resumed_step) {
        (None, _) | (_, None) => {
            checkpoint::create_run_dir(&run_dir)?;
            let mut log = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&metrics_path)
                .with_context(|| format!("cannot create {}", metrics_path.display()))?;
            writeln!(
                log,
                "{}",
                serde_json::json!({"seed": seed.to_string(), "threads": threads})
            )?;
            log
        }
        (Some(saved), Some(step)) => {
            // Lines written after the checkpoint are written again by the resumed run.
            let log = std::fs::OpenOptions::new()
                .write(true)
                .open(&metrics_path)
                .with_context(|| format!("cannot open {}", metrics_path.display()))?;
            if log.metadata()?.len() < saved {
                bail!(
                    "{} is shorter than when the checkpoint was written ({saved} bytes)",
                    metrics_path.display()
                );
            }
            log.set_len(saved)?;
            let mut log = log;
            log.seek(SeekFrom::End(0))?;
            if let Some(from) = &spec_changed {
                writeln!(
                    log,
                    "{}",
                    serde_json::json!({"event": "spec_changed", "step": step,
                        "from_spec_sha256": from, "spec_sha256": spec_sha256})
                )?;
            }
            log
        }
    };

    let trained = pool.install(|| -> Result<Vec<Vec<f32>>> {
        let evaluator = trainer.evaluator(batch, &example_shape)?;
        let started = Instant::now();
        let mut samples = 0usize;
        let progress = Progress::new(spec.run.epochs.saturating_mul(steps_per_epoch));
        let mut val_metrics = BTreeMap::new();
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
                progress.step(epoch, trainer.steps(), m.loss(), rate);
                if trainer.steps() % spec.run.log_every == 0 {
                    if !progress.is_bar() {
                        eprintln!(
                            "epoch {epoch} step {}: {}, {rate:.0} samples/s",
                            trainer.steps(),
                            describe(&window)
                        );
                    }
                    let mut line = serde_json::json!({"epoch": epoch, "step": trainer.steps(),
                            "loss": window.loss(), "samples_per_s": rate});
                    insert_accuracy(&mut line, "accuracy", &window);
                    writeln!(log, "{line}")?;
                    window = Metrics::default();
                }
                let position = batches.position();
                if let Some(c) = checkpointing.as_mut() {
                    if c.due(trainer.steps(), position >= batches.len()) {
                        log.sync_data()?;
                        let at = Position {
                            step: trainer.steps(),
                            epoch,
                            batch: position as u64,
                        };
                        let saved = checkpoint::progress(epoch_metrics, window, log_len(&log)?);
                        c.write(&trainer, at, saved, val_metrics.clone())?;
                    }
                }
            }
            drop(batches);
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
            writeln!(log, "{line}")?;
            progress.println(&summary);
            if let Some(c) = checkpointing.as_mut() {
                log.sync_data()?;
                let at = Position {
                    step: trainer.steps(),
                    epoch: epoch + 1,
                    batch: 0,
                };
                let saved =
                    checkpoint::progress(Metrics::default(), Metrics::default(), log_len(&log)?);
                c.write(&trainer, at, saved, val_metrics.clone())?;
            }
        }
        progress.finish();
        Ok(trainer.weights().to_vec())
    })?;
    log.sync_all()?;

    let package = run_dir.join("package");
    write_trained(
        &package,
        model,
        &graph,
        &trained,
        key.as_ref(),
        spec.run.epochs,
    )
}

/// Writes trained weights (one per graph parameter) as the signed package `package`,
/// and says so.
pub(crate) fn write_trained(
    package: &Path,
    model: model::Model,
    graph: &ward_graph::Graph,
    trained: &[Vec<f32>],
    key: Option<&ward_package::signature::PrivateKey>,
    epochs: u64,
) -> Result<()> {
    // The trained weights, under their names, as the package's weights.
    let tensors = graph
        .params
        .iter()
        .zip(trained)
        .map(|(p, w)| Ok((p.name.clone(), Tensor::from_f32(p.shape.clone(), w)?)))
        .collect::<Result<Vec<_>>>()?;
    let manifest = Manifest::new(
        model.name,
        "1",
        created_now(),
        model.origin,
        model.inputs,
        model.outputs,
    );
    write_signed_package(package, &manifest, &graph.to_json(), &tensors, key)
        .with_context(|| format!("writing {}", package.display()))?;
    println!(
        "trained {} for {} epoch{} into {}{}",
        manifest.name,
        epochs,
        if epochs == 1 { "" } else { "s" },
        package.display(),
        if key.is_some() { ", signed" } else { "" }
    );
    Ok(())
}

/// The log's length: what a checkpoint records, and a resumed run cuts back to.
fn log_len(log: &std::fs::File) -> Result<u64> {
    Ok(log.metadata()?.len())
}

/// `loss L, accuracy A` (the accuracy only for a classifier).
fn describe(m: &Metrics) -> String {
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

/// What a person watching sees: on a terminal, a bar with the epoch, step, loss, samples
/// per second and the time left; otherwise a line every `log_every` steps (the caller's).
enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    fn new(total_steps: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let bar = ProgressBar::new(total_steps);
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}");
        if let Ok(style) = style {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    }

    fn is_bar(&self) -> bool {
        matches!(self, Progress::Bar(_))
    }

    fn step(&self, epoch: u64, step: u64, loss: f64, samples_per_s: f64) {
        if let Progress::Bar(bar) = self {
            bar.set_position(step);
            bar.set_message(format!(
                "epoch {epoch}  loss {loss:.4}  {samples_per_s:.0} samples/s"
            ));
        }
    }

    fn println(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.println(line),
            Progress::Lines => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

pub(crate) fn created_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
