//! MXNet's `_foreach` (`tools/make_foreach_fixtures.py`), unrolled at import: every
//! fixture imports with MXNet's output names and computes MXNet's numbers on the
//! reference interpreter (within 1e-5 relative); a loop whose length follows a variable
//! input dim, a malformed node and an unroll past the limit are refused by name. (Tract's
//! numbers on the same fixtures: ward-exec's `foreach` test.)

use std::path::{Path, PathBuf};

use serde_json::Value;
use ward_core::{npy, DType, Tensor};
use ward_graph::interp::eval::run;
use ward_graph::ir::InputRole;
use ward_mxnet::import::{import, DeclaredInput, Imported};
use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;

fn dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/foreach")
        .join(case)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn meta(case: &str) -> Value {
    serde_json::from_slice(&read(&dir(case).join("meta.json"))).unwrap()
}

fn symbol_json(case: &str) -> Value {
    serde_json::from_slice(&read(&dir(case).join("model-symbol.json"))).unwrap()
}

/// The fixture's inputs as declared in its meta.json, `edit` applied to each shape.
fn declared(case: &str, edit: impl Fn(&str, &mut Vec<i64>)) -> Vec<DeclaredInput> {
    meta(case)["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i["name"].as_str().unwrap().to_string();
            let mut shape: Vec<i64> = i["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            edit(&name, &mut shape);
            DeclaredInput {
                name,
                dtype: DType::F32,
                shape,
            }
        })
        .collect()
}

fn import_json(case: &str, symbol: &Value, inputs: &[DeclaredInput]) -> Result<Imported, String> {
    let symbol = read_symbol(
        &serde_json::to_vec(symbol).unwrap(),
        &SymbolLimits::default(),
    )
    .map_err(|e| e.to_string())?;
    let params = read_params(
        &read(&dir(case).join("model-0000.params")),
        &ParamsLimits::default(),
    )
    .unwrap();
    import(&symbol, params, inputs).map_err(|e| e.to_string())
}

/// Imports `case` with `inputs` and holds the interpreter's outputs to MXNet's.
fn check_with(case: &str, inputs: &[DeclaredInput]) {
    let imported = import_json(case, &symbol_json(case), inputs)
        .unwrap_or_else(|e| panic!("{case}: import failed: {e}"));
    let names: Vec<&str> = imported
        .graph
        .outputs
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let want_names: Vec<String> = meta(case)["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, want_names, "{case}: MXNet's list_outputs()");
    let weights: Vec<Tensor> = imported.weights.iter().map(|(_, t)| t.clone()).collect();
    let data: Vec<Tensor> = imported
        .graph
        .inputs
        .iter()
        .filter(|i| i.role == InputRole::Data)
        .map(|i| npy::read_npy(&read(&dir(case).join(format!("input-{}.npy", i.name)))).unwrap())
        .collect();
    let outputs = run(&imported.graph, &weights, &data)
        .unwrap_or_else(|e| panic!("{case}: the interpreter failed: {e}"));
    assert_eq!(outputs.len(), want_names.len(), "{case}");
    for (k, got) in outputs.iter().enumerate() {
        let want = npy::read_npy(&read(&dir(case).join(format!("output-{k}.npy")))).unwrap();
        assert_eq!(got.shape, want.shape(), "{case}: output {k} shape");
        for (i, (g, w)) in got.data.iter().zip(want.to_f64_vec()).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{case}: output {k}[{i}] is {g}, MXNet's {w}"
            );
        }
    }
}

fn check(case: &str) {
    check_with(case, &declared(case, |_, _| {}));
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
    let root = dir("");
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            CASES.contains(&name.as_str()),
            "fixture {name} is not tested"
        );
    }
}

/// A variable batch (axis 1 of the sequence, axis 0 of the states) leaves the loop
/// length fixed: the loop is unrolled and computes the same numbers.
#[test]
fn a_variable_batch_keeps_the_length_fixed() {
    for case in ["rnn_tanh", "lstm", "gluon_rnn"] {
        let inputs = declared(case, |name, shape| {
            let batch = if shape.len() == 3 { 1 } else { 0 };
            if name.starts_with('h') || name.starts_with('c') || name.starts_with("data") {
                shape[batch] = -1;
            }
        });
        check_with(case, &inputs);
        let imported = import_json(case, &symbol_json(case), &inputs).unwrap();
        assert_eq!(
            imported.output_shapes[0][0], 4,
            "{case}: the length is fixed"
        );
        assert_eq!(imported.output_shapes[0][1], -1, "{case}: the batch is not");
    }
}

/// Unrolled nodes are named after the loop, the step and the body's node.
#[test]
fn unrolled_nodes_name_the_loop_and_the_step() {
    let case = "cumsum";
    let imported = import_json(case, &symbol_json(case), &declared(case, |_, _| {})).unwrap();
    let names: Vec<&str> = imported
        .graph
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    for t in 0..5 {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("_foreach0/t{t}/"))),
            "no step {t} in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.starts_with("_foreach0/t5/")));
}

fn refused(case: &str, symbol: &Value, inputs: &[DeclaredInput], needles: &[&str]) {
    let err = match import_json(case, symbol, inputs) {
        Ok(_) => panic!("{case}: imported; expected a refusal naming {needles:?}"),
        Err(e) => e,
    };
    for needle in needles {
        assert!(err.contains(needle), "{err:?} does not name {needle:?}");
    }
}

#[test]
fn a_variable_loop_length_is_refused() {
    for case in ["rnn_tanh", "internal_data"] {
        let inputs = declared(case, |name, shape| {
            if name == "data" {
                // internal_data's sequence is (B, T, C), transposed inside the graph.
                let axis = if case == "internal_data" { 1 } else { 0 };
                shape[axis] = -1;
            }
        });
        let node = foreach_name(&symbol_json(case));
        refused(
            case,
            &symbol_json(case),
            &inputs,
            &[&node, "loop length", "variable"],
        );
    }
}

/// The name of `symbol`'s first `_foreach` node.
fn foreach_name(symbol: &Value) -> String {
    symbol["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["op"] == "_foreach")
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `rnn_tanh`'s symbol with `edit` applied to its `_foreach` node.
fn edited(edit: impl Fn(&mut Value)) -> Value {
    let mut symbol = symbol_json("rnn_tanh");
    let node = symbol["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["op"] == "_foreach")
        .unwrap();
    edit(node);
    symbol
}

fn refused_edit(edit: impl Fn(&mut Value), needles: &[&str]) {
    let case = "rnn_tanh";
    let symbol = edited(edit);
    let name = foreach_name(&symbol);
    let mut all = vec![name.as_str()];
    all.extend_from_slice(needles);
    refused(case, &symbol, &declared(case, |_, _| {}), &all);
}

#[test]
fn malformed_loops_are_refused_by_attribute() {
    let set = |key: &'static str, value: &'static str| {
        move |n: &mut Value| n["attrs"][key] = Value::String(value.into())
    };
    // rnn_tanh: inputs data, h0, wx, b, wh; 2 outputs, 1 state.
    refused_edit(set("in_data_locs", "[9]"), &["in_data_locs", "9"]);
    refused_edit(set("in_data_locs", "[-1]"), &["in_data_locs", "-1"]);
    refused_edit(
        set("in_state_locs", "[0]"),
        &["in_state_locs", "already bound"],
    );
    refused_edit(set("remain_locs", "[1, 2]"), &["remain_locs"]);
    refused_edit(set("num_args", "5"), &["num_args", "5"]);
    refused_edit(set("num_args", "x"), &["num_args"]);
    refused_edit(set("num_outputs", "3"), &["num_outputs"]);
    refused_edit(set("num_out_data", "3"), &["num_out_data"]);
    refused_edit(set("in_data_locs", "[]"), &["in_data_locs"]);
    refused_edit(
        |n| {
            n["attrs"].as_object_mut().unwrap().remove("remain_locs");
        },
        &["remain_locs"],
    );
    refused_edit(set("unknown_attr", "1"), &["unknown_attr"]);
    // The body's outputs must be what num_outputs says.
    refused_edit(
        |n| {
            let heads = n["subgraphs"][0]["heads"].as_array_mut().unwrap();
            heads.pop();
        },
        &["num_outputs", "1 outputs"],
    );
    refused_edit(
        |n| {
            n["subgraphs"].as_array_mut().unwrap().clear();
        },
        &["subgraphs"],
    );
}

/// MXNet refuses a body whose new state has another shape than the state it read.
#[test]
fn a_state_that_changes_shape_is_refused() {
    let case = "two_outputs";
    let mut symbol = symbol_json(case);
    let node = symbol["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["op"] == "_foreach")
        .unwrap();
    // The state becomes the step's row sums, (2,) where it was (2, 3).
    let heads = node["subgraphs"][0]["heads"].as_array_mut().unwrap();
    heads.swap(1, 2);
    refused(
        case,
        &symbol,
        &declared(case, |_, _| {}),
        &["_foreach20", "state 0", "[2]", "[2, 3]"],
    );
}

#[test]
fn an_unroll_past_the_limit_is_refused() {
    let case = "cumsum";
    let inputs = declared(case, |name, shape| {
        if name == "data" {
            shape[0] = 600_000;
            shape[1] = 1;
            shape[2] = 1;
        } else {
            *shape = vec![1, 1];
        }
    });
    refused(
        case,
        &symbol_json(case),
        &inputs,
        &["_foreach0", "600000 steps", "limit"],
    );
}

#[test]
fn while_loop_and_cond_are_refused_as_control_flow() {
    for op in ["_while_loop", "_cond"] {
        let symbol = edited(|n| n["op"] = Value::String(op.into()));
        let err = import_json("rnn_tanh", &symbol, &declared("rnn_tanh", |_, _| {})).unwrap_err();
        assert!(err.contains(op) && err.contains("control flow"), "{err}");
    }
}
