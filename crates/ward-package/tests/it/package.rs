//! Writing and reading package directories.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use support::{as_written, manifest, weights};
use ward_package::limits::PackageLimits;
use ward_package::{
    open_package, read_raw_package, write_package, PackageError, PackageFiles, Trust, GRAPH_FILE,
    MANIFEST_FILE, WEIGHTS_FILE,
};

/// Reads a package without signature checks (signing has its own tests).
fn read_package(dir: &Path) -> Result<PackageFiles, PackageError> {
    open_package(
        dir,
        &Trust::AllowUnsigned,
        std::time::SystemTime::now(),
        &Default::default(),
    )
    .map(|o| o.files)
}

const GRAPH: &[u8] = br#"{"ward_graph": 1, "nodes": []}"#;

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A fresh package in a temporary directory: (the temp dir guard, the package path).
fn package() -> (tempfile::TempDir, PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("model");
    write_package(&dir, &manifest(), GRAPH, &weights()).unwrap();
    (parent, dir)
}

#[test]
fn round_trip() {
    let (parent, dir) = package();
    assert_eq!(listing(parent.path()), vec!["model"]);
    assert_eq!(listing(&dir), vec![GRAPH_FILE, MANIFEST_FILE, WEIGHTS_FILE]);
    let p = read_package(&dir).unwrap();
    assert_eq!(p.manifest, as_written(manifest(), &dir));
    assert_eq!(p.graph_json, GRAPH);
    assert_eq!(p.weights.len(), 3);
    for (name, t) in weights() {
        let (_, got) = p.weights.iter().find(|(n, _)| *n == name).unwrap();
        assert_eq!(got, &t, "{name}");
    }
    // The same inputs give the same bytes (digests are reproducible).
    let again = parent.path().join("again");
    write_package(&again, &manifest(), GRAPH, &weights()).unwrap();
    for f in [MANIFEST_FILE, GRAPH_FILE, WEIGHTS_FILE] {
        assert_eq!(
            fs::read(dir.join(f)).unwrap(),
            fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn writes_into_an_existing_empty_directory_only() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("empty");
    fs::create_dir(&dir).unwrap();
    write_package(&dir, &manifest(), GRAPH, &weights()).unwrap();
    assert!(read_package(&dir).is_ok());
    // Now it is not empty.
    let err = write_package(&dir, &manifest(), GRAPH, &weights()).unwrap_err();
    assert!(matches!(err, PackageError::TargetExists { .. }), "{err}");
    // A file is not a directory.
    let file = parent.path().join("file");
    fs::write(&file, b"x").unwrap();
    let err = write_package(&file, &manifest(), GRAPH, &weights()).unwrap_err();
    assert!(matches!(err, PackageError::TargetExists { .. }), "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn failure_leaves_nothing_behind() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("model");
    // Duplicate tensor names.
    let mut w = weights();
    w.push(w[0].clone());
    let err = write_package(&dir, &manifest(), GRAPH, &w).unwrap_err();
    assert!(matches!(err, PackageError::DuplicateTensor { .. }), "{err}");
    assert!(listing(parent.path()).is_empty());
    // An invalid manifest.
    let mut m = manifest();
    m.graph = "../graph.json".into();
    let err = write_package(&dir, &m, GRAPH, &weights()).unwrap_err();
    assert!(matches!(err, PackageError::ManifestField { .. }), "{err}");
    assert!(listing(parent.path()).is_empty());
    // A parent that does not exist.
    let err =
        write_package(&parent.path().join("a/b"), &manifest(), GRAPH, &weights()).unwrap_err();
    assert!(matches!(err.cause(), PackageError::Io { .. }), "{err}");
    assert!(listing(parent.path()).is_empty());
}

#[cfg(unix)]
#[test]
fn symlinks_are_refused() {
    let (parent, dir) = package();
    let outside = parent.path().join("graph-copy.json");
    fs::rename(dir.join(GRAPH_FILE), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join(GRAPH_FILE)).unwrap();
    let err = read_package(&dir).unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::Symlink { file } if file == GRAPH_FILE),
        "{err}"
    );

    // A link to the package directory itself is fine.
    let (parent2, dir2) = package();
    let link = parent2.path().join("current");
    std::os::unix::fs::symlink(&dir2, &link).unwrap();
    assert!(read_package(&link).is_ok());
}

#[test]
fn extra_and_missing_files() {
    let (_parent, dir) = package();
    fs::write(dir.join("model.sig"), b"sig").unwrap();
    fs::write(dir.join("model.1.sig"), b"sig1").unwrap();
    let raw = read_raw_package(&dir, &PackageLimits::default()).unwrap();
    assert_eq!(
        raw.signatures,
        vec![
            ("model.1.sig".to_string(), b"sig1".to_vec()),
            ("model.sig".to_string(), b"sig".to_vec())
        ]
    );
    assert!(read_package(&dir).is_ok());

    for extra in ["notes.txt", ".hidden", "model.x.sig", "graph.json.bak"] {
        fs::write(dir.join(extra), b"x").unwrap();
        let err = read_package(&dir).unwrap_err();
        assert!(
            matches!(err.cause(), PackageError::UnexpectedFile { file, .. } if file == extra),
            "{extra}: {err}"
        );
        fs::remove_file(dir.join(extra)).unwrap();
    }
    fs::create_dir(dir.join("model.2.sig")).unwrap();
    let err = read_package(&dir).unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::NotRegularFile { file } if file == "model.2.sig"),
        "{err}"
    );
    fs::remove_dir(dir.join("model.2.sig")).unwrap();

    fs::remove_file(dir.join(WEIGHTS_FILE)).unwrap();
    let err = read_package(&dir).unwrap_err();
    assert!(
        matches!(
            err.cause(),
            PackageError::MissingFile { file: WEIGHTS_FILE }
        ),
        "{err}"
    );

    let err = read_package(&dir.join(MANIFEST_FILE)).unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::NotADirectory { .. }),
        "{err}"
    );
    let err = read_package(&dir.join("nope")).unwrap_err();
    assert!(matches!(err.cause(), PackageError::Io { .. }), "{err}");
}

#[test]
fn size_limits_are_checked_before_reading() {
    let (_parent, dir) = package();
    let limits = PackageLimits {
        max_graph_bytes: 10,
        ..PackageLimits::default()
    };
    let err = read_raw_package(&dir, &limits).unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::FileTooLarge { file, size, limit: 10 } if file == GRAPH_FILE && *size == GRAPH.len() as u64),
        "{err}"
    );
}

/// Rewrites ward.json with `edit` applied to its JSON.
fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
    edit(&mut v);
    fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_vec_pretty(&v).unwrap(),
    )
    .unwrap();
}

#[test]
fn bad_manifest_fields_are_refused() {
    type Edit = fn(&mut serde_json::Value);
    type Check = fn(&PackageError) -> bool;
    let cases: Vec<(Edit, Check)> = vec![
        (
            |v| v["format_version"] = 3.into(),
            |e| matches!(e, PackageError::UnsupportedFormatVersion { found: 3, .. }),
        ),
        (
            |v| v["surprise"] = true.into(),
            |e| matches!(e, PackageError::ManifestJson { .. }),
        ),
        (
            |v| v["graph"] = "../../etc/passwd".into(),
            |e| matches!(e, PackageError::ManifestField { field, .. } if field == "graph"),
        ),
        (
            |v| v["weights"] = "/abs/weights.safetensors".into(),
            |e| matches!(e, PackageError::ManifestField { field, .. } if field == "weights"),
        ),
        (
            |v| v["origin"]["files"][0]["name"] = "../x".into(),
            |e| matches!(e, PackageError::ManifestField { field, .. } if field == "origin.files[0].name"),
        ),
        (
            |v| v["origin"]["files"][0]["sha256"] = "00".into(),
            |e| matches!(e, PackageError::ManifestField { field, .. } if field == "origin.files[0].sha256"),
        ),
        (
            |v| v["name"] = "".into(),
            |e| matches!(e, PackageError::ManifestField { field, .. } if field == "name"),
        ),
        (
            |v| v["inputs"][0]["shape"][0] = (-5).into(),
            |e| matches!(e, PackageError::ManifestSpec { field, .. } if field == "inputs[0]"),
        ),
        (
            |v| v["inputs"][0]["dtype"] = "int16".into(),
            |e| matches!(e, PackageError::ManifestJson { .. }),
        ),
        (
            |v| {
                let first = v["outputs"][0].clone();
                v["outputs"].as_array_mut().unwrap().push(first);
            },
            |e| matches!(e, PackageError::ManifestField { field, .. } if field == "outputs[1].name"),
        ),
        (
            |v| v["output_policy"]["top_k"] = 0.into(),
            |e| matches!(e, PackageError::ManifestField { field, .. } if field == "output_policy.top_k"),
        ),
        (
            |v| v["created_unix"] = (-1).into(),
            |e| matches!(e, PackageError::ManifestJson { .. }),
        ),
    ];
    for (i, (edit, check)) in cases.into_iter().enumerate() {
        let (_parent, dir) = package();
        edit_manifest(&dir, edit);
        let err = read_package(&dir).unwrap_err();
        assert!(check(err.cause()), "case {i}: {err}");
    }
}

#[test]
fn corrupt_weights_are_refused() {
    let (_parent, dir) = package();
    let path = dir.join(WEIGHTS_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let len = bytes.len() as u64;
    bytes.push(0);
    fs::write(&path, &bytes).unwrap();
    // A file of another size than the manifest records is refused before it is read.
    let err = read_package(&dir).unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::SizeMismatch { file, declared, actual } if file == WEIGHTS_FILE && *declared == len && *actual == len + 1),
        "{err}"
    );
    // With the size recorded, the weights themselves are parsed and refused.
    edit_manifest(&dir, |v| v["file_sizes"]["weights"] = (len + 1).into());
    let err = read_package(&dir).unwrap_err();
    assert!(
        matches!(err.cause(), PackageError::WeightsDataNotCovered { .. }),
        "{err}"
    );
    assert!(err.cause().to_string().starts_with("weights.safetensors:"));
}
