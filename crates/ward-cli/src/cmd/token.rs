use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ward_net::tokens::{
    entry_for, entry_toml, generate_token, valid_principal, Tokens, MAX_TOKENS_FILE_BYTES,
};
use ward_serve::scopes;

/// Make a bearer token for `ward serve`: append its hash to the tokens file and print the
/// token once, on standard output. The file never holds the token itself.
///
/// Example:
///   ward token --tokens tokens.toml --principal alice --scopes infer,metadata,health
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct TokenArgs {
    /// The tokens file (created with mode 0600 when missing).
    #[arg(long, value_name = "FILE")]
    tokens: PathBuf,
    /// Who the token belongs to (letters, digits, `. _ @ -`); it appears in audit lines.
    #[arg(long)]
    principal: String,
    /// What it allows: infer, metadata, health, metrics (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    scopes: Vec<String>,
    /// Limit it to models whose names match these globs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
}

pub fn run(args: TokenArgs) -> Result<()> {
    if !valid_principal(&args.principal) {
        bail!(
            "principal {:?}: use 1 to 128 ASCII letters, digits and . _ @ -",
            args.principal
        );
    }
    let scopes = args
        .scopes
        .iter()
        .map(|s| {
            let s = s.trim();
            if scopes::ALL.contains(&s) {
                Ok(s.to_string())
            } else {
                bail!("unknown scope {s:?} ({})", scopes::ALL.join(", "))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let models = (!args.models.is_empty()).then_some(args.models);
    let token = generate_token()?;
    let entry = entry_toml(&entry_for(&token, &args.principal, scopes, models));
    // The file as it will be must still parse: check before appending.
    let existing = if args.tokens.exists() {
        let text = ward_core::files::read_private_text(&args.tokens, MAX_TOKENS_FILE_BYTES)
            .with_context(|| args.tokens.display().to_string())?;
        Tokens::parse(&text, scopes::ALL).with_context(|| args.tokens.display().to_string())?;
        text
    } else {
        String::new()
    };
    let separator = if existing.is_empty() || existing.ends_with("\n\n") {
        ""
    } else if existing.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&args.tokens)
        .with_context(|| format!("cannot open {}", args.tokens.display()))?;
    file.write_all(format!("{separator}{entry}").as_bytes())
        .with_context(|| format!("cannot write {}", args.tokens.display()))?;
    println!("{token}");
    eprintln!(
        "token for {:?} added to {} (shown once; the file keeps only its hash)",
        args.principal,
        args.tokens.display()
    );
    Ok(())
}
