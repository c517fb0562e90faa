//! Operational metrics: lock-free counters and histograms the store and the server update, and
//! their rendering in the Prometheus text format (served by `sierradb serve
//! --metrics-address`). Durations come from [`crate::env::Env::now`], never the OS clock.
//!
//! Subscription lag is not a counter: it is computed when the metrics are rendered, from the
//! live subscriptions registered in [`LiveSubscriptions`] (each reports, through a
//! [`LagProbe`], the events stored in its targets that it has not delivered or that were not
//! acknowledged). Only maxima and sums are reported, so the order the subscriptions are
//! visited in never shows.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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

/// How far one subscription is behind its targets, in events.
///
/// An event of a subscription's targets (from its start position) that is stored is in
/// exactly one of three states: not yet handed to the connection (`undelivered`), handed to the
/// connection and not acknowledged (`unacked`), or acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionLag {
    /// Stored events the connection has not been handed yet: waiting on the window, on the
    /// client reading its socket, or on the feed's next scan.
    pub undelivered: u64,
    /// Events written to the client and not yet acknowledged with `EACK`.
    pub unacked: u64,
}

impl SubscriptionLag {
    /// The subscription's lag: stored events beyond its last acknowledgement.
    pub fn events(self) -> u64 {
        self.undelivered.saturating_add(self.unacked)
    }
}

/// Reports one live subscription's lag. Implemented by the server's subscriptions, which know
/// the store; `dyn` because the metrics are not generic over the disk, and this is read only
/// when the metrics are rendered.
pub trait LagProbe: Send + Sync {
    fn lag(&self) -> SubscriptionLag;
}

/// Subscription lag over every live subscription of the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LagSummary {
    /// Live subscriptions that report their lag.
    pub subscriptions: u64,
    /// The largest [`SubscriptionLag::events`].
    pub max_lag: u64,
    /// The largest [`SubscriptionLag::undelivered`].
    pub max_undelivered: u64,
    /// [`SubscriptionLag::undelivered`] summed over the subscriptions.
    pub undelivered: u64,
    /// [`SubscriptionLag::unacked`] summed over the subscriptions.
    pub unacked: u64,
}

/// The live subscriptions, for the lag metrics. A subscription registers when it starts and
/// is removed when its [`LagRegistration`] drops (with the subscription).
#[derive(Default)]
pub struct LiveSubscriptions {
    next_key: AtomicU64,
    /// Keyed by registration order, so a summary visits them in a fixed order.
    probes: Mutex<BTreeMap<u64, Arc<dyn LagProbe>>>,
}

impl std::fmt::Debug for LiveSubscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("LiveSubscriptions")
            .field("live", &live)
            .finish()
    }
}

impl LiveSubscriptions {
    /// Registers a subscription until the returned registration drops.
    pub fn register(self: &Arc<Self>, probe: Arc<dyn LagProbe>) -> LagRegistration {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, probe);
        LagRegistration {
            live: self.clone(),
            key,
        }
    }

    /// The lag of every live subscription, reduced to maxima and sums. The probes read the
    /// store, so they run outside the registry's lock.
    pub fn summary(&self) -> LagSummary {
        let probes: Vec<Arc<dyn LagProbe>> = self.lock().values().cloned().collect();
        let mut summary = LagSummary::default();
        for probe in probes {
            let lag = probe.lag();
            summary.subscriptions += 1;
            summary.max_lag = summary.max_lag.max(lag.events());
            summary.max_undelivered = summary.max_undelivered.max(lag.undelivered);
            summary.undelivered = summary.undelivered.saturating_add(lag.undelivered);
            summary.unacked = summary.unacked.saturating_add(lag.unacked);
        }
        summary
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<dyn LagProbe>>> {
        self.probes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a subscription in [`LiveSubscriptions`] while it lives.
pub struct LagRegistration {
    live: Arc<LiveSubscriptions>,
    key: u64,
}

impl std::fmt::Debug for LagRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LagRegistration").field(&self.key).finish()
    }
}

impl Drop for LagRegistration {
    fn drop(&mut self) {
        self.live.lock().remove(&self.key);
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
    /// Live subscriptions, for their lag.
    pub live_subscriptions: Arc<LiveSubscriptions>,
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
            live_subscriptions: Arc::default(),
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
        let lag = self.live_subscriptions.summary();
        let gauges: [(&str, &str, &str, u64); 13] = [
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
            (
                "sierradb_subscription_lag_max_events",
                "Largest lag over live subscriptions: events stored in its streams or partitions, from its start, that it has not acknowledged.",
                "gauge",
                lag.max_lag,
            ),
            (
                "sierradb_subscription_undelivered_max_events",
                "Largest count over live subscriptions of stored events not yet pushed to its client.",
                "gauge",
                lag.max_undelivered,
            ),
            (
                "sierradb_subscription_undelivered_events",
                "Stored events not yet pushed to their subscribers, summed over live subscriptions.",
                "gauge",
                lag.undelivered,
            ),
            (
                "sierradb_subscription_unacked_events",
                "Events pushed to subscribers and not yet acknowledged, summed over live subscriptions.",
                "gauge",
                lag.unacked,
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
        assert!(text.contains("sierradb_subscription_lag_max_events 0\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("sierradb_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    struct Fixed(SubscriptionLag);

    impl LagProbe for Fixed {
        fn lag(&self) -> SubscriptionLag {
            self.0
        }
    }

    fn fixed(undelivered: u64, unacked: u64) -> Arc<dyn LagProbe> {
        Arc::new(Fixed(SubscriptionLag {
            undelivered,
            unacked,
        }))
    }

    #[test]
    fn lag_is_the_maximum_and_sums_over_live_subscriptions() {
        let m = Metrics::default();
        let a = m.live_subscriptions.register(fixed(7, 3));
        let b = m.live_subscriptions.register(fixed(0, 12));
        let c = m.live_subscriptions.register(fixed(9, 0));
        assert_eq!(
            m.live_subscriptions.summary(),
            LagSummary {
                subscriptions: 3,
                max_lag: 12,
                max_undelivered: 9,
                undelivered: 16,
                unacked: 15,
            }
        );
        let text = m.render(StatsSnapshot::default(), 0);
        assert!(
            text.contains("sierradb_subscription_lag_max_events 12\n"),
            "{text}"
        );
        assert!(text.contains("sierradb_subscription_undelivered_max_events 9\n"));
        assert!(text.contains("sierradb_subscription_undelivered_events 16\n"));
        assert!(text.contains("sierradb_subscription_unacked_events 15\n"));
        // A subscription that ends stops counting.
        drop(b);
        assert_eq!(m.live_subscriptions.summary().max_lag, 10);
        drop((a, c));
        assert_eq!(m.live_subscriptions.summary(), LagSummary::default());
    }
}
