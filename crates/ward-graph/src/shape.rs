//! Shape inference: the shape of every value from the shapes of the graph inputs.
//!
//! Inference is where a graph meets its weights: every operator checks its inputs'
//! shapes (a convolution's weight against its data, a batch norm's statistics against
//! the channel count, ...) and reports a precise error naming the node. All arithmetic on
//! dims is checked, so hostile shapes give an error and never an overflow.

use crate::ir::{FillDim, Graph, Node, Op, PadMode, SoftmaxOutputMode, Source, MAX_RANK};
use crate::GraphError;

pub type Shape = Vec<usize>;

/// Most elements of any value a graph computes (4 GiB of float32). The largest activation
/// of the census models at batch 8 is under 10 million elements; the bound stops a crafted
/// graph from asking the backend for an absurd allocation.
pub const MAX_VALUE_ELEMENTS: usize = 1 << 30;

/// The shapes of every node's outputs, indexed by node then output.
#[derive(Debug, Clone, PartialEq)]
pub struct Shapes {
    pub inputs: Vec<Shape>,
    pub nodes: Vec<Vec<Shape>>,
}

impl Shapes {
    pub fn of<'a>(&'a self, graph: &'a Graph, source: Source) -> &'a [usize] {
        match source {
            Source::Input(i) => &self.inputs[i],
            Source::Param(p) => &graph.params[p].shape,
            Source::Node(n, k) => &self.nodes[n][k],
        }
    }
}

/// Infers every shape for concrete input shapes. The graph must have passed
/// [`Graph::validate`], which guarantees that every source exists and comes first.
pub fn infer_shapes(graph: &Graph, input_shapes: &[Shape]) -> Result<Shapes, GraphError> {
    if input_shapes.len() != graph.inputs.len() {
        return Err(GraphError::InputCount {
            expected: graph.inputs.len(),
            actual: input_shapes.len(),
        });
    }
    let mut shapes = Shapes {
        inputs: input_shapes.to_vec(),
        nodes: Vec::with_capacity(graph.nodes.len()),
    };
    for node in &graph.nodes {
        let ins: Vec<&[usize]> = node.inputs.iter().map(|s| shapes.of(graph, *s)).collect();
        let outs = infer_node(node, &ins).map_err(|reason| GraphError::node(node, reason))?;
        for s in &outs {
            let elements = ward_core::tensor::element_count(s);
            if elements.is_none_or(|n| n > MAX_VALUE_ELEMENTS) {
                return Err(GraphError::node(
                    node,
                    format!("output shape {s:?} has more than {MAX_VALUE_ELEMENTS} elements"),
                ));
            }
            if s.len() > MAX_RANK {
                return Err(GraphError::node(
                    node,
                    format!("output rank {} exceeds {MAX_RANK}", s.len()),
                ));
            }
            count(s)?;
        }
        shapes.nodes.push(outs);
    }
    Ok(shapes)
}

type R<T> = Result<T, String>;

fn count(shape: &[usize]) -> Result<usize, GraphError> {
    ward_core::tensor::element_count(shape)
        .ok_or_else(|| GraphError::Backend(format!("shape {shape:?} overflows")))
}

fn product(dims: &[usize]) -> R<usize> {
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

fn expect_shape(what: &str, actual: &[usize], expected: &[usize]) -> R<()> {
    if actual != expected {
        return Err(format!(
            "{what} has shape {actual:?}, expected {expected:?}"
        ));
    }
    Ok(())
}

fn expect_rank(what: &str, shape: &[usize], rank: usize) -> R<()> {
    if shape.len() != rank {
        return Err(format!(
            "{what} has rank {} ({shape:?}), expected {rank}",
            shape.len()
        ));
    }
    Ok(())
}

fn same_shapes(ins: &[&[usize]]) -> R<Shape> {
    let first = ins.first().ok_or("has no inputs")?;
    for (i, s) in ins.iter().enumerate().skip(1) {
        if s != first {
            return Err(format!("input {i} has shape {s:?}, input 0 has {first:?}"));
        }
    }
    Ok(first.to_vec())
}

/// Numpy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> R<Shape> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// The extent of a dilated kernel, d·(k − 1) + 1.
fn effective_kernel(kernel: usize, dilation: usize) -> R<usize> {
    kernel
        .checked_sub(1)
        .and_then(|k| k.checked_mul(dilation))
        .and_then(|k| k.checked_add(1))
        .ok_or_else(|| format!("kernel {kernel} with dilation {dilation} overflows"))
}

fn double(pad: usize) -> R<usize> {
    pad.checked_mul(2)
        .ok_or_else(|| format!("pad {pad} overflows"))
}

/// Output length of a sliding window, or an error when the window does not fit.
fn window_out(x: usize, k_eff: usize, pad_total: usize, stride: usize, ceil: bool) -> R<usize> {
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

fn infer_node(node: &Node, ins: &[&[usize]]) -> R<Vec<Shape>> {
    let x = ins.first().copied().unwrap_or(&[]);
    let one = |s: Shape| Ok(vec![s]);
    match &node.op {
        Op::Conv {
            kernel,
            stride,
            dilation,
            pad,
            groups,
            bias,
        } => {
            let k = kernel.len();
            expect_rank("data", x, k + 2)?;
            let w = ins[1];
            expect_rank("weight", w, k + 2)?;
            let (c, f) = (x[1], w[0]);
            if c % groups != 0 || f % groups != 0 {
                return Err(format!(
                    "{c} input and {f} output channels are not divisible by {groups} groups"
                ));
            }
            let mut expected_w = vec![f, c / groups];
            expected_w.extend_from_slice(kernel);
            expect_shape("weight", w, &expected_w)?;
            if *bias {
                expect_shape("bias", ins[2], &[f])?;
            }
            let mut out = vec![x[0], f];
            for i in 0..k {
                let k_eff = effective_kernel(kernel[i], dilation[i])?;
                out.push(window_out(
                    x[i + 2],
                    k_eff,
                    double(pad[i])?,
                    stride[i],
                    false,
                )?);
            }
            one(out)
        }
        Op::Deconv {
            kernel,
            stride,
            dilation,
            pad,
            output_padding,
            groups,
            bias,
        } => {
            let k = kernel.len();
            expect_rank("data", x, k + 2)?;
            let w = ins[1];
            let c = x[1];
            if c % groups != 0 {
                return Err(format!(
                    "{c} input channels are not divisible by {groups} groups"
                ));
            }
            let f = w.get(1).copied().unwrap_or(0) * groups;
            let mut expected_w = vec![c, f / groups];
            expected_w.extend_from_slice(kernel);
            expect_shape("weight", w, &expected_w)?;
            if *bias {
                expect_shape("bias", ins[2], &[f])?;
            }
            let mut out = vec![x[0], f];
            for i in 0..k {
                let grown = stride[i]
                    .checked_mul(x[i + 2].saturating_sub(1))
                    .and_then(|v| {
                        effective_kernel(kernel[i], dilation[i])
                            .ok()
                            .and_then(|k| k.checked_add(output_padding[i]))
                            .and_then(|k| v.checked_add(k))
                    })
                    .ok_or("output size overflows")?;
                let size = grown
                    .checked_sub(double(pad[i])?)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        format!(
                            "pad {} removes the whole output along axis {}",
                            pad[i],
                            i + 2
                        )
                    })?;
                out.push(size);
            }
            one(out)
        }
        Op::Dense {
            units,
            flatten,
            bias,
        } => {
            if x.is_empty() {
                return Err("data must have at least one dim".into());
            }
            let (lead, inner) = if *flatten {
                (vec![x[0]], product(&x[1..])?)
            } else {
                (x[..x.len() - 1].to_vec(), x[x.len() - 1])
            };
            expect_shape("weight", ins[1], &[*units, inner])?;
            if *bias {
                expect_shape("bias", ins[2], &[*units])?;
            }
            let mut out = lead;
            out.push(*units);
            one(out)
        }
        Op::Pool {
            kernel,
            stride,
            pad,
            ceil,
            global,
            ..
        } => {
            if *global {
                if x.len() < 3 {
                    return Err(format!("global pooling needs a spatial input, got {x:?}"));
                }
                let mut out = x[..2].to_vec();
                out.resize(x.len(), 1);
                return one(out);
            }
            let k = kernel.len();
            expect_rank("data", x, k + 2)?;
            let mut out = x[..2].to_vec();
            for i in 0..k {
                out.push(window_out(
                    x[i + 2],
                    kernel[i],
                    double(pad[i])?,
                    stride[i],
                    *ceil,
                )?);
            }
            one(out)
        }
        Op::BatchNorm { axis, .. } => {
            let a = resolve_axis(*axis, x.len())?;
            for (i, what) in ["gamma", "beta", "moving mean", "moving var"]
                .iter()
                .enumerate()
            {
                expect_shape(what, ins[i + 1], &[x[a]])?;
            }
            one(x.to_vec())
        }
        Op::InstanceNorm { .. } => {
            if x.len() < 3 {
                return Err(format!("data must have spatial dims, got {x:?}"));
            }
            expect_shape("gamma", ins[1], &[x[1]])?;
            expect_shape("beta", ins[2], &[x[1]])?;
            one(x.to_vec())
        }
        Op::LayerNorm { axis, .. } => {
            let a = resolve_axis(*axis, x.len())?;
            expect_shape("gamma", ins[1], &[x[a]])?;
            expect_shape("beta", ins[2], &[x[a]])?;
            one(x.to_vec())
        }
        Op::GroupNorm { groups, .. } => {
            if x.len() < 2 || x[1] % groups != 0 {
                return Err(format!(
                    "data {x:?} must have channels divisible by {groups} groups"
                ));
            }
            expect_shape("gamma", ins[1], &[*groups])?;
            expect_shape("beta", ins[2], &[*groups])?;
            one(x.to_vec())
        }
        Op::LeakyRelu {
            kind: crate::ir::LeakyReluKind::Prelu,
        } => {
            let g = ins[1];
            let channels = x.get(1).copied().unwrap_or(1);
            if g != [1] && g != [channels] {
                return Err(format!(
                    "prelu slope has shape {g:?}, expected [1] or [{channels}]"
                ));
            }
            one(x.to_vec())
        }
        Op::Activation { .. }
        | Op::LeakyRelu { .. }
        | Op::Dropout
        | Op::Unary { .. }
        | Op::Scalar { .. }
        | Op::Clip { .. }
        | Op::OnesLike => one(x.to_vec()),
        Op::Softmax { axis, .. } => {
            resolve_axis(*axis, x.len())?;
            one(x.to_vec())
        }
        Op::SoftmaxOutput { mode } => {
            let min_rank = if *mode == SoftmaxOutputMode::Channel {
                2
            } else {
                1
            };
            if x.len() < min_rank {
                return Err(format!("data {x:?} needs rank at least {min_rank}"));
            }
            one(x.to_vec())
        }
        Op::Reshape { shape, reverse } => one(mxnet_reshape(x, shape, *reverse)?),
        Op::Flatten => {
            if x.is_empty() {
                return Err("cannot flatten a scalar".into());
            }
            one(vec![x[0], product(&x[1..])?])
        }
        Op::Concat { axis } => {
            let a = resolve_axis(*axis, x.len())?;
            let mut out = x.to_vec();
            out[a] = 0;
            for (i, s) in ins.iter().enumerate() {
                if s.len() != x.len()
                    || s.iter()
                        .zip(x.iter())
                        .enumerate()
                        .any(|(d, (p, q))| d != a && p != q)
                {
                    return Err(format!(
                        "input {i} has shape {s:?}, which does not match {x:?} outside axis {a}"
                    ));
                }
                out[a] = out[a]
                    .checked_add(s[a])
                    .ok_or("concatenated size overflows")?;
            }
            one(out)
        }
        Op::Binary { broadcast: b, .. } => {
            if *b {
                one(broadcast(ins[0], ins[1])?)
            } else {
                one(same_shapes(ins)?)
            }
        }
        Op::AddN => one(same_shapes(ins)?),
        Op::Embedding {
            input_dim,
            output_dim,
        } => {
            expect_shape("weight", ins[1], &[*input_dim, *output_dim])?;
            let mut out = x.to_vec();
            out.push(*output_dim);
            one(out)
        }
        Op::SwapAxes { axis1, axis2 } => {
            let (a, b) = (
                resolve_axis(*axis1, x.len())?,
                resolve_axis(*axis2, x.len())?,
            );
            let mut out = x.to_vec();
            out.swap(a, b);
            one(out)
        }
        Op::SequenceLast { axis } => {
            let a = resolve_axis(*axis, x.len())?;
            if x[a] == 0 {
                return Err("the sequence is empty".into());
            }
            let mut out = x.to_vec();
            out.remove(a);
            one(out)
        }
        Op::Split {
            axis,
            outputs,
            squeeze,
        } => {
            let a = resolve_axis(*axis, x.len())?;
            if x[a] % outputs != 0 {
                return Err(format!(
                    "axis {a} of size {} does not split into {outputs} equal parts",
                    x[a]
                ));
            }
            let mut part = x.to_vec();
            part[a] /= outputs;
            if *squeeze {
                if part[a] != 1 {
                    return Err(format!(
                        "squeeze_axis needs parts of size 1 along axis {a}, got {}",
                        part[a]
                    ));
                }
                part.remove(a);
            }
            Ok(vec![part; *outputs])
        }
        Op::Stack { axis } => {
            let s = same_shapes(ins)?;
            let a = resolve_axis(*axis, s.len() + 1)?;
            let mut out = s;
            out.insert(a, ins.len());
            one(out)
        }
        Op::Mean { .. } => one(mean_shape(&node.op, x)?),
        Op::Fill { shape, .. } => {
            let mut out = Vec::with_capacity(shape.len());
            for d in shape {
                out.push(match *d {
                    FillDim::Fixed(n) => n,
                    FillDim::Like { input, axis } => {
                        *ins.get(input).and_then(|s| s.get(axis)).ok_or_else(|| {
                            format!("fill copies dim {axis} of input {input}, which does not exist")
                        })?
                    }
                });
            }
            one(out)
        }
        Op::Pad { mode, pads, .. } => {
            if x.len() != 4 && x.len() != 5 {
                return Err(format!("pad needs a 4-D or 5-D input, got {x:?}"));
            }
            if pads.len() != 2 * x.len() {
                return Err(format!(
                    "pads has {} values, expected {} for rank {}",
                    pads.len(),
                    2 * x.len(),
                    x.len()
                ));
            }
            if pads[..4].iter().any(|p| *p != 0) {
                return Err("the batch and channel axes cannot be padded".into());
            }
            let mut out = Vec::with_capacity(x.len());
            for (i, d) in x.iter().enumerate() {
                let (b, a) = (pads[2 * i], pads[2 * i + 1]);
                if *mode == PadMode::Reflect && (b >= *d || a >= *d) {
                    return Err(format!(
                        "reflect pads ({b}, {a}) must be smaller than dim {i} of size {d}"
                    ));
                }
                out.push(
                    d.checked_add(b)
                        .and_then(|v| v.checked_add(a))
                        .ok_or("padded size overflows")?,
                );
            }
            one(out)
        }
        Op::Rnn {
            mode,
            hidden,
            layers,
            bidirectional,
            state_outputs,
        } => {
            expect_rank("data", x, 3)?;
            let (t, n, input) = (x[0], x[1], x[2]);
            let dirs = if *bidirectional { 2 } else { 1 };
            let expected = rnn_param_count(*mode, input, *hidden, *layers, dirs)
                .ok_or("parameter count overflows")?;
            expect_shape("parameters", ins[1], &[expected])?;
            let state = vec![
                layers.checked_mul(dirs).ok_or("state rows overflow")?,
                n,
                *hidden,
            ];
            expect_shape("initial state", ins[2], &state)?;
            if ins.len() > 3 {
                expect_shape("initial cell", ins[3], &state)?;
            }
            let mut outs = vec![vec![
                t,
                n,
                dirs.checked_mul(*hidden).ok_or("output width overflows")?,
            ]];
            if *state_outputs {
                outs.push(state.clone());
                if *mode == crate::ir::RnnMode::Lstm {
                    outs.push(state);
                }
            }
            Ok(outs)
        }
    }
}

/// Σ over layers of D·G·H·(in_l + H + 2), MXNet's flat parameter length.
pub fn rnn_param_count(
    mode: crate::ir::RnnMode,
    input: usize,
    hidden: usize,
    layers: usize,
    dirs: usize,
) -> Option<usize> {
    let g = mode.gates();
    let mut total = 0usize;
    for l in 0..layers {
        let in_l = if l == 0 {
            input
        } else {
            dirs.checked_mul(hidden)?
        };
        let per = dirs
            .checked_mul(g)?
            .checked_mul(hidden)?
            .checked_mul(in_l.checked_add(hidden)?.checked_add(2)?)?;
        total = total.checked_add(per)?;
    }
    Some(total)
}

/// The axes a `Mean` reduces, sorted and resolved.
pub fn mean_axes(op: &Op, rank: usize) -> R<Vec<usize>> {
    let Op::Mean { axes, exclude, .. } = op else {
        return Err("not a mean".into());
    };
    let mut listed = match axes {
        None => (0..rank).collect::<Vec<_>>(),
        Some(a) => a
            .iter()
            .map(|&x| resolve_axis(x, rank))
            .collect::<R<Vec<_>>>()?,
    };
    listed.sort_unstable();
    listed.dedup();
    if *exclude && axes.is_some() {
        listed = (0..rank).filter(|a| !listed.contains(a)).collect();
    }
    Ok(listed)
}

fn mean_shape(op: &Op, x: &[usize]) -> R<Shape> {
    let Op::Mean { keepdims, .. } = op else {
        return Err("not a mean".into());
    };
    let axes = mean_axes(op, x.len())?;
    let mut out = Vec::new();
    for (i, d) in x.iter().enumerate() {
        if axes.contains(&i) {
            if *keepdims {
                out.push(1);
            }
        } else {
            out.push(*d);
        }
    }
    Ok(out)
}

/// MXNet's `Reshape` shape codes, applied exactly as MXNet 1.9.1's `InferReshapeShape`
/// does, including its handling of `reverse` (both the input dims and the codes are
/// reversed, processed left to right, and the result reversed back).
pub fn mxnet_reshape(input: &[usize], codes: &[i64], reverse: bool) -> R<Shape> {
    let mut dims: Vec<usize> = input.to_vec();
    let mut codes: Vec<i64> = codes.to_vec();
    if reverse {
        dims.reverse();
        codes.reverse();
    }
    let total = product(&dims)?;
    let mut out: Vec<usize> = Vec::new();
    let mut src = 0usize;
    let mut inferred: Option<usize> = None;
    let take = |src: &mut usize, what: &str| -> R<usize> {
        let d = dims.get(*src).copied().ok_or_else(|| {
            format!(
                "code {what} needs input dim {}, but the input {input:?} has {}",
                *src,
                dims.len()
            )
        })?;
        *src += 1;
        Ok(d)
    };
    let mut i = 0;
    while i < codes.len() {
        match codes[i] {
            0 => out.push(take(&mut src, "0")?),
            -1 => {
                if inferred.is_some() {
                    return Err("reshape has more than one -1".into());
                }
                inferred = Some(out.len());
                out.push(1);
                src += 1;
            }
            -2 => {
                while src < dims.len() {
                    out.push(dims[src]);
                    src += 1;
                }
            }
            -3 => {
                let a = take(&mut src, "-3")?;
                let b = take(&mut src, "-3")?;
                out.push(a.checked_mul(b).ok_or("merged dim overflows")?);
            }
            -4 => {
                let d0 = take(&mut src, "-4")?;
                let (Some(&c1), Some(&c2)) = (codes.get(i + 1), codes.get(i + 2)) else {
                    return Err("code -4 must be followed by two values".into());
                };
                i += 2;
                let (d1, d2) = match (c1, c2) {
                    (-1, -1) => return Err("code -4 cannot split into -1 and -1".into()),
                    (-1, b) if b > 0 => (d0 / b as usize, b as usize),
                    (a, -1) if a > 0 => (a as usize, d0 / a as usize),
                    (a, b) if a > 0 && b > 0 => (a as usize, b as usize),
                    (a, b) => return Err(format!("code -4 has invalid split ({a}, {b})")),
                };
                if d1.checked_mul(d2) != Some(d0) {
                    return Err(format!(
                        "code -4 splits {d0} into {d1} × {d2}, which does not match"
                    ));
                }
                out.push(d1);
                out.push(d2);
            }
            d if d > 0 => {
                out.push(usize::try_from(d).map_err(|_| format!("dim {d} is too large"))?);
                src += 1;
            }
            d => return Err(format!("invalid reshape code {d}")),
        }
        i += 1;
    }
    if let Some(at) = inferred {
        let known = product(&out)?;
        if known == 0 || total % known != 0 {
            return Err(format!(
                "cannot infer -1: {total} elements do not divide by {known}"
            ));
        }
        out[at] = total / known;
    }
    if product(&out)? != total {
        return Err(format!(
            "reshape of {input:?} to {out:?} changes the element count"
        ));
    }
    if reverse {
        out.reverse();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seven examples of MXNet's Reshape documentation.
    #[test]
    fn reshape_codes_match_mxnet_docs() {
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[4, 0, 2], false).unwrap(),
            vec![4, 3, 2]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[2, 0, 0], false).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[6, 1, -1], false).unwrap(),
            vec![6, 1, 4]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[3, -1, 8], false).unwrap(),
            vec![3, 1, 8]
        );
        assert_eq!(mxnet_reshape(&[2, 3, 4], &[-1], false).unwrap(), vec![24]);
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[-2], false).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[2, -2], false).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[-2, 1, 1], false).unwrap(),
            vec![2, 3, 4, 1, 1]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4, 5], &[-3, -3], false).unwrap(),
            vec![6, 20]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[0, -3], false).unwrap(),
            vec![2, 12]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[-3, -2], false).unwrap(),
            vec![6, 4]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[-4, 1, 2, -2], false).unwrap(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(
            mxnet_reshape(&[2, 3, 4], &[2, -4, -1, 3, -2], false).unwrap(),
            vec![2, 1, 3, 4]
        );
        assert_eq!(
            mxnet_reshape(&[10, 5, 4], &[-1, 0], false).unwrap(),
            vec![40, 5]
        );
        assert_eq!(
            mxnet_reshape(&[10, 5, 4], &[-1, 0], true).unwrap(),
            vec![50, 4]
        );
    }

    #[test]
    fn reshape_refuses_bad_codes() {
        assert!(mxnet_reshape(&[2, 3], &[-1, -1], false).is_err());
        assert!(mxnet_reshape(&[2, 3], &[-5], false).is_err());
        assert!(mxnet_reshape(&[2, 3], &[5], false).is_err());
        assert!(mxnet_reshape(&[2, 3], &[0, 0, 0], false).is_err());
        assert!(mxnet_reshape(&[6], &[-4, -1, -1], false).is_err());
        assert!(mxnet_reshape(&[6], &[-4, 4, -1], false).is_err());
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert!(broadcast(&[2, 3], &[3, 2]).is_err());
    }

    #[test]
    fn windows_use_floor_or_ceil() {
        assert_eq!(window_out(7, 2, 0, 2, false).unwrap(), 3);
        assert_eq!(window_out(7, 2, 0, 2, true).unwrap(), 4);
        assert!(window_out(1, 3, 0, 1, false).is_err());
    }

    #[test]
    fn rnn_param_count_matches_mxnet_packing() {
        // 2-layer bidirectional LSTM, I=16, H=24: 2·4·24·(16+24+2) + 2·4·24·(48+24+2)
        assert_eq!(
            rnn_param_count(crate::ir::RnnMode::Lstm, 16, 24, 2, 2),
            Some(2 * 4 * 24 * 42 + 2 * 4 * 24 * 74)
        );
    }
}
