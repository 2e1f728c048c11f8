//! Gradients equal MXNet 1.9.1's: every one-operator case of `tests/fixtures/grads/`
//! (`tools/make_grad_fixtures.py`: MXNet's autograd on the op fixtures' inputs and
//! parameters, with a random head gradient), imported exactly as a user's model would
//! be, differentiated by `ward_train::backward`, and compared input by input and
//! parameter by parameter within `1e-4 · max(1, max|g|)`.
//!
//! A case whose operator has no rule yet must be refused by `check_differentiable`, and
//! its operator listed in [`NOT_YET`]; the test fails when a listed operator is no longer
//! refused, so the list cannot go stale.
//!
//! Second check: on the same cases, every rule's gradient agrees with central finite
//! differences of the reference interpreter (in f64) of `Σ head ⊙ output` (at up to 64
//! elements of each argument), except for the
//! loss heads (whose gradient is not their output's derivative), where MXNet's
//! gradient is not the derivative on purpose ([`NOT_THE_DERIVATIVE`]), and for the
//! arguments of step functions (comparisons, logical operators, where's condition, topk's
//! indices and mask, the sequence operators' lengths) and of sorts over ties, whose cases
//! hold ties on purpose.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;
use ward_graph::interp::Array;
use ward_train::{backward, check_differentiable, forward, GradError};

use crate::support::{fixtures, import_dir, npy_array, read};

/// MXNet operators whose gradient rules do not exist yet: refused, naming the node.
const NOT_YET: &[&str] = &[];

/// Operators whose MXNet 1.9.1 gradient is not the derivative of their output, which
/// ward reproduces so that training gives MXNet's numbers.
const NOT_THE_DERIVATIVE: &[(&str, &str)] = &[
    (
        "selu",
        "MXNet's SELU slope below 0 is λ·(y + α) where the derivative is y + λ·α",
    ),
    (
        "pool1d_avg_k3s2p1_full",
        "avg over a full window past a padded end: the forward pass divides by the window \
         clipped at the end plus the padding, the gradient by the end plus twice the padding",
    ),
    ("pool2d_avg_k3s2p1_full_cip", "as pool1d_avg_k3s2p1_full"),
    ("pool3d_avg_k3s2p1_full_cip", "as pool1d_avg_k3s2p1_full"),
    (
        "red_max_9",
        "a tie for the maximum: MXNet gives the whole gradient to every tied element, \
         where the output has no derivative (a step either way moves only one of them)",
    ),
    ("red_max_19", "as red_max_9"),
    ("red_min_19", "as red_max_9, for the minimum"),
    (
        "red_argmax_3",
        "a tie for the maximum: a step on a tied element moves the index, which MXNet \
         (and ward) differentiate as the constant it is everywhere else",
    ),
    ("red_argmax_7", "as red_argmax_3"),
    ("red_argmax_11", "as red_argmax_3"),
    ("red_argmax_15", "as red_argmax_3"),
    ("red_argmax_19", "as red_argmax_3"),
    ("red_argmin_7", "as red_argmax_3, for the minimum"),
    ("red_argmin_15", "as red_argmax_3, for the minimum"),
];

/// Cases where the gradient is the derivative but the function bends on a scale far below
/// the finite differences' step, so those measure a secant, not the slope.
const STEEPER_THAN_THE_STEP: &[(&str, &str)] = &[
    (
        "l2norm_2_spatial",
        "an all-zero sample: x/√(x² + eps) with eps 1e-10 turns from -1 to 1 within 1e-5 of 0",
    ),
    ("l2norm_7_channel", "as l2norm_2_spatial"),
    ("l2norm_12_instance", "as l2norm_2_spatial"),
    ("l2norm_22_channel", "as l2norm_2_spatial"),
];

/// Cases the importer refuses by name (an attribute value ward does not implement).
const REFUSED: &[&str] = &["bn_output_mean_var", "bn_train_gamma_momentum"];

/// gather_nd cases with negative indices: MXNet 1.9.1's forward pass adds the axis's
/// size to a negative index (in floating point, then truncates), but its backward
/// (`scatter_nd`) does not: it writes -0.5's gradient to index 0 where the forward read
/// the last, and -1's past the data (the recording of several such cases crashed MXNet,
/// which `tools/make_grad_fixtures.py` lists as skipped). Ward's gradient goes where the
/// forward read, which [`gather_nd_from_the_end_matches_finite_differences`] checks.
const GATHER_ND_FROM_THE_END: &[&str] = &["gathernd_6", "gathernd_18", "gathernd_negative_halves"];

/// Cases whose MXNet gradient ward does not reproduce on purpose, and why.
const NOT_COMPARED: &[(&str, &str)] = &[
    (
        "deformconv_5",
        "a NaN offset: MXNet 1.9.1's CPU backward (deformable_col2im_coord) casts the NaN \
         position to an integer and reads the data outside the image, undefined behaviour \
         that gives NaN here (recording deformconv_21, which holds one too, crashed MXNet); \
         its forward pass samples nothing there, and ward sends that sample no gradient",
    ),
    (
        "softmaxoutput_flatten_4d",
        "MXNet 1.9.1 from PyPI computes 4-D SoftmaxOutput's forward pass with oneDNN over the \
     last axis only, and its gradient from that output; ward keeps the documented \
     flattening (see ward-exec's conformance test)",
    ),
];

#[derive(Deserialize)]
struct Index {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    op: String,
    status: String,
}

/// What tools/make_grad_fixtures.py records of a case.
#[derive(Deserialize)]
struct GradMeta {
    /// Arguments MXNet gives no gradient (integer indices).
    no_gradient: Vec<String>,
    /// MXNet's parameters (an RNN's are one packed vector; ward unpacks it per cell).
    params: Vec<String>,
}

/// MXNet's gradient of each RNN's packed parameter vector, unpacked as the importer
/// unpacks the vector itself: graph parameter index → its expected gradient.
fn unpacked_rnn_grads(
    graph: &ward_graph::Graph,
    inputs: &[Array],
    meta: &GradMeta,
    dir: &Path,
) -> HashMap<usize, Array> {
    use ward_graph::interp::rnn::{unpack_rnn_params, RnnConfig, RnnMode as K};
    use ward_graph::ir::Source;
    use ward_graph::ops::rnn::RnnMode;
    use ward_graph::ops::Op;
    let known: BTreeSet<&str> = graph.params.iter().map(|p| p.name.as_str()).collect();
    let packed: Vec<&String> = meta
        .params
        .iter()
        .filter(|p| !known.contains(p.as_str()))
        .collect();
    let mut out = HashMap::new();
    for (node, name) in graph
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Rnn(op) => Some((n, op)),
            _ => None,
        })
        .zip(packed)
    {
        let (node, op) = node;
        let Source::Input(data) = node.inputs[0] else {
            panic!("the RNN's data is not a graph input")
        };
        let cfg = RnnConfig {
            mode: match op.mode {
                RnnMode::Lstm => K::Lstm,
                RnnMode::Gru => K::Gru,
                RnnMode::RnnTanh => K::RnnTanh,
                RnnMode::RnnRelu => K::RnnRelu,
            },
            hidden: op.hidden,
            layers: op.layers,
            bidirectional: op.bidirectional,
        };
        let grad = npy_array(&dir.join(format!("grad-{name}.npy")));
        let cells = unpack_rnn_params(&grad, &cfg, inputs[data].shape[2]).unwrap();
        let first = op.state_inputs();
        for (k, w) in cells.into_iter().enumerate() {
            let parts = [w.i2h_weight, w.h2h_weight, w.i2h_bias, w.h2h_bias];
            for (j, part) in parts.into_iter().enumerate() {
                if let Source::Param(p) = node.inputs[first + k * 4 + j] {
                    out.insert(p, part);
                }
            }
        }
    }
    out
}

/// The worst difference of `got` from `want` in units of `max(1, max|want|)`.
fn distance(got: &Array, want: &Array) -> Result<f64, String> {
    if got.data.len() != want.data.len() {
        return Err(format!(
            "{} values where MXNet has {}",
            got.data.len(),
            want.data.len()
        ));
    }
    let scale = want
        .data
        .iter()
        .filter(|v| v.is_finite())
        .fold(1.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
        // NaN must meet NaN, and an infinity the same infinity.
        if !g.is_finite() || !w.is_finite() {
            if !(g == w || (g.is_nan() && w.is_nan())) {
                return Err(format!("value {i} is {g}, MXNet {w}"));
            }
            continue;
        }
        worst = worst.max((g - w).abs() / scale);
    }
    Ok(worst)
}

enum Outcome {
    /// The worst distance from MXNet, and from finite differences (`None`: not taken).
    Matched(f64, Option<f64>),
    Refused(GradError),
}

/// The worst distance of `backward`'s gradients from central finite differences of the
/// interpreter's `Σ head ⊙ output`, over every data input and parameter element; `None`
/// when a value is not finite (the NaN cases) or the graph ends in a loss head.
fn finite_difference_distance(
    graph: &ward_graph::Graph,
    weights: &[Array],
    inputs: &[Array],
    heads: &[Array],
    got: &ward_train::Gradients,
) -> Option<f64> {
    use ward_graph::ops::Op;
    if graph.nodes.iter().any(|n| {
        matches!(
            n.op,
            Op::SoftmaxOutput(_) | Op::RegressionOutput(_) | Op::MakeLoss(_)
        )
    }) {
        return None;
    }
    // Finite differences need finite, moderate values: not the NaN cases, nor an output
    // of MXNet's lowest float (a max window of no element), which cancels catastrophically.
    let moderate = |a: &[Array]| a.iter().all(|x| x.data.iter().all(|v| v.abs() < 1e30));
    let outputs = forward(graph, weights, inputs).ok()?;
    if !moderate(weights) || !moderate(inputs) || !moderate(&outputs) {
        return None;
    }
    // The training-mode forward pass (BatchNorm by the batch's statistics), as the
    // gradients were taken.
    let objective = |weights: &[Array], inputs: &[Array]| -> f64 {
        let outs = forward(graph, weights, inputs).unwrap();
        outs.iter()
            .zip(heads)
            .map(|(o, h)| o.data.iter().zip(&h.data).map(|(a, b)| a * b).sum::<f64>())
            .sum()
    };
    // Arguments read only through a step function (a comparison's or logical operator's
    // operands, where's condition) have derivative 0 except at ties and zeros, which
    // these cases hold on purpose: there a finite difference measures the jump. MXNet's
    // zero gradient is compared above.
    let steps: std::collections::HashSet<ward_graph::ir::Source> = graph
        .nodes
        .iter()
        .flat_map(|n| {
            let read: &[ward_graph::ir::Source] = match &n.op {
                Op::Binary(b) if b.kind.is_predicate() => &n.inputs,
                Op::Scalar(s) if s.kind.predicate().is_some() => &n.inputs,
                Op::Unary(u) if u.kind == ward_graph::ops::elementwise::UnaryKind::LogicalNot => {
                    &n.inputs
                }
                Op::Where(_) => n.inputs.get(..1).unwrap_or_default(),
                // Rounding to float16 is a staircase; MXNet passes the gradient straight
                // through it (rounded to float16), which the MXNet comparison checks.
                Op::Cast(c) if c.to == ward_graph::ops::elementwise::CastType::Float16 => &n.inputs,
                // topk's indices and mask are step functions of its data; its values
                // (and sort's) have no derivative where two elements tie, which the tie
                // cases hold on purpose (MXNet's gradient is compared above).
                Op::Topk(t)
                    if t.ret != ward_graph::ops::order::TopkReturn::Value
                        || n.inputs.iter().any(|s| holds_ties(*s, inputs)) =>
                {
                    &n.inputs
                }
                // Lengths are truncated: a step function, whose integer lengths the
                // sequence cases hold on purpose.
                Op::SequenceMask(_) | Op::SequenceReverse(_) | Op::SequenceLast(_) => {
                    n.inputs.get(1..).unwrap_or_default()
                }
                // box_nms selects rows: its output jumps where a score ties or crosses a
                // threshold, or an IoU does, which the cases hold on purpose, and MXNet's
                // backward copies the rows' gradient without the format conversion.
                // box_decode and box_encode have MXNet's zero gradient. All are compared
                // with MXNet's above.
                Op::BoxNms(_) | Op::BoxDecode(_) | Op::BoxEncode(_) => &n.inputs,
                // MXNet gives the rois a zero gradient, though their coordinates move
                // the output (the MXNet comparison checks the zero).
                Op::RoiAlign(_) | Op::RoiPool(_) => n.inputs.get(1..).unwrap_or_default(),
                // The sampling positions are MXNet's float32 offsets: a step of 1e-6
                // moves them by a few units in their last place, so a difference quotient
                // measures rounding there (the MXNet comparison checks the offsets'
                // gradient; `deformable_offsets_match_finite_differences` below checks
                // them with a step float32 holds).
                Op::DeformableConv(_) => n.inputs.get(1..2).unwrap_or_default(),
                _ => &[],
            };
            read.iter().copied()
        })
        .collect();
    const EPS: f64 = 1e-6;
    let mut worst = 0.0f64;
    let labels: Vec<bool> = graph
        .inputs
        .iter()
        .map(|i| i.role == ward_graph::ir::InputRole::Label)
        .collect();
    for (which, grads) in [
        (0, &got.inputs),
        (1, &got.params.iter().cloned().map(Some).collect()),
    ] {
        for (k, g) in grads.iter().enumerate() {
            if which == 0 && labels[k] {
                continue;
            }
            // States (moving statistics) are not trained: no gradient to compare.
            if which == 1 && graph.params[k].role != ward_graph::ir::ParamRole::Trainable {
                continue;
            }
            let source = if which == 0 {
                ward_graph::ir::Source::Input(k)
            } else {
                ward_graph::ir::Source::Param(k)
            };
            if steps.contains(&source) {
                continue;
            }
            let Some(g) = g else { continue };
            let scale = g.data.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            // At most 64 elements of each argument, spread evenly: enough to catch a
            // wrong rule, without a forward pass per element of every convolution.
            let step = g.data.len().div_ceil(64).max(1);
            for e in (0..g.data.len()).step_by(step) {
                let (mut w, mut x) = (weights.to_vec(), inputs.to_vec());
                let target = if which == 0 { &mut x[k] } else { &mut w[k] };
                let at = target.data[e];
                target.data[e] = at + EPS;
                let up = objective(&w, &x);
                let target = if which == 0 { &mut x[k] } else { &mut w[k] };
                target.data[e] = at - EPS;
                let down = objective(&w, &x);
                let numeric = (up - down) / (2.0 * EPS);
                worst = worst.max((numeric - g.data[e]).abs() / scale);
            }
        }
    }
    Some(worst)
}

/// Whether a graph input holds two equal values.
fn holds_ties(source: ward_graph::ir::Source, inputs: &[Array]) -> bool {
    let ward_graph::ir::Source::Input(i) = source else {
        return false;
    };
    let Some(x) = inputs.get(i) else {
        return false;
    };
    let mut values = x.data.clone();
    values.sort_by(f64::total_cmp);
    values.windows(2).any(|w| w[0] == w[1])
}

/// A case's inputs (data and labels alike, as the op fixture recorded them) and the head
/// gradients MXNet's backward pass was given.
fn recorded_inputs_and_heads(
    graph: &ward_graph::Graph,
    ops: &std::path::Path,
    grads: &std::path::Path,
) -> (Vec<Array>, Vec<Array>) {
    let inputs = graph
        .inputs
        .iter()
        .map(|i| npy_array(&ops.join(format!("input-{}.npy", i.name))))
        .collect();
    let heads = (0..graph.outputs.len())
        .map(|k| npy_array(&grads.join(format!("head-{k}.npy"))))
        .collect();
    (inputs, heads)
}

fn check(name: &str) -> Result<Outcome, String> {
    let ops = fixtures("ops").join(name);
    let grads = fixtures("grads").join(name);
    let (graph, weights) = import_dir(&ops)?;
    if let Err(e) = check_differentiable(&graph) {
        return Ok(Outcome::Refused(e));
    }
    let (inputs, heads) = recorded_inputs_and_heads(&graph, &ops, &grads);
    let (_, got) = backward(&graph, &weights, &inputs, &heads).map_err(|e| e.to_string())?;
    let numeric = finite_difference_distance(&graph, &weights, &inputs, &heads, &got);

    let mut worst = 0.0f64;
    let labels: BTreeSet<&str> = graph
        .inputs
        .iter()
        .filter(|i| i.role == ward_graph::ir::InputRole::Label)
        .map(|i| i.name.as_str())
        .collect();
    let grad_meta: GradMeta = serde_json::from_slice(&read(&grads.join("meta.json"))).unwrap();
    for (input, g) in graph.inputs.iter().zip(&got.inputs) {
        if labels.contains(input.name.as_str()) {
            continue; // MXNet gives labels no meaningful gradient; ward gives none.
        }
        if grad_meta.no_gradient.contains(&input.name) {
            assert!(
                g.is_none(),
                "{}: ward gives integer ids a gradient",
                input.name
            );
            continue;
        }
        let want = npy_array(&grads.join(format!("grad-{}.npy", input.name)));
        let g = match g {
            Some(g) => g.clone(),
            None => Array::zeros(want.shape.clone()).unwrap(),
        };
        worst = worst.max(distance(&g, &want).map_err(|e| format!("input {}: {e}", input.name))?);
    }
    let unpacked = unpacked_rnn_grads(&graph, &inputs, &grad_meta, &grads);
    for (p, (param, g)) in graph.params.iter().zip(&got.params).enumerate() {
        if let Some(want) = unpacked.get(&p) {
            worst =
                worst.max(distance(g, want).map_err(|e| format!("parameter {}: {e}", param.name))?);
            continue;
        }
        if param.role != ward_graph::ir::ParamRole::Trainable {
            // State (BatchNorm's moving statistics): MXNet's aux, never a gradient.
            assert!(
                g.data.iter().all(|&v| v == 0.0),
                "{} got a gradient",
                param.name
            );
            continue;
        }
        let want = npy_array(&grads.join(format!("grad-{}.npy", param.name)));
        worst =
            worst.max(distance(g, &want).map_err(|e| format!("parameter {}: {e}", param.name))?);
    }
    Ok(Outcome::Matched(worst, numeric))
}

#[test]
fn every_differentiable_operator_matches_mxnet_autograd() {
    let index: Index =
        serde_json::from_slice(&read(&fixtures("grads").join("index.json"))).unwrap();
    let mut failures = Vec::new();
    let mut matched: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_ops: BTreeSet<String> = BTreeSet::new();
    let mut differenced = 0;
    for case in index.cases.iter().filter(|c| c.status == "recorded") {
        if REFUSED.contains(&case.name.as_str())
            || NOT_COMPARED.iter().any(|(n, _)| *n == case.name)
            || GATHER_ND_FROM_THE_END.contains(&case.name.as_str())
        {
            continue;
        }
        match check(&case.name) {
            Ok(Outcome::Matched(worst, numeric)) if worst <= 1e-4 => {
                *matched.entry(case.op.clone()).or_default() += 1;
                let exempt = NOT_THE_DERIVATIVE
                    .iter()
                    .chain(STEEPER_THAN_THE_STEP)
                    .any(|(n, _)| *n == case.name);
                match numeric {
                    Some(d) if d > 1e-5 && !exempt => failures.push(format!(
                        "{} ({}): off finite differences by {d:e}",
                        case.name, case.op
                    )),
                    Some(d) if d <= 1e-5 && exempt => failures.push(format!(
                        "{} is listed as NOT_THE_DERIVATIVE or STEEPER_THAN_THE_STEP but agrees with finite differences",
                        case.name
                    )),
                    Some(_) => differenced += 1,
                    None => {}
                }
            }
            Ok(Outcome::Matched(worst, _)) => failures.push(format!(
                "{} ({}): off by {worst:e} of max(1, max|g|)",
                case.name, case.op
            )),
            Ok(Outcome::Refused(e)) => {
                if NOT_YET.contains(&case.op.as_str()) {
                    refused_ops.insert(case.op.clone());
                } else {
                    failures.push(format!("{} ({}): refused: {e}", case.name, case.op));
                }
            }
            Err(e) => failures.push(format!("{} ({}): {e}", case.name, case.op)),
        }
    }
    for op in NOT_YET {
        if matched.contains_key(*op) {
            failures.push(format!("{op} is listed as NOT_YET but has a rule now"));
        }
    }
    let total: usize = matched.values().sum();
    eprintln!(
        "{total} cases of {} operators match MXNet ({differenced} also finite differences); \
         refused (no rule yet): {refused_ops:?}",
        matched.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(total >= 100, "only {total} cases compared");
}

#[test]
fn gather_nd_from_the_end_matches_finite_differences() {
    for name in GATHER_ND_FROM_THE_END {
        let ops = fixtures("ops").join(name);
        let grads = fixtures("grads").join(name);
        let (graph, weights) = import_dir(&ops).unwrap();
        let (inputs, heads) = recorded_inputs_and_heads(&graph, &ops, &grads);
        let (_, got) = backward(&graph, &weights, &inputs, &heads).unwrap();
        // The indices get no gradient (MXNet's are zeros); the data's is checked.
        assert!(got.inputs[1].is_none(), "{name}");
        assert!(got.inputs[0].is_some(), "{name}");
        let d = finite_difference_distance(&graph, &weights, &inputs, &heads, &got).unwrap();
        assert!(d <= 1e-5, "{name}: off finite differences by {d:e}");
    }
}

/// Integer values (a cast to int32, shape_array's int64) are step functions of what made
/// them: training through them is refused, naming the node and the type.
#[test]
fn training_through_integer_values_is_refused_naming_the_node() {
    for (case, dtype) in [
        ("cast_int_0_int32", "int32"),
        ("cast_int_2_int8", "int8"),
        ("shapearray_0", "int64"),
    ] {
        let (graph, _) = import_dir(&fixtures("ops").join(case)).unwrap();
        let e = check_differentiable(&graph).unwrap_err().to_string();
        assert!(
            e.contains("no gradient") && e.contains(dtype) && e.contains(&graph.nodes[0].name),
            "{case}: {e}"
        );
    }
}

/// MultiBoxDetection, Proposal and MultiProposal have no gradient to train through (MXNet's backward
/// gives zeros): training through them is refused, naming the node and the operator.
#[test]
fn training_through_multibox_detection_and_proposal_is_refused_naming_the_node() {
    for (case, op) in [
        ("mbdet_default", "multibox_detection"),
        ("prop_score", "proposal"),
        ("mprop_default", "multi_proposal"),
    ] {
        let (graph, _) = import_dir(&fixtures("ops").join(case)).unwrap();
        let e = check_differentiable(&graph).unwrap_err().to_string();
        assert!(
            e.contains(&graph.nodes[0].name) && e.contains(op) && e.contains("0"),
            "{case}: {e}"
        );
    }
}

/// Both deformable convolutions against central finite differences of the interpreter, on
/// every case: MXNet 1.9.1 has no CPU backward for DCNv2 (its cases are recorded as
/// skipped), so this is what holds its rule. Data, mask, weight and bias as the other
/// cases are (a step of 1e-6); the offsets with a step of 1e-3, which float32 holds to
/// about 1e-7, away from whole-pixel positions, where the bilinear weights bend (and the
/// cases put samples on purpose).
#[test]
fn deformable_convolutions_match_finite_differences() {
    use ward_graph::ir::Source;
    let mut checked = 0;
    let mut names: Vec<String> = std::fs::read_dir(fixtures("ops"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("deformconv_") || n.starts_with("mdeformconv_"))
        .collect();
    names.sort();
    for name in &names {
        let ops = fixtures("ops").join(name);
        let (graph, weights) = import_dir(&ops).unwrap();
        let inputs: Vec<Array> = graph
            .inputs
            .iter()
            .map(|i| npy_array(&ops.join(format!("input-{}.npy", i.name))))
            .collect();
        if inputs.iter().any(|a| a.data.iter().any(|v| v.is_nan())) {
            continue; // The NaN cases: no finite differences.
        }
        let outputs = forward(&graph, &weights, &inputs).unwrap();
        // A fixed head gradient of varied values.
        let heads: Vec<Array> = outputs
            .iter()
            .map(|o| {
                let data = (0..o.data.len())
                    .map(|i| ((i * 7919 % 23) as f64 - 11.0) / 7.0)
                    .collect();
                Array::new(o.shape.clone(), data).unwrap()
            })
            .collect();
        let (_, got) = backward(&graph, &weights, &inputs, &heads).unwrap();
        let d = finite_difference_distance(&graph, &weights, &inputs, &heads, &got).unwrap();
        assert!(d <= 1e-5, "{name}: off finite differences by {d:e}");
        let Source::Input(k) = graph.nodes[0].inputs[1] else {
            panic!("{name}: the offsets are not a graph input")
        };
        let objective = |inputs: &[Array]| -> f64 {
            let outs = forward(&graph, &weights, inputs).unwrap();
            outs.iter()
                .zip(&heads)
                .map(|(o, h)| o.data.iter().zip(&h.data).map(|(a, b)| a * b).sum::<f64>())
                .sum()
        };
        let g = got.inputs[k].as_ref().unwrap();
        let scale = g.data.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let mut worst = 0.0f64;
        for e in (0..g.data.len()).step_by(g.data.len().div_ceil(64).max(1)) {
            let at = inputs[k].data[e];
            if (at - at.round()).abs() < 0.01 {
                continue;
            }
            const EPS: f64 = 1e-3;
            let mut x = inputs.clone();
            x[k].data[e] = at + EPS;
            let up = objective(&x);
            x[k].data[e] = at - EPS;
            let down = objective(&x);
            worst = worst.max(((up - down) / (2.0 * EPS) - g.data[e]).abs() / scale);
        }
        assert!(
            worst <= 1e-3,
            "{name}: offsets off finite differences by {worst:e}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} deformable cases checked");
}
