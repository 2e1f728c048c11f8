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

/// Max pooling by definition: every window clipped to the input, as MXNet computes it; a
/// window wholly in the padding gives f32::MIN.
fn max_pool_by_hand(
    x: &[f32],
    [c, h, w]: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    [oh, ow]: [usize; 2],
) -> Vec<f32> {
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::MIN;
                for ky in 0..kernel[0] {
                    for kx in 0..kernel[1] {
                        let iy = (oy * stride[0] + ky) as isize - pad[0] as isize;
                        let ix = (ox * stride[1] + kx) as isize - pad[1] as isize;
                        if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                            m = m.max(x[(ch * h + iy as usize) * w + ix as usize]);
                        }
                    }
                }
                out.push(m);
            }
        }
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The lowering splits a 2-D max pool into a pass over columns and one over rows; the
    /// result must be the windowed maximum for every kernel, stride, padding and rounding.
    #[test]
    fn max_pool_takes_each_windows_maximum(
        (c, h, w) in (1usize..4, 1usize..12, 1usize..12),
        kernel in (1usize..5, 1usize..5),
        stride in (1usize..4, 1usize..4),
        pad in (0usize..3, 0usize..3),
        ceil in proptest::bool::ANY,
        seed in proptest::prelude::any::<u64>(),
    ) {
        let kernel = [kernel.0, kernel.1];
        let stride = [stride.0, stride.1];
        let pad = [pad.0.min(kernel[0] - 1), pad.1.min(kernel[1] - 1)];
        proptest::prop_assume!(h + 2 * pad[0] >= kernel[0] && w + 2 * pad[1] >= kernel[1]);
        let out_size = |x: usize, i: usize| {
            let span = x + 2 * pad[i] - kernel[i];
            (if ceil { span.div_ceil(stride[i]) } else { span / stride[i] }) + 1
        };
        let (oh, ow) = (out_size(h, 0), out_size(w, 1));
        // Distinct values in a scrambled order, so a wrong window picks a wrong value.
        let n = c * h * w;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i as u64).wrapping_mul(2654435761).wrapping_add(seed) % 1_000_003) as f32)
            .collect();

        let mut g = Graph::new();
        g.inputs.push(GraphInput { name: "x".into(), dtype: DType::F32 });
        g.nodes.push(Node {
            name: "pool".into(),
            op: Op::Pool {
                kind: ward_graph::ir::PoolKind::Max,
                kernel: kernel.to_vec(),
                stride: stride.to_vec(),
                pad: pad.to_vec(),
                ceil,
                global: false,
                count_include_pad: false,
            },
            inputs: vec![Source::Input(0)],
        });
        g.outputs.push(GraphOutput { name: "y".into(), source: Source::Node(0, 0) });
        g.validate().unwrap();
        let model = Model::new(g, HashMap::new()).unwrap();
        let y = model
            .run(&[Tensor::from_f32(vec![1, c, h, w], &x).unwrap()])
            .unwrap()
            .remove(0);

        proptest::prop_assert_eq!(y.shape(), &[1, c, oh, ow]);
        let want = max_pool_by_hand(&x, [c, h, w], kernel, stride, pad, [oh, ow]);
        proptest::prop_assert_eq!(y.to_f32_vec(), want);
    }
}
