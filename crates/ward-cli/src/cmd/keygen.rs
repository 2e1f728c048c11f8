//! `ward keygen`

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use ward_package::signature::keygen;

/// Make an ECDSA P-256 key pair for signing models: NAME.key (private, mode 0600) and
/// NAME.pub (give this one to whoever verifies).
///
/// Example:
///   ward keygen --out keys/ --name release
///   ward sign model-dir --key keys/release.key
///   ward verify model-dir --trust keys/release.pub
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct KeygenArgs {
    /// Directory for the key files (created, mode 0700, if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The key files' name.
    #[arg(long, default_value = "ward")]
    name: String,
}

pub fn run(args: KeygenArgs) -> Result<()> {
    let public = keygen(&args.out, &args.name)?;
    let key = args.out.join(format!("{}.key", args.name));
    let public_file = args.out.join(format!("{}.pub", args.name));
    println!("private key: {} (keep it secret)", key.display());
    println!("public key:  {}", public_file.display());
    println!("key hint:    {}", public.hint());
    Ok(())
}
