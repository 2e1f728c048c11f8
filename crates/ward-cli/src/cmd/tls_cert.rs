use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ward_net::devcert::dev_certificates;

/// Make a development CA and a server certificate for `ward serve` (and a client
/// certificate for mutual TLS with --client). Writes DIR/ca.pem, DIR/server.pem,
/// DIR/server.key (0600) [and DIR/client.pem, DIR/client.key]. Never overwrites.
/// For tests and first runs; production deployments use their own CA.
///
/// Example:
///   ward tls-cert --out tls --host localhost --host 127.0.0.1
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct TlsCertArgs {
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// DNS names and IP addresses the server certificate is valid for.
    #[arg(long = "host", default_values_t = vec!["localhost".to_string(), "127.0.0.1".to_string()])]
    hosts: Vec<String>,
    /// Also issue a client certificate with this name (common name and subjectAltName DNS
    /// name: a tokens entry with client_dns_name = NAME maps it to a principal).
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
}

pub fn run(args: TlsCertArgs) -> Result<()> {
    let certs = dev_certificates(&args.hosts, args.client.as_deref())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut files = vec![
        ("ca.pem", certs.ca_pem, 0o644),
        ("server.pem", certs.server_pem, 0o644),
        ("server.key", certs.server_key_pem, 0o600),
    ];
    if let Some((pem, key)) = certs.client {
        files.push(("client.pem", pem, 0o644));
        files.push(("client.key", key, 0o600));
    }
    for (name, _, _) in &files {
        let path = args.out.join(name);
        if path.symlink_metadata().is_ok() {
            anyhow::bail!("{} exists; ward tls-cert never overwrites", path.display());
        }
    }
    for (name, text, mode) in files {
        // Each file whole or not at all, keys 0600 before a byte is written, never over a
        // file that appeared meanwhile.
        let path = args.out.join(name);
        ward_core::files::write_new_file(&path, text.as_bytes(), mode)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "wrote a development CA and certificates for {} into {}",
        args.hosts.join(", "),
        args.out.display()
    );
    Ok(())
}
