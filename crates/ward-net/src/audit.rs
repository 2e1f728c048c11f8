//! The audit event of one request to a service, whatever its transport: who asked (the
//! principal, the peer), for what (the operation, in the transport's words; the model and
//! version; the inputs' names, shapes and sizes, never their values), what was decided
//! (allow, or deny with a stable reason), the transport's answer and the latency.
//!
//! The transport fills in its own fields: `ward serve` the HTTP method and route template
//! as the call and the HTTP status as the answer; a gRPC service would give its method
//! name and status code. They are written where they stand in the line, so `ward serve`'s
//! lines read `{"event", "principal", "method", "route", "model", "version", "inputs",
//! "status", "latency_ms", "decision", "reason"}` as they always have.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use ward_core::audit::AUDIT_TARGET;

/// One input of an audited request: its name, shape and size, never its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputSummary {
    pub name: String,
    pub shape: Vec<u64>,
    pub bytes: u64,
}

/// What was decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied, with a stable reason code (`unauthenticated`, `rate-limited`, …) that log
    /// pipelines match on.
    Deny(&'static str),
}

/// One request to a service, allowed or denied. `C` is the call in the transport's words
/// and `A` its answer, each a struct whose fields are written into the line.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestEvent<C, A> {
    /// The authenticated principal, if authentication got that far.
    pub principal: Option<String>,
    /// The client's address, when the transport gives it.
    pub peer: Option<IpAddr>,
    /// What was asked, in the transport's words (HTTP: method and route template).
    pub call: C,
    pub model: Option<String>,
    pub version: Option<String>,
    pub inputs: Vec<InputSummary>,
    /// What the transport answered (HTTP: the status).
    pub answer: A,
    /// From the request's arrival to its answer.
    pub latency: Duration,
    pub decision: Decision,
}

/// The line as written: field order and names are what log pipelines read.
#[derive(Serialize)]
struct Line<'a, C, A> {
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<IpAddr>,
    #[serde(flatten)]
    call: &'a C,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "<[InputSummary]>::is_empty")]
    inputs: &'a [InputSummary],
    #[serde(flatten)]
    answer: &'a A,
    latency_ms: f64,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl<C: Serialize, A: Serialize> RequestEvent<C, A> {
    /// `request.served` or `request.refused`: the stable event name.
    pub fn event(&self) -> &'static str {
        match self.decision {
            Decision::Allow => "request.served",
            Decision::Deny(_) => "request.refused",
        }
    }

    /// The event as one JSON line (no newline).
    pub fn to_json(&self) -> String {
        let (decision, reason) = match self.decision {
            Decision::Allow => ("allow", None),
            Decision::Deny(reason) => ("deny", Some(reason)),
        };
        let line = Line {
            event: self.event(),
            principal: self.principal.as_deref(),
            peer: self.peer,
            call: &self.call,
            model: self.model.as_deref(),
            version: self.version.as_deref(),
            inputs: &self.inputs,
            answer: &self.answer,
            // Microseconds, as milliseconds with three decimals.
            latency_ms: (self.latency.as_secs_f64() * 1e6).round() / 1e3,
            decision,
            reason,
        };
        // Strings, numbers and the transport's plain structs always serialise; a call or
        // answer that is not a struct is the caller's bug, and still leaves a line.
        serde_json::to_string(&line).unwrap_or_else(|_| format!("{{\"event\":\"{}\"}}", line.event))
    }

    /// Sends the event to the audit target.
    pub fn emit(&self) {
        tracing::info!(target: AUDIT_TARGET, "{}", self.to_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The call and answer of an HTTP server, as `ward serve` writes them.
    #[derive(Serialize)]
    struct HttpCall {
        method: &'static str,
        route: &'static str,
    }

    #[derive(Serialize)]
    struct HttpAnswer {
        status: u16,
    }

    #[test]
    fn an_http_request_reads_as_ward_serve_has_always_written_it() {
        let served = RequestEvent {
            principal: Some("alice".into()),
            peer: None,
            call: HttpCall {
                method: "POST",
                route: "/v2/models/{model}[/versions/{version}]/infer",
            },
            model: Some("mlp".into()),
            version: Some("1".into()),
            inputs: vec![InputSummary {
                name: "data".into(),
                shape: vec![2, 784],
                bytes: 6272,
            }],
            answer: HttpAnswer { status: 200 },
            latency: Duration::from_nanos(1_234_567),
            decision: Decision::Allow,
        };
        assert_eq!(
            served.to_json(),
            r#"{"event":"request.served","principal":"alice","method":"POST","route":"/v2/models/{model}[/versions/{version}]/infer","model":"mlp","version":"1","inputs":[{"name":"data","shape":[2,784],"bytes":6272}],"status":200,"latency_ms":1.235,"decision":"allow"}"#
        );
        let refused = RequestEvent {
            principal: None,
            peer: None,
            call: HttpCall {
                method: "GET",
                route: "/metrics",
            },
            model: None,
            version: None,
            inputs: Vec::new(),
            answer: HttpAnswer { status: 401 },
            latency: Duration::from_micros(50),
            decision: Decision::Deny("unauthenticated"),
        };
        assert_eq!(refused.event(), "request.refused");
        assert_eq!(
            refused.to_json(),
            r#"{"event":"request.refused","method":"GET","route":"/metrics","status":401,"latency_ms":0.05,"decision":"deny","reason":"unauthenticated"}"#
        );
    }

    #[test]
    fn another_transport_writes_its_own_call_and_answer() {
        #[derive(Serialize)]
        struct GrpcCall {
            rpc: &'static str,
        }
        #[derive(Serialize)]
        struct GrpcAnswer {
            code: u8,
        }
        let event = RequestEvent {
            principal: Some("worker-3".into()),
            peer: Some("127.0.0.1".parse().unwrap()),
            call: GrpcCall {
                rpc: "/ward.ParameterStore/Push",
            },
            model: None,
            version: None,
            inputs: Vec::new(),
            answer: GrpcAnswer { code: 8 },
            latency: Duration::from_millis(2),
            decision: Decision::Deny("rate-limited"),
        };
        let line = event.to_json();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(
            line,
            r#"{"event":"request.refused","principal":"worker-3","peer":"127.0.0.1","rpc":"/ward.ParameterStore/Push","code":8,"latency_ms":2.0,"decision":"deny","reason":"rate-limited"}"#
        );
    }
}
