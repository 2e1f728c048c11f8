//! MXNet 1.9.1's parameter initializers (`mx.init`), declared as data.
//!
//! An [`InitSpec`] names one of MXNet's initializers with its keyword arguments (defaults
//! explicit, every value range-checked by [`InitSpec::validate`]). As in MXNet, the
//! initializer only decides a parameter's *weight* rule; every other parameter gets a
//! constant chosen by the end of its name ([`rule_for`], MXNet's `Initializer.__call__`
//! and `_legacy_init`): `bias` 0, `gamma` 1, `beta` 0, the BatchNorm statistics 0 and 1.
//! A name no rule covers is refused, naming the parameter, as MXNet raises.
//!
//! Random values come from the run's stream `(Purpose::Init, index)`, where `index` is
//! the parameter's position in the graph's parameter list, so a parameter's values depend
//! only on the seed and that position, never on the order in which anything else was
//! drawn. Ward's generator is not MXNet's, so the bits differ from MXNet's; the
//! distributions (the uniform bound, the normal standard deviation) are MXNet's, checked
//! against MXNet itself by `tests/it/init.rs` on `tests/fixtures/init/`
//! (`tools/make_init_fixtures.py`).

use serde::{Deserialize, Serialize};
use ward_core::random::rand_core::Rng;
use ward_core::random::{ChaCha20Rng, Purpose, RunSeed, SeedError};
use ward_core::DType;
use ward_graph::ir::Graph;

/// Most elements one parameter may have (as shape inference bounds every value).
pub const MAX_INIT_ELEMENTS: usize = 1 << 30;

/// Why a parameter could not be initialized.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A declared value is outside its range.
    #[error("initializer `{init}`: `{field}` = {value} is out of range: must be {allowed}")]
    OutOfRange {
        init: &'static str,
        field: &'static str,
        value: f64,
        allowed: &'static str,
    },
    /// No rule of MXNet's covers the parameter's name (MXNet raises `ValueError`).
    #[error(
        "parameter `{param}`: unknown initialization pattern; names must end in weight, bias, \
         gamma, beta, moving_mean, moving_var, moving_inv_var, moving_avg, running_mean, \
         running_var, min or max (as MXNet's)"
    )]
    UnknownPattern { param: String },
    /// Xavier (and MSRAPrelu) need a fan in and a fan out (MXNet raises `ValueError`).
    #[error(
        "parameter `{param}`: `{init}` cannot initialize a tensor of shape {shape:?}: it needs \
         at least 2 dims"
    )]
    NeedsTwoDims {
        param: String,
        init: &'static str,
        shape: Vec<usize>,
    },
    /// The shape's element count overflows or exceeds [`MAX_INIT_ELEMENTS`].
    #[error("parameter `{param}`: shape {shape:?} has more than {MAX_INIT_ELEMENTS} elements")]
    TooLarge { param: String, shape: Vec<usize> },
    /// The memory for the values could not be reserved.
    #[error("parameter `{param}`: cannot reserve memory for {elements} values")]
    OutOfMemory { param: String, elements: usize },
    /// Ward initializes float32 parameters only.
    #[error("parameter `{param}`: ward initializes float32 parameters, not {dtype:?}")]
    DType { param: String, dtype: DType },
    /// Given weights of another length than the parameter's shape.
    #[error("parameter `{param}`: {found} values given, its shape {shape:?} holds {expected}")]
    LengthMismatch {
        param: String,
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
    /// One weight list entry per graph parameter is needed.
    #[error("{found} weight entries given for a graph of {expected} parameters")]
    Count { expected: usize, found: usize },
    /// The parameter's stream could not be made (an index beyond the stream ids).
    #[error(transparent)]
    Seed(#[from] SeedError),
}

/// How Xavier draws (`rnd_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RndType {
    /// U(−s, s).
    #[default]
    Uniform,
    /// N(0, s²).
    Gaussian,
}

/// Which fan divides the magnitude (`factor_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorType {
    /// (fan_in + fan_out) / 2.
    #[default]
    Avg,
    /// fan_in.
    In,
    /// fan_out.
    Out,
}

/// `mx.init.Xavier`: s = √(magnitude / factor), factor from the fans.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Xavier {
    /// Uniform or gaussian (default uniform).
    pub rnd_type: RndType,
    /// avg, in or out (default avg).
    pub factor_type: FactorType,
    /// Finite and > 0 (default 3).
    pub magnitude: f64,
}

impl Default for Xavier {
    fn default() -> Self {
        Xavier {
            rnd_type: RndType::Uniform,
            factor_type: FactorType::Avg,
            magnitude: 3.0,
        }
    }
}

/// `mx.init.Uniform`: U(−scale, scale).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Uniform {
    /// Finite and > 0 (default 0.07).
    pub scale: f64,
}

impl Default for Uniform {
    fn default() -> Self {
        Uniform { scale: 0.07 }
    }
}

/// `mx.init.Normal`: N(0, sigma²).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Normal {
    /// Finite and > 0 (default 0.01).
    pub sigma: f64,
}

impl Default for Normal {
    fn default() -> Self {
        Normal { sigma: 0.01 }
    }
}

/// `mx.init.MSRAPrelu`: gaussian Xavier with magnitude 2 / (1 + slope²).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MsraPrelu {
    /// avg, in or out (default avg).
    pub factor_type: FactorType,
    /// The initial slope of the PReLUs that follow; finite (default 0.25).
    pub slope: f64,
}

impl Default for MsraPrelu {
    fn default() -> Self {
        MsraPrelu {
            factor_type: FactorType::Avg,
            slope: 0.25,
        }
    }
}

/// `mx.init.Constant` with a scalar value (MXNet also takes an array; ward does not).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constant {
    /// Finite; required (MXNet has no default).
    pub value: f64,
}

/// An empty body: `zero` and `one` take no arguments, and an unknown key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// One of MXNet's initializers with its arguments, as a spec file declares it:
/// `{ name = "xavier", magnitude = 2.0 }`. Names are MXNet's registry names; MXNet's
/// aliases (`zeros`, `ones`, `msraprelu`) are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum InitSpec {
    Xavier(Xavier),
    Uniform(Uniform),
    Normal(Normal),
    #[serde(alias = "msraprelu")]
    MsraPrelu(MsraPrelu),
    #[serde(alias = "zeros")]
    Zero(NoArgs),
    #[serde(alias = "ones")]
    One(NoArgs),
    Constant(Constant),
}

impl Default for InitSpec {
    /// Ward's default when a spec names none: MXNet's `Xavier()` defaults (the
    /// initializer MXNet's own examples train with; MXNet's `init_params` itself defaults
    /// to `Uniform(0.01)`).
    fn default() -> Self {
        InitSpec::Xavier(Xavier::default())
    }
}

fn range(
    init: &'static str,
    field: &'static str,
    value: f64,
    ok: bool,
    allowed: &'static str,
) -> Result<(), InitError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(InitError::OutOfRange {
            init,
            field,
            value,
            allowed,
        })
    }
}

impl InitSpec {
    /// MXNet's registry name.
    pub fn name(&self) -> &'static str {
        match self {
            InitSpec::Xavier(_) => "xavier",
            InitSpec::Uniform(_) => "uniform",
            InitSpec::Normal(_) => "normal",
            InitSpec::MsraPrelu(_) => "msra_prelu",
            InitSpec::Zero(_) => "zero",
            InitSpec::One(_) => "one",
            InitSpec::Constant(_) => "constant",
        }
    }

    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), InitError> {
        let n = self.name();
        match *self {
            InitSpec::Xavier(x) => range(n, "magnitude", x.magnitude, x.magnitude > 0.0, "> 0"),
            InitSpec::Uniform(u) => range(n, "scale", u.scale, u.scale > 0.0, "> 0"),
            InitSpec::Normal(v) => range(n, "sigma", v.sigma, v.sigma > 0.0, "> 0"),
            // Any finite slope gives a positive magnitude.
            InitSpec::MsraPrelu(m) => range(n, "slope", m.slope, true, "finite"),
            InitSpec::Constant(c) => range(n, "value", c.value, true, "finite"),
            InitSpec::Zero(_) | InitSpec::One(_) => Ok(()),
        }
    }
}

/// What a parameter's name makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The initializer's weight rule.
    Weight,
    /// All zeros.
    Zero,
    /// All ones.
    One,
}

/// Name endings and their rules. MXNet's `_legacy_init` (the superset of its two paths;
/// `Initializer.__call__` gives the BatchNorm statistics the same values through their
/// variables' `__init__` attribute), plus Gluon BatchNorm's `running_mean` (zeros) and
/// `running_var` (ones), which Gluon declares explicitly. No two endings overlap, so the
/// order does not matter. MXNet's prefix rules (`upsampling*` bilinear, `stn_loc*`) and
/// the quantized endings are not taken: such a parameter falls to its ending or is refused.
const RULES: &[(&str, Rule)] = &[
    ("weight", Rule::Weight),
    ("bias", Rule::Zero),
    ("gamma", Rule::One),
    ("beta", Rule::Zero),
    ("moving_mean", Rule::Zero),
    ("moving_var", Rule::One),
    ("moving_inv_var", Rule::Zero),
    ("moving_avg", Rule::Zero),
    ("running_mean", Rule::Zero),
    ("running_var", Rule::One),
    ("min", Rule::Zero),
    ("max", Rule::One),
];

/// The rule MXNet applies to a parameter of this name (a plain suffix test, as MXNet's
/// `str.endswith`: `myweight` is a weight).
pub fn rule_for(name: &str) -> Result<Rule, InitError> {
    RULES
        .iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|&(_, rule)| rule)
        .ok_or_else(|| InitError::UnknownPattern {
            param: name.to_owned(),
        })
}

/// The distribution a parameter is filled from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// Every value this constant.
    Constant(f32),
    /// U(−bound, bound): MXNet's `random.uniform(-bound, bound)`.
    Uniform { bound: f64 },
    /// N(0, std²): MXNet's `random.normal(0, std)`.
    Normal { std: f64 },
}

/// The number of elements of `shape`, bounded by [`MAX_INIT_ELEMENTS`].
fn elements(name: &str, shape: &[usize]) -> Result<usize, InitError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_INIT_ELEMENTS)
        .ok_or_else(|| InitError::TooLarge {
            param: name.to_owned(),
            shape: shape.to_vec(),
        })
}

/// Xavier's scale: √(magnitude / factor) with MXNet's fans: hw = ∏ shape\[2..\],
/// fan_in = shape\[1\]·hw, fan_out = shape\[0\]·hw (in f64, as MXNet computes it).
fn xavier_scale(
    init: &'static str,
    name: &str,
    shape: &[usize],
    factor_type: FactorType,
    magnitude: f64,
) -> Result<f64, InitError> {
    let (&out, &inp) = match shape {
        [out, inp, ..] => (out, inp),
        _ => {
            return Err(InitError::NeedsTwoDims {
                param: name.to_owned(),
                init,
                shape: shape.to_vec(),
            })
        }
    };
    let hw: f64 = shape.iter().skip(2).map(|&d| d as f64).product();
    let fan_in = inp as f64 * hw;
    let fan_out = out as f64 * hw;
    let factor = match factor_type {
        FactorType::Avg => (fan_in + fan_out) / 2.0,
        FactorType::In => fan_in,
        FactorType::Out => fan_out,
    };
    Ok((magnitude / factor).sqrt())
}

/// The distribution MXNet 1.9.1 fills parameter `name` of `shape` from under `spec`.
pub fn plan(spec: &InitSpec, name: &str, shape: &[usize]) -> Result<Fill, InitError> {
    spec.validate()?;
    Ok(match rule_for(name)? {
        Rule::Zero => Fill::Constant(0.0),
        Rule::One => Fill::Constant(1.0),
        Rule::Weight => match *spec {
            InitSpec::Zero(_) => Fill::Constant(0.0),
            InitSpec::One(_) => Fill::Constant(1.0),
            InitSpec::Constant(c) => Fill::Constant(c.value as f32),
            InitSpec::Uniform(u) => Fill::Uniform { bound: u.scale },
            InitSpec::Normal(n) => Fill::Normal { std: n.sigma },
            InitSpec::Xavier(x) => {
                let s = xavier_scale("xavier", name, shape, x.factor_type, x.magnitude)?;
                match x.rnd_type {
                    RndType::Uniform => Fill::Uniform { bound: s },
                    RndType::Gaussian => Fill::Normal { std: s },
                }
            }
            InitSpec::MsraPrelu(m) => {
                let magnitude = 2.0 / (1.0 + m.slope * m.slope);
                Fill::Normal {
                    std: xavier_scale("msra_prelu", name, shape, m.factor_type, magnitude)?,
                }
            }
        },
    })
}

/// A uniform draw in [0, 1) with 53 random bits.
fn unit(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// `n` values of `fill`, drawn from `rng`.
fn draw(fill: Fill, n: usize, rng: &mut ChaCha20Rng, out: &mut Vec<f32>) {
    match fill {
        Fill::Constant(c) => out.resize(n, c),
        Fill::Uniform { bound } => {
            out.extend((0..n).map(|_| (-bound + 2.0 * bound * unit(rng)) as f32));
        }
        Fill::Normal { std } => {
            // Box–Muller, both values of each pair used; 1 − u lies in (0, 1], so the
            // logarithm is finite.
            while out.len() < n {
                let r = (-2.0 * (1.0 - unit(rng)).ln()).sqrt();
                let theta = std::f64::consts::TAU * unit(rng);
                out.push((std * r * theta.cos()) as f32);
                if out.len() < n {
                    out.push((std * r * theta.sin()) as f32);
                }
            }
        }
    }
}

/// Initial values of parameter `name` of `shape`, the `index`-th of its graph, as MXNet
/// 1.9.1's initializer `spec` would make them (its distribution, ward's random stream).
pub fn init_param(
    spec: &InitSpec,
    name: &str,
    shape: &[usize],
    seed: &RunSeed,
    index: usize,
) -> Result<Vec<f32>, InitError> {
    let fill = plan(spec, name, shape)?;
    let n = elements(name, shape)?;
    let mut rng = seed.stream(Purpose::Init, index as u64)?;
    let mut values = Vec::new();
    values
        .try_reserve_exact(n)
        .map_err(|_| InitError::OutOfMemory {
            param: name.to_owned(),
            elements: n,
        })?;
    draw(fill, n, &mut rng, &mut values);
    Ok(values)
}

/// Every parameter of `graph`, in its order: the given weights where there are some
/// (checked against the shape), the others initialized by [`init_param`] with their
/// position as the stream index. `given` holds one entry per parameter.
pub fn init_missing(
    spec: &InitSpec,
    graph: &Graph,
    seed: &RunSeed,
    given: Vec<Option<Vec<f32>>>,
) -> Result<Vec<Vec<f32>>, InitError> {
    spec.validate()?;
    if given.len() != graph.params.len() {
        return Err(InitError::Count {
            expected: graph.params.len(),
            found: given.len(),
        });
    }
    graph
        .params
        .iter()
        .zip(given)
        .enumerate()
        .map(|(index, (p, w))| {
            if p.dtype != DType::F32 {
                return Err(InitError::DType {
                    param: p.name.clone(),
                    dtype: p.dtype,
                });
            }
            match w {
                Some(w) => {
                    let expected = elements(&p.name, &p.shape)?;
                    if w.len() != expected {
                        return Err(InitError::LengthMismatch {
                            param: p.name.clone(),
                            shape: p.shape.clone(),
                            expected,
                            found: w.len(),
                        });
                    }
                    Ok(w)
                }
                None => init_param(spec, &p.name, &p.shape, seed, index),
            }
        })
        .collect()
}

/// Every parameter of `graph` initialized (a model trained from scratch).
pub fn init_graph(
    spec: &InitSpec,
    graph: &Graph,
    seed: &RunSeed,
) -> Result<Vec<Vec<f32>>, InitError> {
    init_missing(spec, graph, seed, vec![None; graph.params.len()])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<InitSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn specs_parse_with_mxnet_defaults_and_aliases() {
        assert_eq!(
            spec(r#"{"name":"xavier"}"#).unwrap(),
            InitSpec::Xavier(Xavier {
                rnd_type: RndType::Uniform,
                factor_type: FactorType::Avg,
                magnitude: 3.0
            })
        );
        assert_eq!(
            spec(r#"{"name":"uniform"}"#).unwrap(),
            InitSpec::Uniform(Uniform { scale: 0.07 })
        );
        assert_eq!(
            spec(r#"{"name":"normal"}"#).unwrap(),
            InitSpec::Normal(Normal { sigma: 0.01 })
        );
        assert_eq!(
            spec(r#"{"name":"msraprelu","factor_type":"in"}"#).unwrap(),
            InitSpec::MsraPrelu(MsraPrelu {
                factor_type: FactorType::In,
                slope: 0.25
            })
        );
        assert_eq!(
            spec(r#"{"name":"zeros"}"#).unwrap(),
            InitSpec::Zero(NoArgs {})
        );
        assert_eq!(
            spec(r#"{"name":"ones"}"#).unwrap(),
            InitSpec::One(NoArgs {})
        );
        assert!(spec(r#"{"name":"constant"}"#).is_err(), "value is required");
        for bad in [
            r#"{"name":"xavier","magnitud":2}"#,
            r#"{"name":"zero","value":1}"#,
            r#"{"name":"xavier","rnd_type":"normal"}"#,
            r#"{"name":"orthogonal"}"#,
            r#"{"scale":1}"#,
        ] {
            assert!(spec(bad).is_err(), "{bad}");
        }
        // A spec round-trips through its own serialization.
        let s = InitSpec::Xavier(Xavier {
            rnd_type: RndType::Gaussian,
            factor_type: FactorType::Out,
            magnitude: 2.0,
        });
        assert_eq!(spec(&serde_json::to_string(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for bad in [
            r#"{"name":"xavier","magnitude":0}"#,
            r#"{"name":"xavier","magnitude":-3}"#,
            r#"{"name":"uniform","scale":0}"#,
            r#"{"name":"normal","sigma":-1}"#,
            r#"{"name":"constant","value":1e400}"#,
        ] {
            let s = spec(bad);
            // 1e400 is infinite: serde_json refuses it itself.
            if let Ok(s) = s {
                assert!(
                    matches!(s.validate(), Err(InitError::OutOfRange { .. })),
                    "{bad}"
                );
            }
        }
        let nan = InitSpec::MsraPrelu(MsraPrelu {
            factor_type: FactorType::Avg,
            slope: f64::NAN,
        });
        assert!(nan.validate().is_err());
        assert!(init_param(&nan, "w_weight", &[2, 2], &RunSeed::from_u64(1), 0).is_err());
    }

    #[test]
    fn the_name_rules_are_mxnets() {
        for (name, rule) in [
            ("conv0_weight", Rule::Weight),
            ("myweight", Rule::Weight),
            ("fc1_bias", Rule::Zero),
            ("bn0_gamma", Rule::One),
            ("bn0_beta", Rule::Zero),
            ("bn0_moving_mean", Rule::Zero),
            ("bn0_moving_var", Rule::One),
            ("bn0_moving_inv_var", Rule::Zero),
            ("bn0_moving_avg", Rule::Zero),
            ("batchnorm0_running_mean", Rule::Zero),
            ("batchnorm0_running_var", Rule::One),
            ("calib_min", Rule::Zero),
            ("calib_max", Rule::One),
        ] {
            assert_eq!(rule_for(name).unwrap(), rule, "{name}");
        }
        for name in ["prelu0_alpha", "weights", "", "fc_weight_quantize", "embed"] {
            let err = rule_for(name).unwrap_err();
            assert!(
                matches!(&err, InitError::UnknownPattern { param } if param == name),
                "{name}"
            );
            assert!(err.to_string().contains(&format!("`{name}`")));
        }
    }

    #[test]
    fn xavier_fans_follow_mxnet() {
        let x = |factor_type, magnitude| {
            InitSpec::Xavier(Xavier {
                rnd_type: RndType::Uniform,
                factor_type,
                magnitude,
            })
        };
        // Convolution (out 20, in 3, 5×5): fan_in 75, fan_out 500.
        let shape = [20, 3, 5, 5];
        let bound = |s: &InitSpec| match plan(s, "c_weight", &shape).unwrap() {
            Fill::Uniform { bound } => bound,
            other => panic!("{other:?}"),
        };
        assert_eq!(bound(&x(FactorType::Avg, 3.0)), (3.0f64 / 287.5).sqrt());
        assert_eq!(bound(&x(FactorType::In, 2.0)), (2.0f64 / 75.0).sqrt());
        assert_eq!(bound(&x(FactorType::Out, 3.0)), (3.0f64 / 500.0).sqrt());
        let msra = InitSpec::MsraPrelu(MsraPrelu::default());
        assert_eq!(
            plan(&msra, "c_weight", &[10, 4]).unwrap(),
            Fill::Normal {
                std: ((2.0 / 1.0625) / 7.0f64).sqrt()
            }
        );
        for shape in [&[5usize][..], &[]] {
            assert!(matches!(
                plan(&x(FactorType::Avg, 3.0), "fc_weight", shape),
                Err(InitError::NeedsTwoDims { .. })
            ));
        }
        // The weight rule only applies to weights.
        assert_eq!(
            plan(&x(FactorType::Avg, 3.0), "fc_bias", &[5]).unwrap(),
            Fill::Constant(0.0)
        );
    }

    #[test]
    fn draws_are_deterministic_per_seed_and_index() {
        let s = InitSpec::default();
        let seed = RunSeed::from_u64(7);
        let a = init_param(&s, "fc_weight", &[16, 8], &seed, 3).unwrap();
        let b = init_param(&s, "fc_weight", &[16, 8], &RunSeed::from_u64(7), 3).unwrap();
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_ne!(a, init_param(&s, "fc_weight", &[16, 8], &seed, 4).unwrap());
        assert_ne!(
            a,
            init_param(&s, "fc_weight", &[16, 8], &RunSeed::from_u64(8), 3).unwrap()
        );
        // An odd count of normal draws uses half a pair.
        let n = InitSpec::Normal(Normal { sigma: 1.0 });
        assert_eq!(
            init_param(&n, "w_weight", &[3, 3], &seed, 0).unwrap().len(),
            9
        );
        assert!(init_param(&n, "w_weight", &[0, 3], &seed, 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn huge_shapes_are_refused_before_allocating() {
        let s = InitSpec::Zero(NoArgs {});
        let seed = RunSeed::from_u64(1);
        for shape in [&[usize::MAX, 2][..], &[1 << 16, 1 << 15]] {
            assert!(matches!(
                init_param(&s, "big_weight", shape, &seed, 0),
                Err(InitError::TooLarge { .. })
            ));
        }
    }
}
