//! Reductions over axes.

use serde::{Deserialize, Serialize};

use super::{input, resolve_axis, OpDef, Shape, R};
use crate::limits::MAX_RANK;

/// Mean over `axes` (all when `None`), or over all others when `exclude`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mean {
    pub axes: Option<Vec<i64>>,
    pub keepdims: bool,
    pub exclude: bool,
}

impl Mean {
    /// The axes reduced, sorted and resolved against `rank`.
    pub fn axes(&self, rank: usize) -> R<Vec<usize>> {
        let mut listed = match &self.axes {
            None => (0..rank).collect::<Vec<_>>(),
            Some(a) => a
                .iter()
                .map(|&x| resolve_axis(x, rank))
                .collect::<R<Vec<_>>>()?,
        };
        listed.sort_unstable();
        listed.dedup();
        if self.exclude && self.axes.is_some() {
            listed = (0..rank).filter(|a| !listed.contains(a)).collect();
        }
        Ok(listed)
    }
}

impl OpDef for Mean {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.axes.as_ref().is_some_and(|a| a.len() > MAX_RANK) {
            return Err("mean lists more axes than a tensor has".into());
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let axes = self.axes(x.len())?;
        let mut out = Vec::new();
        for (i, d) in x.iter().enumerate() {
            if axes.contains(&i) {
                if self.keepdims {
                    out.push(1);
                }
            } else {
                out.push(*d);
            }
        }
        // MXNet never gives a rank-0 result: every axis reduced is shape (1).
        if out.is_empty() {
            out.push(1);
        }
        Ok(vec![out])
    }
}
