//! The chart: a run's losses and metrics against the step, as a PNG.
//!
//! The left panel holds the losses: `loss` per logged step (a thin light line),
//! `train_loss` per epoch (a thick line with markers), `val_loss` per epoch (thick,
//! dashed, markers). The right panel holds every other series the same way, one colour
//! per metric (`accuracy`, `train_accuracy` and `val_accuracy` share one). A panel with
//! nothing to show is left out. Each panel has a title, axes with ticks at round values
//! and their numbers, light grid lines, and a legend in the corner the curves leave
//! most empty. Skipped non-finite values are noted under the panels.

use super::log::{RunLog, Scope, Series};
use super::raster::{self, lighten, text_height, text_width, Canvas, Pen, RasterError, Rgb};

/// The smallest and largest image ward draws.
pub const MIN_WIDTH: u32 = 320;
pub const MIN_HEIGHT: u32 = 200;
pub const MAX_SIDE: u32 = 4096;

/// Why no chart was drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error(
        "image size {width}x{height} is outside {MIN_WIDTH}x{MIN_HEIGHT} to {MAX_SIDE}x{MAX_SIDE}"
    )]
    Size { width: u32, height: u32 },
    #[error("the log has no finite value to plot")]
    Empty,
    #[error(transparent)]
    Raster(#[from] RasterError),
}

/// The image's size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChartOptions {
    pub width: u32,
    pub height: u32,
}

impl Default for ChartOptions {
    fn default() -> Self {
        ChartOptions {
            width: 1200,
            height: 500,
        }
    }
}

const GRID: Rgb = [228, 228, 228];
const AXIS: Rgb = [60, 60, 60];
const TEXT: Rgb = [20, 20, 20];
const NOTE: Rgb = [190, 30, 30];
/// Tableau's ten colours: distinct, and legible on white.
const PALETTE: [Rgb; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// The losses, drawn on the left.
const LOSSES: [&str; 3] = ["loss", "train_loss", "val_loss"];

/// Values beyond this magnitude are drawn at it, so that ranges and ticks stay finite.
const MAX_MAGNITUDE: f64 = 1e150;

/// One series as drawn.
struct Curve<'a> {
    series: &'a Series,
    label: String,
    pen: Pen,
    markers: bool,
}

/// A rectangle: left, top, right, bottom (inclusive).
#[derive(Clone, Copy)]
struct Rect {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

/// The metric a key belongs to: `train_accuracy` and `val_accuracy` are `accuracy`.
fn base(key: &str) -> &str {
    key.strip_prefix("train_")
        .or_else(|| key.strip_prefix("val_"))
        .unwrap_or(key)
}

fn curve<'a>(series: &'a Series, color: Rgb, scale: usize) -> Curve<'a> {
    let val = series.key.starts_with("val_");
    match series.scope {
        Scope::Step => Curve {
            series,
            label: format!("{} (step)", series.key),
            pen: Pen {
                color: lighten(color, 0.45),
                width: scale,
                dash: None,
            },
            markers: false,
        },
        Scope::Epoch => Curve {
            series,
            label: series.key.clone(),
            pen: Pen {
                color: if val { darker(color) } else { color },
                width: scale + 1,
                dash: val.then_some((8.0 * scale as f64, 5.0 * scale as f64)),
            },
            markers: true,
        },
    }
}

fn darker(color: Rgb) -> Rgb {
    color.map(|c| (f64::from(c) * 0.7).round() as u8)
}

/// The two panels' curves: losses, and the rest by metric.
fn curves(log: &RunLog, scale: usize) -> (Vec<Curve<'_>>, Vec<Curve<'_>>) {
    let drawable = |s: &&Series| !s.points.is_empty();
    let loss_colors = [PALETTE[0], PALETTE[0], PALETTE[1]];
    let losses = LOSSES
        .iter()
        .zip(loss_colors)
        .filter_map(|(key, color)| {
            log.get(key)
                .filter(|s| !s.points.is_empty())
                .map(|s| curve(s, color, scale))
        })
        .collect();
    let mut bases: Vec<&str> = Vec::new();
    let mut metrics = Vec::new();
    for s in log
        .series
        .iter()
        .filter(drawable)
        .filter(|s| !LOSSES.contains(&s.key.as_str()))
    {
        let b = base(&s.key);
        let i = bases.iter().position(|x| *x == b).unwrap_or_else(|| {
            bases.push(b);
            bases.len() - 1
        });
        let color = PALETTE
            .get(i % PALETTE.len())
            .copied()
            .unwrap_or(raster::BLACK);
        metrics.push(curve(s, color, scale));
    }
    // Within a metric: per step first (underneath), then train, then validation.
    metrics.sort_by_key(|c| {
        let b = base(&c.series.key);
        let order = match c.series.scope {
            Scope::Step => 0,
            Scope::Epoch if c.series.key.starts_with("val_") => 2,
            Scope::Epoch => 1,
        };
        (bases.iter().position(|x| *x == b), order)
    });
    (losses, metrics)
}

/// Round tick values covering `[lo, hi]`: a step of 1, 2 or 5 × 10^k giving about
/// `target` intervals, and the range widened to multiples of it.
fn ticks(lo: f64, hi: f64, target: f64, integer: bool) -> (f64, f64, f64) {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    };
    let raw = (hi - lo) / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    let mut step = nice * magnitude;
    if integer {
        step = step.max(1.0).round();
    }
    // A range of subnormal values has no usable power of ten.
    if !(step > 0.0 && step.is_finite()) {
        return (lo - 1.0, hi + 1.0, 1.0);
    }
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// A tick's number, with the decimals its step needs.
fn tick_label(v: f64, step: f64) -> String {
    let big = v.abs().max(step.abs());
    if big >= 1e6 || (step < 1e-4 && v != 0.0) {
        return format!("{v:.1e}");
    }
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    let text = format!("{v:.decimals$}");
    // "-0" and "-0.00" are 0.
    if text
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        text.trim_start_matches('-').to_owned()
    } else {
        text
    }
}

/// Draws one panel in `area`.
/// `x_range` is the steps both panels show, so that they line up.
fn panel(
    canvas: &mut Canvas,
    area: Rect,
    title: &str,
    curves: &[Curve<'_>],
    x_range: (f64, f64),
    scale: usize,
) {
    let th = text_height(scale);
    let title_scale = scale + 1;
    let points = || curves.iter().flat_map(|c| c.series.points.iter());
    let clamp = |v: f64| v.clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE);
    let (mut ylo, mut yhi) = (f64::MAX, f64::MIN);
    for &(_, y) in points() {
        ylo = ylo.min(clamp(y));
        yhi = yhi.max(clamp(y));
    }
    let (ylo, yhi, ystep) = ticks(ylo, yhi, 5.0, false);
    let ylabels: Vec<(f64, String)> = (0..=60)
        .map(|i| ylo + ystep * f64::from(i))
        .take_while(|v| *v <= yhi + ystep * 1e-9)
        .map(|v| (v, tick_label(v, ystep)))
        .collect();
    let label_w = ylabels
        .iter()
        .map(|(_, t)| text_width(t, scale))
        .max()
        .unwrap_or(0);
    let plot = Rect {
        x0: area.x0 + label_w + 4 * scale as i64 + 4,
        y0: area.y0 + text_height(title_scale) + 3 * th / 2,
        x1: area.x1 - 4 * scale as i64,
        y1: area.y1 - 2 * th - 4 * scale as i64 - 6,
    };
    let title_x = (plot.x0 + plot.x1 - text_width(title, title_scale)) / 2;
    canvas.text(title_x, area.y0 + th / 2, title, title_scale, TEXT);
    if plot.x1 - plot.x0 < 20 || plot.y1 - plot.y0 < 20 {
        return;
    }
    // As many step ticks as their numbers leave room for.
    let widest = text_width(&tick_label(x_range.1, 1.0), scale) + 6 * raster::advance(scale);
    let room = ((plot.x1 - plot.x0) as f64 / widest.max(1) as f64).clamp(1.0, 8.0);
    let (xlo, xhi, xstep) = ticks(x_range.0, x_range.1, room, true);
    let px = |x: f64| plot.x0 as f64 + (x - xlo) / (xhi - xlo) * (plot.x1 - plot.x0) as f64;
    let py = |y: f64| plot.y1 as f64 - (clamp(y) - ylo) / (yhi - ylo) * (plot.y1 - plot.y0) as f64;
    // Grid and ticks.
    let tick = 3 * scale as i64;
    for (v, text) in &ylabels {
        let y = py(*v).round() as i64;
        canvas.fill(plot.x0, y, plot.x1, y + 1, GRID);
        canvas.fill(plot.x0 - tick, y, plot.x0, y + 1, AXIS);
        let w = text_width(text, scale);
        canvas.text(plot.x0 - tick - 2 - w, y - th / 2, text, scale, TEXT);
    }
    let mut x = xlo;
    for _ in 0..=60 {
        if x > xhi + xstep * 1e-9 {
            break;
        }
        let at = px(x).round() as i64;
        canvas.fill(at, plot.y0, at + 1, plot.y1, GRID);
        canvas.fill(at, plot.y1, at + 1, plot.y1 + tick, AXIS);
        let text = tick_label(x, xstep);
        let w = text_width(&text, scale);
        canvas.text(at - w / 2, plot.y1 + tick + 3, &text, scale, TEXT);
        x += xstep;
    }
    let xlabel = "step";
    canvas.text(
        (plot.x0 + plot.x1 - text_width(xlabel, scale)) / 2,
        plot.y1 + tick + th + 6,
        xlabel,
        scale,
        TEXT,
    );
    canvas.outline(plot.x0, plot.y0, plot.x1, plot.y1, AXIS);

    // The curves, then the legend over them.
    let mapped: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|c| {
            c.series
                .points
                .iter()
                .map(|&(x, y)| (px(x), py(y)))
                .collect()
        })
        .collect();
    for (c, pts) in curves.iter().zip(&mapped) {
        canvas.polyline(pts, c.pen);
        if c.markers && pts.len() <= 200 {
            for &(x, y) in pts {
                canvas.marker(x, y, 3 * scale + 2, c.pen.color);
            }
        }
    }
    legend(canvas, plot, curves, &mapped, scale);
}

/// The legend, in the plot corner holding the fewest curve points.
fn legend(
    canvas: &mut Canvas,
    plot: Rect,
    curves: &[Curve<'_>],
    mapped: &[Vec<(f64, f64)>],
    scale: usize,
) {
    if curves.is_empty() {
        return;
    }
    let th = text_height(scale);
    let row = th + 4 * scale as i64;
    let sample = 24 * scale as i64;
    let pad = 4 * scale as i64;
    let label_w = curves
        .iter()
        .map(|c| text_width(&c.label, scale))
        .max()
        .unwrap_or(0);
    let w = pad * 3 + sample + label_w;
    let h = pad * 2 + row * curves.len() as i64 - 4 * scale as i64;
    let inset = 6;
    let corners = [
        (plot.x1 - inset - w, plot.y0 + inset),
        (plot.x1 - inset - w, plot.y1 - inset - h),
        (plot.x0 + inset, plot.y0 + inset),
        (plot.x0 + inset, plot.y1 - inset - h),
    ];
    let covered = |&(x0, y0): &(i64, i64)| {
        mapped
            .iter()
            .flatten()
            .filter(|&&(x, y)| {
                (x0 as f64..(x0 + w) as f64).contains(&x)
                    && (y0 as f64..(y0 + h) as f64).contains(&y)
            })
            .count()
    };
    let Some(&(x0, y0)) = corners.iter().min_by_key(|c| covered(c)) else {
        return;
    };
    canvas.fill(x0, y0, x0 + w, y0 + h, raster::WHITE);
    canvas.outline(x0, y0, x0 + w - 1, y0 + h - 1, GRID);
    for (i, c) in curves.iter().enumerate() {
        let y = y0 + pad + row * i as i64;
        let mid = (y + th / 2) as f64;
        let xs = (x0 + pad) as f64;
        canvas.polyline(&[(xs, mid), (xs + sample as f64, mid)], c.pen);
        if c.markers {
            canvas.marker(xs + sample as f64 / 2.0, mid, 3 * scale + 2, c.pen.color);
        }
        canvas.text(x0 + pad * 2 + sample, y, &c.label, scale, TEXT);
    }
}

/// Draws the log's curves as a PNG of the requested size.
pub fn render(log: &RunLog, options: &ChartOptions) -> Result<Vec<u8>, ChartError> {
    let (w, h) = (options.width, options.height);
    if !(MIN_WIDTH..=MAX_SIDE).contains(&w) || !(MIN_HEIGHT..=MAX_SIDE).contains(&h) {
        return Err(ChartError::Size {
            width: w,
            height: h,
        });
    }
    // Text grows with the image: 5×7 pixels per glyph up to 400 pixels high.
    let scale = ((h / 400).max(1) as usize).min(4);
    let (losses, metrics) = curves(log, scale);
    if losses.is_empty() && metrics.is_empty() {
        return Err(ChartError::Empty);
    }
    let mut canvas = Canvas::new(w as usize, h as usize, raster::WHITE)?;
    let th = text_height(scale);
    let note = (log.nonfinite > 0).then(|| {
        let first = log
            .first_nonfinite
            .as_ref()
            .map(|(line, key)| format!(" (the first: line {line}, {key})"))
            .unwrap_or_default();
        format!(
            "{} non-finite value{} skipped{first}",
            log.nonfinite,
            if log.nonfinite == 1 { "" } else { "s" }
        )
    });
    let bottom = h as i64 - 1 - if note.is_some() { th + 6 } else { 0 };
    let (w, margin) = (w as i64, 6 * scale as i64);
    let panels: Vec<(&str, &[Curve<'_>])> = [("loss", &losses[..]), ("metrics", &metrics[..])]
        .into_iter()
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let steps = panels
        .iter()
        .flat_map(|(_, c)| c.iter())
        .flat_map(|c| c.series.points.iter().map(|p| p.0));
    let x_range = steps.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let each = (w - margin) / panels.len() as i64;
    for (i, (title, c)) in panels.iter().enumerate() {
        let x0 = margin / 2 + each * i as i64;
        let area = Rect {
            x0,
            y0: 0,
            x1: x0 + each - margin / 2,
            y1: bottom,
        };
        panel(&mut canvas, area, title, c, x_range, scale);
    }
    if let Some(note) = note {
        canvas.text(margin, h as i64 - th - 4, &note, scale, NOTE);
    }
    Ok(canvas.to_png()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.13, 2.31, 5.0, false), (0.0, 2.5, 0.5));
        assert_eq!(ticks(0.0, 937.0, 8.0, true), (0.0, 1000.0, 100.0));
        assert_eq!(ticks(0.0, 3.0, 8.0, true), (0.0, 3.0, 1.0));
        let (lo, hi, _) = ticks(5.0, 5.0, 5.0, false);
        assert!(lo < 5.0 && hi > 5.0);
        let (lo, hi, step) = ticks(-MAX_MAGNITUDE, MAX_MAGNITUDE, 5.0, false);
        assert!(lo.is_finite() && hi.is_finite() && step > 0.0);
    }

    #[test]
    fn tick_labels_have_the_decimals_their_step_needs() {
        assert_eq!(tick_label(0.5, 0.5), "0.5");
        assert_eq!(tick_label(2.0, 0.5), "2.0");
        assert_eq!(tick_label(1000.0, 100.0), "1000");
        assert_eq!(tick_label(-0.0, 0.02), "0.00");
        assert_eq!(tick_label(0.00002, 0.00001), "2.0e-5");
        assert_eq!(tick_label(3e7, 1e7), "3.0e7");
    }
}
