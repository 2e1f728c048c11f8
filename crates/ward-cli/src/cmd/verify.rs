//! `ward verify`

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Result;
use clap::Args;
use ward_package::tree::TreeLimits;
use ward_package::{verify_directory, verify_package, TrustPolicy, MANIFEST_FILE};

/// Check a model's signatures against a trust policy: every file's digest, no file missing
/// or added, signers trusted for this model name, enough of them. Exit 0 when valid, 3
/// when refused (one line per problem).
///
/// TRUST is a PEM public key (that key may sign any model) or a TOML policy:
///   threshold = 1
///   [[key]]
///   name = "release"
///   public_key = "keys/release.pub"
///   models = ["resnet*"]
///   [[ca]]
///   name = "corp"
///   certificate = "pki/ca.crt.pem"
///   models = ["*"]
///
/// Example:
///   ward verify resnet18.ward --trust keys/release.pub
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct VerifyArgs {
    /// The model directory (or a single model file, with --signature).
    model: PathBuf,
    /// The trust policy: a PEM public key or a TOML policy.
    #[arg(long, value_name = "TRUST")]
    trust: PathBuf,
    /// Signature files to check (default: MODEL/model.sig and MODEL/model.N.sig).
    #[arg(long = "signature", value_name = "FILE")]
    signatures: Vec<PathBuf>,
    #[command(flatten)]
    limits: super::PackageLimitArgs,
}

pub fn run(args: VerifyArgs) -> Result<()> {
    let policy = TrustPolicy::load(&args.trust)?;
    // A ward package (its own signatures) is verified as the loader opens it, its files
    // checked against the sizes its signed manifest records; any other model folder file
    // by file. Either way nothing is kept but the manifest: memory stays bounded whatever
    // the model's size.
    let is_package = args.signatures.is_empty() && args.model.join(MANIFEST_FILE).exists();
    let (files, v) = if is_package {
        let verified = verify_package(
            &args.model,
            &policy,
            SystemTime::now(),
            &args.limits.limits(),
        )?;
        (verified.file_count, verified.verified)
    } else {
        let verified = verify_directory(
            &args.model,
            &args.signatures,
            &policy,
            SystemTime::now(),
            &TreeLimits::default(),
            &|_| false,
        )?;
        (verified.tree.files.len(), verified.verified)
    };
    for w in v.warnings() {
        eprintln!("warning: {w}");
    }
    println!(
        "verified: {} ({} files), model {:?}, signed by {} ({} of {} required)",
        args.model.display(),
        files,
        v.model_name(),
        v.signers().join(", "),
        v.signers().len(),
        policy.threshold
    );
    Ok(())
}
