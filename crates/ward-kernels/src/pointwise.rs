//! Pointwise convolutions (1×1 kernel, stride 1, no padding, one group) in NCHW: for each
//! image the product `Y (out × pixels) = W (out × in) · X (in × pixels)`, then each output
//! channel's bias, then maybe a ReLU. They carry most of the multiply-adds of MobileNet,
//! SqueezeNet, DenseNet and Inception.
//!
//! The input is read where it lies: an image's channel planes are the product's rows and
//! its pixels the columns. A tile of [`ROWS`] output channels by up to 48 pixels is summed
//! in 24 AVX-512 registers, each step broadcasting one weight per output channel against
//! three vectors of one input plane; the tile's outputs are stored once, bias and ReLU
//! applied on the way. Only the weight is laid out, once, when a plan is built
//! ([`PointwiseWeights`]). tract ran these layers as a packed matrix product that over a
//! batch needs the channels last (a transpose of the input and of the output) or each
//! image copied into and out of a one-image plan: at batch 8 MobileNet 1.0's pointwise
//! layers took 1.76× MXNet's time (docs/BENCHMARKS.md, 2026-12-06 17:55).
//!
//! Each output is `Σ_k w·x` summed from zero in the order of `k` with fused
//! multiply-adds, the bias added after, as the reference interpreter orders a
//! convolution's terms; the AVX-512 tiles and the portable loops give the same bits.

#![allow(
    unsafe_code,
    reason = "the tile kernel is AVX-512 intrinsics, run only once the CPU feature is detected; `forward` checks every length against the geometry, and each tile's loads and stores stay inside the image's input and the run's output, which `Tile::fits` checks before the kernel runs"
)]
#![allow(
    clippy::indexing_slicing,
    reason = "indices are below lengths checked at the top of `forward` and `PointwiseWeights::pack`"
)]

use rayon::prelude::*;

use crate::error::{check_len, KernelError};

const KERNEL: &str = "conv2d (pointwise)";

/// Output channels in one tile (one broadcast weight each per step), and in one panel of
/// the laid-out weight.
pub const ROWS: usize = 8;
/// Lanes of an AVX-512 register.
const LANES: usize = 16;
/// Pixels in a full tile: three vectors, so a tile is 24 accumulators.
const TILE: usize = 3 * LANES;
/// How many bytes of an image's input (its planes over a block of pixel columns) a block
/// may span: every panel of a run passes over the block while it is in the L2 cache.
const BLOCK_BYTES: usize = 256 << 10;

/// A pointwise convolution's weight (`out × in`, OIHW with 1×1 taps) in panels of
/// [`ROWS`] output channels: panel `p` holds, for each input channel `k` in turn, the
/// weights of channels `p·ROWS..(p+1)·ROWS` (zero past the last channel).
#[derive(Debug, Clone)]
pub struct PointwiseWeights {
    data: Box<[f32]>,
    out_channels: usize,
    in_channels: usize,
}

impl PointwiseWeights {
    /// Lays out `w` (`out_channels × in_channels`, row-major).
    pub fn pack(
        w: &[f32],
        out_channels: usize,
        in_channels: usize,
    ) -> Result<PointwiseWeights, KernelError> {
        if out_channels == 0 || in_channels == 0 {
            return Err(KernelError::geometry(
                KERNEL,
                format!("{out_channels} output and {in_channels} input channels"),
            ));
        }
        let len = out_channels
            .checked_mul(in_channels)
            .ok_or_else(|| KernelError::geometry(KERNEL, "the weight's size overflows"))?;
        check_len(KERNEL, "w", w.len(), len)?;
        let panel_len = ROWS * in_channels;
        let laid_out = out_channels
            .div_ceil(ROWS)
            .checked_mul(panel_len)
            .ok_or_else(|| KernelError::geometry(KERNEL, "the laid-out weight overflows"))?;
        let mut data = vec![0.0f32; laid_out];
        for (o, row) in w.chunks_exact(in_channels).enumerate() {
            let panel = &mut data[(o / ROWS) * panel_len..][..panel_len];
            for (slot, &v) in panel.iter_mut().skip(o % ROWS).step_by(ROWS).zip(row) {
                *slot = v;
            }
        }
        Ok(PointwiseWeights {
            data: data.into(),
            out_channels,
            in_channels,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// The panel of output channels `p·ROWS..`.
    fn panel(&self, p: usize) -> &[f32] {
        let len = ROWS * self.in_channels;
        &self.data[p * len..][..len]
    }
}

/// `y = w · x + bias` per image, then with `relu` each output's `y > 0 ? y : 0` (NaN gives
/// 0, as MXNet's `Activation(relu)` and tract's `max(y, 0)` do): `x` is `batch × in ×
/// pixels`, `y` is `batch × out × pixels`, `bias` has one value per output channel. Runs
/// of output channels of each image are spread over rayon's threads.
pub fn forward(
    batch: usize,
    pixels: usize,
    x: &[f32],
    w: &PointwiseWeights,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) -> Result<(), KernelError> {
    let (out, inp) = (w.out_channels, w.in_channels);
    let len = |channels: usize| {
        batch
            .checked_mul(channels)
            .and_then(|v| v.checked_mul(pixels))
            .ok_or_else(|| KernelError::geometry(KERNEL, "the batch's size overflows"))
    };
    check_len(KERNEL, "x", x.len(), len(inp)?)?;
    check_len(KERNEL, "y", y.len(), len(out)?)?;
    if let Some(b) = bias {
        check_len(KERNEL, "bias", b.len(), out)?;
    }
    if batch == 0 || pixels == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    let avx512 = crate::vector_instances() && std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    // A few runs of panels per thread over the whole batch, so that a thread that
    // finishes early takes another; a run is whole panels of one image.
    let panels = out.div_ceil(ROWS);
    let runs_per_image = (4 * rayon::current_num_threads())
        .div_ceil(batch)
        .clamp(1, panels);
    let run_rows = panels.div_ceil(runs_per_image) * ROWS;
    let block = (BLOCK_BYTES / (4 * inp) / TILE).max(1) * TILE;
    let job = Job {
        w,
        bias,
        relu,
        pixels,
        block,
        avx512,
    };
    y.par_chunks_mut(out * pixels)
        .zip(x.par_chunks(inp * pixels))
        .for_each(|(y, x)| {
            y.par_chunks_mut(run_rows * pixels)
                .enumerate()
                .for_each(|(run, ys)| job.run(x, run * run_rows, ys));
        });
    Ok(())
}

/// What every run of a [`forward`] call shares.
#[derive(Debug, Clone, Copy)]
struct Job<'a> {
    w: &'a PointwiseWeights,
    bias: Option<&'a [f32]>,
    relu: bool,
    pixels: usize,
    /// Pixel columns per block: a multiple of [`TILE`].
    block: usize,
    avx512: bool,
}

impl Job<'_> {
    /// Output channels `first..` (`first` a multiple of [`ROWS`]) of one image, whose
    /// input is `x` and whose rows of output those channels are `ys`.
    fn run(&self, x: &[f32], first: usize, ys: &mut [f32]) {
        let pixels = self.pixels;
        let rows = ys.len() / pixels;
        for start in (0..pixels).step_by(self.block) {
            let end = (start + self.block).min(pixels);
            for r0 in (0..rows).step_by(ROWS) {
                let channel = first + r0;
                let valid = (rows - r0).min(ROWS);
                let mut bias = None;
                if let Some(b) = self.bias {
                    let mut rows_bias = [0.0f32; ROWS];
                    rows_bias[..valid].copy_from_slice(&b[channel..channel + valid]);
                    bias = Some(rows_bias);
                }
                let out = &mut ys[r0 * pixels..(r0 + valid) * pixels];
                let mut col = start;
                while col < end {
                    let width = (end - col).min(TILE);
                    let tile = Tile {
                        panel: self.w.panel(channel / ROWS),
                        x,
                        depth: self.w.in_channels,
                        pixels,
                        col,
                        width,
                        valid,
                        bias,
                        relu: self.relu,
                    };
                    tile.run(out, self.avx512);
                    col += width;
                }
            }
        }
    }
}

/// One tile: output channels of one panel (the first `valid` of its [`ROWS`]) by pixels
/// `col..col + width` of one image.
#[derive(Debug, Clone, Copy)]
struct Tile<'a> {
    /// The panel's weights, `depth × ROWS`.
    panel: &'a [f32],
    /// The image's input, `depth × pixels`.
    x: &'a [f32],
    depth: usize,
    pixels: usize,
    col: usize,
    width: usize,
    valid: usize,
    bias: Option<[f32; ROWS]>,
    relu: bool,
}

impl Tile<'_> {
    /// Whether every read and write of the tile lies inside `panel`, `x` and `out` (the
    /// `valid` rows of output of the panel's channels).
    fn fits(&self, out: &[f32]) -> bool {
        self.width > 0
            && self.width <= TILE
            && self.valid <= ROWS
            && self.panel.len() == self.depth * ROWS
            && self.x.len() == self.depth * self.pixels
            && self.col + self.width <= self.pixels
            && out.len() == self.valid * self.pixels
    }

    fn run(&self, out: &mut [f32], avx512: bool) {
        #[cfg(target_arch = "x86_64")]
        if avx512 && self.fits(out) {
            // SAFETY: the CPU has AVX-512F (detected by `forward`), and `fits` holds, which
            // is every other requirement of the tile kernel.
            unsafe {
                match self.width.div_ceil(LANES) {
                    1 => self.avx512::<1>(out),
                    2 => self.avx512::<2>(out),
                    _ => self.avx512::<3>(out),
                }
            }
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = avx512;
        self.portable(out);
    }

    /// The tile in plain loops: the same terms in the same order, the same bits.
    fn portable(&self, out: &mut [f32]) {
        for r in 0..self.valid {
            for c in self.col..self.col + self.width {
                let mut sum = 0.0f32;
                for k in 0..self.depth {
                    sum = self.panel[k * ROWS + r].mul_add(self.x[k * self.pixels + c], sum);
                }
                if let Some(b) = self.bias {
                    sum += b[r];
                }
                if self.relu && sum.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                    // NaN and −0 give +0, as MAXPS against zero does.
                    sum = 0.0;
                }
                out[r * self.pixels + c] = sum;
            }
        }
    }

    /// The tile as `V` vectors of pixels (the last one masked to the tile's width) by
    /// [`ROWS`] output channels.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, `self.fits(out)` must hold and the tile's width must
    /// need exactly `V` vectors (`(V − 1)·16 < width ≤ V·16`): then every load reads
    /// `x[k·pixels + col + i]` for `i < width`, every store writes `out[r·pixels + col +
    /// i]` for `r < valid` and `i < width`, and the lanes past the width are masked off
    /// (a masked-off lane touches no memory).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const V: usize>(&self, out: &mut [f32]) {
        use std::arch::x86_64::{
            __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
            _mm512_max_ps, _mm512_set1_ps, _mm512_setzero_ps,
        };
        let mut masks = [u16::MAX; V];
        let tail = self.width - (V - 1) * LANES;
        if tail < LANES {
            masks[V - 1] = (1u16 << tail) - 1;
        }
        let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
        for (k, wk) in self.panel.chunks_exact(ROWS).enumerate() {
            let from = k * self.pixels + self.col;
            let mut b: [__m512; V] = [_mm512_setzero_ps(); V];
            for (v, b) in b.iter_mut().enumerate() {
                // SAFETY: lanes `v·16..` of the tile's width in input plane `k`: from
                // `k·pixels + col + v·16`, the unmasked ones below `k·pixels + col +
                // width ≤ (k + 1)·pixels ≤ x.len()` (`fits`).
                *b = unsafe {
                    _mm512_maskz_loadu_ps(masks[v], self.x.as_ptr().wrapping_add(from + v * LANES))
                };
            }
            for (acc, &wv) in acc.iter_mut().zip(wk) {
                let a = _mm512_set1_ps(wv);
                for (acc, &b) in acc.iter_mut().zip(&b) {
                    *acc = _mm512_fmadd_ps(a, b, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate().take(self.valid) {
            let to = r * self.pixels + self.col;
            for (v, &sum) in acc.iter().enumerate() {
                let mut sum = sum;
                if let Some(bias) = self.bias {
                    sum = _mm512_add_ps(sum, _mm512_set1_ps(bias[r]));
                }
                if self.relu {
                    // The second operand where the first is NaN or not greater: 0 for NaN
                    // and −0, as the portable `y > 0 ? y : 0`.
                    sum = _mm512_max_ps(sum, _mm512_setzero_ps());
                }
                // SAFETY: lanes `v·16..` of the tile's width in output row `r < valid`:
                // the unmasked ones below `r·pixels + col + width ≤ valid·pixels =
                // out.len()` (`fits`).
                unsafe {
                    _mm512_mask_storeu_ps(
                        out.as_mut_ptr().wrapping_add(to + v * LANES),
                        masks[v],
                        sum,
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Every output's bits, in the plain loops and on AVX-512 (where the CPU has it),
    /// over widths that take each tile shape and a partial panel.
    #[test]
    fn tiles_give_the_portable_loops_bits() {
        for (batch, inp, out, pixels) in [
            (1, 3, 5, 1),
            (2, 17, 19, 49),
            (3, 8, 16, 100),
            (1, 40, 9, 33),
        ] {
            let x = crate::test_values(batch * inp * pixels, 1);
            let w = crate::test_values(out * inp, 2);
            let bias = crate::test_values(out, 3);
            let w = PointwiseWeights::pack(&w, out, inp).unwrap();
            for (bias, relu) in [(None, false), (Some(&bias[..]), true)] {
                let mut fast = vec![f32::NAN; batch * out * pixels];
                forward(batch, pixels, &x, &w, bias, relu, &mut fast).unwrap();
                let mut plain = vec![f32::NAN; batch * out * pixels];
                crate::with_baseline_instances(|| {
                    forward(batch, pixels, &x, &w, bias, relu, &mut plain).unwrap()
                });
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&plain), "{batch}×{inp}→{out}×{pixels}");
            }
        }
    }

    /// NaN and −0 through the ReLU give +0, and a NaN without it stays.
    #[test]
    fn relu_takes_nan_and_negative_zero_to_zero() {
        let w = PointwiseWeights::pack(&[1.0], 1, 1).unwrap();
        let x = [f32::NAN, -0.0, -2.0, 3.0];
        let mut y = [7.0f32; 4];
        forward(1, 4, &x, &w, None, true, &mut y).unwrap();
        assert_eq!(
            y.map(f32::to_bits),
            [0.0f32, 0.0, 0.0, 3.0].map(f32::to_bits)
        );
        forward(1, 4, &x, &w, None, false, &mut y).unwrap();
        assert!(y[0].is_nan());
    }
}
