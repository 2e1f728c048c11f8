//! The training loop's core: one graph, its weights, a declared optimizer and the run's
//! random stream; batches in, updated weights and metrics out.
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

use crate::engine::{Engine, EngineOptions};
use crate::optim::{OptimError, Optimizer, ParamMults, ParamState, ParamUpdate};
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
    #[error("the graph must have one data input, one label input and end in SoftmaxOutput: {0}")]
    Graph(String),
    #[error("label {label} of example {index} in the batch is not a class in 0..{classes}")]
    Label {
        index: usize,
        label: f32,
        classes: usize,
    },
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
    /// Σ −ln p(label).
    pub cross_entropy_sum: f64,
    pub correct: usize,
    pub examples: usize,
}

impl Metrics {
    pub fn add(&mut self, other: Metrics) {
        self.cross_entropy_sum += other.cross_entropy_sum;
        self.correct += other.correct;
        self.examples += other.examples;
    }

    pub fn cross_entropy(&self) -> f64 {
        self.cross_entropy_sum / self.examples.max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.examples.max(1) as f64
    }

    /// The metrics of class probabilities (one row per label) against class labels.
    pub fn of_probabilities(probs: &[f32], labels: &[f32]) -> Metrics {
        classify(probs, labels)
    }
}

/// A classifier ending in SoftmaxOutput, training.
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
    label_input: usize,
    /// The label SoftmaxOutput skips (`use_ignore`), which is no class.
    ignore_label: Option<f32>,
}

impl Trainer {
    /// `weights` one per graph parameter; batches of `data_shape` (batch first) with one
    /// class label per example. With Module multipliers, pass the MXNet symbol the graph
    /// was imported from: its variables' `__wd_mult__` are MXNet's (see
    /// [`ParamMults::module_symbol`]).
    pub fn new(
        graph: Graph,
        weights: Vec<Vec<f32>>,
        data_shape: &[usize],
        optimizer: Optimizer,
        multipliers: Multipliers,
        symbol: Option<&ward_mxnet::symbol::Symbol>,
        seed: RunSeed,
    ) -> Result<Trainer, TrainError> {
        let (data_input, label_input, head) = classifier_inputs(&graph)?;
        let ignore_label = head.use_ignore.then_some(head.ignore_label as f32);
        let shapes = input_shapes(graph.inputs.len(), data_input, label_input, data_shape);
        let mults = graph
            .params
            .iter()
            .map(|p| {
                (p.role == ParamRole::Trainable).then(|| match multipliers {
                    Multipliers::Module => match symbol {
                        Some(symbol) => ParamMults::module_symbol(optimizer.spec(), p, symbol),
                        None => ParamMults::module_decl(optimizer.spec(), p),
                    },
                    Multipliers::Gluon => ParamMults::gluon(p.lr_mult, p.wd_mult),
                })
            })
            .collect();
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
            ignore_label,
        })
    }

    pub fn weights(&self) -> &[Vec<f32>] {
        &self.weights
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
        let inputs = self.inputs(data, labels);
        let refs: Vec<&[f32]> = self.weights.iter().map(Vec::as_slice).collect();
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
        let nonfinite = out
            .param_grads
            .iter()
            .position(|g| g.iter().any(|v| !v.is_finite()));
        if !metrics.cross_entropy_sum.is_finite() || nonfinite.is_some() {
            return Err(TrainError::NonFinite {
                step: self.step,
                loss: metrics.cross_entropy(),
                param: nonfinite
                    .and_then(|p| self.names.get(p).cloned())
                    .unwrap_or_else(|| "none (every gradient is finite)".into()),
            });
        }
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
        for (p, value) in out.states {
            if let Some(w) = self.weights.get_mut(p) {
                *w = value;
            }
        }
        self.step += 1;
        Ok(metrics)
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
    /// [`Self::evaluator`]. Rows past `valid` (a padded last batch) are not counted.
    pub fn evaluate(
        &self,
        evaluator: &Engine,
        data: &[f32],
        labels: &[f32],
        valid: usize,
    ) -> Result<Metrics, TrainError> {
        let probs = self.predict(evaluator, data, labels, valid)?;
        let valid = valid.min(labels.len());
        Ok(classify(&probs, labels.get(..valid).unwrap_or(&[])))
    }

    /// The head's class probabilities for the first `valid` rows of one batch (one row
    /// of classes each), with an engine from [`Self::evaluator`]; their labels checked.
    pub fn predict(
        &self,
        evaluator: &Engine,
        data: &[f32],
        labels: &[f32],
        valid: usize,
    ) -> Result<Vec<f32>, TrainError> {
        let inputs = self.inputs(data, labels);
        let refs: Vec<&[f32]> = self.weights.iter().map(Vec::as_slice).collect();
        let mut outputs = evaluator.forward(&refs, &inputs)?;
        let mut probs = if outputs.is_empty() {
            Vec::new()
        } else {
            outputs.swap_remove(0).data
        };
        let classes = probs.len() / labels.len().max(1);
        let valid = valid.min(labels.len());
        check_labels(
            labels.get(..valid).unwrap_or(&[]),
            classes,
            self.ignore_label,
        )?;
        probs.truncate(valid * classes);
        Ok(probs)
    }

    fn check_labels(&self, probs: &[f32], labels: &[f32]) -> Result<(), TrainError> {
        check_labels(labels, probs.len() / labels.len().max(1), self.ignore_label)
    }

    fn inputs<'a>(&self, data: &'a [f32], labels: &'a [f32]) -> Vec<&'a [f32]> {
        let mut inputs: Vec<&[f32]> = vec![&[]; self.engine.graph().inputs.len()];
        if let Some(slot) = inputs.get_mut(self.data_input) {
            *slot = data;
        }
        if let Some(slot) = inputs.get_mut(self.label_input) {
            *slot = labels;
        }
        inputs
    }
}

/// The engine's input shapes: `data_shape` for the data input, one label per example.
fn input_shapes(
    inputs: usize,
    data_input: usize,
    label_input: usize,
    data_shape: &[usize],
) -> Vec<Vec<usize>> {
    let mut shapes = vec![Vec::new(); inputs];
    if let Some(s) = shapes.get_mut(data_input) {
        *s = data_shape.to_vec();
    }
    if let Some(s) = shapes.get_mut(label_input) {
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
        m.cross_entropy_sum -= if p.is_nan() { p } else { p.max(1e-30).ln() };
        let best =
            row.iter().enumerate().fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            );
        m.correct += usize::from(best.0 == k);
        m.examples += 1;
    }
    m
}
