//! The training engine: a forward and backward pass over a ward graph in `f32`, with
//! ward's kernels for the operators that carry a model's cost (convolution, pooling,
//! fully connected, batch norm, activations, additions, the fused RNN) and the reference
//! rules of [`crate::grad`] for every other operator.
//!
//! The reference rules define the numbers ([`crate::grad::backward`], held to MXNet's
//! autograd); this engine must reproduce them within `f32` rounding, which its tests
//! check model by model. An operator without a fast kernel here still trains: its
//! inputs are widened to `f64`, the reference forward and rule run, and the results are
//! rounded back, so adding a kernel changes speed, never what trains.
//!
//! Plans are built once per input shape ([`Engine::new`]): shapes inferred, each
//! convolution's geometry and each pooling's window table computed, so a step only runs
//! kernels.

mod buffers;
mod fast;
mod rnn;

use std::time::Instant;

use ward_core::random::{ChaCha20Rng, Purpose, RunSeed};
use ward_graph::interp::eval::eval_node;
use ward_graph::interp::Array;
use ward_graph::ir::{Graph, ParamRole, Source};
use ward_graph::ops::Op;
use ward_graph::shape::{infer_shapes_with_labels, Shapes};

use crate::grad::{self, is_loss_head, norm, Ctx, GradError};
use fast::{Fast, Saved};

/// A value of the engine: a shape and row-major `f32` elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What one training step computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The graph's outputs in training mode.
    pub outputs: Vec<Tensor32>,
    /// One gradient per parameter, in the graph's order (zeros where none reaches it;
    /// empty for state parameters).
    pub param_grads: Vec<Vec<f32>>,
    /// New values of the state parameters the step updated (BatchNorm's moving mean and
    /// variance), by parameter index.
    pub states: Vec<(usize, Vec<f32>)>,
    /// One per graph input when [`EngineOptions::input_gradients`] (`None` for labels and
    /// where nothing flows); empty otherwise.
    pub input_grads: Vec<Option<Vec<f32>>>,
    /// Per node, when [`EngineOptions::profile`]; empty otherwise.
    pub timings: Vec<NodeTiming>,
}

/// How an [`Engine`] runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Also compute the gradients of the data inputs (training does not need them, and
    /// skipping them saves the first layer's data gradient).
    pub input_gradients: bool,
    /// Time each node's forward and backward pass ([`Step::timings`]).
    pub profile: bool,
    /// Plan for evaluation ([`Engine::forward`]): BatchNorm normalises by its moving
    /// statistics and Dropout passes values through, as at inference.
    pub inference: bool,
}

/// Where a step's time went, one entry per node, when [`EngineOptions::profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTiming {
    pub node: String,
    pub op: &'static str,
    /// Whether the node ran on ward's kernels (else on the reference rules).
    pub fast: bool,
    pub forward_s: f64,
    pub backward_s: f64,
}

/// A loss outside the graph: the gradient of the graph's first output, made from the
/// forward pass's outputs.
pub type OutputLoss<'a> = dyn FnMut(&[Tensor32]) -> Result<Vec<f32>, GradError> + 'a;

/// Dropout's stream for step `step_index`: the masks of every node of that step, in
/// graph order.
fn dropout_stream(seed: &RunSeed, step_index: u64) -> Result<ChaCha20Rng, GradError> {
    seed.stream(Purpose::Dropout, step_index)
        .map_err(|e| GradError::Node {
            node: String::new(),
            op: "dropout",
            reason: e.to_string(),
        })
}

/// Where the gradients of the graph's outputs come from.
enum Heads<'a> {
    /// One per output (or none at all); loss heads make their own.
    Given(&'a [Option<&'a [f32]>]),
    /// The first output's, made from the forward pass's outputs.
    FirstFrom(&'a mut OutputLoss<'a>),
}

/// Whether [`Engine::outputs`] copies the values or moves them out.
#[derive(Debug, Clone, Copy)]
enum Outputs {
    Copied,
    Moved,
}

/// How a node runs.
enum Plan {
    Fast(Fast),
    Reference,
}

/// A graph planned for one set of input shapes.
pub struct Engine {
    graph: Graph,
    shapes: Shapes,
    plans: Vec<Plan>,
    /// Whether a gradient must flow into each node's outputs (something trainable lies
    /// behind them); inputs never get one.
    needs_grad: Vec<bool>,
    options: EngineOptions,
}

impl Engine {
    /// Plans `graph` for inputs (labels included, in the graph's order) of
    /// `input_shapes`. Refuses a graph with an operator that has no exact gradient,
    /// naming the node.
    pub fn new(
        graph: Graph,
        input_shapes: &[Vec<usize>],
        options: EngineOptions,
    ) -> Result<Engine, GradError> {
        // Every operator needs an exact rule, except Dropout, which the engine runs itself
        // (its mask comes from the run's random stream).
        for node in &graph.nodes {
            if matches!(node.op, Op::Dropout(_)) {
                continue;
            }
            if let Err(reason) = grad::differentiable(&node.op) {
                return Err(GradError::Unsupported {
                    node: node.name.clone(),
                    op: node.op.name(),
                    reason,
                });
            }
        }
        let shapes =
            infer_shapes_with_labels(&graph, input_shapes).map_err(|e| GradError::Node {
                node: String::new(),
                op: "shape inference",
                reason: e.to_string(),
            })?;
        let mut plans = Vec::with_capacity(graph.nodes.len());
        let mut needs_grad = Vec::with_capacity(graph.nodes.len());
        for (index, node) in graph.nodes.iter().enumerate() {
            let ins: Vec<&[usize]> = node
                .inputs
                .iter()
                .map(|&s| shapes.get(&graph, s).unwrap_or(&[]))
                .collect();
            let outs = shapes.nodes.get(index).map(Vec::as_slice).unwrap_or(&[]);
            plans.push(match Fast::plan(&node.op, &ins, outs, options.inference) {
                Some(fast) => Plan::Fast(fast),
                None => Plan::Reference,
            });
            let flows = node
                .inputs
                .iter()
                .any(|&s| wants_grad(&graph, &needs_grad, options, s));
            needs_grad.push(flows && !matches!(node.op, Op::BlockGrad(_)));
        }
        Ok(Engine {
            graph,
            shapes,
            plans,
            needs_grad,
            options,
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Gives a finished step's buffers back for the next step on this thread (fresh
    /// large buffers cost page faults; see `buffers`).
    pub fn recycle(&self, step: Step) {
        let Step {
            outputs,
            param_grads,
            states,
            input_grads,
            ..
        } = step;
        outputs
            .into_iter()
            .map(|t| t.data)
            .for_each(buffers::recycle);
        param_grads.into_iter().for_each(buffers::recycle);
        states
            .into_iter()
            .map(|(_, v)| v)
            .for_each(buffers::recycle);
        input_grads.into_iter().flatten().for_each(buffers::recycle);
    }

    /// How many nodes run on ward's kernels (the rest on the reference rules).
    pub fn fast_nodes(&self) -> usize {
        self.plans
            .iter()
            .filter(|p| matches!(p, Plan::Fast(_)))
            .count()
    }

    /// One training step's forward and backward pass: `params` one slice per graph
    /// parameter, `inputs` one per graph input (labels included), each of its planned
    /// shape. The loss heads make their own gradient; other outputs get none.
    ///
    /// A graph with Dropout needs the run's random stream: use [`Self::step_seeded`].
    pub fn step(&self, params: &[&[f32]], inputs: &[&[f32]]) -> Result<Step, GradError> {
        self.run(params, inputs, &[], None)
    }

    /// As [`Self::step`], drawing Dropout's masks from the run's stream for step
    /// `step_index` (`seed.stream(Purpose::Dropout, step_index)`, nodes in graph order):
    /// the same seed and step give the same masks, on any number of threads.
    pub fn step_seeded(
        &self,
        params: &[&[f32]],
        inputs: &[&[f32]],
        seed: &RunSeed,
        step_index: u64,
    ) -> Result<Step, GradError> {
        let rng = dropout_stream(seed, step_index)?;
        self.run(params, inputs, &[], Some(rng))
    }

    /// As [`Self::step_seeded`] for a graph without a loss head: `loss` makes the
    /// gradient of the graph's first output from the forward pass's outputs (a loss
    /// outside the graph, such as [`crate::loss`]'s); the other outputs get none.
    pub fn step_with_loss(
        &self,
        params: &[&[f32]],
        inputs: &[&[f32]],
        seed: &RunSeed,
        step_index: u64,
        loss: &mut OutputLoss<'_>,
    ) -> Result<Step, GradError> {
        let rng = dropout_stream(seed, step_index)?;
        self.check_trainable()?;
        self.pass(params, inputs, Heads::FirstFrom(loss), Some(rng), true)
    }

    /// The outputs of a forward pass alone (for evaluation, plan with
    /// [`EngineOptions::inference`]).
    pub fn forward(
        &self,
        params: &[&[f32]],
        inputs: &[&[f32]],
    ) -> Result<Vec<Tensor32>, GradError> {
        self.pass(params, inputs, Heads::Given(&[]), None, false)
            .map(|s| s.outputs)
    }

    /// As [`Self::step`], with a gradient given for each graph output (`heads`: one per
    /// output, or empty for none; loss heads ignore theirs, as in MXNet) and Dropout's
    /// masks drawn from `rng`.
    pub fn run(
        &self,
        params: &[&[f32]],
        inputs: &[&[f32]],
        heads: &[Option<&[f32]>],
        rng: Option<ChaCha20Rng>,
    ) -> Result<Step, GradError> {
        self.check_trainable()?;
        self.pass(params, inputs, Heads::Given(heads), rng, true)
    }

    fn check_trainable(&self) -> Result<(), GradError> {
        if self.options.inference {
            return Err(GradError::Node {
                node: String::new(),
                op: "engine",
                reason: "planned for inference: no gradients".into(),
            });
        }
        Ok(())
    }

    fn pass(
        &self,
        params: &[&[f32]],
        inputs: &[&[f32]],
        heads: Heads<'_>,
        mut rng: Option<ChaCha20Rng>,
        backward: bool,
    ) -> Result<Step, GradError> {
        let graph = &self.graph;
        let (heads_expected, heads_given) = match &heads {
            Heads::Given([]) => (0, 0),
            Heads::Given(h) => (graph.outputs.len(), h.len()),
            Heads::FirstFrom(_) => (0, 0),
        };
        for (what, expected, got) in [
            ("parameters", graph.params.len(), params.len()),
            ("inputs", graph.inputs.len(), inputs.len()),
            ("head gradients", heads_expected, heads_given),
        ] {
            if expected != got {
                return Err(GradError::Arguments {
                    what,
                    expected,
                    got,
                });
            }
        }
        for (i, (decl, p)) in graph.params.iter().zip(params).enumerate() {
            let want: usize = decl.shape.iter().product();
            if p.len() != want {
                return Err(GradError::Node {
                    node: decl.name.clone(),
                    op: "parameter",
                    reason: format!(
                        "parameter {i} has {} elements, its shape {:?} needs {want}",
                        p.len(),
                        decl.shape
                    ),
                });
            }
        }
        for (i, (decl, x)) in graph.inputs.iter().zip(inputs).enumerate() {
            let want: usize = self
                .shapes
                .inputs
                .get(i)
                .and_then(|s| s.as_ref())
                .map(|s| s.iter().product())
                .unwrap_or(0);
            if x.len() != want {
                return Err(GradError::Node {
                    node: decl.name.clone(),
                    op: "input",
                    reason: format!("has {} elements, the plan's shape needs {want}", x.len()),
                });
            }
        }

        // Forward.
        let mut values: Vec<Vec<Vec<f32>>> = Vec::with_capacity(graph.nodes.len());
        let mut saved: Vec<Saved> = Vec::with_capacity(graph.nodes.len());
        let mut states = Vec::new();
        let mut timings: Vec<NodeTiming> = Vec::new();
        let clock = || self.options.profile.then(Instant::now);
        for (index, (node, plan)) in graph.nodes.iter().zip(&self.plans).enumerate() {
            let started = clock();
            let ins: Vec<&[f32]> = node
                .inputs
                .iter()
                .map(|&s| value(s, inputs, params, &values))
                .collect::<Option<_>>()
                .ok_or_else(|| self.error(index, "an input was not computed".into()))?;
            let (outs, keep) = match plan {
                Plan::Fast(fast) => fast
                    .forward(&ins, rng.as_mut())
                    .map_err(|e| self.error(index, e))?,
                Plan::Reference => {
                    let arrays = self.arrays(index, &ins);
                    let refs: Vec<Option<&Array>> = arrays.iter().map(Some).collect();
                    let outs = match &node.op {
                        Op::BatchNorm(op) if !self.options.inference => {
                            norm::batch_norm_forward(&refs, op).map(|y| vec![y])
                        }
                        _ => eval_node(node, &refs),
                    }
                    .map_err(|e| self.error(index, e))?;
                    (outs.iter().map(narrow).collect(), Saved::None)
                }
            };
            if let (Saved::BatchNorm { running, .. }, Op::BatchNorm(_)) = (&keep, &node.op) {
                for (slot, new) in [3usize, 4].into_iter().zip(running) {
                    if let Some(Source::Param(p)) = node.inputs.get(slot) {
                        states.push((*p, new.clone()));
                    }
                }
            }
            values.push(outs);
            saved.push(keep);
            if let Some(started) = started {
                timings.push(NodeTiming {
                    node: node.name.clone(),
                    op: node.op.name(),
                    fast: matches!(plan, Plan::Fast(_)),
                    forward_s: started.elapsed().as_secs_f64(),
                    backward_s: 0.0,
                });
            }
        }
        if !backward {
            let outputs = self.outputs(&mut values, inputs, params, Outputs::Moved)?;
            values.into_iter().flatten().for_each(buffers::recycle);
            saved.into_iter().for_each(Saved::recycle);
            return Ok(Step {
                outputs,
                param_grads: Vec::new(),
                states: Vec::new(),
                input_grads: Vec::new(),
                timings,
            });
        }

        // Backward: gradients arriving at each node output, summed.
        let mut node_grads: Vec<Vec<Option<Vec<f32>>>> =
            values.iter().map(|o| vec![None; o.len()]).collect();
        let mut param_grads: Vec<Option<Vec<f32>>> = vec![None; params.len()];
        let mut input_grads: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        let made;
        // A loss outside the graph reads the outputs before the backward pass; otherwise
        // they are moved out of the step's values once it is done.
        let mut read_by_loss = None;
        let heads: Vec<Option<&[f32]>> = match heads {
            Heads::Given(h) => h.to_vec(),
            Heads::FirstFrom(loss) => {
                let outputs = read_by_loss.insert(self.outputs(
                    &mut values,
                    inputs,
                    params,
                    Outputs::Copied,
                )?);
                made = loss(outputs)?;
                let mut h = vec![None; graph.outputs.len()];
                if let Some(first) = h.first_mut() {
                    *first = Some(made.as_slice());
                }
                h
            }
        };
        for (output, head) in graph.outputs.iter().zip(heads) {
            let (Source::Node(n, k), Some(head)) = (output.source, head) else {
                continue;
            };
            if let Some(slot) = node_grads.get_mut(n).and_then(|o| o.get_mut(k)) {
                let want = slot.as_ref().map_or(head.len(), Vec::len);
                if head.len() != want
                    || values.get(n).and_then(|o| o.get(k)).map(Vec::len) != Some(want)
                {
                    return Err(GradError::Node {
                        node: output.name.clone(),
                        op: "output",
                        reason: format!("the head gradient has {} elements", head.len()),
                    });
                }
                match slot {
                    None => *slot = Some(buffers::copied(head)),
                    Some(sum) => sum.iter_mut().zip(head.iter()).for_each(|(s, g)| *s += g),
                }
            }
        }
        for (index, node) in graph.nodes.iter().enumerate().rev() {
            let grads = node_grads
                .get_mut(index)
                .map(std::mem::take)
                .unwrap_or_default();
            let head = is_loss_head(&node.op);
            if !self.needs_grad.get(index).copied().unwrap_or(false)
                || (!head && grads.iter().all(Option::is_none))
            {
                continue;
            }
            let started = clock();
            let ins: Vec<&[f32]> = node
                .inputs
                .iter()
                .map(|&s| value(s, inputs, params, &values))
                .collect::<Option<_>>()
                .ok_or_else(|| self.error(index, "an input was not computed".into()))?;
            let outs = values.get(index).map(Vec::as_slice).unwrap_or(&[]);
            let wanted: Vec<bool> = node
                .inputs
                .iter()
                .map(|&s| wants_grad(graph, &self.needs_grad, self.options, s))
                .collect();
            let node_input_grads = match self.plans.get(index) {
                Some(Plan::Fast(fast)) => {
                    let keep = saved.get(index).unwrap_or(&Saved::None);
                    fast.backward(&ins, outs, keep, &grads, &wanted)
                        .map_err(|e| self.error(index, e))?
                }
                _ => self.reference_backward(index, &ins, outs, &grads)?,
            };
            for ((&source, g), want) in node.inputs.iter().zip(node_input_grads).zip(&wanted) {
                let Some(g) = g else { continue };
                if !want {
                    continue;
                }
                let slot = match source {
                    Source::Param(p) => param_grads.get_mut(p),
                    Source::Node(n, k) => node_grads.get_mut(n).and_then(|o| o.get_mut(k)),
                    Source::Input(i) => input_grads.get_mut(i),
                };
                if let Some(slot) = slot {
                    match slot {
                        None => *slot = Some(g),
                        Some(sum) => {
                            sum.iter_mut().zip(&g).for_each(|(s, g)| *s += g);
                            buffers::recycle(g);
                        }
                    }
                }
            }
            grads.into_iter().flatten().for_each(buffers::recycle);
            if let (Some(started), Some(timing)) = (started, timings.get_mut(index)) {
                timing.backward_s = started.elapsed().as_secs_f64();
            }
        }
        let outputs = match read_by_loss {
            Some(outputs) => outputs,
            None => self.outputs(&mut values, inputs, params, Outputs::Moved)?,
        };
        values.into_iter().flatten().for_each(buffers::recycle);
        saved.into_iter().for_each(Saved::recycle);
        let param_grads = param_grads
            .into_iter()
            .zip(&graph.params)
            .map(|(g, decl)| match (g, decl.role) {
                (_, ParamRole::State) => Vec::new(),
                (Some(g), _) => g,
                (None, _) => buffers::zeroed(decl.shape.iter().product()),
            })
            .collect();
        if !self.options.input_gradients {
            input_grads.clear();
        }
        Ok(Step {
            outputs,
            param_grads,
            states,
            input_grads,
            timings,
        })
    }

    /// The graph's outputs from a pass's `values`: copied, or moved out once nothing
    /// reads the values any more (an output named twice is copied the second time).
    fn outputs(
        &self,
        values: &mut [Vec<Vec<f32>>],
        inputs: &[&[f32]],
        params: &[&[f32]],
        how: Outputs,
    ) -> Result<Vec<Tensor32>, GradError> {
        let graph = &self.graph;
        let mut outputs: Vec<Tensor32> = Vec::with_capacity(graph.outputs.len());
        for (k, o) in graph.outputs.iter().enumerate() {
            let shape = self.shapes.get(graph, o.source).unwrap_or(&[]).to_vec();
            let earlier = graph
                .outputs
                .iter()
                .take(k)
                .position(|e| e.source == o.source);
            let moved = match (how, o.source, earlier) {
                (Outputs::Moved, Source::Node(n, i), None) => values
                    .get_mut(n)
                    .and_then(|outs| outs.get_mut(i))
                    .map(std::mem::take),
                _ => None,
            };
            let data =
                match (moved, earlier) {
                    (Some(data), _) => data,
                    (None, Some(e)) => {
                        buffers::copied(outputs.get(e).map_or(&[][..], |e| e.data.as_slice()))
                    }
                    (None, None) => buffers::copied(
                        value(o.source, inputs, params, values).ok_or_else(|| GradError::Node {
                            node: o.name.clone(),
                            op: "output",
                            reason: "reads a value that was not computed".into(),
                        })?,
                    ),
                };
            outputs.push(Tensor32 { shape, data });
        }
        Ok(outputs)
    }

    /// The node's inputs widened to the reference interpreter's arrays.
    fn arrays(&self, index: usize, ins: &[&[f32]]) -> Vec<Array> {
        let node = self.graph.nodes.get(index);
        ins.iter()
            .zip(node.map(|n| n.inputs.as_slice()).unwrap_or(&[]))
            .map(|(data, &s)| Array {
                shape: self.shapes.get(&self.graph, s).unwrap_or(&[]).to_vec(),
                data: data.iter().map(|&v| f64::from(v)).collect(),
            })
            .collect()
    }

    fn reference_backward(
        &self,
        index: usize,
        ins: &[&[f32]],
        outs: &[Vec<f32>],
        grads: &[Option<Vec<f32>>],
    ) -> Result<Vec<Option<Vec<f32>>>, GradError> {
        let node = self
            .graph
            .nodes
            .get(index)
            .ok_or_else(|| self.error(index, "no such node".into()))?;
        let in_arrays = self.arrays(index, ins);
        let out_shapes = self
            .shapes
            .nodes
            .get(index)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let widen = |shape: &Vec<usize>, data: &[f32]| Array {
            shape: shape.clone(),
            data: data.iter().map(|&v| f64::from(v)).collect(),
        };
        let out_arrays: Vec<Array> = out_shapes
            .iter()
            .zip(outs)
            .map(|(s, d)| widen(s, d))
            .collect();
        let grad_arrays: Vec<Option<Array>> = out_shapes
            .iter()
            .zip(grads)
            .map(|(s, g)| g.as_ref().map(|g| widen(s, g)))
            .collect();
        let ctx = Ctx {
            node,
            ins: in_arrays.iter().collect(),
            outs: &out_arrays,
            grads: &grad_arrays,
        };
        let rule = grad::rule(&ctx).map_err(|e| self.error(index, e))?;
        Ok(rule.into_iter().map(|g| g.map(|g| narrow(&g))).collect())
    }

    fn error(&self, index: usize, reason: String) -> GradError {
        match self.graph.nodes.get(index) {
            Some(node) => GradError::Node {
                node: node.name.clone(),
                op: node.op.name(),
                reason,
            },
            None => GradError::Node {
                node: format!("#{index}"),
                op: "node",
                reason,
            },
        }
    }
}

/// Whether a gradient is wanted for `source`: a trainable parameter, a node output with
/// something trainable behind it, or (when asked for) a data input.
fn wants_grad(graph: &Graph, needs_grad: &[bool], options: EngineOptions, source: Source) -> bool {
    match source {
        Source::Param(p) => graph
            .params
            .get(p)
            .is_some_and(|p| p.role == ParamRole::Trainable),
        Source::Node(n, _) => needs_grad.get(n).copied().unwrap_or(false),
        Source::Input(i) => {
            options.input_gradients
                && graph
                    .inputs
                    .get(i)
                    .is_some_and(|i| i.role == ward_graph::ir::InputRole::Data)
        }
    }
}

/// An `f64` array rounded to `f32`.
fn narrow(a: &Array) -> Vec<f32> {
    a.data.iter().map(|&v| v as f32).collect()
}

fn value<'a>(
    source: Source,
    inputs: &[&'a [f32]],
    params: &[&'a [f32]],
    values: &'a [Vec<Vec<f32>>],
) -> Option<&'a [f32]> {
    match source {
        Source::Input(i) => inputs.get(i).copied(),
        Source::Param(p) => params.get(p).copied(),
        Source::Node(n, k) => values.get(n).and_then(|o| o.get(k)).map(Vec::as_slice),
    }
}
