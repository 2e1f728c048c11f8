//! MXNet optimizer-state files (`.states`): read without running pickle, and written back.
//!
//! MXNet 1.9.1 writes them from its `Updater` (`mxnet.optimizer.Updater.get_states`):
//!
//! * **Module** (`Module.save_optimizer_states`, `save_checkpoint(...,
//!   save_optimizer_states=True)` → `prefix-EPOCH.states`): `pickle.dumps(states)`, a dict
//!   from key to state. The optimizer is not saved: a resumed Module builds a fresh one, so
//!   its update counts (Adam's bias correction) start again at 0.
//! * **Gluon** (`Trainer.save_states`): `pickle.dumps((states, optimizer))`, the same dict
//!   and the optimizer object with its attributes (`param_dict` left out), the learning-rate
//!   scheduler inside it. `Trainer.load_states` replaces the trainer's optimizer with it.
//!
//! A state is `None`, an NDArray, or a tuple of states (SGD with momentum: the momentum;
//! Adam: `(mean, var)`; with `multi_precision` and float16 weights: `(float32 weight,
//! inner state)`). An NDArray is pickled as `NDArray.__reduce__` gives it: its raw
//! single-array record (`MXNDArraySaveRawBytes`), read here by
//! [`crate::params::read_ndarray_blob`].
//!
//! # Which parameter a key is (checked against MXNet 1.9.1)
//!
//! * Module, `update_on_kvstore` false (one device and a string kvstore such as the default
//!   `'local'`, or `kvstore=None`): key `i × num_devices + d` ([`StateKey::Index`]) for the
//!   `i`-th name of `Module._param_names` (the symbol's `list_arguments()` without the data
//!   and label names) on device `d`; one device gives `i`. The optimizer's `idx2name`
//!   holds the same map.
//! * Module, `update_on_kvstore` true (a `KVStore` object, or several devices with a
//!   `'local'`/`'device'` kvstore): the kvstore's updater is keyed by the parameter's
//!   **name** ([`StateKey::Name`]), once per parameter whatever the number of devices.
//! * Gluon: key `i` for the `i`-th parameter of the `Trainer`, whose parameters are
//!   `sorted(params.keys())` when given a dict or `ParameterDict` (so `collect_params()`
//!   orders them by full name, `..._bias` before `..._weight`), or the list's order; the
//!   same with `update_on_kvstore` true (one entry per parameter).
//!
//! # Reading
//!
//! [`read_optimizer_states`] reads the pickle with [`crate::pickle`] (which executes
//! nothing and accepts only what these files contain), then insists on exactly the shapes
//! above; arrays are decoded with [`crate::params`]' checks, and together may take no more
//! bytes than the file itself (a shared handle cannot multiply memory). Contexts are not
//! kept (a kvstore saves its states from pinned memory, `cpu_pinned(0)`): MXNet itself
//! moves each loaded state to its weight's device.
//!
//! # Writing
//!
//! [`write_optimizer_states`] writes the Module form, exactly as MXNet 1.9.1 (Python 3.11's
//! C pickler, protocol 4, framing included) pickles the same dict of CPU float arrays:
//! `Module.load_optimizer_states` and `Trainer.load_states` accept it.

use std::collections::HashSet;
use std::fmt;

use ward_core::tensor::byte_len;

use crate::limits::ParamsLimits;
use crate::params::{dtype_flag, read_ndarray_blob, Context, ParamsError, StoredArray, V2_MAGIC};
use crate::pickle::{read_pickle, Class, ClassKind, Object, PickleError, PickleLimits, Value};

/// Limits for [`read_optimizer_states`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatesLimits {
    /// For the pickle itself.
    pub pickle: PickleLimits,
    /// For each array's record.
    pub params: ParamsLimits,
}

/// Which parameter a state belongs to (module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKey {
    /// Module (`update_on_kvstore` false) and Gluon.
    Index(u64),
    /// Module with `update_on_kvstore` true: the parameter's name.
    Name(String),
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateKey::Index(i) => write!(f, "{i}"),
            StateKey::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// One parameter's optimizer state.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    /// No state (plain SGD).
    None,
    Array(StoredArray),
    /// MXNet's optimizers make tuples (`(mean, var)`, `(weight32, inner)`).
    Tuple(Vec<StateValue>),
}

/// A value of the optimizer or scheduler that is plain data.
#[derive(Debug, Clone, PartialEq)]
pub enum Plain {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A Python list or tuple.
    List(Vec<Plain>),
}

/// A learning-rate scheduler saved inside a Gluon optimizer.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedScheduler {
    /// `mxnet.lr_scheduler.<Name>`.
    pub class: &'static Class,
    /// Its attributes that are plain data (`base_lr`, `step`, `factor`, `count`,
    /// `warmup_steps`, `warmup_mode`, …), in the file's order.
    pub fields: Vec<(String, Plain)>,
    /// Attributes that are not plain data, by name.
    pub ignored: Vec<String>,
}

/// The optimizer a Gluon states file carries: what ward needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SavedOptimizer {
    /// The class's name (`SGD`, `Adam`, …) in `mxnet.optimizer.optimizer` (or
    /// `mxnet.optimizer.contrib` for `GroupAdaGrad`).
    pub class: &'static str,
    /// `num_update`: the largest update count of any index so far.
    pub num_update: Option<i64>,
    pub begin_num_update: Option<i64>,
    /// `_index_update_count`: updates so far per key (Adam's bias correction uses it).
    pub index_update_count: Vec<(StateKey, i64)>,
    /// `_all_index_update_counts`: the counts per device id.
    pub all_index_update_counts: Vec<(i64, Vec<(StateKey, i64)>)>,
    /// `lr` (MXNet 1.9.1's attribute) or `learning_rate`.
    pub learning_rate: Option<f64>,
    pub wd: Option<f64>,
    pub rescale_grad: Option<f64>,
    pub momentum: Option<f64>,
    pub beta1: Option<f64>,
    pub beta2: Option<f64>,
    pub epsilon: Option<f64>,
    /// `None` both when absent and when MXNet's value is `None` (no clipping).
    pub clip_gradient: Option<f64>,
    pub multi_precision: Option<bool>,
    pub idx2name: Vec<(StateKey, String)>,
    pub lr_mult: Vec<(StateKey, f64)>,
    pub wd_mult: Vec<(StateKey, f64)>,
    pub lr_scheduler: Option<SavedScheduler>,
    /// Other attributes that are plain data (`lazy_update`, `aggregate_num`, …).
    pub other: Vec<(String, Plain)>,
    /// Attributes that are not plain data, by name (`sym_info`, for instance).
    pub ignored: Vec<String>,
}

/// A whole `.states` file.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerStates {
    /// Keys and states, in the file's order.
    pub states: Vec<(StateKey, StateValue)>,
    /// The optimizer (Gluon's `Trainer.save_states`); `None` for Module's files.
    pub optimizer: Option<SavedOptimizer>,
}

/// Why a `.states` file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatesError {
    #[error("not a pickle MXNet's optimizer states are written as: {0}")]
    Pickle(#[from] PickleError),
    /// The pickle is valid but not shaped like MXNet's states. `path` is where, e.g.
    /// `states[3][1]` or `optimizer.lr`.
    #[error("{path}: expected {expected}, found {found}")]
    Shape {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{path}: the NDArray's raw record is malformed: {source}")]
    NdArray { path: String, source: ParamsError },
    #[error("{path}: the key {key} appears twice")]
    DuplicateKey { path: String, key: String },
    #[error("{path}: the arrays decode to more bytes ({total}) than the file holds ({input})")]
    ArraysExceedInput {
        path: String,
        total: usize,
        input: usize,
    },
}

fn shape_error(path: impl fmt::Display, expected: &'static str, found: &Value<'_>) -> StatesError {
    StatesError::Shape {
        path: path.to_string(),
        expected,
        found: found.type_name(),
    }
}

/// Reads a `.states` file written by MXNet's Module or Gluon (module documentation).
pub fn read_optimizer_states(
    bytes: &[u8],
    limits: &StatesLimits,
) -> Result<OptimizerStates, StatesError> {
    let value = read_pickle(bytes, &limits.pickle)?;
    let mut reader = StatesReader {
        limits,
        budget: bytes.len(),
        input: bytes.len(),
    };
    match value {
        Value::Dict(items) => Ok(OptimizerStates {
            states: reader.states(items)?,
            optimizer: None,
        }),
        Value::Tuple(items) => {
            let mut items = items.into_iter();
            match (items.next(), items.next(), items.next()) {
                (Some(Value::Dict(states)), Some(Value::Object(optimizer)), None) => {
                    Ok(OptimizerStates {
                        states: reader.states(states)?,
                        optimizer: Some(optimizer_fields(*optimizer)?),
                    })
                }
                (Some(Value::Dict(_)), Some(other), None) => {
                    Err(shape_error("optimizer", "an MXNet optimizer", &other))
                }
                (Some(other), Some(_), None) => Err(shape_error("states", "a dict", &other)),
                _ => Err(StatesError::Shape {
                    path: "file".into(),
                    expected: "a dict, or a (dict, optimizer) pair",
                    found: "a tuple of another length",
                }),
            }
        }
        other => Err(shape_error(
            "file",
            "a dict, or a (dict, optimizer) pair",
            &other,
        )),
    }
}

struct StatesReader<'l> {
    limits: &'l StatesLimits,
    /// Bytes the decoded arrays may still take.
    budget: usize,
    input: usize,
}

fn state_key(key: &Value<'_>, path: &str) -> Result<StateKey, StatesError> {
    match key {
        Value::Int(i) => u64::try_from(*i)
            .map(StateKey::Index)
            .map_err(|_| StatesError::Shape {
                path: path.to_owned(),
                expected: "a key that is a name or an index of 0 or more",
                found: "a negative int",
            }),
        Value::Str(s) => Ok(StateKey::Name((*s).to_owned())),
        other => Err(shape_error(path, "an int or str key", other)),
    }
}

impl StatesReader<'_> {
    fn states(
        &mut self,
        items: Vec<(Value<'_>, Value<'_>)>,
    ) -> Result<Vec<(StateKey, StateValue)>, StatesError> {
        let mut out = Vec::new();
        for (key, value) in items {
            // The pickle reader already refused repeated keys.
            let key = state_key(&key, "states")?;
            let path = format!("states[{key}]");
            let value = self.state(value, &path)?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Depth is bounded by the pickle's nesting limit, so this recursion is too.
    fn state(&mut self, value: Value<'_>, path: &str) -> Result<StateValue, StatesError> {
        match value {
            Value::None => Ok(StateValue::None),
            Value::Tuple(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| self.state(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()
                .map(StateValue::Tuple),
            Value::Object(object) if object.class.kind == ClassKind::NdArray => {
                self.ndarray(*object, path).map(StateValue::Array)
            }
            other => Err(shape_error(
                path,
                "None, an NDArray or a tuple of states",
                &other,
            )),
        }
    }

    fn ndarray(&mut self, object: Object<'_>, path: &str) -> Result<StoredArray, StatesError> {
        let Some(Value::Dict(mut state)) = object.state else {
            return Err(StatesError::Shape {
                path: path.to_owned(),
                expected: "an NDArray with the state {'handle': bytes}",
                found: "another state",
            });
        };
        let handle = match (state.pop(), state.is_empty()) {
            (Some((Value::Str("handle"), Value::Bytes(handle))), true) => handle,
            (Some((Value::Str("handle"), Value::None)), true) => {
                return Err(StatesError::Shape {
                    path: path.to_owned(),
                    expected: "an NDArray with data",
                    found: "an NDArray whose handle is None",
                })
            }
            _ => {
                return Err(StatesError::Shape {
                    path: path.to_owned(),
                    expected: "an NDArray with the state {'handle': bytes}",
                    found: "another dict",
                })
            }
        };
        let array = read_ndarray_blob(&handle, &self.limits.params).map_err(|source| {
            StatesError::NdArray {
                path: path.to_owned(),
                source,
            }
        })?;
        let Some(value) = array.value else {
            return Err(StatesError::Shape {
                path: path.to_owned(),
                expected: "an NDArray with data",
                found: "an empty (none) record",
            });
        };
        let size = stored_bytes(&value);
        self.budget = self
            .budget
            .checked_sub(size)
            .ok_or(StatesError::ArraysExceedInput {
                path: path.to_owned(),
                total: self.input.saturating_sub(self.budget).saturating_add(size),
                input: self.input,
            })?;
        Ok(value)
    }
}

fn stored_bytes(array: &StoredArray) -> usize {
    match array {
        StoredArray::Dense(t) => t.bytes().len(),
        StoredArray::RowSparse {
            indices, values, ..
        } => values
            .bytes()
            .len()
            .saturating_add(indices.len().saturating_mul(8)),
        StoredArray::Csr {
            indptr,
            indices,
            values,
            ..
        } => values
            .bytes()
            .len()
            .saturating_add(indptr.len().saturating_add(indices.len()).saturating_mul(8)),
    }
}

// ----------------------------------------------------------------------------------------
// The optimizer

/// Plain data, or `None` if the value is not.
fn plain(value: &Value<'_>) -> Option<Plain> {
    Some(match value {
        Value::None => Plain::None,
        Value::Bool(b) => Plain::Bool(*b),
        Value::Int(i) => Plain::Int(*i),
        Value::Float(x) => Plain::Float(*x),
        Value::Str(s) => Plain::Str((*s).to_owned()),
        Value::Tuple(items) | Value::List(items) => {
            Plain::List(items.iter().map(plain).collect::<Option<_>>()?)
        }
        Value::Bytes(_) | Value::Dict(_) | Value::Object(_) => return None,
    })
}

fn attributes<'a>(
    object: Object<'a>,
    path: &str,
) -> Result<Vec<(&'a str, Value<'a>)>, StatesError> {
    match object.state {
        Some(Value::Dict(items)) => items
            .into_iter()
            .map(|(key, value)| match key {
                Value::Str(name) => Ok((name, value)),
                other => Err(shape_error(path, "str attribute names", &other)),
            })
            .collect(),
        Some(other) => Err(shape_error(path, "an attribute dict", &other)),
        None => Err(StatesError::Shape {
            path: path.to_owned(),
            expected: "an attribute dict",
            found: "no state",
        }),
    }
}

fn number(value: &Value<'_>, path: &str) -> Result<f64, StatesError> {
    match value {
        Value::Float(x) => Ok(*x),
        Value::Int(i) => Ok(*i as f64),
        other => Err(shape_error(path, "a number", other)),
    }
}

fn int(value: &Value<'_>, path: &str) -> Result<i64, StatesError> {
    match value {
        Value::Int(i) => Ok(*i),
        other => Err(shape_error(path, "an int", other)),
    }
}

fn keyed<T>(
    value: &Value<'_>,
    path: &str,
    each: impl Fn(&Value<'_>, &str) -> Result<T, StatesError>,
) -> Result<Vec<(StateKey, T)>, StatesError> {
    let Value::Dict(items) = value else {
        return Err(shape_error(path, "a dict", value));
    };
    items
        .iter()
        .map(|(key, value)| {
            let key = state_key(key, path)?;
            let item = each(value, &format!("{path}[{key}]"))?;
            Ok((key, item))
        })
        .collect()
}

fn optimizer_fields(object: Object<'_>) -> Result<SavedOptimizer, StatesError> {
    if object.class.kind != ClassKind::Optimizer {
        return Err(StatesError::Shape {
            path: "optimizer".into(),
            expected: "an MXNet optimizer",
            found: "another object",
        });
    }
    let mut out = SavedOptimizer {
        class: object.class.name,
        ..SavedOptimizer::default()
    };
    for (name, value) in attributes(object, "optimizer")? {
        let path = format!("optimizer.{name}");
        let path = path.as_str();
        let f = |value: &Value<'_>| number(value, path).map(Some);
        match name {
            "num_update" => out.num_update = Some(int(&value, path)?),
            "begin_num_update" => out.begin_num_update = Some(int(&value, path)?),
            "_index_update_count" => out.index_update_count = keyed(&value, path, int)?,
            "_all_index_update_counts" => {
                let Value::Dict(items) = &value else {
                    return Err(shape_error(path, "a dict", &value));
                };
                for (device, counts) in items {
                    let device = int(device, path)?;
                    let counts = keyed(counts, &format!("{path}[{device}]"), int)?;
                    out.all_index_update_counts.push((device, counts));
                }
            }
            "lr" | "learning_rate" => out.learning_rate = f(&value)?,
            "wd" => out.wd = f(&value)?,
            "rescale_grad" => out.rescale_grad = f(&value)?,
            "momentum" => out.momentum = f(&value)?,
            "beta1" => out.beta1 = f(&value)?,
            "beta2" => out.beta2 = f(&value)?,
            "epsilon" => out.epsilon = f(&value)?,
            "clip_gradient" => {
                out.clip_gradient = match value {
                    Value::None => None,
                    ref other => f(other)?,
                }
            }
            "multi_precision" => match value {
                Value::Bool(b) => out.multi_precision = Some(b),
                ref other => return Err(shape_error(path, "a bool", other)),
            },
            "idx2name" => {
                out.idx2name = keyed(&value, path, |v, p| match v {
                    Value::Str(s) => Ok((*s).to_owned()),
                    other => Err(shape_error(p, "a str", other)),
                })?
            }
            "lr_mult" => out.lr_mult = keyed(&value, path, number)?,
            "wd_mult" => out.wd_mult = keyed(&value, path, number)?,
            "lr_scheduler" => {
                out.lr_scheduler = match value {
                    Value::None => None,
                    Value::Object(object) if object.class.kind == ClassKind::LrScheduler => {
                        Some(scheduler(*object)?)
                    }
                    other => {
                        return Err(shape_error(path, "None or an MXNet LR scheduler", &other))
                    }
                }
            }
            _ => match plain(&value) {
                Some(p) => out.other.push((name.to_owned(), p)),
                None => out.ignored.push(name.to_owned()),
            },
        }
    }
    Ok(out)
}

fn scheduler(object: Object<'_>) -> Result<SavedScheduler, StatesError> {
    let class = object.class;
    let mut fields = Vec::new();
    let mut ignored = Vec::new();
    for (name, value) in attributes(object, "optimizer.lr_scheduler")? {
        match plain(&value) {
            Some(p) => fields.push((name.to_owned(), p)),
            None => ignored.push(name.to_owned()),
        }
    }
    Ok(SavedScheduler {
        class,
        fields,
        ignored,
    })
}

// ----------------------------------------------------------------------------------------
// Writing

/// Why states cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatesWriteError {
    #[error("states[{key}]: sparse arrays are not written (only dense ones)")]
    Sparse { key: String },
    #[error("states[{key}]: a 0-d array cannot be an MXNet legacy-shape record")]
    Scalar { key: String },
    #[error("states[{key}]: the key appears twice")]
    DuplicateKey { key: String },
    #[error("states[{key}]: an index above 2^63 - 1, which ward's reader (64-bit ints) refuses")]
    KeyTooLarge { key: u64 },
    #[error("the states would be larger than this machine can address")]
    TooLarge,
}

/// Protocol 4's frame size target (`pickle._Framer._FRAME_SIZE_TARGET`).
const FRAME_SIZE_TARGET: usize = 64 * 1024;
/// The smallest frame that gets a `FRAME` header.
const FRAME_SIZE_MIN: usize = 4;
const FRAME_HEADER: usize = 9;
/// Items per `SETITEMS` batch.
const BATCH_SIZE: usize = 1000;

/// Writes states as MXNet 1.9.1's `Module.save_optimizer_states` does (the Module form, no
/// optimizer): the same bytes Python 3.11's pickler gives for a dict of CPU arrays, so
/// deterministic. Only dense arrays are written, each as a V2 record on `cpu(0)`.
pub fn write_optimizer_states(
    states: &[(StateKey, StateValue)],
) -> Result<Vec<u8>, StatesWriteError> {
    let mut seen = HashSet::new();
    for (key, _) in states {
        if let StateKey::Index(i) = key {
            if i64::try_from(*i).is_err() {
                return Err(StatesWriteError::KeyTooLarge { key: *i });
            }
        }
        if !seen.insert(key) {
            return Err(StatesWriteError::DuplicateKey {
                key: key.to_string(),
            });
        }
    }
    let mut w = Writer::default();
    w.raw(&[0x80, 4]);
    w.framing = true;
    w.op(b"}");
    w.memoize();
    // The C pickler: one item is a lone SETITEM; otherwise batches of 1 000 between MARK
    // and SETITEMS, checking the frame after each item, and a last, empty batch when the
    // count is a multiple of 1 000.
    if let [(key, value)] = states {
        w.key(key);
        w.state(key, value)?;
        w.op(b"s");
    } else if !states.is_empty() {
        let mut rest = states;
        loop {
            let (batch, after) = rest.split_at(rest.len().min(BATCH_SIZE));
            w.op(b"(");
            for (key, value) in batch {
                w.key(key);
                w.state(key, value)?;
                w.boundary();
            }
            w.op(b"u");
            rest = after;
            if batch.len() < BATCH_SIZE {
                break;
            }
        }
    }
    w.op(b".");
    w.commit_frame();
    Ok(w.out)
}

/// Python's C pickler, for the few things a states dict holds.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    framing: bool,
    /// Where the current frame's reserved header is.
    frame_start: Option<usize>,
    memo: u32,
    ndarray_class: Option<u32>,
    none_args: Option<u32>,
    handle_key: Option<u32>,
    bytearray_class: Option<u32>,
}

impl Writer {
    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Writes within the current frame, opening one if needed.
    fn op(&mut self, bytes: &[u8]) {
        if self.framing && self.frame_start.is_none() {
            self.frame_start = Some(self.out.len());
            self.out.extend_from_slice(&[0; FRAME_HEADER]);
        }
        self.raw(bytes);
    }

    fn commit_frame(&mut self) {
        let Some(start) = self.frame_start.take() else {
            return;
        };
        let len = self.out.len().saturating_sub(start + FRAME_HEADER);
        if len >= FRAME_SIZE_MIN {
            let mut header = [0x95u8; FRAME_HEADER];
            for (to, from) in header.iter_mut().skip(1).zip((len as u64).to_le_bytes()) {
                *to = from;
            }
            if let Some(slot) = self.out.get_mut(start..start + FRAME_HEADER) {
                slot.copy_from_slice(&header);
            }
        } else {
            self.out.drain(start..start + FRAME_HEADER);
        }
    }

    fn boundary(&mut self) {
        if let Some(start) = self.frame_start {
            if self.out.len().saturating_sub(start + FRAME_HEADER) >= FRAME_SIZE_TARGET {
                self.commit_frame();
            }
        }
    }

    fn memoize(&mut self) -> u32 {
        self.op(&[0x94]);
        self.memo += 1;
        self.memo - 1
    }

    fn get(&mut self, index: u32) {
        match u8::try_from(index) {
            Ok(i) => self.op(&[b'h', i]),
            Err(_) => {
                let mut op = vec![b'j'];
                op.extend_from_slice(&index.to_le_bytes());
                self.op(&op);
            }
        }
    }

    fn int(&mut self, value: u64) {
        if let Ok(v) = u8::try_from(value) {
            self.op(&[b'K', v]);
        } else if let Ok(v) = u16::try_from(value) {
            let mut op = vec![b'M'];
            op.extend_from_slice(&v.to_le_bytes());
            self.op(&op);
        } else if let Ok(v) = i32::try_from(value) {
            let mut op = vec![b'J'];
            op.extend_from_slice(&v.to_le_bytes());
            self.op(&op);
        } else {
            // LONG1: minimal little-endian two's complement (a sign byte when the top bit
            // of the last byte is set).
            let le = value.to_le_bytes();
            let bits = 64 - value.leading_zeros() as usize;
            let len = bits / 8 + 1;
            let mut op = vec![0x8a, len as u8];
            op.extend(le.iter().copied().chain(std::iter::repeat(0)).take(len));
            self.op(&op);
        }
    }

    fn str(&mut self, s: &str) -> u32 {
        self.counted(s.as_bytes(), 0x8c, b'X', 0x8d);
        self.memoize()
    }

    fn bytes(&mut self, data: &[u8]) -> u32 {
        self.counted(data, b'C', b'B', 0x8e);
        self.memoize()
    }

    /// A length-prefixed payload; one of 64 KiB or more goes outside any frame.
    fn counted(&mut self, data: &[u8], short: u8, long: u8, huge: u8) {
        let mut header = Vec::with_capacity(FRAME_HEADER);
        if let Ok(len) = u8::try_from(data.len()) {
            header.extend_from_slice(&[short, len]);
        } else if let Ok(len) = u32::try_from(data.len()) {
            header.push(long);
            header.extend_from_slice(&len.to_le_bytes());
        } else {
            header.push(huge);
            header.extend_from_slice(&(data.len() as u64).to_le_bytes());
        }
        if self.framing && data.len() >= FRAME_SIZE_TARGET {
            self.commit_frame();
            self.raw(&header);
            self.raw(data);
        } else {
            self.op(&header);
            self.op(data);
        }
    }

    fn key(&mut self, key: &StateKey) {
        match key {
            StateKey::Index(i) => self.int(*i),
            StateKey::Name(name) => {
                self.str(name);
            }
        }
    }

    fn state(&mut self, key: &StateKey, value: &StateValue) -> Result<(), StatesWriteError> {
        match value {
            StateValue::None => self.op(b"N"),
            StateValue::Array(array) => self.ndarray(key, array)?,
            StateValue::Tuple(items) => {
                if items.is_empty() {
                    self.op(b")");
                    return Ok(());
                }
                if items.len() > 3 {
                    self.op(b"(");
                }
                for item in items {
                    self.state(key, item)?;
                }
                self.op(match items.len() {
                    1 => &[0x85],
                    2 => &[0x86],
                    3 => &[0x87],
                    _ => b"t",
                });
                self.memoize();
            }
        }
        Ok(())
    }

    /// `NDArray.__reduce__`: `(NDArray, (None,), {'handle': bytearray(record)})`.
    fn ndarray(&mut self, key: &StateKey, array: &StoredArray) -> Result<(), StatesWriteError> {
        let StoredArray::Dense(tensor) = array else {
            return Err(StatesWriteError::Sparse {
                key: key.to_string(),
            });
        };
        if tensor.shape().is_empty() {
            return Err(StatesWriteError::Scalar {
                key: key.to_string(),
            });
        }
        let record = record(tensor)?;
        match self.ndarray_class {
            Some(i) => self.get(i),
            None => {
                self.str("mxnet.ndarray.ndarray");
                self.str("NDArray");
                self.op(&[0x93]);
                self.ndarray_class = Some(self.memoize());
            }
        }
        match self.none_args {
            Some(i) => self.get(i),
            None => {
                self.op(&[b'N', 0x85]);
                self.none_args = Some(self.memoize());
            }
        }
        self.op(b"R");
        self.memoize();
        self.op(b"}");
        self.memoize();
        match self.handle_key {
            Some(i) => self.get(i),
            None => self.handle_key = Some(self.str("handle")),
        }
        match self.bytearray_class {
            Some(i) => self.get(i),
            None => {
                self.str("builtins");
                self.str("bytearray");
                self.op(&[0x93]);
                self.bytearray_class = Some(self.memoize());
            }
        }
        self.bytes(&record);
        self.op(&[0x85]);
        self.memoize();
        self.op(b"R");
        self.memoize();
        self.op(b"s");
        self.op(b"b");
        Ok(())
    }
}

/// A dense array as `MXNDArraySaveRawBytes` writes it on `cpu(0)`: a V2 record.
fn record(tensor: &ward_core::Tensor) -> Result<Vec<u8>, StatesWriteError> {
    let data = tensor.bytes();
    let expected = byte_len(tensor.shape(), tensor.dtype()).ok_or(StatesWriteError::TooLarge)?;
    if expected != data.len() {
        return Err(StatesWriteError::TooLarge);
    }
    let ndim = i32::try_from(tensor.shape().len()).map_err(|_| StatesWriteError::TooLarge)?;
    let mut out = Vec::new();
    out.extend_from_slice(&V2_MAGIC.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&ndim.to_le_bytes());
    for &d in tensor.shape() {
        let d = i64::try_from(d).map_err(|_| StatesWriteError::TooLarge)?;
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&Context::CPU.dev_type.to_le_bytes());
    out.extend_from_slice(&Context::CPU.dev_id.to_le_bytes());
    out.extend_from_slice(&dtype_flag(tensor.dtype()).to_le_bytes());
    out.extend_from_slice(data);
    Ok(out)
}
