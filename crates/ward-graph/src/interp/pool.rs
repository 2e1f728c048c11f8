//! Pooling (MXNet 1.9.1 `Pooling`): max, avg and sum over 1-D to 3-D windows, channels
//! first, `valid` (floor) or `full` (ceil) output sizes, global pooling.

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::array::{indices, strides};
use super::conv::check_window;
use super::{Array, KResult, KernelError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
    Sum,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolParams {
    pub kind: PoolKind,
    /// Ignored when `global`.
    pub kernel: Vec<usize>,
    /// Empty means 1 on every axis. Ignored when `global`.
    pub stride: Vec<usize>,
    /// Empty means 0 on every axis. Symmetric. Ignored when `global`.
    pub pad: Vec<usize>,
    /// MXNet `pooling_convention = "full"`: output sizes round up.
    pub full: bool,
    /// Pool over all spatial axes (kernel = the spatial shape, stride 1, pad 0).
    pub global: bool,
    /// For avg: divide by the window clipped to the padded input (MXNet's default, true)
    /// or by the number of input elements in it (false).
    pub count_include_pad: bool,
}

impl PoolParams {
    /// MXNet's defaults for `kernel`: stride 1, pad 0, valid, count_include_pad.
    pub fn new(kind: PoolKind, kernel: &[usize]) -> PoolParams {
        PoolParams {
            kind,
            kernel: kernel.to_vec(),
            stride: vec![1; kernel.len()],
            pad: vec![0; kernel.len()],
            full: false,
            global: false,
            count_include_pad: true,
        }
    }

    /// Global pooling of `kind`.
    pub fn global(kind: PoolKind) -> PoolParams {
        PoolParams {
            kind,
            kernel: vec![],
            stride: vec![],
            pad: vec![],
            full: false,
            global: true,
            count_include_pad: true,
        }
    }
}

/// The value MXNet's max pooling starts from and gives a window with no input element:
/// the lowest finite float32, −3.4028234663852886e38.
pub const MAX_POOL_EMPTY: f64 = f32::MIN as f64;

/// MXNet `Pooling` on channels-first data of rank 3 to 5.
///
/// Window `o` on an axis starts at `o·s − p` and spans `k`. The output size is
/// ⌊(x + 2p − k)/s⌋ + 1 (`valid`) or ⌈(x + 2p − k)/s⌉ + 1 (`full`).
/// * **max** ignores the padding: it is the largest input element in the window, found
///   as MXNet's CPU kernels do, starting from [`MAX_POOL_EMPTY`] and taking an element
///   only when it is greater. So **NaN inputs are skipped** (a window of NaNs gives
///   −3.4e38, not NaN), −∞ never comes out (a window of −∞ gives −3.4e38 too), and a
///   window holding no input element (possible with `full` or with a pad as large as
///   the kernel) gives −3.4e38. Checked against MXNet 1.9.1 for 1-, 2- and 3-D, and for
///   its oneDNN path (8 and 16 channels).
/// * **sum** adds the input elements in the window (NaN propagates).
/// * **avg** divides that sum by the window's size clipped to the padded input
///   (`min(start + k, x + p) − start` per axis, so a `full` window running past the
///   padded end is clipped) when `count_include_pad`, else by the number of input
///   elements in the window.
///
/// A window holding no input element is refused for avg: MXNet 1.9.1 gives 0 for it in
/// some ranks and NaN in others (0/0), depending on its code path, so there is no one
/// answer to copy.
pub fn pooling(x: &Array, p: &PoolParams) -> KResult<Array> {
    const OP: &str = "Pooling";
    let (out_shape, windows) = pool_windows(&x.shape, p)?;
    let mut out = Array::zeros(out_shape)?;
    for (slot, w) in out.data.iter_mut().zip(&windows) {
        *slot = match p.kind {
            PoolKind::Max => w
                .offsets
                .iter()
                .map(|&o| x.data[o])
                .fold(MAX_POOL_EMPTY, |max, v| if v > max { v } else { max }),
            PoolKind::Sum => w.offsets.iter().map(|&o| x.data[o]).sum(),
            PoolKind::Avg => {
                let divisor = w.divisor(p.count_include_pad);
                if w.offsets.is_empty() || divisor == 0 {
                    return Err(KernelError::new(
                        OP,
                        "an avg window holds no input element; MXNet 1.9.1 gives 0 or NaN there depending on its code path",
                    ));
                }
                w.offsets.iter().map(|&o| x.data[o]).sum::<f64>() / divisor as f64
            }
        };
    }
    Ok(out)
}

/// One pooling window: the input elements it holds (offsets, in order), its size
/// counted with the padding (clipped to the padded input) and the kernel's size.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolWindow {
    pub offsets: Vec<usize>,
    pub padded_size: usize,
    /// The size MXNet 1.9.1's avg gradient divides by with `count_include_pad`: the
    /// window clipped at the input's end plus twice the padding, where the forward pass
    /// clips at the end plus the padding once (they differ for `full` windows).
    pub grad_size: usize,
}

impl PoolWindow {
    /// What avg divides by: the padded size, or the input elements held.
    pub fn divisor(&self, count_include_pad: bool) -> usize {
        if count_include_pad {
            self.padded_size
        } else {
            self.offsets.len()
        }
    }
}

/// The output shape of [`pooling`] and its windows, one per output element in
/// row-major order. The kernel and its gradient share them.
pub fn pool_windows(x_shape: &[usize], p: &PoolParams) -> KResult<(Vec<usize>, Vec<PoolWindow>)> {
    const OP: &str = "Pooling";
    if !(3..=5).contains(&x_shape.len()) {
        return Err(KernelError::new(
            OP,
            format!("data must be channels-first with 1 to 3 spatial axes, got shape {x_shape:?}"),
        ));
    }
    let spatial = &x_shape[2..];
    let k = spatial.len();
    let (kernel, stride, pad) = if p.global {
        (spatial.to_vec(), vec![1; k], vec![0; k])
    } else {
        let stride = if p.stride.is_empty() {
            vec![1; p.kernel.len()]
        } else {
            p.stride.clone()
        };
        let pad = if p.pad.is_empty() {
            vec![0; p.kernel.len()]
        } else {
            p.pad.clone()
        };
        check_window(OP, &p.kernel, &[("stride", &stride), ("pad", &pad)])?;
        if p.kernel.len() != k {
            return Err(KernelError::new(
                OP,
                format!(
                    "kernel {:?} has {} dims but the data {:?} has {k} spatial axes",
                    p.kernel,
                    p.kernel.len(),
                    x_shape
                ),
            ));
        }
        (p.kernel.clone(), stride, pad)
    };
    if p.global && spatial.contains(&0) {
        return Err(KernelError::new(
            OP,
            "global pooling of an empty spatial axis",
        ));
    }
    let mut out_shape = x_shape[..2].to_vec();
    for i in 0..k {
        let padded = spatial[i]
            .checked_add(pad[i].saturating_mul(2))
            .ok_or_else(|| KernelError::new(OP, "padded size overflows"))?;
        if padded < kernel[i] {
            return Err(KernelError::new(
                OP,
                format!(
                    "kernel {} is larger than the padded input {padded} on spatial axis {i}",
                    kernel[i]
                ),
            ));
        }
        let span = padded - kernel[i];
        let steps = if p.full && !p.global {
            span.div_ceil(stride[i])
        } else {
            span / stride[i]
        };
        out_shape.push(steps + 1);
    }
    let to_i = |v: usize| i64::try_from(v).map_err(|_| KernelError::new(OP, "size too large"));
    let xs = strides(x_shape);
    let mut windows = Vec::with_capacity(out_shape.iter().product());
    for idx in indices(&out_shape) {
        let base = idx[0] * xs[0] + idx[1] * xs[1];
        // Per axis: the clipped input range and the size counted with padding.
        let mut lo = Vec::with_capacity(k);
        let mut hi = Vec::with_capacity(k);
        let mut padded_size: i64 = 1;
        let mut grad_size: i64 = 1;
        for i in 0..k {
            let start = to_i(idx[i + 2] * stride[i])? - to_i(pad[i])?;
            let end = start + to_i(kernel[i])?;
            padded_size *= end.min(to_i(spatial[i] + pad[i])?) - start;
            grad_size *= end.min(to_i(spatial[i] + 2 * pad[i])?) - start;
            let (a, b) = (start.max(0), end.min(to_i(spatial[i])?));
            lo.push(a);
            hi.push(b.max(a));
        }
        let extent: Vec<usize> = lo.iter().zip(&hi).map(|(a, b)| (b - a) as usize).collect();
        let offsets = indices(&extent)
            .map(|w| {
                let mut off = base;
                for i in 0..k {
                    off += (lo[i] as usize + w[i]) * xs[i + 2];
                }
                off
            })
            .collect();
        windows.push(PoolWindow {
            offsets,
            padded_size: usize::try_from(padded_size.max(0)).unwrap_or(0),
            grad_size: usize::try_from(grad_size.max(0)).unwrap_or(0),
        });
    }
    Ok((out_shape, windows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: Vec<usize>) -> Array {
        let n: usize = shape.iter().product();
        Array::new(shape, (1..=n).map(|v| v as f64).collect()).unwrap()
    }

    #[test]
    fn hand_checked_full_convention_with_padding() {
        // x = 1..5, k 2, s 3, p 1, full: ⌈(5+2−2)/3⌉+1 = 3 windows [-1,1) [2,4) [5,7)
        let x = ramp(vec![1, 1, 5]);
        let mut p = PoolParams::new(PoolKind::Avg, &[2]);
        p.stride = vec![3];
        p.pad = vec![1];
        p.full = true;
        // The third window holds no input element: refused for avg.
        assert!(pooling(&x, &p).is_err());
        p.kind = PoolKind::Max;
        let y = pooling(&x, &p).unwrap();
        assert_eq!(y.data, vec![1.0, 4.0, MAX_POOL_EMPTY]);
        p.kind = PoolKind::Sum;
        assert_eq!(pooling(&x, &p).unwrap().data, vec![1.0, 7.0, 0.0]);
        // x = 1..6, k 3, s 2, p 1, full: ⌈(6+2−3)/2⌉+1 = 4 windows
        // [-1,2) [1,4) [3,6) [5,8): the last is clipped to the padded end 7.
        let x = ramp(vec![1, 1, 6]);
        let mut p = PoolParams::new(PoolKind::Avg, &[3]);
        p.stride = vec![2];
        p.pad = vec![1];
        p.full = true;
        let y = pooling(&x, &p).unwrap();
        assert_eq!(y.data, vec![3.0 / 3.0, 9.0 / 3.0, 15.0 / 3.0, 6.0 / 2.0]);
        p.count_include_pad = false;
        let y = pooling(&x, &p).unwrap();
        assert_eq!(y.data, vec![3.0 / 2.0, 9.0 / 3.0, 15.0 / 3.0, 6.0 / 1.0]);
        p.full = false;
        assert_eq!(pooling(&x, &p).unwrap().shape, vec![1, 1, 3]);
    }

    #[test]
    fn avg_of_ones_counts_the_padding_or_not() {
        let x = Array::full(vec![1, 2, 4, 4], 1.0).unwrap();
        let mut p = PoolParams::new(PoolKind::Avg, &[3, 3]);
        p.pad = vec![1, 1];
        let y = pooling(&x, &p).unwrap();
        assert_eq!(y.shape, vec![1, 2, 4, 4]);
        // Corner: 4 of 9 elements are input, interior 9 of 9, edge 6 of 9.
        assert_eq!(y.get(&[0, 0, 0, 0]).unwrap(), 4.0 / 9.0);
        assert_eq!(y.get(&[0, 1, 1, 1]).unwrap(), 1.0);
        assert_eq!(y.get(&[0, 0, 0, 1]).unwrap(), 6.0 / 9.0);
        p.count_include_pad = false;
        let y = pooling(&x, &p).unwrap();
        assert!(y.data.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn max_skips_nan_and_never_returns_minus_infinity() {
        let x = Array::new(
            vec![1, 1, 6],
            vec![f64::NAN, 1.0, 2.0, f64::NAN, f64::NAN, f64::NEG_INFINITY],
        )
        .unwrap();
        let mut p = PoolParams::new(PoolKind::Max, &[2]);
        p.stride = vec![2];
        let y = pooling(&x, &p).unwrap();
        assert_eq!(y.data, vec![1.0, 2.0, MAX_POOL_EMPTY]);
        p.kind = PoolKind::Avg;
        let y = pooling(&x, &p).unwrap();
        assert!(y.data[1].is_nan() && y.data[0].is_nan() && y.data[2].is_nan());
    }

    #[test]
    fn global_pooling_ignores_the_window() {
        let x = ramp(vec![2, 3, 2, 2, 2]);
        let mut p = PoolParams::global(PoolKind::Avg);
        p.kernel = vec![7];
        let y = pooling(&x, &p).unwrap();
        assert_eq!(y.shape, vec![2, 3, 1, 1, 1]);
        assert_eq!(y.data[0], 4.5);
        let y = pooling(&x, &PoolParams::global(PoolKind::Max)).unwrap();
        assert_eq!(y.data[5], 48.0);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let x = ramp(vec![1, 1, 4, 4]);
        assert!(pooling(&x, &PoolParams::new(PoolKind::Max, &[5, 5])).is_err());
        assert!(pooling(&x, &PoolParams::new(PoolKind::Max, &[2])).is_err());
        assert!(pooling(&ramp(vec![4, 4]), &PoolParams::new(PoolKind::Max, &[2])).is_err());
        let mut p = PoolParams::new(PoolKind::Max, &[2, 2]);
        p.stride = vec![0, 1];
        assert!(pooling(&x, &p).is_err());
    }
}
