//! Limits on MXNet files, checked before any allocation they guard.
//!
//! The defaults fit every model of the census in the format reference (the largest,
//! VGG-11-BN, has a 531 MB `.params` file with 54 arrays; the largest graph, DenseNet-121,
//! has 1 034 nodes in 325 KB of JSON) with wide margins.

/// Limits for `.params` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsLimits {
    /// Most arrays in one file.
    pub max_arrays: u64,
    /// Most dimensions of one array (MXNet's own `kMaxNDim`).
    pub max_ndim: u32,
    /// Most elements of one array.
    pub max_elements: u64,
    /// Longest array name, in bytes.
    pub max_name_len: u64,
}

pub const MAX_PARAMS_ARRAYS: u64 = 100_000;
pub const MAX_NDIM: u32 = 32;
pub const MAX_ARRAY_ELEMENTS: u64 = 1 << 34;
pub const MAX_NAME_LEN: u64 = 4096;

impl Default for ParamsLimits {
    fn default() -> Self {
        ParamsLimits {
            max_arrays: MAX_PARAMS_ARRAYS,
            max_ndim: MAX_NDIM,
            max_elements: MAX_ARRAY_ELEMENTS,
            max_name_len: MAX_NAME_LEN,
        }
    }
}

/// Largest `.params` file read: as the package's weights-file limit.
pub const MAX_PARAMS_FILE_BYTES: u64 = 8 << 30;

/// Most bytes all parameters may take once densified (sparse arrays can describe far more
/// elements than their file holds); matches the package's weights-file limit.
pub const MAX_DENSE_PARAM_BYTES: u64 = 8 << 30;

/// Limits for symbol JSON files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolLimits {
    /// Largest JSON document, in bytes.
    pub max_json_bytes: usize,
    /// Deepest nesting of JSON arrays and objects (subgraphs add depth).
    pub max_json_depth: usize,
    /// Most nodes in one graph, subgraphs included.
    pub max_nodes: usize,
    /// Longest node name or attribute string, in bytes.
    pub max_name_len: usize,
    /// Most attributes on one node.
    pub max_attrs: usize,
}

pub const MAX_SYMBOL_JSON_BYTES: usize = 16 << 20;
pub const MAX_SYMBOL_JSON_DEPTH: usize = 32;
pub const MAX_SYMBOL_NODES: usize = 1_000_000;
pub const MAX_ATTRS_PER_NODE: usize = 256;

impl Default for SymbolLimits {
    fn default() -> Self {
        SymbolLimits {
            max_json_bytes: MAX_SYMBOL_JSON_BYTES,
            max_json_depth: MAX_SYMBOL_JSON_DEPTH,
            max_nodes: MAX_SYMBOL_NODES,
            max_name_len: MAX_NAME_LEN as usize,
            max_attrs: MAX_ATTRS_PER_NODE,
        }
    }
}

/// Limits for RecordIO (`.rec` + `.idx`) files and their image records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordIoLimits {
    /// Largest record once its chunks are joined, in bytes. MXNet's own cap is the 29-bit
    /// length of one chunk (512 MiB); an encoded training image is far smaller.
    pub max_record_bytes: u64,
    /// Most labels after an image record's header (`IRHeader::flag`).
    pub max_labels: u32,
    /// Most lines of an `.idx` file.
    pub max_index_entries: u64,
    /// Largest `.idx` file, in bytes (it is read whole).
    pub max_index_bytes: u64,
}

/// 64 MiB: a 4K RGB image stored as PNG is about 25 MB.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;
/// Multi-value labels (detection boxes, multi-label classes) are a few hundred floats.
pub const MAX_RECORD_LABELS: u32 = 65_536;
/// 100 million records: ImageNet-1k has 1.28 million.
pub const MAX_INDEX_ENTRIES: u64 = 100_000_000;
/// 2 GiB: 100 million lines of `key\toffset\n` at about 20 bytes each.
pub const MAX_INDEX_BYTES: u64 = 2 << 30;

impl Default for RecordIoLimits {
    fn default() -> Self {
        RecordIoLimits {
            max_record_bytes: MAX_RECORD_BYTES,
            max_labels: MAX_RECORD_LABELS,
            max_index_entries: MAX_INDEX_ENTRIES,
            max_index_bytes: MAX_INDEX_BYTES,
        }
    }
}
