//! Subscriptions (`ESUB`, `EPSUB`): history, then live events, with a window of unacknowledged
//! deliveries.
//!
//! # Design: one reader, always the store
//!
//! Each subscription runs as one task, its *feed*. The feed keeps, per target (a stream or a
//! partition), the next position it has not delivered, and it only ever learns of events by
//! scanning the store from those positions. There is no separate live channel, so there is
//! no hand-over from "history" to "live" that could drop, repeat or reorder an event: live
//! events are simply history that was not there at the previous scan. When a full pass over
//! the targets finds nothing new, the feed is caught up; it waits until a bucket it reads
//! publishes new events (`BucketShared::subscribe_published`) and scans again. The receivers
//! are marked seen *before* each pass, so an event published after a scan missed it always
//! wakes the wait (see `Feed::wait_for_publish`). No gap, no duplicate, no reorder, by
//! construction. Feeds of one bucket wait through one shared registration (`PublishRelay`)
//! that wakes them in the order they began to wait, so a simulated run replays bit for bit.
//!
//! Several targets are read in the order given, round-robin: each pass reads at most
//! [`SCAN_BATCH`] events of each target in turn, so a target with a long history cannot hold
//! the others back and the interleaving is deterministic.
//!
//! # Window and acknowledgements
//!
//! Deliveries of a subscription are numbered by a *cursor* from 0 (SierraDB's rule,
//! `research/sierradb.md` §1.5): delivery `c` is sent only when `c < window` if nothing was
//! acknowledged, or `c <= last_ack + window` after `EACK <id> <last_ack>`. Acks are monotonic:
//! acknowledging a cursor at or below the last ack changes nothing, and acknowledging one that
//! was not delivered yet is refused. A feed waiting on its window holds back only itself.
//!
//! # Memory
//!
//! A feed holds at most one scan batch and sends through its connection's bounded queue
//! ([`DELIVERY_QUEUE`]); when the client reads slowly the queue fills and the feeds of that
//! connection wait, while other connections keep flowing.
//!
//! # Lag
//!
//! Each subscription reports its lag to the server's metrics ([`crate::metrics::LagProbe`]):
//! the events stored in its targets from its start positions (read from the store when the
//! metrics are rendered), minus those handed to the connection (`undelivered`) and those
//! acknowledged (`unacked` is the rest). The feed is not asked: every event from the start is
//! delivered exactly once, so the connection's delivery and ack counts are enough.
//!
//! # Lifetime
//!
//! Subscriptions live as long as their connection (or until `EUNSUB`/`RESET`): nothing is
//! persisted server-side. Dropping a [`SubscriptionHandle`] closes its ack channel, which
//! stops the feed at its next wait.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;

use disk::Disk;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::errors::ServerError;
use crate::env::Env;
use crate::error::StoreError;
use crate::metrics::{LagProbe, LagRegistration, LiveSubscriptions, SubscriptionLag};
use crate::model::{
    BucketId, Event, PartitionId, PartitionKey, PartitionSeq, StreamId, StreamVersion,
};
use crate::store::{Scan, Store};

/// Most events a feed reads from one target in one pass (and so holds in memory at once).
pub const SCAN_BATCH: usize = 32;
/// Deliveries queued between a connection's feeds and the connection, which writes them.
pub const DELIVERY_QUEUE: usize = 64;

/// What a subscription reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One stream, by partition key and id; positions are stream versions.
    Stream {
        partition_key: PartitionKey,
        stream_id: StreamId,
    },
    /// One partition; positions are partition sequences.
    Partition(PartitionId),
}

impl Target {
    /// The position of `event` on this target: its version or its sequence.
    fn position_of(&self, event: &Event) -> u64 {
        match self {
            Target::Stream { .. } => event.stream_version.0,
            Target::Partition(_) => event.partition_sequence.0,
        }
    }
}

/// Where a target starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// After the last event stored when the subscription is created: live events only.
    Latest,
    /// At this version or sequence (inclusive); history first.
    At(u64),
}

/// Limits on the subscriptions of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionLimits {
    pub max_per_connection: usize,
    pub default_window: u32,
    pub max_window: u32,
}

/// One message from a feed to its connection.
#[derive(Debug)]
pub struct Delivery {
    pub subscription: Uuid,
    pub item: DeliveryItem,
}

#[derive(Debug)]
pub enum DeliveryItem {
    Event {
        cursor: u64,
        event: Event,
    },
    /// The feed could not read the store and stopped.
    Failed(StoreError),
}

/// What the connection should tell its client about a [`Delivery`].
#[derive(Debug)]
pub enum Received {
    Message {
        subscription: Uuid,
        cursor: u64,
        event: Event,
    },
    /// The subscription ended on a read error; `remaining` subscriptions are left.
    Failed {
        subscription: Uuid,
        error: StoreError,
        remaining: usize,
    },
}

/// What the client has been sent and has acknowledged of one subscription. Only the
/// connection writes it; the lag metrics read it from other threads.
#[derive(Debug, Default)]
struct Progress {
    /// Deliveries handed to the connection so far (the next cursor it will see).
    delivered: AtomicU64,
    /// Deliveries acknowledged: the last acknowledged cursor + 1, or 0.
    acked: AtomicU64,
}

impl Progress {
    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }
}

/// The connection's side of one subscription: the ack channel to its feed and what the client
/// has been sent.
#[derive(Debug)]
pub struct SubscriptionHandle {
    acks: watch::Sender<Option<u64>>,
    progress: Arc<Progress>,
    _counted: Counted,
    /// Present when the server's metrics report lag (not in the simulator's subscribers).
    _lag: Option<LagRegistration>,
}

impl SubscriptionHandle {
    /// Acknowledges every delivery up to and including `cursor`.
    fn ack(&mut self, cursor: u64) -> Result<(), ServerError> {
        let delivered = self.progress.delivered();
        if cursor >= delivered {
            return Err(ServerError::AckBeyondDelivered { cursor, delivered });
        }
        if cursor < self.progress.acked() {
            return Ok(());
        }
        self.progress.acked.store(cursor + 1, Ordering::Release);
        self.acks.send_replace(Some(cursor));
        Ok(())
    }
}

/// One subscription's lag, as the metrics read it.
struct Lag<D: Disk> {
    store: Store<D>,
    /// Every target and its start position.
    starts: Vec<(Target, u64)>,
    progress: Arc<Progress>,
}

impl<D: Disk> LagProbe for Lag<D> {
    fn lag(&self) -> SubscriptionLag {
        // The counts first: an event counted as delivered was stored before it was read, so the
        // ends read after them include it and the differences cannot underflow (saturating
        // anyway, since a delivery and an ack may land between the two loads).
        let delivered = self.progress.delivered();
        let acked = self.progress.acked().min(delivered);
        let stored: u64 = self
            .starts
            .iter()
            .map(|(target, start)| next_position(&self.store, target).saturating_sub(*start))
            .sum();
        SubscriptionLag {
            undelivered: stored.saturating_sub(delivered),
            unacked: delivered - acked,
        }
    }
}

/// Counts a live subscription in the server-wide total while it exists.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(total: &Arc<AtomicUsize>) -> Self {
        total.fetch_add(1, Ordering::Relaxed);
        Counted(total.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The subscriptions of one connection: their handles, and the queue their feeds deliver into.
pub struct Subscriptions<E: Env, D: Disk> {
    env: E,
    store: Store<D>,
    limits: SubscriptionLimits,
    handles: BTreeMap<Uuid, SubscriptionHandle>,
    deliveries_tx: mpsc::Sender<Delivery>,
    deliveries_rx: mpsc::Receiver<Delivery>,
    /// Live subscriptions on the whole server.
    total: Arc<AtomicUsize>,
    /// Held by every feed; the server waits for all clones to drop before `serve` returns.
    tasks_alive: mpsc::Sender<()>,
    /// Where subscriptions report their lag, if anywhere.
    lag: Option<Arc<LiveSubscriptions>>,
}

impl<E: Env, D: Disk> Subscriptions<E, D> {
    pub fn new(
        env: E,
        store: Store<D>,
        limits: SubscriptionLimits,
        total: Arc<AtomicUsize>,
        tasks_alive: mpsc::Sender<()>,
    ) -> Self {
        let (deliveries_tx, deliveries_rx) = mpsc::channel(DELIVERY_QUEUE);
        Subscriptions {
            env,
            store,
            limits,
            handles: BTreeMap::new(),
            deliveries_tx,
            deliveries_rx,
            total,
            tasks_alive,
            lag: None,
        }
    }

    /// Reports the lag of every subscription started from now on to `live` (the server's
    /// metrics).
    pub fn reporting_lag_to(mut self, live: Arc<LiveSubscriptions>) -> Self {
        self.lag = Some(live);
        self
    }

    /// Subscriptions on this connection.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Starts a subscription and returns its id. `Start::Latest` is resolved here, before the
    /// reply, so every event appended after the client sees the reply is delivered and no
    /// event stored before it is.
    pub fn subscribe(
        &mut self,
        targets: Vec<(Target, Start)>,
        window: Option<u64>,
    ) -> Result<Uuid, ServerError> {
        if self.handles.len() >= self.limits.max_per_connection {
            return Err(ServerError::TooManySubscriptions {
                max: self.limits.max_per_connection,
            });
        }
        let window = window.unwrap_or(u64::from(self.limits.default_window));
        if window > u64::from(self.limits.max_window) {
            return Err(ServerError::WindowTooLarge {
                window,
                max: self.limits.max_window,
            });
        }
        let mut published = BTreeMap::<BucketId, PublishWatch>::new();
        let positions: Vec<Position> = targets
            .into_iter()
            .map(|(target, start)| {
                let partition = match &target {
                    Target::Stream { partition_key, .. } => self.store.partition_of(*partition_key),
                    Target::Partition(partition) => *partition,
                };
                let bucket = self.store.bucket_of(partition);
                published
                    .entry(bucket.id)
                    .or_insert_with(|| PublishWatch::new(bucket.subscribe_published()));
                let next = match start {
                    Start::At(position) => position,
                    Start::Latest => next_position(&self.store, &target),
                };
                Position { target, next }
            })
            .collect();
        let progress = Arc::new(Progress::default());
        let lag = self.lag.as_ref().map(|live| {
            live.register(Arc::new(Lag {
                store: self.store.clone(),
                starts: positions
                    .iter()
                    .map(|p| (p.target.clone(), p.next))
                    .collect(),
                progress: progress.clone(),
            }))
        });
        let id = self.env.new_uuid();
        let (acks_tx, acks_rx) = watch::channel(None);
        let feed = Feed {
            id,
            store: self.store.clone(),
            positions,
            window,
            cursor: 0,
            acks: acks_rx,
            deliveries: self.deliveries_tx.clone(),
            published: published.into_values().collect(),
            _alive: self.tasks_alive.clone(),
        };
        self.env.spawn("subscription", Box::pin(feed.run()));
        self.handles.insert(
            id,
            SubscriptionHandle {
                acks: acks_tx,
                progress,
                _counted: Counted::new(&self.total),
                _lag: lag,
            },
        );
        Ok(id)
    }

    /// `EACK <id> <cursor>`.
    pub fn ack(&mut self, id: Uuid, cursor: u64) -> Result<(), ServerError> {
        self.handles
            .get_mut(&id)
            .ok_or(ServerError::SubscriptionNotFound)?
            .ack(cursor)
    }

    /// `EUNSUB <id>`: stops the subscription and returns how many remain.
    pub fn unsubscribe(&mut self, id: Uuid) -> Result<usize, ServerError> {
        self.handles
            .remove(&id)
            .ok_or(ServerError::SubscriptionNotFound)?;
        Ok(self.handles.len())
    }

    /// Stops every subscription of the connection (`RESET`).
    pub fn clear(&mut self) {
        self.handles.clear();
    }

    /// Waits for the next delivery of any feed of this connection.
    pub async fn next_delivery(&mut self) -> Delivery {
        self.deliveries_rx
            .recv()
            .await
            .expect("the connection holds a sender, so the queue never closes")
    }

    /// The next delivery if one is queued.
    pub fn try_next_delivery(&mut self) -> Option<Delivery> {
        self.deliveries_rx.try_recv().ok()
    }

    /// Records a delivery as sent to the client and says what to send; `None` for a delivery
    /// of a subscription that has since been stopped.
    pub fn accept(&mut self, delivery: Delivery) -> Option<Received> {
        let handle = self.handles.get_mut(&delivery.subscription)?;
        match delivery.item {
            DeliveryItem::Event { cursor, event } => {
                debug_assert_eq!(
                    cursor,
                    handle.progress.delivered(),
                    "feeds deliver cursors in order"
                );
                handle
                    .progress
                    .delivered
                    .store(cursor + 1, Ordering::Release);
                Some(Received::Message {
                    subscription: delivery.subscription,
                    cursor,
                    event,
                })
            }
            DeliveryItem::Failed(error) => {
                self.handles.remove(&delivery.subscription);
                Some(Received::Failed {
                    subscription: delivery.subscription,
                    error,
                    remaining: self.handles.len(),
                })
            }
        }
    }
}

/// The position after the last event of `target` stored now: where `FROM LATEST` starts.
fn next_position<D: Disk>(store: &Store<D>, target: &Target) -> u64 {
    match target {
        Target::Stream {
            partition_key,
            stream_id,
        } => store
            .stream_version(*partition_key, stream_id)
            .map_or(0, |v| v.0 + 1),
        Target::Partition(partition) => store.partition_sequence(*partition).map_or(0, |s| s.0 + 1),
    }
}

/// A target and the next position of it to deliver.
struct Position {
    target: Target,
    next: u64,
}

/// The subscriber is gone (unsubscribed, reset or disconnected): the feed stops.
struct Gone;

/// The task behind one subscription.
struct Feed<D: Disk> {
    id: Uuid,
    store: Store<D>,
    positions: Vec<Position>,
    window: u64,
    /// The cursor of the next delivery.
    cursor: u64,
    /// The last acknowledged cursor; closed when the subscription is dropped.
    acks: watch::Receiver<Option<u64>>,
    deliveries: mpsc::Sender<Delivery>,
    /// One per bucket the targets live in.
    published: Vec<PublishWatch>,
    _alive: mpsc::Sender<()>,
}

impl<D: Disk> Feed<D> {
    async fn run(mut self) {
        loop {
            // Everything published before this line is visible to the scans of the pass below;
            // anything published after it changes a receiver and wakes `wait_for_publish`.
            for watch in &mut self.published {
                watch.mark_unchanged();
            }
            let delivered = match self.pass().await {
                Ok(delivered) => delivered,
                Err(Gone) => return,
            };
            if delivered {
                // There may be more: scan again before waiting.
                continue;
            }
            // HAND-OVER POINT, caught up -> waiting for live events. Every target has been read
            // to its end as of the mark above, so waiting for a change since that mark misses
            // nothing; scanning again from the same positions repeats nothing.
            if self.wait_for_publish().await.is_err() {
                return;
            }
            #[cfg(feature = "planted-bugs")]
            if crate::planted::active(crate::planted::PlantedBug::SubscriptionSkipsOnHandover)
                && let Some(first) = self.positions.first_mut()
            {
                // The planted off-by-one: resuming "after the last event seen" on top of a
                // position that already points past it, so the first new event is skipped.
                first.next += 1;
            }
        }
    }

    /// One round-robin pass: up to [`SCAN_BATCH`] events of each target, within the window.
    /// Returns whether anything was delivered.
    async fn pass(&mut self) -> Result<bool, Gone> {
        let mut delivered = false;
        for i in 0..self.positions.len() {
            let allowance = self.wait_for_window().await?;
            let limit = usize::try_from(allowance)
                .unwrap_or(usize::MAX)
                .min(SCAN_BATCH);
            let scan = match self.scan(&self.positions[i], limit) {
                Ok(scan) => scan,
                Err(error) => {
                    self.fail(error).await;
                    return Err(Gone);
                }
            };
            for event in scan.events {
                let position = &mut self.positions[i];
                let at = position.target.position_of(&event);
                debug_assert_eq!(at, position.next, "store scans are gapless");
                position.next = at + 1;
                self.send(event).await?;
                delivered = true;
            }
        }
        Ok(delivered)
    }

    fn scan(&self, position: &Position, limit: usize) -> Result<Scan, StoreError> {
        match &position.target {
            Target::Stream {
                partition_key,
                stream_id,
            } => self.store.scan_stream(
                *partition_key,
                stream_id,
                StreamVersion(position.next),
                None,
                limit,
            ),
            Target::Partition(partition) => {
                self.store
                    .scan_partition(*partition, PartitionSeq(position.next), None, limit)
            }
        }
    }

    /// Waits until the window admits the next cursor; returns how many cursors it admits.
    async fn wait_for_window(&mut self) -> Result<u64, Gone> {
        loop {
            let end = match *self.acks.borrow_and_update() {
                None => self.window,
                Some(last_ack) => last_ack.saturating_add(1).saturating_add(self.window),
            };
            if self.cursor < end {
                return Ok(end - self.cursor);
            }
            self.acks.changed().await.map_err(|_| Gone)?;
        }
    }

    async fn send(&mut self, event: Event) -> Result<(), Gone> {
        let permit = reserve(&mut self.acks, &self.deliveries).await?;
        permit.send(Delivery {
            subscription: self.id,
            item: DeliveryItem::Event {
                cursor: self.cursor,
                event,
            },
        });
        self.cursor += 1;
        Ok(())
    }

    /// Tells the connection that the subscription ends on a read error.
    async fn fail(&mut self, error: StoreError) {
        tracing::warn!(subscription = %self.id, %error, "subscription stopped on a read error");
        if let Ok(permit) = reserve(&mut self.acks, &self.deliveries).await {
            permit.send(Delivery {
                subscription: self.id,
                item: DeliveryItem::Failed(error),
            });
        }
    }

    /// The hand-over point from history to live: the last pass found nothing new, so wait
    /// until a bucket of the targets publishes, then the caller scans again. Correct because
    /// the receivers were marked seen before that pass: a publish the pass could not see
    /// happened after the mark, so it has changed a receiver and this returns at once.
    /// An ack while idle also returns (harmlessly: the next pass finds nothing and waits again).
    async fn wait_for_publish(&mut self) -> Result<(), Gone> {
        let published = &self.published;
        // Polled in bucket order, so which change wins does not depend on a hasher or a scheduler.
        let any_published = std::future::poll_fn(|cx| {
            for watch in published {
                if let Poll::Ready(result) = watch.poll_changed(cx) {
                    return Poll::Ready(result);
                }
            }
            Poll::Pending
        });
        tokio::select! {
            biased;
            acked = self.acks.changed() => acked.map_err(|_| Gone),
            published = any_published => published.map_err(|Closed| Gone),
        }
    }
}

/// A feed's view of one bucket's publish counter (`BucketShared::subscribe_published`).
///
/// Why not wait on the `watch::Receiver` directly: `tokio::sync::watch` spreads the tasks
/// waiting on one channel over eight `Notify`s chosen by a thread-local random number, so
/// several feeds waiting on one bucket are woken in an order that changes from run to run. On
/// tokio that is harmless; in the simulator it changes the schedule, and a seed no longer
/// replays. So every feed of a bucket waits through one shared [`PublishRelay`], which holds the
/// channel's only waiting registration and wakes the feeds in the order they began to wait.
struct PublishWatch {
    relay: Arc<PublishRelay>,
    /// Reads the counter; never waits.
    receiver: watch::Receiver<u64>,
    /// The counter as of the last [`PublishWatch::mark_unchanged`].
    seen: u64,
}

/// The bucket's publisher is gone (its store was dropped).
#[derive(Debug)]
struct Closed;

impl PublishWatch {
    fn new(receiver: watch::Receiver<u64>) -> Self {
        let relay = PublishRelay::for_channel(&receiver);
        let seen = *receiver.borrow();
        PublishWatch {
            relay,
            receiver,
            seen,
        }
    }

    /// Everything published so far counts as seen.
    fn mark_unchanged(&mut self) {
        self.seen = *self.receiver.borrow();
    }

    /// Ready once the bucket published after the last mark (or its publisher is gone).
    fn poll_changed(&self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Closed>> {
        self.relay.poll_changed(&self.receiver, self.seen, cx)
    }
}

type Registration =
    std::pin::Pin<Box<dyn Future<Output = (bool, watch::Receiver<u64>)> + Send + 'static>>;

/// The one waiting registration on a bucket's publish channel, shared by every feed of the
/// process that reads the bucket, and the feeds waiting through it in arrival order.
struct PublishRelay {
    /// Identifies the channel (`same_channel`); never waits.
    probe: watch::Receiver<u64>,
    state: std::sync::Mutex<RelayState>,
}

struct RelayState {
    /// The receiver that waits, while no registration is armed.
    idle: Option<watch::Receiver<u64>>,
    /// `changed()` of that receiver, armed while any feed waits.
    armed: Option<Registration>,
    closed: bool,
    /// Feeds to wake at the next publish, in the order they began to wait.
    waiters: Vec<std::task::Waker>,
}

/// The relays alive in the process, found by channel. A handful per store (one per bucket it
/// has opened), so a linear search is fine; entries whose feeds are all gone are dropped on
/// the next lookup.
static RELAYS: std::sync::Mutex<Vec<std::sync::Weak<PublishRelay>>> =
    std::sync::Mutex::new(Vec::new());

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PublishRelay {
    fn for_channel(receiver: &watch::Receiver<u64>) -> Arc<PublishRelay> {
        let mut relays = lock(&RELAYS);
        relays.retain(|relay| relay.strong_count() > 0);
        if let Some(relay) = relays
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|relay| relay.probe.same_channel(receiver))
        {
            return relay;
        }
        let relay = Arc::new(PublishRelay {
            probe: receiver.clone(),
            state: std::sync::Mutex::new(RelayState {
                idle: Some(receiver.clone()),
                armed: None,
                closed: false,
                waiters: Vec::new(),
            }),
        });
        relays.push(Arc::downgrade(&relay));
        relay
    }

    fn poll_changed(
        self: &Arc<Self>,
        receiver: &watch::Receiver<u64>,
        seen: u64,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Result<(), Closed>> {
        let woken = {
            let mut state = lock(&self.state);
            if *receiver.borrow() != seen {
                return Poll::Ready(Ok(()));
            }
            if state.closed {
                return Poll::Ready(Err(Closed));
            }
            if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                state.waiters.push(cx.waker().clone());
            }
            self.drive(&mut state)
        };
        // Woken outside the lock: a waker may poll (and so lock) at once.
        for waker in woken {
            waker.wake();
        }
        if *receiver.borrow() != seen {
            Poll::Ready(Ok(()))
        } else if lock(&self.state).closed {
            Poll::Ready(Err(Closed))
        } else {
            Poll::Pending
        }
    }

    /// Polls the registration (arming it if needed) until it is pending again; returns the
    /// waiters to wake if the channel changed or closed meanwhile.
    fn drive(self: &Arc<Self>, state: &mut RelayState) -> Vec<std::task::Waker> {
        let waker = std::task::Waker::from(Arc::new(RelayWaker(Arc::downgrade(self))));
        let mut cx = std::task::Context::from_waker(&waker);
        if state.closed {
            return Vec::new();
        }
        if state.armed.is_none()
            && let Some(mut receiver) = state.idle.take()
        {
            state.armed = Some(Box::pin(async move {
                let open = receiver.changed().await.is_ok();
                (open, receiver)
            }));
        }
        let Some(armed) = state.armed.as_mut() else {
            return Vec::new();
        };
        match armed.as_mut().poll(&mut cx) {
            // Not re-armed here: the next feed to wait arms it, so an idle bucket holds none.
            Poll::Ready((open, receiver)) => {
                state.armed = None;
                state.idle = Some(receiver);
                state.closed = !open;
                std::mem::take(&mut state.waiters)
            }
            Poll::Pending => Vec::new(),
        }
    }
}

/// Wakes a relay's feeds when its registration fires.
struct RelayWaker(std::sync::Weak<PublishRelay>);

impl std::task::Wake for RelayWaker {
    fn wake(self: Arc<Self>) {
        let Some(relay) = self.0.upgrade() else {
            return;
        };
        let woken = relay.drive(&mut lock(&relay.state));
        for waker in woken {
            waker.wake();
        }
    }
}

/// Waits for room in the connection's queue, or for the subscriber to go away.
async fn reserve<'a>(
    acks: &mut watch::Receiver<Option<u64>>,
    deliveries: &'a mpsc::Sender<Delivery>,
) -> Result<mpsc::Permit<'a, Delivery>, Gone> {
    loop {
        tokio::select! {
            biased;
            // An ack changes nothing here; a closed ack channel means the subscriber is gone.
            acked = acks.changed() => acked.map_err(|_| Gone)?,
            permit = deliveries.reserve() => return permit.map_err(|_| Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(delivered: u64) -> (SubscriptionHandle, watch::Receiver<Option<u64>>) {
        let (acks, rx) = watch::channel(None);
        let total = Arc::new(AtomicUsize::new(0));
        let handle = SubscriptionHandle {
            acks,
            progress: Arc::new(Progress {
                delivered: AtomicU64::new(delivered),
                acked: AtomicU64::new(0),
            }),
            _counted: Counted::new(&total),
            _lag: None,
        };
        (handle, rx)
    }

    #[test]
    fn acks_are_monotonic_and_bounded_by_deliveries() {
        let (mut handle, rx) = handle(5);
        assert!(matches!(
            handle.ack(5),
            Err(ServerError::AckBeyondDelivered {
                cursor: 5,
                delivered: 5
            })
        ));
        handle.ack(3).unwrap();
        assert_eq!(*rx.borrow(), Some(3));
        // Lower or equal acks are accepted and change nothing.
        handle.ack(1).unwrap();
        handle.ack(3).unwrap();
        assert_eq!(*rx.borrow(), Some(3));
        handle.ack(4).unwrap();
        assert_eq!(*rx.borrow(), Some(4));
    }

    #[test]
    fn nothing_can_be_acked_before_a_delivery() {
        let (mut handle, _rx) = handle(0);
        assert!(matches!(
            handle.ack(0),
            Err(ServerError::AckBeyondDelivered { .. })
        ));
    }

    #[test]
    fn counted_tracks_live_subscriptions() {
        let total = Arc::new(AtomicUsize::new(0));
        let a = Counted::new(&total);
        let b = Counted::new(&total);
        assert_eq!(total.load(Ordering::Relaxed), 2);
        drop(a);
        assert_eq!(total.load(Ordering::Relaxed), 1);
        drop(b);
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }
}
