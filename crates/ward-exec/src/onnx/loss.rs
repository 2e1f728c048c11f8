//! Loss heads at inference: their forward function only (the label is not fed).
//! Dropout, MakeLoss and BlockGrad are identities at inference.

use ward_graph::ops::loss::{RegressionKind, RegressionOutput, SoftmaxOutput, SoftmaxOutputMode};

use super::builder::{attr_int, ints, At, Builder, R};

pub(super) fn identity(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    b.push("Identity", vec![at.input(0)?], vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn softmax_output(b: &mut Builder<'_>, at: &At<'_>, op: &SoftmaxOutput) -> R<()> {
    let x = at.input(0)?;
    let out = at.out()?;
    let xs = &at.xs;
    match op.mode {
        SoftmaxOutputMode::Flatten if xs.len() != 2 => {
            let rest = xs.iter().skip(1).product::<usize>();
            let flat = b.reshape(x, &[at.x_dim(0)?, rest], &at.hint("flat"));
            let soft = b.op(
                "Softmax",
                vec![flat],
                vec![attr_int("axis", 1)],
                &at.hint("softmax"),
            );
            let shape = b.const_i64(&at.hint("shape"), &ints(xs));
            b.push("Reshape", vec![soft, shape], vec![out], vec![]);
        }
        SoftmaxOutputMode::Flatten | SoftmaxOutputMode::Channel => {
            let axis = if xs.len() == 1 { 0 } else { 1 };
            b.push("Softmax", vec![x], vec![out], vec![attr_int("axis", axis)]);
        }
        SoftmaxOutputMode::Last => {
            b.push("Softmax", vec![x], vec![out], vec![attr_int("axis", -1)]);
        }
    }
    Ok(())
}

pub(super) fn regression_output(b: &mut Builder<'_>, at: &At<'_>, op: &RegressionOutput) -> R<()> {
    match op.kind {
        RegressionKind::Logistic => super::activation::sigmoid(b, at, at.input(0)?),
        RegressionKind::Linear | RegressionKind::Mae => {
            b.push("Identity", vec![at.input(0)?], vec![at.out()?], vec![]);
            Ok(())
        }
    }
}
