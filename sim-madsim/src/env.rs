//! [`MadsimEnv`]: the store's [`Env`] over madsim's virtual clock, timers and tasks.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use db::env::{BoxFuture, Env, Instant};
use madsim::time::TimeHandle;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One boot of one node. Clones share the generator.
#[derive(Clone)]
pub struct MadsimEnv {
    time: TimeHandle,
    /// Virtual time at boot, so `now` starts near zero like the production clock.
    booted: Duration,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

impl MadsimEnv {
    /// Must be called inside a madsim runtime. `seed` should differ per boot, so a restarted
    /// node does not repeat the ids it generated before.
    pub fn new(seed: u64) -> MadsimEnv {
        let time = TimeHandle::current();
        MadsimEnv {
            booted: time.elapsed(),
            time,
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        }
    }
}

impl Env for MadsimEnv {
    fn now(&self) -> Instant {
        let since_boot = self.time.elapsed().saturating_sub(self.booted);
        Instant(since_boot.as_nanos() as u64)
    }

    /// madsim's simulated wall clock: a start drawn from the seed (around 2022), then virtual
    /// time. So server-chosen timestamps repeat with the seed and need no `TIMESTAMP`.
    fn wall_clock_ms(&self) -> u64 {
        let since_epoch = self.time.now_time().duration_since(UNIX_EPOCH);
        since_epoch.map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        self.time.sleep(duration)
    }

    /// On the node of the calling task, so a kill of that node drops it too.
    fn spawn(&self, _name: &'static str, future: BoxFuture) {
        madsim::task::spawn(future);
    }

    /// Inline: the disk is in memory and never blocks, and running the work on another thread
    /// would let real time decide when it finishes.
    async fn run_blocking<F, R>(&self, work: F) -> R
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        work()
    }

    fn random_u64(&self) -> u64 {
        self.rng.lock().expect("rng lock").next_u64()
    }
}
