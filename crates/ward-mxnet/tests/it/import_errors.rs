//! Imports that must fail, each with an error naming the node, the operator and the
//! attribute or parameter at fault: never a silently different model.

use crate::support::params_corpus;

use params_corpus::{list, v2_f32};
use ward_core::DType;
use ward_mxnet::import::{import, DeclaredInput, ImportError};
use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;

/// data (N, 2, 4, 4) → `op` with `attrs` on data and a (3, 2, 1, 1) weight.
fn symbol(op: &str, attrs: &str, extra_inputs: &str) -> String {
    format!(
        r#"{{"nodes": [
            {{"op": "null", "name": "data", "inputs": []}},
            {{"op": "null", "name": "w", "inputs": []}},
            {{"op": "{op}", "name": "layer", "attrs": {{{attrs}}}, "inputs": [[0, 0, 0], [1, 0, 0]{extra_inputs}]}}
        ], "arg_nodes": [0, 1], "heads": [[2, 0, 0]], "attrs": {{"mxnet_version": ["int", 10901]}}}}"#
    )
}

fn weights(shape: &[i64]) -> Vec<u8> {
    let n: i64 = shape.iter().product();
    list(&[v2_f32(shape, &vec![0.5; n as usize])], Some(&[b"arg:w"]))
}

fn data() -> Vec<DeclaredInput> {
    vec![DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 2, 4, 4],
    }]
}

fn try_import(
    symbol_json: &str,
    params: &[u8],
    inputs: &[DeclaredInput],
) -> Result<(), ImportError> {
    let sym = read_symbol(symbol_json.as_bytes(), &SymbolLimits::default()).expect("symbol parses");
    let params = read_params(params, &ParamsLimits::default()).expect("params parse");
    import(&sym, params, inputs).map(|_| ())
}

fn error_of(symbol_json: &str, params: &[u8]) -> String {
    try_import(symbol_json, params, &data())
        .expect_err("import must fail")
        .to_string()
}

const CONV: &str = r#""kernel": "(1, 1)", "num_filter": "3", "no_bias": "True""#;

#[test]
fn a_valid_convolution_imports() {
    try_import(
        &symbol("Convolution", CONV, ""),
        &weights(&[3, 2, 1, 1]),
        &data(),
    )
    .unwrap();
}

#[test]
fn unknown_operator_is_named() {
    // An MXNet operator ward has no converter for (deformable position-sensitive ROI
    // pooling, which no zoo model uses).
    let op = "_contrib_DeformablePSROIPooling";
    let e = error_of(&symbol(op, "", ""), &weights(&[3, 2, 1, 1]));
    assert!(
        e.contains("\"layer\"") && e.contains(op) && e.contains("not supported"),
        "{e}"
    );
}

#[test]
fn unknown_attribute_is_named() {
    let e = error_of(
        &symbol("Convolution", &format!(r#"{CONV}, "bogus": "1""#), ""),
        &weights(&[3, 2, 1, 1]),
    );
    assert!(
        e.contains("\"layer\" (Convolution)") && e.contains("unsupported attribute \"bogus\""),
        "{e}"
    );
}

#[test]
fn unsupported_attribute_values_are_named() {
    let cases = [
        (
            "Convolution",
            format!(r#"{CONV}, "layout": "NHWC""#),
            "layout",
        ),
        (
            "Pooling",
            r#""kernel": "(2, 2)", "pool_type": "lp""#.to_string(),
            "pool_type",
        ),
        (
            "Pooling",
            r#""kernel": "(2, 2)", "pooling_convention": "same""#.to_string(),
            "pooling_convention",
        ),
        (
            "Dropout",
            r#""p": "0.5", "mode": "always""#.to_string(),
            "mode",
        ),
        (
            "BatchNorm",
            r#""output_mean_var": "True""#.to_string(),
            "output_mean_var",
        ),
        (
            "Activation",
            r#""act_type": "swish""#.to_string(),
            "act_type",
        ),
    ];
    for (op, attrs, attr) in cases {
        // The weight input is irrelevant: attributes are checked first.
        let e = error_of(&symbol(op, &attrs, ""), &weights(&[3, 2, 1, 1]));
        assert!(
            e.contains("\"layer\"") && e.contains(op) && e.contains(attr),
            "{op} {attr}: {e}"
        );
    }
}

#[test]
fn missing_parameter_is_named() {
    let e = error_of(&symbol("Convolution", CONV, ""), &list(&[], Some(&[])));
    assert!(
        e.contains("\"w\"") && e.contains("neither a parameter"),
        "{e}"
    );
}

#[test]
fn misshaped_parameter_is_named() {
    let e = error_of(&symbol("Convolution", CONV, ""), &weights(&[3, 5, 1, 1]));
    assert!(
        e.contains("\"layer\"") && e.contains("weight has shape [3, 5, 1, 1]"),
        "{e}"
    );
    let e = error_of(&symbol("Convolution", CONV, ""), &weights(&[4, 2, 1, 1]));
    assert!(e.contains("num_filter") && e.contains('4'), "{e}");
}

#[test]
fn deconvolution_has_no_bias_by_default() {
    // MXNet's Deconvolution defaults to no_bias=True: a third input is one too many.
    let attrs = r#""kernel": "(1, 1)", "num_filter": "3""#;
    let json = symbol("Deconvolution", attrs, ", [1, 0, 0]");
    let e = error_of(&json, &weights(&[2, 3, 1, 1]));
    assert!(e.contains("has 3 inputs, expected 2"), "{e}");
    try_import(
        &symbol("Deconvolution", attrs, ""),
        &weights(&[2, 3, 1, 1]),
        &data(),
    )
    .unwrap();
}

#[test]
fn output_index_beyond_the_operator_is_refused() {
    let json =
        symbol("Convolution", CONV, "").replace("\"heads\": [[2, 0, 0]]", "\"heads\": [[2, 1, 0]]");
    let e = error_of(&json, &weights(&[3, 2, 1, 1]));
    assert!(e.contains("output 1") && e.contains("\"layer\""), "{e}");
}

#[test]
fn declared_input_must_exist() {
    let mut inputs = data();
    inputs.push(DeclaredInput {
        name: "extra".into(),
        dtype: DType::F32,
        shape: vec![1],
    });
    let e = try_import(
        &symbol("Convolution", CONV, ""),
        &weights(&[3, 2, 1, 1]),
        &inputs,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("\"extra\"") && e.contains("no such variable"),
        "{e}"
    );
}

#[test]
fn structural_and_unnamed_params_are_refused_with_advice() {
    let structural = list(&[v2_f32(&[3, 2, 1, 1], &[0.5; 6])], Some(&[b"0.weight"]));
    let e = error_of(&symbol("Convolution", CONV, ""), &structural);
    assert!(
        e.contains("save_parameters") && e.contains("HybridBlock.export"),
        "{e}"
    );
    let unnamed = list(&[v2_f32(&[3, 2, 1, 1], &[0.5; 6])], None);
    let e = error_of(&symbol("Convolution", CONV, ""), &unnamed);
    assert!(e.contains("unnamed list"), "{e}");
}

#[test]
fn input_shape_that_does_not_fit_the_weights_is_refused() {
    let inputs = vec![DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 7, 4, 4],
    }];
    let e = try_import(
        &symbol("Convolution", CONV, ""),
        &weights(&[3, 2, 1, 1]),
        &inputs,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("\"layer\"") && e.contains("weight"), "{e}");
}

#[test]
fn sparse_parameters_cannot_densify_past_the_budget() {
    // 40 bytes on disk describing a 32 GiB dense array.
    let huge = params_corpus::row_sparse(&[1 << 31, 4], &[0, 4], &[], &[]);
    let e = error_of(
        &symbol("Convolution", CONV, ""),
        &list(&[huge], Some(&[b"arg:w"])),
    );
    assert!(e.contains("\"arg:w\"") && e.contains("limit"), "{e}");
}

#[test]
fn counts_past_the_limits_are_refused_before_use() {
    let e = error_of(
        &symbol("SliceChannel", r#""num_outputs": "1099511627776""#, "")
            .replace(", [1, 0, 0]]", "]"),
        &weights(&[3, 2, 1, 1]),
    );
    assert!(
        e.contains("\"layer\"") && e.contains("exceed the limit"),
        "{e}"
    );
}

/// An attribute value the importer does not implement is a typed refusal naming the node,
/// the operator, the attribute and the value.
#[test]
fn an_unsupported_attribute_value_is_named() {
    let json = r#"{"nodes": [
        {"op": "null", "name": "data", "inputs": []},
        {"op": "Pooling", "name": "pool", "attrs": {"kernel": "(2, 2)", "pooling_convention": "same"},
         "inputs": [[0, 0, 0]]}
    ], "arg_nodes": [0], "heads": [[1, 0, 0]]}"#;
    let symbol = ward_mxnet::symbol::read_symbol(json.as_bytes(), &Default::default()).unwrap();
    let params = ward_mxnet::params::ParamsFile {
        arrays: vec![],
        names: None,
    };
    let declared = [ward_mxnet::import::DeclaredInput {
        name: "data".into(),
        dtype: ward_core::DType::F32,
        shape: vec![1, 1, 4, 4],
    }];
    let err = ward_mxnet::import::import(&symbol, params, &declared).unwrap_err();
    match &err {
        ward_mxnet::import::ImportError::Unsupported {
            node,
            op,
            attr,
            value,
            ..
        } => {
            assert_eq!(
                (node.as_str(), op.as_str(), *attr),
                ("pool", "Pooling", "pooling_convention")
            );
            assert_eq!(value, "\"same\"");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "node \"pool\" (Pooling): attribute \"pooling_convention\" = \"same\" is not supported"
    );
}

/// data (N, 2, 4, 4) → `op` with `attrs`, no parameters.
fn one_input(op: &str, attrs: &str) -> String {
    format!(
        r#"{{"nodes": [
            {{"op": "null", "name": "data", "inputs": []}},
            {{"op": "{op}", "name": "layer", "attrs": {{{attrs}}}, "inputs": [[0, 0, 0]]}}
        ], "arg_nodes": [0], "heads": [[1, 0, 0]], "attrs": {{"mxnet_version": ["int", 10901]}}}}"#
    )
}

fn no_params() -> Vec<u8> {
    list(&[], Some(&[]))
}

#[test]
fn resize_operators_import_with_their_attributes() {
    for (op, attrs) in [
        (
            "_contrib_AdaptiveAvgPooling2D",
            r#""output_size": "(2, 3)""#,
        ),
        ("_contrib_AdaptiveAvgPooling2D", r#""output_size": "None""#),
        (
            "_contrib_BilinearResize2D",
            r#""height": "7", "width": "3", "align_corners": "False""#,
        ),
        (
            "_contrib_BilinearResize2D",
            r#""mode": "odd_scale", "scale_height": "2.5", "scale_width": "0.5""#,
        ),
        ("_contrib_BilinearResize2D", r#""mode": "to_odd_up""#),
        (
            "UpSampling",
            r#""scale": "2", "sample_type": "nearest", "num_args": "1", "workspace": "512", "num_filter": "0""#,
        ),
    ] {
        try_import(&one_input(op, attrs), &no_params(), &data())
            .unwrap_or_else(|e| panic!("{op} {attrs}: {e}"));
    }
}

#[test]
fn hostile_resize_sizes_are_refused_by_node_and_attribute() {
    for (op, attrs, needle) in [
        (
            "_contrib_BilinearResize2D",
            r#""height": "1000000000", "width": "2""#,
            "height",
        ),
        (
            "_contrib_BilinearResize2D",
            r#""height": "0", "width": "2""#,
            "height",
        ),
        (
            "_contrib_BilinearResize2D",
            r#""scale_height": "1000000", "scale_width": "1""#,
            "scale_height",
        ),
        (
            "_contrib_BilinearResize2D",
            r#""scale_height": "-2", "scale_width": "1""#,
            "scale_height",
        ),
        (
            "_contrib_BilinearResize2D",
            r#""scale_height": "2""#,
            "scale_width",
        ),
        (
            "_contrib_BilinearResize2D",
            r#""mode": "odd_scale""#,
            "scale_height",
        ),
        ("_contrib_BilinearResize2D", r#""mode": "bogus""#, "mode"),
        (
            "_contrib_AdaptiveAvgPooling2D",
            r#""output_size": "0""#,
            "output_size",
        ),
        (
            "_contrib_AdaptiveAvgPooling2D",
            r#""output_size": "(-1, 2)""#,
            "output_size",
        ),
        (
            "_contrib_AdaptiveAvgPooling2D",
            r#""output_size": "(100000, 2)""#,
            "output_size",
        ),
        (
            "_contrib_AdaptiveAvgPooling2D",
            r#""output_size": "(1, 2, 3)""#,
            "output_size",
        ),
        (
            "UpSampling",
            r#""scale": "1000000", "sample_type": "nearest", "num_args": "1""#,
            "scale",
        ),
        (
            "UpSampling",
            r#""scale": "0", "sample_type": "nearest", "num_args": "1""#,
            "scale",
        ),
        (
            "UpSampling",
            r#""scale": "2", "sample_type": "nearest", "num_args": "2""#,
            "num_args",
        ),
        (
            "UpSampling",
            r#""scale": "2", "sample_type": "nearest", "num_args": "1", "multi_input_mode": "max""#,
            "multi_input_mode",
        ),
        (
            "UpSampling",
            r#""scale": "2", "sample_type": "cubic", "num_args": "1""#,
            "sample_type",
        ),
    ] {
        let e = try_import(&one_input(op, attrs), &no_params(), &data())
            .expect_err(attrs)
            .to_string();
        assert!(
            e.contains("\"layer\"") && e.contains(needle),
            "{op} {attrs}: {e}"
        );
    }
}

#[test]
fn an_upsampled_plane_past_the_limit_is_refused_at_shape_inference() {
    // Each attribute is in range; the product with the input's size is not.
    let e = try_import(
        &one_input(
            "UpSampling",
            r#""scale": "1000", "sample_type": "nearest", "num_args": "1""#,
        ),
        &no_params(),
        &[DeclaredInput {
            name: "data".into(),
            dtype: DType::F32,
            shape: vec![1, 2, 1000, 4],
        }],
    )
    .expect_err("too large")
    .to_string();
    assert!(e.contains("layer") && e.contains("scale"), "{e}");
}
