//! Times writing and loading a checkpoint of a model's weights and SGD momentum (one
//! optimizer tensor per weight), against the floors measured in the same run over the
//! same bytes: the age stream cipher (the age crate's writer and reader, and, stricter,
//! ring's ChaCha20-Poly1305 over age's 64 KiB chunks on one thread: the fastest single
//! stream here), SHA-256, and a plain write + fsync (write) or read (load). Driven by
//! `bench/checkpoint/run.sh`. The process uses the `ward` binary's allocator, so the
//! writes are timed as `ward train` makes them.
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

#[global_allocator]
static ALLOC: ward_alloc::HugePageAlloc = ward_alloc::HugePageAlloc;

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
    let encrypt_age_crate = best(rounds, || {
        sealed = age_crate_seal(&recipient, &plaintext)?;
        Ok(())
    })?;
    // ring's cipher over age's chunk layout (64 KiB, then a 16-byte tag), sealed and
    // opened in place.
    let mut chunks = vec![0u8; plaintext.len() + plaintext.len().div_ceil(CHUNK) * TAG];
    for (slot, piece) in chunks.chunks_mut(CHUNK + TAG).zip(plaintext.chunks(CHUNK)) {
        for (to, from) in slot.iter_mut().zip(piece) {
            *to = *from;
        }
    }
    let encrypt_ring = best(rounds, || ring_chunks(&mut chunks, true))?;
    let mut decrypt_ring = f64::INFINITY;
    for _ in 0..rounds {
        let t = Instant::now();
        ring_chunks(&mut chunks, false)?;
        decrypt_ring = decrypt_ring.min(t.elapsed().as_secs_f64());
        ring_chunks(&mut chunks, true)?;
    }
    drop(chunks);
    // What the checkpoint writer does before the files are written: encrypt and hash.
    let seal_and_hash = best(rounds, || {
        std::hint::black_box(sealer.seal(&plaintext)?.len());
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
            "encrypt_s": encrypt_age_crate,
            "encrypt_ring_s": encrypt_ring,
            "decrypt_ring_s": decrypt_ring,
            "seal_and_hash_s": seal_and_hash,
            "decrypt_s": decrypt,
            "sha256_s": sha256,
            "write_fsync_s": write_fsync,
            "read_s": read,
        })
    );
    Ok(())
}

/// `plaintext` encrypted by the age crate's own writer, to `recipient`.
fn age_crate_seal(recipient: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
    let recipient: age::x25519::Recipient = recipient.parse().map_err(anyhow::Error::msg)?;
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))?;
    let mut out = Vec::with_capacity(plaintext.len() + plaintext.len() / 4096 + 1024);
    let mut w = encryptor.wrap_output(&mut out)?;
    w.write_all(plaintext)?;
    w.finish()?;
    Ok(out)
}

const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// The cipher alone, one chunk after the other on this thread: each 64 KiB chunk of
/// `chunks` (age's layout: plaintext, then room for its tag) sealed in place, or each
/// sealed chunk opened.
fn ring_chunks(chunks: &mut [u8], seal: bool) -> Result<()> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
    let key = LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &[7; 32]).map_err(|_| anyhow::anyhow!("key"))?,
    );
    for (i, chunk) in chunks.chunks_mut(CHUNK + TAG).enumerate() {
        let mut nonce = [0u8; 12];
        for (b, c) in nonce.iter_mut().skip(3).zip((i as u64).to_be_bytes()) {
            *b = c;
        }
        let nonce = Nonce::assume_unique_for_key(nonce);
        if seal {
            let (text, room) = chunk.split_at_mut(chunk.len().saturating_sub(TAG));
            let tag = key
                .seal_in_place_separate_tag(nonce, Aad::empty(), text)
                .map_err(|_| anyhow::anyhow!("seal"))?;
            room.copy_from_slice(tag.as_ref());
        } else {
            key.open_in_place(nonce, Aad::empty(), chunk)
                .map_err(|_| anyhow::anyhow!("open"))?;
        }
    }
    Ok(())
}
