//! `run`: a whole run from a spec, as `ward train` and `ward.train` drive it; what an
//! observer hears, and an observer that ends the run early.

use std::path::{Path, PathBuf};

use ward_package::{Trust, TrustPolicy};
use ward_train::checkpoint::{list_checkpoints, open_checkpoint, Unsealing, CHECKPOINTS_DIR};
use ward_train::run::{
    run, CheckpointOptions, EpochReport, Flow, Observer, RunError, RunOptions, RunStart, StepReport,
};

use crate::support::fixtures;

/// A spec training the Module LeNet fixture on the bundled MNIST digits, 64 a batch.
fn spec(dir: &Path, epochs: u64) -> PathBuf {
    let model = fixtures("models").join("lenet_module");
    let mnist = fixtures("mnist");
    let text = format!(
        r#"
[model]
symbol = "{model}/model-symbol.json"
params = "{model}/model-0000.params"
name = "lenet"

[data]
batch_size = 64

[data.train]
format = "mnist"
images = "{mnist}/train-images-idx3-ubyte.gz"
labels = "{mnist}/train-labels-idx1-ubyte.gz"

[optimizer]
name = "sgd"
learning_rate = 0.1
rescale_grad = 0.015625

[run]
epochs = {epochs}
log_every = 4
seed = "11"
"#,
        model = model.display(),
        mnist = mnist.display(),
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Records what it hears; stops after step `stop_at` or after epoch `stop_after_epoch`,
/// abandons the run after step `abort_at`.
#[derive(Default)]
struct Recorder {
    stop_at: Option<u64>,
    abort_at: Option<u64>,
    stop_after_epoch: Option<u64>,
    start: Option<RunStart>,
    steps: Vec<u64>,
    windows: Vec<u64>,
    epochs: Vec<u64>,
    checkpoints: Vec<u64>,
    notes: Vec<String>,
    finished: bool,
}

impl Observer for Recorder {
    fn note(&mut self, line: &str) {
        self.notes.push(line.to_string());
    }
    fn started(&mut self, start: &RunStart) {
        self.start = Some(start.clone());
    }
    fn step(&mut self, r: &StepReport) -> Flow {
        assert!(r.metrics.loss().is_finite());
        self.steps.push(r.step);
        if r.window.is_some() {
            self.windows.push(r.step);
        }
        if self.stop_at == Some(r.step) {
            Flow::Stop
        } else if self.abort_at == Some(r.step) {
            Flow::Abort
        } else {
            Flow::Continue
        }
    }
    fn epoch(&mut self, r: &EpochReport) -> Flow {
        assert!(r.summary.starts_with(&format!("epoch {}: loss ", r.epoch)));
        self.epochs.push(r.epoch);
        if self.stop_after_epoch == Some(r.epoch) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
    fn checkpoint(&mut self, position: &ward_train::checkpoint::Position) {
        self.checkpoints.push(position.step);
    }
    fn finished(&mut self) {
        self.finished = true;
    }
}

fn options(config: PathBuf, out: PathBuf) -> RunOptions<'static> {
    RunOptions {
        config,
        out: Some(out),
        resume: None,
        sign_key: None,
        checkpoint_trust: None,
        package_opener: None,
        seed: None,
        checkpoints: CheckpointOptions::default(),
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn an_observer_hears_every_step_and_can_end_the_run_mid_epoch_with_a_checkpoint_and_a_package() {
    let tmp = tempfile::tempdir().unwrap();
    let config = spec(tmp.path(), 2);
    let keys = tmp.path().join("keys");
    ward_package::signature::keygen(&keys, "trainer").unwrap();
    let identity = age::x25519::Identity::generate();
    let out = tmp.path().join("run");
    let mut o = options(config, out.clone());
    o.sign_key = Some(keys.join("trainer.key"));
    o.checkpoints.recipients = vec![identity.to_public().to_string()];
    let mut recorder = Recorder {
        stop_at: Some(6),
        ..Recorder::default()
    };
    let outcome = run(o, &mut recorder).unwrap();

    let start = recorder.start.as_ref().unwrap();
    assert_eq!(
        start.seed,
        ward_core::random::RunSeed::from_u64(11).to_string()
    );
    assert_eq!(start.total_steps, 2 * start.steps_per_epoch);
    assert!(start.steps_per_epoch > 6);
    assert_eq!(recorder.steps, [1, 2, 3, 4, 5, 6]);
    assert_eq!(recorder.windows, [4]);
    assert!(recorder.epochs.is_empty(), "the first epoch did not end");
    assert!(recorder.finished);
    assert!(recorder.notes.iter().any(|n| n.starts_with("seed: ")));
    // Stopped mid-epoch: checkpointed there, and the package holds those weights.
    assert_eq!(recorder.checkpoints, [6]);
    assert_eq!(outcome.steps, 6);
    assert_eq!(outcome.epochs, 0);
    assert!(outcome.stopped_early && outcome.signed);
    assert_eq!(outcome.model, "lenet");
    assert!(outcome.package.join("ward.json").is_file());
    let found = list_checkpoints(&out.join(CHECKPOINTS_DIR)).unwrap();
    assert_eq!(found.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [6]);
    let trust = Trust::Policy(TrustPolicy::load(&keys.join("trainer.pub")).unwrap());
    let secret = age::secrecy::ExposeSecret::expose_secret(&identity.to_string()).to_string();
    let identity_file = tmp.path().join("identity.txt");
    ward_core::files::write_new_file(&identity_file, secret.as_bytes(), 0o600).unwrap();
    let opened = open_checkpoint(
        &found[0].1,
        &trust,
        &Unsealing::identity_files(&[identity_file.as_path()]).unwrap(),
    )
    .unwrap();
    assert_eq!(opened.index.position.step, 6);
    // metrics.jsonl: the seed line, then the one window the run logged.
    let log = lines(&out.join("metrics.jsonl"));
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["step"], 4);
}

#[test]
fn stopping_after_an_epoch_ends_the_run_with_that_epochs_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let config = spec(tmp.path(), 3);
    let mut recorder = Recorder {
        stop_after_epoch: Some(0),
        ..Recorder::default()
    };
    let outcome = run(options(config, tmp.path().join("run")), &mut recorder).unwrap();
    let per_epoch = recorder.start.as_ref().unwrap().steps_per_epoch;
    assert_eq!(recorder.epochs, [0]);
    assert_eq!(outcome.steps, per_epoch);
    assert_eq!(outcome.epochs, 1);
    assert!(outcome.stopped_early && !outcome.signed);
    assert!(
        recorder.checkpoints.is_empty(),
        "no checkpoint without encryption"
    );
    let log = lines(&tmp.path().join("run/metrics.jsonl"));
    assert_eq!(log.last().unwrap()["epoch"], 0);
    assert!(log.last().unwrap()["train_loss"].is_number());
}

#[test]
fn an_abandoned_run_leaves_its_checkpoints_and_no_package() {
    let tmp = tempfile::tempdir().unwrap();
    let config = spec(tmp.path(), 1);
    let keys = tmp.path().join("keys");
    ward_package::signature::keygen(&keys, "trainer").unwrap();
    let out = tmp.path().join("run");
    let mut o = options(config, out.clone());
    o.sign_key = Some(keys.join("trainer.key"));
    o.checkpoints.recipients = vec![age::x25519::Identity::generate().to_public().to_string()];
    o.checkpoints.every = Some(2);
    let mut recorder = Recorder {
        abort_at: Some(5),
        ..Recorder::default()
    };
    let e = run(o, &mut recorder).unwrap_err();
    assert!(matches!(e, RunError::Stopped { step: 5 }), "{e}");
    assert_eq!(recorder.steps, [1, 2, 3, 4, 5]);
    assert_eq!(recorder.checkpoints, [2, 4]);
    assert!(!recorder.finished);
    assert!(!out.join("package").exists());
    let found = list_checkpoints(&out.join(CHECKPOINTS_DIR)).unwrap();
    assert_eq!(found.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 4]);
}

#[test]
fn a_run_is_refused_before_anything_is_written_when_its_options_do_not_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let config = spec(tmp.path(), 1);
    let out = tmp.path().join("run");

    // Neither a new directory nor one to resume.
    let mut o = options(config.clone(), out.clone());
    o.out = None;
    let e = run(o, &mut Recorder::default()).unwrap_err();
    assert!(matches!(e, RunError::Refused(_)), "{e}");

    // Resuming needs a trust policy for the checkpoint.
    std::fs::create_dir(&out).unwrap();
    let mut o = options(config.clone(), out.clone());
    o.out = None;
    o.resume = Some(out.clone());
    let e = run(o, &mut Recorder::default()).unwrap_err();
    assert!(
        e.to_string().contains("--resume verifies the checkpoint"),
        "{e}"
    );

    // Checkpoints every N steps, but nothing to encrypt them to.
    let fresh = tmp.path().join("fresh");
    let mut o = options(config.clone(), fresh.clone());
    o.checkpoints.every = Some(2);
    let e = run(o, &mut Recorder::default()).unwrap_err();
    assert!(e.to_string().contains("checkpoints are encrypted"), "{e}");
    assert!(!fresh.exists(), "nothing written");

    // A package model without a trust policy.
    let package_spec = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("symbol") && !l.starts_with("params"))
        .map(|l| {
            if l == "[model]" {
                "[model]\npackage = \"somewhere\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let package_config = tmp.path().join("package.toml");
    std::fs::write(&package_config, package_spec).unwrap();
    let e = run(
        options(package_config, fresh.clone()),
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no trust policy"), "{e}");
    assert!(!e.is_refusal());
    assert!(!fresh.exists(), "nothing written");
}
