use proptest::prelude::*;
use ward_graph::interp::pool::{pool_windows, pooling, PoolKind, PoolParams};
use ward_graph::interp::Array;
use ward_kernels::Windows;

use crate::{assert_close, dot, random_values, seeded_rng};

/// The table for one plane of `shape` (the first plane's windows: offsets within it).
fn table(shape: &[usize], p: &PoolParams) -> Option<(Vec<usize>, Windows)> {
    let (out_shape, windows) = pool_windows(shape, p).ok()?;
    let out_plane: usize = out_shape[2..].iter().product();
    let in_plane: usize = shape[2..].iter().product();
    let table = Windows::new(
        in_plane,
        windows
            .iter()
            .take(out_plane)
            .map(|w| (w.offsets.clone(), w.divisor(p.count_include_pad))),
    )
    .unwrap();
    Some((out_shape, table))
}

fn cases() -> impl Strategy<Value = (Vec<usize>, PoolParams)> {
    (
        1usize..3,
        1usize..4,
        (1usize..9, 1usize..9),
        (1usize..4, 1usize..4),
        (1usize..3, 1usize..3),
        (0usize..2, 0usize..2),
        any::<bool>(),
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(n, c, (h, w), k, s, pad, full, cip, kind)| {
            let kind = [PoolKind::Max, PoolKind::Avg, PoolKind::Sum][kind];
            let mut p = PoolParams::new(kind, &[k.0, k.1]);
            p.stride = vec![s.0, s.1];
            p.pad = vec![pad.0.min(k.0 - 1), pad.1.min(k.1 - 1)];
            p.full = full;
            p.count_include_pad = cip;
            (vec![n, c, h, w], p)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn pooling_matches_the_interpreter((shape, p) in cases(), seed in any::<u64>()) {
        let Some((out_shape, t)) = table(&shape, &p) else { return Ok(()); };
        let planes = shape[0] * shape[1];
        let mut rng = seeded_rng(seed);
        let x = random_values(&mut rng, planes * t.in_plane());
        let xa = Array { shape: shape.clone(), data: x.iter().map(|&v| v as f64).collect() };
        let Ok(want) = pooling(&xa, &p) else { return Ok(()); };
        prop_assert_eq!(want.shape, out_shape);
        let mut y = vec![f32::NAN; planes * t.out_plane()];
        let dy = random_values(&mut rng, y.len());
        let mut dx = vec![f32::NAN; x.len()];
        match p.kind {
            PoolKind::Max => {
                let mut arg = vec![0u32; y.len()];
                t.max_forward(planes, &x, &mut y, &mut arg).unwrap();
                assert_close("y", &y, &want.data, 0.0);
                t.max_backward(planes, &arg, &dy, &mut dx).unwrap();
                // Every output's gradient lands in its window (on the element it took),
                // unless the window holds no input element (`full` windows past the end).
                let (_, windows) = pool_windows(&shape, &p).unwrap();
                let total: f64 = dx.iter().map(|&v| v as f64).sum();
                let reaching: f64 = dy.iter().zip(&windows)
                    .filter(|(_, w)| !w.offsets.is_empty())
                    .map(|(&v, _)| v as f64).sum();
                prop_assert!((total - reaching).abs() < 1e-3, "{total} vs {reaching}");
                for (i, &a) in arg.iter().enumerate() {
                    if a != u32::MAX {
                        prop_assert_eq!(x[(i / t.out_plane()) * t.in_plane() + a as usize], y[i]);
                    }
                }
            }
            kind => {
                let sum = kind == PoolKind::Sum;
                t.avg_forward(planes, sum, &x, &mut y).unwrap();
                assert_close("y", &y, &want.data, 1e-5);
                let (_, windows) = pool_windows(&shape, &p).unwrap();
                let divisors: Vec<f32> = windows[..t.out_plane()]
                    .iter()
                    .map(|w| if sum { 1.0 } else { w.divisor(p.count_include_pad) as f32 })
                    .collect();
                t.avg_backward(planes, Some(&divisors), &dy, &mut dx).unwrap();
                // The gradient with the forward's divisors is the forward's adjoint.
                let lhs = dot(&y, &dy);
                prop_assert!((dot(&x, &dx) - lhs).abs() <= 1e-4 * lhs.abs().max(1.0));
            }
        }
    }
}

#[test]
fn offsets_outside_the_plane_are_refused() {
    assert!(Windows::new(4, [(vec![0, 3], 2)]).is_ok());
    assert!(Windows::new(4, [(vec![0, 4], 2)]).is_err());
    let t = Windows::new(4, [(vec![0, 1], 2), (vec![2, 3], 2)]).unwrap();
    let mut y = vec![0.0; 3];
    let mut arg = vec![0; 3];
    assert!(t.max_forward(1, &[0.0; 4], &mut y, &mut arg).is_err());
}
