//! Request memory is shared fairly: one principal's many connections announcing large
//! bodies cannot refuse service to another principal, and a body that arrives slower than
//! the minimum rate is cut long before the body timeout.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;

const MIB: usize = 1 << 20;

/// The head of an inference request announcing `length` body bytes.
fn head(token: &str, length: usize) -> Vec<u8> {
    format!(
        "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// Audit lines of `principal`'s requests refused for `reason`.
fn refusals(principal: &str, reason: &str) -> usize {
    audit_lines(&format!("\"reason\":\"{reason}\""))
        .iter()
        .filter(|l| l["principal"] == principal)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_cannot_hold_the_request_memory_of_the_others() {
    // A budget of 32 MiB for bodies of at most 4 MiB: the default share of a principal is
    // then one largest request with its decompression room, 8 MiB + 1.
    let mut setup = Setup::new();
    let mallory = setup.add_token("mallory", "[\"infer\"]", "");
    // The valid client's own principal: the audit sink is shared by every test of this
    // binary, and `serve::request_memory_is_bounded_across_requests` refuses alice's
    // requests for request memory on purpose, at times while this test runs.
    let carol = setup.add_token("carol", "[\"infer\"]", "");
    let server = setup
        .start(
            "[limits]
max_body_bytes = 4194304
max_decompressed_bytes = 4194304
max_request_memory_bytes = 33554432
min_body_bytes_per_second = 1048576
body_rate_grace_ms = 1000
body_timeout_ms = 30000
",
        )
        .await;
    let c = server.client();
    let stop = Arc::new(AtomicBool::new(false));
    let valid = valid_client(c.clone(), carol, stop.clone());

    // The attack as it was found: connections announcing the largest body and sending one
    // byte each, more of them (20) than the budget holds largest bodies (8). Reserved from
    // the announced length, they held the whole budget; now each holds what arrived.
    let mut attacks = Vec::new();
    for _ in 0..20 {
        let (c, mallory) = (c.clone(), mallory.clone());
        attacks.push(tokio::spawn(async move {
            let mut s = c.connect().await.unwrap();
            s.write_all(&head(&mallory, 4 * MIB)).await.unwrap();
            s.write_all(b"{").await.unwrap();
            s.flush().await.unwrap();
            tokio::time::timeout(Duration::from_secs(20), read_response(&mut s))
                .await
                .expect("a one-byte body was never cut")
                .unwrap()
        }));
    }
    // And connections that do send 3 MiB of their 4, then stall: at most two of them fit in
    // the share (each buffer is 4 MiB by then); the others are refused as they grow.
    let mut senders = Vec::new();
    for _ in 0..6 {
        let (c, mallory) = (c.clone(), mallory.clone());
        senders.push(tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(c.connect().await.unwrap());
            let writer = tokio::spawn(async move {
                let _ = write.write_all(&head(&mallory, 4 * MIB)).await;
                let chunk = vec![b' '; 64 << 10];
                for _ in 0..48 {
                    if write.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let _ = write.flush().await;
                // Kept open: the body stalls here.
                write
            });
            let r = tokio::time::timeout(Duration::from_secs(20), read_response(&mut read))
                .await
                .expect("a stalled body was never cut")
                .unwrap();
            drop(writer.await);
            r
        }));
    }

    let mut statuses = Vec::new();
    for t in attacks {
        statuses.push(t.await.unwrap());
    }
    let mut refused_while_sending = 0;
    for t in senders {
        let r = t.await.unwrap();
        if r.status == 503 {
            refused_while_sending += 1;
        }
        statuses.push(r);
    }
    stop.store(true, Ordering::Relaxed);
    let (served, failed) = valid.await.unwrap();
    println!("carol: {served} served, {failed} failed while mallory attacked");
    assert_eq!(failed, 0, "another principal's requests were refused");
    assert!(served >= 5, "only {served} requests of carol were served");

    // Every attacking request was refused for its share or cut for its slowness, each with
    // its own reason and audit line.
    let (mut share, mut slow) = (0, 0);
    for r in &statuses {
        match r.status {
            503 => {
                assert_eq!(r.header("retry-after"), Some("1"));
                assert!(r.error().contains("its share"), "{}", r.error());
                share += 1;
            }
            408 => {
                assert!(r.error().contains("slower than"), "{}", r.error());
                slow += 1;
            }
            other => panic!("an attacking request got {other}: {}", r.error()),
        }
    }
    println!("mallory: {share} requests refused for the share, {slow} cut as too slow");
    assert!(
        refused_while_sending >= 4,
        "only {refused_while_sending} of 6 bodies of 3 MiB were refused; the share holds 2"
    );
    assert_eq!(refusals("mallory", "request-memory-share"), share);
    assert_eq!(refusals("mallory", "body-too-slow"), slow);
    assert_eq!(refusals("carol", "request-memory"), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_minimum_rate_is_cut_before_the_body_timeout() {
    let mut setup = Setup::new();
    let trickler = setup.add_token("trickler", "[\"infer\"]", "");
    // The body timeout (60 s) is far past the safety bounds below: a cut within them is
    // the rate's.
    let server = setup
        .start(
            "[limits]
body_timeout_ms = 60000
min_body_bytes_per_second = 1000
body_rate_grace_ms = 1000
",
        )
        .await;
    let c = server.client();

    // A body trickled at 20 bytes a second, and one that sends nothing after its head.
    let mut trickle = c.connect().await.unwrap();
    trickle.write_all(&head(&trickler, 100_000)).await.unwrap();
    let mut silent = c.connect().await.unwrap();
    silent.write_all(&head(&trickler, 1_000)).await.unwrap();
    silent.flush().await.unwrap();
    let (mut read, mut write) = tokio::io::split(trickle);
    let dripping = tokio::spawn(async move {
        for _ in 0..1200 {
            if write.write_all(b" ").await.is_err() || write.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    for stream in [
        tokio::time::timeout(Duration::from_secs(20), read_response(&mut read)).await,
        tokio::time::timeout(Duration::from_secs(20), read_response(&mut silent)).await,
    ] {
        let r = stream
            .expect("a slow body was not cut by the minimum rate")
            .unwrap();
        assert_eq!(r.status, 408);
        assert!(
            r.error().contains("slower than 1000 bytes a second"),
            "{}",
            r.error()
        );
    }
    dripping.abort();
    assert_eq!(refusals("trickler", "body-too-slow"), 2);

    // A body that keeps to the rate is not cut: half of it, a pause of 1.5 s (past the
    // grace), the other half, which its first half bought the time for.
    let body = json_request(1, None);
    let mut steady = c.connect().await.unwrap();
    let (first, second) = body.split_at(body.len() / 2);
    steady
        .write_all(&head(&trickler, body.len()))
        .await
        .unwrap();
    steady.write_all(first).await.unwrap();
    steady.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    steady.write_all(second).await.unwrap();
    steady.flush().await.unwrap();
    let r = read_response(&mut steady).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    server.stop().await;
}
