//! The shape operators of issue 20 (`transpose`, `expand_dims`, `squeeze`, `slice`,
//! `slice_axis`): what they import to, and the crafted attributes they refuse, each
//! refusal naming the node and the attribute. Their numbers against MXNet's are checked
//! on the one-operator fixtures (ward-exec's conformance test).

use crate::support::one_op::{self, import_with};

/// The output shape, with -1 for a dim that follows the variable batch.
fn output_shape(op: &str, attrs: &str, shape: &[i64]) -> Vec<i64> {
    let imported = import_with(op, attrs, &[shape]).unwrap_or_else(|e| panic!("{op} {attrs}: {e}"));
    imported.output_shapes[0].clone()
}

/// The refusal, which must name the node and `attr`.
fn refusal(op: &str, attrs: &str, shape: &[i64], attr: &str) -> String {
    one_op::refusal(op, attrs, &[shape], &[attr])
}

const DATA: &[i64] = &[-1, 2, 1, 4];

#[test]
fn shapes_follow_mxnet() {
    assert_eq!(output_shape("transpose", "", DATA), vec![4, 1, 2, -1]);
    assert_eq!(
        output_shape("transpose", r#""axes": "(0, 3, 1, 2)""#, DATA),
        vec![-1, 4, 2, 1]
    );
    assert_eq!(
        output_shape("expand_dims", r#""axis": "-1""#, DATA),
        vec![-1, 2, 1, 4, 1]
    );
    assert_eq!(
        output_shape("expand_dims", r#""axis": "-5""#, DATA),
        vec![1, -1, 2, 1, 4]
    );
    assert_eq!(
        output_shape("squeeze", r#""axis": "(-2,)""#, DATA),
        vec![-1, 2, 4]
    );
    assert_eq!(output_shape("squeeze", "", &[3, 1, 1]), vec![3]);
    assert_eq!(output_shape("squeeze", "", &[1, 1]), vec![1]);
    assert_eq!(
        output_shape(
            "slice",
            r#""begin": "(None, 1)", "end": "(None, None)""#,
            DATA
        ),
        vec![-1, 1, 1, 4]
    );
    assert_eq!(
        output_shape(
            "slice",
            r#""begin": "(None, None, None, 3)", "end": "(None, None, None, -9)", "step": "(None, None, None, -2)""#,
            DATA
        ),
        vec![-1, 2, 1, 2]
    );
    assert_eq!(
        output_shape(
            "slice",
            r#""begin": "(0, 0, 0, 1)", "end": "(5, 9, 9, 99)""#,
            &[3, 2, 1, 4]
        ),
        vec![3, 2, 1, 3]
    );
    assert_eq!(
        output_shape(
            "slice_axis",
            r#""axis": "-1", "begin": "-3", "end": "None""#,
            DATA
        ),
        vec![-1, 2, 1, 3]
    );
}

#[test]
fn crafted_attributes_are_refused_by_name() {
    refusal("transpose", r#""axes": "(-1, 0, 1, 2)""#, DATA, "axes");
    refusal(
        "transpose",
        r#""axes": "(0, 0, 1, 2)""#,
        DATA,
        "permutation",
    );
    refusal("transpose", r#""axes": "(0, 1, 2)""#, DATA, "rank");
    refusal(
        "transpose",
        r#""axes": "(0, 1, 2, 3000000000000)""#,
        DATA,
        "permutation",
    );
    refusal("expand_dims", r#""axis": "5""#, DATA, "axis");
    refusal("expand_dims", r#""axis": "-1000000000000""#, DATA, "axis");
    refusal("expand_dims", "", DATA, "axis");
    refusal("squeeze", r#""axis": "(1,)""#, DATA, "axis");
    refusal("squeeze", r#""axis": "(2, -2)""#, DATA, "twice");
    refusal("squeeze", r#""axis": "(9,)""#, DATA, "axis");
    // MXNet would drop the batch axis only in the calls where it is 1.
    refusal("squeeze", "", DATA, "variable dim 0");
    refusal("squeeze", r#""axis": "(0,)""#, DATA, "axis");
    refusal(
        "slice",
        r#""begin": "(0,)", "end": "(1,)", "step": "(0,)""#,
        DATA,
        "step",
    );
    refusal("slice", r#""begin": "(0, 0)", "end": "(1,)""#, DATA, "end");
    let forty = format!("({})", vec!["0"; 40].join(", "));
    refusal(
        "slice",
        &format!(r#""begin": "{forty}", "end": "{forty}""#),
        DATA,
        "axes",
    );
    refusal(
        "slice",
        r#""begin": "(None, 1000000000000)", "end": "(None, None)""#,
        DATA,
        "empty",
    );
    refusal(
        "slice",
        r#""begin": "(None, 1)", "end": "(None, 1)""#,
        DATA,
        "empty",
    );
    refusal(
        "slice",
        r#""begin": "(None, 1.5)", "end": "(None, 2)""#,
        DATA,
        "begin",
    );
    refusal(
        "slice_axis",
        r#""axis": "3", "begin": "0", "end": "1000000000000000""#,
        DATA,
        "out of range",
    );
    refusal(
        "slice_axis",
        r#""axis": "3", "begin": "2", "end": "2""#,
        DATA,
        "empty",
    );
    refusal(
        "slice_axis",
        r#""axis": "7", "begin": "0", "end": "1""#,
        DATA,
        "axis",
    );
    refusal("slice_axis", r#""axis": "1", "begin": "0""#, DATA, "end");
}

#[test]
fn reverse_keeps_each_axis_listed_an_odd_number_of_times() {
    use ward_graph::ops::shape::Reverse;
    use ward_graph::Op;
    let axes = |attrs: &str| match one_op::imported("reverse", attrs, &[DATA]).0 {
        Op::Reverse(Reverse { axes }) => axes,
        other => panic!("{attrs}: imported as {other:?}"),
    };
    assert_eq!(axes(r#""axis": "(3, 1)""#), vec![1, 3]);
    // MXNet reverses once per listing: twice is no reversal, three times is one.
    assert_eq!(axes(r#""axis": "(1, 1)""#), Vec::<usize>::new());
    assert_eq!(axes(r#""axis": "(2, 2, 2)""#), vec![2]);
    assert_eq!(axes(r#""axis": "()""#), Vec::<usize>::new());
    assert_eq!(
        output_shape("flip", r#""axis": "(0,)""#, DATA),
        DATA.to_vec()
    );
}

#[test]
fn reverse_refuses_the_axes_mxnet_refuses() {
    // MXNet 1.9.1 takes no negative axis here, and needs `axis`.
    refusal("reverse", r#""axis": "(-1,)""#, DATA, "axis");
    refusal("reverse", r#""axis": "(4,)""#, DATA, "axis");
    refusal("reverse", "", DATA, "axis");
}
