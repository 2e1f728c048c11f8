//! Reading PEM certificates and private keys from files, through ward-core's bounded file
//! reads: no links, a size limit, and for keys, a file only its owner may read.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::NetError;

/// Largest PEM file read: a chain of a few certificates is a few KiB.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// The certificates of a PEM file, in order (a chain: leaf first); at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let text = ward_core::files::read_small_text(path, MAX_PEM_BYTES)
        .map_err(|e| NetError::file(path, e))?;
    let certificates = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| NetError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(NetError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// The private key of a PEM file (PKCS#8, SEC1 or PKCS#1), which must be readable by its
/// owner only (mode 0600 or stricter), or, for a process that is not root, owned by root
/// and readable by its group only (a Kubernetes Secret mounted with an `fsGroup`; see
/// `ward_core::files::key_mode_allowed`).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, NetError> {
    let text = ward_core::files::read_private_key_text(path, MAX_PEM_BYTES)
        .map_err(|e| NetError::file(path, e))?;
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|source| NetError::Pem {
        path: path.to_path_buf(),
        source,
    })
}
