//! A fully connected layer's three products, `y = x·wᵀ (+ bias)`, `dx = dy·w` and `dw =
//! dyᵀ·x`, for `x` of `rows × inner` and `w` of `units × inner`. Where the CPU has
//! AVX-512F they run on the direct kernel's tiles ([`direct::product`]), which read `x`,
//! `dy` and `dyᵀ` in place through offsets and need only `w` (forward) laid out: on the
//! LSTM language model's output layer (1,120 × 256 × 10,000) the matrix crate ran at
//! about 160 GFLOP/s, spending an eighth of its time packing. Elsewhere the matrix
//! crate runs them.

use crate::direct::{self, WeightStrips};
use crate::error::check_len;
use crate::matmul::{gemm_parallel, MatRef};
use crate::KernelError;

const KERNEL: &str = "dense";

/// A fully connected layer's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dense {
    pub rows: usize,
    pub inner: usize,
    pub units: usize,
}

impl Dense {
    fn own_kernels() -> bool {
        crate::panels::available()
    }

    /// The lengths of a product's operands, named as the caller names them: the
    /// layer's input side (`x` or `dx`, rows × inner), its weight side (`w` or `dw`,
    /// units × inner), its output side (`y` or `dy`, rows × units).
    fn check(
        &self,
        (x_name, x): (&'static str, usize),
        (w_name, w): (&'static str, usize),
        (y_name, y): (&'static str, usize),
    ) -> Result<(), KernelError> {
        check_len(KERNEL, x_name, x, self.rows.saturating_mul(self.inner))?;
        check_len(KERNEL, w_name, w, self.units.saturating_mul(self.inner))?;
        check_len(KERNEL, y_name, y, self.rows.saturating_mul(self.units))
    }

    /// `y = x·wᵀ`, plus `bias` on every row when given (`y` overwritten).
    pub fn forward(
        &self,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<(), KernelError> {
        self.check(("x", x.len()), ("w", w.len()), ("y", y.len()))?;
        if let Some(b) = bias {
            check_len(KERNEL, "bias", b.len(), self.units)?;
        }
        let w_matrix = MatRef::row_major(w, self.units, self.inner)?;
        if Self::own_kernels() {
            let (rows, cols) = (strided(self.rows, self.inner), strided(self.inner, 1));
            return direct::product(x, &rows, &cols, &WeightStrips::new(w_matrix), bias, y);
        }
        let x = MatRef::row_major(x, self.rows, self.inner)?;
        let beta = match bias {
            Some(b) => {
                for row in y.chunks_exact_mut(self.units.max(1)) {
                    row.copy_from_slice(b);
                }
                1.0
            }
            None => 0.0,
        };
        gemm_parallel(1.0, x, w_matrix.t(), beta, y)
    }

    /// `dx = dy·w` (`dx` overwritten).
    pub fn backward_data(&self, dy: &[f32], w: &[f32], dx: &mut [f32]) -> Result<(), KernelError> {
        self.check(("dx", dx.len()), ("w", w.len()), ("dy", dy.len()))?;
        let w = MatRef::row_major(w, self.units, self.inner)?;
        if Self::own_kernels() {
            let (rows, cols) = (strided(self.rows, self.units), strided(self.units, 1));
            return direct::product(dy, &rows, &cols, &WeightStrips::of_matrix(w), None, dx);
        }
        let dy = MatRef::row_major(dy, self.rows, self.units)?;
        gemm_parallel(1.0, dy, w, 0.0, dx)
    }

    /// `dw = dyᵀ·x` (`dw` overwritten).
    pub fn backward_weight(
        &self,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
    ) -> Result<(), KernelError> {
        self.check(("x", x.len()), ("dw", dw.len()), ("dy", dy.len()))?;
        let x = MatRef::row_major(x, self.rows, self.inner)?;
        if Self::own_kernels() {
            // dyᵀ read in place: its row u is dy's column u.
            let (rows, cols) = (strided(self.units, 1), strided(self.rows, self.units));
            return direct::product(dy, &rows, &cols, &WeightStrips::of_matrix(x), None, dw);
        }
        let dy = MatRef::row_major(dy, self.rows, self.units)?;
        gemm_parallel(1.0, dy.t(), x, 0.0, dw)
    }
}

/// `count` offsets `step` apart from 0: a matrix's rows or columns for [`direct::product`].
fn strided(count: usize, step: usize) -> Vec<usize> {
    (0..count).map(|i| i * step).collect()
}

/// `bytes` as the float32 values they hold (little-endian, as ward's weights files store
/// them), read in place: when they lie on a float's alignment and their length is a
/// whole number of floats, on a little-endian CPU; `None` otherwise, and the caller reads
/// them one value at a time.
///
/// Why: a dense layer's weight is read where the package left it (a model's largest
/// tensor: VGG's first dense layer, doublehead R-CNN's 411 MB head), and the matrix
/// products take float slices.
#[allow(
    unsafe_code,
    reason = "reinterpreting aligned bytes as floats; `align_to` keeps the view inside the slice"
)]
pub fn floats_in_place(bytes: &[u8]) -> Option<&[f32]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: every 4-byte pattern is a valid `f32`, so the aligned middle part `align_to`
    // returns is a valid `[f32]` over bytes the slice owns; a misaligned start or a
    // trailing partial float leaves a non-empty prefix or suffix, refused below.
    let (prefix, floats, suffix) = unsafe { bytes.align_to::<f32>() };
    (prefix.is_empty() && suffix.is_empty()).then_some(floats)
}

#[cfg(test)]
mod in_place_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::floats_in_place;

    #[test]
    fn aligned_bytes_are_their_floats_and_misaligned_ones_are_refused() {
        let values = [1.5f32, -2.25, f32::MAX, 0.0];
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.extend([0; 3]);
        // One of the first four offsets is aligned; the others are refused, and a
        // partial float at the end is refused at every offset.
        let mut seen = 0;
        for start in 0..4 {
            let whole = &bytes[start..start + 16];
            if let Some(floats) = floats_in_place(whole) {
                seen += 1;
                let want: Vec<f32> = whole
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                assert_eq!(floats, want.as_slice());
            }
            assert!(floats_in_place(&bytes[start..start + 15]).is_none());
        }
        assert_eq!(seen, 1);
    }
}
