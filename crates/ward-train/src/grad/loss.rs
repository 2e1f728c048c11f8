//! The loss heads: each makes its own gradient from its output and label, scaled as
//! MXNet 1.9.1 scales it; the label gets none.

use ward_graph::interp::Array;
use ward_graph::ops::loss::{
    MakeLoss, Normalization, RegressionKind, RegressionOutput, SoftmaxOutput, SoftmaxOutputMode,
};

use super::{arrays, Ctx, Rule};

/// SoftmaxOutput, as MXNet 1.9.1's backward computes it: `p − target` per row of
/// classes (with `smooth_alpha` the target keeps `1 − α` for the label's class and
/// spreads `α` over the others; an ignored label, with `use_ignore`, zeroes its row),
/// times `grad_scale` over a normaliser. Labels are compared as integers (MXNet casts).
///
/// MXNet's two branches differ, and ward follows each:
/// - default and `preserve_shape`: rows are the data's first axis (all axes but the last
///   for `preserve_shape`); row `r` takes the label buffer's `r`-th value, whatever the
///   label's shape; the normaliser is 1 (`null`), the number of label values (`batch`),
///   or those not equal to `ignore_label` (`valid`), at least 1;
/// - `multi_output`: classes on axis 1, one label per (row, position); the normaliser is
///   the positions per row times 1 (`null`), times the batch size (`batch`), or the valid
///   labels alone (`valid`).
///
/// With `out_grad` MXNet 1.9.1 multiplies the result by the operator's own output `p`,
/// not by the head gradient given for it (its executor hands a loss head its output in
/// that place); ward does the same.
pub fn softmax_output(ctx: &Ctx<'_>, op: &SoftmaxOutput) -> Rule {
    let p = ctx.output(0)?;
    let label = ctx.input(1)?;
    let rank = p.shape.len();
    // (rows, classes, positions): the class axis and what comes before and after it.
    let (rows, classes, positions) = match op.mode {
        SoftmaxOutputMode::Flatten => {
            let n = p.shape.first().copied().unwrap_or(0);
            (n, p.data.len().checked_div(n).unwrap_or(0), 1)
        }
        SoftmaxOutputMode::Channel => arrays::around(&p.shape, 1)?,
        SoftmaxOutputMode::Last => arrays::around(&p.shape, rank.saturating_sub(1))?,
    };
    if label.data.len() < rows * positions {
        return Err(format!(
            "label has {} values, the data {} rows",
            label.data.len(),
            rows * positions
        ));
    }
    let as_class = |l: f64| l as i64;
    let ignore = as_class(op.ignore_label);
    let alpha = op.smooth_alpha;
    let other = if classes > 1 {
        alpha / (classes - 1) as f64
    } else {
        0.0
    };
    let mut dx = p.clone();
    for r in 0..rows {
        for i in 0..positions {
            let k = as_class(label.data.get(r * positions + i).copied().unwrap_or(0.0));
            for c in 0..classes {
                let Some(d) = dx.data.get_mut((r * classes + c) * positions + i) else {
                    continue;
                };
                if op.use_ignore && k == ignore {
                    *d = 0.0;
                } else {
                    *d -= if c as i64 == k { 1.0 - alpha } else { other };
                }
            }
        }
    }
    let valid = label
        .data
        .iter()
        .filter(|&&l| as_class(l) != ignore)
        .count() as f64;
    let normaliser = match (op.mode, op.normalization) {
        (SoftmaxOutputMode::Channel, Normalization::Null) => positions as f64,
        (SoftmaxOutputMode::Channel, Normalization::Batch) => (positions * rows) as f64,
        (SoftmaxOutputMode::Channel, Normalization::Valid) => valid,
        (_, Normalization::Null) => 1.0,
        (_, Normalization::Batch) => label.data.len() as f64,
        (_, Normalization::Valid) => valid,
    };
    let scale = op.grad_scale / normaliser.max(1.0);
    let mut dx = dx.map(|v| v * scale);
    if op.out_grad {
        dx = arrays::zip(&dx, p, |d, p| d * p)?;
    }
    Ok(vec![Some(dx), None])
}

/// Linear and MAE regression (identity forward) and logistic regression (sigmoid
/// forward): `out − label` (the sign of it for MAE) times `grad_scale` divided by the
/// number of outputs per example (`label`'s size over its first dim).
pub fn regression_output(ctx: &Ctx<'_>, op: &RegressionOutput) -> Rule {
    let out = ctx.output(0)?;
    let label = ctx.input(1)?;
    if label.data.len() != out.data.len() {
        return Err(format!(
            "label has {} values, the output {}",
            label.data.len(),
            out.data.len()
        ));
    }
    let rows = label.shape.first().copied().unwrap_or(1).max(1);
    let per_example = (label.data.len() / rows).max(1) as f64;
    let scale = op.grad_scale / per_example;
    let dx = arrays::zip(out, label, |o, l| {
        let d = o - l;
        scale
            * match op.kind {
                RegressionKind::Linear | RegressionKind::Logistic => d,
                RegressionKind::Mae => {
                    if d > 0.0 {
                        1.0
                    } else if d < 0.0 {
                        -1.0
                    } else {
                        0.0
                    }
                }
            }
    })?;
    Ok(vec![Some(dx), None])
}

/// MakeLoss: its input is the loss; every element's gradient is `grad_scale`, divided by
/// the rows of the input seen as a matrix (`batch`: MXNet flattens all axes but the last
/// into rows, so a vector is one row) or by the number of elements over `valid_thresh`
/// (`valid`).
pub fn make_loss(ctx: &Ctx<'_>, op: &MakeLoss) -> Rule {
    let x = ctx.input(0)?;
    let rows: usize = x.shape.iter().rev().skip(1).product();
    let normaliser = match op.normalization {
        Normalization::Null => 1.0,
        Normalization::Batch => rows as f64,
        Normalization::Valid => x.data.iter().filter(|&&v| v > op.valid_thresh).count() as f64,
    };
    let g = op.grad_scale / normaliser.max(1.0);
    Ok(vec![Some(
        Array::full(x.shape.clone(), g).map_err(|e| e.to_string())?,
    )])
}
