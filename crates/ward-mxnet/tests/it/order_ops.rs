//! topk, sort and argsort (issue 20): what they import to (one `topk` op; sort and
//! argsort are MXNet's topk of every element), the output names MXNet gives them, and the
//! crafted attributes they refuse, each refusal naming the node and the attribute, at
//! import. Their numbers against MXNet's, ties and NaN included, are checked on the
//! one-operator fixtures (ward-exec's conformance test, ward-graph's interpreter,
//! ward-train's gradients).

use crate::support::one_op::{import_with, imported, refusal};
use ward_graph::ir::Op;
use ward_graph::limits::MAX_ORDER_INDEX_AXIS;
use ward_graph::ops::order::{Topk, TopkReturn};

const DATA: &[i64] = &[-1, 2, 3, 4];

fn topk(axis: Option<i64>, k: Option<usize>, ret: TopkReturn, ascend: bool) -> Op {
    Op::Topk(Topk {
        axis,
        k,
        ret,
        ascend,
    })
}

#[test]
fn topk_reads_every_attribute_with_mxnets_defaults() {
    let (op, shape) = imported("topk", "", &[DATA]);
    assert_eq!(op, topk(Some(-1), Some(1), TopkReturn::Indices, false));
    assert_eq!(shape, vec![-1, 2, 3, 1]);
    let (op, shape) = imported(
        "topk",
        r#""axis": "1", "k": "2", "ret_typ": "value", "is_ascend": "True", "dtype": "float32""#,
        &[DATA],
    );
    assert_eq!(op, topk(Some(1), Some(2), TopkReturn::Value, true));
    assert_eq!(shape, vec![-1, 2, 3, 4]);
    // k <= 0 is every element; a mask has the data's shape.
    let (op, shape) = imported("topk", r#""k": "0", "ret_typ": "mask""#, &[DATA]);
    assert_eq!(op, topk(Some(-1), None, TopkReturn::Mask, false));
    assert_eq!(shape, vec![-1, 2, 3, 4]);
    let (op, _) = imported("topk", r#""k": "-3", "ret_typ": "both""#, &[DATA]);
    assert_eq!(op, topk(Some(-1), None, TopkReturn::Both, false));
    // No axis: the flattened input, whose length follows the batch.
    let (op, shape) = imported("topk", r#""axis": "None", "k": "5""#, &[DATA]);
    assert_eq!(op, topk(None, Some(5), TopkReturn::Indices, false));
    assert_eq!(shape, vec![5]);
    // The indices' dtype does not apply to values and masks (MXNet gives the data's).
    let (op, _) = imported("topk", r#""ret_typ": "value", "dtype": "float16""#, &[DATA]);
    assert_eq!(op, topk(Some(-1), Some(1), TopkReturn::Value, false));
    // Along the variable batch only k 1 runs for every batch size.
    let (op, _) = imported("topk", r#""axis": "0""#, &[DATA]);
    assert_eq!(op, topk(Some(0), Some(1), TopkReturn::Indices, false));
    refusal(
        "topk",
        r#""axis": "0", "k": "3""#,
        &[DATA],
        &["\"k\"", "variable"],
    );
}

#[test]
fn sort_and_argsort_are_topk_of_every_element() {
    let (op, shape) = imported("sort", "", &[DATA]);
    assert_eq!(op, topk(Some(-1), None, TopkReturn::Value, true));
    assert_eq!(shape, vec![-1, 2, 3, 4]);
    let (op, shape) = imported("sort", r#""axis": "None", "is_ascend": "0""#, &[DATA]);
    assert_eq!(op, topk(None, None, TopkReturn::Value, false));
    assert_eq!(shape, vec![-1]);
    let (op, _) = imported("argsort", r#""axis": "-3", "dtype": "float32""#, &[DATA]);
    assert_eq!(op, topk(Some(-3), None, TopkReturn::Indices, true));
}

#[test]
fn outputs_are_named_as_mxnet_lists_them() {
    // MXNet's topk of values and sort have a hidden second output (the indices), so
    // their one visible output is numbered.
    let name = |op: &str, attrs: &str| {
        import_with(op, attrs, &[DATA]).unwrap().graph.outputs[0]
            .name
            .clone()
    };
    assert_eq!(name("topk", r#""ret_typ": "value""#), "layer_output0");
    assert_eq!(name("topk", r#""ret_typ": "both""#), "layer_output0");
    assert_eq!(name("topk", r#""ret_typ": "indices""#), "layer_output");
    assert_eq!(name("topk", r#""ret_typ": "mask""#), "layer_output");
    assert_eq!(name("sort", ""), "layer_output0");
    assert_eq!(name("argsort", ""), "layer_output");
}

#[test]
fn crafted_k_and_axes_are_refused_by_name() {
    // k past the axis, past every element, or not an integer.
    refusal(
        "topk",
        r#""k": "5""#,
        &[DATA],
        &["\"k\"", "k 5", "4 elements"],
    );
    refusal(
        "topk",
        r#""k": "1000000000000""#,
        &[DATA],
        &["\"k\"", "1000000000000"],
    );
    refusal(
        "topk",
        r#""axis": "None", "k": "25""#,
        &[&[2, 3, 4]],
        &["\"k\"", "24 elements"],
    );
    refusal("topk", r#""k": "100000000000000000000""#, &[DATA], &["k"]);
    refusal("topk", r#""k": "two""#, &[DATA], &["k"]);
    // Axes out of range, either way.
    refusal("topk", r#""axis": "4""#, &[DATA], &["axis", "4"]);
    refusal("sort", r#""axis": "-5""#, &[DATA], &["axis", "-5"]);
    refusal("argsort", r#""axis": "(0, 1)""#, &[DATA], &["axis"]);
    // Values MXNet does not have, and attributes it does not take.
    refusal("topk", r#""ret_typ": "all""#, &[DATA], &["ret_typ", "all"]);
    refusal("topk", r#""is_ascend": "maybe""#, &[DATA], &["is_ascend"]);
    refusal("topk", r#""largest": "1""#, &[DATA], &["largest"]);
    refusal("sort", r#""dtype": "float32""#, &[DATA], &["dtype"]);
    refusal("sort", r#""k": "2""#, &[DATA], &["k"]);
    refusal("topk", r#""dtype": "int8""#, &[DATA], &["dtype", "int8"]);
}

#[test]
fn indices_ward_cannot_give_exactly_are_refused_by_name() {
    // Indices in another dtype than float32.
    for dtype in ["float16", "float64", "int32", "int64", "uint8"] {
        refusal(
            "topk",
            &format!(r#""ret_typ": "both", "dtype": "{dtype}""#),
            &[DATA],
            &["dtype", dtype, "float32"],
        );
        refusal(
            "argsort",
            &format!(r#""dtype": "{dtype}""#),
            &[DATA],
            &["dtype", dtype],
        );
    }
    // An axis longer than float32 counts exactly: indices refused, values taken.
    let long: &[i64] = &[MAX_ORDER_INDEX_AXIS as i64 + 1];
    refusal("argsort", "", &[long], &["ret_typ", "float32"]);
    refusal("topk", r#""k": "3""#, &[long], &["ret_typ", "float32"]);
    let (op, shape) = imported("topk", r#""k": "3", "ret_typ": "value""#, &[long]);
    assert_eq!(op, topk(Some(-1), Some(3), TopkReturn::Value, false));
    assert_eq!(shape, vec![3]);
}
