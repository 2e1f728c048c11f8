//! Conversions between Python values and ward's: declared inputs, source files, NumPy
//! arrays and tensors.

use std::path::Path;

use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use ward_core::{DType, Tensor};
use ward_package::from_mxnet::{read_sources, Sources};
use ward_package::{InputSpec, TrustPolicy};

use crate::errors::{package_error, InputError, LimitError};

/// A declared input as the Python package passes it: name, dtype name, shape (`-1` for a
/// variable dimension), inclusive value range, whether NaN and infinities are accepted.
pub type InputDecl = (String, String, Vec<i64>, Option<(f64, f64)>, bool);

/// The declared inputs as the manifest's specs (the import checks each).
pub fn input_specs(inputs: Vec<InputDecl>) -> PyResult<Vec<InputSpec>> {
    inputs
        .into_iter()
        .map(|(name, dtype, shape, range, allow_nonfinite)| {
            let dtype: DType = dtype
                .parse()
                .map_err(|e| InputError::new_err(format!("input {name:?}: {e}")))?;
            Ok(InputSpec {
                name,
                dtype,
                shape,
                range: range.map(|(min, max)| [min, max]),
                allow_nonfinite,
            })
        })
        .collect()
}

/// The symbol and params files, verified under the trust policy in `trust` when given.
pub fn read_source(symbol: &Path, params: &Path, trust: Option<&Path>) -> PyResult<Sources> {
    let policy = trust
        .map(TrustPolicy::load)
        .transpose()
        .map_err(|e| package_error(&e))?;
    read_sources(symbol, params, policy.as_ref()).map_err(|e| package_error(&e))
}

/// The ward dtype of a NumPy array's dtype, if ward has it (bfloat16 has no NumPy dtype),
/// by kind and width. Native byte order only: a big-endian array is refused by name
/// rather than read with its bytes swapped.
fn ward_dtype(array: &Bound<'_, PyUntypedArray>) -> Option<DType> {
    let dtype = array.dtype();
    if dtype.byteorder() == b'>' {
        return None;
    }
    Some(match (dtype.kind(), dtype.itemsize()) {
        (b'f', 4) => DType::F32,
        (b'f', 8) => DType::F64,
        (b'f', 2) => DType::F16,
        (b'u', 1) => DType::U8,
        (b'i', 1) => DType::I8,
        (b'i', 4) => DType::I32,
        (b'i', 8) => DType::I64,
        (b'b', 1) => DType::Bool,
        _ => return None,
    })
}

/// Reads the elements of a C-contiguous array of `T` as little-endian bytes.
fn le_bytes<T: numpy::Element + Copy, const N: usize>(
    array: &Bound<'_, PyUntypedArray>,
    to_le: fn(T) -> [u8; N],
) -> PyResult<Vec<u8>> {
    let typed = array.cast::<PyArrayDyn<T>>()?;
    let readonly = typed.try_readonly()?;
    let values = readonly
        .as_slice()
        .map_err(|e| InputError::new_err(e.to_string()))?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(std::mem::size_of_val(values))
        .map_err(|_| LimitError::new_err("the input does not fit in memory"))?;
    bytes.resize(std::mem::size_of_val(values), 0);
    // Element by element into a buffer of the final size: on a little-endian machine the
    // compiler makes this a plain copy.
    for (dst, &v) in bytes.as_chunks_mut::<N>().0.iter_mut().zip(values) {
        *dst = to_le(v);
    }
    Ok(bytes)
}

/// A NumPy array (C-contiguous, native byte order: the Python package makes it so) as a
/// ward tensor, named `name` in errors. The schema check comes after, on the tensor.
pub fn tensor(name: &str, array: &Bound<'_, PyUntypedArray>) -> PyResult<Tensor> {
    let Some(dtype) = ward_dtype(array) else {
        return Err(InputError::new_err(format!(
            "input {name:?}: NumPy dtype {} is not one ward computes with",
            array.dtype()
        )));
    };
    let bytes = match dtype {
        DType::F32 => le_bytes::<f32, 4>(array, f32::to_le_bytes)?,
        DType::F64 => le_bytes::<f64, 8>(array, f64::to_le_bytes)?,
        DType::F16 => le_bytes::<half::f16, 2>(array, half::f16::to_le_bytes)?,
        DType::U8 => le_bytes::<u8, 1>(array, u8::to_le_bytes)?,
        DType::I8 => le_bytes::<i8, 1>(array, i8::to_le_bytes)?,
        DType::I32 => le_bytes::<i32, 4>(array, i32::to_le_bytes)?,
        DType::I64 => le_bytes::<i64, 8>(array, i64::to_le_bytes)?,
        DType::Bool => le_bytes::<bool, 1>(array, |b| [u8::from(b)])?,
        DType::BF16 => {
            return Err(InputError::new_err(format!(
                "input {name:?}: bfloat16 has no NumPy dtype"
            )))
        }
    };
    Tensor::from_bytes(dtype, array.shape().to_vec(), bytes)
        .map_err(|e| InputError::new_err(format!("input {name:?}: {e}")))
}

/// A tensor handed to NumPy without a copy: its bytes become a `uint8` array that the
/// Python package views with the dtype and shape returned. bfloat16 (no NumPy dtype) is
/// widened to float32.
pub fn output<'py>(
    py: Python<'py>,
    tensor: Tensor,
) -> (Bound<'py, PyArray1<u8>>, &'static str, Vec<usize>) {
    let tensor = if tensor.dtype() == DType::BF16 {
        tensor.to_f32()
    } else {
        tensor
    };
    let dtype = ward_core::npy::descr_of(tensor.dtype());
    let shape = tensor.shape().to_vec();
    (PyArray1::from_vec(py, tensor.into_bytes()), dtype, shape)
}
