//! One simulated node: its store while it is up ([`NodeSlot`]), its disk latency, and the
//! environment its store runs on ([`NodeEnv`]).
//!
//! # Disk latency as virtual time
//!
//! `SimDisk` never blocks; the store reaches it inside [`Env::run_blocking`]. [`NodeEnv`]
//! implements that by sleeping a drawn latency on the virtual clock *before* running the work,
//! so a group-commit batch takes time, later appends queue behind it and batches grow, as on a
//! real disk. Sleeping before rather than after keeps crash semantics honest: a node that dies
//! during the sleep has written nothing of that batch, which is what `Db` reports to the
//! appends it drops ("not written"). Reads are synchronous in `Store`, so clients sleep the same
//! latency before each read.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use db::Db;
use db::env::{BoxFuture, Env, Instant};
use disk::SimDisk;
use rand_chacha::ChaCha8Rng;

use crate::rt::SimEnv;
use crate::scenario::quantity::{jitter, uniform};

/// The latency model of one node's disk.
struct Latency {
    mean_ns: u64,
    tail_probability: f64,
    tail_extra_ns: u64,
    rng: ChaCha8Rng,
}

/// What clients and the world share about one node: its current store (`None` while it is
/// down) and its disk latency.
pub struct NodeSlot {
    pub id: u32,
    db: Mutex<Option<Db<SimDisk>>>,
    /// Counts the stores this node has opened, so a client holding a connection can tell a
    /// restart (its connection is gone) from the same process still running.
    incarnation: AtomicU64,
    latency: Mutex<Latency>,
    /// The node's own environment: its wall clock stamps events, as a server would.
    env: SimEnv,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NodeSlot {
    pub fn new(
        id: u32,
        env: SimEnv,
        latency_ns: u64,
        tail_probability: f64,
        tail_extra_ns: u64,
        rng: ChaCha8Rng,
    ) -> NodeSlot {
        NodeSlot {
            id,
            db: Mutex::new(None),
            incarnation: AtomicU64::new(0),
            latency: Mutex::new(Latency {
                mean_ns: latency_ns,
                tail_probability,
                tail_extra_ns,
                rng,
            }),
            env,
        }
    }

    /// The store, if the node is up. A clone: it stays usable (and stale) after a crash.
    pub fn db(&self) -> Option<Db<SimDisk>> {
        lock(&self.db).clone()
    }

    /// The store and its incarnation, if the node is up.
    pub fn current(&self) -> Option<(u64, Db<SimDisk>)> {
        let db = lock(&self.db);
        let db = db.as_ref()?.clone();
        Some((self.incarnation.load(Ordering::SeqCst), db))
    }

    /// The incarnation of the store now open (or last open, while the node is down).
    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::SeqCst)
    }

    /// The node's own executor environment: tasks spawned on it die when the node crashes.
    pub fn env(&self) -> SimEnv {
        self.env.clone()
    }

    pub fn set_db(&self, db: Option<Db<SimDisk>>) {
        let mut slot = lock(&self.db);
        // Taking the store away ends the incarnation as surely as opening a new one.
        self.incarnation.fetch_add(1, Ordering::SeqCst);
        let old = std::mem::replace(&mut *slot, db);
        drop(slot);
        // Dropped outside the lock: dropping a store closes files and channels.
        drop(old);
    }

    pub fn is_up(&self) -> bool {
        lock(&self.db).is_some()
    }

    /// The latency of the next disk operation: ±50% around the mean, plus the tail sometimes.
    pub fn io_delay(&self) -> Duration {
        let mut l = lock(&self.latency);
        let mean = l.mean_ns;
        let mut ns = jitter(&mut l.rng, mean);
        if l.tail_probability > 0.0 {
            let scale = 1u64 << 32;
            let draw = uniform(&mut l.rng, 0, scale - 1) as f64 / scale as f64;
            if draw < l.tail_probability {
                let extra = l.tail_extra_ns;
                ns = ns.saturating_add(jitter(&mut l.rng, extra));
            }
        }
        Duration::from_nanos(ns)
    }

    /// Slow-disk tails stop when faults heal; the typical latency stays.
    pub fn heal_latency(&self) {
        lock(&self.latency).tail_probability = 0.0;
    }

    /// The node's wall clock, for event timestamps.
    pub fn wall_clock_ms(&self) -> u64 {
        self.env.wall_clock_ms()
    }
}

/// The environment a node's store runs on: the node's [`SimEnv`], with disk latency turned
/// into virtual time in [`Env::run_blocking`].
#[derive(Clone)]
pub struct NodeEnv {
    inner: SimEnv,
    slot: Arc<NodeSlot>,
}

impl NodeEnv {
    pub fn new(inner: SimEnv, slot: Arc<NodeSlot>) -> NodeEnv {
        NodeEnv { inner, slot }
    }
}

impl Env for NodeEnv {
    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn wall_clock_ms(&self) -> u64 {
        self.inner.wall_clock_ms()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        self.inner.sleep(duration)
    }

    fn spawn(&self, name: &'static str, future: BoxFuture) {
        self.inner.spawn(name, future);
    }

    fn run_blocking<F, R>(&self, work: F) -> impl Future<Output = R> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let sleep = self.inner.sleep(self.slot.io_delay());
        async move {
            sleep.await;
            work()
        }
    }

    fn random_u64(&self) -> u64 {
        self.inner.random_u64()
    }
}

/// Awaits `future` for at most `limit` of virtual time: `None` if the time ran out first (the
/// future is then dropped, as a client that stops waiting drops its request).
pub async fn timeout<F: Future>(env: &SimEnv, limit: Duration, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut sleep = std::pin::pin!(env.sleep(limit));
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(value) = future.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(value));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        std::task::Poll::Pending
    })
    .await
}
