//! Lowering of a ward graph to an ONNX `ModelProto` (opset 17) for concrete input shapes.
//!
//! The same proto feeds tract (the CPU backend) and `ward export onnx`. Lowering happens
//! once per set of input shapes, so every shape is known: MXNet semantics that ONNX has
//! no operator for (reshape codes, `full` pooling divisors, per-group norms, the packed
//! RNN parameter vector) become plain ONNX operators on constants computed here.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use ward_core::{DType, Tensor};

use crate::ir::{
    ActivationKind, BinaryKind, Graph, LeakyReluKind, Node, Op, PadMode, PoolKind, RnnMode,
    ScalarKind, SoftmaxOutputMode, Source, UnaryKind,
};
use crate::shape::{infer_shapes, mean_axes, resolve_axis, Shapes};
use crate::GraphError;

pub const OPSET: i64 = 17;

/// Lowers `graph` with `weights` (one tensor per param, in order) for `input_shapes`.
pub fn lower(
    graph: &Graph,
    weights: &[Tensor],
    input_shapes: &[Vec<usize>],
) -> Result<ModelProto, GraphError> {
    let shapes = infer_shapes(graph, input_shapes)?;
    let mut b = Builder::new(graph, weights, &shapes);
    b.plan_norm_folding();
    for (i, input) in graph.inputs.iter().enumerate() {
        b.used.insert(input.name.clone());
        b.graph_inputs
            .push(value_info(&input.name, input.dtype, &shapes.inputs[i]));
        if input.dtype != DType::F32 {
            let cast = b.fresh(&format!("{}/f32", input.name));
            b.push(
                "Cast",
                vec![input.name.clone()],
                vec![cast.clone()],
                vec![attr_int("to", DataType::Float as i64)],
            );
            b.input_names.push(cast);
        } else {
            b.input_names.push(input.name.clone());
        }
    }
    for (index, node) in graph.nodes.iter().enumerate() {
        let outs: Vec<String> = (0..node.op.num_outputs())
            .map(|k| {
                b.fresh(&if k == 0 {
                    node.name.clone()
                } else {
                    format!("{}:{k}", node.name)
                })
            })
            .collect();
        b.node_names.push(outs.clone());
        b.lower_node(index, node, &outs)
            .map_err(|reason| GraphError::node(node, reason))?;
    }
    let mut outputs = Vec::new();
    for output in &graph.outputs {
        let name = b.value(output.source);
        let shape = shapes.of(graph, output.source).to_vec();
        // ONNX names outputs by value; an alias keeps the user-facing name.
        let alias = output.name.clone();
        if b.used.contains(&alias) && name != alias {
            return Err(GraphError::Output {
                output: alias,
                reason: "name collides with an internal value".into(),
            });
        }
        if name != alias {
            b.used.insert(alias.clone());
            b.push("Identity", vec![name], vec![alias.clone()], vec![]);
        }
        outputs.push(value_info(&alias, DType::F32, &shape));
    }
    b.param_initializers();
    let graph_proto = GraphProto {
        node: b.nodes,
        name: "ward".into(),
        initializer: b.initializers,
        input: b.graph_inputs,
        output: outputs,
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: 8,
        producer_name: "ward".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        graph: Some(graph_proto),
        ..Default::default()
    })
}

fn elem_type(dtype: DType) -> i32 {
    (match dtype {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::F16 => DataType::Float16,
        DType::BF16 => DataType::Bfloat16,
        DType::U8 => DataType::Uint8,
        DType::I8 => DataType::Int8,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::Bool => DataType::Bool,
    }) as i32
}

fn value_info(name: &str, dtype: DType, shape: &[usize]) -> ValueInfoProto {
    let dims = shape
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(*d as i64)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem_type(dtype),
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn attr_strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Strings as i32,
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

fn ints(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

type R<T> = Result<T, String>;

struct Builder<'a> {
    graph: &'a Graph,
    weights: &'a [Tensor],
    shapes: &'a Shapes,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    graph_inputs: Vec<ValueInfoProto>,
    input_names: Vec<String>,
    node_names: Vec<Vec<String>>,
    used: HashSet<String>,
    /// Convolutions whose only reader is a batch norm: conv index → that norm's
    /// per-channel (scale, shift), folded into the convolution's weights and bias.
    folded_norms: HashMap<usize, (Vec<f32>, Vec<f32>)>,
    /// Batch norms folded into the convolution before them: lowered as identity.
    folded_away: HashSet<usize>,
}

impl<'a> Builder<'a> {
    fn new(graph: &'a Graph, weights: &'a [Tensor], shapes: &'a Shapes) -> Self {
        let mut used = HashSet::new();
        for p in &graph.params {
            used.insert(p.name.clone());
        }
        Builder {
            graph,
            weights,
            shapes,
            nodes: Vec::new(),
            initializers: Vec::new(),
            graph_inputs: Vec::new(),
            input_names: Vec::new(),
            node_names: Vec::new(),
            used,
            folded_norms: HashMap::new(),
            folded_away: HashSet::new(),
        }
    }

    /// A value name not used yet, based on `base`.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(name.clone());
        name
    }

    fn push(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: outputs,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Adds a node with one fresh output and returns that output's name.
    fn op(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
        hint: &str,
    ) -> String {
        let out = self.fresh(hint);
        self.push(op, inputs, vec![out.clone()], attrs);
        out
    }

    fn initializer(
        &mut self,
        name: &str,
        dims: &[usize],
        data_type: DataType,
        raw: Vec<u8>,
    ) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            dims: ints(dims),
            data_type: data_type as i32,
            raw_data: raw,
            name: name.clone(),
            ..Default::default()
        });
        name
    }

    fn const_f32(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(hint, dims, DataType::Float, raw)
    }

    fn scalar_f32(&mut self, hint: &str, v: f32) -> String {
        self.const_f32(hint, &[], &[v])
    }

    fn const_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(hint, &[values.len()], DataType::Int64, raw)
    }

    /// The ONNX value for a source; params become float32 initializers on first use.
    fn value(&mut self, source: Source) -> String {
        match source {
            Source::Input(i) => self.input_names[i].clone(),
            Source::Node(n, k) => self.node_names[n][k].clone(),
            // Materialised by `param_initializers` only if some node reads it.
            Source::Param(p) => self.graph.params[p].name.clone(),
        }
    }

    /// Float32 initializers for the params that some node reads.
    fn param_initializers(&mut self) {
        let read: HashSet<&str> = self
            .nodes
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .collect();
        let mut added = Vec::new();
        for (p, decl) in self.graph.params.iter().enumerate() {
            if read.contains(decl.name.as_str()) {
                added.push(TensorProto {
                    dims: ints(&decl.shape),
                    data_type: DataType::Float as i32,
                    raw_data: self.weights[p].to_f32().into_bytes(),
                    name: decl.name.clone(),
                    ..Default::default()
                });
            }
        }
        self.initializers.extend(added);
    }

    /// The per-channel scale and shift of a batch norm whose statistics are all constants,
    /// computed in f64.
    fn norm_scale_shift(&self, node: &Node, channels: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        let Op::BatchNorm { eps, fix_gamma, .. } = node.op else {
            return None;
        };
        let stats: Vec<Vec<f32>> = node.inputs[1..5]
            .iter()
            .map(|s| self.param_values(*s))
            .collect::<Option<_>>()?;
        let [gamma, beta, mean, var] = &stats[..] else {
            return None;
        };
        let mut scale = vec![0f32; channels];
        let mut shift = vec![0f32; channels];
        for i in 0..channels {
            let g = if fix_gamma { 1.0 } else { gamma[i] as f64 };
            let s = g / (var[i] as f64 + eps).sqrt();
            scale[i] = s as f32;
            shift[i] = (beta[i] as f64 - mean[i] as f64 * s) as f32;
        }
        Some((scale, shift))
    }

    /// Finds each convolution with constant weights read only by a channel-axis batch norm
    /// with constant statistics, so the norm can be folded into the convolution.
    fn plan_norm_folding(&mut self) {
        let mut readers: HashMap<usize, usize> = HashMap::new();
        for node in &self.graph.nodes {
            for s in &node.inputs {
                if let Source::Node(n, _) = s {
                    *readers.entry(*n).or_default() += 1;
                }
            }
        }
        for o in &self.graph.outputs {
            if let Source::Node(n, _) = o.source {
                *readers.entry(n).or_default() += 2;
            }
        }
        for (index, node) in self.graph.nodes.iter().enumerate() {
            let (Op::BatchNorm { axis, .. }, Some(Source::Node(conv, 0))) =
                (&node.op, node.inputs.first())
            else {
                continue;
            };
            let conv_node = &self.graph.nodes[*conv];
            let rank = self.shapes.nodes[*conv][0].len();
            let channel_axis = resolve_axis(*axis, rank).ok() == Some(1);
            let constant_weights = conv_node.inputs[1..]
                .iter()
                .all(|s| matches!(s, Source::Param(_)));
            if !matches!(conv_node.op, Op::Conv { .. })
                || !channel_axis
                || !constant_weights
                || readers.get(conv) != Some(&1)
            {
                continue;
            }
            let channels = self.shapes.nodes[*conv][0][1];
            if let Some(fold) = self.norm_scale_shift(node, channels) {
                self.folded_norms.insert(*conv, fold);
                self.folded_away.insert(index);
            }
        }
    }

    /// The constant values of a param source, if it is one.
    fn param_values(&self, source: Source) -> Option<Vec<f32>> {
        match source {
            Source::Param(p) => Some(self.weights[p].to_f32_vec()),
            _ => None,
        }
    }

    fn shape(&self, source: Source) -> Vec<usize> {
        self.shapes.of(self.graph, source).to_vec()
    }

    fn reshape(&mut self, x: String, dims: &[usize], hint: &str) -> String {
        let shape = self.const_i64(&format!("{hint}/shape"), &ints(dims));
        self.op("Reshape", vec![x, shape], vec![], hint)
    }

    /// A 1-D per-channel vector shaped to broadcast along `axis` of a rank-`rank` tensor.
    fn along_axis(&mut self, v: Source, axis: usize, rank: usize, hint: &str) -> String {
        let len = self.shape(v).iter().product::<usize>();
        let mut dims = vec![1; rank];
        dims[axis] = len;
        if let Some(values) = self.param_values(v) {
            return self.const_f32(hint, &dims, &values);
        }
        let x = self.value(v);
        self.reshape(x, &dims, hint)
    }

    /// (x - mean) / sqrt(var + eps) with mean and var over `axes`, all in-graph.
    fn normalize(&mut self, x: String, axes: &[usize], eps: f64, hint: &str) -> String {
        let axes = ints(axes);
        let mean = self.op(
            "ReduceMean",
            vec![x.clone()],
            vec![attr_ints("axes", &axes), attr_int("keepdims", 1)],
            &format!("{hint}/mean"),
        );
        let centered = self.op("Sub", vec![x, mean], vec![], &format!("{hint}/centered"));
        let squared = self.op(
            "Mul",
            vec![centered.clone(), centered.clone()],
            vec![],
            &format!("{hint}/sq"),
        );
        let var = self.op(
            "ReduceMean",
            vec![squared],
            vec![attr_ints("axes", &axes), attr_int("keepdims", 1)],
            &format!("{hint}/var"),
        );
        let eps = self.scalar_f32(&format!("{hint}/eps"), eps as f32);
        let var_eps = self.op("Add", vec![var, eps], vec![], &format!("{hint}/var_eps"));
        let std = self.op("Sqrt", vec![var_eps], vec![], &format!("{hint}/std"));
        self.op("Div", vec![centered, std], vec![], &format!("{hint}/norm"))
    }

    /// Convolution inputs with a following norm folded in: w'[f] = w[f]·scale[f],
    /// b'[f] = b[f]·scale[f] + shift[f].
    fn folded_conv_inputs(
        &mut self,
        conv: &Node,
        data: &str,
        scale: &[f32],
        shift: &[f32],
    ) -> Vec<String> {
        let w_shape = self.shape(conv.inputs[1]);
        let mut w = self.param_values(conv.inputs[1]).unwrap_or_default();
        let per_filter = (w.len() / scale.len().max(1)).max(1);
        for (f, chunk) in w.chunks_mut(per_filter).enumerate() {
            for v in chunk {
                *v *= scale[f];
            }
        }
        let bias: Vec<f32> = match conv.inputs.get(2).and_then(|b| self.param_values(*b)) {
            Some(b) => b
                .iter()
                .zip(scale)
                .zip(shift)
                .map(|((b, s), t)| b * s + t)
                .collect(),
            None => shift.to_vec(),
        };
        let w = self.const_f32(&format!("{}/folded_weight", conv.name), &w_shape, &w);
        let b = self.const_f32(&format!("{}/folded_bias", conv.name), &[bias.len()], &bias);
        vec![data.to_string(), w, b]
    }

    fn affine(&mut self, x: String, scale: String, shift: String, out: &str) {
        let scaled = self.op("Mul", vec![x, scale], vec![], &format!("{out}/scaled"));
        self.push("Add", vec![scaled, shift], vec![out.to_string()], vec![]);
    }

    fn lower_node(&mut self, index: usize, node: &Node, outs: &[String]) -> R<()> {
        let x_src = node.inputs.first().copied();
        let xs = x_src.map(|s| self.shape(s)).unwrap_or_default();
        let ins: Vec<String> = node.inputs.iter().map(|s| self.value(*s)).collect();
        let out = outs[0].clone();
        let h = node.name.clone();
        let out_shape = self.shapes.nodes[index][0].clone();
        match &node.op {
            Op::Conv {
                kernel,
                stride,
                dilation,
                pad,
                groups,
                ..
            } => {
                let pads: Vec<i64> = ints(pad).iter().chain(ints(pad).iter()).copied().collect();
                let ins = match self.folded_norms.remove(&index) {
                    Some((scale, shift)) => self.folded_conv_inputs(node, &ins[0], &scale, &shift),
                    None => ins,
                };
                self.push(
                    "Conv",
                    ins,
                    vec![out],
                    vec![
                        attr_ints("kernel_shape", &ints(kernel)),
                        attr_ints("strides", &ints(stride)),
                        attr_ints("dilations", &ints(dilation)),
                        attr_ints("pads", &pads),
                        attr_int("group", *groups as i64),
                    ],
                );
            }
            Op::Deconv {
                kernel,
                stride,
                dilation,
                pad,
                output_padding,
                groups,
                ..
            } => {
                let pads: Vec<i64> = ints(pad).iter().chain(ints(pad).iter()).copied().collect();
                self.push(
                    "ConvTranspose",
                    ins,
                    vec![out],
                    vec![
                        attr_ints("kernel_shape", &ints(kernel)),
                        attr_ints("strides", &ints(stride)),
                        attr_ints("dilations", &ints(dilation)),
                        attr_ints("pads", &pads),
                        attr_ints("output_padding", &ints(output_padding)),
                        attr_int("group", *groups as i64),
                    ],
                );
            }
            Op::Dense { flatten, bias, .. } => {
                let w = node.inputs[1];
                let ws = self.shape(w);
                let mut x = ins[0].clone();
                if *flatten && xs.len() != 2 {
                    x = self.op(
                        "Flatten",
                        vec![x],
                        vec![attr_int("axis", 1)],
                        &format!("{h}/flat"),
                    );
                }
                let wt = match self.param_values(w) {
                    Some(values) => {
                        let (rows, cols) = (ws[0], ws[1]);
                        let mut t = vec![0f32; values.len()];
                        for r in 0..rows {
                            for c in 0..cols {
                                t[c * rows + r] = values[r * cols + c];
                            }
                        }
                        self.const_f32(&format!("{h}/weight_t"), &[cols, rows], &t)
                    }
                    None => self.op(
                        "Transpose",
                        vec![ins[1].clone()],
                        vec![attr_ints("perm", &[1, 0])],
                        &format!("{h}/weight_t"),
                    ),
                };
                if *bias {
                    let product = self.op("MatMul", vec![x, wt], vec![], &format!("{h}/matmul"));
                    self.push("Add", vec![product, ins[2].clone()], vec![out], vec![]);
                } else {
                    self.push("MatMul", vec![x, wt], vec![out], vec![]);
                }
            }
            Op::Pool {
                kind,
                kernel,
                stride,
                pad,
                global,
                count_include_pad,
                // The output size already reflects `ceil`; lowering pads to reach it.
                ..
            } => self.lower_pool(
                node,
                &ins[0],
                &xs,
                &out_shape,
                &out,
                *kind,
                kernel,
                stride,
                pad,
                *global,
                *count_include_pad,
            )?,
            Op::BatchNorm { .. } if self.folded_away.contains(&index) => {
                self.push("Identity", vec![ins[0].clone()], vec![out], vec![]);
            }
            Op::BatchNorm {
                axis,
                eps,
                fix_gamma,
            } => {
                let a = resolve_axis(*axis, xs.len())?;
                let c = xs[a];
                let mut dims = vec![1; xs.len()];
                dims[a] = c;
                if let Some((scale, shift)) = self.norm_scale_shift(node, c) {
                    let scale = self.const_f32(&format!("{h}/scale"), &dims, &scale);
                    let shift = self.const_f32(&format!("{h}/shift"), &dims, &shift);
                    self.affine(ins[0].clone(), scale, shift, &out);
                } else {
                    let mean = self.along_axis(node.inputs[3], a, xs.len(), &format!("{h}/mean"));
                    let var = self.along_axis(node.inputs[4], a, xs.len(), &format!("{h}/var"));
                    let beta = self.along_axis(node.inputs[2], a, xs.len(), &format!("{h}/beta"));
                    let centered = self.op(
                        "Sub",
                        vec![ins[0].clone(), mean],
                        vec![],
                        &format!("{h}/centered"),
                    );
                    let eps = self.scalar_f32(&format!("{h}/eps"), *eps as f32);
                    let var_eps = self.op("Add", vec![var, eps], vec![], &format!("{h}/var_eps"));
                    let std = self.op("Sqrt", vec![var_eps], vec![], &format!("{h}/std"));
                    let mut normed =
                        self.op("Div", vec![centered, std], vec![], &format!("{h}/norm"));
                    if !fix_gamma {
                        let gamma =
                            self.along_axis(node.inputs[1], a, xs.len(), &format!("{h}/gamma"));
                        normed =
                            self.op("Mul", vec![normed, gamma], vec![], &format!("{h}/scaled"));
                    }
                    self.push("Add", vec![normed, beta], vec![out], vec![]);
                }
            }
            Op::InstanceNorm { eps } => {
                let axes: Vec<usize> = (2..xs.len()).collect();
                let normed = self.normalize(ins[0].clone(), &axes, *eps, &h);
                let gamma = self.along_axis(node.inputs[1], 1, xs.len(), &format!("{h}/gamma"));
                let beta = self.along_axis(node.inputs[2], 1, xs.len(), &format!("{h}/beta"));
                self.affine(normed, gamma, beta, &out);
            }
            Op::LayerNorm { axis, eps } => {
                let a = resolve_axis(*axis, xs.len())?;
                let normed = self.normalize(ins[0].clone(), &[a], *eps, &h);
                let gamma = self.along_axis(node.inputs[1], a, xs.len(), &format!("{h}/gamma"));
                let beta = self.along_axis(node.inputs[2], a, xs.len(), &format!("{h}/beta"));
                self.affine(normed, gamma, beta, &out);
            }
            Op::GroupNorm { groups, eps } => {
                let rest: usize = xs[1..].iter().product::<usize>() / groups;
                let grouped = self.reshape(
                    ins[0].clone(),
                    &[xs[0], *groups, rest],
                    &format!("{h}/grouped"),
                );
                let normed = self.normalize(grouped, &[2], *eps, &h);
                let gamma = self.along_axis(node.inputs[1], 1, 3, &format!("{h}/gamma"));
                let beta = self.along_axis(node.inputs[2], 1, 3, &format!("{h}/beta"));
                let y = self.fresh(&format!("{h}/affine"));
                self.affine(normed, gamma, beta, &y);
                let shape = self.const_i64(&format!("{h}/shape"), &ints(&xs));
                self.push("Reshape", vec![y, shape], vec![out], vec![]);
            }
            Op::Activation { kind } => {
                let op = match kind {
                    ActivationKind::Relu => "Relu",
                    ActivationKind::Sigmoid => "Sigmoid",
                    ActivationKind::Tanh => "Tanh",
                    ActivationKind::Softrelu => "Softplus",
                    ActivationKind::Softsign => "Softsign",
                };
                self.push(op, ins, vec![out], vec![]);
            }
            Op::LeakyRelu { kind } => match kind {
                LeakyReluKind::Leaky { slope } => self.push(
                    "LeakyRelu",
                    ins,
                    vec![out],
                    vec![attr_float("alpha", *slope as f32)],
                ),
                LeakyReluKind::Elu { slope } => self.push(
                    "Elu",
                    ins,
                    vec![out],
                    vec![attr_float("alpha", *slope as f32)],
                ),
                LeakyReluKind::Selu => self.push(
                    "Selu",
                    ins,
                    vec![out],
                    vec![
                        attr_float("alpha", 1.673_263_2),
                        attr_float("gamma", 1.050_701),
                    ],
                ),
                LeakyReluKind::Gelu => {
                    let inv_sqrt2 =
                        self.scalar_f32(&format!("{h}/inv_sqrt2"), std::f32::consts::FRAC_1_SQRT_2);
                    let scaled = self.op(
                        "Mul",
                        vec![ins[0].clone(), inv_sqrt2],
                        vec![],
                        &format!("{h}/scaled"),
                    );
                    let erf = self.op("Erf", vec![scaled], vec![], &format!("{h}/erf"));
                    let one = self.scalar_f32(&format!("{h}/one"), 1.0);
                    let plus = self.op("Add", vec![erf, one], vec![], &format!("{h}/plus1"));
                    let half = self.scalar_f32(&format!("{h}/half"), 0.5);
                    let hx = self.op(
                        "Mul",
                        vec![ins[0].clone(), half],
                        vec![],
                        &format!("{h}/half_x"),
                    );
                    self.push("Mul", vec![hx, plus], vec![out], vec![]);
                }
                LeakyReluKind::Prelu => {
                    let slope = if self.shape(node.inputs[1]) == [1] || xs.len() < 2 {
                        ins[1].clone()
                    } else {
                        self.along_axis(node.inputs[1], 1, xs.len(), &format!("{h}/slope"))
                    };
                    self.push("PRelu", vec![ins[0].clone(), slope], vec![out], vec![]);
                }
            },
            Op::Softmax {
                axis,
                temperature,
                log,
            } => {
                let mut x = ins[0].clone();
                if *temperature != 1.0 {
                    let t = self.scalar_f32(&format!("{h}/temperature"), *temperature as f32);
                    x = self.op("Div", vec![x, t], vec![], &format!("{h}/tempered"));
                }
                let op = if *log { "LogSoftmax" } else { "Softmax" };
                self.push(op, vec![x], vec![out], vec![attr_int("axis", *axis)]);
            }
            Op::SoftmaxOutput { mode } => match mode {
                SoftmaxOutputMode::Flatten if xs.len() != 2 => {
                    let rest = xs[1..].iter().product::<usize>();
                    let flat = self.reshape(ins[0].clone(), &[xs[0], rest], &format!("{h}/flat"));
                    let soft = self.op(
                        "Softmax",
                        vec![flat],
                        vec![attr_int("axis", 1)],
                        &format!("{h}/softmax"),
                    );
                    let shape = self.const_i64(&format!("{h}/shape"), &ints(&xs));
                    self.push("Reshape", vec![soft, shape], vec![out], vec![]);
                }
                SoftmaxOutputMode::Flatten | SoftmaxOutputMode::Channel => {
                    let axis = if xs.len() == 1 { 0 } else { 1 };
                    self.push("Softmax", ins, vec![out], vec![attr_int("axis", axis)])
                }
                SoftmaxOutputMode::Last => {
                    self.push("Softmax", ins, vec![out], vec![attr_int("axis", -1)])
                }
            },
            Op::Reshape { .. } => {
                let shape = self.const_i64(&format!("{h}/shape"), &ints(&out_shape));
                self.push("Reshape", vec![ins[0].clone(), shape], vec![out], vec![]);
            }
            Op::Flatten => self.push("Flatten", ins, vec![out], vec![attr_int("axis", 1)]),
            Op::Dropout => self.push("Identity", ins, vec![out], vec![]),
            Op::Concat { axis } => {
                let a = resolve_axis(*axis, xs.len())?;
                self.push("Concat", ins, vec![out], vec![attr_int("axis", a as i64)]);
            }
            Op::Binary { kind, .. } => {
                let op = match kind {
                    BinaryKind::Add => "Add",
                    BinaryKind::Sub => "Sub",
                    BinaryKind::Mul => "Mul",
                    BinaryKind::Div => "Div",
                    BinaryKind::Max => "Max",
                    BinaryKind::Min => "Min",
                };
                self.push(op, ins, vec![out], vec![]);
            }
            Op::AddN => self.push("Sum", ins, vec![out], vec![]),
            Op::Scalar { kind, value } => {
                let c = self.scalar_f32(&format!("{h}/scalar"), *value as f32);
                let x = ins[0].clone();
                let (op, args) = match kind {
                    ScalarKind::Add => ("Add", vec![x, c]),
                    ScalarKind::Sub => ("Sub", vec![x, c]),
                    ScalarKind::RSub => ("Sub", vec![c, x]),
                    ScalarKind::Mul => ("Mul", vec![x, c]),
                    ScalarKind::Div => ("Div", vec![x, c]),
                    ScalarKind::RDiv => ("Div", vec![c, x]),
                };
                self.push(op, args, vec![out], vec![]);
            }
            Op::Unary { kind } => {
                let op = match kind {
                    UnaryKind::Relu => "Relu",
                    UnaryKind::Sigmoid => "Sigmoid",
                    UnaryKind::Tanh => "Tanh",
                    UnaryKind::Exp => "Exp",
                    UnaryKind::Log => "Log",
                    UnaryKind::Sqrt => "Sqrt",
                    UnaryKind::Abs => "Abs",
                    UnaryKind::Neg => "Neg",
                };
                self.push(op, ins, vec![out], vec![]);
            }
            Op::Clip { min, max } => {
                let lo = self.scalar_f32(&format!("{h}/min"), *min as f32);
                let hi = self.scalar_f32(&format!("{h}/max"), *max as f32);
                self.push("Clip", vec![ins[0].clone(), lo, hi], vec![out], vec![]);
            }
            Op::Embedding { input_dim, .. } => {
                let lo = self.scalar_f32(&format!("{h}/min"), 0.0);
                let hi = self.scalar_f32(&format!("{h}/max"), (*input_dim - 1) as f32);
                let clipped = self.op(
                    "Clip",
                    vec![ins[0].clone(), lo, hi],
                    vec![],
                    &format!("{h}/clipped"),
                );
                // Cast truncates toward zero, as MXNet does before clipping; clipping
                // first gives the same index for every finite id.
                let ids = self.op(
                    "Cast",
                    vec![clipped],
                    vec![attr_int("to", DataType::Int64 as i64)],
                    &format!("{h}/ids"),
                );
                self.push(
                    "Gather",
                    vec![ins[1].clone(), ids],
                    vec![out],
                    vec![attr_int("axis", 0)],
                );
            }
            Op::SwapAxes { axis1, axis2 } => {
                let (a, b) = (
                    resolve_axis(*axis1, xs.len())?,
                    resolve_axis(*axis2, xs.len())?,
                );
                let mut perm: Vec<usize> = (0..xs.len()).collect();
                perm.swap(a, b);
                self.push(
                    "Transpose",
                    ins,
                    vec![out],
                    vec![attr_ints("perm", &ints(&perm))],
                );
            }
            Op::SequenceLast { axis } => {
                let a = resolve_axis(*axis, xs.len())?;
                let last = self.initializer(
                    &format!("{h}/last"),
                    &[],
                    DataType::Int64,
                    ((xs[a] - 1) as i64).to_le_bytes().to_vec(),
                );
                self.push(
                    "Gather",
                    vec![ins[0].clone(), last],
                    vec![out],
                    vec![attr_int("axis", a as i64)],
                );
            }
            Op::Split {
                axis,
                outputs,
                squeeze,
            } => {
                let a = resolve_axis(*axis, xs.len())?;
                let part = xs[a] / outputs;
                let split = self.const_i64(&format!("{h}/split"), &vec![part as i64; *outputs]);
                if *squeeze {
                    let parts: Vec<String> = (0..*outputs)
                        .map(|k| self.fresh(&format!("{h}/part{k}")))
                        .collect();
                    self.push(
                        "Split",
                        vec![ins[0].clone(), split],
                        parts.clone(),
                        vec![attr_int("axis", a as i64)],
                    );
                    let axes = self.const_i64(&format!("{h}/axes"), &[a as i64]);
                    for (part, o) in parts.into_iter().zip(outs) {
                        self.push("Squeeze", vec![part, axes.clone()], vec![o.clone()], vec![]);
                    }
                } else {
                    self.push(
                        "Split",
                        vec![ins[0].clone(), split],
                        outs.to_vec(),
                        vec![attr_int("axis", a as i64)],
                    );
                }
            }
            Op::Stack { axis } => {
                let a = resolve_axis(*axis, xs.len() + 1)?;
                let axes = self.const_i64(&format!("{h}/axes"), &[a as i64]);
                let parts: Vec<String> = ins
                    .iter()
                    .enumerate()
                    .map(|(k, x)| {
                        self.op(
                            "Unsqueeze",
                            vec![x.clone(), axes.clone()],
                            vec![],
                            &format!("{h}/item{k}"),
                        )
                    })
                    .collect();
                self.push("Concat", parts, vec![out], vec![attr_int("axis", a as i64)]);
            }
            Op::Mean { keepdims, .. } => {
                let axes = mean_axes(&node.op, xs.len())?;
                if axes.is_empty() {
                    self.push("Identity", ins, vec![out], vec![]);
                } else {
                    self.push(
                        "ReduceMean",
                        ins,
                        vec![out],
                        vec![
                            attr_ints("axes", &ints(&axes)),
                            attr_int("keepdims", *keepdims as i64),
                        ],
                    );
                }
            }
            Op::Fill { value, .. } => {
                let n: usize = out_shape.iter().product();
                let c = self.const_f32(&format!("{h}/value"), &out_shape, &vec![*value as f32; n]);
                self.push("Identity", vec![c], vec![out], vec![]);
            }
            Op::OnesLike => {
                let n: usize = out_shape.iter().product();
                let c = self.const_f32(&format!("{h}/ones"), &out_shape, &vec![1.0; n]);
                self.push("Identity", vec![c], vec![out], vec![]);
            }
            Op::Pad { mode, pads, value } => {
                let rank = xs.len();
                let mut onnx_pads = vec![0i64; 2 * rank];
                for i in 0..rank {
                    onnx_pads[i] = pads[2 * i] as i64;
                    onnx_pads[rank + i] = pads[2 * i + 1] as i64;
                }
                let p = self.const_i64(&format!("{h}/pads"), &onnx_pads);
                let mut args = vec![ins[0].clone(), p];
                // tract pads with the constant whenever one is given, whatever the mode.
                if *mode == PadMode::Constant {
                    args.push(self.scalar_f32(&format!("{h}/value"), *value as f32));
                }
                let mode = match mode {
                    PadMode::Constant => "constant",
                    PadMode::Edge => "edge",
                    PadMode::Reflect => "reflect",
                };
                self.push("Pad", args, vec![out], vec![attr_string("mode", mode)]);
            }
            Op::Rnn {
                mode,
                hidden,
                layers,
                bidirectional,
                state_outputs,
            } => self.lower_rnn(
                node,
                &ins,
                &xs,
                outs,
                *mode,
                *hidden,
                *layers,
                *bidirectional,
                *state_outputs,
            )?,
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn lower_pool(
        &mut self,
        node: &Node,
        x: &str,
        xs: &[usize],
        out_shape: &[usize],
        out: &str,
        kind: PoolKind,
        kernel: &[usize],
        stride: &[usize],
        pad: &[usize],
        global: bool,
        count_include_pad: bool,
    ) -> R<()> {
        let h = &node.name;
        let x = x.to_string();
        if global {
            let spatial: usize = xs[2..].iter().product();
            match kind {
                PoolKind::Max => self.push("GlobalMaxPool", vec![x], vec![out.into()], vec![]),
                PoolKind::Avg => self.push("GlobalAveragePool", vec![x], vec![out.into()], vec![]),
                PoolKind::Sum => {
                    let avg = self.op("GlobalAveragePool", vec![x], vec![], &format!("{h}/avg"));
                    let n = self.scalar_f32(&format!("{h}/count"), spatial as f32);
                    self.push("Mul", vec![avg, n], vec![out.into()], vec![]);
                }
            }
            return Ok(());
        }
        let k = kernel.len();
        // Pad the end so that floor division gives MXNet's (possibly ceil) output size;
        // the extra padding never counts in the divisor (fixed below).
        let mut pads_begin = Vec::with_capacity(k);
        let mut pads_end = Vec::with_capacity(k);
        for i in 0..k {
            let needed = (out_shape[i + 2] - 1) * stride[i] + kernel[i];
            let have = xs[i + 2] + 2 * pad[i];
            pads_begin.push(pad[i] as i64);
            pads_end.push((pad[i] + needed.saturating_sub(have)) as i64);
        }
        let pads: Vec<i64> = pads_begin.iter().chain(pads_end.iter()).copied().collect();
        let attrs = vec![
            attr_ints("kernel_shape", &ints(kernel)),
            attr_ints("strides", &ints(stride)),
            attr_ints("pads", &pads),
        ];
        if kind == PoolKind::Max {
            self.push("MaxPool", vec![x], vec![out.into()], attrs);
            return Ok(());
        }
        let mut attrs = attrs;
        attrs.push(attr_int("count_include_pad", 1));
        // AveragePool with count_include_pad gives sum / kernel area everywhere; MXNet
        // divides by the window clipped to the padded extent (or the input extent).
        let window: usize = kernel.iter().product();
        let spatial_out = &out_shape[2..];
        let cells: usize = spatial_out.iter().product();
        let mut factor = vec![0f32; cells];
        let mut uniform = true;
        for (cell, f) in factor.iter_mut().enumerate() {
            let mut rem = cell;
            let mut divisor = 1usize;
            for i in (0..k).rev() {
                let o = rem % spatial_out[i];
                rem /= spatial_out[i];
                let start = (o * stride[i]) as i64 - pad[i] as i64;
                let padded_end = (start + kernel[i] as i64).min((xs[i + 2] + pad[i]) as i64);
                let extent = if count_include_pad {
                    padded_end - start
                } else {
                    padded_end.min(xs[i + 2] as i64) - start.max(0)
                };
                divisor *= extent.max(1) as usize;
            }
            *f = match kind {
                PoolKind::Sum => window as f32,
                _ => window as f32 / divisor as f32,
            };
            uniform &= *f == 1.0;
        }
        if uniform {
            self.push("AveragePool", vec![x], vec![out.into()], attrs);
            return Ok(());
        }
        let avg = self.op("AveragePool", vec![x], attrs, &format!("{h}/avg"));
        let mut dims = vec![1, 1];
        dims.extend_from_slice(spatial_out);
        let f = self.const_f32(&format!("{h}/divisor"), &dims, &factor);
        self.push("Mul", vec![avg, f], vec![out.into()], vec![]);
        Ok(())
    }

    /// One ONNX LSTM/GRU/RNN node per layer, with MXNet's flat parameter vector sliced
    /// and its gates reordered in-graph (constant-folded by the backend).
    #[allow(clippy::too_many_arguments)]
    fn lower_rnn(
        &mut self,
        node: &Node,
        ins: &[String],
        xs: &[usize],
        outs: &[String],
        mode: RnnMode,
        hidden: usize,
        layers: usize,
        bidirectional: bool,
        state_outputs: bool,
    ) -> R<()> {
        let h = node.name.clone();
        let (t, n, input) = (xs[0], xs[1], xs[2]);
        let dirs = if bidirectional { 2 } else { 1 };
        let g = mode.gates();
        let gh = g * hidden;
        // ONNX gate order, as indices into MXNet's: LSTM iofc from ifgo, GRU zrh from rzn.
        let perm: Vec<i64> = match mode {
            RnnMode::Lstm => vec![0, 3, 1, 2],
            RnnMode::Gru => vec![1, 0, 2],
            RnnMode::RnnTanh | RnnMode::RnnRelu => vec![0],
        };
        let perm = self.const_i64(&format!("{h}/gate_perm"), &perm);
        let flat = ins[1].clone();
        let mut offset = 0usize;
        let mut slice = |b: &mut Self, len: usize, dims: &[usize], hint: &str| -> String {
            let starts = b.const_i64(&format!("{hint}/start"), &[offset as i64]);
            let ends = b.const_i64(&format!("{hint}/end"), &[(offset + len) as i64]);
            offset += len;
            let piece = b.op("Slice", vec![flat.clone(), starts, ends], vec![], hint);
            // (G, H, rest) → reorder gates → (G·H, rest)
            let mut grouped = vec![g, hidden];
            grouped.extend_from_slice(&dims[1..]);
            let grouped = b.reshape(piece, &grouped, &format!("{hint}/gates"));
            let reordered = b.op(
                "Gather",
                vec![grouped, perm.clone()],
                vec![attr_int("axis", 0)],
                &format!("{hint}/reordered"),
            );
            b.reshape(reordered, dims, &format!("{hint}/onnx"))
        };
        let in_of = |l: usize| if l == 0 { input } else { dirs * hidden };
        let mut w = vec![vec![String::new(); dirs]; layers];
        let mut r = vec![vec![String::new(); dirs]; layers];
        for l in 0..layers {
            for d in 0..dirs {
                w[l][d] = slice(
                    self,
                    gh * in_of(l),
                    &[gh, in_of(l)],
                    &format!("{h}/l{l}d{d}/W"),
                );
                r[l][d] = slice(self, gh * hidden, &[gh, hidden], &format!("{h}/l{l}d{d}/R"));
            }
        }
        let mut bias_w = vec![vec![String::new(); dirs]; layers];
        let mut bias_r = vec![vec![String::new(); dirs]; layers];
        for l in 0..layers {
            for d in 0..dirs {
                bias_w[l][d] = slice(self, gh, &[gh], &format!("{h}/l{l}d{d}/Wb"));
                bias_r[l][d] = slice(self, gh, &[gh], &format!("{h}/l{l}d{d}/Rb"));
            }
        }
        if mode == RnnMode::RnnRelu {
            let weights = RnnWeights {
                w: &w,
                r: &r,
                bias_w: &bias_w,
                bias_r: &bias_r,
            };
            return self.lower_unrolled_relu_rnn(
                node,
                ins,
                xs,
                outs,
                &weights,
                hidden,
                layers,
                dirs,
                state_outputs,
            );
        }
        let mut bias = vec![vec![String::new(); dirs]; layers];
        for l in 0..layers {
            for d in 0..dirs {
                bias[l][d] = self.op(
                    "Concat",
                    vec![bias_w[l][d].clone(), bias_r[l][d].clone()],
                    vec![attr_int("axis", 0)],
                    &format!("{h}/l{l}d{d}/B"),
                );
            }
        }
        let zero_axis = self.const_i64(&format!("{h}/axis0"), &[0]);
        let stack = |b: &mut Self, parts: &[String], hint: &str| -> String {
            let items: Vec<String> = parts
                .iter()
                .map(|p| {
                    b.op(
                        "Unsqueeze",
                        vec![p.clone(), zero_axis.clone()],
                        vec![],
                        &format!("{hint}/item"),
                    )
                })
                .collect();
            b.op("Concat", items, vec![attr_int("axis", 0)], hint)
        };
        let state_rows = |b: &mut Self, state: &str, l: usize, hint: &str| -> String {
            let starts = b.const_i64(&format!("{hint}/start"), &[(l * dirs) as i64]);
            let ends = b.const_i64(&format!("{hint}/end"), &[((l + 1) * dirs) as i64]);
            b.op("Slice", vec![state.to_string(), starts, ends], vec![], hint)
        };
        let (op, mut attrs) = match mode {
            RnnMode::Lstm => ("LSTM", vec![]),
            RnnMode::Gru => ("GRU", vec![attr_int("linear_before_reset", 1)]),
            RnnMode::RnnTanh => (
                "RNN",
                vec![attr_strings(
                    "activations",
                    &if dirs == 2 {
                        vec!["Tanh", "Tanh"]
                    } else {
                        vec!["Tanh"]
                    },
                )],
            ),
            RnnMode::RnnRelu => return Err("relu RNNs are lowered unrolled".into()),
        };
        attrs.push(attr_int("hidden_size", hidden as i64));
        attrs.push(attr_string(
            "direction",
            if bidirectional {
                "bidirectional"
            } else {
                "forward"
            },
        ));
        let mut x = ins[0].clone();
        let mut final_h = Vec::new();
        let mut final_c = Vec::new();
        for l in 0..layers {
            let hint = format!("{h}/l{l}");
            let w_l = stack(self, &w[l], &format!("{hint}/W"));
            let r_l = stack(self, &r[l], &format!("{hint}/R"));
            let b_l = stack(self, &bias[l], &format!("{hint}/B"));
            let h0 = state_rows(self, &ins[2], l, &format!("{hint}/h0"));
            let mut inputs = vec![x, w_l, r_l, b_l, String::new(), h0];
            if mode == RnnMode::Lstm {
                inputs.push(state_rows(self, &ins[3], l, &format!("{hint}/c0")));
            }
            let y = self.fresh(&format!("{hint}/Y"));
            let yh = self.fresh(&format!("{hint}/Y_h"));
            let mut outputs = vec![y.clone(), yh.clone()];
            if mode == RnnMode::Lstm {
                let yc = self.fresh(&format!("{hint}/Y_c"));
                outputs.push(yc.clone());
                final_c.push(yc);
            }
            final_h.push(yh);
            self.push(op, inputs, outputs, attrs.clone());
            // (T, D, N, H) → (T, N, D, H) → (T, N, D·H)
            let tr = self.op(
                "Transpose",
                vec![y],
                vec![attr_ints("perm", &[0, 2, 1, 3])],
                &format!("{hint}/Y_tnd"),
            );
            x = if l + 1 == layers {
                let shape = self.const_i64(
                    &format!("{hint}/out_shape"),
                    &[t as i64, n as i64, (dirs * hidden) as i64],
                );
                self.push("Reshape", vec![tr, shape], vec![outs[0].clone()], vec![]);
                outs[0].clone()
            } else {
                self.reshape(tr, &[t, n, dirs * hidden], &format!("{hint}/out"))
            };
        }
        if state_outputs {
            self.push(
                "Concat",
                final_h,
                vec![outs[1].clone()],
                vec![attr_int("axis", 0)],
            );
            if mode == RnnMode::Lstm {
                self.push(
                    "Concat",
                    final_c,
                    vec![outs[2].clone()],
                    vec![attr_int("axis", 0)],
                );
            }
        }
        Ok(())
    }
}

/// One recurrent stack's weights, in ONNX layout, per layer then direction.
struct RnnWeights<'w> {
    w: &'w [Vec<String>],
    r: &'w [Vec<String>],
    bias_w: &'w [Vec<String>],
    bias_r: &'w [Vec<String>],
}

impl Builder<'_> {
    /// A ReLU RNN unrolled over its (known) sequence length: tract's ONNX `RNN` always
    /// applies tanh, whatever `activations` says.
    #[allow(clippy::too_many_arguments)]
    fn lower_unrolled_relu_rnn(
        &mut self,
        node: &Node,
        ins: &[String],
        xs: &[usize],
        outs: &[String],
        weights: &RnnWeights<'_>,
        hidden: usize,
        layers: usize,
        dirs: usize,
        state_outputs: bool,
    ) -> R<()> {
        let h = node.name.clone();
        let (t, n) = (xs[0], xs[1]);
        let mut x = ins[0].clone();
        let mut finals = Vec::new();
        let axis0 = self.const_i64(&format!("{h}/axis0"), &[0]);
        for l in 0..layers {
            let mut per_dir = Vec::new();
            for d in 0..dirs {
                let hint = format!("{h}/l{l}d{d}");
                let wt = self.op(
                    "Transpose",
                    vec![weights.w[l][d].clone()],
                    vec![attr_ints("perm", &[1, 0])],
                    &format!("{hint}/Wt"),
                );
                let rt = self.op(
                    "Transpose",
                    vec![weights.r[l][d].clone()],
                    vec![attr_ints("perm", &[1, 0])],
                    &format!("{hint}/Rt"),
                );
                let b = self.op(
                    "Add",
                    vec![weights.bias_w[l][d].clone(), weights.bias_r[l][d].clone()],
                    vec![],
                    &format!("{hint}/b"),
                );
                let proj = self.op("MatMul", vec![x.clone(), wt], vec![], &format!("{hint}/xW"));
                let proj = self.op("Add", vec![proj, b], vec![], &format!("{hint}/xWb"));
                let row = l * dirs + d;
                let starts = self.const_i64(&format!("{hint}/h0/start"), &[row as i64]);
                let ends = self.const_i64(&format!("{hint}/h0/end"), &[row as i64 + 1]);
                let h0 = self.op(
                    "Slice",
                    vec![ins[2].clone(), starts, ends],
                    vec![],
                    &format!("{hint}/h0"),
                );
                let mut state = self.reshape(h0, &[n, hidden], &format!("{hint}/h0_2d"));
                let mut steps = vec![String::new(); t];
                let order: Vec<usize> = if d == 0 {
                    (0..t).collect()
                } else {
                    (0..t).rev().collect()
                };
                for step in order {
                    let idx = self.initializer(
                        &format!("{hint}/t{step}"),
                        &[],
                        DataType::Int64,
                        (step as i64).to_le_bytes().to_vec(),
                    );
                    let xt = self.op(
                        "Gather",
                        vec![proj.clone(), idx],
                        vec![attr_int("axis", 0)],
                        &format!("{hint}/x{step}"),
                    );
                    let hr = self.op(
                        "MatMul",
                        vec![state, rt.clone()],
                        vec![],
                        &format!("{hint}/hR{step}"),
                    );
                    let pre = self.op("Add", vec![xt, hr], vec![], &format!("{hint}/pre{step}"));
                    state = self.op("Relu", vec![pre], vec![], &format!("{hint}/h{step}"));
                    steps[step] = self.op(
                        "Unsqueeze",
                        vec![state.clone(), axis0.clone()],
                        vec![],
                        &format!("{hint}/y{step}"),
                    );
                }
                finals.push(self.op(
                    "Unsqueeze",
                    vec![state, axis0.clone()],
                    vec![],
                    &format!("{hint}/h_final"),
                ));
                per_dir.push(self.op(
                    "Concat",
                    steps,
                    vec![attr_int("axis", 0)],
                    &format!("{hint}/Y"),
                ));
            }
            let last = l + 1 == layers;
            let y = if last {
                outs[0].clone()
            } else {
                self.fresh(&format!("{h}/l{l}/out"))
            };
            self.push(
                "Concat",
                per_dir,
                vec![y.clone()],
                vec![attr_int("axis", 2)],
            );
            x = y;
        }
        if state_outputs {
            self.push(
                "Concat",
                finals,
                vec![outs[1].clone()],
                vec![attr_int("axis", 0)],
            );
        }
        Ok(())
    }
}

/// Encodes a model proto to bytes (what `ward export onnx` writes).
pub fn encode(model: &ModelProto) -> Vec<u8> {
    use prost::Message;
    model.encode_to_vec()
}
