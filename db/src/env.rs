//! [`Env`]: the one door through which `db` reaches time, timers, tasks, blocking work and
//! randomness.
//!
//! Production uses [`TokioEnv`]; the simulator supplies its own implementation with a virtual
//! clock, a seeded scheduler and seeded randomness, so the same `db` code runs in both and a
//! seed reproduces a run exactly. Nothing in `db` may call `std::time`, `tokio::spawn`,
//! `thread_rng` or `Uuid::new_v4` directly (`clippy.toml` and the tidy test enforce it).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

/// A point on the environment's monotonic clock, in nanoseconds since an arbitrary start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// A future the environment can run, boxed because spawning is a cold path.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Time, timers, tasks, blocking work and randomness for one node.
pub trait Env: Clone + Send + Sync + 'static {
    /// The monotonic clock.
    fn now(&self) -> Instant;
    /// Wall-clock milliseconds since the Unix epoch, for event timestamps. May jump.
    fn wall_clock_ms(&self) -> u64;
    /// Completes after `duration` on this environment's clock.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
    /// Runs `future` as an independent task. `name` shows in traces.
    fn spawn(&self, name: &'static str, future: BoxFuture);
    /// Runs blocking work (file I/O, fsync) without stalling other tasks: on a blocking thread
    /// in production, inline in the simulator (where the disk never blocks).
    fn run_blocking<F, R>(&self, work: F) -> impl Future<Output = R> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static;
    /// A fresh random `u64` from this node's seeded generator.
    fn random_u64(&self) -> u64;
    /// A fresh random UUID (version 4 layout) from this node's seeded generator.
    fn new_uuid(&self) -> Uuid {
        let bits = (u128::from(self.random_u64()) << 64) | u128::from(self.random_u64());
        uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid()
    }
}

/// The production environment: tokio's timers and tasks, the OS clock, and a generator seeded
/// once from the OS at start (tests may pass a fixed seed).
#[derive(Clone)]
pub struct TokioEnv {
    start: std::time::Instant,
    rng: Arc<Mutex<ChaCha8Rng>>,
    handle: tokio::runtime::Handle,
}

impl TokioEnv {
    /// Must be called inside a tokio runtime.
    #[expect(
        clippy::disallowed_methods,
        reason = "the tokio implementation of Env is where the real clock lives"
    )]
    pub fn new(seed: u64) -> Self {
        TokioEnv {
            start: std::time::Instant::now(), // allowed: the tokio impl of Env
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
            handle: tokio::runtime::Handle::current(),
        }
    }

    /// A seed from the OS clock, for production where runs need not repeat.
    #[expect(
        clippy::disallowed_methods,
        reason = "the tokio implementation of Env is where the real clock lives"
    )]
    pub fn seed_from_clock() -> u64 {
        std::time::SystemTime::now() // allowed: the tokio impl of Env
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id())
    }
}

impl Env for TokioEnv {
    fn now(&self) -> Instant {
        Instant(self.start.elapsed().as_nanos() as u64)
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the tokio implementation of Env is where the real clock lives"
    )]
    fn wall_clock_ms(&self) -> u64 {
        std::time::SystemTime::now() // allowed: the tokio impl of Env
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the tokio implementation of Env owns tokio's timers"
    )]
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the tokio implementation of Env owns tokio's tasks"
    )]
    fn spawn(&self, _name: &'static str, future: BoxFuture) {
        self.handle.spawn(future);
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the tokio implementation of Env owns tokio's blocking pool"
    )]
    fn run_blocking<F, R>(&self, work: F) -> impl Future<Output = R> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let task = self.handle.spawn_blocking(work);
        async move {
            match task.await {
                Ok(value) => value,
                Err(err) => std::panic::resume_unwind(err.into_panic()),
            }
        }
    }

    fn random_u64(&self) -> u64 {
        self.rng.lock().expect("rng lock").next_u64()
    }
}
