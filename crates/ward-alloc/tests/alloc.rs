//! The allocator hands out working memory of every size, and advises only whole huge-page
//! extents inside a block.

use ward_alloc::{huge_page_extents, HugePageAlloc, HUGE_PAGE_BYTES};

#[global_allocator]
static ALLOC: HugePageAlloc = HugePageAlloc;

const MIB: usize = 1 << 20;

#[test]
fn extents_are_the_aligned_interior_of_a_block() {
    // A block starting just past a boundary holds the extents from the next boundary on.
    let start = 7 * HUGE_PAGE_BYTES + 16;
    assert_eq!(
        huge_page_extents(start, 5 * HUGE_PAGE_BYTES),
        Some((8 * HUGE_PAGE_BYTES, 4 * HUGE_PAGE_BYTES))
    );
    // An aligned block is advised whole.
    assert_eq!(
        huge_page_extents(4 * HUGE_PAGE_BYTES, 3 * HUGE_PAGE_BYTES),
        Some((4 * HUGE_PAGE_BYTES, 3 * HUGE_PAGE_BYTES))
    );
    // A block that crosses a boundary without holding a whole extent gets nothing.
    assert_eq!(
        huge_page_extents(HUGE_PAGE_BYTES - 16, HUGE_PAGE_BYTES + 8),
        None
    );
    assert_eq!(huge_page_extents(16, HUGE_PAGE_BYTES), None);
    assert_eq!(huge_page_extents(0, 0), None);
    // An end past the address space is no extent, not an overflow.
    assert_eq!(huge_page_extents(usize::MAX - 8, 4 * HUGE_PAGE_BYTES), None);
}

#[test]
fn large_and_small_blocks_hold_what_is_written() {
    for len in [
        1,
        4096,
        HUGE_PAGE_BYTES - 1,
        HUGE_PAGE_BYTES,
        3 * HUGE_PAGE_BYTES + 5,
        64 * MIB,
    ] {
        let mut block = vec![0u8; len];
        assert!(block.iter().all(|&b| b == 0), "{len} bytes not zeroed");
        for (i, b) in block.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        assert!(block.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }
}

#[test]
fn growing_a_block_keeps_its_contents() {
    let mut grown: Vec<u32> = (0..1024).collect();
    for _ in 0..14 {
        let doubled: Vec<u32> = grown.iter().map(|v| v + 1).collect();
        grown.extend(doubled);
    }
    assert_eq!(grown.len(), 1024 << 14);
    assert_eq!(grown[0], 0);
    assert_eq!(grown[1024], 1);
    assert_eq!(grown[grown.len() - 1], 1023 + 14);
}

/// The flags of the mapping that holds `address`, from `/proc/self/smaps`.
#[cfg(target_os = "linux")]
fn mapping_flags(address: usize) -> Option<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((from, to)) = first.split_once('-') {
            if let (Ok(from), Ok(to)) = (
                usize::from_str_radix(from, 16),
                usize::from_str_radix(to, 16),
            ) {
                inside = (from..to).contains(&address);
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_string());
            }
        }
    }
    None
}

/// With transparent huge pages in the kernel, a large block's extents are advised and a
/// small block's heap is not; without them the kernel refuses the advice and no mapping
/// carries it. Either way the blocks hold what is written.
#[cfg(target_os = "linux")]
#[test]
fn a_large_block_is_advised_and_a_small_one_is_not() {
    let offered = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
    let advised = |flags: &str| flags.split(' ').any(|f| f == "hg");
    let large = vec![1u8; 16 * MIB];
    let (first, _) = huge_page_extents(large.as_ptr() as usize, large.len()).expect("an extent");
    let flags = mapping_flags(first).expect("the block's mapping in smaps");
    assert_eq!(advised(&flags), offered, "large block: {flags}");
    // A small block lives in the heap among others, which must not be advised for it.
    let small = vec![1u8; 4096];
    let flags = mapping_flags(small.as_ptr() as usize).expect("the heap's mapping in smaps");
    assert!(!advised(&flags), "small block advised: {flags}");
    assert_eq!(large[16 * MIB - 1] + small[0], 2);
}
