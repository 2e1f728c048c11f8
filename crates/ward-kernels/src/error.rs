/// An argument of a kernel does not fit its geometry. Kernels check before they touch
/// memory, so nothing was written when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("{kernel}: {argument} has {got} elements, the geometry needs {expected}")]
    Length {
        kernel: &'static str,
        argument: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{kernel}: {reason}")]
    Geometry {
        kernel: &'static str,
        reason: String,
    },
}

impl KernelError {
    pub(crate) fn geometry(kernel: &'static str, reason: impl Into<String>) -> KernelError {
        KernelError::Geometry {
            kernel,
            reason: reason.into(),
        }
    }
}

/// Checks that `argument` holds exactly `expected` elements.
pub(crate) fn check_len(
    kernel: &'static str,
    argument: &'static str,
    got: usize,
    expected: usize,
) -> Result<(), KernelError> {
    if got == expected {
        Ok(())
    } else {
        Err(KernelError::Length {
            kernel,
            argument,
            expected,
            got,
        })
    }
}
