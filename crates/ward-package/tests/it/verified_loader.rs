//! The verified loader (`open_package` under a trust policy) on signed packages: every
//! tampering is refused with its own message and its own audit event, and nothing of a
//! package is parsed before its bytes are verified.

use crate::support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::SystemTime;

use support::{as_written, manifest, weights, weights_with, MODEL_NAME};
use tracing_subscriber::layer::SubscriberExt;
use ward_core::AuditLayer;
use ward_package::signature::{sign, FileSet, PrivateKey, Problem};
use ward_package::{
    open_package, sign_options, write_package, write_signed_package, FileDigest, OpenedPackage,
    PackageError, Trust, TrustPolicy, Verification, GRAPH_FILE, MANIFEST_FILE, SIGNATURE_FILE,
    WEIGHTS_FILE,
};

const GRAPH: &[u8] = br#"{"ward_graph": 1, "inputs": ["data"], "nodes": [{"op": "dense", "inputs": ["data", "fc1_weight", "fc1_bias"], "output": "out"}], "outputs": ["out"]}"#;

fn key() -> PrivateKey {
    PrivateKey::generate_p256().unwrap()
}

/// A package signed with `key` in a fresh temporary directory: (guard, package path).
fn signed_package(key: &PrivateKey) -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("model");
    write_signed_package(&dir, &manifest(), GRAPH, &weights(), Some(key)).unwrap();
    (parent, dir)
}

fn policy_for(key: &PrivateKey) -> Trust {
    Trust::Policy(TrustPolicy::single_key("release", key.public_key()))
}

/// A TOML policy in `dir`: each key's public half is written to `<name>.pub` beside it.
fn toml_policy(dir: &Path, header: &str, keys: &[(&str, &PrivateKey, &str)]) -> Trust {
    let mut text = format!("{header}\n");
    for (name, key, models) in keys {
        fs::write(
            dir.join(format!("{name}.pub")),
            key.public_key().canonical_pem(),
        )
        .unwrap();
        text.push_str(&format!(
            "\n[[key]]\nname = \"{name}\"\npublic_key = \"{name}.pub\"\nmodels = {models}\n"
        ));
    }
    Trust::Policy(TrustPolicy::from_toml(&text, dir).unwrap())
}

/// An audit sink shared with the test.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens `dir` under `trust`, capturing the audit lines it emits, each parsed as JSON.
fn open(
    dir: &Path,
    trust: &Trust,
) -> (Result<OpenedPackage, PackageError>, Vec<serde_json::Value>) {
    // tracing caches whether any subscriber wants each event site. A test of this binary
    // that opens a package with no subscriber of its own can register the audit event's
    // site while only the global no-op one exists, caching "never", as this test's
    // subscriber is being set on another thread: its audit line was then lost (1 run in
    // about 3). With a global subscriber that wants every event, no site is cached so.
    static GLOBAL: Once = Once::new();
    GLOBAL.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    let sink = Sink::default();
    let subscriber = tracing_subscriber::registry().with(AuditLayer::new(sink.clone()));
    let result = tracing::subscriber::with_default(subscriber, || {
        open_package(dir, trust, SystemTime::now(), &Default::default())
    });
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect();
    (result, lines)
}

/// The problems of a refusal; anything else fails the test.
fn refusal(dir: &Path, result: Result<OpenedPackage, PackageError>) -> Vec<Problem> {
    match result {
        Err(PackageError::Refused { package, problems }) => {
            assert_eq!(package, dir);
            problems
        }
        Err(other) => panic!("expected a refusal, got {other:?}: {other}"),
        Ok(o) => panic!("expected a refusal, got {:?}", o.verification),
    }
}

/// Asserts one `package.refused` audit line per entry of `reasons`, in order, about `dir`.
fn assert_refused(dir: &Path, audit: &[serde_json::Value], reasons: &[&str]) {
    let got: Vec<&str> = audit
        .iter()
        .map(|l| {
            assert_eq!(l["event"], "package.refused", "{l}");
            assert_eq!(l["subject"], dir.display().to_string(), "{l}");
            assert!(l["detail"].as_str().is_some_and(|d| !d.is_empty()), "{l}");
            l["reason"].as_str().unwrap()
        })
        .collect();
    assert_eq!(got, reasons, "{audit:?}");
}

fn assert_signed_by(
    result: Result<OpenedPackage, PackageError>,
    signers: &[&str],
) -> OpenedPackage {
    let opened = result.unwrap_or_else(|e| panic!("expected Ok, got {e}"));
    match &opened.verification {
        Verification::Signed(v) => {
            assert_eq!(v.model_name(), MODEL_NAME);
            let mut got = v.signers().to_vec();
            got.sort();
            assert_eq!(got, signers);
            assert!(v.warnings().is_empty(), "{:?}", v.warnings());
        }
        Verification::Unverified => panic!("expected a signed verification"),
    }
    opened
}

fn assert_verified_line(dir: &Path, audit: &[serde_json::Value], signer: &str) {
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["event"], "package.verified");
    assert_eq!(audit[0]["subject"], dir.display().to_string());
    assert_eq!(audit[0]["signer"], signer);
    assert!(audit[0].get("reason").is_none(), "{}", audit[0]);
}

/// Replaces byte `at` of `dir/file`; returns (bytes before, bytes after).
fn change_byte(dir: &Path, file: &str, at: usize, to: u8) -> (Vec<u8>, Vec<u8>) {
    let path = dir.join(file);
    let before = fs::read(&path).unwrap();
    let mut after = before.clone();
    assert_ne!(after[at], to, "{file}: byte {at} is already {to:#x}");
    after[at] = to;
    fs::write(&path, &after).unwrap();
    (before, after)
}

fn sha256_hex(bytes: &[u8]) -> String {
    FileDigest::of("x", bytes).sha256
}

#[test]
fn a_valid_package_opens_with_one_verified_audit_line() {
    let key = key();
    let (_parent, dir) = signed_package(&key);
    let (result, audit) = open(&dir, &policy_for(&key));
    let opened = assert_signed_by(result, &["release"]);
    assert_eq!(opened.files.manifest, as_written(manifest(), &dir));
    assert_eq!(opened.files.graph_json, GRAPH);
    assert_eq!(opened.files.weights.len(), 3);
    assert_verified_line(&dir, &audit, "release");
}

#[test]
fn one_changed_byte_in_any_file_is_refused_before_parsing() {
    // Each change makes the file unparsable: were it parsed before verification, the
    // error would be a parse error, not a refusal.
    let cases: [(&str, usize, u8); 3] = [
        // `{` -> `x`: ward.json is no longer JSON.
        (MANIFEST_FILE, 0, b'x'),
        // `{` -> `x`: graph.json is no longer JSON.
        (GRAPH_FILE, 0, b'x'),
        // The safetensors header must start with `{` at byte 8.
        (WEIGHTS_FILE, 8, b'x'),
    ];
    for (file, at, to) in cases {
        let key = key();
        let (_parent, dir) = signed_package(&key);
        let (before, after) = change_byte(&dir, file, at, to);

        let (result, audit) = open(&dir, &policy_for(&key));
        let problems = refusal(&dir, result);
        let expected = sha256_hex(&before);
        let actual = sha256_hex(&after);
        assert_eq!(
            problems,
            vec![Problem::DigestMismatch {
                signature: SIGNATURE_FILE.into(),
                file: file.into(),
                range: None,
                algorithm: "sha256",
                expected: expected.clone(),
                actual: actual.clone(),
            }],
            "{file}"
        );
        let message = problems[0].to_string();
        assert!(message.contains(file), "{message}");
        assert!(message.contains(&expected), "{message}");
        assert!(message.contains(&actual), "{message}");
        assert_refused(&dir, &audit, &["digest-mismatch"]);
        let detail = audit[0]["detail"].as_str().unwrap();
        assert!(detail.contains(file) && detail.contains(&expected) && detail.contains(&actual));

        // The change does break parsing: unverified, the same package fails to parse.
        let (unverified, _) = open(&dir, &Trust::AllowUnsigned);
        match file {
            MANIFEST_FILE => assert!(
                matches!(
                    unverified.as_ref().map_err(|e| e.cause()),
                    Err(PackageError::ManifestJson { .. })
                ),
                "{unverified:?}"
            ),
            WEIGHTS_FILE => assert!(
                matches!(
                    unverified.as_ref().map_err(|e| e.cause()),
                    Err(PackageError::WeightsHeaderStart)
                ),
                "{unverified:?}"
            ),
            // open_package does not parse the graph; it is not JSON any more.
            _ => assert!(serde_json::from_slice::<serde_json::Value>(&after).is_err()),
        }
    }
}

#[test]
fn an_added_file_is_refused() {
    let key = key();
    let (_parent, dir) = signed_package(&key);
    fs::write(dir.join("extra.bin"), b"\0payload").unwrap();
    let (result, audit) = open(&dir, &policy_for(&key));
    let err = result.unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::UnexpectedFile { file, .. } if file == "extra.bin"),
        "{err}"
    );
    assert_refused(&dir, &audit, &["extra-file"]);
    assert!(audit[0]["detail"].as_str().unwrap().contains("extra.bin"));
}

#[test]
fn a_removed_file_is_refused() {
    let key = key();
    let (_parent, dir) = signed_package(&key);
    fs::remove_file(dir.join(GRAPH_FILE)).unwrap();
    let (result, audit) = open(&dir, &policy_for(&key));
    let err = result.unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::MissingFile { file: GRAPH_FILE }),
        "{err}"
    );
    assert_refused(&dir, &audit, &["missing-file"]);
    assert!(audit[0]["detail"].as_str().unwrap().contains(GRAPH_FILE));
}

#[test]
fn a_renamed_model_file_is_refused() {
    let key = key();
    let (_parent, dir) = signed_package(&key);
    fs::rename(dir.join(WEIGHTS_FILE), dir.join("weights.bin")).unwrap();
    let (result, audit) = open(&dir, &policy_for(&key));
    let err = result.unwrap_err();
    // The listing meets the unknown name before it notices the missing weights.
    assert!(
        matches!(err.cause(), PackageError::UnexpectedFile { file, .. } if file == "weights.bin"),
        "{err}"
    );
    assert_refused(&dir, &audit, &["extra-file"]);
}

#[test]
fn a_renamed_signature_file_still_verifies() {
    let key = key();
    let (_parent, dir) = signed_package(&key);
    fs::rename(dir.join(SIGNATURE_FILE), dir.join("model.2.sig")).unwrap();
    let (result, audit) = open(&dir, &policy_for(&key));
    assert_signed_by(result, &["release"]);
    assert_verified_line(&dir, &audit, "release");
}

#[cfg(unix)]
#[test]
fn a_symlink_to_an_identical_copy_is_refused() {
    let key = key();
    let (parent, dir) = signed_package(&key);
    let outside = parent.path().join("weights-copy.safetensors");
    fs::copy(dir.join(WEIGHTS_FILE), &outside).unwrap();
    fs::remove_file(dir.join(WEIGHTS_FILE)).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join(WEIGHTS_FILE)).unwrap();
    let (result, audit) = open(&dir, &policy_for(&key));
    let err = result.unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::Symlink { file } if file == WEIGHTS_FILE),
        "{err}"
    );
    assert_refused(&dir, &audit, &["symlink"]);
    assert!(audit[0]["detail"].as_str().unwrap().contains(WEIGHTS_FILE));
}

#[test]
fn the_signature_of_another_package_is_refused() {
    let key = key();
    let (parent, dir) = signed_package(&key);
    // Another model by the same signer: same manifest and graph, other weights.
    let other = parent.path().join("other");
    write_signed_package(&other, &manifest(), GRAPH, &weights_with(2.0), Some(&key)).unwrap();
    let other_weights = fs::read(other.join(WEIGHTS_FILE)).unwrap();
    let ours = fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    assert_ne!(other_weights, ours);
    fs::copy(other.join(SIGNATURE_FILE), dir.join(SIGNATURE_FILE)).unwrap();
    // It verifies where it belongs.
    let (result, _) = open(&other, &policy_for(&key));
    assert_signed_by(result, &["release"]);

    let (result, audit) = open(&dir, &policy_for(&key));
    let problems = refusal(&dir, result);
    assert_eq!(
        problems,
        vec![Problem::DigestMismatch {
            signature: SIGNATURE_FILE.into(),
            file: WEIGHTS_FILE.into(),
            range: None,
            algorithm: "sha256",
            expected: sha256_hex(&other_weights),
            actual: sha256_hex(&ours),
        }]
    );
    assert_refused(&dir, &audit, &["digest-mismatch"]);
}

#[test]
fn a_key_the_policy_does_not_list_is_refused() {
    let signer = key();
    let trusted = key();
    let (_parent, dir) = signed_package(&signer);
    let (result, audit) = open(&dir, &policy_for(&trusted));
    let problems = refusal(&dir, result);
    assert_eq!(
        problems,
        vec![Problem::UntrustedKey {
            signature: SIGNATURE_FILE.into(),
            hint: signer.public_key().hint(),
        }]
    );
    assert_refused(&dir, &audit, &["untrusted-key"]);
    assert!(audit[0]["detail"]
        .as_str()
        .unwrap()
        .contains(&signer.public_key().hint()));
}

#[test]
fn a_signer_not_allowed_for_the_model_name_is_refused() {
    let key = key();
    let (parent, dir) = signed_package(&key);
    let trust = toml_policy(parent.path(), "", &[("release", &key, r#"["other-*"]"#)]);
    let (result, audit) = open(&dir, &trust);
    let problems = refusal(&dir, result);
    assert_eq!(
        problems,
        vec![Problem::NotAllowed {
            signature: SIGNATURE_FILE.into(),
            signer: "release".into(),
            model: MODEL_NAME.into(),
        }]
    );
    assert_refused(&dir, &audit, &["signer-not-allowed"]);
    assert_eq!(audit[0]["signer"], "release");
    assert!(audit[0]["detail"].as_str().unwrap().contains(MODEL_NAME));

    // The same key, allowed to sign the name, verifies.
    let trust = toml_policy(parent.path(), "", &[("release", &key, r#"["tiny-*"]"#)]);
    let (result, audit) = open(&dir, &trust);
    assert_signed_by(result, &["release"]);
    assert_verified_line(&dir, &audit, "release");
}

/// Writes `model.2.sig`: `key` over the package's three files as they are on disk.
fn add_second_signature(dir: &Path, key: &PrivateKey) {
    let bytes: Vec<(String, Vec<u8>)> = [MANIFEST_FILE, GRAPH_FILE, WEIGHTS_FILE]
        .iter()
        .map(|f| (f.to_string(), fs::read(dir.join(f)).unwrap()))
        .collect();
    let files = FileSet::new(bytes.iter().map(|(n, b)| (n.clone(), b.as_slice())));
    let options = sign_options(MODEL_NAME, &[SIGNATURE_FILE.into(), "model.2.sig".into()]);
    fs::write(dir.join("model.2.sig"), sign(&files, key, &options)).unwrap();
}

/// The refusal when only `first` of [`two_of_two`] signed.
fn only_first_of_two() -> Vec<Problem> {
    vec![Problem::ThresholdNotMet {
        have: 1,
        need: 2,
        signers: vec!["first".into()],
    }]
}

/// A policy that needs both `first` and `second`, for any model.
fn two_of_two(dir: &Path, first: &PrivateKey, second: &PrivateKey) -> Trust {
    toml_policy(
        dir,
        "threshold = 2",
        &[("first", first, r#"["*"]"#), ("second", second, r#"["*"]"#)],
    )
}

#[test]
fn a_threshold_needs_distinct_signers() {
    let first = key();
    let second = key();
    let (parent, dir) = signed_package(&first);
    let trust = two_of_two(parent.path(), &first, &second);

    // One signature of two.
    let (result, audit) = open(&dir, &trust);
    assert_eq!(refusal(&dir, result), only_first_of_two());
    assert_refused(&dir, &audit, &["threshold-not-met"]);

    // The other key signs too.
    add_second_signature(&dir, &second);
    let (result, audit) = open(&dir, &trust);
    assert_signed_by(result, &["first", "second"]);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["event"], "package.verified");
    let mut signers: Vec<&str> = audit[0]["signer"].as_str().unwrap().split(',').collect();
    signers.sort();
    assert_eq!(signers, ["first", "second"]);

    // The same key twice counts once.
    fs::remove_file(dir.join("model.2.sig")).unwrap();
    add_second_signature(&dir, &first);
    let (result, audit) = open(&dir, &trust);
    assert_eq!(refusal(&dir, result), only_first_of_two());
    assert_refused(&dir, &audit, &["threshold-not-met"]);
}

#[test]
fn an_unsigned_package_is_refused_under_a_policy() {
    let key = key();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("model");
    write_package(&dir, &manifest(), GRAPH, &weights()).unwrap();
    let (result, audit) = open(&dir, &policy_for(&key));
    assert_eq!(refusal(&dir, result), vec![Problem::Unsigned]);
    assert_refused(&dir, &audit, &["unsigned"]);
}

#[test]
fn an_empty_policy_trusts_nothing() {
    let key = key();
    let (parent, dir) = signed_package(&key);
    let trust = Trust::Policy(TrustPolicy::from_toml("", parent.path()).unwrap());
    let (result, audit) = open(&dir, &trust);
    assert_eq!(refusal(&dir, result), vec![Problem::NothingTrusted]);
    assert_refused(&dir, &audit, &["nothing-trusted"]);
}

#[test]
fn allow_unsigned_loads_with_an_audit_line() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("model");
    write_package(&dir, &manifest(), GRAPH, &weights()).unwrap();
    let (result, audit) = open(&dir, &Trust::AllowUnsigned);
    let opened = result.unwrap();
    assert!(matches!(opened.verification, Verification::Unverified));
    assert_eq!(opened.files.manifest, as_written(manifest(), &dir));
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["event"], "package.unverified");
    assert_eq!(audit[0]["subject"], dir.display().to_string());
    assert_eq!(audit[0]["reason"], "allow-unsigned");
}

#[test]
fn an_altered_signature_is_refused() {
    let key = key();
    let (_parent, dir) = signed_package(&key);
    let path = dir.join(SIGNATURE_FILE);
    let mut bundle: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let sig = bundle["dsseEnvelope"]["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_string();
    // A character in the middle (inside the r integer of the DER signature), swapped for
    // another base64 character: still valid base64, still valid JSON.
    let at = sig.len() / 3;
    let mut chars: Vec<char> = sig.chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    let altered: String = chars.into_iter().collect();
    assert_ne!(altered, sig);
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = altered.into();
    fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();

    let (result, audit) = open(&dir, &policy_for(&key));
    assert_eq!(
        refusal(&dir, result),
        vec![Problem::BadSignature {
            signature: SIGNATURE_FILE.into(),
            signer: Some("release".into()),
        }]
    );
    assert_refused(&dir, &audit, &["bad-signature"]);
    assert_eq!(audit[0]["signer"], "release");
}

/// One trusted signer of the two a policy requires cannot get its bytes parsed: the
/// threshold is decided before the manifest is read.
#[test]
fn a_threshold_is_met_before_anything_is_parsed() {
    let first = key();
    let second = key();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("model");
    write_package(&dir, &manifest(), GRAPH, &weights()).unwrap();
    // A manifest that does not parse, signed by one trusted key.
    fs::write(dir.join(MANIFEST_FILE), b"not json").unwrap();
    add_second_signature(&dir, &first);
    fs::rename(dir.join("model.2.sig"), dir.join(SIGNATURE_FILE)).unwrap();
    let trust = two_of_two(parent.path(), &first, &second);
    let (result, audit) = open(&dir, &trust);
    assert_eq!(refusal(&dir, result), only_first_of_two());
    assert_refused(&dir, &audit, &["threshold-not-met"]);

    // With both signatures the bytes are trusted, and the parse failure is audited.
    add_second_signature(&dir, &second);
    let (result, audit) = open(&dir, &trust);
    assert!(matches!(
        result.as_ref().map_err(|e| e.cause()),
        Err(PackageError::ManifestJson { .. })
    ));
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["reason"], "malformed-package");
}
