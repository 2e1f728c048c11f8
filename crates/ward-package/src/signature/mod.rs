//! Model signatures in the OpenSSF model-signing v1.0 format (PyPI `model-signing` 1.1.1):
//! a Sigstore bundle v0.3 holding a DSSE envelope, signed with ECDSA, over an in-toto
//! statement that lists the digest of every file of the model.
//!
//! Everything here works on bytes already in memory ([`FileSet`]): the caller reads each
//! file once, these functions hash and verify those bytes, and the caller parses the same
//! bytes. Nothing here opens a model file.

pub mod bundle;
pub mod cert;
pub mod hashing;
pub mod keys;
pub mod policy;
pub mod statement;
pub mod verify;

use std::cmp::Ordering;

pub use crate::problem::Problem;
pub use bundle::Bundle;
pub use hashing::{Granularity, HashAlgorithm, Hashing};
pub use keys::{keygen, read_private_key_file, write_key_pair, PrivateKey, PublicKey};
pub use policy::TrustPolicy;
pub use statement::{Statement, DEFAULT_IGNORE_PATHS};
pub use verify::{SignatureFile, Verdict};

/// The files of a model, named by relative POSIX path (`.` for a model that is a single
/// file), in model-signing's order: component by component, so `tokenizer/vocab.txt` comes
/// before `tokenizer.json`.
///
/// A file is either held (its bytes are in memory, to be hashed here and parsed by the
/// caller) or streamed: the caller hashed it while reading and kept only its length; its
/// digests must then be in the [`verify::Digests`] handed to the checks.
#[derive(Debug, Clone, Default)]
pub struct FileSet<'a> {
    files: Vec<(String, u64, Option<&'a [u8]>)>,
}

/// model-signing's order (Python `PurePosixPath`): compare path components in turn.
pub fn path_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

impl<'a> FileSet<'a> {
    /// Files held in memory.
    pub fn new(files: impl IntoIterator<Item = (String, &'a [u8])>) -> FileSet<'a> {
        FileSet::with_lengths(files.into_iter().map(|(p, b)| (p, b.len() as u64, Some(b))))
    }

    /// Files by path, length and, for those held in memory, bytes.
    pub fn with_lengths(
        files: impl IntoIterator<Item = (String, u64, Option<&'a [u8]>)>,
    ) -> FileSet<'a> {
        let mut files: Vec<(String, u64, Option<&'a [u8]>)> = files.into_iter().collect();
        files.sort_by(|a, b| path_order(&a.0, &b.0));
        FileSet { files }
    }

    /// Every file's path and length.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.files.iter().map(|(p, len, _)| (p.as_str(), *len))
    }

    /// The files held in memory, with their bytes.
    pub fn held(&self) -> impl Iterator<Item = (&str, &'a [u8])> + '_ {
        self.files
            .iter()
            .filter_map(|(p, _, b)| b.map(|b| (p.as_str(), b)))
    }

    fn find(&self, path: &str) -> Option<&(String, u64, Option<&'a [u8]>)> {
        self.files
            .binary_search_by(|(p, _, _)| path_order(p, path))
            .ok()
            .and_then(|i| self.files.get(i))
    }

    /// The bytes of a file held in memory.
    pub fn get(&self, path: &str) -> Option<&'a [u8]> {
        self.find(path).and_then(|(_, _, b)| *b)
    }

    /// The length of a file, held or streamed.
    pub fn len_of(&self, path: &str) -> Option<u64> {
        self.find(path).map(|(_, len, _)| *len)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// What to sign.
#[derive(Debug, Clone)]
pub struct SignOptions {
    /// The subject name: the model's name, which the trust policy matches.
    pub model_name: String,
    pub hashing: Hashing,
    /// Recorded in the statement; the verifier skips these paths.
    pub ignore_paths: Vec<String>,
}

/// Signs `files` with `key`: returns the bytes of the signature file. The statement is
/// deterministic (same files, name and options give the same bytes), and so is the ECDSA
/// signature (RFC 6979).
pub fn sign(files: &FileSet<'_>, key: &PrivateKey, options: &SignOptions) -> Vec<u8> {
    sign_with_digests(files, key, options, &mut verify::Digests::default())
}

/// [`sign`], reusing the digests of files hashed while they were read.
pub fn sign_with_digests(
    files: &FileSet<'_>,
    key: &PrivateKey,
    options: &SignOptions,
    digests: &mut verify::Digests,
) -> Vec<u8> {
    let by_path = digests.complete(files, options.hashing);
    let resources: Vec<(String, Vec<u8>)> = files
        .iter()
        .flat_map(|(path, _)| by_path.get(path).into_iter().flatten())
        .map(|item| {
            (
                item.resource_name(options.hashing.granularity),
                item.digest.clone(),
            )
        })
        .collect();
    let payload = Statement::encode(
        &options.model_name,
        options.hashing,
        &options.ignore_paths,
        &resources,
    );
    let signature = key.sign(&bundle::pae(bundle::PAYLOAD_TYPE, &payload));
    Bundle {
        material: bundle::Material::PublicKey {
            hint: Some(key.public_key().hint()),
        },
        payload,
        signature,
    }
    .to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_with_streamed_digests_gives_the_same_bytes() {
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let set = FileSet::new([
            ("w.bin".to_string(), big.as_slice()),
            ("config.json".to_string(), &b"{}"[..]),
        ]);
        let key = PrivateKey::generate_p256().unwrap_or_else(|e| panic!("{e}"));
        for hashing in [
            Hashing::DEFAULT,
            Hashing {
                granularity: Granularity::Shards(4096),
                algorithm: HashAlgorithm::Blake3,
            },
        ] {
            let options = SignOptions {
                model_name: "m".into(),
                hashing,
                ignore_paths: vec![".git".into()],
            };
            let mut streamed = hashing::StreamHasher::new("w.bin", big.len() as u64, hashing);
            for chunk in big.chunks(1000) {
                streamed.update(chunk);
            }
            let items = streamed.finish();
            let mut digests = verify::Digests::default();
            digests.insert(hashing, "w.bin", items.clone());
            assert_eq!(
                sign_with_digests(&set, &key, &options, &mut digests),
                sign(&set, &key, &options)
            );
            // And with the large file not held at all, only its length and digests.
            let streamed_set = FileSet::with_lengths([
                ("w.bin".to_string(), big.len() as u64, None),
                ("config.json".to_string(), 2, Some(&b"{}"[..])),
            ]);
            let mut digests = verify::Digests::default();
            digests.insert(hashing, "w.bin", items);
            assert_eq!(
                sign_with_digests(&streamed_set, &key, &options, &mut digests),
                sign(&set, &key, &options)
            );
        }
    }

    #[test]
    fn model_signing_order() {
        let set = FileSet::new([
            ("tokenizer.json".to_string(), &b""[..]),
            ("tokenizer/vocab.txt".to_string(), &b""[..]),
            ("a".to_string(), &b""[..]),
            ("sub/deep/w".to_string(), &b""[..]),
        ]);
        let names: Vec<&str> = set.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["a", "sub/deep/w", "tokenizer/vocab.txt", "tokenizer.json"]
        );
        assert!(set.get("tokenizer.json").is_some());
        assert!(set.get("tokenizer").is_none());
    }
}
