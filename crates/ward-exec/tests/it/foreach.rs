//! MXNet's `_foreach` fixtures (`tools/make_foreach_fixtures.py`), unrolled at import, on
//! the tract backend: every output within 1e-5 relative of MXNet's, with a fixed batch
//! and with the batch declared variable where the loop length stays fixed. (The
//! interpreter, the names and the refusals: ward-mxnet's `foreach` test.)

use std::path::{Path, PathBuf};

use crate::models::{read, run_fixture, Meta};

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/foreach")
        .join(case)
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
    let declare = |shape: &[i64]| {
        let mut shape = shape.to_vec();
        if variable_batch {
            let batch = if shape.len() == 3 { 1 } else { 0 };
            shape[batch] = -1;
        }
        shape
    };
    for (k, (got, want)) in run_fixture(&dir(case), &label, declare).iter().enumerate() {
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
