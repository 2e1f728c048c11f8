//! Ward's parameter store: MXNet's kvstore model (servers hold the weights and run the
//! optimizer; workers push gradients and pull weights; a coordinator keeps the
//! membership), with none of ps-lite's holes.
//!
//! - Every connection is mutual TLS 1.3 with the cluster's CA ([`transport`]); a peer's
//!   role and rank come from the URI in its certificate ([`identity`]), and every RPC is
//!   allowed only to the roles that need it.
//! - Messages have one fixed binary layout with no field that can carry code
//!   ([`wire`]); the optimizer is the job spec's declaration, which every member checks by
//!   digest, and the update itself is the caller's ([`server::Updater`]).
//! - `dist_sync` counts distinct workers, refuses a second push of the same step, an old
//!   step and another job's; keys are sharded by bytes ([`plan`]).
//! - Heartbeats are on: a dead or hung member stops every other with an error that names
//!   it ([`coordinator`]).
//!
//! See docs/ARCHITECTURE.md, "ward-dist".

pub mod audit;
pub mod client;
pub mod coordinator;
pub mod identity;
pub mod plan;
pub mod server;
pub mod transport;
pub mod wire;

/// The generated gRPC code (tonic-build, from build.rs).
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    missing_docs
)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/ward.dist.Coordinator.rs"));
    include!(concat!(env!("OUT_DIR"), "/ward.dist.ParameterServer.rs"));
}

pub use identity::{Member, Role};
pub use wire::Mode;

/// Why a member stopped.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error(transparent)]
    Connect(#[from] transport::ConnectError),
    /// A peer answered a call with an error.
    #[error("{peer}: {message}")]
    Rpc {
        peer: String,
        code: tonic::Code,
        message: String,
    },
    /// This member refused what a peer or the job asked.
    #[error("{0}")]
    Refused(String),
    /// The job stopped; the reason names the member that failed.
    #[error("the job failed: {0}")]
    JobFailed(String),
    #[error("this certificate names {found}; this command runs a {expected}")]
    Role {
        expected: &'static str,
        found: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl DistError {
    fn rpc(peer: impl std::fmt::Display, status: tonic::Status) -> DistError {
        DistError::Rpc {
            peer: peer.to_string(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}
