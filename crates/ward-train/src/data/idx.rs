//! MNIST's IDX files, as MXNet's `MNISTIter` reads them.
//!
//! An IDX file is two zero bytes, a type byte (`0x08` unsigned byte, `0x09` signed byte,
//! `0x0B` i16, `0x0C` i32, `0x0D` f32, `0x0E` f64), a rank byte, one big-endian `u32` per
//! dimension, then the values, big-endian, row-major. `MNISTIter` reads images (rank 3:
//! count, rows, columns) and labels (rank 1) of unsigned bytes only; so does
//! [`MnistDataset`]. [`read_idx`] reads the header of any type and the values of byte
//! files.
//!
//! Files whose name ends in `.gz` (or that start with gzip's magic) are decompressed
//! transparently, within [`DataLimits::max_decompressed_bytes`]; `MNISTIter` reads plain
//! files only.
//!
//! Semantics kept from `MNISTIter` (src/io/iter_mnist.cc, 1.9.1): pixels are scaled by
//! 1/256 (not 1/255), so 255 becomes 0.99609375; `flat` gives each example the shape
//! `[rows × cols]`, otherwise `[1, rows, cols]`; the label is the byte as a float. Ward
//! adds what `MNISTIter` does not check: the dims' product against the bytes present
//! and [`DataLimits::max_elements`] (checked arithmetic), no trailing bytes, equal image
//! and label counts, and every label below the declared class count. `MNISTIter`'s
//! `shuffle`, `seed` and `part_index`/`num_parts` belong to [`super::batch`] here.

use std::io::Read;
use std::path::Path;

use ward_core::files;
use ward_core::random::ChaCha20Rng;
use ward_core::Reader;

use super::{check_index, DataError, DataLimits, Dataset, Example};

/// `MNISTIter`'s pixel scale.
pub const MNIST_PIXEL_SCALE: f32 = 1.0 / 256.0;

/// The element type an IDX header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl IdxType {
    fn from_code(code: u8) -> Option<IdxType> {
        Some(match code {
            0x08 => IdxType::U8,
            0x09 => IdxType::I8,
            0x0B => IdxType::I16,
            0x0C => IdxType::I32,
            0x0D => IdxType::F32,
            0x0E => IdxType::F64,
            _ => return None,
        })
    }

    pub fn size(self) -> u64 {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }
}

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub values: Vec<u8>,
}

/// Reads an IDX file (gzip-compressed or not) through ward's bounded file reads.
pub fn read_idx_file(path: &Path, limits: &DataLimits) -> Result<IdxArray, DataError> {
    let name = path.display().to_string();
    let raw =
        files::read_bounded(path, limits.max_file_bytes).map_err(|reason| DataError::File {
            file: name.clone(),
            reason,
        })?;
    let gz = path.extension().is_some_and(|e| e == "gz") || raw.starts_with(&[0x1f, 0x8b]);
    let bytes = if gz {
        gunzip(&name, &raw, limits.max_decompressed_bytes)?
    } else {
        raw
    };
    read_idx(&name, &bytes, limits)
}

/// Decompresses a gzip stream (all members) of at most `limit` bytes; more is refused
/// without holding more than `limit + 1` bytes.
pub fn gunzip(name: &str, bytes: &[u8], limit: u64) -> Result<Vec<u8>, DataError> {
    let decoder = flate2::read::MultiGzDecoder::new(bytes);
    let mut out = Vec::new();
    decoder
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DataError::Gzip {
            file: name.to_owned(),
            reason: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(DataError::DecompressedTooLarge {
            file: name.to_owned(),
            limit,
        });
    }
    Ok(out)
}

/// Parses an IDX file of unsigned bytes held in memory. `name` is for messages.
pub fn read_idx(name: &str, bytes: &[u8], limits: &DataLimits) -> Result<IdxArray, DataError> {
    let mut r = Reader::new(bytes);
    let truncated = |t: ward_core::Truncated| DataError::Truncated {
        file: name.to_owned(),
        field: t.field,
        offset: t.offset as u64,
        needed: t.needed as u64,
        available: t.available as u64,
    };
    let malformed = |field: &'static str, offset: u64, problem: String| DataError::Malformed {
        file: name.to_owned(),
        field,
        offset,
        problem,
    };
    let zeros = r.take("magic", 2).map_err(truncated)?;
    if zeros != [0, 0] {
        return Err(malformed(
            "magic",
            0,
            format!("expected two zero bytes, found {zeros:02x?} (not an IDX file)"),
        ));
    }
    let code = r.u8("type byte").map_err(truncated)?;
    let dtype = IdxType::from_code(code).ok_or_else(|| {
        malformed(
            "type byte",
            2,
            format!("{code:#04x} is no IDX type (0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e)"),
        )
    })?;
    let rank = usize::from(r.u8("rank").map_err(truncated)?);
    if rank == 0 || rank > limits.max_rank {
        return Err(malformed(
            "rank",
            3,
            format!("{rank} is not in 1..={}", limits.max_rank),
        ));
    }
    let mut dims = Vec::with_capacity(rank);
    for _ in 0..rank {
        let b = r.take("dimension", 4).map_err(truncated)?;
        let mut word = [0u8; 4];
        word.copy_from_slice(b);
        dims.push(u64::from(u32::from_be_bytes(word)));
    }
    let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    let too_many = |elements| DataError::TooManyElements {
        file: name.to_owned(),
        field: "dimensions",
        dims: dims.clone(),
        elements,
        limit: limits.max_elements,
    };
    let count = match elements {
        Some(n) if n <= limits.max_elements => n,
        other => return Err(too_many(other)),
    };
    let data_offset = r.offset() as u64;
    let needed = count
        .checked_mul(dtype.size())
        .ok_or_else(|| too_many(None))?;
    if (r.remaining() as u64) < needed {
        return Err(DataError::Truncated {
            file: name.to_owned(),
            field: "values",
            offset: data_offset,
            needed,
            available: r.remaining() as u64,
        });
    }
    if r.remaining() as u64 > needed {
        return Err(malformed(
            "values",
            data_offset + needed,
            format!(
                "{} bytes follow the {needed} the dimensions {dims:?} describe",
                r.remaining() as u64 - needed
            ),
        ));
    }
    if dtype != IdxType::U8 {
        return Err(malformed(
            "type byte",
            2,
            format!("{dtype:?} values: MNISTIter reads unsigned bytes (0x08) only"),
        ));
    }
    let values = r.rest().to_vec();
    // Every dim is at most the element count, which fits the bytes present.
    let dims = dims.iter().map(|&d| d as usize).collect();
    Ok(IdxArray { dims, values })
}

/// Options of [`MnistDataset`], as `MNISTIter`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnistOptions {
    /// Each example as `[rows × cols]` rather than `[1, rows, cols]`.
    pub flat: bool,
    /// Labels must be below this (10 for MNIST).
    pub num_classes: usize,
}

impl Default for MnistOptions {
    fn default() -> Self {
        MnistOptions {
            flat: false,
            num_classes: 10,
        }
    }
}

/// MNIST images and labels, checked against each other, as `MNISTIter` serves them.
#[derive(Debug, Clone)]
pub struct MnistDataset {
    count: usize,
    pixels: usize,
    images: Vec<u8>,
    labels: Vec<u8>,
    data_shape: Vec<usize>,
}

impl MnistDataset {
    /// Reads an image file (rank 3) and a label file (rank 1) of the same count.
    pub fn open(
        images: &Path,
        labels: &Path,
        options: &MnistOptions,
        limits: &DataLimits,
    ) -> Result<MnistDataset, DataError> {
        let image_name = images.display().to_string();
        let label_name = labels.display().to_string();
        let images = read_idx_file(images, limits)?;
        let labels = read_idx_file(labels, limits)?;
        MnistDataset::from_arrays(&image_name, images, &label_name, labels, options)
    }

    /// The same from arrays already read (names are for messages).
    pub fn from_arrays(
        image_name: &str,
        images: IdxArray,
        label_name: &str,
        labels: IdxArray,
        options: &MnistOptions,
    ) -> Result<MnistDataset, DataError> {
        let &[count, rows, cols] = images.dims.as_slice() else {
            return Err(DataError::Malformed {
                file: image_name.to_owned(),
                field: "rank",
                offset: 3,
                problem: format!(
                    "images need rank 3 (count, rows, cols), not {:?}",
                    images.dims
                ),
            });
        };
        if rows == 0 || cols == 0 {
            return Err(DataError::Malformed {
                file: image_name.to_owned(),
                field: "dimensions",
                offset: 8,
                problem: format!("images of {rows}×{cols} pixels hold nothing"),
            });
        }
        let &[label_count] = labels.dims.as_slice() else {
            return Err(DataError::Malformed {
                file: label_name.to_owned(),
                field: "rank",
                offset: 3,
                problem: format!("labels need rank 1, not {:?}", labels.dims),
            });
        };
        if count != label_count {
            return Err(DataError::CountMismatch {
                first: image_name.to_owned(),
                first_count: count as u64,
                second: label_name.to_owned(),
                second_count: label_count as u64,
            });
        }
        if let Some((index, &label)) = labels
            .values
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= options.num_classes)
        {
            return Err(DataError::LabelOutOfRange {
                file: label_name.to_owned(),
                index,
                label: f64::from(label),
                classes: options.num_classes,
            });
        }
        // With a count of 0 the element count says nothing about rows × cols.
        let pixels = rows
            .checked_mul(cols)
            .filter(|&p| p as u64 <= super::MAX_DATA_ELEMENTS)
            .ok_or_else(|| DataError::TooManyElements {
                file: image_name.to_owned(),
                field: "image dimensions",
                dims: vec![rows as u64, cols as u64],
                elements: (rows as u64).checked_mul(cols as u64),
                limit: super::MAX_DATA_ELEMENTS,
            })?;
        let data_shape = if options.flat {
            vec![pixels]
        } else {
            vec![1, rows, cols]
        };
        Ok(MnistDataset {
            count,
            pixels,
            images: images.values,
            labels: labels.values,
            data_shape,
        })
    }
}

impl Dataset for MnistDataset {
    fn len(&self) -> usize {
        self.count
    }

    fn data_shape(&self) -> &[usize] {
        &self.data_shape
    }

    fn label_shape(&self) -> &[usize] {
        &[]
    }

    fn get(&self, index: usize, _rng: &mut ChaCha20Rng) -> Result<Example, DataError> {
        check_index(index, self.count)?;
        let start = index * self.pixels;
        let image =
            self.images
                .get(start..start + self.pixels)
                .ok_or(DataError::IndexOutOfRange {
                    index,
                    len: self.count,
                })?;
        let label = self.labels.get(index).copied().unwrap_or_default();
        Ok(Example {
            data: image
                .iter()
                .map(|&p| f32::from(p) * MNIST_PIXEL_SCALE)
                .collect(),
            label: vec![f32::from(label)],
        })
    }
}
