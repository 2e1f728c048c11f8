//! The element-wise math functions of issue 20 (`erf`, `square`, the trigonometric and
//! hyperbolic functions, the logarithms, the rounding functions, `sign`, `softsign`):
//! what they import to and what they refuse. Their numbers against MXNet's, edge values
//! included, are checked on the `math_*` one-operator fixtures (ward-exec's conformance
//! test, ward-graph's interpreter, ward-train's gradients).

use crate::support::one_op::{import_with, imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::elementwise::{Unary, UnaryKind};

#[test]
fn every_function_imports_under_its_mxnet_name_and_keeps_the_shape() {
    for kind in UnaryKind::ALL {
        let name = match kind {
            UnaryKind::Neg => "negative",
            UnaryKind::Copy => "_copy",
            other => other.name(),
        };
        let (op, shape) = imported(name, "", &[&[-1, 3, 2]]);
        assert_eq!(op, Op::Unary(Unary { kind }), "{name}");
        assert_eq!(shape, vec![-1, 3, 2], "{name}");
    }
}

#[test]
fn identity_is_copy() {
    let (op, _) = imported("identity", "", &[&[4]]);
    assert_eq!(
        op,
        Op::Unary(Unary {
            kind: UnaryKind::Copy
        })
    );
}

#[test]
fn fix_is_trunc() {
    let (op, _) = imported("fix", "", &[&[4]]);
    assert_eq!(
        op,
        Op::Unary(Unary {
            kind: UnaryKind::Trunc
        })
    );
}

#[test]
fn attributes_and_extra_inputs_are_refused_by_name() {
    refusal("erf", r#""scale": "2""#, &[&[3]], &["scale"]);
    refusal("round", r#""decimals": "1""#, &[&[3]], &["decimals"]);
    let e = import_with("sin", "", &[&[3], &[3]]).expect_err("sin takes one input");
    assert!(e.contains("layer"), "{e}");
}

#[test]
fn ward_names_that_are_not_mxnet_operators_are_unknown() {
    // `neg` is the graph's name for MXNet's `negative`; MXNet has no `neg` operator.
    refusal("neg", "", &[&[3]], &["neg"]);
}

#[test]
fn casts_import_to_every_type_mxnet_computes_in_and_others_are_refused_by_name() {
    use ward_graph::ops::elementwise::{Cast, CastType};
    for (op, dtype, to) in [
        ("Cast", "float16", CastType::Float16),
        ("Cast", "float32", CastType::Float32),
        ("Cast", "float64", CastType::Float64),
        ("Cast", "int8", CastType::Int8),
        ("Cast", "uint8", CastType::Uint8),
        ("Cast", "int32", CastType::Int32),
        ("Cast", "int64", CastType::Int64),
        ("amp_cast", "float16", CastType::Float16),
        ("amp_cast", "float32", CastType::Float32),
    ] {
        let (got, shape) = imported(op, &format!(r#""dtype": "{dtype}""#), &[&[-1, 3]]);
        assert_eq!(got, Op::Cast(Cast { to }), "{op} {dtype}");
        assert_eq!(shape, vec![-1, 3]);
    }
    for dtype in ["bool", "bfloat16", "int16", "float"] {
        refusal(
            "Cast",
            &format!(r#""dtype": "{dtype}""#),
            &[&[3]],
            &["dtype", dtype],
        );
    }
    refusal("Cast", "", &[&[3]], &["dtype"]);
}

#[test]
fn arithmetic_with_a_scalar_takes_mxnets_default_of_one() {
    use ward_graph::ops::elementwise::{Scalar, ScalarKind};
    let (op, _) = imported("_plus_scalar", "", &[&[3]]);
    assert_eq!(
        op,
        Op::Scalar(Scalar {
            kind: ScalarKind::Add,
            value: 1.0
        })
    );
}

#[test]
fn zeros_like_is_a_fill_so_nan_gives_zero() {
    use ward_graph::ops::shape::{Fill, FillDim};
    let (op, shape) = imported("zeros_like", "", &[&[-1, 3]]);
    assert_eq!(
        op,
        Op::Fill(Fill {
            value: 0.0,
            shape: vec![
                FillDim::Like { input: 0, axis: 0 },
                FillDim::Like { input: 0, axis: 1 }
            ]
        })
    );
    assert_eq!(shape, vec![-1, 3]);
}

#[test]
fn div_sqrt_dim_divides_by_the_root_of_a_fixed_last_dim() {
    use ward_graph::ops::elementwise::{Scalar, ScalarKind};
    let (op, shape) = imported("_contrib_div_sqrt_dim", "", &[&[-1, 8, 16]]);
    assert_eq!(
        op,
        Op::Scalar(Scalar {
            kind: ScalarKind::Div,
            value: 4.0
        })
    );
    assert_eq!(shape, vec![-1, 8, 16]);
    // A last dim that follows the batch has no one root.
    refusal("_contrib_div_sqrt_dim", "", &[&[3, -1]], &["last dim"]);
}
