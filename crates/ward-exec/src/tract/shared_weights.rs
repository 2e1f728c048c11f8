//! Laid-out convolution weights shared by the plans of one weight set.
//!
//! An executable builds one plan per input shape, and `ward serve` with dynamic batching
//! builds one per batch size (1, 2, 4, 8 by default). Each plan lays out its
//! convolutions' weights when it is built; for Winograd's kernel that is 4× the 3×3
//! kernel (36 points for 9 taps), and ResNet-18 served with batches held 871 MiB in one
//! process with a copy per plan (bench/serve/results-2026-12-07.md). A laid-out weight is
//! a pure function of the kernel's values and shape, so the plans of one weight set take
//! the same one.
//!
//! The key is the weight set's id (unique in the process), the kernel's shape and a hash
//! of its values; the cache holds weak references, so a weight goes when its last plan
//! does. Two kernels of one weight set with the same shape and hash would share one
//! laid-out weight: only that weight set's author could arrange it, and only to their own
//! model's cost, since another weight set never shares its entries.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::weights::WeightsId;

/// Which laid-out form, of which kernel values and shape, of which weight set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    weights: WeightsId,
    form: &'static str,
    shape: Vec<usize>,
    values: u64,
}

impl Key {
    /// The key of `kernel` (of `shape`) of weight set `weights`, laid out as `form`.
    pub(crate) fn of(
        weights: WeightsId,
        form: &'static str,
        shape: &[usize],
        kernel: &[f32],
    ) -> Key {
        Key {
            weights,
            form,
            shape: shape.to_vec(),
            values: hash(kernel),
        }
    }
}

/// A 64-bit hash of `values`' bits, one multiply per two values (FxHash's step): every
/// plan hashes each convolution's kernel (47 MB for ResNet-18), which SipHash over each
/// value made tens of milliseconds of the build. Not a defence against collisions, which
/// the key does not need (see the module's notes).
fn hash(values: &[f32]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let mut pairs = values.chunks_exact(2);
    let mut h = (&mut pairs).fold(values.len() as u64, |h, pair| match pair {
        [a, b] => step(h, u64::from(a.to_bits()) | u64::from(b.to_bits()) << 32),
        _ => h,
    });
    for v in pairs.remainder() {
        h = step(h, u64::from(v.to_bits()));
    }
    h
}

/// The process's laid-out weights of one type, by key.
pub(crate) struct Cache<T>(LazyLock<Mutex<HashMap<Key, Weak<T>>>>);

impl<T> Cache<T> {
    pub(crate) const fn new() -> Cache<T> {
        Cache(LazyLock::new(|| Mutex::new(HashMap::new())))
    }
}

/// The laid-out weight of `key` that a live plan holds, or `lay_out()`'s, kept for the
/// plans that follow. `None` when `lay_out` gives none.
pub(crate) fn shared<T>(
    cache: &Cache<T>,
    key: Key,
    lay_out: impl FnOnce() -> Option<T>,
) -> Option<Arc<T>> {
    // A poisoned lock only means a panic elsewhere while it was held; the map of weak
    // references is still whole.
    let mut map = cache
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
        return Some(live);
    }
    let laid_out = Arc::new(lay_out()?);
    map.retain(|_, weak| weak.strong_count() > 0);
    map.insert(key, Arc::downgrade(&laid_out));
    Some(laid_out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(weights: u64, values: &[f32]) -> Key {
        Key::of(WeightsId::for_tests(weights), "planar", &[2, 1], values)
    }

    /// Plans of one weight set take one laid-out weight while one of them holds it; other
    /// values, another shape or another weight set lay out their own; once the last plan
    /// drops it, the next lays it out again.
    #[test]
    fn plans_of_one_weight_set_share_a_laid_out_weight() {
        static CACHE: Cache<Vec<f32>> = Cache::new();
        let mut laid_out = 0;
        let mut get = |k: Key, v: &[f32]| {
            shared(&CACHE, k, || {
                laid_out += 1;
                Some(v.to_vec())
            })
            .unwrap()
        };
        let first = get(key(1, &[1.0, 2.0]), &[1.0, 2.0]);
        let again = get(key(1, &[1.0, 2.0]), &[1.0, 2.0]);
        assert!(Arc::ptr_eq(&first, &again));
        let other_values = get(key(1, &[1.0, 3.0]), &[1.0, 3.0]);
        let other_set = get(key(2, &[1.0, 2.0]), &[1.0, 2.0]);
        let other_shape = get(
            Key::of(WeightsId::for_tests(1), "planar", &[1, 2], &[1.0, 2.0]),
            &[1.0, 2.0],
        );
        for other in [&other_values, &other_set, &other_shape] {
            assert!(!Arc::ptr_eq(&first, other));
        }
        drop((first, again));
        let fresh = get(key(1, &[1.0, 2.0]), &[1.0, 2.0]);
        assert_eq!(*fresh, [1.0, 2.0]);
        assert_eq!(laid_out, 5);
    }

    /// A layout that fails is not kept: the next plan tries again.
    #[test]
    fn a_failed_layout_is_not_kept() {
        static CACHE: Cache<u8> = Cache::new();
        assert!(shared(&CACHE, key(3, &[0.5]), || None).is_none());
        assert_eq!(*shared(&CACHE, key(3, &[0.5]), || Some(7)).unwrap(), 7);
    }
}
