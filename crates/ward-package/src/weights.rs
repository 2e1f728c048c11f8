//! A strict safetensors reader and a deterministic writer.
//!
//! Format: an 8-byte little-endian header length `N`, `N` bytes of JSON (an object mapping
//! tensor names to `{"dtype", "shape", "data_offsets"}`, plus an optional `__metadata__`
//! map of strings), then the data buffer.
//!
//! The reader is ward's own rather than `safetensors::SafeTensors::deserialize`, because
//! that parser reads the header into a map and so cannot see duplicate names (a duplicate
//! with the same offsets is accepted and the last one wins: a parser differential, TOB-SFTN-7),
//! accepts a header that does not start with `{`, and ignores unknown fields in entries.
//! This reader walks the header with a visitor that sees every key, in file order, and then
//! applies every check the crate applies (offsets in bounds, contiguous, non-overlapping and
//! covering the data exactly; size equal to what shape and dtype need, with checked
//! arithmetic) with errors that name the tensor. The fuzz target checks that whatever this
//! reader accepts, the crate accepts with the same tensors.
//!
//! The writer is ward's own too: the crate's serializer takes the metadata as a `HashMap`
//! (so its key order, and the file's bytes and digest, change from run to run) and silently
//! writes a corrupt header for duplicate names. This writer orders tensors as the crate does
//! (by dtype, widest first, then by name), so without metadata its output is byte-identical
//! to the crate's; metadata keys are written sorted.

use crate::error::PackageError;
use crate::limits::{MAX_TENSOR_NDIM, MAX_WEIGHTS_HEADER_BYTES};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use ward_core::tensor::byte_len;
use ward_core::{Buffer, DType, Reader, Tensor};

/// The reserved header key for free-form string metadata.
pub const METADATA_KEY: &str = "__metadata__";

/// The tensors of a safetensors file, in header order, and its `__metadata__`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    pub tensors: Vec<(String, Tensor)>,
    pub metadata: BTreeMap<String, String>,
}

/// Reads a safetensors file strictly; tensors come back in the order of the header.
pub fn read_weights(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, PackageError> {
    read_weights_with_metadata(bytes).map(|w| w.tensors)
}

/// The safetensors name of a ward dtype.
fn st_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::U8 => "U8",
        DType::I8 => "I8",
        DType::I32 => "I32",
        DType::I64 => "I64",
        DType::Bool => "BOOL",
    }
}

fn from_st_name(name: &str) -> Option<DType> {
    DType::ALL.into_iter().find(|&d| st_name(d) == name)
}

/// The position of a dtype in the `safetensors` crate's `Dtype` order, which its writer
/// sorts by (descending).
fn st_rank(dtype: DType) -> u8 {
    match dtype {
        DType::Bool => 0,
        DType::U8 => 1,
        DType::I8 => 2,
        DType::F16 => 3,
        DType::BF16 => 4,
        DType::I32 => 5,
        DType::F32 => 6,
        DType::F64 => 7,
        DType::I64 => 8,
    }
}

/// A tensor entry of the header, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    dtype: String,
    shape: BoundedShape,
    data_offsets: [u64; 2],
}

/// A shape that stores at most [`MAX_TENSOR_NDIM`] dims, however long the JSON array is.
struct BoundedShape {
    dims: Vec<u64>,
    too_many: bool,
}

impl<'de> Deserialize<'de> for BoundedShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BoundedShape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of non-negative integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BoundedShape, A::Error> {
                let mut dims = Vec::new();
                let mut too_many = false;
                while dims.len() < MAX_TENSOR_NDIM {
                    match seq.next_element::<u64>()? {
                        Some(d) => dims.push(d),
                        None => return Ok(BoundedShape { dims, too_many }),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    too_many = true;
                }
                Ok(BoundedShape { dims, too_many })
            }
        }
        d.deserialize_seq(V)
    }
}

/// The `__metadata__` object as written: every pair, duplicates included.
struct RawMetadata(Vec<(String, String)>);

impl<'de> Deserialize<'de> for RawMetadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMetadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMetadata, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    pairs.push((k, v));
                }
                Ok(RawMetadata(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

enum RawItem {
    Metadata(RawMetadata),
    Tensor(RawEntry),
}

/// Walks the top-level object, recording each key before parsing its value so that an error
/// inside a value can name the entry.
struct HeaderSeed<'s> {
    current: &'s mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = Vec<(String, RawItem)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = Vec<(String, RawItem)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a safetensors header object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            *self.current = Some(key.clone());
            let item = if key == METADATA_KEY {
                RawItem::Metadata(map.next_value()?)
            } else {
                RawItem::Tensor(map.next_value()?)
            };
            *self.current = None;
            items.push((key, item));
        }
        Ok(items)
    }
}

fn parse_header(text: &str) -> Result<Vec<(String, RawItem)>, PackageError> {
    let mut current = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let items = HeaderSeed {
        current: &mut current,
    }
    .deserialize(&mut de)
    .and_then(|items| de.end().map(|()| items));
    items.map_err(|source| PackageError::WeightsHeaderJson {
        entry: current.clone(),
        source,
    })
}

/// A tensor entry after its own checks, before the offsets are checked against the others.
struct Checked {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

/// A safetensors file's layout after every check: its tensor entries in header order,
/// its metadata, and where its data begins.
struct Layout {
    entries: Vec<Checked>,
    metadata: BTreeMap<String, String>,
    data_start: usize,
}

/// Reads a safetensors file strictly, with its metadata.
pub fn read_weights_with_metadata(bytes: &[u8]) -> Result<Weights, PackageError> {
    let Layout {
        entries,
        metadata,
        data_start,
    } = check_layout(bytes)?;
    let data = bytes.get(data_start..).unwrap_or_default();
    let mut tensors = Vec::with_capacity(entries.len());
    for e in entries {
        let slice = tensor_bytes(&e, data)?;
        // The file's buffer is held meanwhile: the copy is reserved fallibly, so a model
        // too large for the memory left is refused, not an abort.
        let owned = copy_fallibly(slice)?;
        tensors.push(make_tensor(e, owned)?);
    }
    Ok(Weights { tensors, metadata })
}

/// Reads a safetensors file strictly, as [`read_weights`] does, from a buffer it takes:
/// the tensors share that buffer, each its own range of it, so the weights are held once,
/// in the bytes that were read and verified, and never copied.
pub fn read_weights_owned(bytes: Buffer) -> Result<Vec<(String, Tensor)>, PackageError> {
    let Layout {
        entries,
        data_start,
        ..
    } = check_layout(&bytes)?;
    // Every tensor checked in header order, as `read_weights` does.
    {
        let data = bytes.get(data_start..).unwrap_or_default();
        for e in &entries {
            tensor_bytes(e, data)?;
        }
    }
    let buffer = std::sync::Arc::new(bytes);
    entries
        .into_iter()
        .map(|e| {
            let range = data_start.saturating_add(e.begin)..data_start.saturating_add(e.end);
            let t = Tensor::shared(e.dtype, e.shape, &buffer, range).map_err(|_| {
                PackageError::TensorOutOfBounds {
                    name: e.name.clone(),
                    begin: e.begin as u64,
                    end: e.end as u64,
                    data_len: buffer.len().saturating_sub(data_start),
                }
            })?;
            Ok((e.name, t))
        })
        .collect()
}

/// How long the header part of a safetensors file of `file_len` bytes is, given its first
/// bytes (at least 8 when the file has them): the length field and the header, when the
/// length passes its checks; else the length field alone (nothing for a shorter file).
pub(crate) fn head_part_len(start: &[u8], file_len: u64) -> usize {
    if file_len < 8 {
        return 0;
    }
    usize::try_from(file_len)
        .ok()
        .and_then(|len| header_end(start, len).ok())
        .unwrap_or(8)
}

/// Where the data of a safetensors file of `file_len` bytes, after its header part
/// `head`, is cut so that each tensor's bytes lie in a part of their own: the end of each
/// nonempty tensor, in file order, the last the file's end; the file's end alone when the
/// header does not pass its checks (parsing the parts then refuses it as
/// [`read_weights_owned`] refuses the file). Nothing here is trusted before the file is
/// verified: the cuts only choose where the bytes are held, and every part is within
/// the file's length.
pub(crate) fn part_ends(head: &[u8], file_len: u64) -> Vec<u64> {
    tensor_cuts(head, file_len).unwrap_or_else(|| vec![file_len])
}

fn tensor_cuts(head: &[u8], file_len: u64) -> Option<Vec<u64>> {
    let data_len = usize::try_from(file_len).ok()?.checked_sub(head.len())?;
    let layout = check_header(head, data_len).ok()?;
    let mut ends: Vec<u64> = layout
        .entries
        .iter()
        .filter(|e| e.end > e.begin)
        .map(|e| (layout.data_start + e.end) as u64)
        .collect();
    ends.sort_unstable();
    (ends.last() == Some(&file_len)).then_some(ends)
}

/// `bytes` (a whole safetensors file) copied into the parts the package reader holds such
/// a file in (its header part, then the data cut at `part_ends`): for tests and fuzzing
/// of [`read_weights_parts`].
pub fn parts_of(bytes: &[u8]) -> Vec<Buffer> {
    let len = bytes.len() as u64;
    let head_len = head_part_len(bytes, len);
    let (head, data) = bytes.split_at(head_len.min(bytes.len()));
    let mut parts = vec![Buffer::from(head.to_vec())];
    let mut rest = data;
    let mut at = head_len as u64;
    for end in part_ends(head, len) {
        let take = usize::try_from(end.saturating_sub(at)).unwrap_or(usize::MAX);
        let (part, after) = rest.split_at(take.min(rest.len()));
        parts.push(part.to_vec().into());
        rest = after;
        at = end;
    }
    parts
}

/// Reads a safetensors file held in consecutive parts (its header, then the data cut
/// where `part_ends` says) strictly, as [`read_weights_owned`] does: each tensor
/// shares the part that holds its bytes, so the bytes of a tensor are freed when the last
/// holder of that tensor lets it go (a backend that copied it into its own form), not
/// when the whole file is. Parts that do not follow the header's layout (one part: the
/// file whole) are read as that one buffer.
pub fn read_weights_parts(parts: Vec<Buffer>) -> Result<Vec<(String, Tensor)>, PackageError> {
    let mut parts = parts.into_iter();
    let head = parts.next().unwrap_or_default();
    let data: Vec<std::sync::Arc<Buffer>> = parts.map(std::sync::Arc::new).collect();
    if data.is_empty() {
        return read_weights_owned(head);
    }
    let data_len = data.iter().map(|p| p.len()).sum::<usize>();
    let head_len = header_end(&head, head.len().saturating_add(data_len))?;
    if head_len != head.len() {
        return Err(PackageError::WeightsHeaderPastEnd {
            len: head_len.saturating_sub(8) as u64,
            available: head.len().saturating_sub(8),
        });
    }
    let Layout { entries, .. } = check_header(&head, data_len)?;
    // Each part's first byte, as an offset in the data.
    let starts: Vec<usize> = data
        .iter()
        .scan(0usize, |at, p| {
            let start = *at;
            *at += p.len();
            Some(start)
        })
        .collect();
    let locate = |e: &Checked| -> Option<(usize, std::ops::Range<usize>)> {
        let k = starts.partition_point(|&s| s <= e.begin).checked_sub(1)?;
        let (start, part) = (*starts.get(k)?, data.get(k)?);
        (e.end <= start + part.len()).then(|| (k, e.begin - start..e.end - start))
    };
    // Every tensor checked in header order, as `read_weights` does.
    for e in &entries {
        let (k, range) = locate(e).ok_or_else(|| PackageError::TensorOutOfBounds {
            name: e.name.clone(),
            begin: e.begin as u64,
            end: e.end as u64,
            data_len,
        })?;
        let part: &[u8] = data.get(k).map_or(&[], |p| p);
        let local = Checked {
            name: e.name.clone(),
            dtype: e.dtype,
            shape: Vec::new(),
            begin: range.start,
            end: range.end,
        };
        tensor_bytes(&local, part)?;
    }
    entries
        .into_iter()
        .map(|e| {
            let out_of_bounds = || PackageError::TensorOutOfBounds {
                name: e.name.clone(),
                begin: e.begin as u64,
                end: e.end as u64,
                data_len,
            };
            let (k, range) = locate(&e).ok_or_else(out_of_bounds)?;
            let part = data.get(k).ok_or_else(out_of_bounds)?;
            let t = Tensor::shared(e.dtype, e.shape, part, range).map_err(|_| out_of_bounds())?;
            Ok((e.name, t))
        })
        .collect()
}

/// A tensor's bytes within the data, a bool tensor's checked to be 0 or 1.
fn tensor_bytes<'d>(e: &Checked, data: &'d [u8]) -> Result<&'d [u8], PackageError> {
    let slice = data
        .get(e.begin..e.end)
        .ok_or(PackageError::TensorOutOfBounds {
            name: e.name.clone(),
            begin: e.begin as u64,
            end: e.end as u64,
            data_len: data.len(),
        })?;
    if e.dtype == DType::Bool {
        if let Some((index, &value)) = slice.iter().enumerate().find(|(_, &b)| b > 1) {
            return Err(PackageError::TensorInvalidBool {
                name: e.name.clone(),
                index,
                value,
            });
        }
    }
    Ok(slice)
}

/// `slice` copied into memory reserved fallibly: a model too large for the memory left is
/// refused, not an abort.
fn copy_fallibly(slice: &[u8]) -> Result<Vec<u8>, PackageError> {
    let mut owned = Vec::new();
    owned
        .try_reserve_exact(slice.len())
        .map_err(|_| PackageError::OutOfMemory {
            file: crate::layout::WEIGHTS_FILE.to_string(),
            bytes: slice.len() as u64,
        })?;
    owned.extend_from_slice(slice);
    Ok(owned)
}

fn make_tensor(e: Checked, owned: Vec<u8>) -> Result<(String, Tensor), PackageError> {
    let t = Tensor::from_bytes(e.dtype, e.shape, owned).map_err(|_| {
        PackageError::TensorShapeOverflow {
            name: e.name.clone(),
            shape: Vec::new(),
        }
    })?;
    Ok((e.name, t))
}

/// Every check of a safetensors file but the bool values'.
fn check_layout(bytes: &[u8]) -> Result<Layout, PackageError> {
    let head_len = header_end(bytes, bytes.len())?;
    let head = bytes.get(..head_len).unwrap_or_default();
    check_header(head, bytes.len() - head_len)
}

/// Where the header of a safetensors file of `file_len` bytes, beginning with `start`,
/// ends: 8 bytes of length, then that many bytes of header, within the file and the
/// header limit.
fn header_end(start: &[u8], file_len: usize) -> Result<usize, PackageError> {
    let mut r = Reader::new(start);
    let n = r
        .u64_le("safetensors header length")
        .map_err(|_| PackageError::WeightsTooShort { len: file_len })?;
    if n > MAX_WEIGHTS_HEADER_BYTES as u64 {
        return Err(PackageError::WeightsHeaderTooLong {
            len: n,
            limit: MAX_WEIGHTS_HEADER_BYTES,
        });
    }
    let available = file_len.saturating_sub(8);
    usize::try_from(n)
        .ok()
        .filter(|&len| len <= available)
        .map(|len| 8 + len)
        .ok_or(PackageError::WeightsHeaderPastEnd { len: n, available })
}

/// Every check of a safetensors file but the bool values', from its header (`head`: the
/// length and the header itself) and the length of the data after it.
fn check_header(head: &[u8], data_len: usize) -> Result<Layout, PackageError> {
    let header = head.get(8..).unwrap_or_default();

    let text = std::str::from_utf8(header).map_err(|e| PackageError::WeightsHeaderUtf8 {
        offset: 8 + e.valid_up_to(),
    })?;
    if !text.starts_with('{') {
        return Err(PackageError::WeightsHeaderStart);
    }
    // The writer pads with spaces; nothing else may follow the object.
    let trimmed = text.trim_end_matches(' ');
    if !trimmed.ends_with('}') {
        return Err(PackageError::WeightsHeaderEnd {
            offset: 8 + trimmed.len().saturating_sub(1),
        });
    }
    let items = parse_header(trimmed)?;

    let mut metadata = None;
    let mut names = BTreeSet::new();
    let mut entries = Vec::with_capacity(items.len());
    for (name, item) in items {
        match item {
            RawItem::Metadata(RawMetadata(pairs)) => {
                if metadata.is_some() {
                    return Err(PackageError::DuplicateMetadata);
                }
                let mut map = BTreeMap::new();
                for (k, v) in pairs {
                    if map.contains_key(&k) {
                        return Err(PackageError::DuplicateMetadataKey { key: k });
                    }
                    map.insert(k, v);
                }
                metadata = Some(map);
            }
            RawItem::Tensor(entry) => {
                if !names.insert(name.clone()) {
                    return Err(PackageError::DuplicateTensor { name });
                }
                entries.push(check_entry(name, entry, data_len)?);
            }
        }
    }

    // Sorted by offsets, each tensor must start where the previous one ended, and the last
    // must end where the data ends: no gaps, no overlaps, no trailing bytes.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries.get(i).map(|e| (e.begin, e.end)));
    let mut expected = 0usize;
    for &i in &order {
        let Some(e) = entries.get(i) else { continue };
        if e.begin != expected {
            return Err(PackageError::TensorNotContiguous {
                name: e.name.clone(),
                begin: e.begin as u64,
                expected: expected as u64,
            });
        }
        expected = e.end;
    }
    if expected != data_len {
        return Err(PackageError::WeightsDataNotCovered {
            covered: expected as u64,
            data_len,
        });
    }

    Ok(Layout {
        entries,
        metadata: metadata.unwrap_or_default(),
        data_start: head.len(),
    })
}

/// The first non-finite element of a floating-point tensor: (tensor name, element index).
pub fn first_nonfinite(weights: &[(String, Tensor)]) -> Option<(&str, usize)> {
    /// Elements checked together: a block is scanned without branches (which the compiler
    /// vectorises), and only a block holding a non-finite element is searched for it.
    const BLOCK: usize = 4096;
    // A float is NaN or infinite when its exponent bits are all ones.
    fn find<const N: usize>(
        bytes: &[u8],
        word: fn([u8; N]) -> u64,
        exponent: u64,
    ) -> Option<usize> {
        let nonfinite = |b: &[u8; N]| word(*b) & exponent == exponent;
        let elements = bytes.as_chunks::<N>().0;
        elements
            .chunks(BLOCK)
            .enumerate()
            .find_map(|(block, values)| {
                let any = values.iter().fold(false, |any, b| any | nonfinite(b));
                any.then(|| values.iter().position(nonfinite))
                    .flatten()
                    .map(|i| block * BLOCK + i)
            })
    }
    weights.iter().find_map(|(name, t)| {
        let bytes = t.bytes();
        let index = match t.dtype() {
            DType::F64 => find::<8>(bytes, u64::from_le_bytes, 0x7FF0_0000_0000_0000),
            DType::F32 => find::<4>(bytes, |b| u32::from_le_bytes(b).into(), 0x7F80_0000),
            DType::F16 => find::<2>(bytes, |b| u16::from_le_bytes(b).into(), 0x7C00),
            DType::BF16 => find::<2>(bytes, |b| u16::from_le_bytes(b).into(), 0x7F80),
            _ => None,
        }?;
        Some((name.as_str(), index))
    })
}

fn check_entry(name: String, entry: RawEntry, data_len: usize) -> Result<Checked, PackageError> {
    if name.is_empty() {
        return Err(PackageError::InvalidTensorName {
            name,
            reason: "it is empty",
        });
    }
    let Some(dtype) = from_st_name(&entry.dtype) else {
        return Err(PackageError::UnsupportedTensorDtype {
            name,
            dtype: entry.dtype,
        });
    };
    if entry.shape.too_many {
        return Err(PackageError::TensorTooManyDims {
            name,
            limit: MAX_TENSOR_NDIM,
        });
    }
    let raw_shape = entry.shape.dims;
    let shape: Option<Vec<usize>> = raw_shape.iter().map(|&d| usize::try_from(d).ok()).collect();
    let expected = shape.as_ref().and_then(|s| byte_len(s, dtype));
    let (Some(shape), Some(expected)) = (shape, expected) else {
        return Err(PackageError::TensorShapeOverflow {
            name,
            shape: raw_shape,
        });
    };
    let [begin, end] = entry.data_offsets;
    if end < begin {
        return Err(PackageError::TensorOffsetsReversed { name, begin, end });
    }
    let in_bounds = usize::try_from(end).ok().filter(|&e| e <= data_len);
    let Some(end_usize) = in_bounds else {
        return Err(PackageError::TensorOutOfBounds {
            name,
            begin,
            end,
            data_len,
        });
    };
    // begin <= end <= data_len, so it fits usize.
    let begin_usize = usize::try_from(begin).unwrap_or(end_usize);
    let actual = end - begin;
    if u64::try_from(expected).ok() != Some(actual) {
        return Err(PackageError::TensorSizeMismatch {
            name,
            begin,
            end,
            expected,
            actual,
        });
    }
    Ok(Checked {
        name,
        dtype,
        shape,
        begin: begin_usize,
        end: end_usize,
    })
}

#[derive(Serialize)]
struct OutEntry<'a> {
    dtype: &'static str,
    shape: &'a [usize],
    data_offsets: [usize; 2],
}

struct OutHeader<'a> {
    metadata: &'a BTreeMap<String, String>,
    entries: Vec<(&'a str, OutEntry<'a>)>,
}

impl Serialize for OutHeader<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if !self.metadata.is_empty() {
            map.serialize_entry(METADATA_KEY, self.metadata)?;
        }
        for (name, entry) in &self.entries {
            map.serialize_entry(name, entry)?;
        }
        map.end()
    }
}

/// The data of a tensor to write, borrowed from wherever it lives.
#[derive(Debug, Clone, Copy)]
pub enum ViewData<'a> {
    /// Little-endian bytes.
    Bytes(&'a [u8]),
    /// `f32` values (written little-endian).
    F32(&'a [f32]),
}

impl ViewData<'_> {
    fn byte_len(&self) -> usize {
        match self {
            ViewData::Bytes(b) => b.len(),
            ViewData::F32(v) => v.len().saturating_mul(4),
        }
    }
}

/// A tensor to write, borrowed: written without first being copied into a [`Tensor`].
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: ViewData<'a>,
}

impl<'a> TensorView<'a> {
    /// A view of `tensor` named `name`.
    pub fn of(name: &'a str, tensor: &'a Tensor) -> TensorView<'a> {
        TensorView {
            name,
            dtype: tensor.dtype(),
            shape: tensor.shape(),
            data: ViewData::Bytes(tensor.bytes()),
        }
    }

    /// A view of `f32` values of `shape`.
    pub fn f32(name: &'a str, shape: &'a [usize], values: &'a [f32]) -> TensorView<'a> {
        TensorView {
            name,
            dtype: DType::F32,
            shape,
            data: ViewData::F32(values),
        }
    }
}

/// Writes tensors and metadata as a safetensors file. Tensors are ordered as the
/// `safetensors` crate orders them (widest dtype first, then by name), metadata keys sorted,
/// and the header padded with spaces to a multiple of 8 bytes; the same input always gives
/// the same bytes. An empty `metadata` writes no `__metadata__` entry.
///
/// Refuses empty names, the reserved name `__metadata__`, duplicate names, and a header
/// longer than [`MAX_WEIGHTS_HEADER_BYTES`] (which the reader would refuse).
pub fn write_weights(
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, PackageError> {
    let views: Vec<TensorView<'_>> = tensors
        .iter()
        .map(|(name, t)| TensorView::of(name, t))
        .collect();
    write_tensor_views(&views, metadata)
}

/// [`write_weights`] over borrowed tensors; also refuses a view whose data is not as long
/// as its shape and dtype say.
pub fn write_tensor_views(
    tensors: &[TensorView<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, PackageError> {
    let (header, order, data_len) = views_header(tensors, metadata)?;
    let mut out = Vec::with_capacity(header.len() + data_len);
    write_views(&header, &order, &mut out)?;
    Ok(out)
}

/// [`write_tensor_views`] into `out`, without the file ever being whole in memory: `f32`
/// data goes through a 64 KiB buffer. Everything is checked before the first byte is
/// written; returns the bytes written.
pub fn write_tensor_views_to(
    tensors: &[TensorView<'_>],
    metadata: &BTreeMap<String, String>,
    out: &mut dyn std::io::Write,
) -> Result<u64, PackageError> {
    let (header, order, data_len) = views_header(tensors, metadata)?;
    write_views(&header, &order, out)?;
    Ok((header.len() + data_len) as u64)
}

/// Writes `header`, then each tensor's data in `order`: `f32` data through a 64 KiB
/// buffer.
fn write_views(
    header: &[u8],
    order: &[&TensorView<'_>],
    out: &mut dyn std::io::Write,
) -> Result<(), PackageError> {
    let io = |source: std::io::Error| PackageError::Io {
        path: std::path::PathBuf::from("(stream)"),
        source,
    };
    out.write_all(header).map_err(io)?;
    let mut buffer = vec![0u8; 1 << 16];
    for t in order {
        match t.data {
            ViewData::Bytes(b) => out.write_all(b).map_err(io)?,
            ViewData::F32(values) => {
                for part in values.chunks(buffer.len() / 4) {
                    let bytes = buffer.get_mut(..part.len() * 4).unwrap_or_default();
                    for (slot, v) in bytes.chunks_exact_mut(4).zip(part) {
                        slot.copy_from_slice(&v.to_le_bytes());
                    }
                    out.write_all(bytes).map_err(io)?;
                }
            }
        }
    }
    Ok(())
}

/// The header (its length prefix included) of a safetensors file of `tensors`, the
/// tensors in the order their data follows it, and the data's length; every name and
/// length checked.
#[allow(clippy::type_complexity)]
fn views_header<'v, 'a>(
    tensors: &'v [TensorView<'a>],
    metadata: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, Vec<&'v TensorView<'a>>, usize), PackageError> {
    let mut names = BTreeSet::new();
    for t in tensors {
        let name = t.name;
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name == METADATA_KEY {
            Some("__metadata__ is reserved")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(PackageError::InvalidTensorName {
                name: name.to_string(),
                reason,
            });
        }
        if !names.insert(name) {
            return Err(PackageError::DuplicateTensor {
                name: name.to_string(),
            });
        }
        let expected = byte_len(t.shape, t.dtype);
        let f32_mismatch = matches!(t.data, ViewData::F32(_)) && t.dtype != DType::F32;
        if expected != Some(t.data.byte_len()) || f32_mismatch {
            return Err(PackageError::ViewSizeMismatch {
                name: name.to_string(),
                shape: t.shape.to_vec(),
                dtype: t.dtype,
                expected,
                actual: t.data.byte_len(),
            });
        }
    }
    let mut order: Vec<&TensorView<'_>> = tensors.iter().collect();
    order.sort_by(|l, r| {
        st_rank(r.dtype)
            .cmp(&st_rank(l.dtype))
            .then_with(|| l.name.cmp(r.name))
    });
    let mut offset = 0usize;
    let mut entries = Vec::with_capacity(order.len());
    for t in &order {
        let end = offset + t.data.byte_len();
        entries.push((
            t.name,
            OutEntry {
                dtype: st_name(t.dtype),
                shape: t.shape,
                data_offsets: [offset, end],
            },
        ));
        offset = end;
    }
    let header = OutHeader { metadata, entries };
    let mut json =
        serde_json::to_vec(&header).map_err(|source| PackageError::WeightsHeaderJson {
            entry: None,
            source,
        })?;
    json.resize(json.len().next_multiple_of(8), b' ');
    if json.len() > MAX_WEIGHTS_HEADER_BYTES {
        return Err(PackageError::WeightsHeaderTooLong {
            len: json.len() as u64,
            limit: MAX_WEIGHTS_HEADER_BYTES,
        });
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    Ok((out, order, offset))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn t(dtype: DType, shape: &[usize], fill: u8) -> Tensor {
        let n = byte_len(shape, dtype).unwrap();
        Tensor::from_bytes(dtype, shape.to_vec(), vec![fill; n]).unwrap()
    }

    /// A file with the given header text (padded to 8) and data.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.as_bytes().to_vec();
        h.resize(h.len().next_multiple_of(8), b' ');
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out
    }

    fn sample() -> Vec<(String, Tensor)> {
        vec![
            ("fc.weight".into(), t(DType::F32, &[2, 3], 1)),
            ("bn.mean".into(), t(DType::F16, &[3], 2)),
            ("mask".into(), t(DType::Bool, &[4], 1)),
            ("ids".into(), t(DType::I64, &[2], 3)),
            ("scalar".into(), t(DType::F64, &[], 4)),
            ("empty".into(), t(DType::I32, &[0, 5], 0)),
            ("bf".into(), t(DType::BF16, &[1], 5)),
            ("u".into(), t(DType::U8, &[3], 6)),
            ("i".into(), t(DType::I8, &[1], 7)),
        ]
    }

    #[test]
    fn round_trip_every_dtype() {
        let tensors = sample();
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "ward".to_string());
        meta.insert("a".to_string(), "b".to_string());
        let bytes = write_weights(&tensors, &meta).unwrap();
        let back = read_weights_with_metadata(&bytes).unwrap();
        assert_eq!(back.metadata, meta);
        assert_eq!(back.tensors.len(), tensors.len());
        for (name, tensor) in &tensors {
            let found = back.tensors.iter().find(|(n, _)| n == name).unwrap();
            assert_eq!(&found.1, tensor, "{name}");
        }
        // Deterministic.
        assert_eq!(write_weights(&tensors, &meta).unwrap(), bytes);
        // Header padded to 8.
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
    }

    #[test]
    fn interoperates_with_the_safetensors_crate() {
        let tensors = sample();
        let ours = write_weights(&tensors, &BTreeMap::new()).unwrap();
        // The crate reads ours.
        let st = safetensors::SafeTensors::deserialize(&ours).unwrap();
        assert_eq!(st.len(), tensors.len());
        for (name, tensor) in &tensors {
            let view = st.tensor(name).unwrap();
            assert_eq!(view.shape(), tensor.shape());
            assert_eq!(view.data(), tensor.bytes());
        }
        // Without metadata, ours is byte-identical to the crate's.
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, t)| {
                let dtype = match t.dtype() {
                    DType::F32 => safetensors::Dtype::F32,
                    DType::F64 => safetensors::Dtype::F64,
                    DType::F16 => safetensors::Dtype::F16,
                    DType::BF16 => safetensors::Dtype::BF16,
                    DType::U8 => safetensors::Dtype::U8,
                    DType::I8 => safetensors::Dtype::I8,
                    DType::I32 => safetensors::Dtype::I32,
                    DType::I64 => safetensors::Dtype::I64,
                    DType::Bool => safetensors::Dtype::BOOL,
                };
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(dtype, t.shape().to_vec(), t.bytes())
                        .unwrap(),
                )
            })
            .collect();
        let theirs = safetensors::serialize(views.clone(), None).unwrap();
        assert_eq!(ours, theirs);
        // We read the crate's output with one metadata key, in its header order.
        let mut meta = std::collections::HashMap::new();
        meta.insert("k".to_string(), "v".to_string());
        let theirs = safetensors::serialize(views, Some(meta)).unwrap();
        let back = read_weights_with_metadata(&theirs).unwrap();
        assert_eq!(back.metadata.get("k").map(String::as_str), Some("v"));
        let names: Vec<&str> = back.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ids",
                "scalar",
                "fc.weight",
                "empty",
                "bf",
                "bn.mean",
                "i",
                "u",
                "mask"
            ]
        );
    }

    #[test]
    fn empty_file_and_header_order() {
        let bytes = write_weights(&[], &BTreeMap::new()).unwrap();
        assert_eq!(read_weights(&bytes).unwrap(), vec![]);
        // Header order is kept even when it differs from data order.
        let f = file(
            r#"{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
            &[10, 20],
        );
        let back = read_weights(&f).unwrap();
        assert_eq!(back[0].0, "b");
        assert_eq!(back[0].1.bytes(), &[20]);
        assert_eq!(back[1].1.bytes(), &[10]);
        // Two empty tensors at the same offset are fine.
        let f = file(
            r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[0,2],"data_offsets":[0,0]},"c":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}"#,
            &[1],
        );
        assert_eq!(read_weights(&f).unwrap().len(), 3);
    }

    #[test]
    fn writer_refuses_bad_names() {
        let x = t(DType::F32, &[1], 0);
        let meta = BTreeMap::new();
        let dup = vec![("a".to_string(), x.clone()), ("a".to_string(), x.clone())];
        assert!(
            matches!(write_weights(&dup, &meta), Err(PackageError::DuplicateTensor { name }) if name == "a")
        );
        let reserved = vec![(METADATA_KEY.to_string(), x.clone())];
        assert!(matches!(
            write_weights(&reserved, &meta),
            Err(PackageError::InvalidTensorName { .. })
        ));
        let empty = vec![(String::new(), x)];
        assert!(matches!(
            write_weights(&empty, &meta),
            Err(PackageError::InvalidTensorName { .. })
        ));
    }

    fn entry(name: &str, dtype: &str, shape: &str, begin: u64, end: u64) -> String {
        format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{begin},{end}]}}"#)
    }

    #[test]
    fn malformed_corpus() {
        use PackageError as E;
        let w = |begin, end| entry("w", "F32", "[2]", begin, end);
        let ok = file(&format!("{{{}}}", w(0, 8)), &[0; 8]);
        assert!(read_weights(&ok).is_ok());

        // Truncated at every offset: always an error, never a panic.
        for cut in 0..ok.len() {
            let err = read_weights(&ok[..cut]).unwrap_err();
            let expected = match cut {
                0..=7 => matches!(err, E::WeightsTooShort { .. }),
                _ if cut < ok.len() - 8 => matches!(err, E::WeightsHeaderPastEnd { .. }),
                _ => matches!(err, E::TensorOutOfBounds { .. }),
            };
            assert!(expected, "cut at {cut}: {err}");
        }

        type Check = fn(&PackageError) -> bool;
        let cases: Vec<(Vec<u8>, Check)> = vec![
            // Header length over the limit, and past the end.
            ((u64::MAX).to_le_bytes().to_vec(), |e| {
                matches!(e, E::WeightsHeaderTooLong { .. })
            }),
            (
                (1000u64)
                    .to_le_bytes()
                    .iter()
                    .chain(b"{}      ")
                    .copied()
                    .collect(),
                |e| {
                    matches!(
                        e,
                        E::WeightsHeaderPastEnd {
                            len: 1000,
                            available: 8
                        }
                    )
                },
            ),
            // Not starting with '{' (the crate accepts leading spaces).
            (file(&format!("  {{{}}}", w(0, 8)), &[0; 8]), |e| {
                matches!(e, E::WeightsHeaderStart)
            }),
            (file("[]", &[]), |e| matches!(e, E::WeightsHeaderStart)),
            // Trailing garbage or non-space padding after the object.
            (file(&format!("{{{}}}\n", w(0, 8)), &[0; 8]), |e| {
                matches!(e, E::WeightsHeaderEnd { .. })
            }),
            (file(&format!("{{{}}} x", w(0, 8)), &[0; 8]), |e| {
                matches!(e, E::WeightsHeaderEnd { .. })
            }),
            (file(&format!("{{{}}}\0", w(0, 8)), &[0; 8]), |e| {
                matches!(e, E::WeightsHeaderEnd { .. })
            }),
            (file(&format!("{{{}}} }}", w(0, 8)), &[0; 8]), |e| {
                matches!(e, E::WeightsHeaderJson { .. })
            }),
            // Not UTF-8.
            (
                {
                    let mut f = file(&format!("{{\"\u{e9}\":{}}}", &w(0, 8)[4..]), &[0; 8]);
                    f[10] = 0xff;
                    f
                },
                |e| matches!(e, E::WeightsHeaderUtf8 { offset: 10 }),
            ),
            // Not JSON, or not the expected JSON.
            (file("{\"w\":}", &[]), |e| {
                matches!(e, E::WeightsHeaderJson { .. })
            }),
            (file("{\"w\":", &[]), |e| {
                matches!(e, E::WeightsHeaderEnd { .. })
            }),
            (
                file(
                    r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#,
                    &[0; 8],
                ),
                |e| matches!(e, E::WeightsHeaderJson { entry: Some(n), .. } if n == "w"),
            ),
            (
                file(r#"{"w":{"dtype":"F32","shape":[2]}}"#, &[0; 8]),
                |e| matches!(e, E::WeightsHeaderJson { entry: Some(n), .. } if n == "w"),
            ),
            (
                file(
                    r#"{"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                |e| matches!(e, E::WeightsHeaderJson { entry: Some(n), .. } if n == "w"),
            ),
            (
                file(
                    r#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                |e| matches!(e, E::WeightsHeaderJson { .. }),
            ),
            (
                file(
                    r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}"#,
                    &[0; 8],
                ),
                |e| matches!(e, E::WeightsHeaderJson { .. }),
            ),
            // Duplicate tensor names, with the same offsets (the crate accepts this).
            (
                file(
                    &format!("{{{},{}}}", w(0, 8), entry("w", "I32", "[2]", 0, 8)),
                    &[0; 8],
                ),
                |e| matches!(e, E::DuplicateTensor { name } if name == "w"),
            ),
            // Metadata: non-string value, duplicate key, duplicate __metadata__.
            (
                file(
                    &format!(r#"{{"__metadata__":{{"a":1}},{}}}"#, w(0, 8)),
                    &[0; 8],
                ),
                |e| matches!(e, E::WeightsHeaderJson { entry: Some(n), .. } if n == "__metadata__"),
            ),
            (
                file(
                    &format!(r#"{{"__metadata__":{{"a":"1","a":"2"}},{}}}"#, w(0, 8)),
                    &[0; 8],
                ),
                |e| matches!(e, E::DuplicateMetadataKey { key } if key == "a"),
            ),
            (
                file(
                    &format!(r#"{{"__metadata__":{{}},"__metadata__":{{}},{}}}"#, w(0, 8)),
                    &[0; 8],
                ),
                |e| matches!(e, E::DuplicateMetadata),
            ),
            // Names and dtypes.
            (
                file(&format!("{{{}}}", entry("", "F32", "[2]", 0, 8)), &[0; 8]),
                |e| matches!(e, E::InvalidTensorName { .. }),
            ),
            (
                file(&format!("{{{}}}", entry("w", "I16", "[4]", 0, 8)), &[0; 8]),
                |e| matches!(e, E::UnsupportedTensorDtype { dtype, .. } if dtype == "I16"),
            ),
            (
                file(&format!("{{{}}}", entry("w", "Q4", "[4]", 0, 8)), &[0; 8]),
                |e| matches!(e, E::UnsupportedTensorDtype { .. }),
            ),
            // Shapes.
            (
                file(
                    &format!(
                        "{{{}}}",
                        entry("w", "U8", &format!("[{}]", vec!["1"; 33].join(",")), 0, 1)
                    ),
                    &[0],
                ),
                |e| matches!(e, E::TensorTooManyDims { limit: 32, .. }),
            ),
            (
                file(
                    &format!(
                        "{{{}}}",
                        entry("w", "F32", "[4294967296,4294967296,4]", 0, 8)
                    ),
                    &[0; 8],
                ),
                |e| matches!(e, E::TensorShapeOverflow { .. }),
            ),
            (
                file(&format!("{{{}}}", entry("w", "F32", "[3]", 0, 8)), &[0; 8]),
                |e| {
                    matches!(
                        e,
                        E::TensorSizeMismatch {
                            expected: 12,
                            actual: 8,
                            ..
                        }
                    )
                },
            ),
            // Offsets: reversed, out of bounds, gap, overlap, uncovered data.
            (file(&format!("{{{}}}", w(8, 0)), &[0; 8]), |e| {
                matches!(e, E::TensorOffsetsReversed { .. })
            }),
            (file(&format!("{{{}}}", w(0, 8)), &[0; 4]), |e| {
                matches!(e, E::TensorOutOfBounds { .. })
            }),
            (
                file(&format!("{{{}}}", w(u64::MAX - 7, u64::MAX)), &[0; 8]),
                |e| matches!(e, E::TensorOutOfBounds { .. }),
            ),
            (file(&format!("{{{}}}", w(4, 12)), &[0; 12]), |e| {
                matches!(
                    e,
                    E::TensorNotContiguous {
                        begin: 4,
                        expected: 0,
                        ..
                    }
                )
            }),
            (
                file(
                    &format!("{{{},{}}}", w(0, 8), entry("v", "F32", "[2]", 4, 12)),
                    &[0; 12],
                ),
                |e| matches!(e, E::TensorNotContiguous { name, begin: 4, expected: 8 } if name == "v"),
            ),
            (
                file(
                    &format!("{{{},{}}}", w(0, 8), entry("v", "F32", "[2]", 0, 8)),
                    &[0; 8],
                ),
                |e| matches!(e, E::TensorNotContiguous { .. }),
            ),
            (file(&format!("{{{}}}", w(0, 8)), &[0; 9]), |e| {
                matches!(
                    e,
                    E::WeightsDataNotCovered {
                        covered: 8,
                        data_len: 9
                    }
                )
            }),
            (file("{}", &[0; 3]), |e| {
                matches!(
                    e,
                    E::WeightsDataNotCovered {
                        covered: 0,
                        data_len: 3
                    }
                )
            }),
            // Bool bytes other than 0 and 1.
            (
                file(&format!("{{{}}}", entry("m", "BOOL", "[2]", 0, 2)), &[1, 7]),
                |e| {
                    matches!(
                        e,
                        E::TensorInvalidBool {
                            index: 1,
                            value: 7,
                            ..
                        }
                    )
                },
            ),
        ];
        for (i, (bytes, check)) in cases.iter().enumerate() {
            let err = read_weights(bytes).unwrap_err();
            assert!(check(&err), "case {i}: {err}");
            // Read in parts as the loader reads them, the same refusal.
            let parts_err = read_weights_parts(in_parts(bytes)).unwrap_err();
            assert_eq!(parts_err.to_string(), err.to_string(), "case {i} in parts");
        }
    }

    fn in_parts(bytes: &[u8]) -> Vec<Buffer> {
        let parts = parts_of(bytes);
        let covered: usize = parts.iter().map(|p| p.len()).sum();
        assert_eq!(covered, bytes.len(), "the parts cover the file");
        parts
    }

    /// Cut a part to a nonempty tensor, a weights file reads as it reads whole, and each
    /// tensor holds its own part: dropping the other tensors frees theirs.
    #[test]
    fn the_parts_reader_gives_each_tensor_a_part_of_its_own() {
        let mut tensors = sample();
        tensors.push(("fc.w".to_string(), t(DType::F32, &[64, 64], 9)));
        tensors.push(("empty.f32".to_string(), t(DType::F32, &[0, 3], 1)));
        let bytes = write_weights(&tensors, &BTreeMap::new()).unwrap();
        let whole = read_weights(&bytes).unwrap();
        let parts = in_parts(&bytes);
        let nonempty = whole.iter().filter(|(_, t)| !t.bytes().is_empty()).count();
        assert_eq!(
            parts.len(),
            1 + nonempty,
            "the header, then a part per nonempty tensor"
        );
        let ranges: Vec<_> = parts.iter().skip(1).map(|p| p.as_ptr_range()).collect();
        let read = read_weights_parts(parts).unwrap();
        assert_eq!(read, whole);
        for (name, tensor) in read.iter().filter(|(_, t)| !t.bytes().is_empty()) {
            let within = tensor.bytes().as_ptr_range();
            let holders = ranges
                .iter()
                .filter(|r| r.start <= within.start && within.end <= r.end)
                .count();
            assert_eq!(holders, 1, "{name} lies in one part");
            assert!(ranges.contains(&within), "{name} is the whole of its part");
        }
        // One part (a file read whole) reads as the owned reader reads it.
        assert_eq!(
            read_weights_parts(vec![bytes.clone().into()]).unwrap(),
            whole
        );
        // No tensors: the header and one empty part.
        let none = write_weights(&[], &BTreeMap::new()).unwrap();
        assert!(read_weights_parts(in_parts(&none)).unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_entry() {
        let f = file(
            r#"{"layer1.w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#,
            &[0; 8],
        );
        let msg = read_weights(&f).unwrap_err().to_string();
        assert!(
            msg.starts_with(r#"weights.safetensors: header entry "layer1.w": unknown field `x`"#),
            "{msg}"
        );
    }

    #[test]
    fn non_finite_weights_are_found_in_every_float_type() {
        let finite = vec![
            (
                "a".to_string(),
                Tensor::from_f32(vec![3], &[1.0, -2.0, 1e30]).unwrap(),
            ),
            ("ids".to_string(), t(DType::I32, &[2], 0xff)),
            ("u".to_string(), t(DType::U8, &[4], 0xff)),
        ];
        assert_eq!(first_nonfinite(&finite), None);
        let mut w = finite.clone();
        w.push((
            "b".into(),
            Tensor::from_f32(vec![3], &[0.0, 0.0, f32::NAN]).unwrap(),
        ));
        assert_eq!(first_nonfinite(&w), Some(("b", 2)));
        // Past the first block of elements scanned together, and the first of two.
        let mut values = vec![0.5f32; 10_000];
        values[9_000] = f32::INFINITY;
        values[9_999] = f32::NAN;
        let w = vec![(
            "big".to_string(),
            Tensor::from_f32(vec![10_000], &values).unwrap(),
        )];
        assert_eq!(first_nonfinite(&w), Some(("big", 9_000)));
        // All-ones bytes are NaN in every float type.
        for dtype in [DType::F64, DType::F32, DType::F16, DType::BF16] {
            let w = vec![("x".to_string(), t(dtype, &[2], 0xff))];
            assert_eq!(first_nonfinite(&w), Some(("x", 0)), "{dtype:?}");
            let w = vec![("x".to_string(), t(dtype, &[2], 0x3c))];
            assert_eq!(first_nonfinite(&w), None, "{dtype:?}");
        }
        // float16 infinity is 0x7C00.
        let w = vec![(
            "h".to_string(),
            Tensor::from_bytes(DType::F16, vec![2], vec![0, 0, 0x00, 0x7C]).unwrap(),
        )];
        assert_eq!(first_nonfinite(&w), Some(("h", 1)));
    }

    /// The owned reader gives exactly what the borrowing one gives, whichever position
    /// the largest tensor has in the file, and every tensor reads its bytes in the file's
    /// own buffer: none is copied into an allocation of its own.
    #[test]
    fn the_owned_reader_keeps_every_tensor_in_the_files_buffer() {
        let big = |name: &str| (name.to_string(), t(DType::F32, &[64, 64], 9));
        // The writer orders by dtype, widest first, then by name: the largest f32 tensor
        // lands first, in the middle or last among the f32 ones.
        for (first, last) in [("a", "b"), ("fc.a", "fc.z"), ("y", "z")] {
            let mut tensors = sample();
            tensors.push(big("fc.m"));
            tensors.push((first.to_string(), t(DType::F32, &[7], 3)));
            tensors.push((last.to_string(), t(DType::F32, &[5, 2], 4)));
            let bytes = Buffer::from(write_weights(&tensors, &BTreeMap::new()).unwrap());
            let borrowed = read_weights(&bytes).unwrap();
            let buffer = bytes.as_ptr_range();
            let owned = read_weights_owned(bytes).unwrap();
            assert_eq!(owned, borrowed);
            for (name, tensor) in &owned {
                let within = tensor.bytes().as_ptr_range();
                assert!(
                    buffer.start <= within.start && within.end <= buffer.end,
                    "{name} among {first}, {last}"
                );
            }
        }
        // One tensor, and none.
        let one = write_weights(&[big("w")], &BTreeMap::new()).unwrap();
        assert_eq!(
            read_weights_owned(one.clone().into()).unwrap(),
            read_weights(&one).unwrap()
        );
        let none = write_weights(&[], &BTreeMap::new()).unwrap();
        assert!(read_weights_owned(none.into()).unwrap().is_empty());
    }

    /// A refusal of the owned reader names what the borrowing one names.
    #[test]
    fn the_owned_reader_refuses_as_the_borrowing_one_does() {
        let mut bytes = write_weights(&sample(), &BTreeMap::new()).unwrap();
        let owned_err = |b: &[u8]| {
            read_weights_owned(b.to_vec().into())
                .unwrap_err()
                .to_string()
        };
        let borrowed_err = |b: &[u8]| read_weights(b).unwrap_err().to_string();
        // A bool of 2 in "mask" (the last bytes: bool tensors are written last).
        let len = bytes.len();
        bytes[len - 1] = 2;
        assert_eq!(owned_err(&bytes), borrowed_err(&bytes));
        assert!(owned_err(&bytes).contains("mask"), "{}", owned_err(&bytes));
        // Truncated data.
        let cut = &bytes[..len - 3];
        assert_eq!(owned_err(cut), borrowed_err(cut));
        assert_eq!(owned_err(&[1, 2]), borrowed_err(&[1, 2]));
    }
}
