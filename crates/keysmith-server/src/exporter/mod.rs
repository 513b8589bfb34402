//! keysmith's metrics in Prometheus's text format, on an address of their
//! own (`[metrics]`), and its traces over OTLP (`[tracing]`, [`traces`]).
//!
//! The crates record through the `metrics` facade's macros; this module
//! alone installs an exporter behind it: the recorder ([`install`]), the
//! HTTP endpoint ([`endpoint`]) and what is measured by reading the store
//! at a scrape ([`sampled`]). [`CATALOGUE`] names every metric with its
//! help text; README's "Metrics" section lists the same.
pub mod endpoint;
pub mod sampled;
pub mod traces;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How a metric is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric keysmith exports: name, kind, help.
pub const CATALOGUE: &[(&str, Kind, &str)] = &[
    (
        "keysmith_rpc_requests_total",
        Kind::Counter,
        "RPCs ended, by service, method and gRPC status code",
    ),
    (
        "keysmith_rpc_duration_seconds",
        Kind::Histogram,
        "RPC latency from the request's headers to the answer's last frame, by service, method and code",
    ),
    (
        "keysmith_store_batch_writes",
        Kind::Histogram,
        "Write sets the committer applied together in one batch (group commit)",
    ),
    (
        "keysmith_store_flush_seconds",
        Kind::Histogram,
        "The engine's blocking flush (an fsync of its journal) of each batch, which every write of the batch waits for",
    ),
    (
        "keysmith_store_failed_batches_total",
        Kind::Counter,
        "Batches that failed to write; the store is then reopened",
    ),
    (
        "keysmith_store_size_bytes",
        Kind::Gauge,
        "The data directory's files, in bytes, as sampled",
    ),
    (
        "keysmith_listing_cache_lookups_total",
        Kind::Counter,
        "Listings of a property's live keys, by outcome: hit (served from memory) or miss (read from disk)",
    ),
    (
        "keysmith_listing_cache_evictions_total",
        Kind::Counter,
        "Properties evicted from the listing cache to make room",
    ),
    (
        "keysmith_listing_cache_bytes",
        Kind::Gauge,
        "Estimated bytes the listing cache holds",
    ),
    (
        "keysmith_listing_cache_properties",
        Kind::Gauge,
        "Properties the listing cache holds whole",
    ),
    (
        "keysmith_listing_cache_keys",
        Kind::Gauge,
        "Live keys the listing cache holds",
    ),
    (
        "keysmith_driver_calls_total",
        Kind::Counter,
        "Calls to drivers by driver, operation and outcome (ok, or the error's kind)",
    ),
    (
        "keysmith_driver_call_seconds",
        Kind::Histogram,
        "Driver call latency by driver and operation",
    ),
    (
        "keysmith_keys",
        Kind::Gauge,
        "Live keys by property, driver and state, as sampled (a key at two drivers counts at each)",
    ),
    (
        "keysmith_threerpms_requests_total",
        Kind::Counter,
        "Requests to 3RPMS by hotel (property) and outcome: ok, error, timeout, unreachable, blocked (not sent)",
    ),
    (
        "keysmith_threerpms_request_seconds",
        Kind::Histogram,
        "3RPMS request latency by hotel (property)",
    ),
    (
        "keysmith_threerpms_rate_budget_remaining",
        Kind::Gauge,
        "Requests keysmith may still send to 3RPMS in the rolling minute, as of its last request (every hotel shares it)",
    ),
    (
        "keysmith_threerpms_blocks_total",
        Kind::Counter,
        "Suspected 3RPMS rate-limit blocks begun (nothing is sent until each ends)",
    ),
    (
        "keysmith_leases_held",
        Kind::Gauge,
        "Leases on background work this replica holds (1) or not (0), by lease: sweeper, key-follower, 3rpms/<property>",
    ),
    (
        "keysmith_webhook_deliveries_total",
        Kind::Counter,
        "Webhook deliveries by source (seam, threerpms) and outcome: accepted, duplicate, rejected, retry_later",
    ),
];

/// Latency buckets, in seconds, for every `_seconds` histogram.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Write sets per batch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static INSTALLED: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs keysmith's recorder behind the `metrics` facade, once per
/// process (every server started in the process shares it), and returns
/// the handle that renders it. Fails when another recorder was installed
/// in the process first.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    INSTALLED
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("keysmith_store_batch_writes".into()),
                        BATCH_BUCKETS,
                    )
                })
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot serve metrics: another metrics recorder is installed in this process \
                 (set metrics.enabled = false)"
            )
        })
}

fn describe() {
    for (name, kind, help) in CATALOGUE {
        let unit = if name.ends_with("_seconds") {
            Some(metrics::Unit::Seconds)
        } else if name.ends_with("_bytes") {
            Some(metrics::Unit::Bytes)
        } else {
            None
        };
        let (name, help) = (*name, *help);
        match (kind, unit) {
            (Kind::Counter, _) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README's "Metrics" section lists every metric.
    #[test]
    fn readme_lists_every_metric() {
        let readme = include_str!("../../../../README.md");
        let section = readme
            .split("\n## Metrics")
            .nth(1)
            .expect("README has a Metrics section");
        for (name, _, _) in CATALOGUE {
            assert!(
                section.contains(&format!("`{name}`")),
                "README lacks {name}"
            );
        }
    }
}
