//! The fused RNN (lstm, gru, rnn_tanh, rnn_relu; stacked layers; bidirectional):
//! backpropagation through time.
//!
//! The forward pass is run again per layer, direction and batch item keeping every
//! step's gate values (the interpreter's `rnn` gives only the outputs), with the
//! equations of `ward_graph::interp::rnn`; then the steps are walked back in the order
//! they ran in reverse. Layers are walked from the top: a layer's input gradient is the
//! output gradient of the layer below.

use ward_graph::interp::activation::sigmoid;
use ward_graph::interp::Array;
use ward_graph::ops::rnn::{Rnn, RnnMode, PARAMS_PER_CELL};

use super::{Ctx, Rule};

/// One direction's weights of one layer, and their gradients.
struct Cell<'a> {
    wi: &'a Array,
    wh: &'a Array,
    bi: &'a Array,
    bh: &'a Array,
    dwi: Vec<f64>,
    dwh: Vec<f64>,
    dbi: Vec<f64>,
    dbh: Vec<f64>,
}

/// `W·v + b` for `W` of `rows` rows.
fn affine(w: &Array, b: &Array, v: &[f64], rows: usize) -> Vec<f64> {
    let cols = v.len();
    (0..rows)
        .map(|r| {
            let row = w.data.get(r * cols..(r + 1) * cols).unwrap_or_default();
            b.data.get(r).copied().unwrap_or(0.0)
                + row.iter().zip(v).map(|(a, x)| a * x).sum::<f64>()
        })
        .collect()
}

/// `dv += Wᵀ·dg`, `dW += dg ⊗ v`, `db += dg`.
fn affine_back(w: &Array, v: &[f64], dg: &[f64], dw: &mut [f64], db: &mut [f64], dv: &mut [f64]) {
    let cols = v.len();
    for (r, &g) in dg.iter().enumerate() {
        if g == 0.0 {
            continue;
        }
        if let Some(b) = db.get_mut(r) {
            *b += g;
        }
        let row = w.data.get(r * cols..(r + 1) * cols).unwrap_or_default();
        let drow = dw.get_mut(r * cols..(r + 1) * cols).unwrap_or_default();
        for (((d, &wv), &x), dx) in drow.iter_mut().zip(row).zip(v).zip(dv.iter_mut()) {
            *d += g * x;
            *dx += g * wv;
        }
    }
}

/// What one step kept: its input, the state before it, the gate values.
struct Step {
    x: Vec<f64>,
    h: Vec<f64>,
    c: Vec<f64>,
    /// The hidden term of the GRU's n gate (`W_hn·h + b_hn`), which the reset gate scales.
    gh_n: Vec<f64>,
    /// Gate activations (lstm: i, f, g, o; gru: r, z, n; rnn: h').
    gates: Vec<f64>,
    /// The new cell (lstm).
    c_new: Vec<f64>,
}

fn forward_step(mode: RnnMode, cell: &Cell<'_>, x: &[f64], h: &[f64], c: &[f64]) -> Step {
    let hs = h.len();
    let rows = hs * gates(mode);
    let gi = affine(cell.wi, cell.bi, x, rows);
    let gh = affine(cell.wh, cell.bh, h, rows);
    let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(0.0);
    let mut gates_out = vec![0.0; rows];
    let mut c_new = Vec::new();
    let mut gh_n = Vec::new();
    match mode {
        RnnMode::RnnTanh | RnnMode::RnnRelu => {
            for (j, g) in gates_out.iter_mut().enumerate() {
                let a = at(&gi, j) + at(&gh, j);
                *g = if mode == RnnMode::RnnTanh {
                    a.tanh()
                } else {
                    a.max(0.0)
                };
            }
        }
        RnnMode::Lstm => {
            c_new = vec![0.0; hs];
            for j in 0..hs {
                let pre = |k: usize| at(&gi, k * hs + j) + at(&gh, k * hs + j);
                let (i, f, g, o) = (
                    sigmoid(pre(0)),
                    sigmoid(pre(1)),
                    pre(2).tanh(),
                    sigmoid(pre(3)),
                );
                for (k, v) in [i, f, g, o].into_iter().enumerate() {
                    if let Some(slot) = gates_out.get_mut(k * hs + j) {
                        *slot = v;
                    }
                }
                if let Some(slot) = c_new.get_mut(j) {
                    *slot = f * at(c, j) + i * g;
                }
            }
        }
        RnnMode::Gru => {
            gh_n = (0..hs).map(|j| at(&gh, 2 * hs + j)).collect();
            for j in 0..hs {
                let r = sigmoid(at(&gi, j) + at(&gh, j));
                let z = sigmoid(at(&gi, hs + j) + at(&gh, hs + j));
                let n = (at(&gi, 2 * hs + j) + r * at(&gh_n, j)).tanh();
                for (k, v) in [r, z, n].into_iter().enumerate() {
                    if let Some(slot) = gates_out.get_mut(k * hs + j) {
                        *slot = v;
                    }
                }
            }
        }
    }
    Step {
        x: x.to_vec(),
        h: h.to_vec(),
        c: c.to_vec(),
        gh_n,
        gates: gates_out,
        c_new,
    }
}

/// The state after `step`: (h', c').
fn new_state(mode: RnnMode, s: &Step, hs: usize) -> (Vec<f64>, Vec<f64>) {
    let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(0.0);
    match mode {
        RnnMode::RnnTanh | RnnMode::RnnRelu => (s.gates.clone(), Vec::new()),
        RnnMode::Lstm => (
            (0..hs)
                .map(|j| at(&s.gates, 3 * hs + j) * at(&s.c_new, j).tanh())
                .collect(),
            s.c_new.clone(),
        ),
        RnnMode::Gru => (
            (0..hs)
                .map(|j| {
                    let (z, n) = (at(&s.gates, hs + j), at(&s.gates, 2 * hs + j));
                    (1.0 - z) * n + z * at(&s.h, j)
                })
                .collect(),
            Vec::new(),
        ),
    }
}

fn gates(mode: RnnMode) -> usize {
    match mode {
        RnnMode::Lstm => 4,
        RnnMode::Gru => 3,
        RnnMode::RnnTanh | RnnMode::RnnRelu => 1,
    }
}

/// One step backward: from `dh'` (and `dc'`), the gradients of the step's input, of the
/// state before it, and (accumulated) of the cell's weights.
fn backward_step(
    mode: RnnMode,
    cell: &mut Cell<'_>,
    s: &Step,
    dh_new: &[f64],
    dc_new: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let hs = s.h.len();
    let rows = hs * gates(mode);
    let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(0.0);
    let mut dgi = vec![0.0; rows];
    let mut dgh = vec![0.0; rows];
    let mut dh = vec![0.0; hs];
    let mut dc = vec![0.0; hs];
    let set = |v: &mut Vec<f64>, i: usize, x: f64| {
        if let Some(slot) = v.get_mut(i) {
            *slot = x;
        }
    };
    match mode {
        RnnMode::RnnTanh | RnnMode::RnnRelu => {
            for j in 0..hs {
                let y = at(&s.gates, j);
                let slope = if mode == RnnMode::RnnTanh {
                    1.0 - y * y
                } else if y > 0.0 {
                    1.0
                } else {
                    0.0
                };
                let da = at(dh_new, j) * slope;
                set(&mut dgi, j, da);
                set(&mut dgh, j, da);
            }
        }
        RnnMode::Lstm => {
            for j in 0..hs {
                let (i, f, g, o) = (
                    at(&s.gates, j),
                    at(&s.gates, hs + j),
                    at(&s.gates, 2 * hs + j),
                    at(&s.gates, 3 * hs + j),
                );
                let tc = at(&s.c_new, j).tanh();
                let dho = at(dh_new, j);
                let dct = at(dc_new, j) + dho * o * (1.0 - tc * tc);
                let da = [
                    dct * g * i * (1.0 - i),
                    dct * at(&s.c, j) * f * (1.0 - f),
                    dct * i * (1.0 - g * g),
                    dho * tc * o * (1.0 - o),
                ];
                for (k, v) in da.into_iter().enumerate() {
                    set(&mut dgi, k * hs + j, v);
                    set(&mut dgh, k * hs + j, v);
                }
                set(&mut dc, j, dct * f);
            }
        }
        RnnMode::Gru => {
            for j in 0..hs {
                let (r, z, n) = (
                    at(&s.gates, j),
                    at(&s.gates, hs + j),
                    at(&s.gates, 2 * hs + j),
                );
                let d = at(dh_new, j);
                let dn = d * (1.0 - z) * (1.0 - n * n);
                let dz = d * (at(&s.h, j) - n) * z * (1.0 - z);
                let dr = dn * at(&s.gh_n, j) * r * (1.0 - r);
                set(&mut dgi, j, dr);
                set(&mut dgh, j, dr);
                set(&mut dgi, hs + j, dz);
                set(&mut dgh, hs + j, dz);
                set(&mut dgi, 2 * hs + j, dn);
                set(&mut dgh, 2 * hs + j, dn * r);
                set(&mut dh, j, d * z);
            }
        }
    }
    let mut dx = vec![0.0; s.x.len()];
    affine_back(cell.wi, &s.x, &dgi, &mut cell.dwi, &mut cell.dbi, &mut dx);
    affine_back(cell.wh, &s.h, &dgh, &mut cell.dwh, &mut cell.dbh, &mut dh);
    (dx, dh, dc)
}

pub fn rnn(ctx: &Ctx<'_>, op: &Rnn) -> Rule {
    let data = ctx.input(0)?;
    let state = ctx.input(1)?;
    let lstm = op.mode == RnnMode::Lstm;
    let state_cell = if lstm { Some(ctx.input(2)?) } else { None };
    let first = op.state_inputs();
    let (t_len, n, input_size) = match data.shape.as_slice() {
        [t, n, i] => (*t, *n, *i),
        other => return Err(format!("data has shape {other:?}, expected (T, N, I)")),
    };
    let (d, h) = (op.directions(), op.hidden);
    let mut cells = (0..op.layers * d)
        .map(|k| {
            let at = first + k * PARAMS_PER_CELL;
            let (wi, wh, bi, bh) = (
                ctx.input(at)?,
                ctx.input(at + 1)?,
                ctx.input(at + 2)?,
                ctx.input(at + 3)?,
            );
            Ok(Cell {
                dwi: vec![0.0; wi.data.len()],
                dwh: vec![0.0; wh.data.len()],
                dbi: vec![0.0; bi.data.len()],
                dbh: vec![0.0; bh.data.len()],
                wi,
                wh,
                bi,
                bh,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;

    // Forward, keeping every step: steps[layer][dir][b] in processing order.
    let slice = |a: &Array, at: usize, len: usize| -> Vec<f64> {
        a.data.get(at..at + len).unwrap_or_default().to_vec()
    };
    let mut seq: Vec<Vec<Vec<f64>>> = (0..t_len)
        .map(|t| {
            (0..n)
                .map(|b| slice(data, (t * n + b) * input_size, input_size))
                .collect()
        })
        .collect();
    let mut tapes: Vec<Vec<Vec<Step>>> = Vec::with_capacity(op.layers * d);
    for l in 0..op.layers {
        let mut next = vec![vec![vec![0.0; d * h]; n]; t_len];
        for dir in 0..d {
            let row = l * d + dir;
            let cell = cells.get(row).ok_or("missing cell")?;
            let mut per_item = Vec::with_capacity(n);
            for b in 0..n {
                let at = (row * n + b) * h;
                let mut hcur = slice(state, at, h);
                let mut ccur = state_cell.map_or(vec![0.0; h], |c| slice(c, at, h));
                let mut steps = Vec::with_capacity(t_len);
                for t in order(t_len, dir) {
                    let x = seq
                        .get(t)
                        .and_then(|s| s.get(b))
                        .cloned()
                        .unwrap_or_default();
                    let step = forward_step(op.mode, cell, &x, &hcur, &ccur);
                    let (h2, c2) = new_state(op.mode, &step, h);
                    if let Some(out) = next.get_mut(t).and_then(|s| s.get_mut(b)) {
                        for (o, v) in out.iter_mut().skip(dir * h).zip(&h2) {
                            *o = *v;
                        }
                    }
                    hcur = h2;
                    if lstm {
                        ccur = c2;
                    }
                    steps.push(step);
                }
                per_item.push(steps);
            }
            tapes.push(per_item);
        }
        seq = next;
    }

    // Backward, from the top layer down.
    let g_out = ctx.grad(0)?;
    let g_hy = if op.state_outputs {
        Some(ctx.grad(1)?)
    } else {
        None
    };
    let g_cy = if op.state_outputs && lstm {
        Some(ctx.grad(2)?)
    } else {
        None
    };
    // d(layer output)[t][b][d*h], starting from the graph's output gradient.
    let mut dseq: Vec<Vec<Vec<f64>>> = (0..t_len)
        .map(|t| {
            (0..n)
                .map(|b| slice(&g_out, (t * n + b) * d * h, d * h))
                .collect()
        })
        .collect();
    let mut dstate = vec![0.0; state.data.len()];
    let mut dcell = vec![0.0; state_cell.map_or(0, |c| c.data.len())];
    for l in (0..op.layers).rev() {
        let layer_input = if l == 0 { input_size } else { d * h };
        let mut dprev = vec![vec![vec![0.0; layer_input]; n]; t_len];
        for dir in 0..d {
            let row = l * d + dir;
            let tape = tapes.get(row).ok_or("missing tape")?;
            let cell = cells.get_mut(row).ok_or("missing cell")?;
            for (b, steps) in tape.iter().enumerate() {
                let at = (row * n + b) * h;
                let mut dh = g_hy.as_ref().map_or(vec![0.0; h], |g| slice(g, at, h));
                let mut dc = g_cy.as_ref().map_or(vec![0.0; h], |g| slice(g, at, h));
                let times: Vec<usize> = order(t_len, dir).collect();
                for (step, &t) in steps.iter().zip(&times).rev() {
                    let from_output = dseq
                        .get(t)
                        .and_then(|s| s.get(b))
                        .map(|v| v.iter().skip(dir * h).take(h).copied().collect::<Vec<_>>())
                        .unwrap_or_default();
                    let dh_new: Vec<f64> =
                        dh.iter().zip(&from_output).map(|(a, b)| a + b).collect();
                    let (dx, dh_prev, dc_prev) = backward_step(op.mode, cell, step, &dh_new, &dc);
                    if let Some(acc) = dprev.get_mut(t).and_then(|s| s.get_mut(b)) {
                        for (a, v) in acc.iter_mut().zip(&dx) {
                            *a += v;
                        }
                    }
                    dh = dh_prev;
                    dc = dc_prev;
                }
                for (slot, v) in dstate.iter_mut().skip(at).take(h).zip(&dh) {
                    *slot += v;
                }
                for (slot, v) in dcell.iter_mut().skip(at).take(h).zip(&dc) {
                    *slot += v;
                }
            }
        }
        dseq = dprev;
    }

    let to_array =
        |like: &Array, v: Vec<f64>| Array::new(like.shape.clone(), v).map_err(|e| e.to_string());
    let dx: Vec<f64> = dseq.into_iter().flatten().flatten().collect();
    let mut grads = vec![Some(to_array(data, dx)?), Some(to_array(state, dstate)?)];
    if let Some(c) = state_cell {
        grads.push(Some(to_array(c, dcell)?));
    }
    for cell in cells {
        grads.push(Some(to_array(cell.wi, cell.dwi)?));
        grads.push(Some(to_array(cell.wh, cell.dwh)?));
        grads.push(Some(to_array(cell.bi, cell.dbi)?));
        grads.push(Some(to_array(cell.bh, cell.dbh)?));
    }
    Ok(grads)
}

/// The steps a direction runs, in order: forward, or from the last.
fn order(t_len: usize, dir: usize) -> Box<dyn DoubleEndedIterator<Item = usize>> {
    if dir == 0 {
        Box::new(0..t_len)
    } else {
        Box::new((0..t_len).rev())
    }
}
