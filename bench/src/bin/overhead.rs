//! `ward-bench-overhead PACKAGE INPUT.npy TRUST [CALLS]`: where one prediction's time goes,
//! on one thread, as the Python binding makes it (`LoadedPackage::stage` with the GIL held,
//! `run_staged` with it released). Prints one JSON line of medians over rounds, in
//! microseconds per call: the whole call, the schema check and the copy together
//! (`stage`), the copy alone (`Executable::stage`), and `run_staged` (plan lookup, the
//! engine's run, the outputs' copy) with the plan's run alone beside it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ward_core::npy;
use ward_exec::{LoadedPackage, TractBackend};
use ward_graph::schema::InputLimits;
use ward_package::{Trust, TrustPolicy};

/// The median over 9 rounds of the microseconds per call of `f`.
fn micros(calls: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut rounds = Vec::new();
    for _ in 0..9 {
        let start = Instant::now();
        for _ in 0..calls {
            f()?;
        }
        rounds.push(start.elapsed().as_secs_f64() * 1e6 / calls as f64);
    }
    rounds.sort_by(f64::total_cmp);
    Ok(rounds.get(rounds.len() / 2).copied().unwrap_or_default())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (package, input, trust, calls) = match args.as_slice() {
        [p, i, t] => (p, i, t, 2000),
        [p, i, t, c] => (p, i, t, c.parse()?),
        _ => bail!("usage: ward-bench-overhead PACKAGE INPUT.npy TRUST [CALLS]"),
    };
    let input = npy::read_npy(&std::fs::read(input).context("input")?)?;
    let trust = Trust::Policy(TrustPolicy::load(&PathBuf::from(trust))?);
    let backend = std::sync::Arc::new(TractBackend::new(1)?);
    let loaded = LoadedPackage::open(
        &PathBuf::from(package),
        &trust,
        &Default::default(),
        backend,
    )?;
    let name = loaded
        .manifest()
        .inputs
        .first()
        .map(|i| i.name.clone())
        .context("the package has no input")?;
    let limits = InputLimits::default();
    let views = [(name.as_str(), input.view())];
    let executable = loaded.executable();
    let plan = executable.plan(&[input.shape().to_vec()])?;
    if std::env::var_os("WARD_BENCH_OPERATORS").is_some() {
        eprintln!("{:?}", plan.operators());
    }

    let call = || -> Result<()> {
        let staged = loaded.stage(&views, &limits)?;
        loaded.run_staged(staged)?;
        Ok(())
    };
    for _ in 0..calls {
        call()?;
    }
    let whole = micros(calls, call)?;
    let stage = micros(calls, || {
        loaded.stage(&views, &limits)?;
        Ok(())
    })?;
    let copy = micros(calls, || {
        executable.stage(&[input.view()])?;
        Ok(())
    })?;
    let run_staged = micros(calls, || {
        let staged = loaded.stage(&views, &limits)?;
        let start = Instant::now();
        loaded.run_staged(staged)?;
        std::hint::black_box(start.elapsed());
        Ok(())
    })? - stage;
    let plan_run = micros(calls, || {
        plan.run(executable.stage(&[input.view()])?)?;
        Ok(())
    })? - copy;
    println!(
        "{}",
        serde_json::json!({
            "calls": calls,
            "whole_us": whole,
            "stage_us": stage,
            "copy_us": copy,
            "check_us": stage - copy,
            "run_staged_us": run_staged,
            "plan_run_us": plan_run,
            "lookup_and_naming_us": run_staged - plan_run,
        })
    );
    Ok(())
}
