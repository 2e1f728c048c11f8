//! Checkpoints: the state round-trips bit for bit, encryption to recipients and to a
//! passphrase, signed directories verified before they are decrypted, every refusal
//! named, retention.

use std::path::Path;

use age::secrecy::ExposeSecret;
use ward_package::signature::{PrivateKey, TrustPolicy};
use ward_package::{PackageError, Trust};
use ward_train::checkpoint::state::{Progress, SavedMetrics, SavedOptimizer};
use ward_train::checkpoint::store::{kept_steps, remove_leftovers};
use ward_train::checkpoint::{
    checkpoint_name, decode_state, encode_state, encode_state_to, list_checkpoints,
    open_checkpoint, verify_checkpoint, BestBy, CheckpointError, CheckpointIndex, CheckpointWriter,
    Encryption, ParamView, Position, Retention, Sealing, StateInfo, Unsealing, CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
};
use ward_train::optim::{OptimizerState, ParamState};

const RUN: &str = "00112233445566778899aabbccddeeff";

fn info(step: u64) -> StateInfo {
    StateInfo {
        run: RUN.into(),
        spec_sha256: "ab".repeat(32),
        seed: "07".repeat(32),
        position: Position {
            step,
            epoch: 1,
            batch: 3,
        },
        optimizer: SavedOptimizer::new(
            "nadam",
            OptimizerState {
                num_update: step,
                // Values whose shortest text must still read back to the same bits.
                nadam_m_schedule: 0.1 + 0.2,
                lars_lrs: Some((1e-300, f64::MIN_POSITIVE / 3.0)),
            },
        ),
        progress: Progress {
            epoch: SavedMetrics::from(ward_train::trainer::Metrics {
                loss_sum: 1.0 / 3.0,
                examples: 96,
                correct: 50,
                classified: 96,
            }),
            window: SavedMetrics::from(ward_train::trainer::Metrics::default()),
            log_bytes: 1234,
        },
    }
}

/// Two parameters: a weight with two optimizer tensors, a running mean without any.
struct Params {
    weight: Vec<f32>,
    mean: Vec<f32>,
    states: [ParamState; 2],
}

fn params(seed: f32) -> Params {
    let weight: Vec<f32> = (0..12).map(|i| seed + i as f32 * 0.37 - 2.0).collect();
    Params {
        states: [
            ParamState {
                update_count: 7,
                tensors: vec![
                    ("mean", weight.iter().map(|w| w * 0.5).collect()),
                    ("var", weight.iter().map(|w| w * w).collect()),
                ],
            },
            ParamState {
                update_count: 0,
                tensors: vec![],
            },
        ],
        mean: vec![seed, -0.0, f32::MIN_POSITIVE, 3.5],
        weight,
    }
}

fn views(p: &Params) -> Vec<ParamView<'_>> {
    vec![
        ParamView {
            name: "fc_weight",
            trainable: true,
            shape: &[3, 4],
            weight: &p.weight,
            state: &p.states[0],
        },
        ParamView {
            name: "bn_moving_mean",
            trainable: false,
            shape: &[4],
            weight: &p.mean,
            state: &p.states[1],
        },
    ]
}

#[test]
fn a_state_reads_back_bit_for_bit_and_the_same_state_gives_the_same_bytes() {
    let p = params(1.0);
    let bytes = encode_state(&info(40), &views(&p)).unwrap();
    assert_eq!(bytes, encode_state(&info(40), &views(&p)).unwrap());
    let mut streamed = Vec::new();
    let len = encode_state_to(&info(40), &views(&p), &mut streamed).unwrap();
    assert_eq!(
        (streamed.as_slice(), len),
        (bytes.as_slice(), bytes.len() as u64)
    );
    let back = decode_state(&bytes).unwrap();
    assert_eq!(back.info, info(40));
    let state = back.info.optimizer.state();
    assert_eq!(state.nadam_m_schedule.to_bits(), (0.1f64 + 0.2).to_bits());
    assert_eq!(
        state.lars_lrs.map(|(a, b)| (a.to_bits(), b.to_bits())),
        Some((1e-300f64.to_bits(), (f64::MIN_POSITIVE / 3.0).to_bits()))
    );
    assert_eq!(back.params.len(), 2);
    let w = &back.params[0];
    assert_eq!(
        (w.name.as_str(), w.shape.as_slice(), w.update_count),
        ("fc_weight", &[3, 4][..], 7)
    );
    assert_eq!(w.weight, p.weight);
    assert_eq!(
        w.tensors[0],
        ("mean".to_string(), p.states[0].tensors[0].1.clone())
    );
    assert_eq!(w.tensors[1].0, "var");
    let m = &back.params[1];
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&m.weight), bits(&p.mean));

    // Any safetensors reader sees the weights under their own names.
    let plain = ward_package::read_weights(&bytes).unwrap();
    let names: Vec<&str> = plain.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"fc_weight") && names.contains(&"optimizer/fc_weight/var"),
        "{names:?}"
    );
}

/// `bytes` with the state header's JSON edited by `edit` (same length or not).
fn with_header(bytes: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let weights = ward_package::read_weights_with_metadata(bytes).unwrap();
    let mut metadata = weights.metadata.clone();
    let json = metadata.get("ward.state").unwrap().clone();
    metadata.insert("ward.state".into(), edit(&json));
    ward_package::write_weights(&weights.tensors, &metadata).unwrap()
}

#[test]
fn a_state_that_does_not_hold_together_is_refused_naming_what_is_wrong() {
    let p = params(2.0);
    let bytes = encode_state(&info(1), &views(&p)).unwrap();
    let refused = |bytes: &[u8], needle: &str| {
        let e = decode_state(bytes).unwrap_err();
        assert!(matches!(e, CheckpointError::State(_)), "{e}");
        assert!(e.to_string().contains(needle), "{e} (wanted {needle:?})");
    };
    refused(&bytes[..bytes.len() - 4], "weights.safetensors");
    refused(
        &with_header(&bytes, |j| j.replace("\"var\"", "\"velocity\"")),
        "optimizer/fc_weight/velocity\" is missing",
    );
    refused(
        &with_header(&bytes, |j| j.replace(",\"var\"", "")),
        "optimizer/fc_weight/var\" is not named",
    );
    refused(
        &with_header(&bytes, |j| j.replace("\"version\":1", "\"version\":2")),
        "version 2",
    );
    refused(
        &with_header(&bytes, |j| j.replace("\"run\"", "\"extra\":1,\"run\"")),
        "unknown field",
    );
    refused(
        &with_header(&bytes, |j| j.replace("\"0.30000000000000004\"", "\"zero\"")),
        "not a number",
    );
    // A tensor of another shape than its parameter.
    let mut bad = params(2.0);
    bad.states[0].tensors[1].1.truncate(4);
    let mut v = views(&bad);
    v[0].state = &bad.states[0];
    assert!(
        encode_state(&info(1), &v).is_err(),
        "the writer checks lengths too"
    );
    let weights = ward_package::read_weights_with_metadata(&bytes).unwrap();
    let tensors: Vec<(String, ward_core::Tensor)> = weights
        .tensors
        .iter()
        .map(|(n, t)| {
            if n == "optimizer/fc_weight/var" {
                (
                    n.clone(),
                    ward_core::Tensor::from_f32(vec![12], &t.to_f32_vec()).unwrap(),
                )
            } else {
                (n.clone(), t.clone())
            }
        })
        .collect();
    refused(
        &ward_package::write_weights(&tensors, &weights.metadata).unwrap(),
        "not f32 in its parameter's shape",
    );
}

pub fn private_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

pub fn identity_file(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!(
        "# created by a test\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    (private_file(dir, name, &text), recipient)
}

#[test]
fn age_encryption_to_recipients_and_to_a_passphrase_and_its_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = identity_file(tmp.path(), "alice.txt");
    let (bob, bob_pub) = identity_file(tmp.path(), "bob.txt");
    let (mallory, _) = identity_file(tmp.path(), "mallory.txt");
    let recipients = tmp.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# the team\n\n{bob_pub}\n")).unwrap();

    let sealing =
        Sealing::recipients(std::slice::from_ref(&alice_pub), &[recipients.as_path()]).unwrap();
    assert_eq!(sealing.encryption(), Encryption::X25519);
    assert_eq!(sealing.recipient_names(), [alice_pub.clone(), bob_pub]);
    let plaintext: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sealed = sealing.seal(&plaintext).unwrap();
    assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
    assert!(!sealed
        .windows(64)
        .any(|w| plaintext.windows(64).take(1).any(|p| p == w)));
    for who in [&alice, &bob] {
        let opened = Unsealing::identity_files(&[who.as_path()]).unwrap();
        assert_eq!(opened.open(&sealed, 1 << 20).unwrap(), plaintext);
    }
    let wrong = Unsealing::identity_files(&[mallory.as_path()]).unwrap();
    let e = wrong.open(&sealed, 1 << 20).unwrap_err();
    assert!(
        matches!(e, CheckpointError::Decrypt(_)) && e.is_refusal(),
        "{e}"
    );
    let alice_keys = Unsealing::identity_files(&[alice.as_path()]).unwrap();
    assert!(matches!(
        alice_keys.open(&sealed, 1000),
        Err(CheckpointError::StateTooLarge { limit: 1000 })
    ));
    let mut flipped = sealed.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 1;
    assert!(matches!(
        alice_keys.open(&flipped, 1 << 20),
        Err(CheckpointError::Decrypt(_))
    ));

    // A passphrase (scrypt), and a wrong one.
    let pass = private_file(tmp.path(), "pass.txt", "correct horse battery staple\n");
    let by_pass = Sealing::passphrase_file(&pass).unwrap();
    assert_eq!(by_pass.encryption(), Encryption::Scrypt);
    let sealed = by_pass.seal(b"state").unwrap();
    let opened = Unsealing::passphrase_file(&pass)
        .unwrap()
        .open(&sealed, 100)
        .unwrap();
    assert_eq!(opened, b"state");
    let other = private_file(tmp.path(), "other.txt", "incorrect horse\n");
    assert!(matches!(
        Unsealing::passphrase_file(&other)
            .unwrap()
            .open(&sealed, 100),
        Err(CheckpointError::Decrypt(_))
    ));

    // Bad keys are named; secrets others may read are refused.
    let e = Sealing::recipients(&["age1notakey".into()], &[]).unwrap_err();
    assert!(
        e.to_string().contains("--recipient") && e.to_string().contains("age1notakey"),
        "{e}"
    );
    assert!(matches!(
        Sealing::recipients(&[], &[]),
        Err(CheckpointError::NoRecipients)
    ));
    let not_identity = private_file(tmp.path(), "bad.txt", "# x\nAGE-SECRET-KEY-1NOPE\n");
    let e = Unsealing::identity_files(&[not_identity.as_path()]).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&alice, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Unsealing::identity_files(&[alice.as_path()]).is_err());
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(Sealing::passphrase_file(&pass).is_err());
    }
}

fn index(step: u64, metric: Option<f64>) -> CheckpointIndex {
    CheckpointIndex {
        format: CHECKPOINT_FORMAT.into(),
        version: CHECKPOINT_VERSION,
        model: "lenet".into(),
        run: RUN.into(),
        spec_sha256: "ab".repeat(32),
        position: Position {
            step,
            epoch: 1,
            batch: 3,
        },
        created: 1,
        metrics: metric
            .map(|m| [("val_accuracy".to_string(), m)].into())
            .unwrap_or_default(),
        encryption: Encryption::X25519,
        recipients: vec![],
        state_bytes: 0,
        ward_version: "test".into(),
        cluster: None,
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    identity: std::path::PathBuf,
    recipient: String,
    /// Trusts a key no writer below signs with.
    trust: Trust,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (identity, recipient) = identity_file(tmp.path(), "id.txt");
    let key = PrivateKey::generate_p256().unwrap();
    let trust = Trust::Policy(TrustPolicy::single_key("trainer", key.public_key()));
    Setup {
        dir: tmp.path().join("checkpoints"),
        _tmp: tmp,
        identity,
        recipient,
        trust,
    }
}

fn writer(s: &Setup, key: PrivateKey, retention: Retention) -> CheckpointWriter {
    let sealing = Sealing::recipients(std::slice::from_ref(&s.recipient), &[]).unwrap();
    CheckpointWriter::new(&s.dir, sealing, key, retention).unwrap()
}

fn write(w: &CheckpointWriter, step: u64, metric: Option<f64>) -> std::path::PathBuf {
    let p = params(step as f32);
    w.write(index(step, metric), &info(step), &views(&p))
        .unwrap()
        .dir
}

fn refusal(result: Result<impl std::fmt::Debug, CheckpointError>) -> String {
    let e = result.unwrap_err();
    assert!(e.is_refusal(), "{e}");
    e.to_string()
}

#[test]
fn a_signed_checkpoint_opens_only_verified_and_decrypted_with_the_right_key() {
    let s = setup();
    let w = writer(
        &s,
        PrivateKey::generate_p256().unwrap(),
        Retention::default(),
    );
    // The trust policy is the setup's key; this writer's key is another: refused
    // before anything is decrypted.
    let untrusted = write(&w, 5, None);
    let unsealing = Unsealing::identity_files(&[s.identity.as_path()]).unwrap();
    let e = open_checkpoint(&untrusted, &s.trust, &unsealing).unwrap_err();
    assert!(
        matches!(&e, CheckpointError::Package(PackageError::Refused { .. })),
        "{e}"
    );

    let key = PrivateKey::generate_p256().unwrap();
    let trust = Trust::Policy(TrustPolicy::single_key("trainer", key.public_key()));
    let w = writer(&s, key, Retention::default());
    let dir = write(&w, 10, Some(0.5));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("state.age")), 0o600);
        assert_eq!(mode(&s.dir), 0o700);
    }
    let opened = open_checkpoint(&dir, &trust, &unsealing).unwrap();
    assert_eq!(opened.index.position.step, 10);
    assert_eq!(opened.index.recipients, std::slice::from_ref(&s.recipient));
    assert_eq!(opened.state.info, info(10));
    assert_eq!(opened.state.params[0].weight, params(10.0).weight);
    let verified = verify_checkpoint(&dir, &trust).unwrap();
    assert_eq!(verified.index, opened.index);

    // Another identity: verified, then refused at decryption.
    let (other, _) = identity_file(s.dir.parent().unwrap(), "other.txt");
    let other = Unsealing::identity_files(&[other.as_path()]).unwrap();
    assert!(refusal(open_checkpoint(&dir, &trust, &other)).contains("decrypt"));

    // A state.age swapped in from another checkpoint encrypted to the same recipient.
    let second = write(&w, 20, None);
    let state = std::fs::read(second.join("state.age")).unwrap();
    let copy = s.dir.join("step-000000000099");
    std::fs::create_dir(&copy).unwrap();
    for f in ["checkpoint.json", "model.sig"] {
        std::fs::copy(dir.join(f), copy.join(f)).unwrap();
    }
    std::fs::write(copy.join("state.age"), &state).unwrap();
    refusal(open_checkpoint(&copy, &trust, &unsealing));

    // Truncated, and one bit flipped, on disk.
    let truncated = std::fs::read(dir.join("state.age")).unwrap();
    std::fs::write(copy.join("state.age"), &truncated[..truncated.len() - 1]).unwrap();
    refusal(open_checkpoint(&copy, &trust, &unsealing));
    let mut flipped = truncated.clone();
    flipped[truncated.len() / 2] ^= 0x10;
    std::fs::write(copy.join("state.age"), &flipped).unwrap();
    refusal(open_checkpoint(&copy, &trust, &unsealing));
    std::fs::remove_dir_all(&copy).unwrap();

    // A state re-signed by the trusted key but belonging to another step: the index and
    // the state disagree.
    let key = PrivateKey::generate_p256().unwrap();
    let trust2 = Trust::Policy(TrustPolicy::single_key("trainer", key.public_key()));
    let w2 = writer(&s, key, Retention::default());
    let p = params(1.0);
    let mismatched = w2
        .write(index(31, None), &info(30), &views(&p))
        .unwrap()
        .dir;
    let e = open_checkpoint(&mismatched, &trust2, &unsealing).unwrap_err();
    assert!(matches!(e, CheckpointError::Mismatch { .. }), "{e}");
}

#[test]
fn retention_keeps_the_newest_every_kth_and_the_best_and_deletes_only_after_a_newer_one() {
    let history: Vec<(u64, Option<f64>)> = vec![
        (10, Some(0.5)),
        (20, Some(0.9)),
        (30, Some(0.7)),
        (40, None),
        (50, Some(0.6)),
        (60, Some(0.8)),
    ];
    let kept = |r: Retention| kept_steps(&history, &r).into_iter().collect::<Vec<_>>();
    let last2 = Retention {
        keep_last: 2,
        keep_every: None,
        keep_best: None,
    };
    assert_eq!(kept(last2.clone()), [50, 60]);
    assert_eq!(
        kept(Retention {
            keep_every: Some(20),
            ..last2.clone()
        }),
        [20, 40, 50, 60]
    );
    assert_eq!(
        kept(Retention {
            keep_best: Some(BestBy::named("val_accuracy")),
            ..last2.clone()
        }),
        [20, 50, 60]
    );
    let loss = BestBy::named("val_loss");
    assert!(!loss.higher_is_better && BestBy::named("val_top_k_accuracy_5").higher_is_better);
    assert_eq!(
        kept(Retention {
            keep_best: Some(loss),
            ..last2
        }),
        [10, 50, 60]
    );

    // On disk: the writer prunes after each complete checkpoint.
    let s = setup();
    let w = writer(
        &s,
        PrivateKey::generate_p256().unwrap(),
        Retention {
            keep_last: 2,
            keep_every: None,
            keep_best: Some(BestBy::named("val_accuracy")),
        },
    );
    for (step, metric) in &history {
        write(&w, *step, *metric);
    }
    let steps: Vec<u64> = list_checkpoints(&s.dir)
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(steps, [20, 50, 60]);
    // A write that cannot complete (its step exists) deletes nothing.
    let p = params(1.0);
    assert!(matches!(
        w.write(index(60, None), &info(60), &views(&p)),
        Err(CheckpointError::Write(_))
    ));
    let after: Vec<u64> = list_checkpoints(&s.dir)
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(after, steps);

    // What an interrupted write or prune leaves is not a checkpoint, and goes.
    std::fs::create_dir(s.dir.join(".step-000000000070.ward-tmp-1-0")).unwrap();
    std::fs::create_dir(s.dir.join(".deleting-step-000000000010")).unwrap();
    std::fs::create_dir(s.dir.join("notes")).unwrap();
    assert_eq!(list_checkpoints(&s.dir).unwrap().len(), 3);
    let mut removed = remove_leftovers(&s.dir).unwrap();
    removed.sort();
    assert_eq!(
        removed,
        [
            ".deleting-step-000000000010",
            ".step-000000000070.ward-tmp-1-0"
        ]
    );
    assert!(s.dir.join("notes").is_dir());
    assert_eq!(checkpoint_name(7), "step-000000000007");
}
