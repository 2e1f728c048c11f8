//! What the crate's unit tests share.

/// `len` values in [-1, 1), spread by a multiplicative hash of the index and `seed`: test
/// weights and inputs that differ from element to element and from seed to seed.
pub(crate) fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| {
            ((i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 1000) as f32 / 500.0 - 1.0
        })
        .collect()
}
