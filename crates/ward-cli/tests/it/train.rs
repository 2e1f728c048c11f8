//! `ward train`: a spec in, metrics and a signed package out, the seed recorded and
//! repeatable; a bad spec refused in one line naming the key.

use std::path::Path;

use crate::support::{fixture, repo_root, stderr, ward};

/// A spec training the Module LeNet fixture on the bundled MNIST digits.
fn spec(dir: &Path, extra_run: &str) -> std::path::PathBuf {
    let model = fixture("lenet_module");
    let mnist = repo_root().join("tests/fixtures/mnist");
    let text = format!(
        r#"
[model]
symbol = "{symbol}"
params = "{params}"
name = "lenet"

[data]
format = "mnist"
train_images = "{mnist}/train-images-idx3-ubyte.gz"
train_labels = "{mnist}/train-labels-idx1-ubyte.gz"
val_images = "{mnist}/t10k-images-idx3-ubyte.gz"
val_labels = "{mnist}/t10k-labels-idx1-ubyte.gz"
batch_size = 64

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
        symbol = model.join("model-symbol.json").display(),
        params = model.join("model-0000.params").display(),
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
