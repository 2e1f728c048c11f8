//! One MXNet operator imported on its own: the node is named "layer", its data inputs
//! "a" to "f".

use ward_core::DType;
use ward_graph::ir::Op;
use ward_mxnet::import::{import, DeclaredInput, Imported};
use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;

use super::params_corpus::list;

/// One `op` node named "layer" with `attrs` on the data inputs `shapes` (named a, b, c, …).
pub fn import_with(op: &str, attrs: &str, shapes: &[&[i64]]) -> Result<Imported, String> {
    let typed: Vec<(DType, &[i64])> = shapes.iter().map(|s| (DType::F32, *s)).collect();
    import_typed(op, attrs, &typed)
}

/// [`import_with`] with each input declared in its own type.
pub fn import_typed(op: &str, attrs: &str, inputs: &[(DType, &[i64])]) -> Result<Imported, String> {
    let shapes: Vec<&[i64]> = inputs.iter().map(|(_, s)| *s).collect();
    let names = ["a", "b", "c", "d", "e", "f"];
    let mut nodes: Vec<String> = names
        .iter()
        .take(shapes.len())
        .map(|n| format!(r#"{{"op": "null", "name": "{n}", "inputs": []}}"#))
        .collect();
    let entries: Vec<String> = (0..shapes.len()).map(|i| format!("[{i}, 0, 0]")).collect();
    nodes.push(format!(
        r#"{{"op": "{op}", "name": "layer", "attrs": {{{attrs}}}, "inputs": [{}]}}"#,
        entries.join(", ")
    ));
    let args: Vec<String> = (0..shapes.len()).map(|i| i.to_string()).collect();
    let json = format!(
        r#"{{"nodes": [{nodes}], "arg_nodes": [{args}], "heads": [[{n}, 0, 0]], "attrs": {{"mxnet_version": ["int", 10901]}}}}"#,
        nodes = nodes.join(", "),
        args = args.join(", "),
        n = shapes.len(),
    );
    let sym = read_symbol(json.as_bytes(), &SymbolLimits::default()).unwrap();
    let params = read_params(&list(&[], None), &ParamsLimits::default()).unwrap();
    let inputs: Vec<DeclaredInput> = names
        .iter()
        .zip(inputs)
        .map(|(n, (dtype, s))| DeclaredInput {
            name: (*n).into(),
            dtype: *dtype,
            shape: s.to_vec(),
        })
        .collect();
    import(&sym, params, &inputs).map_err(|e| e.to_string())
}

/// The single operator and the output shape (-1 for a dim that follows the batch).
pub fn imported(op: &str, attrs: &str, shapes: &[&[i64]]) -> (Op, Vec<i64>) {
    let i = import_with(op, attrs, shapes).unwrap_or_else(|e| panic!("{op} {attrs}: {e}"));
    assert_eq!(i.graph.nodes.len(), 1, "{op}");
    (i.graph.nodes[0].op.clone(), i.output_shapes[0].clone())
}

/// The refusal, which must name the node and each of `needles`.
pub fn refusal(op: &str, attrs: &str, shapes: &[&[i64]], needles: &[&str]) -> String {
    let e = import_with(op, attrs, shapes).expect_err("the import must be refused");
    assert!(e.contains("layer"), "{op} {attrs}: {e}");
    for needle in needles {
        assert!(
            e.contains(needle),
            "{op} {attrs}: {e} (expected {needle:?})"
        );
    }
    e
}
