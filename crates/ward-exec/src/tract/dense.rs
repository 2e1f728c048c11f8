//! Dense layers on a few rows (a prediction's batch) read their weight where it lies: in
//! the plan's [`WeightSet`], as the package's weights file stored it, (units, inputs) row
//! by row. y[i, u] = x[i, ·] · W[u, ·], each weight row read from memory once and used
//! for every row of x.
//!
//! tract would copy the weight into a constant and then pack it for its matrix kernel: a
//! second and a third copy of the largest tensors of a model (VGG's first dense layer is
//! 4096 × 25088, 411 MB). For a product with few rows the work is reading the weight once,
//! which this does from the one copy ward holds. With more rows tract's packed kernel,
//! which reuses each weight it loads, is kept, except for a weight of 64 MiB or more,
//! which is read in place by the matrix crate's product (`ward_kernels::dense`), which
//! packs a small panel of it at a time.
//!
//! The weight's graph input is matched to the `EinSum` tract made of the lowering's
//! `Gemm` (`mk,nk->mn`); a weight read by anything else becomes a constant as the others.

#![allow(
    clippy::indexing_slicing,
    reason = "lengths checked against the shapes fixed at plan time before the loops"
)]

use std::sync::Arc;

use tract_onnx::prelude::{tvec, DatumType, TValue, TVec, TractResult, TypedFact, TypedModel};
use tract_onnx::tract_core::internal::{
    as_op, bail, ensure, format_err, op_as_typed_op, op_out_of_plan, AxesMapping, DatumTypeExt,
    EvalContext, EvalOp, IntoTValue, Op, OutletId, StaticName, Tensor, TypedModelPatch, TypedOp,
};
use tract_onnx::tract_core::ops::einsum::EinSum;
use ward_core::DType;
use ward_kernels::dense::Dense;

use super::constants::WeightPool;
use super::direct_conv::in_plan_pool;
use crate::weights::WeightSet;

/// Most rows of x for which the weight is read in place one weight row at a time; beyond,
/// tract packs it, unless it is large.
pub(crate) const MAX_ROWS: usize = 8;

/// The weight size from which a dense layer on more than [`MAX_ROWS`] rows reads its
/// weight in place too, through the matrix crate's product (which packs small panels of
/// it per call), rather than tract copying it into a constant and packing the copy: a
/// weight that large held twice or three times is what a plan's peak is made of
/// (doublehead R-CNN's 411 MB dense layer over its 300 regions, copied and then packed
/// beside the copy, was its model's peak).
pub(crate) const LARGE_WEIGHT_BYTES: usize = 64 << 20;

/// Where a dense layer's weight lies: in the executable's weight set (kept for its next
/// plan), or, for a plan built once, handed to the plan alone.
#[derive(Debug, Clone)]
pub(crate) enum DenseWeight {
    InSet(Arc<WeightSet>),
    Own(Arc<ward_core::Tensor>),
}

impl DenseWeight {
    fn tensor(&self, index: usize) -> Option<&ward_core::Tensor> {
        match self {
            DenseWeight::InSet(weights) => weights.tensors().get(index),
            DenseWeight::Own(tensor) => Some(tensor),
        }
    }
}

/// x (rows, inputs) · W(units, inputs)ᵀ with W param `index` of the weights.
#[derive(Debug, Clone)]
pub(crate) struct WeightDense {
    weight: DenseWeight,
    index: usize,
    rows: usize,
    units: usize,
    inputs: usize,
}

impl PartialEq for WeightDense {
    fn eq(&self, other: &Self) -> bool {
        let same_weight = match (&self.weight, &other.weight) {
            (DenseWeight::InSet(a), DenseWeight::InSet(b)) => a.id() == b.id(),
            (DenseWeight::Own(a), DenseWeight::Own(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_weight
            && (self.index, self.rows, self.units, self.inputs)
                == (other.index, other.rows, other.units, other.inputs)
    }
}

impl Eq for WeightDense {}

/// Replaces the `EinSum` reading the graph input `weight` (param `index`, a float32 matrix)
/// by a [`WeightDense`] when every reader of it is such a product on at most [`MAX_ROWS`]
/// rows, reading the weight where the pool keeps it ([`WeightPool::keep`]). Returns whether it did (the pool's use of the param is then made); if not, the caller
/// makes the input a constant.
pub(crate) fn adopt(
    model: &mut TypedModel,
    weight: OutletId,
    weights: &mut WeightPool,
    index: usize,
) -> TractResult<bool> {
    let Some(tensor) = weights.get(index) else {
        return Ok(false);
    };
    let &[units, inputs] = tensor.shape() else {
        return Ok(false);
    };
    if tensor.dtype() != DType::F32 || units == 0 || inputs == 0 {
        return Ok(false);
    }
    let gemm = AxesMapping::for_numpy_matmul(2, false, true, false)?;
    let readers: Vec<_> = model.outlet_successors(weight).to_vec();
    if readers.is_empty() {
        return Ok(false);
    }
    let mut products = Vec::new();
    for reader in &readers {
        let node = model.node(reader.node);
        let Some(einsum) = node.op_as::<EinSum>() else {
            return Ok(false);
        };
        if reader.slot != 1
            || einsum.axes != gemm
            || einsum.q_params.is_some()
            || einsum.operating_dt != DatumType::F32
            || node.inputs.len() != 2
        {
            return Ok(false);
        }
        let x = node.inputs[0];
        let fact = model.outlet_fact(x)?;
        let Some(shape) = fact.shape.as_concrete() else {
            return Ok(false);
        };
        let &[rows, k] = shape else {
            return Ok(false);
        };
        let in_place = rows <= MAX_ROWS
            || (tensor.bytes().len() >= LARGE_WEIGHT_BYTES
                && ward_kernels::dense::floats_in_place(tensor.bytes()).is_some());
        if fact.datum_type != DatumType::F32 || k != inputs || !in_place {
            return Ok(false);
        }
        products.push((reader.node, x, rows));
    }
    let Some(weight) = weights.keep(index) else {
        return Ok(false);
    };
    for (node, x, rows) in products {
        let op = WeightDense {
            weight: weight.clone(),
            index,
            rows,
            units,
            inputs,
        };
        TypedModelPatch::replace_single_op(model, model.node(node), &[x], op)?.apply(model)?;
    }
    Ok(true)
}

/// y[i, u] = Σ w[u, j]·x[i, j] over the weight's little-endian bytes, weight row by
/// weight row: each is read from memory once and used for every row of x while it is in
/// cache.
fn times_weight(x: &[f32], w: &[u8], y: &mut [f32], inputs: usize, units: usize) {
    for (u, w_row) in w.chunks_exact(inputs * 4).enumerate() {
        for (i, x_row) in x.chunks_exact(inputs).enumerate() {
            if let Some(out) = y.get_mut(i * units + u) {
                *out = dot(x_row, w_row);
            }
        }
    }
}

/// x · w, w as little-endian float32 bytes of x's length; eight running sums, so that the
/// loop vectorises.
fn dot(x: &[f32], w: &[u8]) -> f32 {
    let (w, _) = w.as_chunks::<4>();
    let mut sums = [0f32; 8];
    let mut xs = x.chunks_exact(8);
    let mut ws = w.chunks_exact(8);
    for (x8, w8) in (&mut xs).zip(&mut ws) {
        for ((sum, x), w) in sums.iter_mut().zip(x8).zip(w8) {
            *sum += x * f32::from_le_bytes(*w);
        }
    }
    let mut tail = 0f32;
    for (x, w) in xs.remainder().iter().zip(ws.remainder()) {
        tail += x * f32::from_le_bytes(*w);
    }
    let [a, b, c, d, e, f, g, h] = sums;
    ((a + e) + (b + f)) + ((c + g) + (d + h)) + tail
}

impl WeightDense {
    /// The same layer on `rows` rows of x (a region head's block, `region_heads`).
    pub(crate) fn on_rows(&self, rows: usize) -> WeightDense {
        WeightDense {
            rows,
            ..self.clone()
        }
    }
}

impl Op for WeightDense {
    fn name(&self) -> StaticName {
        "WardWeightDense".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} rows · ({} units, {} inputs) weight {}",
            self.rows, self.units, self.inputs, self.index
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for WeightDense {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(inputs.len() == 1, "a dense layer takes one input here");
        let input = &inputs[0];
        if input.shape() != [self.rows, self.inputs] {
            bail!(
                "dense layer built for ({}, {}) got {:?}",
                self.rows,
                self.inputs,
                input.shape()
            );
        }
        let Some(weight) = self.weight.tensor(self.index) else {
            bail!("weight {} is missing", self.index);
        };
        let w = weight.bytes();
        ensure!(
            w.len() == self.units * self.inputs * 4,
            "weight {} holds {} bytes",
            self.index,
            w.len()
        );
        let mut output = Tensor::zero::<f32>(&[self.rows, self.units])?;
        let plain = input.try_as_plain_ram()?;
        let x = plain.as_slice::<f32>()?;
        {
            let mut out_plain = output.try_as_plain_ram_mut()?;
            let y = out_plain.as_slice_mut::<f32>()?;
            match ward_kernels::dense::floats_in_place(w) {
                Some(w) if self.rows > MAX_ROWS => {
                    let layer = Dense {
                        rows: self.rows,
                        inner: self.inputs,
                        units: self.units,
                    };
                    in_plan_pool(|| layer.forward(x, w, None, y))
                        .map_err(|e| format_err!("{e}"))?;
                }
                _ if self.inputs > 0 => times_weight(x, w, y, self.inputs, self.units),
                _ => {}
            }
        }
        Ok(tvec![output.into_tvalue()])
    }
}

impl TypedOp for WeightDense {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "a dense layer takes one input here");
        Ok(tvec![DatumType::F32.fact([self.rows, self.units])])
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dot_sums_every_product_whatever_the_length() {
        for len in [0usize, 1, 7, 8, 9, 17, 64, 1001] {
            let x: Vec<f32> = (0..len).map(|i| (i % 13) as f32 - 6.0).collect();
            let w: Vec<f32> = (0..len).map(|i| (i % 7) as f32 * 0.5 - 1.0).collect();
            let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            let want: f64 = x.iter().zip(&w).map(|(a, b)| f64::from(a * b)).sum();
            assert_eq!(f64::from(dot(&x, &bytes)), want, "{len}");
        }
    }
}
