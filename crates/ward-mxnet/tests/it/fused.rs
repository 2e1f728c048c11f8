//! Graphs saved after MXNet's oneDNN subgraph pass (`tools/make_fused_fixtures.py`):
//! each fused node is imported as the operators of its subgraph, and a node whose
//! attributes do not describe its subgraph, or that is quantized, is refused by name.
//! (Their numbers against MXNet: ward-exec's model fixtures `fused_residual` and
//! `fused_attention`.)

use std::path::PathBuf;

use serde_json::{json, Value};
use ward_core::DType;
use ward_mxnet::import::{import, DeclaredInput, Imported};
use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn symbol_json(model: &str) -> Value {
    let path = fixtures()
        .join("models")
        .join(model)
        .join("model-symbol.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Imports `symbol` with the parameters of fixture `model` and its `data` input.
fn import_model(model: &str, symbol: &Value, shape: &[i64]) -> Result<Imported, String> {
    let params_path = fixtures()
        .join("models")
        .join(model)
        .join("model-0000.params");
    let symbol = read_symbol(
        &serde_json::to_vec(symbol).unwrap(),
        &SymbolLimits::default(),
    )
    .map_err(|e| e.to_string())?;
    let params = read_params(
        &std::fs::read(params_path).unwrap(),
        &ParamsLimits::default(),
    )
    .unwrap();
    let data = DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
    };
    import(&symbol, params, &[data]).map_err(|e| e.to_string())
}

const RESIDUAL: (&str, &[i64]) = ("fused_residual", &[2, 3, 10, 10]);

/// The top-level node named `name` of `symbol`.
fn node<'a>(symbol: &'a mut Value, name: &str) -> &'a mut Value {
    symbol["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

fn refused(symbol: &Value, needles: &[&str]) {
    let (model, shape) = RESIDUAL;
    let err = match import_model(model, symbol, shape) {
        Ok(_) => panic!("imported; expected a refusal naming {needles:?}"),
        Err(e) => e,
    };
    for needle in needles {
        assert!(err.contains(needle), "{err:?} does not name {needle:?}");
    }
}

#[test]
fn fused_nodes_become_the_operators_they_fused() {
    let (model, shape) = RESIDUAL;
    let imported = import_model(model, &symbol_json(model), shape).unwrap();
    let ops: Vec<String> = imported
        .graph
        .nodes
        .iter()
        .map(|n| n.op.name().to_string())
        .collect();
    let count = |name: &str| ops.iter().filter(|op| op.as_str() == name).count();
    // Four fused convolutions, two of them with a BatchNorm, two dense layers.
    assert_eq!(count("conv"), 4, "{ops:?}");
    assert_eq!(count("batch_norm"), 2, "{ops:?}");
    assert_eq!(count("dense"), 2, "{ops:?}");
    // Every parameter the fused nodes read is bound: none left over.
    assert!(
        imported.unused_params.is_empty(),
        "{:?}",
        imported.unused_params
    );
    // The node computing a fused node's output keeps the fused node's name.
    assert!(imported
        .graph
        .nodes
        .iter()
        .any(|n| n.name == "sg_mkldnn_conv_bn_add_act_2"));
    assert!(imported.graph.nodes.iter().all(|n| !n.name.is_empty()));
}

#[test]
fn attention_products_are_imported_from_their_subgraphs() {
    let symbol = symbol_json("fused_attention");
    let imported = import_model("fused_attention", &symbol, &[5, 2, 4]).unwrap();
    assert_eq!(imported.graph.outputs.len(), 1);
}

#[test]
fn flags_that_do_not_describe_the_subgraph_are_refused() {
    let mut symbol = symbol_json(RESIDUAL.0);
    node(&mut symbol, "sg_mkldnn_conv_bn_act_1")["attrs"]["with_bn"] = json!("false");
    refused(
        &symbol,
        &["sg_mkldnn_conv_bn_act_1", "with_bn = false", "1 such"],
    );

    let mut symbol = symbol_json(RESIDUAL.0);
    node(&mut symbol, "sg_mkldnn_conv_act_0")["attrs"]["with_postsum_act"] = json!("true");
    refused(
        &symbol,
        &["sg_mkldnn_conv_act_0", "with_postsum_act = true"],
    );

    let mut symbol = symbol_json(RESIDUAL.0);
    node(&mut symbol, "sg_mkldnn_fully_connected_1")["attrs"] = json!({"with_eltwise": "true"});
    refused(
        &symbol,
        &["sg_mkldnn_fully_connected_1", "with_eltwise = true"],
    );
}

#[test]
fn an_attribute_mxnet_does_not_declare_is_refused() {
    let mut symbol = symbol_json(RESIDUAL.0);
    node(&mut symbol, "sg_mkldnn_conv_3")["attrs"] = json!({"with_relu6": "true"});
    refused(&symbol, &["sg_mkldnn_conv_3", "with_relu6"]);
}

#[test]
fn quantized_fused_nodes_are_refused_by_attribute() {
    let mut symbol = symbol_json(RESIDUAL.0);
    node(&mut symbol, "sg_mkldnn_conv_3")["attrs"] = json!({"quantized": "true"});
    refused(&symbol, &["sg_mkldnn_conv_3", "quantized", "float graphs"]);

    let mut symbol = symbol_json(RESIDUAL.0);
    node(&mut symbol, "sg_mkldnn_conv_3")["attrs"] = json!({"min_calib_range": "0.5"});
    refused(&symbol, &["sg_mkldnn_conv_3", "min_calib_range"]);
}

#[test]
fn inputs_that_do_not_match_the_subgraph_variables_are_refused() {
    let mut symbol = symbol_json(RESIDUAL.0);
    node(&mut symbol, "sg_mkldnn_conv_bn_act_1")["inputs"]
        .as_array_mut()
        .unwrap()
        .pop();
    refused(
        &symbol,
        &["sg_mkldnn_conv_bn_act_1", "5 inputs", "6 variables"],
    );
}

#[test]
fn a_second_output_of_a_fused_node_does_not_exist() {
    let mut symbol = symbol_json(RESIDUAL.0);
    let fused = symbol["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|n| n["name"] == "sg_mkldnn_conv_3")
        .unwrap();
    symbol["heads"] = json!([[fused, 1, 0]]);
    refused(&symbol, &["output 1 of node", "one output"]);
}

#[test]
fn a_model_quantized_by_quantize_net_is_refused_by_name() {
    let dir = fixtures().join("fused");
    let symbol = read_symbol(
        &std::fs::read(dir.join("quantized-symbol.json")).unwrap(),
        &SymbolLimits::default(),
    )
    .unwrap();
    let params = read_params(
        &std::fs::read(dir.join("quantized-0000.params")).unwrap(),
        &ParamsLimits::default(),
    )
    .unwrap();
    let data = DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![2, 3, 6, 6],
    };
    let err = import(&symbol, params, &[data]).unwrap_err().to_string();
    for needle in ["data_quantize", "_contrib_quantize_v2", "quantize_net"] {
        assert!(err.contains(needle), "{err:?} does not name {needle:?}");
    }
}
