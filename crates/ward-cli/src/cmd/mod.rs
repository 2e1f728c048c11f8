pub mod doctor;
pub mod export;
pub mod import;
pub mod inspect;
pub mod predict;
pub mod version;

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Parses comma-separated dims where `-1` marks a variable dim (`-1,3,224,224`).
pub fn parse_dims(text: &str, allow_variable: bool) -> Result<Vec<i64>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|d| {
            let v: i64 = d
                .trim()
                .parse()
                .with_context(|| format!("dim {d:?} in {text:?} is not an integer"))?;
            if v < -1 || (v == -1 && !allow_variable) {
                bail!("dim {v} in {text:?} is not allowed");
            }
            Ok(v)
        })
        .collect()
}

/// Whether `name` can be used as a file name inside a directory ward writes.
pub fn safe_file_stem(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+'))
}
