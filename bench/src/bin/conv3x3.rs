//! Times the 3×3 stride-1 layers of the served models (ResNet-18's four stages at 224²,
//! Inception v3's and DenseNet-121's 3×3 layers) at inference, on each kernel ward's plans
//! may pick for them: the direct kernels (`Conv2d::forward_packed_relu`), the planar
//! kernel and Winograd F(4×4, 3×3) (`ward_kernels::winograd`). Prints one JSON object
//! per layer, batch and kernel: the best of seven runs after one untimed, in
//! milliseconds, and the multiply-adds of the direct convolution per second.
//!
//! Usage: `ward-bench-conv3x3 THREADS [BATCH...]` (batches 1 and 8 when none is given);
//! `KERNEL=winograd` (or `direct`, `planar`) times only that kernel, for a profiler.
//! What the numbers chose is in `ward_exec`'s `direct_conv` (`prefers_winograd`).

use anyhow::Context;
use ward_kernels::conv::{Conv2d, ConvWindow};
use ward_kernels::planar::{self, PlanarWeights};
use ward_kernels::winograd::{self, WinogradWeights};

#[path = "../shared/kernel_timing.rs"]
mod kernel_timing;
use kernel_timing::{best, values};

/// A layer: name, input channels, side, output channels.
type Layer = (&'static str, usize, usize, usize);

const LAYERS: [Layer; 11] = [
    ("resnet18 stage 1, 64 at 56²", 64, 56, 64),
    ("resnet18 stage 2, 128 at 28²", 128, 28, 128),
    ("resnet18 stage 3, 256 at 14²", 256, 14, 256),
    ("resnet18 stage 4, 512 at 7²", 512, 7, 512),
    ("densenet121 3×3, 128 → 32 at 56²", 128, 56, 32),
    ("densenet121 3×3, 128 → 32 at 28²", 128, 28, 32),
    ("densenet121 3×3, 128 → 32 at 14²", 128, 14, 32),
    ("densenet121 3×3, 128 → 32 at 7²", 128, 7, 32),
    ("inceptionv3 3×3, 64 → 96 at 35²", 64, 35, 96),
    ("inceptionv3 3×3, 96 → 96 at 35²", 96, 35, 96),
    ("inceptionv3 3×3, 448 → 384 at 8²", 448, 8, 384),
];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args
        .next()
        .context("usage: ward-bench-conv3x3 THREADS [BATCH...]")?
        .parse()
        .context("THREADS")?;
    let mut batches = args
        .map(|b| b.parse::<usize>().context("BATCH"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if batches.is_empty() {
        batches = vec![1, 8];
    }
    let only = std::env::var("KERNEL").unwrap_or_default();
    let runs = |kernel: &str| only.is_empty() || only == kernel;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    for batch in batches {
        for (name, inp, side, out) in LAYERS {
            let window = ConvWindow {
                out_channels: out,
                kernel: [3, 3],
                stride: [1, 1],
                pad: [1, 1],
                dilation: [1, 1],
                groups: 1,
            };
            let g = Conv2d::new([batch, inp, side, side], window)?;
            let x = values(g.input_len(), 7);
            let w = values(g.weight_len(), 13);
            let bias = values(out, 3);
            let mut y = vec![0.0f32; g.output_len()];
            let macs = (g.output_len() * inp * 9) as f64;
            let report = |kernel: &str, ms: f64| {
                let record = serde_json::json!({
                    "layer": name, "batch": batch, "threads": threads, "kernel": kernel,
                    "ms": (ms * 1e3).round() / 1e3,
                    "direct_gmacs": (macs / ms / 1e6).round(),
                });
                println!("{record}");
            };
            if g.runs_direct() && runs("direct") {
                let packed = g.pack(&w)?;
                let ms = pool.install(|| {
                    best(|| Ok(g.forward_packed_relu(&x, &packed, Some(&bias), true, &mut y)?))
                })?;
                report("direct", ms);
            }
            if runs("planar") {
                let planar_w = PlanarWeights::pack(&w, out, inp * 9)?;
                let ms = pool.install(|| {
                    best(|| {
                        Ok(planar::forward_conv(
                            &g,
                            &x,
                            &planar_w,
                            Some(&bias),
                            true,
                            &mut y,
                        )?)
                    })
                })?;
                report("planar", ms);
            }
            if !runs("winograd") {
                continue;
            }
            let wino = WinogradWeights::pack(&w, out, inp)?;
            let ms = pool.install(|| {
                best(|| Ok(winograd::forward(&g, &x, &wino, Some(&bias), true, &mut y)?))
            })?;
            report("winograd", ms);
        }
    }
    Ok(())
}
