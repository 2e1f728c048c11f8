//! `ward cluster`: certificates for a job; a two-worker `dist_sync` job on loopback that
//! trains exactly as one machine with twice the batch; a killed worker that stops the
//! job, named, within twice the heartbeat timeout; a job whose worker, server or
//! coordinator is killed at a random moment, resumed from its last cluster checkpoint,
//! ending with the weights of an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::checkpoint::{keys, Keys};
use crate::support::{repo_root, stderr, ward};

/// An MLP (784-64-10, ReLU, SoftmaxOutput) in MXNet's symbol format: no batch statistics
/// and no Dropout, so its gradient is a plain sum over the batch.
const MLP: &str = r#"{
  "nodes": [
    {"op": "null", "name": "data", "inputs": []},
    {"op": "null", "name": "fc1_weight", "attrs": {"num_hidden": "64"}, "inputs": []},
    {"op": "null", "name": "fc1_bias", "attrs": {"num_hidden": "64"}, "inputs": []},
    {"op": "FullyConnected", "name": "fc1", "attrs": {"num_hidden": "64"}, "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]]},
    {"op": "Activation", "name": "relu1", "attrs": {"act_type": "relu"}, "inputs": [[3, 0, 0]]},
    {"op": "null", "name": "fc2_weight", "attrs": {"num_hidden": "10"}, "inputs": []},
    {"op": "null", "name": "fc2_bias", "attrs": {"num_hidden": "10"}, "inputs": []},
    {"op": "FullyConnected", "name": "fc2", "attrs": {"num_hidden": "10"}, "inputs": [[4, 0, 0], [5, 0, 0], [6, 0, 0]]},
    {"op": "null", "name": "softmax_label", "inputs": []},
    {"op": "SoftmaxOutput", "name": "softmax", "inputs": [[7, 0, 0], [8, 0, 0]]}
  ],
  "arg_nodes": [0, 1, 2, 5, 6, 8],
  "heads": [[9, 0, 0]],
  "attrs": {"mxnet_version": ["int", 10901]}
}"#;

/// A spec training the MLP on the bundled MNIST digits with batch `batch`, for `epochs`.
fn spec(dir: &Path, batch: usize, epochs: u64) -> PathBuf {
    let mnist = repo_root().join("tests/fixtures/mnist");
    std::fs::write(dir.join("mlp-symbol.json"), MLP).unwrap();
    let text = format!(
        r#"
[model]
symbol = "mlp-symbol.json"

[init]
name = "xavier"

[data]
batch_size = {batch}

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
epochs = {epochs}
seed = "17"
threads = 1
log_every = 1000
"#,
        mnist = mnist.display()
    );
    let path = dir.join(format!("train-{batch}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The tensors of a package's `weights.safetensors`, by name.
fn weights(package: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(package.join("weights.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out: Vec<(String, Vec<f32>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(name, t)| {
            let o = t["data_offsets"].as_array().unwrap();
            let (a, b) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            let values = data[a..b]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name.clone(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn init_writes_a_certificate_per_member_keys_private_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs");
    let o = ward(&[
        "cluster",
        "init",
        "--out",
        out.to_str().unwrap(),
        "--job",
        "mnist",
        "--servers",
        "2",
        "--workers",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    use std::os::unix::fs::PermissionsExt;
    for stem in [
        "coordinator",
        "server-0",
        "server-1",
        "worker-0",
        "worker-1",
        "worker-2",
    ] {
        let key = std::fs::metadata(out.join(format!("{stem}.key"))).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600, "{stem}");
        assert!(out.join(format!("{stem}.pem")).exists());
    }
    // The CA's key is never written.
    assert!(!out.join("ca.key").exists());
    let o = ward(&[
        "cluster",
        "init",
        "--out",
        out.to_str().unwrap(),
        "--job",
        "mnist",
        "--servers",
        "1",
        "--workers",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("never overwrites"), "{}", stderr(&o));
    let o = ward(&[
        "cluster",
        "init",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
        "--job",
        "Bad/Name",
        "--servers",
        "1",
        "--workers",
        "1",
    ]);
    assert!(!o.status.success());
}

#[test]
fn two_workers_train_as_one_machine_with_twice_the_batch_on_one_or_two_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    let o = ward(&[
        "train",
        "--config",
        spec(tmp.path(), 64, 1).to_str().unwrap(),
        "--out",
        single.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = weights(&single.join("package"));
    let half = spec(tmp.path(), 32, 1);
    let mut runs = Vec::new();
    for servers in ["1", "2"] {
        let out = tmp.path().join(format!("cluster-{servers}"));
        let o = ward(&[
            "cluster",
            "run",
            "--local",
            "--servers",
            servers,
            "--workers",
            "2",
            "--config",
            half.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--allow-root",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        runs.push(weights(&out.join("run/package")));
        // Each member's metrics: every server applied the 63 steps; each pushed gradient
        // and pulled weight counted by worker.
        let metrics = std::fs::read_to_string(out.join("metrics/server-0.prom")).unwrap();
        assert!(metrics.contains("ward_dist_steps_total 63"), "{metrics}");
        assert!(
            metrics.contains("ward_dist_pushed_bytes_total{peer=\"worker/1\"}"),
            "{metrics}"
        );
        let coordinator = std::fs::read_to_string(out.join("metrics/coordinator.prom")).unwrap();
        assert!(
            coordinator.contains("ward_dist_connections_total{peer=\"worker/0\"}"),
            "{coordinator}"
        );
    }
    // Sharding changes no number: the same sums in the same order on one server or two.
    assert_eq!(runs[0], runs[1]);
    // One machine sums each batch's 64 rows in its own order, the servers two halves:
    // equal to rounding.
    assert_eq!(runs[0].len(), want.len());
    for ((name, got), (_, w)) in runs[0].iter().zip(&want) {
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = got
            .iter()
            .zip(w)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= 1e-5 * scale,
            "{name}: max difference {diff}, largest value {scale}"
        );
    }
    // The trained weights moved from the initial ones.
    assert!(o_differs(&runs[0]));
}

fn o_differs(w: &[(String, Vec<f32>)]) -> bool {
    w.iter().any(|(_, v)| v.iter().any(|x| *x != 0.0))
}

/// The pid of the process whose command line holds every one of `needles`.
fn find_process(needles: &[&str]) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if needles.iter().all(|n| cmdline.contains(n)) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_worker_stops_the_job_naming_it_within_twice_the_heartbeat_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let config = spec(tmp.path(), 32, 50);
    let out = tmp.path().join("job");
    let bin = env!("CARGO_BIN_EXE_ward");
    let child = Command::new(bin)
        .args([
            "cluster",
            "run",
            "--local",
            "--servers",
            "1",
            "--workers",
            "2",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--heartbeat-timeout",
            "2",
            "--allow-root",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let certs = out.join("certs");
    let needle = certs.join("worker-1.pem");
    let started = Instant::now();
    let pid = loop {
        if let Some(pid) = find_process(&["cluster", "worker", needle.to_str().unwrap()]) {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "worker 1 never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let it join and train a little, then kill -9.
    std::thread::sleep(Duration::from_secs(4));
    let killed = Instant::now();
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    let elapsed = killed.elapsed();
    let log = stderr(&o);
    assert!(!o.status.success(), "{log}");
    assert!(log.contains("worker/1 sent no heartbeat"), "{log}");
    // Every other member stopped by itself, naming the dead worker (none was killed by the
    // launcher).
    assert!(!log.contains("killing"), "{log}");
    assert!(
        log.matches("the job failed: worker/1").count() >= 3,
        "{log}"
    );
    eprintln!("stopped {elapsed:?} after the kill");
    assert!(elapsed < Duration::from_secs(4 + 2), "{elapsed:?}\n{log}");
}

/// `ward cluster run --local` with checkpoints every 25 steps, 2 servers and 2 workers;
/// with `resume`, continuing the job in `out`.
fn checkpointed_run(config: &Path, out: &Path, keys: &Keys, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
    c.args([
        "cluster",
        "run",
        "--local",
        "--servers",
        "2",
        "--workers",
        "2",
    ])
    .arg("--config")
    .arg(config)
    .arg("--out")
    .arg(out)
    .args(["--heartbeat-timeout", "2", "--checkpoint-every", "25"])
    .args(["--recipient", &keys.recipient])
    .arg("--sign-key")
    .arg(&keys.sign_key)
    .arg("--allow-root")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if resume {
        c.arg("--resume")
            .arg("--identity")
            .arg(&keys.identity)
            .arg("--trust")
            .arg(&keys.trust);
    }
    c
}

/// The cluster checkpoints the coordinator has written in `out`.
fn cluster_checkpoints(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("run/checkpoints"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("step-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_job_killed_at_a_random_moment_resumes_from_its_last_cluster_checkpoint_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keys(tmp.path(), "job");
    // 6 epochs of 63 global batches of 2 × 32.
    let config = spec(tmp.path(), 32, 6);
    let whole = tmp.path().join("whole");
    let o = checkpointed_run(&config, &whole, &keys, false)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let want = weights(&whole.join("run/package"));
    assert!(o_differs(&want));
    // Retention: the newest 3 cluster checkpoints (of steps 25 … 375), and only the
    // shards they record. Which steps those are depends on the machine's speed: a server
    // still writing its shard of one checkpoint skips the next (ward-dist's server), so
    // that step has no cluster checkpoint. A loaded 2-core run kept 250, 325 and 375.
    let kept = cluster_checkpoints(&whole);
    assert_eq!(kept.len(), 3, "{kept:?}");
    for name in &kept {
        let step: u64 = name.trim_start_matches("step-").parse().unwrap();
        assert!(
            step.is_multiple_of(25) && (25..=375).contains(&step),
            "{kept:?}"
        );
    }
    for server in ["server-0", "server-1"] {
        let mut shards: Vec<String> = std::fs::read_dir(whole.join("shards").join(server))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        shards.sort();
        // Every kept checkpoint's shard, and besides them only a shard newer than the
        // newest complete checkpoint (one whose other shard was skipped).
        let newest = kept.last().unwrap();
        assert!(
            kept.iter().all(|k| shards.contains(k))
                && shards.iter().all(|s| kept.contains(s) || s > newest),
            "{server}: {shards:?} for {kept:?}"
        );
    }
    // `ward train` does not take a cluster checkpoint for its own.
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(copy.join("checkpoints")).unwrap();
    assert!(Command::new("cp")
        .arg("-r")
        .arg(whole.join("run/checkpoints").join(kept.last().unwrap()))
        .arg(copy.join("checkpoints"))
        .status()
        .unwrap()
        .success());
    let o = ward(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--resume",
        copy.to_str().unwrap(),
        "--identity",
        keys.identity.to_str().unwrap(),
        "--trust",
        keys.trust.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("resume it with ward cluster"),
        "{}",
        stderr(&o)
    );

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    for (i, (victim, needle, named)) in [
        ("worker/1", "worker-1.pem", "worker/1"),
        ("server/1", "server-1.pem", "server/1"),
        ("coordinator", "coordinator.pem", "coordinator"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = tmp.path().join(format!("killed-{i}"));
        let child = checkpointed_run(&config, &out, &keys, false)
            .spawn()
            .unwrap();
        // Killed at a random moment after the first cluster checkpoint.
        let started = Instant::now();
        while cluster_checkpoints(&out).is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no checkpoint"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let delay = u64::from((nanos >> (i * 8)) % 400);
        std::thread::sleep(Duration::from_millis(delay));
        let cert = out.join("certs").join(needle);
        let pid = find_process(&["cluster", cert.to_str().unwrap()]).unwrap();
        assert!(Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let killed = Instant::now();
        let o = child.wait_with_output().unwrap();
        let stopped = killed.elapsed();
        let log = stderr(&o);
        assert!(
            !o.status.success(),
            "{victim} killed after {delay} ms: {log}"
        );
        assert!(log.contains(named), "{victim}: {log}");
        // Every other member stopped by itself (none killed by the launcher), within twice
        // the heartbeat timeout (2 s) and the time to write their last lines.
        assert!(!log.contains("killing"), "{victim}: {log}");
        assert!(
            stopped < Duration::from_secs(4 + 2),
            "{victim}: {stopped:?}\n{log}"
        );
        let at = cluster_checkpoints(&out);
        eprintln!(
            "{victim} killed {delay} ms after the first checkpoint, the job stopped {stopped:?} later; last: {at:?}"
        );

        let o = checkpointed_run(&config, &out, &keys, true)
            .output()
            .unwrap();
        let log = stderr(&o);
        assert!(o.status.success(), "{victim}: {log}");
        assert!(log.contains("resuming from"), "{log}");
        // Bit for bit: the same sums in the same order from the same state.
        assert_eq!(weights(&out.join("run/package")), want, "{victim}");
    }
}
