//! `ward checkpoint list|verify|inspect`

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ward_package::Verification;
use ward_train::checkpoint::mxnet::{module_files, write_module_files};
use ward_train::checkpoint::{
    checkpoints_dir, list_checkpoints, open_checkpoint, read_index_unverified, verify_checkpoint,
    CheckpointIndex, OpenedCheckpoint, Unsealing,
};

#[derive(Subcommand)]
pub enum CheckpointCommand {
    /// List a run's checkpoints (RUN/checkpoints/step-*), newest last: step, epoch,
    /// batch, when, encryption, size, validation metrics. Read from each checkpoint.json
    /// without verifying it: `ward checkpoint verify` checks one.
    ///
    /// Example:
    ///   ward checkpoint list runs/lenet
    #[command(verbatim_doc_comment)]
    List(ListArgs),
    /// Verify a checkpoint's signatures against a trust policy and its files against
    /// them, without decrypting anything: who signed it, which run, spec and step.
    /// Exit 3 when it is refused.
    ///
    /// Example:
    ///   ward checkpoint verify runs/lenet/checkpoints/step-000000000120 --trust trainer.pub
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Verify a checkpoint, decrypt its state with an identity (or passphrase) and show
    /// what it holds: position, optimizer, each parameter's tensors. Exit 3 when it is
    /// refused (signature, files, or a state that does not decrypt or parse).
    ///
    /// Example:
    ///   ward checkpoint inspect runs/lenet/checkpoints/step-000000000120 \
    ///       --trust trainer.pub --identity key.txt
    #[command(verbatim_doc_comment)]
    Inspect(InspectArgs),
    /// Write a verified, decrypted checkpoint as an MXNet 1.9.1 Module checkpoint:
    /// PREFIX-symbol.json (the symbol the run trained, given with --symbol),
    /// PREFIX-EPOCH.params (arg:/aux: keys) and PREFIX-EPOCH.states (the optimizer's
    /// state as Module.save_optimizer_states pickles it). MXNet resumes with
    /// mx.mod.Module.load(PREFIX, EPOCH, load_optimizer_states=True). The files are
    /// written in clear: they leave ward's protection. Existing files are never replaced.
    ///
    /// Example:
    ///   ward checkpoint export-mxnet runs/lenet/checkpoints/step-000000000120 \
    ///       --trust trainer.pub --identity key.txt --symbol lenet-symbol.json --out mx/lenet
    #[command(verbatim_doc_comment)]
    ExportMxnet(ExportMxnetArgs),
}

#[derive(Args)]
pub struct ExportMxnetArgs {
    #[command(flatten)]
    open: OpenArgs,
    /// The MXNet symbol the run trained (its variables' order is the state's keys).
    #[arg(long, value_name = "FILE")]
    symbol: PathBuf,
    /// The files' prefix.
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
    /// The epoch number in the file names (default: the checkpoint's epoch).
    #[arg(long)]
    epoch: Option<u32>,
}

#[derive(Args)]
pub struct ListArgs {
    /// The run's directory (or its checkpoints/ directory).
    run: PathBuf,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The checkpoint's directory.
    checkpoint: PathBuf,
    /// Trust policy: a PEM public key or a TOML policy.
    #[arg(long, value_name = "TRUST")]
    trust: PathBuf,
}

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    open: OpenArgs,
}

/// A checkpoint to verify and decrypt.
#[derive(Args)]
pub struct OpenArgs {
    /// The checkpoint's directory.
    checkpoint: PathBuf,
    /// Trust policy: a PEM public key or a TOML policy.
    #[arg(long, value_name = "TRUST")]
    trust: PathBuf,
    /// An age identity file (AGE-SECRET-KEY-1…).
    #[arg(long, value_name = "FILE", required_unless_present = "passphrase_file")]
    identity: Vec<PathBuf>,
    /// The passphrase file the checkpoint was encrypted with.
    #[arg(long, value_name = "FILE", conflicts_with = "identity")]
    passphrase_file: Option<PathBuf>,
}

pub fn run(command: CheckpointCommand) -> Result<()> {
    match command {
        CheckpointCommand::List(a) => list(&a.run),
        CheckpointCommand::Verify(a) => verify(&a),
        CheckpointCommand::Inspect(a) => inspect(&a),
        CheckpointCommand::ExportMxnet(a) => export_mxnet(&a),
    }
}

fn list(run: &Path) -> Result<()> {
    let dir = checkpoints_dir(run);
    let found = list_checkpoints(&dir)?;
    if found.is_empty() {
        bail!("{} holds no checkpoint", dir.display());
    }
    println!(
        "{:<18} {:>9} {:>6} {:>6} {:>10} {:>7} {:>12}  metrics",
        "checkpoint", "step", "epoch", "batch", "created", "enc", "state bytes"
    );
    for (_, path) in found {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match read_index_unverified(&path) {
            Ok(i) => println!(
                "{name:<18} {:>9} {:>6} {:>6} {:>10} {:>7} {:>12}  {}",
                i.position.step,
                i.position.epoch,
                i.position.batch,
                i.created,
                i.encryption.name(),
                i.state_bytes,
                metrics(&i)
            ),
            Err(e) => println!("{name:<18} unreadable: {e}"),
        }
    }
    Ok(())
}

fn metrics(index: &CheckpointIndex) -> String {
    let parts: Vec<String> = index
        .metrics
        .iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect();
    parts.join(" ")
}

fn describe(index: &CheckpointIndex, verification: &Verification) {
    if let Verification::Signed(v) = verification {
        println!("signed by: {}", v.signers().join(", "));
        for w in v.warnings() {
            println!("warning: {w}");
        }
    }
    println!("model: {}", index.model);
    println!("run: {}", index.run);
    println!("spec sha256: {}", index.spec_sha256);
    println!(
        "position: step {}, epoch {}, batch {}",
        index.position.step, index.position.epoch, index.position.batch
    );
    println!("created: {} (seconds since the Unix epoch)", index.created);
    match index.recipients.as_slice() {
        [] => println!("encryption: {}", index.encryption.name()),
        r => println!(
            "encryption: {} to {}",
            index.encryption.name(),
            r.join(", ")
        ),
    }
    println!("state.age: {} bytes", index.state_bytes);
    if !index.metrics.is_empty() {
        println!("metrics: {}", metrics(index));
    }
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let trust = ward_package::Trust::Policy(ward_package::TrustPolicy::load(&args.trust)?);
    let accepted = verify_checkpoint(&args.checkpoint, &trust)?;
    println!("{}: verified", args.checkpoint.display());
    describe(&accepted.index, &accepted.verification);
    Ok(())
}

impl OpenArgs {
    /// The checkpoint, verified under the trust policy, then decrypted and parsed.
    fn open(&self) -> Result<OpenedCheckpoint> {
        let unsealing = match &self.passphrase_file {
            Some(path) => Unsealing::passphrase_file(path)?,
            None => {
                let files: Vec<&Path> = self.identity.iter().map(PathBuf::as_path).collect();
                Unsealing::identity_files(&files)?
            }
        };
        let trust = ward_package::Trust::Policy(ward_package::TrustPolicy::load(&self.trust)?);
        Ok(open_checkpoint(&self.checkpoint, &trust, &unsealing)?)
    }
}

fn export_mxnet(args: &ExportMxnetArgs) -> Result<()> {
    let opened = args.open.open()?;
    let symbol_bytes = ward_core::files::read_bounded(&args.symbol, 64 << 20)
        .with_context(|| format!("cannot read {}", args.symbol.display()))?;
    let files = module_files(&opened.state, symbol_bytes)
        .with_context(|| format!("{}", args.symbol.display()))?;
    let epoch = args
        .epoch
        .unwrap_or_else(|| u32::try_from(opened.index.position.epoch).unwrap_or(u32::MAX));
    for (path, bytes) in write_module_files(&files, &args.out, epoch)? {
        println!("wrote {} ({bytes} bytes)", path.display());
    }
    println!(
        "MXNet: mx.mod.Module.load({:?}, {epoch}, load_optimizer_states=True), then \
         init_optimizer with the run's optimizer; these files are not encrypted",
        args.out.display().to_string()
    );
    Ok(())
}

fn inspect(args: &InspectArgs) -> Result<()> {
    let opened = args.open.open()?;
    println!("{}: verified and decrypted", opened.dir.display());
    describe(&opened.index, &opened.verification);
    let info = &opened.state.info;
    let opt = &info.optimizer;
    println!("optimizer: {} (num_update {})", opt.name, opt.num_update);
    let progress = &info.progress;
    println!(
        "epoch so far: {} examples, loss sum {}",
        progress.epoch.examples, progress.epoch.loss_sum.0
    );
    println!("parameters: {}", opened.state.params.len());
    for p in &opened.state.params {
        let state: Vec<&str> = p.tensors.iter().map(|(n, _)| n.as_str()).collect();
        println!(
            "  {} {:?} updates {}{}",
            p.name,
            p.shape,
            p.update_count,
            if state.is_empty() {
                String::new()
            } else {
                format!(" state {}", state.join(", "))
            }
        );
    }
    Ok(())
}
