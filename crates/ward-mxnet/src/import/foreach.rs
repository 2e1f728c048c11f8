//! MXNet's `_foreach` (`mx.sym.contrib.foreach`, GluonNLP's ELMo), unrolled at import.
//!
//! A `_foreach` runs its subgraph once per slice along axis 0 of its data inputs, feeding
//! each step the states the step before it produced. Ward's IR has no control flow, and
//! gets none for this: where the package's declared input shapes fix the loop length, the
//! loop is written out step by step in the operators its body already uses, so the
//! interpreter, the tract backend, ONNX export and gradients see an ordinary graph and
//! need nothing new. A length that follows a variable input dim cannot be written out
//! and is refused, as are `_while_loop` and `_cond`, whose trip count or branch depends on
//! the data.
//!
//! The node's inputs are, in order, its data inputs, its initial states and the values
//! the body reads unchanged every step (parameters and other free variables);
//! `in_data_locs`, `in_state_locs` and `remain_locs` give the position of each among the
//! subgraph's variables, in the order the subgraph lists them. The subgraph's outputs are
//! the step's `num_out_data` data outputs, then the new states; the node's outputs are
//! the data outputs stacked along a new axis 0, then the final states.

use ward_graph::ir::{Node, Op, Source};
use ward_graph::ops::shape::{Split, Stack};
use ward_graph::shape::infer_shapes;

use super::{unique_node_name, ImportError, Importer, Value};
use crate::attrs::AttrReader;
use crate::limits::MAX_SYMBOL_NODES;
use crate::symbol::{Symbol, SymbolNode};

/// Most nodes an unrolled graph may hold: no more than a symbol ward would read.
pub(crate) const MAX_UNROLLED_NODES: usize = MAX_SYMBOL_NODES;

/// The node's attributes, checked against its inputs and its subgraph.
struct Loop<'s> {
    body: &'s Symbol,
    /// Per node input, the subgraph node (a variable) it binds.
    binds: Vec<usize>,
    data: usize,
    states: usize,
    out_data: usize,
}

/// What a node's inputs are to its subgraph, from the attributes; every refusal names the
/// node and the attribute.
fn check_loop(node: &SymbolNode) -> Result<Loop<'_>, ImportError> {
    let err = |reason: String| ImportError::Node {
        node: node.name.clone(),
        op: node.source_op.clone(),
        reason,
    };
    let mut a = AttrReader::new(&node.name, &node.source_op, &node.attrs);
    let num_args = a.req_int("num_args")?;
    let num_outputs = a.req_int("num_outputs")?;
    let num_out_data = a.req_int("num_out_data")?;
    let data_locs = a.req_tuple("in_data_locs")?;
    let state_locs = a.req_tuple("in_state_locs")?;
    let remain_locs = a.req_tuple("remain_locs")?;
    a.finish()?;
    let [body] = node.subgraphs.as_slice() else {
        return Err(err(format!(
            "has {} subgraphs; a _foreach holds its loop body",
            node.subgraphs.len()
        )));
    };
    let inputs = node.inputs.len();
    // MXNet counts the subgraph among the arguments (`_foreach(g, *inputs)`).
    if usize::try_from(num_args).ok() != inputs.checked_add(1) {
        return Err(err(format!(
            "attribute \"num_args\" = {num_args} but the node has {inputs} inputs (num_args counts them and the subgraph)"
        )));
    }
    let located = data_locs.len() + state_locs.len() + remain_locs.len();
    if located != inputs {
        return Err(err(format!(
            "attributes \"in_data_locs\", \"in_state_locs\", \"remain_locs\" place {located} values but the node has {inputs} inputs"
        )));
    }
    if body.arg_nodes.len() != inputs {
        return Err(err(format!(
            "has {inputs} inputs but its subgraph has {} variables",
            body.arg_nodes.len()
        )));
    }
    if data_locs.is_empty() {
        return Err(err(
            "attribute \"in_data_locs\" is empty: the loop has no data to iterate over".into(),
        ));
    }
    let mut binds = Vec::with_capacity(inputs);
    let mut seen = vec![false; inputs];
    for (attr, locs) in [
        ("in_data_locs", &data_locs),
        ("in_state_locs", &state_locs),
        ("remain_locs", &remain_locs),
    ] {
        for &loc in locs {
            let slot = usize::try_from(loc)
                .ok()
                .and_then(|l| seen.get_mut(l).map(|s| (l, s)));
            let Some((l, slot)) = slot else {
                return Err(err(format!(
                    "attribute {attr:?} holds {loc}, outside the subgraph's {inputs} variables"
                )));
            };
            if std::mem::replace(slot, true) {
                return Err(err(format!(
                    "attribute {attr:?} holds {loc}, a variable already bound"
                )));
            }
            let var = body.arg_nodes.get(l).copied().ok_or_else(|| {
                err(format!(
                    "attribute {attr:?} holds {loc}, which has no variable"
                ))
            })?;
            binds.push(var);
        }
    }
    let outputs = usize::try_from(num_outputs)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| err(format!("attribute \"num_outputs\" = {num_outputs}")))?;
    let out_data = usize::try_from(num_out_data)
        .ok()
        .filter(|&n| n <= outputs)
        .ok_or_else(|| {
            err(format!(
                "attribute \"num_out_data\" = {num_out_data} is outside 0 to num_outputs = {outputs}"
            ))
        })?;
    if outputs - out_data != state_locs.len() {
        return Err(err(format!(
            "attribute \"num_outputs\" = {outputs} with \"num_out_data\" = {out_data} leaves {} states, but \"in_state_locs\" has {}",
            outputs - out_data,
            state_locs.len()
        )));
    }
    if body.heads.len() != outputs {
        return Err(err(format!(
            "attribute \"num_outputs\" = {outputs} but its subgraph has {} outputs",
            body.heads.len()
        )));
    }
    Ok(Loop {
        body,
        binds,
        data: data_locs.len(),
        states: state_locs.len(),
        out_data,
    })
}

impl Importer<'_> {
    /// The outputs of `_foreach` node `node`, its loop written out step by step.
    pub(super) fn foreach(
        &mut self,
        symbol: &Symbol,
        node: &SymbolNode,
    ) -> Result<Vec<Value>, ImportError> {
        let err = |reason: String| ImportError::Node {
            node: node.name.clone(),
            op: node.source_op.clone(),
            reason,
        };
        let spec = check_loop(node)?;
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for e in &node.inputs {
            inputs.push(self.ready(symbol, *e, &node.name)?);
        }
        let length = self.loop_length(inputs.get(..spec.data).unwrap_or_default(), &err)?;
        let body_ops = spec.body.nodes.iter().filter(|n| n.op != "null").count();
        // Bounded before anything is built: the per-step slices, the body, the stacks.
        let added = length
            .checked_mul(body_ops + spec.data + spec.out_data)
            .and_then(|n| n.checked_add(self.graph.nodes.len()));
        if added.is_none_or(|n| n > MAX_UNROLLED_NODES) {
            return Err(err(format!(
                "unrolling {length} steps of a {body_ops}-operator body passes the limit of {MAX_UNROLLED_NODES} graph nodes"
            )));
        }

        // Each data input, cut into its steps once.
        let mut steps: Vec<usize> = Vec::with_capacity(spec.data);
        for (k, source) in inputs.iter().take(spec.data).enumerate() {
            let split: Op = Split {
                axis: 0,
                outputs: length,
                squeeze: true,
            }
            .into();
            split.def().validate().map_err(&err)?;
            self.graph.nodes.push(Node {
                name: unique_node_name(&self.graph, &format!("{}/data{k}", node.name)),
                op: split,
                inputs: vec![*source],
            });
            steps.push(self.graph.nodes.len() - 1);
        }

        // The importer's per-node values stand for the body's nodes while it is converted.
        let outer = std::mem::take(&mut self.values);
        let unrolled = self.unroll(node, &spec, &inputs, &steps, length);
        self.values = outer;
        let (per_step, states) = unrolled?;

        let mut outputs = Vec::with_capacity(spec.out_data + spec.states);
        for (k, sources) in per_step.into_iter().enumerate() {
            let stack: Op = Stack { axis: 0 }.into();
            stack.def().validate().map_err(&err)?;
            let name = unique_node_name(&self.graph, &format!("{}/output{k}", node.name));
            self.graph.nodes.push(Node {
                name,
                op: stack,
                inputs: sources,
            });
            outputs.push(Value::Ready(Source::Node(self.graph.nodes.len() - 1, 0)));
        }
        outputs.extend(states.into_iter().map(Value::Ready));
        Ok(outputs)
    }

    /// Axis 0 of the data inputs, the same for each and fixed by the declared shapes.
    fn loop_length(
        &self,
        data: &[Source],
        err: &impl Fn(String) -> ImportError,
    ) -> Result<usize, ImportError> {
        // A dim that differs between variable dims at 1 and at 2 follows one of them.
        let one = infer_shapes(&self.graph, &self.data_shapes(1))?;
        let two = infer_shapes(&self.graph, &self.data_shapes(2))?;
        let mut length = None;
        for (k, source) in data.iter().enumerate() {
            let a = one.of(&self.graph, *source)?.first().copied();
            let b = two.of(&self.graph, *source)?.first().copied();
            let (Some(a), Some(b)) = (a, b) else {
                return Err(err(format!(
                    "data input {k} is a scalar: there is no axis 0 to loop over"
                )));
            };
            if a != b {
                return Err(err(format!(
                    "data input {k}'s axis 0, the loop length, follows a variable input dim: ward unrolls a _foreach only over a length the declared input shapes fix"
                )));
            }
            if a == 0 {
                return Err(err(format!("data input {k} has length 0")));
            }
            match length {
                Some(l) if l != a => {
                    return Err(err(format!(
                        "data input {k} has length {a} but data input 0 has {l}"
                    )))
                }
                _ => length = Some(a),
            }
        }
        length.ok_or_else(|| err("has no data input".into()))
    }

    /// The body converted once per step; returns each data output's per-step values and
    /// the final states. `self.values` is the body's while this runs.
    fn unroll(
        &mut self,
        node: &SymbolNode,
        spec: &Loop<'_>,
        inputs: &[Source],
        steps: &[usize],
        length: usize,
    ) -> Result<(Vec<Vec<Source>>, Vec<Source>), ImportError> {
        let body = spec.body;
        let mut states: Vec<Source> = inputs
            .iter()
            .skip(spec.data)
            .take(spec.states)
            .copied()
            .collect();
        let mut per_step: Vec<Vec<Source>> = vec![Vec::with_capacity(length); spec.out_data];
        for t in 0..length {
            // Each variable's value this step: its data slice, current state or input.
            let mut bound: Vec<Option<Source>> = vec![None; body.nodes.len()];
            for (k, var) in spec.binds.iter().enumerate() {
                let value = if let Some(split) = steps.get(k) {
                    Source::Node(*split, t)
                } else if let Some(state) = k.checked_sub(spec.data).and_then(|s| states.get(s)) {
                    *state
                } else {
                    inputs.get(k).copied().ok_or_else(|| ImportError::Node {
                        node: node.name.clone(),
                        op: node.source_op.clone(),
                        reason: format!("has no input {k}"),
                    })?
                };
                if let Some(slot) = bound.get_mut(*var) {
                    *slot = Some(value);
                }
            }
            self.values = Vec::with_capacity(body.nodes.len());
            for (index, inner) in body.nodes.iter().enumerate() {
                let values =
                    if inner.op == "null" {
                        let source = bound.get(index).copied().flatten().ok_or_else(|| {
                            ImportError::Node {
                                node: node.name.clone(),
                                op: node.source_op.clone(),
                                reason: format!(
                                    "its subgraph's variable {:?} is not one it lists",
                                    inner.name
                                ),
                            }
                        })?;
                        vec![Value::Ready(source)]
                    } else {
                        let step = SymbolNode {
                            name: format!("{}/t{t}/{}", node.name, inner.name),
                            ..inner.clone()
                        };
                        self.convert_operator(body, &step)?
                    };
                self.values.push(values);
            }
            let mut heads = Vec::with_capacity(body.heads.len());
            for head in &body.heads {
                heads.push(self.ready(body, *head, &node.name)?);
            }
            for (k, source) in heads.iter().take(spec.out_data).enumerate() {
                if let Some(list) = per_step.get_mut(k) {
                    list.push(*source);
                }
            }
            let next: Vec<Source> = heads.into_iter().skip(spec.out_data).collect();
            if t == 0 {
                // The body is the same function every step: states that keep their shape
                // through the first keep it through all.
                self.check_states(node, &states, &next)?;
            }
            states = next;
        }
        Ok((per_step, states))
    }

    /// MXNet refuses a body whose new states differ in shape from the states it was
    /// given; so does ward, with the variable input dims at 1 and at 2.
    fn check_states(
        &self,
        node: &SymbolNode,
        given: &[Source],
        made: &[Source],
    ) -> Result<(), ImportError> {
        for fill in [1, 2] {
            let shapes = infer_shapes(&self.graph, &self.data_shapes(fill))?;
            for (k, (a, b)) in given.iter().zip(made).enumerate() {
                let (a, b) = (shapes.of(&self.graph, *a)?, shapes.of(&self.graph, *b)?);
                if a != b {
                    return Err(ImportError::Node {
                        node: node.name.clone(),
                        op: node.source_op.clone(),
                        reason: format!(
                            "its body makes state {k} of shape {b:?} from one of shape {a:?}: a loop's states keep their shape"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}
