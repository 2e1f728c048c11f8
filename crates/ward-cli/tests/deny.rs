//! CI's supply-chain step (`scripts/ci-deny.sh`, deny.toml, the RustSec snapshot) fails on
//! a crate with a known advisory, and passes the same crate once patched.
//!
//! The step runs on a temporary manifest that depends on `crossbeam-epoch = "=0.9.18"`,
//! which RUSTSEC-2026-0204 in the snapshot affects (patched in 0.9.20), and on `=0.9.21`.
//! Skipped, saying why, when cargo-deny is not installed (`scripts/ci-deny.sh` installs it,
//! and CI runs that step before the tests), when the snapshot is not beside the repository,
//! or when the crate can be had neither from cargo's cache nor from crates.io.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CRATE: &str = "crossbeam-epoch";
const AFFECTED: &str = "0.9.18";
const PATCHED: &str = "0.9.21";
const ADVISORY: &str = "RUSTSEC-2026-0204";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    let deny = Command::new(cargo()).args(["deny", "--version"]).output();
    if !deny.is_ok_and(|o| o.status.success()) {
        return Some("cargo-deny is not installed (scripts/ci-deny.sh installs it)".into());
    }
    let snapshot = repo_root().join("../shared/advisory-db/crates").join(CRATE);
    if !snapshot.join(format!("{ADVISORY}.md")).is_file() {
        return Some(format!(
            "no {ADVISORY} in the RustSec snapshot at {}",
            snapshot.display()
        ));
    }
    None
}

/// A one-crate workspace depending on `CRATE = "=version"`, with its lockfile; `None` when
/// the crate cannot be resolved (offline first, then from crates.io).
fn probe(dir: &Path, version: &str) -> Option<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "").unwrap();
    std::fs::write(
        &manifest,
        format!(
            "[package]\nname = \"deny-probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
             license = \"Apache-2.0\"\npublish = false\n\n[dependencies]\n\
             {CRATE} = \"={version}\"\n\n[workspace]\n"
        ),
    )
    .unwrap();
    for offline in [true, false] {
        let mut fetch = Command::new(cargo());
        fetch.arg("fetch").arg("--manifest-path").arg(&manifest);
        if offline {
            fetch.arg("--offline");
        }
        if fetch.output().is_ok_and(|o| o.status.success()) {
            return Some(manifest);
        }
    }
    None
}

fn ci_deny(manifest: &Path) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/ci-deny.sh"))
        .env("WARD_DENY_MANIFEST", manifest)
        .output()
        .expect("run scripts/ci-deny.sh")
}

#[test]
fn ci_deny_step_fails_on_a_crate_with_an_advisory() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(affected) = probe(&dir.path().join("affected"), AFFECTED) else {
        eprintln!("skipped: cannot resolve {CRATE} {AFFECTED} (offline cache or crates.io)");
        return;
    };
    let out = ci_deny(&affected);
    let output = text(&out);
    assert!(!out.status.success(), "the step passed:\n{output}");
    assert!(output.contains(ADVISORY), "{output}");
    assert!(output.contains(&format!("{CRATE} v{AFFECTED}")), "{output}");
    assert!(output.contains("advisories FAILED"), "{output}");

    // The same manifest with the patched version passes: the failure was the advisory.
    let Some(patched) = probe(&dir.path().join("patched"), PATCHED) else {
        eprintln!("skipped: cannot resolve {CRATE} {PATCHED} (offline cache or crates.io)");
        return;
    };
    let out = ci_deny(&patched);
    assert!(out.status.success(), "{}", text(&out));
}
