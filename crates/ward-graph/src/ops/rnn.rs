//! The fused recurrent layer stack (MXNet's `RNN`): LSTM, GRU and plain RNNs with tanh or
//! ReLU, any number of layers, one or two directions, in TNC layout.

use serde::{Deserialize, Serialize};

use super::{expect_rank, expect_shape, input, positive, OpDef, Shape, R};
use crate::limits::MAX_RNN_LAYERS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RnnMode {
    Lstm,
    Gru,
    RnnTanh,
    RnnRelu,
}

impl RnnMode {
    /// Gates per cell: the rows of each weight matrix are `gates · hidden`.
    pub fn gates(self) -> usize {
        match self {
            RnnMode::Lstm => 4,
            RnnMode::Gru => 3,
            RnnMode::RnnTanh | RnnMode::RnnRelu => 1,
        }
    }
}

/// Inputs: data (T, N, I), initial state (L·D, N, H), for LSTM the initial cell
/// (L·D, N, H), then for each layer l and direction d (forward, then backward) four
/// parameters: i2h weight (G·H, I_l), h2h weight (G·H, H), i2h bias (G·H), h2h bias (G·H),
/// where I_0 = I and I_l = D·H after. Gates are stacked in MXNet's order: LSTM input,
/// forget, cell, output; GRU reset, update, new (whose h2h part the reset gate scales).
/// Outputs: out (T, N, D·H), then, with `state_outputs`, the final state and (LSTM) cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rnn {
    pub mode: RnnMode,
    pub hidden: usize,
    pub layers: usize,
    pub bidirectional: bool,
    pub state_outputs: bool,
}

/// The four parameters of one layer and direction.
pub const PARAMS_PER_CELL: usize = 4;

impl Rnn {
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Inputs before the parameters: data, state and (LSTM) cell.
    pub fn state_inputs(&self) -> usize {
        if self.mode == RnnMode::Lstm {
            3
        } else {
            2
        }
    }

    /// The shapes of the parameters of layer `layer` for data of width `input`: i2h
    /// weight, h2h weight, i2h bias, h2h bias.
    pub fn cell_param_shapes(&self, layer: usize, input: usize) -> R<[Shape; 4]> {
        let rows = self
            .mode
            .gates()
            .checked_mul(self.hidden)
            .ok_or("gate rows overflow")?;
        let width = if layer == 0 {
            input
        } else {
            self.directions()
                .checked_mul(self.hidden)
                .ok_or("layer width overflows")?
        };
        Ok([
            vec![rows, width],
            vec![rows, self.hidden],
            vec![rows],
            vec![rows],
        ])
    }

    fn param_count(&self) -> usize {
        self.layers
            .saturating_mul(self.directions())
            .saturating_mul(PARAMS_PER_CELL)
    }
}

impl OpDef for Rnn {
    fn arity(&self) -> (usize, usize) {
        let n = self.state_inputs().saturating_add(self.param_count());
        (n, n)
    }

    fn num_outputs(&self) -> usize {
        match (self.state_outputs, self.mode) {
            (false, _) => 1,
            (true, RnnMode::Lstm) => 3,
            (true, _) => 2,
        }
    }

    fn validate(&self) -> R<()> {
        if self.layers > MAX_RNN_LAYERS {
            return Err(format!(
                "{} layers exceed the limit of {MAX_RNN_LAYERS}",
                self.layers
            ));
        }
        positive("hidden and layers", &[self.hidden, self.layers])
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        expect_rank("data", x, 3)?;
        let [t, n, width] = [x.first(), x.get(1), x.get(2)].map(|d| d.copied().unwrap_or(0));
        let dirs = self.directions();
        let state = vec![
            self.layers.checked_mul(dirs).ok_or("state rows overflow")?,
            n,
            self.hidden,
        ];
        expect_shape("initial state", input(ins, 1, "initial state")?, &state)?;
        if self.mode == RnnMode::Lstm {
            expect_shape("initial cell", input(ins, 2, "initial cell")?, &state)?;
        }
        let mut at = self.state_inputs();
        for layer in 0..self.layers {
            let shapes = self.cell_param_shapes(layer, width)?;
            for d in 0..dirs {
                for (what, expected) in ["i2h weight", "h2h weight", "i2h bias", "h2h bias"]
                    .iter()
                    .zip(&shapes)
                {
                    let name = format!("layer {layer} direction {d} {what}");
                    expect_shape(&name, input(ins, at, &name)?, expected)?;
                    at += 1;
                }
            }
        }
        let mut outs = vec![vec![
            t,
            n,
            dirs.checked_mul(self.hidden)
                .ok_or("output width overflows")?,
        ]];
        if self.state_outputs {
            outs.push(state.clone());
            if self.mode == RnnMode::Lstm {
                outs.push(state);
            }
        }
        Ok(outs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn a_bidirectional_two_layer_lstm_takes_sixteen_parameters() {
        let rnn = Rnn {
            mode: RnnMode::Lstm,
            hidden: 3,
            layers: 2,
            bidirectional: true,
            state_outputs: true,
        };
        assert_eq!(rnn.arity(), (3 + 16, 3 + 16));
        let mut shapes: Vec<Vec<usize>> = vec![vec![5, 2, 4], vec![4, 2, 3], vec![4, 2, 3]];
        for layer in 0..2 {
            let cell = rnn.cell_param_shapes(layer, 4).unwrap();
            for _ in 0..2 {
                shapes.extend(cell.iter().cloned());
            }
        }
        assert_eq!(shapes[3], vec![12, 4]);
        assert_eq!(shapes[11], vec![12, 6], "layer 1 reads both directions");
        let ins: Vec<Option<&[usize]>> = shapes.iter().map(|s| Some(s.as_slice())).collect();
        let outs = rnn.infer(&ins).unwrap();
        assert_eq!(outs, vec![vec![5, 2, 6], vec![4, 2, 3], vec![4, 2, 3]]);
        shapes[4] = vec![12, 4];
        let ins: Vec<Option<&[usize]>> = shapes.iter().map(|s| Some(s.as_slice())).collect();
        let err = rnn.infer(&ins).unwrap_err();
        assert!(err.contains("layer 0 direction 0 h2h weight"), "{err}");
    }
}
