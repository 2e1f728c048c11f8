//! Fuzzes ward-kernels' safe API, the crate whose `unsafe` code (the matrix crate's raw
//! pointers, ward's AVX-512 kernels: `gemm`'s short products, `gemm_panels`, the direct
//! convolution tiles) sits behind length and shape checks: random shapes, strides,
//! transposes and slices that may be a value short. Nothing may panic; a refused
//! argument is an error, and `gemm` and `gemm_panels` (where they apply), a
//! convolution's forward pass and a dense layer's products without a bias, must give
//! exactly the bits of the matrix crate; the depthwise kernel, the convolution's values;
//! a stride-2 row of max-pool windows, a plain fold's bits; a pointwise convolution, with
//! and without an input map, its definition's bits; a one-group convolution on padded planes, and a 3×3 stride-1 one by
//! Winograd's transforms, the convolution's values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_kernels::conv::{Conv2d, ConvWindow};
use ward_kernels::dense::Dense;
use ward_kernels::depthwise;
use ward_kernels::matmul::{gemm, gemm_packed, gemm_parallel, MatMut, MatRef};
use ward_kernels::panels::{self, gemm_panels, PanelsA};
use ward_kernels::planar::{self, PlanarWeights};
use ward_kernels::pool_rows;
use ward_kernels::winograd::{self, WinogradWeights};

/// Values in [-1, 1) made from the input's bytes, cycled.
fn values(bytes: &[u8], len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let b = bytes.get(i % bytes.len().max(1)).copied().unwrap_or(1);
            (f32::from(b) - 128.0) / 128.0 + i as f32 * 1e-3
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let byte = |i: usize| usize::from(rest.get(i).copied().unwrap_or(0));
    let short = |i: usize| usize::from(rest.get(i).copied().unwrap_or(0) % 8 == 0);
    if head % 3 == 2 {
        // A dense layer's three products, with lengths that may be a value short.
        let layer = Dense {
            rows: 1 + byte(0) % 40,
            inner: 1 + byte(1) % 300,
            units: 1 + byte(2) % 80,
        };
        let (rows, inner, units) = (layer.rows, layer.inner, layer.units);
        let x = values(rest, rows * inner - short(3));
        let w = values(rest.get(3..).unwrap_or(&[]), units * inner - short(4));
        let dy = values(rest.get(5..).unwrap_or(&[]), rows * units - short(5));
        let bias = values(rest.get(7..).unwrap_or(&[]), units - short(6));
        let mut y = vec![0.0; rows * units];
        let _ = layer.forward(&x, &w, Some(&bias), &mut y);
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        if let (Ok(x_m), Ok(w_m), Ok(dy_m)) = (
            MatRef::row_major(&x, rows, inner),
            MatRef::row_major(&w, units, inner),
            MatRef::row_major(&dy, rows, units),
        ) {
            layer.forward(&x, &w, None, &mut y).unwrap();
            let mut want = vec![0.0; rows * units];
            gemm_packed(1.0, x_m, w_m.t(), 0.0, MatMut::row_major(&mut want, rows, units).unwrap()).unwrap();
            assert_eq!(bits(&y), bits(&want), "dense forward at {rows}×{inner}×{units}");
            let mut dx = vec![0.0; rows * inner];
            layer.backward_data(&dy, &w, &mut dx).unwrap();
            let mut want = vec![0.0; rows * inner];
            gemm_packed(1.0, dy_m, w_m, 0.0, MatMut::row_major(&mut want, rows, inner).unwrap()).unwrap();
            assert_eq!(bits(&dx), bits(&want), "dense data gradient");
            let mut dw = vec![0.0; units * inner];
            layer.backward_weight(&x, &dy, &mut dw).unwrap();
            let mut want = vec![0.0; units * inner];
            gemm_packed(1.0, dy_m.t(), x_m, 0.0, MatMut::row_major(&mut want, units, inner).unwrap()).unwrap();
            assert_eq!(bits(&dw), bits(&want), "dense weight gradient");
        } else {
            let mut dx = vec![0.0; rows * inner];
            let _ = layer.backward_data(&dy, &w, &mut dx);
            let mut dw = vec![0.0; units * inner];
            let _ = layer.backward_weight(&x, &dy, &mut dw);
        }
    } else if head % 2 == 0 {
        // C (m × n) ← A (m × k, maybe stored transposed) · B (k × n) + β·C, inside rows
        // `pad` values longer than the views.
        let (m, k, n) = (1 + byte(0) % 40, 1 + byte(1) % 300, 1 + byte(2) % 80);
        let pad = byte(3) % 4;
        let transposed = byte(4) % 2 == 1;
        let beta = [0.0f32, 1.0, 0.5][byte(5) % 3];
        let alpha = [1.0f32, -0.5][byte(6) % 2];
        let a_len = if transposed { k * (m + pad) } else { m * (k + pad) } - short(7);
        let a = values(rest, a_len);
        let b = values(rest.get(8..).unwrap_or(&[]), k * (n + pad) - short(8));
        let c0 = values(rest.get(16..).unwrap_or(&[]), m * (n + pad));
        let a_view = if transposed {
            MatRef::strided(&a, k, m, m + pad, 1).map(MatRef::t)
        } else {
            MatRef::strided(&a, m, k, k + pad, 1)
        };
        let (Ok(a_view), Ok(b_view)) = (a_view, MatRef::strided(&b, k, n, n + pad, 1)) else {
            return;
        };
        let mut want = c0.clone();
        let mut got = c0.clone();
        let packed = gemm_packed(alpha, a_view, b_view, beta, MatMut::strided(&mut want, m, n, n + pad, 1).unwrap());
        let own = gemm(alpha, a_view, b_view, beta, MatMut::strided(&mut got, m, n, n + pad, 1).unwrap());
        assert_eq!(packed.is_ok(), own.is_ok());
        assert!(
            got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
            "gemm and gemm_packed differ at {m}×{k}×{n}"
        );
        if panels::available() && alpha == 1.0 && beta != 0.5 {
            let mut on_panels = c0.clone();
            let c_view = MatMut::strided(&mut on_panels, m, n, n + pad, 1).unwrap();
            gemm_panels(&PanelsA::new(a_view), &b_view, beta, c_view).unwrap();
            assert!(
                on_panels.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
                "gemm_panels and gemm_packed differ at {m}×{k}×{n}"
            );
        }
        if pad == 0 {
            let mut par = c0.clone();
            gemm_parallel(alpha, a_view, b_view, beta, &mut par).unwrap();
            assert!(par.iter().zip(&want).all(|(p, w)| p.to_bits() == w.to_bits()));
        }
    } else {
        // A small convolution, every pass, with lengths that may be a value short.
        let window = ConvWindow {
            out_channels: 1 + byte(0) % 40,
            kernel: [1 + byte(1) % 4, 1 + byte(2) % 4],
            stride: [1 + byte(3) % 3, 1 + byte(4) % 3],
            pad: [byte(5) % 4, byte(6) % 4],
            dilation: [1 + byte(7) % 3, 1 + byte(8) % 3],
            groups: 1 + byte(9) % 3,
        };
        let input = [1 + byte(10) % 4, 1 + byte(11) % 9, 1 + byte(12) % 13, 1 + byte(13) % 13];
        let Ok(g) = Conv2d::new(input, window) else {
            return;
        };
        let x = values(rest, g.input_len() - short(14));
        let w = values(rest.get(3..).unwrap_or(&[]), g.weight_len() - short(15));
        let dy = values(rest.get(5..).unwrap_or(&[]), g.output_len());
        let mut y = vec![0.0; g.output_len()];
        if g.forward(&x, &w, None, &mut y).is_ok() {
            let mut want = vec![0.0; g.output_len()];
            g.with_matrix_crate_only().forward(&x, &w, None, &mut want).unwrap();
            assert!(y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        // As many groups as input channels: the depthwise kernel gives the convolution's
        // values (sums of at most 16 terms in [-1, 1), in another order).
        let mut on_depthwise = vec![0.0; g.output_len()];
        if depthwise::forward(&g, &x, &w, None, false, &mut on_depthwise).is_ok() {
            let mut want = vec![0.0; g.output_len()];
            g.forward(&x, &w, None, &mut want).unwrap();
            assert!(on_depthwise.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-4));
        }
        // In one group the planar kernel gives the convolution's values (sums of at most
        // 144 terms in [-1, 1), in another order); grouped, it refuses.
        if let Ok(packed) = PlanarWeights::pack(&w, window.out_channels, g.weight_len() / window.out_channels) {
            let mut on_planes = vec![0.0; g.output_len()];
            let planes = planar::forward_conv(&g, &x, &packed, None, false, &mut on_planes);
            assert!(planes.is_err() || g.groups == 1);
            let mut want = vec![0.0; g.output_len()];
            if planes.is_ok() && g.forward(&x, &w, None, &mut want).is_ok() {
                assert!(on_planes.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-4));
            }
        }
        // Winograd's F(4×4, 3×3): where it takes the geometry (a 3×3 stride-1 kernel in one
        // group), the convolution's values (sums of at most 72 terms in [-1, 1), the
        // transforms' rounding larger than the direct order's); elsewhere, it refuses.
        if let Ok(packed) = WinogradWeights::pack(&w, window.out_channels, input[1]) {
            let mut on_tiles = vec![f32::NAN; g.output_len()];
            let tiles = winograd::forward(&g, &x, &packed, None, false, &mut on_tiles);
            assert!(tiles.is_err() || winograd::covers(&g));
            let mut want = vec![0.0; g.output_len()];
            if tiles.is_ok() && g.forward(&x, &w, None, &mut want).is_ok() {
                assert!(on_tiles.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-3));
            }
        }
        let mut dx = vec![0.0; g.input_len()];
        let _ = g.backward_data(&dy, &w, &mut dx);
        let mut dw = vec![0.0; g.weight_len()];
        let mut db = vec![0.0; window.out_channels - short(16)];
        let _ = g.backward_weight(&x, &dy, &mut dw, Some(&mut db));
        // A max pool's stride-2 row: any window count and kernel, the same bits as a
        // plain fold where the windows fit, an error where they do not.
        let row = values(rest, byte(17) % 90);
        let kernel = byte(18) % 5;
        let mut out = vec![0.0; byte(19) % 46];
        if pool_rows::stride2_row_max(&row, kernel, &mut out).is_ok() {
            for (i, &o) in out.iter().enumerate() {
                let w = &row[2 * i..2 * i + kernel];
                let want = w[1..].iter().fold(w[0], |m, &v| if m < v { v } else { m });
                assert_eq!(o.to_bits(), want.to_bits(), "window {i} of {kernel}");
            }
        }
        // A pointwise convolution: any batch, channel counts and plane (every tile width),
        // with lengths that may be a value short; where it runs, the bits of its
        // definition (summed from zero in input-channel order with fused multiply-adds,
        // the bias after, then the ReLU).
        let (batch, inp, outc, pixels) =
            (1 + byte(20) % 3, 1 + byte(21) % 40, 1 + byte(22) % 20, byte(23) % 70);
        let relu = byte(24) % 2 == 1;
        let x = values(rest, (batch * inp * pixels).saturating_sub(short(25)));
        let wv = values(rest.get(2..).unwrap_or(&[]), (outc * inp).saturating_sub(short(26)));
        let bias = values(rest.get(4..).unwrap_or(&[]), outc);
        if let Ok(packed) = PlanarWeights::pack(&wv, outc, inp) {
            let mut y = vec![0.0; batch * outc * pixels];
            if planar::forward(batch, pixels, &x, &packed, Some(&bias), relu, &mut y).is_ok() {
                for (i, &got) in y.iter().enumerate() {
                    let (n, o, p) = (i / (outc * pixels), i / pixels % outc, i % pixels);
                    let mut sum = 0.0f32;
                    for k in 0..inp {
                        sum = wv[o * inp + k].mul_add(x[(n * inp + k) * pixels + p], sum);
                    }
                    sum += bias[o];
                    if relu && sum.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                        sum = 0.0;
                    }
                    assert_eq!(got.to_bits(), sum.to_bits(), "pointwise output {i}");
                }
            }
            // The same through an input map (a batch norm and ReLU per input channel),
            // whose scale may be a value short: where it runs, the definition's bits on
            // the mapped values.
            let scale = values(rest.get(6..).unwrap_or(&[]), inp.saturating_sub(short(27)));
            let shift = values(rest.get(8..).unwrap_or(&[]), inp);
            let floor = vec![0.0f32; inp];
            let input = planar::MappedInput {
                x: &x,
                map: planar::InputMap { scale: &scale, shift: Some(&shift), floor: &floor },
            };
            let mut y = vec![0.0; batch * outc * pixels];
            if planar::forward_mapped(batch, pixels, input, &packed, None, relu, &mut y).is_ok() {
                for (i, &got) in y.iter().enumerate() {
                    let (n, o, p) = (i / (outc * pixels), i / pixels % outc, i % pixels);
                    let mut sum = 0.0f32;
                    for k in 0..inp {
                        let v = x[(n * inp + k) * pixels + p] * scale[k] + shift[k];
                        let v = if v > 0.0 { v } else { 0.0 };
                        sum = wv[o * inp + k].mul_add(v, sum);
                    }
                    if relu && sum.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                        sum = 0.0;
                    }
                    assert_eq!(got.to_bits(), sum.to_bits(), "mapped pointwise output {i}");
                }
            }
        }
    }
});
