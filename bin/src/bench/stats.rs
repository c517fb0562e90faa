//! Latency samples and the figures a benchmark prints.

use std::time::Duration;

/// Latencies of one workload, in nanoseconds.
#[derive(Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d.as_nanos() as u64);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (0..=1) in microseconds; 0 when empty.
    pub fn quantile_us(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[i] as f64 / 1000.0
    }
}

/// One workload's result line.
pub struct Report {
    pub name: String,
    pub ops: u64,
    pub events: u64,
    pub elapsed: Duration,
    pub fsyncs: u64,
    /// Writes to the segment files (group-commit batches); zero where nothing is appended.
    pub writes: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The durable ceiling measured for this workload, if it is one that syncs.
    pub ceiling_events_per_sec: Option<f64>,
}

impl Report {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    pub fn fsyncs_per_sec(&self) -> f64 {
        self.fsyncs as f64 / self.elapsed.as_secs_f64()
    }

    pub fn events_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 {
            0.0
        } else {
            self.events as f64 / self.fsyncs as f64
        }
    }

    pub fn print_text(&self) {
        let mut line = format!(
            "{:<40} {:>11.0} ops/s {:>11.0} events/s  p50 {:>8.1}us  p99 {:>8.1}us  p99.9 {:>8.1}us",
            self.name,
            self.ops_per_sec(),
            self.events_per_sec(),
            self.p50_us,
            self.p99_us,
            self.p999_us
        );
        if self.fsyncs > 0 {
            line.push_str(&format!(
                "  {:>8.0} fsyncs/s  {:>6.1} events/fsync",
                self.fsyncs_per_sec(),
                self.events_per_fsync()
            ));
        } else if self.writes > 0 {
            line.push_str(&format!(
                "  {:>8.0} writes/s  {:>6.1} events/write",
                self.writes as f64 / self.elapsed.as_secs_f64(),
                self.events as f64 / self.writes as f64
            ));
        }
        if let Some(ceiling) = self.ceiling_events_per_sec {
            line.push_str(&format!(
                "  ceiling {:.0} events/s ({:.0}%)",
                ceiling,
                100.0 * self.events_per_sec() / ceiling
            ));
        }
        println!("{line}");
    }

    pub fn json(&self) -> String {
        let ceiling = self
            .ceiling_events_per_sec
            .map_or("null".to_string(), |c| format!("{c:.1}"));
        format!(
            "{{\"name\":{:?},\"ops\":{},\"events\":{},\"seconds\":{:.3},\"ops_per_sec\":{:.1},\"events_per_sec\":{:.1},\"fsyncs\":{},\"writes\":{},\"events_per_fsync\":{:.2},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"ceiling_events_per_sec\":{}}}",
            self.name,
            self.ops,
            self.events,
            self.elapsed.as_secs_f64(),
            self.ops_per_sec(),
            self.events_per_sec(),
            self.fsyncs,
            self.writes,
            self.events_per_fsync(),
            self.p50_us,
            self.p99_us,
            self.p999_us,
            ceiling
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_sorted_samples() {
        let mut l = Latencies::default();
        for us in [5u64, 1, 4, 2, 3] {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.quantile_us(0.0), 1.0);
        assert_eq!(l.quantile_us(0.5), 3.0);
        assert_eq!(l.quantile_us(1.0), 5.0);
        assert_eq!(Latencies::default().quantile_us(0.99), 0.0);
    }
}
