//! `_contrib_MultiBoxPrior` (issue 20): what it imports to, with MXNet 1.9.1's defaults,
//! and the crafted attributes it refuses at import, each refusal naming the node and the
//! attribute. Its boxes against MXNet's (20 cases) are checked on the one-operator
//! fixtures (ward-graph's interpreter, ward-exec's conformance test, where the lowering
//! writes them as a constant, ward-train's zero gradient).

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::anchor::MultiBoxPrior;

const DATA: &[i64] = &[-1, 8, 6, 5];
const OP: &str = "_contrib_MultiBoxPrior";

fn prior(sizes: &[f32], ratios: &[f32], clip: bool, steps: [f32; 2], offsets: [f32; 2]) -> Op {
    Op::MultiBoxPrior(MultiBoxPrior {
        sizes: sizes.to_vec(),
        ratios: ratios.to_vec(),
        clip,
        steps,
        offsets,
    })
}

#[test]
fn multibox_prior_reads_every_attribute_with_mxnets_defaults() {
    let (op, shape) = imported(OP, "", &[DATA]);
    assert_eq!(op, prior(&[1.0], &[1.0], false, [-1.0, -1.0], [0.5, 0.5]));
    // One box per cell, whatever the batch.
    assert_eq!(shape, vec![1, 30, 4]);
    let (op, shape) = imported(
        OP,
        r#""sizes": "(0.2, 0.272)", "ratios": "(1, 2, 0.5)", "clip": "True", "steps": "(0.1, 0.2)", "offsets": "(0, 1)""#,
        &[DATA],
    );
    assert_eq!(
        op,
        prior(
            &[0.2, 0.272],
            &[1.0, 2.0, 0.5],
            true,
            [0.1, 0.2],
            [0.0, 1.0]
        )
    );
    assert_eq!(shape, vec![1, 120, 4]);
    // More dims than 4: only dims 2 and 3 are read.
    let (_, shape) = imported(OP, r#""sizes": "(0.5,)""#, &[&[1, 2, 3, 4, 5]]);
    assert_eq!(shape, vec![1, 12, 4]);
}

#[test]
fn crafted_multibox_prior_attributes_are_refused_by_name() {
    let d: &[&[i64]] = &[DATA];
    refusal(OP, r#""sizes": "()""#, d, &["\"sizes\""]);
    refusal(OP, r#""ratios": "()""#, d, &["\"ratios\""]);
    let many = vec!["1"; 1100].join(",");
    refusal(
        OP,
        &format!(r#""sizes": "({many})""#),
        d,
        &["\"sizes\"", "1024"],
    );
    refusal(OP, r#""steps": "(0.1,)""#, d, &["\"steps\""]);
    refusal(OP, r#""steps": "(-1, 0.2)""#, d, &["\"steps\""]);
    refusal(OP, r#""offsets": "(0.5, 1.5)""#, d, &["\"offsets\""]);
    refusal(OP, r#""offsets": "(0.5, 0.5, 0.5)""#, d, &["\"offsets\""]);
    refusal(OP, r#""sizes": "(1e39,)""#, d, &["\"sizes\""]);
    refusal(OP, r#""clip": "2""#, d, &["clip"]);
    refusal(OP, r#""variances": "(0.1, 0.1)""#, d, &["variances"]);
    // Data must have a plane.
    refusal(OP, "", &[&[-1, 8, 6]], &["4 dims"]);
    refusal(OP, "", &[&[-1, 8, 0, 5]], &["empty plane"]);
}

#[test]
fn multibox_detection_imports_on_multibox_priors_anchors() {
    // Once refused by name; now imported (tests/it/detection_ops.rs), on anchors of the
    // shape MultiBoxPrior gives: (1, cells · anchors per cell, 4).
    let (op, shape) = imported(
        "_contrib_MultiBoxDetection",
        "",
        &[&[1, 3, 8], &[1, 32], &[1, 8, 4]],
    );
    assert_eq!(op.name(), "multibox_detection");
    assert_eq!(shape, vec![1, 8, 6]);
}
