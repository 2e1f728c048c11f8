//! Operators, by family: one module per family holds, for each of its operators, the
//! attributes (a struct with explicit defaults), their validation and shape inference.
//! The same operator's lowering lives in `ward-exec`'s family module of the same name,
//! its reference semantics in [`crate::interp`], and (with training) its gradient rule
//! next to its shape rule here.
//!
//! Adding an operator: its struct and [`OpDef`] in a family module, one line in the
//! registry (`ops!` below), its lowering in `ward-exec`, and the importer's mapping.
//!
//! Shapes come from untrusted graphs: every rule checks what it reads (no indexing that
//! can panic) and all arithmetic on dims is checked.

#![warn(clippy::indexing_slicing)]

use serde::{Deserialize, Serialize};
use ward_core::DType;

pub mod activation;
pub mod anchor;
pub mod conv;
pub mod detection;
pub mod dropout;
pub mod elementwise;
pub mod float;
pub mod index;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod order;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod rnn;
pub mod roi;
pub mod sequence;
pub mod shape;

/// A shape: one length per axis.
pub type Shape = Vec<usize>;

/// A rule's answer: what is wrong is said in words; the caller names the node.
pub type R<T> = Result<T, String>;

/// What every operator says about itself.
pub trait OpDef {
    /// The allowed number of inputs, as an inclusive range.
    fn arity(&self) -> (usize, usize);

    /// How many outputs the node has.
    fn num_outputs(&self) -> usize {
        1
    }

    /// Checks the attributes for values no graph may hold (zero kernels, counts past the
    /// limits). Importers call it before using the attributes.
    fn validate(&self) -> R<()> {
        Ok(())
    }

    /// The shapes of the outputs for the shapes of the inputs; checks the inputs against
    /// each other and the attributes (a convolution's weight against its data, ...).
    /// `ins` has as many entries as the node has inputs (the arity was checked); a label
    /// input that is not fed (at inference) has no shape and is `None`.
    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>>;

    /// The element types of the outputs for those of the inputs, as MXNet's type inference
    /// gives them (see [`crate::dtypes`]: every float is computed in float32). The default
    /// is an operator that computes in floating point: any input is read as float32 and
    /// every output is float32.
    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        let _ = ins;
        Ok(vec![DType::F32; self.num_outputs()])
    }
}

/// The registry: every operator, its JSON name (the `type` of a node in `graph.json`)
/// and its struct.
macro_rules! ops {
    ($($variant:ident($ty:ty) = $name:literal,)*) => {
        /// Every operator ward executes, with its attributes made explicit.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum Op {
            $(#[serde(rename = $name)] $variant($ty),)*
        }

        impl Op {
            /// The operator's name in messages and in `graph.json`.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Op::$variant(_) => $name,)*
                }
            }

            /// What the operator says about itself.
            pub fn def(&self) -> &dyn OpDef {
                match self {
                    $(Op::$variant(op) => op,)*
                }
            }
        }

        $(
            impl From<$ty> for Op {
                fn from(op: $ty) -> Op {
                    Op::$variant(op)
                }
            }
        )*
    };
}

ops! {
    Conv(conv::Conv) = "conv",
    Deconv(conv::Deconv) = "deconv",
    DeformableConv(conv::DeformableConv) = "deformable_conv",
    Dense(linear::Dense) = "dense",
    Pool(pool::Pool) = "pool",
    BatchNorm(norm::BatchNorm) = "batch_norm",
    InstanceNorm(norm::InstanceNorm) = "instance_norm",
    LayerNorm(norm::LayerNorm) = "layer_norm",
    GroupNorm(norm::GroupNorm) = "group_norm",
    L2Normalization(norm::L2Normalization) = "l2_normalization",
    Activation(activation::Activation) = "activation",
    LeakyRelu(activation::LeakyRelu) = "leaky_relu",
    Softmax(activation::Softmax) = "softmax",
    Dropout(dropout::Dropout) = "dropout",
    SoftmaxOutput(loss::SoftmaxOutput) = "softmax_output",
    RegressionOutput(loss::RegressionOutput) = "regression_output",
    MakeLoss(loss::MakeLoss) = "make_loss",
    BlockGrad(loss::BlockGrad) = "block_grad",
    Reshape(shape::Reshape) = "reshape",
    Flatten(shape::Flatten) = "flatten",
    Concat(shape::Concat) = "concat",
    SwapAxes(shape::SwapAxes) = "swap_axes",
    ExpandDims(shape::ExpandDims) = "expand_dims",
    Squeeze(shape::Squeeze) = "squeeze",
    Transpose(shape::Transpose) = "transpose",
    Slice(shape::Slice) = "slice",
    SliceAxis(shape::SliceAxis) = "slice_axis",
    Split(shape::Split) = "split",
    Stack(shape::Stack) = "stack",
    Pad(shape::Pad) = "pad",
    Fill(shape::Fill) = "fill",
    Arange(shape::Arange) = "arange",
    OnesLike(shape::OnesLike) = "ones_like",
    ShapeArray(shape::ShapeArray) = "shape_array",
    SizeArray(shape::SizeArray) = "size_array",
    Binary(elementwise::Binary) = "binary",
    AddN(elementwise::AddN) = "add_n",
    Scalar(elementwise::Scalar) = "scalar",
    Unary(elementwise::Unary) = "unary",
    Clip(elementwise::Clip) = "clip",
    Cast(elementwise::Cast) = "cast",
    Where(elementwise::Where) = "where",
    Mean(reduce::Mean) = "mean",
    Reduce(reduce::Reduce) = "reduce",
    ArgReduce(reduce::ArgReduce) = "arg_reduce",
    Embedding(index::Embedding) = "embedding",
    SequenceLast(sequence::SequenceLast) = "sequence_last",
    Rnn(rnn::Rnn) = "rnn",
    AdaptiveAvgPool(pool::AdaptiveAvgPool) = "adaptive_avg_pool",
    BilinearResize(resize::BilinearResize) = "bilinear_resize",
    UpSampling(resize::UpSampling) = "upsampling",
    Tile(shape::Tile) = "tile",
    Repeat(shape::Repeat) = "repeat",
    Reverse(shape::Reverse) = "reverse",
    BroadcastTo(shape::BroadcastTo) = "broadcast_to",
    Take(index::Take) = "take",
    Pick(index::Pick) = "pick",
    GatherNd(index::GatherNd) = "gather_nd",
    OneHot(index::OneHot) = "one_hot",
    Topk(order::Topk) = "topk",
    BatchDot(linear::BatchDot) = "batch_dot",
    InterleavedMatmul(linear::InterleavedMatmul) = "interleaved_matmul",
    SequenceMask(sequence::SequenceMask) = "sequence_mask",
    SequenceReverse(sequence::SequenceReverse) = "sequence_reverse",
    BoxNms(detection::BoxNms) = "box_nms",
    BoxDecode(detection::BoxDecode) = "box_decode",
    BoxEncode(detection::BoxEncode) = "box_encode",
    MultiBoxDetection(detection::MultiBoxDetection) = "multibox_detection",
    Proposal(detection::Proposal) = "proposal",
    MultiProposal(detection::MultiProposal) = "multi_proposal",
    RoiAlign(roi::RoiAlign) = "roi_align",
    RoiPool(roi::RoiPool) = "roi_pool",
    MultiBoxPrior(anchor::MultiBoxPrior) = "multibox_prior",
}

impl Op {
    /// The allowed number of inputs, as an inclusive range.
    pub fn arity(&self) -> (usize, usize) {
        self.def().arity()
    }

    /// How many outputs the node has.
    pub fn num_outputs(&self) -> usize {
        self.def().num_outputs()
    }
}

// ---- helpers shared by the families' rules ----

/// The shape of input `i`, which must be fed.
pub(crate) fn input<'a>(ins: &[Option<&'a [usize]>], i: usize, what: &str) -> R<&'a [usize]> {
    ins.get(i)
        .copied()
        .flatten()
        .ok_or_else(|| format!("{what} (input {i}) is missing"))
}

/// Dim `axis` of `shape`, named `what` in the error.
pub(crate) fn dim(shape: &[usize], axis: usize, what: &str) -> R<usize> {
    shape
        .get(axis)
        .copied()
        .ok_or_else(|| format!("{what} {shape:?} has no dim {axis}"))
}

/// The number of elements of `dims`, or an error on overflow.
pub(crate) fn product(dims: &[usize]) -> R<usize> {
    ward_core::tensor::element_count(dims).ok_or_else(|| format!("dims {dims:?} overflow"))
}

/// Resolves a possibly negative axis against `rank`.
pub fn resolve_axis(axis: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

pub(crate) fn expect_shape(what: &str, actual: &[usize], expected: &[usize]) -> R<()> {
    if actual != expected {
        return Err(format!(
            "{what} has shape {actual:?}, expected {expected:?}"
        ));
    }
    Ok(())
}

pub(crate) fn expect_rank(what: &str, shape: &[usize], rank: usize) -> R<()> {
    if shape.len() != rank {
        return Err(format!(
            "{what} has rank {} ({shape:?}), expected {rank}",
            shape.len()
        ));
    }
    Ok(())
}

/// The shape all inputs share.
pub(crate) fn same_shapes(ins: &[Option<&[usize]>]) -> R<Shape> {
    let first = input(ins, 0, "data")?;
    for i in 1..ins.len() {
        let s = input(ins, i, "data")?;
        if s != first {
            return Err(format!("input {i} has shape {s:?}, input 0 has {first:?}"));
        }
    }
    Ok(first.to_vec())
}

/// NumPy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> R<Shape> {
    let rank = a.len().max(b.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    pad(a)
        .into_iter()
        .zip(pad(b))
        .map(|(x, y)| match (x, y) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// Checks a window's attributes: 1 to 3 dims, each list as long as the kernel, positive
/// kernel, stride and dilation.
pub(crate) fn window_attrs(
    kernel: &[usize],
    stride: &[usize],
    pad: &[usize],
    dilation: Option<&[usize]>,
) -> R<()> {
    let n = kernel.len();
    if n == 0 || n > 3 {
        return Err(format!("kernel {kernel:?} must have 1 to 3 dims"));
    }
    if stride.len() != n || pad.len() != n || dilation.is_some_and(|d| d.len() != n) {
        return Err(format!(
            "kernel {kernel:?}, stride {stride:?}, pad {pad:?} and dilation differ in length"
        ));
    }
    if kernel.contains(&0) || stride.contains(&0) || dilation.is_some_and(|d| d.contains(&0)) {
        return Err(format!(
            "kernel {kernel:?}, stride {stride:?} and dilation must be positive"
        ));
    }
    Ok(())
}

/// The extent of a dilated kernel, d·(k − 1) + 1.
pub(crate) fn effective_kernel(kernel: usize, dilation: usize) -> R<usize> {
    kernel
        .checked_sub(1)
        .and_then(|k| k.checked_mul(dilation))
        .and_then(|k| k.checked_add(1))
        .ok_or_else(|| format!("kernel {kernel} with dilation {dilation} overflows"))
}

/// Twice a padding: before and after.
pub(crate) fn double(pad: usize) -> R<usize> {
    pad.checked_mul(2)
        .ok_or_else(|| format!("pad {pad} overflows"))
}

/// Output length of a sliding window, or an error when the window does not fit.
pub(crate) fn window_out(
    x: usize,
    k_eff: usize,
    pad_total: usize,
    stride: usize,
    ceil: bool,
) -> R<usize> {
    let padded = x
        .checked_add(pad_total)
        .ok_or_else(|| format!("padded size of {x} overflows"))?;
    if padded < k_eff {
        return Err(format!(
            "window {k_eff} is larger than the padded input {padded}"
        ));
    }
    let span = padded - k_eff;
    Ok(if ceil {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1)
}

/// Each element of `values` positive.
pub(crate) fn positive(what: &str, values: &[usize]) -> R<()> {
    if values.contains(&0) {
        return Err(format!("{what} {values:?} has a zero"));
    }
    Ok(())
}

/// Every output in the element type all of `ins` share: MXNet refuses operands of
/// different types (`broadcast_add` of int32 and float32, a `Concat` of both).
pub(crate) fn same_dtype(ins: &[DType], outputs: usize) -> R<Vec<DType>> {
    let first = data_dtype(ins, 1)?;
    let first = first.first().copied().unwrap_or(DType::F32);
    for (i, &dt) in ins.iter().enumerate().skip(1) {
        if dt != first {
            return Err(format!(
                "input {i} is {dt} and input 0 is {first}: MXNet refuses operands of different types (cast one first)"
            ));
        }
    }
    Ok(vec![first; outputs])
}

/// Every output in the element type of the data (input 0); the other inputs (indices,
/// lengths, conditions) may have any type.
pub(crate) fn data_dtype(ins: &[DType], outputs: usize) -> R<Vec<DType>> {
    let first = ins
        .first()
        .copied()
        .ok_or_else(|| "data (input 0) is missing".to_string())?;
    Ok(vec![first; outputs])
}

/// The element-wise result: the first input's shape.
pub(crate) fn same_as_data(ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
    Ok(vec![input(ins, 0, "data")?.to_vec()])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert_eq!(broadcast(&[], &[4, 1]).unwrap(), vec![4, 1]);
        assert!(broadcast(&[2, 3], &[3, 2]).is_err());
    }

    #[test]
    fn windows_use_floor_or_ceil() {
        assert_eq!(window_out(7, 2, 0, 2, false).unwrap(), 3);
        assert_eq!(window_out(7, 2, 0, 2, true).unwrap(), 4);
        assert!(window_out(1, 3, 0, 1, false).is_err());
    }

    #[test]
    fn every_operator_round_trips_through_json_with_its_name() {
        let ops: Vec<Op> = vec![
            shape::Flatten {}.into(),
            elementwise::AddN {}.into(),
            dropout::Dropout::default().into(),
            loss::BlockGrad {}.into(),
            order::Topk {
                axis: None,
                k: Some(3),
                ret: order::TopkReturn::Both,
                ascend: true,
            }
            .into(),
            roi::RoiAlign {
                pooled_height: 7,
                pooled_width: 5,
                spatial_scale: 0.0625,
                sample_ratio: None,
                position_sensitive: true,
                aligned: true,
            }
            .into(),
            roi::RoiPool {
                pooled_height: 2,
                pooled_width: 3,
                spatial_scale: 0.3,
            }
            .into(),
            conv::DeformableConv {
                kernel: vec![3, 3],
                stride: vec![1, 2],
                dilation: vec![2, 1],
                pad: vec![1, 0],
                groups: 2,
                deformable_groups: 4,
                modulated: true,
                bias: false,
                im2col_step: Some(64),
            }
            .into(),
            detection::MultiBoxDetection {
                nms_topk: Some(400),
                ..Default::default()
            }
            .into(),
            detection::Proposal {
                output_score: true,
                ..Default::default()
            }
            .into(),
            shape::Reverse { axes: vec![0, 2] }.into(),
            detection::MultiProposal(detection::Proposal {
                rpn_pre_nms_top_n: None,
                ..Default::default()
            })
            .into(),
            anchor::MultiBoxPrior {
                sizes: vec![0.2, 0.272],
                ratios: vec![1.0, 2.0, 0.5],
                clip: true,
                steps: [-1.0, -1.0],
                offsets: [0.5, 0.25],
            }
            .into(),
        ];
        for op in ops {
            let json = serde_json::to_value(&op).unwrap();
            assert_eq!(json["type"], op.name());
            let back: Op = serde_json::from_value(json).unwrap();
            assert_eq!(back, op);
        }
        // Unknown attributes are refused, inside every operator.
        let err = serde_json::from_str::<Op>(r#"{"type": "flatten", "axis": 1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err =
            serde_json::from_str::<Op>(r#"{"type": "concat", "axis": 1, "x": 1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
