//! FullyConnected: `y = x·Wᵀ + b`, so `dx = dy·W`, `dW = dyᵀ·x`, `db = Σ_rows dy`.

use ward_graph::interp::Array;
use ward_graph::ops::linear::Dense;

use super::{arrays, Ctx, Rule};

pub fn dense(ctx: &Ctx<'_>, op: &Dense) -> Rule {
    let x = ctx.input(0)?;
    let w = ctx.input(1)?;
    let dy = ctx.grad(0)?;
    let (&h, &k) = match w.shape.as_slice() {
        [h, k] => (h, k),
        other => return Err(format!("weight has shape {other:?}, expected 2 axes")),
    };
    // x as (rows, k), whether `flatten` folds every axis after the first or only the
    // last one is the product's.
    let rows = x.data.len().checked_div(k).unwrap_or(0);
    if rows * k != x.data.len() || dy.data.len() != rows * h {
        return Err(format!(
            "data {:?} and output gradient {:?} do not fit a weight of {h}x{k} (flatten = {})",
            x.shape, dy.shape, op.flatten
        ));
    }
    let mut dx = vec![0.0; rows * k];
    let mut dw = vec![0.0; h * k];
    let mut db = vec![0.0; h];
    for (r, (dy_row, x_row)) in dy.data.chunks(h).zip(x.data.chunks(k)).enumerate() {
        let dx_row = dx.get_mut(r * k..(r + 1) * k).ok_or("row out of range")?;
        for ((&g, w_row), (dw_row, b)) in dy_row
            .iter()
            .zip(w.data.chunks(k))
            .zip(dw.chunks_mut(k).zip(db.iter_mut()))
        {
            *b += g;
            for ((d, &wv), (dwv, &xv)) in dx_row
                .iter_mut()
                .zip(w_row)
                .zip(dw_row.iter_mut().zip(x_row))
            {
                *d += g * wv;
                *dwv += g * xv;
            }
        }
    }
    let dx = Array::new(x.shape.clone(), dx).map_err(|e| e.to_string())?;
    let dw = Array::new(w.shape.clone(), dw).map_err(|e| e.to_string())?;
    let mut grads = vec![Some(dx), Some(dw)];
    if op.bias {
        let b = ctx.input(2)?;
        grads.push(Some(arrays::reshaped(&Array::vector(&db), &b.shape)?));
    }
    Ok(grads)
}
