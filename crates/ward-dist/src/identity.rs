//! Who a peer is. A cluster certificate names one member in its URI subjectAltName,
//! `spiffe://CLUSTER/JOB/coordinator`, `spiffe://CLUSTER/JOB/server/I` or
//! `spiffe://CLUSTER/JOB/worker/I`: the role and rank of every process come from the
//! certificate it proved it holds, never from a message field or a name it picked.

use std::fmt;

use rustls_pki_types::CertificateDer;

/// Most servers or workers in one job.
pub const MAX_RANKS: u32 = 4096;
/// Longest cluster or job name.
pub const MAX_NAME_LEN: usize = 63;

/// A member's role, with its rank for servers and workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Coordinator,
    Server(u32),
    Worker(u32),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Coordinator => f.write_str("coordinator"),
            Role::Server(rank) => write!(f, "server/{rank}"),
            Role::Worker(rank) => write!(f, "worker/{rank}"),
        }
    }
}

/// One member of one job of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    pub cluster: String,
    pub job: String,
    pub role: Role,
}

/// Why a certificate names no member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the certificate cannot be read")]
    Unreadable,
    #[error("the certificate has no spiffe:// URI subjectAltName")]
    NoSpiffeUri,
    #[error("the certificate has {0} spiffe:// URIs; a member has exactly one")]
    SeveralUris(usize),
    #[error("{uri:?}: {problem}")]
    Malformed { uri: String, problem: &'static str },
}

impl Member {
    pub fn new(cluster: &str, job: &str, role: Role) -> Member {
        Member {
            cluster: cluster.to_string(),
            job: job.to_string(),
            role,
        }
    }

    /// The SPIFFE ID that names this member.
    pub fn uri(&self) -> String {
        format!("spiffe://{}/{}/{}", self.cluster, self.job, self.role)
    }

    /// Whether `other` is of the same job of the same cluster.
    pub fn same_job(&self, other: &Member) -> bool {
        self.cluster == other.cluster && self.job == other.job
    }

    /// Reads a SPIFFE ID: `spiffe://CLUSTER/JOB/coordinator`, `.../server/I` or
    /// `.../worker/I`, names of 1 to 63 lowercase letters, digits, `-`, `.` and `_`, and a
    /// rank in decimal without leading zeros below [`MAX_RANKS`].
    pub fn parse(uri: &str) -> Result<Member, IdentityError> {
        let bad = |problem| IdentityError::Malformed {
            uri: uri.chars().take(200).collect(),
            problem,
        };
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("not a spiffe:// URI"))?;
        let segments: Vec<&str> = rest.split('/').collect();
        let (cluster, job, role) = match segments.as_slice() {
            [cluster, job, "coordinator"] => (*cluster, *job, Role::Coordinator),
            [cluster, job, kind @ ("server" | "worker"), rank] => {
                let rank = parse_rank(rank).ok_or_else(|| bad("the rank is not 0 to 4095"))?;
                let role = if *kind == "server" {
                    Role::Server(rank)
                } else {
                    Role::Worker(rank)
                };
                (*cluster, *job, role)
            }
            _ => {
                return Err(bad(
                    "not CLUSTER/JOB/coordinator, CLUSTER/JOB/server/I or CLUSTER/JOB/worker/I",
                ))
            }
        };
        if !valid_name(cluster) {
            return Err(bad("the cluster name is not 1 to 63 of a-z 0-9 - . _"));
        }
        if !valid_name(job) {
            return Err(bad("the job name is not 1 to 63 of a-z 0-9 - . _"));
        }
        Ok(Member::new(cluster, job, role))
    }

    /// The member a certificate names. Only for a certificate rustls has verified (a
    /// chain to the cluster CA, in date).
    pub fn of_certificate(leaf: &CertificateDer<'_>) -> Result<Member, IdentityError> {
        let certificate =
            webpki::EndEntityCert::try_from(leaf).map_err(|_| IdentityError::Unreadable)?;
        let uris: Vec<&str> = certificate
            .valid_uri_names()
            .filter(|u| u.starts_with("spiffe://"))
            .collect();
        match uris.as_slice() {
            [] => Err(IdentityError::NoSpiffeUri),
            [uri] => Member::parse(uri),
            many => Err(IdentityError::SeveralUris(many.len())),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Whether `name` can be a cluster or job name.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        })
}

fn parse_rank(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 4 || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|r| *r < MAX_RANKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_uris_round_trip() {
        for role in [Role::Coordinator, Role::Server(0), Role::Worker(4095)] {
            let m = Member::new("lab", "mnist-1", role);
            assert_eq!(Member::parse(&m.uri()).unwrap(), m);
        }
        assert_eq!(
            Member::new("c", "j", Role::Worker(3)).uri(),
            "spiffe://c/j/worker/3"
        );
    }

    #[test]
    fn malformed_uris_are_refused_with_the_reason() {
        for (uri, why) in [
            ("https://c/j/coordinator", "spiffe"),
            ("spiffe://c/j/worker", "CLUSTER/JOB"),
            ("spiffe://c/j/worker/03", "rank"),
            ("spiffe://c/j/worker/4096", "rank"),
            ("spiffe://c/j/worker/-1", "rank"),
            ("spiffe://c/j/admin/1", "CLUSTER/JOB"),
            ("spiffe://C/j/coordinator", "cluster name"),
            ("spiffe://c//coordinator", "job name"),
            ("spiffe://c/j/coordinator/", "CLUSTER/JOB"),
            ("spiffe://c/j/server/1/x", "CLUSTER/JOB"),
        ] {
            let err = Member::parse(uri).unwrap_err().to_string();
            assert!(err.contains(why), "{uri}: {err}");
        }
    }
}
