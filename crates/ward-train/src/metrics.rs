//! MXNet 1.9.1's evaluation metrics (`mx.metric`), declared as data.
//!
//! A [`MetricSpec`] names a metric and its arguments (MXNet's defaults, range-checked);
//! a [`Metric`] accumulates it over batches exactly as MXNet's `EvalMetric` does, so a
//! value ward logs is the value MXNet would print for the same predictions:
//!
//! | metric | one update adds to the sum | and to the count |
//! |---|---|---|
//! | `accuracy` | correct predictions | predictions |
//! | `top_k_accuracy` | labels among the k largest scores | rows |
//! | `cross_entropy`, `nll_loss` | Σ −ln(p\[label\] + eps) | rows |
//! | `mse`, `mae`, `rmse` | the batch's mean (of squares, absolute values; the root of the mean of squares) | 1 |
//! | `perplexity` | Σ −ln max(p\[label\], 1e-10) over labels not ignored | labels not ignored |
//!
//! `get` is the sum over the count (`perplexity`: e to that power), NaN before any
//! update. So `mse`, `mae` and `rmse` average batch means over batches (a small last
//! batch weighs as much as a full one), where the others average over instances; this is
//! MXNet's rule, kept. Sums are in f64 from the f32 predictions (MXNet sums some in
//! float32; the two agree within 1e-6 relative on the cases of `tests/fixtures/metrics/`,
//! `tools/make_metric_fixtures.py`).
//!
//! Where MXNet lets a malformed batch through, ward refuses it ([`MetricError`]): shapes
//! that do not match, a class label outside the class range for `cross_entropy` and
//! `nll_loss` (NumPy indexing raises for one too large and wraps a negative one), a
//! prediction that is not 2-D where MXNet's code assumes it.

use serde::{Deserialize, Serialize};

/// A batch the metric cannot take.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// A declared value is outside its range.
    #[error("metric `{metric}`: `{field}` = {value} is out of range: must be {allowed}")]
    OutOfRange {
        metric: &'static str,
        field: &'static str,
        value: f64,
        allowed: &'static str,
    },
    /// A metric named on a command line that is not one of MXNet's.
    #[error("metric {text:?}: {reason}")]
    Name { text: String, reason: String },
    /// The values do not fill the shape they came with.
    #[error("metric `{metric}`: the {what} holds {found} values, its shape {shape:?} {expected}")]
    Length {
        metric: &'static str,
        what: &'static str,
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
    /// Prediction and label shapes that do not go together.
    #[error("metric `{metric}`: prediction shape {pred:?} and label shape {label:?}: {reason}")]
    Shape {
        metric: &'static str,
        pred: Vec<usize>,
        label: Vec<usize>,
        reason: &'static str,
    },
    /// A class label that is not a class.
    #[error("metric `{metric}`: label {label} of row {row} is not a class in 0..{classes}")]
    Label {
        metric: &'static str,
        row: usize,
        label: f32,
        classes: usize,
    },
}

/// `accuracy`'s arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccuracyArgs {
    /// The class axis of the predictions; negative counts from the end (default 1).
    pub axis: i64,
}

impl Default for AccuracyArgs {
    fn default() -> Self {
        AccuracyArgs { axis: 1 }
    }
}

/// `top_k_accuracy`'s arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopKArgs {
    /// How many of the largest scores may hold the label; at least 2 (MXNet asserts it;
    /// 1 is `accuracy`). Required: MXNet's default, 1, fails its own assertion.
    pub top_k: u32,
}

/// `cross_entropy`'s and `nll_loss`'s arguments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EpsArgs {
    /// Added to the probability before the logarithm; finite and >= 0 (default 1e-12).
    pub eps: f64,
}

impl Default for EpsArgs {
    fn default() -> Self {
        EpsArgs { eps: 1e-12 }
    }
}

/// `perplexity`'s arguments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerplexityArgs {
    /// Labels equal to this one are left out (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_label: Option<f64>,
    /// The class axis: the last (-1 or 1; default -1).
    pub axis: i64,
}

impl Default for PerplexityArgs {
    fn default() -> Self {
        PerplexityArgs {
            ignore_label: None,
            axis: -1,
        }
    }
}

/// An empty body: the metric takes no arguments, and an unknown key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// One of MXNet's metrics with its arguments: `{ name = "top_k_accuracy", top_k = 5 }`.
/// MXNet's registry names and aliases are accepted (`acc`, `top_k_acc`, `ce`,
/// `crossentropy`, `negativeloglikelihood`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum MetricSpec {
    #[serde(alias = "acc")]
    Accuracy(AccuracyArgs),
    #[serde(alias = "top_k_acc", alias = "topkaccuracy")]
    TopKAccuracy(TopKArgs),
    #[serde(alias = "ce", alias = "crossentropy")]
    CrossEntropy(EpsArgs),
    #[serde(alias = "negativeloglikelihood")]
    NllLoss(EpsArgs),
    Mse(NoArgs),
    Mae(NoArgs),
    Rmse(NoArgs),
    Perplexity(PerplexityArgs),
}

impl MetricSpec {
    /// `NAME` or `NAME=K` as a command line names a metric: MXNet's registry name
    /// (`accuracy`, `top_k_accuracy=3`, `cross_entropy`, ...), `K` its `top_k`.
    pub fn parse(text: &str) -> Result<MetricSpec, MetricError> {
        let named = |reason: String| MetricError::Name {
            text: text.to_string(),
            reason,
        };
        let (name, k) = match text.split_once('=') {
            Some((name, k)) => (name, Some(k)),
            None => (text, None),
        };
        let mut value = serde_json::Map::new();
        value.insert("name".into(), name.into());
        if let Some(k) = k {
            let k: u64 = k
                .parse()
                .map_err(|_| named(format!("{k:?} is not a whole number")))?;
            value.insert("top_k".into(), k.into());
        }
        let spec: MetricSpec = serde_json::from_value(serde_json::Value::Object(value))
            .map_err(|e| named(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The spec's name (`accuracy`, `top_k_accuracy`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            MetricSpec::Accuracy(_) => "accuracy",
            MetricSpec::TopKAccuracy(_) => "top_k_accuracy",
            MetricSpec::CrossEntropy(_) => "cross_entropy",
            MetricSpec::NllLoss(_) => "nll_loss",
            MetricSpec::Mse(_) => "mse",
            MetricSpec::Mae(_) => "mae",
            MetricSpec::Rmse(_) => "rmse",
            MetricSpec::Perplexity(_) => "perplexity",
        }
    }

    /// The name MXNet prints (`EvalMetric.get()[0]`): `accuracy`, `top_k_accuracy_5`,
    /// `cross-entropy`, `nll-loss`, `mse`, `mae`, `rmse`, `perplexity`.
    pub fn mxnet_name(&self) -> String {
        match self {
            MetricSpec::TopKAccuracy(a) => format!("top_k_accuracy_{}", a.top_k),
            MetricSpec::CrossEntropy(_) => "cross-entropy".into(),
            MetricSpec::NllLoss(_) => "nll-loss".into(),
            other => other.kind().into(),
        }
    }

    /// A name for logs and JSON keys: MXNet's with `-` as `_` (`cross_entropy`,
    /// `top_k_accuracy_5`).
    pub fn key(&self) -> String {
        self.mxnet_name().replace('-', "_")
    }

    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), MetricError> {
        let m = self.kind();
        let bad = |field, value: f64, allowed| {
            Err(MetricError::OutOfRange {
                metric: m,
                field,
                value,
                allowed,
            })
        };
        match *self {
            MetricSpec::TopKAccuracy(a) if a.top_k < 2 => {
                bad("top_k", f64::from(a.top_k), ">= 2 (use accuracy for 1)")
            }
            MetricSpec::CrossEntropy(a) | MetricSpec::NllLoss(a)
                if !(a.eps.is_finite() && a.eps >= 0.0) =>
            {
                bad("eps", a.eps, "finite and >= 0")
            }
            MetricSpec::Perplexity(a) if !matches!(a.axis, -1 | 1) => bad(
                "axis",
                a.axis as f64,
                "-1 or 1 (the last axis of 2-D predictions)",
            ),
            MetricSpec::Perplexity(PerplexityArgs {
                ignore_label: Some(l),
                ..
            }) if !l.is_finite() => bad("ignore_label", l, "finite"),
            _ => Ok(()),
        }
    }
}

/// A metric accumulating over batches, as MXNet's `EvalMetric` (its local statistics).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    spec: MetricSpec,
    sum: f64,
    count: u64,
}

/// The number of values of `shape` (saturating: compared with a slice's length, an
/// overflowing shape never matches).
fn numel(shape: &[usize]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .unwrap_or(usize::MAX)
}

/// NumPy's `astype('int32')` on x86: truncation toward zero; NaN and values outside the
/// range become i32::MIN (the processor's "integer indefinite").
fn as_i32(v: f32) -> i64 {
    // NaN lies in no range, so it takes this branch too.
    if !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        i64::from(i32::MIN)
    } else {
        v.trunc() as i64
    }
}

/// Whether `a` ranks above `b` in MXNet's argmax (NaN above everything, the first of
/// equals kept) and NumPy's sort order (NaN last, i.e. largest).
fn above(a: f32, b: f32) -> bool {
    (a.is_nan() && !b.is_nan()) || a > b
}

impl Metric {
    /// A metric with nothing accumulated; the spec is validated.
    pub fn new(spec: MetricSpec) -> Result<Metric, MetricError> {
        spec.validate()?;
        Ok(Metric {
            spec,
            sum: 0.0,
            count: 0,
        })
    }

    pub fn spec(&self) -> &MetricSpec {
        &self.spec
    }

    /// Forgets everything accumulated.
    pub fn reset(&mut self) {
        self.sum = 0.0;
        self.count = 0;
    }

    /// MXNet's `num_inst`: what the sum is divided by.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// MXNet's `sum_metric`.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The metric's value: the sum over the count (perplexity: its exponential); NaN
    /// when nothing was counted.
    pub fn get(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let mean = self.sum / self.count as f64;
        match self.spec {
            MetricSpec::Perplexity(_) => mean.exp(),
            _ => mean,
        }
    }

    /// Adds one batch: the predictions (row-major, `pred_shape`) and the labels
    /// (`label_shape`). The metric is unchanged when the batch is refused.
    pub fn update(
        &mut self,
        pred: &[f32],
        pred_shape: &[usize],
        label: &[f32],
        label_shape: &[usize],
    ) -> Result<(), MetricError> {
        let m = self.spec.kind();
        for (what, values, shape) in [
            ("prediction", pred, pred_shape),
            ("label", label, label_shape),
        ] {
            let expected = numel(shape);
            if values.len() != expected {
                return Err(MetricError::Length {
                    metric: m,
                    what,
                    shape: shape.to_vec(),
                    expected,
                    found: values.len(),
                });
            }
        }
        let shape_error = |reason| MetricError::Shape {
            metric: m,
            pred: pred_shape.to_vec(),
            label: label_shape.to_vec(),
            reason,
        };
        let (sum, count) = match self.spec {
            MetricSpec::Accuracy(a) => accuracy(pred, pred_shape, label, label_shape, a.axis)
                .ok_or_else(|| {
                    shape_error("the argmax over the class axis must have one value per label")
                })?,
            MetricSpec::TopKAccuracy(a) => {
                let [rows, classes] = *pred_shape else {
                    return Err(shape_error("top_k_accuracy takes 2-D predictions"));
                };
                if label.len() != rows || label_shape.first() != Some(&rows) {
                    return Err(shape_error("one label per row is needed"));
                }
                // MXNet's `argpartition(pred, -top_k)` raises for more than the classes.
                if a.top_k as usize > classes {
                    return Err(shape_error("top_k is larger than the number of classes"));
                }
                (top_k(pred, classes, label, a.top_k as usize), rows as u64)
            }
            MetricSpec::CrossEntropy(a) | MetricSpec::NllLoss(a) => {
                let [rows, classes] = *pred_shape else {
                    return Err(shape_error("the predictions must be 2-D (rows, classes)"));
                };
                if label.len() != rows {
                    return Err(shape_error("one label per row is needed"));
                }
                (cross_entropy(m, pred, classes, label, a.eps)?, rows as u64)
            }
            MetricSpec::Mse(_) | MetricSpec::Mae(_) | MetricSpec::Rmse(_) => {
                let mean = regression(pred, pred_shape, label, label_shape, &self.spec)
                    .ok_or_else(|| {
                        shape_error("the shapes must be equal or broadcast to the larger one")
                    })?;
                (mean, 1)
            }
            MetricSpec::Perplexity(a) => {
                let [_, classes] = *pred_shape else {
                    return Err(shape_error(
                        "perplexity takes 2-D predictions (rows, classes)",
                    ));
                };
                if label.len().checked_mul(classes) != Some(pred.len()) {
                    return Err(shape_error("one label per row is needed"));
                }
                perplexity(pred, classes, label, a.ignore_label)
            }
        };
        self.sum += sum;
        self.count = self.count.saturating_add(count);
        Ok(())
    }
}

/// Correct predictions and their count, or None when the shapes do not fit. As MXNet:
/// when the shapes differ, the prediction is the argmax over `axis`; when they are
/// equal, the predictions are the labels; both sides cast to int32.
fn accuracy(
    pred: &[f32],
    pred_shape: &[usize],
    label: &[f32],
    label_shape: &[usize],
    axis: i64,
) -> Option<(f64, u64)> {
    let agree = |p: i64, l: f32| u64::from(p == as_i32(l));
    if pred_shape == label_shape {
        let correct: u64 = pred
            .iter()
            .zip(label)
            .map(|(&p, &l)| agree(as_i32(p), l))
            .sum();
        return Some((correct as f64, label.len() as u64));
    }
    let rank = i64::try_from(pred_shape.len()).ok()?;
    let axis = usize::try_from(if axis < 0 { axis + rank } else { axis }).ok()?;
    let classes = *pred_shape.get(axis)?;
    // Row-major: the argmax of (outer, classes, inner) runs over stride `inner`.
    let inner: usize = pred_shape.get(axis + 1..)?.iter().product();
    let outer: usize = pred_shape.get(..axis)?.iter().product();
    if classes == 0 || outer.checked_mul(inner)? != label.len() {
        return None;
    }
    let mut correct = 0u64;
    for o in 0..outer {
        for i in 0..inner {
            let base = o * classes * inner + i;
            let mut best = 0usize;
            let mut best_v = *pred.get(base)?;
            for c in 1..classes {
                let v = *pred.get(base + c * inner)?;
                if above(v, best_v) {
                    best = c;
                    best_v = v;
                }
            }
            correct += agree(best as i64, *label.get(o * inner + i)?);
        }
    }
    Some((correct as f64, label.len() as u64))
}

/// Rows whose label is among the `k` largest scores (NumPy's `argpartition`; ties at the
/// k-th score go to the lower class index, where NumPy's choice depends on its
/// algorithm).
fn top_k(pred: &[f32], classes: usize, label: &[f32], k: usize) -> f64 {
    let mut hits = 0u64;
    for (row, &l) in pred.chunks_exact(classes.max(1)).zip(label) {
        let Ok(target) = usize::try_from(as_i32(l)) else {
            continue;
        };
        let Some(&score) = row.get(target) else {
            continue;
        };
        // The label's rank: classes ahead of it (higher scores, or equal ones earlier).
        let ahead = row
            .iter()
            .enumerate()
            .filter(|&(c, &v)| above(v, score) || (c < target && v.total_cmp(&score).is_eq()))
            .count();
        hits += u64::from(ahead < k);
    }
    hits as f64
}

/// Σ −ln(p\[label\] + eps), the addition in float32 as NumPy does it.
fn cross_entropy(
    metric: &'static str,
    pred: &[f32],
    classes: usize,
    label: &[f32],
    eps: f64,
) -> Result<f64, MetricError> {
    let eps = eps as f32;
    let mut sum = 0.0;
    for (row, (p, &l)) in pred.chunks_exact(classes.max(1)).zip(label).enumerate() {
        let class = usize::try_from(l.trunc() as i64)
            .ok()
            .filter(|_| l.is_finite())
            .and_then(|c| p.get(c).copied());
        let Some(prob) = class else {
            return Err(MetricError::Label {
                metric,
                row,
                label: l,
                classes,
            });
        };
        sum -= f64::from(prob + eps).ln();
    }
    Ok(sum)
}

/// The batch's mean squared or absolute error (or the root of the former), with MXNet's
/// reshape of 1-D arrays to (n, 1) and NumPy's broadcasting. None when the shapes do not
/// broadcast, or would broadcast to more values than either side has.
fn regression(
    pred: &[f32],
    pred_shape: &[usize],
    label: &[f32],
    label_shape: &[usize],
    spec: &MetricSpec,
) -> Option<f64> {
    let column = |s: &[usize]| match *s {
        [n] => vec![n, 1],
        _ => s.to_vec(),
    };
    let (ps, ls) = (column(pred_shape), column(label_shape));
    let rank = ps.len().max(ls.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (ps, ls) = (pad(&ps), pad(&ls));
    let out: Vec<usize> = ps
        .iter()
        .zip(&ls)
        .map(|(&a, &b)| match (a, b) {
            _ if a == b => Some(a),
            (1, b) => Some(b),
            (a, 1) => Some(a),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let n = numel(&out);
    if n > pred.len().max(label.len()) {
        return None;
    }
    // Row-major strides, 0 along broadcast dims.
    let strides = |s: &[usize]| {
        let mut st = vec![0usize; s.len()];
        let mut acc = 1usize;
        for (&d, stride) in s.iter().zip(st.iter_mut()).rev() {
            *stride = if d == 1 { 0 } else { acc };
            acc = acc.saturating_mul(d);
        }
        st
    };
    let (pst, lst) = (strides(&ps), strides(&ls));
    let at = |idx: &[usize], st: &[usize]| idx.iter().zip(st).map(|(i, s)| i * s).sum::<usize>();
    let mut idx = vec![0usize; rank];
    let mut total = 0.0f64;
    for _ in 0..n {
        let d = f64::from(*label.get(at(&idx, &lst))?) - f64::from(*pred.get(at(&idx, &pst))?);
        total += match spec {
            MetricSpec::Mae(_) => d.abs(),
            _ => d * d,
        };
        for (i, &d) in idx.iter_mut().zip(&out).rev() {
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
    // NumPy's mean of nothing is NaN.
    let mean = total / n as f64;
    Some(match spec {
        MetricSpec::Rmse(_) => mean.sqrt(),
        _ => mean,
    })
}

/// Σ −ln max(p\[label\], 1e-10) over the labels not ignored, and their count. As MXNet's
/// `pick` (mode `clip`), a label is truncated to an integer and clipped into the classes;
/// an ignored label's probability becomes p·0 + 1 (so a NaN there still poisons the sum).
fn perplexity(pred: &[f32], classes: usize, label: &[f32], ignore: Option<f64>) -> (f64, u64) {
    let floor = 1e-10f32;
    let ignore = ignore.map(|l| l as f32);
    let mut sum = 0.0;
    let mut count = 0u64;
    let last = classes.saturating_sub(1) as i64;
    for (row, &l) in pred.chunks_exact(classes.max(1)).zip(label) {
        let c = as_i32(l).clamp(0, last) as usize;
        let mut p = row.get(c).copied().unwrap_or(f32::NAN);
        if ignore == Some(l) {
            p = p * 0.0 + 1.0;
        } else {
            count += 1;
        }
        sum -= f64::from(if p > floor || p.is_nan() { p } else { floor }).ln();
    }
    (sum, count)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn spec(json: &str) -> MetricSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn specs_parse_with_mxnet_names_and_defaults() {
        assert_eq!(
            spec(r#"{"name":"acc"}"#),
            MetricSpec::Accuracy(AccuracyArgs { axis: 1 })
        );
        assert_eq!(
            spec(r#"{"name":"top_k_acc","top_k":5}"#).mxnet_name(),
            "top_k_accuracy_5"
        );
        assert_eq!(
            spec(r#"{"name":"ce"}"#),
            MetricSpec::CrossEntropy(EpsArgs { eps: 1e-12 })
        );
        assert_eq!(spec(r#"{"name":"ce"}"#).key(), "cross_entropy");
        assert_eq!(spec(r#"{"name":"nll_loss"}"#).mxnet_name(), "nll-loss");
        assert_eq!(
            spec(r#"{"name":"perplexity","ignore_label":0}"#),
            MetricSpec::Perplexity(PerplexityArgs {
                ignore_label: Some(0.0),
                axis: -1
            })
        );
        for bad in [
            r#"{"name":"top_k_accuracy"}"#,
            r#"{"name":"mse","axis":1}"#,
            r#"{"name":"f1"}"#,
            r#"{"name":"accuracy","axs":1}"#,
        ] {
            assert!(serde_json::from_str::<MetricSpec>(bad).is_err(), "{bad}");
        }
        for bad in [
            r#"{"name":"top_k_accuracy","top_k":1}"#,
            r#"{"name":"ce","eps":-1}"#,
            r#"{"name":"perplexity","axis":0}"#,
        ] {
            assert!(Metric::new(spec(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn accuracy_counts_instances_and_mse_averages_batches() {
        let mut acc = Metric::new(spec(r#"{"name":"accuracy"}"#)).unwrap();
        assert!(acc.get().is_nan());
        acc.update(
            &[0.3, 0.7, 0.0, 1.0, 0.4, 0.6],
            &[3, 2],
            &[0.0, 1.0, 1.0],
            &[3],
        )
        .unwrap();
        assert_eq!(acc.get(), 2.0 / 3.0);
        acc.update(&[0.9, 0.1], &[1, 2], &[0.0], &[1]).unwrap();
        assert_eq!(acc.get(), 3.0 / 4.0);
        acc.reset();
        assert!(acc.get().is_nan());

        let mut mse = Metric::new(spec(r#"{"name":"mse"}"#)).unwrap();
        mse.update(&[1.0, 2.0, 3.0], &[3], &[1.0, 2.0, 5.0], &[3])
            .unwrap();
        mse.update(&[0.0], &[1], &[1.0], &[1]).unwrap();
        // (4/3 + 1) / 2, not 5 / 4.
        assert!((mse.get() - (4.0 / 3.0 + 1.0) / 2.0).abs() < 1e-15);
        assert_eq!(mse.count(), 2);
    }

    #[test]
    fn malformed_batches_are_refused_and_change_nothing() {
        let mut ce = Metric::new(spec(r#"{"name":"ce"}"#)).unwrap();
        ce.update(&[0.5, 0.5], &[1, 2], &[1.0], &[1]).unwrap();
        let before = ce.clone();
        for (pred, ps, label, ls) in [
            (
                &[0.5f32, 0.5][..],
                &[1usize, 2][..],
                &[2.0f32][..],
                &[1usize][..],
            ),
            (&[0.5, 0.5], &[1, 2], &[-1.0], &[1]),
            (&[0.5, 0.5], &[1, 2], &[f32::NAN], &[1]),
            (&[0.5, 0.5], &[1, 3], &[0.0], &[1]),
            (&[0.5, 0.5], &[2], &[0.0], &[1]),
            (&[0.5, 0.5], &[1, 2], &[0.0, 1.0], &[2]),
            (&[0.5, 0.5], &[usize::MAX, 2], &[0.0], &[1]),
        ] {
            assert!(ce.update(pred, ps, label, ls).is_err(), "{ps:?} {label:?}");
        }
        assert_eq!(ce, before);
        let mut mse = Metric::new(spec(r#"{"name":"mse"}"#)).unwrap();
        // (3, 1) against (1, 4) would broadcast to 12 values: refused.
        assert!(mse.update(&[0.0; 3], &[3, 1], &[0.0; 4], &[1, 4]).is_err());
        // (n,) against (n, 3): the label is broadcast along the row, as MXNet does.
        mse.update(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], &[2, 3], &[1.0, 0.0], &[2])
            .unwrap();
        assert!((mse.get() - 5.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn argmax_and_casts_follow_mxnet() {
        // Ties go to the first index; NaN wins.
        let mut acc = Metric::new(spec(r#"{"name":"accuracy"}"#)).unwrap();
        acc.update(
            &[1.0, 3.0, 3.0, 1.0, f32::NAN, 2.0],
            &[2, 3],
            &[1.0, 1.0],
            &[2],
        )
        .unwrap();
        assert_eq!(acc.get(), 1.0);
        // Equal shapes: the predictions are labels, truncated to integers.
        let mut acc = Metric::new(spec(r#"{"name":"accuracy"}"#)).unwrap();
        acc.update(&[1.7, -0.5, 2.0], &[3], &[1.0, 0.0, 3.0], &[3])
            .unwrap();
        assert_eq!(acc.get(), 2.0 / 3.0);
        assert_eq!(as_i32(f32::NAN), i64::from(i32::MIN));
        assert_eq!(as_i32(3e9), i64::from(i32::MIN));
        assert_eq!(as_i32(-2.9), -2);
    }
}
