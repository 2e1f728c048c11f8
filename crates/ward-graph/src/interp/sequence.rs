//! SequenceMask, SequenceReverse and SequenceLast (MXNet 1.9.1), with and without
//! `sequence_length`.

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::{Array, KResult, KernelError};

/// What a sequence operator does with a length, which decides the lengths MXNet 1.9.1
/// reads safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUse {
    /// SequenceMask: steps from the length on are masked. A negative truncated length
    /// makes MXNet write before the tensor (and crash); one past the steps masks nothing.
    Mask,
    /// SequenceReverse: the first `length` steps are reversed; past the steps MXNet reads
    /// outside the tensor.
    Reverse,
    /// SequenceLast: step `length − 1`; 0 or past the steps reads outside the tensor.
    Last,
}

/// The data's (steps, batch, rest) for the steps axis `axis` (0 or 1).
pub fn sequence_dims(
    op: &'static str,
    shape: &[usize],
    axis: usize,
) -> KResult<(usize, usize, usize)> {
    if shape.len() < 2 || axis > 1 {
        return Err(KernelError::new(
            op,
            format!("data {shape:?} must have rank 2 or more and axis {axis} be 0 or 1"),
        ));
    }
    let rest = shape[2..].iter().product();
    Ok((shape[axis], shape[1 - axis], rest))
}

/// The offset of element `r` of step `s` of sequence `b`.
pub fn sequence_offset(
    axis: usize,
    dims: (usize, usize, usize),
    s: usize,
    b: usize,
    r: usize,
) -> usize {
    let (steps, batch, rest) = dims;
    if axis == 0 {
        (s * batch + b) * rest + r
    } else {
        (b * steps + s) * rest + r
    }
}

/// Each sequence's length as MXNet reads it (truncated toward zero), at most `steps`
/// (all `steps` without lengths). A length MXNet would read or write outside the tensor
/// for (NaN, or a truncated value outside the range `how` allows) is refused, naming it.
pub fn sequence_lengths(
    op: &'static str,
    lengths: Option<&Array>,
    steps: usize,
    batch: usize,
    how: LengthUse,
) -> KResult<Vec<usize>> {
    let Some(lengths) = lengths else {
        return Ok(vec![steps; batch]);
    };
    if lengths.shape != [batch] {
        return Err(KernelError::new(
            op,
            format!("sequence_length {:?} must be ({batch},)", lengths.shape),
        ));
    }
    let (lo, hi) = match how {
        LengthUse::Mask => (0.0, f64::from(i32::MAX)),
        LengthUse::Reverse => (0.0, steps as f64),
        LengthUse::Last => (1.0, steps as f64),
    };
    lengths
        .data
        .iter()
        .enumerate()
        .map(|(b, &v)| {
            let t = v.trunc();
            if v.is_nan() || t < lo || t > hi {
                return Err(KernelError::new(
                    op,
                    format!(
                        "sequence_length[{b}] = {v} is outside {lo} to {hi} once truncated, \
                         where MXNet 1.9.1 reads or writes outside the data"
                    ),
                ));
            }
            Ok((t as usize).min(steps))
        })
        .collect()
}

/// MXNet `SequenceMask`: steps at and past each sequence's length set to `value`.
pub fn sequence_mask(
    x: &Array,
    lengths: Option<&Array>,
    axis: usize,
    value: f64,
) -> KResult<Array> {
    const OP: &str = "SequenceMask";
    let dims = sequence_dims(OP, &x.shape, axis)?;
    let (steps, batch, rest) = dims;
    let n = sequence_lengths(OP, lengths, steps, batch, LengthUse::Mask)?;
    let mut out = x.clone();
    for (b, &len) in n.iter().enumerate() {
        for s in len..steps {
            for r in 0..rest {
                out.data[sequence_offset(axis, dims, s, b, r)] = value;
            }
        }
    }
    Ok(out)
}

/// The step SequenceReverse reads for output step `s` of a sequence of length `len`.
pub fn reversed_step(s: usize, len: usize) -> usize {
    if s < len {
        len - 1 - s
    } else {
        s
    }
}

/// MXNet `SequenceReverse` (steps on axis 0): the first `length` steps of each sequence
/// reversed, the others in place.
pub fn sequence_reverse(x: &Array, lengths: Option<&Array>) -> KResult<Array> {
    const OP: &str = "SequenceReverse";
    let dims = sequence_dims(OP, &x.shape, 0)?;
    let (steps, batch, rest) = dims;
    let n = sequence_lengths(OP, lengths, steps, batch, LengthUse::Reverse)?;
    let mut out = x.clone();
    for (b, &len) in n.iter().enumerate() {
        for s in 0..steps {
            let from = reversed_step(s, len);
            for r in 0..rest {
                out.data[sequence_offset(0, dims, s, b, r)] =
                    x.data[sequence_offset(0, dims, from, b, r)];
            }
        }
    }
    Ok(out)
}

/// MXNet `SequenceLast`: step `length − 1` of each sequence (the last step without
/// lengths); the steps axis is removed. MXNet 1.9.1 takes axis 0 or 1 only.
pub fn sequence_last(x: &Array, lengths: Option<&Array>, axis: i64) -> KResult<Array> {
    const OP: &str = "SequenceLast";
    let axis = usize::try_from(axis)
        .ok()
        .filter(|a| *a <= 1)
        .ok_or_else(|| {
            KernelError::new(OP, format!("axis {axis}: MXNet 1.9.1 accepts only 0 or 1"))
        })?;
    let dims = sequence_dims(OP, &x.shape, axis)?;
    let (steps, batch, rest) = dims;
    if steps == 0 {
        return Err(KernelError::new(OP, "the sequence is empty"));
    }
    let n = sequence_lengths(OP, lengths, steps, batch, LengthUse::Last)?;
    let mut shape = x.shape.clone();
    shape.remove(axis);
    let mut data = Vec::with_capacity(batch * rest);
    for (b, &len) in n.iter().enumerate() {
        for r in 0..rest {
            data.push(x.data[sequence_offset(axis, dims, len - 1, b, r)]);
        }
    }
    // `data` is (batch, rest); with axis 0 the output is (batch, rest…) too, and with
    // axis 1 the batch axis was already first.
    Array::new(shape, data)
}

/// The gradient of [`sequence_last`] for the output gradient `g`: each sequence's
/// gradient lands on the step the forward pass read; the other steps get zero.
pub fn sequence_last_grad(
    x: &Array,
    lengths: Option<&Array>,
    axis: i64,
    g: &Array,
) -> KResult<Array> {
    const OP: &str = "SequenceLast";
    let out = sequence_last(x, lengths, axis)?;
    g.expect_shape(OP, "output gradient", &out.shape)?;
    let axis = usize::try_from(axis).map_err(|_| KernelError::new(OP, "axis is negative"))?;
    let dims = sequence_dims(OP, &x.shape, axis)?;
    let (steps, batch, rest) = dims;
    let n = sequence_lengths(OP, lengths, steps, batch, LengthUse::Last)?;
    let mut dx = Array::zeros(x.shape.clone())?;
    for (b, &len) in n.iter().enumerate() {
        for r in 0..rest {
            dx.data[sequence_offset(axis, dims, len - 1, b, r)] = g.data[b * rest + r];
        }
    }
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::ramp;

    #[test]
    fn mask_keeps_the_truncated_length_on_either_axis() {
        // (steps 4, batch 3, 1): lengths 2, 3.9 (→ 3), 0.5 (→ 0).
        let x = ramp(vec![4, 3, 1]);
        let len = Array::vector(&[2.0, 3.9, 0.5]);
        let y = sequence_mask(&x, Some(&len), 0, -1.0).unwrap();
        assert_eq!(
            y.data,
            vec![0.0, 1.0, -1.0, 3.0, 4.0, -1.0, -1.0, 7.0, -1.0, -1.0, -1.0, -1.0]
        );
        // (batch 3, steps 4): the same lengths along axis 1.
        let x = ramp(vec![3, 4]);
        let y = sequence_mask(&x, Some(&Array::vector(&[2.0, 9.0, -0.5])), 1, 0.0).unwrap();
        assert_eq!(
            y.data,
            vec![0.0, 1.0, 0.0, 0.0, 4.0, 5.0, 6.0, 7.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(sequence_mask(&x, None, 1, 5.0).unwrap(), x);
        for bad in [-1.0, -3.5, f64::NAN, 1e12] {
            let e = sequence_mask(&x, Some(&Array::vector(&[1.0, bad, 1.0])), 1, 0.0).unwrap_err();
            assert!(e.reason.contains("sequence_length[1]"), "{e}");
        }
    }

    #[test]
    fn reverse_and_last_read_within_the_length() {
        let x = ramp(vec![4, 2]);
        let y = sequence_reverse(&x, Some(&Array::vector(&[3.0, 0.0]))).unwrap();
        assert_eq!(y.data, vec![4.0, 1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 7.0]);
        let y = sequence_reverse(&x, None).unwrap();
        assert_eq!(y.data, vec![6.0, 7.0, 4.0, 5.0, 2.0, 3.0, 0.0, 1.0]);
        assert!(sequence_reverse(&x, Some(&Array::vector(&[5.0, 1.0]))).is_err());
        let y = sequence_last(&x, Some(&Array::vector(&[2.7, 4.0])), 0).unwrap();
        assert_eq!(y.data, vec![2.0, 7.0]);
        let y = sequence_last(&x, Some(&Array::vector(&[1.0, 2.0, 1.5, 2.0])), 1).unwrap();
        assert_eq!(y.data, vec![0.0, 3.0, 4.0, 7.0]);
        assert_eq!(
            sequence_last(&x, None, 1).unwrap().data,
            vec![1.0, 3.0, 5.0, 7.0]
        );
        for bad in [0.5, 5.0, f64::NAN] {
            assert!(sequence_last(&x, Some(&Array::vector(&[bad, 1.0])), 0).is_err());
        }
        let x = ramp(vec![2, 3, 4]);
        let l = sequence_last(&x, None, 0).unwrap();
        assert_eq!(l.shape, vec![3, 4]);
        assert_eq!(l.data[0], 12.0);
        let l = sequence_last(&x, None, 1).unwrap();
        assert_eq!(l.shape, vec![2, 4]);
        assert_eq!(l.data[..2], [8.0, 9.0]);
        assert!(sequence_last(&x, None, 2).is_err());
        assert!(sequence_last(&x, None, -1).is_err());
    }
}
