//! Resizing of NCHW planes: bilinear interpolation to a size (MXNet 1.9.1
//! `_contrib_BilinearResize2D`) and nearest-neighbour upsampling by an integer scale
//! (MXNet `UpSampling` with `sample_type='nearest'`; its bilinear kind is a grouped
//! deconvolution and imports as one).

use serde::{Deserialize, Serialize};

use super::{expect_rank, input, OpDef, Shape, R};
use crate::limits::{MAX_RESIZE_DIM, MAX_UPSAMPLING_SCALE};

/// How `BilinearResize2D` picks its output height and width (MXNet's `mode`, with `size`
/// split by whether `scale_height` is given). Scales are `f32`, as MXNet holds them, and
/// sizes are computed as MXNet does, in `f32` and truncated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ResizeTarget {
    /// `mode='size'` without `scale_height`: the `height` and `width` attributes.
    Size { height: usize, width: usize },
    /// `mode='size'` with `scale_height`: ⌊H·scale_height⌋ × ⌊W·scale_width⌋.
    Scale { height: f32, width: f32 },
    /// `mode='odd_scale'`: ⌊H·s⌋ for an even H, ⌊(H − 1)·s⌋ + 1 for an odd one.
    OddScale { height: f32, width: f32 },
    /// `mode='like'`: the height and width (dims 2 and 3) of the second input.
    Like,
    /// An odd size less one.
    ToEvenDown,
    /// An odd size plus one.
    ToEvenUp,
    /// An even size less one.
    ToOddDown,
    /// An even size plus one.
    ToOddUp,
}

/// MXNet `_contrib_BilinearResize2D` on NCHW data. Output pixel `o` of an axis of input
/// length `I` and output length `O` reads the input at `r = o·(I − 1)/(O − 1)` with
/// `align_corners`, else at `max(0, (o + ½)·I/O − ½)`; the scale is 0 when `O` is 1.
/// See [`crate::interp::resize::bilinear_map`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BilinearResize {
    pub target: ResizeTarget,
    pub align_corners: bool,
}

/// The size `f32` arithmetic gives for `x · scale` (MXNet: a float times an integer, then
/// a cast to int), refused outside 1 to [`MAX_RESIZE_DIM`].
fn scaled(x: usize, scale: f32, what: &str) -> R<usize> {
    let v = (x as f32 * scale).trunc();
    if !(1.0..=MAX_RESIZE_DIM as f32).contains(&v) {
        return Err(format!(
            "{what} {x} × scale {scale} gives an output size of {v}, outside 1 to {MAX_RESIZE_DIM} (MXNet computes it in a 16-bit integer and gives an empty output for 0)"
        ));
    }
    Ok(v as usize)
}

fn check_size(v: usize, what: &str) -> R<usize> {
    if v == 0 || v > MAX_RESIZE_DIM {
        return Err(format!(
            "output {what} {v} is outside 1 to {MAX_RESIZE_DIM} (MXNet gives an empty output for 0)"
        ));
    }
    Ok(v)
}

fn check_scale(v: f32, what: &str) -> R<()> {
    if !v.is_finite() || v <= 0.0 || v > MAX_RESIZE_DIM as f32 {
        return Err(format!(
            "{what} {v} must be positive and at most {MAX_RESIZE_DIM}"
        ));
    }
    Ok(())
}

impl BilinearResize {
    /// The output (height, width) for data of height `h` and width `w`; `like` is the
    /// second input's shape in `like` mode.
    pub fn output_size(&self, h: usize, w: usize, like: Option<&[usize]>) -> R<(usize, usize)> {
        let odd_scaled = |x: usize, s: f32, what: &str| -> R<usize> {
            if x.is_multiple_of(2) {
                scaled(x, s, what)
            } else {
                // ⌊(x − 1)·s⌋ + 1; (x − 1)·s may be 0 here.
                let v = ((x - 1) as f32 * s).trunc();
                if !(0.0..MAX_RESIZE_DIM as f32).contains(&v) {
                    return Err(format!(
                        "{what} {x} with odd scale {s} gives an output size past {MAX_RESIZE_DIM}"
                    ));
                }
                Ok(v as usize + 1)
            }
        };
        let (oh, ow) = match self.target {
            ResizeTarget::Size { height, width } => (height, width),
            ResizeTarget::Scale { height, width } => {
                (scaled(h, height, "height")?, scaled(w, width, "width")?)
            }
            ResizeTarget::OddScale { height, width } => (
                odd_scaled(h, height, "height")?,
                odd_scaled(w, width, "width")?,
            ),
            ResizeTarget::Like => {
                let like = like.ok_or("mode like needs a second input")?;
                if like.len() < 4 {
                    return Err(format!(
                        "like {like:?} has no dims 2 and 3 to take the size from"
                    ));
                }
                (
                    like.get(2).copied().unwrap_or(0),
                    like.get(3).copied().unwrap_or(0),
                )
            }
            ResizeTarget::ToEvenDown => (h - h % 2, w - w % 2),
            ResizeTarget::ToEvenUp => (h + h % 2, w + w % 2),
            ResizeTarget::ToOddDown => (h - (1 - h % 2), w - (1 - w % 2)),
            ResizeTarget::ToOddUp => (h + (1 - h % 2), w + (1 - w % 2)),
        };
        Ok((check_size(oh, "height")?, check_size(ow, "width")?))
    }
}

impl OpDef for BilinearResize {
    fn arity(&self) -> (usize, usize) {
        if self.target == ResizeTarget::Like {
            (2, 2)
        } else {
            (1, 1)
        }
    }

    fn validate(&self) -> R<()> {
        match self.target {
            ResizeTarget::Size { height, width } => {
                check_size(height, "height")?;
                check_size(width, "width")?;
            }
            ResizeTarget::Scale { height, width } | ResizeTarget::OddScale { height, width } => {
                check_scale(height, "scale_height")?;
                check_scale(width, "scale_width")?;
            }
            _ => {}
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        self.validate()?;
        let x = input(ins, 0, "data")?;
        expect_rank("data", x, 4)?;
        let (n, c, h, w) = match x {
            [n, c, h, w] => (*n, *c, *h, *w),
            _ => return Err(format!("data {x:?} must be NCHW")),
        };
        if h == 0 || w == 0 {
            return Err(format!("data {x:?} has an empty spatial axis"));
        }
        let like = if self.target == ResizeTarget::Like {
            Some(input(ins, 1, "like")?)
        } else {
            None
        };
        let (oh, ow) = self.output_size(h, w, like)?;
        Ok(vec![vec![n, c, oh, ow]])
    }
}

/// MXNet `UpSampling` with `sample_type='nearest'`: every input (NCHW) is repeated along
/// height and width to the first input's size times `scale` — input `i` by that size over
/// its own, which must divide it and be the same for both axes — and the results are
/// concatenated along the channels, or summed (`sum`, MXNet's `multi_input_mode='sum'`,
/// which needs equal channel counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpSampling {
    pub scale: usize,
    pub sum: bool,
}

impl UpSampling {
    /// Each input's own integer scale to the output's (height, width).
    pub fn scales(&self, ins: &[&[usize]]) -> R<(Vec<usize>, Shape)> {
        let first = ins.first().ok_or("UpSampling has no input")?;
        let [n, _, h, w] = **first else {
            return Err(format!("data {first:?} must be NCHW"));
        };
        let oh = h
            .checked_mul(self.scale)
            .filter(|&v| v <= MAX_RESIZE_DIM)
            .ok_or_else(|| format!("height {h} × scale {} is past {MAX_RESIZE_DIM}", self.scale))?;
        let ow = w
            .checked_mul(self.scale)
            .filter(|&v| v <= MAX_RESIZE_DIM)
            .ok_or_else(|| format!("width {w} × scale {} is past {MAX_RESIZE_DIM}", self.scale))?;
        let mut channels = 0usize;
        let mut scales = Vec::with_capacity(ins.len());
        for (i, s) in ins.iter().enumerate() {
            let [ni, ci, hi, wi] = **s else {
                return Err(format!("input {i} {s:?} must be NCHW"));
            };
            if ni != n {
                return Err(format!(
                    "input {i} {s:?} has another batch size than input 0"
                ));
            }
            if hi == 0 || wi == 0 || oh % hi != 0 || ow % wi != 0 || oh / hi != ow / wi {
                return Err(format!(
                    "input {i} {s:?} does not scale to {oh}×{w2} by one integer factor on both axes (MXNet scales each input by output height / its height on both axes)",
                    w2 = ow
                ));
            }
            scales.push(oh / hi);
            if self.sum {
                if i > 0 && ci != channels {
                    return Err(format!(
                        "input {i} has {ci} channels, input 0 has {channels}: multi_input_mode sum needs equal channels"
                    ));
                }
                channels = ci;
            } else {
                channels = channels
                    .checked_add(ci)
                    .ok_or("the channel count overflows")?;
            }
        }
        Ok((scales, vec![n, channels, oh, ow]))
    }
}

impl OpDef for UpSampling {
    fn arity(&self) -> (usize, usize) {
        (1, usize::MAX)
    }

    fn validate(&self) -> R<()> {
        if self.scale == 0 || self.scale > MAX_UPSAMPLING_SCALE {
            return Err(format!(
                "scale {} must be 1 to {MAX_UPSAMPLING_SCALE}",
                self.scale
            ));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        self.validate()?;
        let shapes = (0..ins.len())
            .map(|i| input(ins, i, "data"))
            .collect::<R<Vec<_>>>()?;
        Ok(vec![self.scales(&shapes)?.1])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn resize(target: ResizeTarget) -> BilinearResize {
        BilinearResize {
            target,
            align_corners: true,
        }
    }

    #[test]
    fn output_sizes_follow_mxnet() {
        let x: &[usize] = &[1, 1, 5, 6];
        let out = |t| resize(t).infer(&[Some(x)]).unwrap()[0].clone();
        // Checked against MXNet 1.9.1.
        assert_eq!(
            out(ResizeTarget::Scale {
                height: 1.5,
                width: 0.7
            }),
            vec![1, 1, 7, 4]
        );
        assert_eq!(
            out(ResizeTarget::OddScale {
                height: 2.5,
                width: 0.5
            }),
            vec![1, 1, 11, 3]
        );
        assert_eq!(out(ResizeTarget::ToEvenDown), vec![1, 1, 4, 6]);
        assert_eq!(out(ResizeTarget::ToEvenUp), vec![1, 1, 6, 6]);
        assert_eq!(out(ResizeTarget::ToOddDown), vec![1, 1, 5, 5]);
        assert_eq!(out(ResizeTarget::ToOddUp), vec![1, 1, 5, 7]);
        let like = resize(ResizeTarget::Like)
            .infer(&[Some(x), Some(&[2, 3, 9, 2])])
            .unwrap();
        assert_eq!(like, vec![vec![1, 1, 9, 2]]);
    }

    #[test]
    fn empty_and_huge_outputs_are_refused() {
        let one: &[usize] = &[1, 1, 1, 2];
        assert!(resize(ResizeTarget::ToEvenDown)
            .infer(&[Some(one)])
            .unwrap_err()
            .contains("height 0"));
        let r = resize(ResizeTarget::Scale {
            height: 0.01,
            width: 1.0,
        });
        assert!(r.infer(&[Some(one)]).is_err());
        let r = resize(ResizeTarget::Scale {
            height: 1e6,
            width: 1.0,
        });
        assert!(r.validate().is_err());
        let r = resize(ResizeTarget::Scale {
            height: 30000.0,
            width: 1.0,
        });
        assert!(r.infer(&[Some(&[1, 1, 2, 2])]).is_err());
        assert!(resize(ResizeTarget::Size {
            height: 1_000_000_000,
            width: 1
        })
        .validate()
        .is_err());
    }

    #[test]
    fn upsampling_scales_each_input_to_the_first() {
        let u = UpSampling {
            scale: 2,
            sum: false,
        };
        let out = u
            .infer(&[
                Some(&[1, 2, 2, 3]),
                Some(&[1, 3, 4, 6]),
                Some(&[1, 1, 1, 3]),
            ])
            .unwrap_err();
        assert!(out.contains("input 2"), "{out}");
        let out = u
            .infer(&[Some(&[1, 2, 2, 3]), Some(&[1, 3, 4, 6])])
            .unwrap();
        assert_eq!(out, vec![vec![1, 5, 4, 6]]);
        let sum = UpSampling {
            scale: 2,
            sum: true,
        };
        assert!(sum
            .infer(&[Some(&[1, 2, 2, 3]), Some(&[1, 3, 4, 6])])
            .is_err());
        assert!(UpSampling {
            scale: 1_000_000,
            sum: false
        }
        .validate()
        .is_err());
    }
}
