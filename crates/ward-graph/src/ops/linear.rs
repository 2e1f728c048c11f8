//! Dense (fully connected) layers.

use serde::{Deserialize, Serialize};

use super::{expect_shape, input, positive, product, OpDef, Shape, R};

/// y = x·Wᵀ + b. Inputs: data, weight (units, in), [bias (units)]. `flatten` folds all
/// axes after the first into one; otherwise the product applies to the last axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dense {
    pub units: usize,
    pub flatten: bool,
    pub bias: bool,
}

impl OpDef for Dense {
    fn arity(&self) -> (usize, usize) {
        let n = if self.bias { 3 } else { 2 };
        (n, n)
    }

    fn validate(&self) -> R<()> {
        positive("units", &[self.units])
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let Some((&last, init)) = x.split_last() else {
            return Err("data must have at least one dim".into());
        };
        let (mut out, inner) = if self.flatten {
            let (&first, rest) = x.split_first().ok_or("data must have at least one dim")?;
            (vec![first], product(rest)?)
        } else {
            (init.to_vec(), last)
        };
        expect_shape("weight", input(ins, 1, "weight")?, &[self.units, inner])?;
        if self.bias {
            expect_shape("bias", input(ins, 2, "bias")?, &[self.units])?;
        }
        out.push(self.units);
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn flatten_folds_all_but_the_first_axis() {
        let d = |flatten| Dense {
            units: 5,
            flatten,
            bias: false,
        };
        assert_eq!(
            d(true).infer(&[Some(&[2, 3, 4]), Some(&[5, 12])]).unwrap(),
            vec![vec![2, 5]]
        );
        assert_eq!(
            d(false).infer(&[Some(&[2, 3, 4]), Some(&[5, 4])]).unwrap(),
            vec![vec![2, 3, 5]]
        );
        assert!(d(true).infer(&[Some(&[2, 3, 4]), Some(&[5, 4])]).is_err());
    }
}
