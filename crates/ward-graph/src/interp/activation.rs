//! Activations (MXNet 1.9.1 `Activation`, `LeakyReLU`), softmax and log-softmax, and
//! `SoftmaxOutput`'s forward pass.

#![allow(
    clippy::indexing_slicing,
    reason = "the reference kernels index tensors whose shapes `infer_shapes` checked before `eval` runs them; a wrong index is a bug in the kernel, which the conformance tests catch, never something input can reach"
)]

use super::{resolve_axis, Array, KResult, KernelError};

/// MXNet `Activation`'s `act_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationKind {
    Relu,
    Sigmoid,
    Tanh,
    Softrelu,
    Softsign,
}

pub fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// MXNet `Activation`, element by element:
/// * relu: `x > 0 ? x : 0`, so **NaN becomes 0** (unlike the standalone `relu` operator,
///   which keeps NaN; both checked against MXNet 1.9.1);
/// * sigmoid: 1/(1 + e^−x); tanh;
/// * softrelu: `x > 20 ? x : ln(1 + eˣ)` (MXNet's cut-off, kept for exactness);
/// * softsign: x/(1 + |x|).
pub fn activation(x: &Array, kind: ActivationKind) -> KResult<Array> {
    Ok(match kind {
        ActivationKind::Relu => x.map(|v| if v > 0.0 { v } else { 0.0 }),
        ActivationKind::Sigmoid => x.map(sigmoid),
        ActivationKind::Tanh => x.map(f64::tanh),
        ActivationKind::Softrelu => x.map(|v| if v > 20.0 { v } else { v.exp().ln_1p() }),
        ActivationKind::Softsign => x.map(|v| v / (1.0 + v.abs())),
    })
}

/// SELU's λ and α, as MXNet writes them.
pub const SELU_LAMBDA: f64 = 1.0507009873554805;
pub const SELU_ALPHA: f64 = 1.6732632423543772;

/// MXNet `LeakyReLU`'s `act_type` with its slope attributes (MXNet's default slope is
/// 0.25 for leaky and elu; rrelu's bounds default to 0.125 and 0.334).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeakyReluKind {
    /// `x > 0 ? x : slope·x`
    Leaky { slope: f64 },
    /// `x > 0 ? x : slope·(eˣ − 1)`
    Elu { slope: f64 },
    /// Leaky with a learned slope `gamma` per channel on axis 1, or one for all.
    Prelu,
    /// λ·(x > 0 ? x : α·(eˣ − 1))
    Selu,
    /// The exact (erf) form, 0.5·x·(1 + erf(x/√2)).
    Gelu,
    /// At inference rrelu is leaky with the mean slope (lower + upper)/2.
    Rrelu { lower: f64, upper: f64 },
}

/// MXNet `LeakyReLU` at inference. `gamma` is read only for prelu: shape (C) with C =
/// `x.shape[1]` (broadcast along axis 1), or (1); MXNet needs rank ≥ 2 data for prelu.
pub fn leaky_relu(x: &Array, kind: LeakyReluKind, gamma: Option<&Array>) -> KResult<Array> {
    const OP: &str = "LeakyReLU";
    let leaky = |slope: f64| x.map(|v| if v > 0.0 { v } else { v * slope });
    match kind {
        LeakyReluKind::Leaky { slope } => Ok(leaky(slope)),
        LeakyReluKind::Rrelu { lower, upper } => Ok(leaky((lower + upper) / 2.0)),
        LeakyReluKind::Elu { slope } => Ok(x.map(|v| if v > 0.0 { v } else { slope * v.exp_m1() })),
        LeakyReluKind::Selu => {
            Ok(x.map(|v| SELU_LAMBDA * if v > 0.0 { v } else { SELU_ALPHA * v.exp_m1() }))
        }
        LeakyReluKind::Gelu => Ok(x.map(|v| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)))),
        LeakyReluKind::Prelu => {
            let g = gamma.ok_or_else(|| KernelError::new(OP, "prelu needs gamma"))?;
            if x.rank() < 2 {
                return Err(KernelError::new(
                    OP,
                    format!(
                        "prelu needs data of rank 2 or more, got shape {:?}",
                        x.shape
                    ),
                ));
            }
            let c = x.shape[1];
            if g.shape != [c] && g.shape != [1] {
                return Err(KernelError::new(
                    OP,
                    format!("gamma must have shape [{c}] or [1], got {:?}", g.shape),
                ));
            }
            let inner: usize = x.shape[2..].iter().product();
            let mut out = x.clone();
            for (i, v) in out.data.iter_mut().enumerate() {
                let slope = if g.len() == 1 {
                    g.data[0]
                } else {
                    g.data[(i / inner.max(1)) % c]
                };
                if *v <= 0.0 {
                    *v *= slope;
                }
            }
            Ok(out)
        }
    }
}

/// The error function, accurate to about 1e-15: its Taylor series below |x| = 2.5, the
/// continued fraction of erfc above (std has no erf).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 2.5 {
        // erf(x) = 2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n+1))
        let mut term = a;
        let mut sum = a;
        let x2 = a * a;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else if a < 6.0 {
        // erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))
        let mut f = a;
        for k in (1..=80).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    } else {
        1.0
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// Softmax of `x / temperature` along `axis` (MXNet `softmax`; its defaults are axis −1
/// and temperature 1). Computed stably (the maximum of each row is subtracted first).
pub fn softmax(x: &Array, axis: i64, temperature: f64) -> KResult<Array> {
    softmax_impl("softmax", x, axis, temperature, false, None)
}

/// [`softmax`] of the first `lengths` elements of each lane along `axis` (MXNet's
/// `use_length`); the rest of the lane is 0. `lengths` has x's shape without the axis;
/// a length past the axis takes the whole lane, and one of 0 or below gives zeros.
pub fn softmax_with_lengths(
    x: &Array,
    lengths: &Array,
    axis: i64,
    temperature: f64,
) -> KResult<Array> {
    softmax_impl("softmax", x, axis, temperature, false, Some(lengths))
}

/// `log(softmax(x / temperature))` along `axis` (MXNet `log_softmax`).
pub fn log_softmax(x: &Array, axis: i64, temperature: f64) -> KResult<Array> {
    softmax_impl("log_softmax", x, axis, temperature, true, None)
}

fn softmax_impl(
    op: &'static str,
    x: &Array,
    axis: i64,
    temperature: f64,
    log: bool,
    lengths: Option<&Array>,
) -> KResult<Array> {
    if temperature == 0.0 || !temperature.is_finite() {
        return Err(KernelError::new(
            op,
            format!("temperature {temperature} must be finite and nonzero"),
        ));
    }
    let a = resolve_axis(op, axis, x.rank())?;
    let outer: usize = x.shape[..a].iter().product();
    let len = x.shape[a];
    let inner: usize = x.shape[a + 1..].iter().product();
    if let Some(l) = lengths {
        if l.len() != outer * inner {
            return Err(KernelError::new(
                op,
                format!("{} lengths for {} lanes", l.len(), outer * inner),
            ));
        }
    }
    let mut out = x.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let valid = match lengths {
                // Lengths are integers; MXNet counts the first `length` elements.
                Some(l) => l.data[o * inner + i].clamp(0.0, len as f64) as usize,
                None => len,
            };
            for j in valid..len {
                out.data[at(j)] = 0.0;
            }
            let scaled: Vec<f64> = (0..valid).map(|j| x.data[at(j)] / temperature).collect();
            let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scaled.iter().map(|v| (v - max).exp()).sum();
            for (j, v) in scaled.iter().enumerate() {
                out.data[at(j)] = if log {
                    v - max - sum.ln()
                } else {
                    (v - max).exp() / sum
                };
            }
        }
    }
    Ok(out)
}

/// How `SoftmaxOutput` groups its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxOutputMode {
    /// The default: softmax over all axes after the first, as if reshaped to (N, −1) —
    /// except for 4-D data, see [`softmax_output`].
    Flatten,
    /// `multi_output`: softmax over axis 1 at every other position.
    MultiOutput,
    /// `preserve_shape`: softmax over the last axis.
    PreserveShape,
}

/// `SoftmaxOutput`'s forward pass (the label is read only by the gradient). With both
/// `multi_output` and `preserve_shape` set MXNet uses `multi_output`.
///
/// **4-D data in the default mode** is flattened like every other rank, as MXNet's own CPU
/// kernel, its GPU kernel and its documentation do. MXNet 1.9.1 as published on PyPI
/// differs: its oneDNN kernel, which takes 4-D float32 data, normalises over the last
/// axis only (the fixture `softmaxoutput_flatten_4d` records it). Ward keeps the
/// documented meaning; for 2-D data, the usual case, the two agree.
pub fn softmax_output(x: &Array, mode: SoftmaxOutputMode) -> KResult<Array> {
    const OP: &str = "SoftmaxOutput";
    match mode {
        SoftmaxOutputMode::Flatten => {
            if x.rank() == 0 {
                return Err(KernelError::new(OP, "data must have at least one axis"));
            }
            let n = x.shape[0];
            let rest = x.len().checked_div(n).unwrap_or(0);
            let flat = x.reshaped(vec![n, rest])?;
            softmax_impl(OP, &flat, 1, 1.0, false, None)?.reshaped(x.shape.clone())
        }
        SoftmaxOutputMode::MultiOutput => {
            if x.rank() < 2 {
                return Err(KernelError::new(
                    OP,
                    format!("multi_output needs rank 2 or more, got shape {:?}", x.shape),
                ));
            }
            softmax_impl(OP, x, 1, 1.0, false, None)
        }
        SoftmaxOutputMode::PreserveShape => softmax_impl(OP, x, -1, 1.0, false, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::test_util::{assert_close, pseudo_random};

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (-1.5, -0.9661051464753108),
            (2.0, 0.9953222650189527),
            (2.5, 0.999593047982555),
            (3.0, 0.9999779095030014),
            (4.5, 0.9999999998033839),
            (7.0, 1.0),
        ] {
            assert!(
                (erf(x) - want).abs() < 2e-15,
                "erf({x}) = {} vs {want}",
                erf(x)
            );
        }
        assert!(erf(f64::NAN).is_nan());
    }

    #[test]
    fn activations_hand_checked() {
        let x = Array::vector(&[-2.0, 0.0, 3.0, f64::NAN, 30.0]);
        let r = activation(&x, ActivationKind::Relu).unwrap();
        assert_eq!(r.data[..3], [0.0, 0.0, 3.0]);
        assert_eq!(r.data[3], 0.0, "Activation relu maps NaN to 0");
        let s = activation(&x, ActivationKind::Softrelu).unwrap();
        assert!((s.data[0] - (1.0 + (-2.0f64).exp()).ln()).abs() < 1e-15);
        assert_eq!(s.data[4], 30.0);
        let s = activation(&x, ActivationKind::Softsign).unwrap();
        assert_eq!(s.data[2], 0.75);
        let l = leaky_relu(&x, LeakyReluKind::Leaky { slope: 0.1 }, None).unwrap();
        assert_eq!(l.data[0], -0.2);
        assert!(l.data[3].is_nan());
        let e = leaky_relu(
            &x,
            LeakyReluKind::Rrelu {
                lower: 0.1,
                upper: 0.3,
            },
            None,
        )
        .unwrap();
        assert!((e.data[0] + 0.4).abs() < 1e-15);
        let g = leaky_relu(&Array::vector(&[1.0]), LeakyReluKind::Gelu, None).unwrap();
        assert!((g.data[0] - 0.8413447460685429).abs() < 1e-15);
        let s = leaky_relu(&Array::vector(&[-1.0, 1.0]), LeakyReluKind::Selu, None).unwrap();
        assert!((s.data[0] - SELU_LAMBDA * SELU_ALPHA * (-1.0f64).exp_m1()).abs() < 1e-15);
        assert_eq!(s.data[1], SELU_LAMBDA);
    }

    #[test]
    fn prelu_slopes_follow_axis_one() {
        let x = Array::new(vec![1, 2, 2], vec![-1.0, 2.0, -3.0, -4.0]).unwrap();
        let y = leaky_relu(&x, LeakyReluKind::Prelu, Some(&Array::vector(&[0.5, 0.25]))).unwrap();
        assert_eq!(y.data, vec![-0.5, 2.0, -0.75, -1.0]);
        let y = leaky_relu(&x, LeakyReluKind::Prelu, Some(&Array::vector(&[0.5]))).unwrap();
        assert_eq!(y.data, vec![-0.5, 2.0, -1.5, -2.0]);
        assert!(leaky_relu(&x, LeakyReluKind::Prelu, Some(&Array::vector(&[0.5; 3]))).is_err());
        assert!(leaky_relu(&x, LeakyReluKind::Prelu, None).is_err());
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let x = pseudo_random(vec![2, 3, 4], 3).map(|v| v * 50.0);
        for axis in [-1, 0, 1, 2] {
            let s = softmax(&x, axis, 0.7).unwrap();
            let a = if axis < 0 { 2 } else { axis as usize };
            let mut sums = vec![0.0; x.len() / x.shape[a]];
            let other: Vec<usize> = (0..3).filter(|&i| i != a).collect();
            for (flat, idx) in crate::interp::array::indices(&x.shape).enumerate() {
                sums[idx[other[0]] * x.shape[other[1]] + idx[other[1]]] += s.data[flat];
            }
            assert!(
                sums.iter().all(|v| (v - 1.0).abs() < 1e-12),
                "{axis}: {sums:?}"
            );
            let l = log_softmax(&x, axis, 0.7).unwrap();
            assert_close(&l.map(f64::exp), &s, 1e-12);
        }
        let e = softmax(&x, 3, 1.0).unwrap_err();
        assert!(e.to_string().contains("axis 3"));
        assert!(softmax(&x, 0, 0.0).is_err());
    }

    #[test]
    fn softmax_output_modes() {
        let x = pseudo_random(vec![2, 3, 4], 4);
        let flat = softmax_output(&x, SoftmaxOutputMode::Flatten).unwrap();
        assert!((flat.data[..12].iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // 4-D is flattened too (MXNet's documented meaning, not its oneDNN kernel's).
        let x4 = pseudo_random(vec![2, 3, 2, 2], 5);
        let flat4 = softmax_output(&x4, SoftmaxOutputMode::Flatten).unwrap();
        assert!((flat4.data[..12].iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_close(
            &softmax_output(&x, SoftmaxOutputMode::MultiOutput).unwrap(),
            &softmax(&x, 1, 1.0).unwrap(),
            0.0,
        );
        assert_close(
            &softmax_output(&x, SoftmaxOutputMode::PreserveShape).unwrap(),
            &softmax(&x, -1, 1.0).unwrap(),
            0.0,
        );
    }
}
