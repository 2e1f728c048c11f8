//! The fused RNN (`Op::Rnn`: lstm, gru, rnn_tanh, rnn_relu; stacked layers; one or two
//! directions; TNC layout) on ward's matrix product, in `f32`, forward and
//! backpropagation through time.
//!
//! The equations are the reference rule's (`crate::grad::rnn`, after
//! `ward_graph::interp::rnn`); only the order of the work differs. Per layer and
//! direction:
//! * forward: the input projection of every time step is one product,
//!   `G = X·W_iᵀ + b_i` (T·N rows), then each step adds its recurrent projection
//!   `h·W_hᵀ + b_h` (N rows) and applies the gates element by element, keeping the gate
//!   activations, the state before each step and (LSTM) `tanh(c')`;
//! * backward: the steps are walked back in the reverse of the order they ran, each
//!   giving its gates' gradient `dG_t` (kept for all steps) and the state gradient
//!   `dh = dG_t·W_h` through one product of N rows; then the weight and input gradients
//!   are one product each over all steps: `dW_i = dGᵀ·X`, `dW_h = dG_hᵀ·H_prev`,
//!   `dX += dG·W_i`, and the biases' are column sums.
//!
//! Buffers indexed by time step hold T·N rows in the data's (t, n) order, whichever way
//! a direction walks, so the products over all steps read them as they are.

#![allow(
    clippy::indexing_slicing,
    reason = "every buffer here is allocated with the sizes planned from the shapes shape inference checked (RnnPlan::new), and Engine::step checks each input's length against them; indices stay below T, N, H and the gate count"
)]

use rayon::prelude::*;
use ward_graph::ops::rnn::{Rnn, RnnMode, PARAMS_PER_CELL};
use ward_kernels::matmul::{gemm_parallel, MatRef};

use super::buffers;
use ward_kernels::cells;
use ward_kernels::math::tanh;

/// A fused RNN planned for one data shape.
pub(super) struct RnnPlan {
    mode: RnnMode,
    /// T, N, I: the data's shape.
    steps: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    layers: usize,
    dirs: usize,
    state_outputs: bool,
}

/// What the forward pass keeps for backpropagation through time. Every buffer is per
/// layer and direction (`layer·D + dir`), of T·N rows by time step.
pub(super) struct Tape {
    /// The output of every layer but the last (the next layer's input), T·N × D·H.
    layer_outputs: Vec<Vec<f32>>,
    /// Gate activations (lstm: i, f, g, o; gru: r, z, n; rnn: h'), T·N × G·H.
    gates: Vec<Vec<f32>>,
    /// The hidden state each step started from, T·N × H.
    h_prev: Vec<Vec<f32>>,
    /// LSTM: the cell each step started from and `tanh` of the cell it made, T·N × H.
    c_prev: Vec<Vec<f32>>,
    tanh_c: Vec<Vec<f32>>,
    /// GRU: the recurrent term of the n gate (`W_hn·h + b_hn`), T·N × H.
    gh_n: Vec<Vec<f32>>,
}

impl Tape {
    /// Gives every step's buffers back (see `buffers`).
    pub(super) fn recycle(self) {
        [
            self.layer_outputs,
            self.gates,
            self.h_prev,
            self.c_prev,
            self.tanh_c,
            self.gh_n,
        ]
        .into_iter()
        .flatten()
        .for_each(buffers::recycle);
    }
}

fn kernel(e: ward_kernels::KernelError) -> String {
    e.to_string()
}

/// The time step a direction runs `k`-th.
fn time(steps: usize, dir: usize, k: usize) -> usize {
    if dir == 0 {
        k
    } else {
        steps - 1 - k
    }
}

/// Column sums of a row-major matrix of `cols` columns, added to `out`.
fn add_column_sums(m: &[f32], cols: usize, out: &mut [f32]) {
    for row in m.chunks_exact(cols) {
        out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
    }
}

impl RnnPlan {
    /// The plan for data of shape `x` (T, N, I), or `None` when the shapes are not the
    /// ones the operator's shape rule gives (the reference rule then reports it).
    pub(super) fn new(op: &Rnn, ins: &[&[usize]], outs: &[Vec<usize>]) -> Option<RnnPlan> {
        let &[steps, batch, input] = *ins.first()? else {
            return None;
        };
        let dirs = op.directions();
        let plan = RnnPlan {
            mode: op.mode,
            steps,
            batch,
            input,
            hidden: op.hidden,
            layers: op.layers,
            dirs,
            state_outputs: op.state_outputs,
        };
        let state = [op.layers.checked_mul(dirs)?, batch, op.hidden];
        let first = op.state_inputs();
        let params_ok = (0..op.layers).all(|l| {
            op.cell_param_shapes(l, input).is_ok_and(|shapes| {
                (0..dirs).all(|d| {
                    let at = first + (l * dirs + d) * PARAMS_PER_CELL;
                    shapes
                        .iter()
                        .enumerate()
                        .all(|(k, s)| ins.get(at + k).is_some_and(|got| *got == s.as_slice()))
                })
            })
        });
        let states_ok = (1..first).all(|k| ins.get(k).is_some_and(|s| *s == state));
        let out_ok = outs.first().is_some_and(|o| {
            o.as_slice() == [steps, batch, dirs.checked_mul(op.hidden).unwrap_or(0)]
        });
        (steps > 0
            && batch > 0
            && input > 0
            && params_ok
            && states_ok
            && out_ok
            && ins.len() == first + op.layers * dirs * PARAMS_PER_CELL)
            .then_some(plan)
    }

    fn gates(&self) -> usize {
        self.mode.gates()
    }

    fn layer_input(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input
        } else {
            self.dirs * self.hidden
        }
    }

    /// The parameters of layer `layer`, direction `dir`: i2h weight, h2h weight, i2h
    /// bias, h2h bias.
    fn cell<'a>(
        &self,
        ins: &[&'a [f32]],
        layer: usize,
        dir: usize,
    ) -> Result<[&'a [f32]; 4], String> {
        let first = if self.mode == RnnMode::Lstm { 3 } else { 2 };
        let at = first + (layer * self.dirs + dir) * PARAMS_PER_CELL;
        let arg = |k: usize| {
            ins.get(at + k)
                .copied()
                .ok_or(format!("parameter {} is missing", at + k))
        };
        Ok([arg(0)?, arg(1)?, arg(2)?, arg(3)?])
    }

    /// Outputs: (T, N, D·H), then with `state_outputs` the final state and (LSTM) cell.
    pub(super) fn forward(&self, ins: &[&[f32]]) -> Result<(Vec<Vec<f32>>, Tape), String> {
        let arg = |i: usize| ins.get(i).copied().ok_or(format!("input {i} is missing"));
        let (t_len, n, h) = (self.steps, self.batch, self.hidden);
        let lstm = self.mode == RnnMode::Lstm;
        let gru = self.mode == RnnMode::Gru;
        let gh_cols = self.gates() * h;
        let rows = t_len * n;
        let width = self.dirs * h;
        let state = arg(1)?;
        let cell = if lstm { Some(arg(2)?) } else { None };
        let mut hy = buffers::zeroed(self.layers * self.dirs * n * h);
        let mut cy = buffers::zeroed(if lstm { hy.len() } else { 0 });
        let cells = self.layers * self.dirs;
        let mut tape = Tape {
            layer_outputs: Vec::with_capacity(self.layers.saturating_sub(1)),
            gates: Vec::with_capacity(cells),
            h_prev: Vec::with_capacity(cells),
            c_prev: Vec::with_capacity(cells),
            tanh_c: Vec::with_capacity(cells),
            gh_n: Vec::with_capacity(cells),
        };
        let mut output = Vec::new();
        for layer in 0..self.layers {
            let in_width = self.layer_input(layer);
            let x: &[f32] = if layer == 0 {
                arg(0)?
            } else {
                tape.layer_outputs
                    .last()
                    .ok_or("the layer below kept no output")?
            };
            let xm = MatRef::row_major(x, rows, in_width).map_err(kernel)?;
            let mut out = buffers::zeroed(rows * width);
            for dir in 0..self.dirs {
                let [wi, wh, bi, bh] = self.cell(ins, layer, dir)?;
                // W_hᵀ, laid out once for the T products that read it: the kernel for
                // short products reads B's rows in place (a transposed view would go to
                // the matrix crate, which packs it element by element on every call).
                let mut wh_t = buffers::zeroed(h * gh_cols);
                for (r, row) in wh.chunks_exact(h).enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        wh_t[j * gh_cols + r] = v;
                    }
                }
                let wh_tm = MatRef::row_major(&wh_t, h, gh_cols).map_err(kernel)?;
                // G = X·W_iᵀ + b_i (+ b_h, except for the GRU, whose n gate scales it).
                let bias: Vec<f32> = if gru {
                    bi.to_vec()
                } else {
                    bi.iter().zip(bh).map(|(i, h)| i + h).collect()
                };
                let mut g = buffers::repeated(&bias, rows);
                let wim = MatRef::row_major(wi, gh_cols, in_width).map_err(kernel)?;
                gemm_parallel(1.0, xm, wim.t(), 1.0, &mut g).map_err(kernel)?;

                let row0 = (layer * self.dirs + dir) * n * h;
                let mut hcur = state[row0..row0 + n * h].to_vec();
                let mut ccur = cell.map_or_else(Vec::new, |c| c[row0..row0 + n * h].to_vec());
                let mut h_prev = buffers::zeroed(rows * h);
                let mut c_prev = buffers::zeroed(if lstm { rows * h } else { 0 });
                let mut tanh_c = buffers::zeroed(if lstm { rows * h } else { 0 });
                let mut gh_n = buffers::zeroed(if gru { rows * h } else { 0 });
                let mut gh = buffers::zeroed(if gru { n * gh_cols } else { 0 });
                for k in 0..t_len {
                    let t = time(t_len, dir, k);
                    let block = t * n..(t + 1) * n;
                    h_prev[block.start * h..block.end * h].copy_from_slice(&hcur);
                    let hm = MatRef::row_major(&hcur, n, h).map_err(kernel)?;
                    let gt = &mut g[block.start * gh_cols..block.end * gh_cols];
                    match self.mode {
                        RnnMode::Gru => {
                            for row in gh.chunks_exact_mut(gh_cols) {
                                row.copy_from_slice(bh);
                            }
                            gemm_parallel(1.0, hm, wh_tm, 1.0, &mut gh).map_err(kernel)?;
                            let ghn = &mut gh_n[block.start * h..block.end * h];
                            gt.par_chunks_mut(gh_cols)
                                .zip(gh.par_chunks(gh_cols))
                                .zip(hcur.par_chunks_mut(h).zip(ghn.par_chunks_mut(h)))
                                .try_for_each(|((g, gh), (hv, ghn))| {
                                    cells::gru_forward(g, gh, hv, ghn, h)
                                })
                                .map_err(kernel)?;
                        }
                        RnnMode::Lstm => {
                            gemm_parallel(1.0, hm, wh_tm, 1.0, gt).map_err(kernel)?;
                            c_prev[block.start * h..block.end * h].copy_from_slice(&ccur);
                            let tc = &mut tanh_c[block.start * h..block.end * h];
                            gt.par_chunks_mut(gh_cols)
                                .zip(hcur.par_chunks_mut(h))
                                .zip(ccur.par_chunks_mut(h).zip(tc.par_chunks_mut(h)))
                                .try_for_each(|((g, hv), (c, tc))| {
                                    cells::lstm_forward(g, hv, c, tc, h)
                                })
                                .map_err(kernel)?;
                        }
                        RnnMode::RnnTanh | RnnMode::RnnRelu => {
                            gemm_parallel(1.0, hm, wh_tm, 1.0, gt).map_err(kernel)?;
                            let relu = self.mode == RnnMode::RnnRelu;
                            gt.par_iter_mut().for_each(|v| {
                                *v = if relu { v.max(0.0) } else { tanh(*v) };
                            });
                            hcur.copy_from_slice(gt);
                        }
                    }
                    for (b, hv) in hcur.chunks_exact(h).enumerate() {
                        let at = (t * n + b) * width + dir * h;
                        out[at..at + h].copy_from_slice(hv);
                    }
                }
                hy[row0..row0 + n * h].copy_from_slice(&hcur);
                if lstm {
                    cy[row0..row0 + n * h].copy_from_slice(&ccur);
                }
                tape.gates.push(g);
                tape.h_prev.push(h_prev);
                tape.c_prev.push(c_prev);
                tape.tanh_c.push(tanh_c);
                tape.gh_n.push(gh_n);
                buffers::recycle(wh_t);
            }
            if layer + 1 < self.layers {
                tape.layer_outputs.push(out);
            } else {
                output = out;
            }
        }
        let mut outs = vec![output];
        if self.state_outputs {
            outs.push(hy);
            if lstm {
                outs.push(cy);
            }
        }
        Ok((outs, tape))
    }

    /// The gradients of the node's inputs (data, state, cell, then four per cell), from
    /// the gradients of its outputs (`None`: none flows into that output).
    pub(super) fn backward(
        &self,
        ins: &[&[f32]],
        tape: &Tape,
        grads: &[Option<Vec<f32>>],
        wanted: &[bool],
    ) -> Result<Vec<Option<Vec<f32>>>, String> {
        let arg = |i: usize| ins.get(i).copied().ok_or(format!("input {i} is missing"));
        let want = |i: usize| wanted.get(i).copied().unwrap_or(false);
        let (t_len, n, h) = (self.steps, self.batch, self.hidden);
        let lstm = self.mode == RnnMode::Lstm;
        let gru = self.mode == RnnMode::Gru;
        let gh_cols = self.gates() * h;
        let rows = t_len * n;
        let width = self.dirs * h;
        let first = if lstm { 3 } else { 2 };
        let state_len = self.layers * self.dirs * n * h;
        let grad = |k: usize| grads.get(k).and_then(Option::as_ref);
        let g_hy = if self.state_outputs { grad(1) } else { None };
        let g_cy = if self.state_outputs && lstm {
            grad(2)
        } else {
            None
        };
        let mut dstate = buffers::zeroed(state_len);
        let mut dcell = buffers::zeroed(if lstm { state_len } else { 0 });
        let mut param_grads: Vec<Option<Vec<f32>>> =
            vec![None; self.layers * self.dirs * PARAMS_PER_CELL];
        // The gradient of the current layer's output, from the top.
        let mut dout: Vec<f32> = match grad(0) {
            Some(g) => g.clone(),
            None => buffers::zeroed(rows * width),
        };
        let mut dx_data = None;
        for layer in (0..self.layers).rev() {
            let in_width = self.layer_input(layer);
            let x: &[f32] = if layer == 0 {
                arg(0)?
            } else {
                &tape.layer_outputs[layer - 1]
            };
            let xm = MatRef::row_major(x, rows, in_width).map_err(kernel)?;
            let need_dx = layer > 0 || want(0);
            let mut dx = buffers::zeroed(if need_dx { rows * in_width } else { 0 });
            for dir in 0..self.dirs {
                let cell_index = layer * self.dirs + dir;
                let [wi, wh, _, _] = self.cell(ins, layer, dir)?;
                let whm = MatRef::row_major(wh, gh_cols, h).map_err(kernel)?;
                let gates = &tape.gates[cell_index];
                let h_prev = &tape.h_prev[cell_index];
                let row0 = cell_index * n * h;
                let mut dh = g_hy.map_or_else(
                    || buffers::zeroed(n * h),
                    |g| g[row0..row0 + n * h].to_vec(),
                );
                let mut dc = if lstm {
                    g_cy.map_or_else(
                        || buffers::zeroed(n * h),
                        |g| g[row0..row0 + n * h].to_vec(),
                    )
                } else {
                    Vec::new()
                };
                // dG: the gradient of the gates' pre-activations, i2h side; the GRU's h2h
                // side differs in the n gate (scaled by r), the others' is the same.
                let mut dg = buffers::zeroed(rows * gh_cols);
                let mut dgh = buffers::zeroed(if gru { rows * gh_cols } else { 0 });
                let mut dh_new = buffers::zeroed(n * h);
                for k in (0..t_len).rev() {
                    let t = time(t_len, dir, k);
                    let block = t * n..(t + 1) * n;
                    for (b, d) in dh_new.chunks_exact_mut(h).enumerate() {
                        let at = (t * n + b) * width + dir * h;
                        let from_out = &dout[at..at + h];
                        let carried = &dh[b * h..(b + 1) * h];
                        d.iter_mut()
                            .zip(from_out.iter().zip(carried))
                            .for_each(|(d, (a, c))| *d = a + c);
                    }
                    let g_t = &gates[block.start * gh_cols..block.end * gh_cols];
                    let dg_t = &mut dg[block.start * gh_cols..block.end * gh_cols];
                    match self.mode {
                        RnnMode::Lstm => {
                            let c_prev = &tape.c_prev[cell_index][block.start * h..block.end * h];
                            let tc = &tape.tanh_c[cell_index][block.start * h..block.end * h];
                            dg_t.par_chunks_mut(gh_cols)
                                .zip(g_t.par_chunks(gh_cols))
                                .zip(dh_new.par_chunks(h).zip(dc.par_chunks_mut(h)))
                                .zip(c_prev.par_chunks(h).zip(tc.par_chunks(h)))
                                .try_for_each(|(((dg, g), (dhn, dc)), (cp, tc))| {
                                    cells::lstm_backward(dg, g, dhn, dc, cp, tc, h)
                                })
                                .map_err(kernel)?;
                            let dgm = MatRef::row_major(dg_t, n, gh_cols).map_err(kernel)?;
                            gemm_parallel(1.0, dgm, whm, 0.0, &mut dh).map_err(kernel)?;
                        }
                        RnnMode::Gru => {
                            let hp = &h_prev[block.start * h..block.end * h];
                            let ghn = &tape.gh_n[cell_index][block.start * h..block.end * h];
                            let dgh_t = &mut dgh[block.start * gh_cols..block.end * gh_cols];
                            dg_t.par_chunks_mut(gh_cols)
                                .zip(dgh_t.par_chunks_mut(gh_cols))
                                .zip(g_t.par_chunks(gh_cols).zip(dh_new.par_chunks(h)))
                                .zip(hp.par_chunks(h).zip(ghn.par_chunks(h)))
                                .zip(dh.par_chunks_mut(h))
                                .try_for_each(|((((dg, dgh), (g, dhn)), (hp, ghn)), dh)| {
                                    cells::gru_backward(dg, dgh, g, dhn, hp, ghn, dh, h)
                                })
                                .map_err(kernel)?;
                            let dgm = MatRef::row_major(dgh_t, n, gh_cols).map_err(kernel)?;
                            gemm_parallel(1.0, dgm, whm, 1.0, &mut dh).map_err(kernel)?;
                        }
                        RnnMode::RnnTanh | RnnMode::RnnRelu => {
                            let is_tanh = self.mode == RnnMode::RnnTanh;
                            dg_t.par_iter_mut()
                                .zip(g_t.par_iter().zip(dh_new.par_iter()))
                                .for_each(|(d, (&y, &dy))| {
                                    let slope = if is_tanh {
                                        1.0 - y * y
                                    } else if y > 0.0 {
                                        1.0
                                    } else {
                                        0.0
                                    };
                                    *d = dy * slope;
                                });
                            let dgm = MatRef::row_major(dg_t, n, gh_cols).map_err(kernel)?;
                            gemm_parallel(1.0, dgm, whm, 0.0, &mut dh).map_err(kernel)?;
                        }
                    }
                }
                dstate[row0..row0 + n * h].copy_from_slice(&dh);
                if lstm {
                    dcell[row0..row0 + n * h].copy_from_slice(&dc);
                }
                // Over all steps at once.
                let dgh_all: &[f32] = if gru { &dgh } else { &dg };
                let dgm = MatRef::row_major(&dg, rows, gh_cols).map_err(kernel)?;
                let dghm = MatRef::row_major(dgh_all, rows, gh_cols).map_err(kernel)?;
                let hpm = MatRef::row_major(h_prev, rows, h).map_err(kernel)?;
                let mut dwi = buffers::zeroed(gh_cols * in_width);
                gemm_parallel(1.0, dgm.t(), xm, 0.0, &mut dwi).map_err(kernel)?;
                let mut dwh = buffers::zeroed(gh_cols * h);
                gemm_parallel(1.0, dghm.t(), hpm, 0.0, &mut dwh).map_err(kernel)?;
                let mut dbi = buffers::zeroed(gh_cols);
                add_column_sums(&dg, gh_cols, &mut dbi);
                let dbh = if gru {
                    let mut dbh = buffers::zeroed(gh_cols);
                    add_column_sums(&dgh, gh_cols, &mut dbh);
                    dbh
                } else {
                    dbi.clone()
                };
                if need_dx {
                    let wim = MatRef::row_major(wi, gh_cols, in_width).map_err(kernel)?;
                    let beta = if dir == 0 { 0.0 } else { 1.0 };
                    gemm_parallel(1.0, dgm, wim, beta, &mut dx).map_err(kernel)?;
                }
                let at = cell_index * PARAMS_PER_CELL;
                for (k, g) in [dwi, dwh, dbi, dbh].into_iter().enumerate() {
                    param_grads[at + k] = want(first + at + k).then_some(g);
                }
            }
            if layer == 0 {
                dx_data = need_dx.then_some(dx);
            } else {
                dout = dx;
            }
        }
        let mut grads = vec![dx_data, want(1).then_some(dstate)];
        if lstm {
            grads.push(want(2).then_some(dcell));
        }
        grads.extend(param_grads);
        Ok(grads)
    }
}
