//! batch_dot and MXNet's interleaved attention products (`_contrib_interleaved_matmul_*`)
//! of issue 20: what they import to, with the variable batch dim, and the crafted
//! attributes and shapes they refuse, each refusal naming the node and the attribute or
//! input. Their numbers against MXNet's are checked on the one-operator fixtures
//! (`batchdot_*`, `imm_*`: ward-exec's conformance test, ward-graph's interpreter,
//! ward-train's gradients).

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::linear::{AttentionKind, BatchDot, InterleavedMatmul};

#[test]
fn batch_dot_multiplies_the_last_two_axes_with_either_transposed() {
    let (op, shape) = imported("batch_dot", "", &[&[-1, 3, 4], &[-1, 4, 5]]);
    assert_eq!(
        op,
        Op::BatchDot(BatchDot {
            transpose_a: false,
            transpose_b: false
        })
    );
    assert_eq!(shape, vec![-1, 3, 5]);
    let (op, shape) = imported(
        "batch_dot",
        r#""transpose_a": "True", "transpose_b": "1", "forward_stype": "default""#,
        &[&[2, -1, 4, 3], &[2, -1, 5, 4]],
    );
    assert_eq!(
        op,
        Op::BatchDot(BatchDot {
            transpose_a: true,
            transpose_b: true
        })
    );
    assert_eq!(shape, vec![2, -1, 3, 5]);
    // MXNet's alias.
    let (_, shape) = imported(
        "_npx_batch_dot",
        r#""forward_stype": "None""#,
        &[&[2, 3, 4], &[2, 4, 1]],
    );
    assert_eq!(shape, vec![2, 3, 1]);
}

#[test]
fn batch_dot_refuses_sparse_outputs_and_shapes_mxnet_refuses() {
    for stype in ["csr", "row_sparse"] {
        refusal(
            "batch_dot",
            &format!(r#""forward_stype": "{stype}""#),
            &[&[2, 3, 4], &[2, 4, 5]],
            &["forward_stype", stype],
        );
    }
    refusal(
        "batch_dot",
        r#""forward_stype": "dense""#,
        &[&[2, 3, 4], &[2, 4, 5]],
        &["forward_stype"],
    );
    refusal(
        "batch_dot",
        r#""transpose_c": "True""#,
        &[&[2, 3, 4], &[2, 4, 5]],
        &["transpose_c"],
    );
    // No broadcasting of the batch dims, no 2-D operands, inner dims must agree.
    refusal("batch_dot", "", &[&[1, 3, 4], &[2, 4, 5]], &["batch dims"]);
    refusal("batch_dot", "", &[&[3, 4], &[4, 5]], &["rank"]);
    refusal("batch_dot", "", &[&[2, 3, 4], &[1, 2, 4, 5]], &["rank"]);
    refusal(
        "batch_dot",
        r#""transpose_b": "True""#,
        &[&[2, 3, 4], &[2, 4, 5]],
        &["transpose_b"],
    );
}

#[test]
fn the_four_interleaved_products_import_to_one_operator() {
    let op = |kind, heads| Op::InterleavedMatmul(InterleavedMatmul { kind, heads });
    let (got, shape) = imported(
        "_contrib_interleaved_matmul_selfatt_qk",
        r#""heads": "2""#,
        &[&[5, -1, 24]],
    );
    assert_eq!(got, op(AttentionKind::SelfattQk, 2));
    assert_eq!(shape, vec![-1, 5, 5]);
    let (got, shape) = imported(
        "_contrib_interleaved_matmul_selfatt_valatt",
        r#""heads": "2""#,
        &[&[5, 3, 24], &[6, 5, 5]],
    );
    assert_eq!(got, op(AttentionKind::SelfattValatt, 2));
    assert_eq!(shape, vec![5, 3, 8]);
    let (got, shape) = imported(
        "_contrib_interleaved_matmul_encdec_qk",
        r#""heads": "4""#,
        &[&[5, 3, 8], &[7, 3, 16]],
    );
    assert_eq!(got, op(AttentionKind::EncdecQk, 4));
    assert_eq!(shape, vec![12, 5, 7]);
    let (got, shape) = imported(
        "_contrib_interleaved_matmul_encdec_valatt",
        r#""heads": "4""#,
        &[&[7, 3, 16], &[12, 5, 7]],
    );
    assert_eq!(got, op(AttentionKind::EncdecValatt, 4));
    assert_eq!(shape, vec![5, 3, 8]);
}

#[test]
fn interleaved_products_refuse_crafted_heads_and_layouts() {
    let qk = "_contrib_interleaved_matmul_selfatt_qk";
    refusal(qk, "", &[&[5, 3, 12]], &["heads"]);
    for heads in ["0", "-1", "-3000000000", "1000000000000", "5", "abc"] {
        refusal(
            qk,
            &format!(r#""heads": "{heads}""#),
            &[&[5, 3, 12]],
            &["heads"],
        );
    }
    // heads·3·D must make up the whole last dim; rank 3 only.
    refusal(qk, r#""heads": "2""#, &[&[5, 3, 10]], &["heads"]);
    refusal(qk, r#""heads": "2""#, &[&[5, 3, 12, 1]], &["heads"]);
    refusal(
        qk,
        r#""heads": "1", "scale": "0.5""#,
        &[&[5, 3, 12]],
        &["scale"],
    );
    // The attention must be (batch·heads, L, L): MXNet 1.9.1 does not check its first dim
    // and reads past it.
    refusal(
        "_contrib_interleaved_matmul_selfatt_valatt",
        r#""heads": "2""#,
        &[&[5, 3, 12], &[3, 5, 5]],
        &["attention"],
    );
    refusal(
        "_contrib_interleaved_matmul_encdec_qk",
        r#""heads": "2""#,
        &[&[5, 3, 8], &[7, 3, 8]],
        &["keys_values"],
    );
    refusal(
        "_contrib_interleaved_matmul_encdec_valatt",
        r#""heads": "2""#,
        &[&[7, 3, 16], &[6, 5, 6]],
        &["attention"],
    );
    refusal(
        "_contrib_interleaved_matmul_encdec_valatt",
        r#""heads": "2""#,
        &[&[7, 3, 16]],
        &["inputs"],
    );
}
