//! The metrics (`ward_train::metrics`) against MXNet 1.9.1's `mx.metric` objects on the
//! batches of `tests/fixtures/metrics/metrics.json` (`tools/make_metric_fixtures.py`):
//! after every batch, the value, the count (`num_inst`) and the sum (`sum_metric`) MXNet
//! held, the values within 1e-6 relative, the counts exactly.

use serde::Deserialize;
use ward_train::metrics::{Metric, MetricSpec};

use crate::support::{fixtures, read};

#[derive(Deserialize)]
struct Doc {
    mxnet_version: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    case: String,
    spec: serde_json::Value,
    mxnet_name: String,
    batches: Vec<Batch>,
}

#[derive(Deserialize)]
struct Batch {
    /// NaN is written as null.
    pred: Vec<Option<f32>>,
    pred_shape: Vec<usize>,
    label: Vec<f32>,
    label_shape: Vec<usize>,
    get: f64,
    num_inst: f64,
    sum_metric: f64,
}

impl Batch {
    fn pred(&self) -> Vec<f32> {
        self.pred.iter().map(|v| v.unwrap_or(f32::NAN)).collect()
    }
}

fn within(ward: f64, mxnet: f64) -> bool {
    (ward.is_nan() && mxnet.is_nan()) || (ward - mxnet).abs() <= 1e-6 * mxnet.abs().max(1e-30)
}

#[test]
fn every_metric_accumulates_as_mxnet_does() {
    let doc: Doc =
        serde_json::from_slice(&read(&fixtures("metrics").join("metrics.json"))).unwrap();
    assert_eq!(doc.mxnet_version, "1.9.1");
    assert_eq!(doc.cases.len(), 20);
    let mut worst = 0f64;
    for case in &doc.cases {
        let spec: MetricSpec = serde_json::from_value(case.spec.clone()).unwrap();
        assert_eq!(spec.mxnet_name(), case.mxnet_name, "{}", case.case);
        let mut metric = Metric::new(spec).unwrap();
        assert!(metric.get().is_nan());
        for (i, b) in case.batches.iter().enumerate() {
            metric
                .update(&b.pred(), &b.pred_shape, &b.label, &b.label_shape)
                .unwrap_or_else(|e| panic!("{} batch {i}: {e}", case.case));
            let at = format!("{} batch {i}", case.case);
            assert_eq!(metric.count() as f64, b.num_inst, "{at}");
            assert!(
                within(metric.get(), b.get),
                "{at}: ward {}, MXNet {}",
                metric.get(),
                b.get
            );
            assert!(
                within(metric.sum(), b.sum_metric),
                "{at}: sum ward {}, MXNet {}",
                metric.sum(),
                b.sum_metric
            );
            if b.get != 0.0 {
                worst = worst.max(((metric.get() - b.get) / b.get).abs());
            }
        }
        // A reset starts over: the first batch alone gives MXNet's first value again.
        metric.reset();
        let b = &case.batches[0];
        metric
            .update(&b.pred(), &b.pred_shape, &b.label, &b.label_shape)
            .unwrap();
        assert!(within(metric.get(), b.get), "{} after reset", case.case);
    }
    eprintln!("largest relative difference from MXNet: {worst:e}");
}
