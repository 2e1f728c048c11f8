//! tile, repeat and the broadcasts of issue 20 (`broadcast_axis` and its alias
//! `broadcast_axes`, `broadcast_to`, `broadcast_like`): what they import to, with the
//! variable batch dim, and the crafted attributes they refuse, each refusal naming the
//! node and the attribute, at import, before anything is allocated. Their numbers against
//! MXNet's are checked on the one-operator fixtures (ward-exec's conformance test,
//! ward-graph's interpreter, ward-train's gradients).

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::shape::BroadcastDim::{Fixed, Keep, Like};
use ward_graph::ops::shape::{BroadcastDim, BroadcastTo, Repeat, Tile};

const DATA: &[i64] = &[-1, 2, 3, 4];

fn broadcast(dims: Vec<BroadcastDim>) -> Op {
    Op::BroadcastTo(BroadcastTo { dims })
}

#[test]
fn tile_pads_the_shorter_of_reps_and_shape_with_leading_ones() {
    let (op, shape) = imported("tile", r#""reps": "(2, 3)""#, &[DATA]);
    assert_eq!(op, Op::Tile(Tile { reps: vec![2, 3] }));
    assert_eq!(shape, vec![-1, 2, 6, 12]);
    // Longer reps: the input gets leading axes of 1; the batch dim stays variable.
    let (_, shape) = imported("tile", r#""reps": "(2, 3, 1, 1, 2)""#, &[DATA]);
    assert_eq!(shape, vec![2, -1, 2, 3, 8]);
    // No reps: the identity. `_npi_tile` is MXNet's alias.
    let (op, shape) = imported("_npi_tile", r#""reps": "()""#, &[DATA]);
    assert_eq!(op, Op::Tile(Tile { reps: vec![] }));
    assert_eq!(shape, vec![-1, 2, 3, 4]);
    let (_, shape) = imported("tile", r#""reps": "3""#, &[&[5]]);
    assert_eq!(shape, vec![15]);
}

#[test]
fn repeat_repeats_along_an_axis_or_the_flattened_input() {
    let (op, shape) = imported("repeat", r#""repeats": "2", "axis": "-1""#, &[DATA]);
    assert_eq!(
        op,
        Op::Repeat(Repeat {
            repeats: 2,
            axis: Some(-1)
        })
    );
    assert_eq!(shape, vec![-1, 2, 3, 8]);
    let (op, shape) = imported("repeat", r#""repeats": "3", "axis": "None""#, &[DATA]);
    assert_eq!(
        op,
        Op::Repeat(Repeat {
            repeats: 3,
            axis: None
        })
    );
    assert_eq!(shape, vec![-1]);
    let (_, shape) = imported("repeat", r#""repeats": "3""#, &[&[2, 2]]);
    assert_eq!(shape, vec![12]);
    let (_, shape) = imported("_np_repeat", r#""repeats": "2", "axis": "0""#, &[DATA]);
    assert_eq!(shape, vec![-1, 2, 3, 4]);
}

#[test]
fn the_three_broadcasts_import_to_one_operator() {
    let ones: &[i64] = &[-1, 1, 3, 1];
    let (op, shape) = imported(
        "broadcast_axis",
        r#""axis": "(1, 3)", "size": "(2, 5)""#,
        &[ones],
    );
    assert_eq!(op, broadcast(vec![Keep, Fixed(2), Keep, Fixed(5)]));
    assert_eq!(shape, vec![-1, 2, 3, 5]);
    let (alias, _) = imported(
        "broadcast_axes",
        r#""axis": "(1, 3)", "size": "(2, 5)""#,
        &[ones],
    );
    assert_eq!(alias, op);
    let (op, shape) = imported("broadcast_axis", r#""axis": "1", "size": "4""#, &[ones]);
    assert_eq!(op, broadcast(vec![Keep, Fixed(4), Keep, Keep]));
    assert_eq!(shape, vec![-1, 4, 3, 1]);
    // An axis listed twice: to 1, then to 3 (MXNet checks the shape as it goes).
    let (op, _) = imported(
        "broadcast_axis",
        r#""axis": "(1, 1)", "size": "(1, 3)""#,
        &[ones],
    );
    assert_eq!(op, broadcast(vec![Keep, Fixed(3), Keep, Keep]));
    // No axes: a copy.
    let (op, _) = imported("broadcast_axis", "", &[ones]);
    assert_eq!(op, broadcast(vec![Keep; 4]));

    // broadcast_to: 0 keeps the input's dim (the batch's too).
    let (op, shape) = imported("broadcast_to", r#""shape": "(0, 4, 3, 0)""#, &[ones]);
    assert_eq!(op, broadcast(vec![Keep, Fixed(4), Fixed(3), Keep]));
    assert_eq!(shape, vec![-1, 4, 3, 1]);

    // broadcast_like: the whole rhs, or the listed axes of it; only its shape is read.
    let (op, shape) = imported("broadcast_like", "", &[&[-1, 1, 3], &[-1, 4, 3]]);
    assert_eq!(op, broadcast(vec![Like(0), Like(1), Like(2)]));
    assert_eq!(shape, vec![-1, 4, 3]);
    let (op, shape) = imported(
        "broadcast_like",
        r#""lhs_axes": "(1,)", "rhs_axes": "(-1,)""#,
        &[&[-1, 1, 3], &[5, 7]],
    );
    assert_eq!(op, broadcast(vec![Keep, Like(1), Keep]));
    assert_eq!(shape, vec![-1, 7, 3]);
    // One of the two alone is ignored by MXNet 1.9.1: the whole rhs.
    let (op, _) = imported(
        "broadcast_like",
        r#""lhs_axes": "(1,)""#,
        &[&[2, 1, 3], &[2, 4, 3]],
    );
    assert_eq!(op, broadcast(vec![Like(0), Like(1), Like(2)]));
}

#[test]
fn crafted_counts_are_refused_by_name_before_any_allocation() {
    // A count alone past the element limit, zero (an empty tensor) or negative.
    refusal(
        "tile",
        r#""reps": "(1000000000000,)""#,
        &[DATA],
        &["reps", "1000000000000"],
    );
    refusal("tile", r#""reps": "(2, 0)""#, &[DATA], &["reps", "0"]);
    refusal("tile", r#""reps": "(-1,)""#, &[DATA], &["reps", "-1"]);
    refusal(
        "repeat",
        r#""repeats": "1000000000000000""#,
        &[DATA],
        &["repeats"],
    );
    refusal("repeat", r#""repeats": "0""#, &[DATA], &["repeats", "0"]);
    refusal("repeat", r#""repeats": "-3""#, &[DATA], &["repeats", "-3"]);
    refusal(
        "broadcast_axis",
        r#""axis": "(1,)", "size": "(1000000000000,)""#,
        &[&[2, 1]],
        &["size"],
    );
    refusal(
        "broadcast_axis",
        r#""axis": "(1,)", "size": "(0,)""#,
        &[&[2, 1]],
        &["size"],
    );
    refusal(
        "broadcast_to",
        r#""shape": "(2, -4)""#,
        &[&[2, 1]],
        &["shape", "-4"],
    );
    refusal(
        "broadcast_to",
        r#""shape": "(2, 1000000000000)""#,
        &[&[2, 1]],
        &["shape"],
    );
    // Counts each within the limit whose product is not, with the batch at its probe.
    refusal(
        "tile",
        r#""reps": "(16384, 16384)""#,
        &[DATA],
        &["reps", "elements"],
    );
    refusal(
        "repeat",
        r#""repeats": "536870912""#,
        &[DATA],
        &["repeats", "elements"],
    );
    refusal(
        "broadcast_to",
        r#""shape": "(0, 65536, 0, 65536)""#,
        &[&[-1, 1, 3, 1]],
        &["shape", "elements"],
    );
    refusal(
        "broadcast_like",
        r#""lhs_axes": "(0,)", "rhs_axes": "(0,)""#,
        &[&[1, 1024, 1024], &[2048]],
        &["elements"],
    );
    // More reps than a tensor may have axes.
    let many = format!(r#""reps": "({})""#, vec!["1"; 40].join(", "));
    refusal("tile", &many, &[DATA], &["reps"]);
}

#[test]
fn crafted_axes_and_shapes_are_refused_by_name() {
    // Missing, unknown or malformed attributes.
    refusal("tile", "", &[DATA], &["reps"]);
    refusal("tile", r#""reps": "(2,)", "axis": "0""#, &[DATA], &["axis"]);
    refusal("repeat", r#""axis": "0""#, &[DATA], &["repeats"]);
    refusal("repeat", r#""repeats": "two""#, &[DATA], &["repeats"]);
    // Axes out of range.
    refusal(
        "repeat",
        r#""repeats": "2", "axis": "4""#,
        &[DATA],
        &["axis", "4"],
    );
    refusal(
        "repeat",
        r#""repeats": "2", "axis": "-5""#,
        &[DATA],
        &["axis", "-5"],
    );
    refusal(
        "broadcast_axis",
        r#""axis": "(4,)", "size": "(2,)""#,
        &[DATA],
        &["axis"],
    );
    // MXNet 1.9.1's broadcast_axis fails on a negative axis.
    refusal(
        "broadcast_axis",
        r#""axis": "(-1,)", "size": "(2,)""#,
        &[&[2, 1]],
        &["axis", "negative"],
    );
    refusal(
        "broadcast_like",
        r#""lhs_axes": "(0,)", "rhs_axes": "(2,)""#,
        &[&[1, 3], &[4, 3]],
        &["rhs_axes"],
    );
    refusal(
        "broadcast_like",
        r#""lhs_axes": "(-3,)", "rhs_axes": "(0,)""#,
        &[&[1, 3], &[4, 3]],
        &["lhs_axes"],
    );
    // Broadcasting an axis that is not of size 1, or the variable batch dim.
    refusal(
        "broadcast_axis",
        r#""axis": "(2,)", "size": "(5,)""#,
        &[DATA],
        &["axis", "size 1"],
    );
    refusal(
        "broadcast_axis",
        r#""axis": "(0,)", "size": "(5,)""#,
        &[DATA],
        &["axis", "size 1"],
    );
    refusal(
        "broadcast_axis",
        r#""axis": "(1, 1)", "size": "(2, 3)""#,
        &[&[2, 1]],
        &["axis", "size 1"],
    );
    refusal(
        "broadcast_axis",
        r#""axis": "(0, 1)", "size": "(2,)""#,
        &[&[1, 1]],
        &["axis", "size"],
    );
    refusal(
        "broadcast_to",
        r#""shape": "(0, 5, 0, 0)""#,
        &[DATA],
        &["shape", "from 1"],
    );
    refusal(
        "broadcast_to",
        r#""shape": "(8, 0, 0, 0)""#,
        &[DATA],
        &["shape", "variable"],
    );
    refusal(
        "broadcast_to",
        r#""shape": "(2, 3)""#,
        &[DATA],
        &["shape", "rank"],
    );
    refusal(
        "broadcast_like",
        r#""lhs_axes": "(1,)", "rhs_axes": "(0,)""#,
        &[&[2, 3], &[4, 3]],
        &["lhs_axes", "size 1"],
    );
    refusal(
        "broadcast_like",
        r#""lhs_axes": "()", "rhs_axes": "()""#,
        &[&[2, 1], &[4, 3]],
        &["lhs_axes", "empty"],
    );
    refusal(
        "broadcast_like",
        r#""lhs_axes": "(0, 1)", "rhs_axes": "(0,)""#,
        &[&[1, 1], &[4, 3]],
        &["lhs_axes", "rhs_axes"],
    );
    refusal("broadcast_like", "", &[&[1, 3], &[4, 3, 2]], &["rank"]);
    refusal("broadcast_like", "", &[&[1, 3], &[4, 5]], &["from 1"]);
    refusal("broadcast_like", "", &[&[2, 3]], &["inputs"]);
    // The batch dim broadcast to a fixed size would run for some batch sizes only.
    refusal("broadcast_like", "", &[&[-1, 3], &[4, 3]], &["variable"]);
}
