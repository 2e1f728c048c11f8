//! MXNet's optimizer states in and out: a Module checkpoint's `prefix-EPOCH.states` or a
//! Gluon `Trainer.save_states` file (read by [`ward_mxnet::states`], which never runs the
//! pickle) as ward's per-parameter states, and ward's back as a Module `.states` file.
//!
//! Which parameter an MXNet key is ([`ward_mxnet::states`] documents it): a Module's index
//! `i` is the `i`-th trainable parameter in the symbol's order, a Gluon file's (it carries
//! the optimizer) the `i`-th in name order, a kvstore's key the parameter's name. A state
//! is the optimizer's tensors in MXNet's `create_state` order, which is ward's
//! ([`Optimizer::state_names`]). Update counts continue as MXNet continues them: a Module
//! file saves no optimizer, so a resumed Module starts its counts (Adam's bias correction,
//! the schedule) at 0, and so does ward; a Gluon file's optimizer carries them.

use ward_core::{DType, Tensor};
use ward_graph::ir::{ParamDecl, ParamRole};
use ward_mxnet::params::StoredArray;
use ward_mxnet::states::{OptimizerStates, StateKey, StateValue};

use super::CheckpointError;
use crate::optim::{Optimizer, OptimizerState, ParamState};

/// The optimizer states an MXNet file gives ward's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedStates {
    /// One per graph parameter, in the graph's order.
    pub states: Vec<ParamState>,
    pub optimizer: OptimizerState,
    /// Whether the file carried the optimizer (Gluon) and so its update counts.
    pub with_counts: bool,
}

fn bad(reason: String) -> CheckpointError {
    CheckpointError::State(format!("MXNet optimizer states: {reason}"))
}

/// The trainable parameters in the order an MXNet key counts them: the graph's (the
/// symbol's) for a Module file, by name for a Gluon one.
fn key_order(params: &[ParamDecl], gluon: bool) -> Vec<usize> {
    let mut order: Vec<usize> = params
        .iter()
        .enumerate()
        .filter(|(_, p)| p.role == ParamRole::Trainable)
        .map(|(i, _)| i)
        .collect();
    if gluon {
        order.sort_by(|&a, &b| {
            params
                .get(a)
                .map(|p| &p.name)
                .cmp(&params.get(b).map(|p| &p.name))
        });
    }
    order
}

/// `file`'s states as ward's, for the graph parameters `params` under `optimizer`: every
/// trainable parameter must have its state, of the optimizer's tensors in its shape, and
/// no key may name anything else.
pub fn states_from_mxnet(
    file: &OptimizerStates,
    params: &[ParamDecl],
    optimizer: &Optimizer,
) -> Result<ImportedStates, CheckpointError> {
    let names = optimizer.state_names();
    let spec_name = optimizer.spec().name();
    if matches!(spec_name, "nadam" | "lars") {
        return Err(bad(format!(
            "{spec_name} keeps state across parameters that MXNet's files do not map; not supported"
        )));
    }
    if let Some(saved) = &file.optimizer {
        if !saved.class.eq_ignore_ascii_case(spec_name) {
            return Err(bad(format!(
                "the file's optimizer is {}, the spec declares {spec_name}",
                saved.class
            )));
        }
    }
    let gluon = file.optimizer.is_some();
    let order = key_order(params, gluon);
    let mut states: Vec<ParamState> = params
        .iter()
        .map(|p| optimizer.create_state(&vec![0.0; p.shape.iter().product()]))
        .collect();
    let mut seen = vec![false; params.len()];
    for (key, value) in &file.states {
        let index = match key {
            StateKey::Index(i) => usize::try_from(*i).ok().and_then(|i| order.get(i).copied()),
            StateKey::Name(n) => order
                .iter()
                .copied()
                .find(|&i| params.get(i).is_some_and(|p| &p.name == n)),
        };
        let (Some(index), Some(param)) = (index, index.and_then(|i| params.get(i))) else {
            return Err(bad(format!(
                "key {key} is not one of the model's {} trainable parameters",
                order.len()
            )));
        };
        let arrays = flatten(value, &param.name)?;
        if arrays.len() != names.len() {
            return Err(bad(format!(
                "{}: {} arrays, {spec_name} keeps {names:?}",
                param.name,
                arrays.len()
            )));
        }
        let mut tensors = Vec::with_capacity(names.len());
        for (&name, array) in names.iter().zip(arrays) {
            let t = array
                .to_dense()
                .map_err(|e| bad(format!("{} {name}: {e}", param.name)))?;
            if t.dtype() != DType::F32 || t.shape() != param.shape.as_slice() {
                return Err(bad(format!(
                    "{} {name}: {:?} {:?}, the parameter is f32 {:?}",
                    param.name,
                    t.dtype(),
                    t.shape(),
                    param.shape
                )));
            }
            tensors.push((name, t.to_f32_vec()));
        }
        let update_count = file
            .optimizer
            .as_ref()
            .and_then(|o| o.index_update_count.iter().find(|(k, _)| k == key))
            .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
        if let (Some(slot), Some(flag)) = (states.get_mut(index), seen.get_mut(index)) {
            *slot = ParamState {
                update_count,
                tensors,
            };
            *flag = true;
        }
    }
    if let Some(&missing) = order
        .iter()
        .find(|&&i| !seen.get(i).copied().unwrap_or(true))
    {
        if !names.is_empty() {
            let name = params.get(missing).map_or("?", |p| p.name.as_str());
            return Err(bad(format!("no state for {name}")));
        }
    }
    let max_count = states.iter().map(|s| s.update_count).max().unwrap_or(0);
    let num_update = file
        .optimizer
        .as_ref()
        .and_then(|o| o.num_update)
        .map_or(max_count, |n| u64::try_from(n).unwrap_or(0));
    Ok(ImportedStates {
        states,
        optimizer: OptimizerState {
            num_update,
            ..OptimizerState::default()
        },
        with_counts: gluon,
    })
}

/// The arrays of one state: none, one, or a tuple of them (nested tuples, MXNet's
/// multi-precision form, are refused).
fn flatten<'a>(
    value: &'a StateValue,
    param: &str,
) -> Result<Vec<&'a StoredArray>, CheckpointError> {
    match value {
        StateValue::None => Ok(Vec::new()),
        StateValue::Array(a) => Ok(vec![a]),
        StateValue::Tuple(items) => items
            .iter()
            .map(|v| match v {
                StateValue::Array(a) => Ok(a),
                _ => Err(bad(format!(
                    "{param}: a nested state (multi-precision) is not supported"
                ))),
            })
            .collect(),
    }
}

/// ward's states as a Module's (the keys MXNet's `Module.load_optimizer_states` reads on
/// one device): each trainable parameter's tensors under its index in the graph's order,
/// one array or a tuple as MXNet's `create_state` makes them.
pub fn states_to_mxnet(
    params: &[ParamDecl],
    states: &[ParamState],
) -> Result<Vec<(StateKey, StateValue)>, CheckpointError> {
    let mut out = Vec::new();
    for (i, index) in key_order(params, false).into_iter().enumerate() {
        let (Some(p), Some(s)) = (params.get(index), states.get(index)) else {
            return Err(bad("fewer states than parameters".into()));
        };
        let arrays = s
            .tensors
            .iter()
            .map(|(_, values)| {
                Tensor::from_f32(p.shape.clone(), values)
                    .map(|t| StateValue::Array(StoredArray::Dense(t)))
                    .map_err(|e| bad(format!("{}: {e}", p.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let value = match arrays.len() {
            0 => StateValue::None,
            1 => arrays.into_iter().next().unwrap_or(StateValue::None),
            _ => StateValue::Tuple(arrays),
        };
        out.push((StateKey::Index(i as u64), value));
    }
    Ok(out)
}

/// A checkpoint as MXNet 1.9.1 Module files: what `Module.load(PREFIX, EPOCH,
/// load_optimizer_states=True)` reads.
pub struct ModuleFiles {
    /// `PREFIX-symbol.json`: the symbol the run trained, as given.
    pub symbol: Vec<u8>,
    /// `PREFIX-EPOCH.params`: `arg:`/`aux:` keys in the symbol's variable order.
    pub params: Vec<u8>,
    /// `PREFIX-EPOCH.states`: the optimizer's state as `save_optimizer_states` pickles it.
    pub states: Vec<u8>,
}

/// A decrypted checkpoint's state as MXNet Module files, for the symbol the run trained
/// (`symbol_json`, which must name every parameter of the state: its variables' order is
/// the states' keys).
pub fn module_files(
    state: &super::state::DecodedState,
    symbol_json: Vec<u8>,
) -> Result<ModuleFiles, CheckpointError> {
    let symbol = ward_mxnet::symbol::read_symbol(&symbol_json, &Default::default())
        .map_err(|e| CheckpointError::Export(format!("the symbol: {e}")))?;
    // The symbol's variables in its order: MXNet's list_arguments, whose trainable part
    // is a Module's _param_names and so the states' keys.
    let variables: Vec<&str> = symbol
        .nodes
        .iter()
        .filter(|n| n.op == "null")
        .map(|n| n.name.as_str())
        .collect();
    let mut params: Vec<&super::state::SavedParamState> = state.params.iter().collect();
    if let Some(p) = params
        .iter()
        .find(|p| !variables.contains(&p.name.as_str()))
    {
        return Err(CheckpointError::Export(format!(
            "not the symbol this run trained: it has no variable {}",
            p.name
        )));
    }
    params.sort_by_key(|p| variables.iter().position(|v| *v == p.name));
    let tensors = params
        .iter()
        .map(|p| {
            let key = format!("{}:{}", if p.trainable { "arg" } else { "aux" }, p.name);
            Tensor::from_f32(p.shape.clone(), &p.weight)
                .map(|t| (key, t))
                .map_err(|e| bad(format!("{}: {e}", p.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let params_bytes = ward_mxnet::params::write_params(&refs)
        .map_err(|e| CheckpointError::Export(format!("the params: {e}")))?;
    let decls: Vec<ParamDecl> = params
        .iter()
        .map(|p| ParamDecl {
            name: p.name.clone(),
            dtype: DType::F32,
            shape: p.shape.clone(),
            role: if p.trainable {
                ParamRole::Trainable
            } else {
                ParamRole::State
            },
            lr_mult: 1.0,
            wd_mult: 1.0,
        })
        .collect();
    let states: Vec<ParamState> = params
        .iter()
        .map(|p| ParamState {
            update_count: p.update_count,
            tensors: p
                .tensors
                .iter()
                .map(|(_, t)| ("state", t.clone()))
                .collect(),
        })
        .collect();
    let keyed = states_to_mxnet(&decls, &states)?;
    let states_bytes = ward_mxnet::states::write_optimizer_states(&keyed)
        .map_err(|e| CheckpointError::Export(format!("the states: {e}")))?;
    Ok(ModuleFiles {
        symbol: symbol_json,
        params: params_bytes,
        states: states_bytes,
    })
}

/// Writes `files` as `PREFIX-symbol.json`, `PREFIX-EPOCH.params` and `PREFIX-EPOCH.states`
/// (mode 0600; an existing file is never replaced): three files or none. Returns their
/// paths and sizes.
pub fn write_module_files(
    files: &ModuleFiles,
    prefix: &std::path::Path,
    epoch: u32,
) -> Result<Vec<(std::path::PathBuf, usize)>, CheckpointError> {
    let prefix = prefix.display().to_string();
    let named = [
        (format!("{prefix}-symbol.json"), files.symbol.as_slice()),
        (
            format!("{prefix}-{epoch:04}.params"),
            files.params.as_slice(),
        ),
        (
            format!("{prefix}-{epoch:04}.states"),
            files.states.as_slice(),
        ),
    ];
    if let Some(dir) = std::path::Path::new(&prefix)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| CheckpointError::Export(format!("creating {}: {e}", dir.display())))?;
    }
    let mut written: Vec<std::path::PathBuf> = Vec::new();
    for (path, bytes) in &named {
        let path = std::path::PathBuf::from(path);
        if let Err(e) = ward_core::files::write_new_file(&path, bytes, 0o600) {
            for done in &written {
                let _ = std::fs::remove_file(done);
            }
            return Err(CheckpointError::Export(format!(
                "writing {}: {e}",
                path.display()
            )));
        }
        written.push(path);
    }
    Ok(written
        .into_iter()
        .zip(named.iter().map(|(_, b)| b.len()))
        .collect())
}
