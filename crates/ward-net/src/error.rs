//! [`NetError`]: everything ward-net refuses or fails at, typed, with what was wrong named.
//!
//! No variant carries a transport's status: `ward-serve` maps these to HTTP statuses and
//! reason codes, and a gRPC service maps the same variants to gRPC codes. A refusal that a
//! client may retry says after how many seconds ([`NetError::retry_after_seconds`]).

use std::path::PathBuf;

use ward_core::files::FileError;

/// What went wrong in ward-net.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A file could not be read, or was refused before it was (a link, too large, readable
    /// by others when it holds a secret).
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: FileError,
    },
    /// A PEM file that does not parse.
    #[error("{}: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate file without any certificate in it.
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    /// A CA certificate that cannot be a trust anchor.
    #[error("CA {}: {source}", path.display())]
    TrustAnchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The CAs of a file could not make a certificate verifier.
    #[error("CA {}: {source}", path.display())]
    Verifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// A certificate chain and a private key that rustls will not use together (the key is
    /// not the leaf's, or of a kind rustls does not sign with).
    #[error("{} and {}: {source}", cert.display(), key.display())]
    CertifiedKey {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the protocol versions asked for.
    #[error("TLS protocol versions: {0}")]
    Protocol(#[source] rustls::Error),
    /// A development certificate could not be made.
    #[error("making a development certificate: {0}")]
    DevCertificate(#[from] rcgen::Error),
    /// A tokens file that is not valid TOML of the expected form.
    #[error("{0}")]
    TokensSyntax(#[source] toml::de::Error),
    /// One entry of a tokens file is wrong.
    #[error("token[{index}] ({principal:?}): {problem}")]
    TokenEntry {
        index: usize,
        principal: String,
        problem: EntryProblem,
    },
    /// A tokens file that was read but is wrong, with its path.
    #[error("tokens file {}: {source}", path.display())]
    TokensFile {
        path: PathBuf,
        #[source]
        source: Box<NetError>,
    },
    /// A rate-limit setting out of range.
    #[error("{key} must be {must}")]
    RateConfig {
        key: &'static str,
        must: &'static str,
    },
    /// The OS random source failed.
    #[error("the OS random source failed: {0}")]
    Random(getrandom::Error),
    /// A principal sent requests faster than its rate allows.
    #[error("rate limit of {rate_per_second} requests per second exceeded")]
    RateLimited {
        rate_per_second: f64,
        retry_after_seconds: u64,
    },
    /// A principal's daily query budget is spent.
    #[error("daily query budget of {budget} is spent")]
    BudgetSpent {
        budget: u64,
        retry_after_seconds: u64,
    },
    /// A request holds more queries than its principal's daily budget has left.
    #[error("this request holds {queries} queries, but only {left} of the daily query budget of {budget} are left")]
    BudgetShort {
        queries: u64,
        left: u64,
        budget: u64,
        retry_after_seconds: u64,
    },
    /// Requests in progress together hold the whole request-memory budget.
    #[error("requests in progress hold {held} of the {budget} bytes of request memory; {wanted} more do not fit")]
    MemorySpent { wanted: u64, held: u64, budget: u64 },
    /// This holder's requests in progress hold its whole share of the request memory.
    #[error("this client's requests in progress hold {held} of its share of {share} bytes of request memory; {wanted} more do not fit")]
    MemoryShareSpent { wanted: u64, held: u64, share: u64 },
}

/// What is wrong with one entry of a tokens file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("a principal is 1 to 128 ASCII letters, digits and . _ @ -")]
    Principal,
    #[error("sha256 must be 64 hex digits")]
    Sha256,
    #[error("the same token hash is listed twice")]
    HashTwice,
    #[error("client_dns_name must be a DNS name without wildcards")]
    DnsName,
    #[error("client_uri must be a URI")]
    Uri,
    #[error("the same client certificate name is listed twice")]
    CertificateNameTwice,
    #[error("needs sha256 (a token), client_dns_name or client_uri")]
    NoCredential,
    #[error("scopes is empty; the token would allow nothing")]
    NoScopes,
    #[error("unknown scope {scope:?} (known: {})", known.join(", "))]
    UnknownScope { scope: String, known: Vec<String> },
    #[error("model pattern {pattern:?}: Pattern syntax error near position {position}: {message}")]
    ModelPattern {
        pattern: String,
        position: usize,
        message: &'static str,
    },
    #[error("rate_per_second must be a positive number")]
    Rate,
}

impl NetError {
    /// Seconds after which the same request may succeed, for refusals that pass with time
    /// (a rate limit, a daily budget, request memory); `None` for the others.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            NetError::RateLimited {
                retry_after_seconds,
                ..
            }
            | NetError::BudgetSpent {
                retry_after_seconds,
                ..
            }
            | NetError::BudgetShort {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            // Memory is given back as requests in progress end: a second is a fair wait.
            NetError::MemorySpent { .. } | NetError::MemoryShareSpent { .. } => Some(1),
            _ => None,
        }
    }

    /// `path`'s [`FileError`] as a `NetError`.
    pub(crate) fn file(path: &std::path::Path, source: FileError) -> NetError {
        NetError::File {
            path: path.to_path_buf(),
            source,
        }
    }
}
