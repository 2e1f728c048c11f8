//! The input schema of a model and the one check every prediction passes.
//!
//! A package declares, for each input, its dtype, its shape (`-1` for a variable dim), an
//! optional inclusive value range and whether NaN and infinities are allowed. The runtime
//! calls [`validate_inputs`] on every request before any tensor reaches the executor.
//! Errors name the input and what is wrong in words a client can act on; they never carry
//! internal paths.
//!
//! In JSON, dtypes are written with their long names (`"float32"`); the short names
//! (`"f32"`) are accepted on input too.

use serde::{Deserialize, Serialize};
use std::fmt;
use ward_core::{tensor::element_count, DType, Tensor, TensorView};

/// Most elements one input tensor may have (2^26 = 67 108 864: 256 MiB of float32, a batch
/// of 445 images of 3×224×224). Servers apply their own, usually smaller, body limits first.
pub const MAX_INPUT_ELEMENTS: usize = 1 << 26;

/// Most dimensions an input or output may declare.
pub const MAX_RANK: usize = 32;

/// Longest input or output name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The dim value that stands for "any size".
pub const VARIABLE_DIM: i64 = -1;

/// Limits applied by [`validate_inputs_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Most elements of one input tensor.
    pub max_elements: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_elements: MAX_INPUT_ELEMENTS,
        }
    }
}

/// One declared model input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    #[serde(with = "dtype_name")]
    pub dtype: DType,
    /// One entry per dimension; `-1` is a variable dim.
    pub shape: Vec<i64>,
    /// Inclusive `[min, max]` every finite element must lie in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
    /// Whether NaN and ±infinity are accepted (float dtypes only).
    #[serde(default)]
    pub allow_nonfinite: bool,
}

/// One declared model output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    #[serde(with = "dtype_name")]
    pub dtype: DType,
    /// One entry per dimension; `-1` is a variable dim.
    pub shape: Vec<i64>,
}

/// What is wrong with a request's inputs or with a declared spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("input {input:?} is missing")]
    Missing { input: String },
    #[error("input {input:?} is given more than once")]
    Duplicate { input: String },
    #[error("input {input:?} is not an input of this model (inputs: {expected})")]
    Unexpected { input: String, expected: String },
    #[error("input {input:?}: dtype is {got}, the model expects {expected}")]
    DType {
        input: String,
        got: DType,
        expected: DType,
    },
    #[error("input {input:?}: rank is {got}, the model expects {expected} (shape {shape})")]
    Rank {
        input: String,
        got: usize,
        expected: usize,
        shape: ShapeText,
    },
    #[error("input {input:?}: dim {index} is {got}, the model expects {expected}")]
    Dim {
        input: String,
        index: usize,
        got: usize,
        expected: i64,
    },
    #[error("input {input:?}: {count} elements exceed the limit of {limit}")]
    TooManyElements {
        input: String,
        count: ElementCount,
        limit: usize,
    },
    #[error("input {input:?}: element {index} is {value}, outside the range [{min}, {max}]")]
    OutOfRange {
        input: String,
        index: usize,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("input {input:?}: element {index} is {value}; NaN and infinity are not accepted")]
    NonFinite {
        input: String,
        index: usize,
        value: f64,
    },
    #[error("input {input:?}: element {index} is {value}, a bool must be 0 or 1")]
    InvalidBool {
        input: String,
        index: usize,
        value: u8,
    },
    #[error("{kind} name {name:?} is invalid: {reason}")]
    SpecName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error(
        "{kind} {name:?}: shape dim {index} is {value}; dims must be -1 (variable) or non-negative"
    )]
    SpecDim {
        kind: &'static str,
        name: String,
        index: usize,
        value: i64,
    },
    #[error("{kind} {name:?}: {rank} dims exceed the limit of {limit}")]
    SpecRank {
        kind: &'static str,
        name: String,
        rank: usize,
        limit: usize,
    },
    #[error("input {name:?}: range [{min}, {max}] is invalid: {reason}")]
    SpecRange {
        name: String,
        min: f64,
        max: f64,
        reason: &'static str,
    },
    #[error("input {name:?}: allow_nonfinite is set but {dtype} is not a float dtype")]
    SpecNonFinite { name: String, dtype: DType },
}

/// A shape for error messages: `[1, 3, 224, 224]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeText(pub Vec<usize>);

impl fmt::Display for ShapeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// An element count for error messages; `None` when it overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementCount(pub Option<usize>);

impl fmt::Display for ElementCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("more than 2^64"),
        }
    }
}

fn check_name(kind: &'static str, name: &str) -> Result<(), SchemaError> {
    let bad = |reason| SchemaError::SpecName {
        kind,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("it is longer than 256 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("it contains a control character"));
    }
    Ok(())
}

fn check_shape(kind: &'static str, name: &str, shape: &[i64]) -> Result<(), SchemaError> {
    if shape.len() > MAX_RANK {
        return Err(SchemaError::SpecRank {
            kind,
            name: name.to_string(),
            rank: shape.len(),
            limit: MAX_RANK,
        });
    }
    if let Some((index, &value)) = shape.iter().enumerate().find(|(_, &d)| d < VARIABLE_DIM) {
        return Err(SchemaError::SpecDim {
            kind,
            name: name.to_string(),
            index,
            value,
        });
    }
    Ok(())
}

impl InputSpec {
    /// Most elements an input of this spec can have under `limits`: the product of its
    /// dims when all are fixed, and the element limit in any case.
    pub fn max_elements(&self, limits: &InputLimits) -> u64 {
        let limit = limits.max_elements as u64;
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| {
                u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            })
            .map_or(limit, |n| n.min(limit))
    }

    /// Checks the spec itself (run when a manifest is loaded): a usable name, at most
    /// [`MAX_RANK`] dims each `-1` or non-negative, a finite range with `min <= max`, and
    /// `allow_nonfinite` only on float dtypes.
    pub fn validate_spec(&self) -> Result<(), SchemaError> {
        check_name("input", &self.name)?;
        check_shape("input", &self.name, &self.shape)?;
        if let Some([min, max]) = self.range {
            let bad = |reason| SchemaError::SpecRange {
                name: self.name.clone(),
                min,
                max,
                reason,
            };
            if !min.is_finite() || !max.is_finite() {
                return Err(bad("bounds must be finite"));
            }
            if min > max {
                return Err(bad("min is greater than max"));
            }
        }
        if self.allow_nonfinite && !self.dtype.is_float() {
            return Err(SchemaError::SpecNonFinite {
                name: self.name.clone(),
                dtype: self.dtype,
            });
        }
        Ok(())
    }
}

impl OutputSpec {
    /// Checks the spec itself: a usable name and at most [`MAX_RANK`] dims, each `-1` or
    /// non-negative.
    pub fn validate_spec(&self) -> Result<(), SchemaError> {
        check_name("output", &self.name)?;
        check_shape("output", &self.name, &self.shape)
    }
}

/// Checks a request's inputs against the model's declared inputs with the default limits.
/// See [`validate_inputs_with`].
pub fn validate_inputs(
    specs: &[InputSpec],
    inputs: &[(String, Tensor)],
) -> Result<(), SchemaError> {
    validate_inputs_with(specs, inputs, &InputLimits::default())
}

/// Checks a request's inputs against the model's declared inputs: every declared input is
/// present exactly once and nothing else is; each has the declared dtype and rank, every
/// fixed dim matches, the element count is within `limits`, every finite element is within
/// the declared range (inclusive), NaN and ±infinity appear only where `allow_nonfinite` is
/// set (non-finite values so allowed are not range-checked), and bool elements are 0 or 1.
///
/// Inputs are checked in the order of `specs`, so the first error is deterministic.
pub fn validate_inputs_with(
    specs: &[InputSpec],
    inputs: &[(String, Tensor)],
    limits: &InputLimits,
) -> Result<(), SchemaError> {
    let views: Vec<(&str, TensorView<'_>)> = inputs
        .iter()
        .map(|(name, t)| (name.as_str(), t.view()))
        .collect();
    validate_views(specs, &views, limits)
}

/// [`validate_inputs_with`] on borrowed tensors (a caller's buffers read in place).
pub fn validate_views(
    specs: &[InputSpec],
    inputs: &[(&str, TensorView<'_>)],
    limits: &InputLimits,
) -> Result<(), SchemaError> {
    // Names first: duplicates and unexpected names before any data is looked at.
    for (i, (name, _)) in inputs.iter().enumerate() {
        if inputs.iter().take(i).any(|(n, _)| n == name) {
            return Err(SchemaError::Duplicate {
                input: name.to_string(),
            });
        }
        if !specs.iter().any(|s| s.name == *name) {
            return Err(SchemaError::Unexpected {
                input: name.to_string(),
                expected: expected_names(specs),
            });
        }
    }
    for spec in specs {
        let tensor = inputs
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map(|(_, t)| t)
            .ok_or_else(|| SchemaError::Missing {
                input: spec.name.clone(),
            })?;
        validate_one(spec, tensor, limits)?;
    }
    Ok(())
}

/// The declared input names for an error message, at most 8 of them.
fn expected_names(specs: &[InputSpec]) -> String {
    const SHOWN: usize = 8;
    let mut out = specs
        .iter()
        .take(SHOWN)
        .map(|s| format!("{:?}", s.name))
        .collect::<Vec<_>>()
        .join(", ");
    if specs.len() > SHOWN {
        out.push_str(&format!(" and {} more", specs.len() - SHOWN));
    }
    out
}

fn validate_one(
    spec: &InputSpec,
    t: &TensorView<'_>,
    limits: &InputLimits,
) -> Result<(), SchemaError> {
    let input = || spec.name.clone();
    if t.dtype() != spec.dtype {
        return Err(SchemaError::DType {
            input: input(),
            got: t.dtype(),
            expected: spec.dtype,
        });
    }
    let shape = t.shape();
    if shape.len() != spec.shape.len() {
        return Err(SchemaError::Rank {
            input: input(),
            got: shape.len(),
            expected: spec.shape.len(),
            shape: ShapeText(shape.to_vec()),
        });
    }
    for (index, (&got, &expected)) in shape.iter().zip(&spec.shape).enumerate() {
        if expected != VARIABLE_DIM && u64::try_from(got).ok() != u64::try_from(expected).ok() {
            return Err(SchemaError::Dim {
                input: input(),
                index,
                got,
                expected,
            });
        }
    }
    let count = element_count(shape);
    match count {
        Some(n) if n <= limits.max_elements => {}
        _ => {
            return Err(SchemaError::TooManyElements {
                input: input(),
                count: ElementCount(count),
                limit: limits.max_elements,
            })
        }
    }
    check_values(spec, t)
}

/// Whether integer `v` is `>= bound` (`ge`) or `<= bound` (`!ge`), exactly, for a finite bound.
fn int_within(v: i64, bound: f64, ge: bool) -> bool {
    // 2^63 as f64; every f64 at or above it is above i64::MAX.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let b = if ge { bound.ceil() } else { bound.floor() };
    if b >= TWO_63 {
        return !ge;
    }
    if b < -TWO_63 {
        return ge;
    }
    // `b` is integral and in [-2^63, 2^63): the conversion is exact.
    let b = b as i64;
    if ge {
        v >= b
    } else {
        v <= b
    }
}

/// Whether every float32 in `bytes` passes (finite unless `allow_nonfinite`, within
/// `range`), in one branch-free pass the compiler vectorises: the common case of a request
/// that passes costs a fraction of the element-by-element check, which then runs only to
/// name the first element that fails.
fn f32_values_pass(bytes: &[u8], allow_nonfinite: bool, range: Option<[f64; 2]>) -> bool {
    /// Independent running minima and maxima, one per lane of a vector register, so the
    /// loop carries no dependency from one element to the next.
    const LANES: usize = 16;
    let (chunks, rest) = bytes.as_chunks::<4>();
    if !rest.is_empty() {
        return false;
    }
    if chunks.is_empty() {
        return true;
    }
    let mut low = [f32::INFINITY; LANES];
    let mut high = [f32::NEG_INFINITY; LANES];
    // NaN compares false both ways, so the selects below skip it: it is flagged apart.
    let mut nan = [false; LANES];
    let mut fold = |block: &[[u8; 4]]| {
        for (((l, h), n), chunk) in low.iter_mut().zip(&mut high).zip(&mut nan).zip(block) {
            let v = f32::from_le_bytes(*chunk);
            *n |= v.is_nan();
            *l = if v < *l { v } else { *l };
            *h = if v > *h { v } else { *h };
        }
    };
    let (blocks, tail) = chunks.as_chunks::<LANES>();
    for block in blocks {
        fold(block);
    }
    fold(tail);
    let low = low.into_iter().fold(f32::INFINITY, f32::min);
    let high = high.into_iter().fold(f32::NEG_INFINITY, f32::max);
    if nan.contains(&true) || !(low.is_finite() && high.is_finite()) {
        return allow_nonfinite && range.is_none();
    }
    match range {
        // Compared in f64, as the element-by-element check does.
        Some([min, max]) => min <= f64::from(low) && f64::from(high) <= max,
        None => true,
    }
}

fn check_values(spec: &InputSpec, t: &TensorView<'_>) -> Result<(), SchemaError> {
    let bytes = t.bytes();
    let input = || spec.name.clone();
    let range = spec.range;
    if spec.dtype == DType::F32 && f32_values_pass(bytes, spec.allow_nonfinite, range) {
        return Ok(());
    }
    match spec.dtype {
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => {
            let size = spec.dtype.size();
            for (index, chunk) in bytes.chunks_exact(size).enumerate() {
                let value = match *chunk {
                    [a, b, c, d, e, f, g, h] => f64::from_le_bytes([a, b, c, d, e, f, g, h]),
                    [a, b, c, d] => f64::from(f32::from_le_bytes([a, b, c, d])),
                    [a, b] if spec.dtype == DType::F16 => half::f16::from_le_bytes([a, b]).to_f64(),
                    [a, b] => half::bf16::from_le_bytes([a, b]).to_f64(),
                    _ => continue,
                };
                if !value.is_finite() {
                    if spec.allow_nonfinite {
                        continue;
                    }
                    return Err(SchemaError::NonFinite {
                        input: input(),
                        index,
                        value,
                    });
                }
                if let Some([min, max]) = range {
                    if !(min <= value && value <= max) {
                        return Err(SchemaError::OutOfRange {
                            input: input(),
                            index,
                            value,
                            min,
                            max,
                        });
                    }
                }
            }
        }
        DType::Bool => {
            for (index, &b) in bytes.iter().enumerate() {
                if b > 1 {
                    return Err(SchemaError::InvalidBool {
                        input: input(),
                        index,
                        value: b,
                    });
                }
                if let Some([min, max]) = range {
                    let value = f64::from(b);
                    if !(min <= value && value <= max) {
                        return Err(SchemaError::OutOfRange {
                            input: input(),
                            index,
                            value,
                            min,
                            max,
                        });
                    }
                }
            }
        }
        DType::U8 | DType::I8 | DType::I32 | DType::I64 => {
            let Some([min, max]) = range else {
                return Ok(());
            };
            let size = spec.dtype.size();
            for (index, chunk) in bytes.chunks_exact(size).enumerate() {
                let v = match (spec.dtype, chunk) {
                    (DType::U8, &[a]) => i64::from(a),
                    (DType::I8, &[a]) => i64::from(a as i8),
                    (_, &[a, b, c, d]) => i64::from(i32::from_le_bytes([a, b, c, d])),
                    (_, &[a, b, c, d, e, f, g, h]) => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
                    _ => continue,
                };
                if !(int_within(v, min, true) && int_within(v, max, false)) {
                    return Err(SchemaError::OutOfRange {
                        input: input(),
                        index,
                        value: v as f64,
                        min,
                        max,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Serialises a dtype by its long name (`float32`) and reads either name.
mod dtype_name {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use ward_core::DType;

    pub fn serialize<S: Serializer>(d: &DType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DType, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The one-pass float32 check agrees with the element-by-element one on every mix of
    /// finite, infinite and NaN values, ranges and `allow_nonfinite`.
    #[test]
    fn the_fast_float32_check_never_passes_what_the_full_check_refuses() {
        let values = [
            0.5f32,
            -3.0,
            3.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e30,
        ];
        for mask in 0u32..(1 << values.len()) {
            let picked: Vec<f32> = (0..values.len())
                .filter(|i| mask & (1 << i) != 0)
                .filter_map(|i| values.get(i).copied())
                .collect();
            let bytes: Vec<u8> = picked.iter().flat_map(|v| v.to_le_bytes()).collect();
            for range in [None, Some([-3.0, 3.0]), Some([-2.0, 2.0])] {
                for allow_nonfinite in [false, true] {
                    let mut s = spec("x", DType::F32, &[-1]);
                    s.range = range;
                    s.allow_nonfinite = allow_nonfinite;
                    let t =
                        Tensor::from_bytes(DType::F32, vec![picked.len()], bytes.clone()).unwrap();
                    let fast = f32_values_pass(&bytes, allow_nonfinite, range);
                    // Forced through the element-by-element check: as float64.
                    let wide: Vec<u8> = picked
                        .iter()
                        .flat_map(|v| f64::from(*v).to_le_bytes())
                        .collect();
                    let mut s64 = s.clone();
                    s64.dtype = DType::F64;
                    let t64 = Tensor::from_bytes(DType::F64, vec![picked.len()], wide).unwrap();
                    let full = check_values(&s64, &t64.view()).is_ok();
                    assert!(!fast || full, "{picked:?} {range:?} {allow_nonfinite}");
                    if full && picked.iter().all(|v| v.is_finite()) {
                        // The common case takes the one pass alone.
                        assert!(fast, "{picked:?} {range:?}");
                    }
                    assert_eq!(
                        check_values(&s, &t.view()).is_ok(),
                        full,
                        "{picked:?} {range:?}"
                    );
                }
            }
        }
    }

    /// The one pass keeps a running minimum and maximum per lane: a value that fails is
    /// found in whichever lane, block or tail it falls, at every length.
    #[test]
    fn the_fast_float32_check_sees_every_position() {
        for len in 1..70usize {
            for at in 0..len {
                for (bad, range) in [
                    (f32::NAN, None),
                    (f32::INFINITY, None),
                    (f32::NEG_INFINITY, None),
                    (2.5, Some([-2.0, 2.0])),
                    (-2.5, Some([-2.0, 2.0])),
                ] {
                    let mut values = vec![1.0f32; len];
                    values[at] = bad;
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    assert!(!f32_values_pass(&bytes, false, range), "{len} {at} {bad}");
                    values[at] = -1.5;
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    assert!(f32_values_pass(&bytes, false, range), "{len} {at}");
                }
            }
        }
        assert!(!f32_values_pass(&[0; 5], false, None));
        assert!(f32_values_pass(&[], false, None));
    }

    /// A borrowed tensor is checked exactly as the same tensor owned.
    #[test]
    fn views_are_checked_as_tensors_are() {
        let mut s = spec("x", DType::F32, &[-1, 2]);
        s.range = Some([0.0, 1.0]);
        let specs = [s];
        for values in [&[0.5f32, 1.0][..], &[0.5, 2.0], &[f32::INFINITY, 0.0]] {
            let owned = f32_input("x", &[1, 2], values);
            let view = [("x", owned.1.view())];
            assert_eq!(
                validate_views(&specs, &view, &InputLimits::default()),
                validate_inputs(&specs, std::slice::from_ref(&owned)),
            );
        }
        let bytes = [0u8; 8];
        let view = TensorView::new(DType::F32, &[2], &bytes).unwrap();
        let err = validate_views(&specs, &[("x", view)], &InputLimits::default()).unwrap_err();
        assert!(matches!(err, SchemaError::Rank { .. }), "{err}");
        let err = validate_views(&specs, &[("y", view)], &InputLimits::default()).unwrap_err();
        assert!(matches!(err, SchemaError::Unexpected { .. }), "{err}");
    }

    fn spec(name: &str, dtype: DType, shape: &[i64]) -> InputSpec {
        InputSpec {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            range: None,
            allow_nonfinite: false,
        }
    }

    fn f32_input(name: &str, shape: &[usize], values: &[f32]) -> (String, Tensor) {
        (
            name.to_string(),
            Tensor::from_f32(shape.to_vec(), values).unwrap(),
        )
    }

    fn zeros(name: &str, dtype: DType, shape: &[usize]) -> (String, Tensor) {
        let n: usize = shape.iter().product();
        (
            name.to_string(),
            Tensor::from_bytes(dtype, shape.to_vec(), vec![0; n * dtype.size()]).unwrap(),
        )
    }

    #[test]
    fn accepts_matching_inputs_in_any_order() {
        let specs = [
            spec("data", DType::F32, &[-1, 3]),
            spec("mask", DType::Bool, &[2]),
        ];
        let inputs = [
            zeros("mask", DType::Bool, &[2]),
            zeros("data", DType::F32, &[5, 3]),
        ];
        assert_eq!(validate_inputs(&specs, &inputs), Ok(()));
        // A variable dim accepts 0 too.
        let inputs = [
            zeros("mask", DType::Bool, &[2]),
            zeros("data", DType::F32, &[0, 3]),
        ];
        assert_eq!(validate_inputs(&specs, &inputs), Ok(()));
    }

    #[test]
    fn presence_rules() {
        let specs = [spec("a", DType::F32, &[1]), spec("b", DType::F32, &[1])];
        let a = f32_input("a", &[1], &[0.0]);
        let b = f32_input("b", &[1], &[0.0]);
        let c = f32_input("c", &[1], &[0.0]);
        assert_eq!(
            validate_inputs(&specs, std::slice::from_ref(&a)),
            Err(SchemaError::Missing { input: "b".into() })
        );
        assert_eq!(
            validate_inputs(&specs, &[a.clone(), b.clone(), a.clone()]),
            Err(SchemaError::Duplicate { input: "a".into() })
        );
        let err = validate_inputs(&specs, &[a, b, c]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"input "c" is not an input of this model (inputs: "a", "b")"#
        );
    }

    #[test]
    fn dtype_rank_and_dims() {
        let specs = [spec("data", DType::F32, &[1, 3, 224, 224])];
        let err =
            validate_inputs(&specs, &[zeros("data", DType::F64, &[1, 3, 224, 224])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"input "data": dtype is float64, the model expects float32"#
        );
        let err =
            validate_inputs(&specs, &[zeros("data", DType::F32, &[3, 224, 224])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"input "data": rank is 3, the model expects 4 (shape [3, 224, 224])"#
        );
        let err =
            validate_inputs(&specs, &[zeros("data", DType::F32, &[1, 3, 225, 224])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"input "data": dim 2 is 225, the model expects 224"#
        );
    }

    #[test]
    fn element_limit() {
        let specs = [spec("x", DType::U8, &[-1, -1])];
        let limits = InputLimits { max_elements: 6 };
        assert_eq!(
            validate_inputs_with(&specs, &[zeros("x", DType::U8, &[2, 3])], &limits),
            Ok(())
        );
        let err =
            validate_inputs_with(&specs, &[zeros("x", DType::U8, &[7, 1])], &limits).unwrap_err();
        assert_eq!(
            err,
            SchemaError::TooManyElements {
                input: "x".into(),
                count: ElementCount(Some(7)),
                limit: 6
            }
        );
        // The default limit.
        let big = Tensor::from_bytes(
            DType::U8,
            vec![MAX_INPUT_ELEMENTS + 1],
            vec![0; MAX_INPUT_ELEMENTS + 1],
        )
        .unwrap();
        assert!(matches!(
            validate_inputs(&[spec("x", DType::U8, &[-1])], &[("x".into(), big)]),
            Err(SchemaError::TooManyElements { .. })
        ));
    }

    #[test]
    fn nonfinite_values() {
        for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
            let mut s = spec("x", dtype, &[3]);
            let t = Tensor::from_f32(vec![3], &[1.0, f32::NAN, 2.0]).unwrap();
            let t = match dtype {
                DType::F32 => t,
                DType::F64 => Tensor::from_bytes(
                    dtype,
                    vec![3],
                    [1.0f64, f64::NAN, 2.0]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                )
                .unwrap(),
                DType::F16 => Tensor::from_bytes(
                    dtype,
                    vec![3],
                    [1.0f32, f32::NAN, 2.0]
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                )
                .unwrap(),
                _ => Tensor::from_bytes(
                    dtype,
                    vec![3],
                    [1.0f32, f32::NAN, 2.0]
                        .iter()
                        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                        .collect(),
                )
                .unwrap(),
            };
            let inputs = [("x".to_string(), t)];
            assert!(
                matches!(
                    validate_inputs(&[s.clone()], &inputs),
                    Err(SchemaError::NonFinite { index: 1, .. })
                ),
                "{dtype}"
            );
            s.allow_nonfinite = true;
            assert_eq!(validate_inputs(&[s.clone()], &inputs), Ok(()), "{dtype}");
            // Allowed non-finite values are not range-checked; finite ones are.
            s.range = Some([0.0, 1.5]);
            assert!(matches!(
                validate_inputs(&[s], &inputs),
                Err(SchemaError::OutOfRange { index: 2, .. })
            ));
        }
        let specs = [spec("x", DType::F32, &[2])];
        for bad in [f32::INFINITY, f32::NEG_INFINITY] {
            let err = validate_inputs(&specs, &[f32_input("x", &[2], &[0.0, bad])]).unwrap_err();
            assert!(matches!(err, SchemaError::NonFinite { index: 1, .. }));
        }
    }

    #[test]
    fn ranges_are_inclusive() {
        let mut s = spec("x", DType::F32, &[3]);
        s.range = Some([-1.0, 1.0]);
        let specs = [s];
        assert_eq!(
            validate_inputs(&specs, &[f32_input("x", &[3], &[-1.0, 0.0, 1.0])]),
            Ok(())
        );
        let err =
            validate_inputs(&specs, &[f32_input("x", &[3], &[-1.0, 1.0001, 0.0])]).unwrap_err();
        assert!(
            matches!(err, SchemaError::OutOfRange { index: 1, .. }),
            "{err}"
        );
        assert!(err
            .to_string()
            .starts_with(r#"input "x": element 1 is 1.000"#));
    }

    #[test]
    fn integer_ranges_are_exact() {
        let mut s = spec("ids", DType::I64, &[-1]);
        s.range = Some([0.0, 9_007_199_254_740_992.0]); // 2^53
        let t = |v: i64| {
            (
                "ids".to_string(),
                Tensor::from_bytes(DType::I64, vec![1], v.to_le_bytes().to_vec()).unwrap(),
            )
        };
        let specs = [s];
        assert_eq!(validate_inputs(&specs, &[t(1 << 53)]), Ok(()));
        // 2^53 + 1 rounds to 2^53 as f64; the check must still refuse it.
        assert!(validate_inputs(&specs, &[t((1 << 53) + 1)]).is_err());
        assert!(validate_inputs(&specs, &[t(-1)]).is_err());

        let mut s = spec("ids", DType::I64, &[-1]);
        s.range = Some([-1e300, 1e300]);
        let extremes = [i64::MIN, i64::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let extremes = Tensor::from_bytes(DType::I64, vec![2], extremes).unwrap();
        assert_eq!(validate_inputs(&[s], &[("ids".into(), extremes)]), Ok(()));

        let mut s = spec("b", DType::U8, &[2]);
        s.range = Some([0.5, 255.0]);
        let t = Tensor::from_bytes(DType::U8, vec![2], vec![1, 0]).unwrap();
        let err = validate_inputs(&[s], &[("b".into(), t)]).unwrap_err();
        assert!(matches!(err, SchemaError::OutOfRange { index: 1, value, .. } if value == 0.0));

        let mut s = spec("c", DType::I8, &[1]);
        s.range = Some([-128.0, -1.0]);
        let t = Tensor::from_bytes(DType::I8, vec![1], vec![0x80]).unwrap();
        assert_eq!(validate_inputs(&[s], &[("c".into(), t)]), Ok(()));

        let mut s = spec("d", DType::I32, &[1]);
        s.range = Some([0.0, 10.0]);
        let t = Tensor::from_bytes(DType::I32, vec![1], 11i32.to_le_bytes().to_vec()).unwrap();
        assert!(validate_inputs(&[s], &[("d".into(), t)]).is_err());
    }

    #[test]
    fn int_within_bounds() {
        assert!(int_within(i64::MAX, 1e19, false));
        assert!(!int_within(i64::MAX, 1e19, true));
        assert!(int_within(i64::MIN, -1e19, true));
        assert!(!int_within(i64::MIN, -1e19, false));
        assert!(int_within(3, 2.5, true));
        assert!(!int_within(2, 2.5, true));
        assert!(int_within(2, 2.5, false));
        assert!(int_within(-3, -2.5, false));
    }

    #[test]
    fn bools_must_be_zero_or_one() {
        let specs = [spec("m", DType::Bool, &[3])];
        let t = Tensor::from_bytes(DType::Bool, vec![3], vec![0, 1, 2]).unwrap();
        assert_eq!(
            validate_inputs(&specs, &[("m".into(), t)]),
            Err(SchemaError::InvalidBool {
                input: "m".into(),
                index: 2,
                value: 2
            })
        );
    }

    #[test]
    fn spec_rules() {
        assert_eq!(spec("x", DType::F32, &[-1, 0, 3]).validate_spec(), Ok(()));
        assert!(matches!(
            spec("x", DType::F32, &[1, -2]).validate_spec(),
            Err(SchemaError::SpecDim {
                index: 1,
                value: -2,
                ..
            })
        ));
        assert!(matches!(
            spec("x", DType::F32, &[1; MAX_RANK + 1]).validate_spec(),
            Err(SchemaError::SpecRank { rank: 33, .. })
        ));
        assert_eq!(
            spec("x", DType::F32, &[1; MAX_RANK]).validate_spec(),
            Ok(())
        );
        assert!(matches!(
            spec("", DType::F32, &[1]).validate_spec(),
            Err(SchemaError::SpecName { .. })
        ));
        assert!(matches!(
            spec("a\nb", DType::F32, &[1]).validate_spec(),
            Err(SchemaError::SpecName { .. })
        ));
        assert!(matches!(
            spec(&"n".repeat(MAX_NAME_LEN + 1), DType::F32, &[1]).validate_spec(),
            Err(SchemaError::SpecName { .. })
        ));
        for range in [
            [1.0, 0.0],
            [f64::NAN, 1.0],
            [0.0, f64::INFINITY],
            [f64::NEG_INFINITY, 0.0],
        ] {
            let mut s = spec("x", DType::F32, &[1]);
            s.range = Some(range);
            assert!(
                matches!(s.validate_spec(), Err(SchemaError::SpecRange { .. })),
                "{range:?}"
            );
        }
        let mut s = spec("x", DType::F32, &[1]);
        s.range = Some([2.0, 2.0]);
        assert_eq!(s.validate_spec(), Ok(()));
        let mut s = spec("x", DType::I32, &[1]);
        s.allow_nonfinite = true;
        assert!(matches!(
            s.validate_spec(),
            Err(SchemaError::SpecNonFinite { .. })
        ));

        let out = OutputSpec {
            name: "prob".into(),
            dtype: DType::F32,
            shape: vec![-1, 1000],
        };
        assert_eq!(out.validate_spec(), Ok(()));
        let bad = OutputSpec {
            shape: vec![-3],
            ..out
        };
        assert!(matches!(
            bad.validate_spec(),
            Err(SchemaError::SpecDim { kind: "output", .. })
        ));
    }

    #[test]
    fn json_form() {
        let s: InputSpec = serde_json::from_str(
            r#"{"name":"data","dtype":"float32","shape":[-1,3,224,224],"range":[0,1]}"#,
        )
        .unwrap();
        assert_eq!(s.dtype, DType::F32);
        assert_eq!(s.range, Some([0.0, 1.0]));
        assert!(!s.allow_nonfinite);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"name":"data","dtype":"float32","shape":[-1,3,224,224],"range":[0.0,1.0],"allow_nonfinite":false}"#
        );
        let short: InputSpec =
            serde_json::from_str(r#"{"name":"d","dtype":"bf16","shape":[]}"#).unwrap();
        assert_eq!(short.dtype, DType::BF16);
        assert!(serde_json::from_str::<InputSpec>(
            r#"{"name":"d","dtype":"f32","shape":[],"extra":1}"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<InputSpec>(r#"{"name":"d","dtype":"int16","shape":[]}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<OutputSpec>(
            r#"{"name":"o","dtype":"f32","shape":[],"range":[0,1]}"#
        )
        .is_err());
    }
}
