//! box_nms, box_decode and box_encode (issue 20, GluonCV's detectors), SSD's
//! MultiBoxDetection and Faster R-CNN's Proposal and MultiProposal: what they import to, with MXNet's defaults, the output names MXNet gives them, and the crafted
//! attributes and shapes they refuse, each refusal naming the node and the attribute, at
//! import. Their numbers against MXNet's are checked on the one-operator fixtures
//! (`boxnms_`, `boxdec_`, `boxenc_`, `mbdet_`, `prop_`, `mprop_`: ward-exec's conformance test, ward-graph's
//! interpreter, ward-train's gradients).

use crate::support::one_op::{import_with, imported, refusal};
use ward_graph::ir::Op;
use ward_graph::limits::MAX_NMS_BOXES;
use ward_graph::ops::detection::{
    BoxDecode, BoxEncode, BoxFormat, BoxNms, MultiBoxDetection, MultiProposal, Proposal,
};

const ROWS: &[i64] = &[-1, 10, 6];

#[test]
fn box_nms_reads_every_attribute_with_mxnets_defaults() {
    let (op, shape) = imported("_contrib_box_nms", "", &[ROWS]);
    assert_eq!(op, Op::BoxNms(BoxNms::default()));
    assert_eq!(shape, vec![-1, 10, 6]);
    let (op, _) = imported(
        "_contrib_box_nms",
        r#""overlap_thresh": "0.7", "valid_thresh": "0.01", "topk": "400",
           "coord_start": "2", "score_index": "1", "id_index": "0", "background_id": "3",
           "force_suppress": "True", "in_format": "center", "out_format": "corner""#,
        &[ROWS],
    );
    assert_eq!(
        op,
        Op::BoxNms(BoxNms {
            overlap_thresh: f64::from(0.7f32),
            valid_thresh: f64::from(0.01f32),
            topk: Some(400),
            coord_start: 2,
            score_index: 1,
            id_index: Some(0),
            background_id: 3,
            force_suppress: true,
            in_format: BoxFormat::Center,
            out_format: BoxFormat::Corner,
        })
    );
    // topk below 0 is every box, 0 MXNet's pass-through; an id_index below 0 none.
    let (op, _) = imported(
        "_contrib_box_nms",
        r#""topk": "-5", "id_index": "-2""#,
        &[ROWS],
    );
    assert_eq!(op, Op::BoxNms(BoxNms::default()));
    let (op, _) = imported("_contrib_box_nms", r#""topk": "0""#, &[ROWS]);
    assert_eq!(
        op,
        Op::BoxNms(BoxNms {
            topk: Some(0),
            ..BoxNms::default()
        })
    );
    // MXNet's alias, and any batch dims.
    let (op, shape) = imported(
        "_contrib_box_non_maximum_suppression",
        "",
        &[&[2, -1, 3, 7]],
    );
    assert_eq!(op, Op::BoxNms(BoxNms::default()));
    assert_eq!(shape, vec![2, -1, 3, 7]);
}

#[test]
fn box_nms_outputs_are_named_as_mxnet_lists_them() {
    // The hidden second output (the kept rows) numbers the visible one.
    let i = import_with("_contrib_box_nms", "", &[ROWS]).unwrap();
    assert_eq!(i.graph.outputs.len(), 1);
    assert_eq!(i.graph.outputs[0].name, "layer_output0");
    let i = import_with("_contrib_box_decode", "", &[&[-1, 5, 4], &[1, 5, 4]]).unwrap();
    assert_eq!(i.graph.outputs[0].name, "layer_output");
}

#[test]
fn box_nms_crafted_attributes_are_refused_by_name() {
    // Indices outside the row, into the coordinates, or clashing.
    refusal(
        "_contrib_box_nms",
        r#""score_index": "6""#,
        &[ROWS],
        &["\"score_index\"", "6"],
    );
    refusal(
        "_contrib_box_nms",
        r#""score_index": "3""#,
        &[ROWS],
        &["\"score_index\"", "coordinates"],
    );
    refusal(
        "_contrib_box_nms",
        r#""score_index": "-1""#,
        &[ROWS],
        &["\"score_index\"", "-1"],
    );
    refusal(
        "_contrib_box_nms",
        r#""coord_start": "3""#,
        &[ROWS],
        &["\"coord_start\""],
    );
    refusal(
        "_contrib_box_nms",
        r#""coord_start": "-1""#,
        &[ROWS],
        &["\"coord_start\""],
    );
    refusal(
        "_contrib_box_nms",
        r#""coord_start": "9223372036854775807""#,
        &[ROWS],
        &["\"coord_start\""],
    );
    refusal(
        "_contrib_box_nms",
        r#""id_index": "1""#,
        &[ROWS],
        &["\"id_index\"", "score_index"],
    );
    refusal(
        "_contrib_box_nms",
        r#""id_index": "4""#,
        &[ROWS],
        &["\"id_index\""],
    );
    refusal(
        "_contrib_box_nms",
        r#""id_index": "60""#,
        &[ROWS],
        &["\"id_index\""],
    );
    // A class needs a sixth value; fewer than five values is no box.
    refusal(
        "_contrib_box_nms",
        r#""id_index": "0""#,
        &[&[-1, 4, 5]],
        &["at least 6"],
    );
    refusal("_contrib_box_nms", "", &[&[-1, 4, 4]], &["at least 5"]);
    refusal("_contrib_box_nms", "", &[&[6]], &["rank 2"]);
    // Values MXNet does not have, attributes it does not take, NaN thresholds.
    refusal(
        "_contrib_box_nms",
        r#""in_format": "xywh""#,
        &[ROWS],
        &["in_format", "xywh"],
    );
    refusal(
        "_contrib_box_nms",
        r#""out_format": "corners""#,
        &[ROWS],
        &["out_format"],
    );
    refusal(
        "_contrib_box_nms",
        r#""force_suppress": "maybe""#,
        &[ROWS],
        &["force_suppress"],
    );
    refusal(
        "_contrib_box_nms",
        r#""max_output_size": "10""#,
        &[ROWS],
        &["max_output_size"],
    );
    refusal(
        "_contrib_box_nms",
        r#""overlap_thresh": "nan""#,
        &[ROWS],
        &["overlap_thresh"],
    );
    refusal("_contrib_box_nms", r#""topk": "ten""#, &[ROWS], &["topk"]);
    // The box count against the limit, before anything is allocated.
    let many = (MAX_NMS_BOXES + 1) as i64;
    refusal(
        "_contrib_box_nms",
        "",
        &[&[1, many, 6]],
        &["at most", "boxes"],
    );
    refusal(
        "_contrib_box_nms",
        r#""topk": "1000000000000""#,
        &[ROWS],
        &["\"topk\"", "limit"],
    );
    refusal(
        "_contrib_box_nms",
        "",
        &[&[1_000_000_000_000, 1_000_000, 6]],
        &["layer"],
    );
}

#[test]
fn box_decode_reads_every_attribute_with_mxnets_defaults() {
    let (op, shape) = imported("_contrib_box_decode", "", &[&[-1, 5, 4], &[1, 5, 4]]);
    assert_eq!(
        op,
        Op::BoxDecode(BoxDecode {
            std: [1.0; 4],
            clip: None,
            format: BoxFormat::Center,
        })
    );
    assert_eq!(shape, vec![-1, 5, 4]);
    let (op, _) = imported(
        "_contrib_box_decode",
        r#""std0": "0.1", "std1": "0.1", "std2": "0.2", "std3": "0.2", "clip": "4.135",
           "format": "corner""#,
        &[&[-1, 5, 4], &[1, 1, 5, 4]],
    );
    assert_eq!(
        op,
        Op::BoxDecode(BoxDecode {
            std: [
                f64::from(0.1f32),
                f64::from(0.1f32),
                f64::from(0.2f32),
                f64::from(0.2f32)
            ],
            clip: Some(f64::from(4.135f32)),
            format: BoxFormat::Corner,
        })
    );
    // clip <= 0 is none.
    let (op, _) = imported(
        "_contrib_box_decode",
        r#""clip": "0""#,
        &[&[-1, 5, 4], &[1, 5, 4]],
    );
    assert_eq!(
        op,
        Op::BoxDecode(BoxDecode {
            std: [1.0; 4],
            clip: None,
            format: BoxFormat::Center,
        })
    );
}

#[test]
fn box_decode_crafted_shapes_and_attributes_are_refused_by_name() {
    let two: &[&[i64]] = &[&[-1, 5, 4], &[1, 5, 4]];
    refusal(
        "_contrib_box_decode",
        r#""format": "xyxy""#,
        two,
        &["format"],
    );
    refusal("_contrib_box_decode", r#""std0": "nan""#, two, &["std0"]);
    refusal("_contrib_box_decode", r#""clip": "nan""#, two, &["clip"]);
    refusal("_contrib_box_decode", r#""std4": "1""#, two, &["std4"]);
    // Data of rank 3 ending in 4; anchors holding its n boxes.
    refusal(
        "_contrib_box_decode",
        "",
        &[&[-1, 5, 3], &[1, 5, 4]],
        &["data", "4 coordinates"],
    );
    refusal(
        "_contrib_box_decode",
        "",
        &[&[-1, 5, 4], &[1, 6, 4]],
        &["anchors", "5 boxes"],
    );
    refusal(
        "_contrib_box_decode",
        "",
        &[&[-1, 5, 4], &[5, 4]],
        &["anchors", "rank 3"],
    );
    refusal(
        "_contrib_box_decode",
        "",
        &[&[-1, 2, 5, 4], &[1, 5, 4]],
        &["data", "rank"],
    );
    refusal("_contrib_box_decode", "", &[&[-1, 5, 4]], &["inputs"]);
}

#[test]
fn box_encode_takes_six_inputs_and_no_attribute() {
    let ins: &[&[i64]] = &[&[2, 3], &[2, 3], &[2, 3, 4], &[2, 5, 4], &[4], &[4]];
    let i = import_with("_contrib_box_encode", "", ins).unwrap();
    assert_eq!(i.graph.nodes[0].op, Op::BoxEncode(BoxEncode {}));
    // Two outputs (targets, masks), numbered; the symbol's head is the first.
    assert_eq!(i.graph.nodes[0].op.num_outputs(), 2);
    assert_eq!(i.graph.outputs[0].name, "layer_output0");
    assert_eq!(i.output_shapes, vec![vec![2, 3, 4]]);
    refusal(
        "_contrib_box_encode",
        r#""stds": "(1, 1, 1, 1)""#,
        ins,
        &["stds"],
    );
    refusal("_contrib_box_encode", "", &ins[..5], &["inputs"]);
    refusal(
        "_contrib_box_encode",
        "",
        &[&[2, 3], &[2, 3], &[2, 3, 4], &[3, 5, 4], &[4], &[4]],
        &["refs"],
    );
    refusal(
        "_contrib_box_encode",
        "",
        &[&[2, 3], &[2, 3], &[2, 3, 4], &[2, 5, 4], &[5], &[4]],
        &["means"],
    );
}

const MBD: &str = "_contrib_MultiBoxDetection";
/// cls_prob (batch, 3 classes, 8 anchors), loc_pred (batch, 32), anchor (1, 8, 4).
const MBD_IN: &[&[i64]] = &[&[-1, 3, 8], &[-1, 32], &[1, 8, 4]];

#[test]
fn multibox_detection_reads_every_attribute_with_mxnets_defaults() {
    let (op, shape) = imported(MBD, "", MBD_IN);
    assert_eq!(op, Op::MultiBoxDetection(MultiBoxDetection::default()));
    assert_eq!(shape, vec![-1, 8, 6]);
    let (op, _) = imported(
        MBD,
        r#""clip": "False", "threshold": "0.3", "background_id": "2",
           "nms_threshold": "0.45", "force_suppress": "True",
           "variances": "(0.2, 0.2, 0.5, 0.5)", "nms_topk": "400""#,
        MBD_IN,
    );
    assert_eq!(
        op,
        Op::MultiBoxDetection(MultiBoxDetection {
            clip: false,
            threshold: f64::from(0.3f32),
            background_id: 2,
            nms_threshold: f64::from(0.45f32),
            force_suppress: true,
            variances: [0.2f32, 0.2, 0.5, 0.5].map(f64::from),
            nms_topk: Some(400),
        })
    );
    // nms_topk 0 and below is every detection; nms_threshold outside (0, 1] is kept (no
    // suppression, as MXNet).
    let (op, _) = imported(MBD, r#""nms_topk": "0", "nms_threshold": "1.5""#, MBD_IN);
    assert_eq!(
        op,
        Op::MultiBoxDetection(MultiBoxDetection {
            nms_threshold: 1.5,
            ..MultiBoxDetection::default()
        })
    );
    // MXNet's numpy alias.
    let (op, _) = imported("_npx_multibox_detection", "", MBD_IN);
    assert_eq!(op, Op::MultiBoxDetection(MultiBoxDetection::default()));
    let i = import_with(MBD, "", MBD_IN).unwrap();
    assert_eq!(i.graph.outputs[0].name, "layer_output");
}

#[test]
fn multibox_detection_crafted_attributes_and_shapes_are_refused_by_name() {
    refusal(
        MBD,
        r#""nms_topk": "1000000000000""#,
        MBD_IN,
        &["\"nms_topk\"", "1000000000000", "limit"],
    );
    refusal(
        MBD,
        &format!(r#""nms_topk": "{}""#, MAX_NMS_BOXES + 1),
        MBD_IN,
        &["\"nms_topk\""],
    );
    refusal(
        MBD,
        r#""variances": "(0.1, 0.1, 0.2)""#,
        MBD_IN,
        &["\"variances\""],
    );
    refusal(
        MBD,
        r#""variances": "(0.1, 0.1, 0.2, 1e39)""#,
        MBD_IN,
        &["\"variances\""],
    );
    refusal(MBD, r#""threshold": "nan""#, MBD_IN, &["\"threshold\""]);
    refusal(
        MBD,
        r#""nms_threshold": "nan""#,
        MBD_IN,
        &["\"nms_threshold\""],
    );
    refusal(MBD, r#""keep_topk": "5""#, MBD_IN, &["keep_topk"]);
    // Ranks, as MXNet's shape rule checks them.
    refusal(
        MBD,
        "",
        &[&[-1, 3, 8, 1], &[-1, 32], &[1, 8, 4]],
        &["\"cls_prob\"", "rank"],
    );
    refusal(
        MBD,
        "",
        &[&[-1, 3, 8], &[-1, 8, 4], &[1, 8, 4]],
        &["\"loc_pred\"", "rank"],
    );
    refusal(
        MBD,
        "",
        &[&[-1, 3, 8], &[-1, 32], &[8, 4]],
        &["\"anchor\"", "rank"],
    );
    // Mismatched anchor counts, coordinates, loc_pred.
    refusal(
        MBD,
        "",
        &[&[-1, 3, 8], &[-1, 32], &[1, 7, 4]],
        &["\"anchor\"", "(k, 8, 4)"],
    );
    refusal(
        MBD,
        "",
        &[&[-1, 3, 8], &[-1, 32], &[1, 8, 5]],
        &["\"anchor\""],
    );
    refusal(
        MBD,
        "",
        &[&[-1, 3, 8], &[-1, 28], &[1, 8, 4]],
        &["\"loc_pred\"", "32"],
    );
    // MXNet reads past a loc_pred of another batch, and fails on more than one set of
    // anchors: both refused.
    refusal(
        MBD,
        "",
        &[&[2, 3, 8], &[1, 32], &[1, 8, 4]],
        &["\"loc_pred\""],
    );
    refusal(
        MBD,
        "",
        &[&[-1, 3, 8], &[-1, 32], &[2, 8, 4]],
        &["\"anchor\"", "one set"],
    );
    refusal(MBD, "", &[&[-1, 3, 8]], &["3"]);
}

const PROP: &str = "_contrib_Proposal";
/// The defaults' 12 anchors on a 4 × 5 map of one image.
const PROP_IN: &[&[i64]] = &[&[1, 24, 4, 5], &[1, 48, 4, 5], &[1, 3]];

#[test]
fn proposal_reads_every_attribute_with_mxnets_defaults() {
    let (op, shape) = imported(PROP, "", PROP_IN);
    assert_eq!(op, Op::Proposal(Proposal::default()));
    assert_eq!(shape, vec![300, 5]);
    let (op, _) = imported(
        PROP,
        r#""rpn_pre_nms_top_n": "100", "rpn_post_nms_top_n": "20", "threshold": "0.6",
           "rpn_min_size": "8", "scales": "(2, 4.5)", "ratios": "(0.5, 1, 2)",
           "feature_stride": "8", "output_score": "True", "iou_loss": "True""#,
        &[&[1, 12, 4, 5], &[1, 24, 4, 5], &[1, 3]],
    );
    assert_eq!(
        op,
        Op::Proposal(Proposal {
            rpn_pre_nms_top_n: Some(100),
            rpn_post_nms_top_n: 20,
            threshold: f64::from(0.6f32),
            rpn_min_size: 8,
            scales: vec![2.0, 4.5],
            ratios: vec![0.5, 1.0, 2.0],
            feature_stride: 8,
            output_score: true,
            iou_loss: true,
        })
    );
    // rpn_pre_nms_top_n 0 and below is every anchor.
    let (op, _) = imported(PROP, r#""rpn_pre_nms_top_n": "-1""#, PROP_IN);
    assert_eq!(
        op,
        Op::Proposal(Proposal {
            rpn_pre_nms_top_n: None,
            ..Proposal::default()
        })
    );
    // Outputs named as MXNet lists them: output, and score when it is visible.
    let i = import_with(PROP, "", PROP_IN).unwrap();
    assert_eq!(i.graph.outputs.len(), 1);
    assert_eq!(i.graph.outputs[0].name, "layer_output");
    let i = import_with(PROP, r#""output_score": "1""#, PROP_IN).unwrap();
    assert_eq!(i.graph.nodes[0].op.num_outputs(), 2);
    assert_eq!(i.graph.outputs[0].name, "layer_output");
}

#[test]
fn proposal_crafted_attributes_and_shapes_are_refused_by_name() {
    refusal(
        PROP,
        r#""rpn_pre_nms_top_n": "1000000000000""#,
        PROP_IN,
        &["\"rpn_pre_nms_top_n\""],
    );
    refusal(
        PROP,
        &format!(r#""rpn_pre_nms_top_n": "{}""#, MAX_NMS_BOXES + 1),
        PROP_IN,
        &["\"rpn_pre_nms_top_n\"", "limit"],
    );
    refusal(
        PROP,
        r#""rpn_post_nms_top_n": "1000000000""#,
        PROP_IN,
        &["\"rpn_post_nms_top_n\""],
    );
    refusal(
        PROP,
        r#""rpn_post_nms_top_n": "0""#,
        PROP_IN,
        &["\"rpn_post_nms_top_n\""],
    );
    refusal(
        PROP,
        r#""rpn_post_nms_top_n": "-3""#,
        PROP_IN,
        &["\"rpn_post_nms_top_n\""],
    );
    refusal(
        PROP,
        r#""feature_stride": "0""#,
        PROP_IN,
        &["\"feature_stride\""],
    );
    refusal(
        PROP,
        r#""feature_stride": "-16""#,
        PROP_IN,
        &["\"feature_stride\""],
    );
    refusal(
        PROP,
        r#""rpn_min_size": "1e12""#,
        PROP_IN,
        &["rpn_min_size"],
    );
    refusal(
        PROP,
        r#""rpn_min_size": "9999999999""#,
        PROP_IN,
        &["\"rpn_min_size\""],
    );
    refusal(PROP, r#""threshold": "nan""#, PROP_IN, &["\"threshold\""]);
    refusal(PROP, r#""scales": "(8, -1)""#, PROP_IN, &["\"scales\""]);
    refusal(PROP, r#""ratios": "(1e39,)""#, PROP_IN, &["\"ratios\""]);
    refusal(PROP, r#""ratios": "()""#, PROP_IN, &["\"scales\""]);
    refusal(PROP, r#""keep_topk": "5""#, PROP_IN, &["keep_topk"]);
    // More anchors than the channels hold, a wrong bbox_pred or im_info, a batch.
    refusal(
        PROP,
        r#""scales": "(8, 16)""#,
        PROP_IN,
        &["\"cls_prob\"", "2 × 6"],
    );
    refusal(
        PROP,
        "",
        &[&[1, 24, 4, 5], &[1, 48, 4, 6], &[1, 3]],
        &["\"bbox_pred\""],
    );
    refusal(
        PROP,
        "",
        &[&[1, 24, 4, 5], &[1, 24, 4, 5], &[1, 3]],
        &["\"bbox_pred\""],
    );
    refusal(
        PROP,
        "",
        &[&[1, 24, 4, 5], &[1, 48, 4, 5], &[1, 4]],
        &["\"im_info\""],
    );
    refusal(
        PROP,
        "",
        &[&[1, 24, 4, 5, 1], &[1, 48, 4, 5], &[1, 3]],
        &["\"cls_prob\"", "rank"],
    );
    refusal(
        PROP,
        "",
        &[&[-1, 24, 4, 5], &[-1, 48, 4, 5], &[-1, 3]],
        &["\"cls_prob\"", "one image"],
    );
    refusal(
        PROP,
        "",
        &[&[2, 24, 4, 5], &[2, 48, 4, 5], &[2, 3]],
        &["\"cls_prob\"", "one image"],
    );
    // A map too large for the limit.
    refusal(
        PROP,
        "",
        &[&[1, 24, 2048, 2048], &[1, 48, 2048, 2048], &[1, 3]],
        &["\"cls_prob\"", "at most"],
    );
}

#[test]
fn multi_proposal_takes_a_batch_with_proposals_attributes() {
    const MULTI: &str = "_contrib_MultiProposal";
    let batch: &[&[i64]] = &[&[-1, 24, 4, 5], &[-1, 48, 4, 5], &[-1, 3]];
    let (op, shape) = imported(MULTI, "", batch);
    assert_eq!(op, Op::MultiProposal(MultiProposal(Proposal::default())));
    // 300 rows per image: a variable count.
    assert_eq!(shape, vec![-1, 5]);
    let (op, shape) = imported(
        MULTI,
        r#""rpn_post_nms_top_n": "7", "rpn_pre_nms_top_n": "0", "output_score": "True""#,
        &[&[3, 24, 4, 5], &[3, 48, 4, 5], &[3, 3]],
    );
    assert_eq!(
        op,
        Op::MultiProposal(MultiProposal(Proposal {
            rpn_pre_nms_top_n: None,
            rpn_post_nms_top_n: 7,
            output_score: true,
            ..Proposal::default()
        }))
    );
    assert_eq!(shape, vec![21, 5]);
    // Proposal's refusals, and im_info of another batch.
    refusal(
        MULTI,
        r#""rpn_pre_nms_top_n": "1000000000000""#,
        batch,
        &["\"rpn_pre_nms_top_n\""],
    );
    refusal(
        MULTI,
        r#""feature_stride": "0""#,
        batch,
        &["\"feature_stride\""],
    );
    refusal(
        MULTI,
        "",
        &[&[2, 24, 4, 5], &[2, 48, 4, 5], &[1, 3]],
        &["\"im_info\""],
    );
    // Every image's rows counted against the limit.
    refusal(
        MULTI,
        &format!(r#""rpn_post_nms_top_n": "{}""#, MAX_NMS_BOXES / 2),
        &[&[3, 24, 4, 5], &[3, 48, 4, 5], &[3, 3]],
        &["\"rpn_post_nms_top_n\"", "rows"],
    );
}
