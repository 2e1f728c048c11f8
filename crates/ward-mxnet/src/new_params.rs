//! Parameters a symbol reads that its `.params` file does not hold: the weights of a model
//! trained from scratch, or of the new layers of a model being fine-tuned.
//!
//! MXNet finds their shapes by running its shape inference backwards from the data
//! (`Module.bind` then `init_params`). Ward does the same for the operators that own
//! weights: for each such operator with a missing parameter, the part of the symbol that
//! computes the operator's data input is imported on its own (with the parameters known
//! so far) and its inferred output shape gives the parameter's shape by MXNet's rule for
//! that operator. The caller then fills the new parameters (with a declared initializer:
//! `ward_train::init`); here they hold zeros.
//!
//! Only variables that an operator reads in a weight slot become parameters: a variable
//! anywhere else is still refused by the importer, as before.

use std::collections::{HashMap, HashSet};

use ward_core::{DType, Tensor};

use crate::attrs::{parse_bool, parse_int, parse_tuple};
use crate::import::{import, label_only_variables, DeclaredInput, ImportError, Imported};
use crate::params::{split_key, Context, NdArray, ParamsFile, RecordVersion, StoredArray};
use crate::symbol::{Entry, Symbol, SymbolNode};

/// A parameter the `.params` file lacked, with the shape MXNet would give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewParam {
    pub name: String,
    pub shape: Vec<usize>,
    /// An auxiliary state (BatchNorm's moving mean and variance), not trained.
    pub aux: bool,
}

/// Imports `symbol` as [`import`] does, except that a variable the `.params` file lacks
/// and that an operator reads as a weight becomes a new parameter of the shape MXNet's
/// shape inference gives it, holding zeros. Returns the import and the new parameters.
pub fn import_with_new_params(
    symbol: &Symbol,
    params: ParamsFile,
    inputs: &[DeclaredInput],
) -> Result<(Imported, Vec<NewParam>), ImportError> {
    let mut named = params.into_named()?;
    let new = find_new_params(symbol, &named, inputs)?;
    for p in &new {
        let key = format!("{}:{}", if p.aux { "aux" } else { "arg" }, p.name);
        named.push((key, zeros(&p.name, &p.shape)?));
    }
    let imported = import(symbol, into_file(named), inputs)?;
    Ok((imported, new))
}

/// The new parameters of `symbol`, in the order their operators appear.
fn find_new_params(
    symbol: &Symbol,
    known: &[(String, NdArray)],
    inputs: &[DeclaredInput],
) -> Result<Vec<NewParam>, ImportError> {
    let mut have: HashSet<String> = known
        .iter()
        .map(|(key, _)| split_key(key).1.to_owned())
        .collect();
    have.extend(inputs.iter().map(|i| i.name.clone()));
    let labels = label_only_variables(symbol);
    // Each data input is imported once, however many operators read it.
    let mut data_shapes: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    let mut new: Vec<NewParam> = Vec::new();
    let mut extended: Vec<(String, NdArray)> = known.to_vec();
    for node in &symbol.nodes {
        let missing: Vec<(usize, &str)> = node
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| {
                let var = symbol.nodes.get(e.node)?;
                (var.op == "null" && !have.contains(&var.name) && !labels.contains(&e.node))
                    .then_some((slot, var.name.as_str()))
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        // A weight's shape follows from its operator's data input, which must be known.
        if let Some(&(0, name)) = missing.first() {
            return Err(ImportError::Param {
                name: name.to_owned(),
                reason: format!(
                    "is not in the .params file, and the {} node {:?} reads it as its first input, whose shape nothing gives",
                    node.op, node.name
                ),
            });
        }
        let Some(&data) = node.inputs.first() else {
            continue;
        };
        let shape = match data_shapes.get(&(data.node, data.output)) {
            Some(shape) => shape.clone(),
            None => {
                let shape = data_shape(symbol, data, &extended, inputs, node)?;
                data_shapes.insert((data.node, data.output), shape.clone());
                shape
            }
        };
        for (slot, name) in missing {
            let (shape, aux) =
                weight_shape(node, slot, &shape).map_err(|reason| ImportError::Param {
                    name: name.to_owned(),
                    reason: format!(
                        "is not in the .params file and its shape cannot be inferred: {reason}"
                    ),
                })?;
            let key = format!("{}:{name}", if aux { "aux" } else { "arg" });
            extended.push((key, zeros(name, &shape)?));
            have.insert(name.to_owned());
            new.push(NewParam {
                name: name.to_owned(),
                shape,
                aux,
            });
        }
    }
    Ok(new)
}

/// The shape of `entry` for batch 1: the symbol up to it imported on its own.
fn data_shape(
    symbol: &Symbol,
    entry: Entry,
    params: &[(String, NdArray)],
    inputs: &[DeclaredInput],
    consumer: &SymbolNode,
) -> Result<Vec<usize>, ImportError> {
    let end = entry.node.saturating_add(1).min(symbol.nodes.len());
    let prefix = Symbol {
        nodes: symbol.nodes.get(..end).unwrap_or_default().to_vec(),
        arg_nodes: symbol
            .arg_nodes
            .iter()
            .copied()
            .filter(|&n| n < end)
            .collect(),
        heads: vec![entry],
        mxnet_version: symbol.mxnet_version,
        is_np_shape: symbol.is_np_shape,
    };
    // Variable dims (the batch) as 1: a parameter's shape never depends on them.
    let inputs: Vec<DeclaredInput> = inputs
        .iter()
        .filter(|i| {
            prefix
                .nodes
                .iter()
                .any(|n| n.op == "null" && n.name == i.name)
        })
        .map(|i| DeclaredInput {
            shape: i.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect(),
            ..i.clone()
        })
        .collect();
    let imported = import(&prefix, into_file(params.to_vec()), &inputs)?;
    let shape = imported.output_shapes.first().cloned().unwrap_or_default();
    shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| ImportError::Node {
            node: consumer.name.clone(),
            op: consumer.op.clone(),
            reason: format!("the shape of its data input, {shape:?}, is not known"),
        })
}

/// MXNet's shape for the weight in `slot` of `node`, whose data input has `data` shape;
/// and whether it is an auxiliary state.
fn weight_shape(
    node: &SymbolNode,
    slot: usize,
    data: &[usize],
) -> Result<(Vec<usize>, bool), String> {
    let attr = |key: &str| node.attrs.get(key).map(String::as_str);
    let int = |key: &str, default: i64| -> Result<i64, String> {
        match attr(key) {
            Some(text) => parse_int(text).map_err(|e| format!("{key}: {e}")),
            None => Ok(default),
        }
    };
    let count = |key: &str, default: i64| -> Result<usize, String> {
        let v = int(key, default)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("{key} = {v} must be positive"))
    };
    let dim = |axis: i64| -> Result<usize, String> {
        let rank = data.len() as i64;
        let at = if axis < 0 { axis + rank } else { axis };
        usize::try_from(at)
            .ok()
            .and_then(|a| data.get(a).copied())
            .ok_or_else(|| format!("axis {axis} is outside the data's shape {data:?}"))
    };
    let op = node.op.as_str();
    let unsupported = || {
        format!(
            "{op} node {:?} reads it as input {slot}, which has no shape rule",
            node.name
        )
    };
    let shape = match (op, slot) {
        ("Convolution" | "Deconvolution", 1 | 2) => {
            let filters = count("num_filter", 0)?;
            let groups = count("num_group", 1)?;
            if slot == 2 {
                return Ok((vec![filters], false));
            }
            let kernel = attr("kernel")
                .map(parse_tuple)
                .transpose()
                .map_err(|e| format!("kernel: {e}"))?
                .flatten()
                .ok_or("no kernel")?;
            let kernel = kernel
                .iter()
                .map(|&k| usize::try_from(k).ok().filter(|&k| k > 0))
                .collect::<Option<Vec<usize>>>()
                .ok_or("a kernel dim is not positive")?;
            let channels = dim(1)?;
            let mut shape = if op == "Convolution" {
                if channels % groups != 0 {
                    return Err(format!("{channels} channels in {groups} groups"));
                }
                vec![filters, channels / groups]
            } else {
                if filters % groups != 0 {
                    return Err(format!("{filters} filters in {groups} groups"));
                }
                vec![channels, filters / groups]
            };
            shape.extend(kernel);
            shape
        }
        ("FullyConnected", 1 | 2) => {
            let hidden = count("num_hidden", 0)?;
            if slot == 2 {
                return Ok((vec![hidden], false));
            }
            let flatten = match attr("flatten") {
                Some(text) => parse_bool(text).map_err(|e| format!("flatten: {e}"))?,
                None => true,
            };
            let inputs = if flatten {
                data.iter().skip(1).product()
            } else {
                dim(-1)?
            };
            vec![hidden, inputs]
        }
        ("BatchNorm" | "_contrib_SyncBatchNorm", 1..=4) => {
            return Ok((vec![dim(int("axis", 1)?)?], slot >= 3))
        }
        ("InstanceNorm", 1 | 2) => vec![dim(1)?],
        ("LayerNorm", 1 | 2) => vec![dim(int("axis", -1)?)?],
        ("GroupNorm", 1 | 2) => vec![count("num_groups", 1)?],
        ("Embedding", 1) => vec![count("input_dim", 0)?, count("output_dim", 0)?],
        ("LeakyReLU", 1) if attr("act_type") == Some("prelu") => vec![dim(1)?],
        _ => return Err(unsupported()),
    };
    Ok((shape, false))
}

fn zeros(name: &str, shape: &[usize]) -> Result<NdArray, ImportError> {
    let elements = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= crate::limits::MAX_DENSE_PARAM_BYTES as usize / 4)
        .ok_or_else(|| ImportError::Param {
            name: name.to_owned(),
            reason: format!("its inferred shape {shape:?} is over the parameter size limit"),
        })?;
    let tensor =
        Tensor::from_f32(shape.to_vec(), &vec![0.0; elements]).map_err(|e| ImportError::Param {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    debug_assert_eq!(tensor.dtype(), DType::F32);
    Ok(NdArray {
        version: RecordVersion::V2,
        context: Context::CPU,
        value: Some(StoredArray::Dense(tensor)),
    })
}

fn into_file(named: Vec<(String, NdArray)>) -> ParamsFile {
    let (names, arrays) = named.into_iter().unzip();
    ParamsFile {
        arrays,
        names: Some(names),
    }
}
