//! Batches of a fixed size from a [`Dataset`]: shuffled each epoch, decoded on worker
//! threads with a bounded prefetch, the same for a seed whatever the number of threads.
//!
//! * **Order.** Epoch `e` visits the examples in order, or, with `shuffle`, in a
//!   Fisher–Yates permutation drawn from the run's stream `(Shuffle, e)`
//!   ([`ward_core::random`]).
//! * **Augmentation.** Example `i` of epoch `e` is made with its own generator, the stream
//!   `(Augment, e · 2^32 + i)` ([`augment_stream`]); so its random crop or mirror depends on
//!   the seed, the epoch and the example only, never on the thread that decoded it or on
//!   what was decoded before. Epochs are below 2^24 and datasets below 2^32 examples.
//! * **The last batch.** [`LastBatch::Pad`] is MXNet's `round_batch` (the default of
//!   `CSVIter` and `ImageRecordIter`): an incomplete last batch is filled with the
//!   epoch's first examples again and [`Batch::pad`] says how many (MXNet's `DataBatch.pad`;
//!   a loss should ignore them). MXNet carries that overlap into the next epoch, which
//!   then starts after the examples used as padding; ward starts every epoch from its own
//!   first example, so that an epoch's batches depend on that epoch alone.
//!   [`LastBatch::Discard`] drops it, as `MNISTIter` does.
//! * **Threads and memory.** With `threads` > 0, worker threads build whole batches; a
//!   worker may claim batch `b` only while `b` is fewer than `prefetch` batches ahead of
//!   the one the consumer takes next, so at most `prefetch` batches are held, whatever
//!   the threads' speeds. Batches come out in order. With `threads` = 0 batches are built
//!   on the caller's thread when asked for.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use ward_core::random::{ChaCha20Rng, Purpose, RunSeed};

use super::image::uniform_inclusive;
use super::{shape_elements, zeroed, DataError, Dataset, MAX_BATCH_SIZE};

/// What happens to the examples left over after the last full batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastBatch {
    /// Fill the last batch from the start of the epoch's order (MXNet's `round_batch`).
    Pad,
    /// Drop the incomplete last batch (`MNISTIter`).
    Discard,
}

/// How batches are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// A new permutation each epoch.
    pub shuffle: bool,
    pub last_batch: LastBatch,
    /// Worker threads; 0 builds batches on the caller's thread.
    pub threads: usize,
    /// Most batches built ahead of the consumer (at least 1).
    pub prefetch: usize,
}

/// Most worker threads.
pub const MAX_THREADS: usize = 256;
/// Most batches prefetched.
pub const MAX_PREFETCH: usize = 64;
/// Epochs are below this (the augmentation stream's index is `epoch · 2^32 + example`).
pub const MAX_EPOCHS: u64 = 1 << 24;
/// Datasets hold fewer examples than this.
pub const MAX_EXAMPLES: u64 = 1 << 32;

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            shuffle: true,
            last_batch: LastBatch::Pad,
            threads: 1,
            prefetch: 4,
        }
    }
}

/// One batch: `batch_size` examples stacked along a new first dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub epoch: u64,
    /// The batch's position in its epoch.
    pub index: usize,
    /// `[batch_size, data_shape...]`, row-major.
    pub data: Vec<f32>,
    pub data_shape: Vec<usize>,
    /// `[batch_size, label_shape...]`.
    pub label: Vec<f32>,
    pub label_shape: Vec<usize>,
    /// How many examples at the end repeat the epoch's first ones ([`LastBatch::Pad`]).
    pub pad: usize,
    /// The example behind each row.
    pub examples: Vec<usize>,
}

/// The generator for example `example`'s augmentation in epoch `epoch`.
pub fn augment_stream(
    seed: &RunSeed,
    epoch: u64,
    example: usize,
) -> Result<ChaCha20Rng, DataError> {
    let example = example as u64;
    if epoch >= MAX_EPOCHS || example >= MAX_EXAMPLES {
        return Err(DataError::Config(format!(
            "epoch {epoch} / example {example}: epochs must be below {MAX_EPOCHS} and examples below {MAX_EXAMPLES}"
        )));
    }
    Ok(seed.stream(Purpose::Augment, (epoch << 32) | example)?)
}

/// Makes the batches of a dataset, epoch by epoch.
#[derive(Clone)]
pub struct Loader {
    dataset: Arc<dyn Dataset>,
    config: LoaderConfig,
    seed: RunSeed,
    data_elements: usize,
    label_elements: usize,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("examples", &self.dataset.len())
            .field("config", &self.config)
            .field("seed", &self.seed)
            .finish()
    }
}

impl Loader {
    /// Checks the configuration against the dataset: batch size, threads and prefetch
    /// within their limits, and a batch's values countable.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        config: LoaderConfig,
        seed: RunSeed,
    ) -> Result<Loader, DataError> {
        let bad = |what: String| Err(DataError::Config(what));
        if config.batch_size == 0 || config.batch_size > MAX_BATCH_SIZE {
            return bad(format!(
                "batch_size {} must be in 1..={MAX_BATCH_SIZE}",
                config.batch_size
            ));
        }
        if config.threads > MAX_THREADS {
            return bad(format!("threads {} over {MAX_THREADS}", config.threads));
        }
        if config.prefetch == 0 || config.prefetch > MAX_PREFETCH {
            return bad(format!(
                "prefetch {} must be in 1..={MAX_PREFETCH}",
                config.prefetch
            ));
        }
        if dataset.len() as u64 >= MAX_EXAMPLES {
            return bad(format!("{} examples, over {MAX_EXAMPLES}", dataset.len()));
        }
        let limit = super::MAX_DATA_ELEMENTS as usize;
        let counted = |shape: &[usize]| {
            shape_elements(shape)
                .filter(|&n| n > 0 && n.checked_mul(config.batch_size).is_some_and(|t| t <= limit))
        };
        let (Some(data_elements), Some(label_elements)) = (
            counted(dataset.data_shape()),
            counted(dataset.label_shape()),
        ) else {
            return bad(format!(
                "a batch of {} examples of {:?} (labels {:?}) is over {limit} values",
                config.batch_size,
                dataset.data_shape(),
                dataset.label_shape()
            ));
        };
        Ok(Loader {
            dataset,
            config,
            seed,
            data_elements,
            label_elements,
        })
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// Batches in each epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.dataset.len();
        match self.config.last_batch {
            LastBatch::Pad => n.div_ceil(self.config.batch_size),
            LastBatch::Discard => n / self.config.batch_size,
        }
    }

    /// The order of the examples in epoch `epoch`.
    pub fn order(&self, epoch: u64) -> Result<Vec<usize>, DataError> {
        if epoch >= MAX_EPOCHS {
            return Err(DataError::Config(format!(
                "epoch {epoch} is not below {MAX_EPOCHS}"
            )));
        }
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            let mut rng = self.seed.stream(Purpose::Shuffle, epoch)?;
            for i in (1..order.len()).rev() {
                let j = uniform_inclusive(&mut rng, i as u64) as usize;
                order.swap(i, j);
            }
        }
        Ok(order)
    }

    /// Builds batch `index` of `epoch` from that epoch's `order`.
    pub fn batch(&self, epoch: u64, index: usize, order: &[usize]) -> Result<Batch, DataError> {
        let n = order.len();
        let bs = self.config.batch_size;
        let mut data = zeroed::<f32>(bs * self.data_elements, "batch data")?;
        let mut label = zeroed::<f32>(bs * self.label_elements, "batch labels")?;
        let mut examples = Vec::with_capacity(bs);
        let mut pad = 0;
        let start = index.checked_mul(bs).filter(|&s| s < n).ok_or_else(|| {
            DataError::Config(format!("batch {index} is past the epoch's {n} examples"))
        })?;
        let rows = data
            .chunks_exact_mut(self.data_elements.max(1))
            .zip(label.chunks_exact_mut(self.label_elements.max(1)));
        for (j, (data_row, label_row)) in rows.enumerate().take(bs) {
            let pos = start + j;
            if pos >= n {
                pad += 1;
            }
            let example = order.get(pos % n).copied().unwrap_or_default();
            let mut rng = augment_stream(&self.seed, epoch, example)?;
            let got = self.dataset.get(example, &mut rng)?;
            if got.data.len() != self.data_elements || got.label.len() != self.label_elements {
                return Err(DataError::Config(format!(
                    "example {example} has {} values and {} labels, not {} and {}",
                    got.data.len(),
                    got.label.len(),
                    self.data_elements,
                    self.label_elements
                )));
            }
            data_row.copy_from_slice(&got.data);
            label_row.copy_from_slice(&got.label);
            examples.push(example);
        }
        let mut data_shape = vec![bs];
        data_shape.extend_from_slice(self.dataset.data_shape());
        let mut label_shape = vec![bs];
        label_shape.extend_from_slice(self.dataset.label_shape());
        Ok(Batch {
            epoch,
            index,
            data,
            data_shape,
            label,
            label_shape,
            pad,
            examples,
        })
    }

    /// The batches of epoch `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> Result<Epoch, DataError> {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch `first` on: the same batches, bit for bit,
    /// as [`Loader::epoch`] gives from there (a resumed run continues mid-epoch). Batches
    /// before `first` are not made.
    pub fn epoch_from(&self, epoch: u64, first: usize) -> Result<Epoch, DataError> {
        let order = Arc::new(self.order(epoch)?);
        let total = self.batches_per_epoch();
        let first = first.min(total);
        let mut run = Epoch {
            loader: self.clone(),
            epoch,
            order: Arc::clone(&order),
            total,
            next: first,
            done: false,
            workers: None,
        };
        if self.config.threads > 0 && first < total {
            run.workers = Some(Workers::start(self.clone(), epoch, order, first, total)?);
        }
        Ok(run)
    }
}

/// The claim book the workers and the consumer share.
struct Claims {
    /// The next batch a worker may claim.
    next: usize,
    /// The next batch the consumer takes.
    consumed: usize,
    stop: bool,
}

struct Workers {
    shared: Arc<(Mutex<Claims>, Condvar)>,
    receiver: Option<Receiver<(usize, Result<Batch, DataError>)>>,
    pending: BTreeMap<usize, Result<Batch, DataError>>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    fn start(
        loader: Loader,
        epoch: u64,
        order: Arc<Vec<usize>>,
        first: usize,
        total: usize,
    ) -> Result<Workers, DataError> {
        let window = loader.config.prefetch;
        let shared = Arc::new((
            Mutex::new(Claims {
                next: first,
                consumed: first,
                stop: false,
            }),
            Condvar::new(),
        ));
        let (sender, receiver) = sync_channel(window);
        let mut workers = Workers {
            shared: Arc::clone(&shared),
            receiver: Some(receiver),
            pending: BTreeMap::new(),
            handles: Vec::new(),
        };
        for t in 0..loader.config.threads {
            let (loader, order, shared, sender) = (
                loader.clone(),
                Arc::clone(&order),
                Arc::clone(&shared),
                sender.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("ward-data-{t}"))
                .spawn(move || loop {
                    let index = {
                        let (lock, cv) = &*shared;
                        let mut claims = lock.lock().unwrap_or_else(PoisonError::into_inner);
                        while !claims.stop
                            && claims.next < total
                            && claims.next >= claims.consumed + window
                        {
                            claims = cv.wait(claims).unwrap_or_else(PoisonError::into_inner);
                        }
                        if claims.stop || claims.next >= total {
                            return;
                        }
                        claims.next += 1;
                        claims.next - 1
                    };
                    let built =
                        catch_unwind(AssertUnwindSafe(|| loader.batch(epoch, index, &order)))
                            .unwrap_or_else(|_| {
                                Err(DataError::Worker(format!(
                                    "batch {index}: the dataset panicked"
                                )))
                            });
                    if sender.send((index, built)).is_err() {
                        return;
                    }
                })
                .map_err(|e| DataError::Worker(format!("cannot start a thread: {e}")))?;
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    /// Batch `index`, waiting for it; then lets the workers claim one more.
    fn take(&mut self, index: usize) -> Result<Batch, DataError> {
        let result = loop {
            if let Some(found) = self.pending.remove(&index) {
                break found;
            }
            let Some(receiver) = &self.receiver else {
                break Err(DataError::Worker("the workers stopped".to_owned()));
            };
            match receiver.recv() {
                Ok((i, r)) if i == index => break r,
                Ok((i, r)) => {
                    self.pending.insert(i, r);
                }
                Err(_) => break Err(DataError::Worker("every worker stopped".to_owned())),
            }
        };
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(PoisonError::into_inner).consumed = index + 1;
        cv.notify_all();
        result
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        cv.notify_all();
        // A worker blocked on a full channel wakes up when the receiver goes.
        self.receiver = None;
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// The batches of one epoch, in order. The first error ends the epoch.
pub struct Epoch {
    loader: Loader,
    epoch: u64,
    order: Arc<Vec<usize>>,
    total: usize,
    next: usize,
    done: bool,
    workers: Option<Workers>,
}

impl Epoch {
    /// Batches in this epoch (those skipped by [`Loader::epoch_from`] included).
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The index in the epoch of the batch `next` gives.
    pub fn position(&self) -> usize {
        self.next
    }

    /// The order of the examples in this epoch.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next >= self.total {
            self.workers = None;
            return None;
        }
        let index = self.next;
        self.next += 1;
        let result = match &mut self.workers {
            Some(workers) => workers.take(index),
            None => self.loader.batch(self.epoch, index, &self.order),
        };
        if result.is_err() {
            self.done = true;
            self.workers = None;
        }
        Some(result)
    }
}
