//! Hostile files against the `ward` binary and `ward serve`, as an attacker who can write
//! to a model repository or hand a user files, but holds no signing key, would make them:
//! sparse weights files of 3, 4 and 10 GB (they cost no disk), FIFOs and devices as
//! inputs, and every way a package can be refused.
//!
//! The commands run under an address-space limit below the files' sizes (`ulimit -v`), so
//! a command that read such a file into memory would fail to allocate (and abort): each
//! must instead refuse it with one line, or, where nothing needs to be kept, stream it.
#![cfg(target_os = "linux")]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{copy_dir, fixture, stderr};
use ward_core::{npy, Tensor};

const GIB: u64 = 1 << 30;
/// The address space the commands get: below every hostile file's size.
const LIMIT_KIB: u64 = 2 * 1024 * 1024;

fn ward_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ward")
}

/// `ward args` under `ulimit -v limit_kib` (no limit when `None`).
fn ward_limited(limit_kib: Option<u64>, args: &[&str]) -> Output {
    let mut command = Command::new("sh");
    let ulimit = limit_kib.map_or(String::new(), |k| format!("ulimit -v {k} && "));
    command
        .arg("-c")
        .arg(format!("{ulimit}exec \"$0\" \"$@\""))
        .arg(ward_bin())
        .args(args)
        // glibc's per-thread arenas reserve address space, not memory: keep them few so
        // the limit measures what ward allocates.
        .env("MALLOC_ARENA_MAX", "2");
    command.output().expect("sh runs")
}

fn ward(args: &[&str]) -> Output {
    ward_limited(Some(LIMIT_KIB), args)
}

/// A signing key pair in `dir/keys` and the MLP fixture imported, signed, as `dir/mlp`.
fn signed_mlp(dir: &Path) -> PathBuf {
    let keys = dir.join("keys");
    let o = ward(&["keygen", "--out", keys.to_str().unwrap(), "--name", "test"]);
    assert!(o.status.success(), "{}", stderr(&o));
    import_mlp(dir, &dir.join("mlp"), Some(&keys.join("test.key")))
}

fn import_mlp(_dir: &Path, out: &Path, key: Option<&Path>) -> PathBuf {
    let model = fixture("mlp");
    let symbol = model.join("model-symbol.json");
    let params = model.join("model-0000.params");
    let mut args = vec![
        "import",
        "mxnet",
        "--symbol",
        symbol.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "--input",
        "data:float32:-1,784",
        "--name",
        "mlp",
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(key) = key {
        args.extend(["--sign-key", key.to_str().unwrap()]);
    }
    let o = ward(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    out.to_path_buf()
}

/// Makes `file` `len` bytes long without writing them: a sparse file.
fn make_sparse(file: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn trust(dir: &Path) -> String {
    dir.join("keys/test.pub").display().to_string()
}

/// One input row for the MLP, as .npy.
fn input_file(dir: &Path) -> PathBuf {
    let path = dir.join("input.npy");
    let values: Vec<f32> = (0..784).map(|i| (i % 7) as f32 / 7.0).collect();
    fs::write(
        &path,
        npy::write_npy(&Tensor::from_f32(vec![1, 784], &values).unwrap()),
    )
    .unwrap();
    path
}

/// The last audit line of the log in `dir`.
fn last_audit(dir: &Path) -> serde_json::Value {
    let text = fs::read_to_string(dir.join("audit.log")).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// A refusal: exit 3, nothing but `error: … refused:` and `refused: …` lines, no sign of
/// an allocation failure, and a `package.refused` audit line with `reason`.
fn assert_refused(o: &Output, dir: &Path, reason: &str, what: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(3), "{what}: {e}");
    assert!(
        e.lines().all(|l| l.starts_with("error: ")
            || l.starts_with("refused: ")
            || l.starts_with("WARNING: --allow-unsigned")),
        "{what}: {e}"
    );
    assert!(!e.contains("memory allocation"), "{what}: {e}");
    let audit = last_audit(dir);
    assert_eq!(audit["event"], "package.refused", "{what}: {audit}");
    assert_eq!(audit["reason"], reason, "{what}: {audit}");
}

#[test]
fn weights_files_far_larger_than_memory_are_refused_before_they_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let package = signed_mlp(tmp.path());
    let signed_len = fs::metadata(package.join("weights.safetensors"))
        .unwrap()
        .len();
    let input = input_file(tmp.path());
    let trust = trust(tmp.path());
    let audit = tmp.path().join("audit.log");
    let audit = audit.to_str().unwrap();
    let out = tmp.path().join("out");

    for gib in [3, 4, 10] {
        let hostile = tmp.path().join(format!("hostile-{gib}"));
        copy_dir(&package, &hostile);
        make_sparse(&hostile.join("weights.safetensors"), gib * GIB);
        let h = hostile.to_str().unwrap();
        let expected = format!(
            "refused: ward.json: weights.safetensors was modified: signed {signed_len} bytes, found {}",
            gib * GIB
        );
        let input_arg = format!("data={}", input.display());
        for args in [
            vec!["verify", h, "--trust", &trust],
            vec!["inspect", h, "--trust", &trust],
            vec![
                "predict",
                h,
                "--trust",
                &trust,
                "--input",
                &input_arg,
                "--out",
                out.to_str().unwrap(),
            ],
        ] {
            let mut all = vec!["--audit-log", audit];
            all.extend(&args);
            let o = ward(&all);
            assert_refused(
                &o,
                tmp.path(),
                "digest-mismatch",
                &format!("{gib} GiB {args:?}"),
            );
            assert!(stderr(&o).contains(&expected), "{args:?}: {}", stderr(&o));
        }
        // Signing it would vouch for a file the package's manifest does not describe.
        let o = ward(&[
            "sign",
            h,
            "--key",
            tmp.path().join("keys/test.key").to_str().unwrap(),
            "--signature",
            tmp.path().join("again.sig").to_str().unwrap(),
        ]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "sign {gib} GiB: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.starts_with("error: refusing to sign") && e.contains(&(gib * GIB).to_string()),
            "{e}"
        );
        assert!(!tmp.path().join("again.sig").exists());
    }
}

/// A package of the first manifest format records no file sizes: its weights are read
/// into memory reserved beforehand, so one too large for the memory left is refused with
/// its reason, never an abort; and verifying or signing one streams it in bounded memory.
#[test]
fn unsized_packages_are_read_in_reserved_memory_or_streamed() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("keys")).unwrap();
    let o = ward(&[
        "keygen",
        "--out",
        tmp.path().join("keys").to_str().unwrap(),
        "--name",
        "test",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let package = import_mlp(tmp.path(), &tmp.path().join("v1"), None);
    // As ward wrote it before file sizes were recorded.
    let manifest = package.join("ward.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    v["format_version"] = 1.into();
    v.as_object_mut().unwrap().remove("file_sizes");
    fs::write(&manifest, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    make_sparse(&package.join("weights.safetensors"), 3 * GIB);
    let p = package.to_str().unwrap();
    let audit = tmp.path().join("audit.log");
    let audit = audit.to_str().unwrap();

    let o = ward(&["--audit-log", audit, "inspect", p, "--allow-unsigned"]);
    assert_refused(&o, tmp.path(), "out-of-memory", "inspect 3 GiB");
    assert!(
        stderr(&o).contains("bytes cannot be reserved in memory"),
        "{}",
        stderr(&o)
    );
    let o = ward(&[
        "--audit-log",
        audit,
        "inspect",
        p,
        "--allow-unsigned",
        "--max-weights-bytes",
        "1000000",
    ]);
    assert_refused(
        &o,
        tmp.path(),
        "too-large",
        "inspect over --max-weights-bytes",
    );
    assert!(
        stderr(&o).contains("over the limit of 1000000"),
        "{}",
        stderr(&o)
    );

    // Nothing needs to be kept to sign or verify it: both stream the 3 GiB.
    let key = tmp.path().join("keys/test.key");
    let o = ward(&["sign", p, "--key", key.to_str().unwrap()]);
    assert!(o.status.success(), "sign: {}", stderr(&o));
    let o = ward(&[
        "--audit-log",
        audit,
        "verify",
        p,
        "--trust",
        &trust(tmp.path()),
    ]);
    assert!(o.status.success(), "verify: {}", stderr(&o));
    assert_eq!(last_audit(tmp.path())["event"], "package.verified");
}

#[test]
fn predict_reads_inputs_from_regular_files_within_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let package = signed_mlp(tmp.path());
    let p = package.to_str().unwrap();
    let trust = trust(tmp.path());
    let out = tmp.path().join("out");
    let o_ = out.to_str().unwrap();
    let audit = tmp.path().join("audit.log");
    let audit = audit.to_str().unwrap();
    let predict = |input: &str, threads: &str| {
        let arg = format!("data={input}");
        ward(&[
            "--audit-log",
            audit,
            "predict",
            p,
            "--trust",
            &trust,
            "--input",
            &arg,
            "--out",
            o_,
            "--threads",
            threads,
        ])
    };
    let one_error = |o: &Output, needle: &str| {
        let e = stderr(o);
        assert_eq!(o.status.code(), Some(1), "{needle}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.contains(needle), "expected {needle:?} in {e}");
    };

    let good = input_file(tmp.path());
    assert!(predict(good.to_str().unwrap(), "1").status.success());

    one_error(
        &predict("/dev/zero", "1"),
        "is a character device, not a regular file",
    );

    let fifo = tmp.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // With no writer, a plain open would block forever: give it a deadline.
    let mut child = Command::new(ward_bin())
        .args([
            "--audit-log",
            audit,
            "predict",
            p,
            "--trust",
            &trust,
            "--input",
            &format!("data={}", fifo.display()),
            "--out",
            o_,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(&mut child, Duration::from_secs(30)).expect("predict on a FIFO hangs");
    let mut e = String::new();
    child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
    assert_eq!(status.code(), Some(1), "{e}");
    assert!(e.contains("is a FIFO, not a regular file"), "{e}");

    // The rows are variable, so the element limit bounds the file (64 Mi elements at the
    // widest dtype): a 4 GiB file is refused before it is read.
    let huge = tmp.path().join("huge.npy");
    fs::copy(&good, &huge).unwrap();
    make_sparse(&huge, 4 * GIB);
    one_error(&predict(huge.to_str().unwrap(), "1"), "over the limit of");

    for threads in ["0", "100000"] {
        let o = predict(good.to_str().unwrap(), threads);
        assert_eq!(
            o.status.code(),
            Some(2),
            "--threads {threads}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("--threads"), "{}", stderr(&o));
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every way the verified loader refuses a package exits 3, as its audit event says
/// `package.refused`, with the event's reason.
#[test]
fn every_refusal_exits_3_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let package = signed_mlp(dir);
    let trust = trust(dir);
    let key = dir.join("keys/test.key");
    let key = key.to_str().unwrap();
    let o = ward(&[
        "keygen",
        "--out",
        dir.join("other").to_str().unwrap(),
        "--name",
        "other",
    ]);
    assert!(o.status.success());
    let other_pub = dir.join("other/other.pub").display().to_string();
    let write_policy = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let empty_policy = write_policy("empty.toml", "");
    let not_allowed = write_policy(
        "not-allowed.toml",
        &format!("[[key]]\nname = \"test\"\npublic_key = \"{trust}\"\nmodels = [\"resnet*\"]\n"),
    );
    let two = write_policy(
        "two.toml",
        &format!(
            "threshold = 2\n[[key]]\nname = \"test\"\npublic_key = \"{trust}\"\nmodels = [\"*\"]\n\
             [[key]]\nname = \"other\"\npublic_key = \"{other_pub}\"\nmodels = [\"*\"]\n"
        ),
    );

    type Edit = Box<dyn Fn(&Path)>;
    let flip_graph_byte: Edit = Box::new(|p| {
        let path = p.join("graph.json");
        let mut bytes = fs::read(&path).unwrap();
        // A space inside the JSON becomes another: same length, another digest.
        let at = bytes.iter().position(|&b| b == b':').unwrap();
        bytes[at] = b';';
        fs::write(&path, bytes).unwrap();
    });
    let key_owned = key.to_string();
    let cases: Vec<(&str, Edit, Vec<String>)> = vec![
        (
            "unsigned",
            Box::new(|p| fs::remove_file(p.join("model.sig")).unwrap()),
            vec![],
        ),
        (
            "nothing-trusted",
            Box::new(|_| {}),
            vec!["--trust".into(), empty_policy],
        ),
        (
            "malformed-signature",
            Box::new(|p| fs::write(p.join("model.sig"), b"{not a bundle").unwrap()),
            vec![],
        ),
        (
            "untrusted-key",
            Box::new(|_| {}),
            vec!["--trust".into(), other_pub.clone()],
        ),
        (
            "bad-signature",
            Box::new(|p| {
                let path = p.join("model.sig");
                let mut bundle: serde_json::Value =
                    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
                let sig = bundle["dsseEnvelope"]["signatures"][0]["sig"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let mut chars: Vec<char> = sig.chars().collect();
                let at = chars.len() / 3;
                chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
                bundle["dsseEnvelope"]["signatures"][0]["sig"] =
                    chars.into_iter().collect::<String>().into();
                fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();
            }),
            vec![],
        ),
        (
            "signer-not-allowed",
            Box::new(|_| {}),
            vec!["--trust".into(), not_allowed],
        ),
        (
            "threshold-not-met",
            Box::new(|_| {}),
            vec!["--trust".into(), two],
        ),
        ("digest-mismatch", flip_graph_byte, vec![]),
        (
            "missing-file",
            Box::new(|p| fs::remove_file(p.join("graph.json")).unwrap()),
            vec![],
        ),
        (
            "extra-file",
            Box::new(|p| fs::write(p.join("notes.txt"), b"x").unwrap()),
            vec![],
        ),
        (
            "symlink",
            Box::new(|p| {
                fs::rename(p.join("graph.json"), p.join("../graph-elsewhere.json")).unwrap();
                std::os::unix::fs::symlink(p.join("../graph-elsewhere.json"), p.join("graph.json"))
                    .unwrap();
            }),
            vec![],
        ),
        (
            "not-a-regular-file",
            Box::new(|p| fs::create_dir(p.join("model.2.sig")).unwrap()),
            vec![],
        ),
        (
            "too-large",
            Box::new(|_| {}),
            vec!["--max-graph-bytes".into(), "10".into()],
        ),
        (
            "malformed-package",
            Box::new(move |p| {
                // Signed bytes that do not parse: verified first, then refused.
                fs::remove_file(p.join("model.sig")).unwrap();
                fs::write(p.join("ward.json"), b"{}").unwrap();
                let o = ward(&[
                    "sign",
                    p.to_str().unwrap(),
                    "--key",
                    &key_owned,
                    "--name",
                    "mlp",
                ]);
                assert!(o.status.success(), "{}", stderr(&o));
            }),
            vec![],
        ),
        (
            "unreadable",
            Box::new(|p| fs::remove_dir_all(p).unwrap()),
            vec![],
        ),
    ];
    let audit = dir.join("audit.log");
    let audit = audit.to_str().unwrap();
    for (i, (reason, edit, flags)) in cases.into_iter().enumerate() {
        let case_dir = dir.join(format!("case-{i}"));
        fs::create_dir(&case_dir).unwrap();
        let copy = case_dir.join("mlp");
        copy_dir(&package, &copy);
        edit(&copy);
        let c = copy.to_str().unwrap();
        let mut args = vec!["--audit-log", audit, "inspect", c];
        if !flags.iter().any(|f| f == "--trust") {
            args.extend(["--trust", &trust]);
        }
        args.extend(flags.iter().map(String::as_str));
        let o = ward(&args);
        assert_refused(&o, dir, reason, reason);
        // `ward verify` agrees (it has no size flags; its policy is the same).
        if !flags.iter().any(|f| f.starts_with("--max")) {
            let mut args = vec!["--audit-log", audit, "verify", c];
            if !flags.iter().any(|f| f == "--trust") {
                args.extend(["--trust", &trust]);
            }
            args.extend(flags.iter().map(String::as_str));
            let o = ward(&args);
            assert_refused(&o, dir, reason, &format!("verify: {reason}"));
        }
    }
}

/// A plain HTTP/1.1 exchange with the server (plaintext on loopback): status and body.
fn http(addr: &str, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    (status, response[at..].to_vec())
}

/// Kilobytes of the peak resident set of process `pid`.
fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn a_served_repository_survives_huge_files_and_keeps_its_last_good_version() {
    let tmp = tempfile::tempdir().unwrap();
    let package = signed_mlp(tmp.path());
    let repo = tmp.path().join("repo");
    let v1 = repo.join("mlp/1");
    copy_dir(&package, &v1);
    let tokens = tmp.path().join("tokens.toml");
    let o = ward(&[
        "token",
        "--tokens",
        tokens.to_str().unwrap(),
        "--principal",
        "tester",
        "--scopes",
        "infer,health",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let log = tmp.path().join("serve.log");
    let out = tmp.path().join("serve.out");
    let mut args = vec![
        "--audit-log".to_string(),
        tmp.path().join("audit.log").display().to_string(),
        "serve".into(),
        "--models".into(),
        repo.display().to_string(),
        "--trust".into(),
        trust(tmp.path()),
        "--tokens".into(),
        tokens.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--insecure-plaintext".into(),
        "--poll".into(),
        "1".into(),
    ];
    if ward_core::privilege::running_as_root() {
        args.push("--allow-root".into());
    }
    // The server's address space: a little over the 2 GiB every command gets, as it
    // runs threads of its own, and still below every hostile file.
    let mut server = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {} && exec \"$0\" \"$@\"",
            LIMIT_KIB + LIMIT_KIB / 4
        ))
        .arg(ward_bin())
        .args(&args)
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = server.id();
    let addr = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = fs::read_to_string(&out).unwrap_or_default();
            if let Some(line) = text.lines().find_map(|l| l.strip_prefix("listening on ")) {
                break line
                    .trim()
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string();
            }
            assert!(
                Instant::now() < deadline && server.try_wait().unwrap().is_none(),
                "the server did not start: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let values: Vec<String> = (0..784)
        .map(|i| format!("{}", (i % 7) as f32 / 7.0))
        .collect();
    let request = format!(
        "{{\"inputs\":[{{\"name\":\"data\",\"shape\":[1,784],\"datatype\":\"FP32\",\"data\":[{}]}}]}}",
        values.join(",")
    );
    let infer = || {
        http(
            &addr,
            "POST",
            "/v2/models/mlp/infer",
            &token,
            request.as_bytes(),
        )
    };
    let (status, good) = infer();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&good));
    for _ in 0..20 {
        assert_eq!(infer().0, 200);
    }
    let idle_peak = peak_rss_kib(pid);

    // The served version, changed in place, and two new versions: 3, 4 and 10 GiB.
    make_sparse(&v1.join("weights.safetensors"), 3 * GIB);
    for (version, gib) in [(2, 4), (3, 10)] {
        let dir = repo.join(format!("mlp/{version}"));
        copy_dir(&package, &dir);
        make_sparse(&dir.join("weights.safetensors"), gib * GIB);
    }
    // Wait until every one has been refused (each is logged once), then a few more polls.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let refused = ["mlp/1", "mlp/2", "mlp/3"]
            .iter()
            .all(|v| text.lines().any(|l| l.contains(v) && l.contains("refused")));
        if refused {
            break;
        }
        assert!(Instant::now() < deadline, "not all refused: {text}");
        assert!(
            server.try_wait().unwrap().is_none(),
            "the server died: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(server.try_wait().unwrap().is_none(), "the server died");
    let (status, again) = infer();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&again));
    assert_eq!(again, good, "the last good version answers");
    let peak = peak_rss_kib(pid);
    let _ = server.kill();
    let _ = server.wait();
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        peak < 2 * idle_peak,
        "peak {peak} KiB, idle {idle_peak} KiB:\n{text}"
    );
    // Each refusal is logged once, not at every poll.
    for v in ["mlp/1", "mlp/2", "mlp/3"] {
        let n = text
            .lines()
            .filter(|l| l.contains(v) && l.contains("refused"))
            .count();
        assert_eq!(n, 1, "{v} logged {n} times:\n{text}");
    }
    assert!(!text.contains("memory allocation"), "{text}");
}
