//! Dense (fully connected) layers, batched matrix products and the interleaved
//! attention products of MXNet's Transformer operators.

use serde::{Deserialize, Serialize};

use super::{expect_rank, expect_shape, input, positive, product, OpDef, Shape, R};

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

/// MXNet `batch_dot`: a matrix product over the last two axes, batched over the others,
/// which must be equal (no broadcasting). lhs and rhs have the same rank, at least 3;
/// `transpose_a` / `transpose_b` swap the last two axes of lhs / rhs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchDot {
    pub transpose_a: bool,
    pub transpose_b: bool,
}

impl OpDef for BatchDot {
    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let a = input(ins, 0, "lhs")?;
        let b = input(ins, 1, "rhs")?;
        let n = a.len();
        if n < 3 || b.len() != n {
            return Err(format!(
                "lhs {a:?} and rhs {b:?} must have the same rank, at least 3"
            ));
        }
        let (batch_a, ma) = a.split_at(n - 2);
        let (batch_b, mb) = b.split_at(n - 2);
        if batch_a != batch_b {
            return Err(format!("the batch dims of lhs {a:?} and rhs {b:?} differ"));
        }
        let pair = |m: &[usize], t: bool| match *m {
            [r, c] => Ok(if t { (c, r) } else { (r, c) }),
            _ => Err(format!("{m:?} is not a matrix")),
        };
        let (rows, inner_a) = pair(ma, self.transpose_a)?;
        let (inner_b, cols) = pair(mb, self.transpose_b)?;
        if inner_a != inner_b {
            return Err(format!(
                "lhs {a:?} (transpose_a = {}) and rhs {b:?} (transpose_b = {}) do not multiply",
                self.transpose_a, self.transpose_b
            ));
        }
        let mut out = batch_a.to_vec();
        out.extend([rows, cols]);
        Ok(vec![out])
    }
}

/// Which of MXNet's four interleaved attention products (`_contrib_interleaved_matmul_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// `selfatt_qk`: queries_keys_values (L, B, heads·3·D) → (B·heads, L, L), Q·Kᵀ/√D.
    SelfattQk,
    /// `selfatt_valatt`: queries_keys_values, attention (B·heads, L, L) → (L, B, heads·D).
    SelfattValatt,
    /// `encdec_qk`: queries (Lq, B, heads·D), keys_values (Lk, B, heads·2·D) →
    /// (B·heads, Lq, Lk), Q·Kᵀ/√D.
    EncdecQk,
    /// `encdec_valatt`: keys_values (Lk, B, heads·2·D), attention (B·heads, Lq, Lk) →
    /// (Lq, B, heads·D).
    EncdecValatt,
}

impl AttentionKind {
    pub const ALL: [AttentionKind; 4] = [
        AttentionKind::SelfattQk,
        AttentionKind::SelfattValatt,
        AttentionKind::EncdecQk,
        AttentionKind::EncdecValatt,
    ];

    /// The kind MXNet's operator `name` computes.
    pub fn from_mxnet_name(name: &str) -> Option<AttentionKind> {
        AttentionKind::ALL
            .into_iter()
            .find(|k| k.mxnet_name() == name)
    }

    /// MXNet's operator name.
    pub fn mxnet_name(self) -> &'static str {
        match self {
            AttentionKind::SelfattQk => "_contrib_interleaved_matmul_selfatt_qk",
            AttentionKind::SelfattValatt => "_contrib_interleaved_matmul_selfatt_valatt",
            AttentionKind::EncdecQk => "_contrib_interleaved_matmul_encdec_qk",
            AttentionKind::EncdecValatt => "_contrib_interleaved_matmul_encdec_valatt",
        }
    }
}

/// MXNet's interleaved attention products. The projections are laid out per head: in
/// queries_keys_values the last axis is (heads, 3, D) with q, k, v for each head; in
/// keys_values (heads, 2, D); in queries (heads, D). Attention batch `b·heads + h` is
/// head `h` of sequence `b`. The two `qk` products scale by 1/√D (D as float32, as MXNet).
/// MXNet 1.9.1 checks neither that heads divides the projection nor the attention's first
/// dim (it reads past the tensor); ward refuses both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterleavedMatmul {
    pub kind: AttentionKind,
    pub heads: usize,
}

impl InterleavedMatmul {
    /// The head size D of a projection of `width` holding `parts` projections per head.
    pub fn head_dim(&self, width: usize, parts: usize) -> R<usize> {
        let per = self
            .heads
            .checked_mul(parts)
            .ok_or_else(|| format!("heads {} overflows", self.heads))?;
        if per == 0 || width == 0 || !width.is_multiple_of(per) {
            return Err(format!(
                "the projection's last dim {width} is not a positive multiple of {parts}·heads ({per})"
            ));
        }
        Ok(width / per)
    }

    /// The scale of the `qk` products: 1/√D, computed in float32 as MXNet does.
    pub fn scale(head_dim: usize) -> f64 {
        f64::from(1.0 / (head_dim as f32).sqrt())
    }
}

fn dims3(what: &str, s: &[usize]) -> R<(usize, usize, usize)> {
    expect_rank(what, s, 3)?;
    match *s {
        [a, b, c] => Ok((a, b, c)),
        _ => Err(format!("{what} {s:?} must have 3 dims")),
    }
}

impl OpDef for InterleavedMatmul {
    fn arity(&self) -> (usize, usize) {
        match self.kind {
            AttentionKind::SelfattQk => (1, 1),
            _ => (2, 2),
        }
    }

    fn validate(&self) -> R<()> {
        positive("heads", &[self.heads])
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let batches = |b: usize| {
            b.checked_mul(self.heads)
                .ok_or_else(|| format!("batch {b} × heads {} overflows", self.heads))
        };
        let out = match self.kind {
            AttentionKind::SelfattQk => {
                let (l, b, e) =
                    dims3("queries_keys_values", input(ins, 0, "queries_keys_values")?)?;
                self.head_dim(e, 3)?;
                vec![batches(b)?, l, l]
            }
            AttentionKind::SelfattValatt => {
                let (l, b, e) =
                    dims3("queries_keys_values", input(ins, 0, "queries_keys_values")?)?;
                let d = self.head_dim(e, 3)?;
                expect_shape(
                    "attention",
                    input(ins, 1, "attention")?,
                    &[batches(b)?, l, l],
                )?;
                vec![l, b, d * self.heads]
            }
            AttentionKind::EncdecQk => {
                let (lq, b, e) = dims3("queries", input(ins, 0, "queries")?)?;
                let d = self.head_dim(e, 1)?;
                let (lk, bk, ek) = dims3("keys_values", input(ins, 1, "keys_values")?)?;
                if bk != b || self.head_dim(ek, 2)? != d {
                    return Err(format!(
                        "keys_values ({lk}, {bk}, {ek}) must be (_, {b}, {}) for queries ({lq}, {b}, {e})",
                        2 * e
                    ));
                }
                vec![batches(b)?, lq, lk]
            }
            AttentionKind::EncdecValatt => {
                let (lk, b, e) = dims3("keys_values", input(ins, 0, "keys_values")?)?;
                let d = self.head_dim(e, 2)?;
                let (ab, lq, al) = dims3("attention", input(ins, 1, "attention")?)?;
                if ab != batches(b)? || al != lk {
                    return Err(format!(
                        "attention ({ab}, {lq}, {al}) must be ({}, _, {lk}) for keys_values ({lk}, {b}, {e}) and {} heads",
                        batches(b)?,
                        self.heads
                    ));
                }
                vec![lq, b, d * self.heads]
            }
        };
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

    #[test]
    fn batch_dot_multiplies_the_last_two_axes() {
        let op = |a, b| BatchDot {
            transpose_a: a,
            transpose_b: b,
        };
        assert_eq!(
            op(false, false)
                .infer(&[Some(&[2, 3, 4]), Some(&[2, 4, 5])])
                .unwrap(),
            vec![vec![2, 3, 5]]
        );
        assert_eq!(
            op(true, true)
                .infer(&[Some(&[2, 6, 4, 3]), Some(&[2, 6, 5, 4])])
                .unwrap(),
            vec![vec![2, 6, 3, 5]]
        );
        assert!(op(false, false)
            .infer(&[Some(&[1, 3, 4]), Some(&[2, 4, 5])])
            .is_err());
        assert!(op(false, false)
            .infer(&[Some(&[3, 4]), Some(&[4, 5])])
            .is_err());
        assert!(op(false, true)
            .infer(&[Some(&[2, 3, 4]), Some(&[2, 4, 5])])
            .is_err());
    }

    #[test]
    fn interleaved_products_check_heads_and_layouts() {
        let op = |kind, heads| InterleavedMatmul { kind, heads };
        let qk = op(AttentionKind::SelfattQk, 2);
        assert_eq!(qk.infer(&[Some(&[5, 3, 12])]).unwrap(), vec![vec![6, 5, 5]]);
        assert!(qk.infer(&[Some(&[5, 3, 10])]).is_err());
        assert!(op(AttentionKind::SelfattQk, 0).validate().is_err());
        let va = op(AttentionKind::SelfattValatt, 2);
        assert_eq!(
            va.infer(&[Some(&[5, 3, 12]), Some(&[6, 5, 5])]).unwrap(),
            vec![vec![5, 3, 4]]
        );
        assert!(va.infer(&[Some(&[5, 3, 12]), Some(&[3, 5, 5])]).is_err());
        let eq = op(AttentionKind::EncdecQk, 2);
        assert_eq!(
            eq.infer(&[Some(&[4, 3, 6]), Some(&[7, 3, 12])]).unwrap(),
            vec![vec![6, 4, 7]]
        );
        assert!(eq.infer(&[Some(&[4, 3, 6]), Some(&[7, 3, 6])]).is_err());
        let ev = op(AttentionKind::EncdecValatt, 2);
        assert_eq!(
            ev.infer(&[Some(&[7, 3, 12]), Some(&[6, 4, 7])]).unwrap(),
            vec![vec![4, 3, 6]]
        );
        assert!(ev.infer(&[Some(&[7, 3, 12]), Some(&[3, 4, 7])]).is_err());
    }
}
