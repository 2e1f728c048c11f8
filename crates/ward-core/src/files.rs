//! Small local files that configure ward (keys, trust policies, tokens, server
//! configuration): read whole, never through a link, never past a stated size, and, for
//! secrets, only when no one but the owner may read them (as ssh does).

use std::fs;
use std::io::Read;
use std::path::Path;

/// Why a small file was not read. The caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum SmallFileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("is a symbolic link; give the file itself")]
    Symlink,
    #[error("{size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("has mode {mode:o}: group or others may read it; run chmod 600 on it")]
    Readable { mode: u32 },
}

/// Reads a UTF-8 file of at most `limit` bytes that is not a symbolic link.
pub fn read_small_text(path: &Path, limit: u64) -> Result<String, SmallFileError> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(SmallFileError::Symlink);
    }
    if meta.len() > limit {
        return Err(SmallFileError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(SmallFileError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|_| SmallFileError::NotUtf8)
}

/// Refuses a file that group or others may read.
#[cfg(unix)]
pub fn check_private_mode(path: &Path) -> Result<(), SmallFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::symlink_metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SmallFileError::Readable { mode });
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_private_mode(_: &Path) -> Result<(), SmallFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_links_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        fs::write(&file, "x = 1\n").unwrap();
        assert_eq!(read_small_text(&file, 6).unwrap(), "x = 1\n");
        assert!(matches!(
            read_small_text(&file, 5),
            Err(SmallFileError::TooLarge { size: 6, limit: 5 })
        ));
        fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_small_text(&file, 9),
            Err(SmallFileError::NotUtf8)
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&file, &link).unwrap();
            assert!(matches!(
                read_small_text(&link, 9),
                Err(SmallFileError::Symlink)
            ));
            fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
            let err = check_private_mode(&file).unwrap_err();
            assert!(err.to_string().contains("mode 640"), "{err}");
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
            check_private_mode(&file).unwrap();
        }
    }
}
