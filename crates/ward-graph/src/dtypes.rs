//! Element types through a graph: MXNet's type inference, and what an integer result is.
//!
//! Ward computes every floating-point value in float32 (a float16 `Cast` rounds and the
//! next operator reads float32), so floats are one type here. Integer types are tracked:
//! MXNet computes an operator on int32 data in int32 (`broadcast_div` truncates, a scalar
//! operand is converted to the data's type first, `sqrt` truncates its result), and a
//! `Cast` to an integer type truncates. [`infer_dtypes`] follows each operator's rule
//! ([`crate::ops::OpDef::infer_dtypes`]); [`integer_result`] is the conversion every
//! backend applies to an integer-typed output.
//!
//! Integer values are carried in the backends' float type: exact up to 2^24 in float32
//! (the tract backend) and 2^53 in float64 (the reference interpreter). MXNet's models
//! use integers for indices, lengths and shapes, far below either.

use ward_core::DType;

use crate::ir::{Graph, Source};
use crate::GraphError;

/// The type ward computes a value of type `dtype` in: integer types are kept, every
/// float type (and bool, read as 0 and 1) is float32.
pub fn computed(dtype: DType) -> DType {
    match dtype {
        DType::I8 | DType::U8 | DType::I32 | DType::I64 => dtype,
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 | DType::Bool => DType::F32,
    }
}

/// Whether ward computes values of `dtype` as integers.
pub fn is_integer(dtype: DType) -> bool {
    matches!(dtype, DType::I8 | DType::U8 | DType::I32 | DType::I64)
}

/// The element type of every value of a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DTypes {
    pub inputs: Vec<DType>,
    pub params: Vec<DType>,
    /// Per node, per output.
    pub nodes: Vec<Vec<DType>>,
}

impl DTypes {
    /// The type of a value; float32 for a source the graph does not have (a graph that
    /// passed [`Graph::validate`] has every source it names).
    pub fn of(&self, source: Source) -> DType {
        let found = match source {
            Source::Input(i) => self.inputs.get(i),
            Source::Param(p) => self.params.get(p),
            Source::Node(n, k) => self.nodes.get(n).and_then(|outs| outs.get(k)),
        };
        found.copied().unwrap_or(DType::F32)
    }

    /// The types of node `index`'s outputs.
    pub fn node(&self, index: usize) -> &[DType] {
        self.nodes.get(index).map_or(&[], Vec::as_slice)
    }
}

/// Infers the element type of every value from the declared types of the inputs and
/// parameters. An operator given operands of types MXNet refuses together is an error
/// naming the node.
pub fn infer_dtypes(graph: &Graph) -> Result<DTypes, GraphError> {
    let mut types = DTypes {
        inputs: graph.inputs.iter().map(|i| computed(i.dtype)).collect(),
        params: graph.params.iter().map(|p| computed(p.dtype)).collect(),
        nodes: Vec::with_capacity(graph.nodes.len()),
    };
    for node in &graph.nodes {
        let ins: Vec<DType> = node.inputs.iter().map(|s| types.of(*s)).collect();
        let outs = node
            .op
            .def()
            .infer_dtypes(&ins)
            .map_err(|reason| node.error(reason))?;
        if outs.len() != node.op.num_outputs() {
            return Err(node.error(format!(
                "gave {} output types for {} outputs",
                outs.len(),
                node.op.num_outputs()
            )));
        }
        types.nodes.push(outs.into_iter().map(computed).collect());
    }
    Ok(types)
}

const TWO_31: f64 = 2_147_483_648.0;
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

/// The value MXNet 1.9.1 stores when a result `v` computed in floating point becomes an
/// integer of type `dtype` (a `Cast`, `sqrt` of int32 data, a truncating division):
/// truncated toward zero. Past the type's range, and for NaN, the conversion is undefined
/// in C++; MXNet's build gives what x86's conversion instruction gives, the type's
/// minimum (int32 and int64), and an 8-bit type keeps the low byte of the int32
/// conversion (300 → 44, −129 → 127 in int8). Ward gives the same. A float `dtype`
/// leaves `v` as it is.
pub fn integer_result(dtype: DType, v: f64) -> f64 {
    let int32 = |v: f64| {
        let t = v.trunc();
        if t > -TWO_31 - 1.0 && t < TWO_31 {
            t
        } else {
            -TWO_31
        }
    };
    match dtype {
        DType::I32 => int32(v),
        DType::I64 => {
            let t = v.trunc();
            if (-TWO_63..TWO_63).contains(&t) {
                t
            } else {
                -TWO_63
            }
        }
        DType::U8 => int32(v).rem_euclid(256.0),
        DType::I8 => {
            let low = int32(v).rem_euclid(256.0);
            if low >= 128.0 {
                low - 256.0
            } else {
                low
            }
        }
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// MXNet 1.9.1's `Cast` of [-2.7, -0.5, 0.5, 2.7, 3e9, -3e9, NaN, inf, 300, -129,
    /// 255.9, 256.5] to each integer type (tools/make_op_fixtures.py's `cast_int_*`
    /// cases pin the same through the whole import).
    #[test]
    fn integer_results_are_mxnets_conversions() {
        let xs = [
            -2.7,
            -0.5,
            0.5,
            2.7,
            3e9,
            -3e9,
            f64::NAN,
            f64::INFINITY,
            300.0,
            -129.0,
            255.9,
            256.5,
        ];
        let min32 = -TWO_31;
        let want: [(DType, [f64; 12]); 4] = [
            (
                DType::I32,
                [
                    -2.0, 0.0, 0.0, 2.0, min32, min32, min32, min32, 300.0, -129.0, 255.0, 256.0,
                ],
            ),
            (
                DType::I64,
                [
                    -2.0, 0.0, 0.0, 2.0, 3e9, -3e9, -TWO_63, -TWO_63, 300.0, -129.0, 255.0, 256.0,
                ],
            ),
            (
                DType::I8,
                [
                    -2.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 44.0, 127.0, -1.0, 0.0,
                ],
            ),
            (
                DType::U8,
                [
                    254.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 44.0, 127.0, 255.0, 0.0,
                ],
            ),
        ];
        for (dtype, want) in want {
            let got: Vec<f64> = xs.iter().map(|&x| integer_result(dtype, x)).collect();
            assert_eq!(got, want, "{dtype}");
        }
        assert!(integer_result(DType::F32, f64::NAN).is_nan());
        assert_eq!(integer_result(DType::F32, 2.5), 2.5);
    }

    #[test]
    fn floats_compute_in_float32_and_integers_are_kept() {
        assert_eq!(computed(DType::F16), DType::F32);
        assert_eq!(computed(DType::F64), DType::F32);
        assert_eq!(computed(DType::I64), DType::I64);
        assert!(is_integer(DType::U8));
        assert!(!is_integer(DType::Bool));
    }
}
