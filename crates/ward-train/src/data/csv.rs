//! Numbers in comma-separated lines, as MXNet's `CSVIter` reads them.
//!
//! `CSVIter(data_csv, data_shape, label_csv, label_shape)`: each line of `data_csv` is one
//! example of `data_shape` (row-major), each line of `label_csv` its label of
//! `label_shape`; without `label_csv` every label is zeros of `label_shape` (default
//! `[1]`). A label shape of `[1]` is served as a scalar (`CSVIter`'s label batch is
//! `(batch,)` then).
//!
//! Only numbers are accepted: each field is a decimal or exponent float (`-1.5`, `3e-2`,
//! surrounding spaces allowed), finite. Blank lines are skipped (as dmlc's parser does);
//! a line with the wrong number of fields, an empty field, text, `nan` or `inf` is refused
//! naming the line and the column (both 1-based). `CSVIter` would take `nan`/`inf` through
//! `strtof` and ignores data and label files of different lengths; ward refuses both.

use std::path::Path;

use ward_core::files;
use ward_core::random::ChaCha20Rng;

use super::{check_index, shape_elements, DataError, DataLimits, Dataset, Example};

/// A table of numbers: `rows` lines of `width` values each.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTable {
    pub rows: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

/// Parses CSV text whose lines each hold exactly `width` numbers. `name` is for messages.
pub fn parse_csv(
    name: &str,
    bytes: &[u8],
    width: usize,
    limits: &DataLimits,
) -> Result<CsvTable, DataError> {
    let err = |line: u64, column: u64, problem: String| DataError::Csv {
        file: name.to_owned(),
        line,
        column,
        problem,
    };
    if width == 0 {
        return Err(DataError::Config(format!(
            "{name}: a CSV example needs at least one value"
        )));
    }
    let mut values: Vec<f32> = Vec::new();
    let mut rows = 0usize;
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = n as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let text = std::str::from_utf8(raw).map_err(|e| {
            err(
                line,
                1 + raw
                    .get(..e.valid_up_to())
                    .map_or(0, |ok| ok.iter().filter(|&&b| b == b',').count() as u64),
                "not UTF-8 text".to_owned(),
            )
        })?;
        if (values.len() as u64).saturating_add(width as u64) > limits.max_elements {
            return Err(err(
                line,
                1,
                format!("more than {} values (element limit)", limits.max_elements),
            ));
        }
        let mut fields = 0usize;
        for (c, field) in text.split(',').enumerate() {
            let column = c as u64 + 1;
            fields += 1;
            if fields > width {
                return Err(err(
                    line,
                    column,
                    format!("more than the {width} values an example holds"),
                ));
            }
            let field = field.trim();
            values.push(parse_number(field).map_err(|problem| err(line, column, problem))?);
        }
        if fields != width {
            return Err(err(
                line,
                fields as u64,
                format!("{fields} values, but an example holds {width}"),
            ));
        }
        rows += 1;
    }
    Ok(CsvTable {
        rows,
        width,
        values,
    })
}

/// One field: digits, an optional sign, point and exponent; finite.
fn parse_number(field: &str) -> Result<f32, String> {
    if field.is_empty() {
        return Err("empty field".to_owned());
    }
    let numeric = field
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    let value: Option<f32> = if numeric { field.parse().ok() } else { None };
    match value {
        Some(v) if v.is_finite() => Ok(v),
        Some(_) => Err(format!("{field:?} is outside the range of a float32")),
        None => Err(format!("{field:?} is not a number")),
    }
}

/// Reads a CSV file through ward's bounded file reads.
pub fn read_csv_file(
    path: &Path,
    width: usize,
    limits: &DataLimits,
) -> Result<CsvTable, DataError> {
    let name = path.display().to_string();
    let bytes =
        files::read_bounded(path, limits.max_file_bytes).map_err(|reason| DataError::File {
            file: name.clone(),
            reason,
        })?;
    parse_csv(&name, &bytes, width, limits)
}

/// `CSVIter`'s data and labels.
#[derive(Debug, Clone)]
pub struct CsvDataset {
    data: CsvTable,
    labels: Option<CsvTable>,
    data_shape: Vec<usize>,
    label_shape: Vec<usize>,
    label_width: usize,
}

impl CsvDataset {
    /// `data_csv` with examples of `data_shape`; `label_csv` (optional) with labels of
    /// `label_shape` (`CSVIter`'s default is `[1]`).
    pub fn open(
        data_csv: &Path,
        data_shape: &[usize],
        label_csv: Option<&Path>,
        label_shape: &[usize],
        limits: &DataLimits,
    ) -> Result<CsvDataset, DataError> {
        let data_width = shape_width(data_shape, "data_shape")?;
        let label_width = shape_width(label_shape, "label_shape")?;
        let data = read_csv_file(data_csv, data_width, limits)?;
        let labels = match label_csv {
            Some(path) => {
                let labels = read_csv_file(path, label_width, limits)?;
                if labels.rows != data.rows {
                    return Err(DataError::CountMismatch {
                        first: data_csv.display().to_string(),
                        first_count: data.rows as u64,
                        second: path.display().to_string(),
                        second_count: labels.rows as u64,
                    });
                }
                Some(labels)
            }
            None => None,
        };
        Ok(CsvDataset {
            data,
            labels,
            data_shape: data_shape.to_vec(),
            label_shape: if label_shape == [1] {
                Vec::new()
            } else {
                label_shape.to_vec()
            },
            label_width,
        })
    }
}

fn shape_width(shape: &[usize], what: &str) -> Result<usize, DataError> {
    match shape_elements(shape) {
        Some(n) if n > 0 && n as u64 <= super::MAX_DATA_ELEMENTS => Ok(n),
        _ => Err(DataError::Config(format!(
            "{what} {shape:?} must describe 1 to {} values",
            super::MAX_DATA_ELEMENTS
        ))),
    }
}

impl Dataset for CsvDataset {
    fn len(&self) -> usize {
        self.data.rows
    }

    fn data_shape(&self) -> &[usize] {
        &self.data_shape
    }

    fn label_shape(&self) -> &[usize] {
        &self.label_shape
    }

    fn get(&self, index: usize, _rng: &mut ChaCha20Rng) -> Result<Example, DataError> {
        check_index(index, self.data.rows)?;
        let row = |t: &CsvTable| {
            t.values
                .get(index * t.width..(index + 1) * t.width)
                .map(<[f32]>::to_vec)
                .ok_or(DataError::IndexOutOfRange { index, len: t.rows })
        };
        let data = row(&self.data)?;
        let label = match &self.labels {
            Some(labels) => row(labels)?,
            None => vec![0.0; self.label_width],
        };
        Ok(Example { data, label })
    }
}
