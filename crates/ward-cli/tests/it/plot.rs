//! `ward plot`: a run's metrics log in, a PNG of the requested size out; a skipped NaN
//! reported; an existing PNG kept unless `--force`; a malformed log refused naming the
//! line.

use std::path::Path;

use crate::support::{stderr, ward};

/// A log as `ward train` writes it: the header, step lines, epoch lines, and a last
/// step whose loss was NaN (written as null).
fn write_log(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from("{\"seed\":\"07\",\"threads\":2}\n");
    for epoch in 0..3u32 {
        for i in 1..=5u32 {
            let step = epoch * 50 + i * 10;
            let loss = 2.3 / (1.0 + f64::from(step) / 20.0);
            text += &format!(
                "{{\"epoch\":{epoch},\"step\":{step},\"loss\":{loss},\"accuracy\":{},\"samples_per_s\":1000.0}}\n",
                1.0 - loss / 2.5
            );
        }
        let step = epoch * 50 + 50;
        text += &format!(
            "{{\"epoch\":{epoch},\"step\":{step},\"train_loss\":{},\"train_accuracy\":{},\"val_loss\":{},\"val_accuracy\":{}}}\n",
            1.5 / f64::from(epoch + 1),
            0.5 + 0.1 * f64::from(epoch),
            1.4 / f64::from(epoch + 1),
            0.55 + 0.1 * f64::from(epoch)
        );
    }
    text += "{\"epoch\":3,\"step\":160,\"loss\":null,\"accuracy\":0.1,\"samples_per_s\":990.0}\n";
    let path = dir.join("metrics.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

/// The width and height in a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn plots_a_log_and_keeps_an_existing_png_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let log = write_log(tmp.path());
    let out = tmp.path().join("curves.png");
    let plot = |width: &str, extra: &[&str]| {
        let mut args = vec![
            "plot",
            log.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--width",
            width,
            "--height",
            "300",
        ];
        args.extend_from_slice(extra);
        ward(&args)
    };
    let o = plot("640", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("plotted 6 series"), "{stdout}");
    let err = stderr(&o);
    assert!(
        err.contains("1 non-finite value skipped") && err.contains("line 20, key `loss`"),
        "{err}"
    );
    let first = std::fs::read(&out).unwrap();
    assert_eq!(png_size(&first), (640, 300));

    // Not replaced without --force.
    let o = plot("800", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), first);
    let o = plot("800", &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(png_size(&std::fs::read(&out).unwrap()), (800, 300));
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // --force replaces a file, never a directory.
    let dir = tmp.path().join("dir.png");
    std::fs::create_dir(&dir).unwrap();
    let o = ward(&[
        "plot",
        log.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
}

#[test]
fn malformed_logs_and_sizes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.png");
    let cases = [
        (
            "{\"seed\":1}\n{\"epoch\":0,\"step\":1,\"loss\":1}\nnot json\n",
            "line 3: not JSON",
        ),
        (
            "{\"seed\":1}\n{\"epoch\":0,\"step\":1,\"loss\":\"x\"}\n",
            "line 2: key `loss`",
        ),
        ("{\"seed\":1}\n", "nothing to plot"),
    ];
    for (text, want) in cases {
        let log = tmp.path().join("m.jsonl");
        std::fs::write(&log, text).unwrap();
        let o = ward(&[
            "plot",
            log.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{text}");
        assert!(stderr(&o).contains(want), "{text}: {}", stderr(&o));
        assert!(!out.exists());
    }
    let log = write_log(tmp.path());
    let o = ward(&[
        "plot",
        log.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--width",
        "100000",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("image size"), "{}", stderr(&o));
    // A link as the log is refused (ward reads no file through a final symlink).
    let link = tmp.path().join("link.jsonl");
    std::os::unix::fs::symlink(&log, &link).unwrap();
    let o = ward(&[
        "plot",
        link.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
