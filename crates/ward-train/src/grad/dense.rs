//! FullyConnected: `y = x·Wᵀ + b`, so `dx = dy·W`, `dW = dyᵀ·x`, `db = Σ_rows dy`.
//! batch_dot: `C = op(A)·op(B)`, so `d op(A) = dC·op(B)ᵀ` and `d op(B) = op(A)ᵀ·dC`, each
//! transposed back where the forward pass transposed. The interleaved attention products:
//! the interpreter's rule, which visits exactly the products the forward pass formed.

use ward_graph::interp::dense::{batch_dot as bdot, interleaved_matmul_grad};
use ward_graph::interp::Array;
use ward_graph::ops::linear::{AttentionKind, BatchDot, Dense, InterleavedMatmul};

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

pub fn batch_dot(ctx: &Ctx<'_>, op: &BatchDot) -> Rule {
    let (a, b, g) = (ctx.input(0)?, ctx.input(1)?, ctx.grad(0)?);
    let (ta, tb) = (op.transpose_a, op.transpose_b);
    let da = if ta {
        bdot(b, &g, tb, true)
    } else {
        bdot(&g, b, false, !tb)
    };
    let db = if tb {
        bdot(&g, a, true, ta)
    } else {
        bdot(a, &g, !ta, false)
    };
    Ok(vec![
        Some(da.map_err(|e| e.to_string())?),
        Some(db.map_err(|e| e.to_string())?),
    ])
}

pub fn interleaved_matmul(ctx: &Ctx<'_>, op: &InterleavedMatmul) -> Rule {
    let x = ctx.input(0)?;
    let y = if op.kind == AttentionKind::SelfattQk {
        None
    } else {
        Some(ctx.input(1)?)
    };
    let (dx, dy) = interleaved_matmul_grad(op.kind, op.heads, x, y, &ctx.grad(0)?)
        .map_err(|e| e.to_string())?;
    let mut grads = vec![Some(dx)];
    if y.is_some() {
        grads.push(dy);
    }
    Ok(grads)
}
