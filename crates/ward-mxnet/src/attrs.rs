//! MXNet's attribute-string syntax (§2.3 of the format reference).
//!
//! Every operator argument in a symbol file is a JSON string that MXNet parses with the
//! dmlc `Parameter` machinery when it loads the graph. The parsers here accept what MXNet
//! 1.9.1 accepts for the spellings that exporters actually write, and refuse the rest with
//! an [`AttrError`] that quotes the value and the expected syntax. Where MXNet accepts
//! something by accident of its C++ stream parsing (a trailing `f` on a float, a dangling
//! exponent `1e`), ward refuses it: no exporter writes those, and a second meaning for the
//! same bytes is what a crafted file would aim for.
//!
//! | kind | accepted | refused |
//! |---|---|---|
//! | int ([`parse_int`]) | `64`, `-1`, `+4`, `04`, surrounding ASCII whitespace (C `isspace`) | `4L`, `4.0`, `0x4`, `1e1`, empty, out of `i64` range |
//! | float ([`parse_float`]) | `0.9`, `1e-05`, `6`, `-1.`, `.5`, `1E+3`, `inf`, `-inf`, `infinity` (any case) | whitespace (MXNet refuses trailing space too), `nan`, `1e`, `2f`, hex, values that overflow to infinity or underflow to zero (MXNet: "Out of range value") |
//! | bool ([`parse_bool`]) | `true`/`false` in any case, `1`, `0` | whitespace, `yes`, `2` |
//! | int tuple ([`parse_tuple`]) | `(3, 3)`, `[3,3]`, `(4,)`, `()`, `[]`, `( 3 , 3 )`, `(3, 3,)`, bare `3` / `-1` (a 1-tuple), `None` (unknown), py2 `(3L, 3L)` | `(3 3)`, `(3,,3)`, `((3))`, `(3,3`, `3,3`, `(3.0, 3)`, `(None, 3)`, `(3l, 3)`, bare `3L`, `(3,3]` |
//! | float tuple ([`parse_float_tuple`]) | as int tuples, with float elements | `None` |
//! | optional ([`parse_optional`]) | `None`, or what the inner parser accepts | |
//! | dtype ([`parse_dtype`]) | the MXNet names `float32`, `float64`, `float16`, `bfloat16`, `uint8`, `int8`, `int32`, `int64`, `bool` | ward's short names (`f32`), other spellings |
//!
//! [`AttrReader`] is how the importer reads one node's attributes: every key it reads is
//! recorded, every read names its default, and [`AttrReader::finish`] refuses the keys no
//! one read, so an attribute ward does not implement can never be silently ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ward_core::DType;

/// The keys MXNet's `UpgradeJSON_FixParsing` treats as training hints: bare, they are
/// renamed to `__key__` by the symbol reader; as a suffix (`weight_lr_mult`) MXNet moves
/// them onto the matching input variable.
pub const FIX_PARSING_HIDDEN_KEYS: [&str; 5] = [
    "ctx_group",
    "lr_mult",
    "wd_mult",
    "force_mirroring",
    "mirror_stage",
];

/// Longest value quoted in an error message; longer values are cut (at a character
/// boundary) so that a 4 KiB attribute does not flood a log line.
const MAX_QUOTED_VALUE: usize = 200;

const EXPECT_INT: &str = "an integer like \"64\" or \"-1\"";
const EXPECT_FLOAT: &str = "a number like \"0.9\", \"1e-05\" or \"inf\"";
const EXPECT_BOOL: &str = "a boolean: \"True\", \"False\", \"1\" or \"0\"";
const EXPECT_TUPLE: &str = "a tuple of integers like \"(3, 3)\"";
const EXPECT_OPTIONAL_TUPLE: &str = "a tuple of integers or None like \"(None, 1)\"";
const EXPECT_FLOAT_TUPLE: &str = "a tuple of numbers like \"(0.5, 1.0)\"";
const EXPECT_DTYPE: &str =
    "a dtype name: float32, float64, float16, bfloat16, uint8, int8, int32, int64 or bool";
const EXPECT_TYPE_FLAG: &str =
    "an MXNet type flag: 0 (float32), 1 (float64), 2 (float16), 3 (uint8), 4 (int32), 5 (int8), 6 (int64), 7 (bool) or 12 (bfloat16)";

/// What was wrong with an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttrErrorKind {
    /// The value does not have the expected syntax.
    Malformed {
        value: String,
        expected: &'static str,
    },
    /// An enumerated attribute has a value outside its set.
    NotAllowed { value: String, allowed: Vec<String> },
    /// A required attribute is absent.
    Missing,
    /// The node carries an attribute the importer did not read.
    Unsupported,
}

/// Which attribute of which node an error is about (absent for the bare parsers).
#[derive(Debug, Clone, PartialEq, Eq)]
struct AttrContext {
    node: String,
    op: String,
    key: String,
}

/// An attribute string that ward refuses, with the value and the syntax it expected.
///
/// From the bare parsers it reads `"(3,x)": expected a tuple of integers like "(3, 3)"`;
/// from an [`AttrReader`] it also names the node, its op and the attribute:
/// `node "conv0" (Convolution): attribute "kernel" = "(3,x)": expected a tuple of
/// integers like "(3, 3)"`. Names and values come from the file, so they are printed
/// escaped (`{:?}`), never raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrError {
    context: Option<AttrContext>,
    kind: AttrErrorKind,
}

impl AttrError {
    fn malformed(value: &str, expected: &'static str) -> Self {
        AttrError {
            context: None,
            kind: AttrErrorKind::Malformed {
                value: value.to_owned(),
                expected,
            },
        }
    }

    fn with_context(mut self, node: &str, op: &str, key: &str) -> Self {
        self.context = Some(AttrContext {
            node: node.to_owned(),
            op: op.to_owned(),
            key: key.to_owned(),
        });
        self
    }

    /// What was wrong.
    pub fn kind(&self) -> &AttrErrorKind {
        &self.kind
    }

    /// The node's name, when the error came from an [`AttrReader`].
    pub fn node(&self) -> Option<&str> {
        self.context.as_ref().map(|c| c.node.as_str())
    }

    /// The node's operator, when the error came from an [`AttrReader`].
    pub fn op(&self) -> Option<&str> {
        self.context.as_ref().map(|c| c.op.as_str())
    }

    /// The attribute's key, when the error came from an [`AttrReader`].
    pub fn key(&self) -> Option<&str> {
        self.context.as_ref().map(|c| c.key.as_str())
    }

    /// The refused value, for malformed and not-allowed values.
    pub fn value(&self) -> Option<&str> {
        match &self.kind {
            AttrErrorKind::Malformed { value, .. } | AttrErrorKind::NotAllowed { value, .. } => {
                Some(value)
            }
            AttrErrorKind::Missing | AttrErrorKind::Unsupported => None,
        }
    }
}

/// Writes `s` quoted and escaped, cut to [`MAX_QUOTED_VALUE`] bytes.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if s.len() <= MAX_QUOTED_VALUE {
        return write!(f, "{s:?}");
    }
    let mut cut = MAX_QUOTED_VALUE;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    write!(f, "{:?}... ({} bytes)", &s[..cut], s.len())
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.context {
            f.write_str("node ")?;
            write_quoted(f, &c.node)?;
            write!(f, " ({}): ", c.op.escape_debug())?;
            match &self.kind {
                AttrErrorKind::Missing => {
                    f.write_str("missing required attribute ")?;
                    return write_quoted(f, &c.key);
                }
                AttrErrorKind::Unsupported => {
                    f.write_str("unsupported attribute ")?;
                    return write_quoted(f, &c.key);
                }
                AttrErrorKind::Malformed { .. } | AttrErrorKind::NotAllowed { .. } => {
                    f.write_str("attribute ")?;
                    write_quoted(f, &c.key)?;
                    f.write_str(" = ")?;
                }
            }
        }
        match &self.kind {
            AttrErrorKind::Malformed { value, expected } => {
                write_quoted(f, value)?;
                write!(f, ": expected {expected}")
            }
            AttrErrorKind::NotAllowed { value, allowed } => {
                write_quoted(f, value)?;
                f.write_str(": expected one of ")?;
                for (i, choice) in allowed.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{choice:?}")?;
                }
                Ok(())
            }
            AttrErrorKind::Missing => f.write_str("missing required attribute"),
            AttrErrorKind::Unsupported => f.write_str("unsupported attribute"),
        }
    }
}

impl std::error::Error for AttrError {}

/// C `isspace` in the "C" locale, which is what `std::istream >>` skips.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Digits with an optional sign, the only integer form the C++ stream accepts.
fn parse_signed_decimal(token: &str) -> Option<i64> {
    // `i64::from_str` accepts exactly `[+-]?[0-9]+` and refuses overflow.
    token.parse::<i64>().ok()
}

/// An integer, as `std::istream >> int64_t` reads it: optional surrounding whitespace,
/// an optional sign and decimal digits. `"3L"` is refused (MXNet refuses it too; the py2
/// `L` only ever appears inside tuples).
pub fn parse_int(s: &str) -> Result<i64, AttrError> {
    parse_signed_decimal(s.trim_matches(is_c_space))
        .ok_or_else(|| AttrError::malformed(s, EXPECT_INT))
}

/// A floating-point number in the syntax Python's `str(float)` writes: decimal with an
/// optional fraction and exponent, or `inf` / `infinity` (any case, optional sign).
///
/// NaN is refused: no exporter writes a NaN argument on purpose, and a NaN epsilon or
/// slope would silently poison every output. A finite spelling that overflows to infinity
/// or underflows to zero is refused, as MXNet does ("Out of range value").
pub fn parse_float(s: &str) -> Result<f64, AttrError> {
    let err = || AttrError::malformed(s, EXPECT_FLOAT);
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let is_infinity =
        unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity");
    if !is_infinity {
        // Rust's float syntax is wider than this (it also takes "nan"); restrict it to
        // digits, one '.', and one exponent with digits.
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
            None => (unsigned, None),
        };
        let mut dots = 0;
        let mut digits = 0;
        for c in mantissa.chars() {
            match c {
                '0'..='9' => digits += 1,
                '.' => dots += 1,
                _ => return Err(err()),
            }
        }
        if digits == 0 || dots > 1 {
            return Err(err());
        }
        if let Some(exponent) = exponent {
            let exp_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if exp_digits.is_empty() || !exp_digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
        }
        let value: f64 = s.parse().map_err(|_| err())?;
        let mantissa_is_zero = mantissa.bytes().all(|b| b == b'0' || b == b'.');
        if value.is_infinite() || (value == 0.0 && !mantissa_is_zero) {
            return Err(err());
        }
        return Ok(value);
    }
    s.parse::<f64>().map_err(|_| err())
}

/// A boolean as dmlc reads it: `true`/`false` in any case, or `1`/`0`. No whitespace.
pub fn parse_bool(s: &str) -> Result<bool, AttrError> {
    if s.eq_ignore_ascii_case("true") || s == "1" {
        Ok(true)
    } else if s.eq_ignore_ascii_case("false") || s == "0" {
        Ok(false)
    } else {
        Err(AttrError::malformed(s, EXPECT_BOOL))
    }
}

/// One integer inside a tuple: digits with an optional sign and a py2 long suffix `L`.
fn parse_tuple_int(token: &str) -> Option<i64> {
    parse_signed_decimal(token.strip_suffix('L').unwrap_or(token))
}

/// A float inside a tuple.
fn parse_tuple_float(token: &str) -> Option<f64> {
    parse_float(token).ok()
}

/// The tuple grammar shared by integer and float tuples (dmlc `Tuple<T>::operator>>`):
/// `( e, e, ... )` or `[ e, e, ... ]` with an optional trailing comma, or one bare value
/// (a 1-tuple), with whitespace between tokens. `None` is handled by the callers.
fn parse_tuple_with<T>(
    s: &str,
    element: impl Fn(&str) -> Option<T>,
    bare: impl Fn(&str) -> Option<T>,
) -> Option<Vec<T>> {
    let body = s.trim_matches(is_c_space);
    let close = match body.as_bytes().first() {
        Some(b'(') => ')',
        Some(b'[') => ']',
        Some(_) => {
            // A bare value: MXNet reads one scalar, e.g. Reshape's `shape = "-1"`.
            return bare(body).map(|v| vec![v]);
        }
        None => return None,
    };
    let inner = body[1..].strip_suffix(close)?;
    let inner = inner.trim_matches(is_c_space);
    if inner.is_empty() {
        return Some(Vec::new());
    }
    // A single trailing comma is allowed ("(4,)"); an empty element anywhere else is not.
    let inner = match inner.strip_suffix(',') {
        Some(rest) => rest,
        None => inner,
    };
    let mut values = Vec::new();
    for token in inner.split(',') {
        let token = token.trim_matches(is_c_space);
        // An empty token means ",," or "(,)"; a bracket inside means nesting.
        if token.is_empty() || token.contains(['(', ')', '[', ']']) {
            return None;
        }
        values.push(element(token)?);
    }
    Some(values)
}

/// A shape or integer tuple (MXNet `TShape` / `Tuple<int>`). `None` means "unknown"
/// and gives `Ok(None)`; everything else is a list, possibly empty.
pub fn parse_tuple(s: &str) -> Result<Option<Vec<i64>>, AttrError> {
    if s.trim_matches(is_c_space) == "None" {
        return Ok(None);
    }
    // MXNet takes the py2 `L` inside brackets only: a bare "3L" is refused.
    parse_tuple_with(s, parse_tuple_int, parse_signed_decimal)
        .map(Some)
        .ok_or_else(|| AttrError::malformed(s, EXPECT_TUPLE))
}

/// A tuple whose elements may each be `None` (MXNet `Tuple<dmlc::optional<int>>`, as
/// `slice` writes `begin="(None, 1)"`), with the tuple syntax of [`parse_tuple`].
pub fn parse_optional_int_tuple(s: &str) -> Result<Vec<Option<i64>>, AttrError> {
    let element = |t: &str| {
        if t == "None" {
            Some(None)
        } else {
            parse_tuple_int(t).map(Some)
        }
    };
    let bare = |t: &str| {
        if t == "None" {
            Some(None)
        } else {
            parse_signed_decimal(t).map(Some)
        }
    };
    parse_tuple_with(s, element, bare).ok_or_else(|| AttrError::malformed(s, EXPECT_OPTIONAL_TUPLE))
}

/// A tuple of floats (MXNet `Tuple<float>` / `Tuple<double>`), with the tuple syntax of
/// [`parse_tuple`] and the element syntax of [`parse_float`]. `None` is refused: callers
/// that accept it wrap this in [`parse_optional`].
pub fn parse_float_tuple(s: &str) -> Result<Vec<f64>, AttrError> {
    parse_tuple_with(s, parse_tuple_float, parse_tuple_float)
        .ok_or_else(|| AttrError::malformed(s, EXPECT_FLOAT_TUPLE))
}

/// `dmlc::optional<T>`: exactly `None` is absent, anything else goes to `parse`.
pub fn parse_optional<T>(
    s: &str,
    parse: impl Fn(&str) -> Result<T, AttrError>,
) -> Result<Option<T>, AttrError> {
    if s == "None" {
        Ok(None)
    } else {
        parse(s).map(Some)
    }
}

/// A dtype argument (`dtype="float32"`), by MXNet's names for the types ward supports.
pub fn parse_dtype(s: &str) -> Result<DType, AttrError> {
    Ok(match s {
        "float32" => DType::F32,
        "float64" => DType::F64,
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "uint8" => DType::U8,
        "int8" => DType::I8,
        "int32" => DType::I32,
        "int64" => DType::I64,
        "bool" => DType::Bool,
        _ => return Err(AttrError::malformed(s, EXPECT_DTYPE)),
    })
}

/// A variable's `__dtype__` hint: an mshadow type flag written as an integer string
/// (§1.7 of the format reference). Flags 8 to 11 exist in the enum but MXNet itself
/// cannot use them, so they are refused like any other unknown flag.
pub fn parse_type_flag(s: &str) -> Result<DType, AttrError> {
    // The same mshadow flags as `.params` records.
    parse_int(s)
        .ok()
        .and_then(|flag| i32::try_from(flag).ok())
        .and_then(crate::params::dtype_from_flag)
        .ok_or_else(|| AttrError::malformed(s, EXPECT_TYPE_FLAG))
}

/// A hidden attribute as dmlc's `kAllowHidden` defines it: longer than four bytes, and
/// starting and ending with `__` (`__shape__`, `__lr_mult__`, `__init__`). MXNet's
/// parameter parsers skip these, and so does [`AttrReader::finish`].
pub fn is_hidden_key(key: &str) -> bool {
    key.len() > 4 && key.starts_with("__") && key.ends_with("__")
}

/// A per-input training hint such as `weight_lr_mult`: a name, `_`, and one of
/// [`FIX_PARSING_HIDDEN_KEYS`]. Old MXNet moves these from the op onto the input variable
/// they name (which needs the op's input names, so the symbol reader leaves them where
/// they are). They only steer training, so [`AttrReader::finish`] skips them.
pub fn is_training_hint_key(key: &str) -> bool {
    FIX_PARSING_HIDDEN_KEYS.iter().any(|hint| {
        key.strip_suffix(hint)
            .and_then(|prefix| prefix.strip_suffix('_'))
            .is_some_and(|arg| !arg.is_empty())
    })
}

/// Reads one node's attributes with explicit defaults, and refuses what it did not read.
///
/// ```
/// # use std::collections::BTreeMap;
/// # use ward_mxnet::attrs::AttrReader;
/// let attrs = BTreeMap::from([
///     ("kernel".to_string(), "(3, 3)".to_string()),
///     ("num_filter".to_string(), "8".to_string()),
///     ("cudnn_tune".to_string(), "off".to_string()),
/// ]);
/// let mut r = AttrReader::new("conv0", "Convolution", &attrs);
/// assert_eq!(r.req_tuple("kernel")?, vec![3, 3]);
/// assert_eq!(r.tuple("stride", &[1, 1])?, vec![1, 1]);
/// assert_eq!(r.req_int("num_filter")?, 8);
/// r.ignore(&["cudnn_tune", "workspace"]);
/// r.finish()?;
/// # Ok::<(), ward_mxnet::attrs::AttrError>(())
/// ```
#[derive(Debug)]
pub struct AttrReader<'a> {
    node: &'a str,
    op: &'a str,
    attrs: &'a BTreeMap<String, String>,
    used: BTreeSet<&'a str>,
}

impl<'a> AttrReader<'a> {
    pub fn new(node_name: &'a str, op: &'a str, attrs: &'a BTreeMap<String, String>) -> Self {
        AttrReader {
            node: node_name,
            op,
            attrs,
            used: BTreeSet::new(),
        }
    }

    /// The value of `key`, recording it as read.
    fn take(&mut self, key: &str) -> Option<&'a str> {
        let (stored_key, value) = self.attrs.get_key_value(key)?;
        self.used.insert(stored_key.as_str());
        Some(value.as_str())
    }

    fn in_context(&self, key: &str, err: AttrError) -> AttrError {
        err.with_context(self.node, self.op, key)
    }

    fn missing(&self, key: &str) -> AttrError {
        AttrError {
            context: None,
            kind: AttrErrorKind::Missing,
        }
        .with_context(self.node, self.op, key)
    }

    /// Parses `key` with `parse` if present.
    fn parse_present<T>(
        &mut self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, AttrError>,
    ) -> Result<Option<T>, AttrError> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => parse(value).map(Some).map_err(|e| self.in_context(key, e)),
        }
    }

    fn required<T>(
        &mut self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, AttrError>,
    ) -> Result<T, AttrError> {
        match self.parse_present(key, parse)? {
            Some(v) => Ok(v),
            None => Err(self.missing(key)),
        }
    }

    /// Whether the node has `key` (does not count as reading it).
    pub fn contains(&self, key: &str) -> bool {
        self.attrs.contains_key(key)
    }

    /// The raw string of `key`, recorded as read; for attributes with a syntax of their
    /// own (an `__init__` JSON string, say).
    pub fn raw(&mut self, key: &str) -> Option<&'a str> {
        self.take(key)
    }

    pub fn int(&mut self, key: &str, default: i64) -> Result<i64, AttrError> {
        Ok(self.parse_present(key, parse_int)?.unwrap_or(default))
    }

    pub fn req_int(&mut self, key: &str) -> Result<i64, AttrError> {
        self.required(key, parse_int)
    }

    /// `None` when absent or `"None"`.
    pub fn opt_int(&mut self, key: &str) -> Result<Option<i64>, AttrError> {
        Ok(self
            .parse_present(key, |s| parse_optional(s, parse_int))?
            .flatten())
    }

    pub fn float(&mut self, key: &str, default: f64) -> Result<f64, AttrError> {
        Ok(self.parse_present(key, parse_float)?.unwrap_or(default))
    }

    pub fn req_float(&mut self, key: &str) -> Result<f64, AttrError> {
        self.required(key, parse_float)
    }

    /// `None` when absent or `"None"`.
    pub fn opt_float(&mut self, key: &str) -> Result<Option<f64>, AttrError> {
        Ok(self
            .parse_present(key, |s| parse_optional(s, parse_float))?
            .flatten())
    }

    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool, AttrError> {
        Ok(self.parse_present(key, parse_bool)?.unwrap_or(default))
    }

    /// `None` when absent or `"None"` (e.g. Pooling's `count_include_pad`).
    pub fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, AttrError> {
        Ok(self
            .parse_present(key, |s| parse_optional(s, parse_bool))?
            .flatten())
    }

    /// An integer tuple, `default` when absent. `"None"` is refused here: where MXNet
    /// gives "unknown" a meaning, read the key with [`AttrReader::opt_tuple`].
    pub fn tuple(&mut self, key: &str, default: &[i64]) -> Result<Vec<i64>, AttrError> {
        Ok(self
            .parse_present(key, parse_known_tuple)?
            .unwrap_or_else(|| default.to_vec()))
    }

    pub fn req_tuple(&mut self, key: &str) -> Result<Vec<i64>, AttrError> {
        self.required(key, parse_known_tuple)
    }

    /// `None` when absent or `"None"`.
    pub fn opt_tuple(&mut self, key: &str) -> Result<Option<Vec<i64>>, AttrError> {
        Ok(self.parse_present(key, parse_tuple)?.flatten())
    }

    /// A tuple of optional integers, `default` when absent.
    pub fn optional_int_tuple(
        &mut self,
        key: &str,
        default: &[Option<i64>],
    ) -> Result<Vec<Option<i64>>, AttrError> {
        Ok(self
            .parse_present(key, parse_optional_int_tuple)?
            .unwrap_or_else(|| default.to_vec()))
    }

    pub fn float_tuple(&mut self, key: &str, default: &[f64]) -> Result<Vec<f64>, AttrError> {
        Ok(self
            .parse_present(key, parse_float_tuple)?
            .unwrap_or_else(|| default.to_vec()))
    }

    /// Any string, `default` when absent.
    pub fn string(&mut self, key: &str, default: &str) -> Result<String, AttrError> {
        Ok(self.take(key).unwrap_or(default).to_owned())
    }

    /// A string that must be present.
    pub fn req_string(&mut self, key: &str) -> Result<String, AttrError> {
        match self.take(key) {
            Some(v) => Ok(v.to_owned()),
            None => Err(self.missing(key)),
        }
    }

    /// One of `allowed` (exact, case-sensitive, as MXNet's enum parameters are), `default`
    /// when absent.
    pub fn enum_of(
        &mut self,
        key: &str,
        default: &str,
        allowed: &[&str],
    ) -> Result<String, AttrError> {
        let value = match self.take(key) {
            None => return Ok(default.to_owned()),
            Some(value) => value,
        };
        if allowed.contains(&value) {
            return Ok(value.to_owned());
        }
        Err(self.in_context(
            key,
            AttrError {
                context: None,
                kind: AttrErrorKind::NotAllowed {
                    value: value.to_owned(),
                    allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
                },
            },
        ))
    }

    /// A dtype name, `default` when absent. `"None"` is refused; read such keys with
    /// [`AttrReader::opt_dtype`].
    pub fn dtype(&mut self, key: &str, default: DType) -> Result<DType, AttrError> {
        Ok(self.parse_present(key, parse_dtype)?.unwrap_or(default))
    }

    /// `None` when absent or `"None"` (e.g. `softmax`'s `dtype`).
    pub fn opt_dtype(&mut self, key: &str) -> Result<Option<DType>, AttrError> {
        Ok(self
            .parse_present(key, |s| parse_optional(s, parse_dtype))?
            .flatten())
    }

    /// Marks `keys` as read: accepted, with no effect at inference (`cudnn_tune`,
    /// `workspace`, ...).
    pub fn ignore(&mut self, keys: &[&str]) {
        for key in keys {
            self.take(key);
        }
    }

    /// Refuses the first key (in sorted order) that was not read, other than hidden
    /// `__x__` keys and per-input training hints (`weight_lr_mult`).
    pub fn finish(self) -> Result<(), AttrError> {
        let unread = self.attrs.keys().find(|key| {
            !self.used.contains(key.as_str()) && !is_hidden_key(key) && !is_training_hint_key(key)
        });
        match unread {
            None => Ok(()),
            Some(key) => Err(AttrError {
                context: None,
                kind: AttrErrorKind::Unsupported,
            }
            .with_context(self.node, self.op, key)),
        }
    }
}

/// [`parse_tuple`] where `None` is not a value.
fn parse_known_tuple(s: &str) -> Result<Vec<i64>, AttrError> {
    parse_tuple(s)?.ok_or_else(|| AttrError::malformed(s, EXPECT_TUPLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed(r: Result<impl fmt::Debug, AttrError>) -> &'static str {
        match r {
            Err(AttrError {
                kind: AttrErrorKind::Malformed { expected, .. },
                context: None,
            }) => expected,
            other => panic!("expected a malformed-value error, got {other:?}"),
        }
    }

    #[test]
    fn ints_as_the_cxx_stream_reads_them() {
        for (s, v) in [
            ("64", 64),
            ("-1", -1),
            ("+4", 4),
            ("04", 4),
            ("0", 0),
            (" 4", 4),
            ("4 ", 4),
            ("\t4\n", 4),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(parse_int(s), Ok(v), "{s:?}");
        }
        for s in [
            "",
            " ",
            "4L",
            "4l",
            "4.0",
            "0x4",
            "1e1",
            "4 4",
            "+",
            "-",
            "- 4",
            "9223372036854775808",
            "True",
            "None",
            "(4)",
            "٣",
        ] {
            assert_eq!(malformed(parse_int(s)), EXPECT_INT, "{s:?}");
        }
    }

    #[test]
    fn floats_in_python_str_syntax() {
        for (s, v) in [
            ("0.9", 0.9),
            ("1e-05", 1e-5),
            ("6", 6.0),
            ("-2.5", -2.5),
            ("-1.", -1.0),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1E+3", 1000.0),
            ("2.5e-0", 2.5),
            ("+3", 3.0),
            ("0", 0.0),
            ("-0.0", 0.0),
            ("0e10", 0.0),
            ("1.7976931348623157e308", f64::MAX),
            ("5e-324", 5e-324),
        ] {
            assert_eq!(parse_float(s), Ok(v), "{s:?}");
        }
        for s in [
            "inf",
            "-inf",
            "+inf",
            "Inf",
            "-INF",
            "infinity",
            "-Infinity",
        ] {
            let v = parse_float(s).unwrap_or(0.0);
            assert!(v.is_infinite(), "{s:?}");
            assert_eq!(v < 0.0, s.starts_with('-'), "{s:?}");
        }
        for s in [
            "", " 1", "1 ", "nan", "NaN", "-nan", "1e", "-1e", "1e+", "2f", "-2f", "0x1p3", ".",
            "-", "e5", "1.2.3", "1e400", "-1e400", "1e-400", "1,5", "infinit", "inff", "1_000",
            "١",
        ] {
            assert_eq!(malformed(parse_float(s)), EXPECT_FLOAT, "{s:?}");
        }
    }

    #[test]
    fn bools_case_insensitive() {
        for (s, v) in [
            ("True", true),
            ("true", true),
            ("TRUE", true),
            ("tRuE", true),
            ("1", true),
            ("False", false),
            ("false", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(s), Ok(v), "{s:?}");
        }
        for s in [
            "", " True", "false ", "yes", "no", "2", "t", "on", "01", "None",
        ] {
            assert_eq!(malformed(parse_bool(s)), EXPECT_BOOL, "{s:?}");
        }
    }

    #[test]
    fn optional_tuples_as_slice_writes_them() {
        assert_eq!(
            parse_optional_int_tuple("(None, 1)"),
            Ok(vec![None, Some(1)])
        );
        assert_eq!(
            parse_optional_int_tuple("(-2, None, 3L)"),
            Ok(vec![Some(-2), None, Some(3)])
        );
        assert_eq!(parse_optional_int_tuple("()"), Ok(vec![]));
        assert_eq!(parse_optional_int_tuple("None"), Ok(vec![None]));
        assert_eq!(parse_optional_int_tuple("4"), Ok(vec![Some(4)]));
        for s in ["(none, 1)", "(1,,2)", "(1.5,)", "", "((1))"] {
            assert_eq!(
                malformed(parse_optional_int_tuple(s)),
                EXPECT_OPTIONAL_TUPLE,
                "{s:?}"
            );
        }
    }

    #[test]
    fn tuples_in_every_spelling_exporters_write() {
        let cases: [(&str, Option<Vec<i64>>); 22] = [
            ("(3, 3)", Some(vec![3, 3])),
            ("(3,3)", Some(vec![3, 3])),
            ("[3,3]", Some(vec![3, 3])),
            ("[3, 3]", Some(vec![3, 3])),
            ("(4,)", Some(vec![4])),
            ("(4)", Some(vec![4])),
            ("()", Some(vec![])),
            ("[]", Some(vec![])),
            ("( )", Some(vec![])),
            ("3", Some(vec![3])),
            ("-1", Some(vec![-1])),
            (" 24 ", Some(vec![24])),
            ("None", None),
            (" None ", None),
            ("(3L, 3L)", Some(vec![3, 3])),
            ("(-1L,)", Some(vec![-1])),
            ("( 3 , 3 )", Some(vec![3, 3])),
            ("(3, 3,)", Some(vec![3, 3])),
            ("(+3, 8)", Some(vec![3, 8])),
            ("(0, -1)", Some(vec![0, -1])),
            ("(4, 0, 48)", Some(vec![4, 0, 48])),
            (
                "(0, 0, 0, 0, 1, 1, 1, 1)",
                Some(vec![0, 0, 0, 0, 1, 1, 1, 1]),
            ),
        ];
        for (s, v) in cases {
            assert_eq!(parse_tuple(s), Ok(v), "{s:?}");
        }
        for s in [
            "",
            "(3 3)",
            "(3,,3)",
            "(,)",
            "(,3)",
            "((3))",
            "((3,3))",
            "(3,3",
            "3,3)",
            "3,3",
            "(3.0, 3)",
            "(3, None)",
            "(None)",
            "(3l, 3)",
            "3L",
            "(3,3)x",
            "x(3,3)",
            "(3,3]",
            "[3,3)",
            "(0x3, 3)",
            "(3, 3,,)",
            "(- 3)",
            "(3 L)",
            "none",
            "(99999999999999999999)",
            "(",
            ")",
            "[",
            "(3,)(4,)",
        ] {
            assert_eq!(malformed(parse_tuple(s)), EXPECT_TUPLE, "{s:?}");
        }
    }

    #[test]
    fn float_tuples() {
        assert_eq!(parse_float_tuple("(0.5, 1.0)"), Ok(vec![0.5, 1.0]));
        assert_eq!(parse_float_tuple("[1e-05]"), Ok(vec![1e-5]));
        assert_eq!(parse_float_tuple("0.25"), Ok(vec![0.25]));
        assert_eq!(parse_float_tuple("(2,)"), Ok(vec![2.0]));
        assert_eq!(parse_float_tuple("()"), Ok(vec![]));
        for s in [
            "None",
            "(0.5 1.0)",
            "(nan,)",
            "(1e400,)",
            "(0.5,,1)",
            "(1f)",
            "((1.0))",
        ] {
            assert_eq!(malformed(parse_float_tuple(s)), EXPECT_FLOAT_TUPLE, "{s:?}");
        }
    }

    #[test]
    fn optionals() {
        assert_eq!(parse_optional("None", parse_int), Ok(None));
        assert_eq!(parse_optional("7", parse_int), Ok(Some(7)));
        assert_eq!(parse_optional("0.5", parse_float), Ok(Some(0.5)));
        assert_eq!(malformed(parse_optional("none", parse_int)), EXPECT_INT);
        assert_eq!(malformed(parse_optional(" None", parse_bool)), EXPECT_BOOL);
    }

    #[test]
    fn dtypes_and_type_flags() {
        assert_eq!(parse_dtype("float32"), Ok(DType::F32));
        assert_eq!(parse_dtype("bfloat16"), Ok(DType::BF16));
        assert_eq!(parse_dtype("bool"), Ok(DType::Bool));
        for s in ["f32", "Float32", "float", "int16", "None", ""] {
            assert_eq!(malformed(parse_dtype(s)), EXPECT_DTYPE, "{s:?}");
        }
        assert_eq!(parse_type_flag("0"), Ok(DType::F32));
        assert_eq!(parse_type_flag("6"), Ok(DType::I64));
        assert_eq!(parse_type_flag("12"), Ok(DType::BF16));
        for s in ["8", "11", "13", "-1", "float32", ""] {
            assert_eq!(malformed(parse_type_flag(s)), EXPECT_TYPE_FLAG, "{s:?}");
        }
    }

    #[test]
    fn hidden_and_hint_keys() {
        for k in ["__shape__", "__lr_mult__", "__init__", "__x__"] {
            assert!(is_hidden_key(k), "{k}");
        }
        for k in ["____", "__", "__x", "x__", "_x_", "shape"] {
            assert!(!is_hidden_key(k), "{k}");
        }
        for k in [
            "weight_lr_mult",
            "bias_wd_mult",
            "data_ctx_group",
            "a_mirror_stage",
        ] {
            assert!(is_training_hint_key(k), "{k}");
        }
        for k in [
            "lr_mult",
            "_lr_mult",
            "weightlr_mult",
            "lr_mult_x",
            "kernel",
        ] {
            assert!(!is_training_hint_key(k), "{k}");
        }
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reader_defaults_required_and_optional() {
        let a = attrs(&[
            ("kernel", "(3, 3)"),
            ("num_filter", "8"),
            ("no_bias", "True"),
            ("eps", "1e-05"),
            ("projection_size", "None"),
            ("clip", "None"),
            ("p", "0.5"),
            ("act_type", "relu"),
            ("layout", "NCHW"),
            ("dtype", "float16"),
            ("axes", "()"),
            ("scales", "(0.5, 2)"),
            ("__shape__", "(1, 2)"),
            ("weight_lr_mult", "0.1"),
            ("__init__", "[\"zero\", {}]"),
            ("cudnn_tune", "off"),
        ]);
        let mut r = AttrReader::new("conv0", "Convolution", &a);
        assert_eq!(r.req_tuple("kernel"), Ok(vec![3, 3]));
        assert_eq!(r.tuple("stride", &[1, 1]), Ok(vec![1, 1]));
        assert_eq!(r.req_int("num_filter"), Ok(8));
        assert_eq!(r.int("num_group", 1), Ok(1));
        assert_eq!(r.bool("no_bias", false), Ok(true));
        assert_eq!(r.float("eps", 1e-3), Ok(1e-5));
        assert_eq!(r.opt_int("projection_size"), Ok(None));
        assert_eq!(r.opt_int("absent"), Ok(None));
        assert_eq!(r.opt_float("clip"), Ok(None));
        assert_eq!(r.opt_float("p"), Ok(Some(0.5)));
        assert_eq!(r.opt_tuple("axes"), Ok(Some(vec![])));
        assert_eq!(r.opt_tuple("target_shape"), Ok(None));
        assert_eq!(r.float_tuple("scales", &[1.0]), Ok(vec![0.5, 2.0]));
        assert_eq!(
            r.enum_of("act_type", "relu", &["relu", "sigmoid"]),
            Ok("relu".to_owned())
        );
        assert_eq!(r.string("layout", "NCW"), Ok("NCHW".to_owned()));
        assert_eq!(r.dtype("dtype", DType::F32), Ok(DType::F16));
        assert!(r.contains("__init__"));
        assert_eq!(r.raw("__init__"), Some("[\"zero\", {}]"));
        r.ignore(&["cudnn_tune", "workspace"]);
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn reader_errors_name_node_op_key_and_value() {
        let a = attrs(&[("kernel", "(3,x)"), ("num_filter", "8"), ("bogus", "1")]);
        let mut r = AttrReader::new("conv0", "Convolution", &a);
        let err = r.req_tuple("kernel").expect_err("must fail");
        assert_eq!(
            err.to_string(),
            r#"node "conv0" (Convolution): attribute "kernel" = "(3,x)": expected a tuple of integers like "(3, 3)""#
        );
        assert_eq!(err.node(), Some("conv0"));
        assert_eq!(err.op(), Some("Convolution"));
        assert_eq!(err.key(), Some("kernel"));
        assert_eq!(err.value(), Some("(3,x)"));

        let err = r.req_int("num_hidden").expect_err("must fail");
        assert_eq!(err.kind(), &AttrErrorKind::Missing);
        assert_eq!(
            err.to_string(),
            r#"node "conv0" (Convolution): missing required attribute "num_hidden""#
        );
        assert_eq!(r.req_int("num_filter"), Ok(8));
        let err = r.finish().expect_err("must fail");
        assert_eq!(err.kind(), &AttrErrorKind::Unsupported);
        assert_eq!(
            err.to_string(),
            r#"node "conv0" (Convolution): unsupported attribute "bogus""#
        );
    }

    #[test]
    fn reader_enum_and_none_handling() {
        let a = attrs(&[("act_type", "Relu"), ("kernel", "None"), ("dtype", "None")]);
        let mut r = AttrReader::new("act\n0", "Activation", &a);
        let err = r
            .enum_of("act_type", "relu", &["relu", "sigmoid"])
            .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            r#"node "act\n0" (Activation): attribute "act_type" = "Relu": expected one of "relu", "sigmoid""#
        );
        // `tuple` has a default, so "None" is not silently turned into it.
        assert!(r.tuple("kernel", &[1]).is_err());
        assert_eq!(r.opt_tuple("kernel"), Ok(None));
        assert!(r.dtype("dtype", DType::F32).is_err());
        assert_eq!(r.opt_dtype("dtype"), Ok(None));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "9".repeat(5000);
        let msg = parse_int(&long).expect_err("must fail").to_string();
        assert!(msg.len() < 400, "{}", msg.len());
        assert!(msg.contains("(5000 bytes)"), "{msg}");
        let multibyte = "é".repeat(300);
        assert!(parse_int(&multibyte)
            .expect_err("must fail")
            .to_string()
            .contains("(600 bytes)"));
    }
}
