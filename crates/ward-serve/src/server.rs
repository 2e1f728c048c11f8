//! Starting the server: the refusals (root, plaintext off loopback, no TLS, no tokens),
//! the first scan of the repository, the listener with its connection limit and timeouts,
//! repository polling, and graceful shutdown that lets requests in flight finish.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use ward_core::privilege::running_as_root;
use ward_net::connections::AddressSlots;
use ward_net::memory::MemoryBudget;
use ward_net::ratelimit::RateLimiter;
use ward_net::tls::{self, Identity};
use ward_net::tokens::Tokens;
use ward_net::ClientCertificate;
use ward_package::{Trust, TrustPolicy};

use crate::app::{router, App};
use crate::config::ServeConfig;
use crate::connection::{self, Io};
use crate::error::ServeError;
use crate::extraction::ExtractionMonitor;
use crate::limits::check_threads;
use crate::metrics::Metrics;
use crate::repo::Repository;
use crate::scopes;

/// Longest graceful shutdown: requests still running after it are cut off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The application protocols offered in the TLS handshake: HTTP/2 first, then HTTP/1.1.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    local_addr: SocketAddr,
}

fn required(value: &Option<PathBuf>, what: &str, flag: &str) -> Result<PathBuf, ServeError> {
    value
        .clone()
        .ok_or_else(|| ServeError::Refused(format!("no {what}: pass {flag}")))
}

/// Refuses thread counts past [`crate::limits::MAX_THREADS_PER_CORE`] per core: `[limits]`
/// (also refused when the file is parsed: the CLI starts its runtime with `io_threads`
/// before it binds) and each `[model.NAME]`, whose threads a scan would start.
fn check_thread_counts(config: &ServeConfig) -> Result<(), ServeError> {
    config
        .limits
        .validate()
        .map_err(|e| ServeError::Refused(format!("[limits] {e}")))?;
    for (name, model) in &config.model {
        if let Some(n) = model.max_concurrency {
            check_threads("max_concurrency", n)
                .map_err(|e| ServeError::Refused(format!("[model.{name}] {e}")))?;
        }
    }
    Ok(())
}

impl Server {
    /// Checks the configuration, loads the tokens, verifies and loads every model, and
    /// binds the listener. Nothing is served until [`Server::run`].
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        check_thread_counts(&config)?;
        if running_as_root() && !config.allow_root {
            return Err(ServeError::Refused(
                "running as root: ward serve needs no privileges; run it as an unprivileged user (or pass --allow-root)".into(),
            ));
        }
        let listen = config.listen();
        let tls = if config.insecure_plaintext {
            if !listen.ip().is_loopback() {
                return Err(ServeError::Refused(format!(
                    "--insecure-plaintext is allowed only on a loopback address, not {listen}"
                )));
            }
            tracing::warn!("serving PLAINTEXT HTTP on {listen}: tokens and data cross the connection unencrypted");
            None
        } else {
            let cert = required(
                &config.tls.cert,
                "TLS certificate",
                "--tls-cert (or --insecure-plaintext on loopback)",
            )?;
            let key = required(&config.tls.key, "TLS private key", "--tls-key")?;
            Some(TlsAcceptor::from(tls::server_config(
                Identity {
                    cert: &cert,
                    key: &key,
                },
                config.tls.client_ca.as_deref(),
                ALPN,
            )?))
        };
        let tokens_path = required(&config.tokens, "tokens file", "--tokens")?;
        let tokens = Tokens::load(&tokens_path, scopes::ALL)?;
        if let Some(entry) = tokens.first_certificate_entry() {
            if config.tls.client_ca.is_none() || config.insecure_plaintext {
                return Err(ServeError::Refused(format!(
                    "{}: token[{entry}] names a client certificate, which only mutual TLS can present: pass --client-ca",
                    tokens_path.display()
                )));
            }
        }
        if tokens.is_empty() && !config.auth.open_health {
            tracing::warn!(
                "{}: no tokens; every request will be refused",
                tokens_path.display()
            );
        }
        let trust_path = required(&config.trust, "trust policy", "--trust")?;
        let trust = Trust::Policy(
            TrustPolicy::load(&trust_path).map_err(|e| ServeError::Refused(e.to_string()))?,
        );
        let root = required(&config.models, "model repository", "--models")?;
        let config = Arc::new(config);
        let repo = Arc::new(Repository::new(root, trust, config.clone())?);
        let scan_repo = repo.clone();
        // Batchers spawn their tasks on this runtime, so the scan runs within it.
        let handle = tokio::runtime::Handle::current();
        let report = tokio::task::spawn_blocking(move || {
            let _guard = handle.enter();
            scan_repo.scan()
        })
        .await
        .map_err(|e| ServeError::Refused(format!("model repository scan failed: {e}")))?;
        tracing::info!(
            "model repository: {} served, {} refused",
            report.loaded.len(),
            report.refused.len()
        );
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Io {
                path: PathBuf::from(listen.to_string()),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Io {
            path: PathBuf::from(listen.to_string()),
            source,
        })?;
        let extraction = ExtractionMonitor::new(config.extraction.clone()).map_err(|e| {
            ServeError::Refused(format!("no randomness for the extraction monitor: {e}"))
        })?;
        if !extraction.enabled() {
            tracing::warn!(
                "[extraction] action = \"off\": queries are not watched for model extraction"
            );
        }
        let app = Arc::new(App {
            extraction,
            limiter: RateLimiter::new(config.rate),
            memory: MemoryBudget::new(
                config.limits.max_request_memory_bytes,
                config.limits.request_memory_share(),
            ),
            config,
            tokens,
            repo,
            metrics: Metrics::new(),
        });
        Ok(Server {
            app,
            listener,
            tls,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://ADDR` (or `http://` for plaintext on loopback).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    pub fn repository(&self) -> Arc<Repository> {
        self.app.repo.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight
    /// finish (up to [`SHUTDOWN_GRACE`]) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server {
            app, listener, tls, ..
        } = self;
        let limits = app.config.limits.clone();
        let service = router(app.clone());
        let poller = (app.config.poll_seconds > 0).then(|| {
            let repo = app.repo.clone();
            let period = Duration::from_secs(app.config.poll_seconds);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let repo = repo.clone();
                    let handle = tokio::runtime::Handle::current();
                    let _ = tokio::task::spawn_blocking(move || {
                        let _guard = handle.enter();
                        repo.scan()
                    })
                    .await;
                }
            })
        });

        let connections = Arc::new(Semaphore::new(limits.max_connections));
        let addresses = AddressSlots::new(limits.max_connections_per_address);
        let (stop_connections, stopping) = watch::channel(false);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout())
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(64)
            .max_header_list_size(64 * 1024)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10));
        let builder = Arc::new(builder);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                tracing::warn!(
                    "connection from {peer} closed: {} connections open",
                    limits.max_connections
                );
                drop(stream);
                continue;
            };
            let Some(slot) = addresses.take(peer.ip()) else {
                tracing::warn!(
                    "connection from {peer} closed: {} connections open from its address",
                    limits.max_connections_per_address
                );
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            let service = service.clone();
            let builder = builder.clone();
            let stopping = stopping.clone();
            let (handshake_timeout, idle_timeout) =
                (limits.handshake_timeout(), limits.idle_timeout());
            tokio::spawn(async move {
                let _permits = (permit, slot);
                let (io, certificate): (Box<dyn Io>, _) = match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok(s)) => {
                                let certificate = ClientCertificate::of(s.get_ref().1);
                                (Box::new(s), certificate)
                            }
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake with {peer} failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake with {peer} timed out");
                                return;
                            }
                        }
                    }
                    None => (Box::new(stream), None),
                };
                let service = TowerToHyperService::new(service);
                connection::serve(&builder, io, certificate, service, idle_timeout, stopping).await;
            });
        }
        drop(listener);
        if let Some(p) = poller {
            p.abort();
        }
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        tracing::info!(
            "shutting down: waiting for {} connections",
            limits.max_connections - connections.available_permits()
        );
        // Stopping is not a failure, so the receivers' being gone (no connection open) is fine.
        let _ = stop_connections.send(true);
        // Every connection holds one permit until it has closed.
        if tokio::time::timeout(SHUTDOWN_GRACE, connections.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown grace of {SHUTDOWN_GRACE:?} passed; closing the remaining connections"
            );
        }
        Ok(())
    }
}
