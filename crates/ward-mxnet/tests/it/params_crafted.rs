//! Hand-crafted inputs that are unusual but valid: none slots of every version, V3 unknown
//! shapes and scalars, odd contexts, an ignored reserved word. MXNet 1.9.1 cannot load some
//! of these (it hangs on a legacy none slot), so they are built here rather than checked
//! against MXNet.

// A failed expectation is a panic here; that is what a test is for.

use crate::support::params_corpus as corpus;

use corpus::{dense, f32_bytes, list, v0, v1, v2_f32, Bytes, F32, V1_MAGIC, V2_MAGIC, V3_MAGIC};
use ward_mxnet::limits::ParamsLimits;
use ward_mxnet::params::{
    read_ndarray_blob, read_params, Context, NdArray, ParamsFile, RecordVersion, StoredArray,
};

fn read(bytes: &[u8]) -> ParamsFile {
    read_params(bytes, &ParamsLimits::default()).unwrap()
}

fn none(version: RecordVersion) -> NdArray {
    NdArray {
        version,
        context: Context::CPU,
        value: None,
    }
}

#[test]
fn none_slots_of_every_version_read_as_none() {
    let file = read(&list(
        &[
            // V0: a lone ndim of 0 (MXNet 1.9.1 hangs here).
            Bytes::new().u32(0).done(),
            // V1: magic and ndim 0.
            Bytes::new().u32(V1_MAGIC).i32(0).done(),
            // V2: storage type and ndim 0.
            Bytes::new().u32(V2_MAGIC).i32(0).i32(0).done(),
            // V2 row_sparse: the storage shape is read, then an empty shape ends the record.
            Bytes::new()
                .u32(V2_MAGIC)
                .i32(1)
                .shape(&[2, 3])
                .i32(0)
                .done(),
            // V3: unknown ndim.
            Bytes::new().u32(V3_MAGIC).i32(0).i32(-1).done(),
            // V3: a known ndim with an unknown dim.
            Bytes::new().u32(V3_MAGIC).i32(0).shape(&[2, -1]).done(),
            // And a real array after them, to show that reading went on in step.
            v2_f32(&[2], &[1.0, 2.0]),
        ],
        None,
    ));
    assert_eq!(
        file.arrays[..6],
        [
            none(RecordVersion::V0),
            none(RecordVersion::V1),
            none(RecordVersion::V2),
            none(RecordVersion::V2),
            none(RecordVersion::V3),
            none(RecordVersion::V3),
        ]
    );
    let last = file.arrays[6].value.as_ref().unwrap();
    assert_eq!(last.to_dense().unwrap().to_f32_vec(), vec![1.0, 2.0]);
}

#[test]
fn a_none_slot_can_be_a_blob() {
    let blob = Bytes::new().u32(V2_MAGIC).i32(0).i32(0).done();
    let array = read_ndarray_blob(&blob, &ParamsLimits::default()).unwrap();
    assert_eq!(array, none(RecordVersion::V2));
}

#[test]
fn v3_empty_shapes_are_scalars() {
    let file = read(&list(
        &[dense(V3_MAGIC, &[], F32, &f32_bytes(&[-4.5]))],
        None,
    ));
    let value = file.arrays[0].value.as_ref().unwrap();
    assert_eq!(value.shape(), &[] as &[usize]);
    assert_eq!(value.to_dense().unwrap().to_f32_vec(), vec![-4.5]);
}

#[test]
fn zero_size_dims_have_no_data_in_every_version() {
    let file = read(&list(
        &[
            v0(&[3, 0], F32, &[]),
            v1(&[0], F32, &[]),
            v2_f32(&[2, 0, 3], &[]),
            dense(V3_MAGIC, &[0, 5], F32, &[]),
        ],
        None,
    ));
    let shapes: Vec<&[usize]> = file
        .arrays
        .iter()
        .map(|a| a.value.as_ref().unwrap().shape())
        .collect();
    assert_eq!(shapes, [&[3, 0][..], &[0], &[2, 0, 3], &[0, 5]]);
}

#[test]
fn the_reserved_word_is_ignored() {
    let mut bytes = list(&[v2_f32(&[1], &[1.0])], None);
    bytes[8..16].copy_from_slice(&0xdead_beef_u64.to_le_bytes());
    assert_eq!(read(&bytes).arrays.len(), 1);
}

#[test]
fn contexts_are_recorded_even_when_unknown() {
    let record = |dev_type: i32, dev_id: i32| {
        Bytes::new()
            .u32(V2_MAGIC)
            .i32(0)
            .shape(&[1])
            .i32(dev_type)
            .i32(dev_id)
            .i32(F32)
            .raw(&f32_bytes(&[0.0]))
            .done()
    };
    let file = read(&list(&[record(2, 7), record(99, -1)], None));
    assert_eq!(
        file.arrays[0].context,
        Context {
            dev_type: 2,
            dev_id: 7
        }
    );
    assert_eq!(file.arrays[0].context.to_string(), "gpu(7)");
    assert_eq!(
        file.arrays[1].context,
        Context {
            dev_type: 99,
            dev_id: -1
        }
    );
    assert_eq!(file.arrays[1].context.device_name(), None);
}

#[test]
fn names_may_be_empty_or_any_utf8() {
    let file = read(&list(
        &[v2_f32(&[1], &[1.0]), v2_f32(&[1], &[2.0])],
        Some(&["".as_bytes(), "größe:λ".as_bytes()]),
    ));
    assert_eq!(file.names.unwrap(), ["", "größe:λ"]);
}

#[test]
fn sparse_arrays_densify_with_zeros_elsewhere() {
    let file = read(&list(
        &[
            corpus::row_sparse(&[3, 2], &[1, 2], &[5.0, 6.0], &[2]),
            corpus::csr(&[2, 3], &[7.0, 8.0], &[0, 0, 2], &[0, 2]),
        ],
        None,
    ));
    let dense: Vec<Vec<f32>> = file
        .arrays
        .iter()
        .map(|a| a.value.as_ref().unwrap().to_dense().unwrap().to_f32_vec())
        .collect();
    assert_eq!(dense[0], [0.0, 0.0, 0.0, 0.0, 5.0, 6.0]);
    assert_eq!(dense[1], [0.0, 0.0, 0.0, 7.0, 0.0, 8.0]);
    let StoredArray::Csr { indptr, .. } = file.arrays[1].value.as_ref().unwrap() else {
        panic!("not csr");
    };
    assert_eq!(indptr, &[0, 0, 2]);
}
