//! `ward version`: what this binary was built from, embedded at build time by `build.rs`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::json;

/// One crate compiled into the `ward` binary, as `build.rs` found it in the `ward-cli`
/// normal-dependency tree and in `Cargo.lock`.
#[derive(Debug)]
pub struct EmbeddedCrate {
    pub name: &'static str,
    pub version: &'static str,
    /// `Cargo.lock`'s source (`registry+https://github.com/rust-lang/crates.io-index`);
    /// `None` for the workspace's own crates.
    pub source: Option<&'static str>,
    /// `Cargo.lock`'s checksum: the SHA-256 of the `.crate` archive.
    pub checksum: Option<&'static str>,
    /// The crate's licence expression, as its manifest states it.
    pub license: Option<&'static str>,
    /// Indices into [`embedded::CRATES`] of the crates this one depends on.
    pub deps: &'static [usize],
}

/// The build information `build.rs` wrote.
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/build_info.rs"));
}

/// The crates compiled into this binary, `ward-cli` itself first.
pub fn crates() -> &'static [EmbeddedCrate] {
    embedded::CRATES
}

/// The crates for listing: `ward-cli` first, then by name and version.
fn listed() -> Vec<&'static EmbeddedCrate> {
    let mut list: Vec<&EmbeddedCrate> = crates().iter().collect();
    list.sort_by_key(|c| (c.name != "ward-cli", c.name, c.version));
    list
}

/// Print what this binary was built from: version, commit, toolchain, crates, SBOM
///
/// Without flags: ward's version, the git commit, the rustc version, target and profile.
/// --deps lists every crate compiled into the binary (embedded at build time from
/// Cargo.lock); --sbom writes the same as a CycloneDX 1.5 JSON SBOM.
///
/// Examples:
///   ward version
///   ward version --deps
///   ward version --deps --json
///   ward version --sbom --out ward.cdx.json
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct VersionArgs {
    /// List every crate compiled into this binary: name, version, source, checksum.
    #[arg(long, conflicts_with = "sbom")]
    deps: bool,
    /// Print JSON instead of text.
    #[arg(long, conflicts_with = "sbom")]
    json: bool,
    /// Write a CycloneDX 1.5 JSON SBOM of this binary (to stdout, or to --out).
    #[arg(long)]
    sbom: bool,
    /// The file --sbom writes (replaced if it exists).
    #[arg(long, value_name = "FILE", requires = "sbom")]
    out: Option<PathBuf>,
}

pub fn run(args: VersionArgs) -> Result<()> {
    if args.sbom {
        let text = serde_json::to_string_pretty(&sbom())? + "\n";
        return match &args.out {
            Some(path) => std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display())),
            None => write_stdout(&text),
        };
    }
    let mut info = json!({
        "name": "ward",
        "version": env!("CARGO_PKG_VERSION"),
        "commit": embedded::COMMIT,
        "rustc": embedded::RUSTC,
        "target": embedded::TARGET,
        "profile": embedded::PROFILE,
        "crate_count": crates().len(),
    });
    if args.json {
        if args.deps {
            let list: Vec<_> = listed()
                .into_iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "version": c.version,
                        "source": c.source,
                        "checksum": c.checksum,
                        "license": c.license,
                    })
                })
                .collect();
            if let Some(fields) = info.as_object_mut() {
                fields.insert("crates".into(), list.into());
            }
        }
        return write_stdout(&(serde_json::to_string_pretty(&info)? + "\n"));
    }
    let mut text = String::new();
    if args.deps {
        for c in listed() {
            text += &format!(
                "{} {} {} {}\n",
                c.name,
                c.version,
                c.source.unwrap_or("workspace"),
                c.checksum
                    .map_or("-".to_string(), |s| format!("sha256:{s}"))
            );
        }
    } else {
        text += &format!("ward {}\n", env!("CARGO_PKG_VERSION"));
        text += &format!("commit:  {}\n", embedded::COMMIT);
        text += &format!("rustc:   {}\n", embedded::RUSTC);
        text += &format!("target:  {}\n", embedded::TARGET);
        text += &format!("profile: {}\n", embedded::PROFILE);
        text += &format!(
            "crates:  {} compiled in (`ward version --deps` lists them)\n",
            crates().len()
        );
    }
    write_stdout(&text)
}

/// Writes to stdout, turning a closed pipe (`ward version --deps | head`) into an error
/// message rather than a panic.
fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

// CycloneDX 1.5 (https://cyclonedx.org/docs/1.5/json/): only the fields ward fills in.
// Required by the schema: `bomFormat`, `specVersion` on the BOM; `type`, `name` on a
// component; `alg`, `content` on a hash; `ref` on a dependency; `name` on a property.
// No `serialNumber` or timestamp: the SBOM of a given binary is the same every time.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    #[serde(rename = "$schema")]
    schema: &'static str,
    bom_format: &'static str,
    spec_version: &'static str,
    version: u32,
    metadata: Metadata,
    components: Vec<Component>,
    dependencies: Vec<Dependency>,
}

#[derive(Serialize)]
struct Metadata {
    tools: Tools,
    component: Component,
}

#[derive(Serialize)]
struct Tools {
    components: Vec<Component>,
}

#[derive(Serialize)]
struct Component {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref")]
    bom_ref: String,
    name: &'static str,
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    licenses: Vec<License>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

#[derive(Serialize)]
struct Hash {
    alg: &'static str,
    content: &'static str,
}

#[derive(Serialize)]
struct License {
    expression: &'static str,
}

#[derive(Serialize)]
struct Property {
    name: &'static str,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dependency {
    #[serde(rename = "ref")]
    reference: String,
    depends_on: Vec<String>,
}

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// The SBOM's reference for a crate: its package URL for crates.io crates, otherwise
/// `name@version` (the workspace's own crates, which are not published).
fn bom_ref(c: &EmbeddedCrate) -> String {
    match c.source {
        Some(CRATES_IO) => format!("pkg:cargo/{}@{}", c.name, c.version),
        _ => format!("{}@{}", c.name, c.version),
    }
}

fn component(c: &EmbeddedCrate, kind: &'static str) -> Component {
    let mut properties = Vec::new();
    if let Some(source) = c.source.filter(|s| *s != CRATES_IO) {
        properties.push(Property {
            name: "cargo:source",
            value: source.to_string(),
        });
    }
    Component {
        kind,
        bom_ref: bom_ref(c),
        name: c.name,
        version: c.version,
        purl: (c.source == Some(CRATES_IO)).then(|| format!("pkg:cargo/{}@{}", c.name, c.version)),
        hashes: c
            .checksum
            .map(|content| Hash {
                alg: "SHA-256",
                content,
            })
            .into_iter()
            .collect(),
        licenses: c
            .license
            .map(|expression| License { expression })
            .into_iter()
            .collect(),
        properties,
    }
}

/// The CycloneDX 1.5 SBOM of this binary: `ward-cli` as the described component, every
/// other crate compiled in as a library component, and the dependency edges between them.
#[allow(
    clippy::indexing_slicing,
    reason = "the build script writes ward-cli itself at ROOT; a unit test checks it"
)]
pub fn sbom() -> Bom {
    let all = crates();
    let root = &all[embedded::ROOT];
    let mut described = component(root, "application");
    described.name = "ward";
    described.properties.extend([
        Property {
            name: "ward:commit",
            value: embedded::COMMIT.into(),
        },
        Property {
            name: "ward:rustc",
            value: embedded::RUSTC.into(),
        },
        Property {
            name: "ward:target",
            value: embedded::TARGET.into(),
        },
        Property {
            name: "ward:profile",
            value: embedded::PROFILE.into(),
        },
    ]);
    let mut tool = component(root, "application");
    tool.name = "ward";
    tool.bom_ref = format!("tool:{}", tool.bom_ref);
    tool.licenses.clear();
    let components = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != embedded::ROOT)
        .map(|(_, c)| component(c, "library"))
        .collect();
    let dependencies = all
        .iter()
        .map(|c| Dependency {
            reference: bom_ref(c),
            depends_on: c
                .deps
                .iter()
                .filter_map(|&d| all.get(d))
                .map(bom_ref)
                .collect(),
        })
        .collect();
    Bom {
        schema: "http://cyclonedx.org/schema/bom-1.5.schema.json",
        bom_format: "CycloneDX",
        spec_version: "1.5",
        version: 1,
        metadata: Metadata {
            tools: Tools {
                components: vec![tool],
            },
            component: described,
        },
        components,
        dependencies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_is_consistent() {
        let all = crates();
        assert_eq!(all[embedded::ROOT].name, "ward-cli");
        assert_eq!(all[embedded::ROOT].version, env!("CARGO_PKG_VERSION"));
        for c in all {
            assert!(c.deps.iter().all(|&d| d < all.len()), "{c:?}");
            if c.source.is_some() {
                let sum = c.checksum.unwrap_or_default();
                assert!(sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
        // ward uses these directly; a list without them was not built from the tree.
        for name in [
            "anyhow",
            "clap",
            "serde_json",
            "semver",
            "toml",
            "x509-cert",
        ] {
            assert!(all.iter().any(|c| c.name == name), "{name} missing");
        }
    }

    #[test]
    fn sbom_refs_are_unique_and_resolve() {
        let bom = serde_json::to_value(sbom()).unwrap();
        let mut refs = std::collections::BTreeSet::new();
        refs.insert(
            bom["metadata"]["component"]["bom-ref"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        for c in bom["components"].as_array().unwrap() {
            assert!(refs.insert(c["bom-ref"].as_str().unwrap().to_string()));
        }
        for d in bom["dependencies"].as_array().unwrap() {
            assert!(refs.contains(d["ref"].as_str().unwrap()));
            for r in d["dependsOn"].as_array().unwrap() {
                assert!(refs.contains(r.as_str().unwrap()), "{r}");
            }
        }
    }
}
