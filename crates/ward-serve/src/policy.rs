//! The output policy against model extraction (threat T6).
//!
//! Three sources, and the strictest of each setting wins: the package's signed
//! `output_policy`, the server's `[output]`, and the model's `[model.NAME.output]`. The
//! server can only tighten what the package says: a smaller precision, a smaller top-k,
//! label-only on.
//!
//! Applied to every output, along its last axis (the class axis of a classifier):
//! - `precision = N`: values rounded to N decimals;
//! - `top_k = K`: all but the K highest values of each row set to 0 (the shape a client
//!   expects is kept);
//! - `label_only`: each row replaced by the index of its highest value (INT64, the last
//!   axis dropped).

use serde::de::{self, Deserializer};
use serde::Deserialize;
use ward_core::{DType, Tensor};
use ward_package::OutputPolicy;

/// Decimals the server keeps when no configuration says otherwise. Rounding is friction
/// for an extraction attack, not a defence; budgets and top-k/label-only are the stronger
/// controls, but a default of full float precision would hand out the most.
pub const DEFAULT_PRECISION: u32 = 3;
/// Most decimals a policy may ask for (an f32 carries about 9 significant digits).
pub const MAX_PRECISION: u32 = 9;

/// `precision` in the configuration: a number of decimals, or `"full"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Full,
    Decimals(u32),
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Precision::Decimals(n)),
            Raw::Text(t) if t == "full" => Ok(Precision::Full),
            Raw::Text(t) => Err(de::Error::custom(format!(
                "precision must be a number of decimals or \"full\", not {t:?}"
            ))),
        }
    }
}

/// The `[output]` table of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub precision: Precision,
    pub top_k: Option<u32>,
    pub label_only: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            precision: Precision::Decimals(DEFAULT_PRECISION),
            top_k: None,
            label_only: false,
        }
    }
}

impl PolicyConfig {
    /// A per-model table adds nothing of its own unless it says so.
    pub fn none() -> Self {
        PolicyConfig {
            precision: Precision::Full,
            top_k: None,
            label_only: false,
        }
    }

    pub fn precision(&self) -> Option<u32> {
        match self.precision {
            Precision::Full => None,
            Precision::Decimals(n) => Some(n),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.precision() {
            if p > MAX_PRECISION {
                return Err(format!(
                    "precision {p} is over the maximum of {MAX_PRECISION}"
                ));
            }
        }
        if self.top_k == Some(0) {
            return Err("top_k must be at least 1".into());
        }
        Ok(())
    }
}

/// The policy in force for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EffectivePolicy {
    pub precision: Option<u32>,
    pub top_k: Option<u32>,
    pub label_only: bool,
}

fn strictest(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl EffectivePolicy {
    /// The strictest combination of the package's policy and the configuration's.
    pub fn combine(package: &OutputPolicy, configs: &[&PolicyConfig]) -> EffectivePolicy {
        let mut p = EffectivePolicy {
            precision: package.precision.map(|p| p.min(MAX_PRECISION)),
            top_k: package.top_k,
            label_only: package.label_only,
        };
        for c in configs {
            p.precision = strictest(p.precision, c.precision());
            p.top_k = strictest(p.top_k, c.top_k);
            p.label_only |= c.label_only;
        }
        p
    }

    /// The datatype and shape a client sees for an output declared as `shape`.
    pub fn visible_output(&self, dtype: DType, shape: &[i64]) -> (DType, Vec<i64>) {
        if self.label_only {
            (DType::I64, without_last(shape).to_vec())
        } else {
            (dtype, shape.to_vec())
        }
    }

    /// Applies the policy to one float32 output.
    pub fn apply(&self, tensor: Tensor) -> Tensor {
        let shape = tensor.shape().to_vec();
        let mut values = tensor.to_f32_vec();
        let row = shape.last().copied().unwrap_or(1).max(1);
        if self.label_only {
            let labels: Vec<u8> = values
                .chunks(row)
                .flat_map(|r| (argmax(r) as i64).to_le_bytes())
                .collect();
            return Tensor::from_bytes(DType::I64, without_last(&shape).to_vec(), labels)
                .unwrap_or(tensor);
        }
        if let Some(k) = self.top_k {
            let k = k as usize;
            if k < row {
                for r in values.chunks_mut(row) {
                    keep_top_k(r, k);
                }
            }
        }
        if let Some(decimals) = self.precision {
            let scale = 10f64.powi(decimals as i32);
            for v in &mut values {
                if v.is_finite() {
                    *v = ((*v as f64 * scale).round() / scale) as f32;
                }
            }
        }
        Tensor::from_f32(shape, &values).unwrap_or(tensor)
    }
}

/// A shape without its last dimension (a label per row of classes).
fn without_last<T>(shape: &[T]) -> &[T] {
    shape.split_last().map_or(shape, |(_, rest)| rest)
}

/// Index of the highest value; the first on ties; NaN never wins.
fn argmax(row: &[f32]) -> usize {
    let mut best = (0, f32::NAN);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 || best.1.is_nan() {
            best = (i, v);
        }
    }
    best.0
}

/// Sets every value but the `k` highest to 0 (the earliest win ties).
fn keep_top_k(row: &mut [f32], k: usize) {
    let mut order: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
    order.sort_by(|&(a, x), &(b, y)| {
        y.partial_cmp(&x)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    for &(i, _) in order.iter().skip(k) {
        if let Some(v) = row.get_mut(i) {
            *v = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs() -> Tensor {
        Tensor::from_f32(
            vec![2, 4],
            &[0.1234567, 0.5, 0.2765433, 0.1, 0.7, 0.1, 0.15, 0.05],
        )
        .unwrap()
    }

    #[test]
    fn the_server_can_only_tighten_the_package_policy() {
        let package = OutputPolicy {
            precision: Some(4),
            top_k: Some(3),
            label_only: false,
        };
        let loose = PolicyConfig {
            precision: Precision::Decimals(8),
            top_k: Some(10),
            label_only: false,
        };
        let p = EffectivePolicy::combine(&package, &[&loose]);
        assert_eq!(
            (p.precision, p.top_k, p.label_only),
            (Some(4), Some(3), false)
        );
        let full = PolicyConfig::none();
        let p = EffectivePolicy::combine(&OutputPolicy::default(), &[&full]);
        assert_eq!(p, EffectivePolicy::default());
        let strict = PolicyConfig {
            precision: Precision::Decimals(2),
            top_k: Some(1),
            label_only: true,
        };
        let p = EffectivePolicy::combine(&package, &[&full, &strict]);
        assert_eq!(
            (p.precision, p.top_k, p.label_only),
            (Some(2), Some(1), true)
        );
    }

    #[test]
    fn rounding_top_k_and_labels() {
        let rounded = EffectivePolicy {
            precision: Some(2),
            ..Default::default()
        }
        .apply(probs());
        assert_eq!(
            rounded.to_f32_vec(),
            vec![0.12, 0.5, 0.28, 0.1, 0.7, 0.1, 0.15, 0.05]
        );
        let top2 = EffectivePolicy {
            top_k: Some(2),
            ..Default::default()
        }
        .apply(probs());
        assert_eq!(
            top2.to_f32_vec(),
            vec![0.0, 0.5, 0.2765433, 0.0, 0.7, 0.0, 0.15, 0.0]
        );
        let policy = EffectivePolicy {
            label_only: true,
            precision: Some(1),
            top_k: Some(1),
        };
        let labels = policy.apply(probs());
        assert_eq!(labels.dtype(), DType::I64);
        assert_eq!(labels.shape(), &[2]);
        assert_eq!(labels.to_f64_vec(), vec![1.0, 0.0]);
        assert_eq!(
            policy.visible_output(DType::F32, &[-1, 4]),
            (DType::I64, vec![-1])
        );
    }

    #[test]
    fn precision_parses_as_number_or_full() {
        let c: PolicyConfig = toml::from_str("precision = 5").unwrap();
        assert_eq!(c.precision(), Some(5));
        let c: PolicyConfig = toml::from_str("precision = \"full\"").unwrap();
        assert_eq!(c.precision(), None);
        let c: PolicyConfig = toml::from_str("").unwrap();
        assert_eq!(c.precision(), Some(DEFAULT_PRECISION));
        assert!(toml::from_str::<PolicyConfig>("precision = \"x\"").is_err());
        let c: PolicyConfig = toml::from_str("precision = 12").unwrap();
        assert!(c.validate().unwrap_err().contains("maximum"));
    }
}
