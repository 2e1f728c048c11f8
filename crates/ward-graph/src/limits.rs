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
/// Largest spatial output size (height or width) of a resize, an upsampling or an
/// adaptive pooling. MXNet 1.9.1's `BilinearResize2D` computes its output size in a
/// 16-bit integer, so no MXNet model holds a larger one there; the other two use the same
/// bound so that no attribute sizes a plane past 32767².
pub const MAX_RESIZE_DIM: usize = 32_767;
/// Largest `UpSampling` scale (an output plane is at most [`MAX_RESIZE_DIM`] wide anyway).
pub const MAX_UPSAMPLING_SCALE: usize = 1024;
/// Largest count an attribute may repeat a tensor by: a `tile` rep, a `repeat` count, a
/// broadcast size. Any larger count alone would make a value past the element cap
/// ([`crate::shape::MAX_VALUE_ELEMENTS`]), so it is refused from the attribute, before
/// shape inference multiplies it into anything.
pub const MAX_REPEAT: usize = crate::shape::MAX_VALUE_ELEMENTS;
/// Largest `one_hot` depth: the output has `depth` values per index, so the attribute
/// alone sizes it; the element cap still bounds the whole output.
pub const MAX_ONE_HOT_DEPTH: usize = 1 << 24;

/// Longest axis `topk` (and `argsort`) may give indices along: ward's indices are float32,
/// which holds every integer up to 2^24 and no longer run of them (MXNet rounds past it).
pub const MAX_ORDER_INDEX_AXIS: usize = 1 << 24;

/// Most boxes one `box_nms` takes, over all its batches: MXNet 1.9.1 counts them in a
/// 32-bit int and records each kept box's row as a float32, which holds every row up to
/// 2^24 exactly; the suppression compares boxes pairwise, so the count also bounds its time
/// (MXNet's `topk` bounds it further). The same bound holds `MultiBoxDetection`'s anchors
/// over all batches and its `nms_topk`, and `Proposal`'s anchors (MXNet orders them by an
/// index held as a float32), its `rpn_pre_nms_top_n` and its output rows
/// (`rpn_post_nms_top_n`, per image for `MultiProposal`), each checked before anything is
/// allocated.
pub const MAX_NMS_BOXES: usize = 1 << 24;

/// Most bilinear samples one roi of `ROIAlign` may take (its bins times each bin's grid),
/// and most bins of a `pooled_size`. MXNet sizes a buffer of this many entries per roi and
/// loops over them; its adaptive grid grows with the roi's size, which is data, so a roi
/// past this is refused where it is read (a roi spanning a 1000 × 1000 feature map at a
/// 7 × 7 pooled size takes about 10^6).
pub const MAX_ROI_SAMPLES: usize = 1 << 22;

/// Most anchors per cell of `MultiBoxPrior` (its sizes plus its ratios less one); the
/// element cap still bounds the whole output.
pub const MAX_ANCHORS_PER_CELL: usize = 1024;
