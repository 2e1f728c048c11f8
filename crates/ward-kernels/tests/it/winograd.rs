use proptest::prelude::*;
use ward_graph::interp::conv::{convolution, ConvParams};
use ward_graph::interp::Array;
use ward_kernels::conv::{Conv2d, ConvWindow};
use ward_kernels::winograd::{self, WinogradWeights, BLOCK_TILES};

use crate::{assert_close, random_values, seeded_rng};

fn array(shape: &[usize], data: &[f32]) -> Array {
    Array {
        shape: shape.to_vec(),
        data: data.iter().map(|&v| v as f64).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every output equals the interpreter's 3×3 stride-1 convolution (with and without a
    /// bias, and through a ReLU) within 1e-5 relative per summed term, for any batch,
    /// channel counts, padding and plane: tiles cut by the image's edge, lane groups
    /// partly filled, and blocks of tiles that span images (more than one block for the
    /// larger planes).
    #[test]
    fn winograd_matches_the_interpreter(
        batch in 1usize..4,
        inp in 1usize..24,
        out in 1usize..20,
        pad in (0usize..3, 0usize..3),
        (h, w) in prop_oneof![3 => (1usize..14, 1usize..14), 1 => (17usize..30, 17usize..30)],
        seed in any::<u64>(),
    ) {
        let window = ConvWindow {
            out_channels: out,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [pad.0, pad.1],
            dilation: [1, 1],
            groups: 1,
        };
        let Ok(g) = Conv2d::new([batch, inp, h, w], window) else {
            return Ok(()); // the kernel is larger than the padded input
        };
        prop_assert!(winograd::covers(&g));
        let mut rng = seeded_rng(seed);
        let x = random_values(&mut rng, g.input_len());
        let wv = random_values(&mut rng, g.weight_len());
        let bias = random_values(&mut rng, out);
        let packed = WinogradWeights::pack(&wv, out, inp).unwrap();
        let params = ConvParams {
            kernel: vec![3, 3],
            stride: vec![1, 1],
            dilation: vec![1, 1],
            pad: window.pad.to_vec(),
            groups: 1,
        };
        for (bias, relu) in [(Some(&bias[..]), false), (None, false), (Some(&bias[..]), true)] {
            let mut want = convolution(&array(&[batch, inp, h, w], &x),
                &array(&[out, inp, 3, 3], &wv),
                bias.map(|b| array(&[b.len()], b)).as_ref(), &params).unwrap();
            if relu {
                want.data.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let mut y = vec![f32::NAN; g.output_len()];
            winograd::forward(&g, &x, &packed, bias, relu, &mut y).unwrap();
            assert_close("y", &y, &want.data, 1e-5 * ((inp * 9) as f64).sqrt());
        }
    }
}

/// Deep layers as ResNet's (256 channels in, a block of tiles over several images) stay
/// within the same bound: the transforms scale inputs by up to 100 before the products.
#[test]
fn deep_layers_stay_within_the_bound() {
    for (input, out) in [([5, 256, 14, 14], 8), ([1, 64, 56, 56], 8)] {
        let window = ConvWindow {
            out_channels: out,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
        };
        let g = Conv2d::new(input, window).unwrap();
        let (rows, cols) = winograd::tiles(&g);
        // The first in blocks that span both images, the second in more than one block.
        assert!(
            rows * cols < BLOCK_TILES && input[0] * rows * cols > BLOCK_TILES / 2
                || rows * cols > BLOCK_TILES,
            "{input:?}"
        );
        let mut rng = seeded_rng(input[1] as u64);
        let x = random_values(&mut rng, g.input_len());
        let wv = random_values(&mut rng, g.weight_len());
        let packed = WinogradWeights::pack(&wv, out, input[1]).unwrap();
        let params = ConvParams {
            kernel: vec![3, 3],
            stride: vec![1, 1],
            dilation: vec![1, 1],
            pad: vec![1, 1],
            groups: 1,
        };
        let want = convolution(
            &array(&input, &x),
            &array(&[out, input[1], 3, 3], &wv),
            None,
            &params,
        )
        .unwrap();
        let mut y = vec![f32::NAN; g.output_len()];
        winograd::forward(&g, &x, &packed, None, false, &mut y).unwrap();
        assert_close("y", &y, &want.data, 1e-5 * ((input[1] * 9) as f64).sqrt());
        let worst = y
            .iter()
            .zip(&want.data)
            .map(|(&a, &b)| (a as f64 - b).abs() / b.abs().max(1.0))
            .fold(0.0, f64::max);
        eprintln!("{input:?}: worst error {worst:.2e}");
    }
}
