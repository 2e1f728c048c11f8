//! `ward train`: the flags, a progress bar, and the run itself in `ward_train::run`.

mod checkpoint;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ward_package::Verification;
use ward_train::run::{
    EpochReport, Flow, Observer, OpenedModel, PackageOpener, RunError, RunOptions, RunStart,
    StepReport,
};

use checkpoint::CheckpointArgs;

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
    let opener = args.trust.is_set().then_some(VerifiedOpener(&args.trust));
    let options = RunOptions {
        config: args.config.clone(),
        out: args.out.clone(),
        resume: args.checkpoints.resume.clone(),
        sign_key: args.sign_key.clone(),
        checkpoint_trust: args.trust.policy()?,
        package_opener: opener.as_ref().map(|o| o as &dyn PackageOpener),
        seed: args.seed.clone(),
        checkpoints: args.checkpoints.options(),
    };
    let mut observer = Console::default();
    let outcome = ward_train::run::run(options, &mut observer).map_err(into_anyhow)?;
    println!(
        "trained {} for {} epoch{} into {}{}",
        outcome.model,
        outcome.epochs,
        if outcome.epochs == 1 { "" } else { "s" },
        outcome.package.display(),
        if outcome.signed { ", signed" } else { "" }
    );
    Ok(())
}

/// A run's error as the CLI reports it: verification refusals keep their type, so that
/// `main` exits 3 for them.
pub(crate) fn into_anyhow(e: RunError) -> anyhow::Error {
    match e {
        RunError::Checkpoint(c) => c.into(),
        RunError::Package(p) => p.into(),
        other => other.into(),
    }
}

/// Opens a package model through the verified loader under `--trust`/`--allow-unsigned`,
/// printing who signed it.
pub(crate) struct VerifiedOpener<'a>(pub &'a super::TrustArgs);

impl PackageOpener for VerifiedOpener<'_> {
    fn open(&self, dir: &Path) -> Result<OpenedModel, RunError> {
        let trust = self
            .0
            .trust()
            .map_err(|e| RunError::Refused(format!("{e:#}")))?;
        let (model, verification) = ward_exec::PackageModel::open(dir, &trust, &self.0.limits())
            .map_err(|e| match e {
                ward_exec::ExecError::Package(p) => RunError::Package(p),
                other => RunError::failed(format!("package {}", dir.display()), &other),
            })?;
        if let Verification::Signed(v) = &verification {
            eprintln!(
                "model: {} verified, signed by {}",
                dir.display(),
                v.signers().join(", ")
            );
            for w in v.warnings() {
                eprintln!("warning: {w}");
            }
        }
        Ok(OpenedModel {
            manifest: model.manifest,
            graph: model.graph,
            weights: model.weights,
        })
    }
}

/// What a person watching sees: on a terminal, a bar with the epoch, step, loss, samples
/// per second and the time left; otherwise a line every `log_every` steps.
#[derive(Default)]
struct Console {
    bar: Option<ProgressBar>,
}

impl Observer for Console {
    fn note(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn started(&mut self, start: &RunStart) {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(start.total_steps);
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}");
        if let Ok(style) = style {
            bar.set_style(style);
        }
        self.bar = Some(bar);
    }

    fn step(&mut self, r: &StepReport) -> Flow {
        match (&self.bar, &r.window) {
            (Some(bar), _) => {
                bar.set_position(r.step);
                bar.set_message(format!(
                    "epoch {}  loss {:.4}  {:.0} samples/s",
                    r.epoch,
                    r.metrics.loss(),
                    r.samples_per_s
                ));
            }
            (None, Some(window)) => eprintln!(
                "epoch {} step {}: {}, {:.0} samples/s",
                r.epoch,
                r.step,
                ward_train::run::describe(window),
                r.samples_per_s
            ),
            (None, None) => {}
        }
        Flow::Continue
    }

    fn epoch(&mut self, r: &EpochReport) -> Flow {
        self.note(&r.summary);
        Flow::Continue
    }

    fn finished(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
