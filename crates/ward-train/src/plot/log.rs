//! The reader of a training run's `metrics.jsonl`, as untrusted input.
//!
//! The format `ward train` writes: one JSON object per line. The first is the header
//! (`seed`, `threads`, ...: kept as keys, never plotted). Every other line has a
//! non-negative integer `step` and an `epoch`; a line with a key starting `train_` or
//! `val_` is an epoch line (`train_loss`, `train_accuracy`, `val_loss`, ...), any other a
//! step line (`loss`, `accuracy`, ...). Every other number becomes a point `(step, value)`
//! of the series named by its key, whatever the key (new metrics need no change here);
//! `samples_per_s` is a rate, not a curve, and is left out.
//!
//! Limits come first: the file is read once through `ward_core::files` with a size
//! limit, then each line's length, the number of lines, series and points are bounded
//! ([`LogLimits`]). A value that is not finite (`null`, which is how `serde_json` writes
//! NaN and infinities) is skipped and counted: a run that diverged ends with one, and what
//! came before is still worth plotting. Anything else malformed is refused, naming the
//! line and the key ([`LogError`]).

use std::path::Path;

use serde_json::Value;
use ward_core::files::FileError;

/// The bounds on a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// The largest file read (bytes).
    pub max_bytes: u64,
    /// The longest line (bytes): ward's lines are a few hundred.
    pub max_line_bytes: usize,
    /// Most lines.
    pub max_lines: usize,
    /// Most points over all series.
    pub max_points: usize,
    /// Most series (distinct keys).
    pub max_series: usize,
    /// The longest key (bytes).
    pub max_key_bytes: usize,
}

/// 64 MiB: a run logging every step for a million steps fits.
pub const MAX_LOG_BYTES: u64 = 64 << 20;
pub const MAX_LINE_BYTES: usize = 64 << 10;
pub const MAX_LINES: usize = 2_000_000;
pub const MAX_POINTS: usize = 4_000_000;
pub const MAX_SERIES: usize = 64;
pub const MAX_KEY_BYTES: usize = 64;

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_bytes: MAX_LOG_BYTES,
            max_line_bytes: MAX_LINE_BYTES,
            max_lines: MAX_LINES,
            max_points: MAX_POINTS,
            max_series: MAX_SERIES,
            max_key_bytes: MAX_KEY_BYTES,
        }
    }
}

/// Why a log was refused. Lines are numbered from 1.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: FileError,
    },
    #[error("the log is empty: not even the header line")]
    NoHeader,
    #[error("line {line}: {bytes} bytes, more than the limit of {limit}")]
    LineTooLong {
        line: usize,
        bytes: usize,
        limit: usize,
    },
    #[error("more than {limit} lines")]
    TooManyLines { limit: usize },
    #[error("more than {limit} points")]
    TooManyPoints { limit: usize },
    #[error("line {line}: key `{key}` would be one series more than the limit of {limit}")]
    TooManySeries {
        line: usize,
        key: String,
        limit: usize,
    },
    #[error("line {line}: not UTF-8")]
    NotUtf8 { line: usize },
    #[error("line {line}: not JSON: {reason}")]
    Json { line: usize, reason: String },
    #[error("line {line}: not a JSON object")]
    NotObject { line: usize },
    #[error("line {line}: key `{key}`: {reason}")]
    Key {
        line: usize,
        key: String,
        reason: &'static str,
    },
    #[error("no step or epoch lines: nothing to plot")]
    NoPoints,
}

/// What a series' points are: one per logged step (averaged over the steps since the
/// last), or one per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Step,
    Epoch,
}

/// One key's points, in the order logged: `(step, value)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub key: String,
    pub scope: Scope,
    pub points: Vec<(f64, f64)>,
}

/// A training run's log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunLog {
    /// The header's keys.
    pub header: Vec<String>,
    /// The series, in the order their keys first appear.
    pub series: Vec<Series>,
    pub step_lines: usize,
    pub epoch_lines: usize,
    /// Values that were not finite, skipped.
    pub nonfinite: usize,
    /// The first of them: its line and key.
    pub first_nonfinite: Option<(usize, String)>,
}

impl RunLog {
    /// The series named `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.key == key)
    }

    /// The number of points of all series.
    pub fn points(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }
}

/// Keys of every line that are not curves.
const NOT_PLOTTED: &[&str] = &["epoch", "step", "samples_per_s"];

/// Reads and parses the log at `path`.
pub fn read_log(path: &Path, limits: &LogLimits) -> Result<RunLog, LogError> {
    let bytes = ward_core::files::read_bounded(path, limits.max_bytes).map_err(|source| {
        LogError::File {
            path: path.display().to_string(),
            source,
        }
    })?;
    parse_log(&bytes, limits)
}

/// Parses a log's bytes.
pub fn parse_log(bytes: &[u8], limits: &LogLimits) -> Result<RunLog, LogError> {
    let mut log = RunLog::default();
    let mut header_seen = false;
    let mut points = 0usize;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        if line > limits.max_lines {
            return Err(LogError::TooManyLines {
                limit: limits.max_lines,
            });
        }
        if raw.len() > limits.max_line_bytes {
            return Err(LogError::LineTooLong {
                line,
                bytes: raw.len(),
                limit: limits.max_line_bytes,
            });
        }
        let text = std::str::from_utf8(raw).map_err(|_| LogError::NotUtf8 { line })?;
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text).map_err(|e| LogError::Json {
            line,
            reason: e.to_string(),
        })?;
        let Value::Object(fields) = value else {
            return Err(LogError::NotObject { line });
        };
        if !header_seen {
            header_seen = true;
            if fields.contains_key("step") {
                return Err(LogError::Key {
                    line,
                    key: "step".into(),
                    reason: "the first line must be the run's header, not a step",
                });
            }
            log.header = fields.keys().cloned().collect();
            continue;
        }
        let key_error = |key: &str, reason| LogError::Key {
            line,
            key: key.to_owned(),
            reason,
        };
        let step = match fields.get("step") {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| key_error("step", "must be a non-negative integer"))?,
            None => return Err(key_error("step", "missing")),
        };
        match fields.get("epoch") {
            Some(v) if v.is_u64() => {}
            Some(_) => return Err(key_error("epoch", "must be a non-negative integer")),
            None => return Err(key_error("epoch", "missing")),
        }
        let scope = if fields
            .keys()
            .any(|k| k.starts_with("train_") || k.starts_with("val_"))
        {
            log.epoch_lines += 1;
            Scope::Epoch
        } else {
            log.step_lines += 1;
            Scope::Step
        };
        for (key, v) in &fields {
            if NOT_PLOTTED.contains(&key.as_str()) {
                continue;
            }
            if key.len() > limits.max_key_bytes {
                return Err(key_error(key, "longer than the key limit"));
            }
            let value = match v {
                Value::Number(n) => n.as_f64().filter(|x| x.is_finite()),
                // serde_json writes NaN and infinities as null.
                Value::Null => None,
                _ => return Err(key_error(key, "must be a number (or null)")),
            };
            let Some(value) = value else {
                log.nonfinite += 1;
                if log.first_nonfinite.is_none() {
                    log.first_nonfinite = Some((line, key.clone()));
                }
                continue;
            };
            points += 1;
            if points > limits.max_points {
                return Err(LogError::TooManyPoints {
                    limit: limits.max_points,
                });
            }
            let series = match log.series.iter().position(|s| s.key == *key) {
                Some(at) => log.series.get_mut(at),
                None => {
                    if log.series.len() >= limits.max_series {
                        return Err(LogError::TooManySeries {
                            line,
                            key: key.clone(),
                            limit: limits.max_series,
                        });
                    }
                    log.series.push(Series {
                        key: key.clone(),
                        scope,
                        points: Vec::new(),
                    });
                    log.series.last_mut()
                }
            };
            if let Some(series) = series {
                series.points.push((step as f64, value));
            }
        }
    }
    if !header_seen {
        return Err(LogError::NoHeader);
    }
    if log.step_lines + log.epoch_lines == 0 {
        return Err(LogError::NoPoints);
    }
    Ok(log)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"seed":"07","threads":2}
{"epoch":0,"step":20,"loss":2.1,"accuracy":0.3,"samples_per_s":900.5}
{"epoch":0,"step":40,"loss":1.2,"accuracy":0.6,"samples_per_s":950.0}
{"epoch":0,"step":63,"train_loss":1.5,"train_accuracy":0.5,"val_loss":1.1,"val_accuracy":0.7}
"#;

    fn parse(text: &str) -> Result<RunLog, LogError> {
        parse_log(text.as_bytes(), &LogLimits::default())
    }

    #[test]
    fn a_good_log_gives_its_series() {
        let log = parse(GOOD).unwrap();
        assert_eq!(log.header, ["seed", "threads"]);
        assert_eq!((log.step_lines, log.epoch_lines), (2, 1));
        let loss = log.get("loss").unwrap();
        assert_eq!(loss.scope, Scope::Step);
        assert_eq!(loss.points, [(20.0, 2.1), (40.0, 1.2)]);
        assert_eq!(log.get("val_accuracy").unwrap().scope, Scope::Epoch);
        assert_eq!(log.get("val_accuracy").unwrap().points, [(63.0, 0.7)]);
        assert!(log.get("samples_per_s").is_none());
        assert!(log.get("seed").is_none());
        assert_eq!(log.series.len(), 6);
        assert_eq!(log.points(), 8);
    }

    #[test]
    fn new_metric_names_need_nothing_new() {
        let log = parse(
            "{}\n{\"epoch\":0,\"step\":1,\"loss\":1,\"top_k_accuracy_5\":0.9,\"perplexity\":40}\n",
        )
        .unwrap();
        assert_eq!(log.get("perplexity").unwrap().points, [(1.0, 40.0)]);
        assert!(log.get("top_k_accuracy_5").is_some());
    }

    #[test]
    fn nonfinite_values_are_skipped_and_counted() {
        let text = format!(
            "{GOOD}{{\"epoch\":1,\"step\":80,\"loss\":null,\"accuracy\":0.7}}\n{{\"epoch\":1,\"step\":81,\"loss\":null}}\n"
        );
        let log = parse(&text).unwrap();
        assert_eq!(log.nonfinite, 2);
        assert_eq!(log.first_nonfinite, Some((5, "loss".into())));
        assert_eq!(log.get("loss").unwrap().points.len(), 2);
        assert_eq!(log.get("accuracy").unwrap().points.len(), 3);
    }

    #[test]
    fn hostile_logs_are_refused_naming_the_line_and_key() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("\n\n", "empty"),
            ("{\"seed\":1}\n", "nothing to plot"),
            ("{\"seed\":1}\nnot json\n", "line 2: not JSON"),
            ("[1,2]\n", "line 1: not a JSON object"),
            (
                "{\"seed\":1}\n{\"step\":1,\"loss\":1}\n",
                "line 2: key `epoch`: missing",
            ),
            (
                "{\"seed\":1}\n{\"epoch\":0,\"step\":-1,\"loss\":1}\n",
                "line 2: key `step`",
            ),
            (
                "{\"seed\":1}\n{\"epoch\":0,\"step\":1.5,\"loss\":1}\n",
                "line 2: key `step`",
            ),
            (
                "{\"seed\":1}\n{\"epoch\":0,\"step\":1,\"loss\":\"1\"}\n",
                "line 2: key `loss`",
            ),
            (
                "{\"seed\":1}\n{\"epoch\":0,\"step\":1,\"loss\":[1]}\n",
                "key `loss`",
            ),
            (
                "{\"seed\":1}\n{\"epoch\":0,\"step\":1,\"loss\":NaN}\n",
                "line 2: not JSON",
            ),
            (
                "{\"epoch\":0,\"step\":1,\"loss\":1}\n",
                "line 1: key `step`",
            ),
            ("{\"seed\":1}\n\u{0}\n", "line 2: not JSON"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert!(matches!(
            parse_log(b"{}\n\xff\n", &LogLimits::default()),
            Err(LogError::NotUtf8 { line: 2 })
        ));
        // Deeply nested JSON is refused by serde_json's depth limit, not the stack.
        let deep = format!("{{}}\n{}{}\n", "[".repeat(5000), "]".repeat(5000));
        assert!(matches!(parse(&deep), Err(LogError::Json { line: 2, .. })));
    }

    #[test]
    fn limits_hold() {
        let tight = LogLimits {
            max_lines: 3,
            ..LogLimits::default()
        };
        assert!(matches!(
            parse_log(GOOD.as_bytes(), &tight),
            Err(LogError::TooManyLines { limit: 3 })
        ));
        let tight = LogLimits {
            max_points: 5,
            ..LogLimits::default()
        };
        assert!(matches!(
            parse_log(GOOD.as_bytes(), &tight),
            Err(LogError::TooManyPoints { limit: 5 })
        ));
        let tight = LogLimits {
            max_series: 2,
            ..LogLimits::default()
        };
        assert!(matches!(
            parse_log(GOOD.as_bytes(), &tight),
            Err(LogError::TooManySeries { line: 4, .. })
        ));
        let long = format!(
            "{{}}\n{{\"epoch\":0,\"step\":1,\"{}\":1}}\n",
            "k".repeat(65)
        );
        assert!(matches!(parse(&long), Err(LogError::Key { line: 2, .. })));
        let line = format!("{{}}\n{{\"pad\":\"{}\"}}\n", "x".repeat(MAX_LINE_BYTES));
        assert!(matches!(
            parse(&line),
            Err(LogError::LineTooLong { line: 2, .. })
        ));
    }
}
