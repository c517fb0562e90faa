//! `sierradb bench`: measurements that print numbers. `--embedded` drives the store in
//! process through the real disk; the RESP load generator drives a running server.

pub mod embedded;
pub mod resp;
pub mod stats;

/// Options shared by both kinds of benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Seconds per workload.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Streams to spread appends over.
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 200)]
    pub payload: usize,
}
