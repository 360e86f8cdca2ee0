//! Prometheus metrics: requests by interaction, resource type and status; latency histograms;
//! database work queues.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub db_queue: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "continuum_http_requests_total",
                "HTTP requests by interaction, resource type and status",
            ),
            &["interaction", "resource_type", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "continuum_http_request_duration_seconds",
                "HTTP request latency by interaction",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["interaction"],
        )
        .expect("valid metric");
        let db_queue = IntGaugeVec::new(
            Opts::new(
                "continuum_db_queue_depth",
                "units of work waiting for a database connection",
            ),
            &["pool"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("register");
        registry
            .register(Box::new(latency.clone()))
            .expect("register");
        registry
            .register(Box::new(db_queue.clone()))
            .expect("register");
        Metrics {
            registry,
            requests,
            latency,
            db_queue,
        }
    }

    pub fn observe(&self, interaction: &str, resource_type: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[interaction, resource_type, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[interaction])
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
