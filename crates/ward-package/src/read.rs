//! Reading one file of a model, once, as the verified loader and the signer need it: held
//! in memory (to be parsed after it is verified) or streamed (only hashed: `ward verify`
//! and `ward sign` keep nothing of a weights file), hashed with every serialization the
//! signatures use while it is read.
//!
//! Files are opened through [`ward_core::files::open_regular`]: never through a link,
//! never blocking on a FIFO, checked on the open descriptor, bounded by a limit before a
//! byte is read, and held only in memory reserved beforehand (a file too large for the
//! memory left is refused with [`PackageError::OutOfMemory`], not an abort).

use std::path::Path;
use std::sync::mpsc;

use ward_core::files::{open_regular, FileError, RegularFile, STREAM_CHUNK_BYTES};
use ward_core::Buffer;

use crate::error::PackageError;
use crate::signature::hashing::{HashedItem, Hashing, StreamHasher};
use crate::signature::verify::Digests;

/// Files at least this large are hashed while they are read: a second thread hashes each
/// chunk as soon as it is in memory, so reading and hashing take about the longer of the
/// two rather than their sum. Smaller held files are hashed afterwards, in parallel.
pub const HASH_WHILE_READING_BYTES: u64 = 16 << 20;

/// What to do with a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Keep them in memory: the caller parses them once they are verified.
    Held,
    /// Hash them and let them go: memory stays at two chunks whatever the file's size.
    Streamed,
}

/// A file as read: its length, and its bytes when held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    pub len: u64,
    pub bytes: Option<Buffer>,
}

/// Maps a refusal to read `name` (at `path`) to the package's error.
pub(crate) fn file_error(path: &Path, name: &str, limit: u64, e: FileError) -> PackageError {
    match e {
        FileError::Io(source) => PackageError::Io {
            path: path.to_path_buf(),
            source,
        },
        FileError::Symlink => PackageError::Symlink { file: name.into() },
        FileError::NotRegular { .. } => PackageError::NotRegularFile { file: name.into() },
        FileError::TooLarge { size, .. } => PackageError::FileTooLarge {
            file: name.into(),
            size,
            limit,
        },
        FileError::Changed { .. } => PackageError::FileChanged { file: name.into() },
        FileError::OutOfMemory { bytes } => PackageError::OutOfMemory {
            file: name.into(),
            bytes,
        },
        // Not raised for model files (neither text nor secret).
        FileError::NotUtf8 | FileError::Readable { .. } => PackageError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        },
    }
}

/// Opens one file of a model, named `name` in errors.
pub fn open_model_file(path: &Path, name: &str) -> Result<RegularFile, PackageError> {
    open_regular(path).map_err(|e| file_error(path, name, u64::MAX, e))
}

/// Reads the file `name` of directory `dir` whole, within `limit`, hashing nothing.
pub fn read_whole(dir: &Path, name: &str, limit: u64) -> Result<Vec<u8>, PackageError> {
    let path = dir.join(name);
    let file = open_model_file(&path, name)?;
    let read = read_model_file(
        file,
        &path,
        name,
        limit,
        Keep::Held,
        &[],
        &mut Digests::default(),
    )?;
    Ok(read.bytes.map(Buffer::into_vec).unwrap_or_default())
}

/// Reads an opened file of at most `limit` bytes, hashing it with each of `hashings`
/// while it is read when it is large or streamed (the digests go to `digests`; a small
/// held file is left to [`Digests::complete`]).
pub fn read_model_file(
    file: RegularFile,
    path: &Path,
    name: &str,
    limit: u64,
    keep: Keep,
    hashings: &[Hashing],
    digests: &mut Digests,
) -> Result<ModelFile, PackageError> {
    let err = |e| file_error(path, name, limit, e);
    file.check_limit(limit).map_err(err)?;
    let len = file.len();
    let small = len < HASH_WHILE_READING_BYTES;
    let items = match keep {
        Keep::Held if hashings.is_empty() || small => {
            let bytes = file.read_all(limit).map_err(err)?;
            return Ok(ModelFile {
                len,
                bytes: Some(bytes.into()),
            });
        }
        Keep::Held => {
            let (bytes, items) = read_hashing(file, name, limit, hashings).map_err(err)?;
            record(digests, name, items);
            return Ok(ModelFile {
                len,
                bytes: Some(bytes),
            });
        }
        // Nothing to check it against: only its length matters.
        Keep::Streamed if hashings.is_empty() => Vec::new(),
        Keep::Streamed if small => {
            let bytes = file.read_all(limit).map_err(err)?;
            hashings
                .iter()
                .map(|h| {
                    let mut hasher = StreamHasher::new(name, len, *h);
                    hasher.update(&bytes);
                    (*h, hasher.finish())
                })
                .collect()
        }
        Keep::Streamed => stream_hashing(file, name, limit, hashings).map_err(err)?,
    };
    record(digests, name, items);
    Ok(ModelFile { len, bytes: None })
}

fn record(digests: &mut Digests, name: &str, items: Vec<(Hashing, Vec<HashedItem>)>) {
    for (hashing, items) in items {
        digests.insert(hashing, name, items);
    }
}

fn hashers(name: &str, len: u64, hashings: &[Hashing]) -> Vec<StreamHasher> {
    hashings
        .iter()
        .map(|h| StreamHasher::new(name, len, *h))
        .collect()
}

fn finish(hashings: &[Hashing], hashers: Vec<StreamHasher>) -> Vec<(Hashing, Vec<HashedItem>)> {
    hashings
        .iter()
        .copied()
        .zip(hashers.into_iter().map(StreamHasher::finish))
        .collect()
}

fn hashing_thread_failed() -> FileError {
    FileError::Io(std::io::Error::other("the hashing thread failed"))
}

/// Reads the whole file into memory reserved beforehand while a second thread hashes
/// each chunk as soon as it is read.
#[allow(clippy::type_complexity)]
fn read_hashing(
    mut file: RegularFile,
    name: &str,
    limit: u64,
    hashings: &[Hashing],
) -> Result<(Buffer, Vec<(Hashing, Vec<HashedItem>)>), FileError> {
    let len = file.len();
    let mut bytes = file.zeroed_buffer(limit)?;
    let hashers = fill_hashing(
        &mut file,
        std::slice::from_mut(&mut bytes),
        hashers(name, len, hashings),
    )?;
    file.finish()?;
    Ok((bytes, finish(hashings, hashers)))
}

/// Fills `buffers` in order with the next bytes of `file` while a second thread hashes each
/// chunk with `hashers` as soon as it is read, so reading and hashing take about the
/// longer of the two rather than their sum.
fn fill_hashing(
    file: &mut RegularFile,
    buffers: &mut [Buffer],
    mut hashers: Vec<StreamHasher>,
) -> Result<Vec<StreamHasher>, FileError> {
    let (read, hashed) = std::thread::scope(|scope| {
        let (chunks, received) = mpsc::sync_channel::<&[u8]>(4);
        let hashing = scope.spawn(move || {
            for chunk in received {
                for h in &mut hashers {
                    h.update(chunk);
                }
            }
            hashers
        });
        let mut read = Ok(());
        'buffers: for buffer in buffers {
            for part in buffer.chunks_mut(STREAM_CHUNK_BYTES) {
                if let Err(e) = file.fill(part) {
                    read = Err(e);
                    break 'buffers;
                }
                let part: &[u8] = part;
                if chunks.send(part).is_err() {
                    break 'buffers;
                }
            }
        }
        drop(chunks);
        (read, hashing.join())
    });
    read?;
    hashed.map_err(|_| hashing_thread_failed())
}

/// Reads a safetensors file held in parts, hashing it as [`read_model_file`] does: its
/// header first (whose checks, before the file is verified, only decide where the bytes
/// are cut: see [`crate::weights::part_ends`]), then each tensor's bytes into a buffer
/// of their own, so that the tensors made from them can be freed one by one. A header
/// that does not pass leaves the rest in one part. Every byte is hashed, in file order,
/// as it is read.
pub(crate) fn read_tensor_parts(
    mut file: RegularFile,
    path: &Path,
    name: &str,
    limit: u64,
    hashings: &[Hashing],
    digests: &mut Digests,
) -> Result<ModelParts, PackageError> {
    let err = |e| file_error(path, name, limit, e);
    file.check_limit(limit).map_err(err)?;
    let len = file.len();
    let mut hashers = hashers(name, len, hashings);
    let mut first8 = [0u8; 8];
    if len >= 8 {
        file.fill(&mut first8).map_err(err)?;
    }
    let head_len = crate::weights::head_part_len(&first8, len);
    let mut head = Buffer::zeroed(head_len).map_err(err)?;
    if head.len() >= 8 {
        let (start, rest) = head.split_at_mut(8);
        start.copy_from_slice(&first8);
        file.fill(rest).map_err(err)?;
    }
    let cuts = crate::weights::part_ends(&head, len);
    let mut parts = Vec::with_capacity(cuts.len().saturating_add(1));
    let mut at = head_len as u64;
    for end in cuts {
        let part_len = end.saturating_sub(at);
        let part_len = usize::try_from(part_len)
            .map_err(|_| err(FileError::OutOfMemory { bytes: part_len }))?;
        parts.push(Buffer::zeroed(part_len).map_err(err)?);
        at = end;
    }
    for h in &mut hashers {
        h.update(&head);
    }
    let hashers = fill_hashing(&mut file, &mut parts, hashers).map_err(err)?;
    file.finish().map_err(err)?;
    record(digests, name, finish(hashings, hashers));
    parts.insert(0, head);
    Ok(ModelParts { len, parts })
}

/// A file held in consecutive parts ([`read_tensor_parts`]).
#[derive(Debug)]
pub(crate) struct ModelParts {
    pub len: u64,
    pub parts: Vec<Buffer>,
}

/// Hashes the file without keeping it: the reader fills one buffer while the hashing
/// thread works on the other.
fn stream_hashing(
    file: RegularFile,
    name: &str,
    limit: u64,
    hashings: &[Hashing],
) -> Result<Vec<(Hashing, Vec<HashedItem>)>, FileError> {
    let len = file.len();
    let mut hashers = hashers(name, len, hashings);
    let (read, hashed) = std::thread::scope(|scope| {
        let (full, to_hash) = mpsc::sync_channel::<Vec<u8>>(1);
        let (empty, to_fill) = mpsc::sync_channel::<Vec<u8>>(2);
        let hashing = scope.spawn(move || {
            for buffer in to_hash {
                for h in &mut hashers {
                    h.update(&buffer);
                }
                // The reader may have stopped; the buffer is then dropped here.
                let _ = empty.send(buffer);
            }
            hashers
        });
        // The second buffer is made on the first hand-off; after that they alternate.
        let mut buffers = 1;
        let read = file.stream_buffers(limit, STREAM_CHUNK_BYTES, &mut |buffer| {
            full.send(buffer).ok()?;
            if buffers < 2 {
                buffers += 1;
                return Some(Vec::new());
            }
            to_fill.recv().ok()
        });
        drop(full);
        (read, hashing.join())
    });
    read?;
    let hashers = hashed.map_err(|_| hashing_thread_failed())?;
    Ok(finish(hashings, hashers))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::signature::hashing::hash_files;
    use crate::signature::{FileSet, Granularity, HashAlgorithm};
    use std::fs;

    fn hashings() -> [Hashing; 2] {
        [
            Hashing::DEFAULT,
            Hashing {
                granularity: Granularity::Shards(5 << 20),
                algorithm: HashAlgorithm::Blake2b,
            },
        ]
    }

    #[test]
    fn held_and_streamed_files_give_the_digests_hash_files_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        let len = HASH_WHILE_READING_BYTES as usize + STREAM_CHUNK_BYTES / 2 + 3;
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &bytes).unwrap();
        let set = FileSet::new([("w.bin".to_string(), bytes.as_slice())]);
        for keep in [Keep::Held, Keep::Streamed] {
            let mut digests = Digests::default();
            let file = open_model_file(&path, "w.bin").unwrap();
            let read = read_model_file(
                file,
                &path,
                "w.bin",
                u64::MAX,
                keep,
                &hashings(),
                &mut digests,
            )
            .unwrap();
            assert_eq!(read.len, len as u64);
            match keep {
                Keep::Held => assert_eq!(read.bytes.as_deref(), Some(bytes.as_slice())),
                Keep::Streamed => assert!(read.bytes.is_none()),
            }
            let streamed_set = FileSet::with_lengths([("w.bin".to_string(), len as u64, None)]);
            for hashing in hashings() {
                let got = digests
                    .complete(&streamed_set, hashing)
                    .get("w.bin")
                    .cloned();
                assert_eq!(got, Some(hash_files(&set, hashing)), "{keep:?} {hashing:?}");
            }
        }
    }

    #[test]
    fn small_files_are_hashed_on_the_way_only_when_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.bin");
        fs::write(&path, b"abc").unwrap();
        let mut digests = Digests::default();
        let file = open_model_file(&path, "small.bin").unwrap();
        let read = read_model_file(
            file,
            &path,
            "small.bin",
            10,
            Keep::Held,
            &hashings(),
            &mut digests,
        )
        .unwrap();
        assert_eq!(read.bytes.as_deref(), Some(&b"abc"[..]));
        // Left to `Digests::complete`, which hashes held files.
        let empty = FileSet::default();
        assert!(digests.complete(&empty, Hashing::DEFAULT).is_empty());

        let file = open_model_file(&path, "small.bin").unwrap();
        let read = read_model_file(
            file,
            &path,
            "small.bin",
            10,
            Keep::Streamed,
            &[Hashing::DEFAULT],
            &mut digests,
        )
        .unwrap();
        assert_eq!(read.bytes, None);
        let items = digests.complete(&empty, Hashing::DEFAULT);
        assert_eq!(
            items["small.bin"][0].digest,
            HashAlgorithm::Sha256.digest(b"abc")
        );
    }

    #[test]
    fn limits_and_special_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        fs::write(&path, [0u8; 100]).unwrap();
        for keep in [Keep::Held, Keep::Streamed] {
            let file = open_model_file(&path, "w.bin").unwrap();
            let err = read_model_file(
                file,
                &path,
                "w.bin",
                99,
                keep,
                &[Hashing::DEFAULT],
                &mut Digests::default(),
            )
            .unwrap_err();
            assert!(
                matches!(&err, PackageError::FileTooLarge { file, size: 100, limit: 99 } if file == "w.bin"),
                "{err}"
            );
        }
        let err = open_model_file(dir.path(), "sub").unwrap_err();
        assert!(
            matches!(&err, PackageError::NotRegularFile { file } if file == "sub"),
            "{err}"
        );
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&path, &link).unwrap();
            let err = open_model_file(&link, "link").unwrap_err();
            assert!(
                matches!(&err, PackageError::Symlink { file } if file == "link"),
                "{err}"
            );
        }
    }
}
