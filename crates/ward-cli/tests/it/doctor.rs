//! `ward doctor`: clean on the RustSec snapshot; exit 1 naming the crate when an advisory
//! affects a crate compiled into ward; permission and certificate checks.

use std::path::PathBuf;
use std::process::Output;

use crate::support::{copy_dir, ward};
use serde_json::Value;

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Every line doctor prints is one check: `ok:`, `warn:` or `fix:`.
fn assert_lines(out: &Output) {
    for line in stdout(out).lines() {
        assert!(
            line.starts_with("ok: ") || line.starts_with("warn: ") || line.starts_with("fix: "),
            "{line:?}"
        );
    }
}

/// A full RustSec snapshot, named by `WARD_ADVISORY_DB` (CI sets it to the snapshot it
/// keeps beside the repository). Tests never look outside the repository on their own.
fn snapshot() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("WARD_ADVISORY_DB")?);
    assert!(
        path.join("crates").is_dir(),
        "WARD_ADVISORY_DB={} holds no crates/ folder",
        path.display()
    );
    Some(path)
}

/// The registry crates compiled into ward: (name, version).
fn ward_crates() -> Vec<(String, String)> {
    let out = ward(&["version", "--deps", "--json"]);
    assert!(out.status.success());
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    info["crates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["source"].is_null())
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A temporary advisory database: a copy of the snapshot's advisories for every crate ward
/// uses (when the snapshot is there; otherwise none), plus `extra` advisories written by
/// the test.
fn database(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let crates = dir.path().join("crates");
    std::fs::create_dir_all(&crates).unwrap();
    if let Some(snapshot) = snapshot() {
        for (name, _) in ward_crates() {
            let from = snapshot.join("crates").join(&name);
            if from.is_dir() {
                copy_dir(&from, &crates.join(&name));
            }
        }
    }
    for (i, (name, front_matter)) in extra.iter().enumerate() {
        let dir = crates.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "```toml\n{front_matter}\n```\n\n# Fabricated advisory {i} for ward's tests\n\nNot real.\n"
        );
        std::fs::write(dir.join(format!("RUSTSEC-2099-{:04}.md", 9000 + i)), text).unwrap();
    }
    dir
}

fn advisory(id: &str, package: &str, extra: &str, patched: &str) -> String {
    format!(
        "[advisory]\nid = \"{id}\"\npackage = \"{package}\"\ndate = \"2099-01-01\"\n{extra}\n\n\
         [versions]\npatched = [{patched}]\n"
    )
}

fn version_of(name: &str) -> String {
    ward_crates()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("ward does not use {name}"))
}

#[test]
#[ignore = "needs a RustSec snapshot named by WARD_ADVISORY_DB; .ci/run runs it"]
fn clean_on_the_snapshot() {
    let db = snapshot().expect("WARD_ADVISORY_DB names no RustSec snapshot");
    let out = ward(&["doctor", "--advisory-db", db.to_str().unwrap()]);
    assert_lines(&out);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("fix:"), "{text}");
    assert!(text.contains("ok: no advisory in"), "{text}");
}

#[test]
fn fabricated_advisory_fails_naming_the_crate() {
    let version = version_of("serde_json");
    let db = database(&[(
        "serde_json",
        &advisory("RUSTSEC-2099-0001", "serde_json", "", "\">= 99.0.0\""),
    )]);
    let out = ward(&["doctor", "--advisory-db", db.path().to_str().unwrap()]);
    assert_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "fix: crate serde_json {version} has advisory RUSTSEC-2099-0001"
        )),
        "{text}"
    );
    assert!(!text.contains("ok: no advisory"), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: doctor: 1 check(s) need fixing"),
        "{stderr}"
    );
}

#[test]
fn patched_withdrawn_and_other_platform_advisories_pass() {
    let db = database(&[
        // Patched in the version ward uses.
        (
            "serde_json",
            &advisory("RUSTSEC-2099-0002", "serde_json", "", "\">= 1.0.0\""),
        ),
        // Withdrawn.
        (
            "serde_json",
            &advisory(
                "RUSTSEC-2099-0003",
                "serde_json",
                "withdrawn = \"2099-02-01\"",
                "",
            ),
        ),
        // Only for another operating system.
        (
            "serde_json",
            &(advisory("RUSTSEC-2099-0004", "serde_json", "", "")
                + "\n[affected]\nos = [\"no-such-os\"]\n"),
        ),
        // A crate ward does not use.
        (
            "not-a-ward-dependency",
            &advisory("RUSTSEC-2099-0005", "not-a-ward-dependency", "", ""),
        ),
    ]);
    let out = ward(&["doctor", "--advisory-db", db.path().to_str().unwrap()]);
    assert_lines(&out);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("RUSTSEC-2099"), "{text}");
}

#[test]
fn informational_advisory_warns_and_fails_only_when_strict() {
    let version = version_of("anyhow");
    let db = database(&[(
        "anyhow",
        &advisory(
            "RUSTSEC-2099-0006",
            "anyhow",
            "informational = \"unmaintained\"",
            "",
        ),
    )]);
    let dir = db.path().to_str().unwrap();
    let out = ward(&["doctor", "--advisory-db", dir]);
    assert_lines(&out);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "warn: crate anyhow {version} has advisory RUSTSEC-2099-0006 (unmaintained)"
        )),
        "{text}"
    );
    let strict = ward(&["doctor", "--strict", "--advisory-db", dir]);
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn unreadable_advisory_or_database_fails() {
    let db = database(&[("serde_json", "this is = not [valid toml")]);
    let out = ward(&["doctor", "--advisory-db", db.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("fix: cannot read advisory"),
        "{}",
        stdout(&out)
    );

    let empty = tempfile::tempdir().unwrap();
    let out = ward(&["doctor", "--advisory-db", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("is not a RustSec advisory database"));
}

#[cfg(unix)]
#[test]
fn key_and_trust_file_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (key_ok, key_bad) = (file("ok.key", 0o600), file("bad.key", 0o644));
    let (trust_ok, trust_bad) = (file("ok.toml", 0o644), file("bad.toml", 0o664));

    let out = ward(&["doctor", "--key", &key_ok, "--trust", &trust_ok]);
    assert_lines(&out);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("ok: key file {key_ok} is private")),
        "{text}"
    );
    assert!(
        text.contains(&format!("ok: trust policy {trust_ok}")),
        "{text}"
    );

    let out = ward(&["doctor", "--key", &key_bad, "--trust", &trust_bad]);
    assert_lines(&out);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "fix: key file {key_bad} is open to group or others (mode 644): chmod 600"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "fix: trust policy {trust_bad} is writable by group or others (mode 664)"
        )),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 check(s) need fixing"));

    let missing = dir.path().join("missing.key");
    let out = ward(&["doctor", "--key", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("cannot be read"));
}

// Self-signed P-256 certificates made once with Python's `cryptography` (48.0):
// CertificateBuilder().subject_name(CN=...).not_valid_before(...).not_valid_after(...)
// .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()); the keys were discarded.

/// CN=expired.ward.test, valid 2000-01-01 to 2001-01-01.
const EXPIRED_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBNzCB3qADAgECAhQxWnDpODLHqjcFp8MH1gWOt/K4lTAKBggqhkjOPQQDAjAc
MRowGAYDVQQDDBFleHBpcmVkLndhcmQudGVzdDAeFw0wMDAxMDEwMDAwMDBaFw0w
MTAxMDEwMDAwMDBaMBwxGjAYBgNVBAMMEWV4cGlyZWQud2FyZC50ZXN0MFkwEwYH
KoZIzj0CAQYIKoZIzj0DAQcDQgAEPLnGnyxj+IEEAy9/jM8Ya0P04EkCfs5ISlmP
31i7g10TwJCfqORW3Q016xOSq3/QYFCzjnBxigWEV04gZreSaDAKBggqhkjOPQQD
AgNIADBFAiEA0K3XfpJkuvvP6/bxOfXLR4J5lFo/xziKa/mXnpZi7FECIEfTaney
o33YAmW0jiVOD66IydZ8axYboLoFeMNfk76Q
-----END CERTIFICATE-----
";

/// CN=valid.ward.test, valid 2020-01-01 to 9999-12-31.
const VALID_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBNDCB3KADAgECAhQQGo7LIlnmgVbwGxtZocaSqCQzfDAKBggqhkjOPQQDAjAa
MRgwFgYDVQQDDA92YWxpZC53YXJkLnRlc3QwIBcNMjAwMTAxMDAwMDAwWhgPOTk5
OTEyMzEyMzU5NTlaMBoxGDAWBgNVBAMMD3ZhbGlkLndhcmQudGVzdDBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABCMPurLWCVjG6kU1CB9EIHZeUtPHTlX6hvrlZ55U
AaJRULBzdbVcT6Fbek/ZlcD43re5QvX8epITmNFCKVIfA+gwCgYIKoZIzj0EAwID
RwAwRAIgaZG1zaVGwSZxbojWz1AU4hLsV2sVECFvnrW0QLe/ORkCIHDb7gNT2TTo
Hsc4gfFSf/lc48vRmC3RaC3CF5p3skr5
-----END CERTIFICATE-----
";

#[test]
fn tls_certificate_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let valid = write("valid.pem", VALID_PEM);
    let out = ward(&["doctor", "--tls-cert", &valid]);
    assert_lines(&out);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "ok: TLS certificate {valid} (CN=valid.ward.test) is valid until 9999-12-31T23:59:59Z"
        )),
        "{text}"
    );

    let expired = write("expired.pem", EXPIRED_PEM);
    let out = ward(&["doctor", "--tls-cert", &expired]);
    assert_lines(&out);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "fix: TLS certificate {expired} (CN=expired.ward.test) expired on 2001-01-01T00:00:00Z"
        )),
        "{text}"
    );

    // A chain: one line per certificate.
    let chain = write("chain.pem", &format!("{VALID_PEM}{EXPIRED_PEM}"));
    let out = ward(&["doctor", "--tls-cert", &chain]);
    let text = stdout(&out);
    assert!(text.contains("[1 of 2] (CN=valid.ward.test)"), "{text}");
    assert!(
        text.contains("[2 of 2] (CN=expired.ward.test) expired"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));

    let garbage = write("garbage.pem", "not a certificate\n");
    let out = ward(&["doctor", "--tls-cert", &garbage]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(&format!("fix: TLS certificate {garbage}")));
}
