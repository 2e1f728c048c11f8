//! What the test modules share: running the `ward` binary, and where the fixtures are.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `ward args`, waited for.
pub fn ward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .output()
        .expect("ward runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// An importer fixture model (`tests/fixtures/models/NAME`, made by
/// tools/make_model_fixtures.py).
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/models").join(name)
}

/// Copies the regular files of `from` (not its subdirectories) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
