//! Normalisation at inference. A batch norm whose statistics are constants is one
//! per-channel scale and shift, computed here in f64 (or folded into the convolution
//! before it); otherwise, and for instance, layer and group norms, the arithmetic is
//! in-graph.

use std::collections::HashMap;

use ward_graph::ir::{Node, Op, Source};
use ward_graph::ops::norm::{BatchNorm, GroupNorm, InstanceNorm, L2Normalization, LayerNorm};
use ward_graph::ops::resolve_axis;

use super::builder::{ints, At, Builder, R};

/// The per-channel scale and shift of a batch norm whose statistics are all constants.
pub(super) fn scale_shift(
    b: &Builder<'_>,
    node: &Node,
    bn: &BatchNorm,
    channels: usize,
) -> Option<(Vec<f32>, Vec<f32>)> {
    let stats: Vec<Vec<f32>> = node
        .inputs
        .get(1..5)?
        .iter()
        .map(|s| b.param_values(*s))
        .collect::<Option<_>>()?;
    let [gamma, beta, mean, var] = stats.as_slice() else {
        return None;
    };
    if [gamma.len(), beta.len(), mean.len(), var.len()] != [channels; 4] {
        return None;
    }
    let mut scale = Vec::with_capacity(channels);
    let mut shift = Vec::with_capacity(channels);
    for (((g, beta), mean), var) in gamma.iter().zip(beta).zip(mean).zip(var) {
        let g = if bn.fix_gamma { 1.0 } else { f64::from(*g) };
        let s = g / (f64::from(*var) + bn.eps).sqrt();
        scale.push(s as f32);
        shift.push((f64::from(*beta) - f64::from(*mean) * s) as f32);
    }
    Some((scale, shift))
}

pub(super) fn batch_norm(b: &mut Builder<'_>, at: &At<'_>, op: &BatchNorm) -> R<()> {
    let out = at.out()?;
    let x = at.input(0)?;
    if b.folded_away.contains(&at.index) {
        b.push("Identity", vec![x], vec![out], vec![]);
        return Ok(());
    }
    let rank = at.xs.len();
    let a = resolve_axis(op.axis, rank)?;
    let c = at.x_dim(a)?;
    let mut dims = vec![1; rank];
    if let Some(slot) = dims.get_mut(a) {
        *slot = c;
    }
    if let Some((scale, shift)) = scale_shift(b, at.node, op, c) {
        let scale = b.const_f32(&at.hint("scale"), &dims, &scale);
        let shift = b.const_f32(&at.hint("shift"), &dims, &shift);
        b.affine(x, scale, shift, &out);
        return Ok(());
    }
    let mean = b.along_axis(at.source(3)?, a, rank, &at.hint("mean"))?;
    let var = b.along_axis(at.source(4)?, a, rank, &at.hint("var"))?;
    let beta = b.along_axis(at.source(2)?, a, rank, &at.hint("beta"))?;
    let centered = b.op("Sub", vec![x, mean], vec![], &at.hint("centered"));
    let eps = b.scalar_f32(&at.hint("eps"), op.eps as f32);
    let var_eps = b.op("Add", vec![var, eps], vec![], &at.hint("var_eps"));
    let std = b.op("Sqrt", vec![var_eps], vec![], &at.hint("std"));
    let mut normed = b.op("Div", vec![centered, std], vec![], &at.hint("norm"));
    if !op.fix_gamma {
        let gamma = b.along_axis(at.source(1)?, a, rank, &at.hint("gamma"))?;
        normed = b.op("Mul", vec![normed, gamma], vec![], &at.hint("scaled"));
    }
    b.push("Add", vec![normed, beta], vec![out], vec![]);
    Ok(())
}

pub(super) fn instance_norm(b: &mut Builder<'_>, at: &At<'_>, op: &InstanceNorm) -> R<()> {
    let rank = at.xs.len();
    let axes: Vec<usize> = (2..rank).collect();
    let normed = b.normalize(at.input(0)?, &axes, op.eps, &at.node.name);
    let gamma = b.along_axis(at.source(1)?, 1, rank, &at.hint("gamma"))?;
    let beta = b.along_axis(at.source(2)?, 1, rank, &at.hint("beta"))?;
    b.affine(normed, gamma, beta, &at.out()?);
    Ok(())
}

/// `x / √(Σ x² + eps)`; with no axes to sum over (a vector in instance mode) each element
/// is its own sum, where ONNX's ReduceSum would sum everything.
pub(super) fn l2_normalization(b: &mut Builder<'_>, at: &At<'_>, op: &L2Normalization) -> R<()> {
    let x = at.input(0)?;
    let axes = op.axes(at.xs.len());
    let mut sums = b.op(
        "Mul",
        vec![x.clone(), x.clone()],
        vec![],
        &at.hint("squares"),
    );
    if !axes.is_empty() {
        let axes = b.const_i64(&at.hint("axes"), &ints(&axes));
        sums = b.op("ReduceSum", vec![sums, axes], vec![], &at.hint("sums"));
    }
    let eps = b.scalar_f32(&at.hint("eps"), op.eps as f32);
    let padded = b.op("Add", vec![sums, eps], vec![], &at.hint("padded"));
    let norms = b.op("Sqrt", vec![padded], vec![], &at.hint("norms"));
    b.push("Div", vec![x, norms], vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn layer_norm(b: &mut Builder<'_>, at: &At<'_>, op: &LayerNorm) -> R<()> {
    let rank = at.xs.len();
    let a = resolve_axis(op.axis, rank)?;
    let normed = b.normalize(at.input(0)?, &[a], op.eps, &at.node.name);
    let gamma = b.along_axis(at.source(1)?, a, rank, &at.hint("gamma"))?;
    let beta = b.along_axis(at.source(2)?, a, rank, &at.hint("beta"))?;
    b.affine(normed, gamma, beta, &at.out()?);
    Ok(())
}

/// MXNet 1.9.1's group norm: statistics per (sample, group), then one gamma and beta per
/// group.
pub(super) fn group_norm(b: &mut Builder<'_>, at: &At<'_>, op: &GroupNorm) -> R<()> {
    let xs = &at.xs;
    let rest: usize = xs.iter().skip(1).product::<usize>() / op.groups.max(1);
    let grouped = b.reshape(
        at.input(0)?,
        &[at.x_dim(0)?, op.groups, rest],
        &at.hint("grouped"),
    );
    let normed = b.normalize(grouped, &[2], op.eps, &at.node.name);
    let gamma = b.along_axis(at.source(1)?, 1, 3, &at.hint("gamma"))?;
    let beta = b.along_axis(at.source(2)?, 1, 3, &at.hint("beta"))?;
    let y = b.fresh(&at.hint("affine"));
    b.affine(normed, gamma, beta, &y);
    let shape = b.const_i64(&at.hint("shape"), &ints(xs));
    b.push("Reshape", vec![y, shape], vec![at.out()?], vec![]);
    Ok(())
}

/// Finds each convolution with constant weights read only by a channel-axis batch norm
/// with constant statistics, so the norm can be folded into the convolution.
pub(super) fn plan_folding(b: &mut Builder<'_>) {
    let mut readers: HashMap<usize, usize> = HashMap::new();
    for node in &b.graph.nodes {
        for s in &node.inputs {
            if let Source::Node(n, _) = s {
                *readers.entry(*n).or_default() += 1;
            }
        }
    }
    for o in &b.graph.outputs {
        if let Source::Node(n, _) = o.source {
            *readers.entry(n).or_default() += 2;
        }
    }
    for (index, node) in b.graph.nodes.iter().enumerate() {
        let (Op::BatchNorm(bn), Some(Source::Node(conv, 0))) = (&node.op, node.inputs.first())
        else {
            continue;
        };
        let Some(conv_node) = b.graph.nodes.get(*conv) else {
            continue;
        };
        let Some(conv_out) = b.shapes.nodes.get(*conv).and_then(|o| o.first()) else {
            continue;
        };
        let channel_axis = resolve_axis(bn.axis, conv_out.len()).ok() == Some(1);
        let constant_weights = conv_node
            .inputs
            .iter()
            .skip(1)
            .all(|s| matches!(s, Source::Param(_)));
        if !matches!(conv_node.op, Op::Conv(_))
            || !channel_axis
            || !constant_weights
            || readers.get(conv) != Some(&1)
        {
            continue;
        }
        let Some(&channels) = conv_out.get(1) else {
            continue;
        };
        if let Some(fold) = scale_shift(b, node, bn, channels) {
            b.folded_norms.insert(*conv, fold);
            b.folded_away.insert(index);
        }
    }
}
