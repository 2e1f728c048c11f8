//! MXNet's RecordIO: `.rec` files of framed records, their `.idx` text index, and the
//! image record header (`IRHeader`) that `im2rec` and `mx.recordio.pack_img` write
//! (§4 of the format reference).
//!
//! A record is one or more chunks, each on a 4-byte boundary: the magic `0xced7230a`, a
//! `u32` whose top 3 bits are a continuation flag (`cflag`) and whose low 29 bits are the
//! chunk's length, the chunk's bytes, then zero padding to a multiple of 4. The writer
//! splits a payload wherever the magic occurs at a 4-aligned offset, dropping those four
//! bytes: a whole record has cflag 0; a split one has chunks with cflag 1, then 2 …, then
//! 3, and the reader puts the magic back between them.
//!
//! Every byte is untrusted. Records are read by offset from a [`RecordSource`] (a file
//! opened once through [`ward_core::files::open_regular`], or bytes in memory), so a
//! multi-gigabyte `.rec` is never loaded: each chunk's length is checked against the bytes
//! the source has left and the joined record against
//! [`RecordIoLimits::max_record_bytes`] before anything is reserved, continuation flags
//! must come in order, and every offset of an `.idx` is checked against the `.rec`'s size
//! and alignment before it is used. Errors name the file, the field and the offset.
//!
//! ```
//! use ward_mxnet::limits::RecordIoLimits;
//! use ward_mxnet::recordio::{parse_image_record, RecordFile};
//!
//! # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/recordio");
//! # let (rec, idx) = (format!("{dir}/images.rec"), format!("{dir}/images.idx"));
//! let limits = RecordIoLimits::default();
//! let file = RecordFile::open(rec.as_ref(), &limits)?;
//! let index = file.read_index(idx.as_ref())?; // every offset checked against the .rec
//! for entry in &index {
//!     let payload = file.record_at(entry.offset)?;
//!     let record = parse_image_record(file.name(), entry.offset, &payload, &limits)?;
//!     assert!(!record.image.is_empty());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashSet;
use std::path::Path;

use ward_core::files::{self, FileError, RegularFile};
use ward_core::Reader;

use crate::limits::RecordIoLimits;

/// The first word of every chunk (little-endian bytes `0a 23 d7 ce`).
pub const RECORD_MAGIC: u32 = 0xced7_230a;
/// The low 29 bits of a chunk's `lrecord` word: its length.
pub const LENGTH_MASK: u32 = (1 << 29) - 1;
/// A chunk's header: magic and `lrecord`.
pub const CHUNK_HEADER_BYTES: u64 = 8;
/// `IRHeader`: `u32 flag, f32 label, u64 id, u64 id2`.
pub const IMAGE_HEADER_BYTES: usize = 24;

/// A whole record in one chunk.
const CFLAG_WHOLE: u32 = 0;
/// The first chunk of a split record.
const CFLAG_FIRST: u32 = 1;
/// A middle chunk.
const CFLAG_MIDDLE: u32 = 2;
/// The last chunk.
const CFLAG_LAST: u32 = 3;

/// Why a RecordIO file, index or record was refused. `file` is the name given to the
/// source (its path for a file).
#[derive(Debug, thiserror::Error)]
pub enum RecordIoError {
    #[error("{file}: {reason}")]
    File { file: String, reason: FileError },
    #[error("{file}: input ends inside {field} at byte {offset} ({needed} bytes needed, {available} remain)")]
    Truncated {
        file: String,
        field: &'static str,
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error("{file}: chunk at byte {offset} starts with {found:#010x}, not the RecordIO magic 0xced7230a")]
    BadMagic {
        file: String,
        offset: u64,
        found: u32,
    },
    #[error("{file}: record offset {offset} is not a multiple of 4 (chunks are 4-byte aligned)")]
    Misaligned { file: String, offset: u64 },
    #[error("{file}: chunk at byte {offset} has continuation flag {cflag}, expected {expected}")]
    BadContinuation {
        file: String,
        offset: u64,
        cflag: u32,
        expected: &'static str,
    },
    #[error("{file}: chunk length {length} at byte {offset} runs past the end of the file ({file_len} bytes)")]
    PastEnd {
        file: String,
        offset: u64,
        length: u64,
        file_len: u64,
    },
    #[error("{file}: record at byte {offset} is over {limit} bytes (record size limit)")]
    RecordTooLarge {
        file: String,
        offset: u64,
        limit: u64,
    },
    #[error("{file}: {field} {value} at byte {offset} exceeds the limit of {limit}")]
    ExceedsLimit {
        file: String,
        field: &'static str,
        value: u64,
        limit: u64,
        offset: u64,
    },
    #[error("{file}: {bytes} bytes cannot be reserved in memory for the record at byte {offset}")]
    OutOfMemory {
        file: String,
        offset: u64,
        bytes: u64,
    },
    #[error("{file}: line {line}: {problem}")]
    BadIndexLine {
        file: String,
        line: u64,
        problem: String,
    },
    #[error("{file}: line {line}: offset {offset} is past the end of the record file ({file_len} bytes)")]
    IndexPastEnd {
        file: String,
        line: u64,
        offset: u64,
        file_len: u64,
    },
}

/// Where records are read from: a file ([`RecordFile`]) or bytes in memory
/// ([`RecordBytes`]).
pub trait RecordSource {
    /// The name errors give (the path of a file).
    fn name(&self) -> &str;
    /// The source's length in bytes.
    fn len(&self) -> u64;
    /// Reads exactly `buf.len()` bytes at `offset`; the caller has checked that they lie
    /// within [`RecordSource::len`].
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), RecordIoError>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records in memory (tests, fuzzing, a small file already read).
#[derive(Debug, Clone, Copy)]
pub struct RecordBytes<'a> {
    name: &'a str,
    bytes: &'a [u8],
}

impl<'a> RecordBytes<'a> {
    pub fn new(name: &'a str, bytes: &'a [u8]) -> Self {
        RecordBytes { name, bytes }
    }
}

impl RecordSource for RecordBytes<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), RecordIoError> {
        let part = usize::try_from(offset)
            .ok()
            .and_then(|start| Some((start, start.checked_add(buf.len())?)))
            .and_then(|(start, end)| self.bytes.get(start..end))
            .ok_or_else(|| RecordIoError::Truncated {
                file: self.name.to_owned(),
                field: "record bytes",
                offset,
                needed: buf.len() as u64,
                available: self.len().saturating_sub(offset),
            })?;
        buf.copy_from_slice(part);
        Ok(())
    }
}

/// A `.rec` file, opened once (no link in the last component, no FIFO or device) and read
/// by offset: never whole. It may be shared between threads.
#[derive(Debug)]
pub struct RecordFile {
    name: String,
    file: RegularFile,
    limits: RecordIoLimits,
}

impl RecordFile {
    pub fn open(path: &Path, limits: &RecordIoLimits) -> Result<RecordFile, RecordIoError> {
        let name = path.display().to_string();
        let file = files::open_regular(path).map_err(|reason| RecordIoError::File {
            file: name.clone(),
            reason,
        })?;
        Ok(RecordFile {
            name,
            file,
            limits: limits.clone(),
        })
    }

    /// The path, as errors give it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn limits(&self) -> &RecordIoLimits {
        &self.limits
    }

    /// The joined payload of the record whose first chunk is at `offset`.
    pub fn record_at(&self, offset: u64) -> Result<Vec<u8>, RecordIoError> {
        read_record(self, offset, &self.limits).map(|(payload, _)| payload)
    }

    /// Reads the `.idx` at `path` (through the same bounded file reads) and checks every
    /// offset in it against this file.
    pub fn read_index(&self, path: &Path) -> Result<Vec<IndexEntry>, RecordIoError> {
        let name = path.display().to_string();
        let text = files::read_bounded(path, self.limits.max_index_bytes).map_err(|reason| {
            RecordIoError::File {
                file: name.clone(),
                reason,
            }
        })?;
        let entries = parse_index(&name, &text, &self.limits)?;
        check_index(&name, &entries, self.len())?;
        Ok(entries)
    }

    /// The offset of every record, in file order, found by reading only the chunk headers
    /// (for a `.rec` without an `.idx`).
    pub fn scan(&self) -> Result<Vec<u64>, RecordIoError> {
        scan_offsets(self, &self.limits)
    }
}

impl RecordSource for RecordFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.file.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), RecordIoError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|reason| RecordIoError::File {
                file: self.name.clone(),
                reason,
            })
    }
}

/// One chunk's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    cflag: u32,
    length: u64,
    /// Where the chunk after this one starts (past its padding).
    next: u64,
}

/// Reads and checks the chunk header at `offset`: aligned, the magic, the payload and its
/// padding within the source.
fn chunk_at(source: &dyn RecordSource, offset: u64) -> Result<Chunk, RecordIoError> {
    let file = || source.name().to_owned();
    if !offset.is_multiple_of(4) {
        return Err(RecordIoError::Misaligned {
            file: file(),
            offset,
        });
    }
    let len = source.len();
    let available = len.saturating_sub(offset);
    if available < CHUNK_HEADER_BYTES {
        return Err(RecordIoError::Truncated {
            file: file(),
            field: "chunk header",
            offset,
            needed: CHUNK_HEADER_BYTES,
            available,
        });
    }
    let mut header = [0u8; CHUNK_HEADER_BYTES as usize];
    source.read_at(offset, &mut header)?;
    let mut r = Reader::new(&header);
    let truncated = |_| RecordIoError::Truncated {
        file: file(),
        field: "chunk header",
        offset,
        needed: CHUNK_HEADER_BYTES,
        available,
    };
    let magic = r.u32_le("magic").map_err(truncated)?;
    let lrec = r.u32_le("lrecord").map_err(truncated)?;
    if magic != RECORD_MAGIC {
        return Err(RecordIoError::BadMagic {
            file: file(),
            offset,
            found: magic,
        });
    }
    let length = u64::from(lrec & LENGTH_MASK);
    let padded = length.div_ceil(4) * 4;
    // offset + 8 <= len, checked above; the rest cannot overflow a u64 for a 29-bit length.
    let start = offset + CHUNK_HEADER_BYTES;
    let next = start + padded;
    if next > len {
        return Err(RecordIoError::PastEnd {
            file: file(),
            offset,
            length,
            file_len: len,
        });
    }
    Ok(Chunk {
        cflag: lrec >> 29,
        length,
        next,
    })
}

/// Reads the record whose first chunk is at `offset`: its payload with the chunks joined
/// (the magic put back between them), and the offset of the record after it.
pub fn read_record(
    source: &dyn RecordSource,
    offset: u64,
    limits: &RecordIoLimits,
) -> Result<(Vec<u8>, u64), RecordIoError> {
    let file = || source.name().to_owned();
    let mut payload: Vec<u8> = Vec::new();
    let mut pos = offset;
    let mut first = true;
    loop {
        let chunk = chunk_at(source, pos)?;
        let expected = if first { "0 or 1" } else { "2 or 3" };
        let ok = if first {
            matches!(chunk.cflag, CFLAG_WHOLE | CFLAG_FIRST)
        } else {
            matches!(chunk.cflag, CFLAG_MIDDLE | CFLAG_LAST)
        };
        if !ok {
            return Err(RecordIoError::BadContinuation {
                file: file(),
                offset: pos,
                cflag: chunk.cflag,
                expected,
            });
        }
        let magic_back = if first { 0 } else { 4 };
        let total = (payload.len() as u64)
            .saturating_add(magic_back)
            .saturating_add(chunk.length);
        if total > limits.max_record_bytes {
            return Err(RecordIoError::RecordTooLarge {
                file: file(),
                offset,
                limit: limits.max_record_bytes,
            });
        }
        // `total` is within the limit, which the caller sized for memory. Amortised
        // growth: a record of millions of empty chunks (a payload of magic words) must not
        // copy the payload once per chunk.
        let extra = usize::try_from(total - payload.len() as u64).unwrap_or(usize::MAX);
        payload
            .try_reserve(extra)
            .map_err(|_| RecordIoError::OutOfMemory {
                file: file(),
                offset,
                bytes: total,
            })?;
        if !first {
            payload.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        }
        let start = payload.len();
        payload.resize(start + (chunk.length as usize), 0);
        if let Some(part) = payload.get_mut(start..) {
            source.read_at(pos + CHUNK_HEADER_BYTES, part)?;
        }
        first = false;
        pos = chunk.next;
        if matches!(chunk.cflag, CFLAG_WHOLE | CFLAG_LAST) {
            return Ok((payload, pos));
        }
    }
}

/// The offset of every record of `source`, in order, reading only chunk headers. The
/// sequence must end exactly at the end of the source.
pub fn scan_offsets(
    source: &dyn RecordSource,
    limits: &RecordIoLimits,
) -> Result<Vec<u64>, RecordIoError> {
    let mut offsets = Vec::new();
    let mut pos = 0u64;
    let end = source.len();
    while pos < end {
        if offsets.len() as u64 >= limits.max_index_entries {
            return Err(RecordIoError::ExceedsLimit {
                file: source.name().to_owned(),
                field: "record count",
                value: offsets.len() as u64 + 1,
                limit: limits.max_index_entries,
                offset: pos,
            });
        }
        offsets.push(pos);
        let start = pos;
        let mut first = true;
        let mut total = 0u64;
        loop {
            let chunk = chunk_at(source, pos)?;
            let ok = if first {
                matches!(chunk.cflag, CFLAG_WHOLE | CFLAG_FIRST)
            } else {
                matches!(chunk.cflag, CFLAG_MIDDLE | CFLAG_LAST)
            };
            if !ok {
                return Err(RecordIoError::BadContinuation {
                    file: source.name().to_owned(),
                    offset: pos,
                    cflag: chunk.cflag,
                    expected: if first { "0 or 1" } else { "2 or 3" },
                });
            }
            total = total
                .saturating_add(if first { 0 } else { 4 })
                .saturating_add(chunk.length);
            if total > limits.max_record_bytes {
                return Err(RecordIoError::RecordTooLarge {
                    file: source.name().to_owned(),
                    offset: start,
                    limit: limits.max_record_bytes,
                });
            }
            first = false;
            pos = chunk.next;
            if matches!(chunk.cflag, CFLAG_WHOLE | CFLAG_LAST) {
                break;
            }
        }
    }
    Ok(offsets)
}

/// Every record of an in-memory `.rec`, in order.
pub fn read_all_records(
    name: &str,
    bytes: &[u8],
    limits: &RecordIoLimits,
) -> Result<Vec<Vec<u8>>, RecordIoError> {
    let source = RecordBytes::new(name, bytes);
    let mut records = Vec::new();
    let mut pos = 0u64;
    while pos < source.len() {
        if records.len() as u64 >= limits.max_index_entries {
            return Err(RecordIoError::ExceedsLimit {
                file: name.to_owned(),
                field: "record count",
                value: records.len() as u64 + 1,
                limit: limits.max_index_entries,
                offset: pos,
            });
        }
        let (payload, next) = read_record(&source, pos, limits)?;
        records.push(payload);
        pos = next;
    }
    Ok(records)
}

/// Frames `payload` as MXNet's writer does (`dmlc::RecordIOWriter::WriteRecord`): split
/// where the magic occurs at a 4-aligned offset, each chunk padded to 4 bytes. For tests,
/// fixtures and seeds; a payload over the 29-bit length is refused.
pub fn write_record(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), RecordIoError> {
    if payload.len() as u64 > u64::from(LENGTH_MASK) {
        return Err(RecordIoError::ExceedsLimit {
            file: "<writer>".to_owned(),
            field: "record length",
            value: payload.len() as u64,
            limit: u64::from(LENGTH_MASK),
            offset: out.len() as u64,
        });
    }
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut start = 0usize;
    let mut cut = 0usize;
    let mut pieces: Vec<&[u8]> = Vec::new();
    while cut + 4 <= payload.len() {
        if payload.get(cut..cut + 4) == Some(&magic[..]) {
            pieces.push(payload.get(start..cut).unwrap_or_default());
            start = cut + 4;
        }
        cut += 4;
    }
    pieces.push(payload.get(start..).unwrap_or_default());
    let count = pieces.len();
    for (i, piece) in pieces.into_iter().enumerate() {
        let cflag = match (count, i) {
            (1, _) => CFLAG_WHOLE,
            (_, 0) => CFLAG_FIRST,
            (n, i) if i + 1 == n => CFLAG_LAST,
            _ => CFLAG_MIDDLE,
        };
        out.extend_from_slice(&magic);
        out.extend_from_slice(&((cflag << 29) | piece.len() as u32).to_le_bytes());
        out.extend_from_slice(piece);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    Ok(())
}

/// One line of an `.idx` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// The record's key (`MXIndexedRecordIO` writes integers).
    pub key: u64,
    /// The byte offset of the record's first chunk in the `.rec`.
    pub offset: u64,
    /// The line it came from (1-based), for messages.
    pub line: u64,
}

/// Parses an `.idx` file: one `key\toffset` line per record, as `MXIndexedRecordIO` and
/// `im2rec` write them (`\r\n` endings and a missing final newline are accepted). Keys are
/// unsigned integers and must be distinct (Python keeps the last of duplicates; ward
/// refuses them). The line count is bounded by [`RecordIoLimits::max_index_entries`]
/// before anything is allocated for it.
pub fn parse_index(
    name: &str,
    text: &[u8],
    limits: &RecordIoLimits,
) -> Result<Vec<IndexEntry>, RecordIoError> {
    let bad = |line: u64, problem: String| RecordIoError::BadIndexLine {
        file: name.to_owned(),
        line,
        problem,
    };
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let lines = if body.is_empty() {
        0
    } else {
        body.iter().filter(|&&b| b == b'\n').count() as u64 + 1
    };
    if lines > limits.max_index_entries {
        return Err(RecordIoError::ExceedsLimit {
            file: name.to_owned(),
            field: "index entries",
            value: lines,
            limit: limits.max_index_entries,
            offset: 0,
        });
    }
    let mut entries = Vec::new();
    entries
        .try_reserve_exact(lines as usize)
        .map_err(|_| RecordIoError::OutOfMemory {
            file: name.to_owned(),
            offset: 0,
            bytes: lines.saturating_mul(24),
        })?;
    let mut keys = HashSet::new();
    if body.is_empty() {
        return Ok(entries);
    }
    for (n, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = n as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = std::str::from_utf8(raw).map_err(|_| bad(line, "not UTF-8 text".into()))?;
        let (key, offset) = text
            .split_once('\t')
            .ok_or_else(|| bad(line, "expected `key<TAB>offset`".into()))?;
        let key = parse_decimal(key)
            .ok_or_else(|| bad(line, format!("key {key:?} is not an unsigned integer")))?;
        let offset = parse_decimal(offset).ok_or_else(|| {
            bad(
                line,
                format!("offset {offset:?} is not an unsigned integer"),
            )
        })?;
        if !keys.insert(key) {
            return Err(bad(line, format!("key {key} appears twice")));
        }
        entries.push(IndexEntry { key, offset, line });
    }
    Ok(entries)
}

/// Digits only (no sign, no spaces, no `+`), within a `u64`.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks every offset of an index against the `.rec`'s length: aligned, and room for a
/// chunk header. (The record itself is checked when it is read.)
pub fn check_index(name: &str, entries: &[IndexEntry], rec_len: u64) -> Result<(), RecordIoError> {
    for e in entries {
        if e.offset.saturating_add(CHUNK_HEADER_BYTES) > rec_len {
            return Err(RecordIoError::IndexPastEnd {
                file: name.to_owned(),
                line: e.line,
                offset: e.offset,
                file_len: rec_len,
            });
        }
        if !e.offset.is_multiple_of(4) {
            return Err(RecordIoError::BadIndexLine {
                file: name.to_owned(),
                line: e.line,
                problem: format!("offset {} is not a multiple of 4", e.offset),
            });
        }
    }
    Ok(())
}

/// An image record: `IRHeader`, its labels and the encoded image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord<'a> {
    /// The number of labels that follow the header (0: the scalar `label` is the label).
    pub flag: u32,
    /// The scalar label (0 when `flag > 0`).
    pub label: f32,
    pub id: u64,
    pub id2: u64,
    /// The `flag` labels, when `flag > 0`.
    pub labels: Vec<f32>,
    /// The encoded image (JPEG, PNG, …), not yet decoded.
    pub image: &'a [u8],
}

impl ImageRecord<'_> {
    /// The record's labels as `ImageRecordIter` reads them: the `flag` labels, or the
    /// scalar label alone.
    pub fn label_values(&self) -> Vec<f32> {
        if self.flag > 0 {
            self.labels.clone()
        } else {
            vec![self.label]
        }
    }
}

/// Parses an image record's payload (`mx.recordio.unpack`): the 24-byte `IRHeader`, `flag`
/// labels (bounded by [`RecordIoLimits::max_labels`] and by the bytes that follow), then
/// the image. `record_offset` is the record's offset in `file`, for messages; offsets in
/// errors are the record's offset plus the field's offset in the payload.
pub fn parse_image_record<'a>(
    file: &str,
    record_offset: u64,
    payload: &'a [u8],
    limits: &RecordIoLimits,
) -> Result<ImageRecord<'a>, RecordIoError> {
    let mut r = Reader::new(payload);
    let at = |o: usize| record_offset.saturating_add(o as u64);
    let truncated = |t: ward_core::Truncated| RecordIoError::Truncated {
        file: file.to_owned(),
        field: t.field,
        offset: at(t.offset),
        needed: t.needed as u64,
        available: t.available as u64,
    };
    let flag = r.u32_le("IRHeader.flag").map_err(truncated)?;
    let label = f32::from_bits(r.u32_le("IRHeader.label").map_err(truncated)?);
    let id = r.u64_le("IRHeader.id").map_err(truncated)?;
    let id2 = r.u64_le("IRHeader.id2").map_err(truncated)?;
    if flag > limits.max_labels {
        return Err(RecordIoError::ExceedsLimit {
            file: file.to_owned(),
            field: "IRHeader.flag (label count)",
            value: u64::from(flag),
            limit: u64::from(limits.max_labels),
            offset: at(0),
        });
    }
    let label_bytes = r
        .take("IRHeader labels", flag as usize * 4)
        .map_err(truncated)?;
    let labels = label_bytes
        .chunks_exact(4)
        .map(|b| {
            let mut word = [0u8; 4];
            word.copy_from_slice(b);
            f32::from_le_bytes(word)
        })
        .collect();
    Ok(ImageRecord {
        flag,
        label,
        id,
        id2,
        labels,
        image: r.rest(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn limits() -> RecordIoLimits {
        RecordIoLimits::default()
    }

    #[test]
    fn round_trip_with_magic_inside() {
        let magic = RECORD_MAGIC.to_le_bytes();
        let payloads: Vec<Vec<u8>> = vec![
            vec![],
            vec![1, 2, 3],
            magic.to_vec(),
            [&magic[..], &[9, 9], &magic[..]].concat(),
            [
                &[1, 2, 3, 4][..],
                &magic[..],
                &[5, 6, 7, 8],
                &magic[..],
                &[1],
            ]
            .concat(),
            // Unaligned magic stays in the chunk.
            [&[1, 2][..], &magic[..], &[3, 4]].concat(),
        ];
        let mut file = Vec::new();
        for p in &payloads {
            write_record(&mut file, p).unwrap();
        }
        assert_eq!(file.len() % 4, 0);
        let back = read_all_records("t", &file, &limits()).unwrap();
        assert_eq!(back, payloads);
        let offsets = scan_offsets(&RecordBytes::new("t", &file), &limits()).unwrap();
        assert_eq!(offsets.len(), payloads.len());
    }

    #[test]
    fn magic_alone_is_two_chunks() {
        let mut file = Vec::new();
        write_record(&mut file, &RECORD_MAGIC.to_le_bytes()).unwrap();
        let words: Vec<u32> = file
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(
            words,
            [RECORD_MAGIC, 0x2000_0000, RECORD_MAGIC, 0x6000_0000]
        );
    }

    #[test]
    fn continuation_out_of_order_is_refused() {
        let mut file = Vec::new();
        file.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        file.extend_from_slice(&(3u32 << 29).to_le_bytes());
        let err = read_all_records("t", &file, &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                RecordIoError::BadContinuation {
                    cflag: 3,
                    offset: 0,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn index_lines() {
        let idx = b"0\t0\n1\t16\r\n7\t32";
        let e = parse_index("i", idx, &limits()).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[2].key, 7);
        assert_eq!(e[2].offset, 32);
        for bad in [
            &b"0 0\n"[..],
            b"-1\t0\n",
            b"0\t+4\n",
            b"0\t0\n0\t4\n",
            b"\n\n",
        ] {
            assert!(parse_index("i", bad, &limits()).is_err(), "{bad:?}");
        }
        let few = RecordIoLimits {
            max_index_entries: 2,
            ..limits()
        };
        assert!(matches!(
            parse_index("i", idx, &few),
            Err(RecordIoError::ExceedsLimit { .. })
        ));
    }

    #[test]
    fn image_header() {
        let mut p = Vec::new();
        p.extend_from_slice(&2u32.to_le_bytes());
        p.extend_from_slice(&0f32.to_le_bytes());
        p.extend_from_slice(&5u64.to_le_bytes());
        p.extend_from_slice(&0u64.to_le_bytes());
        p.extend_from_slice(&1.5f32.to_le_bytes());
        p.extend_from_slice(&2.5f32.to_le_bytes());
        p.extend_from_slice(b"img");
        let r = parse_image_record("f", 0, &p, &limits()).unwrap();
        assert_eq!(r.labels, [1.5, 2.5]);
        assert_eq!(r.id, 5);
        assert_eq!(r.image, b"img");
        p[0] = 9;
        assert!(matches!(
            parse_image_record("f", 100, &p, &limits()),
            Err(RecordIoError::Truncated { offset: 124, .. })
        ));
    }
}
