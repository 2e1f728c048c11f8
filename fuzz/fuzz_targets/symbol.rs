//! Fuzzes the symbol JSON reader and, on every document it accepts, the attribute-string
//! parsers on every attribute value, the invariants the importer relies on, and the
//! import itself (fused oneDNN nodes expanded, every operator's attributes read and its
//! shapes inferred) with each variable declared as a small data input.
//!
//! Seeds: `fuzz/corpus/symbol/seed-*` (the symbol fixtures). Run:
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run symbol corpus/symbol`

#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_mxnet::attrs::{
    is_hidden_key, is_training_hint_key, parse_bool, parse_dtype, parse_float, parse_float_tuple,
    parse_int, parse_optional, parse_optional_int_tuple, parse_tuple, parse_type_flag, AttrReader,
};
use ward_core::DType;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::limits::SymbolLimits;
use ward_mxnet::params::ParamsFile;
use ward_mxnet::symbol::{canonical_op_name, read_symbol, Symbol};

fuzz_target!(|data: &[u8]| {
    // Small limits so that the limit paths are reached by small inputs too.
    let limits = SymbolLimits {
        max_json_bytes: 1 << 20,
        max_json_depth: 24,
        max_nodes: 4096,
        max_name_len: 256,
        max_attrs: 32,
    };
    match read_symbol(data, &limits) {
        Ok(symbol) => {
            check_graph(&symbol, &limits);
            check_import(&symbol);
        }
        // Error messages are built from file contents: they must render.
        Err(e) => drop(e.to_string()),
    }
    // The attribute parsers on the raw input as well, when it is text.
    if let Ok(text) = std::str::from_utf8(data) {
        if text.len() <= 4096 {
            check_value(text);
        }
    }
});

fn check_graph(symbol: &Symbol, limits: &SymbolLimits) {
    let n = symbol.nodes.len();
    assert!(n <= limits.max_nodes);
    for head in &symbol.heads {
        assert!(head.node < n);
    }
    for &arg in &symbol.arg_nodes {
        assert_eq!(symbol.nodes[arg].op, "null");
    }
    for (index, node) in symbol.nodes.iter().enumerate() {
        // Topological order: the importer walks nodes front to back.
        for input in &node.inputs {
            assert!(input.node < index);
        }
        assert_eq!(canonical_op_name(&node.source_op), node.op);
        assert!(node.name.len() <= limits.max_name_len);
        assert!(node.attrs.len() <= limits.max_attrs);
        if node.op == "null" {
            assert!(node.inputs.is_empty() && node.subgraphs.is_empty());
        }
        for (key, value) in &node.attrs {
            assert!(key.len() <= limits.max_name_len && value.len() <= limits.max_name_len);
            let _ = (is_hidden_key(key), is_training_hint_key(key));
            check_value(value);
        }
        // Every accessor on every key, then finish: none may panic.
        let mut reader = AttrReader::new(&node.name, &node.op, &node.attrs);
        for key in node.attrs.keys() {
            let _ = reader.int(key, 0).map_err(|e| e.to_string());
            let _ = reader.opt_float(key);
            let _ = reader.bool(key, false);
            let _ = reader.opt_tuple(key);
            let _ = reader.float_tuple(key, &[]);
            let _ = reader
                .enum_of(key, "", &["relu", "max"])
                .map_err(|e| e.to_string());
        }
        let _ = reader.req_int("kernel").map_err(|e| e.to_string());
        assert!(reader.finish().is_ok(), "every key was read");
        for sub in &node.subgraphs {
            check_graph(sub, limits);
        }
    }
}

/// Imports `symbol` with no parameters and every variable a float32 data input of one
/// small shape: errors must render, nothing may panic.
fn check_import(symbol: &Symbol) {
    let mut declared: Vec<DeclaredInput> = Vec::new();
    for node in symbol.nodes.iter().filter(|n| n.op == "null") {
        if declared.iter().all(|d| d.name != node.name) {
            declared.push(DeclaredInput {
                name: node.name.clone(),
                dtype: DType::F32,
                shape: vec![2, 3, 4, 4],
            });
        }
    }
    let params = ParamsFile {
        arrays: Vec::new(),
        names: None,
    };
    if let Err(e) = import(symbol, params, &declared) {
        drop(e.to_string());
    }
}

fn check_value(value: &str) {
    let _ = (parse_int(value), parse_bool(value), parse_dtype(value));
    let _ = (parse_type_flag(value), parse_optional(value, parse_int));
    if let Ok(v) = parse_float(value) {
        assert!(!v.is_nan());
    }
    // A tuple that parses prints back to a spelling that parses to the same values.
    if let Ok(Some(dims)) = parse_tuple(value) {
        let printed = format!(
            "({})",
            dims.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(parse_tuple(&printed), Ok(Some(dims)));
    }
    // An optional-element tuple (slice's begin and end) prints back the same way.
    if let Ok(values) = parse_optional_int_tuple(value) {
        let printed = format!(
            "({},)",
            values
                .iter()
                .map(|v| v.map_or_else(|| "None".to_string(), |v| v.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !values.is_empty() {
            assert_eq!(parse_optional_int_tuple(&printed), Ok(values));
        }
    }
    match parse_float_tuple(value) {
        Ok(values) => assert!(values.iter().all(|v| !v.is_nan())),
        Err(e) => drop(e.to_string()),
    }
}
