//! ECDSA keys on P-256, P-384 and P-521, in PEM, as OpenSSF model signing uses them.
//!
//! The signature hashes with the curve's hash (SHA-256, SHA-384, SHA-512). A public key is
//! identified by its *hint*: the SHA-256 of its canonical PEM text (64-column base64, LF,
//! trailing newline), which both model-signing's signer and verifier compute by
//! re-encoding the key, never from the bytes of the user's file.

use std::fs;
use std::path::Path;

use p256::elliptic_curve::Generate;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::{Digest, Sha256};
use signature_traits::{Signer, Verifier};
use x509_cert::der::{self, Decode};
use x509_cert::spki::SubjectPublicKeyInfoRef;

use crate::error::PackageError;
use ward_core::files::{read_private_text, read_small_text, FileError};

// The `signature` crate is reached through p256 so that its version always matches.
use p256::ecdsa::signature as signature_traits;

/// Largest key file ward reads (a P-521 PKCS#8 PEM is under 400 bytes).
pub const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// A public key that can check model signatures.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({} {})", self.curve(), self.hint())
    }
}

fn key_error(reason: impl Into<String>) -> PackageError {
    PackageError::Key {
        reason: reason.into(),
    }
}

/// Why a key of algorithm `oid` (`kind`: "key", "private key") is not one ward can use.
fn algorithm_problem(oid: &str, kind: &str) -> String {
    let curves = "OpenSSF model signing (and ward) use ECDSA on P-256, P-384 or P-521";
    match oid {
        OID_ED25519 => format!("Ed25519 keys are not supported: {curves}"),
        OID_RSA => format!("RSA keys are not supported: {curves}"),
        OID_EC_PUBLIC_KEY => format!("the EC {kind} is not on P-256, P-384 or P-521"),
        other => format!("{kind}s of algorithm {other} are not supported: {curves}"),
    }
}

/// Why a SubjectPublicKeyInfo is not a key ward can use.
fn unsupported_algorithm(spki_der: &[u8]) -> String {
    match SubjectPublicKeyInfoRef::from_der(spki_der) {
        Ok(spki) => algorithm_problem(&spki.algorithm.oid.to_string(), "key"),
        Err(e) => format!("not a SubjectPublicKeyInfo: {e}"),
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn from_pem(text: &str) -> Result<PublicKey, PackageError> {
        let (label, der) = der::pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| key_error(format!("not a PEM public key: {e}")))?;
        if label != "PUBLIC KEY" {
            return Err(key_error(format!(
                "expected a PEM \"PUBLIC KEY\", found {label:?}"
            )));
        }
        PublicKey::from_spki_der(&der)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, PackageError> {
        if let Ok(k) = p256::PublicKey::from_public_key_der(der) {
            return Ok(PublicKey::P256(k.into()));
        }
        if let Ok(k) = p384::PublicKey::from_public_key_der(der) {
            return Ok(PublicKey::P384(k.into()));
        }
        if let Ok(k) = p521::PublicKey::from_public_key_der(der) {
            return Ok(PublicKey::P521(k.into()));
        }
        Err(key_error(unsupported_algorithm(der)))
    }

    /// The curve's name, as OpenSSL spells it.
    pub fn curve(&self) -> &'static str {
        match self {
            PublicKey::P256(_) => "P-256",
            PublicKey::P384(_) => "P-384",
            PublicKey::P521(_) => "P-521",
        }
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        let encoded = match self {
            PublicKey::P256(k) => p256::PublicKey::from(k).to_public_key_der(),
            PublicKey::P384(k) => p384::PublicKey::from(k).to_public_key_der(),
            PublicKey::P521(k) => p521::PublicKey::from(k).to_public_key_der(),
        };
        // Encoding a valid curve point cannot fail.
        encoded.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// The canonical PEM text: what `openssl pkey -pubout` and Python `cryptography` write.
    pub fn canonical_pem(&self) -> String {
        der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &self.spki_der()).unwrap_or_default()
    }

    /// Lowercase hex SHA-256 of [`canonical_pem`](Self::canonical_pem): the key hint of a
    /// model-signing bundle.
    pub fn hint(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_pem().as_bytes()))
    }

    /// Checks a DER ECDSA signature over `message`, hashed with the curve's hash.
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> bool {
        match self {
            PublicKey::P256(k) => p256::ecdsa::Signature::from_der(der_signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            PublicKey::P384(k) => p384::ecdsa::Signature::from_der(der_signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            PublicKey::P521(k) => p521::ecdsa::Signature::from_der(der_signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
        }
    }
}

/// A private key that can sign models.
pub enum PrivateKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public_key().hint())
    }
}

impl PrivateKey {
    /// A new P-256 key from the operating system's CSPRNG.
    pub fn generate_p256() -> Result<PrivateKey, PackageError> {
        let secret = p256::SecretKey::try_generate()
            .map_err(|e| key_error(format!("the system random source failed: {e}")))?;
        Ok(PrivateKey::P256(secret.into()))
    }

    /// Reads a PEM private key: SEC1 `EC PRIVATE KEY` or unencrypted PKCS#8 `PRIVATE KEY`.
    pub fn from_pem(text: &str) -> Result<PrivateKey, PackageError> {
        let text = text.trim();
        let (label, der) = der::pem::decode_vec(text.as_bytes())
            .map_err(|e| key_error(format!("not a PEM private key: {e}")))?;
        match label {
            "EC PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_sec1_der(&der) {
                    return Ok(PrivateKey::P256(k.into()));
                }
                if let Ok(k) = p384::SecretKey::from_sec1_der(&der) {
                    return Ok(PrivateKey::P384(k.into()));
                }
                if let Ok(k) = p521::SecretKey::from_sec1_der(&der) {
                    return Ok(PrivateKey::P521(k.into()));
                }
                Err(key_error(
                    "the EC private key is not on P-256, P-384 or P-521",
                ))
            }
            "PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_pkcs8_der(&der) {
                    return Ok(PrivateKey::P256(k.into()));
                }
                if let Ok(k) = p384::SecretKey::from_pkcs8_der(&der) {
                    return Ok(PrivateKey::P384(k.into()));
                }
                if let Ok(k) = p521::SecretKey::from_pkcs8_der(&der) {
                    return Ok(PrivateKey::P521(k.into()));
                }
                Err(key_error(pkcs8_algorithm_problem(&der)))
            }
            "ENCRYPTED PRIVATE KEY" => Err(key_error(
                "encrypted private keys are not supported yet; decrypt it to a file only you \
                 can read (`openssl pkey -in KEY -out PLAIN.key`)",
            )),
            other => Err(key_error(format!(
                "expected a PEM \"PRIVATE KEY\" or \"EC PRIVATE KEY\", found {other:?}"
            ))),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            PrivateKey::P384(k) => PublicKey::P384(*k.verifying_key()),
            PrivateKey::P521(k) => PublicKey::P521(*k.verifying_key()),
        }
    }

    /// A DER ECDSA signature over `message` (RFC 6979 nonces: the same key and message
    /// give the same signature).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            PrivateKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
            PrivateKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
            PrivateKey::P521(k) => {
                let s: p521::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
        }
    }

    /// The key as PKCS#8 PEM; the string is wiped when dropped.
    pub fn to_pkcs8_pem(
        &self,
    ) -> Result<p256::elliptic_curve::zeroize::Zeroizing<String>, PackageError> {
        let encoded = match self {
            PrivateKey::P256(k) => p256::SecretKey::from(k).to_pkcs8_pem(LineEnding::LF),
            PrivateKey::P384(k) => p384::SecretKey::from(k).to_pkcs8_pem(LineEnding::LF),
            PrivateKey::P521(k) => p521::SecretKey::from(k).to_pkcs8_pem(LineEnding::LF),
        };
        encoded.map_err(|e| key_error(format!("cannot encode the private key: {e}")))
    }
}

/// Names the algorithm of a PKCS#8 key ward cannot use.
fn pkcs8_algorithm_problem(der: &[u8]) -> String {
    match p256::pkcs8::PrivateKeyInfoRef::from_der(der) {
        Ok(h) => algorithm_problem(&h.algorithm.oid.to_string(), "private key"),
        Err(e) => format!("not a PKCS#8 private key: {e}"),
    }
}

/// Reads a private key file, refusing one that group or others may read (as ssh does),
/// or that is a link.
pub fn read_private_key_file(path: &Path) -> Result<PrivateKey, PackageError> {
    let text = read_private_text(path, MAX_KEY_FILE_BYTES).map_err(|e| file_error(path, e))?;
    let text = p256::elliptic_curve::zeroize::Zeroizing::new(text);
    PrivateKey::from_pem(&text).map_err(|e| key_error(format!("{}: {e}", path.display())))
}

/// A refusal to read `path`, as the key and policy readers report it.
fn file_error(path: &Path, e: FileError) -> PackageError {
    match e {
        FileError::Io(source) => PackageError::Io {
            path: path.to_path_buf(),
            source,
        },
        FileError::Readable { mode } => PackageError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        },
        other => key_error(format!("{}: {other}", path.display())),
    }
}

/// Reads a small UTF-8 file that must not be a link.
pub(crate) fn read_small_file(path: &Path, limit: u64) -> Result<String, PackageError> {
    read_small_text(path, limit).map_err(|e| file_error(path, e))
}

/// Makes a signing key pair as `ward keygen` does: `name` must be a plain file name; `dir`
/// is created with mode 0700 when missing; then [`write_key_pair`].
pub fn keygen(dir: &Path, name: &str) -> Result<PublicKey, PackageError> {
    if !ward_core::files::safe_file_stem(name) {
        return Err(PackageError::Key {
            reason: format!("key name {name:?} cannot be used as a file name"),
        });
    }
    if !dir.exists() {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|source| PackageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    write_key_pair(dir, name)
}

/// Writes a new P-256 key pair: `dir/name.key` (PKCS#8, created with mode 0600, never
/// overwritten) and `dir/name.pub`.
pub fn write_key_pair(dir: &Path, name: &str) -> Result<PublicKey, PackageError> {
    let key = PrivateKey::generate_p256()?;
    let public = key.public_key();
    let pem = key.to_pkcs8_pem()?;
    let key_path = dir.join(format!("{name}.key"));
    let pub_path = dir.join(format!("{name}.pub"));
    for p in [&key_path, &pub_path] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(PackageError::TargetExists { path: p.clone() });
        }
    }
    write_new_file(&key_path, pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new_file(&pub_path, public.canonical_pem().as_bytes(), 0o644) {
        // A private key without its public half is no use; do not leave it behind.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    Ok(public)
}

/// Writes a new file through the one atomic writer: created with `mode` before a byte is
/// written, whole or not at all, never over an existing file.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PackageError> {
    ward_core::files::write_new_file(path, bytes, mode).map_err(PackageError::from)
}
