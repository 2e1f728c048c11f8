//! tract's run states, kept for reuse by the thread that made them.
//!
//! A plan run makes a `SimpleState` (a slot per node, the constants' values, op states)
//! and drops it; making and dropping one, and the per-session matrix-product scratch tract
//! keys on it, is about a tenth of a small model's run. A plan whose ops keep no state of
//! their own from one run to the next (no `Scan`: an RNN's hidden state is one) reuses
//! them: tract clears every value at the end of a successful run, so the next run starts
//! from the same place as a fresh state. A run that fails drops its state (its values may
//! be half set, and tract would take a value already set as given).
//!
//! A state stays with its thread: tract keeps each state's matrix-product scratch in a
//! thread-local map under the state's session, freed by dropping the state on the thread
//! that ran it. So a thread only reuses its own states, and a plan dropped on another
//! thread than the one that made a state hands that state to its owner, which drops it at
//! its next run (or, if it has ended, whoever looks next: its thread-local map went with
//! it). Until then the owner's states keep the dropped plan's memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::ThreadId;

use tract_onnx::prelude::{TractResult, TypedRunnableModel, TypedSimpleState};

/// States a plan keeps at most (one per thread that ran it; beyond, a run's state is
/// dropped after it, as before).
const MAX_STATES: usize = 16;

thread_local! {
    /// The thread's id, and a token alive while the thread is: its weak references tell
    /// an ended thread.
    static THIS_THREAD: (ThreadId, Arc<()>) = (std::thread::current().id(), Arc::new(()));
}

/// The calling thread's id; `None` while its thread-locals are being destroyed.
fn this_thread() -> Option<ThreadId> {
    THIS_THREAD.try_with(|(id, _)| *id).ok()
}

/// The calling thread's token.
fn alive_token() -> Option<Weak<()>> {
    THIS_THREAD
        .try_with(|(_, alive)| Arc::downgrade(alive))
        .ok()
}

/// A state and the thread that made it.
struct Owned {
    owner: ThreadId,
    alive: Weak<()>,
    state: TypedSimpleState,
}

/// States of dropped plans waiting for their owners ([`States`]'s `Drop`).
static ORPHANS: Mutex<Vec<Owned>> = Mutex::new(Vec::new());
/// How many: read on every run, so that the lock is taken only when there are some.
static ORPHAN_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Drops the orphaned states of the calling thread and of ended threads, outside the lock.
fn drop_orphans(me: ThreadId) {
    if ORPHAN_COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    let mine: Vec<Owned> = {
        let Ok(mut orphans) = ORPHANS.lock() else {
            return;
        };
        let (mine, theirs) = orphans
            .drain(..)
            .partition(|o| o.owner == me || o.alive.strong_count() == 0);
        *orphans = theirs;
        ORPHAN_COUNT.store(orphans.len(), Ordering::Release);
        mine
    };
    drop(mine);
}

/// A plan's states for reuse, when its ops keep no state between runs.
pub(super) struct States {
    reusable: bool,
    kept: Mutex<Vec<Owned>>,
}

impl States {
    /// The states of `runnable`, reused if its ops keep none of their own: `probe` (a
    /// state of it) tells, and is kept as the calling thread's.
    pub(super) fn new(probe: TypedSimpleState) -> States {
        let reusable = probe.op_states.iter().all(Option::is_none);
        let states = States {
            reusable,
            kept: Mutex::new(Vec::new()),
        };
        if let (Some(owner), Some(alive)) = (this_thread(), alive_token()) {
            states.put_back(Owned {
                owner,
                alive,
                state: probe,
            });
        }
        states
    }

    /// Runs `f` with a state of `runnable`: the calling thread's own if it kept one, a new
    /// one otherwise. The state is kept again only when `f` succeeds.
    pub(super) fn with<T>(
        &self,
        runnable: &Arc<TypedRunnableModel>,
        f: impl FnOnce(&mut TypedSimpleState) -> TractResult<T>,
    ) -> TractResult<T> {
        let me = this_thread();
        if let Some(id) = me {
            drop_orphans(id);
        }
        let (Some(owner), true) = (me, self.reusable) else {
            let mut state = runnable.spawn()?;
            return f(&mut state);
        };
        let kept = self.kept.lock().ok().and_then(|mut kept| {
            let i = kept.iter().position(|o| o.owner == owner)?;
            Some(kept.swap_remove(i))
        });
        let mut owned = match (kept, alive_token()) {
            (Some(owned), _) => owned,
            (None, Some(alive)) => Owned {
                owner,
                alive,
                state: runnable.spawn()?,
            },
            (None, None) => {
                let mut state = runnable.spawn()?;
                return f(&mut state);
            }
        };
        let result = f(&mut owned.state)?;
        self.put_back(owned);
        Ok(result)
    }

    fn put_back(&self, owned: Owned) {
        if !self.reusable {
            return;
        }
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        // States of ended threads are never taken again.
        kept.retain(|o| o.alive.strong_count() > 0);
        if kept.len() < MAX_STATES {
            kept.push(owned);
            return;
        }
        drop(kept);
        drop(owned);
    }

    /// How many states are kept.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.kept.lock().map(|k| k.len()).unwrap_or(0)
    }
}

impl Drop for States {
    fn drop(&mut self) {
        let kept = match self.kept.get_mut() {
            Ok(kept) => std::mem::take(kept),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        let me = this_thread();
        let (here, theirs): (Vec<Owned>, Vec<Owned>) = kept
            .into_iter()
            .partition(|o| Some(o.owner) == me || o.alive.strong_count() == 0);
        drop(here);
        if theirs.is_empty() {
            return;
        }
        if let Ok(mut orphans) = ORPHANS.lock() {
            orphans.extend(theirs);
            ORPHAN_COUNT.store(orphans.len(), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::sync::mpsc;

    use tract_onnx::prelude::{
        tvec, Datum, IntoRunnable, IntoTValue, Tensor, TypedFact, TypedModel,
    };

    use super::*;

    /// y = x: the smallest plan, its one op stateless.
    fn identity() -> Arc<TypedRunnableModel> {
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", TypedFact::dt_shape(f32::datum_type(), [2]))
            .unwrap();
        model.select_output_outlets(&[x]).unwrap();
        model.into_runnable().unwrap()
    }

    fn states(runnable: &Arc<TypedRunnableModel>) -> States {
        States::new(runnable.spawn().unwrap())
    }

    fn run(states: &States, runnable: &Arc<TypedRunnableModel>, v: f32) -> TractResult<f32> {
        states.with(runnable, |state| {
            let x = Tensor::from_shape(&[2], &[v, v]).unwrap().into_tvalue();
            let out = state.run(tvec![x])?;
            Ok(out[0].to_plain_array_view::<f32>()?[[0]])
        })
    }

    fn orphans_of(owner: ThreadId) -> usize {
        ORPHANS
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.owner == owner)
            .count()
    }

    #[test]
    fn a_thread_reuses_its_own_state_and_another_makes_its_own() {
        let runnable = identity();
        let states = states(&runnable);
        assert!(states.reusable);
        assert_eq!(states.kept(), 1);
        for v in 0..5 {
            assert_eq!(run(&states, &runnable, v as f32).unwrap(), v as f32);
            assert_eq!(states.kept(), 1);
        }
        // Joined, not left to the scope: a scope returns once the thread's closure has,
        // which can be before its thread-locals (the token that says it lives) are gone.
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(run(&states, &runnable, 7.0).unwrap(), 7.0))
                .join()
                .unwrap();
        });
        // The other thread's state was kept for it, but it has ended: the next put back
        // drops it.
        assert_eq!(states.kept(), 2);
        run(&states, &runnable, 1.0).unwrap();
        assert_eq!(states.kept(), 1);
    }

    #[test]
    fn a_failed_run_drops_its_state() {
        let runnable = identity();
        let states = states(&runnable);
        let err = states.with(&runnable, |state| state.run(tvec![]).map(|_| ()));
        assert!(err.is_err());
        assert_eq!(states.kept(), 0);
        assert_eq!(run(&states, &runnable, 2.0).unwrap(), 2.0);
        assert_eq!(states.kept(), 1);
    }

    #[test]
    fn an_ended_threads_state_goes_with_the_plan() {
        let runnable = identity();
        let states = states(&runnable);
        let owner = std::thread::scope(|s| {
            s.spawn(|| {
                run(&states, &runnable, 3.0).unwrap();
                std::thread::current().id()
            })
            .join()
            .unwrap()
        });
        assert_eq!(states.kept(), 2);
        drop(states);
        assert_eq!(orphans_of(owner), 0);
    }

    #[test]
    fn a_live_owner_drops_its_state_of_a_dropped_plan_at_its_next_run() {
        let runnable = identity();
        let states = states(&runnable);
        let (ran, wait) = mpsc::channel();
        let (dropped, resume) = mpsc::channel::<()>();
        let states = Arc::new(states);
        let theirs = states.clone();
        let their_runnable = runnable.clone();
        let handle = std::thread::spawn(move || {
            run(&theirs, &their_runnable, 3.0).unwrap();
            drop(theirs);
            ran.send(std::thread::current().id()).unwrap();
            resume.recv().unwrap();
            let me = std::thread::current().id();
            assert_eq!(orphans_of(me), 1);
            let next = identity();
            let later = self::states(&next);
            run(&later, &next, 1.0).unwrap();
            assert_eq!(orphans_of(me), 0);
        });
        let owner = wait.recv().unwrap();
        // The plan goes on this thread while its other owner lives.
        let states = Arc::into_inner(states).unwrap();
        assert_eq!(states.kept(), 2);
        drop(states);
        assert_eq!(orphans_of(owner), 1);
        dropped.send(()).unwrap();
        handle.join().unwrap();
    }
}
