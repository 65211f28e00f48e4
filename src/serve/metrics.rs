//! Every Prometheus metric the server exports, in one place (`ensemble_serve_<what>_<unit>`).
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Microsecond buckets from 50 µs to 1 s.
const US_BUCKETS: [f64; 16] = [
    50.0,
    100.0,
    200.0,
    350.0,
    500.0,
    750.0,
    1_000.0,
    1_500.0,
    2_500.0,
    5_000.0,
    10_000.0,
    25_000.0,
    50_000.0,
    100_000.0,
    250_000.0,
    1_000_000.0,
];
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_us: HistogramVec,
    pub queue_us: HistogramVec,
    pub arrival_wait_us: HistogramVec,
    pub inference_us: HistogramVec,
    pub batch_size: HistogramVec,
    pub queue_depth: IntGaugeVec,
    pub routing: IntCounterVec,
    pub budget: IntCounterVec,
    pub rejected: IntCounterVec,
    pub dropped: IntCounterVec,
    pub model_info: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let mt = ["model", "tier"];
        Self {
            requests: counter(
                &r,
                "ensemble_serve_requests_total",
                "Scoring requests by model, tier and HTTP status",
                &["model", "tier", "status"],
            ),
            request_us: histogram(
                &r,
                "ensemble_serve_request_duration_microseconds",
                "Server-side time of a scoring request",
                &mt,
                &US_BUCKETS,
            ),
            queue_us: histogram(
                &r,
                "ensemble_serve_queue_duration_microseconds",
                "Time a request waited in its graph's batch queue",
                &mt,
                &US_BUCKETS,
            ),
            arrival_wait_us: histogram(
                &r,
                "ensemble_serve_arrival_wait_duration_microseconds",
                "Time from the kernel receiving a request to its routing (socket and runtime queueing, body decoding)",
                &["model"],
                &US_BUCKETS,
            ),
            inference_us: histogram(
                &r,
                "ensemble_serve_inference_duration_microseconds",
                "ONNX Runtime run time of one batch",
                &mt,
                &US_BUCKETS,
            ),
            batch_size: histogram(&r, "ensemble_serve_batch_size_rows", "Rows per executed batch", &mt, &BATCH_BUCKETS),
            queue_depth: gauge(&r, "ensemble_serve_queue_depth_rows", "Rows waiting in a graph's batch queue", &mt),
            routing: counter(
                &r,
                "ensemble_serve_routing_decisions_total",
                "Tier choices: fits (estimate within budget), fallback (none fit: fastest), forced",
                &["model", "tier", "reason"],
            ),
            budget: counter(
                &r,
                "ensemble_serve_budget_total",
                "Requests whose server time met or missed their latency budget",
                &["model", "tier", "outcome"],
            ),
            rejected: counter(
                &r,
                "ensemble_serve_rejected_total",
                "Requests refused before running: queue_full, too_many_in_flight, budget_unattainable, deadline_exceeded",
                &["model", "reason"],
            ),
            dropped: counter(
                &r,
                "ensemble_serve_dropped_total",
                "Queued jobs dropped before running: deadline_exceeded, client_disconnected",
                &["model", "tier", "reason"],
            ),
            model_info: gauge(
                &r,
                "ensemble_serve_model_info",
                "Loaded model versions and the execution provider in use (value 1)",
                &["model", "version", "execution_provider"],
            ),
            registry: r,
        }
    }

    /// One executed batch of `rows` rows that ran for `run_us` on the graph `labels` (model, tier).
    pub fn batch_ran(&self, labels: &[&str], rows: usize, run_us: f64) {
        self.inference_us.with_label_values(labels).observe(run_us);
        self.batch_size.with_label_values(labels).observe(rows as f64);
    }

    /// A model version now serving: its info gauge, and its series created at zero.
    pub fn model_loaded(&self, model: &str, version: &str, provider: &str, tiers: &[&str]) {
        self.model_info.with_label_values(&[model, version, provider]).set(1);
        self.init_model(model, tiers);
    }

    /// Creates a model's series at zero (rejections, budget outcomes, queue depth per tier), so dashboards
    /// and `rate()` see them before the first event instead of a missing series.
    fn init_model(&self, model: &str, tiers: &[&str]) {
        for reason in ["too_many_in_flight", "queue_full", "budget_unattainable", "deadline_exceeded"] {
            self.rejected.with_label_values(&[model, reason]);
        }
        for tier in tiers {
            for outcome in ["met", "missed"] {
                self.budget.with_label_values(&[model, tier, outcome]);
            }
            self.queue_depth.with_label_values(&[model, tier]);
            for reason in ["deadline_exceeded", "client_disconnected"] {
                self.dropped.with_label_values(&[model, tier, reason]);
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("utf-8 exposition")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
