//! Rows copied into zero-padded scratch rows split by column phase, which the depthwise
//! and planar kernels read: phase `q` of a padded row holds its columns `q, q + s, …` at
//! column stride `s`, so a tap reads consecutive values of one phase for consecutive
//! outputs at any stride.

#![allow(
    clippy::indexing_slicing,
    reason = "the callers size `to` from the geometry they checked: `pad + row.len()` and `stride · phase_len` values fit it"
)]

/// Copies input row `row` into the padded row `to` (every phase of it, `phase_len`
/// values each, the padding left as it is) at column padding `pad` and stride `stride`.
/// One pass per phase over every `stride`-th value: a division and a remainder per value
/// (the planar kernel's copy before this) took most of a stride-2 stem's time.
#[inline(always)]
pub(crate) fn fill_row(row: &[f32], to: &mut [f32], pad: usize, stride: usize, phase_len: usize) {
    if stride == 1 {
        to[pad..][..row.len()].copy_from_slice(row);
        return;
    }
    for (q, phase) in to.chunks_exact_mut(phase_len).enumerate() {
        // The phase's first column at or past the padding, and the input column there.
        let first = (pad + stride - 1 - q) / stride;
        let from = (q + first * stride).saturating_sub(pad);
        let values = row.iter().skip(from).step_by(stride);
        for (slot, &v) in phase.iter_mut().skip(first).zip(values) {
            *slot = v;
        }
    }
}
