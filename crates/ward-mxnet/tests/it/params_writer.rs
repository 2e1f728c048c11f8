//! The `.params` writer: what it writes reads back to the same arrays for every dtype, and
//! is byte for byte what MXNet 1.9.1 itself wrote for the same arrays (every dict file of
//! dense `cpu(0)` V2 records among the fixtures that `tools/make_params_fixtures.py`,
//! `tools/make_model_fixtures.py` and `tools/make_op_fixtures.py` made with MXNet).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use ward_core::{DType, Tensor};
use ward_mxnet::limits::ParamsLimits;
use ward_mxnet::params::{
    read_params, write_params, Context, ParamsWriteError, RecordVersion, StoredArray,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Named dense tensors, if the file is a dict of dense `cpu(0)` V2 records: what
/// `mx.nd.save` writes in legacy-shape mode, and so what the writer must reproduce.
fn writable(bytes: &[u8]) -> Option<Vec<(String, Tensor)>> {
    let file = read_params(bytes, &ParamsLimits::default()).ok()?;
    file.names.as_ref()?;
    let mut out = Vec::new();
    for (name, array) in file.into_named().ok()? {
        if array.version != RecordVersion::V2 || array.context != Context::CPU {
            return None;
        }
        match array.value? {
            StoredArray::Dense(t) => out.push((name, t)),
            _ => return None,
        }
    }
    Some(out)
}

fn params_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo().join("tests/fixtures/params")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "params") {
            files.push(path);
        }
    }
    for dir in ["tests/fixtures/models", "tests/fixtures/ops"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path().join("model-0000.params");
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_writer_reproduces_mxnets_bytes() {
    let mut compared = Vec::new();
    for path in params_files() {
        let bytes = std::fs::read(&path).unwrap();
        let Some(arrays) = writable(&bytes) else {
            continue;
        };
        let named: Vec<(&str, &Tensor)> = arrays.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let written = write_params(&named).unwrap();
        assert!(
            written == bytes,
            "{}: the writer's {} bytes differ from MXNet's {} (first at {:?})",
            path.display(),
            written.len(),
            bytes.len(),
            written.iter().zip(&bytes).position(|(a, b)| a != b)
        );
        compared.push(path);
    }
    let names: Vec<String> = compared
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    // Every dtype (with NaN, ±inf, subnormals) and every shape kind (0-size, 1-D, 6-D).
    for must in [
        "params/dtypes.params",
        "params/shapes.params",
        "params/gluon_export.params",
        "models/lenet_module/",
    ] {
        assert!(
            names.iter().any(|n| n.contains(must)),
            "{must} was not compared"
        );
    }
    assert!(
        compared.len() >= 90,
        "only {} files compared",
        compared.len()
    );
}

fn tensor_of(dtype: DType, shape: Vec<usize>, raw: &[u8]) -> Tensor {
    let len = shape.iter().product::<usize>() * dtype.size();
    let mut bytes: Vec<u8> = raw.iter().cycle().take(len).copied().collect();
    if dtype == DType::Bool {
        bytes.iter_mut().for_each(|b| *b &= 1);
    }
    if raw.is_empty() {
        bytes.resize(len, 0);
    }
    Tensor::from_bytes(dtype, shape, bytes).unwrap()
}

fn dtype() -> impl Strategy<Value = DType> {
    proptest::sample::select(DType::ALL.to_vec())
}

proptest! {
    #[test]
    fn what_is_written_reads_back(
        specs in proptest::collection::vec(
            (dtype(), proptest::collection::vec(0usize..4, 1..5), proptest::collection::vec(any::<u8>(), 0..64)),
            0..6,
        )
    ) {
        let arrays: Vec<(String, Tensor)> = specs
            .into_iter()
            .enumerate()
            .map(|(i, (dtype, shape, raw))| (format!("arg:p{i}_{dtype}"), tensor_of(dtype, shape, &raw)))
            .collect();
        let named: Vec<(&str, &Tensor)> = arrays.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let bytes = write_params(&named).unwrap();
        let file = read_params(&bytes, &ParamsLimits::default()).unwrap();
        if arrays.is_empty() {
            // MXNet writes an empty dict as an empty list.
            prop_assert!(file.arrays.is_empty() && file.names.is_none());
        } else {
            let back = writable(&bytes).expect("a dict of dense cpu(0) V2 records");
            prop_assert_eq!(back, arrays);
        }
    }
}

#[test]
fn every_dtype_reads_back_bit_for_bit() {
    let raw: Vec<u8> = (0u8..=255).rev().collect();
    let arrays: Vec<(String, Tensor)> = DType::ALL
        .iter()
        .map(|&d| (d.name().to_string(), tensor_of(d, vec![2, 3, 5], &raw)))
        .chain([(
            "empty".to_string(),
            tensor_of(DType::F32, vec![2, 0, 3], &[]),
        )])
        .collect();
    let named: Vec<(&str, &Tensor)> = arrays.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let bytes = write_params(&named).unwrap();
    assert_eq!(writable(&bytes).unwrap(), arrays);
}

#[test]
fn what_mxnet_cannot_hold_is_refused() {
    let scalar = Tensor::from_f32(vec![], &[1.0]).unwrap();
    let err = write_params(&[("arg:s", &scalar)]).unwrap_err();
    assert_eq!(
        err,
        ParamsWriteError::Scalar {
            name: "arg:s".into()
        }
    );
    assert!(err.to_string().contains("0-d"), "{err}");

    let v = Tensor::from_f32(vec![1], &[1.0]).unwrap();
    let err = write_params(&[("arg:w", &v), ("arg:w", &v)]).unwrap_err();
    assert_eq!(
        err,
        ParamsWriteError::DuplicateName {
            name: "arg:w".into()
        }
    );
}

#[test]
fn an_empty_list_is_the_header_alone() {
    let bytes = write_params::<&str>(&[]).unwrap();
    let mut want = Vec::new();
    for word in [0x112u64, 0, 0, 0] {
        want.extend_from_slice(&word.to_le_bytes());
    }
    assert_eq!(bytes, want);
}
