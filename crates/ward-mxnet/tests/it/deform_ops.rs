//! `_contrib_DeformableConvolution` (DCNv1) and `_contrib_ModulatedDeformableConvolution`
//! (DCNv2): what they import to, with MXNet 1.9.1's defaults, and the crafted attributes
//! and shapes they refuse at import, each refusal naming the node and the attribute or
//! input. Their numbers against MXNet's (26 cases each) are checked on the one-operator
//! fixtures (ward-graph's interpreter, ward-exec's conformance test).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::conv::DeformableConv;

const DATA: &[i64] = &[-1, 4, 9, 8];
/// 2 · 3 · 3 taps, output 9 × 8 (3 × 3, pad 1).
const OFFSET: &[i64] = &[-1, 18, 9, 8];
const MASK: &[i64] = &[-1, 9, 9, 8];
const WEIGHT: &[i64] = &[6, 4, 3, 3];
const BIAS: &[i64] = &[6];
const V1: &str = "_contrib_DeformableConvolution";
const V2: &str = "_contrib_ModulatedDeformableConvolution";

fn deform(modulated: bool, groups: usize, dg: usize, bias: bool) -> DeformableConv {
    DeformableConv {
        kernel: vec![3, 3],
        stride: vec![1, 1],
        dilation: vec![1, 1],
        pad: vec![1, 1],
        groups,
        deformable_groups: dg,
        modulated,
        bias,
        im2col_step: modulated.then_some(64),
    }
}

#[test]
fn both_read_every_attribute_with_mxnets_defaults() {
    let (op, shape) = imported(
        V1,
        r#""kernel": "(3, 3)", "pad": "(1, 1)", "num_filter": "6""#,
        &[DATA, OFFSET, WEIGHT, BIAS],
    );
    assert_eq!(op, Op::DeformableConv(deform(false, 1, 1, true)));
    assert_eq!(shape, vec![-1, 6, 9, 8]);
    let (op, shape) = imported(
        V2,
        r#""kernel": "(3, 3)", "pad": "(1, 1)", "num_filter": "6", "workspace": "512", "layout": "NCHW""#,
        &[DATA, OFFSET, MASK, WEIGHT, BIAS],
    );
    assert_eq!(op, Op::DeformableConv(deform(true, 1, 1, true)));
    assert_eq!(shape, vec![-1, 6, 9, 8]);
    // Every attribute given: groups split the weight, deformable groups the offsets.
    let (op, shape) = imported(
        V2,
        r#""kernel": "(3, 3)", "stride": "(2, 1)", "dilate": "(1, 2)", "pad": "(1, 2)", "num_filter": "6", "num_group": "2", "num_deformable_group": "2", "no_bias": "True", "im2col_step": "4", "layout": "None""#,
        &[DATA, &[-1, 36, 5, 8], &[-1, 18, 5, 8], &[6, 2, 3, 3]],
    );
    let mut want = deform(true, 2, 2, false);
    want.stride = vec![2, 1];
    want.dilation = vec![1, 2];
    want.pad = vec![1, 2];
    want.im2col_step = Some(4);
    assert_eq!(op, Op::DeformableConv(want));
    assert_eq!(shape, vec![-1, 6, 5, 8]);
}

#[test]
fn unsupported_attributes_are_refused_by_name() {
    let v1: &[&[i64]] = &[DATA, OFFSET, WEIGHT, BIAS];
    let v2: &[&[i64]] = &[DATA, OFFSET, MASK, WEIGHT, BIAS];
    let base = r#""kernel": "(3, 3)", "pad": "(1, 1)", "num_filter": "6""#;
    for (op, ins) in [(V1, v1), (V2, v2)] {
        refusal(
            op,
            &format!(r#"{base}, "layout": "NHWC""#),
            ins,
            &["\"layout\"", "NHWC"],
        );
        refusal(
            op,
            &format!(r#"{base}, "cudnn_tune": "off""#),
            ins,
            &["cudnn_tune"],
        );
        refusal(op, &format!(r#"{base}, "adj": "(1, 1)""#), ins, &["adj"]);
        refusal(
            op,
            r#""pad": "(1, 1)", "num_filter": "6""#,
            ins,
            &["kernel"],
        );
        refusal(
            op,
            r#""kernel": "(3, 3)", "pad": "(1, 1)""#,
            ins,
            &["num_filter"],
        );
        // Hostile values: a zero kernel, 3-D kernels, a zero or huge group count.
        refusal(
            op,
            r#""kernel": "(0, 3)", "num_filter": "6""#,
            ins,
            &["layer", "kernel"],
        );
        refusal(
            op,
            r#""kernel": "(3, 3, 3)", "num_filter": "6""#,
            ins,
            &["\"kernel\"", "2 dims"],
        );
        refusal(
            op,
            &format!(r#"{base}, "num_deformable_group": "0""#),
            ins,
            &["num_deformable_group"],
        );
        refusal(
            op,
            &format!(r#"{base}, "num_group": "0""#),
            ins,
            &["num_group"],
        );
        refusal(
            op,
            &format!(r#"{base}, "num_deformable_group": "1000000000000000""#),
            ins,
            &["deformable groups"],
        );
        refusal(
            op,
            &format!(r#"{base}, "num_deformable_group": "3""#),
            ins,
            &["divisible by 3 deformable groups"],
        );
        refusal(
            op,
            &format!(r#"{base}, "num_group": "3""#),
            ins,
            &["divisible by 3 groups"],
        );
        refusal(
            op,
            &format!(r#"{base}, "stride": "(0, 1)""#),
            ins,
            &["stride"],
        );
        refusal(
            op,
            r#""kernel": "(3, 3)", "pad": "(4611686018427387904, 1)", "stride": "(9223372036854775807, 1)", "num_filter": "6""#,
            ins,
            &["layer", "C int"],
        );
        refusal(
            op,
            r#""kernel": "(3, 3)", "pad": "(-1, 1)", "num_filter": "6""#,
            ins,
            &["\"pad\""],
        );
    }
    // im2col_step is DCNv2's alone; MXNet's refuses a step of 0.
    refusal(
        V1,
        &format!(r#"{base}, "im2col_step": "64""#),
        v1,
        &["im2col_step"],
    );
    refusal(
        V2,
        &format!(r#"{base}, "im2col_step": "0""#),
        v2,
        &["im2col_step"],
    );
    // MXNet's DCNv2 wants the filters divisible by the deformable groups (DCNv1 does not).
    imported(
        V1,
        r#""kernel": "(1, 1)", "num_filter": "3", "num_deformable_group": "2""#,
        &[&[1, 4, 3, 3], &[1, 4, 3, 3], &[3, 4, 1, 1], &[3]],
    );
    refusal(
        V2,
        r#""kernel": "(1, 1)", "num_filter": "3", "num_deformable_group": "2""#,
        &[
            &[1, 4, 3, 3],
            &[1, 4, 3, 3],
            &[1, 2, 3, 3],
            &[3, 4, 1, 1],
            &[3],
        ],
        &["3 output channels"],
    );
    // A batch past im2col_step and not divisible by it.
    refusal(
        V2,
        &format!(r#"{base}, "im2col_step": "2""#),
        &[&[3, 4, 9, 8], &[3, 18, 9, 8], &[3, 9, 9, 8], WEIGHT, BIAS],
        &["im2col_step"],
    );
}

#[test]
fn mismatched_inputs_are_refused_naming_the_input() {
    let base = r#""kernel": "(3, 3)", "pad": "(1, 1)", "num_filter": "6""#;
    // Offsets for one tap too few, for another output size, of another batch.
    refusal(
        V1,
        base,
        &[DATA, &[-1, 16, 9, 8], WEIGHT, BIAS],
        &["offset"],
    );
    refusal(
        V1,
        base,
        &[DATA, &[-1, 18, 8, 8], WEIGHT, BIAS],
        &["offset"],
    );
    refusal(
        V1,
        base,
        &[&[2, 4, 9, 8], &[3, 18, 9, 8], WEIGHT, BIAS],
        &["offset"],
    );
    refusal(
        V2,
        base,
        &[DATA, OFFSET, &[-1, 18, 9, 8], WEIGHT, BIAS],
        &["mask"],
    );
    refusal(
        V2,
        base,
        &[DATA, OFFSET, MASK, &[6, 2, 3, 3], BIAS],
        &["weight"],
    );
    refusal(V2, base, &[DATA, OFFSET, MASK, WEIGHT, &[5]], &["bias"]);
    // The wrong number of inputs: DCNv2 without its mask, no_bias with a bias.
    refusal(V2, base, &[DATA, OFFSET, WEIGHT, BIAS], &["inputs"]);
    refusal(
        V1,
        &format!(r#"{base}, "no_bias": "1""#),
        &[DATA, OFFSET, WEIGHT, BIAS],
        &["inputs"],
    );
    // Columns past the element cap are refused before anything is sized.
    refusal(
        V1,
        r#""kernel": "(3, 3)", "pad": "(1, 1)", "num_filter": "1""#,
        &[
            &[1, 4096, 512, 512],
            &[1, 18, 512, 512],
            &[1, 4096, 3, 3],
            &[1],
        ],
        &["columns"],
    );
}
