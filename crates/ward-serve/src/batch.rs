//! Running a model: a concurrency limit with a bounded queue, and optional dynamic
//! batching. Excess load is refused at once with 503 (queue full) or after the queue
//! timeout, so memory never grows with the number of waiting clients.
//!
//! With batching, requests whose inputs agree on every dimension but the first are joined
//! along the first dimension (up to `max_batch_size` rows, waiting at most
//! `max_queue_delay_ms` for more), run once, and the outputs split back by rows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use ward_core::Tensor;
use ward_exec::{CheckedInputs, ExecError, LoadedPackage};

use crate::config::BatchingConfig;
use crate::error::ApiError;
use crate::model_threads::ModelThreads;

type Named = Vec<(String, Tensor)>;
type Reply = oneshot::Sender<Result<Named, ApiError>>;

struct Job {
    inputs: CheckedInputs,
    reply: Reply,
}

/// A request whose estimated compute (rows × the model's time per row) is under this runs
/// on the async worker that decoded it, holding a model slot like any run, when one is
/// free: for small models the hand-off to a model thread costs more than the model.
const INLINE_BUDGET: Duration = Duration::from_micros(200);

pub struct Batcher {
    engine: Arc<Engine>,
    /// The model's time for one row, measured at load; `None` when it could not be.
    per_row: Option<Duration>,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    batches: Option<mpsc::Sender<Job>>,
}

fn overloaded(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).retry_after(1)
}

/// Maps a prediction failure to the client: schema errors are the client's, with their
/// message (input names and what is wrong); anything else is ours and says nothing more.
pub fn prediction_error(e: ExecError) -> ApiError {
    match e {
        ExecError::Input(schema) => ApiError::bad_request("invalid-input", schema.to_string()),
        other => {
            tracing::error!("inference failed: {other}");
            internal()
        }
    }
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "inference failed",
    )
}

/// A model and the threads that run it.
struct Engine {
    package: Arc<LoadedPackage>,
    threads: ModelThreads,
}

/// Runs the model on one of its threads. `permit` (a model slot, or a share of one
/// batch's) is held until the computation ends, even when the client goes away and the
/// request's future is dropped first: a cancelled request must not free its slot while its
/// computation still runs.
async fn predict_holding<P: Send + 'static>(
    engine: Arc<Engine>,
    inputs: CheckedInputs,
    permit: P,
) -> Result<Named, ApiError> {
    let (done, result) = oneshot::channel();
    let package = engine.package.clone();
    engine
        .threads
        .submit(Box::new(move || {
            let outputs = package.run(inputs);
            drop(permit);
            let _ = done.send(outputs);
        }))
        .map_err(|_| internal())?;
    result
        .await
        .map_err(|_| internal())?
        .map_err(prediction_error)
}

impl Batcher {
    /// Needs a Tokio runtime when `batching` is set (it spawns the batching task).
    pub fn new(
        package: Arc<LoadedPackage>,
        concurrency: usize,
        max_queue: usize,
        batching: Option<BatchingConfig>,
    ) -> Batcher {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let engine = Arc::new(Engine {
            threads: ModelThreads::new(&package.manifest().name, concurrency),
            package: package.clone(),
        });
        let batchable = package
            .manifest()
            .inputs
            .iter()
            .all(|i| i.shape.first() == Some(&-1));
        let batches = match (batching, tokio::runtime::Handle::try_current()) {
            (Some(config), Ok(handle)) if batchable => {
                let (tx, rx) = mpsc::channel(max_queue.max(1));
                handle.spawn(batch_loop(engine.clone(), permits.clone(), config, rx));
                Some(tx)
            }
            (Some(_), _) => {
                tracing::warn!(
                    "{}: batching is configured but an input's first dimension is fixed; requests run one by one",
                    package.manifest().name
                );
                None
            }
            _ => None,
        };
        let per_row = time_one_row(&package);
        Batcher {
            engine,
            per_row,
            permits,
            waiting: AtomicUsize::new(0),
            max_waiting: concurrency.max(1) + max_queue,
            batches,
        }
    }

    /// Requests queued or running now.
    pub fn depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Runs inputs checked by this batcher's package.
    pub async fn run(
        &self,
        inputs: CheckedInputs,
        queue_timeout: Duration,
    ) -> Result<Named, ApiError> {
        // Counted out on drop, so a request whose client disconnects (its future dropped
        // mid-await) leaves the queue too.
        let _place = QueuePlace::take(&self.waiting, self.max_waiting)
            .ok_or_else(|| overloaded("the model's queue is full; retry later"))?;
        self.run_queued(inputs, queue_timeout).await
    }

    async fn run_queued(
        &self,
        inputs: CheckedInputs,
        queue_timeout: Duration,
    ) -> Result<Named, ApiError> {
        if let Some(batches) = &self.batches {
            let (reply, answer) = oneshot::channel();
            batches
                .try_send(Job { inputs, reply })
                .map_err(|_| overloaded("the model's queue is full; retry later"))?;
            return match tokio::time::timeout(queue_timeout + Duration::from_secs(60), answer).await
            {
                Ok(Ok(result)) => result,
                _ => Err(overloaded("the model did not answer in time")),
            };
        }
        if let Some(per_row) = self.per_row {
            let rows = u32::try_from(inputs.rows()).unwrap_or(u32::MAX);
            // Inline or not, a run holds one of the model's slots: a small model runs here
            // only when a slot is free, and otherwise waits for one like any other.
            if per_row.saturating_mul(rows) < INLINE_BUDGET {
                if let Ok(_slot) = self.permits.clone().try_acquire_owned() {
                    return self.engine.package.run(inputs).map_err(prediction_error);
                }
            }
        }
        let permit = tokio::time::timeout(queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| overloaded("the model is busy; retry later"))?
            .map_err(|_| overloaded("the server is shutting down"))?;
        predict_holding(self.engine.clone(), inputs, permit).await
    }
}

/// Times the model on one row of zeros (after a first run that builds its plan). Models
/// with a fixed first dimension other than 1, or that fail on zeros, are not timed: they
/// always run on a blocking thread.
fn time_one_row(package: &LoadedPackage) -> Option<Duration> {
    let inputs: Option<Vec<Tensor>> = package
        .manifest()
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            if shape.first().is_some_and(|&d| d != 1) {
                return None;
            }
            let bytes = ward_core::tensor::byte_len(&shape, spec.dtype)?;
            Tensor::from_bytes(spec.dtype, shape, vec![0; bytes]).ok()
        })
        .collect();
    let inputs = inputs?;
    package.executable().run(&inputs).ok()?;
    let started = std::time::Instant::now();
    package.executable().run(&inputs).ok()?;
    Some(started.elapsed())
}

/// One place in a model's queue, given back when dropped.
struct QueuePlace<'a>(&'a AtomicUsize);

impl<'a> QueuePlace<'a> {
    fn take(counter: &'a AtomicUsize, max: usize) -> Option<QueuePlace<'a>> {
        if counter.fetch_add(1, Ordering::AcqRel) >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(QueuePlace(counter))
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Collects jobs into batches and runs them, one batch per permit.
async fn batch_loop(
    engine: Arc<Engine>,
    permits: Arc<Semaphore>,
    config: BatchingConfig,
    mut jobs: mpsc::Receiver<Job>,
) {
    let delay = Duration::from_millis(config.max_queue_delay_ms);
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut rows = first.inputs.rows();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + delay;
        while rows < config.max_batch_size {
            match tokio::time::timeout_at(deadline, jobs.recv()).await {
                Ok(Some(job)) => {
                    let n = job.inputs.rows();
                    let joins = batch
                        .first()
                        .is_some_and(|b| b.inputs.joins_with(&job.inputs));
                    if joins && rows + n <= config.max_batch_size {
                        rows += n;
                        batch.push(job);
                    } else {
                        carried = Some(job);
                        break;
                    }
                }
                _ => break,
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(run_batch(engine.clone(), batch, permit));
    }
}

/// Runs one batch while holding `permit` (in a spawned task: it finishes even when every
/// client of the batch has gone). The parts of a batch share the permit.
async fn run_batch(engine: Arc<Engine>, batch: Vec<Job>, permit: OwnedSemaphorePermit) {
    let permit = Arc::new(permit);
    if batch.len() == 1 {
        let jobs = batch.into_iter().map(|j| (j.inputs, j.reply));
        return run_each(engine, jobs, permit).await;
    }
    let row_counts: Vec<usize> = batch.iter().map(|j| j.inputs.rows()).collect();
    let total: usize = row_counts.iter().sum();
    let parts: Vec<CheckedInputs>;
    let replies: Vec<Reply>;
    (parts, replies) = batch.into_iter().map(|j| (j.inputs, j.reply)).unzip();
    let Some(joined) = engine.package.join(&parts) else {
        return run_each(engine, parts.into_iter().zip(replies), permit).await;
    };
    match predict_holding(engine.clone(), joined, permit.clone()).await {
        Ok(outputs)
            if outputs
                .iter()
                .all(|(_, t)| t.shape().first() == Some(&total)) =>
        {
            let mut offset = 0;
            for (reply, rows) in replies.into_iter().zip(row_counts) {
                let part: Option<Named> = outputs
                    .iter()
                    .map(|(name, t)| {
                        let row_bytes = t.bytes().len() / total;
                        let mut shape = t.shape().to_vec();
                        *shape.first_mut()? = rows;
                        let bytes = t
                            .bytes()
                            .get(offset * row_bytes..(offset + rows) * row_bytes)?
                            .to_vec();
                        Tensor::from_bytes(t.dtype(), shape, bytes)
                            .ok()
                            .map(|t| (name.clone(), t))
                    })
                    .collect();
                offset += rows;
                let _ = reply.send(part.ok_or_else(internal));
            }
        }
        // A batch that fails (one bad input) or whose outputs do not follow the batch
        // dimension runs again request by request, so each gets its own answer.
        _ => run_each(engine, parts.into_iter().zip(replies), permit).await,
    }
}

async fn run_each(
    engine: Arc<Engine>,
    jobs: impl IntoIterator<Item = (CheckedInputs, Reply)>,
    permit: Arc<OwnedSemaphorePermit>,
) {
    for (inputs, reply) in jobs {
        let result = predict_holding(engine.clone(), inputs, permit.clone()).await;
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_core::DType;
    use ward_package::{write_package, FileDigest, InputSpec, Manifest, Origin, OutputSpec, Trust};

    /// out = data · weightᵀ + bias: a dense layer of 2 units over 4 features, small enough
    /// to run inline.
    const GRAPH: &[u8] = br#"{
        "format": "ward-graph", "version": 1,
        "inputs": [{"name": "data", "dtype": "f32"}],
        "params": [
            {"name": "fc1_weight", "dtype": "f32", "shape": [2, 4]},
            {"name": "fc1_bias", "dtype": "f32", "shape": [2]}
        ],
        "nodes": [{
            "name": "fc1",
            "op": {"type": "dense", "units": 2, "flatten": true, "bias": true},
            "inputs": [{"input": 0}, {"param": 0}, {"param": 1}]
        }],
        "outputs": [{"name": "out", "source": {"node": [0, 0]}}]
    }"#;

    fn tiny_package(dir: &std::path::Path) -> Arc<LoadedPackage> {
        let manifest = Manifest::new(
            "tiny",
            "1",
            1_764_000_000,
            Origin {
                framework: "mxnet".into(),
                framework_version: None,
                files: vec![FileDigest::of("tiny-symbol.json", b"{}")],
            },
            vec![InputSpec {
                name: "data".into(),
                dtype: DType::F32,
                shape: vec![-1, 4],
                range: None,
                allow_nonfinite: false,
            }],
            vec![OutputSpec {
                name: "out".into(),
                dtype: DType::F32,
                shape: vec![-1, 2],
            }],
        );
        let weights = vec![
            (
                "fc1_weight".to_string(),
                Tensor::from_f32(vec![2, 4], &[0.5; 8]).unwrap(),
            ),
            (
                "fc1_bias".to_string(),
                Tensor::from_f32(vec![2], &[0.0, 1.0]).unwrap(),
            ),
        ];
        let dir = dir.join("tiny");
        write_package(&dir, &manifest, GRAPH, &weights).unwrap();
        Arc::new(
            LoadedPackage::open(
                &dir,
                &Trust::AllowUnsigned,
                &Default::default(),
                Arc::new(ward_exec::TractBackend::new(1).unwrap()),
            )
            .unwrap(),
        )
    }

    fn one_row(package: &LoadedPackage) -> CheckedInputs {
        let row = Tensor::from_f32(vec![1, 4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        package
            .check_inputs(vec![("data".into(), row)], &Default::default())
            .unwrap()
    }

    #[tokio::test]
    async fn inline_runs_take_the_models_slot_too() {
        let dir = tempfile::tempdir().unwrap();
        let package = tiny_package(dir.path());
        let mut batcher = Batcher::new(package.clone(), 1, 4, None);
        // Every run of this model is small enough to run inline.
        batcher.per_row = Some(Duration::ZERO);
        let out = batcher
            .run(one_row(&package), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(out[0].1.to_f32_vec(), [5.0, 6.0]);
        // With its one slot taken (by a run in progress), a small request does not run
        // beside it: it waits for the slot, here past its queue timeout.
        let busy = batcher.permits.clone().try_acquire_owned().unwrap();
        let err = batcher
            .run(one_row(&package), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.message.contains("busy"), "{}", err.message);
        // Once the slot is free again, it runs (and gives the slot back).
        drop(busy);
        batcher
            .run(one_row(&package), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(batcher.permits.available_permits(), 1);
    }
}
