//! `ward train`'s checkpoint flags, as `ward_train::run::CheckpointOptions`.

use std::path::PathBuf;

use clap::Args;
use ward_train::run::CheckpointOptions;

/// Checkpoints: encrypted with age, signed, written atomically, pruned; and resuming.
#[derive(Args)]
pub struct CheckpointArgs {
    /// Write checkpoints encrypted to this age recipient (age1…, repeatable). Checkpoints
    /// are written only when encrypted (a recipient or --passphrase-file) and signed
    /// (--sign-key): one at the end of each epoch, and every --checkpoint-every steps.
    #[arg(long, value_name = "AGE1…")]
    recipient: Vec<String>,
    /// Encrypt checkpoints to the recipients in FILE (one per line, # comments).
    #[arg(long, value_name = "FILE")]
    recipients_file: Vec<PathBuf>,
    /// Encrypt checkpoints with the passphrase in FILE (its first line; the file must be
    /// readable by its owner alone), and decrypt them with it on --resume.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recipient", "recipients_file", "identity"])]
    passphrase_file: Option<PathBuf>,
    /// Also write a checkpoint every N steps.
    #[arg(long, value_name = "STEPS", value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: Option<u64>,
    /// Keep the newest N checkpoints (older ones are deleted once a newer one is
    /// complete).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    keep_last: u64,
    /// Also keep every checkpoint whose step is a multiple of K.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    keep_every: Option<u64>,
    /// Also keep the checkpoint with the best value of this validation metric
    /// (val_accuracy, val_loss, ...; losses and errors are better lower).
    #[arg(long, value_name = "METRIC")]
    keep_best: Option<String>,
    /// Continue the run in DIR (a --out of an earlier run) from its newest checkpoint,
    /// verified under --trust and decrypted with --identity or --passphrase-file.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// With --resume: the checkpoint to continue from (step-NNNNNNNNNNNN), not the newest.
    #[arg(long = "from", value_name = "NAME", requires = "resume")]
    from: Option<String>,
    /// With --resume: an age identity file (AGE-SECRET-KEY-1…, as age-keygen writes it).
    #[arg(long, value_name = "FILE", requires = "resume")]
    identity: Vec<PathBuf>,
    /// With --resume: continue although the spec is not the one the checkpoint was
    /// written with (recorded in metrics.jsonl).
    #[arg(long, requires = "resume")]
    allow_spec_change: bool,
}

impl CheckpointArgs {
    pub fn options(&self) -> CheckpointOptions {
        CheckpointOptions {
            recipients: self.recipient.clone(),
            recipients_files: self.recipients_file.clone(),
            passphrase_file: self.passphrase_file.clone(),
            every: self.checkpoint_every,
            keep_last: self.keep_last,
            keep_every: self.keep_every,
            keep_best: self.keep_best.clone(),
            from: self.from.clone(),
            identities: self.identity.clone(),
            allow_spec_change: self.allow_spec_change,
        }
    }
}
