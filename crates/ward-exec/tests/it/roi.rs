//! MXNet's ROIAlign and ROIPooling in ward's own tract kernels: the numbers against MXNet
//! are the conformance test's (every `roialign_` and `roipool_` case); here, what only a
//! plan shows: rois MXNet does not compute fail the run naming the roi, and `ward export
//! onnx`'s lowering marks the nodes as having no ONNX counterpart.

use std::collections::HashMap;
use std::sync::Arc;

use ward_core::{DType, Tensor};
use ward_exec::{Executable, TractBackend, WeightSet};
use ward_graph::ir::Op;
use ward_graph::ir::{Graph, GraphInput, GraphOutput, InputRole, Node, Source};
use ward_graph::ops::roi::{RoiAlign, RoiPool};

fn roi_graph(op: impl Into<Op>) -> Graph {
    let mut g = Graph::new();
    for name in ["data", "rois"] {
        g.inputs.push(GraphInput {
            name: name.into(),
            dtype: DType::F32,
            role: InputRole::Data,
        });
    }
    g.nodes.push(Node {
        name: "roi_align0".into(),
        op: op.into(),
        inputs: vec![Source::Input(0), Source::Input(1)],
    });
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(0, 0),
    });
    g.validate().unwrap();
    g
}

fn op(aligned: bool) -> RoiAlign {
    RoiAlign {
        pooled_height: 2,
        pooled_width: 2,
        spatial_scale: 1.0,
        sample_ratio: None,
        position_sensitive: false,
        aligned,
    }
}

fn ramp() -> Tensor {
    Tensor::from_f32(
        vec![2, 2, 4, 4],
        &(0..64).map(|v| v as f32).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn run(aligned: bool, rows: &[[f32; 5]]) -> Result<Vec<f32>, String> {
    let graph = roi_graph(op(aligned));
    let weights = WeightSet::new(&graph, HashMap::new()).unwrap();
    let model = Executable::new(graph, weights, Arc::new(TractBackend::new(1).unwrap())).unwrap();
    let rois = Tensor::from_f32(vec![rows.len(), 5], &rows.concat()).unwrap();
    model
        .run(&[ramp(), rois])
        .map(|mut o| o.remove(0).to_f32_vec())
        .map_err(|e| e.to_string())
}

#[test]
fn the_kernel_gives_mxnets_numbers() {
    // MXNet 1.9.1 on arange(64).reshape(2, 2, 4, 4): image 0 (batch -0.5 truncates to 0),
    // image 1 (1.9), and a reversed box stretched to one pixel.
    let y = run(
        false,
        &[
            [-0.5, 0., 0., 2., 2.],
            [1.9, 0., 0., 2., 2.],
            [0., 3., 3., 1., 1.],
        ],
    )
    .unwrap();
    assert_eq!(&y[..4], &[2.5, 3.5, 6.5, 7.5]);
    assert_eq!(&y[8..12], &[34.5, 35.5, 38.5, 39.5]);
    assert_eq!(&y[16..20], &[15.0; 4]);
}

#[test]
fn rois_mxnet_does_not_compute_fail_the_run_naming_the_roi() {
    for (aligned, row, what) in [
        (false, [2.0, 0., 0., 2., 2.], "image 2"),
        (false, [0.0, f32::NAN, 0., 2., 2.], "NaN"),
        (true, [0.0, 3., 3., 1., 1.], "not positive"),
        (false, [0.0, 0., 0., 1e30, 2.], "samples more"),
    ] {
        let err = run(aligned, &[[0.0, 0., 0., 1., 1.], row]).unwrap_err();
        assert!(
            err.contains("roi 1") && err.contains(what),
            "{row:?}: {err}"
        );
    }
}

/// The −1 rows a detector pads its rois with (GluonCV's Faster R-CNN with FPN) give
/// zeros: MXNet writes one 0 and leaves the rest of the roi's output unwritten (zeros in
/// a fresh buffer); the model discards them.
#[test]
fn rois_of_a_negative_image_give_zeros() {
    let y = run(
        false,
        &[
            [-1.0, -1., -1., -1., -1.],
            [-2.0, 0., 0., 2., 2.],
            [0.0, 0., 0., 2., 2.],
        ],
    )
    .unwrap();
    assert_eq!(&y[..16], &[0.0; 16]);
    assert_eq!(&y[16..20], &[2.5, 3.5, 6.5, 7.5]);
}

#[test]
fn export_onnx_marks_the_node_it_cannot_write() {
    let graph = roi_graph(op(false));
    let proto = ward_exec::onnx::lower(&graph, &[], &[vec![2, 2, 4, 4], vec![3, 5]]).unwrap();
    let (node, op_type) = ward_exec::onnx::ward_only_node(&proto).unwrap();
    assert_eq!(node, "roi_align0");
    assert_eq!(op_type, "WardRoiAlign");
}

#[test]
fn roi_pooling_gives_mxnets_numbers_and_zeros_outside_the_batch() {
    let op = RoiPool {
        pooled_height: 2,
        pooled_width: 2,
        spatial_scale: 1.0,
    };
    let graph = roi_graph(op);
    let weights = WeightSet::new(&graph, HashMap::new()).unwrap();
    let model = Executable::new(graph, weights, Arc::new(TractBackend::new(1).unwrap())).unwrap();
    // MXNet 1.9.1 on arange(64).reshape(2, 2, 4, 4).
    let rows = [
        [0.0f32, 0., 0., 1., 1.],
        [5.0, 0., 0., 2., 2.],
        [1.7, 0., 0., 3., 3.],
    ];
    let rois = Tensor::from_f32(vec![3, 5], &rows.concat()).unwrap();
    let y = model
        .run(&[ramp(), rois.clone()])
        .unwrap()
        .remove(0)
        .to_f32_vec();
    assert_eq!(&y[..4], &[0., 1., 4., 5.]);
    assert_eq!(&y[8..16], &[0.; 8]);
    assert_eq!(&y[16..20], &[37., 39., 45., 47.]);
    let bad = Tensor::from_f32(vec![1, 5], &[0.0, f32::INFINITY, 0., 1., 1.]).unwrap();
    let err = model.run(&[ramp(), bad]).unwrap_err().to_string();
    assert!(err.contains("roi 0") && err.contains("inf"), "{err}");
    let proto =
        ward_exec::onnx::lower(model.graph(), &[], &[vec![2, 2, 4, 4], vec![3, 5]]).unwrap();
    assert_eq!(
        ward_exec::onnx::ward_only_node(&proto).map(|(_, op)| op),
        Some("WardRoiPool".to_string())
    );
}

/// Three pyramid levels (data of 8×8, 4×4 and 2×2 at scales 1, 1/2 and 1/4), each
/// pooling the same rois, some masked to image -1 as GluonCV's FPN masks them; summed by
/// `add_n` (`summed`) or given as three outputs (`apart`).
fn pyramid(summed: bool) -> Graph {
    let mut g = Graph::new();
    for name in ["p2", "p3", "p4", "rois2", "rois3", "rois4"] {
        g.inputs.push(GraphInput {
            name: name.into(),
            dtype: DType::F32,
            role: InputRole::Data,
        });
    }
    for level in 0..3 {
        g.nodes.push(Node {
            name: format!("roi_align{level}"),
            op: RoiAlign {
                pooled_height: 2,
                pooled_width: 3,
                spatial_scale: 1.0 / (1 << level) as f32,
                sample_ratio: Some(2),
                position_sensitive: false,
                aligned: level == 1,
            }
            .into(),
            inputs: vec![Source::Input(level), Source::Input(level + 3)],
        });
    }
    if summed {
        g.nodes.push(Node {
            name: "sum".into(),
            op: ward_graph::ops::elementwise::AddN {}.into(),
            inputs: (0..3).map(|n| Source::Node(n, 0)).collect(),
        });
        g.outputs.push(GraphOutput {
            name: "y".into(),
            source: Source::Node(3, 0),
        });
    } else {
        for level in 0..3 {
            g.outputs.push(GraphOutput {
                name: format!("y{level}"),
                source: Source::Node(level, 0),
            });
        }
    }
    g.validate().unwrap();
    g
}

#[test]
fn pyramid_levels_summed_into_one_output_give_the_sum_of_the_levels_bit_for_bit() {
    let wave = |n: usize, k: f32| -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * k).sin() * 3.0 + 0.1).collect()
    };
    let sides = [8usize, 4, 2];
    let mut inputs: Vec<Tensor> = sides
        .iter()
        .zip([0.37f32, 1.3, 2.9])
        .map(|(&s, k)| Tensor::from_f32(vec![1, 3, s, s], &wave(3 * s * s, k)).unwrap())
        .collect();
    // Each roi belongs to one level; the others see it masked to image -1.
    let boxes = [
        [0.0f32, 0.5, 0.5, 6.5, 5.0],
        [0.0, 1.0, 2.0, 3.0, 7.5],
        [0.0, 0.0, 0.0, 7.9, 7.9],
        [0.0, 2.2, 1.1, 4.4, 3.3],
    ];
    let owner = [0usize, 2, 1, 0];
    for level in 0..3 {
        let rows: Vec<f32> = boxes
            .iter()
            .zip(owner)
            .flat_map(|(b, o)| if o == level { *b } else { [-1.0; 5] })
            .collect();
        inputs.push(Tensor::from_f32(vec![boxes.len(), 5], &rows).unwrap());
    }
    let run = |graph: Graph| {
        let weights = WeightSet::new(&graph, HashMap::new()).unwrap();
        let backend = Arc::new(TractBackend::new(1).unwrap());
        let model = Executable::new(graph, weights, backend).unwrap();
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let operators = model.plan(&shapes).unwrap().operators();
        let outputs: Vec<Vec<f32>> = model
            .run(&inputs)
            .unwrap()
            .into_iter()
            .map(|t| t.to_f32_vec())
            .collect();
        (outputs, operators)
    };
    let (apart, _) = run(pyramid(false));
    let (summed, operators) = run(pyramid(true));
    let sums = operators
        .iter()
        .filter(|o| *o == "WardMxnetRoiAlignSum")
        .count();
    assert_eq!(sums, 1, "{operators:?}");
    assert!(
        !operators.iter().any(|o| o == "WardMxnetRoiAlign"),
        "{operators:?}"
    );
    // add_n's order: ((a + b) + c), as MXNet sums.
    let expected: Vec<f32> = (0..apart[0].len())
        .map(|i| (apart[0][i] + apart[1][i]) + apart[2][i])
        .collect();
    assert!(expected.iter().any(|&v| v != 0.0));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&summed[0]), bits(&expected));
}

/// A region head over `rows` regions of 16 channels pooled 14 × 14 from a 16 × 16 image:
/// ResNet's first block of a stage, in short (two 1×1 convolutions to 64 channels, one
/// through ReLU, summed), then a 3×3 convolution at stride 2, ReLU and an adaptive average
/// pool; the model's outputs are the sum, the pooled head and its softmax over the
/// regions.
fn region_head(rows: usize) -> (Executable, Graph, Vec<Tensor>, Vec<Tensor>) {
    use ward_graph::ir::ParamDecl;
    use ward_graph::ops::activation::{Activation, ActivationKind, Softmax};
    use ward_graph::ops::conv::Conv;
    use ward_graph::ops::elementwise::{Binary, BinaryKind};
    use ward_graph::ops::pool::AdaptiveAvgPool;
    let (c, wide, f) = (16usize, 64usize, 8usize);
    let ramp = |len: usize, seed: u64| -> Vec<f32> {
        (0..len as u64)
            .map(|i| {
                let v = i.wrapping_add(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                (v % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    };
    let conv = |k: usize, stride: usize| Conv {
        kernel: vec![k, k],
        stride: vec![stride, stride],
        dilation: vec![1, 1],
        pad: vec![k / 2, k / 2],
        groups: 1,
        bias: true,
    };
    let relu = || -> Op {
        Activation {
            kind: ActivationKind::Relu,
        }
        .into()
    };
    let mut g = roi_graph(RoiAlign {
        pooled_height: 14,
        pooled_width: 14,
        spatial_scale: 1.0,
        sample_ratio: Some(2),
        position_sensitive: false,
        aligned: false,
    });
    g.outputs.clear();
    for (name, shape) in [
        ("w1", vec![wide, c, 1, 1]),
        ("b1", vec![wide]),
        ("w2", vec![f, wide, 3, 3]),
        ("b2", vec![f]),
        ("w3", vec![wide, c, 1, 1]),
        ("b3", vec![wide]),
    ] {
        g.params.push(ParamDecl::new(name, DType::F32, shape));
    }
    let mut push = |name: &str, op: Op, inputs: Vec<Source>| {
        g.nodes.push(Node {
            name: name.into(),
            op,
            inputs,
        });
        Source::Node(g.nodes.len() - 1, 0)
    };
    let pooled = Source::Node(0, 0);
    let y = push(
        "conv1",
        conv(1, 1).into(),
        vec![pooled, Source::Param(0), Source::Param(1)],
    );
    let y = push("relu1", relu(), vec![y]);
    let branch = push(
        "conv3",
        conv(1, 1).into(),
        vec![pooled, Source::Param(4), Source::Param(5)],
    );
    let sum = push(
        "plus",
        Binary {
            kind: BinaryKind::Add,
            broadcast: false,
        }
        .into(),
        vec![y, branch],
    );
    let y = push(
        "conv2",
        conv(3, 2).into(),
        vec![sum, Source::Param(2), Source::Param(3)],
    );
    let y = push("relu2", relu(), vec![y]);
    let y = push(
        "pool",
        AdaptiveAvgPool {
            height: 1,
            width: 1,
        }
        .into(),
        vec![y],
    );
    g.outputs.push(GraphOutput {
        name: "sum".into(),
        source: sum,
    });
    let spread = push(
        "spread",
        Softmax {
            axis: 0,
            temperature: 1.0,
            log: false,
            use_length: false,
        }
        .into(),
        vec![y],
    );
    g.outputs.push(GraphOutput {
        name: "head".into(),
        source: y,
    });
    g.outputs.push(GraphOutput {
        name: "spread".into(),
        source: spread,
    });
    g.validate().unwrap();
    let params = vec![
        Tensor::from_f32(vec![wide, c, 1, 1], &ramp(wide * c, 1)).unwrap(),
        Tensor::from_f32(vec![wide], &ramp(wide, 2)).unwrap(),
        Tensor::from_f32(vec![f, wide, 3, 3], &ramp(f * wide * 9, 3)).unwrap(),
        Tensor::from_f32(vec![f], &ramp(f, 4)).unwrap(),
        Tensor::from_f32(vec![wide, c, 1, 1], &ramp(wide * c, 6)).unwrap(),
        Tensor::from_f32(vec![wide], &ramp(wide, 7)).unwrap(),
    ];
    let named = PARAMS
        .iter()
        .map(|n| n.to_string())
        .zip(params.iter().cloned())
        .collect();
    let weights = WeightSet::new(&g, named).unwrap();
    let model =
        Executable::new(g.clone(), weights, Arc::new(TractBackend::new(1).unwrap())).unwrap();
    // Boxes of 1 to 12 pixels a side anywhere in the image, some past its edge.
    let boxes: Vec<f32> = (0..rows)
        .flat_map(|i| {
            let (x, y) = ((i * 7 % 13) as f32 * 0.9, (i * 5 % 11) as f32 * 1.1);
            let (w, h) = (1.0 + (i % 12) as f32, 1.0 + (i * 3 % 12) as f32);
            [0.0, x, y, x + w, y + h]
        })
        .collect();
    let inputs = vec![
        Tensor::from_f32(vec![1, c, 16, 16], &ramp(c * 256, 5)).unwrap(),
        Tensor::from_f32(vec![rows, 5], &boxes).unwrap(),
    ];
    (model, g, params, inputs)
}

const PARAMS: [&str; 6] = ["w1", "b1", "w2", "b2", "w3", "b3"];

/// A region head whose largest activation takes more than 32 MiB (its 64-channel sums)
/// runs block by block (three blocks here, the last one short), on one thread and on two,
/// each region's outputs those of the head run whole on 50 regions at a time (a head that
/// small is not split), and the softmax over the regions, which ends the head, taken over
/// all of them. The reference interpreter's conformance with this plan's operators is
/// the conformance test's; on 700 regions it takes minutes.
#[test]
fn a_large_region_head_runs_block_by_block_with_the_numbers_of_the_whole_head() {
    let rows = 700;
    let (model, _, _, inputs) = region_head(rows);
    let boxes = inputs[1].to_f32_vec();
    let mut want: Vec<Vec<f32>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for (k, chunk) in boxes.chunks(50 * 5).enumerate() {
        let rois = Tensor::from_f32(vec![chunk.len() / 5, 5], chunk).unwrap();
        let shapes = [inputs[0].shape().to_vec(), rois.shape().to_vec()];
        let operators = model.plan(&shapes).unwrap().operators();
        assert!(
            !operators.iter().any(|o| o == "WardRegionBlocks"),
            "50 regions split: {operators:?}"
        );
        let got = model.run(&[inputs[0].clone(), rois]).unwrap();
        for (all, part) in want.iter_mut().zip(&got) {
            all.extend(part.to_f32_vec());
        }
        assert!(k < rows / 50);
    }
    for threads in [1, 2] {
        let (_, graph, params, _) = region_head(rows);
        let named = PARAMS
            .iter()
            .map(|n| n.to_string())
            .zip(params.iter().cloned())
            .collect();
        let weights = WeightSet::new(&graph, named).unwrap();
        let backend = Arc::new(TractBackend::new(threads).unwrap());
        let split = Executable::new(graph, weights, backend).unwrap();
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let operators = split.plan(&shapes).unwrap().operators();
        assert!(
            operators.iter().any(|o| o == "WardRegionBlocks"),
            "{threads} threads: not run by blocks: {operators:?}"
        );
        let got = split.run(&inputs).unwrap();
        assert_eq!(got[0].shape(), [rows, 64, 14, 14]);
        assert_eq!(got[1].shape(), [rows, 8, 1, 1]);
        assert_eq!(got[2].shape(), [rows, 8, 1, 1]);
        let head = got[1].to_f32_vec();
        let spread = got[2].to_f32_vec();
        for channel in 0..8 {
            let column: Vec<f64> = (0..rows)
                .map(|r| f64::from(head[r * 8 + channel]))
                .collect();
            let top = column.iter().fold(f64::MIN, |m, v| m.max(*v));
            let total: f64 = column.iter().map(|v| (v - top).exp()).sum();
            for (r, v) in column.iter().enumerate() {
                let want = (v - top).exp() / total;
                let got = f64::from(spread[r * 8 + channel]);
                assert!(
                    (got - want).abs() <= 1e-5 * want.max(1e-3),
                    "{threads} threads: softmax over the regions, region {r}, channel {channel}: {got} against {want}"
                );
            }
        }
        for (k, (got, want)) in got.iter().zip(&want).take(2).enumerate() {
            let got = got.to_f32_vec();
            assert_eq!(got.len(), want.len(), "output {k}");
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * scale,
                    "{threads} threads, output {k}, value {i} (region {}): {g} against {w}",
                    i / (want.len() / rows)
                );
            }
        }
    }
}
