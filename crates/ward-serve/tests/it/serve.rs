//! The server end to end over TLS: the protocol, authentication, the output policy, rate
//! limits, the repository, mTLS and graceful shutdown.

use crate::support;

use std::time::Duration;

use support::*;
use ward_package::OutputPolicy;
use ward_serve::ServeConfig;

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_and_authentication() {
    let setup = Setup::new();
    let server = setup.start("").await;
    let c = server.client();
    let alice = setup.token("alice");
    let guest = setup.token("guest");

    assert_eq!(c.get("/v2/health/live", Some(&alice)).await.status, 200);
    assert_eq!(c.get("/v2/health/ready", Some(&guest)).await.status, 200);
    assert_eq!(
        c.get("/v2/models/mlp/ready", Some(&alice)).await.status,
        200
    );
    assert_eq!(
        c.get("/v2/models/mlp/versions/1/ready", Some(&alice))
            .await
            .status,
        200
    );
    assert_eq!(
        c.get("/v2/models/nope/ready", Some(&alice)).await.status,
        404
    );

    let server_meta = c.get("/v2", Some(&alice)).await.json();
    assert_eq!(server_meta["name"], "ward");
    assert_eq!(
        server_meta["extensions"],
        serde_json::json!(["binary_tensor_data"])
    );
    let meta = c.get("/v2/models/mlp", Some(&alice)).await;
    assert_eq!(meta.status, 200);
    let meta = meta.json();
    assert_eq!(meta["versions"], serde_json::json!(["1"]));
    assert_eq!(
        meta["inputs"],
        serde_json::json!([{"name": "data", "datatype": "FP32", "shape": [-1, 784]}])
    );
    assert_eq!(meta["outputs"][0]["name"], OUTPUT);
    assert_eq!(
        c.get("/v2/models/mlp/versions/1", Some(&alice))
            .await
            .json(),
        meta
    );
    assert_eq!(
        c.get("/v2/models/mlp/versions/2", Some(&alice))
            .await
            .status,
        404
    );

    // No token, a wrong token, a token without the scope.
    for token in [None, Some("ward_wrong"), Some("")] {
        let r = c.get("/v2/models/mlp", token).await;
        assert_eq!(r.status, 401, "{token:?}");
        assert_eq!(r.error(), "missing or invalid bearer token");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    let r = c.get("/v2/models/mlp", Some(&guest)).await;
    assert_eq!(
        (r.status, r.error().as_str()),
        (403, "the token does not allow metadata")
    );
    let r = c
        .infer("/v2/models/mlp/infer", &guest, &json_request(1, None))
        .await;
    assert_eq!(r.status, 403);
    // Unknown paths: 401 without a token, 404 with one. No Triton control API exists.
    assert_eq!(c.get("/v2/repository/index", None).await.status, 401);
    assert_eq!(
        c.send(
            "POST",
            "/v2/repository/models/mlp/load",
            Some(&alice),
            &[],
            b""
        )
        .await
        .status,
        404
    );
    assert_eq!(c.get("/v2/logging", Some(&alice)).await.status, 404);

    let lines = audit_lines("\"route\":\"/v2/health/ready\"");
    assert!(lines
        .iter()
        .any(|l| l["principal"] == "guest" && l["decision"] == "allow"));
    let denied = audit_lines("\"reason\":\"forbidden\"");
    assert!(denied
        .iter()
        .any(|l| l["principal"] == "guest" && l["status"] == 403));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_binary_inference_match_predict() {
    let setup = Setup::new();
    let server = setup.start("[output]\nprecision = \"full\"\n").await;
    let c = server.client();
    let alice = setup.token("alice");
    let expected = expected_first_row(&setup.repo.join("mlp/1"), &setup.trust);

    // JSON in, JSON out, with the id echoed; versioned and unversioned paths.
    for path in ["/v2/models/mlp/infer", "/v2/models/mlp/versions/1/infer"] {
        let r = c.infer(path, &alice, &json_request(2, Some("req-7"))).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(
            (
                v["model_name"].as_str(),
                v["model_version"].as_str(),
                v["id"].as_str()
            ),
            (Some("mlp"), Some("1"), Some("req-7"))
        );
        assert_eq!(v["outputs"][0]["shape"], serde_json::json!([2, 10]));
        assert_eq!(v["outputs"][0]["datatype"], "FP32");
        let got = floats(&v["outputs"][0]["data"]);
        // A batch of two may take another kernel path than one row: the last bit may differ.
        assert!(
            close(&got[..10], &expected, 1e-6),
            "{got:?} vs {expected:?}"
        );
        assert!(close(&got[10..], &expected, 1e-6));
    }

    // Binary in (no Content-Type at all, as tritonclient sends), binary out.
    let (input, _) = fixture_io();
    let row: Vec<u8> = input.bytes()[..784 * 4].to_vec();
    let head = br#"{"inputs":[{"name":"data","shape":[1,784],"datatype":"FP32","parameters":{"binary_data_size":3136}}],"outputs":[{"name":"mlp0_softmax0_output","parameters":{"binary_data":true}}]}"#;
    let mut body = head.to_vec();
    body.extend_from_slice(&row);
    let len = head.len().to_string();
    let r = c
        .send(
            "POST",
            "/v2/models/mlp/infer",
            Some(&alice),
            &[("Inference-Header-Content-Length", &len)],
            &body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let n: usize = r
        .header("inference-header-content-length")
        .unwrap()
        .parse()
        .unwrap();
    let v = r.json();
    assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 40);
    let got: Vec<f32> = r.body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(close(&got, &expected, 0.0));

    // gzip request and gzip response.
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json_request(1, None)).unwrap();
    let compressed = gz.finish().unwrap();
    let r = c
        .send(
            "POST",
            "/v2/models/mlp/infer",
            Some(&alice),
            &[("Content-Encoding", "gzip"), ("Accept-Encoding", "gzip")],
            &compressed,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut plain).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert!(close(&floats(&v["outputs"][0]["data"]), &expected, 0.0));
    // Metadata is never compressed (the tritonclient aio trap).
    let r = c
        .send(
            "GET",
            "/v2/models/mlp",
            Some(&alice),
            &[("Accept-Encoding", "gzip, deflate, br")],
            b"",
        )
        .await;
    assert_eq!(r.header("content-encoding"), None);

    // The served output agrees with MXNet's own output for the fixture.
    let (_, mxnet) = fixture_io();
    assert!(close(&expected, &mxnet.to_f32_vec()[..10], 1e-5));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_say_what_is_wrong() {
    let setup = Setup::new();
    let server = setup.start("").await;
    let c = server.client();
    let alice = setup.token("alice");
    // One input `name` of `shape` and `datatype`, `count` copies of `value`, then `tail`.
    let one = |name: &str, shape: &str, datatype: &str, value: &str, count: usize, tail: &str| {
        format!(
            r#"{{"inputs":[{{"name":"{name}","shape":{shape},"datatype":"{datatype}","data":[{}]}}]{tail}}}"#,
            vec![value; count].join(",")
        )
    };
    let infer = "/v2/models/mlp/infer";
    let good = String::from_utf8(json_request(1, None)).unwrap();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/v2/models/nope/infer",
            good.clone(),
            404,
            "unknown model or version",
        ),
        (
            "/v2/models/mlp/versions/9/infer",
            good,
            404,
            "unknown model or version",
        ),
        (
            infer,
            one("data", "[1,783]", "FP32", "0", 1, ""),
            400,
            "data has 1 elements",
        ),
        (
            infer,
            one("data", "[1,783]", "FP32", "0", 783, ""),
            400,
            "dim 1 is 783, the model expects 784",
        ),
        (
            infer,
            one("data", "[1,784]", "FP64", "0", 784, ""),
            400,
            "dtype is float64, the model expects float32",
        ),
        (
            infer,
            one("pixels", "[1]", "FP32", "0", 1, ""),
            400,
            "\"pixels\" is not an input",
        ),
        (
            infer,
            one("data", "[1,784]", "FP32", "1000", 784, ""),
            400,
            "range",
        ),
        (
            infer,
            one(
                "data",
                "[1,784]",
                "FP32",
                "0",
                784,
                r#","outputs":[{"name":"secret"}]"#,
            ),
            400,
            "unknown output \"secret\"",
        ),
        (
            infer,
            "not json".into(),
            400,
            "not a valid inference request",
        ),
    ];
    for (path, body, status, needle) in cases {
        let r = c.infer(path, &alice, body.as_bytes()).await;
        assert_eq!(
            r.status,
            status,
            "{needle}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let message = r.error();
        assert!(message.contains(needle), "{needle}: {message}");
        // Errors never carry the server's paths.
        assert!(
            !message.contains(&*setup.dir.path().to_string_lossy()),
            "{message}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_policy_is_enforced_and_only_tightened() {
    let setup = Setup::new();
    // The package asks for 4 decimals and top-2; the server's "full" cannot loosen that.
    let dir = setup.repo.join("mlp-top2").join("1");
    write_mlp(
        &dir,
        "mlp-top2",
        &setup.key,
        OutputPolicy {
            precision: Some(4),
            top_k: Some(2),
            label_only: false,
        },
        0.0,
    );
    let labels = setup.repo.join("mlp-labels").join("1");
    write_mlp(
        &labels,
        "mlp-labels",
        &setup.key,
        OutputPolicy::default(),
        0.0,
    );
    let server = setup
        .start("[output]\nprecision = \"full\"\n[model.mlp-labels.output]\nlabel_only = true\n")
        .await;
    let c = server.client();
    let alice = setup.token("alice");
    let expected = expected_first_row(&setup.repo.join("mlp/1"), &setup.trust);

    let r = c
        .infer("/v2/models/mlp-top2/infer", &alice, &json_request(1, None))
        .await;
    let got = floats(&r.json()["outputs"][0]["data"]);
    assert_eq!(got.iter().filter(|&&v| v != 0.0).count(), 2, "{got:?}");
    let mut order: Vec<usize> = (0..10).collect();
    order.sort_by(|&a, &b| expected[b].partial_cmp(&expected[a]).unwrap());
    for &i in &order[..2] {
        assert_eq!(got[i], ((expected[i] as f64 * 1e4).round() / 1e4) as f32);
    }

    let r = c
        .infer(
            "/v2/models/mlp-labels/infer",
            &alice,
            &json_request(3, None),
        )
        .await;
    let v = r.json();
    assert_eq!(v["outputs"][0]["datatype"], "INT64");
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([3]));
    assert_eq!(
        v["outputs"][0]["data"],
        serde_json::json!([order[0], order[0], order[0]])
    );
    let meta = c.get("/v2/models/mlp-labels", Some(&alice)).await.json();
    assert_eq!(
        meta["outputs"][0],
        serde_json::json!({"name": OUTPUT, "datatype": "INT64", "shape": [-1]})
    );
    server.stop().await;

    // With no configuration, the server's default policy rounds to 3 decimals.
    let server = setup.start("").await;
    let r = server
        .client()
        .infer("/v2/models/mlp/infer", &alice, &json_request(1, None))
        .await;
    let got = floats(&r.json()["outputs"][0]["data"]);
    let rounded: Vec<f32> = expected
        .iter()
        .map(|&v| ((v as f64 * 1e3).round() / 1e3) as f32)
        .collect();
    assert_eq!(got, rounded);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extraction_pattern_is_audited_and_then_denied() {
    let mut setup = Setup::new();
    let bob = setup.add_token("bob", r#"["infer"]"#, "");
    let server = setup.start("[extraction]\naction = \"deny\"\n").await;
    let c = server.client();
    let alice = setup.token("alice");
    // A Jacobian-augmentation style stream (Papernot et al.): four seeds near the fixture's
    // row, then each query a small signed step from an earlier one, ten rows a request.
    let (input, _) = fixture_io();
    let row = input.to_f32_vec()[..784].to_vec();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut coin = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state & 1 == 0 {
            1.0f32
        } else {
            -1.0
        }
    };
    let mut known: Vec<Vec<f32>> = (0..4)
        .map(|_| row.iter().map(|v| v + 0.5 * coin()).collect())
        .collect();
    let mut denied_after = None;
    for request in 0..60 {
        let rows: Vec<Vec<f32>> = (0..10)
            .map(|i| {
                let base = &known[(request * 10 + i) % known.len()];
                base.iter().map(|v| v + 0.05 * coin()).collect()
            })
            .collect();
        let data: Vec<f32> = rows.iter().flatten().copied().collect();
        let body = serde_json::json!({"inputs": [{"name": "data", "shape": [10, 784], "datatype": "FP32", "data": data}]});
        let r = c
            .infer(
                &format!("/v2/models/{MODEL}/infer"),
                &alice,
                body.to_string().as_bytes(),
            )
            .await;
        if r.status == 403 {
            assert!(r.error().contains("model-extraction"), "{}", r.error());
            denied_after = Some(request);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.error());
        known.extend(rows);
    }
    let denied_after = denied_after.expect("the synthetic stream was never denied");
    println!("extraction pattern denied after {denied_after} requests");
    let suspected = audit_lines("\"event\":\"extraction.suspected\"");
    assert!(
        suspected.iter().any(|l| l["signer"] == "alice"
            && l["subject"] == MODEL
            && l["reason"] == "extraction-pattern"),
        "{suspected:?}"
    );
    assert!(audit_lines("\"reason\":\"extraction-suspected\"")
        .iter()
        .any(|l| l["principal"] == "alice" && l["status"] == 403));
    // The flag is counted once, for the model, where an alert can watch it.
    let m = c.get("/metrics", Some(&alice)).await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8(m.body).unwrap();
    assert!(
        text.contains(&format!(
            "ward_extraction_suspected_total{{model=\"{MODEL}\"}} 1"
        )),
        "{text}"
    );
    // Only that principal's stream is refused: another one's queries are answered.
    let r = c
        .infer(
            &format!("/v2/models/{MODEL}/infer"),
            &bob,
            &json_request(1, None),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.error());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_budgets_answer_429_with_retry_after() {
    let mut setup = Setup::new();
    // Bob's own bucket holds all four of his requests, however fast they follow each
    // other: with the service's burst of 2 and 100 a second, a fast machine answered
    // his third within 10 ms and refused it for the rate instead of testing the budget.
    let bob = setup.add_token(
        "bob",
        "[\"infer\"]",
        "daily_budget = 3\nrate_per_second = 100.0\nburst = 10",
    );
    let server = setup
        .start("[rate]\nrate_per_second = 0.5\nburst = 2\n")
        .await;
    let c = server.client();
    let alice = setup.token("alice");
    let body = json_request(1, None);
    assert_eq!(
        c.infer("/v2/models/mlp/infer", &alice, &body).await.status,
        200
    );
    assert_eq!(
        c.infer("/v2/models/mlp/infer", &alice, &body).await.status,
        200
    );
    let r = c.infer("/v2/models/mlp/infer", &alice, &body).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert!(r.error().contains("rate limit"));
    // Another principal has its own bucket, and a budget counted in rows (queries).
    let two_rows = json_request(2, None);
    assert_eq!(
        c.infer("/v2/models/mlp/infer", &bob, &two_rows)
            .await
            .status,
        200
    );
    let r = c.infer("/v2/models/mlp/infer", &bob, &two_rows).await;
    assert_eq!(r.status, 429);
    assert!(
        r.error().contains("holds 2 queries, but only 1"),
        "{}",
        r.error()
    );
    assert_eq!(
        c.infer("/v2/models/mlp/infer", &bob, &body).await.status,
        200
    );
    let r = c.infer("/v2/models/mlp/infer", &bob, &body).await;
    assert_eq!(r.status, 429);
    assert!(
        r.error().contains("daily query budget of 3 is spent"),
        "{}",
        r.error()
    );
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
    let lines = audit_lines("\"reason\":\"budget-exhausted\"");
    assert!(lines
        .iter()
        .any(|l| l["principal"] == "bob" && l["status"] == 429));
    // The metrics count the refusals by reason.
    let m = c.get("/metrics", Some(&alice)).await;
    let text = String::from_utf8(m.body).unwrap();
    assert!(
        text.contains("ward_rejections_total{reason=\"rate-limited\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ward_rejections_total{reason=\"budget-exhausted\"} 2"),
        "{text}"
    );
    assert_eq!(c.get("/metrics", Some(&bob)).await.status, 403);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_new_version_is_refused_while_the_old_one_serves() {
    let setup = Setup::new();
    let server = setup.start("[output]\nprecision = \"full\"\n").await;
    let c = server.client();
    let alice = setup.token("alice");
    let v1 = expected_first_row(&setup.repo.join("mlp/1"), &setup.trust);

    // Version 2, signed, then tampered: one byte of its weights changed.
    let v2 = setup.repo.join("mlp/2");
    write_mlp(&v2, MODEL, &setup.key, OutputPolicy::default(), 0.5);
    let weights = v2.join("weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let report = server.repository.scan();
    assert_eq!(report.refused, vec!["mlp/2".to_string()]);
    let r = c
        .infer("/v2/models/mlp/infer", &alice, &json_request(1, None))
        .await;
    assert_eq!(r.json()["model_version"], "1");
    assert!(close(&floats(&r.json()["outputs"][0]["data"]), &v1, 0.0));
    assert_eq!(
        c.get("/v2/models/mlp/versions/2/ready", Some(&alice))
            .await
            .status,
        404
    );

    // Restored to what was signed, it is verified and becomes the latest.
    std::fs::remove_dir_all(&v2).unwrap();
    write_mlp(&v2, MODEL, &setup.key, OutputPolicy::default(), 0.5);
    let report = server.repository.scan();
    assert_eq!(report.loaded, vec!["mlp/2".to_string()]);
    let r = c
        .infer("/v2/models/mlp/infer", &alice, &json_request(1, None))
        .await;
    assert_eq!(r.json()["model_version"], "2");
    assert!(!close(&floats(&r.json()["outputs"][0]["data"]), &v1, 1e-6));

    // A tampered replacement of a served version leaves the served one in place.
    std::fs::write(v2.join("ward.json"), b"{}").unwrap();
    assert_eq!(server.repository.scan().refused, vec!["mlp/2".to_string()]);
    assert_eq!(
        c.get("/v2/models/mlp/versions/2/ready", Some(&alice))
            .await
            .status,
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_picks_up_a_new_version() {
    let setup = Setup::new();
    let server = setup.start("poll_seconds = 1\n").await;
    let c = server.client();
    let alice = setup.token("alice");
    write_mlp(
        &setup.repo.join("mlp/3"),
        MODEL,
        &setup.key,
        OutputPolicy::default(),
        0.0,
    );
    let mut ready = false;
    for _ in 0..50 {
        if c.get("/v2/models/mlp/versions/3/ready", Some(&alice))
            .await
            .status
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "version 3 was not picked up");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refusals() {
    let setup = Setup::new();
    let refuse = |config: ServeConfig| async move {
        ward_serve::Server::bind(config)
            .await
            .err()
            .unwrap()
            .to_string()
    };
    let mut c = setup.config("");
    c.listen = Some("0.0.0.0:0".parse().unwrap());
    c.insecure_plaintext = true;
    assert!(refuse(c).await.contains("only on a loopback address"));
    let mut c = setup.config("");
    c.tls.cert = None;
    assert!(refuse(c).await.contains("no TLS certificate"));
    let mut c = setup.config("");
    c.tokens = None;
    assert!(refuse(c).await.contains("no tokens file"));
    let mut c = setup.config("");
    c.trust = None;
    assert!(refuse(c).await.contains("no trust policy"));
    // Thread counts past four per core: refused when the file is parsed ([limits]: the
    // CLI starts its runtime with io_threads before binding) and at bind (a model's).
    let many = ward_serve::limits::max_threads() + 1;
    for key in ["max_concurrency", "io_threads"] {
        let err = ServeConfig::parse(&format!("[limits]\n{key} = {many}")).unwrap_err();
        assert!(err.contains(&format!("{key} = {many} is over")), "{err}");
    }
    let mut c = setup.config("");
    c.limits.io_threads = many;
    let err = refuse(c).await;
    assert!(err.contains("[limits] io_threads"), "{err}");
    let c = setup.config(&format!("[model.mlp]\nmax_concurrency = {many}"));
    let err = refuse(c).await;
    assert!(err.contains("[model.mlp] max_concurrency"), "{err}");

    // A package signed by a key the policy does not trust is not served; the server runs.
    let other = tempfile::tempdir().unwrap();
    ward_package::signature::write_key_pair(other.path(), "other").unwrap();
    write_mlp(
        &setup.repo.join("rogue/1"),
        "rogue",
        &other.path().join("other.key"),
        OutputPolicy::default(),
        0.0,
    );
    // A package under another model's name is not served either.
    write_mlp(
        &setup.repo.join("alias/1"),
        MODEL,
        &setup.key,
        OutputPolicy::default(),
        0.0,
    );
    let server = setup.start("").await;
    let alice = setup.token("alice");
    assert_eq!(
        server
            .client()
            .get("/v2/models/rogue/ready", Some(&alice))
            .await
            .status,
        404
    );
    assert_eq!(
        server
            .client()
            .get("/v2/models/alias/ready", Some(&alice))
            .await
            .status,
        404
    );
    assert_eq!(
        server
            .client()
            .get("/v2/models/mlp/ready", Some(&alice))
            .await
            .status,
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_on_loopback_only_when_asked() {
    let setup = Setup::new();
    let mut config = setup.config("");
    config.insecure_plaintext = true;
    let server = Running::start(config, setup.tls.join("ca.pem")).await;
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&request(
        "GET",
        "/v2/health/live",
        Some(&setup.token("alice")),
        &[],
        b"",
    ))
    .await
    .unwrap();
    let r = read_response(&mut tcp).await.unwrap();
    assert_eq!(r.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_and_can_name_the_principal() {
    let setup = Setup::new();
    // Setup's client certificate carries the DNS name "client".
    setup.add_certificate_principal("scorer", "client", r#"["infer", "metadata"]"#);
    // A certificate entry without mutual TLS could never match: refused at start.
    let err = ward_serve::Server::bind(setup.config(""))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("names a client certificate") && err.contains("--client-ca"),
        "{err}"
    );

    let mut config = setup.config("");
    config.tls.client_ca = Some(setup.tls.join("ca.pem"));
    let server = Running::start(config, setup.tls.join("ca.pem")).await;
    let alice = setup.token("alice");
    let without = server.client();
    let refused = match without
        .raw(&request("GET", "/v2/health/live", Some(&alice), &[], b""))
        .await
    {
        Err(_) => true,
        Ok(r) => r.status == 0,
    };
    assert!(refused, "a client without a certificate was served");
    let with = Client::new(
        server.addr,
        &setup.tls.join("ca.pem"),
        Some((&setup.tls.join("client.pem"), &setup.tls.join("client.key"))),
    );
    // A token still decides who the caller is.
    assert_eq!(with.get("/v2/health/live", Some(&alice)).await.status, 200);
    let metrics = with.get("/metrics", Some(&alice)).await;
    assert_eq!(metrics.status, 200);
    // Without one, the certificate's name is the principal, with that entry's scopes.
    let r = with.get(&format!("/v2/models/{MODEL}"), None).await;
    assert_eq!(r.status, 200, "{}", r.error());
    let r = with
        .send(
            "POST",
            &format!("/v2/models/{MODEL}/infer"),
            None,
            &[],
            &json_request(1, Some("by-certificate")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.error());
    assert_eq!(r.json()["id"], "by-certificate");
    let audited = audit_lines("\"principal\":\"scorer\"");
    assert!(
        audited.iter().any(
            |l| l["route"].as_str().is_some_and(|r| r.ends_with("/infer")) && l["status"] == 200
        ),
        "{audited:?}"
    );
    // The line holds the fields it always has, in their order, and nothing more (log
    // pipelines read them).
    let line = audit_texts("\"principal\":\"scorer\"")
        .into_iter()
        .find(|l| l.contains("/infer"))
        .unwrap();
    let keys: Vec<&str> = line
        .split("\":")
        .filter_map(|part| part.rsplit_once(['{', ',']).map(|(_, k)| k))
        .filter_map(|k| k.strip_prefix('"'))
        .collect();
    assert_eq!(
        keys[..],
        [
            "event",
            "principal",
            "method",
            "route",
            "model",
            "version",
            "inputs",
            "name",
            "shape",
            "bytes",
            "status",
            "latency_ms",
            "decision"
        ],
        "{line}"
    );
    assert_eq!(with.get("/metrics", None).await.status, 403);
    // A wrong token is not rescued by the certificate.
    assert_eq!(
        with.get(&format!("/v2/models/{MODEL}"), Some("ward_wrong"))
            .await
            .status,
        401
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight() {
    use tokio::io::AsyncWriteExt;
    let setup = Setup::new();
    let mut server = setup.start("").await;
    let c = server.client();
    let body = json_request(1, None);
    let full = request(
        "POST",
        "/v2/models/mlp/infer",
        Some(&setup.token("alice")),
        &[],
        &body,
    );
    let (first, rest) = full.split_at(full.len() - 100);
    let mut stream = c.connect().await.unwrap();
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let task = server.begin_shutdown();
    // New connections are no longer accepted (once the accept loop has seen the signal)...
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.connect().await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the listener still accepts after shutdown began");
    // ...but the request in flight completes.
    stream.write_all(rest).await.unwrap();
    stream.flush().await.unwrap();
    let r = read_response(&mut stream).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_batching_gives_each_request_its_own_rows() {
    let setup = Setup::new();
    let server = setup
        .start("[output]\nprecision = \"full\"\n[model.mlp.batching]\nmax_batch_size = 8\nmax_queue_delay_ms = 20\n")
        .await;
    let c = server.client();
    let alice = setup.token("alice");
    let (input, _) = fixture_io();
    let rows = input.to_f32_vec();
    let expected = {
        let trust =
            ward_package::Trust::Policy(ward_package::TrustPolicy::load(&setup.trust).unwrap());
        let p = ward_exec::LoadedPackage::open(
            &setup.repo.join("mlp/1"),
            &trust,
            &Default::default(),
            std::sync::Arc::new(ward_exec::TractBackend::new(1).unwrap()),
        )
        .unwrap();
        p.predict(vec![("data".into(), input.clone())]).unwrap()[0]
            .1
            .to_f32_vec()
    };
    let mut tasks = Vec::new();
    for i in 0..4 {
        let c = c.clone();
        let alice = alice.clone();
        let row = rows[i * 784..(i + 1) * 784].to_vec();
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"inputs": [{"name": "data", "shape": [1, 784], "datatype": "FP32", "data": row}]});
            c.infer("/v2/models/mlp/infer", &alice, body.to_string().as_bytes()).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        let got = floats(&r.json()["outputs"][0]["data"]);
        assert!(
            close(&got, &expected[i * 10..(i + 1) * 10], 1e-6),
            "row {i}"
        );
    }
    // The metrics show the cost table the batcher chooses from, timed at load.
    let m = c.get("/metrics", Some(&alice)).await;
    let text = String::from_utf8(m.body).unwrap();
    for rows in [1, 2, 4, 8] {
        let series =
            format!("ward_batch_seconds_per_row{{model=\"mlp\",version=\"1\",rows=\"{rows}\"}}");
        assert!(text.contains(&series), "{series} in {text}");
    }
    server.stop().await;
}

/// An HTTP/2 connection (offered by ALPN) to `addr`, and the task that drives it, which
/// ends when the connection closes.
async fn http2_connect<B>(
    setup: &Setup,
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = Client::new(addr, &setup.tls.join("ca.pem"), None)
        .connect_http2()
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(conn))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_and_served() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let setup = Setup::new();
    let server = setup.start("").await;
    let alice = setup.token("alice");
    let (mut sender, _conn) = http2_connect::<Full<Bytes>>(&setup, server.addr).await;
    // Two requests on the one connection: metadata, then an inference.
    let request = hyper::Request::get(format!("https://localhost/v2/models/{MODEL}"))
        .header("authorization", format!("Bearer {alice}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let request = hyper::Request::post(format!("https://localhost/v2/models/{MODEL}/infer"))
        .header("authorization", format!("Bearer {alice}"))
        .body(Full::new(Bytes::from(json_request(1, Some("h2")))))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], "h2");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_slow_requests_are_not() {
    use http_body_util::channel::Channel;
    use http_body_util::{Either, Full};
    use hyper::body::Bytes;
    type Body = Either<Full<Bytes>, Channel<Bytes, std::convert::Infallible>>;
    let setup = Setup::new();
    let server = setup.start("[limits]\nidle_timeout_ms = 400\n").await;
    let alice = setup.token("alice");
    let metadata = || {
        hyper::Request::get(format!("https://localhost/v2/models/{MODEL}"))
            .header("authorization", format!("Bearer {alice}"))
            .body(Body::Left(Full::new(Bytes::new())))
            .unwrap()
    };

    // An HTTP/2 connection that has answered a request, then sits idle, gets a GOAWAY and
    // is closed.
    let (mut idle, idle_conn) = http2_connect::<Body>(&setup, server.addr).await;
    assert_eq!(idle.send_request(metadata()).await.unwrap().status(), 200);
    let closed = tokio::time::timeout(Duration::from_secs(5), idle_conn).await;
    assert!(closed.is_ok(), "the idle HTTP/2 connection is still open");
    assert!(idle.send_request(metadata()).await.is_err());

    // A request in progress is not idle: its body sent in two halves 1 s apart (within the
    // body timeout, past the idle timeout) is answered, and the connection stays open for
    // the next request.
    let (mut busy, busy_conn) = http2_connect::<Body>(&setup, server.addr).await;
    let body = json_request(1, Some("slow"));
    let (mut upload, channel) = Channel::<Bytes, std::convert::Infallible>::new(2);
    let request = hyper::Request::post(format!("https://localhost/v2/models/{MODEL}/infer"))
        .header("authorization", format!("Bearer {alice}"))
        .body(Body::Right(channel))
        .unwrap();
    let response = tokio::spawn(busy.send_request(request));
    let (first, second) = body.split_at(body.len() / 2);
    upload
        .send_data(Bytes::copy_from_slice(first))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    upload
        .send_data(Bytes::copy_from_slice(second))
        .await
        .unwrap();
    drop(upload);
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert!(!busy_conn.is_finished(), "the connection in use was closed");
    assert_eq!(busy.send_request(metadata()).await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_give_back_their_queue_places() {
    use tokio::io::AsyncWriteExt;
    let setup = Setup::new();
    let server = setup
        .start("[limits]\nmax_concurrency = 1\nmax_queue = 2\n")
        .await;
    let c = server.client();
    let alice = setup.token("alice");
    // Big batches, so that requests queue behind each other; each client sends its request
    // and goes away without waiting for the answer.
    let rows = 2048;
    let head = format!(
        r#"{{"inputs":[{{"name":"data","shape":[{rows},784],"datatype":"FP32","parameters":{{"binary_data_size":{}}}}}]}}"#,
        rows * 784 * 4
    );
    let mut body = head.clone().into_bytes();
    body.extend(std::iter::repeat_n(0u8, rows * 784 * 4));
    let len = head.len().to_string();
    let raw = request(
        "POST",
        "/v2/models/mlp/infer",
        Some(&alice),
        &[("Inference-Header-Content-Length", &len)],
        &body,
    );
    for _ in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (c, raw) = (c.clone(), raw.clone());
            tasks.push(tokio::spawn(async move {
                let mut stream = c.connect().await.unwrap();
                stream.write_all(&raw).await.unwrap();
                stream.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(stream);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    // Once the work already started is done, the model takes requests again.
    let mut status = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = c
            .infer("/v2/models/mlp/infer", &alice, &json_request(1, None))
            .await
            .status;
        if status == 200 {
            break;
        }
    }
    assert_eq!(
        status, 200,
        "the model's queue stayed full after its clients left"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection() {
    let setup = Setup::new();
    let server = setup
        .start("[limits]\nmax_connections_per_address = 2\n")
        .await;
    let c = server.client();
    let alice = setup.token("alice");
    // Two idle connections hold this address's share.
    let first = c.connect().await.unwrap();
    let second = c.connect().await.unwrap();
    // A third is closed before its TLS handshake ends.
    assert!(
        c.connect().await.is_err(),
        "a third connection was accepted"
    );
    // Once one closes, the address may connect again.
    drop(first);
    let mut status = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(r) = c
            .raw(&request("GET", "/v2/health/ready", Some(&alice), &[], b""))
            .await
        {
            status = r.status;
            break;
        }
    }
    assert_eq!(status, 200);
    drop(second);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_memory_is_bounded_across_requests() {
    use tokio::io::AsyncWriteExt;
    let setup = Setup::new();
    // With a budget this small, one principal's share is the whole budget.
    let server = setup
        .start("[limits]\nmax_request_memory_bytes = 1048576\n")
        .await;
    let c = server.client();
    let alice = setup.token("alice");
    // A client declares 900 KB and sends 800 KB of it: its buffer (900 KB once it is past
    // 512 KiB) holds most of the budget while it waits for the rest.
    let mut slow = c.connect().await.unwrap();
    let head = request("POST", "/v2/models/mlp/infer", Some(&alice), &[], b"");
    let head = String::from_utf8(head)
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 900000");
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&[b' '; 800_000]).await.unwrap();
    slow.flush().await.unwrap();

    // Another 400 KB request does not fit beside it: 503, with Retry-After (once the slow
    // body has arrived; before, it fits).
    let mut body = json_request(1, None);
    body.resize(400_000, b' ');
    let mut r = None;
    for _ in 0..50 {
        // The answer may come before the whole body is read; the rest of the body may meet
        // a closed connection.
        let mut stream = c.connect().await.unwrap();
        let _ = stream
            .write_all(&request(
                "POST",
                "/v2/models/mlp/infer",
                Some(&alice),
                &[],
                &body,
            ))
            .await;
        let _ = stream.flush().await;
        let answer = read_response(&mut stream).await.unwrap();
        if answer.status != 200 {
            r = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = r.expect("the second request always fitted beside the first");
    assert_eq!(r.status, 503, "{}", r.error());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("request memory"), "{}", r.error());
    let refused = audit_lines("\"reason\":\"request-memory\"");
    assert!(!refused.is_empty(), "no audit line for the refusal");
    // A small request still fits.
    let small = c
        .infer("/v2/models/mlp/infer", &alice, &json_request(1, None))
        .await;
    assert_eq!(small.status, 200, "{}", small.error());

    // When the slow client goes, its room comes back.
    drop(slow);
    let mut status = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = c.infer("/v2/models/mlp/infer", &alice, &body).await.status;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200);
    server.stop().await;
}

/// `[package]` bounds the files the repository reads: a package over them is refused at
/// the scan and not served; within them it is.
#[test]
fn package_limits_from_the_configuration_bound_the_repository() {
    let setup = Setup::new();
    let trust = ward_package::Trust::Policy(ward_package::TrustPolicy::load(&setup.trust).unwrap());
    let scan = |extra: &str| {
        let config = std::sync::Arc::new(setup.config(extra));
        ward_serve::repo::Repository::new(setup.repo.clone(), trust.clone(), config)
            .unwrap()
            .scan()
    };
    let report = scan("[package]\nmax_weights_bytes = 1000\n");
    assert_eq!(report.refused, ["mlp/1"]);
    assert!(report.loaded.is_empty());
    assert_eq!(scan("").loaded, ["mlp/1"]);
    let err = ServeConfig::parse("[package]\nmax_weights_bytes = 0\n").unwrap_err();
    assert!(err.contains("[package]: max_weights_bytes"), "{err}");
    let err = ServeConfig::parse("[package]\nmax_weigths_bytes = 10\n").unwrap_err();
    assert!(err.contains("unknown field"), "{err}");
}
