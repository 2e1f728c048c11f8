//! A dense tensor: an element type, a shape and little-endian bytes.
//!
//! Deliberately plain (no generics, no strides): parsers produce it, the executor consumes
//! it, and `.npy`/safetensors write it. Construction checks that the byte length matches
//! the shape with checked arithmetic, so a `Tensor` is always self-consistent.
//!
//! [`TensorView`] is the same thing borrowed: a caller's bytes (a NumPy array's buffer)
//! read in place, under the same checks, so the schema check and the engine's one copy
//! need no [`Tensor`] in between.
//!
//! A tensor's bytes are its own, or a range of a buffer it shares with other tensors
//! ([`Tensor::shared`]): the tensors of a weights file read once, so a model's weights are
//! held once, in the buffer they were read (and verified) into.

use std::ops::Range;
use std::sync::Arc;

use crate::buffer::Buffer;
use crate::dtype::DType;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    #[error("shape {shape:?} has more elements than fit in memory")]
    ShapeOverflow { shape: Vec<usize> },
    #[error("shape {shape:?} of {dtype} needs {expected} bytes, got {actual}")]
    LengthMismatch {
        shape: Vec<usize>,
        dtype: DType,
        expected: usize,
        actual: usize,
    },
    #[error("bytes {start}..{end} are outside a buffer of {len} bytes")]
    OutsideBuffer {
        start: usize,
        end: usize,
        len: usize,
    },
}

/// The number of elements of `shape`, or `None` if the product overflows `usize`.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The byte length of a tensor of `shape` and `dtype`, or `None` on overflow.
pub fn byte_len(shape: &[usize], dtype: DType) -> Option<usize> {
    element_count(shape)?.checked_mul(dtype.size())
}

/// The byte length `shape` of `dtype` needs, checked against `actual`.
fn check_len(dtype: DType, shape: &[usize], actual: usize) -> Result<(), TensorError> {
    let expected = byte_len(shape, dtype).ok_or_else(|| TensorError::ShapeOverflow {
        shape: shape.to_vec(),
    })?;
    if expected != actual {
        return Err(TensorError::LengthMismatch {
            shape: shape.to_vec(),
            dtype,
            expected,
            actual,
        });
    }
    Ok(())
}

/// A borrowed tensor: dtype, shape and little-endian bytes someone else owns. Made only
/// by [`TensorView::new`], which checks the byte length against the shape as
/// [`Tensor::from_bytes`] does, or by [`Tensor::view`]; so a view is self-consistent too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorView<'a> {
    dtype: DType,
    shape: &'a [usize],
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Views little-endian bytes; fails unless their length is exactly what the shape
    /// needs.
    pub fn new(dtype: DType, shape: &'a [usize], data: &'a [u8]) -> Result<Self, TensorError> {
        check_len(dtype, shape, data.len())?;
        Ok(TensorView { dtype, shape, data })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same tensor, owned (its bytes copied).
    pub fn to_tensor(&self) -> Tensor {
        Tensor {
            dtype: self.dtype,
            shape: self.shape.to_vec(),
            data: Bytes::Owned(self.data.to_vec()),
        }
    }

    /// Every element converted to `f64`, exactly for all ward dtypes except 64-bit
    /// integers beyond 2^53.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let d = self.data;
        match self.dtype {
            DType::F32 => d
                .as_chunks::<4>()
                .0
                .iter()
                .map(|c| f32::from_le_bytes(*c) as f64)
                .collect(),
            DType::F64 => d
                .as_chunks::<8>()
                .0
                .iter()
                .map(|c| f64::from_le_bytes(*c))
                .collect(),
            DType::F16 => d
                .as_chunks::<2>()
                .0
                .iter()
                .map(|c| half::f16::from_le_bytes(*c).to_f64())
                .collect(),
            DType::BF16 => d
                .as_chunks::<2>()
                .0
                .iter()
                .map(|c| half::bf16::from_le_bytes(*c).to_f64())
                .collect(),
            DType::U8 | DType::Bool => d.iter().map(|&b| b as f64).collect(),
            DType::I8 => d.iter().map(|&b| b as i8 as f64).collect(),
            DType::I32 => d
                .as_chunks::<4>()
                .0
                .iter()
                .map(|c| i32::from_le_bytes(*c) as f64)
                .collect(),
            DType::I64 => d
                .as_chunks::<8>()
                .0
                .iter()
                .map(|c| i64::from_le_bytes(*c) as f64)
                .collect(),
        }
    }

    /// Every element converted to `f32` (rounding where the source is wider).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self.dtype {
            DType::F32 => self
                .data
                .as_chunks::<4>()
                .0
                .iter()
                .map(|c| f32::from_le_bytes(*c))
                .collect(),
            _ => self.to_f64_vec().into_iter().map(|v| v as f32).collect(),
        }
    }
}

#[derive(Clone)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Bytes,
}

/// Where a tensor's bytes are.
#[derive(Clone)]
enum Bytes {
    Owned(Vec<u8>),
    /// `buffer[range]`; the range was checked against the buffer when the tensor was made.
    Shared {
        buffer: Arc<Buffer>,
        range: Range<usize>,
    },
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared { buffer, range } => buffer.get(range.clone()).unwrap_or_default(),
        }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.dtype == other.dtype && self.shape == other.shape && self.bytes() == other.bytes()
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("data", &self.bytes())
            .finish()
    }
}

impl Tensor {
    /// Wraps little-endian bytes; fails unless their length is exactly what the shape needs.
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Self, TensorError> {
        check_len(dtype, &shape, data.len())?;
        Ok(Tensor {
            dtype,
            shape,
            data: Bytes::Owned(data),
        })
    }

    /// The little-endian bytes `buffer[range]`, shared with the buffer's other tensors
    /// rather than copied; fails unless the range lies within the buffer and holds exactly
    /// what the shape needs.
    pub fn shared(
        dtype: DType,
        shape: Vec<usize>,
        buffer: &Arc<Buffer>,
        range: Range<usize>,
    ) -> Result<Self, TensorError> {
        let Some(bytes) = buffer.get(range.clone()) else {
            return Err(TensorError::OutsideBuffer {
                start: range.start,
                end: range.end,
                len: buffer.len(),
            });
        };
        check_len(dtype, &shape, bytes.len())?;
        Ok(Tensor {
            dtype,
            shape,
            data: Bytes::Shared {
                buffer: Arc::clone(buffer),
                range,
            },
        })
    }

    /// The tensor borrowed, for code that reads owned and borrowed tensors alike.
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            dtype: self.dtype,
            shape: &self.shape,
            data: self.bytes(),
        }
    }

    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Result<Self, TensorError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_bytes(DType::F32, shape, data)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// The bytes as a vector of their own (a copy, for a tensor that shares its buffer).
    pub fn into_bytes(self) -> Vec<u8> {
        match self.data {
            Bytes::Owned(v) => v,
            shared @ Bytes::Shared { .. } => shared.as_slice().to_vec(),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes().len() / self.dtype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the same data under another shape with the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Self, TensorError> {
        check_len(self.dtype, &shape, self.bytes().len())?;
        Ok(Tensor { shape, ..self })
    }

    /// Every element converted to `f64`, exactly for all ward dtypes except 64-bit integers
    /// beyond 2^53.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.view().to_f64_vec()
    }

    /// Every element converted to `f32` (rounding where the source is wider).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.view().to_f32_vec()
    }

    /// The same values as a float32 tensor.
    pub fn to_f32(&self) -> Tensor {
        if self.dtype == DType::F32 {
            return self.clone();
        }
        let data = self
            .to_f32_vec()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        Tensor {
            dtype: DType::F32,
            shape: self.shape.clone(),
            data: Bytes::Owned(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_must_match_shape() {
        assert!(Tensor::from_bytes(DType::F32, vec![2, 2], vec![0; 16]).is_ok());
        let err = Tensor::from_bytes(DType::F32, vec![2, 2], vec![0; 15]).unwrap_err();
        assert!(matches!(
            err,
            TensorError::LengthMismatch {
                expected: 16,
                actual: 15,
                ..
            }
        ));
    }

    #[test]
    fn a_view_is_checked_as_a_tensor_is() {
        let bytes = [0u8; 16];
        let view = TensorView::new(DType::F32, &[2, 2], &bytes).unwrap();
        assert_eq!(
            (view.dtype(), view.shape(), view.len()),
            (DType::F32, &[2, 2][..], 4)
        );
        // One byte short, one too many, or the right count for another dtype: refused.
        for (dtype, shape, len) in [
            (DType::F32, &[2, 2][..], 15),
            (DType::F32, &[2, 2][..], 17),
            (DType::F64, &[2, 2][..], 16),
            (DType::I8, &[3][..], 16),
        ] {
            let err = TensorView::new(dtype, shape, &[0; 17][..len]).unwrap_err();
            assert!(
                matches!(err, TensorError::LengthMismatch { actual, .. } if actual == len),
                "{err}"
            );
        }
        let err = TensorView::new(DType::F64, &[usize::MAX, 2], &[]).unwrap_err();
        assert!(matches!(err, TensorError::ShapeOverflow { .. }));
        // A scalar is one element; an empty dimension none.
        assert!(TensorView::new(DType::I32, &[], &[1, 0, 0, 0]).is_ok());
        assert!(TensorView::new(DType::I32, &[3, 0], &[])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_view_reads_what_its_tensor_holds() {
        for dtype in DType::ALL {
            let bytes: Vec<u8> = (0..6 * dtype.size())
                .map(|i| (i * 37 % 251) as u8)
                .collect();
            let t = Tensor::from_bytes(dtype, vec![2, 3], bytes.clone()).unwrap();
            let view = TensorView::new(dtype, &[2, 3], &bytes).unwrap();
            assert_eq!(t.view(), view);
            assert_eq!(view.to_tensor(), t);
            let same = |a: Vec<f64>, b: Vec<f64>| {
                a.iter()
                    .map(|v| v.to_bits())
                    .eq(b.iter().map(|v| v.to_bits()))
            };
            assert!(same(view.to_f64_vec(), t.to_f64_vec()), "{dtype}");
            assert_eq!(view.to_f32_vec().len(), 6);
        }
    }

    #[test]
    fn shared_tensors_read_their_range_of_one_buffer() {
        let buffer = Arc::new(Buffer::from((0u8..24).collect::<Vec<u8>>()));
        let a = Tensor::shared(DType::F32, vec![2], &buffer, 0..8).unwrap();
        let b = Tensor::shared(DType::I32, vec![2], &buffer, 16..24).unwrap();
        assert_eq!(a.bytes(), &buffer[0..8]);
        assert_eq!(b.bytes(), &buffer[16..24]);
        assert_eq!(Arc::strong_count(&buffer), 3);
        // Equal to an owned tensor of the same bytes, and owned once taken apart.
        assert_eq!(
            a,
            Tensor::from_bytes(DType::F32, vec![2], (0..8).collect()).unwrap()
        );
        assert_eq!(b.clone().into_bytes(), (16..24).collect::<Vec<u8>>());
        assert_eq!(b.reshaped(vec![1, 2]).unwrap().shape(), [1, 2]);
        // A range past the buffer, or one the shape does not fill, is refused.
        assert!(matches!(
            Tensor::shared(DType::F32, vec![2], &buffer, 20..28).unwrap_err(),
            TensorError::OutsideBuffer {
                start: 20,
                end: 28,
                len: 24
            }
        ));
        assert!(matches!(
            Tensor::shared(DType::F32, vec![3], &buffer, 0..8).unwrap_err(),
            TensorError::LengthMismatch {
                expected: 12,
                actual: 8,
                ..
            }
        ));
    }

    #[test]
    fn overflowing_shape_is_refused() {
        let err = Tensor::from_bytes(DType::F64, vec![usize::MAX, 2], vec![]).unwrap_err();
        assert!(matches!(err, TensorError::ShapeOverflow { .. }));
    }

    #[test]
    fn converts_every_dtype_to_f32() {
        let t = Tensor::from_bytes(DType::I8, vec![2], vec![0xff, 3]).unwrap();
        assert_eq!(t.to_f32_vec(), vec![-1.0, 3.0]);
        let t = Tensor::from_bytes(
            DType::BF16,
            vec![1],
            half::bf16::from_f32(1.5).to_le_bytes().to_vec(),
        )
        .unwrap();
        assert_eq!(t.to_f32_vec(), vec![1.5]);
    }
}
