//! The reference interpreter's array: a shape and row-major `f64` values.

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::{KResult, KernelError};

/// The most elements one array may hold (2^30, as ward's shape inference allows).
pub const MAX_ELEMENTS: usize = 1 << 30;

/// A dense row-major array of `f64`. Rank 0 (`shape == []`) holds one value.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// The number of elements of `shape`, checked against overflow and [`MAX_ELEMENTS`].
pub fn element_count(shape: &[usize]) -> KResult<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                KernelError::new(
                    "array",
                    format!("shape {shape:?} has more than {MAX_ELEMENTS} elements"),
                )
            })?;
    }
    Ok(n)
}

/// Row-major strides of `shape` (in elements).
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Every index of `shape` in row-major order (one empty index for rank 0, none when a
/// dim is 0).
pub fn indices(shape: &[usize]) -> Indices {
    Indices {
        shape: shape.to_vec(),
        next: if shape.contains(&0) {
            None
        } else {
            Some(vec![0; shape.len()])
        },
    }
}

/// The iterator of [`indices`].
pub struct Indices {
    shape: Vec<usize>,
    next: Option<Vec<usize>>,
}

impl Iterator for Indices {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        let current = self.next.take()?;
        let mut following = current.clone();
        let mut axis = following.len();
        loop {
            if axis == 0 {
                // Wrapped past the first axis: `current` was the last index.
                break;
            }
            axis -= 1;
            following[axis] += 1;
            if following[axis] < self.shape[axis] {
                self.next = Some(following);
                break;
            }
            following[axis] = 0;
        }
        Some(current)
    }
}

impl Array {
    /// An array from its shape and row-major values; the lengths must agree.
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> KResult<Array> {
        let n = element_count(&shape)?;
        if n != data.len() {
            return Err(KernelError::new(
                "array",
                format!(
                    "shape {shape:?} holds {n} elements but {} values were given",
                    data.len()
                ),
            ));
        }
        Ok(Array { shape, data })
    }

    /// An array of `value` everywhere.
    pub fn full(shape: Vec<usize>, value: f64) -> KResult<Array> {
        let n = element_count(&shape)?;
        Ok(Array {
            shape,
            data: vec![value; n],
        })
    }

    pub fn zeros(shape: Vec<usize>) -> KResult<Array> {
        Array::full(shape, 0.0)
    }

    /// An array from float32 values, widened exactly.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> KResult<Array> {
        Array::new(shape, values.iter().map(|&v| f64::from(v)).collect())
    }

    /// A rank-0 array.
    pub fn scalar(value: f64) -> Array {
        Array {
            shape: vec![],
            data: vec![value],
        }
    }

    /// A rank-1 array.
    pub fn vector(values: &[f64]) -> Array {
        Array {
            shape: vec![values.len()],
            data: values.to_vec(),
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Row-major strides of this array.
    pub fn strides(&self) -> Vec<usize> {
        strides(&self.shape)
    }

    /// The flat position of `index`, checked against the shape.
    pub fn offset(&self, index: &[usize]) -> KResult<usize> {
        if index.len() != self.shape.len() {
            return Err(KernelError::new(
                "array",
                format!("index {index:?} does not have rank {}", self.shape.len()),
            ));
        }
        let mut off = 0;
        for (i, (&x, &d)) in index.iter().zip(&self.shape).enumerate() {
            if x >= d {
                return Err(KernelError::new(
                    "array",
                    format!(
                        "index {index:?} is out of bounds for shape {:?} at axis {i}",
                        self.shape
                    ),
                ));
            }
            off = off * d + x;
        }
        Ok(off)
    }

    /// The value at `index`, checked.
    pub fn get(&self, index: &[usize]) -> KResult<f64> {
        let off = self.offset(index)?;
        Ok(self.data[off])
    }

    /// Sets the value at `index`, checked.
    pub fn set(&mut self, index: &[usize], value: f64) -> KResult<()> {
        let off = self.offset(index)?;
        self.data[off] = value;
        Ok(())
    }

    /// The same values under another shape of the same element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> KResult<Array> {
        Array::new(shape, self.data.clone())
    }

    /// `f` applied to every element.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Array {
        Array {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    /// Checks the rank, naming the operator and the argument.
    pub fn expect_rank(&self, op: &'static str, what: &str, rank: usize) -> KResult<()> {
        if self.rank() != rank {
            return Err(KernelError::new(
                op,
                format!("{what} must have rank {rank}, got shape {:?}", self.shape),
            ));
        }
        Ok(())
    }

    /// Checks the exact shape, naming the operator and the argument.
    pub fn expect_shape(&self, op: &'static str, what: &str, shape: &[usize]) -> KResult<()> {
        if self.shape != shape {
            return Err(KernelError::new(
                op,
                format!("{what} must have shape {shape:?}, got {:?}", self.shape),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_checks_lengths() {
        assert!(Array::new(vec![2, 3], vec![0.0; 6]).is_ok());
        let e = Array::new(vec![2, 3], vec![0.0; 5]).unwrap_err();
        assert!(e.reason.contains("6 elements"), "{e}");
        assert!(Array::zeros(vec![usize::MAX, 2]).is_err());
        assert!(Array::zeros(vec![1 << 20, 1 << 11]).is_err());
        assert_eq!(Array::scalar(2.5).len(), 1);
        assert_eq!(Array::zeros(vec![3, 0]).unwrap().len(), 0);
    }

    #[test]
    fn checked_indexing() {
        let mut a = Array::new(vec![2, 3], (0..6).map(f64::from).collect()).unwrap();
        assert_eq!(a.strides(), vec![3, 1]);
        assert_eq!(a.get(&[1, 2]).unwrap(), 5.0);
        assert!(a.get(&[2, 0]).is_err());
        assert!(a.get(&[0, 3]).is_err());
        assert!(a.get(&[0]).is_err());
        a.set(&[0, 1], 9.0).unwrap();
        assert_eq!(a.data[1], 9.0);
        assert_eq!(Array::scalar(4.0).get(&[]).unwrap(), 4.0);
    }

    #[test]
    fn indices_are_row_major() {
        let all: Vec<Vec<usize>> = indices(&[2, 3]).collect();
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], vec![0, 0]);
        assert_eq!(all[1], vec![0, 1]);
        assert_eq!(all[3], vec![1, 0]);
        assert_eq!(all[5], vec![1, 2]);
        assert_eq!(indices(&[]).count(), 1);
        assert_eq!(indices(&[3, 0, 2]).count(), 0);
        let a = Array::zeros(vec![2, 3, 4]).unwrap();
        for (flat, idx) in indices(&a.shape).enumerate() {
            assert_eq!(a.offset(&idx).unwrap(), flat);
        }
    }
}
