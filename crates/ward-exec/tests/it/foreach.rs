//! MXNet's `_foreach` fixtures (`tools/make_foreach_fixtures.py`), unrolled at import, on
//! the tract backend: every output within 1e-5 relative of MXNet's, with a fixed batch
//! and with the batch declared variable where the loop length stays fixed. (The
//! interpreter, the names and the refusals: ward-mxnet's `foreach` test.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use ward_core::{npy, DType, Tensor};
use ward_exec::{Executable, TractBackend, WeightSet};
use ward_graph::ir::InputRole;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;

#[derive(Deserialize)]
struct Meta {
    inputs: Vec<MetaInput>,
    outputs: Vec<String>,
}

#[derive(Deserialize)]
struct MetaInput {
    name: String,
    shape: Vec<i64>,
}

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/foreach")
        .join(case)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(case: &str) {
    check_declared(case, false);
    // Sequences (T, B, C) and states (B, H): the batch may vary, the length may not.
    let meta: Meta = serde_json::from_slice(&read(&dir(case).join("meta.json"))).unwrap();
    if meta.inputs.iter().all(|i| i.shape.len() >= 2) && VARIABLE_BATCH.contains(&case) {
        check_declared(case, true);
    }
}

/// Cases whose every input has its batch at axis 1 (rank 3) or 0 (rank 2).
const VARIABLE_BATCH: &[&str] = &[
    "rnn_tanh",
    "rnn_len5_batch3",
    "lstm",
    "lstm_clip_copy",
    "gru",
    "elmo_like",
    "gluon_rnn",
];

fn check_declared(case: &str, variable_batch: bool) {
    let label = format!("{case} (variable batch: {variable_batch})");
    let dir = dir(case);
    let meta: Meta = serde_json::from_slice(&read(&dir.join("meta.json"))).unwrap();
    let symbol = read_symbol(
        &read(&dir.join("model-symbol.json")),
        &SymbolLimits::default(),
    )
    .unwrap();
    let params = read_params(
        &read(&dir.join("model-0000.params")),
        &ParamsLimits::default(),
    )
    .unwrap();
    let declared: Vec<DeclaredInput> = meta
        .inputs
        .iter()
        .map(|i| {
            let mut shape = i.shape.clone();
            if variable_batch {
                let batch = if shape.len() == 3 { 1 } else { 0 };
                shape[batch] = -1;
            }
            DeclaredInput {
                name: i.name.clone(),
                dtype: DType::F32,
                shape,
            }
        })
        .collect();
    let imported = import(&symbol, params, &declared)
        .unwrap_or_else(|e| panic!("{label}: import failed: {e}"));
    let names: Vec<&String> = imported.graph.outputs.iter().map(|o| &o.name).collect();
    assert_eq!(names, meta.outputs.iter().collect::<Vec<_>>(), "{label}");
    let graph = imported.graph;
    let weights: HashMap<String, Tensor> = imported.weights.into_iter().collect();
    let weights = WeightSet::new(&graph, weights).unwrap();
    let model = Executable::new(graph, weights, Arc::new(TractBackend::new(1).unwrap())).unwrap();
    let inputs: Vec<Tensor> = model
        .graph()
        .inputs
        .iter()
        .filter(|i| i.role == InputRole::Data)
        .map(|i| npy::read_npy(&read(&dir.join(format!("input-{}.npy", i.name)))).unwrap())
        .collect();
    let outputs = model
        .run(&inputs)
        .unwrap_or_else(|e| panic!("{label}: run failed: {e}"));
    assert_eq!(outputs.len(), meta.outputs.len(), "{label}");
    for (k, got) in outputs.iter().enumerate() {
        let want = npy::read_npy(&read(&dir.join(format!("output-{k}.npy")))).unwrap();
        assert_eq!(got.shape(), want.shape(), "{label}: output {k} shape");
        for (i, (g, w)) in got.to_f32_vec().iter().zip(want.to_f32_vec()).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{label}: output {k}[{i}] is {g}, MXNet's {w}"
            );
        }
    }
}

macro_rules! fixture_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*
        const CASES: &[&str] = &[$(stringify!($name)),*];
    };
}

fixture_tests!(
    cumsum,
    elmo_like,
    free_var_data_input,
    gru,
    ignores_state,
    internal_data,
    length_one,
    lstm,
    lstm_clip_copy,
    rnn_len5_batch3,
    rnn_relu,
    rnn_tanh,
    running_max,
    shared_free_var,
    state_is_data,
    states_only,
    three_states,
    two_data,
    two_loops,
    two_outputs,
    vector_steps,
    zeros_state,
    gluon_rnn,
);

#[test]
fn every_fixture_is_listed() {
    for entry in std::fs::read_dir(dir("")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            CASES.contains(&name.as_str()),
            "fixture {name} is not tested"
        );
    }
}
