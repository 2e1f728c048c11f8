//! Writing a new directory whole or not at all: the directory-level half of ward's one
//! atomic writer (the file-level half is [`ward_core::files::write_new_file`]).
//!
//! The files are written into a temporary sibling directory, each created with its mode
//! before a byte is written and synced; the temporary directory is synced and renamed to
//! the target, and the parent is synced. A failure removes the temporary directory, so
//! neither a partial directory nor a temporary one is left. The target must not exist,
//! or be an empty directory; a rename never replaces a directory that is not empty, so
//! files that appear meanwhile are never overwritten. [`write_layout`] and
//! [`write_new_dir`] write files held whole; [`NewDir`] is the same writer file by file,
//! for a file streamed to disk as it is made.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ward_core::files::{create_new_with_mode, create_temp, split_target, sync_dir};

use crate::error::PackageError;
use crate::layout::Layout;

/// A file to write into a new directory: its name, its bytes, and the permission bits it is
/// created with (before the umask).
pub type NewFile<'a> = (&'a str, &'a [u8], u32);

/// Writes `files` (name, bytes) as a new directory `dir` holding `layout`: every name
/// must be one of the layout's, each file within its limit, and every required file
/// present, before anything touches the disk; then [`write_new_dir`], each file with the
/// layout's mode.
pub fn write_layout(
    dir: &Path,
    layout: &Layout,
    files: &[(&str, &[u8])],
) -> Result<(), PackageError> {
    let with_modes = check_layout(layout, files)?;
    write_new_dir(dir, &with_modes)
}

/// Checks `files` against `layout` as [`write_layout`] does, and gives each its mode.
pub(crate) fn check_layout<'a>(
    layout: &Layout,
    files: &[(&'a str, &'a [u8])],
) -> Result<Vec<NewFile<'a>>, PackageError> {
    let sizes: Vec<(&str, u64)> = files
        .iter()
        .map(|(name, bytes)| (*name, bytes.len() as u64))
        .collect();
    check_sizes(layout, &sizes)?;
    files
        .iter()
        .map(|(name, bytes)| Ok((*name, *bytes, mode_of(layout, name)?)))
        .collect()
}

/// Every name one of `layout`'s, once, each size within its limit, and every required
/// file present.
fn check_sizes(layout: &Layout, files: &[(&str, u64)]) -> Result<(), PackageError> {
    for (i, (name, size)) in files.iter().enumerate() {
        let Some(spec) = layout.spec_of(name) else {
            return Err(unexpected(layout, name));
        };
        if files.iter().skip(i + 1).any(|(other, _)| other == name) {
            return Err(PackageError::DuplicateFile {
                file: name.to_string(),
            });
        }
        // Refuse to write what the loader would refuse to read.
        if *size > spec.limit() {
            return Err(PackageError::FileTooLarge {
                file: name.to_string(),
                size: *size,
                limit: spec.limit(),
            });
        }
    }
    for spec in layout.files().filter(|f| f.is_required()) {
        if let Some(name) = spec.exact_name() {
            if !files.iter().any(|(n, _)| *n == name) {
                return Err(PackageError::MissingFile { file: name });
            }
        }
    }
    Ok(())
}

/// The permission bits `layout` gives file `name` (refused if the layout has no such
/// file): what a file of a [`NewDir`] written for that layout is created with.
pub fn mode_of(layout: &Layout, name: &str) -> Result<u32, PackageError> {
    layout
        .spec_of(name)
        .map(|spec| spec.mode())
        .ok_or_else(|| unexpected(layout, name))
}

fn unexpected(layout: &Layout, name: &str) -> PackageError {
    PackageError::UnexpectedFile {
        file: name.to_string(),
        expected: layout.expected(),
    }
}

/// Writes `files` (name, bytes, mode) into a new directory at `dir`, which must not exist
/// or be an empty directory, through a temporary sibling and a rename; see the module's
/// documentation.
pub fn write_new_dir(dir: &Path, files: &[NewFile<'_>]) -> Result<(), PackageError> {
    // A directory holding a file only its owner may read is itself owner-only.
    let private = files.iter().any(|(_, _, mode)| mode & 0o077 == 0);
    let mut new = NewDir::create(dir, private)?;
    for (name, bytes, mode) in files {
        new.add(name, bytes, *mode)?;
    }
    new.commit()
}

/// A new directory being written file by file, for files too large to hold whole before
/// they are written (a checkpoint's state, streamed as it is encrypted). The files go into
/// the temporary sibling, each synced when it is closed; [`NewDir::commit`] (or
/// [`NewDir::commit_layout`]) syncs the directory, renames it into place and syncs the
/// parent. Dropped without a commit (an error, a panic), the temporary directory is
/// removed: nothing partial is ever left under the target's name.
pub struct NewDir {
    tmp: PathBuf,
    dir: PathBuf,
    parent: PathBuf,
    /// The files written, with their sizes.
    written: Vec<(String, u64)>,
    committed: bool,
}

impl NewDir {
    /// Starts a new directory at `dir`, which must not exist or be an empty directory;
    /// `private`: owner-only (0700).
    pub fn create(dir: &Path, private: bool) -> Result<NewDir, PackageError> {
        match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => {
                let mut entries = fs::read_dir(dir).map_err(io_error(dir))?;
                if entries.next().is_some() {
                    return Err(PackageError::TargetExists {
                        path: dir.to_path_buf(),
                    });
                }
            }
            Ok(_) => {
                return Err(PackageError::TargetExists {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(dir)(e)),
        }
        let (parent, base) = split_target(dir).map_err(PackageError::from)?;
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        #[cfg(not(unix))]
        let _ = private;
        let (tmp, ()) =
            create_temp(&parent, &base, &mut |p| builder.create(p)).map_err(PackageError::from)?;
        Ok(NewDir {
            tmp,
            dir: dir.to_path_buf(),
            parent,
            written: Vec::new(),
            committed: false,
        })
    }

    /// Writes file `name` whole, created with `mode`, and syncs it.
    pub fn add(&mut self, name: &str, bytes: &[u8], mode: u32) -> Result<(), PackageError> {
        let mut file = self.stream(name, mode)?;
        file.write_all(bytes).map_err(io_error(&file.path))?;
        self.close(file)
    }

    /// Creates file `name` with `mode`, to be written through the returned stream and
    /// handed back to [`NewDir::close`].
    pub fn stream(&mut self, name: &str, mode: u32) -> Result<FileStream, PackageError> {
        if self.written.iter().any(|(n, _)| n == name) {
            return Err(PackageError::DuplicateFile {
                file: name.to_string(),
            });
        }
        let path = self.tmp.join(name);
        let file = create_new_with_mode(&path, mode).map_err(io_error(&path))?;
        Ok(FileStream {
            file,
            name: name.to_string(),
            path,
            len: 0,
        })
    }

    /// Syncs a file written through [`NewDir::stream`] and records its size.
    pub fn close(&mut self, file: FileStream) -> Result<(), PackageError> {
        file.file.sync_all().map_err(io_error(&file.path))?;
        self.written.push((file.name, file.len));
        Ok(())
    }

    /// Checks the files written against `layout` as [`write_layout`] does, then commits.
    pub fn commit_layout(self, layout: &Layout) -> Result<(), PackageError> {
        let sizes: Vec<(&str, u64)> = self
            .written
            .iter()
            .map(|(name, size)| (name.as_str(), *size))
            .collect();
        check_sizes(layout, &sizes)?;
        self.commit()
    }

    /// Syncs the temporary directory, renames it to the target and syncs the parent.
    pub fn commit(mut self) -> Result<(), PackageError> {
        sync_dir(&self.tmp).map_err(PackageError::from)?;
        fs::rename(&self.tmp, &self.dir).map_err(io_error(&self.dir))?;
        self.committed = true;
        // Make the rename durable; the directory is complete either way.
        let _ = sync_dir(&self.parent);
        Ok(())
    }
}

impl Drop for NewDir {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the error that stopped the write matters more.
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A file of a [`NewDir`] being written; it counts its bytes.
pub struct FileStream {
    file: fs::File,
    name: String,
    path: PathBuf,
    len: u64,
}

impl FileStream {
    /// Where the file is being written (inside the temporary directory).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Write for FileStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> PackageError {
    let path = path.to_path_buf();
    move |source| PackageError::Io { path, source }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::layout::{FileSpec, Role};

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failure_after_the_first_file_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("pkg");
        // The second name cannot be created inside the temporary directory.
        let files: [NewFile<'_>; 2] = [("ward.json", b"{}", 0o644), ("no/such/dir", b"x", 0o644)];
        let err = write_new_dir(&target, &files).unwrap_err();
        assert!(matches!(err, PackageError::Io { .. }), "{err}");
        assert_eq!(listing(parent.path()), Vec::<String>::new());

        // Same with an existing empty target: it stays empty.
        fs::create_dir(&target).unwrap();
        write_new_dir(&target, &files).unwrap_err();
        assert_eq!(listing(parent.path()), vec!["pkg".to_string()]);
        assert_eq!(listing(&target), Vec::<String>::new());

        // And a successful write replaces the empty directory.
        write_new_dir(&target, &[("ward.json", b"{}", 0o644)]).unwrap();
        assert_eq!(listing(&target), vec!["ward.json".to_string()]);
        assert_eq!(listing(parent.path()), vec!["pkg".to_string()]);
    }

    #[test]
    fn an_existing_directory_or_file_is_never_overwritten() {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("pkg");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("mine"), b"keep").unwrap();
        let err = write_new_dir(&target, &[("ward.json", b"{}", 0o644)]).unwrap_err();
        assert!(matches!(err, PackageError::TargetExists { .. }), "{err}");
        assert_eq!(listing(&target), ["mine"]);
        let file = parent.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = write_new_dir(&file, &[("ward.json", b"{}", 0o644)]).unwrap_err();
        assert!(matches!(err, PackageError::TargetExists { .. }), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"x");
        assert_eq!(listing(parent.path()), ["file", "pkg"]);
    }

    #[test]
    fn a_streamed_directory_appears_whole_at_commit_or_not_at_all() {
        let layout = Layout::new(
            vec![
                FileSpec::index("checkpoint.json", 100),
                FileSpec::file("state.age", Role::State, 8).private(),
                FileSpec::signatures(100),
            ],
            8,
        )
        .unwrap();
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("ckpt");
        let write = |state: &[u8]| {
            let mut new = NewDir::create(&dir, true).unwrap();
            let mut file = new.stream("state.age", 0o600).unwrap();
            for byte in state {
                file.write_all(&[*byte]).unwrap();
            }
            new.close(file).unwrap();
            // Nothing under the target's name until the commit.
            assert!(!dir.exists());
            new.add("checkpoint.json", b"{}", 0o644).unwrap();
            new.add("model.sig", b"s", 0o644).unwrap();
            new.commit_layout(&layout)
        };
        // Streamed past the layout's limit: refused at the commit, and nothing is left.
        let err = write(b"123456789").unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert_eq!(listing(parent.path()), Vec::<String>::new());
        // Dropped before the commit (an error on the way): nothing is left.
        {
            let mut new = NewDir::create(&dir, true).unwrap();
            let file = new.stream("state.age", 0o600).unwrap();
            assert!(file.path().starts_with(parent.path()));
            new.close(file).unwrap();
            assert!(new.stream("state.age", 0o600).is_err(), "a file twice");
        }
        assert_eq!(listing(parent.path()), Vec::<String>::new());
        write(b"12345678").unwrap();
        assert_eq!(listing(&dir), ["checkpoint.json", "model.sig", "state.age"]);
        assert_eq!(fs::read(dir.join("state.age")).unwrap(), b"12345678");
        // A second directory under the same name is refused.
        let err = NewDir::create(&dir, true).err().unwrap();
        assert!(matches!(err, PackageError::TargetExists { .. }), "{err}");
    }

    #[test]
    fn a_layout_is_checked_before_anything_is_written() {
        let layout = Layout::new(
            vec![
                FileSpec::index("checkpoint.json", 100),
                FileSpec::file("state.age", Role::State, 4).private(),
                FileSpec::signatures(100),
            ],
            8,
        )
        .unwrap();
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("ckpt");
        type Files<'a> = &'a [(&'a str, &'a [u8])];
        let refused: [(Files<'_>, &str); 4] = [
            (&[("checkpoint.json", b"{}")], "state.age"),
            (
                &[("checkpoint.json", b"{}"), ("state.age", b"12345")],
                "over the limit",
            ),
            (&[("checkpoint.json", b"{}"), ("notes", b"")], "not part of"),
            (
                &[
                    ("checkpoint.json", b"{}"),
                    ("state.age", b""),
                    ("state.age", b""),
                ],
                "twice",
            ),
        ];
        for (files, needle) in refused {
            let err = write_layout(&dir, &layout, files).unwrap_err();
            assert!(err.to_string().contains(needle), "{needle}: {err}");
            assert_eq!(listing(parent.path()), Vec::<String>::new());
        }
        write_layout(
            &dir,
            &layout,
            &[
                ("checkpoint.json", b"{}"),
                ("state.age", b"enc"),
                ("model.sig", b"s"),
            ],
        )
        .unwrap();
        assert_eq!(listing(&dir), ["checkpoint.json", "model.sig", "state.age"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f: &str| fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            // Private before the umask, which may only take bits away.
            assert_eq!(mode("state.age"), 0o600);
            assert_eq!(mode("checkpoint.json") & 0o600, 0o600);
        }
    }
}
