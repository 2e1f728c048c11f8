//! Malformed `.params` inputs are refused with the error that names what is wrong.
//!
//! The corpus (every case of §1.10 and §1.11 of the format reference, and every truncation
//! of a few valid files) lives in `support/params_corpus.rs`; each case carries the exact error
//! variant it must produce.

// A failed expectation is a panic here; that is what a test is for.

use crate::support::params_corpus as corpus;

use corpus::{Bytes, Container, V2_MAGIC};
use ward_mxnet::limits::ParamsLimits;
use ward_mxnet::params::{read_ndarray_blob, read_params, Location, ParamsError};

fn read(container: Container, bytes: &[u8]) -> Result<(), ParamsError> {
    let limits = ParamsLimits::default();
    match container {
        Container::List => read_params(bytes, &limits).map(drop),
        Container::Blob => read_ndarray_blob(bytes, &limits).map(drop),
    }
}

#[test]
fn every_corpus_case_fails_with_its_own_error() {
    let cases = corpus::malformed();
    assert!(
        cases.len() > 500,
        "the corpus shrank to {} cases",
        cases.len()
    );
    for case in cases {
        match read(case.container, &case.bytes) {
            Ok(()) => panic!("{}: accepted", case.name),
            Err(error) => assert!(
                (case.expected)(&error),
                "{}: wrong error: {error:?}",
                case.name
            ),
        }
    }
}

#[test]
fn the_valid_bases_of_the_truncations_are_accepted() {
    for (name, bytes) in corpus::valid_lists() {
        read(Container::List, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, bytes) in corpus::valid_blobs() {
        read(Container::Blob, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn truncation_names_the_field_the_array_and_the_offset() {
    // Cut inside the second dim of the first record's shape.
    let file = corpus::one(corpus::v2_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0]));
    let error = read_params(&file[..48], &ParamsLimits::default()).unwrap_err();
    assert_eq!(
        error,
        ParamsError::Truncated {
            at: Location::Array(0),
            field: "shape dims",
            offset: 36,
            needed: 16,
            available: 12,
        }
    );
    assert_eq!(
        error.to_string(),
        "array 0: input ends inside shape dims at byte 36 (16 bytes needed, 12 remain)"
    );
}

#[test]
fn errors_in_later_arrays_name_their_index() {
    let file = corpus::list(
        &[
            corpus::v2_f32(&[1], &[1.0]),
            corpus::v2_f32(&[1], &[2.0]),
            corpus::dense(V2_MAGIC, &[1], 99, &[0; 4]),
        ],
        None,
    );
    let error = read_params(&file, &ParamsLimits::default()).unwrap_err();
    assert!(matches!(
        error,
        ParamsError::UnknownDType {
            array: 2,
            flag: 99,
            offset: 124
        }
    ));
    assert_eq!(
        error.to_string(),
        "array 2: unknown type flag 99 at byte 124 (MXNet can save 0..=7 and 12)"
    );
}

#[test]
fn int32_sparse_indices_get_an_explanation() {
    let file = corpus::one(corpus::row_sparse_with(
        &[3, 1],
        &[1, 1],
        4,
        &[1],
        &[1.0],
        &[0],
    ));
    let message = read_params(&file, &ParamsLimits::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("indices type 4 (int32"), "{message}");
    assert!(message.contains("only int64 (6)"), "{message}");
}

#[test]
fn limits_are_the_callers() {
    let file = corpus::list(
        &[corpus::v2_f32(&[2, 3], &[0.0; 6])],
        Some(&[b"a_long_name"]),
    );
    let tight = |limits: ParamsLimits| read_params(&file, &limits).unwrap_err();
    let defaults = ParamsLimits::default();
    assert!(read_params(&file, &defaults).is_ok());

    let error = tight(ParamsLimits {
        max_arrays: 0,
        ..defaults.clone()
    });
    assert!(matches!(
        error,
        ParamsError::ExceedsLimit {
            at: Location::Header,
            field: "array count",
            value: 1,
            limit: 0,
            ..
        }
    ));
    let error = tight(ParamsLimits {
        max_ndim: 1,
        ..defaults.clone()
    });
    assert!(matches!(
        error,
        ParamsError::BadNdim {
            ndim: 2,
            max: 1,
            ..
        }
    ));
    let error = tight(ParamsLimits {
        max_elements: 5,
        ..defaults.clone()
    });
    assert!(matches!(
        error,
        ParamsError::TooManyElements {
            elements: Some(6),
            limit: 5,
            ..
        }
    ));
    let error = tight(ParamsLimits {
        max_name_len: 4,
        ..defaults
    });
    assert!(matches!(
        error,
        ParamsError::ExceedsLimit {
            at: Location::Name(0),
            field: "name length",
            value: 11,
            ..
        }
    ));
}

#[test]
fn a_huge_count_in_a_tiny_file_is_refused_before_reading_on() {
    let file = Bytes::new().u64(0x112).u64(0).u64(u64::MAX).done();
    assert!(matches!(
        read_params(
            &file,
            &ParamsLimits {
                max_arrays: u64::MAX,
                ..ParamsLimits::default()
            }
        ),
        Err(ParamsError::ExceedsInput {
            field: "array count",
            remaining: 0,
            ..
        })
    ));
}
