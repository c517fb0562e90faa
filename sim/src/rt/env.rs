//! [`SimEnv`]: one node's view of the simulation, implementing [`Env`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use db::env::{BoxFuture, Env, Instant};
use rand::RngCore;

use super::{Shared, Spawned, TaskId, deadline_after, lock};

/// A node's handle on the simulation: virtual clock, timers, spawning, seeded randomness and
/// a skewable wall clock. Cheap to clone; every clone belongs to the same node.
#[derive(Clone)]
pub struct SimEnv {
    shared: Arc<Mutex<Shared>>,
    node: u32,
}

impl SimEnv {
    pub(super) fn new(shared: Arc<Mutex<Shared>>, node: u32) -> SimEnv {
        SimEnv { shared, node }
    }

    /// The node this environment's tasks belong to.
    pub fn node(&self) -> u32 {
        self.node
    }

    pub(super) fn spawn_task(&self, name: &'static str, future: BoxFuture) -> TaskId {
        let mut shared = lock(&self.shared);
        let id = TaskId(shared.next_task);
        shared.next_task += 1;
        shared.spawned.push(Spawned {
            id,
            node: self.node,
            name,
            future,
        });
        id
    }
}

impl Env for SimEnv {
    fn now(&self) -> Instant {
        lock(&self.shared).now
    }

    /// The configured epoch plus virtual time plus this node's skew, clamped to `u64`.
    fn wall_clock_ms(&self) -> u64 {
        let mut shared = lock(&self.shared);
        let base = i128::from(shared.epoch_ms) + i128::from(shared.now.0 / 1_000_000);
        let skewed = base + i128::from(shared.node(self.node).wall_skew_ms);
        skewed.clamp(0, i128::from(u64::MAX)) as u64
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        // The deadline is fixed now, as tokio fixes it, not at the first poll.
        Sleep {
            shared: self.shared.clone(),
            deadline: deadline_after(self.now(), duration),
            timer: None,
        }
    }

    fn spawn(&self, name: &'static str, future: BoxFuture) {
        self.spawn_task(name, future);
    }

    /// Runs `work` at once: the simulated disk never blocks, and any latency it models is the
    /// caller's to turn into virtual time.
    fn run_blocking<F, R>(&self, work: F) -> impl Future<Output = R> + Send
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        std::future::ready(work())
    }

    fn random_u64(&self) -> u64 {
        lock(&self.shared).node(self.node).rng.next_u64()
    }
}

/// Completes once the virtual clock reaches `deadline`. Registers a timer on its first
/// pending poll and removes it when dropped, so an abandoned sleep (a lost `select!` arm, a
/// crashed task) never drags the clock forward.
struct Sleep {
    shared: Arc<Mutex<Shared>>,
    deadline: Instant,
    timer: Option<(Instant, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut shared = lock(&this.shared);
        if shared.now >= this.deadline {
            if let Some(key) = this.timer.take() {
                shared.timers.remove(&key);
            }
            return Poll::Ready(());
        }
        match this.timer {
            Some(key) => {
                if let Some(waker) = shared.timers.get_mut(&key) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                let key = (this.deadline, shared.next_timer);
                shared.next_timer += 1;
                shared.timers.insert(key, cx.waker().clone());
                this.timer = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            lock(&self.shared).timers.remove(&key);
        }
    }
}
