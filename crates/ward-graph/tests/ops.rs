//! Single operators run through the CPU backend against values computed by hand.

use std::collections::HashMap;

use ward_core::{DType, Tensor};
use ward_graph::exec::Model;
use ward_graph::ir::{Graph, GraphInput, GraphOutput, Node, Op, PadMode, Source};

/// Runs `op` on one float32 input of `shape` holding 0, 1, 2, ...
fn run_unary(op: Op, shape: &[usize]) -> Tensor {
    let mut g = Graph::new();
    g.inputs.push(GraphInput {
        name: "x".into(),
        dtype: DType::F32,
    });
    g.nodes.push(Node {
        name: "op".into(),
        op,
        inputs: vec![Source::Input(0)],
    });
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(0, 0),
    });
    g.validate().unwrap();
    let n: usize = shape.iter().product();
    let x = Tensor::from_f32(
        shape.to_vec(),
        &(0..n).map(|v| v as f32).collect::<Vec<_>>(),
    )
    .unwrap();
    let model = Model::new(g, HashMap::new()).unwrap();
    model.run(&[x]).unwrap().remove(0)
}

#[test]
fn reflect_pad_mirrors_without_repeating_the_edge() {
    let y = run_unary(
        Op::Pad {
            mode: PadMode::Reflect,
            pads: vec![0, 0, 0, 0, 1, 1, 1, 1],
            value: 0.0,
        },
        &[1, 1, 2, 3],
    );
    assert_eq!(y.shape(), &[1, 1, 4, 5]);
    // x = [[0 1 2] [3 4 5]]
    #[rustfmt::skip]
    let want = [
        4., 3., 4., 5., 4.,
        1., 0., 1., 2., 1.,
        4., 3., 4., 5., 4.,
        1., 0., 1., 2., 1.,
    ];
    assert_eq!(y.to_f32_vec(), want);
}
