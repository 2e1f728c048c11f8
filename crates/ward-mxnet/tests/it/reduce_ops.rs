//! The reductions of issue 20 (`sum`, `prod`, `max`, `min`, `nansum`, `nanprod`, `norm`,
//! `argmax`, `argmin`, `argmax_channel`, and their `_axis`/`_sparse_` aliases): what they
//! import to, and the crafted attributes they refuse, each refusal naming the node. Their
//! numbers against MXNet's are checked on the one-operator fixtures (ward-exec's
//! conformance test, ward-graph's interpreter, ward-train's gradients).

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::reduce::{ArgKind, ArgReduce, Reduce, ReduceKind};

const DATA: &[i64] = &[-1, 2, 3, 4];

fn reduce(kind: ReduceKind, axes: Option<Vec<i64>>, keepdims: bool, exclude: bool) -> Op {
    Op::Reduce(Reduce {
        kind,
        axes,
        keepdims,
        exclude,
    })
}

#[test]
fn every_reduction_imports_to_its_kind_with_mxnets_axis_rules() {
    let kinds = [
        ("sum", ReduceKind::Sum),
        ("sum_axis", ReduceKind::Sum),
        ("_sparse_sum", ReduceKind::Sum),
        ("prod", ReduceKind::Prod),
        ("max", ReduceKind::Max),
        ("max_axis", ReduceKind::Max),
        ("min", ReduceKind::Min),
        ("min_axis", ReduceKind::Min),
        ("nansum", ReduceKind::NanSum),
        ("nanprod", ReduceKind::NanProd),
    ];
    for (name, kind) in kinds {
        let (op, shape) = imported(name, r#""axis": "(1, -1)""#, &[DATA]);
        assert_eq!(op, reduce(kind, Some(vec![1, -1]), false, false), "{name}");
        assert_eq!(shape, vec![-1, 3], "{name}");
    }
    // No axis: every axis, and no rank-0 result.
    let (op, shape) = imported("sum", "", &[DATA]);
    assert_eq!(op, reduce(ReduceKind::Sum, None, false, false));
    assert_eq!(shape, vec![1]);
    // axis=() is every axis in MXNet 1.9.1, exclude or not.
    let (op, shape) = imported("max", r#""axis": "()", "exclude": "True""#, &[DATA]);
    assert_eq!(op, reduce(ReduceKind::Max, None, false, false));
    assert_eq!(shape, vec![1]);
    let (_, shape) = imported(
        "prod",
        r#""axis": "0", "keepdims": "True", "exclude": "True""#,
        &[DATA],
    );
    assert_eq!(shape, vec![-1, 1, 1, 1]);
    let (op, shape) = imported("norm", r#""ord": "1", "axis": "(2,)""#, &[DATA]);
    assert_eq!(op, reduce(ReduceKind::L1, Some(vec![2]), false, false));
    assert_eq!(shape, vec![-1, 2, 4]);
    let (op, _) = imported("norm", r#""out_dtype": "float32""#, &[DATA]);
    assert_eq!(op, reduce(ReduceKind::L2, None, false, false));
}

#[test]
fn arg_reductions_import_with_their_axis() {
    let arg = |kind, axis, keepdims| {
        Op::ArgReduce(ArgReduce {
            kind,
            axis,
            keepdims,
        })
    };
    let (op, shape) = imported("argmax", r#""axis": "-1""#, &[DATA]);
    assert_eq!(op, arg(ArgKind::Max, Some(-1), false));
    assert_eq!(shape, vec![-1, 2, 3]);
    let (op, shape) = imported("argmin", r#""axis": "None", "keepdims": "True""#, &[DATA]);
    assert_eq!(op, arg(ArgKind::Min, None, true));
    assert_eq!(shape, vec![1, 1, 1, 1]);
    // argmax_channel is argmax along axis 1.
    let (op, shape) = imported("argmax_channel", "", &[DATA]);
    assert_eq!(op, arg(ArgKind::Max, Some(1), false));
    assert_eq!(shape, vec![-1, 3, 4]);
}

#[test]
fn crafted_attributes_are_refused_by_name() {
    // MXNet has ord 1 and 2 only, and computes in the input's float type here.
    refusal("norm", r#""ord": "3""#, &[DATA], &["ord", "3"]);
    refusal("norm", r#""out_dtype": "float64""#, &[DATA], &["out_dtype"]);
    // norm has no exclude; every reduction refuses what it does not know.
    refusal("norm", r#""exclude": "True""#, &[DATA], &["exclude"]);
    refusal("sum", r#""axes": "(1,)""#, &[DATA], &["axes"]);
    refusal("argmax_channel", r#""axis": "0""#, &[DATA], &["axis"]);
    // Axes out of range, listed twice (MXNet refuses both), or more than a tensor has.
    refusal("sum", r#""axis": "(4,)""#, &[DATA], &["axis 4"]);
    refusal("max", r#""axis": "(-5,)""#, &[DATA], &["axis -5"]);
    refusal("prod", r#""axis": "(1, -3)""#, &[DATA], &["twice"]);
    refusal("nansum", r#""axis": "(2, 2)""#, &[DATA], &["twice"]);
    let many = format!(r#""axis": "({})""#, vec!["0"; 40].join(", "));
    refusal("sum", &many, &[DATA], &["more axes"]);
    refusal("argmax", r#""axis": "4""#, &[DATA], &["axis 4"]);
    refusal("argmin", r#""axis": "(1, 2)""#, &[DATA], &["axis"]);
    refusal("argmax", r#""keepdims": "maybe""#, &[DATA], &["keepdims"]);
}
