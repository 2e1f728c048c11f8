//! Reading any model directory (an MXNet export folder, a model-signing model) once, so
//! that its signatures can be checked over the very bytes that are then used.
//!
//! Links and special files are refused wherever they are (unless under a skipped path),
//! names must be UTF-8, and the number of files, the total size and the depth are bounded
//! before anything is read. Only the files the caller will parse are kept in memory; the
//! others are hashed as they are read and let go, so verifying or signing a model of any
//! size takes memory for two chunks of one file.

use std::fs;
use std::path::Path;

use ward_core::Buffer;

use crate::error::PackageError;
use crate::layout::entry_name;
use crate::read::{open_model_file, read_model_file, Keep};
use crate::signature::verify::Digests;
use crate::signature::{FileSet, Hashing};

/// Most files in a model directory.
pub const MAX_TREE_FILES: u64 = 100_000;
/// Most bytes in a model directory.
pub const MAX_TREE_BYTES: u64 = 64 << 30;
/// Deepest directory nesting.
pub const MAX_TREE_DEPTH: u64 = 64;

/// Bounds on a directory read; the defaults are the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    pub max_files: u64,
    pub max_total_bytes: u64,
    pub max_depth: u64,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_files: MAX_TREE_FILES,
            max_total_bytes: MAX_TREE_BYTES,
            max_depth: MAX_TREE_DEPTH,
        }
    }
}

/// One file of a tree: its relative path, its length, and its bytes when kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    pub path: String,
    pub len: u64,
    pub bytes: Option<Buffer>,
}

/// The files of a directory (or a single file, named `.`), each read once.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub files: Vec<TreeFile>,
}

impl Tree {
    /// The files as signatures see them.
    pub fn file_set(&self) -> FileSet<'_> {
        FileSet::with_lengths(
            self.files
                .iter()
                .map(|f| (f.path.clone(), f.len, f.bytes.as_deref())),
        )
    }

    /// The bytes of one kept file, by relative path.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .and_then(|f| f.bytes.as_deref())
    }

    /// The bytes of one kept file, taken out of the tree.
    pub fn take(&mut self, path: &str) -> Option<Buffer> {
        self.files
            .iter_mut()
            .find(|f| f.path == path)
            .and_then(|f| f.bytes.take())
    }
}

/// Reads `root` (a directory, or one regular file). Paths for which `skip` returns true
/// (relative, `/`-separated) are neither read nor descended into; files for which `keep`
/// returns true are kept in memory, the others only hashed. A file whose length differs
/// from `expected_len` (a length the signatures give) is refused with
/// [`PackageError::SizeMismatch`] before it is read.
///
/// Files are hashed with `hashings` while they are read when they are large or not kept;
/// their digests go to `digests`.
pub fn read_tree(
    root: &Path,
    skip: &dyn Fn(&str) -> bool,
    keep: &dyn Fn(&str) -> bool,
    expected_len: &dyn Fn(&str) -> Option<u64>,
    limits: &TreeLimits,
    hashings: &[Hashing],
    digests: &mut Digests,
) -> Result<Tree, PackageError> {
    let mut read = |path: &Path, name: &str, limit: u64| -> Result<TreeFile, PackageError> {
        let file = open_model_file(path, name)?;
        if let Some(declared) = expected_len(name) {
            if file.len() != declared {
                return Err(PackageError::SizeMismatch {
                    file: name.to_string(),
                    declared,
                    actual: file.len(),
                });
            }
        }
        let how = if keep(name) {
            Keep::Held
        } else {
            Keep::Streamed
        };
        let read = read_model_file(file, path, name, limit, how, hashings, digests)?;
        Ok(TreeFile {
            path: name.to_string(),
            len: read.len,
            bytes: read.bytes,
        })
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { path, source }
    };
    let meta = fs::metadata(root).map_err(io(root))?;
    if meta.is_file() {
        let file = read(root, ".", limits.max_total_bytes)?;
        return Ok(Tree { files: vec![file] });
    }
    if !meta.is_dir() {
        return Err(PackageError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let limit = |what: &'static str, limit: u64| PackageError::TreeLimit {
        path: root.to_path_buf(),
        what,
        limit,
    };
    let mut tree = Tree::default();
    let mut total: u64 = 0;
    let mut entries_seen: u64 = 0;
    // (relative path prefix, depth)
    let mut pending: Vec<(String, u64)> = vec![(String::new(), 0)];
    while let Some((prefix, depth)) = pending.pop() {
        let dir = if prefix.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&prefix)
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            entries_seen += 1;
            if entries_seen > limits.max_files.saturating_mul(2) {
                return Err(limit(
                    "directory entries",
                    limits.max_files.saturating_mul(2),
                ));
            }
            let name = entry_name(&entry)?;
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if skip(&rel) {
                continue;
            }
            let file_type = entry.file_type().map_err(io(&entry.path()))?;
            names.push((rel, file_type));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (rel, file_type) in names {
            if file_type.is_symlink() {
                return Err(PackageError::Symlink { file: rel });
            }
            if file_type.is_dir() {
                if depth + 1 > limits.max_depth {
                    return Err(limit("levels of directories", limits.max_depth));
                }
                pending.push((rel, depth + 1));
                continue;
            }
            if !file_type.is_file() {
                return Err(PackageError::NotRegularFile { file: rel });
            }
            if tree.files.len() as u64 >= limits.max_files {
                return Err(limit("files", limits.max_files));
            }
            let remaining = limits.max_total_bytes.saturating_sub(total);
            let file = read(&root.join(&rel), &rel, remaining).map_err(|e| match e {
                PackageError::FileTooLarge { .. } => limit("bytes in all", limits.max_total_bytes),
                other => other,
            })?;
            total += file.len;
            tree.files.push(file);
        }
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_everything_once_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/w.bin"), b"12").unwrap();
        fs::write(dir.path().join("top.json"), b"{}").unwrap();
        fs::create_dir_all(dir.path().join(".git")).unwrap();
        fs::write(dir.path().join(".git/HEAD"), b"x").unwrap();
        let tree = read_tree(
            dir.path(),
            &|p| p == ".git",
            &|p| p == "a/b/w.bin",
            &|_| None,
            &TreeLimits::default(),
            &[],
            &mut Digests::default(),
        )
        .unwrap();
        let names: Vec<&str> = tree.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["top.json", "a/b/w.bin"]);
        assert_eq!(tree.get("a/b/w.bin"), Some(&b"12"[..]));
        // Not kept: only its length.
        assert_eq!(tree.get("top.json"), None);
        assert_eq!(tree.files[0].len, 2);

        // A length the signatures give is checked before the file is read.
        let err = read_tree(
            dir.path(),
            &|p| p == ".git",
            &|_| true,
            &|p| (p == "top.json").then_some(3),
            &TreeLimits::default(),
            &[],
            &mut Digests::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, PackageError::SizeMismatch { file, declared: 3, actual: 2 } if file == "top.json"),
            "{err}"
        );

        let small = TreeLimits {
            max_total_bytes: 3,
            ..TreeLimits::default()
        };
        let err = read_tree(
            dir.path(),
            &|p| p == ".git",
            &|_| true,
            &|_| None,
            &small,
            &[],
            &mut Digests::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("bytes in all"), "{err}");
        let shallow = TreeLimits {
            max_depth: 1,
            ..TreeLimits::default()
        };
        let err = read_tree(
            dir.path(),
            &|_| false,
            &|_| true,
            &|_| None,
            &shallow,
            &[],
            &mut Digests::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("levels"), "{err}");

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", dir.path().join("a/link")).unwrap();
            let err = read_tree(
                dir.path(),
                &|p| p == ".git",
                &|_| true,
                &|_| None,
                &TreeLimits::default(),
                &[],
                &mut Digests::default(),
            )
            .unwrap_err();
            assert!(
                matches!(err, PackageError::Symlink { ref file } if file == "a/link"),
                "{err}"
            );
        }
    }
}
