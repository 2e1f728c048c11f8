//! MXNet optimizer-state files: the real ones MXNet 1.9.1 wrote read back exactly, the
//! writer's output equals MXNet's bytes, and the hostile corpus is refused with the opcode
//! or global named (tests/fixtures/mxnet-states, made by tools/make_states_fixtures.py).

use std::path::{Path, PathBuf};

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value as Json;
use ward_mxnet::params::StoredArray;
use ward_mxnet::pickle::{read_pickle, PickleError, PickleLimits, Value};
use ward_mxnet::states::{
    read_optimizer_states, write_optimizer_states, OptimizerStates, Plain, SavedOptimizer,
    StateKey, StateValue, StatesError, StatesLimits,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mxnet-states")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(name: &str) -> Json {
    serde_json::from_slice(&read(name)).unwrap()
}

fn load(name: &str) -> OptimizerStates {
    read_optimizer_states(&read(name), &StatesLimits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn check_state(file: &str, path: &str, got: &StateValue, want: &Json) {
    match (got, want) {
        (StateValue::None, Json::Null) => {}
        (StateValue::Tuple(items), Json::Array(wanted)) => {
            assert_eq!(items.len(), wanted.len(), "{file} {path}");
            for (i, (g, w)) in items.iter().zip(wanted).enumerate() {
                check_state(file, &format!("{path}[{i}]"), g, w);
            }
        }
        (StateValue::Array(StoredArray::Dense(t)), Json::Object(w)) => {
            let shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
            assert_eq!(t.shape(), shape.as_slice(), "{file} {path}");
            assert_eq!(
                t.dtype().to_string(),
                w["dtype"].as_str().unwrap(),
                "{file} {path}"
            );
            assert_eq!(
                format!("{:016x}", fnv1a64(t.bytes())),
                w["fnv1a64"].as_str().unwrap(),
                "{file} {path}"
            );
            if let Some(bits) = w.get("bits") {
                let bits: Vec<u32> = serde_json::from_value(bits.clone()).unwrap();
                let got: Vec<u32> = match t.dtype().size() {
                    4 => t
                        .bytes()
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                    _ => t
                        .bytes()
                        .chunks_exact(2)
                        .map(|c| u32::from(u16::from_le_bytes(c.try_into().unwrap())))
                        .collect(),
                };
                assert_eq!(got, bits, "{file} {path}");
            }
        }
        _ => panic!("{file} {path}: {got:?} against {want}"),
    }
}

fn key_json(key: &StateKey) -> Json {
    match key {
        StateKey::Index(i) => Json::from(*i),
        StateKey::Name(n) => Json::from(n.clone()),
    }
}

fn num(v: &Json) -> Option<f64> {
    v.as_f64()
}

fn check_optimizer(file: &str, got: &SavedOptimizer, want: &Json) {
    let class = want["class"].as_str().unwrap();
    assert_eq!(
        format!("mxnet.optimizer.optimizer.{}", got.class),
        class,
        "{file}"
    );
    let f = &want["fields"];
    assert_eq!(got.num_update, f["num_update"].as_i64(), "{file}");
    assert_eq!(
        got.begin_num_update,
        f["begin_num_update"].as_i64(),
        "{file}"
    );
    assert_eq!(got.learning_rate, num(&f["lr"]), "{file}");
    assert_eq!(got.wd, num(&f["wd"]), "{file}");
    assert_eq!(got.rescale_grad, num(&f["rescale_grad"]), "{file}");
    assert_eq!(got.momentum, f.get("momentum").and_then(num), "{file}");
    assert_eq!(got.beta1, f.get("beta1").and_then(num), "{file}");
    assert_eq!(got.beta2, f.get("beta2").and_then(num), "{file}");
    assert_eq!(got.epsilon, f.get("epsilon").and_then(num), "{file}");
    assert_eq!(got.clip_gradient, num(&f["clip_gradient"]), "{file}");
    assert_eq!(
        got.multi_precision,
        f["multi_precision"].as_bool(),
        "{file}"
    );
    let counts: Vec<(String, i64)> = got
        .index_update_count
        .iter()
        .map(|(k, c)| (key_json(k).to_string().trim_matches('"').to_owned(), *c))
        .collect();
    let want_counts: Vec<(String, i64)> = f["_index_update_count"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, c)| (k.clone(), c.as_i64().unwrap()))
        .collect();
    assert_eq!(counts, want_counts, "{file}");
    assert_eq!(
        got.all_index_update_counts.len(),
        f["_all_index_update_counts"].as_object().unwrap().len()
    );
    assert_eq!(
        got.idx2name.len(),
        f["idx2name"].as_object().unwrap().len(),
        "{file}"
    );
    assert_eq!(got.lr_mult.len(), f["lr_mult"].as_object().unwrap().len());
    assert_eq!(got.wd_mult.len(), f["wd_mult"].as_object().unwrap().len());
    // sym_info is an empty tuple: plain data, kept among the other fields.
    assert!(got.ignored.is_empty(), "{file}: {:?}", got.ignored);
    match (&got.lr_scheduler, &f["lr_scheduler"]) {
        (None, Json::Null) => {}
        (Some(s), Json::Object(w)) => {
            assert_eq!(s.class.to_string(), w["class"].as_str().unwrap(), "{file}");
            let fields = w["fields"].as_object().unwrap();
            assert_eq!(s.fields.len(), fields.len(), "{file}");
            for (name, value) in &s.fields {
                let want = &fields[name.as_str()];
                match value {
                    Plain::Float(x) => assert_eq!(Some(*x), want.as_f64(), "{file} {name}"),
                    Plain::Int(i) => assert_eq!(Some(*i), want.as_i64(), "{file} {name}"),
                    Plain::Str(s) => assert_eq!(Some(s.as_str()), want.as_str(), "{file} {name}"),
                    other => panic!("{file} {name}: {other:?}"),
                }
            }
        }
        (got, want) => panic!("{file}: scheduler {got:?} against {want}"),
    }
}

#[test]
fn mxnet_files_read_back_exactly() {
    let expected = json("expected.json");
    let files = expected.as_object().unwrap();
    assert_eq!(files.len(), 11);
    for (file, want) in files {
        let got = load(file);
        let keys: Vec<Json> = got.states.iter().map(|(k, _)| key_json(k)).collect();
        assert_eq!(&Json::Array(keys), &want["keys"], "{file}");
        for ((_, value), w) in got.states.iter().zip(want["states"].as_array().unwrap()) {
            check_state(file, &format!("states[{}]", w["key"]), value, &w["state"]);
        }
        match (&got.optimizer, &want["optimizer"]) {
            (None, Json::Null) => {}
            (Some(opt), w @ Json::Object(_)) => check_optimizer(file, opt, w),
            (got, want) => panic!("{file}: optimizer {got:?} against {want}"),
        }
    }
}

#[test]
fn keys_name_the_parameters_as_mxnet_does() {
    // update_on_kvstore: the kvstore's updater is keyed by parameter name.
    let kv = load("module_kvstore/model-0001.states");
    let names: Vec<StateKey> = ["fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"]
        .map(|n| StateKey::Name(n.into()))
        .to_vec();
    assert_eq!(
        kv.states.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        names
    );
    // Gluon: the Trainer's parameters in name order (bias before weight).
    let next = json("gluon_sgd/next.json");
    assert_eq!(
        next["param_names"],
        serde_json::json!([
            "mlp_fc1_bias",
            "mlp_fc1_weight",
            "mlp_fc2_bias",
            "mlp_fc2_weight"
        ])
    );
    let gluon = load("gluon_sgd/model-0001.states");
    let shapes: Vec<Vec<usize>> = gluon
        .states
        .iter()
        .map(|(_, v)| match v {
            StateValue::Array(a) => a.shape().to_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(shapes, [vec![16], vec![16, 8], vec![4], vec![4, 16]]);
    let opt = gluon.optimizer.unwrap();
    assert_eq!(opt.class, "SGD");
    assert_eq!(opt.momentum, Some(0.9));
    assert_eq!(opt.num_update, Some(3));
    // Multi-precision: (float32 master weight, (mean, var)) for float16 weights.
    let mp = load("multi_precision.states");
    match &mp.states[0].1 {
        StateValue::Tuple(items) => match items.as_slice() {
            [StateValue::Array(w32), StateValue::Tuple(inner)] => {
                assert_eq!(w32.dtype(), ward_core::DType::F32);
                assert_eq!(inner.len(), 2);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn writer_gives_mxnet_bytes_for_module_files() {
    for file in [
        "module_sgd/model-0001.states",
        "module_adam/model-0001.states",
        "framing.states",
    ] {
        let bytes = read(file);
        let states = load(file);
        let written = write_optimizer_states(&states.states).unwrap();
        let first = written.iter().zip(&bytes).position(|(a, b)| a != b);
        assert!(
            written == bytes,
            "{file}: the writer's bytes differ from MXNet's (lengths {} and {}, first at {first:?}: {:?} against {:?})",
            written.len(),
            bytes.len(),
            first.map(|i| &written[i.saturating_sub(8)..(i + 8).min(written.len())]),
            first.map(|i| &bytes[i.saturating_sub(8)..(i + 8).min(bytes.len())]),
        );
    }
}

#[test]
fn writer_differs_from_a_kvstore_file_only_in_the_device() {
    // With update_on_kvstore, MXNet's local kvstore keeps the states in pinned memory
    // (`cpu_pinned(0)`, device type 3). The reader drops contexts (MXNet moves each state
    // to its weight's device when loading), and the writer writes `cpu(0)` (type 1).
    let file = "module_kvstore/model-0001.states";
    let bytes = read(file);
    let written = write_optimizer_states(&load(file).states).unwrap();
    assert_eq!(written.len(), bytes.len());
    let differing: Vec<(u8, u8)> = written
        .iter()
        .zip(&bytes)
        .filter(|(a, b)| a != b)
        .map(|(&a, &b)| (a, b))
        .collect();
    assert_eq!(differing, vec![(1, 3); 4], "one device type per array");
}

#[test]
fn writer_output_reads_back_to_the_same_states() {
    for file in [
        "gluon_sgd/model-0001.states",
        "gluon_adam/model-0001.states",
        "multi_precision.states",
        "protocol2.states",
        "protocol3_module.states",
    ] {
        let states = load(file);
        let written = write_optimizer_states(&states.states).unwrap();
        let again = read_optimizer_states(&written, &StatesLimits::default()).unwrap();
        assert_eq!(again.states, states.states, "{file}");
        assert_eq!(again.optimizer, None);
        // Deterministic.
        assert_eq!(write_optimizer_states(&states.states).unwrap(), written);
    }
    // Protocols 2, 3 and 4 of the same states read the same.
    assert_eq!(
        load("protocol2_module.states").states,
        load("module_adam/model-0001.states").states
    );
    assert_eq!(
        load("protocol3.states"),
        load("gluon_adam/model-0001.states")
    );
    assert_eq!(
        load("protocol2.states"),
        load("gluon_adam/model-0001.states")
    );
}

#[test]
fn writer_batches_and_keys_like_python() {
    // 0, 1 and 1 000 / 1 001 items; large and string keys; nested and long tuples.
    let t = |v: f32| {
        StateValue::Array(StoredArray::Dense(
            ward_core::Tensor::from_f32(vec![1], &[v]).unwrap(),
        ))
    };
    for n in [0usize, 1, 2, 1000, 1001] {
        let states: Vec<(StateKey, StateValue)> = (0..n)
            .map(|i| (StateKey::Index(i as u64 * 100_003), StateValue::None))
            .collect();
        let written = write_optimizer_states(&states).unwrap();
        let back = read_optimizer_states(&written, &StatesLimits::default()).unwrap();
        assert_eq!(back.states, states);
    }
    let states = vec![
        (
            StateKey::Index(i64::MAX as u64),
            StateValue::Tuple(vec![t(1.0), t(2.0), t(3.0), t(4.0)]),
        ),
        (StateKey::Name("w".repeat(300)), StateValue::Tuple(vec![])),
        (
            StateKey::Index(1 << 31),
            StateValue::Tuple(vec![t(5.0), StateValue::Tuple(vec![StateValue::None])]),
        ),
    ];
    let written = write_optimizer_states(&states).unwrap();
    let back = read_optimizer_states(&written, &StatesLimits::default()).unwrap();
    assert_eq!(back.states, states);
    let dup = vec![
        (StateKey::Index(1), StateValue::None),
        (StateKey::Index(1), StateValue::None),
    ];
    assert!(write_optimizer_states(&dup).is_err());
    let huge = vec![(StateKey::Index(u64::MAX), StateValue::None)];
    assert!(write_optimizer_states(&huge).is_err());
}

// ----------------------------------------------------------------------------------------
// The hostile corpus

/// Whether `error` is the refusal the manifest expects.
fn matches_expectation(error: &StatesError, kind: &str, names: Option<&str>) -> bool {
    use PickleError as P;
    let name = |n: &str| names.is_none_or(|want| want == n);
    match (kind, error) {
        ("shape", StatesError::Shape { .. }) | ("ndarray", StatesError::NdArray { .. }) => true,
        (_, StatesError::Pickle(p)) => match (kind, p) {
            (
                "forbidden_global",
                P::ForbiddenGlobal {
                    module, name: n, ..
                },
            ) => name(&format!("{module}.{n}")),
            ("forbidden_opcode", P::ForbiddenOpcode { opcode, .. }) => name(&opcode.to_string()),
            ("protocol", P::Protocol { opcode, .. }) => name(&opcode.to_string()),
            ("bad_call", P::BadCall { opcode, .. })
            | ("memo", P::Memo { opcode, .. })
            | ("stack", P::Stack { opcode, .. })
            | ("exceeds_input", P::ExceedsInput { opcode, .. })
            | ("int_too_large", P::IntTooLarge { opcode, .. })
            | ("wrong_type", P::WrongType { opcode, .. })
            | ("utf8", P::InvalidUtf8 { opcode, .. })
            | ("cycle", P::Cycle { opcode, .. }) => name(opcode),
            ("bad_build", P::BadBuild { .. }) => name("BUILD"),
            ("exceeds_limit", P::ExceedsLimit { opcode, field, .. }) => {
                let field = match *field {
                    "stack entries" => "stack",
                    "nesting depth" => "depth",
                    other => other,
                };
                name(opcode) || name(field)
            }
            ("shared", P::SharedObject { .. })
            | ("trailing", P::TrailingBytes { .. })
            | ("truncated", P::Truncated { .. }) => true,
            _ => false,
        },
        _ => false,
    }
}

const MARKER: &str = "/tmp/ward-pickle-pwned-";

fn markers() -> Vec<String> {
    std::fs::read_dir("/tmp")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().display().to_string())
                .filter(|p| p.starts_with(MARKER))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn hostile_pickles_are_refused_naming_the_opcode_or_global() {
    let before = markers();
    let manifest = json("hostile/manifest.json");
    let manifest = manifest.as_object().unwrap();
    assert!(manifest.len() >= 60, "{}", manifest.len());
    let mut names_in_messages = 0;
    for (file, expected) in manifest {
        let kind = expected["kind"].as_str().unwrap();
        let names = expected["names"].as_str();
        let bytes = read(&format!("hostile/{file}"));
        let error = read_optimizer_states(&bytes, &StatesLimits::default())
            .expect_err(&format!("{file}: accepted"));
        assert!(
            matches_expectation(&error, kind, names),
            "{file}: expected {kind} {names:?}, got {error:?}"
        );
        let message = error.to_string();
        if names.is_some_and(|n| message.contains(n)) {
            names_in_messages += 1;
        }
    }
    // The messages name the opcode or global too (the limit cases name a field instead).
    assert!(names_in_messages >= 50, "{names_in_messages}");
    assert_eq!(markers(), before, "a hostile pickle left a marker file");
}

#[test]
fn million_deep_inputs_are_refused() {
    let limits = StatesLimits::default();
    let deep = |body: &[u8]| {
        let mut v = b"\x80\x04".to_vec();
        v.extend(body.iter().cycle().take(1_000_000));
        v.push(b'.');
        v
    };
    for (input, field) in [
        (deep(b"]"), "stack entries"),
        (deep(b"("), "stack entries"),
        (
            [b"\x80\x04N".as_slice(), &[0x85; 1_000_000], b"."].concat(),
            "nesting depth",
        ),
        (deep(b"}"), "stack entries"),
    ] {
        match read_optimizer_states(&input, &limits) {
            Err(StatesError::Pickle(PickleError::ExceedsLimit { field: f, .. })) => {
                assert_eq!(f, field)
            }
            other => panic!("{other:?}"),
        }
    }
    // Even with limits raised far beyond the defaults, depth stays capped.
    let limits = PickleLimits {
        max_depth: usize::MAX,
        max_stack: usize::MAX,
        ..PickleLimits::default()
    };
    let input = [b"\x80\x04N".as_slice(), &[0x85; 1_000_000], b"."].concat();
    assert!(matches!(
        read_pickle(&input, &limits),
        Err(PickleError::ExceedsLimit {
            field: "nesting depth",
            limit: 256,
            ..
        })
    ));
}

#[test]
fn every_module_and_gluon_file_is_a_pickle_of_allowed_globals_only() {
    // The value tree itself, for one file: the NDArray objects carry their raw records.
    let bytes = read("module_sgd/model-0001.states");
    let Value::Dict(items) = read_pickle(&bytes, &PickleLimits::default()).unwrap() else {
        panic!()
    };
    let (_, Value::Object(first)) = &items[0] else {
        panic!()
    };
    assert_eq!(first.class.to_string(), "mxnet.ndarray.ndarray.NDArray");
    assert_eq!(first.args, vec![Value::None]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(
        proto in 0u8..6,
        rest in vec(any::<u8>(), 0..300),
    ) {
        let input = [&[0x80, proto][..], &rest].concat();
        let _ = read_optimizer_states(&input, &StatesLimits::default());
        let _ = read_optimizer_states(&rest, &StatesLimits::default());
    }

    #[test]
    fn corrupted_real_files_never_panic(
        file in prop::sample::select(vec![
            "module_adam/model-0001.states",
            "gluon_adam/model-0001.states",
            "protocol2.states",
            "multi_precision.states",
        ]),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = read(file);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = read_optimizer_states(&bytes, &StatesLimits::default());
        let end = cut.index(bytes.len());
        let _ = read_optimizer_states(&bytes[..end], &StatesLimits::default());
    }
}

/// Writes each fixture's states back with ward's writer into `$WARD_STATES_OUT`, for
/// tools/check_states_roundtrip.py to load in MXNet. Does nothing without the variable.
#[test]
#[ignore = "run by tools/check_states_roundtrip.py"]
fn write_states_for_mxnet() {
    let Some(out) = std::env::var_os("WARD_STATES_OUT") else {
        return;
    };
    let out = PathBuf::from(out);
    for case in [
        "module_sgd",
        "module_adam",
        "module_kvstore",
        "gluon_sgd",
        "gluon_adam",
    ] {
        let states = load(&format!("{case}/model-0001.states"));
        let written = write_optimizer_states(&states.states).unwrap();
        std::fs::write(out.join(format!("{case}.states")), written).unwrap();
    }
    for file in ["multi_precision", "framing"] {
        let states = load(&format!("{file}.states"));
        let written = write_optimizer_states(&states.states).unwrap();
        std::fs::write(out.join(format!("{file}.states")), written).unwrap();
    }
}
