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
            other => other.name(),
        };
        let (op, shape) = imported(name, "", &[&[-1, 3, 2]]);
        assert_eq!(op, Op::Unary(Unary { kind }), "{name}");
        assert_eq!(shape, vec![-1, 3, 2], "{name}");
    }
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
