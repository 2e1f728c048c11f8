//! Single operators run through the CPU backend against values computed by hand.

use std::collections::HashMap;
use std::sync::Arc;

use ward_core::{DType, Tensor};
use ward_exec::{Executable, TractBackend, WeightSet, MAX_CACHED_PLANS};
use ward_graph::ir::{Graph, GraphInput, GraphOutput, InputRole, Node, Op, ParamDecl, Source};
use ward_graph::ops::activation::{Activation, ActivationKind};
use ward_graph::ops::conv::Conv;
use ward_graph::ops::pool::{Pool, PoolKind};
use ward_graph::ops::shape::{Concat, Pad, PadMode};

/// `graph` with `named` weights on a single-threaded CPU backend.
fn model(graph: Graph, named: HashMap<String, Tensor>) -> Executable {
    let weights = WeightSet::new(&graph, named).unwrap();
    Executable::new(graph, weights, Arc::new(TractBackend::new(1).unwrap())).unwrap()
}

fn input(name: &str) -> GraphInput {
    GraphInput {
        name: name.into(),
        dtype: DType::F32,
        role: InputRole::Data,
    }
}

/// Runs `op` on one float32 input of `shape` holding 0, 1, 2, ...
fn run_unary(op: Op, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let x = Tensor::from_f32(
        shape.to_vec(),
        &(0..n).map(|v| v as f32).collect::<Vec<_>>(),
    )
    .unwrap();
    let model = model(unary_graph(op), HashMap::new());
    model.run(&[x]).unwrap().remove(0)
}

/// A graph of `op` alone, on one float32 input.
fn unary_graph(op: Op) -> Graph {
    let mut g = Graph::new();
    g.inputs.push(input("x"));
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
    g
}

#[test]
fn the_plan_cache_keeps_plans_in_use_and_drops_the_least_recently_used() {
    let model = model(
        unary_graph(
            Activation {
                kind: ActivationKind::Relu,
            }
            .into(),
        ),
        HashMap::new(),
    );
    let batch = |n: usize| vec![vec![n, 3]];
    let steady = model.plan(&batch(1)).unwrap();
    let first_cycled = model.plan(&batch(2)).unwrap();
    // A client cycling through more batch sizes than the cache holds, while batch 1 keeps
    // being used in between.
    for n in 3..3 + 2 * MAX_CACHED_PLANS {
        model.plan(&batch(n)).unwrap();
        assert!(
            Arc::ptr_eq(&steady, &model.plan(&batch(1)).unwrap()),
            "the plan in use was rebuilt after batch {n}"
        );
    }
    assert!(
        !Arc::ptr_eq(&first_cycled, &model.plan(&batch(2)).unwrap()),
        "a plan unused for {} other shapes was still cached",
        2 * MAX_CACHED_PLANS
    );
    // The same shapes asked again give the same plan.
    let again = model.plan(&batch(2)).unwrap();
    assert!(Arc::ptr_eq(&again, &model.plan(&batch(2)).unwrap()));
}

#[test]
fn reflect_pad_mirrors_without_repeating_the_edge() {
    let y = run_unary(
        Pad {
            mode: PadMode::Reflect,
            pads: vec![0, 0, 0, 0, 1, 1, 1, 1],
            value: 0.0,
        }
        .into(),
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

    /// Ward's max-pool kernel folds rows, then takes windows along them (with loops of their
    /// own for the common kernel widths and strides, and for windows that overlap the
    /// padding); the result must be the windowed maximum for every kernel, stride, padding
    /// and rounding.
    #[test]
    fn max_pool_takes_each_windows_maximum(
        // Rows up to 39 wide: a stride-2 row of 16 windows reaches ward-kernels' AVX-512
        // block.
        (c, h, w) in (1usize..4, 1usize..12, 1usize..40),
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
        // Distinct values in a scrambled order, so a wrong window picks a wrong value, and
        // some NaNs, which MXNet's maximum never takes.
        let n = c * h * w;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i as u64).wrapping_mul(2654435761).wrapping_add(seed) % 1_000_003) as f32)
            .map(|v| if (v as u64).is_multiple_of(5) { f32::NAN } else { v })
            .collect();
        let pool = Pool {
            kind: PoolKind::Max,
            kernel: kernel.to_vec(),
            stride: stride.to_vec(),
            pad: pad.to_vec(),
            ceil,
            global: false,
            count_include_pad: false,
        };
        let (y, [oh, ow]) = run_pool(pool, [c, h, w], &x, "WardPlaneMaxPool");
        let want = max_pool_by_hand(&x, [c, h, w], kernel, stride, pad, [oh, ow]);
        proptest::prop_assert_eq!(y, want);
    }
}

/// MXNet's average pool: each window's sum over the input, divided by the window clipped
/// to the padded extent (`count_include_pad`) or to the input.
fn avg_pool_by_hand(
    x: &[f32],
    [c, h, w]: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    [oh, ow]: [usize; 2],
    count_include_pad: bool,
) -> Vec<f64> {
    // (first index, end) of a window along an axis, clipped to the padded extent and to
    // the input.
    let clip = |o: usize, axis: usize, size: usize| {
        let start = (o * stride[axis]) as isize - pad[axis] as isize;
        let end = (start + kernel[axis] as isize).min((size + pad[axis]) as isize);
        ((start, end), (start.max(0), end.min(size as isize)))
    };
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let ((py0, py1), (y0, y1)) = clip(oy, 0, h);
                let ((px0, px1), (x0, x1)) = clip(ox, 1, w);
                let mut sum = 0f64;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        sum += f64::from(x[(ch * h + iy as usize) * w + ix as usize]);
                    }
                }
                let cells = if count_include_pad {
                    (py1 - py0) * (px1 - px0)
                } else {
                    (y1 - y0) * (x1 - x0)
                };
                // A `full` window past the input holds no cell: ward's lowering divides
                // its zero sum by 1.
                out.push(sum / cells.max(1) as f64);
            }
        }
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Ward's average-pool kernel sums rows, then windows along them; the result must be
    /// MXNet's average for every kernel, stride, padding, rounding and divisor rule.
    #[test]
    fn avg_pool_takes_each_windows_average(
        (c, h, w) in (1usize..4, 1usize..12, 1usize..40),
        kernel in (1usize..5, 1usize..5),
        stride in (1usize..4, 1usize..4),
        pad in (0usize..3, 0usize..3),
        ceil in proptest::bool::ANY,
        count_include_pad in proptest::bool::ANY,
        seed in proptest::prelude::any::<u64>(),
    ) {
        let kernel = [kernel.0, kernel.1];
        let pad = [pad.0.min(kernel[0] - 1), pad.1.min(kernel[1] - 1)];
        proptest::prop_assume!(h + 2 * pad[0] >= kernel[0] && w + 2 * pad[1] >= kernel[1]);
        check_avg_pool([c, h, w], kernel, [stride.0, stride.1], pad, ceil, count_include_pad, seed);
    }
}

/// Same-size average pools at stride 1 (Inception's 3×3 padded by 1, and 5×5 padded by
/// 2), which ward runs over whole planes, on planes shorter and longer than a vector and
/// smaller than the window, with both divisor rules.
#[test]
fn same_size_avg_pools_take_each_windows_average() {
    for (side, kernel, pad) in [
        (17, 3, 1),
        (8, 3, 1),
        (35, 3, 1),
        (9, 5, 2),
        (2, 3, 1),
        (3, 5, 2),
    ] {
        for count_include_pad in [true, false] {
            check_avg_pool(
                [3, side, side + 2],
                [kernel; 2],
                [1, 1],
                [pad; 2],
                false,
                count_include_pad,
                7,
            );
        }
    }
}

/// A window over the whole plane (SqueezeNet's 13 × 13 pool, ResNet's 7 × 7), whose one
/// window per row ward sums directly, gives each plane's average.
#[test]
fn whole_plane_avg_pools_take_each_planes_average() {
    for side in [13, 7, 1] {
        check_avg_pool([5, side, side], [side; 2], [1, 1], [0, 0], false, true, 3);
    }
    // A window as wide as the plane but not as tall: one window per row, several rows.
    check_avg_pool([2, 9, 6], [3, 6], [2, 1], [0, 0], false, true, 4);
}

/// An average pool of `x` (one image, `[c, h, w]`, scrambled values from `seed`) runs as
/// ward's `WardPlaneAvgPool` and gives MXNet's averages.
fn check_avg_pool(
    [c, h, w]: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    ceil: bool,
    count_include_pad: bool,
    seed: u64,
) {
    let x = scrambled(c * h * w, seed);
    let pool = Pool {
        kind: PoolKind::Avg,
        kernel: kernel.to_vec(),
        stride: stride.to_vec(),
        pad: pad.to_vec(),
        ceil,
        global: false,
        count_include_pad,
    };
    let (y, out) = run_pool(pool, [c, h, w], &x, "WardPlaneAvgPool");
    let want = avg_pool_by_hand(&x, [c, h, w], kernel, stride, pad, out, count_include_pad);
    let what = format!("average pool of {h}×{w}, {kernel:?} / {stride:?}, pad {pad:?}");
    assert_close(&y, &want, &what);
}

/// `pool` (two spatial axes, no global window) planned for one image `[c, h, w]` must run
/// as ward's `op`; runs it on `x` and gives the output, checked to be of MXNet's output
/// size, and that size.
fn run_pool(pool: Pool, [c, h, w]: [usize; 3], x: &[f32], op: &str) -> (Vec<f32>, [usize; 2]) {
    let out_size = |size: usize, i: usize| {
        let span = size + 2 * pool.pad[i] - pool.kernel[i];
        let steps = if pool.ceil {
            span.div_ceil(pool.stride[i])
        } else {
            span / pool.stride[i]
        };
        steps + 1
    };
    let out = [out_size(h, 0), out_size(w, 1)];
    let mut g = Graph::new();
    g.inputs.push(input("x"));
    g.nodes.push(Node {
        name: "pool".into(),
        op: pool.into(),
        inputs: vec![Source::Input(0)],
    });
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(0, 0),
    });
    g.validate().unwrap();
    let on_one_thread = model(g.clone(), HashMap::new());
    let weights = WeightSet::new(&g, HashMap::new()).unwrap();
    let on_three = Executable::new(g, weights, Arc::new(TractBackend::new(3).unwrap())).unwrap();
    let input = Tensor::from_f32(vec![1, c, h, w], x).unwrap();
    let mut outputs = Vec::new();
    for model in [&on_one_thread, &on_three] {
        let plan = model.plan(&[vec![1, c, h, w]]).unwrap();
        let operators = plan.operators();
        assert!(
            operators.iter().any(|o| o == op),
            "tract's pool kept: {operators:?}"
        );
        let y = plan
            .run(model.stage(&[input.view()]).unwrap())
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), [1, c, out[0], out[1]]);
        outputs.push(y.to_f32_vec());
    }
    // Planes spread over three threads: the same bits.
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&outputs[0]), bits(&outputs[1]), "on three threads");
    (outputs.swap_remove(0), out)
}

/// A 1×1 convolution of a concatenation at batch 1 (SqueezeNet's squeeze layers): tract
/// splits its product over the concatenated parts and drops the batch of one from the
/// data or the output alone (`oi,ihw->nohw`, `oi,nihw->ohw`); each part still runs on
/// ward's pointwise kernel where the CPU has AVX-512F, with the definition's outputs.
#[test]
fn a_pointwise_convolution_of_a_concatenation_runs_on_wards_kernel() {
    let (c, f, s, h, w) = (6usize, 8usize, 5usize, 7usize, 9usize);
    let pointwise = Conv {
        kernel: vec![1, 1],
        stride: vec![1, 1],
        dilation: vec![1, 1],
        pad: vec![0, 0],
        groups: 1,
        bias: false,
    };
    let conv = |name: &str, input: Source, weight: usize| Node {
        name: name.into(),
        op: pointwise.clone().into(),
        inputs: vec![input, Source::Param(weight)],
    };
    let mut g = Graph::new();
    g.inputs.push(input("x"));
    let shapes = [vec![f, c, 1, 1], vec![f, c, 1, 1], vec![s, 2 * f, 1, 1]];
    for (name, shape) in ["wa", "wb", "ws"].iter().zip(&shapes) {
        g.params
            .push(ParamDecl::new(*name, DType::F32, shape.clone()));
    }
    g.nodes.push(conv("a", Source::Input(0), 0));
    g.nodes.push(conv("b", Source::Input(0), 1));
    g.nodes.push(Node {
        name: "joined".into(),
        op: Concat { axis: 1 }.into(),
        inputs: vec![Source::Node(0, 0), Source::Node(1, 0)],
    });
    g.nodes.push(conv("squeeze", Source::Node(2, 0), 2));
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(3, 0),
    });
    g.validate().unwrap();
    let weights: Vec<Vec<f32>> = shapes
        .iter()
        .zip(51..)
        .map(|(shape, seed)| scrambled(shape.iter().product(), seed))
        .collect();
    let named = ["wa", "wb", "ws"]
        .iter()
        .zip(&shapes)
        .zip(&weights)
        .map(|((name, shape), w)| {
            (
                name.to_string(),
                Tensor::from_f32(shape.clone(), w).unwrap(),
            )
        })
        .collect();
    let model = model(g, named);
    let shape = vec![1, c, h, w];
    let plan = model.plan(std::slice::from_ref(&shape)).unwrap();
    let operators = plan.operators();
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert!(
            !operators.iter().any(|op| op.contains("MatMul")),
            "a product left to tract: {operators:?}"
        );
    }
    let x = scrambled(c * h * w, 54);
    let input = Tensor::from_f32(shape, &x).unwrap();
    let y = plan
        .run(model.stage(&[input.view()]).unwrap())
        .unwrap()
        .remove(0);
    assert_eq!(y.shape(), [1, s, h, w]);
    let a = conv_by_hand(&x, [c, h, w], &weights[0], &pointwise, [f, h, w]);
    let b = conv_by_hand(&x, [c, h, w], &weights[1], &pointwise, [f, h, w]);
    let joined: Vec<f32> = a.iter().chain(&b).map(|&v| v as f32).collect();
    let want = conv_by_hand(&joined, [2 * f, h, w], &weights[2], &pointwise, [s, h, w]);
    assert_close(&y.to_f32_vec(), &want, "squeeze of a concatenation");
}

/// A fire module's tail: two 1×1 convolutions side by side, concatenated, then a ReLU.
/// tract runs that ReLU as a pass of its own unless ward moves it into each product; the
/// output must be unchanged, and the plan must have no standalone scalar op left.
#[test]
fn relu_after_concatenated_convolutions_is_fused_and_exact() {
    let (c, f, h, w) = (3usize, 4usize, 5usize, 6usize);
    let conv = |name: &str, weight: usize| Node {
        name: name.into(),
        op: Conv {
            kernel: vec![1, 1],
            stride: vec![1, 1],
            dilation: vec![1, 1],
            pad: vec![0, 0],
            groups: 1,
            bias: false,
        }
        .into(),
        inputs: vec![Source::Input(0), Source::Param(weight)],
    };
    let mut g = Graph::new();
    g.inputs.push(input("x"));
    for name in ["wa", "wb"] {
        g.params
            .push(ParamDecl::new(name, DType::F32, vec![f, c, 1, 1]));
    }
    g.nodes.push(conv("a", 0));
    g.nodes.push(conv("b", 1));
    g.nodes.push(Node {
        name: "joined".into(),
        op: Concat { axis: 1 }.into(),
        inputs: vec![Source::Node(0, 0), Source::Node(1, 0)],
    });
    g.nodes.push(Node {
        name: "relu".into(),
        op: Activation {
            kind: ActivationKind::Relu,
        }
        .into(),
        inputs: vec![Source::Node(2, 0)],
    });
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(3, 0),
    });
    g.validate().unwrap();
    let (wa, wb) = (scrambled(f * c, 7), scrambled(f * c, 8));
    let named = HashMap::from([
        (
            "wa".to_string(),
            Tensor::from_f32(vec![f, c, 1, 1], &wa).unwrap(),
        ),
        (
            "wb".to_string(),
            Tensor::from_f32(vec![f, c, 1, 1], &wb).unwrap(),
        ),
    ]);
    let model = model(g, named);
    let shape = vec![1, c, h, w];
    let plan = model.plan(std::slice::from_ref(&shape)).unwrap();
    let operators = plan.operators();
    assert!(
        !operators.iter().any(|op| op.contains("ByScalar")),
        "a standalone ReLU is left: {operators:?}"
    );

    let x = scrambled(c * h * w, 9);
    let input = Tensor::from_f32(shape, &x).unwrap();
    let y = plan
        .run(model.stage(&[input.view()]).unwrap())
        .unwrap()
        .remove(0);
    assert_eq!(y.shape(), &[1, 2 * f, h, w]);
    let mut want = Vec::with_capacity(2 * f * h * w);
    for weights in [&wa, &wb] {
        for filter in 0..f {
            for pixel in 0..h * w {
                let sum: f64 = (0..c)
                    .map(|ch| {
                        f64::from(weights[filter * c + ch]) * f64::from(x[ch * h * w + pixel])
                    })
                    .sum();
                want.push(sum.max(0.0));
            }
        }
    }
    assert!(want.contains(&0.0) && want.iter().any(|&v| v > 0.0));
    for (i, (got, want)) in y.to_f32_vec().iter().zip(&want).enumerate() {
        assert!(
            (f64::from(*got) - want).abs() <= 1e-5,
            "output {i}: {got} against {want}"
        );
    }
}

/// Values in [-1, 1) from a seed, scrambled so that a misplaced value shows.
fn scrambled(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let v = i.wrapping_add(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// New weights (as a new version of a package brings) give the new weights' outputs:
/// the plan compiled for the old ones is never used again.
#[test]
fn a_plan_never_outlives_its_weights() {
    let mut g = Graph::new();
    g.inputs.push(input("x"));
    g.params.push(ParamDecl::new("w", DType::F32, vec![2, 3]));
    g.nodes.push(Node {
        name: "dense".into(),
        op: ward_graph::ops::linear::Dense {
            units: 2,
            flatten: true,
            bias: false,
        }
        .into(),
        inputs: vec![Source::Input(0), Source::Param(0)],
    });
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(0, 0),
    });
    g.validate().unwrap();
    let weights = |v: f32| {
        HashMap::from([(
            "w".to_string(),
            Tensor::from_f32(vec![2, 3], &[v; 6]).unwrap(),
        )])
    };
    let model = model(g.clone(), weights(1.0));
    let x = Tensor::from_f32(vec![1, 3], &[1.0, 2.0, 3.0]).unwrap();
    let old_plan = model.plan(&[vec![1, 3]]).unwrap();
    assert_eq!(
        model.run(std::slice::from_ref(&x)).unwrap()[0].to_f32_vec(),
        [6.0, 6.0]
    );

    let new = WeightSet::new(&g, weights(2.0)).unwrap();
    model.set_weights(new.clone()).unwrap();
    assert_eq!(
        model.run(std::slice::from_ref(&x)).unwrap()[0].to_f32_vec(),
        [12.0, 12.0]
    );
    let new_plan = model.plan(&[vec![1, 3]]).unwrap();
    assert!(
        !Arc::ptr_eq(&old_plan, &new_plan),
        "the old weights' plan was reused"
    );
    assert_eq!(new_plan.weights(), new.id());
    assert_ne!(old_plan.weights(), new.id());
}

/// Sigmoid reaches MXNet's exact 0 and 1 (its float32 `1 / (1 + e^-x)`), through the
/// `Activation`, the standalone operator and `LogisticRegressionOutput` alike. tract's
/// own `Sigmoid` stops at 4.47e-7 and 1 − 4.77e-7, which broke the ties saturated
/// detector scores make in MXNet.
#[test]
fn sigmoid_saturates_to_mxnets_zero_and_one() {
    use ward_graph::ops::elementwise::{Unary, UnaryKind};
    use ward_graph::ops::loss::{RegressionKind, RegressionOutput};
    let x = [-100.0f32, -20.0, 0.0, 1.0, 17.0, 20.0, 100.0];
    // MXNet 1.9.1, mx.nd.sigmoid of the same float32 values.
    let mxnet = [0.0f32, 2.061_153_7e-9, 0.5, 0.731_058_6, 1.0, 1.0, 1.0];
    for op in [
        Op::from(Activation {
            kind: ActivationKind::Sigmoid,
        }),
        Op::from(Unary {
            kind: UnaryKind::Sigmoid,
        }),
        Op::from(RegressionOutput {
            kind: RegressionKind::Logistic,
            grad_scale: 1.0,
        }),
    ] {
        let name = op.name();
        let model = model(unary_graph(op), HashMap::new());
        let y = model
            .run(&[Tensor::from_f32(vec![x.len()], &x).unwrap()])
            .unwrap()
            .remove(0)
            .to_f32_vec();
        for ((got, want), v) in y.iter().zip(mxnet).zip(x) {
            let close = if want == 0.0 || want == 1.0 {
                *got == want
            } else {
                (got - want).abs() <= 2.0 * f32::EPSILON * want
            };
            assert!(close, "{name}({v}) = {got}, MXNet gives {want}");
        }
    }
}

/// One convolution (or transposed convolution) node on input "x" with weight param "w",
/// on a graph of its own.
fn conv_graph(op: impl Into<Op>, weight_shape: Vec<usize>) -> Graph {
    let mut g = Graph::new();
    g.inputs.push(input("x"));
    g.params.push(ParamDecl::new("w", DType::F32, weight_shape));
    g.nodes.push(Node {
        name: "conv".into(),
        op: op.into(),
        inputs: vec![Source::Input(0), Source::Param(0)],
    });
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(0, 0),
    });
    g.validate().unwrap();
    g
}

/// [`conv_graph`] of `op` with `weight` (of `weight_shape`) on a single-threaded backend.
fn conv_model(
    op: &(impl Into<Op> + Clone),
    weight_shape: Vec<usize>,
    weight: &[f32],
) -> Executable {
    conv_model_on(op, weight_shape, weight, 1)
}

/// [`conv_model`] on a backend of `threads` threads.
fn conv_model_on(
    op: &(impl Into<Op> + Clone),
    weight_shape: Vec<usize>,
    weight: &[f32],
    threads: usize,
) -> Executable {
    let named = HashMap::from([(
        "w".to_string(),
        Tensor::from_f32(weight_shape.clone(), weight).unwrap(),
    )]);
    let graph = conv_graph(op.clone(), weight_shape);
    let weights = WeightSet::new(&graph, named).unwrap();
    Executable::new(
        graph,
        weights,
        Arc::new(TractBackend::new(threads).unwrap()),
    )
    .unwrap()
}

/// Each of `got` within 1e-5 of `want`, computed in float64; `what` names the case.
fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_within(got, want, what, 1e-5);
}

/// Each of `got` within `tolerance` of `want`, computed in float64.
fn assert_within(got: &[f32], want: &[f64], what: &str, tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*got) - want).abs() <= tolerance,
            "{what} output {i}: {got} against {want}"
        );
    }
}

/// A grouped 2-D convolution without bias in float64, straight from its definition: output
/// (f, oy, ox) sums weight × input over its group's channels and the kernel's taps, a tap
/// outside the input reading zero.
fn conv_by_hand(
    x: &[f32],
    [c, h, w]: [usize; 3],
    weight: &[f32],
    op: &Conv,
    [f, oh, ow]: [usize; 3],
) -> Vec<f64> {
    let (kh, kw) = (op.kernel[0], op.kernel[1]);
    let per_group_in = c / op.groups;
    let per_group_out = f / op.groups;
    let mut out = Vec::with_capacity(f * oh * ow);
    for filter in 0..f {
        let group = filter / per_group_out;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = 0f64;
                for ci in 0..per_group_in {
                    let channel = group * per_group_in + ci;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * op.stride[0] + ky * op.dilation[0]) as isize
                                - op.pad[0] as isize;
                            let ix = (ox * op.stride[1] + kx * op.dilation[1]) as isize
                                - op.pad[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let xv = x[channel * h * w + iy as usize * w + ix as usize];
                            let wv = weight[((filter * per_group_in + ci) * kh + ky) * kw + kx];
                            sum += f64::from(xv) * f64::from(wv);
                        }
                    }
                }
                out.push(sum);
            }
        }
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

    /// Convolutions whose padding and dilation reach far past a small input, where ward
    /// cuts the kernel taps that read only padding (`tract::conv_taps`), and ordinary ones
    /// beside them: each output is the convolution's definition.
    #[test]
    fn a_convolution_is_its_definition_whatever_part_reads_padding(
        (groups, per_group_in, per_group_out) in (1usize..3, 1usize..3, 1usize..3),
        (h, w) in (1usize..7, 1usize..7),
        kernel in (1usize..4, 1usize..4),
        stride in (1usize..3, 1usize..3),
        dilation in (1usize..7, 1usize..7),
        pad in (0usize..12, 0usize..12),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let (c, f) = (groups * per_group_in, groups * per_group_out);
        let op = Conv {
            kernel: vec![kernel.0, kernel.1],
            stride: vec![stride.0, stride.1],
            dilation: vec![dilation.0, dilation.1],
            pad: vec![pad.0, pad.1],
            groups,
            bias: false,
        };
        let out_size = |x: usize, i: usize| {
            (x + 2 * op.pad[i]).checked_sub(op.dilation[i] * (op.kernel[i] - 1) + 1)
                .map(|span| span / op.stride[i] + 1)
        };
        let (Some(oh), Some(ow)) = (out_size(h, 0), out_size(w, 1)) else {
            return Err(proptest::test_runner::TestCaseError::reject("no output"));
        };
        let weight_shape = vec![f, per_group_in, kernel.0, kernel.1];
        let weight = scrambled(weight_shape.iter().product(), seed);
        let x = scrambled(c * h * w, seed ^ 0x5eed);
        let model = conv_model(&op, weight_shape, &weight);
        let input = Tensor::from_f32(vec![1, c, h, w], &x).unwrap();
        let y = model.run(&[input]).unwrap().remove(0);
        proptest::prop_assert_eq!(y.shape(), &[1, f, oh, ow]);
        let want = conv_by_hand(&x, [c, h, w], &weight, &op, [f, oh, ow]);
        for (i, (got, want)) in y.to_f32_vec().iter().zip(&want).enumerate() {
            proptest::prop_assert!(
                (f64::from(*got) - want).abs() <= 1e-5,
                "output {}: {} against {}", i, got, want
            );
        }
    }
}

/// DeepLab's widest ASPP branch on a 128×128 image's 16×16 map (3×3 at rate 36, padding
/// 36): only the centre tap ever reads the input, so the plan runs a 1×1 convolution, with
/// no padded copy of the input, and the same outputs.
#[test]
fn a_branch_whose_outer_taps_read_only_padding_runs_as_its_centre_tap() {
    let (c, f, h, w) = (8usize, 4usize, 16usize, 16usize);
    let op = Conv {
        kernel: vec![3, 3],
        stride: vec![1, 1],
        dilation: vec![36, 36],
        pad: vec![36, 36],
        groups: 1,
        bias: false,
    };
    let weight_shape = vec![f, c, 3, 3];
    let weight = scrambled(f * c * 9, 3);
    let model = conv_model(&op, weight_shape, &weight);
    let shape = vec![1, c, h, w];
    let plan = model.plan(std::slice::from_ref(&shape)).unwrap();
    let operators = plan.operators();
    assert!(
        !operators
            .iter()
            .any(|op| op.contains("Pad") || op.contains("Im2col")),
        "the input is still padded: {operators:?}"
    );
    let x = scrambled(c * h * w, 4);
    let input = Tensor::from_f32(shape, &x).unwrap();
    let y = plan
        .run(model.stage(&[input.view()]).unwrap())
        .unwrap()
        .remove(0);
    let want = conv_by_hand(&x, [c, h, w], &weight, &op, [f, h, w]);
    assert_close(&y.to_f32_vec(), &want, "rate 36");
}

/// A NaN in a tap that reads only padding still makes every output NaN, as MXNet's
/// product with the padding's zeros does: such a tap is not cut.
#[test]
fn a_nan_in_a_tap_that_reads_only_padding_still_reaches_the_output() {
    let (c, f, h, w) = (2usize, 1usize, 4usize, 4usize);
    let op = Conv {
        kernel: vec![3, 3],
        stride: vec![1, 1],
        dilation: vec![8, 8],
        pad: vec![8, 8],
        groups: 1,
        bias: false,
    };
    let weight_shape = vec![f, c, 3, 3];
    let mut weight = scrambled(f * c * 9, 5);
    weight[0] = f32::NAN; // channel 0's top-left tap, in the padding for every output
    let model = conv_model(&op, weight_shape, &weight);
    let x = scrambled(c * h * w, 6);
    let y = model
        .run(&[Tensor::from_f32(vec![1, c, h, w], &x).unwrap()])
        .unwrap()
        .remove(0);
    assert!(
        y.to_f32_vec().iter().all(|v| v.is_nan()),
        "{:?}",
        y.to_f32_vec()
    );
}

/// `model` planned for input `shape` must run its convolution as `op` (sample by sample,
/// `WardConvPerSample`, or on ward's direct kernels, `WardDirectConv`: neither holds an
/// im2col of the whole batch); runs it on `x` and gives the output, checked to be of
/// `output`'s shape.
fn run_without_batch_im2col(
    model: &Executable,
    op: &str,
    shape: Vec<usize>,
    x: &[f32],
    output: &[usize],
) -> Vec<f32> {
    let plan = model.plan(std::slice::from_ref(&shape)).unwrap();
    let operators = plan.operators();
    assert!(
        operators.iter().any(|o| o == op),
        "not run as {op}: {operators:?}"
    );
    let input = Tensor::from_f32(shape, x).unwrap();
    let y = plan
        .run(model.stage(&[input.view()]).unwrap())
        .unwrap()
        .remove(0);
    assert_eq!(y.shape(), output);
    y.to_f32_vec()
}

/// A 3×3 convolution over a batch of 128 (an R-CNN box head's shape, scaled down) whose
/// im2col would hold 21 MB, and whose four filters are too few for ward's direct
/// kernels, runs image by image on ward's planar kernel where the CPU has AVX-512F and
/// sample by sample elsewhere, with each sample's outputs the convolution's definition.
#[test]
fn a_large_batched_convolution_runs_sample_by_sample_with_the_same_outputs() {
    let (n, c, f, h, w) = (128usize, 32usize, 4usize, 12usize, 12usize);
    let op = Conv {
        kernel: vec![3, 3],
        stride: vec![1, 1],
        dilation: vec![1, 1],
        pad: vec![1, 1],
        groups: 1,
        bias: false,
    };
    let weight_shape = vec![f, c, 3, 3];
    let weight = scrambled(f * c * 9, 11);
    let model = conv_model(&op, weight_shape, &weight);
    let x = scrambled(n * c * h * w, 12);
    let runs_as = if std::arch::is_x86_feature_detected!("avx512f") {
        "WardPlanarConv"
    } else {
        "WardConvPerSample"
    };
    let y = run_without_batch_im2col(&model, runs_as, vec![n, c, h, w], &x, &[n, f, h, w]);
    assert_each_sample_is_the_definition(&x, &y, &weight, &op, [n, c, h, w], f);
}

/// A small convolution over a batch that stays on tract's kernels (grouped, 20 filters
/// a group: too narrow for ward's) keeps tract's im2col of the whole batch on one thread,
/// and on two runs sample by sample, the samples side by side on the threads, each
/// sample's outputs the definition's.
#[test]
fn a_batched_convolution_on_two_threads_runs_its_samples_side_by_side() {
    let (n, c, f, h, w) = (4usize, 32usize, 40usize, 8usize, 8usize);
    let op = Conv {
        kernel: vec![3, 3],
        stride: vec![1, 1],
        dilation: vec![1, 1],
        pad: vec![1, 1],
        groups: 2,
        bias: false,
    };
    let weight_shape = vec![f, c / 2, 3, 3];
    let weight = scrambled(f * c / 2 * 9, 41);
    let x = scrambled(n * c * h * w, 42);
    let shape = vec![n, c, h, w];
    let one = conv_model_on(&op, weight_shape.clone(), &weight, 1);
    let operators = one.plan(std::slice::from_ref(&shape)).unwrap().operators();
    assert!(
        !operators.iter().any(|o| o == "WardConvPerSample"),
        "one thread: {operators:?}"
    );
    let two = conv_model_on(&op, weight_shape, &weight, 2);
    let y = run_without_batch_im2col(&two, "WardConvPerSample", shape, &x, &[n, f, h, w]);
    // Sums of 144 terms up to 100 in magnitude, outputs up to 40: within 1e-5 of the
    // largest output.
    let relative = |want: &[f64]| 1e-5 * want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    assert_each_sample_within(&x, &y, &weight, &op, [n, c, h, w], f, relative);
}

/// Each sample of `y`, the stride-1, same-size convolution `op` of `x` (`[n, c, h, w]`)
/// to `f` channels, within 1e-5 of the definition.
fn assert_each_sample_is_the_definition(
    x: &[f32],
    y: &[f32],
    weight: &[f32],
    op: &Conv,
    shape: [usize; 4],
    f: usize,
) {
    assert_each_sample_within(x, y, weight, op, shape, f, |_| 1e-5);
}

/// As [`assert_each_sample_is_the_definition`], each sample within `tolerance` of its
/// definition's outputs (given those).
fn assert_each_sample_within(
    x: &[f32],
    y: &[f32],
    weight: &[f32],
    op: &Conv,
    [n, c, h, w]: [usize; 4],
    f: usize,
    tolerance: impl Fn(&[f64]) -> f64,
) {
    for sample in 0..n {
        let want = conv_by_hand(
            &x[sample * c * h * w..(sample + 1) * c * h * w],
            [c, h, w],
            weight,
            op,
            [f, h, w],
        );
        let got = &y[sample * f * h * w..(sample + 1) * f * h * w];
        assert_within(got, &want, &format!("sample {sample}"), tolerance(&want));
    }
}

/// What runs a 1×1 convolution over a batch: ward's pointwise kernel where the CPU has
/// AVX-512F, else its product sample by sample.
fn batched_pointwise_runs_as() -> &'static str {
    if std::arch::is_x86_feature_detected!("avx512f") {
        "WardPointwiseConv"
    } else {
        "WardConvPerSample"
    }
}

/// A 1×1 convolution at stride 1, maybe with a bias.
fn pointwise(bias: bool) -> Conv {
    Conv {
        kernel: vec![1, 1],
        stride: vec![1, 1],
        dilation: vec![1, 1],
        pad: vec![0, 0],
        groups: 1,
        bias,
    }
}

/// A 1×1 convolution over a batch of 8 runs on ward's pointwise kernel where the CPU has
/// AVX-512F, and elsewhere its product sample by sample (tract's batched product would
/// transpose the input and the output), each sample's outputs the definition's.
#[test]
fn a_batched_pointwise_convolution_runs_image_by_image_with_the_same_outputs() {
    let runs_as = batched_pointwise_runs_as();
    let (n, c, f, h, w) = (8usize, 24usize, 40usize, 7usize, 9usize);
    let op = pointwise(false);
    let weight = scrambled(f * c, 31);
    let model = conv_model(&op, vec![f, c, 1, 1], &weight);
    let x = scrambled(n * c * h * w, 32);
    let y = run_without_batch_im2col(&model, runs_as, vec![n, c, h, w], &x, &[n, f, h, w]);
    assert_each_sample_is_the_definition(&x, &y, &weight, &op, [n, c, h, w], f);
    // On 2 and 3 threads the samples are spread over the threads (3, 3 and 2 of them on
    // 3): the same bits.
    for threads in [2, 3] {
        let model = conv_model_on(&op, vec![f, c, 1, 1], &weight, threads);
        let on_threads =
            run_without_batch_im2col(&model, runs_as, vec![n, c, h, w], &x, &[n, f, h, w]);
        assert!(
            on_threads
                .iter()
                .zip(&y)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{threads} threads"
        );
    }
}

/// A convolution on ward's kernels where the CPU has AVX-512F (a 1×1 one on the pointwise
/// kernel, a narrow 3×3 one on the planar kernel, a wide one on the direct kernels, one
/// over 16 tiles or more on Winograd's) runs
/// as one step that takes in the bias and a ReLU that only it reads, at batch 1 (tract
/// drops the batch axis) and over a batch, each output `act(w·x + b)`. A ReLU whose input
/// is also an output, and another activation (a unary op, not tract's `max(·, 0)`), stay
/// steps of their own.
#[test]
fn a_convolution_takes_its_bias_and_relu() {
    // (kernel, filters, the kernel's step, plane): 5×7 is 4 tiles of 4×4 outputs a
    // sample (12 at batch 3, too few for Winograd's kernel), 16×16 is 16.
    for (k, f, kernel_step, (h, w)) in [
        (1usize, 19usize, "WardPointwiseConv", (5usize, 11usize)),
        (3, 19, "WardPlanarConv", (5, 7)),
        (3, 64, "WardDirectConv", (5, 7)),
        (3, 24, "WardWinogradConv", (16, 16)),
    ] {
        convolution_takes_its_bias_and_relu(k, f, kernel_step, h, w);
    }
}

fn convolution_takes_its_bias_and_relu(k: usize, f: usize, kernel_step: &str, h: usize, w: usize) {
    // Winograd's kernel runs with AVX2 too; the others need AVX-512F.
    let runs_here = if kernel_step == "WardWinogradConv" {
        ward_kernels::Isa::has_vector_kernels()
    } else {
        std::arch::is_x86_feature_detected!("avx512f")
    };
    let c = 32usize;
    // Winograd's transforms round more: its kernel's bound, 1e-5 per √term relative to
    // outputs up to 10 in magnitude here, would allow 1.7e-3; it stays within 4e-5 per
    // √term.
    let tolerance = if kernel_step == "WardWinogradConv" {
        4e-5 * ((c * k * k) as f64).sqrt()
    } else {
        1e-5
    };
    let (weight, bias) = (scrambled(f * c * k * k, 41), scrambled(f, 42));
    // (bias, activation, the sums an output too, the ReLU taken in)
    let cases = [
        (true, ActivationKind::Relu, false, true),
        (true, ActivationKind::Relu, true, false),
        (false, ActivationKind::Relu, false, true),
        (true, ActivationKind::Tanh, false, false),
        (false, ActivationKind::Tanh, false, false),
    ];
    for (with_bias, kind, sums_too, fused) in cases {
        let step = format!("{kernel_step}{}", if fused { "Relu" } else { "" });
        let conv = Conv {
            kernel: vec![k, k],
            stride: vec![1, 1],
            dilation: vec![1, 1],
            pad: vec![k / 2, k / 2],
            groups: 1,
            bias: with_bias,
        };
        let mut g = Graph::new();
        g.inputs.push(input("x"));
        g.params
            .push(ParamDecl::new("w", DType::F32, vec![f, c, k, k]));
        let mut conv_inputs = vec![Source::Input(0), Source::Param(0)];
        let mut named = HashMap::from([(
            "w".to_string(),
            Tensor::from_f32(vec![f, c, k, k], &weight).unwrap(),
        )]);
        if with_bias {
            g.params.push(ParamDecl::new("b", DType::F32, vec![f]));
            conv_inputs.push(Source::Param(1));
            named.insert("b".to_string(), Tensor::from_f32(vec![f], &bias).unwrap());
        }
        g.nodes.push(Node {
            name: "conv".into(),
            op: conv.clone().into(),
            inputs: conv_inputs,
        });
        g.nodes.push(Node {
            name: "act".into(),
            op: Activation { kind }.into(),
            inputs: vec![Source::Node(0, 0)],
        });
        g.outputs.push(GraphOutput {
            name: "y".into(),
            source: Source::Node(1, 0),
        });
        if sums_too {
            g.outputs.push(GraphOutput {
                name: "z".into(),
                source: Source::Node(0, 0),
            });
        }
        g.validate().unwrap();
        let weights = WeightSet::new(&g, named).unwrap();
        let model = Executable::new(g, weights, Arc::new(TractBackend::new(1).unwrap())).unwrap();
        let what = format!("{k}×{k} to {f}: bias {with_bias}, {kind:?}, sums an output {sums_too}");
        for n in [1usize, 3] {
            let shape = vec![n, c, h, w];
            let plan = model.plan(std::slice::from_ref(&shape)).unwrap();
            let operators = plan.operators();
            if runs_here {
                assert!(
                    operators.contains(&step),
                    "{what}, batch {n}: {operators:?}"
                );
            }
            let x = scrambled(n * c * h * w, 43);
            let input = Tensor::from_f32(shape, &x).unwrap();
            let outputs = plan.run(model.stage(&[input.view()]).unwrap()).unwrap();
            assert_eq!(outputs[0].shape(), [n, f, h, w]);
            let mut sums = Vec::new();
            for sample in 0..n {
                let image = &x[sample * c * h * w..][..c * h * w];
                let by_hand = conv_by_hand(image, [c, h, w], &weight, &conv, [f, h, w]);
                sums.extend(by_hand.iter().enumerate().map(|(i, s)| {
                    s + if with_bias {
                        f64::from(bias[i / (h * w)])
                    } else {
                        0.0
                    }
                }));
            }
            if sums_too {
                assert_within(&outputs[1].to_f32_vec(), &sums, &what, tolerance);
            }
            let want: Vec<f64> = match kind {
                ActivationKind::Relu => sums.iter().map(|v| v.max(0.0)).collect(),
                _ => sums.iter().map(|v| v.tanh()).collect(),
            };
            assert!(sums.iter().any(|&v| v < 0.0) && sums.iter().any(|&v| v > 0.0));
            assert_within(
                &outputs[0].to_f32_vec(),
                &want,
                &format!("{what}, batch {n}"),
                tolerance,
            );
        }
    }
}

/// A 1×1 convolution with a bias over 1000 regions whose output gains a leading axis
/// (Mask R-CNN FPN's mask predictor, scaled down), which tract's declutter writes as one
/// product `nihw,oi->anohw` with the weight last, runs sample by sample where ward's
/// pointwise kernel does not take it (tract's product over the batch moved the input's
/// and the output's axes, two copies of the whole batch), each sample's outputs the
/// definition's plus the bias.
#[test]
fn a_large_batched_pointwise_convolution_under_a_new_axis_runs_sample_by_sample() {
    use ward_graph::ops::shape::ExpandDims;
    let runs_as = batched_pointwise_runs_as();
    let (n, c, f, h, w) = (1000usize, 16usize, 8usize, 6usize, 6usize);
    let op = pointwise(true);
    let (weight, bias) = (scrambled(f * c, 51), scrambled(f, 52));
    let mut g = Graph::new();
    g.inputs.push(input("x"));
    g.params
        .push(ParamDecl::new("w", DType::F32, vec![f, c, 1, 1]));
    g.params.push(ParamDecl::new("b", DType::F32, vec![f]));
    g.nodes.push(Node {
        name: "conv".into(),
        op: op.clone().into(),
        inputs: vec![Source::Input(0), Source::Param(0), Source::Param(1)],
    });
    g.nodes.push(Node {
        name: "expand".into(),
        op: ExpandDims { axis: 0 }.into(),
        inputs: vec![Source::Node(0, 0)],
    });
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(1, 0),
    });
    g.validate().unwrap();
    let named = HashMap::from([
        (
            "w".to_string(),
            Tensor::from_f32(vec![f, c, 1, 1], &weight).unwrap(),
        ),
        ("b".to_string(), Tensor::from_f32(vec![f], &bias).unwrap()),
    ]);
    let x = scrambled(n * c * h * w, 53);
    let without_bias = Conv {
        bias: false,
        ..op.clone()
    };
    // One thread runs the samples in turn, two side by side.
    for threads in [1, 2] {
        let weights = WeightSet::new(&g, named.clone()).unwrap();
        let backend = Arc::new(TractBackend::new(threads).unwrap());
        let model = Executable::new(g.clone(), weights, backend).unwrap();
        let y = run_without_batch_im2col(&model, runs_as, vec![n, c, h, w], &x, &[1, n, f, h, w]);
        for sample in [0, 1, 500, n - 1] {
            let mut want = conv_by_hand(
                &x[sample * c * h * w..(sample + 1) * c * h * w],
                [c, h, w],
                &weight,
                &without_bias,
                [f, h, w],
            );
            for (i, v) in want.iter_mut().enumerate() {
                *v += f64::from(bias[i / (h * w)]);
            }
            let got = &y[sample * f * h * w..(sample + 1) * f * h * w];
            let what = format!("{threads} threads, sample {sample}");
            assert_within(got, &want, &what, 1e-5);
        }
    }
}

/// A 2×2, stride-2 transposed convolution over 300 regions (Mask R-CNN's mask head,
/// scaled down), whose product of (output channels · taps) × input positions would hold
/// 20 MB for the batch, runs sample by sample, each sample's outputs the definition's.
#[test]
fn a_large_batched_transposed_convolution_runs_sample_by_sample_with_the_same_outputs() {
    use ward_graph::ops::conv::Deconv;
    let (n, c, f, h, w) = (300usize, 8usize, 64usize, 8usize, 8usize);
    let op = Deconv {
        kernel: vec![2, 2],
        stride: vec![2, 2],
        dilation: vec![1, 1],
        pad: vec![0, 0],
        output_padding: vec![0, 0],
        groups: 1,
        bias: false,
    };
    let weight = scrambled(c * f * 4, 21);
    let model = conv_model(&op, vec![c, f, 2, 2], &weight);
    let x = scrambled(n * c * h * w, 22);
    let y = run_without_batch_im2col(
        &model,
        "WardConvPerSample",
        vec![n, c, h, w],
        &x,
        &[n, f, 2 * h, 2 * w],
    );
    let (oh, ow) = (2 * h, 2 * w);
    for sample in [0, 1, 150, n - 1] {
        // Each output takes one tap: input (oy / 2, ox / 2), kernel tap (oy % 2, ox % 2).
        let mut want = Vec::with_capacity(f * oh * ow);
        for filter in 0..f {
            for oy in 0..oh {
                for ox in 0..ow {
                    let sum: f64 = (0..c)
                        .map(|ci| {
                            let xv = x[((sample * c + ci) * h + oy / 2) * w + ox / 2];
                            let wv = weight[((ci * f + filter) * 2 + oy % 2) * 2 + ox % 2];
                            f64::from(xv) * f64::from(wv)
                        })
                        .sum();
                    want.push(sum);
                }
            }
        }
        let got = &y[sample * f * oh * ow..(sample + 1) * f * oh * ow];
        assert_close(got, &want, &format!("sample {sample}"));
    }
}

/// The unary `op` on `values` (of `shape`), checked to run as ward's op `name` with no
/// `Iff` left of its NaN guard.
fn run_as_one_op(op: Op, name: &str, shape: Vec<usize>, values: &[f32]) -> Vec<f32> {
    let model = model(unary_graph(op), HashMap::new());
    let plan = model.plan(std::slice::from_ref(&shape)).unwrap();
    let operators = plan.operators();
    assert!(
        operators.iter().any(|op| op == name) && !operators.iter().any(|op| op == "Iff"),
        "not one {name}: {operators:?}"
    );
    let x = Tensor::from_f32(shape, values).unwrap();
    plan.run(model.stage(&[x.view()]).unwrap())
        .unwrap()
        .remove(0)
        .to_f32_vec()
}

/// MXNet's `relu` operator (not `Activation`): NaN kept, negative values and -0 made +0,
/// infinities as they are; run as one pass of ward's own op.
#[test]
fn relu_keeps_nan_and_makes_negative_zero_positive_in_one_pass() {
    use ward_graph::ops::elementwise::{Unary, UnaryKind};
    let values = [
        f32::NAN,
        -0.0,
        -1.5,
        2.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        f32::MIN_POSITIVE,
    ];
    let relu = Unary {
        kind: UnaryKind::Relu,
    };
    let y = run_as_one_op(relu.into(), "WardReluKeepNan", vec![2, 4], &values);
    assert!(y[0].is_nan());
    let want = [0.0f32, 0.0, 2.5, f32::INFINITY, 0.0, 0.0, f32::MIN_POSITIVE];
    for (got, want) in y[1..].iter().zip(want) {
        assert_eq!(got.to_bits(), want.to_bits(), "{y:?}");
    }
}

/// MXNet's `clip` (MobileNet v2's ReLU6): NaN and -0 kept, as MXNet 1.9.1's own
/// `mx.nd.clip(x, 0, 6)` gives them; run as one pass of ward's own op.
#[test]
fn clip_keeps_nan_and_negative_zero_in_one_pass() {
    use ward_graph::ops::elementwise::Clip;
    let values = [
        -0.0f32,
        f32::NAN,
        -1.5,
        7.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        6.0,
        0.0,
        2.5,
        f32::MIN_POSITIVE,
    ];
    let clip = Clip { min: 0.0, max: 6.0 };
    let y = run_as_one_op(clip.into(), "WardClipKeepNan", vec![2, 5], &values);
    assert!(y[1].is_nan());
    // MXNet 1.9.1: [-0, nan, 0, 6, 6, 0, 6, 0, 2.5, MIN_POSITIVE], the first -0.
    let want = [
        -0.0f32,
        f32::NAN,
        0.0,
        6.0,
        6.0,
        0.0,
        6.0,
        0.0,
        2.5,
        f32::MIN_POSITIVE,
    ];
    for (i, (got, want)) in y.iter().zip(want).enumerate() {
        if i != 1 {
            assert_eq!(got.to_bits(), want.to_bits(), "element {i}: {y:?}");
        }
    }
}

/// MobileNet's block at batch 1: a depthwise convolution, a ReLU, a pointwise
/// convolution. tract drops the batch axis of such a plan (its convolutions become CHW),
/// and the depthwise one still runs on ward's kernel where the CPU has AVX-512F, with the
/// ReLU in its last pass, and gives the definition's outputs.
#[test]
fn a_one_image_depthwise_convolution_and_its_relu_run_as_one_of_wards_ops() {
    let (c, f, side) = (16usize, 24usize, 20usize);
    let depthwise = Conv {
        kernel: vec![3, 3],
        stride: vec![2, 2],
        dilation: vec![1, 1],
        pad: vec![1, 1],
        groups: c,
        bias: false,
    };
    let pointwise = Conv {
        kernel: vec![1, 1],
        stride: vec![1, 1],
        dilation: vec![1, 1],
        pad: vec![0, 0],
        groups: 1,
        bias: false,
    };
    let relu = Activation {
        kind: ActivationKind::Relu,
    };
    let (w1, w2) = (scrambled(c * 9, 31), scrambled(f * c, 32));
    let mut g = Graph::new();
    g.inputs.push(input("x"));
    g.params
        .push(ParamDecl::new("w1", DType::F32, vec![c, 1, 3, 3]));
    g.params
        .push(ParamDecl::new("w2", DType::F32, vec![f, c, 1, 1]));
    let nodes: [(&str, Op, Vec<Source>); 3] = [
        (
            "depthwise",
            depthwise.clone().into(),
            vec![Source::Input(0), Source::Param(0)],
        ),
        ("relu", relu.into(), vec![Source::Node(0, 0)]),
        (
            "pointwise",
            pointwise.clone().into(),
            vec![Source::Node(1, 0), Source::Param(1)],
        ),
    ];
    for (name, op, inputs) in nodes {
        g.nodes.push(Node {
            name: name.into(),
            op,
            inputs,
        });
    }
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(2, 0),
    });
    g.validate().unwrap();
    let named = HashMap::from([
        (
            "w1".to_string(),
            Tensor::from_f32(vec![c, 1, 3, 3], &w1).unwrap(),
        ),
        (
            "w2".to_string(),
            Tensor::from_f32(vec![f, c, 1, 1], &w2).unwrap(),
        ),
    ]);
    let weights = WeightSet::new(&g, named).unwrap();
    let model = Executable::new(g, weights, Arc::new(TractBackend::new(1).unwrap())).unwrap();
    let x = scrambled(c * side * side, 33);
    let out = side / 2;
    let y = if ward_kernels::Isa::has_vector_kernels() {
        run_without_batch_im2col(
            &model,
            "WardDepthwiseConvRelu",
            vec![1, c, side, side],
            &x,
            &[1, f, out, out],
        )
    } else {
        let input = Tensor::from_f32(vec![1, c, side, side], &x).unwrap();
        model.run(&[input]).unwrap().remove(0).to_f32_vec()
    };
    let middle: Vec<f32> = conv_by_hand(&x, [c, side, side], &w1, &depthwise, [c, out, out])
        .into_iter()
        .map(|v| v.max(0.0) as f32)
        .collect();
    assert!(middle.contains(&0.0) && middle.iter().any(|&v| v > 0.0));
    let want = conv_by_hand(&middle, [c, out, out], &w2, &pointwise, [f, out, out]);
    assert_close(&y, &want, "depthwise, relu, pointwise");
}

/// Convolutions run on ward's own kernels where the CPU has AVX-512F (`WardDirectConv`,
/// its weight packed when the plan is built; `WardDepthwiseConv` for one group per
/// input channel; with AVX2 too the depthwise kernel, the planar one on an image's stem
/// and Winograd's), and on tract's elsewhere, with each output the convolution's
/// definition: image by image (large planes), several images at once (small planes),
/// strided, dilated and grouped, and depthwise with one or two outputs per channel over
/// rows wider than the depthwise kernel's blocks, 1×1 on the pointwise kernel
/// (`WardPointwiseConv`), and in one group a sum too shallow (8 channels × 9 taps) or an
/// output too narrow (40 channels) for the direct kernels on the planar one
/// (`WardPlanarConv`, at any stride); grouped, those stay on tract's products; a 3×3
/// stride-1 one in one group over at least 48 tiles of 4×4 outputs on Winograd's
/// (`WardWinogradConv`), whichever of the others would take it.
#[test]
fn convolutions_run_on_wards_own_kernels_where_the_cpu_has_them() {
    // Winograd's, the depthwise kernel and the planar one on an image's stem run with
    // AVX2 too; the others need AVX-512F.
    let (avx512, vector) = (
        std::arch::is_x86_feature_detected!("avx512f"),
        ward_kernels::Isa::has_vector_kernels(),
    );
    let on = |operator: &'static str, runs: bool| if runs { operator } else { "" };
    let direct = on("WardDirectConv", avx512);
    let pointwise = on("WardPointwiseConv", avx512);
    let planar = on("WardPlanarConv", avx512);
    let stem_planar = on("WardPlanarConv", vector);
    let stem = if avx512 { direct } else { stem_planar };
    let depthwise = on("WardDepthwiseConv", vector);
    let winograd = on("WardWinogradConv", vector);
    let cases = [
        // (batch, channels, filters, side, kernel, stride, dilation, pad, groups, operator)
        (
            2usize, 32usize, 72usize, 9usize, 3usize, 2usize, 1usize, 1usize, 1usize, direct,
        ),
        (3, 32, 66, 4, 3, 1, 1, 1, 1, direct),
        (2, 64, 136, 11, 3, 2, 1, 1, 2, direct),
        (1, 32, 65, 10, 3, 1, 2, 2, 1, direct),
        // Too shallow a sum (8 channels × 9 taps) or too narrow an output (40 channels)
        // for the direct kernels runs on the planar one at stride 1 in one group
        // (DenseNet's 128 → 32 layers, dilated and wide rows too)...
        (1, 8, 80, 8, 3, 1, 1, 1, 1, planar),
        (1, 32, 40, 8, 3, 1, 1, 1, 1, planar),
        (2, 128, 32, 7, 3, 1, 1, 1, 1, planar),
        (1, 6, 16, 57, 3, 1, 2, 2, 1, planar),
        // ...strided too (MobileNet's stem), but on tract's products when grouped...
        (1, 32, 40, 9, 3, 2, 1, 1, 1, planar),
        (2, 3, 32, 23, 3, 2, 1, 1, 1, stem_planar),
        (1, 32, 40, 8, 3, 1, 1, 1, 2, ""),
        // ...but an image's stem (3 channels) runs direct at any depth, and without
        // AVX-512 on the planar kernel at any width (SqueezeNet's 3×3, ResNet's 7×7).
        (1, 3, 64, 17, 3, 2, 1, 1, 1, stem),
        (2, 3, 64, 15, 7, 2, 1, 3, 1, stem),
        (2, 32, 32, 9, 3, 1, 1, 1, 32, depthwise),
        (1, 16, 32, 83, 3, 2, 1, 1, 16, depthwise),
        (3, 8, 8, 12, 3, 1, 2, 2, 8, depthwise),
        // 1×1: tract's product at any depth and width, and a convolution that tract's
        // declutter leaves as one (an input over the per-sample threshold, 18.6 MB).
        (2, 24, 40, 9, 1, 1, 1, 0, 1, pointwise),
        (1, 3, 5, 13, 1, 1, 1, 0, 1, pointwise),
        (2, 48, 8, 220, 1, 1, 1, 0, 1, pointwise),
        // A strided one too, after tract's downsampling of its input; not a grouped one.
        (2, 32, 64, 9, 1, 2, 1, 0, 1, pointwise),
        (2, 32, 64, 9, 1, 1, 1, 0, 2, ""),
        // 3×3 at stride 1 over 49 tiles (28², wide enough for the direct kernels), over
        // 64 in lane groups of 4 tile rows that span images (four 14² images, narrow),
        // and unpadded (30² → 28²); but 8 tiles (two 7² images) stay direct, and 16
        // channels in or out are the fewest it takes.
        (1, 32, 72, 28, 3, 1, 1, 1, 1, winograd),
        (4, 16, 40, 14, 3, 1, 1, 1, 1, winograd),
        (1, 24, 16, 30, 3, 1, 1, 0, 1, winograd),
        (2, 32, 72, 7, 3, 1, 1, 1, 1, direct),
        (1, 8, 80, 28, 3, 1, 1, 1, 1, planar),
    ];
    for (n, c, f, side, k, stride, dilation, pad, groups, operator) in cases {
        let op = Conv {
            kernel: vec![k, k],
            stride: vec![stride, stride],
            dilation: vec![dilation, dilation],
            pad: vec![pad, pad],
            groups,
            bias: false,
        };
        let weight_shape = vec![f, c / groups, k, k];
        let weight = scrambled(f * c / groups * k * k, 21);
        let model = conv_model(&op, weight_shape, &weight);
        let shape = vec![n, c, side, side];
        let plan = model.plan(std::slice::from_ref(&shape)).unwrap();
        let operators = plan.operators();
        for own in [
            "WardDirectConv",
            "WardDepthwiseConv",
            "WardPointwiseConv",
            "WardPlanarConv",
            "WardWinogradConv",
        ] {
            assert_eq!(
                operators.iter().any(|op| op == own),
                own == operator,
                "{n}×{c}×{side}² → {f} in {groups} groups: {operators:?}"
            );
        }
        let x = scrambled(n * c * side * side, 22);
        let input = Tensor::from_f32(shape, &x).unwrap();
        let y = plan
            .run(model.stage(&[input.view()]).unwrap())
            .unwrap()
            .remove(0);
        let out = (side + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
        assert_eq!(y.shape(), [n, f, out, out]);
        let y = y.to_f32_vec();
        let image = c * side * side;
        let image_out = f * out * out;
        for sample in 0..n {
            let want = conv_by_hand(
                &x[sample * image..][..image],
                [c, side, side],
                &weight,
                &op,
                [f, out, out],
            );
            // Sums of up to 288 terms within 1e-5 relative; a deeper one's rounding grows
            // with the square root of its terms (1,152 for DenseNet's layer: 2e-5).
            // Winograd's transforms round more: its kernel's bound, 1e-5 per √term.
            let terms = (c / groups * k * k) as f64;
            let tolerance = if operator == winograd && vector {
                1e-5 * terms.sqrt()
            } else {
                1e-5 * (terms / 288.0).max(1.0).sqrt()
            };
            let got = &y[sample * image_out..][..image_out];
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(g) - w).abs() <= tolerance * w.abs().max(1.0),
                    "{n}×{c}×{side}² → {f}, sample {sample}, output {i}: {g} against {w}"
                );
            }
        }
    }
}

/// A timed run gives the plain run's outputs and one time per step of the plan, the
/// convolution's among them.
#[test]
fn a_timed_run_gives_the_outputs_and_a_time_for_each_step() {
    let op = Conv {
        kernel: vec![3, 3],
        stride: vec![1, 1],
        dilation: vec![1, 1],
        pad: vec![1, 1],
        groups: 1,
        bias: false,
    };
    let weight = scrambled(8 * 4 * 9, 41);
    let model = conv_model(&op, vec![8, 4, 3, 3], &weight);
    let shape = vec![2, 4, 10, 10];
    let plan = model.plan(std::slice::from_ref(&shape)).unwrap();
    let input = Tensor::from_f32(shape, &scrambled(2 * 4 * 100, 42)).unwrap();
    let plain = plan.run(model.stage(&[input.view()]).unwrap()).unwrap();
    let (timed, times) = plan
        .run_timed(model.stage(&[input.view()]).unwrap())
        .unwrap();
    assert_eq!(timed[0].to_f32_vec(), plain[0].to_f32_vec());
    let layers = plan.layers();
    assert_eq!(times.len(), layers.len(), "{layers:?}");
    assert!(times.iter().sum::<std::time::Duration>() > std::time::Duration::ZERO);
}

/// A batch norm (with a shift: beta and a mean) and a ReLU that only a 1×1 convolution
/// reads (DenseNet's pre-activation) run inside the convolution's input read where the
/// CPU has AVX-512F (`WardMappedPointwiseConv`), at batch 1 and over a batch, with each
/// output the definition's: `w · max(bn(x), 0) + b`.
#[test]
fn a_batch_norm_and_relu_before_a_pointwise_convolution_run_in_its_input_read() {
    use ward_graph::ops::norm::BatchNorm;
    let (c, f, h, w) = (24usize, 16usize, 6usize, 7usize);
    let mut g = Graph::new();
    g.inputs.push(input("x"));
    let params = [
        ("gamma", scrambled(c, 51)),
        ("beta", scrambled(c, 52)),
        ("mean", scrambled(c, 53)),
        // Variances in [0.5, 1.5).
        ("var", scrambled(c, 54).iter().map(|v| v + 1.0).collect()),
        ("w", scrambled(f * c, 55)),
        ("b", scrambled(f, 56)),
    ];
    let mut named = HashMap::new();
    for (name, values) in &params {
        let shape = match *name {
            "w" => vec![f, c, 1, 1],
            "b" => vec![f],
            _ => vec![c],
        };
        g.params
            .push(ParamDecl::new(*name, DType::F32, shape.clone()));
        named.insert(name.to_string(), Tensor::from_f32(shape, values).unwrap());
    }
    let bn = BatchNorm {
        axis: 1,
        eps: 1e-5,
        fix_gamma: false,
        momentum: 0.9,
        use_global_stats: true,
    };
    g.nodes.push(Node {
        name: "bn".into(),
        op: bn.into(),
        inputs: (0..5)
            .map(|i| {
                if i == 0 {
                    Source::Input(0)
                } else {
                    Source::Param(i - 1)
                }
            })
            .collect(),
    });
    g.nodes.push(Node {
        name: "relu".into(),
        op: Activation {
            kind: ActivationKind::Relu,
        }
        .into(),
        inputs: vec![Source::Node(0, 0)],
    });
    let conv = Conv {
        kernel: vec![1, 1],
        stride: vec![1, 1],
        dilation: vec![1, 1],
        pad: vec![0, 0],
        groups: 1,
        bias: true,
    };
    g.nodes.push(Node {
        name: "conv".into(),
        op: conv.clone().into(),
        inputs: vec![Source::Node(1, 0), Source::Param(4), Source::Param(5)],
    });
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: Source::Node(2, 0),
    });
    g.validate().unwrap();
    let weights = WeightSet::new(&g, named).unwrap();
    let model = Executable::new(g, weights, Arc::new(TractBackend::new(1).unwrap())).unwrap();
    let p = |name: &str| &params.iter().find(|(n, _)| *n == name).unwrap().1;
    for n in [1usize, 3] {
        let shape = vec![n, c, h, w];
        let plan = model.plan(std::slice::from_ref(&shape)).unwrap();
        let operators = plan.operators();
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert!(
                operators.iter().any(|o| o == "WardMappedPointwiseConv"),
                "batch {n}: {operators:?}"
            );
        }
        let x = scrambled(n * c * h * w, 57);
        let input = Tensor::from_f32(shape, &x).unwrap();
        let y = plan
            .run(model.stage(&[input.view()]).unwrap())
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), [n, f, h, w]);
        let mut want = Vec::new();
        for sample in 0..n {
            let image: Vec<f32> = x[sample * c * h * w..][..c * h * w]
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ch = i / (h * w);
                    let normed = (f64::from(v) - f64::from(p("mean")[ch]))
                        / (f64::from(p("var")[ch]) + 1e-5).sqrt()
                        * f64::from(p("gamma")[ch])
                        + f64::from(p("beta")[ch]);
                    normed.max(0.0) as f32
                })
                .collect();
            let sums = conv_by_hand(&image, [c, h, w], p("w"), &conv, [f, h, w]);
            want.extend(
                sums.iter()
                    .enumerate()
                    .map(|(i, s)| s + f64::from(p("b")[i / (h * w)])),
            );
        }
        assert_within(&y.to_f32_vec(), &want, &format!("batch {n}"), 1e-4);
    }
}
