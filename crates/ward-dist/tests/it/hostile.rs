//! A valid job trains while its coordinator and server are attacked: garbage, HTTP, TLS
//! without a certificate, with another CA's, with an expired one, another job's, wrong
//! roles, replays, another job's pushes, oversized messages, a connection flood and
//! slowloris. Nothing crashes, the job ends with the weights of an unattacked run, and
//! each refusal is an audit event.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ward_dist::audit::Event;
use ward_dist::rpc::coordinator_client::CoordinatorClient;
use ward_dist::rpc::parameter_server_client::ParameterServerClient;
use ward_dist::transport::{connect, Limits};
use ward_dist::wire::{Empty, JoinRequest, Part, PullRequest, ShardSaved, Tensors};
use ward_dist::{Member, Mode, Role};
use ward_net::devcert::DevCa;
use ward_net::tls::{client_config_with, Identity, Versions};

use crate::cluster::{expected, start, tls, work, worker_setup, write_pair, JOB};

/// Sends `bytes` on a raw connection and reads until the peer closes it.
async fn garbage(address: &str, bytes: &[u8]) {
    let Ok(mut tcp) = TcpStream::connect(address).await else {
        return;
    };
    let _ = tcp.write_all(bytes).await;
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(8), async {
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A client configuration for `cert`/`key` in `dir` trusting `ca`.
fn client(dir: &std::path::Path, name: &str, ca: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    client_config_with(
        ca,
        Some(Identity {
            cert: &cert,
            key: &key,
        }),
        &[b"h2"],
        Versions::Tls13Only,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attacks_change_nothing_and_each_refusal_is_audited() {
    let workers = 2;
    let steps = 40;
    let cluster = start(1, workers, Mode::Sync, Duration::from_secs(5)).await;
    let runs: Vec<_> = (0..workers)
        .map(|r| {
            tokio::spawn(work(
                worker_setup(&cluster, r),
                r,
                steps,
                Duration::from_millis(40),
            ))
        })
        .collect();
    let server = cluster.server_addresses[0].clone();
    let coordinator = cluster.coordinator.clone();
    let limits = Limits::default();
    let server_member = Member::new("test", JOB, Role::Server(0));

    // Certificates an attacker might hold.
    let extra = tempfile::tempdir().unwrap();
    let hosts = ["localhost".to_string(), "127.0.0.1".to_string()];
    let other_ca = DevCa::new().unwrap();
    let (pem, key) = other_ca
        .member(&Member::new("test", JOB, Role::Worker(0)).uri(), &hosts)
        .unwrap();
    write_pair(extra.path(), "foreign", &pem, &key);
    let (pem, key) = cluster
        .ca
        .member_valid(
            &Member::new("test", JOB, Role::Worker(1)).uri(),
            &hosts,
            (2020, 1, 1),
            (2021, 1, 1),
        )
        .unwrap();
    write_pair(extra.path(), "expired", &pem, &key);
    let (pem, key) = cluster
        .ca
        .member(&Member::new("test", "job-2", Role::Worker(0)).uri(), &hosts)
        .unwrap();
    write_pair(extra.path(), "other-job", &pem, &key);
    let (pem, key) = cluster
        .ca
        .member(&Member::new("test", JOB, Role::Worker(7)).uri(), &hosts)
        .unwrap();
    write_pair(extra.path(), "worker-7", &pem, &key);
    let ca = cluster.certs.ca.clone();

    // 1. Garbage of 1 B to 1 MiB, and an HTTP request, to every port.
    for address in [&server, &coordinator] {
        for (i, n) in [1usize, 100, 4096, 65_536, 1 << 20].into_iter().enumerate() {
            garbage(address, &random_bytes(n, i as u64 + 1)).await;
        }
        garbage(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    }

    // 3. TLS without a certificate.
    let roots = ward_net::tls::read_roots(&ca).unwrap();
    let anonymous = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    for (config, what) in [
        (anonymous, "no certificate"),
        (client(extra.path(), "foreign", &ca), "another CA"),
        (client(extra.path(), "expired", &ca), "expired"),
        (client(extra.path(), "other-job", &ca), "another job"),
    ] {
        for (address, member) in [
            (&server, server_member.clone()),
            (&coordinator, Member::new("test", JOB, Role::Coordinator)),
        ] {
            let result = match connect(address, member, config.clone(), &limits).await {
                Ok(channel) => ParameterServerClient::new(channel)
                    .pull(PullRequest { job: JOB.into() })
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            assert!(result.is_err(), "{what} at {address} was served");
        }
    }

    // 4. A member of the job with the wrong role for the RPC, and a rank outside it.
    let worker0 = tls(&cluster.certs, Role::Worker(0)).1;
    let channel = connect(&server, server_member.clone(), worker0.clone(), &limits)
        .await
        .unwrap();
    let mut as_worker = ParameterServerClient::new(channel).max_decoding_message_size(8 << 20);
    let status = as_worker.stop(Empty {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    let coordinator_channel = connect(
        &coordinator,
        Member::new("test", JOB, Role::Coordinator),
        worker0.clone(),
        &limits,
    )
    .await
    .unwrap();
    let mut as_worker_to_coordinator = CoordinatorClient::new(coordinator_channel);
    let status = as_worker_to_coordinator
        .initial_shard(Empty {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    // Only a server reports a shard checkpoint.
    let status = as_worker_to_coordinator
        .saved(ShardSaved {
            job: JOB.into(),
            step: 10,
            state_sha256: [0; 32],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    // A server's report of a checkpoint the job does not write: refused, audited.
    let channel = connect(
        &coordinator,
        Member::new("test", JOB, Role::Coordinator),
        tls(&cluster.certs, Role::Server(0)).1,
        &limits,
    )
    .await
    .unwrap();
    let status = CoordinatorClient::new(channel)
        .saved(ShardSaved {
            job: JOB.into(),
            step: 10,
            state_sha256: [0; 32],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(
        status.message().contains("writes no checkpoints"),
        "{status}"
    );
    let channel = connect(
        &coordinator,
        Member::new("test", JOB, Role::Coordinator),
        client(extra.path(), "worker-7", &ca),
        &limits,
    )
    .await
    .unwrap();
    let status = CoordinatorClient::new(channel)
        .join(JoinRequest {
            spec_sha256: [7; 32],
            advertise: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");

    // 5. Pushes with worker 0's own certificate: a replay of step 0 once the job is past it,
    // another job's, parts the server does not hold, and a message over the shard's size.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let whole: Vec<Part> = crate::cluster::keys_for_test()
        .iter()
        .enumerate()
        .map(|(k, key)| Part {
            key: k as u32,
            part: 0,
            values: vec![0.5; key.len],
        })
        .collect();
    let replay = Tensors {
        job: JOB.into(),
        step: 0,
        parts: whole.clone(),
    };
    let status = as_worker.push_pull(replay).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    assert!(status.message().contains("replayed or stale"), "{status}");
    let other = Tensors {
        job: "job-2".into(),
        step: 0,
        parts: whole.clone(),
    };
    let status = as_worker.push_pull(other).await.unwrap_err();
    assert!(status.message().contains("job-2"), "{status}");
    let oversized = Tensors {
        job: JOB.into(),
        step: 1,
        parts: vec![Part {
            key: 0,
            part: 0,
            values: vec![1.0; 2 << 20],
        }],
    };
    let status = as_worker.push_pull(oversized).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status}"
    );

    // 6. A connection flood (held open) and slowloris (a byte of a ClientHello a second).
    let mut flood = Vec::new();
    for _ in 0..200 {
        if let Ok(tcp) = TcpStream::connect(&server).await {
            flood.push(tcp);
        }
    }
    let slow = tokio::spawn({
        let server = server.clone();
        async move {
            let mut conns = Vec::new();
            for _ in 0..10 {
                if let Ok(tcp) = TcpStream::connect(&server).await {
                    conns.push(tcp);
                }
            }
            for _ in 0..8 {
                for c in &mut conns {
                    let _ = c.write_all(&[0x16]).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });

    // The valid job finishes with exactly the unattacked run's weights.
    for run in runs {
        assert_eq!(run.await.unwrap().unwrap(), expected(workers, steps));
    }
    assert_eq!(
        cluster.done.await.unwrap().unwrap(),
        expected(workers, steps)
    );
    for s in cluster.servers {
        s.await.unwrap().unwrap();
    }
    slow.await.unwrap();
    drop(flood);

    // Each refusal is an audit event of the process that refused it.
    let server_events = cluster.audits[1].events();
    let coordinator_events = cluster.audits[0].events();
    let refused_connection = |events: &[Event], needle: &str| {
        events.iter().any(
            |e| matches!(e, Event::RefusedConnection { reason, .. } if reason.contains(needle)),
        )
    };
    for needle in [
        "corrupt message",
        "peer sent no certificates",
        "BadSignature",
        "certificate expired",
        "job-2",
        "not finished in time",
        "connection cap",
    ] {
        assert!(
            refused_connection(&server_events, needle),
            "server: no refusal with {needle:?}: {server_events:#?}"
        );
    }
    assert!(refused_connection(&coordinator_events, "TLS handshake"));
    assert!(server_events
        .iter()
        .any(|e| matches!(e, Event::RefusedRpc { rpc, .. } if rpc == "Stop")));
    assert!(coordinator_events
        .iter()
        .any(|e| matches!(e, Event::RefusedRpc { rpc, .. } if rpc == "InitialShard")));
    assert!(coordinator_events
        .iter()
        .any(|e| matches!(e, Event::Refused { reason, .. } if reason.contains("worker/7"))));
    for needle in ["replayed or stale", "job-2"] {
        assert!(
            server_events
                .iter()
                .any(|e| matches!(e, Event::Refused { reason, .. } if reason.contains(needle))),
            "no refused push with {needle:?}"
        );
    }
}
