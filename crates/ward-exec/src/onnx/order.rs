//! Ordering: MXNet's `topk`, `sort` and `argsort` as ONNX `TopK` (`largest` for
//! descending, `sorted`), its int64 indices cast to float, the mask scattered from them.
//!
//! ONNX's `TopK` breaks ties by the lower index; MXNet's CPU kernel orders equal elements
//! (and NaN) as libstdc++'s unstable sorts leave them. tract runs ward's own kernel in
//! place of its `Topk` (`crate::tract::topk`), which replays MXNet's order; a model written
//! by `ward export onnx` runs the runtime's `TopK`, which agrees with MXNet except in the
//! order among equal values and NaN.

use tract_onnx::pb::tensor_proto::DataType;
use ward_graph::ops::order::{Topk, TopkReturn};
use ward_graph::ops::resolve_axis;

use super::builder::{attr_int, ints, At, Builder, R};

pub(super) fn topk(b: &mut Builder<'_>, at: &At<'_>, op: &Topk) -> R<()> {
    let lanes = op.lanes(&at.xs)?;
    let x = at.input(0)?;
    // Without an axis MXNet orders the flattened input.
    let (x, axis, shape) = match op.axis {
        None => (b.reshape(x, &[lanes.n], &at.hint("flat")), 0, vec![lanes.n]),
        Some(a) => (x, resolve_axis(a, at.xs.len())?, at.xs.clone()),
    };
    let k = b.const_i64(&at.hint("k"), &[lanes.k as i64]);
    let values = b.fresh(&at.hint("values"));
    let indices = b.fresh(&at.hint("indices"));
    b.push(
        "TopK",
        vec![x, k],
        vec![values.clone(), indices.clone()],
        vec![
            attr_int("axis", axis as i64),
            attr_int("largest", i64::from(!op.ascend)),
            attr_int("sorted", 1),
        ],
    );
    let as_float = |b: &mut Builder<'_>, out: String| {
        b.push(
            "Cast",
            vec![indices.clone()],
            vec![out],
            vec![attr_int("to", DataType::Float as i64)],
        );
    };
    match op.ret {
        TopkReturn::Value => b.push("Identity", vec![values], vec![at.out()?], vec![]),
        TopkReturn::Indices => as_float(b, at.out()?),
        TopkReturn::Both => {
            b.push("Identity", vec![values], vec![at.out()?], vec![]);
            as_float(b, at.output(1)?);
        }
        TopkReturn::Mask => {
            let zero = b.scalar_f32(&at.hint("zero"), 0.0);
            let one = b.scalar_f32(&at.hint("one"), 1.0);
            let dims = b.const_i64(&at.hint("dims"), &ints(&shape));
            let zeros = b.op("Expand", vec![zero, dims], vec![], &at.hint("zeros"));
            let picked = op.picked_shape(&at.xs, lanes.k)?;
            let picked = b.const_i64(&at.hint("picked"), &ints(&picked));
            let ones = b.op("Expand", vec![one, picked], vec![], &at.hint("ones"));
            let mask = b.op(
                "ScatterElements",
                vec![zeros, indices, ones],
                vec![attr_int("axis", axis as i64)],
                &at.hint("mask"),
            );
            let dims = b.const_i64(&at.hint("shape"), &ints(&at.xs));
            b.push("Reshape", vec![mask, dims], vec![at.out()?], vec![]);
        }
    }
    Ok(())
}
