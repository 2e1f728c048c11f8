//! Gradients of whole models: the importer's fixture models (`tests/fixtures/models/`,
//! exported by MXNet 1.9.1) differentiated end to end by `ward_train::backward`, checked
//! against central finite differences of the training-mode forward pass at sampled
//! elements of the data and of parameters spread over the graph. The one-operator tests
//! hold each rule to MXNet; this holds the composition: values that feed several nodes
//! (residual additions, shared inputs) sum their gradients, and every rule sits where the
//! graph puts it.

use ward_graph::interp::Array;
use ward_graph::ir::{InputRole, ParamRole};
use ward_train::{backward, forward};

use crate::support::{fixtures, import_dir, npy_array, pseudo_random};

/// Models whose every operator has a rule (the others hold Dropout, whose training mode
/// needs the run's random stream), small enough for finite differences, and whether
/// parameters are differenced too. Not census_misc: its SELU's gradient is MXNet's, not
/// the derivative (see mxnet_gradients.rs). MobileNetV2's data only: a first-layer
/// weight moves every activation after it, so a step of 1e-6 carries some of its ~10⁵
/// ReLU6 inputs across a kink and the difference quotient is off by a few percent (the
/// data's elements move a local patch, and agree within 1e-7).
const MODELS: &[(&str, bool)] = &[
    ("census_reshape", true),
    ("np_mlp", true),
    ("text_lstm", true),
    ("text_gru", true),
    ("mobilenetv2_0_25", false),
];

/// Up to `count` element indices spread over `len`.
fn spread(len: usize, count: usize) -> Vec<usize> {
    let step = len.div_ceil(count).max(1);
    (0..len).step_by(step).collect()
}

fn check(model: &str, params: bool) -> f64 {
    let d = fixtures("models").join(model);
    let (graph, weights) = import_dir(&d).unwrap();
    assert!(
        graph.inputs.iter().all(|i| i.role == InputRole::Data),
        "{model}"
    );
    let inputs: Vec<Array> = graph
        .inputs
        .iter()
        .map(|i| {
            let file = d.join(format!("input-{}.npy", i.name));
            let file = if file.is_file() {
                file
            } else {
                d.join("input-data.npy")
            };
            npy_array(&file)
        })
        .collect();
    // One pass for the outputs' shapes, which the head gradients take.
    let outs = forward(&graph, &weights, &inputs).unwrap();
    let heads: Vec<Array> = outs
        .iter()
        .enumerate()
        .map(|(k, o)| pseudo_random(&o.shape, 7 + k as u64))
        .collect();
    let (_, got) = backward(&graph, &weights, &inputs, &heads).unwrap();
    let objective = |w: &[Array], x: &[Array]| -> f64 {
        let outs = forward(&graph, w, x).unwrap();
        outs.iter()
            .zip(&heads)
            .map(|(o, h)| o.data.iter().zip(&h.data).map(|(a, b)| a * b).sum::<f64>())
            .sum()
    };
    const EPS: f64 = 1e-6;
    let mut worst = 0.0f64;
    let mut compare = |numeric: f64, analytic: f64, scale: f64| {
        worst = worst.max((numeric - analytic).abs() / scale);
    };
    // The data inputs that are real numbers (not token ids).
    for (k, g) in got.inputs.iter().enumerate() {
        let Some(g) = g else { continue };
        let scale = g.data.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for e in spread(g.data.len(), if params { 6 } else { 3 }) {
            let (mut up, mut down) = (inputs.clone(), inputs.clone());
            up[k].data[e] += EPS;
            down[k].data[e] -= EPS;
            let numeric = (objective(&weights, &up) - objective(&weights, &down)) / (2.0 * EPS);
            compare(numeric, g.data[e], scale);
        }
    }
    // Parameters spread over the graph: the first, the last and two between.
    let trainable: Vec<usize> = (0..graph.params.len())
        .filter(|&p| params && graph.params[p].role == ParamRole::Trainable)
        .collect();
    for &p in &spread(trainable.len(), 4)
        .into_iter()
        .map(|i| trainable[i])
        .chain(trainable.last().copied())
        .collect::<Vec<_>>()
    {
        let g = &got.params[p];
        let scale = g.data.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for e in spread(g.data.len(), 4) {
            let (mut up, mut down) = (weights.clone(), weights.clone());
            up[p].data[e] += EPS;
            down[p].data[e] -= EPS;
            let numeric = (objective(&up, &inputs) - objective(&down, &inputs)) / (2.0 * EPS);
            compare(numeric, g.data[e], scale);
        }
    }
    worst
}

#[test]
fn whole_models_agree_with_finite_differences() {
    let mut failures = Vec::new();
    for &(model, params) in MODELS {
        let worst = check(model, params);
        eprintln!("{model}: worst {worst:e} of max(1, max|g|)");
        if worst > 1e-5 {
            failures.push(format!("{model}: off finite differences by {worst:e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
