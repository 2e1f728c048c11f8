//! `_contrib_ROIAlign` (issue 20): what it imports to, with MXNet 1.9.1's defaults, and
//! the crafted attributes it refuses at import, each refusal naming the node and the
//! attribute. Its numbers against MXNet's (22 cases: adaptive and fixed grids, aligned,
//! position-sensitive, boxes reversed, thin and outside the map) are checked on the
//! one-operator fixtures (ward-graph's interpreter, ward-exec's conformance test,
//! ward-train's gradients); rois MXNet does not compute are refused when run (see
//! `ward_graph::interp::roi`).

use crate::support::one_op::{imported, refusal};
use ward_graph::ir::Op;
use ward_graph::ops::roi::RoiAlign;

const DATA: &[i64] = &[-1, 8, 6, 5];
const ROIS: &[i64] = &[7, 5];

fn align(ph: usize, pw: usize, scale: f32, ratio: Option<usize>, ps: bool, al: bool) -> Op {
    Op::RoiAlign(RoiAlign {
        pooled_height: ph,
        pooled_width: pw,
        spatial_scale: scale,
        sample_ratio: ratio,
        position_sensitive: ps,
        aligned: al,
    })
}

#[test]
fn roi_align_reads_every_attribute_with_mxnets_defaults() {
    let (op, shape) = imported(
        "_contrib_ROIAlign",
        r#""pooled_size": "(14, 14)", "spatial_scale": "0.0625""#,
        &[DATA, ROIS],
    );
    assert_eq!(op, align(14, 14, 0.0625, None, false, false));
    assert_eq!(shape, vec![7, 8, 14, 14]);
    let (op, shape) = imported(
        "_contrib_ROIAlign",
        r#""pooled_size": "(2, 2)", "spatial_scale": "0.3", "sample_ratio": "2", "position_sensitive": "True", "aligned": "1""#,
        &[DATA, ROIS],
    );
    assert_eq!(op, align(2, 2, 0.3, Some(2), true, true));
    assert_eq!(shape, vec![7, 2, 2, 2]);
    // A sample ratio of 0 or less is MXNet's adaptive grid.
    for ratio in ["0", "-1", "-7"] {
        let (op, _) = imported(
            "_contrib_ROIAlign",
            &format!(r#""pooled_size": "(3, 1)", "spatial_scale": "1", "sample_ratio": "{ratio}""#),
            &[DATA, ROIS],
        );
        assert_eq!(op, align(3, 1, 1.0, None, false, false));
    }
    // The rois may follow the batch.
    let (_, shape) = imported(
        "_contrib_ROIAlign",
        r#""pooled_size": "(1, 1)", "spatial_scale": "1""#,
        &[DATA, &[-1, 5]],
    );
    assert_eq!(shape, vec![-1, 8, 1, 1]);
}

#[test]
fn crafted_roi_align_attributes_are_refused_by_name() {
    let op = "_contrib_ROIAlign";
    let both: &[&[i64]] = &[DATA, ROIS];
    // Required attributes.
    refusal(op, r#""spatial_scale": "1""#, both, &["pooled_size"]);
    refusal(op, r#""pooled_size": "(2, 2)""#, both, &["spatial_scale"]);
    // Sizes MXNet refuses (one value, a zero) and sizes past the limit.
    refusal(
        op,
        r#""pooled_size": "(2,)", "spatial_scale": "1""#,
        both,
        &["\"pooled_size\""],
    );
    refusal(
        op,
        r#""pooled_size": "(2, 2, 2)", "spatial_scale": "1""#,
        both,
        &["\"pooled_size\""],
    );
    refusal(
        op,
        r#""pooled_size": "(0, 2)", "spatial_scale": "1""#,
        both,
        &["\"pooled_size\""],
    );
    refusal(
        op,
        r#""pooled_size": "(-2, 2)", "spatial_scale": "1""#,
        both,
        &["\"pooled_size\""],
    );
    refusal(
        op,
        r#""pooled_size": "(1000000000000, 1000000000000)", "spatial_scale": "1""#,
        both,
        &["\"pooled_size\""],
    );
    refusal(
        op,
        r#""pooled_size": "(7, 7)", "spatial_scale": "1", "sample_ratio": "1000000""#,
        both,
        &["\"sample_ratio\""],
    );
    refusal(
        op,
        r#""pooled_size": "(7, 7)", "spatial_scale": "1", "sample_ratio": "1000000000000""#,
        both,
        &["\"sample_ratio\""],
    );
    // MXNet bounds the scale to [0, 1].
    for scale in ["2", "-0.5", "nan", "inf"] {
        refusal(
            op,
            &format!(r#""pooled_size": "(2, 2)", "spatial_scale": "{scale}""#),
            both,
            &["spatial_scale"],
        );
    }
    // Attributes and values MXNet does not have.
    refusal(
        op,
        r#""pooled_size": "(2, 2)", "spatial_scale": "1", "mode": "max""#,
        both,
        &["mode"],
    );
    refusal(
        op,
        r#""pooled_size": "(2, 2)", "spatial_scale": "1", "aligned": "maybe""#,
        both,
        &["aligned"],
    );
    // Shapes: rois must be (R, 5) and position-sensitive channels divisible by the bins.
    refusal(
        op,
        r#""pooled_size": "(2, 2)", "spatial_scale": "1""#,
        &[DATA, &[7, 4]],
        &["(R, 5)"],
    );
    refusal(
        op,
        r#""pooled_size": "(3, 3)", "spatial_scale": "1", "position_sensitive": "1""#,
        both,
        &["divisible"],
    );
    refusal(
        op,
        r#""pooled_size": "(2, 2)", "spatial_scale": "1""#,
        &[&[-1, 8, 6]],
        &["expected 2"],
    );
}

#[test]
fn roi_pooling_reads_its_attributes_and_refuses_crafted_ones_by_name() {
    use ward_graph::ops::roi::RoiPool;
    let op = "ROIPooling";
    let both: &[&[i64]] = &[DATA, ROIS];
    let (got, shape) = imported(
        op,
        r#""pooled_size": "(7, 6)", "spatial_scale": "0.0625""#,
        both,
    );
    assert_eq!(
        got,
        Op::RoiPool(RoiPool {
            pooled_height: 7,
            pooled_width: 6,
            spatial_scale: 0.0625,
        })
    );
    assert_eq!(shape, vec![7, 8, 7, 6]);
    refusal(op, r#""spatial_scale": "1""#, both, &["pooled_size"]);
    refusal(op, r#""pooled_size": "(2, 2)""#, both, &["spatial_scale"]);
    refusal(
        op,
        r#""pooled_size": "(2,)", "spatial_scale": "1""#,
        both,
        &["\"pooled_size\""],
    );
    refusal(
        op,
        r#""pooled_size": "(0, 2)", "spatial_scale": "1""#,
        both,
        &["\"pooled_size\""],
    );
    refusal(
        op,
        r#""pooled_size": "(100000, 100000)", "spatial_scale": "1""#,
        both,
        &["\"pooled_size\""],
    );
    refusal(
        op,
        r#""pooled_size": "(2, 2)", "spatial_scale": "1.5""#,
        both,
        &["spatial_scale"],
    );
    refusal(
        op,
        r#""pooled_size": "(2, 2)", "spatial_scale": "1", "sample_ratio": "2""#,
        both,
        &["sample_ratio"],
    );
    refusal(
        op,
        r#""pooled_size": "(2, 2)", "spatial_scale": "1""#,
        &[DATA, &[7, 4]],
        &["(R, 5)"],
    );
}

#[test]
fn hostile_roi_counts_are_refused_before_allocation() {
    // 10^12 rois would make an output past the element cap: refused at import.
    let e = crate::support::one_op::import_with(
        "_contrib_ROIAlign",
        r#""pooled_size": "(7, 7)", "spatial_scale": "1""#,
        &[DATA, &[1_000_000_000_000, 5]],
    )
    .unwrap_err();
    assert!(
        e.contains("\"layer\"") && e.contains("1073741824 elements"),
        "{e}"
    );
    let e = crate::support::one_op::import_with(
        "ROIPooling",
        r#""pooled_size": "(7, 7)", "spatial_scale": "1""#,
        &[&[1, 100_000, 100, 100], &[100_000, 5]],
    )
    .unwrap_err();
    assert!(
        e.contains("\"layer\"") && e.contains("1073741824 elements"),
        "{e}"
    );
}
