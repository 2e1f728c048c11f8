//! MXNet 1.9.1's deformable convolutions, 2-D: `_contrib_DeformableConvolution` (DCNv1)
//! and `_contrib_ModulatedDeformableConvolution` (DCNv2).
//!
//! Both sample the data once per (deformable group, kernel tap, output position) at the
//! tap's ordinary position `(ho·s − p + i·d, wo·s − p + j·d)` plus its offset `(dy, dx)`
//! (the offset's channels `2·tap` and `2·tap + 1` of the group's block), computed in
//! float32 as MXNet does (the integer position converted, then the offset added). The
//! samples of each group of channels form MXNet's column matrix (im2col), which is
//! multiplied by that group's weight, and the bias is added after.
//!
//! The two versions sample differently at the border, as MXNet 1.9.1's CPU kernels do
//! (checked against the installed MXNet; its GPU kernels differ and are not what the
//! fixtures record):
//!
//! * DCNv1 (`deformable_im2col_cpu`): a position outside `[0, H) × [0, W)` gives 0; one in
//!   the last row (column) reads that row alone: the lower corner is clamped to the
//!   plane and the fraction dropped, so every corner read is inside.
//! * DCNv2 (`modulated_deformable_im2col`'s CPU kernel): a position with `h ≤ −1`,
//!   `h ≥ H`, `w ≤ −1` or `w ≥ W` gives 0; otherwise the four corners are weighted as
//!   usual and a corner outside the plane counts as 0. The sample is then multiplied by
//!   the mask (float32).
//!
//! A NaN offset fails every comparison and gives 0 in both.
//!
//! [`deformable_conv_values`] is the computation the reference interpreter and ward's
//! tract kernel share. The sampling positions and bilinear weights are float32 as MXNet
//! computes them; the values (data, mask, weight, bias) are summed in the element type
//! [`Value`]: float32 in the tract kernel ([`deformable_conv_f32`]), as MXNet's column
//! matrix and GEMM hold them (the sum over each output's taps runs in order here), and
//! float64 in the reference interpreter ([`deformable_conv`]), whose output is then linear
//! in the data, the mask and the weight as the gradient's finite differences need.

#![allow(
    clippy::indexing_slicing,
    reason = "the kernel indexes slices whose lengths deformable_conv_f32 checks against the shapes `infer` checked before; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use std::ops::{Add, AddAssign, Mul};

use super::{Array, KResult, KernelError};
use crate::ops::conv::DeformableConv;
use crate::ops::OpDef;

/// The element type values are summed in: `f32` (MXNet's) or `f64` (the interpreter's).
pub trait Value:
    Copy + Default + From<f32> + Add<Output = Self> + Mul<Output = Self> + AddAssign
{
}

impl Value for f32 {}
impl Value for f64 {}

/// One bilinear sample: the four corners' offsets in their plane (`None` for a corner MXNet
/// reads as 0) and their float32 weights `hh·hw, hh·lw, lh·hw, lh·lw`, in MXNet's order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub corners: [Option<usize>; 4],
    pub weights: [f32; 4],
    /// The position's fractions `(lh, lw)` past its low corner (0 along an axis clamped
    /// to DCNv1's last row or column), which the offsets' gradient weighs by.
    pub frac: [f32; 2],
}

impl Sample {
    /// The derivatives of the sample at `plane` along the position's rows and columns
    /// (MXNet's `get_coordinate_weight` for `bp_dir` 0 and 1): each corner's value times
    /// its weight's derivative, a corner MXNet reads as 0 counting 0.
    pub fn slopes(&self, plane: &[f64]) -> [f64; 2] {
        let v = |k: usize| {
            self.corners[k]
                .and_then(|i| plane.get(i))
                .copied()
                .unwrap_or(0.0)
        };
        let (lh, lw) = (f64::from(self.frac[0]), f64::from(self.frac[1]));
        let (hh, hw) = (1.0 - lh, 1.0 - lw);
        [
            hw * (v(2) - v(0)) + lw * (v(3) - v(1)),
            hh * (v(1) - v(0)) + lh * (v(3) - v(2)),
        ]
    }
}

impl Sample {
    /// The sampled value, `w1·v1 + w2·v2 + w3·v3 + w4·v4` in float32 as MXNet sums it.
    pub fn value<T: Value>(&self, plane: &[T]) -> T {
        let term = |k: usize| {
            let v = self.corners[k]
                .and_then(|i| plane.get(i))
                .copied()
                .unwrap_or_default();
            T::from(self.weights[k]) * v
        };
        term(0) + term(1) + term(2) + term(3)
    }
}

/// The sample at float32 position `(h, w)` of a `height × width` plane, `None` where MXNet
/// gives 0 (see the module's documentation for the two versions' borders).
pub fn sample(modulated: bool, height: usize, width: usize, h: f32, w: f32) -> Option<Sample> {
    let (hf, wf) = (height as f32, width as f32);
    let inside = if modulated {
        h > -1.0 && w > -1.0 && h < hf && w < wf
    } else {
        h >= 0.0 && w >= 0.0 && h < hf && w < wf
    };
    if !inside {
        return None;
    }
    // Inside: |h| < height and |w| < width, which are sizes of a real tensor.
    let (mut h, mut w) = (h, w);
    let (hi, wi) = (height as i64, width as i64);
    let mut h_low = h.floor() as i64;
    let mut w_low = w.floor() as i64;
    let (h_high, w_high);
    if !modulated && h_low >= hi - 1 {
        h_low = hi - 1;
        h_high = h_low;
        h = h_low as f32;
    } else {
        h_high = h_low + 1;
    }
    if !modulated && w_low >= wi - 1 {
        w_low = wi - 1;
        w_high = w_low;
        w = w_low as f32;
    } else {
        w_high = w_low + 1;
    }
    let lh = h - h_low as f32;
    let lw = w - w_low as f32;
    let (hh, hw) = (1.0 - lh, 1.0 - lw);
    let at = |y: i64, x: i64| -> Option<usize> {
        if (0..hi).contains(&y) && (0..wi).contains(&x) {
            usize::try_from(y * wi + x).ok()
        } else {
            None
        }
    };
    Some(Sample {
        corners: [
            at(h_low, w_low),
            at(h_low, w_high),
            at(h_high, w_low),
            at(h_high, w_high),
        ],
        weights: [hh * hw, hh * lw, lh * hw, lh * lw],
        frac: [lh, lw],
    })
}

/// The sizes of one deformable convolution, from shapes `infer` accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub filters: usize,
    pub kh: usize,
    pub kw: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Geometry {
    /// Checks the inputs' shapes (in the node's input order) as shape inference does.
    pub fn new(op: &DeformableConv, shapes: &[&[usize]]) -> Result<Geometry, String> {
        let ins: Vec<Option<&[usize]>> = shapes.iter().map(|s| Some(*s)).collect();
        let (lo, hi) = op.arity();
        if ins.len() < lo || ins.len() > hi {
            return Err(format!("{} inputs, expected {lo}", ins.len()));
        }
        let out = op.infer(&ins)?;
        let (Some(&[batch, filters, out_h, out_w]), Some(&[_, channels, height, width])) =
            (out.first().map(Vec::as_slice), shapes.first().copied())
        else {
            return Err("shapes are not 4-D".into());
        };
        let &[kh, kw] = op.kernel.as_slice() else {
            return Err(format!("kernel {:?} is not 2-D", op.kernel));
        };
        Ok(Geometry {
            batch,
            channels,
            height,
            width,
            filters,
            kh,
            kw,
            out_h,
            out_w,
        })
    }

    /// The output's shape.
    pub fn out_shape(&self) -> [usize; 4] {
        [self.batch, self.filters, self.out_h, self.out_w]
    }

    /// Output positions per plane.
    pub fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Kernel taps.
    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }
}

/// What [`group_samples`] gives: each sample (`None`: MXNet's 0) and its mask value.
pub type GroupSamples<T> = Vec<(Option<Sample>, T)>;

/// The samples of image `n`'s deformable group `g`, indexed `[tap][position]` (MXNet's
/// column rows of one channel), `None` where MXNet gives 0; and, for DCNv2, each sample's
/// mask value.
pub fn group_samples<T: Value>(
    op: &DeformableConv,
    geo: &Geometry,
    offset: &[f32],
    mask: Option<&[T]>,
    n: usize,
    g: usize,
) -> GroupSamples<T> {
    let (taps, positions) = (geo.taps(), geo.positions());
    let dg = op.deformable_groups;
    let off_base = (n * dg + g) * 2 * taps * positions;
    let mask_base = (n * dg + g) * taps * positions;
    let (sh, sw) = (op.stride[0] as i64, op.stride[1] as i64);
    let (ph, pw) = (op.pad[0] as i64, op.pad[1] as i64);
    let (dh, dw) = (op.dilation[0] as i64, op.dilation[1] as i64);
    let mut out = Vec::with_capacity(taps * positions);
    for i in 0..geo.kh {
        for j in 0..geo.kw {
            let tap = i * geo.kw + j;
            for ho in 0..geo.out_h {
                for wo in 0..geo.out_w {
                    let p = ho * geo.out_w + wo;
                    let dy = offset[off_base + (2 * tap) * positions + p];
                    let dx = offset[off_base + (2 * tap + 1) * positions + p];
                    // MXNet converts the integer position to float32, then adds.
                    let y = (ho as i64 * sh - ph + i as i64 * dh) as f32 + dy;
                    let x = (wo as i64 * sw - pw + j as i64 * dw) as f32 + dx;
                    let m = mask.map_or(T::from(1.0), |m| m[mask_base + tap * positions + p]);
                    out.push((sample(op.modulated, geo.height, geo.width, y, x), m));
                }
            }
        }
    }
    out
}

/// The column matrix of image `n`'s channel group `group` (`groups` split the channels):
/// `(C/groups · kh · kw) × (Ho · Wo)` samples, row `(c·kh + i)·kw + j`, as MXNet's im2col
/// lays it out.
pub fn columns<T: Value>(
    op: &DeformableConv,
    geo: &Geometry,
    x: &[T],
    offset: &[f32],
    mask: Option<&[T]>,
    n: usize,
    group: usize,
) -> Vec<T> {
    let cg = geo.channels / op.groups;
    let per_dg = geo.channels / op.deformable_groups;
    let (taps, positions) = (geo.taps(), geo.positions());
    let plane = geo.height * geo.width;
    let mut col = Vec::with_capacity(cg * taps * positions);
    let mut cached: Option<(usize, GroupSamples<T>)> = None;
    for c in group * cg..(group + 1) * cg {
        let dgi = c / per_dg;
        if cached.as_ref().is_none_or(|(d, _)| *d != dgi) {
            cached = Some((dgi, group_samples(op, geo, offset, mask, n, dgi)));
        }
        let Some((_, samples)) = cached.as_ref() else {
            continue;
        };
        let data = &x[(n * geo.channels + c) * plane..(n * geo.channels + c + 1) * plane];
        for (s, m) in samples {
            let v = s.map_or(T::default(), |s| s.value(data));
            col.push(if op.modulated { v * *m } else { v });
        }
    }
    col
}

/// The inputs of one deformable convolution: values in the element type, offsets in
/// float32 (the sampling positions are MXNet's float32 ones).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a, T> {
    pub x: &'a [T],
    pub offset: &'a [f32],
    pub mask: Option<&'a [T]>,
    pub weight: &'a [T],
    pub bias: Option<&'a [T]>,
}

impl<'a, T> Inputs<'a, T> {
    /// Splits `values` (one slice per input, in the node's order, offsets included) by
    /// the op's inputs.
    fn of(op: &DeformableConv, values: &[&'a [T]], offset: &'a [f32]) -> Option<Self> {
        let wi = op.weight_input();
        Some(Inputs {
            x: values.first()?,
            offset,
            mask: if op.modulated {
                Some(values.get(2)?)
            } else {
                None
            },
            weight: values.get(wi)?,
            bias: if op.bias {
                Some(values.get(wi + 1)?)
            } else {
                None
            },
        })
    }
}

/// MXNet's deformable convolution of `ins` (shapes `shapes`, in the node's order):
/// the output `(N, F, Ho, Wo)` and its values, summed in `T`.
pub fn deformable_conv_values<T: Value>(
    op: &DeformableConv,
    shapes: &[&[usize]],
    ins: &Inputs<'_, T>,
) -> Result<([usize; 4], Vec<T>), String> {
    let geo = Geometry::new(op, shapes)?;
    let count = |i: usize| {
        shapes
            .get(i)
            .and_then(|s| ward_core::tensor::element_count(s))
    };
    let wi = op.weight_input();
    let lengths_match = count(0) == Some(ins.x.len())
        && count(1) == Some(ins.offset.len())
        && ins.mask.is_none_or(|m| count(2) == Some(m.len()))
        && count(wi) == Some(ins.weight.len())
        && ins.bias.is_none_or(|b| count(wi + 1) == Some(b.len()));
    if !lengths_match || ins.mask.is_some() != op.modulated || ins.bias.is_some() != op.bias {
        return Err("the inputs' values do not match their shapes".into());
    }
    let (cg, fg) = (geo.channels / op.groups, geo.filters / op.groups);
    let rows = cg * geo.taps();
    let positions = geo.positions();
    let mut out = vec![T::default(); geo.batch * geo.filters * positions];
    for n in 0..geo.batch {
        for g in 0..op.groups {
            let col = columns(op, &geo, ins.x, ins.offset, ins.mask, n, g);
            for fl in 0..fg {
                let f = g * fg + fl;
                let y0 = (n * geo.filters + f) * positions;
                let y = &mut out[y0..y0 + positions];
                let w = &ins.weight[f * rows..(f + 1) * rows];
                for (k, &wv) in w.iter().enumerate() {
                    let row = &col[k * positions..(k + 1) * positions];
                    for (acc, &c) in y.iter_mut().zip(row) {
                        *acc += wv * c;
                    }
                }
                if let Some(b) = ins.bias {
                    let bv = b[f];
                    for acc in y.iter_mut() {
                        *acc += bv;
                    }
                }
            }
        }
    }
    Ok((geo.out_shape(), out))
}

/// MXNet's deformable convolution in float32, as MXNet computes it. The inputs are flat
/// row-major slices in the node's order (data, offset, the mask if modulated, weight, the
/// bias if any) with their shapes; returns the output `(N, F, Ho, Wo)` and its values.
pub fn deformable_conv_f32(
    op: &DeformableConv,
    shapes: &[&[usize]],
    inputs: &[&[f32]],
) -> Result<([usize; 4], Vec<f32>), String> {
    let offset = inputs.get(1).ok_or("no offset input")?;
    let ins = Inputs::of(op, inputs, offset).ok_or("too few inputs")?;
    deformable_conv_values(op, shapes, &ins)
}

/// The offsets of a node's inputs as MXNet holds them, float32.
pub fn offsets_f32(offset: &Array) -> Vec<f32> {
    offset.data.iter().map(|&v| v as f32).collect()
}

/// MXNet's deformable convolution of the node's inputs (data, offset, the mask if
/// modulated, weight, the bias if any) for the reference interpreter: positions from the
/// float32 offsets as MXNet computes them, values summed in float64.
pub fn deformable_conv(ins: &[&Array], op: &DeformableConv) -> KResult<Array> {
    let name = if op.modulated {
        "ModulatedDeformableConvolution"
    } else {
        "DeformableConvolution"
    };
    let err = |m: String| KernelError::new(name, m);
    let shapes: Vec<&[usize]> = ins.iter().map(|a| a.shape.as_slice()).collect();
    let values: Vec<&[f64]> = ins.iter().map(|a| a.data.as_slice()).collect();
    let offset = offsets_f32(ins.get(1).ok_or_else(|| err("no offset input".into()))?);
    let inputs = Inputs::of(op, &values, &offset).ok_or_else(|| err("too few inputs".into()))?;
    let (shape, out) = deformable_conv_values(op, &shapes, &inputs).map_err(err)?;
    Array::new(shape.to_vec(), out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn op(modulated: bool) -> DeformableConv {
        DeformableConv {
            kernel: vec![1, 1],
            stride: vec![1, 1],
            dilation: vec![1, 1],
            pad: vec![0, 0],
            groups: 1,
            deformable_groups: 1,
            modulated,
            bias: false,
            im2col_step: modulated.then_some(64),
        }
    }

    /// A 1×1 kernel of weight 1 over a 4×4 ramp 1..16, every offset `(dy, dx)`: the first
    /// and last output rows, as MXNet 1.9.1 gives them (DCNv1, DCNv2 with mask 1).
    fn rows(modulated: bool, dy: f32, dx: f32) -> (Vec<f32>, Vec<f32>) {
        let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let mut off = vec![dy; 16];
        off.extend(vec![dx; 16]);
        let mask = vec![1.0f32; 16];
        let w = [1.0f32];
        let o = op(modulated);
        let (shapes, inputs): (Vec<&[usize]>, Vec<&[f32]>) = if modulated {
            (
                vec![&[1, 1, 4, 4], &[1, 2, 4, 4], &[1, 1, 4, 4], &[1, 1, 1, 1]],
                vec![&x, &off, &mask, &w],
            )
        } else {
            (
                vec![&[1, 1, 4, 4], &[1, 2, 4, 4], &[1, 1, 1, 1]],
                vec![&x, &off, &w],
            )
        };
        let (_, y) = deformable_conv_f32(&o, &shapes, &inputs).unwrap();
        (y[..4].to_vec(), y[12..].to_vec())
    }

    #[test]
    fn borders_are_mxnet_cpu_kernels() {
        // Half a pixel above the plane: DCNv1 gives 0, DCNv2 half the first row.
        assert_eq!(rows(false, -0.5, 0.0).0, vec![0.0; 4]);
        assert_eq!(rows(true, -0.5, 0.0).0, vec![0.5, 1.0, 1.5, 2.0]);
        // Past the last column by half a pixel is outside in both.
        assert_eq!(
            rows(false, 0.0, -0.5),
            (vec![0.0, 1.5, 2.5, 3.5], vec![0.0, 13.5, 14.5, 15.5])
        );
        assert_eq!(
            rows(true, 0.0, -0.5),
            (vec![0.5, 1.5, 2.5, 3.5], vec![6.5, 13.5, 14.5, 15.5])
        );
        // In the last row, DCNv1 reads that row alone; DCNv2 weights a zero row below.
        assert_eq!(rows(false, 3.5, 0.0).0, vec![13.0, 14.0, 15.0, 16.0]);
        assert_eq!(rows(true, 3.5, 0.0).0, vec![6.5, 7.0, 7.5, 8.0]);
        assert_eq!(rows(false, 0.25, 3.0).1, vec![16.0, 0.0, 0.0, 0.0]);
        assert_eq!(rows(true, 0.25, 3.0).1, vec![12.0, 0.0, 0.0, 0.0]);
        // Exactly −1 is outside both; NaN is outside both.
        assert_eq!(rows(true, -1.0, 0.0).0, vec![0.0; 4]);
        assert_eq!(rows(false, f32::NAN, 0.0).0, vec![0.0; 4]);
        assert_eq!(rows(true, f32::NAN, 0.0).0, vec![0.0; 4]);
    }

    #[test]
    fn refuses_mismatched_offsets() {
        let o = op(false);
        let x = vec![0.0f32; 16];
        let off = vec![0.0f32; 16];
        let w = [1.0f32];
        let err = deformable_conv_f32(
            &o,
            &[&[1, 1, 4, 4], &[1, 1, 4, 4], &[1, 1, 1, 1]],
            &[&x, &off, &w],
        )
        .unwrap_err();
        assert!(err.contains("offset"), "{err}");
    }
}
