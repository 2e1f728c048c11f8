//! Conversions between Python values and ward's: declared inputs, source files, NumPy
//! arrays and tensors.

use std::path::Path;

use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use ward_core::{DType, Tensor, TensorView};
use ward_package::from_mxnet::{read_sources, Sources};
use ward_package::{InputSpec, TrustPolicy};
use zerocopy::{Immutable, IntoBytes};

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
/// ward tensor, named `name` in errors: its elements copied. The schema check comes after,
/// on the tensor.
fn tensor(name: &str, array: &Bound<'_, PyUntypedArray>) -> PyResult<Tensor> {
    let dtype = checked_dtype(name, array)?;
    let bytes = match dtype {
        DType::F32 => le_bytes::<f32, 4>(array, f32::to_le_bytes)?,
        DType::F64 => le_bytes::<f64, 8>(array, f64::to_le_bytes)?,
        DType::F16 => le_bytes::<half::f16, 2>(array, half::f16::to_le_bytes)?,
        DType::U8 => le_bytes::<u8, 1>(array, u8::to_le_bytes)?,
        DType::I8 => le_bytes::<i8, 1>(array, i8::to_le_bytes)?,
        DType::I32 => le_bytes::<i32, 4>(array, i32::to_le_bytes)?,
        DType::I64 => le_bytes::<i64, 8>(array, i64::to_le_bytes)?,
        DType::Bool => le_bytes::<u8, 1>(&bool_bytes(array)?, u8::to_le_bytes)?,
        DType::BF16 => return Err(no_bf16(name)),
    };
    Tensor::from_bytes(dtype, array.shape().to_vec(), bytes)
        .map_err(|e| InputError::new_err(format!("input {name:?}: {e}")))
}

/// A bool array's bytes as a `uint8` array over the same buffer (NumPy's `view`): a byte
/// other than 0 and 1 (which NumPy can hold) is no Rust `bool`, so the array is never read
/// as one; the schema check refuses such a byte by name.
fn bool_bytes<'py>(array: &Bound<'py, PyUntypedArray>) -> PyResult<Bound<'py, PyUntypedArray>> {
    let py = array.py();
    Ok(array
        .call_method1(pyo3::intern!(py, "view"), (pyo3::intern!(py, "u1"),))?
        .cast_into::<PyUntypedArray>()?)
}

fn no_bf16(name: &str) -> PyErr {
    InputError::new_err(format!("input {name:?}: bfloat16 has no NumPy dtype"))
}

/// The array's ward dtype, or the error that names the NumPy dtype ward does not take;
/// and a C-contiguous layout (the only one whose buffer is the elements in order).
fn checked_dtype(name: &str, array: &Bound<'_, PyUntypedArray>) -> PyResult<DType> {
    let Some(dtype) = ward_dtype(array) else {
        return Err(InputError::new_err(format!(
            "input {name:?}: NumPy dtype {} is not one ward computes with",
            array.dtype()
        )));
    };
    if !array.is_c_contiguous() {
        return Err(InputError::new_err(format!(
            "input {name:?}: the array is not C-contiguous"
        )));
    }
    Ok(dtype)
}

/// An input array held for reading: NumPy's own buffer, borrowed (a shared borrow of the
/// numpy crate, so no Rust code writes the array meanwhile), when its bytes are already
/// what ward holds (C-contiguous and little-endian, as NumPy's native order is on a
/// little-endian machine); a copy otherwise. Read only while the GIL is held: the schema
/// check and the one copy into the engine's tensors ([`ward_exec::LoadedPackage::stage`])
/// happen before the GIL is released, never after, when another Python thread could write
/// the array.
pub enum Input<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
    F16(PyReadonlyArrayDyn<'py, half::f16>),
    U8(PyReadonlyArrayDyn<'py, u8>),
    I8(PyReadonlyArrayDyn<'py, i8>),
    I32(PyReadonlyArrayDyn<'py, i32>),
    I64(PyReadonlyArrayDyn<'py, i64>),
    /// A bool array's bytes ([`bool_bytes`]).
    Bool(PyReadonlyArrayDyn<'py, u8>),
    Copied(Tensor),
}

impl<'py> Input<'py> {
    /// `array` (input `name`) held for reading.
    pub fn new(name: &str, array: &Bound<'py, PyUntypedArray>) -> PyResult<Input<'py>> {
        fn borrow<'py, T: numpy::Element>(
            array: &Bound<'py, PyUntypedArray>,
        ) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
            Ok(array.cast::<PyArrayDyn<T>>()?.try_readonly()?)
        }
        let dtype = checked_dtype(name, array)?;
        if dtype == DType::Bool {
            // One byte per element: the same in either byte order.
            return Ok(Input::Bool(borrow(&bool_bytes(array)?)?));
        }
        if cfg!(target_endian = "big") {
            return Ok(Input::Copied(tensor(name, array)?));
        }
        Ok(match dtype {
            DType::F32 => Input::F32(borrow(array)?),
            DType::F64 => Input::F64(borrow(array)?),
            DType::F16 => Input::F16(borrow(array)?),
            DType::U8 => Input::U8(borrow(array)?),
            DType::I8 => Input::I8(borrow(array)?),
            DType::I32 => Input::I32(borrow(array)?),
            DType::I64 => Input::I64(borrow(array)?),
            DType::Bool => Input::Bool(borrow(array)?),
            DType::BF16 => return Err(no_bf16(name)),
        })
    }

    /// The input as a ward tensor view (input `name` in errors): NumPy's buffer in place.
    pub fn view(&self, name: &str) -> PyResult<TensorView<'_>> {
        fn view<'a, T: numpy::Element + IntoBytes + Immutable>(
            name: &str,
            dtype: DType,
            array: &'a PyReadonlyArrayDyn<'_, T>,
        ) -> PyResult<TensorView<'a>> {
            let values = array
                .as_slice()
                .map_err(|e| InputError::new_err(format!("input {name:?}: {e}")))?;
            TensorView::new(dtype, array.shape(), values.as_bytes())
                .map_err(|e| InputError::new_err(format!("input {name:?}: {e}")))
        }
        match self {
            Input::F32(a) => view(name, DType::F32, a),
            Input::F64(a) => view(name, DType::F64, a),
            Input::F16(a) => view(name, DType::F16, a),
            Input::U8(a) => view(name, DType::U8, a),
            Input::I8(a) => view(name, DType::I8, a),
            Input::I32(a) => view(name, DType::I32, a),
            Input::I64(a) => view(name, DType::I64, a),
            Input::Bool(a) => view(name, DType::Bool, a),
            Input::Copied(t) => Ok(t.view()),
        }
    }
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
