//! Dense layers: `MatMul` against the transposed weight (transposed here when it is a
//! constant), plus the bias.

use ward_graph::ops::linear::Dense;

use super::builder::{attr_int, attr_ints, At, Builder, R};

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
