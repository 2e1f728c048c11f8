//! Matrix products `C ← α·A·B + β·C` on strided `f32` matrices, behind a safe API.
//!
//! The matrix-multiply crate takes raw pointers and strides; [`gemm`] checks, with
//! checked arithmetic, that every element each matrix addresses lies inside its slice and
//! that no two elements of `C` share memory, then calls bluss's `matrixmultiply`. Transposes are views
//! ([`MatRef::t`]), never copies.

#![allow(
    unsafe_code,
    reason = "the matrix-multiply crate's entry point takes raw pointers (`gemm` checks every bound first); `gemm_short` runs an AVX-512 kernel once the feature is detected, whose vector loads and stores stay inside checked slices"
)]

use crate::error::KernelError;

const KERNEL: &str = "matmul";

/// A read-only strided matrix over a slice: element `(i, j)` is
/// `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix filling `data` exactly.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A strided view; every addressed element must lie inside `data`.
    pub fn strided(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, KernelError> {
        check_extent("A or B", data.len(), rows, cols, row_stride, col_stride)?;
        Ok(MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// A writable strided matrix. Its elements never overlap: it is row-major with
/// `row_stride ≥ cols` or column-major with `col_stride ≥ rows`.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows × cols` matrix filling `data` exactly.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A strided view; every addressed element must lie inside `data`, and no two may
    /// share memory.
    pub fn strided(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, KernelError> {
        check_extent("C", data.len(), rows, cols, row_stride, col_stride)?;
        let distinct = rows <= 1 && (cols <= 1 || col_stride >= 1)
            || cols <= 1 && row_stride >= 1
            || col_stride == 1 && row_stride >= cols
            || row_stride == 1 && col_stride >= rows;
        if !distinct {
            return Err(KernelError::geometry(
                KERNEL,
                format!(
                    "C ({rows}×{cols}, strides {row_stride} and {col_stride}) would write one element twice"
                ),
            ));
        }
        Ok(MatMut {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }
}

/// Checks that the last element a matrix addresses lies inside a slice of `len`.
fn check_extent(
    argument: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
) -> Result<(), KernelError> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1)
        .checked_mul(row_stride)
        .zip((cols - 1).checked_mul(col_stride))
        .and_then(|(a, b)| a.checked_add(b));
    match last {
        Some(last) if last < len && isize::try_from(last).is_ok() => Ok(()),
        _ => Err(KernelError::geometry(
            KERNEL,
            format!(
                "{argument} ({rows}×{cols}, strides {row_stride} and {col_stride}) reaches past its {len} elements"
            ),
        )),
    }
}

/// `C ← α·A·B + β·C` on one thread. With `β = 0`, `C`'s old contents are not read (NaN
/// in them does not leak through).
pub fn gemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    if a.cols != b.rows || a.rows != c.rows || b.cols != c.cols {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "A is {}×{}, B {}×{}, C {}×{}: the shapes do not chain",
                a.rows, a.cols, b.rows, b.cols, c.rows, c.cols
            ),
        ));
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // An empty sum: C ← β·C (and 0 where β is 0, whatever C held).
        for i in 0..m {
            for j in 0..n {
                let at = i * c.row_stride + j * c.col_stride;
                if let Some(v) = c.data.get_mut(at) {
                    *v = if beta == 0.0 { 0.0 } else { beta * *v };
                }
            }
        }
        return Ok(());
    }
    // Strides fit in isize: check_extent checked the largest offset each one reaches.
    let stride = |s: usize| isize::try_from(s).unwrap_or(isize::MAX);
    // SAFETY: `MatRef::strided`/`MatMut::strided` checked that every element
    // (i, j) with i < rows, j < cols of A, B and C lies inside its slice; the
    // shapes chain (checked above), so the crate reads A[m×k], B[k×n] and
    // writes C[m×n] only; `MatMut` guarantees C's elements are distinct, and C
    // is a unique borrow, so it aliases neither A nor B.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            stride(a.row_stride),
            stride(a.col_stride),
            b.data.as_ptr(),
            stride(b.row_stride),
            stride(b.col_stride),
            beta,
            c.data.as_mut_ptr(),
            stride(c.row_stride),
            stride(c.col_stride),
        );
    }
    Ok(())
}

/// Up to this many rows, [`gemm_parallel`]'s products go through [`gemm_short`].
const SHORT_MAX_ROWS: usize = 64;
/// Columns of `C` one tile of [`gemm_short`] keeps in registers (two 16-lane vectors).
const SHORT_COLUMNS: usize = 32;
/// Rows of `C` one tile of [`gemm_short`] keeps in registers.
const SHORT_ROWS: usize = 8;
/// The slice of the sum [`gemm_short`] adds to `C` at a time: the matrix crate's `KC`.
const SHORT_DEPTH: usize = 256;

/// `C ← A·B + β·C`, the same as [`gemm`] with α = 1 and the same bits, faster for a short
/// `C` (an RNN step's 32 rows by 1,024): the matrix crate packs all of `B` on every call,
/// which for 32 rows costs a third as much as the multiplications, where this reads `B`
/// in place, a strip of 32 columns at a time that stays in the L1 cache while the rows
/// of `C` pass over it. Each element is summed over `k` in the matrix crate's order
/// (fused multiply-adds in slices of 256, each added to `C` as it ends). It needs AVX-512,
/// rows of unit column stride and β of 0 or 1; otherwise it is [`gemm`].
pub fn gemm_short(
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    if a.cols != b.rows || a.rows != c.rows || b.cols != c.cols {
        return gemm(1.0, a, b, beta, c);
    }
    #[cfg(target_arch = "x86_64")]
    {
        let unit = a.col_stride == 1 && b.col_stride == 1 && c.col_stride == 1;
        let (m, k, n) = (a.rows, a.cols, b.cols);
        if unit
            && (beta == 0.0 || beta == 1.0)
            && m > 0
            && k > 0
            && n > 0
            && std::arch::is_x86_feature_detected!("avx512f")
        {
            // SAFETY: the CPU has AVX-512F (detected just above), the only requirement of
            // `short_avx512`; it reads and writes only through slice indexing, at
            // elements (i, j) of views that `MatRef::strided`/`MatMut::strided` checked
            // lie inside their slices, with unit column strides (checked above).
            unsafe { short_avx512(a, b, beta, c) };
            return Ok(());
        }
    }
    gemm(1.0, a, b, beta, c)
}

/// [`gemm_short`] with AVX-512: a tile of `SHORT_ROWS` rows by `SHORT_COLUMNS` columns of
/// `C` is 16 vector registers, summed over `k` with one fused multiply-add per register
/// per step; the columns past the last full tile are summed the same way one element at
/// a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(
    clippy::indexing_slicing,
    reason = "every index addresses an element (i, j) inside a view's rows and columns, which MatRef/MatMut checked lie inside their slices"
)]
fn short_avx512(a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    const LANES: usize = 16;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let (lda, ldb, ldc) = (a.row_stride, b.row_stride, c.row_stride);
    let (a, b, c) = (a.data, b.data, c.data);
    // a_cols[block·k + p][r] = A[block·SHORT_ROWS + r][p] (zero past the last row).
    let blocks = m.div_ceil(SHORT_ROWS);
    let mut a_cols = vec![[0.0f32; SHORT_ROWS]; blocks * k];
    for i in 0..m {
        let (block, r) = (i / SHORT_ROWS, i % SHORT_ROWS);
        for (p, &x) in a[i * lda..][..k].iter().enumerate() {
            a_cols[block * k + p][r] = x;
        }
    }
    let full_cols = n - n % SHORT_COLUMNS;
    for (slice, p0) in (0..k).step_by(SHORT_DEPTH).enumerate() {
        let depth = SHORT_DEPTH.min(k - p0);
        // The first slice overwrites C when β = 0; every later one adds to it.
        let add = beta != 0.0 || slice > 0;
        for j0 in (0..full_cols).step_by(SHORT_COLUMNS) {
            for block in 0..blocks {
                let i0 = block * SHORT_ROWS;
                let rows = SHORT_ROWS.min(m - i0);
                let mut acc: [__m512; 2 * SHORT_ROWS] = [_mm512_setzero_ps(); 2 * SHORT_ROWS];
                for (p, x) in a_cols[block * k + p0..][..depth].iter().enumerate() {
                    let w = &b[(p0 + p) * ldb + j0..][..SHORT_COLUMNS];
                    // SAFETY: `w` holds SHORT_COLUMNS = 2·LANES values, so both
                    // unaligned 16-lane loads read inside it.
                    let (w0, w1) = unsafe {
                        (
                            _mm512_loadu_ps(w.as_ptr()),
                            _mm512_loadu_ps(w.as_ptr().add(LANES)),
                        )
                    };
                    for r in 0..SHORT_ROWS {
                        let xr = _mm512_set1_ps(x[r]);
                        acc[2 * r] = _mm512_fmadd_ps(xr, w0, acc[2 * r]);
                        acc[2 * r + 1] = _mm512_fmadd_ps(xr, w1, acc[2 * r + 1]);
                    }
                }
                for r in 0..rows {
                    let out = &mut c[(i0 + r) * ldc + j0..][..SHORT_COLUMNS];
                    for half in 0..2 {
                        let out = &mut out[half * LANES..][..LANES];
                        let mut v = acc[2 * r + half];
                        if add {
                            // SAFETY: `out` holds LANES values.
                            v = _mm512_add_ps(unsafe { _mm512_loadu_ps(out.as_ptr()) }, v);
                        }
                        // SAFETY: `out` holds LANES values and is borrowed mutably here.
                        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
                    }
                }
            }
        }
        for i in 0..m {
            for j in full_cols..n {
                let mut sum = 0.0f32;
                for p in p0..p0 + depth {
                    sum = a[i * lda + p].mul_add(b[p * ldb + j], sum);
                }
                let out = &mut c[i * ldc + j];
                *out = if add { *out + sum } else { sum };
            }
        }
    }
}

/// Below this many rows of `C` per thread, a product wide enough is split by columns.
const MIN_ROWS_PER_TASK: usize = 64;
/// The fewest columns of `C` a task takes when the product is split by columns.
const MIN_COLS_PER_TASK: usize = 64;

/// `C ← α·A·B + β·C` for a row-major `C` filling `c`, across rayon's threads: split by
/// rows of `C`, or, for a short and wide `C` (an RNN's step: 32 rows by 1,024), by
/// columns, so that each thread packs only its own part of `B` rather than all of it.
/// Each element is the same sum in the same order however the product is split, so the
/// result does not depend on the thread count.
pub fn gemm_parallel(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
) -> Result<(), KernelError> {
    use rayon::prelude::*;
    let (m, n) = (a.rows, b.cols);
    crate::error::check_len(KERNEL, "C", c.len(), m.saturating_mul(n))?;
    if a.cols != b.rows {
        return Err(KernelError::geometry(
            KERNEL,
            format!("A is {}×{}, B {}×{}", a.rows, a.cols, b.rows, b.cols),
        ));
    }
    if n == 0 || m == 0 {
        return Ok(());
    }
    let threads = rayon::current_num_threads().max(1);
    if threads > 1
        && m < threads.saturating_mul(MIN_ROWS_PER_TASK)
        && n >= threads.saturating_mul(MIN_COLS_PER_TASK)
    {
        return gemm_column_blocks(alpha, a, b, beta, c, n.div_ceil(threads));
    }
    let rows_per_task = m.div_ceil(threads).max(1);
    c.par_chunks_mut(rows_per_task * n)
        .enumerate()
        .try_for_each(|(t, c_part)| {
            let first = t * rows_per_task;
            let rows = c_part.len() / n;
            let a_part = MatRef::strided(
                a.data.get(first * a.row_stride..).unwrap_or(&[]),
                rows,
                a.cols,
                a.row_stride,
                a.col_stride,
            )?;
            product(alpha, a_part, b, beta, MatMut::row_major(c_part, rows, n)?)
        })
}

/// One task's product in [`gemm_parallel`]: [`gemm_short`] for a short `C`, else [`gemm`].
fn product(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    if alpha == 1.0 && a.rows <= SHORT_MAX_ROWS {
        gemm_short(a, b, beta, c)
    } else {
        gemm(alpha, a, b, beta, c)
    }
}

/// [`gemm_parallel`] split into blocks of `cols_per_task` columns of `C`: each task
/// computes its block into a buffer of its own (a row-major `C` cannot be cut into
/// column blocks of disjoint slices), and the blocks are then copied into `c`.
fn gemm_column_blocks(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    cols_per_task: usize,
) -> Result<(), KernelError> {
    use rayon::prelude::*;
    let (m, n) = (a.rows, b.cols);
    let tasks = n.div_ceil(cols_per_task);
    let old: &[f32] = c;
    let blocks: Vec<Vec<f32>> = (0..tasks)
        .into_par_iter()
        .map(|t| {
            let first = t * cols_per_task;
            let cols = cols_per_task.min(n - first);
            let mut block = vec![0.0f32; m * cols];
            if beta != 0.0 {
                // β·C reads C's old block (and with β = 0 nothing of it, as `gemm`).
                for (row, old) in block.chunks_exact_mut(cols).zip(old.chunks_exact(n)) {
                    if let Some(old) = old.get(first..first + cols) {
                        row.copy_from_slice(old);
                    }
                }
            }
            let b_part = MatRef::strided(
                b.data.get(first * b.col_stride..).unwrap_or(&[]),
                b.rows,
                cols,
                b.row_stride,
                b.col_stride,
            )?;
            product(
                alpha,
                a,
                b_part,
                beta,
                MatMut::row_major(&mut block, m, cols)?,
            )?;
            Ok(block)
        })
        .collect::<Result<_, KernelError>>()?;
    for (t, block) in blocks.iter().enumerate() {
        let first = t * cols_per_task;
        let cols = block.len() / m;
        for (row, part) in c.chunks_exact_mut(n).zip(block.chunks_exact(cols)) {
            if let Some(dst) = row.get_mut(first..first + cols) {
                dst.copy_from_slice(part);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_reaching_past_their_slice_are_refused() {
        let data = [0.0f32; 6];
        assert!(MatRef::row_major(&data, 2, 3).is_ok());
        assert!(MatRef::row_major(&data, 3, 3).is_err());
        assert!(MatRef::strided(&data, 2, 2, 5, 1).is_err());
        let mut out = [0.0f32; 6];
        assert!(
            MatMut::strided(&mut out, 2, 3, 0, 1).is_err(),
            "rows sharing memory"
        );
        assert!(
            MatMut::strided(&mut out, 3, 2, 1, 3).is_ok(),
            "column-major"
        );
    }

    #[test]
    fn transposed_views_multiply() {
        // A = [[1,2,3],[4,5,6]] stored transposed; B = [[1,0],[0,1],[1,1]].
        let a_t = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        {
            let mut c = [f32::NAN; 4];
            let a = MatRef::row_major(&a_t, 3, 2).unwrap().t();
            let b = MatRef::row_major(&b, 3, 2).unwrap();
            gemm(1.0, a, b, 0.0, MatMut::row_major(&mut c, 2, 2).unwrap()).unwrap();
            assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
            gemm(2.0, a, b, 1.0, MatMut::row_major(&mut c, 2, 2).unwrap()).unwrap();
            assert_eq!(c, [12.0, 15.0, 30.0, 33.0]);
        }
    }
}
