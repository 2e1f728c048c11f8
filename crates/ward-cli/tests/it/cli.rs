//! The `ward` binary end to end: import an MXNet export, inspect, predict, export ONNX,
//! and the exit codes and one-line errors of refusals.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{fixture, stderr, ward};
use ward_core::{npy, Tensor};

/// `ward import mxnet` of a model fixture with `flags` (--input, --range, ...) into `out`.
fn import(name: &str, flags: &[&str], out: &Path) -> Output {
    let model = fixture(name);
    let symbol = model.join("model-symbol.json");
    let params = model.join("model-0000.params");
    let mut args = vec![
        "import",
        "mxnet",
        "--symbol",
        symbol.to_str().unwrap(),
        "--params",
        params.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    ward(&args)
}

/// Imports the LeNet fixture, signed with a new key `dir/keys/test.key`.
fn import_lenet(dir: &Path) -> PathBuf {
    let keys = dir.join("keys");
    let o = ward(&["keygen", "--out", keys.to_str().unwrap(), "--name", "test"]);
    assert!(o.status.success(), "keygen failed: {}", stderr(&o));
    let out = dir.join("lenet.ward");
    let key = keys.join("test.key");
    let o = import(
        "lenet_module",
        &[
            "--input",
            "data:float32:-1,1,28,28",
            "--range",
            "data:-100:100",
            "--sign-key",
            key.to_str().unwrap(),
        ],
        &out,
    );
    assert!(o.status.success(), "import failed: {}", stderr(&o));
    out
}

/// `--trust` for packages made by [`import_lenet`] in `dir`, with the audit log in a file.
fn trusted(dir: &Path) -> Vec<String> {
    vec![
        "--trust".into(),
        dir.join("keys/test.pub").display().to_string(),
        "--audit-log".into(),
        dir.join("audit.log").display().to_string(),
    ]
}

/// `ward` with `extra` appended to `args`.
fn ward_with(args: &[&str], extra: &[String]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(extra.iter().map(String::as_str));
    ward(&all)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.to_f32_vec()
        .iter()
        .zip(b.to_f32_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn import_inspect_predict_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let package = import_lenet(tmp.path());
    let pkg = package.to_str().unwrap();

    let trust = trusted(tmp.path());
    let o = ward_with(&["inspect", pkg, "--json"], &trust);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(info_signers(&o), serde_json::json!(["test"]));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["manifest"]["inputs"][0]["name"], "data");
    assert_eq!(
        info["manifest"]["inputs"][0]["shape"],
        serde_json::json!([-1, 1, 28, 28])
    );
    assert_eq!(info["manifest"]["outputs"][0]["name"], "softmax_output");
    assert_eq!(
        info["manifest"]["outputs"][0]["shape"],
        serde_json::json!([-1, 10])
    );
    assert_eq!(info["manifest"]["origin"]["framework_version"], "1.9.1");

    // --plan lists the plan's steps for a batch of 3, ward's own max pool among them.
    let o = ward_with(
        &[
            "inspect",
            pkg,
            "--json",
            "--plan",
            "--batch",
            "3",
            "--threads",
            "2",
        ],
        &trust,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let plan = &info["plan"];
    assert_eq!(plan["input_shapes"], serde_json::json!([[3, 1, 28, 28]]));
    assert_eq!(plan["threads"], 2);
    let layers = plan["layers"].as_array().unwrap();
    assert!(
        layers
            .iter()
            .all(|l| l["name"].is_string() && l["operator"].is_string()),
        "{plan}"
    );
    assert!(
        layers.iter().any(|l| l["operator"] == "WardPlaneMaxPool"),
        "{plan}"
    );
    // --batch means nothing without --plan: a usage error.
    let o = ward_with(&["inspect", pkg, "--batch", "3"], &trust);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let outdir = tmp.path().join("out");
    let input = fixture("lenet_module").join("input-data.npy");
    let o = ward_with(
        &[
            "predict",
            pkg,
            "--input",
            &format!("data={}", input.display()),
            "--out",
            outdir.to_str().unwrap(),
        ],
        &trust,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = npy::read_npy(&std::fs::read(outdir.join("softmax_output.npy")).unwrap()).unwrap();
    let want = npy::read_npy(&std::fs::read(fixture("lenet_module").join("output-0.npy")).unwrap())
        .unwrap();
    assert!(
        max_diff(&got, &want) <= 1e-4,
        "differs from MXNet by {}",
        max_diff(&got, &want)
    );

    // The exported ONNX model runs in an independent ONNX runtime with the same result.
    let onnx = tmp.path().join("lenet.onnx");
    let o = ward_with(
        &[
            "export",
            "onnx",
            pkg,
            "--out",
            onnx.to_str().unwrap(),
            "--shape",
            "data:2,1,28,28",
        ],
        &trust,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx()
        .model_for_path(&onnx)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x = npy::read_npy(&std::fs::read(&input).unwrap()).unwrap();
    let xt = tract_onnx::prelude::Tensor::from_shape(x.shape(), &x.to_f32_vec()).unwrap();
    let y = model.run(tvec!(xt.into_tvalue())).unwrap();
    let y = y[0].to_plain_array_view::<f32>().unwrap();
    let y = ward_core::Tensor::from_f32(y.shape().to_vec(), &y.iter().copied().collect::<Vec<_>>())
        .unwrap();
    assert!(max_diff(&y, &want) <= 1e-4);
}

#[test]
fn refusals_exit_1_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let package = import_lenet(tmp.path());
    let pkg = package.to_str().unwrap();
    let out = tmp.path().join("out");

    let bad_shape = tmp.path().join("bad.npy");
    std::fs::write(
        &bad_shape,
        npy::write_npy(&Tensor::from_f32(vec![2, 1, 28, 27], &[0.0; 2 * 28 * 27]).unwrap()),
    )
    .unwrap();
    let mut nan = vec![0.0f32; 28 * 28];
    nan[5] = f32::NAN;
    let nan_file = tmp.path().join("nan.npy");
    std::fs::write(
        &nan_file,
        npy::write_npy(&Tensor::from_f32(vec![1, 1, 28, 28], &nan).unwrap()),
    )
    .unwrap();
    let mut big = vec![0.0f32; 28 * 28];
    big[0] = 1000.0;
    let big_file = tmp.path().join("big.npy");
    std::fs::write(
        &big_file,
        npy::write_npy(&Tensor::from_f32(vec![1, 1, 28, 28], &big).unwrap()),
    )
    .unwrap();

    let cases: [(Vec<String>, &str); 5] = [
        (vec![format!("data={}", bad_shape.display())], "dim 3 is 27"),
        (vec![format!("data={}", nan_file.display())], "NaN"),
        (vec![format!("data={}", big_file.display())], "range"),
        (vec![format!("label={}", big_file.display())], "label"),
        (
            vec!["data=/nonexistent.npy".to_string()],
            "/nonexistent.npy",
        ),
    ];
    for (inputs, needle) in cases {
        let mut args = vec!["predict", pkg, "--out", out.to_str().unwrap()];
        for i in &inputs {
            args.push("--input");
            args.push(i);
        }
        let o = ward_with(&args, &trusted(tmp.path()));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{inputs:?}: {e}");
        assert!(
            e.starts_with("error: ") && e.trim_end().lines().count() == 1,
            "{e}"
        );
        assert!(e.contains(needle), "{inputs:?}: expected {needle:?} in {e}");
    }

    // Importing over an existing package changes nothing.
    let before = std::fs::read(package.join("ward.json")).unwrap();
    let o = import("mlp", &["--input", "data:float32:-1,784"], &package);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(std::fs::read(package.join("ward.json")).unwrap(), before);

    // A directory that is not a package is refused by the loader: exit 3, as its
    // audit event says `package.refused`.
    let o = ward_with(
        &["inspect", tmp.path().to_str().unwrap()],
        &trusted(tmp.path()),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let audit = std::fs::read_to_string(tmp.path().join("audit.log")).unwrap();
    let last = audit.lines().last().unwrap();
    assert!(
        last.contains("\"event\":\"package.refused\"")
            && last.contains("\"reason\":\"extra-file\""),
        "{last}"
    );
}

fn info_signers(o: &Output) -> serde_json::Value {
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    info["signed_by"].clone()
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(ward(&[]).status.code(), Some(2));
    assert_eq!(ward(&["predict"]).status.code(), Some(2));
    assert_eq!(
        ward(&["import", "mxnet", "--symbol", "x"]).status.code(),
        Some(2)
    );
    assert_eq!(ward(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn bad_input_declarations_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (input, needle) in [
        ("data:float33:-1,784", "float33"),
        ("data:float32:-1,x", "not an integer"),
        ("data:float32:-1,-2", "-2"),
        ("data", "NAME:DTYPE:DIMS"),
        ("data:float32:-1,783", "weight"),
    ] {
        let o = import("mlp", &["--input", input], &tmp.path().join("x"));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{input}: {e}");
        assert!(e.contains(needle), "{input}: expected {needle:?} in {e}");
        assert!(
            !tmp.path().join("x").exists(),
            "a failed import leaves nothing behind"
        );
    }
}

/// Weights that hold NaN are refused at import unless the importer is told, and the
/// package then says so; a package that holds them without saying so is refused at load.
#[test]
fn non_finite_weights_are_refused_unless_declared() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let o = ward(&["keygen", "--out", keys.to_str().unwrap(), "--name", "test"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = keys.join("test.key");
    // The MLP's parameters with the last float32 of the last array set to NaN.
    let model = tmp.path().join("nan-mlp");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(
        fixture("mlp").join("model-symbol.json"),
        model.join("model-symbol.json"),
    )
    .unwrap();
    let mut params = std::fs::read(fixture("mlp").join("model-0000.params")).unwrap();
    // The names follow the arrays: a u64 count, then each name's u64 length and bytes.
    // The last array's last float32 ends where the count begins.
    let parsed =
        ward_mxnet::params::read_params(&params, &ward_mxnet::limits::ParamsLimits::default())
            .unwrap();
    let first_name = parsed.names.unwrap()[0].clone();
    let names_at = params
        .windows(first_name.len())
        .rposition(|w| w == first_name.as_bytes())
        .unwrap()
        - 16;
    params[names_at - 4..names_at].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(model.join("model-0000.params"), &params).unwrap();
    let import_nan = |out: &Path, extra: &[&str]| {
        let mut args: Vec<String> = [
            "import",
            "mxnet",
            "--symbol",
            model.join("model-symbol.json").to_str().unwrap(),
            "--params",
            model.join("model-0000.params").to_str().unwrap(),
            "--input",
            "data:float32:-1,784",
            "--out",
            out.to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ward(&args)
    };

    let refused = tmp.path().join("refused.ward");
    let o = import_nan(&refused, &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("is NaN or infinite") && e.contains("--allow-nonfinite-weights"),
        "{e}"
    );
    assert!(!refused.exists());

    let allowed = tmp.path().join("allowed.ward");
    let o = import_nan(&allowed, &["--allow-nonfinite-weights"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(allowed.join("ward.json")).unwrap()).unwrap();
    assert_eq!(manifest["nonfinite_weights"], true);
    let trust = keys.join("test.pub");
    let o = ward(&[
        "inspect",
        allowed.to_str().unwrap(),
        "--trust",
        trust.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The same weights, signed without the declaration: refused when loaded.
    let mut manifest = manifest;
    manifest
        .as_object_mut()
        .unwrap()
        .remove("nonfinite_weights");
    std::fs::write(
        allowed.join("ward.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(allowed.join("model.sig")).unwrap();
    let o = ward(&[
        "sign",
        allowed.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ward(&[
        "--audit-log",
        tmp.path().join("audit.log").to_str().unwrap(),
        "inspect",
        allowed.to_str().unwrap(),
        "--trust",
        trust.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(e.contains("does not declare nonfinite_weights"), "{e}");
}

/// Packages written by ward before manifest format 2 (tools/make_v1_packages.sh, with the
/// ward of commit 9b21843) still verify, load and predict exactly as they did.
#[test]
fn packages_of_the_first_formats_still_verify_and_predict_identically() {
    let packages = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/packages");
    let trust = packages.join("v1.pub");
    let tmp = tempfile::tempdir().unwrap();
    for name in ["lenet_module", "text_lstm"] {
        let package = packages.join(name);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(package.join("ward.json")).unwrap()).unwrap();
        assert_eq!(manifest["format_version"], 1, "{name}");
        let p = package.to_str().unwrap();
        let t = trust.to_str().unwrap();
        let audit = tmp.path().join("audit.log");
        let a = audit.to_str().unwrap();
        let o = ward(&["--audit-log", a, "verify", p, "--trust", t]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let out = tmp.path().join(name);
        let input = format!("data={}", fixture(name).join("input-data.npy").display());
        let o = ward(&[
            "--audit-log",
            a,
            "predict",
            p,
            "--trust",
            t,
            "--input",
            &input,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let written: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert_eq!(written.len(), 1, "{name}");
        let got = std::fs::read(written[0].as_ref().unwrap().path()).unwrap();
        let expected = std::fs::read(packages.join(format!("{name}-output.npy"))).unwrap();
        let (got, expected) = (
            npy::read_npy(&got).unwrap(),
            npy::read_npy(&expected).unwrap(),
        );
        assert_eq!(
            got.shape(),
            expected.shape(),
            "{name}: the output's shape changed"
        );
        assert_eq!(
            got.dtype(),
            expected.dtype(),
            "{name}: the output's dtype changed"
        );
        // tract picks its matrix kernels by the CPU (AVX-512 or AVX2 with FMA), which sum
        // in different orders: the same package computes within a few ulps, not bit for
        // bit, on another machine (the fixture was written on an AVX-512 one).
        for (i, (g, e)) in got
            .to_f32_vec()
            .iter()
            .zip(expected.to_f32_vec())
            .enumerate()
        {
            assert!(
                (g - e).abs() <= 1e-6 * e.abs().max(1.0),
                "{name}: output {i} changed from {e} to {g}"
            );
        }
    }
}
