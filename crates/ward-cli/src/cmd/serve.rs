use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ward_serve::{ServeConfig, Server};

/// Serve the packages of a model repository over the Open Inference Protocol v2 (the
/// KServe v2 / Triton HTTP API), with TLS and bearer tokens.
///
/// REPO/<model>/<version>/ holds signed ward packages; each is verified against TRUST
/// before it is served. Flags override the configuration file. Prints
/// `listening on https://ADDR` once ready; SIGINT or SIGTERM stops it after the requests
/// in flight finish.
///
/// Example:
///   ward serve --models repo --trust release.pub --tls-cert tls/server.pem \
///     --tls-key tls/server.key --tokens tokens.toml
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// The model repository: REPO/<model>/<version>/ holds ward packages.
    #[arg(long, value_name = "REPO")]
    models: Option<PathBuf>,
    /// Trust policy: a PEM public key or a TOML policy. Unsigned packages are never served.
    #[arg(long, value_name = "TRUST")]
    trust: Option<PathBuf>,
    /// Configuration file (TOML: limits, output policy, rate limits, batching).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443]; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// PEM certificate chain of the server.
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the server (mode 0600).
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA (mutual TLS).
    #[arg(long, value_name = "PEM")]
    client_ca: Option<PathBuf>,
    /// Tokens file (hashed bearer tokens; see `ward token`).
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Rescan the repository every SECONDS: new versions are verified before they serve.
    #[arg(long, value_name = "SECONDS")]
    poll: Option<u64>,
    /// Serve plaintext HTTP (loopback addresses only).
    #[arg(long)]
    insecure_plaintext: bool,
    /// Run even as root.
    #[arg(long)]
    allow_root: bool,
}

impl ServeArgs {
    fn config(self) -> Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::load(path)?,
            None => ServeConfig::default(),
        };
        let set = |slot: &mut Option<PathBuf>, value: Option<PathBuf>| {
            if value.is_some() {
                *slot = value;
            }
        };
        set(&mut config.models, self.models);
        set(&mut config.trust, self.trust);
        set(&mut config.tokens, self.tokens);
        set(&mut config.tls.cert, self.tls_cert);
        set(&mut config.tls.key, self.tls_key);
        set(&mut config.tls.client_ca, self.client_ca);
        if self.listen.is_some() {
            config.listen = self.listen;
        }
        if let Some(poll) = self.poll {
            config.poll_seconds = poll;
        }
        config.insecure_plaintext |= self.insecure_plaintext;
        config.allow_root |= self.allow_root;
        if config.insecure_plaintext {
            eprintln!("WARNING: --insecure-plaintext: requests, tokens and results cross the connection unencrypted");
        }
        if config.allow_root {
            eprintln!("WARNING: --allow-root: a compromise of the server would be a compromise of the machine");
        }
        Ok(config)
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.limits.io_threads())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        println!("listening on {}", server.url());
        std::io::stdout().flush().ok();
        server.run(shutdown_signal()).await?;
        eprintln!("ward serve: stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
