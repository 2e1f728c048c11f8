//! Sequence operators: MXNet's `SequenceMask`, `SequenceReverse` and `SequenceLast`, over
//! data laid out (steps, batch, features…) (or (batch, steps, features…) for `axis` 1),
//! with an optional `sequence_length` input of one length per sequence.
//!
//! Lengths are read as MXNet 1.9.1 reads them: truncated toward zero (`static_cast<int>`).
//! Where MXNet reads or writes outside the tensor for a length (see each operator), the
//! reference interpreter refuses the run, naming the length.

use serde::{Deserialize, Serialize};

use ward_core::DType;

use super::{data_dtype, dim, expect_shape, input, OpDef, Shape, R};

/// Sets the steps of each sequence at and past its length to `value`. Without
/// `use_sequence_length` (one input) it is the identity. `axis` is the steps axis, 0 or 1
/// (the batch axis is the other). Lengths must be above −1 (MXNet writes before the
/// tensor for a negative truncated length) and below 2³¹.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceMask {
    pub axis: usize,
    #[serde(with = "super::float")]
    pub value: f64,
    pub use_sequence_length: bool,
}

/// Reverses the first `length` steps of each sequence (all of them without
/// `use_sequence_length`); steps past the length stay in place. The steps axis is 0 (the
/// only one MXNet 1.9.1 takes). A truncated length must be 0 to the number of steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceReverse {
    pub use_sequence_length: bool,
}

/// The last step of each sequence along `axis` (0 or 1), which is removed: step
/// `length − 1` with `use_sequence_length` (a truncated length must be 1 to the number of
/// steps), the last step otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceLast {
    pub axis: i64,
    /// Absent in graphs written before lengths were supported.
    #[serde(default)]
    pub use_sequence_length: bool,
}

/// The steps axis and batch axis of `data` for `axis` (0 or 1); data must have rank 2 or
/// more, and the lengths (if any) one per sequence.
fn sequence_axes(ins: &[Option<&[usize]>], axis: usize, lengths: bool) -> R<(usize, usize)> {
    let x = input(ins, 0, "data")?;
    if x.len() < 2 {
        return Err(format!("data {x:?} must have rank 2 or more"));
    }
    let batch_axis = match axis {
        0 => 1,
        1 => 0,
        _ => return Err(format!("axis {axis} must be 0 or 1")),
    };
    let batch = dim(x, batch_axis, "data")?;
    if lengths {
        expect_shape(
            "sequence_length",
            input(ins, 1, "sequence_length")?,
            &[batch],
        )?;
    }
    Ok((axis, batch_axis))
}

fn arity(use_sequence_length: bool) -> (usize, usize) {
    if use_sequence_length {
        (2, 2)
    } else {
        (1, 1)
    }
}

impl OpDef for SequenceMask {
    fn arity(&self) -> (usize, usize) {
        arity(self.use_sequence_length)
    }

    fn validate(&self) -> R<()> {
        if self.axis > 1 {
            return Err(format!("axis {} must be 0 or 1", self.axis));
        }
        if self.value.is_nan() {
            return Err("value is NaN".into());
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        sequence_axes(ins, self.axis, self.use_sequence_length)?;
        Ok(vec![input(ins, 0, "data")?.to_vec()])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // The lengths may have any type.
        data_dtype(ins, 1)
    }
}

impl OpDef for SequenceReverse {
    fn arity(&self) -> (usize, usize) {
        arity(self.use_sequence_length)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        sequence_axes(ins, 0, self.use_sequence_length)?;
        Ok(vec![input(ins, 0, "data")?.to_vec()])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // The lengths may have any type.
        data_dtype(ins, 1)
    }
}

impl SequenceLast {
    /// The steps axis, 0 or 1.
    pub fn steps_axis(&self) -> R<usize> {
        match self.axis {
            0 => Ok(0),
            1 => Ok(1),
            a => Err(format!("axis {a} must be 0 or 1")),
        }
    }
}

impl OpDef for SequenceLast {
    fn arity(&self) -> (usize, usize) {
        arity(self.use_sequence_length)
    }

    fn validate(&self) -> R<()> {
        self.steps_axis().map(|_| ())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let (a, _) = sequence_axes(ins, self.steps_axis()?, self.use_sequence_length)?;
        let x = input(ins, 0, "data")?;
        if dim(x, a, "data")? == 0 {
            return Err("the sequence is empty".into());
        }
        let mut out = x.to_vec();
        out.remove(a);
        Ok(vec![out])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // The lengths may have any type.
        data_dtype(ins, 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn lengths_are_one_per_sequence_on_the_other_axis() {
        let mask = |axis| SequenceMask {
            axis,
            value: 0.0,
            use_sequence_length: true,
        };
        assert_eq!(
            mask(0).infer(&[Some(&[4, 3, 2]), Some(&[3])]).unwrap(),
            vec![vec![4, 3, 2]]
        );
        assert!(mask(0).infer(&[Some(&[4, 3, 2]), Some(&[4])]).is_err());
        assert!(mask(1).infer(&[Some(&[4, 3, 2]), Some(&[4])]).is_ok());
        assert!(mask(2).validate().is_err());
        assert!(mask(0).infer(&[Some(&[4]), Some(&[4])]).is_err());
        let last = |axis| SequenceLast {
            axis,
            use_sequence_length: true,
        };
        assert_eq!(
            last(1).infer(&[Some(&[4, 3, 2]), Some(&[4])]).unwrap(),
            vec![vec![4, 2]]
        );
        assert!(last(-1).validate().is_err());
        let rev = SequenceReverse {
            use_sequence_length: false,
        };
        assert_eq!(rev.infer(&[Some(&[4, 3])]).unwrap(), vec![vec![4, 3]]);
        // Graphs written before lengths: the flag defaults to false.
        let old: SequenceLast = serde_json::from_str(r#"{"axis": 1}"#).unwrap();
        assert!(!old.use_sequence_length);
    }
}
