//! Writing a new directory whole or not at all: the directory-level half of ward's one
//! atomic writer (the file-level half is [`ward_core::files::write_new_file`]).
//!
//! The files are written into a temporary sibling directory, each created with its mode
//! before a byte is written and synced; the temporary directory is synced and renamed to
//! the target, and the parent is synced. A failure removes the temporary directory, so
//! neither a partial directory nor a temporary one is left. The target must not exist,
//! or be an empty directory; a rename never replaces a directory that is not empty, so
//! files that appear meanwhile are never overwritten.

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
    let mut with_modes = Vec::with_capacity(files.len());
    for (i, (name, bytes)) in files.iter().enumerate() {
        let Some(spec) = layout.spec_of(name) else {
            return Err(PackageError::UnexpectedFile {
                file: name.to_string(),
                expected: layout.expected(),
            });
        };
        if files.iter().skip(i + 1).any(|(other, _)| other == name) {
            return Err(PackageError::DuplicateFile {
                file: name.to_string(),
            });
        }
        // Refuse to write what the loader would refuse to read.
        let size = bytes.len() as u64;
        if size > spec.limit() {
            return Err(PackageError::FileTooLarge {
                file: name.to_string(),
                size,
                limit: spec.limit(),
            });
        }
        with_modes.push((*name, *bytes, spec.mode()));
    }
    for spec in layout.files().filter(|f| f.is_required()) {
        if let Some(name) = spec.exact_name() {
            if !files.iter().any(|(n, _)| *n == name) {
                return Err(PackageError::MissingFile { file: name });
            }
        }
    }
    Ok(with_modes)
}

/// Writes `files` (name, bytes, mode) into a new directory at `dir`, which must not exist
/// or be an empty directory, through a temporary sibling and a rename; see the module's
/// documentation.
pub fn write_new_dir(dir: &Path, files: &[NewFile<'_>]) -> Result<(), PackageError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { path, source }
    };
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut entries = fs::read_dir(dir).map_err(io_err(dir))?;
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
        Err(e) => return Err(io_err(dir)(e)),
    }
    let (parent, base) = split_target(dir).map_err(PackageError::from)?;
    // A directory holding a file only its owner may read is itself owner-only.
    let private = files.iter().any(|(_, _, mode)| mode & 0o077 == 0);
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
    if let Err(e) = fill(&tmp, dir, files) {
        // Best effort: the original error matters more than a failed cleanup.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Make the rename durable; the directory is complete either way.
    let _ = sync_dir(&parent);
    Ok(())
}

fn fill(tmp: &Path, dir: &Path, files: &[NewFile<'_>]) -> Result<(), PackageError> {
    for (name, bytes, mode) in files {
        let path: PathBuf = tmp.join(name);
        let io = |source| PackageError::Io {
            path: path.clone(),
            source,
        };
        let mut f = create_new_with_mode(&path, *mode).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    sync_dir(tmp).map_err(PackageError::from)?;
    fs::rename(tmp, dir).map_err(|source| PackageError::Io {
        path: dir.to_path_buf(),
        source,
    })
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
