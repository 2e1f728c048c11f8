//! MXNet's NDArray list files: `.params` checkpoints and anything else written by
//! `mx.nd.save`, `mx.npx.save`, Gluon's `export`/`save_parameters` or `MXNDArraySave`
//! (§1 of the format reference).
//!
//! A file is a header (list magic `0x112`, a reserved word, the array count), one record
//! per array, then a table of names that is either empty (saved from a list) or has one
//! name per array (saved from a dict). Each record is dispatched on its first word to one of
//! four versions ([`RecordVersion`]); a file may mix them.
//!
//! MXNet trusts these files completely: 1.9.1 allocates whatever a count says, overruns a
//! stack buffer on a negative `ndim` and hangs on a legacy empty shape. This reader treats
//! every byte as hostile:
//!
//! * every count and length is checked against [`ParamsLimits`] *and* against the bytes
//!   that remain before anything is allocated for it, so a 2^40 count in a 100-byte file
//!   costs nothing;
//! * every element count is computed with checked arithmetic and bounded by
//!   [`ParamsLimits::max_elements`], for sparse arrays on the logical shape too, so that
//!   [`StoredArray::to_dense`] is bounded as well;
//! * only the type flags MXNet can save are accepted, sparse arrays must be internally
//!   consistent (indices in range and ordered, `indptr` monotonic), and names must be
//!   distinct UTF-8;
//! * reading is **strict**: bytes after the last name (or after a single-array blob) are
//!   an error, although MXNet ignores them. Nothing legitimate writes them, and accepting
//!   them would let a file carry data that no digest of "the parameters" accounts for.
//!
//! The reserved header word is ignored, as MXNet ignores it. Device contexts are recorded
//! and otherwise not interpreted.
//!
//! ```
//! use ward_mxnet::limits::ParamsLimits;
//! use ward_mxnet::params::{read_params, split_key, ParamKind};
//!
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/params/gluon_export.params");
//! # let bytes = std::fs::read(path)?;
//! // `bytes`: the contents of `model-0000.params`, written by `HybridBlock.export`.
//! let file = read_params(&bytes, &ParamsLimits::default())?;
//! for (key, array) in file.into_named()? {
//!     let (kind, name) = split_key(&key);
//!     if let Some(value) = &array.value {
//!         let weights = value.to_dense()?;
//!         assert_eq!(weights.shape(), value.shape());
//!         assert!(kind != ParamKind::Plain, "{name}: export writes arg:/aux: keys");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use ward_core::tensor::{byte_len, element_count};
use ward_core::{DType, Reader, Tensor, TensorError, Truncated};

use crate::limits::ParamsLimits;

/// First word of every list file.
pub const LIST_MAGIC: u64 = 0x112;
/// Record magic of legacy records with 64-bit dims and no storage type.
pub const V1_MAGIC: u32 = 0xF993_FAC8;
/// Record magic of records with a storage type (MXNet ≥ 1.0, legacy-shape mode).
pub const V2_MAGIC: u32 = 0xF993_FAC9;
/// Record magic of records written in numpy-shape mode (MXNet ≥ 1.5).
pub const V3_MAGIC: u32 = 0xF993_FACA;

/// The smallest record: a legacy V0 "none" slot is a lone `u32` ndim of 0.
const MIN_RECORD_LEN: usize = 4;
/// The smallest name: a `u64` length of 0 and no bytes.
const MIN_NAME_LEN: usize = 8;
/// The only sparse index type MXNet writes (mshadow `kInt64`).
const AUX_TYPE_INT64: i32 = 6;
/// mshadow `kInt32`: accepted by MXNet's loader but unusable afterwards (§1.5).
const AUX_TYPE_INT32: i32 = 4;

/// How a record was written (§1.3). Each record carries its own version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordVersion {
    /// Oldest 0.x: the first word is `ndim`, dims are `u32`. An empty shape is a none slot.
    V0,
    /// Later 0.x: [`V1_MAGIC`], 64-bit dims, dense only. An empty shape is a none slot.
    V1,
    /// MXNet ≥ 1.0 default mode: [`V2_MAGIC`], storage types. An empty shape is a none slot.
    V2,
    /// Numpy-shape mode: [`V3_MAGIC`], dense only. An empty shape is a 0-d scalar and an
    /// unknown shape (ndim or a dim of −1) is a none slot.
    V3,
}

impl fmt::Display for RecordVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordVersion::V0 => "V0",
            RecordVersion::V1 => "V1",
            RecordVersion::V2 => "V2",
            RecordVersion::V3 => "V3",
        })
    }
}

/// The device an array was saved from. Recorded as written; ward never acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Context {
    /// 1 = cpu, 2 = gpu, 3 = cpu_pinned, 5 = cpu_shared; anything else loads in MXNet too.
    pub dev_type: i32,
    pub dev_id: i32,
}

impl Context {
    /// `cpu(0)`: what Gluon always writes, and what a none slot (which stores no context)
    /// reports, as MXNet's default-constructed context does.
    pub const CPU: Context = Context {
        dev_type: 1,
        dev_id: 0,
    };

    /// MXNet's name of the device type, if it is one MXNet defines.
    pub fn device_name(&self) -> Option<&'static str> {
        match self.dev_type {
            1 => Some("cpu"),
            2 => Some("gpu"),
            3 => Some("cpu_pinned"),
            5 => Some("cpu_shared"),
            _ => None,
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.device_name() {
            Some(name) => write!(f, "{name}({})", self.dev_id),
            None => write!(f, "device type {}({})", self.dev_type, self.dev_id),
        }
    }
}

/// One record of a list file.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub version: RecordVersion,
    /// The saved context; [`Context::CPU`] for a none slot.
    pub context: Context,
    /// `None` for a "none" slot: a record with no shape, context or data.
    pub value: Option<StoredArray>,
}

/// The contents of a record, in the storage type it was saved with.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredArray {
    Dense(Tensor),
    /// Rows `indices` (strictly increasing, each `< shape[0]`) hold `values`, of shape
    /// `(indices.len(), shape[1..])`; every other row is zero.
    RowSparse {
        shape: Vec<usize>,
        indices: Vec<i64>,
        values: Tensor,
    },
    /// Compressed sparse rows of a 2-D `shape`: row `r` holds `values[indptr[r]..indptr[r+1]]`
    /// at columns `indices[indptr[r]..indptr[r+1]]`.
    Csr {
        shape: Vec<usize>,
        indptr: Vec<i64>,
        indices: Vec<i64>,
        values: Tensor,
    },
}

impl StoredArray {
    /// The logical shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            StoredArray::Dense(tensor) => tensor.shape(),
            StoredArray::RowSparse { shape, .. } | StoredArray::Csr { shape, .. } => shape,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            StoredArray::Dense(tensor) => tensor.dtype(),
            StoredArray::RowSparse { values, .. } | StoredArray::Csr { values, .. } => {
                values.dtype()
            }
        }
    }

    /// The array as a dense tensor of its logical shape, with zeros where nothing is stored.
    ///
    /// A sparse array read by [`read_params`] has at most `max_elements` logical elements,
    /// but that can still be far more memory than its file; check
    /// `ward_core::tensor::byte_len(self.shape(), self.dtype())` against a budget first
    /// where that matters. Allocation failure is reported, not aborted on.
    ///
    /// The sparse structure is checked again here, because the fields are public and the
    /// value may not have come from the reader. A csr column given twice in a row keeps the
    /// last value, as MXNet's `cast_storage` does.
    pub fn to_dense(&self) -> Result<Tensor, ParamsError> {
        match self {
            StoredArray::Dense(tensor) => Ok(tensor.clone()),
            StoredArray::RowSparse {
                shape,
                indices,
                values,
            } => row_sparse_to_dense(shape, indices, values),
            StoredArray::Csr {
                shape,
                indptr,
                indices,
                values,
            } => csr_to_dense(shape, indptr, indices, values),
        }
    }
}

fn row_sparse_to_dense(
    shape: &[usize],
    indices: &[i64],
    values: &Tensor,
) -> Result<Tensor, ParamsError> {
    let stored_rows =
        check_row_sparse_shapes(shape, values.shape()).map_err(ParamsError::InconsistentSparse)?;
    if indices.len() != stored_rows {
        return Err(ParamsError::InconsistentSparse(SparseProblem::AuxShape {
            aux: SparseAux::Indices,
            expected: vec![stored_rows],
            found: vec![indices.len()],
        }));
    }
    check_row_indices(indices, shape.first().copied().unwrap_or(0))
        .map_err(ParamsError::InconsistentSparse)?;

    let dtype = values.dtype();
    let mut dense = zeroed(shape, dtype)?;
    let row_len = byte_len(shape.get(1..).unwrap_or_default(), dtype)
        .ok_or_else(|| dense_too_large(shape, dtype))?;
    // A row of zero bytes (a 0-size trailing dim) has nothing to copy.
    if row_len > 0 {
        for (&row, stored) in indices.iter().zip(values.bytes().chunks_exact(row_len)) {
            let start = usize::try_from(row)
                .ok()
                .and_then(|row| row.checked_mul(row_len))
                .ok_or_else(|| dense_too_large(shape, dtype))?;
            place(&mut dense, start, stored, shape, dtype)?;
        }
    }
    Tensor::from_bytes(dtype, shape.to_vec(), dense).map_err(|_| dense_too_large(shape, dtype))
}

fn csr_to_dense(
    shape: &[usize],
    indptr: &[i64],
    indices: &[i64],
    values: &Tensor,
) -> Result<Tensor, ParamsError> {
    let (rows, columns) =
        check_csr_shapes(shape, values.shape()).map_err(ParamsError::InconsistentSparse)?;
    check_csr_indices(indptr, indices, rows, columns, values.len())
        .map_err(ParamsError::InconsistentSparse)?;

    let dtype = values.dtype();
    let item = dtype.size();
    let mut dense = zeroed(shape, dtype)?;
    // indptr runs from 0 to nnz without decreasing, so the rows take the stored entries in
    // order, each row as many as its indptr step says.
    let mut entries = indices.iter().zip(values.bytes().chunks_exact(item));
    for (row, bounds) in indptr.windows(2).enumerate() {
        let &[first, last] = bounds else { continue };
        let in_row = usize::try_from(last.saturating_sub(first)).unwrap_or(0);
        for (&column, value) in entries.by_ref().take(in_row) {
            let start = usize::try_from(column)
                .ok()
                .and_then(|column| row.checked_mul(columns)?.checked_add(column))
                .and_then(|element| element.checked_mul(item))
                .ok_or_else(|| dense_too_large(shape, dtype))?;
            place(&mut dense, start, value, shape, dtype)?;
        }
    }
    Tensor::from_bytes(dtype, shape.to_vec(), dense).map_err(|_| dense_too_large(shape, dtype))
}

/// A zero-filled buffer for a dense tensor, or an error if it cannot be had.
fn zeroed(shape: &[usize], dtype: DType) -> Result<Vec<u8>, ParamsError> {
    let len = byte_len(shape, dtype).ok_or_else(|| dense_too_large(shape, dtype))?;
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| dense_too_large(shape, dtype))?;
    buffer.resize(len, 0);
    Ok(buffer)
}

/// Copies `bytes` into `dense` at `start`.
fn place(
    dense: &mut [u8],
    start: usize,
    bytes: &[u8],
    shape: &[usize],
    dtype: DType,
) -> Result<(), ParamsError> {
    let target = start
        .checked_add(bytes.len())
        .and_then(|end| dense.get_mut(start..end))
        .ok_or_else(|| dense_too_large(shape, dtype))?;
    target.copy_from_slice(bytes);
    Ok(())
}

fn dense_too_large(shape: &[usize], dtype: DType) -> ParamsError {
    ParamsError::DenseTooLarge {
        shape: shape.to_vec(),
        dtype,
    }
}

/// A whole list file.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamsFile {
    pub arrays: Vec<NdArray>,
    /// One name per array if the file was saved from a dict; `None` if saved from a list.
    /// An empty dict is saved exactly like an empty list, so it reads back as `None`.
    pub names: Option<Vec<String>>,
}

impl ParamsFile {
    /// The arrays paired with their names, in file order.
    ///
    /// Fails with [`ParamsError::SavedAsList`] if the file has arrays but no names. A file
    /// with no arrays gives an empty list: MXNet writes an empty dict and an empty list
    /// identically.
    pub fn into_named(self) -> Result<Vec<(String, NdArray)>, ParamsError> {
        match self.names {
            Some(names) => Ok(names.into_iter().zip(self.arrays).collect()),
            None if self.arrays.is_empty() => Ok(Vec::new()),
            None => Err(ParamsError::SavedAsList {
                arrays: self.arrays.len(),
            }),
        }
    }
}

/// What an MXNet parameter key says about its parameter (§1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// `arg:name`: a graph argument (weights, biases), from `export`/`save_checkpoint`.
    Arg,
    /// `aux:name`: an auxiliary state (BatchNorm running statistics).
    Aux,
    /// No prefix: `save_parameters` (structural `0.weight`) or `ParameterDict.save` keys.
    Plain,
}

/// Splits an MXNet parameter key into its kind and the parameter name.
///
/// Only the exact prefixes `arg:` and `aux:` are recognised, as MXNet's loaders do; any
/// other key, colons included, is returned whole as [`ParamKind::Plain`].
pub fn split_key(key: &str) -> (ParamKind, &str) {
    if let Some(name) = key.strip_prefix("arg:") {
        (ParamKind::Arg, name)
    } else if let Some(name) = key.strip_prefix("aux:") {
        (ParamKind::Aux, name)
    } else {
        (ParamKind::Plain, key)
    }
}

/// The element type of an mshadow type flag (§1.7), for the flags MXNet can save.
pub fn dtype_from_flag(flag: i32) -> Option<DType> {
    Some(match flag {
        0 => DType::F32,
        1 => DType::F64,
        2 => DType::F16,
        3 => DType::U8,
        4 => DType::I32,
        5 => DType::I8,
        6 => DType::I64,
        7 => DType::Bool,
        12 => DType::BF16,
        _ => return None,
    })
}

/// The mshadow type flag MXNet writes for `dtype`.
pub fn dtype_flag(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => 0,
        DType::F64 => 1,
        DType::F16 => 2,
        DType::U8 => 3,
        DType::I32 => 4,
        DType::I8 => 5,
        DType::I64 => 6,
        DType::Bool => 7,
        DType::BF16 => 12,
    }
}

// ----------------------------------------------------------------------------------------
// Errors

/// The part of a file an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The list magic, reserved word and array count.
    Header,
    /// The record of the array with this index (0 for a single-array blob).
    Array(usize),
    /// The count of the name table.
    NameCount,
    /// The name with this index.
    Name(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Header => f.write_str("list header"),
            Location::Array(index) => write!(f, "array {index}"),
            Location::NameCount => f.write_str("name table"),
            Location::Name(index) => write!(f, "name {index}"),
        }
    }
}

/// Which index array of a sparse record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseAux {
    /// Row ids (row_sparse) or column ids (csr).
    Indices,
    /// Row pointers (csr).
    Indptr,
}

impl fmt::Display for SparseAux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SparseAux::Indices => "indices",
            SparseAux::Indptr => "indptr",
        })
    }
}

/// How a sparse array contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SparseProblem {
    #[error("row_sparse shape {shape:?} and stored shape {stored:?} differ beyond the first axis")]
    RowShapeMismatch {
        shape: Vec<usize>,
        stored: Vec<usize>,
    },
    #[error("csr shape {shape:?} is not 2-D")]
    CsrNotMatrix { shape: Vec<usize> },
    #[error("csr stored shape {stored:?} is not 1-D")]
    CsrStorageNotVector { stored: Vec<usize> },
    #[error("{aux} has shape {found:?}, expected {expected:?}")]
    AuxShape {
        aux: SparseAux,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("row index {row} at position {position} is not below the {rows} rows")]
    RowOutOfRange {
        position: usize,
        row: i64,
        rows: usize,
    },
    #[error("row index {row} at position {position} does not follow {previous} in strictly increasing order")]
    RowsNotIncreasing {
        position: usize,
        previous: i64,
        row: i64,
    },
    #[error("indptr starts at {first}, not 0")]
    IndptrStart { first: i64 },
    #[error("indptr decreases from {previous} to {value} at position {position}")]
    IndptrDecreasing {
        position: usize,
        previous: i64,
        value: i64,
    },
    #[error("indptr ends at {last}, but {nnz} values are stored")]
    IndptrEnd { last: i64, nnz: usize },
    #[error("column index {column} at position {position} is not below the {columns} columns")]
    ColumnOutOfRange {
        position: usize,
        column: i64,
        columns: usize,
    },
}

impl SparseProblem {
    /// The index array and element the problem is at, for problems found in index data.
    fn element(&self) -> Option<(SparseAux, usize)> {
        match *self {
            SparseProblem::RowOutOfRange { position, .. }
            | SparseProblem::RowsNotIncreasing { position, .. }
            | SparseProblem::ColumnOutOfRange { position, .. } => {
                Some((SparseAux::Indices, position))
            }
            SparseProblem::IndptrStart { .. } => Some((SparseAux::Indptr, 0)),
            SparseProblem::IndptrDecreasing { position, .. } => Some((SparseAux::Indptr, position)),
            SparseProblem::IndptrEnd { .. }
            | SparseProblem::RowShapeMismatch { .. }
            | SparseProblem::CsrNotMatrix { .. }
            | SparseProblem::CsrStorageNotVector { .. }
            | SparseProblem::AuxShape { .. } => None,
        }
    }
}

/// What was wrong with a list file or record. Offsets are bytes from the start of the input;
/// `array` is the index of the record (0 in a single-array blob).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("{at}: input ends inside {field} at byte {offset} ({needed} bytes needed, {available} remain)")]
    Truncated {
        at: Location,
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("not an MXNet NDArray list: the magic at byte 0 is {found:#x}, expected 0x112")]
    BadListMagic { found: u64 },
    #[error("{at}: {field} {value} at byte {offset} exceeds the limit of {limit}")]
    ExceedsLimit {
        at: Location,
        field: &'static str,
        value: u64,
        limit: u64,
        offset: usize,
    },
    #[error("{at}: {field} {value} at byte {offset} cannot fit in the {remaining} bytes that follow (each needs at least {min_each})")]
    ExceedsInput {
        at: Location,
        field: &'static str,
        value: u64,
        remaining: usize,
        min_each: usize,
        offset: usize,
    },
    #[error("array {array}: {field} ndim {ndim} at byte {offset} is not in 0..={max} ({version} record)")]
    BadNdim {
        array: usize,
        version: RecordVersion,
        field: &'static str,
        ndim: i64,
        max: u32,
        offset: usize,
    },
    #[error("array {array}: {field} dimension {axis} is {dim} at byte {offset}; dimensions must not be negative ({version} record)")]
    BadDim {
        array: usize,
        version: RecordVersion,
        field: &'static str,
        axis: usize,
        dim: i64,
        offset: usize,
    },
    /// A shape has more elements than the limit allows (0-size dims counted as 1).
    #[error("array {array}: {field} {dims:?} at byte {offset} has {}, over the limit of {limit}", describe_count(.elements))]
    TooManyElements {
        array: usize,
        field: &'static str,
        dims: Vec<u64>,
        /// `None` if the count overflows.
        elements: Option<u64>,
        limit: u64,
        offset: usize,
    },
    #[error(
        "array {array}: unknown type flag {flag} at byte {offset} (MXNet can save 0..=7 and 12)"
    )]
    UnknownDType {
        array: usize,
        flag: i32,
        offset: usize,
    },
    #[error("array {array}: {aux} type {flag}{} at byte {offset} is not supported: MXNet writes only int64 (6) sparse indices", aux_type_note(.flag))]
    UnsupportedAuxType {
        array: usize,
        aux: SparseAux,
        flag: i32,
        offset: usize,
    },
    #[error("array {array}: unknown storage type {stype} at byte {offset} (0 dense, 1 row_sparse, 2 csr)")]
    UnknownStorageType {
        array: usize,
        stype: i32,
        offset: usize,
    },
    #[error("array {array}: storage type {stype} at byte {offset} in a V3 (numpy-shape) record, which must be dense")]
    SparseInNumpyRecord {
        array: usize,
        stype: i32,
        offset: usize,
    },
    #[error("array {array}: inconsistent sparse array at byte {offset}: {problem}")]
    Sparse {
        array: usize,
        offset: usize,
        problem: SparseProblem,
    },
    #[error("inconsistent sparse array: {0}")]
    InconsistentSparse(SparseProblem),
    #[error("name {index} is not UTF-8 at byte {offset}: {source}")]
    InvalidName {
        index: usize,
        offset: usize,
        source: std::str::Utf8Error,
    },
    #[error("name {second} at byte {offset}, {name:?}, repeats name {first}")]
    DuplicateName {
        name: String,
        first: usize,
        second: usize,
        offset: usize,
    },
    #[error(
        "name table at byte {offset} has {names} names for {arrays} arrays (must be 0 or {arrays})"
    )]
    NameCountMismatch {
        names: u64,
        arrays: usize,
        offset: usize,
    },
    #[error("{count} unexpected bytes after the end of the data at byte {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("the file holds a list of {arrays} unnamed arrays, not named parameters")]
    SavedAsList { arrays: usize },
    #[error("a dense {dtype} array of shape {shape:?} does not fit in memory")]
    DenseTooLarge { shape: Vec<usize>, dtype: DType },
}

fn describe_count(elements: &Option<u64>) -> String {
    match *elements {
        Some(count) => format!("{count} elements"),
        None => "more than 2^64 elements".to_owned(),
    }
}

fn aux_type_note(flag: &i32) -> &'static str {
    if *flag == AUX_TYPE_INT32 {
        " (int32, which MXNet 1.9.1 loads but then fails on at every use)"
    } else {
        ""
    }
}

/// Attaches the location to a truncation from [`Reader`].
trait At<T> {
    fn at(self, at: Location) -> Result<T, ParamsError>;
}

impl<T> At<T> for Result<T, Truncated> {
    fn at(self, at: Location) -> Result<T, ParamsError> {
        self.map_err(|t| ParamsError::Truncated {
            at,
            field: t.field,
            offset: t.offset,
            needed: t.needed,
            available: t.available,
        })
    }
}

// ----------------------------------------------------------------------------------------
// Writing

/// Why arrays cannot be written as a list file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsWriteError {
    /// A V2 record with `ndim == 0` is MXNet's empty ("none") slot, and only numpy-shape
    /// mode (V3, which legacy-mode MXNet refuses to load) has 0-d arrays.
    #[error("array {name:?} is 0-d: MXNet's legacy-shape records have no 0-d arrays (an empty shape is a none slot)")]
    Scalar { name: String },
    #[error("array {name:?} has {ndim} dims; MXNet records hold at most {MAX_WRITE_NDIM}")]
    TooManyDims { name: String, ndim: usize },
    #[error("the name {name:?} appears twice; MXNet's loaders keep only one of them")]
    DuplicateName { name: String },
    #[error("the file would be larger than this machine can address")]
    TooLarge,
    #[error("out of memory reserving {bytes} bytes for the .params file")]
    OutOfMemory { bytes: usize },
}

/// The most dims a written record has: what the reader accepts (MXNet has no limit of its
/// own, but nothing it writes comes near).
pub const MAX_WRITE_NDIM: usize = 32;

/// Writes named dense arrays as an MXNet list file, exactly as MXNet 1.9.1's `mx.nd.save`
/// writes a dict of CPU arrays in its default (legacy-shape) mode: the list magic, a zero
/// reserved word, the count, one V2 record per array (magic, dense storage type, shape as
/// an `i32` ndim and `i64` dims, context `cpu(0)`, type flag, the little-endian data), then
/// the names in the same order (§1.2–1.4 of the format reference).
///
/// [`read_params`] reads the result back to the same arrays and names. The bytes equal
/// MXNet's own for the same arrays (tests compare them with files MXNet wrote).
pub fn write_params<N: AsRef<str>>(arrays: &[(N, &Tensor)]) -> Result<Vec<u8>, ParamsWriteError> {
    let mut seen = std::collections::HashSet::new();
    // Header, and the name count.
    let mut total: usize = 8 * 4;
    for (name, tensor) in arrays {
        let name = name.as_ref();
        if !seen.insert(name) {
            return Err(ParamsWriteError::DuplicateName { name: name.into() });
        }
        let ndim = tensor.shape().len();
        if ndim == 0 {
            return Err(ParamsWriteError::Scalar { name: name.into() });
        }
        if ndim > MAX_WRITE_NDIM {
            return Err(ParamsWriteError::TooManyDims {
                name: name.into(),
                ndim,
            });
        }
        // magic, stype, ndim, dims, dev_type, dev_id, type flag, data; name length, name.
        total = ndim
            .checked_mul(8)
            .and_then(|dims| dims.checked_add(4 * 6 + 8))
            .and_then(|record| record.checked_add(tensor.bytes().len()))
            .and_then(|record| record.checked_add(name.len()))
            .and_then(|record| total.checked_add(record))
            .ok_or(ParamsWriteError::TooLarge)?;
    }
    let mut out = Vec::new();
    out.try_reserve_exact(total)
        .map_err(|_| ParamsWriteError::OutOfMemory { bytes: total })?;
    let count = |n: usize| u64::try_from(n).map_err(|_| ParamsWriteError::TooLarge);
    out.extend_from_slice(&LIST_MAGIC.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&count(arrays.len())?.to_le_bytes());
    for (_, tensor) in arrays {
        out.extend_from_slice(&V2_MAGIC.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes()); // dense
        let ndim = i32::try_from(tensor.shape().len()).map_err(|_| ParamsWriteError::TooLarge)?;
        out.extend_from_slice(&ndim.to_le_bytes());
        for &d in tensor.shape() {
            let d = i64::try_from(d).map_err(|_| ParamsWriteError::TooLarge)?;
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&Context::CPU.dev_type.to_le_bytes());
        out.extend_from_slice(&Context::CPU.dev_id.to_le_bytes());
        out.extend_from_slice(&dtype_flag(tensor.dtype()).to_le_bytes());
        // A tensor's bytes are already little-endian, as MXNet writes them.
        out.extend_from_slice(tensor.bytes());
    }
    out.extend_from_slice(&count(arrays.len())?.to_le_bytes());
    for (name, _) in arrays {
        let name = name.as_ref();
        out.extend_from_slice(&count(name.len())?.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------------
// Reading

/// Reads a whole list file (`.params`, `mx.nd.save`, `mx.npx.save`).
///
/// Strict: bytes after the name table are rejected ([`ParamsError::TrailingBytes`]), although
/// MXNet ignores them.
pub fn read_params(bytes: &[u8], limits: &ParamsLimits) -> Result<ParamsFile, ParamsError> {
    let mut r = Reader::new(bytes);
    let magic = r.u64_le("list magic").at(Location::Header)?;
    if magic != LIST_MAGIC {
        return Err(ParamsError::BadListMagic { found: magic });
    }
    // Written as 0 and never checked by MXNet; ignored here too.
    r.u64_le("reserved").at(Location::Header)?;
    let count = read_count(
        &mut r,
        Location::Header,
        "array count",
        limits.max_arrays,
        MIN_RECORD_LEN,
    )?;

    // Grown as records are actually read, never reserved from the count: an NdArray is
    // larger in memory than the smallest record on disk.
    let mut arrays = Vec::new();
    for index in 0..count {
        arrays.push(read_record(&mut r, index, limits)?);
    }
    let names = read_names(&mut r, arrays.len(), limits)?;
    reject_trailing(&r)?;
    Ok(ParamsFile { arrays, names })
}

/// Reads one record with no list header: what `MXNDArraySaveRawBytes` and
/// `NDArray.__getstate__()['handle']` produce (§1.9). Errors name it array 0.
///
/// Strict: bytes after the record are rejected ([`ParamsError::TrailingBytes`]).
pub fn read_ndarray_blob(bytes: &[u8], limits: &ParamsLimits) -> Result<NdArray, ParamsError> {
    let mut r = Reader::new(bytes);
    let array = read_record(&mut r, 0, limits)?;
    reject_trailing(&r)?;
    Ok(array)
}

fn reject_trailing(r: &Reader<'_>) -> Result<(), ParamsError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(ParamsError::TrailingBytes {
            offset: r.offset(),
            count: r.remaining(),
        })
    }
}

/// Reads a `u64` count of items that each take at least `min_each` bytes, and checks it
/// against `limit` and the bytes that follow before anything is sized from it.
fn read_count(
    r: &mut Reader<'_>,
    at: Location,
    field: &'static str,
    limit: u64,
    min_each: usize,
) -> Result<usize, ParamsError> {
    let offset = r.offset();
    let value = r.u64_le(field).at(at)?;
    if value > limit {
        return Err(ParamsError::ExceedsLimit {
            at,
            field,
            value,
            limit,
            offset,
        });
    }
    let fits = r.remaining() / min_each;
    match usize::try_from(value) {
        Ok(count) if count <= fits => Ok(count),
        _ => Err(ParamsError::ExceedsInput {
            at,
            field,
            value,
            remaining: r.remaining(),
            min_each,
            offset,
        }),
    }
}

fn read_names(
    r: &mut Reader<'_>,
    arrays: usize,
    limits: &ParamsLimits,
) -> Result<Option<Vec<String>>, ParamsError> {
    let offset = r.offset();
    let count = r.u64_le("name count").at(Location::NameCount)?;
    if count == 0 {
        return Ok(None);
    }
    if usize::try_from(count) != Ok(arrays) {
        return Err(ParamsError::NameCountMismatch {
            names: count,
            arrays,
            offset,
        });
    }
    if arrays > r.remaining() / MIN_NAME_LEN {
        return Err(ParamsError::ExceedsInput {
            at: Location::NameCount,
            field: "name count",
            value: count,
            remaining: r.remaining(),
            min_each: MIN_NAME_LEN,
            offset,
        });
    }

    let mut names = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for index in 0..arrays {
        let at = Location::Name(index);
        let offset = r.offset();
        let len = r.u64_le("name length").at(at)?;
        if len > limits.max_name_len {
            return Err(ParamsError::ExceedsLimit {
                at,
                field: "name length",
                value: len,
                limit: limits.max_name_len,
                offset,
            });
        }
        // A length beyond usize cannot be in the input either; take() reports it.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let bytes_offset = r.offset();
        let raw = r.take("name bytes", len).at(at)?;
        let name = std::str::from_utf8(raw).map_err(|source| ParamsError::InvalidName {
            index,
            offset: bytes_offset + source.valid_up_to(),
            source,
        })?;
        if let Some(&first) = seen.get(name) {
            return Err(ParamsError::DuplicateName {
                name: name.to_owned(),
                first,
                second: index,
                offset,
            });
        }
        seen.insert(name, index);
        names.push(name.to_owned());
    }
    Ok(Some(names))
}

/// What a record needs to know while it is read.
struct RecordReader<'l> {
    array: usize,
    version: RecordVersion,
    limits: &'l ParamsLimits,
}

/// A shape field of a record, naming its parts for errors.
#[derive(Clone, Copy)]
enum ShapeField {
    Shape,
    Storage,
    Aux(SparseAux),
}

impl ShapeField {
    fn name(self) -> &'static str {
        match self {
            ShapeField::Shape => "shape",
            ShapeField::Storage => "storage shape",
            ShapeField::Aux(SparseAux::Indices) => "indices shape",
            ShapeField::Aux(SparseAux::Indptr) => "indptr shape",
        }
    }

    fn ndim_field(self) -> &'static str {
        match self {
            ShapeField::Shape => "shape ndim",
            ShapeField::Storage => "storage shape ndim",
            ShapeField::Aux(SparseAux::Indices) => "indices shape ndim",
            ShapeField::Aux(SparseAux::Indptr) => "indptr shape ndim",
        }
    }

    fn dims_field(self) -> &'static str {
        match self {
            ShapeField::Shape => "shape dims",
            ShapeField::Storage => "storage shape dims",
            ShapeField::Aux(SparseAux::Indices) => "indices shape dims",
            ShapeField::Aux(SparseAux::Indptr) => "indptr shape dims",
        }
    }
}

/// A shape as read, with the offset it started at.
struct ReadShape {
    /// `None`: the V3 "unknown shape" none sentinel.
    dims: Option<Vec<usize>>,
    offset: usize,
}

/// The storage type of a V2/V3 record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Storage {
    Dense,
    RowSparse,
    Csr,
}

fn read_record(
    r: &mut Reader<'_>,
    array: usize,
    limits: &ParamsLimits,
) -> Result<NdArray, ParamsError> {
    let at = Location::Array(array);
    let word_offset = r.offset();
    let word = r.u32_le("record magic").at(at)?;
    let version = match word {
        V3_MAGIC => RecordVersion::V3,
        V2_MAGIC => RecordVersion::V2,
        V1_MAGIC => RecordVersion::V1,
        _ => RecordVersion::V0,
    };
    let record = RecordReader {
        array,
        version,
        limits,
    };
    match version {
        RecordVersion::V2 | RecordVersion::V3 => record.read_current(r),
        RecordVersion::V1 => {
            let shape = record.read_shape(r, ShapeField::Shape)?;
            record.read_legacy_body(r, shape)
        }
        RecordVersion::V0 => {
            // The word is the ndim itself; dims follow as u32.
            let shape = record.read_v0_shape(r, word, word_offset)?;
            record.read_legacy_body(r, shape)
        }
    }
}

impl RecordReader<'_> {
    fn at(&self) -> Location {
        Location::Array(self.array)
    }

    fn none_slot(&self) -> NdArray {
        NdArray {
            version: self.version,
            context: Context::CPU,
            value: None,
        }
    }

    /// V2 and V3: storage type, shapes, context, type, aux metadata, data, aux data.
    fn read_current(&self, r: &mut Reader<'_>) -> Result<NdArray, ParamsError> {
        let at = self.at();
        let stype_offset = r.offset();
        let stype = r.i32_le("storage type").at(at)?;
        let storage = match stype {
            0 => Storage::Dense,
            1 => Storage::RowSparse,
            2 => Storage::Csr,
            _ => {
                return Err(ParamsError::UnknownStorageType {
                    array: self.array,
                    stype,
                    offset: stype_offset,
                })
            }
        };
        if self.version == RecordVersion::V3 && storage != Storage::Dense {
            return Err(ParamsError::SparseInNumpyRecord {
                array: self.array,
                stype,
                offset: stype_offset,
            });
        }
        let stored = match storage {
            Storage::Dense => None,
            Storage::RowSparse | Storage::Csr => Some(self.read_shape(r, ShapeField::Storage)?),
        };
        let shape = self.read_shape(r, ShapeField::Shape)?;
        let Some(dims) = shape.dims else {
            return Ok(self.none_slot());
        };
        if dims.is_empty() && self.version == RecordVersion::V2 {
            return Ok(self.none_slot());
        }
        let context = read_context(r, at)?;
        let dtype = self.read_dtype(r)?;
        let value = match (storage, stored) {
            (Storage::RowSparse, Some(stored)) => self.read_row_sparse(r, dims, stored, dtype)?,
            (Storage::Csr, Some(stored)) => self.read_csr(r, dims, shape.offset, stored, dtype)?,
            _ => StoredArray::Dense(self.read_data(r, dims, shape.offset, dtype, "data")?),
        };
        Ok(NdArray {
            version: self.version,
            context,
            value: Some(value),
        })
    }

    /// V0 and V1 after the shape: context, type flag, data; always dense.
    fn read_legacy_body(
        &self,
        r: &mut Reader<'_>,
        shape: ReadShape,
    ) -> Result<NdArray, ParamsError> {
        // Old MXNet wrote an empty shape alone for a none slot. (1.9.1 misreads it as a
        // scalar and reads on; follow the writer.)
        let dims = match shape.dims {
            Some(dims) if !dims.is_empty() => dims,
            _ => return Ok(self.none_slot()),
        };
        let context = read_context(r, self.at())?;
        let dtype = self.read_dtype(r)?;
        let tensor = self.read_data(r, dims, shape.offset, dtype, "data")?;
        Ok(NdArray {
            version: self.version,
            context,
            value: Some(StoredArray::Dense(tensor)),
        })
    }

    /// A TShape of V1–V3: `i32 ndim`, then `ndim` × `i64` dims.
    fn read_shape(&self, r: &mut Reader<'_>, field: ShapeField) -> Result<ReadShape, ParamsError> {
        let offset = r.offset();
        let ndim = r.i32_le(field.ndim_field()).at(self.at())?;
        // Only numpy-shape records use −1 ("unknown"), and only the logical shape can be
        // unknown, since V3 records are dense.
        let unknown_allowed =
            self.version == RecordVersion::V3 && matches!(field, ShapeField::Shape);
        if ndim == -1 && unknown_allowed {
            return Ok(ReadShape { dims: None, offset });
        }
        let ndim = self.check_ndim(i64::from(ndim), field, offset)?;
        let raw = r
            .take(field.dims_field(), ndim.saturating_mul(8))
            .at(self.at())?;
        let mut dims = Vec::with_capacity(ndim);
        let mut unknown = false;
        for (axis, bytes) in raw.as_chunks::<8>().0.iter().enumerate() {
            let dim = i64::from_le_bytes(*bytes);
            if dim == -1 && unknown_allowed {
                unknown = true;
                continue;
            }
            let dim = u64::try_from(dim).map_err(|_| ParamsError::BadDim {
                array: self.array,
                version: self.version,
                field: field.name(),
                axis,
                dim,
                offset: offset + 4 + axis * 8,
            })?;
            dims.push(dim);
        }
        if unknown {
            return Ok(ReadShape { dims: None, offset });
        }
        Ok(ReadShape {
            dims: Some(self.to_usize_dims(dims, field, offset)?),
            offset,
        })
    }

    /// A V0 shape: the record's first word was `ndim`, and `u32` dims follow.
    fn read_v0_shape(
        &self,
        r: &mut Reader<'_>,
        ndim: u32,
        offset: usize,
    ) -> Result<ReadShape, ParamsError> {
        let field = ShapeField::Shape;
        let ndim = self.check_ndim(i64::from(ndim), field, offset)?;
        let raw = r
            .take(field.dims_field(), ndim.saturating_mul(4))
            .at(self.at())?;
        let dims = raw
            .as_chunks::<4>()
            .0
            .iter()
            .map(|bytes| u64::from(u32::from_le_bytes(*bytes)))
            .collect();
        Ok(ReadShape {
            dims: Some(self.to_usize_dims(dims, field, offset)?),
            offset,
        })
    }

    fn check_ndim(
        &self,
        ndim: i64,
        field: ShapeField,
        offset: usize,
    ) -> Result<usize, ParamsError> {
        let max = self.limits.max_ndim;
        match usize::try_from(ndim) {
            Ok(n) if ndim <= i64::from(max) => Ok(n),
            _ => Err(ParamsError::BadNdim {
                array: self.array,
                version: self.version,
                field: field.name(),
                ndim,
                max,
                offset,
            }),
        }
    }

    /// Checks the element count of `dims` against the limit and converts them to `usize`.
    ///
    /// 0-size dims count as 1 here: `(0, 2^40, 2^40)` holds nothing, but a stride computed
    /// from it downstream would still overflow, and no real parameter has such a shape.
    fn to_usize_dims(
        &self,
        dims: Vec<u64>,
        field: ShapeField,
        offset: usize,
    ) -> Result<Vec<usize>, ParamsError> {
        let limit = self.limits.max_elements;
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d.max(1)));
        let converted: Option<Vec<usize>> = dims.iter().map(|&d| usize::try_from(d).ok()).collect();
        match (elements, converted) {
            (Some(count), Some(converted))
                if count <= limit && element_count(&converted).is_some() =>
            {
                Ok(converted)
            }
            (elements, _) => Err(ParamsError::TooManyElements {
                array: self.array,
                field: field.name(),
                dims,
                elements,
                limit,
                offset,
            }),
        }
    }

    fn read_dtype(&self, r: &mut Reader<'_>) -> Result<DType, ParamsError> {
        let offset = r.offset();
        let flag = r.i32_le("type flag").at(self.at())?;
        dtype_from_flag(flag).ok_or(ParamsError::UnknownDType {
            array: self.array,
            flag,
            offset,
        })
    }

    /// Reads the `prod(dims) × itemsize` bytes of a buffer. The byte count was bounded when
    /// the shape was read; `take` bounds it by the input before anything is copied.
    fn read_data(
        &self,
        r: &mut Reader<'_>,
        dims: Vec<usize>,
        shape_offset: usize,
        dtype: DType,
        field: &'static str,
    ) -> Result<Tensor, ParamsError> {
        let too_large = |dims: &[usize]| ParamsError::TooManyElements {
            array: self.array,
            field,
            dims: dims.iter().map(|&d| d as u64).collect(),
            elements: None,
            limit: self.limits.max_elements,
            offset: shape_offset,
        };
        let len = byte_len(&dims, dtype).ok_or_else(|| too_large(&dims))?;
        let raw = r.take(field, len).at(self.at())?;
        // Cannot fail: the length was computed from the same shape just above.
        Tensor::from_bytes(dtype, dims, raw.to_vec()).map_err(|error| match error {
            TensorError::ShapeOverflow { shape } | TensorError::LengthMismatch { shape, .. } => {
                too_large(&shape)
            }
            TensorError::OutsideBuffer { .. } => too_large(&[]),
        })
    }

    /// An aux type and shape (the metadata that precedes the data).
    fn read_aux_meta(&self, r: &mut Reader<'_>, aux: SparseAux) -> Result<ReadShape, ParamsError> {
        let offset = r.offset();
        let flag = r.i32_le("aux type").at(self.at())?;
        if flag != AUX_TYPE_INT64 {
            return Err(ParamsError::UnsupportedAuxType {
                array: self.array,
                aux,
                flag,
                offset,
            });
        }
        self.read_shape(r, ShapeField::Aux(aux))
    }

    /// Reads `count` little-endian `i64`s (an aux data block) and the offset they start at.
    fn read_aux_data(
        &self,
        r: &mut Reader<'_>,
        aux: SparseAux,
        count: usize,
    ) -> Result<(Vec<i64>, usize), ParamsError> {
        let field = match aux {
            SparseAux::Indices => "indices data",
            SparseAux::Indptr => "indptr data",
        };
        let offset = r.offset();
        // count came from a shape whose element count is within the limit, so the
        // product only saturates on a 32-bit target, where take() then refuses it.
        let raw = r.take(field, count.saturating_mul(8)).at(self.at())?;
        let values = raw
            .as_chunks::<8>()
            .0
            .iter()
            .map(|bytes| i64::from_le_bytes(*bytes))
            .collect();
        Ok((values, offset))
    }

    fn sparse_error(&self, offset: usize, problem: SparseProblem) -> ParamsError {
        ParamsError::Sparse {
            array: self.array,
            offset,
            problem,
        }
    }

    /// Locates a problem found in index data, given where each aux block starts; a problem
    /// that is not about one element is placed at `otherwise`.
    fn data_problem(
        &self,
        problem: SparseProblem,
        indices_at: usize,
        indptr_at: usize,
        otherwise: usize,
    ) -> ParamsError {
        let offset = match problem.element() {
            Some((SparseAux::Indices, position)) => indices_at + position * 8,
            Some((SparseAux::Indptr, position)) => indptr_at + position * 8,
            None => otherwise,
        };
        self.sparse_error(offset, problem)
    }

    fn read_row_sparse(
        &self,
        r: &mut Reader<'_>,
        shape: Vec<usize>,
        stored: ReadShape,
        dtype: DType,
    ) -> Result<StoredArray, ParamsError> {
        let stored_dims = stored.dims.unwrap_or_default();
        let indices_meta = self.read_aux_meta(r, SparseAux::Indices)?;
        let indices_shape = indices_meta.dims.unwrap_or_default();

        // Everything about the shapes is checked before any data is read. (Each shape's
        // element count, the logical one included, was bounded when it was read.)
        let rows_stored = check_row_sparse_shapes(&shape, &stored_dims)
            .map_err(|problem| self.sparse_error(stored.offset, problem))?;
        if indices_shape != [rows_stored] {
            return Err(self.sparse_error(
                indices_meta.offset,
                SparseProblem::AuxShape {
                    aux: SparseAux::Indices,
                    expected: vec![rows_stored],
                    found: indices_shape,
                },
            ));
        }

        let values = self.read_data(r, stored_dims, stored.offset, dtype, "data")?;
        let (indices, indices_at) = self.read_aux_data(r, SparseAux::Indices, rows_stored)?;
        let rows = shape.first().copied().unwrap_or(0);
        check_row_indices(&indices, rows)
            .map_err(|problem| self.data_problem(problem, indices_at, indices_at, indices_at))?;
        Ok(StoredArray::RowSparse {
            shape,
            indices,
            values,
        })
    }

    fn read_csr(
        &self,
        r: &mut Reader<'_>,
        shape: Vec<usize>,
        shape_offset: usize,
        stored: ReadShape,
        dtype: DType,
    ) -> Result<StoredArray, ParamsError> {
        let stored_dims = stored.dims.unwrap_or_default();
        // On disk: both aux metadata first (indptr, then indices), then the values, then
        // indptr data, then indices data.
        let indptr_meta = self.read_aux_meta(r, SparseAux::Indptr)?;
        let indices_meta = self.read_aux_meta(r, SparseAux::Indices)?;

        let (rows, columns) = check_csr_shapes(&shape, &stored_dims).map_err(|problem| {
            let offset = match problem {
                SparseProblem::CsrNotMatrix { .. } => shape_offset,
                _ => stored.offset,
            };
            self.sparse_error(offset, problem)
        })?;
        let nnz = stored_dims.first().copied().unwrap_or(0);
        // rows ≤ max_elements, so this never saturates in practice; if it did, the indptr
        // shape check below would fail rather than wrap.
        let pointers = rows.saturating_add(1);
        for (meta, aux, expected) in [
            (&indptr_meta, SparseAux::Indptr, pointers),
            (&indices_meta, SparseAux::Indices, nnz),
        ] {
            let found = meta.dims.as_deref().unwrap_or_default();
            if found != [expected] {
                return Err(self.sparse_error(
                    meta.offset,
                    SparseProblem::AuxShape {
                        aux,
                        expected: vec![expected],
                        found: found.to_vec(),
                    },
                ));
            }
        }

        let values = self.read_data(r, stored_dims, stored.offset, dtype, "data")?;
        let (indptr, indptr_at) = self.read_aux_data(r, SparseAux::Indptr, pointers)?;
        let (indices, indices_at) = self.read_aux_data(r, SparseAux::Indices, nnz)?;
        check_csr_indices(&indptr, &indices, rows, columns, nnz).map_err(|problem| {
            // The last indptr entry is the one that disagrees with nnz.
            let last_indptr_at = indptr_at + rows * 8;
            self.data_problem(problem, indices_at, indptr_at, last_indptr_at)
        })?;
        Ok(StoredArray::Csr {
            shape,
            indptr,
            indices,
            values,
        })
    }
}

fn read_context(r: &mut Reader<'_>, at: Location) -> Result<Context, ParamsError> {
    let dev_type = r.i32_le("context dev_type").at(at)?;
    let dev_id = r.i32_le("context dev_id").at(at)?;
    Ok(Context { dev_type, dev_id })
}

// ----------------------------------------------------------------------------------------
// Sparse consistency (§1.11 item 4), shared by the reader and `to_dense`

/// row_sparse: the stored block is `(stored_rows, shape[1..])`; returns `stored_rows`.
fn check_row_sparse_shapes(shape: &[usize], stored: &[usize]) -> Result<usize, SparseProblem> {
    let (Some((_, row_shape)), Some((&stored_rows, stored_row_shape))) =
        (shape.split_first(), stored.split_first())
    else {
        return Err(SparseProblem::RowShapeMismatch {
            shape: shape.to_vec(),
            stored: stored.to_vec(),
        });
    };
    if row_shape != stored_row_shape {
        return Err(SparseProblem::RowShapeMismatch {
            shape: shape.to_vec(),
            stored: stored.to_vec(),
        });
    }
    Ok(stored_rows)
}

/// row_sparse: row ids strictly increasing and below `rows`.
fn check_row_indices(indices: &[i64], rows: usize) -> Result<(), SparseProblem> {
    let mut previous: Option<i64> = None;
    for (position, &row) in indices.iter().enumerate() {
        if usize::try_from(row).map_or(true, |r| r >= rows) {
            return Err(SparseProblem::RowOutOfRange {
                position,
                row,
                rows,
            });
        }
        if let Some(previous) = previous.filter(|&p| p >= row) {
            return Err(SparseProblem::RowsNotIncreasing {
                position,
                previous,
                row,
            });
        }
        previous = Some(row);
    }
    Ok(())
}

/// csr: a 2-D shape and a 1-D stored block; returns (rows, columns).
fn check_csr_shapes(shape: &[usize], stored: &[usize]) -> Result<(usize, usize), SparseProblem> {
    let &[rows, columns] = shape else {
        return Err(SparseProblem::CsrNotMatrix {
            shape: shape.to_vec(),
        });
    };
    if stored.len() != 1 {
        return Err(SparseProblem::CsrStorageNotVector {
            stored: stored.to_vec(),
        });
    }
    Ok((rows, columns))
}

/// csr: `indptr` has `rows + 1` entries from 0 up to `nnz` without decreasing, and there
/// are `nnz` column ids, each below `columns`.
fn check_csr_indices(
    indptr: &[i64],
    indices: &[i64],
    rows: usize,
    columns: usize,
    nnz: usize,
) -> Result<(), SparseProblem> {
    if Some(indptr.len()) != rows.checked_add(1) {
        return Err(SparseProblem::AuxShape {
            aux: SparseAux::Indptr,
            expected: vec![rows.saturating_add(1)],
            found: vec![indptr.len()],
        });
    }
    if indices.len() != nnz {
        return Err(SparseProblem::AuxShape {
            aux: SparseAux::Indices,
            expected: vec![nnz],
            found: vec![indices.len()],
        });
    }
    let first = indptr.first().copied().unwrap_or(0);
    if first != 0 {
        return Err(SparseProblem::IndptrStart { first });
    }
    for (position, pair) in indptr.windows(2).enumerate() {
        if let &[previous, value] = pair {
            if value < previous {
                return Err(SparseProblem::IndptrDecreasing {
                    position: position + 1,
                    previous,
                    value,
                });
            }
        }
    }
    let last = indptr.last().copied().unwrap_or(0);
    if usize::try_from(last) != Ok(nnz) {
        return Err(SparseProblem::IndptrEnd { last, nnz });
    }
    for (position, &column) in indices.iter().enumerate() {
        if usize::try_from(column).map_or(true, |c| c >= columns) {
            return Err(SparseProblem::ColumnOutOfRange {
                position,
                column,
                columns,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_only_on_exact_prefixes() {
        assert_eq!(
            split_key("arg:conv0_weight"),
            (ParamKind::Arg, "conv0_weight")
        );
        assert_eq!(
            split_key("aux:bn_moving_var"),
            (ParamKind::Aux, "bn_moving_var")
        );
        assert_eq!(
            split_key("features.3.gamma"),
            (ParamKind::Plain, "features.3.gamma")
        );
        assert_eq!(split_key("arg"), (ParamKind::Plain, "arg"));
        assert_eq!(split_key("Arg:x"), (ParamKind::Plain, "Arg:x"));
        assert_eq!(split_key("other:x"), (ParamKind::Plain, "other:x"));
        assert_eq!(split_key("arg:"), (ParamKind::Arg, ""));
    }

    #[test]
    fn type_flags_round_trip_and_unsaveable_flags_are_refused() {
        for dtype in DType::ALL {
            assert_eq!(dtype_from_flag(dtype_flag(dtype)), Some(dtype));
        }
        for flag in [-1, 8, 9, 10, 11, 13, 99] {
            assert_eq!(dtype_from_flag(flag), None);
        }
    }

    #[test]
    fn contexts_display_like_mxnet() {
        assert_eq!(
            Context {
                dev_type: 1,
                dev_id: 3
            }
            .to_string(),
            "cpu(3)"
        );
        assert_eq!(
            Context {
                dev_type: 5,
                dev_id: 0
            }
            .to_string(),
            "cpu_shared(0)"
        );
        assert_eq!(
            Context {
                dev_type: 99,
                dev_id: 1
            }
            .to_string(),
            "device type 99(1)"
        );
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn csr_to_dense_keeps_the_last_duplicate_like_mxnet() -> TestResult {
        let values = Tensor::from_f32(vec![2], &[1.0, 2.0])?;
        let csr = StoredArray::Csr {
            shape: vec![1, 2],
            indptr: vec![0, 2],
            indices: vec![1, 1],
            values,
        };
        assert_eq!(csr.to_dense()?.to_f32_vec(), vec![0.0, 2.0]);
        Ok(())
    }

    #[test]
    fn to_dense_rechecks_hand_built_arrays() -> TestResult {
        let values = Tensor::from_f32(vec![1, 2], &[1.0, 2.0])?;
        let rsp = StoredArray::RowSparse {
            shape: vec![2, 2],
            indices: vec![5],
            values,
        };
        assert!(matches!(
            rsp.to_dense(),
            Err(ParamsError::InconsistentSparse(
                SparseProblem::RowOutOfRange { row: 5, .. }
            ))
        ));
        Ok(())
    }
}
