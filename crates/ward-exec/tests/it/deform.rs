//! MXNet's deformable convolutions in ward's own tract kernel: the numbers against MXNet
//! are the conformance test's (every `deformconv_` and `mdeformconv_` case); here, MXNet
//! 1.9.1's border rules through a plan, offsets no image holds (NaN, ±∞, 1e30) giving
//! zeros without a panic, and `ward export onnx` refusing the node by name.

use std::collections::HashMap;
use std::sync::Arc;

use ward_core::{DType, Tensor};
use ward_exec::{Executable, TractBackend, WeightSet};
use ward_graph::ir::{Graph, GraphInput, GraphOutput, InputRole, Node, Source};
use ward_graph::ops::conv::DeformableConv;

/// A 1×1 deformable convolution of weight 1, its inputs all data.
fn op(modulated: bool) -> DeformableConv {
    DeformableConv {
        kernel: vec![1, 1],
        stride: vec![1, 1],
        dilation: vec![1, 1],
        pad: vec![0, 0],
        groups: 1,
        deformable_groups: 1,
        modulated,
        bias: false,
        im2col_step: modulated.then_some(64),
    }
}

fn graph(op: DeformableConv) -> Graph {
    let names: &[&str] = if op.modulated {
        &["data", "offset", "mask", "weight"]
    } else {
        &["data", "offset", "weight"]
    };
    let mut g = Graph::new();
    for name in names {
        g.inputs.push(GraphInput {
            name: (*name).into(),
            dtype: DType::F32,
            role: InputRole::Data,
        });
    }
    g.nodes.push(Node {
        name: "dcn0".into(),
        op: op.into(),
        inputs: (0..names.len()).map(Source::Input).collect(),
    });
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(0, 0),
    });
    g.validate().unwrap();
    g
}

/// The first and last output rows for every offset `(dy, dx)` over a 4×4 ramp 1..16.
fn rows(modulated: bool, dy: f32, dx: f32) -> (Vec<f32>, Vec<f32>) {
    let g = graph(op(modulated));
    let weights = WeightSet::new(&g, HashMap::new()).unwrap();
    let model = Executable::new(g, weights, Arc::new(TractBackend::new(1).unwrap())).unwrap();
    let x = Tensor::from_f32(
        vec![1, 1, 4, 4],
        &(1..=16).map(|v| v as f32).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut off = vec![dy; 16];
    off.extend(vec![dx; 16]);
    let off = Tensor::from_f32(vec![1, 2, 4, 4], &off).unwrap();
    let w = Tensor::from_f32(vec![1, 1, 1, 1], &[1.0]).unwrap();
    let mut ins = vec![x, off];
    if modulated {
        ins.push(Tensor::from_f32(vec![1, 1, 4, 4], &[1.0; 16]).unwrap());
    }
    ins.push(w);
    let y = model.run(&ins).unwrap().remove(0).to_f32_vec();
    (y[..4].to_vec(), y[12..].to_vec())
}

#[test]
fn the_kernel_samples_the_border_as_mxnet_does() {
    // MXNet 1.9.1 (CPU) on the ramp: DCNv1 gives 0 above the plane and reads the last row
    // alone; DCNv2 weights the rows outside as zeros.
    assert_eq!(rows(false, -0.5, 0.0).0, vec![0.0; 4]);
    assert_eq!(rows(true, -0.5, 0.0).0, vec![0.5, 1.0, 1.5, 2.0]);
    assert_eq!(rows(false, 3.5, 0.0).0, vec![13.0, 14.0, 15.0, 16.0]);
    assert_eq!(rows(true, 3.5, 0.0).0, vec![6.5, 7.0, 7.5, 8.0]);
    // MXNet's float32 values, printed exactly as float64.
    let wide = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    assert_eq!(
        wide(rows(false, 0.25, 2.999).1),
        vec![15.999000549316406, 16.0, 0.0, 0.0]
    );
    assert_eq!(
        wide(rows(true, 0.25, 2.999).1),
        vec![11.999250411987305, 0.011999130249023438, 0.0, 0.0]
    );
    // Offsets no image holds sample nothing: zeros, no panic.
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30] {
        for modulated in [false, true] {
            assert_eq!(rows(modulated, bad, 0.0), (vec![0.0; 4], vec![0.0; 4]));
            assert_eq!(rows(modulated, 0.0, bad), (vec![0.0; 4], vec![0.0; 4]));
        }
    }
}

#[test]
fn export_onnx_refuses_the_node_by_name() {
    for modulated in [false, true] {
        let g = graph(op(modulated));
        let mut shapes = vec![vec![1, 1, 4, 4], vec![1, 2, 4, 4]];
        if modulated {
            shapes.push(vec![1, 1, 4, 4]);
        }
        shapes.push(vec![1, 1, 1, 1]);
        let proto = ward_exec::onnx::lower(&g, &[], &shapes).unwrap();
        let (node, op_type) = ward_exec::onnx::ward_only_node(&proto).unwrap();
        assert_eq!(node, "dcn0");
        assert_eq!(op_type, "WardDeformableConv");
        let err = ward_exec::onnx::refuse_ward_nodes(&proto)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dcn0") && err.contains("WardDeformableConv") && err.contains("ONNX"),
            "{err}"
        );
    }
}
