//! rustls configurations from PEM files: TLS 1.3 and 1.2 (rustls offers nothing older),
//! the ring provider, ALPN protocols given by the caller (`h2` and `http/1.1` for an HTTP
//! server, `h2` for gRPC), and mutual TLS both ways: a server that requires client
//! certificates issued by a CA, and a client that presents one and checks the server's
//! against the CA it is given (never the system's roots: a cluster has its own CA).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::NetError;
use crate::pem::{read_certificates, read_private_key};

/// A certificate chain (PEM, leaf first) and its private key (PEM, mode 0600): what a
/// server, or a client in mutual TLS, proves itself with.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// The provider for `versions`: a cluster (TLS 1.3 only) prefers AES-128-GCM, which moves
/// its megabytes of tensors with fewer AES rounds than AES-256 at a security level
/// (128 bits) no weaker than its P-256 certificates'.
fn provider_for(versions: Versions) -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if versions == Versions::Tls13Only {
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }
    Arc::new(provider)
}

/// The CA certificates of a PEM file, as trust anchors.
pub fn read_roots(ca: &Path) -> Result<RootCertStore, NetError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca)? {
        roots
            .add(certificate)
            .map_err(|source| NetError::TrustAnchor {
                path: ca.to_path_buf(),
                source,
            })?;
    }
    Ok(roots)
}

/// The protocol versions a configuration accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.3 and 1.2 (what HTTP clients in the field speak).
    Tls12And13,
    /// TLS 1.3 only (a cluster, whose every peer is ward).
    Tls13Only,
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

impl Versions {
    fn list(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self {
            Versions::Tls12And13 => rustls::DEFAULT_VERSIONS,
            Versions::Tls13Only => TLS13_ONLY,
        }
    }
}

/// A server's configuration. With `client_ca`, every client must present a certificate
/// that CA issued (mutual TLS); [`crate::peer::ClientCertificate::of`] then gives its
/// names. `alpn` lists the application protocols offered, in order of preference.
pub fn server_config(
    identity: Identity<'_>,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, NetError> {
    server_config_with(identity, client_ca, alpn, Versions::Tls12And13)
}

/// As [`server_config`], accepting only `versions`.
pub fn server_config_with(
    identity: Identity<'_>,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
    versions: Versions,
) -> Result<Arc<ServerConfig>, NetError> {
    let chain = read_certificates(identity.cert)?;
    let key = read_private_key(identity.key)?;
    let provider = provider_for(versions);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions.list())
        .map_err(NetError::Protocol)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider)
                    .build()
                    .map_err(|source| NetError::Verifier {
                        path: ca.to_path_buf(),
                        source,
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder
            .with_single_cert(chain, key)
            .map_err(|source| NetError::CertifiedKey {
                cert: identity.cert.to_path_buf(),
                key: identity.key.to_path_buf(),
                source,
            })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client's configuration: the server's certificate must chain to `server_ca`; with
/// `identity`, the client presents that certificate (mutual TLS). `alpn` lists the
/// application protocols asked for.
pub fn client_config(
    server_ca: &Path,
    identity: Option<Identity<'_>>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, NetError> {
    client_config_with(server_ca, identity, alpn, Versions::Tls12And13)
}

/// As [`client_config`], offering only `versions`.
pub fn client_config_with(
    server_ca: &Path,
    identity: Option<Identity<'_>>,
    alpn: &[&[u8]],
    versions: Versions,
) -> Result<Arc<ClientConfig>, NetError> {
    let roots = read_roots(server_ca)?;
    let builder = ClientConfig::builder_with_provider(provider_for(versions))
        .with_protocol_versions(versions.list())
        .map_err(NetError::Protocol)?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain = read_certificates(identity.cert)?;
            let key = read_private_key(identity.key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| NetError::CertifiedKey {
                    cert: identity.cert.to_path_buf(),
                    key: identity.key.to_path_buf(),
                    source,
                })?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devcert::dev_certificates;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        p
    }

    #[test]
    fn dev_certificates_load_into_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let certs =
            dev_certificates(&["localhost".into(), "127.0.0.1".into()], Some("alice")).unwrap();
        let cert = write(dir.path(), "server.pem", &certs.server_pem);
        let key = write(dir.path(), "server.key", &certs.server_key_pem);
        let ca = write(dir.path(), "ca.pem", &certs.ca_pem);
        let identity = Identity {
            cert: &cert,
            key: &key,
        };
        let config = server_config(identity, Some(&ca), &[b"h2", b"http/1.1"]).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = server_config(identity, None, &[])
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn a_client_key_readable_by_others_and_a_wrong_key_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dev_certificates(&["localhost".into()], Some("worker")).unwrap();
        let ca = write(dir.path(), "ca.pem", &certs.ca_pem);
        let (client_pem, client_key) = certs.client.unwrap();
        let cert = write(dir.path(), "client.pem", &client_pem);
        // The server's key is not the client certificate's.
        let other_key = write(dir.path(), "server.key", &certs.server_key_pem);
        let err = client_config(
            &ca,
            Some(Identity {
                cert: &cert,
                key: &other_key,
            }),
            &[],
        )
        .err()
        .unwrap();
        assert!(matches!(err, NetError::CertifiedKey { .. }), "{err}");
        let key = write(dir.path(), "client.key", &client_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
            let err = client_config(
                &ca,
                Some(Identity {
                    cert: &cert,
                    key: &key,
                }),
                &[],
            )
            .err()
            .unwrap();
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        // A CA file without a certificate names the file.
        let empty = write(dir.path(), "empty.pem", "");
        let err = client_config(&empty, None, &[]).err().unwrap();
        assert!(matches!(err, NetError::NoCertificate { .. }), "{err}");
    }
}
