//! Every element-wise and broadcast operator over float32, float16, int32, int64, uint8
//! and int8 data against MXNet 1.9.1 (`tools/make_dtype_fixtures.py`,
//! `tests/fixtures/dtypes/cases.json`), through the reference interpreter and the tract
//! backend, each imported as a user's model would be with its inputs declared in their
//! type. Integer results must be exact (truncating division, a scalar converted to the
//! data's type first, uint8 and int8 wrapping); float32 within 1e-5 and float16 within
//! float16's rounding (MXNet computes in float16, ward in float32).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use ward_core::{DType, Tensor};
use ward_exec::{Executable, TractBackend, WeightSet};
use ward_graph::interp::eval;
use ward_mxnet::import::{import, DeclaredInput};
use ward_mxnet::params::ParamsFile;
use ward_mxnet::symbol::read_symbol;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    symbol: String,
    inputs: Vec<Values>,
    output: Values,
}

#[derive(Deserialize)]
struct Values {
    #[serde(default)]
    name: String,
    dtype: String,
    shape: Vec<usize>,
    values: Vec<Value>,
}

fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "nan" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => other
            .as_f64()
            .unwrap_or_else(|| panic!("not a number: {other}")),
    }
}

fn dtype(name: &str) -> DType {
    DType::ALL
        .into_iter()
        .find(|d| d.name() == name)
        .unwrap_or_else(|| panic!("dtype {name}"))
}

/// The values as a tensor of their declared type.
fn tensor(v: &Values) -> Tensor {
    let dt = dtype(&v.dtype);
    let nums: Vec<f64> = v.values.iter().map(number).collect();
    let bytes: Vec<u8> = match dt {
        DType::F32 => nums
            .iter()
            .flat_map(|&x| (x as f32).to_le_bytes())
            .collect(),
        DType::F16 => nums
            .iter()
            .flat_map(|&x| half::f16::from_f64(x).to_le_bytes())
            .collect(),
        DType::I32 => nums
            .iter()
            .flat_map(|&x| (x as i32).to_le_bytes())
            .collect(),
        DType::I64 => nums
            .iter()
            .flat_map(|&x| (x as i64).to_le_bytes())
            .collect(),
        DType::U8 => nums.iter().map(|&x| x as u8).collect(),
        DType::I8 => nums.iter().flat_map(|&x| (x as i8).to_le_bytes()).collect(),
        other => panic!("no {other} inputs in the sweep"),
    };
    Tensor::from_bytes(dt, v.shape.clone(), bytes).unwrap()
}

/// Whether `got` is MXNet's `want` for an output of type `dt`.
fn matches(dt: DType, got: f64, want: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return want == got;
    }
    match dt {
        DType::F32 => (got - want).abs() <= 1e-5 * want.abs().max(1.0),
        // One float16 rounding of ward's float32 result; float16 overflows past 65504.
        DType::F16 => {
            let rounded = half::f16::from_f64(got).to_f64();
            rounded == want || (got - want).abs() <= 1e-3 * want.abs().max(1e-3)
        }
        _ => got == want,
    }
}

fn check(case: &Case, engine: &str, got: &[f64]) -> Result<(), String> {
    let dt = dtype(&case.output.dtype);
    let want: Vec<f64> = case.output.values.iter().map(number).collect();
    if got.len() != want.len() {
        return Err(format!(
            "{} {engine}: {} values, expected {}",
            case.name,
            got.len(),
            want.len()
        ));
    }
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        if !matches(dt, g, w) {
            return Err(format!(
                "{} {engine}: value {i} is {g}, MXNet gives {w} ({dt}); got {got:?}, expected {want:?}",
                case.name
            ));
        }
    }
    Ok(())
}

fn run(case: &Case) -> Result<(), String> {
    let symbol = read_symbol(case.symbol.as_bytes(), &Default::default()).unwrap();
    let declared: Vec<DeclaredInput> = case
        .inputs
        .iter()
        .map(|i| DeclaredInput {
            name: i.name.clone(),
            dtype: dtype(&i.dtype),
            shape: i.shape.iter().map(|&d| d as i64).collect(),
        })
        .collect();
    let empty = ParamsFile {
        arrays: Vec::new(),
        names: None,
    };
    let imported = import(&symbol, empty, &declared).map_err(|e| format!("{}: {e}", case.name))?;
    let graph = imported.graph;
    let inputs: Vec<Tensor> = graph
        .inputs
        .iter()
        .map(|g| {
            let given = case.inputs.iter().find(|i| i.name == g.name).unwrap();
            tensor(given)
        })
        .collect();
    let reference = eval::run(&graph, &[], &inputs).map_err(|e| format!("{}: {e}", case.name))?;
    check(case, "interpreter", &reference[0].data)?;
    let set = WeightSet::new(&graph, HashMap::new()).unwrap();
    let exec = Executable::new(graph.clone(), set, Arc::new(TractBackend::new(1).unwrap()))
        .map_err(|e| format!("{}: {e}", case.name))?;
    let outs = exec
        .run(&inputs)
        .map_err(|e| format!("{} tract: {e}", case.name))?;
    check(case, "tract", &outs[0].to_f64_vec())
}

#[test]
fn element_wise_operators_compute_in_each_type_as_mxnet_does() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dtypes/cases.json");
    let cases: Cases = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(cases.cases.len() >= 500, "{} cases", cases.cases.len());
    let failures: Vec<String> = cases.cases.iter().filter_map(|c| run(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from MXNet:\n{}",
        failures.len(),
        cases.cases.len(),
        failures.join("\n")
    );
}
