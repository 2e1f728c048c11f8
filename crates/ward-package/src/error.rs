//! The one error type of `ward-package`. Every variant names the file, and the field,
//! tensor or byte offset where it applies.

use std::path::PathBuf;
use ward_core::files::WriteError;
use ward_core::DType;
use ward_graph::schema::SchemaError;
use ward_graph::GraphError;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    // ---- the directory and its files ----
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path}: already exists and is not an empty directory; refusing to overwrite it")]
    TargetExists { path: PathBuf },
    #[error("{path}: cannot be a package directory (it has no final name component)")]
    InvalidTarget { path: PathBuf },
    #[error("package entry {name:?} has a name that is not UTF-8")]
    NonUtf8Name { name: String },
    #[error("package has more than {limit} directory entries")]
    TooManyEntries { limit: usize },
    #[error("package entry {file:?} is not part of a package (expected {expected})")]
    UnexpectedFile {
        file: String,
        /// The names the layout allows.
        expected: String,
    },
    #[error("package file {file:?} is a symbolic link; packages may not contain links")]
    Symlink { file: String },
    #[error("package entry {file:?} is not a regular file")]
    NotRegularFile { file: String },
    #[error("package file {file:?} is missing")]
    MissingFile { file: &'static str },
    #[error("package file {file:?} is given twice")]
    DuplicateFile { file: String },
    #[error("package file {file:?} is {size} bytes, over the limit of {limit}")]
    FileTooLarge { file: String, size: u64, limit: u64 },
    #[error("package file {file:?} changed size while it was read")]
    FileChanged { file: String },
    #[error("package file {file:?}: its {bytes} bytes cannot be reserved in memory")]
    OutOfMemory { file: String, bytes: u64 },
    #[error("package file {file:?} is {actual} bytes, but ward.json records {declared}")]
    SizeMismatch {
        file: String,
        declared: u64,
        actual: u64,
    },

    #[error("{path}: more than {limit} {what}")]
    TreeLimit {
        path: PathBuf,
        what: &'static str,
        limit: u64,
    },

    // ---- keys, trust policy, signatures ----
    #[error("{reason}")]
    Key { reason: String },
    #[error("{path}: private key is readable by others (mode {mode:03o}); run `chmod 600 {path}`")]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("trust policy {path}: {reason}")]
    Policy { path: PathBuf, reason: String },
    /// A source file (an MXNet export's) that cannot be read within its limit.
    #[error("cannot read {path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: ward_core::files::FileError,
    },
    /// A model that cannot be signed as it is (`reason` names it).
    #[error("{reason}")]
    Sign { path: PathBuf, reason: String },
    /// Verification refused the model: one problem per line.
    #[error("{} refused: {}", package.display(), problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Refused {
        package: PathBuf,
        problems: Vec<crate::problem::Problem>,
    },
    /// The loader refused the model because it could not be read within its rules (a
    /// link, an extra file, a file over its limit, ...) or because its verified bytes do
    /// not parse. `reason` is the audit event's stable reason code.
    #[error("{} refused: {source}", package.display())]
    Rejected {
        package: PathBuf,
        reason: &'static str,
        #[source]
        source: Box<PackageError>,
    },

    // ---- ward.json ----
    #[error("ward.json: {source}")]
    ManifestJson {
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "ward.json: format_version {found} is not supported (this ward reads version {supported})"
    )]
    UnsupportedFormatVersion { found: u32, supported: u32 },
    #[error("ward.json: field {field}: {reason}")]
    ManifestField { field: String, reason: String },
    #[error("ward.json: field {field}: {source}")]
    ManifestSpec {
        field: String,
        #[source]
        source: SchemaError,
    },

    // ---- the package as a whole, and running it ----
    #[error("package is inconsistent: {reason}")]
    Inconsistent { reason: String },
    /// The graph failed to parse, to check against the weights, or to run.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A request's inputs do not match the declared schema.
    #[error(transparent)]
    Input(#[from] SchemaError),

    // ---- weights.safetensors ----
    #[error(
        "weights.safetensors: the file is {len} bytes, too short for the 8-byte header length"
    )]
    WeightsTooShort { len: usize },
    #[error(
        "weights.safetensors: header length {len} (byte 0) exceeds the limit of {limit} bytes"
    )]
    WeightsHeaderTooLong { len: u64, limit: usize },
    #[error("weights.safetensors: header length {len} (byte 0) runs past the end of the file ({available} bytes remain)")]
    WeightsHeaderPastEnd { len: u64, available: usize },
    #[error("weights.safetensors: the header must start with '{{' at byte 8")]
    WeightsHeaderStart,
    #[error("weights.safetensors: the header must end with '}}' followed only by spaces (byte {offset})")]
    WeightsHeaderEnd { offset: usize },
    #[error("weights.safetensors: header byte {offset} is not valid UTF-8")]
    WeightsHeaderUtf8 { offset: usize },
    #[error("weights.safetensors: header{}: {source}", entry.as_ref().map(|e| format!(" entry {e:?}")).unwrap_or_default())]
    WeightsHeaderJson {
        /// The header key whose value failed to parse, if the failure was inside one.
        entry: Option<String>,
        #[source]
        source: serde_json::Error,
    },
    #[error("weights.safetensors: tensor {name:?} appears more than once")]
    DuplicateTensor { name: String },
    #[error("weights.safetensors: __metadata__ appears more than once")]
    DuplicateMetadata,
    #[error("weights.safetensors: __metadata__ key {key:?} appears more than once")]
    DuplicateMetadataKey { key: String },
    #[error("weights.safetensors: tensor name {name:?} is invalid: {reason}")]
    InvalidTensorName { name: String, reason: &'static str },
    #[error(
        "tensor {name:?} to write: its shape {shape:?} of {dtype:?} takes {expected:?} bytes, \
         its data has {actual}"
    )]
    ViewSizeMismatch {
        name: String,
        shape: Vec<usize>,
        dtype: DType,
        expected: Option<usize>,
        actual: usize,
    },
    #[error(
        "weights.safetensors: tensor {name:?}: dtype {dtype:?} is not supported \
         (supported: F32 F64 F16 BF16 U8 I8 I32 I64 BOOL)"
    )]
    UnsupportedTensorDtype { name: String, dtype: String },
    #[error("weights.safetensors: tensor {name:?}: more than {limit} dims")]
    TensorTooManyDims { name: String, limit: usize },
    #[error(
        "weights.safetensors: tensor {name:?}: shape {shape:?} has more bytes than fit in memory"
    )]
    TensorShapeOverflow { name: String, shape: Vec<u64> },
    #[error("weights.safetensors: tensor {name:?}: data_offsets [{begin}, {end}] are reversed")]
    TensorOffsetsReversed { name: String, begin: u64, end: u64 },
    #[error(
        "weights.safetensors: tensor {name:?}: data_offsets [{begin}, {end}] run past the end \
         of the data ({data_len} bytes)"
    )]
    TensorOutOfBounds {
        name: String,
        begin: u64,
        end: u64,
        data_len: usize,
    },
    #[error(
        "weights.safetensors: tensor {name:?}: data_offsets [{begin}, {end}] hold {actual} \
         bytes, its shape needs {expected}"
    )]
    TensorSizeMismatch {
        name: String,
        begin: u64,
        end: u64,
        expected: usize,
        actual: u64,
    },
    #[error(
        "weights.safetensors: tensor {name:?}: data starts at {begin}, expected {expected} \
         (tensors must be contiguous and must not overlap)"
    )]
    TensorNotContiguous {
        name: String,
        begin: u64,
        expected: u64,
    },
    #[error("weights.safetensors: tensors cover {covered} of the {data_len} data bytes; uncovered data is not allowed")]
    WeightsDataNotCovered { covered: u64, data_len: usize },
    #[error("weights.safetensors: tensor {name:?}: bool element {index} is {value}, not 0 or 1")]
    TensorInvalidBool {
        name: String,
        index: usize,
        value: u8,
    },
}

impl From<WriteError> for PackageError {
    /// A write the atomic writer refused: the path it names is the target, or the
    /// temporary file or directory beside it.
    fn from(error: WriteError) -> PackageError {
        match error {
            WriteError::Exists { path } => PackageError::TargetExists { path },
            WriteError::NoFileName { path } => PackageError::InvalidTarget { path },
            WriteError::Io { path, source } => PackageError::Io { path, source },
        }
    }
}

impl PackageError {
    /// Whether the verified loader refused a model (an audit event `package.refused` says
    /// why): the command-line tool exits 3 for these, whatever the reason.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PackageError::Refused { .. } | PackageError::Rejected { .. }
        )
    }

    /// What made the loader reject a model; any other error is its own cause.
    pub fn cause(&self) -> &PackageError {
        match self {
            PackageError::Rejected { source, .. } => source,
            other => other,
        }
    }
}
