//! Every operator, and every attribute value, the MXNet importer accepts, checked three
//! ways on the one-operator cases MXNet 1.9.1 recorded (`tools/make_op_fixtures.py`,
//! `tests/fixtures/ops/`), each imported exactly as a user's model would be:
//!
//! 1. the reference interpreter against MXNet's outputs,
//! 2. the tract backend against MXNet's outputs,
//! 3. the tract backend against the reference interpreter on fresh random inputs, so a
//!    lowering is held to the operator's meaning beyond the one recorded input.
//!
//! A case that cannot be checked must be listed, with its reason, in [`NOT_COMPARED`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use ward_core::{npy, DType, Tensor};
use ward_exec::{Executable, TractBackend, WeightSet};
use ward_graph::interp::eval;
use ward_graph::interp::Array;
use ward_graph::ir::InputRole;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;

/// Cases whose MXNet outputs ward does not reproduce on purpose, and why.
const NOT_COMPARED: &[(&str, &str)] = &[(
    "softmaxoutput_flatten_4d",
    "MXNet 1.9.1 from PyPI normalises 4-D data over the last axis in its oneDNN kernel; its \
     own CPU kernel, its GPU kernel and its documentation flatten all axes after the first, \
     and so does ward",
)];

/// Cases the importer refuses by name, and why: an attribute value ward does not
/// implement is refused, never computed differently.
const REFUSED: &[(&str, &str)] = &[("bn_output_mean_var", "output_mean_var")];

#[derive(Deserialize)]
struct Index {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    op: String,
    is_train: bool,
}

#[derive(Deserialize)]
struct Meta {
    inputs: Vec<MetaInput>,
}

#[derive(Deserialize)]
struct MetaInput {
    name: String,
    /// float32 unless MXNet takes the input in another type (softmax's lengths).
    #[serde(default = "float32")]
    dtype: String,
    shape: Vec<usize>,
}

fn float32() -> String {
    "float32".into()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ops")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A case imported: the executable on tract, the weights and its data inputs' names.
struct Imported {
    exec: Executable,
    weights: Vec<Tensor>,
    inputs: Vec<Tensor>,
}

fn load(name: &str) -> Result<Imported, String> {
    let dir = fixtures().join(name);
    let meta: Meta = serde_json::from_slice(&read(&dir.join("meta.json"))).unwrap();
    let symbol = read_symbol(&read(&dir.join("model-symbol.json")), &Default::default())
        .map_err(|e| e.to_string())?;
    let params = read_params(&read(&dir.join("model-0000.params")), &Default::default())
        .map_err(|e| e.to_string())?;
    let declared: Vec<DeclaredInput> = meta
        .inputs
        .iter()
        .map(|i| DeclaredInput {
            name: i.name.clone(),
            dtype: i.dtype.parse().unwrap(),
            shape: i.shape.iter().map(|&d| d as i64).collect(),
        })
        .collect();
    let imported = import(&symbol, params, &declared).map_err(|e| e.to_string())?;
    let graph = imported.graph;
    let inputs: Vec<Tensor> = graph
        .inputs
        .iter()
        .filter(|i| i.role == InputRole::Data)
        .map(|i| npy::read_npy(&read(&dir.join(format!("input-{}.npy", i.name)))).unwrap())
        .collect();
    let named: HashMap<String, Tensor> = imported.weights.into_iter().collect();
    let weights: Vec<Tensor> = graph
        .params
        .iter()
        .map(|p| named[&p.name].clone())
        .collect();
    let set = WeightSet::new(&graph, named).map_err(|e| e.to_string())?;
    let exec = Executable::new(graph, set, Arc::new(TractBackend::new(1).unwrap()))
        .map_err(|e| e.to_string())?;
    Ok(Imported {
        exec,
        weights,
        inputs,
    })
}

/// The worst difference of `got` from `want` in units of `max(1, max|want|)`; NaN must
/// meet NaN and infinities must match exactly.
fn distance(got: &[f64], want: &[f64]) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("{} values, expected {}", got.len(), want.len()));
    }
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(1f64, |m, v| m.max(v.abs()));
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() || w.is_infinite() || g.is_infinite() {
            if !(w.is_nan() && g.is_nan() || w == g) {
                return Err(format!("value {i}: {g} where {w} was expected"));
            }
            continue;
        }
        worst = worst.max((g - w).abs() / scale);
    }
    Ok(worst)
}

fn compare(what: &str, got: &[Array], want: &[Array], tolerance: f64) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} outputs, expected {}",
            got.len(),
            want.len()
        ));
    }
    let mut worst = 0f64;
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        if g.shape != w.shape {
            return Err(format!(
                "{what}: output {k} has shape {:?}, expected {:?}",
                g.shape, w.shape
            ));
        }
        let d = distance(&g.data, &w.data).map_err(|e| format!("{what}: output {k}: {e}"))?;
        if d > tolerance {
            return Err(format!(
                "{what}: output {k} is off by {d:e} (tolerance {tolerance:e})"
            ));
        }
        worst = worst.max(d);
    }
    Ok(worst)
}

fn arrays(tensors: &[Tensor]) -> Vec<Array> {
    tensors.iter().map(eval::array_of).collect()
}

/// Values in [-2, 2) from a seed, scrambled so that a misplaced value shows. An input of
/// another type than float32 (softmax's integer lengths) keeps its recorded values.
fn random_like(t: &Tensor, seed: u64) -> Tensor {
    if t.dtype() != DType::F32 {
        return t.clone();
    }
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..t.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_f32(t.shape().to_vec(), &values).unwrap()
}

#[test]
fn every_operator_agrees_with_mxnet_and_the_backend_with_the_interpreter() {
    let index: Index = serde_json::from_slice(&read(&fixtures().join("index.json"))).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut ops = std::collections::BTreeSet::new();
    let (mut worst_interp, mut worst_tract, mut worst_random) = (0f64, 0f64, 0f64);
    for case in &index.cases {
        // Training-mode forward passes (batch statistics) are checked by the training
        // engine's tests.
        if case.is_train {
            continue;
        }
        let name = case.name.as_str();
        let dir = fixtures().join(name);
        let imported = match load(name) {
            Ok(i) => i,
            Err(e) => {
                let expected = REFUSED
                    .iter()
                    .any(|(n, needle)| *n == name && e.contains(needle));
                if !expected {
                    failures.push(format!("{name}: refused by the importer: {e}"));
                }
                continue;
            }
        };
        let outputs = imported.exec.graph().outputs.len();
        let mxnet: Vec<Array> = (0..outputs)
            .map(|k| {
                eval::array_of(&npy::read_npy(&read(&dir.join(format!("output-{k}.npy")))).unwrap())
            })
            .collect();
        let graph = imported.exec.graph();
        let mut check = || -> Result<(), String> {
            let interp = eval::run(graph, &imported.weights, &imported.inputs)
                .map_err(|e| format!("interpreter: {e}"))?;
            let tract = imported
                .exec
                .run(&imported.inputs)
                .map_err(|e| format!("tract: {e}"))?;
            if !NOT_COMPARED.iter().any(|(n, _)| *n == name) {
                worst_interp =
                    worst_interp.max(compare("interpreter vs MXNet", &interp, &mxnet, 1e-5)?);
                worst_tract =
                    worst_tract.max(compare("tract vs MXNet", &arrays(&tract), &mxnet, 1e-4)?);
            }
            for seed in 1..=2u64 {
                let inputs: Vec<Tensor> = imported
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(i, t)| random_like(t, seed * 100 + i as u64))
                    .collect();
                let interp = eval::run(graph, &imported.weights, &inputs)
                    .map_err(|e| format!("interpreter on random inputs: {e}"))?;
                let tract = imported
                    .exec
                    .run(&inputs)
                    .map_err(|e| format!("tract on random inputs: {e}"))?;
                worst_random = worst_random.max(compare(
                    &format!("tract vs interpreter, random inputs {seed}"),
                    &arrays(&tract),
                    &interp,
                    1e-4,
                )?);
            }
            Ok(())
        };
        match check() {
            Ok(()) => {
                checked += 1;
                ops.insert(case.op.clone());
            }
            Err(e) => failures.push(format!("{name} ({}): {e}", case.op)),
        }
    }
    println!(
        "{checked} cases of {} operators; worst: interpreter {worst_interp:e}, tract {worst_tract:e}, tract vs interpreter {worst_random:e}",
        ops.len()
    );
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 200, "only {checked} cases were checked");
}

/// MXNet's box operators run in ward's own kernels: the lowered model holds ward's nodes,
/// which `ward export onnx` refuses, naming the node and the operator.
#[test]
fn box_operators_are_refused_by_the_onnx_export_by_name() {
    for (case, op) in [
        ("boxnms_default", "box_nms"),
        ("boxdec_0", "box_decode"),
        ("boxenc_0", "box_encode"),
        ("mbdet_default", "multibox_detection"),
        ("prop_score", "proposal"),
        ("mprop_default", "multi_proposal"),
    ] {
        let imported = load(case).unwrap();
        let shapes: Vec<Vec<usize>> = imported.inputs.iter().map(|t| t.shape().to_vec()).collect();
        let proto =
            ward_exec::onnx::lower(imported.exec.graph(), &imported.weights, &shapes).unwrap();
        let err = ward_exec::onnx::refuse_ward_nodes(&proto)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"op\"") && err.contains(op), "{case}: {err}");
        assert!(err.contains("ONNX"), "{case}: {err}");
    }
}
