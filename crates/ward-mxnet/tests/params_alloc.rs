//! Parsing a malformed `.params` input never allocates more than the input is long.
//!
//! MXNet 1.9.1 allocates whatever a count in the file says (a 2^40 count is a
//! `std::bad_alloc`; a huge legacy ndim hangs). Ward must check every count against the
//! bytes that remain before sizing anything from it. This binary holds a single test, so
//! that nothing else allocates while it measures: the counters of the global allocator are
//! process-wide. (It is the one test binary beside the crate's `tests/it`, for that reason.)
//!
//! The check is stronger than "no single allocation exceeds the input": it bounds the sum
//! of every allocation (and every growth by reallocation) made while parsing one input.

// A failed expectation is a panic here; that is what a test is for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "it/support/params_corpus.rs"]
mod corpus;

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use ward_mxnet::limits::ParamsLimits;
use ward_mxnet::params::{read_ndarray_blob, read_params};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allowance over the input's length for bookkeeping: shape vectors (at most 32 dims), the
/// array list, the name table's hash map and the error value. The corpus inputs hold at
/// most a handful of records.
const SLACK: usize = 2048;

#[test]
fn parsing_malformed_input_allocates_no_more_than_the_input() {
    let limits = ParamsLimits::default();
    let cases = corpus::malformed();

    // The measurement itself works: an allocation inside a region is seen.
    let region = Region::new(GLOBAL);
    let probe = std::hint::black_box(vec![0u8; 1 << 20]);
    assert!(region.change().bytes_allocated >= 1 << 20);
    drop(probe);

    let mut worst = (0usize, String::new());
    for case in &cases {
        let region = Region::new(GLOBAL);
        let outcome = match case.container {
            corpus::Container::List => read_params(&case.bytes, &limits).map(drop),
            corpus::Container::Blob => read_ndarray_blob(&case.bytes, &limits).map(drop),
        };
        let allocated = region.change().bytes_allocated;
        assert!(outcome.is_err(), "{}: accepted", case.name);
        assert!(
            allocated <= case.bytes.len() + SLACK,
            "{}: parsing {} bytes allocated {allocated} bytes",
            case.name,
            case.bytes.len()
        );
        let excess = allocated.saturating_sub(case.bytes.len());
        if excess >= worst.0 {
            worst = (excess, case.name.clone());
        }
    }
    println!(
        "{} malformed inputs; the most allocated beyond an input's length was {} bytes ({})",
        cases.len(),
        worst.0,
        worst.1
    );
}
