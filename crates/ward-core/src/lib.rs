//! Ward's foundation: element types, tensors, a bounds-checked byte reader, the `.npy`
//! format, the run's random stream and the error type shared by them.
//!
//! Nothing here depends on another ward crate. Every parser in ward that reads bytes from
//! outside is built on [`Reader`], so bounds checks live in one place.

// Data from outside must never be unwrapped; tests may.

pub mod audit;
pub mod buffer;
pub mod dtype;
pub mod files;
pub mod json;
pub mod npy;
pub mod privilege;
pub mod random;
pub mod reader;
pub mod tensor;

pub use audit::{AuditEvent, AuditFlush, AuditLayer, BackgroundWriter, AUDIT_TARGET};
pub use buffer::Buffer;
pub use dtype::DType;
pub use reader::{Reader, Truncated};
pub use tensor::{Tensor, TensorError, TensorView};
