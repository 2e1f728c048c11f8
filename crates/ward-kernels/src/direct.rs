//! Convolutions computed straight from the (zero-padded) input, with no column matrix
//! and no packing of the patches: the transpose of the im2col product, `Yᵀ (pixels ×
//! channels) = colsᵀ · Wᵀ`, where a tile of [`PIXELS`] rows by [`CHANNELS`] output
//! channels is 20 vector registers. Each step of the sum broadcasts one input value per
//! row of the tile (a scalar load from wherever the patch lies in the padded image)
//! against two vectors of the other operand, laid out once per call in strips of
//! [`CHANNELS`] channels. One tile kernel serves three sums:
//!
//! - [`forward`]: rows are output pixels, the sum runs over (input channel, tap), the
//!   strips are the weight's (`Wᵀ`, [`WeightStrips`]). It runs in the im2col product's
//!   order, in slices of [`SLICE_DEPTH`] summed from zero with fused multiply-adds and
//!   added up as each ends: the matrix crate's order, so the result has its bits
//!   (`tests/it/conv.rs`).
//! - the data gradient of a stride-1 convolution, which is a forward convolution of the
//!   padded output gradient with the weight flipped and transposed
//!   (`Conv2d::backward_data`); its terms are summed in another order than the matrix
//!   path's.
//! - [`weight_grad`]: rows are the column matrix's (input channel, tap), the sum runs
//!   over every output pixel of the batch, the strips are the output gradient's by pixel
//!   ([`GradientStrips`]).
//!
//! Needs AVX-512F ([`crate::panels::available`]).

#![allow(
    unsafe_code,
    reason = "the tile kernel is AVX-512 intrinsics, run only once the CPU feature is detected; `forward` and `weight_grad` check that the furthest input value a tile reads and every weight and output index lie inside their slices before it runs"
)]
#![allow(
    clippy::indexing_slicing,
    reason = "indices are below lengths checked at the top of each function"
)]

use crate::error::KernelError;
use crate::matmul::MatRef;
use crate::panels::SLICE_DEPTH;

const KERNEL: &str = "conv2d (direct)";

/// Output pixels in one tile (one broadcast register each step).
pub const PIXELS: usize = 10;
/// Tiles that pass over each slice of a strip together (see [`tiles`]).
const TILE_BLOCK: usize = 8;
/// Output channels in one tile: two 16-lane vectors.
pub const CHANNELS: usize = 32;
const LANES: usize = 16;

/// `Wᵀ` (`k × og`) in strips of [`CHANNELS`] output channels: strip `s` holds rows
/// `0..k` of channels `s·CHANNELS..`, [`CHANNELS`] values a row, zero past `og`.
#[derive(Debug, Clone, Default)]
pub struct WeightStrips {
    data: Vec<f32>,
    k: usize,
    og: usize,
}

impl WeightStrips {
    /// Lays out `w` (`og × k`, a group's weight), strips across rayon's threads.
    pub fn new(w: MatRef<'_>) -> WeightStrips {
        /// Rows of a strip written at a time (8 KiB of it, in the L1 cache while each
        /// of its channels is filled in): a deep layer's strip (576 KiB for ResNet's
        /// last stage) filled a channel at a time through the whole of it read every
        /// cache line back from L3 once per channel.
        const ROWS: usize = 64;
        let (og, k) = (w.rows(), w.cols());
        WeightStrips::filled(og, k, |s, strip| {
            let channels = CHANNELS.min(og - s * CHANNELS);
            // One row segment per channel of a half strip.
            let mut segments = [[0.0f32; ROWS]; LANES];
            for (block, rows) in strip.chunks_mut(ROWS * CHANNELS).enumerate() {
                let (k0, depth) = (block * ROWS, rows.len() / CHANNELS);
                for half in 0..CHANNELS / LANES {
                    let first = half * LANES;
                    let filled = channels.saturating_sub(first).min(LANES);
                    for (i, segment) in segments.iter_mut().take(filled).enumerate() {
                        let (o, out) = (s * CHANNELS + first + i, &mut segment[..depth]);
                        match w.row_segment(o, k0, depth) {
                            Some(row) => out.copy_from_slice(row),
                            None => {
                                for (kk, v) in out.iter_mut().enumerate() {
                                    *v = w.at(o, k0 + kk);
                                }
                            }
                        }
                    }
                    // Zeros past `og`.
                    let sources: [&[f32]; LANES] = std::array::from_fn(|i| {
                        if i < filled {
                            &segments[i][..depth]
                        } else {
                            &[]
                        }
                    });
                    write_columns(&sources, depth, rows, first);
                }
            }
        })
    }

    /// Lays out the `k × n` matrix `b` itself (not its transpose) in strips of its
    /// columns, for [`product`]: a row-major `b` is copied a run of [`CHANNELS`] at a
    /// time.
    pub fn of_matrix(b: MatRef<'_>) -> WeightStrips {
        let n = b.cols();
        WeightStrips::filled(n, b.rows(), |s, strip| {
            let (first, width) = (s * CHANNELS, CHANNELS.min(n - s * CHANNELS));
            for (kk, row) in strip.chunks_exact_mut(CHANNELS).enumerate() {
                match b.row_segment(kk, first, width) {
                    Some(src) => row[..width].copy_from_slice(src),
                    None => {
                        for (j, v) in row[..width].iter_mut().enumerate() {
                            *v = b.at(kk, first + j);
                        }
                    }
                }
            }
        })
    }

    /// Lays out the weight of a stride-1 convolution's data gradient from one group's
    /// weight `w` (`[og][cg][taps]`): the `cg × og·taps` matrix whose element `(c, (o,
    /// t))` is `w[o][c][taps − 1 − t]` (the window flipped, the channels transposed).
    /// Each output channel's block of `w` for a strip's channels (contiguous) becomes
    /// `taps` contiguous rows of the strip.
    pub fn flipped(
        w: &[f32],
        og: usize,
        cg: usize,
        taps: usize,
    ) -> Result<WeightStrips, KernelError> {
        if og.checked_mul(cg).and_then(|v| v.checked_mul(taps)) != Some(w.len()) {
            return Err(KernelError::geometry(
                KERNEL,
                format!("a weight of {} values for [{og}, {cg}, {taps}]", w.len()),
            ));
        }
        Ok(WeightStrips::filled(cg, og * taps, |s, strip| {
            let channels = CHANNELS.min(cg - s * CHANNELS);
            for (o, rows) in strip.chunks_exact_mut(taps * CHANNELS).enumerate() {
                for jj in 0..channels {
                    let src = &w[(o * cg + s * CHANNELS + jj) * taps..][..taps];
                    for (row, &v) in rows.chunks_exact_mut(CHANNELS).zip(src.iter().rev()) {
                        row[jj] = v;
                    }
                }
            }
        }))
    }

    /// Strips of `k` rows for `og` channels, zero-filled, strip `s` then written by
    /// `fill(s, strip)`, strips across rayon's threads.
    fn filled(og: usize, k: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> WeightStrips {
        use rayon::prelude::*;
        let mut data = vec![0.0f32; og.div_ceil(CHANNELS) * k * CHANNELS];
        if k > 0 {
            data.par_chunks_mut(k * CHANNELS)
                .enumerate()
                .for_each(|(s, strip)| fill(s, strip));
        }
        WeightStrips { data, k, og }
    }
}

/// Writes a tile (`PIXELS` rows of `CHANNELS`) into the output, transposed: channel `jj <
/// channels` of pixels `0..count` to `y[jj·plane..][..count]`.
///
/// # Safety
/// The CPU must have AVX-512F; `tile` must hold `PIXELS·CHANNELS` values, `count ≤
/// PIXELS`, `channels ≤ CHANNELS`, and `y` at least `(channels − 1)·plane + count`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn store_tile(tile: &[f32], count: usize, channels: usize, y: &mut [f32], plane: usize) {
    use std::arch::x86_64::{_mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_setzero_ps};
    let keep = (1u16 << count) - 1;
    for half in 0..CHANNELS / LANES {
        let first = half * LANES;
        if first >= channels {
            break;
        }
        let rows = std::array::from_fn(|j| {
            if j < PIXELS {
                // SAFETY: row j < PIXELS of the tile, columns first..first + 16 ≤ CHANNELS.
                unsafe { _mm512_loadu_ps(tile.as_ptr().add(j * CHANNELS + first)) }
            } else {
                _mm512_setzero_ps()
            }
        });
        for (i, v) in transpose16(rows)
            .into_iter()
            .take(channels - first)
            .enumerate()
        {
            // SAFETY: channel first + i < channels: its `count` values lie inside `y`
            // (the caller's guarantee).
            unsafe { _mm512_mask_storeu_ps(y.as_mut_ptr().add((first + i) * plane), keep, v) };
        }
    }
}

/// Writes 16 runs of `depth` values (`sources[i]`, or zeros where it is empty) into
/// columns `first..first + 16` of `rows` (`depth` rows of [`CHANNELS`]):
/// `rows[kk][first + i] = sources[i][kk]`, 16 rows at a time through AVX-512 transposes
/// where the CPU has them.
fn write_columns(sources: &[&[f32]; LANES], depth: usize, rows: &mut [f32], first: usize) {
    let value = |i: usize, kk: usize| sources[i].get(kk).copied().unwrap_or(0.0);
    let mut kk = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::panels::available()
        && sources.iter().all(|s| s.is_empty() || s.len() >= depth)
        && rows.len() >= depth * CHANNELS
        && first + LANES <= CHANNELS
    {
        while kk + LANES <= depth {
            // SAFETY: the CPU has AVX-512F (detected); `transpose_into` reads values kk..kk
            // + 16 ≤ depth of each non-empty source (each holds `depth` at least) and
            // writes columns first..first + 16 ≤ CHANNELS of rows kk..kk + 16 ≤ depth,
            // inside `rows` (checked just above).
            unsafe { transpose_into(sources, kk, rows, first) };
            kk += LANES;
        }
    }
    for kk in kk..depth {
        let row = &mut rows[kk * CHANNELS + first..][..LANES];
        for (i, v) in row.iter_mut().enumerate() {
            *v = value(i, kk);
        }
    }
}

/// The 16×16 block of `sources` from value `kk` on, transposed into `rows` (rows `kk..kk +
/// 16` of [`CHANNELS`], columns `first..first + 16`); an empty source gives zeros.
///
/// # Safety
/// The CPU must have AVX-512F; each non-empty source must hold `kk + 16` values, and
/// `rows` `(kk + 16)·CHANNELS` with `first + 16 ≤ CHANNELS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_into(sources: &[&[f32]; LANES], kk: usize, rows: &mut [f32], first: usize) {
    use std::arch::x86_64::{_mm512_loadu_ps, _mm512_setzero_ps, _mm512_storeu_ps};
    let block = std::array::from_fn(|i| {
        if sources[i].is_empty() {
            _mm512_setzero_ps()
        } else {
            // SAFETY: values kk..kk + 16 of a non-empty source (the caller's guarantee).
            unsafe { _mm512_loadu_ps(sources[i].as_ptr().add(kk)) }
        }
    });
    for (j, v) in transpose16(block).into_iter().enumerate() {
        // SAFETY: row kk + j's columns first..first + 16 lie inside `rows` (the caller's
        // guarantee).
        unsafe { _mm512_storeu_ps(rows.as_mut_ptr().add((kk + j) * CHANNELS + first), v) };
    }
}

/// The transpose of a 16×16 block held as 16 rows: `out[i]` lane `j` is `rows[j]` lane
/// `i`. Four rounds of shuffles, each pairing elements 1, 2, 4 and 8 apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [std::arch::x86_64::__m512; LANES]) -> [std::arch::x86_64::__m512; LANES] {
    use std::arch::x86_64::{
        _mm512_castpd_ps, _mm512_castps_pd, _mm512_shuffle_f32x4, _mm512_unpackhi_pd,
        _mm512_unpackhi_ps, _mm512_unpacklo_pd, _mm512_unpacklo_ps,
    };
    // Round 1: pairs of rows, element by element.
    let t: [_; LANES] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // Round 2: pairs of round-1 rows two apart, two elements at a time.
    let u: [_; LANES] = std::array::from_fn(|i| {
        let first = (i & !3) + ((i >> 1) & 1);
        let (a, b) = (_mm512_castps_pd(t[first]), _mm512_castps_pd(t[first + 2]));
        _mm512_castpd_ps(if i & 1 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    // Round 3: 128-bit lanes of rows four apart.
    let v: [_; LANES] = std::array::from_fn(|i| {
        let base = i & !7;
        let (a, b) = (u[base + (i & 3)], u[base + (i & 3) + 4]);
        if i & 4 == 0 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    });
    // Round 4: 128-bit lanes of rows eight apart.
    std::array::from_fn(|i| {
        let (a, b) = (v[i & 7], v[(i & 7) + 8]);
        if i & 8 == 0 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    })
}

/// The furthest element of the input a kernel reads: the largest tap plus the largest
/// pixel offset (`None` when either list is empty, and nothing is read).
fn furthest_read(taps: &[usize], pixels: &[usize]) -> Option<usize> {
    taps.iter()
        .max()
        .zip(pixels.iter().max())
        .map(|(t, p)| t + p)
}

/// The [`PIXELS`] offsets of one tile's rows, from `list[first..]`: rows past the list's
/// end read its element `first` again, and their results are not kept.
fn tile_offsets(list: &[usize], first: usize) -> [usize; PIXELS] {
    let mut offsets = [0usize; PIXELS];
    for (j, off) in offsets.iter_mut().enumerate() {
        *off = list.get(first + j).copied().unwrap_or(list[first]);
    }
    offsets
}

/// `y` (`og × pixels.len()`, row-major, overwritten): `y[o][j] = Σₖ x[taps[k] +
/// pixels[j]] · w[o][k]`, from zero-padded inputs `x_padded` (one image or several, one
/// after another) and the weight strips. `taps` holds, for each row of the column matrix
/// (input channel, tap), the offset of its value for the first output pixel; `pixels`
/// the offset of each output pixel from it.
pub fn forward(
    x_padded: &[f32],
    taps: &[usize],
    pixels: &[usize],
    w: &WeightStrips,
    y: &mut [f32],
) -> Result<(), KernelError> {
    tiles(x_padded, taps, pixels, w, y, Layout::ByChannel)
}

/// How [`tiles`] writes its output.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout<'a> {
    /// `y[o][j]`: a convolution's output planes.
    ByChannel,
    /// `y[j][o]`: a matrix product's rows, plus `bias[o]` when given.
    ByPixel { bias: Option<&'a [f32]> },
}

/// Pixels of one task of [`product`]: a block of tiles.
const PRODUCT_ROWS: usize = TILE_BLOCK * PIXELS;

/// The matrix product `c = a · b` (`c` `m × n`, row-major, overwritten), plus `bias`
/// (`n`) on every row when given, on the direct kernel, where `a` (`m × k`) is read through offsets, `a[i][kk] = a_data[rows[i] +
/// cols[kk]]` (so any strided or transposed view of a matrix serves), and `b` (`k × n`)
/// is given in strips (of a weight's transpose, [`WeightStrips::new`], or of a matrix
/// itself, [`WeightStrips::of_matrix`]). Blocks of rows run across rayon's threads; each
/// element is summed in slices of [`SLICE_DEPTH`] in order, whatever the thread count.
pub fn product(
    a_data: &[f32],
    rows: &[usize],
    cols: &[usize],
    b: &WeightStrips,
    bias: Option<&[f32]>,
    c: &mut [f32],
) -> Result<(), KernelError> {
    use rayon::prelude::*;
    let n = b.og;
    if c.len() != rows.len() * n || bias.is_some_and(|b| b.len() != n) {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "c has {} values for {}×{n}, bias {:?}",
                c.len(),
                rows.len(),
                bias.map(<[f32]>::len)
            ),
        ));
    }
    if n == 0 {
        return Ok(());
    }
    c.par_chunks_mut(PRODUCT_ROWS * n)
        .zip(rows.par_chunks(PRODUCT_ROWS))
        .try_for_each(|(c, rows)| tiles(a_data, cols, rows, b, c, Layout::ByPixel { bias }))
}

/// The tiles of [`forward`] and [`product`]: `y[o][j]` or `y[j][o]` (`layout`) `= Σₖ
/// x[taps[k] + pixels[j]] · w[o][k]`.
fn tiles(
    x_padded: &[f32],
    taps: &[usize],
    pixels: &[usize],
    w: &WeightStrips,
    y: &mut [f32],
    layout: Layout<'_>,
) -> Result<(), KernelError> {
    let (k, og) = (w.k, w.og);
    let plane = pixels.len();
    let reach = furthest_read(taps, pixels);
    if taps.len() != k
        || y.len() != og * plane
        || reach.is_some_and(|r| r >= x_padded.len())
        || w.data.len() != og.div_ceil(CHANNELS) * k * CHANNELS
    {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "{} taps for {k} rows, output {} for {og}×{plane}, input {} reached at {reach:?}",
                taps.len(),
                y.len(),
                x_padded.len()
            ),
        ));
    }
    if k == 0 {
        y.fill(0.0);
        return Ok(());
    }
    if !crate::panels::available() {
        return Err(KernelError::geometry(KERNEL, "this CPU has no AVX-512F"));
    }
    match layout {
        // Strips across the threads: their output rows are apart, and a single image
        // (inference at batch 1) keeps every core busy.
        Layout::ByChannel => {
            use rayon::prelude::*;
            y.par_chunks_mut(CHANNELS * plane)
                .enumerate()
                .for_each(|(s, y_s)| {
                    let store = |first: usize, count: usize, channels: usize, tile: &[f32]| {
                        // SAFETY: AVX-512F was detected above; `tile` holds
                        // PIXELS·CHANNELS values; `y_s` holds `channels` rows of
                        // `plane`, and pixels `first..first + count` lie below `plane`.
                        #[cfg(target_arch = "x86_64")]
                        unsafe {
                            store_tile(tile, count, channels, &mut y_s[first..], plane)
                        };
                        #[cfg(not(target_arch = "x86_64"))]
                        let _ = (tile, count, channels, &y_s, plane, first);
                    };
                    // SAFETY: the lengths were checked above, and AVX-512F detected.
                    unsafe { strip_tiles(x_padded, taps, pixels, w, s, store) };
                });
        }
        Layout::ByPixel { bias } => {
            for s in 0..og.div_ceil(CHANNELS) {
                let store = |first: usize, count: usize, channels: usize, tile: &[f32]| {
                    for (j, values) in tile.chunks_exact(CHANNELS).take(count).enumerate() {
                        let row = &mut y[(first + j) * og + s * CHANNELS..][..channels];
                        match bias {
                            Some(b) => {
                                let b = &b[s * CHANNELS..][..channels];
                                for ((y, &v), &b) in row.iter_mut().zip(values).zip(b) {
                                    *y = v + b;
                                }
                            }
                            None => row.copy_from_slice(&values[..channels]),
                        }
                    }
                };
                // SAFETY: the lengths were checked above, and AVX-512F detected.
                unsafe { strip_tiles(x_padded, taps, pixels, w, s, store) };
            }
        }
    }
    Ok(())
}

/// The tiles of strip `s` of [`tiles`], each handed to `store(first pixel, pixels,
/// channels, tile)` when summed.
///
/// The tiles go in blocks of TILE_BLOCK, and every tile of a block passes over one slice
/// of the strip's rows before the next slice, so that the slice (32 KiB) is read from L2
/// once per block rather than once per tile, while the block's sums (10 KiB) stay in L1:
/// a deep layer's strip (k = 4,608 for ResNet's last stage: 576 KiB) otherwise streamed
/// from L2 or L3 for every tile. The sums are the same: each slice is summed from zero
/// and added to the tile as it ends, in order.
///
/// # Safety
/// The CPU must have AVX-512F; `taps` must hold `w.k` offsets, `s` name a strip of `w`,
/// and every `tap + pixel` lie inside `x_padded` ([`tiles`] checks all three).
unsafe fn strip_tiles(
    x_padded: &[f32],
    taps: &[usize],
    pixels: &[usize],
    w: &WeightStrips,
    s: usize,
    mut store: impl FnMut(usize, usize, usize, &[f32]),
) {
    let (k, plane) = (w.k, pixels.len());
    let strip = &w.data[s * k * CHANNELS..][..k * CHANNELS];
    let channels = CHANNELS.min(w.og - s * CHANNELS);
    let mut sums = [0.0f32; TILE_BLOCK * PIXELS * CHANNELS];
    for block in (0..plane).step_by(TILE_BLOCK * PIXELS) {
        let tiles = TILE_BLOCK.min((plane - block).div_ceil(PIXELS));
        let sums = &mut sums[..tiles * PIXELS * CHANNELS];
        for k0 in (0..k).step_by(SLICE_DEPTH) {
            let depth = SLICE_DEPTH.min(k - k0);
            let (taps, strip) = (
                &taps[k0..k0 + depth],
                &strip[k0 * CHANNELS..][..depth * CHANNELS],
            );
            for (t, tile) in sums.chunks_exact_mut(PIXELS * CHANNELS).enumerate() {
                let offsets = tile_offsets(pixels, block + t * PIXELS);
                // SAFETY: AVX-512F is present and every input read is at `tap + offset`
                // for a tap in `taps` and an offset in `pixels`, inside `x_padded` (the
                // caller's guarantees); the slice of the strip holds `depth·CHANNELS`
                // values, all the kernel reads of it, and `tile` PIXELS·CHANNELS.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    tile_avx512(x_padded, taps, &offsets, strip, tile, k0 > 0)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (x_padded, taps, offsets, strip, &tile);
            }
        }
        for (first, tile) in (block..plane)
            .step_by(PIXELS)
            .zip(sums.chunks_exact(PIXELS * CHANNELS))
        {
            store(first, PIXELS.min(plane - first), channels, tile);
        }
    }
}

/// `tile[j][o] (+)= Σₖ x[taps[k] + offsets[j]] · strip[k][o]` (`tile` row-major,
/// [`PIXELS`] rows of [`CHANNELS`]), in slices of [`SLICE_DEPTH`] summed from zero with
/// fused multiply-adds and added up in order: the first slice overwrites the tile unless
/// `accumulate`.
///
/// # Safety
/// The CPU must have AVX-512F; `x[taps[k] + offsets[j]]` must lie inside `x` for every
/// `k` and `j`, `strip` must hold `taps.len()·CHANNELS` values and `tile`
/// `PIXELS·CHANNELS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(
    x: &[f32],
    taps: &[usize],
    offsets: &[usize; PIXELS],
    strip: &[f32],
    tile: &mut [f32],
    accumulate: bool,
) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    let k = taps.len();
    debug_assert!(strip.len() >= k * CHANNELS);
    let px = x.as_ptr();
    for k0 in (0..k).step_by(SLICE_DEPTH) {
        let depth = SLICE_DEPTH.min(k - k0);
        let mut acc: [__m512; 2 * PIXELS] = [_mm512_setzero_ps(); 2 * PIXELS];
        let mut pw = strip[k0 * CHANNELS..].as_ptr();
        for &tap in &taps[k0..k0 + depth] {
            // SAFETY: `pw` steps through the strip's rows k0..k0 + depth, inside it;
            // `tap + offsets[j]` lies inside `x` (the caller's guarantee).
            unsafe {
                let w0 = _mm512_loadu_ps(pw);
                let w1 = _mm512_loadu_ps(pw.add(LANES));
                for j in 0..PIXELS {
                    let v = _mm512_set1_ps(*px.add(tap + offsets[j]));
                    acc[2 * j] = _mm512_fmadd_ps(v, w0, acc[2 * j]);
                    acc[2 * j + 1] = _mm512_fmadd_ps(v, w1, acc[2 * j + 1]);
                }
                pw = pw.add(CHANNELS);
            }
        }
        // The slice's sums are added to the tile in memory, so that only the slice's
        // accumulators take registers. The first slice's sum is the total itself (0 + s
        // would turn −0 into +0).
        for (j, values) in tile.chunks_exact_mut(CHANNELS).take(PIXELS).enumerate() {
            let at = values.as_mut_ptr();
            // SAFETY: each row of `tile` holds CHANNELS = 2·LANES values.
            unsafe {
                let (mut a, mut b) = (acc[2 * j], acc[2 * j + 1]);
                if k0 > 0 || accumulate {
                    a = _mm512_add_ps(_mm512_loadu_ps(at), a);
                    b = _mm512_add_ps(_mm512_loadu_ps(at.add(LANES)), b);
                }
                _mm512_storeu_ps(at, a);
                _mm512_storeu_ps(at.add(LANES), b);
            }
        }
    }
}

/// One group's output gradient laid out by pixel, in strips of [`CHANNELS`] output
/// channels: row `p = n·plane + q` of strip `s` holds `dy[n][g·og + s·CHANNELS + jj][q]`
/// for `jj < CHANNELS`, zero past the group's last channel.
#[derive(Debug, Clone)]
pub struct GradientStrips {
    data: Vec<f32>,
    pixels: usize,
    og: usize,
}

impl GradientStrips {
    /// Lays out group `g` (`og` channels from `g·og`) of `dy` (`[batch, channels,
    /// plane]`).
    pub fn new(
        dy: &[f32],
        [batch, channels, plane]: [usize; 3],
        g: usize,
        og: usize,
    ) -> Result<GradientStrips, KernelError> {
        let fits = (g + 1).checked_mul(og).is_some_and(|end| end <= channels)
            && batch
                .checked_mul(channels)
                .and_then(|v| v.checked_mul(plane))
                == Some(dy.len());
        if !fits {
            return Err(KernelError::geometry(
                KERNEL,
                format!(
                    "group {g} of {og} channels in dy [{batch}, {channels}, {plane}] ({} values)",
                    dy.len()
                ),
            ));
        }
        use rayon::prelude::*;
        let pixels = batch * plane;
        let mut data = vec![0.0f32; og.div_ceil(CHANNELS) * pixels * CHANNELS];
        // One task per strip and image: its rows are contiguous.
        data.par_chunks_mut(plane * CHANNELS)
            .enumerate()
            .for_each(|(t, rows)| {
                let (s, n) = (t / batch, t % batch);
                let filled = CHANNELS.min(og - s * CHANNELS);
                for first in (0..filled).step_by(LANES) {
                    let sources: [&[f32]; LANES] = std::array::from_fn(|i| {
                        if first + i < filled {
                            let o = g * og + s * CHANNELS + first + i;
                            &dy[(n * channels + o) * plane..][..plane]
                        } else {
                            &[]
                        }
                    });
                    write_columns(&sources, plane, rows, first);
                }
            });
        Ok(GradientStrips { data, pixels, og })
    }
}

/// Pixels of the weight gradient's sum taken at a time: their rows of one gradient
/// strip (128 KiB) stay in the L2 cache while every tile of taps passes over them.
pub const PIXEL_BLOCK: usize = 1024;

/// One group's weight gradient `dw` (`og × k`, row-major, overwritten): `dw[o][r] = Σₚ
/// dy[p][o] · x[taps[r] + pixels[p]]` over the batch's output pixels `p`, from the
/// zero-padded input `x_padded`. Tiles of [`PIXELS`] taps by [`CHANNELS`] channels run
/// across rayon's threads, each summing blocks of [`PIXEL_BLOCK`] pixels in order: the
/// sum's order is fixed by the geometry, never by the thread count.
pub fn weight_grad(
    x_padded: &[f32],
    taps: &[usize],
    pixels: &[usize],
    dy: &GradientStrips,
    dw: &mut [f32],
) -> Result<(), KernelError> {
    use rayon::prelude::*;
    let (k, og) = (taps.len(), dy.og);
    let reach = furthest_read(taps, pixels);
    if pixels.len() != dy.pixels || dw.len() != og * k || reach.is_some_and(|r| r >= x_padded.len())
    {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "{} pixels for a gradient of {}, dw {} for {og}×{k}, input {} reached at {reach:?}",
                pixels.len(),
                dy.pixels,
                dw.len(),
                x_padded.len()
            ),
        ));
    }
    if pixels.is_empty() || k == 0 {
        dw.fill(0.0);
        return Ok(());
    }
    if !crate::panels::available() {
        return Err(KernelError::geometry(KERNEL, "this CPU has no AVX-512F"));
    }
    let tiles = k.div_ceil(PIXELS);
    let strip_len = dy.pixels * CHANNELS;
    // dWᵀ by tile: [strip][tile][PIXELS taps][CHANNELS].
    let mut sums = vec![0.0f32; og.div_ceil(CHANNELS) * tiles * PIXELS * CHANNELS];
    for (b, block) in pixels.chunks(PIXEL_BLOCK).enumerate() {
        sums.par_chunks_mut(PIXELS * CHANNELS)
            .enumerate()
            .for_each(|(t, tile)| {
                let (s, first) = (t / tiles, (t % tiles) * PIXELS);
                let offsets = tile_offsets(taps, first);
                let rows = &dy.data[s * strip_len + b * PIXEL_BLOCK * CHANNELS..]
                    [..block.len() * CHANNELS];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512F was detected above. Every input read is at `pixel +
                // tap` for a pixel in `pixels` and a tap in `taps`, at most `reach`,
                // below `x_padded.len()` (checked above); `rows` holds
                // `block.len()·CHANNELS` values and `tile` PIXELS·CHANNELS.
                unsafe {
                    tile_avx512(x_padded, block, &offsets, rows, tile, b > 0)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (offsets, rows, tile);
            });
    }
    // dW by strips of CHANNELS rows across the threads, each tile transposed into
    // its rows.
    dw.par_chunks_mut(CHANNELS * k)
        .zip(sums.par_chunks(tiles * PIXELS * CHANNELS))
        .for_each(|(rows, strip)| {
            let channels = rows.len() / k;
            for (t, tile) in strip.chunks_exact(PIXELS * CHANNELS).enumerate() {
                let first = t * PIXELS;
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX-512F was detected above; the tile holds PIXELS·CHANNELS
                // values, and rows `0..channels` of `rows` (k each) hold columns
                // `first..first + count` (first + count ≤ k).
                unsafe {
                    store_tile(tile, PIXELS.min(k - first), channels, &mut rows[first..], k)
                };
            }
        });
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The strips hold the weight's transpose, whichever way they are written (the
    /// AVX-512 transposes where the CPU has them, the scalar tail past the last whole
    /// block of 16 rows), for channel counts that fill no strip, one, and part of two.
    #[test]
    fn strips_hold_the_transposed_weight() {
        for (og, k) in [(5usize, 3usize), (32, 64), (45, 150), (70, 17)] {
            let w: Vec<f32> = (0..og * k).map(|i| i as f32).collect();
            let strips = WeightStrips::new(MatRef::row_major(&w, og, k).unwrap());
            for o in 0..og.div_ceil(CHANNELS) * CHANNELS {
                for kk in 0..k {
                    let (s, jj) = (o / CHANNELS, o % CHANNELS);
                    let got = strips.data[(s * k + kk) * CHANNELS + jj];
                    let want = if o < og { w[o * k + kk] } else { 0.0 };
                    assert_eq!(got, want, "og {og}, k {k}: channel {o}, row {kk}");
                }
            }
        }
    }
}
