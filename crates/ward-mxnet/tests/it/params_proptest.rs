//! Properties of the `.params` reader: no input makes it panic, and random dense arrays
//! written in every record version read back unchanged.

// A failed expectation is a panic here; that is what a test is for.

use proptest::collection::vec;
use proptest::prelude::*;
use ward_core::{DType, Tensor};
use ward_mxnet::limits::ParamsLimits;
use ward_mxnet::params::{
    dtype_flag, read_ndarray_blob, read_params, Context, RecordVersion, StoredArray, V1_MAGIC,
    V2_MAGIC, V3_MAGIC,
};

/// One dense array as the writer below puts it on disk.
#[derive(Debug, Clone)]
struct Written {
    version: RecordVersion,
    context: Context,
    tensor: Tensor,
}

/// Writes one dense record the way MXNet's writer (V2/V3) or an old one (V0/V1) did.
fn write_record(array: &Written, out: &mut Vec<u8>) {
    let dims = array.tensor.shape();
    let ndim = dims.len() as u32;
    match array.version {
        RecordVersion::V0 => out.extend_from_slice(&ndim.to_le_bytes()),
        RecordVersion::V1 => {
            out.extend_from_slice(&V1_MAGIC.to_le_bytes());
            out.extend_from_slice(&ndim.to_le_bytes());
        }
        RecordVersion::V2 | RecordVersion::V3 => {
            let magic = if array.version == RecordVersion::V2 {
                V2_MAGIC
            } else {
                V3_MAGIC
            };
            out.extend_from_slice(&magic.to_le_bytes());
            out.extend_from_slice(&0i32.to_le_bytes());
            out.extend_from_slice(&ndim.to_le_bytes());
        }
    }
    for &dim in dims {
        if array.version == RecordVersion::V0 {
            out.extend_from_slice(&(dim as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(dim as i64).to_le_bytes());
        }
    }
    out.extend_from_slice(&array.context.dev_type.to_le_bytes());
    out.extend_from_slice(&array.context.dev_id.to_le_bytes());
    out.extend_from_slice(&dtype_flag(array.tensor.dtype()).to_le_bytes());
    out.extend_from_slice(array.tensor.bytes());
}

fn write_list(arrays: &[Written], names: Option<&[String]>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0x112u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(arrays.len() as u64).to_le_bytes());
    for array in arrays {
        write_record(array, &mut out);
    }
    let names = names.unwrap_or(&[]);
    out.extend_from_slice(&(names.len() as u64).to_le_bytes());
    for name in names {
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out
}

fn dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(DType::ALL.to_vec())
}

fn version() -> impl Strategy<Value = RecordVersion> {
    prop::sample::select(vec![
        RecordVersion::V0,
        RecordVersion::V1,
        RecordVersion::V2,
        RecordVersion::V3,
    ])
}

/// A random dense array. Only V3 can hold a 0-d scalar: in the other versions an empty
/// shape is a none slot.
fn written() -> impl Strategy<Value = Written> {
    (
        version(),
        dtype(),
        vec(0usize..4, 0..5),
        any::<(i32, i32)>(),
    )
        .prop_filter(
            "an empty shape is a none slot before V3",
            |(v, _, dims, _)| *v == RecordVersion::V3 || !dims.is_empty(),
        )
        .prop_flat_map(|(version, dtype, dims, (dev_type, dev_id))| {
            let len = dims.iter().product::<usize>() * dtype.size();
            vec(any::<u8>(), len).prop_map(move |data| Written {
                version,
                context: Context { dev_type, dev_id },
                tensor: Tensor::from_bytes(dtype, dims.clone(), data).unwrap(),
            })
        })
}

/// A prefix that gets random bytes past the first checks.
fn plausible_start() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just([0x112u64.to_le_bytes(), 0u64.to_le_bytes()].concat()),
        Just(
            [
                0x112u64.to_le_bytes(),
                0u64.to_le_bytes(),
                1u64.to_le_bytes()
            ]
            .concat()
        ),
        Just(
            [
                &0x112u64.to_le_bytes()[..],
                &[0; 8],
                &1u64.to_le_bytes(),
                &V2_MAGIC.to_le_bytes()
            ]
            .concat()
        ),
        Just(
            [
                &0x112u64.to_le_bytes()[..],
                &[0; 8],
                &2u64.to_le_bytes(),
                &V3_MAGIC.to_le_bytes()
            ]
            .concat()
        ),
        Just(V2_MAGIC.to_le_bytes().to_vec()),
        Just([V2_MAGIC.to_le_bytes(), 1i32.to_le_bytes()].concat()),
        Just([V2_MAGIC.to_le_bytes(), 2i32.to_le_bytes()].concat()),
        Just(V1_MAGIC.to_le_bytes().to_vec()),
    ]
}

fn read_everything(bytes: &[u8]) {
    let limits = ParamsLimits::default();
    if let Ok(file) = read_params(bytes, &limits) {
        for value in file.arrays.iter().filter_map(|a| a.value.as_ref()) {
            // Small logical shapes only: a tiny sparse record may describe a huge array.
            if value.shape().iter().product::<usize>() <= 1 << 16 {
                value.to_dense().unwrap();
            }
        }
    }
    let _ = read_ndarray_blob(bytes, &limits);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(start in plausible_start(), rest in vec(any::<u8>(), 0..256)) {
        read_everything(&[start, rest].concat());
    }

    #[test]
    fn corrupted_valid_files_never_panic(
        arrays in vec(written(), 1..4),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = write_list(&arrays, None);
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        read_everything(&bytes);
    }

    #[test]
    fn dense_arrays_round_trip(arrays in vec(written(), 0..5), named in any::<bool>()) {
        let names: Vec<String> = (0..arrays.len()).map(|i| format!("param_{i}")).collect();
        let names = named.then_some(names.as_slice());
        let file = read_params(&write_list(&arrays, names), &ParamsLimits::default()).unwrap();
        prop_assert_eq!(file.arrays.len(), arrays.len());
        // An empty dict is written exactly like an empty list.
        let expected_names = names.filter(|n| !n.is_empty()).map(<[String]>::to_vec);
        prop_assert_eq!(file.names, expected_names);
        for (read, written) in file.arrays.iter().zip(&arrays) {
            prop_assert_eq!(read.version, written.version);
            prop_assert_eq!(read.context, written.context);
            prop_assert_eq!(read.value.as_ref(), Some(&StoredArray::Dense(written.tensor.clone())));
        }
    }

    #[test]
    fn single_records_round_trip_as_blobs(array in written()) {
        let mut bytes = Vec::new();
        write_record(&array, &mut bytes);
        let read = read_ndarray_blob(&bytes, &ParamsLimits::default()).unwrap();
        prop_assert_eq!(read.value, Some(StoredArray::Dense(array.tensor)));
    }
}
