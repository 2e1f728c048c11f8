//! Mutual TLS on loopback between ward-net's own client and server configurations: a client
//! certificate from the server's client CA is accepted and its names (a SPIFFE URI) reach
//! the server; one from another CA, or none, is refused in the handshake.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use ward_net::devcert::DevCa;
use ward_net::tls::{client_config, server_config, Identity};
use ward_net::ClientCertificate;

const WORKER: &str = "spiffe://cluster/job/worker/3";
const ALPN: &[&[u8]] = &[b"h2"];

/// Writes `text` as a file only its owner may read, as keys must be.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The cluster CA (server and worker certificates) and another CA that issued a
    /// certificate with the same name.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let cluster = DevCa::new().unwrap();
        write(dir.path(), "ca.pem", cluster.pem());
        let (server, server_key) = cluster
            .server(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        write(dir.path(), "server.pem", &server);
        write(dir.path(), "server.key", &server_key);
        let (worker, worker_key) = cluster.client_uri(WORKER).unwrap();
        write(dir.path(), "worker.pem", &worker);
        write(dir.path(), "worker.key", &worker_key);
        let other = DevCa::new().unwrap();
        let (impostor, impostor_key) = other.client_uri(WORKER).unwrap();
        write(dir.path(), "impostor.pem", &impostor);
        write(dir.path(), "impostor.key", &impostor_key);
        Pki { dir }
    }

    fn server(&self) -> Arc<ServerConfig> {
        let (cert, key) = (self.path("server.pem"), self.path("server.key"));
        server_config(
            Identity {
                cert: &cert,
                key: &key,
            },
            Some(&self.path("ca.pem")),
            ALPN,
        )
        .unwrap()
    }

    /// A client that presents `who`'s certificate (none when `None`).
    fn client(&self, who: Option<&str>) -> Arc<ClientConfig> {
        let files = who.map(|w| {
            (
                self.path(&format!("{w}.pem")),
                self.path(&format!("{w}.key")),
            )
        });
        let identity = files.as_ref().map(|(cert, key)| Identity { cert, key });
        client_config(&self.path("ca.pem"), identity, ALPN).unwrap()
    }
}

/// What the server saw of one connection: the client certificate's names and the
/// application protocol agreed.
type Accepted = (Option<ClientCertificate>, Option<Vec<u8>>);

/// Accepts one connection, completes the handshake, echoes one byte, and returns what it
/// saw; or the handshake's error.
fn serve_once(
    config: Arc<ServerConfig>,
) -> (std::net::SocketAddr, JoinHandle<Result<Accepted, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut connection = ServerConnection::new(config).map_err(|e| e.to_string())?;
        while connection.is_handshaking() {
            connection
                .complete_io(&mut tcp)
                .map_err(|e| e.to_string())?;
        }
        let certificate = ClientCertificate::of(&connection);
        let alpn = connection.alpn_protocol().map(<[u8]>::to_vec);
        let mut stream = rustls::Stream::new(&mut connection, &mut tcp);
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).map_err(|e| e.to_string())?;
        stream.write_all(&byte).map_err(|e| e.to_string())?;
        stream.flush().map_err(|e| e.to_string())?;
        Ok((certificate, alpn))
    });
    (addr, server)
}

/// Connects with `config`, sends one byte and reads its echo.
fn call(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> Result<(), String> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut connection = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut stream = rustls::Stream::new(&mut connection, &mut tcp);
    stream.write_all(b"w").map_err(|e| e.to_string())?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).map_err(|e| e.to_string())?;
    if &byte != b"w" {
        return Err(format!("echo {byte:?}"));
    }
    Ok(())
}

#[test]
fn a_worker_of_the_cluster_ca_is_accepted_and_named_by_its_uri() {
    let pki = Pki::new();
    let (addr, server) = serve_once(pki.server());
    call(addr, pki.client(Some("worker"))).unwrap();
    let (certificate, alpn) = server.join().unwrap().unwrap();
    let certificate = certificate.unwrap();
    assert_eq!(certificate.uris, vec![WORKER.to_string()]);
    assert!(certificate.dns_names.is_empty(), "{certificate:?}");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let (addr, server) = serve_once(pki.server());
    // The client may see its byte sent before the server's alert arrives; the echo never
    // comes.
    assert!(call(addr, pki.client(Some("impostor"))).is_err());
    // Both development CAs have the same name, so webpki finds the cluster CA as the
    // issuer and the signature does not verify.
    let err = server.join().unwrap().unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let pki = Pki::new();
    let (addr, server) = serve_once(pki.server());
    assert!(call(addr, pki.client(None)).is_err());
    let err = server.join().unwrap().unwrap_err();
    assert!(err.contains("peer sent no certificates"), "{err}");
}

#[test]
fn the_client_refuses_a_server_outside_its_ca() {
    let pki = Pki::new();
    // The client trusts only another CA: the cluster's server is refused by the client.
    let other = DevCa::new().unwrap();
    let other_ca = write(pki.dir.path(), "other-ca.pem", other.pem());
    let (cert, key) = (pki.path("worker.pem"), pki.path("worker.key"));
    let client = client_config(
        &other_ca,
        Some(Identity {
            cert: &cert,
            key: &key,
        }),
        ALPN,
    )
    .unwrap();
    let (addr, server) = serve_once(pki.server());
    let err = call(addr, client).unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(server.join().unwrap().is_err());
}
