//! Every limit the server applies to a request, with its default. All are checked before
//! the memory they bound is allocated; each can be lowered (or raised) in `[limits]` of the
//! configuration file.

use std::time::Duration;

use serde::Deserialize;

/// Largest request body on the wire (after TLS, before decompression): 64 MiB.
pub const MAX_BODY_BYTES: u64 = 64 << 20;
/// Largest body after gzip/deflate decompression: 64 MiB.
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 << 20;
/// Largest decompression ratio; a gzip bomb reaches it long before any large allocation.
pub const MAX_COMPRESSION_RATIO: u64 = 50;
/// Largest JSON part of an inference request: 16 MiB (binary tensors do not count).
pub const MAX_JSON_BYTES: u64 = 16 << 20;
/// Deepest nesting of JSON arrays and objects (a rank-8 tensor nested as arrays needs 12).
pub const MAX_JSON_DEPTH: usize = 32;
/// Most inputs, requested outputs and parameters in one request.
pub const MAX_INPUTS: usize = 64;
pub const MAX_OUTPUTS: usize = 64;
pub const MAX_PARAMETERS: usize = 64;
/// Highest rank of a request tensor.
pub const MAX_RANK: usize = 8;
/// Most elements of one request tensor: 16 Mi (64 MiB of float32).
pub const MAX_ELEMENTS: u64 = 16 << 20;
/// Time a client has to send its request headers (slowloris).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send its whole body once the headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection stays open with no request in progress. HTTP/1.1 connections are
/// closed sooner, by the header timeout, once a response is sent; this bounds HTTP/2
/// connections, which hyper keeps open while the client answers pings.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most open connections; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most open connections from one client address, so that one client (idle HTTP/2
/// connections cost it nothing) cannot hold every connection of the server.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// Most bytes of request bodies (as they arrive, then decompressed) held at once across
/// all requests: 1 GiB. The per-request limits bound one request; this bounds their sum,
/// so many large requests at once get 503 instead of the memory.
pub const MAX_REQUEST_MEMORY_BYTES: u64 = 1 << 30;
/// Requests waiting for a model beyond those running; more get 503 at once.
pub const MAX_QUEUE: usize = 64;
/// Longest a request waits in a model's queue before it gets 503.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits in force, from `[limits]` in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub max_decompressed_bytes: u64,
    pub max_compression_ratio: u64,
    pub max_json_bytes: u64,
    pub max_json_depth: usize,
    pub max_inputs: usize,
    pub max_outputs: usize,
    pub max_parameters: usize,
    pub max_rank: usize,
    pub max_elements: u64,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub handshake_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_request_memory_bytes: u64,
    /// Requests one model runs at once; 0 means one per CPU core.
    pub max_concurrency: usize,
    pub max_queue: usize,
    pub queue_timeout_ms: u64,
    /// Threads for connections, TLS and protocol work; 0 means half the CPU cores (at least
    /// one). Models run on threads of their own (`max_concurrency`), so the two do not
    /// compete for the same cores.
    pub io_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: MAX_BODY_BYTES,
            max_decompressed_bytes: MAX_DECOMPRESSED_BYTES,
            max_compression_ratio: MAX_COMPRESSION_RATIO,
            max_json_bytes: MAX_JSON_BYTES,
            max_json_depth: MAX_JSON_DEPTH,
            max_inputs: MAX_INPUTS,
            max_outputs: MAX_OUTPUTS,
            max_parameters: MAX_PARAMETERS,
            max_rank: MAX_RANK,
            max_elements: MAX_ELEMENTS,
            header_timeout_ms: HEADER_TIMEOUT.as_millis() as u64,
            body_timeout_ms: BODY_TIMEOUT.as_millis() as u64,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT.as_millis() as u64,
            idle_timeout_ms: IDLE_TIMEOUT.as_millis() as u64,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_address: MAX_CONNECTIONS_PER_ADDRESS,
            max_request_memory_bytes: MAX_REQUEST_MEMORY_BYTES,
            max_concurrency: 0,
            max_queue: MAX_QUEUE,
            queue_timeout_ms: QUEUE_TIMEOUT.as_millis() as u64,
            io_threads: 0,
        }
    }
}

impl Limits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    /// Threads for the async runtime.
    pub fn io_threads(&self) -> usize {
        if self.io_threads > 0 {
            self.io_threads
        } else {
            (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1)
        }
    }

    /// Requests one model runs at once.
    pub fn concurrency(&self) -> usize {
        if self.max_concurrency > 0 {
            self.max_concurrency
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}
