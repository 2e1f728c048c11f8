//! `ward_train::plot`: the metrics-log reader on hostile files, and the chart read back
//! by the `png` decoder: the requested size, and the curves where they belong.

use std::io::Cursor;

use ward_train::plot::{
    parse_log, read_log, render, ChartError, ChartOptions, LogError, LogLimits,
};

/// The decoded RGB image: width, height, pixels.
fn decode(png: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(Cursor::new(png)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

/// A pixel of a curve: saturated, unlike the white background, the gray grid and axes
/// and the black text.
fn coloured(px: &[u8]) -> bool {
    let max = px.iter().max().unwrap();
    let min = px.iter().min().unwrap();
    max - min > 40
}

fn log_of(lines: &[String]) -> Vec<u8> {
    let mut text = String::from("{\"seed\":\"07\",\"threads\":1}\n");
    for l in lines {
        text += l;
        text.push('\n');
    }
    text.into_bytes()
}

#[test]
fn a_falling_loss_runs_from_upper_left_to_lower_right() {
    let lines: Vec<String> = (1..=100)
        .map(|s| {
            format!(
                "{{\"epoch\":0,\"step\":{s},\"loss\":{}}}",
                3.0 - 0.025 * f64::from(s)
            )
        })
        .collect();
    let log = parse_log(&log_of(&lines), &LogLimits::default()).unwrap();
    let options = ChartOptions {
        width: 640,
        height: 360,
    };
    let (w, h, px) = decode(&render(&log, &options).unwrap());
    assert_eq!((w, h), (640, 360));
    // The lowest curve pixel of each column (the legend's sample sits above the curve).
    let lowest: Vec<(usize, usize)> = (0..w)
        .filter_map(|x| {
            (0..h)
                .rev()
                .find(|&y| coloured(&px[(y * w + x) * 3..(y * w + x) * 3 + 3]))
                .map(|y| (x, y))
        })
        .collect();
    assert!(
        lowest.len() > w / 2,
        "the curve spans the panel: {}",
        lowest.len()
    );
    let (first, last) = (lowest[0], lowest[lowest.len() - 1]);
    assert!(first.1 < h / 3, "starts high: {first:?}");
    assert!(last.1 > h / 2, "ends low: {last:?}");
    assert!(last.0 > w * 3 / 4, "ends on the right: {last:?}");
    // Never climbs by more than the line's width.
    for pair in lowest.windows(2) {
        assert!(pair[1].1 + 3 >= pair[0].1, "{pair:?}");
    }
}

#[test]
fn metrics_get_their_own_panel_and_skipped_values_a_note() {
    let mut lines: Vec<String> = (1..=20)
        .map(|s| {
            format!(
                "{{\"epoch\":0,\"step\":{s},\"loss\":{},\"accuracy\":{},\"samples_per_s\":5}}",
                2.0 / f64::from(s),
                f64::from(s) / 20.0
            )
        })
        .collect();
    lines.push(
        "{\"epoch\":0,\"step\":20,\"train_loss\":0.5,\"train_accuracy\":0.8,\"val_loss\":0.6,\"val_accuracy\":0.75}"
            .into(),
    );
    lines.push("{\"epoch\":1,\"step\":21,\"loss\":null,\"accuracy\":null}".into());
    let log = parse_log(&log_of(&lines), &LogLimits::default()).unwrap();
    assert_eq!(log.nonfinite, 2);
    let (w, h, px) = decode(&render(&log, &ChartOptions::default()).unwrap());
    assert_eq!((w, h), (1200, 500));
    let count = |x0: usize, x1: usize, y0: usize, y1: usize| {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (y * w + x) * 3))
            .filter(|&at| coloured(&px[at..at + 3]))
            .count()
    };
    // Curves in both halves.
    assert!(count(0, w / 2, 0, h - 20) > 500);
    assert!(count(w / 2, w, 0, h - 20) > 500);
    // The red note under the panels.
    let red = (h - 16..h)
        .flat_map(|y| (0..w / 2).map(move |x| (y * w + x) * 3))
        .filter(|&at| px[at] > 150 && px[at + 1] < 80)
        .count();
    assert!(red > 50, "{red}");
}

#[test]
fn nothing_finite_is_nothing_to_draw_and_sizes_are_bounded() {
    let lines = vec!["{\"epoch\":0,\"step\":1,\"loss\":null}".to_string()];
    let log = parse_log(&log_of(&lines), &LogLimits::default()).unwrap();
    assert!(matches!(
        render(&log, &ChartOptions::default()),
        Err(ChartError::Empty)
    ));
    let lines = vec!["{\"epoch\":0,\"step\":1,\"loss\":1}".to_string()];
    let log = parse_log(&log_of(&lines), &LogLimits::default()).unwrap();
    for (width, height) in [(100, 500), (1200, 10), (5000, 500), (1200, 100_000)] {
        assert!(matches!(
            render(&log, &ChartOptions { width, height }),
            Err(ChartError::Size { .. })
        ));
    }
    // One point, extreme values: drawn, no panic.
    let lines = vec![
        "{\"epoch\":0,\"step\":0,\"loss\":1e308,\"acc\":-1e308}".to_string(),
        "{\"epoch\":0,\"step\":18446744073709551615,\"loss\":-1e-300}".to_string(),
    ];
    let log = parse_log(&log_of(&lines), &LogLimits::default()).unwrap();
    render(&log, &ChartOptions::default()).unwrap();
}

#[test]
fn hostile_files_are_refused_before_or_while_reading() {
    let tmp = tempfile::tempdir().unwrap();
    // A 100 MB line in a file: refused by the file's size, before a byte is read.
    let big = tmp.path().join("big.jsonl");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let err = read_log(&big, &LogLimits::default()).unwrap_err();
    assert!(matches!(err, LogError::File { .. }), "{err}");
    assert!(err.to_string().contains("big.jsonl"), "{err}");
    // The same line in memory: refused by the line limit, naming the line.
    let mut bytes = b"{\"seed\":1}\n{\"loss\":\"".to_vec();
    bytes.resize(100 << 20, b'a');
    assert!(matches!(
        parse_log(&bytes, &LogLimits::default()),
        Err(LogError::LineTooLong { line: 2, .. })
    ));
    // A log with no steps, and a file that is not there.
    let header = tmp.path().join("header.jsonl");
    std::fs::write(&header, "{\"seed\":\"07\",\"threads\":1}\n").unwrap();
    assert!(matches!(
        read_log(&header, &LogLimits::default()),
        Err(LogError::NoPoints)
    ));
    assert!(matches!(
        read_log(&tmp.path().join("none"), &LogLimits::default()),
        Err(LogError::File { .. })
    ));
    // A line that is not JSON, in the middle of a good log.
    let text = "{\"seed\":1}\n{\"epoch\":0,\"step\":1,\"loss\":1}\n{\"epoch\":0,\"step\":2,\n";
    let err = parse_log(text.as_bytes(), &LogLimits::default()).unwrap_err();
    assert!(matches!(err, LogError::Json { line: 3, .. }), "{err}");
}
