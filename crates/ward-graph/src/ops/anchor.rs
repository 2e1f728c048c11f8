//! Anchors: MXNet 1.9.1's `_contrib_MultiBoxPrior` ([`MultiBoxPrior`]), the SSD prior
//! boxes, which depend only on the height and width of their input, never on its
//! values: the tract lowering computes them once per shape, as a constant
//! ([`crate::interp::anchor::multibox_prior`]).

use serde::{Deserialize, Serialize};

use super::{dim, input, product, OpDef, Shape, R};
use crate::limits::MAX_ANCHORS_PER_CELL;

/// MXNet `_contrib_MultiBoxPrior`: for each cell of the input's (H, W) plane (dims 2 and
/// 3), one box per size at ratio 1 and one per further ratio at the first size, as
/// `[xmin, ymin, xmax, ymax]` rows of a (1, H·W·anchors, 4) output, centred at
/// `(cell + offset) · step`; a step of 0 or less in either axis is `(1/H, 1/W)`;
/// `clip` clamps every coordinate to [0, 1]. Float32 arithmetic in MXNet's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiBoxPrior {
    pub sizes: Vec<f32>,
    pub ratios: Vec<f32>,
    pub clip: bool,
    /// (y, x).
    pub steps: [f32; 2],
    /// (y, x).
    pub offsets: [f32; 2],
}

impl MultiBoxPrior {
    /// Boxes per cell: every size, then every ratio but the first.
    pub fn anchors(&self) -> R<usize> {
        let n = (self.sizes.len() + self.ratios.len()).saturating_sub(1);
        if self.sizes.is_empty() || self.ratios.is_empty() || n > MAX_ANCHORS_PER_CELL {
            return Err(format!(
                "{} sizes and {} ratios: each must have 1 value or more, {MAX_ANCHORS_PER_CELL} anchors per cell at most",
                self.sizes.len(),
                self.ratios.len()
            ));
        }
        Ok(n)
    }
}

impl OpDef for MultiBoxPrior {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        self.anchors()?;
        let all = self
            .sizes
            .iter()
            .chain(&self.ratios)
            .chain(&self.steps)
            .chain(&self.offsets);
        if let Some(v) = all.clone().find(|v| !v.is_finite()) {
            return Err(format!("a size, ratio, step or offset is {v}"));
        }
        if let Some(o) = self.offsets.iter().find(|o| !(0.0..=1.0).contains(*o)) {
            return Err(format!("offset {o} must be 0 to 1 (MXNet's check)"));
        }
        if self.steps[0] * self.steps[1] < 0.0 {
            return Err(format!(
                "steps {:?} must both be given or both be left to -1 (MXNet's check)",
                self.steps
            ));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        self.validate()?;
        let x = input(ins, 0, "data")?;
        if x.len() < 4 {
            return Err(format!("data {x:?} must have 4 dims or more"));
        }
        let (h, w) = (dim(x, 2, "data")?, dim(x, 3, "data")?);
        if h == 0 || w == 0 {
            return Err(format!("data {x:?} has an empty plane (MXNet refuses it)"));
        }
        let boxes = product(&[h, w, self.anchors()?])?;
        Ok(vec![vec![1, boxes, 4]])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn prior(sizes: &[f32], ratios: &[f32]) -> MultiBoxPrior {
        MultiBoxPrior {
            sizes: sizes.to_vec(),
            ratios: ratios.to_vec(),
            clip: false,
            steps: [-1.0, -1.0],
            offsets: [0.5, 0.5],
        }
    }

    #[test]
    fn shapes_follow_mxnets_rules() {
        let p = prior(&[0.2, 0.3], &[1.0, 2.0, 0.5]);
        assert_eq!(
            p.infer(&[Some(&[2, 3, 4, 5])]).unwrap(),
            vec![vec![1, 80, 4]]
        );
        assert_eq!(
            p.infer(&[Some(&[2, 3, 4, 5, 6])]).unwrap(),
            vec![vec![1, 80, 4]]
        );
        assert!(p.infer(&[Some(&[2, 3, 4])]).is_err());
        assert!(p.infer(&[Some(&[2, 3, 0, 5])]).is_err());
        assert!(prior(&[], &[1.0]).validate().is_err());
        assert!(prior(&[1.0; 2000], &[1.0]).validate().is_err());
        let mut bad = prior(&[1.0], &[1.0]);
        bad.offsets = [1.5, 0.5];
        assert!(bad.validate().is_err());
        bad.offsets = [0.5, 0.5];
        bad.steps = [-1.0, 0.1];
        assert!(bad.validate().is_err());
    }
}
