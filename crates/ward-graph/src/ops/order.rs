//! Ordering: MXNet's `topk`, `sort` and `argsort`, one [`Topk`] op (MXNet itself runs
//! `sort` as `topk` with every element and the values, `argsort` with every element and
//! the indices).
//!
//! The order among equal elements (and NaN) is MXNet 1.9.1's on the CPU, which is not
//! stable: see [`crate::interp::order`].

use serde::{Deserialize, Serialize};

use ward_core::DType;

use super::{data_dtype, input, product, resolve_axis, OpDef, Shape, R};
use crate::limits::MAX_ORDER_INDEX_AXIS;

/// What a [`Topk`] returns (MXNet's `ret_typ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopkReturn {
    /// The k values, in order.
    Value,
    /// Their indices along the axis (of the flattened input without one), as floats.
    Indices,
    /// The input's shape: 1 where an element is among the k, 0 elsewhere.
    Mask,
    /// Two outputs: the values, then the indices.
    Both,
}

impl TopkReturn {
    /// MXNet's spelling of `ret_typ`.
    pub fn mxnet_name(self) -> &'static str {
        match self {
            TopkReturn::Value => "value",
            TopkReturn::Indices => "indices",
            TopkReturn::Mask => "mask",
            TopkReturn::Both => "both",
        }
    }

    /// Whether an output holds indices.
    pub fn gives_indices(self) -> bool {
        matches!(self, TopkReturn::Indices | TopkReturn::Both)
    }
}

/// The `k` largest (or, `ascend`, smallest) elements along `axis`, or of the whole tensor
/// read flat when `None`, in order; `k: None` is every element (MXNet's `k <= 0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topk {
    pub axis: Option<i64>,
    pub k: Option<usize>,
    pub ret: TopkReturn,
    pub ascend: bool,
}

/// Where a [`Topk`] orders: `outer` lanes of `n` elements `inner` apart (for `axis: None`
/// one lane of every element), `k` of each kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lanes {
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
    pub k: usize,
}

impl Topk {
    /// The lanes of an input of shape `x`, with `k` checked against their length: 1 to
    /// `n` (MXNet refuses an empty axis, having no k ≥ 1 to take), and for indices an axis
    /// no longer than float32 counts exactly.
    pub fn lanes(&self, x: &[usize]) -> R<Lanes> {
        let (outer, n, inner) = match self.axis {
            None => (1, product(x)?, 1),
            Some(axis) => {
                let a = resolve_axis(axis, x.len())?;
                (
                    product(x.get(..a).unwrap_or_default())?,
                    x.get(a).copied().unwrap_or(1),
                    product(x.get(a + 1..).unwrap_or_default())?,
                )
            }
        };
        let k = self.k.unwrap_or(n);
        if k == 0 || k > n {
            return Err(format!(
                "k {k} must be 1 to the {n} elements {}",
                match self.axis {
                    None => "of the input".to_string(),
                    Some(axis) => format!("along axis {axis}"),
                }
            ));
        }
        if self.ret.gives_indices() && n > MAX_ORDER_INDEX_AXIS {
            return Err(format!(
                "indices along {n} elements: float32 holds them exactly only up to {MAX_ORDER_INDEX_AXIS}"
            ));
        }
        Ok(Lanes { outer, n, inner, k })
    }

    /// The shape of the values or indices: the axis cut to k, or (k) without an axis.
    pub fn picked_shape(&self, x: &[usize], k: usize) -> R<Shape> {
        match self.axis {
            None => Ok(vec![k]),
            Some(axis) => {
                let a = resolve_axis(axis, x.len())?;
                let mut out = x.to_vec();
                if let Some(d) = out.get_mut(a) {
                    *d = k;
                }
                Ok(out)
            }
        }
    }
}

impl OpDef for Topk {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn num_outputs(&self) -> usize {
        if self.ret == TopkReturn::Both {
            2
        } else {
            1
        }
    }

    fn validate(&self) -> R<()> {
        if self.k == Some(0) {
            return Err("k 0 is written as none (every element)".into());
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let lanes = self.lanes(x)?;
        let picked = self.picked_shape(x, lanes.k)?;
        Ok(match self.ret {
            TopkReturn::Mask => vec![x.to_vec()],
            TopkReturn::Both => vec![picked.clone(), picked],
            TopkReturn::Value | TopkReturn::Indices => vec![picked],
        })
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        let data = data_dtype(ins, 1)?;
        let data = data.first().copied().unwrap_or(DType::F32);
        // Values and masks in the data's type; indices in float32 (the only `dtype` the
        // importer accepts for them).
        Ok(match self.ret {
            TopkReturn::Value | TopkReturn::Mask => vec![data],
            TopkReturn::Indices => vec![DType::F32],
            TopkReturn::Both => vec![data, DType::F32],
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn topk(axis: Option<i64>, k: Option<usize>, ret: TopkReturn) -> Topk {
        Topk {
            axis,
            k,
            ret,
            ascend: false,
        }
    }

    #[test]
    fn shapes_follow_mxnets_rules() {
        let x: &[usize] = &[2, 3, 4];
        let shapes = |t: Topk| t.infer(&[Some(x)]);
        assert_eq!(
            shapes(topk(Some(-1), Some(2), TopkReturn::Indices)).unwrap(),
            vec![vec![2, 3, 2]]
        );
        assert_eq!(
            shapes(topk(Some(1), None, TopkReturn::Both)).unwrap(),
            vec![vec![2, 3, 4], vec![2, 3, 4]]
        );
        assert_eq!(
            shapes(topk(None, Some(5), TopkReturn::Value)).unwrap(),
            vec![vec![5]]
        );
        assert_eq!(
            shapes(topk(None, Some(5), TopkReturn::Mask)).unwrap(),
            vec![vec![2, 3, 4]]
        );
        assert_eq!(
            topk(Some(0), Some(2), TopkReturn::Value).lanes(x).unwrap(),
            Lanes {
                outer: 1,
                n: 2,
                inner: 12,
                k: 2
            }
        );
        // k past the axis, an axis out of range, an empty axis.
        let err = shapes(topk(Some(0), Some(3), TopkReturn::Value)).unwrap_err();
        assert!(err.contains("k 3 must be 1 to the 2 elements"), "{err}");
        assert!(shapes(topk(Some(3), Some(1), TopkReturn::Value)).is_err());
        assert!(topk(Some(0), None, TopkReturn::Value)
            .infer(&[Some(&[0, 2])])
            .is_err());
        assert!(topk(None, Some(0), TopkReturn::Value).validate().is_err());
    }

    #[test]
    fn indices_need_an_axis_float32_counts_exactly() {
        let long: &[usize] = &[MAX_ORDER_INDEX_AXIS + 1];
        let err = topk(Some(0), Some(1), TopkReturn::Indices)
            .infer(&[Some(long)])
            .unwrap_err();
        assert!(err.contains("float32"), "{err}");
        assert!(topk(Some(0), Some(1), TopkReturn::Value)
            .infer(&[Some(long)])
            .is_ok());
    }
}
