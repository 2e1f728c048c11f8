//! One client connection's life after TLS: served by hyper (HTTP/1.1 or HTTP/2), each
//! request tagged with the connection's verified client certificate (mutual TLS), closed
//! gracefully when the server shuts down or when the connection has had no request in
//! progress for the idle timeout.
//!
//! hyper bounds an idle HTTP/1.1 connection by its header timeout, but an HTTP/2
//! connection with no open stream stays open for as long as the client answers pings, so a
//! client could hold connections it never uses (DESIGN T9: idle timeouts). The timeout
//! here counts requests, not bytes, so it is the same for both protocols and a long
//! request (a slow upload still within the body timeout) is never cut by it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use ward_net::ClientCertificate;

/// A byte stream a connection is served over: TLS, or plaintext on loopback.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Requests in progress on one connection, and since when it has had none.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
}

#[derive(Debug)]
struct ActivityState {
    in_progress: usize,
    idle_since: Instant,
}

/// Held while one request is in progress.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_progress -= 1;
        if state.in_progress == 0 {
            state.idle_since = Instant::now();
        }
    }
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(ActivityState {
                in_progress: 0,
                idle_since: Instant::now(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.lock().in_progress += 1;
        Busy(self.clone())
    }

    /// Completes once the connection has had no request in progress for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let wake = {
                let state = self.lock();
                let now = Instant::now();
                if state.in_progress > 0 {
                    now + timeout
                } else if now >= state.idle_since + timeout {
                    return;
                } else {
                    state.idle_since + timeout
                }
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// `service` for one connection: each request counted in `activity` until its response is
/// produced, and given the connection's client certificate as an extension.
#[derive(Clone)]
struct ConnectionService<S> {
    service: S,
    activity: Arc<Activity>,
    certificate: Option<Arc<ClientCertificate>>,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnectionService<S>
where
    S: hyper::service::Service<Request<Incoming>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let busy = self.activity.begin();
        if let Some(certificate) = &self.certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        let response = self.service.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(busy);
            response
        })
    }
}

/// Serves one connection, whose client presented `certificate` (mutual TLS), until the
/// client closes it, it has been idle for `idle_timeout`, or `shutdown` turns true; the
/// last two close it gracefully (requests in progress finish; HTTP/2 clients get a GOAWAY).
pub(crate) async fn serve<S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: Box<dyn Io>,
    certificate: Option<ClientCertificate>,
    service: S,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = hyper::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Activity::new();
    let service = ConnectionService {
        service,
        activity: activity.clone(),
        certificate: certificate.map(Arc::new),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = shutdown.wait_for(|stop| *stop), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = activity.idle_for(idle_timeout), if !closing => {
                tracing::debug!("closing a connection idle for {idle_timeout:?}");
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let busy = activity.begin();
        // A request in progress is never idle, however long it takes.
        let waited = tokio::time::timeout(Duration::from_secs(60), activity.idle_for(timeout));
        assert!(waited.await.is_err());
        drop(busy);
        let ended = Instant::now();
        activity.idle_for(timeout).await;
        assert_eq!(Instant::now() - ended, timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_restarts_the_idle_clock() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        tokio::time::sleep(Duration::from_secs(8)).await;
        drop(activity.begin());
        let ended = Instant::now();
        activity.idle_for(timeout).await;
        assert_eq!(Instant::now() - ended, timeout);
    }
}
