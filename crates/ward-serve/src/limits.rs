//! Every limit the server applies to a request, with its default. All are checked before
//! the memory they bound is allocated; each can be lowered (or raised) in `[limits]` of the
//! configuration file.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

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
/// Slowest a body may arrive, after [`BODY_RATE_GRACE`]: 64 KiB/s (half a megabit). A body
/// must have sent `rate × (elapsed − grace)` bytes at every moment, or it is cut with 408;
/// so a client that stops sending (holding its connection and the memory of what it sent)
/// is cut after the grace plus the time its bytes bought it, not only at [`BODY_TIMEOUT`].
/// Clients of an inference API send from machines, not modems: this is far below any of
/// them, and the body timeout still bounds the whole body.
pub const MIN_BODY_BYTES_PER_SECOND: u64 = 64 << 10;
/// Time a body has before [`MIN_BODY_BYTES_PER_SECOND`] applies (a slow start, a first
/// round trip).
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);
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
/// Threads per CPU core that `max_concurrency` (each model starts that many threads) and
/// `io_threads` may ask for; more only make the threads wait for each other, and a huge
/// value would start thousands of threads.
pub const MAX_THREADS_PER_CORE: usize = 4;
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
    /// Most of `max_request_memory_bytes` the requests of one principal may hold at once;
    /// 0 (the default) means a quarter of it, but never less than one request of the
    /// largest size needs (`max_body_bytes` + `max_decompressed_bytes`): 256 MiB of the
    /// default 1 GiB, four plain bodies of the largest size, or a compressed one with its
    /// decompression room beside a plain one. So four clients at their share fit, and any
    /// client may still send the largest body. See [`Limits::request_memory_share`].
    pub max_request_memory_per_client_bytes: u64,
    /// See [`MIN_BODY_BYTES_PER_SECOND`]; 0 turns the rule off.
    pub min_body_bytes_per_second: u64,
    pub body_rate_grace_ms: u64,
    /// Requests one model runs at once; 0 means one per CPU core. At most
    /// [`MAX_THREADS_PER_CORE`] per core.
    #[serde(deserialize_with = "de_max_concurrency")]
    pub max_concurrency: usize,
    pub max_queue: usize,
    pub queue_timeout_ms: u64,
    /// Threads for connections, TLS and protocol work; 0 means half the CPU cores (at least
    /// one). Models run on threads of their own (`max_concurrency`), so the two do not
    /// compete for the same cores. At most [`MAX_THREADS_PER_CORE`] per core.
    #[serde(deserialize_with = "de_io_threads")]
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
            max_request_memory_per_client_bytes: 0,
            min_body_bytes_per_second: MIN_BODY_BYTES_PER_SECOND,
            body_rate_grace_ms: BODY_RATE_GRACE.as_millis() as u64,
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
    pub fn body_rate_grace(&self) -> Duration {
        Duration::from_millis(self.body_rate_grace_ms)
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
            cores()
        }
    }

    /// The most request memory one principal may hold: `max_request_memory_per_client_bytes`,
    /// or when it is 0, a quarter of the budget but at least what one request of the
    /// largest size holds (its body, the room for its decompression and one byte); never
    /// more than the budget.
    pub fn request_memory_share(&self) -> u64 {
        let share = if self.max_request_memory_per_client_bytes > 0 {
            self.max_request_memory_per_client_bytes
        } else {
            let largest = self
                .max_body_bytes
                .saturating_add(self.max_decompressed_bytes)
                .saturating_add(1);
            (self.max_request_memory_bytes / 4).max(largest)
        };
        share.min(self.max_request_memory_bytes)
    }

    /// Refuses thread counts past [`MAX_THREADS_PER_CORE`] per core, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        check_threads("max_concurrency", self.max_concurrency)?;
        check_threads("io_threads", self.io_threads)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most threads `max_concurrency` and `io_threads` may ask for on this machine.
pub fn max_threads() -> usize {
    cores().saturating_mul(MAX_THREADS_PER_CORE)
}

/// `key = value` as a thread count: 0 (automatic) or at most [`max_threads`].
pub fn check_threads(key: &str, value: usize) -> Result<(), String> {
    let max = max_threads();
    if value > max {
        return Err(format!(
            "{key} = {value} is over {max} ({MAX_THREADS_PER_CORE} per CPU core on this machine's {})",
            cores()
        ));
    }
    Ok(())
}

fn threads<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<usize, D::Error> {
    let value = usize::deserialize(d)?;
    check_threads(key, value).map_err(serde::de::Error::custom)?;
    Ok(value)
}

fn de_max_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    threads(d, "max_concurrency")
}

fn de_io_threads<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    threads(d, "io_threads")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_share_fits_the_largest_request_and_four_clients() {
        let limits = Limits::default();
        let share = limits.request_memory_share();
        assert_eq!(share, MAX_REQUEST_MEMORY_BYTES / 4);
        assert!(share > MAX_BODY_BYTES + MAX_DECOMPRESSED_BYTES);
        // A small budget still lets one client send the largest request...
        let small = Limits {
            max_request_memory_bytes: 200 << 20,
            ..Limits::default()
        };
        assert_eq!(
            small.request_memory_share(),
            MAX_BODY_BYTES + MAX_DECOMPRESSED_BYTES + 1
        );
        // ...unless the budget itself is smaller; a set share is taken as it is.
        let tiny = Limits {
            max_request_memory_bytes: 1 << 20,
            ..Limits::default()
        };
        assert_eq!(tiny.request_memory_share(), 1 << 20);
        let set = Limits {
            max_request_memory_per_client_bytes: 5000,
            ..Limits::default()
        };
        assert_eq!(set.request_memory_share(), 5000);
    }

    #[test]
    fn thread_counts_past_four_per_core_are_refused_naming_the_key() {
        let max = max_threads();
        for key in ["max_concurrency", "io_threads"] {
            let ok: Result<Limits, _> = toml::from_str(&format!("{key} = {max}"));
            assert!(ok.is_ok(), "{key} = {max}: {ok:?}");
            let err = toml::from_str::<Limits>(&format!("{key} = {}", max + 1))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{key} = {}", max + 1)), "{err}");
            assert!(err.contains("per CPU core"), "{err}");
            let err = toml::from_str::<Limits>(&format!("{key} = 100000"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
        let mut limits = Limits::default();
        assert!(limits.validate().is_ok());
        limits.io_threads = max + 1;
        assert!(limits.validate().unwrap_err().contains("io_threads"));
    }
}
