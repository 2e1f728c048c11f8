//! Running a model: a concurrency limit with a bounded queue, and optional dynamic
//! batching. Excess load is refused at once with 503 (queue full) or after the queue
//! timeout, so memory never grows with the number of waiting clients.
//!
//! With batching, requests whose inputs agree on every dimension but the first are joined
//! along the first dimension, run once, and the outputs split back by rows. A batch forms
//! when a model thread is free, from the requests that queued while none was; how many
//! rows it takes is what the model's measured costs say runs fastest per row
//! ([`BatchCosts`]), not the most available. It waits for more rows (at most
//! `max_queue_delay_ms` after its first request queued) only when a larger batch is
//! measured to pay and other requests are in flight.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use ward_core::Tensor;
use ward_exec::{CheckedInputs, ExecError, LoadedPackage};

use crate::batch_cost::{table_sizes, BatchChoice, BatchCosts};
use crate::config::BatchingConfig;
use crate::error::ApiError;
use crate::model_threads::ModelThreads;

type Named = Vec<(String, Tensor)>;
type Reply = oneshot::Sender<Result<Named, ApiError>>;

struct Job {
    inputs: CheckedInputs,
    reply: Reply,
    queued: tokio::time::Instant,
}

/// A run (a request, or a batch) whose estimated compute (rows × the model's time per
/// row) is under this runs on an async worker, holding a model slot like any run: for
/// small models the hand-off to a model thread costs more than the model (with batching
/// on, the MLP of the serving benchmark served 14 500 requests a second at 4 connections
/// through its model threads, 51 000 inline).
const INLINE_BUDGET: Duration = Duration::from_micros(200);

/// Batch sizes are timed at load only while one run of them is estimated to take less
/// than this (from the previous size's time per row): a large model loads without minutes
/// of profiling, and its untimed sizes are never chosen.
const PROFILE_RUN_LIMIT: Duration = Duration::from_secs(1);

pub struct Batcher {
    engine: Arc<Engine>,
    permits: Arc<Semaphore>,
    /// Requests queued or running.
    waiting: Arc<AtomicUsize>,
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

/// A model, the threads that run it, and what its runs cost.
struct Engine {
    package: Arc<LoadedPackage>,
    threads: ModelThreads,
    costs: BatchCosts,
}

impl Engine {
    /// Whether a run of `rows` rows is estimated under [`INLINE_BUDGET`], from the
    /// model's time per row (`false` when it was never measured).
    fn is_small(&self, rows: usize) -> bool {
        let rows = u32::try_from(rows).unwrap_or(u32::MAX);
        self.costs
            .cost(1)
            .is_some_and(|per_row| per_row.saturating_mul(rows) < INLINE_BUDGET)
    }

    /// Runs `inputs` on the calling thread and times the run into the cost table.
    fn run_timed(&self, inputs: CheckedInputs) -> Result<Named, ExecError> {
        let rows = inputs.rows();
        let started = Instant::now();
        let outputs = self.package.run(inputs)?;
        self.costs.record(rows, started.elapsed());
        Ok(outputs)
    }
}

/// Runs the model on one of its threads, or on this async worker when the run is small
/// ([`Engine::is_small`]). `permit` (a model slot, or a share of one batch's) is held
/// until the computation ends, even when the client goes away and the request's future is
/// dropped first: a cancelled request must not free its slot while its computation still
/// runs.
async fn predict_holding<P: Send + 'static>(
    engine: Arc<Engine>,
    inputs: CheckedInputs,
    permit: P,
) -> Result<Named, ApiError> {
    if engine.is_small(inputs.rows()) {
        let outputs = engine.run_timed(inputs);
        drop(permit);
        return outputs.map_err(prediction_error);
    }
    let (done, result) = oneshot::channel();
    let running = engine.clone();
    engine
        .threads
        .submit(Box::new(move || {
            let outputs = running.run_timed(inputs);
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
    /// Needs a Tokio runtime when `batching` is set (it spawns the batching task). Times
    /// the model at load: one row, and with batching each size of its cost table.
    pub fn new(
        package: Arc<LoadedPackage>,
        concurrency: usize,
        max_queue: usize,
        batching: Option<BatchingConfig>,
    ) -> Batcher {
        let name = package.manifest().name.clone();
        let batchable = package
            .manifest()
            .inputs
            .iter()
            .all(|i| i.shape.first() == Some(&-1));
        let runtime = tokio::runtime::Handle::try_current();
        let batching = match (batching, &runtime) {
            (Some(config), Ok(_)) if batchable => Some(config),
            (Some(_), _) => {
                tracing::warn!(
                    "{name}: batching is configured but an input's first dimension is fixed; requests run one by one"
                );
                None
            }
            _ => None,
        };
        let costs = BatchCosts::new(&table_sizes(batching.map_or(1, |b| b.max_batch_size)));
        profile(&package, &costs);
        if batching.is_some() {
            tracing::info!("{name}: batch costs {}", costs.describe());
        }
        let engine = Arc::new(Engine {
            threads: ModelThreads::new(&name, concurrency),
            package,
            costs,
        });
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let waiting = Arc::new(AtomicUsize::new(0));
        let batches = match (batching, runtime) {
            (Some(config), Ok(handle)) => {
                let (tx, rx) = mpsc::channel(max_queue.max(1));
                let task = BatchLoop {
                    engine: engine.clone(),
                    permits: permits.clone(),
                    waiting: waiting.clone(),
                    config,
                    jobs: rx,
                    pending: VecDeque::new(),
                    waits_off_until: None,
                };
                handle.spawn(task.run());
                Some(tx)
            }
            _ => None,
        };
        Batcher {
            engine,
            permits,
            waiting,
            max_waiting: concurrency.max(1) + max_queue,
            batches,
        }
    }

    /// What the model's runs cost, by batch size.
    pub fn costs(&self) -> &BatchCosts {
        &self.engine.costs
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
            let job = Job {
                inputs,
                reply,
                queued: tokio::time::Instant::now(),
            };
            batches
                .try_send(job)
                .map_err(|_| overloaded("the model's queue is full; retry later"))?;
            return match tokio::time::timeout(queue_timeout + Duration::from_secs(60), answer).await
            {
                Ok(Ok(result)) => result,
                _ => Err(overloaded("the model did not answer in time")),
            };
        }
        // Inline or not (`predict_holding` decides), a run holds one of the model's slots:
        // a small model waits for one like any other.
        let permit = tokio::time::timeout(queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| overloaded("the model is busy; retry later"))?
            .map_err(|_| overloaded("the server is shutting down"))?;
        predict_holding(self.engine.clone(), inputs, permit).await
    }
}

/// Inputs of zeros with `rows` rows, or `None` when an input's first dimension is fixed
/// to something else.
fn zeros(package: &LoadedPackage, rows: usize) -> Option<Vec<Tensor>> {
    package
        .manifest()
        .inputs
        .iter()
        .map(|spec| {
            let mut shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(1))
                .collect();
            match (spec.shape.first(), shape.first_mut()) {
                (Some(&-1), Some(first)) => *first = rows,
                (Some(_), Some(&mut first)) if first != rows => return None,
                _ => {}
            }
            let bytes = ward_core::tensor::byte_len(&shape, spec.dtype)?;
            Tensor::from_bytes(spec.dtype, shape, vec![0; bytes]).ok()
        })
        .collect()
}

/// Times the model on zeros at each of the table's sizes, smallest first: a first run
/// builds the size's plan, then the faster of two timed runs. Stops at a size that fails
/// (models that fail on zeros are not timed, and always run on a model thread) or whose
/// run would take longer than `PROFILE_RUN_LIMIT`.
fn profile(package: &LoadedPackage, costs: &BatchCosts) {
    let mut per_row: Option<Duration> = None;
    for &rows in costs.sizes() {
        let estimate = per_row.map(|t| t.saturating_mul(u32::try_from(rows).unwrap_or(u32::MAX)));
        if estimate.is_some_and(|t| t > PROFILE_RUN_LIMIT) {
            return;
        }
        let Some(inputs) = zeros(package, rows) else {
            return;
        };
        if package.executable().run(&inputs).is_err() {
            return;
        }
        let mut best = Duration::MAX;
        for _ in 0..2 {
            let started = Instant::now();
            if package.executable().run(&inputs).is_err() {
                return;
            }
            best = best.min(started.elapsed());
        }
        costs.record(rows, best);
        per_row = Some(best / u32::try_from(rows).unwrap_or(u32::MAX));
    }
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

/// The batching task: collects jobs into batches and runs them, one batch per permit.
struct BatchLoop {
    engine: Arc<Engine>,
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    config: BatchingConfig,
    jobs: mpsc::Receiver<Job>,
    /// Jobs taken from the channel and not yet run, oldest first.
    pending: VecDeque<Job>,
    /// No batch waits for rows before this, after a wait that its delay ended short of
    /// its rows: the clients in flight did not fill it, and waiting again soon would
    /// only add the delay to every batch.
    waits_off_until: Option<tokio::time::Instant>,
}

/// After a wait that did not fill its batch, batches run without waiting for this many
/// times the delay: a wait that keeps failing then idles a model thread at most 2 % of
/// the time, and one waits again in case the load has changed.
const WAITS_OFF_AFTER_UNFILLED_WAIT: u32 = 50;

impl BatchLoop {
    async fn run(mut self) {
        let delay = Duration::from_millis(self.config.max_queue_delay_ms);
        loop {
            if self.pending.is_empty() {
                match self.jobs.recv().await {
                    Some(job) => self.pending.push_back(job),
                    None => return,
                }
            }
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                return;
            };
            // What queued while every thread was busy is what the batch can take.
            self.take_queued();
            let mut choice = self.choose();
            if let (Some(target), Some(head)) = (choice.worth_waiting_for, self.pending.front()) {
                let now = tokio::time::Instant::now();
                let waits_paid_lately = self.waits_off_until.is_none_or(|until| now >= until);
                if waits_paid_lately && self.could_fill(target) {
                    let deadline = head.queued + delay;
                    while self.joinable_rows() < target {
                        match tokio::time::timeout_at(deadline, self.jobs.recv()).await {
                            Ok(Some(job)) => {
                                self.pending.push_back(job);
                                self.take_queued();
                            }
                            _ => break,
                        }
                    }
                    self.waits_off_until = (self.joinable_rows() < target).then(|| {
                        tokio::time::Instant::now() + delay * WAITS_OFF_AFTER_UNFILLED_WAIT
                    });
                    choice = self.choose();
                }
            }
            let batch = self.take_batch(choice.run);
            tokio::spawn(run_batch(self.engine.clone(), batch, permit));
        }
    }

    /// Moves every job waiting in the channel to `pending` (at most the queue's capacity).
    fn take_queued(&mut self) {
        while let Ok(job) = self.jobs.try_recv() {
            self.pending.push_back(job);
        }
    }

    /// The pending jobs that join the oldest one, oldest first, up to the largest batch.
    fn joinable(&self) -> impl Iterator<Item = (usize, &Job)> + '_ {
        let head = self.pending.front();
        let mut rows = 0;
        self.pending.iter().enumerate().filter(move |(i, job)| {
            let n = job.inputs.rows();
            let joins = *i == 0
                || (head.is_some_and(|h| h.inputs.joins_with(&job.inputs))
                    && rows + n <= self.config.max_batch_size);
            if joins {
                rows += n;
            }
            joins
        })
    }

    fn joinable_rows(&self) -> usize {
        self.joinable().map(|(_, job)| job.inputs.rows()).sum()
    }

    fn choose(&self) -> BatchChoice {
        let free = self.permits.available_permits() + 1;
        self.engine.costs.choose(self.joinable_rows(), free)
    }

    /// Whether the requests in flight (queued or running) could fill a batch of
    /// `target` rows, and some are not yet pending: only then can waiting bring the rows
    /// soon. A lone client waits for its reply before it sends again, and four clients
    /// never fill a batch of eight.
    fn could_fill(&self, target: usize) -> bool {
        let in_flight = self.waiting.load(Ordering::Relaxed);
        in_flight >= target && in_flight > self.pending.len()
    }

    /// Takes the oldest job and the joinable ones after it while they fit in `rows`.
    fn take_batch(&mut self, rows: usize) -> Vec<Job> {
        let mut total = 0;
        let chosen: Vec<usize> = self
            .joinable()
            .take_while(|(_, job)| {
                total += job.inputs.rows();
                total <= rows
            })
            .map(|(i, _)| i)
            .collect();
        let chosen = if chosen.is_empty() { vec![0] } else { chosen };
        // Removing from the back keeps the earlier indices valid.
        let mut batch: Vec<Job> = chosen
            .iter()
            .rev()
            .filter_map(|&i| self.pending.remove(i))
            .collect();
        batch.reverse();
        batch
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

    /// One row `[i, i, i, i]`: the tiny model answers `[2i, 2i + 1]`.
    fn row(package: &LoadedPackage, i: usize) -> CheckedInputs {
        let row = Tensor::from_f32(vec![1, 4], &[i as f32; 4]).unwrap();
        package
            .check_inputs(vec![("data".into(), row)], &Default::default())
            .unwrap()
    }

    fn batching(max_batch_size: usize, max_queue_delay_ms: u64) -> Option<BatchingConfig> {
        Some(BatchingConfig {
            max_batch_size,
            max_queue_delay_ms,
        })
    }

    /// Sets the tiny model's cost table to these milliseconds for sizes 1, 2, 4 and 8.
    fn set_costs(batcher: &Batcher, ms: [f64; 4]) {
        for (size, ms) in [1, 2, 4, 8].into_iter().zip(ms) {
            batcher
                .engine
                .costs
                .set(size, Duration::from_secs_f64(ms / 1e3));
        }
    }

    /// Sends rows `first..first + n` as one request each, and waits until all are queued
    /// (or answered).
    async fn send(
        batcher: &Arc<Batcher>,
        package: &Arc<LoadedPackage>,
        first: usize,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<(usize, Result<Named, ApiError>)>> {
        let queued_before = batcher.depth();
        let tasks: Vec<_> = (first..first + n)
            .map(|i| {
                let (batcher, inputs) = (batcher.clone(), row(package, i));
                tokio::spawn(async move { (i, batcher.run(inputs, Duration::from_secs(60)).await) })
            })
            .collect();
        while batcher.depth() < queued_before + n && !tasks.iter().all(|t| t.is_finished()) {
            tokio::task::yield_now().await;
        }
        tasks
    }

    /// Every request got its own row's answer.
    async fn check_answers(tasks: Vec<tokio::task::JoinHandle<(usize, Result<Named, ApiError>)>>) {
        for task in tasks {
            let (i, result) = task.await.unwrap();
            let out = result.unwrap();
            let expected = [2.0 * i as f32, 2.0 * i as f32 + 1.0];
            assert_eq!(out[0].1.to_f32_vec(), expected, "row {i}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_takes_the_size_that_costs_least_per_row_not_the_most_rows() {
        let dir = tempfile::tempdir().unwrap();
        let package = tiny_package(dir.path());
        let batcher = Arc::new(Batcher::new(package.clone(), 1, 16, batching(8, 0)));
        assert!(
            batcher.engine.costs.cost(8).is_some(),
            "batch sizes are timed at load"
        );
        let costs = &batcher.engine.costs;

        // Batches cost as much per row as single rows (a convolution network on ward's
        // kernels): four queued requests run one by one.
        set_costs(&batcher, [1.0, 2.0, 4.0, 8.0]);
        let busy = batcher.permits.clone().try_acquire_owned().unwrap();
        let before = (costs.runs(1), costs.runs(2), costs.runs(4));
        let tasks = send(&batcher, &package, 0, 4).await;
        drop(busy);
        check_answers(tasks).await;
        assert_eq!(
            (costs.runs(1), costs.runs(2), costs.runs(4)),
            (before.0 + 4, before.1, before.2)
        );

        // Batches pay (a dense model): the same four run as one batch of four.
        set_costs(&batcher, [1.0, 1.0, 1.0, 1.0]);
        let busy = batcher.permits.clone().try_acquire_owned().unwrap();
        let before = (costs.runs(1), costs.runs(4));
        let tasks = send(&batcher, &package, 10, 4).await;
        drop(busy);
        check_answers(tasks).await;
        assert_eq!((costs.runs(1), costs.runs(4)), (before.0, before.1 + 1));
    }

    /// Sends rows `first..first + n` and answers them; the (Tokio) time it took. The
    /// cost table is set first to one microsecond a batch, whatever the runs before took:
    /// every run stays small enough to run on the test's thread, where the paused clock
    /// cannot jump past a request's wait for its answer while a model thread computes.
    async fn answered_after(
        batcher: &Arc<Batcher>,
        package: &Arc<LoadedPackage>,
        first: usize,
        n: usize,
    ) -> Duration {
        set_costs(batcher, [0.001; 4]);
        let started = tokio::time::Instant::now();
        check_answers(send(batcher, package, first, n).await).await;
        started.elapsed()
    }

    /// `n` requests in flight elsewhere: their places in the queue, taken.
    fn in_flight(batcher: &Batcher, n: usize) -> Vec<QueuePlace<'_>> {
        (0..n)
            .map(|_| QueuePlace::take(&batcher.waiting, usize::MAX).unwrap())
            .collect()
    }

    // Tokio's clock is paused: it jumps to the next timer whenever every task waits, so a
    // wait for the batching delay shows as that much time passed, at no real cost. The
    // runs are small enough to run on the test's own thread (`is_small`).
    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_rows_only_while_the_requests_in_flight_could_fill_it() {
        let dir = tempfile::tempdir().unwrap();
        let package = tiny_package(dir.path());
        // Shorter than a request's wait for its answer (its queue timeout + 60 s).
        let delay = Duration::from_secs(30);
        let batcher = Arc::new(Batcher::new(package.clone(), 1, 16, batching(8, 30_000)));
        // A batch of eight costs as much as one row: worth waiting for.
        set_costs(&batcher, [0.001; 4]);
        let costs = &batcher.engine.costs;

        // A lone client: nothing else is in flight, so its request runs at once.
        assert!(answered_after(&batcher, &package, 0, 1).await < delay);
        // Three others in flight cannot fill a batch of eight either.
        let others = in_flight(&batcher, 3);
        assert!(answered_after(&batcher, &package, 1, 1).await < delay);
        drop(others);

        // Eight in flight: the batch waits for the rows that pay, and runs when eight
        // are there, before its delay is up.
        let others = in_flight(&batcher, 8);
        set_costs(&batcher, [0.001; 4]);
        let before = (costs.runs(1), costs.runs(8));
        let started = tokio::time::Instant::now();
        let mut tasks = send(&batcher, &package, 2, 3).await;
        tasks.extend(send(&batcher, &package, 5, 5).await);
        check_answers(tasks).await;
        assert!(started.elapsed() < delay);
        assert_eq!((costs.runs(1), costs.runs(8)), (before.0, before.1 + 1));

        // A wait that its delay ends short of eight rows runs what it has...
        assert!(answered_after(&batcher, &package, 10, 1).await >= delay);
        // ...and batches do not wait for a while...
        for i in 0..5 {
            assert!(answered_after(&batcher, &package, 20 + i, 1).await < delay);
        }
        // ...until one tries again.
        tokio::time::advance(delay * WAITS_OFF_AFTER_UNFILLED_WAIT).await;
        assert!(answered_after(&batcher, &package, 11, 1).await >= delay);
        drop(others);
    }

    #[tokio::test]
    async fn inline_runs_take_the_models_slot_too() {
        let dir = tempfile::tempdir().unwrap();
        let package = tiny_package(dir.path());
        let batcher = Batcher::new(package.clone(), 1, 4, None);
        // Every run of this model is small enough to run inline.
        batcher.engine.costs.set(1, Duration::ZERO);
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
