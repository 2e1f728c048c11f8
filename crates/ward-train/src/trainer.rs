//! The training loop's core: one graph, its weights, a declared optimizer and the run's
//! random stream; batches in, updated weights and metrics out. What a step minimises is
//! the graph's own loss head (SoftmaxOutput, with its label input) or, for a graph
//! without one (a Gluon export), a declared Gluon loss on its first output
//! ([`crate::loss`]).
//!
//! A step runs the engine forward and backward (Dropout's masks from the run's stream
//! for that step), refuses a non-finite loss or gradient (naming the step and the first
//! parameter whose gradient is not finite, before any weight changes), lets the
//! optimizer update the trainable parameters, and stores BatchNorm's new moving
//! statistics. Evaluation plans the same graph for inference (moving statistics, no
//! dropout).

use ward_core::random::RunSeed;
use ward_graph::ir::{Graph, InputRole, ParamRole};
use ward_graph::ops::loss::SoftmaxOutput;
use ward_graph::ops::Op;

use crate::engine::{Engine, EngineOptions, Tensor32};
use crate::loss::{LossError, LossSpec};
use crate::optim::{OptimError, Optimizer, OptimizerState, ParamMults, ParamState, ParamUpdate};
use crate::GradError;

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Grad(#[from] GradError),
    #[error(transparent)]
    Optim(#[from] OptimError),
    #[error("step {step}: the loss is {loss}; the first parameter whose gradient is not finite: {param}")]
    NonFinite { step: u64, loss: f64, param: String },
    #[error("the graph must have one data input, and either one label input and a SoftmaxOutput head, or no label input and a declared loss: {0}")]
    Graph(String),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error("label {label} of example {index} in the batch is not a class in 0..{classes}")]
    Label {
        index: usize,
        label: f32,
        classes: usize,
    },
    #[error("cannot continue from the checkpoint: {0}")]
    Restore(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("parameter store: {0}")]
    Distributed(String),
}

/// How the per-parameter multipliers are read, as the two MXNet front ends do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Multipliers {
    /// Module: `__lr_mult__`/`__wd_mult__`, and no weight decay on names that do not end
    /// in `_weight` or `_gamma`.
    Module,
    /// Gluon's Trainer: the parameters' own multipliers.
    Gluon,
}

/// Loss and accuracy summed over examples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// Σ per-example loss: −ln p(label) for a classifier, the declared loss's value for
    /// a graph trained with one.
    pub loss_sum: f64,
    pub examples: usize,
    /// Rows whose highest score is their label's class, of `classified` rows (one row
    /// per class label; none when the model does not classify).
    pub correct: usize,
    pub classified: usize,
}

impl Metrics {
    pub fn add(&mut self, other: Metrics) {
        self.loss_sum += other.loss_sum;
        self.examples += other.examples;
        self.correct += other.correct;
        self.classified += other.classified;
    }

    /// The mean loss per example.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.examples.max(1) as f64
    }

    /// The share of rows classified right; `None` when the model does not classify.
    pub fn accuracy(&self) -> Option<f64> {
        (self.classified > 0).then(|| self.correct as f64 / self.classified as f64)
    }

    /// The metrics of class probabilities (one row per label) against class labels.
    pub fn of_probabilities(probs: &[f32], labels: &[f32]) -> Metrics {
        classify(probs, labels)
    }
}

/// What a step minimises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// The graph's SoftmaxOutput head, fed by its label input.
    Head,
    /// A Gluon loss on the first output of a graph without a head or label input.
    Loss(LossSpec),
}

/// How a [`Trainer`] reads the model.
#[derive(Debug, Clone, Copy)]
pub struct TrainerSetup<'a> {
    pub objective: Objective,
    pub multipliers: Multipliers,
    /// With Module multipliers, the MXNet symbol the graph was imported from: its
    /// variables' `__wd_mult__` are MXNet's (see [`ParamMults::module_symbol`]).
    pub symbol: Option<&'a ward_mxnet::symbol::Symbol>,
}

impl Default for TrainerSetup<'_> {
    fn default() -> Self {
        TrainerSetup {
            objective: Objective::Head,
            multipliers: Multipliers::Module,
            symbol: None,
        }
    }
}

/// Each graph parameter's multipliers as `setup` reads them, `None` for a parameter the
/// optimizer does not update (a state parameter).
pub fn param_mults(
    graph: &Graph,
    optimizer: &crate::optim::OptimizerSpec,
    setup: &TrainerSetup<'_>,
) -> Vec<Option<ParamMults>> {
    graph
        .params
        .iter()
        .map(|p| {
            (p.role == ParamRole::Trainable).then(|| match setup.multipliers {
                Multipliers::Module => match setup.symbol {
                    Some(symbol) => ParamMults::module_symbol(optimizer, p, symbol),
                    None => ParamMults::module_decl(optimizer, p),
                },
                Multipliers::Gluon => ParamMults::gluon(p.lr_mult, p.wd_mult),
            })
        })
        .collect()
}

/// A step's forward and backward pass, before its update.
pub struct Computed {
    out: crate::engine::Step,
    pub metrics: Metrics,
}

impl Computed {
    /// One gradient per graph parameter, in the graph's order.
    pub fn param_grads(&self) -> &[Vec<f32>] {
        &self.out.param_grads
    }
}

/// One batch evaluated: its metrics and the predictions the declared metrics measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub metrics: Metrics,
    /// Class probabilities, one row of classes per label, for a classifier; the model's
    /// first output otherwise. Rows past the batch's valid examples are dropped.
    pub predictions: Vec<f32>,
    /// The shape of `predictions`: `[rows, classes]` for a classifier.
    pub shape: Vec<usize>,
    /// The valid examples' labels, and their shape: `[rows]` for a classifier,
    /// `[examples]` or `[examples, labels per example]` otherwise.
    pub labels: Vec<f32>,
    pub label_shape: Vec<usize>,
}

/// A model training: a classifier ending in SoftmaxOutput, or a graph with a declared
/// loss.
pub struct Trainer {
    engine: Engine,
    weights: Vec<Vec<f32>>,
    optimizer: Optimizer,
    states: Vec<ParamState>,
    mults: Vec<Option<ParamMults>>,
    names: Vec<String>,
    seed: RunSeed,
    step: u64,
    data_input: usize,
    /// The graph's label input (the head's); `None` with a declared loss.
    label_input: Option<usize>,
    loss: Option<LossSpec>,
    /// The label SoftmaxOutput skips (`use_ignore`), which is no class.
    ignore_label: Option<f32>,
}

impl Trainer {
    /// `weights` one per graph parameter; batches of `data_shape` (batch first) with
    /// labels: one class per example for a SoftmaxOutput head, what the declared loss
    /// needs otherwise ([`LossSpec::label_len`]).
    pub fn new(
        graph: Graph,
        weights: Vec<Vec<f32>>,
        data_shape: &[usize],
        optimizer: Optimizer,
        seed: RunSeed,
        setup: TrainerSetup<'_>,
    ) -> Result<Trainer, TrainError> {
        let (data_input, label_input, ignore_label, loss) = match setup.objective {
            Objective::Head => {
                let (d, l, head) = classifier_inputs(&graph)?;
                let ignore = head.use_ignore.then_some(head.ignore_label as f32);
                (d, Some(l), ignore, None)
            }
            Objective::Loss(loss) => {
                loss.validate()?;
                (headless_input(&graph)?, None, None, Some(loss))
            }
        };
        let shapes = input_shapes(graph.inputs.len(), data_input, label_input, data_shape);
        let mults = param_mults(&graph, optimizer.spec(), &setup);
        let names = graph.params.iter().map(|p| p.name.clone()).collect();
        let states = weights.iter().map(|w| optimizer.create_state(w)).collect();
        let engine = Engine::new(graph, &shapes, EngineOptions::default())?;
        Ok(Trainer {
            engine,
            weights,
            optimizer,
            states,
            mults,
            names,
            seed,
            step: 0,
            data_input,
            label_input,
            loss,
            ignore_label,
        })
    }

    pub fn weights(&self) -> &[Vec<f32>] {
        &self.weights
    }

    /// The optimizer state of each graph parameter, in the graph's order (a parameter the
    /// optimizer does not update keeps its initial, untouched state).
    pub fn param_states(&self) -> &[ParamState] {
        &self.states
    }

    /// The optimizer, with its own state.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// Continues from a checkpoint: `weights` and `states` one per graph parameter, each
    /// as long as the parameter (the states holding exactly the optimizer's tensors), the
    /// optimizer's own state, and the steps already taken. Checked whole before anything
    /// changes.
    pub fn restore(
        &mut self,
        weights: Vec<Vec<f32>>,
        states: Vec<ParamState>,
        optimizer: OptimizerState,
        step: u64,
    ) -> Result<(), TrainError> {
        let params = &self.engine.graph().params;
        let expected = self.optimizer.state_names();
        let bad = |reason: String| Err(TrainError::Restore(reason));
        if weights.len() != params.len() || states.len() != params.len() {
            return bad(format!(
                "{} weights and {} optimizer states for {} parameters",
                weights.len(),
                states.len(),
                params.len()
            ));
        }
        for ((p, w), s) in params.iter().zip(&weights).zip(&states) {
            let len = p.shape.iter().product::<usize>();
            if w.len() != len {
                return bad(format!(
                    "{}: {} values for shape {:?}",
                    p.name,
                    w.len(),
                    p.shape
                ));
            }
            let names: Vec<&str> = s.tensors.iter().map(|(n, _)| *n).collect();
            if names != expected {
                return bad(format!(
                    "{}: optimizer state {names:?}, {} keeps {expected:?}",
                    p.name,
                    self.optimizer.spec().name()
                ));
            }
            if let Some((n, t)) = s.tensors.iter().find(|(_, t)| t.len() != len) {
                return bad(format!(
                    "{}: optimizer state {n} has {} values, the weight {len}",
                    p.name,
                    t.len()
                ));
            }
        }
        self.weights = weights;
        self.states = states;
        self.optimizer.set_state(optimizer);
        self.step = step;
        Ok(())
    }

    pub fn graph(&self) -> &Graph {
        self.engine.graph()
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One step on a batch; returns the batch's metrics (the forward pass's, before the
    /// update).
    pub fn step(&mut self, data: &[f32], labels: &[f32]) -> Result<Metrics, TrainError> {
        let computed = self.gradients(data, labels)?;
        self.apply(computed)
    }

    /// The forward and backward pass of one step on a batch, without the update: the
    /// gradients (every one finite) and the batch's metrics. [`Self::apply`] updates with
    /// the optimizer here; a distributed worker pushes [`Computed::param_grads`] instead
    /// and takes the servers' weights with [`Self::apply_weights`].
    pub fn gradients(&mut self, data: &[f32], labels: &[f32]) -> Result<Computed, TrainError> {
        let inputs = self.inputs(data, labels);
        let refs: Vec<&[f32]> = self.weights.iter().map(Vec::as_slice).collect();
        let (out, metrics) = match self.loss {
            None => {
                let out = self
                    .engine
                    .step_seeded(&refs, &inputs, &self.seed, self.step)?;
                let probs = out
                    .outputs
                    .first()
                    .map(|o| o.data.as_slice())
                    .unwrap_or(&[]);
                self.check_labels(probs, labels)?;
                let metrics = classify(probs, labels);
                (out, metrics)
            }
            Some(loss) => {
                // The loss runs inside the engine's step; what it measured, or why it
                // refused the labels, comes out beside the step.
                let mut measured: Option<Result<Metrics, LossError>> = None;
                let mut apply = |outputs: &[Tensor32]| {
                    let value = match outputs.first() {
                        Some(first) => loss.compute(&first.data, &first.shape, labels, None),
                        None => Err(no_output(&loss)),
                    };
                    let (metrics, grad) = match value {
                        Ok(v) => (Ok(loss_metrics(&v)), Ok(v.grad)),
                        Err(e) => {
                            let refused = GradError::Node {
                                node: "loss".into(),
                                op: loss.name(),
                                reason: e.to_string(),
                            };
                            (Err(e), Err(refused))
                        }
                    };
                    measured = Some(metrics);
                    grad
                };
                let out = self
                    .engine
                    .step_with_loss(&refs, &inputs, &self.seed, self.step, &mut apply);
                match (out, measured) {
                    (_, Some(Err(e))) => return Err(e.into()),
                    (Err(e), _) => return Err(e.into()),
                    (Ok(out), Some(Ok(metrics))) => (out, metrics),
                    (Ok(_), None) => return Err(no_output(&loss).into()),
                }
            }
        };
        let nonfinite = out
            .param_grads
            .iter()
            .position(|g| g.iter().any(|v| !v.is_finite()));
        if !metrics.loss_sum.is_finite() || nonfinite.is_some() {
            return Err(TrainError::NonFinite {
                step: self.step,
                loss: metrics.loss(),
                param: nonfinite
                    .and_then(|p| self.names.get(p).cloned())
                    .unwrap_or_else(|| "none (every gradient is finite)".into()),
            });
        }
        Ok(Computed { out, metrics })
    }

    /// Updates the weights with the optimizer from a step's gradients; returns its
    /// metrics.
    pub fn apply(&mut self, computed: Computed) -> Result<Metrics, TrainError> {
        let Computed { mut out, metrics } = computed;
        let mut updates: Vec<ParamUpdate<'_>> = self
            .weights
            .iter_mut()
            .zip(&out.param_grads)
            .zip(self.states.iter_mut())
            .zip(&self.mults)
            .filter_map(|(((weight, grad), state), mults)| {
                Some(ParamUpdate {
                    weight,
                    grad,
                    state,
                    mults: (*mults)?,
                })
            })
            .collect();
        self.optimizer.step(&mut updates)?;
        for (p, value) in std::mem::take(&mut out.states) {
            if let Some(w) = self.weights.get_mut(p) {
                *w = value;
            }
        }
        self.engine.recycle(out);
        self.step += 1;
        Ok(metrics)
    }

    /// Ends a step whose update was made elsewhere (by the parameter servers): `weights`
    /// gives the new value of each trainable parameter (by graph index; `None` keeps
    /// it), and the state parameters take the step's own new values (BatchNorm's moving
    /// statistics stay each worker's, as in MXNet's kvstore).
    pub fn apply_weights(
        &mut self,
        computed: Computed,
        mut weights: impl FnMut(usize, &mut Vec<f32>),
    ) -> Metrics {
        let Computed { mut out, metrics } = computed;
        for (p, w) in self.weights.iter_mut().enumerate() {
            if self.mults.get(p).is_some_and(Option::is_some) {
                weights(p, w);
            }
        }
        for (p, value) in std::mem::take(&mut out.states) {
            if let Some(w) = self.weights.get_mut(p) {
                *w = value;
            }
        }
        self.engine.recycle(out);
        self.step += 1;
        metrics
    }

    /// Replaces the weights of the parameters given (by graph index), as pulled from a
    /// parameter store; a value of the wrong length is left out.
    pub fn set_weights(&mut self, weights: impl IntoIterator<Item = (usize, Vec<f32>)>) {
        for (p, value) in weights {
            if let Some(w) = self.weights.get_mut(p) {
                if w.len() == value.len() {
                    *w = value;
                }
            }
        }
    }

    /// Sets the steps taken (a distributed worker joining at a resumed step).
    pub fn set_steps(&mut self, steps: u64) {
        self.step = steps;
    }

    /// An evaluator of the current weights for batches of `batch` examples.
    pub fn evaluator(&self, batch: usize, example_shape: &[usize]) -> Result<Engine, TrainError> {
        let graph = self.engine.graph().clone();
        let mut data_shape = vec![batch];
        data_shape.extend_from_slice(example_shape);
        let shapes = input_shapes(
            graph.inputs.len(),
            self.data_input,
            self.label_input,
            &data_shape,
        );
        let options = EngineOptions {
            inference: true,
            ..EngineOptions::default()
        };
        Ok(Engine::new(graph, &shapes, options)?)
    }

    /// Metrics of the current weights on one batch, with an engine from
    /// [`Self::evaluator`], and the predictions the declared metrics measure. Rows past
    /// `valid` examples (a padded last batch) are not counted.
    pub fn evaluate(
        &self,
        evaluator: &Engine,
        data: &[f32],
        labels: &[f32],
        valid: usize,
    ) -> Result<Evaluated, TrainError> {
        let inputs = self.inputs(data, labels);
        let refs: Vec<&[f32]> = self.weights.iter().map(Vec::as_slice).collect();
        let mut outputs = evaluator.forward(&refs, &inputs)?;
        if outputs.is_empty() {
            return Err(TrainError::Graph("the graph has no output".into()));
        }
        let first = outputs.swap_remove(0);
        let batch = first.shape.first().copied().unwrap_or(0).max(1);
        let valid = valid.min(batch);
        let labels_per_example = labels.len() / batch;
        let labels = labels.get(..valid * labels_per_example).unwrap_or(&[]);
        match self.loss {
            None => {
                let mut probs = first.data;
                let classes = probs.len() / batch;
                check_labels(labels, classes, self.ignore_label)?;
                probs.truncate(valid * classes);
                Ok(Evaluated {
                    metrics: classify(&probs, labels),
                    predictions: probs,
                    shape: vec![valid, classes],
                    labels: labels.to_vec(),
                    label_shape: vec![valid],
                })
            }
            Some(loss) => {
                let per_example = first.data.len() / batch;
                let mut shape = first.shape;
                if let Some(b) = shape.first_mut() {
                    *b = valid;
                }
                let mut data = first.data;
                data.truncate(valid * per_example);
                let label_shape = match labels_per_example {
                    1 => vec![valid],
                    n => vec![valid, n],
                };
                if valid == 0 {
                    return Ok(Evaluated {
                        metrics: Metrics::default(),
                        predictions: Vec::new(),
                        shape,
                        labels: Vec::new(),
                        label_shape,
                    });
                }
                let metrics = loss_metrics(&loss.compute(&data, &shape, labels, None)?);
                Ok(match loss.probabilities(&data, &shape) {
                    Some((probs, classes)) => Evaluated {
                        metrics,
                        shape: vec![probs.len() / classes.max(1), classes],
                        predictions: probs,
                        label_shape: vec![labels.len()],
                        labels: labels.to_vec(),
                    },
                    None => Evaluated {
                        metrics,
                        predictions: data,
                        shape,
                        labels: labels.to_vec(),
                        label_shape,
                    },
                })
            }
        }
    }

    fn check_labels(&self, probs: &[f32], labels: &[f32]) -> Result<(), TrainError> {
        check_labels(labels, probs.len() / labels.len().max(1), self.ignore_label)
    }

    fn inputs<'a>(&self, data: &'a [f32], labels: &'a [f32]) -> Vec<&'a [f32]> {
        let mut inputs: Vec<&[f32]> = vec![&[]; self.engine.graph().inputs.len()];
        if let Some(slot) = inputs.get_mut(self.data_input) {
            *slot = data;
        }
        if let Some(slot) = self.label_input.and_then(|l| inputs.get_mut(l)) {
            *slot = labels;
        }
        inputs
    }
}

/// The engine's input shapes: `data_shape` for the data input, one label per example.
fn input_shapes(
    inputs: usize,
    data_input: usize,
    label_input: Option<usize>,
    data_shape: &[usize],
) -> Vec<Vec<usize>> {
    let mut shapes = vec![Vec::new(); inputs];
    if let Some(s) = shapes.get_mut(data_input) {
        *s = data_shape.to_vec();
    }
    if let Some(s) = label_input.and_then(|l| shapes.get_mut(l)) {
        *s = vec![data_shape.first().copied().unwrap_or(0)];
    }
    shapes
}

/// The data and label inputs of a classifier ending in SoftmaxOutput, and the head.
fn classifier_inputs(graph: &Graph) -> Result<(usize, usize, &SoftmaxOutput), TrainError> {
    let of = |role: InputRole| -> Vec<usize> {
        graph
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| i.role == role)
            .map(|(k, _)| k)
            .collect()
    };
    let (data, labels) = (of(InputRole::Data), of(InputRole::Label));
    let head = graph
        .outputs
        .first()
        .and_then(|o| match o.source {
            ward_graph::ir::Source::Node(n, _) => graph.nodes.get(n),
            _ => None,
        })
        .and_then(|n| match &n.op {
            Op::SoftmaxOutput(head) => Some(head),
            _ => None,
        });
    let ends_in_softmax = head.is_some();
    match (data.as_slice(), labels.as_slice(), head) {
        (&[d], &[l], Some(head)) => Ok((d, l, head)),
        _ => Err(TrainError::Graph(format!(
            "{} data inputs, {} label inputs, first output {}",
            data.len(),
            labels.len(),
            if ends_in_softmax {
                "SoftmaxOutput"
            } else {
                "not SoftmaxOutput"
            }
        ))),
    }
}

/// The data input of a graph trained with a declared loss: one data input, no label
/// input, no SoftmaxOutput head (its gradient would be the head's, not the loss's).
fn headless_input(graph: &Graph) -> Result<usize, TrainError> {
    let data: Vec<usize> = graph
        .inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| i.role == InputRole::Data)
        .map(|(k, _)| k)
        .collect();
    let labels = graph
        .inputs
        .iter()
        .filter(|i| i.role == InputRole::Label)
        .count();
    let head = graph
        .nodes
        .iter()
        .find(|n| crate::grad::is_loss_head(&n.op));
    match (data.as_slice(), labels, head) {
        (&[d], 0, None) => Ok(d),
        (_, _, Some(head)) => Err(TrainError::Graph(format!(
            "node {} is a {} loss head already: train with the graph's head (no [loss]) or export the network without it",
            head.name,
            head.op.name()
        ))),
        _ => Err(TrainError::Graph(format!(
            "{} data inputs and {labels} label inputs, where a declared loss needs one data input and none",
            data.len()
        ))),
    }
}

fn no_output(loss: &LossSpec) -> LossError {
    LossError::Shape {
        loss: loss.name(),
        shape: Vec::new(),
        reason: "is missing: the graph computed no output".into(),
    }
}

/// A batch's metrics under a declared loss: its loss per example and, for a classifying
/// loss, the rows classified right.
fn loss_metrics(value: &crate::loss::LossValue) -> Metrics {
    Metrics {
        loss_sum: value.per_example.iter().sum(),
        examples: value.per_example.len(),
        correct: value.correct,
        classified: value.classified,
    }
}

/// Every label must be a class in `0..classes` (or `ignore`, the label a head with
/// `use_ignore` skips): a data file with labels past the classes would otherwise train
/// on nothing, silently.
pub fn check_labels(labels: &[f32], classes: usize, ignore: Option<f32>) -> Result<(), TrainError> {
    let bad = labels
        .iter()
        .position(|&l| Some(l) != ignore && !(l >= 0.0 && l < classes as f32 && l.fract() == 0.0));
    match bad {
        Some(index) => Err(TrainError::Label {
            index,
            label: labels.get(index).copied().unwrap_or(f32::NAN),
            classes,
        }),
        None => Ok(()),
    }
}

/// Cross-entropy and accuracy of class probabilities (rows of `classes`) against labels.
fn classify(probs: &[f32], labels: &[f32]) -> Metrics {
    let classes = probs.len() / labels.len().max(1);
    let mut m = Metrics::default();
    for (row, &label) in probs.chunks_exact(classes.max(1)).zip(labels) {
        let k = label as usize;
        let p = f64::from(row.get(k).copied().unwrap_or(0.0));
        // A NaN probability must make the loss NaN (f64::max would hide it).
        m.loss_sum -= if p.is_nan() { p } else { p.max(1e-30).ln() };
        let best =
            row.iter().enumerate().fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            );
        m.correct += usize::from(best.0 == k);
        m.classified += 1;
        m.examples += 1;
    }
    m
}
