//! Pooling over precomputed windows, forward and backward.
//!
//! MXNet's pooling windows have subtle rules (`full` output sizes, padding counted in the
//! average's divisor, a window that holds no input element). The reference interpreter
//! defines them once (`ward_graph::interp::pool::pool_windows`); the caller turns them
//! into [`Windows`], a compact table shared by every plane (image × channel), and these
//! kernels only run it.

#![allow(
    clippy::indexing_slicing,
    reason = "`Windows::new` checks every offset against the input plane and every start against the offsets; the kernels check their slices against the table's planes before indexing"
)]
#![allow(
    unsafe_code,
    reason = "max pooling's AVX-512 instance gathers input elements at offsets that `Windows::new` checked against the input plane"
)]

use rayon::prelude::*;

use crate::error::{check_len, KernelError};

const KERNEL: &str = "pool";

/// The value MXNet's max pooling starts from and gives a window with no input element.
pub const MAX_POOL_EMPTY: f32 = f32::MIN;

/// For each output element of a plane, the input elements of its window (offsets within
/// the input plane) and what an average divides by.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    in_plane: usize,
    /// Window `o` holds `offsets[starts[o]..starts[o + 1]]`.
    starts: Vec<u32>,
    offsets: Vec<u32>,
    divisors: Vec<f32>,
    /// The same windows for a vector instance: see [`Lanes`].
    lanes: Lanes,
}

/// Outputs per vector: one 512-bit vector of `f32`.
const LANES: usize = 16;

/// Runs of consecutive outputs whose windows are one window shifted by a fixed step (1
/// or 2 input elements, as along a row of outputs at stride 1 or 2), at most [`LANES`]
/// to a run, so that a vector instance reads each step of the run's windows with
/// contiguous loads. Every other output (a window at a border, clipped by the padding, or
/// at another stride) is a run of one.
#[derive(Debug, Clone, PartialEq, Default)]
struct Lanes {
    runs: Vec<Run>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    /// The run's first output.
    first: u32,
    /// Its outputs (1 to [`LANES`]).
    count: u32,
    /// Input elements between the windows of consecutive outputs of the run (1 or 2; 0
    /// for a run of one).
    step: u32,
}

impl Lanes {
    fn new(starts: &[u32], offsets: &[u32]) -> Lanes {
        let outputs = starts.len().saturating_sub(1);
        let window = |o: usize| &offsets[starts[o] as usize..starts[o + 1] as usize];
        // Window `o + lanes` is window `o` shifted by `lanes · step`.
        let shifted = |o: usize, lanes: usize, step: usize| {
            let (a, b) = (window(o), window(o + lanes));
            a.len() == b.len()
                && !a.is_empty()
                && a.iter()
                    .zip(b)
                    .all(|(&a, &b)| b as usize == a as usize + lanes * step)
        };
        let mut runs = Vec::new();
        let mut o = 0;
        while o < outputs {
            let mut best = Run {
                first: o as u32,
                count: 1,
                step: 0,
            };
            for step in [1usize, 2] {
                let mut count = 1;
                while count < LANES && o + count < outputs && shifted(o, count, step) {
                    count += 1;
                }
                if count > best.count as usize {
                    best = Run {
                        first: o as u32,
                        count: count as u32,
                        step: step as u32,
                    };
                }
            }
            runs.push(best);
            o += best.count as usize;
        }
        Lanes { runs }
    }
}

impl Windows {
    /// Builds the table from one `(offsets, divisor)` per output element, checking each
    /// offset against `in_plane`.
    pub fn new(
        in_plane: usize,
        windows: impl IntoIterator<Item = (Vec<usize>, usize)>,
    ) -> Result<Windows, KernelError> {
        let too_large = || KernelError::geometry(KERNEL, "the window table exceeds 2^32 entries");
        let mut starts = vec![0u32];
        let mut offsets = Vec::new();
        let mut divisors = Vec::new();
        for (window, divisor) in windows {
            for &o in &window {
                if o >= in_plane {
                    return Err(KernelError::geometry(
                        KERNEL,
                        format!("a window offset {o} is outside the input plane of {in_plane}"),
                    ));
                }
                offsets.push(u32::try_from(o).map_err(|_| too_large())?);
            }
            starts.push(u32::try_from(offsets.len()).map_err(|_| too_large())?);
            divisors.push(divisor as f32);
        }
        let lanes = Lanes::new(&starts, &offsets);
        Ok(Windows {
            in_plane,
            starts,
            offsets,
            divisors,
            lanes,
        })
    }

    pub fn in_plane(&self) -> usize {
        self.in_plane
    }

    pub fn out_plane(&self) -> usize {
        self.divisors.len()
    }

    fn window(&self, o: usize) -> &[u32] {
        &self.offsets[self.starts[o] as usize..self.starts[o + 1] as usize]
    }

    fn check(&self, planes: usize, x: usize, y: usize) -> Result<(), KernelError> {
        check_len(KERNEL, "input", x, planes.saturating_mul(self.in_plane))?;
        check_len(KERNEL, "output", y, planes.saturating_mul(self.out_plane()))
    }

    /// Max pooling of `planes` planes: the largest element of each window, taken only
    /// when greater than the best so far (so the first of equal maxima wins, and NaN is
    /// never taken), starting from [`MAX_POOL_EMPTY`]. `argmax` receives the offset of
    /// the element taken, or `u32::MAX` when none was.
    pub fn max_forward(
        &self,
        planes: usize,
        x: &[f32],
        y: &mut [f32],
        argmax: &mut [u32],
    ) -> Result<(), KernelError> {
        self.check(planes, x.len(), y.len())?;
        check_len(KERNEL, "argmax", argmax.len(), y.len())?;
        let (ip, op) = (self.in_plane, self.out_plane());
        if ip == 0 || op == 0 {
            y.fill(0.0);
            argmax.fill(u32::MAX);
            return Ok(());
        }
        let vector = crate::panels::available();
        y.par_chunks_mut(op)
            .zip(argmax.par_chunks_mut(op))
            .zip(x.par_chunks(ip))
            .for_each(|((y, arg), x)| {
                #[cfg(target_arch = "x86_64")]
                if vector {
                    // SAFETY: the CPU has AVX-512F (`panels::available`); `x` is one input
                    // plane and `y` and `arg` one output plane (the chunks of the
                    // lengths checked above), the table's.
                    unsafe { self.max_plane_avx512(x, y, arg) };
                    return;
                }
                let _ = vector;
                self.max_plane(x, y, arg);
            });
        Ok(())
    }

    /// [`Self::max_forward`] of one plane.
    fn max_plane(&self, x: &[f32], y: &mut [f32], arg: &mut [u32]) {
        self.max_plane_range(x, y, arg, 0..y.len());
    }

    /// [`Self::max_plane`] of the outputs in `outputs`.
    fn max_plane_range(
        &self,
        x: &[f32],
        y: &mut [f32],
        arg: &mut [u32],
        outputs: std::ops::Range<usize>,
    ) {
        for o in outputs {
            let (mut best, mut at) = (MAX_POOL_EMPTY, u32::MAX);
            for &i in self.window(o) {
                let v = x[i as usize];
                if v > best {
                    best = v;
                    at = i;
                }
            }
            y[o] = best;
            arg[o] = at;
        }
    }

    /// [`Self::max_plane`] a run of outputs at a time ([`Lanes`]): each step of the run's
    /// windows loads one element of each output's window (one load at step 1, two and a
    /// permutation at step 2) and takes it where it is greater (the same strict
    /// comparison in the same order, so the same results).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `x` must hold `in_plane` values and `y` and `arg`
    /// `out_plane`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn max_plane_avx512(&self, x: &[f32], y: &mut [f32], arg: &mut [u32]) {
        use std::arch::x86_64::{
            _mm512_add_epi32, _mm512_cmp_ps_mask, _mm512_mask_mov_epi32, _mm512_mask_mov_ps,
            _mm512_mask_storeu_epi32, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
            _mm512_mullo_epi32, _mm512_permutex2var_ps, _mm512_set1_epi32, _mm512_set1_ps,
            _mm512_setr_epi32, _CMP_GT_OQ,
        };
        debug_assert!(x.len() == self.in_plane && y.len() == self.out_plane());
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for run in &self.lanes.runs {
            let (first, count) = (run.first as usize, run.count as usize);
            if run.step == 0 {
                self.max_plane_range(x, y, arg, first..first + count);
                continue;
            }
            let keep = if count == LANES {
                u16::MAX
            } else {
                (1u16 << count) - 1
            };
            // Elements read from a window offset: lane j's at `j · step`.
            let span = (count - 1) * run.step as usize + 1;
            let low = if span >= LANES {
                u16::MAX
            } else {
                (1u16 << span) - 1
            };
            let high = if span > LANES {
                (1u16 << (span - LANES)) - 1
            } else {
                0
            };
            let lane_offsets = _mm512_mullo_epi32(lane, _mm512_set1_epi32(run.step as i32));
            let mut best = _mm512_set1_ps(MAX_POOL_EMPTY);
            let mut at = _mm512_set1_epi32(-1);
            for &offset in self.window(first) {
                let base = offset as usize;
                // SAFETY: the masked loads read elements `base .. base + span` of `x`:
                // the last is lane count − 1's element of this step, an offset of its
                // window, which `Windows::new` checked against the input plane (`x`).
                let v = unsafe {
                    let lo = _mm512_maskz_loadu_ps(low, x.as_ptr().add(base));
                    if run.step == 1 {
                        lo
                    } else {
                        let hi = _mm512_maskz_loadu_ps(high, x.as_ptr().add(base + LANES));
                        _mm512_permutex2var_ps(lo, evens, hi)
                    }
                };
                let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                best = _mm512_mask_mov_ps(best, greater, v);
                let offsets = _mm512_add_epi32(_mm512_set1_epi32(offset as i32), lane_offsets);
                at = _mm512_mask_mov_epi32(at, greater, offsets);
            }
            // SAFETY: the masked stores write `count` values from `first`, the run's
            // outputs, inside the output plane `y` and `arg` (both `out_plane` long).
            unsafe {
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(first), keep, best);
                _mm512_mask_storeu_epi32(arg.as_mut_ptr().add(first).cast(), keep, at);
            }
        }
    }

    /// The gradient of max pooling: each output's gradient goes to the element its
    /// window took (`argmax`), or, when none was taken, to the window's first element, as
    /// MXNet 1.9.1 does. `dx` is overwritten.
    pub fn max_backward(
        &self,
        planes: usize,
        argmax: &[u32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<(), KernelError> {
        self.check(planes, dx.len(), dy.len())?;
        check_len(KERNEL, "argmax", argmax.len(), dy.len())?;
        let (ip, op) = (self.in_plane, self.out_plane());
        if ip == 0 || op == 0 {
            dx.fill(0.0);
            return Ok(());
        }
        dx.par_chunks_mut(ip)
            .zip(dy.par_chunks(op))
            .zip(argmax.par_chunks(op))
            .try_for_each(|((dx, dy), arg)| {
                dx.fill(0.0);
                for (o, (&g, &at)) in dy.iter().zip(arg).enumerate() {
                    let target = if at == u32::MAX {
                        self.window(o).first().copied()
                    } else {
                        Some(at)
                    };
                    if let Some(t) = target {
                        let slot = dx.get_mut(t as usize).ok_or_else(|| {
                            KernelError::geometry(
                                KERNEL,
                                format!("argmax {t} is outside the plane"),
                            )
                        })?;
                        *slot += g;
                    }
                }
                Ok(())
            })
    }

    /// Average (or, with `sum`, sum) pooling: each window's sum divided by its divisor.
    pub fn avg_forward(
        &self,
        planes: usize,
        sum: bool,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        self.check(planes, x.len(), y.len())?;
        let (ip, op) = (self.in_plane, self.out_plane());
        if ip == 0 || op == 0 {
            y.fill(0.0);
            return Ok(());
        }
        y.par_chunks_mut(op)
            .zip(x.par_chunks(ip))
            .for_each(|(y, x)| {
                for (o, y) in y.iter_mut().enumerate() {
                    let total: f32 = self.window(o).iter().map(|&i| x[i as usize]).sum();
                    *y = if sum { total } else { total / self.divisors[o] };
                }
            });
        Ok(())
    }

    /// The gradient of [`Self::avg_forward`], with the divisors given here (MXNet's
    /// average gradient may divide by other sizes than its forward pass). `dx` is
    /// overwritten.
    pub fn avg_backward(
        &self,
        planes: usize,
        grad_divisors: Option<&[f32]>,
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<(), KernelError> {
        self.check(planes, dx.len(), dy.len())?;
        let (ip, op) = (self.in_plane, self.out_plane());
        if let Some(d) = grad_divisors {
            check_len(KERNEL, "grad_divisors", d.len(), op)?;
        }
        if ip == 0 || op == 0 {
            dx.fill(0.0);
            return Ok(());
        }
        dx.par_chunks_mut(ip)
            .zip(dy.par_chunks(op))
            .for_each(|(dx, dy)| {
                dx.fill(0.0);
                for (o, &g) in dy.iter().enumerate() {
                    let share = match grad_divisors {
                        Some(d) => g / d[o],
                        None => g,
                    };
                    for &i in self.window(o) {
                        dx[i as usize] += share;
                    }
                }
            });
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 3×3 windows at `stride` with a border of 1 over an `h × w` plane, clipped to it.
    fn grid(h: usize, w: usize, stride: usize) -> Vec<(Vec<usize>, usize)> {
        let (oh, ow) = ((h + 2 - 3) / stride + 1, (w + 2 - 3) / stride + 1);
        let mut windows = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                let mut window = Vec::new();
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = (
                            (oy * stride + ky) as isize - 1,
                            (ox * stride + kx) as isize - 1,
                        );
                        if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                            window.push(iy as usize * w + ix as usize);
                        }
                    }
                }
                windows.push((window, 9));
            }
        }
        windows
    }

    /// The dispatched instance (AVX-512 where the CPU has it) takes the same element of
    /// every window as the scalar loop: ties (small integers), NaN, empty windows,
    /// windows of different lengths side by side, and runs of windows at strides 1 and
    /// 2 of several lengths.
    #[test]
    fn every_instance_takes_the_same_element() {
        let irregular = (0..37).map(|o: usize| {
            let len = o % 7;
            ((0..len).map(|t| (o * 3 + t * 5) % 40).collect(), len.max(1))
        });
        let tables = [
            Windows::new(40, irregular).unwrap(),
            Windows::new(9 * 13, grid(9, 13, 1)).unwrap(),
            Windows::new(9 * 13, grid(9, 13, 2)).unwrap(),
            Windows::new(56 * 56, grid(56, 56, 2)).unwrap(),
            Windows::new(40 * 40, grid(40, 40, 1)).unwrap(),
        ];
        assert!(tables[3]
            .lanes
            .runs
            .iter()
            .any(|r| r.step == 2 && r.count == LANES as u32));
        assert!(tables[4]
            .lanes
            .runs
            .iter()
            .any(|r| r.step == 1 && r.count < LANES as u32 && r.count > 1));
        for table in &tables {
            let ip = table.in_plane();
            let x: Vec<f32> = (0..3 * ip)
                .map(|i| {
                    if i % 11 == 3 {
                        f32::NAN
                    } else {
                        ((i * 7) % 5) as f32
                    }
                })
                .collect();
            let o = table.out_plane();
            let (mut y, mut arg) = (vec![0.0f32; 3 * o], vec![0u32; 3 * o]);
            table.max_forward(3, &x, &mut y, &mut arg).unwrap();
            let (mut want_y, mut want_arg) = (vec![0.0f32; 3 * o], vec![0u32; 3 * o]);
            for p in 0..3 {
                table.max_plane(
                    &x[p * ip..][..ip],
                    &mut want_y[p * o..][..o],
                    &mut want_arg[p * o..][..o],
                );
            }
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&want_y));
            assert_eq!(arg, want_arg);
        }
        let mut arg = vec![0u32; 37];
        tables[0]
            .max_forward(1, &[1.0; 40], &mut [0.0; 37], &mut arg)
            .unwrap();
        assert!(arg.contains(&u32::MAX), "an empty window takes nothing");
    }
}
