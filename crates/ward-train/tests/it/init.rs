//! The initializers (`ward_train::init`) against MXNet 1.9.1: every parameter of two
//! models under twelve initializers gets the outcome MXNet's `Module.init_params` gave it
//! (`tests/fixtures/init/init.json`, `tools/make_init_fixtures.py`): the same constant,
//! or a draw from the same distribution (the uniform bound and the normal standard
//! deviation MXNet passed to its sampler). Ward's draws are then held to that
//! distribution: within the bound, and with the moments it should have.

use serde::Deserialize;
use ward_core::random::RunSeed;
use ward_core::DType;
use ward_graph::ir::{Graph, ParamDecl, ParamRole};
use ward_train::init::{init_graph, init_missing, init_param, plan, Fill, InitError, InitSpec};

use crate::support::{fixtures, read};

#[derive(Deserialize)]
struct Doc {
    mxnet_version: String,
    cases: Vec<Case>,
    refusals: Vec<Refusal>,
}

#[derive(Deserialize)]
struct Case {
    spec: serde_json::Value,
    models: std::collections::BTreeMap<String, Vec<Param>>,
}

#[derive(Deserialize)]
struct Param {
    name: String,
    shape: Vec<usize>,
    outcome: String,
    bound: Option<f64>,
    std: Option<f64>,
    value: Option<f64>,
}

#[derive(Deserialize)]
struct Refusal {
    name: String,
}

fn doc() -> Doc {
    serde_json::from_slice(&read(&fixtures("init").join("init.json"))).unwrap()
}

fn graph_of(params: &[Param]) -> Graph {
    Graph {
        format: "ward-graph".into(),
        version: 2,
        inputs: vec![],
        params: params
            .iter()
            .map(|p| {
                let mut d = ParamDecl::new(p.name.clone(), DType::F32, p.shape.clone());
                if p.name.contains("moving_") {
                    d.role = ParamRole::State;
                }
                d
            })
            .collect(),
        nodes: vec![],
        outputs: vec![],
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs()
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

#[test]
fn every_parameter_gets_mxnets_distribution() {
    let doc = doc();
    assert_eq!(doc.mxnet_version, "1.9.1");
    assert_eq!(doc.cases.len(), 12);
    let seed = RunSeed::from_u64(2024);
    let mut checked = 0;
    for case in &doc.cases {
        let spec: InitSpec = serde_json::from_value(case.spec.clone()).unwrap();
        for (model, params) in &case.models {
            let graph = graph_of(params);
            let values = init_graph(&spec, &graph, &seed).unwrap();
            for (p, v) in params.iter().zip(&values) {
                let at = format!("{} {model} {}", case.spec, p.name);
                let fill = plan(&spec, &p.name, &p.shape).unwrap();
                assert_eq!(v.len(), p.shape.iter().product::<usize>(), "{at}");
                match (p.outcome.as_str(), fill) {
                    ("zeros", Fill::Constant(c)) => assert_eq!(c, 0.0, "{at}"),
                    ("ones", Fill::Constant(c)) => assert_eq!(c, 1.0, "{at}"),
                    ("constant", Fill::Constant(c)) => {
                        assert_eq!(f64::from(c), p.value.unwrap(), "{at}")
                    }
                    ("uniform", Fill::Uniform { bound }) => {
                        let mx = p.bound.unwrap();
                        assert!(close(bound, mx), "{at}: ward {bound}, MXNet {mx}");
                        let b = bound as f32;
                        assert!(v.iter().all(|x| x.abs() <= b), "{at}");
                        // The draws fill the range: the largest is near the bound.
                        let top = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                        assert!(top > 0.9 * b, "{at}: largest {top} of bound {b}");
                    }
                    ("normal", Fill::Normal { std }) => {
                        let mx = p.std.unwrap();
                        assert!(close(std, mx), "{at}: ward {std}, MXNet {mx}");
                        if v.len() >= 400 {
                            let (_, s) = mean_std(v);
                            assert!((s / std - 1.0).abs() < 0.2, "{at}: sample std {s}");
                        }
                    }
                    (outcome, fill) => panic!("{at}: MXNet {outcome}, ward {fill:?}"),
                }
                if let Fill::Constant(c) = fill {
                    assert!(v.iter().all(|&x| x == c), "{at}");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 12 * (8 + 13));
}

#[test]
fn names_mxnet_refuses_are_refused() {
    let seed = RunSeed::from_u64(1);
    for r in doc().refusals {
        let err = init_param(&InitSpec::default(), &r.name, &[2, 2], &seed, 0).unwrap_err();
        assert!(
            matches!(&err, InitError::UnknownPattern { param } if *param == r.name),
            "{}: {err}",
            r.name
        );
        assert!(err.to_string().contains(&r.name));
    }
}

#[test]
fn large_draws_have_the_distributions_moments() {
    let seed = RunSeed::from_u64(99);
    let n = 1_000_000usize;
    let shape = [1000, 1000];
    // N(0, 0.5²): the mean within 5 standard errors, the variance within 5 of its own.
    let normal: InitSpec = serde_json::from_str(r#"{"name":"normal","sigma":0.5}"#).unwrap();
    let v = init_param(&normal, "w_weight", &shape, &seed, 0).unwrap();
    let (mean, std) = mean_std(&v);
    let se = 0.5 / (n as f64).sqrt();
    assert!(mean.abs() < 5.0 * se, "mean {mean}");
    let var_se = 0.25 * (2.0 / n as f64).sqrt();
    assert!((std * std - 0.25).abs() < 5.0 * var_se, "std {std}");
    // Gaussian tails: about 4.55 % beyond 2σ.
    let beyond = v.iter().filter(|x| x.abs() > 1.0).count() as f64 / n as f64;
    assert!((beyond - 0.0455).abs() < 0.002, "beyond 2σ: {beyond}");

    // Xavier gaussian on a convolution: std √(2 / fan_in) with fan_in 64·3·3.
    let xavier: InitSpec = serde_json::from_str(
        r#"{"name":"xavier","rnd_type":"gaussian","factor_type":"in","magnitude":2}"#,
    )
    .unwrap();
    let want = (2.0f64 / 576.0).sqrt();
    let v = init_param(&xavier, "c_weight", &[1000, 64, 3, 3], &seed, 1).unwrap();
    let (mean, std) = mean_std(&v);
    let m = v.len() as f64;
    assert!(mean.abs() < 5.0 * want / m.sqrt(), "mean {mean}");
    assert!(
        (std / want - 1.0).abs() < 5.0 * (0.5 / m).sqrt(),
        "std {std}"
    );

    // U(−0.07, 0.07): mean 0, variance b²/3, every value inside.
    let uniform: InitSpec = serde_json::from_str(r#"{"name":"uniform"}"#).unwrap();
    let v = init_param(&uniform, "w_weight", &shape, &seed, 2).unwrap();
    let b = 0.07f64;
    assert!(v.iter().all(|x| x.abs() <= b as f32));
    let (mean, std) = mean_std(&v);
    assert!(
        mean.abs() < 5.0 * b / (3.0 * n as f64).sqrt(),
        "mean {mean}"
    );
    assert!((std * std / (b * b / 3.0) - 1.0).abs() < 0.01, "std {std}");
    // Each tenth of the range holds a tenth of the draws.
    let mut bins = [0usize; 10];
    for x in &v {
        let i = (((f64::from(*x) + b) / (2.0 * b)) * 10.0) as usize;
        bins[i.min(9)] += 1;
    }
    for c in bins {
        assert!((c as f64 / n as f64 - 0.1).abs() < 0.002, "{bins:?}");
    }
}

#[test]
fn given_weights_are_kept_and_missing_ones_drawn_from_their_own_stream() {
    let params = [
        ("fc1_weight", vec![4, 3]),
        ("fc1_bias", vec![4]),
        ("fc2_weight", vec![2, 4]),
    ];
    let graph = Graph {
        format: "ward-graph".into(),
        version: 2,
        inputs: vec![],
        params: params
            .iter()
            .map(|(n, s)| ParamDecl::new(*n, DType::F32, s.clone()))
            .collect(),
        nodes: vec![],
        outputs: vec![],
    };
    let seed = RunSeed::from_u64(5);
    let spec = InitSpec::default();
    let all = init_graph(&spec, &graph, &seed).unwrap();
    let kept = vec![0.5f32; 12];
    let some = init_missing(&spec, &graph, &seed, vec![Some(kept.clone()), None, None]).unwrap();
    assert_eq!(some[0], kept);
    // fc2_weight's values do not depend on whether fc1_weight was drawn.
    assert_eq!(some[2], all[2]);
    assert_eq!(all[1], vec![0.0; 4]);
    assert_eq!(
        all[2],
        init_param(&spec, "fc2_weight", &[2, 4], &seed, 2).unwrap()
    );
    // Wrong lengths and counts are refused, naming the parameter.
    let err = init_missing(&spec, &graph, &seed, vec![None, Some(vec![0.0; 3]), None]);
    assert!(matches!(err, Err(InitError::LengthMismatch { ref param, .. }) if param == "fc1_bias"));
    assert!(matches!(
        init_missing(&spec, &graph, &seed, vec![None]),
        Err(InitError::Count {
            expected: 3,
            found: 1
        })
    ));
    // Only float32 parameters.
    let mut g = graph.clone();
    g.params[1].dtype = DType::F16;
    assert!(matches!(
        init_graph(&spec, &g, &seed),
        Err(InitError::DType { ref param, .. }) if param == "fc1_bias"
    ));
}
