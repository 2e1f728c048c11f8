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
        Ok(Windows {
            in_plane,
            starts,
            offsets,
            divisors,
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
        y.par_chunks_mut(op)
            .zip(argmax.par_chunks_mut(op))
            .zip(x.par_chunks(ip))
            .for_each(|((y, arg), x)| {
                for (o, (y, arg)) in y.iter_mut().zip(arg.iter_mut()).enumerate() {
                    let (mut best, mut at) = (MAX_POOL_EMPTY, u32::MAX);
                    for &i in self.window(o) {
                        let v = x[i as usize];
                        if v > best {
                            best = v;
                            at = i;
                        }
                    }
                    *y = best;
                    *arg = at;
                }
            });
        Ok(())
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
