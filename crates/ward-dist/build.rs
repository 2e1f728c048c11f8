//! The gRPC services, declared here rather than in a .proto file: their messages are
//! `crate::wire`'s, with its codec, so the build needs no protoc and links no protobuf
//! runtime. tonic-build writes the client and server code into OUT_DIR.

use tonic_build::manual::{Builder, Method, Service};

const CODEC: &str = "crate::wire::WireCodec";

fn method(name: &str, route: &str, input: &str, output: &str) -> Method {
    Method::builder()
        .name(name)
        .route_name(route)
        .input_type(format!("crate::wire::{input}"))
        .output_type(format!("crate::wire::{output}"))
        .codec_path(CODEC)
        .build()
}

fn main() {
    let coordinator = Service::builder()
        .name("Coordinator")
        .package("ward.dist")
        .comment(
            "Membership, the job's description, heartbeats, cluster checkpoints and the job's end.",
        )
        .method(method("join", "Join", "JoinRequest", "JobDescription"))
        .method(method("initial_shard", "InitialShard", "Empty", "Tensors"))
        .method(method("ready", "Ready", "Empty", "Empty"))
        .method(method("heartbeat", "Heartbeat", "Heartbeat", "JobState"))
        .method(method("fail", "Fail", "Failure", "Empty"))
        .method(method("done", "Done", "Empty", "Empty"))
        .method(method("saved", "Saved", "ShardSaved", "Kept"))
        .build();
    let server = Service::builder()
        .name("ParameterServer")
        .package("ward.dist")
        .comment("A shard of the weights and the optimizer state.")
        .method(method("push_pull", "PushPull", "Tensors", "Weights"))
        .method(method("pull", "Pull", "PullRequest", "Weights"))
        .method(method("stop", "Stop", "Empty", "Empty"))
        .build();
    Builder::new().compile(&[coordinator, server]);
    println!("cargo:rerun-if-changed=build.rs");
}
