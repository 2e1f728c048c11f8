//! Indexing: rows of a table by id, and MXNet's take, pick,
//! gather_nd and one_hot (indices are float tensors, truncated toward zero as MXNet casts
//! them).

use serde::{Deserialize, Serialize};

use ward_core::DType;

use super::{
    data_dtype, dim, expect_shape, input, positive, product, resolve_axis, OpDef, Shape, R,
};
use crate::limits::MAX_ONE_HOT_DEPTH;

/// Inputs: ids (any float or int dtype), weight (input_dim, output_dim). Ids are
/// truncated toward zero and clipped to [0, input_dim − 1], as MXNet does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embedding {
    pub input_dim: usize,
    pub output_dim: usize,
}

impl OpDef for Embedding {
    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn validate(&self) -> R<()> {
        positive(
            "input_dim and output_dim",
            &[self.input_dim, self.output_dim],
        )
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "ids")?;
        expect_shape(
            "weight",
            input(ins, 1, "weight")?,
            &[self.input_dim, self.output_dim],
        )?;
        let mut out = x.to_vec();
        out.push(self.output_dim);
        Ok(vec![out])
    }
}

/// How `take` and `pick` read an index outside the axis (MXNet's `mode`; its `raise`
/// stops the forward pass on one, which a plan cannot, and the importer refuses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexMode {
    /// Truncated toward zero, then clamped to [0, size − 1].
    Clip,
    /// Truncated toward zero, then taken modulo the size (−1 is the last).
    Wrap,
}

/// MXNet `take`: inputs a, indices (float, truncated toward zero as MXNet casts them).
/// The output is `a.shape[..axis] + indices.shape + a.shape[axis + 1..]`: the slices of
/// `a` along `axis` that the indices pick, read by `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Take {
    pub axis: i64,
    pub mode: IndexMode,
}

/// MXNet `pick`: inputs data, index; one element of `data` along `axis` per position of
/// the other axes, the index (data's shape without the axis, or with it at 1) read by
/// `mode`. The axis is dropped, or kept at 1 with `keepdims`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pick {
    pub axis: i64,
    pub keepdims: bool,
    pub mode: IndexMode,
}

/// MXNet `gather_nd`: inputs data, indices of shape (M, …) with M at most data's rank;
/// column `(…)` of the indices addresses the first M axes of `data`. The output is
/// `indices.shape[1..] + data.shape[M..]`. An index may be negative down to −size (from
/// the end); one outside [−size, size − 1] fails MXNet's forward pass and is clamped here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatherNd {}

/// MXNet `one_hot`: `indices.shape + (depth,)`, `on_value` where the last index equals
/// the index (truncated toward zero), `off_value` elsewhere (also for an index outside
/// [0, depth), NaN or infinite).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneHot {
    pub depth: usize,
    pub on_value: f64,
    pub off_value: f64,
}

impl Pick {
    /// The output shape for data of shape `x` (MXNet 1.9.1 gives a 1-D data's pick
    /// without keepdims the shape (1)).
    pub fn output_shape(&self, x: &[usize]) -> R<Shape> {
        let a = resolve_axis(self.axis, x.len())?;
        let mut out = x.to_vec();
        if self.keepdims {
            if let Some(d) = out.get_mut(a) {
                *d = 1;
            }
        } else {
            out.remove(a);
            if out.is_empty() {
                out.push(1);
            }
        }
        Ok(out)
    }
}

impl OpDef for Take {
    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "a")?;
        let idx = input(ins, 1, "indices")?;
        let a = resolve_axis(self.axis, x.len())?;
        if dim(x, a, "a")? == 0 {
            return Err(format!(
                "axis {a} of a {x:?} is empty: no index can read it"
            ));
        }
        let mut out = x.get(..a).unwrap_or_default().to_vec();
        out.extend_from_slice(idx);
        out.extend_from_slice(x.get(a + 1..).unwrap_or_default());
        product(&out)?;
        Ok(vec![out])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // The indices may have any type.
        data_dtype(ins, 1)
    }
}

impl OpDef for Pick {
    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let idx = input(ins, 1, "index")?;
        let a = resolve_axis(self.axis, x.len())?;
        if dim(x, a, "data")? == 0 {
            return Err(format!(
                "axis {a} of data {x:?} is empty: no index can read it"
            ));
        }
        let kept = Pick {
            keepdims: true,
            ..*self
        }
        .output_shape(x)?;
        let dropped = Pick {
            keepdims: false,
            ..*self
        }
        .output_shape(x)?;
        if idx != kept.as_slice() && idx != dropped.as_slice() {
            return Err(format!(
                "index has shape {idx:?}; for data {x:?} and axis {} it must be {dropped:?} or {kept:?}",
                self.axis
            ));
        }
        Ok(vec![self.output_shape(x)?])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // The indices may have any type.
        data_dtype(ins, 1)
    }
}

impl OpDef for GatherNd {
    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let idx = input(ins, 1, "indices")?;
        let (&m, rest) = match idx.split_first() {
            Some(split) if idx.len() >= 2 => split,
            _ => return Err(format!("indices {idx:?} must have at least 2 axes (M, …)")),
        };
        if m == 0 || m > x.len() {
            return Err(format!(
                "indices {idx:?} address {m} axes of data {x:?}: 1 to its rank"
            ));
        }
        if x.get(..m).unwrap_or_default().contains(&0) {
            return Err(format!("data {x:?} has an empty axis among the addressed"));
        }
        let mut out = rest.to_vec();
        out.extend_from_slice(x.get(m..).unwrap_or_default());
        product(&out)?;
        Ok(vec![out])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // The indices may have any type.
        data_dtype(ins, 1)
    }
}

impl OpDef for OneHot {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.depth == 0 || self.depth > MAX_ONE_HOT_DEPTH {
            return Err(format!(
                "depth {} is outside 1 to {MAX_ONE_HOT_DEPTH}",
                self.depth
            ));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let mut out = input(ins, 0, "indices")?.to_vec();
        out.push(self.depth);
        product(&out)?;
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn infer(op: &dyn OpDef, ins: &[&[usize]]) -> R<Shape> {
        let ins: Vec<Option<&[usize]>> = ins.iter().map(|s| Some(*s)).collect();
        op.infer(&ins).map(|mut v| v.remove(0))
    }

    #[test]
    fn take_pick_gather_nd_and_one_hot_shapes() {
        let take = Take {
            axis: -2,
            mode: IndexMode::Wrap,
        };
        assert_eq!(
            infer(&take, &[&[2, 3, 4], &[5, 1]]).unwrap(),
            vec![2, 5, 1, 4]
        );
        assert!(infer(&take, &[&[4], &[5]]).is_err());
        assert!(infer(&take, &[&[2, 0, 4], &[5]]).is_err());
        assert!(infer(&take, &[&[2, 3], &[1 << 40, 1 << 40]]).is_err());

        let pick = Pick {
            axis: 1,
            keepdims: false,
            mode: IndexMode::Clip,
        };
        assert_eq!(infer(&pick, &[&[2, 3, 4], &[2, 4]]).unwrap(), vec![2, 4]);
        assert_eq!(infer(&pick, &[&[2, 3, 4], &[2, 1, 4]]).unwrap(), vec![2, 4]);
        assert!(infer(&pick, &[&[2, 3, 4], &[2, 3]]).is_err());
        let kept = Pick {
            keepdims: true,
            ..pick
        };
        assert_eq!(infer(&kept, &[&[2, 3, 4], &[2, 4]]).unwrap(), vec![2, 1, 4]);
        let last = Pick { axis: 0, ..pick };
        assert_eq!(infer(&last, &[&[5], &[1]]).unwrap(), vec![1]);

        let g = GatherNd {};
        assert_eq!(infer(&g, &[&[2, 3, 4], &[2, 5]]).unwrap(), vec![5, 4]);
        assert_eq!(infer(&g, &[&[2, 3], &[2, 1]]).unwrap(), vec![1]);
        assert!(infer(&g, &[&[2, 3], &[3, 1]]).is_err());
        assert!(infer(&g, &[&[2, 3], &[2]]).is_err());

        let one = OneHot {
            depth: 4,
            on_value: 1.0,
            off_value: 0.0,
        };
        assert_eq!(infer(&one, &[&[2, 3]]).unwrap(), vec![2, 3, 4]);
        assert!(OneHot { depth: 0, ..one }.validate().is_err());
        assert!(OneHot {
            depth: MAX_ONE_HOT_DEPTH + 1,
            ..one
        }
        .validate()
        .is_err());
        let op: crate::ops::Op = take.into();
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(json, r#"{"type":"take","axis":-2,"mode":"wrap"}"#);
        assert_eq!(serde_json::from_str::<crate::ops::Op>(&json).unwrap(), op);
    }
}
