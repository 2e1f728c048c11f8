//! Convolutions: `conv` and its transpose `deconv`, over 1 to 3 spatial axes in NC…
//! layout.

use serde::{Deserialize, Serialize};

use super::{
    dim, double, effective_kernel, expect_rank, expect_shape, input, positive, window_attrs,
    window_out, OpDef, Shape, R,
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
        let spatial = x.iter().skip(2);
        for (((&xi, &ki), &di), (&pi, &si)) in spatial
            .zip(&self.kernel)
            .zip(&self.dilation)
            .zip(self.pad.iter().zip(&self.stride))
        {
            out.push(window_out(
                xi,
                effective_kernel(ki, di)?,
                double(pi)?,
                si,
                false,
            )?);
        }
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
