//! `ward inspect`

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use ward_package::Verification;

/// Describe a package: model, origin, inputs, outputs, operators and parameters; with
/// --plan, also which operator runs each step of its plan.
///
/// Example:
///   ward inspect resnet18.ward --json
///   ward inspect resnet18.ward --plan --batch 8 --threads 2
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
    /// Also build the plan for the declared inputs and list which operator runs each
    /// step (ward's own kernels are named `Ward…`).
    #[arg(long)]
    plan: bool,
    /// With --plan: the batch, the first dimension of every input (default: the declared
    /// one, 1 where it is variable).
    #[arg(long, requires = "plan", value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: Option<u32>,
    /// With --plan: the threads the plan is built for.
    #[arg(long, default_value_t = 1, requires = "plan", value_parser = super::parse_threads)]
    threads: usize,
}

/// The input shapes a plan is built for: each declared shape with its first dimension
/// `batch` (or, without one, the declared size, 1 where it is variable); any other
/// variable dimension is refused, since no size for it is known.
fn plan_shapes(
    inputs: &[ward_graph::schema::InputSpec],
    batch: Option<u32>,
) -> Result<Vec<Vec<usize>>> {
    inputs
        .iter()
        .map(|input| {
            input
                .shape
                .iter()
                .enumerate()
                .map(|(axis, &dim)| match (axis, batch) {
                    (0, Some(batch)) => Ok(batch as usize),
                    (0, None) if dim < 0 => Ok(1),
                    _ => usize::try_from(dim).map_err(|_| {
                        anyhow::anyhow!(
                            "input {:?} has a variable dimension {axis}: --plan can set only the first (--batch)",
                            input.name
                        )
                    }),
                })
                .collect()
        })
        .collect()
}

pub fn run(args: InspectArgs) -> Result<()> {
    let package = args.trust.open(&args.package, args.threads)?;
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
    let plan = if args.plan {
        let shapes = plan_shapes(&m.inputs, args.batch)?;
        let plan = package
            .executable()
            .plan(&shapes)
            .context("building the plan")?;
        Some((shapes, plan.layers()))
    } else {
        None
    };
    if args.json {
        let mut out = json!({
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
        if let (Some((shapes, layers)), Some(fields)) = (&plan, out.as_object_mut()) {
            let plan = json!({
                "input_shapes": shapes,
                "threads": args.threads,
                "layers": layers
                    .iter()
                    .map(|(name, operator)| json!({"name": name, "operator": operator}))
                    .collect::<Vec<_>>(),
            });
            fields.insert("plan".into(), plan);
        }
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
    if let Some((shapes, layers)) = &plan {
        println!(
            "plan:     inputs {shapes:?}, threads {}, {} steps:",
            args.threads,
            layers.len()
        );
        for (name, operator) in layers {
            println!("          {operator:<24} {name}");
        }
    }
    Ok(())
}
