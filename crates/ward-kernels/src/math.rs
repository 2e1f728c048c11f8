//! `exp`, `sigmoid` and `tanh` of `f32` in branch-free operations, so that the loops over
//! a layer's elements vectorise: glibc's scalar `expf`, `expm1f` and `tanhf` were a tenth
//! of the LSTM language model's step (docs/BENCHMARKS.md, "Training"). Each is within a
//! few ulp of the exact value (the tests measure it against `f64`), as libm's are;
//! MXNet's CPU kernels call libm, so results may differ from MXNet's in the last bits,
//! as they already do between machines.
//!
//! They are always inlined, so that a loop in an AVX-512 instance ([`crate::maps`],
//! [`crate::cells`]) vectorises them sixteen lanes wide.

/// `eˣ` for `x ≤ 0` (and NaN) within 2 ulp of the exact value, in operations that
/// vectorise (Cephes' `expf`: `x = n·ln 2 + r`, a degree-6 polynomial for `eʳ` on
/// |r| ≤ ln 2 / 2, `2ⁿ` made in the exponent bits). Below −87 (where `f32` turns
/// subnormal) it is 0; NaN stays NaN.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts: n·LN2_HI is exact for the n reached here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer, held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let xc = if x < -87.0 { -87.0 } else { x };
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // n in [−126, 0]: 2ⁿ's exponent field is n + 127.
    let bits = (t.to_bits() as i32)
        .wrapping_sub(0x4B40_0000)
        .wrapping_add(127);
    let scale = f32::from_bits((bits.clamp(0, 255) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        e * scale
    }
}

/// `1 / (1 + e⁻ˣ)`, computed from `e^-|x|` so that nothing overflows: `1 / (1 + e)` for
/// `x ≥ 0`, `e / (1 + e)` below. NaN stays NaN.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else if x < 0.0 {
        e * r
    } else {
        x
    }
}

/// `tanh(x)`: Cephes' `tanhf`. Below |x| = 0.625 an odd polynomial (where `1 − e` would
/// cancel); above, `(1 − e) / (1 + e)` with `e = e^-2|x|`, the sign restored. NaN stays
/// NaN.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * x
            + x;
    let e = exp_nonpositive(-2.0 * a);
    let large = ((1.0 - e) / (1.0 + e)).copysign(x);
    if a < 0.625 {
        small
    } else if a >= 0.625 {
        large
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest relative error of `f` against `exact` over a fine sweep of `range`.
    fn worst(f: fn(f32) -> f32, exact: fn(f64) -> f64, range: (f32, f32), step: f32) -> f64 {
        let mut worst = 0.0f64;
        let mut x = range.0;
        while x < range.1 {
            let want = exact(f64::from(x));
            let got = f64::from(f(x));
            if want != 0.0 {
                worst = worst.max((got - want).abs() / want.abs());
            }
            x += step;
        }
        worst
    }

    #[test]
    fn exp_nonpositive_is_within_two_ulp() {
        let e = worst(exp_nonpositive, f64::exp, (-87.0, 0.0), 0.000_37);
        assert!(e < 2.5e-7, "relative error {e:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_is_within_a_few_ulp() {
        let exact = |x: f64| 1.0 / (1.0 + (-x).exp());
        let e = worst(sigmoid, exact, (-87.0, 30.0), 0.000_31);
        assert!(e < 4e-7, "relative error {e:e}");
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(100.0), 1.0);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert_eq!(sigmoid(-100.0), 0.0);
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_is_within_a_few_ulp() {
        let e = worst(tanh, f64::tanh, (-20.0, 20.0), 0.000_13);
        assert!(e < 4e-7, "relative error {e:e}");
        // Tiny arguments keep their value (and sign), as libm's tanh does.
        for x in [1e-30f32, -1e-30, 1e-8, -3e-5] {
            assert_eq!(tanh(x), x);
        }
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert!(tanh(f32::NAN).is_nan());
    }
}
