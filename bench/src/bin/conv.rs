//! Times ResNet-18's convolution layers (batch 16 at 112², as `bench/train`'s workload)
//! pass by pass on ward's kernels: the kernels `Conv2d` picks on this CPU, and the matrix
//! crate's path (`Conv2d::with_matrix_crate_only`). Prints one JSON object per layer and
//! path: the best of seven runs of the forward pass, the data gradient and the weight
//! gradient, in milliseconds.
//!
//! Usage: `ward-bench-conv THREADS [LAYER]` (only the layers whose name contains
//! LAYER). `bench/train/conv_layers.sh` runs it beside MXNet's
//! own convolution on the same layers.

use anyhow::Context;
use ward_kernels::conv::{Conv2d, ConvWindow};

#[path = "../shared/kernel_timing.rs"]
mod kernel_timing;
use kernel_timing::{best, values};

/// A layer: name, input, output channels, kernel, stride, pad.
type Layer = (&'static str, [usize; 4], usize, usize, usize, usize);

/// ResNet-18's distinct 3×3 and 7×7 layers at 112² (and a strided 3×3 that opens a
/// stage).
const LAYERS: [Layer; 6] = [
    ("conv0 7×7 s2, 3 → 64", [16, 3, 112, 112], 64, 7, 2, 3),
    ("stage 1 3×3, 64 at 28²", [16, 64, 28, 28], 64, 3, 1, 1),
    ("stage 2 3×3 s2, 64 → 128", [16, 64, 28, 28], 128, 3, 2, 1),
    ("stage 2 3×3, 128 at 14²", [16, 128, 14, 14], 128, 3, 1, 1),
    ("stage 3 3×3, 256 at 7²", [16, 256, 7, 7], 256, 3, 1, 1),
    ("stage 4 3×3, 512 at 4²", [16, 512, 4, 4], 512, 3, 1, 1),
];

fn main() -> anyhow::Result<()> {
    let threads: usize = std::env::args()
        .nth(1)
        .context("usage: ward-bench-conv THREADS [LAYER]")?
        .parse()
        .context("THREADS")?;
    // Only the layers whose name contains this, when given (for a profiler).
    let only = std::env::args().nth(2).unwrap_or_default();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    for (name, input, out_channels, kernel, stride, pad) in LAYERS {
        if !name.contains(&only) {
            continue;
        }
        let window = ConvWindow {
            out_channels,
            kernel: [kernel, kernel],
            stride: [stride, stride],
            pad: [pad, pad],
            dilation: [1, 1],
            groups: 1,
        };
        let conv = Conv2d::new(input, window)?;
        let x = values(conv.input_len(), 7919);
        let w = values(conv.weight_len(), 104_729);
        let dy = values(conv.output_len(), 31);
        let mut y = vec![0.0; conv.output_len()];
        let mut dx = vec![0.0; conv.input_len()];
        let mut dw = vec![0.0; conv.weight_len()];
        for (path, g) in [
            ("ward", conv),
            ("matrix crate", conv.with_matrix_crate_only()),
        ] {
            let forward = best(|| Ok(g.forward(&x, &w, None, &mut y)?))?;
            let data = best(|| Ok(g.backward_data(&dy, &w, &mut dx)?))?;
            let weight = best(|| Ok(g.backward_weight(&x, &dy, &mut dw, None)?))?;
            println!(
                "{}",
                serde_json::json!({
                    "layer": name, "threads": threads, "path": path,
                    "forward_ms": forward, "data_ms": data, "weight_ms": weight,
                })
            );
        }
    }
    Ok(())
}
