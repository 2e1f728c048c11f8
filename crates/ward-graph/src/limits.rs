//! The graph's size limits, checked wherever a graph is read or built, so that no
//! count from outside sizes an allocation unchecked.

/// Largest `graph.json` accepted, in bytes.
pub const MAX_GRAPH_JSON_BYTES: usize = 64 << 20;
/// Most nodes in one graph.
pub const MAX_GRAPH_NODES: usize = 1_000_000;
/// Most dimensions of any tensor.
pub const MAX_RANK: usize = 32;
/// Most outputs of one split (MXNet's SliceChannel).
pub const MAX_SPLIT_OUTPUTS: usize = 4096;
/// Most layers of one fused RNN.
pub const MAX_RNN_LAYERS: usize = 256;
