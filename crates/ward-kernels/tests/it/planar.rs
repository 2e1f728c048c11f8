use proptest::prelude::*;
use ward_graph::interp::conv::{convolution, ConvParams};
use ward_graph::interp::Array;
use ward_kernels::conv::{Conv2d, ConvWindow};
use ward_kernels::planar::{self, PlanarWeights};

use crate::{assert_close, random_values, seeded_rng};

fn array(shape: &[usize], data: &[f32]) -> Array {
    Array {
        shape: shape.to_vec(),
        data: data.iter().map(|&v| v as f64).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Every output equals the interpreter's 1×1 convolution (with and without a bias,
    /// and through a ReLU) for any batch, channel counts (partial panels included) and
    /// plane (every tile width, and blocks of pixel columns for deep inputs).
    #[test]
    fn pointwise_matches_the_interpreter(
        batch in 1usize..4,
        // Deep inputs (blocks of 48 pixel columns) with few outputs, so that the
        // interpreter's sums stay cheap in a debug build.
        (inp, out) in prop_oneof![3 => (1usize..40, 1usize..40), 1 => (600usize..1100, 1usize..10)],
        (h, w) in prop_oneof![3 => (1usize..12, 1usize..12), 1 => (1usize..3, 40usize..90)],
        seed in any::<u64>(),
    ) {
        let mut rng = seeded_rng(seed);
        let pixels = h * w;
        let x = random_values(&mut rng, batch * inp * pixels);
        let wv = random_values(&mut rng, out * inp);
        let bias = random_values(&mut rng, out);
        let packed = PlanarWeights::pack(&wv, out, inp).unwrap();
        let params = ConvParams {
            kernel: vec![1, 1],
            stride: vec![1, 1],
            dilation: vec![1, 1],
            pad: vec![0, 0],
            groups: 1,
        };
        for (bias, relu) in [(Some(&bias[..]), false), (None, false), (Some(&bias[..]), true)] {
            let mut want = convolution(&array(&[batch, inp, h, w], &x),
                &array(&[out, inp, 1, 1], &wv),
                bias.map(|b| array(&[b.len()], b)).as_ref(), &params).unwrap();
            if relu {
                want.data.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let mut y = vec![f32::NAN; batch * out * pixels];
            planar::forward(batch, pixels, &x, &packed, bias, relu, &mut y).unwrap();
            // Sums of up to 1,100 terms in [-1, 1): 1e-5 relative per summed term.
            assert_close("y", &y, &want.data, 1e-5 * (inp as f64).sqrt().max(1.0));
        }
        // Through an input map (a batch norm and a ReLU before the convolution): the
        // interpreter's convolution of the mapped values.
        let scale = random_values(&mut rng, inp);
        let shift = random_values(&mut rng, inp);
        let floor = vec![0.0f32; inp];
        let mapped: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| (v * scale[i / pixels % inp] + shift[i / pixels % inp]).max(0.0))
            .collect();
        let want = convolution(&array(&[batch, inp, h, w], &mapped),
            &array(&[out, inp, 1, 1], &wv), Some(&array(&[out], &bias)), &params).unwrap();
        let input = planar::MappedInput {
            x: &x,
            map: planar::InputMap { scale: &scale, shift: Some(&shift), floor: &floor },
        };
        let mut y = vec![f32::NAN; batch * out * pixels];
        planar::forward_mapped(batch, pixels, input, &packed, Some(&bias), false, &mut y).unwrap();
        assert_close("mapped y", &y, &want.data, 1e-5 * (inp as f64).sqrt().max(1.0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A convolution of any kernel, stride, dilation and padding on zero-padded planes
    /// split by column phase: every output equals the interpreter's (with and without a
    /// bias, and through a ReLU), over planes whose rows take every tile width.
    #[test]
    fn planar_convolutions_match_the_interpreter(
        batch in 1usize..3,
        inp in 1usize..12,
        out in 1usize..20,
        kernel in (1usize..4, 1usize..4),
        pad in (0usize..3, 0usize..3),
        stride in (1usize..4, 1usize..4),
        dilation in (1usize..3, 1usize..3),
        (h, w) in prop_oneof![3 => (1usize..10, 1usize..10), 1 => (1usize..4, 30usize..110)],
        seed in any::<u64>(),
    ) {
        let window = ConvWindow {
            out_channels: out,
            kernel: [kernel.0, kernel.1],
            stride: [stride.0, stride.1],
            pad: [pad.0, pad.1],
            dilation: [dilation.0, dilation.1],
            groups: 1,
        };
        let Ok(g) = Conv2d::new([batch, inp, h, w], window) else {
            return Ok(()); // the kernel is larger than the padded input
        };
        let mut rng = seeded_rng(seed);
        let x = random_values(&mut rng, g.input_len());
        let wv = random_values(&mut rng, g.weight_len());
        let bias = random_values(&mut rng, out);
        let taps = kernel.0 * kernel.1;
        let packed = PlanarWeights::pack(&wv, out, inp * taps).unwrap();
        let params = ConvParams {
            kernel: window.kernel.to_vec(),
            stride: window.stride.to_vec(),
            dilation: window.dilation.to_vec(),
            pad: window.pad.to_vec(),
            groups: 1,
        };
        for (bias, relu) in [(Some(&bias[..]), false), (None, false), (Some(&bias[..]), true)] {
            let mut want = convolution(&array(&[batch, inp, h, w], &x),
                &array(&[out, inp, kernel.0, kernel.1], &wv),
                bias.map(|b| array(&[b.len()], b)).as_ref(), &params).unwrap();
            if relu {
                want.data.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let mut y = vec![f32::NAN; g.output_len()];
            planar::forward_conv(&g, &x, &packed, bias, relu, &mut y).unwrap();
            assert_close("y", &y, &want.data, 1e-5 * ((inp * taps) as f64).sqrt().max(1.0));
        }
    }
}

/// A grouped convolution, or a weight laid out for another geometry, is refused before
/// anything is written.
#[test]
fn planar_refuses_what_it_does_not_compute() {
    let window = ConvWindow {
        out_channels: 4,
        kernel: [3, 3],
        stride: [1, 1],
        pad: [1, 1],
        dilation: [1, 1],
        groups: 1,
    };
    let g = Conv2d::new([1, 2, 5, 5], window).unwrap();
    let x = vec![1.0; g.input_len()];
    let w = PlanarWeights::pack(&[1.0; 4 * 18], 4, 18).unwrap();
    let mut y = vec![7.0; g.output_len()];
    let grouped = Conv2d::new(
        [1, 2, 5, 5],
        ConvWindow {
            groups: 2,
            ..window
        },
    )
    .unwrap();
    let err = planar::forward_conv(&grouped, &x, &w, None, false, &mut y).unwrap_err();
    assert!(err.to_string().contains("takes one group"), "{err}");
    assert!(y.iter().all(|&v| v == 7.0));
    let narrow = PlanarWeights::pack(&[1.0; 4 * 9], 4, 9).unwrap();
    let err = planar::forward_conv(&g, &x, &narrow, None, false, &mut y).unwrap_err();
    assert!(err.to_string().contains("4 channels × 9 terms"), "{err}");
    let err = planar::forward_conv(&g, &x[1..], &w, None, false, &mut y).unwrap_err();
    assert!(err.to_string().contains(": x has"), "{err}");
    assert!(y.iter().all(|&v| v == 7.0));
    planar::forward_conv(&g, &x, &w, None, false, &mut y).unwrap();
    // The centre of a 5×5 plane of ones under a 3×3 kernel of ones over 2 channels: 18.
    assert_eq!(y[12], 18.0);
    assert_eq!(y[0], 8.0);
}

/// Arguments a value short or long, and a weight of no channels, are refused before
/// anything is written.
#[test]
fn wrong_lengths_are_refused_before_anything_is_written() {
    let (batch, inp, out, pixels) = (2, 3, 5, 7);
    let w = PlanarWeights::pack(&vec![1.0; out * inp], out, inp).unwrap();
    let x = vec![1.0; batch * inp * pixels];
    let b = vec![1.0; out];
    let mut y = vec![7.0; batch * out * pixels];
    for (x, b, what) in [(&x[1..], &b[..], "x"), (&x[..], &b[1..], "bias")] {
        let err = planar::forward(batch, pixels, x, &w, Some(b), false, &mut y).unwrap_err();
        assert!(err.to_string().contains(&format!(": {what} has")), "{err}");
    }
    let mut short = vec![7.0; batch * out * pixels - 1];
    let err = planar::forward(batch, pixels, &x, &w, None, true, &mut short).unwrap_err();
    assert!(err.to_string().contains(": y has"), "{err}");
    assert!(y.iter().chain(&short).all(|&v| v == 7.0));
    let err = PlanarWeights::pack(&[1.0; 14], out, inp).unwrap_err();
    assert!(err.to_string().contains(": w has 14 elements"), "{err}");
    assert!(PlanarWeights::pack(&[], 0, 3).is_err());
    assert!(planar::forward(usize::MAX, 2, &x, &w, None, false, &mut y).is_err());
}
