//! Hostile clients against one server on loopback, while a well-behaved client keeps
//! querying it: oversized and gzip-bomb bodies, 100 000-deep JSON, huge declared shapes,
//! mismatched binary sizes, slowloris headers and bodies, silent TLS connections, a flood
//! past the rate limit, wrong tokens, a tampered package dropped into the repository, and
//! HTTP/2 rapid resets and CONTINUATION floods.
//! Every refusal must have its status and its audit line, the valid client must never
//! fail, and the process's peak memory must stay bounded (it is printed: run with
//! `--nocapture` to see it).

use crate::support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ward_package::OutputPolicy;

const CONFIG: &str = "poll_seconds = 1
[limits]
max_body_bytes = 8388608
max_decompressed_bytes = 16777216
max_compression_ratio = 20
header_timeout_ms = 1000
body_timeout_ms = 2000
handshake_timeout_ms = 1000
";

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn reasons_logged(reason: &str) -> usize {
    audit_lines(&format!("\"reason\":\"{reason}\"")).len()
}

/// Whether the server closes `stream` within `limit` (reads EOF or an error).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// One HTTP/2 frame: its 9-byte header, then `payload`.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

const H2_HEADERS: u8 = 0x1;
const H2_RST_STREAM: u8 = 0x3;
const H2_SETTINGS: u8 = 0x4;
const H2_GOAWAY: u8 = 0x7;
const H2_CONTINUATION: u8 = 0x9;
const H2_END_STREAM: u8 = 0x1;
const H2_END_HEADERS: u8 = 0x4;

/// The HPACK block of `GET https://localhost{path}`: static-table method and scheme, the
/// path and authority as literals (no indexing, no Huffman).
fn h2_get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x04, u8::try_from(path.len()).unwrap()];
    block.extend(path.as_bytes());
    block.extend([0x01, 9]);
    block.extend(b"localhost");
    block
}

/// Reads frames from `stream` until a GOAWAY (its error code), the end of the connection
/// (None), or `limit`.
async fn h2_goaway_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Result<Option<u32>, &'static str> {
    let deadline = Instant::now() + limit;
    loop {
        let mut head = [0u8; 9];
        match tokio::time::timeout_at(deadline.into(), stream.read_exact(&mut head)).await {
            Err(_) => return Err("no GOAWAY and still open"),
            Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        match tokio::time::timeout_at(deadline.into(), stream.read_exact(&mut payload)).await {
            Err(_) => return Err("no GOAWAY and still open"),
            Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
        }
        if head[3] == H2_GOAWAY && len >= 8 {
            return Ok(Some(u32::from_be_bytes(payload[4..8].try_into().unwrap())));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_serving_through_hostile_clients() {
    let mut setup = Setup::new();
    let flood = setup.add_token("flood", "[\"infer\"]", "rate_per_second = 5.0\nburst = 5");
    let server = setup.start(CONFIG).await;
    let c = server.client();
    let alice = setup.token("alice");
    let before = peak_rss_kib();

    // The well-behaved client, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let valid = support::valid_client(c.clone(), alice.clone(), stop.clone());

    // 1. A declared body of 1 GiB: refused from its Content-Length, before any byte is read.
    let head = format!("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\nContent-Length: 1073741824\r\n\r\n");
    let r = c.raw(head.as_bytes()).await.unwrap();
    assert_eq!(r.status, 413);
    assert!(
        r.error().contains("over the limit of 8388608"),
        "{}",
        r.error()
    );

    // 2. A chunked body that never ends: cut off at the limit.
    let mut stream = c.connect().await.unwrap();
    let head = format!("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 1 << 16, "1".repeat(1 << 16));
    for _ in 0..200 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let r = read_response(&mut stream).await.unwrap();
    assert_eq!(r.status, 413);

    // 3. A gzip bomb: 256 MiB of zeros in about 256 KiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let r = c
        .send(
            "POST",
            "/v2/models/mlp/infer",
            Some(&alice),
            &[("Content-Encoding", "gzip")],
            &bomb,
        )
        .await;
    assert_eq!(r.status, 413);
    assert!(
        r.error().contains("decompresses to more than"),
        "{}",
        r.error()
    );

    // 4. JSON nested 100 000 deep.
    let deep = format!(
        r#"{{"inputs":[{{"name":"data","shape":[1],"datatype":"FP32","data":{}0{}}}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let r = c
        .infer("/v2/models/mlp/infer", &alice, deep.as_bytes())
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("nested deeper than 32"), "{}", r.error());

    // 5. Huge declared shapes, and a binary size that would allocate 1 TiB.
    for body in [
        r#"{"inputs":[{"name":"data","shape":[4294967296,4294967296],"datatype":"FP32","data":[0]}]}"#.to_string(),
        r#"{"inputs":[{"name":"data","shape":[18446744073709551615,2],"datatype":"FP32","data":[0]}]}"#.to_string(),
        r#"{"inputs":[{"name":"data","shape":[1,784],"datatype":"FP32","parameters":{"binary_data_size":1099511627776}}]}"#.to_string(),
    ] {
        let len = body.len().to_string();
        let r = c.send("POST", "/v2/models/mlp/infer", Some(&alice), &[("Inference-Header-Content-Length", &len)], body.as_bytes()).await;
        assert_eq!(r.status, 400, "{body}: {}", String::from_utf8_lossy(&r.body));
    }

    // 6. Binary sizes that do not add up: too few bytes, too many, a lying header length.
    let head = br#"{"inputs":[{"name":"data","shape":[1,784],"datatype":"FP32","parameters":{"binary_data_size":3136}}]}"#;
    for (extra, header) in [
        (3000usize, head.len().to_string()),
        (3200, head.len().to_string()),
        (3136, "99999".to_string()),
    ] {
        let mut body = head.to_vec();
        body.extend(std::iter::repeat_n(0u8, extra));
        let r = c
            .send(
                "POST",
                "/v2/models/mlp/infer",
                Some(&alice),
                &[("Inference-Header-Content-Length", &header)],
                &body,
            )
            .await;
        assert_eq!(
            r.status,
            400,
            "{extra} {header}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    // 7. Slowloris: headers dripped a byte at a time, a body dripped, and TLS connections
    //    that never say hello. Each is closed by its timeout.
    let mut drips = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        drips.push(tokio::spawn(async move {
            let mut s = c.connect().await.unwrap();
            let started = Instant::now();
            let head = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            s.write_all(head).await.unwrap();
            for _ in 0..40 {
                if s.write_all(b"a").await.is_err() || s.flush().await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let closed = closed_within(&mut s, Duration::from_secs(5)).await;
            (closed, started.elapsed())
        }));
    }
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let mut slow_body = c.connect().await.unwrap();
    let head = format!("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\nContent-Length: 100000\r\n\r\n{{");
    slow_body.write_all(head.as_bytes()).await.unwrap();
    for d in drips {
        let (closed, took) = d.await.unwrap();
        assert!(closed, "a slowloris connection was kept open");
        assert!(took < Duration::from_secs(6), "{took:?}");
    }
    for mut s in silent {
        assert!(
            closed_within(&mut s, Duration::from_secs(3)).await,
            "a silent connection was kept open"
        );
    }
    let r = read_response(&mut slow_body).await.unwrap();
    assert_eq!(r.status, 408);

    // 8. A flood past the rate limit: 60 requests at once from one principal.
    let mut flood_tasks = Vec::new();
    for _ in 0..60 {
        let (c, flood) = (c.clone(), flood.clone());
        flood_tasks.push(tokio::spawn(async move {
            let r = c
                .infer("/v2/models/mlp/infer", &flood, &json_request(1, None))
                .await;
            (r.status, r.header("retry-after").map(str::to_string))
        }));
    }
    let mut limited = 0;
    for t in flood_tasks {
        let (status, retry) = t.await.unwrap();
        assert!(status == 200 || status == 429, "{status}");
        if status == 429 {
            limited += 1;
            assert!(retry.is_some());
        }
    }
    assert!(limited >= 50, "only {limited} of 60 were limited");

    // 9. Missing and wrong tokens.
    for i in 0..20 {
        let token = format!("ward_{i:064x}");
        assert_eq!(
            c.infer("/v2/models/mlp/infer", &token, b"{}").await.status,
            401
        );
    }
    assert_eq!(
        c.send("POST", "/v2/models/mlp/infer", None, &[], b"{}")
            .await
            .status,
        401
    );

    // 10. A tampered package dropped into the repository while serving.
    let v2 = setup.repo.join("mlp/2");
    write_mlp(&v2, MODEL, &setup.key, OutputPolicy::default(), 0.5);
    let weights = v2.join("weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    std::fs::write(&weights, bytes).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = c
        .infer("/v2/models/mlp/infer", &alice, &json_request(1, None))
        .await;
    assert_eq!(r.json()["model_version"], "1");
    assert!(audit_lines("package.refused").iter().any(|l| l["subject"]
        .as_str()
        .unwrap()
        .ends_with("mlp/2")
        && l["reason"] == "digest-mismatch"));

    // 11. HTTP/2 abuse on raw frames: a rapid reset (CVE-2023-44487: open a stream, cancel
    //     it, again and again) and a CONTINUATION flood (a header block that never ends).
    //     Each connection is sent a GOAWAY and closed long before its 100 000 streams or
    //     64 MiB of headers are through.
    let preface = [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        &h2_frame(H2_SETTINGS, 0, 0, &[]),
    ]
    .concat();
    let live = h2_get("/v2/health/live");
    let mut rapid = c.connect_http2().await.unwrap();
    rapid.write_all(&preface).await.unwrap();
    let mut pairs_sent = 0;
    let mut frames = Vec::new();
    for i in 0..100_000u32 {
        let id = 2 * i + 1;
        frames.extend(h2_frame(
            H2_HEADERS,
            H2_END_HEADERS | H2_END_STREAM,
            id,
            &live,
        ));
        frames.extend(h2_frame(H2_RST_STREAM, 0, id, &8u32.to_be_bytes()));
        if frames.len() >= 16 << 10 {
            if rapid.write_all(&frames).await.is_err() {
                break;
            }
            frames.clear();
            pairs_sent = i + 1;
        }
    }
    let closed = h2_goaway_within(&mut rapid, Duration::from_secs(5)).await;
    println!("rapid reset: {pairs_sent} streams opened and cancelled, then {closed:?}");
    assert!(
        closed.is_ok() && pairs_sent < 100_000,
        "rapid reset: {closed:?}, {pairs_sent} sent"
    );

    let mut flood = c.connect_http2().await.unwrap();
    flood.write_all(&preface).await.unwrap();
    flood
        .write_all(&h2_frame(H2_HEADERS, 0, 1, &live))
        .await
        .unwrap();
    let fragment = vec![0x40u8; 16 << 10];
    let mut header_bytes = 0;
    for _ in 0..4096 {
        if flood
            .write_all(&h2_frame(H2_CONTINUATION, 0, 1, &fragment))
            .await
            .is_err()
        {
            break;
        }
        header_bytes += fragment.len();
    }
    let closed = h2_goaway_within(&mut flood, Duration::from_secs(5)).await;
    println!("CONTINUATION flood: {header_bytes} header bytes sent, then {closed:?}");
    assert!(
        closed.is_ok() && header_bytes < 64 << 20,
        "CONTINUATION flood: {closed:?}, {header_bytes} sent"
    );

    stop.store(true, Ordering::Relaxed);
    let (served, failed) = valid.await.unwrap();
    let peak = peak_rss_kib();
    println!(
        "hostile run: valid client served {} requests, {} failed; peak RSS {} MiB (before the attacks {} MiB)",
        served,
        failed,
        peak / 1024,
        before / 1024
    );
    assert_eq!(failed, 0);
    assert!(served >= 20);
    // The largest allowed allocations are a 8 MiB body and a 16 MiB decompression: the
    // attacks must not have grown the process by anything like their declared sizes.
    assert!(peak < 1024 * 1024, "peak RSS {} MiB", peak / 1024);

    for (reason, at_least) in [
        ("body-too-large", 2),
        ("decompressed-too-large", 1),
        ("json-too-deep", 1),
        ("malformed-request", 6),
        ("timeout", 1),
        ("rate-limited", 50),
        ("unauthenticated", 21),
    ] {
        let n = reasons_logged(reason);
        assert!(
            n >= at_least,
            "{reason}: {n} audit lines, expected at least {at_least}"
        );
    }
    server.stop().await;
}
