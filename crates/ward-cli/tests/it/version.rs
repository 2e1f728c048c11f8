//! `ward version`: the crate list embedded in the binary must be exactly the `ward` binary's
//! dependency tree in `Cargo.lock`.
//!
//! The expected list is computed here apart from `build.rs`: the tree from `cargo tree` in
//! its plain form (build.rs reads the depth-prefixed form and keeps edges), sources and
//! checksums from `Cargo.lock` read with the `toml` crate (build.rs uses a line reader).
//! `cargo tree` is the reference because it runs cargo's own feature resolver, the one the
//! build uses: `cargo metadata`'s resolve graph also lists optional dependencies that only
//! a weak feature (`dep?/feature`) names and never compiles (borsh, errno, zeroize_derive
//! here), so it is checked only as a superset.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::support::{repo_root as workspace_root, ward};
use serde_json::Value;

fn ward_json(args: &[&str]) -> Value {
    let out = ward(args);
    assert!(
        out.status.success(),
        "ward {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// (name, version) of every crate in `ward-cli`'s normal-dependency tree for `target`.
fn expected_tree(target: &str) -> BTreeSet<(String, String)> {
    let package = format!("ward-cli@{}", env!("CARGO_PKG_VERSION"));
    let tree = cargo(&[
        "tree",
        "--locked",
        "--offline",
        "--package",
        &package,
        "--edges",
        "normal",
        "--target",
        target,
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]);
    tree.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap().to_string();
            let version = words.next().unwrap().strip_prefix('v').unwrap().to_string();
            (name, version)
        })
        .collect()
}

/// (name, version) of every package `cargo metadata` reaches from `ward-cli` by normal
/// dependency edges for `target`: a superset of the tree (see the module comment).
fn metadata_superset(target: &str) -> BTreeSet<(String, String)> {
    let meta: Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--locked",
        "--offline",
        "--format-version",
        "1",
        "--filter-platform",
        target,
    ]))
    .unwrap();
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = packages.values().find(|p| p["name"] == "ward-cli").unwrap()["id"]
        .as_str()
        .unwrap();
    let mut seen = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            if dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null())
            {
                todo.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    seen.iter()
        .map(|id| {
            let p = packages[id];
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

type Entry = (String, String, Option<String>, Option<String>);

/// (name, version, source, checksum) for each package in `Cargo.lock`.
fn lock_entries() -> BTreeMap<(String, String), Entry> {
    let text = std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap();
    let lock: toml::Table = toml::from_str(&text).unwrap();
    let mut out = BTreeMap::new();
    for p in lock["package"].as_array().unwrap() {
        let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let key = (s("name").unwrap(), s("version").unwrap());
        let entry = (key.0.clone(), key.1.clone(), s("source"), s("checksum"));
        assert!(out.insert(key, entry).is_none(), "duplicate in Cargo.lock");
    }
    out
}

#[test]
fn deps_json_lists_exactly_the_binary_dependency_tree() {
    let info = ward_json(&["version", "--deps", "--json"]);
    let target = info["target"].as_str().unwrap();
    let got: BTreeSet<Entry> = info["crates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().map(str::to_string);
            (
                s("name").unwrap(),
                s("version").unwrap(),
                s("source"),
                s("checksum"),
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        info["crates"].as_array().unwrap().len(),
        "duplicates"
    );
    assert_eq!(info["crate_count"].as_u64().unwrap() as usize, got.len());

    let lock = lock_entries();
    let expected: BTreeSet<Entry> = expected_tree(target)
        .into_iter()
        .map(|key| lock[&key].clone())
        .collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from `ward version --deps`: {missing:#?}\nnot in the tree: {extra:#?}"
    );
    let superset = metadata_superset(target);
    for e in &got {
        assert!(
            superset.contains(&(e.0.clone(), e.1.clone())),
            "{e:?} not reachable"
        );
    }
    // Sanity: the tree is ward's, not the whole lockfile or a stub.
    assert!(got.len() > 50 && got.len() < lock.len());
    assert!(got.iter().any(|e| e.0 == "tract-onnx"));
    for e in &got {
        if let Some(source) = &e.2 {
            assert_eq!(
                source,
                "registry+https://github.com/rust-lang/crates.io-index"
            );
            assert_eq!(e.3.as_deref().map(str::len), Some(64), "{e:?}");
        }
    }
}

#[test]
fn version_names_commit_toolchain_and_target() {
    let out = ward(&["version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(&format!("ward {}\n", env!("CARGO_PKG_VERSION"))));
    for label in ["commit:", "rustc:", "target:", "profile:", "crates:"] {
        assert!(text.contains(label), "{label} missing from {text}");
    }
    let info = ward_json(&["version", "--json"]);
    assert!(info["rustc"].as_str().unwrap().starts_with("rustc "));
    assert!(info.get("crates").is_none());
    // The commit is HEAD's when built from a git checkout: build.rs reruns when HEAD moves.
    let commit = info["commit"].as_str().unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(workspace_root())
        .output();
    match head {
        Ok(head) if head.status.success() => {
            assert_eq!(commit, String::from_utf8(head.stdout).unwrap().trim());
        }
        _ => assert_eq!(commit, "unknown"),
    }
}

#[test]
fn deps_text_has_one_line_per_crate() {
    let info = ward_json(&["version", "--deps", "--json"]);
    let out = ward(&["version", "--deps"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        info["crates"].as_array().unwrap().len()
    );
    assert!(text.lines().next().unwrap().starts_with("ward-cli "));
    assert!(text.lines().any(|l| l.starts_with("anyhow ")
        && l.contains(" registry+https://github.com/rust-lang/crates.io-index sha256:")));
}

/// The fields CycloneDX 1.5 requires, and the formats it constrains, on what ward fills in.
#[test]
fn sbom_is_cyclonedx_1_5() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.cdx.json");
    let out = ward(&["version", "--sbom", "--out", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bom: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let stdout: Value = serde_json::from_slice(&ward(&["version", "--sbom"]).stdout).unwrap();
    assert_eq!(bom, stdout, "--out and stdout differ");

    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    assert!(bom["version"].as_u64().unwrap() >= 1);
    let component_types = [
        "application",
        "framework",
        "library",
        "container",
        "platform",
        "operating-system",
        "device",
        "device-driver",
        "firmware",
        "file",
        "machine-learning-model",
        "data",
    ];
    let check_component = |c: &Value| {
        assert!(
            component_types.contains(&c["type"].as_str().unwrap()),
            "{c}"
        );
        assert!(!c["name"].as_str().unwrap().is_empty(), "{c}");
        for h in c["hashes"].as_array().into_iter().flatten() {
            assert_eq!(h["alg"], "SHA-256");
            let content = h["content"].as_str().unwrap();
            assert!(content.len() == 64 && content.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        for l in c["licenses"].as_array().into_iter().flatten() {
            assert!(l["expression"].is_string(), "{c}");
        }
        for p in c["properties"].as_array().into_iter().flatten() {
            assert!(p["name"].is_string(), "{c}");
        }
        if let Some(purl) = c["purl"].as_str() {
            assert!(purl.starts_with("pkg:cargo/"), "{purl}");
        }
    };
    let main = &bom["metadata"]["component"];
    check_component(main);
    assert_eq!(main["name"], "ward");
    for tool in bom["metadata"]["tools"]["components"].as_array().unwrap() {
        check_component(tool);
    }
    let components = bom["components"].as_array().unwrap();
    components.iter().for_each(check_component);

    // Same crates as --deps, less the described component itself.
    let deps = ward_json(&["version", "--deps", "--json"]);
    let listed: BTreeSet<(String, String)> = deps["crates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] != "ward-cli")
        .map(|c| (c["name"].to_string(), c["version"].to_string()))
        .collect();
    let in_bom: BTreeSet<(String, String)> = components
        .iter()
        .map(|c| (c["name"].to_string(), c["version"].to_string()))
        .collect();
    assert_eq!(listed, in_bom);

    // bom-refs are unique, and every dependency edge points at one.
    let mut refs = BTreeSet::new();
    assert!(refs.insert(main["bom-ref"].as_str().unwrap()));
    for c in components {
        assert!(refs.insert(c["bom-ref"].as_str().unwrap()), "{c}");
    }
    let dependencies = bom["dependencies"].as_array().unwrap();
    assert_eq!(dependencies.len(), refs.len());
    for d in dependencies {
        assert!(refs.contains(d["ref"].as_str().unwrap()), "{d}");
        for r in d["dependsOn"].as_array().unwrap() {
            assert!(refs.contains(r.as_str().unwrap()), "{r}");
        }
    }
}

#[test]
fn out_requires_sbom() {
    let out = ward(&["version", "--out", "x.json"]);
    assert_eq!(out.status.code(), Some(2));
}
