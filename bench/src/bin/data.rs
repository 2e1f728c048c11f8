//! Times ward's data pipeline alone: JPEG records of a RecordIO file decoded and
//! augmented as MXNet's `ImageRecordIter` does (shorter side resized to 256, random
//! 224×224 crop, random mirror, mean/std), batched by `Loader` on worker threads. The
//! records and MXNet's own figure come from `bench/data/mxnet_pipeline.py`; driven by
//! `bench/data/run.sh`.
//!
//! Usage: `ward-bench-data DIR THREADS`
//! Prints one JSON line: images decoded per second over two epochs after a warm-up one.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use ward_core::random::RunSeed;
use ward_mxnet::limits::RecordIoLimits;
use ward_train::data::batch::{LastBatch, Loader, LoaderConfig};
use ward_train::data::image::ImageParams;
use ward_train::data::recordio::ImageRecordDataset;
use ward_train::data::DataLimits;

/// As bench/data/mxnet_pipeline.py.
const BATCH: usize = 32;
const EPOCHS: u64 = 2;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, threads] = args.as_slice() else {
        bail!("usage: ward-bench-data DIR THREADS");
    };
    let dir = Path::new(dir);
    let threads: usize = threads.parse()?;
    let params = ImageParams {
        data_shape: [3, 224, 224],
        resize: Some(256),
        rand_crop: true,
        rand_mirror: true,
        mirror: false,
        mean: [123.68, 116.28, 103.53],
        std: [58.395, 57.12, 57.375],
        scale: 1.0,
        label_width: 1,
    };
    let data = ImageRecordDataset::open(
        &dir.join("images.rec"),
        Some(&dir.join("images.idx")),
        params,
        &DataLimits::default(),
        &RecordIoLimits::default(),
    )?;
    let loader = Loader::new(
        Arc::new(data),
        LoaderConfig {
            batch_size: BATCH,
            shuffle: true,
            last_batch: LastBatch::Pad,
            threads,
            prefetch: 4,
        },
        RunSeed::from_u64(1),
    )?;
    // One untimed pass warms the page cache, as the MXNet side does.
    for batch in loader.epoch(0)? {
        batch?;
    }
    let mut images = 0usize;
    let start = Instant::now();
    for epoch in 1..=EPOCHS {
        for batch in loader.epoch(epoch)? {
            let batch = batch?;
            images += BATCH - batch.pad;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"images": images, "seconds": seconds,
            "images_per_s": images as f64 / seconds})
    );
    Ok(())
}
