//! `ward cluster`: distributed training on ward's parameter store (`ward-dist`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use sha2::Digest;
use ward_core::random::RunSeed;
use ward_dist::audit::Audit;
use ward_dist::client::{BlockingWorker, MemberSetup};
use ward_dist::coordinator::{Checkpointing, CoordinatorSetup};
use ward_dist::identity::valid_name;
use ward_dist::server::{ServerSetup, Start, Updater};
use ward_dist::transport::Limits;
use ward_dist::{Member, Mode, Role};
use ward_net::devcert::DevCa;
use ward_net::tls::{client_config_with, server_config_with, Identity, Versions};
use ward_package::signature::read_private_key_file;
use ward_train::checkpoint::cluster::{
    open_cluster_checkpoint, CoordinatorCheckpoints, JobInfo, ShardCheckpoints,
};
use ward_train::checkpoint::{CheckpointWriter, Retention, Sealing, Unsealing, CHECKPOINTS_DIR};
use ward_train::data::batch::{LastBatch, Loader, LoaderConfig};
use ward_train::data::{DataLimits, Dataset};
use ward_train::distributed::{
    distributable, key_mults, keys, steps_per_epoch, train_worker, ShardOptimizer,
};
use ward_train::init::init_missing;
use ward_train::spec::TrainSpec;
use ward_train::trainer::{param_mults, Trainer};
use ward_train::Optimizer;

use ward_train::run::model;
use ward_train::run::PackageOpener;

use super::train::{into_anyhow, VerifiedOpener};

/// Writes one line to standard error in one write: the members of `ward cluster run`
/// share it, and `eprintln!` may write a line in pieces that interleave.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }};
}

/// Steps a worker takes before its throughput is timed.
const WARM_UP: u64 = 10;

/// Largest training spec read.
const MAX_SPEC_BYTES: u64 = 1 << 20;

/// Distributed training: a coordinator, parameter servers holding the weights and running
/// the spec's declared optimizer, and workers pushing gradients, all over mutual TLS 1.3;
/// each process's role and rank come from its certificate.
#[derive(Subcommand)]
pub enum ClusterCommand {
    Init(InitArgs),
    Run(RunArgs),
    Coordinator(CoordinatorArgs),
    Server(ServerArgs),
    Worker(WorkerArgs),
}

pub fn run(command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Init(a) => init(a),
        ClusterCommand::Run(a) => run_local(a),
        ClusterCommand::Coordinator(a) => coordinator(a),
        ClusterCommand::Server(a) => server(a),
        ClusterCommand::Worker(a) => worker(a),
    }
}

/// Make a cluster CA and a certificate and key for each role of one job: DIR/ca.pem,
/// DIR/coordinator.{pem,key}, DIR/server-I.{pem,key}, DIR/worker-I.{pem,key} (keys 0600).
/// Each certificate names its member in a URI subjectAltName,
/// spiffe://CLUSTER/JOB/coordinator, .../server/I or .../worker/I, and is valid for
/// localhost, 127.0.0.1 and each --host. The CA's key is not written: it never leaves
/// this process, so no one can issue another member. Never overwrites. For tests and
/// first runs; production brings its own CA (SPIFFE, cert-manager).
///
/// Example:
///   ward cluster init --out certs --job mnist --servers 1 --workers 2
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct InitArgs {
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The job's name (1 to 63 of a-z 0-9 - . _).
    #[arg(long)]
    job: String,
    #[arg(long, default_value = "ward")]
    cluster: String,
    #[arg(long)]
    servers: u32,
    #[arg(long)]
    workers: u32,
    /// More DNS names or IP addresses every certificate is valid for (wildcards allowed).
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
}

fn init(args: InitArgs) -> Result<()> {
    let members = make_certificates(
        &args.out,
        &args.cluster,
        &args.job,
        args.servers,
        args.workers,
        &args.hosts,
    )?;
    println!(
        "wrote a cluster CA and {members} member certificates for spiffe://{}/{} into {}",
        args.cluster,
        args.job,
        args.out.display()
    );
    Ok(())
}

/// The file stem of a member's certificate and key.
fn stem(role: Role) -> String {
    match role {
        Role::Coordinator => "coordinator".into(),
        Role::Server(r) => format!("server-{r}"),
        Role::Worker(r) => format!("worker-{r}"),
    }
}

fn make_certificates(
    out: &Path,
    cluster: &str,
    job: &str,
    servers: u32,
    workers: u32,
    hosts: &[String],
) -> Result<usize> {
    if !valid_name(cluster) || !valid_name(job) {
        bail!("the cluster and job names are 1 to 63 of a-z 0-9 - . _");
    }
    if servers == 0
        || workers == 0
        || servers >= ward_dist::identity::MAX_RANKS
        || workers >= ward_dist::identity::MAX_RANKS
    {
        bail!("--servers and --workers must be 1 to 4095");
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(hosts.iter().cloned());
    let ca = DevCa::new()?;
    let roles: Vec<Role> = std::iter::once(Role::Coordinator)
        .chain((0..servers).map(Role::Server))
        .chain((0..workers).map(Role::Worker))
        .collect();
    let mut files = vec![("ca.pem".to_string(), ca.pem().to_string(), 0o644)];
    for role in &roles {
        let (pem, key) = ca.member(&Member::new(cluster, job, *role).uri(), &names)?;
        files.push((format!("{}.pem", stem(*role)), pem, 0o644));
        files.push((format!("{}.key", stem(*role)), key, 0o600));
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, _, _) in &files {
        let path = out.join(name);
        if path.symlink_metadata().is_ok() {
            bail!(
                "{} exists; ward cluster init never overwrites",
                path.display()
            );
        }
    }
    for (name, text, mode) in files {
        let path = out.join(name);
        ward_core::files::write_new_file(&path, text.as_bytes(), mode)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(roles.len())
}

/// What every role is given.
#[derive(Args)]
pub struct MemberArgs {
    /// The training spec (TOML): the model, data, loss, optimizer and schedule. Every
    /// member must hold the same bytes (checked by SHA-256 when it joins).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The cluster CA's certificate: the only trust anchor.
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// This member's certificate: its role and rank are the URI it names.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Its private key (mode 0600).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Whom to trust: the spec's model when it is a ward package, and the checkpoints a
    /// resumed job continues from.
    #[command(flatten)]
    trust: super::TrustArgs,
    /// How long to wait for the coordinator and the other members, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    join_timeout: u64,
    /// Write this member's metrics (Prometheus text: connections and refusals by kind,
    /// gradient and weight bytes by peer, steps) to FILE every 5 s and at exit, replaced
    /// atomically: for node_exporter's textfile collector. Nothing listens in plaintext.
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    /// Run as root (a compromise of this process would be one of the machine).
    #[arg(long)]
    allow_root: bool,
}

/// What the coordinator fixes for the whole job (`ward cluster run` hands them to it).
#[derive(Args)]
pub struct JobArgs {
    /// Sign the trained package with this private key.
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "sync")]
    mode: ModeArg,
    /// A member silent for this long is dead, and the job stops naming it.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    heartbeat_timeout: f64,
    /// The run's seed (a number or 64 hex digits), overriding the spec's; default: from
    /// the OS.
    #[arg(long)]
    seed: Option<String>,
    /// Checkpoint the job every N steps: each server writes its shard (weights and
    /// optimizer state), the coordinator a cluster checkpoint recording every shard, all
    /// encrypted to --recipient and signed with --sign-key (dist_sync only).
    #[arg(long, value_name = "STEPS", value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: Option<u64>,
    /// Encrypt checkpoints to this age recipient (age1…, repeatable); the coordinator
    /// hands the recipients to the servers.
    #[arg(long, value_name = "AGE1…")]
    recipient: Vec<String>,
    /// Encrypt checkpoints to the recipients in FILE (one per line, # comments).
    #[arg(long, value_name = "FILE")]
    recipients_file: Vec<PathBuf>,
    /// Keep the newest N cluster checkpoints (older ones, and the shards only they
    /// needed, are deleted once a newer one is complete).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    keep_last: u64,
    /// Also keep every cluster checkpoint whose step is a multiple of K.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    keep_every: Option<u64>,
}

/// The job's checkpoint settings, from [`JobArgs`].
struct JobCheckpoints {
    every: u64,
    sealing: Sealing,
    recipients: Vec<String>,
    retention: Retention,
}

impl JobArgs {
    /// The heartbeat timeout, 0.5 s to an hour.
    fn heartbeat(&self) -> Result<Duration> {
        let t = self.heartbeat_timeout;
        if !(t.is_finite() && (0.5..=3600.0).contains(&t)) {
            bail!("--heartbeat-timeout must be 0.5 to 3600 seconds");
        }
        Ok(Duration::from_secs_f64(t))
    }

    /// The checkpoint settings, if the job checkpoints.
    fn checkpoints(&self) -> Result<Option<JobCheckpoints>> {
        let Some(every) = self.checkpoint_every else {
            if !self.recipient.is_empty() || !self.recipients_file.is_empty() {
                bail!("--recipient and --recipients-file encrypt checkpoints: give --checkpoint-every");
            }
            return Ok(None);
        };
        if self.mode == ModeArg::Async {
            bail!("checkpoints are written in step, which dist_async has not: use --mode sync");
        }
        if self.sign_key.is_none() {
            bail!("checkpoints are signed: give --sign-key");
        }
        let files: Vec<&Path> = self.recipients_file.iter().map(PathBuf::as_path).collect();
        let sealing = Sealing::recipients(&self.recipient, &files)?;
        Ok(Some(JobCheckpoints {
            every,
            recipients: sealing.recipient_names(),
            sealing,
            retention: Retention {
                keep_last: usize::try_from(self.keep_last).unwrap_or(usize::MAX),
                keep_every: self.keep_every,
                keep_best: None,
            },
        }))
    }

    /// The same settings as coordinator arguments.
    fn to_args(&self) -> Vec<String> {
        let mode = match self.mode {
            ModeArg::Sync => "sync",
            ModeArg::Async => "async",
        };
        let mut v = vec![
            "--mode".into(),
            mode.into(),
            "--heartbeat-timeout".into(),
            self.heartbeat_timeout.to_string(),
        ];
        if let Some(seed) = &self.seed {
            v.extend(["--seed".into(), seed.clone()]);
        }
        if let Some(key) = &self.sign_key {
            v.extend(["--sign-key".into(), key.display().to_string()]);
        }
        if let Some(every) = self.checkpoint_every {
            v.extend(["--checkpoint-every".into(), every.to_string()]);
        }
        for r in &self.recipient {
            v.extend(["--recipient".into(), r.clone()]);
        }
        for f in &self.recipients_file {
            v.extend(["--recipients-file".into(), f.display().to_string()]);
        }
        v.extend(["--keep-last".into(), self.keep_last.to_string()]);
        if let Some(k) = self.keep_every {
            v.extend(["--keep-every".into(), k.to_string()]);
        }
        v
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// MXNet's dist_sync: one update per step once every worker's gradient is in.
    Sync,
    /// MXNet's dist_async: each push updates at once.
    Async,
}

/// The coordinator: membership, the job's description and seed, the servers' initial
/// weights, heartbeats, and the trained package at the end.
///
/// Example:
///   ward cluster coordinator --config train.toml --ca certs/ca.pem \
///       --cert certs/coordinator.pem --key certs/coordinator.key \
///       --listen 0.0.0.0:7070 --servers 1 --workers 2 --out runs/job
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    member: MemberArgs,
    /// Where to listen (loopback unless given).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    #[arg(long)]
    servers: u32,
    #[arg(long)]
    workers: u32,
    /// The run's directory: the trained package is written to OUT/package, cluster
    /// checkpoints to OUT/checkpoints.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    job: JobArgs,
    /// Continue the job from the newest cluster checkpoint in OUT/checkpoints, verified
    /// under --trust and decrypted with --identity (every server then restores its own
    /// shard of that step); with none there yet, start the job.
    #[arg(long)]
    resume: bool,
    /// With --resume: an age identity file (AGE-SECRET-KEY-1…) that decrypts the
    /// checkpoints.
    #[arg(long, value_name = "FILE")]
    identity: Vec<PathBuf>,
    /// Write the address the coordinator listens on to this file once it does (for
    /// --listen with port 0).
    #[arg(long, value_name = "FILE")]
    address_file: Option<PathBuf>,
}

/// A parameter server: a shard of the weights and the optimizer's state for it.
///
/// Example:
///   ward cluster server --config train.toml --ca certs/ca.pem --cert certs/server-0.pem \
///       --key certs/server-0.key --listen 0.0.0.0:7071 --advertise server-0.example:7071 \
///       --coordinator coordinator.example:7070
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ServerArgs {
    #[command(flatten)]
    member: MemberArgs,
    /// Where to listen (loopback unless given; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The address workers dial (HOST:PORT); default: the address listened on.
    #[arg(long)]
    advertise: Option<String>,
    /// The coordinator's address (HOST:PORT).
    #[arg(long)]
    coordinator: String,
    /// Where this server writes its shard's checkpoints, and finds them when the job
    /// resumes (needed when the job checkpoints).
    #[arg(long, value_name = "DIR")]
    checkpoints: Option<PathBuf>,
    /// Sign the shard's checkpoints with this private key.
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// An age identity file (AGE-SECRET-KEY-1…) that decrypts this server's shard when
    /// the job resumes; the shard is verified under --trust first.
    #[arg(long, value_name = "FILE")]
    identity: Vec<PathBuf>,
}

/// A worker: computes gradients on its rows of each global batch, pushes them, and takes
/// the servers' weights.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct WorkerArgs {
    #[command(flatten)]
    member: MemberArgs,
    /// The coordinator's address (HOST:PORT).
    #[arg(long)]
    coordinator: String,
}

/// Run a whole job on this machine: certificates from a fresh CA (in OUT/certs), a
/// coordinator, S servers and W workers as processes on 127.0.0.1, over mutual TLS like
/// any cluster, each member's metrics in OUT/metrics/. Exits with the first failure,
/// naming the member.
///
/// Example:
///   ward cluster run --local --servers 1 --workers 2 --config train.toml --out runs/job
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// Every process on this machine (the only launcher built in; use Kubernetes, see
    /// deploy/kubernetes, for more machines).
    #[arg(long, required = true)]
    local: bool,
    #[arg(long, default_value_t = 1)]
    servers: u32,
    #[arg(long, default_value_t = 2)]
    workers: u32,
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The run's directory (must not exist yet, unless --resume): certs/, run/package,
    /// run/checkpoints (the cluster checkpoints), shards/server-I (each server's).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    job: JobArgs,
    /// Continue the job in OUT (with its certificates) from its newest cluster
    /// checkpoint, verified under --trust and decrypted with --identity.
    #[arg(long, requires_all = ["trust", "identity"])]
    resume: bool,
    /// With --resume: an age identity file that decrypts the checkpoints.
    #[arg(long, value_name = "FILE")]
    identity: Vec<PathBuf>,
    /// Whom to trust: the spec's model when it is a ward package, and the checkpoints
    /// resumed.
    #[arg(long, value_name = "TRUST")]
    trust: Option<PathBuf>,
    #[arg(long)]
    allow_unsigned: bool,
    #[arg(long)]
    allow_root: bool,
}

/// Writes a member's metrics to a file every 5 s and once more when dropped.
struct MetricsFile {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsFile {
    fn start(audit: &Audit, path: Option<&Path>) -> MetricsFile {
        let Some(path) = path.map(Path::to_path_buf) else {
            return MetricsFile {
                stop: None,
                thread: None,
            };
        };
        let mut registry = prometheus_client::registry::Registry::default();
        audit.register(&mut registry);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || loop {
            let last = !matches!(
                stopped.recv_timeout(Duration::from_secs(5)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            if let Err(e) = write_metrics(&registry, &path) {
                say!("[cluster] metrics file {}: {e}", path.display());
            }
            if last {
                return;
            }
        });
        MetricsFile {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for MetricsFile {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The registry's text, written beside `path` and renamed over it.
fn write_metrics(registry: &prometheus_client::registry::Registry, path: &Path) -> Result<()> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

/// A member's spec, TLS and identity.
struct Prepared {
    spec: TrainSpec,
    base: PathBuf,
    spec_sha256: [u8; 32],
    me: Member,
    server_tls: Arc<rustls::ServerConfig>,
    client_tls: Arc<rustls::ClientConfig>,
}

fn prepare(args: &MemberArgs) -> Result<Prepared> {
    if ward_core::privilege::running_as_root() {
        if !args.allow_root {
            bail!("refusing to run as root (a compromise of this process would be one of the machine); --allow-root overrides");
        }
        say!("WARNING: --allow-root: a compromise of this member would be a compromise of the machine");
    }
    let bytes = ward_core::files::read_bounded(&args.config, MAX_SPEC_BYTES)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8", args.config.display()))?;
    let spec: TrainSpec =
        toml::from_str(&text).with_context(|| format!("{}", args.config.display()))?;
    spec.validate()
        .with_context(|| format!("{}", args.config.display()))?;
    distributable(&spec.optimizer).map_err(anyhow::Error::msg)?;
    let identity = Identity {
        cert: &args.cert,
        key: &args.key,
    };
    let server_tls = server_config_with(identity, Some(&args.ca), &[b"h2"], Versions::Tls13Only)?;
    let client_tls = client_config_with(&args.ca, Some(identity), &[b"h2"], Versions::Tls13Only)?;
    let leaf = ward_net::pem::read_certificates(&args.cert)?;
    let me = leaf
        .first()
        .map(ward_dist::Member::of_certificate)
        .transpose()
        .with_context(|| format!("{}", args.cert.display()))?
        .with_context(|| format!("{}: no certificate", args.cert.display()))?;
    Ok(Prepared {
        base: args.config.parent().unwrap_or(Path::new(".")).to_path_buf(),
        spec,
        spec_sha256: sha2::Sha256::digest(&bytes).into(),
        me,
        server_tls,
        client_tls,
    })
}

/// A member's copy of the model and the training data (opened first: its example shape
/// is the model's input).
struct Loaded {
    model: model::Model,
    train: Arc<dyn Dataset>,
    example_shape: Vec<usize>,
}

/// --trust verifies a package model and the checkpoints a job resumes from, so it may be
/// given for a model of MXNet files (`ward cluster run` hands it to every member).
fn load(p: &Prepared, trust: &super::TrustArgs) -> Result<Loaded> {
    let train = p
        .spec
        .data
        .train
        .open(&p.base, &DataLimits::default())
        .context("data.train")?;
    let example_shape = train.data_shape().to_vec();
    let opener = trust.is_set().then_some(VerifiedOpener(trust));
    let model = model::load(
        &p.spec,
        &p.base,
        &example_shape,
        opener.as_ref().map(|o| o as &dyn PackageOpener),
        true,
    )
    .map_err(into_anyhow)?;
    Ok(Loaded {
        model,
        train,
        example_shape,
    })
}

impl Loaded {
    fn job_info(
        &self,
        p: &Prepared,
        job: &str,
        seed: [u8; 32],
        servers: u32,
        workers: u32,
    ) -> JobInfo {
        JobInfo {
            model: self.model.name.clone(),
            job: job.to_string(),
            spec_sha256: p.spec_sha256,
            seed,
            servers,
            workers,
            steps_per_epoch: steps_per_epoch(self.train.len(), p.spec.data.batch_size, workers),
            optimizer: p.spec.optimizer.name().to_string(),
        }
    }

    /// A trainer for batches of `batch`, the weights the model's files lack drawn from
    /// `seed` (once: the given weights move into the trainer).
    fn trainer(&mut self, spec: &TrainSpec, seed: &RunSeed, batch: usize) -> Result<Trainer> {
        let init = spec.init.unwrap_or_default();
        let given = std::mem::take(&mut self.model.given);
        let weights = init_missing(&init, &self.model.graph, seed, given)?;
        model::trainer(spec, &self.model, weights, batch, &self.example_shape, seed)
            .map_err(into_anyhow)
    }
}

fn member_setup(p: &Prepared, coordinator: &str, join_timeout: u64, audit: &Audit) -> MemberSetup {
    MemberSetup {
        me: p.me.clone(),
        coordinator: coordinator.to_string(),
        spec_sha256: p.spec_sha256,
        client_tls: p.client_tls.clone(),
        server_tls: p.server_tls.clone(),
        limits: Limits::default(),
        audit: audit.clone(),
        join_timeout: Duration::from_secs(join_timeout),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn coordinator(args: CoordinatorArgs) -> Result<()> {
    let p = prepare(&args.member)?;
    if p.me.role != Role::Coordinator {
        bail!(
            "{} names {}; `ward cluster coordinator` needs the coordinator's certificate",
            args.member.cert.display(),
            p.me
        );
    }
    if args.out.exists() && !args.resume {
        bail!(
            "{} exists; a run writes a new directory (--resume continues a job from its checkpoints)",
            args.out.display()
        );
    }
    let package = args.out.join("package");
    if package.exists() {
        bail!("{} exists: the job has finished", package.display());
    }
    let heartbeat = args.job.heartbeat()?;
    let key = args
        .job
        .sign_key
        .as_deref()
        .map(read_private_key_file)
        .transpose()?;
    let checkpoints = args.job.checkpoints()?;
    if args.resume && checkpoints.is_none() {
        bail!("--resume continues a job that checkpoints: give its --checkpoint-every and --recipient");
    }
    let mut loaded = load(&p, &args.member.trust)?;
    let checkpoints_dir = args.out.join(CHECKPOINTS_DIR);
    let resumed = if args.resume {
        let trust = args.member.trust.trust()?;
        if args.identity.is_empty() {
            bail!("--resume decrypts the cluster checkpoint: give --identity KEY.txt");
        }
        let files: Vec<&Path> = args.identity.iter().map(PathBuf::as_path).collect();
        let unsealing = Unsealing::identity_files(&files)?;
        // The seed is the checkpoint's; the job's other settings must match it.
        let job = loaded.job_info(&p, &p.me.job, [0; 32], args.servers, args.workers);
        let resumed = open_cluster_checkpoint(&checkpoints_dir, &trust, &unsealing, &job)?;
        match &resumed {
            Some(r) => say!(
                "[coordinator] resuming from {} (step {})",
                r.dir.display(),
                r.step
            ),
            None => say!(
                "[coordinator] no cluster checkpoint in {}: starting the job",
                checkpoints_dir.display()
            ),
        }
        resumed
    } else {
        None
    };
    let seed = match (
        &resumed,
        args.job.seed.as_deref().or(p.spec.run.seed.as_deref()),
    ) {
        (Some(r), Some(text)) if *RunSeed::parse(text)?.as_bytes() != *r.seed.as_bytes() => {
            bail!("the seed given is not the one the resumed job ran with")
        }
        (Some(r), _) => RunSeed::from_bytes(*r.seed.as_bytes()),
        (None, Some(text)) => RunSeed::parse(text)?,
        (None, None) => RunSeed::from_os()?,
    };
    say!("[coordinator] seed: {seed}");
    let trainer = loaded.trainer(&p.spec, &seed, p.spec.data.batch_size)?;
    let (keys, index) = keys(trainer.graph());
    let initial: Vec<Vec<f32>> = index
        .iter()
        .map(|&i| trainer.weights().get(i).cloned().unwrap_or_default())
        .collect();
    let graph = trainer.graph().clone();
    let mut all_weights = trainer.weights().to_vec();
    // The state parameters (no key: no server holds them) are the checkpoint's.
    if let Some(r) = &resumed {
        for (name, values) in &r.state_params {
            let Some(i) = graph.params.iter().position(|q| q.name == *name) else {
                bail!("the cluster checkpoint holds {name:?}, which the model has not");
            };
            if index.contains(&i) || all_weights.get(i).map(Vec::len) != Some(values.len()) {
                bail!("the cluster checkpoint's {name:?} is not the model's state parameter");
            }
            if let Some(slot) = all_weights.get_mut(i) {
                slot.clone_from(values);
            }
        }
    }
    let job_info = loaded.job_info(&p, &p.me.job, *seed.as_bytes(), args.servers, args.workers);
    // The key signs the checkpoints and the package: read once for each.
    let checkpoint_key = match &checkpoints {
        Some(_) => args
            .job
            .sign_key
            .as_deref()
            .map(read_private_key_file)
            .transpose()?,
        None => None,
    };
    let checkpointing = match (checkpoints, checkpoint_key) {
        (Some(c), Some(sign)) => {
            ward_train::checkpoint::store::create_private_dir(&args.out)?;
            let writer = CheckpointWriter::new(&checkpoints_dir, c.sealing, sign, c.retention)?;
            let state_params = graph
                .params
                .iter()
                .enumerate()
                .filter(|(i, _)| !index.contains(i))
                .map(|(i, q)| {
                    let values = all_weights.get(i).cloned().unwrap_or_default();
                    (q.name.clone(), q.shape.clone(), values)
                })
                .collect();
            let store = CoordinatorCheckpoints::new(writer, job_info, state_params);
            Some(Checkpointing {
                every: c.every,
                recipients: c.recipients,
                kept: store.kept()?,
                store: Arc::new(store),
            })
        }
        _ => None,
    };
    let model = loaded.model;
    let audit = Audit::new();
    let _metrics = MetricsFile::start(&audit, args.member.metrics_file.as_deref());
    let rt = runtime()?;
    let trained = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let bound = listener.local_addr()?;
        say!("[coordinator] listening on {bound} for job {}", p.me.job);
        if let Some(path) = &args.address_file {
            ward_core::files::write_new_file(path, bound.to_string().as_bytes(), 0o644)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let setup = CoordinatorSetup {
            me: p.me.clone(),
            spec_sha256: p.spec_sha256,
            seed: *seed.as_bytes(),
            mode: match args.job.mode {
                ModeArg::Sync => Mode::Sync,
                ModeArg::Async => Mode::Async,
            },
            servers: args.servers,
            workers: args.workers,
            heartbeat,
            join_timeout: Duration::from_secs(args.member.join_timeout),
            keys,
            splittable: true,
            initial,
            start_step: resumed.as_ref().map_or(0, |r| r.step),
            resumed: resumed.map(|r| r.shards).unwrap_or_default(),
            checkpoints: checkpointing,
            server_tls: p.server_tls.clone(),
            client_tls: p.client_tls.clone(),
            limits: Limits::default(),
            audit: audit.clone(),
        };
        ward_dist::coordinator::run(setup, listener)
            .await
            .map_err(anyhow::Error::from)
    })?;
    // The trained keys over the initial weights (state parameters keep the coordinator's).
    let mut weights = all_weights;
    for (&i, w) in index.iter().zip(trained) {
        if let Some(slot) = weights.get_mut(i) {
            *slot = w;
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let manifest = model::write_trained(
        &package,
        model,
        &graph,
        &weights,
        key.as_ref(),
        ward_train::run::now_unix(),
    )
    .map_err(into_anyhow)?;
    let epochs = p.spec.run.epochs;
    println!(
        "trained {} for {} epoch{} into {}{}",
        manifest.name,
        epochs,
        if epochs == 1 { "" } else { "s" },
        package.display(),
        if key.is_some() { ", signed" } else { "" }
    );
    Ok(())
}

fn server(args: ServerArgs) -> Result<()> {
    let p = prepare(&args.member)?;
    if !matches!(p.me.role, Role::Server(_)) {
        bail!(
            "{} names {}; `ward cluster server` needs a server's certificate",
            args.member.cert.display(),
            p.me
        );
    }
    // The server's optimizer and multipliers come from its own copy of the spec and
    // model; the weights from the coordinator or its own checkpoint. It computes no
    // gradient: no engine.
    let loaded = load(&p, &args.member.trust)?;
    let graph = &loaded.model.graph;
    let (keys, index) = keys(graph);
    let all = param_mults(
        graph,
        &p.spec.optimizer,
        &model::setup(&p.spec, &loaded.model),
    );
    let mults = key_mults(&all, &index);
    let optimizer = Optimizer::new(p.spec.optimizer.clone(), p.spec.schedule.clone())?;
    let shards = ShardStore {
        dir: args.checkpoints.clone(),
        sign_key: args
            .sign_key
            .as_deref()
            .map(read_private_key_file)
            .transpose()?,
        trust: if args.member.trust.is_set() {
            Some(args.member.trust.trust()?)
        } else {
            None
        },
        unsealing: if args.identity.is_empty() {
            None
        } else {
            let files: Vec<&Path> = args.identity.iter().map(PathBuf::as_path).collect();
            Some(Unsealing::identity_files(&files)?)
        },
        rank: match p.me.role {
            Role::Server(r) => r,
            _ => 0,
        },
    };
    let examples = loaded.train.len();
    let model_name = loaded.model.name.clone();
    let spec = p.spec.clone();
    let audit = Audit::new();
    let _metrics = MetricsFile::start(&audit, args.member.metrics_file.as_deref());
    let rt = runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let bound = listener.local_addr()?;
        let advertise = args.advertise.clone().unwrap_or_else(|| bound.to_string());
        say!(
            "[{}] listening on {bound}, advertised as {advertise}",
            p.me.role
        );
        let setup = ServerSetup {
            member: member_setup(&p, &args.coordinator, args.member.join_timeout, &audit),
            advertise,
            keys,
            splittable: true,
            make_updater: Box::new(move |job, plan, parts, start| {
                let info = JobInfo {
                    model: model_name,
                    job: job.job.clone(),
                    spec_sha256: job.spec_sha256,
                    seed: job.seed,
                    servers: plan.servers,
                    workers: job.workers,
                    steps_per_epoch: steps_per_epoch(examples, spec.data.batch_size, job.workers),
                    optimizer: spec.optimizer.name().to_string(),
                };
                shards.updater(job, info, plan, parts, start, optimizer, &mults)
            }),
        };
        ward_dist::server::run(setup, listener)
            .await
            .map_err(anyhow::Error::from)
    })?;
    say!("[{}] done", p.me.role);
    Ok(())
}

/// What a server needs for its shard's checkpoints.
struct ShardStore {
    dir: Option<PathBuf>,
    sign_key: Option<ward_package::signature::PrivateKey>,
    trust: Option<ward_package::Trust>,
    unsealing: Option<Unsealing>,
    rank: u32,
}

impl ShardStore {
    /// The server's updater, from the coordinator's initial weights or its own
    /// checkpoint, writing checkpoints when the job does.
    #[allow(clippy::too_many_arguments)]
    fn updater(
        self,
        job: &ward_dist::wire::JobDescription,
        info: JobInfo,
        plan: &ward_dist::plan::Plan,
        parts: &[ward_dist::plan::PartSpec],
        start: Start,
        optimizer: Optimizer,
        mults: &[ward_train::optim::ParamMults],
    ) -> std::result::Result<ward_dist::server::Made, String> {
        let checkpoints = if job.checkpoint_every > 0 || matches!(start, Start::Resume { .. }) {
            let dir = self.dir.ok_or(
                "the job checkpoints: give this server --checkpoints DIR (where its shards are written)",
            )?;
            let key = self.sign_key.ok_or(
                "the job checkpoints: give this server --sign-key (its shards are signed)",
            )?;
            let sealing = Sealing::recipients(&job.recipients, &[]).map_err(|e| e.to_string())?;
            let store =
                ShardCheckpoints::new(&dir, sealing, key, info, self.rank, &plan.keys, parts)
                    .map_err(|e| e.to_string())?;
            Some(Arc::new(store))
        } else {
            None
        };
        let (updater, weights) = match start {
            Start::Fresh(initial) => {
                let u = ShardOptimizer::new(optimizer, parts, &initial, mults)?;
                (u, initial)
            }
            Start::Resume { step, state_sha256 } => {
                let store = checkpoints.as_ref().ok_or("no checkpoints")?;
                let trust = self
                    .trust
                    .ok_or("the job resumes: give this server --trust (its shard is verified)")?;
                let unsealing = self.unsealing.ok_or(
                    "the job resumes: give this server --identity (its shard is decrypted)",
                )?;
                let mut restored = store
                    .resume(&trust, &unsealing, step, state_sha256, &optimizer)
                    .map_err(|e| e.to_string())?;
                let u = ShardOptimizer::resumed(optimizer, parts, &mut restored, mults)?;
                (u, restored.weights)
            }
        };
        let updater = match checkpoints {
            Some(c) if job.checkpoint_every > 0 => updater.with_checkpoints(c),
            _ => updater,
        };
        let updater: Box<dyn Updater> = Box::new(updater);
        Ok((updater, weights))
    }
}

fn worker(args: WorkerArgs) -> Result<()> {
    let p = prepare(&args.member)?;
    let Role::Worker(rank) = p.me.role else {
        bail!(
            "{} names {}; `ward cluster worker` needs a worker's certificate",
            args.member.cert.display(),
            p.me
        );
    };
    let audit = Audit::new();
    let _metrics = MetricsFile::start(&audit, args.member.metrics_file.as_deref());
    let setup = member_setup(&p, &args.coordinator, args.member.join_timeout, &audit);
    // The keys come from this member's copy of the model; the trainer is built once the
    // job's seed is known.
    let batch = p.spec.data.batch_size;
    let mut loaded = load(&p, &args.member.trust)?;
    let (keys, _) = keys(&loaded.model.graph);
    let mut link = BlockingWorker::join(&setup, keys, true)?;
    let job = link.job().cloned().context("joined without a job")?;
    let seed = RunSeed::from_bytes(job.seed);
    let result = (|| -> Result<()> {
        let mut trainer = loaded.trainer(&p.spec, &seed, batch)?;
        let train = loaded.train.clone();
        let workers = job.workers as usize;
        let loader = Loader::new(
            train,
            LoaderConfig {
                batch_size: batch * workers,
                shuffle: p.spec.data.shuffle,
                last_batch: LastBatch::Pad,
                threads: p.spec.data.threads,
                prefetch: 4,
            },
            seed.clone(),
        )?;
        let threads = p.spec.run.threads.unwrap_or(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let log_every = p.spec.run.log_every.max(1);
        let started = Instant::now();
        // Throughput is timed after WARM_UP steps, as MXNet's benchmark does.
        let mut timed: Option<(Instant, u64)> = None;
        let summary = pool.install(|| {
            train_worker(
                &mut trainer,
                &mut link,
                &loader,
                p.spec.run.epochs,
                rank as usize,
                batch,
                |epoch, step, m| {
                    if step == WARM_UP {
                        timed = Some((Instant::now(), step));
                    }
                    if step % log_every == 0 {
                        say!(
                        "[worker/{rank}] epoch {epoch} step {step}: loss {:.6}, {:.0} samples/s",
                        m.loss(),
                        (step as f64 * batch as f64) / started.elapsed().as_secs_f64().max(1e-9)
                    );
                    }
                },
            )
        })?;
        say!(
            "[worker/{rank}] {} steps, {:.0} samples/s",
            summary.steps,
            summary.steps as f64 * batch as f64 / started.elapsed().as_secs_f64().max(1e-9)
        );
        if let Some((at, from)) = timed {
            let steps = trainer.steps().saturating_sub(from).max(1);
            let seconds = at.elapsed().as_secs_f64().max(1e-9);
            say!(
                "[worker/{rank}] timed: {steps} steps after {WARM_UP} of warm-up, {:.2} ms/step, {:.0} samples/s",
                seconds * 1e3 / steps as f64,
                steps as f64 * batch as f64 / seconds
            );
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            link.done()?;
            Ok(())
        }
        Err(e) => {
            link.fail(&format!("{e:#}"));
            Err(e)
        }
    }
}

fn run_local(args: RunArgs) -> Result<()> {
    if !args.local {
        bail!("only --local is built in");
    }
    let heartbeat = args.job.heartbeat()?;
    let checkpointing = args.job.checkpoints()?.is_some();
    let certs = args.out.join("certs");
    let job = "local";
    let address_file = args.out.join("coordinator.addr");
    if args.resume {
        if !certs.join("ca.pem").exists() {
            bail!(
                "{} holds no job to resume ({} is missing)",
                args.out.display(),
                certs.join("ca.pem").display()
            );
        }
        // The last run's address; the coordinator writes its new one.
        let _ = std::fs::remove_file(&address_file);
    } else {
        if args.out.exists() {
            bail!(
                "{} exists; a run writes a new directory (--resume continues it)",
                args.out.display()
            );
        }
        make_certificates(&certs, "ward", job, args.servers, args.workers, &[])?;
    }
    std::fs::create_dir_all(args.out.join("metrics"))?;
    let exe = std::env::current_exe().context("cannot find the ward binary")?;
    let identities: Vec<String> = args
        .identity
        .iter()
        .flat_map(|i| ["--identity".to_string(), i.display().to_string()])
        .collect();
    let member = |role: Role| -> Vec<String> {
        let s = stem(role);
        let mut v = vec![
            "--config".into(),
            args.config.display().to_string(),
            "--ca".into(),
            certs.join("ca.pem").display().to_string(),
            "--cert".into(),
            certs.join(format!("{s}.pem")).display().to_string(),
            "--key".into(),
            certs.join(format!("{s}.key")).display().to_string(),
        ];
        v.extend([
            "--metrics-file".into(),
            args.out
                .join("metrics")
                .join(format!("{s}.prom"))
                .display()
                .to_string(),
        ]);
        if let Some(t) = &args.trust {
            v.extend(["--trust".into(), t.display().to_string()]);
        }
        if args.allow_unsigned {
            v.push("--allow-unsigned".into());
        }
        if args.allow_root {
            v.push("--allow-root".into());
        }
        v
    };
    let mut children: Vec<(Role, Child)> = Vec::new();
    let mut coordinator = Command::new(&exe);
    coordinator
        .args(["cluster", "coordinator"])
        .args(member(Role::Coordinator))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--servers",
            &args.servers.to_string(),
            "--workers",
            &args.workers.to_string(),
        ])
        .args(["--out", &args.out.join("run").display().to_string()])
        .args(["--address-file", &address_file.display().to_string()])
        .args(args.job.to_args());
    if args.resume {
        coordinator.arg("--resume").args(&identities);
    }
    children.push((
        Role::Coordinator,
        coordinator
            .spawn()
            .context("cannot start the coordinator")?,
    ));
    // The coordinator writes its address once it listens.
    let started = Instant::now();
    let address = loop {
        if let Ok(text) = std::fs::read_to_string(&address_file) {
            if !text.is_empty() {
                break text;
            }
        }
        if let Some((_, c)) = children.first_mut() {
            if let Some(status) = c.try_wait()? {
                bail!("the coordinator exited before listening ({status})");
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            kill_all(&mut children);
            bail!("the coordinator did not start listening within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for r in 0..args.servers {
        let mut server = Command::new(&exe);
        server
            .args(["cluster", "server"])
            .args(member(Role::Server(r)))
            .args(["--listen", "127.0.0.1:0", "--coordinator", &address]);
        if checkpointing || args.resume {
            let dir = args.out.join("shards").join(stem(Role::Server(r)));
            server.arg("--checkpoints").arg(dir).args(&identities);
            if let Some(key) = &args.job.sign_key {
                server.arg("--sign-key").arg(key);
            }
        }
        let child = server.spawn().context("cannot start a server")?;
        children.push((Role::Server(r), child));
    }
    for r in 0..args.workers {
        let child = Command::new(&exe)
            .args(["cluster", "worker"])
            .args(member(Role::Worker(r)))
            .args(["--coordinator", &address])
            .spawn()
            .context("cannot start a worker")?;
        children.push((Role::Worker(r), child));
    }
    // Wait for every process; once one fails, the others stop by themselves within two
    // heartbeat timeouts (they learn it from the coordinator, or find it gone); any still
    // running after that are killed.
    let mut first_failure: Option<(Role, ExitStatus)> = None;
    let mut failed_at: Option<Instant> = None;
    let grace = heartbeat * 2 + Duration::from_secs(5);
    loop {
        let mut running = 0;
        for (role, child) in children.iter_mut() {
            match child.try_wait()? {
                Some(status) if !status.success() && first_failure.is_none() => {
                    first_failure = Some((*role, status));
                    failed_at = Some(Instant::now());
                }
                Some(_) => {}
                None => running += 1,
            }
        }
        if running == 0 {
            break;
        }
        if failed_at.is_some_and(|t| t.elapsed() > grace) {
            kill_all(&mut children);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match first_failure {
        Some((role, status)) => bail!("the job failed: {role} exited with {status}"),
        None => {
            println!(
                "job finished: {}",
                args.out.join("run").join("package").display()
            );
            Ok(())
        }
    }
}

fn kill_all(children: &mut [(Role, Child)]) {
    for (role, child) in children.iter_mut() {
        if matches!(child.try_wait(), Ok(None)) {
            say!("[cluster] killing {role}, still running");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
