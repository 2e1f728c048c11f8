//! Encrypting a checkpoint's state with age, and decrypting it.
//!
//! The format is the age file format v1 (<https://age-encryption.org/v1>), so the stock
//! `age` tool decrypts a ward checkpoint (`age -d -i key.txt state.age`) and encrypts a
//! state ward accepts. Keys are age's: X25519 recipients (`age1…`) and identities
//! (`AGE-SECRET-KEY-1…`, as `age-keygen` writes them), or one passphrase (scrypt).

use std::io::{Read, Write};
use std::path::Path;

use age::secrecy::SecretString;

use super::age_writer::{self, Sealed};
use super::CheckpointError;

/// Largest identity, recipients or passphrase file read.
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// The scrypt work factor (log2 N) a passphrase checkpoint is written with: 2^18
/// (256 MiB, about half a second here), fixed rather than age's timing-calibrated
/// default so that every checkpoint costs the same.
pub const SCRYPT_LOG_N: u8 = 18;

/// The largest scrypt work factor a passphrase checkpoint is decrypted with: 2^20 needs
/// 1 GiB; a crafted header asking for more is refused before any work.
pub const MAX_SCRYPT_LOG_N: u8 = 20;

/// How a checkpoint's state is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// To one or more X25519 recipients.
    X25519,
    /// With a passphrase (scrypt).
    Scrypt,
}

impl Encryption {
    pub fn name(self) -> &'static str {
        match self {
            Encryption::X25519 => "x25519",
            Encryption::Scrypt => "scrypt",
        }
    }
}

/// Whom a checkpoint is encrypted to.
pub enum Sealing {
    /// X25519 recipients, as given (`age1…`).
    Recipients(Vec<age::x25519::Recipient>),
    /// A passphrase.
    Passphrase(SecretString),
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sealing::Recipients(r) => f
                .debug_tuple("Recipients")
                .field(&r.iter().map(|r| r.to_string()).collect::<Vec<_>>())
                .finish(),
            Sealing::Passphrase(_) => f.write_str("Passphrase(..)"),
        }
    }
}

impl Sealing {
    /// Recipients given on the command line (`age1…`) and in recipients files (one per
    /// line, `#` comments and blank lines skipped, as the `age` tool reads them). At
    /// least one is needed.
    pub fn recipients(given: &[String], files: &[&Path]) -> Result<Sealing, CheckpointError> {
        let mut recipients = Vec::new();
        for text in given {
            recipients.push(parse_recipient(text, "--recipient")?);
        }
        for path in files {
            let text = ward_core::files::read_small_text(path, MAX_KEY_FILE_BYTES)
                .map_err(|e| CheckpointError::key_file(path, e.to_string()))?;
            for (n, line) in key_lines(&text) {
                let at = format!("{}:{n}", path.display());
                recipients.push(parse_recipient(line, &at)?);
            }
        }
        if recipients.is_empty() {
            return Err(CheckpointError::NoRecipients);
        }
        Ok(Sealing::Recipients(recipients))
    }

    /// The passphrase in `path` (its first line; the file must be readable by its owner
    /// alone).
    pub fn passphrase_file(path: &Path) -> Result<Sealing, CheckpointError> {
        read_passphrase(path).map(Sealing::Passphrase)
    }

    pub fn encryption(&self) -> Encryption {
        match self {
            Sealing::Recipients(_) => Encryption::X25519,
            Sealing::Passphrase(_) => Encryption::Scrypt,
        }
    }

    /// The recipients as `age1…` text (none for a passphrase).
    pub fn recipient_names(&self) -> Vec<String> {
        match self {
            Sealing::Recipients(r) => r.iter().map(|r| r.to_string()).collect(),
            Sealing::Passphrase(_) => Vec::new(),
        }
    }

    /// `plaintext` as an age file. Nothing touches the disk.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, CheckpointError> {
        let capacity = plaintext.len() + plaintext.len() / 4096 + 1024;
        self.seal_into(Vec::with_capacity(capacity), |w| {
            w.write_all(plaintext)
                .map_err(|e| CheckpointError::Encrypt(e.to_string()))
        })
        .map(|sealed| sealed.sink)
    }

    /// Writes into `sink` the age file of what `write` writes, and gives its size and
    /// SHA-256: the plaintext is sealed as it is made and is never whole in memory
    /// ([`age_writer::seal_to`]).
    pub fn seal_into<W: Write + Send>(
        &self,
        sink: W,
        write: impl FnOnce(&mut dyn Write) -> Result<(), CheckpointError>,
    ) -> Result<Sealed<W>, CheckpointError> {
        match self {
            Sealing::Recipients(recipients) => {
                let recipients: Vec<&dyn age::Recipient> = recipients
                    .iter()
                    .map(|r| r as &dyn age::Recipient)
                    .collect();
                age_writer::seal_to(&recipients, sink, write)
            }
            Sealing::Passphrase(passphrase) => {
                let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
                recipient.set_work_factor(SCRYPT_LOG_N);
                age_writer::seal_to(&[&recipient], sink, write)
            }
        }
    }
}

/// Who may decrypt a checkpoint.
pub enum Unsealing {
    /// X25519 identities.
    Identities(Vec<age::x25519::Identity>),
    /// A passphrase.
    Passphrase(SecretString),
}

impl std::fmt::Debug for Unsealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsealing::Identities(i) => write!(f, "Identities({} keys)", i.len()),
            Unsealing::Passphrase(_) => f.write_str("Passphrase(..)"),
        }
    }
}

impl Unsealing {
    /// The identities in age identity files (`AGE-SECRET-KEY-1…` lines; `#` comments and
    /// blank lines skipped, as `age-keygen` writes them). Each file must be readable by
    /// its owner alone.
    pub fn identity_files(files: &[&Path]) -> Result<Unsealing, CheckpointError> {
        let mut identities = Vec::new();
        for path in files {
            let text = ward_core::files::read_private_text(path, MAX_KEY_FILE_BYTES)
                .map_err(|e| CheckpointError::key_file(path, e.to_string()))?;
            for (n, line) in key_lines(&text) {
                let identity = line.parse::<age::x25519::Identity>().map_err(|_| {
                    CheckpointError::key_file(
                        path,
                        format!("line {n} is not an age X25519 identity (AGE-SECRET-KEY-1…)"),
                    )
                })?;
                identities.push(identity);
            }
        }
        if identities.is_empty() {
            return Err(CheckpointError::NoIdentities);
        }
        Ok(Unsealing::Identities(identities))
    }

    /// The passphrase in `path`, as [`Sealing::passphrase_file`] reads it.
    pub fn passphrase_file(path: &Path) -> Result<Unsealing, CheckpointError> {
        read_passphrase(path).map(Unsealing::Passphrase)
    }

    /// The plaintext of the age file `sealed`, at most `limit` bytes.
    pub fn open(&self, sealed: &[u8], limit: u64) -> Result<Vec<u8>, CheckpointError> {
        let failed = |e: age::DecryptError| CheckpointError::Decrypt(e.to_string());
        let decryptor = age::Decryptor::new(sealed).map_err(failed)?;
        let mut reader = match self {
            Unsealing::Identities(ids) => decryptor
                .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
                .map_err(failed)?,
            Unsealing::Passphrase(passphrase) => {
                let mut identity = age::scrypt::Identity::new(passphrase.clone());
                identity.set_max_work_factor(MAX_SCRYPT_LOG_N);
                decryptor
                    .decrypt(std::iter::once(&identity as &dyn age::Identity))
                    .map_err(failed)?
            }
        };
        // The plaintext is shorter than the age file that holds it.
        let mut plaintext = Vec::with_capacity(sealed.len());
        let read = (&mut reader)
            .take(limit.saturating_add(1))
            .read_to_end(&mut plaintext)
            .map_err(|e| CheckpointError::Decrypt(e.to_string()))?;
        if read as u64 > limit {
            return Err(CheckpointError::StateTooLarge { limit });
        }
        Ok(plaintext)
    }
}

fn parse_recipient(text: &str, at: &str) -> Result<age::x25519::Recipient, CheckpointError> {
    text.trim()
        .parse::<age::x25519::Recipient>()
        .map_err(|_| CheckpointError::Recipient {
            at: at.to_string(),
            text: text.chars().take(80).collect(),
        })
}

/// The key lines of a key file, numbered from 1: no blank lines, no `#` comments.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn read_passphrase(path: &Path) -> Result<SecretString, CheckpointError> {
    let text = ward_core::files::read_private_text(path, MAX_KEY_FILE_BYTES)
        .map_err(|e| CheckpointError::key_file(path, e.to_string()))?;
    let first = text.lines().next().unwrap_or_default();
    if first.is_empty() {
        return Err(CheckpointError::key_file(
            path,
            "its first line is empty".into(),
        ));
    }
    Ok(SecretString::from(first.to_string()))
}
