//! `ward-bench-extraction`: what the extraction monitor of `ward serve` costs a request.
//! Prints one JSON line: the median time to sketch one query of 16, 784 and 150 528
//! elements (the MLP, an MNIST image, squeezenet's 3×224×224), to compare one query with
//! a stream that remembers the most queries it may (the worst case of every request), and
//! one Shapiro–Wilk test of the most distances a stream keeps (run at most once per 2 %
//! new distances).

#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark harness over data it made itself: a panic is a failed run"
)]

use std::time::Instant;

use anyhow::Result;
use ward_core::Tensor;
use ward_serve::extraction::{shapiro_wilk, ExtractionConfig, ExtractionMonitor, MAX_DISTANCES};

/// Median seconds of `iterations` calls of `f`.
fn median(iterations: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Deterministic numbers in [-1, 1) (xorshift), so runs compare.
struct Numbers(u64);
impl Numbers {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn row(&mut self, width: usize) -> Tensor {
        let values: Vec<f32> = (0..width).map(|_| self.next()).collect();
        Tensor::from_f32(vec![1, width], &values).expect("a 1-row tensor")
    }
}

fn main() -> Result<()> {
    let mut numbers = Numbers(0x9e37_79b9_7f4a_7c15);
    // A threshold no stream reaches: every query is compared, none flags the stream.
    let config = ExtractionConfig {
        threshold: 1e-9,
        ..ExtractionConfig::default()
    };
    let remembered = config.max_remembered;
    let monitor = ExtractionMonitor::new(config)?;
    let mut sketch_s = Vec::new();
    for width in [16usize, 784, 150_528] {
        let row = numbers.row(width);
        sketch_s.push((width, median(200, || drop(monitor.sketch_rows(&row)))));
    }
    // Fill one stream until it remembers as many queries as it may: each query a little
    // larger than the last, so each is farther from the others than the stream's threshold.
    let mut fed = 0;
    while monitor.remembered("bench", "m") < remembered && fed < 100 * remembered {
        let scale = 1.0 + fed as f32 * 0.05;
        let row: Vec<f32> = (0..784).map(|_| numbers.next() * scale).collect();
        let q = monitor.sketch_rows(&Tensor::from_f32(vec![1, 784], &row)?);
        monitor.observe("bench", "m", &q, &[0]);
        fed += 1;
    }
    let members = monitor.remembered("bench", "m");
    let queries: Vec<_> = (0..500)
        .map(|_| monitor.sketch_rows(&numbers.row(784)))
        .collect();
    let mut next = queries.iter().cycle();
    let observe_s = median(500, || {
        let q = next.next().expect("a cycle never ends");
        monitor.observe("bench", "m", q, &[0]);
    });
    let distances: Vec<f64> = (0..MAX_DISTANCES)
        .map(|_| f64::from(numbers.next()).abs())
        .collect();
    let test_s = median(50, || {
        let _ = shapiro_wilk(&distances);
    });
    let sketch: Vec<String> = sketch_s
        .iter()
        .map(|(w, s)| format!("\"{w}\":{s:.9}"))
        .collect();
    println!(
        "{{\"sketch_s\":{{{}}},\"observe_s\":{observe_s:.9},\"remembered\":{members},\"queries_fed\":{fed},\"shapiro_wilk_s\":{test_s:.9},\"distances\":{MAX_DISTANCES}}}",
        sketch.join(",")
    );
    Ok(())
}
