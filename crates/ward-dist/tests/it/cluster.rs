//! A real cluster on loopback: a coordinator, servers and workers as tasks, over mutual
//! TLS with certificates from a fresh CA, with an element-wise SGD update.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ward_dist::audit::Audit;
use ward_dist::client::{MemberSetup, Worker};
use ward_dist::coordinator::CoordinatorSetup;
use ward_dist::plan::{KeySpec, PartSpec, Plan};
use ward_dist::server::{ServerSetup, Updater};
use ward_dist::transport::Limits;
use ward_dist::{DistError, Member, Mode, Role};
use ward_net::devcert::DevCa;
use ward_net::tls::{client_config_with, server_config_with, Identity, Versions};

const LR: f32 = 0.125;

/// `w -= LR * g`, element by element.
struct Sgd;

impl Updater for Sgd {
    fn update(&mut self, weights: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<(), String> {
        for (w, g) in weights.iter_mut().zip(grads) {
            for (w, g) in w.iter_mut().zip(g) {
                *w -= LR * g;
            }
        }
        Ok(())
    }
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
            start_step: 0,
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
            make_updater: Box::new(|_: &Plan, _: &[PartSpec], _: &[Vec<f32>]| {
                let u: Box<dyn Updater> = Box::new(Sgd);
                Ok(u)
            }),
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
    worker.pull(&mut weights).await?;
    assert_eq!(weights, initial());
    for step in 0..steps {
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
