//! Prometheus metrics. Counters and histograms are updated where things happen; gauges that describe
//! the shared database (GPUs by status, active bookings) are read from it at scrape time, so every
//! replica reports the same truth.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabel {
    pub slot: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

pub struct Metrics {
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub bookings_created: Counter,
    bookings_ended: Family<StatusLabel, Counter>,
    reviews: Family<StatusLabel, Counter>,
    /// Decisions answered by the built-in fallback because a policy failed, seen from the market side.
    pub pricing_fallbacks: Counter,
    pub timeout_fallbacks: Counter,
    pub moderation_fallbacks: Counter,
    pub gpus: Family<StatusLabel, Gauge>,
    pub active_bookings: Gauge,
    /// SQLite group commits and the writes they held, read at scrape time: their quotient is the
    /// average group size.
    pub db_commits: Gauge,
    pub db_writes_committed: Gauge,
    pub db_wal_pages: Gauge,
    pub db_wal_caught_up: Gauge,
    /// SQLite's writes to the write-ahead log and the system calls that carried them.
    pub db_wal_writes: Gauge,
    pub db_wal_write_calls: Gauge,
    pub db_checkpoint_failures: Gauge,
    pub db_long_reads: Gauge,
    /// The last full catalogue price refresh: how long it took and how many GPUs it quoted.
    pub price_refresh_seconds: Gauge<f64, AtomicU64>,
    pub price_refresh_gpus: Gauge,
    pub price_refreshes: Counter,
    /// Decision log entries the writer put on disk, and those it gave up on.
    pub decision_log_written: Counter,
    pub decision_log_lost: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let fallbacks = Family::<SlotLabel, Counter>::default();
        let slot = |name: &str| {
            fallbacks
                .get_or_create(&SlotLabel {
                    slot: name.to_owned(),
                })
                .clone()
        };
        let metrics = Self {
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            bookings_created: Counter::default(),
            bookings_ended: Family::default(),
            reviews: Family::default(),
            pricing_fallbacks: slot("pricing"),
            timeout_fallbacks: slot("booking-timeout"),
            moderation_fallbacks: slot("review-moderation"),
            gpus: Family::default(),
            active_bookings: Gauge::default(),
            db_commits: Gauge::default(),
            db_writes_committed: Gauge::default(),
            db_wal_pages: Gauge::default(),
            db_wal_caught_up: Gauge::default(),
            db_wal_writes: Gauge::default(),
            db_wal_write_calls: Gauge::default(),
            db_checkpoint_failures: Gauge::default(),
            db_long_reads: Gauge::default(),
            price_refresh_seconds: Gauge::default(),
            price_refresh_gpus: Gauge::default(),
            price_refreshes: Counter::default(),
            decision_log_written: Counter::default(),
            decision_log_lost: Counter::default(),
        };
        registry.register(
            "gpu_market_http_requests",
            "HTTP requests by route and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "gpu_market_http_request_duration_seconds",
            "HTTP request latency by route",
            metrics.http_latency.clone(),
        );
        registry.register(
            "gpu_market_bookings_created",
            "Bookings created",
            metrics.bookings_created.clone(),
        );
        registry.register(
            "gpu_market_bookings_ended",
            "Bookings ended, by final status",
            metrics.bookings_ended.clone(),
        );
        registry.register(
            "gpu_market_reviews",
            "Reviews by moderation outcome",
            metrics.reviews.clone(),
        );
        registry.register(
            "gpu_market_decision_fallbacks",
            "Market decisions answered by a slot's fallback",
            fallbacks,
        );
        registry.register(
            "gpu_market_gpus",
            "GPUs in the catalogue by status",
            metrics.gpus.clone(),
        );
        registry.register(
            "gpu_market_active_bookings",
            "Bookings currently active",
            metrics.active_bookings.clone(),
        );
        registry.register(
            "gpu_market_decision_log_written_entries",
            "Decision log entries written",
            metrics.decision_log_written.clone(),
        );
        registry.register(
            "gpu_market_decision_log_lost_entries",
            "Decision log entries given up on after the database refused them for decision_log.retry_ms",
            metrics.decision_log_lost.clone(),
        );
        registry.register(
            "gpu_market_db_commits",
            "SQLite transactions committed by this process, each holding a group of writes",
            metrics.db_commits.clone(),
        );
        registry.register(
            "gpu_market_db_writes_committed",
            "SQLite writes committed by this process",
            metrics.db_writes_committed.clone(),
        );
        registry.register(
            "gpu_market_db_wal_pages",
            "Pages in SQLite's write-ahead log at its last checkpoint (one that keeps growing: checkpoints fall behind)",
            metrics.db_wal_pages.clone(),
        );
        registry.register(
            "gpu_market_db_wal_caught_up",
            "Times the SQLite writer found its write-ahead log fully copied after a checkpoint, so that the log could start over instead of growing",
            metrics.db_wal_caught_up.clone(),
        );
        registry.register(
            "gpu_market_db_wal_writes",
            "Writes SQLite made to its write-ahead log through this process's writer",
            metrics.db_wal_writes.clone(),
        );
        registry.register(
            "gpu_market_db_wal_write_calls",
            "System calls that carried the writer's write-ahead log writes (fewer than the writes when they are gathered per commit)",
            metrics.db_wal_write_calls.clone(),
        );
        registry.register(
            "gpu_market_db_checkpoint_failures",
            "SQLite write-ahead log checkpoints that failed (the log grows until one succeeds)",
            metrics.db_checkpoint_failures.clone(),
        );
        registry.register(
            "gpu_market_db_long_reads",
            "SQLite reads stopped at the request thread's budget and run again on a reader thread",
            metrics.db_long_reads.clone(),
        );
        registry.register(
            "gpu_market_price_refresh_seconds",
            "Duration of the last full catalogue price refresh",
            metrics.price_refresh_seconds.clone(),
        );
        registry.register(
            "gpu_market_price_refresh_gpus",
            "GPUs quoted by the last full catalogue price refresh",
            metrics.price_refresh_gpus.clone(),
        );
        registry.register(
            "gpu_market_price_refreshes",
            "Full catalogue price refreshes completed",
            metrics.price_refreshes.clone(),
        );
        metrics
    }

    pub fn bookings_ended(&self, status: &str) {
        self.bookings_ended
            .get_or_create(&StatusLabel {
                status: status.to_owned(),
            })
            .inc();
    }

    pub fn reviews(&self, status: &str) {
        self.reviews
            .get_or_create(&StatusLabel {
                status: status.to_owned(),
            })
            .inc();
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }
}
