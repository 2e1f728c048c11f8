//! Dense layers on every path the tract backend takes: the weight read in place (a
//! prediction's few rows), tract's packed product (many rows), a weight two layers share,
//! and an unflattened input of rank 3; each against x·Wᵀ + b computed here in f64.

use std::collections::HashMap;
use std::sync::Arc;

use ward_core::{DType, Tensor};
use ward_exec::{Executable, TractBackend, WeightSet};
use ward_graph::ir::{Graph, GraphInput, GraphOutput, InputRole, Node, ParamDecl, Source};
use ward_graph::ops::activation::{Activation, ActivationKind};
use ward_graph::ops::linear::Dense;

fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let v = i.wrapping_add(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// x (rows, k) · W(units, k)ᵀ + b, in f64.
fn by_hand(x: &[f32], w: &[f32], b: &[f32], k: usize) -> Vec<f64> {
    let units = b.len();
    x.chunks(k)
        .flat_map(|row| {
            (0..units).map(move |u| {
                f64::from(b[u])
                    + (0..k)
                        .map(|j| f64::from(row[j]) * f64::from(w[u * k + j]))
                        .sum::<f64>()
            })
        })
        .collect()
}

fn close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-5 * w.abs().max(1.0),
            "element {i}: {g} vs {w}"
        );
    }
}

/// dense(x) → relu → dense with the same weight when `shared` (k = units), or a second one.
fn graph(k: usize, units: usize, flatten: bool, shared: bool) -> Graph {
    let mut g = Graph::new();
    g.inputs.push(GraphInput {
        name: "x".into(),
        dtype: DType::F32,
        role: InputRole::Data,
    });
    g.params
        .push(ParamDecl::new("w", DType::F32, vec![units, k]));
    g.params.push(ParamDecl::new("b", DType::F32, vec![units]));
    let dense = Dense {
        units,
        flatten,
        bias: true,
    };
    g.nodes.push(Node {
        name: "fc1".into(),
        op: dense.clone().into(),
        inputs: vec![Source::Input(0), Source::Param(0), Source::Param(1)],
    });
    let mut last = Source::Node(0, 0);
    if shared {
        g.nodes.push(Node {
            name: "relu".into(),
            op: Activation {
                kind: ActivationKind::Relu,
            }
            .into(),
            inputs: vec![last],
        });
        g.nodes.push(Node {
            name: "fc2".into(),
            op: dense.into(),
            inputs: vec![Source::Node(1, 0), Source::Param(0), Source::Param(1)],
        });
        last = Source::Node(2, 0);
    }
    g.outputs.push(GraphOutput {
        name: "y".into(),
        source: last,
    });
    g.validate().unwrap();
    g
}

fn run(g: Graph, w: &[f32], b: &[f32], x: &[f32], shape: &[usize]) -> (Vec<f32>, Vec<String>) {
    let units = b.len();
    let k = w.len() / units;
    let named = HashMap::from([
        (
            "w".to_string(),
            Tensor::from_f32(vec![units, k], w).unwrap(),
        ),
        ("b".to_string(), Tensor::from_f32(vec![units], b).unwrap()),
    ]);
    let set = WeightSet::new(&g, named).unwrap();
    let model = Executable::new(g, set, Arc::new(TractBackend::new(1).unwrap())).unwrap();
    let plan = model.plan(&[shape.to_vec()]).unwrap();
    let input = Tensor::from_f32(shape.to_vec(), x).unwrap();
    let y = plan
        .run(model.stage(&[input.view()]).unwrap())
        .unwrap()
        .remove(0);
    (y.to_f32_vec(), plan.operators())
}

#[test]
fn a_dense_layer_computes_x_times_w_transposed_plus_b_on_every_path() {
    let (k, units) = (37, 19);
    let (w, b) = (values(units * k, 1), values(units, 2));
    // A prediction's few rows, flattened from (rows, 1, k): the weight read in place.
    for rows in [1usize, 3, 8] {
        let x = values(rows * k, 3 + rows as u64);
        let (y, ops) = run(graph(k, units, true, false), &w, &b, &x, &[rows, 1, k]);
        close(&y, &by_hand(&x, &w, &b, k));
        assert!(
            ops.iter().any(|o| o == "WardWeightDense"),
            "{rows}: {ops:?}"
        );
    }
    // Many rows: tract's packed product.
    let rows = 40;
    let x = values(rows * k, 4);
    let (y, ops) = run(graph(k, units, false, false), &w, &b, &x, &[rows, k]);
    close(&y, &by_hand(&x, &w, &b, k));
    assert!(!ops.iter().any(|o| o == "WardWeightDense"), "{ops:?}");
    // Unflattened rank 3: the last axis is the features, (2, 3, k) → (2, 3, units).
    let x = values(6 * k, 5);
    let (y, _) = run(graph(k, units, false, false), &w, &b, &x, &[2, 3, k]);
    close(&y, &by_hand(&x, &w, &b, k));
}

#[test]
fn a_weight_two_dense_layers_share_is_read_by_both() {
    let units = 23;
    let (w, b) = (values(units * units, 6), values(units, 7));
    let x = values(2 * units, 8);
    let (y, ops) = run(graph(units, units, true, true), &w, &b, &x, &[2, units]);
    let first: Vec<f32> = by_hand(&x, &w, &b, units)
        .iter()
        .map(|&v| v.max(0.0) as f32)
        .collect();
    close(&y, &by_hand(&first, &w, &b, units));
    assert_eq!(
        ops.iter().filter(|o| *o == "WardWeightDense").count(),
        2,
        "{ops:?}"
    );
}

/// A weight of 64 MiB on more rows than a prediction's is read in place too, through the
/// matrix crate's product, rather than copied and packed by tract; each output (checked on
/// every 37th unit) is x·Wᵀ + b.
#[test]
fn a_large_weight_on_many_rows_is_read_in_place_by_the_matrix_product() {
    let (k, units, rows) = (32_768usize, 512usize, 12usize);
    let (w, b) = (values(units * k, 6), values(units, 7));
    let x = values(rows * k, 8);
    let (y, ops) = run(graph(k, units, false, false), &w, &b, &x, &[rows, k]);
    assert!(
        ops.iter().any(|o| o == "WardWeightDense"),
        "not read in place: {ops:?}"
    );
    assert_eq!(y.len(), rows * units);
    for row in 0..rows {
        for unit in (0..units).step_by(37) {
            let want = f64::from(b[unit])
                + (0..k)
                    .map(|j| f64::from(x[row * k + j]) * f64::from(w[unit * k + j]))
                    .sum::<f64>();
            let got = f64::from(y[row * units + unit]);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0) * (k as f64).sqrt(),
                "row {row}, unit {unit}: {got} vs {want}"
            );
        }
    }
}
