//! Hashing a model's files as model-signing does: one digest per file, or one per shard
//! (byte range) of each file; SHA-256, BLAKE2b-512 or BLAKE3.
//!
//! The work is split into items (files, or shards) hashed in parallel on rayon's pool, so a
//! model of many files, or a sharded signature of one large file, uses every core.

use std::ops::Range;

use blake2::Blake2b512;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::FileSet;

/// The hash of a file or shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Sha256,
    Blake2b,
    Blake3,
}

impl HashAlgorithm {
    /// The name in `serialization.hash_type` and in a files-mode resource's `algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Blake2b => "blake2b",
            HashAlgorithm::Blake3 => "blake3",
        }
    }

    pub fn from_name(name: &str) -> Option<HashAlgorithm> {
        match name {
            "sha256" => Some(HashAlgorithm::Sha256),
            // model-signing's config calls it `blake2`, its manifests `blake2b`.
            "blake2b" | "blake2" => Some(HashAlgorithm::Blake2b),
            "blake3" => Some(HashAlgorithm::Blake3),
            _ => None,
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 | HashAlgorithm::Blake3 => 32,
            HashAlgorithm::Blake2b => 64,
        }
    }

    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => Sha256::digest(bytes).to_vec(),
            HashAlgorithm::Blake2b => Blake2b512::digest(bytes).to_vec(),
            HashAlgorithm::Blake3 => blake3::hash(bytes).as_bytes().to_vec(),
        }
    }
}

/// How a model's files become resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One resource per file, named by its path.
    Files,
    /// One resource per `shard_size` bytes of each file, named `path:start:end`.
    Shards(u64),
}

/// A serialization: granularity and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hashing {
    pub granularity: Granularity,
    pub algorithm: HashAlgorithm,
}

impl Hashing {
    /// model-signing's default and the only one its CLI verifies: files, SHA-256.
    pub const DEFAULT: Hashing = Hashing {
        granularity: Granularity::Files,
        algorithm: HashAlgorithm::Sha256,
    };

    /// The `algorithm` of each resource: `sha256`, or `sha256-sharded-N` for shards.
    pub fn resource_algorithm(&self) -> String {
        match self.granularity {
            Granularity::Files => self.algorithm.name().to_string(),
            Granularity::Shards(size) => format!("{}-sharded-{size}", self.algorithm.name()),
        }
    }
}

/// One hashed item: a file, or a shard of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedItem {
    /// The file's path (as in [`FileSet`]).
    pub path: String,
    /// The bytes covered: the whole file, or one shard.
    pub range: Range<u64>,
    pub digest: Vec<u8>,
}

impl HashedItem {
    /// The resource name: `path`, or `path:start:end` for shards.
    pub fn resource_name(&self, granularity: Granularity) -> String {
        match granularity {
            Granularity::Files => self.path.clone(),
            Granularity::Shards(_) => {
                format!("{}:{}:{}", self.path, self.range.start, self.range.end)
            }
        }
    }
}

/// The byte ranges of a file of `len` bytes: `[0, len)`, or its shards (an empty file has
/// no shard, as in model-signing).
pub fn ranges(len: u64, granularity: Granularity) -> Vec<Range<u64>> {
    match granularity {
        Granularity::Files => std::iter::once(0..len).collect(),
        Granularity::Shards(size) => {
            let size = size.max(1);
            let mut out = Vec::new();
            let mut start = 0;
            while start < len {
                let end = start.saturating_add(size).min(len);
                out.push(start..end);
                start = end;
            }
            out
        }
    }
}

/// Hashes every file of `files` (in its order, shards in byte order), in parallel.
pub fn hash_files(files: &FileSet<'_>, hashing: Hashing) -> Vec<HashedItem> {
    let work: Vec<(&str, &[u8], Range<u64>)> = files
        .iter()
        .flat_map(|(path, bytes)| {
            ranges(bytes.len() as u64, hashing.granularity)
                .into_iter()
                .map(move |r| (path, bytes, r))
        })
        .collect();
    work.into_par_iter()
        .map(|(path, bytes, range)| {
            // Ranges come from `bytes.len()`, so they are in bounds.
            let slice = &bytes[range.start as usize..range.end as usize];
            HashedItem {
                path: path.to_string(),
                digest: hashing.algorithm.digest(slice),
                range,
            }
        })
        .collect()
}

/// The root digest of a statement: SHA-256 over the concatenated raw digests, in order.
pub fn root_digest<'a>(digests: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for d in digests {
        h.update(d);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges() {
        assert_eq!(ranges(0, Granularity::Shards(16)), Vec::<Range<u64>>::new());
        assert_eq!(ranges(0, Granularity::Files), vec![0..0]);
        assert_eq!(
            ranges(46, Granularity::Shards(16)),
            vec![0..16, 16..32, 32..46]
        );
        assert_eq!(ranges(32, Granularity::Shards(16)), vec![0..16, 16..32]);
    }

    #[test]
    fn known_digests_of_nothing() {
        assert_eq!(
            hex::encode(HashAlgorithm::Sha256.digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(HashAlgorithm::Blake3.digest(b"")),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(HashAlgorithm::Blake2b.digest(b"").len(), 64);
    }
}
