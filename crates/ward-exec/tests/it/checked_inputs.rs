//! Inputs are validated once, by the package that runs them: `check_inputs` makes
//! `CheckedInputs`, `run` takes only those of its own package, and `join` keeps the
//! schema's guarantees for a batch.

use crate::support;

use std::path::Path;

use support::{manifest, weights};
use ward_core::Tensor;
use ward_exec::{ExecError, LoadedPackage};
use ward_package::{write_package, InputLimits, Manifest, Trust};

/// out = data · fc1_weightᵀ + fc1_bias: a dense layer of 2 units over 4 features.
const GRAPH: &[u8] = br#"{
    "format": "ward-graph", "version": 1,
    "inputs": [{"name": "data", "dtype": "f32"}],
    "params": [
        {"name": "fc1_weight", "dtype": "f32", "shape": [2, 4]},
        {"name": "fc1_bias", "dtype": "f32", "shape": [2]}
    ],
    "nodes": [{
        "name": "fc1",
        "op": {"type": "dense", "units": 2, "flatten": true, "bias": true},
        "inputs": [{"input": 0}, {"param": 0}, {"param": 1}]
    }],
    "outputs": [{"name": "out", "source": {"node": [0, 0]}}]
}"#;

fn open(parent: &Path, name: &str, manifest: &Manifest) -> LoadedPackage {
    let dir = parent.join(name);
    // The graph has no use for the support weights' i64 scalar.
    let weights: Vec<_> = weights()
        .into_iter()
        .filter(|(n, _)| n != "steps")
        .collect();
    write_package(&dir, manifest, GRAPH, &weights).unwrap();
    LoadedPackage::open(
        &dir,
        &Trust::AllowUnsigned,
        &Default::default(),
        std::sync::Arc::new(ward_exec::TractBackend::new(1).unwrap()),
    )
    .unwrap()
}

fn rows(values: &[[f32; 4]]) -> Vec<(String, Tensor)> {
    let flat: Vec<f32> = values.iter().flatten().copied().collect();
    vec![(
        "data".into(),
        Tensor::from_f32(vec![values.len(), 4], &flat).unwrap(),
    )]
}

fn output(result: Vec<(String, Tensor)>) -> (Vec<usize>, Vec<f32>) {
    let (name, t) = &result[0];
    assert_eq!(name, "out");
    (t.shape().to_vec(), t.to_f32_vec())
}

#[test]
fn bad_inputs_are_refused_before_anything_runs() {
    let parent = tempfile::tempdir().unwrap();
    let package = open(parent.path(), "a", &manifest());
    let limits = InputLimits::default();
    let three_wide = vec![(
        "data".to_string(),
        Tensor::from_f32(vec![1, 3], &[1.0, 2.0, 3.0]).unwrap(),
    )];
    let err = package.check_inputs(three_wide, &limits).unwrap_err();
    assert!(matches!(err, ExecError::Input(_)), "{err}");
    assert!(err.to_string().contains("\"data\""), "{err}");
    let nan = rows(&[[1.0, f32::NAN, 0.0, 0.0]]);
    let err = package.check_inputs(nan, &limits).unwrap_err();
    assert!(matches!(err, ExecError::Input(_)), "{err}");
    let tight = InputLimits { max_elements: 4 };
    let err = package
        .check_inputs(rows(&[[0.0; 4], [0.0; 4]]), &tight)
        .unwrap_err();
    assert!(matches!(err, ExecError::Input(_)), "{err}");
}

#[test]
fn inputs_checked_by_one_package_do_not_run_in_another() {
    let parent = tempfile::tempdir().unwrap();
    let a = open(parent.path(), "a", &manifest());
    let b = open(parent.path(), "b", &manifest());
    let checked = a
        .check_inputs(rows(&[[1.0, 2.0, 3.0, 4.0]]), &InputLimits::default())
        .unwrap();
    let err = b.run(checked).unwrap_err();
    assert!(matches!(err, ExecError::ForeignInputs), "{err}");

    let from_a = a
        .check_inputs(rows(&[[0.0; 4]]), &InputLimits::default())
        .unwrap();
    let from_b = b
        .check_inputs(rows(&[[0.0; 4]]), &InputLimits::default())
        .unwrap();
    assert!(!from_a.joins_with(&from_b));
    assert!(a.join(&[from_a, from_b]).is_none());
}

#[test]
fn a_joined_batch_gives_each_part_its_own_answer() {
    let parent = tempfile::tempdir().unwrap();
    let package = open(parent.path(), "a", &manifest());
    let limits = InputLimits::default();
    let first = [[1.0, 2.0, 3.0, 4.0]];
    let second = [[-1.0, 0.5, 0.0, 2.0], [3.0, 3.0, 3.0, 3.0]];
    let one = package.check_inputs(rows(&first), &limits).unwrap();
    let two = package.check_inputs(rows(&second), &limits).unwrap();
    assert_eq!((one.rows(), two.rows()), (1, 2));
    assert!(one.joins_with(&two));

    let joined = package.join(&[one, two]).unwrap();
    assert_eq!(joined.rows(), 3);
    let (shape, batched) = output(package.run(joined).unwrap());
    assert_eq!(shape, vec![3, 2]);
    let (_, alone_first) = output(package.predict(rows(&first)).unwrap());
    let (_, alone_second) = output(package.predict(rows(&second)).unwrap());
    assert_eq!(batched, [alone_first, alone_second].concat());
    // fc1: every weight 0.5, biases 0 and 1.
    assert_eq!(&batched[..2], &[5.0, 6.0]);
}

#[test]
fn a_fixed_first_dimension_is_never_joined() {
    let parent = tempfile::tempdir().unwrap();
    let mut fixed = manifest();
    fixed.inputs[0].shape = vec![1, 4];
    let package = open(parent.path(), "fixed", &fixed);
    let limits = InputLimits::default();
    let a = package.check_inputs(rows(&[[0.0; 4]]), &limits).unwrap();
    let b = package.check_inputs(rows(&[[1.0; 4]]), &limits).unwrap();
    assert!(package.join(&[a, b]).is_none());
}
