//! `ward sign`

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use ward_package::sign_model::{sign_model, SignRequest};
use ward_package::signature::read_private_key_file;

/// Sign a model directory (a ward package, an MXNet export folder, any model folder) in
/// the OpenSSF model-signing v1.0 format, which `model_signing verify key` also checks.
///
/// Every file is listed with its SHA-256, except model-signing's default ignores (.git,
/// .github, .gitattributes, .gitignore) and signature files (model.sig, model.N.sig).
/// A further signer (for a trust policy's threshold) writes model.2.sig, model.3.sig, ...
///
/// Example:
///   ward sign resnet18.ward --key keys/release.key
///   ward sign resnet18.ward --key keys/qa.key --signature resnet18.ward/model.2.sig
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct SignArgs {
    /// The model directory (or a single model file, with --signature).
    model: PathBuf,
    /// The private key (PEM; must not be readable by group or others).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Where to write the signature (default: MODEL/model.sig). Never overwritten.
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,
    /// The model name the trust policy will match (default: the package's name, or the
    /// directory's name).
    #[arg(long)]
    name: Option<String>,
    /// Hash files in shards of this many bytes, each hashed in parallel (large files on
    /// many cores). model-signing's CLI cannot verify sharded signatures; its API can.
    #[arg(long, value_name = "BYTES")]
    shard_size: Option<u64>,
}

pub fn run(args: SignArgs) -> Result<()> {
    let key = read_private_key_file(&args.key)?;
    let signed = sign_model(
        &args.model,
        &key,
        &SignRequest {
            signature: args.signature,
            name: args.name,
            shard_size: args.shard_size,
        },
    )?;
    println!(
        "signed {} ({} files, model name {:?}) -> {}",
        args.model.display(),
        signed.files,
        signed.model_name,
        signed.signature.display()
    );
    Ok(())
}
