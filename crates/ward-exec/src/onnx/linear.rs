//! Dense layers: on a matrix (the input flattened, or of rank 2) and a parameter weight,
//! `Gemm` reading the weight transposed where it lies (no copy of it is made here);
//! otherwise `MatMul` against the transposed weight (transposed here when it is a
//! constant); plus the bias. `batch_dot`: `MatMul` on the operands, each transposed first
//! if asked. The interleaved attention products: each head's part gathered out of the
//! interleaved projection, then `MatMul` (and the 1/√D scale of the `qk` products).

use ward_graph::ir::Source;
use ward_graph::ops::linear::{AttentionKind, BatchDot, Dense, InterleavedMatmul};

use super::builder::{attr_int, attr_ints, ints, At, Builder, R};

pub(super) fn dense(b: &mut Builder<'_>, at: &At<'_>, op: &Dense) -> R<()> {
    let weight = at.source(1)?;
    let ws = b.shape(weight)?;
    let mut x = at.input(0)?;
    if op.flatten && at.xs.len() != 2 {
        x = b.op(
            "Flatten",
            vec![x],
            vec![attr_int("axis", 1)],
            &at.hint("flat"),
        );
    }
    let two_d = at.xs.len() == 2 || op.flatten;
    if let (true, Source::Param(param)) = (two_d, weight) {
        if ws.len() != 2 {
            return Err(format!("weight {ws:?} must be a matrix"));
        }
        b.dense_weights.push(param);
        // The parameter as it is stored, (units, inputs), read transposed by `Gemm`: no
        // transposed copy is made here, and tract packs the constant once, in the order
        // its kernel reads.
        let ins = vec![x, at.input(1)?];
        let trans_b = vec![attr_int("transB", 1)];
        if op.bias {
            let product = b.op("Gemm", ins, trans_b, &at.hint("matmul"));
            b.push("Add", vec![product, at.input(2)?], vec![at.out()?], vec![]);
        } else {
            b.push("Gemm", ins, vec![at.out()?], trans_b);
        }
        return Ok(());
    }
    let wt = match b.param_values(weight) {
        Some(values) => {
            let &[rows, cols] = ws.as_slice() else {
                return Err(format!("weight {ws:?} must be a matrix"));
            };
            let mut t = vec![0f32; values.len()];
            for (r, row) in values.chunks_exact(cols.max(1)).enumerate() {
                for (c, v) in row.iter().enumerate() {
                    if let Some(slot) = t.get_mut(c * rows + r) {
                        *slot = *v;
                    }
                }
            }
            b.const_f32(&at.hint("weight_t"), &[cols, rows], &t)
        }
        None => b.op(
            "Transpose",
            vec![at.input(1)?],
            vec![attr_ints("perm", &[1, 0])],
            &at.hint("weight_t"),
        ),
    };
    if op.bias {
        let product = b.op("MatMul", vec![x, wt], vec![], &at.hint("matmul"));
        b.push("Add", vec![product, at.input(2)?], vec![at.out()?], vec![]);
    } else {
        b.push("MatMul", vec![x, wt], vec![at.out()?], vec![]);
    }
    Ok(())
}

pub(super) fn batch_dot(b: &mut Builder<'_>, at: &At<'_>, op: &BatchDot) -> R<()> {
    let rank = at.xs.len();
    let mut perm: Vec<usize> = (0..rank).collect();
    if rank >= 2 {
        perm.swap(rank - 2, rank - 1);
    }
    let mut operand = |i: usize, transpose: bool, hint: &str| -> R<String> {
        let x = at.input(i)?;
        Ok(if transpose {
            b.op(
                "Transpose",
                vec![x],
                vec![attr_ints("perm", &ints(&perm))],
                &at.hint(hint),
            )
        } else {
            x
        })
    };
    let lhs = operand(0, op.transpose_a, "lhs_t")?;
    let rhs = operand(1, op.transpose_b, "rhs_t")?;
    b.push("MatMul", vec![lhs, rhs], vec![at.out()?], vec![]);
    Ok(())
}

/// Part `t` of every head of an interleaved projection of shape (steps, batch,
/// heads·parts·D), as (steps, batch·heads, D), transposed by `perm`.
#[allow(clippy::too_many_arguments)]
fn head_part(
    b: &mut Builder<'_>,
    at: &At<'_>,
    x: String,
    shape: &[usize],
    op: &InterleavedMatmul,
    parts: usize,
    t: i64,
    perm: &[i64],
) -> R<String> {
    let &[steps, batch, width] = shape else {
        return Err(format!("{shape:?} must have 3 dims"));
    };
    let d = op.head_dim(width, parts)?;
    let heads = batch * op.heads;
    let grouped = b.reshape(
        x,
        &[steps, heads, parts, d],
        &at.hint(&format!("groups{t}")),
    );
    let index = b.scalar_i64(&at.hint(&format!("part{t}")), t);
    let part = b.op(
        "Gather",
        vec![grouped, index],
        vec![attr_int("axis", 2)],
        &at.hint(&format!("part{t}")),
    );
    Ok(b.op(
        "Transpose",
        vec![part],
        vec![attr_ints("perm", perm)],
        &at.hint(&format!("part{t}_t")),
    ))
}

pub(super) fn interleaved_matmul(
    b: &mut Builder<'_>,
    at: &At<'_>,
    op: &InterleavedMatmul,
) -> R<()> {
    let x = at.input(0)?;
    let xs = at.xs.clone();
    match op.kind {
        AttentionKind::SelfattQk | AttentionKind::EncdecQk => {
            let (q_parts, keys, k_shape, k_parts, k_part) = if op.kind == AttentionKind::SelfattQk {
                (3, x.clone(), xs.clone(), 3, 1)
            } else {
                (1, at.input(1)?, b.shape(at.source(1)?)?, 2, 0)
            };
            let q = head_part(b, at, x, &xs, op, q_parts, 0, &[1, 0, 2])?;
            let k = head_part(b, at, keys, &k_shape, op, k_parts, k_part, &[1, 2, 0])?;
            let width = xs.get(2).copied().ok_or("queries must have 3 dims")?;
            let scale = InterleavedMatmul::scale(op.head_dim(width, q_parts)?);
            let product = b.op("MatMul", vec![q, k], vec![], &at.hint("qk"));
            let scale = b.scalar_f32(&at.hint("scale"), scale as f32);
            b.push("Mul", vec![product, scale], vec![at.out()?], vec![]);
        }
        AttentionKind::SelfattValatt | AttentionKind::EncdecValatt => {
            let (parts, t) = if op.kind == AttentionKind::SelfattValatt {
                (3, 2)
            } else {
                (2, 1)
            };
            let v = head_part(b, at, x, &xs, op, parts, t, &[1, 0, 2])?;
            let product = b.op("MatMul", vec![at.input(1)?, v], vec![], &at.hint("av"));
            let steps_first = b.op(
                "Transpose",
                vec![product],
                vec![attr_ints("perm", &[1, 0, 2])],
                &at.hint("av_t"),
            );
            let shape = b.const_i64(&at.hint("shape"), &ints(&at.out_shape));
            b.push("Reshape", vec![steps_first, shape], vec![at.out()?], vec![]);
        }
    }
    Ok(())
}
