//! `graph.json` from a package: parse (version 2, or version 1 through the upgrade),
//! validate, infer shapes for a few input shapes, and lower to ONNX with zero weights.
//! Nothing may panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_core::Tensor;
use ward_graph::compat::upgrade_v1;
use ward_graph::ir::{graph_version, InputRole};
use ward_graph::shape::infer_shapes;
use ward_graph::Graph;

/// Input shapes to infer and lower for: small generic ones, and those of the importer's
/// fixture models (whose graphs seed the corpus), so lowering is reached, not only
/// parsing. A graph with more data inputs than a set lists repeats the set's last shape.
const SHAPE_SETS: &[&[&[usize]]] = &[
    &[&[1, 3, 8, 8]],
    &[&[2, 4]],
    &[&[3, 5, 7]],
    &[&[2, 1, 28, 28]],
    &[&[4, 784]],
    &[&[3, 20]],
    &[&[2, 12]],
    &[&[2, 4, 6, 8]],
    &[&[1, 3, 64, 64]],
    &[&[2, 3, 16, 16], &[2, 5]],
    &[&[1, 3, 210, 210]],
];

/// Parameters larger than this are not materialised for lowering.
const MAX_PARAM_ELEMENTS: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(version) = graph_version(data) else {
        return;
    };
    for set in SHAPE_SETS {
        let shapes = |n: usize| -> Vec<Vec<usize>> {
            (0..n)
                .map(|i| set.get(i).or(set.last()).map_or(Vec::new(), |s| s.to_vec()))
                .collect()
        };
        let graph = if version == 1 {
            let Ok(inputs) = serde_json_inputs(data) else {
                return;
            };
            let mut weights = Vec::new();
            match upgrade_v1(data, &shapes(inputs), &mut weights) {
                Ok(g) => g,
                Err(_) => continue,
            }
        } else {
            match Graph::from_json(data) {
                Ok(g) => g,
                Err(_) => return,
            }
        };
        let data_inputs = graph
            .inputs
            .iter()
            .filter(|i| i.role == InputRole::Data)
            .count();
        let inputs = shapes(data_inputs);
        if infer_shapes(&graph, &inputs).is_err() {
            continue;
        }
        let weights: Option<Vec<Tensor>> = graph
            .params
            .iter()
            .map(|p| {
                let n = ward_core::tensor::element_count(&p.shape)?;
                (n <= MAX_PARAM_ELEMENTS).then_some(())?;
                let bytes = ward_core::tensor::byte_len(&p.shape, p.dtype)?;
                Tensor::from_bytes(p.dtype, p.shape.clone(), vec![0; bytes]).ok()
            })
            .collect();
        if let Some(weights) = weights {
            let _ = ward_exec::onnx::lower(&graph, &weights, &inputs);
        }
    }
});

/// How many inputs a version-1 graph lists.
fn serde_json_inputs(data: &[u8]) -> Result<usize, ()> {
    #[derive(serde::Deserialize)]
    struct Probe {
        inputs: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(data)
        .map(|p| p.inputs.len())
        .map_err(|_| ())
}
