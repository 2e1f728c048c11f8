//! Every model fixture made by `tools/make_model_fixtures.py` with MXNet 1.9.1 imports and
//! runs on ward's CPU backend with MXNet's numbers:
//! max|ward − mxnet| ≤ 1e-4 · max(1, max|mxnet|).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use std::sync::Arc;
use ward_core::{npy, DType, Tensor};

use ward_exec::{Executable, TractBackend, WeightSet};
use ward_graph::ir::InputRole;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;

#[derive(Deserialize)]
pub(crate) struct Meta {
    pub(crate) inputs: Vec<MetaInput>,
    pub(crate) outputs: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct MetaInput {
    name: String,
    pub(crate) shape: Vec<i64>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

pub(crate) fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Imports fixture `name` twice, declaring its batch dim variable and then fixed (tract
/// optimises a plan of known shapes differently: a batch of 1 drops the axis), and
/// compares every output each time.
fn check(name: &str) {
    check_declared(name, true);
    check_declared(name, false);
}

fn check_declared(name: &str, variable_batch: bool) {
    let label = if variable_batch {
        format!("{name} (variable batch)")
    } else {
        format!("{name} (fixed batch)")
    };
    let declare = |shape: &[i64]| {
        let mut shape = shape.to_vec();
        if variable_batch {
            shape[0] = -1;
        }
        shape
    };
    for (k, (got, want)) in run_fixture(&fixtures().join(name), &label, declare)
        .iter()
        .enumerate()
    {
        let (g, w) = (got.to_f32_vec(), want.to_f32_vec());
        let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = g
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-4 * scale,
            "{label}: output {k} differs from MXNet by {worst} (allowed {})",
            1e-4 * scale
        );
    }
}

/// Imports the MXNet fixture in `dir` (`meta.json`, `model-symbol.json`,
/// `model-0000.params`, `input-NAME.npy`, `output-K.npy`) with each input's shape as
/// `declare` makes it from meta.json's; checks MXNet's output names and the graph's JSON
/// round trip; runs it on tract and returns each output beside MXNet's, of the same shape.
pub(crate) fn run_fixture(
    dir: &Path,
    label: &str,
    declare: impl Fn(&[i64]) -> Vec<i64>,
) -> Vec<(Tensor, Tensor)> {
    let meta: Meta = serde_json::from_slice(&read(&dir.join("meta.json"))).unwrap();
    let symbol = read_symbol(
        &read(&dir.join("model-symbol.json")),
        &SymbolLimits::default(),
    )
    .unwrap();
    let params = read_params(
        &read(&dir.join("model-0000.params")),
        &ParamsLimits::default(),
    )
    .unwrap();
    let declared: Vec<DeclaredInput> = meta
        .inputs
        .iter()
        .map(|i| DeclaredInput {
            name: i.name.clone(),
            dtype: DType::F32,
            shape: declare(&i.shape),
        })
        .collect();
    let imported = import(&symbol, params, &declared)
        .unwrap_or_else(|e| panic!("{label}: import failed: {e}"));
    assert_eq!(
        imported.graph.outputs.len(),
        meta.outputs.len(),
        "{label}: output count"
    );
    for (o, expected) in imported.graph.outputs.iter().zip(&meta.outputs) {
        assert_eq!(
            &o.name, expected,
            "{label}: output names follow MXNet's list_outputs()"
        );
    }
    // The graph survives its own JSON round trip.
    let graph = ward_graph::Graph::from_json(&imported.graph.to_json()).unwrap();
    assert_eq!(graph, imported.graph);
    let weights: HashMap<String, Tensor> = imported.weights.into_iter().collect();
    let weights = WeightSet::new(&graph, weights).unwrap();
    let model = Executable::new(graph, weights, Arc::new(TractBackend::new(1).unwrap())).unwrap();
    let inputs: Vec<Tensor> = model
        .graph()
        .inputs
        .iter()
        .filter(|i| i.role == InputRole::Data)
        .map(|i| npy::read_npy(&read(&dir.join(format!("input-{}.npy", i.name)))).unwrap())
        .collect();
    let outputs = model
        .run(&inputs)
        .unwrap_or_else(|e| panic!("{label}: run failed: {e}"));
    assert_eq!(outputs.len(), meta.outputs.len(), "{label}");
    outputs
        .into_iter()
        .enumerate()
        .map(|(k, got)| {
            let want = npy::read_npy(&read(&dir.join(format!("output-{k}.npy")))).unwrap();
            assert_eq!(got.shape(), want.shape(), "{label}: output {k} shape");
            (got, want)
        })
        .collect()
}

macro_rules! fixture_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*
    };
}

fixture_tests!(
    resnet18_v1,
    mobilenet0_25,
    mobilenetv2_0_25,
    squeezenet1_1,
    mlp,
    lenet_gluon,
    lenet_module,
    text_lstm,
    text_gru,
    text_rnn_tanh,
    text_rnn_relu,
    census_misc,
    census_reshape,
    np_mlp,
    fused_residual,
    fused_attention,
    yolo_upsample,
    // Exported by tools/zoo/export_zoo.py (narrowed: 2 layers, 32 units, 2 heads): one
    // model of each family the zoo tool found whole product lines in.
    bert_12_768_12,
    transformer_en_de_512,
    fastscnn_citys,
    // ELMo (GluonNLP): four `_foreach` LSTM loops, unrolled at import.
    elmo_2x1024_128_2048cnn_1xhighway,
);
