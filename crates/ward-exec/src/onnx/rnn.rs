//! The fused RNN: one ONNX `LSTM`/`GRU`/`RNN` per layer (both directions in one), each
//! parameter's gates reordered in-graph from MXNet's order to ONNX's (constant-folded by
//! the backend). ReLU RNNs are unrolled over the (known) sequence: tract's ONNX `RNN`
//! always applies tanh, whatever `activations` says.

use ward_graph::ops::rnn::{Rnn, RnnMode, PARAMS_PER_CELL};

use super::builder::{attr_int, attr_ints, attr_string, attr_strings, At, Builder, R};

/// One layer and direction's parameters, in ONNX layout.
struct Cell {
    w: String,
    r: String,
    bias_w: String,
    bias_r: String,
}

pub(super) fn rnn(b: &mut Builder<'_>, at: &At<'_>, op: &Rnn) -> R<()> {
    let (hidden, dirs) = (op.hidden, op.directions());
    let g = op.mode.gates();
    // ONNX gate order, as indices into MXNet's: LSTM iofc from ifgo, GRU zrh from rzn.
    let perm: Vec<i64> = match op.mode {
        RnnMode::Lstm => vec![0, 3, 1, 2],
        RnnMode::Gru => vec![1, 0, 2],
        RnnMode::RnnTanh | RnnMode::RnnRelu => vec![0],
    };
    let perm = b.const_i64(&at.hint("gate_perm"), &perm);
    let reorder = |b: &mut Builder<'_>, source: usize, hint: &str| -> R<String> {
        let x = at.input(source)?;
        let dims = b.shape(at.source(source)?)?;
        // (G·H, rest) → (G, H, rest) → gates reordered → (G·H, rest)
        let mut grouped = vec![g, hidden];
        grouped.extend(dims.iter().skip(1));
        let grouped = b.reshape(x, &grouped, &format!("{hint}/gates"));
        let reordered = b.op(
            "Gather",
            vec![grouped, perm.clone()],
            vec![attr_int("axis", 0)],
            &format!("{hint}/reordered"),
        );
        Ok(b.reshape(reordered, &dims, &format!("{hint}/onnx")))
    };
    let first = op.state_inputs();
    let mut cells: Vec<Vec<Cell>> = Vec::with_capacity(op.layers);
    for l in 0..op.layers {
        let mut per_dir = Vec::with_capacity(dirs);
        for d in 0..dirs {
            let at_param = first + (l * dirs + d) * PARAMS_PER_CELL;
            let hint = at.hint(&format!("l{l}d{d}"));
            per_dir.push(Cell {
                w: reorder(b, at_param, &format!("{hint}/W"))?,
                r: reorder(b, at_param + 1, &format!("{hint}/R"))?,
                bias_w: reorder(b, at_param + 2, &format!("{hint}/Wb"))?,
                bias_r: reorder(b, at_param + 3, &format!("{hint}/Rb"))?,
            });
        }
        cells.push(per_dir);
    }
    if op.mode == RnnMode::RnnRelu {
        return unrolled_relu(b, at, op, &cells);
    }
    let zero_axis = b.const_i64(&at.hint("axis0"), &[0]);
    let stack = |b: &mut Builder<'_>, parts: Vec<String>, hint: &str| -> String {
        let items: Vec<String> = parts
            .into_iter()
            .map(|p| {
                b.op(
                    "Unsqueeze",
                    vec![p, zero_axis.clone()],
                    vec![],
                    &format!("{hint}/item"),
                )
            })
            .collect();
        b.op("Concat", items, vec![attr_int("axis", 0)], hint)
    };
    let state_rows = |b: &mut Builder<'_>, state: String, l: usize, hint: &str| -> String {
        let starts = b.const_i64(&format!("{hint}/start"), &[(l * dirs) as i64]);
        let ends = b.const_i64(&format!("{hint}/end"), &[((l + 1) * dirs) as i64]);
        b.op("Slice", vec![state, starts, ends], vec![], hint)
    };
    let (name, mut attrs) = match op.mode {
        RnnMode::Lstm => ("LSTM", vec![]),
        RnnMode::Gru => ("GRU", vec![attr_int("linear_before_reset", 1)]),
        RnnMode::RnnTanh | RnnMode::RnnRelu => (
            "RNN",
            vec![attr_strings("activations", &vec!["Tanh"; dirs])],
        ),
    };
    attrs.push(attr_int("hidden_size", hidden as i64));
    attrs.push(attr_string(
        "direction",
        if op.bidirectional {
            "bidirectional"
        } else {
            "forward"
        },
    ));
    let (t, n) = (at.x_dim(0)?, at.x_dim(1)?);
    let mut x = at.input(0)?;
    let mut final_h = Vec::new();
    let mut final_c = Vec::new();
    for (l, per_dir) in cells.into_iter().enumerate() {
        let hint = at.hint(&format!("l{l}"));
        let (mut ws, mut rs, mut bs) = (Vec::new(), Vec::new(), Vec::new());
        for (d, cell) in per_dir.into_iter().enumerate() {
            ws.push(cell.w);
            rs.push(cell.r);
            bs.push(b.op(
                "Concat",
                vec![cell.bias_w, cell.bias_r],
                vec![attr_int("axis", 0)],
                &format!("{hint}d{d}/B"),
            ));
        }
        let w = stack(b, ws, &format!("{hint}/W"));
        let r = stack(b, rs, &format!("{hint}/R"));
        let bias = stack(b, bs, &format!("{hint}/B"));
        let h0 = state_rows(b, at.input(1)?, l, &format!("{hint}/h0"));
        let mut inputs = vec![x, w, r, bias, String::new(), h0];
        if op.mode == RnnMode::Lstm {
            inputs.push(state_rows(b, at.input(2)?, l, &format!("{hint}/c0")));
        }
        let y = b.fresh(&format!("{hint}/Y"));
        let yh = b.fresh(&format!("{hint}/Y_h"));
        let mut outputs = vec![y.clone(), yh.clone()];
        if op.mode == RnnMode::Lstm {
            let yc = b.fresh(&format!("{hint}/Y_c"));
            outputs.push(yc.clone());
            final_c.push(yc);
        }
        final_h.push(yh);
        b.push(name, inputs, outputs, attrs.clone());
        // (T, D, N, H) → (T, N, D, H) → (T, N, D·H)
        let tr = b.op(
            "Transpose",
            vec![y],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
            &format!("{hint}/Y_tnd"),
        );
        x = if l + 1 == op.layers {
            let shape = b.const_i64(
                &format!("{hint}/out_shape"),
                &[t as i64, n as i64, (dirs * hidden) as i64],
            );
            let out = at.out()?;
            b.push("Reshape", vec![tr, shape], vec![out.clone()], vec![]);
            out
        } else {
            b.reshape(tr, &[t, n, dirs * hidden], &format!("{hint}/out"))
        };
    }
    if op.state_outputs {
        b.push(
            "Concat",
            final_h,
            vec![at.output(1)?],
            vec![attr_int("axis", 0)],
        );
        if op.mode == RnnMode::Lstm {
            b.push(
                "Concat",
                final_c,
                vec![at.output(2)?],
                vec![attr_int("axis", 0)],
            );
        }
    }
    Ok(())
}

/// A ReLU RNN unrolled over its sequence.
fn unrolled_relu(b: &mut Builder<'_>, at: &At<'_>, op: &Rnn, cells: &[Vec<Cell>]) -> R<()> {
    let (t, n) = (at.x_dim(0)?, at.x_dim(1)?);
    let (hidden, dirs) = (op.hidden, op.directions());
    let mut x = at.input(0)?;
    let mut finals = Vec::new();
    let axis0 = b.const_i64(&at.hint("axis0"), &[0]);
    for (l, per_dir) in cells.iter().enumerate() {
        let mut outs_per_dir = Vec::new();
        for (d, cell) in per_dir.iter().enumerate() {
            let hint = at.hint(&format!("l{l}d{d}"));
            let wt = b.op(
                "Transpose",
                vec![cell.w.clone()],
                vec![attr_ints("perm", &[1, 0])],
                &format!("{hint}/Wt"),
            );
            let rt = b.op(
                "Transpose",
                vec![cell.r.clone()],
                vec![attr_ints("perm", &[1, 0])],
                &format!("{hint}/Rt"),
            );
            let bias = b.op(
                "Add",
                vec![cell.bias_w.clone(), cell.bias_r.clone()],
                vec![],
                &format!("{hint}/b"),
            );
            let proj = b.op("MatMul", vec![x.clone(), wt], vec![], &format!("{hint}/xW"));
            let proj = b.op("Add", vec![proj, bias], vec![], &format!("{hint}/xWb"));
            let row = (l * dirs + d) as i64;
            let starts = b.const_i64(&format!("{hint}/h0/start"), &[row]);
            let ends = b.const_i64(&format!("{hint}/h0/end"), &[row + 1]);
            let h0 = b.op(
                "Slice",
                vec![at.input(1)?, starts, ends],
                vec![],
                &format!("{hint}/h0"),
            );
            let mut state = b.reshape(h0, &[n, hidden], &format!("{hint}/h0_2d"));
            let mut steps = vec![String::new(); t];
            let order: Vec<usize> = if d == 0 {
                (0..t).collect()
            } else {
                (0..t).rev().collect()
            };
            for step in order {
                let idx = b.scalar_i64(&format!("{hint}/t{step}"), step as i64);
                let xt = b.op(
                    "Gather",
                    vec![proj.clone(), idx],
                    vec![attr_int("axis", 0)],
                    &format!("{hint}/x{step}"),
                );
                let hr = b.op(
                    "MatMul",
                    vec![state, rt.clone()],
                    vec![],
                    &format!("{hint}/hR{step}"),
                );
                let pre = b.op("Add", vec![xt, hr], vec![], &format!("{hint}/pre{step}"));
                state = b.op("Relu", vec![pre], vec![], &format!("{hint}/h{step}"));
                let y = b.op(
                    "Unsqueeze",
                    vec![state.clone(), axis0.clone()],
                    vec![],
                    &format!("{hint}/y{step}"),
                );
                if let Some(slot) = steps.get_mut(step) {
                    *slot = y;
                }
            }
            finals.push(b.op(
                "Unsqueeze",
                vec![state, axis0.clone()],
                vec![],
                &format!("{hint}/h_final"),
            ));
            outs_per_dir.push(b.op(
                "Concat",
                steps,
                vec![attr_int("axis", 0)],
                &format!("{hint}/Y"),
            ));
        }
        let y = if l + 1 == cells.len() {
            at.out()?
        } else {
            b.fresh(&at.hint(&format!("l{l}/out")))
        };
        b.push(
            "Concat",
            outs_per_dir,
            vec![y.clone()],
            vec![attr_int("axis", 2)],
        );
        x = y;
    }
    if op.state_outputs {
        b.push(
            "Concat",
            finals,
            vec![at.output(1)?],
            vec![attr_int("axis", 0)],
        );
    }
    Ok(())
}
