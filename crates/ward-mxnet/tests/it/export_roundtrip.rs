//! `ward_mxnet::export` inverts the importer: every MXNet fixture the repository holds
//! (the models of `tests/fixtures/models/` and the one-operator cases of
//! `tests/fixtures/ops/`, all written by MXNet 1.9.1) is imported, exported, read back
//! with the symbol and `.params` readers and imported again, and must give the same graph,
//! bit-identical weights and the same outputs on the reference interpreter. Graphs with
//! something MXNet cannot express are refused, naming the node and the attribute.
//!
//! That MXNet itself loads the exported files and predicts what ward predicts is checked by
//! hand with `tools/check_mxnet_export.py` (MXNet is not needed here).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use ward_core::{npy, DType, Tensor};
use ward_graph::interp::eval::run;
use ward_graph::ir::{Graph, GraphInput, GraphOutput, InputRole, Node, ParamDecl, ParamRole};
use ward_graph::ops::norm::BatchNorm;
use ward_graph::ops::reduce::Mean;
use ward_graph::ops::shape::{Fill, FillDim, Reshape, ReshapeDim};
use ward_graph::{Op, Source};
use ward_mxnet::export::{export, ExportError, Exported};
use ward_mxnet::import::{import, DeclaredInput, Imported};
use ward_mxnet::limits::{ParamsLimits, SymbolLimits};
use ward_mxnet::params::{read_params, split_key, ParamKind};
use ward_mxnet::symbol::read_symbol;

#[derive(Deserialize)]
struct Meta {
    inputs: Vec<MetaInput>,
}

#[derive(Deserialize)]
struct MetaInput {
    name: String,
    /// float32 unless MXNet takes the input in another type (softmax's lengths).
    #[serde(default = "float32")]
    dtype: String,
    shape: Vec<usize>,
}

fn float32() -> String {
    "float32".into()
}

fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(kind)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn import_files(
    symbol: &[u8],
    params: &[u8],
    declared: &[DeclaredInput],
) -> Result<Imported, String> {
    let symbol = read_symbol(symbol, &SymbolLimits::default()).map_err(|e| e.to_string())?;
    let params = read_params(params, &ParamsLimits::default()).map_err(|e| e.to_string())?;
    import(&symbol, params, declared).map_err(|e| e.to_string())
}

/// The declared inputs of a fixture; the batch dim variable for the models.
fn declared(dir: &Path, variable_batch: bool) -> Vec<DeclaredInput> {
    let meta: Meta = serde_json::from_slice(&read(&dir.join("meta.json"))).unwrap();
    meta.inputs
        .iter()
        .map(|i| {
            let mut shape: Vec<i64> = i.shape.iter().map(|&d| d as i64).collect();
            if variable_batch {
                shape[0] = -1;
            }
            DeclaredInput {
                name: i.name.clone(),
                dtype: i.dtype.parse().unwrap(),
                shape,
            }
        })
        .collect()
}

fn weights_in_order(imported: &Imported) -> Vec<Tensor> {
    let named: BTreeMap<&str, &Tensor> = imported
        .weights
        .iter()
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    imported
        .graph
        .params
        .iter()
        .map(|p| named[p.name.as_str()].clone())
        .collect()
}

/// Import → export → read → import: the same graph, the same weights, the same outputs.
/// Returns the export for further checks.
fn round_trip(dir: &Path, variable_batch: bool) -> Result<Exported, String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let declared = declared(dir, variable_batch);
    let first = import_files(
        &read(&dir.join("model-symbol.json")),
        &read(&dir.join("model-0000.params")),
        &declared,
    )?;
    let weights = weights_in_order(&first);
    let exported = export(&first.graph, &weights, &declared)
        .unwrap_or_else(|e| panic!("{name}: export failed: {e}"));
    let second =
        import_files(&exported.symbol_json, &exported.params, &declared).unwrap_or_else(|e| {
            panic!(
                "{name}: the exported files do not import: {e}\n{}",
                String::from_utf8_lossy(&exported.symbol_json)
            )
        });
    assert_eq!(second.graph, first.graph, "{name}: the graph changed");
    assert_eq!(second.unused_params, Vec::<String>::new(), "{name}");
    let again = weights_in_order(&second);
    assert_eq!(again.len(), weights.len(), "{name}");
    for ((a, b), decl) in weights.iter().zip(&again).zip(&first.graph.params) {
        assert!(
            a.dtype() == b.dtype() && a.shape() == b.shape() && a.bytes() == b.bytes(),
            "{name}: parameter {} changed",
            decl.name
        );
    }
    // Every output keeps its name, so MXNet lists the names the package declares.
    for o in &exported.outputs {
        assert_eq!(o.declared, o.mxnet, "{name}");
    }
    assert!(exported.dropped_nodes.is_empty() && exported.unused_params.is_empty());

    // Keys: `aux:` for exactly the BatchNorm statistics (MXNet's auxiliary states).
    let file = read_params(&exported.params, &ParamsLimits::default()).unwrap();
    for key in file.names.unwrap_or_default() {
        let (kind, param) = split_key(&key);
        let decl = first.graph.params.iter().find(|p| p.name == param).unwrap();
        let want = match decl.role {
            ParamRole::State => ParamKind::Aux,
            ParamRole::Trainable => ParamKind::Arg,
        };
        assert_eq!(kind, want, "{name}: key {key}");
    }

    // The same outputs on the reference interpreter.
    let data: Vec<Tensor> = first
        .graph
        .inputs
        .iter()
        .filter(|i| i.role == InputRole::Data)
        .map(|i| npy::read_npy(&read(&dir.join(format!("input-{}.npy", i.name)))).unwrap())
        .collect();
    let after = run(&second.graph, &again, &data).map_err(|e| format!("{name}: {e}"));
    if variable_batch {
        // A model: the graph is the same, so its outputs are; one run (the interpreter is
        // slow on the larger models) is held to what MXNet computed from the original
        // files, as ward-exec's tests hold tract to it.
        let after = after.unwrap();
        for (k, got) in after.iter().enumerate() {
            let want = npy::read_npy(&read(&dir.join(format!("output-{k}.npy")))).unwrap();
            assert_eq!(got.shape, want.shape(), "{name}: output {k}");
            let want = want.to_f64_vec();
            let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
            let worst = got
                .data
                .iter()
                .zip(&want)
                .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-4 * scale,
                "{name}: output {k} is {worst} from MXNet's"
            );
        }
    } else {
        // One operator (some recorded in training mode, some MXNet error cases): the
        // outputs before and after, bit for bit.
        let before = run(&first.graph, &weights, &data).map_err(|e| format!("{name}: {e}"));
        match (before, after) {
            (Ok(before), Ok(after)) => {
                assert_eq!(before.len(), after.len());
                for (k, (x, y)) in before.iter().zip(&after).enumerate() {
                    assert_eq!(x.shape, y.shape, "{name}: output {k}");
                    let same = x
                        .data
                        .iter()
                        .zip(&y.data)
                        .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                    assert!(same, "{name}: output {k} differs after the round trip");
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("{name}: before {a:?}, after {b:?}"),
        }
    }
    Ok(exported)
}

macro_rules! model_round_trips {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() {
            round_trip(&fixtures("models").join(stringify!($name)), true).unwrap();
        })*
    };
}

model_round_trips!(
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
    bert_12_768_12,
    transformer_en_de_512,
    fastscnn_citys,
);

#[test]
fn every_model_fixture_is_listed_above() {
    let listed = [
        "resnet18_v1",
        "mobilenet0_25",
        "mobilenetv2_0_25",
        "squeezenet1_1",
        "mlp",
        "lenet_gluon",
        "lenet_module",
        "text_lstm",
        "text_gru",
        "text_rnn_tanh",
        "text_rnn_relu",
        "census_misc",
        "census_reshape",
        "np_mlp",
        // Saved after MXNet's oneDNN pass: exported as the operators they fused.
        "fused_residual",
        "fused_attention",
        "yolo_upsample",
        // From tools/zoo/: BERT, a Transformer, a segmentation network.
        "bert_12_768_12",
        "transformer_en_de_512",
        "fastscnn_citys",
    ];
    // A symbol without weights (training from scratch; tests/it/new_params.rs): nothing
    // to export until a run has trained it.
    let symbol_only = ["lenet_classic"];
    for entry in std::fs::read_dir(fixtures("models")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if FOREACH_MODELS.contains(&name.as_str()) {
            continue;
        }
        if symbol_only.contains(&name.as_str()) {
            let params = fixtures("models").join(&name).join("model-0000.params");
            assert!(!params.exists(), "{name} has weights: give it a round trip");
            continue;
        }
        assert!(
            listed.contains(&name.as_str()),
            "model fixture {name} has no round trip"
        );
    }
}

/// Every one-operator case that the importer takes comes back the same; the cases it
/// refuses are MXNet features ward does not import, and are counted.
#[test]
fn every_operator_case_round_trips() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures("ops"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model-symbol.json").is_file())
        .collect();
    dirs.sort();
    let mut passed = 0;
    let mut not_imported = Vec::new();
    for dir in &dirs {
        match round_trip(dir, false) {
            Ok(_) => passed += 1,
            Err(e) => not_imported.push(format!("{}: {e}", dir.display())),
        }
    }
    assert!(
        passed >= 240,
        "{passed} of {} cases round-trip; not imported: {not_imported:#?}",
        dirs.len()
    );
}

#[test]
fn the_symbol_says_what_mxnet_needs() {
    let exported = round_trip(&fixtures("models").join("lenet_module"), true).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&exported.symbol_json).unwrap();
    assert_eq!(
        json["attrs"]["mxnet_version"],
        serde_json::json!(["int", 10901])
    );
    let nodes = json["nodes"].as_array().unwrap();
    let bn = nodes.iter().find(|n| n["op"] == "BatchNorm").unwrap();
    // The file's BatchNorm had no attributes: MXNet's defaults are now written out.
    assert_eq!(bn["attrs"]["fix_gamma"], "True");
    assert_eq!(bn["attrs"]["eps"], "0.001");
    // The label stays a variable of the symbol, as Module checkpoints have it.
    assert!(nodes
        .iter()
        .any(|n| n["op"] == "null" && n["name"] == "softmax_label"));
    let heads = json["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 1);
    let arg_nodes: Vec<u64> = json["arg_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["op"] == "null", arg_nodes.contains(&(i as u64)));
    }
}

#[test]
fn rnn_parameters_are_packed_as_gluon_packs_them() {
    let exported = round_trip(&fixtures("models").join("text_lstm"), true).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&exported.symbol_json).unwrap();
    let nodes = json["nodes"].as_array().unwrap();
    let concat = nodes
        .iter()
        .find(|n| n["op"] == "_rnn_param_concat")
        .unwrap();
    // 2 layers × 2 directions × 4 parameters, every weight before every bias.
    assert_eq!(concat["attrs"]["num_args"], "16");
    let parts: Vec<String> = concat["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let reshape = &nodes[e[0].as_u64().unwrap() as usize];
            assert_eq!(reshape["op"], "Reshape");
            let var = &nodes[reshape["inputs"][0][0].as_u64().unwrap() as usize];
            var["name"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        parts[..8].iter().all(|n| n.ends_with("weight")),
        "{parts:?}"
    );
    assert!(parts[8..].iter().all(|n| n.ends_with("bias")), "{parts:?}");
}

// ---- refusals: what has no MXNet form is named, never written differently ----

fn one_node_graph(op: Op, extra_params: Vec<ParamDecl>) -> (Graph, Vec<Tensor>) {
    let mut graph = Graph::new();
    graph.inputs.push(GraphInput {
        name: "data".into(),
        dtype: DType::F32,
        role: InputRole::Data,
    });
    let mut inputs = vec![Source::Input(0)];
    let mut weights = Vec::new();
    for (p, decl) in extra_params.into_iter().enumerate() {
        let len: usize = decl.shape.iter().product();
        weights.push(Tensor::from_f32(decl.shape.clone(), &vec![0.5; len]).unwrap());
        graph.params.push(decl);
        inputs.push(Source::Param(p));
    }
    graph.nodes.push(Node {
        name: "op".into(),
        op,
        inputs,
    });
    graph.outputs.push(GraphOutput {
        name: "op_output".into(),
        source: Source::Node(0, 0),
    });
    (graph, weights)
}

fn data_2x3() -> Vec<DeclaredInput> {
    vec![DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 3],
    }]
}

#[test]
fn a_reshape_mxnet_codes_cannot_say_is_refused() {
    // Swapping dims by a reshape: no code copies a later dim first.
    let (graph, weights) = one_node_graph(
        Op::Reshape(Reshape {
            dims: vec![ReshapeDim::Copy(1), ReshapeDim::Copy(0)],
        }),
        vec![],
    );
    let err = export(&graph, &weights, &data_2x3()).unwrap_err();
    assert!(
        matches!(err, ExportError::Unsupported { ref node, attr: "dims", .. } if node == "op"),
        "{err}"
    );
    assert!(err.to_string().contains("reshape codes"), "{err}");
}

#[test]
fn a_fill_of_another_value_is_refused() {
    let (mut graph, weights) = one_node_graph(
        Op::Fill(Fill {
            value: 2.5,
            shape: vec![FillDim::Fixed(2)],
        }),
        vec![],
    );
    graph.nodes[0].inputs.clear();
    let err = export(&graph, &weights, &data_2x3()).unwrap_err();
    assert!(
        matches!(err, ExportError::Unsupported { attr: "value", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("\"op\" (fill)"), "{err}");
}

#[test]
fn a_mean_over_no_axes_is_refused() {
    let (graph, weights) = one_node_graph(
        Op::Mean(Mean {
            axes: Some(vec![]),
            keepdims: false,
            exclude: false,
        }),
        vec![],
    );
    let err = export(&graph, &weights, &data_2x3()).unwrap_err();
    assert!(
        matches!(err, ExportError::Unsupported { attr: "axes", .. }),
        "{err}"
    );
}

fn batch_norm(eps: f64) -> (Graph, Vec<Tensor>) {
    let param = |name: &str, role| ParamDecl {
        role,
        ..ParamDecl::new(name, DType::F32, vec![3])
    };
    one_node_graph(
        Op::BatchNorm(BatchNorm {
            axis: 1,
            eps,
            fix_gamma: false,
            momentum: 0.9,
            use_global_stats: false,
        }),
        vec![
            param("gamma", ParamRole::Trainable),
            param("beta", ParamRole::Trainable),
            param("mean", ParamRole::State),
            param("var", ParamRole::State),
        ],
    )
}

#[test]
fn batch_norm_statistics_are_aux_states() {
    // (A NaN attribute never gets here: the graph's own validation refuses it first.)
    let (mut graph, weights) = batch_norm(1e-5);
    graph.nodes[0].name = "bn".into();
    graph.outputs[0].name = "bn_output".into();
    let err = export(&graph, &weights, &[]).unwrap_err();
    assert!(
        matches!(err, ExportError::Input { ref name, .. } if name == "data"),
        "{err}"
    );
    let (graph, weights) = batch_norm(1e-5);
    let exported = export(&graph, &weights, &data_2x3()).unwrap();
    let names = read_params(&exported.params, &ParamsLimits::default())
        .unwrap()
        .names
        .unwrap();
    assert_eq!(names, ["arg:gamma", "arg:beta", "aux:mean", "aux:var"]);
}

#[test]
fn a_state_mxnet_would_take_for_an_argument_is_refused() {
    let (mut graph, weights) = batch_norm(1e-5);
    graph.params[0].role = ParamRole::State;
    let err = export(&graph, &weights, &data_2x3()).unwrap_err();
    assert!(
        matches!(err, ExportError::Param { ref name, .. } if name == "gamma"),
        "{err}"
    );
    assert!(err.to_string().contains("auxiliary states"), "{err}");
}

#[test]
fn a_0d_parameter_is_refused() {
    use ward_graph::ops::elementwise::{Binary, BinaryKind};
    let (graph, _) = one_node_graph(
        Op::Binary(Binary {
            kind: BinaryKind::Mul,
            broadcast: true,
        }),
        vec![ParamDecl::new("scale", DType::F32, vec![])],
    );
    let weights = vec![Tensor::from_f32(vec![], &[2.0]).unwrap()];
    let err = export(&graph, &weights, &data_2x3()).unwrap_err();
    assert!(err.to_string().contains("\"arg:scale\" is 0-d"), "{err}");
}

#[test]
fn outputs_are_named_as_mxnet_lists_them() {
    // An output declared `head_output` on a node called `op`: the node is written as
    // `head`, so that MXNet's list_outputs() gives the declared name.
    let (mut graph, weights) =
        one_node_graph(Op::Flatten(ward_graph::ops::shape::Flatten {}), vec![]);
    graph.outputs[0].name = "head_output".into();
    let exported = export(&graph, &weights, &data_2x3()).unwrap();
    assert_eq!(exported.outputs[0].mxnet, "head_output");
    assert_eq!(exported.renamed_outputs().count(), 0);
    // A name MXNet cannot give is reported.
    graph.outputs[0].name = "probabilities".into();
    let exported = export(&graph, &weights, &data_2x3()).unwrap();
    let renamed: Vec<_> = exported.renamed_outputs().collect();
    assert_eq!(renamed.len(), 1);
    assert_eq!(renamed[0].mxnet, "op_output");
}

#[test]
fn every_deformable_convolution_case_round_trips() {
    // Both versions come back as MXNet's own operator (the counting test above would
    // let a refused case pass).
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures("ops")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("deformconv_") || name.starts_with("mdeformconv_") {
            round_trip(&dir, false).unwrap_or_else(|e| panic!("{name}: {e}"));
            n += 1;
        }
    }
    assert!(n >= 40, "only {n} deformable convolution cases");
}

/// A `_foreach`, unrolled at import, exports as the operators it was written out in and
/// imports back to the same graph and numbers. Its outputs cannot keep their names
/// (`_foreachN_outputK` is no name MXNet gives a `stack`), and the export says so.
#[test]
fn unrolled_foreach_fixtures_round_trip() {
    let mut cases = 0;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures("foreach"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // GluonNLP's ELMo from the zoo tool: four LSTM loops.
    dirs.extend(FOREACH_MODELS.iter().map(|m| fixtures("models").join(m)));
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        // The loop length is axis 0 of the data: declared fixed.
        let declared = declared(&dir, false);
        let first = import_files(
            &read(&dir.join("model-symbol.json")),
            &read(&dir.join("model-0000.params")),
            &declared,
        )
        .unwrap();
        let weights = weights_in_order(&first);
        let exported = export(&first.graph, &weights, &declared)
            .unwrap_or_else(|e| panic!("{name}: export failed: {e}"));
        let second = import_files(&exported.symbol_json, &exported.params, &declared).unwrap();
        assert_eq!(second.graph.nodes, first.graph.nodes, "{name}");
        assert_eq!(second.graph.params, first.graph.params, "{name}");
        assert_eq!(second.graph.inputs, first.graph.inputs, "{name}");
        for ((a, b), o) in first
            .graph
            .outputs
            .iter()
            .zip(&second.graph.outputs)
            .zip(&exported.outputs)
        {
            assert_eq!(a.source, b.source, "{name}");
            assert_eq!(o.declared, a.name, "{name}");
            assert_eq!(o.mxnet, b.name, "{name}");
            if o.declared != o.mxnet {
                assert!(o.declared.contains("_foreach"), "{name}: {o:?}");
            }
        }
        let data: Vec<Tensor> = first
            .graph
            .inputs
            .iter()
            .filter(|i| i.role == InputRole::Data)
            .map(|i| npy::read_npy(&read(&dir.join(format!("input-{}.npy", i.name)))).unwrap())
            .collect();
        let before = run(&first.graph, &weights, &data).unwrap();
        let after = run(&second.graph, &weights_in_order(&second), &data).unwrap();
        for (x, y) in before.iter().zip(&after) {
            assert_eq!(x.shape, y.shape, "{name}");
            assert!(
                x.data
                    .iter()
                    .zip(&y.data)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}"
            );
        }
        cases += 1;
    }
    assert!(cases >= 20 + FOREACH_MODELS.len());
}

/// Model fixtures with `_foreach` loops: their round trip is the unrolled loops' (above),
/// which allows the loops' outputs to be renamed.
const FOREACH_MODELS: [&str; 1] = ["elmo_2x1024_128_2048cnn_1xhighway"];
