//! Connections: mutual TLS 1.3 on every one, the peer's member read from its verified
//! certificate before a single byte of gRPC is read, limits on what an unauthenticated
//! peer can hold (a handshake deadline, connection caps overall and per address), and
//! the client side that dials a member and checks it is the member it meant to reach.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};
use ward_net::connections::{AddressSlot, AddressSlots};

use crate::audit::Audit;
use crate::identity::{Member, Role};

/// The largest HTTP/2 frame either side accepts: a message of tensors crosses in few
/// frames, so in few TLS records.
pub const MAX_FRAME: u32 = 1 << 20;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A TLS handshake that takes longer is dropped (a slowloris holds nothing longer).
    pub handshake: Duration,
    /// Connections open at once, authenticated or not.
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_per_address: usize,
    /// Streams one connection may have open: the requests of one peer in flight.
    pub max_streams: u32,
    /// HTTP/2 flow-control window, per stream and per connection: what a peer can make
    /// this process buffer before it reads.
    pub window: u32,
    /// An idle connection is pinged this often, and closed when a ping goes unanswered.
    pub keepalive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake: Duration::from_secs(5),
            max_connections: 256,
            max_per_address: 64,
            max_streams: 8,
            window: 8 << 20,
            keepalive: Duration::from_secs(10),
        }
    }
}

/// An authenticated peer: what every RPC handler finds in its request's extensions.
#[derive(Debug, Clone)]
pub struct Peer {
    pub member: Member,
    pub address: SocketAddr,
}

/// A connection whose handshake completed with a certificate naming a member of this job
/// whose role may connect here.
pub struct PeerStream {
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    peer: Peer,
    _address_slot: AddressSlot,
    _slot: OwnedSemaphorePermit,
}

impl Connected for PeerStream {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}

/// Which roles may connect to a listener at all (each RPC then checks its own).
pub type Admit = fn(&Role) -> bool;

/// The authenticated connections of `listener`: each accepted connection takes a slot
/// (overall and for its address) or is closed at once, completes its TLS handshake within
/// `limits.handshake`, and must present a certificate of `me`'s cluster and job whose
/// role `admit` allows. Everything refused is an audit event.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    me: Member,
    admit: Admit,
    limits: Limits,
    audit: Audit,
) -> ReceiverStream<Result<PeerStream, io::Error>> {
    let (tx, rx) = mpsc::channel(16);
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = AddressSlots::new(limits.max_per_address);
    tokio::spawn(async move {
        loop {
            let (tcp, address) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                audit.refused_connection(address, "the listener's connection cap is reached");
                continue;
            };
            let Some(address_slot) = per_address.take(address.ip()) else {
                audit.refused_connection(address, "this address's connection cap is reached");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, me, audit, tx) =
                (acceptor.clone(), me.clone(), audit.clone(), tx.clone());
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                    Err(_) => {
                        audit.refused_connection(address, "TLS handshake not finished in time");
                        return;
                    }
                    Ok(Err(e)) => {
                        audit.refused_connection(address, &format!("TLS handshake: {e}"));
                        return;
                    }
                    Ok(Ok(tls)) => tls,
                };
                let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                let member = match leaf.map(Member::of_certificate) {
                    None => {
                        audit.refused_connection(address, "no client certificate");
                        return;
                    }
                    Some(Err(e)) => {
                        audit.refused_connection(address, &e.to_string());
                        return;
                    }
                    Some(Ok(m)) => m,
                };
                if !member.same_job(&me) {
                    audit.refused_connection(
                        address,
                        &format!("{member} is not a member of job {}/{}", me.cluster, me.job),
                    );
                    return;
                }
                if !admit(&member.role) {
                    audit.refused_connection(
                        address,
                        &format!("{} may not connect to {}", member.role, me.role),
                    );
                    return;
                }
                audit.connected(address, &member);
                let stream = PeerStream {
                    tls,
                    peer: Peer { member, address },
                    _address_slot: address_slot,
                    _slot: slot,
                };
                let _ = tx.send(Ok(stream)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A tonic server with `limits`' HTTP/2 settings.
pub fn server(limits: &Limits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams)
        .initial_stream_window_size(limits.window)
        .initial_connection_window_size(limits.window)
        .max_frame_size(MAX_FRAME)
        .http2_keepalive_interval(Some(limits.keepalive))
        .http2_keepalive_timeout(Some(limits.keepalive))
        .http2_max_header_list_size(16 * 1024)
        .accept_http1(false)
}

/// Why a member could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{address}: not HOST:PORT")]
    Address { address: String },
    #[error("{address} ({expected}): {source}")]
    Transport {
        address: String,
        expected: String,
        source: tonic::transport::Error,
    },
}

/// A channel to the member `expected` at `address` (`host:port`): TLS 1.3 with this
/// member's certificate, the server's certificate checked against the cluster CA and
/// `host`, and its identity against `expected` (a worker's certificate at a server's
/// address is refused).
pub async fn connect(
    address: &str,
    expected: Member,
    tls: Arc<ClientConfig>,
    limits: &Limits,
) -> Result<Channel, ConnectError> {
    let (host, _) = address
        .rsplit_once(':')
        .ok_or_else(|| ConnectError::Address {
            address: address.into(),
        })?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = ServerName::try_from(host).map_err(|_| ConnectError::Address {
        address: address.into(),
    })?;
    let endpoint = Endpoint::from_shared(format!("https://{address}")).map_err(|source| {
        ConnectError::Transport {
            address: address.into(),
            expected: expected.to_string(),
            source,
        }
    })?;
    let endpoint = endpoint
        .initial_stream_window_size(limits.window)
        .initial_connection_window_size(limits.window)
        // Large frames: a 16 KiB frame's header would go out as a TLS record of its own.
        .max_frame_size(MAX_FRAME)
        .http2_keep_alive_interval(limits.keepalive)
        .keep_alive_timeout(limits.keepalive)
        .keep_alive_while_idle(true);
    let connector = TlsConnector::from(tls);
    let target = address.to_string();
    let handshake = limits.handshake;
    let want = expected.clone();
    let dial = tower::service_fn(move |_uri| {
        let (connector, name, target, want) = (
            connector.clone(),
            name.clone(),
            target.clone(),
            want.clone(),
        );
        async move {
            let work = async {
                let tcp = TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(name, tcp).await?;
                let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                match leaf.map(Member::of_certificate) {
                    Some(Ok(m)) if m == want => Ok(TokioIo::new(tls)),
                    Some(Ok(m)) => Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("{target} is {m}, not {want}"),
                    )),
                    Some(Err(e)) => Err(io::Error::new(io::ErrorKind::PermissionDenied, e)),
                    None => Err(io::Error::other("no server certificate")),
                }
            };
            tokio::time::timeout(handshake, work)
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    ))
                })
        }
    });
    endpoint
        .connect_with_connector(dial)
        .await
        .map_err(|source| ConnectError::Transport {
            address: address.into(),
            expected: expected.to_string(),
            source,
        })
}

/// The authenticated caller of a request, if its role is one of `allowed`; otherwise a
/// `PERMISSION_DENIED` status, and an audit event.
pub fn caller<T>(
    request: &tonic::Request<T>,
    rpc: &str,
    allowed: fn(&Role) -> bool,
    audit: &Audit,
) -> Result<Member, tonic::Status> {
    let Some(peer) = request.extensions().get::<Peer>() else {
        return Err(tonic::Status::unauthenticated("no authenticated peer"));
    };
    if allowed(&peer.member.role) {
        Ok(peer.member.clone())
    } else {
        let reason = format!("{} may not call {rpc}", peer.member.role);
        audit.refused_rpc(&peer.member, rpc, &reason);
        Err(tonic::Status::permission_denied(reason))
    }
}
