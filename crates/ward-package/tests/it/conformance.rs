//! The model-signing 1.1.1 conformance vectors (`tests/fixtures/model-signing`, copied from
//! `shared/conformance/model-signing`): each verifies or is refused as its README says.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ward_package::signature::keys::{PrivateKey, PublicKey};
use ward_package::signature::policy::TrustPolicy;
use ward_package::signature::Problem;
use ward_package::tree::TreeLimits;
use ward_package::{verify_directory, PackageError, VerifiedTree};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/model-signing")
}

/// 2027-06-01: inside the validity of the test CA's leaf (2026-11-22 to 2036).
fn in_2027() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_811_808_000)
}

fn key(name: &str) -> PublicKey {
    let text = fs::read_to_string(vectors().join("keys").join(name)).unwrap();
    PublicKey::from_pem(&text).unwrap()
}

fn key_policy(name: &str) -> TrustPolicy {
    TrustPolicy::single_key("test", key(name))
}

fn verify_with(
    model: &Path,
    signature: &str,
    policy: &TrustPolicy,
    now: SystemTime,
) -> Result<VerifiedTree, PackageError> {
    let sig = vectors().join("signatures").join(signature);
    verify_directory(model, &[sig], policy, now, &TreeLimits::default(), &|_| {
        true
    })
}

fn problems(result: Result<VerifiedTree, PackageError>) -> Vec<Problem> {
    match result {
        Err(PackageError::Refused { problems, .. }) => problems,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(v) => panic!("expected a refusal, got {:?}", v.verified),
    }
}

#[test]
fn every_key_vector_verifies() {
    let model = vectors().join("model");
    for (sig, pubkey) in [
        ("p256-cli.sig", "p256.pub.pem"),
        ("p521-cli.sig", "p521.pub.pem"),
        ("p384-api.sig", "p384.pub.pem"),
        ("p256-shards16.sig", "p256.pub.pem"),
        ("p256-blake3.sig", "p256.pub.pem"),
        ("p256-blake2.sig", "p256.pub.pem"),
    ] {
        let v = verify_with(&model, sig, &key_policy(pubkey), SystemTime::now())
            .unwrap_or_else(|e| panic!("{sig}: {e}"));
        assert_eq!(v.verified.model_name(), "model", "{sig}");
        assert_eq!(v.verified.signers(), ["test"], "{sig}");
        if sig == "p256-shards16.sig" {
            // Shards cannot cover an empty file (model-signing's D7): ward says so.
            assert_eq!(
                v.verified.warnings().len(),
                1,
                "{:?}",
                v.verified.warnings()
            );
            assert!(v.verified.warnings()[0].contains("empty.txt is empty"));
        } else {
            assert!(v.verified.warnings().is_empty(), "{sig}");
        }
        // `.gitattributes` is ignored by the signed ignore paths, so it is not even read.
        let names: Vec<&str> = v.tree.files.iter().map(|f| f.path.as_str()).collect();
        assert!(!names.contains(&".gitattributes"), "{sig}: {names:?}");
        assert_eq!(names.len(), 6, "{sig}: {names:?}");
    }
}

#[test]
fn a_signature_without_a_key_hint_verifies_with_a_warning() {
    let v = verify_with(
        &vectors().join("model"),
        "p256-nohint.sig",
        &key_policy("p256.pub.pem"),
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(v.verified.warnings().len(), 1);
    assert!(v.verified.warnings()[0].contains("names no key"));
    // And fails with any other key.
    let p = problems(verify_with(
        &vectors().join("model"),
        "p256-nohint.sig",
        &key_policy("p384.pub.pem"),
        SystemTime::now(),
    ));
    assert_eq!(p[0].reason(), "bad-signature", "{}", p[0]);
}

#[test]
fn a_single_file_model_verifies() {
    let v = verify_with(
        &vectors().join("model/model.safetensors"),
        "p256-single-file.sig",
        &key_policy("p256.pub.pem"),
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(v.verified.model_name(), "model.safetensors");
    assert_eq!(v.tree.files.len(), 1);
}

#[test]
fn key_hints_match_the_reference() {
    let expected: serde_json::Value =
        serde_json::from_slice(&fs::read(vectors().join("expected.json")).unwrap()).unwrap();
    for name in ["p256", "p384", "p521"] {
        let want = expected[format!("keys/{name}.pub.pem sha256(PEM text)")]
            .as_str()
            .unwrap();
        assert_eq!(key(&format!("{name}.pub.pem")).hint(), want, "{name}");
        // The private keys (SEC1 for P-256, PKCS#8 for the others) give the same keys.
        let private = fs::read_to_string(vectors().join(format!("keys/{name}.key.pem"))).unwrap();
        let private = PrivateKey::from_pem(&private).unwrap();
        assert_eq!(private.public_key().hint(), want, "{name}");
    }
}

#[test]
fn ed25519_keys_are_refused_clearly() {
    for file in ["ed25519.pub.pem", "ed25519.key.pem"] {
        let text = fs::read_to_string(vectors().join("keys").join(file)).unwrap();
        let err = if file.contains("pub") {
            PublicKey::from_pem(&text).unwrap_err()
        } else {
            PrivateKey::from_pem(&text).unwrap_err()
        };
        let msg = err.to_string();
        assert!(
            msg.contains("Ed25519 keys are not supported") && msg.contains("P-256"),
            "{file}: {msg}"
        );
    }
}

fn ca_policy(ca: &str) -> TrustPolicy {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(vectors().join("pki").join(ca), dir.path().join("ca.pem")).unwrap();
    let toml = "[[ca]]\nname = \"test-ca\"\ncertificate = \"ca.pem\"\nmodels = [\"*\"]\n";
    TrustPolicy::from_toml(toml, dir.path()).unwrap()
}

#[test]
fn certificate_signatures_chain_to_the_policy_ca() {
    let model = vectors().join("model");
    let v = verify_with(&model, "p256-cert.sig", &ca_policy("ca.crt.pem"), in_2027()).unwrap();
    assert_eq!(
        v.verified.signers(),
        ["test-ca:CN=model-signer@example.com"]
    );
    // Another CA does not vouch for it.
    let p = problems(verify_with(
        &model,
        "p256-cert.sig",
        &ca_policy("oldca.crt.pem"),
        in_2027(),
    ));
    assert!(
        p[0].to_string().contains("does not chain to a CA"),
        "{}",
        p[0]
    );
    // Nor does a key-only policy.
    let p = problems(verify_with(
        &model,
        "p256-cert.sig",
        &key_policy("p256.pub.pem"),
        in_2027(),
    ));
    assert!(p[0].to_string().contains("lists no CA"), "{}", p[0]);
}

#[test]
fn an_expired_leaf_is_refused_unlike_the_reference() {
    let model = vectors().join("model");
    let policy = ca_policy("oldca.crt.pem");
    let p = problems(verify_with(
        &model,
        "p256-cert-expired-leaf.sig",
        &policy,
        SystemTime::now(),
    ));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].reason(), "untrusted-certificate");
    assert!(p[0].to_string().contains("has expired"), "{}", p[0]);
    // Time is its only defect: on 2025-01-01 12:00 UTC, inside its validity, it verifies.
    let then = UNIX_EPOCH + Duration::from_secs(1_735_732_800);
    verify_with(&model, "p256-cert-expired-leaf.sig", &policy, then).unwrap();
}

/// A copy of the model, writable.
fn model_copy() -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let dst = parent.path().join("model");
    copy_dir(&vectors().join("model"), &dst);
    (parent, dst)
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

#[test]
fn changed_added_and_removed_files_are_refused() {
    let policy = key_policy("p256.pub.pem");
    for sig in [
        "p256-cli.sig",
        "p256-shards16.sig",
        "p256-blake2.sig",
        "p256-blake3.sig",
    ] {
        let (_tmp, model) = model_copy();
        let weights = model.join("sub/deep/weights.bin");
        let mut bytes = fs::read(&weights).unwrap();
        bytes[3] ^= 1;
        fs::write(&weights, &bytes).unwrap();
        let p = problems(verify_with(&model, sig, &policy, SystemTime::now()));
        assert_eq!(p.len(), 1, "{sig}: {p:?}");
        assert_eq!(p[0].reason(), "digest-mismatch");
        let line = p[0].to_string();
        assert!(
            line.contains("sub/deep/weights.bin") && line.contains("was modified"),
            "{line}"
        );
        if sig == "p256-cli.sig" {
            assert!(
                line.contains("30cf6f2de471343739bcc1dde393c0c0771814ac3ad798f68c8a74495174521a"),
                "expected digest in hex: {line}"
            );
        }
    }

    let (_tmp, model) = model_copy();
    fs::write(model.join("tokenizer/extra.txt"), b"x").unwrap();
    fs::remove_file(model.join("config.json")).unwrap();
    let p = problems(verify_with(
        &model,
        "p256-cli.sig",
        &policy,
        SystemTime::now(),
    ));
    let lines: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(p.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("tokenizer/extra.txt is not covered")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("config.json is signed but missing")),
        "{lines:?}"
    );

    // An empty file counts in files mode.
    let (_tmp, model) = model_copy();
    fs::remove_file(model.join("empty.txt")).unwrap();
    let p = problems(verify_with(
        &model,
        "p256-cli.sig",
        &policy,
        SystemTime::now(),
    ));
    assert_eq!(p[0].reason(), "missing-file");
}

#[test]
fn a_key_the_policy_does_not_list_is_refused() {
    let p = problems(verify_with(
        &vectors().join("model"),
        "p256-cli.sig",
        &key_policy("p384.pub.pem"),
        SystemTime::now(),
    ));
    assert_eq!(p[0].reason(), "untrusted-key");
    assert!(
        p[0].to_string()
            .contains("946677f4b83d0c7bbf7cda979b9daaed728a945c5006e84f4bbf35343e79ac18"),
        "{}",
        p[0]
    );
}

#[test]
fn a_symlink_in_the_model_is_refused() {
    let (_tmp, model) = model_copy();
    fs::remove_file(model.join("config.json")).unwrap();
    std::os::unix::fs::symlink(
        vectors().join("model/config.json"),
        model.join("config.json"),
    )
    .unwrap();
    let err = verify_with(
        &model,
        "p256-cli.sig",
        &key_policy("p256.pub.pem"),
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::Symlink { ref file } if file == "config.json"),
        "{err}"
    );
}
