//! 2-D convolution, channels first (NCHW), forward and both gradients, as im2col and
//! matrix products (col2im for the data gradient).
//!
//! MXNet's `Convolution`: output pixel `(oy, ox)` of channel `o` in group `g` sums
//! `w[o, c, ky, kx] · x[c, oy·s − p + ky·d, ox·s − p + kx·d]` over the group's input
//! channels and the kernel, with zeros outside the input. The work is split by image
//! across rayon's threads; each image's products run on one thread.

#![allow(
    clippy::indexing_slicing,
    reason = "indices are below extents that `Conv2d::new` computed with checked arithmetic and every public function checked its slices' lengths against; the property tests compare with the reference interpreter"
)]

use rayon::prelude::*;

use crate::direct::{self, WeightStrips};
use crate::error::{check_len, KernelError};
use crate::matmul::{gemm, gemm_parallel, MatMut, MatRef};
use crate::panels::{self, gemm_panels, PanelsA, Rows};

const KERNEL: &str = "conv2d";

/// How many partial sums the weight gradient of a small weight is split into (at most):
/// enough to keep two to four cores busy, and fixed so the sum's rounding never depends on
/// the thread count.
pub const WEIGHT_GRAD_GROUPS: usize = 4;

/// Up to this many values of partial weight gradients in all (4 MiB), the weight gradient
/// is summed in per-thread partials; above, in runs straight into the gradient.
pub const MAX_PARTIAL_VALUES: usize = 1 << 20;

/// Pixels one product of the weight gradient sums over at least (its reduction; see
/// `Conv2d::images_per_weight_product`). Longer runs change the speed little (the
/// matrix kernel sums in blocks of 256 anyway) but change the rounding: when every layer
/// was summed in runs, runs of 256 pixels took the narrow ResNet-18 trajectory fixture
/// (tests/fixtures/trajectories) off MXNet's path after step 14 (loss off by 1.3e-4 at
/// step 19, as a tie flipped), while runs of 1, 16 and 128 stayed within 1e-6 of it over
/// all 20 steps.
pub const MIN_WEIGHT_PRODUCT_COLUMNS: usize = 128;

/// The most values a run's column matrix of the weight gradient holds (32 MiB).
pub const MAX_WEIGHT_COLUMNS: usize = 1 << 23;

/// Columns a convolution's matrix product should have at least (see
/// `Conv2d::images_per_product`): `matrixmultiply` runs a 512-row, 4,608-deep product at
/// 28 GFLOP/s with 16 columns, 80 with 128 and 88 with 256 on this project's machine.
pub const MIN_PRODUCT_COLUMNS: usize = 256;

/// Planes of at least this many pixels (three tiles of [`direct::PIXELS`]) take the
/// direct kernels ([`direct`]) image by image, for the forward pass and the data gradient
/// of a stride-1 convolution; smaller planes take them over several images at once, so
/// that the tiles (which then span images) fill. On ResNet-18's last stage at 112² (4×4
/// planes, batch 16), against the panel product: the forward pass 5.5–5.7 ms against
/// 8.1–8.9 at one thread and 3.0–3.2 against 4.1 at two, the data gradient 6.4–7.4
/// against 7.0–7.6 and 3.3–3.7 against 3.7–3.9. Strided data gradients keep the panel
/// product.
pub const MIN_DIRECT_PIXELS: usize = 3 * direct::PIXELS;

/// The geometry of a 2-D convolution, checked: every size below is non-zero and every
/// product fits in `usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    pub batch: usize,
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    out_h: usize,
    out_w: usize,
    /// Whether the passes may run on ward's own AVX-512 kernels ([`direct`], [`panels`]);
    /// off only to compare them with the matrix crate.
    own_kernels: bool,
}

/// Arguments of [`Conv2d::new`] other than the input's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvWindow {
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Conv2d {
    /// Checks a convolution of an input `[batch, in_channels, in_h, in_w]`.
    pub fn new(input: [usize; 4], window: ConvWindow) -> Result<Conv2d, KernelError> {
        let [batch, in_channels, in_h, in_w] = input;
        let ConvWindow {
            out_channels,
            kernel,
            stride,
            pad,
            dilation,
            groups,
        } = window;
        let bad = |reason: String| Err(KernelError::geometry(KERNEL, reason));
        if [batch, in_channels, in_h, in_w, out_channels, groups]
            .iter()
            .chain(&kernel)
            .chain(&stride)
            .chain(&dilation)
            .any(|&v| v == 0)
        {
            return bad(format!("a size is 0 (input {input:?}, window {window:?})"));
        }
        if in_channels % groups != 0 || out_channels % groups != 0 {
            return bad(format!(
                "{in_channels} input and {out_channels} output channels do not split into {groups} groups"
            ));
        }
        let out = |size: usize, axis: usize| -> Option<usize> {
            let padded = size.checked_add(pad[axis].checked_mul(2)?)?;
            let span = (kernel[axis] - 1)
                .checked_mul(dilation[axis])?
                .checked_add(1)?;
            padded.checked_sub(span).map(|room| room / stride[axis] + 1)
        };
        let (Some(out_h), Some(out_w)) = (out(in_h, 0), out(in_w, 1)) else {
            return bad(format!(
                "the dilated kernel {kernel:?} (dilation {dilation:?}) is larger than the padded input {in_h}×{in_w} (pad {pad:?})"
            ));
        };
        let g = Conv2d {
            batch,
            in_channels,
            in_h,
            in_w,
            out_channels,
            kernel,
            stride,
            pad,
            dilation,
            groups,
            out_h,
            out_w,
            own_kernels: true,
        };
        // Every buffer size must be representable; later arithmetic relies on it.
        let sizes = [
            g.checked_input_len(),
            g.checked_output_len(),
            g.checked_weight_len(),
            g.checked_col_len(),
        ];
        if sizes.iter().any(Option::is_none) {
            return bad(format!("the buffers of {input:?} with {window:?} overflow"));
        }
        Ok(g)
    }

    /// The same convolution with every product on the matrix crate, never on ward's own
    /// kernels: what a CPU without AVX-512 runs. The forward passes give the same bits,
    /// and tests hold the gradients of both to their terms' sums.
    pub fn with_matrix_crate_only(mut self) -> Conv2d {
        self.own_kernels = false;
        self
    }

    pub fn out_h(&self) -> usize {
        self.out_h
    }

    pub fn out_w(&self) -> usize {
        self.out_w
    }

    fn checked_input_len(&self) -> Option<usize> {
        self.batch
            .checked_mul(self.in_channels)?
            .checked_mul(self.in_h)?
            .checked_mul(self.in_w)
    }

    fn checked_output_len(&self) -> Option<usize> {
        self.batch
            .checked_mul(self.out_channels)?
            .checked_mul(self.out_h)?
            .checked_mul(self.out_w)
    }

    fn checked_weight_len(&self) -> Option<usize> {
        self.out_channels
            .checked_mul(self.in_channels / self.groups)?
            .checked_mul(self.kernel[0])?
            .checked_mul(self.kernel[1])
    }

    fn checked_col_len(&self) -> Option<usize> {
        self.group_k()
            .checked_mul(self.out_h.checked_mul(self.out_w)?)
    }

    /// Elements of the input `[batch, in_channels, in_h, in_w]`.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_h * self.in_w
    }

    /// Elements of the output `[batch, out_channels, out_h, out_w]`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_h * self.out_w
    }

    /// Elements of the weight `[out_channels, in_channels / groups, kh, kw]`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * (self.in_channels / self.groups) * self.kernel[0] * self.kernel[1]
    }

    /// Rows of one group's column matrix: its input channels times the kernel's taps.
    fn group_k(&self) -> usize {
        (self.in_channels / self.groups)
            .saturating_mul(self.kernel[0])
            .saturating_mul(self.kernel[1])
    }

    fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    /// A 1×1 window with stride 1 and no padding reads the input as its own column
    /// matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pad == [0, 0]
    }

    /// The output columns `ox` whose input column `ox·s − p + kx·d` lies inside the
    /// input, as a half-open range, with that input column for the first.
    fn valid_columns(&self, kx: usize) -> (usize, usize, isize) {
        let offset = (kx * self.dilation[1]) as isize - self.pad[1] as isize;
        let s = self.stride[1] as isize;
        let w = self.in_w as isize;
        // ox·s + offset ≥ 0  and  ox·s + offset < w
        let lo = if offset >= 0 {
            0
        } else {
            ((-offset) + s - 1) / s
        };
        let hi = if w - offset <= 0 {
            0
        } else {
            ((w - offset + s - 1) / s).min(self.out_w as isize)
        };
        let lo = lo.min(hi);
        (lo as usize, hi as usize, lo * s + offset)
    }

    /// Fills image `x`'s patches for group `g` into `col` (`group_k` rows of
    /// `row_stride` values): row `r`'s `out_plane` values start at `r·row_stride +
    /// offset`, so several images' columns can sit side by side in one matrix.
    fn im2col(&self, x: &[f32], g: usize, col: &mut [f32], row_stride: usize, offset: usize) {
        let cg = self.in_channels / self.groups;
        let taps = self.kernel[0] * self.kernel[1];
        for (c, rows) in col.chunks_mut(taps * row_stride).take(cg).enumerate() {
            self.im2col_channel(x, g, c, rows, row_stride, offset);
        }
    }

    /// [`Self::im2col`]'s rows of input channel `c` of group `g`: `rows` holds the
    /// kernel's taps, `row_stride` values each.
    fn im2col_channel(
        &self,
        x: &[f32],
        g: usize,
        c: usize,
        rows: &mut [f32],
        row_stride: usize,
        offset: usize,
    ) {
        let cg = self.in_channels / self.groups;
        let [kh, kw] = self.kernel;
        let p = self.out_plane();
        let plane = &x[(g * cg + c) * self.in_plane()..][..self.in_plane()];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut rows[(ky * kw + kx) * row_stride + offset..][..p];
                let (lo, hi, first_ix) = self.valid_columns(kx);
                for oy in 0..self.out_h {
                    let out_row = &mut row[oy * self.out_w..][..self.out_w];
                    let iy = (oy * self.stride[0] + ky * self.dilation[0]) as isize
                        - self.pad[0] as isize;
                    if iy < 0 || iy >= self.in_h as isize || lo == hi {
                        out_row.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * self.in_w..][..self.in_w];
                    out_row[..lo].fill(0.0);
                    out_row[hi..].fill(0.0);
                    let first = first_ix as usize;
                    if self.stride[1] == 1 {
                        out_row[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                    } else {
                        for (o, v) in out_row[lo..hi].iter_mut().enumerate() {
                            *v = src[first + o * self.stride[1]];
                        }
                    }
                }
            }
        }
    }

    /// Group `g`'s column matrix of `images` images (`x` holds them, one after
    /// another): `group_k × images·out_plane`, image `i`'s columns at `i·out_plane`. One
    /// image with a pointwise window is its own column matrix; otherwise the patches are
    /// written into `col`.
    fn columns<'a>(&self, x: &'a [f32], images: usize, g: usize, col: &'a mut [f32]) -> &'a [f32] {
        let p = self.out_plane();
        let len = self.group_k() * p;
        if images == 1 && self.is_pointwise() {
            return &x[g * len..][..len];
        }
        let image_in = self.in_channels * self.in_plane();
        for (i, x_n) in x.chunks_exact(image_in).take(images).enumerate() {
            self.im2col(x_n, g, col, images * p, i * p);
        }
        &col[..len * images]
    }

    /// How many images one matrix product covers: enough that their output planes give
    /// [`MIN_PRODUCT_COLUMNS`] columns (a 4×4 plane alone makes a product too thin for
    /// the matrix kernel), at most half the batch so that two cores share the work.
    /// It depends on the geometry alone, never on the thread count, so the sums' rounding
    /// does not either.
    pub fn images_per_product(&self) -> usize {
        MIN_PRODUCT_COLUMNS
            .div_ceil(self.out_plane().max(1))
            .clamp(1, self.batch.div_ceil(2).max(1))
    }

    /// Copies group `g`'s output channels of `images` images (`y`, one after another)
    /// into the matrix `out` (`og × images·out_plane`, image `i` at column
    /// `i·out_plane`).
    fn gather(&self, y: &[f32], g: usize, out: &mut [f32], images: usize) {
        let (p, og) = (self.out_plane(), self.out_channels / self.groups);
        let cp = images * p;
        for (i, y_n) in y
            .chunks_exact(self.out_channels * p)
            .take(images)
            .enumerate()
        {
            for o in 0..og {
                out[o * cp + i * p..][..p].copy_from_slice(&y_n[(g * og + o) * p..][..p]);
            }
        }
    }

    /// The inverse of [`Self::gather`]: the matrix `out` back into the images `y`.
    fn scatter(&self, out: &[f32], g: usize, y: &mut [f32], images: usize) {
        let (p, og) = (self.out_plane(), self.out_channels / self.groups);
        let cp = images * p;
        for (i, y_n) in y
            .chunks_exact_mut(self.out_channels * p)
            .take(images)
            .enumerate()
        {
            for o in 0..og {
                y_n[(g * og + o) * p..][..p].copy_from_slice(&out[o * cp + i * p..][..p]);
            }
        }
    }

    /// Adds `col`'s patches for group `g` back into image `dx` (the adjoint of
    /// [`Self::im2col`]).
    /// `col` is laid out as [`Self::im2col`] writes it (`row_stride`, `offset`).
    fn col2im(&self, col: &[f32], g: usize, dx: &mut [f32], row_stride: usize, offset: usize) {
        let cg = self.in_channels / self.groups;
        let [kh, kw] = self.kernel;
        let p = self.out_plane();
        let in_plane = self.in_plane();
        for c in 0..cg {
            let plane = &mut dx[(g * cg + c) * in_plane..][..in_plane];
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = &col[((c * kh + ky) * kw + kx) * row_stride + offset..][..p];
                    let (lo, hi, first_ix) = self.valid_columns(kx);
                    if lo == hi {
                        continue;
                    }
                    for oy in 0..self.out_h {
                        let iy = (oy * self.stride[0] + ky * self.dilation[0]) as isize
                            - self.pad[0] as isize;
                        if iy < 0 || iy >= self.in_h as isize {
                            continue;
                        }
                        let dst = &mut plane[iy as usize * self.in_w..][..self.in_w];
                        let src = &row[oy * self.out_w..][..self.out_w][lo..hi];
                        let first = first_ix as usize;
                        if self.stride[1] == 1 {
                            dst[first..first + src.len()]
                                .iter_mut()
                                .zip(src)
                                .for_each(|(d, v)| *d += v);
                        } else {
                            for (o, v) in src.iter().enumerate() {
                                dst[first + o * self.stride[1]] += v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// `y = conv(x, w) + bias`: `x` `[batch, in_channels, in_h, in_w]`, `w`
    /// `[out_channels, in_channels/groups, kh, kw]`, `bias` `[out_channels]`, `y`
    /// `[batch, out_channels, out_h, out_w]` (overwritten). Images are taken
    /// [`Self::images_per_product`] at a time, one matrix product per group each.
    pub fn forward(
        &self,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        check_len(KERNEL, "w", w.len(), self.weight_len())?;
        self.check_forward(x, bias, y)?;
        let (k, p) = (self.group_k(), self.out_plane());
        let og = self.out_channels / self.groups;
        let image_in = self.in_channels * self.in_plane();
        let image_out = self.out_channels * p;
        if self.runs_direct() {
            let strips = self.weight_strips(w)?;
            return self.forward_strips(x, &strips, bias, false, y);
        }
        let per = self.images_per_product();
        let col_len = if per == 1 && self.is_pointwise() {
            0
        } else {
            k * p * per
        };
        let out_len = if per == 1 { 0 } else { og * p * per };
        y.par_chunks_mut(per * image_out)
            .zip(x.par_chunks(per * image_in))
            .try_for_each_init(
                || (vec![0.0f32; col_len], vec![0.0f32; out_len]),
                |(col, out), (y_c, x_c)| -> Result<(), KernelError> {
                    let images = y_c.len() / image_out;
                    let cp = images * p;
                    for g in 0..self.groups {
                        let y_g = if images == 1 {
                            MatMut::row_major(&mut y_c[g * og * p..][..og * p], og, p)?
                        } else {
                            MatMut::row_major(&mut out[..og * cp], og, cp)?
                        };
                        let cols = MatRef::row_major(self.columns(x_c, images, g, col), k, cp)?;
                        let w_g = MatRef::row_major(&w[g * og * k..][..og * k], og, k)?;
                        gemm(1.0, w_g, cols, 0.0, y_g)?;
                        if images > 1 {
                            self.scatter(&out[..og * cp], g, y_c, images);
                        }
                    }
                    self.finish(y_c, bias, false);
                    Ok(())
                },
            )
    }

    /// The input gradient: `dx` (overwritten) from `dy` and `w`, images batched as in
    /// [`Self::forward`].
    pub fn backward_data(&self, dy: &[f32], w: &[f32], dx: &mut [f32]) -> Result<(), KernelError> {
        check_len(KERNEL, "dy", dy.len(), self.output_len())?;
        check_len(KERNEL, "w", w.len(), self.weight_len())?;
        check_len(KERNEL, "dx", dx.len(), self.input_len())?;
        if self.own_kernels && panels::available() {
            if let Some(pad) = self.transposed_pad() {
                return self.backward_data_direct(dy, w, dx, pad);
            }
        }
        let (k, p) = (self.group_k(), self.out_plane());
        let og = self.out_channels / self.groups;
        let image_in = self.in_channels * self.in_plane();
        let image_out = self.out_channels * p;
        let per = self.images_per_product();
        // One pointwise image's columns are its input gradient itself.
        let direct = per == 1 && self.is_pointwise();
        let col_len = if direct { 0 } else { k * p * per };
        let weights = self.data_weight_panels(w);
        let gathered_len = if per == 1 || weights.is_some() {
            0
        } else {
            og * p * per
        };
        dx.par_chunks_mut(per * image_in)
            .zip(dy.par_chunks(per * image_out))
            .try_for_each_init(
                || (vec![0.0f32; col_len], vec![0.0f32; gathered_len]),
                |(col, gathered), (dx_c, dy_c)| -> Result<(), KernelError> {
                    let images = dy_c.len() / image_out;
                    let cp = images * p;
                    if !direct {
                        dx_c.fill(0.0);
                    }
                    for g in 0..self.groups {
                        let dx_g = if direct {
                            MatMut::row_major(&mut dx_c[g * k * p..][..k * p], k, p)?
                        } else {
                            MatMut::row_major(&mut col[..k * cp], k, cp)?
                        };
                        if let Some(weights) = &weights {
                            let planes = Planes {
                                conv: self,
                                y: dy_c,
                                images,
                                g,
                            };
                            gemm_panels(&weights[g], &planes, 0.0, dx_g)?;
                        } else {
                            let w_t = MatRef::row_major(&w[g * og * k..][..og * k], og, k)?.t();
                            let dy_g = if images == 1 {
                                MatRef::row_major(&dy_c[g * og * p..][..og * p], og, p)?
                            } else {
                                let gathered = &mut gathered[..og * cp];
                                self.gather(dy_c, g, gathered, images);
                                MatRef::row_major(gathered, og, cp)?
                            };
                            gemm(1.0, w_t, dy_g, 0.0, dx_g)?;
                        }
                        if !direct {
                            for (i, dx_n) in dx_c.chunks_exact_mut(image_in).enumerate() {
                                self.col2im(&col[..k * cp], g, dx_n, cp, i * p);
                            }
                        }
                    }
                    Ok(())
                },
            )
    }

    /// The zero-padded input of the direct kernels ([`direct`]).
    fn padded_input(&self) -> Padded {
        Padded {
            h: self.in_h,
            w: self.in_w,
            pad: self.pad,
        }
    }

    /// For each row (input channel, tap) of group `g`'s column matrix, the offset of
    /// its value for output pixel (0, 0) in an image's zero-padded input.
    fn padded_taps(&self, g: usize) -> Vec<usize> {
        let cg = self.in_channels / self.groups;
        self.padded_input()
            .taps(g * cg, cg, self.kernel, self.dilation)
    }

    /// For each output pixel of `images` images, the offset to add to a tap's
    /// ([`Self::padded_taps`]) in their padded inputs, one after another.
    fn padded_pixels(&self, images: usize) -> Vec<usize> {
        let out = [self.out_h, self.out_w];
        self.padded_input()
            .pixels(images, self.in_channels, out, self.stride)
    }

    /// [`Self::forward`] by the direct kernel ([`direct`]): per image, its input copied
    /// once into a zero-padded buffer (unless there is no padding), then every group's
    /// output computed from it and the weight's strips, laid out once per call.
    fn forward_direct(
        &self,
        x: &[f32],
        strips: &[WeightStrips],
        bias: Option<&[f32]>,
        relu: bool,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        let p = self.out_plane();
        let og = self.out_channels / self.groups;
        let padded = self.pad != [0, 0];
        let padding = self.padded_input();
        let taps: Vec<Vec<usize>> = (0..self.groups).map(|g| self.padded_taps(g)).collect();
        let pixels = self.padded_pixels(1);
        let image_in = self.in_channels * self.in_plane();
        let image_out = self.out_channels * p;
        let padded_len = if padded {
            self.in_channels * padding.plane_len()
        } else {
            0
        };
        y.par_chunks_mut(image_out)
            .zip(x.par_chunks(image_in))
            .try_for_each_init(
                || vec![0.0f32; padded_len],
                |buffer, (y_n, x_n)| -> Result<(), KernelError> {
                    let source: &[f32] = if padded {
                        padding.copy_into(x_n, buffer);
                        buffer
                    } else {
                        x_n
                    };
                    for g in 0..self.groups {
                        let y_g = &mut y_n[g * og * p..][..og * p];
                        direct::forward(source, &taps[g], &pixels, &strips[g], y_g)?;
                    }
                    self.finish(y_n, bias, relu);
                    Ok(())
                },
            )
    }

    /// Whether the forward pass runs on the direct kernels here (ward's own kernels, on a
    /// CPU with AVX-512F): where it does, [`Self::pack`] and [`Self::forward_packed`]
    /// serve a caller that runs one weight many times.
    pub fn runs_direct(&self) -> bool {
        self.own_kernels && panels::available()
    }

    /// The lengths of a forward pass's input, output and bias.
    fn check_forward(&self, x: &[f32], bias: Option<&[f32]>, y: &[f32]) -> Result<(), KernelError> {
        check_len(KERNEL, "x", x.len(), self.input_len())?;
        check_len(KERNEL, "y", y.len(), self.output_len())?;
        match bias {
            Some(b) => check_len(KERNEL, "bias", b.len(), self.out_channels),
            None => Ok(()),
        }
    }

    /// Refuses packed weights where the direct kernels do not run.
    fn require_direct(&self) -> Result<(), KernelError> {
        if self.runs_direct() {
            Ok(())
        } else {
            Err(KernelError::geometry(
                KERNEL,
                "packed weights need the direct kernels (AVX-512F)",
            ))
        }
    }

    /// The weight `w` laid out once for [`Self::forward_packed`].
    pub fn pack(&self, w: &[f32]) -> Result<PackedWeights, KernelError> {
        check_len(KERNEL, "w", w.len(), self.weight_len())?;
        self.require_direct()?;
        Ok(PackedWeights {
            strips: self.weight_strips(w)?,
            weight_len: self.weight_len(),
            groups: self.groups,
        })
    }

    /// [`Self::forward`] with the weight packed beforehand ([`Self::pack`], by a
    /// convolution of the same weight shape and groups); the same bits.
    pub fn forward_packed(
        &self,
        x: &[f32],
        w: &PackedWeights,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        self.forward_packed_relu(x, w, bias, false, y)
    }

    /// [`Self::forward_packed`], then with `relu` each output's `y > 0 ? y : 0` (NaN gives
    /// 0, as MXNet's `Activation(relu)` and tract's `max(y, 0)` do) in the same pass as
    /// the bias: a plan's ReLU after a convolution is then no pass of its own.
    pub fn forward_packed_relu(
        &self,
        x: &[f32],
        w: &PackedWeights,
        bias: Option<&[f32]>,
        relu: bool,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        self.check_forward(x, bias, y)?;
        check_len(KERNEL, "packed w", w.weight_len, self.weight_len())?;
        check_len(KERNEL, "packed groups", w.groups, self.groups)?;
        self.require_direct()?;
        self.forward_strips(x, &w.strips, bias, relu, y)
    }

    /// The direct forward pass from strips: image by image for planes of at least
    /// [`MIN_DIRECT_PIXELS`], several images at once below.
    fn forward_strips(
        &self,
        x: &[f32],
        strips: &[WeightStrips],
        bias: Option<&[f32]>,
        relu: bool,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        if self.out_plane() >= MIN_DIRECT_PIXELS {
            self.forward_direct(x, strips, bias, relu, y)
        } else {
            self.forward_direct_batched(x, strips, bias, relu, y)
        }
    }

    /// Each group's weight in strips for the direct kernel ([`WeightStrips::new`]).
    fn weight_strips(&self, w: &[f32]) -> Result<Vec<WeightStrips>, KernelError> {
        let (k, og) = (self.group_k(), self.out_channels / self.groups);
        (0..self.groups)
            .map(|g| MatRef::row_major(&w[g * og * k..][..og * k], og, k).map(WeightStrips::new))
            .collect()
    }

    /// Adds `bias` to every output plane of the images in `y`, then with `relu` takes
    /// each output `v` to `v > 0 ? v : 0` (NaN and −0 to +0).
    fn finish(&self, y: &mut [f32], bias: Option<&[f32]>, relu: bool) {
        let p = self.out_plane();
        let rectify = |v: f32| if v > 0.0 { v } else { 0.0 };
        match (bias, relu) {
            (None, false) => {}
            (None, true) => y.iter_mut().for_each(|v| *v = rectify(*v)),
            (Some(b), _) => {
                for y_n in y.chunks_exact_mut(self.out_channels * p) {
                    for (plane, &bo) in y_n.chunks_exact_mut(p).zip(b) {
                        if relu {
                            plane.iter_mut().for_each(|v| *v = rectify(*v + bo));
                        } else {
                            plane.iter_mut().for_each(|v| *v += bo);
                        }
                    }
                }
            }
        }
    }

    /// [`Self::forward`] of small planes by the direct kernel over several images at once:
    /// the batch's inputs padded once, and each task's images' pixels taken together so
    /// that the tiles fill.
    fn forward_direct_batched(
        &self,
        x: &[f32],
        strips: &[WeightStrips],
        bias: Option<&[f32]>,
        relu: bool,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        let og = self.out_channels / self.groups;
        let taps: Vec<Vec<usize>> = (0..self.groups).map(|g| self.padded_taps(g)).collect();
        let padding = self.padded_input();
        let source = padding.copy_batch(x, self.batch * self.in_channels);
        let pixels = self.padded_pixels(self.batch);
        direct_batched(&source, &taps, &pixels, strips, og, self.out_plane(), y)?;
        self.finish(y, bias, relu);
        Ok(())
    }

    /// The padding of `dy` that turns the data gradient of a stride-1 convolution into
    /// a forward one (`dx = conv(dy padded, W flipped and transposed)`), when it is not
    /// negative: `(kernel − 1)·dilation − pad` on each axis.
    fn transposed_pad(&self) -> Option<[usize; 2]> {
        if self.stride != [1, 1] {
            return None;
        }
        let axis = |a: usize| ((self.kernel[a] - 1) * self.dilation[a]).checked_sub(self.pad[a]);
        Some([axis(0)?, axis(1)?])
    }

    /// [`Self::backward_data`] of a stride-1 convolution by the direct forward kernel:
    /// `dy` copied into buffers padded by [`Self::transposed_pad`] and convolved with the
    /// weight flipped in both taps and transposed in its channels, image by image for
    /// planes of at least [`MIN_DIRECT_PIXELS`] and several images at once below (as
    /// [`Self::forward_direct_batched`]).
    /// Its sums run over (output channel, tap), where the matrix path sums each tap's
    /// product over the output channels and then the taps (col2im): the same terms in
    /// another order.
    fn backward_data_direct(
        &self,
        dy: &[f32],
        w: &[f32],
        dx: &mut [f32],
        [py, px]: [usize; 2],
    ) -> Result<(), KernelError> {
        let (cg, og) = (
            self.in_channels / self.groups,
            self.out_channels / self.groups,
        );
        let padding = Padded {
            h: self.out_h,
            w: self.out_w,
            pad: [py, px],
        };
        let strips = self.flipped_strips(w)?;
        let taps: Vec<Vec<usize>> = (0..self.groups)
            .map(|g| padding.taps(g * og, og, self.kernel, self.dilation))
            .collect();
        let in_plane = self.in_plane();
        let out = [self.in_h, self.in_w];
        if in_plane < MIN_DIRECT_PIXELS {
            let source = padding.copy_batch(dy, self.batch * self.out_channels);
            let pixels = padding.pixels(self.batch, self.out_channels, out, [1, 1]);
            return direct_batched(&source, &taps, &pixels, &strips, cg, in_plane, dx);
        }
        let pixels = padding.pixels(1, self.out_channels, out, [1, 1]);
        let image_in = self.in_channels * in_plane;
        let image_out = self.out_channels * self.out_plane();
        dx.par_chunks_mut(image_in)
            .zip(dy.par_chunks(image_out))
            .try_for_each_init(
                || vec![0.0f32; self.out_channels * padding.plane_len()],
                |padded, (dx_n, dy_n)| -> Result<(), KernelError> {
                    padding.copy_into(dy_n, padded);
                    for g in 0..self.groups {
                        let dx_g = &mut dx_n[g * cg * in_plane..][..cg * in_plane];
                        direct::forward(padded, &taps[g], &pixels, &strips[g], dx_g)?;
                    }
                    Ok(())
                },
            )
    }

    /// Each group's weight flipped in both taps and transposed in its channels, in strips
    /// for the direct kernel: group g's row c, column (o, ky', kx') is
    /// `w[g·og + o][c][kh − 1 − ky'][kw − 1 − kx']`.
    fn flipped_strips(&self, w: &[f32]) -> Result<Vec<WeightStrips>, KernelError> {
        let (cg, og) = (
            self.in_channels / self.groups,
            self.out_channels / self.groups,
        );
        let taps = self.kernel[0] * self.kernel[1];
        check_len(KERNEL, "w", w.len(), self.weight_len())?;
        let size = og * cg * taps;
        (0..self.groups)
            .map(|g| WeightStrips::flipped(&w[g * size..][..size], og, cg, taps))
            .collect()
    }

    /// The weight gradient by the direct kernel ([`direct::weight_grad`]): the batch's
    /// inputs copied once into zero-padded buffers, each group's output gradient laid
    /// out by pixel, and every tile of taps by channels summed over all the batch's
    /// pixels.
    fn weight_grad_direct(&self, x: &[f32], dy: &[f32], dw: &mut [f32]) -> Result<(), KernelError> {
        let (k, p) = (self.group_k(), self.out_plane());
        let og = self.out_channels / self.groups;
        let source = self
            .padded_input()
            .copy_batch(x, self.batch * self.in_channels);
        let pixels = self.padded_pixels(self.batch);
        for g in 0..self.groups {
            let strips =
                direct::GradientStrips::new(dy, [self.batch, self.out_channels, p], g, og)?;
            let dw_g = &mut dw[g * og * k..][..og * k];
            direct::weight_grad(&source, &self.padded_taps(g), &pixels, &strips, dw_g)?;
        }
        Ok(())
    }

    /// Each group's weight transposed and laid out for [`gemm_panels`] (the data
    /// gradient's product), once per call and shared by every thread; `None` where the
    /// panels' kernel does not run (no AVX-512F) or the products have fewer rows than one
    /// panel, which the matrix crate's path serves with less padding.
    fn data_weight_panels(&self, w: &[f32]) -> Option<Vec<PanelsA>> {
        let (k, og) = (self.group_k(), self.out_channels / self.groups);
        if !self.own_kernels || k < panels::MR || !panels::available() {
            return None;
        }
        (0..self.groups)
            .map(|g| {
                let w_g = MatRef::row_major(w.get(g * og * k..)?.get(..og * k)?, og, k).ok()?;
                Some(PanelsA::new(w_g.t()))
            })
            .collect()
    }

    /// How many images one product of the weight gradient covers: enough for
    /// [`MIN_WEIGHT_PRODUCT_COLUMNS`] pixels (the product's reduction), at most the batch,
    /// and few enough that a run's column matrix stays within [`MAX_WEIGHT_COLUMNS`]
    /// values. It depends on the geometry alone, never on the thread count.
    pub fn images_per_weight_product(&self) -> usize {
        let per_image = self.group_k().saturating_mul(self.out_plane()).max(1);
        MIN_WEIGHT_PRODUCT_COLUMNS
            .div_ceil(self.out_plane().max(1))
            .min(MAX_WEIGHT_COLUMNS / per_image)
            .clamp(1, self.batch)
    }

    /// Group `g`'s column matrix of `images` images into `col` (`group_k ×
    /// images·out_plane`), an input channel's rows per task.
    fn im2col_parallel(&self, x: &[f32], images: usize, g: usize, col: &mut [f32]) {
        let p = self.out_plane();
        let taps = self.kernel[0] * self.kernel[1];
        let image_in = self.in_channels * self.in_plane();
        let cp = images * p;
        col.par_chunks_mut(taps * cp)
            .enumerate()
            .for_each(|(c, rows)| {
                for (i, x_n) in x.chunks_exact(image_in).take(images).enumerate() {
                    self.im2col_channel(x_n, g, c, rows, cp, i * p);
                }
            });
    }

    /// `dw` from the batch split into at most [`WEIGHT_GRAD_GROUPS`] fixed groups, each
    /// summed into its own buffer (its images [`Self::images_per_product`] at a time, one
    /// product each) on one thread; the buffers are added in order at the end. No thread
    /// waits on another until then, which wins while the partial buffers are small.
    fn weight_grad_by_partials(
        &self,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
    ) -> Result<(), KernelError> {
        let (k, p) = (self.group_k(), self.out_plane());
        let og = self.out_channels / self.groups;
        let image_in = self.in_channels * self.in_plane();
        let image_out = self.out_channels * p;
        let weight_len = self.weight_len();
        let groups = self.batch.min(WEIGHT_GRAD_GROUPS);
        let per_group = self.batch.div_ceil(groups);
        let per = self.images_per_product().min(per_group);
        let col_len = if per == 1 && self.is_pointwise() {
            0
        } else {
            k * p * per
        };
        let gathered_len = if per == 1 { 0 } else { og * p * per };
        let partials = (0..groups)
            .into_par_iter()
            .map(|group| -> Result<Vec<f32>, KernelError> {
                let mut acc = vec![0.0f32; weight_len];
                let mut col = vec![0.0f32; col_len];
                let mut gathered = vec![0.0f32; gathered_len];
                let first = group * per_group;
                let last = (first + per_group).min(self.batch);
                for start in (first..last).step_by(per) {
                    let images = per.min(last - start);
                    let cp = images * p;
                    let x_c = &x[start * image_in..][..images * image_in];
                    let dy_c = &dy[start * image_out..][..images * image_out];
                    for g in 0..self.groups {
                        let cols = self.columns(x_c, images, g, &mut col);
                        let dy_g = if images == 1 {
                            MatRef::row_major(&dy_c[g * og * p..][..og * p], og, p)?
                        } else {
                            let gathered = &mut gathered[..og * cp];
                            self.gather(dy_c, g, gathered, images);
                            MatRef::row_major(gathered, og, cp)?
                        };
                        // dWᵀ += cols · dYᵀ: the same sums as dW += dY · colsᵀ, written
                        // through a column-major view of dW, which runs faster on the
                        // thin products of small planes (80 against 61 GFLOP/s at
                        // 4,608 × 512 × 64 on this project's machine).
                        let acc_t = MatMut::strided(&mut acc[g * og * k..][..og * k], k, og, 1, k)?;
                        gemm(1.0, MatRef::row_major(cols, k, cp)?, dy_g.t(), 1.0, acc_t)?;
                    }
                }
                Ok(acc)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut sum = vec![0.0f32; weight_len];
        for part in &partials {
            sum.iter_mut().zip(part).for_each(|(s, v)| *s += v);
        }
        dw.copy_from_slice(&sum);
        Ok(())
    }

    /// `dw` from runs of [`Self::images_per_weight_product`] images (a fixed count), in
    /// order, each one product `dW += dY·colsᵀ` added straight into `dw`, the threads
    /// sharing each product and its im2col.
    ///
    /// Summing each run into `dw` rather than into per-thread partial gradients keeps the
    /// product's reduction long and its output written once per run: with partials, the
    /// last stage of ResNet-18 at 112² read and wrote a 9 MB gradient per 64 pixels and
    /// ran at 44 GFLOP/s at one thread or two.
    fn weight_grad_by_runs(
        &self,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
    ) -> Result<(), KernelError> {
        let (k, p) = (self.group_k(), self.out_plane());
        let og = self.out_channels / self.groups;
        let image_in = self.in_channels * self.in_plane();
        let image_out = self.out_channels * p;
        let per = self.images_per_weight_product();
        let mut col = vec![0.0f32; k * p * per];
        let mut gathered = vec![0.0f32; og * p * per];
        for (run, (x_c, dy_c)) in x
            .chunks(per * image_in)
            .zip(dy.chunks(per * image_out))
            .enumerate()
        {
            let images = dy_c.len() / image_out;
            let cp = images * p;
            // The first run overwrites dw; the later ones add to it, in order.
            let beta = if run == 0 { 0.0 } else { 1.0 };
            for g in 0..self.groups {
                let col = &mut col[..k * cp];
                self.im2col_parallel(x_c, images, g, col);
                let gathered = &mut gathered[..og * cp];
                self.gather(dy_c, g, gathered, images);
                let dy_g = MatRef::row_major(gathered, og, cp)?;
                let cols_t = MatRef::row_major(col, k, cp)?.t();
                gemm_parallel(1.0, dy_g, cols_t, beta, &mut dw[g * og * k..][..og * k])?;
            }
        }
        Ok(())
    }

    /// The parameter gradients: `dw` (overwritten) and, when given, `dbias`
    /// (overwritten), from `x` and `dy`. A small weight is summed in a fixed number of
    /// per-thread partial gradients (`weight_grad_by_partials`); a large one in
    /// runs of images straight into `dw`, the threads sharing each product
    /// (`weight_grad_by_runs`). Which one depends on the geometry alone, and
    /// neither's rounding depends on the thread count.
    pub fn backward_weight(
        &self,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        dbias: Option<&mut [f32]>,
    ) -> Result<(), KernelError> {
        check_len(KERNEL, "x", x.len(), self.input_len())?;
        check_len(KERNEL, "dy", dy.len(), self.output_len())?;
        check_len(KERNEL, "dw", dw.len(), self.weight_len())?;
        if let Some(db) = &dbias {
            check_len(KERNEL, "dbias", db.len(), self.out_channels)?;
        }
        if self.own_kernels && panels::available() {
            self.weight_grad_direct(x, dy, dw)?;
        } else if self.weight_len().saturating_mul(WEIGHT_GRAD_GROUPS) <= MAX_PARTIAL_VALUES {
            self.weight_grad_by_partials(x, dy, dw)?;
        } else {
            self.weight_grad_by_runs(x, dy, dw)?;
        }
        let p = self.out_plane();
        let image_out = self.out_channels * p;
        if let Some(db) = dbias {
            db.fill(0.0);
            for dy_n in dy.chunks_exact(image_out) {
                for (d, plane) in db.iter_mut().zip(dy_n.chunks_exact(p)) {
                    *d += plane.iter().sum::<f32>();
                }
            }
        }
        Ok(())
    }
}

/// Group `g`'s output channels of `images` images (`y`, one after another) as the matrix
/// `og × images·out_plane` ([`Conv2d::gather`]'s), read a piece of a row at a time.
struct Planes<'a> {
    conv: &'a Conv2d,
    y: &'a [f32],
    images: usize,
    g: usize,
}

impl Rows for Planes<'_> {
    fn rows(&self) -> usize {
        self.conv.out_channels / self.conv.groups
    }

    fn cols(&self) -> usize {
        self.images * self.conv.out_plane()
    }

    fn fill(&self, o: usize, j0: usize, out: &mut [f32]) {
        let conv = self.conv;
        let p = conv.out_plane();
        let og = conv.out_channels / conv.groups;
        let mut j = j0;
        let mut rest = out;
        while !rest.is_empty() {
            let (i, q) = (j / p, j % p);
            let run = (p - q).min(rest.len());
            let (head, tail) = rest.split_at_mut(run);
            let plane = (i * conv.out_channels + self.g * og + o) * p;
            head.copy_from_slice(&self.y[plane + q..][..run]);
            rest = tail;
            j += run;
        }
    }
}

/// A convolution's weight laid out for the direct kernels ([`Conv2d::pack`]).
#[derive(Debug, Clone)]
pub struct PackedWeights {
    strips: Vec<WeightStrips>,
    weight_len: usize,
    groups: usize,
}

/// `out` (`[batch, groups·rows, plane]`, overwritten): for each group `g`, its `rows`
/// channels of every image by [`direct::forward`] from `source` (padded planes of the
/// whole batch) with `taps[g]` and `strips[g]`, the batch's `pixels` (`plane` per image)
/// split into one run of whole images per thread, each run computed into a buffer
/// (`rows × its pixels`) and copied into the images.
fn direct_batched(
    source: &[f32],
    taps: &[Vec<usize>],
    pixels: &[usize],
    strips: &[WeightStrips],
    rows: usize,
    plane: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let groups = strips.len();
    let image = groups * rows * plane;
    let batch = out.len().checked_div(image).unwrap_or(0);
    if batch == 0 {
        return Ok(());
    }
    let per = batch.div_ceil(rayon::current_num_threads().max(1));
    out.par_chunks_mut(per * image).enumerate().try_for_each(
        |(t, out)| -> Result<(), KernelError> {
            let images = out.len() / image;
            let first = t * per * plane;
            let run = &pixels[first..first + images * plane];
            let mut sums = vec![0.0f32; rows * run.len()];
            for g in 0..groups {
                direct::forward(source, &taps[g], run, &strips[g], &mut sums)?;
                for (n, out_n) in out.chunks_exact_mut(image).enumerate() {
                    for r in 0..rows {
                        out_n[(g * rows + r) * plane..][..plane]
                            .copy_from_slice(&sums[r * run.len() + n * plane..][..plane]);
                    }
                }
            }
            Ok(())
        },
    )
}

/// Planes of `h × w` with a zero border of `pad` rows and columns, as the direct kernels
/// ([`direct`]) read them: a convolution's input, or the output gradient its stride-1
/// data gradient convolves.
#[derive(Debug, Clone, Copy)]
struct Padded {
    h: usize,
    w: usize,
    pad: [usize; 2],
}

impl Padded {
    fn width(&self) -> usize {
        self.w + 2 * self.pad[1]
    }

    fn plane_len(&self) -> usize {
        (self.h + 2 * self.pad[0]) * self.width()
    }

    /// Copies the planes of `src` (`h × w` each) into the interiors of `padded`'s (their
    /// zero borders are never written).
    fn copy_into(&self, src: &[f32], padded: &mut [f32]) {
        let wp = self.width();
        for (plane, src) in padded
            .chunks_exact_mut(self.plane_len())
            .zip(src.chunks_exact(self.h * self.w))
        {
            for (y, row) in src.chunks_exact(self.w).enumerate() {
                let at = (y + self.pad[0]) * wp + self.pad[1];
                plane[at..at + self.w].copy_from_slice(row);
            }
        }
    }

    /// `planes` planes of `src` with their zero borders, across rayon's threads (`src`
    /// itself when there is no border).
    fn copy_batch<'a>(&self, src: &'a [f32], planes: usize) -> std::borrow::Cow<'a, [f32]> {
        if self.pad == [0, 0] {
            return std::borrow::Cow::Borrowed(src);
        }
        const PLANES_PER_TASK: usize = 64;
        let mut padded = vec![0.0f32; planes * self.plane_len()];
        padded
            .par_chunks_mut(PLANES_PER_TASK * self.plane_len())
            .zip(src.par_chunks(PLANES_PER_TASK * self.h * self.w))
            .for_each(|(padded, src)| self.copy_into(src, padded));
        std::borrow::Cow::Owned(padded)
    }

    /// For each row (channel, tap) of a column matrix over `channels` planes from
    /// `first`, the offset of its value for output pixel (0, 0).
    fn taps(
        &self,
        first: usize,
        channels: usize,
        [kh, kw]: [usize; 2],
        dilation: [usize; 2],
    ) -> Vec<usize> {
        let wp = self.width();
        (0..channels * kh * kw)
            .map(|r| {
                let (c, tap) = (r / (kh * kw), r % (kh * kw));
                let (ky, kx) = (tap / kw, tap % kw);
                (first + c) * self.plane_len() + ky * dilation[0] * wp + kx * dilation[1]
            })
            .collect()
    }

    /// For each output pixel (`out`: height, width) of `images` images of `channels`
    /// padded planes, one after another, the offset to add to a tap's.
    fn pixels(
        &self,
        images: usize,
        channels: usize,
        [out_h, out_w]: [usize; 2],
        stride: [usize; 2],
    ) -> Vec<usize> {
        let (wp, image) = (self.width(), channels * self.plane_len());
        (0..images)
            .flat_map(|n| {
                (0..out_h * out_w).map(move |q| {
                    n * image + (q / out_w) * stride[0] * wp + (q % out_w) * stride[1]
                })
            })
            .collect()
    }
}
