use proptest::prelude::*;
use ward_graph::interp::conv::{convolution, ConvParams};
use ward_graph::interp::Array;
use ward_kernels::conv::{Conv2d, ConvWindow};
use ward_kernels::depthwise;

use crate::{assert_close, random_values, seeded_rng};

fn array(shape: &[usize], data: &[f32]) -> Array {
    Array {
        shape: shape.to_vec(),
        data: data.iter().map(|&v| v as f64).collect(),
    }
}

/// A depthwise geometry: `channels` groups of one input channel and `multiplier` output
/// channels each.
fn cases() -> impl Strategy<Value = ([usize; 4], ConvWindow)> {
    (
        1usize..4,
        1usize..6,
        1usize..3,
        (1usize..5, 1usize..5),
        (1usize..4, 1usize..4),
        (0usize..3, 0usize..3),
        (1usize..3, 1usize..3),
        // Small planes take the scalar tail only; wide ones every block width.
        prop_oneof![
            2 => (1usize..12, 1usize..12),
            1 => (5usize..20, 60usize..180),
        ],
    )
        .prop_map(
            |(batch, channels, multiplier, kernel, stride, pad, dilation, (h, w))| {
                (
                    [batch, channels, h, w],
                    ConvWindow {
                        out_channels: channels * multiplier,
                        kernel: [kernel.0, kernel.1],
                        stride: [stride.0, stride.1],
                        pad: [pad.0, pad.1],
                        dilation: [dilation.0, dilation.1],
                        groups: channels,
                    },
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Every output equals the interpreter's convolution (with and without a bias, and
    /// through a ReLU), at any stride, pad, dilation and channel multiplier.
    #[test]
    fn depthwise_matches_the_interpreter((input, window) in cases(), seed in any::<u64>()) {
        let Ok(g) = Conv2d::new(input, window) else {
            return Ok(()); // the kernel is larger than the padded input
        };
        let mut rng = seeded_rng(seed);
        let x = random_values(&mut rng, g.input_len());
        let w = random_values(&mut rng, g.weight_len());
        let bias = random_values(&mut rng, window.out_channels);
        let wshape = [window.out_channels, 1, window.kernel[0], window.kernel[1]];
        let params = ConvParams {
            kernel: window.kernel.to_vec(),
            stride: window.stride.to_vec(),
            dilation: window.dilation.to_vec(),
            pad: window.pad.to_vec(),
            groups: window.groups,
        };
        for (bias, relu) in [(Some(&bias[..]), false), (None, false), (Some(&bias[..]), true)] {
            let mut want = convolution(&array(&input, &x), &array(&wshape, &w),
                bias.map(|b| array(&[b.len()], b)).as_ref(), &params).unwrap();
            if relu {
                want.data.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let mut y = vec![f32::NAN; g.output_len()];
            depthwise::forward(&g, &x, &w, bias, relu, &mut y).unwrap();
            assert_close("y", &y, &want.data, 1e-5);
        }
    }
}

/// Arguments a value short or long are refused before anything is written.
#[test]
fn wrong_lengths_are_refused_before_anything_is_written() {
    let g = Conv2d::new(
        [2, 3, 6, 6],
        ConvWindow {
            out_channels: 3,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 3,
        },
    )
    .unwrap();
    let (x, w, b) = (
        vec![1.0; g.input_len()],
        vec![1.0; g.weight_len()],
        vec![1.0; 3],
    );
    let mut y = vec![7.0; g.output_len()];
    for (x, w, b, what) in [
        (&x[1..], &w[..], &b[..], "x"),
        (&x[..], &w[1..], &b[..], "w"),
        (&x[..], &w[..], &b[1..], "bias"),
    ] {
        let err = depthwise::forward(&g, x, w, Some(b), false, &mut y).unwrap_err();
        assert!(err.to_string().contains(&format!(": {what} has")), "{err}");
    }
    let mut short = vec![7.0; g.output_len() - 1];
    assert!(depthwise::forward(&g, &x, &w, None, false, &mut short).is_err());
    assert!(y.iter().chain(&short).all(|&v| v == 7.0));
}
