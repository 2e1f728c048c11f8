//! Refusing a hostile pickle never allocates much: huge length prefixes cost nothing, and
//! floods of opcodes (a million `EMPTY_LIST`, `MARK` or `TUPLE1`) are stopped by the stack
//! and depth limits after a bounded amount of work.
//!
//! A binary of its own, like `params_alloc.rs`: the allocator's counters are process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use ward_mxnet::states::{read_optimizer_states, StatesLimits};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bookkeeping allowed beside the input: the error value and small vectors.
const SLACK: usize = 4096;

fn le32(n: u32) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

fn le64(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

#[test]
fn hostile_pickles_allocate_little() {
    let limits = StatesLimits::default();
    let pad = vec![b'a'; 64];
    let huge: Vec<(&str, Vec<u8>)> = vec![
        (
            "BINUNICODE 2^32-1",
            [b"\x80\x04X".to_vec(), le32(u32::MAX), pad.clone()].concat(),
        ),
        (
            "BINBYTES 2^32-2",
            [b"\x80\x04B".to_vec(), le32(u32::MAX - 1), pad.clone()].concat(),
        ),
        (
            "BINBYTES8 2^63",
            [b"\x80\x04\x8e".to_vec(), le64(1 << 63), pad.clone()].concat(),
        ),
        (
            "BINBYTES8 4 GiB",
            [b"\x80\x04\x8e".to_vec(), le64(4 << 30), pad.clone()].concat(),
        ),
        (
            "BINUNICODE8 2^64-1",
            [b"\x80\x04\x8d".to_vec(), le64(u64::MAX), pad.clone()].concat(),
        ),
        (
            "LONG4 2^31",
            [b"\x80\x02\x8b".to_vec(), le32(1 << 31), pad.clone()].concat(),
        ),
        (
            "FRAME 2^63",
            [b"\x80\x04\x95".to_vec(), le64(1 << 63), pad.clone()].concat(),
        ),
        (
            "LONG_BINGET 2^32-1",
            [b"\x80\x04j".to_vec(), le32(u32::MAX), b".".to_vec()].concat(),
        ),
        (
            "LONG_BINPUT 2^31",
            [b"\x80\x04Nr".to_vec(), le32(1 << 31), b".".to_vec()].concat(),
        ),
        (
            "GLOBAL without newline",
            [b"\x80\x02c".to_vec(), vec![b'x'; 100_000]].concat(),
        ),
    ];
    let deep = |op: u8| {
        let mut v = b"\x80\x04N".to_vec();
        v.extend(std::iter::repeat_n(op, 1_000_000));
        v.push(b'.');
        v
    };
    let floods: Vec<(&str, Vec<u8>)> = vec![
        ("1M EMPTY_LIST", deep(b']')),
        ("1M MARK", deep(b'(')),
        ("1M TUPLE1", deep(0x85)),
        ("1M EMPTY_DICT", deep(b'}')),
        ("1M MEMOIZE", deep(0x94)),
        ("1M NONE", deep(b'N')),
        ("500k APPEND", {
            let mut v = b"\x80\x04]".to_vec();
            v.extend(b"Na".iter().cycle().take(1_000_000));
            v.push(b'.');
            v.push(b'.');
            v
        }),
        ("500k MEMOIZE'd NONE", {
            let mut v = b"\x80\x04".to_vec();
            v.extend(b"N\x94".iter().cycle().take(1_000_000));
            v.push(b'.');
            v
        }),
    ];

    let region = Region::new(GLOBAL);
    let probe = std::hint::black_box(vec![0u8; 1 << 20]);
    assert!(region.change().bytes_allocated >= 1 << 20);
    drop(probe);

    for (name, input) in &huge {
        let region = Region::new(GLOBAL);
        let outcome = read_optimizer_states(input, &limits);
        let stats = region.change();
        assert!(outcome.is_err(), "{name}: accepted");
        let allocated = stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize;
        assert!(allocated <= SLACK, "{name}: allocated {allocated} bytes");
        println!("{name}: {allocated} bytes");
    }
    // Floods are stopped by the stack limit (10 000 entries), the depth limit, the
    // one-memo-entry-per-value rule, or the trailing bytes after STOP. The deep ones cost
    // about 2 bytes per input byte. The worst, a list of half a million `None`s (2 input
    // bytes per value, each a 64-byte arena slot plus its list entry), totals about 71
    // bytes per input byte counting every reallocation as the arena doubles: linear in the
    // input and bounded by `max_values` and `max_items`.
    for (name, input) in &floods {
        let region = Region::new(GLOBAL);
        let outcome = read_optimizer_states(input, &limits);
        let stats = region.change();
        assert!(outcome.is_err(), "{name}: accepted");
        let allocated = stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize;
        assert!(
            allocated <= 96 * input.len() + SLACK,
            "{name}: allocated {allocated} bytes for {} input bytes",
            input.len()
        );
        println!("{name}: {allocated} bytes");
    }
}
