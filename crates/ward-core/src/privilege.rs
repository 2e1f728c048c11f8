//! Whether this process runs as root: the one check behind `ward serve`'s refusal to run
//! as root and `ward doctor`'s warning (DESIGN T12).
//!
//! It asks the kernel for the effective uid (`geteuid`, through rustix's safe binding)
//! rather than reading `/proc`, which a container may not mount. It fails closed: when
//! the answer is unknown the process counts as root, so a caller refuses unless told
//! otherwise (`--allow-root`).

/// Who this process acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectiveUser {
    /// Effective uid 0.
    Root,
    /// Any other effective uid.
    Unprivileged { uid: u32 },
    /// The platform has no uid to ask for (not unix); counted as root.
    Unknown,
}

/// The effective user of this process.
pub fn effective_user() -> EffectiveUser {
    #[cfg(unix)]
    {
        // geteuid(2) cannot fail.
        let uid = rustix::process::geteuid();
        if uid.is_root() {
            EffectiveUser::Root
        } else {
            EffectiveUser::Unprivileged { uid: uid.as_raw() }
        }
    }
    #[cfg(not(unix))]
    {
        // Windows has no uid; telling an elevated process apart needs its token, which
        // no safe binding in the tree reads. Unknown counts as root (fails closed).
        EffectiveUser::Unknown
    }
}

/// Whether this process must be treated as root: effective uid 0, or not known.
pub fn running_as_root() -> bool {
    !matches!(effective_user(), EffectiveUser::Unprivileged { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_effective_uid_is_the_one_id_reports() {
        let Ok(out) = std::process::Command::new("id").arg("-u").output() else {
            // Without id(1) there is nothing to compare with; the OS answered anyway.
            assert_ne!(effective_user(), EffectiveUser::Unknown);
            return;
        };
        let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let expected = if uid == 0 {
            EffectiveUser::Root
        } else {
            EffectiveUser::Unprivileged { uid }
        };
        assert_eq!(effective_user(), expected);
        assert_eq!(running_as_root(), uid == 0);
    }
}
