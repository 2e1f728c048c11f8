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

/// Hashes every file of `files` held in memory (in its order, shards in byte order), in
/// parallel. Streamed files were hashed as they were read and are left out.
pub fn hash_files(files: &FileSet<'_>, hashing: Hashing) -> Vec<HashedItem> {
    let work: Vec<(&str, &[u8], Range<u64>)> = files
        .held()
        .flat_map(|(path, bytes)| {
            ranges(bytes.len() as u64, hashing.granularity)
                .into_iter()
                .map(move |r| (path, bytes, r))
        })
        .collect();
    work.into_par_iter()
        .map(|(path, bytes, range)| {
            // Ranges come from `bytes.len()`, so they are in bounds.
            let slice = bytes
                .get(range.start as usize..range.end as usize)
                .unwrap_or_default();
            HashedItem {
                path: path.to_string(),
                digest: hashing.algorithm.digest(slice),
                range,
            }
        })
        .collect()
}

/// An incremental hash of one algorithm.
enum Incremental {
    Sha256(Sha256),
    Blake2b(Box<Blake2b512>),
    Blake3(Box<blake3::Hasher>),
}

impl Incremental {
    fn new(algorithm: HashAlgorithm) -> Incremental {
        match algorithm {
            HashAlgorithm::Sha256 => Incremental::Sha256(Sha256::new()),
            HashAlgorithm::Blake2b => Incremental::Blake2b(Box::default()),
            HashAlgorithm::Blake3 => Incremental::Blake3(Box::default()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Incremental::Sha256(h) => h.update(bytes),
            Incremental::Blake2b(h) => h.update(bytes),
            Incremental::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Incremental::Sha256(h) => h.finalize().to_vec(),
            Incremental::Blake2b(h) => h.finalize().to_vec(),
            Incremental::Blake3(h) => h.finalize().as_bytes().to_vec(),
        }
    }
}

/// Hashes one file as its bytes arrive, in order, giving the same items as
/// [`hash_files`]: so a large file can be hashed while it is still being read.
pub struct StreamHasher {
    hashing: Hashing,
    path: String,
    ranges: std::vec::IntoIter<Range<u64>>,
    current: Option<(Range<u64>, Incremental)>,
    position: u64,
    items: Vec<HashedItem>,
}

impl StreamHasher {
    /// For a file named `path` of `len` bytes.
    pub fn new(path: &str, len: u64, hashing: Hashing) -> StreamHasher {
        let mut h = StreamHasher {
            hashing,
            path: path.to_string(),
            ranges: ranges(len, hashing.granularity).into_iter(),
            current: None,
            position: 0,
            items: Vec::new(),
        };
        h.next_range();
        h
    }

    fn next_range(&mut self) {
        self.current = self
            .ranges
            .next()
            .map(|r| (r, Incremental::new(self.hashing.algorithm)));
    }

    fn close_current(&mut self) {
        if let Some((range, hasher)) = self.current.take() {
            self.items.push(HashedItem {
                path: self.path.clone(),
                range,
                digest: hasher.finish(),
            });
        }
        self.next_range();
    }

    /// The next bytes of the file.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some((range, hasher)) = &mut self.current else {
                // More bytes than announced: the caller's read changed; `finish` reports
                // the digests of what was announced and the caller checks the length.
                return;
            };
            let take = (range.end - self.position).min(bytes.len() as u64) as usize;
            let (now, later) = bytes.split_at_checked(take).unwrap_or((bytes, &[]));
            hasher.update(now);
            self.position += now.len() as u64;
            bytes = later;
            if self.position == range.end {
                self.close_current();
            }
        }
    }

    /// The items, in byte order. An empty file in files mode gives its one (empty) item.
    pub fn finish(mut self) -> Vec<HashedItem> {
        while self.current.is_some() {
            self.close_current();
        }
        self.items
    }
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
    fn streaming_gives_the_same_items() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let set = FileSet::new([("w".to_string(), bytes.as_slice())]);
        for algorithm in [
            HashAlgorithm::Sha256,
            HashAlgorithm::Blake2b,
            HashAlgorithm::Blake3,
        ] {
            for granularity in [
                Granularity::Files,
                Granularity::Shards(64),
                Granularity::Shards(1000),
            ] {
                let hashing = Hashing {
                    granularity,
                    algorithm,
                };
                let mut h = StreamHasher::new("w", bytes.len() as u64, hashing);
                for chunk in bytes.chunks(37) {
                    h.update(chunk);
                }
                assert_eq!(h.finish(), hash_files(&set, hashing), "{hashing:?}");
            }
        }
        let empty = FileSet::new([("e".to_string(), &b""[..])]);
        assert_eq!(
            StreamHasher::new("e", 0, Hashing::DEFAULT).finish(),
            hash_files(&empty, Hashing::DEFAULT)
        );
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
