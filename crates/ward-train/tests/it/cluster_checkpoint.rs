//! The checkpoints of a distributed job: a server's shard round-trips bit for bit and
//! resumes only when it is the shard the cluster checkpoint records, of its own rank,
//! signed by someone trusted; the coordinator's cluster checkpoint carries the seed, the
//! shards' digests and the state parameters; old shards go only once no kept cluster
//! checkpoint needs them.

use ward_dist::plan::{KeySpec, Plan};
use ward_dist::wire::Kept;
use ward_package::signature::{PrivateKey, TrustPolicy};
use ward_package::Trust;
use ward_train::checkpoint::cluster::{
    open_cluster_checkpoint, part_name, CoordinatorCheckpoints, JobInfo, ShardCheckpoints,
};
use ward_train::checkpoint::{CheckpointWriter, Retention, Sealing, Unsealing};
use ward_train::optim::{Optimizer, OptimizerSpec, OptimizerState, ParamState};

use super::checkpoint::identity_file;

fn job(servers: u32) -> JobInfo {
    JobInfo {
        model: "mlp".into(),
        job: "mnist".into(),
        spec_sha256: [3; 32],
        seed: [9; 32],
        servers,
        workers: 2,
        steps_per_epoch: 63,
        optimizer: "sgd".into(),
    }
}

fn sgd() -> Optimizer {
    let spec: OptimizerSpec = toml::from_str(
        r#"
name = "sgd"
learning_rate = 0.1
momentum = 0.9
"#,
    )
    .unwrap();
    Optimizer::new(spec, None).unwrap()
}

/// One key split across two servers (and so named by its range), one whole.
fn keys() -> Vec<KeySpec> {
    vec![
        KeySpec {
            name: "fc1_weight".into(),
            len: 100_000,
        },
        KeySpec {
            name: "fc1_bias".into(),
            len: 10,
        },
    ]
}

struct Keys {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    recipient: String,
    unsealing: Unsealing,
    trust: Trust,
}

fn keys_in_tmp() -> (Keys, PrivateKey) {
    let tmp = tempfile::tempdir().unwrap();
    let (identity, recipient) = identity_file(tmp.path(), "id.txt");
    let key = PrivateKey::generate_p256().unwrap();
    let trust = Trust::Policy(TrustPolicy::single_key("trainer", key.public_key()));
    (
        Keys {
            dir: tmp.path().to_path_buf(),
            _tmp: tmp,
            recipient,
            unsealing: Unsealing::identity_files(&[identity.as_path()]).unwrap(),
            trust,
        },
        key,
    )
}

fn sealing(k: &Keys) -> Sealing {
    Sealing::recipients(std::slice::from_ref(&k.recipient), &[]).unwrap()
}

fn shard_values(len: usize, seed: f32) -> Vec<f32> {
    (0..len).map(|i| seed + i as f32 * 1e-3 - 7.0).collect()
}

#[test]
fn a_shard_resumes_bit_for_bit_only_as_the_shard_the_cluster_checkpoint_records() {
    let (k, key) = keys_in_tmp();
    let plan = Plan::new(keys(), 2, true);
    let parts: Vec<_> = plan.shard(1).copied().collect();
    let names: Vec<String> = parts.iter().map(|p| part_name(&plan.keys, p)).collect();
    assert!(
        names.iter().any(|n| n.starts_with("fc1_weight[")),
        "{names:?}"
    );
    let dir = k.dir.join("server-1");
    let store =
        ShardCheckpoints::new(&dir, sealing(&k), key, job(2), 1, &plan.keys, &parts).unwrap();
    let weights: Vec<Vec<f32>> = parts
        .iter()
        .map(|p| shard_values(p.len, p.key as f32))
        .collect();
    let states: Vec<ParamState> = weights
        .iter()
        .map(|w| ParamState {
            update_count: 50,
            tensors: vec![("momentum", w.iter().map(|v| v * -0.5).collect())],
        })
        .collect();
    let optimizer = OptimizerState {
        num_update: 50,
        ..OptimizerState::default()
    };
    let mut digests = Vec::new();
    for step in [25, 50, 75] {
        digests.push(store.write(step, &weights, &states, optimizer).unwrap());
    }
    // Resumed at 50: the same values, states and counts; the shard of step 75 (never in a
    // complete cluster checkpoint) is gone.
    let restored = store
        .resume(&k.trust, &k.unsealing, 50, digests[1], &sgd())
        .unwrap();
    assert_eq!(restored.weights, weights);
    assert_eq!(restored.states, states);
    assert_eq!(restored.optimizer, optimizer);
    assert!(!dir.join("step-000000000075").exists());

    // Another digest than the record's: refused, naming both.
    let e = store
        .resume(&k.trust, &k.unsealing, 25, digests[1], &sgd())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not the shard the cluster checkpoint records"),
        "{e}"
    );
    // No shard of that step.
    let e = store
        .resume(&k.trust, &k.unsealing, 100, digests[1], &sgd())
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no step-000000000100"), "{e}");
    // Server 0's shard offered to server 1 with its right digest: refused by who wrote it.
    let parts0: Vec<_> = plan.shard(0).copied().collect();
    let (_, key0) = keys_in_tmp();
    let trust0 = Trust::Policy(TrustPolicy::single_key("trainer", key0.public_key()));
    let dir0 = k.dir.join("server-0");
    let store0 =
        ShardCheckpoints::new(&dir0, sealing(&k), key0, job(2), 0, &plan.keys, &parts0).unwrap();
    let w0: Vec<Vec<f32>> = parts0.iter().map(|p| vec![1.0; p.len]).collect();
    let s0: Vec<ParamState> = w0
        .iter()
        .map(|w| ParamState {
            update_count: 1,
            tensors: vec![("momentum", w.clone())],
        })
        .collect();
    let d0 = store0.write(25, &w0, &s0, optimizer).unwrap();
    std::fs::remove_dir_all(dir.join("step-000000000025")).unwrap();
    std::fs::rename(
        dir0.join("step-000000000025"),
        dir.join("step-000000000025"),
    )
    .unwrap();
    let e = store
        .resume(&trust0, &k.unsealing, 25, d0, &sgd())
        .unwrap_err()
        .to_string();
    assert!(e.contains("written by server/0"), "{e}");
    // Signed by a key the policy does not trust: refused before decryption.
    let e = store
        .resume(&k.trust, &k.unsealing, 25, d0, &sgd())
        .unwrap_err();
    assert!(e.is_refusal(), "{e}");

    // Pruning: shards at or before the newest complete cluster checkpoint that it no
    // longer keeps are deleted; newer ones and kept ones stay.
    let store = ShardCheckpoints::new(
        &dir,
        sealing(&k),
        keys_in_tmp().1,
        job(2),
        1,
        &plan.keys,
        &parts,
    )
    .unwrap();
    for step in [100, 125, 150] {
        store.write(step, &weights, &states, optimizer).unwrap();
    }
    store
        .prune(&Kept {
            complete: 125,
            steps: vec![50, 125],
        })
        .unwrap();
    let left: Vec<u64> = ward_train::checkpoint::list_checkpoints(&dir)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(left, [50, 125, 150]);
}

#[test]
fn a_cluster_checkpoint_carries_the_seed_the_shards_and_the_state_parameters() {
    let (k, key) = keys_in_tmp();
    let dir = k.dir.join("checkpoints");
    // Nothing there yet: a job that starts.
    assert!(
        open_cluster_checkpoint(&dir, &k.trust, &k.unsealing, &job(2))
            .unwrap()
            .is_none()
    );
    let writer = CheckpointWriter::new(
        &dir,
        sealing(&k),
        key,
        Retention {
            keep_last: 2,
            keep_every: None,
            keep_best: None,
        },
    )
    .unwrap();
    let mean = vec![0.25f32, -1.5, 3.0];
    let store = CoordinatorCheckpoints::new(
        writer,
        job(2),
        vec![("bn_moving_mean".into(), vec![3], mean.clone())],
    );
    assert_eq!(store.write(25, &[[1; 32], [2; 32]]).unwrap(), [25]);
    assert_eq!(store.write(50, &[[3; 32], [4; 32]]).unwrap(), [25, 50]);
    assert_eq!(store.write(75, &[[5; 32], [6; 32]]).unwrap(), [50, 75]);
    // The newest, whatever seed the caller assumed.
    let mut other_seed = job(2);
    other_seed.seed = [0; 32];
    let resumed = open_cluster_checkpoint(&dir, &k.trust, &k.unsealing, &other_seed)
        .unwrap()
        .unwrap();
    assert_eq!(resumed.step, 75);
    assert_eq!(*resumed.seed.as_bytes(), [9; 32]);
    assert_eq!(resumed.shards, [[5; 32], [6; 32]]);
    assert_eq!(resumed.state_params, [("bn_moving_mean".to_string(), mean)]);
    // Another shape of job, or another spec: refused, named.
    let e = open_cluster_checkpoint(&dir, &k.trust, &k.unsealing, &job(3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 servers and 2 workers"), "{e}");
    let mut other_spec = job(2);
    other_spec.spec_sha256 = [4; 32];
    let e = open_cluster_checkpoint(&dir, &k.trust, &k.unsealing, &other_spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another training spec"), "{e}");
    let mut other_job = job(2);
    other_job.job = "cifar".into();
    let e = open_cluster_checkpoint(&dir, &k.trust, &k.unsealing, &other_job)
        .unwrap_err()
        .to_string();
    assert!(e.contains("of job \"mnist\""), "{e}");
}
