//! MXNet's deformable convolutions (DCNv1 and DCNv2) as a tract op: the lowering writes
//! each as a node of ward's domain (`crate::onnx::deform`), which [`register`] teaches
//! tract's ONNX reader. The op runs `ward_graph::interp::deform::deformable_conv_f32`, the
//! computation the reference interpreter runs: MXNet 1.9.1's CPU sampling in float32 (its
//! border rules and its order of operations), then each group's column matrix times its
//! weight in float32, the bias added after.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::{tvec, Datum, TValue, TVec, TractResult, TypedFact, TypedModel};
use tract_onnx::tract_core::internal::{
    as_op, bail, ensure, op_as_typed_op, op_out_of_plan, EvalContext, EvalOp, IntoTValue, Op,
    OutletId, StaticName, Tensor, TypedOp,
};
use tract_onnx::tract_core::model::SpecialOps;
use tract_onnx::tract_hir::internal::{
    check_input_arity, check_output_arity, expand, Expansion, InferenceOp, InferenceResult,
    ShapeFactoid, Solver, TensorProxy,
};
use ward_graph::interp::deform::{deformable_conv_f32, Geometry};
use ward_graph::ops::conv::DeformableConv;
use ward_graph::ops::OpDef;

use crate::onnx::deform::DEFORMABLE_CONV;

/// Teaches `register` ward's deformable convolution node.
pub(crate) fn register(register: &mut OnnxOpRegister) {
    register.insert(DEFORMABLE_CONV, parse);
}

fn parse(_: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let usizes = |name: &str| -> TractResult<Vec<usize>> {
        let Some(a) = attr(name) else {
            bail!("{DEFORMABLE_CONV} {} has no {name}", node.name);
        };
        Ok(a.ints
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()?)
    };
    let int = |name: &str| -> TractResult<i64> {
        match attr(name) {
            Some(a) => Ok(a.i),
            None => bail!("{DEFORMABLE_CONV} {} has no {name}", node.name),
        }
    };
    let groups = usizes("groups")?;
    let &[groups, deformable_groups] = groups.as_slice() else {
        bail!("{DEFORMABLE_CONV} {} has groups {groups:?}", node.name);
    };
    let modulated = int("modulated")? != 0;
    let op = DeformableConv {
        kernel: usizes("kernel")?,
        stride: usizes("stride")?,
        dilation: usizes("dilation")?,
        pad: usizes("pad")?,
        groups,
        deformable_groups,
        modulated,
        bias: int("bias")? != 0,
        im2col_step: if modulated {
            Some(usize::try_from(int("im2col_step")?)?)
        } else {
            None
        },
    };
    if let Err(m) = op.validate() {
        bail!("{DEFORMABLE_CONV} {}: {m}", node.name);
    }
    let out_shape = usizes("out_shape")?;
    Ok((expand(DeformableConvNode { op, out_shape }), vec![]))
}

/// The parsed node: the op and its output's shape, fixed at lowering.
#[derive(Debug, Clone)]
struct DeformableConvNode {
    op: DeformableConv,
    out_shape: Vec<usize>,
}

impl Expansion for DeformableConvNode {
    fn name(&self) -> StaticName {
        DEFORMABLE_CONV.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.op.arity().0)?;
        check_output_arity(outputs, 1)?;
        for input in inputs {
            s.equals(&input.datum_type, f32::datum_type())?;
        }
        let Some(out) = outputs.first() else {
            bail!("{DEFORMABLE_CONV} gives one output");
        };
        s.equals(&out.datum_type, f32::datum_type())?;
        s.equals(&out.shape, ShapeFactoid::from(self.out_shape.clone()))?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, MxnetDeformableConv(self.op.clone()), inputs)
    }
}

/// The typed op.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MxnetDeformableConv(DeformableConv);

fn anyhow_msg(m: String) -> tract_onnx::prelude::TractError {
    tract_onnx::prelude::TractError::msg(m)
}

impl Op for MxnetDeformableConv {
    fn name(&self) -> StaticName {
        "WardMxnetDeformableConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.0)])
    }

    op_as_typed_op!();
}

impl EvalOp for MxnetDeformableConv {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let plains = inputs
            .iter()
            .map(|t| t.try_as_plain_ram())
            .collect::<TractResult<Vec<_>>>()?;
        let values = plains
            .iter()
            .map(|p| p.as_slice::<f32>())
            .collect::<TractResult<Vec<_>>>()?;
        let (shape, out) = deformable_conv_f32(&self.0, &shapes, &values)
            .map_err(|m| anyhow_msg(format!("deformable convolution: {m}")))?;
        let out = Tensor::from_shape(&shape, &out)?;
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for MxnetDeformableConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.iter().all(|f| f.datum_type == f32::datum_type()),
            "ward's deformable convolution takes float32"
        );
        let shapes = inputs
            .iter()
            .map(|f| f.shape.as_concrete())
            .collect::<Option<Vec<_>>>();
        let Some(shapes) = shapes else {
            bail!("ward's deformable convolution needs concrete shapes");
        };
        let geo = Geometry::new(&self.0, &shapes).map_err(anyhow_msg)?;
        Ok(tvec![TypedFact::shape::<f32, _>(geo.out_shape())])
    }

    as_op!();
}
