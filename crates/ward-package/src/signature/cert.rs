//! Certificate-method signatures: the bundle carries an X.509 chain, leaf first; the leaf
//! must chain to a CA of the trust policy and be valid *now* (model-signing 1.1.1 checks
//! it at the leaf's start date, so it accepts expired leaves; ward does not).
//!
//! Path building and validation are rustls-webpki's, the verifier rustls uses for TLS;
//! the signature algorithms it calls are RustCrypto's ECDSA, through `EcdsaAlgorithm`.

use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::{
    alg_id, AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm,
    UnixTime,
};
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;

use super::keys::PublicKey;

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER contents of the OID.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// ECDSA with a curve and hash, verified by RustCrypto for webpki.
#[derive(Debug)]
struct EcdsaAlgorithm {
    curve: AlgorithmIdentifier,
    hash: AlgorithmIdentifier,
}

const ALGORITHMS: [EcdsaAlgorithm; 3] = [
    EcdsaAlgorithm {
        curve: alg_id::ECDSA_P256,
        hash: alg_id::ECDSA_SHA256,
    },
    EcdsaAlgorithm {
        curve: alg_id::ECDSA_P384,
        hash: alg_id::ECDSA_SHA384,
    },
    EcdsaAlgorithm {
        curve: alg_id::ECDSA_P521,
        hash: alg_id::ECDSA_SHA512,
    },
];

impl SignatureVerificationAlgorithm for EcdsaAlgorithm {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        use p256::ecdsa::signature::Verifier;
        let ok = if self.curve == alg_id::ECDSA_P256 {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key);
            let sig = p256::ecdsa::Signature::from_der(signature);
            matches!((key, sig), (Ok(k), Ok(s)) if k.verify(message, &s).is_ok())
        } else if self.curve == alg_id::ECDSA_P384 {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(public_key);
            let sig = p384::ecdsa::Signature::from_der(signature);
            matches!((key, sig), (Ok(k), Ok(s)) if k.verify(message, &s).is_ok())
        } else {
            let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(public_key);
            let sig = p521::ecdsa::Signature::from_der(signature);
            matches!((key, sig), (Ok(k), Ok(s)) if k.verify(message, &s).is_ok())
        };
        if ok {
            Ok(())
        } else {
            Err(InvalidSignature)
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.curve
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.hash
    }
}

/// The signer a valid chain vouches for.
#[derive(Debug, Clone)]
pub struct CertifiedSigner {
    /// Index of the CA (in the list given) the chain ends at.
    pub ca: usize,
    pub leaf_key: PublicKey,
    /// The leaf's subject, RFC 4514 style (`CN=model-signer@example.com`).
    pub subject: String,
}

/// Reads PEM certificates (a CA file may hold several).
pub fn certificates_from_pem(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let certs = Certificate::load_pem_chain(text.as_bytes())
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(|e| e.to_string()))
        .collect()
}

/// Checks `chain` (leaf first, DER) against the CA certificates `cas` at `now`: the leaf
/// must chain to one of them through the rest of `chain`, every certificate must be
/// within its validity period, and a leaf that lists extended key usages must list
/// code signing.
pub fn verify_chain(
    chain: &[Vec<u8>],
    cas: &[Vec<u8>],
    now: SystemTime,
) -> Result<CertifiedSigner, String> {
    let [leaf_der, intermediates @ ..] = chain else {
        return Err("the certificate chain is empty".into());
    };
    let leaf_cert_der = CertificateDer::from(leaf_der.as_slice());
    let leaf = webpki::EndEntityCert::try_from(&leaf_cert_der)
        .map_err(|e| format!("the signing certificate cannot be parsed: {e}"))?;
    let ca_ders: Vec<CertificateDer<'_>> = cas
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let mut anchors = Vec::with_capacity(cas.len());
    for (i, c) in ca_ders.iter().enumerate() {
        anchors.push(
            webpki::anchor_from_trusted_cert(c)
                .map_err(|e| format!("trusted CA certificate {i} cannot be parsed: {e}"))?,
        );
    }
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970".to_string())?;
    let algorithms: Vec<&dyn SignatureVerificationAlgorithm> = ALGORITHMS
        .iter()
        .map(|a| a as &dyn SignatureVerificationAlgorithm)
        .collect();
    let path = leaf
        .verify_for_usage(
            &algorithms,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(seconds),
            webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
            None,
            None,
        )
        .map_err(|e| describe(&e, leaf_der))?;
    let anchor = path.anchor();
    let ca = anchors
        .iter()
        .position(|a| {
            a.subject == anchor.subject
                && a.subject_public_key_info == anchor.subject_public_key_info
        })
        .unwrap_or(0);
    let parsed = Certificate::from_der(leaf_der)
        .map_err(|e| format!("the signing certificate cannot be parsed: {e}"))?;
    let spki = parsed
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let leaf_key = PublicKey::from_spki_der(&spki).map_err(|e| e.to_string())?;
    Ok(CertifiedSigner {
        ca,
        leaf_key,
        subject: parsed.tbs_certificate().subject().to_string(),
    })
}

/// A one-line reason, with the leaf's validity period when time is the problem.
fn describe(e: &webpki::Error, leaf_der: &[u8]) -> String {
    let validity = || {
        Certificate::from_der(leaf_der)
            .map(|c| {
                let v = c.tbs_certificate().validity();
                format!("valid from {} to {}", v.not_before, v.not_after)
            })
            .unwrap_or_default()
    };
    match e {
        webpki::Error::CertExpired { .. } => {
            format!("the signing certificate has expired ({})", validity())
        }
        webpki::Error::CertNotValidYet { .. } => {
            format!("the signing certificate is not valid yet ({})", validity())
        }
        webpki::Error::UnknownIssuer => {
            "the signing certificate does not chain to a CA of the trust policy".into()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "the signing certificate is not for code signing (its extended key usage lacks \
             id-kp-codeSigning)"
                .into()
        }
        other => format!("the certificate chain is invalid: {other}"),
    }
}
