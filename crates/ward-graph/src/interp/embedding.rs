//! Embedding (MXNet 1.9.1 `Embedding`).

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::{Array, KResult, KernelError};

/// The row MXNet's Embedding reads for id `v` of a table with `input_dim` rows: the id
/// is truncated toward zero and clipped to [0, input_dim − 1] (−3 → 0, 2.7 → 2,
/// input_dim + 5 → input_dim − 1). A NaN id reads row 0 (checked against MXNet 1.9.1).
pub fn embedding_row(v: f64, input_dim: usize) -> usize {
    if v.is_nan() || v < 1.0 {
        return 0;
    }
    let last = input_dim.saturating_sub(1);
    let t = v.trunc();
    if t >= last as f64 {
        last
    } else {
        t as usize
    }
}

/// MXNet `Embedding`: `weight` is (input_dim, output_dim); the output has shape
/// `ids.shape + (output_dim,)`, each id replaced by its row (see [`embedding_row`]).
pub fn embedding(ids: &Array, weight: &Array) -> KResult<Array> {
    const OP: &str = "Embedding";
    weight.expect_rank(OP, "weight", 2)?;
    let (rows, dim) = (weight.shape[0], weight.shape[1]);
    if rows == 0 {
        return Err(KernelError::new(OP, "the weight has no rows"));
    }
    let mut shape = ids.shape.clone();
    shape.push(dim);
    let mut data = Vec::with_capacity(ids.len().saturating_mul(dim));
    for &v in &ids.data {
        let r = embedding_row(v, rows);
        data.extend_from_slice(&weight.data[r * dim..(r + 1) * dim]);
    }
    Array::new(shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_truncated_and_clipped() {
        let rows: Vec<usize> = [-3.0, -0.5, 0.5, 2.7, 3.9, 4.0, 9.0, f64::NAN, f64::INFINITY]
            .iter()
            .map(|&v| embedding_row(v, 4))
            .collect();
        assert_eq!(rows, vec![0, 0, 0, 2, 3, 3, 3, 0, 3]);
        let w = Array::new(vec![3, 2], vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]).unwrap();
        let ids = Array::new(vec![2, 1], vec![1.9, 7.0]).unwrap();
        let y = embedding(&ids, &w).unwrap();
        assert_eq!(y.shape, vec![2, 1, 2]);
        assert_eq!(y.data, vec![10.0, 11.0, 20.0, 21.0]);
        assert!(embedding(&ids, &Array::zeros(vec![0, 2]).unwrap()).is_err());
        assert!(embedding(&ids, &Array::zeros(vec![6]).unwrap()).is_err());
    }
}
