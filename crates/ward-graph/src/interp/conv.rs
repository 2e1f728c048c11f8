//! Convolution and Deconvolution (MXNet 1.9.1 `Convolution`, `Deconvolution`), 1-D to 3-D,
//! channels first (NCW, NCHW, NCDHW).

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::array::{indices, strides};
use super::{Array, KResult, KernelError};

/// The window of a convolution: one value per spatial axis in each field.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvParams {
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub dilation: Vec<usize>,
    /// Symmetric: `pad[i]` zeros before and after spatial axis `i`.
    pub pad: Vec<usize>,
    pub groups: usize,
}

impl ConvParams {
    /// A window with MXNet's defaults: stride 1, dilation 1, pad 0, one group.
    pub fn new(kernel: &[usize]) -> ConvParams {
        ConvParams {
            kernel: kernel.to_vec(),
            stride: vec![1; kernel.len()],
            dilation: vec![1; kernel.len()],
            pad: vec![0; kernel.len()],
            groups: 1,
        }
    }
}

/// The window of a deconvolution (transposed convolution).
#[derive(Debug, Clone, PartialEq)]
pub struct DeconvParams {
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub dilation: Vec<usize>,
    /// Removed from both ends of each spatial axis of the full output.
    pub pad: Vec<usize>,
    /// MXNet's `adj`: extra output positions at the end of each spatial axis.
    pub adj: Vec<usize>,
    pub groups: usize,
}

impl DeconvParams {
    /// A window with MXNet's defaults: stride 1, dilation 1, pad 0, adj 0, one group.
    pub fn new(kernel: &[usize]) -> DeconvParams {
        DeconvParams {
            kernel: kernel.to_vec(),
            stride: vec![1; kernel.len()],
            dilation: vec![1; kernel.len()],
            pad: vec![0; kernel.len()],
            adj: vec![0; kernel.len()],
            groups: 1,
        }
    }
}

/// Checks the per-axis window fields; returns the number of spatial axes.
pub(crate) fn check_window(
    op: &'static str,
    kernel: &[usize],
    fields: &[(&str, &[usize])],
) -> KResult<usize> {
    let k = kernel.len();
    if !(1..=3).contains(&k) {
        return Err(KernelError::new(
            op,
            format!("kernel {kernel:?} must have 1 to 3 dims"),
        ));
    }
    if kernel.contains(&0) {
        return Err(KernelError::new(
            op,
            format!("kernel {kernel:?} has a zero dim"),
        ));
    }
    for (name, v) in fields {
        if v.len() != k {
            return Err(KernelError::new(
                op,
                format!("{name} {v:?} must have {k} values, one per spatial axis"),
            ));
        }
        if (*name == "stride" || *name == "dilation") && v.contains(&0) {
            return Err(KernelError::new(op, format!("{name} {v:?} has a zero")));
        }
    }
    Ok(k)
}

/// `d·(k − 1) + 1`, checked.
pub(crate) fn dilated(op: &'static str, kernel: usize, dilation: usize) -> KResult<usize> {
    kernel
        .checked_sub(1)
        .and_then(|k| k.checked_mul(dilation))
        .and_then(|k| k.checked_add(1))
        .ok_or_else(|| KernelError::new(op, "the dilated kernel overflows"))
}

/// `shape` has `rank` axes, or the error names `what`.
fn expect_rank(op: &'static str, what: &str, shape: &[usize], rank: usize) -> KResult<()> {
    if shape.len() != rank {
        return Err(KernelError::new(
            op,
            format!("{what} must have rank {rank}, got shape {shape:?}"),
        ));
    }
    Ok(())
}

/// `shape` is `want`, or the error names `what`.
fn expect_shape(op: &'static str, what: &str, shape: &[usize], want: &[usize]) -> KResult<()> {
    if shape != want {
        return Err(KernelError::new(
            op,
            format!("{what} must have shape {want:?}, got {shape:?}"),
        ));
    }
    Ok(())
}

/// The geometry a convolution and its adjoint share: kernel position `k` at window
/// position `at` reads (or, for the adjoint, writes) spatial position `at·s + k·d − p`.
struct Window<'a> {
    stride: &'a [usize],
    dilation: &'a [usize],
    pad: &'a [usize],
}

impl Window<'_> {
    /// The offset of that position in an array of spatial sizes `spatial` and spatial
    /// strides `strides`, from `base` (batch item and channel); `None` when it falls in
    /// the padding.
    fn offset(
        &self,
        op: &'static str,
        at: &[usize],
        kidx: &[usize],
        spatial: &[i64],
        strides: &[usize],
        base: usize,
    ) -> KResult<Option<usize>> {
        let mut off = base;
        for i in 0..at.len() {
            let pos = to_i64(op, at[i] * self.stride[i] + kidx[i] * self.dilation[i])?
                - to_i64(op, self.pad[i])?;
            if pos < 0 || pos >= spatial[i] {
                return Ok(None);
            }
            off += pos as usize * strides[i];
        }
        Ok(Some(off))
    }
}

/// The offset of kernel position `kidx` of weight `[outer, inner, k…]` in a weight of
/// strides `ws`.
fn kernel_offset(outer: usize, inner: usize, kidx: &[usize], ws: &[usize]) -> usize {
    outer * ws[0] + inner * ws[1] + kidx.iter().zip(&ws[2..]).map(|(k, s)| k * s).sum::<usize>()
}

fn to_i64(op: &'static str, v: usize) -> KResult<i64> {
    i64::try_from(v).map_err(|_| KernelError::new(op, format!("{v} is too large")))
}

/// MXNet `Convolution`: `out[n, f, o] = bias[f] + Σ_{c, k} x[n, g·C/G + c, o·s − p + k·d]
/// · w[f, c, k]` over the input channels `c` of filter `f`'s group `g`, with zeros
/// outside the input. `weight` is (F, C/groups, k…), `bias` (F).
/// Output size per axis: ⌊(x + 2p − d(k−1) − 1) / s⌋ + 1.
pub fn convolution(
    x: &Array,
    weight: &Array,
    bias: Option<&Array>,
    p: &ConvParams,
) -> KResult<Array> {
    let out_shape = conv_taps(
        &x.shape,
        &weight.shape,
        bias.map(|b| &b.shape[..]),
        p,
        |_, _, _| {},
    )?;
    let mut out = Array::zeros(out_shape.clone())?;
    if let Some(bv) = bias {
        for (flat, idx) in indices(&out_shape).enumerate() {
            out.data[flat] = bv.data[idx[1]];
        }
    }
    conv_taps(
        &x.shape,
        &weight.shape,
        bias.map(|b| &b.shape[..]),
        p,
        |x_off, w_off, y| {
            out.data[y] += x.data[x_off] * weight.data[w_off];
        },
    )?;
    Ok(out)
}

/// Convolution's shape checks and output shape; calls `tap(x, w, y)` for every product
/// `x[x] · w[w]` that output element `y` sums (offsets, row-major; outputs in order,
/// then input channels, then kernel positions). [`convolution`] and its gradient share it.
pub fn conv_taps(
    x_shape: &[usize],
    w_shape: &[usize],
    bias_shape: Option<&[usize]>,
    p: &ConvParams,
    mut tap: impl FnMut(usize, usize, usize),
) -> KResult<Vec<usize>> {
    const OP: &str = "Convolution";
    let k = check_window(
        OP,
        &p.kernel,
        &[
            ("stride", &p.stride),
            ("dilation", &p.dilation),
            ("pad", &p.pad),
        ],
    )?;
    expect_rank(OP, "data", x_shape, k + 2)?;
    expect_rank(OP, "weight", w_shape, k + 2)?;
    let (n, c) = (x_shape[0], x_shape[1]);
    let f = w_shape[0];
    let g = p.groups;
    if g == 0 || !c.is_multiple_of(g) || !f.is_multiple_of(g) {
        return Err(KernelError::new(
            OP,
            format!("{c} input and {f} output channels are not divisible by {g} groups"),
        ));
    }
    let (cg, fg) = (c / g, f / g);
    let mut expected_w = vec![f, cg];
    expected_w.extend_from_slice(&p.kernel);
    expect_shape(OP, "weight", w_shape, &expected_w)?;
    if let Some(b) = bias_shape {
        expect_shape(OP, "bias", b, &[f])?;
    }
    let mut out_shape = vec![n, f];
    for i in 0..k {
        let eff = dilated(OP, p.kernel[i], p.dilation[i])?;
        let padded = x_shape[i + 2]
            .checked_add(p.pad[i].saturating_mul(2))
            .ok_or_else(|| KernelError::new(OP, "padded size overflows"))?;
        if padded < eff {
            return Err(KernelError::new(
                OP,
                format!(
                    "dilated kernel {eff} is larger than the padded input {padded} on spatial axis {i}"
                ),
            ));
        }
        out_shape.push((padded - eff) / p.stride[i] + 1);
    }
    let xs = strides(x_shape);
    let ws = strides(w_shape);
    let spatial_in: Vec<i64> = x_shape[2..]
        .iter()
        .map(|&d| to_i64(OP, d))
        .collect::<KResult<_>>()?;
    let window = Window {
        stride: &p.stride,
        dilation: &p.dilation,
        pad: &p.pad,
    };
    for (flat, idx) in indices(&out_shape).enumerate() {
        let (b, filt) = (idx[0], idx[1]);
        let group = filt / fg;
        for ci in 0..cg {
            let chan = group * cg + ci;
            for kidx in indices(&p.kernel) {
                let base = b * xs[0] + chan * xs[1];
                let Some(x_off) =
                    window.offset(OP, &idx[2..], &kidx, &spatial_in, &xs[2..], base)?
                else {
                    continue;
                };
                tap(x_off, kernel_offset(filt, ci, &kidx, &ws), flat);
            }
        }
    }
    Ok(out_shape)
}

/// MXNet `Deconvolution` (the adjoint of `Convolution` with the same window):
/// every input element `x[n, c, i]` adds `x · w[c, f, k]` to `out[n, g·F/G + f,
/// i·s − p + k·d]` when that position lies in the output. `weight` is
/// **(C_in, F/groups, k…)**, `bias` (F). Output size per axis:
/// s·(x − 1) + d·(k − 1) + 1 − 2p + adj.
pub fn deconvolution(
    x: &Array,
    weight: &Array,
    bias: Option<&Array>,
    p: &DeconvParams,
) -> KResult<Array> {
    let shapes = (&x.shape[..], &weight.shape[..], bias.map(|b| &b.shape[..]));
    let out_shape = deconv_taps(shapes, p, |_, _, _| {})?;
    let mut out = Array::zeros(out_shape.clone())?;
    deconv_taps(shapes, p, |x_off, w_off, o_off| {
        out.data[o_off] += x.data[x_off] * weight.data[w_off];
    })?;
    if let Some(bv) = bias {
        for (flat, idx) in indices(&out_shape).enumerate() {
            out.data[flat] += bv.data[idx[1]];
        }
    }
    Ok(out)
}

/// Deconvolution's shape checks and output shape; calls `tap(x, w, y)` for every product
/// `x[x] · w[w]` added to output element `y` (inputs in order, then output channels, then
/// kernel positions). [`deconvolution`] and its gradient share it.
pub fn deconv_taps(
    (x_shape, w_shape, bias_shape): (&[usize], &[usize], Option<&[usize]>),
    p: &DeconvParams,
    mut tap: impl FnMut(usize, usize, usize),
) -> KResult<Vec<usize>> {
    const OP: &str = "Deconvolution";
    let k = check_window(
        OP,
        &p.kernel,
        &[
            ("stride", &p.stride),
            ("dilation", &p.dilation),
            ("pad", &p.pad),
            ("adj", &p.adj),
        ],
    )?;
    expect_rank(OP, "data", x_shape, k + 2)?;
    expect_rank(OP, "weight", w_shape, k + 2)?;
    let (n, c) = (x_shape[0], x_shape[1]);
    let g = p.groups;
    if g == 0 || !c.is_multiple_of(g) {
        return Err(KernelError::new(
            OP,
            format!("{c} input channels are not divisible by {g} groups"),
        ));
    }
    let cg = c / g;
    let fg = w_shape[1];
    let f = fg
        .checked_mul(g)
        .ok_or_else(|| KernelError::new(OP, "output channels overflow"))?;
    let mut expected_w = vec![c, fg];
    expected_w.extend_from_slice(&p.kernel);
    expect_shape(OP, "weight", w_shape, &expected_w)?;
    if let Some(b) = bias_shape {
        expect_shape(OP, "bias", b, &[f])?;
    }
    let mut out_shape = vec![n, f];
    for i in 0..k {
        let eff = dilated(OP, p.kernel[i], p.dilation[i])?;
        let full = x_shape[i + 2]
            .checked_sub(1)
            .and_then(|v| v.checked_mul(p.stride[i]))
            .and_then(|v| v.checked_add(eff))
            .and_then(|v| v.checked_add(p.adj[i]))
            .ok_or_else(|| {
                KernelError::new(OP, format!("output size on spatial axis {i} overflows"))
            })?;
        let size = full
            .checked_sub(p.pad[i].saturating_mul(2))
            .filter(|&s| s > 0)
            .ok_or_else(|| {
                KernelError::new(
                    OP,
                    format!(
                        "pad {} removes the whole output on spatial axis {i}",
                        p.pad[i]
                    ),
                )
            })?;
        out_shape.push(size);
    }
    let os = strides(&out_shape);
    let ws = strides(w_shape);
    let spatial_out: Vec<i64> = out_shape[2..]
        .iter()
        .map(|&d| to_i64(OP, d))
        .collect::<KResult<_>>()?;
    let window = Window {
        stride: &p.stride,
        dilation: &p.dilation,
        pad: &p.pad,
    };
    for (flat, idx) in indices(x_shape).enumerate() {
        let (b, chan) = (idx[0], idx[1]);
        let group = chan / cg;
        for fi in 0..fg {
            let filt = group * fg + fi;
            for kidx in indices(&p.kernel) {
                let base = b * os[0] + filt * os[1];
                let Some(o_off) =
                    window.offset(OP, &idx[2..], &kidx, &spatial_out, &os[2..], base)?
                else {
                    continue;
                };
                tap(flat, kernel_offset(chan, fi, &kidx, &ws), o_off);
            }
        }
    }
    Ok(out_shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::dense::fully_connected;
    use crate::interp::shape::concat;
    use crate::interp::test_util::{assert_close, pseudo_random};

    #[test]
    fn hand_checked_1d() {
        // x = [1 2 3 4], w = [1 0 -1], pad 1: [0-2, 1-3, 2-4, 3-0] = [-2 -2 -2 3]
        let x = Array::new(vec![1, 1, 4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let w = Array::new(vec![1, 1, 3], vec![1.0, 0.0, -1.0]).unwrap();
        let mut p = ConvParams::new(&[3]);
        p.pad = vec![1];
        let y = convolution(&x, &w, Some(&Array::vector(&[0.5])), &p).unwrap();
        assert_eq!(y.shape, vec![1, 1, 4]);
        assert_eq!(y.data, vec![-1.5, -1.5, -1.5, 3.5]);
        // stride 2, dilation 2, no pad: positions 0 and 2 (k at 0, 2, 4 needs 5 > 4) → 1 output
        let mut p = ConvParams::new(&[2]);
        p.dilation = vec![2];
        p.stride = vec![2];
        let w2 = Array::new(vec![1, 1, 2], vec![1.0, 10.0]).unwrap();
        let y = convolution(&x, &w2, None, &p).unwrap();
        assert_eq!(y.shape, vec![1, 1, 1]);
        assert_eq!(y.data, vec![31.0]);
    }

    #[test]
    fn hand_checked_deconv_1d() {
        // x = [1 2], w = [1 10 100], stride 2: out len 2·1 + 3 = 5
        // x0 at 0..3: [1 10 100 0 0]; x1 at 2..5: [0 0 2 20 200]
        let x = Array::new(vec![1, 1, 2], vec![1.0, 2.0]).unwrap();
        let w = Array::new(vec![1, 1, 3], vec![1.0, 10.0, 100.0]).unwrap();
        let mut p = DeconvParams::new(&[3]);
        p.stride = vec![2];
        let y = deconvolution(&x, &w, None, &p).unwrap();
        assert_eq!(y.data, vec![1.0, 10.0, 102.0, 20.0, 200.0]);
        p.pad = vec![1];
        p.adj = vec![1];
        let y = deconvolution(&x, &w, Some(&Array::vector(&[1.0])), &p).unwrap();
        // full output [1 10 102 20 200 0], pad 1 from each side of length 5+1 = 6 → 4
        assert_eq!(y.data, vec![11.0, 103.0, 21.0, 201.0]);
    }

    #[test]
    fn one_by_one_conv_is_dense_per_pixel() {
        let x = pseudo_random(vec![2, 5, 3, 4], 1);
        let w = pseudo_random(vec![6, 5, 1, 1], 2);
        let b = pseudo_random(vec![6], 3);
        let y = convolution(&x, &w, Some(&b), &ConvParams::new(&[1, 1])).unwrap();
        let w2 = w.reshaped(vec![6, 5]).unwrap();
        for n in 0..2 {
            for h in 0..3 {
                for wi in 0..4 {
                    let pix: Vec<f64> = (0..5).map(|c| x.get(&[n, c, h, wi]).unwrap()).collect();
                    let d =
                        fully_connected(&Array::new(vec![1, 5], pix).unwrap(), &w2, Some(&b), true)
                            .unwrap();
                    for f in 0..6 {
                        let got = y.get(&[n, f, h, wi]).unwrap();
                        assert!((got - d.data[f]).abs() < 1e-12);
                    }
                }
            }
        }
    }

    fn channels(a: &Array, from: usize, to: usize) -> Array {
        let mut shape = a.shape.clone();
        shape[1] = to - from;
        let mut out = Array::zeros(shape.clone()).unwrap();
        for (flat, idx) in indices(&shape).enumerate() {
            let mut src = idx.clone();
            src[1] += from;
            out.data[flat] = a.get(&src).unwrap();
        }
        out
    }

    fn rows(a: &Array, from: usize, to: usize) -> Array {
        let inner: usize = a.shape[1..].iter().product();
        let mut shape = a.shape.clone();
        shape[0] = to - from;
        Array::new(shape, a.data[from * inner..to * inner].to_vec()).unwrap()
    }

    #[test]
    fn grouped_conv_is_concatenated_per_group_convs() {
        let x = pseudo_random(vec![2, 6, 5, 5], 4);
        let w = pseudo_random(vec![9, 2, 3, 2], 5);
        let b = pseudo_random(vec![9], 6);
        let mut p = ConvParams::new(&[3, 2]);
        p.groups = 3;
        p.stride = vec![2, 1];
        p.pad = vec![1, 1];
        p.dilation = vec![1, 2];
        let y = convolution(&x, &w, Some(&b), &p).unwrap();
        let mut single = p.clone();
        single.groups = 1;
        let parts: Vec<Array> = (0..3)
            .map(|g| {
                convolution(
                    &channels(&x, 2 * g, 2 * g + 2),
                    &rows(&w, 3 * g, 3 * g + 3),
                    Some(&rows(&b, 3 * g, 3 * g + 3)),
                    &single,
                )
                .unwrap()
            })
            .collect();
        let refs: Vec<&Array> = parts.iter().collect();
        assert_close(&y, &concat(&refs, 1).unwrap(), 1e-12);
    }

    #[test]
    fn deconvolution_is_the_adjoint_of_convolution() {
        // ⟨conv(x), y⟩ = ⟨x, deconv(y)⟩ with the same weight, for 1-, 2- and 3-D windows.
        // (spatial, kernel, stride, pad, dilation, groups)
        type Case = (
            Vec<usize>,
            Vec<usize>,
            Vec<usize>,
            Vec<usize>,
            Vec<usize>,
            usize,
        );
        let cases: Vec<Case> = vec![
            (vec![7], vec![3], vec![2], vec![1], vec![2], 1),
            (
                vec![6, 7],
                vec![3, 2],
                vec![2, 3],
                vec![1, 0],
                vec![1, 2],
                2,
            ),
            (
                vec![5, 4, 6],
                vec![2, 3, 2],
                vec![1, 2, 2],
                vec![0, 1, 1],
                vec![2, 1, 1],
                2,
            ),
        ];
        for (i, (spatial, kernel, stride, pad, dilation, groups)) in cases.into_iter().enumerate() {
            let (c, f) = (4, 6);
            let mut xs = vec![2, c];
            xs.extend(&spatial);
            let x = pseudo_random(xs, 10 + i as u64);
            let mut ws = vec![f, c / groups];
            ws.extend(&kernel);
            let w = pseudo_random(ws, 20 + i as u64);
            let cp = ConvParams {
                kernel: kernel.clone(),
                stride: stride.clone(),
                dilation: dilation.clone(),
                pad: pad.clone(),
                groups,
            };
            let cx = convolution(&x, &w, None, &cp).unwrap();
            let y = pseudo_random(cx.shape.clone(), 30 + i as u64);
            // adj restores the input size the floor of the convolution dropped.
            let adj: Vec<usize> = (0..spatial.len())
                .map(|a| {
                    (spatial[a] + 2 * pad[a] - (dilation[a] * (kernel[a] - 1) + 1)) % stride[a]
                })
                .collect();
            let dp = DeconvParams {
                kernel,
                stride,
                dilation,
                pad,
                adj,
                groups,
            };
            let dy = deconvolution(&y, &w, None, &dp).unwrap();
            assert_eq!(dy.shape, x.shape);
            let lhs: f64 = cx.data.iter().zip(&y.data).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.data.iter().zip(&dy.data).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        let x = Array::zeros(vec![1, 4, 5, 5]).unwrap();
        let w = Array::zeros(vec![2, 4, 3, 3]).unwrap();
        let p = ConvParams::new(&[3, 3]);
        assert!(convolution(&x, &w, None, &p).is_ok());
        let e = convolution(&x, &w, Some(&Array::zeros(vec![3]).unwrap()), &p).unwrap_err();
        assert!(e.to_string().contains("bias"), "{e}");
        let mut g = p.clone();
        g.groups = 3;
        assert!(convolution(&x, &w, None, &g).is_err());
        let mut big = p.clone();
        big.dilation = vec![3, 3];
        assert!(convolution(&x, &w, None, &big).is_err());
        let mut bad = p.clone();
        bad.stride = vec![1];
        assert!(convolution(&x, &w, None, &bad).is_err());
        bad.stride = vec![0, 1];
        assert!(convolution(&x, &w, None, &bad).is_err());
        assert!(convolution(&Array::zeros(vec![4, 5, 5]).unwrap(), &w, None, &p).is_err());
        let mut dp = DeconvParams::new(&[3, 3]);
        dp.pad = vec![4, 4];
        let wd = Array::zeros(vec![4, 2, 3, 3]).unwrap();
        assert!(deconvolution(&Array::zeros(vec![1, 4, 2, 2]).unwrap(), &wd, None, &dp).is_err());
    }
}
