//! Shape operators: every output shape is known at lowering, so reshapes and flattens
//! reshape to it; constants are materialised.

use ward_graph::ops::resolve_axis;
use ward_graph::ops::shape::{
    Arange, Concat, Pad, PadMode, Repeat, Reverse, Split, Stack, Strided, SwapAxes, Tile, Transpose,
};

use super::builder::{attr_int, attr_ints, attr_string, ints, At, Builder, R};

pub(super) fn reshape(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    let shape = b.const_i64(&at.hint("shape"), &ints(&at.out_shape));
    b.push(
        "Reshape",
        vec![at.input(0)?, shape],
        vec![at.out()?],
        vec![],
    );
    Ok(())
}

pub(super) fn flatten(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    b.push(
        "Flatten",
        vec![at.input(0)?],
        vec![at.out()?],
        vec![attr_int("axis", 1)],
    );
    Ok(())
}

pub(super) fn concat(b: &mut Builder<'_>, at: &At<'_>, op: &Concat) -> R<()> {
    let a = resolve_axis(op.axis, at.xs.len())?;
    b.push(
        "Concat",
        at.inputs()?,
        vec![at.out()?],
        vec![attr_int("axis", a as i64)],
    );
    Ok(())
}

pub(super) fn swap_axes(b: &mut Builder<'_>, at: &At<'_>, op: &SwapAxes) -> R<()> {
    let rank = at.xs.len();
    let (x, y) = (resolve_axis(op.axis1, rank)?, resolve_axis(op.axis2, rank)?);
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(x, y);
    b.push(
        "Transpose",
        vec![at.input(0)?],
        vec![at.out()?],
        vec![attr_ints("perm", &ints(&perm))],
    );
    Ok(())
}

pub(super) fn transpose(b: &mut Builder<'_>, at: &At<'_>, op: &Transpose) -> R<()> {
    b.push(
        "Transpose",
        vec![at.input(0)?],
        vec![at.out()?],
        vec![attr_ints("perm", &ints(&op.perm))],
    );
    Ok(())
}

/// `slice` and `slice_axis`, by the ranges they resolved for the input's shape: one ONNX
/// `Slice` over the axes not kept whole.
pub(super) fn strided_slice(b: &mut Builder<'_>, at: &At<'_>, ranges: &[Strided]) -> R<()> {
    let (mut axes, mut starts, mut ends, mut steps) = (vec![], vec![], vec![], vec![]);
    for (axis, (r, &d)) in ranges.iter().zip(&at.xs).enumerate() {
        if *r == Strided::whole(d) {
            continue;
        }
        let (start, len, dim) = (r.start as i64, r.len as i64, d as i64);
        let end = start + len * r.step;
        axes.push(axis as i64);
        starts.push(start);
        // Backwards to the first element, the exclusive end is -1, which ONNX would read
        // as the last: -dim-1 counts back to -1, where ONNX clamps a negative step's end.
        ends.push(if end < 0 { -dim - 1 } else { end });
        steps.push(r.step);
    }
    if axes.is_empty() {
        b.push("Identity", vec![at.input(0)?], vec![at.out()?], vec![]);
        return Ok(());
    }
    let starts = b.const_i64(&at.hint("starts"), &starts);
    let ends = b.const_i64(&at.hint("ends"), &ends);
    let axes = b.const_i64(&at.hint("axes"), &axes);
    let steps = b.const_i64(&at.hint("steps"), &steps);
    b.push(
        "Slice",
        vec![at.input(0)?, starts, ends, axes, steps],
        vec![at.out()?],
        vec![],
    );
    Ok(())
}

pub(super) fn split(b: &mut Builder<'_>, at: &At<'_>, op: &Split) -> R<()> {
    let a = resolve_axis(op.axis, at.xs.len())?;
    let part = at.x_dim(a)? / op.outputs.max(1);
    let sizes = b.const_i64(&at.hint("split"), &vec![part as i64; op.outputs]);
    let x = at.input(0)?;
    if !op.squeeze {
        b.push(
            "Split",
            vec![x, sizes],
            at.outs.clone(),
            vec![attr_int("axis", a as i64)],
        );
        return Ok(());
    }
    let parts: Vec<String> = (0..op.outputs)
        .map(|k| b.fresh(&at.hint(&format!("part{k}"))))
        .collect();
    b.push(
        "Split",
        vec![x, sizes],
        parts.clone(),
        vec![attr_int("axis", a as i64)],
    );
    let axes = b.const_i64(&at.hint("axes"), &[a as i64]);
    for (part, out) in parts.into_iter().zip(&at.outs) {
        b.push(
            "Squeeze",
            vec![part, axes.clone()],
            vec![out.clone()],
            vec![],
        );
    }
    Ok(())
}

pub(super) fn stack(b: &mut Builder<'_>, at: &At<'_>, op: &Stack) -> R<()> {
    let a = resolve_axis(op.axis, at.xs.len() + 1)?;
    let axes = b.const_i64(&at.hint("axes"), &[a as i64]);
    let parts: Vec<String> = at
        .inputs()?
        .into_iter()
        .enumerate()
        .map(|(k, x)| {
            b.op(
                "Unsqueeze",
                vec![x, axes.clone()],
                vec![],
                &at.hint(&format!("item{k}")),
            )
        })
        .collect();
    b.push(
        "Concat",
        parts,
        vec![at.out()?],
        vec![attr_int("axis", a as i64)],
    );
    Ok(())
}

pub(super) fn pad(b: &mut Builder<'_>, at: &At<'_>, op: &Pad) -> R<()> {
    // ward's pads are (before, after) per axis; ONNX's every before, then every after.
    let before = op.pads.iter().step_by(2).map(|&p| p as i64);
    let after = op.pads.iter().skip(1).step_by(2).map(|&p| p as i64);
    let onnx_pads: Vec<i64> = before.chain(after).collect();
    let p = b.const_i64(&at.hint("pads"), &onnx_pads);
    let mut args = vec![at.input(0)?, p];
    // tract pads with the constant whenever one is given, whatever the mode.
    if op.mode == PadMode::Constant {
        args.push(b.scalar_f32(&at.hint("value"), op.value as f32));
    }
    let mode = match op.mode {
        PadMode::Constant => "constant",
        PadMode::Edge => "edge",
        PadMode::Reflect => "reflect",
    };
    b.push(
        "Pad",
        args,
        vec![at.out()?],
        vec![attr_string("mode", mode)],
    );
    Ok(())
}

/// A constant of the output's (known) shape.
pub(super) fn fill(b: &mut Builder<'_>, at: &At<'_>, value: f64) -> R<()> {
    let n: usize = at.out_shape.iter().product();
    let c = b.const_f32(&at.hint("value"), &at.out_shape, &vec![value as f32; n]);
    b.push("Identity", vec![c], vec![at.out()?], vec![]);
    Ok(())
}

/// `shape_array` (the input's dims) and `size_array` (its element count) as a constant:
/// the plan's shapes are fixed when it is built.
pub(super) fn shape_array(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    let values: Vec<f32> = if matches!(at.node.op, ward_graph::ops::Op::SizeArray(_)) {
        vec![at.xs.iter().product::<usize>() as f32]
    } else {
        at.xs.iter().map(|&d| d as f32).collect()
    };
    let c = b.const_f32(&at.hint("dims"), &at.out_shape, &values);
    b.push("Identity", vec![c], vec![at.out()?], vec![]);
    Ok(())
}

/// `_arange` and `_contrib_arange_like`: a constant of the output's shape (the plan's
/// shapes are fixed when it is built), each element as MXNet computes it.
pub(super) fn arange(b: &mut Builder<'_>, at: &At<'_>, op: &Arange) -> R<()> {
    let n: usize = at.out_shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| op.value(i)).collect();
    let c = b.const_f32(&at.hint("values"), &at.out_shape, &values);
    b.push("Identity", vec![c], vec![at.out()?], vec![]);
    Ok(())
}

/// `tile`: the input reshaped to the output's rank (MXNet's leading axes of 1) and an ONNX
/// `Tile` by each axis's rep.
pub(super) fn tile(b: &mut Builder<'_>, at: &At<'_>, op: &Tile) -> R<()> {
    let x = at.input(0)?;
    if op.reps.is_empty() {
        b.push("Identity", vec![x], vec![at.out()?], vec![]);
        return Ok(());
    }
    let (from, reps) = op.padded(&at.xs);
    let x = if from.len() == at.xs.len() {
        x
    } else {
        b.reshape(x, &from, &at.hint("lifted"))
    };
    let reps = b.const_i64(&at.hint("repeats"), &ints(&reps));
    b.push("Tile", vec![x, reps], vec![at.out()?], vec![]);
    Ok(())
}

/// `repeat`: a `Gather` along the axis (along the flattened input with no axis) of the
/// indices `0, 0, 1, 1, ...`, each `repeats` times: each element then comes `repeats`
/// times in a row.
///
/// Not a new axis of 1 broadcast (`Expand`) or tiled (`Tile`) to the count and merged:
/// tract 0.23's declutter moves a convolution's product up through either when the
/// result is concatenated first (GluonCV YOLOv3's upsampling: `repeat` on the last two
/// axes, `Concat` with a route, a convolution) and keeps the new axis at 1, so at batch 1
/// no plan could be built ("Trying to substitute 128,4,2,8 by 128,4,1,8").
pub(super) fn repeat(b: &mut Builder<'_>, at: &At<'_>, op: &Repeat) -> R<()> {
    let (x, axis, len) = match op.axis {
        None => {
            let len = at.xs.iter().product::<usize>();
            (b.reshape(at.input(0)?, &[len], &at.hint("flat")), 0, len)
        }
        Some(axis) => {
            let axis = resolve_axis(axis, at.xs.len())?;
            let len = at.xs.get(axis).copied().unwrap_or(1);
            (at.input(0)?, axis, len)
        }
    };
    let indices: Vec<i64> = (0..len)
        .flat_map(|i| std::iter::repeat_n(i as i64, op.repeats))
        .collect();
    let indices = b.const_i64(&at.hint("indices"), &indices);
    b.push(
        "Gather",
        vec![x, indices],
        vec![at.out()?],
        vec![attr_int("axis", axis as i64)],
    );
    Ok(())
}

/// `reverse`: a `Gather` of the indices `n − 1, ..., 0` along each reversed axis (a
/// `Slice` with step −1 would do, but `Gather` of constant indices is what tract already
/// runs for `repeat`).
pub(super) fn reverse(b: &mut Builder<'_>, at: &At<'_>, op: &Reverse) -> R<()> {
    let mut x = at.input(0)?;
    if op.axes.is_empty() {
        b.push("Identity", vec![x], vec![at.out()?], vec![]);
        return Ok(());
    }
    for (k, &axis) in op.axes.iter().enumerate() {
        let n = at.xs.get(axis).copied().unwrap_or(1);
        let indices: Vec<i64> = (0..n).rev().map(|i| i as i64).collect();
        let indices = b.const_i64(&at.hint(&format!("indices{axis}")), &indices);
        let attrs = vec![attr_int("axis", axis as i64)];
        if k + 1 == op.axes.len() {
            b.push("Gather", vec![x, indices], vec![at.out()?], attrs);
            break;
        } else {
            x = b.op(
                "Gather",
                vec![x, indices],
                attrs,
                &at.hint(&format!("reversed{axis}")),
            );
        }
    }
    Ok(())
}

/// The broadcasts: ONNX `Expand` to the (known) output shape, of the input's rank. A
/// `broadcast_like`'s second input gave only its shape, which is known here: it is not
/// read.
pub(super) fn broadcast_to(b: &mut Builder<'_>, at: &At<'_>) -> R<()> {
    let x = at.input(0)?;
    if at.xs == at.out_shape {
        b.push("Identity", vec![x], vec![at.out()?], vec![]);
        return Ok(());
    }
    let shape = b.const_i64(&at.hint("shape"), &ints(&at.out_shape));
    b.push("Expand", vec![x, shape], vec![at.out()?], vec![]);
    Ok(())
}
