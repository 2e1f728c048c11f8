use proptest::prelude::*;
use ward_graph::interp::conv::{convolution, ConvParams};
use ward_graph::interp::Array;
use ward_kernels::conv::{Conv2d, ConvWindow};

use crate::{assert_close, dot, random_values, seeded_rng};

fn array(shape: &[usize], data: &[f32]) -> Array {
    Array {
        shape: shape.to_vec(),
        data: data.iter().map(|&v| v as f64).collect(),
    }
}

#[derive(Debug, Clone)]
struct Case {
    input: [usize; 4],
    window: ConvWindow,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        // Up to 5 images: several go into one matrix product, with a shorter last one.
        1usize..6,
        1usize..4,
        1usize..4,
        1usize..4,
        (1usize..4, 1usize..4),
        (1usize..3, 1usize..3),
        (0usize..3, 0usize..3),
        (1usize..3, 1usize..3),
        // Planes of up to 81 pixels put several images into each product; larger ones
        // (up to 625) make the weight gradient sum its images over several products.
        prop_oneof![
            3 => (1usize..10, 1usize..10),
            1 => (14usize..26, 14usize..26),
        ],
    )
        .prop_map(
            |(batch, groups, cg, og, kernel, stride, pad, dilation, (h, w))| Case {
                input: [batch, groups * cg, h, w],
                window: ConvWindow {
                    out_channels: groups * og,
                    kernel: [kernel.0, kernel.1],
                    stride: [stride.0, stride.1],
                    pad: [pad.0, pad.1],
                    dilation: [dilation.0, dilation.1],
                    groups,
                },
            },
        )
}

fn params(w: &ConvWindow) -> ConvParams {
    ConvParams {
        kernel: w.kernel.to_vec(),
        stride: w.stride.to_vec(),
        dilation: w.dilation.to_vec(),
        pad: w.pad.to_vec(),
        groups: w.groups,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The forward pass equals the interpreter's; the data and weight gradients are the
    /// adjoints of the forward map (⟨conv(x), dy⟩ = ⟨x, dx⟩ = ⟨w, dw⟩), and the bias
    /// gradient sums dy.
    #[test]
    fn conv2d_matches_the_interpreter(case in cases(), seed in any::<u64>()) {
        let Ok(g) = Conv2d::new(case.input, case.window) else {
            // The kernel is larger than the padded input: the interpreter refuses too.
            let x = Array::zeros(case.input.to_vec()).unwrap();
            let wshape = [case.window.out_channels, case.input[1] / case.window.groups,
                case.window.kernel[0], case.window.kernel[1]];
            let w = Array::zeros(wshape.to_vec()).unwrap();
            prop_assert!(convolution(&x, &w, None, &params(&case.window)).is_err());
            return Ok(());
        };
        let mut rng = seeded_rng(seed);
        let x = random_values(&mut rng, g.input_len());
        let w = random_values(&mut rng, g.weight_len());
        let bias = random_values(&mut rng, case.window.out_channels);
        let dy = random_values(&mut rng, g.output_len());
        let wshape = [case.window.out_channels, case.input[1] / case.window.groups,
            case.window.kernel[0], case.window.kernel[1]];
        let want = convolution(&array(&case.input, &x), &array(&wshape, &w),
            Some(&array(&[bias.len()], &bias)), &params(&case.window)).unwrap();
        prop_assert_eq!(&want.shape, &vec![case.input[0], case.window.out_channels, g.out_h(), g.out_w()]);
        {
            let mut y = vec![f32::NAN; g.output_len()];
            g.forward(&x, &w, Some(&bias), &mut y).unwrap();
            assert_close("y", &y, &want.data, 1e-5);

            let mut y0 = vec![0.0; g.output_len()];
            g.forward(&x, &w, None, &mut y0).unwrap();
            let forward = dot(&y0, &dy);
            let mut dx = vec![f32::NAN; g.input_len()];
            g.backward_data(&dy, &w, &mut dx).unwrap();
            let mut dw = vec![f32::NAN; g.weight_len()];
            let mut db = vec![f32::NAN; bias.len()];
            g.backward_weight(&x, &dy, &mut dw, Some(&mut db)).unwrap();
            let scale = forward.abs().max(1.0);
            prop_assert!((dot(&x, &dx) - forward).abs() <= 1e-4 * scale, "dx: {} vs {forward}", dot(&x, &dx));
            prop_assert!((dot(&w, &dw) - forward).abs() <= 1e-4 * scale, "dw: {} vs {forward}", dot(&w, &dw));
            let plane = g.out_h() * g.out_w();
            for (o, &d) in db.iter().enumerate() {
                let want: f64 = dy.chunks(plane).skip(o).step_by(case.window.out_channels)
                    .flatten().map(|&v| v as f64).sum();
                prop_assert!((d as f64 - want).abs() <= 1e-4 * want.abs().max(1.0));
            }
        }
    }
}

#[test]
fn wrong_lengths_are_refused_before_anything_is_written() {
    let g = Conv2d::new(
        [2, 3, 5, 5],
        ConvWindow {
            out_channels: 4,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
        },
    )
    .unwrap();
    let x = vec![0.0; g.input_len()];
    let w = vec![0.0; g.weight_len()];
    let mut y = vec![7.0; g.output_len() - 1];
    let err = g.forward(&x, &w, None, &mut y).unwrap_err();
    assert!(err.to_string().contains("y has"), "{err}");
    assert!(y.iter().all(|&v| v == 7.0));
    let err = g
        .forward(&x[1..], &w, None, &mut vec![0.0; g.output_len()])
        .unwrap_err();
    assert!(err.to_string().contains("x has"), "{err}");
}

#[test]
fn impossible_geometries_are_refused() {
    let window = ConvWindow {
        out_channels: 4,
        kernel: [3, 3],
        stride: [1, 1],
        pad: [0, 0],
        dilation: [1, 1],
        groups: 1,
    };
    assert!(
        Conv2d::new([1, 3, 2, 5], window).is_err(),
        "kernel taller than input"
    );
    assert!(Conv2d::new(
        [1, 3, 5, 5],
        ConvWindow {
            groups: 2,
            ..window
        }
    )
    .is_err());
    assert!(Conv2d::new(
        [1, 3, 5, 5],
        ConvWindow {
            stride: [0, 1],
            ..window
        }
    )
    .is_err());
    assert!(
        Conv2d::new([usize::MAX, 3, 5, 5], window).is_err(),
        "overflow"
    );
}

/// A weight too large for per-thread partial gradients (2.6 M values for four partials),
/// so its gradient is summed in runs of images; 5 images of 6×6 make two runs.
fn large_weight() -> Conv2d {
    Conv2d::new(
        [5, 96, 6, 6],
        ConvWindow {
            out_channels: 768,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 2,
        },
    )
    .unwrap()
}

#[test]
fn a_large_weight_gradient_summed_in_runs_is_the_sum_over_the_batch() {
    let g = large_weight();
    let mut rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    );
    let x = random_values(&mut rng, g.input_len());
    let dy = random_values(&mut rng, g.output_len());
    let mut dw = vec![f32::NAN; g.weight_len()];
    g.backward_weight(&x, &dy, &mut dw, None).unwrap();
    let (c, o, h, w) = (96usize, 768usize, 6usize, 6usize);
    let (cg, og) = (c / 2, o / 2);
    for oc in (0..o).step_by(37) {
        let group = oc / og;
        for ic in 0..cg {
            for (ky, kx) in [(0usize, 0usize), (1, 1), (2, 1)] {
                let mut want = 0.0f64;
                for n in 0..5 {
                    for oy in 0..h {
                        for ox in 0..w {
                            let (iy, ix) = (oy + ky, ox + kx);
                            if iy < 1 || ix < 1 || iy > h || ix > w {
                                continue;
                            }
                            let xv = x[((n * c + group * cg + ic) * h + iy - 1) * w + ix - 1];
                            want += f64::from(xv) * f64::from(dy[((n * o + oc) * h + oy) * w + ox]);
                        }
                    }
                }
                let got = f64::from(dw[((oc * cg + ic) * 3 + ky) * 3 + kx]);
                assert!(
                    (got - want).abs() <= 1e-5 * 180.0,
                    "dw[{oc}, {ic}, {ky}, {kx}]: {got} vs {want}"
                );
            }
        }
    }
}

/// The weight gradient sums images in fixed groups or fixed runs, and every product
/// covers a number of images fixed by the geometry: all three passes give the same bits
/// at any thread count, for a small weight and a large one.
#[test]
fn no_pass_depends_on_the_thread_count() {
    let small = Conv2d::new(
        [7, 4, 9, 9],
        ConvWindow {
            out_channels: 6,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 2,
        },
    )
    .unwrap();
    // Small planes: the direct kernel over several images, split by thread.
    let small_planes = square_stride_1([7, 40, 4, 4], 40, 3);
    for g in [small, small_planes, large_weight()] {
        same_bits_at_any_thread_count(&g);
    }
}

fn same_bits_at_any_thread_count(g: &Conv2d) {
    let mut rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    );
    let x = random_values(&mut rng, g.input_len());
    let w = random_values(&mut rng, g.weight_len());
    let dy = random_values(&mut rng, g.output_len());
    let grads = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut y = vec![0.0; g.output_len()];
            g.forward(&x, &w, None, &mut y).unwrap();
            let mut dx = vec![0.0; g.input_len()];
            g.backward_data(&dy, &w, &mut dx).unwrap();
            let mut dw = vec![0.0; g.weight_len()];
            g.backward_weight(&x, &dy, &mut dw, None).unwrap();
            [y, dx, dw].concat()
        })
    };
    let one = grads(1);
    for threads in [2, 3, 5] {
        assert!(
            one.iter()
                .zip(grads(threads))
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{threads} threads"
        );
    }
}

/// Random geometries: `cg` input and `og` output channels per group (1 or 2 groups), up
/// to 4 images, kernels up to 3×3, strides and dilations up to 2, pads below `pads`,
/// planes of 3 to `sides − 1` on a side; `None` where the dilated kernel does not fit.
fn geometries(
    cg: std::ops::Range<usize>,
    og: std::ops::Range<usize>,
    pads: usize,
    sides: usize,
) -> impl Strategy<Value = Option<Conv2d>> {
    (
        (1usize..5, 1usize..3, cg, og),
        (1usize..4, 1usize..4),
        (1usize..3, 1usize..3),
        (0..pads, 0..pads),
        (1usize..3, 1usize..3),
        (3..sides, 3..sides),
    )
        .prop_map(
            |((batch, groups, cg, og), kernel, stride, pad, dilation, (h, w))| {
                Conv2d::new(
                    [batch, groups * cg, h, w],
                    ConvWindow {
                        out_channels: groups * og,
                        kernel: [kernel.0, kernel.1],
                        stride: [stride.0, stride.1],
                        pad: [pad.0, pad.1],
                        dilation: [dilation.0, dilation.1],
                        groups,
                    },
                )
                .ok()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Forward and (strided) data gradient on ward's own kernels (on a CPU that has
    /// them: the direct kernel image by image or, for planes below
    /// `MIN_DIRECT_PIXELS`, over several images at once, and the panel product) give the
    /// matrix crate's bits: ragged planes, strides, pads, dilations and groups.
    #[test]
    fn own_kernels_give_the_matrix_crates_bits(
        g in geometries(1..20, 1..40, 2, 20),
        seed in any::<u64>(),
    ) {
        let Some(g) = g else {
            return Ok(());
        };
        let mut rng = seeded_rng(seed);
        let x = random_values(&mut rng, g.input_len());
        let wt = random_values(&mut rng, g.weight_len());
        let dy = random_values(&mut rng, g.output_len());
        let run = |g: &Conv2d| {
            let mut y = vec![f32::NAN; g.output_len()];
            g.forward(&x, &wt, None, &mut y).unwrap();
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(&g), run(&g.with_matrix_crate_only()));
        // The data gradient of a stride-1 convolution may sum its terms in another order
        // (the direct kernel): it is held to the terms in `the_gradients_are_the_sums_of_their_terms`.
        if g.stride != [1, 1] {
            let mut dx = vec![f32::NAN; g.input_len()];
            g.backward_data(&dy, &wt, &mut dx).unwrap();
            let mut want = vec![f32::NAN; g.input_len()];
            g.with_matrix_crate_only().backward_data(&dy, &wt, &mut want).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&dx), bits(&want));
        }
    }

    /// The weight and data gradients, on ward's direct kernels (where the CPU has them)
    /// and on the matrix crate's products, against the sums in `f64`: within 1e-5 of the
    /// sum of the terms' magnitudes, element by element.
    #[test]
    fn the_gradients_are_the_sums_of_their_terms(
        g in geometries(1..6, 1..40, 3, 40),
        seed in any::<u64>(),
    ) {
        let Some(g) = g else {
            return Ok(());
        };
        let (batch, groups, h, w) = (g.batch, g.groups, g.in_h, g.in_w);
        let (cg, og) = (g.in_channels / groups, g.out_channels / groups);
        let ([kh, kw], [sy, sx], [py, px], [dil_y, dil_x]) = (g.kernel, g.stride, g.pad, g.dilation);
        let mut rng = seeded_rng(seed);
        let x = random_values(&mut rng, g.input_len());
        let dy = random_values(&mut rng, g.output_len());
        let wt = random_values(&mut rng, g.weight_len());
        // Both paths: the one this CPU takes, and the matrix crate's, which a CPU without
        // AVX-512 takes.
        let grads: Vec<(Vec<f32>, Vec<f32>)> = [g, g.with_matrix_crate_only()]
            .iter()
            .map(|path| {
                let mut dw = vec![f32::NAN; g.weight_len()];
                path.backward_weight(&x, &dy, &mut dw, None).unwrap();
                let mut dx = vec![f32::NAN; g.input_len()];
                path.backward_data(&dy, &wt, &mut dx).unwrap();
                (dw, dx)
            })
            .collect();
        let (oh, ow) = (g.out_h(), g.out_w());
        // dx's sums and magnitudes, term by term.
        let mut dx_sum = vec![0.0f64; g.input_len()];
        let mut dx_magnitude = vec![0.0f64; g.input_len()];
        let mut i = 0;
        for gi in 0..groups {
            for o in 0..og {
                for c in 0..cg {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let (mut sum, mut magnitude) = (0.0f64, 0.0f64);
                            for n in 0..batch {
                                for oy in 0..oh {
                                    for ox in 0..ow {
                                        let iy = (oy * sy + ky * dil_y) as isize - py as isize;
                                        let ix = (ox * sx + kx * dil_x) as isize - px as isize;
                                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                            continue;
                                        }
                                        let plane = n * groups * cg + gi * cg + c;
                                        let at = (plane * h + iy as usize) * w + ix as usize;
                                        let xv = x[at] as f64;
                                        let d = dy[((n * groups * og + gi * og + o) * oh + oy) * ow + ox] as f64;
                                        sum += xv * d;
                                        magnitude += (xv * d).abs();
                                        let wv = wt[i] as f64;
                                        dx_sum[at] += wv * d;
                                        dx_magnitude[at] += (wv * d).abs();
                                    }
                                }
                            }
                            for (dw, _) in &grads {
                                prop_assert!((dw[i] as f64 - sum).abs() <= 1e-5 * magnitude.max(1e-30),
                                    "dw[{i}] = {} against {sum} (terms {magnitude})", dw[i]);
                            }
                            i += 1;
                        }
                    }
                }
            }
        }
        for (_, dx) in &grads {
            for (at, &v) in dx.iter().enumerate() {
                prop_assert!((v as f64 - dx_sum[at]).abs() <= 1e-5 * dx_magnitude[at].max(1e-30),
                    "dx[{at}] = {v} against {} (terms {})", dx_sum[at], dx_magnitude[at]);
            }
        }
    }
}

/// Layers deeper than one slice of the sums (24 channels × 25 taps: three slices): the direct
/// kernel, which adds each slice's sum to the tile as the slice ends, gives the matrix
/// crate's bits on a plane it takes image by image and on one it takes with others.
#[test]
fn deep_layers_give_the_matrix_crates_bits() {
    for side in [7, 3] {
        let g = square_stride_1([3, 24, side, side], 40, 5);
        let mut rng = seeded_rng(side as u64);
        let x = random_values(&mut rng, g.input_len());
        let w = random_values(&mut rng, g.weight_len());
        let run = |g: &Conv2d| {
            let mut y = vec![f32::NAN; g.output_len()];
            g.forward(&x, &w, None, &mut y).unwrap();
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(&g), run(&g.with_matrix_crate_only()), "{side}×{side}");
    }
}

/// A convolution of `input` with a `kernel × kernel` window at stride 1, padded to keep
/// the plane's size, one group.
fn square_stride_1(input: [usize; 4], out_channels: usize, kernel: usize) -> Conv2d {
    let window = ConvWindow {
        out_channels,
        kernel: [kernel, kernel],
        stride: [1, 1],
        pad: [kernel / 2, kernel / 2],
        dilation: [1, 1],
        groups: 1,
    };
    Conv2d::new(input, window).unwrap()
}
