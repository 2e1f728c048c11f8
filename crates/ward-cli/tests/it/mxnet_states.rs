//! MXNet's optimizer states into ward: a Module checkpoint with its `.states` (SGD
//! momentum, Adam; keyed by index, or by name as a kvstore saves them) and Gluon
//! `Trainer.save_states` files (with their optimizer, its update counts and a schedule)
//! continue in `ward train` with the next-step weights MXNet 1.9.1 computes when it
//! resumes from the same files (`tests/fixtures/mxnet-states`,
//! tools/make_states_fixtures.py); and a ward checkpoint goes back to MXNet's files.

use std::path::Path;

use serde_json::Value;

use crate::support::{repo_root, stderr, ward};

fn fixture(case: &str) -> std::path::PathBuf {
    repo_root().join("tests/fixtures/mxnet-states").join(case)
}

fn npy(path: &Path, shape: Vec<usize>, values: &[f32]) {
    let t = ward_core::Tensor::from_f32(shape, values).unwrap();
    std::fs::write(path, ward_core::npy::write_npy(&t)).unwrap();
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Writes the spec continuing `case` from its MXNet files for one step on its next
/// batch; returns (spec, next.json).
fn spec(case: &str, dir: &Path) -> (std::path::PathBuf, Value) {
    let fx = fixture(case);
    let next: Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("next.json")).unwrap()).unwrap();
    let shape: Vec<usize> = next["data"]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    npy(&dir.join("x.npy"), shape, &floats(&next["data"]["values"]));
    let labels = floats(&next["label"]);
    npy(&dir.join("y.npy"), vec![labels.len()], &labels);
    let batch = next["batch_size"].as_u64().unwrap();
    let mut optimizer = format!("name = \"{}\"\n", next["optimizer"].as_str().unwrap());
    for (k, v) in next["optimizer_params"].as_object().unwrap() {
        optimizer += &format!("{k} = {v}\n");
    }
    // Module and Gluon's Trainer both scale by 1 / batch.
    optimizer += &format!("rescale_grad = {}\n", 1.0 / batch as f64);
    let gluon = next["api"] == "gluon";
    let extra = if gluon {
        "[loss]\nname = \"softmax_cross_entropy\"\n"
    } else {
        ""
    };
    let schedule = if case == "gluon_adam" {
        // As the fixture's FactorScheduler(step=2, factor=0.5, base_lr=0.01, warmup_steps=1).
        "[schedule]\nname = \"factor\"\nstep = 2\nfactor = 0.5\nwarmup_steps = 1\n"
    } else {
        ""
    };
    let text = format!(
        r#"
[model]
symbol = "{fx}/model-symbol.json"
params = "{fx}/model-0001.params"
states = "{fx}/model-0001.states"

[data]
batch_size = {batch}
shuffle = false
threads = 0

[data.train]
format = "npy"
data = "x.npy"
labels = "y.npy"

[optimizer]
{optimizer}
{schedule}
{extra}
[run]
epochs = 1
seed = "1"
threads = 1
multipliers = "{multipliers}"
"#,
        fx = fx.display(),
        multipliers = if gluon { "gluon" } else { "module" },
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    (path, next)
}

/// The weights after `ward train`'s one step against MXNet's, within 1e-5.
fn assert_next_step(case: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (config, next) = spec(case, tmp.path());
    let run = tmp.path().join("run");
    let o = ward(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    let log = stderr(&o);
    assert!(o.status.success(), "{case}: {log}");
    assert!(log.contains("optimizer state: "), "{log}");
    let bytes = std::fs::read(run.join("package/weights.safetensors")).unwrap();
    let weights = ward_package::read_weights(&bytes).unwrap();
    let mut compared = 0;
    for (name, expected) in next["weights_after"].as_object().unwrap() {
        let expected: Vec<f32> = expected["bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| f32::from_bits(b.as_u64().unwrap() as u32))
            .collect();
        let (_, got) = weights
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{case}: no weight {name}"));
        let got = got.to_f32_vec();
        assert_eq!(got.len(), expected.len(), "{case} {name}");
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(g, e)| (g - e).abs() / e.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{case} {name}: off by {worst}");
        compared += 1;
    }
    assert_eq!(compared, 4, "{case}");
}

#[test]
fn a_module_checkpoint_with_sgd_momentum_continues_with_mxnets_next_step() {
    assert_next_step("module_sgd");
}

#[test]
fn a_module_checkpoint_with_adam_continues_with_mxnets_next_step() {
    assert_next_step("module_adam");
}

#[test]
fn a_kvstore_checkpoint_keyed_by_name_continues_with_mxnets_next_step() {
    assert_next_step("module_kvstore");
}

#[test]
fn gluon_trainer_states_continue_with_mxnets_next_step() {
    assert_next_step("gluon_sgd");
    assert_next_step("gluon_adam");
}

#[test]
fn states_of_another_optimizer_or_a_hostile_pickle_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = spec("module_sgd", tmp.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let refused = |text: String, needle: &str| {
        std::fs::write(&config, &text).unwrap();
        let run = tmp.path().join("run");
        let o = ward(&[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ]);
        let log = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{log}");
        assert!(log.contains(needle), "{log} (wanted {needle:?})");
        assert!(!run.exists(), "nothing written");
    };
    // Adam keeps two tensors per weight; the file holds SGD's one.
    refused(
        text.replace("name = \"sgd\"", "name = \"adam\"")
            .replace("momentum = 0.9\n", ""),
        "1 arrays, adam keeps",
    );
    // Another model's states (Gluon's conv net, Adam): the keys fit, the shapes do not.
    let gluon = fixture("gluon_adam").join("model-0001.states");
    let states_line = text.lines().find(|l| l.starts_with("states =")).unwrap();
    refused(
        text.replace(states_line, &format!("states = \"{}\"", gluon.display()))
            .replace("name = \"sgd\"", "name = \"adam\"")
            .replace("momentum = 0.9\n", ""),
        "the parameter is f32",
    );
    // Gluon's file names its optimizer: SGD's states under a spec declaring Adam.
    let gluon_sgd = fixture("gluon_sgd").join("model-0001.states");
    refused(
        text.replace(
            states_line,
            &format!("states = \"{}\"", gluon_sgd.display()),
        )
        .replace("name = \"sgd\"", "name = \"adam\"")
        .replace("momentum = 0.9\n", ""),
        "the file's optimizer is SGD, the spec declares adam",
    );
    // A pickle that would run a command is refused by name; nothing runs.
    let hostile = repo_root().join("tests/fixtures/mxnet-states/hostile");
    let os_system = std::fs::read_dir(&hostile)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("os_system"))
        .expect("the hostile corpus has an os.system payload");
    refused(
        text.replace(
            states_line,
            &format!("states = \"{}\"", os_system.display()),
        ),
        "system",
    );
}

/// Runs `ward train` on `config` into `run` with `extra` flags; returns the package's
/// weights.
fn train(config: &Path, run: &Path, extra: &[&str]) -> Vec<(String, ward_core::Tensor)> {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = ward(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    ward_package::read_weights(&std::fs::read(run.join("package/weights.safetensors")).unwrap())
        .unwrap()
}

#[test]
fn a_ward_checkpoint_exported_as_an_mxnet_module_checkpoint_continues_where_ward_would() {
    use age::secrecy::ExposeSecret;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (config, _) = spec("module_sgd", dir);
    let identity = age::x25519::Identity::generate();
    let key_file = dir.join("key.txt");
    std::fs::write(
        &key_file,
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = ward(&["keygen", "--out", dir.join("signer").to_str().unwrap()]);
    assert!(o.status.success());
    let recipient = identity.to_public().to_string();
    let sign_key = dir.join("signer/ward.key");

    // One step from MXNet's files, checkpointed.
    let one = dir.join("one");
    let after_one = train(
        &config,
        &one,
        &[
            "--recipient",
            &recipient,
            "--sign-key",
            sign_key.to_str().unwrap(),
        ],
    );
    let checkpoint = one.join("checkpoints/step-000000000001");
    let prefix = dir.join("mx/model");
    let symbol = fixture("module_sgd").join("model-symbol.json");
    let o = ward(&[
        "checkpoint",
        "export-mxnet",
        checkpoint.to_str().unwrap(),
        "--trust",
        dir.join("signer/ward.pub").to_str().unwrap(),
        "--identity",
        key_file.to_str().unwrap(),
        "--symbol",
        symbol.to_str().unwrap(),
        "--out",
        prefix.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let params = std::fs::read(dir.join("mx/model-0001.params")).unwrap();
    let exported = ward_mxnet::params::read_params(&params, &Default::default())
        .unwrap()
        .into_named()
        .unwrap();
    assert_eq!(exported.len(), after_one.len());
    for (name, tensor) in &after_one {
        let (_, array) = exported
            .iter()
            .find(|(n, _)| n == &format!("arg:{name}"))
            .unwrap();
        let dense = array.value.as_ref().unwrap().to_dense().unwrap();
        assert_eq!(dense.bytes(), tensor.bytes(), "{name}");
    }
    let states = std::fs::read(dir.join("mx/model-0001.states")).unwrap();
    let read = ward_mxnet::states::read_optimizer_states(&states, &Default::default()).unwrap();
    assert_eq!(read.states.len(), 4);
    assert!(read.optimizer.is_none(), "the Module form");
    // Existing files are never replaced.
    let again = ward(&[
        "checkpoint",
        "export-mxnet",
        checkpoint.to_str().unwrap(),
        "--trust",
        dir.join("signer/ward.pub").to_str().unwrap(),
        "--identity",
        key_file.to_str().unwrap(),
        "--symbol",
        symbol.to_str().unwrap(),
        "--out",
        prefix.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        std::fs::read(dir.join("mx/model-0001.states")).unwrap(),
        states
    );

    // The exported Module checkpoint continued for one more step equals two steps in one
    // run (SGD's momentum carries across; it keeps no update count).
    let text = std::fs::read_to_string(&config).unwrap();
    let fx = fixture("module_sgd");
    let from_export = text
        .replace(
            &format!("{}/model-symbol.json", fx.display()),
            &format!("{}-symbol.json", prefix.display()),
        )
        .replace(
            &format!("{}/model-0001.params", fx.display()),
            &format!("{}-0001.params", prefix.display()),
        )
        .replace(
            &format!("{}/model-0001.states", fx.display()),
            &format!("{}-0001.states", prefix.display()),
        );
    let continued_config = dir.join("continued.toml");
    std::fs::write(&continued_config, from_export).unwrap();
    let continued = train(&continued_config, &dir.join("continued"), &[]);
    let two_config = dir.join("two.toml");
    std::fs::write(&two_config, text.replace("epochs = 1", "epochs = 2")).unwrap();
    let two = train(&two_config, &dir.join("two"), &[]);
    assert_eq!(continued, two);
}
