//! Open Inference Protocol v2 inference requests and responses, JSON and the binary tensor
//! extension (`Inference-Header-Content-Length`).
//!
//! Decoding is bounded at every step: the JSON part's length and nesting depth are checked
//! before it is parsed; counts of inputs, outputs and parameters, every rank and every
//! element count (checked multiplication) before any tensor is allocated; each binary
//! input's declared size must equal its shape's size exactly, and the binary part must be
//! used up exactly.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ward_core::{DType, Tensor};

use crate::error::ApiError;
use crate::limits::Limits;

/// The OIP name of a ward dtype.
pub fn datatype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "FP32",
        DType::F64 => "FP64",
        DType::F16 => "FP16",
        DType::BF16 => "BF16",
        DType::U8 => "UINT8",
        DType::I8 => "INT8",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::Bool => "BOOL",
    }
}

fn parse_datatype(name: &str) -> Option<DType> {
    DType::ALL.into_iter().find(|&d| datatype_name(d) == name)
}

/// A request parameter value: string, number or bool, nothing nested.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
}

type Parameters = BTreeMap<String, ParamValue>;

/// Tensor data in JSON: its values in the order they were read, and what its nesting and
/// its values looked like, checked against the input's shape and datatype once both are
/// known (`shape` may come after `data` in the object). Only O(depth) is kept of the
/// nesting, so the check costs nothing per value.
#[derive(Debug, Default, PartialEq)]
pub struct JsonData {
    values: Vec<f64>,
    nesting: Nesting,
}

/// The arrays found at one depth of the data (0: the `data` array itself).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Level {
    /// Length of the first array that ended at this depth.
    first: usize,
    /// Length of the first array at this depth whose length differed, if any.
    other: Option<usize>,
}

#[derive(Debug, Default, PartialEq)]
struct Nesting {
    /// One entry per depth down to the deepest array found (each depth above an array
    /// holds one, so every entry is set once the data is read).
    levels: Vec<Option<Level>>,
    /// Depth of the first value (0: `data` is a bare value), and another depth a value
    /// was found at, if any.
    value_depth: Option<usize>,
    other_value_depth: Option<usize>,
    bools: bool,
    integers: bool,
    /// Numbers written with a fraction or an exponent (`1.5`, `1.0`, `1e3`).
    floats: bool,
}

impl Nesting {
    fn array(&mut self, depth: usize, len: usize) {
        // Arrays end inner first: a deeper level is found before the ones above it, which
        // every array below them fills in once they end.
        if self.levels.len() <= depth {
            self.levels.resize(depth + 1, None);
        }
        if let Some(slot) = self.levels.get_mut(depth) {
            match slot {
                None => {
                    *slot = Some(Level {
                        first: len,
                        other: None,
                    })
                }
                Some(level) => {
                    if level.first != len && level.other.is_none() {
                        level.other = Some(len);
                    }
                }
            }
        }
    }

    fn value(&mut self, depth: usize) {
        match self.value_depth {
            None => self.value_depth = Some(depth),
            Some(d) if d != depth && self.other_value_depth.is_none() => {
                self.other_value_depth = Some(depth)
            }
            Some(_) => {}
        }
    }
}

impl JsonData {
    /// The values, as read (booleans as 1 and 0).
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Checks the data against `shape` and `dtype`: nested exactly like the shape (each
    /// array at depth d has `shape[d]` entries, every value at depth rank) or one flat array
    /// of all the elements; JSON booleans for BOOL and only for BOOL, JSON integers (no
    /// fraction, no exponent: `1.0` is refused, as Triton refuses it) for integer types,
    /// numbers for float types.
    pub fn check(&self, shape: &[u64], dtype: DType) -> Result<(), String> {
        let n = &self.nesting;
        let name = datatype_name(dtype);
        match dtype {
            DType::Bool if n.integers || n.floats => {
                return Err(format!("data holds numbers; {name} takes true and false"))
            }
            DType::Bool => {}
            _ if n.bools => {
                return Err(format!("data holds true or false; {name} takes numbers"))
            }
            DType::U8 | DType::I8 | DType::I32 | DType::I64 if n.floats => {
                return Err(format!(
                    "data holds a number written with a fraction or an exponent (such as 1.5 or 1.0); {name} takes integers (write 1)"
                ))
            }
            _ => {}
        }
        let elements = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let count = self.values.len() as u64;
        let flat = n.levels.len() == 1
            && n.other_value_depth.is_none()
            && matches!(n.value_depth, None | Some(1));
        if flat {
            if Some(count) != elements {
                return Err(format!(
                    "data has {count} elements, shape {shape:?} needs {}",
                    elements.map_or_else(|| "more".to_string(), |e| e.to_string())
                ));
            }
            return Ok(());
        }
        let rank = shape.len();
        let or_flat = "nest it exactly like the shape, or send one flat array";
        if let (Some(a), Some(b)) = (n.value_depth, n.other_value_depth) {
            return Err(format!(
                "data holds values at depth {a} and at depth {b}; shape {shape:?} needs every value at depth {rank} ({or_flat})"
            ));
        }
        if n.levels.len() > rank {
            return Err(format!(
                "data is nested {} deep, shape {shape:?} has rank {rank} ({or_flat})",
                n.levels.len()
            ));
        }
        for (d, (level, &want)) in n.levels.iter().zip(shape).enumerate() {
            let Some(level) = level else { continue };
            if let Some(other) = level.other {
                let path: String = n
                    .levels
                    .iter()
                    .take(d + 1)
                    .flatten()
                    .map(|l| format!("[{}]", l.first))
                    .collect();
                return Err(format!(
                    "data is nested as {path} then [{other}] at depth {d}; shape {shape:?} needs {want} at depth {d}"
                ));
            }
            if level.first as u64 != want {
                return Err(format!(
                    "data has arrays of {} at depth {d}; shape {shape:?} needs {want} at depth {d} ({or_flat})",
                    level.first
                ));
            }
        }
        if let Some(d) = n.value_depth {
            if d != rank {
                return Err(format!(
                    "data holds its values at depth {d}; shape {shape:?} needs them at depth {rank} ({or_flat})"
                ));
            }
        }
        // Exact nesting implies the count; checked all the same.
        if Some(count) != elements {
            return Err(format!(
                "data has {count} elements, shape {shape:?} needs {}",
                elements.map_or_else(|| "more".to_string(), |e| e.to_string())
            ));
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for JsonData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Read<'a> {
            data: &'a mut JsonData,
            depth: usize,
        }

        impl<'de> de::DeserializeSeed<'de> for Read<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(self)
            }
        }

        impl<'de> Visitor<'de> for Read<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("numbers or bools, flat or nested in arrays")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
                self.data.nesting.bools = true;
                self.data.nesting.value(self.depth);
                self.data.values.push(if v { 1.0 } else { 0.0 });
                Ok(())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
                self.data.nesting.floats = true;
                self.data.nesting.value(self.depth);
                self.data.values.push(v);
                Ok(())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
                if v.unsigned_abs() > 1 << 53 {
                    return Err(E::custom(
                        "an integer beyond 2^53 cannot be sent exactly as JSON; use binary data",
                    ));
                }
                self.data.nesting.integers = true;
                self.data.nesting.value(self.depth);
                self.data.values.push(v as f64);
                Ok(())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
                if v > 1 << 53 {
                    return Err(E::custom(
                        "an integer beyond 2^53 cannot be sent exactly as JSON; use binary data",
                    ));
                }
                self.data.nesting.integers = true;
                self.data.nesting.value(self.depth);
                self.data.values.push(v as f64);
                Ok(())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let mut len = 0;
                while seq
                    .next_element_seed(Read {
                        data: &mut *self.data,
                        depth: self.depth + 1,
                    })?
                    .is_some()
                {
                    len += 1;
                }
                self.data.nesting.array(self.depth, len);
                Ok(())
            }
        }

        let mut out = JsonData::default();
        d.deserialize_any(Read {
            data: &mut out,
            depth: 0,
        })?;
        Ok(out)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<u64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Parameters,
    pub data: Option<JsonData>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Parameters,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Parameters,
    pub inputs: Vec<RequestInput>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// A decoded request: named tensors, and how each output should come back.
#[derive(Debug)]
pub struct DecodedRequest {
    pub id: Option<String>,
    pub inputs: Vec<(String, Tensor)>,
    /// `None`: every output, in model order.
    pub outputs: Option<Vec<(String, bool)>>,
    pub binary_output_default: bool,
}

fn param_bool(params: &Parameters, key: &str) -> Result<Option<bool>, ApiError> {
    match params.get(key) {
        None => Ok(None),
        Some(ParamValue::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad_request(
            "malformed-request",
            format!("parameter {key:?} must be a bool"),
        )),
    }
}

fn param_size(params: &Parameters, key: &str) -> Result<Option<u64>, ApiError> {
    match params.get(key) {
        None => Ok(None),
        Some(ParamValue::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "malformed-request",
                format!("parameter {key:?} must be a non-negative integer"),
            )
        }),
        Some(_) => Err(ApiError::bad_request(
            "malformed-request",
            format!("parameter {key:?} must be a non-negative integer"),
        )),
    }
}

fn malformed(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("malformed-request", message)
}

/// Splits a body into its JSON part and binary part.
pub fn split_body(
    body: &[u8],
    header_length: Option<&str>,
    limits: &Limits,
) -> Result<(usize, bool), ApiError> {
    let json_len = match header_length {
        None => body.len(),
        Some(text) => {
            let n: usize = text.trim().parse().map_err(|_| {
                malformed("Inference-Header-Content-Length must be a decimal byte count")
            })?;
            if n > body.len() {
                return Err(malformed(format!(
                    "Inference-Header-Content-Length is {n}, but the body has only {} bytes",
                    body.len()
                )));
            }
            n
        }
    };
    if json_len as u64 > limits.max_json_bytes {
        return Err(ApiError::too_large(
            "json-too-large",
            format!(
                "the JSON part is {json_len} bytes, over the limit of {}",
                limits.max_json_bytes
            ),
        ));
    }
    Ok((json_len, header_length.is_some()))
}

/// Decodes an inference request from its body (already decompressed).
pub fn decode_request(
    body: &[u8],
    header_length: Option<&str>,
    limits: &Limits,
) -> Result<DecodedRequest, ApiError> {
    let (json_len, _) = split_body(body, header_length, limits)?;
    let (json, mut binary) = body.split_at(json_len);
    if ward_core::json::nesting_exceeds(json, limits.max_json_depth).is_some() {
        return Err(ApiError::bad_request(
            "json-too-deep",
            format!(
                "the JSON is nested deeper than {} levels",
                limits.max_json_depth
            ),
        ));
    }
    let request: InferRequest = serde_json::from_slice(json)
        .map_err(|e| malformed(format!("the request is not a valid inference request: {e}")))?;
    if request.inputs.len() > limits.max_inputs {
        return Err(malformed(format!(
            "{} inputs, over the limit of {}",
            request.inputs.len(),
            limits.max_inputs
        )));
    }
    if request.inputs.is_empty() {
        return Err(malformed("the request has no inputs"));
    }
    let outputs_len = request.outputs.as_ref().map_or(0, Vec::len);
    if outputs_len > limits.max_outputs {
        return Err(malformed(format!(
            "{outputs_len} requested outputs, over the limit of {}",
            limits.max_outputs
        )));
    }
    let parameter_count = request.parameters.len()
        + request
            .inputs
            .iter()
            .map(|i| i.parameters.len())
            .sum::<usize>()
        + request
            .outputs
            .iter()
            .flatten()
            .map(|o| o.parameters.len())
            .sum::<usize>();
    if parameter_count > limits.max_parameters {
        return Err(malformed(format!(
            "{parameter_count} parameters, over the limit of {}",
            limits.max_parameters
        )));
    }

    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let at = |what: String| malformed(format!("input {:?}: {what}", input.name));
        let dtype = parse_datatype(&input.datatype).ok_or_else(|| {
            at(format!(
                "datatype {:?} is not supported (ward takes FP32, FP64, FP16, BF16, UINT8, INT8, INT32, INT64, BOOL)",
                input.datatype
            ))
        })?;
        if input.shape.len() > limits.max_rank {
            return Err(at(format!(
                "rank {} is over the limit of {}",
                input.shape.len(),
                limits.max_rank
            )));
        }
        let elements = input
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= limits.max_elements)
            .ok_or_else(|| {
                at(format!(
                    "shape {:?} has more than {} elements",
                    input.shape, limits.max_elements
                ))
            })?;
        // Within max_elements, so both fit in usize and the byte count cannot overflow.
        let byte_len = elements * dtype.size() as u64;
        let shape: Vec<usize> = input.shape.iter().map(|&d| d as usize).collect();
        let bytes = match (
            param_size(&input.parameters, "binary_data_size")?,
            input.data,
        ) {
            (Some(_), Some(_)) => {
                return Err(at("has both data and binary_data_size".into()));
            }
            (None, None) => return Err(at("has neither data nor binary_data_size".into())),
            (Some(size), None) => {
                if size != byte_len {
                    return Err(at(format!(
                        "binary_data_size is {size}, but shape {:?} of {} needs {byte_len} bytes",
                        input.shape, input.datatype
                    )));
                }
                if (binary.len() as u64) < size {
                    return Err(at(format!(
                        "binary_data_size is {size}, but only {} binary bytes are left",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size as usize);
                binary = rest;
                mine.to_vec()
            }
            (None, Some(data)) => {
                data.check(&input.shape, dtype).map_err(&at)?;
                encode_json_values(data.values(), dtype).map_err(&at)?
            }
        };
        let tensor = Tensor::from_bytes(dtype, shape, bytes).map_err(|e| at(e.to_string()))?;
        inputs.push((input.name, tensor));
    }
    if !binary.is_empty() {
        return Err(malformed(format!(
            "{} binary bytes are left over after the last binary input",
            binary.len()
        )));
    }
    let binary_output_default =
        param_bool(&request.parameters, "binary_data_output")?.unwrap_or(false);
    let outputs = match request.outputs {
        None => None,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for o in list {
                let binary =
                    param_bool(&o.parameters, "binary_data")?.unwrap_or(binary_output_default);
                if out.iter().any(|(n, _): &(String, bool)| *n == o.name) {
                    return Err(malformed(format!("output {:?} is requested twice", o.name)));
                }
                out.push((o.name, binary));
            }
            Some(out)
        }
    };
    Ok(DecodedRequest {
        id: request.id,
        inputs,
        outputs,
        binary_output_default,
    })
}

/// Little-endian bytes of JSON numbers as `dtype`; integers must be whole and in range.
fn encode_json_values(values: &[f64], dtype: DType) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(values.len() * dtype.size());
    let int = |v: f64, min: f64, max: f64| -> Result<f64, String> {
        if v.fract() != 0.0 || v < min || v > max {
            Err(format!("{v} is not a valid {} value", datatype_name(dtype)))
        } else {
            Ok(v)
        }
    };
    for &v in values {
        match dtype {
            DType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            DType::F64 => out.extend_from_slice(&v.to_le_bytes()),
            DType::F16 => out.extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
            DType::BF16 => out.extend_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
            DType::U8 => out.push(int(v, 0.0, 255.0)? as u8),
            DType::I8 => out.push(int(v, -128.0, 127.0)? as i8 as u8),
            DType::I32 => out.extend_from_slice(
                &(int(v, f64::from(i32::MIN), f64::from(i32::MAX))? as i32).to_le_bytes(),
            ),
            DType::I64 => out.extend_from_slice(
                &(int(v, -(2f64.powi(53)), 2f64.powi(53))? as i64).to_le_bytes(),
            ),
            DType::Bool => out.push(int(v, 0.0, 1.0)? as u8),
        }
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
struct ResponseOutput {
    name: String,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<OutputData>,
}

/// Output values in JSON; float32 values are written in their shortest float32 form
/// (`0.067`, not the float64 widening `0.06700000166893005`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum OutputData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

#[derive(Debug, Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<ResponseOutput>,
}

/// An encoded response body and, when binary data follows the JSON, the JSON's length.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub json_len: Option<usize>,
}

fn json_values(tensor: &Tensor) -> OutputData {
    match tensor.dtype() {
        DType::F32 => OutputData::F32(tensor.to_f32_vec()),
        DType::I64 => OutputData::I64(
            tensor
                .bytes()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        _ => OutputData::F64(tensor.to_f64_vec()),
    }
}

/// Encodes the outputs, each as JSON or binary.
pub fn encode_response(
    model: &str,
    version: &str,
    id: Option<&str>,
    outputs: Vec<(String, Tensor, bool)>,
) -> EncodedResponse {
    let mut binary = Vec::new();
    let mut encoded = Vec::with_capacity(outputs.len());
    for (name, tensor, as_binary) in outputs {
        let (parameters, data) = if as_binary {
            binary.extend_from_slice(tensor.bytes());
            (
                Some(serde_json::json!({ "binary_data_size": tensor.bytes().len() })),
                None,
            )
        } else {
            (None, Some(json_values(&tensor)))
        };
        encoded.push(ResponseOutput {
            name,
            datatype: datatype_name(tensor.dtype()),
            shape: tensor.shape().to_vec(),
            parameters,
            data,
        });
    }
    let response = InferResponse {
        model_name: model,
        model_version: version,
        id,
        outputs: encoded,
    };
    // Strings, numbers and arrays of them always serialise.
    let mut body = serde_json::to_vec(&response).unwrap_or_default();
    let json_len = body.len();
    if binary.is_empty() {
        EncodedResponse {
            body,
            json_len: None,
        }
    } else {
        body.extend_from_slice(&binary);
        EncodedResponse {
            body,
            json_len: Some(json_len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8], header: Option<&str>) -> Result<DecodedRequest, ApiError> {
        decode_request(body, header, &Limits::default())
    }

    #[test]
    fn json_and_binary_inputs_decode_to_the_same_tensor() {
        let json = br#"{"id":"7","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}]}"#;
        let a = decode(json, None).unwrap();
        assert_eq!(a.id.as_deref(), Some("7"));
        let head = br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}],"parameters":{"binary_data_output":true}}"#;
        let mut body = head.to_vec();
        for v in [1f32, 2.0, 3.0, 4.5] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let b = decode(&body, Some(&head.len().to_string())).unwrap();
        assert_eq!(a.inputs, b.inputs);
        assert!(b.binary_output_default && !a.binary_output_default);
    }

    #[test]
    fn every_size_mismatch_is_refused() {
        let cases: Vec<(Vec<u8>, Option<String>, &str)> = vec![
            (br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#.to_vec(), None, "needs 3"),
            (br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#.to_vec(), Some("whole".into()), "needs 8 bytes"),
            (br#"{"inputs":[{"name":"x","shape":[4294967296,4294967296],"datatype":"FP32","data":[]}]}"#.to_vec(), None, "more than"),
            (br#"{"inputs":[{"name":"x","shape":[1,1,1,1,1,1,1,1,1],"datatype":"FP32","data":[1]}]}"#.to_vec(), None, "rank 9"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT16","data":[1]}]}"#.to_vec(), None, "not supported"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]}"#.to_vec(), None, "not a valid INT8"),
            (br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"extra":1}"#.to_vec(), None, "unknown field"),
            (br#"{"inputs":[]}"#.to_vec(), None, "no inputs"),
        ];
        for (body, header, expected) in cases {
            // "whole": the JSON is the whole body, no binary part follows.
            let header = header.map(|h| {
                if h == "whole" {
                    body.len().to_string()
                } else {
                    h
                }
            });
            let err = decode(&body, header.as_deref()).unwrap_err();
            assert_eq!(err.status.as_u16(), 400, "{expected}");
            assert!(
                err.message.contains(expected),
                "{expected}: {}",
                err.message
            );
        }
        // Binary bytes left over, or missing.
        let head = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#;
        let mut body = head.to_vec();
        body.extend_from_slice(&[0; 5]);
        let err = decode(&body, Some(&head.len().to_string())).unwrap_err();
        assert!(err.message.contains("left over"), "{}", err.message);
        let err = decode(&body[..head.len() + 2], Some(&head.len().to_string())).unwrap_err();
        assert!(
            err.message.contains("only 2 binary bytes"),
            "{}",
            err.message
        );
        let err = decode(head, Some("99999")).unwrap_err();
        assert!(err.message.contains("only"), "{}", err.message);
    }

    /// Decodes one input `x` of `shape` and `datatype` with `data` (JSON text).
    fn one(shape: &str, datatype: &str, data: &str) -> Result<Tensor, ApiError> {
        let body = format!(
            r#"{{"inputs":[{{"name":"x","data":{data},"datatype":"{datatype}","shape":{shape}}}]}}"#
        );
        decode(body.as_bytes(), None).map(|mut r| r.inputs.remove(0).1)
    }

    fn refused(shape: &str, datatype: &str, data: &str, needle: &str) {
        let err = one(shape, datatype, data).unwrap_err();
        assert_eq!(err.status.as_u16(), 400, "{data}");
        assert_eq!(err.reason, "malformed-request", "{data}");
        assert!(err.message.starts_with("input \"x\": "), "{}", err.message);
        assert!(err.message.contains(needle), "{data}: {}", err.message);
    }

    #[test]
    fn data_must_be_nested_like_the_shape_or_flat() {
        // Exact nesting and one flat array give the same tensor; `shape` may come after
        // `data` in the object (it does in `one`).
        let nested = one("[2,3]", "FP32", "[[1,2,3],[4,5,6]]").unwrap();
        let flat = one("[2,3]", "FP32", "[1,2,3,4,5,6]").unwrap();
        assert_eq!(nested, flat);
        assert_eq!(nested.to_f32_vec(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // The attack: rows of 400 and 384 values (784 in all) for shape [1, 784].
        let rows = format!("[[{}],[{}]]", ["0"; 400].join(","), ["0"; 384].join(","));
        refused("[1,784]", "FP32", &rows, "arrays of 2 at depth 0");
        let rows = format!("[[{}],[{}]]", ["0"; 400].join(","), ["0"; 384].join(","));
        refused(
            "[2,400]",
            "FP32",
            &rows,
            "data is nested as [2][400] then [384] at depth 1; shape [2, 400] needs 400 at depth 1",
        );
        // Ragged inside: the same count of values, in rows of different lengths.
        refused("[2,3]", "FP32", "[[1,2],[3,4,5,6]]", "then [4] at depth 1");
        // Too deep, too shallow, values beside arrays.
        refused(
            "[2]",
            "FP32",
            "[[1],[2]]",
            "nested 2 deep, shape [2] has rank 1",
        );
        refused("[2,2]", "FP32", "[[[1,2]],[[3,4]]]", "nested 3 deep");
        refused(
            "[1,4,1]",
            "FP32",
            "[[1,2,3,4]]",
            "values at depth 2; shape [1, 4, 1] needs them at depth 3",
        );
        refused(
            "[2,2]",
            "FP32",
            "[[1,2],3]",
            "values at depth 2 and at depth 1",
        );
        refused(
            "[2,2]",
            "FP32",
            "[1,[2,3],4]",
            "values at depth 1 and at depth 2",
        );
        refused("[2,3]", "FP32", "[[1,2,3]]", "arrays of 1 at depth 0");
        // A flat array must hold every element.
        refused(
            "[2,3]",
            "FP32",
            "[1,2,3,4,5]",
            "data has 5 elements, shape [2, 3] needs 6",
        );
        // A bare value is a rank-0 tensor only.
        assert_eq!(one("[]", "FP32", "5").unwrap().to_f32_vec(), [5.0]);
        assert_eq!(one("[]", "FP32", "[5]").unwrap().to_f32_vec(), [5.0]);
        refused("[1]", "FP32", "5", "values at depth 0");
    }

    #[test]
    fn empty_dims_take_empty_arrays_only_where_the_shape_has_them() {
        for (shape, data) in [
            ("[0]", "[]"),
            ("[2,0]", "[[],[]]"),
            ("[2,0,3]", "[[],[]]"),
            ("[2,0,3]", "[]"),
            ("[0,784]", "[]"),
        ] {
            let t = one(shape, "FP32", data).unwrap_or_else(|e| panic!("{shape} {data}: {e:?}"));
            assert!(t.bytes().is_empty());
        }
        refused("[2,3]", "FP32", "[[],[]]", "arrays of 0 at depth 1");
        refused("[2,0,3]", "FP32", "[[[]],[[]]]", "arrays of 1 at depth 1");
        refused("[2,0]", "FP32", "[[],[1]]", "then [1] at depth 1");
        refused("[1,784]", "FP32", "[]", "data has 0 elements");
    }

    #[test]
    fn values_must_be_of_the_declared_datatype() {
        // Booleans only for BOOL, and BOOL only booleans.
        refused(
            "[2]",
            "FP32",
            "[true,1]",
            "data holds true or false; FP32 takes numbers",
        );
        refused("[1]", "FP64", "[false]", "FP64 takes numbers");
        refused("[1]", "INT32", "[true]", "INT32 takes numbers");
        refused(
            "[2]",
            "BOOL",
            "[true,1]",
            "data holds numbers; BOOL takes true and false",
        );
        refused("[1]", "BOOL", "[0.0]", "BOOL takes true and false");
        let b = one("[2]", "BOOL", "[true,false]").unwrap();
        assert_eq!(b.bytes(), [1, 0]);
        // Integer types take JSON integers only: no fraction, no exponent, not even 1.0.
        refused("[1]", "INT32", "[1.5]", "INT32 takes integers");
        refused("[1]", "INT64", "[1.0]", "such as 1.5 or 1.0");
        refused("[1]", "UINT8", "[1e2]", "UINT8 takes integers");
        let i = one("[2]", "INT32", "[1,-2]").unwrap();
        assert_eq!(
            i.bytes(),
            [1i32.to_le_bytes(), (-2i32).to_le_bytes()].concat()
        );
        // Float types take integers and floats alike.
        let f = one("[3]", "FP32", "[1,-2.5,3e1]").unwrap();
        assert_eq!(f.to_f32_vec(), [1.0, -2.5, 30.0]);
    }

    #[test]
    fn deep_json_is_refused_before_parsing() {
        let deep = format!(
            "{{\"inputs\":[{{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":{}1{}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let err = decode(deep.as_bytes(), None).unwrap_err();
        assert_eq!(err.reason, "json-too-deep");
        // Brackets inside strings do not count.
        let quoted = format!(
            r#"{{"inputs":[{{"name":"{}","shape":[1],"datatype":"FP32","data":[1]}}]}}"#,
            "[".repeat(100)
        );
        assert_eq!(decode(quoted.as_bytes(), None).unwrap().inputs.len(), 1);
    }

    #[test]
    fn outputs_are_encoded_json_or_binary() {
        let t = Tensor::from_f32(vec![1, 2], &[0.5, 0.25]).unwrap();
        let r = encode_response("m", "1", Some("x"), vec![("o".into(), t.clone(), false)]);
        assert!(r.json_len.is_none());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["outputs"][0]["data"], serde_json::json!([0.5, 0.25]));
        assert_eq!(v["id"], "x");
        let r = encode_response("m", "1", None, vec![("o".into(), t, true)]);
        let n = r.json_len.unwrap();
        let v: Value = serde_json::from_slice(&r.body[..n]).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&r.body[n..n + 4], &0.5f32.to_le_bytes());
    }
}
