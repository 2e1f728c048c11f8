//! The tiny package the integration tests write and read.
#![allow(dead_code)]

use std::path::Path;

use ward_core::{DType, Tensor};
use ward_package::{
    FileDigest, FileSizes, InputSpec, Manifest, Origin, OutputSpec, GRAPH_FILE, WEIGHTS_FILE,
};

pub const MODEL_NAME: &str = "tiny-mlp";

/// A manifest with one input `data` [-1, 4] and one output `out` [-1, 2].
pub fn manifest() -> Manifest {
    Manifest::new(
        MODEL_NAME,
        "3",
        1_715_000_000,
        Origin {
            framework: "mxnet".into(),
            framework_version: Some("1.9.1".into()),
            files: vec![FileDigest::of("tiny-symbol.json", b"{\"nodes\": []}")],
        },
        vec![InputSpec {
            name: "data".into(),
            dtype: DType::F32,
            shape: vec![-1, 4],
            range: None,
            allow_nonfinite: false,
        }],
        vec![OutputSpec {
            name: "out".into(),
            dtype: DType::F32,
            shape: vec![-1, 2],
        }],
    )
}

/// Weights of the dense layer (its second bias `bias`) and an i64 scalar.
pub fn weights_with(bias: f32) -> Vec<(String, Tensor)> {
    vec![
        (
            "fc1_weight".into(),
            Tensor::from_f32(vec![2, 4], &[0.5; 8]).unwrap(),
        ),
        (
            "fc1_bias".into(),
            Tensor::from_f32(vec![2], &[0.0, bias]).unwrap(),
        ),
        (
            "steps".into(),
            Tensor::from_bytes(DType::I64, vec![], 7i64.to_le_bytes().to_vec()).unwrap(),
        ),
    ]
}

pub fn weights() -> Vec<(String, Tensor)> {
    weights_with(1.0)
}

/// `manifest` as written into the package at `dir`: with the sizes of its files recorded.
pub fn as_written(mut manifest: Manifest, dir: &Path) -> Manifest {
    let size = |f: &str| std::fs::metadata(dir.join(f)).unwrap().len();
    manifest.file_sizes = Some(FileSizes {
        graph: size(GRAPH_FILE),
        weights: size(WEIGHTS_FILE),
    });
    manifest
}
