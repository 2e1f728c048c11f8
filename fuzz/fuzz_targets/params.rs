//! Fuzzes the `.params` reader, as a list file and as a single-record blob: it must never
//! panic, and whatever it accepts must convert to dense and pair with its names without
//! panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_core::tensor::byte_len;
use ward_mxnet::limits::ParamsLimits;
use ward_mxnet::params::{read_ndarray_blob, read_params, NdArray};

/// Densifies an accepted array, as an importer would, but only within a budget tied to
/// the input: a sparse array of a few bytes may describe gigabytes of zeros, which is the
/// caller's to refuse (the reader bounds it only by `max_elements`).
fn densify(array: &NdArray, input_len: usize) {
    if let Some(value) = &array.value {
        let budget = input_len.saturating_mul(16).saturating_add(1 << 20);
        if byte_len(value.shape(), value.dtype()).is_some_and(|len| len <= budget) {
            let dense = value
                .to_dense()
                .expect("a sparse array the reader accepted is consistent");
            assert_eq!(dense.shape(), value.shape());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = ParamsLimits::default();
    if let Ok(file) = read_params(data, &limits) {
        for array in &file.arrays {
            densify(array, data.len());
        }
        let count = file.arrays.len();
        if let Ok(named) = file.into_named() {
            assert_eq!(named.len(), count);
        }
    }
    if let Ok(array) = read_ndarray_blob(data, &limits) {
        densify(&array, data.len());
    }
});
