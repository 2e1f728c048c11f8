//! Weights with an identity: a plan is compiled for one set of weights and never outlives
//! them, because the plan cache is keyed by the weights' identity as well as the shapes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ward_core::Tensor;
use ward_graph::Graph;

use crate::error::ExecError;

/// Which weights a plan was compiled for: unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WeightsId(u64);

#[cfg(test)]
impl WeightsId {
    /// An id that no weight set of this process has (the counter counts up from 0).
    pub(crate) fn for_tests(n: u64) -> WeightsId {
        WeightsId(u64::MAX - n)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// One tensor per parameter of a graph, in the graph's order, checked against the
/// parameters' dtypes and shapes; immutable, so its identity names its contents.
#[derive(Debug)]
pub struct WeightSet {
    id: WeightsId,
    tensors: Vec<Tensor>,
}

impl WeightSet {
    /// Matches `named` to `graph`'s params by name: every param needs a tensor of its
    /// dtype and shape, and every tensor a param.
    pub fn new(
        graph: &Graph,
        mut named: HashMap<String, Tensor>,
    ) -> Result<Arc<WeightSet>, ExecError> {
        let mut tensors = Vec::with_capacity(graph.params.len());
        for p in &graph.params {
            let t = named.remove(&p.name).ok_or_else(|| ExecError::Weights {
                reason: format!("parameter {:?} is missing", p.name),
            })?;
            if t.shape() != p.shape.as_slice() || t.dtype() != p.dtype {
                return Err(ExecError::Weights {
                    reason: format!(
                        "parameter {:?}: the weights hold {} {:?}, the graph declares {} {:?}",
                        p.name,
                        t.dtype(),
                        t.shape(),
                        p.dtype,
                        p.shape
                    ),
                });
            }
            tensors.push(t);
        }
        if let Some(extra) = named.keys().next() {
            return Err(ExecError::Weights {
                reason: format!("{extra:?} is in the weights but not in the graph"),
            });
        }
        Ok(Arc::new(WeightSet {
            id: WeightsId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            tensors,
        }))
    }

    pub fn id(&self) -> WeightsId {
        self.id
    }

    /// The tensors, in the order of the graph's params, taken out.
    pub fn into_tensors(self) -> Vec<Tensor> {
        self.tensors
    }

    /// The tensors, in the order of the graph's params.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }
}
