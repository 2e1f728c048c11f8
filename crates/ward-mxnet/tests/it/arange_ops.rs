//! `_arange` and `_contrib_arange_like` (issue 20): what they import to, and the crafted
//! ranges they refuse before anything is allocated, each refusal naming the node and the
//! attributes. Their numbers against MXNet's are checked on the `arange_*` and
//! `arangelike_*` one-operator fixtures.

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::shape::{Arange, FillDim};

#[test]
fn a_range_imports_with_its_count_and_no_stop_counts_from_zero() {
    let (op, shape) = imported(
        "_arange",
        r#""start": "1", "stop": "4", "step": "0.5", "repeat": "2""#,
        &[],
    );
    assert_eq!(
        op,
        Op::Arange(Arange {
            start: 1.0,
            step: 0.5,
            repeat: 2,
            shape: vec![FillDim::Fixed(12)]
        })
    );
    assert_eq!(shape, vec![12]);
    let (op, shape) = imported("_arange", r#""start": "2.5""#, &[]);
    assert_eq!(
        op,
        Op::Arange(Arange {
            start: 0.0,
            step: 1.0,
            repeat: 1,
            shape: vec![FillDim::Fixed(3)]
        })
    );
    assert_eq!(shape, vec![3]);
    let (_, shape) = imported(
        "_arange",
        r#""start": "5", "stop": "1", "step": "-1.5""#,
        &[],
    );
    assert_eq!(shape, vec![3]);
}

#[test]
fn arange_like_follows_its_input_batch_included() {
    let (op, shape) = imported("_contrib_arange_like", "", &[&[-1, 3]]);
    assert_eq!(
        op,
        Op::Arange(Arange {
            start: 0.0,
            step: 1.0,
            repeat: 1,
            shape: vec![
                FillDim::Like { input: 0, axis: 0 },
                FillDim::Like { input: 0, axis: 1 }
            ]
        })
    );
    assert_eq!(shape, vec![-1, 3]);
    let (_, shape) = imported("_contrib_arange_like", r#""axis": "-1""#, &[&[-1, 3, 7]]);
    assert_eq!(shape, vec![7]);
}

#[test]
fn hostile_ranges_are_refused_by_name() {
    // 10^15 elements: refused from the attributes, before anything is made.
    refusal(
        "_arange",
        r#""start": "0", "stop": "1e15""#,
        &[],
        &["stop", "limit"],
    );
    refusal(
        "_arange",
        r#""start": "0", "stop": "10", "repeat": "1073741824""#,
        &[],
        &["repeat", "limit"],
    );
    refusal(
        "_arange",
        r#""start": "0", "stop": "3", "step": "0""#,
        &[],
        &["step"],
    );
    refusal(
        "_arange",
        r#""start": "3", "stop": "0""#,
        &[],
        &["empty range"],
    );
    refusal(
        "_arange",
        r#""start": "0", "stop": "3", "step": "-1""#,
        &[],
        &["empty range"],
    );
    refusal(
        "_arange",
        r#""start": "0", "stop": "inf""#,
        &[],
        &["finite"],
    );
    refusal(
        "_arange",
        r#""start": "0", "stop": "3", "repeat": "0""#,
        &[],
        &["repeat"],
    );
    refusal("_arange", r#""stop": "3""#, &[], &["start"]);
    refusal(
        "_arange",
        r#""start": "0", "stop": "3", "dtype": "int32""#,
        &[],
        &["dtype", "int32"],
    );
    refusal(
        "_arange",
        r#""start": "0", "stop": "3", "infer_range": "True""#,
        &[],
        &["infer_range"],
    );
    refusal(
        "_arange",
        r#""start": "0", "stop": "3""#,
        &[&[2]],
        &["inputs"],
    );
    refusal(
        "_contrib_arange_like",
        r#""axis": "2""#,
        &[&[2, 3]],
        &["axis"],
    );
    refusal(
        "_contrib_arange_like",
        r#""repeat": "-1""#,
        &[&[2, 3]],
        &["repeat"],
    );
    refusal(
        "_contrib_arange_like",
        r#""step": "nan""#,
        &[&[2, 3]],
        &["step"],
    );
}
