//! The comparison and logical operators and `where` of issue 20: what they import to, and
//! the crafted attributes and shapes they refuse, each refusal naming the node and what
//! was wrong. Their numbers against MXNet's are checked on the one-operator fixtures
//! (ward-exec's conformance test, ward-graph's interpreter, ward-train's gradients).

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::elementwise::{Binary, BinaryKind, Scalar, ScalarKind, Unary, UnaryKind};

#[test]
fn every_comparison_and_logical_operator_imports_to_its_kind() {
    let stems = [
        ("greater", BinaryKind::Greater),
        ("greater_equal", BinaryKind::GreaterEqual),
        ("lesser", BinaryKind::Lesser),
        ("lesser_equal", BinaryKind::LesserEqual),
        ("equal", BinaryKind::Equal),
        ("not_equal", BinaryKind::NotEqual),
        ("logical_and", BinaryKind::LogicalAnd),
        ("logical_or", BinaryKind::LogicalOr),
        ("logical_xor", BinaryKind::LogicalXor),
    ];
    for (stem, kind) in stems {
        let (op, shape) = imported(&format!("_{stem}"), "", &[&[-1, 3], &[-1, 3]]);
        assert_eq!(
            op,
            Op::Binary(Binary {
                kind,
                broadcast: false
            })
        );
        assert_eq!(shape, vec![-1, 3]);
        let (op, shape) = imported(&format!("broadcast_{stem}"), "", &[&[-1, 1, 3], &[2, 1]]);
        assert_eq!(
            op,
            Op::Binary(Binary {
                kind,
                broadcast: true
            })
        );
        assert_eq!(shape, vec![-1, 2, 3]);
        let (op, _) = imported(
            &format!("_{stem}_scalar"),
            r#""scalar": "-2.5", "is_int": "False""#,
            &[&[-1, 3]],
        );
        assert_eq!(
            op,
            Op::Scalar(Scalar {
                kind: ScalarKind::of_predicate(kind).unwrap(),
                value: -2.5
            })
        );
    }
    // MXNet 1.9.1's default scalar is 1; its legacy names are aliases.
    let (op, _) = imported("_greater_scalar", "", &[&[2]]);
    assert_eq!(
        op,
        Op::Scalar(Scalar {
            kind: ScalarKind::Greater,
            value: 1.0
        })
    );
    let (op, _) = imported("_GreaterEqualScalar", r#""scalar": "inf""#, &[&[2]]);
    assert_eq!(
        op,
        Op::Scalar(Scalar {
            kind: ScalarKind::GreaterEqual,
            value: f64::INFINITY
        })
    );
    let (op, _) = imported("_Logical_Xor", "", &[&[2], &[2]]);
    assert_eq!(
        op,
        Op::Binary(Binary {
            kind: BinaryKind::LogicalXor,
            broadcast: false
        })
    );
    let (op, shape) = imported("logical_not", "", &[&[-1, 4]]);
    assert_eq!(
        op,
        Op::Unary(Unary {
            kind: UnaryKind::LogicalNot
        })
    );
    assert_eq!(shape, vec![-1, 4]);
}

#[test]
fn where_takes_a_condition_of_x_shape_or_of_its_first_dim() {
    let (op, shape) = imported("where", "", &[&[-1, 2, 3], &[-1, 2, 3], &[-1, 2, 3]]);
    assert_eq!(op.name(), "where");
    assert_eq!(shape, vec![-1, 2, 3]);
    let (_, shape) = imported("where", "", &[&[-1], &[-1, 2, 3], &[-1, 2, 3]]);
    assert_eq!(shape, vec![-1, 2, 3]);
    let (_, shape) = imported("where", "", &[&[4], &[4], &[4]]);
    assert_eq!(shape, vec![4]);
}

#[test]
fn crafted_attributes_and_shapes_are_refused_by_name() {
    // Attributes MXNet does not have for these operators are named.
    refusal(
        "_greater_scalar",
        r#""scalar": "1", "axis": "0""#,
        &[&[2]],
        &["axis"],
    );
    refusal(
        "broadcast_equal",
        r#""scalar": "1""#,
        &[&[2], &[2]],
        &["scalar"],
    );
    refusal(
        "_logical_and",
        r#""num_args": "2""#,
        &[&[2], &[2]],
        &["num_args"],
    );
    refusal("logical_not", r#""scalar": "0""#, &[&[2]], &["scalar"]);
    refusal("where", r#""axis": "0""#, &[&[2], &[2], &[2]], &["axis"]);
    // A NaN scalar has no place in graph.json and MXNet's own exports never hold one.
    refusal(
        "_not_equal_scalar",
        r#""scalar": "nan""#,
        &[&[2]],
        &["scalar", "nan"],
    );
    refusal(
        "_equal_scalar",
        r#""scalar": "1e400""#,
        &[&[2]],
        &["scalar"],
    );
    refusal(
        "_lesser_scalar",
        r#""scalar": "1", "is_int": "maybe""#,
        &[&[2]],
        &["is_int"],
    );
    // Shapes: the same-shape forms do not broadcast; where's rules.
    refusal("_greater", "", &[&[2, 3], &[1, 3]], &["shape"]);
    refusal("broadcast_lesser", "", &[&[2, 3], &[3, 2]], &["broadcast"]);
    refusal("where", "", &[&[3], &[4, 2], &[4, 2]], &["condition"]);
    refusal("where", "", &[&[4, 1], &[4, 2], &[4, 2]], &["condition"]);
    refusal("where", "", &[&[2], &[2, 3], &[2, 1]], &["y"]);
    refusal("where", "", &[&[], &[2], &[2]], &["condition"]);
    refusal("where", "", &[&[2], &[2]], &["inputs"]);
    refusal("_equal", "", &[&[2]], &["inputs"]);
}
