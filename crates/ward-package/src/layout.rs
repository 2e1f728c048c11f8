//! What a signed directory holds, as a description the loader and the writer follow.
//!
//! A [`Layout`] lists the files a directory may hold, each with its [`Role`], whether it
//! is required, its size limit, whether the loader parses it or only hashes it, and
//! whether the directory's index (its manifest) records its size. A ward package is one
//! layout ([`Layout::package`]); a checkpoint declares its own and reuses the same
//! verified loader ([`crate::loader::open_layout`]) and the same atomic writer
//! ([`crate::write::write_layout`]).
//!
//! Every layout has exactly one index, the file with [`Role::Manifest`]: it is verified
//! alone and parsed first ([`Index`]), names the model for the trust policy, and records
//! the sizes of the files marked [`FileSpec::size_recorded`], so that a file of another
//! size is refused before a byte of it is read. Signatures are named `model.sig` and
//! `model.N.sig` (N: 1 to 4 digits).

use std::fs;
use std::io;
use std::path::Path;

use crate::error::PackageError;
use crate::limits::{PackageLimits, MAX_DIR_ENTRIES, MAX_SIGNATURE_BYTES};

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "ward.json";
/// The graph IR's file name.
pub const GRAPH_FILE: &str = "graph.json";
/// The weights' file name.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The signature's file name; further signatures are `model.N.sig` (N: 1 to 4 digits).
pub const SIGNATURE_FILE: &str = "model.sig";
/// A checkpoint's index.
pub const CHECKPOINT_INDEX_FILE: &str = "checkpoint.json";
/// A checkpoint's encrypted training state (an age file).
pub const CHECKPOINT_STATE_FILE: &str = "state.age";

/// The signatures' names: `model.sig` and `model.N.sig`.
pub const SIGNATURES: FileName = FileName::Numbered {
    stem: "model",
    extension: "sig",
};

/// What a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// The index (`ward.json`, a checkpoint's `checkpoint.json`): verified alone and
    /// parsed first; names the model; records the other files' sizes.
    Manifest,
    /// The graph IR.
    Graph,
    /// Parameters and auxiliary states.
    Weights,
    /// Encrypted training state (a checkpoint's `state.age`).
    State,
    /// A signature in the OpenSSF model-signing format.
    Signature,
}

/// What the loader does with a file's bytes once they are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Held in memory and handed to the caller, who parses them.
    Parsed,
    /// Only hashed as they are read, never kept.
    Hashed,
}

/// How a file is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileName {
    Exact(&'static str),
    /// `{stem}.{extension}` and `{stem}.{N}.{extension}`, N of 1 to 4 digits.
    Numbered {
        stem: &'static str,
        extension: &'static str,
    },
}

impl FileName {
    /// Whether `name` is one of the names this gives.
    pub fn matches(&self, name: &str) -> bool {
        match *self {
            FileName::Exact(exact) => name == exact,
            FileName::Numbered { stem, extension } => {
                let Some(rest) = name
                    .strip_prefix(stem)
                    .and_then(|r| r.strip_prefix('.'))
                    .and_then(|r| r.strip_suffix(extension))
                else {
                    return false;
                };
                if rest.is_empty() {
                    return true;
                }
                let Some(n) = rest.strip_suffix('.') else {
                    return false;
                };
                !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit())
            }
        }
    }

    /// For messages: `ward.json`, or `model.sig or model.N.sig`.
    fn describe(&self) -> String {
        match self {
            FileName::Exact(name) => name.to_string(),
            FileName::Numbered { stem, extension } => {
                format!("{stem}.{extension} or {stem}.N.{extension}")
            }
        }
    }
}

/// One file of a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    name: FileName,
    role: Role,
    required: bool,
    limit: u64,
    content: Content,
    size_recorded: bool,
    mode: u32,
}

/// The mode a file is created with when the layout does not keep it private: what the
/// umask leaves of read and write for all.
const SHARED_MODE: u32 = 0o666;

impl FileSpec {
    /// The layout's index ([`Role::Manifest`]): required, parsed, at most `limit` bytes.
    pub fn index(name: &'static str, limit: u64) -> FileSpec {
        FileSpec::file(name, Role::Manifest, limit)
    }

    /// A required file that the loader hands over to be parsed, at most `limit` bytes.
    pub fn file(name: &'static str, role: Role, limit: u64) -> FileSpec {
        FileSpec {
            name: FileName::Exact(name),
            role,
            required: true,
            limit,
            content: Content::Parsed,
            size_recorded: false,
            mode: SHARED_MODE,
        }
    }

    /// The signature files ([`SIGNATURES`]), each at most `limit` bytes: any number,
    /// none required by the layout (the trust policy decides).
    pub fn signatures(limit: u64) -> FileSpec {
        FileSpec {
            name: SIGNATURES,
            role: Role::Signature,
            required: false,
            limit,
            content: Content::Parsed,
            size_recorded: false,
            mode: SHARED_MODE,
        }
    }

    /// The file may be absent.
    pub fn optional(mut self) -> FileSpec {
        self.required = false;
        self
    }

    /// The loader only hashes the file and keeps none of it.
    pub fn hashed_only(mut self) -> FileSpec {
        self.content = Content::Hashed;
        self
    }

    /// The index records this file's size: another size is refused before it is read.
    pub fn size_recorded(mut self) -> FileSpec {
        self.size_recorded = true;
        self
    }

    /// The writer creates the file readable by its owner only (0600).
    pub fn private(mut self) -> FileSpec {
        self.mode = 0o600;
        self
    }

    pub fn name(&self) -> FileName {
        self.name
    }

    /// The file's one name, unless it is numbered (signatures).
    pub fn exact_name(&self) -> Option<&'static str> {
        match self.name {
            FileName::Exact(name) => Some(name),
            FileName::Numbered { .. } => None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_required(&self) -> bool {
        self.required
    }

    /// Largest size, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn content(&self) -> Content {
        self.content
    }

    pub fn is_size_recorded(&self) -> bool {
        self.size_recorded
    }

    /// The permission bits the writer creates the file with (before the umask).
    pub fn mode(&self) -> u32 {
        self.mode
    }
}

/// Why a list of files is not a layout (a mistake in the code that declares it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("a layout has exactly one index file (role Manifest), this one has {found}")]
    Index { found: usize },
    #[error("the index {name:?} must be a required, parsed file whose size is not recorded")]
    IndexKind { name: &'static str },
    #[error(
        "a layout has exactly one set of signature files (role Signature), this one has {found}"
    )]
    Signatures { found: usize },
    #[error("{name:?} is declared twice")]
    Duplicate { name: String },
}

/// The files a signed directory holds; see the module's documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    index: FileSpec,
    /// The other files, signatures included, in the order they are read.
    others: Vec<FileSpec>,
    max_entries: usize,
}

/// What the listing of a directory found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entries {
    /// Exact-named files present, in the layout's order (the index first).
    pub files: Vec<&'static str>,
    /// Signature files present, sorted by name.
    pub signatures: Vec<String>,
}

impl Layout {
    /// A layout of `files`, of at most `max_entries` directory entries: exactly one index
    /// (the file of [`Role::Manifest`], required and parsed), which is read first
    /// whatever its place, exactly one set of signatures ([`FileSpec::signatures`]), and
    /// files of other roles, read in their order.
    pub fn new(files: Vec<FileSpec>, max_entries: usize) -> Result<Layout, LayoutError> {
        for (i, f) in files.iter().enumerate() {
            let clash = files.iter().skip(i + 1).any(|g| match f.name {
                FileName::Exact(n) => g.name.matches(n),
                FileName::Numbered { .. } => g.exact_name().is_some_and(|n| f.name.matches(n)),
            });
            if clash {
                return Err(LayoutError::Duplicate {
                    name: f.name.describe(),
                });
            }
        }
        let signatures = files.iter().filter(|f| f.role == Role::Signature).count();
        let numbered = files.iter().filter(|f| f.exact_name().is_none()).count();
        if signatures != 1 || numbered != 1 {
            return Err(LayoutError::Signatures {
                found: signatures.max(numbered),
            });
        }
        let found = files.iter().filter(|f| f.role == Role::Manifest).count();
        let (mut indexes, others): (Vec<FileSpec>, Vec<FileSpec>) =
            files.into_iter().partition(|f| f.role == Role::Manifest);
        let (1, Some(index)) = (found, indexes.pop()) else {
            return Err(LayoutError::Index { found });
        };
        let name = index.exact_name().unwrap_or_default();
        if !index.required || index.content != Content::Parsed || index.size_recorded {
            return Err(LayoutError::IndexKind { name });
        }
        Ok(Layout {
            index,
            others,
            max_entries,
        })
    }

    /// A ward package: `ward.json` (the index), `graph.json` and `weights.safetensors`
    /// (all three required and parsed; the manifest records the sizes of the other two),
    /// and signatures, each within `limits`.
    pub fn package(limits: &PackageLimits) -> Layout {
        Layout {
            index: FileSpec::index(MANIFEST_FILE, limits.max_manifest_bytes),
            others: vec![
                FileSpec::file(GRAPH_FILE, Role::Graph, limits.max_graph_bytes).size_recorded(),
                FileSpec::file(WEIGHTS_FILE, Role::Weights, limits.max_weights_bytes)
                    .size_recorded(),
                FileSpec::signatures(limits.max_signature_bytes),
            ],
            max_entries: MAX_DIR_ENTRIES,
        }
    }

    /// A training checkpoint: `checkpoint.json` (the index, at most `max_index_bytes`),
    /// `state.age` (the encrypted state, at most `max_state_bytes`, its size recorded in
    /// the index), and signatures; every file created owner-only (and so the directory).
    pub fn checkpoint(max_index_bytes: u64, max_state_bytes: u64) -> Layout {
        Layout {
            index: FileSpec::index(CHECKPOINT_INDEX_FILE, max_index_bytes).private(),
            others: vec![
                FileSpec::file(CHECKPOINT_STATE_FILE, Role::State, max_state_bytes)
                    .size_recorded()
                    .private(),
                FileSpec::signatures(MAX_SIGNATURE_BYTES).private(),
            ],
            max_entries: MAX_DIR_ENTRIES,
        }
    }

    /// Every file, the index first.
    pub fn files(&self) -> impl Iterator<Item = &FileSpec> + '_ {
        std::iter::once(&self.index).chain(&self.others)
    }

    /// The index: the one file of [`Role::Manifest`].
    pub fn index(&self) -> &FileSpec {
        &self.index
    }

    /// The index's file name.
    pub fn index_name(&self) -> &'static str {
        // `new` and `package` make the index an exact name.
        self.index.exact_name().unwrap_or_default()
    }

    /// The files after the index, signatures aside, in the layout's order.
    pub fn contents(&self) -> impl Iterator<Item = &FileSpec> + '_ {
        self.others.iter().filter(|f| f.role != Role::Signature)
    }

    /// The signature files' spec (every layout has one).
    pub fn signatures(&self) -> Option<&FileSpec> {
        self.others.iter().find(|f| f.role == Role::Signature)
    }

    /// The spec `name` falls under, if any.
    pub fn spec_of(&self, name: &str) -> Option<&FileSpec> {
        self.files().find(|f| f.name.matches(name))
    }

    /// Most entries the directory may hold.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The names the layout allows, for messages: `ward.json, graph.json,
    /// weights.safetensors, model.sig or model.N.sig`.
    pub fn expected(&self) -> String {
        let names: Vec<String> = self.files().map(|f| f.name.describe()).collect();
        names.join(", ")
    }

    /// The entries of `dir`, by name: only the layout's files, each a regular file and not
    /// a link, every required one present. The directory path itself may be a link.
    /// Nothing is read.
    pub(crate) fn list(&self, dir: &Path) -> Result<Entries, PackageError> {
        let meta = fs::metadata(dir).map_err(io_err(dir))?;
        if !meta.is_dir() {
            return Err(PackageError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        let mut signatures = Vec::new();
        let mut present = Vec::new();
        for (count, entry) in fs::read_dir(dir).map_err(io_err(dir))?.enumerate() {
            if count >= self.max_entries {
                return Err(PackageError::TooManyEntries {
                    limit: self.max_entries,
                });
            }
            let entry = entry.map_err(io_err(dir))?;
            let name = entry_name(&entry)?;
            let Some(spec) = self.spec_of(&name) else {
                return Err(PackageError::UnexpectedFile {
                    file: name,
                    expected: self.expected(),
                });
            };
            // `file_type` does not follow links.
            let ft = entry.file_type().map_err(io_err(&entry.path()))?;
            if ft.is_symlink() {
                return Err(PackageError::Symlink { file: name });
            }
            if !ft.is_file() {
                return Err(PackageError::NotRegularFile { file: name });
            }
            match spec.exact_name() {
                Some(exact) => present.push(exact),
                None => signatures.push(name),
            }
        }
        let mut files = Vec::new();
        for spec in self.files() {
            let Some(name) = spec.exact_name() else {
                continue;
            };
            if present.contains(&name) {
                files.push(name);
            } else if spec.required {
                return Err(PackageError::MissingFile { file: name });
            }
        }
        signatures.sort();
        Ok(Entries { files, signatures })
    }
}

/// Whether `name` is a signature file's name: `model.sig` or `model.N.sig`.
pub fn is_signature_name(name: &str) -> bool {
    SIGNATURES.matches(name)
}

/// A directory entry's name, which must be UTF-8.
pub(crate) fn entry_name(entry: &fs::DirEntry) -> Result<String, PackageError> {
    entry
        .file_name()
        .into_string()
        .map_err(|n| PackageError::NonUtf8Name {
            name: n.to_string_lossy().into_owned(),
        })
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a layout's index tells the loader, once its bytes are verified.
pub trait Index: Sized {
    /// Parses the index from its verified bytes.
    fn parse(bytes: &[u8]) -> Result<Self, PackageError>;
    /// The model name the trust policy's globs match.
    fn model_name(&self) -> &str;
    /// The size this index records for `file`, if it records one (a version-1 manifest
    /// records none: the layout's limit is then the only bound).
    fn recorded_size(&self, file: &str) -> Option<u64>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signature_names() {
        for good in ["model.sig", "model.1.sig", "model.2024.sig"] {
            assert!(is_signature_name(good), "{good}");
        }
        for bad in [
            "model..sig",
            "model.x.sig",
            "model.12345.sig",
            "model.-1.sig",
            "model.sig.bak",
            "MODEL.sig",
            "modelsig",
            "model.",
            "model.1.",
        ] {
            assert!(!is_signature_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_package_layout_is_a_valid_layout() {
        let package = Layout::package(&PackageLimits::default());
        let again = Layout::new(package.files().cloned().collect(), MAX_DIR_ENTRIES).unwrap();
        assert_eq!(again, package);
        assert_eq!(package.index_name(), MANIFEST_FILE);
        let contents: Vec<Option<&str>> = package.contents().map(|f| f.exact_name()).collect();
        assert_eq!(contents, [Some(GRAPH_FILE), Some(WEIGHTS_FILE)]);
        assert_eq!(
            package.expected(),
            "ward.json, graph.json, weights.safetensors, model.sig or model.N.sig"
        );
        assert_eq!(
            package.spec_of("model.3.sig").map(FileSpec::role),
            Some(Role::Signature)
        );
        assert_eq!(package.spec_of("notes.txt"), None);
    }

    #[test]
    fn mistakes_in_a_layout_are_refused() {
        let sigs = || FileSpec::signatures(10);
        let index = || FileSpec::index("i.json", 10);
        let cases: [(Vec<FileSpec>, LayoutError); 5] = [
            (vec![sigs()], LayoutError::Index { found: 0 }),
            (
                vec![index(), FileSpec::index("j.json", 1), sigs()],
                LayoutError::Index { found: 2 },
            ),
            (
                vec![index().optional(), sigs()],
                LayoutError::IndexKind { name: "i.json" },
            ),
            (vec![index()], LayoutError::Signatures { found: 0 }),
            (
                vec![
                    index(),
                    FileSpec::file("model.1.sig", Role::State, 1),
                    sigs(),
                ],
                LayoutError::Duplicate {
                    name: "model.1.sig".into(),
                },
            ),
        ];
        for (files, want) in cases {
            assert_eq!(Layout::new(files, 8), Err(want.clone()), "{want}");
        }
        // The index is put first whatever its place.
        let layout = Layout::new(
            vec![FileSpec::file("a.bin", Role::State, 1), sigs(), index()],
            8,
        )
        .unwrap();
        assert_eq!(layout.index_name(), "i.json");
    }
}
