//! Image records in a RecordIO file, as MXNet's `ImageRecordIter` serves them.
//!
//! The `.rec` is opened once ([`ward_mxnet::recordio::RecordFile`]) and each record is
//! read at its offset when it is asked for, so a file of any size costs its index (or the
//! offsets of a header-only scan) in memory. Offsets come from the `.idx` (`path_imgidx`;
//! every one checked against the file's size before use) in the index's order, or from a
//! scan of the file in file order. Each record's `IRHeader` is parsed by
//! [`ward_mxnet::recordio::parse_image_record`] and its image decoded and augmented by
//! [`super::image`]. Labels are as `ImageRecordIter`'s: the header's scalar label when
//! `label_width` is 1 and the record carries none, the record's own labels when their
//! count is `label_width`; anything else is refused, naming the record.

use std::path::Path;

use ward_core::random::ChaCha20Rng;
use ward_mxnet::limits::RecordIoLimits;
use ward_mxnet::recordio::{parse_image_record, RecordFile};

use super::image::{augment, decode, ImageError, ImageParams};
use super::{check_index, DataError, DataLimits, Dataset, Example};

/// Image records of one `.rec` file.
#[derive(Debug)]
pub struct ImageRecordDataset {
    file: RecordFile,
    offsets: Vec<u64>,
    params: ImageParams,
    max_pixels: u64,
    data_shape: Vec<usize>,
    label_shape: Vec<usize>,
}

impl ImageRecordDataset {
    /// Opens `rec` (and reads `idx`, if given), checking the parameters first.
    pub fn open(
        rec: &Path,
        idx: Option<&Path>,
        params: ImageParams,
        limits: &DataLimits,
        record_limits: &RecordIoLimits,
    ) -> Result<ImageRecordDataset, DataError> {
        params
            .validate(limits.max_image_pixels)
            .map_err(DataError::Config)?;
        let file = RecordFile::open(rec, record_limits)?;
        let offsets = match idx {
            Some(idx) => file.read_index(idx)?.iter().map(|e| e.offset).collect(),
            None => file.scan()?,
        };
        let data_shape = params.data_shape.to_vec();
        let label_shape = if params.label_width == 1 {
            Vec::new()
        } else {
            vec![params.label_width]
        };
        Ok(ImageRecordDataset {
            file,
            offsets,
            params,
            max_pixels: limits.max_image_pixels,
            data_shape,
            label_shape,
        })
    }

    pub fn params(&self) -> &ImageParams {
        &self.params
    }

    /// The offset of every record served, in order.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }
}

impl Dataset for ImageRecordDataset {
    fn len(&self) -> usize {
        self.offsets.len()
    }

    fn data_shape(&self) -> &[usize] {
        &self.data_shape
    }

    fn label_shape(&self) -> &[usize] {
        &self.label_shape
    }

    fn get(&self, index: usize, rng: &mut ChaCha20Rng) -> Result<Example, DataError> {
        check_index(index, self.offsets.len())?;
        let offset = self
            .offsets
            .get(index)
            .copied()
            .ok_or(DataError::IndexOutOfRange {
                index,
                len: self.offsets.len(),
            })?;
        let payload = self.file.record_at(offset)?;
        let record = parse_image_record(self.file.name(), offset, &payload, self.file.limits())?;
        let image_error = |reason: ImageError| DataError::Image {
            file: self.file.name().to_owned(),
            offset,
            reason,
        };
        let label = record.label_values();
        let width = self.params.label_width;
        if label.len() != width || (record.flag == 0 && width != 1) {
            return Err(DataError::Malformed {
                file: self.file.name().to_owned(),
                field: "IRHeader.flag (label count)",
                offset,
                problem: format!(
                    "the record holds {} label(s) but label_width is {width}",
                    record.flag.max(1)
                ),
            });
        }
        let pixels = decode(record.image, self.params.data_shape[0], self.max_pixels)
            .map_err(image_error)?;
        let data = augment(&pixels, &self.params, rng).map_err(image_error)?;
        Ok(Example { data, label })
    }
}
