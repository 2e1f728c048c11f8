//! What a batch of each size costs one model, and so how many rows to run at once.
//!
//! A batch is worth forming only where it costs less per row than a smaller one. For a
//! small dense model eight rows cost little more than one; for a convolution network a
//! batch of eight can cost more per image than eight single runs (issue 18's tables:
//! SqueezeNet and ResNet-18 on ward's kernels). A batcher that always takes the largest
//! batch it can makes such a model slower exactly when load is highest, and adds the wait
//! for rows to every request's latency.
//!
//! The table holds a few sizes (powers of two up to the largest batch, and the largest
//! batch itself), each timed when the model loads and then followed by a moving average
//! of the batches that run, so it tracks the machine as it is loaded. Only these sizes are
//! chosen: their plans are built at load, and a handful of sizes keeps the executable's
//! plan cache from thrashing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A larger batch is preferred only when it costs at least this much less per row than
/// the best smaller one: a batch delays its first rows until its last, so a gain within
/// the timing noise is not worth it.
const MARGIN: f64 = 0.05;

/// Weight of a new timing in a size's moving average (1/8: a few batches move it, one
/// outlier does not).
const NEW_WEIGHT: f64 = 0.125;

/// Unmeasured: a size that could not be timed at load and has not run since.
const UNMEASURED: u64 = 0;

/// The sizes a model with batches of at most `max_rows` rows is timed at: 1, 2, 4, …
/// below `max_rows`, then `max_rows`.
pub fn table_sizes(max_rows: usize) -> Vec<usize> {
    let max_rows = max_rows.max(1);
    let mut sizes: Vec<usize> = std::iter::successors(Some(1usize), |s| s.checked_mul(2))
        .take_while(|&s| s < max_rows)
        .collect();
    sizes.push(max_rows);
    sizes
}

/// Run times by batch size, shared by the batching task (which reads it) and the model's
/// threads (which time each run).
#[derive(Debug)]
pub struct BatchCosts {
    /// Ascending, starting at 1.
    sizes: Vec<usize>,
    /// Each size's moving average run time in nanoseconds (at least 1), or `UNMEASURED`.
    nanos: Vec<AtomicU64>,
    /// Runs recorded of each size.
    runs: Vec<AtomicU64>,
}

/// What the batching task does with the rows it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchChoice {
    /// Rows to run now (at most the rows available, except that a first request larger
    /// than every size still runs whole).
    pub run: usize,
    /// A larger size that costs less per row than anything the available rows allow: the
    /// batch is worth waiting for (within the configured delay) when more requests are on
    /// their way.
    pub worth_waiting_for: Option<usize>,
}

impl BatchCosts {
    /// A table of `sizes` (made ascending and starting at 1), none measured yet.
    pub fn new(sizes: &[usize]) -> BatchCosts {
        let mut sizes: Vec<usize> = sizes.iter().copied().filter(|&s| s > 0).collect();
        sizes.push(1);
        sizes.sort_unstable();
        sizes.dedup();
        let nanos = sizes.iter().map(|_| AtomicU64::new(UNMEASURED)).collect();
        let runs = sizes.iter().map(|_| AtomicU64::new(0)).collect();
        BatchCosts { sizes, nanos, runs }
    }

    /// The sizes this table follows, ascending.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The time of a batch of `rows`, when `rows` is one of the table's sizes and was
    /// measured.
    pub fn cost(&self, rows: usize) -> Option<Duration> {
        let i = self.sizes.binary_search(&rows).ok()?;
        match self.nanos.get(i)?.load(Ordering::Relaxed) {
            UNMEASURED => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// Takes a run of `rows` that took `took` into its size's moving average (the first
    /// timing of a size replaces nothing). Runs of other sizes are not followed.
    pub fn record(&self, rows: usize, took: Duration) {
        let Ok(i) = self.sizes.binary_search(&rows) else {
            return;
        };
        if let Some(runs) = self.runs.get(i) {
            runs.fetch_add(1, Ordering::Relaxed);
        }
        let Some(slot) = self.nanos.get(i) else {
            return;
        };
        let new = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        // Several model threads record at once; a lost update would only drop one sample,
        // but fetch_update keeps every one.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(if old == UNMEASURED {
                new
            } else {
                let mixed = old as f64 + (new as f64 - old as f64) * NEW_WEIGHT;
                (mixed as u64).max(1)
            })
        });
    }

    /// How many runs of `rows` rows were recorded (0 for a size outside the table).
    pub fn runs(&self, rows: usize) -> u64 {
        let i = self.sizes.binary_search(&rows).ok();
        i.and_then(|i| self.runs.get(i))
            .map_or(0, |r| r.load(Ordering::Relaxed))
    }

    /// Sets a size's time outright (tests: a table as if measured so).
    #[cfg(test)]
    pub(crate) fn set(&self, rows: usize, took: Duration) {
        if let Some(slot) = self
            .sizes
            .binary_search(&rows)
            .ok()
            .and_then(|i| self.nanos.get(i))
        {
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
            slot.store(nanos, Ordering::Relaxed);
        }
    }

    /// Per-row cost of each measured size up to `limit` rows, ascending by size.
    fn measured_up_to(&self, limit: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.sizes
            .iter()
            .zip(&self.nanos)
            .take_while(move |(&size, _)| size <= limit)
            .filter_map(|(&size, nanos)| match nanos.load(Ordering::Relaxed) {
                UNMEASURED => None,
                n => Some((size, n as f64 / size as f64)),
            })
    }

    /// The measured size up to `limit` rows with the lowest cost per row, a larger one
    /// winning only by `MARGIN`; `None` when no size up to `limit` was measured.
    fn most_efficient(&self, limit: usize) -> Option<(usize, f64)> {
        self.measured_up_to(limit)
            .fold(None, |best, (size, per_row)| match best {
                Some((_, best_per_row)) if per_row >= best_per_row * (1.0 - MARGIN) => best,
                _ => Some((size, per_row)),
            })
    }

    /// How many of `available` rows to run now, on one of `free_threads` idle model
    /// threads (this batch's included).
    ///
    /// The batch is the size that costs least per row among those the available rows
    /// fill. When other threads are idle and a smaller batch each would finish clearly
    /// sooner, the rows are spread over them instead. Without any measured size every row
    /// runs alone, as without batching.
    pub fn choose(&self, available: usize, free_threads: usize) -> BatchChoice {
        let available = available.max(1);
        let Some((mut run, _)) = self.most_efficient(available) else {
            return BatchChoice {
                run: 1,
                worth_waiting_for: None,
            };
        };
        if free_threads > 1 && run > 1 {
            let share = run.div_ceil(free_threads);
            let split = self
                .measured_up_to(share)
                .last()
                .map(|(size, _)| size)
                .unwrap_or(1);
            if let (Some(whole), Some(part)) = (self.cost(run), self.cost(split)) {
                if part.as_secs_f64() < whole.as_secs_f64() * (1.0 - MARGIN) {
                    run = split;
                }
            }
        }
        let best = self.most_efficient(usize::MAX).map(|(size, _)| size);
        BatchChoice {
            run,
            worth_waiting_for: best.filter(|&size| size > available),
        }
    }

    /// One line for the log: each size's time per row.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .sizes
            .iter()
            .map(|&size| match self.cost(size) {
                Some(t) => format!("{size}: {:.3} ms/row", t.as_secs_f64() * 1e3 / size as f64),
                None => format!("{size}: not measured"),
            })
            .collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    /// A table with these (size, milliseconds) measured.
    fn table(costs: &[(usize, f64)]) -> BatchCosts {
        let sizes: Vec<usize> = costs.iter().map(|&(s, _)| s).collect();
        let t = BatchCosts::new(&sizes);
        for &(size, cost) in costs {
            t.record(size, ms(cost));
        }
        t
    }

    #[test]
    fn sizes_are_powers_of_two_then_the_largest_batch() {
        assert_eq!(table_sizes(8), [1, 2, 4, 8]);
        assert_eq!(table_sizes(6), [1, 2, 4, 6]);
        assert_eq!(table_sizes(1), [1]);
        assert_eq!(table_sizes(0), [1]);
        assert_eq!(table_sizes(100), [1, 2, 4, 8, 16, 32, 64, 100]);
        assert_eq!(BatchCosts::new(&[8, 4, 4, 0]).sizes(), [1, 4, 8]);
    }

    #[test]
    fn a_model_whose_batches_cost_more_per_row_runs_every_row_alone_and_never_waits() {
        // SqueezeNet on ward's kernels: eight images cost more than eight single runs.
        let t = table(&[(1, 5.7), (2, 12.0), (4, 25.0), (8, 52.0)]);
        for available in [1, 2, 3, 8, 20] {
            assert_eq!(
                t.choose(available, 1),
                BatchChoice {
                    run: 1,
                    worth_waiting_for: None
                },
                "{available} rows"
            );
        }
    }

    #[test]
    fn a_model_whose_batches_pay_takes_the_largest_efficient_batch_and_waits_for_more() {
        // A small dense model: eight rows cost about one.
        let t = table(&[(1, 0.05), (2, 0.055), (4, 0.06), (8, 0.08)]);
        assert_eq!(
            t.choose(8, 1),
            BatchChoice {
                run: 8,
                worth_waiting_for: None
            }
        );
        assert_eq!(t.choose(20, 1).run, 8);
        // Fewer rows than the best size: the best of what they fill, and the best size is
        // worth waiting for.
        assert_eq!(
            t.choose(5, 1),
            BatchChoice {
                run: 4,
                worth_waiting_for: Some(8)
            }
        );
        assert_eq!(
            t.choose(1, 1),
            BatchChoice {
                run: 1,
                worth_waiting_for: Some(8)
            }
        );
    }

    #[test]
    fn a_larger_batch_must_win_by_the_margin() {
        // 4 rows cost 2 % less per row than 2: within the noise, not worth the wait.
        let t = table(&[(1, 1.0), (2, 1.5), (4, 2.94)]);
        assert_eq!(
            t.choose(4, 1),
            BatchChoice {
                run: 2,
                worth_waiting_for: None
            }
        );
        assert_eq!(t.choose(1, 1).worth_waiting_for, Some(2));
    }

    #[test]
    fn rows_spread_over_idle_threads_when_smaller_batches_finish_sooner() {
        // Batches pay a little, but half the rows on each of two threads finish sooner.
        let t = table(&[(1, 1.0), (2, 1.8), (4, 3.2), (8, 6.0)]);
        assert_eq!(t.choose(8, 1).run, 8);
        assert_eq!(t.choose(8, 2).run, 4);
        assert_eq!(t.choose(8, 4).run, 2);
        // With batches that cost about one row, one thread takes them all.
        let flat = table(&[(1, 1.0), (2, 1.01), (4, 1.02), (8, 1.03)]);
        assert_eq!(flat.choose(8, 2).run, 8);
    }

    #[test]
    fn timings_of_the_running_model_change_the_choice() {
        // Measured at load on an idle machine, batches paid; under load they stop paying.
        let t = table(&[(1, 1.0), (2, 1.2), (4, 1.6)]);
        assert_eq!(t.choose(4, 1).run, 4);
        for _ in 0..40 {
            t.record(4, ms(6.0));
            t.record(2, ms(3.0));
        }
        assert_eq!(t.choose(4, 1).run, 1);
        // One slow run among many moves the average only an eighth of the way.
        let t = table(&[(1, 1.0)]);
        t.record(1, ms(9.0));
        assert_eq!(t.cost(1), Some(ms(2.0)));
        assert_eq!(t.runs(1), 2);
        // Runs of sizes outside the table are not followed.
        t.record(3, ms(1.0));
        assert_eq!(t.cost(3), None);
        assert_eq!(t.runs(3), 0);
    }

    #[test]
    fn unmeasured_sizes_are_never_chosen() {
        // Profiling stopped before 8 (too slow to time at load).
        let t = BatchCosts::new(&[1, 2, 4, 8]);
        t.record(1, ms(1.0));
        t.record(2, ms(1.0));
        assert_eq!(
            t.choose(8, 1),
            BatchChoice {
                run: 2,
                worth_waiting_for: None
            }
        );
        assert!(t.describe().contains("8: not measured"), "{}", t.describe());
        // Nothing measured: one row at a time.
        let empty = BatchCosts::new(&[1, 2]);
        assert_eq!(
            empty.choose(2, 2),
            BatchChoice {
                run: 1,
                worth_waiting_for: None
            }
        );
    }
}
