//! Convolutions: `conv` and its transpose `deconv`, over 1 to 3 spatial axes in NC…
//! layout, and MXNet's deformable convolutions (`deformable_conv`: DCNv1's
//! `_contrib_DeformableConvolution` and DCNv2's `_contrib_ModulatedDeformableConvolution`),
//! 2-D only as MXNet 1.9.1 implements them.

use serde::{Deserialize, Serialize};

use super::{
    dim, double, effective_kernel, expect_rank, expect_shape, input, positive, product,
    window_attrs, window_out, OpDef, Shape, R,
};

/// Inputs: data (N, C, spatial…), weight (F, C/groups, kernel…), [bias (F)].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv {
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub dilation: Vec<usize>,
    /// The same padding before and after each spatial axis.
    pub pad: Vec<usize>,
    pub groups: usize,
    pub bias: bool,
}

/// Transposed convolution. Inputs: data (N, C, spatial…), weight (C, F/groups, kernel…),
/// [bias (F)].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deconv {
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub dilation: Vec<usize>,
    pub pad: Vec<usize>,
    /// Added to the output's end along each spatial axis (MXNet `adj`).
    pub output_padding: Vec<usize>,
    pub groups: usize,
    pub bias: bool,
}

/// MXNet's deformable convolution, 2-D (NCHW). Inputs: data (N, C, H, W), offset
/// (N, 2·dg·kh·kw, Ho, Wo), [mask (N, dg·kh·kw, Ho, Wo) when `modulated`], weight
/// (F, C/groups, kh, kw), [bias (F)].
///
/// Each kernel tap of each output position reads the data at its ordinary position plus
/// the offset `(dy, dx)` of that tap (channels `2·tap` and `2·tap + 1` of its deformable
/// group's block), by bilinear interpolation; DCNv2 multiplies the sample by its mask.
/// `deformable_groups` splits the data's channels (each block of C/dg channels reads its
/// own offsets and mask), `groups` splits them for the product with the weight as an
/// ordinary grouped convolution does. The two versions differ at the plane's border
/// (see [`crate::interp::deform`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeformableConv {
    /// `[kh, kw]`.
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub dilation: Vec<usize>,
    /// The same padding before and after each spatial axis.
    pub pad: Vec<usize>,
    pub groups: usize,
    pub deformable_groups: usize,
    /// DCNv2 (`_contrib_ModulatedDeformableConvolution`): a mask input scales each sample.
    pub modulated: bool,
    pub bias: bool,
    /// DCNv2's `im2col_step` (`None` for DCNv1): how many images MXNet samples at once.
    /// It does not change the numbers, but MXNet refuses a batch larger than it and not
    /// divisible by it, and so does ward.
    pub im2col_step: Option<usize>,
}

/// The largest kernel, stride, dilation or pad of a deformable convolution.
pub const MAX_DEFORMABLE_WINDOW: usize = i32::MAX as usize;

impl DeformableConv {
    /// The number of kernel taps, `kh · kw`.
    pub fn taps(&self) -> R<usize> {
        let [kh, kw] = *self.kernel.as_slice() else {
            return Err(format!(
                "kernel {:?} must have 2 dims (MXNet implements the deformable convolution in 2-D only)",
                self.kernel
            ));
        };
        kh.checked_mul(kw)
            .ok_or_else(|| format!("kernel {:?} overflows", self.kernel))
    }

    /// The index of the weight input (after data, offset and the mask).
    pub fn weight_input(&self) -> usize {
        if self.modulated {
            3
        } else {
            2
        }
    }
}

impl OpDef for DeformableConv {
    fn arity(&self) -> (usize, usize) {
        let n = self.weight_input() + 1 + usize::from(self.bias);
        (n, n)
    }

    fn validate(&self) -> R<()> {
        self.taps()?;
        window_attrs(&self.kernel, &self.stride, &self.pad, Some(&self.dilation))?;
        // MXNet's kernels hold these in a C int; the bound also keeps every sampling
        // position's integer part (`ho·stride − pad + i·dilation`) well inside an i64.
        let fields = [
            ("kernel", &self.kernel),
            ("stride", &self.stride),
            ("dilation", &self.dilation),
            ("pad", &self.pad),
        ];
        for (name, values) in fields {
            if values.iter().any(|&v| v > MAX_DEFORMABLE_WINDOW) {
                return Err(format!(
                    "{name} {values:?} is past {MAX_DEFORMABLE_WINDOW} (MXNet holds it in a C int)"
                ));
            }
        }
        positive("groups", &[self.groups])?;
        positive("deformable_groups", &[self.deformable_groups])?;
        if self.modulated != self.im2col_step.is_some() {
            return Err("im2col_step belongs to the modulated (DCNv2) convolution only".into());
        }
        if self.im2col_step == Some(0) {
            return Err("im2col_step must be positive".into());
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        self.validate()?;
        let taps = self.taps()?;
        let x = input(ins, 0, "data")?;
        let offset = input(ins, 1, "offset")?;
        let wi = self.weight_input();
        let w = input(ins, wi, "weight")?;
        expect_rank("data", x, 4)?;
        expect_rank("weight", w, 4)?;
        let (n, c, f) = (dim(x, 0, "data")?, dim(x, 1, "data")?, dim(w, 0, "weight")?);
        let (groups, dg) = (self.groups, self.deformable_groups);
        if c % groups != 0 || f % groups != 0 {
            return Err(format!(
                "{c} input and {f} output channels are not divisible by {groups} groups"
            ));
        }
        if c % dg != 0 {
            return Err(format!(
                "{c} input channels are not divisible by {dg} deformable groups"
            ));
        }
        // MXNet 1.9.1 checks this for DCNv2 only.
        if self.modulated && f % dg != 0 {
            return Err(format!(
                "{f} output channels are not divisible by {dg} deformable groups (MXNet's DCNv2 refuses it)"
            ));
        }
        if let Some(step) = self.im2col_step {
            if n > step && n % step != 0 {
                return Err(format!(
                    "batch {n} is larger than im2col_step {step} and not divisible by it (MXNet refuses it)"
                ));
            }
        }
        let mut expected_w = vec![f, c / groups];
        expected_w.extend_from_slice(&self.kernel);
        expect_shape("weight", w, &expected_w)?;
        if self.bias {
            expect_shape("bias", input(ins, wi + 1, "bias")?, &[f])?;
        }
        let spatial = conv_out_spatial(x, &self.kernel, &self.dilation, &self.pad, &self.stride)?;
        let &[ho, wo] = spatial.as_slice() else {
            return Err(format!("data {x:?} has no 2-D plane"));
        };
        let per_group = dg.checked_mul(taps).ok_or("offset channels overflow")?;
        let offset_channels = per_group.checked_mul(2).ok_or("offset channels overflow")?;
        expect_shape("offset", offset, &[n, offset_channels, ho, wo])?;
        if self.modulated {
            expect_shape("mask", input(ins, 2, "mask")?, &[n, per_group, ho, wo])?;
        }
        // The sampled columns of one image (C·kh·kw rows of Ho·Wo) are the largest buffer
        // the kernels allocate: bounded as a value is.
        let columns = [c, taps, ho, wo];
        if product(&columns).map_or(true, |e| e > crate::shape::MAX_VALUE_ELEMENTS) {
            return Err(format!(
                "the sampled columns of one image ({c} channels × {taps} taps × {ho} × {wo}) exceed {} elements",
                crate::shape::MAX_VALUE_ELEMENTS
            ));
        }
        Ok(vec![vec![n, f, ho, wo]])
    }
}

fn with_bias(bias: bool) -> (usize, usize) {
    let n = if bias { 3 } else { 2 };
    (n, n)
}

impl OpDef for Conv {
    fn arity(&self) -> (usize, usize) {
        with_bias(self.bias)
    }

    fn validate(&self) -> R<()> {
        window_attrs(&self.kernel, &self.stride, &self.pad, Some(&self.dilation))?;
        positive("groups", &[self.groups])
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let k = self.kernel.len();
        let x = input(ins, 0, "data")?;
        let w = input(ins, 1, "weight")?;
        expect_rank("data", x, k + 2)?;
        expect_rank("weight", w, k + 2)?;
        let (c, f) = (dim(x, 1, "data")?, dim(w, 0, "weight")?);
        let groups = self.groups;
        if c % groups != 0 || f % groups != 0 {
            return Err(format!(
                "{c} input and {f} output channels are not divisible by {groups} groups"
            ));
        }
        let mut expected_w = vec![f, c / groups];
        expected_w.extend_from_slice(&self.kernel);
        expect_shape("weight", w, &expected_w)?;
        if self.bias {
            expect_shape("bias", input(ins, 2, "bias")?, &[f])?;
        }
        let mut out = vec![dim(x, 0, "data")?, f];
        out.extend(conv_out_spatial(
            x,
            &self.kernel,
            &self.dilation,
            &self.pad,
            &self.stride,
        )?);
        Ok(vec![out])
    }
}

impl OpDef for Deconv {
    fn arity(&self) -> (usize, usize) {
        with_bias(self.bias)
    }

    fn validate(&self) -> R<()> {
        window_attrs(&self.kernel, &self.stride, &self.pad, Some(&self.dilation))?;
        if self.output_padding.len() != self.kernel.len() {
            return Err("output_padding and kernel differ in length".into());
        }
        positive("groups", &[self.groups])
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let k = self.kernel.len();
        let x = input(ins, 0, "data")?;
        let w = input(ins, 1, "weight")?;
        expect_rank("data", x, k + 2)?;
        let c = dim(x, 1, "data")?;
        let groups = self.groups;
        if c % groups != 0 {
            return Err(format!(
                "{c} input channels are not divisible by {groups} groups"
            ));
        }
        let f = w
            .get(1)
            .copied()
            .unwrap_or(0)
            .checked_mul(groups)
            .ok_or("output channels overflow")?;
        let mut expected_w = vec![c, f / groups];
        expected_w.extend_from_slice(&self.kernel);
        expect_shape("weight", w, &expected_w)?;
        if self.bias {
            expect_shape("bias", input(ins, 2, "bias")?, &[f])?;
        }
        let mut out = vec![dim(x, 0, "data")?, f];
        for (i, xi) in x.iter().skip(2).enumerate() {
            let attr = |v: &[usize]| v.get(i).copied().ok_or("attributes differ in length");
            let (ki, di, si, pi, oi) = (
                attr(&self.kernel)?,
                attr(&self.dilation)?,
                attr(&self.stride)?,
                attr(&self.pad)?,
                attr(&self.output_padding)?,
            );
            // stride·(x − 1) + d·(k − 1) + 1 + output_padding − 2·pad
            let grown = si
                .checked_mul(xi.saturating_sub(1))
                .and_then(|v| {
                    effective_kernel(ki, di)
                        .ok()
                        .and_then(|k| k.checked_add(oi))
                        .and_then(|k| v.checked_add(k))
                })
                .ok_or("output size overflows")?;
            let size = grown
                .checked_sub(double(pi)?)
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("pad {pi} removes the whole output along axis {}", i + 2))?;
            out.push(size);
        }
        Ok(vec![out])
    }
}

/// The spatial output dims of a convolution over `x` (N, C, spatial...): MXNet's
/// `(x + 2·pad − dilation·(kernel − 1) − 1) / stride + 1` per axis, checked.
fn conv_out_spatial(
    x: &[usize],
    kernel: &[usize],
    dilation: &[usize],
    pad: &[usize],
    stride: &[usize],
) -> R<Vec<usize>> {
    x.iter()
        .skip(2)
        .zip(kernel)
        .zip(dilation)
        .zip(pad.iter().zip(stride))
        .map(|(((&xi, &ki), &di), (&pi, &si))| {
            window_out(xi, effective_kernel(ki, di)?, double(pi)?, si, false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn conv(groups: usize) -> Conv {
        Conv {
            kernel: vec![3, 3],
            stride: vec![2, 1],
            dilation: vec![1, 2],
            pad: vec![1, 0],
            groups,
            bias: true,
        }
    }

    #[test]
    fn conv_shapes_follow_stride_pad_and_dilation() {
        let out = conv(1)
            .infer(&[Some(&[2, 4, 9, 9]), Some(&[8, 4, 3, 3]), Some(&[8])])
            .unwrap();
        // (9 + 2 − 3) / 2 + 1 = 5; (9 − 5) / 1 + 1 = 5
        assert_eq!(out, vec![vec![2, 8, 5, 5]]);
        let err = conv(1)
            .infer(&[Some(&[2, 4, 9, 9]), Some(&[8, 3, 3, 3]), Some(&[8])])
            .unwrap_err();
        assert!(err.contains("weight"), "{err}");
        let err = conv(3)
            .infer(&[Some(&[2, 4, 9, 9]), Some(&[8, 4, 3, 3]), Some(&[8])])
            .unwrap_err();
        assert!(err.contains("divisible"), "{err}");
        assert!(conv(0).validate().is_err());
    }

    #[test]
    fn deformable_conv_checks_offsets_mask_and_groups() {
        let op = |modulated: bool, groups: usize, dg: usize| DeformableConv {
            kernel: vec![2, 3],
            stride: vec![2, 1],
            dilation: vec![1, 2],
            pad: vec![1, 0],
            groups,
            deformable_groups: dg,
            modulated,
            bias: true,
            im2col_step: modulated.then_some(64),
        };
        // (7 + 2 − 2) / 2 + 1 = 4; (8 − 5) / 1 + 1 = 4; 2·2·6 offset channels.
        let x: &[usize] = &[2, 4, 7, 8];
        let (off, w, b): (&[usize], &[usize], &[usize]) = (&[2, 24, 4, 4], &[6, 2, 2, 3], &[6]);
        assert_eq!(
            op(false, 2, 2)
                .infer(&[Some(x), Some(off), Some(w), Some(b)])
                .unwrap(),
            vec![vec![2, 6, 4, 4]]
        );
        let mask: &[usize] = &[2, 12, 4, 4];
        assert_eq!(
            op(true, 2, 2)
                .infer(&[Some(x), Some(off), Some(mask), Some(w), Some(b)])
                .unwrap(),
            vec![vec![2, 6, 4, 4]]
        );
        let err = op(false, 2, 2)
            .infer(&[Some(x), Some(&[2, 24, 4, 3]), Some(w), Some(b)])
            .unwrap_err();
        assert!(err.contains("offset"), "{err}");
        let err = op(true, 2, 2)
            .infer(&[Some(x), Some(off), Some(&[2, 6, 4, 4]), Some(w), Some(b)])
            .unwrap_err();
        assert!(err.contains("mask"), "{err}");
        let err = op(false, 2, 3)
            .infer(&[Some(x), Some(off), Some(w), Some(b)])
            .unwrap_err();
        assert!(err.contains("deformable groups"), "{err}");
        let err = op(false, 2, usize::MAX)
            .infer(&[Some(x), Some(off), Some(w), Some(b)])
            .unwrap_err();
        assert!(err.contains("deformable groups"), "{err}");
        assert!(op(false, 0, 1).validate().is_err());
        assert!(op(false, 1, 0).validate().is_err());
        let mut zero = op(false, 1, 1);
        zero.kernel = vec![0, 3];
        assert!(zero.validate().is_err());
        let mut three_d = op(false, 1, 1);
        three_d.kernel = vec![3, 3, 3];
        assert!(three_d.validate().unwrap_err().contains("2 dims"));
        let mut far = op(false, 1, 1);
        far.pad = vec![1 << 62, 0];
        far.stride = vec![1 << 63, 1];
        assert!(far.validate().unwrap_err().contains("C int"));
        let mut no_step = op(true, 1, 1);
        no_step.im2col_step = None;
        assert!(no_step.validate().is_err());
    }

    #[test]
    fn deconv_shapes_grow_by_stride() {
        let d = Deconv {
            kernel: vec![4],
            stride: vec![2],
            dilation: vec![1],
            pad: vec![1],
            output_padding: vec![1],
            groups: 2,
            bias: false,
        };
        // 2·(5 − 1) + 4 + 1 − 2 = 11
        assert_eq!(
            d.infer(&[Some(&[1, 4, 5]), Some(&[4, 3, 4])]).unwrap(),
            vec![vec![1, 6, 11]]
        );
    }
}
