//! Indexing: rows of a table by id.

use serde::{Deserialize, Serialize};

use super::{expect_shape, input, positive, OpDef, Shape, R};

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
