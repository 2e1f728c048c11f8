//! The signature file: a Sigstore bundle v0.3 holding a DSSE envelope (model-signing 1.1.1,
//! `reference/model-signing-format.md` §1.2).
//!
//! Parsing is as strict as the reference verifier (unknown fields are refused, the media
//! and payload types must match exactly) and stricter in one place: the envelope must hold
//! exactly one signature, where the reference checks the first and ignores the rest.
//! Further signers add further files (`model.2.sig`, …).

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};

/// The only bundle media type model-signing 1.1.1 accepts.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Most certificates in a chain.
pub const MAX_CHAIN_CERTIFICATES: usize = 8;

/// Who signed, as the bundle says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// A public key, optionally named by its hint (hex SHA-256 of its canonical PEM).
    PublicKey { hint: Option<String> },
    /// An X.509 chain, leaf first, DER.
    Certificates(Vec<Vec<u8>>),
}

/// A parsed bundle: the signed payload and the one signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub material: Material,
    /// The in-toto statement as signed (the bytes are kept exactly; JSON layout varies).
    pub payload: Vec<u8>,
    /// DER ECDSA signature over [`pae`]`(PAYLOAD_TYPE, payload)`.
    pub signature: Vec<u8>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    #[serde(rename = "mediaType")]
    media_type: String,
    #[serde(rename = "verificationMaterial")]
    verification_material: RawMaterial,
    #[serde(rename = "dsseEnvelope")]
    dsse_envelope: RawEnvelope,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawMaterial {
    #[serde(rename = "publicKey", skip_serializing_if = "Option::is_none")]
    public_key: Option<RawPublicKey>,
    #[serde(
        rename = "x509CertificateChain",
        skip_serializing_if = "Option::is_none"
    )]
    x509_certificate_chain: Option<RawChain>,
    /// Sigstore keyless bundles carry a Fulcio certificate here; ward does not verify them.
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<serde_json::Value>,
    #[serde(rename = "tlogEntries", default)]
    tlog_entries: Vec<serde_json::Value>,
    #[serde(
        rename = "timestampVerificationData",
        skip_serializing_if = "Option::is_none"
    )]
    timestamp_verification_data: Option<serde_json::Value>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPublicKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
    // Legacy fields the reference drops before parsing.
    #[serde(rename = "rawBytes", skip_serializing)]
    _raw_bytes: Option<serde_json::Value>,
    #[serde(rename = "keyDetails", skip_serializing)]
    _key_details: Option<serde_json::Value>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    certificates: Vec<RawCertificate>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    #[serde(rename = "rawBytes")]
    raw_bytes: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<RawSignature>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    sig: String,
    #[serde(default)]
    keyid: Option<String>,
}

/// DSSE v1 pre-authentication encoding: what the ECDSA signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, String> {
    Base64::decode_vec(text).map_err(|_| format!("{field} is not padded standard base64"))
}

impl Bundle {
    /// Parses a signature file. The error says which field is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, String> {
        let raw: RawBundle =
            serde_json::from_slice(bytes).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
        if raw.media_type != BUNDLE_MEDIA_TYPE {
            return Err(format!(
                "mediaType is {:?}, expected {BUNDLE_MEDIA_TYPE:?}",
                raw.media_type
            ));
        }
        let envelope = raw.dsse_envelope;
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(format!(
                "dsseEnvelope.payloadType is {:?}, expected {PAYLOAD_TYPE:?}",
                envelope.payload_type
            ));
        }
        let [signature] = envelope.signatures.as_slice() else {
            return Err(format!(
                "dsseEnvelope.signatures has {} entries; ward expects exactly one per file \
                 (further signers write model.2.sig, model.3.sig, ...)",
                envelope.signatures.len()
            ));
        };
        let payload = b64("dsseEnvelope.payload", &envelope.payload)?;
        let signature = b64("dsseEnvelope.signatures[0].sig", &signature.sig)?;
        let m = raw.verification_material;
        let material = match (m.public_key, m.x509_certificate_chain, m.certificate) {
            (Some(key), None, None) => Material::PublicKey { hint: key.hint },
            (None, Some(chain), None) => {
                if chain.certificates.is_empty() {
                    return Err("verificationMaterial.x509CertificateChain is empty".into());
                }
                if chain.certificates.len() > MAX_CHAIN_CERTIFICATES {
                    return Err(format!(
                        "verificationMaterial.x509CertificateChain has {} certificates, over the \
                         limit of {MAX_CHAIN_CERTIFICATES}",
                        chain.certificates.len()
                    ));
                }
                let certs = chain
                    .certificates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        b64(
                            &format!("x509CertificateChain.certificates[{i}].rawBytes"),
                            &c.raw_bytes,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Material::Certificates(certs)
            }
            (None, None, Some(_)) => {
                return Err(
                    "a Sigstore keyless (Fulcio certificate) signature: ward verifies \
                            offline against the keys and CAs of its trust policy, not against \
                            the public Sigstore instance"
                        .into(),
                )
            }
            (None, None, None) => {
                return Err(
                    "verificationMaterial has neither publicKey nor x509CertificateChain".into(),
                )
            }
            _ => return Err("verificationMaterial has more than one kind of key material".into()),
        };
        Ok(Bundle {
            material,
            payload,
            signature,
        })
    }

    /// The bundle as model-signing writes it: compact JSON, no trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let material = match &self.material {
            Material::PublicKey { hint } => RawMaterial {
                public_key: Some(RawPublicKey {
                    hint: hint.clone(),
                    _raw_bytes: None,
                    _key_details: None,
                }),
                x509_certificate_chain: None,
                certificate: None,
                tlog_entries: Vec::new(),
                timestamp_verification_data: None,
            },
            Material::Certificates(certs) => RawMaterial {
                public_key: None,
                x509_certificate_chain: Some(RawChain {
                    certificates: certs
                        .iter()
                        .map(|c| RawCertificate {
                            raw_bytes: Base64::encode_string(c),
                        })
                        .collect(),
                }),
                certificate: None,
                tlog_entries: Vec::new(),
                timestamp_verification_data: None,
            },
        };
        let raw = RawBundle {
            media_type: BUNDLE_MEDIA_TYPE.into(),
            verification_material: material,
            dsse_envelope: RawEnvelope {
                payload: Base64::encode_string(&self.payload),
                payload_type: PAYLOAD_TYPE.into(),
                signatures: vec![RawSignature {
                    sig: Base64::encode_string(&self.signature),
                    keyid: Some(String::new()),
                }],
            },
        };
        // Strings and arrays only: serialisation cannot fail.
        serde_json::to_vec(&raw).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn round_trip_and_strictness() {
        let b = Bundle {
            material: Material::PublicKey {
                hint: Some("ab".into()),
            },
            payload: b"{}".to_vec(),
            signature: vec![1, 2, 3],
        };
        let json = b.to_json();
        assert_eq!(Bundle::parse(&json).unwrap(), b);
        let text = String::from_utf8(json).unwrap();
        let extra = text.replacen('{', r#"{"extra":1,"#, 1);
        assert!(Bundle::parse(extra.as_bytes())
            .unwrap_err()
            .contains("unknown field"));
        let media = text.replace("bundle.v0.3+json", "bundle+json;version=0.3");
        assert!(Bundle::parse(media.as_bytes())
            .unwrap_err()
            .contains("mediaType"));
        let two = text.replace(
            r#""keyid":""}]"#,
            r#""keyid":""},{"sig":"AA==","keyid":""}]"#,
        );
        assert!(Bundle::parse(two.as_bytes())
            .unwrap_err()
            .contains("exactly one"));
        let unpadded = text.replace("\"e30=\"", "\"e30\"");
        assert!(Bundle::parse(unpadded.as_bytes())
            .unwrap_err()
            .contains("payload"));
    }
}
