//! MXNet's order for ONNX `TopK`, in place of tract's.
//!
//! tract's `Topk` sorts stably (ties by the lower index, as ONNX specifies). MXNet 1.9.1's
//! CPU kernel orders equal elements and NaN as libstdc++'s `std::sort` or
//! `std::partial_sort` leave them, which `ward_graph::interp::order::mxnet_order`
//! replays; this op runs it on each lane. Every `TopK` of a lowered model comes from
//! MXNet's `topk`, `sort` or `argsort`, so every one is replaced.

use tract_onnx::prelude::{
    tvec, Datum, DatumType, TValue, TVec, TractResult, TypedFact, TypedModel,
};
use tract_onnx::tract_core::internal::{
    as_op, bail, ensure, op_as_typed_op, op_out_of_plan, EvalContext, EvalOp, IntoTValue, Op,
    StaticName, Tensor, ToDim, TypedOp,
};
use tract_onnx::tract_core::ops::array::Topk;
use ward_graph::interp::order::mxnet_order;

/// `TopK` along `axis` with a constant `k`, in MXNet's order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MxnetTopk {
    axis: usize,
    largest: bool,
    k: usize,
}

/// Replaces every tract `Topk` of the model; a `Topk` whose k is not a constant (which
/// the lowering never writes) is refused rather than run in tract's order.
pub(crate) fn adopt(model: &mut TypedModel) -> TractResult<()> {
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(topk) = node.op_as::<Topk>() else {
            continue;
        };
        let Some(k_input) = node.inputs.get(1) else {
            bail!("TopK {} has no k", node.name);
        };
        let Some(k) = model.outlet_fact(*k_input)?.konst.clone() else {
            bail!("TopK {} has a k that is not a constant", node.name);
        };
        let k = k.cast_to_scalar::<i64>()?;
        let Ok(k) = usize::try_from(k) else {
            bail!("TopK {} has k {k}", node.name);
        };
        let ours = MxnetTopk {
            axis: topk.axis,
            largest: topk.largest,
            k,
        };
        model.node_mut(id).op = Box::new(ours);
    }
    Ok(())
}

impl Op for MxnetTopk {
    fn name(&self) -> StaticName {
        "WardMxnetTopk".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "axis {} k {} {}",
            self.axis,
            self.k,
            if self.largest { "largest" } else { "smallest" }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for MxnetTopk {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let Some(input) = inputs.first() else {
            bail!("TopK takes data and k");
        };
        let shape = input.shape().to_vec();
        let Some(&n) = shape.get(self.axis) else {
            bail!("TopK along axis {} of {:?}", self.axis, shape);
        };
        ensure!(self.k <= n, "TopK of {} from {n}", self.k);
        let outer: usize = shape.get(..self.axis).unwrap_or_default().iter().product();
        let inner: usize = shape
            .get(self.axis + 1..)
            .unwrap_or_default()
            .iter()
            .product();
        let mut out_shape = shape.clone();
        if let Some(d) = out_shape.get_mut(self.axis) {
            *d = self.k;
        }
        let k = self.k;
        let mut values = Tensor::zero::<f32>(&out_shape)?;
        let mut indices = Tensor::zero::<i64>(&out_shape)?;
        let plain = input.try_as_plain_ram()?;
        let x = plain.as_slice::<f32>()?;
        {
            let mut values_plain = values.try_as_plain_ram_mut()?;
            let vs = values_plain.as_slice_mut::<f32>()?;
            let mut indices_plain = indices.try_as_plain_ram_mut()?;
            let is = indices_plain.as_slice_mut::<i64>()?;
            let mut lane = Vec::with_capacity(n);
            for o in 0..outer {
                for i in 0..inner {
                    lane.clear();
                    for j in 0..n {
                        let Some(&v) = x.get((o * n + j) * inner + i) else {
                            bail!("TopK input shorter than its shape");
                        };
                        lane.push(v);
                    }
                    for (r, j) in mxnet_order(&lane, k, !self.largest).into_iter().enumerate() {
                        let at = (o * k + r) * inner + i;
                        if let (Some(v), Some(ix), Some(&x)) =
                            (vs.get_mut(at), is.get_mut(at), lane.get(j))
                        {
                            *v = x;
                            *ix = j as i64;
                        }
                    }
                }
            }
        }
        Ok(tvec![values.into_tvalue(), indices.into_tvalue()])
    }
}

impl TypedOp for MxnetTopk {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let Some(input) = inputs.first() else {
            bail!("TopK takes data and k");
        };
        ensure!(
            input.datum_type == f32::datum_type(),
            "ward's TopK takes float32, got {:?}",
            input.datum_type
        );
        let mut values = input.without_value();
        values.shape.set(self.axis, self.k.to_dim());
        let mut indices = values.clone();
        indices.datum_type = DatumType::I64;
        Ok(tvec![values, indices])
    }

    as_op!();
}
