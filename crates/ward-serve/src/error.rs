//! Errors: [`ServeError`] for starting the server, [`ApiError`] for one request. An
//! `ApiError` carries the HTTP status, the client-facing message (never an internal name
//! or path) and the stable reason code that goes to the audit log and the metrics.

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

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
    #[error("tokens file {path}: {reason}")]
    Tokens { path: PathBuf, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
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
