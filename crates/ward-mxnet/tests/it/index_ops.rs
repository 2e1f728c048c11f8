//! take, pick, gather_nd and one_hot (issue 20), and slice_like and reshape_like, which
//! read only their second input's shape: what they import to, with the variable batch
//! dim, and the crafted attributes they refuse, each refusal naming the node and the
//! attribute, at import, before anything is allocated. Their numbers against MXNet's are
//! checked on the one-operator fixtures (ward-exec's conformance test, ward-graph's
//! interpreter, ward-train's gradients).

use crate::support::one_op::{import_with, imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::index::{GatherNd, IndexMode, OneHot, Pick, Take};
use ward_graph::ops::shape::{Reshape, ReshapeDim, Slice};

const DATA: &[i64] = &[-1, 3, 4];

#[test]
fn take_reads_its_axis_and_mode() {
    let (op, shape) = imported("take", "", &[DATA, &[2, 5]]);
    assert_eq!(
        op,
        Op::Take(Take {
            axis: 0,
            mode: IndexMode::Clip
        })
    );
    assert_eq!(shape, vec![2, 5, 3, 4]);
    let (op, shape) = imported("take", r#""axis": "-1", "mode": "wrap""#, &[DATA, &[-1, 2]]);
    assert_eq!(
        op,
        Op::Take(Take {
            axis: -1,
            mode: IndexMode::Wrap
        })
    );
    assert_eq!(shape, vec![-1, 3, -1, 2]);
    // raise fails MXNet's forward pass on an index out of range: a plan cannot.
    refusal(
        "take",
        r#""mode": "raise""#,
        &[DATA, &[2]],
        &["mode", "raise"],
    );
    refusal("take", r#""mode": "nearest""#, &[DATA, &[2]], &["mode"]);
    refusal("take", r#""axis": "3""#, &[DATA, &[2]], &["axis", "3"]);
    refusal("take", r#""axis": "-4""#, &[DATA, &[2]], &["axis", "-4"]);
    refusal(
        "take",
        r#""axis": "0", "extra": "1""#,
        &[DATA, &[2]],
        &["extra"],
    );
    // An output past the element cap, refused at import.
    refusal(
        "take",
        "",
        &[&[2, 1 << 20], &[1 << 12, 1 << 10]],
        &["axis", "elements"],
    );
}

#[test]
fn pick_defaults_to_the_last_axis_and_refuses_none() {
    let (op, shape) = imported("pick", "", &[DATA, &[-1, 3]]);
    assert_eq!(
        op,
        Op::Pick(Pick {
            axis: -1,
            keepdims: false,
            mode: IndexMode::Clip
        })
    );
    assert_eq!(shape, vec![-1, 3]);
    let (op, shape) = imported(
        "pick",
        r#""axis": "1", "keepdims": "True", "mode": "wrap""#,
        &[DATA, &[-1, 1, 4]],
    );
    assert_eq!(
        op,
        Op::Pick(Pick {
            axis: 1,
            keepdims: true,
            mode: IndexMode::Wrap
        })
    );
    assert_eq!(shape, vec![-1, 1, 4]);
    refusal(
        "pick",
        r#""axis": "None""#,
        &[DATA, &[3]],
        &["axis", "None"],
    );
    refusal("pick", r#""axis": "5""#, &[DATA, &[-1, 3]], &["axis", "5"]);
    refusal("pick", r#""mode": "raise""#, &[DATA, &[-1, 3]], &["mode"]);
    // An index of the wrong shape.
    refusal("pick", "", &[DATA, &[-1, 4]], &["index"]);
}

#[test]
fn gather_nd_addresses_the_leading_axes() {
    let (op, shape) = imported("gather_nd", "", &[DATA, &[2, 5]]);
    assert_eq!(op, Op::GatherNd(GatherNd {}));
    assert_eq!(shape, vec![5, 4]);
    let (_, shape) = imported("gather_nd", "", &[&[2, 3], &[2, 1, 6]]);
    assert_eq!(shape, vec![1, 6]);
    refusal("gather_nd", "", &[&[2, 3], &[3, 4]], &["indices"]);
    refusal("gather_nd", "", &[&[2, 3], &[2]], &["indices"]);
    refusal(
        "gather_nd",
        r#""axis": "0""#,
        &[&[2, 3], &[1, 2]],
        &["axis"],
    );
}

#[test]
fn one_hot_reads_depth_and_values_and_refuses_other_dtypes() {
    let (op, shape) = imported(
        "one_hot",
        r#""depth": "5", "on_value": "2.5", "off_value": "-1""#,
        &[&[-1, 3]],
    );
    assert_eq!(
        op,
        Op::OneHot(OneHot {
            depth: 5,
            on_value: 2.5,
            off_value: -1.0
        })
    );
    assert_eq!(shape, vec![-1, 3, 5]);
    refusal(
        "one_hot",
        r#""depth": "3", "dtype": "int32""#,
        &[&[4]],
        &["dtype", "int32"],
    );
    refusal("one_hot", "", &[&[4]], &["depth"]);
    for depth in ["0", "-3", "1000000000000"] {
        refusal(
            "one_hot",
            &format!(r#""depth": "{depth}""#),
            &[&[4]],
            &["depth", depth],
        );
    }
    // Each depth within the limit, the output past the element cap.
    refusal(
        "one_hot",
        r#""depth": "16777216""#,
        &[&[1 << 10]],
        &["depth", "elements"],
    );
    refusal(
        "one_hot",
        r#""depth": "3", "on_value": "nan""#,
        &[&[4]],
        &["on_value"],
    );
}

#[test]
fn slice_like_becomes_a_slice_of_fixed_sizes() {
    let i = import_with("slice_like", r#""axes": "(1, -1)""#, &[DATA, &[7, 2, 3]]).unwrap();
    assert_eq!(i.graph.nodes.len(), 1);
    assert_eq!(
        i.graph.nodes[0].op,
        Op::Slice(Slice {
            begin: vec![None, Some(0), Some(0)],
            end: vec![None, Some(2), Some(3)],
            step: vec![1, 1, 1],
        })
    );
    assert_eq!(i.graph.nodes[0].inputs.len(), 1);
    assert_eq!(i.output_shapes[0], vec![-1, 2, 3]);
    // No axes: every axis, of the same rank.
    let (_, shape) = imported("slice_like", "", &[&[4, 3], &[2, 3]]);
    assert_eq!(shape, vec![2, 3]);
    refusal("slice_like", "", &[&[4, 3], &[2]], &["rank"]);
    refusal(
        "slice_like",
        r#""axes": "(3,)""#,
        &[DATA, &[1, 1, 1]],
        &["axes"],
    );
    refusal(
        "slice_like",
        r#""axes": "(-4,)""#,
        &[DATA, &[1, 1, 1]],
        &["axes"],
    );
    refusal(
        "slice_like",
        r#""axes": "(2,)""#,
        &[DATA, &[1, 1]],
        &["axes", "past"],
    );
    refusal(
        "slice_like",
        r#""axes": "(1,)""#,
        &[DATA, &[1, 5]],
        &["axis 1"],
    );
    // A variable dim of the second input: the size is fixed at import.
    refusal(
        "slice_like",
        r#""axes": "(0,)""#,
        &[DATA, &[-1]],
        &["variable"],
    );
    // A size the variable dim of the first holds only for some values.
    refusal(
        "slice_like",
        r#""axes": "(0,)""#,
        &[DATA, &[3]],
        &["variable"],
    );
}

#[test]
fn reshape_like_becomes_a_reshape() {
    let (op, shape) = imported("reshape_like", "", &[&[2, 3, 4], &[6, 4]]);
    assert_eq!(
        op,
        Op::Reshape(Reshape {
            dims: vec![ReshapeDim::Fixed(6), ReshapeDim::Fixed(4)]
        })
    );
    assert_eq!(shape, vec![6, 4]);
    // The batch dim kept outside the range is copied; fixed ones are written.
    let (op, shape) = imported(
        "reshape_like",
        r#""lhs_begin": "1", "rhs_begin": "-2""#,
        &[DATA, &[5, 2, 6]],
    );
    assert_eq!(
        op,
        Op::Reshape(Reshape {
            dims: vec![
                ReshapeDim::Copy(0),
                ReshapeDim::Fixed(2),
                ReshapeDim::Fixed(6)
            ]
        })
    );
    assert_eq!(shape, vec![-1, 2, 6]);
    // A variable dim taken from the second input is inferred from the element count.
    let (op, shape) = imported("reshape_like", "", &[DATA, &[-1, 12]]);
    assert_eq!(
        op,
        Op::Reshape(Reshape {
            dims: vec![ReshapeDim::Infer, ReshapeDim::Fixed(12)]
        })
    );
    assert_eq!(shape, vec![-1, 12]);
    refusal("reshape_like", "", &[&[2, 3], &[5]], &["element counts"]);
    refusal(
        "reshape_like",
        r#""lhs_begin": "1", "lhs_end": "1""#,
        &[&[2, 3], &[3]],
        &["lhs_begin"],
    );
    refusal(
        "reshape_like",
        r#""rhs_end": "4""#,
        &[&[2, 3], &[6]],
        &["rhs_begin", "rhs_end"],
    );
    refusal(
        "reshape_like",
        r#""lhs_begin": "-4""#,
        &[&[2, 3, 4], &[24]],
        &["lhs_begin"],
    );
    // Two variable dims of the second input: one reshape can infer only one.
    refusal("reshape_like", "", &[&[2, 3], &[-1, -1]], &["two"]);
}
