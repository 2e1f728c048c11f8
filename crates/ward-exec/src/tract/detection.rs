//! ward's own kernels for MXNet's box operators (`box_nms`, `box_decode`, `box_encode`,
//! `MultiBoxDetection`, `Proposal`, `MultiProposal`), which the lowering writes as nodes
//! of ward's domain (`crate::onnx::detection`): the ward operator travels as JSON, with
//! its output shapes; tract parses the node into an op that runs the float32 kernels of
//! `ward_graph::interp::detection`, MXNet's arithmetic and order, on the plan's tensors.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::{
    tvec, Datum, DatumExt, SpecialOps, TValue, TVec, TractResult, TypedFact, TypedModel,
};
use tract_onnx::tract_hir::internal::{
    as_op, bail, check_output_arity, ensure, expand, op_as_typed_op, op_out_of_plan, EvalContext,
    EvalOp, Expansion, InferenceOp, InferenceResult, IntoTValue, Op, OutletId, ShapeFactoid,
    Solver, StaticName, TDim, Tensor, TensorProxy, TypedOp,
};
use ward_graph::interp::detection::{
    box_decode_f32, box_encode_f32, box_nms_rows, multibox_detection_f32, proposal_f32,
};
use ward_graph::ops::detection::BoxEncode;
use ward_graph::ops::Op as WardOp;

use crate::onnx::detection::WARD_OP;

/// Lets tract's ONNX parser read ward's nodes.
pub(crate) fn register(reg: &mut OnnxOpRegister) {
    reg.insert(WARD_OP, parse);
}

fn parse(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let Some(json) = attr("op").map(|a| a.s.clone()) else {
        bail!("{} has no op", node.name);
    };
    let op: WardOp = serde_json::from_slice(&json)?;
    ensure!(
        matches!(
            op,
            WardOp::BoxNms(_)
                | WardOp::BoxDecode(_)
                | WardOp::BoxEncode(_)
                | WardOp::MultiBoxDetection(_)
                | WardOp::Proposal(_)
                | WardOp::MultiProposal(_)
        ),
        "{}: ward's kernels do not run {}",
        node.name,
        op.name()
    );
    let mut shapes = Vec::new();
    for k in 0..op.num_outputs() {
        let Some(dims) = attr(&format!("shape{k}")) else {
            bail!("{} has no shape for output {k}", node.name);
        };
        shapes.push(
            dims.ints
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    let kernel = WardKernel {
        json: String::from_utf8(json)?,
        op,
        shapes,
    };
    Ok((expand(kernel), vec![]))
}

/// A ward operator run by ward's kernel; equal when their JSON is.
#[derive(Debug, Clone)]
struct WardKernel {
    json: String,
    op: WardOp,
    shapes: Vec<Vec<usize>>,
}

impl PartialEq for WardKernel {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json && self.shapes == other.shapes
    }
}

impl Eq for WardKernel {}

impl Expansion for WardKernel {
    fn name(&self) -> StaticName {
        "WardMxnetOp".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.shapes.len())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        _inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_output_arity(outputs, self.shapes.len())?;
        for (out, shape) in outputs.iter().zip(&self.shapes) {
            s.equals(&out.datum_type, f32::datum_type())?;
            let dims: TVec<TDim> = shape.iter().map(|&d| TDim::from(d)).collect();
            s.equals(&out.shape, ShapeFactoid::from(dims))?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for WardKernel {
    fn name(&self) -> StaticName {
        format!("Ward{}", self.op.name()).into()
    }

    op_as_typed_op!();
}

/// An input's shape and its float32 values.
fn read(input: &TValue) -> TractResult<(Vec<usize>, Vec<f32>)> {
    let plain = input.try_as_plain_ram()?;
    Ok((input.shape().to_vec(), plain.as_slice::<f32>()?.to_vec()))
}

fn tensor(shape: &[usize], values: Vec<f32>) -> TractResult<TValue> {
    Ok(Tensor::from_shape(shape, &values)?.into_tvalue())
}

impl EvalOp for WardKernel {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let ins = inputs.iter().map(read).collect::<TractResult<Vec<_>>>()?;
        let input = |i: usize| match ins.get(i) {
            Some(x) => Ok(x),
            None => bail!("{} has no input {i}", self.op.name()),
        };
        match &self.op {
            WardOp::BoxNms(op) => {
                let (shape, x) = input(0)?;
                let (out, _) = box_nms_rows(x, shape, op)?;
                Ok(tvec![tensor(shape, out)?])
            }
            WardOp::BoxDecode(op) => {
                let (shape, x) = input(0)?;
                let (a_shape, a) = input(1)?;
                let out = box_decode_f32(x, shape, a, a_shape, op)?;
                Ok(tvec![tensor(shape, out)?])
            }
            WardOp::BoxEncode(_) => {
                let shapes: Vec<Option<&[usize]>> =
                    ins.iter().map(|(s, _)| Some(s.as_slice())).collect();
                let (b, n, m) = BoxEncode::layout(&shapes).map_err(|e| {
                    tract_onnx::prelude::TractError::msg(format!("box_encode: {e}"))
                })?;
                let v = |i: usize| input(i).map(|(_, v)| v.as_slice());
                let (t, masks) =
                    box_encode_f32([v(0)?, v(1)?, v(2)?, v(3)?, v(4)?, v(5)?], b, n, m)?;
                let shape = [b, n, 4];
                Ok(tvec![tensor(&shape, t)?, tensor(&shape, masks)?])
            }
            WardOp::MultiBoxDetection(op) => {
                let (cs, c) = input(0)?;
                let (ls, l) = input(1)?;
                let (as_, a) = input(2)?;
                let out = multibox_detection_f32(c, l, a, [cs, ls, as_], op)?;
                let shape = [
                    cs.first().copied().unwrap_or(0),
                    cs.get(2).copied().unwrap_or(0),
                    6,
                ];
                Ok(tvec![tensor(&shape, out)?])
            }
            WardOp::Proposal(_) | WardOp::MultiProposal(_) => {
                let (op, multi) = match &self.op {
                    WardOp::MultiProposal(m) => (&m.0, true),
                    WardOp::Proposal(p) => (p, false),
                    other => bail!("ward's kernels do not run {}", other.name()),
                };
                let (cs, c) = input(0)?;
                let (bs, b) = input(1)?;
                let (is, i) = input(2)?;
                let (rois, scores) = proposal_f32(c, b, i, [cs, bs, is], op, multi)?;
                let rows = scores.len();
                let mut out = tvec![tensor(&[rows, 5], rois)?];
                if op.output_score {
                    out.push(tensor(&[rows, 1], scores)?);
                }
                Ok(out)
            }
            other => bail!("ward's kernels do not run {}", other.name()),
        }
    }
}

impl TypedOp for WardKernel {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(self
            .shapes
            .iter()
            .map(|s| f32::fact(s.as_slice()))
            .collect())
    }

    as_op!();
}
