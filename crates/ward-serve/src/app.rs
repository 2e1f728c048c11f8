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
use serde::Serialize;
use serde_json::json;
use ward_graph::schema::InputLimits;
use ward_net::memory::{MemoryBudget, Reservation};
use ward_net::ratelimit::RateLimiter;
use ward_net::tokens::{bearer, Principal, Tokens};
use ward_net::{ClientCertificate, Decision, InputSummary, RequestEvent};

use crate::batch::prediction_error;
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::extraction::{predicted_classes, ExtractionMonitor};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::protocol::{datatype_name, decode_request, encode_response};
use crate::repo::{Repository, ServedModel};
use crate::scopes;

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

/// The HTTP call of an audit line: `"method"` and `"route"`.
#[derive(Serialize)]
struct HttpCall {
    method: String,
    /// The route template (`/v2/models/{model}/infer`), not the raw path.
    route: &'static str,
}

/// The HTTP answer of an audit line: `"status"`.
#[derive(Serialize)]
struct HttpAnswer {
    status: u16,
}

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
        let latency = audit.started.elapsed();
        self.metrics
            .observe(audit.route, status, latency.as_secs_f64(), reason);
        RequestEvent {
            principal: audit.principal,
            peer: None,
            call: HttpCall {
                method: audit.method.to_string(),
                route: audit.route,
            },
            model: audit.model,
            version: audit.version,
            inputs: audit.inputs,
            answer: HttpAnswer { status },
            latency,
            decision: reason.map_or(Decision::Allow, Decision::Deny),
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
        scope: &'static str,
        model: Option<&str>,
        audit: &mut Audit,
    ) -> Result<Option<&Principal>, ApiError> {
        if scope == scopes::HEALTH && self.config.auth.open_health {
            return Ok(None);
        }
        let principal = self.authenticate(credentials, audit)?;
        if !principal.has_scope(scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token does not allow {scope}"),
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
            self.authorize(&Credentials::of(&parts), scopes::INFER, Some(name), audit)?;
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
        // Held until the answer is built: the body, then the inputs decoded from it. The
        // body is read only once the request is authenticated, so it is held on behalf of
        // its principal.
        let holder = principal.map_or_else(String::new, |p| p.name.clone());
        let mut reservation = self.memory.reservation(holder);
        let body = read_body(&parts.headers, body, limits, &mut reservation).await?;
        let (body, _reservation) = decompress(&parts.headers, body, limits, reservation).await?;
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

/// Smallest step by which a body's buffer grows.
const BODY_STEP: usize = 16 << 10;

/// The allocator refused memory the budget allowed.
fn out_of_memory() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "request-memory",
        "the server could not allocate the request's memory; retry later",
    )
    .retry_after(1)
}

/// The capacity a buffer of `capacity` bytes grows to when it must hold `needed`: twice
/// what it had (at least [`BODY_STEP`]), but never more than `ceiling`: the declared
/// length while the body keeps to it, so an honest body ends in a buffer of its exact size.
fn grown_capacity(capacity: usize, needed: usize, ceiling: usize) -> usize {
    capacity
        .saturating_mul(2)
        .max(BODY_STEP)
        .min(ceiling)
        .max(needed)
}

/// Grows `bytes` to hold `more` bytes beyond its length, reserving its new capacity from
/// the request memory before allocating it; `ceiling` bounds the growth step.
fn grow(
    bytes: &mut Vec<u8>,
    more: usize,
    ceiling: usize,
    reservation: &mut Reservation,
) -> Result<(), ApiError> {
    let needed = bytes.len().saturating_add(more);
    if needed <= bytes.capacity() {
        return Ok(());
    }
    let capacity = grown_capacity(bytes.capacity(), needed, ceiling);
    reservation.grow_to(capacity as u64)?;
    bytes
        .try_reserve_exact(capacity - bytes.len())
        .map_err(|_| out_of_memory())
}

/// When the next part of a body that has sent `received` bytes since `started` must have
/// arrived to keep to the minimum rate: after the grace, one second per
/// `min_body_bytes_per_second` bytes received. `None` when the rule is off.
fn slow_body_deadline(
    started: tokio::time::Instant,
    received: usize,
    limits: &Limits,
) -> Option<tokio::time::Instant> {
    let rate = u128::from(limits.min_body_bytes_per_second);
    if rate == 0 {
        return None;
    }
    let nanos = (received as u128).saturating_mul(1_000_000_000) / rate;
    let bought = std::time::Duration::from_nanos(u64::try_from(nanos).ok()?);
    started
        .checked_add(limits.body_rate_grace())?
        .checked_add(bought)
}

/// Reads the whole body within the size limit, the body timeout and the minimum rate,
/// reserving the memory of its buffer from the request memory as the bytes arrive (an
/// honest `Content-Length` sizes the buffer's growth, never a reservation ahead of the
/// bytes).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
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
    if declared.is_some_and(|d| d > limits.max_body_bytes) {
        return Err(too_large());
    }
    let max_body = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    let declared = declared.map_or(max_body, |d| usize::try_from(d).unwrap_or(max_body));
    let started = tokio::time::Instant::now();
    let timeout_at = started.checked_add(limits.body_timeout());
    let mut limited = Limited::new(body, max_body);
    let mut bytes = Vec::new();
    loop {
        // Waiting for the next part ends at the body timeout, or sooner when what has
        // arrived so far is behind the minimum rate; so a body that sends nothing at all
        // is cut too.
        let slow_at = slow_body_deadline(started, bytes.len(), limits);
        let (deadline, too_slow) = match (slow_at, timeout_at) {
            (Some(slow), Some(end)) if slow < end => (Some(slow), true),
            (Some(slow), None) => (Some(slow), true),
            (_, end) => (end, false),
        };
        let next = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, limited.frame()).await,
            None => Ok(limited.frame().await),
        };
        let frame = match next {
            Err(_) if too_slow => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-too-slow",
                    format!(
                        "the body arrived slower than {} bytes a second",
                        limits.min_body_bytes_per_second
                    ),
                ))
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    "the body did not arrive in time",
                ))
            }
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(too_large())
            }
            Ok(Some(Err(_))) => {
                return Err(ApiError::bad_request(
                    "malformed-request",
                    "the body could not be read",
                ))
            }
        };
        if let Ok(data) = frame.into_data() {
            // Past its declared length the body grows in steps up to the limit (hyper
            // refuses a body longer than its Content-Length; this is for the others).
            let ceiling = if bytes.len() + data.len() <= declared {
                declared
            } else {
                max_body
            };
            grow(&mut bytes, data.len(), ceiling, reservation)?;
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

/// Why inflating a body stopped.
enum Inflate {
    Corrupt,
    TooLarge,
    Refused(ApiError),
}

/// Inflates `body` into a buffer that never holds more than `limit` bytes nor grows past
/// what `reservation` was given for it.
fn inflate(
    body: &[u8],
    gzip: bool,
    limit: usize,
    reservation: &mut Reservation,
) -> Result<Vec<u8>, Inflate> {
    let mut decoder: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(body))
    } else {
        Box::new(flate2::read::ZlibDecoder::new(body))
    };
    // What the body holds stays reserved beside the output until the body is dropped.
    let body_held = reservation.bytes();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; BODY_STEP];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Inflate::Corrupt),
        };
        if out.len() + n > limit {
            return Err(Inflate::TooLarge);
        }
        let needed = out.len() + n;
        if needed > out.capacity() {
            let capacity = grown_capacity(out.capacity(), needed, limit);
            reservation
                .grow_to(body_held + capacity as u64)
                .map_err(|e| Inflate::Refused(e.into()))?;
            out.try_reserve_exact(capacity - out.len())
                .map_err(|_| Inflate::Refused(out_of_memory()))?;
        }
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Undoes `Content-Encoding: gzip | deflate`, refusing output over the decompressed-size
/// limit or the ratio limit; it stops reading at the limit, so a bomb costs no more.
/// The room the output may take is reserved before decompressing and what it did not use
/// given back after. It runs on a blocking thread, not the async worker, and holds the
/// reservation there: a request whose client goes away keeps it until the work ends.
async fn decompress(
    headers: &HeaderMap,
    body: Bytes,
    limits: &Limits,
    mut reservation: Reservation,
) -> Result<(Bytes, Reservation), ApiError> {
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => return Ok((body, reservation)),
        Some(v) => v.to_str().unwrap_or("").trim().to_ascii_lowercase(),
    };
    let gzip = match encoding.as_str() {
        "identity" => return Ok((body, reservation)),
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
    let room = limits.max_decompressed_bytes.min(
        (body.len() as u64)
            .saturating_mul(limits.max_compression_ratio)
            .max(1 << 16),
    );
    reservation.grow_to(reservation.bytes().saturating_add(room).saturating_add(1))?;
    let limit = usize::try_from(room).unwrap_or(usize::MAX);
    let (max_decompressed, ratio) = (limits.max_decompressed_bytes, limits.max_compression_ratio);
    tokio::task::spawn_blocking(move || {
        let inflated = inflate(&body, gzip, limit, &mut reservation);
        drop(body);
        match inflated {
            Ok(out) => {
                reservation.shrink_to(out.capacity() as u64);
                Ok((Bytes::from(out), reservation))
            }
            Err(Inflate::Corrupt) => Err(ApiError::bad_request(
                "malformed-request",
                "the compressed body is corrupt",
            )),
            Err(Inflate::TooLarge) => Err(ApiError::too_large(
                "decompressed-too-large",
                format!(
                    "the body decompresses to more than {room} bytes (limits: {max_decompressed} bytes, ratio {ratio})"
                ),
            )),
            Err(Inflate::Refused(e)) => Err(e),
        }
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the body could not be decompressed",
        )
    })?
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
        .authorize(&credentials, scopes::HEALTH, None, &mut audit)
        .map(|_| ok_json(json!({"live": true})));
    app.finish(audit, outcome)
}

async fn ready(State(app): Shared, credentials: Credentials) -> Response {
    let mut audit = Audit::start(ROUTE_READY, &Method::GET);
    let outcome = app
        .authorize(&credentials, scopes::HEALTH, None, &mut audit)
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
        .authorize(&credentials, scopes::METADATA, None, &mut audit)
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
        .authorize(credentials, scopes::METADATA, Some(model), &mut audit)
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
        .authorize(credentials, scopes::HEALTH, Some(model), &mut audit)
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
        .authorize(&credentials, scopes::METRICS, None, &mut audit)
        .map(|_| {
            app.metrics.set_models(app.repo.model_count());
            let served = app.repo.served();
            app.metrics.set_batch_costs(
                served
                    .iter()
                    .map(|m| (m.name.as_str(), m.version, m.runner.costs())),
            );
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
