//! `ward inspect`

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use ward_package::Verification;

/// Describe a package: model, origin, inputs, outputs, operators and parameters.
///
/// Example:
///   ward inspect resnet18.ward --json
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct InspectArgs {
    /// The package directory.
    package: PathBuf,
    #[command(flatten)]
    trust: super::TrustArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let package = args.trust.open(&args.package, 1)?;
    let m = package.manifest();
    let graph = package.graph();
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for node in &graph.nodes {
        *ops.entry(node.op.name()).or_default() += 1;
    }
    let weights = package.executable().weights();
    let param_count: usize = weights.tensors().iter().map(|t| t.len()).sum();
    let param_bytes: usize = weights.tensors().iter().map(|t| t.bytes().len()).sum();
    let signers = match package.verification() {
        Verification::Signed(v) => Some(v.signers().to_vec()),
        Verification::Unverified => None,
    };
    if args.json {
        let out = json!({
            "manifest": m,
            "signed_by": signers,
            "graph": {
                "nodes": graph.nodes.len(),
                "operators": ops,
                "params": graph.params.len(),
                "param_elements": param_count,
                "param_bytes": param_bytes,
            }
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("model:    {} version {}", m.name, m.version);
    println!("created:  {} (unix seconds)", m.created_unix);
    match &signers {
        Some(s) => println!("signed:   verified, by {}", s.join(", ")),
        None => println!("signed:   NOT VERIFIED (--allow-unsigned)"),
    }
    println!(
        "origin:   {} {}",
        m.origin.framework,
        m.origin.framework_version.as_deref().unwrap_or("")
    );
    for f in &m.origin.files {
        println!("          {}  sha256:{}", f.name, f.sha256);
    }
    for i in &m.inputs {
        let range = i
            .range
            .map(|[a, b]| format!(" range [{a}, {b}]"))
            .unwrap_or_default();
        println!("input:    {} {} {:?}{range}", i.name, i.dtype, i.shape);
    }
    for o in &m.outputs {
        println!("output:   {} {} {:?}", o.name, o.dtype, o.shape);
    }
    let ops: Vec<String> = ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("graph:    {} nodes: {}", graph.nodes.len(), ops.join(", "));
    println!(
        "params:   {} tensors, {} elements, {} bytes",
        graph.params.len(),
        param_count,
        param_bytes
    );
    Ok(())
}
