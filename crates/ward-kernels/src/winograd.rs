//! 3×3 stride-1 convolutions in one group by Winograd's minimal filtering F(4×4, 3×3):
//! each 4×4 block of outputs ("tile") of a channel comes from the 6×6 input patch under
//! it as `Y = Aᵀ [Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)] A`, so the sum over input channels becomes
//! 36 independent products (one per point `ξ` of the 6×6 transformed tile) of
//! `U_ξ (out × in)` by `V_ξ (in × tiles)`, with 36 multiply-adds per tile and channel
//! pair where a direct convolution needs 16 × 9 = 144.
//!
//! Why: ResNet-18's 3×3 layers, 90 % of its multiply-adds, ran on the direct kernels at
//! 1.05–1.12× MXNet's time (docs/BENCHMARKS.md, 2026-12-07 00:08), and `ward serve`
//! on it is bound by that compute; oneDNN's inference runs them direct too, so fewer
//! multiply-adds is how ward gets ahead of it.
//!
//! How: the tiles of all images are numbered in one sequence (image, tile row, tile
//! column) and taken in blocks of whole tile rows, up to [`BLOCK_TILES`] tiles. For a
//! block, each input channel's patches are transformed (`Bᵀ d B`, 16 tiles at a time in
//! vector lanes: 16 along a tile row, or several whole rows where a row has 8 tiles or
//! fewer) into `V[c][ξ][tile]`, in parallel over channels;
//! then runs of output channels, in parallel, each take the 36 products on
//! `ward_kernels::planar`'s tiles (weights `U_ξ` laid out once, as [`WinogradWeights`])
//! into `M[o][ξ][tile]`, transform them back (`Aᵀ m A`), add the bias, maybe apply a
//! ReLU, and write each tile's 4×4 outputs that lie inside the image.
//!
//! The sums are not the direct convolution's: the transforms add and scale inputs before
//! the products, which costs a few ulps more than the direct order (the property tests
//! hold it to the reference interpreter within 1e-5 relative per summed term, as the
//! other kernels). The transforms use the points 0, ±1, ±2 (Lavin and Gray, 2015), whose
//! matrices `Bᵀ` and `Aᵀ` are small integers, exact in `f32`; `G`'s fractions are applied
//! to the weight in `f64` once. The AVX-512 instance, the AVX2 one (the portable
//! transforms compiled for AVX2) and the portable one give the same bits (no fused
//! multiply-adds in the transforms, the products' tiles are the planar kernel's).

#![allow(
    unsafe_code,
    reason = "the transforms' AVX-512 instances (register transposes, loads and stores bounded by the asserts of `input_group` and `output_group`) and their AVX2 instances (safe code compiled for AVX2) run once the CPU features are detected"
)]
#![allow(
    clippy::needless_range_loop,
    reason = "the transforms address a tile's points by row and column (`i·6 + j`), which reads clearer as indices than as iterators"
)]
#![allow(
    clippy::indexing_slicing,
    reason = "indices are below lengths checked at the top of `forward` and `WinogradWeights::pack`, and lane groups are whole chunks of the scratch planes"
)]

use std::cell::RefCell;
use std::thread::LocalKey;

use rayon::prelude::*;

use crate::conv::Conv2d;
use crate::error::{check_len, KernelError};
use crate::planar::{self, PlanarWeights, Strides, ROWS};
use crate::Isa;

const KERNEL: &str = "conv2d (winograd)";

/// Outputs along each side of a tile.
const OUT: usize = 4;
/// Inputs along each side of a tile's patch: `OUT + 3 − 1`.
const PATCH: usize = 6;
/// Points of a transformed tile.
const POINTS: usize = PATCH * PATCH;
/// Tiles transformed together, one per vector lane.
const LANES: usize = 16;
/// The most tiles in one block: three of the planar kernel's 48-pixel tiles per product,
/// with the block's transformed inputs (`in × 36 × tiles`) read once per product from the
/// L2 cache (a product reads `in × tiles` of them).
pub const BLOCK_TILES: usize = 144;

/// `Bᵀ`, which takes a 6-value column of a patch to its transform (points 0, ±1, ±2, ∞).
#[cfg(test)]
const BT: [[f64; PATCH]; PATCH] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// `G`, which takes a 3-tap filter to its transform.
const G: [[f64; 3]; PATCH] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `Aᵀ`, which takes a transformed column back to 4 outputs.
#[cfg(test)]
const AT: [[f64; PATCH]; OUT] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// `U = G g Gᵀ` of one 3×3 filter `g` (row-major), in f64, as the 36 points row by row:
/// `G`'s products written out (its zeros and repeated rows taken once).
fn transform_filter(g: &[f32]) -> [f32; POINTS] {
    let g: [f64; 9] = std::array::from_fn(|i| f64::from(g[i]));
    // `G` applied to the three values `v`: the six rows of `G v`.
    let apply = |v: [f64; 3]| -> [f64; PATCH] {
        let (outer, middle) = (v[0] + v[2], v[1]);
        [
            G[0][0] * v[0],
            G[1][0] * (outer + middle),
            G[2][0] * (outer - middle),
            (G[3][0] * v[0] + G[3][2] * v[2]) + G[3][1] * middle,
            (G[4][0] * v[0] + G[4][2] * v[2]) + G[4][1] * middle,
            v[2],
        ]
    };
    // G g: each column of the filter; then (G g) Gᵀ: each row of that.
    let columns: [[f64; PATCH]; 3] = std::array::from_fn(|b| apply([g[b], g[3 + b], g[6 + b]]));
    let mut u = [0.0f32; POINTS];
    for i in 0..PATCH {
        let row = apply([columns[0][i], columns[1][i], columns[2][i]]);
        for (j, v) in row.into_iter().enumerate() {
            u[i * PATCH + j] = v as f32;
        }
    }
    u
}

/// Whether [`forward`] takes `g`: a 3×3 kernel at stride 1 without dilation, in one
/// group (any padding, any channel counts).
pub fn covers(g: &Conv2d) -> bool {
    g.kernel == [3, 3] && g.stride == [1, 1] && g.dilation == [1, 1] && g.groups == 1
}

/// The tiles of one image: `(rows, columns)` of 4×4 output blocks.
pub fn tiles(g: &Conv2d) -> (usize, usize) {
    (g.out_h().div_ceil(OUT), g.out_w().div_ceil(OUT))
}

/// A 3×3 convolution's weight transformed once (`U = G g Gᵀ` per output and input
/// channel) and laid out as 36 planar weights, one `out × in` per point.
#[derive(Debug, Clone)]
pub struct WinogradWeights {
    points: Box<[PlanarWeights]>,
    out_channels: usize,
    in_channels: usize,
}

impl WinogradWeights {
    /// Transforms `w` (OIHW, `out_channels × in_channels × 3 × 3`).
    pub fn pack(
        w: &[f32],
        out_channels: usize,
        in_channels: usize,
    ) -> Result<WinogradWeights, KernelError> {
        if out_channels == 0 || in_channels == 0 {
            return Err(KernelError::geometry(
                KERNEL,
                format!("{out_channels} output channels of {in_channels} inputs"),
            ));
        }
        let len = out_channels
            .checked_mul(in_channels)
            .and_then(|v| v.checked_mul(9))
            .ok_or_else(|| KernelError::geometry(KERNEL, "the weight's size overflows"))?;
        check_len(KERNEL, "w", w.len(), len)?;
        // Each pair's 36 points go straight into their places in the 36 laid-out
        // weights: a whole intermediate copy of them (4× the 3×3 kernel) cost as much
        // again in fresh pages while a plan was built.
        let mut points = (0..POINTS)
            .map(|_| PlanarWeights::zeroed(out_channels, in_channels))
            .collect::<Result<Vec<_>, _>>()?;
        for (pair, g) in w.chunks_exact(9).enumerate() {
            let (o, c) = (pair / in_channels, pair % in_channels);
            for (point, u) in transform_filter(g).into_iter().enumerate() {
                *points[point].term_mut(o, c) = u;
            }
        }
        Ok(WinogradWeights {
            points: points.into(),
            out_channels,
            in_channels,
        })
    }
}

/// The convolution `g` ([`covers`] it) of `x` (NCHW) by the weight `w` was transformed
/// from, then each output channel's bias, then with `relu` each output's `y > 0 ? y : 0`
/// (NaN gives 0), into `y` (NCHW). Blocks of tiles run one after another, each spread
/// over rayon's threads.
pub fn forward(
    g: &Conv2d,
    x: &[f32],
    w: &WinogradWeights,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) -> Result<(), KernelError> {
    if !covers(g) {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "a {:?} kernel at stride {:?}, dilation {:?}, {} groups: takes 3×3 at stride 1, one group",
                g.kernel, g.stride, g.dilation, g.groups
            ),
        ));
    }
    if w.out_channels != g.out_channels || w.in_channels != g.in_channels {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "a weight of {} × {} channels for {} × {}",
                w.out_channels, w.in_channels, g.out_channels, g.in_channels
            ),
        ));
    }
    check_len(KERNEL, "x", x.len(), g.input_len())?;
    check_len(KERNEL, "y", y.len(), g.output_len())?;
    if let Some(b) = bias {
        check_len(KERNEL, "bias", b.len(), g.out_channels)?;
    }
    let shape = &Shape::of(g);
    let tile_rows = g.batch * shape.tile_rows;
    if tile_rows == 0 || shape.tile_cols == 0 {
        return Ok(());
    }
    // Blocks of whole tile rows (of consecutive images), at least one, in whole lane
    // groups.
    let block_rows =
        ((BLOCK_TILES / shape.tile_cols).max(1) / shape.group_rows).max(1) * shape.group_rows;
    // Each point's tiles, rounded up to whole lane groups, and one group more, which a
    // tile row's last group may read past the block's tiles.
    let stride = (block_rows * shape.tile_cols).div_ceil(LANES) * LANES + LANES;
    let (inp, out) = (g.in_channels, g.out_channels);
    let out_plane = shape.out_h * shape.out_w;
    let image_out = out * out_plane;
    let panels = out.div_ceil(ROWS);
    let runs = (4 * rayon::current_num_threads()).clamp(1, panels);
    let run_rows = panels.div_ceil(runs) * ROWS;
    let isa = Isa::current();
    with_scratch(&TRANSFORMED, inp * POINTS * stride, |v| {
        for q0 in (0..tile_rows).step_by(block_rows) {
            let rows = q0..(q0 + block_rows).min(tile_rows);
            let block = Block {
                shape,
                rows: rows.clone(),
                stride,
            };
            v.par_chunks_mut(POINTS * stride)
                .enumerate()
                .for_each(|(c, vc)| block.transform_inputs(x, c, vc, isa));
            // The block's images, and each one's outputs in runs of output channels.
            let (n0, n1) = (q0 / shape.tile_rows, (rows.end - 1) / shape.tile_rows);
            let mut by_run: Vec<Vec<&mut [f32]>> = (0..out.div_ceil(run_rows))
                .map(|_| Vec::with_capacity(n1 - n0 + 1))
                .collect();
            for image in y[n0 * image_out..(n1 + 1) * image_out].chunks_exact_mut(image_out) {
                for (run, ys) in by_run
                    .iter_mut()
                    .zip(image.chunks_mut(run_rows * out_plane))
                {
                    run.push(ys);
                }
            }
            let v = &*v;
            by_run
                .into_par_iter()
                .enumerate()
                .for_each(|(run, mut ys)| {
                    let channels = run * run_rows..(out.min((run + 1) * run_rows));
                    with_scratch(&PRODUCTS, channels.len() * POINTS * stride, |m| {
                        for (point, u) in w.points.iter().enumerate() {
                            let at = Strides {
                                x_plane: POINTS * stride,
                                x_at: point * stride,
                                y_plane: POINTS * stride,
                                y_at: point * stride,
                                pixels: rows.len() * shape.tile_cols,
                            };
                            planar::product(u, channels.start, channels.len(), v, m, at, isa);
                        }
                        let epilogue = Epilogue {
                            block: &block,
                            bias,
                            relu,
                            first_image: n0,
                        };
                        for (o, mo) in channels.clone().zip(m.chunks_exact(POINTS * stride)) {
                            epilogue.channel(o, o - channels.start, mo, &mut ys, isa);
                        }
                    });
                });
        }
    });
    Ok(())
}

thread_local! {
    /// A block's transformed inputs, on the thread that calls [`forward`].
    static TRANSFORMED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A run's products, on the thread that runs it.
    static PRODUCTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` values of this thread's `scratch`, grown as needed and kept (its
/// values are stale: every value a block reads it wrote first), or on a fresh buffer when
/// the scratch is in use (a rayon thread waiting inside one call may run another).
/// Why: at batch 1 a 56² layer's scratch is 1.5 MB, which the allocator hands back to the
/// system between calls, and zeroing and faulting it in again cost more than the layer's
/// input transform.
fn with_scratch<R>(
    scratch: &'static LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    scratch.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) => {
            if kept.len() < len {
                kept.resize(len, 0.0);
            }
            f(&mut kept[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// What the transforms need of a convolution's geometry.
#[derive(Debug, Clone, Copy)]
struct Shape {
    in_channels: usize,
    in_h: usize,
    in_w: usize,
    pad: [usize; 2],
    out_h: usize,
    out_w: usize,
    /// Tile rows of one image, and tiles in each.
    tile_rows: usize,
    tile_cols: usize,
    /// Tile rows in one lane group: one when a row has more than 8 tiles (groups of 16
    /// along it), else as many whole rows as 16 lanes hold (ResNet's and DenseNet's 28²
    /// layers have 7 tiles a row, their 14² ones 4: one row a group left 9 or 12 of 16
    /// lanes empty in every transform).
    group_rows: usize,
}

impl Shape {
    fn of(g: &Conv2d) -> Shape {
        let (rows, cols) = tiles(g);
        Shape {
            in_channels: g.in_channels,
            in_h: g.in_h,
            in_w: g.in_w,
            pad: g.pad,
            out_h: g.out_h(),
            out_w: g.out_w(),
            tile_rows: rows,
            tile_cols: cols,
            group_rows: if cols > LANES / 2 {
                1
            } else {
                LANES / cols.max(1)
            },
        }
    }

    /// The lane groups of the tile rows `rows` (a whole number of `group_rows` but for
    /// the last), in order.
    fn groups(&self, rows: std::ops::Range<usize>) -> impl Iterator<Item = Group> + '_ {
        let step = self.group_rows;
        (rows.start..rows.end).step_by(step).flat_map(move |q| {
            let rows_here = step.min(rows.end - q);
            let (column_groups, cols) = if step == 1 {
                (self.tile_cols.div_ceil(LANES), LANES)
            } else {
                (1, self.tile_cols)
            };
            (0..column_groups).map(move |cg| Group {
                first_row: q,
                rows: rows_here,
                first_col: cg * cols,
                cols: cols.min(self.tile_cols - cg * cols),
            })
        })
    }
}

/// Up to 16 tiles transformed together: `cols` tiles from column `first_col` of each of
/// `rows` consecutive tile rows from `first_row`; lane `l` is tile `first_col + l % cols`
/// of row `first_row + l / cols`. Its tiles are consecutive in a block's numbering (a group
/// of several rows takes whole rows).
#[derive(Debug, Clone, Copy)]
struct Group {
    first_row: usize,
    rows: usize,
    first_col: usize,
    cols: usize,
}

impl Group {
    fn lanes(&self) -> usize {
        self.rows * self.cols
    }
}

/// Whole tile rows `rows` (numbered over the batch: image `q / tile_rows`, row `q %
/// tile_rows` of it), whose tile `t` of row `q` is the block's tile `(q − rows.start)·cols +
/// t`; each point's values of them `stride` apart.
struct Block<'a> {
    shape: &'a Shape,
    rows: std::ops::Range<usize>,
    stride: usize,
}

impl Block<'_> {
    /// Input channel `c`'s patches of the block's tiles, transformed (`Bᵀ d B`) into `vc`
    /// (`36 × stride`: point `ξ`'s values at `ξ·stride`). Per lane group: the six input
    /// rows under each of its tile rows, zero-padded, then [`input_group`].
    fn transform_inputs(&self, x: &[f32], c: usize, vc: &mut [f32], isa: Isa) {
        let s = self.shape;
        let tw = s.tile_cols;
        let plane = s.in_h * s.in_w;
        // One padded input row: `pad` zeros, the row, zeros to cover every lane group's
        // patches (4 columns a tile and 2 more).
        let row_len = OUT * tw.div_ceil(LANES) * LANES + 2;
        let mut padded = vec![0.0f32; s.group_rows * PATCH * row_len];
        let mut filled = usize::MAX;
        for group in s.groups(self.rows.clone()) {
            if group.first_row != filled {
                filled = group.first_row;
                for (i, row) in padded.chunks_exact_mut(row_len).enumerate() {
                    let (g, r) = (i / PATCH, i % PATCH);
                    let q = group.first_row + g;
                    let (n, tile_row) = (q / s.tile_rows, q % s.tile_rows);
                    // Input row `4·tile_row + r − pad` of image `n`, zero outside it.
                    let iy = (OUT * tile_row + r)
                        .checked_sub(s.pad[0])
                        .filter(|&iy| iy < s.in_h && g < group.rows);
                    let inside = &mut row[s.pad[1]..s.pad[1] + s.in_w];
                    match iy {
                        Some(iy) => {
                            let channel = &x[(n * s.in_channels + c) * plane..][..plane];
                            inside.copy_from_slice(&channel[iy * s.in_w..][..s.in_w]);
                        }
                        None => inside.fill(0.0),
                    }
                }
            }
            // Each tile row's columns of the group side by side; where a row ends inside
            // the group, its last tile's two further columns (which the next row's first
            // columns took) come from `tails`.
            let mut rows = [[0.0f32; GROUP_COLUMNS]; PATCH];
            let mut tails = [[[0.0f32; LANES]; 2]; PATCH];
            let mut ends = 0u16;
            let span = OUT * group.cols;
            for g in 0..group.rows {
                let last_lane = (g + 1) * group.cols - 1;
                if g + 1 < group.rows {
                    ends |= 1 << last_lane;
                }
                for (r, (row, tail)) in rows.iter_mut().zip(&mut tails).enumerate() {
                    let from = &padded[(g * PATCH + r) * row_len + OUT * group.first_col..];
                    row[g * span..g * span + span + 2].copy_from_slice(&from[..span + 2]);
                    tail[0][last_lane] = from[span];
                    tail[1][last_lane] = from[span + 1];
                }
            }
            let at = (group.first_row - self.rows.start) * tw + group.first_col;
            let lanes = Lanes {
                rows: &rows,
                tails: &tails,
                ends,
            };
            input_group(lanes, vc, at, self.stride, group.lanes(), isa);
        }
    }
}

/// The input columns one lane group of tiles reads from a padded row: 4 per tile and the
/// last tile's 2 more.
const GROUP_COLUMNS: usize = OUT * LANES + 2;

/// One lane group's six input rows: lane `l`'s patch is columns `4l..4l + 6` of each, but
/// in a lane whose bit is set in `ends` (a tile row's last tile, followed by another row's
/// in the group) columns `4l + 4` and `4l + 5` are `tails[r][0][l]` and `tails[r][1][l]`.
#[derive(Clone, Copy)]
struct Lanes<'a> {
    rows: &'a [[f32; GROUP_COLUMNS]; PATCH],
    tails: &'a [[[f32; LANES]; 2]; PATCH],
    ends: u16,
}

/// One group of up to 16 tiles of one channel: `Bᵀ d B` of lane `l`'s patch into
/// `vc[ξ·stride + at + l]` for `l < valid`.
fn input_group(lanes: Lanes, vc: &mut [f32], at: usize, stride: usize, valid: usize, isa: Isa) {
    assert!(valid <= LANES && (POINTS - 1) * stride + at + valid <= vc.len());
    match isa {
        // SAFETY: AVX-512F was detected (by `forward`'s `Isa::current`), and the assert
        // above bounds every store.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::input_group(lanes, vc, at, stride, valid) },
        // SAFETY: AVX2 and FMA were detected, the instance's only requirement.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { input_group_avx2(lanes, vc, at, stride, valid) },
        _ => input_group_portable(lanes, vc, at, stride, valid),
    }
}

/// [`input_group_portable`] compiled for AVX2: its lanes' loops take two 8-lane
/// registers, and it gives the same bits (no multiply is fused with an add).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn input_group_avx2(lanes: Lanes, vc: &mut [f32], at: usize, stride: usize, valid: usize) {
    input_group_portable(lanes, vc, at, stride, valid);
}

/// [`input_group`] in plain loops over the 16 lanes.
#[inline(always)]
fn input_group_portable(lanes: Lanes, vc: &mut [f32], at: usize, stride: usize, valid: usize) {
    // Plain loops over fixed sizes (no `array::from_fn`, whose closures a build without
    // cross-unit inlining left as a call per value).
    let mut rows_b = [[[0.0f32; LANES]; PATCH]; PATCH];
    for r in 0..PATCH {
        let (row, tails) = (&lanes.rows[r], &lanes.tails[r]);
        let mut d = [[0.0f32; LANES]; PATCH];
        for k in 0..PATCH {
            for l in 0..LANES {
                d[k][l] = if k >= OUT && lanes.ends & (1 << l) != 0 {
                    tails[k - OUT][l]
                } else {
                    row[OUT * l + k]
                };
            }
        }
        rows_b[r] = bt(d);
    }
    for j in 0..PATCH {
        let mut column = [[0.0f32; LANES]; PATCH];
        for r in 0..PATCH {
            column[r] = rows_b[r][j];
        }
        let points = bt(column);
        for (i, values) in points.iter().enumerate() {
            vc[(i * PATCH + j) * stride + at..][..valid].copy_from_slice(&values[..valid]);
        }
    }
}

/// `Bᵀ` applied to six values in each lane (the AVX-512 instance computes the same
/// operations in the same order). Always inlined, so that the AVX2 instance of its
/// callers compiles it for AVX2.
#[inline(always)]
fn bt(d: [[f32; LANES]; PATCH]) -> [[f32; LANES]; PATCH] {
    let mut o = [[0.0f32; LANES]; PATCH];
    for l in 0..LANES {
        o[0][l] = (4.0 * d[0][l] - 5.0 * d[2][l]) + d[4][l];
        o[1][l] = (d[3][l] + d[4][l]) - 4.0 * (d[1][l] + d[2][l]);
        o[2][l] = (d[4][l] - d[3][l]) + 4.0 * (d[1][l] - d[2][l]);
        o[3][l] = (d[4][l] - d[2][l]) + 2.0 * (d[3][l] - d[1][l]);
        o[4][l] = (d[4][l] - d[2][l]) - 2.0 * (d[3][l] - d[1][l]);
        o[5][l] = (4.0 * d[1][l] - 5.0 * d[3][l]) + d[5][l];
    }
    o
}

/// `Aᵀ` applied to six values in each lane (always inlined, as [`bt`]).
#[inline(always)]
fn at(m: [[f32; LANES]; PATCH]) -> [[f32; LANES]; OUT] {
    let mut o = [[0.0f32; LANES]; OUT];
    for l in 0..LANES {
        o[0][l] = (((m[0][l] + m[1][l]) + m[2][l]) + m[3][l]) + m[4][l];
        o[1][l] = (m[1][l] - m[2][l]) + 2.0 * (m[3][l] - m[4][l]);
        o[2][l] = (m[1][l] + m[2][l]) + 4.0 * (m[3][l] + m[4][l]);
        o[3][l] = ((m[1][l] - m[2][l]) + 8.0 * (m[3][l] - m[4][l])) + m[5][l];
    }
    o
}

/// The output side of one block for one run of output channels.
struct Epilogue<'a> {
    block: &'a Block<'a>,
    bias: Option<&'a [f32]>,
    relu: bool,
    /// The image of the run's first output slice.
    first_image: usize,
}

impl Epilogue<'_> {
    /// Output channel `o` (the run's `row`-th) of the block's tiles from its products
    /// `mo` (`36 × stride`): per lane group, [`output_group`], then each of its tile rows'
    /// outputs inside the image into `ys` (the run's output planes, one slice per image).
    fn channel(&self, o: usize, row: usize, mo: &[f32], ys: &mut [&mut [f32]], isa: Isa) {
        let b = self.block;
        let s = b.shape;
        let out_plane = s.out_h * s.out_w;
        let epilogue = Bias {
            bias: self.bias.map_or(0.0, |b| b[o]),
            relu: self.relu,
        };
        let mut lines = [[0.0f32; OUT * LANES]; OUT];
        for group in s.groups(b.rows.clone()) {
            // Lanes past the group's tiles read the next group's, or the slack group.
            let from = (group.first_row - b.rows.start) * s.tile_cols + group.first_col;
            output_group(mo, from, b.stride, epilogue, &mut lines, isa);
            let x0 = OUT * group.first_col;
            let width = (s.out_w - x0).min(OUT * group.cols);
            for g in 0..group.rows {
                let q = group.first_row + g;
                let (n, tile_row) = (q / s.tile_rows, q % s.tile_rows);
                let plane = &mut ys[n - self.first_image][row * out_plane..][..out_plane];
                for (i, line) in lines.iter().enumerate() {
                    let oy = OUT * tile_row + i;
                    if oy >= s.out_h {
                        break;
                    }
                    let span = OUT * group.cols;
                    plane[oy * s.out_w + x0..][..width].copy_from_slice(&line[g * span..][..width]);
                }
            }
        }
    }
}

/// What follows the sum: the channel's bias, then maybe a ReLU.
#[derive(Debug, Clone, Copy)]
struct Bias {
    bias: f32,
    relu: bool,
}

impl Bias {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        let v = v + self.bias;
        if self.relu && v.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            // NaN and −0 give +0, as the other kernels' ReLU.
            0.0
        } else {
            v
        }
    }
}

/// One group of 16 tiles of one output channel: `Aᵀ m A` of lane `l`'s points
/// (`mo[ξ·stride + from + l]`), the bias and ReLU, into `lines`: output row `i` of lane `l`'s
/// tile at `lines[i][4l..4l + 4]`.
fn output_group(
    mo: &[f32],
    from: usize,
    stride: usize,
    epilogue: Bias,
    lines: &mut [[f32; OUT * LANES]; OUT],
    isa: Isa,
) {
    assert!((POINTS - 1) * stride + from + LANES <= mo.len());
    match isa {
        // SAFETY: AVX-512F was detected (by `forward`'s `Isa::current`), and the assert
        // above bounds every load.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::output_group(mo, from, stride, epilogue, lines) },
        // SAFETY: AVX2 and FMA were detected, the instance's only requirement.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { output_group_avx2(mo, from, stride, epilogue, lines) },
        _ => output_group_portable(mo, from, stride, epilogue, lines),
    }
}

/// [`output_group_portable`] compiled for AVX2 (the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn output_group_avx2(
    mo: &[f32],
    from: usize,
    stride: usize,
    epilogue: Bias,
    lines: &mut [[f32; OUT * LANES]; OUT],
) {
    output_group_portable(mo, from, stride, epilogue, lines);
}

/// [`output_group`] in plain loops over the 16 lanes.
#[inline(always)]
fn output_group_portable(
    mo: &[f32],
    from: usize,
    stride: usize,
    epilogue: Bias,
    lines: &mut [[f32; OUT * LANES]; OUT],
) {
    // Aᵀ m: each column of the tiles' points; then (Aᵀ m) A: each row of that.
    let mut t = [[[0.0f32; LANES]; PATCH]; OUT];
    for j in 0..PATCH {
        let mut column = [[0.0f32; LANES]; PATCH];
        for (k, values) in column.iter_mut().enumerate() {
            values.copy_from_slice(&mo[(k * PATCH + j) * stride + from..][..LANES]);
        }
        for (i, value) in at(column).into_iter().enumerate() {
            t[i][j] = value;
        }
    }
    for (ti, line) in t.into_iter().zip(lines) {
        let outputs = at(ti);
        for (xi, y) in line.iter_mut().enumerate() {
            *y = epilogue.apply(outputs[xi % OUT][xi / OUT]);
        }
    }
}

/// The lane groups' transforms in AVX-512 registers.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Bias, Lanes, LANES, OUT, PATCH};

    /// `Bᵀ` on six registers, as `super::bt`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn bt(d: [__m512; PATCH]) -> [__m512; PATCH] {
        let (four, five, two) = (
            _mm512_set1_ps(4.0),
            _mm512_set1_ps(5.0),
            _mm512_set1_ps(2.0),
        );
        let d42 = _mm512_sub_ps(d[4], d[2]);
        let d31 = _mm512_sub_ps(d[3], d[1]);
        [
            _mm512_add_ps(
                _mm512_sub_ps(_mm512_mul_ps(four, d[0]), _mm512_mul_ps(five, d[2])),
                d[4],
            ),
            _mm512_sub_ps(
                _mm512_add_ps(d[3], d[4]),
                _mm512_mul_ps(four, _mm512_add_ps(d[1], d[2])),
            ),
            _mm512_add_ps(
                _mm512_sub_ps(d[4], d[3]),
                _mm512_mul_ps(four, _mm512_sub_ps(d[1], d[2])),
            ),
            _mm512_add_ps(d42, _mm512_mul_ps(two, d31)),
            _mm512_sub_ps(d42, _mm512_mul_ps(two, d31)),
            _mm512_add_ps(
                _mm512_sub_ps(_mm512_mul_ps(four, d[1]), _mm512_mul_ps(five, d[3])),
                d[5],
            ),
        ]
    }

    /// `Aᵀ` on six registers, as `super::at`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn at(m: [__m512; PATCH]) -> [__m512; OUT] {
        let (two, four, eight) = (
            _mm512_set1_ps(2.0),
            _mm512_set1_ps(4.0),
            _mm512_set1_ps(8.0),
        );
        let (p12, m12) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
        let (p34, m34) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
        [
            _mm512_add_ps(
                _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m[0], m[1]), m[2]), m[3]),
                m[4],
            ),
            _mm512_add_ps(m12, _mm512_mul_ps(two, m34)),
            _mm512_add_ps(p12, _mm512_mul_ps(four, p34)),
            _mm512_add_ps(_mm512_add_ps(m12, _mm512_mul_ps(eight, m34)), m[5]),
        ]
    }

    /// `super::input_group` in registers: each row's 64 + 2 columns split into the
    /// tiles' six columns (a 4 × 4 transpose of 128-bit blocks, one within them, and a
    /// shift by one tile for the last two, blended with the tails where a tile row ends),
    /// `d B`, then `Bᵀ (d B)` by columns.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, `valid ≤ 16` and `35·stride + at + valid ≤ vc.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_group(
        lanes: Lanes,
        vc: &mut [f32],
        at: usize,
        stride: usize,
        valid: usize,
    ) {
        let mut rows_b = [[_mm512_setzero_ps(); PATCH]; PATCH];
        for ((row, tails), out) in lanes.rows.iter().zip(lanes.tails).zip(&mut rows_b) {
            // SAFETY: four 16-value loads within the row's 66 values.
            let v: [__m512; 4] =
                std::array::from_fn(|b| unsafe { _mm512_loadu_ps(row.as_ptr().add(b * LANES)) });
            // Tiles 0, 2, 4, 6 | 1, 3, 5, 7 | 8, 10, 12, 14 | 9, 11, 13, 15 by block.
            let a = _mm512_shuffle_f32x4::<0x88>(v[0], v[1]);
            let b = _mm512_shuffle_f32x4::<0xDD>(v[0], v[1]);
            let c = _mm512_shuffle_f32x4::<0x88>(v[2], v[3]);
            let d = _mm512_shuffle_f32x4::<0xDD>(v[2], v[3]);
            // Block `i` of each: tile 4i, 4i + 2, 4i + 1, 4i + 3.
            let e = _mm512_shuffle_f32x4::<0x88>(a, c);
            let f = _mm512_shuffle_f32x4::<0xDD>(a, c);
            let g = _mm512_shuffle_f32x4::<0x88>(b, d);
            let h = _mm512_shuffle_f32x4::<0xDD>(b, d);
            let t0 = _mm512_castps_pd(_mm512_unpacklo_ps(e, g));
            let t1 = _mm512_castps_pd(_mm512_unpackhi_ps(e, g));
            let t2 = _mm512_castps_pd(_mm512_unpacklo_ps(f, h));
            let t3 = _mm512_castps_pd(_mm512_unpackhi_ps(f, h));
            let p0 = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
            let p1 = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
            let p2 = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
            let p3 = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
            // Columns 4l + 4 and 4l + 5: the next tile's first two, the last tile's from
            // the row's values 64 and 65; the tails where a tile row ends.
            let next = |p: __m512, last: f32, tail: &[f32; LANES]| {
                let shifted = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                    _mm512_castps_si512(_mm512_set1_ps(last)),
                    _mm512_castps_si512(p),
                ));
                // SAFETY: 16 values of the tail.
                let tail = unsafe { _mm512_loadu_ps(tail.as_ptr()) };
                _mm512_mask_blend_ps(lanes.ends, shifted, tail)
            };
            let p4 = next(p0, row[OUT * LANES], &tails[0]);
            let p5 = next(p1, row[OUT * LANES + 1], &tails[1]);
            *out = bt([p0, p1, p2, p3, p4, p5]);
        }
        let mask: __mmask16 = if valid == LANES {
            u16::MAX
        } else {
            (1u16 << valid) - 1
        };
        for j in 0..PATCH {
            let points = bt(std::array::from_fn(|r| rows_b[r][j]));
            for (i, values) in points.into_iter().enumerate() {
                let to = (i * PATCH + j) * stride + at;
                // SAFETY: lanes `to..to + valid`, within `vc` by the caller's bound; the
                // masked-off lanes touch no memory.
                unsafe { _mm512_mask_storeu_ps(vc.as_mut_ptr().add(to), mask, values) };
            }
        }
    }

    /// `super::output_group` in registers: `Aᵀ m A`, the bias and ReLU, then each output
    /// row's 16 tiles × 4 columns interleaved (the input's transpose, reversed).
    ///
    /// # Safety
    /// The CPU must have AVX-512F and `35·stride + from + 16 ≤ mo.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_group(
        mo: &[f32],
        from: usize,
        stride: usize,
        epilogue: Bias,
        lines: &mut [[f32; OUT * LANES]; OUT],
    ) {
        // SAFETY: 16 values from `p·stride + from`, within `mo` by the caller's bound.
        let point = |p: usize| unsafe { _mm512_loadu_ps(mo.as_ptr().add(p * stride + from)) };
        let mut t = [[_mm512_setzero_ps(); PATCH]; OUT];
        for j in 0..PATCH {
            let column = at(std::array::from_fn(|k| point(k * PATCH + j)));
            for (i, value) in column.into_iter().enumerate() {
                t[i][j] = value;
            }
        }
        let bias = _mm512_set1_ps(epilogue.bias);
        for (ti, line) in t.into_iter().zip(lines) {
            let mut y = at(ti);
            for y in &mut y {
                *y = _mm512_add_ps(*y, bias);
                if epilogue.relu {
                    *y = _mm512_max_ps(*y, _mm512_setzero_ps());
                }
            }
            // Tile 4i + k's four columns in block i of register k, then in order.
            let a = _mm512_castps_pd(_mm512_unpacklo_ps(y[0], y[1]));
            let b = _mm512_castps_pd(_mm512_unpackhi_ps(y[0], y[1]));
            let c = _mm512_castps_pd(_mm512_unpacklo_ps(y[2], y[3]));
            let d = _mm512_castps_pd(_mm512_unpackhi_ps(y[2], y[3]));
            let e = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
            let f = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
            let g = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
            let h = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
            let ef_lo = _mm512_shuffle_f32x4::<0x44>(e, f);
            let gh_lo = _mm512_shuffle_f32x4::<0x44>(g, h);
            let ef_hi = _mm512_shuffle_f32x4::<0xEE>(e, f);
            let gh_hi = _mm512_shuffle_f32x4::<0xEE>(g, h);
            let interleaved = [
                _mm512_shuffle_f32x4::<0x88>(ef_lo, gh_lo),
                _mm512_shuffle_f32x4::<0xDD>(ef_lo, gh_lo),
                _mm512_shuffle_f32x4::<0x88>(ef_hi, gh_hi),
                _mm512_shuffle_f32x4::<0xDD>(ef_hi, gh_hi),
            ];
            for (v, values) in interleaved.into_iter().enumerate() {
                // SAFETY: 16 values of the 64 of `line`.
                unsafe { _mm512_storeu_ps(line.as_mut_ptr().add(v * LANES), values) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::conv::ConvWindow;

    /// The three matrices compute a 1-D correlation of 6 inputs with 3 taps exactly (in
    /// f64): `Aᵀ [(G g) ⊙ (Bᵀ d)]` is `y_i = Σ_k g_k d_{i+k}` for the 4 outputs.
    #[test]
    fn the_transforms_correlate() {
        let d = [0.5, -1.25, 2.0, 3.5, -0.75, 1.5];
        let g = [0.25, -2.0, 1.75];
        let gg: Vec<f64> = G
            .iter()
            .map(|r| (0..3).map(|a| r[a] * g[a]).sum())
            .collect();
        let bd: Vec<f64> = BT
            .iter()
            .map(|r| (0..6).map(|k| r[k] * d[k]).sum())
            .collect();
        for (i, row) in AT.iter().enumerate() {
            let got: f64 = (0..6).map(|p| row[p] * gg[p] * bd[p]).sum();
            let want: f64 = (0..3).map(|k| g[k] * d[i + k]).sum();
            assert!(
                (got - want).abs() < 1e-12,
                "output {i}: {got} against {want}"
            );
        }
    }

    /// The written-out filter transform is `G g Gᵀ` by the matrix (within f64's rounding,
    /// the same f32 values but for a tie).
    #[test]
    fn the_filter_transform_is_g_g_gt() {
        let g = [0.3f32, -1.7, 2.25, 0.125, -0.6, 1.1, -2.9, 0.45, 0.8];
        let u = transform_filter(&g);
        for i in 0..PATCH {
            for j in 0..PATCH {
                let want: f64 = (0..3)
                    .map(|a| {
                        (0..3)
                            .map(|b| G[i][a] * f64::from(g[a * 3 + b]) * G[j][b])
                            .sum::<f64>()
                    })
                    .sum();
                assert!((f64::from(u[i * PATCH + j]) - want).abs() <= 1e-6 * want.abs().max(1e-3));
            }
        }
    }

    /// The vector instances give the portable loops' bits, over blocks that span images,
    /// lane groups of several tile rows (2, 4 and 8 tiles a row) and of one (18 tiles a
    /// row: a full group and a partial one), padding and tiles cut by the image's edge.
    #[test]
    fn vector_instances_give_the_portable_bits() {
        for (input, out, pad) in [
            ([1, 3, 7, 7], 5, [1, 1]),
            ([3, 17, 10, 13], 19, [0, 2]),
            ([2, 8, 30, 30], 16, [1, 1]),
            ([1, 4, 40, 70], 9, [1, 1]),
        ] {
            let window = ConvWindow {
                out_channels: out,
                kernel: [3, 3],
                stride: [1, 1],
                pad,
                dilation: [1, 1],
                groups: 1,
            };
            let g = Conv2d::new(input, window).unwrap();
            let x = crate::test_values(g.input_len(), 7);
            let w = WinogradWeights::pack(&crate::test_values(g.weight_len(), 8), out, input[1])
                .unwrap();
            let bias = crate::test_values(out, 9);
            let y = crate::isa::same_on_every_isa(&format!("{input:?}"), || {
                let mut y = vec![f32::NAN; g.output_len()];
                forward(&g, &x, &w, Some(&bias), true, &mut y).unwrap();
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            });
            assert!(y.iter().all(|&v| f32::from_bits(v).is_finite()));
        }
    }

    /// A geometry it does not take, and a weight of other channels, are refused before
    /// anything is written.
    #[test]
    fn refuses_what_it_does_not_cover() {
        let window = |kernel, stride| ConvWindow {
            out_channels: 4,
            kernel,
            stride,
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
        };
        let w = WinogradWeights::pack(&[0.5; 4 * 2 * 9], 4, 2).unwrap();
        for (kernel, stride) in [([3, 3], [2, 2]), ([5, 5], [1, 1])] {
            let g = Conv2d::new([1, 2, 8, 8], window(kernel, stride)).unwrap();
            let mut y = vec![7.0; g.output_len()];
            let err = forward(&g, &vec![1.0; g.input_len()], &w, None, false, &mut y);
            assert!(err.is_err());
            assert!(y.iter().all(|&v| v == 7.0));
        }
        let g = Conv2d::new([1, 3, 8, 8], window([3, 3], [1, 1])).unwrap();
        let mut y = vec![7.0; g.output_len()];
        assert!(forward(&g, &vec![1.0; g.input_len()], &w, None, false, &mut y).is_err());
        assert!(y.iter().all(|&v| v == 7.0));
        assert!(WinogradWeights::pack(&[0.5; 10], 4, 2).is_err());
    }
}
