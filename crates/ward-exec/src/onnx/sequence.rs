//! Sequence operators. Lengths are truncated toward zero and clamped to what MXNet reads
//! safely before they index anything: the reference interpreter refuses a length MXNet
//! would read or write outside the data for, and an engine cannot stop mid-plan, so here
//! such a length gives the nearest safe one (SequenceMask compares the step with the
//! length itself: a negative or NaN length masks every step).

use tract_onnx::pb::tensor_proto::DataType;
use ward_graph::ops::sequence::{SequenceLast, SequenceMask, SequenceReverse};

use super::builder::{attr_int, ints, At, Builder, R};

/// The data's (steps, batch, rest).
fn dims(at: &At<'_>, axis: usize) -> R<(usize, usize, usize)> {
    if at.xs.len() < 2 || axis > 1 {
        return Err(format!("data {:?} must have rank 2 or more", at.xs));
    }
    let rest = at.xs.iter().skip(2).product();
    Ok((at.x_dim(axis)?, at.x_dim(1 - axis)?, rest))
}

/// The lengths truncated toward zero to int64 and clamped to [lo, hi].
fn clamped_lengths(b: &mut Builder<'_>, at: &At<'_>, lo: i64, hi: i64) -> R<String> {
    let ints = b.op(
        "Cast",
        vec![at.input(1)?],
        vec![attr_int("to", DataType::Int64 as i64)],
        &at.hint("lengths"),
    );
    let lo = b.scalar_i64(&at.hint("lo"), lo);
    let hi = b.scalar_i64(&at.hint("hi"), hi);
    let above = b.op("Max", vec![ints, lo], vec![], &at.hint("lengths_lo"));
    Ok(b.op("Min", vec![above, hi], vec![], &at.hint("lengths_hi")))
}

pub(super) fn sequence_mask(b: &mut Builder<'_>, at: &At<'_>, op: &SequenceMask) -> R<()> {
    if !op.use_sequence_length {
        b.push("Identity", vec![at.input(0)?], vec![at.out()?], vec![]);
        return Ok(());
    }
    let (steps, batch, _) = dims(at, op.axis)?;
    let rank = at.xs.len();
    // Step s is kept when s + 1 <= length, which is s < trunc(length) for a length of
    // at least 0, in float, so no length needs converting.
    let mut step_dims = vec![1; rank];
    let mut len_dims = vec![1; rank];
    if let (Some(s), Some(l)) = (step_dims.get_mut(op.axis), len_dims.get_mut(1 - op.axis)) {
        *s = steps;
        *l = batch;
    }
    let counts: Vec<f32> = (1..=steps).map(|s| s as f32).collect();
    let counts = b.const_f32(&at.hint("steps"), &step_dims, &counts);
    let lengths = b.reshape(at.input(1)?, &len_dims, &at.hint("lengths"));
    let keep = b.op(
        "LessOrEqual",
        vec![counts, lengths],
        vec![],
        &at.hint("keep"),
    );
    let value = b.scalar_f32(&at.hint("value"), op.value as f32);
    b.push(
        "Where",
        vec![keep, at.input(0)?, value],
        vec![at.out()?],
        vec![],
    );
    Ok(())
}

/// Gathers `x` viewed as (d0, d1, rest) along `axis` at `index` (shaped to broadcast to
/// the gathered (…, rest)) into the node's output.
fn gather_steps(
    b: &mut Builder<'_>,
    at: &At<'_>,
    view: [usize; 3],
    index: String,
    index_dims: [usize; 3],
    axis: usize,
) -> R<()> {
    let x = b.reshape(at.input(0)?, &view, &at.hint("view"));
    let index = b.reshape(index, &index_dims, &at.hint("index"));
    let mut gathered = index_dims;
    gathered[2] = view[2];
    let target = b.const_i64(&at.hint("expand"), &ints(&gathered));
    let index = b.op(
        "Expand",
        vec![index, target],
        vec![],
        &at.hint("index_full"),
    );
    let picked = b.op(
        "GatherElements",
        vec![x, index],
        vec![attr_int("axis", axis as i64)],
        &at.hint("picked"),
    );
    let shape = b.const_i64(&at.hint("shape"), &ints(&at.out_shape));
    b.push("Reshape", vec![picked, shape], vec![at.out()?], vec![]);
    Ok(())
}

pub(super) fn sequence_reverse(b: &mut Builder<'_>, at: &At<'_>, op: &SequenceReverse) -> R<()> {
    let (steps, batch, rest) = dims(at, 0)?;
    if steps == 0 {
        b.push("Identity", vec![at.input(0)?], vec![at.out()?], vec![]);
        return Ok(());
    }
    if !op.use_sequence_length {
        let t = steps as i64;
        let starts = b.const_i64(&at.hint("starts"), &[t - 1]);
        let ends = b.const_i64(&at.hint("ends"), &[-t - 1]);
        let axes = b.const_i64(&at.hint("axes"), &[0]);
        let step = b.const_i64(&at.hint("steps"), &[-1]);
        b.push(
            "Slice",
            vec![at.input(0)?, starts, ends, axes, step],
            vec![at.out()?],
            vec![],
        );
        return Ok(());
    }
    // Output step s of a sequence of length n reads step n − 1 − s when s < n, else s.
    let n = clamped_lengths(b, at, 0, steps as i64)?;
    let n = b.reshape(n, &[1, batch], &at.hint("n"));
    let s: Vec<i64> = (0..steps as i64).collect();
    let s = b.initializer(
        &at.hint("s"),
        &[steps, 1],
        DataType::Int64,
        s.iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    let one = b.scalar_i64(&at.hint("one"), 1);
    let last = b.op("Sub", vec![n.clone(), one], vec![], &at.hint("last"));
    let back = b.op("Sub", vec![last, s.clone()], vec![], &at.hint("back"));
    let inside = b.op("Less", vec![s.clone(), n], vec![], &at.hint("inside"));
    let from = b.op("Where", vec![inside, back, s], vec![], &at.hint("from"));
    gather_steps(b, at, [steps, batch, rest], from, [steps, batch, 1], 0)
}

pub(super) fn sequence_last(b: &mut Builder<'_>, at: &At<'_>, op: &SequenceLast) -> R<()> {
    let axis = op.steps_axis()?;
    let (steps, batch, rest) = dims(at, axis)?;
    let last = steps.checked_sub(1).ok_or("the sequence is empty")?;
    if !op.use_sequence_length {
        let last = b.scalar_i64(&at.hint("last"), last as i64);
        b.push(
            "Gather",
            vec![at.input(0)?, last],
            vec![at.out()?],
            vec![attr_int("axis", axis as i64)],
        );
        return Ok(());
    }
    let n = clamped_lengths(b, at, 1, steps as i64)?;
    let one = b.scalar_i64(&at.hint("one"), 1);
    let index = b.op("Sub", vec![n, one], vec![], &at.hint("step"));
    if axis == 0 {
        gather_steps(b, at, [steps, batch, rest], index, [1, batch, 1], 0)
    } else {
        gather_steps(b, at, [batch, steps, rest], index, [batch, 1, 1], 1)
    }
}
