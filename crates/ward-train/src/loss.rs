//! Gluon's losses, for graphs without a loss head: a Gluon model is exported as the
//! network alone (its output is logits or a regression), and trained with a loss from
//! `gluon.loss` that the export does not contain. The training spec names it
//! (`[loss] name = "softmax_cross_entropy"`) and ward applies it to the graph's first
//! output, as MXNet 1.9.1 computes it, with its gradient; the package written is the
//! network alone, as Gluon's export is.
//!
//! Each loss gives one value per example, the mean over the example's loss elements
//! (Gluon's `mean(..., axis=batch_axis, exclude=True)`), and the gradient of
//! `Σ head · loss` with respect to the prediction (`loss.backward(head)`; training uses
//! `head = 1`, and the optimizer's `rescale_grad` divides by the batch, as Gluon's
//! `Trainer.step(batch_size)` does). Labels are untrusted: a class index outside the
//! prediction's classes is refused, naming the example (Gluon's `pick` would clip it).

use serde::{Deserialize, Serialize};

use crate::grad::elementwise::sign;

/// A loss from `gluon.loss`, as data: its name and keyword arguments, defaults as
/// MXNet 1.9.1's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossSpec {
    /// `SoftmaxCrossEntropyLoss`: `−log softmax(pred)[label]` along `axis`, with one
    /// class index per position (sparse labels); with `from_logits` the prediction is
    /// already log-probabilities.
    #[serde(alias = "SoftmaxCrossEntropyLoss")]
    SoftmaxCrossEntropy {
        #[serde(default = "last_axis")]
        axis: i64,
        /// Dense label distributions (`false`) are not supported: the data sources
        /// give class indices.
        #[serde(default = "yes")]
        sparse_label: bool,
        #[serde(default)]
        from_logits: bool,
        #[serde(default)]
        weight: Option<f64>,
    },
    /// `L2Loss`: `weight / 2 · (pred − label)²`.
    #[serde(alias = "L2Loss")]
    L2 {
        #[serde(default = "one")]
        weight: f64,
    },
    /// `L1Loss`: `weight · |pred − label|`.
    #[serde(alias = "L1Loss")]
    L1 {
        #[serde(default)]
        weight: Option<f64>,
    },
    /// `SigmoidBinaryCrossEntropyLoss`: binary cross-entropy of `sigmoid(pred)` (of
    /// `pred` itself with `from_sigmoid`) against targets in `[0, 1]`.
    #[serde(alias = "SigmoidBinaryCrossEntropyLoss")]
    SigmoidBinaryCrossEntropy {
        #[serde(default)]
        from_sigmoid: bool,
        #[serde(default)]
        weight: Option<f64>,
    },
}

fn last_axis() -> i64 {
    -1
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

/// Largest magnitude of a loss weight.
pub const MAX_WEIGHT: f64 = 1e6;

/// A loss that cannot be applied, or a label it refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    #[error("loss.{field} = {value}: {allowed}")]
    Invalid {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("loss {loss}: the prediction's shape {shape:?} {reason}")]
    Shape {
        loss: &'static str,
        shape: Vec<usize>,
        reason: String,
    },
    #[error("loss {loss}: the label has {got} values, {expected} expected ({why})")]
    LabelCount {
        loss: &'static str,
        got: usize,
        expected: usize,
        why: &'static str,
    },
    #[error("loss {loss}: label {label} at position {index} {reason}")]
    Label {
        loss: &'static str,
        index: usize,
        label: f32,
        reason: String,
    },
}

/// A batch's loss: one value per example and the gradient for the prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct LossValue {
    pub per_example: Vec<f64>,
    /// `∂ Σ head · loss / ∂ pred`, shaped as the prediction.
    pub grad: Vec<f32>,
    /// For a classifying loss, the rows whose highest score is their label's class (the
    /// first highest, as MXNet's argmax), of `classified` rows; 0 of 0 otherwise.
    pub correct: usize,
    pub classified: usize,
}

impl LossSpec {
    /// The name the spec uses.
    pub fn name(&self) -> &'static str {
        match self {
            LossSpec::SoftmaxCrossEntropy { .. } => "softmax_cross_entropy",
            LossSpec::L2 { .. } => "l2",
            LossSpec::L1 { .. } => "l1",
            LossSpec::SigmoidBinaryCrossEntropy { .. } => "sigmoid_binary_cross_entropy",
        }
    }

    /// Whether the loss classifies (its labels are class indices, its prediction scores
    /// per class along an axis): accuracy is then a metric.
    pub fn classifies(&self) -> bool {
        matches!(self, LossSpec::SoftmaxCrossEntropy { .. })
    }

    /// Checks every value: a finite weight within ±[`MAX_WEIGHT`], an axis within
    /// ±64, sparse labels.
    pub fn validate(&self) -> Result<(), LossError> {
        let weight = match *self {
            LossSpec::SoftmaxCrossEntropy {
                axis,
                sparse_label,
                weight,
                ..
            } => {
                if !(-64..64).contains(&axis) {
                    return Err(LossError::Invalid {
                        field: "axis",
                        value: axis.to_string(),
                        allowed: "must be in -64..64",
                    });
                }
                if !sparse_label {
                    return Err(LossError::Invalid {
                        field: "sparse_label",
                        value: "false".into(),
                        allowed:
                            "dense label distributions are not supported: labels are class indices",
                    });
                }
                weight
            }
            LossSpec::L2 { weight } => Some(weight),
            LossSpec::L1 { weight } | LossSpec::SigmoidBinaryCrossEntropy { weight, .. } => weight,
        };
        match weight {
            Some(w) if !(w.is_finite() && w.abs() <= MAX_WEIGHT) => Err(LossError::Invalid {
                field: "weight",
                value: w.to_string(),
                allowed: "must be finite, within ±1e6",
            }),
            _ => Ok(()),
        }
    }

    /// The number of label values a batch of predictions of `pred_shape` (batch first)
    /// needs: one class index per position for softmax cross-entropy, one target per
    /// element otherwise.
    pub fn label_len(&self, pred_shape: &[usize]) -> Result<usize, LossError> {
        let elements: usize = pred_shape.iter().product();
        match self {
            LossSpec::SoftmaxCrossEntropy { axis, .. } => {
                let (_, classes) = self.class_axis(pred_shape, *axis)?;
                Ok(elements.checked_div(classes).unwrap_or(0))
            }
            _ => Ok(elements),
        }
    }

    /// The class axis (resolved) and the number of classes, for softmax cross-entropy.
    fn class_axis(&self, pred_shape: &[usize], axis: i64) -> Result<(usize, usize), LossError> {
        let rank = pred_shape.len() as i64;
        let resolved = if axis < 0 { axis + rank } else { axis };
        if rank < 2 || !(1..rank).contains(&resolved) {
            return Err(LossError::Shape {
                loss: self.name(),
                shape: pred_shape.to_vec(),
                reason: format!(
                    "has no class axis {axis} after the batch axis (a batch of class scores is at least 2-D)"
                ),
            });
        }
        let axis = resolved as usize;
        let classes = pred_shape.get(axis).copied().unwrap_or(0);
        Ok((axis, classes))
    }

    /// The loss of one batch, `pred` of `pred_shape` (batch first), with one head
    /// gradient per example (`None`: ones).
    pub fn compute(
        &self,
        pred: &[f32],
        pred_shape: &[usize],
        label: &[f32],
        head: Option<&[f32]>,
    ) -> Result<LossValue, LossError> {
        let batch = pred_shape.first().copied().unwrap_or(0);
        if pred_shape.iter().product::<usize>() != pred.len() || batch == 0 {
            return Err(LossError::Shape {
                loss: self.name(),
                shape: pred_shape.to_vec(),
                reason: format!(
                    "does not hold its {} values, or has no examples",
                    pred.len()
                ),
            });
        }
        let expected = self.label_len(pred_shape)?;
        if label.len() != expected {
            return Err(LossError::LabelCount {
                loss: self.name(),
                got: label.len(),
                expected,
                why: if self.classifies() {
                    "one class index per position"
                } else {
                    "one target per output value"
                },
            });
        }
        if let Some(head) = head {
            if head.len() != batch {
                return Err(LossError::LabelCount {
                    loss: self.name(),
                    got: head.len(),
                    expected: batch,
                    why: "one head gradient per example",
                });
            }
        }
        let head_of = |n: usize| head.and_then(|h| h.get(n)).map_or(1.0, |&h| f64::from(h));
        let mut per_example = vec![0.0f64; batch];
        let mut grad = vec![0.0f32; pred.len()];
        let (mut correct, mut classified) = (0, 0);
        match *self {
            LossSpec::SoftmaxCrossEntropy {
                axis,
                from_logits,
                weight,
                ..
            } => {
                let (axis, classes) = self.class_axis(pred_shape, axis)?;
                let after: usize = pred_shape.iter().skip(axis + 1).product();
                let per_batch = pred.len() / batch;
                // Loss elements per example: its positions (every axis but batch and class).
                let positions = per_batch / classes.max(1);
                let w = weight.unwrap_or(1.0);
                let rows = pred.len() / classes.max(1);
                for row in 0..rows {
                    // Row `row` is (outer, inner) around the class axis.
                    let (outer, inner) = (row / after, row % after);
                    let at = |c: usize| (outer * classes + c) * after + inner;
                    let n = row / positions.max(1);
                    let raw = label.get(row).copied().unwrap_or(f32::NAN);
                    let k = class_index(raw, classes).ok_or_else(|| LossError::Label {
                        loss: self.name(),
                        index: row,
                        label: raw,
                        reason: format!("is not a class in 0..{classes}"),
                    })?;
                    let x = |c: usize| f64::from(pred.get(at(c)).copied().unwrap_or(0.0));
                    let best = (0..classes).fold((0, f64::NEG_INFINITY), |b, c| {
                        if x(c) > b.1 {
                            (c, x(c))
                        } else {
                            b
                        }
                    });
                    correct += usize::from(best.0 == k);
                    classified += 1;
                    let scale = head_of(n) * w / positions.max(1) as f64;
                    let value = if from_logits {
                        for c in 0..classes {
                            if let Some(g) = grad.get_mut(at(c)) {
                                *g = if c == k { -scale as f32 } else { 0.0 };
                            }
                        }
                        -x(k)
                    } else {
                        let max = (0..classes).map(x).fold(f64::NEG_INFINITY, f64::max);
                        let sum: f64 = (0..classes).map(|c| (x(c) - max).exp()).sum();
                        let log_sum = max + sum.ln();
                        for c in 0..classes {
                            let p = (x(c) - log_sum).exp();
                            let target = if c == k { 1.0 } else { 0.0 };
                            if let Some(g) = grad.get_mut(at(c)) {
                                *g = (scale * (p - target)) as f32;
                            }
                        }
                        log_sum - x(k)
                    };
                    if let Some(e) = per_example.get_mut(n) {
                        *e += w * value / positions.max(1) as f64;
                    }
                }
            }
            LossSpec::L2 { .. }
            | LossSpec::L1 { .. }
            | LossSpec::SigmoidBinaryCrossEntropy { .. } => {
                let per_batch = pred.len() / batch;
                for (i, (&p, &l)) in pred.iter().zip(label).enumerate() {
                    let n = i / per_batch.max(1);
                    if !l.is_finite() {
                        return Err(LossError::Label {
                            loss: self.name(),
                            index: i,
                            label: l,
                            reason: "is not finite".into(),
                        });
                    }
                    let (value, slope) = self.element(f64::from(p), f64::from(l));
                    if let Some(e) = per_example.get_mut(n) {
                        *e += value / per_batch as f64;
                    }
                    if let Some(g) = grad.get_mut(i) {
                        *g = (head_of(n) * slope / per_batch as f64) as f32;
                    }
                }
            }
        }
        Ok(LossValue {
            per_example,
            grad,
            correct,
            classified,
        })
    }

    /// For a classifying loss, its prediction (`pred_shape`, batch first) as class
    /// probabilities: one row of classes per label, in the labels' order, and the number
    /// of classes. Log-probabilities (`from_logits`) exponentiate; logits go through
    /// softmax.
    pub fn probabilities(&self, pred: &[f32], pred_shape: &[usize]) -> Option<(Vec<f32>, usize)> {
        let LossSpec::SoftmaxCrossEntropy {
            axis, from_logits, ..
        } = *self
        else {
            return None;
        };
        let (axis, classes) = self.class_axis(pred_shape, axis).ok()?;
        let after: usize = pred_shape.iter().skip(axis + 1).product();
        let rows = pred.len() / classes.max(1);
        let mut out = Vec::with_capacity(pred.len());
        for row in 0..rows {
            let (outer, inner) = (row / after.max(1), row % after.max(1));
            out.extend((0..classes).map(|c| {
                let v = pred.get((outer * classes + c) * after + inner).copied();
                v.unwrap_or(f32::NAN)
            }));
        }
        if from_logits {
            out.iter_mut().for_each(|v| *v = v.exp());
        } else {
            softmax_rows(&mut out, classes);
        }
        Some((out, classes))
    }

    /// An element-wise loss's value and derivative at prediction `x`, target `z`, weight
    /// applied, with MXNet's choices where the derivative does not exist.
    fn element(&self, x: f64, z: f64) -> (f64, f64) {
        match *self {
            LossSpec::L2 { weight } => {
                let d = x - z;
                (weight / 2.0 * d * d, weight * d)
            }
            LossSpec::L1 { weight } => {
                let w = weight.unwrap_or(1.0);
                let d = x - z;
                // `abs`'s gradient is sign(d), 0 at 0.
                (w * d.abs(), w * sign(d))
            }
            LossSpec::SigmoidBinaryCrossEntropy {
                from_sigmoid,
                weight,
            } => {
                let w = weight.unwrap_or(1.0);
                if from_sigmoid {
                    const EPS: f64 = 1e-12;
                    let value = -((x + EPS).ln() * z + (1.0 - x + EPS).ln() * (1.0 - z));
                    (
                        w * value,
                        w * (-(z / (x + EPS)) + (1.0 - z) / (1.0 - x + EPS)),
                    )
                } else {
                    // Gluon's stable form relu(x) − x·z + softrelu(−|x|), differentiated
                    // term by term as MXNet's operators do: relu' (0 at 0), −z, and
                    // sigmoid(−|x|)·(−sign x), so the slope at exactly 0 is −z.
                    let softrelu = (-x.abs()).exp().ln_1p();
                    let value = x.max(0.0) - x * z + softrelu;
                    let relu_slope = if x > 0.0 { 1.0 } else { 0.0 };
                    let sigmoid = 1.0 / (1.0 + x.abs().exp());
                    (w * value, w * (relu_slope - z - sigmoid * sign(x)))
                }
            }
            LossSpec::SoftmaxCrossEntropy { .. } => (0.0, 0.0),
        }
    }
}

/// Each row of `classes` scores replaced by its softmax (in `f64`, shifted by the row's
/// maximum).
pub fn softmax_rows(values: &mut [f32], classes: usize) {
    for row in values.chunks_exact_mut(classes.max(1)) {
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        for v in row.iter_mut() {
            *v = ((f64::from(*v) - max).exp() / sum) as f32;
        }
    }
}

/// A label as a class index: integral and in `0..classes`.
fn class_index(label: f32, classes: usize) -> Option<usize> {
    (label >= 0.0 && label.fract() == 0.0 && (label as usize) < classes).then_some(label as usize)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_label_outside_the_classes_is_refused_by_position() {
        let loss = LossSpec::SoftmaxCrossEntropy {
            axis: -1,
            sparse_label: true,
            from_logits: false,
            weight: None,
        };
        let err = loss
            .compute(&[0.0; 6], &[2, 3], &[1.0, 3.0], None)
            .unwrap_err();
        assert!(matches!(err, LossError::Label { index: 1, .. }), "{err}");
        let err = loss
            .compute(&[0.0; 6], &[2, 3], &[0.5, 1.0], None)
            .unwrap_err();
        assert!(matches!(err, LossError::Label { index: 0, .. }), "{err}");
        let err = loss.compute(&[0.0; 6], &[2, 3], &[1.0], None).unwrap_err();
        assert!(
            matches!(err, LossError::LabelCount { expected: 2, .. }),
            "{err}"
        );
        let err = loss.compute(&[0.0; 6], &[6], &[1.0], None).unwrap_err();
        assert!(err.to_string().contains("no class axis"), "{err}");
    }

    #[test]
    fn weights_and_dense_labels_are_checked() {
        let bad = [
            LossSpec::L2 { weight: f64::NAN },
            LossSpec::L1 { weight: Some(1e7) },
            LossSpec::SoftmaxCrossEntropy {
                axis: -1,
                sparse_label: false,
                from_logits: false,
                weight: None,
            },
        ];
        for loss in bad {
            assert!(loss.validate().is_err(), "{loss:?}");
        }
        assert!(LossSpec::L2 { weight: 1.0 }.validate().is_ok());
    }

    #[test]
    fn the_spec_takes_gluons_defaults_and_class_names() {
        let loss: LossSpec =
            serde_json::from_str(r#"{"name": "SoftmaxCrossEntropyLoss"}"#).unwrap();
        assert_eq!(
            loss,
            LossSpec::SoftmaxCrossEntropy {
                axis: -1,
                sparse_label: true,
                from_logits: false,
                weight: None
            }
        );
        let loss: LossSpec = serde_json::from_str(r#"{"name": "l2"}"#).unwrap();
        assert_eq!(loss, LossSpec::L2 { weight: 1.0 });
        assert!(serde_json::from_str::<LossSpec>(r#"{"name": "l2", "wieght": 1}"#).is_err());
        assert!(serde_json::from_str::<LossSpec>(r#"{"name": "hinge"}"#).is_err());
    }
}
