//! The two-step path: `stage` checks borrowed inputs where they lie and copies each once
//! into the engine's own tensors; `run_staged` runs them, reading nothing of the caller's.
//! Its answers are the owned path's, bit for bit, and those of the ward that recorded the
//! package fixtures.

use crate::support;

use std::path::Path;

use support::{manifest, weights};
use ward_core::{npy, DType, Tensor, TensorView};
use ward_exec::{ExecError, LoadedPackage, StagedInputs, TractBackend};
use ward_package::{write_package, InputLimits, Trust, TrustPolicy};

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

fn open(parent: &Path, name: &str) -> LoadedPackage {
    let dir = parent.join(name);
    let weights: Vec<_> = weights()
        .into_iter()
        .filter(|(n, _)| n != "steps")
        .collect();
    write_package(&dir, &manifest(), GRAPH, &weights).unwrap();
    LoadedPackage::open(
        &dir,
        &Trust::AllowUnsigned,
        &Default::default(),
        std::sync::Arc::new(TractBackend::new(1).unwrap()),
    )
    .unwrap()
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn bits(outputs: &[(String, Tensor)]) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    outputs
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.bytes().to_vec()))
        .collect()
}

#[test]
fn staged_inputs_own_their_bytes() {
    fn owned_and_sendable<T: Send + 'static>() {}
    owned_and_sendable::<StagedInputs>();

    let parent = tempfile::tempdir().unwrap();
    let package = open(parent.path(), "a");
    let mut buffer = le_bytes(&[1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.0]);
    let view = TensorView::new(DType::F32, &[2, 4], &buffer).unwrap();
    let staged = package
        .stage(&[("data", view)], &InputLimits::default())
        .unwrap();
    assert_eq!(staged.shapes(), &[vec![2, 4]]);
    // The caller's buffer changes (another Python thread writing the array) and goes.
    buffer.fill(0xff);
    drop(buffer);
    let outputs = package.run_staged(staged).unwrap();
    let (name, out) = &outputs[0];
    assert_eq!(name, "out");
    assert_eq!(out.shape(), &[2, 2]);
    // fc1: every weight 0.5, biases 0 and 1.
    assert_eq!(out.to_f32_vec(), vec![5.0, 6.0, 0.75, 1.75]);
}

#[test]
fn the_staged_path_answers_as_the_owned_path_does_bit_for_bit() {
    let parent = tempfile::tempdir().unwrap();
    let package = open(parent.path(), "a");
    let values: Vec<f32> = (0..4 * 7).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    let tensor = Tensor::from_f32(vec![7, 4], &values).unwrap();
    let limits = InputLimits::default();

    let staged = package.stage(&[("data", tensor.view())], &limits).unwrap();
    let by_stage = package.run_staged(staged).unwrap();
    let checked = package
        .check_inputs(vec![("data".into(), tensor.clone())], &limits)
        .unwrap();
    let by_check = package.run(checked).unwrap();
    let by_predict = package.predict(vec![("data".into(), tensor)]).unwrap();
    assert_eq!(bits(&by_stage), bits(&by_check));
    assert_eq!(bits(&by_stage), bits(&by_predict));
}

#[test]
fn a_staged_view_is_checked_as_a_tensor_is() {
    let parent = tempfile::tempdir().unwrap();
    let package = open(parent.path(), "a");
    let limits = InputLimits::default();
    let nan = le_bytes(&[1.0, f32::NAN, 0.0, 0.0]);
    let three = le_bytes(&[1.0, 2.0, 3.0]);
    let cases: [(&str, DType, &[usize], &[u8]); 4] = [
        ("data", DType::F32, &[1, 4], &nan),
        ("data", DType::F32, &[1, 3], &three),
        ("data", DType::I32, &[1, 3], &three),
        ("other", DType::F32, &[1, 3], &three),
    ];
    for (name, dtype, shape, bytes) in cases {
        let view = TensorView::new(dtype, shape, bytes).unwrap();
        let staged = package.stage(&[(name, view)], &limits).unwrap_err();
        let owned = package
            .check_inputs(vec![(name.into(), view.to_tensor())], &limits)
            .unwrap_err();
        assert!(matches!(staged, ExecError::Input(_)), "{staged}");
        assert_eq!(staged.to_string(), owned.to_string());
    }
    // Missing, and given twice.
    let ok = le_bytes(&[0.0; 4]);
    let view = TensorView::new(DType::F32, &[1, 4], &ok).unwrap();
    assert!(matches!(
        package.stage(&[], &limits),
        Err(ExecError::Input(_))
    ));
    assert!(matches!(
        package.stage(&[("data", view), ("data", view)], &limits),
        Err(ExecError::Input(_))
    ));
    // Over the element limit: refused before any copy.
    let tight = InputLimits { max_elements: 3 };
    assert!(matches!(
        package.stage(&[("data", view)], &tight),
        Err(ExecError::Input(_))
    ));
}

#[test]
fn inputs_staged_by_one_package_do_not_run_in_another() {
    let parent = tempfile::tempdir().unwrap();
    let a = open(parent.path(), "a");
    let b = open(parent.path(), "b");
    let bytes = le_bytes(&[0.0; 4]);
    let view = TensorView::new(DType::F32, &[1, 4], &bytes).unwrap();
    let staged = a.stage(&[("data", view)], &InputLimits::default()).unwrap();
    let err = b.run_staged(staged).unwrap_err();
    assert!(matches!(err, ExecError::ForeignInputs), "{err}");
}

/// The packages ward wrote before manifest format 2 (tools/make_v1_packages.sh), with the
/// outputs that ward computed: the staged path still gives them (to a few ulps where
/// the CPU's instruction set differs from the recording machine's).
#[test]
fn the_staged_path_gives_the_recorded_outputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let packages = root.join("packages");
    let trust = Trust::Policy(TrustPolicy::load(&packages.join("v1.pub")).unwrap());
    for name in ["lenet_module", "text_lstm"] {
        let package = LoadedPackage::open(
            &packages.join(name),
            &trust,
            &Default::default(),
            std::sync::Arc::new(TractBackend::new(1).unwrap()),
        )
        .unwrap();
        let input = std::fs::read(root.join("models").join(name).join("input-data.npy")).unwrap();
        let input = npy::read_npy(&input).unwrap();
        let staged = package
            .stage(&[("data", input.view())], &InputLimits::default())
            .unwrap();
        let outputs = package.run_staged(staged).unwrap();
        let want = std::fs::read(packages.join(format!("{name}-output.npy"))).unwrap();
        let want = npy::read_npy(&want).unwrap();
        assert_eq!(outputs.len(), 1, "{name}");
        let got = &outputs[0].1;
        assert_eq!(
            got.shape(),
            want.shape(),
            "{name}: the output's shape changed"
        );
        // Byte for byte on the machine that wrote the fixture (AVX-512); tract's AVX2+FMA
        // matrix kernels sum in another order, a few ulps away.
        for (i, (g, w)) in got.to_f32_vec().iter().zip(want.to_f32_vec()).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{name}: output {i} changed from {w} to {g}"
            );
        }
    }
}

fn open_fixture_package(name: &str) -> LoadedPackage {
    let packages = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/packages");
    let trust = Trust::Policy(TrustPolicy::load(&packages.join("v1.pub")).unwrap());
    LoadedPackage::open(
        &packages.join(name),
        &trust,
        &Default::default(),
        std::sync::Arc::new(TractBackend::new(1).unwrap()),
    )
    .unwrap()
}

fn fixture_input(name: &str) -> Tensor {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models");
    npy::read_npy(&std::fs::read(root.join(name).join("input-data.npy")).unwrap()).unwrap()
}

/// The input with its two rows swapped: another valid input of the same shape.
fn swapped(t: &Tensor) -> Tensor {
    let half = t.bytes().len() / 2;
    let (a, b) = t.bytes().split_at(half);
    Tensor::from_bytes(t.dtype(), t.shape().to_vec(), [b, a].concat()).unwrap()
}

fn predict(package: &LoadedPackage, input: &Tensor) -> Tensor {
    let staged = package
        .stage(&[("data", input.view())], &InputLimits::default())
        .unwrap();
    package.run_staged(staged).unwrap().remove(0).1
}

/// A plan reuses its run state from one call to the next (when no op keeps state of its
/// own): every call still answers as a fresh plan does, bit for bit, whatever the calls
/// before it computed, for a model without op state (LeNet) and one with (an LSTM, whose
/// hidden state must not carry over).
#[test]
fn each_call_answers_as_a_fresh_plan_does() {
    for name in ["lenet_module", "text_lstm"] {
        let package = open_fixture_package(name);
        let x = fixture_input(name);
        let y = swapped(&x);
        let first = predict(&package, &x);
        let other = predict(&package, &y);
        assert_eq!(predict(&package, &x), first, "{name}: x after y");
        assert_eq!(predict(&package, &y), other, "{name}: y after x");
        assert_eq!(
            predict(&open_fixture_package(name), &y),
            other,
            "{name}: fresh"
        );
        assert_ne!(first, other, "{name}");
    }
}

/// Threads calling one package at once each get the single-threaded answer, bit for bit.
#[test]
fn threads_calling_at_once_get_the_single_threaded_answers() {
    for name in ["lenet_module", "text_lstm"] {
        let package = open_fixture_package(name);
        let inputs = [fixture_input(name), swapped(&fixture_input(name))];
        let want: Vec<Tensor> = inputs.iter().map(|x| predict(&package, x)).collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (package, inputs, want) = (&package, &inputs, &want);
                s.spawn(move || {
                    for i in 0..20 {
                        let k = (t + i) % 2;
                        assert_eq!(predict(package, &inputs[k]), want[k], "{name}");
                    }
                });
            }
        });
    }
}
