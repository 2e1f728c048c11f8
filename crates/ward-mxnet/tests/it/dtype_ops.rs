//! Element types at import: operands MXNet refuses together are refused, naming the node
//! and both types; softmax's lengths must be integers shaped as the data without the
//! axis; shape_array and size_array give int64.

use ward_core::DType;
use ward_graph::dtypes::infer_dtypes;
use ward_graph::ir::Op;

use crate::support::one_op::import_typed;

fn refused(op: &str, attrs: &str, inputs: &[(DType, &[i64])], needles: &[&str]) {
    let e = import_typed(op, attrs, inputs).expect_err("the import must be refused");
    assert!(e.contains("layer"), "{op} {attrs}: {e}");
    for needle in needles {
        assert!(
            e.contains(needle),
            "{op} {attrs}: {e} (expected {needle:?})"
        );
    }
}

#[test]
fn operands_of_different_types_are_refused_as_mxnet_refuses_them() {
    let i32s: &[i64] = &[2, 3];
    for op in ["broadcast_add", "elemwise_mul", "broadcast_mod", "_maximum"] {
        refused(
            op,
            "",
            &[(DType::I32, i32s), (DType::F32, i32s)],
            &["int32", "float32", "different types"],
        );
    }
    refused(
        "Concat",
        r#""num_args": "2", "dim": "0""#,
        &[(DType::I64, i32s), (DType::I32, i32s)],
        &["int64", "int32"],
    );
    refused(
        "where",
        "",
        &[(DType::F32, i32s), (DType::I32, i32s), (DType::F32, i32s)],
        &["x is int32", "y is float32"],
    );
    // Integers together keep their type; float16 and float64 data compute in float32.
    for (a, b, want) in [
        (DType::I32, DType::I32, DType::I32),
        (DType::U8, DType::U8, DType::U8),
        (DType::F16, DType::F64, DType::F32),
    ] {
        let imported = import_typed("broadcast_div", "", &[(a, i32s), (b, i32s)]).unwrap();
        let types = infer_dtypes(&imported.graph).unwrap();
        assert_eq!(types.node(0), &[want], "{a} / {b}");
    }
}

#[test]
fn softmax_lengths_are_integers_shaped_as_the_lanes() {
    let data: &[i64] = &[2, 3, 5];
    let lanes: &[i64] = &[2, 3];
    let attrs = r#""axis": "-1", "use_length": "True""#;
    let imported = import_typed("softmax", attrs, &[(DType::F32, data), (DType::I32, lanes)])
        .unwrap_or_else(|e| panic!("{e}"));
    match &imported.graph.nodes[0].op {
        Op::Softmax(s) => assert!(s.use_length),
        other => panic!("{other:?}"),
    }
    // MXNet refuses float lengths ("only support integer types").
    refused(
        "softmax",
        attrs,
        &[(DType::F32, data), (DType::F32, lanes)],
        &["length is float32", "integer"],
    );
    refused(
        "softmax",
        attrs,
        &[(DType::F32, data), (DType::I32, &[2, 5])],
        &["length", "[2, 5]", "[2, 3]"],
    );
    refused("softmax", attrs, &[(DType::F32, data)], &["input"]);
    // MXNet 1.9.1's log_softmax has no length input; its shape inference fails for a
    // negative axis other than -1 with lengths.
    refused(
        "log_softmax",
        attrs,
        &[(DType::F32, data), (DType::I32, lanes)],
        &["use_length", "log_softmax"],
    );
    refused(
        "softmax",
        r#""axis": "-2", "use_length": "True""#,
        &[(DType::F32, data), (DType::I32, &[2, 5])],
        &["axis -2", "use_length"],
    );
}

#[test]
fn shape_and_size_arrays_are_int64() {
    let data: &[i64] = &[-1, 3, 4];
    for (op, shape) in [("shape_array", vec![3]), ("size_array", vec![1])] {
        let imported = import_typed(op, "", &[(DType::F32, data)]).unwrap();
        assert_eq!(imported.output_shapes[0], shape, "{op}");
        let types = infer_dtypes(&imported.graph).unwrap();
        assert_eq!(types.node(0), &[DType::I64], "{op}");
    }
    refused(
        "shape_array",
        r#""lhs_begin": "0""#,
        &[(DType::F32, data)],
        &["lhs_begin"],
    );
}
