//! MXNet's `_contrib_ROIAlign` and `ROIPooling` as tract ops: the lowering writes each as
//! a node of ward's domain (`crate::onnx::roi`), which [`register`] teaches tract's ONNX
//! reader. ROIPooling's bins are `ward_graph::interp::roi::roi_pool_bins`', each the
//! first greatest pixel above MXNet's floor of `-FLT_MAX`, as the reference kernel takes
//! it.
//!
//! The samples come from `ward_graph::interp::roi::roi_align_plan`, the plan the
//! reference interpreter and the gradient use, and each bin is summed in float32 in
//! MXNet's order (`w1·d1 + w2·d2 + w3·d3 + w4·d4` per sample, then divided by the
//! count), so the output is MXNet's to the rounding. A roi MXNet would not compute (see
//! that module) fails the run with an error naming it.

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
use ward_graph::interp::roi::{roi_align_plan, roi_pool_bins, source_channel, ROI_POOL_FLOOR};
use ward_graph::ops::roi::{RoiAlign, RoiPool};

use crate::onnx::roi::{ROI_ALIGN, ROI_POOL};

/// Teaches `register` ward's ROIAlign and ROIPooling nodes.
pub(crate) fn register(register: &mut OnnxOpRegister) {
    register.insert(ROI_ALIGN, parse_roi_align);
    register.insert(ROI_POOL, parse_roi_pool);
}

fn parse_roi_pool(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let (Some(pooled), Some(scale), Some(shape)) = (
        attr("pooled_size"),
        attr("spatial_scale"),
        attr("out_shape"),
    ) else {
        bail!("{ROI_POOL} {} lacks an attribute", node.name);
    };
    let &[ph, pw] = pooled.ints.as_slice() else {
        bail!("{ROI_POOL} {} has pooled_size {:?}", node.name, pooled.ints);
    };
    let op = RoiPool {
        pooled_height: usize::try_from(ph)?,
        pooled_width: usize::try_from(pw)?,
        spatial_scale: scale.f,
    };
    if let Err(m) = ward_graph::ops::OpDef::validate(&op) {
        bail!("{ROI_POOL} {}: {m}", node.name);
    }
    let out_shape = shape
        .ints
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((expand(RoiPoolNode { op, out_shape }), vec![]))
}

/// The inference rules both roi nodes share: float32 data and rois in, one float32
/// output of the shape fixed at lowering.
fn roi_rules<'r, 'p: 'r>(
    name: &str,
    out_shape: &[usize],
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
) -> InferenceResult {
    check_input_arity(inputs, 2)?;
    check_output_arity(outputs, 1)?;
    let (Some(data), Some(rois), Some(out)) = (inputs.first(), inputs.get(1), outputs.first())
    else {
        bail!("{name} takes data and rois and gives one output");
    };
    s.equals(&data.datum_type, f32::datum_type())?;
    s.equals(&rois.datum_type, f32::datum_type())?;
    s.equals(&out.datum_type, f32::datum_type())?;
    s.equals(&out.shape, ShapeFactoid::from(out_shape.to_vec()))?;
    Ok(())
}

/// The parsed ROIPooling node: the op and its output's shape, fixed at lowering.
#[derive(Debug, Clone)]
struct RoiPoolNode {
    op: RoiPool,
    out_shape: Vec<usize>,
}

impl Expansion for RoiPoolNode {
    fn name(&self) -> StaticName {
        ROI_POOL.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        roi_rules(ROI_POOL, &self.out_shape, s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(
            prefix,
            MxnetRoiPool {
                pooled_height: self.op.pooled_height,
                pooled_width: self.op.pooled_width,
                spatial_scale: self.op.spatial_scale.to_bits(),
            },
            inputs,
        )
    }
}

/// The typed ROIPooling op: [`RoiPool`]'s fields, the scale by its bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MxnetRoiPool {
    pooled_height: usize,
    pooled_width: usize,
    spatial_scale: u32,
}

impl MxnetRoiPool {
    fn op(&self) -> RoiPool {
        RoiPool {
            pooled_height: self.pooled_height,
            pooled_width: self.pooled_width,
            spatial_scale: f32::from_bits(self.spatial_scale),
        }
    }

    fn out_shape(&self, x: &[usize], rois: &[usize]) -> TractResult<[usize; 4]> {
        let (&[_, c, _, _], &[r, 5]) = (x, rois) else {
            bail!("ROIPooling of data {x:?} and rois {rois:?}");
        };
        Ok([r, c, self.pooled_height, self.pooled_width])
    }
}

impl Op for MxnetRoiPool {
    fn name(&self) -> StaticName {
        "WardMxnetRoiPool".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.op())])
    }

    op_as_typed_op!();
}

impl EvalOp for MxnetRoiPool {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (Some(data), Some(rois)) = (inputs.first(), inputs.get(1)) else {
            bail!("ROIPooling takes data and rois");
        };
        let x_shape = data.shape().to_vec();
        let out_shape = self.out_shape(&x_shape, rois.shape())?;
        let &[batch, channels, height, width] = x_shape.as_slice() else {
            bail!("ROIPooling of data {x_shape:?}");
        };
        let op = self.op();
        let plane = height * width;
        let data_plain = data.try_as_plain_ram()?;
        let x = data_plain.as_slice::<f32>()?;
        let rois_plain = rois.try_as_plain_ram()?;
        let rows = rois_plain.as_slice::<f32>()?;
        // Zeros: a roi outside the batch and an empty bin keep them.
        let mut out = Tensor::zero::<f32>(&out_shape)?;
        {
            let mut out_plain = out.try_as_plain_ram_mut()?;
            let ys = out_plain.as_slice_mut::<f32>()?;
            let per_roi = channels * self.pooled_height * self.pooled_width;
            for (i, row) in rows.chunks_exact(5).enumerate() {
                let plan = roi_pool_bins(&op, batch, height, width, row)
                    .map_err(|m| anyhow_msg(format!("ROIPooling roi {i}: {m}")))?;
                let Some((img, bins)) = plan else {
                    continue;
                };
                let mut at = i * per_roi;
                for c in 0..channels {
                    let base = (img * channels + c) * plane;
                    let Some(d) = x.get(base..base + plane) else {
                        bail!("ROIPooling reads outside its data");
                    };
                    for bin in &bins {
                        let Some(y) = ys.get_mut(at) else {
                            bail!("ROIPooling writes past its output");
                        };
                        at += 1;
                        if bin.h1 <= bin.h0 || bin.w1 <= bin.w0 {
                            continue;
                        }
                        let mut best = ROI_POOL_FLOOR;
                        for row in bin.h0..bin.h1 {
                            let Some(pixels) = d.get(row * width + bin.w0..row * width + bin.w1)
                            else {
                                bail!("ROIPooling reads outside its plane");
                            };
                            for &v in pixels {
                                if v > best {
                                    best = v;
                                }
                            }
                        }
                        *y = best;
                    }
                }
            }
        }
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for MxnetRoiPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (Some(data), Some(rois)) = (inputs.first(), inputs.get(1)) else {
            bail!("ROIPooling takes data and rois");
        };
        ensure!(
            data.datum_type == f32::datum_type() && rois.datum_type == f32::datum_type(),
            "ward's ROIPooling takes float32"
        );
        let (Some(x), Some(r)) = (data.shape.as_concrete(), rois.shape.as_concrete()) else {
            bail!("ward's ROIPooling needs concrete shapes");
        };
        Ok(tvec![TypedFact::shape::<f32, _>(self.out_shape(x, r)?)])
    }

    as_op!();
}

fn parse_roi_align(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let int = |name: &str| -> TractResult<i64> {
        match attr(name) {
            Some(a) => Ok(a.i),
            None => bail!("{ROI_ALIGN} {} has no {name}", node.name),
        }
    };
    let (Some(pooled), Some(scale)) = (attr("pooled_size"), attr("spatial_scale")) else {
        bail!(
            "{ROI_ALIGN} {} has no pooled_size or spatial_scale",
            node.name
        );
    };
    let &[ph, pw] = pooled.ints.as_slice() else {
        bail!(
            "{ROI_ALIGN} {} has pooled_size {:?}",
            node.name,
            pooled.ints
        );
    };
    let op = RoiAlign {
        pooled_height: usize::try_from(ph)?,
        pooled_width: usize::try_from(pw)?,
        spatial_scale: scale.f,
        sample_ratio: usize::try_from(int("sample_ratio")?).ok(),
        position_sensitive: int("position_sensitive")? != 0,
        aligned: int("aligned")? != 0,
    };
    if let Err(m) = ward_graph::ops::OpDef::validate(&op) {
        bail!("{ROI_ALIGN} {}: {m}", node.name);
    }
    let Some(shape) = attr("out_shape") else {
        bail!("{ROI_ALIGN} {} has no out_shape", node.name);
    };
    let out_shape = shape
        .ints
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((expand(RoiAlignNode { op, out_shape }), vec![]))
}

/// The parsed node: the op and its output's shape, fixed at lowering.
#[derive(Debug, Clone)]
struct RoiAlignNode {
    op: RoiAlign,
    out_shape: Vec<usize>,
}

impl Expansion for RoiAlignNode {
    fn name(&self) -> StaticName {
        ROI_ALIGN.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        roi_rules(ROI_ALIGN, &self.out_shape, s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(
            prefix,
            MxnetRoiAlign {
                pooled_height: self.op.pooled_height,
                pooled_width: self.op.pooled_width,
                spatial_scale: self.op.spatial_scale.to_bits(),
                sample_ratio: self.op.sample_ratio,
                position_sensitive: self.op.position_sensitive,
                aligned: self.op.aligned,
            },
            inputs,
        )
    }
}

/// The typed op: [`RoiAlign`]'s fields, the scale by its bits (so that it hashes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MxnetRoiAlign {
    pooled_height: usize,
    pooled_width: usize,
    spatial_scale: u32,
    sample_ratio: Option<usize>,
    position_sensitive: bool,
    aligned: bool,
}

impl MxnetRoiAlign {
    fn op(&self) -> RoiAlign {
        RoiAlign {
            pooled_height: self.pooled_height,
            pooled_width: self.pooled_width,
            spatial_scale: f32::from_bits(self.spatial_scale),
            sample_ratio: self.sample_ratio,
            position_sensitive: self.position_sensitive,
            aligned: self.aligned,
        }
    }

    /// The output's shape for data of shape `x` and rois of shape `rois`.
    pub(crate) fn out_shape(&self, x: &[usize], rois: &[usize]) -> TractResult<[usize; 4]> {
        let (&[_, c, _, _], &[r, 5]) = (x, rois) else {
            bail!("ROIAlign of data {x:?} and rois {rois:?}");
        };
        let c_out = self.op().out_channels(c).map_err(anyhow_msg)?;
        Ok([r, c_out, self.pooled_height, self.pooled_width])
    }

    /// Aligns `rois` over `data` into `ys` (the output, `out_shape` long): each value
    /// written, or with `accumulate` added to what `ys` holds, as `ys + value` (so levels
    /// accumulated in turn sum as MXNet's `add_n` of their outputs, left to right).
    pub(crate) fn align_into(
        &self,
        data: &TValue,
        rois: &TValue,
        ys: &mut [f32],
        accumulate: bool,
    ) -> TractResult<()> {
        let x_shape = data.shape().to_vec();
        let [_, c_out, _, _] = self.out_shape(&x_shape, rois.shape())?;
        let (&[batch, c_in, height, width], op) = (x_shape.as_slice(), self.op()) else {
            bail!("ROIAlign of data {x_shape:?}");
        };
        let plane = height * width;
        let bins = self.pooled_height * self.pooled_width;
        let data_plain = data.try_as_plain_ram()?;
        let x = data_plain.as_slice::<f32>()?;
        let rois_plain = rois.try_as_plain_ram()?;
        let rows = rois_plain.as_slice::<f32>()?;
        let mut at = 0usize;
        for (i, row) in rows.chunks_exact(5).enumerate() {
            let plan = roi_align_plan(&op, batch, height, width, row)
                .map_err(|m| anyhow_msg(format!("ROIAlign roi {i}: {m}")))?;
            for c in 0..c_out {
                for bin in 0..bins {
                    let base = (plan.batch * c_in + source_channel(&op, c, bin)) * plane;
                    let (Some(d), Some(taps)) = (
                        x.get(base..base + plane),
                        plan.taps.get(bin * plan.grid..(bin + 1) * plan.grid),
                    ) else {
                        bail!("ROIAlign reads outside its data");
                    };
                    let mut sum = 0.0f32;
                    for t in taps {
                        let [p1, p2, p3, p4] = t.pos;
                        let [w1, w2, w3, w4] = t.w;
                        let (Some(&d1), Some(&d2), Some(&d3), Some(&d4)) =
                            (d.get(p1), d.get(p2), d.get(p3), d.get(p4))
                        else {
                            bail!("ROIAlign samples outside its plane");
                        };
                        sum += w1 * d1 + w2 * d2 + w3 * d3 + w4 * d4;
                    }
                    let Some(y) = ys.get_mut(at) else {
                        bail!("ROIAlign writes past its output");
                    };
                    let value = sum / plan.count;
                    *y = if accumulate { *y + value } else { value };
                    at += 1;
                }
            }
        }
        ensure!(at == ys.len(), "ROIAlign wrote {at} of {} values", ys.len());
        Ok(())
    }
}

fn anyhow_msg(m: String) -> tract_onnx::prelude::TractError {
    tract_onnx::prelude::TractError::msg(m)
}

impl Op for MxnetRoiAlign {
    fn name(&self) -> StaticName {
        "WardMxnetRoiAlign".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.op())])
    }

    op_as_typed_op!();
}

impl EvalOp for MxnetRoiAlign {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (Some(data), Some(rois)) = (inputs.first(), inputs.get(1)) else {
            bail!("ROIAlign takes data and rois");
        };
        let mut out = Tensor::zero::<f32>(&self.out_shape(data.shape(), rois.shape())?)?;
        {
            let mut out_plain = out.try_as_plain_ram_mut()?;
            self.align_into(data, rois, out_plain.as_slice_mut::<f32>()?, false)?;
        }
        Ok(tvec![out.into_tvalue()])
    }
}

impl TypedOp for MxnetRoiAlign {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (Some(data), Some(rois)) = (inputs.first(), inputs.get(1)) else {
            bail!("ROIAlign takes data and rois");
        };
        ensure!(
            data.datum_type == f32::datum_type() && rois.datum_type == f32::datum_type(),
            "ward's ROIAlign takes float32"
        );
        let (Some(x), Some(r)) = (data.shape.as_concrete(), rois.shape.as_concrete()) else {
            bail!("ward's ROIAlign needs concrete shapes");
        };
        let shape = self.out_shape(x, r)?;
        Ok(tvec![TypedFact::shape::<f32, _>(shape)])
    }

    as_op!();
}
