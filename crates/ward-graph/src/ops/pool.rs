//! Pooling: max, average and sum windows, or the whole spatial extent; adaptive average
//! pooling to a given output size.

use serde::{Deserialize, Serialize};

use super::{double, expect_rank, input, window_attrs, window_out, OpDef, Shape, R};
use crate::limits::MAX_RESIZE_DIM;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Max,
    Avg,
    Sum,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub pad: Vec<usize>,
    /// Output size rounds up (MXNet `pooling_convention=full`).
    pub ceil: bool,
    /// The window is the whole spatial extent.
    pub global: bool,
    /// Averages divide by the window clipped to the padded extent, not the input.
    pub count_include_pad: bool,
}

impl OpDef for Pool {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.global {
            Ok(())
        } else {
            window_attrs(&self.kernel, &self.stride, &self.pad, None)
        }
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        if x.len() < 3 {
            return Err(format!("pooling needs a spatial input, got {x:?}"));
        }
        let mut out: Shape = x.iter().take(2).copied().collect();
        if self.global {
            out.resize(x.len(), 1);
            return Ok(vec![out]);
        }
        expect_rank("data", x, self.kernel.len() + 2)?;
        for ((&xi, &ki), (&pi, &si)) in x
            .iter()
            .skip(2)
            .zip(&self.kernel)
            .zip(self.pad.iter().zip(&self.stride))
        {
            out.push(window_out(xi, ki, double(pi)?, si, self.ceil)?);
        }
        Ok(vec![out])
    }
}

/// MXNet `_contrib_AdaptiveAvgPooling2D`: NCHW data averaged to `height` × `width`, the
/// window of output row `i` being input rows ⌊i·H/Ho⌋ to ⌈(i+1)·H/Ho⌉ (exclusive), the
/// same for columns. Windows overlap when Ho does not divide H; Ho may exceed H.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveAvgPool {
    pub height: usize,
    pub width: usize,
}

impl OpDef for AdaptiveAvgPool {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        for (what, v) in [("height", self.height), ("width", self.width)] {
            if v == 0 || v > MAX_RESIZE_DIM {
                return Err(format!("output {what} {v} must be 1 to {MAX_RESIZE_DIM}"));
            }
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        self.validate()?;
        let x = input(ins, 0, "data")?;
        expect_rank("data", x, 4)?;
        if x.iter().skip(2).any(|&d| d == 0) {
            return Err(format!("data {x:?} has an empty spatial axis"));
        }
        let mut out: Shape = x.iter().take(2).copied().collect();
        out.extend([self.height, self.width]);
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn full_convention_rounds_up_and_global_keeps_the_rank() {
        let mut p = Pool {
            kind: PoolKind::Avg,
            kernel: vec![3, 3],
            stride: vec![2, 2],
            pad: vec![0, 0],
            ceil: true,
            global: false,
            count_include_pad: true,
        };
        assert_eq!(
            p.infer(&[Some(&[1, 4, 8, 8])]).unwrap(),
            vec![vec![1, 4, 4, 4]]
        );
        p.ceil = false;
        assert_eq!(
            p.infer(&[Some(&[1, 4, 8, 8])]).unwrap(),
            vec![vec![1, 4, 3, 3]]
        );
        p.global = true;
        assert_eq!(
            p.infer(&[Some(&[1, 4, 8, 8])]).unwrap(),
            vec![vec![1, 4, 1, 1]]
        );
    }
}
