//! What the test modules share: the fixtures, and importing an MXNet export from them
//! exactly as a user's model would be imported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use ward_core::npy;
use ward_graph::interp::eval::array_of;
use ward_graph::interp::Array;
use ward_graph::Graph;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::params::read_params;
use ward_mxnet::symbol::read_symbol;

/// `tests/fixtures/<kind>`.
pub fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(kind)
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn npy_array(path: &Path) -> Array {
    array_of(&npy::read_npy(&read(path)).unwrap())
}

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

/// The export in `dir` (`model-symbol.json`, `model-0000.params`, `meta.json` naming the
/// inputs and their shapes) imported: the graph and one array per parameter, in order.
pub fn import_dir(dir: &Path) -> Result<(Graph, Vec<Array>), String> {
    let meta: Meta = serde_json::from_slice(&read(&dir.join("meta.json"))).unwrap();
    let symbol = read_symbol(&read(&dir.join("model-symbol.json")), &Default::default())
        .map_err(|e| e.to_string())?;
    let params = read_params(&read(&dir.join("model-0000.params")), &Default::default())
        .map_err(|e| e.to_string())?;
    let declared: Vec<DeclaredInput> = meta
        .inputs
        .iter()
        .map(|i| DeclaredInput {
            name: i.name.clone(),
            dtype: i.dtype.parse().unwrap(),
            shape: i.shape.iter().map(|&d| d as i64).collect(),
        })
        .collect();
    let imported = import(&symbol, params, &declared).map_err(|e| e.to_string())?;
    let named: HashMap<String, Array> = imported
        .weights
        .iter()
        .map(|(n, t)| (n.clone(), array_of(t)))
        .collect();
    let graph = imported.graph;
    let weights = graph
        .params
        .iter()
        .map(|p| named[&p.name].clone())
        .collect();
    Ok((graph, weights))
}

/// Deterministic values in [−1, 1) for the head gradients.
pub fn pseudo_random(shape: &[usize], seed: u64) -> Array {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Array::new(shape.to_vec(), data).unwrap()
}
