//! `L2Normalization` (issue 20): its modes and default eps, and what it refuses. Its
//! numbers against MXNet's are checked on the `l2norm_*` one-operator fixtures.

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::norm::{L2NormMode, L2Normalization};

#[test]
fn every_mode_imports_with_mxnet_defaults() {
    let (op, shape) = imported("L2Normalization", "", &[&[-1, 3, 4]]);
    assert_eq!(
        op,
        Op::L2Normalization(L2Normalization {
            mode: L2NormMode::Instance,
            eps: 1e-10
        })
    );
    assert_eq!(shape, vec![-1, 3, 4]);
    for (name, mode) in [
        ("channel", L2NormMode::Channel),
        ("spatial", L2NormMode::Spatial),
    ] {
        let (op, _) = imported(
            "L2Normalization",
            &format!(r#""mode": "{name}", "eps": "0.001""#),
            &[&[2, 3, 4, 4]],
        );
        assert_eq!(op, Op::L2Normalization(L2Normalization { mode, eps: 1e-3 }));
    }
}

#[test]
fn unknown_modes_short_data_and_bad_eps_are_refused_by_name() {
    refusal(
        "L2Normalization",
        r#""mode": "batch""#,
        &[&[2, 3, 4]],
        &["mode", "batch"],
    );
    // MXNet's channel and spatial modes need (N, C, spatial…) data.
    refusal(
        "L2Normalization",
        r#""mode": "channel""#,
        &[&[2, 3]],
        &["3 dims"],
    );
    refusal(
        "L2Normalization",
        r#""mode": "spatial""#,
        &[&[5]],
        &["3 dims"],
    );
    refusal("L2Normalization", r#""eps": "-1""#, &[&[2, 3]], &["eps"]);
    refusal("L2Normalization", r#""axis": "1""#, &[&[2, 3]], &["axis"]);
}

#[test]
fn sync_batch_norm_needs_its_group_key() {
    // Its numbers (BatchNorm's on one device) are checked on the `syncbn_*` fixtures.
    refusal("_contrib_SyncBatchNorm", "", &[&[2, 3, 4]], &["key"]);
}
