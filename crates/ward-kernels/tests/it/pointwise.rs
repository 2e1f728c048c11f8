use proptest::prelude::*;
use ward_graph::interp::conv::{convolution, ConvParams};
use ward_graph::interp::Array;
use ward_kernels::pointwise::{self, PointwiseWeights};

use crate::{assert_close, random_values, seeded_rng};

fn array(shape: &[usize], data: &[f32]) -> Array {
    Array {
        shape: shape.to_vec(),
        data: data.iter().map(|&v| v as f64).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Every output equals the interpreter's 1×1 convolution (with and without a bias,
    /// and through a ReLU) for any batch, channel counts (partial panels included) and
    /// plane (every tile width, and blocks of pixel columns for deep inputs).
    #[test]
    fn pointwise_matches_the_interpreter(
        batch in 1usize..4,
        inp in prop_oneof![3 => 1usize..40, 1 => 600usize..1100],
        out in 1usize..40,
        (h, w) in prop_oneof![3 => (1usize..12, 1usize..12), 1 => (1usize..4, 40usize..130)],
        seed in any::<u64>(),
    ) {
        let mut rng = seeded_rng(seed);
        let pixels = h * w;
        let x = random_values(&mut rng, batch * inp * pixels);
        let wv = random_values(&mut rng, out * inp);
        let bias = random_values(&mut rng, out);
        let packed = PointwiseWeights::pack(&wv, out, inp).unwrap();
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
            pointwise::forward(batch, pixels, &x, &packed, bias, relu, &mut y).unwrap();
            // Sums of up to 1,100 terms in [-1, 1): 1e-5 relative per summed term.
            assert_close("y", &y, &want.data, 1e-5 * (inp as f64).sqrt().max(1.0));
        }
    }
}

/// Arguments a value short or long, and a weight of no channels, are refused before
/// anything is written.
#[test]
fn wrong_lengths_are_refused_before_anything_is_written() {
    let (batch, inp, out, pixels) = (2, 3, 5, 7);
    let w = PointwiseWeights::pack(&vec![1.0; out * inp], out, inp).unwrap();
    let x = vec![1.0; batch * inp * pixels];
    let b = vec![1.0; out];
    let mut y = vec![7.0; batch * out * pixels];
    for (x, b, what) in [(&x[1..], &b[..], "x"), (&x[..], &b[1..], "bias")] {
        let err = pointwise::forward(batch, pixels, x, &w, Some(b), false, &mut y).unwrap_err();
        assert!(err.to_string().contains(&format!(": {what} has")), "{err}");
    }
    let mut short = vec![7.0; batch * out * pixels - 1];
    let err = pointwise::forward(batch, pixels, &x, &w, None, true, &mut short).unwrap_err();
    assert!(err.to_string().contains(": y has"), "{err}");
    assert!(y.iter().chain(&short).all(|&v| v == 7.0));
    let err = PointwiseWeights::pack(&[1.0; 14], out, inp).unwrap_err();
    assert!(err.to_string().contains(": w has 14 elements"), "{err}");
    assert!(PointwiseWeights::pack(&[], 0, 3).is_err());
    assert!(pointwise::forward(usize::MAX, 2, &x, &w, None, false, &mut y).is_err());
}
