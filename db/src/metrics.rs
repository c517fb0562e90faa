//! Operational metrics: lock-free counters and histograms the store and the server update, and
//! their rendering in the Prometheus text format (served by `sierradb serve
//! --metrics-address`). Durations come from [`crate::env::Env::now`], never the OS clock.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::store::bucket::StatsSnapshot;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds of the batch-size buckets, in events.
const BATCH_BOUNDS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0,
];

/// A histogram with fixed bucket bounds; observations are atomic adds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus the overflow (`+Inf`) bucket; not cumulative.
    counts: Vec<AtomicU64>,
    /// The sum of observations, in millionths of the unit.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Everything the `/metrics` endpoint reports that the store's own counters do not.
#[derive(Debug)]
pub struct Metrics {
    /// From a client's append reaching the server to its reply (includes the fsync).
    pub append_latency: Histogram,
    /// One batch's write and fsync, as the bucket writer sees it.
    pub sync_latency: Histogram,
    /// Events per batch (per fsync).
    pub batch_events: Histogram,
    /// Open client connections (shared with the server's connection limit).
    pub connections: Arc<AtomicUsize>,
    /// Live subscriptions (shared with the server).
    pub subscriptions: Arc<AtomicUsize>,
    /// Events pushed to subscribers.
    pub deliveries: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            append_latency: Histogram::new(&LATENCY_BOUNDS),
            sync_latency: Histogram::new(&LATENCY_BOUNDS),
            batch_events: Histogram::new(&BATCH_BOUNDS),
            connections: Arc::default(),
            subscriptions: Arc::default(),
            deliveries: AtomicU64::new(0),
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

impl Metrics {
    /// The Prometheus text exposition (format 0.0.4) of these metrics and the store's counters.
    pub fn render(&self, store: StatsSnapshot, open_segments: usize) -> String {
        let mut out = String::new();
        self.append_latency.render(
            &mut out,
            "sierradb_append_latency_seconds",
            "Time from an append reaching the server to its reply, fsync included.",
        );
        self.sync_latency.render(
            &mut out,
            "sierradb_fsync_latency_seconds",
            "Time to write and fsync one group-commit batch.",
        );
        self.batch_events.render(
            &mut out,
            "sierradb_batch_events",
            "Events per group-commit batch (per fsync).",
        );
        let gauges: [(&str, &str, &str, u64); 9] = [
            (
                "sierradb_appended_events_total",
                "Events appended.",
                "counter",
                store.events,
            ),
            (
                "sierradb_appended_transactions_total",
                "Transactions appended.",
                "counter",
                store.transactions,
            ),
            (
                "sierradb_written_bytes_total",
                "Bytes written to segments.",
                "counter",
                store.bytes,
            ),
            (
                "sierradb_fsyncs_total",
                "Segment fsyncs covering appends.",
                "counter",
                store.syncs,
            ),
            (
                "sierradb_segments_sealed_total",
                "Segments sealed.",
                "counter",
                store.seals,
            ),
            (
                "sierradb_open_segments",
                "Segment files open (sealed and open).",
                "gauge",
                open_segments as u64,
            ),
            (
                "sierradb_connections",
                "Open client connections.",
                "gauge",
                self.connections.load(Ordering::Relaxed) as u64,
            ),
            (
                "sierradb_subscriptions",
                "Live subscriptions.",
                "gauge",
                self.subscriptions.load(Ordering::Relaxed) as u64,
            ),
            (
                "sierradb_subscription_deliveries_total",
                "Events pushed to subscribers.",
                "counter",
                self.deliveries.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, kind, value) in gauges {
            counter(&mut out, name, help, kind, value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let m = Metrics::default();
        m.append_latency.observe(0.0002);
        m.append_latency.observe(0.003);
        m.append_latency.observe(9.0);
        m.batch_events.observe(3.0);
        let text = m.render(StatsSnapshot::default(), 4);
        assert!(text.contains("sierradb_append_latency_seconds_bucket{le=\"0.0001\"} 0\n"));
        assert!(text.contains("sierradb_append_latency_seconds_bucket{le=\"0.00025\"} 1\n"));
        assert!(text.contains("sierradb_append_latency_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("sierradb_append_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("sierradb_append_latency_seconds_count 3\n"));
        assert!(text.contains("sierradb_batch_events_bucket{le=\"4\"} 1\n"));
        assert!(text.contains("sierradb_open_segments 4\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("sierradb_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
