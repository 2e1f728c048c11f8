//! The error type of `ward-graph`.

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("graph {what}: {actual} exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        actual: usize,
        limit: usize,
    },
    #[error("graph.json is not valid: {0}")]
    Json(String),
    #[error("graph format {0:?} is not \"ward-graph\"")]
    Format(String),
    #[error("graph version {found} is not supported (this build reads version {supported})")]
    Version { found: u32, supported: u32 },
    #[error("duplicate {what} name {name:?}")]
    DuplicateName { what: &'static str, name: String },
    #[error("param {param:?}: {reason}")]
    Param { param: String, reason: String },
    #[error("node {node:?} ({op}): {reason}")]
    Node {
        node: String,
        op: &'static str,
        reason: String,
    },
    #[error("output {output:?}: {reason}")]
    Output { output: String, reason: String },
    #[error("graph has no outputs")]
    NoOutputs,
    #[error("graph expects {expected} inputs, got {actual}")]
    InputCount { expected: usize, actual: usize },
    #[error("value {value:?} has no shape (a label input is not fed at inference)")]
    Unshaped { value: String },
}
