//! Parameters missing from the `.params` file get MXNet's shapes: for every model
//! fixture, the shapes inferred with no weights at all (or with half of them) are the
//! shapes MXNet saved, auxiliary states included; a variable in no weight slot is still
//! refused.

use std::path::PathBuf;

use ward_core::DType;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
use ward_mxnet::new_params::{import_with_new_params, NewParam};
use ward_mxnet::params::{read_params, split_key, ParamKind, ParamsFile};
use ward_mxnet::symbol::{read_symbol, Symbol};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models")
        .join(name)
}

/// The fixture's symbol, its params and its declared inputs (the batch dim variable).
fn load(name: &str) -> (Symbol, ParamsFile, Vec<DeclaredInput>) {
    let dir = fixture(name);
    let symbol = read_symbol(
        &std::fs::read(dir.join("model-symbol.json")).unwrap(),
        &SymbolLimits::default(),
    )
    .unwrap();
    let params = read_params(
        &std::fs::read(dir.join("model-0000.params")).unwrap(),
        &ParamsLimits::default(),
    )
    .unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let inputs = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let mut shape: Vec<i64> = i["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            shape[0] = -1;
            DeclaredInput {
                name: i["name"].as_str().unwrap().into(),
                dtype: DType::F32,
                shape,
            }
        })
        .collect();
    (symbol, params, inputs)
}

/// The file's parameters: name, shape, and whether saved as `aux:`.
fn saved(params: &ParamsFile) -> Vec<NewParam> {
    params
        .clone()
        .into_named()
        .unwrap()
        .into_iter()
        .map(|(key, array)| {
            let (kind, name) = split_key(&key);
            let tensor = array.value.unwrap().to_dense().unwrap();
            NewParam {
                name: name.into(),
                shape: tensor.shape().to_vec(),
                aux: kind == ParamKind::Aux,
            }
        })
        .collect()
}

fn keep(params: &ParamsFile, pred: impl Fn(usize) -> bool) -> ParamsFile {
    let named = params.clone().into_named().unwrap();
    let (names, arrays) = named
        .into_iter()
        .enumerate()
        .filter(|(k, _)| pred(*k))
        .map(|(_, p)| p)
        .unzip();
    ParamsFile {
        arrays,
        names: Some(names),
    }
}

#[test]
fn every_fixture_gets_mxnets_shapes_from_no_weights_or_half() {
    // The fused-RNN fixtures keep all their weights in one flat vector whose size MXNet
    // computes from the layer layout: no shape rule here, so they are not trained from
    // scratch (refused, below).
    for name in [
        "lenet_module",
        "lenet_gluon",
        "mlp",
        "mobilenet0_25",
        "mobilenetv2_0_25",
        "resnet18_v1",
        "squeezenet1_1",
    ] {
        let (symbol, params, inputs) = load(name);
        let mut expected = saved(&params);
        // Gluon saves without arg:/aux: prefixes: aux-ness then comes from the slot.
        let prefixed = params
            .names
            .as_ref()
            .is_some_and(|n| n.iter().all(|k| k.contains(':')));
        for (label, given) in [
            ("none", keep(&params, |_| false)),
            ("even", keep(&params, |k| k % 2 == 1)),
        ] {
            let (imported, new) = import_with_new_params(&symbol, given, &inputs)
                .unwrap_or_else(|e| panic!("{name} ({label} given): {e}"));
            for p in &new {
                let saved = expected
                    .iter()
                    .find(|s| s.name == p.name)
                    .unwrap_or_else(|| panic!("{name}: {} is not in the file", p.name));
                assert_eq!(saved.shape, p.shape, "{name} ({label}): {}", p.name);
                if prefixed {
                    assert_eq!(saved.aux, p.aux, "{name} ({label}): {}", p.name);
                }
            }
            // Every parameter the graph reads is either given or new, with its shape.
            let reference = import(&symbol, params.clone(), &inputs).unwrap();
            assert_eq!(
                imported.graph.params.len(),
                reference.graph.params.len(),
                "{name} ({label})"
            );
            for (a, b) in imported.graph.params.iter().zip(&reference.graph.params) {
                assert_eq!((&a.name, &a.shape, a.role), (&b.name, &b.shape, b.role));
            }
            if label == "none" {
                expected.retain(|s| reference.graph.params.iter().any(|p| p.name == s.name));
                assert_eq!(new.len(), expected.len(), "{name}: every parameter is new");
            }
        }
    }
}

#[test]
fn the_classic_lenet_symbol_alone_gets_mxnets_shapes() {
    let dir = fixture("lenet_classic");
    let symbol = read_symbol(
        &std::fs::read(dir.join("model-symbol.json")).unwrap(),
        &SymbolLimits::default(),
    )
    .unwrap();
    let inputs = [DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 1, 28, 28],
    }];
    let empty = ParamsFile {
        arrays: Vec::new(),
        names: None,
    };
    let (_, new) = import_with_new_params(&symbol, empty, &inputs).unwrap();
    let shapes: Vec<(&str, Vec<usize>)> = new
        .iter()
        .map(|p| (p.name.as_str(), p.shape.clone()))
        .collect();
    // As MXNet's `Module.bind` infers them (tools/make_lenet_mnist_reference.py).
    assert_eq!(
        shapes,
        [
            ("conv1_weight", vec![20, 1, 5, 5]),
            ("conv1_bias", vec![20]),
            ("conv2_weight", vec![50, 20, 5, 5]),
            ("conv2_bias", vec![50]),
            ("fc1_weight", vec![500, 800]),
            ("fc1_bias", vec![500]),
            ("fc2_weight", vec![10, 500]),
            ("fc2_bias", vec![10]),
        ]
    );
}

#[test]
fn a_variable_outside_a_weight_slot_and_rnn_weights_are_refused() {
    // An elementwise add of data and an unknown variable: no rule gives its shape.
    let json = r#"{"nodes": [
        {"op": "null", "name": "data", "inputs": []},
        {"op": "null", "name": "mystery", "inputs": []},
        {"op": "elemwise_add", "name": "add", "inputs": [[0, 0, 0], [1, 0, 0]]}
    ], "arg_nodes": [0, 1], "heads": [[2, 0, 0]], "attrs": {"mxnet_version": ["int", 10901]}}"#;
    let symbol = read_symbol(json.as_bytes(), &SymbolLimits::default()).unwrap();
    let inputs = [DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 3],
    }];
    let empty = ParamsFile {
        arrays: Vec::new(),
        names: None,
    };
    let err = import_with_new_params(&symbol, empty.clone(), &inputs)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"mystery\"") && err.contains("elemwise_add"),
        "{err}"
    );

    let (symbol, _, inputs) = load("text_lstm");
    let err = import_with_new_params(&symbol, empty, &inputs)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("i2h_weight") && err.contains("not in the .params file"),
        "{err}"
    );
}
