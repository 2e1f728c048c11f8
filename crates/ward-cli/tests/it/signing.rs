//! `ward keygen`, `ward sign`, `ward verify`, and the trust flags of the commands that open
//! packages: exit codes, messages and audit lines.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{repo_root as repo, stderr, ward};
use base64ct::Encoding;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A new key pair `dir/NAME.{key,pub}`.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let o = ward(&["keygen", "--out", s(dir), "--name", name]);
    assert!(o.status.success(), "{}", stderr(&o));
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

/// A copy of the MLP's MXNet export folder.
fn mxnet_folder(dir: &Path) -> PathBuf {
    let src = repo().join("tests/fixtures/models/mlp");
    let dst = dir.join("mlp-export");
    fs::create_dir_all(&dst).unwrap();
    for f in ["model-symbol.json", "model-0000.params"] {
        fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst
}

/// `o` exited with `code` and said `needle` on stderr.
fn expect_failure(o: &Output, code: i32, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{e}");
    assert!(e.contains(needle), "expected {needle:?} in: {e}");
}

fn audit_lines(log: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn keygen_writes_a_private_key_only_the_owner_can_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(&tmp.path().join("keys"), "release");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(fs::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    // Never overwritten.
    let o = ward(&[
        "keygen",
        "--out",
        s(&tmp.path().join("keys")),
        "--name",
        "release",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // A key others can read is refused, as ssh does, and nothing is written.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let folder = mxnet_folder(tmp.path());
    let o = ward(&["sign", s(&folder), "--key", s(&key)]);
    expect_failure(&o, 1, "readable by others (mode 644)");
    assert!(!folder.join("model.sig").exists());
}

#[test]
fn sign_then_verify_then_tamper() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path(), "release");
    let folder = mxnet_folder(tmp.path());
    let o = ward(&["sign", s(&folder), "--key", s(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Deterministic: the same folder and key give the same bytes.
    let again = tmp.path().join("again.sig");
    let o = ward(&[
        "sign",
        s(&folder),
        "--key",
        s(&key),
        "--signature",
        s(&again),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = fs::read(folder.join("model.sig")).unwrap();
    let second = fs::read(&again).unwrap();
    assert_eq!(first.len(), second.len());
    // (The second run saw model.sig in the folder and recorded it as ignored, so compare
    // the statements' resources, which must be equal.)
    let statement = |bundle: &[u8]| {
        let b: serde_json::Value = serde_json::from_slice(bundle).unwrap();
        let payload = b["dsseEnvelope"]["payload"].as_str().unwrap().to_string();
        let bytes = base64ct::Base64::decode_vec(&payload).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["predicate"]["resources"].clone()
    };
    assert_eq!(statement(&first), statement(&second));
    // An existing signature is never overwritten.
    let o = ward(&["sign", s(&folder), "--key", s(&key)]);
    expect_failure(&o, 1, "already exists");
    assert_eq!(fs::read(folder.join("model.sig")).unwrap(), first);

    let log = tmp.path().join("audit.log");
    let verify = || {
        ward(&[
            "--audit-log",
            s(&log),
            "verify",
            s(&folder),
            "--trust",
            s(&public),
        ])
    };
    let o = verify();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("signed by release (1 of 1 required)"));
    assert_eq!(audit_lines(&log)[0]["event"], "package.verified");

    // One byte changed, a file added: exit 3, one line per problem, one audit line each.
    let params = folder.join("model-0000.params");
    let mut bytes = fs::read(&params).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&params, &bytes).unwrap();
    fs::write(folder.join("notes.txt"), b"hello").unwrap();
    let o = verify();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    let refused: Vec<&str> = e.lines().filter(|l| l.starts_with("refused: ")).collect();
    assert_eq!(refused.len(), 2, "{e}");
    assert!(
        refused[0].contains("notes.txt is not covered by the signature"),
        "{e}"
    );
    assert!(
        refused[1].contains("model-0000.params was modified: signed sha256 ")
            && refused[1].contains(", found "),
        "{e}"
    );
    let lines = audit_lines(&log);
    let reasons: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["extra-file", "digest-mismatch"]);
    assert!(lines[1..].iter().all(|l| l["event"] == "package.refused"));

    // Another key: refused as untrusted.
    let (_, other) = keygen(tmp.path(), "other");
    let o = ward(&[
        "verify",
        s(&folder),
        "--trust",
        s(&other),
        "--audit-log",
        s(&log),
    ]);
    expect_failure(&o, 3, "signed by a key the trust policy does not list");
}

#[test]
fn the_conformance_vectors_through_the_cli() {
    let v = repo().join("tests/fixtures/model-signing");
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("audit.log");
    let o = ward(&[
        "verify",
        s(&v.join("model")),
        "--trust",
        s(&v.join("keys/p521.pub.pem")),
        "--signature",
        s(&v.join("signatures/p521-cli.sig")),
        "--audit-log",
        s(&log),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A TOML policy trusting the old CA: the expired leaf is refused.
    fs::copy(v.join("pki/oldca.crt.pem"), tmp.path().join("oldca.pem")).unwrap();
    let policy = tmp.path().join("policy.toml");
    fs::write(
        &policy,
        "[[ca]]\nname = \"old\"\ncertificate = \"oldca.pem\"\nmodels = [\"*\"]\n",
    )
    .unwrap();
    let o = ward(&[
        "verify",
        s(&v.join("model")),
        "--trust",
        s(&policy),
        "--signature",
        s(&v.join("signatures/p256-cert-expired-leaf.sig")),
        "--audit-log",
        s(&log),
    ]);
    expect_failure(&o, 3, "the signing certificate has expired");
    assert_eq!(audit_lines(&log)[1]["reason"], "untrusted-certificate");

    // An Ed25519 key is refused with a clear message.
    let o = ward(&[
        "verify",
        s(&v.join("model")),
        "--trust",
        s(&v.join("keys/ed25519.pub.pem")),
    ]);
    expect_failure(&o, 1, "Ed25519 keys are not supported");
}

#[test]
fn packages_open_only_with_a_trust_decision() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = mxnet_folder(tmp.path());
    let pkg = tmp.path().join("mlp.ward");
    let o = ward(&[
        "import",
        "mxnet",
        "--symbol",
        s(&folder.join("model-symbol.json")),
        "--params",
        s(&folder.join("model-0000.params")),
        "--input",
        "data:float32:-1,784",
        "--out",
        s(&pkg),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // No flag: refused, saying what to do.
    let o = ward(&["inspect", s(&pkg)]);
    expect_failure(&o, 1, "no trust policy: pass --trust");
    // A policy, but the package is unsigned: exit 3.
    let (_, public) = keygen(tmp.path(), "release");
    let log = tmp.path().join("audit.log");
    let o = ward(&[
        "inspect",
        s(&pkg),
        "--trust",
        s(&public),
        "--audit-log",
        s(&log),
    ]);
    expect_failure(&o, 3, "refused: the model is not signed");
    assert_eq!(audit_lines(&log)[0]["reason"], "unsigned");
    // --allow-unsigned: loud warning and an audit line.
    let o = ward(&[
        "inspect",
        s(&pkg),
        "--allow-unsigned",
        "--audit-log",
        s(&log),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("WARNING: --allow-unsigned"),
        "{}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("NOT VERIFIED"));
    assert_eq!(audit_lines(&log)[1]["event"], "package.unverified");
}

#[test]
fn import_verifies_a_signed_mxnet_export_before_parsing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path(), "trainer");
    let folder = mxnet_folder(tmp.path());
    let o = ward(&["sign", s(&folder), "--key", s(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let import = |out: &Path| {
        ward(&[
            "import",
            "mxnet",
            "--symbol",
            s(&folder.join("model-symbol.json")),
            "--params",
            s(&folder.join("model-0000.params")),
            "--input",
            "data:float32:-1,784",
            "--trust",
            s(&public),
            "--sign-key",
            s(&key),
            "--out",
            s(out),
            "--audit-log",
            s(&tmp.path().join("audit.log")),
        ])
    };
    let pkg = tmp.path().join("ok.ward");
    let o = import(&pkg);
    assert!(o.status.success(), "{}", stderr(&o));
    // The package it wrote is signed by the same key.
    let o = ward(&["verify", s(&pkg), "--trust", s(&public)]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A symbol file truncated to garbage is refused as tampered, not as a parse error.
    fs::write(folder.join("model-symbol.json"), b"{\"nodes\": [").unwrap();
    let bad = tmp.path().join("bad.ward");
    let o = import(&bad);
    expect_failure(&o, 3, "model-symbol.json was modified");
    assert!(!bad.exists());
}
