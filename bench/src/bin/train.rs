//! Times ward's training step (forward, backward, SGD with momentum) on a workload that
//! `bench/train/mxnet_train.py export` wrote: the same symbol, initial parameters and
//! batch MXNet trains. Driven by bench/train/run.sh.
//!
//! Usage: `ward-bench-train DIR THREADS ITERS [profile]`
//! With `profile`, each step's time per operator goes to stderr, and with
//! `WARD_BENCH_NODES=1` also each node's (forward and backward ms).
//! Prints one JSON line: median/min/max step seconds, the loss after the timed steps,
//! the peak resident memory.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ward_core::npy::read_npy;
use ward_core::DType;
use ward_graph::ir::{InputRole, ParamRole};
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;
use ward_train::engine::{Engine, EngineOptions};
use ward_train::{Optimizer, OptimizerSpec, ParamMults, ParamState, ParamUpdate};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, threads, iters, profile) = match args.as_slice() {
        [_, dir, threads, iters] => (dir, threads, iters, false),
        [_, dir, threads, iters, p] if p == "profile" => (dir, threads, iters, true),
        _ => bail!("usage: ward-bench-train DIR THREADS ITERS [profile]"),
    };
    let dir = Path::new(dir);
    let threads: usize = threads.parse()?;
    let iters: usize = iters.parse()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    pool.install(|| run(dir, iters, profile))
}

fn run(dir: &Path, iters: usize, profile: bool) -> Result<()> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| format!("{}", dir.join(name).display()))
    };
    let data = read_npy(&read("data.npy")?)?;
    let label = read_npy(&read("label.npy")?)?;
    let symbol = read_symbol(&read("model-symbol.json")?, &Default::default())?;
    let params = read_params(&read("model-0000.params")?, &Default::default())?;
    let declared = [DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: data.shape().iter().map(|&d| d as i64).collect(),
    }];
    let imported = import(&symbol, params, &declared)?;
    let mut weights: Vec<Vec<f32>> = imported
        .f32_weights()
        .into_iter()
        .zip(&imported.graph.params)
        .map(|(w, p)| w.with_context(|| format!("no weights for {}", p.name)))
        .collect::<Result<_>>()?;
    let graph = imported.graph;
    let inputs: Vec<Vec<f32>> = graph
        .inputs
        .iter()
        .map(|i| match i.role {
            InputRole::Data => data.to_f32_vec(),
            InputRole::Label => label.to_f32_vec(),
        })
        .collect();
    let shapes: Vec<Vec<usize>> = graph
        .inputs
        .iter()
        .map(|i| match i.role {
            InputRole::Data => data.shape().to_vec(),
            InputRole::Label => label.shape().to_vec(),
        })
        .collect();
    // rescale_grad is 1/(label rows): the batch of an image model, T·N tokens of the
    // language model.
    let rows = label.shape().first().copied().unwrap_or(1) as f64;
    // The optimizer MXNet's side runs (bench/train/mxnet_train.py), declared as data.
    let spec: OptimizerSpec = serde_json::from_value(serde_json::json!({
        "name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4,
        "rescale_grad": 1.0 / rows,
    }))?;
    // Module mode: the symbol's declared multipliers, else only weights and gammas decay
    // (MXNet's Optimizer.set_wd_mult; Gluon's exports declare __wd_mult__ = 1 on all).
    let mults: Vec<Option<ParamMults>> = graph
        .params
        .iter()
        .map(|p| {
            (p.role == ParamRole::Trainable).then(|| ParamMults::module_symbol(&spec, p, &symbol))
        })
        .collect();
    let mut optimizer = Optimizer::new(spec, None)?;
    let mut states: Vec<ParamState> = weights.iter().map(|w| optimizer.create_state(w)).collect();
    let engine = Engine::new(
        graph,
        &shapes,
        EngineOptions {
            profile,
            ..EngineOptions::default()
        },
    )?;
    let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    // One training step as the trainer runs it; the caller gives the step's buffers back
    // (`Engine::recycle`) or keeps its outputs.
    let mut step = |weights: &mut Vec<Vec<f32>>| -> Result<ward_train::engine::Step> {
        let refs: Vec<&[f32]> = weights.iter().map(Vec::as_slice).collect();
        let mut out = engine.step(&refs, &input_refs)?;
        let mut updates: Vec<ParamUpdate<'_>> = weights
            .iter_mut()
            .zip(&out.param_grads)
            .zip(states.iter_mut())
            .zip(&mults)
            .filter_map(|(((weight, grad), state), mults)| {
                Some(ParamUpdate {
                    weight,
                    grad,
                    state,
                    mults: (*mults)?,
                })
            })
            .collect();
        optimizer.step(&mut updates)?;
        drop(updates);
        for (p, value) in std::mem::take(&mut out.states) {
            if let Some(w) = weights.get_mut(p) {
                *w = value;
            }
        }
        if !out.timings.is_empty() {
            let mut by_op: std::collections::BTreeMap<(&str, bool), (f64, f64, usize)> =
                Default::default();
            for t in &out.timings {
                let e = by_op.entry((t.op, t.fast)).or_default();
                e.0 += t.forward_s;
                e.1 += t.backward_s;
                e.2 += 1;
            }
            if std::env::var_os("WARD_BENCH_NODES").is_some() {
                for t in &out.timings {
                    eprintln!(
                        "node {} {} {:.2} {:.2}",
                        t.node,
                        t.op,
                        t.forward_s * 1e3,
                        t.backward_s * 1e3
                    );
                }
            }
            eprintln!("op | kernels | nodes | forward ms | backward ms");
            for ((op, fast), (f, b, n)) in by_op {
                eprintln!("{op} | {fast} | {n} | {:.2} | {:.2}", f * 1e3, b * 1e3);
            }
        }
        Ok(out)
    };
    for _ in 0..3 {
        let out = step(&mut weights)?;
        engine.recycle(out);
    }
    let mut times = Vec::with_capacity(iters);
    let mut probs = Vec::new();
    for i in 0..iters {
        let t = Instant::now();
        let mut out = step(&mut weights)?;
        if i + 1 < iters {
            // As the trainer does: the step's buffers serve the next step.
            engine.recycle(out);
        } else if let Some(first) = out.outputs.first_mut() {
            // The last step's probabilities are kept for the loss (not copied: MXNet's
            // timed loop copies no output either).
            probs = std::mem::take(&mut first.data);
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let labels = label.to_f32_vec();
    let classes = probs.len() / labels.len().max(1);
    let loss = labels
        .iter()
        .enumerate()
        .map(|(r, &l)| {
            let p = probs.get(r * classes + l as usize).copied().unwrap_or(0.0);
            -f64::from(p.max(1e-30)).ln()
        })
        .sum::<f64>()
        / labels.len().max(1) as f64;
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0;
    println!(
        "{{\"median_s\": {}, \"min_s\": {}, \"max_s\": {}, \"loss\": {loss}, \"peak_rss_mib\": {peak}, \"fast_nodes\": {}}}",
        times.get(times.len() / 2).copied().unwrap_or(0.0),
        times.first().copied().unwrap_or(0.0),
        times.last().copied().unwrap_or(0.0),
        engine.fast_nodes()
    );
    Ok(())
}
