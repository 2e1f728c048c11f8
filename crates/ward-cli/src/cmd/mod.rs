pub mod checkpoint;
pub mod cluster;
pub mod doctor;
pub mod eval;
pub mod export;
pub mod import;
pub mod inspect;
pub mod keygen;
pub mod plot;
pub mod predict;
pub mod serve;
pub mod sign;
pub mod tls_cert;
pub mod token;
pub mod train;
pub mod verify;
pub mod version;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use std::sync::Arc;

use ward_exec::{LoadedPackage, TractBackend};
use ward_package::{PackageLimits, Trust, TrustPolicy, Verification};

/// How a command that opens a package decides whom to trust.
#[derive(Args)]
pub struct TrustArgs {
    /// Trust policy: a PEM public key, or a TOML policy (keys, CAs, model names,
    /// threshold). Packages must be signed by it.
    #[arg(long, value_name = "TRUST")]
    trust: Option<PathBuf>,
    /// Open the package without checking any signature (local experiments only: prints a
    /// warning and records an audit event).
    #[arg(long, conflicts_with = "trust")]
    allow_unsigned: bool,
    #[command(flatten)]
    limits: PackageLimitArgs,
}

/// The largest package files a command reads. A package signed by this ward records the
/// sizes of its files and is refused before a file of another size is read; these bound
/// older packages and the memory any package may take.
#[derive(Args)]
pub struct PackageLimitArgs {
    /// Largest weights.safetensors to read (bytes; default 8 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = ward_package::limits::MAX_WEIGHTS_BYTES)]
    max_weights_bytes: u64,
    /// Largest graph.json to read (bytes; default 64 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = ward_package::limits::MAX_GRAPH_BYTES)]
    max_graph_bytes: u64,
}

impl PackageLimitArgs {
    pub fn limits(&self) -> PackageLimits {
        PackageLimits {
            max_weights_bytes: self.max_weights_bytes,
            max_graph_bytes: self.max_graph_bytes,
            ..PackageLimits::default()
        }
    }
}

impl TrustArgs {
    pub fn trust(&self) -> Result<Trust> {
        match (&self.trust, self.allow_unsigned) {
            (Some(path), _) => Ok(Trust::Policy(TrustPolicy::load(path)?)),
            (None, true) => {
                eprintln!(
                    "WARNING: --allow-unsigned: the package's signatures are NOT checked; \
                     anything in it will be loaded. Use this for local experiments only."
                );
                Ok(Trust::AllowUnsigned)
            }
            (None, false) => bail!(
                "no trust policy: pass --trust KEY.pub or --trust POLICY.toml (or \
                 --allow-unsigned for a local experiment)"
            ),
        }
    }

    /// The trust policy of `--trust`, if given (`--allow-unsigned` is not one).
    pub fn policy(&self) -> Result<Option<Trust>> {
        self.trust
            .as_deref()
            .map(|path| Ok(Trust::Policy(TrustPolicy::load(path)?)))
            .transpose()
    }

    /// The largest package files to read.
    pub fn limits(&self) -> PackageLimits {
        self.limits.limits()
    }

    /// Whether a trust policy or `--allow-unsigned` was given.
    pub fn is_set(&self) -> bool {
        self.trust.is_some() || self.allow_unsigned
    }

    /// Opens a package through the verified loader, printing any verification warning,
    /// to run on the CPU with `threads` threads.
    pub fn open(&self, package: &Path, threads: usize) -> Result<LoadedPackage> {
        let backend = Arc::new(TractBackend::new(threads)?);
        let loaded = LoadedPackage::open(package, &self.trust()?, &self.limits.limits(), backend)
            .with_context(|| format!("package {}", package.display()))?;
        if let Verification::Signed(v) = loaded.verification() {
            for w in v.warnings() {
                eprintln!("warning: {w}");
            }
        }
        Ok(loaded)
    }
}

/// Reads a whole regular file of at most `limit` bytes (not a link, a FIFO or a device),
/// naming it in the error.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    ward_core::files::read_bounded(path, limit)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Most threads a command may ask for: more than this many per core only adds switching.
pub const THREADS_PER_CORE: usize = 4;

/// Parses `--threads`: at least 1, at most [`THREADS_PER_CORE`] per core of this machine.
pub fn parse_threads(text: &str) -> std::result::Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = cores * THREADS_PER_CORE;
    if n == 0 || n > max {
        return Err(format!(
            "must be 1 to {max} ({THREADS_PER_CORE} per core; this machine has {cores})"
        ));
    }
    Ok(n)
}

/// Parses comma-separated dims where `-1` marks a variable dim (`-1,3,224,224`).
pub fn parse_dims(text: &str, allow_variable: bool) -> Result<Vec<i64>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|d| {
            let v: i64 = d
                .trim()
                .parse()
                .with_context(|| format!("dim {d:?} in {text:?} is not an integer"))?;
            if v < -1 || (v == -1 && !allow_variable) {
                bail!("dim {v} in {text:?} is not allowed");
            }
            Ok(v)
        })
        .collect()
}

pub use ward_core::files::safe_file_stem;
