//! Arrays in `.npy` files (read by [`ward_core::npy`], strict and bounded): the first
//! dimension counts the examples, as `mx.io.NDArrayIter` takes arrays. Any dtype ward reads
//! is served as `f32` (rounding 64-bit values); non-finite values are refused, as the
//! CSV reader refuses them.

use std::path::Path;

use ward_core::files;
use ward_core::npy::read_npy;
use ward_core::random::ChaCha20Rng;

use super::{check_index, DataError, DataLimits, Dataset, Example};

/// One array: examples along the first dimension.
#[derive(Debug, Clone, PartialEq)]
struct Rows {
    count: usize,
    width: usize,
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn read_rows(path: &Path, limits: &DataLimits) -> Result<Rows, DataError> {
    let name = path.display().to_string();
    let bytes =
        files::read_bounded(path, limits.max_file_bytes).map_err(|reason| DataError::File {
            file: name.clone(),
            reason,
        })?;
    let tensor = read_npy(&bytes).map_err(|reason| DataError::Npy {
        file: name.clone(),
        reason,
    })?;
    let Some((&count, rest)) = tensor.shape().split_first() else {
        return Err(DataError::Malformed {
            file: name,
            field: "shape",
            offset: 0,
            problem: "a 0-d array holds no examples".to_owned(),
        });
    };
    if tensor.len() as u64 > limits.max_elements {
        return Err(DataError::TooManyElements {
            file: name,
            field: "shape",
            dims: tensor.shape().iter().map(|&d| d as u64).collect(),
            elements: Some(tensor.len() as u64),
            limit: limits.max_elements,
        });
    }
    let values = tensor.to_f32_vec();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(DataError::Malformed {
            file: name,
            field: "values",
            offset: i as u64,
            problem: format!("element {i} is not finite"),
        });
    }
    // The tensor checked its length against its shape.
    let width = rest.iter().product();
    Ok(Rows {
        count,
        width,
        shape: rest.to_vec(),
        values,
    })
}

/// Data (and optionally labels) from `.npy` files.
#[derive(Debug, Clone)]
pub struct NpyDataset {
    data: Rows,
    labels: Option<Rows>,
}

impl NpyDataset {
    pub fn open(
        data: &Path,
        labels: Option<&Path>,
        limits: &DataLimits,
    ) -> Result<NpyDataset, DataError> {
        let rows = read_rows(data, limits)?;
        let labels = match labels {
            Some(path) => {
                let l = read_rows(path, limits)?;
                if l.count != rows.count {
                    return Err(DataError::CountMismatch {
                        first: data.display().to_string(),
                        first_count: rows.count as u64,
                        second: path.display().to_string(),
                        second_count: l.count as u64,
                    });
                }
                Some(l)
            }
            None => None,
        };
        Ok(NpyDataset { data: rows, labels })
    }
}

impl Dataset for NpyDataset {
    fn len(&self) -> usize {
        self.data.count
    }

    fn data_shape(&self) -> &[usize] {
        &self.data.shape
    }

    fn label_shape(&self) -> &[usize] {
        self.labels.as_ref().map_or(&[], |l| &l.shape)
    }

    fn get(&self, index: usize, _rng: &mut ChaCha20Rng) -> Result<Example, DataError> {
        check_index(index, self.data.count)?;
        let row = |r: &Rows| {
            r.values
                .get(index * r.width..(index + 1) * r.width)
                .map(<[f32]>::to_vec)
                .ok_or(DataError::IndexOutOfRange {
                    index,
                    len: r.count,
                })
        };
        Ok(Example {
            data: row(&self.data)?,
            label: match &self.labels {
                Some(l) => row(l)?,
                None => vec![0.0],
            },
        })
    }
}
