//! Development certificates: a fresh P-256 CA, valid for a year, and leaves it issues for
//! servers and clients, in PEM. For tests and first runs (`ward tls-cert`): production
//! deployments bring their own CA.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::NetError;

/// A development CA that issues certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    /// The day its validity starts, (year, month, day); every leaf has the CA's validity.
    start: (i32, u8, u8),
}

/// A certificate and its private key, both PEM.
pub type PemPair = (String, String);

impl DevCa {
    /// A new CA with a fresh key, valid from today for a year.
    pub fn new() -> Result<DevCa, NetError> {
        let (year, month, day) = today();
        let start = (year, month, day.min(28));
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, "ward development CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, start);
        let certificate = params.self_signed(&key)?;
        Ok(DevCa {
            issuer: Issuer::new(params, key),
            pem: certificate.pem(),
            start,
        })
    }

    /// The CA's certificate, PEM: what servers and clients trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `hosts` (DNS names or IP addresses; the first is its
    /// common name).
    pub fn server(&self, hosts: &[String]) -> Result<PemPair, NetError> {
        let params = CertificateParams::new(hosts.to_vec())?;
        self.leaf(
            params,
            ExtendedKeyUsagePurpose::ServerAuth,
            hosts.first().map_or("ward", String::as_str),
        )
    }

    /// A client certificate named `name`: its common name and subjectAltName DNS name (a
    /// tokens entry's `client_dns_name` maps it to a principal).
    pub fn client(&self, name: &str) -> Result<PemPair, NetError> {
        let params = CertificateParams::new(vec![name.to_string()])?;
        self.leaf(params, ExtendedKeyUsagePurpose::ClientAuth, name)
    }

    /// A client certificate whose subjectAltName is the URI `uri` (a SPIFFE ID, say; a
    /// tokens entry's `client_uri` maps it to a principal).
    pub fn client_uri(&self, uri: &str) -> Result<PemPair, NetError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
        self.leaf(params, ExtendedKeyUsagePurpose::ClientAuth, uri)
    }

    /// A cluster member's certificate (`ward cluster init`): its identity is the URI
    /// `uri` (a SPIFFE ID such as `spiffe://cluster/job/worker/3`), and it serves and
    /// connects alike (server and client authentication), under the DNS names and IP
    /// addresses `hosts` its peers dial.
    pub fn member(&self, uri: &str, hosts: &[String]) -> Result<PemPair, NetError> {
        let (from, until) = self.validity();
        self.member_valid(uri, hosts, from, until)
    }

    /// As [`DevCa::member`], valid from `from` to `until`, (year, month, day) each: a
    /// certificate that has expired, for tests of refusal.
    pub fn member_valid(
        &self,
        uri: &str,
        hosts: &[String],
        from: (i32, u8, u8),
        until: (i32, u8, u8),
    ) -> Result<PemPair, NetError> {
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params, uri, from, until)
    }

    /// The CA's validity, (year, month, day) from and until.
    fn validity(&self) -> ((i32, u8, u8), (i32, u8, u8)) {
        let (year, month, day) = self.start;
        (self.start, (year + 1, month, day))
    }

    fn leaf(
        &self,
        mut params: CertificateParams,
        purpose: ExtendedKeyUsagePurpose,
        common_name: &str,
    ) -> Result<PemPair, NetError> {
        params.extended_key_usages = vec![purpose];
        let (from, until) = self.validity();
        self.sign(params, common_name, from, until)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        common_name: &str,
        (fy, fm, fd): (i32, u8, u8),
        (uy, um, ud): (i32, u8, u8),
    ) -> Result<PemPair, NetError> {
        let key = KeyPair::generate()?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.not_before = rcgen::date_time_ymd(fy, fm, fd);
        params.not_after = rcgen::date_time_ymd(uy, um, ud);
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok((certificate.pem(), key.serialize_pem()))
    }
}

/// A development CA and a server certificate it issued (and optionally a client one), in
/// PEM.
pub struct DevCertificates {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    /// The client certificate and key, when one was asked for.
    pub client: Option<PemPair>,
}

/// Makes a fresh CA and leaves for `hosts` (DNS names or IP addresses) and, when `client`
/// is given, for a client of that name (see [`DevCa::client`]).
pub fn dev_certificates(
    hosts: &[String],
    client: Option<&str>,
) -> Result<DevCertificates, NetError> {
    let ca = DevCa::new()?;
    let (server_pem, server_key_pem) = ca.server(hosts)?;
    let client = client.map(|name| ca.client(name)).transpose()?;
    Ok(DevCertificates {
        ca_pem: ca.pem,
        server_pem,
        server_key_pem,
        client,
    })
}

/// A year from `(year, month, day)` (a day of at most 28, so it exists in every month).
fn set_validity(params: &mut CertificateParams, (year, month, day): (i32, u8, u8)) {
    params.not_before = rcgen::date_time_ymd(year, month, day);
    params.not_after = rcgen::date_time_ymd(year + 1, month, day);
}

/// Today's (year, month, day) in UTC, from the system clock.
fn today() -> (i32, u8, u8) {
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
        let (y, m, d) = today();
        assert!(y >= 2025 && (1..=12).contains(&m) && (1..=31).contains(&d));
    }
}
