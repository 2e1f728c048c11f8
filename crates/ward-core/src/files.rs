//! Reading files from outside: package files, signatures, keys, trust policies, tokens,
//! configurations, inputs.
//!
//! Every file is opened once, without following a link in its last component and without
//! blocking (a FIFO with no writer, or a device, must not hang the reader), and is then
//! checked on the open descriptor: a regular file, no larger than the caller's limit. What
//! is kept in memory is reserved with fallible allocation first, so a file too large for
//! the memory left is a refusal with a reason, never an abort. What need not be kept is
//! streamed in chunks of fixed size.
//!
//! Checking the open descriptor, not the path, leaves no window between the check and the
//! read: a link or a FIFO swapped in after a `stat` of the path is what gets opened, and
//! the checks see it.
//!
//! Writing a new file goes through one function, [`write_new_file`] (or
//! [`write_new_file_with`] for a caller that writes in parts): the bytes go to a temporary
//! file in the target's directory, created with its final mode before a byte is written,
//! synced, then linked to the target name, which fails if anything is there: a new file
//! is whole or absent, and never replaces another. The directory is synced so that the
//! name lasts.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::buffer::Buffer;

/// Why a file was not read. The caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("is a symbolic link; give the file itself")]
    Symlink,
    #[error("is {kind}, not a regular file")]
    NotRegular { kind: &'static str },
    #[error("{size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("changed size while it was read (expected {expected} bytes)")]
    Changed { expected: u64 },
    #[error("{bytes} bytes cannot be reserved in memory")]
    OutOfMemory { bytes: u64 },
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("has mode {mode:o}: group or others may read it; run chmod 600 on it")]
    Readable { mode: u32 },
}

/// Bytes read or hashed per step when a file is streamed.
pub const STREAM_CHUNK_BYTES: usize = 4 << 20;

/// A regular file, open for reading, with its length as the descriptor reported it.
#[derive(Debug)]
pub struct RegularFile {
    file: File,
    meta: Metadata,
}

/// Opens `path` for reading: not through a link (in its last component), without
/// blocking, and only if the opened descriptor is a regular file.
pub fn open_regular(path: &Path) -> Result<RegularFile, FileError> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO without a writer returns at once (then the type check
        // refuses it). O_NOFOLLOW: a link in the last component fails with ELOOP.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && is_symlink(path) => {
            return Err(FileError::Symlink)
        }
        Err(e) => return Err(FileError::Io(e)),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            kind: kind_of(&meta),
        });
    }
    Ok(RegularFile { file, meta })
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// What a non-regular file is, for messages.
fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

impl RegularFile {
    /// The length the open descriptor reports.
    pub fn len(&self) -> u64 {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.len() == 0
    }

    /// The descriptor's metadata (its mode, its identity).
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// Refuses a file that group or others may read (as ssh does for private keys).
    pub fn check_private(&self) -> Result<(), FileError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = self.meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(FileError::Readable { mode });
            }
        }
        Ok(())
    }

    /// As [`Self::check_private`], and also admits a key file owned by root that its group
    /// may read and nobody else (0440 or 0640) when this process is not root: how
    /// Kubernetes mounts a Secret for a non-root pod with an `fsGroup` (PostgreSQL's rule
    /// for its server key). Only the process's own files and root's can hold its keys.
    pub fn check_private_key(&self) -> Result<(), FileError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let mode = self.meta.permissions().mode() & 0o777;
            let euid = match crate::privilege::effective_user() {
                crate::privilege::EffectiveUser::Unprivileged { uid } => Some(uid),
                _ => None,
            };
            if !key_mode_allowed(mode, self.meta.uid(), euid) {
                return Err(FileError::Readable { mode });
            }
        }
        #[cfg(not(unix))]
        self.check_private()?;
        Ok(())
    }

    /// Refuses the file if it is over `limit` bytes.
    pub fn check_limit(&self, limit: u64) -> Result<(), FileError> {
        if self.len() > limit {
            return Err(FileError::TooLarge {
                size: self.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Reads the whole file, of at most `limit` bytes, into memory reserved beforehand.
    ///
    /// The read is capped at the reported length plus one byte: a file that grew or
    /// shrank meanwhile is refused rather than allocating more.
    pub fn read_all(self, limit: u64) -> Result<Vec<u8>, FileError> {
        self.check_limit(limit)?;
        let len = self.len();
        let mut bytes = reserve(len)?;
        let RegularFile { file, .. } = self;
        file.take(len.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != len {
            return Err(FileError::Changed { expected: len });
        }
        Ok(bytes)
    }

    /// A zeroed buffer of the file's reported length (at most `limit`), reserved
    /// fallibly, to be filled part by part with [`RegularFile::fill`] and closed with
    /// [`RegularFile::finish`]: so that each part, once read, can be lent to another
    /// thread (a hasher) while the next is read.
    pub fn zeroed_buffer(&self, limit: u64) -> Result<Buffer, FileError> {
        self.check_limit(limit)?;
        let len = self.len();
        let len = usize::try_from(len).map_err(|_| FileError::OutOfMemory { bytes: len })?;
        Buffer::zeroed(len)
    }

    /// Reads exactly `part.len()` bytes, the next part of the file.
    pub fn fill(&mut self, part: &mut [u8]) -> Result<(), FileError> {
        read_exact_or_changed(&mut self.file, part, self.meta.len())
    }

    /// Reads exactly `buf.len()` bytes at `offset`, without moving a cursor, so that
    /// threads can share one open file: for files read by parts (RecordIO's records, each
    /// at an offset its index gives), never whole. Bytes past the reported length (the
    /// file shrank, or the caller asked past it) are [`FileError::Changed`].
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), FileError> {
        let len = self.meta.len();
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > len) {
            return Err(FileError::Changed { expected: len });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file
                .read_exact_at(buf, offset)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => FileError::Changed { expected: len },
                    _ => FileError::Io(e),
                })
        }
        #[cfg(not(unix))]
        {
            Err(FileError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "reading at an offset needs a unix platform",
            )))
        }
    }

    /// Checks that the file ended where its reported length said (it did not grow).
    pub fn finish(mut self) -> Result<(), FileError> {
        let len = self.meta.len();
        expect_end(&mut self.file, len)
    }

    /// Reads the file in chunks into buffers that are handed back and forth with another
    /// thread: `send` takes a filled buffer (its length is the bytes read) and returns an
    /// empty one to fill next, or `None` to stop early. Two buffers of `chunk` bytes are
    /// enough for reading and hashing to overlap.
    pub fn stream_buffers(
        self,
        limit: u64,
        chunk: usize,
        send: &mut dyn FnMut(Vec<u8>) -> Option<Vec<u8>>,
    ) -> Result<(), FileError> {
        self.check_limit(limit)?;
        let len = self.len();
        let chunk = chunk.max(1);
        let mut buffer = reserve(len.min(chunk as u64))?;
        let RegularFile { mut file, .. } = self;
        let mut left = len;
        while left > 0 {
            let n = (chunk as u64).min(left) as usize;
            buffer.clear();
            if buffer.capacity() < n {
                buffer = reserve(n as u64)?;
            }
            buffer.resize(n, 0);
            read_exact_or_changed(&mut file, &mut buffer, len)?;
            left -= n as u64;
            match send(buffer) {
                Some(next) => buffer = next,
                None => return Ok(()),
            }
        }
        expect_end(&mut file, len)
    }
}

/// An empty vector with room for `bytes`, or the refusal that it cannot be had.
pub fn reserve(bytes: u64) -> Result<Vec<u8>, FileError> {
    let mut v = Vec::new();
    let n = usize::try_from(bytes).map_err(|_| FileError::OutOfMemory { bytes })?;
    v.try_reserve_exact(n)
        .map_err(|_| FileError::OutOfMemory { bytes })?;
    Ok(v)
}

fn read_exact_or_changed(file: &mut File, buf: &mut [u8], expected: u64) -> Result<(), FileError> {
    file.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FileError::Changed { expected },
        _ => FileError::Io(e),
    })
}

/// A file that grew after its length was taken has bytes left.
fn expect_end(file: &mut File, expected: u64) -> Result<(), FileError> {
    let mut probe = [0u8; 1];
    if file.read(&mut probe)? != 0 {
        return Err(FileError::Changed { expected });
    }
    Ok(())
}

/// Reads a regular file of at most `limit` bytes that is not a link.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    open_regular(path)?.read_all(limit)
}

/// Reads a UTF-8 file of at most `limit` bytes that is not a link.
pub fn read_small_text(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|_| FileError::NotUtf8)
}

/// [`read_small_text`] for a secret: refused when group or others may read it, as
/// checked on the open descriptor.
pub fn read_private_text(path: &Path, limit: u64) -> Result<String, FileError> {
    let file = open_regular(path)?;
    file.check_private()?;
    String::from_utf8(file.read_all(limit)?).map_err(|_| FileError::NotUtf8)
}

/// Whether a key file of `mode`, owned by `owner`, may hold the private key of a process
/// whose effective uid is `euid` (`None`: root, or unknown): owner-only always; group-read
/// only (no write, nothing for others) when root owns it and the process is not root.
pub fn key_mode_allowed(mode: u32, owner: u32, euid: Option<u32>) -> bool {
    if mode & 0o077 == 0 {
        return true;
    }
    owner == 0 && euid.is_some_and(|uid| uid != 0) && mode & 0o037 == 0
}

/// A private key's text: a file [`RegularFile::check_private_key`] admits.
pub fn read_private_key_text(path: &Path, limit: u64) -> Result<String, FileError> {
    let file = open_regular(path)?;
    file.check_private_key()?;
    String::from_utf8(file.read_all(limit)?).map_err(|_| FileError::NotUtf8)
}

/// Refuses a file that group or others may read.
pub fn check_private_mode(path: &Path) -> Result<(), FileError> {
    open_regular(path)?.check_private()
}

/// Why a new file (or directory) was not written. Each names the path concerned: the
/// target, or the temporary file or directory beside it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{}: already exists; ward never overwrites it", path.display())]
    Exists { path: PathBuf },
    #[error("{}: has no file name to write", path.display())]
    NoFileName { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl WriteError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
        move |source| WriteError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The directory `path` is in (`.` for a bare name) and its file name.
pub fn split_target(path: &Path) -> Result<(PathBuf, String), WriteError> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Err(WriteError::NoFileName {
            path: path.to_path_buf(),
        });
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_string()))
}

/// Temporary names already tried by this process: two threads never race for one.
static TEMP_SERIAL: AtomicU64 = AtomicU64::new(0);

/// Creates a new temporary entry `.{base}.ward-tmp-{pid}-{n}` in `parent` with `create`,
/// which must fail with `AlreadyExists` when the name is taken.
pub fn create_temp<T>(
    parent: &Path,
    base: &str,
    create: &mut dyn FnMut(&Path) -> io::Result<T>,
) -> Result<(PathBuf, T), WriteError> {
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..1000 {
        let n = TEMP_SERIAL.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(".{base}.ward-tmp-{pid}-{n}"));
        match create(&path) {
            Ok(made) => return Ok((path, made)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(source) => return Err(WriteError::Io { path, source }),
        }
    }
    Err(WriteError::Io {
        path: parent.to_path_buf(),
        source: last.unwrap_or_else(|| io::Error::other("no free temporary name")),
    })
}

/// Opens a new file for writing with `mode` (unix permission bits) set at creation, so
/// it never exists with wider permissions, not even empty. The umask still applies.
pub fn create_new_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// Syncs a directory, so that the names created or renamed in it last.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WriteError::io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to a new file at `path` with permission bits `mode` (0o600 for a
/// secret): see [`write_new_file_with`].
pub fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    write_new_file_with(path, mode, &mut |file| file.write_all(bytes))
}

/// Writes a new file at `path`, never replacing anything there, whole or not at all:
///
/// 1. a temporary file is created beside `path` (same directory, so same file system)
///    with `mode`, before any byte is written;
/// 2. `write` fills it, and it is synced;
/// 3. it is linked to `path`: the link fails if `path` exists, whatever appeared there
///    meanwhile, so nothing is overwritten;
/// 4. the temporary name is removed and the directory synced (where the file system can
///    sync a directory: the file is complete either way).
///
/// A failure at any step removes the temporary file: no partial file is left at `path`
/// or beside it. On a file system without hard links (FAT), step 3 creates `path` with
/// `create_new` and copies the synced bytes, removing `path` if that fails.
pub fn write_new_file_with(
    path: &Path,
    mode: u32,
    write: &mut dyn FnMut(&mut File) -> io::Result<()>,
) -> Result<(), WriteError> {
    let (parent, name) = split_target(path)?;
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(WriteError::Exists {
            path: path.to_path_buf(),
        });
    }
    let (tmp, file) = create_temp(&parent, &name, &mut |p| create_new_with_mode(p, mode))?;
    let result = fill_and_link(file, &tmp, path, mode, write);
    // The temporary name goes whatever happened; once linked, the bytes live on at `path`.
    let removed = std::fs::remove_file(&tmp).map_err(WriteError::io(&tmp));
    result?;
    removed?;
    let _ = sync_dir(&parent);
    Ok(())
}

fn fill_and_link(
    mut file: File,
    tmp: &Path,
    path: &Path,
    mode: u32,
    write: &mut dyn FnMut(&mut File) -> io::Result<()>,
) -> Result<(), WriteError> {
    write(&mut file).map_err(WriteError::io(tmp))?;
    file.sync_all().map_err(WriteError::io(tmp))?;
    drop(file);
    link_new(tmp, path, mode)
}

/// Gives the synced file at `tmp` the new name `path`, never replacing an entry there.
fn link_new(tmp: &Path, path: &Path, mode: u32) -> Result<(), WriteError> {
    let exists = || WriteError::Exists {
        path: path.to_path_buf(),
    };
    match std::fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists()),
        Err(link_error) => {
            // No hard links here: create the name itself, never over an existing one.
            let mut target = match create_new_with_mode(path, mode) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
                Err(_) => return Err(WriteError::io(path)(link_error)),
            };
            let copied = File::open(tmp)
                .and_then(|mut from| io::copy(&mut from, &mut target))
                .and_then(|_| target.sync_all());
            if let Err(e) = copied {
                drop(target);
                let _ = std::fs::remove_file(path);
                return Err(WriteError::io(path)(e));
            }
            Ok(())
        }
    }
}

/// Whether `name` can be used as a file name inside a directory ward writes: a plain name
/// (no separator, not hidden) of at most 200 ASCII letters, digits and `_-.:+`.
pub fn safe_file_stem(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::fs;

    #[test]
    fn a_key_is_owner_only_or_roots_read_by_a_group_that_is_not_root() {
        // Owner-only: always.
        assert!(key_mode_allowed(0o600, 1000, Some(1000)));
        assert!(key_mode_allowed(0o400, 0, None));
        // Root's key readable by the group of a non-root process (a Kubernetes Secret).
        assert!(key_mode_allowed(0o440, 0, Some(65532)));
        assert!(key_mode_allowed(0o640, 0, Some(65532)));
        // Not for root itself, not for a file someone else owns, never for others, never
        // writable by the group.
        assert!(!key_mode_allowed(0o440, 0, None));
        assert!(!key_mode_allowed(0o440, 1000, Some(65532)));
        assert!(!key_mode_allowed(0o444, 0, Some(65532)));
        assert!(!key_mode_allowed(0o460, 0, Some(65532)));
        assert!(!key_mode_allowed(0o604, 0, Some(65532)));
    }

    #[test]
    fn limits_links_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        fs::write(&file, "x = 1\n").unwrap();
        assert_eq!(read_small_text(&file, 6).unwrap(), "x = 1\n");
        assert!(matches!(
            read_small_text(&file, 5),
            Err(FileError::TooLarge { size: 6, limit: 5 })
        ));
        fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_small_text(&file, 9), Err(FileError::NotUtf8)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&file, &link).unwrap();
            assert!(matches!(read_small_text(&link, 9), Err(FileError::Symlink)));
            fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
            let err = check_private_mode(&file).unwrap_err();
            assert!(err.to_string().contains("mode 640"), "{err}");
            assert!(matches!(
                read_private_text(&file, 9),
                Err(FileError::Readable { mode: 0o640 })
            ));
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
            check_private_mode(&file).unwrap();
            assert_eq!(
                read_private_text(&file, 9).unwrap_err().to_string(),
                "not UTF-8 text"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn reads_at_an_offset_within_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        fs::write(&path, b"0123456789").unwrap();
        let file = open_regular(&path).unwrap();
        let mut buf = [0u8; 4];
        file.read_exact_at(&mut buf, 3).unwrap();
        assert_eq!(&buf, b"3456");
        file.read_exact_at(&mut buf, 6).unwrap();
        assert!(matches!(
            file.read_exact_at(&mut buf, 7),
            Err(FileError::Changed { expected: 10 })
        ));
        assert!(file.read_exact_at(&mut buf, u64::MAX).is_err());
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded(dir.path(), 10).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::NotRegular {
                    kind: "a directory"
                }
            ),
            "{err}"
        );
        #[cfg(target_os = "linux")]
        {
            // A FIFO with no writer: a plain open would block forever.
            let fifo = dir.path().join("fifo");
            let status = std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap();
            assert!(status.success());
            let err = read_bounded(&fifo, 10).unwrap_err();
            assert!(
                matches!(err, FileError::NotRegular { kind: "a FIFO" }),
                "{err}"
            );
            let err = read_bounded(Path::new("/dev/zero"), 10).unwrap_err();
            assert!(
                matches!(
                    err,
                    FileError::NotRegular {
                        kind: "a character device"
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn reading_in_chunks_gives_the_bytes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &bytes).unwrap();

        let mut file = open_regular(&path).unwrap();
        let mut read = file.zeroed_buffer(1000).unwrap();
        for part in read.chunks_mut(64) {
            file.fill(part).unwrap();
        }
        file.finish().unwrap();
        assert_eq!(&read[..], &bytes[..]);
        assert_eq!(open_regular(&path).unwrap().read_all(1000).unwrap(), bytes);

        let mut buffered = Vec::new();
        open_regular(&path)
            .unwrap()
            .stream_buffers(1000, 300, &mut |b| {
                assert!(b.len() <= 300);
                buffered.extend_from_slice(&b);
                Some(b)
            })
            .unwrap();
        assert_eq!(buffered, bytes);

        let err = open_regular(&path)
            .unwrap()
            .stream_buffers(999, 64, &mut Some)
            .unwrap_err();
        assert!(
            matches!(
                err,
                FileError::TooLarge {
                    size: 1000,
                    limit: 999
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn memory_that_cannot_be_had_is_a_refusal() {
        // No machine has 2^62 bytes: the reservation fails instead of aborting.
        let err = reserve(1 << 62).unwrap_err();
        assert!(matches!(err, FileError::OutOfMemory { .. }), "{err}");
        assert_eq!(reserve(16).unwrap().capacity(), 16);
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_is_written_whole_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        write_new_file(&path, b"secret", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(listing(dir.path()), ["server.key"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // A bare name is written in the current directory's way: its parent is `.`.
        assert_eq!(
            split_target(Path::new("a.sig")).unwrap(),
            (PathBuf::from("."), "a.sig".to_string())
        );
        assert!(matches!(
            split_target(Path::new("/")),
            Err(WriteError::NoFileName { .. })
        ));
    }

    #[test]
    fn the_mode_is_set_before_any_byte_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let mut seen = None;
        write_new_file_with(&path, 0o600, &mut |file| {
            let meta = file.metadata()?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                seen = Some((meta.len(), meta.permissions().mode() & 0o777));
            }
            #[cfg(not(unix))]
            {
                seen = Some((meta.len(), 0o600));
            }
            file.write_all(b"k")
        })
        .unwrap();
        assert_eq!(seen, Some((0, 0o600)));
    }

    #[test]
    fn a_failure_in_the_middle_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.sig");
        let err = write_new_file_with(&path, 0o644, &mut |file| {
            file.write_all(b"half of it")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(
            matches!(&err, WriteError::Io { source, .. } if source.to_string() == "disk full"),
            "{err}"
        );
        assert_eq!(listing(dir.path()), Vec::<String>::new());
        // A directory that does not exist: nothing is made anywhere.
        let err = write_new_file(&dir.path().join("no/such/x"), b"x", 0o644).unwrap_err();
        assert!(matches!(err, WriteError::Io { .. }), "{err}");
        assert_eq!(listing(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn an_existing_target_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        fs::write(&path, b"first").unwrap();
        let err = write_new_file(&path, b"second", 0o644).unwrap_err();
        assert!(
            matches!(&err, WriteError::Exists { path: p } if p == &path),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"first");
        // Nor one that appears while the new file is being written.
        let late = dir.path().join("late.pem");
        let err = write_new_file_with(&late, 0o644, &mut |file| {
            fs::write(&late, b"theirs")?;
            file.write_all(b"ours")
        })
        .unwrap_err();
        assert!(matches!(err, WriteError::Exists { .. }), "{err}");
        assert_eq!(fs::read(&late).unwrap(), b"theirs");
        // Nor a link, even one that points nowhere.
        #[cfg(unix)]
        {
            let link = dir.path().join("dangling");
            std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
            let err = write_new_file(&link, b"x", 0o644).unwrap_err();
            assert!(matches!(err, WriteError::Exists { .. }), "{err}");
            assert!(!dir.path().join("nowhere").exists());
        }
        assert_eq!(listing(dir.path()).len(), if cfg!(unix) { 3 } else { 2 });
    }
}
