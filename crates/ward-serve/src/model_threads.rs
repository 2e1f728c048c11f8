//! The threads that run one model, as many as its concurrency.
//!
//! Each computation of the model runs on one of the same few threads, whose caches and
//! allocator arenas stay warm (tokio's blocking pool hands each call to whichever of up to
//! 512 threads is free). A job goes to the thread that went idle last: under light load one
//! thread takes every request while its core's caches still hold the model, instead of the
//! threads taking turns (a shared channel hands each job to the thread that has waited
//! longest, which at one connection made every squeezenet request run on a cold core: 150
//! against 130 requests a second).

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Dispatch {
    /// Jobs that found no idle thread, oldest first.
    waiting: VecDeque<Job>,
    /// Each idle thread's inbox, the most recently idle last.
    idle: Vec<SyncSender<Job>>,
    /// Threads that started and have not ended.
    running: usize,
    /// Set when the pool is dropped: threads end instead of going idle.
    closed: bool,
}

pub(crate) struct ModelThreads {
    dispatch: Arc<Mutex<Dispatch>>,
}

fn lock(dispatch: &Mutex<Dispatch>) -> MutexGuard<'_, Dispatch> {
    // A job runs outside the lock and its panic is caught, so a poisoned lock still holds
    // consistent state.
    dispatch.lock().unwrap_or_else(|e| e.into_inner())
}

impl ModelThreads {
    /// Starts `threads` threads (at least one) named `ward-model-{i}` for the model named
    /// `model`. A thread that cannot be started is logged; with none, every job is refused.
    pub(crate) fn new(model: &str, threads: usize) -> ModelThreads {
        let dispatch = Arc::new(Mutex::new(Dispatch::default()));
        for i in 0..threads.max(1) {
            let shared = dispatch.clone();
            lock(&dispatch).running += 1;
            let spawned = std::thread::Builder::new()
                .name(format!("ward-model-{i}"))
                .spawn(move || work(&shared));
            if let Err(e) = spawned {
                lock(&dispatch).running -= 1;
                tracing::error!("{model}: a model thread did not start: {e}");
            }
        }
        ModelThreads { dispatch }
    }

    /// Hands `job` to the thread that went idle last, or queues it for the first thread
    /// to finish. Gives the job back when no thread is running.
    pub(crate) fn submit(&self, mut job: Job) -> Result<(), Job> {
        let mut dispatch = lock(&self.dispatch);
        while let Some(inbox) = dispatch.idle.pop() {
            match inbox.send(job) {
                Ok(()) => return Ok(()),
                Err(returned) => job = returned.0,
            }
        }
        if dispatch.running == 0 {
            return Err(job);
        }
        dispatch.waiting.push_back(job);
        Ok(())
    }
}

impl Drop for ModelThreads {
    fn drop(&mut self) {
        let mut dispatch = lock(&self.dispatch);
        dispatch.closed = true;
        // Idle threads wake to a closed inbox and end; busy ones end after their job.
        dispatch.idle.clear();
    }
}

fn work(shared: &Mutex<Dispatch>) {
    loop {
        let inbox = {
            let mut dispatch = lock(shared);
            if let Some(job) = dispatch.waiting.pop_front() {
                Ok(job)
            } else if dispatch.closed {
                dispatch.running -= 1;
                return;
            } else {
                let (inbox, jobs) = sync_channel(1);
                dispatch.idle.push(inbox);
                Err(jobs)
            }
        };
        let job = match inbox {
            Ok(job) => job,
            Err(jobs) => match jobs.recv() {
                Ok(job) => job,
                // The pool was dropped while this thread was idle.
                Err(_) => {
                    lock(shared).running -= 1;
                    return;
                }
            },
        };
        // A panic in the engine fails its request (its reply is dropped), not the thread.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    fn thread_of(pool: &ModelThreads) -> String {
        let (tx, rx) = channel();
        pool.submit(Box::new(move || {
            let name = std::thread::current().name().unwrap_or("").to_string();
            tx.send(name).unwrap();
        }))
        .map_err(|_| "refused")
        .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn one_job_at_a_time_stays_on_one_thread() {
        let pool = ModelThreads::new("test", 3);
        // Between jobs every thread goes idle, as under one client; the one that ran the
        // last job went idle last.
        let all_idle = || {
            for _ in 0..1000 {
                if lock(&pool.dispatch).idle.len() == 3 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            panic!("the threads did not all go idle");
        };
        all_idle();
        let first = thread_of(&pool);
        for _ in 0..20 {
            all_idle();
            assert_eq!(thread_of(&pool), first);
        }
    }

    #[test]
    fn jobs_beyond_the_threads_wait_and_all_run_even_after_a_panic() {
        let pool = ModelThreads::new("test", 2);
        pool.submit(Box::new(|| panic!("an engine panic")))
            .map_err(|_| "refused")
            .unwrap();
        let (tx, rx) = channel();
        let (gate_tx, gate) = channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        for i in 0..10 {
            let (tx, gate) = (tx.clone(), gate.clone());
            pool.submit(Box::new(move || {
                // The first two block until released, so the rest must queue.
                if i < 2 {
                    let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(10));
                }
                tx.send(i).unwrap();
            }))
            .map_err(|_| "refused")
            .unwrap();
        }
        gate_tx.send(()).unwrap();
        gate_tx.send(()).unwrap();
        let mut done: Vec<i32> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        done.sort();
        assert_eq!(done, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn dropping_the_pool_ends_its_threads() {
        let pool = ModelThreads::new("test", 2);
        thread_of(&pool);
        let dispatch = pool.dispatch.clone();
        drop(pool);
        for _ in 0..500 {
            if lock(&dispatch).running == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} model threads still running", lock(&dispatch).running);
    }
}
