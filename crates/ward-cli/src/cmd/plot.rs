//! `ward plot`

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ward_train::plot::{read_log, render, ChartOptions, LogLimits};

/// Draw a training run's loss and metric curves as a PNG.
///
/// Reads the `metrics.jsonl` that `ward train` writes (untrusted input: bounded in size,
/// lines, series and points; a malformed line is refused naming its number and key) and
/// draws the losses (per logged step, per epoch, validation) on the left and every other
/// metric (training and validation) on the right, against the step. Values that are not
/// finite (a diverged run ends with one) are skipped, counted, and noted on the chart.
/// The PNG is written atomically and never over an existing file unless `--force`.
///
/// Example:
///   ward plot runs/lenet/metrics.jsonl --out runs/lenet/curves.png
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct PlotArgs {
    /// The run's metrics log (JSON lines, as `ward train` writes it).
    log: PathBuf,
    /// The PNG to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Image width in pixels (320 to 4096).
    #[arg(long, default_value_t = 1200)]
    width: u32,
    /// Image height in pixels (200 to 4096).
    #[arg(long, default_value_t = 500)]
    height: u32,
    /// Replace the PNG if it exists (a regular file only).
    #[arg(long)]
    force: bool,
}

pub fn run(args: PlotArgs) -> Result<()> {
    let log = read_log(&args.log, &LogLimits::default())
        .with_context(|| format!("{}", args.log.display()))?;
    let png = render(
        &log,
        &ChartOptions {
            width: args.width,
            height: args.height,
        },
    )
    .with_context(|| format!("{}", args.log.display()))?;
    if let Ok(meta) = std::fs::symlink_metadata(&args.out) {
        if !args.force {
            bail!("{} exists; pass --force to replace it", args.out.display());
        }
        if !meta.is_file() {
            bail!(
                "{} exists and is not a regular file; ward replaces only a file",
                args.out.display()
            );
        }
        // The old file goes first: the writer below never replaces anything, and what
        // appears at the path meanwhile is refused, never overwritten.
        std::fs::remove_file(&args.out)
            .with_context(|| format!("cannot remove {}", args.out.display()))?;
    }
    ward_core::files::write_new_file(&args.out, &png, 0o644)?;
    let series = log.series.len();
    println!(
        "plotted {series} series ({} points, {} step and {} epoch lines) into {}",
        log.points(),
        log.step_lines,
        log.epoch_lines,
        args.out.display()
    );
    if log.nonfinite > 0 {
        let first = log
            .first_nonfinite
            .as_ref()
            .map(|(line, key)| format!("; the first at line {line}, key `{key}`"))
            .unwrap_or_default();
        eprintln!(
            "warning: {} non-finite value{} skipped (the run diverged?){first}; the curves stop before",
            log.nonfinite,
            if log.nonfinite == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
