//! Activations and softmax: one ONNX operator each, but GELU (MXNet's exact erf form) and
//! a per-channel PReLU slope shaped to broadcast.

use ward_graph::ops::activation::{Activation, ActivationKind, LeakyRelu, LeakyReluKind, Softmax};

use super::builder::{attr_float, attr_int, At, Builder, R};

pub(super) fn activation(b: &mut Builder<'_>, at: &At<'_>, op: &Activation) -> R<()> {
    let name = match op.kind {
        ActivationKind::Relu => "Relu",
        ActivationKind::Sigmoid => return sigmoid(b, at, at.input(0)?),
        ActivationKind::Tanh => "Tanh",
        ActivationKind::Softrelu => "Softplus",
        ActivationKind::Softsign => "Softsign",
    };
    b.push(name, at.inputs()?, vec![at.out()?], vec![]);
    Ok(())
}

/// The logistic function as MXNet computes it in float32, `1 / (1 + e^−x)`, into the
/// node's output. Not ONNX's `Sigmoid`: tract's clamps its result to
/// [4.5e-7, 1 − 4.8e-7], so large inputs never reach MXNet's exact 1.0 and very negative
/// ones never its 0. A detector's saturated scores then stop tying as they do in MXNet
/// (CenterNet keeps a different set of peaks and ranks its boxes differently); its exp is
/// within an ulp of MXNet's.
pub(super) fn sigmoid(b: &mut Builder<'_>, at: &At<'_>, x: String) -> R<()> {
    let negated = b.op("Neg", vec![x], vec![], &at.hint("neg"));
    let exp = b.op("Exp", vec![negated], vec![], &at.hint("exp"));
    let one = b.scalar_f32(&at.hint("one"), 1.0);
    let denominator = b.op(
        "Add",
        vec![one.clone(), exp],
        vec![],
        &at.hint("denominator"),
    );
    b.push("Div", vec![one, denominator], vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn leaky_relu(b: &mut Builder<'_>, at: &At<'_>, op: &LeakyRelu) -> R<()> {
    let out = at.out()?;
    let x = at.input(0)?;
    match op.kind {
        LeakyReluKind::Leaky { slope } => b.push(
            "LeakyRelu",
            vec![x],
            vec![out],
            vec![attr_float("alpha", slope as f32)],
        ),
        LeakyReluKind::Elu { slope } => b.push(
            "Elu",
            vec![x],
            vec![out],
            vec![attr_float("alpha", slope as f32)],
        ),
        LeakyReluKind::Selu => b.push(
            "Selu",
            vec![x],
            vec![out],
            vec![
                attr_float("alpha", 1.673_263_2),
                attr_float("gamma", 1.050_701),
            ],
        ),
        LeakyReluKind::Gelu => {
            let inv_sqrt2 = b.scalar_f32(&at.hint("inv_sqrt2"), std::f32::consts::FRAC_1_SQRT_2);
            let scaled = b.op(
                "Mul",
                vec![x.clone(), inv_sqrt2],
                vec![],
                &at.hint("scaled"),
            );
            let erf = b.op("Erf", vec![scaled], vec![], &at.hint("erf"));
            let one = b.scalar_f32(&at.hint("one"), 1.0);
            let plus = b.op("Add", vec![erf, one], vec![], &at.hint("plus1"));
            let half = b.scalar_f32(&at.hint("half"), 0.5);
            let hx = b.op("Mul", vec![x, half], vec![], &at.hint("half_x"));
            b.push("Mul", vec![hx, plus], vec![out], vec![]);
        }
        LeakyReluKind::Prelu => {
            let slope_source = at.source(1)?;
            let slope = if b.shape(slope_source)? == [1] || at.xs.len() < 2 {
                at.input(1)?
            } else {
                b.along_axis(slope_source, 1, at.xs.len(), &at.hint("slope"))?
            };
            b.push("PRelu", vec![x, slope], vec![out], vec![]);
        }
    }
    Ok(())
}

pub(super) fn softmax(b: &mut Builder<'_>, at: &At<'_>, op: &Softmax) -> R<()> {
    let mut x = at.input(0)?;
    if op.temperature != 1.0 {
        let t = b.scalar_f32(&at.hint("temperature"), op.temperature as f32);
        x = b.op("Div", vec![x, t], vec![], &at.hint("tempered"));
    }
    let name = if op.log { "LogSoftmax" } else { "Softmax" };
    if !op.use_length {
        b.push(
            name,
            vec![x],
            vec![at.out()?],
            vec![attr_int("axis", op.axis)],
        );
        return Ok(());
    }
    // MXNet's use_length: element j of a lane takes part where j < its length. The
    // others are -inf inside the softmax and 0 outside it (a lane of length 0 is all
    // -inf, NaN inside, and 0 outside).
    let rank = at.xs.len();
    let axis = ward_graph::ops::resolve_axis(op.axis, rank)?;
    let n = at.x_dim(axis)?;
    let mut along = vec![1; rank];
    if let Some(d) = along.get_mut(axis) {
        *d = n;
    }
    let positions: Vec<f32> = (0..n).map(|j| j as f32).collect();
    let positions = b.const_f32(&at.hint("positions"), &along, &positions);
    let mut lane_shape = at.xs.clone();
    if let Some(d) = lane_shape.get_mut(axis) {
        *d = 1;
    }
    let lengths = b.reshape(at.input(1)?, &lane_shape, &at.hint("lengths"));
    let inside = b.op("Less", vec![positions, lengths], vec![], &at.hint("inside"));
    let minus_inf = b.scalar_f32(&at.hint("minus_inf"), f32::NEG_INFINITY);
    let masked = b.op(
        "Where",
        vec![inside.clone(), x, minus_inf],
        vec![],
        &at.hint("masked"),
    );
    let soft = b.op(
        name,
        vec![masked],
        vec![attr_int("axis", op.axis)],
        &at.hint("softmax"),
    );
    let zero = b.scalar_f32(&at.hint("zero"), 0.0);
    b.push("Where", vec![inside, soft, zero], vec![at.out()?], vec![]);
    Ok(())
}
