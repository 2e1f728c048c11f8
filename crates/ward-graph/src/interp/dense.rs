//! FullyConnected (MXNet 1.9.1 `FullyConnected`), `batch_dot` and the interleaved
//! attention products (`_contrib_interleaved_matmul_*`).

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::{Array, KResult, KernelError};

/// MXNet `FullyConnected`: `y = x·Wᵀ + b` with `weight` (H, K) and `bias` (H).
/// With `flatten` (MXNet's default) `x` is read as (N, K) where K is the product of all
/// axes after the first, and `y` is (N, H). Without it the product runs over the last
/// axis only and the leading axes are kept: `y` is `x.shape[..-1] + (H,)`.
pub fn fully_connected(
    x: &Array,
    weight: &Array,
    bias: Option<&Array>,
    flatten: bool,
) -> KResult<Array> {
    const OP: &str = "FullyConnected";
    if x.rank() == 0 {
        return Err(KernelError::new(OP, "data must have at least one axis"));
    }
    weight.expect_rank(OP, "weight", 2)?;
    let h = weight.shape[0];
    let (mut out_shape, k) = if flatten {
        (vec![x.shape[0]], x.shape[1..].iter().product::<usize>())
    } else {
        (x.shape[..x.rank() - 1].to_vec(), x.shape[x.rank() - 1])
    };
    weight.expect_shape(OP, "weight", &[h, k])?;
    if let Some(b) = bias {
        b.expect_shape(OP, "bias", &[h])?;
    }
    out_shape.push(h);
    let rows = x.len().checked_div(k).unwrap_or(0);
    let mut out = Array::zeros(out_shape)?;
    if k == 0 {
        // No inputs: every output is the bias.
        if let Some(b) = bias {
            for (i, v) in out.data.iter_mut().enumerate() {
                *v = b.data[i % h];
            }
        }
        return Ok(out);
    }
    for r in 0..rows {
        let row = &x.data[r * k..(r + 1) * k];
        for u in 0..h {
            let w = &weight.data[u * k..(u + 1) * k];
            let mut acc = bias.map_or(0.0, |b| b.data[u]);
            for (a, b) in row.iter().zip(w) {
                acc += a * b;
            }
            out.data[r * h + u] = acc;
        }
    }
    Ok(out)
}

/// MXNet `batch_dot`: for each index of the leading (batch) axes, the product of the
/// last two axes of `a` (transposed with `ta`) and of `b` (transposed with `tb`).
pub fn batch_dot(a: &Array, b: &Array, ta: bool, tb: bool) -> KResult<Array> {
    const OP: &str = "batch_dot";
    let (batch, m, k, n) = batch_dot_dims(&a.shape, &b.shape, ta, tb).ok_or_else(|| {
        KernelError::new(
            OP,
            format!("{:?} and {:?} do not multiply", a.shape, b.shape),
        )
    })?;
    let mut shape = a.shape[..a.rank() - 2].to_vec();
    shape.extend([m, n]);
    let mut out = Array::zeros(shape)?;
    for i in 0..batch {
        let (pa, pb) = (
            &a.data[i * m * k..(i + 1) * m * k],
            &b.data[i * k * n..(i + 1) * k * n],
        );
        for r in 0..m {
            for c in 0..n {
                let mut acc = 0.0;
                for j in 0..k {
                    let x = if ta { pa[j * m + r] } else { pa[r * k + j] };
                    let y = if tb { pb[c * k + j] } else { pb[j * n + c] };
                    acc += x * y;
                }
                out.data[(i * m + r) * n + c] = acc;
            }
        }
    }
    Ok(out)
}

/// (batch, rows, inner, cols) of `batch_dot` on these shapes, or `None` when they do not
/// multiply (ranks differ or are below 3, batch dims differ, inner dims differ).
pub fn batch_dot_dims(
    a: &[usize],
    b: &[usize],
    ta: bool,
    tb: bool,
) -> Option<(usize, usize, usize, usize)> {
    let r = a.len();
    if r < 3 || b.len() != r || a[..r - 2] != b[..r - 2] {
        return None;
    }
    let (m, k) = if ta {
        (a[r - 1], a[r - 2])
    } else {
        (a[r - 2], a[r - 1])
    };
    let (k2, n) = if tb {
        (b[r - 1], b[r - 2])
    } else {
        (b[r - 2], b[r - 1])
    };
    (k == k2).then(|| (a[..r - 2].iter().product(), m, k, n))
}

/// A projection laid out as MXNet's interleaved attention operators read it: (steps,
/// batch, heads · parts · D), where part `t` of head `h` is its query, key or value.
#[derive(Debug, Clone, Copy)]
pub struct Interleaved {
    pub steps: usize,
    pub batch: usize,
    pub heads: usize,
    pub parts: usize,
    pub head_dim: usize,
}

impl Interleaved {
    /// The layout of `shape` with `heads` heads of `parts` projections each.
    pub fn of(op: &'static str, shape: &[usize], heads: usize, parts: usize) -> KResult<Self> {
        let &[steps, batch, width] = shape else {
            return Err(KernelError::new(op, format!("{shape:?} must have 3 dims")));
        };
        let per = heads * parts;
        if per == 0 || width == 0 || !width.is_multiple_of(per) {
            return Err(KernelError::new(
                op,
                format!("the last dim {width} is not a positive multiple of {parts}·{heads}"),
            ));
        }
        Ok(Interleaved {
            steps,
            batch,
            heads,
            parts,
            head_dim: width / per,
        })
    }

    /// The offset of element `d` of part `t` of head `h` at step `l` of sequence `b`.
    pub fn at(&self, l: usize, b: usize, h: usize, t: usize, d: usize) -> usize {
        ((l * self.batch + b) * self.heads * self.parts + h * self.parts + t) * self.head_dim + d
    }
}

/// MXNet's four interleaved attention products (see
/// [`crate::ops::linear::InterleavedMatmul`]): `x` is queries_keys_values, queries or
/// keys_values, `y` keys_values or the attention.
pub fn interleaved_matmul(
    kind: crate::ops::linear::AttentionKind,
    heads: usize,
    x: &Array,
    y: Option<&Array>,
) -> KResult<Array> {
    use crate::ops::linear::{AttentionKind as K, InterleavedMatmul};
    const OP: &str = "interleaved_matmul";
    let second = || y.ok_or_else(|| KernelError::new(OP, "the second input is missing"));
    match kind {
        K::SelfattQk | K::EncdecQk => {
            // (queries, part) and (keys, part).
            let (q, qt, k, kt) = if kind == K::SelfattQk {
                let qkv = Interleaved::of(OP, &x.shape, heads, 3)?;
                (qkv, 0, qkv, 1)
            } else {
                let q = Interleaved::of(OP, &x.shape, heads, 1)?;
                let kv = Interleaved::of(OP, &second()?.shape, heads, 2)?;
                if kv.batch != q.batch || kv.head_dim != q.head_dim {
                    return Err(KernelError::new(OP, "queries and keys_values differ"));
                }
                (q, 0, kv, 0)
            };
            let keys = if kind == K::SelfattQk { x } else { second()? };
            let scale = InterleavedMatmul::scale(q.head_dim);
            let mut out = Array::zeros(vec![q.batch * heads, q.steps, k.steps])?;
            for b in 0..q.batch {
                for h in 0..heads {
                    for i in 0..q.steps {
                        for j in 0..k.steps {
                            let mut acc = 0.0;
                            for d in 0..q.head_dim {
                                acc +=
                                    x.data[q.at(i, b, h, qt, d)] * keys.data[k.at(j, b, h, kt, d)];
                            }
                            out.data[((b * heads + h) * q.steps + i) * k.steps + j] = acc * scale;
                        }
                    }
                }
            }
            Ok(out)
        }
        K::SelfattValatt | K::EncdecValatt => {
            let (v, vt) = if kind == K::SelfattValatt {
                (Interleaved::of(OP, &x.shape, heads, 3)?, 2)
            } else {
                (Interleaved::of(OP, &x.shape, heads, 2)?, 1)
            };
            let att = second()?;
            let &[ab, lq, lk] = att.shape.as_slice() else {
                return Err(KernelError::new(OP, "the attention must have 3 dims"));
            };
            if ab != v.batch * heads || lk != v.steps {
                return Err(KernelError::new(
                    OP,
                    format!("attention {:?} does not fit", att.shape),
                ));
            }
            let dd = v.head_dim;
            let mut out = Array::zeros(vec![lq, v.batch, heads * dd])?;
            for b in 0..v.batch {
                for h in 0..heads {
                    for i in 0..lq {
                        for d in 0..dd {
                            let mut acc = 0.0;
                            for j in 0..lk {
                                acc += att.data[((b * heads + h) * lq + i) * lk + j]
                                    * x.data[v.at(j, b, h, vt, d)];
                            }
                            out.data[(i * v.batch + b) * heads * dd + h * dd + d] = acc;
                        }
                    }
                }
            }
            Ok(out)
        }
    }
}

/// The gradients of [`interleaved_matmul`] for the output gradient `g`: of `x`, and of
/// `y` when the product has a second input. Each element of the inputs gets exactly the
/// products the forward pass formed with it; the parts a product does not read (the
/// values of a `qk`, the queries and keys of a `valatt`) get zero.
pub fn interleaved_matmul_grad(
    kind: crate::ops::linear::AttentionKind,
    heads: usize,
    x: &Array,
    y: Option<&Array>,
    g: &Array,
) -> KResult<(Array, Option<Array>)> {
    use crate::ops::linear::{AttentionKind as K, InterleavedMatmul};
    const OP: &str = "interleaved_matmul";
    let out = interleaved_matmul(kind, heads, x, y)?;
    g.expect_shape(OP, "output gradient", &out.shape)?;
    let second = || y.ok_or_else(|| KernelError::new(OP, "the second input is missing"));
    let mut dx = Array::zeros(x.shape.clone())?;
    match kind {
        K::SelfattQk | K::EncdecQk => {
            let self_att = kind == K::SelfattQk;
            let q = Interleaved::of(OP, &x.shape, heads, if self_att { 3 } else { 1 })?;
            let keys = if self_att { x } else { second()? };
            let (k, kt) = if self_att {
                (q, 1)
            } else {
                (Interleaved::of(OP, &keys.shape, heads, 2)?, 0)
            };
            let mut dk = Array::zeros(keys.shape.clone())?;
            let scale = InterleavedMatmul::scale(q.head_dim);
            for b in 0..q.batch {
                for h in 0..heads {
                    for i in 0..q.steps {
                        for j in 0..k.steps {
                            let gv = g.data[((b * heads + h) * q.steps + i) * k.steps + j] * scale;
                            for d in 0..q.head_dim {
                                let (qo, ko) = (q.at(i, b, h, 0, d), k.at(j, b, h, kt, d));
                                dx.data[qo] += gv * keys.data[ko];
                                dk.data[ko] += gv * x.data[qo];
                            }
                        }
                    }
                }
            }
            if self_att {
                for (a, b) in dx.data.iter_mut().zip(&dk.data) {
                    *a += b;
                }
                Ok((dx, None))
            } else {
                Ok((dx, Some(dk)))
            }
        }
        K::SelfattValatt | K::EncdecValatt => {
            let (v, vt) = if kind == K::SelfattValatt {
                (Interleaved::of(OP, &x.shape, heads, 3)?, 2)
            } else {
                (Interleaved::of(OP, &x.shape, heads, 2)?, 1)
            };
            let att = second()?;
            let (lq, lk) = (out.shape[0], v.steps);
            let dd = v.head_dim;
            let mut datt = Array::zeros(att.shape.clone())?;
            for b in 0..v.batch {
                for h in 0..heads {
                    for i in 0..lq {
                        for j in 0..lk {
                            let ao = ((b * heads + h) * lq + i) * lk + j;
                            let mut acc = 0.0;
                            for d in 0..dd {
                                let gv = g.data[(i * v.batch + b) * heads * dd + h * dd + d];
                                let vo = v.at(j, b, h, vt, d);
                                acc += gv * x.data[vo];
                                dx.data[vo] += att.data[ao] * gv;
                            }
                            datt.data[ao] = acc;
                        }
                    }
                }
            }
            Ok((dx, Some(datt)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::{pseudo_random, ramp};
    use crate::ops::linear::AttentionKind;

    #[test]
    fn hand_checked() {
        let x = Array::new(vec![2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.0, 1.0]).unwrap();
        let w = Array::new(vec![2, 3], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
        let y = fully_connected(&x, &w, Some(&Array::vector(&[0.5, -1.0])), true).unwrap();
        assert_eq!(y.shape, vec![2, 2]);
        assert_eq!(y.data, vec![1.5, 5.0, -0.5, -1.0]);
    }

    #[test]
    fn flatten_merges_trailing_axes_or_keeps_leading_ones() {
        let x = Array::new(vec![2, 2, 3], (0..12).map(f64::from).collect()).unwrap();
        let w6 = Array::new(vec![1, 6], vec![1.0; 6]).unwrap();
        let y = fully_connected(&x, &w6, None, true).unwrap();
        assert_eq!(y.shape, vec![2, 1]);
        assert_eq!(y.data, vec![15.0, 51.0]);
        let w3 = Array::new(vec![1, 3], vec![1.0; 3]).unwrap();
        let y = fully_connected(&x, &w3, None, false).unwrap();
        assert_eq!(y.shape, vec![2, 2, 1]);
        assert_eq!(y.data, vec![3.0, 12.0, 21.0, 30.0]);
        assert!(fully_connected(&x, &w3, None, true).is_err());
        assert!(fully_connected(&x, &w6, None, false).is_err());
        assert!(fully_connected(&x, &w3, Some(&Array::vector(&[1.0, 2.0])), false).is_err());
    }

    #[test]
    fn batch_dot_by_hand_and_with_transposes() {
        // [[1, 2], [3, 4]] · [[5, 6], [7, 8]] and the same with both transposed.
        let a = Array::new(vec![1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Array::new(vec![1, 2, 2], vec![5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(
            batch_dot(&a, &b, false, false).unwrap().data,
            vec![19.0, 22.0, 43.0, 50.0]
        );
        // aᵀ·bᵀ = (b·a)ᵀ: b·a = [[23, 34], [31, 46]].
        assert_eq!(
            batch_dot(&a, &b, true, true).unwrap().data,
            vec![23.0, 31.0, 34.0, 46.0]
        );
        let x = ramp(vec![2, 3, 2, 4]);
        let y = pseudo_random(vec![2, 3, 4, 5], 1);
        let z = batch_dot(&x, &y, false, false).unwrap();
        assert_eq!(z.shape, vec![2, 3, 2, 5]);
        assert!(batch_dot(&x, &x, false, false).is_err());
        assert!(batch_dot(&x, &x, false, true).is_ok());
    }

    #[test]
    fn self_attention_equals_batch_dot_of_the_deinterleaved_heads() {
        let (l, b, h, d) = (3, 2, 2, 4);
        let qkv = pseudo_random(vec![l, b, h * 3 * d], 7);
        let lay = Interleaved::of("t", &qkv.shape, h, 3).unwrap();
        // Part t of every head as (b·h, l, d).
        let part = |t: usize| {
            let mut v = Vec::new();
            for bb in 0..b {
                for hh in 0..h {
                    for ll in 0..l {
                        for dd in 0..d {
                            v.push(qkv.data[lay.at(ll, bb, hh, t, dd)]);
                        }
                    }
                }
            }
            Array::new(vec![b * h, l, d], v).unwrap()
        };
        let qk = interleaved_matmul(AttentionKind::SelfattQk, h, &qkv, None).unwrap();
        let want = batch_dot(&part(0), &part(1), false, true).unwrap();
        for (g, w) in qk.data.iter().zip(&want.data) {
            assert!((g - w * 0.5).abs() < 1e-12);
        }
        let att = pseudo_random(vec![b * h, l, l], 8);
        let va = interleaved_matmul(AttentionKind::SelfattValatt, h, &qkv, Some(&att)).unwrap();
        assert_eq!(va.shape, vec![l, b, h * d]);
        let want = batch_dot(&att, &part(2), false, false).unwrap();
        // want is (b·h, l, d); the output (l, b, h·d).
        for bb in 0..b {
            for hh in 0..h {
                for ll in 0..l {
                    for dd in 0..d {
                        let g = va.data[(ll * b + bb) * h * d + hh * d + dd];
                        let w = want.data[((bb * h + hh) * l + ll) * d + dd];
                        assert!((g - w).abs() < 1e-12);
                    }
                }
            }
        }
        assert!(interleaved_matmul(AttentionKind::SelfattQk, 5, &qkv, None).is_err());
    }
}
