//! `ward-bench PACKAGE INPUT.npy THREADS ITERATIONS TRUST`: prints one JSON line with the
//! time to open the package (read, verify against the trust policy TRUST, parse), to build
//! the plan for the input's shape, and the median and minimum of `ITERATIONS` runs of the
//! compute alone (plan already built). With `WARD_BENCH_OPERATORS` set, it also prints the
//! plan's operators to stderr; with `WARD_BENCH_LAYERS=FILE`, it then times each step of
//! the plan over as many more runs and writes their medians to FILE as JSON
//! (`{"layers": [{"name", "operator", "ms"}]}`, in execution order), which
//! `bench/layers.py` sets beside MXNet's profile.
//!
//! It runs with the `ward` binary's allocator settings for a serving process: huge pages
//! for large blocks and freed blocks kept for the next run (`ward_alloc`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ward_core::npy;
use ward_exec::{LoadedPackage, TractBackend};
use ward_package::{Trust, TrustPolicy};

/// `ward`'s allocator, so that runs here fault in memory as `ward serve`'s do.
#[global_allocator]
static ALLOC: ward_alloc::HugePageAlloc = ward_alloc::HugePageAlloc;

fn main() -> Result<()> {
    ward_alloc::keep_freed_blocks();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [package, input, threads, iterations, trust] = args.as_slice() else {
        bail!("usage: ward-bench PACKAGE INPUT.npy THREADS ITERATIONS TRUST");
    };
    let package = PathBuf::from(package);
    let input = npy::read_npy(&std::fs::read(input).context("input")?)?;
    let threads: usize = threads.parse()?;
    let iterations: usize = iterations.parse::<usize>()?.max(1);

    let trust = Trust::Policy(TrustPolicy::load(&PathBuf::from(trust))?);
    let start = Instant::now();
    let backend = std::sync::Arc::new(TractBackend::new(threads)?);
    let loaded = LoadedPackage::open(&package, &trust, &Default::default(), backend)?;
    let open_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let plan = loaded.executable().plan(&[input.shape().to_vec()])?;
    let plan_s = start.elapsed().as_secs_f64();

    if std::env::var_os("WARD_BENCH_OPERATORS").is_some() {
        eprintln!("{:?}", plan.operators());
    }

    // Each run stages (copies) the input into the engine's tensor, then computes.
    let executable = loaded.executable();
    let inputs = [input.view()];
    for _ in 0..3 {
        plan.run(executable.stage(&inputs)?)?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        plan.run(executable.stage(&inputs)?)?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({
            "threads": threads,
            "open_s": open_s,
            "plan_s": plan_s,
            "median_s": median,
            "min_s": times.first().copied().unwrap_or_default(),
            "iterations": iterations,
        })
    );
    if let Some(path) = std::env::var_os("WARD_BENCH_LAYERS") {
        let mut per_step: Vec<Vec<f64>> = vec![Vec::new(); plan.layers().len()];
        for _ in 0..iterations {
            let (_, times) = plan.run_timed(executable.stage(&inputs)?)?;
            for (runs, time) in per_step.iter_mut().zip(times) {
                runs.push(time.as_secs_f64() * 1e3);
            }
        }
        let layers: Vec<_> = plan
            .layers()
            .into_iter()
            .zip(per_step)
            .map(|((name, operator), mut runs)| {
                runs.sort_by(f64::total_cmp);
                let ms = runs.get(runs.len() / 2).copied().unwrap_or_default();
                serde_json::json!({"name": name, "operator": operator, "ms": ms})
            })
            .collect();
        std::fs::write(&path, serde_json::json!({ "layers": layers }).to_string())
            .context("WARD_BENCH_LAYERS")?;
    }
    Ok(())
}
