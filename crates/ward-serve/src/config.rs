//! The server's configuration: `ward-serve.toml`, with the command line's flags laid over
//! it. Unknown keys are refused, so a misspelt limit is an error, not a silent default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use ward_core::files::FileError;

use ward_net::ratelimit::RateConfig;

use crate::error::ServeError;
use crate::extraction::ExtractionConfig;
use crate::limits::Limits;
use crate::policy::PolicyConfig;

/// The address listeners bind to when none is given: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (mode 0600).
    pub key: Option<PathBuf>,
    /// PEM CA certificates: when set, clients must present a certificate it issued (mTLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Answer `/v2/health/*` without a token (for load balancers' probes).
    #[serde(default)]
    pub open_health: bool,
}

/// Dynamic batching for one model.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    pub max_batch_size: usize,
    #[serde(default = "default_batch_delay")]
    pub max_queue_delay_ms: u64,
}

fn default_batch_delay() -> u64 {
    2
}

/// Per-model settings, under `[model.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub output: Option<PolicyConfig>,
    #[serde(default)]
    pub batching: Option<BatchingConfig>,
    #[serde(default)]
    pub max_concurrency: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub listen: Option<SocketAddr>,
    pub models: Option<PathBuf>,
    pub trust: Option<PathBuf>,
    pub tokens: Option<PathBuf>,
    /// Seconds between scans of the model repository; 0 or absent: scan only at start.
    #[serde(default)]
    pub poll_seconds: u64,
    /// Serve without TLS; allowed only on a loopback address.
    #[serde(default)]
    pub insecure_plaintext: bool,
    #[serde(default)]
    pub allow_root: bool,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// The server-wide output policy; packages' own policies may only be tightened by it.
    #[serde(default)]
    pub output: PolicyConfig,
    #[serde(default)]
    pub rate: RateConfig,
    #[serde(default)]
    pub limits: Limits,
    /// The largest package files the repository reads (`max_weights_bytes`, ...). A
    /// package that cannot be read within them is refused and logged once; the version
    /// served before keeps serving.
    #[serde(default)]
    pub package: ward_package::PackageLimits,
    /// Monitoring of each principal's queries for an extraction attack's pattern.
    #[serde(default)]
    pub extraction: ExtractionConfig,
    #[serde(default)]
    pub model: std::collections::BTreeMap<String, ModelConfig>,
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<ServeConfig, ServeError> {
        let text = read_text(path, MAX_CONFIG_BYTES)?;
        ServeConfig::parse(&text).map_err(|reason| ServeError::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<ServeConfig, String> {
        let config: ServeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config
            .output
            .validate()
            .map_err(|e| format!("[output]: {e}"))?;
        for (name, model) in &config.model {
            if let Some(output) = &model.output {
                output
                    .validate()
                    .map_err(|e| format!("[model.{name}.output]: {e}"))?;
            }
            if let Some(b) = model.batching {
                if b.max_batch_size < 2 {
                    return Err(format!(
                        "[model.{name}.batching]: max_batch_size must be at least 2"
                    ));
                }
            }
        }
        config.rate.validate().map_err(|e| format!("[rate]: {e}"))?;
        let p = &config.package;
        for (key, value) in [
            ("max_manifest_bytes", p.max_manifest_bytes),
            ("max_graph_bytes", p.max_graph_bytes),
            ("max_weights_bytes", p.max_weights_bytes),
            ("max_signature_bytes", p.max_signature_bytes),
        ] {
            if value == 0 {
                return Err(format!("[package]: {key} must be at least 1"));
            }
        }
        config
            .extraction
            .validate()
            .map_err(|e| format!("[extraction]: {e}"))?;
        Ok(config)
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)))
    }
}

fn file_error(path: &Path, e: FileError) -> ServeError {
    match e {
        FileError::Io(source) => ServeError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => ServeError::Refused(format!("{}: {other}", path.display())),
    }
}

/// Reads a small UTF-8 file, refusing links and files over `limit`.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ServeError> {
    ward_core::files::read_small_text(path, limit).map_err(|e| file_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_secure_default() {
        let c = ServeConfig::default();
        assert_eq!(c.listen().to_string(), DEFAULT_LISTEN);
        assert!(!c.insecure_plaintext && !c.allow_root && !c.auth.open_health);
        assert_eq!(c.output.precision(), Some(crate::policy::DEFAULT_PRECISION));
        assert_eq!(c.limits.max_body_bytes, crate::limits::MAX_BODY_BYTES);
    }

    #[test]
    fn unknown_and_bad_keys_are_refused() {
        assert!(ServeConfig::parse("listen = \"127.0.0.1:1\"\nlistne = 1")
            .unwrap_err()
            .contains("listne"));
        assert!(ServeConfig::parse("[limits]\nmax_body = 5")
            .unwrap_err()
            .contains("max_body"));
        assert!(ServeConfig::parse("[output]\nprecision = \"half\"")
            .unwrap_err()
            .contains("precision must be"));
        assert!(ServeConfig::parse("[model.m.batching]\nmax_batch_size = 1")
            .unwrap_err()
            .contains("at least 2"));
        assert!(ServeConfig::parse("[extraction]\naction = \"block\"")
            .unwrap_err()
            .contains("block"));
        assert!(ServeConfig::parse("[extraction]\nthreshold = 2.0")
            .unwrap_err()
            .contains("[extraction]: threshold"));
        let c = ServeConfig::parse(
            "poll_seconds = 5\n[limits]\nmax_body_bytes = 1024\n[output]\nprecision = \"full\"\n[model.mlp.batching]\nmax_batch_size = 8",
        )
        .unwrap();
        assert_eq!(c.limits.max_body_bytes, 1024);
        assert_eq!(c.output.precision(), None);
        assert_eq!(c.model["mlp"].batching.unwrap().max_queue_delay_ms, 2);
    }
}
