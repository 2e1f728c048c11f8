//! Freed large blocks are given back to the operating system when asked (glibc only: its
//! heaps keep freed blocks resident). A test binary of its own, so that no other test's
//! memory moves the resident size it reads.

#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use ward_alloc::{release_after_large_frees, HugePageAlloc};

#[global_allocator]
static ALLOC: HugePageAlloc = HugePageAlloc;

const MIB: usize = 1 << 20;

fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn freed_heap_blocks_stay_resident_until_released() {
    // Freeing one mmapped block raises glibc's mmap threshold past its size, so the
    // blocks below come from the heap, as a model's weights do once a few are freed.
    drop(vec![1u8; 8 * MIB]);
    let mut blocks: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8 + 1; 3 * MIB]).collect();
    // The last block stays: the free ones are holes inside the heap, not its top.
    let kept = blocks.pop().unwrap();
    assert!(
        !release_after_large_frees(usize::MAX),
        "nothing to release yet"
    );
    drop(blocks);
    let before = resident_bytes();
    assert!(release_after_large_frees(64 * MIB));
    let after = resident_bytes();
    assert!(
        after + 64 * MIB < before,
        "resident {} MiB before, {} MiB after",
        before / MIB,
        after / MIB
    );
    // Counted afresh: nothing freed since, nothing released.
    assert!(!release_after_large_frees(MIB));
    assert_eq!(kept[3 * MIB - 1], 40);
}
