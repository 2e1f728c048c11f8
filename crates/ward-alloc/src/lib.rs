//! The `ward` binary's global allocator: the system allocator, with Linux asked to back
//! every large block with transparent huge pages; and [`release_after_large_frees`], which
//! gives freed memory back to the system while a plan is built.
//!
//! Why: loading a model writes each weight into fresh memory at least twice (read from
//! the package, then packed for the matrix products), and Linux hands fresh memory out
//! one 4 KiB page at a time, each a fault that zeroes and accounts it. On a whole
//! `ward predict` of ResNet-18 those faults took about 40 % of the time. A 2 MiB page is
//! one fault for 512 small ones: asking for them (`madvise(MADV_HUGEPAGE)`) on blocks of
//! 2 MiB and more took that predict from 0.12 to 0.08 s (docs/BENCHMARKS.md). Small blocks
//! are left alone: they are reused by the allocator and would only waste memory.
//!
//! The advice is a hint. A kernel with transparent huge pages off, or set to `never`,
//! refuses it and every block works as before; other systems get the system allocator
//! unchanged. Only whole 2 MiB extents inside a block are advised, so no advice reaches
//! memory the block does not own.

#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait, madvise takes a raw address, and malloc_trim and mallopt are C functions"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of large blocks (a huge page and more) given back since the allocator's free
/// memory was last released: what [`release_after_large_frees`] weighs.
static FREED_LARGE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, advising huge pages for blocks that hold a whole 2 MiB extent.
///
/// Install it in a binary with `#[global_allocator] static ALLOC: HugePageAlloc =
/// HugePageAlloc;`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HugePageAlloc;

/// The size and alignment of an x86-64 or aarch64 (4 KiB granule) transparent huge page.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

/// The layout a block is asked of `System` with: a large block starts on a huge-page
/// boundary, so that all of it but its last partial extent can be advised (a block at an
/// arbitrary address loses up to a whole extent at each end, most of a 4 MiB block). Its
/// size is left as it is: rounding it up would add up to 2 MiB of resident memory per
/// block once the last extent is touched. The cost is address space only: `System` maps
/// the block with room to align it and never touches the room.
pub fn system_layout(layout: Layout) -> Layout {
    if layout.size() < HUGE_PAGE_BYTES || layout.align() >= HUGE_PAGE_BYTES {
        return layout;
    }
    // A size of at least one huge page aligned to a huge page never overflows `isize`
    // once rounded (the size is already below `isize::MAX` rounded down to the old
    // alignment, and HUGE_PAGE_BYTES is far below the top of the address space): the
    // fallback keeps the caller's layout if it ever did.
    layout.align_to(HUGE_PAGE_BYTES).unwrap_or(layout)
}

// SAFETY: every block is `System`'s, asked with `system_layout(layout)` and given back
// with the same (a pure function of the caller's layout), so it meets `GlobalAlloc`'s
// contract as `System`'s do, with an alignment at least the one asked. `advise` neither
// moves, frees nor writes memory.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `system_layout` keeps the caller's nonzero size; its alignment is a
        // power of two no smaller than the caller's.
        let block = unsafe { System.alloc(system_layout(layout)) };
        advise(block, layout.size());
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let block = unsafe { System.alloc_zeroed(system_layout(layout)) };
        advise(block, layout.size());
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        count_free(layout.size());
        // SAFETY: the caller gives back a block of ours with its layout, so `System` made it
        // with `system_layout(layout)`.
        unsafe { System.dealloc(block, system_layout(layout)) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = system_layout(layout);
        count_free(layout.size());
        let Ok(new) = Layout::from_size_align(new_size, layout.align()).map(system_layout) else {
            return std::ptr::null_mut();
        };
        if old.align() == new.align() {
            // SAFETY: the block is `System`'s, made with `old`; `new_size` is nonzero and
            // fits `isize` once rounded to the same alignment (the caller's contract).
            let block = unsafe { System.realloc(block, old, new_size) };
            advise(block, new_size);
            return block;
        }
        // The block moves between the small and the large alignment: `System` cannot change
        // a block's alignment in place, so copy it.
        // SAFETY: `new` has a nonzero size (the caller's contract).
        let moved = unsafe { System.alloc(new) };
        if moved.is_null() {
            return moved;
        }
        advise(moved, new_size);
        // SAFETY: both blocks are live, distinct and at least `min(old, new)` bytes long;
        // the old one is then given back with the layout it was made with.
        unsafe {
            std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
            System.dealloc(block, old);
        }
        moved
    }
}

/// The whole huge-page extents inside `[start, start + len)`, as (first address, length);
/// `None` when the block holds none.
pub fn huge_page_extents(start: usize, len: usize) -> Option<(usize, usize)> {
    let end = start.checked_add(len)?;
    let first = start.checked_next_multiple_of(HUGE_PAGE_BYTES)?;
    let last = end - end % HUGE_PAGE_BYTES;
    (last > first).then(|| (first, last - first))
}

#[cfg(target_os = "linux")]
fn advise(block: *mut u8, len: usize) {
    if block.is_null() || len < HUGE_PAGE_BYTES {
        return;
    }
    let Some((first, extent)) = huge_page_extents(block as usize, len) else {
        return;
    };
    // SAFETY: `[first, first + extent)` lies inside the block just handed out, which no one
    // else owns, and is aligned to a huge page (so to any base page size). MADV_HUGEPAGE
    // changes how the kernel backs those pages, never their contents or whether they are
    // mapped. It fails only when the kernel does not offer the advice, which leaves the
    // block as it was: the result is ignored on purpose.
    unsafe {
        libc::madvise(first as *mut libc::c_void, extent, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_block: *mut u8, _len: usize) {}

fn count_free(size: usize) {
    if size >= HUGE_PAGE_BYTES {
        FREED_LARGE_BYTES.fetch_add(size, Ordering::Relaxed);
    }
}

/// Gives back to the operating system the memory the system allocator holds free, if at
/// least `threshold` bytes of large blocks were freed through [`HugePageAlloc`] since it
/// last did; returns whether it did. Cheap when it does not (one atomic load), so it can
/// be called after every step of a loop that frees memory.
///
/// Why: glibc keeps freed blocks below its mmap threshold (which grows to 32 MiB once a
/// large block is freed) in its heaps for reuse, and gives back only the heap's top.
/// Building a plan frees a model's weights one by one as the engine copies and packs
/// them, so without this their pages stay resident beside the copies and the process
/// peaks at the weights held twice. `malloc_trim(0)` releases every free page, wherever
/// it lies in a heap. A process whose global allocator is not [`HugePageAlloc`] counts
/// nothing and never trims; on other systems (musl, macOS) trimming does nothing.
pub fn release_after_large_frees(threshold: usize) -> bool {
    if FREED_LARGE_BYTES.load(Ordering::Relaxed) < threshold {
        return false;
    }
    FREED_LARGE_BYTES.store(0, Ordering::Relaxed);
    release_free_memory();
    true
}

/// The largest block glibc serves from its heaps once [`keep_freed_blocks`] has run: its
/// own ceiling for the mmap threshold on 64-bit systems.
pub const KEPT_BLOCK_BYTES: usize = 32 << 20;

/// Keeps freed blocks of up to [`KEPT_BLOCK_BYTES`] in the system allocator's heaps for
/// the next run, instead of giving them back to the operating system and faulting fresh
/// pages in on every run; returns whether the allocator took the setting (glibc only).
///
/// Why: a plan's large activations (MobileNet's first layers at batch 8 write 25.7 MB
/// each) are freed at the end of each run and allocated again on the next. glibc serves a
/// block from its heaps only below its mmap threshold, which starts at 128 KiB and grows
/// to the largest mapped block freed, and gives a heap's top back once more than twice
/// that is free there; so whether a run's activations come back as resident memory or as
/// fresh pages (a fault each, which the kernel zeroes, and which two threads take in
/// turn) depends on the order of earlier frees. MobileNet 1.0 at batch 8 ran in 61–81 ms
/// on one thread and 35–63 ms on two from one process to the next; with both thresholds
/// fixed, 61 and 35–40 (docs/BENCHMARKS.md). For a process that runs plans again and
/// again (`ward serve`, the benchmarks): it keeps up to its peak resident after a run. A
/// one-shot `ward predict` does not call it, and [`release_free_memory`] still gives
/// everything back while a plan is built.
pub fn keep_freed_blocks() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets two of the allocator's thresholds (under its lock);
        // no block is touched. Both values fit a C int.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Gives back to the operating system every page the system allocator holds free (glibc's
/// `malloc_trim(0)`; nothing elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim hands only free pages of the allocator's own heaps back to the
    // kernel (MADV_DONTNEED); no live block is touched, and it takes each arena's lock.
    unsafe {
        libc::malloc_trim(0);
    }
}
