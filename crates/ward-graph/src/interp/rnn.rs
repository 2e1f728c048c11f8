//! MXNet 1.9.1's fused `RNN` operator at inference: LSTM, GRU and plain tanh/relu RNNs,
//! stacked layers, bidirectional, TNC layout.
//!
//! Equations (per time step, per direction, `x` the layer's input, `h`, `c` the state):
//! * rnn_tanh / rnn_relu: `h' = act(W_i·x + b_i + W_h·h + b_h)`;
//! * lstm, gate rows in MXNet's order **i, f, g, o**: `i, f, o = σ(·)`, `g = tanh(·)`,
//!   `c' = f⊙c + i⊙g`, `h' = o⊙tanh(c')`;
//! * gru, gate rows **r, z, n**: `r, z = σ(W_i x + b_i + W_h h + b_h)`,
//!   `n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn))` (the reset gate multiplies the whole
//!   hidden term *including its bias*, cuDNN's form), `h' = (1 − z)⊙n + z⊙h`.
//!
//! A bidirectional layer runs a second set of weights from the last step to the first;
//! its output at step t is `[forward h_t | backward h_t]`, the next layer's input. The
//! `p` dropout between layers applies in training only.

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::activation::sigmoid;
use super::{Array, KResult, KernelError};

const OP: &str = "RNN";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RnnMode {
    Lstm,
    Gru,
    RnnTanh,
    RnnRelu,
}

impl RnnMode {
    /// Gate blocks per step: 4 (lstm), 3 (gru), 1.
    pub fn gates(self) -> usize {
        match self {
            RnnMode::Lstm => 4,
            RnnMode::Gru => 3,
            RnnMode::RnnTanh | RnnMode::RnnRelu => 1,
        }
    }
}

/// The weights of one layer in one direction, as MXNet lays them out (G gates of H rows
/// each, in the mode's gate order).
#[derive(Debug, Clone, PartialEq)]
pub struct RnnWeights {
    /// (G·H, input size of the layer)
    pub i2h_weight: Array,
    /// (G·H, H)
    pub h2h_weight: Array,
    /// (G·H)
    pub i2h_bias: Array,
    /// (G·H)
    pub h2h_bias: Array,
}

/// The RNN operator's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RnnConfig {
    pub mode: RnnMode,
    /// `state_size`, H.
    pub hidden: usize,
    pub layers: usize,
    pub bidirectional: bool,
}

impl RnnConfig {
    fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
}

/// What the RNN operator computes.
#[derive(Debug, Clone, PartialEq)]
pub struct RnnOutput {
    /// (T, N, D·H): the last layer's output at every step.
    pub output: Array,
    /// (L·D, N, H): the final hidden state of layer l, direction d at row l·D + d (MXNet's
    /// second output with `state_outputs`).
    pub state: Array,
    /// (L·D, N, H): the final cell state, LSTM only (the third output).
    pub state_cell: Option<Array>,
}

/// The length of MXNet's packed parameter vector: Σ_l D·G·H·(in_l + H + 2) with in_0 =
/// `input_size` and in_l = D·H above.
pub fn rnn_param_count(cfg: &RnnConfig, input_size: usize) -> Option<usize> {
    let (d, g, h) = (cfg.directions(), cfg.mode.gates(), cfg.hidden);
    let mut total = 0usize;
    for l in 0..cfg.layers {
        let input = if l == 0 {
            input_size
        } else {
            d.checked_mul(h)?
        };
        let per = input.checked_add(h)?.checked_add(2)?;
        total = total.checked_add(d.checked_mul(g)?.checked_mul(h)?.checked_mul(per)?)?;
    }
    Some(total)
}

/// Slices MXNet's packed parameter vector into per layer, per direction weights (index
/// l·D + d). The vector holds **all weights first, then all biases**: for each layer,
/// for each direction, W_i2h (G·H × in_l, row-major) then W_h2h (G·H × H); then in the
/// same order b_i2h (G·H) and b_h2h (G·H).
pub fn unpack_rnn_params(
    params: &Array,
    cfg: &RnnConfig,
    input_size: usize,
) -> KResult<Vec<RnnWeights>> {
    if cfg.hidden == 0 || cfg.layers == 0 {
        return Err(KernelError::new(
            OP,
            "state_size and num_layers must be positive",
        ));
    }
    let want = rnn_param_count(cfg, input_size)
        .ok_or_else(|| KernelError::new(OP, "the parameter count overflows"))?;
    if params.rank() != 1 || params.len() != want {
        return Err(KernelError::new(
            OP,
            format!(
                "the packed parameters must have shape [{want}] for this configuration, got {:?}",
                params.shape
            ),
        ));
    }
    let (d, gh, h) = (cfg.directions(), cfg.mode.gates() * cfg.hidden, cfg.hidden);
    let mut at = 0usize;
    let mut take = |shape: Vec<usize>| -> KResult<Array> {
        let n: usize = shape.iter().product();
        let a = Array::new(shape, params.data[at..at + n].to_vec())?;
        at += n;
        Ok(a)
    };
    let mut weights = Vec::with_capacity(cfg.layers * d);
    for l in 0..cfg.layers {
        let input = if l == 0 { input_size } else { d * h };
        for _ in 0..d {
            let i2h = take(vec![gh, input])?;
            let h2h = take(vec![gh, h])?;
            weights.push((i2h, h2h));
        }
    }
    let mut out = Vec::with_capacity(weights.len());
    for (i2h_weight, h2h_weight) in weights {
        out.push(RnnWeights {
            i2h_weight,
            h2h_weight,
            i2h_bias: take(vec![gh])?,
            h2h_bias: take(vec![gh])?,
        });
    }
    Ok(out)
}

/// `W·v + b` for W (rows, v.len()).
fn affine(w: &Array, b: &Array, v: &[f64]) -> Vec<f64> {
    let cols = v.len();
    (0..w.shape[0])
        .map(|r| {
            let row = &w.data[r * cols..(r + 1) * cols];
            b.data[r] + row.iter().zip(v).map(|(a, x)| a * x).sum::<f64>()
        })
        .collect()
}

/// One step for one batch item: the new (h, c).
fn step(mode: RnnMode, w: &RnnWeights, x: &[f64], h: &[f64], c: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let hs = h.len();
    let gi = affine(&w.i2h_weight, &w.i2h_bias, x);
    let gh = affine(&w.h2h_weight, &w.h2h_bias, h);
    match mode {
        RnnMode::RnnTanh => ((0..hs).map(|j| (gi[j] + gh[j]).tanh()).collect(), vec![]),
        RnnMode::RnnRelu => ((0..hs).map(|j| (gi[j] + gh[j]).max(0.0)).collect(), vec![]),
        RnnMode::Lstm => {
            let mut h2 = vec![0.0; hs];
            let mut c2 = vec![0.0; hs];
            for j in 0..hs {
                let i = sigmoid(gi[j] + gh[j]);
                let f = sigmoid(gi[hs + j] + gh[hs + j]);
                let g = (gi[2 * hs + j] + gh[2 * hs + j]).tanh();
                let o = sigmoid(gi[3 * hs + j] + gh[3 * hs + j]);
                c2[j] = f * c[j] + i * g;
                h2[j] = o * c2[j].tanh();
            }
            (h2, c2)
        }
        RnnMode::Gru => {
            let mut h2 = vec![0.0; hs];
            for j in 0..hs {
                let r = sigmoid(gi[j] + gh[j]);
                let z = sigmoid(gi[hs + j] + gh[hs + j]);
                let n = (gi[2 * hs + j] + r * gh[2 * hs + j]).tanh();
                h2[j] = (1.0 - z) * n + z * h[j];
            }
            (h2, vec![])
        }
    }
}

/// MXNet `RNN` from per layer, per direction weights (index l·D + d, see
/// [`unpack_rnn_params`]). `data` is (T, N, I); `state` and (LSTM only) `state_cell`
/// are (L·D, N, H).
pub fn rnn(
    data: &Array,
    weights: &[RnnWeights],
    state: &Array,
    state_cell: Option<&Array>,
    mode: RnnMode,
    bidirectional: bool,
) -> KResult<RnnOutput> {
    data.expect_rank(OP, "data", 3)?;
    let (t_len, n, input_size) = (data.shape[0], data.shape[1], data.shape[2]);
    let d = if bidirectional { 2 } else { 1 };
    if weights.is_empty() || !weights.len().is_multiple_of(d) {
        return Err(KernelError::new(
            OP,
            format!(
                "{} weight sets do not make whole layers of {d} directions",
                weights.len()
            ),
        ));
    }
    let layers = weights.len() / d;
    let gh = weights[0].h2h_weight.shape.first().copied().unwrap_or(0);
    let g = mode.gates();
    if gh == 0 || !gh.is_multiple_of(g) {
        return Err(KernelError::new(
            OP,
            format!("h2h weight has {gh} rows, not a positive multiple of {g} gates"),
        ));
    }
    let h = gh / g;
    for (k, w) in weights.iter().enumerate() {
        let input = if k < d { input_size } else { d * h };
        w.i2h_weight
            .expect_shape(OP, &format!("i2h weight {k}"), &[gh, input])?;
        w.h2h_weight
            .expect_shape(OP, &format!("h2h weight {k}"), &[gh, h])?;
        w.i2h_bias
            .expect_shape(OP, &format!("i2h bias {k}"), &[gh])?;
        w.h2h_bias
            .expect_shape(OP, &format!("h2h bias {k}"), &[gh])?;
    }
    let state_shape = [layers * d, n, h];
    state.expect_shape(OP, "state", &state_shape)?;
    match (mode, state_cell) {
        (RnnMode::Lstm, Some(c)) => c.expect_shape(OP, "state_cell", &state_shape)?,
        (RnnMode::Lstm, None) => return Err(KernelError::new(OP, "lstm needs state_cell")),
        (_, Some(_)) => {
            return Err(KernelError::new(OP, "only lstm takes a state_cell"));
        }
        (_, None) => {}
    }
    let lstm = mode == RnnMode::Lstm;
    // The layer input per step and batch item.
    let mut seq: Vec<Vec<Vec<f64>>> = (0..t_len)
        .map(|t| {
            (0..n)
                .map(|b| {
                    let at = (t * n + b) * input_size;
                    data.data[at..at + input_size].to_vec()
                })
                .collect()
        })
        .collect();
    let mut hy = Array::zeros(state_shape.to_vec())?;
    let mut cy = Array::zeros(state_shape.to_vec())?;
    for l in 0..layers {
        let mut next: Vec<Vec<Vec<f64>>> = vec![vec![Vec::with_capacity(d * h); n]; t_len];
        for dir in 0..d {
            let row = l * d + dir;
            let w = &weights[row];
            for b in 0..n {
                let at = (row * n + b) * h;
                let mut hcur = state.data[at..at + h].to_vec();
                let mut ccur = match state_cell {
                    Some(c) if lstm => c.data[at..at + h].to_vec(),
                    _ => vec![0.0; h],
                };
                let order: Vec<usize> = if dir == 0 {
                    (0..t_len).collect()
                } else {
                    (0..t_len).rev().collect()
                };
                for t in order {
                    let (h2, c2) = step(mode, w, &seq[t][b], &hcur, &ccur);
                    hcur = h2;
                    if lstm {
                        ccur = c2;
                    }
                    next[t][b].extend_from_slice(&hcur);
                }
                hy.data[at..at + h].copy_from_slice(&hcur);
                cy.data[at..at + h].copy_from_slice(&ccur);
            }
        }
        seq = next;
    }
    let mut out = Vec::with_capacity(t_len * n * d * h);
    for step_rows in &seq {
        for item in step_rows {
            out.extend_from_slice(item);
        }
    }
    Ok(RnnOutput {
        output: Array::new(vec![t_len, n, d * h], out)?,
        state: hy,
        state_cell: if lstm { Some(cy) } else { None },
    })
}

/// MXNet `RNN` with its packed parameter vector (the operator's `parameters` input).
pub fn rnn_packed(
    data: &Array,
    params: &Array,
    state: &Array,
    state_cell: Option<&Array>,
    cfg: &RnnConfig,
) -> KResult<RnnOutput> {
    data.expect_rank(OP, "data", 3)?;
    let weights = unpack_rnn_params(params, cfg, data.shape[2])?;
    rnn(
        data,
        &weights,
        state,
        state_cell,
        cfg.mode,
        cfg.bidirectional,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::{assert_close, pseudo_random};

    fn reversed_in_time(a: &Array) -> Array {
        let (t, rest) = (a.shape[0], a.len() / a.shape[0].max(1));
        let mut data = Vec::with_capacity(a.len());
        for s in (0..t).rev() {
            data.extend_from_slice(&a.data[s * rest..(s + 1) * rest]);
        }
        Array::new(a.shape.clone(), data).unwrap()
    }

    /// Columns `from..to` of the last axis.
    fn last_axis(a: &Array, from: usize, to: usize) -> Array {
        let w = *a.shape.last().unwrap();
        let rows = a.len() / w;
        let mut data = Vec::new();
        for r in 0..rows {
            data.extend_from_slice(&a.data[r * w + from..r * w + to]);
        }
        let mut shape = a.shape.clone();
        *shape.last_mut().unwrap() = to - from;
        Array::new(shape, data).unwrap()
    }

    fn rows(a: &Array, from: usize, to: usize) -> Array {
        let inner: usize = a.shape[1..].iter().product();
        let mut shape = a.shape.clone();
        shape[0] = to - from;
        Array::new(shape, a.data[from * inner..to * inner].to_vec()).unwrap()
    }

    #[test]
    fn param_count_matches_mxnets_packing() {
        let cfg = RnnConfig {
            mode: RnnMode::Lstm,
            hidden: 24,
            layers: 2,
            bidirectional: true,
        };
        assert_eq!(
            rnn_param_count(&cfg, 16),
            Some(2 * 4 * 24 * 42 + 2 * 4 * 24 * 74)
        );
        let one = RnnConfig {
            mode: RnnMode::Lstm,
            hidden: 3,
            layers: 1,
            bidirectional: false,
        };
        // MXNet's infer_shape: (108,) for I = 4, H = 3.
        assert_eq!(rnn_param_count(&one, 4), Some(108));
    }

    #[test]
    fn hand_checked_tanh_rnn() {
        // H = 1, I = 1: h1 = tanh(2·1 + 0.5 + 3·0 + 0) , h2 = tanh(2·(−1) + 0.5 + 3·h1)
        let w = RnnWeights {
            i2h_weight: Array::new(vec![1, 1], vec![2.0]).unwrap(),
            h2h_weight: Array::new(vec![1, 1], vec![3.0]).unwrap(),
            i2h_bias: Array::vector(&[0.5]),
            h2h_bias: Array::vector(&[0.0]),
        };
        let x = Array::new(vec![2, 1, 1], vec![1.0, -1.0]).unwrap();
        let s = Array::zeros(vec![1, 1, 1]).unwrap();
        let out = rnn(&x, &[w], &s, None, RnnMode::RnnTanh, false).unwrap();
        let h1 = 2.5f64.tanh();
        let h2 = (-1.5 + 3.0 * h1).tanh();
        assert_eq!(out.output.data, vec![h1, h2]);
        assert_eq!(out.state.data, vec![h2]);
        assert!(out.state_cell.is_none());
    }

    #[test]
    fn gru_reset_gate_multiplies_the_hidden_bias_too() {
        // H = 1, zero weights: r = σ(b_ir + b_hr), z = σ(b_iz + b_hz), n = tanh(b_in + r·b_hn)
        let b_i = [0.3, -0.2, 0.1];
        let b_h = [0.4, 0.6, 0.9];
        let w = RnnWeights {
            i2h_weight: Array::zeros(vec![3, 1]).unwrap(),
            h2h_weight: Array::zeros(vec![3, 1]).unwrap(),
            i2h_bias: Array::vector(&b_i),
            h2h_bias: Array::vector(&b_h),
        };
        let x = Array::new(vec![1, 1, 1], vec![5.0]).unwrap();
        let h0 = Array::new(vec![1, 1, 1], vec![0.5]).unwrap();
        let out = rnn(&x, &[w], &h0, None, RnnMode::Gru, false).unwrap();
        let r = sigmoid(0.7);
        let z = sigmoid(0.4);
        let n = (0.1 + r * 0.9f64).tanh();
        assert!((out.state.data[0] - ((1.0 - z) * n + z * 0.5)).abs() < 1e-15);
    }

    #[test]
    fn reverse_direction_is_forward_on_the_reversed_sequence() {
        for mode in [
            RnnMode::Lstm,
            RnnMode::Gru,
            RnnMode::RnnTanh,
            RnnMode::RnnRelu,
        ] {
            let cfg = RnnConfig {
                mode,
                hidden: 3,
                layers: 1,
                bidirectional: true,
            };
            let (t, n, i) = (5, 2, 4);
            let params = pseudo_random(vec![rnn_param_count(&cfg, i).unwrap()], 40);
            let x = pseudo_random(vec![t, n, i], 41);
            let s = pseudo_random(vec![2, n, 3], 42);
            let c = pseudo_random(vec![2, n, 3], 43);
            let cell = (mode == RnnMode::Lstm).then_some(&c);
            let bi = rnn_packed(&x, &params, &s, cell, &cfg).unwrap();
            let w = unpack_rnn_params(&params, &cfg, i).unwrap();
            let c1 = rows(&c, 1, 2);
            let back = rnn(
                &reversed_in_time(&x),
                &w[1..2],
                &rows(&s, 1, 2),
                (mode == RnnMode::Lstm).then_some(&c1),
                mode,
                false,
            )
            .unwrap();
            assert_close(
                &last_axis(&bi.output, 3, 6),
                &reversed_in_time(&back.output),
                1e-14,
            );
            assert_close(&rows(&bi.state, 1, 2), &back.state, 1e-14);
            let c0 = rows(&c, 0, 1);
            let fwd = rnn(
                &x,
                &w[0..1],
                &rows(&s, 0, 1),
                (mode == RnnMode::Lstm).then_some(&c0),
                mode,
                false,
            )
            .unwrap();
            assert_close(&last_axis(&bi.output, 0, 3), &fwd.output, 1e-14);
        }
    }

    #[test]
    fn second_layer_reads_the_first_layers_output() {
        let cfg = RnnConfig {
            mode: RnnMode::Gru,
            hidden: 2,
            layers: 2,
            bidirectional: true,
        };
        let params = pseudo_random(vec![rnn_param_count(&cfg, 3).unwrap()], 50);
        let x = pseudo_random(vec![4, 2, 3], 51);
        let s = pseudo_random(vec![4, 2, 2], 52);
        let two = rnn_packed(&x, &params, &s, None, &cfg).unwrap();
        let w = unpack_rnn_params(&params, &cfg, 3).unwrap();
        let first = rnn(&x, &w[0..2], &rows(&s, 0, 2), None, RnnMode::Gru, true).unwrap();
        let second = rnn(
            &first.output,
            &w[2..4],
            &rows(&s, 2, 4),
            None,
            RnnMode::Gru,
            true,
        )
        .unwrap();
        assert_close(&two.output, &second.output, 1e-14);
        assert_close(&rows(&two.state, 0, 2), &first.state, 1e-14);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let cfg = RnnConfig {
            mode: RnnMode::Lstm,
            hidden: 3,
            layers: 1,
            bidirectional: false,
        };
        let x = Array::zeros(vec![2, 1, 4]).unwrap();
        let s = Array::zeros(vec![1, 1, 3]).unwrap();
        let p = Array::zeros(vec![108]).unwrap();
        assert!(rnn_packed(&x, &p, &s, Some(&s), &cfg).is_ok());
        assert!(rnn_packed(&x, &p, &s, None, &cfg).is_err());
        assert!(rnn_packed(&x, &Array::zeros(vec![107]).unwrap(), &s, Some(&s), &cfg).is_err());
        let bad = Array::zeros(vec![2, 1, 3]).unwrap();
        assert!(rnn_packed(&x, &p, &bad, Some(&s), &cfg).is_err());
        let gru = RnnConfig {
            mode: RnnMode::Gru,
            ..cfg
        };
        let pg = Array::zeros(vec![rnn_param_count(&gru, 4).unwrap()]).unwrap();
        assert!(rnn_packed(&x, &pg, &s, Some(&s), &gru).is_err());
    }
}
