//! Fuzzes the reader of `ward train`'s metrics log (`ward plot`'s input) and the chart
//! drawn from what it accepts. Neither may panic; an accepted log must hold only finite
//! points within the limits, and its chart must be a PNG.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_train::plot::{parse_log, render, ChartOptions, LogLimits};

fuzz_target!(|data: &[u8]| {
    let limits = LogLimits {
        max_lines: 1000,
        max_points: 4000,
        max_series: 16,
        ..LogLimits::default()
    };
    let Ok(log) = parse_log(data, &limits) else {
        return;
    };
    assert!(log.step_lines + log.epoch_lines > 0);
    assert!(log.points() <= limits.max_points);
    assert!(log.series.len() <= limits.max_series);
    assert!(log
        .series
        .iter()
        .flat_map(|s| &s.points)
        .all(|(x, y)| x.is_finite() && y.is_finite()));
    let options = ChartOptions {
        width: 320,
        height: 200,
    };
    if let Ok(png) = render(&log, &options) {
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
});
