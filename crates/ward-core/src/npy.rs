//! NumPy's `.npy` format: a strict reader and a writer.
//!
//! A file is the magic `\x93NUMPY`, a major and minor version byte, the header length
//! (u16 little-endian for version 1.0, u32 for 2.0 and 3.0), the header and the data. The
//! header is the text of a Python dict, `{'descr': '<f4', 'fortran_order': False, 'shape':
//! (2, 3), }`, padded with spaces and ending in `\n` (ASCII for versions 1.0 and 2.0, UTF-8
//! for 3.0).
//!
//! The reader accepts only what ward can represent and refuses everything else by name:
//! exactly the three keys (any order), a `descr` from a whitelist of little-endian numeric
//! types, `fortran_order: False`, a tuple of non-negative integers as shape, and data whose
//! length is exactly what the shape needs. The header length is checked against
//! [`MAX_HEADER_LEN`] and the bytes that remain before anything is allocated.

use crate::dtype::DType;
use crate::reader::{Reader, Truncated};
use crate::tensor::byte_len;
use crate::tensor::Tensor;

/// The six bytes every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Longest header accepted, in bytes. NumPy's own reader refuses headers over 10 000 bytes
/// unless told otherwise; a header of 32 dimensions of 20 digits each is under 1 KiB.
pub const MAX_HEADER_LEN: usize = 64 * 1024;

/// Most bytes before the data: the magic, the version, a 4-byte header length and the
/// longest header. A file of N data bytes is never longer than this plus N.
pub const MAX_PREAMBLE_BYTES: u64 = (MAGIC.len() + 2 + 4 + MAX_HEADER_LEN) as u64;

/// Most dimensions of an array (NumPy's own `NPY_MAXDIMS` in 1.x).
pub const MAX_NDIM: usize = 32;

/// The data of a written file starts at a multiple of this, as NumPy's writer does.
pub const ALIGN: usize = 64;

/// What was wrong with a `.npy` file. Offsets are from the start of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    #[error("npy: {0}")]
    Truncated(#[from] Truncated),
    #[error("npy: bad magic at byte 0: expected \\x93NUMPY, found {found:02x?}")]
    BadMagic { found: Vec<u8> },
    #[error(
        "npy: unsupported format version {major}.{minor} at byte 6 (supported: 1.0, 2.0, 3.0)"
    )]
    UnsupportedVersion { major: u8, minor: u8 },
    #[error("npy: header length {len} at byte 8 exceeds the limit of {limit} bytes")]
    HeaderTooLong { len: usize, limit: usize },
    #[error("npy: header byte at offset {offset} is not {encoding}")]
    HeaderEncoding {
        offset: usize,
        encoding: &'static str,
    },
    #[error("npy: header does not end with a newline (byte {offset})")]
    HeaderUnterminated { offset: usize },
    #[error("npy: header syntax error at byte {offset}: expected {expected}")]
    HeaderSyntax {
        offset: usize,
        expected: &'static str,
    },
    #[error("npy: unknown header key {key:?} at byte {offset}")]
    UnknownKey { key: String, offset: usize },
    #[error("npy: duplicate header key {key:?} at byte {offset}")]
    DuplicateKey { key: String, offset: usize },
    #[error("npy: header key {key:?} is missing")]
    MissingKey { key: &'static str },
    #[error("npy: header key {key:?} at byte {offset} must be {expected}")]
    WrongType {
        key: &'static str,
        offset: usize,
        expected: &'static str,
    },
    #[error("npy: descr {descr:?} is big-endian; only little-endian data is supported")]
    BigEndian { descr: String },
    #[error("npy: descr {descr:?} is not supported (supported: <f4 <f8 <f2 |u1 |i1 <i4 <i8 |b1)")]
    UnsupportedDescr { descr: String },
    #[error("npy: fortran_order True is not supported (save a C-contiguous array)")]
    FortranOrder,
    #[error("npy: shape dim {index} at byte {offset} is negative")]
    NegativeDim { index: usize, offset: usize },
    #[error("npy: shape dim {index} at byte {offset} does not fit in 64 bits")]
    DimTooLarge { index: usize, offset: usize },
    #[error("npy: shape has more than {limit} dimensions")]
    TooManyDims { limit: usize },
    #[error("npy: shape {shape:?} of {dtype} has more bytes than fit in memory")]
    ShapeOverflow { shape: Vec<usize>, dtype: DType },
    #[error(
        "npy: data at byte {offset} is {actual} bytes, shape {shape:?} of {dtype} needs {expected}"
    )]
    DataTruncated {
        offset: usize,
        shape: Vec<usize>,
        dtype: DType,
        expected: usize,
        actual: usize,
    },
    #[error("npy: {extra} trailing bytes after the data, at byte {offset}")]
    TrailingData { offset: usize, extra: usize },
    #[error("npy: bool element at byte {offset} is {value}, not 0 or 1")]
    InvalidBool { offset: usize, value: u8 },
}

/// Reads a `.npy` file of version 1.0, 2.0 or 3.0 into a tensor.
pub fn read_npy(bytes: &[u8]) -> Result<Tensor, NpyError> {
    let mut r = Reader::new(bytes);
    let magic = r.take("npy magic", MAGIC.len())?;
    if magic != MAGIC {
        return Err(NpyError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let major = r.u8("npy major version")?;
    let minor = r.u8("npy minor version")?;
    let header_len = match (major, minor) {
        (1, 0) => usize::from(r.u16_le("npy header length")?),
        (2, 0) | (3, 0) => {
            let len = r.u32_le("npy header length")?;
            // A length that does not fit usize is certainly over the limit.
            usize::try_from(len).unwrap_or(usize::MAX)
        }
        _ => return Err(NpyError::UnsupportedVersion { major, minor }),
    };
    if header_len > MAX_HEADER_LEN {
        return Err(NpyError::HeaderTooLong {
            len: header_len,
            limit: MAX_HEADER_LEN,
        });
    }
    let header_start = r.offset();
    let header = r.take("npy header", header_len)?;
    let header = HeaderText::new(header, header_start, major == 3)?;
    let parsed = parse_header(&header)?;

    let dtype = parsed.dtype;
    let shape = parsed.shape;
    let expected = byte_len(&shape, dtype).ok_or_else(|| NpyError::ShapeOverflow {
        shape: shape.clone(),
        dtype,
    })?;
    let data_start = r.offset();
    let actual = r.remaining();
    if actual < expected {
        return Err(NpyError::DataTruncated {
            offset: data_start,
            shape,
            dtype,
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(NpyError::TrailingData {
            offset: data_start + expected,
            extra: actual - expected,
        });
    }
    let data = r.take("npy data", expected)?;
    if dtype == DType::Bool {
        if let Some((i, &value)) = data.iter().enumerate().find(|(_, &b)| b > 1) {
            return Err(NpyError::InvalidBool {
                offset: data_start + i,
                value,
            });
        }
    }
    // The length was checked above, so this cannot fail; map it to the same error anyway.
    Tensor::from_bytes(dtype, shape.clone(), data.to_vec())
        .map_err(|_| NpyError::ShapeOverflow { shape, dtype })
}

/// Writes a tensor as a version 1.0 `.npy` file, C order, little-endian, with the data
/// starting at a multiple of [`ALIGN`] bytes as NumPy writes it.
///
/// `.npy` has no bfloat16 type: a [`DType::BF16`] tensor is written as float32 (`<f4`)
/// values, which represent every bfloat16 value exactly; reading the file back gives a
/// float32 tensor.
pub fn write_npy(t: &Tensor) -> Vec<u8> {
    let converted;
    let t = if t.dtype() == DType::BF16 {
        converted = t.to_f32();
        &converted
    } else {
        t
    };
    let mut dict = String::from("{'descr': '");
    dict.push_str(descr_of(t.dtype()));
    dict.push_str("', 'fortran_order': False, 'shape': (");
    for (i, d) in t.shape().iter().enumerate() {
        if i > 0 {
            dict.push_str(", ");
        }
        dict.push_str(&d.to_string());
    }
    if t.shape().len() == 1 {
        dict.push(',');
    }
    dict.push_str("), }");
    // magic (6) + version (2) + length + dict + padding + '\n' is a multiple of ALIGN.
    let layout = |len_bytes: usize| {
        let unpadded = MAGIC.len() + 2 + len_bytes + dict.len() + 1;
        let padding = (ALIGN - unpadded % ALIGN) % ALIGN;
        (padding, dict.len() + padding + 1)
    };
    let (padding, header_len) = layout(2);
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header_len + ALIGN + t.bytes().len());
    out.extend_from_slice(MAGIC);
    let padding = match u16::try_from(header_len) {
        Ok(len) => {
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&len.to_le_bytes());
            padding
        }
        // Only a shape of thousands of dims needs a longer header: version 2.0 (which
        // `read_npy` refuses anyway, by its limits on dims and header length).
        Err(_) => {
            let (padding, header_len) = layout(4);
            out.extend_from_slice(&[2, 0]);
            let len = u32::try_from(header_len).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            padding
        }
    };
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + padding, b' ');
    out.push(b'\n');
    out.extend_from_slice(t.bytes());
    out
}

/// The `descr` NumPy writes for a ward dtype (bfloat16 has none; see [`write_npy`]).
pub fn descr_of(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 | DType::BF16 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        DType::U8 => "|u1",
        DType::I8 => "|i1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
    }
}

/// Maps a `descr` string to a ward dtype.
fn dtype_of(descr: &str) -> Result<DType, NpyError> {
    let unsupported = || NpyError::UnsupportedDescr {
        descr: descr.to_string(),
    };
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(unsupported)?;
    let kind = chars.as_str();
    let single_byte = match kind {
        "u1" => Some(DType::U8),
        "i1" => Some(DType::I8),
        "b1" => Some(DType::Bool),
        _ => None,
    };
    if let Some(dtype) = single_byte {
        // Byte order does not apply to one-byte types: NumPy writes '|'.
        return match order {
            '|' | '<' | '=' => Ok(dtype),
            _ => Err(unsupported()),
        };
    }
    let multi_byte = match kind {
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i4" => DType::I32,
        "i8" => DType::I64,
        _ => return Err(unsupported()),
    };
    match order {
        '<' => Ok(multi_byte),
        '>' => Err(NpyError::BigEndian {
            descr: descr.to_string(),
        }),
        // '=' (native) depends on the machine that wrote the file; NumPy never writes it.
        _ => Err(unsupported()),
    }
}

/// The header bytes, checked to be text, with the file offset of their first byte.
struct HeaderText<'a> {
    bytes: &'a [u8],
    base: usize,
}

impl<'a> HeaderText<'a> {
    fn new(bytes: &'a [u8], base: usize, utf8: bool) -> Result<Self, NpyError> {
        if utf8 {
            if let Err(e) = std::str::from_utf8(bytes) {
                return Err(NpyError::HeaderEncoding {
                    offset: base + e.valid_up_to(),
                    encoding: "UTF-8",
                });
            }
        } else if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
            // Versions 1.0 and 2.0 are latin-1; every header ward accepts is ASCII.
            return Err(NpyError::HeaderEncoding {
                offset: base + i,
                encoding: "ASCII",
            });
        }
        Ok(HeaderText { bytes, base })
    }
}

struct ParsedHeader {
    dtype: DType,
    shape: Vec<usize>,
}

/// A cursor over the header text; offsets in errors are file offsets.
struct Lexer<'a> {
    bytes: &'a [u8],
    base: usize,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn syntax(&self, expected: &'static str) -> NpyError {
        NpyError::HeaderSyntax {
            offset: self.offset(),
            expected,
        }
    }

    /// Consumes `c` after optional spaces.
    fn expect(&mut self, c: u8, expected: &'static str) -> Result<(), NpyError> {
        self.skip_spaces();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(expected))
        }
    }

    /// Consumes `c` after optional spaces if it is next.
    fn accept(&mut self, c: u8) -> bool {
        self.skip_spaces();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A Python string literal in single or double quotes, without escapes.
    fn string(&mut self) -> Result<&'a str, NpyError> {
        self.skip_spaces();
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.syntax("a quoted string")),
        };
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                Some(c) if c == quote => break,
                Some(b'\\') => return Err(self.syntax("a string without escapes")),
                Some(c) if c.is_ascii_graphic() || c == b' ' => self.pos += 1,
                Some(_) => return Err(self.syntax("a printable ASCII character")),
                None => return Err(self.syntax("a closing quote")),
            }
        }
        let s = self
            .bytes
            .get(start..self.pos)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| self.syntax("a string"))?;
        self.pos += 1;
        Ok(s)
    }

    /// A Python identifier-like word (`True`, `False`).
    fn word(&mut self) -> &'a [u8] {
        self.skip_spaces();
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.pos += 1;
        }
        self.bytes.get(start..self.pos).unwrap_or_default()
    }
}

fn parse_header(h: &HeaderText<'_>) -> Result<ParsedHeader, NpyError> {
    // The header must end with '\n'; before it, only spaces may follow the dict.
    let body = match h.bytes.split_last() {
        Some((b'\n', body)) => body,
        _ => {
            return Err(NpyError::HeaderUnterminated {
                offset: h.base + h.bytes.len(),
            })
        }
    };
    let mut lx = Lexer {
        bytes: body,
        base: h.base,
        pos: 0,
    };

    let mut descr: Option<DType> = None;
    let mut fortran: Option<bool> = None;
    let mut shape: Option<Vec<usize>> = None;

    lx.expect(b'{', "'{'")?;
    loop {
        if lx.accept(b'}') {
            break;
        }
        lx.skip_spaces();
        let key_offset = lx.offset();
        let key = lx.string()?;
        lx.expect(b':', "':'")?;
        lx.skip_spaces();
        let value_offset = lx.offset();
        let duplicate = || NpyError::DuplicateKey {
            key: key.to_string(),
            offset: key_offset,
        };
        match key {
            "descr" => {
                if descr.is_some() {
                    return Err(duplicate());
                }
                if !matches!(lx.peek(), Some(b'\'' | b'"')) {
                    return Err(NpyError::WrongType {
                        key: "descr",
                        offset: value_offset,
                        expected: "a string",
                    });
                }
                descr = Some(dtype_of(lx.string()?)?);
            }
            "fortran_order" => {
                if fortran.is_some() {
                    return Err(duplicate());
                }
                fortran = Some(match lx.word() {
                    b"False" => false,
                    b"True" => true,
                    _ => {
                        return Err(NpyError::WrongType {
                            key: "fortran_order",
                            offset: value_offset,
                            expected: "True or False",
                        })
                    }
                });
            }
            "shape" => {
                if shape.is_some() {
                    return Err(duplicate());
                }
                shape = Some(parse_shape(&mut lx)?);
            }
            _ => {
                return Err(NpyError::UnknownKey {
                    key: key.to_string(),
                    offset: key_offset,
                })
            }
        }
        // Items are separated by commas; a comma may also follow the last item.
        if lx.accept(b',') {
            continue;
        }
        lx.expect(b'}', "',' or '}'")?;
        break;
    }
    lx.skip_spaces();
    if lx.peek().is_some() {
        return Err(lx.syntax("only spaces and a newline after the dict"));
    }

    let dtype = descr.ok_or(NpyError::MissingKey { key: "descr" })?;
    let fortran = fortran.ok_or(NpyError::MissingKey {
        key: "fortran_order",
    })?;
    let shape = shape.ok_or(NpyError::MissingKey { key: "shape" })?;
    if fortran {
        return Err(NpyError::FortranOrder);
    }
    Ok(ParsedHeader { dtype, shape })
}

/// `()`, `(n,)` or `(n, m, ...)` with an optional trailing comma; non-negative integers.
fn parse_shape(lx: &mut Lexer<'_>) -> Result<Vec<usize>, NpyError> {
    lx.skip_spaces();
    if lx.peek() != Some(b'(') {
        return Err(NpyError::WrongType {
            key: "shape",
            offset: lx.offset(),
            expected: "a tuple",
        });
    }
    lx.pos += 1;
    let mut dims = Vec::new();
    if lx.accept(b')') {
        return Ok(dims);
    }
    loop {
        lx.skip_spaces();
        let offset = lx.offset();
        let index = dims.len();
        if lx.peek() == Some(b'-') {
            return Err(NpyError::NegativeDim { index, offset });
        }
        let start = lx.pos;
        while lx.peek().is_some_and(|c| c.is_ascii_digit()) {
            lx.pos += 1;
        }
        let digits = lx.bytes.get(start..lx.pos).unwrap_or_default();
        if digits.is_empty() {
            return Err(lx.syntax("a non-negative integer"));
        }
        if digits.len() > 1 && digits.first() == Some(&b'0') {
            return Err(NpyError::HeaderSyntax {
                offset,
                expected: "an integer without leading zeros",
            });
        }
        let value = digits.iter().try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        let dim = value
            .and_then(|v| usize::try_from(v).ok())
            .ok_or(NpyError::DimTooLarge { index, offset })?;
        if dims.len() == MAX_NDIM {
            return Err(NpyError::TooManyDims { limit: MAX_NDIM });
        }
        dims.push(dim);
        if lx.accept(b',') {
            // `(3,)` is a 1-tuple; `(3, 4,)` is allowed too.
            if lx.accept(b')') {
                return Ok(dims);
            }
            continue;
        }
        lx.expect(b')', "',' or ')'")?;
        if dims.len() == 1 {
            // `(3)` is the integer 3 in Python, not a tuple.
            return Err(NpyError::WrongType {
                key: "shape",
                offset: lx.offset(),
                expected: "a tuple (a 1-tuple is written `(n,)`)",
            });
        }
        return Ok(dims);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A version 1.0 file with the given header dict (padded like NumPy) and data.
    fn v1(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    const GOOD: &str = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

    #[test]
    fn reads_a_numpy_style_header() {
        let data = f32s(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let t = read_npy(&v1(GOOD, &data)).unwrap();
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.bytes(), &data[..]);
    }

    #[test]
    fn keys_in_any_order_and_double_quotes() {
        let dict = "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<i4\"}";
        let t = read_npy(&v1(dict, &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0])).unwrap();
        assert_eq!(t.dtype(), DType::I32);
        assert_eq!(t.shape(), &[3]);
    }

    #[test]
    fn scalar_and_empty_arrays() {
        let t = read_npy(&v1(
            "{'descr': '<f8', 'fortran_order': False, 'shape': ()}",
            &[0; 8],
        ))
        .unwrap();
        assert_eq!(t.shape(), &[] as &[usize]);
        assert_eq!(t.len(), 1);
        let t = read_npy(&v1(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3)}",
            &[],
        ))
        .unwrap();
        assert_eq!(t.shape(), &[0, 3]);
        assert!(t.is_empty());
    }

    #[test]
    fn every_dtype_round_trips_through_the_writer() {
        for dtype in DType::ALL {
            let n = 5;
            let data: Vec<u8> = (0..n * dtype.size())
                .map(|i| {
                    if dtype == DType::Bool {
                        (i % 2) as u8
                    } else {
                        i as u8
                    }
                })
                .collect();
            let t = Tensor::from_bytes(dtype, vec![n], data).unwrap();
            let bytes = write_npy(&t);
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % ALIGN, 0, "{dtype}");
            let back = read_npy(&bytes).unwrap();
            if dtype == DType::BF16 {
                assert_eq!(back.dtype(), DType::F32);
                assert_eq!(back.to_f32_vec(), t.to_f32_vec());
            } else {
                assert_eq!(back, t, "{dtype}");
            }
        }
    }

    #[test]
    fn writes_scalars_and_multi_dim_shapes() {
        for shape in [vec![], vec![4], vec![2, 2], vec![1, 2, 2, 1], vec![0, 7]] {
            let n: usize = shape.iter().product();
            let t = Tensor::from_f32(shape.clone(), &vec![1.5; n]).unwrap();
            assert_eq!(read_npy(&write_npy(&t)).unwrap(), t, "{shape:?}");
        }
        let t = Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0]).unwrap();
        let text = String::from_utf8_lossy(&write_npy(&t)[10..]).into_owned();
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"));
    }

    #[test]
    fn a_very_long_header_is_written_as_version_2() {
        let t = Tensor::from_f32(vec![1; 30_000], &[1.0]).unwrap();
        let bytes = write_npy(&t);
        assert_eq!(&bytes[6..8], &[2, 0]);
        let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!((12 + header_len) % ALIGN, 0);
        assert_eq!(bytes.len(), 12 + header_len + 4);
        assert_eq!(bytes[12 + header_len - 1], b'\n');
        assert!(matches!(
            read_npy(&bytes),
            Err(NpyError::HeaderTooLong { .. })
        ));
    }

    #[test]
    fn descr_whitelist() {
        assert_eq!(dtype_of("<f2"), Ok(DType::F16));
        assert_eq!(dtype_of("|b1"), Ok(DType::Bool));
        assert_eq!(dtype_of("<u1"), Ok(DType::U8));
        assert_eq!(dtype_of("=i1"), Ok(DType::I8));
        assert!(matches!(dtype_of(">f4"), Err(NpyError::BigEndian { .. })));
        for bad in [
            "", "<", "=f4", "|f4", "<i2", "<u4", "<c8", "<U3", "O", "<f4 ", "V8", ">u1",
        ] {
            assert!(
                matches!(dtype_of(bad), Err(NpyError::UnsupportedDescr { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn truncated_at_every_offset() {
        let t = Tensor::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let bytes = write_npy(&t);
        for cut in 0..bytes.len() {
            let err = read_npy(&bytes[..cut]).unwrap_err();
            let ok = match err {
                NpyError::Truncated(ref t) => cut < 10 + 118 && t.offset <= cut,
                NpyError::DataTruncated {
                    expected: 16,
                    actual,
                    ..
                } => actual == cut - 128,
                _ => false,
            };
            assert!(ok, "cut at {cut}: {err}");
        }
        assert!(read_npy(&bytes).is_ok());
    }

    fn err_of(bytes: &[u8]) -> NpyError {
        read_npy(bytes).unwrap_err()
    }

    #[test]
    fn malformed_corpus() {
        let data = f32s(&[0.0; 6]);
        let good = v1(GOOD, &data);

        let mut bad = good.clone();
        bad[1] = b'X';
        assert!(matches!(err_of(&bad), NpyError::BadMagic { .. }));

        let mut bad = good.clone();
        bad[6] = 4;
        assert_eq!(
            err_of(&bad),
            NpyError::UnsupportedVersion { major: 4, minor: 0 }
        );
        let mut bad = good.clone();
        bad[7] = 1;
        assert_eq!(
            err_of(&bad),
            NpyError::UnsupportedVersion { major: 1, minor: 1 }
        );

        // Header length past the end of the file.
        let mut bad = good[..10].to_vec();
        bad[8..10].copy_from_slice(&1000u16.to_le_bytes());
        bad.extend_from_slice(&[b' '; 100]);
        assert!(matches!(
            err_of(&bad),
            NpyError::Truncated(Truncated {
                field: "npy header",
                offset: 10,
                needed: 1000,
                available: 100
            })
        ));

        // Header length over the limit (version 2: u32), refused before reading it.
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[2, 0]);
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(err_of(&bad), NpyError::HeaderTooLong { .. }));

        type Check = fn(&NpyError) -> bool;
        let cases: &[(&str, Check)] = &[
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1, }",
                |e| matches!(e, NpyError::UnknownKey { key, .. } if key == "extra"),
            ),
            ("{'descr': '<f4', 'shape': (2, 3), }", |e| {
                *e == NpyError::MissingKey {
                    key: "fortran_order",
                }
            }),
            ("{'fortran_order': False, 'shape': (2, 3), }", |e| {
                *e == NpyError::MissingKey { key: "descr" }
            }),
            ("{'descr': '<f4', 'fortran_order': False, }", |e| {
                *e == NpyError::MissingKey { key: "shape" }
            }),
            (
                "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                |e| matches!(e, NpyError::DuplicateKey { key, offset: 27 } if key == "descr"),
            ),
            (
                "{'descr': '<i2', 'fortran_order': False, 'shape': (2, 3), }",
                |e| matches!(e, NpyError::UnsupportedDescr { descr } if descr == "<i2"),
            ),
            (
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
                |e| matches!(e, NpyError::BigEndian { .. }),
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }",
                |e| matches!(e, NpyError::WrongType { key: "descr", .. }),
            ),
            (
                "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }",
                |e| *e == NpyError::FortranOrder,
            ),
            (
                "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }",
                |e| {
                    matches!(
                        e,
                        NpyError::WrongType {
                            key: "fortran_order",
                            ..
                        }
                    )
                },
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }",
                |e| {
                    matches!(
                        e,
                        NpyError::NegativeDim {
                            index: 1,
                            offset: 64
                        }
                    )
                },
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (6), }",
                |e| matches!(e, NpyError::WrongType { key: "shape", .. }),
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }",
                |e| matches!(e, NpyError::WrongType { key: "shape", .. }),
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 03), }",
                |e| matches!(e, NpyError::HeaderSyntax { .. }),
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3L), }",
                |e| matches!(e, NpyError::HeaderSyntax { .. }),
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (,), }",
                |e| matches!(e, NpyError::HeaderSyntax { .. }),
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 1), }",
                |e| matches!(e, NpyError::DimTooLarge { index: 0, .. }),
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }",
                |e| matches!(e, NpyError::ShapeOverflow { .. }),
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } x",
                |e| matches!(e, NpyError::HeaderSyntax { .. }),
            ),
            (
                "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3), }",
                |e| {
                    matches!(
                        e,
                        NpyError::HeaderSyntax {
                            expected: "',' or '}'",
                            ..
                        }
                    )
                },
            ),
            (
                "{'descr': 'a\\x', 'fortran_order': False, 'shape': (2, 3), }",
                |e| matches!(e, NpyError::HeaderSyntax { .. }),
            ),
            ("['descr', '<f4']", |e| {
                matches!(e, NpyError::HeaderSyntax { offset: 10, .. })
            }),
        ];
        for (dict, check) in cases {
            let err = err_of(&v1(dict, &data));
            assert!(check(&err), "{dict}: {err}");
        }

        let many = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
            vec!["1"; MAX_NDIM + 1].join(", ")
        );
        assert_eq!(
            err_of(&v1(&many, &[0; 4])),
            NpyError::TooManyDims { limit: MAX_NDIM }
        );
        let max = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
            vec!["1"; MAX_NDIM].join(", ")
        );
        assert!(read_npy(&v1(&max, &[0; 4])).is_ok());

        // Trailing data and short data.
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(
            err_of(&bad),
            NpyError::TrailingData {
                offset: 128 + 24,
                extra: 1
            }
        );
        let bad = &good[..good.len() - 1];
        assert!(matches!(
            err_of(bad),
            NpyError::DataTruncated {
                expected: 24,
                actual: 23,
                ..
            }
        ));

        // No newline at the end of the header.
        let mut bad = good.clone();
        bad[127] = b' ';
        assert_eq!(err_of(&bad), NpyError::HeaderUnterminated { offset: 128 });

        // Non-ASCII in a version 1 header; invalid UTF-8 in a version 3 header.
        let mut bad = good.clone();
        bad[60] = 0xe9;
        assert_eq!(
            err_of(&bad),
            NpyError::HeaderEncoding {
                offset: 60,
                encoding: "ASCII"
            }
        );
        bad[6] = 3;
        let mut v3 = bad[..8].to_vec();
        v3.extend_from_slice(&118u32.to_le_bytes());
        v3.extend_from_slice(&bad[10..]);
        assert_eq!(
            err_of(&v3),
            NpyError::HeaderEncoding {
                offset: 62,
                encoding: "UTF-8"
            }
        );

        // Bool bytes other than 0 and 1.
        let bad = v1(
            "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
            &[0, 1, 2],
        );
        assert_eq!(
            err_of(&bad),
            NpyError::InvalidBool {
                offset: 130,
                value: 2
            }
        );
    }

    #[test]
    fn versions_two_and_three() {
        let data = f32s(&[0.0; 6]);
        let v1 = v1(GOOD, &data);
        for major in [2u8, 3] {
            let mut f = MAGIC.to_vec();
            f.extend_from_slice(&[major, 0]);
            f.extend_from_slice(&118u32.to_le_bytes());
            f.extend_from_slice(&v1[10..]);
            let t = read_npy(&f).unwrap();
            assert_eq!(t.shape(), &[2, 3]);
        }
    }

    /// Fixtures written by NumPy 1.23.5 (`tools/make_npy_fixtures.py`): every file listed in
    /// `expected.json` reads back with the listed dtype, shape and little-endian bytes; every
    /// file NumPy wrote in a form ward refuses gives the listed error.
    #[test]
    fn numpy_fixtures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/npy");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let good = index["good"].as_array().unwrap();
        assert!(good.len() >= 12);
        for case in good {
            let file = case["file"].as_str().unwrap();
            let t = read_npy(&std::fs::read(dir.join(file)).unwrap())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(t.dtype().name(), case["dtype"].as_str().unwrap(), "{file}");
            let shape: Vec<usize> = case["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape(), &shape[..], "{file}");
            let hex = case["data_hex"].as_str().unwrap();
            let data: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(t.bytes(), &data[..], "{file}");
            // Ward's writer produces a file that reads back equal.
            if t.dtype() != DType::BF16 {
                assert_eq!(read_npy(&write_npy(&t)).unwrap(), t, "{file}");
            }
        }
        let bad = index["bad"].as_array().unwrap();
        assert!(bad.len() >= 4);
        for case in bad {
            let file = case["file"].as_str().unwrap();
            let err = read_npy(&std::fs::read(dir.join(file)).unwrap()).unwrap_err();
            let kind = format!("{err:?}");
            let want = case["error"].as_str().unwrap();
            assert!(kind.starts_with(want), "{file}: got {kind}, want {want}");
        }
    }
}
