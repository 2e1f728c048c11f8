//! `ward train`'s checkpoints end to end: a run killed with SIGKILL at random moments and
//! resumed ends bit for bit where an uninterrupted run ends; every damaged, swapped,
//! untrusted or undecryptable checkpoint is refused in one line (exit 3) and deletes
//! nothing, and the previous checkpoint still resumes; a full disk stops the run cleanly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;

use crate::support::{fixture, repo_root, stderr, ward};

/// The run's keys: an age identity (and its recipient), a signing key pair.
pub struct Keys {
    pub identity: PathBuf,
    pub recipient: String,
    pub sign_key: PathBuf,
    pub trust: PathBuf,
}

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn keys(dir: &Path, name: &str) -> Keys {
    let identity = age::x25519::Identity::generate();
    let path = dir.join(format!("{name}-age.txt"));
    private(
        &path,
        &format!("{}\n", identity.to_string().expose_secret()),
    );
    let signer = dir.join(format!("{name}-signer"));
    let o = ward(&["keygen", "--out", signer.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    Keys {
        identity: path,
        recipient: identity.to_public().to_string(),
        sign_key: signer.join("ward.key"),
        trust: signer.join("ward.pub"),
    }
}

/// A spec training the Module LeNet on the bundled MNIST digits for one epoch of 63
/// steps, on one thread.
fn lenet_spec(dir: &Path, seed: u64) -> PathBuf {
    let model = fixture("lenet_module");
    let mnist = repo_root().join("tests/fixtures/mnist");
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
momentum = 0.9
wd = 0.0001
rescale_grad = 0.015625

[run]
epochs = 1
log_every = 10
seed = "{seed}"
threads = 1
"#,
        model = model.display(),
        mnist = mnist.display(),
    );
    let path = dir.join(format!("lenet-{seed}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A spec training the narrow ResNet-18 of the trajectory fixtures (BatchNorm running
/// statistics, Adam) on its 16 examples, batch 8, for 10 epochs: 20 steps.
fn resnet_spec(dir: &Path) -> PathBuf {
    let fx = repo_root().join("tests/fixtures/trajectories/resnet18_v1_narrow");
    let read =
        |name: &str| ward_core::npy::read_npy(&std::fs::read(fx.join(name)).unwrap()).unwrap();
    let join = |a: &str, b: &str, shape: Vec<usize>| {
        let mut values = read(a).to_f32_vec();
        values.extend(read(b).to_f32_vec());
        ward_core::Tensor::from_f32(shape, &values).unwrap()
    };
    let data = join("data-0.npy", "data-1.npy", vec![16, 3, 16, 16]);
    let labels = join("label-0.npy", "label-1.npy", vec![16]);
    std::fs::write(dir.join("x.npy"), ward_core::npy::write_npy(&data)).unwrap();
    std::fs::write(dir.join("y.npy"), ward_core::npy::write_npy(&labels)).unwrap();
    let text = format!(
        r#"
[model]
symbol = "{fx}/model-symbol.json"
params = "{fx}/model-0000.params"
name = "resnet"

[data]
batch_size = 8

[data.train]
format = "npy"
data = "x.npy"
labels = "y.npy"

[optimizer]
name = "adam"
learning_rate = 0.001

[run]
epochs = 10
log_every = 4
seed = "11"
threads = 1
"#,
        fx = fx.display(),
    );
    let path = dir.join("resnet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `ward train` with checkpoints encrypted to `keys` and signed by it: a new run in
/// `run`, or (`resume`) the run in `run` continued.
fn train_args(config: &Path, run: &Path, keys: &Keys, resume: bool, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "train".into(),
        "--config".into(),
        config.display().to_string(),
        "--sign-key".into(),
        keys.sign_key.display().to_string(),
        "--recipient".into(),
        keys.recipient.clone(),
    ];
    if resume {
        args.extend([
            "--resume".into(),
            run.display().to_string(),
            "--trust".into(),
            keys.trust.display().to_string(),
            "--identity".into(),
            keys.identity.display().to_string(),
        ]);
    } else {
        args.extend(["--out".into(), run.display().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_ward(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ward(&args)
}

/// The newest checkpoint of `run`.
fn newest(run: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    found.sort();
    found.pop().expect("a checkpoint")
}

fn checkpoint_names(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The decrypted state of a verified checkpoint: weights, optimizer state and position,
/// as bytes (the same state gives the same bytes).
fn state_bytes(checkpoint: &Path, keys: &Keys) -> Vec<u8> {
    let trust = ward_package::Trust::Policy(ward_package::TrustPolicy::load(&keys.trust).unwrap());
    let unsealing =
        ward_train::checkpoint::Unsealing::identity_files(&[keys.identity.as_path()]).unwrap();
    let opened = ward_train::checkpoint::open_checkpoint(checkpoint, &trust, &unsealing).unwrap();
    let params: Vec<_> = opened
        .state
        .params
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.weight.clone(),
                p.update_count,
                p.tensors.clone(),
            )
        })
        .collect();
    format!("{:?}{params:?}", opened.state.info.optimizer).into_bytes()
}

/// Kills the run at `kills` random moments (SIGKILL), resuming each time, then lets it
/// finish; returns how many kills found an unfinished checkpoint write to clean up.
fn train_with_kills(
    config: &Path,
    run: &Path,
    keys: &Keys,
    extra: &[&str],
    span: Duration,
    kills: usize,
    seed: u64,
) -> usize {
    let mut state = seed;
    // Kill moments are fractions of `scale`; halved when a run outpaces them (a machine
    // less busy than when the whole run was timed), so that the kills still happen.
    let mut scale = 1.0f64;
    let mut next_delay = |scale: f64| {
        // xorshift: the test's own kill moments, the same on every run.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        span.mul_f64(scale * (state % 1000) as f64 / 1000.0)
    };
    let mut killed = 0;
    let mut cleaned = 0;
    loop {
        let complete = run.join("checkpoints").is_dir()
            && std::fs::read_dir(run.join("checkpoints"))
                .unwrap()
                .any(|e| {
                    e.unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("step-")
                });
        if !complete && run.exists() {
            // Killed before its first checkpoint: nothing to resume; start again.
            std::fs::remove_dir_all(run).unwrap();
        }
        let args = train_args(config, run, keys, complete, extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if killed < kills {
            let deadline = Instant::now() + next_delay(scale);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                let o = child.wait_with_output().unwrap();
                cleaned += stderr(&o).matches("did not finish").count();
                if run.join("package").exists() {
                    // The kill fell after the run had written its package, while the
                    // process was exiting: the run had finished, as below; this kill
                    // interrupted nothing and does not count.
                    std::fs::remove_dir_all(run).unwrap();
                    scale /= 2.0;
                    continue;
                }
                killed += 1;
                continue;
            }
        }
        let o = child.wait_with_output().unwrap();
        let log = stderr(&o);
        cleaned += log.matches("did not finish").count();
        assert!(o.status.success(), "after {killed} kills: {log}");
        if killed < kills {
            // Finished before every kill fell: the run starts again from nothing, with
            // shorter delays; the kills so far count.
            std::fs::remove_dir_all(run).unwrap();
            scale /= 2.0;
            continue;
        }
        assert!(
            killed >= kills,
            "the run finished after only {killed} kills"
        );
        return cleaned;
    }
}

fn kill_and_resume_matches_an_uninterrupted_run(
    config: &Path,
    tmp: &Path,
    keys: &Keys,
    extra: &[&str],
    seed: u64,
) {
    let whole = tmp.join("whole");
    let started = Instant::now();
    let o = run_ward(&train_args(config, &whole, keys, false, extra));
    let span = started.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));

    let killed = tmp.join("killed");
    // Kill moments spread over a fifteenth of a whole run each: with every restart's
    // start-up cost, 20 kills fall all over the run, checkpoint writes included.
    let cleaned = train_with_kills(
        config,
        &killed,
        keys,
        extra,
        span / 15 + Duration::from_millis(40),
        20,
        seed,
    );
    eprintln!(
        "{}: 20 kills, {cleaned} unfinished checkpoint writes cleaned up",
        config.display()
    );

    assert_eq!(
        state_bytes(&newest(&killed), keys),
        state_bytes(&newest(&whole), keys),
        "final weights and optimizer state"
    );
    assert_eq!(
        std::fs::read(killed.join("package/weights.safetensors")).unwrap(),
        std::fs::read(whole.join("package/weights.safetensors")).unwrap()
    );
}

#[test]
fn lenet_killed_twenty_times_and_resumed_ends_bit_for_bit_where_an_uninterrupted_run_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys(tmp.path(), "run");
    let config = lenet_spec(tmp.path(), 5);
    kill_and_resume_matches_an_uninterrupted_run(
        &config,
        tmp.path(),
        &keys,
        &["--checkpoint-every", "1"],
        0x9e37_79b9,
    );
}

#[test]
fn resnet_killed_twenty_times_and_resumed_ends_bit_for_bit_where_an_uninterrupted_run_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys(tmp.path(), "run");
    let config = resnet_spec(tmp.path());
    kill_and_resume_matches_an_uninterrupted_run(
        &config,
        tmp.path(),
        &keys,
        &["--checkpoint-every", "1"],
        0x85eb_ca6b,
    );
}

/// Runs `args`; asserts exit 3 and a `refused:` line naming `reason`.
fn refused(args: &[String], reason: &str) {
    let o = run_ward(args);
    let log = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with("refused: "))
        .unwrap_or_else(|| panic!("no refused: line in {log}"));
    assert!(line.contains(reason), "{line} (wanted {reason:?})");
}

#[test]
fn damaged_swapped_untrusted_or_undecryptable_checkpoints_are_refused_and_the_previous_one_resumes()
{
    let tmp = tempfile::tempdir().unwrap();
    let keys_a = keys(tmp.path(), "a");
    let config = lenet_spec(tmp.path(), 5);
    let every = ["--checkpoint-every", "20"];
    let whole = tmp.path().join("whole");
    let o = run_ward(&train_args(&config, &whole, &keys_a, false, &every));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        checkpoint_names(&whole),
        [
            "step-000000000020",
            "step-000000000040",
            "step-000000000060",
            "step-000000000063"
        ][1..]
    );
    let expected = state_bytes(&newest(&whole), &keys_a);

    // A run stopped after its step-60 checkpoint: the run directory without the end.
    let stopped = |name: &str| {
        let run = tmp.path().join(name);
        let o = Command::new("cp")
            .args(["-a", whole.to_str().unwrap(), run.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success());
        std::fs::remove_dir_all(run.join("package")).unwrap();
        std::fs::remove_dir_all(run.join("checkpoints/step-000000000063")).unwrap();
        run
    };
    let resume =
        |run: &Path, keys: &Keys, extra: &[&str]| train_args(&config, run, keys, true, extra);

    // Another signer, another identity: refused before anything is decrypted or changed.
    let keys_b = keys(tmp.path(), "b");
    let run = stopped("untrusted");
    let before = checkpoint_names(&run);
    let mut untrusted = resume(&run, &keys_a, &every);
    let trust_at = untrusted.iter().position(|a| a == "--trust").unwrap();
    untrusted[trust_at + 1] = keys_b.trust.display().to_string();
    refused(&untrusted, "");
    let mut wrong_identity = resume(&run, &keys_a, &every);
    let id_at = wrong_identity
        .iter()
        .position(|a| a == "--identity")
        .unwrap();
    wrong_identity[id_at + 1] = keys_b.identity.display().to_string();
    refused(&wrong_identity, "decrypt");
    assert_eq!(checkpoint_names(&run), before, "nothing deleted");
    let o = run_ward(&resume(&run, &keys_a, &every));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(state_bytes(&newest(&run), &keys_a), expected);

    // The newest checkpoint truncated, or one bit flipped: refused; --from the one before
    // resumes, and ends where the whole run ended.
    for (name, damage) in [
        (
            "truncated",
            &(|b: &mut Vec<u8>| b.truncate(b.len() - 1)) as &dyn Fn(&mut Vec<u8>),
        ),
        ("flipped", &|b: &mut Vec<u8>| {
            let at = b.len() / 2;
            b[at] ^= 0x04;
        }),
    ] {
        let run = stopped(name);
        let state = run.join("checkpoints/step-000000000060/state.age");
        let mut bytes = std::fs::read(&state).unwrap();
        damage(&mut bytes);
        std::fs::write(&state, &bytes).unwrap();
        let before = checkpoint_names(&run);
        refused(&resume(&run, &keys_a, &every), "state.age");
        assert_eq!(checkpoint_names(&run), before, "nothing deleted");
        let o = run_ward(&resume(
            &run,
            &keys_a,
            &[&every[..], &["--from", "step-000000000040"]].concat(),
        ));
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(state_bytes(&newest(&run), &keys_a), expected, "{name}");
    }

    // A state.age from another run (another seed), encrypted to the same recipient.
    let other = tmp.path().join("other");
    let o = run_ward(&train_args(
        &lenet_spec(tmp.path(), 6),
        &other,
        &keys_a,
        false,
        &every,
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let run = stopped("swapped");
    std::fs::copy(
        other.join("checkpoints/step-000000000060/state.age"),
        run.join("checkpoints/step-000000000060/state.age"),
    )
    .unwrap();
    refused(&resume(&run, &keys_a, &every), "state.age");

    // A passphrase run resumed with another passphrase.
    let pass = tmp.path().join("pass.txt");
    private(&pass, "correct horse battery staple\n");
    let wrong = tmp.path().join("wrong.txt");
    private(&wrong, "incorrect horse\n");
    let by_pass = tmp.path().join("by-pass");
    let mut args = train_args(
        &config,
        &by_pass,
        &keys_a,
        false,
        &["--checkpoint-every", "30"],
    );
    let r = args.iter().position(|a| a == "--recipient").unwrap();
    args.splice(
        r..r + 2,
        ["--passphrase-file".to_string(), pass.display().to_string()],
    );
    let o = run_ward(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_dir_all(by_pass.join("package")).unwrap();
    let passphrase_resume = |file: &Path| {
        vec![
            "train".to_string(),
            "--config".into(),
            config.display().to_string(),
            "--resume".into(),
            by_pass.display().to_string(),
            "--trust".into(),
            keys_a.trust.display().to_string(),
            "--passphrase-file".into(),
            file.display().to_string(),
            "--sign-key".into(),
            keys_a.sign_key.display().to_string(),
        ]
    };
    refused(&passphrase_resume(&wrong), "decrypt");
    let o = run_ward(&passphrase_resume(&pass));
    assert!(o.status.success(), "{}", stderr(&o));

    // Another spec: refused unless --allow-spec-change, which is recorded.
    let run = stopped("respec");
    let changed = tmp.path().join("changed.toml");
    std::fs::write(
        &changed,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("log_every = 10", "log_every = 5"),
    )
    .unwrap();
    let mut args = train_args(&changed, &run, &keys_a, true, &every);
    let o = run_ward(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--allow-spec-change"), "{}", stderr(&o));
    args.push("--allow-spec-change".into());
    let o = run_ward(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(log.contains("\"event\":\"spec_changed\""), "{log}");
}

#[test]
fn a_full_disk_stops_the_run_with_a_clear_error_and_the_previous_checkpoint_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys(tmp.path(), "a");
    let config = lenet_spec(tmp.path(), 5);
    let every = ["--checkpoint-every", "20"];
    let whole = tmp.path().join("whole");
    let o = run_ward(&train_args(&config, &whole, &keys, false, &every));
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = state_bytes(&newest(&whole), &keys);

    let run = tmp.path().join("run");
    let o = Command::new("cp")
        .args(["-a", whole.to_str().unwrap(), run.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
    std::fs::remove_dir_all(run.join("package")).unwrap();
    for late in ["step-000000000060", "step-000000000063"] {
        std::fs::remove_dir_all(run.join("checkpoints").join(late)).unwrap();
    }
    // Files may grow to 64 KiB (a checkpoint's state is 160 KB): the next checkpoint
    // cannot be written. SIGXFSZ ignored, so the write fails as on a full disk.
    let args = train_args(&config, &run, &keys, true, &every);
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "trap '' XFSZ; ulimit -f 128; exec '{}' {}",
        env!("CARGO_BIN_EXE_ward"),
        quoted.join(" ")
    );
    let o = Command::new("sh").args(["-c", &script]).output().unwrap();
    let log = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{log}");
    assert!(
        log.contains("writing a checkpoint") && log.contains("large"),
        "{log}"
    );
    let names = checkpoint_names(&run);
    assert_eq!(
        names,
        ["step-000000000040"],
        "no partial checkpoint, nothing deleted"
    );

    let o = run_ward(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(state_bytes(&newest(&run), &keys), expected);
}

#[test]
fn checkpoint_list_verify_and_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys(tmp.path(), "a");
    let config = lenet_spec(tmp.path(), 5);
    let run = tmp.path().join("run");
    let o = run_ward(&train_args(
        &config,
        &run,
        &keys,
        false,
        &["--checkpoint-every", "30", "--keep-last", "2"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ward(&["checkpoint", "list", run.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !out.contains("step-000000000030")
            && out.contains("step-000000000060")
            && out.contains("step-000000000063"),
        "{out}"
    );

    let last = newest(&run);
    let o = ward(&[
        "checkpoint",
        "verify",
        last.to_str().unwrap(),
        "--trust",
        keys.trust.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("signed by: ward") && out.contains("position: step 63, epoch 1, batch 0"),
        "{out}"
    );
    let o = ward(&[
        "checkpoint",
        "inspect",
        last.to_str().unwrap(),
        "--trust",
        keys.trust.to_str().unwrap(),
        "--identity",
        keys.identity.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("optimizer: sgd (num_update 63)")
            && out.contains("conv1_weight [6, 1, 5, 5] updates 63 state momentum"),
        "{out}"
    );

    let other = keys_other(tmp.path());
    let o = ward(&[
        "checkpoint",
        "verify",
        last.to_str().unwrap(),
        "--trust",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

fn keys_other(dir: &Path) -> PathBuf {
    keys(dir, "other").trust
}

#[test]
fn doctor_flags_open_secrets_and_checkpoints_and_a_fresh_run_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys(tmp.path(), "a");
    let config = lenet_spec(tmp.path(), 5);
    let run = tmp.path().join("run");
    let o = run_ward(&train_args(
        &config,
        &run,
        &keys,
        false,
        &["--checkpoint-every", "30"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let doctor = || {
        let o = ward(&[
            "doctor",
            "--secret",
            keys.identity.to_str().unwrap(),
            "--checkpoints",
            run.to_str().unwrap(),
        ]);
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok, out) = doctor();
    assert!(ok, "{out}");
    assert!(
        out.contains("ok: secret file") && out.contains("entries open to their owner alone"),
        "{out}"
    );

    let state = newest(&run).join("state.age");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&keys.identity, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (ok, out) = doctor();
    assert!(!ok, "an open secret fails doctor: {out}");
    assert!(
        out.contains("fix: secret file") && out.contains("chmod 600"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "warn: checkpoint entry {} (mode 644)",
            state.display()
        )),
        "{out}"
    );
}
