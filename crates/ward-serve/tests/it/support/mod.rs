//! A real server on loopback for the integration tests: a signed package imported from the
//! bundled MXNet MLP, development TLS certificates, a tokens file, and a minimal HTTPS
//! client that writes raw HTTP/1.1, so tests can also send what no polite client would.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use ward_core::{AuditLayer, DType, Tensor};
use ward_mxnet::import::{import, DeclaredInput};
use ward_package::signature::{read_private_key_file, write_key_pair};
use ward_package::{write_signed_package, FileDigest, InputSpec, Manifest, Origin, OutputPolicy};
use ward_serve::{ServeConfig, ServeError, Server};

pub const MODEL: &str = "mlp";
pub const OUTPUT: &str = "mlp0_softmax0_output";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models/mlp")
        .join(name)
}

/// Imports the bundled MLP (input `data` [-1, 784]) and writes it signed into `dir`.
pub fn write_mlp(dir: &Path, name: &str, key: &Path, policy: OutputPolicy, bias_shift: f32) {
    let symbol_bytes = std::fs::read(fixture("model-symbol.json")).unwrap();
    let params_bytes = std::fs::read(fixture("model-0000.params")).unwrap();
    let symbol = ward_mxnet::symbol::read_symbol(&symbol_bytes, &Default::default()).unwrap();
    let params = ward_mxnet::params::read_params(&params_bytes, &Default::default()).unwrap();
    let declared = [DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 784],
    }];
    let mut imported = import(&symbol, params, &declared).unwrap();
    if bias_shift != 0.0 {
        // A different model of the same shape: shift the first bias.
        let (_, t) = imported
            .weights
            .iter_mut()
            .find(|(n, _)| n.ends_with("bias"))
            .unwrap();
        let shifted: Vec<f32> = t.to_f32_vec().iter().map(|v| v + bias_shift).collect();
        *t = Tensor::from_f32(t.shape().to_vec(), &shifted).unwrap();
    }
    let outputs = imported.output_specs();
    let inputs = vec![InputSpec {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 784],
        range: Some([-100.0, 100.0]),
        allow_nonfinite: false,
    }];
    let origin = Origin {
        framework: "mxnet".into(),
        framework_version: Some("1.9.1".into()),
        files: vec![FileDigest::of("model-symbol.json", &symbol_bytes)],
    };
    let mut manifest = Manifest::new(name, "1", 1_764_000_000, origin, inputs, outputs);
    manifest.output_policy = policy;
    let key = read_private_key_file(key).unwrap();
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    write_signed_package(
        dir,
        &manifest,
        &imported.graph.to_json(),
        &imported.weights,
        Some(&key),
    )
    .unwrap();
}

/// The input the MXNet fixture was run on, and MXNet's output for it.
pub fn fixture_io() -> (Tensor, Tensor) {
    let read =
        |name: &str| ward_core::npy::read_npy(&std::fs::read(fixture(name)).unwrap()).unwrap();
    (read("input-data.npy"), read("output-0.npy"))
}

fn private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Everything a server needs on disk, in a temporary directory.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub trust: PathBuf,
    pub repo: PathBuf,
    pub tls: PathBuf,
    pub tokens: PathBuf,
    /// principal → token
    pub token_of: Vec<(String, String)>,
}

impl Setup {
    /// Keys, certificates, the MLP as `mlp/1`, and tokens for `alice` (every scope) and
    /// `guest` (health only).
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        write_key_pair(&root, "release").unwrap();
        let repo = root.join("repo");
        std::fs::create_dir_all(repo.join(MODEL)).unwrap();
        write_mlp(
            &repo.join(MODEL).join("1"),
            MODEL,
            &root.join("release.key"),
            OutputPolicy::default(),
            0.0,
        );
        let tls = root.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let certs = ward_net::devcert::dev_certificates(
            &["localhost".into(), "127.0.0.1".into()],
            Some("client"),
        )
        .unwrap();
        std::fs::write(tls.join("ca.pem"), &certs.ca_pem).unwrap();
        std::fs::write(tls.join("server.pem"), &certs.server_pem).unwrap();
        std::fs::write(tls.join("server.key"), &certs.server_key_pem).unwrap();
        private(&tls.join("server.key"));
        let (client_pem, client_key) = certs.client.unwrap();
        std::fs::write(tls.join("client.pem"), client_pem).unwrap();
        std::fs::write(tls.join("client.key"), client_key).unwrap();
        let mut setup = Setup {
            key: root.join("release.key"),
            trust: root.join("release.pub"),
            repo,
            tls,
            tokens: root.join("tokens.toml"),
            token_of: Vec::new(),
            dir,
        };
        setup.add_token(
            "alice",
            "[\"infer\", \"metadata\", \"health\", \"metrics\"]",
            "",
        );
        setup.add_token("guest", "[\"health\"]", "");
        setup
    }

    /// Adds a token; `extra` is more TOML lines of its entry.
    pub fn add_token(&mut self, principal: &str, scopes: &str, extra: &str) -> String {
        let token = ward_net::tokens::generate_token().unwrap();
        let hash = ward_net::tokens::entry_for(&token, principal, vec![], None)
            .sha256
            .unwrap();
        let mut text = std::fs::read_to_string(&self.tokens).unwrap_or_default();
        text += &format!("[[token]]\nprincipal = \"{principal}\"\nsha256 = \"{hash}\"\nscopes = {scopes}\n{extra}\n");
        std::fs::write(&self.tokens, text).unwrap();
        private(&self.tokens);
        self.token_of.push((principal.into(), token.clone()));
        token
    }

    /// Adds an entry that maps the client certificate named `dns_name` to `principal`.
    pub fn add_certificate_principal(&self, principal: &str, dns_name: &str, scopes: &str) {
        let mut text = std::fs::read_to_string(&self.tokens).unwrap_or_default();
        text += &format!("[[token]]\nprincipal = \"{principal}\"\nclient_dns_name = \"{dns_name}\"\nscopes = {scopes}\n");
        std::fs::write(&self.tokens, text).unwrap();
        private(&self.tokens);
    }

    pub fn token(&self, principal: &str) -> String {
        self.token_of
            .iter()
            .find(|(p, _)| p == principal)
            .unwrap()
            .1
            .clone()
    }

    /// The configuration for this setup, with `extra` TOML parsed on top.
    pub fn config(&self, extra: &str) -> ServeConfig {
        let mut config = ServeConfig::parse(extra).unwrap();
        config.listen = Some("127.0.0.1:0".parse().unwrap());
        config.models = Some(self.repo.clone());
        config.trust = Some(self.trust.clone());
        config.tokens = Some(self.tokens.clone());
        config.tls.cert = Some(self.tls.join("server.pem"));
        config.tls.key = Some(self.tls.join("server.key"));
        // The test machines run as root.
        config.allow_root = true;
        config
    }

    pub async fn start(&self, extra: &str) -> Running {
        Running::start(self.config(extra), self.tls.join("ca.pem")).await
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub repository: Arc<ward_serve::repo::Repository>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Running {
    pub async fn start(config: ServeConfig, ca: PathBuf) -> Running {
        audit_sink();
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let repository = server.repository();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            ca,
            repository,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signals shutdown; returns the join handle of the server task.
    pub fn begin_shutdown(&mut self) -> JoinHandle<Result<(), ServeError>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap()
    }

    pub async fn stop(mut self) {
        self.begin_shutdown().await.unwrap().unwrap();
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr, &self.ca, None)
    }
}

/// Audit lines of every test in this process.
pub fn audit_sink() -> Arc<Mutex<Vec<u8>>> {
    static SINK: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    SINK.get_or_init(|| {
        let sink = Arc::new(Mutex::new(Vec::new()));
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber =
            tracing_subscriber::registry().with(AuditLayer::new(SinkWriter(sink.clone())));
        let _ = tracing::subscriber::set_global_default(subscriber);
        sink
    })
    .clone()
}

/// The audit lines so far that contain `needle`, parsed.
pub fn audit_lines(needle: &str) -> Vec<serde_json::Value> {
    audit_texts(needle)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The audit lines holding `needle`, as written.
pub fn audit_texts(needle: &str) -> Vec<String> {
    let sink = audit_sink();
    let text = String::from_utf8(sink.lock().unwrap().clone()).unwrap();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

struct SinkWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        let n = self
            .header("inference-header-content-length")
            .map_or(self.body.len(), |v| v.parse().unwrap());
        serde_json::from_slice(&self.body[..n])
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_string()
    }
}

/// A minimal HTTPS (HTTP/1.1) client.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    connector: TlsConnector,
}

impl Client {
    pub fn new(addr: SocketAddr, ca: &Path, client_cert: Option<(&Path, &Path)>) -> Client {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(|c| c.unwrap())
                        .collect(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
        };
        let config = Arc::new(config);
        Client {
            addr,
            connector: TlsConnector::from(config.clone()),
            config,
        }
    }

    /// A TLS connection on which HTTP/2 was negotiated by ALPN.
    pub async fn connect_http2(
        &self,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(self.addr).await?;
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        Ok(tls)
    }

    pub async fn connect(&self) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await
    }

    /// Sends raw request bytes on a new connection and reads the response to the end.
    pub async fn raw(&self, request: &[u8]) -> std::io::Result<Response> {
        let mut stream = self.connect().await?;
        // A server that refuses a request may answer and close before it has read the
        // whole body: the rest of the body then meets a closed connection, and the answer
        // is still there to read.
        let _ = stream.write_all(request).await;
        let _ = stream.flush().await;
        read_response(&mut stream).await
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.raw(&request(method, path, token, headers, body))
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send("GET", path, token, &[], b"").await
    }

    pub async fn infer(&self, path: &str, token: &str, body: &[u8]) -> Response {
        self.send("POST", path, Some(token), &[], body).await
    }
}

pub fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(t) = token {
        head += &format!("Authorization: Bearer {t}\r\n");
    }
    for (n, v) in headers {
        head += &format!("{n}: {v}\r\n");
    }
    head += "\r\n";
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<Response> {
    let mut bytes = Vec::new();
    // A server may close without TLS close_notify after the response; what arrived counts.
    let _ = stream.read_to_end(&mut bytes).await;
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("no response head in {} bytes", bytes.len()),
            )
        })?;
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    })
}

/// An OIP JSON request for `rows` copies of the fixture's first row (or of `value`).
pub fn json_request(rows: usize, id: Option<&str>) -> Vec<u8> {
    let (input, _) = fixture_io();
    let row: Vec<f32> = input.to_f32_vec()[..784].to_vec();
    let data: Vec<f32> = (0..rows).flat_map(|_| row.iter().copied()).collect();
    let mut v = serde_json::json!({"inputs": [{"name": "data", "shape": [rows, 784], "datatype": "FP32", "data": data}]});
    if let Some(id) = id {
        v["id"] = id.into();
    }
    v.to_string().into_bytes()
}

/// The fixture's first row as the model's output, computed in process.
pub fn expected_first_row(repo_model: &Path, trust: &Path) -> Vec<f32> {
    let trust = ward_package::Trust::Policy(ward_package::TrustPolicy::load(trust).unwrap());
    let package = ward_exec::LoadedPackage::open(
        repo_model,
        &trust,
        &Default::default(),
        std::sync::Arc::new(ward_exec::TractBackend::new(1).unwrap()),
    )
    .unwrap();
    let (input, _) = fixture_io();
    let row = Tensor::from_f32(vec![1, 784], &input.to_f32_vec()[..784]).unwrap();
    let out = package.predict(vec![("data".into(), row)]).unwrap();
    out[0].1.to_f32_vec()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A well-behaved client querying until `stop`: (served, failed).
pub fn valid_client(
    c: Client,
    token: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    let served = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        let body = json_request(1, None);
        while !stop.load(Ordering::Relaxed) {
            let r = c.infer("/v2/models/mlp/infer", &token, &body).await;
            if r.status == 200 {
                served.fetch_add(1, Ordering::Relaxed);
            } else {
                eprintln!(
                    "valid client got {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
                failed.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (
            served.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        )
    })
}
