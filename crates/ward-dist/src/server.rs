//! A parameter server: one shard of the weights and the optimizer's state for it. In
//! `dist_sync` it applies one update per step once it holds exactly one gradient from
//! each worker, summed in rank order (so a run's numbers do not depend on who pushed
//! first); in `dist_async` each push updates at once. A push is refused, named and
//! audited when it is another job's, a step already over or not begun, a second from the
//! same worker, for parts the server does not hold, or not finite (which stops the job).
//!
//! When the job checkpoints, a server copies its shard (weights and the optimizer's
//! state) after every `checkpoint_every`-th step and writes it off the step's path,
//! through its [`Updater`]; it then reports the written state's digest to the
//! coordinator, whose cluster checkpoint records every server's. A resumed job's server
//! starts from its own checkpoint, which must be the one the coordinator's records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::audit::Audit;
use crate::client::{CoordinatorLink, MemberSetup};
use crate::identity::{Member, Role};
use crate::plan::{KeySpec, PartSpec, Plan};
use crate::rpc::parameter_server_server::{ParameterServer, ParameterServerServer};
use crate::transport::{self, caller};
use crate::wire::{
    put_tensors, Empty, JobDescription, JoinRequest, Kept, Mode, PullRequest, ShardSaved, Tensors,
    Weights, WIRE_VERSION,
};
use crate::DistError;
use bytes::BufMut;

/// A copy of a shard after a step, to be written as a checkpoint off the step's path.
pub trait ShardCheckpoint: Send + 'static {
    /// Writes it; returns the SHA-256 of the encrypted state written.
    fn write(&mut self) -> Result<[u8; 32], String>;
    /// Deletes the older shard checkpoints that no cluster checkpoint in `kept` needs
    /// (called once the coordinator has answered this one's report).
    fn prune(&self, kept: &Kept) -> Result<(), String>;
}

/// What applies a step to a shard: the job's declared optimizer, never code from a peer.
pub trait Updater: Send + 'static {
    /// One step: `grads[i]`, the gradient summed over the step's workers, applied to
    /// `weights[i]`, the shard's part `i`.
    fn update(&mut self, weights: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<(), String>;

    /// A copy of the shard after `step` (`weights` and the optimizer's state), to be
    /// written as a checkpoint.
    fn checkpoint(
        &self,
        step: u64,
        weights: &[Vec<f32>],
    ) -> Result<Box<dyn ShardCheckpoint>, String> {
        let _ = (step, weights);
        Err("this server was started without a place for checkpoints".into())
    }
}

/// Where a server's shard starts.
#[derive(Debug)]
pub enum Start {
    /// From the coordinator's initial weights.
    Fresh(Vec<Vec<f32>>),
    /// From the server's own checkpoint after `step`, whose encrypted state must have
    /// this SHA-256 (the coordinator's signed cluster checkpoint records it).
    Resume { step: u64, state_sha256: [u8; 32] },
}

/// A server's updater and the weights of its parts it starts from.
pub type Made = (Box<dyn Updater>, Vec<Vec<f32>>);

/// Makes a server's updater for its parts of the job's plan.
pub type MakeUpdater =
    Box<dyn FnOnce(&JobDescription, &Plan, &[PartSpec], Start) -> Result<Made, String> + Send>;

/// How to run a server.
pub struct ServerSetup {
    pub member: MemberSetup,
    /// The address workers dial (`host:port`).
    pub advertise: String,
    /// The job's keys, in the model's order, and whether the optimizer is element-wise.
    pub keys: Vec<KeySpec>,
    pub splittable: bool,
    pub make_updater: MakeUpdater,
}

struct Shard {
    parts: Vec<PartSpec>,
    weights: Vec<Vec<f32>>,
    /// Updates applied.
    step: u64,
    /// Sync: each worker's gradient for `step`, once pushed.
    pending: Vec<Option<Vec<Vec<f32>>>>,
    /// Async: each worker's next step.
    next: Vec<u64>,
    updater: Box<dyn Updater>,
    /// The reply of the latest step, encoded, with its step.
    encoded: Option<(u64, bytes::Bytes)>,
    /// Sync: when the first gradient of `step` arrived.
    step_began: Option<Instant>,
}

struct State {
    shard: Mutex<Shard>,
    job: JobDescription,
    keys: Vec<KeySpec>,
    /// The step applied last; waiters of a sync step watch it.
    applied: watch::Sender<u64>,
    /// The job's failure, once there is one.
    failure: watch::Sender<Option<String>>,
    stop: watch::Sender<bool>,
    /// The step applied last, for heartbeats.
    progress: Arc<AtomicU64>,
    /// Shard checkpoints to write, at most one waiting.
    saves: mpsc::Sender<(u64, Box<dyn ShardCheckpoint>)>,
    /// Set once the checkpoint writer has returned: every shard it was handed is written,
    /// reported and its old ones pruned.
    drained: watch::Sender<bool>,
    audit: Audit,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Shard> {
        // A panic while holding the lock cannot leave a half-applied step: updates are
        // applied to the weights only after every check.
        self.shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, reason: String) {
        self.failure.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The shard's weights as a reply: encoded once per step and shared by every reply
    /// of that step.
    fn reply(&self, shard: &mut Shard) -> Weights {
        if let Some((step, bytes)) = &shard.encoded {
            if *step == shard.step {
                return Weights::Encoded(bytes.clone());
            }
        }
        let len = shard
            .weights
            .iter()
            .map(|w| w.len() * 4 + 12)
            .sum::<usize>();
        let mut out = bytes::BytesMut::with_capacity(len + self.job.job.len() + 32);
        out.put_u8(WIRE_VERSION);
        put_tensors(
            &mut out,
            &self.job.job,
            shard.step,
            shard
                .parts
                .iter()
                .zip(&shard.weights)
                .map(|(p, w)| (p.key, p.part, w.as_slice())),
        );
        let bytes = out.freeze();
        shard.encoded = Some((shard.step, bytes.clone()));
        Weights::Encoded(bytes)
    }

    /// The pushed parts, checked against the shard: the same parts in the same order,
    /// each of its length, every value finite.
    fn check_parts(&self, shard: &Shard, who: &Member, push: &Tensors) -> Result<(), Status> {
        let refuse = |reason: String| {
            self.audit.refused(who, "push", &reason);
            Err(Status::invalid_argument(reason))
        };
        if push.parts.len() != shard.parts.len() {
            return refuse(format!(
                "{} parts pushed; this server holds {}",
                push.parts.len(),
                shard.parts.len()
            ));
        }
        for (got, want) in push.parts.iter().zip(&shard.parts) {
            if (got.key, got.part) != (want.key, want.part) || got.values.len() != want.len {
                return refuse(format!(
                    "part (key {}, part {}, {} values) pushed where this server holds (key {}, part {}, {} values)",
                    got.key,
                    got.part,
                    got.values.len(),
                    want.key,
                    want.part,
                    want.len
                ));
            }
        }
        if let Some(bad) = push.parts.iter().find(|p| !all_finite(&p.values)) {
            let name = self
                .keys
                .get(bad.key as usize)
                .map_or("?", |k| k.name.as_str());
            let reason = format!(
                "{} pushed a non-finite gradient at step {} (key {name}); the step is refused",
                who.role, push.step
            );
            self.audit.refused(who, "push", &reason);
            self.fail(reason.clone());
            return Err(Status::aborted(reason));
        }
        Ok(())
    }
}

/// Whether every value is finite: whole blocks without an early exit, which the compiler
/// turns into vector compares (an early-exit scan of each value took 2.6 % of a busy
/// server's time).
fn all_finite(values: &[f32]) -> bool {
    values
        .chunks(4096)
        .all(|block| block.iter().fold(true, |ok, v| ok & v.is_finite()))
}

struct Service(Arc<State>);

fn worker_rank(role: &Role) -> Option<u32> {
    match role {
        Role::Worker(r) => Some(*r),
        _ => None,
    }
}

#[tonic::async_trait]
impl ParameterServer for Service {
    async fn push_pull(&self, request: Request<Tensors>) -> Result<Response<Weights>, Status> {
        let state = &self.0;
        let who = caller(
            &request,
            "PushPull",
            |r| matches!(r, Role::Worker(_)),
            &state.audit,
        )?;
        let push = request.into_inner();
        let rank = worker_rank(&who.role).unwrap_or(u32::MAX) as usize;
        if rank >= state.job.workers as usize {
            let reason = format!(
                "{} is not one of the job's {} workers",
                who.role, state.job.workers
            );
            state.audit.refused(&who, "push", &reason);
            return Err(Status::permission_denied(reason));
        }
        if push.job != state.job.job {
            let reason = format!(
                "a push for job {:?}; this is job {:?}",
                push.job, state.job.job
            );
            state.audit.refused(&who, "push", &reason);
            return Err(Status::failed_precondition(reason));
        }
        if let Some(reason) = state.failure.borrow().clone() {
            return Err(Status::aborted(reason));
        }
        let bytes = push.parts.iter().map(|p| p.values.len() as u64 * 4).sum();
        let step = push.step;
        let mut waiting = state.applied.subscribe();
        {
            let mut shard = state.lock();
            let expected = match state.job.mode {
                Mode::Sync => shard.step,
                Mode::Async => shard.next.get(rank).copied().unwrap_or(0),
            };
            if step != expected {
                let reason = if step < expected {
                    format!(
                        "step {step} is over ({} is at step {expected}): a replayed or stale push",
                        who.role
                    )
                } else {
                    format!(
                        "step {step} has not begun ({} is at step {expected})",
                        who.role
                    )
                };
                state.audit.refused(&who, "push", &reason);
                return Err(Status::failed_precondition(reason));
            }
            if state.job.mode == Mode::Sync && shard.pending.get(rank).is_some_and(Option::is_some)
            {
                let reason = format!("{} already pushed step {step}", who.role);
                state.audit.refused(&who, "push", &reason);
                return Err(Status::already_exists(reason));
            }
            state.check_parts(&shard, &who, &push)?;
            state.audit.pushed(&who, bytes);
            let grads: Vec<Vec<f32>> = push.parts.into_iter().map(|p| p.values).collect();
            match state.job.mode {
                Mode::Async => {
                    let shard = &mut *shard;
                    shard
                        .updater
                        .update(&mut shard.weights, &grads)
                        .map_err(|e| fail_update(state, &e))?;
                    shard.step += 1;
                    state.progress.store(shard.step, Ordering::Relaxed);
                    if let Some(n) = shard.next.get_mut(rank) {
                        *n += 1;
                    }
                    state.audit.step();
                    let reply = state.reply(shard);
                    state.audit.pulled(&who, bytes);
                    return Ok(Response::new(reply));
                }
                Mode::Sync => {
                    if shard.step_began.is_none() {
                        shard.step_began = Some(Instant::now());
                    }
                    if let Some(slot) = shard.pending.get_mut(rank) {
                        *slot = Some(grads);
                    }
                    if shard.pending.iter().all(Option::is_some) {
                        apply_sync(state, &mut shard)?;
                    }
                }
            }
        }
        // Wait for the step to be applied (the last worker's push applies it), or for the
        // job to fail.
        let mut failure = state.failure.subscribe();
        loop {
            if *waiting.borrow_and_update() > step {
                break;
            }
            if let Some(reason) = failure.borrow_and_update().clone() {
                return Err(Status::aborted(reason));
            }
            tokio::select! {
                changed = waiting.changed() => if changed.is_err() { return Err(Status::unavailable("the server is stopping")); },
                changed = failure.changed() => if changed.is_err() { return Err(Status::unavailable("the server is stopping")); },
            }
        }
        let reply = state.reply(&mut state.lock());
        state.audit.pulled(&who, bytes);
        Ok(Response::new(reply))
    }

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<Weights>, Status> {
        let state = &self.0;
        let who = caller(
            &request,
            "Pull",
            |r| matches!(r, Role::Worker(_) | Role::Coordinator),
            &state.audit,
        )?;
        let pull = request.into_inner();
        if pull.job != state.job.job {
            let reason = format!(
                "a pull for job {:?}; this is job {:?}",
                pull.job, state.job.job
            );
            state.audit.refused(&who, "pull", &reason);
            return Err(Status::failed_precondition(reason));
        }
        let mut shard = state.lock();
        let bytes = shard.weights.iter().map(|w| w.len() as u64 * 4).sum();
        let reply = state.reply(&mut shard);
        drop(shard);
        state.audit.pulled(&who, bytes);
        Ok(Response::new(reply))
    }

    async fn stop(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        caller(&request, "Stop", |r| *r == Role::Coordinator, &self.0.audit)?;
        self.0.stop.send_replace(true);
        // The answer waits for the last shard checkpoint to be reported, so that the
        // coordinator completes the job's last cluster checkpoint, and tells every server
        // which shards it keeps, before it ends the job.
        let mut drained = self.0.drained.subscribe();
        let _ = tokio::time::timeout(CHECKPOINT_DRAIN, drained.wait_for(|d| *d)).await;
        Ok(Response::new(Empty {}))
    }
}

fn fail_update(state: &State, error: &str) -> Status {
    let reason = format!("the optimizer refused step: {error}");
    state.fail(reason.clone());
    Status::aborted(reason)
}

/// Sums each part's gradients in rank order and applies the update.
fn apply_sync(state: &State, shard: &mut Shard) -> Result<(), Status> {
    let pending = std::mem::take(&mut shard.pending);
    let workers = pending.len();
    let mut ranks = pending.into_iter().flatten();
    let mut sums = ranks.next().unwrap_or_default();
    for grads in ranks {
        for (sum, g) in sums.iter_mut().zip(grads) {
            for (s, v) in sum.iter_mut().zip(g) {
                *s += v;
            }
        }
    }
    shard.pending = vec![None; workers];
    shard.step_began = None;
    shard
        .updater
        .update(&mut shard.weights, &sums)
        .map_err(|e| fail_update(state, &e))?;
    shard.step += 1;
    state.progress.store(shard.step, Ordering::Relaxed);
    state.audit.step();
    let every = state.job.checkpoint_every;
    if every > 0 && shard.step.is_multiple_of(every) {
        let step = shard.step;
        let save = shard
            .updater
            .checkpoint(step, &shard.weights)
            .map_err(|e| fail_update(state, &format!("checkpoint of step {step}: {e}")))?;
        // At most one checkpoint waits while another is written: a server that cannot
        // keep up skips one (the cluster checkpoint of that step is then incomplete and
        // never used) rather than holding copies of its shard without bound.
        if state.saves.try_send((step, save)).is_err() {
            tracing::warn!(
                step,
                "the previous checkpoint is still being written: step {step} is not checkpointed"
            );
        }
    }
    state.applied.send_replace(shard.step);
    Ok(())
}

/// Fails the job, naming them, when some workers have pushed nothing for a sync step
/// one heartbeat timeout after its first gradient arrived: their compute is hung (or far
/// too slow) while their heartbeats go on. The workers build their models after joining,
/// so the job's first step is given ten timeouts.
async fn watch_stragglers(state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let timeout = state.job.heartbeat();
    loop {
        tokio::select! {
            () = tokio::time::sleep(timeout / 4) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        if state.failure.borrow().is_some() {
            return;
        }
        let late = {
            // Never waits for the lock: a step being applied holds it, and a hung update
            // would hold this task's thread too (the workers then name the server).
            let shard = match state.shard.try_lock() {
                Ok(shard) => shard,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => continue,
            };
            let patience = if shard.step > state.job.start_step {
                timeout
            } else {
                timeout * 10
            };
            match shard.step_began {
                Some(began) if began.elapsed() > patience => {
                    let missing: Vec<String> = shard
                        .pending
                        .iter()
                        .enumerate()
                        .filter(|(_, g)| g.is_none())
                        .map(|(r, _)| Role::Worker(r as u32).to_string())
                        .collect();
                    Some(format!(
                        "{} pushed nothing for step {} in the {:.1} s after the step's first gradient: hung",
                        missing.join(", "),
                        shard.step,
                        began.elapsed().as_secs_f64()
                    ))
                }
                _ => None,
            }
        };
        if let Some(reason) = late {
            tracing::error!(target: "ward_dist::audit", reason, "a worker is hung");
            state.fail(reason);
            return;
        }
    }
}

/// How long a stopping server finishes the shard checkpoint in hand.
const CHECKPOINT_DRAIN: Duration = Duration::from_secs(60);

/// Writes the shard checkpoints `apply_sync` hands over, one at a time, and reports each
/// to the coordinator; a checkpoint that cannot be written stops the job. Once the server
/// stops, finishes the one in hand, if any, and returns.
async fn write_checkpoints(
    state: Arc<State>,
    link: CoordinatorLink,
    saves: mpsc::Receiver<(u64, Box<dyn ShardCheckpoint>)>,
    stopped: watch::Receiver<bool>,
) {
    write_and_report(&state, link, saves, stopped).await;
    state.drained.send_replace(true);
}

async fn write_and_report(
    state: &State,
    mut link: CoordinatorLink,
    mut saves: mpsc::Receiver<(u64, Box<dyn ShardCheckpoint>)>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            next = saves.recv() => next,
            _ = stopped.wait_for(|s| *s) => saves.try_recv().ok(),
        };
        let Some((step, mut save)) = next else {
            return;
        };
        let written = tokio::task::spawn_blocking(move || {
            let digest = save.write();
            (save, digest)
        })
        .await;
        let (save, state_sha256) = match written {
            Ok((save, Ok(digest))) => (save, digest),
            Ok((_, Err(e))) => {
                return state.fail(format!("writing the checkpoint of step {step}: {e}"))
            }
            Err(e) => return state.fail(format!("writing the checkpoint of step {step}: {e}")),
        };
        let reported = link
            .saved(ShardSaved {
                job: state.job.job.clone(),
                step,
                state_sha256,
            })
            .await;
        let kept = match reported {
            Ok(kept) => kept,
            Err(e) => {
                state.fail(format!("reporting the checkpoint of step {step}: {e}"));
                return;
            }
        };
        let pruned = tokio::task::spawn_blocking(move || save.prune(&kept)).await;
        if let Ok(Err(e)) | Err(e) = pruned.map_err(|e| e.to_string()) {
            // The checkpoints are complete; an old one left behind costs only disk.
            tracing::warn!(step, error = %e, "cannot delete an old shard checkpoint");
        }
    }
}

/// Runs a server on `listener` until the coordinator stops it (the job is done) or the
/// job fails; the error names the failure.
pub async fn run(setup: ServerSetup, listener: TcpListener) -> Result<(), DistError> {
    let ServerSetup {
        member,
        advertise,
        keys,
        splittable,
        make_updater,
    } = setup;
    let me = member.me.clone();
    let Role::Server(rank) = me.role else {
        return Err(DistError::Role {
            expected: "server",
            found: me.to_string(),
        });
    };
    let audit = member.audit.clone();
    let limits = member.limits;
    let server_tls = member.server_tls.clone();
    let mut link = CoordinatorLink::connect(&member).await?;
    let job = link
        .join(JoinRequest {
            spec_sha256: member.spec_sha256,
            advertise,
        })
        .await?;
    if rank >= job.servers.len() as u32 {
        return Err(DistError::Refused(format!(
            "{} is not one of the job's {} servers",
            me.role,
            job.servers.len()
        )));
    }
    if job.mode == Mode::Async && job.checkpoint_every > 0 {
        return Err(DistError::Refused(
            "checkpoints are written in step, which dist_async has not".into(),
        ));
    }
    // Heartbeats from here: restoring a large shard may take longer than the timeout.
    let (failure, _) = watch::channel(None);
    let progress = Arc::new(AtomicU64::new(job.start_step));
    let heartbeats = link.spawn_heartbeats(progress.clone(), failure.clone());
    let plan = Plan::new(keys.clone(), job.servers.len() as u32, splittable);
    let parts: Vec<PartSpec> = plan.shard(rank).copied().collect();
    let start = if job.shards.is_empty() {
        Start::Fresh(link.initial_shard(&job, &parts).await?)
    } else {
        let state_sha256 = *job.shards.get(rank as usize).ok_or_else(|| {
            DistError::Refused(format!(
                "the resumed job records {} shards; this is {}",
                job.shards.len(),
                me.role
            ))
        })?;
        Start::Resume {
            step: job.start_step,
            state_sha256,
        }
    };
    let made = {
        let (job, plan, parts) = (job.clone(), plan.clone(), parts.clone());
        tokio::task::spawn_blocking(move || make_updater(&job, &plan, &parts, start)).await
    };
    let (updater, initial) = match made {
        Ok(Ok(made)) => made,
        Ok(Err(e)) => {
            link.fail(&e).await;
            return Err(DistError::Refused(e));
        }
        Err(e) => return Err(DistError::Refused(e.to_string())),
    };
    let (applied, _) = watch::channel(job.start_step);
    let (stop, stopped) = watch::channel(false);
    let (saves, to_write) = mpsc::channel(1);
    let (drained, _) = watch::channel(false);
    let workers = job.workers as usize;
    let state = Arc::new(State {
        shard: Mutex::new(Shard {
            parts,
            weights: initial,
            step: job.start_step,
            pending: vec![None; workers],
            next: vec![job.start_step; workers],
            updater,
            encoded: None,
            step_began: None,
        }),
        job: job.clone(),
        keys,
        applied,
        failure,
        stop,
        progress,
        saves,
        drained,
        audit: audit.clone(),
    });
    if job.mode == Mode::Sync {
        tokio::spawn(watch_stragglers(state.clone(), stopped.clone()));
    }
    let writing = tokio::spawn(write_checkpoints(
        state.clone(),
        link.clone(),
        to_write,
        stopped.clone(),
    ));
    let limit = plan.shard_message_bytes(rank);
    let service = ParameterServerServer::new(Service(state.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let incoming = transport::incoming(
        listener,
        server_tls,
        me.clone(),
        |r| matches!(r, Role::Worker(_) | Role::Coordinator),
        limits,
        audit,
    );
    let mut shutdown = stopped.clone();
    let mut stopped = stopped;
    let serving = tokio::spawn(
        transport::server(&limits)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = shutdown.wait_for(|s| *s).await;
            }),
    );
    link.ready().await?;
    let outcome = tokio::select! {
        _ = stopped.wait_for(|s| *s) => Ok(()),
        ended = heartbeats => match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(DistError::JobFailed(reason)),
            Err(e) => Err(DistError::Refused(e.to_string())),
        },
    };
    if outcome.is_err() {
        // The workers waiting on this server hear why from it, not from a closed
        // connection: their refusals leave before the listener closes.
        tokio::time::sleep(Duration::from_millis(
            u64::from(job.heartbeat_ms / 2).min(2000),
        ))
        .await;
    }
    state.stop.send_replace(true);
    // A checkpoint being written is finished, reported and its old ones pruned.
    let _ = tokio::time::timeout(CHECKPOINT_DRAIN, writing).await;
    // Replies in flight get a moment to leave; then the listener closes.
    let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::all_finite;

    #[test]
    fn a_single_non_finite_value_anywhere_is_found() {
        let mut values = vec![1.5f32; 10_000];
        assert!(all_finite(&values));
        assert!(all_finite(&[]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 4095, 4096, 9_999] {
                values[at] = bad;
                assert!(!all_finite(&values), "{bad} at {at}");
                values[at] = 1.5;
            }
        }
        assert!(all_finite(&[f32::MAX, f32::MIN, -0.0, f32::MIN_POSITIVE]));
    }
}
