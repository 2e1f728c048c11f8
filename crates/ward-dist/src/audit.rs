//! Audit events and metrics: who connected with which role, each refused connection and
//! RPC with its reason, steps, and the bytes each peer pushed and pulled. Events go to
//! `tracing` (target `ward_dist::audit`), are counted in Prometheus metrics, and the most
//! recent are kept in memory for `ward cluster` to report and tests to read.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::identity::Member;

/// Events kept in memory.
pub const RECENT_EVENTS: usize = 4096;

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        address: SocketAddr,
        member: String,
    },
    RefusedConnection {
        address: SocketAddr,
        reason: String,
    },
    RefusedRpc {
        member: String,
        rpc: String,
        reason: String,
    },
    Refused {
        member: String,
        what: String,
        reason: String,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    kind: String,
}

/// The audit log and the metrics of one process; clones share them.
#[derive(Clone)]
pub struct Audit {
    recent: Arc<Mutex<VecDeque<Event>>>,
    connections: Family<PeerLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    pushed: Family<PeerLabels, Counter>,
    pulled: Family<PeerLabels, Counter>,
    steps: Counter,
}

impl Default for Audit {
    fn default() -> Self {
        Audit::new()
    }
}

impl Audit {
    pub fn new() -> Audit {
        Audit {
            recent: Arc::new(Mutex::new(VecDeque::new())),
            connections: Family::default(),
            refusals: Family::default(),
            pushed: Family::default(),
            pulled: Family::default(),
            steps: Counter::default(),
        }
    }

    /// Registers the metrics under `ward_dist_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ward_dist");
        r.register(
            "connections",
            "Authenticated connections, by peer",
            self.connections.clone(),
        );
        r.register(
            "refusals",
            "Refused connections, RPCs and pushes, by kind",
            self.refusals.clone(),
        );
        r.register(
            "pushed_bytes",
            "Gradient bytes received, by peer",
            self.pushed.clone(),
        );
        r.register(
            "pulled_bytes",
            "Weight bytes sent, by peer",
            self.pulled.clone(),
        );
        r.register("steps", "Steps applied", self.steps.clone());
    }

    fn keep(&self, event: Event) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    fn refusal(&self, kind: &str) {
        self.refusals
            .get_or_create(&ReasonLabels { kind: kind.into() })
            .inc();
    }

    pub fn connected(&self, address: SocketAddr, member: &Member) {
        tracing::info!(target: "ward_dist::audit", %address, %member, "connected");
        self.connections
            .get_or_create(&PeerLabels {
                peer: member.role.to_string(),
            })
            .inc();
        self.keep(Event::Connected {
            address,
            member: member.to_string(),
        });
    }

    pub fn refused_connection(&self, address: SocketAddr, reason: &str) {
        tracing::warn!(target: "ward_dist::audit", %address, reason, "connection refused");
        self.refusal("connection");
        self.keep(Event::RefusedConnection {
            address,
            reason: reason.into(),
        });
    }

    pub fn refused_rpc(&self, member: &Member, rpc: &str, reason: &str) {
        tracing::warn!(target: "ward_dist::audit", %member, rpc, reason, "RPC refused");
        self.refusal("rpc");
        self.keep(Event::RefusedRpc {
            member: member.to_string(),
            rpc: rpc.into(),
            reason: reason.into(),
        });
    }

    /// A request an authorized peer made that was refused for what it held: a replayed or
    /// duplicate push, another job's, the wrong parts, non-finite values.
    pub fn refused(&self, member: &Member, what: &str, reason: &str) {
        tracing::warn!(target: "ward_dist::audit", %member, what, reason, "refused");
        self.refusal(what);
        self.keep(Event::Refused {
            member: member.to_string(),
            what: what.into(),
            reason: reason.into(),
        });
    }

    pub fn pushed(&self, member: &Member, bytes: u64) {
        self.pushed
            .get_or_create(&PeerLabels {
                peer: member.role.to_string(),
            })
            .inc_by(bytes);
    }

    pub fn pulled(&self, member: &Member, bytes: u64) {
        self.pulled
            .get_or_create(&PeerLabels {
                peer: member.role.to_string(),
            })
            .inc_by(bytes);
    }

    pub fn step(&self) {
        self.steps.inc();
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> Vec<Event> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }
}
