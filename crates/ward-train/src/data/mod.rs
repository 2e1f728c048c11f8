//! Training data: readers for the formats MXNet's iterators read, and batches.
//!
//! Every data file is untrusted input. Each reader opens its file once through
//! [`ward_core::files`] (no link in the last component, no FIFO or device, a size limit
//! checked on the open descriptor), checks every count and shape with checked arithmetic
//! against the bytes present and a named limit ([`DataLimits`]) before allocating for it,
//! and refuses what it cannot read with a [`DataError`] naming the file, the field and
//! the offset (or the line and column). Nothing here panics on bad input.
//!
//! | module | reads | as MXNet's |
//! |---|---|---|
//! | [`idx`] | MNIST IDX files, optionally gzip-compressed | `MNISTIter` |
//! | [`csv`] | numbers in comma-separated lines | `CSVIter` |
//! | [`npy`] | `.npy` arrays (through [`ward_core::npy`]) | `NDArrayIter` over loaded arrays |
//! | [`recordio`] | RecordIO image records, decoded and augmented by [`image`] | `ImageRecordIter` |
//!
//! Each is a [`Dataset`]: a length and example `i` as `f32` data and label. [`batch`]
//! turns a dataset into batches of a fixed size: shuffled each epoch from the run's random
//! stream, decoded on worker threads with a bounded prefetch, and bit-identical for a seed
//! whatever the number of threads.

pub mod batch;
pub mod csv;
pub mod idx;
pub mod image;
pub mod npy;
pub mod recordio;

use ward_core::files::FileError;
use ward_core::npy::NpyError;
use ward_core::random::{ChaCha20Rng, SeedError};
use ward_mxnet::recordio::RecordIoError;

pub use batch::{Batch, Epoch, LastBatch, Loader, LoaderConfig};

/// Limits on data files, checked before the allocations they guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLimits {
    /// Largest data file read whole (IDX, CSV, `.npy`), in bytes; for a gzip file, the
    /// compressed size.
    pub max_file_bytes: u64,
    /// Most bytes a gzip file may decompress to.
    pub max_decompressed_bytes: u64,
    /// Most elements (values) one file may describe.
    pub max_elements: u64,
    /// Most dimensions of an IDX array.
    pub max_rank: usize,
    /// Most pixels (width × height) of an encoded image, checked from its header before
    /// it is decoded.
    pub max_image_pixels: u64,
    /// Largest batch.
    pub max_batch_size: usize,
}

/// 2 GiB: the full MNIST training set is 47 MB uncompressed.
pub const MAX_DATA_FILE_BYTES: u64 = 2 << 30;
/// 4 GiB: a decompression bomb stops here.
pub const MAX_DECOMPRESSED_BYTES: u64 = 4 << 30;
/// 2^30 values: 4 GiB as `f32`.
pub const MAX_DATA_ELEMENTS: u64 = 1 << 30;
/// IDX's own rank byte allows 255; MNIST uses 1 and 3.
pub const MAX_IDX_RANK: usize = 8;
/// 64 megapixels (8192 × 8192): far above a training image, far below what a crafted
/// header can claim (65 535 × 65 535 for JPEG, 2^31 × 2^31 for PNG).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;
/// Batches beyond this are a configuration mistake.
pub const MAX_BATCH_SIZE: usize = 1 << 16;

impl Default for DataLimits {
    fn default() -> Self {
        DataLimits {
            max_file_bytes: MAX_DATA_FILE_BYTES,
            max_decompressed_bytes: MAX_DECOMPRESSED_BYTES,
            max_elements: MAX_DATA_ELEMENTS,
            max_rank: MAX_IDX_RANK,
            max_image_pixels: MAX_IMAGE_PIXELS,
            max_batch_size: MAX_BATCH_SIZE,
        }
    }
}

/// Why data could not be read. Every variant names the file (or says it is about the
/// configuration).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}: {reason}")]
    File { file: String, reason: FileError },
    #[error("{file}: not a valid gzip stream: {reason}")]
    Gzip { file: String, reason: String },
    #[error("{file}: decompresses to more than {limit} bytes (decompressed-size limit)")]
    DecompressedTooLarge { file: String, limit: u64 },
    #[error("{file}: input ends inside {field} at byte {offset} ({needed} bytes needed, {available} remain)")]
    Truncated {
        file: String,
        field: &'static str,
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error("{file}: {field} at byte {offset}: {problem}")]
    Malformed {
        file: String,
        field: &'static str,
        offset: u64,
        problem: String,
    },
    #[error("{file}: {field} {dims:?} describes {}, over the limit of {limit}", describe(.elements))]
    TooManyElements {
        file: String,
        field: &'static str,
        dims: Vec<u64>,
        /// `None` if the product overflows.
        elements: Option<u64>,
        limit: u64,
    },
    #[error("{file}: label {label} of example {index} is not a class in 0..{classes}")]
    LabelOutOfRange {
        file: String,
        index: usize,
        label: f64,
        classes: usize,
    },
    #[error("{file}: line {line}, column {column}: {problem}")]
    Csv {
        file: String,
        line: u64,
        column: u64,
        problem: String,
    },
    #[error("{file}: {reason}")]
    Npy { file: String, reason: NpyError },
    #[error("{0}")]
    RecordIo(#[from] RecordIoError),
    #[error("{file}: record at byte {offset}: {reason}")]
    Image {
        file: String,
        offset: u64,
        reason: image::ImageError,
    },
    #[error("{first} holds {first_count} examples but {second} holds {second_count}")]
    CountMismatch {
        first: String,
        first_count: u64,
        second: String,
        second_count: u64,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("random stream: {0}")]
    Seed(#[from] SeedError),
    #[error("example {index} of {len} asked for")]
    IndexOutOfRange { index: usize, len: usize },
    #[error("a data worker thread failed: {0}")]
    Worker(String),
}

fn describe(elements: &Option<u64>) -> String {
    match elements {
        Some(n) => format!("{n} elements"),
        None => "more elements than a u64 counts".to_owned(),
    }
}

/// One example: its data (row-major, [`Dataset::data_shape`]) and label
/// ([`Dataset::label_shape`]), as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub data: Vec<f32>,
    pub label: Vec<f32>,
}

/// A finite, indexable set of examples.
///
/// `get` must depend only on `index` and the generator it is given, never on which thread
/// calls it or in which order: [`batch`] hands each example a generator derived from
/// (epoch, index), so that augmentation is repeatable with any number of threads.
pub trait Dataset: Send + Sync {
    /// The number of examples.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one example's data.
    fn data_shape(&self) -> &[usize];

    /// The shape of one example's label (`[]` for a scalar).
    fn label_shape(&self) -> &[usize];

    /// Example `index`; random augmentation, if any, draws from `rng`.
    fn get(&self, index: usize, rng: &mut ChaCha20Rng) -> Result<Example, DataError>;
}

/// Element count of a shape, `None` on overflow.
pub(crate) fn shape_elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Checks an example index against a dataset's length.
pub(crate) fn check_index(index: usize, len: usize) -> Result<(), DataError> {
    if index >= len {
        return Err(DataError::IndexOutOfRange { index, len });
    }
    Ok(())
}

/// A vector of `n` zeros, refused when it cannot be had.
pub(crate) fn zeroed<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>, DataError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| DataError::Config(format!("{what}: {n} values cannot be reserved")))?;
    v.resize(n, T::default());
    Ok(v)
}
