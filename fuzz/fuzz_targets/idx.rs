//! Fuzzes the MNIST IDX reader, on the input as it is and as a gzip stream (within a
//! small decompressed-size limit): it must never panic; an accepted array's values must
//! be exactly its dims' product, and an accepted image array must serve every example.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_core::random::{Purpose, RunSeed};
use ward_train::data::idx::{gunzip, read_idx, IdxArray, MnistDataset, MnistOptions};
use ward_train::data::{DataLimits, Dataset};

fn check(array: &IdxArray) {
    let count = array.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    assert_eq!(count, Some(array.values.len()));
    // Pair an image array with as many labels (a count of 2^32 images of 0 pixels takes
    // no bytes, but its labels would: the reader refuses such images).
    if array.dims.len() == 3 && array.dims[0] <= 1 << 16 {
        let n = array.dims[0];
        let labels = IdxArray {
            dims: vec![n],
            values: vec![0; n],
        };
        if let Ok(ds) =
            MnistDataset::from_arrays("i", array.clone(), "l", labels, &MnistOptions::default())
        {
            let mut rng = RunSeed::from_u64(0).stream(Purpose::Augment, 0).unwrap();
            for i in 0..ds.len().min(4) {
                let ex = ds.get(i, &mut rng).expect("an accepted example reads");
                assert_eq!(ex.data.len(), array.dims[1] * array.dims[2]);
                assert!(ex.data.iter().all(|v| (0.0..1.0).contains(v)));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = DataLimits {
        max_elements: 1 << 20,
        max_decompressed_bytes: 1 << 20,
        ..DataLimits::default()
    };
    if let Ok(array) = read_idx("fuzz.idx", data, &limits) {
        check(&array);
    }
    if let Ok(plain) = gunzip("fuzz.idx.gz", data, limits.max_decompressed_bytes) {
        assert!(plain.len() as u64 <= limits.max_decompressed_bytes);
        if let Ok(array) = read_idx("fuzz.idx.gz", &plain, &limits) {
            check(&array);
        }
    }
});
