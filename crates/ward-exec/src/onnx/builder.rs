//! What the operator families build the ONNX graph with: the builder (fresh names,
//! nodes, constants, the graph's values) and the node being lowered.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use ward_core::{DType, Tensor};
use ward_graph::dtypes::DTypes;
use ward_graph::ir::{Graph, Node, Source};
use ward_graph::shape::Shapes;

/// A lowering rule's answer: what went wrong in words; the caller names the node.
pub(crate) type R<T> = Result<T, String>;

/// The node being lowered: its inputs' ONNX names, its data input's shape, its outputs'
/// names and its first output's shape.
pub(crate) struct At<'n> {
    pub index: usize,
    pub node: &'n Node,
    /// ONNX names of the inputs; `None` for a label, which inference does not feed.
    pub ins: Vec<Option<String>>,
    /// The shape of input 0 (empty when the node has no inputs).
    pub xs: Vec<usize>,
    pub outs: Vec<String>,
    pub out_shape: Vec<usize>,
}

impl<'n> At<'n> {
    pub(crate) fn new(
        b: &Builder<'_>,
        index: usize,
        node: &'n Node,
        outs: Vec<String>,
    ) -> R<At<'n>> {
        let ins = node
            .inputs
            .iter()
            .map(|s| match s {
                Source::Input(i) => Ok(b.input_names.get(*i).cloned().flatten()),
                other => b.value(*other).map(Some),
            })
            .collect::<R<Vec<_>>>()?;
        let xs = match node.inputs.first() {
            Some(s) => b
                .shapes
                .get(b.graph, *s)
                .map(<[usize]>::to_vec)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let out_shape = b
            .shapes
            .nodes
            .get(index)
            .and_then(|o| o.first())
            .cloned()
            .unwrap_or_default();
        Ok(At {
            index,
            node,
            ins,
            xs,
            outs,
            out_shape,
        })
    }

    /// The ONNX name of input `i`, which must be fed.
    pub fn input(&self, i: usize) -> R<String> {
        self.ins.get(i).cloned().flatten().ok_or_else(|| {
            format!("input {i} is missing or is a label, which inference does not feed")
        })
    }

    /// The ONNX names of every input, all of which must be fed.
    pub fn inputs(&self) -> R<Vec<String>> {
        (0..self.ins.len()).map(|i| self.input(i)).collect()
    }

    /// The graph source of input `i`.
    pub fn source(&self, i: usize) -> R<Source> {
        self.node
            .inputs
            .get(i)
            .copied()
            .ok_or_else(|| format!("input {i} is missing"))
    }

    /// The name of output `k`.
    pub fn output(&self, k: usize) -> R<String> {
        self.outs
            .get(k)
            .cloned()
            .ok_or_else(|| format!("output {k} is missing"))
    }

    /// The name of the first output.
    pub fn out(&self) -> R<String> {
        self.output(0)
    }

    /// A name for an intermediate value of this node.
    pub fn hint(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.node.name)
    }

    /// Dim `axis` of the data input.
    pub fn x_dim(&self, axis: usize) -> R<usize> {
        self.xs
            .get(axis)
            .copied()
            .ok_or_else(|| format!("data {:?} has no dim {axis}", self.xs))
    }
}

pub(crate) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

pub(crate) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

pub(crate) fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub(crate) fn attr_strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Strings as i32,
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

pub(crate) fn ints(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
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

pub(crate) fn value_info(name: &str, dtype: DType, shape: &[usize]) -> ValueInfoProto {
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

/// What the families build the ONNX graph with.
pub(crate) struct Builder<'a> {
    pub(crate) graph: &'a Graph,
    pub(crate) weights: &'a [Tensor],
    pub(crate) shapes: &'a Shapes,
    /// The element type of every value (integer-typed results are converted as MXNet's).
    pub(crate) dtypes: DTypes,
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    pub(crate) graph_inputs: Vec<ValueInfoProto>,
    /// The ONNX name of each graph input; `None` for labels.
    pub(crate) input_names: Vec<Option<String>>,
    pub(crate) node_names: Vec<Vec<String>>,
    pub(crate) used: HashSet<String>,
    /// Convolutions whose only reader is a batch norm: conv index → that norm's
    /// per-channel (scale, shift), folded into the convolution's weights and bias.
    pub(crate) folded_norms: HashMap<usize, (Vec<f32>, Vec<f32>)>,
    /// Batch norms folded into the convolution before them: lowered as identity.
    pub(crate) folded_away: HashSet<usize>,
    /// The params that dense layers read as their weight in a `Gemm` (`mk,nk->mn`).
    pub(crate) dense_weights: Vec<usize>,
    /// Float32 constants computed from the weights, in the order they were made.
    pub(crate) derived: Vec<Derived>,
    /// Lower 1×1 convolutions as an `Einsum` over a 2-D weight (see [`super::conv`]).
    /// Set for ward's engine, not for a written ONNX file, where `Conv` says more.
    pub(crate) pointwise_as_einsum: bool,
}

/// A float32 constant computed from the weights while lowering (a convolution's weight
/// and bias with its batch norm folded in). It is kept as a recipe until the proto is
/// finished: then it becomes an initializer ([`Params::Initializers`]) or a graph input
/// that the engine makes a constant by computing the values straight into its own tensor
/// ([`Params::Inputs`]), so a weight-sized constant is made once, never as an
/// intermediate vector, then bytes, then parsed back.
///
/// [`Params::Initializers`]: super::Params::Initializers
/// [`Params::Inputs`]: super::Params::Inputs
#[derive(Debug)]
pub(crate) struct Derived {
    pub name: String,
    pub dims: Vec<usize>,
    pub values: DerivedValues,
}

#[derive(Debug)]
pub(crate) enum DerivedValues {
    /// The values themselves.
    Values(Vec<f32>),
    /// Param `param` as float32, its `k`-th slice along the first axis multiplied by
    /// `scale[k]` (a batch norm's scale folded into the filters of a convolution).
    ScaledParam { param: usize, scale: Vec<f32> },
    /// Param `param` as float32, in the constant's own shape (the same elements in the
    /// same order).
    Param { param: usize },
}

impl Derived {
    /// The param the values are computed from, if any.
    pub(crate) fn param(&self) -> Option<usize> {
        match &self.values {
            DerivedValues::Values(_) => None,
            DerivedValues::Param { param } | DerivedValues::ScaledParam { param, .. } => {
                Some(*param)
            }
        }
    }

    /// Computes the values into `out`, which must hold the product of `dims`.
    pub(crate) fn fill(&self, weights: &[Tensor], out: &mut [f32]) -> R<()> {
        self.fill_from(self.param().and_then(|p| weights.get(p)), out)
    }

    /// Computes the values into `out` from `weight`, the tensor of [`Derived::param`].
    pub(crate) fn fill_from(&self, weight: Option<&Tensor>, out: &mut [f32]) -> R<()> {
        let weight = || {
            weight.ok_or_else(|| {
                format!(
                    "{}: param {} has no tensor",
                    self.name,
                    self.param().unwrap_or_default()
                )
            })
        };
        match &self.values {
            DerivedValues::Values(values) => {
                if values.len() != out.len() {
                    return Err(format!(
                        "{}: {} values for {} elements",
                        self.name,
                        values.len(),
                        out.len()
                    ));
                }
                out.copy_from_slice(values);
            }
            DerivedValues::Param { .. } => {
                let weight = weight()?;
                if weight.len() != out.len() {
                    return Err(format!(
                        "{}: a weight of {} elements for {} outputs",
                        self.name,
                        weight.len(),
                        out.len()
                    ));
                }
                if weight.dtype() == DType::F32 {
                    let (floats, _) = weight.bytes().as_chunks::<4>();
                    for (o, c) in out.iter_mut().zip(floats) {
                        *o = f32::from_le_bytes(*c);
                    }
                } else {
                    out.copy_from_slice(&weight.to_f32_vec());
                }
            }
            DerivedValues::ScaledParam { scale, .. } => {
                let weight = weight()?;
                if weight.len() != out.len()
                    || scale.is_empty()
                    || !out.len().is_multiple_of(scale.len())
                {
                    return Err(format!(
                        "{}: a weight of {} elements for {} outputs and {} scales",
                        self.name,
                        weight.len(),
                        out.len(),
                        scale.len()
                    ));
                }
                let per_slice = (out.len() / scale.len()).max(1);
                let slices = out.chunks_mut(per_slice).zip(scale);
                if weight.dtype() == DType::F32 {
                    let (floats, _) = weight.bytes().as_chunks::<4>();
                    for ((out, s), src) in slices.zip(floats.chunks(per_slice)) {
                        for (o, c) in out.iter_mut().zip(src) {
                            *o = f32::from_le_bytes(*c) * s;
                        }
                    }
                } else {
                    let values = weight.to_f32_vec();
                    for ((out, s), src) in slices.zip(values.chunks(per_slice)) {
                        for (o, v) in out.iter_mut().zip(src) {
                            *o = v * s;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl<'a> Builder<'a> {
    pub(crate) fn new(
        graph: &'a Graph,
        weights: &'a [Tensor],
        shapes: &'a Shapes,
        dtypes: DTypes,
    ) -> Self {
        let used = graph.params.iter().map(|p| p.name.clone()).collect();
        Builder {
            graph,
            weights,
            shapes,
            dtypes,
            nodes: Vec::new(),
            initializers: Vec::new(),
            graph_inputs: Vec::new(),
            input_names: Vec::new(),
            node_names: Vec::new(),
            used,
            folded_norms: HashMap::new(),
            folded_away: HashSet::new(),
            dense_weights: Vec::new(),
            derived: Vec::new(),
            pointwise_as_einsum: false,
        }
    }

    /// A value name not used yet, based on `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 1;
        while self.used.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(name.clone());
        name
    }

    pub fn push(
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
    pub fn op(
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

    pub fn initializer(
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

    pub fn const_f32(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        self.initializer(hint, dims, DataType::Float, f32_bytes(values))
    }

    /// A float32 constant computed from the weights (see [`Derived`]); `values` must make
    /// the product of `dims`.
    pub fn derived_f32(&mut self, hint: &str, dims: Vec<usize>, values: DerivedValues) -> String {
        let name = self.fresh(hint);
        self.derived.push(Derived {
            name: name.clone(),
            dims,
            values,
        });
        name
    }

    pub fn scalar_f32(&mut self, hint: &str, v: f32) -> String {
        self.const_f32(hint, &[], &[v])
    }

    pub fn const_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(hint, &[values.len()], DataType::Int64, raw)
    }

    pub fn scalar_i64(&mut self, hint: &str, v: i64) -> String {
        self.initializer(hint, &[], DataType::Int64, v.to_le_bytes().to_vec())
    }

    /// The derived constants as float32 initializers.
    pub(crate) fn derived_initializers(&mut self) -> R<()> {
        for d in std::mem::take(&mut self.derived) {
            let len = ward_core::tensor::element_count(&d.dims)
                .ok_or_else(|| format!("{}: shape {:?} overflows", d.name, d.dims))?;
            let mut values = vec![0.0; len];
            d.fill(self.weights, &mut values)?;
            self.initializers.push(TensorProto {
                dims: ints(&d.dims),
                data_type: DataType::Float as i32,
                raw_data: f32_bytes(&values),
                name: d.name,
                ..Default::default()
            });
        }
        Ok(())
    }

    /// The derived constants as float32 graph inputs without values, after every input
    /// added before; returned, in that order, for the engine to fill.
    pub(crate) fn derived_inputs(&mut self) -> Vec<Derived> {
        let derived = std::mem::take(&mut self.derived);
        for d in &derived {
            self.graph_inputs
                .push(value_info(&d.name, DType::F32, &d.dims));
        }
        derived
    }

    /// The ONNX value for a source; params become float32 initializers on first use.
    pub(crate) fn value(&self, source: Source) -> R<String> {
        match source {
            Source::Input(i) => self
                .input_names
                .get(i)
                .cloned()
                .flatten()
                .ok_or_else(|| format!("input {i} is a label, which inference does not feed")),
            Source::Node(n, k) => self
                .node_names
                .get(n)
                .and_then(|o| o.get(k))
                .cloned()
                .ok_or_else(|| format!("value {n}:{k} does not exist")),
            // Materialised by `param_initializers` only if some node reads it.
            Source::Param(p) => self
                .graph
                .params
                .get(p)
                .map(|p| p.name.clone())
                .ok_or_else(|| format!("param {p} does not exist")),
        }
    }

    /// The names of the values some node reads.
    fn names_read(&self) -> HashSet<&str> {
        self.nodes
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .collect()
    }

    /// Float32 initializers for the params that some node reads.
    pub(crate) fn param_initializers(&mut self) {
        let read = self.names_read();
        let mut added = Vec::new();
        for (decl, weight) in self.graph.params.iter().zip(self.weights) {
            if read.contains(decl.name.as_str()) {
                added.push(TensorProto {
                    dims: ints(&decl.shape),
                    data_type: DataType::Float as i32,
                    raw_data: weight.to_f32().into_bytes(),
                    name: decl.name.clone(),
                    ..Default::default()
                });
            }
        }
        self.initializers.extend(added);
    }

    /// Float32 graph inputs, without values, for the params that some node reads; the
    /// index of each, in the order they were added.
    pub(crate) fn param_inputs(&mut self) -> Vec<usize> {
        let read = self.names_read();
        let mut added = Vec::new();
        let mut indices = Vec::new();
        for (index, decl) in self.graph.params.iter().enumerate() {
            if read.contains(decl.name.as_str()) {
                added.push(value_info(&decl.name, DType::F32, &decl.shape));
                indices.push(index);
            }
        }
        self.graph_inputs.extend(added);
        indices
    }

    /// The constant values of a param source, if it is one.
    pub fn param_values(&self, source: Source) -> Option<Vec<f32>> {
        match source {
            Source::Param(p) => self.weights.get(p).map(Tensor::to_f32_vec),
            _ => None,
        }
    }

    pub fn shape(&self, source: Source) -> R<Vec<usize>> {
        self.shapes
            .get(self.graph, source)
            .map(<[usize]>::to_vec)
            .ok_or_else(|| format!("{} has no shape", self.graph.source_name(source)))
    }

    pub fn reshape(&mut self, x: String, dims: &[usize], hint: &str) -> String {
        let shape = self.const_i64(&format!("{hint}/shape"), &ints(dims));
        self.op("Reshape", vec![x, shape], vec![], hint)
    }

    /// A 1-D per-channel vector shaped to broadcast along `axis` of a rank-`rank` tensor.
    pub fn along_axis(&mut self, v: Source, axis: usize, rank: usize, hint: &str) -> R<String> {
        let len = self.shape(v)?.iter().product::<usize>();
        let mut dims = vec![1; rank];
        *dims
            .get_mut(axis)
            .ok_or_else(|| format!("axis {axis} is past rank {rank}"))? = len;
        if let Some(values) = self.param_values(v) {
            return Ok(self.const_f32(hint, &dims, &values));
        }
        let x = self.value(v)?;
        Ok(self.reshape(x, &dims, hint))
    }

    /// (x - mean) / sqrt(var + eps) with mean and var over `axes`, all in-graph.
    pub fn normalize(&mut self, x: String, axes: &[usize], eps: f64, hint: &str) -> String {
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

    pub fn affine(&mut self, x: String, scale: String, shift: String, out: &str) {
        let scaled = self.op("Mul", vec![x, scale], vec![], &format!("{out}/scaled"));
        self.push("Add", vec![scaled, shift], vec![out.to_string()], vec![]);
    }
}

/// Float32 values as the little-endian bytes of an ONNX `raw_data`.
fn f32_bytes(values: &[f32]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(values.len().saturating_mul(4));
    for v in values {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    raw
}
