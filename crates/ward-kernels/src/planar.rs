//! Convolutions in one group as products over NCHW planes, read where they lie: for each image, `Y (out × pixels) = Σ_taps W_tap (out × in) · X shifted by the
//! tap (in × pixels)`, then each output channel's bias, then maybe a ReLU. A pointwise
//! (1×1, unpadded) convolution is the one-tap case, its planes the input itself; these
//! carry most of the multiply-adds of MobileNet, SqueezeNet, DenseNet and Inception.
//! Another kernel, or a stride, reads each image once copied into zero-padded planes
//! (split by column phase at a column stride), where tap `(ky, kx)` of output row `oy`
//! reads consecutive values of one padded row at a fixed offset: DenseNet's
//! 3×3 layers (128 → 32 channels) are too narrow for the direct kernels' 32-channel
//! strips ([`crate::direct`]) and ran on tract's im2col at 2.3× MXNet's time.
//!
//! A tile of [`ROWS`] output channels by up to 48 pixels of one output row is summed in
//! 24 AVX-512 registers, each step broadcasting one weight per output channel against
//! three vectors of one (shifted) input row; the tile's outputs are stored once, bias
//! and ReLU applied on the way. With AVX2 alone a tile runs in pieces of 4 channels by
//! 16 pixels (8 of its 16 registers accumulate). Only the weight is laid out, once, when a plan is built
//! ([`PlanarWeights`]). For 1×1 layers tract ran a packed matrix product that over a
//! batch needs the channels last (a transpose of the input and of the output) or each
//! image copied into and out of a one-image plan: at batch 8 MobileNet 1.0's pointwise
//! layers took 1.76× MXNet's time (docs/BENCHMARKS.md, 2026-12-06 17:55).
//!
//! Each output is `Σ_k w·x` summed from zero in the im2col order (input channel, then
//! tap) with fused multiply-adds, the bias added after, as the reference interpreter
//! orders a convolution's terms; the AVX-512 tiles, the AVX2 pieces and the portable
//! loops give the same bits.

#![allow(
    unsafe_code,
    reason = "the tile kernels are AVX-512 and AVX2 intrinsics, run only once the CPU features are detected; `forward` and `forward_conv` check every length against the geometry, and each tile's loads and stores stay inside the image's input and the run's output, which `Tile::fits` checks before the kernel runs"
)]
#![allow(
    clippy::indexing_slicing,
    reason = "indices are below lengths checked at the top of `forward`, `forward_conv` and `PlanarWeights::pack`"
)]
#![allow(
    clippy::needless_range_loop,
    reason = "the AVX2 tile indexes its fixed-size register arrays, which compiles to registers in any build (iterator adapters did not always inline)"
)]

use rayon::prelude::*;

use crate::conv::Conv2d;
use crate::error::{check_len, KernelError};
use crate::{padded, Isa};

const KERNEL: &str = "conv2d (planar)";

/// Output channels in one tile (one broadcast weight each per step), and in one panel of
/// the laid-out weight.
pub const ROWS: usize = 8;
/// Lanes of an AVX-512 register.
const LANES: usize = 16;
/// Pixels in a full tile: three vectors, so a tile is 24 accumulators.
const TILE: usize = 3 * LANES;
/// Lanes of an AVX2 register.
const AVX2_LANES: usize = 8;
/// Output channels, and pixels, of one piece of a tile in AVX2 ([`Tile::avx2`]): 8
/// accumulators, 8 independent chains for the two FMA units' 4-cycle latency. Three
/// vectors a piece (12 accumulators) left LLVM one register short, and the accumulator
/// it kept on the stack made the loop a chain of stores and loads.
const AVX2_ROWS: usize = 4;
const AVX2_PIECE: usize = 2 * AVX2_LANES;
/// How many bytes of an image's input (its planes over a block of pixels) a block may
/// span: every panel of a run passes over the block while it is in the L2 cache.
const BLOCK_BYTES: usize = 256 << 10;

/// A convolution's weight (`out × depth`, depth = input channels × taps, OIHW flattened)
/// in panels of [`ROWS`] output channels: panel `p` holds, for each of the `depth` terms
/// in turn, the weights of channels `p·ROWS..(p+1)·ROWS` (zero past the last channel).
#[derive(Debug, Clone)]
pub struct PlanarWeights {
    data: Box<[f32]>,
    out_channels: usize,
    depth: usize,
}

impl PlanarWeights {
    /// Lays out `w` (`out_channels × depth`, row-major: OIHW).
    pub fn pack(
        w: &[f32],
        out_channels: usize,
        depth: usize,
    ) -> Result<PlanarWeights, KernelError> {
        let len = out_channels
            .checked_mul(depth)
            .ok_or_else(|| KernelError::geometry(KERNEL, "the weight's size overflows"))?;
        check_len(KERNEL, "w", w.len(), len)?;
        let mut laid_out = PlanarWeights::zeroed(out_channels, depth)?;
        let panel_len = ROWS * depth;
        for (o, row) in w.chunks_exact(depth).enumerate() {
            let panel = &mut laid_out.data[(o / ROWS) * panel_len..][..panel_len];
            for (slot, &v) in panel.iter_mut().skip(o % ROWS).step_by(ROWS).zip(row) {
                *slot = v;
            }
        }
        Ok(laid_out)
    }

    /// A weight of zeros, for a caller in this crate to fill term by term
    /// ([`Self::term_mut`]) where the `out × depth` matrix is not at hand in one piece.
    pub(crate) fn zeroed(out_channels: usize, depth: usize) -> Result<PlanarWeights, KernelError> {
        if out_channels == 0 || depth == 0 {
            return Err(KernelError::geometry(
                KERNEL,
                format!("{out_channels} output channels of {depth} terms"),
            ));
        }
        let laid_out = out_channels
            .div_ceil(ROWS)
            .checked_mul(ROWS)
            .and_then(|v| v.checked_mul(depth))
            .ok_or_else(|| KernelError::geometry(KERNEL, "the laid-out weight overflows"))?;
        Ok(PlanarWeights {
            data: vec![0.0f32; laid_out].into(),
            out_channels,
            depth,
        })
    }

    /// Term `k` of output channel `o`'s sum (`o < out_channels`, `k < depth`).
    pub(crate) fn term_mut(&mut self, o: usize, k: usize) -> &mut f32 {
        &mut self.data[(o / ROWS) * ROWS * self.depth + k * ROWS + o % ROWS]
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Terms of each output's sum: input channels × taps.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The panel of output channels `p·ROWS..`.
    fn panel(&self, p: usize) -> &[f32] {
        let len = ROWS * self.depth;
        &self.data[p * len..][..len]
    }
}

/// A map of each input value before the products, one per input channel `c`:
/// `max(x·scale[c] + shift[c], floor[c])` (no add without a shift): a batch norm and the
/// ReLU after it, as tract's declutter leaves DenseNet's pre-activations (`Mul` by the
/// scale, `Add` of the shift where it is not zero, `Max` with the ReLU's zero), taken
/// into the 1×1 convolution that alone reads them. A NaN, or a value equal to the floor,
/// gives the floor (as `MAXPS` does).
#[derive(Debug, Clone, Copy)]
pub struct InputMap<'a> {
    pub scale: &'a [f32],
    pub shift: Option<&'a [f32]>,
    pub floor: &'a [f32],
}

impl InputMap<'_> {
    /// The map of input channel `c`'s value `x`, in the vector instance's order.
    #[inline(always)]
    fn apply(&self, c: usize, x: f32) -> f32 {
        let mut v = x * self.scale[c];
        if let Some(shift) = self.shift {
            v += shift[c];
        }
        let floor = self.floor[c];
        if v > floor {
            v
        } else {
            floor
        }
    }

    fn check(&self, channels: usize) -> Result<(), KernelError> {
        check_len(KERNEL, "input map scale", self.scale.len(), channels)?;
        check_len(KERNEL, "input map floor", self.floor.len(), channels)?;
        if let Some(shift) = self.shift {
            check_len(KERNEL, "input map shift", shift.len(), channels)?;
        }
        Ok(())
    }
}

/// An image batch's input planes and the map each value goes through first.
#[derive(Debug, Clone, Copy)]
pub struct MappedInput<'a> {
    pub x: &'a [f32],
    pub map: InputMap<'a>,
}

/// [`forward`] of `map`'s image of each input value (`input.x` is `batch × in × pixels`):
/// the map is applied as each tile loads a value, so the mapped planes are never
/// written (DenseNet's 62 batch norm + ReLU passes over its concatenations were 12 % of
/// its time at batch 8, each a pass over memory).
pub fn forward_mapped(
    batch: usize,
    pixels: usize,
    input: MappedInput<'_>,
    w: &PlanarWeights,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) -> Result<(), KernelError> {
    input.map.check(w.depth)?;
    pointwise(batch, pixels, input.x, Some(input.map), w, bias, relu, y)
}

/// The pointwise convolution `y = w · x + bias` per image, then with `relu` each output's
/// `y > 0 ? y : 0` (NaN gives 0, as MXNet's `Activation(relu)` and tract's `max(y, 0)`
/// do): `x` is `batch × in × pixels` (`in` = `w`'s depth), `y` is `batch × out × pixels`,
/// `bias` has one value per output channel. Runs of output channels of each image are
/// spread over rayon's threads.
pub fn forward(
    batch: usize,
    pixels: usize,
    x: &[f32],
    w: &PlanarWeights,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) -> Result<(), KernelError> {
    pointwise(batch, pixels, x, None, w, bias, relu, y)
}

/// [`forward`] with an input map or without.
#[allow(
    clippy::too_many_arguments,
    reason = "`forward`'s arguments and the map"
)]
fn pointwise(
    batch: usize,
    pixels: usize,
    x: &[f32],
    map: Option<InputMap<'_>>,
    w: &PlanarWeights,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) -> Result<(), KernelError> {
    let (out, inp) = (w.out_channels, w.depth);
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
    // One output row of every pixel, read from the input planes as they are.
    let layout = Layout {
        channels: inp,
        taps: vec![0],
        plane: pixels,
        row_len: pixels,
        out_h: 1,
        out_w: pixels,
    };
    let mut job = Job::new(w, bias, relu, &layout, batch);
    job.map = map;
    y.par_chunks_mut(out * pixels)
        .zip(x.par_chunks(inp * pixels))
        .for_each(|(y, x)| job.image(x, y));
    Ok(())
}

/// The one-group convolution `g` (any kernel, stride, dilation and symmetric padding)
/// with `w` laid out from its OIHW weight, then each output channel's bias, then with
/// `relu` a ReLU as [`forward`]'s (a pointwise one is [`forward`]). Each image is
/// copied once into zero-padded planes whose rows are split by column phase modulo the
/// column stride (as the depthwise kernel's; none when there is no padding and the
/// column stride is 1): tap `(ky, kx)` of output row `oy` then reads consecutive values of one
/// phase of padded row `oy·stride + ky·dilation` for consecutive outputs, at any stride.
pub fn forward_conv(
    g: &Conv2d,
    x: &[f32],
    w: &PlanarWeights,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) -> Result<(), KernelError> {
    if g.groups != 1 {
        return Err(KernelError::geometry(
            KERNEL,
            format!("{} groups: takes one group", g.groups),
        ));
    }
    let taps_n = g.kernel[0] * g.kernel[1];
    if w.out_channels != g.out_channels || w.depth != g.in_channels * taps_n {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "a weight of {} channels × {} terms for {} channels × {} × {} taps",
                w.out_channels, w.depth, g.out_channels, g.in_channels, taps_n
            ),
        ));
    }
    check_len(KERNEL, "x", x.len(), g.input_len())?;
    check_len(KERNEL, "y", y.len(), g.output_len())?;
    if let Some(b) = bias {
        check_len(KERNEL, "bias", b.len(), g.out_channels)?;
    }
    if g.kernel == [1, 1] && g.pad == [0, 0] && g.stride == [1, 1] {
        // A pointwise convolution: each image's planes as they lie, one row of pixels.
        return forward(g.batch, g.in_h * g.in_w, x, w, bias, relu, y);
    }
    // `Conv2d::new` checked that the padded sizes fit `usize`.
    let (padded_h, padded_w) = (g.in_h + 2 * g.pad[0], g.in_w + 2 * g.pad[1]);
    let [stride_y, stride_x] = g.stride;
    // One padded row: its columns of each phase in turn, `phase_len` a phase.
    let phase_len = padded_w.div_ceil(stride_x);
    let overflow = || KernelError::geometry(KERNEL, "the padded image overflows");
    let row_len = phase_len.checked_mul(stride_x).ok_or_else(overflow)?;
    let plane = padded_h.checked_mul(row_len).ok_or_else(overflow)?;
    let padded_len = g.in_channels.checked_mul(plane).ok_or_else(overflow)?;
    let mut taps = Vec::with_capacity(taps_n);
    for ky in 0..g.kernel[0] {
        for kx in 0..g.kernel[1] {
            let column = kx * g.dilation[1];
            let phase = column % stride_x;
            taps.push(ky * g.dilation[0] * row_len + phase * phase_len + column / stride_x);
        }
    }
    let layout = Layout {
        channels: g.in_channels,
        taps,
        plane,
        row_len: stride_y * row_len,
        out_h: g.out_h(),
        out_w: g.out_w(),
    };
    let image = g.in_channels * g.in_h * g.in_w;
    // Unpadded at column stride 1, the padded planes would be the input's own.
    let as_it_lies = g.pad == [0, 0] && stride_x == 1;
    let job = Job::new(w, bias, relu, &layout, g.batch);
    y.par_chunks_mut(g.out_channels * layout.out_h * layout.out_w)
        .zip(x.par_chunks(image))
        .for_each(|(y, x)| {
            if as_it_lies {
                job.image(x, y);
                return;
            }
            let mut padded = vec![0.0f32; padded_len];
            for (plane, x) in padded
                .chunks_exact_mut(layout.plane)
                .zip(x.chunks_exact(g.in_h * g.in_w))
            {
                for (row, x) in plane[g.pad[0] * row_len..]
                    .chunks_exact_mut(row_len)
                    .zip(x.chunks_exact(g.in_w))
                {
                    padded::fill_row(x, row, g.pad[1], stride_x, phase_len);
                }
            }
            job.image(&padded, y);
        });
    Ok(())
}

/// Where a strided product ([`product`]) reads its terms and writes its sums.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strides {
    /// Values from one input channel's row of pixels to the next one's.
    pub(crate) x_plane: usize,
    /// Where the first channel's pixels start.
    pub(crate) x_at: usize,
    /// Values from one output channel's row to the next one's.
    pub(crate) y_plane: usize,
    /// Where the first output channel's pixels go.
    pub(crate) y_at: usize,
    pub(crate) pixels: usize,
}

/// The bare product `y[r·y_plane + y_at + i] = Σ_c w[first + r][c] · x[c·x_plane + x_at +
/// i]` for the `rows` output channels from `first` (a multiple of [`ROWS`]) and `i <
/// pixels`, on the calling thread, in the tiles of [`forward`] (the same bits): the
/// Winograd kernel's products, one per point of its tiles, whose terms lie 36 planes
/// apart. Whether each tile fits is checked before it runs; one that does not runs
/// in the portable loops, whose indexing panics rather than read out of bounds, so callers
/// check the extents first.
pub(crate) fn product(
    w: &PlanarWeights,
    first: usize,
    rows: usize,
    x: &[f32],
    y: &mut [f32],
    at: Strides,
    isa: Isa,
) {
    let layout = Layout {
        channels: w.depth,
        taps: vec![at.x_at],
        plane: at.x_plane,
        row_len: 0,
        out_h: 1,
        out_w: at.pixels,
    };
    for r0 in (0..rows).step_by(ROWS) {
        let valid = (rows - r0).min(ROWS);
        let out = &mut y[r0 * at.y_plane..];
        let mut col = 0;
        while col < at.pixels {
            let width = (at.pixels - col).min(TILE);
            let tile = Tile {
                panel: w.panel((first + r0) / ROWS),
                x,
                layout: &layout,
                at: col,
                out_at: at.y_at + col,
                out_plane: at.y_plane,
                width,
                valid,
                bias: None,
                relu: false,
                map: None,
            };
            tile.run(out, isa);
            col += width;
        }
    }
}

/// Where the terms of an output row lie in an image's (padded) planes.
#[derive(Debug, Clone)]
struct Layout {
    channels: usize,
    /// Each tap's offset in a plane, in the weight's order.
    taps: Vec<usize>,
    /// Values from one input plane to the next.
    plane: usize,
    /// Values from the input row one output row starts at to the next one's.
    row_len: usize,
    out_h: usize,
    out_w: usize,
}

/// What every run of a call shares.
#[derive(Debug, Clone, Copy)]
struct Job<'a> {
    w: &'a PlanarWeights,
    bias: Option<&'a [f32]>,
    relu: bool,
    layout: &'a Layout,
    /// Output channels of one run: whole panels.
    run_rows: usize,
    /// Output rows, and pixels of a row, per block.
    block_rows: usize,
    block_cols: usize,
    isa: Isa,
    /// Each input value's map (a pointwise convolution's only: one tap per channel).
    map: Option<InputMap<'a>>,
}

impl<'a> Job<'a> {
    fn new(
        w: &'a PlanarWeights,
        bias: Option<&'a [f32]>,
        relu: bool,
        layout: &'a Layout,
        batch: usize,
    ) -> Job<'a> {
        let isa = Isa::current();
        // A few runs of panels per thread over the whole batch, so that a thread that
        // finishes early takes another.
        let panels = w.out_channels.div_ceil(ROWS);
        let runs_per_image = (4 * rayon::current_num_threads())
            .div_ceil(batch)
            .clamp(1, panels);
        let column_bytes = 4 * layout.channels;
        Job {
            w,
            bias,
            relu,
            layout,
            run_rows: panels.div_ceil(runs_per_image) * ROWS,
            block_rows: (BLOCK_BYTES / (column_bytes * layout.row_len)).max(1),
            block_cols: (BLOCK_BYTES / column_bytes / TILE).max(1) * TILE,
            isa,
            map: None,
        }
    }

    /// One image: `x` its (padded) planes, `y` its output.
    fn image(&self, x: &[f32], y: &mut [f32]) {
        let out_plane = self.layout.out_h * self.layout.out_w;
        y.par_chunks_mut(self.run_rows * out_plane)
            .enumerate()
            .for_each(|(run, ys)| self.run(x, run * self.run_rows, ys));
    }

    /// Output channels `first..` (`first` a multiple of [`ROWS`]) of one image, whose
    /// input is `x` and whose output planes of those channels are `ys`.
    fn run(&self, x: &[f32], first: usize, ys: &mut [f32]) {
        let l = self.layout;
        let out_plane = l.out_h * l.out_w;
        let channels = ys.len() / out_plane;
        for y0 in (0..l.out_h).step_by(self.block_rows) {
            let y1 = (y0 + self.block_rows).min(l.out_h);
            for c0 in (0..l.out_w).step_by(self.block_cols) {
                let c1 = (c0 + self.block_cols).min(l.out_w);
                for r0 in (0..channels).step_by(ROWS) {
                    let channel = first + r0;
                    let valid = (channels - r0).min(ROWS);
                    let mut bias = None;
                    if let Some(b) = self.bias {
                        let mut rows_bias = [0.0f32; ROWS];
                        rows_bias[..valid].copy_from_slice(&b[channel..channel + valid]);
                        bias = Some(rows_bias);
                    }
                    let out = &mut ys[r0 * out_plane..(r0 + valid) * out_plane];
                    for oy in y0..y1 {
                        let mut col = c0;
                        while col < c1 {
                            let width = (c1 - col).min(TILE);
                            let tile = Tile {
                                panel: self.w.panel(channel / ROWS),
                                x,
                                layout: l,
                                at: oy * l.row_len + col,
                                out_at: oy * l.out_w + col,
                                out_plane,
                                width,
                                valid,
                                bias,
                                relu: self.relu,
                                map: self.map,
                            };
                            tile.run(out, self.isa);
                            col += width;
                        }
                    }
                }
            }
        }
    }
}

/// One tile: output channels of one panel (the first `valid` of its [`ROWS`]) by `width`
/// pixels of one output row.
#[derive(Debug, Clone, Copy)]
struct Tile<'a> {
    /// The panel's weights, `depth × ROWS`.
    panel: &'a [f32],
    /// The image's (padded) planes.
    x: &'a [f32],
    layout: &'a Layout,
    /// Where the tile's first pixel reads in each plane before its tap's offset.
    at: usize,
    /// Where the tile's first pixel goes in each output plane.
    out_at: usize,
    out_plane: usize,
    width: usize,
    valid: usize,
    bias: Option<[f32; ROWS]>,
    relu: bool,
    /// Each input value's map, by input channel (with one tap per channel).
    map: Option<InputMap<'a>>,
}

impl Tile<'_> {
    /// Whether every read and write of the tile lies inside `panel`, `x` and `out` (the
    /// `valid` output planes of the panel's channels).
    fn fits(&self, out: &[f32]) -> bool {
        let l = self.layout;
        let furthest_tap = l.taps.iter().max().copied().unwrap_or(0);
        let reads_to = (l.channels - 1) * l.plane + furthest_tap + self.at + self.width;
        self.width > 0
            && self.width <= TILE
            && (1..=ROWS).contains(&self.valid)
            && l.channels > 0
            && self.panel.len() == l.channels * l.taps.len() * ROWS
            && self.map.is_none_or(|m| {
                l.taps.len() == 1
                    && m.scale.len() == l.channels
                    && m.floor.len() == l.channels
                    && m.shift.is_none_or(|s| s.len() == l.channels)
            })
            && reads_to <= self.x.len()
            && (self.valid - 1) * self.out_plane + self.out_at + self.width <= out.len()
    }

    fn run(&self, out: &mut [f32], isa: Isa) {
        #[cfg(target_arch = "x86_64")]
        if isa > Isa::Portable && self.fits(out) {
            if isa == Isa::Avx512 {
                // SAFETY: the CPU has AVX-512F (detected by the caller), and `fits`
                // holds, which is every other requirement of the tile kernel.
                unsafe {
                    match self.width.div_ceil(LANES) {
                        1 => self.avx512::<1>(out),
                        2 => self.avx512::<2>(out),
                        _ => self.avx512::<3>(out),
                    }
                }
            } else {
                // SAFETY: the CPU has AVX2 and FMA (detected by the caller), and `fits`
                // holds.
                unsafe { self.avx2(out) };
            }
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = isa;
        self.portable(out);
    }

    /// The tile in plain loops: the same terms in the same order, the same bits.
    fn portable(&self, out: &mut [f32]) {
        let l = self.layout;
        for r in 0..self.valid {
            for i in 0..self.width {
                let mut sum = 0.0f32;
                let mut k = 0;
                for c in 0..l.channels {
                    for &tap in &l.taps {
                        let mut x = self.x[c * l.plane + tap + self.at + i];
                        if let Some(map) = &self.map {
                            x = map.apply(c, x);
                        }
                        sum = self.panel[k * ROWS + r].mul_add(x, sum);
                        k += 1;
                    }
                }
                if let Some(b) = self.bias {
                    sum += b[r];
                }
                if self.relu && sum.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                    // NaN and −0 give +0, as MAXPS against zero does.
                    sum = 0.0;
                }
                out[r * self.out_plane + self.out_at + i] = sum;
            }
        }
    }

    /// The tile as `V` vectors of pixels (the last one masked to the tile's width) by
    /// [`ROWS`] output channels.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, `self.fits(out)` must hold and the tile's width must
    /// need exactly `V` vectors (`(V − 1)·16 < width ≤ V·16`): then every load reads
    /// `x[c·plane + tap + at + i]` for `i < width`, every store writes `out[r·out_plane +
    /// out_at + i]` for `r < valid` and `i < width`, and the lanes past the width are
    /// masked off (a masked-off lane touches no memory).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512<const V: usize>(&self, out: &mut [f32]) {
        use std::arch::x86_64::{
            __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
            _mm512_max_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps,
        };
        let l = self.layout;
        let mut masks = [u16::MAX; V];
        let tail = self.width - (V - 1) * LANES;
        if tail < LANES {
            masks[V - 1] = (1u16 << tail) - 1;
        }
        let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
        let mut weights = self.panel.chunks_exact(ROWS);
        for c in 0..l.channels {
            let plane = c * l.plane + self.at;
            for &tap in &l.taps {
                let Some(wk) = weights.next() else {
                    return;
                };
                let from = plane + tap;
                let mut b: [__m512; V] = [_mm512_setzero_ps(); V];
                for (v, b) in b.iter_mut().enumerate() {
                    // SAFETY: lanes `v·16..` of the tile's width from `c·plane + tap + at`,
                    // the unmasked ones below `(channels − 1)·plane + furthest tap + at +
                    // width ≤ x.len()` (`fits`).
                    *b = unsafe {
                        _mm512_maskz_loadu_ps(
                            masks[v],
                            self.x.as_ptr().wrapping_add(from + v * LANES),
                        )
                    };
                }
                if let Some(map) = &self.map {
                    // `fits` checked the map's lengths against the channels.
                    let (scale, floor) =
                        (_mm512_set1_ps(map.scale[c]), _mm512_set1_ps(map.floor[c]));
                    let shift = map.shift.map(|s| _mm512_set1_ps(s[c]));
                    for b in &mut b {
                        let mut v = _mm512_mul_ps(*b, scale);
                        if let Some(shift) = shift {
                            v = _mm512_add_ps(v, shift);
                        }
                        *b = _mm512_max_ps(v, floor);
                    }
                }
                for (acc, &wv) in acc.iter_mut().zip(wk) {
                    let a = _mm512_set1_ps(wv);
                    for (acc, &b) in acc.iter_mut().zip(&b) {
                        *acc = _mm512_fmadd_ps(a, b, *acc);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate().take(self.valid) {
            let to = r * self.out_plane + self.out_at;
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
                // SAFETY: lanes `v·16..` of the tile's width in output plane `r < valid`:
                // the unmasked ones below `(valid − 1)·out_plane + out_at + width ≤
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

    /// The tile in AVX2's 16 registers of 8 lanes: four output channels by up to two
    /// vectors of pixels at a time ([`AVX2_PIECE`]), each piece summing every term in the
    /// portable loops' order.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA, and `self.fits(out)` must hold.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(&self, out: &mut [f32]) {
        for first_row in (0..self.valid).step_by(AVX2_ROWS) {
            let mut col = 0;
            while col < self.width {
                let width = (self.width - col).min(AVX2_PIECE);
                // SAFETY: the caller's, and the piece lies inside the tile.
                unsafe {
                    if width > AVX2_LANES {
                        self.avx2_piece::<2>(out, first_row, col, width)
                    } else {
                        self.avx2_piece::<1>(out, first_row, col, width)
                    }
                }
                col += width;
            }
        }
    }

    /// Output channels `first_row..first_row + 4` (those below `valid` stored) by the
    /// tile's pixels `col..col + width`, in `V` vectors (the last one masked to the
    /// width).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA, `self.fits(out)` must hold, `first_row < valid`,
    /// `col + width ≤ self.width` and `(V − 1)·8 < width ≤ V·8`: then every load reads
    /// `x[c·plane + tap + at + col + i]` and every store writes `out[r·out_plane + out_at +
    /// col + i]` for `i < width`, inside the bounds `fits` checked for the whole tile,
    /// and masked-off lanes touch no memory.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_piece<const V: usize>(
        &self,
        out: &mut [f32],
        first_row: usize,
        col: usize,
        width: usize,
    ) {
        use std::arch::x86_64::{
            _mm256_add_ps, _mm256_maskstore_ps, _mm256_max_ps, _mm256_set1_ps, _mm256_setzero_ps,
            _mm256_storeu_ps,
        };
        let piece = Piece::new(first_row, col, width);
        // SAFETY: the caller's.
        let acc = unsafe {
            if self.map.is_some() {
                self.avx2_sums::<V, true>(&piece)
            } else {
                self.avx2_sums::<V, false>(&piece)
            }
        };
        let rows = (self.valid - first_row).min(AVX2_ROWS);
        for (i, acc) in acc.iter().enumerate().take(rows) {
            let r = first_row + i;
            let to = out
                .as_mut_ptr()
                .wrapping_add(r * self.out_plane + self.out_at + col);
            for v in 0..V {
                let mut sum = acc[v];
                if let Some(bias) = self.bias {
                    sum = _mm256_add_ps(sum, _mm256_set1_ps(bias[r]));
                }
                if self.relu {
                    // 0 for NaN and −0, as the portable `y > 0 ? y : 0`.
                    sum = _mm256_max_ps(sum, _mm256_setzero_ps());
                }
                let at = to.wrapping_add(v * AVX2_LANES);
                // SAFETY: lanes `col + v·8..` of the tile's width in output plane `r <
                // valid`: the stored ones below `(valid − 1)·out_plane + out_at + width ≤
                // out.len()` (`fits`).
                unsafe {
                    if v + 1 < V || piece.full {
                        _mm256_storeu_ps(at, sum)
                    } else {
                        _mm256_maskstore_ps(at, piece.mask, sum)
                    }
                };
            }
        }
    }

    /// The sums of one [`Piece`]: every term of the four output channels by `V` vectors
    /// of pixels, in the portable loops' order. One loop with nothing in it but the loads,
    /// the map (only when `MAPPED`) and the multiply-adds, so that the accumulators stay
    /// in registers (a loop that also tested the map kept them on the stack, 3× slower).
    ///
    /// # Safety
    /// As [`Self::avx2_piece`]'s.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_sums<const V: usize, const MAPPED: bool>(
        &self,
        piece: &Piece,
    ) -> [[std::arch::x86_64::__m256; V]; AVX2_ROWS] {
        use std::arch::x86_64::{
            __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_maskload_ps,
            _mm256_max_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
        };
        let l = self.layout;
        let mut acc = [[_mm256_setzero_ps(); V]; AVX2_ROWS];
        // The piece's first pixel in input plane 0, and its channels' weights of term 0.
        let x0 = self.x.as_ptr().wrapping_add(self.at + piece.col);
        let mut weights = self.panel.as_ptr().wrapping_add(piece.first_row);
        for c in 0..l.channels {
            let plane = x0.wrapping_add(c * l.plane);
            for &tap in &l.taps {
                let from = plane.wrapping_add(tap);
                let mut b: [__m256; V] = [_mm256_setzero_ps(); V];
                for v in 0..V {
                    let at = from.wrapping_add(v * AVX2_LANES);
                    // SAFETY: lanes `col + v·8..` of the tile's width from `c·plane + tap +
                    // at`, the loaded ones below `(channels − 1)·plane + furthest tap + at +
                    // width ≤ x.len()` (`fits`).
                    b[v] = unsafe {
                        if v + 1 < V || piece.full {
                            _mm256_loadu_ps(at)
                        } else {
                            _mm256_maskload_ps(at, piece.mask)
                        }
                    };
                }
                if MAPPED {
                    if let Some(map) = &self.map {
                        // `fits` checked the map's lengths against the channels.
                        let (scale, floor) =
                            (_mm256_set1_ps(map.scale[c]), _mm256_set1_ps(map.floor[c]));
                        let shift = map.shift.map(|s| _mm256_set1_ps(s[c]));
                        for v in 0..V {
                            let mut mapped = _mm256_mul_ps(b[v], scale);
                            if let Some(shift) = shift {
                                mapped = _mm256_add_ps(mapped, shift);
                            }
                            b[v] = _mm256_max_ps(mapped, floor);
                        }
                    }
                }
                for r in 0..AVX2_ROWS {
                    // SAFETY: term `k`'s weight of channel `first_row + r < ROWS` in the
                    // panel of `channels × taps × ROWS` values (`fits`).
                    let a = _mm256_set1_ps(unsafe { *weights.add(r) });
                    for v in 0..V {
                        acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
                    }
                }
                weights = weights.wrapping_add(ROWS);
            }
        }
        acc
    }
}

/// Where one AVX2 piece of a tile lies ([`Tile::avx2`]), and the mask of its last
/// vector's lanes below its width.
#[cfg(target_arch = "x86_64")]
struct Piece {
    first_row: usize,
    col: usize,
    /// Whether the last vector is whole (no masked load or store).
    full: bool,
    mask: std::arch::x86_64::__m256i,
}

#[cfg(target_arch = "x86_64")]
impl Piece {
    #[target_feature(enable = "avx2")]
    fn new(first_row: usize, col: usize, width: usize) -> Piece {
        use std::arch::x86_64::{_mm256_cmpgt_epi32, _mm256_set1_epi32, _mm256_setr_epi32};
        let tail = (width - 1) % AVX2_LANES + 1;
        Piece {
            first_row,
            col,
            full: tail == AVX2_LANES,
            // Sign bits set in the lanes below the tail.
            mask: _mm256_cmpgt_epi32(
                _mm256_set1_epi32(tail as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::isa::same_on_every_isa;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// Every output's bits, in the plain loops and on each vector instruction set the CPU
    /// has, over widths that take each tile and piece shape and a partial panel.
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
            let w = PlanarWeights::pack(&w, out, inp).unwrap();
            for (bias, relu) in [(None, false), (Some(&bias[..]), true)] {
                same_on_every_isa(&format!("{batch}×{inp}→{out}×{pixels}"), || {
                    let mut y = vec![f32::NAN; batch * out * pixels];
                    forward(batch, pixels, &x, &w, bias, relu, &mut y).unwrap();
                    bits(&y)
                });
            }
        }
    }

    /// A padded, dilated or strided convolution's outputs, the same bits on every
    /// instruction set as in the plain loops.
    #[test]
    fn padded_planes_give_the_portable_loops_bits() {
        use crate::conv::{Conv2d, ConvWindow};
        for (input, kernel, pad, dilation) in [
            ([1, 3, 7, 7], [3, 3], [1, 1], [1, 1]),
            ([2, 5, 9, 53], [3, 2], [2, 0], [2, 1]),
            ([1, 2, 4, 100], [1, 5], [0, 2], [1, 1]),
            ([1, 3, 17, 17], [3, 3], [1, 1], [1, 1]),
        ] {
            // The last at stride 2 (an image's stem), the others at 1.
            let stride = if input[2] == 17 { [2, 2] } else { [1, 1] };
            let window = ConvWindow {
                out_channels: 11,
                kernel,
                stride,
                pad,
                dilation,
                groups: 1,
            };
            let g = Conv2d::new(input, window).unwrap();
            let x = crate::test_values(g.input_len(), 4);
            let depth = input[1] * kernel[0] * kernel[1];
            let w = PlanarWeights::pack(&crate::test_values(11 * depth, 5), 11, depth).unwrap();
            let bias = crate::test_values(11, 6);
            same_on_every_isa(&format!("{input:?} {kernel:?}"), || {
                let mut y = vec![f32::NAN; g.output_len()];
                forward_conv(&g, &x, &w, Some(&bias), true, &mut y).unwrap();
                bits(&y)
            });
        }
    }

    /// A mapped input (scale, shift, floor per input channel) gives the same bits on
    /// every instruction set as in the plain loops, with and without a shift, over partial vectors.
    #[test]
    fn mapped_inputs_give_the_portable_loops_bits() {
        let (batch, inp, out, pixels) = (2, 13, 11, 37);
        let x = crate::test_values(batch * inp * pixels, 21);
        let w = PlanarWeights::pack(&crate::test_values(out * inp, 22), out, inp).unwrap();
        let (scale, shift) = (crate::test_values(inp, 23), crate::test_values(inp, 24));
        let floor = vec![0.0f32; inp];
        for shift in [None, Some(&shift[..])] {
            let input = MappedInput {
                x: &x,
                map: InputMap {
                    scale: &scale,
                    shift,
                    floor: &floor,
                },
            };
            let y = same_on_every_isa("mapped", || {
                let mut y = vec![f32::NAN; batch * out * pixels];
                forward_mapped(batch, pixels, input, &w, None, true, &mut y).unwrap();
                bits(&y)
            });
            assert!(y.iter().any(|&v| f32::from_bits(v) > 0.0));
        }
        let short = InputMap {
            scale: &scale[1..],
            shift: None,
            floor: &floor,
        };
        let mut y = vec![7.0; batch * out * pixels];
        let input = MappedInput { x: &x, map: short };
        assert!(forward_mapped(batch, pixels, input, &w, None, false, &mut y).is_err());
        assert!(y.iter().all(|&v| v == 7.0));
    }

    /// NaN and −0 through the ReLU give +0, and a NaN without it stays.
    #[test]
    fn relu_takes_nan_and_negative_zero_to_zero() {
        let w = PlanarWeights::pack(&[1.0], 1, 1).unwrap();
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
