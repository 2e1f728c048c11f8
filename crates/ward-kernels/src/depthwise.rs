//! Depthwise convolutions: one group per input channel, each output plane the sum of one
//! input plane's taps (MobileNet's 3×3 layers). Each output channel needs only its own
//! `kh × kw` weights, already contiguous in the OIHW layout, so nothing is packed.
//!
//! An input plane is first copied once into a zero-padded scratch plane whose columns
//! are split by their phase modulo the column stride: tap `(ky, kx)` of the output
//! columns `x0..x0 + B` then reads `B` consecutive values of one phase, whatever the
//! stride and dilation. Each block of output columns is summed in registers over every
//! tap (in the order `ky`, then `kx`, from zero; the bias added last, as the reference
//! interpreter does) and stored once. tract's depthwise convolution, which this
//! replaces in plans, took 39 % of MobileNet 1.0's time at batch 1 on one thread.
//!
//! The rows run in masked vector registers, AVX-512F or AVX2, where the CPU has them, and
//! elsewhere on portable loops; all give the same bits (separate multiplies and adds, in
//! one order).

#![allow(
    unsafe_code,
    reason = "the AVX-512 and AVX2 row kernels are intrinsics, each run once its CPU features are detected; each checks every tap's reads against the scratch plane before it loads"
)]
#![allow(
    clippy::indexing_slicing,
    reason = "every index is below a length that `forward` checks against the geometry before any plane runs"
)]

use rayon::prelude::*;

use crate::conv::Conv2d;
use crate::error::{check_len, KernelError};
use crate::{padded, Isa};

const KERNEL: &str = "conv2d (depthwise)";

/// Lanes of an AVX-512 register.
const LANES: usize = 16;

/// Where a plane's values lie in the scratch plane and which of them a tap reads.
#[derive(Debug, Clone, Copy)]
struct Layout {
    in_h: usize,
    in_w: usize,
    pad: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    out_h: usize,
    out_w: usize,
    /// Columns of one phase: the padded width divided by the column stride, rounded up.
    phase_len: usize,
    /// One padded row: every phase of it.
    row_len: usize,
    /// The padded height.
    rows: usize,
}

impl Layout {
    fn of(g: &Conv2d) -> Layout {
        // `Conv2d::new` checked that the padded sizes and every buffer fit `usize`.
        let padded_w = g.in_w + 2 * g.pad[1];
        let phase_len = padded_w.div_ceil(g.stride[1]);
        Layout {
            in_h: g.in_h,
            in_w: g.in_w,
            pad: g.pad,
            kernel: g.kernel,
            stride: g.stride,
            dilation: g.dilation,
            out_h: g.out_h(),
            out_w: g.out_w(),
            phase_len,
            row_len: phase_len * g.stride[1],
            rows: g.in_h + 2 * g.pad[0],
        }
    }

    fn scratch_len(&self) -> Option<usize> {
        self.rows.checked_mul(self.row_len)
    }

    /// Copies input plane `x` into `scratch`'s interior; its padding is left as it is
    /// (zero: the interior positions are the same for every plane).
    #[inline(always)]
    fn fill(&self, x: &[f32], scratch: &mut [f32]) {
        for (r, row) in x.chunks_exact(self.in_w).enumerate() {
            let to = &mut scratch[(r + self.pad[0]) * self.row_len..][..self.row_len];
            padded::fill_row(row, to, self.pad[1], self.stride[1], self.phase_len);
        }
    }

    /// Where the vector fills at a column stride of 2 put input column 0 and input column
    /// 1 in a padded row: column 2m lands in phase `pw mod 2` at `m + pw/2`, column
    /// 2m + 1 in the other phase at `m + (pw + 1)/2`.
    fn phase_starts(&self) -> (usize, usize) {
        let pw = self.pad[1];
        (
            (pw % 2) * self.phase_len + pw / 2,
            (1 - pw % 2) * self.phase_len + pw.div_ceil(2),
        )
    }

    /// Copies input columns `from..` of `row` into the padded row `to` at a column stride
    /// of 2, one by one, with [`Self::phase_starts`] `starts`: what the vector fills leave.
    #[inline(always)]
    fn fill_stride2_tail(row: &[f32], to: &mut [f32], from: usize, starts: (usize, usize)) {
        let (even_at, odd_at) = starts;
        for (c, &v) in row.iter().enumerate().skip(from) {
            to[if c % 2 == 0 { even_at } else { odd_at } + c / 2] = v;
        }
    }

    /// Where in `scratch` each tap of output `(0, 0)` reads, in the order `ky`, `kx`;
    /// output `(oy, ox)` reads `oy · row_step + ox` further on.
    fn taps(&self) -> Vec<usize> {
        let (sw, [dh, dw]) = (self.stride[1], self.dilation);
        (0..self.kernel[0])
            .flat_map(|ky| {
                (0..self.kernel[1]).map(move |kx| {
                    let col = dw * kx;
                    dh * ky * self.row_len + (col % sw) * self.phase_len + col / sw
                })
            })
            .collect()
    }

    /// How much further on in `scratch` one output row reads than the one above it.
    fn row_step(&self) -> usize {
        self.stride[0] * self.row_len
    }
}

/// The depthwise convolution `y = conv(x, w) + bias` of geometry `g` (whose groups are
/// its input channels; each group may have several output channels), with `w` in OIHW
/// (`out_channels × 1 × kh × kw`), then with `relu` each output's `x > 0 ? x : 0` (NaN
/// gives 0, as MXNet's `Activation(relu)` and tract's `max(x, 0)` do). Output planes are
/// spread over rayon's threads.
pub fn forward(
    g: &Conv2d,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) -> Result<(), KernelError> {
    if g.groups != g.in_channels {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "{} groups over {} input channels is not depthwise",
                g.groups, g.in_channels
            ),
        ));
    }
    check_len(KERNEL, "x", x.len(), g.input_len())?;
    check_len(KERNEL, "w", w.len(), g.weight_len())?;
    check_len(KERNEL, "y", y.len(), g.output_len())?;
    if let Some(b) = bias {
        check_len(KERNEL, "bias", b.len(), g.out_channels)?;
    }
    let layout = Layout::of(g);
    // A register's worth of zeros past the padded plane, so that the vector rows of a
    // narrow plane's last pieces load whole registers too.
    let scratch_len = layout
        .scratch_len()
        .and_then(|len| len.checked_add(LANES))
        .ok_or_else(|| KernelError::geometry(KERNEL, "the padded plane overflows"))?;
    let out_plane = layout.out_h * layout.out_w;
    let planes = g.batch * g.out_channels;
    // A few runs of planes per thread, so a thread that finishes early takes another.
    let per_run = planes.div_ceil(4 * rayon::current_num_threads()).max(1);
    let isa = Isa::current();
    y.par_chunks_mut(per_run * out_plane)
        .enumerate()
        .for_each(|(run, ys)| {
            let mut scratch = vec![0.0f32; scratch_len];
            let planes = Planes {
                first: run * per_run,
                channels: g.out_channels,
                multiplier: g.out_channels / g.groups,
                in_channels: g.in_channels,
                relu,
                isa,
            };
            run_planes(x, w, bias, ys, &planes, &layout, &mut scratch);
        });
    Ok(())
}

/// Which output planes a run holds, and how they map to input planes.
#[derive(Debug, Clone, Copy)]
struct Planes {
    /// The index (image × output channel) of the run's first plane.
    first: usize,
    /// Output channels.
    channels: usize,
    /// Output channels per input channel.
    multiplier: usize,
    in_channels: usize,
    /// Whether the outputs go through a ReLU.
    relu: bool,
    /// The instruction set the planes run on.
    isa: Isa,
}

/// What is done to each output's sum of taps: a channel's bias added, then maybe a ReLU.
#[derive(Debug, Clone, Copy)]
struct Finish {
    bias: Option<f32>,
    relu: bool,
}

impl Finish {
    #[inline(always)]
    fn apply(self, sum: f32) -> f32 {
        let v = match self.bias {
            Some(b) => sum + b,
            None => sum,
        };
        if !self.relu || v > 0.0 {
            v
        } else {
            0.0
        }
    }
}

/// The output planes of one run (`ys`, whole planes), from `scratch` (zeroed, of the
/// layout's length), on the AVX-512 row kernel where `avx512` says the CPU has it.
fn run_planes(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    ys: &mut [f32],
    p: &Planes,
    l: &Layout,
    scratch: &mut [f32],
) {
    let in_plane = l.in_h * l.in_w;
    let taps = l.taps();
    let mut filled = None;
    for (i, plane) in ys.chunks_exact_mut(l.out_h * l.out_w).enumerate() {
        let (image, channel) = ((p.first + i) / p.channels, (p.first + i) % p.channels);
        let source = image * p.in_channels + channel / p.multiplier;
        let weights = &w[channel * taps.len()..][..taps.len()];
        let finish = Finish {
            bias: bias.map(|b| b[channel]),
            relu: p.relu,
        };
        let fill = filled != Some(source);
        filled = Some(source);
        let x = &x[source * in_plane..][..in_plane];
        match p.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                if fill {
                    // SAFETY: `p.isa` is AVX-512 only where the CPU has AVX-512F.
                    unsafe { fill_avx512(l, x, scratch) };
                }
                // SAFETY: as above.
                unsafe { plane_avx512(plane, scratch, weights, finish, &taps, l) };
            }
            // SAFETY: `p.isa` is AVX2 only where the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe {
                plane_avx2(plane, fill.then_some(x), scratch, weights, finish, &taps, l)
            },
            _ => plane_portable(plane, fill.then_some(x), scratch, weights, finish, &taps, l),
        }
    }
}

/// One output plane in AVX2 (after copying `fill`, its input plane, where the scratch
/// does not hold it yet), as [`plane_avx512`] does in 8-lane registers: eight pieces at a
/// time, whose eight chains of adds keep both of a core's adders busy through their
/// latency. The same bits as [`row`].
///
/// # Safety
/// The CPU must have AVX2. Every other bound is checked here: a plane whose taps would
/// read past `scratch`, or whose weights or output are short, runs [`row`] instead.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(
    out: &mut [f32],
    fill: Option<&[f32]>,
    scratch: &mut [f32],
    w: &[f32],
    finish: Finish,
    taps: &[usize],
    l: &Layout,
) {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_cmpgt_epi32, _mm256_loadu_ps, _mm256_maskload_ps,
        _mm256_maskstore_ps, _mm256_max_ps, _mm256_mul_ps, _mm256_set1_epi32, _mm256_set1_ps,
        _mm256_setr_epi32, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    const GROUP: usize = 8;
    const AVX2_LANES: usize = 8;
    if let Some(x) = fill {
        // SAFETY: the CPU has AVX2 (this function's own requirement).
        unsafe { fill_avx2(l, x, scratch) };
    }
    if !fits(out, scratch, w, taps, l) {
        return rows(out, scratch, w, finish, taps, l);
    }
    let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let furthest = taps.iter().max().copied().unwrap_or(0);
    let mut pieces = Pieces::of(l, AVX2_LANES);
    // Index loops over the group, not iterator chains: a build without cross-unit
    // inlining left `zip`'s constructor a call and the accumulators on the stack (a
    // third of the speed).
    for _ in 0..pieces.groups(GROUP) {
        let mut at = [Piece::EMPTY; GROUP];
        let mut masks = [iota; GROUP];
        for j in 0..GROUP {
            at[j] = pieces.next_or_empty();
            // The piece's lanes set (at most 8): a masked load or store touches only those.
            masks[j] = _mm256_cmpgt_epi32(_mm256_set1_epi32(at[j].lanes as i32), iota);
        }
        let mut acc = [_mm256_setzero_ps(); GROUP];
        // Whole-register loads where every piece's reads of 8 values stay in `scratch`:
        // lanes past a narrow piece read values that only those lanes use, and an empty
        // piece (at 0) sums values it never stores.
        let whole =
            at.iter().map(|p| p.from).max().unwrap_or(0) + furthest + AVX2_LANES <= scratch.len();
        if whole {
            for t in 0..taps.len() {
                let (wv, tap) = (_mm256_set1_ps(w[t]), taps[t]);
                for j in 0..GROUP {
                    // SAFETY: `from + tap + 8 ≤ max from + furthest tap + 8 ≤
                    // scratch.len()`, checked above.
                    let v = unsafe { _mm256_loadu_ps(scratch.as_ptr().add(at[j].from + tap)) };
                    acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(wv, v));
                }
            }
        } else {
            for t in 0..taps.len() {
                let (wv, tap) = (_mm256_set1_ps(w[t]), taps[t]);
                for j in 0..GROUP {
                    // SAFETY: as in `plane_avx512`: the piece's lanes lie inside
                    // `scratch` (`fits`), and an empty piece's mask reads nothing.
                    let v = unsafe {
                        _mm256_maskload_ps(
                            scratch.as_ptr().wrapping_add(at[j].from + tap),
                            masks[j],
                        )
                    };
                    acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(wv, v));
                }
            }
        }
        for j in 0..GROUP {
            if at[j].lanes == 0 {
                continue;
            }
            let a = match finish.bias {
                Some(b) => _mm256_add_ps(acc[j], _mm256_set1_ps(b)),
                None => acc[j],
            };
            // MAXPS gives its second operand where the first is NaN: 0, as `Finish`.
            let a = if finish.relu {
                _mm256_max_ps(a, _mm256_setzero_ps())
            } else {
                a
            };
            let to = out.as_mut_ptr().wrapping_add(at[j].to);
            if at[j].to + AVX2_LANES <= out.len() {
                // A whole register's store, even for a piece narrower than 8 (a row's
                // last): the lanes past it land on the outputs of pieces after it in the
                // plane, which are stored later (pieces go in the plane's order, and
                // within a group in turn) and overwrite them. `VMASKMOVPS` stores are
                // microcoded on AMD's cores: on Zen 3 they took a third of MobileNet's
                // depthwise time.
                // SAFETY: `to + 8 ≤ out.len()`, checked above.
                unsafe { _mm256_storeu_ps(to, a) };
            } else {
                // SAFETY: as in `plane_avx512`: the piece's lanes lie inside `out`
                // (`fits`).
                unsafe { _mm256_maskstore_ps(to, masks[j], a) };
            }
        }
    }
}

/// One piece of an output plane for the vector row kernels: up to a register's lanes of
/// one output row.
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Where the piece's first output reads in the scratch plane (before the tap's offset).
    from: usize,
    /// Where its first output lies in the plane.
    to: usize,
    /// How many outputs it holds: 0 for the empty pieces that fill the last group.
    lanes: usize,
}

impl Piece {
    const EMPTY: Piece = Piece {
        from: 0,
        to: 0,
        lanes: 0,
    };
}

/// An output plane's rows cut into pieces of `lanes` columns (the last of a row
/// narrower), in order.
struct Pieces {
    rows: usize,
    width: usize,
    step: usize,
    lanes: usize,
    per_row: usize,
    oy: usize,
    k: usize,
}

impl Pieces {
    fn of(l: &Layout, lanes: usize) -> Pieces {
        Pieces {
            rows: l.out_h,
            width: l.out_w,
            step: l.row_step(),
            lanes,
            per_row: l.out_w.div_ceil(lanes),
            oy: 0,
            k: 0,
        }
    }

    /// How many groups of `group` pieces hold every piece.
    fn groups(&self, group: usize) -> usize {
        (self.rows * self.per_row).div_ceil(group)
    }

    /// The next piece, or past the last one an empty piece.
    fn next_or_empty(&mut self) -> Piece {
        if self.oy == self.rows {
            return Piece::EMPTY;
        }
        let x0 = self.k * self.lanes;
        let piece = Piece {
            from: self.oy * self.step + x0,
            to: self.oy * self.width + x0,
            lanes: (self.width - x0).min(self.lanes),
        };
        self.k += 1;
        if self.k == self.per_row {
            (self.oy, self.k) = (self.oy + 1, 0);
        }
        piece
    }
}

/// Whether every piece of the plane `out` reads inside `scratch` and writes inside `out`:
/// the last row's reads end furthest on, and `out` is the whole plane.
fn fits(out: &[f32], scratch: &[f32], w: &[f32], taps: &[usize], l: &Layout) -> bool {
    let furthest = taps.iter().max().copied().unwrap_or(0);
    l.out_h > 0
        && w.len() == taps.len()
        && out.len() == l.out_h * l.out_w
        && (l.out_h - 1) * l.row_step() + furthest + l.out_w <= scratch.len()
}

/// A whole plane in [`row`]s: the portable loops, and the vector kernels' answer to a
/// plane that does not [`fits`].
#[inline(always)]
fn rows(out: &mut [f32], scratch: &[f32], w: &[f32], finish: Finish, taps: &[usize], l: &Layout) {
    for (oy, out) in out.chunks_exact_mut(l.out_w).enumerate() {
        row(out, &scratch[oy * l.row_step()..], w, finish, taps);
    }
}

/// One output plane in plain loops, after copying `fill` (its input plane, where the
/// scratch does not hold it yet) into the scratch plane.
#[inline(always)]
fn plane_portable(
    plane: &mut [f32],
    fill: Option<&[f32]>,
    scratch: &mut [f32],
    w: &[f32],
    finish: Finish,
    taps: &[usize],
    l: &Layout,
) {
    if let Some(x) = fill {
        l.fill(x, scratch);
    }
    rows(plane, scratch, w, finish, taps, l);
}

/// One output row from `scratch` (starting where the row's first output reads): each
/// output the sum of its taps from zero in the order `ky`, `kx`, then `finish`. Always
/// inlined, so that the AVX2 instance of its caller compiles it for AVX2.
#[inline(always)]
fn row(out: &mut [f32], scratch: &[f32], w: &[f32], finish: Finish, taps: &[usize]) {
    out.fill(0.0);
    let width = out.len();
    for (&wv, &tap) in w.iter().zip(taps) {
        for (acc, &v) in out.iter_mut().zip(&scratch[tap..][..width]) {
            *acc += wv * v;
        }
    }
    out.iter_mut().for_each(|v| *v = finish.apply(*v));
}

/// One output plane in AVX-512: the plane's rows cut into pieces of up to 16 columns
/// (one register each, the last of a row masked), summed over every tap four pieces at a
/// time, so that four independent chains of adds are in flight even on 7-wide planes.
/// Multiplies and adds are separate instructions, as in [`row`], so both give the same
/// bits.
///
/// # Safety
/// The CPU must have AVX-512F. Every other bound is checked here: a plane whose taps
/// would read past `scratch`, or whose weights or output are short, runs [`row`]
/// instead.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512(
    out: &mut [f32],
    scratch: &[f32],
    w: &[f32],
    finish: Finish,
    taps: &[usize],
    l: &Layout,
) {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_max_ps, _mm512_mul_ps,
        _mm512_set1_ps, _mm512_setzero_ps,
    };
    const GROUP: usize = 4;
    if !fits(out, scratch, w, taps, l) {
        return rows(out, scratch, w, finish, taps, l);
    }
    // The first `lanes` lanes set (`lanes ≤ 16`).
    let mask = |lanes: usize| ((1u32 << lanes) - 1) as u16;
    let mut pieces = Pieces::of(l, LANES);
    for _ in 0..pieces.groups(GROUP) {
        let at: [(usize, usize, u16); GROUP] = std::array::from_fn(|_| {
            let piece = pieces.next_or_empty();
            (piece.from, piece.to, mask(piece.lanes))
        });
        let mut acc = [_mm512_setzero_ps(); GROUP];
        for (&wv, &tap) in w.iter().zip(taps) {
            let wv = _mm512_set1_ps(wv);
            for (a, &(from, _, mask)) in acc.iter_mut().zip(&at) {
                // SAFETY: a piece's masked load reads its lanes of one output row's tap,
                // from `oy · step + x0 + tap ≤ (rows − 1) · step + furthest + x0`, with
                // `x0 + lanes ≤ width`: inside `scratch`, checked above. An empty piece
                // reads nothing.
                let v = unsafe {
                    _mm512_maskz_loadu_ps(mask, scratch.as_ptr().wrapping_add(from + tap))
                };
                *a = _mm512_add_ps(*a, _mm512_mul_ps(wv, v));
            }
        }
        for (a, &(_, to, mask)) in acc.into_iter().zip(&at) {
            let a = match finish.bias {
                Some(b) => _mm512_add_ps(a, _mm512_set1_ps(b)),
                None => a,
            };
            // MAXPS gives its second operand where the first is NaN: 0, as `Finish`.
            let a = if finish.relu {
                _mm512_max_ps(a, _mm512_setzero_ps())
            } else {
                a
            };
            // SAFETY: a piece's masked store writes its lanes from `oy · width + x0`, with
            // `x0 + lanes ≤ width` and `oy < rows`: inside `out`, checked above. An empty
            // piece writes nothing.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().wrapping_add(to), mask, a) };
        }
    }
}

/// [`Layout::fill`] in AVX-512 for a column stride of 2, which splits each row's even
/// and odd columns with two permutes per 32 values; other strides run the portable
/// copy.
///
/// # Safety
/// The CPU must have AVX-512F; every load and store goes through a slice of exactly the
/// values it touches.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_avx512(l: &Layout, x: &[f32], scratch: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_loadu_ps, _mm512_permutex2var_ps, _mm512_setr_epi32, _mm512_storeu_ps,
    };
    if l.stride[1] != 2 {
        return l.fill(x, scratch);
    }
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (even_at, odd_at) = l.phase_starts();
    for (r, row) in x.chunks_exact(l.in_w).enumerate() {
        let to = &mut scratch[(r + l.pad[0]) * l.row_len..][..l.row_len];
        let mut m = 0;
        while 2 * m + 2 * LANES <= l.in_w {
            let from = &row[2 * m..][..2 * LANES];
            // SAFETY: `from` holds the 32 values the two loads read.
            let (a, b) = unsafe {
                (
                    _mm512_loadu_ps(from.as_ptr()),
                    _mm512_loadu_ps(from.as_ptr().add(LANES)),
                )
            };
            let even = &mut to[even_at + m..][..LANES];
            // SAFETY: `even` holds the 16 values the store writes.
            unsafe { _mm512_storeu_ps(even.as_mut_ptr(), _mm512_permutex2var_ps(a, evens, b)) };
            let odd = &mut to[odd_at + m..][..LANES];
            // SAFETY: `odd` holds the 16 values the store writes.
            unsafe { _mm512_storeu_ps(odd.as_mut_ptr(), _mm512_permutex2var_ps(a, odds, b)) };
            m += LANES;
        }
        Layout::fill_stride2_tail(row, to, 2 * m, (even_at, odd_at));
    }
}

/// [`Layout::fill`] in AVX2 for a column stride of 2, as [`fill_avx512`] does, 16 values
/// at a time: two shuffles take the even and the odd values of each 128-bit half, and a
/// permute of 64-bit pairs puts the halves in order.
///
/// # Safety
/// The CPU must have AVX2; every load and store goes through a slice of exactly the
/// values it touches.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_avx2(l: &Layout, x: &[f32], scratch: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_cmpgt_epi32, _mm256_loadu_ps, _mm256_maskload_ps, _mm256_set1_epi32,
        _mm256_setr_epi32, _mm256_storeu_ps,
    };
    const AVX2_LANES: usize = 8;
    let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let lanes = |n: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), iota);
    if l.stride[1] == 1 {
        // Each row in whole registers and the rest masked: a `copy_from_slice` of a
        // 7- or 14-wide row was a call to `memmove`, a tenth of a 7² plane's time.
        for (r, row) in x.chunks_exact(l.in_w).enumerate() {
            let to = &mut scratch[(r + l.pad[0]) * l.row_len + l.pad[1]..][..l.in_w];
            let mut from = row.chunks_exact(AVX2_LANES);
            let mut into = to.chunks_exact_mut(AVX2_LANES);
            for (to, from) in (&mut into).zip(&mut from) {
                // SAFETY: `from` and `to` hold the 8 values the load and store touch.
                unsafe { _mm256_storeu_ps(to.as_mut_ptr(), _mm256_loadu_ps(from.as_ptr())) };
            }
            let (to, from) = (into.into_remainder(), from.remainder());
            if !from.is_empty() {
                // SAFETY: the load reads lanes `i < from.len()`; masked-off lanes touch
                // no memory.
                let v = unsafe { _mm256_maskload_ps(from.as_ptr(), lanes(from.len())) };
                store_first_lanes(to, v);
            }
        }
        return;
    }
    if l.stride[1] != 2 {
        return l.fill(x, scratch);
    }
    let (even_at, odd_at) = l.phase_starts();
    for (r, row) in x.chunks_exact(l.in_w).enumerate() {
        let to = &mut scratch[(r + l.pad[0]) * l.row_len..][..l.row_len];
        let mut m = 0;
        while 2 * m + 2 * AVX2_LANES <= l.in_w {
            let from = &row[2 * m..][..2 * AVX2_LANES];
            // SAFETY: `from` holds the 16 values the two loads read.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_ps(from.as_ptr()),
                    _mm256_loadu_ps(from.as_ptr().add(AVX2_LANES)),
                )
            };
            let (evens, odds) = deinterleave(a, b);
            let even = &mut to[even_at + m..][..AVX2_LANES];
            // SAFETY: `even` holds the 8 values the store writes.
            unsafe { _mm256_storeu_ps(even.as_mut_ptr(), evens) };
            let odd = &mut to[odd_at + m..][..AVX2_LANES];
            // SAFETY: `odd` holds the 8 values the store writes.
            unsafe { _mm256_storeu_ps(odd.as_mut_ptr(), odds) };
            m += AVX2_LANES;
        }
        let rest = l.in_w - 2 * m;
        if rest > 0 {
            // The row's last `rest < 16` values the same way, from masked loads (one by
            // one they took over half the time of 7-wide stride-2 planes).
            let from = &row[2 * m..];
            let (low, high) = (lanes(rest), lanes(rest.saturating_sub(AVX2_LANES)));
            // SAFETY: the loads read lanes `i < rest` of `from`, which holds `rest`
            // values; masked-off lanes touch no memory.
            let (a, b) = unsafe {
                (
                    _mm256_maskload_ps(from.as_ptr(), low),
                    _mm256_maskload_ps(from.as_ptr().wrapping_add(AVX2_LANES), high),
                )
            };
            let (evens, odds) = deinterleave(a, b);
            store_first_lanes(&mut to[even_at + m..][..rest.div_ceil(2)], evens);
            store_first_lanes(&mut to[odd_at + m..][..rest / 2], odds);
        }
    }
}

/// Stores the first `to.len() ≤ 8` lanes of `v` into `to`, without `VMASKMOVPS`, whose
/// stores are microcoded on AMD's cores (on Zen 3 the masked stores of a 7-wide
/// stride-2 plane's fill took a third of its time): a whole store, or two 4-lane stores
/// that overlap, the second of the last four lanes moved down, or below 4 lanes one by
/// one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn store_first_lanes(to: &mut [f32], v: std::arch::x86_64::__m256) {
    use std::arch::x86_64::{
        _mm256_add_epi32, _mm256_castps256_ps128, _mm256_permutevar8x32_ps, _mm256_set1_epi32,
        _mm256_setr_epi32, _mm256_storeu_ps, _mm_storeu_ps,
    };
    let n = to.len();
    match n {
        8.. => {
            let to = &mut to[..8];
            // SAFETY: `to` holds the 8 values the store writes.
            unsafe { _mm256_storeu_ps(to.as_mut_ptr(), v) };
        }
        4..=7 => {
            // Lanes `n − 4..n` in lanes 0..4.
            let last = _mm256_permutevar8x32_ps(
                v,
                _mm256_add_epi32(
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                    _mm256_set1_epi32(n as i32 - 4),
                ),
            );
            let head = &mut to[..4];
            // SAFETY: `head` holds the 4 values the store writes.
            unsafe { _mm_storeu_ps(head.as_mut_ptr(), _mm256_castps256_ps128(v)) };
            let tail = &mut to[n - 4..];
            // SAFETY: `tail` holds the 4 values the store writes.
            unsafe { _mm_storeu_ps(tail.as_mut_ptr(), _mm256_castps256_ps128(last)) };
        }
        _ => {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds the 8 values the store writes.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
            to.copy_from_slice(&lanes[..n]);
        }
    }
}

/// The even and the odd values of the 16 in `a` then `b`, each in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn deinterleave(
    a: std::arch::x86_64::__m256,
    b: std::arch::x86_64::__m256,
) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::{
        _mm256_castpd_ps, _mm256_castps_pd, _mm256_permute4x64_pd, _mm256_shuffle_ps,
    };
    // Per 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs in the order
    // 0, 2, 1, 3: [a0 a2 a4 a6 b0 b2 b4 b6]; the same for the odds.
    let evens = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
    let odds = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
    (
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
            evens,
        ))),
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
            odds,
        ))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::ConvWindow;
    use crate::isa::same_on_every_isa;
    use crate::test_values;

    fn depthwise(
        input: [usize; 4],
        multiplier: usize,
        k: usize,
        s: usize,
        p: usize,
        d: usize,
    ) -> Conv2d {
        Conv2d::new(
            input,
            ConvWindow {
                out_channels: input[1] * multiplier,
                kernel: [k, k],
                stride: [s, s],
                pad: [p, p],
                dilation: [d, d],
                groups: input[1],
            },
        )
        .unwrap()
    }

    /// The vector instances give the portable loops' bits, on rows of full registers and a
    /// masked one (AVX-512: 10 full and 3 more columns, AVX2: 20 and 6, or 10 and 3) at
    /// strides 1 and 2 (whose rows are split 32 columns at a time, then one by one), with
    /// even and odd padding, through a ReLU (at stride 2) that turns a NaN into 0; and on
    /// 7-wide planes whose 7 pieces leave the last group of pieces part empty.
    #[test]
    fn every_instance_gives_the_same_bits() {
        // AVX2's copies: 20 registers and 6 values more (stride 1), 10 pairs and 6 (stride
        // 2, 3 values each phase), 7 and 3 of one register; 13 (7 and 6 a phase) and 21
        // (16 and 5: 3 and 2) at stride 2; and the stores of pieces narrower than 8.
        for (width, stride, pad) in [
            (166, 1, 1),
            (166, 2, 1),
            (166, 2, 2),
            (7, 1, 1),
            (3, 1, 1),
            (8, 1, 0),
            (13, 2, 1),
            (21, 2, 0),
        ] {
            let g = depthwise([2, 3, width.min(9), width], 2, 3, stride, pad, 1);
            let mut x = test_values(g.input_len(), 1);
            x[5] = f32::NAN; // a NaN output, or 0 through the ReLU
            let w = test_values(g.weight_len(), 2);
            let b = test_values(g.out_channels, 3);
            same_on_every_isa(
                &format!("width {width}, stride {stride}, pad {pad}"),
                || {
                    let mut y = vec![f32::NAN; g.output_len()];
                    forward(&g, &x, &w, Some(&b), stride == 2, &mut y).unwrap();
                    // Any NaN is one value (its payload depends on the order of an add's
                    // operands).
                    y.iter()
                        .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
                        .collect::<Vec<_>>()
                },
            );
        }
    }

    #[test]
    fn a_grouped_convolution_that_is_not_depthwise_is_refused() {
        let g = Conv2d::new(
            [1, 4, 5, 5],
            ConvWindow {
                out_channels: 4,
                kernel: [3, 3],
                stride: [1, 1],
                pad: [1, 1],
                dilation: [1, 1],
                groups: 2,
            },
        )
        .unwrap();
        let mut y = vec![0.0; g.output_len()];
        let err = forward(&g, &[0.0; 100], &[0.0; 18], None, false, &mut y).unwrap_err();
        assert!(err.to_string().contains("not depthwise"), "{err}");
    }
}
