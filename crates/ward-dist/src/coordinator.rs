//! The coordinator: the job's membership (each server and worker joins once, as its
//! certificate names it, with the digest of its copy of the spec), the job's description,
//! the servers' initial weights (the coordinator's own, from the signed package or the
//! spec's initializer: never whichever worker pushes first), heartbeats and the watchdog
//! that stops the job when a member falls silent, the cluster checkpoints (once every
//! server has reported its shard's checkpoint of a step, the coordinator writes one that
//! records them all), and the job's end, when it pulls the trained weights from the
//! servers and stops them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::audit::Audit;
use crate::client::scatter;
use crate::identity::{Member, Role};
use crate::plan::{KeySpec, PartSpec, Plan};
use crate::rpc::coordinator_server::{Coordinator, CoordinatorServer};
use crate::rpc::parameter_server_client::ParameterServerClient;
use crate::transport::{self, caller, Limits};
use crate::wire::{
    Empty, Failure, Heartbeat, JobDescription, JobState, JoinRequest, Kept, Mode, Part,
    PullRequest, ShardSaved, Tensors, MAX_KEPT, MAX_STRING,
};
use crate::DistError;

/// Where the coordinator writes its cluster checkpoints (the job's encrypted, signed
/// format).
pub trait ClusterCheckpoints: Send + Sync + 'static {
    /// Writes the cluster checkpoint after `step`, recording the SHA-256 of each server's
    /// encrypted shard state, by rank; returns the steps of every cluster checkpoint kept
    /// once older ones are pruned.
    fn write(&self, step: u64, shards: &[[u8; 32]]) -> Result<Vec<u64>, String>;
}

/// The job's checkpoints, as the coordinator runs them.
pub struct Checkpointing {
    /// Every this many steps.
    pub every: u64,
    /// The age recipients the servers encrypt their shards to.
    pub recipients: Vec<String>,
    pub store: Arc<dyn ClusterCheckpoints>,
    /// The steps of the cluster checkpoints on disk already (a resumed job's).
    pub kept: Vec<u64>,
}

/// How to run a coordinator.
pub struct CoordinatorSetup {
    pub me: Member,
    pub spec_sha256: [u8; 32],
    pub seed: [u8; 32],
    pub mode: Mode,
    pub servers: u32,
    pub workers: u32,
    /// A member silent for longer is dead.
    pub heartbeat: Duration,
    /// Every member must have joined within this.
    pub join_timeout: Duration,
    pub keys: Vec<KeySpec>,
    pub splittable: bool,
    /// The initial weights, one per key.
    pub initial: Vec<Vec<f32>>,
    pub start_step: u64,
    /// A resumed job's shards: the SHA-256 of each server's encrypted state at
    /// `start_step`, by rank, from the cluster checkpoint resumed (empty: a fresh job,
    /// whose servers take `initial`).
    pub resumed: Vec<[u8; 32]>,
    pub checkpoints: Option<Checkpointing>,
    pub server_tls: Arc<rustls::ServerConfig>,
    pub client_tls: Arc<ClientConfig>,
    pub limits: Limits,
    pub audit: Audit,
}

struct Joined {
    last_seen: Instant,
    advertise: String,
    step: u64,
}

struct Members {
    joined: BTreeMap<Role, Joined>,
    ready: BTreeSet<u32>,
    done: BTreeSet<u32>,
    state: JobState,
    /// Each checkpointed step's shards reported so far, by server rank.
    saved: BTreeMap<u64, BTreeMap<u32, [u8; 32]>>,
    /// The step each server reported last.
    last_saved: BTreeMap<u32, u64>,
    kept: Kept,
}

impl Members {
    fn new(kept: Kept) -> Members {
        Members {
            joined: BTreeMap::new(),
            ready: BTreeSet::new(),
            done: BTreeSet::new(),
            state: JobState::Running,
            saved: BTreeMap::new(),
            last_saved: BTreeMap::new(),
            kept,
        }
    }

    /// Whether the cluster checkpoint of `step` can no longer complete: a server has
    /// reported a later step without this one (it skipped it).
    fn skipped(&self, step: u64) -> bool {
        let reported = self.saved.get(&step);
        self.last_saved
            .iter()
            .any(|(rank, last)| *last > step && !reported.is_some_and(|r| r.contains_key(rank)))
    }
}

/// Most checkpointed steps the coordinator waits on at once: a server that lags further
/// behind has lost the older ones, which are dropped.
const MAX_PENDING_CHECKPOINTS: usize = 16;

/// Longest a server's report of its shard waits for the other servers' reports of the
/// same step: a shard of several hundred megabytes takes seconds to encrypt and write.
const SHARD_REPORT_PATIENCE: Duration = Duration::from_secs(60);

struct State {
    members: Mutex<Members>,
    /// Bumped on every change of `members`.
    changed: watch::Sender<u64>,
    setup: CoordinatorSetup,
    plan: Plan,
    /// Held while a cluster checkpoint is written: one at a time, in step order.
    writing: tokio::sync::Mutex<()>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn fail(&self, members: &mut Members, reason: String) {
        if members.state == JobState::Running {
            tracing::error!(target: "ward_dist::audit", reason, "the job failed");
            members.state = JobState::Failed(reason);
            self.bump();
        }
    }

    fn description(&self, members: &Members) -> JobDescription {
        let s = &self.setup;
        JobDescription {
            job: s.me.job.clone(),
            spec_sha256: s.spec_sha256,
            seed: s.seed,
            mode: s.mode,
            heartbeat_ms: u32::try_from(s.heartbeat.as_millis()).unwrap_or(u32::MAX),
            workers: s.workers,
            servers: (0..s.servers)
                .map(|r| {
                    members
                        .joined
                        .get(&Role::Server(r))
                        .map(|j| j.advertise.clone())
                        .unwrap_or_default()
                })
                .collect(),
            start_step: s.start_step,
            checkpoint_every: s.checkpoints.as_ref().map_or(0, |c| c.every),
            recipients: s
                .checkpoints
                .as_ref()
                .map(|c| c.recipients.clone())
                .unwrap_or_default(),
            shards: s.resumed.clone(),
        }
    }

    /// The member, if it is one of this job's roles and ranks.
    fn in_job(&self, who: &Member) -> Result<(), Status> {
        let s = &self.setup;
        let fits = match who.role {
            Role::Server(r) => r < s.servers,
            Role::Worker(r) => r < s.workers,
            Role::Coordinator => false,
        };
        if fits {
            Ok(())
        } else {
            let reason = format!(
                "{} is not a member of this job ({} servers, {} workers)",
                who.role, s.servers, s.workers
            );
            s.audit.refused(who, "join", &reason);
            Err(Status::permission_denied(reason))
        }
    }

    fn joined(&self, who: &Member) -> Result<(), Status> {
        if self.lock().joined.contains_key(&who.role) {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "{} has not joined",
                who.role
            )))
        }
    }
}

fn member(r: &Role) -> bool {
    matches!(r, Role::Server(_) | Role::Worker(_))
}

struct Service(Arc<State>);

#[tonic::async_trait]
impl Coordinator for Service {
    async fn join(
        &self,
        request: Request<JoinRequest>,
    ) -> Result<Response<JobDescription>, Status> {
        let state = &self.0;
        let audit = &state.setup.audit;
        let who = caller(&request, "Join", member, audit)?;
        state.in_job(&who)?;
        let join = request.into_inner();
        if join.spec_sha256 != state.setup.spec_sha256 {
            let reason = format!(
                "{}'s copy of the job spec differs from the coordinator's (SHA-256)",
                who.role
            );
            audit.refused(&who, "join", &reason);
            return Err(Status::failed_precondition(reason));
        }
        if matches!(who.role, Role::Server(_)) && !valid_address(&join.advertise) {
            let reason = format!(
                "{} advertises {:?}, not HOST:PORT",
                who.role, join.advertise
            );
            audit.refused(&who, "join", &reason);
            return Err(Status::invalid_argument(reason));
        }
        {
            let mut members = state.lock();
            if members.joined.contains_key(&who.role) {
                let reason = format!("{} has joined already", who.role);
                audit.refused(&who, "join", &reason);
                return Err(Status::already_exists(reason));
            }
            members.joined.insert(
                who.role,
                Joined {
                    last_seen: Instant::now(),
                    advertise: join.advertise,
                    step: 0,
                },
            );
            tracing::info!(target: "ward_dist::audit", member = %who, "joined");
        }
        state.bump();
        // A server needs every server's address; a worker, every server ready and every
        // worker in.
        let s = &state.setup;
        let complete = |m: &Members| match who.role {
            Role::Server(_) => (0..s.servers).all(|r| m.joined.contains_key(&Role::Server(r))),
            _ => {
                m.ready.len() == s.servers as usize
                    && (0..s.workers).all(|r| m.joined.contains_key(&Role::Worker(r)))
            }
        };
        let mut changed = state.changed.subscribe();
        loop {
            {
                let members = state.lock();
                if let JobState::Failed(reason) = &members.state {
                    return Err(Status::aborted(reason.clone()));
                }
                if complete(&members) {
                    return Ok(Response::new(state.description(&members)));
                }
            }
            if changed.changed().await.is_err() {
                return Err(Status::unavailable("the coordinator is stopping"));
            }
        }
    }

    async fn initial_shard(&self, request: Request<Empty>) -> Result<Response<Tensors>, Status> {
        let state = &self.0;
        let who = caller(
            &request,
            "InitialShard",
            |r| matches!(r, Role::Server(_)),
            &state.setup.audit,
        )?;
        state.joined(&who)?;
        let Role::Server(rank) = who.role else {
            return Err(Status::permission_denied("not a server"));
        };
        if !state.setup.resumed.is_empty() {
            return Err(Status::failed_precondition(format!(
                "the job resumes from step {}: each server restores its shard from its own checkpoint",
                state.setup.start_step
            )));
        }
        let parts = state
            .plan
            .shard(rank)
            .map(|p| Part {
                key: p.key,
                part: p.part,
                values: state
                    .setup
                    .initial
                    .get(p.key as usize)
                    .and_then(|w| w.get(p.offset..p.offset + p.len))
                    .map(<[f32]>::to_vec)
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(Tensors {
            job: state.setup.me.job.clone(),
            step: state.setup.start_step,
            parts,
        }))
    }

    async fn ready(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        let state = &self.0;
        let who = caller(
            &request,
            "Ready",
            |r| matches!(r, Role::Server(_)),
            &state.setup.audit,
        )?;
        state.joined(&who)?;
        if let Role::Server(rank) = who.role {
            state.lock().ready.insert(rank);
            state.bump();
        }
        Ok(Response::new(Empty {}))
    }

    async fn heartbeat(&self, request: Request<Heartbeat>) -> Result<Response<JobState>, Status> {
        let state = &self.0;
        let who = caller(&request, "Heartbeat", member, &state.setup.audit)?;
        let beat = request.into_inner();
        let mut members = state.lock();
        match members.joined.get_mut(&who.role) {
            Some(j) => {
                j.last_seen = Instant::now();
                j.step = beat.step;
            }
            None => {
                return Err(Status::failed_precondition(format!(
                    "{} has not joined",
                    who.role
                )))
            }
        }
        Ok(Response::new(members.state.clone()))
    }

    async fn fail(&self, request: Request<Failure>) -> Result<Response<Empty>, Status> {
        let state = &self.0;
        let who = caller(&request, "Fail", member, &state.setup.audit)?;
        state.joined(&who)?;
        let failure = request.into_inner();
        let mut members = state.lock();
        // The reason names the member that reported it, whatever the message says.
        let reason: String = format!("{}: {}", who.role, failure.reason)
            .chars()
            .take(MAX_STRING)
            .collect();
        state.fail(&mut members, reason);
        Ok(Response::new(Empty {}))
    }

    async fn saved(&self, request: Request<ShardSaved>) -> Result<Response<Kept>, Status> {
        let state = &self.0;
        let audit = &state.setup.audit;
        let who = caller(&request, "Saved", |r| matches!(r, Role::Server(_)), audit)?;
        state.joined(&who)?;
        let Role::Server(rank) = who.role else {
            return Err(Status::permission_denied("not a server"));
        };
        let saved = request.into_inner();
        let s = &state.setup;
        let refuse = |reason: String| {
            audit.refused(&who, "saved", &reason);
            Err(Status::invalid_argument(reason))
        };
        let Some(checkpointing) = &s.checkpoints else {
            return refuse("this job writes no checkpoints".into());
        };
        if saved.job != s.me.job {
            return refuse(format!(
                "a checkpoint of job {:?}; this is job {:?}",
                saved.job, s.me.job
            ));
        }
        if saved.step <= s.start_step || !saved.step.is_multiple_of(checkpointing.every) {
            return refuse(format!(
                "step {} is not one this job checkpoints (every {} steps after step {})",
                saved.step, checkpointing.every, s.start_step
            ));
        }
        let complete = {
            let mut members = state.lock();
            if saved.step <= members.kept.complete {
                return refuse(format!(
                    "step {} is not newer than the last cluster checkpoint ({})",
                    saved.step, members.kept.complete
                ));
            }
            members.last_saved.insert(rank, saved.step);
            let shards = members.saved.entry(saved.step).or_default();
            if shards.insert(rank, saved.state_sha256).is_some() {
                drop(members);
                return refuse(format!("{} reported step {} twice", who.role, saved.step));
            }
            let complete = (shards.len() == s.servers as usize)
                .then(|| shards.values().copied().collect::<Vec<_>>());
            while members.saved.len() > MAX_PENDING_CHECKPOINTS {
                members.saved.pop_first();
            }
            complete
        };
        // Waiters of older steps learn whether this report makes theirs hopeless.
        state.bump();
        if let Some(shards) = complete {
            let _one_at_a_time = state.writing.lock().await;
            let store = checkpointing.store.clone();
            let step = saved.step;
            let written = tokio::task::spawn_blocking(move || store.write(step, &shards))
                .await
                .map_err(|e| e.to_string())
                .and_then(|w| w);
            let mut members = state.lock();
            match written {
                Ok(mut steps) => {
                    // Past the wire's limit, the newest are listed: a server may then
                    // delete the oldest kept shards, never the newest.
                    steps.drain(..steps.len().saturating_sub(MAX_KEPT));
                    members.kept = Kept {
                        complete: members.kept.complete.max(step),
                        steps,
                    };
                    members.saved.retain(|s, _| *s > step);
                    tracing::info!(target: "ward_dist::audit", step, "cluster checkpoint written");
                    drop(members);
                    state.bump();
                }
                Err(e) => {
                    let reason = format!(
                        "the coordinator cannot write the cluster checkpoint of step {step}: {e}"
                    );
                    state.fail(&mut members, reason.clone());
                    return Err(Status::aborted(reason));
                }
            }
        } else {
            // The answer waits for the cluster checkpoint of this step, so that every
            // server learns which of its shards it may delete: until it is written, or
            // cannot be (a server skipped the step, or the job failed). A slower server
            // only delays the others' next checkpoints (they skip while they wait); a hung
            // one fails the job through its heartbeats.
            let mut changed = state.changed.subscribe();
            let _ = tokio::time::timeout(SHARD_REPORT_PATIENCE, async {
                loop {
                    {
                        let members = state.lock();
                        if members.kept.complete >= saved.step
                            || members.skipped(saved.step)
                            || members.state != JobState::Running
                        {
                            return;
                        }
                    }
                    if changed.changed().await.is_err() {
                        return;
                    }
                }
            })
            .await;
        }
        Ok(Response::new(state.lock().kept.clone()))
    }

    async fn done(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        let state = &self.0;
        let who = caller(
            &request,
            "Done",
            |r| matches!(r, Role::Worker(_)),
            &state.setup.audit,
        )?;
        state.joined(&who)?;
        if let Role::Worker(rank) = who.role {
            state.lock().done.insert(rank);
            state.bump();
        }
        Ok(Response::new(Empty {}))
    }
}

fn valid_address(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && host.len() <= 253 && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

/// Checks, every quarter of the heartbeat timeout, that every member that joined (and
/// has not finished) was heard from within the timeout, and that every member joined
/// within the join timeout; otherwise fails the job, naming them.
async fn watchdog(state: Arc<State>) {
    let started = Instant::now();
    let timeout = state.setup.heartbeat;
    loop {
        tokio::time::sleep(timeout / 4).await;
        let mut members = state.lock();
        if members.state != JobState::Running {
            return;
        }
        let silent = members
            .joined
            .iter()
            .filter(|(role, _)| !matches!(role, Role::Worker(r) if members.done.contains(r)))
            .find(|(_, j)| j.last_seen.elapsed() > timeout)
            .map(|(role, j)| (*role, j.last_seen.elapsed(), j.step));
        if let Some((role, silence, step)) = silent {
            let reason = format!(
                "{role} sent no heartbeat for {:.1} s (last at step {step}): dead or hung",
                silence.as_secs_f64()
            );
            state.fail(&mut members, reason);
            return;
        }
        if started.elapsed() > state.setup.join_timeout {
            let s = &state.setup;
            let missing: Vec<String> = (0..s.servers)
                .map(Role::Server)
                .chain((0..s.workers).map(Role::Worker))
                .filter(|r| !members.joined.contains_key(r))
                .map(|r| r.to_string())
                .collect();
            if !missing.is_empty() {
                let reason = format!(
                    "{} did not join within {} s",
                    missing.join(", "),
                    s.join_timeout.as_secs()
                );
                state.fail(&mut members, reason);
                return;
            }
        }
    }
}

/// Runs the coordinator on `listener` until every worker is done (returning the trained
/// weights, one per key, pulled from the servers, which are then stopped) or the job
/// fails (returning why, after a heartbeat's time in which the other members learn it).
pub async fn run(
    setup: CoordinatorSetup,
    listener: TcpListener,
) -> Result<Vec<Vec<f32>>, DistError> {
    if setup.me.role != Role::Coordinator {
        return Err(DistError::Role {
            expected: "coordinator",
            found: setup.me.to_string(),
        });
    }
    if setup.mode == Mode::Async && setup.checkpoints.is_some() {
        return Err(DistError::Refused(
            "checkpoints are written in step, which dist_async has not: use --mode sync".into(),
        ));
    }
    if !setup.resumed.is_empty() && setup.resumed.len() != setup.servers as usize {
        return Err(DistError::Refused(format!(
            "the cluster checkpoint records {} shards; the job has {} servers",
            setup.resumed.len(),
            setup.servers
        )));
    }
    let plan = Plan::new(setup.keys.clone(), setup.servers, setup.splittable);
    let (changed, _) = watch::channel(0);
    let limits = setup.limits;
    let kept = Kept {
        complete: if setup.resumed.is_empty() {
            0
        } else {
            setup.start_step
        },
        steps: setup
            .checkpoints
            .as_ref()
            .map(|c| c.kept.clone())
            .unwrap_or_default(),
    };
    let state = Arc::new(State {
        members: Mutex::new(Members::new(kept)),
        changed,
        plan,
        setup,
        writing: tokio::sync::Mutex::new(()),
    });
    // A server's initial shard is the largest message the coordinator sends.
    let limit = (0..state.setup.servers)
        .map(|r| state.plan.shard_message_bytes(r))
        .max()
        .unwrap_or(0);
    let service = CoordinatorServer::new(Service(state.clone()))
        .max_decoding_message_size(64 * 1024)
        .max_encoding_message_size(limit);
    let incoming = transport::incoming(
        listener,
        state.setup.server_tls.clone(),
        state.setup.me.clone(),
        member,
        limits,
        state.setup.audit.clone(),
    );
    let (stop, mut stopped) = watch::channel(false);
    let serving = tokio::spawn(
        transport::server(&limits)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }),
    );
    tokio::spawn(watchdog(state.clone()));
    let workers = state.setup.workers as usize;
    let mut changed = state.changed.subscribe();
    // The servers are dialled once all are ready and the channels kept for the job's
    // end, so that the end does not depend on new connections being admitted then.
    let mut servers: Option<Vec<(Member, ParameterServerClient<Channel>)>> = None;
    let outcome = loop {
        let all_ready = {
            let members = state.lock();
            if let JobState::Failed(reason) = &members.state {
                break Err(DistError::JobFailed(reason.clone()));
            }
            if members.done.len() == workers && servers.is_some() {
                break Ok(());
            }
            members.ready.len() == state.setup.servers as usize
        };
        if all_ready && servers.is_none() {
            match dial_servers(&state).await {
                Ok(clients) => servers = Some(clients),
                Err(e) => {
                    let mut members = state.lock();
                    state.fail(
                        &mut members,
                        format!("the coordinator cannot reach a server: {e}"),
                    );
                }
            }
            continue;
        }
        if changed.changed().await.is_err() {
            break Err(DistError::Refused("the coordinator's state is gone".into()));
        }
    };
    let result = match outcome {
        Ok(()) => {
            let finished = finish(&state, servers.take().unwrap_or_default()).await;
            let mut members = state.lock();
            match &finished {
                Ok(_) => {
                    members.state = JobState::Finished;
                    state.bump();
                }
                Err(e) => state.fail(&mut members, format!("collecting the trained weights: {e}")),
            }
            finished
        }
        Err(e) => {
            // Members learn of the failure from their next heartbeats.
            tokio::time::sleep(state.setup.heartbeat / 2).await;
            Err(e)
        }
    };
    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
    result
}

/// Channels to every server, each checked to be the server of its rank.
async fn dial_servers(
    state: &State,
) -> Result<Vec<(Member, ParameterServerClient<Channel>)>, DistError> {
    let s = &state.setup;
    let description = state.description(&state.lock());
    let mut clients = Vec::new();
    for (rank, address) in description.servers.iter().enumerate() {
        let rank = rank as u32;
        let server = Member::new(&s.me.cluster, &s.me.job, Role::Server(rank));
        let channel =
            transport::connect(address, server.clone(), s.client_tls.clone(), &s.limits).await?;
        let limit = state.plan.shard_message_bytes(rank);
        clients.push((
            server,
            ParameterServerClient::new(channel).max_decoding_message_size(limit),
        ));
    }
    Ok(clients)
}

/// Pulls every server's shard into whole keys, then stops the servers.
async fn finish(
    state: &State,
    servers: Vec<(Member, ParameterServerClient<Channel>)>,
) -> Result<Vec<Vec<f32>>, DistError> {
    let s = &state.setup;
    let mut weights: Vec<Vec<f32>> = s.keys.iter().map(|k| vec![0.0; k.len]).collect();
    let mut clients = Vec::new();
    for (rank, (server, mut client)) in servers.into_iter().enumerate() {
        let rank = rank as u32;
        let shard = client
            .pull(PullRequest {
                job: s.me.job.clone(),
            })
            .await
            .map_err(|e| DistError::rpc(server.role, e))?
            .into_inner()
            .into_tensors()
            .map_err(|e| DistError::Refused(format!("{}: {e}", server.role)))?;
        let parts: Vec<PartSpec> = state.plan.shard(rank).copied().collect();
        scatter(
            shard,
            &s.me.job,
            &parts,
            &mut weights,
            &server.role.to_string(),
        )?;
        clients.push((server, client));
    }
    for (server, mut client) in clients {
        client
            .stop(Empty {})
            .await
            .map_err(|e| DistError::rpc(server.role, e))?;
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_a_server_skipped_is_known_never_to_complete() {
        let mut m = Members::new(Kept {
            complete: 0,
            steps: Vec::new(),
        });
        // Server 0 reported step 10; server 1 has reported nothing yet.
        m.saved.entry(10).or_default().insert(0, [0; 32]);
        m.last_saved.insert(0, 10);
        assert!(!m.skipped(10));
        // Server 1 reports step 20 without 10: 10 cannot complete, 20 still can.
        m.saved.entry(20).or_default().insert(1, [1; 32]);
        m.last_saved.insert(1, 20);
        assert!(m.skipped(10));
        assert!(!m.skipped(20));
    }
}
