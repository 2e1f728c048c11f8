use proptest::prelude::*;
use ward_kernels::matmul::{gemm, gemm_packed, gemm_parallel, MatMut, MatRef};

use crate::{assert_close, random_values};

#[derive(Debug, Clone)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    a_transposed: bool,
    b_transposed: bool,
    alpha: f32,
    beta: f32,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        // Short and wide products (split by columns) as well as tall ones (by rows).
        prop_oneof![1usize..12, 60usize..300],
        1usize..40,
        prop_oneof![1usize..12, 120usize..400],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(1.0f32), Just(-0.5)],
        prop_oneof![Just(0.0f32), Just(1.0), Just(0.25)],
    )
        .prop_map(|(m, k, n, a_transposed, b_transposed, alpha, beta)| Case {
            m,
            k,
            n,
            a_transposed,
            b_transposed,
            alpha,
            beta,
        })
}

/// A `rows × cols` view of `data`, stored transposed when asked.
fn view(data: &[f32], rows: usize, cols: usize, transposed: bool) -> MatRef<'_> {
    if transposed {
        MatRef::row_major(data, cols, rows).unwrap().t()
    } else {
        MatRef::row_major(data, rows, cols).unwrap()
    }
}

fn element(data: &[f32], cols_or_rows: usize, i: usize, j: usize, transposed: bool) -> f64 {
    f64::from(if transposed {
        data[j * cols_or_rows + i]
    } else {
        data[i * cols_or_rows + j]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    /// `gemm_parallel` is `α·A·B + β·C` (and with β = 0 never reads C: NaN there does not
    /// leak), and gives the same bits at 1, 2, 3 and 5 threads, whether it splits the
    /// product by rows or by columns.
    #[test]
    fn gemm_parallel_matches_the_definition_at_any_thread_count(case in cases()) {
        let mut rng = proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        );
        let Case { m, k, n, a_transposed, b_transposed, alpha, beta } = case;
        let a = random_values(&mut rng, m * k);
        let b = random_values(&mut rng, k * n);
        let c0 = if beta == 0.0 { vec![f32::NAN; m * n] } else { random_values(&mut rng, m * n) };
        let want: Vec<f64> = (0..m * n)
            .map(|at| {
                let (i, j) = (at / n, at % n);
                let sum: f64 = (0..k)
                    .map(|p| {
                        element(&a, if a_transposed { m } else { k }, i, p, a_transposed)
                            * element(&b, if b_transposed { k } else { n }, p, j, b_transposed)
                    })
                    .sum();
                let old = if beta == 0.0 { 0.0 } else { f64::from(beta) * f64::from(c0[at]) };
                f64::from(alpha) * sum + old
            })
            .collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut c = c0.clone();
                gemm_parallel(
                    alpha,
                    view(&a, m, k, a_transposed),
                    view(&b, k, n, b_transposed),
                    beta,
                    &mut c,
                )
                .unwrap();
                c
            })
        };
        let one = run(1);
        assert_close("C", &one, &want, 1e-5 * k as f64);
        for threads in [2, 3, 5] {
            let got = run(threads);
            prop_assert!(
                got.iter().zip(&one).all(|(g, o)| g.to_bits() == o.to_bits()),
                "{} threads gave other bits than 1", threads
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// `gemm` (on an AVX-512 CPU, ward's own kernel) gives the matrix crate's bits (α = 1),
    /// with `A` row- or column-major, on views inside larger rows (row strides above the
    /// column count), panels of more than 256 rows, sums longer than one 256-slice, and
    /// edge tiles. (On a CPU without AVX-512 both are the matrix crate.)
    #[test]
    fn gemm_gives_the_bits_of_the_matrix_crate(
        m in prop_oneof![1usize..40, 250usize..300],
        k in 1usize..600,
        n in 1usize..100,
        pad in 0usize..5,
        a_transposed in any::<bool>(),
        beta in prop_oneof![Just(0.0f32), Just(1.0)],
    ) {
        let mut rng = proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        );
        let a = random_values(&mut rng, (m * (k + pad)).max(k * (m + pad)));
        let b = random_values(&mut rng, k * (n + pad));
        let c0 = if beta == 0.0 { vec![f32::NAN; m * (n + pad)] } else { random_values(&mut rng, m * (n + pad)) };
        let a_view = if a_transposed {
            MatRef::strided(&a, k, m, m + pad, 1).unwrap().t()
        } else {
            MatRef::strided(&a, m, k, k + pad, 1).unwrap()
        };
        let b_view = MatRef::strided(&b, k, n, n + pad, 1).unwrap();
        let mut want = c0.clone();
        gemm_packed(1.0, a_view, b_view, beta, MatMut::strided(&mut want, m, n, n + pad, 1).unwrap()).unwrap();
        let mut got = c0.clone();
        gemm(1.0, a_view, b_view, beta, MatMut::strided(&mut got, m, n, n + pad, 1).unwrap()).unwrap();
        for i in 0..m {
            for j in 0..n {
                let at = i * (n + pad) + j;
                prop_assert_eq!(got[at].to_bits(), want[at].to_bits(), "C[{}, {}]", i, j);
            }
        }
    }
}

#[test]
fn gemm_parallel_refuses_shapes_that_do_not_chain() {
    let a = [0.0f32; 6];
    let b = [0.0f32; 6];
    let mut c = [0.0f32; 4];
    let a = MatRef::row_major(&a, 2, 3).unwrap();
    let b = MatRef::row_major(&b, 2, 3).unwrap();
    assert!(
        gemm_parallel(1.0, a, b, 0.0, &mut c).is_err(),
        "inner sizes 3 and 2"
    );
    let mut short = [0.0f32; 3];
    let b = MatRef::row_major(&[0.0f32; 6], 3, 2).unwrap();
    assert!(
        gemm_parallel(1.0, a, b, 0.0, &mut short).is_err(),
        "C too short"
    );
}
