//! Convolutions: ONNX `Conv` (with a following batch norm folded in) and `ConvTranspose`.

use ward_graph::ops::conv::{Conv, Deconv};

use ward_graph::ir::Source;

use super::builder::{attr_int, attr_ints, attr_string, ints, At, Builder, DerivedValues, R};
use crate::tract::BATCH_IM2COL_BYTES;

fn symmetric_pads(pad: &[usize]) -> Vec<i64> {
    ints(pad).iter().chain(ints(pad).iter()).copied().collect()
}

pub(super) fn conv(b: &mut Builder<'_>, at: &At<'_>, op: &Conv) -> R<()> {
    if b.pointwise_as_einsum && is_pointwise(op) && !large_batch(b, at)? {
        let bias = if op.bias { Some(at.source(2)?) } else { None };
        match (at.source(1)?, bias) {
            (Source::Param(weight), None) => return pointwise(b, at, op, weight, None),
            (Source::Param(weight), Some(Source::Param(bias))) => {
                return pointwise(b, at, op, weight, Some(bias))
            }
            _ => {}
        }
    }
    let mut ins = at.inputs()?;
    if let Some((scale, shift)) = b.folded_norms.remove(&at.index) {
        ins = folded_inputs(b, at, &scale, &shift)?;
    }
    b.push(
        "Conv",
        ins,
        vec![at.out()?],
        vec![
            attr_ints("kernel_shape", &ints(&op.kernel)),
            attr_ints("strides", &ints(&op.stride)),
            attr_ints("dilations", &ints(&op.dilation)),
            attr_ints("pads", &symmetric_pads(&op.pad)),
            attr_int("group", op.groups as i64),
        ],
    );
    Ok(())
}

/// A 1×1 convolution with stride 1, no padding and one group: a matrix product over the
/// channels at every position.
fn is_pointwise(op: &Conv) -> bool {
    op.groups == 1
        && op.kernel.iter().all(|&k| k == 1)
        && op.stride.iter().all(|&s| s == 1)
        && op.pad.iter().all(|&p| p == 0)
        && op.kernel.len() <= SPATIAL.len()
}

/// Whether the convolution's input is a batch of more than one sample larger than
/// [`BATCH_IM2COL_BYTES`]: tract runs the product over such a batch by copying the whole
/// input twice (reshaped, then with the channels moved last), 470 MB for an R-CNN box
/// head's 300 regions, so it stays a `Conv`, which the backend runs sample by sample.
fn large_batch(b: &Builder<'_>, at: &At<'_>) -> R<bool> {
    let shape = b.shape(at.source(0)?)?;
    let bytes = shape
        .iter()
        .try_fold(std::mem::size_of::<f32>(), |n, &d| n.checked_mul(d));
    Ok(shape.first().is_some_and(|&n| n > 1) && bytes.is_none_or(|n| n > BATCH_IM2COL_BYTES))
}

/// Einsum letters of the spatial axes, in order.
const SPATIAL: &str = "xyz";

/// A pointwise convolution (see [`is_pointwise`]) as `Einsum("oi,nixy->noxy")` over its
/// weight made 2-D, plus its bias (with a following batch norm folded into both, as
/// [`folded_inputs`] does). tract lowers a 1×1 `Conv` to this same product, but reaching
/// it from `Conv` takes its optimiser several axis changes on the 4-D weight constant,
/// each of which copies the whole weight: a fifth of ResNet-50's plan building.
fn pointwise(
    b: &mut Builder<'_>,
    at: &At<'_>,
    op: &Conv,
    weight: usize,
    bias_param: Option<usize>,
) -> R<()> {
    let w_shape = b.shape(Source::Param(weight))?;
    let (&out_channels, rest) = w_shape
        .split_first()
        .ok_or("a convolution's weight has no axes")?;
    let in_channels: usize = rest.iter().product();
    let folded = b.folded_norms.remove(&at.index);
    let spatial = SPATIAL
        .get(..op.kernel.len())
        .ok_or("too many spatial axes")?;
    // The bias broadcasts along the channel axis: (O, 1, …) against (N, O, spatial…).
    let bias_dims: Vec<usize> = std::iter::once(out_channels)
        .chain(op.kernel.iter().map(|_| 1))
        .collect();
    let (weight_values, bias_values) = match folded {
        Some((scale, shift)) => {
            let bias = match bias_param.and_then(|p| b.param_values(Source::Param(p))) {
                Some(bias) => bias
                    .iter()
                    .zip(&scale)
                    .zip(&shift)
                    .map(|((b, s), t)| b * s + t)
                    .collect(),
                None => shift,
            };
            (
                DerivedValues::ScaledParam {
                    param: weight,
                    scale,
                },
                Some(DerivedValues::Values(bias)),
            )
        }
        None => (
            DerivedValues::Param { param: weight },
            bias_param.map(|param| DerivedValues::Param { param }),
        ),
    };
    let w = b.derived_f32(
        &at.hint("pointwise_weight"),
        vec![out_channels, in_channels],
        weight_values,
    );
    let equation = format!("oi,ni{spatial}->no{spatial}");
    let Some(bias_values) = bias_values else {
        b.push(
            "Einsum",
            vec![w, at.input(0)?],
            vec![at.out()?],
            vec![attr_string("equation", &equation)],
        );
        return Ok(());
    };
    let product = b.fresh(&at.hint("product"));
    b.push(
        "Einsum",
        vec![w, at.input(0)?],
        vec![product.clone()],
        vec![attr_string("equation", &equation)],
    );
    let bias = b.derived_f32(&at.hint("pointwise_bias"), bias_dims, bias_values);
    b.push("Add", vec![product, bias], vec![at.out()?], vec![]);
    Ok(())
}

/// The convolution's inputs with the batch norm that reads it folded in:
/// w'[f] = w[f]·scale[f], b'[f] = b[f]·scale[f] + shift[f]. The weight is left a recipe
/// (see [`DerivedValues::ScaledParam`]), computed once where the engine keeps it.
fn folded_inputs(b: &mut Builder<'_>, at: &At<'_>, scale: &[f32], shift: &[f32]) -> R<Vec<String>> {
    let weight = at.source(1)?;
    let w_shape = b.shape(weight)?;
    let Source::Param(param) = weight else {
        return Err("a folded convolution's weight must be a parameter".into());
    };
    let bias: Vec<f32> = match at.source(2).ok().and_then(|s| b.param_values(s)) {
        Some(bias) => bias
            .iter()
            .zip(scale)
            .zip(shift)
            .map(|((b, s), t)| b * s + t)
            .collect(),
        None => shift.to_vec(),
    };
    let bias_dims = vec![bias.len()];
    let scaled = DerivedValues::ScaledParam {
        param,
        scale: scale.to_vec(),
    };
    let w = b.derived_f32(&at.hint("folded_weight"), w_shape, scaled);
    let bias = b.derived_f32(
        &at.hint("folded_bias"),
        bias_dims,
        DerivedValues::Values(bias),
    );
    Ok(vec![at.input(0)?, w, bias])
}

pub(super) fn deconv(b: &mut Builder<'_>, at: &At<'_>, op: &Deconv) -> R<()> {
    b.push(
        "ConvTranspose",
        at.inputs()?,
        vec![at.out()?],
        vec![
            attr_ints("kernel_shape", &ints(&op.kernel)),
            attr_ints("strides", &ints(&op.stride)),
            attr_ints("dilations", &ints(&op.dilation)),
            attr_ints("pads", &symmetric_pads(&op.pad)),
            attr_ints("output_padding", &ints(&op.output_padding)),
            attr_int("group", op.groups as i64),
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use crate::testing::values;
    use std::collections::HashMap;
    use std::sync::Arc;

    use ward_core::{DType, Tensor};
    use ward_graph::ir::{Graph, GraphInput, GraphOutput, InputRole, Node, ParamDecl, Source};
    use ward_graph::ops::conv::Conv;
    use ward_graph::ops::norm::BatchNorm;

    use crate::onnx::{lower_with, Params};
    use crate::{Executable, TractBackend, WeightSet};

    const IN: usize = 6;
    const OUT: usize = 4;
    const H: usize = 3;
    const W: usize = 5;

    /// A 1×1 convolution of a (2, 6, 3, 5) input to 4 channels, with its bias, and, when
    /// `norm`, a batch norm after it (which the lowering folds into it).
    fn pointwise_graph(norm: bool) -> Graph {
        let mut g = Graph::new();
        g.inputs.push(GraphInput {
            name: "x".into(),
            dtype: DType::F32,
            role: InputRole::Data,
        });
        g.params
            .push(ParamDecl::new("w", DType::F32, vec![OUT, IN, 1, 1]));
        g.params.push(ParamDecl::new("b", DType::F32, vec![OUT]));
        g.nodes.push(Node {
            name: "conv".into(),
            op: Conv {
                kernel: vec![1, 1],
                stride: vec![1, 1],
                dilation: vec![1, 1],
                pad: vec![0, 0],
                groups: 1,
                bias: true,
            }
            .into(),
            inputs: vec![Source::Input(0), Source::Param(0), Source::Param(1)],
        });
        if norm {
            for name in ["gamma", "beta", "mean", "var"] {
                g.params.push(ParamDecl::new(name, DType::F32, vec![OUT]));
            }
            g.nodes.push(Node {
                name: "bn".into(),
                op: BatchNorm {
                    axis: 1,
                    eps: 1e-5,
                    fix_gamma: false,
                    momentum: 0.9,
                    use_global_stats: false,
                }
                .into(),
                inputs: vec![
                    Source::Node(0, 0),
                    Source::Param(2),
                    Source::Param(3),
                    Source::Param(4),
                    Source::Param(5),
                ],
            });
        }
        g.outputs.push(GraphOutput {
            name: "y".into(),
            source: Source::Node(g.nodes.len() - 1, 0),
        });
        g.validate().unwrap();
        g
    }

    fn op_types(proto: &tract_onnx::pb::ModelProto) -> Vec<&str> {
        let nodes = proto
            .graph
            .as_ref()
            .map(|g| g.node.as_slice())
            .unwrap_or_default();
        nodes.iter().map(|n| n.op_type.as_str()).collect()
    }

    /// For the engine a pointwise convolution is an `Einsum` over a 2-D weight (with a
    /// following batch norm folded in), for a written ONNX file a `Conv`; both compute
    /// the convolution.
    #[test]
    fn a_pointwise_convolution_reaches_the_engine_as_a_product_over_channels() {
        for norm in [false, true] {
            let g = pointwise_graph(norm);
            let mut weights = vec![
                Tensor::from_f32(vec![OUT, IN, 1, 1], &values(OUT * IN, 1)).unwrap(),
                Tensor::from_f32(vec![OUT], &values(OUT, 2)).unwrap(),
            ];
            // gamma, beta, mean, and a variance kept positive.
            let stats: Vec<Vec<f32>> = (0..4u32)
                .map(|k| {
                    values(OUT, 3 + k)
                        .iter()
                        .map(|v| if k == 3 { v.abs() + 0.5 } else { *v })
                        .collect()
                })
                .collect();
            if norm {
                weights.extend(
                    stats
                        .iter()
                        .map(|s| Tensor::from_f32(vec![OUT], s).unwrap()),
                );
            }
            let shapes = [vec![2, IN, H, W]];

            let (engine, params) = lower_with(&g, &weights, &shapes, Params::Inputs).unwrap();
            let ops = op_types(&engine);
            assert!(ops.contains(&"Einsum") && !ops.contains(&"Conv"), "{ops:?}");
            assert_eq!(params.derived[0].dims, [OUT, IN], "the weight is 2-D");
            let (file, _) = lower_with(&g, &weights, &shapes, Params::Initializers).unwrap();
            let file_ops = op_types(&file);
            assert!(
                file_ops.contains(&"Conv") && !file_ops.contains(&"Einsum"),
                "{file_ops:?}"
            );

            let names = ["w", "b", "gamma", "beta", "mean", "var"];
            let named: HashMap<String, Tensor> = names
                .iter()
                .map(|n| n.to_string())
                .zip(weights.iter().cloned())
                .collect();
            let set = WeightSet::new(&g, named).unwrap();
            let model = Executable::new(g, set, Arc::new(TractBackend::new(1).unwrap())).unwrap();
            let x = values(2 * IN * H * W, 9);
            let got = model
                .run(&[Tensor::from_f32(vec![2, IN, H, W], &x).unwrap()])
                .unwrap()
                .remove(0);
            assert_eq!(got.shape(), [2, OUT, H, W]);
            let got = got.to_f32_vec();
            let (w, b) = (values(OUT * IN, 1), values(OUT, 2));
            for n in 0..2 {
                for o in 0..OUT {
                    for p in 0..H * W {
                        let mut want = b[o]
                            + (0..IN)
                                .map(|i| w[o * IN + i] * x[(n * IN + i) * H * W + p])
                                .sum::<f32>();
                        if norm {
                            let (gamma, beta, mean, var) =
                                (stats[0][o], stats[1][o], stats[2][o], stats[3][o]);
                            want = (want - mean) / (var + 1e-5).sqrt() * gamma + beta;
                        }
                        let have = got[(n * OUT + o) * H * W + p];
                        assert!(
                            (have - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "norm {norm}: {have} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
