//! Pooling: each window's gradient goes back to the input elements it read.

use ward_graph::interp::eval::pool_params;
use ward_graph::interp::pool::{pool_windows, MAX_POOL_EMPTY};
use ward_graph::interp::Array;
use ward_graph::ops::pool::{Pool, PoolKind};

use super::{Ctx, Rule};

/// As MXNet 1.9.1's backward computes it: max sends the gradient to the element the
/// forward pass took (the first greater than everything before it, from MXNet's lowest
/// float), or to the window's first element when none was taken (a window of NaN and −∞);
/// sum to every element; avg to every element divided, when `count_include_pad`, by the
/// window clipped at the input's end plus twice the padding (the forward pass clips at
/// the end plus the padding once, so for a `full` window running past a padded end the
/// two differ and the gradient is not the derivative), else by the input elements held.
pub fn pool(ctx: &Ctx<'_>, op: &Pool) -> Rule {
    let x = ctx.input(0)?;
    let g = ctx.grad(0)?;
    let (_, windows) = pool_windows(&x.shape, &pool_params(op)).map_err(|e| e.to_string())?;
    let mut dx = Array::zeros(x.shape.clone()).map_err(|e| e.to_string())?;
    let value = |o: usize| x.data.get(o).copied().unwrap_or(f64::NAN);
    for (w, &gv) in windows.iter().zip(&g.data) {
        let mut send = |o: usize, v: f64| {
            if let Some(d) = dx.data.get_mut(o) {
                *d += v;
            }
        };
        match op.kind {
            PoolKind::Max => {
                let Some(&first) = w.offsets.first() else {
                    continue;
                };
                let mut best = (first, MAX_POOL_EMPTY);
                for &o in &w.offsets {
                    let v = value(o);
                    if v > best.1 {
                        best = (o, v);
                    }
                }
                send(best.0, gv);
            }
            PoolKind::Sum => w.offsets.iter().for_each(|&o| send(o, gv)),
            PoolKind::Avg => {
                let divisor = if op.count_include_pad {
                    w.grad_size
                } else {
                    w.offsets.len()
                };
                let share = gv / divisor.max(1) as f64;
                w.offsets.iter().for_each(|&o| send(o, share));
            }
        }
    }
    Ok(vec![Some(dx)])
}
