//! Simulated subscribers: clients that hold subscriptions (`ESUB`/`EPSUB`-like) on one node,
//! consume their deliveries, acknowledge them with a window, and resubscribe after the node
//! restarts.
//!
//! Each subscriber is one task on its own executor node, like a [`crate::workload::Client`],
//! and plays the connection's part of the server: it owns a `db::server::subscription::
//! Subscriptions` built on the node's current store, whose feeds run on the node's executor
//! node (so a crash kills them, as it would close the TCP connection). It draws its
//! subscriptions once, from its own random stream:
//!
//! - streams (one to three, `FROM 0`, `FROM LATEST` or `FROM` a small version), or
//! - partitions (one to three, or every partition), from the same kinds of start;
//!
//! each with a window drawn from `subscriber_window`, each made at a random time in the first
//! half of the run (so `FROM LATEST` starts on a store that already holds events).
//!
//! # Acknowledgements
//!
//! An acknowledgement falls due a drawn delay after a delivery (`subscriber_ack_delay`) and
//! covers everything delivered by then. Sometimes (`subscriber_stall`) the subscriber lets a
//! subscription go unacknowledged for `subscriber_stall_for` instead, so the window binds and
//! the feed must wait.
//!
//! # Restarts: at-least-once across them, exactly once within a subscription
//!
//! Subscriptions are not persisted: when the node crashes or restarts (a new incarnation of
//! its slot) every subscription of the connection is gone. The subscriber then subscribes
//! again, per target from its last acknowledged position + 1 (or the original start if nothing
//! was acknowledged), so deliveries it had not acknowledged are delivered again. A feed that
//! stops on a read error is resubscribed the same way.
//!
//! # Catching up
//!
//! After the workload, drain and heal, the world sets `finish`: from then on the subscriber
//! acknowledges at once and each chain must receive every target up to the store's last
//! position by its own deadline ([`catch_up_bound_ns`]): `liveness_within`, plus the round
//! trips its window forces on the backlog it has left at that moment. A chain that misses its
//! deadline is recorded `Behind` (with its backlog and bound) and left alone; the others go on.
//! Once every chain still waiting has caught up, each records `CaughtUp` with its heads, all
//! at that moment; with the node down the subscriber gives up at the last deadline
//! (`NodeDown`). Everything goes into the [`HistoryLog`]; [`crate::check::subscriptions`]
//! judges it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use db::env::Env;
use db::model::{PartitionId, StreamVersion};
use db::server::subscription::{Received, Start, SubscriptionLimits, Subscriptions, Target};
use disk::SimDisk;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::history::{
    Acked, Delivered, ErrorClass, HistoryLog, SeenEvent, StreamRef, SubFrom, SubTarget,
    SubscribedTarget, SubscriptionEnd,
};
use crate::net::SimNetwork;
use crate::node::{NodeEnv, NodeSlot, timeout};
use crate::resp::reply::Pushed;
use crate::resp::{Exchange, Host, RespConn, command, node_addr, reply};
use crate::rt::SimEnv;
use crate::scenario::WorkloadPlan;
use crate::scenario::quantity::{jitter, uniform};
use crate::workload::{Streams, seen};

/// How often a waiting subscriber looks up to notice restarts, due acknowledgements and the
/// end of the run.
const TICK: Duration = Duration::from_millis(5);
/// Pause before resubscribing after a feed stopped on a read error.
const RETRY_AFTER_FAILURE_NS: u64 = 10_000_000;
/// The server's limits for the subscriber's connection (the real defaults).
const LIMITS: SubscriptionLimits = SubscriptionLimits {
    max_per_connection: 64,
    default_window: 1_000,
    max_window: 100_000,
};

/// What one subscriber needs; built by the world.
pub struct Subscriber {
    pub index: u32,
    pub env: SimEnv,
    pub slot: Arc<NodeSlot>,
    pub streams: Arc<Streams>,
    pub plan: Arc<WorkloadPlan>,
    pub partition_count: u16,
    pub duration_ns: u64,
    pub log: HistoryLog,
    /// Set by the world after healing: catch up, record how far, and stop.
    pub finish: Arc<AtomicBool>,
    /// The bound on catching up once `finish` is set, before the window's round trips are
    /// added ([`catch_up_bound_ns`]).
    pub within_ns: u64,
    /// The seed's longest acknowledgement round trip
    /// ([`crate::scenario::Derived::ack_round_trip_max_ns`]).
    pub round_trip_max_ns: u64,
    /// The latest catch-up deadline of any subscriber's chain (virtual ns), raised by each
    /// subscriber when it sees `finish`, so the world waits long enough before stopping them.
    pub catch_up_until: Arc<AtomicU64>,
    pub rng: ChaCha8Rng,
    /// Decremented when the subscriber stops.
    pub alive: Arc<AtomicUsize>,
    /// With `transport = "resp"`: subscriptions are made over RESP3 connections to the
    /// node's server, on this network, waiting at most `timeout` for each reply.
    pub resp: Option<(SimNetwork, Duration)>,
}

/// The live subscription of a chain on the current connection.
struct Live {
    record: u64,
    id: Uuid,
    /// Per target: the position after the last one delivered.
    next: Vec<u64>,
    /// The next cursor expected, i.e. deliveries so far.
    delivered: u64,
    /// Delivered cursors not yet acknowledged, with their target and position.
    unacked: VecDeque<(u64, Option<usize>, u64)>,
    /// When the next acknowledgement is due, if one is.
    ack_due_ns: Option<u64>,
    /// Per target, over RESP only: a `FROM LATEST` start the reply left open, as the lowest
    /// and highest head + 1 the server can have read (appends landed between the request and
    /// its reply). The record says the highest until the first delivery shows where it was;
    /// when the node was down as the reply was read the highest is unknown (`u64::MAX`) and the
    /// record says the lowest.
    open_start: Vec<Option<(u64, u64)>>,
}

impl Live {
    /// A subscription the server just confirmed: nothing delivered or owed yet.
    fn confirmed(
        record: u64,
        id: Uuid,
        next: Vec<u64>,
        open_start: Vec<Option<(u64, u64)>>,
    ) -> Live {
        Live {
            record,
            id,
            next,
            delivered: 0,
            unacked: VecDeque::new(),
            ack_due_ns: None,
            open_start,
        }
    }
}

/// One of the subscriber's subscriptions across connections.
struct Chain {
    targets: Vec<SubTarget>,
    from: Vec<SubFrom>,
    window: u64,
    start_at_ns: u64,
    /// Per target: where a resubscription starts (acknowledged position + 1, else the
    /// original start once it is known).
    resume: Vec<Option<u64>>,
    live: Option<Live>,
    /// Earliest time to (re)subscribe.
    retry_at_ns: u64,
    subscribed_once: bool,
    /// Set when the subscriber sees `finish`: what this chain must catch up, and by when.
    catch_up: Option<CatchUp>,
}

/// One chain's catch-up after healing.
#[derive(Clone, Copy, Debug)]
struct CatchUp {
    /// Events the chain had yet to be delivered when the subscriber saw `finish`.
    backlog: u64,
    /// [`catch_up_bound_ns`] of that backlog.
    bound_ns: u64,
    /// When the bound runs out (virtual ns).
    by_ns: u64,
    /// The deadline passed with the chain behind; it is recorded and left alone.
    missed: bool,
}

/// How long a chain of window `window` may take to catch up on `backlog` events after
/// healing: `within_ns` (the fixed liveness bound), plus one worst round trip for each
/// window's worth of the backlog, `⌈backlog / window⌉ × round_trip_max_ns`.
///
/// The second term is what any server needs: a feed may have at most `window` deliveries
/// unacknowledged, so delivery `c + window` leaves only after the acknowledgement of `c` came
/// back, and `backlog` events take at least `⌈backlog / window⌉ - 1` such round trips. A
/// window at least as large as the backlog adds one round trip to the old bound; a stalled
/// feed still misses the bound, which stays finite.
pub fn catch_up_bound_ns(within_ns: u64, backlog: u64, window: u64, round_trip_max_ns: u64) -> u64 {
    let round_trips = backlog.div_ceil(window.max(1));
    within_ns.saturating_add(round_trips.saturating_mul(round_trip_max_ns))
}

/// The subscriber's connection: which chain each subscription id belongs to, and the link.
struct Connection {
    chains_by_id: BTreeMap<Uuid, usize>,
    link: Link,
}

enum Link {
    /// Playing the server's connection: subscriptions on one incarnation of the node's store.
    Api {
        incarnation: u64,
        db: db::Db<SimDisk>,
        subscriptions: Subscriptions<NodeEnv, SimDisk>,
    },
    /// A RESP3 connection to the node's server.
    Resp(RespConn),
}

/// What came in for the subscriber, from either link.
enum Incoming {
    Message {
        subscription: Uuid,
        cursor: u64,
        event: SeenEvent,
    },
    Failed {
        subscription: Uuid,
        class: ErrorClass,
        reason: String,
    },
}

/// What waiting for the next delivery gave.
enum Waited {
    Nothing,
    /// One delivery (API), or every push that had arrived (RESP), in order.
    Incoming(Vec<Incoming>),
    /// The connection is gone (RESP: reset, closed, or a frame the protocol does not send,
    /// with the reason for the record if it was the server's fault).
    Lost(Option<String>),
}

struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Subscriber {
    /// Runs until it has caught up after `finish`, or the bound on that passed.
    pub async fn run(mut self) {
        let _alive = AliveGuard(self.alive.clone());
        let mut chains = self.plan_chains();
        let mut conn: Option<Connection> = None;
        // When finishing, the last deadline of any chain (and never before `liveness_within`).
        let mut finish_by: Option<u64> = None;
        loop {
            let now = self.now();
            if conn.as_ref().is_some_and(|c| match &c.link {
                Link::Api { incarnation, .. } => *incarnation != self.slot.incarnation(),
                Link::Resp(_) => false,
            }) {
                self.disconnect(&mut chains, &mut conn, now);
            }
            if finish_by.is_none() && self.finish.load(Ordering::SeqCst) {
                finish_by = Some(self.start_catch_up(&mut chains, now));
            }
            if conn.is_none() {
                conn = self.connect().await;
            }
            let Some(connection) = conn.as_mut() else {
                if finish_by.is_some_and(|by| now >= by) {
                    self.end_all(&mut chains, None, now, SubscriptionEnd::NodeDown);
                    return;
                }
                self.env.sleep(TICK).await;
                continue;
            };
            let mut lost = false;
            for i in 0..chains.len() {
                if chains[i].live.is_none()
                    && !chains[i].catch_up.is_some_and(|c| c.missed)
                    && now >= chains[i].retry_at_ns
                    && (now >= chains[i].start_at_ns || finish_by.is_some())
                    && !self.subscribe(&mut chains, i, connection, now).await
                {
                    lost = true;
                    break;
                }
            }
            if lost {
                let now = self.now();
                self.disconnect(&mut chains, &mut conn, now);
                continue;
            }
            if finish_by.is_some() {
                if let Some(heads) = self.caught_up(&chains, connection) {
                    for (chain, heads) in chains.iter_mut().zip(heads) {
                        let Some(heads) = heads else { continue };
                        if let Some(live) = chain.live.take() {
                            self.log.end_subscription(
                                live.record,
                                now,
                                SubscriptionEnd::CaughtUp { heads },
                            );
                        }
                    }
                    return;
                }
                self.end_missed(&mut chains, connection, now);
                if chains.iter().all(|c| c.catch_up.is_some_and(|c| c.missed)) {
                    return;
                }
            }
            if !self
                .ack_due(&mut chains, connection, now, finish_by.is_some())
                .await
            {
                let now = self.now();
                self.disconnect(&mut chains, &mut conn, now);
                continue;
            }
            let now = match connection.link {
                Link::Api { .. } => now,
                // Acknowledging took a round trip.
                Link::Resp(_) => self.now(),
            };
            let next_ack = chains
                .iter()
                .filter_map(|c| c.live.as_ref()?.ack_due_ns)
                .min()
                .map_or(TICK.as_nanos() as u64, |due| due.saturating_sub(now));
            let wait = Duration::from_nanos(next_ack.clamp(1, TICK.as_nanos() as u64));
            match self.wait(connection, wait).await {
                Waited::Nothing => {}
                Waited::Incoming(incoming) => {
                    for one in incoming {
                        self.receive(&mut chains, connection, one);
                    }
                }
                Waited::Lost(fault) => {
                    let now = self.now();
                    if let Some(reason) = fault {
                        let failed = SubscriptionEnd::Failed {
                            class: ErrorClass::Other,
                            reason,
                        };
                        self.end_all(&mut chains, None, now, failed);
                    }
                    self.disconnect(&mut chains, &mut conn, now);
                }
            }
        }
    }

    /// Waits up to `wait` for the next delivery or subscription error.
    async fn wait(&self, connection: &mut Connection, wait: Duration) -> Waited {
        let env = self.env.clone();
        match &mut connection.link {
            Link::Api {
                incarnation,
                subscriptions,
                ..
            } => {
                let Some(delivery) = timeout(&env, wait, subscriptions.next_delivery()).await
                else {
                    return Waited::Nothing;
                };
                // A delivery still queued from before a crash belongs to a connection that no
                // longer exists: a real client would never read it.
                if *incarnation != self.slot.incarnation() {
                    return Waited::Nothing;
                }
                match subscriptions.accept(delivery) {
                    Some(Received::Message {
                        subscription,
                        cursor,
                        event,
                    }) => Waited::Incoming(vec![Incoming::Message {
                        subscription,
                        cursor,
                        event: seen(&event),
                    }]),
                    Some(Received::Failed {
                        subscription,
                        error,
                        ..
                    }) => Waited::Incoming(vec![Incoming::Failed {
                        subscription,
                        class: ErrorClass::of(&error),
                        reason: error.to_string(),
                    }]),
                    None => Waited::Nothing,
                }
            }
            Link::Resp(conn) => {
                let lost = |err: std::io::Error| {
                    if err.kind() == std::io::ErrorKind::InvalidData {
                        Waited::Lost(Some(err.to_string()))
                    } else {
                        Waited::Lost(None)
                    }
                };
                let first = match timeout(&env, wait, conn.next_push()).await {
                    None => return Waited::Nothing,
                    Some(Err(err)) => return lost(err),
                    Some(Ok(frame)) => frame,
                };
                // Everything else that has arrived too, so one acknowledgement covers it.
                let mut incoming = Vec::new();
                let mut frame = Some(first);
                while let Some(push) = frame.take() {
                    match reply::push(push.root()) {
                        Ok(Pushed::Message {
                            subscription,
                            cursor,
                            event,
                        }) => incoming.push(Incoming::Message {
                            subscription,
                            cursor,
                            event,
                        }),
                        Ok(Pushed::Failed {
                            subscription,
                            class,
                            reason,
                        }) => incoming.push(Incoming::Failed {
                            subscription,
                            class,
                            reason,
                        }),
                        Ok(Pushed::Count) => {}
                        Err(reason) => return Waited::Lost(Some(reason)),
                    }
                    match conn.try_next_push() {
                        Ok(next) => frame = next,
                        Err(err) => return lost(err),
                    }
                }
                Waited::Incoming(incoming)
            }
        }
    }

    fn now(&self) -> u64 {
        self.env.now().0
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            uniform(&mut self.rng, 0, n - 1)
        }
    }

    /// Draws the subscriptions: what each reads, from where, with which window, and when it
    /// is made.
    fn plan_chains(&mut self) -> Vec<Chain> {
        let sub = self.plan.subscribers.clone();
        let count = uniform(&mut self.rng, sub.subscriptions.0, sub.subscriptions.1);
        let mut chains = Vec::new();
        for _ in 0..count {
            let draw = self.rng.random::<f64>();
            let targets: Vec<SubTarget> = if draw < 0.5 {
                let n = 1 + self.below(3);
                let mut picked = Vec::new();
                for _ in 0..n {
                    let s = self.pick_stream();
                    if !picked.contains(&SubTarget::Stream(s)) {
                        picked.push(SubTarget::Stream(s));
                    }
                }
                picked
            } else if draw < 0.8 {
                let n = 1 + self.below(3);
                let mut picked = Vec::new();
                for _ in 0..n {
                    let p = self.below(u64::from(self.partition_count)) as u16;
                    if !picked.contains(&SubTarget::Partition(p)) {
                        picked.push(SubTarget::Partition(p));
                    }
                }
                picked
            } else {
                (0..self.partition_count)
                    .map(SubTarget::Partition)
                    .collect()
            };
            let from = targets
                .iter()
                .map(|_| match self.rng.random::<f64>() {
                    d if d < 0.5 => SubFrom::At(0),
                    d if d < 0.85 => SubFrom::Latest,
                    _ => SubFrom::At(self.below(6)),
                })
                .collect();
            let window = uniform(&mut self.rng, sub.window.0, sub.window.1).max(1);
            let start_at_ns = self.below(self.duration_ns / 2);
            chains.push(Chain {
                resume: vec![None; targets.len()],
                targets,
                from,
                window,
                start_at_ns,
                live: None,
                retry_at_ns: 0,
                subscribed_once: false,
                catch_up: None,
            });
        }
        chains
    }

    fn pick_stream(&mut self) -> StreamRef {
        let (hot, fraction, all) = (
            self.plan.hot_streams.min(self.plan.streams),
            self.plan.hot_fraction,
            self.plan.streams,
        );
        if hot > 0 && self.chance(fraction) {
            StreamRef(self.below(u64::from(hot)) as u32)
        } else {
            StreamRef(self.below(u64::from(all)) as u32)
        }
    }

    /// A connection to the node's current store, if it is up; over RESP, a greeted
    /// connection to its server, if one can be made.
    async fn connect(&self) -> Option<Connection> {
        let link = match &self.resp {
            None => {
                let (incarnation, db) = self.slot.current()?;
                let env = NodeEnv::new(self.slot.env(), self.slot.clone());
                // The server waits on this channel at shutdown; here nobody does.
                let (tasks_alive, _) = mpsc::channel(1);
                let subscriptions = Subscriptions::new(
                    env,
                    db.store().clone(),
                    LIMITS,
                    Arc::new(AtomicUsize::new(0)),
                    tasks_alive,
                );
                Link::Api {
                    incarnation,
                    db,
                    subscriptions,
                }
            }
            Some((net, limit)) => {
                let host = Host::Subscriber(self.index).ip();
                let mut conn = RespConn::connect(net, host, node_addr(self.slot.id)).ok()?;
                timeout(&self.env, *limit, conn.hello()).await?.ok()?;
                Link::Resp(conn)
            }
        };
        Some(Connection {
            chains_by_id: BTreeMap::new(),
            link,
        })
    }

    /// The connection is gone with its node: every live subscription ends.
    fn disconnect(&self, chains: &mut [Chain], conn: &mut Option<Connection>, now: u64) {
        for chain in chains.iter_mut() {
            if let Some(live) = chain.live.take() {
                self.log
                    .end_subscription(live.record, now, SubscriptionEnd::Disconnected);
            }
        }
        *conn = None;
    }

    fn end_all(
        &self,
        chains: &mut [Chain],
        conn: Option<&mut Connection>,
        now: u64,
        end: SubscriptionEnd,
    ) {
        for chain in chains.iter_mut() {
            if let Some(live) = chain.live.take() {
                self.log.end_subscription(live.record, now, end.clone());
            }
        }
        if let Some(Connection {
            link: Link::Api { subscriptions, .. },
            ..
        }) = conn
        {
            subscriptions.clear();
        }
    }

    /// The store the heads of targets are read from: the connection's own (API), or the
    /// node's current one (RESP; `None` while it is down).
    fn store(&self, conn: &Connection) -> Option<db::Db<SimDisk>> {
        match &conn.link {
            Link::Api { db, .. } => Some(db.clone()),
            Link::Resp(_) => self.slot.db(),
        }
    }

    /// The store's last position of `target` now.
    fn head(&self, db: &db::Db<SimDisk>, target: SubTarget) -> Option<u64> {
        match target {
            SubTarget::Stream(s) => db
                .store()
                .stream_version(self.streams.key(s), self.streams.id(s))
                .map(|v: StreamVersion| v.0),
            SubTarget::Partition(p) => db.store().partition_sequence(PartitionId(p)).map(|s| s.0),
        }
    }

    /// Records a (re)subscription of chain `i` in the history: its record id and the start
    /// position of each target.
    fn log_subscribe(
        &self,
        chain: &mut Chain,
        i: usize,
        now: u64,
        recorded: Vec<SubscribedTarget>,
    ) -> (u64, Vec<u64>) {
        let resumed = chain.subscribed_once;
        chain.subscribed_once = true;
        let starts: Vec<u64> = recorded.iter().map(|t| t.start).collect();
        let record = self.log.subscribe(
            now,
            self.index,
            i as u32,
            self.slot.id,
            chain.window,
            resumed,
            recorded,
        );
        (record, starts)
    }

    /// Makes chain `i`'s subscription; false if the connection was lost on the way (RESP).
    async fn subscribe(
        &self,
        chains: &mut [Chain],
        i: usize,
        conn: &mut Connection,
        now: u64,
    ) -> bool {
        if let Link::Resp(_) = conn.link {
            return self.subscribe_resp(chains, i, conn, now).await;
        }
        let Link::Api {
            db, subscriptions, ..
        } = &mut conn.link
        else {
            unreachable!("matched above")
        };
        let chain = &mut chains[i];
        let mut requested = Vec::new();
        let mut recorded = Vec::new();
        for (t, &target) in chain.targets.iter().enumerate() {
            let (from, start) = match chain.resume[t] {
                Some(position) => (SubFrom::At(position), position),
                None => match chain.from[t] {
                    // The server resolves `LATEST` in the same synchronous call, so this reads
                    // the same head it will.
                    SubFrom::Latest => {
                        (SubFrom::Latest, self.head(db, target).map_or(0, |h| h + 1))
                    }
                    SubFrom::At(position) => (SubFrom::At(position), position),
                },
            };
            chain.resume[t] = Some(start);
            let db_target = match target {
                SubTarget::Stream(s) => Target::Stream {
                    partition_key: self.streams.key(s),
                    stream_id: self.streams.id(s).clone(),
                },
                SubTarget::Partition(p) => Target::Partition(PartitionId(p)),
            };
            let db_start = match from {
                SubFrom::Latest => Start::Latest,
                SubFrom::At(position) => Start::At(position),
            };
            requested.push((db_target, db_start));
            recorded.push(SubscribedTarget {
                target,
                from,
                start,
            });
        }
        let (record, starts) = self.log_subscribe(chain, i, now, recorded);
        match subscriptions.subscribe(requested, Some(chain.window)) {
            Ok(id) => {
                conn.chains_by_id.insert(id, i);
                let open_start = vec![None; starts.len()];
                chain.live = Some(Live::confirmed(record, id, starts, open_start));
            }
            Err(err) => {
                self.log.end_subscription(
                    record,
                    now,
                    SubscriptionEnd::Refused {
                        reason: err.to_string(),
                    },
                );
                chain.retry_at_ns = now + RETRY_AFTER_FAILURE_NS;
            }
        }
        true
    }

    /// [`Subscriber::subscribe`] over RESP: `ESUB`/`EPSUB`, then the record. A `FROM LATEST`
    /// start is the head + 1 the server read while executing the request, somewhere between the
    /// heads before the request and after the reply; when those differ (or the node is down
    /// when the reply is read) the record takes a provisional start until the first delivery
    /// shows which it was ([`Live::open_start`]). Nothing is recorded if the connection is
    /// lost before the reply: whatever the server made died with the connection, unseen.
    async fn subscribe_resp(
        &self,
        chains: &mut [Chain],
        i: usize,
        conn: &mut Connection,
        now: u64,
    ) -> bool {
        let Link::Resp(link) = &mut conn.link else {
            unreachable!("called for RESP links only")
        };
        let Some((_, limit)) = &self.resp else {
            unreachable!("a RESP link comes from a RESP subscriber")
        };
        let chain = &mut chains[i];
        // Per target, head + 1; `None` while the node is down (its heads cannot be read).
        let heads = |subscriber: &Subscriber| -> Vec<Option<u64>> {
            let db = subscriber.slot.db();
            chain
                .targets
                .iter()
                .map(|&t| {
                    let db = db.as_ref()?;
                    Some(subscriber.head(db, t).map_or(0, |h| h + 1))
                })
                .collect()
        };
        // Down before the request: any start is at least 0.
        let before: Vec<u64> = heads(self)
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let from: Vec<SubFrom> = (0..chain.targets.len())
            .map(|t| match chain.resume[t] {
                Some(position) => SubFrom::At(position),
                None => chain.from[t],
            })
            .collect();
        let request = command::subscribe(
            &chain.targets,
            &from,
            chain.window,
            &self.streams,
            self.partition_count,
        );
        let exchange = timeout(&self.env, *limit, link.call(&request))
            .await
            .unwrap_or(Exchange::TimedOut);
        let reply = match exchange {
            Exchange::Reply(reply) => reply,
            _ => return false,
        };
        let after = heads(self);
        let mut open_start = vec![None; chain.targets.len()];
        let mut recorded = Vec::new();
        for (t, &target) in chain.targets.iter().enumerate() {
            let start = match from[t] {
                SubFrom::At(position) => position,
                SubFrom::Latest if after[t] == Some(before[t]) => before[t],
                SubFrom::Latest => match after[t] {
                    Some(after) => {
                        open_start[t] = Some((before[t], after));
                        after
                    }
                    // The node went down between executing the request and the reply being
                    // read (the reply waited in the network): no later head bounds the start,
                    // so it is at least the head before, until the first delivery shows it.
                    None => {
                        open_start[t] = Some((before[t], u64::MAX));
                        before[t]
                    }
                },
            };
            chain.resume[t] = Some(start);
            recorded.push(SubscribedTarget {
                target,
                from: from[t],
                start,
            });
        }
        let (record, starts) = self.log_subscribe(chain, i, now, recorded);
        let id = reply
            .root()
            .as_str()
            .filter(|_| reply.root().kind() == net::FrameKind::SimpleString)
            .and_then(|id| Uuid::parse_str(id).ok());
        match id {
            Some(id) => {
                conn.chains_by_id.insert(id, i);
                chain.live = Some(Live::confirmed(record, id, starts, open_start));
            }
            None => {
                let now = self.now();
                self.log.end_subscription(
                    record,
                    now,
                    SubscriptionEnd::Refused {
                        reason: reply::render(reply.root()),
                    },
                );
                chain.retry_at_ns = now + RETRY_AFTER_FAILURE_NS;
            }
        }
        true
    }

    fn receive(&mut self, chains: &mut [Chain], conn: &mut Connection, incoming: Incoming) {
        let now = self.now();
        match incoming {
            Incoming::Message {
                subscription,
                cursor,
                event,
            } => {
                let Some(&i) = conn.chains_by_id.get(&subscription) else {
                    return;
                };
                let (delay, stall, stall_for) = {
                    let sub = &self.plan.subscribers;
                    (sub.ack_delay_mean_ns, sub.stall, sub.stall_for_ns)
                };
                let due = if self.chance(stall) {
                    now + jitter(&mut self.rng, stall_for)
                } else {
                    now + uniform(&mut self.rng, 0, delay.saturating_mul(2))
                };
                let chain = &mut chains[i];
                let Some(live) = chain.live.as_mut() else {
                    return;
                };
                let target = chain
                    .targets
                    .iter()
                    .position(|t| t.position_of(&event).is_some());
                let position = target
                    .and_then(|t| chain.targets[t].position_of(&event))
                    .unwrap_or(0);
                if let Some(t) = target {
                    // The first delivery of an open `FROM LATEST` start shows where it was;
                    // one outside the possible range stays a violation of the recorded start.
                    if let Some((low, high)) = live.open_start[t].take()
                        && (low..high).contains(&position)
                    {
                        self.log.resolve_start(live.record, t, position, now);
                        chain.resume[t] = Some(position);
                    }
                    live.next[t] = position + 1;
                }
                live.delivered = cursor + 1;
                live.unacked.push_back((cursor, target, position));
                live.ack_due_ns.get_or_insert(due);
                self.log.deliver(
                    live.record,
                    Delivered {
                        at_ns: now,
                        cursor,
                        target,
                        event,
                    },
                );
            }
            Incoming::Failed {
                subscription,
                class,
                reason,
            } => {
                let Some(i) = conn.chains_by_id.remove(&subscription) else {
                    return;
                };
                if let Some(live) = chains[i].live.take() {
                    self.log.end_subscription(
                        live.record,
                        now,
                        SubscriptionEnd::Failed { class, reason },
                    );
                }
                chains[i].retry_at_ns = now + RETRY_AFTER_FAILURE_NS;
            }
        }
    }

    /// Sends the acknowledgements that are due (all of them while finishing); false if the
    /// connection was lost on the way (RESP).
    async fn ack_due(
        &self,
        chains: &mut [Chain],
        conn: &mut Connection,
        now: u64,
        finishing: bool,
    ) -> bool {
        for chain in chains.iter_mut() {
            let Some(live) = chain.live.as_mut() else {
                continue;
            };
            let due = live.ack_due_ns.is_some_and(|due| due <= now)
                || (finishing && !live.unacked.is_empty());
            if !due || live.delivered == 0 {
                continue;
            }
            let cursor = live.delivered - 1;
            let accepted = match &mut conn.link {
                Link::Api { subscriptions, .. } => subscriptions.ack(live.id, cursor).is_ok(),
                Link::Resp(link) => {
                    let Some((_, limit)) = &self.resp else {
                        unreachable!("a RESP link comes from a RESP subscriber")
                    };
                    let exchange =
                        timeout(&self.env, *limit, link.call(&command::ack(live.id, cursor)))
                            .await
                            .unwrap_or(Exchange::TimedOut);
                    match exchange.into_tree() {
                        Exchange::Reply(net::Frame::SimpleString(ok)) if &ok[..] == b"OK" => true,
                        // The subscription already stopped on the server (its error push is on
                        // the way): nothing was acknowledged, nothing to record.
                        Exchange::Reply(net::Frame::SimpleError(e))
                            if e.starts_with(b"NOTFOUND") =>
                        {
                            live.ack_due_ns = None;
                            continue;
                        }
                        Exchange::Reply(_) => false,
                        // Whether the server took it is unknown, and the connection (with the
                        // subscription) is gone: not recorded, so the resumption starts from
                        // the last acknowledgement known to be taken.
                        _ => return false,
                    }
                }
            };
            self.log.ack(
                live.record,
                Acked {
                    at_ns: now,
                    cursor,
                    after_deliveries: live.delivered,
                    accepted,
                },
            );
            while let Some(&(c, target, position)) = live.unacked.front() {
                if c > cursor {
                    break;
                }
                live.unacked.pop_front();
                if let Some(t) = target {
                    chain.resume[t] = Some(position + 1);
                }
            }
            live.ack_due_ns = None;
        }
        true
    }

    /// The heads of every target, per chain (`None` for a chain that missed its deadline), if
    /// every other chain is subscribed and has been delivered everything the store holds.
    fn caught_up(
        &self,
        chains: &[Chain],
        conn: &Connection,
    ) -> Option<Vec<Option<Vec<Option<u64>>>>> {
        let mut all = Vec::new();
        for chain in chains {
            if chain.catch_up.is_some_and(|c| c.missed) {
                all.push(None);
                continue;
            }
            all.push(Some(self.chain_caught_up(chain, conn)?));
        }
        Some(all)
    }

    /// The heads of `chain`'s targets, if it is subscribed and has been delivered everything
    /// the store holds.
    fn chain_caught_up(&self, chain: &Chain, conn: &Connection) -> Option<Vec<Option<u64>>> {
        let live = chain.live.as_ref()?;
        let db = self.store(conn)?;
        let mut heads = Vec::new();
        for (t, &target) in chain.targets.iter().enumerate() {
            let head = self.head(&db, target);
            if head.is_some_and(|h| live.next[t] <= h) {
                return None;
            }
            heads.push(head);
        }
        Some(heads)
    }

    /// `finish` was just seen: gives each chain its deadline ([`catch_up_bound_ns`] of its
    /// backlog now), tells the world the latest, and returns it (at least `liveness_within`
    /// from now, also without chains).
    ///
    /// A chain's backlog is, summed over its targets, the positions from the next one the
    /// chain will be delivered up to the store's last position now: the events the node
    /// holds (appends acknowledged, and appends whose reply was lost, which the chain must be
    /// delivered too) that the chain still lacks. The next position is the live
    /// subscription's (after its last delivery), else where the chain resumes (its last
    /// acknowledged position + 1: deliveries not acknowledged come again), else its start
    /// (`FROM LATEST`: nothing owed yet); an open RESP `FROM LATEST` start counts from the later
    /// head it may have read. With the node down the heads are unknown and the backlog counts
    /// 0, so the bound is `liveness_within`.
    fn start_catch_up(&self, chains: &mut [Chain], now: u64) -> u64 {
        let db = self.slot.db();
        let mut last = now.saturating_add(self.within_ns);
        for chain in chains.iter_mut() {
            let mut backlog = 0;
            for (t, &target) in chain.targets.iter().enumerate() {
                let Some(head) = db.as_ref().and_then(|db| self.head(db, target)) else {
                    continue;
                };
                let next = match (&chain.live, chain.resume[t], chain.from[t]) {
                    (Some(live), _, _) => live.next[t],
                    (None, Some(resume), _) => resume,
                    (None, None, SubFrom::At(start)) => start,
                    (None, None, SubFrom::Latest) => head + 1,
                };
                backlog += (head + 1).saturating_sub(next);
            }
            let bound_ns = catch_up_bound_ns(
                self.within_ns,
                backlog,
                chain.window,
                self.round_trip_max_ns,
            );
            let by_ns = now.saturating_add(bound_ns);
            last = last.max(by_ns);
            chain.catch_up = Some(CatchUp {
                backlog,
                bound_ns,
                by_ns,
                missed: false,
            });
        }
        self.catch_up_until.fetch_max(last, Ordering::SeqCst);
        last
    }

    /// Records `Behind` for each chain whose deadline passed before it caught up, and stops
    /// waiting for it; the other chains go on.
    fn end_missed(&self, chains: &mut [Chain], conn: &mut Connection, now: u64) {
        for chain in chains.iter_mut() {
            let Some(catch_up) = chain.catch_up else {
                continue;
            };
            if catch_up.missed
                || now < catch_up.by_ns
                || self.chain_caught_up(chain, conn).is_some()
            {
                continue;
            }
            chain.catch_up = Some(CatchUp {
                missed: true,
                ..catch_up
            });
            let Some(live) = chain.live.take() else {
                continue;
            };
            // Its feed stays on the server, held by its window; whatever it still delivers is
            // ignored, as for a subscription that ended.
            conn.chains_by_id.remove(&live.id);
            self.log.end_subscription(
                live.record,
                now,
                SubscriptionEnd::Behind {
                    backlog: catch_up.backlog,
                    bound_ns: catch_up.bound_ns,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_bound_adds_a_round_trip_per_window_of_backlog() {
        let within = 5_000_000_000;
        let rtt = 785_000;
        // Nothing owed: the fixed bound.
        assert_eq!(catch_up_bound_ns(within, 0, 1, rtt), within);
        // A window at least as large as the backlog: one round trip more.
        assert_eq!(catch_up_bound_ns(within, 40, 64, rtt), within + rtt);
        assert_eq!(catch_up_bound_ns(within, 64, 64, rtt), within + rtt);
        // Every window's worth, rounded up, costs one.
        assert_eq!(catch_up_bound_ns(within, 65, 64, rtt), within + 2 * rtt);
        // Window 1: one round trip per event (seed 39's chain at `--stretch 2`).
        assert_eq!(
            catch_up_bound_ns(within, 8_700, 1, rtt),
            within + 8_700 * rtt
        );
        // No network and no acknowledgement delay: the fixed bound whatever the backlog.
        assert_eq!(catch_up_bound_ns(within, 8_700, 1, 0), within);
        // A window of 0 is treated as 1; nothing overflows.
        assert_eq!(catch_up_bound_ns(within, 3, 0, rtt), within + 3 * rtt);
        assert_eq!(catch_up_bound_ns(within, u64::MAX, 1, rtt), u64::MAX);
    }
}
