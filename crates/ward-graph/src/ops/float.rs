//! A float attribute that may be infinite (a scalar, a clip bound, a pad or fill value),
//! in `graph.json`: JSON has no infinity, and serde_json would write `null`, which no
//! reader takes back. Finite values stay JSON numbers (so every graph written before
//! reads as it did); ±∞ are the strings `"inf"` and `"-inf"`, and NaN `"nan"` (which the
//! operators' validation then refuses).
//!
//! Use with `#[serde(with = "crate::ops::float")]` on an `f64` field.

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else if v.is_nan() {
        s.serialize_str("nan")
    } else if *v > 0.0 {
        s.serialize_str("inf")
    } else {
        s.serialize_str("-inf")
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(FloatVisitor)
}

struct FloatVisitor;

impl Visitor<'_> for FloatVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"a number, "inf", "-inf" or "nan""#)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v {
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            "nan" => Ok(f64::NAN),
            other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::ops::elementwise::{Clip, Scalar, ScalarKind};
    use crate::ops::shape::{Fill, FillDim, Pad, PadMode};
    use crate::ops::Op;

    fn round_trip(op: Op) -> Op {
        let json = serde_json::to_string(&op).unwrap();
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn infinite_attributes_survive_graph_json() {
        let ops: Vec<Op> = vec![
            Scalar {
                kind: ScalarKind::Lesser,
                value: f64::NEG_INFINITY,
            }
            .into(),
            Clip {
                min: f64::NEG_INFINITY,
                max: f64::INFINITY,
            }
            .into(),
            Pad {
                mode: PadMode::Constant,
                pads: vec![0, 0, 1, 1],
                value: f64::NEG_INFINITY,
            }
            .into(),
            Fill {
                value: f64::INFINITY,
                shape: vec![FillDim::Fixed(2)],
            }
            .into(),
            Scalar {
                kind: ScalarKind::Add,
                value: -2.5,
            }
            .into(),
        ];
        for op in ops {
            assert_eq!(round_trip(op.clone()), op);
        }
        // Finite values are plain numbers, as graphs written before read them.
        let json = serde_json::to_value(Op::from(Scalar {
            kind: ScalarKind::Mul,
            value: 3.0,
        }))
        .unwrap();
        assert_eq!(json["value"], 3.0);
        let op: Op =
            serde_json::from_str(r#"{"type": "scalar", "kind": "mul", "value": 2}"#).unwrap();
        assert_eq!(
            op,
            Scalar {
                kind: ScalarKind::Mul,
                value: 2.0
            }
            .into()
        );
        // Any other string, or null, is refused.
        for bad in [r#""infinity""#, "null", r#""1.5""#] {
            let text = format!(r#"{{"type": "scalar", "kind": "mul", "value": {bad}}}"#);
            assert!(serde_json::from_str::<Op>(&text).is_err(), "{bad}");
        }
    }
}
