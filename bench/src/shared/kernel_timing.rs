//! What the kernel benchmarks share (`ward-bench-conv`, `ward-bench-conv3x3`): the
//! best-of-seven timer and the test values.

use std::time::Instant;

/// The best of seven timed runs after one untimed, in milliseconds.
pub fn best(mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    run()?;
    let mut best = f64::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        run()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best * 1e3)
}

/// Values in [-0.5, 0.5) spread by a multiplier.
pub fn values(len: usize, multiplier: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (i.wrapping_mul(multiplier) % 1000) as f32 * 1e-3 - 0.5)
        .collect()
}
