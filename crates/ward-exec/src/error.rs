//! The one error type of `ward-exec`.

use ward_graph::schema::SchemaError;
use ward_graph::GraphError;
use ward_package::PackageError;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The graph does not check, or its shapes do not infer.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The package could not be opened (verification, reading, parsing).
    #[error(transparent)]
    Package(#[from] PackageError),
    /// A request's inputs do not match the package's declared schema.
    #[error(transparent)]
    Input(#[from] SchemaError),
    /// The backend does not implement an operator or one of its attribute values.
    #[error("node {node:?} ({op}): the {backend} backend does not support {attr} = {value}")]
    Unsupported {
        backend: &'static str,
        node: String,
        op: &'static str,
        attr: &'static str,
        value: String,
    },
    /// A node could not be lowered to the engine.
    #[error("node {node:?} ({op}): {reason}")]
    Lowering {
        node: String,
        op: &'static str,
        reason: String,
    },
    /// Weights that do not fit the graph.
    #[error("weights: {reason}")]
    Weights { reason: String },
    /// The package's files disagree with each other.
    #[error("package is inconsistent: {reason}")]
    Inconsistent { reason: String },
    /// A plan was given inputs of other shapes than it was built for.
    #[error("input {index} has shape {got:?}, but the plan was built for {expected:?}")]
    InputShape {
        index: usize,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A shape given for an ONNX export that the model's declared input cannot take.
    #[error("export shape of input {input:?}: {reason}")]
    ExportShape { input: String, reason: String },
    #[error("the model takes {expected} inputs, got {actual}")]
    InputCount { expected: usize, actual: usize },
    /// Inputs checked by one package were given to another.
    #[error("inputs checked by another package were given to this one")]
    ForeignInputs,
    /// Inputs staged by one backend were given to a plan of another kind.
    #[error("inputs staged by another backend were given to this plan")]
    ForeignStaged,
    /// The engine failed at a stage (its own message follows): a bug or a limit of the
    /// engine, never a user's input.
    #[error("the engine failed to {stage}: {detail}")]
    Engine { stage: &'static str, detail: String },
    /// A thread pool for the backend could not be started.
    #[error("cannot start {threads} threads for the backend: {detail}")]
    Threads { threads: usize, detail: String },
    #[error("the plan cache is poisoned (a thread panicked while holding it)")]
    CachePoisoned,
}
