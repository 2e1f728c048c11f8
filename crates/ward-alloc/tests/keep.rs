//! With freed blocks kept (`keep_freed_blocks`), a large block freed at the end of one run
//! comes back on the next as resident memory, not as fresh pages to fault in (glibc only).
//! A test binary of its own, so that no other test's allocations move the heap it reads.

#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::expect_used)]

use ward_alloc::{keep_freed_blocks, HugePageAlloc, KEPT_BLOCK_BYTES};

#[global_allocator]
static ALLOC: HugePageAlloc = HugePageAlloc;

/// Page faults this thread has taken that the kernel served without I/O: `minflt`, the
/// tenth field of `/proc/thread-self/stat` (the eighth after the command's closing
/// parenthesis, which may hold spaces).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("the thread's stat");
    let (_, fields) = stat.rsplit_once(')').expect("a command in parentheses");
    let minflt = fields.split_whitespace().nth(7).expect("a minflt field");
    minflt.parse().expect("a count")
}

/// One run's activation: a 24 MiB block, zeroed and written a page at a time.
fn run_once() {
    let mut block = vec![0u8; 24 << 20];
    for page in block.chunks_mut(4096) {
        if let Some(first) = page.first_mut() {
            *first = 1;
        }
    }
    std::hint::black_box(&block);
}

#[test]
fn a_freed_large_block_comes_back_without_faults() {
    const { assert!(KEPT_BLOCK_BYTES >= 24 << 20) };
    assert!(keep_freed_blocks(), "glibc refused the thresholds");
    run_once();
    let before = minor_faults();
    run_once();
    let faults = minor_faults() - before;
    // Fresh pages would be 6,144 faults of 4 KiB (or 12 of 2 MiB with huge pages, which
    // the kernel may not grant): a few stray ones are allowed.
    assert!(faults < 8, "{faults} page faults on the second run");
}
