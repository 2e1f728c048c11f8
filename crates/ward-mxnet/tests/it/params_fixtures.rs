//! Every `.params` fixture reads back exactly as MXNet 1.9.1 loaded it.
//!
//! The fixtures and their expected-values JSON were written by
//! `tools/make_params_fixtures.py` with the real MXNet; see that script for the JSON layout.
//! MXNet is not needed here.

// A failed expectation is a panic here; that is what a test is for.

use std::path::{Path, PathBuf};

use serde_json::Value;
use ward_core::{DType, Tensor};
use ward_mxnet::limits::ParamsLimits;
use ward_mxnet::params::{
    read_ndarray_blob, read_params, split_key, Context, NdArray, ParamKind, ParamsError,
    RecordVersion, StoredArray,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/params")
}

fn fixture(name: &str) -> Result<Vec<u8>, std::io::Error> {
    std::fs::read(fixture_dir().join(name))
}

fn read_fixture(name: &str) -> Result<ward_mxnet::params::ParamsFile, Box<dyn std::error::Error>> {
    Ok(read_params(&fixture(name)?, &ParamsLimits::default())?)
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex
        .bytes()
        .map(|c| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex digit {c}"),
        })
        .collect();
    digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair[1])
        .collect()
}

fn field<'v>(value: &'v Value, key: &str, what: &str) -> &'v Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("{what}: expected JSON has no {key:?}"))
}

fn usize_list(value: &Value, what: &str) -> Vec<usize> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not a list"))
        .iter()
        .map(|v| {
            v.as_u64()
                .unwrap_or_else(|| panic!("{what}: {v} is not a count")) as usize
        })
        .collect()
}

fn i64_list(value: &Value, what: &str) -> Vec<i64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not a list"))
        .iter()
        .map(|v| {
            v.as_i64()
                .unwrap_or_else(|| panic!("{what}: {v} is not an integer"))
        })
        .collect()
}

/// Each element of `tensor` as a JSON-comparable value, decoded per dtype without going
/// through a lossy conversion.
fn element_matches(expected: &Value, bytes: &[u8], dtype: DType) -> bool {
    let int = |v: i64| expected.as_i64() == Some(v);
    let float = |v: f64| match expected {
        Value::String(s) if s == "nan" => v.is_nan(),
        Value::String(s) if s == "inf" => v == f64::INFINITY,
        Value::String(s) if s == "-inf" => v == f64::NEG_INFINITY,
        // Exact, sign of zero included.
        _ => expected.as_f64().map(f64::to_bits) == Some(v.to_bits()),
    };
    match dtype {
        DType::U8 | DType::Bool => int(i64::from(bytes[0])),
        DType::I8 => int(i64::from(bytes[0] as i8)),
        DType::I32 => int(i64::from(i32::from_le_bytes(bytes.try_into().unwrap()))),
        DType::I64 => int(i64::from_le_bytes(bytes.try_into().unwrap())),
        DType::BF16 => int(i64::from(u16::from_le_bytes(bytes.try_into().unwrap()))),
        DType::F16 => float(half::f16::from_le_bytes(bytes.try_into().unwrap()).to_f64()),
        DType::F32 => float(f64::from(f32::from_le_bytes(bytes.try_into().unwrap()))),
        DType::F64 => float(f64::from_le_bytes(bytes.try_into().unwrap())),
    }
}

/// Compares a tensor with `{"values": [...], "hex": "..."}`.
fn check_tensor(expected: &Value, tensor: &Tensor, what: &str) {
    let hex = field(expected, "hex", what).as_str().unwrap();
    assert_eq!(tensor.bytes(), hex_bytes(hex), "{what}: bytes");
    let values = field(expected, "values", what).as_array().unwrap();
    assert_eq!(values.len(), tensor.len(), "{what}: element count");
    let size = tensor.dtype().size();
    for (index, (value, bytes)) in values.iter().zip(tensor.bytes().chunks(size)).enumerate() {
        assert!(
            element_matches(value, bytes, tensor.dtype()),
            "{what}: element {index} is {bytes:02x?}, MXNet loaded {value}"
        );
    }
}

fn check_array(expected: &Value, actual: &NdArray, what: &str) {
    let version = match field(expected, "version", what).as_u64() {
        Some(0) => RecordVersion::V0,
        Some(1) => RecordVersion::V1,
        Some(2) => RecordVersion::V2,
        Some(3) => RecordVersion::V3,
        other => panic!("{what}: unexpected version {other:?}"),
    };
    assert_eq!(actual.version, version, "{what}: version");
    let context = field(expected, "context", what);
    let context = Context {
        dev_type: field(context, "dev_type", what).as_i64().unwrap() as i32,
        dev_id: field(context, "dev_id", what).as_i64().unwrap() as i32,
    };
    assert_eq!(actual.context, context, "{what}: context");

    let value = actual
        .value
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: read as a none slot"));
    let dtype: DType = field(expected, "dtype", what)
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(value.dtype(), dtype, "{what}: dtype");
    let shape = usize_list(field(expected, "shape", what), what);
    assert_eq!(value.shape(), shape, "{what}: shape");

    let stype = field(expected, "stype", what).as_str().unwrap();
    match (stype, value) {
        ("default", StoredArray::Dense(tensor)) => check_tensor(expected, tensor, what),
        (
            "row_sparse",
            StoredArray::RowSparse {
                indices, values, ..
            },
        ) => {
            let data = field(expected, "data", what);
            assert_eq!(values.shape(), usize_list(field(data, "shape", what), what));
            check_tensor(data, values, &format!("{what} (stored values)"));
            assert_eq!(*indices, i64_list(field(expected, "indices", what), what));
        }
        (
            "csr",
            StoredArray::Csr {
                indptr,
                indices,
                values,
                ..
            },
        ) => {
            let data = field(expected, "data", what);
            assert_eq!(values.shape(), usize_list(field(data, "shape", what), what));
            check_tensor(data, values, &format!("{what} (stored values)"));
            assert_eq!(*indices, i64_list(field(expected, "indices", what), what));
            assert_eq!(*indptr, i64_list(field(expected, "indptr", what), what));
        }
        (stype, value) => panic!("{what}: MXNet loaded {stype}, ward read {value:?}"),
    }
    if stype != "default" {
        let dense = value
            .to_dense()
            .unwrap_or_else(|e| panic!("{what}: to_dense: {e}"));
        assert_eq!(dense.shape(), shape, "{what}: dense shape");
        let dense_hex = field(expected, "dense_hex", what).as_str().unwrap();
        assert_eq!(dense.bytes(), hex_bytes(dense_hex), "{what}: dense bytes");
    }
}

#[test]
fn every_fixture_reads_back_as_mxnet_loaded_it() -> TestResult {
    let mut checked = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(fixture_dir())?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let expected: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let file = field(&expected, "file", "fixture")
            .as_str()
            .unwrap()
            .to_owned();
        let bytes = fixture(&file)?;
        let arrays = field(&expected, "arrays", &file).as_array().unwrap();
        match field(&expected, "container", &file).as_str() {
            Some("list") => {
                let read = read_params(&bytes, &ParamsLimits::default())
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                let names = field(&expected, "names", &file);
                match (&read.names, names) {
                    (None, Value::Null) => {}
                    (Some(read), Value::Array(_)) => {
                        let expected: Vec<&str> = names
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|n| n.as_str().unwrap())
                            .collect();
                        assert_eq!(*read, expected, "{file}: names in order");
                    }
                    (read, expected) => panic!("{file}: names {read:?}, MXNet loaded {expected}"),
                }
                assert_eq!(read.arrays.len(), arrays.len(), "{file}: array count");
                for (index, (expected, actual)) in arrays.iter().zip(&read.arrays).enumerate() {
                    check_array(expected, actual, &format!("{file} array {index}"));
                }
            }
            Some("blob") => {
                let read = read_ndarray_blob(&bytes, &ParamsLimits::default())
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(arrays.len(), 1);
                check_array(&arrays[0], &read, &file);
            }
            other => panic!("{file}: unknown container {other:?}"),
        }
        checked.push(file);
    }
    // Guards against the directory going missing or the generator writing fewer files.
    assert!(
        checked.len() >= 19,
        "only {} fixtures found: {checked:?}",
        checked.len()
    );
    Ok(())
}

#[test]
fn fixture_files_are_tiny() -> TestResult {
    for entry in std::fs::read_dir(fixture_dir())? {
        let entry = entry?;
        assert!(
            entry.metadata()?.len() < 16 * 1024,
            "{:?} is too large",
            entry.path()
        );
    }
    Ok(())
}

#[test]
fn dict_files_pair_names_with_arrays() -> TestResult {
    let named = read_fixture("dict.params")?.into_named()?;
    let names: Vec<&str> = named.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["w", "b"]);
    Ok(())
}

#[test]
fn list_files_have_no_names() -> TestResult {
    let file = read_fixture("list.params")?;
    assert_eq!(file.names, None);
    assert!(matches!(
        file.into_named(),
        Err(ParamsError::SavedAsList { arrays: 2 })
    ));
    let single = read_fixture("single.params")?;
    assert_eq!((single.arrays.len(), single.names), (1, None));
    Ok(())
}

#[test]
fn empty_dict_and_empty_list_are_the_same_bytes() -> TestResult {
    assert_eq!(fixture("empty_dict.params")?, fixture("empty_list.params")?);
    let file = read_fixture("empty_dict.params")?;
    assert!(file.arrays.is_empty());
    assert_eq!(file.names, None);
    assert!(file.into_named()?.is_empty());
    Ok(())
}

#[test]
fn gluon_key_styles_split_as_mxnet_loaders_do() -> TestResult {
    let kinds = |name: &str| -> Result<Vec<(ParamKind, String)>, Box<dyn std::error::Error>> {
        Ok(read_fixture(name)?
            .into_named()?
            .iter()
            .map(|(key, _)| {
                let (kind, name) = split_key(key);
                (kind, name.to_owned())
            })
            .collect())
    };
    let exported = kinds("gluon_export.params")?;
    assert!(exported
        .iter()
        .any(|(kind, name)| *kind == ParamKind::Arg && name == "net_dense0_weight"));
    assert!(exported
        .iter()
        .any(|(kind, name)| *kind == ParamKind::Aux && name == "net_batchnorm0_running_var"));
    assert!(exported.iter().all(|(kind, _)| *kind != ParamKind::Plain));

    let structural = kinds("gluon_save_parameters.params")?;
    assert!(structural.iter().all(|(kind, _)| *kind == ParamKind::Plain));
    assert!(structural.iter().any(|(_, name)| name == "0.weight"));

    let full = kinds("gluon_collect_params.params")?;
    assert!(full.iter().all(|(kind, _)| *kind == ParamKind::Plain));
    assert!(full
        .iter()
        .any(|(_, name)| name == "net_batchnorm0_running_mean"));
    Ok(())
}

#[test]
fn numpy_records_keep_scalars_and_zero_size_arrays() -> TestResult {
    let named = read_fixture("numpy_v3.params")?.into_named()?;
    let scalar = named
        .iter()
        .find(|(name, _)| name == "scalar_f32")
        .and_then(|(_, array)| array.value.as_ref())
        .ok_or("no scalar")?;
    assert_eq!(scalar.shape(), &[] as &[usize]);
    assert_eq!(scalar.to_dense()?.to_f32_vec(), vec![3.5]);
    assert!(named
        .iter()
        .all(|(_, array)| array.version == RecordVersion::V3));
    Ok(())
}

#[test]
fn contexts_are_recorded_as_written() -> TestResult {
    let named = read_fixture("contexts.params")?.into_named()?;
    let shown: Vec<String> = named
        .iter()
        .map(|(_, array)| array.context.to_string())
        .collect();
    assert_eq!(
        shown,
        ["cpu(3)", "cpu_pinned(0)", "cpu_shared(0)", "cpu_shared(2)"]
    );
    Ok(())
}
