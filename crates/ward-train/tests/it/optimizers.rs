//! The optimizers, schedules and global-norm clipping against MXNet 1.9.1's own
//! `Updater`, scheduler objects and `clip_global_norm`, on the cases of
//! `tests/fixtures/optim/optim.json` (`tools/make_optim_fixtures.py`).

use std::collections::BTreeSet;

use serde::Deserialize;
use ward_train::optim::OPTIMIZER_NAMES;
use ward_train::{
    clip_global_norm, OptimError, Optimizer, OptimizerSpec, ParamMults, ParamUpdate, Schedule,
    ScheduleError, ScheduleSpec,
};

use crate::support::fixtures;

/// `|a - b| <= TOL * max(1, |b|)`.
const TOL: f64 = 1e-6;

#[derive(Deserialize)]
struct Fixture {
    mxnet_version: String,
    /// MXNet's optimizer registry: `covered`, or why a name has no cases.
    registry: std::collections::BTreeMap<String, String>,
    steps: usize,
    params: Params,
    params5: Params,
    optimizers: Vec<OptCase>,
    schedules: Vec<SchedCase>,
    clip_global_norm: Vec<ClipCase>,
}

#[derive(Deserialize)]
struct Params {
    shapes: Vec<Vec<usize>>,
    init: Vec<Vec<u32>>,
    grads: Vec<Vec<Vec<u32>>>,
}

#[derive(Deserialize)]
struct OptCase {
    case: String,
    optimizer: String,
    spec: serde_json::Value,
    #[serde(default)]
    schedule: Option<serde_json::Value>,
    mode: String,
    /// `params` (three parameters) or `params5` (five: more than one aggregated group).
    param_set: String,
    names: Vec<String>,
    lr_mults: Vec<f64>,
    wd_mults: Vec<Option<f64>>,
    weights: Vec<Vec<Vec<u32>>>,
}

#[derive(Deserialize)]
struct SchedCase {
    case: String,
    base_lr: f64,
    spec: serde_json::Value,
    samples: Vec<(u64, f64)>,
}

#[derive(Deserialize)]
struct ClipCase {
    case: String,
    max_norm: f32,
    arrays: Vec<Vec<u32>>,
    norm: u32,
    out: Vec<Vec<u32>>,
}

fn load() -> Fixture {
    let path = fixtures("optim").join("optim.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

fn f32s(bits: &[u32]) -> Vec<f32> {
    bits.iter().map(|&b| f32::from_bits(b)).collect()
}

fn rel_err(a: f64, b: f64) -> f64 {
    if a.is_nan() && b.is_nan() {
        return 0.0;
    }
    if a == b {
        return 0.0;
    }
    (a - b).abs() / b.abs().max(1.0)
}

fn mults(spec: &OptimizerSpec, case: &OptCase, i: usize) -> ParamMults {
    match case.mode.as_str() {
        "gluon" => ParamMults::gluon(case.lr_mults[i], case.wd_mults[i].unwrap_or(1.0)),
        "module" => ParamMults::module(
            spec,
            &case.names[i],
            Some(case.lr_mults[i]),
            case.wd_mults[i],
        ),
        other => panic!("{}: unknown mode {other}", case.case),
    }
}

/// Runs one case; returns the worst relative error over every step, parameter and element,
/// the number of values compared and how many were bit-identical.
fn run_case(fx: &Fixture, case: &OptCase) -> Result<(f64, usize, usize), String> {
    let spec: OptimizerSpec =
        serde_json::from_value(case.spec.clone()).map_err(|e| format!("spec: {e}"))?;
    assert_eq!(spec.name(), case.optimizer);
    let schedule: Option<ScheduleSpec> = case
        .schedule
        .as_ref()
        .map(|s| serde_json::from_value(s.clone()).unwrap());
    let mut opt = Optimizer::new(spec.clone(), schedule).map_err(|e| e.to_string())?;
    let params = match case.param_set.as_str() {
        "params" => &fx.params,
        "params5" => &fx.params5,
        other => panic!("{}: unknown parameter set {other}", case.case),
    };
    let mut weights: Vec<Vec<f32>> = params.init.iter().map(|b| f32s(b)).collect();
    let mut states: Vec<_> = weights.iter().map(|w| opt.create_state(w)).collect();
    let pmults: Vec<ParamMults> = (0..weights.len()).map(|i| mults(&spec, case, i)).collect();
    let mut worst = 0.0f64;
    let (mut compared, mut identical) = (0, 0);
    for step in 0..fx.steps {
        let grads: Vec<Vec<f32>> = params.grads[step].iter().map(|b| f32s(b)).collect();
        let mut updates: Vec<ParamUpdate<'_>> = weights
            .iter_mut()
            .zip(&grads)
            .zip(states.iter_mut())
            .zip(&pmults)
            .map(|(((w, g), s), &m)| ParamUpdate {
                weight: w,
                grad: g,
                state: s,
                mults: m,
            })
            .collect();
        opt.step(&mut updates).map_err(|e| e.to_string())?;
        assert_eq!(case.weights[step].len(), weights.len(), "{}", case.case);
        for (p, (ours, theirs)) in weights.iter().zip(&case.weights[step]).enumerate() {
            for (k, (&a, b)) in ours.iter().zip(f32s(theirs)).enumerate() {
                let e = rel_err(f64::from(a), f64::from(b));
                if e > TOL || a.is_nan() != b.is_nan() {
                    return Err(format!(
                        "step {} param {p} element {k}: ward {a:e}, MXNet {b:e} (rel {e:e})",
                        step + 1
                    ));
                }
                worst = worst.max(e);
                compared += 1;
                identical += usize::from(a.to_bits() == b.to_bits());
            }
        }
    }
    Ok((worst, compared, identical))
}

#[test]
fn optimizers_match_mxnet() {
    let fx = load();
    assert_eq!(fx.mxnet_version, "1.9.1");
    assert_eq!(fx.params.shapes.len(), fx.params.init.len());
    assert_eq!(fx.params5.shapes.len(), fx.params5.init.len());
    let mut failures = Vec::new();
    let mut worst = (0.0f64, String::new());
    let (mut compared, mut identical) = (0, 0);
    for case in &fx.optimizers {
        match run_case(&fx, case) {
            Ok((e, c, i)) => {
                compared += c;
                identical += i;
                if e > worst.0 {
                    worst = (e, case.case.clone());
                }
            }
            Err(msg) => failures.push(format!("{}: {msg}", case.case)),
        }
    }
    eprintln!(
        "{} optimizer cases x {} steps: {compared} weights compared, {identical} bit-identical; \
         worst relative error {:e} ({})",
        fx.optimizers.len(),
        fx.steps,
        worst.0,
        worst.1
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from MXNet:\n{}",
        failures.len(),
        fx.optimizers.len(),
        failures.join("\n")
    );
}

#[test]
fn every_optimizer_and_schedule_is_covered() {
    let fx = load();
    let cased: BTreeSet<&str> = fx.optimizers.iter().map(|c| c.optimizer.as_str()).collect();
    let declared: BTreeSet<&str> = OPTIMIZER_NAMES.iter().copied().collect();
    assert_eq!(cased, declared, "fixture optimizers vs OPTIMIZER_NAMES");
    // Against MXNet's registry: every name is covered, or excluded with a reason.
    let covered: BTreeSet<&str> = fx
        .registry
        .iter()
        .filter(|(_, why)| why.as_str() == "covered")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(covered, declared, "MXNet's registry vs OPTIMIZER_NAMES");
    for (name, why) in &fx.registry {
        assert!(!why.is_empty(), "{name}: no reason");
    }
    // Every declared name parses, and names itself.
    for name in OPTIMIZER_NAMES {
        let spec: OptimizerSpec =
            serde_json::from_value(serde_json::json!({ "name": name })).unwrap();
        assert_eq!(spec.name(), name);
        spec.validate().unwrap();
    }
    let mut kinds = BTreeSet::new();
    for s in &fx.schedules {
        let spec: ScheduleSpec = serde_json::from_value(s.spec.clone()).unwrap();
        let mode = s
            .spec
            .get("warmup_mode")
            .and_then(|m| m.as_str())
            .unwrap_or("none");
        kinds.insert((spec.name(), mode.to_string()));
    }
    for name in ["factor", "multifactor", "poly", "cosine"] {
        for mode in ["linear", "constant", "none"] {
            assert!(
                kinds.contains(&(name, mode.to_string())),
                "no {name} case with warm-up {mode}"
            );
        }
    }
}

#[test]
fn schedules_match_mxnet() {
    let fx = load();
    let mut worst = 0.0f64;
    for case in &fx.schedules {
        let spec: ScheduleSpec = serde_json::from_value(case.spec.clone()).unwrap();
        let sched = Schedule::new(spec, case.base_lr).unwrap();
        for &(n, want) in &case.samples {
            let got = sched.lr(n);
            let e = rel_err(got, want);
            assert!(
                e <= TOL,
                "{} at {n}: ward {got:e}, MXNet {want:e}",
                case.case
            );
            worst = worst.max(e);
        }
    }
    eprintln!(
        "{} schedules; worst relative error {worst:e}",
        fx.schedules.len()
    );
}

#[test]
fn clip_global_norm_matches_mxnet() {
    let fx = load();
    for case in &fx.clip_global_norm {
        let mut arrays: Vec<Vec<f32>> = case.arrays.iter().map(|a| f32s(a)).collect();
        let mut refs: Vec<&mut [f32]> = arrays.iter_mut().map(|a| a.as_mut_slice()).collect();
        let norm = clip_global_norm(&mut refs, case.max_norm).unwrap();
        let want = f32::from_bits(case.norm);
        assert!(
            rel_err(f64::from(norm), f64::from(want)) <= TOL,
            "{}: norm {norm} vs {want}",
            case.case
        );
        for (ours, theirs) in arrays.iter().zip(&case.out) {
            for (&a, b) in ours.iter().zip(f32s(theirs)) {
                assert!(
                    rel_err(f64::from(a), f64::from(b)) <= TOL,
                    "{}: {a} vs {b}",
                    case.case
                );
            }
        }
    }
    assert!(matches!(
        clip_global_norm(&mut [], 0.0),
        Err(OptimError::MaxNorm(_))
    ));
}

fn spec_err(v: serde_json::Value) -> String {
    match serde_json::from_value::<OptimizerSpec>(v) {
        Err(e) => e.to_string(),
        Ok(spec) => match Optimizer::new(spec, None) {
            Err(e) => e.to_string(),
            Ok(_) => "accepted".into(),
        },
    }
}

fn out_of_range(v: serde_json::Value) -> (&'static str, &'static str) {
    let spec: OptimizerSpec = serde_json::from_value(v).unwrap();
    match spec.validate() {
        Err(OptimError::OutOfRange {
            optimizer, field, ..
        }) => (optimizer, field),
        other => panic!("expected OutOfRange, got {other:?}"),
    }
}

#[test]
fn spec_errors_name_the_field() {
    use serde_json::json;
    // Unknown keys and unknown names are refused, naming them.
    let e = spec_err(json!({ "name": "adam", "beta_1": 0.9 }));
    assert!(e.contains("unknown field `beta_1`"), "{e}");
    let e = spec_err(json!({ "name": "sgd", "momentum": 0.9, "nesterov": true }));
    assert!(e.contains("`nesterov`"), "{e}");
    let e = spec_err(json!({ "name": "sgld" }));
    assert!(e.contains("sgld"), "{e}");
    let e = spec_err(json!({ "name": "adam", "beta1": "0.9" }));
    assert!(e.contains("invalid type"), "{e}");

    assert_eq!(
        out_of_range(json!({ "name": "sgd", "learning_rate": -0.1 })),
        ("sgd", "learning_rate")
    );
    assert_eq!(
        out_of_range(json!({ "name": "adam", "beta1": 1.0 })),
        ("adam", "beta1")
    );
    assert_eq!(
        out_of_range(json!({ "name": "adam", "beta2": -0.5 })),
        ("adam", "beta2")
    );
    assert_eq!(
        out_of_range(json!({ "name": "adam", "epsilon": 0.0 })),
        ("adam", "epsilon")
    );
    assert_eq!(
        out_of_range(json!({ "name": "nag", "momentum": 1.0 })),
        ("nag", "momentum")
    );
    assert_eq!(
        out_of_range(json!({ "name": "sgd", "clip_gradient": 0.0 })),
        ("sgd", "clip_gradient")
    );
    assert_eq!(
        out_of_range(json!({ "name": "sgd", "clip_gradient": -1.0 })),
        ("sgd", "clip_gradient")
    );
    assert_eq!(
        out_of_range(json!({ "name": "sgd", "wd": -1e-4 })),
        ("sgd", "wd")
    );
    assert_eq!(
        out_of_range(json!({ "name": "sgd", "rescale_grad": 0.0 })),
        ("sgd", "rescale_grad")
    );
    assert_eq!(
        out_of_range(json!({ "name": "rmsprop", "gamma1": 1.5 })),
        ("rmsprop", "gamma1")
    );
    assert_eq!(
        out_of_range(json!({ "name": "rmsprop", "clip_weights": 0.0 })),
        ("rmsprop", "clip_weights")
    );
    assert_eq!(
        out_of_range(json!({ "name": "adagrad", "eps": 0.0 })),
        ("adagrad", "eps")
    );
    assert_eq!(
        out_of_range(json!({ "name": "adadelta", "rho": 1.0 })),
        ("adadelta", "rho")
    );
    assert_eq!(
        out_of_range(json!({ "name": "ftrl", "learning_rate": 0.0 })),
        ("ftrl", "learning_rate")
    );
    assert_eq!(
        out_of_range(json!({ "name": "ftml", "beta1": 1.0 })),
        ("ftml", "beta1")
    );
    assert_eq!(
        out_of_range(json!({ "name": "lamb", "lower_bound": 2.0, "upper_bound": 1.0 })),
        ("lamb", "upper_bound")
    );
    assert_eq!(
        out_of_range(json!({ "name": "lars", "eta": -1.0 })),
        ("lars", "eta")
    );
    assert_eq!(
        out_of_range(json!({ "name": "dcasgd", "momentum": 0.9 })),
        ("dcasgd", "momentum")
    );
    assert_eq!(
        out_of_range(json!({ "name": "nadam", "schedule_decay": -1.0 })),
        ("nadam", "schedule_decay")
    );
    // Non-finite values never pass (JSON has no NaN; the spec is data either way).
    let mut spec: OptimizerSpec = serde_json::from_value(json!({ "name": "adam" })).unwrap();
    if let OptimizerSpec::Adam(a) = &mut spec {
        a.learning_rate = f64::NAN;
    }
    assert!(spec
        .validate()
        .unwrap_err()
        .to_string()
        .contains("`learning_rate`"));
    if let OptimizerSpec::Adam(a) = &mut spec {
        a.learning_rate = 0.001;
        a.epsilon = f64::INFINITY;
    }
    assert!(spec
        .validate()
        .unwrap_err()
        .to_string()
        .contains("`epsilon`"));
    // What MXNet 1.9.1 cannot run is refused, naming the field.
    let e = spec_err(json!({ "name": "signum", "momentum": 0.0, "wd_lh": 0.1 }));
    assert!(e.contains("`wd_lh`"), "{e}");
    // The message names the optimizer, the field and the range.
    let e = spec_err(json!({ "name": "adam", "beta1": 1.0 }));
    assert_eq!(
        e,
        "optimizer `adam`: `beta1` = 1 is out of range: must be in [0, 1)"
    );
}

#[test]
fn schedule_errors_name_the_field() {
    use serde_json::json;
    let sched = |v: serde_json::Value, base: f64| -> Result<Schedule, String> {
        let spec: ScheduleSpec = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Schedule::new(spec, base).map_err(|e| e.to_string())
    };
    let field = |v: serde_json::Value, base: f64| -> &'static str {
        let spec: ScheduleSpec = serde_json::from_value(v).unwrap();
        match Schedule::new(spec, base) {
            Err(ScheduleError::OutOfRange { field, .. }) => field,
            other => panic!("expected an error, got {other:?}"),
        }
    };
    let e = sched(json!({ "name": "factor", "step": 3, "gamma": 0.5 }), 0.1).unwrap_err();
    assert!(e.contains("unknown field `gamma`"), "{e}");
    let e = sched(json!({ "name": "cosine" }), 0.1).unwrap_err();
    assert!(e.contains("missing field `max_update`"), "{e}");
    let e = sched(
        json!({ "name": "poly", "max_update": 10, "warmup_mode": "exp" }),
        0.1,
    )
    .unwrap_err();
    assert!(e.contains("exp"), "{e}");
    assert_eq!(field(json!({ "name": "factor", "step": 0 }), 0.1), "step");
    assert_eq!(
        field(json!({ "name": "factor", "step": 2, "factor": 1.5 }), 0.1),
        "factor"
    );
    assert_eq!(
        field(json!({ "name": "multifactor", "step": [3, 3] }), 0.1),
        "step"
    );
    assert_eq!(
        field(json!({ "name": "multifactor", "step": [] }), 0.1),
        "step"
    );
    assert_eq!(
        field(
            json!({ "name": "poly", "max_update": 5, "warmup_steps": 5 }),
            0.1
        ),
        "max_update"
    );
    assert_eq!(
        field(json!({ "name": "poly", "max_update": 5, "pwr": 0.0 }), 0.1),
        "pwr"
    );
    assert_eq!(
        field(
            json!({ "name": "cosine", "max_update": 5, "final_lr": -1.0 }),
            0.1
        ),
        "final_lr"
    );
    assert_eq!(
        field(
            json!({ "name": "cosine", "max_update": 5, "warmup_begin_lr": 0.2 }),
            0.1
        ),
        "warmup_begin_lr"
    );
    // Through the optimizer: the schedule's base is the optimizer's rate.
    let spec: OptimizerSpec =
        serde_json::from_value(json!({ "name": "sgd", "learning_rate": 0.01 })).unwrap();
    let s: ScheduleSpec = serde_json::from_value(
        json!({ "name": "cosine", "max_update": 5, "warmup_begin_lr": 0.1 }),
    )
    .unwrap();
    assert!(matches!(
        Optimizer::new(spec, Some(s)),
        Err(OptimError::Schedule(_))
    ));
}

#[test]
fn lengths_and_states_are_checked_before_anything_changes() {
    let spec: OptimizerSpec =
        serde_json::from_value(serde_json::json!({ "name": "adam" })).unwrap();
    let mut opt = Optimizer::new(spec, None).unwrap();
    let mut w = vec![1.0f32; 4];
    let mut state = opt.create_state(&w);
    assert_eq!(opt.state_names(), &["mean", "var"]);
    assert_eq!(state.tensor("mean"), Some(&[0.0f32; 4][..]));
    let err = opt
        .update(&mut w, &[0.5; 3], &mut state, ParamMults::ONE)
        .unwrap_err();
    assert!(
        matches!(
            err,
            OptimError::LengthMismatch {
                expected: 4,
                found: 3,
                ..
            }
        ),
        "{err}"
    );
    state.tensors[1].1.pop();
    let err = opt
        .update(&mut w, &[0.5; 4], &mut state, ParamMults::ONE)
        .unwrap_err();
    assert!(matches!(err, OptimError::LengthMismatch { .. }), "{err}");
    assert!(err.to_string().contains("`var`"), "{err}");
    // A state from another optimizer.
    let sgd: OptimizerSpec =
        serde_json::from_value(serde_json::json!({ "name": "sgd", "momentum": 0.9 })).unwrap();
    let mut other = Optimizer::new(sgd, None).unwrap().create_state(&w);
    let err = opt
        .update(&mut w, &[0.5; 4], &mut other, ParamMults::ONE)
        .unwrap_err();
    assert!(matches!(err, OptimError::StateMismatch { .. }), "{err}");
    let err = opt
        .update(
            &mut w,
            &[0.5; 4],
            &mut opt.create_state(&[1.0; 4]),
            ParamMults::gluon(-1.0, 1.0),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            OptimError::Multiplier {
                field: "lr_mult",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(w, vec![1.0f32; 4], "nothing changed");
    assert_eq!(opt.state().num_update, 0);
}

#[test]
fn defaults_are_mxnets() {
    let spec: OptimizerSpec =
        serde_json::from_value(serde_json::json!({ "name": "adam" })).unwrap();
    let c = spec.common();
    assert_eq!(
        (c.learning_rate, c.wd, c.rescale_grad, c.clip_gradient),
        (0.001, 0.0, 1.0, None)
    );
    match serde_json::from_value(serde_json::json!({ "name": "rmsprop" })).unwrap() {
        OptimizerSpec::RmsProp(r) => {
            assert_eq!(
                (r.learning_rate, r.gamma1, r.gamma2, r.epsilon),
                (0.001, 0.9, 0.9, 1e-8)
            );
            assert!(!r.centered);
        }
        other => panic!("{other:?}"),
    }
    // Module mode's name rule: decay for `_weight` and `_gamma` only (LARS: `_weight`).
    let sgd: OptimizerSpec = serde_json::from_value(serde_json::json!({ "name": "sgd" })).unwrap();
    let lars: OptimizerSpec =
        serde_json::from_value(serde_json::json!({ "name": "lars" })).unwrap();
    assert_eq!(
        ParamMults::module(&sgd, "fc1_bias", None, None).wd_mult,
        0.0
    );
    assert_eq!(
        ParamMults::module(&sgd, "bn_gamma", None, None).wd_mult,
        1.0
    );
    assert_eq!(
        ParamMults::module(&lars, "bn_gamma", None, None).wd_mult,
        0.0
    );
    assert_eq!(
        ParamMults::module(&sgd, "fc1_bias", None, Some(2.0)).wd_mult,
        2.0
    );
    assert!(ParamMults::module(&lars, "fc1_bias", None, None).lars_exempt);
}

#[test]
fn specs_round_trip_with_every_default_written() {
    for name in OPTIMIZER_NAMES {
        let spec: OptimizerSpec =
            serde_json::from_value(serde_json::json!({ "name": name })).unwrap();
        let written = serde_json::to_value(&spec).unwrap();
        assert_eq!(written["name"], name);
        assert!(written.get("learning_rate").is_some(), "{written}");
        let back: OptimizerSpec = serde_json::from_value(written).unwrap();
        assert_eq!(back, spec);
    }
    let s: ScheduleSpec = serde_json::from_value(serde_json::json!({
        "name": "multifactor", "step": [2, 4], "warmup_mode": "constant"
    }))
    .unwrap();
    let back: ScheduleSpec = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}
