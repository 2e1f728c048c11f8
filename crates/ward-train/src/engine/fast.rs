//! The operators the engine runs on ward's kernels, in `f32`, forward and backward.
//! Each must give the reference rule's numbers within `f32` rounding; an operator, or an
//! attribute value, not handled here runs on the reference rules instead.

#![allow(
    clippy::indexing_slicing,
    reason = "every slice here has the length shape inference planned (Engine::step checks the inputs and parameters; each kernel checks its own arguments), and indices stay below the channel and plane counts taken from those shapes"
)]

use rayon::prelude::*;
use ward_core::random::rand_core::Rng;
use ward_core::random::ChaCha20Rng;
use ward_graph::interp::embedding::embedding_row;
use ward_graph::interp::eval::{conv_params, pool_params};
use ward_graph::interp::pool::pool_windows;
use ward_graph::ops::activation::ActivationKind;
use ward_graph::ops::elementwise::BinaryKind;
use ward_graph::ops::loss::{Normalization, SoftmaxOutput, SoftmaxOutputMode};
use ward_graph::ops::norm::BatchNorm;
use ward_graph::ops::pool::PoolKind;
use ward_graph::ops::Op;
use ward_kernels::conv::{Conv2d, ConvWindow};
use ward_kernels::dense::Dense;
use ward_kernels::Windows;
use ward_kernels::{maps, sums};

use super::buffers;
use ward_kernels::math::{sigmoid, tanh};

use super::rnn::{RnnPlan, Tape};

/// A node planned on ward's kernels.
pub(super) enum Fast {
    Conv {
        geometry: Conv2d,
        bias: bool,
    },
    Pool {
        kind: PoolKind,
        planes: usize,
        windows: Windows,
        /// What the average's gradient divides by (MXNet's rule; see `grad::pool`).
        grad_divisors: Vec<f32>,
    },
    Dense {
        layer: Dense,
        bias: bool,
    },
    Activation(ActivationKind),
    BatchNorm {
        outer: usize,
        channels: usize,
        inner: usize,
        eps: f64,
        momentum: f64,
        fix_gamma: bool,
    },
    /// Flatten, and any reshape: the elements do not move.
    Copy,
    /// `elemwise_add`, `+` of same-shaped values, `add_n`.
    Sum,
    /// Dropout in training mode: each element kept with probability 1 − p and scaled by
    /// 1/(1 − p), as MXNet does; one mask value shared along `axes`.
    Dropout {
        p: f64,
        shape: Vec<usize>,
        /// `shape` with 1 on the axes that share a mask value.
        mask_shape: Vec<usize>,
    },
    /// The fused RNN, every mode (see `super::rnn`).
    Rnn(RnnPlan),
    /// Embedding: rows of the weight gathered forward, the gradient's rows added back
    /// into a dense weight gradient (ids read as `embedding_row` reads them).
    Embedding {
        rows: usize,
        dim: usize,
    },
    /// SoftmaxOutput whose softmax runs over contiguous rows (`Flatten`, or `Last` with
    /// no axis after it): forward softmax, backward MXNet's cross-entropy gradient
    /// (`crate::grad::loss::softmax_output`).
    SoftmaxOutput {
        rows: usize,
        classes: usize,
        op: SoftmaxOutput,
    },
}

/// What the forward pass keeps for the backward pass.
pub(super) enum Saved {
    None,
    /// Dropout's mask, one scale (0 or 1/(1 − p)) per element.
    Mask(Vec<f32>),
    Argmax(Vec<u32>),
    BatchNorm {
        mean: Vec<f32>,
        inv_std: Vec<f32>,
        /// The moving mean and variance after this step.
        running: [Vec<f32>; 2],
    },
    /// The RNN's gates and states of every step.
    Rnn(Tape),
}

type Outs = (Vec<Vec<f32>>, Saved);

impl Saved {
    /// Gives the large buffers back (see `buffers`) once the backward pass is done.
    pub(super) fn recycle(self) {
        match self {
            Saved::Mask(mask) => buffers::recycle(mask),
            Saved::Rnn(tape) => tape.recycle(),
            Saved::None | Saved::Argmax(_) | Saved::BatchNorm { .. } => {}
        }
    }
}

impl Fast {
    /// The fast plan of `op` on inputs and outputs of these shapes, or `None` when it
    /// runs on the reference rules.
    pub(super) fn plan(
        op: &Op,
        ins: &[&[usize]],
        outs: &[Vec<usize>],
        inference: bool,
    ) -> Option<Fast> {
        let x = ins.first()?;
        match op {
            Op::Conv(op) if op.kernel.len() == 2 && x.len() == 4 => {
                let p = conv_params(op);
                let w = ins.get(1)?;
                let window = ConvWindow {
                    out_channels: *w.first()?,
                    kernel: [p.kernel[0], p.kernel[1]],
                    stride: [*p.stride.first()?, *p.stride.get(1)?],
                    pad: [*p.pad.first()?, *p.pad.get(1)?],
                    dilation: [*p.dilation.first()?, *p.dilation.get(1)?],
                    groups: p.groups,
                };
                let geometry = Conv2d::new([x[0], x[1], x[2], x[3]], window).ok()?;
                let out = outs.first()?;
                (out == &[
                    x[0],
                    window.out_channels,
                    geometry.out_h(),
                    geometry.out_w(),
                ])
                    .then_some(Fast::Conv {
                        geometry,
                        bias: op.bias,
                    })
            }
            Op::Pool(op) if x.len() == 4 => {
                let params = pool_params(op);
                // Every plane has the same windows: those of one plane alone.
                let plane = [1, 1, x[2], x[3]];
                let (out_shape, windows) = pool_windows(&plane, &params).ok()?;
                let in_plane = x[2] * x[3];
                let out_plane = out_shape[2] * out_shape[3];
                let first = windows.get(..out_plane)?;
                if op.kind == PoolKind::Avg && first.iter().any(|w| w.offsets.is_empty()) {
                    // The interpreter refuses this; let it say so.
                    return None;
                }
                let table = Windows::new(
                    in_plane,
                    first
                        .iter()
                        .map(|w| (w.offsets.clone(), w.divisor(op.count_include_pad))),
                )
                .ok()?;
                let grad_divisors = first
                    .iter()
                    .map(|w| {
                        let d = if op.count_include_pad {
                            w.grad_size
                        } else {
                            w.offsets.len()
                        };
                        d.max(1) as f32
                    })
                    .collect();
                Some(Fast::Pool {
                    kind: op.kind,
                    planes: x[0] * x[1],
                    windows: table,
                    grad_divisors,
                })
            }
            Op::Dense(op) => {
                let w = ins.get(1)?;
                let (units, inner) = (*w.first()?, *w.get(1)?);
                let total: usize = x.iter().product();
                (inner > 0 && total.is_multiple_of(inner) && units == op.units).then_some(
                    Fast::Dense {
                        layer: Dense {
                            rows: total / inner,
                            inner,
                            units,
                        },
                        bias: op.bias,
                    },
                )
            }
            Op::Activation(op)
                if matches!(
                    op.kind,
                    ActivationKind::Relu | ActivationKind::Sigmoid | ActivationKind::Tanh
                ) =>
            {
                Some(Fast::Activation(op.kind))
            }
            // At inference, and with `use_global_stats`, the reference rules normalise by
            // the moving statistics.
            Op::BatchNorm(op) if !op.use_global_stats && !inference => batch_norm_plan(op, x),
            Op::Dropout(_) if inference => Some(Fast::Copy),
            Op::Flatten(_) | Op::Reshape(_) => Some(Fast::Copy),
            Op::Binary(b) if b.kind == BinaryKind::Add && ins.get(1).is_some_and(|y| y == x) => {
                Some(Fast::Sum)
            }
            Op::AddN(_) if ins.iter().all(|s| s == x) => Some(Fast::Sum),
            Op::Rnn(op) => RnnPlan::new(op, ins, outs).map(Fast::Rnn),
            Op::Embedding(op) => {
                let w = ins.get(1)?;
                (w == &[op.input_dim, op.output_dim] && op.input_dim > 0 && op.output_dim > 0)
                    .then_some(Fast::Embedding {
                        rows: op.input_dim,
                        dim: op.output_dim,
                    })
            }
            Op::SoftmaxOutput(op) if !x.is_empty() => {
                let total: usize = x.iter().product();
                let classes = match op.mode {
                    SoftmaxOutputMode::Flatten => total.checked_div(x[0])?,
                    SoftmaxOutputMode::Last if x.len() == 2 => x[1],
                    _ => return None,
                };
                let rows = total.checked_div(classes)?;
                // The rule reads one label per row.
                let labels: usize = ins.get(1).map_or(0, |l| l.iter().product());
                (rows > 0 && labels >= rows).then(|| Fast::SoftmaxOutput {
                    rows,
                    classes,
                    op: op.clone(),
                })
            }
            Op::Dropout(op) => {
                let mut mask_shape = x.to_vec();
                for &a in &op.axes {
                    let axis = if a < 0 {
                        x.len().checked_sub(a.unsigned_abs() as usize)?
                    } else {
                        a as usize
                    };
                    *mask_shape.get_mut(axis)? = 1;
                }
                Some(Fast::Dropout {
                    p: op.p,
                    shape: x.to_vec(),
                    mask_shape,
                })
            }
            _ => None,
        }
    }

    pub(super) fn forward(
        &self,
        ins: &[&[f32]],
        rng: Option<&mut ChaCha20Rng>,
    ) -> Result<Outs, String> {
        let arg = |i: usize| ins.get(i).copied().ok_or(format!("input {i} is missing"));
        let kernel = |e: ward_kernels::KernelError| e.to_string();
        match self {
            Fast::Conv { geometry, bias } => {
                let mut y = buffers::scratch(geometry.output_len());
                let b = if *bias { Some(arg(2)?) } else { None };
                geometry
                    .forward(arg(0)?, arg(1)?, b, &mut y)
                    .map_err(kernel)?;
                Ok((vec![y], Saved::None))
            }
            Fast::Pool {
                kind,
                planes,
                windows,
                ..
            } => {
                let x = arg(0)?;
                let mut y = buffers::scratch(planes * windows.out_plane());
                if *kind == PoolKind::Max {
                    let mut argmax = vec![0u32; y.len()];
                    windows
                        .max_forward(*planes, x, &mut y, &mut argmax)
                        .map_err(kernel)?;
                    Ok((vec![y], Saved::Argmax(argmax)))
                } else {
                    windows
                        .avg_forward(*planes, *kind == PoolKind::Sum, x, &mut y)
                        .map_err(kernel)?;
                    Ok((vec![y], Saved::None))
                }
            }
            Fast::Dense { layer, bias } => {
                let mut y = buffers::scratch(layer.rows * layer.units);
                let b = if *bias { Some(arg(2)?) } else { None };
                layer.forward(arg(0)?, arg(1)?, b, &mut y).map_err(kernel)?;
                Ok((vec![y], Saved::None))
            }
            Fast::Activation(kind) => {
                let x = arg(0)?;
                let f = |v: f32| match kind {
                    ActivationKind::Sigmoid => sigmoid(v),
                    _ => tanh(v),
                };
                let mut y = buffers::scratch(x.len());
                y.par_chunks_mut(1 << 14)
                    .zip(x.par_chunks(1 << 14))
                    .try_for_each(|(y, x)| match kind {
                        ActivationKind::Relu => maps::relu(y, x),
                        _ => {
                            y.iter_mut().zip(x).for_each(|(y, &x)| *y = f(x));
                            Ok(())
                        }
                    })
                    .map_err(kernel)?;
                Ok((vec![y], Saved::None))
            }
            Fast::BatchNorm { .. } => self.batch_norm_forward(ins),
            Fast::Rnn(plan) => plan
                .forward(ins)
                .map(|(outs, tape)| (outs, Saved::Rnn(tape))),
            Fast::Embedding { rows, dim } => {
                let (ids, w) = (arg(0)?, arg(1)?);
                let mut y = buffers::scratch(ids.len() * dim);
                for (&id, y) in ids.iter().zip(y.chunks_exact_mut(*dim)) {
                    let r = embedding_row(f64::from(id), *rows);
                    y.copy_from_slice(&w[r * dim..(r + 1) * dim]);
                }
                Ok((vec![y], Saved::None))
            }
            Fast::SoftmaxOutput { classes, .. } => {
                let x = arg(0)?;
                let mut y = buffers::scratch(x.len());
                y.par_chunks_mut(*classes)
                    .zip(x.par_chunks(*classes))
                    .try_for_each(|(y, x)| maps::softmax(y, x))
                    .map_err(kernel)?;
                Ok((vec![y], Saved::None))
            }
            Fast::Copy => Ok((vec![buffers::copied(arg(0)?)], Saved::None)),
            Fast::Dropout {
                p,
                shape,
                mask_shape,
            } => {
                let x = arg(0)?;
                if *p == 0.0 {
                    return Ok((vec![x.to_vec()], Saved::Mask(vec![1.0; x.len()])));
                }
                let rng = rng.ok_or(
                    "dropout in training draws its mask from the run's random stream; none was given",
                )?;
                let mask = dropout_mask(*p, shape, mask_shape, rng);
                let y = x.iter().zip(&mask).map(|(x, m)| x * m).collect();
                Ok((vec![y], Saved::Mask(mask)))
            }
            Fast::Sum => {
                let mut y = buffers::copied(arg(0)?);
                for x in ins.iter().skip(1) {
                    maps::add_assign(&mut y, x).map_err(kernel)?;
                }
                Ok((vec![y], Saved::None))
            }
        }
    }

    /// The gradients of the node's inputs (`None` where none is wanted or flows), from
    /// the gradients arriving at its outputs (`None`: nothing flows into that output).
    pub(super) fn backward(
        &self,
        ins: &[&[f32]],
        outs: &[Vec<f32>],
        saved: &Saved,
        grads: &[Option<Vec<f32>>],
        wanted: &[bool],
    ) -> Result<Vec<Option<Vec<f32>>>, String> {
        if let Fast::Rnn(plan) = self {
            return match saved {
                Saved::Rnn(tape) => plan.backward(ins, tape, grads, wanted),
                _ => Err("the RNN kept no tape".into()),
            };
        }
        // Every other operator here has one output. Where no gradient flows into it, it is
        // zero: made only for an operator that reads it (a loss head makes its own), and
        // given back with the step's other buffers.
        let zeros = match grads.first() {
            Some(Some(_)) => None,
            _ if matches!(self, Fast::SoftmaxOutput { .. }) => None,
            _ => Some(buffers::zeroed(outs.first().map_or(0, Vec::len))),
        };
        let dy: &[f32] = match (grads.first(), &zeros) {
            (Some(Some(g)), _) => g,
            (_, Some(z)) => z,
            _ => &[],
        };
        let result = self.backward_from(dy, ins, outs, saved, wanted);
        if let Some(zeros) = zeros {
            buffers::recycle(zeros);
        }
        result
    }

    /// [`Fast::backward`] of a one-output operator, from the gradient `dy` of its output.
    fn backward_from(
        &self,
        dy: &[f32],
        ins: &[&[f32]],
        outs: &[Vec<f32>],
        saved: &Saved,
        wanted: &[bool],
    ) -> Result<Vec<Option<Vec<f32>>>, String> {
        let arg = |i: usize| ins.get(i).copied().ok_or(format!("input {i} is missing"));
        let want = |i: usize| wanted.get(i).copied().unwrap_or(false);
        let kernel = |e: ward_kernels::KernelError| e.to_string();
        match self {
            Fast::Conv { geometry, bias } => {
                let dx = if want(0) {
                    let mut dx = buffers::scratch(geometry.input_len());
                    geometry
                        .backward_data(dy, arg(1)?, &mut dx)
                        .map_err(kernel)?;
                    Some(dx)
                } else {
                    None
                };
                let mut dw = buffers::scratch(geometry.weight_len());
                let mut db = buffers::scratch(if *bias { geometry.out_channels } else { 0 });
                geometry
                    .backward_weight(arg(0)?, dy, &mut dw, bias.then_some(&mut db[..]))
                    .map_err(kernel)?;
                let mut grads = vec![dx, want(1).then_some(dw)];
                if *bias {
                    grads.push(want(2).then_some(db));
                }
                Ok(grads)
            }
            Fast::Pool {
                kind,
                planes,
                windows,
                grad_divisors,
            } => {
                let mut dx = buffers::scratch(planes * windows.in_plane());
                match (kind, saved) {
                    (PoolKind::Max, Saved::Argmax(argmax)) => windows
                        .max_backward(*planes, argmax, dy, &mut dx)
                        .map_err(kernel)?,
                    (PoolKind::Max, _) => return Err("max pooling kept no argmax".into()),
                    (PoolKind::Sum, _) => windows
                        .avg_backward(*planes, None, dy, &mut dx)
                        .map_err(kernel)?,
                    (PoolKind::Avg, _) => windows
                        .avg_backward(*planes, Some(grad_divisors), dy, &mut dx)
                        .map_err(kernel)?,
                }
                Ok(vec![Some(dx)])
            }
            Fast::Dense { layer, bias } => {
                let (inner, units) = (layer.inner, layer.units);
                let dx = if want(0) {
                    let mut dx = buffers::scratch(layer.rows * inner);
                    layer.backward_data(dy, arg(1)?, &mut dx).map_err(kernel)?;
                    Some(dx)
                } else {
                    None
                };
                let mut dw = buffers::scratch(units * inner);
                layer
                    .backward_weight(arg(0)?, dy, &mut dw)
                    .map_err(kernel)?;
                let mut grads = vec![dx, want(1).then_some(dw)];
                if *bias {
                    // Column sums, by blocks of columns across the threads; each column is
                    // summed over the rows in order, whatever the thread count.
                    const COLUMNS: usize = 1024;
                    let mut db = buffers::zeroed(units);
                    db.par_chunks_mut(COLUMNS)
                        .enumerate()
                        .for_each(|(block, db)| {
                            let first = block * COLUMNS;
                            for row in dy.chunks_exact(units) {
                                let row = &row[first..first + db.len()];
                                db.iter_mut().zip(row).for_each(|(d, g)| *d += g);
                            }
                        });
                    grads.push(want(2).then_some(db));
                }
                Ok(grads)
            }
            Fast::Activation(kind) => {
                let x = arg(0)?;
                let y = outs.first().ok_or("the output is missing")?;
                let mut dx = buffers::scratch(x.len());
                dx.par_chunks_mut(1 << 14)
                    .zip(dy.par_chunks(1 << 14))
                    .zip(x.par_chunks(1 << 14).zip(y.par_chunks(1 << 14)))
                    .try_for_each(|((dx, dy), (x, y))| {
                        let mut local = |f: fn(f32, f32) -> f32| {
                            for ((d, &g), &y) in dx.iter_mut().zip(dy).zip(y) {
                                *d = f(g, y);
                            }
                        };
                        match kind {
                            ActivationKind::Relu => return maps::relu_grad(dx, x, dy),
                            ActivationKind::Sigmoid => local(|g, y| g * y * (1.0 - y)),
                            _ => local(|g, y| g * (1.0 - y * y)),
                        }
                        Ok(())
                    })
                    .map_err(kernel)?;
                Ok(vec![Some(dx)])
            }
            Fast::BatchNorm { .. } => self.batch_norm_backward(ins, saved, dy, wanted),
            Fast::Rnn(_) => Err("the RNN's backward pass is above".into()),
            Fast::Embedding { rows, dim } => {
                let ids = arg(0)?;
                let mut dw = buffers::zeroed(rows * dim);
                for (&id, g) in ids.iter().zip(dy.chunks_exact(*dim)) {
                    let r = embedding_row(f64::from(id), *rows);
                    dw[r * dim..(r + 1) * dim]
                        .iter_mut()
                        .zip(g)
                        .for_each(|(d, g)| *d += g);
                }
                Ok(vec![None, want(1).then_some(dw)])
            }
            Fast::SoftmaxOutput { rows, classes, op } => {
                let p = outs.first().ok_or("the output is missing")?;
                let label = arg(1)?;
                Ok(vec![
                    Some(softmax_output_grad(op, *rows, *classes, p, label)),
                    None,
                ])
            }
            Fast::Copy => Ok(vec![Some(buffers::copied(dy))]),
            Fast::Dropout { .. } => match saved {
                Saved::Mask(mask) => Ok(vec![Some(
                    dy.iter().zip(mask).map(|(g, m)| g * m).collect(),
                )]),
                _ => Err("dropout kept no mask".into()),
            },
            Fast::Sum => Ok((0..ins.len())
                .map(|i| want(i).then(|| buffers::copied(dy)))
                .collect()),
        }
    }

    fn batch_norm_forward(&self, ins: &[&[f32]]) -> Result<Outs, String> {
        let &Fast::BatchNorm {
            outer,
            channels,
            inner,
            eps,
            momentum,
            fix_gamma,
        } = self
        else {
            return Err("not a batch norm".into());
        };
        let arg = |i: usize| ins.get(i).copied().ok_or(format!("input {i} is missing"));
        let (x, gamma, beta) = (arg(0)?, arg(1)?, arg(2)?);
        let (moving_mean, moving_var) = (arg(3)?, arg(4)?);
        let count = (outer * inner).max(1) as f64;
        // Per channel: mean and biased variance, accumulated in f64.
        let stats: Vec<(f64, f64)> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let planes = || (0..outer).map(move |o| &x[(o * channels + c) * inner..][..inner]);
                let mean = sums::sum(planes()) / count;
                (mean, sums::squared_deviations(planes(), mean) / count)
            })
            .collect();
        let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
        let inv_std: Vec<f32> = stats
            .iter()
            .map(|s| (1.0 / (s.1 + eps).sqrt()) as f32)
            .collect();
        let mut y = buffers::scratch(x.len());
        y.par_chunks_mut(inner.max(1))
            .zip(x.par_chunks(inner.max(1)))
            .enumerate()
            .try_for_each(|(plane, (y, x))| {
                let c = plane % channels;
                let g = if fix_gamma { 1.0 } else { gamma[c] };
                let channel = maps::Channel {
                    mean: mean[c],
                    inv_std: inv_std[c],
                    gamma: g,
                    beta: beta[c],
                };
                maps::normalize(y, x, channel)
            })
            .map_err(|e| e.to_string())?;
        let running = [
            moving_mean
                .iter()
                .zip(&stats)
                .map(|(&r, s)| (f64::from(r) * momentum + s.0 * (1.0 - momentum)) as f32)
                .collect(),
            moving_var
                .iter()
                .zip(&stats)
                .map(|(&r, s)| (f64::from(r) * momentum + s.1 * (1.0 - momentum)) as f32)
                .collect(),
        ];
        Ok((
            vec![y],
            Saved::BatchNorm {
                mean,
                inv_std,
                running,
            },
        ))
    }

    fn batch_norm_backward(
        &self,
        ins: &[&[f32]],
        saved: &Saved,
        dy: &[f32],
        wanted: &[bool],
    ) -> Result<Vec<Option<Vec<f32>>>, String> {
        let (
            &Fast::BatchNorm {
                outer,
                channels,
                inner,
                fix_gamma,
                ..
            },
            Saved::BatchNorm { mean, inv_std, .. },
        ) = (self, saved)
        else {
            return Err("batch norm kept no statistics".into());
        };
        let x = ins.first().copied().ok_or("input 0 is missing")?;
        let gamma = ins.get(1).copied().ok_or("input 1 is missing")?;
        let count = (outer * inner).max(1) as f64;
        // Per channel: Σ dy and Σ dy·x̂.
        let sums: Vec<(f64, f64)> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let (m, s) = (mean[c], inv_std[c]);
                let planes = (0..outer).map(|o| {
                    let at = (o * channels + c) * inner;
                    (&dy[at..at + inner], &x[at..at + inner])
                });
                sums::gradient_sums(planes, m, s)
            })
            .collect();
        let mut dx = buffers::scratch(x.len());
        dx.par_chunks_mut(inner.max(1))
            .zip(x.par_chunks(inner.max(1)).zip(dy.par_chunks(inner.max(1))))
            .enumerate()
            .try_for_each(|(plane, (dx, (x, dy)))| {
                let c = plane % channels;
                let g = if fix_gamma { 1.0 } else { gamma[c] };
                let mean_dy = (sums[c].0 / count) as f32;
                let mean_dy_xhat = (sums[c].1 / count) as f32;
                let channel = maps::Channel {
                    mean: mean[c],
                    inv_std: inv_std[c],
                    gamma: g,
                    beta: 0.0,
                };
                maps::normalize_grad(dx, x, dy, channel, mean_dy, mean_dy_xhat)
            })
            .map_err(|e| e.to_string())?;
        let want = |i: usize| wanted.get(i).copied().unwrap_or(false);
        let dgamma: Vec<f32> = if fix_gamma {
            buffers::zeroed(channels)
        } else {
            sums.iter().map(|s| s.1 as f32).collect()
        };
        let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        Ok(vec![
            want(0).then_some(dx),
            want(1).then_some(dgamma),
            want(2).then_some(dbeta),
            None,
            None,
        ])
    }
}

/// SoftmaxOutput's gradient as `crate::grad::loss::softmax_output` defines it for rows
/// of `classes` contiguous values: `p − target` (the label's class `1 − α`, the others
/// `α/(classes − 1)`; a row with the ignored label 0 when `use_ignore`), times
/// `grad_scale` over the normaliser, times `p` with `out_grad`.
fn softmax_output_grad(
    op: &SoftmaxOutput,
    rows: usize,
    classes: usize,
    p: &[f32],
    label: &[f32],
) -> Vec<f32> {
    // Labels are read as the rule reads them: truncated toward zero.
    let as_class = |l: f32| l as i64;
    let ignore = op.ignore_label as i64;
    let valid = label.iter().filter(|&&l| as_class(l) != ignore).count() as f64;
    let normaliser = match op.normalization {
        Normalization::Null => 1.0,
        Normalization::Batch => label.len() as f64,
        Normalization::Valid => valid,
    };
    let scale = (op.grad_scale / normaliser.max(1.0)) as f32;
    let alpha = op.smooth_alpha;
    let hit = (1.0 - alpha) as f32;
    let other = if classes > 1 {
        (alpha / (classes - 1) as f64) as f32
    } else {
        0.0
    };
    let mut dx = buffers::zeroed(rows * classes);
    dx.par_chunks_mut(classes)
        .zip(p.par_chunks(classes))
        .zip(label.par_iter())
        .for_each(|((dx, p), &l)| {
            let k = as_class(l);
            if op.use_ignore && k == ignore {
                return;
            }
            for (c, (d, &p)) in dx.iter_mut().zip(p).enumerate() {
                let target = if c as i64 == k { hit } else { other };
                let g = (p - target) * scale;
                *d = if op.out_grad { g * p } else { g };
            }
        });
    dx
}

/// Dropout's mask for a value of `shape`: one draw per element of `mask_shape` (kept when
/// a uniform draw in [0, 1) is below 1 − p, as MXNet's Bernoulli), broadcast along the
/// axes where `mask_shape` is 1, each kept element scaled by 1/(1 − p).
fn dropout_mask(p: f64, shape: &[usize], mask_shape: &[usize], rng: &mut ChaCha20Rng) -> Vec<f32> {
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    let drawn: Vec<f32> = (0..mask_shape.iter().product::<usize>())
        .map(|_| {
            // 53 random bits: a uniform double in [0, 1).
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if u < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    if mask_shape == shape {
        return drawn;
    }
    // Broadcast: element (i0, i1, …) reads the mask at (i0 or 0, i1 or 0, …).
    let total: usize = shape.iter().product();
    let mut strides = vec![1usize; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * mask_shape[a + 1];
    }
    (0..total)
        .map(|flat| {
            let mut rest = flat;
            let mut at = 0;
            for a in (0..shape.len()).rev() {
                let i = rest % shape[a];
                rest /= shape[a];
                if mask_shape[a] != 1 {
                    at += i * strides[a];
                }
            }
            drawn[at]
        })
        .collect()
}

fn batch_norm_plan(op: &BatchNorm, x: &[usize]) -> Option<Fast> {
    let rank = x.len();
    let axis = if op.axis < 0 {
        rank.checked_sub(op.axis.unsigned_abs() as usize)?
    } else {
        op.axis as usize
    };
    let channels = *x.get(axis)?;
    let outer: usize = x.get(..axis)?.iter().product();
    let inner: usize = x.get(axis + 1..)?.iter().product();
    (channels > 0 && inner > 0 && op.momentum.is_finite() && op.eps.is_finite()).then_some(
        Fast::BatchNorm {
            outer,
            channels,
            inner,
            eps: op.eps,
            momentum: op.momentum,
            fix_gamma: op.fix_gamma,
        },
    )
}
