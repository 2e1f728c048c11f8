//! With freed blocks kept (`keep_freed_blocks`), a large block freed at the end of one run
//! comes back on the next as resident memory, not as fresh pages to fault in (glibc only).
//! A test binary of its own, so that no other test's allocations move the heap it reads.

#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(
    unsafe_code,
    reason = "getrusage, to count this thread's page faults, is a C function"
)]

use ward_alloc::{keep_freed_blocks, HugePageAlloc, KEPT_BLOCK_BYTES};

#[global_allocator]
static ALLOC: HugePageAlloc = HugePageAlloc;

/// Page faults this thread has taken that the kernel served without I/O.
fn minor_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` into the pointer it is given, which points to
    // one; a zeroed `rusage` is a valid value whatever it writes.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_minflt
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
