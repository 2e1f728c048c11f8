//! A package's outputs carry MXNet 1.9.1's names (`Symbol.list_outputs()`), in MXNet's
//! order: for the heads of `tests/fixtures/output_names` (an LSTM and a GRU returning
//! their states, SliceChannel with one and three outputs;
//! `tools/make_output_name_fixtures.py`) and for every model fixture (`meta.json`).

use std::path::{Path, PathBuf};

use ward_core::DType;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;

fn fixtures(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(kind)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The output names ward gives the export `symbol` + `params` with `inputs`.
fn imported_names(symbol: &Path, params: &Path, inputs: Vec<DeclaredInput>) -> Vec<String> {
    let symbol = read_symbol(&std::fs::read(symbol).unwrap(), &SymbolLimits::default()).unwrap();
    let params = read_params(&std::fs::read(params).unwrap(), &ParamsLimits::default()).unwrap();
    let imported = import(&symbol, params, &inputs).unwrap();
    imported
        .graph
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .collect()
}

fn declared(input: &serde_json::Value) -> DeclaredInput {
    DeclaredInput {
        name: input["name"].as_str().unwrap().to_string(),
        dtype: input["dtype"]
            .as_str()
            .unwrap_or("float32")
            .parse::<DType>()
            .unwrap(),
        shape: input["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect(),
    }
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn multi_output_heads_are_named_as_mxnet_lists_them() {
    let dir = fixtures("output_names");
    let expected = json(&dir.join("expected.json"));
    let cases = expected["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 4);
    for (case, want) in cases {
        let names = imported_names(
            &dir.join(format!("{case}-symbol.json")),
            &dir.join(format!("{case}-0000.params")),
            vec![declared(&want["input"])],
        );
        assert_eq!(names, strings(&want["outputs"]), "{case}");
    }
}

#[test]
fn every_model_fixture_keeps_mxnets_output_names() {
    let dir = fixtures("models");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let model = entry.unwrap().path();
        let meta_path = model.join("meta.json");
        if !meta_path.is_file() {
            continue;
        }
        let meta = json(&meta_path);
        let inputs = meta["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(declared)
            .collect();
        let names = imported_names(
            &model.join("model-symbol.json"),
            &model.join("model-0000.params"),
            inputs,
        );
        assert_eq!(names, strings(&meta["outputs"]), "{}", model.display());
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} model fixtures");
}
