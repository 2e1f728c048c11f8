//! TLS by rustls: 1.3 and 1.2 (rustls offers no older version), ALPN for HTTP/2 and
//! HTTP/1.1, and optionally client certificates checked against a CA (mTLS).

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{read_private_text, read_text};
use crate::ServeError;

const MAX_PEM_BYTES: u64 = 1 << 20;

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let text = read_text(path, MAX_PEM_BYTES)?;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// The server's TLS configuration from PEM files. The key file must be private (0600).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, ServeError> {
    let chain = certificates(cert)?;
    let key_text = read_private_text(key, MAX_PEM_BYTES)?;
    let key_der = PrivateKeyDer::from_pem_slice(key_text.as_bytes())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certificates(ca)? {
                roots
                    .add(c)
                    .map_err(|e| ServeError::Tls(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ServeError::Tls(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key_der)
        .map_err(|e| ServeError::Tls(format!("{} and {}: {e}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The names a client certificate carries in its subjectAltName, for the tokens file to map
/// to a principal. Only certificates rustls has verified against the client CA get here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// DNS names, lowercased; wildcards are left out (they name no one client).
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
}

impl ClientCertificate {
    /// The verified client certificate of `connection`, if the client sent one.
    pub fn of(connection: &rustls::ServerConnection) -> Option<ClientCertificate> {
        let leaf = connection.peer_certificates()?.first()?;
        // webpki warns against its name list for checking a server's name, where
        // wildcards and name constraints matter; here names are compared exactly and
        // wildcards dropped, so a certificate only ever matches a name it spells out.
        let certificate = webpki::EndEntityCert::try_from(leaf).ok()?;
        Some(ClientCertificate {
            dns_names: certificate
                .valid_dns_names()
                .filter(|name| !name.contains('*'))
                .map(str::to_ascii_lowercase)
                .collect(),
            uris: certificate.valid_uri_names().map(String::from).collect(),
        })
    }
}

/// A development CA and a server certificate it issued (and optionally a client one), in
/// PEM. For tests and first runs: production deployments bring their own certificates.
pub struct DevCertificates {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    pub client: Option<(String, String)>,
}

/// Makes a fresh P-256 CA, valid for a year, and leaves for `hosts` (DNS names or IP
/// addresses) and, when `client` is given, for a client of that name (its common name and
/// subjectAltName DNS name, so that a tokens entry's `client_dns_name` can map it).
pub fn dev_certificates(
    hosts: &[String],
    client: Option<&str>,
) -> Result<DevCertificates, ServeError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| ServeError::Tls(format!("making a development certificate: {e}"));
    let now = time_now();
    let year = rcgen::date_time_ymd(now.0 + 1, now.1, now.2.min(28));
    let start = rcgen::date_time_ymd(now.0, now.1, now.2.min(28));
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ward development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = start;
    ca_params.not_after = year;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |names: Vec<String>,
                purpose: ExtendedKeyUsagePurpose,
                cn: &str|
     -> Result<(String, String), ServeError> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(names).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![purpose];
        params.not_before = start;
        params.not_after = year;
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_pem, server_key_pem) = leaf(
        hosts.to_vec(),
        ExtendedKeyUsagePurpose::ServerAuth,
        hosts.first().map_or("ward", String::as_str),
    )?;
    let client = client
        .map(|name| {
            leaf(
                vec![name.to_string()],
                ExtendedKeyUsagePurpose::ClientAuth,
                name,
            )
        })
        .transpose()?;
    Ok(DevCertificates {
        ca_pem: ca_cert.pem(),
        server_pem,
        server_key_pem,
        client,
    })
}

/// Today's (year, month, day) in UTC, from the system clock.
fn time_now() -> (i32, u8, u8) {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_date() {
        let (y, m, d) = time_now();
        assert!(y >= 2025 && (1..=12).contains(&m) && (1..=31).contains(&d));
    }

    #[test]
    fn dev_certificates_load_into_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let certs =
            dev_certificates(&["localhost".into(), "127.0.0.1".into()], Some("alice")).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            p
        };
        let cert = write("server.pem", &certs.server_pem);
        let key = write("server.key", &certs.server_key_pem);
        let ca = write("ca.pem", &certs.ca_pem);
        let config = server_config(&cert, &key, Some(&ca)).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = server_config(&cert, &key, None).err().unwrap().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }
}
