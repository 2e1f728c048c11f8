//! The symbol JSON reader against real MXNet 1.9.1 exports, hand-written legacy files, the
//! MXNet operator registry, and a corpus of malformed documents.
//!
//! Fixtures: `tests/fixtures/symbol/`, made by `tools/make_symbol_fixtures.py`. Each
//! `valid/<name>.expect.json` is what MXNet itself made of `valid/<name>.json` after loading
//! it (op names resolved, legacy upgrades applied), so the comparison is against MXNet's
//! behaviour, not against a second reading of the same file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use ward_mxnet::attrs::{
    is_hidden_key, parse_bool, parse_dtype, parse_float, parse_int, parse_optional, parse_tuple,
    parse_type_flag,
};
use ward_mxnet::limits::SymbolLimits;
use ward_mxnet::symbol::{
    canonical_op_name, read_symbol, EntryProblem, IntProblem, Location, Symbol, SymbolError,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/symbol")
}

fn read(json: &str) -> Result<Symbol, SymbolError> {
    read_symbol(json.as_bytes(), &SymbolLimits::default())
}

fn read_fixture(name: &str) -> (Symbol, Value) {
    let dir = fixture_dir().join("valid");
    let bytes = fs::read(dir.join(format!("{name}.json"))).expect("fixture");
    let expect: Value =
        serde_json::from_slice(&fs::read(dir.join(format!("{name}.expect.json"))).expect("expect"))
            .expect("expect JSON");
    let symbol =
        read_symbol(&bytes, &SymbolLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    (symbol, expect)
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_owned()))
        .collect()
}

fn pairs(v: &Value) -> Vec<(usize, usize)> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            let n = |i: usize| e[i].as_u64().expect("index") as usize;
            (n(0), n(1))
        })
        .collect()
}

/// Compares a graph with MXNet's own reading of it, subgraphs included.
fn assert_same_as_mxnet(file: &str, symbol: &Symbol, expect: &Value) {
    let nodes = expect["nodes"].as_array().expect("nodes");
    assert_eq!(symbol.nodes.len(), nodes.len(), "{file}: node count");
    for (i, (ours, theirs)) in symbol.nodes.iter().zip(nodes).enumerate() {
        let at = format!("{file}: node {i} {:?}", ours.name);
        assert_eq!(ours.op, theirs["op"], "{at}: op");
        assert_eq!(ours.name, theirs["name"], "{at}: name");
        assert_eq!(ours.attrs, string_map(&theirs["attrs"]), "{at}: attrs");
        let inputs: Vec<_> = ours.inputs.iter().map(|e| (e.node, e.output)).collect();
        assert_eq!(inputs, pairs(&theirs["inputs"]), "{at}: inputs");
        let subgraphs = theirs["subgraphs"].as_array().expect("subgraphs");
        assert_eq!(
            ours.subgraphs.len(),
            subgraphs.len(),
            "{at}: subgraph count"
        );
        for (k, (sub, expect_sub)) in ours.subgraphs.iter().zip(subgraphs).enumerate() {
            assert_same_as_mxnet(&format!("{at} subgraph {k}"), sub, expect_sub);
        }
    }
    let arg_nodes: Vec<usize> = expect["arg_nodes"]
        .as_array()
        .expect("arg_nodes")
        .iter()
        .map(|v| v.as_u64().expect("index") as usize)
        .collect();
    assert_eq!(symbol.arg_nodes, arg_nodes, "{file}: arg_nodes");
    let heads: Vec<_> = symbol.heads.iter().map(|e| (e.node, e.output)).collect();
    assert_eq!(heads, pairs(&expect["heads"]), "{file}: heads");
}

#[test]
fn real_exports_read_as_mxnet_reads_them() {
    for name in [
        "gluon_cnn",
        "gluon_lstm",
        "module_lenet",
        "numpy_mlp",
        "mkldnn_fused",
        "foreach_subgraph",
    ] {
        let (symbol, expect) = read_fixture(name);
        assert_same_as_mxnet(name, &symbol, &expect);
        assert_eq!(symbol.mxnet_version, 10901, "{name}");
        assert_eq!(symbol.is_np_shape, name == "numpy_mlp", "{name}");
        for node in &symbol.nodes {
            // 1.9.1 writes canonical names, so nothing was rewritten.
            assert_eq!(node.op, node.source_op, "{name}: {}", node.name);
        }
    }
}

#[test]
fn gluon_export_details() {
    let (symbol, _) = read_fixture("gluon_cnn");
    let conv = symbol
        .nodes
        .iter()
        .find(|n| n.op == "Convolution")
        .expect("a convolution");
    assert_eq!(conv.attrs["kernel"], "(3, 3)");
    assert_eq!(parse_tuple(&conv.attrs["pad"]), Ok(Some(vec![1, 1])));
    assert_eq!(conv.inputs.len(), 3);
    let bn = symbol
        .nodes
        .iter()
        .find(|n| n.op == "BatchNorm")
        .expect("bn");
    // The moving statistics are aux inputs; the entry version (1) is dropped.
    assert_eq!(bn.inputs.len(), 5);
    assert!(
        symbol.nodes[0].attrs.is_empty(),
        "the data input carries no attributes"
    );
}

#[test]
fn mkldnn_fused_ops_keep_their_subgraphs() {
    let (symbol, _) = read_fixture("mkldnn_fused");
    let conv = symbol
        .nodes
        .iter()
        .find(|n| n.source_op == "_sg_mkldnn_conv")
        .expect("_sg_mkldnn_conv");
    assert_eq!(conv.op, "_sg_mkldnn_conv", "fused ops are not aliases");
    assert_eq!(conv.attrs["with_bn"], "true");
    assert_eq!(conv.subgraphs.len(), 1);
    let inner = &conv.subgraphs[0];
    let ops: Vec<&str> = inner.nodes.iter().map(|n| n.op.as_str()).collect();
    assert!(
        ops.contains(&"Convolution") && ops.contains(&"BatchNorm") && ops.contains(&"Activation")
    );
    assert_eq!(inner.mxnet_version, 10901, "subgraphs inherit the version");
    assert!(symbol
        .nodes
        .iter()
        .any(|n| n.op == "_sg_mkldnn_fully_connected" && n.subgraphs.len() == 1));
}

#[test]
fn legacy_0800_file() {
    let (symbol, expect) = read_fixture("legacy_0800");
    assert_eq!(symbol.mxnet_version, 800, "no mxnet_version means 0.8.0");
    let node = |name: &str| {
        symbol
            .nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    // `param` and `attr` merged; the bare hidden keys renamed as FixParsing does.
    let data = node("data");
    assert_eq!(
        data.attrs.get("__ctx_group__").map(String::as_str),
        Some("stage1")
    );
    assert_eq!(
        data.attrs.get("__lr_mult__").map(String::as_str),
        Some("0.2")
    );
    assert!(!data.attrs.contains_key("lr_mult"));
    let fc = node("fc1");
    assert_eq!(fc.attrs["num_hidden"], "8");
    assert_eq!(fc.attrs["__ctx_group__"], "stage1");
    // MXNet moves `weight_lr_mult` onto the weight variable (needs op knowledge): kept.
    assert_eq!(fc.attrs["weight_lr_mult"], "1.2");
    assert_eq!(
        fc.inputs.iter().map(|e| e.node).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // Aliases resolved, spelling kept.
    let plus = node("plus0");
    assert_eq!(
        (plus.op.as_str(), plus.source_op.as_str()),
        ("elemwise_add", "_Plus")
    );
    assert_eq!(node("mulscalar0").op, "_mul_scalar");
    assert_eq!(node("softmax").op, "SoftmaxOutput");
    // BatchNorm lists 3 inputs: MXNet's 0.9 upgrader adds the moving statistics, ward
    // leaves that to the importer, which sees `mxnet_version < 900`.
    assert_eq!(node("bn0").inputs.len(), 3);
    let mxnet_bn = expect["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == "bn0")
        .expect("bn0");
    assert_eq!(mxnet_bn["inputs"].as_array().expect("inputs").len(), 5);

    // Every node MXNet kept has the same op and, apart from the documented differences,
    // the same attributes.
    for theirs in expect["nodes"].as_array().expect("nodes") {
        let Some(ours) = symbol.nodes.iter().find(|n| n.name == theirs["name"]) else {
            assert!(theirs["name"].as_str().expect("name").contains("moving"));
            continue;
        };
        assert_eq!(ours.op, theirs["op"], "{}", ours.name);
        let mut attrs = ours.attrs.clone();
        attrs.remove("weight_lr_mult");
        let mut mxnet = string_map(&theirs["attrs"]);
        if ours.name == "fc1_weight" {
            mxnet.remove("__lr_mult__"); // moved there from fc1's weight_lr_mult
        }
        assert_eq!(attrs, mxnet, "{}", ours.name);
    }
}

#[test]
fn legacy_0900_file() {
    let (symbol, expect) = read_fixture("legacy_0900");
    assert_eq!(symbol.mxnet_version, 903);
    // After alias resolution and the argmax upgrade, ward reads what MXNet reads.
    assert_same_as_mxnet("legacy_0900", &symbol, &expect);
    let ops: Vec<(&str, &str)> = symbol
        .nodes
        .iter()
        .map(|n| (n.source_op.as_str(), n.op.as_str()))
        .collect();
    assert!(ops.contains(&("ElementWiseSum", "add_n")));
    assert!(ops.contains(&("_Mul", "elemwise_mul")));
    assert!(ops.contains(&("swapaxes", "SwapAxis")));
    assert!(ops.contains(&("flatten", "Flatten")));
    let argmax = symbol
        .nodes
        .iter()
        .find(|n| n.op == "argmax")
        .expect("argmax");
    assert!(
        !argmax.attrs.contains_key("axis"),
        "0.9.4 axis=-1 meant all axes"
    );
}

#[test]
fn argmax_axis_is_kept_from_0_9_5_on() {
    let doc = json!({
        "nodes": [
            {"op": "null", "name": "x", "inputs": []},
            {"op": "argmax", "name": "a", "attrs": {"axis": "-1"}, "inputs": [[0, 0, 0]]}
        ],
        "arg_nodes": [0], "heads": [[1, 0, 0]],
        "attrs": {"mxnet_version": ["int", 905]}
    });
    let symbol = read(&doc.to_string()).expect("valid");
    assert_eq!(symbol.nodes[1].attrs["axis"], "-1");
}

#[test]
fn model_fixtures_all_read() {
    // The importer's fixtures (made by tools/make_model_fixtures.py), committed.
    let dir = fs::read_dir(repo_root().join("tests/fixtures/models")).unwrap();
    let mut read = 0;
    for model in dir.flatten() {
        let path = model.path().join("model-symbol.json");
        let Ok(bytes) = fs::read(&path) else { continue };
        read += 1;
        let symbol = read_symbol(&bytes, &SymbolLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let raw: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            symbol.nodes.len(),
            raw["nodes"].as_array().expect("nodes").len()
        );
        check_attr_syntax(&path.display().to_string(), &symbol);
    }
    assert!(read >= 10, "only {read} model fixtures found");
}

/// Every attribute value the exporters wrote parses with the parser its key calls for.
fn check_attr_syntax(file: &str, symbol: &Symbol) {
    for node in &symbol.nodes {
        for (key, value) in &node.attrs {
            let at = format!("{file}: node {:?} {key} = {value:?}", node.name);
            let ok = match key.as_str() {
                "kernel" | "stride" | "pad" | "dilate" | "adj" | "axes" | "pad_width"
                | "target_shape" | "newshape" | "__shape__" => parse_tuple(value).is_ok(),
                "shape" if node.op != "_npx_reshape" => parse_tuple(value).is_ok(),
                "num_filter" | "num_group" | "num_hidden" | "num_args" | "num_outputs"
                | "num_layers" | "state_size" | "input_dim" | "output_dim" | "dim" | "dim1"
                | "dim2" | "num_groups" | "num_out_data" => parse_int(value).is_ok(),
                // An int, or a tuple of them for the reductions (`mean` over `(2, 3)`).
                "axis" => parse_optional(value, parse_int).is_ok() || parse_tuple(value).is_ok(),
                "eps" | "momentum" | "slope" | "scalar" | "a_min" | "a_max" | "p" => {
                    parse_float(value).is_ok()
                }
                "no_bias"
                | "flatten"
                | "fix_gamma"
                | "use_global_stats"
                | "global_pool"
                | "bidirectional"
                | "state_outputs"
                | "sparse_grad"
                | "squeeze_axis"
                | "cudnn_off"
                | "lstm_state_clip_nan"
                | "use_sequence_length"
                | "reverse"
                | "with_act"
                | "with_bn"
                | "with_sum"
                | "with_postsum_act"
                | "with_eltwise"
                | "is_int"
                | "count_include_pad" => parse_bool(value).is_ok(),
                "projection_size" => parse_optional(value, parse_int).is_ok(),
                "lstm_state_clip_min" | "lstm_state_clip_max" => {
                    parse_optional(value, parse_float).is_ok()
                }
                "dtype" => parse_dtype(value).is_ok(),
                "__dtype__" => parse_type_flag(value).is_ok(),
                _ => true,
            };
            assert!(ok, "{at}");
        }
        for sub in &node.subgraphs {
            check_attr_syntax(file, sub);
        }
    }
}

#[test]
fn symbol_fixture_attrs_parse() {
    for name in [
        "gluon_cnn",
        "gluon_lstm",
        "module_lenet",
        "numpy_mlp",
        "mkldnn_fused",
    ] {
        let (symbol, _) = read_fixture(name);
        check_attr_syntax(name, &symbol);
    }
}

#[test]
fn alias_table_matches_the_mxnet_registry() {
    let table = fs::read_to_string(fixture_dir().join("mxnet-1.9.1-op-names.tsv")).expect("tsv");
    let mut names = 0;
    let mut aliases = 0;
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let (name, canonical) = line.split_once('\t').expect("name<TAB>canonical");
        assert_eq!(canonical_op_name(name), canonical, "{name}");
        names += 1;
        aliases += usize::from(name != canonical);
    }
    assert_eq!((names, aliases), (1167, 281));
}

// --------------------------------------------------------------------------------------
// Legacy merging rules, on small documents
// --------------------------------------------------------------------------------------

fn small_graph() -> Value {
    json!({
        "nodes": [
            {"op": "null", "name": "data", "inputs": []},
            {"op": "null", "name": "w", "inputs": []},
            {"op": "FullyConnected", "name": "fc",
             "attrs": {"num_hidden": "2", "no_bias": "True"},
             "inputs": [[0, 0, 0], [1, 0, 0]]},
            {"op": "Activation", "name": "act", "attrs": {"act_type": "relu"},
             "inputs": [[2, 0, 0]]}
        ],
        "arg_nodes": [0, 1],
        "node_row_ptr": [0, 1, 2, 3, 4],
        "heads": [[3, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10901]}
    })
}

#[test]
fn small_graph_reads() {
    let symbol = read(&small_graph().to_string()).expect("valid");
    assert_eq!(symbol.nodes.len(), 4);
    assert_eq!(symbol.arg_nodes, vec![0, 1]);
    assert_eq!(symbol.heads.len(), 1);
    assert_eq!(symbol.heads[0].node, 3);
    assert_eq!(symbol.nodes[2].attrs["num_hidden"], "2");
}

#[test]
fn param_does_not_overwrite_attr() {
    let mut doc = small_graph();
    let act = &mut doc["nodes"][3];
    act.as_object_mut().expect("node").remove("attrs");
    act["attr"] = json!({"act_type": "tanh", "lr_mult": "3", "__lr_mult__": "1"});
    act["param"] = json!({"act_type": "relu", "extra": "1"});
    act["backward_source_id"] = json!(-1);
    let symbol = read(&doc.to_string()).expect("valid");
    let attrs = &symbol.nodes[3].attrs;
    assert_eq!(attrs["act_type"], "tanh");
    assert_eq!(attrs["extra"], "1");
    // FixParsing: the bare key wins over an existing hidden one, as in MXNet.
    assert_eq!(attrs["__lr_mult__"], "3");
    assert!(!attrs.contains_key("lr_mult"));
}

#[test]
fn two_element_entries_control_deps_and_row_ptr() {
    let mut doc = small_graph();
    doc["nodes"][3]["inputs"] = json!([[2, 0]]);
    doc["nodes"][3]["control_deps"] = json!([0, 1]);
    doc["heads"] = json!([[3, 0], [2, 0, 0]]);
    doc["node_row_ptr"] = json!([0, 9, 99]);
    let symbol = read(&doc.to_string()).expect("valid");
    assert_eq!(symbol.nodes[3].inputs[0].node, 2);
    assert_eq!(symbol.heads.len(), 2);
}

#[test]
fn output_index_is_kept_for_the_importer() {
    let mut doc = small_graph();
    doc["heads"] = json!([[3, 7, 0]]);
    let symbol = read(&doc.to_string()).expect("valid");
    assert_eq!(symbol.heads[0].output, 7);
}

#[test]
fn graph_attributes() {
    let mut doc = small_graph();
    doc["attrs"] = json!({
        "mxnet_version": ["int", 10600],
        "is_np_shape": ["int", 2],
        "note": ["str", "x"],
        "ids": ["list_int", [1, -2]],
        "names": ["list_str", ["a"]]
    });
    let symbol = read(&doc.to_string()).expect("valid");
    assert_eq!(symbol.mxnet_version, 10600);
    assert!(symbol.is_np_shape);
    doc.as_object_mut().expect("doc").remove("attrs");
    let symbol = read(&doc.to_string()).expect("valid");
    assert_eq!(symbol.mxnet_version, 800);
    assert!(!symbol.is_np_shape);
}

#[test]
fn strings_with_escapes() {
    let mut doc = small_graph();
    doc["nodes"][3]["name"] = json!("act \"0\"\n\u{e9}");
    doc["nodes"][3]["attrs"]["__note__"] = json!("[\"zero\", {}]");
    let symbol = read(&doc.to_string()).expect("valid");
    assert_eq!(symbol.nodes[3].name, "act \"0\"\n\u{e9}");
    assert_eq!(symbol.nodes[3].attrs["__note__"], "[\"zero\", {}]");
    assert!(is_hidden_key("__note__"));
}

// --------------------------------------------------------------------------------------
// The malformed corpus
// --------------------------------------------------------------------------------------

fn node_at(e: &SymbolError) -> (Option<usize>, Option<String>) {
    let at = match e {
        SymbolError::NotAnObject { at, .. }
        | SymbolError::MissingKey { at, .. }
        | SymbolError::UnknownKey { at, .. }
        | SymbolError::DuplicateKey { at, .. }
        | SymbolError::WrongType { at, .. }
        | SymbolError::TooLong { at, .. }
        | SymbolError::AttrNotString { at, .. }
        | SymbolError::DuplicateAttr { at, .. }
        | SymbolError::ConflictingAttrFields { at }
        | SymbolError::BadEntry { at, .. }
        | SymbolError::SelfReference { at, .. }
        | SymbolError::ForwardReference { at, .. }
        | SymbolError::TooManyAttrs { at, .. }
        | SymbolError::VariableWithInputs { at, .. }
        | SymbolError::BadInteger { at, .. }
        | SymbolError::BadIndex { at, .. } => at,
        _ => return (None, None),
    };
    (at.node_index(), at.node_name().map(str::to_owned))
}

fn err(doc: &Value) -> SymbolError {
    read(&doc.to_string()).expect_err("must be refused")
}

fn with(edit: impl FnOnce(&mut Value)) -> SymbolError {
    let mut doc = small_graph();
    edit(&mut doc);
    err(&doc)
}

#[test]
fn invalid_json() {
    for text in [
        "",
        "{",
        "{\"nodes\": [}",
        "{} x",
        "\u{feff}{}",
        "{'nodes': []}",
        "nul",
    ] {
        let e = read(text).expect_err(text);
        assert!(
            matches!(e, SymbolError::Syntax { line: 1, .. }),
            "{text:?}: {e:?}"
        );
    }
    let e = read("{\n\"nodes\": [,]}").expect_err("syntax");
    assert!(
        matches!(
            e,
            SymbolError::Syntax {
                line: 2,
                column: 11,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .starts_with("symbol JSON is malformed at line 2, column 11: "));
}

#[test]
fn invalid_utf8() {
    let mut bytes = small_graph().to_string().into_bytes();
    let at = bytes.iter().position(|&b| b == b'f').expect("fc");
    bytes[at] = 0xff;
    let e = read_symbol(&bytes, &SymbolLimits::default()).expect_err("utf8");
    assert_eq!(e, SymbolError::InvalidUtf8 { offset: at });
}

#[test]
fn lone_surrogate_escape_is_refused() {
    let text = small_graph().to_string().replace("\"act\"", "\"\\ud800\"");
    let e = read(&text).expect_err("surrogate");
    assert!(
        matches!(
            e,
            SymbolError::Syntax { .. } | SymbolError::InvalidValue { .. }
        ),
        "{e:?}"
    );
}

#[test]
fn not_an_object() {
    for (doc, found) in [
        (json!([]), "an array"),
        (json!("x"), "a string"),
        (json!(1), "a number"),
    ] {
        assert_eq!(
            err(&doc),
            SymbolError::NotAnObject {
                at: Location::Graph(Default::default()),
                found
            }
        );
    }
    let e = with(|d| d["nodes"][1] = json!([]));
    assert!(
        matches!(
            e,
            SymbolError::NotAnObject {
                found: "an array",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(node_at(&e), (Some(1), None));
}

#[test]
fn missing_top_level_keys() {
    for key in ["nodes", "arg_nodes", "heads"] {
        let e = with(|d| {
            d.as_object_mut().expect("doc").remove(key);
        });
        assert!(
            matches!(&e, SymbolError::MissingKey { at: Location::Graph(_), key: k } if *k == key),
            "{key}: {e:?}"
        );
    }
    // Optional ones may go.
    let mut doc = small_graph();
    doc.as_object_mut().expect("doc").remove("node_row_ptr");
    doc.as_object_mut().expect("doc").remove("attrs");
    read(&doc.to_string()).expect("valid");
}

#[test]
fn missing_node_keys() {
    for key in ["op", "name", "inputs"] {
        let e = with(|d| {
            d["nodes"][2].as_object_mut().expect("node").remove(key);
        });
        assert!(
            matches!(&e, SymbolError::MissingKey { key: k, .. } if *k == key),
            "{e:?}"
        );
        assert_eq!(node_at(&e).0, Some(2));
    }
}

#[test]
fn unknown_keys() {
    let e = with(|d| d["extra"] = json!(1));
    assert!(
        matches!(&e, SymbolError::UnknownKey { at: Location::Graph(_), key, .. } if key == "extra"),
        "{e:?}"
    );
    let e = with(|d| d["nodes"][2]["bogus"] = json!({}));
    assert!(
        matches!(&e, SymbolError::UnknownKey { key, .. } if key == "bogus"),
        "{e:?}"
    );
    assert_eq!(node_at(&e), (Some(2), Some("fc".to_owned())));
    assert!(
        e.to_string()
            .starts_with("node 2 \"fc\": unknown key \"bogus\""),
        "{e}"
    );
}

#[test]
fn repeated_json_keys() {
    let text = small_graph().to_string();
    let doubled = text.replacen("\"heads\":", "\"heads\":[[3,0,0]],\"heads\":", 1);
    let e = read(&doubled).expect_err("dup");
    assert!(
        matches!(&e, SymbolError::DuplicateKey { key, .. } if key == "heads"),
        "{e:?}"
    );

    let doubled = text.replacen(
        "\"op\":\"Activation\"",
        "\"op\":\"Activation\",\"op\":\"tanh\"",
        1,
    );
    let e = read(&doubled).expect_err("dup");
    assert!(
        matches!(&e, SymbolError::DuplicateKey { key, .. } if key == "op"),
        "{e:?}"
    );
    assert_eq!(node_at(&e), (Some(3), Some("act".to_owned())));

    let doubled = text.replacen(
        "\"act_type\":\"relu\"",
        "\"act_type\":\"relu\",\"act_type\":\"tanh\"",
        1,
    );
    let e = read(&doubled).expect_err("dup");
    assert!(
        matches!(&e, SymbolError::DuplicateAttr { field: "attrs", key, .. } if key == "act_type"),
        "{e:?}"
    );
}

#[test]
fn attr_values_must_be_strings() {
    for (value, found) in [
        (json!(64), "a number"),
        (json!(true), "a boolean"),
        (json!(null), "null"),
        (json!([3, 3]), "an array"),
        (json!({}), "an object"),
    ] {
        let e = with(|d| d["nodes"][2]["attrs"]["num_hidden"] = value);
        assert_eq!(
            e,
            SymbolError::AttrNotString {
                at: Location::Node {
                    graph: Default::default(),
                    index: 2,
                    name: Some("fc".to_owned())
                },
                field: "attrs",
                key: "num_hidden".to_owned(),
                found
            }
        );
    }
    let e = with(|d| d["nodes"][2]["attrs"] = json!([]));
    assert!(
        matches!(&e, SymbolError::WrongType { key, .. } if key == "attrs"),
        "{e:?}"
    );
}

#[test]
fn attrs_and_attr_together_are_ambiguous() {
    let e = with(|d| d["nodes"][3]["attr"] = json!({"__x__": "1"}));
    assert!(
        matches!(e, SymbolError::ConflictingAttrFields { .. }),
        "{e:?}"
    );
    assert_eq!(node_at(&e).0, Some(3));
}

#[test]
fn references_must_point_backwards() {
    let e = with(|d| d["nodes"][2]["inputs"] = json!([[0, 0, 0], [3, 0, 0]]));
    assert!(
        matches!(
            e,
            SymbolError::ForwardReference {
                key: "inputs",
                position: 1,
                target: 3,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(node_at(&e), (Some(2), Some("fc".to_owned())));

    let e = with(|d| d["nodes"][3]["inputs"] = json!([[3, 0, 0]]));
    assert!(
        matches!(
            e,
            SymbolError::SelfReference {
                key: "inputs",
                position: 0,
                ..
            }
        ),
        "{e:?}"
    );

    // A two-node cycle: fc <- act <- fc. Caught at its first edge, which points forward.
    let e = with(|d| {
        d["nodes"][2]["inputs"] = json!([[0, 0, 0], [3, 0, 0]]);
        d["nodes"][3]["inputs"] = json!([[2, 0, 0]]);
    });
    assert!(
        matches!(e, SymbolError::ForwardReference { target: 3, .. }),
        "{e:?}"
    );

    // Out of range is a forward reference too.
    let e = with(|d| d["nodes"][3]["inputs"] = json!([[4000000000u64, 0]]));
    assert!(
        matches!(
            e,
            SymbolError::ForwardReference {
                target: 4000000000,
                ..
            }
        ),
        "{e:?}"
    );

    let e = with(|d| d["nodes"][3]["control_deps"] = json!([3]));
    assert!(
        matches!(
            e,
            SymbolError::SelfReference {
                key: "control_deps",
                ..
            }
        ),
        "{e:?}"
    );
    let e = with(|d| d["nodes"][2]["control_deps"] = json!([0, 3]));
    assert!(
        matches!(
            e,
            SymbolError::ForwardReference {
                key: "control_deps",
                position: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn heads_must_be_in_range() {
    let e = with(|d| d["heads"] = json!([[3, 0, 0], [4, 0, 0]]));
    assert_eq!(
        e,
        SymbolError::HeadOutOfRange {
            graph: Default::default(),
            position: 1,
            target: 4,
            len: 4
        }
    );
}

#[test]
fn variable_names_must_be_unique() {
    let e = with(|d| d["nodes"][1]["name"] = json!("data"));
    assert!(
        matches!(&e, SymbolError::DuplicateName { name, first: 0, second: 1, .. } if name == "data"),
        "{e:?}"
    );
    // Operators may share a name: Gluon names a block's op after the block, so a block
    // called twice (census_misc's Flatten) gives two nodes with one name.
    let mut doc = small_graph();
    doc["nodes"][3]["name"] = json!("fc");
    read(&doc.to_string()).expect("op names may repeat");
    // But not with a variable: parameters bind by name.
    let e = with(|d| d["nodes"][3]["name"] = json!("w"));
    assert!(
        matches!(
            &e,
            SymbolError::DuplicateName {
                first: 1,
                second: 3,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn arg_nodes_must_be_distinct_variables() {
    let e = with(|d| d["arg_nodes"] = json!([0, 2]));
    assert!(
        matches!(&e, SymbolError::ArgNodeNotVariable { position: 1, target: 2, name, op, .. }
            if name == "fc" && op == "FullyConnected"),
        "{e:?}"
    );
    let e = with(|d| d["arg_nodes"] = json!([0, 9]));
    assert!(
        matches!(
            e,
            SymbolError::ArgNodeOutOfRange {
                target: 9,
                len: 4,
                ..
            }
        ),
        "{e:?}"
    );
    let e = with(|d| d["arg_nodes"] = json!([0, 1, 0]));
    assert!(
        matches!(e, SymbolError::DuplicateArgNode { target: 0, .. }),
        "{e:?}"
    );
    // A huge list is refused without being stored.
    let e = with(|d| d["arg_nodes"] = json!(vec![0; 100_000]));
    assert!(
        matches!(e, SymbolError::DuplicateArgNode { target: 0, .. }),
        "{e:?}"
    );
    let e = with(|d| d["arg_nodes"] = json!([0, -1]));
    assert!(
        matches!(
            e,
            SymbolError::BadIndex {
                key: "arg_nodes",
                position: 1,
                problem: IntProblem::Negative,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn variables_have_no_inputs() {
    let e = with(|d| d["nodes"][1]["inputs"] = json!([[0, 0, 0]]));
    assert!(
        matches!(e, SymbolError::VariableWithInputs { what: "inputs", .. }),
        "{e:?}"
    );
}

#[test]
fn malformed_entries() {
    let bad_input = |entry: Value| with(|d| d["nodes"][3]["inputs"] = json!([entry]));
    let problem = |e: SymbolError| match e {
        SymbolError::BadEntry {
            key: "inputs",
            position: 0,
            problem,
            ..
        } => problem,
        other => panic!("{other:?}"),
    };
    assert_eq!(problem(bad_input(json!([2]))), EntryProblem::WrongLength(1));
    assert_eq!(
        problem(bad_input(json!([2, 0, 0, 0]))),
        EntryProblem::WrongLength(4)
    );
    assert_eq!(problem(bad_input(json!([]))), EntryProblem::WrongLength(0));
    assert_eq!(
        problem(bad_input(json!(2))),
        EntryProblem::NotAnArray("a number")
    );
    assert_eq!(
        problem(bad_input(json!([-1, 0]))),
        EntryProblem::BadElement {
            element: 0,
            problem: IntProblem::Negative
        }
    );
    assert_eq!(
        problem(bad_input(json!([2, -1]))),
        EntryProblem::BadElement {
            element: 1,
            problem: IntProblem::Negative
        }
    );
    assert_eq!(
        problem(bad_input(json!([2, 0, -1]))),
        EntryProblem::BadElement {
            element: 2,
            problem: IntProblem::Negative
        }
    );
    assert_eq!(
        problem(bad_input(json!([2.0, 0]))),
        EntryProblem::BadElement {
            element: 0,
            problem: IntProblem::NotAnInteger("a non-integer number")
        }
    );
    assert_eq!(
        problem(bad_input(json!(["2", 0]))),
        EntryProblem::BadElement {
            element: 0,
            problem: IntProblem::NotAnInteger("a string")
        }
    );
    assert_eq!(
        problem(bad_input(json!([2, 4294967296u64]))),
        EntryProblem::BadElement {
            element: 1,
            problem: IntProblem::TooLarge
        }
    );
    let text = small_graph()
        .to_string()
        .replace("[[2,0,0]]", "[[2,1e400]]");
    assert!(matches!(
        problem(read(&text).expect_err("1e400")),
        EntryProblem::BadElement {
            element: 1,
            problem: IntProblem::NotAnInteger(_)
        }
    ));
    let e = with(|d| d["heads"] = json!([[3]]));
    assert!(
        matches!(
            e,
            SymbolError::BadEntry {
                key: "heads",
                problem: EntryProblem::WrongLength(1),
                ..
            }
        ),
        "{e:?}"
    );
    let e = with(|d| d["nodes"][3]["inputs"] = json!({}));
    assert!(
        matches!(&e, SymbolError::WrongType { key, .. } if key == "inputs"),
        "{e:?}"
    );
}

#[test]
fn wrong_types() {
    let e = with(|d| d["nodes"] = json!({}));
    assert!(matches!(&e, SymbolError::WrongType { key, found: "an object", .. } if key == "nodes"));
    let e = with(|d| d["nodes"][2]["name"] = json!(5));
    assert!(matches!(&e, SymbolError::WrongType { key, found: "a number", .. } if key == "name"));
    assert_eq!(node_at(&e), (Some(2), None));
    assert!(e.to_string().starts_with("node 2 (unnamed): "), "{e}");
    let e = with(|d| d["nodes"][2]["op"] = json!(null));
    assert!(matches!(&e, SymbolError::WrongType { key, found: "null", .. } if key == "op"));
    let e = with(|d| d["nodes"][2]["backward_source_id"] = json!("x"));
    assert!(
        matches!(
            e,
            SymbolError::BadInteger {
                key: "backward_source_id",
                ..
            }
        ),
        "{e:?}"
    );
    let e = with(|d| d["node_row_ptr"] = json!([0, 1.5]));
    assert!(
        matches!(
            e,
            SymbolError::BadIndex {
                key: "node_row_ptr",
                position: 1,
                ..
            }
        ),
        "{e:?}"
    );
    let e = with(|d| d["nodes"][2]["subgraphs"] = json!({}));
    assert!(
        matches!(&e, SymbolError::WrongType { key, .. } if key == "subgraphs"),
        "{e:?}"
    );
}

#[test]
fn bad_graph_attributes() {
    for attrs in [
        json!({"mxnet_version": ["str", "10901"]}),
        json!({"mxnet_version": ["int", -1]}),
        json!({"mxnet_version": ["int", 4294967296u64]}),
        json!({"mxnet_version": ["int", 1.5]}),
        json!({"mxnet_version": ["int"]}),
        json!({"mxnet_version": 10901}),
        json!({"other": ["float", 1.0]}),
        json!({"other": ["list_int", [1, "x"]]}),
        json!({"other": [1, 2]}),
    ] {
        let e = with(|d| d["attrs"] = attrs.clone());
        assert!(
            matches!(
                e,
                SymbolError::BadGraphAttr { .. } | SymbolError::WrongType { .. }
            ),
            "{attrs}: {e:?}"
        );
    }
    let e = with(|d| d["attrs"] = json!([]));
    assert!(
        matches!(&e, SymbolError::WrongType { key, .. } if key == "attrs"),
        "{e:?}"
    );
}

#[test]
fn errors_in_subgraphs_name_the_path() {
    let mut inner = small_graph();
    inner["nodes"][3]["inputs"] = json!([[3, 0, 0]]);
    inner.as_object_mut().expect("graph").remove("attrs");
    let e = with(|d| d["nodes"][3]["subgraphs"] = json!([small_graph(), inner]));
    assert!(matches!(e, SymbolError::SelfReference { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "node 3 \"act\" in subgraph 1 of node 3 \"act\": inputs[0] refers to the node itself"
    );
}

// --------------------------------------------------------------------------------------
// Limits
// --------------------------------------------------------------------------------------

fn limited(edit: impl FnOnce(&mut SymbolLimits)) -> SymbolLimits {
    let mut limits = SymbolLimits::default();
    edit(&mut limits);
    limits
}

#[test]
fn oversized_document() {
    let text = small_graph().to_string();
    let limits = limited(|l| l.max_json_bytes = text.len() - 1);
    assert_eq!(
        read_symbol(text.as_bytes(), &limits),
        Err(SymbolError::TooLarge {
            size: text.len(),
            limit: text.len() - 1
        })
    );
    let limits = limited(|l| l.max_json_bytes = text.len());
    read_symbol(text.as_bytes(), &limits).expect("exactly at the limit");
}

#[test]
fn too_deep() {
    // The small graph nests 5 levels: {nodes:[{inputs:[[...]]}]}.
    let text = small_graph().to_string();
    read_symbol(text.as_bytes(), &limited(|l| l.max_json_depth = 5)).expect("5 levels");
    let e = read_symbol(text.as_bytes(), &limited(|l| l.max_json_depth = 4)).expect_err("deep");
    assert!(matches!(e, SymbolError::TooDeep { limit: 4, .. }), "{e:?}");

    // Deep nesting anywhere is refused before parsing, with the default limit.
    let deep = format!("{{\"x\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        read(&deep),
        Err(SymbolError::TooDeep {
            limit: ward_mxnet::limits::MAX_SYMBOL_JSON_DEPTH,
            ..
        })
    ));
    // Subgraph nesting counts: each level adds four.
    let mut doc = small_graph();
    for _ in 0..20 {
        let mut outer = small_graph();
        outer["nodes"][3]["subgraphs"] = json!([doc]);
        doc = outer;
    }
    assert!(matches!(err(&doc), SymbolError::TooDeep { .. }));
    // A raised limit is honoured: the reader only recurses along subgraphs, and serde_json
    // skips raw values without recursion, so deep documents do not exhaust the stack.
    let limits = limited(|l| l.max_json_depth = 10_000);
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let e = read_symbol(deep.as_bytes(), &limits).expect_err("not a graph");
    assert!(
        matches!(
            e,
            SymbolError::NotAnObject {
                found: "an array",
                ..
            }
        ),
        "{e:?}"
    );
    let mut doc = small_graph();
    for _ in 0..200 {
        let mut outer = small_graph();
        outer["nodes"][3]["subgraphs"] = json!([doc]);
        doc = outer;
    }
    let symbol = read_symbol(doc.to_string().as_bytes(), &limits).expect("200 levels");
    assert_eq!(count_nodes(&symbol), 4 * 201);
}

#[test]
fn too_many_nodes() {
    let text = small_graph().to_string();
    read_symbol(text.as_bytes(), &limited(|l| l.max_nodes = 4)).expect("4 nodes");
    let e = read_symbol(text.as_bytes(), &limited(|l| l.max_nodes = 3)).expect_err("nodes");
    assert_eq!(e, SymbolError::TooManyNodes { limit: 3 });
    // Subgraph nodes count against the same budget.
    let mkldnn = fs::read(fixture_dir().join("valid/mkldnn_fused.json")).expect("fixture");
    let top = read_symbol(&mkldnn, &SymbolLimits::default()).expect("valid");
    let all = count_nodes(&top);
    assert!(all > top.nodes.len());
    read_symbol(&mkldnn, &limited(|l| l.max_nodes = all)).expect("exactly at the limit");
    let e = read_symbol(&mkldnn, &limited(|l| l.max_nodes = all - 1)).expect_err("nodes");
    assert!(matches!(e, SymbolError::TooManyNodes { .. }));
}

fn count_nodes(s: &Symbol) -> usize {
    s.nodes.len()
        + s.nodes
            .iter()
            .flat_map(|n| &n.subgraphs)
            .map(count_nodes)
            .sum::<usize>()
}

#[test]
fn overlong_strings() {
    // "FullyConnected" (14 bytes) is the longest string in the small graph.
    let limits = limited(|l| l.max_name_len = 14);
    let read_with = |doc: &Value| read_symbol(doc.to_string().as_bytes(), &limits);
    read_with(&small_graph()).expect("all strings are short enough");
    let mut doc = small_graph();
    doc["nodes"][2]["name"] = json!("fc_with_a_long_name");
    let e = read_with(&doc).expect_err("name");
    assert!(
        matches!(&e, SymbolError::TooLong { len: 19, limit: 14, what, .. } if what == "the node name"),
        "{e:?}"
    );
    let mut doc = small_graph();
    doc["nodes"][2]["op"] = json!("VeryLongOperatorName");
    let e = read_with(&doc).expect_err("op");
    assert!(
        matches!(&e, SymbolError::TooLong { what, .. } if what == "the op name"),
        "{e:?}"
    );
    let mut doc = small_graph();
    doc["nodes"][2]["attrs"]["num_hidden"] = json!("123456789012345");
    let e = read_with(&doc).expect_err("value");
    assert!(matches!(&e, SymbolError::TooLong { len: 15, .. }), "{e:?}");
    assert_eq!(node_at(&e).0, Some(2));
    let mut doc = small_graph();
    doc["nodes"][2]["attrs"]["a_very_long_key"] = json!("1");
    assert!(matches!(read_with(&doc), Err(SymbolError::TooLong { .. })));
    let e = read_symbol(
        small_graph().to_string().as_bytes(),
        &limited(|l| l.max_name_len = 12),
    )
    .expect_err("graph attribute name");
    assert!(
        matches!(&e, SymbolError::TooLong { len: 13, what, .. } if what == "a graph attribute name"),
        "{e:?}"
    );
}

#[test]
fn too_many_attrs() {
    let limits = limited(|l| l.max_attrs = 2);
    let mut doc = small_graph();
    read_symbol(doc.to_string().as_bytes(), &limits).expect("two attrs");
    doc["nodes"][2]["attrs"]["flatten"] = json!("True");
    let e = read_symbol(doc.to_string().as_bytes(), &limits).expect_err("attrs");
    assert!(
        matches!(
            e,
            SymbolError::TooManyAttrs {
                field: "attrs",
                count: 3,
                limit: 2,
                ..
            }
        ),
        "{e:?}"
    );
    // Merged attr + param count too.
    let mut doc = small_graph();
    doc["nodes"][2]
        .as_object_mut()
        .expect("node")
        .remove("attrs");
    doc["nodes"][2]["attr"] = json!({"num_hidden": "2", "no_bias": "True"});
    doc["nodes"][2]["param"] = json!({"flatten": "True"});
    let e = read_symbol(doc.to_string().as_bytes(), &limits).expect_err("merged");
    assert!(
        matches!(e, SymbolError::TooManyAttrs { field: "param", .. }),
        "{e:?}"
    );
}

#[test]
fn large_chain_reads_quickly() {
    // 50 000 nodes, about 4 MB: every input refers to the previous node.
    let mut nodes = vec![json!({"op": "null", "name": "data", "inputs": []})];
    for i in 1..50_000usize {
        nodes.push(json!({
            "op": "Activation", "name": format!("act{i}"), "attrs": {"act_type": "relu"},
            "inputs": [[i - 1, 0, 0]]
        }));
    }
    let doc = json!({"nodes": nodes, "arg_nodes": [0], "heads": [[49_999, 0, 0]]});
    let start = std::time::Instant::now();
    let symbol = read(&doc.to_string()).expect("valid");
    assert_eq!(symbol.nodes.len(), 50_000);
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
}

#[test]
fn error_messages_escape_names_from_the_file() {
    let e = with(|d| {
        d["nodes"][2]["name"] = json!("fc\u{1b}[31m\nfake log line");
        d["nodes"][2]["bogus"] = json!(1);
    });
    let message = e.to_string();
    assert!(
        !message.contains('\u{1b}') && !message.contains('\n'),
        "{message:?}"
    );
    assert!(message.contains("\\u{1b}[31m\\nfake log line"), "{message}");
}
