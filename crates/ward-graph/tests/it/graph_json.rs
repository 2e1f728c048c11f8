//! `graph.json` comes from a package, so it is untrusted: every malformed graph is refused
//! with an error naming what is wrong, before anything runs.

use ward_graph::ir::{Graph, MAX_GRAPH_JSON_BYTES};
use ward_graph::shape::infer_shapes;
use ward_graph::GraphError;

/// x (input 0) → relu → flatten, as JSON, with `edit` applied to the text.
fn graph_json(edit: impl Fn(String) -> String) -> Vec<u8> {
    let text = r#"{
        "format": "ward-graph", "version": 2,
        "inputs": [{"name": "x", "dtype": "f32"}],
        "params": [{"name": "w", "dtype": "f32", "shape": [4, 6]}],
        "nodes": [
            {"name": "act", "op": {"type": "activation", "kind": "relu"}, "inputs": [{"input": 0}]},
            {"name": "flat", "op": {"type": "flatten"}, "inputs": [{"node": [0, 0]}]},
            {"name": "fc", "op": {"type": "dense", "units": 4, "flatten": true, "bias": false},
             "inputs": [{"node": [1, 0]}, {"param": 0}]}
        ],
        "outputs": [{"name": "y", "source": {"node": [2, 0]}}]
    }"#;
    edit(text.to_string()).into_bytes()
}

#[test]
fn a_valid_graph_parses_and_infers() {
    let g = Graph::from_json(&graph_json(|s| s)).unwrap();
    let shapes = infer_shapes(&g, &[vec![2, 3, 2]]).unwrap();
    assert_eq!(shapes.nodes[2][0], vec![2, 4]);
    // Round trip.
    assert_eq!(Graph::from_json(&g.to_json()).unwrap(), g);
}

fn refused(edit: impl Fn(String) -> String) -> String {
    match Graph::from_json(&graph_json(edit)) {
        Ok(_) => panic!("graph accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_graphs_are_refused_with_a_reason() {
    // (text to replace, replacement, expected in the error)
    let cases = [
        ("\"version\": 2", "\"version\": 3", "version 3"),
        (
            "\"shape\": [4, 6]}",
            "\"shape\": [4, 6], \"lr_mult\": -1}",
            "lr_mult -1",
        ),
        (
            "\"shape\": [4, 6]}",
            "\"shape\": [4, 6], \"role\": \"bias\"}",
            "unknown variant",
        ),
        ("ward-graph", "onnx", "format"),
        ("\"params\"", "\"extra\": 1, \"params\"", "unknown field"),
        (
            "\"kind\": \"relu\"",
            "\"kind\": \"relu\", \"alpha\": 1",
            "unknown field",
        ),
        (
            "\"type\": \"flatten\"",
            "\"type\": \"fft\"",
            "unknown variant",
        ),
        ("{\"node\": [0, 0]}", "{\"node\": [1, 0]}", "topological"),
        ("{\"node\": [0, 0]}", "{\"node\": [2, 0]}", "topological"),
        ("{\"node\": [0, 0]}", "{\"node\": [0, 1]}", "output 1"),
        ("{\"param\": 0}", "{\"param\": 3}", "missing param"),
        ("{\"input\": 0}", "{\"input\": 1}", "missing input"),
        ("\"name\": \"flat\"", "\"name\": \"act\"", "duplicate node"),
        (", {\"param\": 0}]", "]", "has 1 inputs, expected 2"),
        ("\"units\": 4", "\"units\": 0", "zero"),
        (
            "\"source\": {\"node\": [2, 0]}",
            "\"source\": {\"node\": [3, 0]}",
            "output \"y\"",
        ),
        (
            "[{\"name\": \"y\", \"source\": {\"node\": [2, 0]}}]",
            "[]",
            "no outputs",
        ),
        (
            "\"dtype\": \"f32\", \"shape\"",
            "\"dtype\": \"f16x\", \"shape\"",
            "unknown variant",
        ),
    ];
    for (from, to, needle) in cases {
        let e = refused(|s| s.replace(from, to));
        assert!(e.contains(needle), "expected {needle:?} in {e:?}");
    }
    let e = refused(|s| s[..s.len() / 2].to_string());
    assert!(e.contains("EOF"), "{e}");
}

#[test]
fn oversized_graph_is_refused_before_parsing() {
    let big = vec![b' '; MAX_GRAPH_JSON_BYTES + 1];
    assert!(matches!(
        Graph::from_json(&big),
        Err(GraphError::TooLarge { .. })
    ));
}

#[test]
fn shapes_that_do_not_fit_the_weights_are_refused() {
    let g = Graph::from_json(&graph_json(|s| s)).unwrap();
    let e = infer_shapes(&g, &[vec![2, 5]]).unwrap_err().to_string();
    assert!(
        e.contains("\"fc\"") && e.contains("weight has shape [4, 6], expected [4, 5]"),
        "{e}"
    );
    let e = infer_shapes(&g, &[]).unwrap_err().to_string();
    assert!(e.contains("expects 1 inputs, got 0"), "{e}");
    // Dims whose product overflows, or is absurdly large, are an error, not a wrap.
    for dims in [vec![usize::MAX, 4, 4], vec![1 << 20, 1 << 20, 2]] {
        let e = infer_shapes(&g, &[dims]).unwrap_err().to_string();
        assert!(e.contains("more than 1073741824 elements"), "{e}");
    }
}

/// A version-1 graph reads through the upgrade, as the same graph with the new fields at
/// their defaults.
#[test]
fn a_version_1_graph_is_upgraded() {
    let v2 = Graph::from_json(&graph_json(|s| s)).unwrap();
    let v1 = graph_json(|s| s.replace("\"version\": 2", "\"version\": 1"));
    let err = Graph::from_json(&v1).unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::Version {
                found: 1,
                supported: 2
            }
        ),
        "{err}"
    );
    let w = ward_core::Tensor::from_f32(vec![4, 6], &[0.5; 24]).unwrap();
    let mut weights = vec![("w".to_string(), w)];
    let upgraded = ward_graph::compat::upgrade_v1(&v1, &[vec![1, 3, 2]], &mut weights).unwrap();
    assert_eq!(upgraded, v2);
    assert_eq!(weights.len(), 1);
}
