//! The member side: a link to the coordinator (join, the initial shard, heartbeats, the
//! job's end) and a worker's links to the servers (push gradients, pull weights).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::audit::Audit;
use crate::identity::{Member, Role};
use crate::plan::{KeySpec, PartSpec, Plan};
use crate::rpc::coordinator_client::CoordinatorClient;
use crate::rpc::parameter_server_client::ParameterServerClient;
use crate::transport::{self, Limits};
use crate::wire::{
    Empty, Failure, Heartbeat, JobDescription, JobState, JoinRequest, Kept, Part, PullRequest,
    ShardSaved, Tensors, Weights,
};
use crate::DistError;

/// What every member needs: who it is (its certificate's member), where the coordinator
/// is, its copy of the spec's digest, its TLS client configuration.
#[derive(Clone)]
pub struct MemberSetup {
    pub me: Member,
    pub coordinator: String,
    pub spec_sha256: [u8; 32],
    pub client_tls: Arc<ClientConfig>,
    /// A server's listener configuration (unused by a worker).
    pub server_tls: Arc<rustls::ServerConfig>,
    pub limits: Limits,
    pub audit: Audit,
    /// How long to keep dialling a coordinator that is not up yet, and to wait for the
    /// other members to join.
    pub join_timeout: Duration,
}

/// Largest message the coordinator sends a member other than a shard.
const SMALL_MESSAGE: usize = 64 * 1024;

/// A member's link to the coordinator.
#[derive(Clone)]
pub struct CoordinatorLink {
    client: CoordinatorClient<Channel>,
    address: String,
    me: Member,
    spec_sha256: [u8; 32],
    heartbeat: Duration,
}

impl CoordinatorLink {
    /// Dials the coordinator, again and again until `join_timeout` while it is not up.
    pub async fn connect(setup: &MemberSetup) -> Result<CoordinatorLink, DistError> {
        let expected = Member::new(&setup.me.cluster, &setup.me.job, Role::Coordinator);
        let started = Instant::now();
        let channel = loop {
            match transport::connect(
                &setup.coordinator,
                expected.clone(),
                setup.client_tls.clone(),
                &setup.limits,
            )
            .await
            {
                Ok(channel) => break channel,
                Err(e) if started.elapsed() >= setup.join_timeout => return Err(e.into()),
                Err(e) => {
                    tracing::debug!(error = %e, "the coordinator is not up yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Ok(CoordinatorLink {
            client: CoordinatorClient::new(channel).max_decoding_message_size(SMALL_MESSAGE),
            address: setup.coordinator.clone(),
            me: setup.me.clone(),
            spec_sha256: setup.spec_sha256,
            heartbeat: Duration::from_secs(10),
        })
    }

    fn peer(&self) -> String {
        format!("coordinator at {}", self.address)
    }

    /// Joins the job; returns its description once every member it waits for is in.
    pub async fn join(&mut self, request: JoinRequest) -> Result<JobDescription, DistError> {
        let job = self
            .client
            .join(request)
            .await
            .map_err(|s| DistError::rpc(self.peer(), s))?
            .into_inner();
        if job.spec_sha256 != self.spec_sha256 {
            return Err(DistError::Refused(format!(
                "the coordinator's job spec has SHA-256 {}, this member's copy {}",
                hex(&job.spec_sha256),
                hex(&self.spec_sha256)
            )));
        }
        if job.job != self.me.job {
            return Err(DistError::Refused(format!(
                "the coordinator runs job {:?}; this certificate is for job {:?}",
                job.job, self.me.job
            )));
        }
        self.heartbeat = job.heartbeat();
        Ok(job)
    }

    /// A server's initial weights, checked against its parts of the plan.
    pub async fn initial_shard(
        &mut self,
        job: &JobDescription,
        parts: &[PartSpec],
    ) -> Result<Vec<Vec<f32>>, DistError> {
        let limit = parts.iter().map(|p| p.len * 4 + 12).sum::<usize>() + SMALL_MESSAGE;
        let mut client = self.client.clone().max_decoding_message_size(limit);
        let shard = client
            .initial_shard(Empty {})
            .await
            .map_err(|s| DistError::rpc(self.peer(), s))?
            .into_inner();
        check_parts(&shard, &job.job, parts, &self.peer())?;
        Ok(shard.parts.into_iter().map(|p| p.values).collect())
    }

    pub async fn ready(&mut self) -> Result<(), DistError> {
        self.client
            .ready(Empty {})
            .await
            .map_err(|s| DistError::rpc(self.peer(), s))?;
        Ok(())
    }

    /// Tells the coordinator this member failed, and why (best effort: the coordinator
    /// may be the one that is gone).
    pub async fn fail(&mut self, reason: &str) {
        let call = self.client.fail(Failure {
            reason: reason.to_string(),
        });
        let _ = tokio::time::timeout(self.heartbeat, call).await;
    }

    pub async fn done(&mut self) -> Result<(), DistError> {
        self.client
            .done(Empty {})
            .await
            .map_err(|s| DistError::rpc(self.peer(), s))?;
        Ok(())
    }

    /// A server reports the checkpoint of its shard; the reply says which cluster
    /// checkpoints the coordinator keeps.
    pub async fn saved(&mut self, saved: ShardSaved) -> Result<Kept, DistError> {
        Ok(self
            .client
            .saved(saved)
            .await
            .map_err(|s| DistError::rpc(self.peer(), s))?
            .into_inner())
    }

    /// Sends a heartbeat every quarter of the job's timeout, reporting `step()`, until
    /// the job ends. A failure the coordinator reports, or a coordinator silent for longer
    /// than the timeout, is written into `failure` (and ends the task); so is a failure
    /// another part of this member writes there, which is reported to the coordinator.
    pub fn spawn_heartbeats(
        &self,
        step: Arc<AtomicU64>,
        failure: watch::Sender<Option<String>>,
    ) -> JoinHandle<Result<(), String>> {
        let mut link = self.clone();
        tokio::spawn(async move {
            let timeout = link.heartbeat;
            let every = timeout / 4;
            let mut last_ok = Instant::now();
            let mut local = failure.subscribe();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    changed = local.changed() => {
                        if changed.is_err() { return Ok(()); }
                        let reason = local.borrow_and_update().clone();
                        if let Some(reason) = reason {
                            link.fail(&reason).await;
                            return Err(reason);
                        }
                        continue;
                    }
                }
                let beat = link.client.heartbeat(Heartbeat {
                    step: step.load(Ordering::Relaxed),
                });
                match tokio::time::timeout(every.max(Duration::from_millis(50)), beat).await {
                    Ok(Ok(reply)) => match reply.into_inner() {
                        JobState::Running => last_ok = Instant::now(),
                        JobState::Finished => return Ok(()),
                        JobState::Failed(reason) => {
                            failure.send_replace(Some(reason.clone()));
                            return Err(reason);
                        }
                    },
                    Ok(Err(_)) | Err(_) if last_ok.elapsed() > timeout => {
                        let reason = format!(
                            "the {} has not answered a heartbeat for {:.1} s: dead or unreachable",
                            link.peer(),
                            last_ok.elapsed().as_secs_f64()
                        );
                        failure.send_replace(Some(reason.clone()));
                        return Err(reason);
                    }
                    Ok(Err(_)) | Err(_) => {}
                }
            }
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a message's parts against the plan's `parts`, in order, and its job.
fn check_parts(
    tensors: &Tensors,
    job: &str,
    parts: &[PartSpec],
    peer: &str,
) -> Result<(), DistError> {
    if tensors.job != job {
        return Err(DistError::Refused(format!(
            "{peer} sent tensors of job {:?}",
            tensors.job
        )));
    }
    let matches = tensors.parts.len() == parts.len()
        && tensors.parts.iter().zip(parts).all(|(got, want)| {
            (got.key, got.part, got.values.len()) == (want.key, want.part, want.len)
        });
    if !matches {
        return Err(DistError::Refused(format!(
            "{peer} sent parts that are not its shard of the plan"
        )));
    }
    Ok(())
}

/// Writes a server's shard of weights into whole keys, once it is checked to be exactly
/// that server's `parts` of the plan, of `job`; returns the step the weights are of.
pub(crate) fn scatter(
    shard: Tensors,
    job: &str,
    parts: &[PartSpec],
    weights: &mut [Vec<f32>],
    peer: &str,
) -> Result<u64, DistError> {
    check_parts(&shard, job, parts, peer)?;
    for (p, got) in parts.iter().zip(shard.parts) {
        let dst = weights
            .get_mut(p.key as usize)
            .and_then(|w| w.get_mut(p.offset..p.offset + p.len))
            .ok_or_else(|| {
                DistError::Refused(format!("part ({}, {}) is outside its key", p.key, p.part))
            })?;
        dst.copy_from_slice(&got.values);
    }
    Ok(shard.step)
}

/// A server's name and its answer to one call.
type Answer = (String, Result<tonic::Response<Weights>, tonic::Status>);

/// A worker's view of the job: the servers it pushes to and the plan that says which
/// values each holds.
pub struct Worker {
    job: JobDescription,
    plan: Plan,
    servers: Vec<(String, ParameterServerClient<Channel>)>,
    link: CoordinatorLink,
    step: Arc<AtomicU64>,
    failure: watch::Sender<Option<String>>,
    heartbeats: JoinHandle<Result<(), String>>,
}

impl Worker {
    /// Joins the job and connects to every server (each checked to be the server of its
    /// rank). `keys`: the model's trainable parameters; `splittable`: whether the
    /// optimizer is element-wise (both must be the coordinator's, which every server's
    /// shard sizes check).
    pub async fn join(
        setup: &MemberSetup,
        keys: Vec<KeySpec>,
        splittable: bool,
    ) -> Result<Worker, DistError> {
        if !matches!(setup.me.role, Role::Worker(_)) {
            return Err(DistError::Role {
                expected: "worker",
                found: setup.me.to_string(),
            });
        }
        let mut link = CoordinatorLink::connect(setup).await?;
        let job = link
            .join(JoinRequest {
                spec_sha256: setup.spec_sha256,
                advertise: String::new(),
            })
            .await?;
        let plan = Plan::new(keys, job.servers.len() as u32, splittable);
        let mut servers = Vec::new();
        for (rank, address) in job.servers.iter().enumerate() {
            let member = Member::new(&setup.me.cluster, &setup.me.job, Role::Server(rank as u32));
            let channel = transport::connect(
                address,
                member.clone(),
                setup.client_tls.clone(),
                &setup.limits,
            )
            .await?;
            let limit = plan.shard_message_bytes(rank as u32);
            let client = ParameterServerClient::new(channel)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit);
            servers.push((format!("{} at {address}", member.role), client));
        }
        let step = Arc::new(AtomicU64::new(job.start_step));
        let (failure, _) = watch::channel(None);
        let heartbeats = link.spawn_heartbeats(step.clone(), failure.clone());
        Ok(Worker {
            job,
            plan,
            servers,
            link,
            step,
            failure,
            heartbeats,
        })
    }

    pub fn job(&self) -> &JobDescription {
        &self.job
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The job's failure, if it has failed.
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// The current weights of every key, from every server.
    pub async fn pull(&mut self, weights: &mut [Vec<f32>]) -> Result<u64, DistError> {
        let request = PullRequest {
            job: self.job.job.clone(),
        };
        let calls = self
            .servers
            .iter()
            .map(|(name, client)| {
                let (mut client, request, name) = (client.clone(), request.clone(), name.clone());
                tokio::spawn(async move { (name, client.pull(request).await) })
            })
            .collect::<Vec<_>>();
        self.gather(calls, weights, None).await
    }

    /// Pushes the gradients of step `step` (one per key, whole) and returns the weights
    /// after it, written into `weights`, with the step the servers are at.
    pub async fn push_pull(
        &mut self,
        step: u64,
        grads: &[&[f32]],
        weights: &mut [Vec<f32>],
    ) -> Result<u64, DistError> {
        let mut calls = Vec::new();
        for (rank, (name, client)) in self.servers.iter().enumerate() {
            let parts = self
                .plan
                .shard(rank as u32)
                .map(|p| Part {
                    key: p.key,
                    part: p.part,
                    values: grads
                        .get(p.key as usize)
                        .and_then(|g| g.get(p.offset..p.offset + p.len))
                        .map(<[f32]>::to_vec)
                        .unwrap_or_default(),
                })
                .collect();
            let push = Tensors {
                job: self.job.job.clone(),
                step,
                parts,
            };
            let (mut client, name) = (client.clone(), name.clone());
            calls.push(tokio::spawn(
                async move { (name, client.push_pull(push).await) },
            ));
        }
        let at = self.gather(calls, weights, Some(step)).await?;
        self.step.store(at, Ordering::Relaxed);
        Ok(at)
    }

    /// How long a call may go unanswered before its server is taken for hung. A sync step
    /// waits for the slowest worker, whom the servers give up on after one heartbeat
    /// timeout (naming it); a server silent half a timeout longer is the one at fault,
    /// named here within twice the timeout. The job's first step and pulls wait for every
    /// worker to build its model: ten timeouts.
    fn patience(&self, pushed: Option<u64>) -> Duration {
        let timeout = self.job.heartbeat();
        match pushed {
            Some(step) if step > self.job.start_step => timeout * 3 / 2,
            _ => timeout * 10,
        }
    }

    /// A call's answer, or `None` once `deadline` has passed.
    async fn within(
        call: JoinHandle<Answer>,
        deadline: tokio::time::Instant,
    ) -> Option<Result<Answer, tokio::task::JoinError>> {
        tokio::time::timeout_at(deadline, call).await.ok()
    }

    async fn gather(
        &mut self,
        calls: Vec<JoinHandle<Answer>>,
        weights: &mut [Vec<f32>],
        pushed: Option<u64>,
    ) -> Result<u64, DistError> {
        let mut failure = self.failure.subscribe();
        let patience = self.patience(pushed);
        let deadline = tokio::time::Instant::now() + patience;
        let mut at = 0;
        for (rank, call) in calls.into_iter().enumerate() {
            let answered = tokio::select! {
                answered = Self::within(call, deadline) => answered,
                _ = failure.wait_for(Option::is_some) => {
                    let reason = self.failure().unwrap_or_default();
                    return Err(DistError::JobFailed(reason));
                }
            };
            let Some(answered) = answered else {
                let server = Role::Server(rank as u32);
                let reason = match pushed {
                    Some(step) => format!(
                        "{server} has not answered step {step} for {:.1} s: hung",
                        patience.as_secs_f64()
                    ),
                    None => format!(
                        "{server} has not answered a pull for {:.1} s: hung",
                        patience.as_secs_f64()
                    ),
                };
                // The coordinator stops the job: the server's heartbeats say nothing of its
                // computation.
                self.fail(&reason).await;
                return Err(DistError::Refused(reason));
            };
            let (name, result) = answered.map_err(|e| DistError::Refused(e.to_string()))?;
            let reply = match result {
                Ok(reply) => reply
                    .into_inner()
                    .into_tensors()
                    .map_err(|e| DistError::Refused(format!("{name}: {e}")))?,
                // A job that failed says why, rather than how one call ended.
                Err(status) => match self.failure() {
                    Some(reason) => return Err(DistError::JobFailed(reason)),
                    None => return Err(DistError::rpc(&name, status)),
                },
            };
            let parts: Vec<PartSpec> = self.plan.shard(rank as u32).copied().collect();
            let step = scatter(reply, &self.job.job, &parts, weights, &name)?;
            if pushed.is_some_and(|s| self.job.mode == crate::Mode::Sync && step != s + 1) {
                return Err(DistError::Refused(format!(
                    "{name} answered step {} with the weights of step {step}",
                    pushed.unwrap_or_default(),
                )));
            }
            at = at.max(step);
        }
        Ok(at)
    }

    /// Reports a failure of this worker (its data, its engine) to the coordinator, which
    /// stops the job.
    pub async fn fail(&mut self, reason: &str) {
        self.failure.send_replace(Some(reason.to_string()));
        self.link.fail(reason).await;
    }

    /// Tells the coordinator this worker has taken its last step.
    pub async fn done(mut self) -> Result<(), DistError> {
        self.link.done().await?;
        Ok(())
    }
}

impl Drop for Worker {
    /// A worker that is gone stops its heartbeats, so the job notices.
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

/// A [`Worker`] for a training loop that computes on its own thread: each call runs on
/// the worker's runtime, whose one thread also sends the heartbeats (so they go on while
/// the loop computes) and does the TLS work.
pub struct BlockingWorker {
    runtime: tokio::runtime::Runtime,
    worker: Option<Worker>,
}

impl BlockingWorker {
    /// Joins the job (see [`Worker::join`]).
    pub fn join(
        setup: &MemberSetup,
        keys: Vec<KeySpec>,
        splittable: bool,
    ) -> Result<BlockingWorker, DistError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ward-dist")
            .enable_all()
            .build()?;
        let worker = runtime.block_on(Worker::join(setup, keys, splittable))?;
        Ok(BlockingWorker {
            runtime,
            worker: Some(worker),
        })
    }

    fn worker(&mut self) -> Result<&mut Worker, DistError> {
        self.worker
            .as_mut()
            .ok_or_else(|| DistError::Refused("the worker is done".into()))
    }

    pub fn job(&self) -> Option<&JobDescription> {
        self.worker.as_ref().map(Worker::job)
    }

    /// See [`Worker::pull`].
    pub fn pull(&mut self, weights: &mut [Vec<f32>]) -> Result<u64, DistError> {
        let runtime = self.runtime.handle().clone();
        let worker = self.worker()?;
        runtime.block_on(worker.pull(weights))
    }

    /// See [`Worker::push_pull`].
    pub fn push_pull(
        &mut self,
        step: u64,
        grads: &[&[f32]],
        weights: &mut [Vec<f32>],
    ) -> Result<u64, DistError> {
        let runtime = self.runtime.handle().clone();
        let worker = self.worker()?;
        runtime.block_on(worker.push_pull(step, grads, weights))
    }

    /// See [`Worker::fail`].
    pub fn fail(&mut self, reason: &str) {
        let runtime = self.runtime.handle().clone();
        if let Ok(worker) = self.worker() {
            runtime.block_on(worker.fail(reason));
        }
    }

    /// See [`Worker::done`].
    pub fn done(&mut self) -> Result<(), DistError> {
        match self.worker.take() {
            Some(worker) => self.runtime.block_on(worker.done()),
            None => Ok(()),
        }
    }
}
