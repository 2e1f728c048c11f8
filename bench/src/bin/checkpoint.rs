//! Times writing and loading a checkpoint of a model's weights and SGD momentum (one
//! optimizer tensor per weight), against the floors measured in the same run over the
//! same bytes: the age stream cipher, SHA-256, and a plain write + fsync (write) or read
//! (load). Driven by `bench/checkpoint/run.sh`.
//!
//! Usage: `ward-bench-checkpoint PARAMS DIR ROUNDS`: PARAMS an MXNet `.params` file (the
//! weights), DIR a scratch directory on the filesystem to measure.
//! Prints one JSON line of best-of-ROUNDS seconds.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::Digest;
use ward_package::signature::{PrivateKey, TrustPolicy};
use ward_package::Trust;
use ward_train::checkpoint::state::{Progress, SavedMetrics, SavedOptimizer};
use ward_train::checkpoint::{
    encode_state, open_checkpoint, CheckpointIndex, CheckpointWriter, Encryption, ParamView,
    Position, Retention, Sealing, StateInfo, Unsealing, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
};
use ward_train::optim::{OptimizerState, ParamState};
use ward_train::trainer::Metrics;

fn best(rounds: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, params, dir, rounds] = args.as_slice() else {
        bail!("usage: ward-bench-checkpoint PARAMS DIR ROUNDS");
    };
    let dir = Path::new(dir);
    let rounds: usize = rounds.parse()?;
    let bytes = std::fs::read(params).with_context(|| params.clone())?;
    let file = ward_mxnet::params::read_params(&bytes, &Default::default())?;
    let mut names = Vec::new();
    let mut shapes = Vec::new();
    let mut weights = Vec::new();
    for (name, array) in file.into_named()? {
        let Some(stored) = array.value else {
            continue;
        };
        let t = stored.to_dense()?;
        names.push(name);
        shapes.push(t.shape().to_vec());
        weights.push(t.to_f32_vec());
    }
    let states: Vec<ParamState> = weights
        .iter()
        .map(|w| ParamState {
            update_count: 100,
            tensors: vec![("momentum", w.iter().map(|v| v * 0.01).collect())],
        })
        .collect();
    let views: Vec<ParamView<'_>> = names
        .iter()
        .zip(&shapes)
        .zip(&weights)
        .zip(&states)
        .map(|(((n, s), w), st)| ParamView {
            name: n,
            trainable: true,
            shape: s,
            weight: w,
            state: st,
        })
        .collect();
    let info = StateInfo {
        run: "00112233445566778899aabbccddeeff".into(),
        spec_sha256: "ab".repeat(32),
        seed: "07".repeat(32),
        position: Position {
            step: 100,
            epoch: 1,
            batch: 0,
        },
        optimizer: SavedOptimizer::new("sgd", OptimizerState::default()),
        progress: Progress {
            epoch: SavedMetrics::from(Metrics::default()),
            window: SavedMetrics::from(Metrics::default()),
            log_bytes: 0,
        },
    };
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let sealing = || Sealing::recipients(std::slice::from_ref(&recipient), &[]);
    let key = PrivateKey::generate_p256()?;
    let trust = Trust::Policy(TrustPolicy::single_key("bench", key.public_key()));
    let checkpoints = dir.join("checkpoints");
    let _ = std::fs::remove_dir_all(&checkpoints);
    let writer = CheckpointWriter::new(
        &checkpoints,
        sealing()?,
        key,
        Retention {
            keep_last: 1,
            keep_every: None,
            keep_best: None,
        },
    )?;
    let mut step = 0u64;
    let mut last = None;
    let plaintext_len = encode_state(&info, &views)?.len();

    // The whole write: encode, encrypt, sign, write the files and the directory synced,
    // rename, prune the previous one.
    let write = best(rounds, || {
        step += 1;
        let mut i = info.clone();
        i.position.step = step;
        let index = CheckpointIndex {
            format: CHECKPOINT_FORMAT.into(),
            version: CHECKPOINT_VERSION,
            model: "resnet18".into(),
            run: i.run.clone(),
            spec_sha256: i.spec_sha256.clone(),
            position: i.position,
            created: 0,
            metrics: Default::default(),
            encryption: Encryption::X25519,
            recipients: vec![],
            state_bytes: 0,
            ward_version: "bench".into(),
            cluster: None,
        };
        last = Some(writer.write(index, &i, &views)?.dir);
        Ok(())
    })?;
    let last = last.context("no checkpoint written")?;
    let identity_file = dir.join("identity.txt");
    {
        use age::secrecy::ExposeSecret;
        let _ = std::fs::remove_file(&identity_file);
        let mut f = ward_core::files::create_new_with_mode(&identity_file, 0o600)?;
        writeln!(f, "{}", identity.to_string().expose_secret())?;
    }
    let unsealing = Unsealing::identity_files(&[identity_file.as_path()])?;
    let load = best(rounds, || {
        let opened = open_checkpoint(&last, &trust, &unsealing)?;
        std::hint::black_box(opened.state.params.len());
        Ok(())
    })?;

    // The floors, over the same bytes.
    let plaintext = encode_state(&info, &views)?;
    let sealer = sealing()?;
    let mut sealed = Vec::new();
    let encrypt = best(rounds, || {
        sealed = sealer.seal(&plaintext)?;
        Ok(())
    })?;
    let decrypt = best(rounds, || {
        std::hint::black_box(unsealing.open(&sealed, u64::MAX)?.len());
        Ok(())
    })?;
    let sha256 = best(rounds, || {
        std::hint::black_box(sha2::Sha256::digest(&sealed));
        Ok(())
    })?;
    let plain = dir.join("plain.bin");
    let write_fsync = best(rounds, || {
        let _ = std::fs::remove_file(&plain);
        let mut f = std::fs::File::create(&plain)?;
        f.write_all(&sealed)?;
        f.sync_all()?;
        Ok(())
    })?;
    let read = best(rounds, || {
        std::hint::black_box(std::fs::read(&plain)?.len());
        Ok(())
    })?;
    let _ = std::fs::remove_file(&plain);
    println!(
        "{}",
        serde_json::json!({
            "parameters": names.len(),
            "plaintext_bytes": plaintext_len,
            "sealed_bytes": sealed.len(),
            "write_s": write,
            "load_s": load,
            "encrypt_s": encrypt,
            "decrypt_s": decrypt,
            "sha256_s": sha256,
            "write_fsync_s": write_fsync,
            "read_s": read,
        })
    );
    Ok(())
}
