//! Pooling: ONNX `MaxPool`/`AveragePool` with the end padded so that floor division gives
//! MXNet's (possibly `full`, rounded-up) output size, and MXNet's divisors (the window
//! clipped to the padded or the input extent) as a constant factor where they differ
//! from the kernel area. Global pooling: the global ONNX operators.

use ward_graph::interp::resize::adaptive_map;
use ward_graph::ops::pool::{AdaptiveAvgPool, Pool, PoolKind};

use super::builder::{attr_int, attr_ints, ints, At, Builder, R};

pub(super) fn pool(b: &mut Builder<'_>, at: &At<'_>, op: &Pool) -> R<()> {
    let x = at.input(0)?;
    let out = at.out()?;
    let xs = &at.xs;
    let spatial_in = xs.get(2..).ok_or("pooling needs spatial dims")?;
    if op.global {
        match op.kind {
            PoolKind::Max => b.push("GlobalMaxPool", vec![x], vec![out], vec![]),
            PoolKind::Avg => b.push("GlobalAveragePool", vec![x], vec![out], vec![]),
            PoolKind::Sum => {
                let avg = b.op("GlobalAveragePool", vec![x], vec![], &at.hint("avg"));
                let area: usize = spatial_in.iter().product();
                let n = b.scalar_f32(&at.hint("count"), area as f32);
                b.push("Mul", vec![avg, n], vec![out], vec![]);
            }
        }
        return Ok(());
    }
    let spatial_out = at
        .out_shape
        .get(2..)
        .ok_or("pooling output needs spatial dims")?;
    let (kernel, stride, pad) = (&op.kernel, &op.stride, &op.pad);
    if [spatial_in.len(), spatial_out.len(), stride.len(), pad.len()] != [kernel.len(); 4] {
        return Err("the window's attributes and the data's rank differ".into());
    }
    // Pad the end so that floor division gives MXNet's output size; the extra padding
    // never counts in the divisor (fixed below).
    let mut pads_begin = Vec::with_capacity(kernel.len());
    let mut pads_end = Vec::with_capacity(kernel.len());
    for (((&o, &k), (&s, &p)), &x) in spatial_out
        .iter()
        .zip(kernel)
        .zip(stride.iter().zip(pad))
        .zip(spatial_in)
    {
        let needed = o.saturating_sub(1) * s + k;
        let have = x + 2 * p;
        pads_begin.push(p as i64);
        pads_end.push((p + needed.saturating_sub(have)) as i64);
    }
    let pads: Vec<i64> = pads_begin.iter().chain(pads_end.iter()).copied().collect();
    let mut attrs = vec![
        attr_ints("kernel_shape", &ints(kernel)),
        attr_ints("strides", &ints(stride)),
        attr_ints("pads", &pads),
    ];
    if op.kind == PoolKind::Max {
        b.push("MaxPool", vec![x], vec![out], attrs);
        return Ok(());
    }
    attrs.push(attr_int("count_include_pad", 1));
    // AveragePool with count_include_pad gives sum / kernel area everywhere; MXNet
    // divides by the window clipped to the padded extent (or the input extent).
    let window: usize = kernel.iter().product();
    let cells: usize = spatial_out.iter().product();
    let mut factor = vec![0f32; cells];
    let mut uniform = true;
    for (cell, f) in factor.iter_mut().enumerate() {
        let mut rem = cell;
        let mut divisor = 1usize;
        for (((&o_len, &k), (&s, &p)), &x) in spatial_out
            .iter()
            .zip(kernel)
            .zip(stride.iter().zip(pad))
            .zip(spatial_in)
            .rev()
        {
            let o = rem % o_len.max(1);
            rem /= o_len.max(1);
            let start = (o * s) as i64 - p as i64;
            let padded_end = (start + k as i64).min((x + p) as i64);
            let extent = if op.count_include_pad {
                padded_end - start
            } else {
                padded_end.min(x as i64) - start.max(0)
            };
            divisor *= extent.max(1) as usize;
        }
        *f = match op.kind {
            PoolKind::Sum => window as f32,
            _ => window as f32 / divisor as f32,
        };
        uniform &= *f == 1.0;
    }
    if uniform {
        b.push("AveragePool", vec![x], vec![out], attrs);
        return Ok(());
    }
    let avg = b.op("AveragePool", vec![x], attrs, &at.hint("avg"));
    let mut dims = vec![1, 1];
    dims.extend_from_slice(spatial_out);
    let f = b.const_f32(&at.hint("divisor"), &dims, &factor);
    b.push("Mul", vec![avg, f], vec![out], vec![]);
    Ok(())
}

/// MXNet `_contrib_AdaptiveAvgPooling2D`: the separable map of its windows
/// ([`ward_graph::interp::resize::adaptive_map`]), lowered as `resize` lowers maps.
pub(super) fn adaptive_avg_pool(b: &mut Builder<'_>, at: &At<'_>, op: &AdaptiveAvgPool) -> R<()> {
    let (h, w) = match at.xs.as_slice() {
        [_, _, h, w] => (*h, *w),
        s => return Err(format!("data {s:?} must be NCHW")),
    };
    let rows = adaptive_map(h, op.height);
    let cols = adaptive_map(w, op.width);
    super::resize::separable(b, at, at.input(0)?, (h, w), (&rows, &cols), at.out()?, "")
}
