//! A writer for MXNet list files and records, and the corpus of malformed inputs built
//! with it.
//!
//! Shared by the test modules `params_malformed` (which checks each error),
//! `params_crafted` and `import_errors`, and by the `params_alloc` binary (which checks
//! what parsing them allocates).

// Each test module uses a different part of this file.
#![allow(dead_code)]

use ward_mxnet::params::{ParamsError, RecordVersion, SparseProblem};

pub const LIST_MAGIC: u64 = 0x112;
pub const V1_MAGIC: u32 = 0xF993_FAC8;
pub const V2_MAGIC: u32 = 0xF993_FAC9;
pub const V3_MAGIC: u32 = 0xF993_FACA;

pub const F32: i32 = 0;
pub const F64: i32 = 1;
pub const I64: i32 = 6;
pub const INT64_AUX: i32 = 6;

/// Little-endian bytes, field by field.
#[derive(Clone, Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn new() -> Self {
        Bytes(Vec::new())
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    /// A TShape: i32 ndim and i64 dims.
    pub fn shape(self, dims: &[i64]) -> Self {
        let ndim = i32::try_from(dims.len()).unwrap_or(i32::MAX);
        dims.iter().fold(self.i32(ndim), |b, &d| b.i64(d))
    }
    /// Context cpu(0) and a type flag.
    pub fn cpu_and_type(self, flag: i32) -> Self {
        self.i32(1).i32(0).i32(flag)
    }
    pub fn done(self) -> Vec<u8> {
        self.0
    }
}

pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn i64_bytes(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A dense V2 record (V3 with `magic = V3_MAGIC`).
pub fn dense(magic: u32, shape: &[i64], flag: i32, data: &[u8]) -> Vec<u8> {
    Bytes::new()
        .u32(magic)
        .i32(0)
        .shape(shape)
        .cpu_and_type(flag)
        .raw(data)
        .done()
}

pub fn v2_f32(shape: &[i64], values: &[f32]) -> Vec<u8> {
    dense(V2_MAGIC, shape, F32, &f32_bytes(values))
}

/// A legacy V1 record: magic, TShape, context, type flag, data.
pub fn v1(shape: &[i64], flag: i32, data: &[u8]) -> Vec<u8> {
    Bytes::new()
        .u32(V1_MAGIC)
        .shape(shape)
        .cpu_and_type(flag)
        .raw(data)
        .done()
}

/// A legacy V0 record: u32 ndim, u32 dims, context, type flag, data.
pub fn v0(shape: &[u32], flag: i32, data: &[u8]) -> Vec<u8> {
    let ndim = u32::try_from(shape.len()).unwrap_or(u32::MAX);
    let b = shape.iter().fold(Bytes::new().u32(ndim), |b, &d| b.u32(d));
    b.cpu_and_type(flag).raw(data).done()
}

/// A row_sparse V2 record with f32 values and int64 indices.
pub fn row_sparse(shape: &[i64], stored: &[i64], values: &[f32], indices: &[i64]) -> Vec<u8> {
    row_sparse_with(
        shape,
        stored,
        INT64_AUX,
        &[indices.len() as i64],
        values,
        indices,
    )
}

pub fn row_sparse_with(
    shape: &[i64],
    stored: &[i64],
    aux_type: i32,
    aux_shape: &[i64],
    values: &[f32],
    indices: &[i64],
) -> Vec<u8> {
    Bytes::new()
        .u32(V2_MAGIC)
        .i32(1)
        .shape(stored)
        .shape(shape)
        .cpu_and_type(F32)
        .i32(aux_type)
        .shape(aux_shape)
        .raw(&f32_bytes(values))
        .raw(&i64_bytes(indices))
        .done()
}

/// A csr V2 record with f32 values: aux metadata for indptr then indices, then values,
/// indptr data and indices data.
pub fn csr(shape: &[i64], values: &[f32], indptr: &[i64], indices: &[i64]) -> Vec<u8> {
    let nnz = values.len() as i64;
    csr_with(
        shape,
        &[nnz],
        &[indptr.len() as i64],
        &[indices.len() as i64],
        values,
        indptr,
        indices,
    )
}

pub fn csr_with(
    shape: &[i64],
    stored: &[i64],
    indptr_shape: &[i64],
    indices_shape: &[i64],
    values: &[f32],
    indptr: &[i64],
    indices: &[i64],
) -> Vec<u8> {
    Bytes::new()
        .u32(V2_MAGIC)
        .i32(2)
        .shape(stored)
        .shape(shape)
        .cpu_and_type(F32)
        .i32(INT64_AUX)
        .shape(indptr_shape)
        .i32(INT64_AUX)
        .shape(indices_shape)
        .raw(&f32_bytes(values))
        .raw(&i64_bytes(indptr))
        .raw(&i64_bytes(indices))
        .done()
}

/// A list file of `records`, named if `names` is given.
pub fn list(records: &[Vec<u8>], names: Option<&[&[u8]]>) -> Vec<u8> {
    let mut b = Bytes::new()
        .u64(LIST_MAGIC)
        .u64(0)
        .u64(records.len() as u64);
    for record in records {
        b = b.raw(record);
    }
    let names = names.unwrap_or(&[]);
    b = b.u64(names.len() as u64);
    for name in names {
        b = b.u64(name.len() as u64).raw(name);
    }
    b.done()
}

/// Valid inputs whose every strict prefix must be refused.
pub fn valid_lists() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "dense dict",
            list(
                &[
                    v2_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]),
                    dense(V2_MAGIC, &[3], I64, &i64_bytes(&[7, 8, 9])),
                    v2_f32(&[0, 3], &[]),
                ],
                Some(&[b"w", b"idx", b"empty"]),
            ),
        ),
        (
            "sparse list",
            list(
                &[
                    row_sparse(&[4, 2], &[2, 2], &[1.0, 2.0, 3.0, 4.0], &[0, 3]),
                    csr(&[2, 3], &[5.0, 6.0], &[0, 1, 2], &[2, 0]),
                ],
                None,
            ),
        ),
        (
            "numpy and legacy",
            list(
                &[
                    dense(V3_MAGIC, &[], F64, &2.5f64.to_le_bytes()),
                    v1(&[2], F32, &f32_bytes(&[1.0, 2.0])),
                    v0(&[1, 2], F32, &f32_bytes(&[3.0, 4.0])),
                ],
                Some(&[b"scalar", b"legacy1", b"legacy0"]),
            ),
        ),
    ]
}

/// Valid single-record blobs.
pub fn valid_blobs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("dense blob", v2_f32(&[1, 3], &[1.0, 2.0, 3.0])),
        ("csr blob", csr(&[1, 2], &[1.0], &[0, 1], &[1])),
    ]
}

/// Whether an input is a list file or a single record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    List,
    Blob,
}

/// One malformed input and the error it must produce.
pub struct Case {
    pub name: String,
    pub container: Container,
    pub bytes: Vec<u8>,
    pub expected: fn(&ParamsError) -> bool,
}

fn case(
    name: &str,
    container: Container,
    bytes: Vec<u8>,
    expected: fn(&ParamsError) -> bool,
) -> Case {
    Case {
        name: name.to_owned(),
        container,
        bytes,
        expected,
    }
}

/// A list file with one record.
pub fn one(record: Vec<u8>) -> Vec<u8> {
    list(&[record], None)
}

/// Every malformed input of §1.10 and §1.11, and every truncation of the valid inputs.
pub fn malformed() -> Vec<Case> {
    use Container::{Blob, List};
    let mut cases = vec![
        case(
            "bad list magic",
            List,
            Bytes::new().u64(0x113).u64(0).u64(0).u64(0).done(),
            |e| matches!(e, ParamsError::BadListMagic { found: 0x113 }),
        ),
        case(
            "V2 ndim -1 followed by more than 32 bytes (segfaults MXNet)",
            List,
            one(Bytes::new()
                .u32(V2_MAGIC)
                .i32(0)
                .i32(-1)
                .raw(&[0x41; 64])
                .done()),
            |e| {
                matches!(
                    e,
                    ParamsError::BadNdim {
                        ndim: -1,
                        version: RecordVersion::V2,
                        field: "shape",
                        offset: 32,
                        ..
                    }
                )
            },
        ),
        case(
            "V2 ndim 2^31-1",
            List,
            one(Bytes::new()
                .u32(V2_MAGIC)
                .i32(0)
                .i32(i32::MAX)
                .raw(&[0; 16])
                .done()),
            |e| {
                matches!(
                    e,
                    ParamsError::BadNdim {
                        ndim: 2147483647,
                        ..
                    }
                )
            },
        ),
        case(
            "V3 ndim -2",
            List,
            one(Bytes::new()
                .u32(V3_MAGIC)
                .i32(0)
                .i32(-2)
                .raw(&[0; 16])
                .done()),
            |e| {
                matches!(
                    e,
                    ParamsError::BadNdim {
                        ndim: -2,
                        version: RecordVersion::V3,
                        ..
                    }
                )
            },
        ),
        case(
            "V1 ndim -1",
            List,
            one(Bytes::new().u32(V1_MAGIC).i32(-1).raw(&[0; 16]).done()),
            |e| {
                matches!(
                    e,
                    ParamsError::BadNdim {
                        ndim: -1,
                        version: RecordVersion::V1,
                        ..
                    }
                )
            },
        ),
        case(
            "V0 word 0x7fffffff (hangs MXNet)",
            List,
            one(Bytes::new().u32(0x7fff_ffff).raw(&[0; 16]).done()),
            |e| {
                matches!(
                    e,
                    ParamsError::BadNdim {
                        ndim: 0x7fff_ffff,
                        version: RecordVersion::V0,
                        offset: 24,
                        ..
                    }
                )
            },
        ),
        case(
            "V0 ndim 33",
            Blob,
            Bytes::new().u32(33).raw(&[0; 33 * 4]).done(),
            |e| {
                matches!(
                    e,
                    ParamsError::BadNdim {
                        ndim: 33,
                        version: RecordVersion::V0,
                        ..
                    }
                )
            },
        ),
        case(
            "array count 2^40",
            List,
            Bytes::new()
                .u64(LIST_MAGIC)
                .u64(0)
                .u64(1 << 40)
                .raw(&[0; 76])
                .done(),
            |e| {
                matches!(
                    e,
                    ParamsError::ExceedsLimit {
                        field: "array count",
                        value: 0x100_0000_0000,
                        offset: 16,
                        ..
                    }
                )
            },
        ),
        case(
            "array count 1000 in a 100-byte file",
            List,
            Bytes::new()
                .u64(LIST_MAGIC)
                .u64(0)
                .u64(1000)
                .raw(&[0; 76])
                .done(),
            |e| {
                matches!(
                    e,
                    ParamsError::ExceedsInput {
                        field: "array count",
                        value: 1000,
                        remaining: 76,
                        ..
                    }
                )
            },
        ),
        case(
            "name length 2^40",
            List,
            with_names(
                &[v2_f32(&[1], &[1.0])],
                Bytes::new().u64(1).u64(1 << 40).raw(b"abc").done(),
            ),
            |e| {
                matches!(
                    e,
                    ParamsError::ExceedsLimit {
                        field: "name length",
                        value: 0x100_0000_0000,
                        ..
                    }
                )
            },
        ),
        case(
            "name longer than the rest of the file",
            List,
            with_names(
                &[v2_f32(&[1], &[1.0])],
                Bytes::new().u64(1).u64(100).raw(b"short").done(),
            ),
            |e| {
                matches!(
                    e,
                    ParamsError::Truncated {
                        field: "name bytes",
                        needed: 100,
                        available: 5,
                        ..
                    }
                )
            },
        ),
        case(
            "names count 2^40",
            List,
            with_names(&[v2_f32(&[1], &[1.0])], Bytes::new().u64(1 << 40).done()),
            |e| {
                matches!(
                    e,
                    ParamsError::NameCountMismatch {
                        names: 0x100_0000_0000,
                        arrays: 1,
                        ..
                    }
                )
            },
        ),
        case(
            "names count 1 for 2 arrays",
            List,
            with_names(
                &[v2_f32(&[1], &[1.0]), v2_f32(&[1], &[2.0])],
                Bytes::new().u64(1).u64(1).raw(b"a").done(),
            ),
            |e| {
                matches!(
                    e,
                    ParamsError::NameCountMismatch {
                        names: 1,
                        arrays: 2,
                        ..
                    }
                )
            },
        ),
        case(
            "names count 3 for 2 arrays",
            List,
            with_names(
                &[v2_f32(&[1], &[1.0]), v2_f32(&[1], &[2.0])],
                Bytes::new()
                    .u64(3)
                    .u64(1)
                    .raw(b"a")
                    .u64(1)
                    .raw(b"b")
                    .u64(1)
                    .raw(b"c")
                    .done(),
            ),
            |e| {
                matches!(
                    e,
                    ParamsError::NameCountMismatch {
                        names: 3,
                        arrays: 2,
                        ..
                    }
                )
            },
        ),
        case(
            "names count equal to the arrays but more than the bytes left",
            List,
            with_names(
                &[v2_f32(&[0], &[]), v2_f32(&[0], &[])],
                Bytes::new().u64(2).u64(0).done(),
            ),
            |e| {
                matches!(
                    e,
                    ParamsError::ExceedsInput {
                        field: "name count",
                        ..
                    }
                )
            },
        ),
        case(
            "dims whose product overflows u64",
            List,
            one(Bytes::new()
                .u32(V2_MAGIC)
                .i32(0)
                .shape(&[1 << 32, 1 << 32, 1 << 32])
                .cpu_and_type(F32)
                .done()),
            |e| {
                matches!(
                    e,
                    ParamsError::TooManyElements {
                        elements: None,
                        field: "shape",
                        ..
                    }
                )
            },
        ),
        case(
            "dims over the element limit",
            List,
            one(Bytes::new()
                .u32(V2_MAGIC)
                .i32(0)
                .shape(&[1 << 20, 1 << 20])
                .cpu_and_type(F32)
                .done()),
            |e| {
                matches!(
                    e,
                    ParamsError::TooManyElements {
                        elements: Some(0x100_0000_0000),
                        ..
                    }
                )
            },
        ),
        case(
            "0-size array whose other dims overflow",
            List,
            one(dense(V2_MAGIC, &[0, 1 << 40, 1 << 40], F32, &[])),
            |e| matches!(e, ParamsError::TooManyElements { elements: None, .. }),
        ),
        case(
            "V0 dims over the element limit",
            List,
            one(Bytes::new()
                .u32(3)
                .u32(u32::MAX)
                .u32(u32::MAX)
                .u32(u32::MAX)
                .cpu_and_type(F32)
                .done()),
            |e| matches!(e, ParamsError::TooManyElements { elements: None, .. }),
        ),
        case(
            "V2 dim -2",
            List,
            one(dense(V2_MAGIC, &[2, -2], F32, &[])),
            |e| {
                matches!(
                    e,
                    ParamsError::BadDim {
                        axis: 1,
                        dim: -2,
                        offset: 44,
                        ..
                    }
                )
            },
        ),
        case(
            "V2 dim -1 (only V3 knows unknown dims)",
            List,
            one(dense(V2_MAGIC, &[-1], F32, &[])),
            |e| {
                matches!(
                    e,
                    ParamsError::BadDim {
                        axis: 0,
                        dim: -1,
                        version: RecordVersion::V2,
                        ..
                    }
                )
            },
        ),
        case(
            "V3 dim -3",
            List,
            one(dense(V3_MAGIC, &[4, -3], F32, &[])),
            |e| {
                matches!(
                    e,
                    ParamsError::BadDim {
                        axis: 1,
                        dim: -3,
                        version: RecordVersion::V3,
                        ..
                    }
                )
            },
        ),
        case("V1 dim -1", List, one(v1(&[-1], F32, &[])), |e| {
            matches!(
                e,
                ParamsError::BadDim {
                    dim: -1,
                    version: RecordVersion::V1,
                    ..
                }
            )
        }),
        case(
            "type flag 8 (int16: in the enum, never saveable)",
            List,
            one(dense(V2_MAGIC, &[1], 8, &[0; 2])),
            |e| {
                matches!(
                    e,
                    ParamsError::UnknownDType {
                        flag: 8,
                        offset: 52,
                        ..
                    }
                )
            },
        ),
        case(
            "type flag 99",
            List,
            one(dense(V2_MAGIC, &[1], 99, &[0; 4])),
            |e| matches!(e, ParamsError::UnknownDType { flag: 99, .. }),
        ),
        case(
            "type flag -1",
            Blob,
            dense(V2_MAGIC, &[1], -1, &[0; 4]),
            |e| {
                matches!(
                    e,
                    ParamsError::UnknownDType {
                        flag: -1,
                        array: 0,
                        ..
                    }
                )
            },
        ),
        case(
            "legacy type flag 11",
            List,
            one(v1(&[1], 11, &[0; 8])),
            |e| matches!(e, ParamsError::UnknownDType { flag: 11, .. }),
        ),
        case(
            "storage type 3",
            List,
            one(Bytes::new().u32(V2_MAGIC).i32(3).shape(&[1]).done()),
            |e| {
                matches!(
                    e,
                    ParamsError::UnknownStorageType {
                        stype: 3,
                        offset: 28,
                        ..
                    }
                )
            },
        ),
        case(
            "storage type -1 (undefined)",
            List,
            one(Bytes::new().u32(V2_MAGIC).i32(-1).shape(&[1]).done()),
            |e| matches!(e, ParamsError::UnknownStorageType { stype: -1, .. }),
        ),
        case(
            "V3 with row_sparse storage",
            List,
            one(Bytes::new()
                .u32(V3_MAGIC)
                .i32(1)
                .shape(&[1, 2])
                .shape(&[3, 2])
                .done()),
            |e| matches!(e, ParamsError::SparseInNumpyRecord { stype: 1, .. }),
        ),
        case(
            "V3 with csr storage",
            Blob,
            Bytes::new()
                .u32(V3_MAGIC)
                .i32(2)
                .shape(&[1])
                .shape(&[3, 2])
                .done(),
            |e| matches!(e, ParamsError::SparseInNumpyRecord { stype: 2, .. }),
        ),
        case(
            "int32 sparse aux",
            List,
            one(row_sparse_with(&[3, 1], &[1, 1], 4, &[1], &[1.0], &[0])),
            |e| matches!(e, ParamsError::UnsupportedAuxType { flag: 4, .. }),
        ),
        case(
            "float32 sparse aux",
            List,
            one(row_sparse_with(&[3, 1], &[1, 1], 0, &[1], &[1.0], &[0])),
            |e| matches!(e, ParamsError::UnsupportedAuxType { flag: 0, .. }),
        ),
        case(
            "invalid UTF-8 name",
            List,
            list(&[v2_f32(&[1], &[1.0])], Some(&[b"ok\xff\xfe"])),
            |e| matches!(e, ParamsError::InvalidName { index: 0, .. }),
        ),
        case(
            "duplicate names",
            List,
            list(
                &[
                    v2_f32(&[1], &[1.0]),
                    v2_f32(&[1], &[2.0]),
                    v2_f32(&[1], &[3.0]),
                ],
                Some(&[b"a", b"b", b"a"]),
            ),
            |e| {
                matches!(
                    e,
                    ParamsError::DuplicateName {
                        first: 0,
                        second: 2,
                        ..
                    }
                )
            },
        ),
        case(
            "trailing bytes after the names",
            List,
            [list(&[v2_f32(&[1], &[1.0])], Some(&[b"a"])), vec![0]].concat(),
            |e| matches!(e, ParamsError::TrailingBytes { count: 1, .. }),
        ),
        case(
            "trailing bytes after an unnamed list",
            List,
            [list(&[], None), vec![0; 9]].concat(),
            |e| {
                matches!(
                    e,
                    ParamsError::TrailingBytes {
                        offset: 32,
                        count: 9
                    }
                )
            },
        ),
        case(
            "trailing bytes after a blob",
            Blob,
            [v2_f32(&[1], &[1.0]), vec![0; 3]].concat(),
            |e| matches!(e, ParamsError::TrailingBytes { count: 3, .. }),
        ),
        case(
            "row_sparse index out of range",
            List,
            one(row_sparse(&[3, 1], &[2, 1], &[1.0, 2.0], &[0, 3])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::RowOutOfRange {
                            position: 1,
                            row: 3,
                            rows: 3
                        },
                        offset: 116,
                        ..
                    }
                )
            },
        ),
        case(
            "row_sparse negative index",
            List,
            one(row_sparse(&[3, 1], &[1, 1], &[1.0], &[-1])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::RowOutOfRange { row: -1, .. },
                        ..
                    }
                )
            },
        ),
        case(
            "row_sparse indices unsorted",
            List,
            one(row_sparse(&[4, 1], &[2, 1], &[1.0, 2.0], &[2, 1])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::RowsNotIncreasing {
                            position: 1,
                            previous: 2,
                            row: 1
                        },
                        ..
                    }
                )
            },
        ),
        case(
            "row_sparse indices repeated",
            List,
            one(row_sparse(&[4, 1], &[2, 1], &[1.0, 2.0], &[1, 1])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::RowsNotIncreasing { .. },
                        ..
                    }
                )
            },
        ),
        case(
            "row_sparse row shape differs",
            List,
            one(row_sparse(&[4, 2], &[1, 3], &[1.0, 2.0, 3.0], &[0])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::RowShapeMismatch { .. },
                        ..
                    }
                )
            },
        ),
        case(
            "row_sparse indices shape differs from stored rows",
            List,
            one(row_sparse_with(
                &[4, 1],
                &[2, 1],
                INT64_AUX,
                &[1],
                &[1.0, 2.0],
                &[0],
            )),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::AuxShape { .. },
                        ..
                    }
                )
            },
        ),
        case(
            "csr indptr not monotonic",
            List,
            one(csr(&[3, 3], &[1.0, 2.0], &[0, 2, 1, 2], &[0, 1])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::IndptrDecreasing {
                            position: 2,
                            previous: 2,
                            value: 1
                        },
                        ..
                    }
                )
            },
        ),
        case(
            "csr indptr[0] != 0",
            List,
            one(csr(&[2, 3], &[1.0, 2.0], &[1, 2, 2], &[0, 1])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::IndptrStart { first: 1 },
                        ..
                    }
                )
            },
        ),
        case(
            "csr indptr last != nnz",
            List,
            one(csr(&[2, 3], &[1.0, 2.0], &[0, 1, 1], &[0, 1])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::IndptrEnd { last: 1, nnz: 2 },
                        offset: 132,
                        ..
                    }
                )
            },
        ),
        case(
            "csr column out of range",
            List,
            one(csr(&[2, 3], &[1.0, 2.0], &[0, 1, 2], &[0, 3])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::ColumnOutOfRange {
                            position: 1,
                            column: 3,
                            columns: 3
                        },
                        ..
                    }
                )
            },
        ),
        case(
            "csr negative column",
            Blob,
            csr(&[2, 3], &[1.0], &[0, 1, 1], &[-5]),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::ColumnOutOfRange { column: -5, .. },
                        ..
                    }
                )
            },
        ),
        case(
            "csr 3-D",
            List,
            one(csr_with(&[2, 2, 2], &[0], &[3], &[0], &[], &[0, 0, 0], &[])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::CsrNotMatrix { .. },
                        ..
                    }
                )
            },
        ),
        case(
            "csr stored shape 2-D",
            List,
            one(csr_with(
                &[2, 2],
                &[1, 1],
                &[3],
                &[1],
                &[1.0],
                &[0, 1, 1],
                &[0],
            )),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::CsrStorageNotVector { .. },
                        ..
                    }
                )
            },
        ),
        case(
            "csr indptr shape not rows + 1",
            List,
            one(csr_with(&[2, 2], &[1], &[2], &[1], &[1.0], &[0, 1], &[0])),
            |e| {
                matches!(
                    e,
                    ParamsError::Sparse {
                        problem: SparseProblem::AuxShape { .. },
                        ..
                    }
                )
            },
        ),
        case(
            "csr with a huge logical shape and nothing stored",
            List,
            one(csr_with(
                &[1 << 40, 1 << 40],
                &[0],
                &[1],
                &[0],
                &[],
                &[0],
                &[],
            )),
            |e| matches!(e, ParamsError::TooManyElements { field: "shape", .. }),
        ),
    ];

    for (name, bytes) in valid_lists() {
        cases.extend(truncations(name, List, &bytes));
    }
    for (name, bytes) in valid_blobs() {
        cases.extend(truncations(name, Blob, &bytes));
    }
    cases
}

/// A list file of `records` whose name table is `names` as given (count included).
pub fn with_names(records: &[Vec<u8>], names: Vec<u8>) -> Vec<u8> {
    let mut bytes = list(records, None);
    // Drop the empty name table that list() wrote.
    bytes.truncate(bytes.len() - 8);
    bytes.extend_from_slice(&names);
    bytes
}

/// Every strict prefix of a valid input. A list file cut short runs out inside a field, or
/// (when the cut leaves fewer bytes than the array or name count promises) fails that check.
fn truncations(name: &str, container: Container, bytes: &[u8]) -> Vec<Case> {
    (0..bytes.len())
        .map(|len| {
            case(
                &format!("{name} truncated to {len} bytes"),
                container,
                bytes[..len].to_vec(),
                |e| {
                    matches!(
                        e,
                        ParamsError::Truncated { .. } | ParamsError::ExceedsInput { .. }
                    )
                },
            )
        })
        .collect()
}
