//! `ward train`: a spec in, metrics and a signed package out, the seed recorded and
//! repeatable; a bad spec refused in one line naming the key.

use std::path::Path;

use crate::support::{fixture, repo_root, stderr, ward};

/// A spec training the Module LeNet fixture on the bundled MNIST digits.
fn spec(dir: &Path, extra_run: &str) -> std::path::PathBuf {
    let model = fixture("lenet_module");
    let lines = format!(
        "symbol = \"{}\"\nparams = \"{}\"\nname = \"lenet\"",
        model.join("model-symbol.json").display(),
        model.join("model-0000.params").display()
    );
    spec_of(dir, &lines, extra_run)
}

/// A spec training the model `model_lines` describe on the bundled MNIST digits.
fn spec_of(dir: &Path, model_lines: &str, extra_run: &str) -> std::path::PathBuf {
    let mnist = repo_root().join("tests/fixtures/mnist");
    let text = format!(
        r#"
[model]
{model_lines}

[data]
batch_size = 64

[data.train]
format = "mnist"
images = "{mnist}/train-images-idx3-ubyte.gz"
labels = "{mnist}/train-labels-idx1-ubyte.gz"

[data.val]
format = "recordio"
rec = "{mnist}/t10k.rec"
idx = "{mnist}/t10k.idx"
data_shape = [1, 28, 28]
scale = 0.00392156862745098

[optimizer]
name = "sgd"
learning_rate = 0.1
momentum = 0.9
wd = 0.0001
rescale_grad = 0.015625

[run]
epochs = 1
log_every = 20
{extra_run}
"#,
        mnist = mnist.display(),
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn trains_signs_and_repeats_with_the_same_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let o = ward(&["keygen", "--out", keys.to_str().unwrap(), "--name", "k"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = spec(tmp.path(), "seed = \"7\"");
    let run = |name: &str| {
        let out = tmp.path().join(name);
        let o = ward(&[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--sign-key",
            keys.join("k.key").to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (out, stderr(&o))
    };
    let (a, log) = run("a");
    assert!(log.contains("seed: 0700000000"), "{log}");
    assert!(log.contains("epoch 0: loss"), "{log}");
    let metrics = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The seed, three logging steps (63 steps of 64), the epoch.
    assert_eq!(lines.len(), 5, "{metrics}");
    assert!(lines[0]["seed"].as_str().unwrap().starts_with("07"));
    let last = &lines[4];
    assert!(last["val_accuracy"].as_f64().unwrap() > 0.5, "{last}");
    assert!(lines[1]["loss"].as_f64().unwrap() > lines[3]["loss"].as_f64().unwrap());

    // The package verifies against the key and predicts.
    let pkg = a.join("package");
    let o = ward(&[
        "verify",
        pkg.to_str().unwrap(),
        "--trust",
        keys.join("k.pub").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pred = tmp.path().join("pred");
    let o = ward(&[
        "predict",
        pkg.to_str().unwrap(),
        "--trust",
        keys.join("k.pub").to_str().unwrap(),
        "--input",
        &format!(
            "data={}",
            fixture("lenet_module").join("input-data.npy").display()
        ),
        "--out",
        pred.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // `ward eval` measures the served package on the spec's validation data: the same
    // accuracy the run measured on its own engine (the backends round differently, so a
    // digit on the edge may flip).
    let o = ward(&[
        "eval",
        pkg.to_str().unwrap(),
        "--trust",
        keys.join("k.pub").to_str().unwrap(),
        "--data",
        config.to_str().unwrap(),
        "--json",
        "--metric",
        "top_k_accuracy=3",
        "--metric",
        "perplexity",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(eval["examples"], 1000, "{eval}");
    let top3 = eval["top_k_accuracy_3"].as_f64().unwrap();
    assert!(
        top3 >= eval["accuracy"].as_f64().unwrap() && top3 <= 1.0,
        "{eval}"
    );
    // Perplexity is exp(cross-entropy), both over the same examples.
    let ppl = eval["perplexity"].as_f64().unwrap();
    let ce = eval["cross_entropy"].as_f64().unwrap();
    assert!((ppl.ln() - ce).abs() < 1e-3, "{eval}");
    let (served, trained) = (
        eval["accuracy"].as_f64().unwrap(),
        last["val_accuracy"].as_f64().unwrap(),
    );
    assert!((served - trained).abs() <= 0.003, "{served} vs {trained}");

    // The same seed trains the same bits.
    let (b, _) = run("b");
    let weights = |d: &Path| std::fs::read(d.join("package/weights.safetensors")).unwrap();
    assert_eq!(weights(&a), weights(&b));
}

#[test]
fn a_bad_spec_is_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for (extra, needle) in [
        ("learning_rat = 0.1", "learning_rat"),
        ("threads = 0", "run.threads"),
    ] {
        let config = spec(tmp.path(), extra);
        let o = ward(&[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{extra}");
        let err = stderr(&o);
        assert!(err.contains(needle), "{extra}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            !out.exists(),
            "{extra}: a refused run wrote {}",
            out.display()
        );
    }
}

/// Writes `values` as a float32 `.npy` of `shape`.
fn npy(path: &Path, shape: &[usize], values: &[f32]) {
    let t = ward_core::Tensor::from_f32(shape.to_vec(), values).unwrap();
    std::fs::write(path, ward_core::npy::write_npy(&t)).unwrap();
}

#[test]
fn trains_the_classic_lenet_from_its_symbol_alone_with_a_declared_initializer() {
    let tmp = tempfile::tempdir().unwrap();
    let mnist = repo_root().join("tests/fixtures/mnist");
    let symbol = repo_root().join("tests/fixtures/models/lenet_classic/model-symbol.json");
    let text = format!(
        r#"
[model]
symbol = "{symbol}"

[init]
name = "xavier"
rnd_type = "gaussian"
factor_type = "in"
magnitude = 2.0

[data]
batch_size = 64

[data.train]
format = "recordio"
rec = "{mnist}/train.rec"
idx = "{mnist}/train.idx"
data_shape = [1, 28, 28]
scale = 0.00392156862745098

[data.val]
format = "mnist"
images = "{mnist}/t10k-images-idx3-ubyte.gz"
labels = "{mnist}/t10k-labels-idx1-ubyte.gz"

[optimizer]
name = "sgd"
learning_rate = 0.05
momentum = 0.9
wd = 0.0001
rescale_grad = 0.015625

[run]
epochs = 1
seed = "3"
metrics = [{{ name = "top_k_accuracy", top_k = 2 }}]
"#,
        symbol = symbol.display(),
        mnist = mnist.display(),
    );
    let config = tmp.path().join("train.toml");
    std::fs::write(&config, &text).unwrap();
    let out = tmp.path().join("run");
    let o = ward(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("initialised 8 parameters with xavier: conv1_weight, conv1_bias"),
        "{log}"
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert!(last["val_accuracy"].as_f64().unwrap() > 0.85, "{last}");
    let top2 = last["val_top_k_accuracy_2"].as_f64().unwrap();
    assert!(top2 >= last["val_accuracy"].as_f64().unwrap(), "{last}");
    assert!(log.contains("top_k_accuracy_2 0."), "{log}");
}

#[test]
fn labels_outside_the_classes_and_a_spec_without_weights_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("lenet_module");
    npy(&tmp.path().join("x.npy"), &[4, 1, 28, 28], &[0.5; 4 * 784]);
    npy(&tmp.path().join("y.npy"), &[4], &[1.0, 2.0, 12.0, 3.0]);
    let write = |model_lines: &str| {
        let text = format!(
            r#"
[model]
symbol = "{symbol}"
{model_lines}

[data]
batch_size = 4
shuffle = false
train = {{ format = "npy", data = "x.npy", labels = "y.npy" }}

[optimizer]
name = "sgd"
learning_rate = 0.1

[run]
epochs = 1
"#,
            symbol = model.join("model-symbol.json").display(),
        );
        let config = tmp.path().join("train.toml");
        std::fs::write(&config, text).unwrap();
        config
    };
    let run = |config: &Path, out: &str| {
        ward(&[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            tmp.path().join(out).to_str().unwrap(),
        ])
    };
    let params = format!("params = \"{}\"", model.join("model-0000.params").display());
    let o = run(&write(&params), "a");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("label 12 of example 2") && err.contains("0..10"),
        "{err}"
    );
    // Nothing trained: no package.
    assert!(!tmp.path().join("a/package").exists());

    let o = run(&write(""), "b");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("no params file and no [init]"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A Gluon export has no head: the spec's `[loss]` trains it, the package written is the
/// network alone (its output the logits), and `ward eval --softmax` measures the package
/// as the run measured its validation data.
#[test]
fn trains_a_gluon_export_with_a_declared_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("lenet_gluon");
    let mnist = repo_root().join("tests/fixtures/mnist");
    let text = format!(
        r#"
[model]
symbol = "{symbol}"
params = "{params}"

[loss]
name = "softmax_cross_entropy"

[data]
batch_size = 64

[data.train]
format = "mnist"
images = "{mnist}/train-images-idx3-ubyte.gz"
labels = "{mnist}/train-labels-idx1-ubyte.gz"

[data.val]
format = "mnist"
images = "{mnist}/t10k-images-idx3-ubyte.gz"
labels = "{mnist}/t10k-labels-idx1-ubyte.gz"

[optimizer]
name = "sgd"
learning_rate = 0.05
momentum = 0.9
rescale_grad = 0.015625

[run]
epochs = 1
seed = "5"
multipliers = "gluon"
metrics = [{{ name = "cross_entropy" }}]
"#,
        symbol = model.join("model-symbol.json").display(),
        params = model.join("model-0000.params").display(),
        mnist = mnist.display(),
    );
    let config = tmp.path().join("train.toml");
    std::fs::write(&config, &text).unwrap();
    let out = tmp.path().join("run");
    let o = ward(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    let accuracy = last["val_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.85, "{last}");
    // MXNet's cross_entropy metric over the probabilities is the loss's own mean.
    let ce = last["val_cross_entropy"].as_f64().unwrap();
    assert!(
        (ce - last["val_loss"].as_f64().unwrap()).abs() < 1e-4,
        "{last}"
    );

    let package = out.join("package");
    let eval = |softmax: bool| {
        let mut args = vec![
            "eval",
            package.to_str().unwrap(),
            "--allow-unsigned",
            "--data",
            config.to_str().unwrap(),
            "--json",
        ];
        if softmax {
            args.push("--softmax");
        }
        let o = ward(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v
    };
    let measured = eval(true);
    assert_eq!(measured["examples"], 1000);
    assert!(
        (measured["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-9,
        "{measured} vs {last}"
    );
    assert!((measured["cross_entropy"].as_f64().unwrap() - ce).abs() < 1e-4);
    // Without --softmax the logits are not probabilities: the accuracy (an argmax) is
    // the same, the cross-entropy is not.
    let raw = eval(false);
    assert_eq!(raw["accuracy"], measured["accuracy"]);
    assert_ne!(raw["cross_entropy"], measured["cross_entropy"]);
}

/// A package is a model source: `ward train` verifies it under `--trust` before reading
/// its graph and weights, refuses it unsigned, untrusted or altered (writing nothing),
/// and continues training from its weights into a new package with its input schema.
#[test]
fn fine_tunes_a_package_verified_before_it_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    for name in ["k", "other"] {
        let o = ward(&["keygen", "--out", keys.to_str().unwrap(), "--name", name]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let first_dir = tmp.path().join("first");
    std::fs::create_dir(&first_dir).unwrap();
    let config = spec(&first_dir, "seed = \"2\"");
    let a = tmp.path().join("a");
    let key = keys.join("k.key");
    let o = ward(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        a.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let second_dir = tmp.path().join("second");
    std::fs::create_dir(&second_dir).unwrap();
    let package = a.join("package");
    let config = spec_of(
        &second_dir,
        &format!("package = \"{}\"", package.display()),
        "seed = \"3\"",
    );
    let run = |out: &str, extra: &[&str]| {
        let out = tmp.path().join(out);
        let mut args = vec![
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        (ward(&args), out)
    };
    let pubkey = |name: &str| keys.join(format!("{name}.pub")).display().to_string();

    // Refused: no trust policy, a key that did not sign it.
    let (o, out) = run("x", &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no trust policy"), "{}", stderr(&o));
    assert!(!out.exists(), "a refused run writes nothing");
    let (o, out) = run("x", &["--trust", &pubkey("other")]);
    assert!(!o.status.success());
    assert!(!out.exists());

    // Fine-tuned: verified first, starting from the trained weights.
    let (o, b) = run(
        "b",
        &["--trust", &pubkey("k"), "--sign-key", key.to_str().unwrap()],
    );
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("verified, signed by"), "{log}");
    let lines = |d: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (first, second) = (lines(&a), lines(&b));
    let loss = |l: &[serde_json::Value]| l[1]["loss"].as_f64().unwrap();
    assert!(
        loss(&second) < loss(&first) / 2.0,
        "the first logged loss from the package's weights ({}) is far below a fresh run's ({})",
        loss(&second),
        loss(&first)
    );
    let accuracy = |l: &[serde_json::Value]| l.last().unwrap()["val_accuracy"].as_f64().unwrap();
    assert!(accuracy(&second) > 0.8, "{:?}", second.last());
    let manifest = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("package/ward.json")).unwrap()).unwrap()
    };
    assert_eq!(manifest(&a)["inputs"], manifest(&b)["inputs"]);
    assert_eq!(manifest(&a)["name"], manifest(&b)["name"]);
    let weights = |d: &Path| std::fs::read(d.join("package/weights.safetensors")).unwrap();
    assert_ne!(weights(&a), weights(&b));

    // An altered package is refused before it is parsed.
    let bytes = weights(&a);
    let mut altered = bytes.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    std::fs::write(package.join("weights.safetensors"), &altered).unwrap();
    let (o, out) = run("y", &["--trust", &pubkey("k")]);
    assert!(!o.status.success(), "an altered package trained");
    assert!(!out.exists());
    std::fs::write(package.join("weights.safetensors"), &bytes).unwrap();

    // --trust belongs to a package model.
    let mxnet = spec(&first_dir, "seed = \"2\"");
    let o = ward(&[
        "train",
        "--config",
        mxnet.to_str().unwrap(),
        "--out",
        tmp.path().join("z").to_str().unwrap(),
        "--trust",
        &pubkey("k"),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("apply to a package model"),
        "{}",
        stderr(&o)
    );
}
