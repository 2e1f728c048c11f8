//! ward's own matrix product on operands laid out in panels, for the products a
//! convolution repeats: `C ← A·B (+ C)` where `A` (a layer's weight) is packed once per
//! call and shared by every thread, and `B` (an image's patches, or an output gradient)
//! is packed straight from where it lies, so that no column matrix is written and then
//! packed again.
//!
//! The layout is the matrix crate's idea (Goto's): `A` in panels of [`MR`] rows by a
//! slice of [`SLICE_DEPTH`], interleaved by depth; `B` in panels of [`NR`] columns by a
//! slice, row after row. One tile of `MR × NR` results sits in 16 vector registers while
//! a slice is summed with one fused multiply-add per register per step, and is added to
//! `C` as the slice ends: the order in which `matrixmultiply` sums each element, so a
//! product here has the bits of [`crate::matmul::gemm_packed`]'s (property-tested).
//!
//! The kernel needs AVX-512F; [`available`] says whether this CPU has it, and callers
//! keep the matrix crate's path for the others.

#![allow(
    unsafe_code,
    reason = "the tile kernel is AVX-512 intrinsics, run only once the CPU feature is detected; its loads and stores stay inside panels and a C tile whose lengths `gemm_panels` checked"
)]
#![allow(
    clippy::indexing_slicing,
    reason = "panel offsets are below lengths computed from the same counts when the panels were allocated; the property tests cover ragged edges"
)]

use rayon::prelude::*;

use crate::error::{check_len, KernelError};
use crate::matmul::{MatMut, MatRef};

const KERNEL: &str = "gemm_panels";

/// Rows of `A` (and of `C`) in one panel and one tile.
pub const MR: usize = 8;
/// Columns of `B` (and of `C`) in one panel and one tile: two 16-lane vectors.
pub const NR: usize = 32;
/// Depth of a slice: the matrix crate's `KC`, so that every element is summed in its
/// order.
pub const SLICE_DEPTH: usize = 256;

/// Whether this CPU runs [`gemm_panels`] (AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Offset of the panel of slice `s` and block `b` among `blocks` blocks of `width`
/// (`MR` or `NR`) for a sum `k` deep: every slice before `s` is a full one.
fn panel_offset(k: usize, blocks: usize, width: usize, s: usize, b: usize) -> usize {
    let depth = SLICE_DEPTH.min(k - s * SLICE_DEPTH);
    (s * SLICE_DEPTH * blocks + b * depth) * width
}

/// `A` (`m × k`) in panels of [`MR`] rows, rows past `m` zero.
#[derive(Debug, Clone)]
pub struct PanelsA {
    data: Vec<f32>,
    m: usize,
    k: usize,
}

impl PanelsA {
    /// Lays out `a`.
    #[allow(
        clippy::many_single_char_names,
        reason = "m, k, s, b, p, r are the product's own names"
    )]
    pub fn new(a: MatRef<'_>) -> PanelsA {
        let (m, k) = (a.rows(), a.cols());
        let blocks = m.div_ceil(MR);
        let mut data = vec![0.0f32; blocks * MR * k];
        // Slices are laid out one after another, so threads fill them side by side.
        let slice_len = SLICE_DEPTH * blocks * MR;
        data.par_chunks_mut(slice_len)
            .enumerate()
            .for_each(|(s, slice)| {
                let k0 = s * SLICE_DEPTH;
                let depth = SLICE_DEPTH.min(k - k0);
                for b in 0..blocks {
                    let panel = &mut slice[b * depth * MR..][..depth * MR];
                    let (i0, rows) = (b * MR, MR.min(m - b * MR));
                    let t = a.t();
                    if rows == MR && t.row_segment(k0, i0, MR).is_some() {
                        // Unit row stride (a transposed row-major matrix): each step of the
                        // panel is MR contiguous values.
                        for (p, step) in panel.chunks_exact_mut(MR).enumerate() {
                            if let Some(values) = t.row_segment(k0 + p, i0, MR) {
                                step.copy_from_slice(values);
                            }
                        }
                        continue;
                    }
                    let segments: Vec<&[f32]> = (0..rows)
                        .filter_map(|r| a.row_segment(i0 + r, k0, depth))
                        .collect();
                    if segments.len() == rows {
                        // Unit column stride: MR rows read side by side.
                        for (r, segment) in segments.iter().enumerate() {
                            for (step, &v) in panel.chunks_exact_mut(MR).zip(segment.iter()) {
                                step[r] = v;
                            }
                        }
                        continue;
                    }
                    for r in 0..rows {
                        for p in 0..depth {
                            panel[p * MR + r] = a.at(i0 + r, k0 + p);
                        }
                    }
                }
            });
        PanelsA { data, m, k }
    }
}

/// A `k × n` matrix `B` that [`gemm_panels`] reads a piece of a row at a time, so that it
/// need never be written out whole: an image's patches (im2col) or a batch's output
/// planes are produced straight into the panels, a slice deep and [`BLOCK_COLUMNS`]
/// wide at a time, while that block is in the cache.
pub trait Rows: Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Writes `out.len()` values of row `r`, from column `j0` on (every one of them).
    fn fill(&self, r: usize, j0: usize, out: &mut [f32]);
}

impl Rows for MatRef<'_> {
    fn rows(&self) -> usize {
        MatRef::rows(self)
    }

    fn cols(&self) -> usize {
        MatRef::cols(self)
    }

    fn fill(&self, r: usize, j0: usize, out: &mut [f32]) {
        if let Some(segment) = self.row_segment(r, j0, out.len()) {
            out.copy_from_slice(segment);
            return;
        }
        for (j, v) in out.iter_mut().enumerate() {
            *v = self.at(r, j0 + j);
        }
    }
}

/// Columns of `B` packed at a time: a slice of them (256 × 256 values, 256 KiB) stays in
/// the L2 cache while every row block of `A` passes over it.
pub const BLOCK_COLUMNS: usize = 256;

std::thread_local! {
    /// Each thread's block of `B` in panels, reused across products.
    static B_BLOCK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `C ← A·B` (`beta` 0: `C`'s old values are not read) or `C ← A·B + C` (`beta` 1), for
/// a row-major `C` (unit column stride), with the bits of
/// [`crate::matmul::gemm_packed`]. Refused on a CPU without AVX-512F ([`available`]).
pub fn gemm_panels(
    a: &PanelsA,
    b: &impl Rows,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    let (m, k, n) = (a.m, a.k, b.cols());
    if b.rows() != k || c.rows() != m || c.cols() != n {
        return Err(KernelError::geometry(
            KERNEL,
            format!(
                "A is {m}×{k}, B {}×{n}, C {}×{}: the shapes do not chain",
                b.rows(),
                c.rows(),
                c.cols()
            ),
        ));
    }
    if c.col_stride() != 1 && n > 1 {
        return Err(KernelError::geometry(KERNEL, "C must be row-major"));
    }
    if beta != 0.0 && beta != 1.0 {
        return Err(KernelError::geometry(
            KERNEL,
            format!("β is {beta}; only 0 and 1 are supported"),
        ));
    }
    let blocks = m.div_ceil(MR);
    check_len(KERNEL, "A's panels", a.data.len(), blocks * MR * k)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if !available() {
        return Err(KernelError::geometry(KERNEL, "this CPU has no AVX-512F"));
    }
    let ldc = c.row_stride();
    let c = c.into_data();
    if k == 0 {
        if beta == 0.0 {
            for i in 0..m {
                c[i * ldc..][..n].fill(0.0);
            }
        }
        return Ok(());
    }
    B_BLOCK.with_borrow_mut(|panels| {
        panels.resize(SLICE_DEPTH * BLOCK_COLUMNS, 0.0);
        let mut row = [0.0f32; BLOCK_COLUMNS];
        for s in 0..k.div_ceil(SLICE_DEPTH) {
            let k0 = s * SLICE_DEPTH;
            let depth = SLICE_DEPTH.min(k - k0);
            let add = beta != 0.0 || s > 0;
            for j_block in (0..n).step_by(BLOCK_COLUMNS) {
                let block_width = BLOCK_COLUMNS.min(n - j_block);
                let strips = block_width.div_ceil(NR);
                // Strip t of the block holds rows k0.. of columns j_block + t·NR.., NR
                // values a row, zero past the matrix's last column.
                row[block_width..].fill(0.0);
                for p in 0..depth {
                    b.fill(k0 + p, j_block, &mut row[..block_width]);
                    for (t, chunk) in row.chunks_exact(NR).take(strips).enumerate() {
                        panels[(t * depth + p) * NR..][..NR].copy_from_slice(chunk);
                    }
                }
                for t in 0..strips {
                    let j0 = j_block + t * NR;
                    let width = NR.min(n - j0);
                    let b_panel = &panels[t * depth * NR..][..depth * NR];
                    for blk in 0..blocks {
                        let i0 = blk * MR;
                        let rows = MR.min(m - i0);
                        let a_panel = &a.data[panel_offset(k, blocks, MR, s, blk)..][..depth * MR];
                        // The tile's rows of C: `rows` rows `ldc` apart, `width` values each.
                        let tile = &mut c[i0 * ldc + j0..][..(rows - 1) * ldc + width];
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `available()` detected AVX-512F above, the kernel's only
                        // CPU requirement; the panels hold `depth·MR` and `depth·NR`
                        // values (sliced just above) and the tile `(rows − 1)·ldc + width`
                        // values, with rows ≤ MR and width ≤ NR, which is all
                        // `tile_avx512` reads and writes.
                        unsafe {
                            tile_avx512(depth, a_panel, b_panel, tile, ldc, rows, width, add)
                        };
                        #[cfg(not(target_arch = "x86_64"))]
                        let _ = (a_panel, b_panel, tile, rows, width, add);
                    }
                }
            }
        }
    });
    Ok(())
}

/// One `MR × NR` tile: `C[r][j] (+)= Σₚ A[p][r]·B[p][j]` over a slice of `depth`, the sum
/// in registers from zero, fused multiply-adds in order of `p`, then added to (or
/// written over) `C`. Columns past `width` are neither read nor written; rows past
/// `rows` are not written.
///
/// # Safety
/// The CPU must have AVX-512F, `a` must hold at least `depth·MR` values, `b`
/// `depth·NR`, `c` `(rows − 1)·ldc + width` with `1 ≤ rows ≤ MR`, `1 ≤ width ≤ NR`, and
/// `width ≤ ldc` when `rows > 1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(
    clippy::too_many_arguments,
    reason = "a microkernel's operands, kept as plain values so that they stay in registers"
)]
unsafe fn tile_avx512(
    depth: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    width: usize,
    add: bool,
) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps,
        _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };
    const LANES: usize = 16;
    debug_assert!(a.len() >= depth * MR && b.len() >= depth * NR);
    debug_assert!((1..=MR).contains(&rows) && (1..=NR).contains(&width));
    debug_assert!(c.len() >= (rows - 1) * ldc + width);
    let mut acc: [__m512; 2 * MR] = [_mm512_setzero_ps(); 2 * MR];
    let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
    for _ in 0..depth {
        // SAFETY: `pa` and `pb` advance by MR and NR per step for `depth` steps, inside
        // `a` (depth·MR values) and `b` (depth·NR), as the caller guarantees.
        unsafe {
            let b0 = _mm512_loadu_ps(pb);
            let b1 = _mm512_loadu_ps(pb.add(LANES));
            for r in 0..MR {
                let x = _mm512_set1_ps(*pa.add(r));
                acc[2 * r] = _mm512_fmadd_ps(x, b0, acc[2 * r]);
                acc[2 * r + 1] = _mm512_fmadd_ps(x, b1, acc[2 * r + 1]);
            }
            pa = pa.add(MR);
            pb = pb.add(NR);
        }
    }
    let masks = crate::matmul::two_vector_masks(width);
    for r in 0..rows {
        let row = c[r * ldc..].as_mut_ptr();
        for (half, &mask) in masks.iter().enumerate() {
            let at = row.wrapping_add(half * LANES);
            let mut v = acc[2 * r + half];
            if add {
                // SAFETY: `mask` enables only lanes below `width`, inside row `r`'s
                // `width` values of `c` (the caller's bound); a masked load reads only
                // enabled lanes.
                v = _mm512_add_ps(unsafe { _mm512_maskz_loadu_ps(mask, at) }, v);
            }
            // SAFETY: as above; a masked store writes only enabled lanes, and `c` is
            // borrowed mutably.
            unsafe { _mm512_mask_storeu_ps(at, mask, v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::gemm_packed;
    use proptest::prelude::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                ((h >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Ragged shapes (edges of tiles and slices, a sum deeper than one slice), both
        /// β, `A` read through a transposed view: the matrix crate's bits.
        #[test]
        fn panels_give_the_matrix_crates_bits(
            m in 1usize..40,
            k in 1usize..600,
            n in 1usize..600,
            transposed in any::<bool>(),
            beta in prop_oneof![Just(0.0f32), Just(1.0f32)],
        ) {
            if !available() {
                return Ok(());
            }
            let a_data = values(m * k, 1);
            let b_data = values(k * n, 2);
            let a = if transposed {
                MatRef::row_major(&a_data, k, m).unwrap().t()
            } else {
                MatRef::row_major(&a_data, m, k).unwrap()
            };
            let b = MatRef::row_major(&b_data, k, n).unwrap();
            let ldc = n + 3;
            let old = values(m * ldc, 3);
            let mut want = old.clone();
            gemm_packed(1.0, a, b, beta, MatMut::strided(&mut want, m, n, ldc, 1).unwrap()).unwrap();
            let mut got = old.clone();
            gemm_panels(&PanelsA::new(a), &b, beta, MatMut::strided(&mut got, m, n, ldc, 1).unwrap()).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&got), bits(&want));
        }
    }

    #[test]
    fn shapes_that_do_not_chain_are_refused() {
        let a = PanelsA::new(MatRef::row_major(&[1.0; 6], 2, 3).unwrap());
        let b = MatRef::row_major(&[1.0; 8], 4, 2).unwrap();
        let mut c = [0.0; 4];
        let err = gemm_panels(&a, &b, 0.0, MatMut::row_major(&mut c, 2, 2).unwrap());
        assert!(matches!(err, Err(KernelError::Geometry { .. })), "{err:?}");
        let b = MatRef::row_major(&[1.0; 6], 3, 2).unwrap();
        let err = gemm_panels(&a, &b, 0.5, MatMut::row_major(&mut c, 2, 2).unwrap());
        assert!(matches!(err, Err(KernelError::Geometry { .. })), "{err:?}");
    }
}
