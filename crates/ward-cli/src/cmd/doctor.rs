//! `ward doctor`: checks what ward can check about its own deployment, one line each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use ward_core::privilege::{effective_user, EffectiveUser};

use super::version::{crates, EmbeddedCrate};

/// Certificates that expire within this many days get a warning.
pub const CERT_WARN_DAYS: u64 = 30;
/// The largest advisory file read; RustSec advisories are a few KiB.
pub const MAX_ADVISORY_BYTES: u64 = 1 << 20;
/// The largest certificate file read.
pub const MAX_CERT_BYTES: u64 = 1 << 20;

/// Check this deployment: root, key, secret and trust file permissions, checkpoints, TLS expiry, advisories
///
/// Checks running as root, the permissions of the key and trust policy files given, the
/// expiry of the TLS certificates given, and, given a RustSec advisory database, whether
/// any crate compiled into this binary has an advisory. Prints one line per check:
/// `ok:`, `warn:` or `fix:` (saying what to change). Exits 1 if any line says `fix:`
/// (with --strict, also on `warn:`).
///
/// Examples:
///   ward doctor --advisory-db advisory-db/
///   ward doctor --key signing.key --trust trust.toml --tls-cert server.pem
///   ward doctor --secret checkpoint-pass.txt --checkpoints runs/lenet
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct DoctorArgs {
    /// A RustSec advisory database: a checkout of the advisory-db repository (the directory
    /// holding its `crates/` folder). Without it, crates are not checked.
    #[arg(long, value_name = "DIR")]
    advisory_db: Option<PathBuf>,
    /// A private key file ward uses: must not be readable by group or others.
    #[arg(long = "key", value_name = "FILE")]
    keys: Vec<PathBuf>,
    /// A trust policy file: must not be writable by group or others.
    #[arg(long = "trust", value_name = "FILE")]
    trust: Vec<PathBuf>,
    /// A checkpoint passphrase file or age identity file: must not be readable by group or
    /// others.
    #[arg(long = "secret", value_name = "FILE")]
    secrets: Vec<PathBuf>,
    /// A training run's directory (or its checkpoints/): its checkpoints should be
    /// readable by their owner alone.
    #[arg(long = "checkpoints", value_name = "DIR")]
    checkpoints: Vec<PathBuf>,
    /// A PEM certificate (or chain) ward serves: must not be expired or expire soon.
    #[arg(long = "tls-cert", value_name = "FILE")]
    tls_certs: Vec<PathBuf>,
    /// Treat warnings (running as root, informational advisories, certificates near
    /// expiry, no advisory database) as failures.
    #[arg(long)]
    strict: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    Ok,
    Warn,
    Fix,
}

/// The lines printed so far, counted by level.
#[derive(Default)]
struct Report {
    warn: usize,
    fix: usize,
}

impl Report {
    fn line(&mut self, level: Level, message: &str) {
        let prefix = match level {
            Level::Ok => "ok",
            Level::Warn => {
                self.warn += 1;
                "warn"
            }
            Level::Fix => {
                self.fix += 1;
                "fix"
            }
        };
        // One line each, whatever a file name contains.
        let message: String = message
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        println!("{prefix}: {message}");
    }
}

pub fn run(args: DoctorArgs) -> Result<()> {
    let mut report = Report::default();
    let (level, message) = check_user();
    report.line(level, &message);
    for key in &args.keys {
        for (level, message) in check_key_file(key) {
            report.line(level, &message);
        }
    }
    for secret in &args.secrets {
        for (level, message) in check_secret_file(secret) {
            report.line(level, &message);
        }
    }
    for run in &args.checkpoints {
        for (level, message) in check_checkpoints(run) {
            report.line(level, &message);
        }
    }
    for policy in &args.trust {
        for (level, message) in check_trust_file(policy) {
            report.line(level, &message);
        }
    }
    let now = SystemTime::now();
    for cert in &args.tls_certs {
        for (level, message) in check_tls_cert(cert, now) {
            report.line(level, &message);
        }
    }
    match &args.advisory_db {
        Some(db) => {
            for (level, message) in check_advisories(db, crates()) {
                report.line(level, &message);
            }
        }
        None => report.line(
            Level::Warn,
            "crates not checked against advisories: pass --advisory-db DIR (a RustSec advisory-db checkout)",
        ),
    }
    let failing = report.fix + if args.strict { report.warn } else { 0 };
    if failing > 0 {
        bail!("doctor: {failing} check(s) need fixing");
    }
    Ok(())
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Running as root: ward needs no privileges. A warning, not a failure, because doctor
/// cannot tell a container's mapped root from the real one. The uid comes from the one
/// root check ward has (`ward_core::privilege`, which `ward serve` refuses by).
fn check_user() -> (Level, String) {
    match effective_user() {
        EffectiveUser::Root => (
            Level::Warn,
            "running as root (effective uid 0): run ward as an unprivileged user; it needs no privileges".into(),
        ),
        EffectiveUser::Unknown => (
            Level::Warn,
            "cannot tell whether ward runs as root on this platform (ward serve refuses to start without --allow-root)".into(),
        ),
        EffectiveUser::Unprivileged { uid } => match effective_capabilities() {
            Some(caps) if !caps.trim_start_matches('0').is_empty() => (
                Level::Warn,
                format!("running with capabilities (CapEff {caps}) as uid {uid}: ward needs none; drop them"),
            ),
            _ => (Level::Ok, format!("not running as root (uid {uid})")),
        },
    }
}

/// The effective capabilities of this process (Linux: `CapEff` of `/proc/self/status`, in
/// hex), or `None` where they cannot be read. Capabilities are not the root check: a
/// process with no uid 0 may still hold some, which ward never needs.
fn effective_capabilities() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|rest| rest.trim().to_string())
}

/// The permission bits of `path` (following links), or a `fix:` line saying why not.
#[cfg(unix)]
fn mode_of(path: &Path, what: &str) -> std::result::Result<u32, (Level, String)> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(m.permissions().mode() & 0o7777),
        Ok(_) => Err((
            Level::Fix,
            format!("{what} {} is not a regular file", shown(path)),
        )),
        Err(e) => Err((
            Level::Fix,
            format!("{what} {} cannot be read: {e}", shown(path)),
        )),
    }
}

/// A directory anyone may write to (and that is not sticky) lets anyone replace the file.
#[cfg(unix)]
fn check_parent_dir(path: &Path, what: &str) -> Option<(Level, String)> {
    use std::os::unix::fs::PermissionsExt;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mode = std::fs::metadata(parent).ok()?.permissions().mode();
    (mode & 0o002 != 0 && mode & 0o1000 == 0).then(|| {
        (
            Level::Fix,
            format!(
                "directory {} of {what} {} is writable by others (mode {:o}): anyone can replace the file; chmod o-w {}",
                shown(parent),
                shown(path),
                mode & 0o7777,
                shown(parent)
            ),
        )
    })
}

/// What a file's mode must not allow, and what each outcome says.
#[cfg(unix)]
struct ModeRule {
    what: &'static str,
    /// Permission bits that must be clear.
    forbidden: u32,
    problem: &'static str,
    remedy: &'static str,
    fine: &'static str,
}

#[cfg(unix)]
fn check_mode(path: &Path, rule: &ModeRule) -> Vec<(Level, String)> {
    let mode = match mode_of(path, rule.what) {
        Ok(m) => m,
        Err(line) => return vec![line],
    };
    let what = rule.what;
    let mut lines = vec![if mode & rule.forbidden != 0 {
        (
            Level::Fix,
            format!(
                "{what} {} {} (mode {mode:o}): {} {}",
                shown(path),
                rule.problem,
                rule.remedy,
                shown(path)
            ),
        )
    } else {
        (
            Level::Ok,
            format!("{what} {} {} (mode {mode:o})", shown(path), rule.fine),
        )
    }];
    lines.extend(check_parent_dir(path, what));
    lines
}

/// Key files must not be readable (or writable) by group or others.
#[cfg(unix)]
pub fn check_key_file(path: &Path) -> Vec<(Level, String)> {
    check_mode(
        path,
        &ModeRule {
            what: "key file",
            forbidden: 0o077,
            problem: "is open to group or others",
            remedy: "chmod 600",
            fine: "is private",
        },
    )
}

/// Passphrase and age identity files, like keys, must be private.
#[cfg(unix)]
pub fn check_secret_file(path: &Path) -> Vec<(Level, String)> {
    check_mode(
        path,
        &ModeRule {
            what: "secret file",
            forbidden: 0o077,
            problem: "is open to group or others",
            remedy: "chmod 600",
            fine: "is private",
        },
    )
}

/// A run's checkpoints (the directory, each checkpoint, each file in it) should be open
/// to their owner alone: `warn:` for each that is not. Their state is encrypted, but
/// others learn the run's progress and metrics, and may copy the ciphertext.
#[cfg(unix)]
pub fn check_checkpoints(run: &Path) -> Vec<(Level, String)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = ward_train::checkpoint::checkpoints_dir(run);
    let mode = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.permissions().mode() & 0o7777);
    let mut open = Vec::new();
    let mut checked = 0usize;
    let mut visit = vec![dir.clone()];
    while let Some(path) = visit.pop() {
        checked += 1;
        match mode(&path) {
            Ok(m) if m & 0o077 != 0 => open.push(format!("{} (mode {m:o})", shown(&path))),
            Ok(_) => {}
            Err(e) => return vec![(Level::Fix, format!("checkpoints {}: {e}", shown(&path)))],
        }
        // The directory and the checkpoints in it, and their files: two levels.
        if path.components().count() <= dir.components().count() + 1 && path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                visit.extend(
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .take(10_000),
                );
            }
        }
    }
    if open.is_empty() {
        return vec![(
            Level::Ok,
            format!(
                "checkpoints {}: {checked} entries open to their owner alone",
                shown(&dir)
            ),
        )];
    }
    let mut lines: Vec<(Level, String)> = open
        .iter()
        .take(5)
        .map(|p| {
            (
                Level::Warn,
                format!("checkpoint entry {p} is open to group or others: chmod go-rwx"),
            )
        })
        .collect();
    if open.len() > 5 {
        lines.push((
            Level::Warn,
            format!(
                "{} more checkpoint entries are open to group or others",
                open.len() - 5
            ),
        ));
    }
    lines
}

#[cfg(not(unix))]
pub fn check_secret_file(path: &Path) -> Vec<(Level, String)> {
    check_key_file(path)
}

#[cfg(not(unix))]
pub fn check_checkpoints(run: &Path) -> Vec<(Level, String)> {
    vec![(
        Level::Warn,
        format!(
            "checkpoints {}: permissions are not checked on this platform",
            shown(run)
        ),
    )]
}

/// Trust policies must not be writable by group or others.
#[cfg(unix)]
pub fn check_trust_file(path: &Path) -> Vec<(Level, String)> {
    check_mode(
        path,
        &ModeRule {
            what: "trust policy",
            forbidden: 0o022,
            problem: "is writable by group or others",
            remedy: "chmod go-w",
            fine: "is writable only by its owner",
        },
    )
}

#[cfg(not(unix))]
pub fn check_key_file(path: &Path) -> Vec<(Level, String)> {
    vec![(
        Level::Warn,
        format!(
            "key file {}: permissions are not checked on this platform",
            shown(path)
        ),
    )]
}

#[cfg(not(unix))]
pub fn check_trust_file(path: &Path) -> Vec<(Level, String)> {
    vec![(
        Level::Warn,
        format!(
            "trust policy {}: permissions are not checked on this platform",
            shown(path)
        ),
    )]
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    ward_core::files::read_bounded(path, limit)
        .with_context(|| format!("cannot read {}", shown(path)))
}

/// One line per certificate in a PEM file: expired or not yet valid is `fix:`, expiring
/// within [`CERT_WARN_DAYS`] is `warn:`.
pub fn check_tls_cert(path: &Path, now: SystemTime) -> Vec<(Level, String)> {
    use x509_cert::Certificate;
    let certs = match read_limited(path, MAX_CERT_BYTES)
        .and_then(|pem| Certificate::load_pem_chain(&pem).map_err(anyhow::Error::from))
    {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => {
            return vec![(
                Level::Fix,
                format!("TLS certificate {} holds no certificate", shown(path)),
            )]
        }
        Err(e) => {
            return vec![(
                Level::Fix,
                format!(
                    "TLS certificate {} is not a PEM X.509 certificate: {e:#}",
                    shown(path)
                ),
            )]
        }
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let count = certs.len();
    certs
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            let tbs = cert.tbs_certificate();
            let validity = tbs.validity();
            let which = if count > 1 {
                format!("{} [{} of {count}]", shown(path), i + 1)
            } else {
                shown(path)
            };
            let (level, what) = cert_state(
                validity.not_before.to_unix_duration(),
                validity.not_after.to_unix_duration(),
                now,
            );
            (
                level,
                format!(
                    "TLS certificate {which} ({}) {what} {}",
                    tbs.subject(),
                    match what {
                        CertState::NotYetValid => validity.not_before.to_date_time(),
                        _ => validity.not_after.to_date_time(),
                    }
                ),
            )
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CertState {
    NotYetValid,
    Expired,
    ExpiresSoon,
    Valid,
}

impl std::fmt::Display for CertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertState::NotYetValid => "is not valid until",
            CertState::Expired => "expired on",
            CertState::ExpiresSoon => "expires soon, renew it: not after",
            CertState::Valid => "is valid until",
        })
    }
}

pub fn cert_state(not_before: Duration, not_after: Duration, now: Duration) -> (Level, CertState) {
    let soon = Duration::from_secs(CERT_WARN_DAYS * 24 * 60 * 60);
    if now < not_before {
        (Level::Fix, CertState::NotYetValid)
    } else if now > not_after {
        (Level::Fix, CertState::Expired)
    } else if not_after - now <= soon {
        (Level::Warn, CertState::ExpiresSoon)
    } else {
        (Level::Ok, CertState::Valid)
    }
}

/// The TOML front matter of a RustSec advisory (`crates/<name>/RUSTSEC-*.md`): only the
/// fields that decide whether it applies.
#[derive(Deserialize, Debug)]
pub struct AdvisoryFile {
    pub advisory: AdvisoryMeta,
    #[serde(default)]
    pub versions: Versions,
    #[serde(default)]
    pub affected: Affected,
}

#[derive(Deserialize, Debug)]
pub struct AdvisoryMeta {
    pub id: String,
    pub package: String,
    /// `unmaintained`, `unsound`, `notice`: reported as a warning.
    pub informational: Option<String>,
    /// Set (to a date) when the advisory was withdrawn: it is skipped.
    pub withdrawn: Option<toml::Value>,
}

#[derive(Deserialize, Debug, Default)]
pub struct Versions {
    #[serde(default)]
    pub patched: Vec<String>,
    #[serde(default)]
    pub unaffected: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
pub struct Affected {
    /// Operating systems affected (Rust `target_os` names); empty means all.
    #[serde(default)]
    pub os: Vec<String>,
    /// Architectures affected (Rust `target_arch` names); empty means all.
    #[serde(default)]
    pub arch: Vec<String>,
}

/// Reads an advisory's ```` ```toml ```` front matter and its title (the first `# ` line).
pub fn parse_advisory(text: &str) -> Result<(AdvisoryFile, String)> {
    let rest = text
        .trim_start()
        .strip_prefix("```toml")
        .context("does not start with a ```toml block")?;
    let (front, body) = rest
        .split_once("\n```")
        .context("the ```toml block is not closed")?;
    let advisory: AdvisoryFile = toml::from_str(front).context("bad TOML front matter")?;
    let title = body
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((advisory, title))
}

/// Whether `version` is affected: it matches neither a `patched` nor an `unaffected`
/// requirement (RustSec's rule). A pre-release matches only requirements that name a
/// pre-release of the same version (semver's rule), so it errs towards "affected".
pub fn is_affected(versions: &Versions, version: &semver::Version) -> Result<bool> {
    for req in versions.patched.iter().chain(&versions.unaffected) {
        let parsed = semver::VersionReq::parse(req)
            .with_context(|| format!("bad version requirement {req:?}"))?;
        if parsed.matches(version) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether an advisory limited to some platforms covers the one this binary runs on.
fn affects_platform(affected: &Affected) -> bool {
    (affected.os.is_empty() || affected.os.iter().any(|o| o == std::env::consts::OS))
        && (affected.arch.is_empty() || affected.arch.iter().any(|a| a == std::env::consts::ARCH))
}

fn valid_crate_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks every crates.io crate in `list` against the advisories under `db/crates/<name>/`.
/// An advisory that affects the crate's version is `fix:`; an informational one (unsound,
/// unmaintained, notice) is `warn:`; a withdrawn one is skipped. An advisory ward cannot
/// read is `fix:` too: the check cannot vouch for that crate.
pub fn check_advisories(db: &Path, list: &[EmbeddedCrate]) -> Vec<(Level, String)> {
    let root = db.join("crates");
    if !root.is_dir() {
        return vec![(
            Level::Fix,
            format!(
                "{} is not a RustSec advisory database (no crates/ directory)",
                shown(db)
            ),
        )];
    }
    let mut lines = Vec::new();
    let mut read = 0usize;
    let mut checked = 0usize;
    let mut affected = 0usize;
    // Crate name -> versions compiled in (a crate can be there in two major versions).
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in list.iter().filter(|c| c.source.is_some()) {
        versions.entry(c.name).or_default().push(c.version);
    }
    for (name, vers) in &versions {
        checked += vers.len();
        if !valid_crate_name(name) {
            lines.push((
                Level::Fix,
                format!("crate name {name:?} cannot be looked up"),
            ));
            continue;
        }
        let dir = root.join(name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                lines.push((Level::Fix, format!("cannot read {}: {e}", shown(&dir))));
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        files.sort();
        for file in files {
            read += 1;
            let parsed = read_limited(&file, MAX_ADVISORY_BYTES).and_then(|bytes| {
                let text = String::from_utf8(bytes).context("not UTF-8")?;
                parse_advisory(&text)
            });
            let (adv, title) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    lines.push((
                        Level::Fix,
                        format!("cannot read advisory {}: {e:#}", shown(&file)),
                    ));
                    continue;
                }
            };
            if adv.advisory.withdrawn.is_some()
                || adv.advisory.package != *name
                || !affects_platform(&adv.affected)
            {
                continue;
            }
            for version in vers {
                let result = semver::Version::parse(version)
                    .context("bad crate version")
                    .and_then(|v| is_affected(&adv.versions, &v));
                match result {
                    Ok(false) => {}
                    Ok(true) => {
                        let patched = if adv.versions.patched.is_empty() {
                            "no patched version: replace it".to_string()
                        } else {
                            format!("patched: {}", adv.versions.patched.join("; "))
                        };
                        let (level, kind) = match &adv.advisory.informational {
                            Some(kind) => (Level::Warn, format!(" ({kind})")),
                            None => {
                                affected += 1;
                                (Level::Fix, String::new())
                            }
                        };
                        lines.push((
                            level,
                            format!(
                                "crate {name} {version} has advisory {}{kind}: {title} ({patched})",
                                adv.advisory.id
                            ),
                        ));
                    }
                    Err(e) => lines.push((
                        Level::Fix,
                        format!(
                            "advisory {} for {name} {version} cannot be evaluated: {e:#}",
                            adv.advisory.id
                        ),
                    )),
                }
            }
        }
    }
    if affected == 0 && !lines.iter().any(|(l, _)| *l == Level::Fix) {
        lines.push((
            Level::Ok,
            format!(
                "no advisory in {} affects the {checked} crates.io crates compiled into ward ({read} advisories read)",
                shown(db)
            ),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(patched: &[&str], unaffected: &[&str]) -> Versions {
        Versions {
            patched: patched.iter().map(|s| s.to_string()).collect(),
            unaffected: unaffected.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    #[test]
    fn rustsec_version_rules() {
        let vs = versions(&[">= 0.10.1", "< 0.10.0, >= 0.9.3"], &["< 0.7.0"]);
        assert!(!is_affected(&vs, &v("0.10.1")).unwrap());
        assert!(is_affected(&vs, &v("0.10.0")).unwrap());
        assert!(!is_affected(&vs, &v("0.9.4")).unwrap());
        assert!(is_affected(&vs, &v("0.9.2")).unwrap());
        assert!(is_affected(&vs, &v("0.8.0")).unwrap());
        assert!(!is_affected(&vs, &v("0.6.9")).unwrap());
        // No patched version at all: every version is affected.
        assert!(is_affected(&versions(&[], &[]), &v("1.0.0")).unwrap());
        // Build metadata does not matter; a pre-release errs towards affected.
        assert!(!is_affected(&versions(&[">= 1.1.0"], &[]), &v("1.2.1+spec-1.1.0")).unwrap());
        assert!(is_affected(&versions(&[">= 1.1.0"], &[]), &v("1.2.0-rc.1")).unwrap());
        assert!(is_affected(&versions(&["not a requirement"], &[]), &v("1.0.0")).is_err());
    }

    #[test]
    fn parses_front_matter() {
        let text = "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"demo\"\n\
                    date = \"2099-01-01\"\ninformational = \"unsound\"\n\n[versions]\n\
                    patched = [\">= 1.2.3\"]\n\n[affected]\nos = [\"windows\"]\n\
                    functions = { \"demo::f\" = [\"< 1.2.3\"] }\n```\n\n# A title\n\nBody.\n";
        let (adv, title) = parse_advisory(text).unwrap();
        assert_eq!(adv.advisory.id, "RUSTSEC-2099-0001");
        assert_eq!(adv.advisory.informational.as_deref(), Some("unsound"));
        assert!(adv.advisory.withdrawn.is_none());
        assert_eq!(adv.versions.patched, vec![">= 1.2.3"]);
        assert_eq!(adv.affected.os, vec!["windows"]);
        assert_eq!(title, "A title");
        assert!(parse_advisory("# no front matter").is_err());
        assert!(parse_advisory("```toml\n[advisory]\nid = \"x\"\n").is_err());
    }

    #[test]
    fn platform_filter() {
        let mut a = Affected::default();
        assert!(affects_platform(&a));
        a.os = vec!["no-such-os".into()];
        assert!(!affects_platform(&a));
        a.os = vec![std::env::consts::OS.into()];
        assert!(affects_platform(&a));
        a.arch = vec!["no-such-arch".into()];
        assert!(!affects_platform(&a));
    }

    #[test]
    fn certificate_states() {
        let day = Duration::from_secs(86_400);
        let (nb, na) = (day * 100, day * 200);
        assert_eq!(
            cert_state(nb, na, day * 50),
            (Level::Fix, CertState::NotYetValid)
        );
        assert_eq!(
            cert_state(nb, na, day * 201),
            (Level::Fix, CertState::Expired)
        );
        assert_eq!(
            cert_state(nb, na, day * 171),
            (Level::Warn, CertState::ExpiresSoon)
        );
        assert_eq!(cert_state(nb, na, day * 150), (Level::Ok, CertState::Valid));
    }

    #[test]
    fn crate_names_are_checked_before_use_as_paths() {
        assert!(valid_crate_name("serde_json"));
        assert!(valid_crate_name("x509-cert"));
        assert!(!valid_crate_name("../etc"));
        assert!(!valid_crate_name(""));
    }
}
