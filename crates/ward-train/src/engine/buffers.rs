//! Reused `f32` buffers. A training step allocates and frees the same large buffers every
//! step (each node's output and gradient), and a fresh large buffer is paid for in page
//! faults as it is first written: on this project's VM a fresh 45 MB buffer costs 33 ms
//! to fill against 7 ms for a reused one cleared first, and the LSTM language model's
//! step made 44,000 faults (docs/BENCHMARKS.md, "Training").
//!
//! The engine takes its large buffers here ([`zeroed`], [`copied`], [`scratch`]) and
//! gives them back when a step is done ([`recycle`]); each thread keeps its own free list,
//! so the calling thread of a training loop reuses what its previous step freed.
//!
//! Clearing a reused buffer is itself a pass over memory (4.5 % of a ResNet-18 step was
//! `memset`), so an output that its kernel overwrites in full takes a [`scratch`] buffer,
//! which keeps whatever the step's earlier buffers left in it. Debug builds (every test)
//! fill a scratch buffer with NaN instead, so an element a kernel fails to write shows up
//! as NaN in the results that the tests compare.

use std::cell::RefCell;

/// Buffers below this many elements (256 KiB) come from the allocator's own free lists.
const MIN_POOLED: usize = 1 << 16;
/// At most this many elements (1 GiB) wait on one thread's free list.
const MAX_POOLED: usize = 1 << 28;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` zeros.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    match take(len) {
        Some(mut v) => {
            v.clear();
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// A buffer of `len` values for an output that its writer overwrites in full: reused
/// memory keeps its old values (NaN in debug builds), fresh memory is zero.
pub(crate) fn scratch(len: usize) -> Vec<f32> {
    match take(len) {
        Some(mut v) => {
            v.truncate(len);
            if cfg!(debug_assertions) {
                v.fill(f32::NAN);
                v.resize(len, f32::NAN);
            } else {
                v.resize(len, 0.0);
            }
            v
        }
        None if cfg!(debug_assertions) => vec![f32::NAN; len],
        None => vec![0.0; len],
    }
}

/// A buffer holding a copy of `src`.
pub(crate) fn copied(src: &[f32]) -> Vec<f32> {
    match take(src.len()) {
        Some(mut v) => {
            v.clear();
            v.extend_from_slice(src);
            v
        }
        None => src.to_vec(),
    }
}

/// A buffer of `row` repeated `times` times (a bias for each row of a product), written
/// once rather than zeroed first.
pub(crate) fn repeated(row: &[f32], times: usize) -> Vec<f32> {
    let len = row.len().saturating_mul(times);
    let mut v = take(len).unwrap_or_else(|| Vec::with_capacity(len));
    v.clear();
    for _ in 0..times {
        v.extend_from_slice(row);
    }
    v
}

/// Gives a buffer back for a later [`zeroed`] or [`copied`] on this thread.
pub(crate) fn recycle(v: Vec<f32>) {
    if v.capacity() < MIN_POOLED {
        return;
    }
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        let held: usize = free.iter().map(Vec::capacity).sum();
        if held.saturating_add(v.capacity()) <= MAX_POOLED {
            free.push(v);
        }
    });
}

/// The smallest free buffer that holds `len` elements without wasting more than half of
/// itself, as its last user left it.
fn take(len: usize) -> Option<Vec<f32>> {
    if len < MIN_POOLED {
        return None;
    }
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len && v.capacity() / 2 <= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(free.swap_remove(best))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_buffer_comes_back_cleared() {
        let n = MIN_POOLED + 5;
        let mut a = zeroed(n);
        a.iter_mut().for_each(|v| *v = 7.0);
        let at = a.as_ptr();
        recycle(a);
        let b = zeroed(n - 3);
        assert_eq!(b.as_ptr(), at, "the same memory");
        assert_eq!(b.len(), n - 3);
        assert!(b.iter().all(|&v| v == 0.0));
        recycle(b);
        let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let c = copied(&src);
        assert_eq!(c, src);
        recycle(c);
        let r = repeated(&[1.0, 2.0, 3.0], n / 3);
        assert_eq!(r.len(), n / 3 * 3);
        assert!(r.chunks_exact(3).all(|row| row == [1.0, 2.0, 3.0]));
        assert_eq!(r.as_ptr(), at, "the pooled memory again");
        recycle(r);
        let s = scratch(n - 1);
        assert_eq!(s.as_ptr(), at, "scratch reuses the pooled memory");
        assert_eq!(s.len(), n - 1);
        if cfg!(debug_assertions) {
            assert!(
                s.iter().all(|v| v.is_nan()),
                "debug builds poison scratch buffers"
            );
            assert!(scratch(MIN_POOLED / 2).iter().all(|v| v.is_nan()));
        }
        recycle(s);
        // Too small to pool, or too large a buffer for a small request: fresh memory.
        assert!(take(MIN_POOLED / 2).is_none());
        assert!(take(n / 3).is_none());
    }
}
