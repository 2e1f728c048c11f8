//! `ward`: the command-line front end. Flags, wiring and messages only; the work is done
//! by the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(
    name = "ward",
    version,
    about = "A memory-safe, secure-by-default runtime for MXNet models"
)]
struct Cli {
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
    Version(cmd::version::VersionArgs),
    Doctor(cmd::doctor::DoctorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Import(c) => cmd::import::run(c),
        Command::Predict(a) => cmd::predict::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Export(c) => cmd::export::run(c),
        Command::Version(a) => cmd::version::run(a),
        Command::Doctor(a) => cmd::doctor::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, no backtrace: the chain of contexts joined by ": ".
            let message = format!("{e:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
