//! `ward`: the command-line front end. Flags, wiring and messages only; the work is done
//! by the library crates.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;
use ward_core::{AuditFlush, AuditLayer, BackgroundWriter};
use ward_package::PackageError;
use ward_train::checkpoint::CheckpointError;

mod cmd;

/// Large blocks (weights, packed weights, activations) on huge pages: a tenth as many page
/// faults while a model loads (see `ward_alloc`).
#[global_allocator]
static ALLOC: ward_alloc::HugePageAlloc = ward_alloc::HugePageAlloc;

#[derive(Parser)]
#[command(
    name = "ward",
    version,
    about = "A memory-safe, secure-by-default runtime for MXNet models"
)]
struct Cli {
    /// Append audit events (JSON lines: package verified or refused, ...) to this file
    /// instead of standard error.
    #[arg(long, global = true, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a model from another framework into a ward package.
    #[command(subcommand)]
    Import(cmd::import::ImportCommand),
    // Help for the variants below comes from their argument structs' doc comments (with
    // examples): a doc comment on the variant would replace it.
    Predict(cmd::predict::PredictArgs),
    Inspect(cmd::inspect::InspectArgs),
    /// Export a package to another format.
    #[command(subcommand)]
    Export(cmd::export::ExportCommand),
    Keygen(cmd::keygen::KeygenArgs),
    Sign(cmd::sign::SignArgs),
    Verify(cmd::verify::VerifyArgs),
    Serve(cmd::serve::ServeArgs),
    Train(cmd::train::TrainArgs),
    /// List, verify and inspect a run's checkpoints.
    #[command(subcommand)]
    Checkpoint(cmd::checkpoint::CheckpointCommand),
    /// Distributed training over mutual TLS: init, run --local, coordinator, server, worker.
    #[command(subcommand)]
    Cluster(cmd::cluster::ClusterCommand),
    Eval(cmd::eval::EvalArgs),
    Plot(cmd::plot::PlotArgs),
    Token(cmd::token::TokenArgs),
    TlsCert(cmd::tls_cert::TlsCertArgs),
    Version(cmd::version::VersionArgs),
    Doctor(cmd::doctor::DoctorArgs),
}

/// Routes audit events to `path` (appended, created mode 0600) or to standard error.
fn install_audit_log(path: Option<&Path>, background: bool) -> anyhow::Result<Option<AuditFlush>> {
    let writer: Box<dyn Write + Send> = match path {
        Some(path) => {
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options
                .open(path)
                .map_err(|e| anyhow::anyhow!("audit log {}: {e}", path.display()))?;
            Box::new(file)
        }
        None => Box::new(std::io::stderr()),
    };
    // The debug log: everything but audit events, to stderr, at INFO (WARD_LOG=debug for
    // more, WARD_LOG=warn for less).
    let level = match std::env::var("WARD_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    let debug_log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
            meta.target() != ward_core::AUDIT_TARGET
                && *meta.level() <= level
                && meta.target().starts_with("ward")
        }));
    // A server audits every request: its lines go through a writer thread, so a request
    // costs a channel send, not a write system call. Commands keep the simple writer, so
    // their audit lines stay in order with their messages on stderr.
    let (writer, flush): (Box<dyn Write + Send>, Option<AuditFlush>) = if background {
        let (writer, flush) = BackgroundWriter::spawn(writer)
            .map_err(|e| anyhow::anyhow!("cannot start the audit writer: {e}"))?;
        (Box::new(writer), Some(flush))
    } else {
        (writer, None)
    };
    let subscriber = tracing_subscriber::registry()
        .with(AuditLayer::new(writer))
        .with(debug_log);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| anyhow::anyhow!("cannot install the audit log: {e}"))?;
    Ok(flush)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    let flush = match install_audit_log(cli.audit_log.as_deref(), serving) {
        Ok(flush) => flush,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if serving && !ward_alloc::keep_freed_blocks() {
        tracing::debug!("the system allocator keeps its own thresholds for freed blocks");
    }
    let result = match cli.command {
        Command::Import(c) => cmd::import::run(c),
        Command::Predict(a) => cmd::predict::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Export(c) => cmd::export::run(c),
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Sign(a) => cmd::sign::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Checkpoint(c) => cmd::checkpoint::run(c),
        Command::Cluster(c) => cmd::cluster::run(c),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Plot(a) => cmd::plot::run(a),
        Command::Token(a) => cmd::token::run(a),
        Command::TlsCert(a) => cmd::tls_cert::run(a),
        Command::Version(a) => cmd::version::run(a),
        Command::Doctor(a) => cmd::doctor::run(a),
    };
    if let Some(flush) = flush {
        flush.flush();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A verification refusal, whatever its reason: one line per problem, exit 3
            // (its audit event says `package.refused`).
            let checkpoint = e.downcast_ref::<CheckpointError>();
            let refusal = e
                .downcast_ref::<PackageError>()
                .or_else(|| match e.downcast_ref::<ward_exec::ExecError>() {
                    Some(ward_exec::ExecError::Package(p)) => Some(p),
                    _ => None,
                })
                .or(match checkpoint {
                    Some(CheckpointError::Package(p)) => Some(p),
                    _ => None,
                });
            match refusal {
                Some(PackageError::Refused { package, problems }) => {
                    eprintln!("error: {} refused:", package.display());
                    for p in problems {
                        eprintln!("refused: {}", one_line(&p.to_string()));
                    }
                    return ExitCode::from(3);
                }
                Some(PackageError::Rejected {
                    package, source, ..
                }) => {
                    eprintln!("error: {} refused:", package.display());
                    eprintln!("refused: {}", one_line(&source.to_string()));
                    return ExitCode::from(3);
                }
                _ => {}
            }
            // A checkpoint that decrypts to the wrong thing, or not at all, is refused too.
            if let Some(c) = checkpoint.filter(|c| c.is_refusal()) {
                eprintln!("error: checkpoint refused:");
                eprintln!("refused: {}", one_line(&c.to_string()));
                return ExitCode::from(3);
            }
            // One line, no backtrace: the chain of contexts joined by ": ".
            eprintln!("error: {}", chain_line(&e));
            ExitCode::from(1)
        }
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// The error and its causes on one line, joined by ": ", each cause left out where the
/// text before it already ends with it: an error that prints its source in its own
/// message (thiserror's `"import: {0}"` on a `#[from]` field) would otherwise print the
/// same sentence twice.
fn chain_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    one_line(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that prints its source in its own message, as thiserror's `"import: {0}"`
    /// on a `#[from]` field does.
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "import: {}", self.0)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_the_message_already_ends_with_is_printed_once() {
        let inner = std::io::Error::other("input \"data1\": is not declared");
        let e = anyhow::Error::from(Outer(inner)).context("importing model-symbol.json");
        assert_eq!(
            chain_line(&e),
            "importing model-symbol.json: import: input \"data1\": is not declared"
        );
        // Causes the message does not repeat are all kept, in order.
        let e = anyhow::anyhow!("first\nline").context("outer");
        assert_eq!(chain_line(&e), "outer: first line");
    }
}
