//! Metrics and logging. Prometheus metrics are recorded into this server's
//! own recorder (not a process-global one, so several brokers in one test
//! process stay apart) and served on `metrics_listen` at `/metrics`.
//!
//! Names follow Prometheus conventions: `tallyq_` prefix, `_total` counters,
//! base units (bytes, seconds). Per-tenant series carry a `tenant` label,
//! bounded: the first `metrics_max_tenant_labels` tenants seen get their own
//! label, the rest share `other`. Every series carries `node`.

use std::cell::RefCell;
use std::net::SocketAddr;

use dashmap::DashMap;
// Every produce looks up ~7 series and tenant labels: foldhash, not SipHash.
use foldhash::fast::RandomState;
use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    BuildError, ExporterFuture, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Counter names.
pub mod name {
    /// Messages stored.
    pub const PRODUCED_MESSAGES: &str = "tallyq_produced_messages_total";
    /// Bytes of messages stored (counted size).
    pub const PRODUCED_BYTES: &str = "tallyq_produced_bytes_total";
    /// Message sets stored by produce: concurrent produces to one topic are
    /// combined into one set, so messages ÷ sets shows how well they combine.
    pub const PRODUCED_SETS: &str = "tallyq_produced_sets_total";
    /// Deliveries, redeliveries included.
    pub const DELIVERED_MESSAGES: &str = "tallyq_delivered_messages_total";
    /// Bytes delivered.
    pub const DELIVERED_BYTES: &str = "tallyq_delivered_bytes_total";
    /// Redeliveries.
    pub const REDELIVERED_MESSAGES: &str = "tallyq_redelivered_messages_total";
    /// Acks that ended a pending message.
    pub const ACKED_MESSAGES: &str = "tallyq_acked_messages_total";
    /// Messages moved to a dead-letter topic.
    pub const DEAD_LETTERED_MESSAGES: &str = "tallyq_dead_lettered_messages_total";
    /// Messages skipped because their set failed its checksum or did not decode.
    pub const CORRUPT_MESSAGES: &str = "tallyq_corrupt_messages_total";
    /// Messages removed by expiry.
    pub const EXPIRED_MESSAGES: &str = "tallyq_expired_messages_total";
    /// Messages removed by a size cap.
    pub const RECLAIMED_MESSAGES: &str = "tallyq_reclaimed_messages_total";
    /// Billable units by meter part (produced, delivered, redelivered).
    pub const BILLABLE_UNITS: &str = "tallyq_billable_units_total";
    /// Requests refused by a quota, by kind and (bounded) tenant.
    pub const QUOTA_REFUSALS: &str = "tallyq_quota_refusals_total";
    /// RPC latency histogram by method and code.
    pub const RPC_DURATION: &str = "tallyq_rpc_duration_seconds";
    /// Gauge: messages waiting (new + due for redelivery), per tenant.
    pub const BACKLOG: &str = "tallyq_backlog_messages";
    /// Gauge: delivered, locked, unacked messages, per tenant.
    pub const IN_FLIGHT: &str = "tallyq_in_flight_messages";
    /// Gauge: retained message bytes, per tenant.
    pub const RETAINED_BYTES: &str = "tallyq_retained_bytes";
    /// Gauge: the store's size on disk.
    pub const STORAGE_BYTES: &str = "tallyq_storage_bytes";
    /// Gauge: tenants by status.
    pub const TENANTS: &str = "tallyq_tenants";
    /// Gauge: tenants suspended for arrears (unpaid charges), not for abuse
    /// or an operator's decision (TallyqTenantInArrears alerts on it).
    pub const TENANTS_IN_ARREARS: &str = "tallyq_tenants_in_arrears";
    /// Gauge: when settlement last closed a day (Unix seconds).
    pub const LAST_SETTLEMENT: &str = "tallyq_last_settlement_timestamp_seconds";
    /// Gauge: 1 while in maintenance mode.
    pub const MAINTENANCE: &str = "tallyq_maintenance";
    /// Gauge: 1 while the store has failed and the broker recovers.
    pub const STORAGE_FAILED: &str = "tallyq_storage_failed";
    /// Times the store was reopened and the state reloaded after a failure.
    pub const STORAGE_RECOVERIES: &str = "tallyq_storage_recoveries_total";
    /// Gauge: bytes still usable on the data dir's file system.
    pub const DISK_FREE_BYTES: &str = "tallyq_disk_free_bytes";
    /// Gauge: 1 while the free disk space is below `min_free_disk_bytes`.
    pub const DISK_LOW: &str = "tallyq_disk_low";
    /// Segments compacted (their live sets moved so the file could go).
    pub const COMPACTIONS: &str = "tallyq_compactions_total";
    /// Bytes of live sets copied by compaction.
    pub const COMPACTED_BYTES: &str = "tallyq_compacted_bytes_total";
}

/// Help text of every metric (Prometheus wants one).
const HELP: &[(&str, &str)] = &[
    (name::PRODUCED_MESSAGES, "Messages stored."),
    (
        name::PRODUCED_BYTES,
        "Bytes of messages stored (payload, headers and ids).",
    ),
    (
        name::DELIVERED_MESSAGES,
        "Deliveries to consumers, redeliveries included.",
    ),
    (name::DELIVERED_BYTES, "Bytes delivered to consumers."),
    (
        name::PRODUCED_SETS,
        "Message sets stored by produce (concurrent produces to a topic share one).",
    ),
    (
        name::REDELIVERED_MESSAGES,
        "Redeliveries (delivery attempt above 1).",
    ),
    (
        name::ACKED_MESSAGES,
        "Acknowledgements that ended a pending message.",
    ),
    (
        name::DEAD_LETTERED_MESSAGES,
        "Messages moved to a dead-letter topic.",
    ),
    (
        name::CORRUPT_MESSAGES,
        "Messages skipped, never served, because their stored set failed its checksum, did not decode or its segment was missing or short.",
    ),
    (name::EXPIRED_MESSAGES, "Messages removed by topic expiry."),
    (
        name::RECLAIMED_MESSAGES,
        "Messages removed by a topic size cap.",
    ),
    (
        name::BILLABLE_UNITS,
        "Billable message units by part (produced, delivered, redelivered).",
    ),
    (
        name::QUOTA_REFUSALS,
        "Requests refused by a quota, by kind and tenant.",
    ),
    (
        name::RPC_DURATION,
        "RPC latency by method and gRPC status code.",
    ),
    (
        name::BACKLOG,
        "Messages waiting for delivery (new or due for redelivery).",
    ),
    (
        name::IN_FLIGHT,
        "Delivered messages whose lock is running, not yet acked.",
    ),
    (name::RETAINED_BYTES, "Bytes of retained messages."),
    (name::STORAGE_BYTES, "Size of the store on disk."),
    (name::TENANTS, "Tenants by status."),
    (
        name::TENANTS_IN_ARREARS,
        "Tenants suspended for arrears (unpaid charges past the grace period).",
    ),
    (
        name::LAST_SETTLEMENT,
        "When settlement last closed a day, Unix seconds.",
    ),
    (
        name::MAINTENANCE,
        "1 while the broker is in maintenance mode.",
    ),
    (
        name::STORAGE_FAILED,
        "1 while the store has failed and the broker recovers (serving health only).",
    ),
    (
        name::STORAGE_RECOVERIES,
        "Times the store was reopened and the state reloaded from disk after a failed write.",
    ),
    (
        name::DISK_FREE_BYTES,
        "Bytes still usable on the data dir's file system.",
    ),
    (
        name::DISK_LOW,
        "1 while free disk space is below min_free_disk_bytes (produce and creates refused).",
    ),
    (
        name::COMPACTIONS,
        "Segments compacted: their live message sets moved to the active segment so the file could be deleted.",
    ),
    (
        name::COMPACTED_BYTES,
        "Bytes of live message sets copied by compaction.",
    ),
];

/// The label value of tenants beyond the label cap.
pub const OTHER_TENANT: &str = "other";

/// The tenant label of a series no tenant can be named for.
const NO_TENANT: &str = "none";

const METADATA: Metadata<'static> = Metadata::new("tallyq", Level::INFO, None);

/// This server's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    node: String,
    tenants: DashMap<String, (), RandomState>,
    max_tenant_labels: usize,
    /// Counters already registered, by [`series_id`]: a hot path (every
    /// produce counts four) then neither builds a key nor looks it up in
    /// the registry again.
    counters: DashMap<Box<str>, Counter, RandomState>,
    /// The RPC histograms already registered, likewise.
    histograms: DashMap<Box<str>, Histogram, RandomState>,
}

thread_local! {
    /// Where a series' id is built for a cache lookup, so a hit allocates
    /// nothing.
    static SERIES_ID: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Writes a series' cache id into `id`: its name and label values joined by
/// the unit separator (label values are tenant ids, RPC paths and fixed
/// words, none of which holds it).
fn series_id(id: &mut String, name: &str, labels: &[(&'static str, &str)]) {
    id.clear();
    id.push_str(name);
    for (label, value) in labels {
        id.push('\u{1f}');
        id.push_str(label);
        id.push('\u{1f}');
        id.push_str(value);
    }
}

impl Metrics {
    /// A recorder, and the HTTP exporter future when `listen` is given.
    pub fn new(
        node: &str,
        max_tenant_labels: usize,
        listen: Option<SocketAddr>,
    ) -> Result<(Metrics, Option<ExporterFuture>), BuildError> {
        let builder = PrometheusBuilder::new().set_buckets_for_metric(
            Matcher::Full(name::RPC_DURATION.to_string()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        )?;
        let (recorder, exporter) = match listen {
            Some(addr) => {
                let (recorder, exporter) = builder.with_http_listener(addr).build()?;
                (recorder, Some(exporter))
            }
            None => (builder.build_recorder(), None),
        };
        let handle = recorder.handle();
        for (metric, help) in HELP {
            let key = metrics::KeyName::from(*metric);
            let help = metrics::SharedString::from(*help);
            if metric.ends_with("_total") {
                recorder.describe_counter(key, None, help);
            } else if *metric == name::RPC_DURATION {
                recorder.describe_histogram(key, Some(metrics::Unit::Seconds), help);
            } else {
                recorder.describe_gauge(key, None, help);
            }
        }
        Ok((
            Metrics {
                recorder,
                handle,
                node: node.to_string(),
                tenants: DashMap::default(),
                max_tenant_labels,
                counters: DashMap::default(),
                histograms: DashMap::default(),
            },
            exporter,
        ))
    }

    /// The bounded label value for a tenant.
    pub fn tenant_label(&self, tenant: &str) -> String {
        self.bounded_tenant(tenant).to_string()
    }

    /// The bounded label value for a tenant, borrowed: `tenant` itself while
    /// it has (or gets) its own label, [`OTHER_TENANT`] beyond the cap.
    fn bounded_tenant<'a>(&self, tenant: &'a str) -> &'a str {
        if self.tenants.contains_key(tenant) {
            return tenant;
        }
        if self.tenants.len() < self.max_tenant_labels {
            self.tenants.insert(tenant.to_string(), ());
            return tenant;
        }
        OTHER_TENANT
    }

    fn key(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let mut all = vec![Label::new("node", self.node.clone())];
        all.extend(labels.iter().map(|(k, v)| Label::new(*k, v.to_string())));
        Key::from_parts(name, all)
    }

    /// Adds `n` to the counter `name` with `labels` (and `node`), registering
    /// it the first time only.
    fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        SERIES_ID.with_borrow_mut(|id| {
            series_id(id, name, labels);
            if let Some(counter) = self.counters.get(id.as_str()) {
                counter.increment(n);
                return;
            }
            let counter = self
                .recorder
                .register_counter(&self.key(name, labels), &METADATA);
            counter.increment(n);
            self.counters.insert(id.as_str().into(), counter);
        });
    }

    /// Adds `n` to a tenant's counter.
    pub fn count(&self, name: &'static str, tenant: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.add(name, &[("tenant", self.bounded_tenant(tenant))], n);
    }

    /// Counts one request refused by a quota of `kind`, labelled with the
    /// tenant it was refused to (bounded like every per-tenant series), or
    /// `none` when no tenant is known (a failed authentication naming none).
    pub fn count_refusal(&self, kind: &'static str, tenant: Option<&str>) {
        let tenant = tenant.map_or(NO_TENANT, |t| self.bounded_tenant(t));
        self.add(
            name::QUOTA_REFUSALS,
            &[("kind", kind), ("tenant", tenant)],
            1,
        );
    }

    /// Adds `n` to a counter with arbitrary labels.
    pub fn count_labeled(&self, name: &'static str, labels: &[(&'static str, String)], n: u64) {
        let labels: Vec<(&'static str, &str)> =
            labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.add(name, &labels, n);
    }

    /// Adds `n` to a tenant's counter that also carries a `part` label (the
    /// billable units by meter part), without allocating once registered.
    pub fn count_part(&self, name: &'static str, tenant: &str, part: &'static str, n: u64) {
        self.add(
            name,
            &[("tenant", self.bounded_tenant(tenant)), ("part", part)],
            n,
        );
    }

    /// Sets a gauge.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, String)], value: f64) {
        let labels: Vec<(&'static str, &str)> =
            labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let key = self.key(name, &labels);
        self.recorder.register_gauge(&key, &METADATA).set(value);
    }

    /// Records one RPC's latency (`method` is the full gRPC name, `code` the
    /// status code's name), registering its histogram the first time only.
    pub fn observe_rpc(&self, method: &str, code: &str, seconds: f64) {
        let labels = [("method", method), ("code", code)];
        SERIES_ID.with_borrow_mut(|id| {
            series_id(id, name::RPC_DURATION, &labels);
            if let Some(histogram) = self.histograms.get(id.as_str()) {
                histogram.record(seconds);
                return;
            }
            let histogram = self
                .recorder
                .register_histogram(&self.key(name::RPC_DURATION, &labels), &METADATA);
            histogram.record(seconds);
            self.histograms.insert(id.as_str().into(), histogram);
        });
    }

    /// The exposition text, as /metrics serves it.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Sets up tracing: text by default, JSON on request, level from RUST_LOG.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file reads `source=127.0.0.1`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tenant_labels_are_bounded() {
        let (metrics, _) = Metrics::new("node-1", 2, None).unwrap();
        metrics.count(name::PRODUCED_MESSAGES, "a", 1);
        metrics.count(name::PRODUCED_MESSAGES, "b", 1);
        metrics.count(name::PRODUCED_MESSAGES, "c", 1);
        metrics.count(name::PRODUCED_MESSAGES, "d", 1);
        let text = metrics.render();
        assert!(text.contains("tenant=\"a\""), "{text}");
        assert!(text.contains("tenant=\"other\""), "{text}");
        assert!(!text.contains("tenant=\"c\""), "{text}");
        assert!(
            text.contains("tallyq_produced_messages_total{node=\"node-1\",tenant=\"other\"} 2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn cached_series_keep_counting_and_stay_apart() {
        let (metrics, _) = Metrics::new("n", 10, None).unwrap();
        for _ in 0..3 {
            metrics.count(name::PRODUCED_MESSAGES, "a", 2);
            metrics.count_part(name::BILLABLE_UNITS, "a", "produced", 5);
            metrics.observe_rpc("tallyq.v1.Broker/Produce", "OK", 0.001);
        }
        metrics.count_labeled(
            name::BILLABLE_UNITS,
            &[("tenant", "a".into()), ("part", "delivered".into())],
            7,
        );
        metrics.count_labeled(
            name::BILLABLE_UNITS,
            &[("tenant", "a".into()), ("part", "produced".into())],
            1,
        );
        metrics.observe_rpc("tallyq.v1.Broker/Produce", "NOT_FOUND", 0.001);
        let text = metrics.render();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line} in {text}");
        has("tallyq_produced_messages_total{node=\"n\",tenant=\"a\"} 6");
        has("tallyq_billable_units_total{node=\"n\",tenant=\"a\",part=\"produced\"} 16");
        has("tallyq_billable_units_total{node=\"n\",tenant=\"a\",part=\"delivered\"} 7");
        has("tallyq_rpc_duration_seconds_count{node=\"n\",method=\"tallyq.v1.Broker/Produce\",code=\"OK\"} 3");
        has("tallyq_rpc_duration_seconds_count{node=\"n\",method=\"tallyq.v1.Broker/Produce\",code=\"NOT_FOUND\"} 1");
    }
}
