//! CI's supply-chain step (`scripts/ci-deny.sh`, deny.toml, the RustSec snapshot) fails on
//! a crate with a known advisory, and passes the same crate once patched.
//!
//! The step runs on a temporary manifest that depends on `crossbeam-epoch = "=0.9.18"`,
//! which RUSTSEC-2026-0204 affects (patched in 0.9.20), and on `=0.9.21`, against a
//! one-advisory database committed beside the test (`tests/fixtures/advisory-db`).
//!
//! Ignored by default: it needs cargo-deny (`scripts/ci-deny.sh` installs it) and the two
//! crate versions (from cargo's cache or crates.io). `.ci/run` runs it with `--ignored`
//! after the supply-chain step has installed cargo-deny; run that way it fails, never
//! skips, when something it needs is missing.

use crate::support::repo_root;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CRATE: &str = "crossbeam-epoch";
const AFFECTED: &str = "0.9.18";
const PATCHED: &str = "0.9.21";
const ADVISORY: &str = "RUSTSEC-2026-0204";

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

/// The committed one-advisory database.
fn advisory_db() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/advisory-db")
}

/// A one-crate workspace depending on `CRATE = "=version"`, with its lockfile (resolved
/// offline first, then from crates.io).
fn probe(dir: &Path, version: &str) -> PathBuf {
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
            return manifest;
        }
    }
    panic!("cannot resolve {CRATE} {version} from cargo's cache or crates.io");
}

fn ci_deny(manifest: &Path) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/ci-deny.sh"))
        .env("WARD_DENY_MANIFEST", manifest)
        .env("WARD_ADVISORY_DB", advisory_db())
        .output()
        .expect("run scripts/ci-deny.sh")
}

#[test]
#[ignore = "needs cargo-deny (scripts/ci-deny.sh installs it) and crates.io or cargo's cache; .ci/run runs it"]
fn ci_deny_step_fails_on_a_crate_with_an_advisory() {
    assert!(
        advisory_db()
            .join("crates")
            .join(CRATE)
            .join(format!("{ADVISORY}.md"))
            .is_file(),
        "the committed advisory database lost {ADVISORY}"
    );
    let dir = tempfile::tempdir().unwrap();
    let affected = probe(&dir.path().join("affected"), AFFECTED);
    let out = ci_deny(&affected);
    let output = text(&out);
    assert!(!out.status.success(), "the step passed:\n{output}");
    assert!(output.contains(ADVISORY), "{output}");
    assert!(output.contains(&format!("{CRATE} v{AFFECTED}")), "{output}");
    assert!(output.contains("advisories FAILED"), "{output}");

    // The same manifest with the patched version passes: the failure was the advisory.
    let patched = probe(&dir.path().join("patched"), PATCHED);
    let out = ci_deny(&patched);
    assert!(out.status.success(), "{}", text(&out));
}
