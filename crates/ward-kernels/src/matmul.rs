//! Matrix products `C ← α·A·B + β·C` on strided `f32` matrices, behind a safe API.
//!
//! The matrix-multiply crate takes raw pointers and strides; [`gemm`] checks, with
//! checked arithmetic, that every element each matrix addresses lies inside its slice and
//! that no two elements of `C` share memory, then calls bluss's `matrixmultiply`. Transposes are views
//! ([`MatRef::t`]), never copies.

#![allow(
    unsafe_code,
    reason = "the matrix-multiply crate's entry point takes raw pointers (`gemm_packed` checks every bound first); `gemm` runs an AVX-512 kernel once the feature is detected, whose vector loads and stores stay inside checked slices"
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

    /// Element `(i, j)`; `i < rows` and `j < cols`, which the view's check keeps inside
    /// its slice.
    #[allow(
        clippy::indexing_slicing,
        reason = "an element inside the view's rows and columns, which `strided` checked lie inside its slice"
    )]
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }

    /// `len` values of row `i` from column `j` on, when they are contiguous (unit column
    /// stride) and inside the view.
    pub(crate) fn row_segment(&self, i: usize, j: usize, len: usize) -> Option<&'a [f32]> {
        if self.col_stride != 1 || i >= self.rows || j.checked_add(len)? > self.cols {
            return None;
        }
        self.data.get(i * self.row_stride + j..)?.get(..len)
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

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub(crate) fn row_stride(&self) -> usize {
        self.row_stride
    }

    pub(crate) fn col_stride(&self) -> usize {
        self.col_stride
    }

    /// The slice the view was checked against.
    pub(crate) fn into_data(self) -> &'a mut [f32] {
        self.data
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

/// Checks that `A·B` has `C`'s shape.
fn check_chain(a: &MatRef<'_>, b: &MatRef<'_>, c: &MatMut<'_>) -> Result<(), KernelError> {
    if a.cols != b.rows || a.rows != c.rows || b.cols != c.cols {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "A is {}×{}, B {}×{}, C {}×{}: the shapes do not chain",
                a.rows, a.cols, b.rows, b.cols, c.rows, c.cols
            ),
        ));
    }
    Ok(())
}

/// `C ← α·A·B + β·C` on one thread. With `β = 0`, `C`'s old contents are not read (NaN
/// in them does not leak through). On a CPU with AVX-512, a short product (at most
/// [`SHORT_MAX_ROWS`] rows) with α = 1, β of 0 or 1, `B` and `C` of unit column stride and
/// `A` of unit row or column stride runs on ward's own kernel (`no_pack_avx512`), which
/// reads `B` in place instead of packing it and gives the bits of [`gemm_packed`];
/// everything else runs on [`gemm_packed`]. Measured on this project's AVX-512 VM: an
/// RNN step's 32 × 256 × 1,024 against a weight the cache holds from the previous step,
/// 103 against 70 GFLOP/s, and the same speed on a fresh `B`; with 64 rows and a fresh
/// `B` (a convolution's columns) it was 10–25 % slower, and taller products gain
/// nothing, so those keep the matrix crate.
pub fn gemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    check_chain(&a, &b, &c)?;
    #[cfg(target_arch = "x86_64")]
    {
        let a_unit = a.col_stride == 1 || a.row_stride == 1;
        if a.rows <= SHORT_MAX_ROWS
            && a_unit
            && b.col_stride == 1
            && c.col_stride == 1
            && alpha == 1.0
            && (beta == 0.0 || beta == 1.0)
            && a.rows > 0
            && a.cols > 0
            && b.cols > 0
            && std::arch::is_x86_feature_detected!("avx512f")
        {
            // SAFETY: the CPU has AVX-512F (detected just above), the only requirement of
            // `no_pack_avx512`; it reads and writes through slice indexing only, at
            // elements (i, j) of views that `MatRef::strided`/`MatMut::strided` checked
            // lie inside their slices, and its vector loads and stores stay inside
            // checked sub-slices.
            unsafe { no_pack_avx512(a, b, beta, c) };
            return Ok(());
        }
    }
    gemm_packed(alpha, a, b, beta, c)
}

/// `C ← α·A·B + β·C` by the matrix crate (`matrixmultiply`, which packs both operands),
/// whatever the CPU: what [`gemm`] falls back to, public so that tests can hold `gemm`'s
/// own kernel to its bits.
pub fn gemm_packed(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    check_chain(&a, &b, &c)?;
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

/// The most rows of a product [`gemm`] runs on its own kernel.
pub const SHORT_MAX_ROWS: usize = 32;
/// Columns of `C` one tile of `no_pack_avx512` keeps in registers (two 16-lane vectors).
const TILE_COLUMNS: usize = 32;
/// Rows of `C` one tile of `no_pack_avx512` keeps in registers.
const TILE_ROWS: usize = 8;
/// The slice of the sum added to `C` at a time: the matrix crate's `KC`, so that each
/// element is summed in its order.
const SLICE_DEPTH: usize = 256;

/// [`gemm`] with AVX-512 for a short product, α = 1 and β of 0 or 1: a tile of
/// `TILE_ROWS` rows by `TILE_COLUMNS` columns of `C` is 16 vector registers, summed over
/// a slice of `k` with one fused multiply-add per register per step and added to `C` as
/// the slice ends (the first slice overwriting it when β = 0), as the matrix crate orders
/// the sums. `A` is laid out as 8-wide columns once per slice; `B` is read in place, a
/// strip of 32 columns by one slice (32 KiB, for the L1 cache) at a time while every row
/// of `C` passes over it, the last, narrower strip under lane masks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(
    clippy::indexing_slicing,
    reason = "every index addresses an element (i, j) inside a view's rows and columns, which MatRef/MatMut checked lie inside their slices"
)]
fn no_pack_avx512(a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
        _mm512_set1_ps, _mm512_setzero_ps,
    };
    const LANES: usize = 16;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let (ars, acs) = (a.row_stride, a.col_stride);
    let (ldb, ldc) = (b.row_stride, c.row_stride);
    let (a, b, c) = (a.data, b.data, c.data);
    let blocks = m.div_ceil(TILE_ROWS);
    let mut panel = vec![[0.0f32; TILE_ROWS]; blocks * SLICE_DEPTH];
    for (slice, p0) in (0..k).step_by(SLICE_DEPTH).enumerate() {
        let depth = SLICE_DEPTH.min(k - p0);
        let add = beta != 0.0 || slice > 0;
        // panel[block·depth + p][r] = A[block·TILE_ROWS + r][p0 + p], zero past the last
        // row.
        for block in 0..blocks {
            for (p, column) in panel[block * depth..][..depth].iter_mut().enumerate() {
                for (r, v) in column.iter_mut().enumerate() {
                    let i = block * TILE_ROWS + r;
                    *v = if i < m {
                        a[i * ars + (p0 + p) * acs]
                    } else {
                        0.0
                    };
                }
            }
        }
        for j0 in (0..n).step_by(TILE_COLUMNS) {
            // A strip narrower than a tile (the last) loads and stores under masks:
            // lanes past its width are neither read nor written.
            let width = TILE_COLUMNS.min(n - j0);
            let masks = two_vector_masks(width);
            for block in 0..blocks {
                let i0 = block * TILE_ROWS;
                let rows = TILE_ROWS.min(m - i0);
                let mut acc: [__m512; 2 * TILE_ROWS] = [_mm512_setzero_ps(); 2 * TILE_ROWS];
                for (p, x) in panel[block * depth..][..depth].iter().enumerate() {
                    let w = &b[(p0 + p) * ldb + j0..][..width];
                    // SAFETY: the masks enable exactly the lanes below `width`, and
                    // `w` holds `width` values: a masked load reads only enabled lanes.
                    let (w0, w1) = unsafe {
                        (
                            _mm512_maskz_loadu_ps(masks[0], w.as_ptr()),
                            _mm512_maskz_loadu_ps(masks[1], w.as_ptr().wrapping_add(LANES)),
                        )
                    };
                    for r in 0..TILE_ROWS {
                        let xr = _mm512_set1_ps(x[r]);
                        acc[2 * r] = _mm512_fmadd_ps(xr, w0, acc[2 * r]);
                        acc[2 * r + 1] = _mm512_fmadd_ps(xr, w1, acc[2 * r + 1]);
                    }
                }
                for r in 0..rows {
                    let out = &mut c[(i0 + r) * ldc + j0..][..width];
                    for (half, &mask) in masks.iter().enumerate() {
                        let at = out.as_mut_ptr().wrapping_add(half * LANES);
                        let mut v = acc[2 * r + half];
                        if add {
                            // SAFETY: `mask` enables only lanes inside `out`'s `width`
                            // values.
                            v = _mm512_add_ps(unsafe { _mm512_maskz_loadu_ps(mask, at) }, v);
                        }
                        // SAFETY: as above; `out` is borrowed mutably here, and a
                        // masked store writes only enabled lanes.
                        unsafe { _mm512_mask_storeu_ps(at, mask, v) };
                    }
                }
            }
        }
    }
}

/// The lane masks of two 16-lane vectors covering `width` values (at most 32): lanes
/// past `width` are neither read nor written by a masked load or store.
pub(crate) fn two_vector_masks(width: usize) -> [u16; 2] {
    let lanes = |first: usize| -> u16 {
        match width.saturating_sub(first) {
            0 => 0,
            w if w >= 16 => u16::MAX,
            w => (1u16 << w) - 1,
        }
    };
    [lanes(0), lanes(16)]
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
            gemm(alpha, a_part, b, beta, MatMut::row_major(c_part, rows, n)?)
        })
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
            gemm(
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
