//! The routes of Open Inference Protocol v2, and the order every request goes through:
//! authenticate (before the body is read) → authorise the scope and model → rate limit and
//! budget → read the body within its limits → decode → validate against the package's
//! schema → queue → run → extraction monitor → output policy → respond. Every request,
//! allowed or denied, ends in one audit line and the metrics.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use ward_core::{InputSummary, RequestAudit};
use ward_graph::schema::InputLimits;

use crate::batch::prediction_error;
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::extraction::{predicted_classes, ExtractionMonitor};
use crate::limits::Limits;
use crate::memory::{MemoryBudget, Reservation};
use crate::metrics::Metrics;
use crate::protocol::{datatype_name, decode_request, encode_response};
use crate::ratelimit::RateLimiter;
use crate::repo::{Repository, ServedModel};
use crate::tls::ClientCertificate;
use crate::tokens::{bearer, Principal, Scope, Tokens};

/// The header that splits a body into its JSON and binary parts.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

const ROUTE_LIVE: &str = "/v2/health/live";
const ROUTE_READY: &str = "/v2/health/ready";
const ROUTE_SERVER: &str = "/v2";
const ROUTE_MODEL: &str = "/v2/models/{model}[/versions/{version}]";
const ROUTE_MODEL_READY: &str = "/v2/models/{model}[/versions/{version}]/ready";
const ROUTE_INFER: &str = "/v2/models/{model}[/versions/{version}]/infer";
const ROUTE_METRICS: &str = "/metrics";
const ROUTE_OTHER: &str = "(unknown)";

/// What a request may authenticate with: its `Authorization` header, and the client
/// certificate of its connection (mutual TLS).
pub struct Credentials {
    authorization: Option<HeaderValue>,
    certificate: Option<Arc<ClientCertificate>>,
}

impl Credentials {
    fn of(parts: &axum::http::request::Parts) -> Credentials {
        Credentials {
            authorization: parts.headers.get(header::AUTHORIZATION).cloned(),
            certificate: parts.extensions.get::<Arc<ClientCertificate>>().cloned(),
        }
    }
}

impl<S: Sync> FromRequestParts<S> for Credentials {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Credentials::of(parts))
    }
}

pub struct App {
    pub config: Arc<ServeConfig>,
    pub extraction: ExtractionMonitor,
    pub tokens: Tokens,
    pub repo: Arc<Repository>,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    pub memory: MemoryBudget,
}

/// What the audit line of one request says.
struct Audit {
    started: Instant,
    method: Method,
    route: &'static str,
    principal: Option<String>,
    model: Option<String>,
    version: Option<String>,
    inputs: Vec<InputSummary>,
}

impl Audit {
    fn start(route: &'static str, method: &Method) -> Audit {
        Audit {
            started: Instant::now(),
            method: method.clone(),
            route,
            principal: None,
            model: None,
            version: None,
            inputs: Vec::new(),
        }
    }
}

type Outcome = Result<Response, ApiError>;

impl App {
    fn finish(&self, audit: Audit, outcome: Outcome) -> Response {
        let (response, reason) = match outcome {
            Ok(r) => (r, None),
            Err(e) => {
                let reason = e.reason;
                (e.into_response(), Some(reason))
            }
        };
        let status = response.status().as_u16();
        let seconds = audit.started.elapsed().as_secs_f64();
        self.metrics.observe(audit.route, status, seconds, reason);
        RequestAudit {
            event: if reason.is_some() {
                "request.refused"
            } else {
                "request.served"
            },
            principal: audit.principal,
            method: audit.method.to_string(),
            route: audit.route,
            model: audit.model,
            version: audit.version,
            inputs: audit.inputs,
            status,
            latency_ms: (seconds * 1e6).round() / 1e3,
            decision: if reason.is_some() { "deny" } else { "allow" },
            reason,
        }
        .emit();
        response
    }

    /// The principal whose bearer token the request carries, or without one, whose client
    /// certificate its connection presented; or 401. A token that fails is not rescued by a
    /// certificate: the client said who it meant to be.
    fn authenticate(
        &self,
        credentials: &Credentials,
        audit: &mut Audit,
    ) -> Result<&Principal, ApiError> {
        let principal = match &credentials.authorization {
            Some(value) => bearer(value.as_bytes()).and_then(|t| self.tokens.authenticate(t)),
            None => credentials
                .certificate
                .as_deref()
                .and_then(|c| self.tokens.authenticate_certificate(c)),
        }
        .ok_or_else(ApiError::unauthenticated)?;
        audit.principal = Some(principal.name.clone());
        Ok(principal)
    }

    /// The principal allowed `scope` (on `model`, when given), or why not.
    fn authorize(
        &self,
        credentials: &Credentials,
        scope: Scope,
        model: Option<&str>,
        audit: &mut Audit,
    ) -> Result<Option<&Principal>, ApiError> {
        if scope == Scope::Health && self.config.auth.open_health {
            return Ok(None);
        }
        let principal = self.authenticate(credentials, audit)?;
        if !principal.has_scope(scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token does not allow {}", scope.name()),
            ));
        }
        if let Some(model) = model {
            if !principal.may_use_model(model) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the token does not allow this model",
                ));
            }
        }
        Ok(Some(principal))
    }

    fn model(
        &self,
        name: &str,
        version: Option<&str>,
        audit: &mut Audit,
    ) -> Result<Arc<ServedModel>, ApiError> {
        audit.model = Some(name.to_string());
        audit.version = version.map(str::to_string);
        let model = self
            .repo
            .get(name, version)
            .ok_or_else(|| ApiError::not_found("unknown model or version"))?;
        audit.version = Some(model.version.to_string());
        Ok(model)
    }

    fn metadata(&self, model: &ServedModel) -> serde_json::Value {
        let manifest = model.package.manifest();
        let inputs: Vec<_> = manifest
            .inputs
            .iter()
            .map(|i| json!({"name": i.name, "datatype": datatype_name(i.dtype), "shape": i.shape}))
            .collect();
        let outputs: Vec<_> = manifest
            .outputs
            .iter()
            .map(|o| {
                let (dtype, shape) = model.policy.visible_output(o.dtype, &o.shape);
                json!({"name": o.name, "datatype": datatype_name(dtype), "shape": shape})
            })
            .collect();
        let versions: Vec<String> = self
            .repo
            .versions(&model.name)
            .iter()
            .map(u64::to_string)
            .collect();
        json!({
            "name": model.name,
            "versions": versions,
            "platform": "ward",
            "inputs": inputs,
            "outputs": outputs,
        })
    }

    async fn infer(
        &self,
        name: &str,
        version: Option<&str>,
        request: Request,
        audit: &mut Audit,
    ) -> Outcome {
        let (parts, body) = request.into_parts();
        let principal =
            self.authorize(&Credentials::of(&parts), Scope::Infer, Some(name), audit)?;
        if let Some(p) = principal {
            self.limiter.check(p)?;
        }
        let model = self.model(name, version, audit)?;
        if let Some(p) = principal {
            if self.extraction.denies(&p.name, &model.name) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "extraction-suspected",
                    "this token's queries of this model look like a model-extraction attack; ask the operator",
                ));
            }
        }
        let limits = &self.config.limits;
        // Held until the answer is built: the body, then the inputs decoded from it.
        let mut reservation = Reservation::default();
        let body = read_body(&parts.headers, body, limits, &self.memory, &mut reservation).await?;
        let body = decompress(&parts.headers, body, limits, &self.memory, &mut reservation)?;
        let header_length = match parts.headers.get(HEADER_LENGTH) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                ApiError::bad_request(
                    "malformed-request",
                    "Inference-Header-Content-Length is not a number",
                )
            })?),
        };
        let request = decode_request(&body, header_length, limits)?;
        drop(body);
        audit.inputs = request
            .inputs
            .iter()
            .map(|(n, t)| InputSummary {
                name: n.clone(),
                shape: t.shape().iter().map(|&d| d as u64).collect(),
                bytes: t.bytes().len() as u64,
            })
            .collect();
        if let Some(p) = principal {
            // Each row of the batch is a query against the budget.
            let rows = request
                .inputs
                .first()
                .and_then(|(_, t)| t.shape().first().copied())
                .unwrap_or(1) as u64;
            self.limiter.charge(p, rows)?;
        }
        let manifest = model.package.manifest();
        if let Some(wanted) = &request.outputs {
            if let Some((unknown, _)) = wanted
                .iter()
                .find(|(n, _)| !manifest.outputs.iter().any(|o| &o.name == n))
            {
                return Err(ApiError::bad_request(
                    "invalid-input",
                    format!("unknown output {unknown:?}"),
                ));
            }
        }
        let input_limits = InputLimits {
            max_elements: limits.max_elements.min(usize::MAX as u64) as usize,
        };
        let checked = model
            .package
            .check_inputs(request.inputs, &input_limits)
            .map_err(prediction_error)?;
        let queries = match (principal, checked.tensors().first()) {
            (Some(_), Some(first)) if self.extraction.enabled() => {
                self.extraction.sketch_rows(first)
            }
            _ => Vec::new(),
        };

        self.metrics
            .set_queue_depth(&model.name, model.runner.depth() + 1);
        let result = model.runner.run(checked, limits.queue_timeout()).await;
        self.metrics
            .set_queue_depth(&model.name, model.runner.depth());
        let outputs = result?;
        if let (Some(p), Some((_, scores))) = (principal, outputs.first()) {
            if !queries.is_empty() {
                let classes = predicted_classes(scores);
                if let Some(s) = self
                    .extraction
                    .observe(&p.name, &model.name, &queries, &classes)
                {
                    self.metrics.extraction_suspected(&model.name);
                    ward_core::AuditEvent::new("extraction.suspected", model.name.clone())
                        .signer(p.name.clone())
                        .reason(
                            "extraction-pattern",
                            format!(
                                "Shapiro-Wilk W {:.3} of the distances between {} queries (after {}), under the threshold {}",
                                s.w, s.distances, s.queries, self.config.extraction.threshold
                            ),
                        )
                        .emit();
                    tracing::warn!(
                        "{}: the queries of {} look like a model-extraction attack (W {:.3})",
                        model.name,
                        p.name,
                        s.w
                    );
                }
            }
        }

        let selected: Vec<(String, ward_core::Tensor, bool)> = match &request.outputs {
            None => outputs
                .into_iter()
                .map(|(n, t)| (n, model.policy.apply(t), request.binary_output_default))
                .collect(),
            Some(wanted) => {
                let mut outputs = outputs;
                wanted
                    .iter()
                    .filter_map(|(name, binary)| {
                        let at = outputs.iter().position(|(n, _)| n == name)?;
                        let (n, t) = outputs.swap_remove(at);
                        Some((n, model.policy.apply(t), *binary))
                    })
                    .collect()
            }
        };
        let encoded = encode_response(
            &model.name,
            &model.version.to_string(),
            request.id.as_deref(),
            selected,
        );
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        if let Some(n) = encoded.json_len {
            headers.insert(HEADER_LENGTH, HeaderValue::from(n));
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        } else {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let body = match response_encoding(&parts.headers) {
            Some(encoding) => {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
                compress(encoding, &encoded.body)
            }
            None => encoded.body,
        };
        *response.body_mut() = Body::from(body);
        Ok(response)
    }
}

/// Reads the whole body within the size limit and the body timeout, reserving each part of
/// it from the server's request memory before keeping it.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
    memory: &MemoryBudget,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::too_large(
            "body-too-large",
            format!(
                "the body is over the limit of {} bytes",
                limits.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared {
        if declared > limits.max_body_bytes {
            return Err(too_large());
        }
        memory.reserve(reservation, declared)?;
    }
    let mut limited = Limited::new(body, limits.max_body_bytes as usize);
    let read_all = async {
        // Only a declared length that was reserved sizes the buffer.
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(frame) = limited.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
                Err(_) => {
                    return Err(ApiError::bad_request(
                        "malformed-request",
                        "the body could not be read",
                    ))
                }
            };
            if let Ok(data) = frame.into_data() {
                memory.reserve(reservation, (bytes.len() + data.len()) as u64)?;
                bytes.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(bytes))
    };
    tokio::time::timeout(limits.body_timeout(), read_all)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the body did not arrive in time",
            ))
        })
}

/// Undoes `Content-Encoding: gzip | deflate`, refusing output over the decompressed-size
/// limit or the ratio limit; it stops reading at the limit, so a bomb costs no more.
/// The room the output may take is reserved before decompressing and what it did not use
/// given back after.
fn decompress(
    headers: &HeaderMap,
    body: Bytes,
    limits: &Limits,
    memory: &MemoryBudget,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => return Ok(body),
        Some(v) => v.to_str().unwrap_or("").trim().to_ascii_lowercase(),
    };
    let gzip = match encoding.as_str() {
        "identity" => return Ok(body),
        "gzip" => true,
        "deflate" => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-encoding",
                "Content-Encoding must be gzip, deflate or identity",
            ))
        }
    };
    let budget = limits.max_decompressed_bytes.min(
        (body.len() as u64)
            .saturating_mul(limits.max_compression_ratio)
            .max(1 << 16),
    );
    memory.reserve(reservation, body.len() as u64 + budget + 1)?;
    let mut out = Vec::new();
    let read = if gzip {
        flate2::read::GzDecoder::new(&body[..])
            .take(budget + 1)
            .read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(&body[..])
            .take(budget + 1)
            .read_to_end(&mut out)
    };
    read.map_err(|_| ApiError::bad_request("malformed-request", "the compressed body is corrupt"))?;
    if out.len() as u64 > budget {
        return Err(ApiError::too_large(
            "decompressed-too-large",
            format!(
                "the body decompresses to more than {budget} bytes (limits: {} bytes, ratio {})",
                limits.max_decompressed_bytes, limits.max_compression_ratio
            ),
        ));
    }
    memory.release_to(reservation, out.len() as u64);
    Ok(Bytes::from(out))
}

/// gzip or deflate when the client accepts it; never br (see the tritonclient aio note).
fn response_encoding(headers: &HeaderMap) -> Option<&'static str> {
    let accepted = headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
    let names: Vec<&str> = accepted
        .split(',')
        .map(|p| p.split(';').next().unwrap_or("").trim())
        .collect();
    if names.iter().any(|n| n.eq_ignore_ascii_case("gzip")) {
        Some("gzip")
    } else if names.iter().any(|n| n.eq_ignore_ascii_case("deflate")) {
        Some("deflate")
    } else {
        None
    }
}

fn compress(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let level = flate2::Compression::fast();
    let written = if encoding == "gzip" {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
        e.write_all(bytes).and_then(|()| e.finish())
    } else {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
        e.write_all(bytes).and_then(|()| e.finish())
    };
    // Writing to a Vec cannot fail.
    written.unwrap_or_default()
}

fn ok_json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

type Shared = State<Arc<App>>;

async fn live(State(app): Shared, credentials: Credentials) -> Response {
    let mut audit = Audit::start(ROUTE_LIVE, &Method::GET);
    let outcome = app
        .authorize(&credentials, Scope::Health, None, &mut audit)
        .map(|_| ok_json(json!({"live": true})));
    app.finish(audit, outcome)
}

async fn ready(State(app): Shared, credentials: Credentials) -> Response {
    let mut audit = Audit::start(ROUTE_READY, &Method::GET);
    let outcome = app
        .authorize(&credentials, Scope::Health, None, &mut audit)
        .and_then(|_| {
            if app.repo.model_count() > 0 {
                Ok(ok_json(json!({"ready": true})))
            } else {
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not-ready",
                    "no model is being served",
                ))
            }
        });
    app.finish(audit, outcome)
}

async fn server_metadata(State(app): Shared, credentials: Credentials) -> Response {
    let mut audit = Audit::start(ROUTE_SERVER, &Method::GET);
    let outcome = app
        .authorize(&credentials, Scope::Metadata, None, &mut audit)
        .map(|_| {
            ok_json(json!({
                "name": "ward",
                "version": env!("CARGO_PKG_VERSION"),
                "extensions": ["binary_tensor_data"],
            }))
        });
    app.finish(audit, outcome)
}

fn model_metadata(
    app: &App,
    credentials: &Credentials,
    model: &str,
    version: Option<&str>,
) -> Response {
    let mut audit = Audit::start(ROUTE_MODEL, &Method::GET);
    let outcome = app
        .authorize(credentials, Scope::Metadata, Some(model), &mut audit)
        .and_then(|_| app.model(model, version, &mut audit))
        .map(|m| ok_json(app.metadata(&m)));
    app.finish(audit, outcome)
}

fn model_ready(
    app: &App,
    credentials: &Credentials,
    model: &str,
    version: Option<&str>,
) -> Response {
    let mut audit = Audit::start(ROUTE_MODEL_READY, &Method::GET);
    let outcome = app
        .authorize(credentials, Scope::Health, Some(model), &mut audit)
        .and_then(|_| app.model(model, version, &mut audit))
        .map(|m| ok_json(json!({"name": m.name, "ready": true})));
    app.finish(audit, outcome)
}

async fn metadata_latest(
    State(app): Shared,
    Path(model): Path<String>,
    credentials: Credentials,
) -> Response {
    model_metadata(&app, &credentials, &model, None)
}

async fn metadata_version(
    State(app): Shared,
    Path((model, version)): Path<(String, String)>,
    credentials: Credentials,
) -> Response {
    model_metadata(&app, &credentials, &model, Some(&version))
}

async fn ready_latest(
    State(app): Shared,
    Path(model): Path<String>,
    credentials: Credentials,
) -> Response {
    model_ready(&app, &credentials, &model, None)
}

async fn ready_version(
    State(app): Shared,
    Path((model, version)): Path<(String, String)>,
    credentials: Credentials,
) -> Response {
    model_ready(&app, &credentials, &model, Some(&version))
}

async fn infer_latest(State(app): Shared, Path(model): Path<String>, request: Request) -> Response {
    let mut audit = Audit::start(ROUTE_INFER, &Method::POST);
    let outcome = app.infer(&model, None, request, &mut audit).await;
    app.finish(audit, outcome)
}

async fn infer_version(
    State(app): Shared,
    Path((model, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    let mut audit = Audit::start(ROUTE_INFER, &Method::POST);
    let outcome = app.infer(&model, Some(&version), request, &mut audit).await;
    app.finish(audit, outcome)
}

async fn metrics(State(app): Shared, credentials: Credentials) -> Response {
    let mut audit = Audit::start(ROUTE_METRICS, &Method::GET);
    let outcome = app
        .authorize(&credentials, Scope::Metrics, None, &mut audit)
        .map(|_| {
            app.metrics.set_models(app.repo.model_count());
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                app.metrics.render(),
            )
                .into_response()
        });
    app.finish(audit, outcome)
}

/// Anything else: 401 without a valid token, so unknown paths reveal nothing; 404 with one.
async fn fallback(State(app): Shared, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let mut audit = Audit::start(ROUTE_OTHER, &parts.method);
    let outcome = app
        .authenticate(&Credentials::of(&parts), &mut audit)
        .and_then(|_| Err(ApiError::not_found("no such endpoint")));
    app.finish(audit, outcome)
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{model}", get(metadata_latest))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(metadata_version),
        )
        .route("/v2/models/{model}/ready", get(ready_latest))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(ready_version),
        )
        .route("/v2/models/{model}/infer", post(infer_latest))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer_version),
        )
        .route("/metrics", get(metrics))
        .fallback(fallback)
        .method_not_allowed_fallback(fallback)
        .with_state(app)
}
