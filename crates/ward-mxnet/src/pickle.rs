//! A restricted reader for the Python pickles in MXNet's optimizer-state files, which
//! executes nothing.
//!
//! `Module.save_optimizer_states` and Gluon's `Trainer.save_states` write
//! `pickle.dumps(states)` or `pickle.dumps((states, optimizer))` (see [`crate::states`]).
//! Unpickling such a file in Python runs whatever callables it names, so a `.states` file
//! from elsewhere is arbitrary code. This reader understands exactly the pickles those
//! calls write under MXNet 1.9.1 — protocol 4 (Python ≥ 3.8's default), and protocols 3
//! and 2 (Python 3.0–3.7, and `pickle.dumps(..., protocol=2)`) — and builds an inert
//! [`Value`] tree from them. A global is never imported or called: an allowed global is a
//! tag, and anything else is refused with the opcode or global named and its byte offset.
//!
//! # Opcodes
//!
//! Accepted (Python's names): `PROTO` (first, versions 2–4 only), `FRAME`, `STOP`, `MARK`,
//! `NONE`, `NEWTRUE`, `NEWFALSE`, `BININT`, `BININT1`, `BININT2`, `LONG1`, `LONG4` (at most
//! 8 bytes: integers are `i64`), `BINFLOAT`, `SHORT_BINUNICODE`, `BINUNICODE`,
//! `BINUNICODE8`, `SHORT_BINBYTES`, `BINBYTES`, `BINBYTES8`, `EMPTY_TUPLE`, `TUPLE`,
//! `TUPLE1`, `TUPLE2`, `TUPLE3`, `EMPTY_LIST`, `APPEND`, `APPENDS`, `EMPTY_DICT`,
//! `SETITEM`, `SETITEMS`, `GLOBAL`, `STACK_GLOBAL`, `REDUCE`, `NEWOBJ`, `BUILD`,
//! `MEMOIZE`, `BINPUT`, `LONG_BINPUT`, `BINGET`, `LONG_BINGET`.
//!
//! Everything else is [`PickleError::ForbiddenOpcode`]: the text opcodes of protocol 0
//! (`INT`, `STRING`, `GET`, `PUT`, …), `INST`, `OBJ`, `NEWOBJ_EX`, `PERSID`, `BINPERSID`,
//! `EXT1`/`EXT2`/`EXT4`, sets, `POP`/`DUP`, Python 2's `BINSTRING`, and protocol 5's
//! buffers.
//!
//! # Globals
//!
//! [`ALLOWED_GLOBALS`] is the whole list, each usable only the way MXNet uses it:
//!
//! | global | use | becomes |
//! |---|---|---|
//! | `mxnet.ndarray.ndarray NDArray` | `REDUCE` with `(None,)`, then `BUILD` (`NDArray.__reduce__`) | [`Object`] |
//! | `builtins bytearray` (`__builtin__ bytearray` in protocol 2) | `REDUCE` with `(bytes,)` (the array's `handle`) | [`Value::Bytes`] |
//! | `_codecs encode` | `REDUCE` with `(str, 'latin1')` (how protocol 2 writes bytes) | [`Value::Bytes`] |
//! | `mxnet.optimizer.optimizer` `AdaDelta`, `AdaGrad`, `Adam`, `Adamax`, `ccSGD`, `DCASGD`, `FTML`, `Ftrl`, `LAMB`, `LARS`, `LBSGD`, `Nadam`, `NAG`, `RMSProp`, `SGD`, `SGLD`, `Signum`, `Test`; `mxnet.optimizer.contrib GroupAdaGrad` | `NEWOBJ` with `()`, then `BUILD` with the attribute dict | [`Object`] |
//! | `mxnet.lr_scheduler` `LRScheduler`, `FactorScheduler`, `MultiFactorScheduler`, `PolyScheduler`, `CosineScheduler` | `NEWOBJ` with `()`, then `BUILD` | [`Object`] |
//!
//! The optimizers are MXNet 1.9.1's whole registry (`Optimizer.opt_registry`); the
//! schedulers are every class of `mxnet.lr_scheduler`. No `copyreg` helper is needed: MXNet's
//! files are protocol 2 or later, which build objects with `NEWOBJ`.
//!
//! # Limits and structure
//!
//! [`PickleLimits`] bounds the input, the stack, the memo, the values, the items of one
//! container, the length of one string and the nesting depth; every length prefix is
//! checked against the limit and then against the bytes that remain before anything is
//! read. The parser is a loop over opcodes (no recursion); values live in a flat arena, so
//! nothing recursive runs until the finished tree is copied out, and that copy recurses
//! at most [`PickleLimits::max_depth`] levels (itself capped at [`MAX_PICKLE_DEPTH_CAP`]).
//!
//! Stricter than Python, and never contradicted by a file MXNet writes:
//! * memo indices must be assigned in order (`BINPUT n` only when `n` entries exist, as
//!   Python's pickler does), a value is memoized at most once (so the memo is never larger
//!   than the values), and only set entries can be fetched;
//! * a container cannot change once it is inside another (Python's pickler fills each
//!   container before using it), so cycles cannot be built and depths are known as values
//!   are made;
//! * an object ([`Object`]) may be reached only once (MXNet never shares an array or an
//!   optimizer), and sharing cannot multiply the values: the copied-out tree may hold at
//!   most twice as many values as the pickle made (plus 1 024);
//! * dict keys are `int` or `str`, never repeated; a class is never a plain value;
//! * after `STOP` the stack holds exactly one value and no mark, and no byte follows.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use ward_core::{Reader, Truncated};

/// Largest pickle read: an Adam state is twice its weights, and weights are bounded at
/// 8 GiB (`crate::limits::MAX_PARAMS_FILE_BYTES`).
pub const MAX_PICKLE_INPUT_BYTES: u64 = 16 << 30;
/// Deepest nesting of values. MXNet's files nest at most 7 levels (a multi-precision
/// state: dict, tuple, tuple, tuple, NDArray, its state dict, the bytes).
pub const MAX_PICKLE_DEPTH: usize = 32;
/// Hard cap on [`PickleLimits::max_depth`], whatever it is set to: the copy of the tree,
/// and dropping it, recurse once per level.
pub const MAX_PICKLE_DEPTH_CAP: usize = 256;
/// Most memo entries: MXNet memoizes about five values per array (a 100 000-parameter
/// model with Adam has 200 000 arrays).
pub const MAX_PICKLE_MEMO: usize = 4_000_000;
/// Most items in one tuple, list or dict.
pub const MAX_PICKLE_ITEMS: usize = 1_000_000;
/// Most values made while reading (about eight per array in MXNet's files).
pub const MAX_PICKLE_VALUES: usize = 8_000_000;
/// Most entries on the stack, marks included. Python's pickler pushes at most 1 000 items
/// per `APPENDS`/`SETITEMS` batch, plus one level per nesting.
pub const MAX_PICKLE_STACK: usize = 10_000;
/// Longest `str` or `bytes`, in bytes: one array's raw record (4 GiB is a billion floats).
pub const MAX_PICKLE_STRING_LEN: u64 = 4 << 30;
/// Longest module or name line of a `GLOBAL` opcode.
const MAX_GLOBAL_LINE: usize = 256;
/// At most this much of a refused global's name is kept in the error.
const MAX_NAME_IN_ERROR: usize = 200;

/// Limits for [`read_pickle`]. Every one is checked before the allocation it guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleLimits {
    /// Largest input, in bytes.
    pub max_input_bytes: u64,
    /// Deepest nesting of values (a leaf is depth 1); capped at [`MAX_PICKLE_DEPTH_CAP`].
    pub max_depth: usize,
    /// Most memo entries.
    pub max_memo: usize,
    /// Most items in one tuple, list or dict.
    pub max_items: usize,
    /// Most values made while reading, and most values in the returned tree.
    pub max_values: usize,
    /// Most stack entries, marks included.
    pub max_stack: usize,
    /// Longest `str` or `bytes`, in bytes.
    pub max_string_len: u64,
}

impl Default for PickleLimits {
    fn default() -> Self {
        PickleLimits {
            max_input_bytes: MAX_PICKLE_INPUT_BYTES,
            max_depth: MAX_PICKLE_DEPTH,
            max_memo: MAX_PICKLE_MEMO,
            max_items: MAX_PICKLE_ITEMS,
            max_values: MAX_PICKLE_VALUES,
            max_stack: MAX_PICKLE_STACK,
            max_string_len: MAX_PICKLE_STRING_LEN,
        }
    }
}

// ----------------------------------------------------------------------------------------
// Values

/// What an allowed global is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClassKind {
    /// `mxnet.ndarray.ndarray.NDArray`: an [`Object`] whose state is `{'handle': bytes}`.
    NdArray,
    /// `bytearray`: called on bytes, gives [`Value::Bytes`].
    ByteArray,
    /// `_codecs.encode`: called on `(str, 'latin1')`, gives [`Value::Bytes`].
    CodecsEncode,
    /// An MXNet optimizer class: an [`Object`] whose state is its attribute dict.
    Optimizer,
    /// An MXNet learning-rate scheduler class: an [`Object`] whose state is its attribute
    /// dict.
    LrScheduler,
}

/// An allowed global: a name and what it may be used for. Never imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Class {
    pub module: &'static str,
    pub name: &'static str,
    pub kind: ClassKind,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

const fn class(module: &'static str, name: &'static str, kind: ClassKind) -> Class {
    Class { module, name, kind }
}

const OPTIMIZERS: &str = "mxnet.optimizer.optimizer";
const SCHEDULERS: &str = "mxnet.lr_scheduler";

/// Every global a pickle may name (see the module documentation for how each may be used).
pub const ALLOWED_GLOBALS: &[Class] = &[
    class("mxnet.ndarray.ndarray", "NDArray", ClassKind::NdArray),
    class("builtins", "bytearray", ClassKind::ByteArray),
    class("__builtin__", "bytearray", ClassKind::ByteArray),
    class("_codecs", "encode", ClassKind::CodecsEncode),
    class(OPTIMIZERS, "AdaDelta", ClassKind::Optimizer),
    class(OPTIMIZERS, "AdaGrad", ClassKind::Optimizer),
    class(OPTIMIZERS, "Adam", ClassKind::Optimizer),
    class(OPTIMIZERS, "Adamax", ClassKind::Optimizer),
    class(OPTIMIZERS, "ccSGD", ClassKind::Optimizer),
    class(OPTIMIZERS, "DCASGD", ClassKind::Optimizer),
    class(OPTIMIZERS, "FTML", ClassKind::Optimizer),
    class(OPTIMIZERS, "Ftrl", ClassKind::Optimizer),
    class(OPTIMIZERS, "LAMB", ClassKind::Optimizer),
    class(OPTIMIZERS, "LARS", ClassKind::Optimizer),
    class(OPTIMIZERS, "LBSGD", ClassKind::Optimizer),
    class(OPTIMIZERS, "Nadam", ClassKind::Optimizer),
    class(OPTIMIZERS, "NAG", ClassKind::Optimizer),
    class(OPTIMIZERS, "RMSProp", ClassKind::Optimizer),
    class(OPTIMIZERS, "SGD", ClassKind::Optimizer),
    class(OPTIMIZERS, "SGLD", ClassKind::Optimizer),
    class(OPTIMIZERS, "Signum", ClassKind::Optimizer),
    class(OPTIMIZERS, "Test", ClassKind::Optimizer),
    class(
        "mxnet.optimizer.contrib",
        "GroupAdaGrad",
        ClassKind::Optimizer,
    ),
    class(SCHEDULERS, "LRScheduler", ClassKind::LrScheduler),
    class(SCHEDULERS, "FactorScheduler", ClassKind::LrScheduler),
    class(SCHEDULERS, "MultiFactorScheduler", ClassKind::LrScheduler),
    class(SCHEDULERS, "PolyScheduler", ClassKind::LrScheduler),
    class(SCHEDULERS, "CosineScheduler", ClassKind::LrScheduler),
];

/// The allowed global with this module and name.
pub fn allowed_global(module: &str, name: &str) -> Option<&'static Class> {
    ALLOWED_GLOBALS
        .iter()
        .find(|c| c.module == module && c.name == name)
}

/// An inert value read from a pickle. Strings and bytes borrow the input where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bytes(Cow<'a, [u8]>),
    Tuple(Vec<Value<'a>>),
    List(Vec<Value<'a>>),
    /// Items in the order the pickle set them; keys are [`Value::Int`] or [`Value::Str`],
    /// never repeated.
    Dict(Vec<(Value<'a>, Value<'a>)>),
    Object(Box<Object<'a>>),
}

impl Value<'_> {
    /// Python's name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Object(_) => "object",
        }
    }
}

/// An instance of an allowed class, as data: the arguments it was made with and the state
/// `BUILD` gave it (`None` if there was no `BUILD`).
#[derive(Debug, Clone, PartialEq)]
pub struct Object<'a> {
    pub class: &'static Class,
    pub args: Vec<Value<'a>>,
    pub state: Option<Value<'a>>,
}

// ----------------------------------------------------------------------------------------
// Errors

/// A pickle opcode, by Python's name when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opcode(pub u8);

impl Opcode {
    /// Python's name (`pickletools`) of the opcode, if it is one.
    pub fn name(self) -> Option<&'static str> {
        opcode_name(self.0)
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{:#04x}", self.0),
        }
    }
}

/// Python's name of every pickle opcode (protocols 0–5).
pub fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

/// What was wrong with a memo reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoProblem {
    /// Fetched before it was set.
    Unset,
    /// Set out of order: Python's pickler always uses the next free index.
    NotNext { next: usize },
    /// Beyond [`PickleLimits::max_memo`].
    OverLimit { limit: usize },
    /// Set for a value that is in the memo already (Python's pickler never does).
    Again,
}

impl fmt::Display for MemoProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoProblem::Unset => f.write_str("was never set"),
            MemoProblem::NotNext { next } => {
                write!(
                    f,
                    "is not the next free index ({next}): entries are set in order"
                )
            }
            MemoProblem::OverLimit { limit } => {
                write!(f, "is beyond the limit of {limit} memo entries")
            }
            MemoProblem::Again => f.write_str("is set for a value already in the memo"),
        }
    }
}

/// Why a pickle was refused. Offsets are bytes from the start of the input, at the opcode
/// concerned; `opcode` is Python's name for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    #[error(
        "input ends inside {field} at byte {offset} ({needed} bytes needed, {available} remain)"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("the pickle is {len} bytes, over the limit of {limit}")]
    InputTooLarge { len: u64, limit: u64 },
    #[error("{opcode} at byte {offset}: {problem}")]
    Protocol {
        opcode: Opcode,
        problem: &'static str,
        offset: usize,
    },
    #[error("opcode {opcode} at byte {offset} is not allowed: MXNet's optimizer-state files do not use it")]
    ForbiddenOpcode { opcode: Opcode, offset: usize },
    #[error("{opcode} at byte {offset} names the global {module}.{name}, which is not allowed")]
    ForbiddenGlobal {
        opcode: &'static str,
        /// At most 200 bytes of the module, cut at a character boundary.
        module: String,
        /// At most 200 bytes of the name, cut at a character boundary.
        name: String,
        offset: usize,
    },
    #[error("{opcode} at byte {offset}: {callable} {problem}")]
    BadCall {
        opcode: &'static str,
        /// The class called, or the type of a value that is not a class.
        callable: String,
        problem: &'static str,
        offset: usize,
    },
    #[error("BUILD at byte {offset}: {problem}")]
    BadBuild {
        problem: &'static str,
        offset: usize,
    },
    #[error("{opcode} at byte {offset}: {field} {value} exceeds the limit of {limit}")]
    ExceedsLimit {
        opcode: &'static str,
        field: &'static str,
        value: u64,
        limit: u64,
        offset: usize,
    },
    #[error("{opcode} at byte {offset}: a length of {value} bytes cannot fit in the {remaining} bytes that follow")]
    ExceedsInput {
        opcode: &'static str,
        value: u64,
        remaining: usize,
        offset: usize,
    },
    #[error("{opcode} at byte {offset}: an integer of {len} bytes does not fit in 64 bits")]
    IntTooLarge {
        opcode: &'static str,
        len: u64,
        offset: usize,
    },
    #[error("{opcode} at byte {offset}: memo index {index} {problem}")]
    Memo {
        opcode: &'static str,
        index: u64,
        problem: MemoProblem,
        offset: usize,
    },
    #[error("{opcode} at byte {offset}: {problem}")]
    Stack {
        opcode: &'static str,
        problem: &'static str,
        offset: usize,
    },
    #[error("{opcode} at byte {offset}: expected {expected}, found {found}")]
    WrongType {
        opcode: &'static str,
        expected: &'static str,
        found: &'static str,
        offset: usize,
    },
    #[error("{opcode} at byte {offset}: the string is not UTF-8")]
    InvalidUtf8 { opcode: &'static str, offset: usize },
    #[error("{opcode} at byte {offset} would put a container inside itself")]
    Cycle { opcode: &'static str, offset: usize },
    #[error("{opcode} at byte {offset} changes a container that is already inside another")]
    Frozen { opcode: &'static str, offset: usize },
    #[error("the object made at byte {offset} is referenced more than once")]
    SharedObject { offset: usize },
    #[error("the dict made at byte {offset} has the key {key} twice")]
    DuplicateKey { key: String, offset: usize },
    #[error("{count} bytes after STOP at byte {offset}")]
    TrailingBytes { offset: usize, count: usize },
}

impl From<Truncated> for PickleError {
    fn from(t: Truncated) -> Self {
        PickleError::Truncated {
            field: t.field,
            offset: t.offset,
            needed: t.needed,
            available: t.available,
        }
    }
}

/// `s` cut to at most [`MAX_NAME_IN_ERROR`] bytes at a character boundary.
fn shorten(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_IN_ERROR);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

// ----------------------------------------------------------------------------------------
// Reading

/// Reads a pickle into an inert [`Value`], refusing anything MXNet's state files do not
/// contain (module documentation). Executes nothing.
pub fn read_pickle<'a>(bytes: &'a [u8], limits: &PickleLimits) -> Result<Value<'a>, PickleError> {
    let len = bytes.len() as u64;
    if len > limits.max_input_bytes {
        return Err(PickleError::InputTooLarge {
            len,
            limit: limits.max_input_bytes,
        });
    }
    let mut parser = Parser {
        r: Reader::new(bytes),
        limits,
        max_depth: limits.max_depth.min(MAX_PICKLE_DEPTH_CAP),
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Vec::new(),
        owned_budget: bytes.len().saturating_mul(3).saturating_add(4096),
        opcode: "PROTO",
    };
    let root = parser.run()?;
    let mut out = Materializer {
        arena: &parser.arena,
        values_left: limits
            .max_values
            .min(parser.arena.len().saturating_mul(2).saturating_add(1024)),
        values_limit: limits.max_values,
        owned_budget: parser.owned_budget,
        objects: HashSet::new(),
    };
    out.value(root)
}

type Id = usize;

/// A value in the arena; children are arena indices.
#[derive(Debug)]
enum Node<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bytes(Cow<'a, [u8]>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(&'static Class),
    Object {
        class: &'static Class,
        args: Id,
        state: Option<Id>,
    },
}

impl Node<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::Tuple(_) => "tuple",
            Node::List(_) => "list",
            Node::Dict(_) => "dict",
            Node::Global(_) => "a class",
            Node::Object { .. } => "an object",
        }
    }
}

#[derive(Debug)]
struct Slot<'a> {
    node: Node<'a>,
    /// The opcode that made it.
    offset: usize,
    /// 1 for a leaf, 1 + the deepest child otherwise.
    depth: usize,
    /// Inside another value: may no longer change.
    frozen: bool,
    /// In the memo already (Python's pickler memoizes an object once).
    memoized: bool,
}

struct Parser<'a, 'l> {
    r: Reader<'a>,
    limits: &'l PickleLimits,
    max_depth: usize,
    arena: Vec<Slot<'a>>,
    stack: Vec<Id>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: Vec<Id>,
    /// Bytes that may still be copied (decoded `_codecs.encode` strings and their copies).
    owned_budget: usize,
    /// Python's name of the opcode being run.
    opcode: &'static str,
}

fn usize_from(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl<'a> Parser<'a, '_> {
    fn run(&mut self) -> Result<Id, PickleError> {
        let offset = self.r.offset();
        let op = self.r.u8("opcode")?;
        if op != 0x80 {
            return Err(PickleError::Protocol {
                opcode: Opcode(op),
                problem: "the pickle does not start with PROTO (protocol 2 or later)",
                offset,
            });
        }
        let version = self.r.u8("protocol version")?;
        if !(2..=4).contains(&version) {
            return Err(PickleError::Protocol {
                opcode: Opcode(op),
                problem: "MXNet's files are pickle protocol 2, 3 or 4",
                offset,
            });
        }
        loop {
            let offset = self.r.offset();
            let op = self.r.u8("opcode")?;
            if op == b'.' {
                return self.stop(offset);
            }
            self.step(op, offset)?;
        }
    }

    fn stop(&mut self, offset: usize) -> Result<Id, PickleError> {
        let stack_error = |problem| PickleError::Stack {
            opcode: "STOP",
            problem,
            offset,
        };
        if !self.marks.is_empty() {
            return Err(stack_error("a MARK is left on the stack"));
        }
        let &[root] = self.stack.as_slice() else {
            return Err(stack_error("the stack must hold exactly one value"));
        };
        self.value_only(root, "STOP", offset)?;
        if !self.r.is_empty() {
            return Err(PickleError::TrailingBytes {
                offset: self.r.offset(),
                count: self.r.remaining(),
            });
        }
        Ok(root)
    }

    fn step(&mut self, op: u8, offset: usize) -> Result<(), PickleError> {
        self.opcode = opcode_name(op).unwrap_or("(unknown opcode)");
        match op {
            0x95 => {
                // FRAME: a length hint; its bytes must be there.
                let len = self.r.u64_le("FRAME length")?;
                if usize_from(len) > self.r.remaining() {
                    return Err(PickleError::ExceedsInput {
                        opcode: "FRAME",
                        value: len,
                        remaining: self.r.remaining(),
                        offset,
                    });
                }
            }
            b'(' => {
                self.check_stack("MARK", offset)?;
                self.marks.push(self.stack.len());
            }
            b'N' => self.leaf(Node::None, offset)?,
            0x88 => self.leaf(Node::Bool(true), offset)?,
            0x89 => self.leaf(Node::Bool(false), offset)?,
            b'J' => {
                let v = self.r.i32_le("BININT")?;
                self.leaf(Node::Int(i64::from(v)), offset)?;
            }
            b'K' => {
                let v = self.r.u8("BININT1")?;
                self.leaf(Node::Int(i64::from(v)), offset)?;
            }
            b'M' => {
                let v = self.r.u16_le("BININT2")?;
                self.leaf(Node::Int(i64::from(v)), offset)?;
            }
            0x8a => {
                let len = u64::from(self.r.u8("LONG1 length")?);
                self.long("LONG1", len, offset)?;
            }
            0x8b => {
                let len = u64::from(self.r.u32_le("LONG4 length")?);
                self.long("LONG4", len, offset)?;
            }
            b'G' => {
                let raw = self.r.take("BINFLOAT", 8)?;
                let mut be = [0u8; 8];
                be.copy_from_slice(raw);
                self.leaf(Node::Float(f64::from_be_bytes(be)), offset)?;
            }
            0x8c => {
                let len = u64::from(self.r.u8("SHORT_BINUNICODE length")?);
                self.string("SHORT_BINUNICODE", len, offset)?;
            }
            b'X' => {
                let len = u64::from(self.r.u32_le("BINUNICODE length")?);
                self.string("BINUNICODE", len, offset)?;
            }
            0x8d => {
                let len = self.r.u64_le("BINUNICODE8 length")?;
                self.string("BINUNICODE8", len, offset)?;
            }
            b'C' => {
                let len = u64::from(self.r.u8("SHORT_BINBYTES length")?);
                self.bytes("SHORT_BINBYTES", len, offset)?;
            }
            b'B' => {
                let len = u64::from(self.r.u32_le("BINBYTES length")?);
                self.bytes("BINBYTES", len, offset)?;
            }
            0x8e => {
                let len = self.r.u64_le("BINBYTES8 length")?;
                self.bytes("BINBYTES8", len, offset)?;
            }
            b')' => self.leaf(Node::Tuple(Vec::new()), offset)?,
            b']' => self.leaf(Node::List(Vec::new()), offset)?,
            b'}' => self.leaf(Node::Dict(Vec::new()), offset)?,
            0x85 => self.tuple_n("TUPLE1", 1, offset)?,
            0x86 => self.tuple_n("TUPLE2", 2, offset)?,
            0x87 => self.tuple_n("TUPLE3", 3, offset)?,
            b't' => {
                let items = self.pop_mark("TUPLE", offset)?;
                self.tuple("TUPLE", items, offset)?;
            }
            b'a' => {
                let item = self.pop("APPEND", offset)?;
                self.append("APPEND", vec![item], offset)?;
            }
            b'e' => {
                let items = self.pop_mark("APPENDS", offset)?;
                self.append("APPENDS", items, offset)?;
            }
            b's' => {
                let value = self.pop("SETITEM", offset)?;
                let key = self.pop("SETITEM", offset)?;
                self.set_items("SETITEM", vec![key, value], offset)?;
            }
            b'u' => {
                let items = self.pop_mark("SETITEMS", offset)?;
                self.set_items("SETITEMS", items, offset)?;
            }
            b'c' => {
                let module = self.line("GLOBAL module")?;
                let name = self.line("GLOBAL name")?;
                self.global("GLOBAL", module, name, offset)?;
            }
            0x93 => {
                let name = self.pop("STACK_GLOBAL", offset)?;
                let module = self.pop("STACK_GLOBAL", offset)?;
                let module = self.str_at(module, "STACK_GLOBAL", offset)?;
                let name = self.str_at(name, "STACK_GLOBAL", offset)?;
                self.global("STACK_GLOBAL", module, name, offset)?;
            }
            b'R' => {
                let args = self.pop("REDUCE", offset)?;
                let callable = self.pop("REDUCE", offset)?;
                self.reduce(callable, args, offset)?;
            }
            0x81 => {
                let args = self.pop("NEWOBJ", offset)?;
                let cls = self.pop("NEWOBJ", offset)?;
                self.newobj(cls, args, offset)?;
            }
            b'b' => {
                let state = self.pop("BUILD", offset)?;
                let object = self.top("BUILD", offset)?;
                self.build(object, state, offset)?;
            }
            0x94 => {
                let index = self.memo.len() as u64;
                self.put("MEMOIZE", index, offset)?;
            }
            b'q' => {
                let index = u64::from(self.r.u8("BINPUT index")?);
                self.put("BINPUT", index, offset)?;
            }
            b'r' => {
                let index = u64::from(self.r.u32_le("LONG_BINPUT index")?);
                self.put("LONG_BINPUT", index, offset)?;
            }
            b'h' => {
                let index = u64::from(self.r.u8("BINGET index")?);
                self.get("BINGET", index, offset)?;
            }
            b'j' => {
                let index = u64::from(self.r.u32_le("LONG_BINGET index")?);
                self.get("LONG_BINGET", index, offset)?;
            }
            0x80 => {
                return Err(PickleError::Protocol {
                    opcode: Opcode(op),
                    problem: "PROTO may only begin the pickle",
                    offset,
                })
            }
            _ => {
                return Err(PickleError::ForbiddenOpcode {
                    opcode: Opcode(op),
                    offset,
                })
            }
        }
        Ok(())
    }

    // -- the arena and the stack -----------------------------------------------------

    fn slot(&self, id: Id) -> Result<&Slot<'a>, PickleError> {
        // Ids come from the arena itself; a miss would be a bug here, reported as a
        // stack problem rather than a panic.
        self.arena.get(id).ok_or(PickleError::Stack {
            opcode: "(internal)",
            problem: "a value is missing",
            offset: self.r.offset(),
        })
    }

    fn slot_mut(&mut self, id: Id) -> Result<&mut Slot<'a>, PickleError> {
        let offset = self.r.offset();
        self.arena.get_mut(id).ok_or(PickleError::Stack {
            opcode: "(internal)",
            problem: "a value is missing",
            offset,
        })
    }

    fn check_stack(&self, opcode: &'static str, offset: usize) -> Result<(), PickleError> {
        let used = self.stack.len() + self.marks.len();
        if used >= self.limits.max_stack {
            return Err(PickleError::ExceedsLimit {
                opcode,
                field: "stack entries",
                value: used as u64 + 1,
                limit: self.limits.max_stack as u64,
                offset,
            });
        }
        Ok(())
    }

    fn push(&mut self, id: Id, opcode: &'static str, offset: usize) -> Result<(), PickleError> {
        self.check_stack(opcode, offset)?;
        self.stack.push(id);
        Ok(())
    }

    /// Adds a value to the arena and returns its id.
    fn new_node(
        &mut self,
        node: Node<'a>,
        depth: usize,
        opcode: &'static str,
        offset: usize,
    ) -> Result<Id, PickleError> {
        if self.arena.len() >= self.limits.max_values {
            return Err(PickleError::ExceedsLimit {
                opcode,
                field: "values",
                value: self.arena.len() as u64 + 1,
                limit: self.limits.max_values as u64,
                offset,
            });
        }
        self.check_depth(depth, opcode, offset)?;
        self.arena.push(Slot {
            node,
            offset,
            depth,
            frozen: false,
            memoized: false,
        });
        Ok(self.arena.len() - 1)
    }

    fn check_depth(
        &self,
        depth: usize,
        opcode: &'static str,
        offset: usize,
    ) -> Result<(), PickleError> {
        if depth > self.max_depth {
            return Err(PickleError::ExceedsLimit {
                opcode,
                field: "nesting depth",
                value: depth as u64,
                limit: self.max_depth as u64,
                offset,
            });
        }
        Ok(())
    }

    fn leaf(&mut self, node: Node<'a>, offset: usize) -> Result<(), PickleError> {
        let opcode = self.opcode;
        // Check the stack first, so that a flood of pushes fails before it fills the arena.
        self.check_stack(opcode, offset)?;
        let id = self.new_node(node, 1, opcode, offset)?;
        self.push(id, opcode, offset)
    }

    fn pop(&mut self, opcode: &'static str, offset: usize) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(PickleError::Stack {
                opcode,
                problem: if self.stack.len() == floor && !self.marks.is_empty() {
                    "pops past a MARK"
                } else {
                    "the stack is empty"
                },
                offset,
            });
        }
        self.stack.pop().ok_or(PickleError::Stack {
            opcode,
            problem: "the stack is empty",
            offset,
        })
    }

    fn top(&self, opcode: &'static str, offset: usize) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&id) if self.stack.len() > floor => Ok(id),
            _ => Err(PickleError::Stack {
                opcode,
                problem: "the stack is empty",
                offset,
            }),
        }
    }

    fn pop_mark(&mut self, opcode: &'static str, offset: usize) -> Result<Vec<Id>, PickleError> {
        let mark = self.marks.pop().ok_or(PickleError::Stack {
            opcode,
            problem: "no MARK on the stack",
            offset,
        })?;
        if mark > self.stack.len() {
            return Err(PickleError::Stack {
                opcode,
                problem: "no MARK on the stack",
                offset,
            });
        }
        Ok(self.stack.split_off(mark))
    }

    /// Refuses a class where a value is needed.
    fn value_only(&self, id: Id, opcode: &'static str, offset: usize) -> Result<(), PickleError> {
        if let Node::Global(_) = self.slot(id)?.node {
            return Err(PickleError::WrongType {
                opcode,
                expected: "a value",
                found: "a class",
                offset,
            });
        }
        Ok(())
    }

    /// Makes `id` a child of `parent` (another value): checks it is a value, not the
    /// parent itself, freezes it, and returns its depth.
    fn adopt(
        &mut self,
        parent: Id,
        id: Id,
        opcode: &'static str,
        offset: usize,
    ) -> Result<usize, PickleError> {
        self.value_only(id, opcode, offset)?;
        if id == parent {
            return Err(PickleError::Cycle { opcode, offset });
        }
        let slot = self.slot_mut(id)?;
        slot.frozen = true;
        Ok(slot.depth)
    }

    fn check_items(
        &self,
        count: usize,
        opcode: &'static str,
        offset: usize,
    ) -> Result<(), PickleError> {
        if count > self.limits.max_items {
            return Err(PickleError::ExceedsLimit {
                opcode,
                field: "items in one container",
                value: count as u64,
                limit: self.limits.max_items as u64,
                offset,
            });
        }
        Ok(())
    }

    // -- scalars ---------------------------------------------------------------------

    fn long(&mut self, opcode: &'static str, len: u64, offset: usize) -> Result<(), PickleError> {
        if len > 8 {
            return Err(PickleError::IntTooLarge {
                opcode,
                len,
                offset,
            });
        }
        let raw = self.r.take("LONG bytes", usize_from(len))?;
        // Little-endian two's complement, sign-extended from the last byte.
        let negative = raw.last().is_some_and(|&b| b & 0x80 != 0);
        let mut le = if negative { [0xFFu8; 8] } else { [0u8; 8] };
        for (to, from) in le.iter_mut().zip(raw) {
            *to = *from;
        }
        self.leaf(Node::Int(i64::from_le_bytes(le)), offset)
    }

    /// Checks a length against the limit and then against the input, and takes the bytes.
    fn counted(
        &mut self,
        opcode: &'static str,
        len: u64,
        offset: usize,
    ) -> Result<&'a [u8], PickleError> {
        if len > self.limits.max_string_len {
            return Err(PickleError::ExceedsLimit {
                opcode,
                field: "length",
                value: len,
                limit: self.limits.max_string_len,
                offset,
            });
        }
        if usize_from(len) > self.r.remaining() {
            return Err(PickleError::ExceedsInput {
                opcode,
                value: len,
                remaining: self.r.remaining(),
                offset,
            });
        }
        Ok(self.r.take(opcode, usize_from(len))?)
    }

    fn string(&mut self, opcode: &'static str, len: u64, offset: usize) -> Result<(), PickleError> {
        let raw = self.counted(opcode, len, offset)?;
        let text =
            std::str::from_utf8(raw).map_err(|_| PickleError::InvalidUtf8 { opcode, offset })?;
        self.leaf(Node::Str(text), offset)
    }

    fn bytes(&mut self, opcode: &'static str, len: u64, offset: usize) -> Result<(), PickleError> {
        let raw = self.counted(opcode, len, offset)?;
        self.leaf(Node::Bytes(Cow::Borrowed(raw)), offset)
    }

    /// One `\n`-terminated line of a GLOBAL opcode.
    fn line(&mut self, field: &'static str) -> Result<&'a str, PickleError> {
        let offset = self.r.offset();
        let rest = self.r.rest();
        let window = rest
            .get(..rest.len().min(MAX_GLOBAL_LINE + 1))
            .unwrap_or_default();
        let Some(end) = window.iter().position(|&b| b == b'\n') else {
            return Err(if window.len() > MAX_GLOBAL_LINE {
                PickleError::ExceedsLimit {
                    opcode: "GLOBAL",
                    field,
                    value: window.len() as u64,
                    limit: MAX_GLOBAL_LINE as u64,
                    offset,
                }
            } else {
                PickleError::Truncated {
                    field,
                    offset,
                    needed: window.len() + 1,
                    available: window.len(),
                }
            });
        };
        let raw = self.r.take(field, end)?;
        self.r.take(field, 1)?;
        std::str::from_utf8(raw).map_err(|_| PickleError::InvalidUtf8 {
            opcode: "GLOBAL",
            offset,
        })
    }

    fn str_at(&self, id: Id, opcode: &'static str, offset: usize) -> Result<&'a str, PickleError> {
        match self.slot(id)?.node {
            Node::Str(s) => Ok(s),
            ref other => Err(PickleError::WrongType {
                opcode,
                expected: "a str",
                found: other.type_name(),
                offset,
            }),
        }
    }

    // -- containers ------------------------------------------------------------------

    fn tuple_n(
        &mut self,
        opcode: &'static str,
        n: usize,
        offset: usize,
    ) -> Result<(), PickleError> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.pop(opcode, offset)?);
        }
        items.reverse();
        self.tuple(opcode, items, offset)
    }

    fn tuple(
        &mut self,
        opcode: &'static str,
        items: Vec<Id>,
        offset: usize,
    ) -> Result<(), PickleError> {
        self.check_items(items.len(), opcode, offset)?;
        let mut depth = 0;
        // The tuple is not in the arena yet, so no item can be it.
        for &item in &items {
            depth = depth.max(self.adopt(usize::MAX, item, opcode, offset)?);
        }
        let id = self.new_node(Node::Tuple(items), depth + 1, opcode, offset)?;
        self.push(id, opcode, offset)
    }

    /// A container below the items just popped, checked to be open for change.
    fn target(&self, opcode: &'static str, offset: usize) -> Result<Id, PickleError> {
        let id = self.top(opcode, offset)?;
        if self.slot(id)?.frozen {
            return Err(PickleError::Frozen { opcode, offset });
        }
        Ok(id)
    }

    fn append(
        &mut self,
        opcode: &'static str,
        items: Vec<Id>,
        offset: usize,
    ) -> Result<(), PickleError> {
        let list = self.target(opcode, offset)?;
        let (len, mut depth) = match &self.slot(list)?.node {
            Node::List(existing) => (existing.len(), self.slot(list)?.depth),
            other => {
                return Err(PickleError::WrongType {
                    opcode,
                    expected: "a list",
                    found: other.type_name(),
                    offset,
                })
            }
        };
        self.check_items(len.saturating_add(items.len()), opcode, offset)?;
        for &item in &items {
            depth = depth.max(self.adopt(list, item, opcode, offset)? + 1);
        }
        self.check_depth(depth, opcode, offset)?;
        let slot = self.slot_mut(list)?;
        slot.depth = depth;
        if let Node::List(existing) = &mut slot.node {
            existing.extend(items);
        }
        Ok(())
    }

    fn set_items(
        &mut self,
        opcode: &'static str,
        items: Vec<Id>,
        offset: usize,
    ) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(PickleError::Stack {
                opcode,
                problem: "an odd number of values after the MARK (keys and values come in pairs)",
                offset,
            });
        }
        let dict = self.target(opcode, offset)?;
        let (len, mut depth) = match &self.slot(dict)?.node {
            Node::Dict(existing) => (existing.len(), self.slot(dict)?.depth),
            other => {
                return Err(PickleError::WrongType {
                    opcode,
                    expected: "a dict",
                    found: other.type_name(),
                    offset,
                })
            }
        };
        self.check_items(len.saturating_add(items.len() / 2), opcode, offset)?;
        let mut pairs = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks_exact(2) {
            let &[key, value] = pair else { continue };
            match self.slot(key)?.node {
                Node::Int(_) | Node::Str(_) => {}
                ref other => {
                    return Err(PickleError::WrongType {
                        opcode,
                        expected: "an int or str dict key",
                        found: other.type_name(),
                        offset,
                    })
                }
            }
            self.adopt(dict, key, opcode, offset)?;
            depth = depth.max(self.adopt(dict, value, opcode, offset)? + 1);
            pairs.push((key, value));
        }
        self.check_depth(depth, opcode, offset)?;
        let slot = self.slot_mut(dict)?;
        slot.depth = depth;
        if let Node::Dict(existing) = &mut slot.node {
            existing.extend(pairs);
        }
        Ok(())
    }

    // -- memo --------------------------------------------------------------------------

    fn put(&mut self, opcode: &'static str, index: u64, offset: usize) -> Result<(), PickleError> {
        let memo_error = |problem| PickleError::Memo {
            opcode,
            index,
            problem,
            offset,
        };
        if usize_from(index) >= self.limits.max_memo {
            return Err(memo_error(MemoProblem::OverLimit {
                limit: self.limits.max_memo,
            }));
        }
        if usize_from(index) != self.memo.len() {
            return Err(memo_error(MemoProblem::NotNext {
                next: self.memo.len(),
            }));
        }
        let id = self.top(opcode, offset)?;
        let slot = self.slot_mut(id)?;
        if slot.memoized {
            return Err(memo_error(MemoProblem::Again));
        }
        slot.memoized = true;
        self.memo.push(id);
        Ok(())
    }

    fn get(&mut self, opcode: &'static str, index: u64, offset: usize) -> Result<(), PickleError> {
        let id = self
            .memo
            .get(usize_from(index))
            .copied()
            .ok_or(PickleError::Memo {
                opcode,
                index,
                problem: MemoProblem::Unset,
                offset,
            })?;
        self.push(id, opcode, offset)
    }

    // -- globals and calls -----------------------------------------------------------

    fn global(
        &mut self,
        opcode: &'static str,
        module: &str,
        name: &str,
        offset: usize,
    ) -> Result<(), PickleError> {
        let class = allowed_global(module, name).ok_or_else(|| PickleError::ForbiddenGlobal {
            opcode,
            module: shorten(module),
            name: shorten(name),
            offset,
        })?;
        self.check_stack(opcode, offset)?;
        let id = self.new_node(Node::Global(class), 1, opcode, offset)?;
        self.push(id, opcode, offset)
    }

    fn callable(
        &self,
        id: Id,
        opcode: &'static str,
        offset: usize,
    ) -> Result<&'static Class, PickleError> {
        match self.slot(id)?.node {
            Node::Global(class) => Ok(class),
            ref other => Err(PickleError::BadCall {
                opcode,
                callable: other.type_name().to_owned(),
                problem: "is not a class and cannot be called",
                offset,
            }),
        }
    }

    fn tuple_items(&self, id: Id) -> Result<Option<&[Id]>, PickleError> {
        Ok(match &self.slot(id)?.node {
            Node::Tuple(items) => Some(items),
            _ => None,
        })
    }

    fn reduce(&mut self, callable: Id, args: Id, offset: usize) -> Result<(), PickleError> {
        let opcode = "REDUCE";
        let class = self.callable(callable, opcode, offset)?;
        let bad = |problem| PickleError::BadCall {
            opcode,
            callable: class.to_string(),
            problem,
            offset,
        };
        let items = self.tuple_items(args)?.unwrap_or_default().to_vec();
        let nodes: Vec<&Node<'a>> = items
            .iter()
            .map(|&id| self.slot(id).map(|s| &s.node))
            .collect::<Result<_, _>>()?;
        let node = match class.kind {
            ClassKind::NdArray => {
                if !matches!(nodes.as_slice(), [Node::None]) {
                    return Err(bad(
                        "is only called with (None,), as NDArray.__reduce__ does",
                    ));
                }
                let depth = self.adopt(usize::MAX, args, opcode, offset)? + 1;
                let id = self.new_node(
                    Node::Object {
                        class,
                        args,
                        state: None,
                    },
                    depth,
                    opcode,
                    offset,
                )?;
                return self.push(id, opcode, offset);
            }
            ClassKind::ByteArray => match nodes.as_slice() {
                [Node::Bytes(Cow::Borrowed(raw))] => Node::Bytes(Cow::Borrowed(*raw)),
                [Node::Bytes(Cow::Owned(raw))] => {
                    let raw = raw.clone();
                    self.spend(raw.len(), opcode, offset)?;
                    Node::Bytes(Cow::Owned(raw))
                }
                _ => return Err(bad("is only called with (bytes,)")),
            },
            ClassKind::CodecsEncode => match nodes.as_slice() {
                [Node::Str(text), Node::Str("latin1")] => {
                    let text = *text;
                    let mut raw = Vec::new();
                    for ch in text.chars() {
                        match u8::try_from(u32::from(ch)) {
                            Ok(b) => raw.push(b),
                            Err(_) => {
                                return Err(bad("got a character beyond latin-1"));
                            }
                        }
                    }
                    self.spend(raw.len(), opcode, offset)?;
                    Node::Bytes(Cow::Owned(raw))
                }
                _ => return Err(bad("is only called with (str, 'latin1')")),
            },
            ClassKind::Optimizer | ClassKind::LrScheduler => {
                return Err(bad("is made with NEWOBJ, not called"));
            }
        };
        self.check_stack(opcode, offset)?;
        let id = self.new_node(node, 1, opcode, offset)?;
        self.push(id, opcode, offset)
    }

    fn spend(
        &mut self,
        len: usize,
        opcode: &'static str,
        offset: usize,
    ) -> Result<(), PickleError> {
        self.owned_budget =
            self.owned_budget
                .checked_sub(len)
                .ok_or(PickleError::ExceedsLimit {
                    opcode,
                    field: "bytes copied",
                    value: len as u64,
                    limit: self.owned_budget as u64,
                    offset,
                })?;
        Ok(())
    }

    fn newobj(&mut self, cls: Id, args: Id, offset: usize) -> Result<(), PickleError> {
        let opcode = "NEWOBJ";
        let class = self.callable(cls, opcode, offset)?;
        let bad = |problem| PickleError::BadCall {
            opcode,
            callable: class.to_string(),
            problem,
            offset,
        };
        if !matches!(class.kind, ClassKind::Optimizer | ClassKind::LrScheduler) {
            return Err(bad("is not made with NEWOBJ in MXNet's files"));
        }
        if !matches!(self.tuple_items(args)?, Some([])) {
            return Err(bad(
                "is only made with no arguments, as MXNet's pickles make it",
            ));
        }
        let depth = self.adopt(usize::MAX, args, opcode, offset)? + 1;
        let id = self.new_node(
            Node::Object {
                class,
                args,
                state: None,
            },
            depth,
            opcode,
            offset,
        )?;
        self.push(id, opcode, offset)
    }

    fn build(&mut self, object: Id, state: Id, offset: usize) -> Result<(), PickleError> {
        let bad = |problem| PickleError::BadBuild { problem, offset };
        let slot = self.slot(object)?;
        let depth = slot.depth;
        match slot.node {
            Node::Object { state: None, .. } => {}
            Node::Object { state: Some(_), .. } => {
                return Err(bad("the object's state is already set"))
            }
            _ => return Err(bad("only an object of an allowed class takes a state")),
        }
        if slot.frozen {
            return Err(PickleError::Frozen {
                opcode: "BUILD",
                offset,
            });
        }
        let depth = depth.max(self.adopt(object, state, "BUILD", offset)? + 1);
        self.check_depth(depth, "BUILD", offset)?;
        let slot = self.slot_mut(object)?;
        slot.depth = depth;
        if let Node::Object {
            state: slot_state, ..
        } = &mut slot.node
        {
            *slot_state = Some(state);
        }
        Ok(())
    }
}

/// Copies the finished arena out as a tree, bounded in values and bytes.
struct Materializer<'p, 'a> {
    arena: &'p [Slot<'a>],
    values_left: usize,
    values_limit: usize,
    owned_budget: usize,
    objects: HashSet<Id>,
}

impl<'a> Materializer<'_, 'a> {
    fn value(&mut self, id: Id) -> Result<Value<'a>, PickleError> {
        let Some(slot) = self.arena.get(id) else {
            return Err(PickleError::Stack {
                opcode: "(internal)",
                problem: "a value is missing",
                offset: 0,
            });
        };
        self.values_left = self
            .values_left
            .checked_sub(1)
            .ok_or(PickleError::ExceedsLimit {
                opcode: "STOP",
                field: "values",
                value: self.values_limit as u64 + 1,
                limit: self.values_limit as u64,
                offset: slot.offset,
            })?;
        // Depth is bounded by `max_depth` (checked as values were made), so this recursion
        // is too.
        Ok(match &slot.node {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::Int(*i),
            Node::Float(x) => Value::Float(*x),
            Node::Str(s) => Value::Str(s),
            Node::Bytes(Cow::Borrowed(raw)) => Value::Bytes(Cow::Borrowed(raw)),
            Node::Bytes(Cow::Owned(raw)) => {
                self.owned_budget =
                    self.owned_budget
                        .checked_sub(raw.len())
                        .ok_or(PickleError::ExceedsLimit {
                            opcode: "STOP",
                            field: "bytes copied",
                            value: raw.len() as u64,
                            limit: self.owned_budget as u64,
                            offset: slot.offset,
                        })?;
                Value::Bytes(Cow::Owned(raw.clone()))
            }
            Node::Tuple(items) => Value::Tuple(self.values(items)?),
            Node::List(items) => Value::List(self.values(items)?),
            Node::Dict(pairs) => {
                let mut seen: HashSet<DictKey<'a>> = HashSet::new();
                let mut out = Vec::new();
                for &(key, value) in pairs {
                    let key = self.value(key)?;
                    let dict_key = match &key {
                        Value::Int(i) => DictKey::Int(*i),
                        Value::Str(s) => DictKey::Str(s),
                        _ => DictKey::Int(0),
                    };
                    if !seen.insert(dict_key) {
                        return Err(PickleError::DuplicateKey {
                            key: match key {
                                Value::Str(s) => format!("{:?}", shorten(s)),
                                Value::Int(i) => i.to_string(),
                                other => other.type_name().to_owned(),
                            },
                            offset: slot.offset,
                        });
                    }
                    let value = self.value(value)?;
                    out.push((key, value));
                }
                Value::Dict(out)
            }
            Node::Global(_) => {
                return Err(PickleError::WrongType {
                    opcode: "STOP",
                    expected: "a value",
                    found: "a class",
                    offset: slot.offset,
                })
            }
            Node::Object { class, args, state } => {
                if !self.objects.insert(id) {
                    return Err(PickleError::SharedObject {
                        offset: slot.offset,
                    });
                }
                let args = match self.value(*args)? {
                    Value::Tuple(items) => items,
                    other => vec![other],
                };
                let state = state.map(|state| self.value(state)).transpose()?;
                Value::Object(Box::new(Object { class, args, state }))
            }
        })
    }

    fn values(&mut self, ids: &[Id]) -> Result<Vec<Value<'a>>, PickleError> {
        ids.iter().map(|&id| self.value(id)).collect()
    }
}

#[derive(PartialEq, Eq, Hash)]
enum DictKey<'a> {
    Int(i64),
    Str(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Value<'_>, PickleError> {
        read_pickle(bytes, &PickleLimits::default())
    }

    #[test]
    fn reads_plain_values() {
        let v = read(b"\x80\x04}\x94(K\x01\x8c\x01a\x94M\x00\x01G?\xf0\x00\x00\x00\x00\x00\x00u.")
            .unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (Value::Int(1), Value::Str("a")),
                (Value::Int(256), Value::Float(1.0)),
            ])
        );
        assert_eq!(read(b"\x80\x02\x8a\x01\xff.").unwrap(), Value::Int(-1));
        assert_eq!(read(b"\x80\x02\x8a\x00.").unwrap(), Value::Int(0));
        assert_eq!(
            read(b"\x80\x02\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f.").unwrap(),
            Value::Int(i64::MAX)
        );
    }

    #[test]
    fn memo_shares_without_copying_objects() {
        // (x, x) with x = 'a' is fine; an object reached twice is not.
        let v = read(b"\x80\x04\x8c\x01a\x94h\x00\x86.").unwrap();
        assert_eq!(v, Value::Tuple(vec![Value::Str("a"), Value::Str("a")]));
        let shared = b"\x80\x04\x8c\x19mxnet.optimizer.optimizer\x8c\x03SGD\x93)\x81\x94h\x00\x86.";
        assert!(matches!(
            read(shared),
            Err(PickleError::SharedObject { .. })
        ));
    }

    #[test]
    fn every_allowed_global_is_listed_once() {
        let mut seen = HashSet::new();
        for class in ALLOWED_GLOBALS {
            assert!(seen.insert((class.module, class.name)), "{class}");
            assert_eq!(allowed_global(class.module, class.name), Some(class));
        }
        assert_eq!(allowed_global("os", "system"), None);
    }

    #[test]
    fn opcode_names_follow_pickletools() {
        assert_eq!(Opcode(b'i').to_string(), "INST");
        assert_eq!(Opcode(0x93).to_string(), "STACK_GLOBAL");
        assert_eq!(Opcode(0xff).to_string(), "0xff");
    }
}
