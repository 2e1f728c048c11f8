//! FullyConnected (MXNet 1.9.1 `FullyConnected`).

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
