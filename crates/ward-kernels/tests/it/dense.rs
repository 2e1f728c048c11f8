use proptest::prelude::*;
use ward_kernels::dense::Dense;
use ward_kernels::matmul::{gemm_packed, MatMut, MatRef};

use crate::{random_values, seeded_rng};

/// Each of `got` within 1e-5 of `want` (summed in `f64`) relative to the sum of its
/// terms' magnitudes (`scale`).
fn assert_terms(what: &str, got: &[f32], want: &[(f64, f64)]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &(w, scale))) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 1e-5 * scale.max(1e-30),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The three products (on the direct kernel where the CPU has AVX-512F) against
    /// their sums in `f64`: depths across a slice of 256, unit counts across strips of 32,
    /// row counts across blocks of tiles, with and without a bias.
    #[test]
    fn the_products_are_the_sums_of_their_terms(
        rows in 1usize..100,
        inner in 1usize..300,
        units in 1usize..70,
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let layer = Dense { rows, inner, units };
        let mut rng = seeded_rng(seed);
        let x = random_values(&mut rng, rows * inner);
        let w = random_values(&mut rng, units * inner);
        let b = random_values(&mut rng, units);
        let dy = random_values(&mut rng, rows * units);
        let sum = |terms: &mut dyn Iterator<Item = f64>| {
            terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()))
        };

        let mut y = vec![f32::NAN; rows * units];
        layer.forward(&x, &w, with_bias.then_some(&b[..]), &mut y).unwrap();
        let want: Vec<_> = (0..rows * units)
            .map(|e| {
                let (r, u) = (e / units, e % units);
                let bias = if with_bias { f64::from(b[u]) } else { 0.0 };
                let mut terms = (0..inner)
                    .map(|i| f64::from(x[r * inner + i]) * f64::from(w[u * inner + i]))
                    .chain(std::iter::once(bias));
                sum(&mut terms)
            })
            .collect();
        assert_terms("y", &y, &want);

        let mut dx = vec![f32::NAN; rows * inner];
        layer.backward_data(&dy, &w, &mut dx).unwrap();
        let want: Vec<_> = (0..rows * inner)
            .map(|e| {
                let (r, i) = (e / inner, e % inner);
                sum(&mut (0..units)
                    .map(|u| f64::from(dy[r * units + u]) * f64::from(w[u * inner + i])))
            })
            .collect();
        assert_terms("dx", &dx, &want);

        let mut dw = vec![f32::NAN; units * inner];
        layer.backward_weight(&x, &dy, &mut dw).unwrap();
        let want: Vec<_> = (0..units * inner)
            .map(|e| {
                let (u, i) = (e / inner, e % inner);
                sum(&mut (0..rows)
                    .map(|r| f64::from(dy[r * units + u]) * f64::from(x[r * inner + i])))
            })
            .collect();
        assert_terms("dw", &dw, &want);

        // The direct kernel sums as the matrix crate does: the same bits, but for a bias,
        // which the matrix crate adds into its first slice of 256 and ward after all.
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let x_m = MatRef::row_major(&x, rows, inner).unwrap();
        let w_m = MatRef::row_major(&w, units, inner).unwrap();
        let dy_m = MatRef::row_major(&dy, rows, units).unwrap();
        let mut want = if with_bias { b.repeat(rows) } else { vec![0.0; rows * units] };
        let beta = if with_bias { 1.0 } else { 0.0 };
        gemm_packed(1.0, x_m, w_m.t(), beta, MatMut::row_major(&mut want, rows, units).unwrap()).unwrap();
        if !with_bias || inner <= 256 {
            prop_assert_eq!(bits(&y), bits(&want));
        }
        let mut want = vec![0.0; rows * inner];
        gemm_packed(1.0, dy_m, w_m, 0.0, MatMut::row_major(&mut want, rows, inner).unwrap()).unwrap();
        prop_assert_eq!(bits(&dx), bits(&want));
        let mut want = vec![0.0; units * inner];
        gemm_packed(1.0, dy_m.t(), x_m, 0.0, MatMut::row_major(&mut want, units, inner).unwrap()).unwrap();
        prop_assert_eq!(bits(&dw), bits(&want));
    }
}

#[test]
fn wrong_lengths_are_refused_before_anything_is_written() {
    let layer = Dense {
        rows: 2,
        inner: 3,
        units: 4,
    };
    let mut y = vec![7.0f32; 8];
    assert!(layer.forward(&[0.0; 5], &[0.0; 12], None, &mut y).is_err());
    assert!(layer
        .forward(&[0.0; 6], &[0.0; 12], Some(&[0.0; 3]), &mut y)
        .is_err());
    let mut dx = vec![7.0f32; 6];
    assert!(layer.backward_data(&[0.0; 7], &[0.0; 12], &mut dx).is_err());
    let mut dw = vec![7.0f32; 11];
    assert!(layer
        .backward_weight(&[0.0; 6], &[0.0; 8], &mut dw)
        .is_err());
    assert!(y.iter().chain(&dx).chain(&dw).all(|&v| v == 7.0));
}
