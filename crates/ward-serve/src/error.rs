//! Errors: [`ServeError`] for starting the server, [`ApiError`] for one request. An
//! `ApiError` carries the HTTP status, the client-facing message (never an internal name
//! or path) and the stable reason code that goes to the audit log and the metrics.
//!
//! ward-net's errors carry no status: this is where they become HTTP answers.

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ward_net::NetError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// TLS files, the tokens file: what ward-net refused.
    #[error("refusing to start: {0}")]
    Net(#[from] NetError),
    #[error("refusing to start: {0}")]
    Refused(String),
    #[error("model repository {path}: {reason}")]
    Repository { path: PathBuf, reason: String },
}

/// A request that is refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub reason: &'static str,
    /// Seconds the client should wait, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            reason,
            retry_after: None,
        }
    }

    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, reason, message)
    }

    pub fn too_large(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, reason, message)
    }

    pub fn unauthenticated() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing or invalid bearer token",
        )
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", what)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

/// A refusal of ward-net's, as the HTTP answer: 429 for rate limits and budgets, 503 for
/// request memory, each with `Retry-After` and its stable reason. Errors of starting a
/// server never reach a request; should one, it is a 500 that names nothing internal.
impl From<NetError> for ApiError {
    fn from(e: NetError) -> ApiError {
        let retry_after = e.retry_after_seconds();
        let error = match &e {
            NetError::RateLimited { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", e.to_string())
            }
            NetError::BudgetSpent { .. } | NetError::BudgetShort { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "budget-exhausted",
                e.to_string(),
            ),
            NetError::MemorySpent { budget, .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request-memory",
                format!(
                    "requests in progress hold the server's request memory ({budget} bytes); retry later"
                ),
            ),
            NetError::MemoryShareSpent { share, .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request-memory-share",
                format!(
                    "this client's requests in progress hold its share of the server's request memory ({share} bytes); retry later"
                ),
            ),
            _ => {
                tracing::error!("a request met an error of the server's setup: {e}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        };
        match retry_after {
            Some(seconds) => error.retry_after(seconds),
            None => error,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut response = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_refusals_become_http_answers() {
        let answer = |e: NetError| {
            let a = ApiError::from(e);
            (a.status.as_u16(), a.reason, a.retry_after)
        };
        assert_eq!(
            answer(NetError::RateLimited {
                rate_per_second: 2.0,
                retry_after_seconds: 0
            }),
            (429, "rate-limited", Some(1))
        );
        assert_eq!(
            answer(NetError::BudgetSpent {
                budget: 3,
                retry_after_seconds: 500
            }),
            (429, "budget-exhausted", Some(500))
        );
        assert_eq!(
            answer(NetError::BudgetShort {
                queries: 2,
                left: 1,
                budget: 3,
                retry_after_seconds: 9
            }),
            (429, "budget-exhausted", Some(9))
        );
        assert_eq!(
            answer(NetError::MemorySpent {
                wanted: 1,
                held: 2,
                budget: 2
            }),
            (503, "request-memory", Some(1))
        );
        assert_eq!(
            answer(NetError::MemoryShareSpent {
                wanted: 1,
                held: 2,
                share: 2
            }),
            (503, "request-memory-share", Some(1))
        );
        let setup = NetError::NoCertificate {
            path: "/etc/ward/secret.pem".into(),
        };
        let a = ApiError::from(setup);
        assert_eq!(
            (a.status.as_u16(), a.reason, a.retry_after),
            (500, "internal", None)
        );
        assert!(!a.message.contains("secret"), "{}", a.message);
    }
}
