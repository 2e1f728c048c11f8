//! The tokens file: who may call a service (by a bearer token, or by the client
//! certificate of a mutual-TLS connection), with which scopes, on which models, at what rate.
//!
//! The tokens file holds only SHA-256 hashes of the tokens, so reading it does not reveal
//! a usable secret. A presented token is hashed and compared in constant time with every
//! entry, so the time taken says nothing about which entry, or how much of one, matched.
//!
//! With mutual TLS, an entry may instead, or also, name a client certificate by a DNS name
//! or URI (a SPIFFE ID, say) in its subjectAltName: a request that carries no token on a
//! connection whose certificate has that name is that principal's. A request with a token
//! is judged by the token alone.
//!
//! Scopes are names: which ones exist, and what each allows, is the service's to say (it
//! passes them to [`Tokens::parse`]; a file naming any other is refused). `ward serve` has
//! `infer`, `metadata`, `health` and `metrics`.
//!
//! ```toml
//! [[token]]
//! principal = "alice"
//! sha256 = "9f86d0…"            # of the token's UTF-8 bytes
//! scopes = ["infer", "metadata"]
//! models = ["resnet*"]          # optional; every model when absent
//! rate_per_second = 5.0         # optional; overrides the service's default for this principal
//!
//! [[token]]
//! principal = "batch-scorer"
//! client_uri = "spiffe://example.org/scorer"   # or client_dns_name = "scorer.internal"
//! scopes = ["infer"]
//! ```

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{EntryProblem, NetError};
use crate::peer::ClientCertificate;

/// Largest tokens file read.
pub const MAX_TOKENS_FILE_BYTES: u64 = 1 << 20;
/// Longest token accepted; longer ones are refused without hashing.
pub const MAX_TOKEN_LEN: usize = 256;
/// Prefix of tokens made by [`generate_token`], so that leaked ones are easy to scan for.
pub const TOKEN_PREFIX: &str = "ward_";

/// One entry of the tokens file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub principal: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub client_dns_name: Option<String>,
    #[serde(default)]
    pub client_uri: Option<String>,
    /// Scope names, each one the service knows.
    pub scopes: Vec<String>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub daily_budget: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// A principal that presented a valid token or client certificate.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    scopes: Vec<String>,
    models: Option<Vec<glob::Pattern>>,
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
    pub daily_budget: Option<u64>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn may_use_model(&self, model: &str) -> bool {
        match &self.models {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(model)),
        }
    }
}

/// How one principal of the tokens file is recognised.
#[derive(Debug, Clone)]
struct Entry {
    hash: Option<[u8; 32]>,
    dns_name: Option<String>,
    uri: Option<String>,
    principal: Principal,
}

/// The loaded tokens file.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl Tokens {
    /// Reads and checks a tokens file whose scopes must be among `scopes`: a file readable
    /// by group or others is refused (the hashes are not secrets, but a writable or shared
    /// file is a sign of a mistake).
    pub fn load(path: &Path, scopes: &[&str]) -> Result<Tokens, NetError> {
        let text = ward_core::files::read_private_text(path, MAX_TOKENS_FILE_BYTES)
            .map_err(|e| NetError::file(path, e))?;
        Tokens::parse(&text, scopes).map_err(|e| NetError::TokensFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses the text of a tokens file whose scopes must be among `scopes`.
    pub fn parse(text: &str, scopes: &[&str]) -> Result<Tokens, NetError> {
        let file: TokensFile = toml::from_str(text).map_err(NetError::TokensSyntax)?;
        let mut entries: Vec<Entry> = Vec::with_capacity(file.token.len());
        for (index, entry) in file.token.into_iter().enumerate() {
            let refuse = |problem| NetError::TokenEntry {
                index,
                principal: entry.principal.clone(),
                problem,
            };
            if !valid_principal(&entry.principal) {
                return Err(refuse(EntryProblem::Principal));
            }
            let hash = match &entry.sha256 {
                None => None,
                Some(hex_digest) => {
                    let mut hash = [0u8; 32];
                    hex::decode_to_slice(hex_digest, &mut hash)
                        .map_err(|_| refuse(EntryProblem::Sha256))?;
                    if entries.iter().any(|e| e.hash == Some(hash)) {
                        return Err(refuse(EntryProblem::HashTwice));
                    }
                    Some(hash)
                }
            };
            // Names are matched exactly, so a wildcard here could only ever match a
            // certificate that itself holds the wildcard, which is never an identity.
            let dns_name = match &entry.client_dns_name {
                None => None,
                Some(name) if name.is_empty() || name.len() > 253 || name.contains('*') => {
                    return Err(refuse(EntryProblem::DnsName));
                }
                Some(name) => Some(name.to_ascii_lowercase()),
            };
            if let Some(uri) = &entry.client_uri {
                if uri.is_empty() || uri.len() > 2048 || !uri.contains(':') {
                    return Err(refuse(EntryProblem::Uri));
                }
            }
            let same_certificate = |e: &Entry| {
                (dns_name.is_some() && e.dns_name == dns_name)
                    || (entry.client_uri.is_some() && e.uri == entry.client_uri)
            };
            if entries.iter().any(same_certificate) {
                return Err(refuse(EntryProblem::CertificateNameTwice));
            }
            if hash.is_none() && dns_name.is_none() && entry.client_uri.is_none() {
                return Err(refuse(EntryProblem::NoCredential));
            }
            if let Some(unknown) = entry.scopes.iter().find(|s| !scopes.contains(&s.as_str())) {
                return Err(refuse(EntryProblem::UnknownScope {
                    scope: unknown.clone(),
                    known: scopes.iter().map(|s| s.to_string()).collect(),
                }));
            }
            if entry.scopes.is_empty() {
                return Err(refuse(EntryProblem::NoScopes));
            }
            let models = match &entry.models {
                None => None,
                Some(globs) => Some(
                    globs
                        .iter()
                        .map(|g| {
                            glob::Pattern::new(g).map_err(|e| {
                                refuse(EntryProblem::ModelPattern {
                                    pattern: g.clone(),
                                    position: e.pos,
                                    message: e.msg,
                                })
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            if let Some(rate) = entry.rate_per_second {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(refuse(EntryProblem::Rate));
                }
            }
            entries.push(Entry {
                hash,
                dns_name,
                uri: entry.client_uri,
                principal: Principal {
                    name: entry.principal,
                    scopes: entry.scopes,
                    models,
                    rate_per_second: entry.rate_per_second,
                    burst: entry.burst,
                    daily_budget: entry.daily_budget,
                },
            });
        }
        Ok(Tokens { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal whose token this is. Every entry is compared, whatever matches.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if let Some(hash) = &entry.hash {
                if bool::from(hash.ct_eq(&presented)) {
                    found = Some(&entry.principal);
                }
            }
        }
        found
    }

    /// The principal a verified client certificate stands for, by a name in its
    /// subjectAltName.
    pub fn authenticate_certificate(&self, certificate: &ClientCertificate) -> Option<&Principal> {
        self.entries
            .iter()
            .find(|e| {
                e.dns_name
                    .as_ref()
                    .is_some_and(|n| certificate.dns_names.contains(n))
                    || e.uri.as_ref().is_some_and(|u| certificate.uris.contains(u))
            })
            .map(|e| &e.principal)
    }

    /// The entry (by index, for messages) of the first principal named by a client
    /// certificate, which only mutual TLS can present.
    pub fn first_certificate_entry(&self) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.dns_name.is_some() || e.uri.is_some())
    }
}

/// Principal names appear in audit lines and metrics: a plain charset keeps them safe there.
pub fn valid_principal(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
}

/// The token of an `authorization` value of the form `Bearer TOKEN`: an HTTP header's, or
/// gRPC metadata's, which use the same form.
pub fn bearer(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A new random token from the OS CSPRNG: the prefix and 32 bytes in hex.
pub fn generate_token() -> Result<String, NetError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(NetError::Random)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// The tokens-file entry for `token`, with scope names `scopes`.
pub fn entry_for(
    token: &str,
    principal: &str,
    scopes: Vec<String>,
    models: Option<Vec<String>>,
) -> TokenEntry {
    TokenEntry {
        principal: principal.to_string(),
        sha256: Some(hex::encode(Sha256::digest(token.as_bytes()))),
        client_dns_name: None,
        client_uri: None,
        scopes,
        models,
        rate_per_second: None,
        burst: None,
        daily_budget: None,
    }
}

/// One `[[token]]` table, ready to append to a tokens file. Strings are written as JSON
/// strings, which are valid TOML basic strings.
pub fn entry_toml(entry: &TokenEntry) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let list = |items: Vec<String>| format!("[{}]", items.join(", "));
    let mut out = format!("[[token]]\nprincipal = {}\n", quote(&entry.principal));
    for (key, value) in [
        ("sha256", &entry.sha256),
        ("client_dns_name", &entry.client_dns_name),
        ("client_uri", &entry.client_uri),
    ] {
        if let Some(value) = value {
            out += &format!("{key} = {}\n", quote(value));
        }
    }
    out += &format!(
        "scopes = {}\n",
        list(entry.scopes.iter().map(|s| quote(s)).collect())
    );
    if let Some(models) = &entry.models {
        out += &format!(
            "models = {}\n",
            list(models.iter().map(|m| quote(m)).collect())
        );
    }
    if let Some(rate) = entry.rate_per_second {
        out += &format!("rate_per_second = {rate:?}\n");
    }
    if let Some(burst) = entry.burst {
        out += &format!("burst = {burst}\n");
    }
    if let Some(budget) = entry.daily_budget {
        out += &format!("daily_budget = {budget}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scopes of `ward serve`, as an example of a service's.
    const SCOPES: &[&str] = &["infer", "metadata", "health", "metrics"];

    fn parse(text: &str) -> Result<Tokens, String> {
        Tokens::parse(text, SCOPES).map_err(|e| e.to_string())
    }

    #[test]
    fn a_generated_token_authenticates_its_principal_only() {
        let token = generate_token().unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 5 + 64);
        let other = generate_token().unwrap();
        let text = entry_toml(&entry_for(&token, "alice", vec!["infer".into()], None))
            + &entry_toml(&entry_for(
                &other,
                "bob",
                vec!["metadata".into()],
                Some(vec!["mlp*".into()]),
            ));
        let tokens = parse(&text).unwrap();
        assert_eq!(tokens.len(), 2);
        let alice = tokens.authenticate(&token).unwrap();
        assert_eq!(alice.name, "alice");
        assert!(alice.has_scope("infer") && !alice.has_scope("metrics"));
        let bob = tokens.authenticate(&other).unwrap();
        assert!(bob.may_use_model("mlp2") && !bob.may_use_model("resnet"));
        assert!(tokens.authenticate("ward_nope").is_none());
        assert!(tokens.authenticate("").is_none());
        assert!(tokens
            .authenticate(&"a".repeat(MAX_TOKEN_LEN + 1))
            .is_none());
    }

    #[test]
    fn bad_files_are_refused_with_the_entry_named() {
        let err = parse("[[token]]\nprincipal = \"a\"\nsha256 = \"zz\"\nscopes = [\"infer\"]\n")
            .unwrap_err();
        assert!(err.contains("token[0] (\"a\"): sha256"), "{err}");
        let err = parse(&format!(
            "[[token]]\nprincipal = \"a\"\nsha256 = \"{}\"\nscopes = []\n",
            "0".repeat(64)
        ))
        .unwrap_err();
        assert!(err.contains("allow nothing"), "{err}");
        let err = parse(&format!(
            "[[token]]\nprincipal = \"a\"\nsha256 = \"{}\"\nscopes = [\"admin\"]\n",
            "0".repeat(64)
        ))
        .unwrap_err();
        assert!(err.contains("admin"), "{err}");
        let twice = format!(
            "[[token]]\nprincipal = \"a\"\nsha256 = \"{h}\"\nscopes = [\"infer\"]\n[[token]]\nprincipal = \"b\"\nsha256 = \"{h}\"\nscopes = [\"infer\"]\n",
            h = "0".repeat(64)
        );
        assert!(parse(&twice).unwrap_err().contains("twice"));
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn client_certificates_name_principals_exactly() {
        let text = format!(
            "[[token]]\nprincipal = \"scorer\"\nclient_dns_name = \"Scorer.Internal\"\nscopes = [\"infer\"]\n\
             [[token]]\nprincipal = \"spiffe\"\nclient_uri = \"spiffe://example.org/a\"\nscopes = [\"metadata\"]\n\
             [[token]]\nprincipal = \"both\"\nsha256 = \"{}\"\nclient_dns_name = \"both.internal\"\nscopes = [\"infer\"]\n",
            hex::encode(Sha256::digest(b"ward_both"))
        );
        let tokens = parse(&text).unwrap();
        assert_eq!(tokens.first_certificate_entry(), Some(0));
        let certificate = |dns: &[&str], uris: &[&str]| ClientCertificate {
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            uris: uris.iter().map(|s| s.to_string()).collect(),
        };
        let name =
            |c: &ClientCertificate| tokens.authenticate_certificate(c).map(|p| p.name.clone());
        // DNS names compare case-insensitively (certificates' names arrive lowercased).
        assert_eq!(
            name(&certificate(&["scorer.internal"], &[])).as_deref(),
            Some("scorer")
        );
        assert_eq!(
            name(&certificate(&[], &["spiffe://example.org/a"])).as_deref(),
            Some("spiffe")
        );
        assert_eq!(
            name(&certificate(&["x.internal", "both.internal"], &[])).as_deref(),
            Some("both")
        );
        assert_eq!(
            tokens.authenticate("ward_both").map(|p| p.name.as_str()),
            Some("both")
        );
        // Nothing else matches: not a suffix, a prefix, or another kind of name.
        for (dns, uris) in [
            (&["internal"][..], &[][..]),
            (&["scorer.internal.evil"][..], &[][..]),
            (&[][..], &["spiffe://example.org/a/b"][..]),
            (&["spiffe://example.org/a"][..], &[][..]),
            (&[][..], &[][..]),
        ] {
            assert_eq!(name(&certificate(dns, uris)), None, "{dns:?} {uris:?}");
        }
        let tokens_only = parse(&entry_toml(&entry_for(
            "t",
            "a",
            vec!["infer".into()],
            None,
        )))
        .unwrap();
        assert_eq!(tokens_only.first_certificate_entry(), None);
    }

    #[test]
    fn certificate_entries_are_checked() {
        let entry = |body: &str| {
            parse(&format!(
                "[[token]]\nprincipal = \"a\"\nscopes = [\"infer\"]\n{body}"
            ))
        };
        assert!(entry("").unwrap_err().contains("needs sha256"));
        assert!(entry("client_dns_name = \"*.internal\"\n")
            .unwrap_err()
            .contains("wildcards"));
        assert!(entry("client_dns_name = \"\"\n")
            .unwrap_err()
            .contains("wildcards"));
        assert!(entry("client_uri = \"nocolon\"\n")
            .unwrap_err()
            .contains("URI"));
        let twice = "[[token]]\nprincipal = \"a\"\nclient_dns_name = \"x\"\nscopes = [\"infer\"]\n\
                     [[token]]\nprincipal = \"b\"\nclient_dns_name = \"X\"\nscopes = [\"infer\"]\n";
        assert!(parse(twice)
            .unwrap_err()
            .contains("token[1] (\"b\"): the same client certificate name"));
    }

    #[test]
    fn scopes_are_the_services_to_name() {
        let text = format!(
            "[[token]]\nprincipal = \"w\"\nsha256 = \"{}\"\nscopes = [\"push\", \"pull\"]\n",
            "0".repeat(64)
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.contains("token[0] (\"w\"): unknown scope \"push\" (known: infer, metadata"),
            "{err}"
        );
        let tokens = Tokens::parse(&text, &["push", "pull"]).unwrap();
        assert_eq!(tokens.len(), 1);
        assert!(matches!(
            Tokens::parse(&text, &["pull"]),
            Err(NetError::TokenEntry {
                index: 0,
                problem: EntryProblem::UnknownScope { .. },
                ..
            })
        ));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"bearer  abc "), Some("abc"));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(&[0xff, 0x20, 0x41]), None);
    }
}
