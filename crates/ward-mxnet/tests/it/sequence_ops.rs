//! SequenceMask, SequenceReverse and SequenceLast of issue 20, with and without
//! `sequence_length`: what they import to, with the variable batch dim, and the crafted
//! attributes and shapes they refuse, each refusal naming the node and the attribute or
//! input. Their numbers against MXNet's are checked on the one-operator fixtures
//! (`seqmask_*`, `seqrev_*`, `seqlast_len_*`); lengths MXNet reads or writes outside the
//! data for are refused by the reference interpreter (ward-graph's unit tests).

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::sequence::{SequenceLast, SequenceMask, SequenceReverse};

#[test]
fn sequence_mask_reads_lengths_value_and_axis() {
    let (op, shape) = imported(
        "SequenceMask",
        r#""use_sequence_length": "True", "value": "-1e4""#,
        &[&[5, -1, 3], &[-1]],
    );
    assert_eq!(
        op,
        Op::SequenceMask(SequenceMask {
            axis: 0,
            value: -1e4,
            use_sequence_length: true
        })
    );
    assert_eq!(shape, vec![5, -1, 3]);
    // axis 1: (batch, steps, ...); the value is read as a float32, as MXNet reads it.
    let (op, _) = imported(
        "_npx_sequence_mask",
        r#""use_sequence_length": "1", "axis": "1", "value": "0.1""#,
        &[&[-1, 5], &[-1]],
    );
    assert_eq!(
        op,
        Op::SequenceMask(SequenceMask {
            axis: 1,
            value: f64::from(0.1f32),
            use_sequence_length: true
        })
    );
    // Without lengths: the identity, on the data alone.
    let (op, shape) = imported("SequenceMask", r#""value": "-inf""#, &[&[5, 2]]);
    assert_eq!(
        op,
        Op::SequenceMask(SequenceMask {
            axis: 0,
            value: f64::NEG_INFINITY,
            use_sequence_length: false
        })
    );
    assert_eq!(shape, vec![5, 2]);
}

#[test]
fn sequence_reverse_and_last_take_lengths() {
    let (op, shape) = imported(
        "SequenceReverse",
        r#""use_sequence_length": "True", "axis": "0""#,
        &[&[4, -1, 2], &[-1]],
    );
    assert_eq!(
        op,
        Op::SequenceReverse(SequenceReverse {
            use_sequence_length: true
        })
    );
    assert_eq!(shape, vec![4, -1, 2]);
    let (op, shape) = imported(
        "SequenceLast",
        r#""use_sequence_length": "True", "axis": "1""#,
        &[&[-1, 4, 2], &[-1]],
    );
    assert_eq!(
        op,
        Op::SequenceLast(SequenceLast {
            axis: 1,
            use_sequence_length: true
        })
    );
    assert_eq!(shape, vec![-1, 2]);
}

#[test]
fn sequence_operators_refuse_axes_shapes_and_values_mxnet_does_not_take() {
    let with = r#""use_sequence_length": "True""#;
    for op in ["SequenceMask", "SequenceLast", "SequenceReverse"] {
        for axis in ["2", "-1", "99999999999"] {
            refusal(
                op,
                &format!(r#""axis": "{axis}""#),
                &[&[4, 3, 2]],
                &["axis"],
            );
        }
        // The lengths input comes with the flag, and only with it.
        refusal(op, with, &[&[4, 3, 2]], &["inputs"]);
        refusal(op, "", &[&[4, 3, 2], &[3]], &["inputs"]);
        // One length per sequence; data of rank 2 or more.
        refusal(op, with, &[&[4, 3, 2], &[4]], &["sequence_length"]);
        refusal(op, with, &[&[4, 3, 2], &[3, 1]], &["sequence_length"]);
        refusal(op, "", &[&[4]], &["rank"]);
        refusal(
            op,
            r#""use_sequence_length": "maybe""#,
            &[&[4, 3]],
            &["use_sequence_length"],
        );
        refusal(op, r#""mask": "1""#, &[&[4, 3]], &["mask"]);
    }
    // MXNet 1.9.1's SequenceReverse takes axis 0 only.
    refusal(
        "SequenceReverse",
        r#""axis": "1""#,
        &[&[4, 3]],
        &["axis", "0 only"],
    );
    refusal("SequenceMask", r#""value": "nan""#, &[&[4, 3]], &["value"]);
    refusal("SequenceLast", r#""value": "1""#, &[&[4, 3]], &["value"]);
    refusal("SequenceLast", "", &[&[0, 3]], &["empty"]);
}
