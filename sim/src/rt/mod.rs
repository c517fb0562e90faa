//! `rt`: the deterministic, single-threaded executor every simulated node runs on.
//!
//! # How a run proceeds
//!
//! - **Tasks.** Each task is a boxed `Send` future tagged with a name (for traces) and a node
//!   (for crashes). `Send` only because [`Env::spawn`](db::env::Env::spawn) demands it: all
//!   polling happens on the thread that calls [`Sim::run_until`] or [`Sim::block_on`].
//! - **Ready set.** A task's waker pushes its id onto a shared ready list, at most once until
//!   the task is polled again (an atomic flag). Wakers may fire from inside a poll, from a
//!   destructor or from the clock; all of them only touch that list.
//! - **Seeded pick.** Each step takes one ready task, chosen uniformly by the scheduler's
//!   `ChaCha8Rng` (stream 0 of the seed), and polls it once. The choice randomises
//!   interleavings per seed while a seed replays the same interleaving exactly.
//! - **Virtual clock.** Time stands still while any task is ready. When none is, the clock
//!   jumps straight to the earliest timer's deadline and wakes every timer due then (so timers
//!   sharing a deadline race under the seeded pick). With no ready task and no timer the run is
//!   idle: nothing can happen again without outside help.
//! - **Nodes.** [`Sim::env_for_node`] hands out a [`SimEnv`] whose spawns belong to that node.
//!   [`Sim::crash_node`] drops the node's tasks: their futures' destructors run, so channels
//!   they held close and their timers are cancelled, exactly as when a process dies. Each node
//!   has its own generator (stream `1 + node` of the seed) and wall-clock skew, so workload
//!   randomness never shifts scheduling and clock faults stay per node.
//! - **Trace.** Every poll folds (virtual time, node, task id, task name) into a running
//!   FNV-1a 64 hash ([`Sim::trace_hash`]); the same seed and code must give the same hash, bit
//!   for bit. The last few entries are kept for failure reports ([`Sim::trace_tail`]).
//! - **Livelock guard.** A run that polls more than [`Sim::with_max_steps`] times panics,
//!   rather than hanging the test that drives it.
//!
//! Determinism rests on what is not here: no `std::time`, no OS randomness, no threads, no
//! hash-ordered maps. State that `SimEnv` handles share lives in one `Mutex<Shared>`, never
//! held while a task is polled or dropped, because both may call back into a `SimEnv`.

mod env;
mod trace;

use std::collections::BTreeMap;
use std::future::Future;
use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use db::env::{BoxFuture, Instant};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use env::SimEnv;
use trace::Trace;

/// Polls a [`Sim`] allows before it declares a livelock, unless [`Sim::with_max_steps`] says
/// otherwise. At well under a microsecond a poll, that is a few seconds of work: far beyond
/// any test here, far short of a hung CI job.
pub const DEFAULT_MAX_STEPS: u64 = 10_000_000;

/// What [`SimEnv::wall_clock_ms`](db::env::Env::wall_clock_ms) reads at virtual time zero:
/// milliseconds since the Unix epoch (November 2023), so timestamps look realistic.
pub const DEFAULT_EPOCH_MS: u64 = 1_700_000_000_000;

/// A task's id: assigned in spawn order, so it is the same in every run of a seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TaskId(u64);

/// Why [`Sim::run_until`] returned. Either way the clock then reads the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The next timer lies beyond the deadline.
    DeadlineReached,
    /// No task is ready and no timer is set, so nothing can ever happen again without outside
    /// help (a fault, a new task). Tasks may remain, blocked for good ([`Sim::task_count`]).
    Idle,
}

/// The executor, its virtual clock and its trace. Owned by the thread that drives the run;
/// tasks reach it only through [`SimEnv`] handles.
pub struct Sim {
    shared: Arc<Mutex<Shared>>,
    ready: Arc<Mutex<Vec<TaskId>>>,
    tasks: BTreeMap<TaskId, Task>,
    sched_rng: ChaCha8Rng,
    trace: Trace,
    steps: u64,
    max_steps: u64,
}

/// State the `SimEnv` handles share with the executor.
struct Shared {
    seed: u64,
    now: Instant,
    epoch_ms: u64,
    next_task: u64,
    next_timer: u64,
    /// Spawned since the executor last looked; it admits them before each step.
    spawned: Vec<Spawned>,
    /// Keyed by deadline, then by registration order, which breaks ties deterministically.
    timers: BTreeMap<(Instant, u64), Waker>,
    nodes: BTreeMap<u32, NodeState>,
}

struct NodeState {
    rng: ChaCha8Rng,
    wall_skew_ms: i64,
}

struct Spawned {
    id: TaskId,
    node: u32,
    name: &'static str,
    future: BoxFuture,
}

struct Task {
    node: u32,
    name: &'static str,
    future: BoxFuture,
    wake: Arc<TaskWaker>,
    waker: Waker,
}

struct TaskWaker {
    id: TaskId,
    /// Set while the id sits in the ready list, so a burst of wakes queues it once.
    queued: AtomicBool,
    ready: Arc<Mutex<Vec<TaskId>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::Relaxed) {
            lock(&self.ready).push(self.id);
        }
    }
}

enum Step {
    Polled,
    Fired,
    /// Nothing ready and the next timer is past the limit.
    Waiting,
    Idle,
}

impl Sim {
    /// A simulation whose every choice derives from `seed`.
    pub fn new(seed: u64) -> Sim {
        let shared = Shared {
            seed,
            now: Instant(0),
            epoch_ms: DEFAULT_EPOCH_MS,
            next_task: 0,
            next_timer: 0,
            spawned: Vec::new(),
            timers: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        Sim {
            shared: Arc::new(Mutex::new(shared)),
            ready: Arc::default(),
            tasks: BTreeMap::new(),
            sched_rng: ChaCha8Rng::seed_from_u64(seed),
            trace: Trace::default(),
            steps: 0,
            max_steps: DEFAULT_MAX_STEPS,
        }
    }

    /// Panic once the run has polled more than `max_steps` times in total.
    pub fn with_max_steps(mut self, max_steps: u64) -> Sim {
        self.max_steps = max_steps;
        self
    }

    /// Keeps the last trace entries (for failure reports) but hashes none: for a run whose
    /// hash nobody reads (a soak's seeds). [`Sim::trace_hash`] then stays at its start value.
    pub fn without_trace_hash(mut self) -> Sim {
        self.trace.stop_hashing();
        self
    }

    /// The wall clock (before skew) at virtual time zero, in milliseconds since the epoch.
    pub fn with_epoch_ms(self, epoch_ms: u64) -> Sim {
        lock(&self.shared).epoch_ms = epoch_ms;
        self
    }

    /// The environment of node 0, where [`Sim::spawn`] and [`Sim::block_on`] put their tasks.
    pub fn env(&self) -> SimEnv {
        self.env_for_node(0)
    }

    /// The environment of `node`: its spawns, timers, generator and wall clock.
    pub fn env_for_node(&self, node: u32) -> SimEnv {
        SimEnv::new(self.shared.clone(), node)
    }

    /// Adds a task on node 0. It first runs inside the next `run_*` or `block_on` call.
    pub fn spawn(&self, name: &'static str, future: impl Future<Output = ()> + Send + 'static) {
        self.env().spawn_task(name, Box::pin(future));
    }

    /// Runs until the clock would pass `deadline` or the run goes idle, then sets the clock to
    /// `deadline` (never backwards), so a driver's next action happens at the time it named.
    /// Tasks ready at the current time always run, even if it is past `deadline`. To run to
    /// quiescence without moving the clock further, use [`Sim::run_until_idle`].
    pub fn run_until(&mut self, deadline: Instant) -> RunOutcome {
        let outcome = loop {
            match self.step(deadline) {
                Step::Polled | Step::Fired => {}
                Step::Waiting => break RunOutcome::DeadlineReached,
                Step::Idle => break RunOutcome::Idle,
            }
        };
        let mut shared = lock(&self.shared);
        shared.now = shared.now.max(deadline);
        outcome
    }

    /// [`Sim::run_until`] `duration` past the current time.
    pub fn run_for(&mut self, duration: Duration) -> RunOutcome {
        self.run_until(deadline_after(self.now(), duration))
    }

    /// Runs until no task is ready and no timer is set; the clock stays at the last event. A
    /// task that sleeps in a loop forever never lets this return; the step guard turns that
    /// into a panic.
    pub fn run_until_idle(&mut self) {
        while !matches!(self.step(Instant(u64::MAX)), Step::Idle) {}
    }

    /// Runs `future` as a task on node 0 until it completes, and returns its output. Other
    /// tasks run meanwhile and stay behind when it returns.
    ///
    /// # Panics
    /// With a message containing "deadlock" if the run goes idle while `future` is pending.
    pub fn block_on<T, F>(&mut self, future: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let root = self.env().spawn_task(
            "block_on",
            Box::pin(async move {
                let value = future.await;
                *lock(&out) = Some(value);
            }),
        );
        self.admit_spawned();
        while self.tasks.contains_key(&root) {
            if let Step::Idle = self.step(Instant(u64::MAX)) {
                panic!("{}", self.deadlock_report());
            }
        }
        // Only `crash_node` removes an unfinished task, and it needs `&mut self`.
        lock(&slot)
            .take()
            .expect("a finished block_on task has stored its output")
    }

    /// Drops every task of `node` (running their destructors, which close the channels they
    /// held and cancel their timers) and returns how many there were. The node's environment
    /// keeps working: tasks spawned on it afterwards are a restarted node.
    pub fn crash_node(&mut self, node: u32) -> usize {
        let mut dropped = 0;
        // A destructor may spawn; keep going until the node has no tasks at all.
        loop {
            self.admit_spawned();
            let (victims, rest): (BTreeMap<_, _>, BTreeMap<_, _>) = mem::take(&mut self.tasks)
                .into_iter()
                .partition(|(_, task)| task.node == node);
            self.tasks = rest;
            if victims.is_empty() {
                break;
            }
            dropped += victims.len();
            drop(victims);
        }
        self.trace.crash(self.now(), node, dropped);
        dropped
    }

    /// Sets `node`'s wall clock to run `skew_ms` ahead of (or, negative, behind) true time.
    pub fn set_clock_skew(&self, node: u32, skew_ms: i64) {
        lock(&self.shared).node(node).wall_skew_ms = skew_ms;
    }

    /// Moves `node`'s wall clock by `by_ms` at once, as an NTP step or an operator would.
    pub fn jump_wall_clock(&self, node: u32, by_ms: i64) {
        let mut shared = lock(&self.shared);
        let state = shared.node(node);
        state.wall_skew_ms = state.wall_skew_ms.saturating_add(by_ms);
    }

    /// The virtual clock.
    pub fn now(&self) -> Instant {
        lock(&self.shared).now
    }

    /// Polls made so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Tasks alive, including blocked ones.
    pub fn task_count(&self) -> usize {
        self.tasks.len() + lock(&self.shared).spawned.len()
    }

    /// The running FNV-1a 64 hash of every poll and crash so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// The last trace entries, oldest first, one line each, for failure reports.
    pub fn trace_tail(&self) -> Vec<String> {
        self.trace.tail()
    }

    fn step(&mut self, limit: Instant) -> Step {
        self.admit_spawned();
        match self.pick_ready() {
            Some(id) => {
                self.poll(id);
                Step::Polled
            }
            None => self.advance_clock(limit),
        }
    }

    fn admit_spawned(&mut self) {
        let spawned = mem::take(&mut lock(&self.shared).spawned);
        for Spawned {
            id,
            node,
            name,
            future,
        } in spawned
        {
            let wake = Arc::new(TaskWaker {
                id,
                queued: AtomicBool::new(true),
                ready: self.ready.clone(),
            });
            lock(&self.ready).push(id);
            let waker = Waker::from(wake.clone());
            let task = Task {
                node,
                name,
                future,
                wake,
                waker,
            };
            self.tasks.insert(id, task);
        }
    }

    /// Removes a seeded choice from the ready list. Ids of tasks that have since finished or
    /// crashed are discarded on the way.
    fn pick_ready(&mut self) -> Option<TaskId> {
        let mut ready = lock(&self.ready);
        while !ready.is_empty() {
            let index = pick_index(&mut self.sched_rng, ready.len());
            let id = ready.swap_remove(index);
            if self.tasks.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    fn poll(&mut self, id: TaskId) {
        if self.steps >= self.max_steps {
            panic!(
                "livelock guard: {} steps exceeded at t={}ns (raise it with Sim::with_max_steps); last trace lines:\n{}",
                self.max_steps,
                self.now().0,
                self.trace_tail().join("\n")
            );
        }
        self.steps += 1;
        let now = self.now();
        let task = self.tasks.get_mut(&id).expect("picked tasks exist");
        self.trace.poll(now, task.node, id, task.name);
        // Cleared before the poll, so a wake during it queues the task again.
        task.wake.queued.store(false, Ordering::Relaxed);
        let mut cx = Context::from_waker(&task.waker);
        if task.future.as_mut().poll(&mut cx).is_ready() {
            self.tasks.remove(&id);
        }
    }

    /// Nothing is ready: jump to the earliest deadline and wake every timer due then, unless
    /// that lies beyond `limit`.
    fn advance_clock(&mut self, limit: Instant) -> Step {
        let mut shared = lock(&self.shared);
        let Some(&(deadline, _)) = shared.timers.keys().next() else {
            return Step::Idle;
        };
        if deadline > limit {
            return Step::Waiting;
        }
        shared.now = shared.now.max(deadline);
        let mut due = Vec::new();
        while let Some(timer) = shared.timers.first_entry() {
            if timer.key().0 > deadline {
                break;
            }
            due.push(timer.remove());
        }
        // Woken outside the lock: a waker is arbitrary code and may reach for a `SimEnv`.
        drop(shared);
        due.into_iter().for_each(Waker::wake);
        Step::Fired
    }

    fn deadlock_report(&self) -> String {
        let live: Vec<String> = self
            .tasks
            .iter()
            .map(|(id, task)| format!("#{} {} (node {})", id.0, task.name, task.node))
            .collect();
        format!(
            "deadlock: block_on's future is pending, but no task is ready and no timer is set (t={}ns, seed {}); live tasks: {}; last trace lines:\n{}",
            self.now().0,
            lock(&self.shared).seed,
            live.join(", "),
            self.trace_tail().join("\n")
        )
    }
}

impl Drop for Sim {
    /// Tasks own `SimEnv`s, so tasks still queued inside `Shared` would keep it alive in a
    /// cycle. Drop every task here, outside the lock, since their destructors may take it.
    fn drop(&mut self) {
        loop {
            let spawned = mem::take(&mut lock(&self.shared).spawned);
            let tasks = mem::take(&mut self.tasks);
            if spawned.is_empty() && tasks.is_empty() {
                break;
            }
            drop(tasks);
            drop(spawned);
        }
    }
}

impl Shared {
    fn node(&mut self, node: u32) -> &mut NodeState {
        let seed = self.seed;
        self.nodes.entry(node).or_insert_with(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            // Stream 0 is the scheduler's; nodes take the streams after it.
            rng.set_stream(1 + u64::from(node));
            NodeState {
                rng,
                wall_skew_ms: 0,
            }
        })
    }
}

/// Locks ignoring poison: a task that panicked was never inside one of our critical sections,
/// and `Sim`'s destructor must still run while that panic unwinds.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn deadline_after(now: Instant, duration: Duration) -> Instant {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Instant(now.0.saturating_add(nanos))
}

/// A uniform index below `len` by multiply-shift (Lemire): one draw, no division, and a bias
/// below `len / 2^64`, which no test can see.
fn pick_index(rng: &mut ChaCha8Rng, len: usize) -> usize {
    ((u128::from(rng.next_u64()) * len as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use db::env::Env;

    use super::*;

    #[test]
    fn pick_index_stays_in_range_and_covers_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut seen = [false; 5];
        for _ in 0..200 {
            seen[pick_index(&mut rng, 5)] = true;
        }
        assert_eq!(seen, [true; 5]);
        assert_eq!(pick_index(&mut rng, 1), 0);
    }

    #[test]
    fn node_generators_differ_from_each_other_and_repeat_per_seed() {
        let draw = |seed, node| Sim::new(seed).env_for_node(node).random_u64();
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(draw(1, 0), draw(1, 1));
        assert_ne!(draw(1, 0), draw(2, 0));
    }

    #[test]
    fn stale_wakes_of_finished_tasks_are_ignored() {
        let mut sim = Sim::new(3);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        sim.spawn("drops-receiver", async move { drop(rx) });
        sim.run_until_idle();
        // The waker list may hold the finished task's id; sending must not revive it.
        assert!(tx.send(()).is_err());
        sim.run_until_idle();
        assert_eq!(sim.task_count(), 0);
        assert_eq!(sim.steps(), 1);
    }
}
