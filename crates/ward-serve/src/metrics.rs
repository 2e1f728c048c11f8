//! Prometheus metrics, served on `/metrics` to tokens with the `metrics` scope.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::batch_cost::BatchCosts;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    rejections: Family<Labels, Counter>,
    queue_depth: Family<Labels, Gauge>,
    batch_cost: Family<Labels, Gauge<f64, AtomicU64>>,
    models: Gauge,
    extraction_suspected: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ward");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 100 µs to about 13 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let rejections = Family::<Labels, Counter>::default();
        let queue_depth = Family::<Labels, Gauge>::default();
        let batch_cost = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let models = Gauge::default();
        let extraction_suspected = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request's headers to its response, by route",
            latency.clone(),
        );
        registry.register(
            "rejections",
            "Requests refused, by reason",
            rejections.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests queued or running, by model",
            queue_depth.clone(),
        );
        // Why a model batches or not: the batcher takes the size that costs least per row.
        registry.register(
            "batch_seconds_per_row",
            "Each model version's measured run time per row, by the batch sizes its batching chooses from",
            batch_cost.clone(),
        );
        registry.register(
            "models_served",
            "Model versions being served",
            models.clone(),
        );
        // In audit mode the audit line is the only other trace of a flag: the counter is
        // what an alert can watch.
        registry.register(
            "extraction_suspected",
            "Principals whose queries of a model were flagged as a model-extraction pattern",
            extraction_suspected.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            rejections,
            queue_depth,
            batch_cost,
            models,
            extraction_suspected,
        }
    }

    pub fn observe(
        &self,
        route: &'static str,
        status: u16,
        seconds: f64,
        reason: Option<&'static str>,
    ) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&vec![("route", route.to_string())])
            .observe(seconds);
        if let Some(reason) = reason {
            self.rejections
                .get_or_create(&vec![("reason", reason.to_string())])
                .inc();
        }
    }

    pub fn set_queue_depth(&self, model: &str, depth: usize) {
        self.queue_depth
            .get_or_create(&vec![("model", model.to_string())])
            .set(depth as i64);
    }

    /// Replaces the cost tables shown with these models' (`(name, version, costs)`):
    /// models no longer served leave no stale series.
    pub fn set_batch_costs<'a>(
        &self,
        models: impl IntoIterator<Item = (&'a str, u64, &'a BatchCosts)>,
    ) {
        self.batch_cost.clear();
        for (model, version, costs) in models {
            for &rows in costs.sizes() {
                if let Some(took) = costs.cost(rows) {
                    self.batch_cost
                        .get_or_create(&vec![
                            ("model", model.to_string()),
                            ("version", version.to_string()),
                            ("rows", rows.to_string()),
                        ])
                        .set(took.as_secs_f64() / rows as f64);
                }
            }
        }
    }

    pub fn set_models(&self, count: usize) {
        self.models.set(count as i64);
    }

    pub fn extraction_suspected(&self, model: &str) {
        self.extraction_suspected
            .get_or_create(&vec![("model", model.to_string())])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_exposition() {
        let m = Metrics::new();
        m.observe("/v2/models/{model}/infer", 429, 0.001, Some("rate-limited"));
        m.set_queue_depth("mlp", 3);
        m.set_models(2);
        m.extraction_suspected("mlp");
        let costs = BatchCosts::new(&[1, 2]);
        costs.record(1, std::time::Duration::from_millis(4));
        costs.record(2, std::time::Duration::from_millis(4));
        m.set_batch_costs([("old", 1, &costs)]);
        m.set_batch_costs([("mlp", 3, &costs)]);
        let text = m.render();
        assert!(
            text.contains(
                "ward_requests_total{route=\"/v2/models/{model}/infer\",status=\"429\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("ward_rejections_total{reason=\"rate-limited\"} 1"),
            "{text}"
        );
        assert!(text.contains("ward_queue_depth{model=\"mlp\"} 3"), "{text}");
        assert!(text.contains("ward_models_served 2"), "{text}");
        assert!(
            text.contains(
                "ward_batch_seconds_per_row{model=\"mlp\",version=\"3\",rows=\"1\"} 0.004"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ward_batch_seconds_per_row{model=\"mlp\",version=\"3\",rows=\"2\"} 0.002"
            ),
            "{text}"
        );
        assert!(!text.contains("model=\"old\""), "{text}");
        assert!(
            text.contains("ward_extraction_suspected_total{model=\"mlp\"} 1"),
            "{text}"
        );
    }
}
