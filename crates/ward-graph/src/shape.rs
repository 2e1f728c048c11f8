//! Shape inference: the shape of every value from the shapes of the graph inputs.
//!
//! Inference is where a graph meets its weights: every operator checks its inputs'
//! shapes (a convolution's weight against its data, a batch norm's statistics against
//! the channel count, ...) and reports a precise error naming the node. The rules live
//! with the operators ([`crate::ops`]); this module walks the graph. All arithmetic on
//! dims is checked, so hostile shapes give an error and never an overflow.

use crate::error::GraphError;
use crate::ir::{Graph, InputRole, Source, MAX_RANK};
use crate::ops::Shape;

/// Most elements of any value a graph computes (4 GiB of float32). The largest activation
/// of the census models at batch 8 is under 10 million elements; the bound stops a crafted
/// graph from asking the backend for an absurd allocation.
pub const MAX_VALUE_ELEMENTS: usize = 1 << 30;

/// The shapes of every value: the inputs' (a label not fed has none), then every node's
/// outputs, indexed by node then output.
#[derive(Debug, Clone, PartialEq)]
pub struct Shapes {
    pub inputs: Vec<Option<Shape>>,
    pub nodes: Vec<Vec<Shape>>,
}

impl Shapes {
    /// The shape of a value, when it has one (a label not fed has none).
    pub fn get<'a>(&'a self, graph: &'a Graph, source: Source) -> Option<&'a [usize]> {
        match source {
            Source::Input(i) => self.inputs.get(i)?.as_deref(),
            Source::Param(p) => graph.params.get(p).map(|p| p.shape.as_slice()),
            Source::Node(n, k) => self.nodes.get(n)?.get(k).map(Vec::as_slice),
        }
    }

    /// The shape of a value that must have one.
    pub fn of<'a>(&'a self, graph: &'a Graph, source: Source) -> Result<&'a [usize], GraphError> {
        self.get(graph, source).ok_or_else(|| GraphError::Unshaped {
            value: graph.source_name(source),
        })
    }
}

/// Infers every shape for concrete shapes of the graph's data inputs, in order (labels
/// are not fed at inference). The graph must have passed [`Graph::validate`], which
/// guarantees that every source exists and comes first.
pub fn infer_shapes(graph: &Graph, data_shapes: &[Shape]) -> Result<Shapes, GraphError> {
    let data = graph
        .inputs
        .iter()
        .filter(|i| i.role == InputRole::Data)
        .count();
    if data_shapes.len() != data {
        return Err(GraphError::InputCount {
            expected: data,
            actual: data_shapes.len(),
        });
    }
    let mut given = data_shapes.iter();
    let inputs = graph
        .inputs
        .iter()
        .map(|i| match i.role {
            InputRole::Data => given.next().cloned(),
            InputRole::Label => None,
        })
        .collect();
    infer_all(graph, inputs)
}

/// Infers every shape when every input's shape (labels too, as in training) is known.
pub fn infer_shapes_with_labels(
    graph: &Graph,
    input_shapes: &[Shape],
) -> Result<Shapes, GraphError> {
    if input_shapes.len() != graph.inputs.len() {
        return Err(GraphError::InputCount {
            expected: graph.inputs.len(),
            actual: input_shapes.len(),
        });
    }
    infer_all(graph, input_shapes.iter().cloned().map(Some).collect())
}

fn infer_all(graph: &Graph, inputs: Vec<Option<Shape>>) -> Result<Shapes, GraphError> {
    let mut shapes = Shapes {
        inputs,
        nodes: Vec::with_capacity(graph.nodes.len()),
    };
    for node in &graph.nodes {
        let ins: Vec<Option<&[usize]>> =
            node.inputs.iter().map(|s| shapes.get(graph, *s)).collect();
        let outs = node
            .op
            .def()
            .infer(&ins)
            .map_err(|reason| node.error(reason))?;
        if outs.len() != node.op.num_outputs() {
            return Err(node.error(format!(
                "gave {} output shapes for {} outputs",
                outs.len(),
                node.op.num_outputs()
            )));
        }
        for s in &outs {
            check_value(s).map_err(|reason| node.error(reason))?;
        }
        shapes.nodes.push(outs);
    }
    Ok(shapes)
}

/// Every value within the element and rank limits.
pub fn check_value(s: &[usize]) -> Result<(), String> {
    let elements = ward_core::tensor::element_count(s);
    if elements.is_none_or(|n| n > MAX_VALUE_ELEMENTS) {
        return Err(format!(
            "output shape {s:?} has more than {MAX_VALUE_ELEMENTS} elements"
        ));
    }
    if s.len() > MAX_RANK {
        return Err(format!("output rank {} exceeds {MAX_RANK}", s.len()));
    }
    Ok(())
}

pub use crate::ops::{broadcast, resolve_axis};
