//! Real data, against MXNet: the classic LeNet (20 and 50 5×5 filters, tanh, max
//! pooling, 500 hidden units; `tests/fixtures/models/lenet_classic`, a symbol with no
//! weights) started by ward's Xavier and trained with the declared `sgd` on the 4,000
//! real MNIST digits of `tests/fixtures/mnist/`, read once from the IDX files and once
//! from the RecordIO files MXNet's own writer packed, reaches at least 97 % on the 1,000
//! held-out digits and lies within half a point of MXNet 1.9.1 trained with the same
//! spec (the mean over five seeds, `lenet_reference.json`, made by
//! `tools/make_lenet_mnist_reference.py`).

use std::sync::Arc;

use ward_core::random::RunSeed;
use ward_core::DType;
use ward_mxnet::import::DeclaredInput;
use ward_mxnet::new_params::import_with_new_params;
use ward_mxnet::params::ParamsFile;
use ward_mxnet::symbol::read_symbol;
use ward_train::data::batch::{LastBatch, Loader, LoaderConfig};
use ward_train::data::Dataset;
use ward_train::init::{init_graph, InitSpec};
use ward_train::spec::DataSource;
use ward_train::trainer::{Metrics, Multipliers, Trainer, TrainerSetup};
use ward_train::{Optimizer, OptimizerSpec};

use crate::support::{fixtures, read};

/// The spec of `tools/make_lenet_mnist_reference.py`.
const BATCH: usize = 64;
const EPOCHS: u64 = 10;

fn reference() -> serde_json::Value {
    serde_json::from_slice(&read(&fixtures("mnist").join("lenet_reference.json"))).unwrap()
}

fn source(format: &str, split: &str) -> DataSource {
    match format {
        "idx" => DataSource::Mnist {
            images: format!("{split}-images-idx3-ubyte.gz").into(),
            labels: format!("{split}-labels-idx1-ubyte.gz").into(),
        },
        _ => DataSource::Recordio {
            rec: format!("{split}.rec").into(),
            idx: Some(format!("{split}.idx").into()),
            data_shape: [1, 28, 28],
            resize: None,
            rand_crop: false,
            rand_mirror: false,
            mean: [0.0; 3],
            std: [1.0; 3],
            scale: 1.0 / 255.0,
        },
    }
}

fn open(format: &str, split: &str) -> Arc<dyn Dataset> {
    source(format, split)
        .open(&fixtures("mnist"), &Default::default())
        .unwrap()
}

fn trainer(seed: &RunSeed) -> Trainer {
    let symbol = read_symbol(
        &read(&fixtures("models").join("lenet_classic/model-symbol.json")),
        &Default::default(),
    )
    .unwrap();
    let inputs = [DeclaredInput {
        name: "data".into(),
        dtype: DType::F32,
        shape: vec![-1, 1, 28, 28],
    }];
    let empty = ParamsFile {
        arrays: Vec::new(),
        names: None,
    };
    let (imported, new) = import_with_new_params(&symbol, empty, &inputs).unwrap();
    assert_eq!(new.len(), 8, "every weight is new");
    let init: InitSpec = serde_json::from_value(serde_json::json!({
        "name": "xavier", "rnd_type": "gaussian", "factor_type": "in", "magnitude": 2.0
    }))
    .unwrap();
    let weights = init_graph(&init, &imported.graph, seed).unwrap();
    let optimizer: OptimizerSpec = serde_json::from_value(serde_json::json!({
        "name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "wd": 1e-4,
        "rescale_grad": 1.0 / BATCH as f64,
    }))
    .unwrap();
    Trainer::new(
        imported.graph,
        weights,
        &[BATCH, 1, 28, 28],
        Optimizer::new(optimizer, None).unwrap(),
        seed.clone(),
        TrainerSetup {
            multipliers: Multipliers::Module,
            symbol: Some(&symbol),
            ..TrainerSetup::default()
        },
    )
    .unwrap()
}

fn loader(data: Arc<dyn Dataset>, shuffle: bool, seed: &RunSeed) -> Loader {
    let config = LoaderConfig {
        batch_size: BATCH,
        shuffle,
        last_batch: LastBatch::Pad,
        threads: 1,
        prefetch: 2,
    };
    Loader::new(data, config, seed.clone()).unwrap()
}

fn train_and_evaluate(format: &str, seed: u64) -> f64 {
    let seed = RunSeed::from_u64(seed);
    let mut t = trainer(&seed);
    let train = loader(open(format, "train"), true, &seed);
    for epoch in 0..EPOCHS {
        for batch in train.epoch(epoch).unwrap() {
            let b = batch.unwrap();
            t.step(&b.data, &b.label).unwrap();
        }
    }
    let eval = t.evaluator(BATCH, &[1, 28, 28]).unwrap();
    let mut m = Metrics::default();
    for batch in loader(open(format, "t10k"), false, &seed).epoch(0).unwrap() {
        let b = batch.unwrap();
        let valid = BATCH - b.pad;
        m.add(t.evaluate(&eval, &b.data, &b.label, valid).unwrap().metrics);
    }
    assert_eq!(m.examples, 1000);
    m.accuracy().unwrap()
}

fn check(format: &str) {
    let mxnet = reference()["final_mean"][format].as_f64().unwrap();
    let ward = train_and_evaluate(format, 1);
    eprintln!("classic LeNet, {format}: ward {ward:.4}, MXNet {mxnet:.4} (mean of 5 seeds)");
    assert!(ward >= 0.97, "{format}: held-out accuracy {ward}");
    assert!(
        ward >= mxnet - 0.005,
        "{format}: ward {ward} is more than half a point below MXNet's {mxnet}"
    );
}

#[test]
fn classic_lenet_on_mnist_idx_matches_mxnet() {
    check("idx");
}

#[test]
fn classic_lenet_on_mnist_recordio_matches_mxnet() {
    check("recordio");
}

#[test]
fn the_recordio_and_idx_digits_are_the_same() {
    // MXNet's writer packed the IDX digits losslessly (PNG), in order: both readers serve
    // the same pixels and labels.
    let (idx, rec) = (open("idx", "t10k"), open("recordio", "t10k"));
    assert_eq!(idx.len(), rec.len());
    let mut rng = RunSeed::from_u64(0)
        .stream(ward_core::random::Purpose::Augment, 0)
        .unwrap();
    for i in [0, 1, 499, 999] {
        let (a, b) = (idx.get(i, &mut rng).unwrap(), rec.get(i, &mut rng).unwrap());
        assert_eq!(a.label, b.label, "example {i}");
        // MNISTIter scales by 1/256, the spec's ImageRecordIter by 1/255: the same bytes.
        let bytes = |v: &[f32], scale: f32| -> Vec<u8> {
            v.iter().map(|&x| (x * scale).round() as u8).collect()
        };
        assert_eq!(bytes(&a.data, 256.0), bytes(&b.data, 255.0), "example {i}");
    }
}
