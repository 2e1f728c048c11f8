//! `ward export mxnet`: a signed package written back as MXNet files, which import again
//! to a package that predicts the same; existing files are never overwritten, and an
//! unsigned package is opened only with `--allow-unsigned`, as every command opens one.
//! (That MXNet itself loads the files is checked by hand: tools/check_mxnet_export.py.)

use std::path::Path;

use crate::support::{fixture, stderr, ward};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Imports the Module-API LeNet (BatchNorm states, a SoftmaxOutput with its label) into
/// `out`, signed with `key` if given.
fn import_lenet(symbol: &Path, params: &Path, out: &Path, key: Option<&Path>) {
    let mut args = vec![
        "import",
        "mxnet",
        "--symbol",
        s(symbol),
        "--params",
        s(params),
        "--input",
        "data:float32:-1,1,28,28",
        "--name",
        "lenet",
        "--out",
        s(out),
    ];
    if let Some(key) = key {
        args.extend(["--sign-key", s(key)]);
    }
    let o = ward(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn predict(package: &Path, trust: &Path, out: &Path) -> Vec<u8> {
    let input = format!(
        "data={}",
        fixture("lenet_module").join("input-data.npy").display()
    );
    let o = ward(&[
        "predict",
        s(package),
        "--trust",
        s(trust),
        "--input",
        &input,
        "--out",
        s(out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read(out.join("softmax_output.npy")).unwrap()
}

#[test]
fn a_signed_package_goes_back_to_mxnet_and_imports_again_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let o = ward(&["keygen", "--out", s(&keys), "--name", "k"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (key, trust) = (keys.join("k.key"), keys.join("k.pub"));
    let model = fixture("lenet_module");
    let pkg = tmp.path().join("lenet.ward");
    import_lenet(
        &model.join("model-symbol.json"),
        &model.join("model-0000.params"),
        &pkg,
        Some(&key),
    );

    // The prefix's directory is created.
    let prefix = tmp.path().join("mx/lenet");
    let o = ward(&[
        "export",
        "mxnet",
        s(&pkg),
        "--trust",
        s(&trust),
        "--out",
        s(&prefix),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("output: softmax_output"), "{stdout}");
    let symbol = tmp.path().join("mx/lenet-symbol.json");
    let params = tmp.path().join("mx/lenet-0000.params");
    assert!(symbol.is_file() && params.is_file());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&symbol).unwrap()).unwrap();
    assert_eq!(
        json["attrs"]["mxnet_version"],
        serde_json::json!(["int", 10901])
    );
    let bytes = std::fs::read(&params).unwrap();
    assert_eq!(&bytes[..8], &0x112u64.to_le_bytes());

    // The exported files import again, to a package that predicts the same bytes.
    let again = tmp.path().join("again.ward");
    import_lenet(&symbol, &params, &again, Some(&key));
    let want = predict(&pkg, &trust, &tmp.path().join("pred-a"));
    let got = predict(&again, &trust, &tmp.path().join("pred-b"));
    assert_eq!(got, want);

    // Nothing is overwritten: not the files, not even one of them.
    let before = std::fs::read(&symbol).unwrap();
    let o = ward(&[
        "export",
        "mxnet",
        s(&pkg),
        "--trust",
        s(&trust),
        "--out",
        s(&prefix),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&symbol).unwrap(), before);
    std::fs::remove_file(&symbol).unwrap();
    let o = ward(&[
        "export",
        "mxnet",
        s(&pkg),
        "--trust",
        s(&trust),
        "--out",
        s(&prefix),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("lenet-0000.params exists"),
        "{}",
        stderr(&o)
    );
    assert!(!symbol.exists(), "a half export was left behind");
}

#[test]
fn an_unsigned_package_needs_allow_unsigned() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("lenet_module");
    let pkg = tmp.path().join("lenet.ward");
    import_lenet(
        &model.join("model-symbol.json"),
        &model.join("model-0000.params"),
        &pkg,
        None,
    );
    let prefix = tmp.path().join("lenet");
    let o = ward(&["export", "mxnet", s(&pkg), "--out", s(&prefix)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no trust policy"), "{}", stderr(&o));
    assert!(!tmp.path().join("lenet-symbol.json").exists());

    let o = ward(&[
        "export",
        "mxnet",
        s(&pkg),
        "--allow-unsigned",
        "--out",
        s(&prefix),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--allow-unsigned"), "{}", stderr(&o));
    assert!(tmp.path().join("lenet-symbol.json").is_file());
    assert!(tmp.path().join("lenet-0000.params").is_file());
}
