//! A real cluster on loopback: a coordinator, servers and workers as tasks, over mutual
//! TLS with certificates from a fresh CA, with an element-wise SGD update; checkpoints
//! kept in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ward_dist::audit::Audit;
use ward_dist::client::{MemberSetup, Worker};
use ward_dist::coordinator::{Checkpointing, ClusterCheckpoints, CoordinatorSetup};
use ward_dist::plan::{KeySpec, PartSpec, Plan};
use ward_dist::server::{ServerSetup, ShardCheckpoint, Start, Updater};
use ward_dist::transport::Limits;
use ward_dist::wire::{JobDescription, Kept};
use ward_dist::{DistError, Member, Mode, Role};
use ward_net::devcert::DevCa;
use ward_net::tls::{client_config_with, server_config_with, Identity, Versions};

const LR: f32 = 0.125;

/// Checkpoints in memory: each server's shard by (rank, step), and the coordinator's
/// cluster checkpoints (step, the shards' digests).
#[derive(Clone, Default)]
pub struct Memory {
    shards: Arc<Mutex<Shards>>,
    cluster: Arc<Mutex<Vec<ClusterRecord>>>,
}

/// Each server's shard weights by (rank, step).
type Shards = BTreeMap<(u32, u64), Vec<Vec<f32>>>;
/// A cluster checkpoint: its step and each server's shard digest.
type ClusterRecord = (u64, Vec<[u8; 32]>);

/// A stand-in for a digest: the shard's bits folded into 32 bytes.
fn digest(weights: &[Vec<f32>]) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (i, v) in weights.iter().flatten().enumerate() {
        let slot = &mut d[i % 32];
        *slot = slot.rotate_left(3) ^ (v.to_bits() as u8) ^ (v.to_bits() >> 13) as u8;
    }
    d
}

impl ClusterCheckpoints for Memory {
    fn write(&self, step: u64, shards: &[[u8; 32]]) -> Result<Vec<u64>, String> {
        let mut cluster = self.cluster.lock().unwrap();
        cluster.push((step, shards.to_vec()));
        Ok(cluster.iter().map(|(s, _)| *s).collect())
    }
}

/// `w -= LR * g`, element by element.
struct Sgd {
    rank: u32,
    memory: Option<Memory>,
    /// Hang (block the thread) for this long at this update, noting when.
    hang: Option<(u64, Duration)>,
    hung_at: Arc<std::sync::OnceLock<std::time::Instant>>,
    updates: u64,
}

impl Updater for Sgd {
    fn update(&mut self, weights: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<(), String> {
        if let Some((at, long)) = self.hang {
            if self.updates == at {
                let _ = self.hung_at.set(std::time::Instant::now());
                // Blocks this thread the way a hung computation would, the runtime's
                // other tasks (the heartbeats among them) moved to other threads first.
                tokio::task::block_in_place(|| std::thread::sleep(long));
            }
        }
        self.updates += 1;
        for (w, g) in weights.iter_mut().zip(grads) {
            for (w, g) in w.iter_mut().zip(g) {
                *w -= LR * g;
            }
        }
        Ok(())
    }

    fn checkpoint(
        &self,
        step: u64,
        weights: &[Vec<f32>],
    ) -> Result<Box<dyn ShardCheckpoint>, String> {
        Ok(Box::new(MemoryShard {
            memory: self.memory.clone().ok_or("no checkpoints")?,
            rank: self.rank,
            step,
            weights: weights.to_vec(),
        }))
    }
}

struct MemoryShard {
    memory: Memory,
    rank: u32,
    step: u64,
    weights: Vec<Vec<f32>>,
}

impl ShardCheckpoint for MemoryShard {
    fn write(&mut self) -> Result<[u8; 32], String> {
        let mut shards = self.memory.shards.lock().unwrap();
        shards.insert((self.rank, self.step), self.weights.clone());
        Ok(digest(&self.weights))
    }

    fn prune(&self, kept: &Kept) -> Result<(), String> {
        let mut shards = self.memory.shards.lock().unwrap();
        shards.retain(|(r, s), _| *r != self.rank || *s > kept.complete || kept.steps.contains(s));
        Ok(())
    }
}

/// How a test cluster checkpoints, or resumes.
#[derive(Clone, Default)]
pub struct Options {
    pub checkpoint_every: u64,
    pub memory: Memory,
    /// Resume from the cluster checkpoint of this step in `memory`.
    pub resume: Option<u64>,
    /// Server 0's update hangs at this step, for this long.
    pub hang: Option<(u64, Duration)>,
    /// When it began to.
    pub hung_at: Arc<std::sync::OnceLock<std::time::Instant>>,
}

pub fn keys_for_test() -> Vec<KeySpec> {
    keys()
}

fn keys() -> Vec<KeySpec> {
    [40_000, 10, 70_000, 3]
        .iter()
        .enumerate()
        .map(|(i, &len)| KeySpec {
            name: format!("p{i}"),
            len,
        })
        .collect()
}

fn initial() -> Vec<Vec<f32>> {
    keys()
        .iter()
        .enumerate()
        .map(|(k, key)| {
            (0..key.len)
                .map(|i| ((k * 7 + i) % 13) as f32 * 0.25)
                .collect()
        })
        .collect()
}

/// Worker `rank`'s gradient of `key` at `step`.
fn grad(rank: u32, step: u64, key: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            (((rank as usize + 1) * (i + 3) + key * 5 + step as usize * 11) % 17) as f32 / 16.0
                - 0.5
        })
        .collect()
}

/// What a sync job must end with: each step, the workers' gradients summed in rank
/// order, then the update.
pub fn expected(workers: u32, steps: u64) -> Vec<Vec<f32>> {
    let mut w = initial();
    for step in 0..steps {
        for (k, key) in keys().iter().enumerate() {
            let mut sum = grad(0, step, k, key.len);
            for r in 1..workers {
                for (s, g) in sum.iter_mut().zip(grad(r, step, k, key.len)) {
                    *s += g;
                }
            }
            for (w, g) in w[k].iter_mut().zip(&sum) {
                *w -= LR * g;
            }
        }
    }
    w
}

pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
}

impl Certs {
    pub fn new(ca: &DevCa, roles: &[Role], job: &str) -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        for role in roles {
            let member = Member::new("test", job, *role);
            let (pem, key) = ca
                .member(&member.uri(), &["localhost".into(), "127.0.0.1".into()])
                .unwrap();
            write_pair(dir.path(), &name(*role), &pem, &key);
        }
        Certs { dir, ca: ca_path }
    }

    pub fn paths(&self, role: Role) -> (PathBuf, PathBuf) {
        let n = name(role);
        (
            self.dir.path().join(format!("{n}.pem")),
            self.dir.path().join(format!("{n}.key")),
        )
    }
}

pub fn write_pair(dir: &Path, name: &str, pem: &str, key: &str) {
    std::fs::write(dir.join(format!("{name}.pem")), pem).unwrap();
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&key_path, key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn name(role: Role) -> String {
    match role {
        Role::Coordinator => "coordinator".into(),
        Role::Server(r) => format!("server-{r}"),
        Role::Worker(r) => format!("worker-{r}"),
    }
}

pub fn tls(certs: &Certs, role: Role) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let (cert, key) = certs.paths(role);
    let id = Identity {
        cert: &cert,
        key: &key,
    };
    (
        server_config_with(id, Some(&certs.ca), &[b"h2"], Versions::Tls13Only).unwrap(),
        client_config_with(&certs.ca, Some(id), &[b"h2"], Versions::Tls13Only).unwrap(),
    )
}

pub struct Cluster {
    pub certs: Certs,
    pub ca: DevCa,
    pub coordinator: String,
    pub servers: Vec<tokio::task::JoinHandle<Result<(), DistError>>>,
    pub done: tokio::task::JoinHandle<Result<Vec<Vec<f32>>, DistError>>,
    pub audits: Vec<Audit>,
    pub server_addresses: Vec<String>,
}

pub const JOB: &str = "job-1";

pub fn setup(certs: &Certs, role: Role, coordinator: &str, audit: &Audit) -> MemberSetup {
    let (server_tls, client_tls) = tls(certs, role);
    MemberSetup {
        me: Member::new("test", JOB, role),
        coordinator: coordinator.into(),
        spec_sha256: [7; 32],
        client_tls,
        server_tls,
        limits: Limits::default(),
        audit: audit.clone(),
        join_timeout: Duration::from_secs(30),
    }
}

pub async fn start(servers: u32, workers: u32, mode: Mode, heartbeat: Duration) -> Cluster {
    start_with(servers, workers, mode, heartbeat, Options::default()).await
}

pub async fn start_with(
    servers: u32,
    workers: u32,
    mode: Mode,
    heartbeat: Duration,
    options: Options,
) -> Cluster {
    let ca = DevCa::new().unwrap();
    let roles: Vec<Role> = std::iter::once(Role::Coordinator)
        .chain((0..servers).map(Role::Server))
        .chain((0..workers).map(Role::Worker))
        .collect();
    let certs = Certs::new(&ca, &roles, JOB);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let coordinator = listener.local_addr().unwrap().to_string();
    let (server_tls, client_tls) = tls(&certs, Role::Coordinator);
    let audit = Audit::new();
    let resumed: Vec<[u8; 32]> = match options.resume {
        Some(step) => {
            let cluster = options.memory.cluster.lock().unwrap();
            cluster.iter().find(|(s, _)| *s == step).unwrap().1.clone()
        }
        None => Vec::new(),
    };
    let checkpoints = (options.checkpoint_every > 0).then(|| Checkpointing {
        every: options.checkpoint_every,
        recipients: vec!["age1test".into()],
        store: Arc::new(options.memory.clone()),
        kept: options
            .memory
            .cluster
            .lock()
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect(),
    });
    let done = tokio::spawn(ward_dist::coordinator::run(
        CoordinatorSetup {
            me: Member::new("test", JOB, Role::Coordinator),
            spec_sha256: [7; 32],
            seed: [1; 32],
            mode,
            servers,
            workers,
            heartbeat,
            join_timeout: Duration::from_secs(30),
            keys: keys(),
            splittable: true,
            initial: initial(),
            start_step: options.resume.unwrap_or(0),
            resumed,
            checkpoints,
            server_tls,
            client_tls,
            limits: Limits::default(),
            audit: audit.clone(),
        },
        listener,
    ));
    let mut audits = vec![audit];
    let mut handles = Vec::new();
    let mut server_addresses = Vec::new();
    for r in 0..servers {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        server_addresses.push(address.clone());
        let audit = Audit::new();
        let setup = ServerSetup {
            member: setup(&certs, Role::Server(r), &coordinator, &audit),
            advertise: address,
            keys: keys(),
            splittable: true,
            make_updater: {
                let memory = options.memory.clone();
                let options = options.clone();
                Box::new(
                    move |job: &JobDescription, _: &Plan, _: &[PartSpec], start: Start| {
                        let weights = match start {
                            Start::Fresh(weights) => weights,
                            Start::Resume { step, state_sha256 } => {
                                let shards = memory.shards.lock().unwrap();
                                let weights = shards.get(&(r, step)).ok_or("no shard")?.clone();
                                if digest(&weights) != state_sha256 {
                                    return Err("not the recorded shard".into());
                                }
                                weights
                            }
                        };
                        let memory = (job.checkpoint_every > 0).then_some(memory);
                        let u: Box<dyn Updater> = Box::new(Sgd {
                            rank: r,
                            memory,
                            hang: if r == 0 { options.hang } else { None },
                            hung_at: options.hung_at.clone(),
                            updates: 0,
                        });
                        Ok((u, weights))
                    },
                )
            },
        };
        audits.push(audit);
        handles.push(tokio::spawn(ward_dist::server::run(setup, listener)));
    }
    Cluster {
        certs,
        ca,
        coordinator,
        servers: handles,
        done,
        audits,
        server_addresses,
    }
}

/// A worker's whole run: `steps` pushes of its gradients; returns the weights it ends with.
pub fn worker_setup(cluster: &Cluster, rank: u32) -> MemberSetup {
    setup(
        &cluster.certs,
        Role::Worker(rank),
        &cluster.coordinator,
        &Audit::new(),
    )
}

pub async fn work(
    s: MemberSetup,
    rank: u32,
    steps: u64,
    pause: Duration,
) -> Result<Vec<Vec<f32>>, DistError> {
    let mut worker = Worker::join(&s, keys(), true).await?;
    let mut weights: Vec<Vec<f32>> = keys().iter().map(|k| vec![0.0; k.len]).collect();
    let start = worker.pull(&mut weights).await?;
    if start == 0 {
        assert_eq!(weights, initial());
    }
    for step in start..steps {
        let grads: Vec<Vec<f32>> = keys()
            .iter()
            .enumerate()
            .map(|(k, key)| grad(rank, step, k, key.len))
            .collect();
        let refs: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        worker.push_pull(step, &refs, &mut weights).await?;
        tokio::time::sleep(pause).await;
    }
    worker.done().await?;
    Ok(weights)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_job_ends_with_every_workers_gradients_summed_in_rank_order() {
    for (servers, workers) in [(1, 2), (2, 3)] {
        let cluster = start(servers, workers, Mode::Sync, Duration::from_secs(5)).await;
        let runs: Vec<_> = (0..workers)
            .map(|r| tokio::spawn(work(worker_setup(&cluster, r), r, 6, Duration::ZERO)))
            .collect();
        let mut results = Vec::new();
        for run in runs {
            results.push(run.await.unwrap());
        }
        let want = expected(workers, 6);
        for r in results {
            // Bit for bit: the same additions in the same order.
            assert_eq!(r.unwrap(), want);
        }
        let trained = cluster.done.await.unwrap().unwrap();
        assert_eq!(trained, want);
        for s in cluster.servers {
            s.await.unwrap().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_async_job_applies_each_push_at_once() {
    let cluster = start(2, 1, Mode::Async, Duration::from_secs(5)).await;
    let weights = work(worker_setup(&cluster, 0), 0, 4, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(weights, expected(1, 4));
    assert_eq!(cluster.done.await.unwrap().unwrap(), expected(1, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_worker_stops_every_member_naming_it_within_twice_the_timeout() {
    let heartbeat = Duration::from_millis(1200);
    let cluster = start(1, 2, Mode::Sync, heartbeat).await;
    // Worker 1 joins and then vanishes (its task dropped, as a kill -9 would).
    let survivor = work(worker_setup(&cluster, 0), 0, 50, Duration::ZERO);
    let victim = async {
        let audit = Audit::new();
        let s = setup(
            &cluster.certs,
            Role::Worker(1),
            &cluster.coordinator,
            &audit,
        );
        let worker = Worker::join(&s, keys(), true).await.unwrap();
        // Dropping the worker ends its heartbeats' task's runtime handle only when the
        // test ends; abort them by dropping the whole worker.
        drop(worker);
    };
    let started = std::time::Instant::now();
    let (survivor, ()) = tokio::join!(survivor, victim);
    let err = survivor.unwrap_err().to_string();
    assert!(err.contains("worker/1"), "{err}");
    let coordinator = cluster.done.await.unwrap().unwrap_err().to_string();
    assert!(
        coordinator.contains("worker/1") && coordinator.contains("heartbeat"),
        "{coordinator}"
    );
    for s in cluster.servers {
        let e = s.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("worker/1"), "{e}");
    }
    assert!(
        started.elapsed() < heartbeat * 2 + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_finite_push_is_refused_and_stops_the_job_naming_the_worker() {
    let cluster = start(1, 2, Mode::Sync, Duration::from_secs(2)).await;
    let honest = tokio::spawn(work(worker_setup(&cluster, 0), 0, 10, Duration::ZERO));
    let s = worker_setup(&cluster, 1);
    let mut worker = Worker::join(&s, keys(), true).await.unwrap();
    let mut weights: Vec<Vec<f32>> = keys().iter().map(|k| vec![0.0; k.len]).collect();
    worker.pull(&mut weights).await.unwrap();
    let mut outcome = Ok(0);
    for step in 0..10u64 {
        let mut grads: Vec<Vec<f32>> = keys()
            .iter()
            .enumerate()
            .map(|(k, key)| grad(1, step, k, key.len))
            .collect();
        if step == 2 {
            grads[2][5] = f32::NAN;
        }
        let refs: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        outcome = worker.push_pull(step, &refs, &mut weights).await;
        if outcome.is_err() {
            break;
        }
    }
    let err = outcome.unwrap_err().to_string();
    assert!(
        err.contains("worker/1 pushed a non-finite gradient at step 2 (key p2)"),
        "{err}"
    );
    let honest = honest.await.unwrap().unwrap_err().to_string();
    assert!(
        honest.contains("non-finite") && honest.contains("worker/1"),
        "{honest}"
    );
    let coordinator = cluster.done.await.unwrap().unwrap_err().to_string();
    assert!(
        coordinator.contains("worker/1 pushed a non-finite gradient"),
        "{coordinator}"
    );
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_job_checkpoints_in_step_and_resumes_to_the_weights_of_an_uninterrupted_run() {
    let memory = Memory::default();
    let options = Options {
        checkpoint_every: 2,
        memory: memory.clone(),
        ..Options::default()
    };
    let cluster = start_with(2, 2, Mode::Sync, Duration::from_secs(5), options.clone()).await;
    let runs: Vec<_> = (0..2)
        .map(|r| tokio::spawn(work(worker_setup(&cluster, r), r, 7, Duration::ZERO)))
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    assert_eq!(cluster.done.await.unwrap().unwrap(), expected(2, 7));
    // A cluster checkpoint after steps 2, 4 and 6, each once every server wrote its
    // shard, recording both shards' digests.
    let cluster_steps: Vec<u64> = memory.cluster.lock().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(cluster_steps, [2, 4, 6]);
    for (step, shards) in memory.cluster.lock().unwrap().iter() {
        assert_eq!(shards.len(), 2);
        for (rank, d) in shards.iter().enumerate() {
            let shard = &memory.shards.lock().unwrap()[&(rank as u32, *step)];
            assert_eq!(digest(shard), *d);
        }
    }

    // A new cluster resumed from step 4 ends where the uninterrupted run ended.
    let resumed = start_with(
        2,
        2,
        Mode::Sync,
        Duration::from_secs(5),
        Options {
            resume: Some(4),
            ..options.clone()
        },
    )
    .await;
    let runs: Vec<_> = (0..2)
        .map(|r| tokio::spawn(work(worker_setup(&resumed, r), r, 7, Duration::ZERO)))
        .collect();
    for run in runs {
        assert_eq!(run.await.unwrap().unwrap(), expected(2, 7));
    }
    assert_eq!(resumed.done.await.unwrap().unwrap(), expected(2, 7));

    // A shard that is not the one recorded stops the resumed job, naming the server.
    memory.shards.lock().unwrap().get_mut(&(1, 4)).unwrap()[0][0] += 1.0;
    let tampered = start_with(
        2,
        2,
        Mode::Sync,
        Duration::from_secs(2),
        Options {
            resume: Some(4),
            ..options
        },
    )
    .await;
    let e = tampered.done.await.unwrap().unwrap_err().to_string();
    assert!(
        e.contains("server/1") && e.contains("not the recorded shard"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_worker_whose_heartbeats_go_on_is_named_within_twice_the_timeout() {
    let heartbeat = Duration::from_millis(1200);
    let cluster = start(1, 2, Mode::Sync, heartbeat).await;
    let survivor = tokio::spawn(work(worker_setup(&cluster, 0), 0, 50, Duration::ZERO));
    // Worker 1 takes three steps, then computes no more while its heartbeats go on.
    let s = worker_setup(&cluster, 1);
    let mut hung = Worker::join(&s, keys(), true).await.unwrap();
    let mut weights: Vec<Vec<f32>> = keys().iter().map(|k| vec![0.0; k.len]).collect();
    hung.pull(&mut weights).await.unwrap();
    for step in 0..3u64 {
        let grads: Vec<Vec<f32>> = keys()
            .iter()
            .enumerate()
            .map(|(k, key)| grad(1, step, k, key.len))
            .collect();
        let refs: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        hung.push_pull(step, &refs, &mut weights).await.unwrap();
    }
    let stopped_at = std::time::Instant::now();
    let err = survivor.await.unwrap().unwrap_err().to_string();
    let elapsed = stopped_at.elapsed();
    assert!(
        err.contains("worker/1 pushed nothing for step 3") && err.contains("hung"),
        "{err}"
    );
    let coordinator = cluster.done.await.unwrap().unwrap_err().to_string();
    assert!(
        coordinator.contains("worker/1 pushed nothing"),
        "{coordinator}"
    );
    assert!(elapsed < heartbeat * 2, "{elapsed:?}");
    drop(hung);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_server_whose_heartbeats_go_on_is_named_within_twice_the_timeout() {
    let heartbeat = Duration::from_millis(1200);
    // Server 0's update blocks for three timeouts at step 3.
    let options = Options {
        hang: Some((3, heartbeat * 3)),
        ..Options::default()
    };
    let cluster = start_with(2, 2, Mode::Sync, heartbeat, options.clone()).await;
    let runs: Vec<_> = (0..2)
        .map(|r| tokio::spawn(work(worker_setup(&cluster, r), r, 50, Duration::ZERO)))
        .collect();
    for run in runs {
        let err = run.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("server/0"), "{err}");
    }
    // Named within twice the timeout of the hang.
    let named = options.hung_at.get().unwrap().elapsed();
    assert!(named < heartbeat * 2, "{named:?}");
    let coordinator = cluster.done.await.unwrap().unwrap_err().to_string();
    assert!(
        coordinator.contains("server/0 has not answered step 3") && coordinator.contains("hung"),
        "{coordinator}"
    );
}
