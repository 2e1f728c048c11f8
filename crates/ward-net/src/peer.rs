//! The names a verified client certificate carries: what the tokens file maps to a
//! principal (a DNS name, or a URI such as a SPIFFE ID, `spiffe://cluster/job/worker/3`,
//! from which a service may also read a role).

use rustls_pki_types::CertificateDer;

/// The names in a client certificate's subjectAltName. Only certificates rustls has
/// verified against the client CA get here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// DNS names, lowercased; wildcards are left out (they name no one client).
    pub dns_names: Vec<String>,
    /// URIs, as written in the certificate.
    pub uris: Vec<String>,
}

impl ClientCertificate {
    /// The verified client certificate of `connection`, if the client sent one.
    pub fn of(connection: &rustls::ServerConnection) -> Option<ClientCertificate> {
        ClientCertificate::from_verified(connection.peer_certificates()?.first()?)
    }

    /// The names of `leaf`, a client certificate that the caller's TLS stack has already
    /// verified (a chain to the client CA, in date, for client authentication); `None`
    /// when it is not a certificate webpki can read.
    pub fn from_verified(leaf: &CertificateDer<'_>) -> Option<ClientCertificate> {
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
