//! Gluon's losses for graphs without a head (`ward_train::loss`):
//! - each loss's per-example value and its gradient equal MXNet 1.9.1's `gluon.loss`
//!   with `mx.autograd` (`tests/fixtures/losses/`, `tools/make_loss_fixtures.py`), with
//!   a random head gradient per example, within `1e-4 · max(1, max|g|)`;
//! - a Gluon export trained with `softmax_cross_entropy` follows the trajectory of the
//!   same network ending in MXNet's SoftmaxOutput (whose gradient is the same
//!   `softmax − one-hot`), step by step, Dropout masks and BatchNorm included;
//! - `l2` fits a regression, labels out of range and graphs that already have a head
//!   are refused by name.

use std::sync::Arc;

use serde::Deserialize;
use ward_core::random::RunSeed;
use ward_core::DType;
use ward_graph::Graph;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;
use ward_train::data::batch::{LastBatch, Loader, LoaderConfig};
use ward_train::data::idx::{MnistDataset, MnistOptions};
use ward_train::data::DataLimits;
use ward_train::loss::{LossError, LossSpec};
use ward_train::trainer::{Metrics, Multipliers, Objective, TrainError, Trainer, TrainerSetup};
use ward_train::{Optimizer, OptimizerSpec};

use crate::support::{fixtures, read};

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    loss: LossSpec,
    pred: Vec<f64>,
    pred_shape: Vec<usize>,
    label: Vec<f64>,
    head: Vec<f64>,
    value: Vec<f64>,
    grad: Vec<f64>,
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn gluon_losses_match_mxnet() {
    let fixture: Fixture =
        serde_json::from_slice(&read(&fixtures("losses").join("losses.json"))).unwrap();
    assert_eq!(fixture.cases.len(), 13);
    for case in &fixture.cases {
        case.loss.validate().unwrap();
        let head = f32s(&case.head);
        let got = case
            .loss
            .compute(
                &f32s(&case.pred),
                &case.pred_shape,
                &f32s(&case.label),
                Some(&head),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(got.per_example.len(), case.value.len(), "{}", case.name);
        for (i, (g, w)) in got.per_example.iter().zip(&case.value).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{} value {i}: ward {g}, MXNet {w}",
                case.name
            );
        }
        let scale = case.grad.iter().fold(1.0f64, |m, g| m.max(g.abs()));
        assert_eq!(got.grad.len(), case.grad.len(), "{}", case.name);
        for (i, (g, w)) in got.grad.iter().zip(&case.grad).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= 1e-4 * scale,
                "{} gradient {i}: ward {g}, MXNet {w}",
                case.name
            );
        }
    }
}

const BATCH: usize = 32;

/// The Gluon LeNet fixture (Convolution, BatchNorm, LeakyReLU, pooling, Dropout, two
/// Dense layers, no head), imported for batches of 28×28 digits; with `head`, the same
/// symbol ending in SoftmaxOutput fed by `softmax_label`, as a Module user would add it.
fn lenet_gluon(head: bool) -> (Graph, Vec<Vec<f32>>) {
    let dir = fixtures("models").join("lenet_gluon");
    let mut symbol: serde_json::Value =
        serde_json::from_slice(&read(&dir.join("model-symbol.json"))).unwrap();
    if head {
        let nodes = symbol["nodes"].as_array_mut().unwrap();
        let last = nodes.len() - 1;
        nodes.push(serde_json::json!({"op": "null", "name": "softmax_label", "inputs": []}));
        nodes.push(serde_json::json!({"op": "SoftmaxOutput", "name": "softmax",
            "inputs": [[last, 0, 0], [last + 1, 0, 0]]}));
        let label = nodes.len() - 2;
        symbol["arg_nodes"]
            .as_array_mut()
            .unwrap()
            .push(label.into());
        symbol["heads"] = serde_json::json!([[label + 1, 0, 0]]);
        symbol["node_row_ptr"] = serde_json::Value::Null;
        symbol.as_object_mut().unwrap().remove("node_row_ptr");
    }
    let symbol = read_symbol(&serde_json::to_vec(&symbol).unwrap(), &Default::default()).unwrap();
    let params = read_params(&read(&dir.join("model-0000.params")), &Default::default()).unwrap();
    let declared = [DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 1, 28, 28],
    }];
    let imported = import(&symbol, params, &declared).unwrap();
    let weights = imported
        .f32_weights()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    (imported.graph, weights)
}

fn sgd() -> Optimizer {
    let spec: OptimizerSpec = serde_json::from_value(serde_json::json!({
        "name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "wd": 1e-4,
        "rescale_grad": 1.0 / BATCH as f64,
    }))
    .unwrap();
    Optimizer::new(spec, None).unwrap()
}

fn softmax_ce() -> LossSpec {
    serde_json::from_value(serde_json::json!({"name": "softmax_cross_entropy"})).unwrap()
}

fn digits(split: &str) -> Loader {
    let d = fixtures("mnist");
    let data = MnistDataset::open(
        &d.join(format!("{split}-images-idx3-ubyte.gz")),
        &d.join(format!("{split}-labels-idx1-ubyte.gz")),
        &MnistOptions::default(),
        &DataLimits::default(),
    )
    .unwrap();
    let config = LoaderConfig {
        batch_size: BATCH,
        shuffle: true,
        last_batch: LastBatch::Pad,
        threads: 1,
        prefetch: 2,
    };
    Loader::new(Arc::new(data), config, RunSeed::from_u64(3)).unwrap()
}

fn trainer(head: bool) -> Trainer {
    let (graph, weights) = lenet_gluon(head);
    let setup = TrainerSetup {
        objective: if head {
            Objective::Head
        } else {
            Objective::Loss(softmax_ce())
        },
        multipliers: Multipliers::Gluon,
        symbol: None,
    };
    let shape = [BATCH, 1, 28, 28];
    Trainer::new(graph, weights, &shape, sgd(), RunSeed::from_u64(9), setup).unwrap()
}

#[test]
fn softmax_cross_entropy_trains_as_softmax_output_does() {
    let mut gluon = trainer(false);
    let mut module = trainer(true);
    assert_eq!(gluon.graph().nodes.len() + 1, module.graph().nodes.len());
    for (step, batch) in digits("train").epoch(0).unwrap().take(12).enumerate() {
        let b = batch.unwrap();
        let g = gluon.step(&b.data, &b.label).unwrap();
        let m = module.step(&b.data, &b.label).unwrap();
        assert!(
            (g.loss() - m.loss()).abs() <= 1e-4 * m.loss().max(1.0),
            "step {step}: loss {} with the Gluon loss, {} with SoftmaxOutput",
            g.loss(),
            m.loss()
        );
        assert_eq!(g.accuracy(), m.accuracy(), "step {step}");
        for (p, (a, b)) in gluon.weights().iter().zip(module.weights()).enumerate() {
            let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(b)
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= 1e-4 * scale,
                "step {step}, parameter {}: differs by {worst}",
                gluon.graph().params[p].name
            );
        }
    }
    // Evaluation: the loss's probabilities are the head's.
    let eval_g = gluon.evaluator(BATCH, &[1, 28, 28]).unwrap();
    let eval_m = module.evaluator(BATCH, &[1, 28, 28]).unwrap();
    let b = digits("t10k").epoch(0).unwrap().next().unwrap().unwrap();
    let g = gluon
        .evaluate(&eval_g, &b.data, &b.label, BATCH - 3)
        .unwrap();
    let m = module
        .evaluate(&eval_m, &b.data, &b.label, BATCH - 3)
        .unwrap();
    assert_eq!(g.shape, m.shape);
    assert_eq!(g.shape, vec![BATCH - 3, 10]);
    assert_eq!(g.labels, m.labels);
    for (x, y) in g.predictions.iter().zip(&m.predictions) {
        assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
    }
    assert!((g.metrics.loss() - m.metrics.loss()).abs() <= 1e-4);
    assert_eq!(g.metrics.examples, BATCH - 3);
}

#[test]
fn a_graph_with_a_head_and_a_declared_loss_is_refused() {
    let (graph, weights) = lenet_gluon(true);
    let setup = TrainerSetup {
        objective: Objective::Loss(softmax_ce()),
        ..TrainerSetup::default()
    };
    let err = Trainer::new(
        graph,
        weights,
        &[4, 1, 28, 28],
        sgd(),
        RunSeed::from_u64(1),
        setup,
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("node softmax is a softmax_output loss head"),
        "{err}"
    );
    // And a headless graph needs a declared loss.
    let (graph, weights) = lenet_gluon(false);
    let err = Trainer::new(
        graph,
        weights,
        &[4, 1, 28, 28],
        sgd(),
        RunSeed::from_u64(1),
        TrainerSetup::default(),
    )
    .err()
    .expect("refused");
    assert!(matches!(err, TrainError::Graph(_)), "{err}");
}

#[test]
fn a_label_past_the_classes_stops_the_step_naming_it() {
    let mut t = trainer(false);
    let b = digits("train").epoch(0).unwrap().next().unwrap().unwrap();
    let before = t.weights().to_vec();
    let mut labels = b.label.clone();
    labels[5] = 10.0;
    let err = t.step(&b.data, &labels).unwrap_err();
    assert!(
        matches!(err, TrainError::Loss(LossError::Label { index: 5, .. })),
        "{err}"
    );
    assert_eq!(t.weights(), &before[..], "a refused step changes nothing");
    assert_eq!(t.steps(), 0);
}

/// A one-layer regression (`FullyConnected` with one output) trained with `l2` on a
/// linear target recovers it: the loss falls by orders of magnitude and the weights
/// approach the target's coefficients.
#[test]
fn l2_fits_a_linear_target() {
    let symbol = serde_json::json!({
        "nodes": [
            {"op": "null", "name": "data", "inputs": []},
            {"op": "null", "name": "fc_weight", "inputs": []},
            {"op": "null", "name": "fc_bias", "inputs": []},
            {"op": "FullyConnected", "name": "fc", "attrs": {"num_hidden": "1"},
             "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]]}
        ],
        "arg_nodes": [0, 1, 2],
        "heads": [[3, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10901]}
    });
    let symbol = read_symbol(&serde_json::to_vec(&symbol).unwrap(), &Default::default()).unwrap();
    let declared = [DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 3],
    }];
    let (imported, new) = ward_mxnet::new_params::import_with_new_params(
        &symbol,
        ward_mxnet::params::ParamsFile {
            arrays: Vec::new(),
            names: None,
        },
        &declared,
    )
    .unwrap();
    assert_eq!(new.len(), 2);
    let weights = vec![vec![0.0f32; 3], vec![0.0f32]];
    let spec: OptimizerSpec = serde_json::from_value(serde_json::json!({
        "name": "sgd", "learning_rate": 0.1, "momentum": 0.5, "rescale_grad": 1.0 / 16.0,
    }))
    .unwrap();
    let setup = TrainerSetup {
        objective: Objective::Loss(LossSpec::L2 { weight: 1.0 }),
        multipliers: Multipliers::Gluon,
        symbol: None,
    };
    let mut t = Trainer::new(
        imported.graph,
        weights,
        &[16, 3],
        Optimizer::new(spec, None).unwrap(),
        RunSeed::from_u64(1),
        setup,
    )
    .unwrap();
    let target = |x: &[f32]| 2.0 * x[0] - 1.0 * x[1] + 0.5 * x[2] + 0.25;
    let mut first = None;
    let mut last = Metrics::default();
    for step in 0..300u32 {
        let data: Vec<f32> = (0..48)
            .map(|i| ((i as u32 * 7919 + step * 104_729) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let labels: Vec<f32> = data.chunks(3).map(target).collect();
        last = t.step(&data, &labels).unwrap();
        first.get_or_insert(last.loss());
        assert_eq!(last.accuracy(), None, "a regression has no accuracy");
    }
    let first = first.unwrap();
    assert!(last.loss() < first * 1e-4, "loss {first} → {}", last.loss());
    let w = &t.weights()[0];
    for (got, want) in w.iter().zip([2.0f32, -1.0, 0.5]) {
        assert!((got - want).abs() < 1e-2, "weights {w:?}");
    }
    assert!((t.weights()[1][0] - 0.25).abs() < 1e-2);
}
