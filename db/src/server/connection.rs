//! One client connection: read requests, execute them in order, batch the replies, and
//! interleave the pushes of the connection's subscriptions.
//!
//! Each round of the loop:
//!
//! 1. executes every complete request in the read buffer, in order, encoding each reply into
//!    the write buffer (flushed early only if it grows past [`WRITE_FLUSH_BYTES`]);
//! 2. takes up to [`DELIVERIES_PER_ROUND`] queued subscription deliveries (fewer once the write
//!    buffer holds [`WRITE_FLUSH_BYTES`]), so a busy pipeline cannot starve pushes and a busy
//!    subscription cannot starve requests;
//! 3. writes everything in one go;
//! 4. waits for the first of: shutdown, more request bytes, a delivery.
//!
//! # A client that does not read
//!
//! Every write waits until the client has taken the bytes, and while it waits the connection
//! neither reads requests nor takes deliveries. So a client that stops reading costs at most
//! one write buffer ([`WRITE_FLUSH_BYTES`] plus the reply or push that crossed it), one read
//! buffer (a request in progress), and its subscriptions' queue ([`DELIVERY_QUEUE`]) and scan
//! batches ([`SCAN_BATCH`] each); the feeds wait on the full queue and the store keeps the
//! rest. The connection is not closed for being slow: it holds its place under
//! `max_connections` until the client reads, closes, or the server shuts down.
//!
//! [`DELIVERY_QUEUE`]: super::subscription::DELIVERY_QUEUE
//! [`SCAN_BATCH`]: super::subscription::SCAN_BATCH
//!
//! A request in execution is never interrupted: shutdown is noticed between requests, after
//! which the connection writes what it owes (giving a client that does not read
//! [`SHUTDOWN_FLUSH_GRACE`]) and closes.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use disk::Disk;
use net::{Frame, Protocol, Writer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::command::{self, COMMANDS, Command, request_args};
use super::errors::{ProtocolError, ServerError};
use super::reply::{self, HelloInfo, InfoSnapshot};
use super::subscription::{Delivery, Received, SubscriptionLimits, Subscriptions};
use super::{Shared, execute, ok};
use crate::env::Env;
use crate::metrics::LagSummary;
use crate::store::group_commit::PendingAppend;

/// Flush mid-batch once this much is waiting, so a long pipeline of large replies does not
/// buffer without bound.
const WRITE_FLUSH_BYTES: usize = 1 << 20;
/// Appends one connection may have in flight before it waits for their replies.
const MAX_PENDING_APPENDS: usize = 1024;
/// Buffers that grew beyond this for one large request or reply are replaced once empty.
const RETAIN_BUFFER_BYTES: usize = 1 << 20;
/// Subscription deliveries written per round of the loop.
const DELIVERIES_PER_ROUND: usize = 64;
/// Free space kept in the read buffer before each read.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// How long a connection may take to accept its last replies once the server shuts down.
const SHUTDOWN_FLUSH_GRACE: Duration = Duration::from_secs(1);

/// What to do after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

pub(super) struct Connection<C, E: Env, D: Disk> {
    stream: C,
    shared: Arc<Shared<E, D>>,
    id: u64,
    protocol: Protocol,
    name: Option<Bytes>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    subscriptions: Subscriptions<E, D>,
    /// Appends submitted to the store whose replies are not written yet, in request order.
    pending: VecDeque<(execute::AppendKind, PendingAppend, crate::env::Instant)>,
    stop: watch::Receiver<bool>,
    /// Keeps `serve` waiting until this connection has ended.
    _alive: mpsc::Sender<()>,
}

impl<C, E, D> Connection<C, E, D>
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: Env,
    D: Disk,
{
    pub(super) fn new(
        stream: C,
        shared: Arc<Shared<E, D>>,
        id: u64,
        stop: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
    ) -> Self {
        let limits = SubscriptionLimits {
            max_per_connection: shared.config.max_subscriptions_per_connection,
            default_window: shared.config.default_window,
            max_window: shared.config.max_window,
        };
        let subscriptions = Subscriptions::new(
            shared.env.clone(),
            shared.db.store().clone(),
            limits,
            shared.subscriptions.clone(),
            alive.clone(),
        )
        .reporting_lag_to(shared.db.metrics().live_subscriptions.clone());
        Connection {
            stream,
            shared,
            id,
            protocol: Protocol::Resp2,
            name: None,
            read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            write_buf: BytesMut::new(),
            subscriptions,
            pending: VecDeque::new(),
            stop,
            _alive: alive,
        }
    }

    pub(super) async fn run(mut self) {
        match self.serve().await {
            Ok(()) => tracing::debug!(connection = self.id, "closed"),
            Err(error) => tracing::debug!(connection = self.id, %error, "closed on I/O error"),
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn serve(&mut self) -> io::Result<()> {
        loop {
            // 1. Every complete request, in order.
            loop {
                if self.stopping() {
                    self.finish_appends().await;
                    return self.flush().await;
                }
                if self.pending.len() >= MAX_PENDING_APPENDS {
                    self.finish_appends().await;
                }
                let frame = match net::decode(&mut self.read_buf, &self.shared.config.limits) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => {
                        let error = ServerError::from(ProtocolError::from(error));
                        tracing::debug!(connection = self.id, %error, "protocol error");
                        self.finish_appends().await;
                        self.write(&error.to_frame());
                        return self.flush().await;
                    }
                };
                if self.handle_request(frame).await == Flow::Close {
                    self.finish_appends().await;
                    return self.flush().await;
                }
                if self.write_buf.len() >= WRITE_FLUSH_BYTES {
                    self.flush().await?;
                }
            }
            self.finish_appends().await;
            // 2. Pushes already queued, while the write buffer has room.
            for _ in 0..DELIVERIES_PER_ROUND {
                if self.write_buf.len() >= WRITE_FLUSH_BYTES {
                    break;
                }
                let Some(delivery) = self.subscriptions.try_next_delivery() else {
                    break;
                };
                self.deliver(delivery);
            }
            // 3. One write for the round.
            self.flush().await?;
            // 4. Wait for work. A buffer that grew for one large request is let go rather than
            // kept for the life of the connection.
            if self.read_buf.is_empty() && self.read_buf.capacity() > RETAIN_BUFFER_BYTES {
                self.read_buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
            }
            if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK_BYTES {
                self.read_buf.reserve(READ_CHUNK_BYTES);
            }
            tokio::select! {
                biased;
                () = stopped(&mut self.stop) => {}
                read = self.stream.read_buf(&mut self.read_buf) => {
                    if read? == 0 {
                        // The client closed its side; a partial request left in the buffer
                        // can never complete.
                        return Ok(());
                    }
                }
                delivery = self.subscriptions.next_delivery() => self.deliver(delivery),
            }
        }
    }

    /// Writes the whole write buffer. While the server runs this waits as long as the client
    /// needs; once it is shutting down the client gets [`SHUTDOWN_FLUSH_GRACE`].
    async fn flush(&mut self) -> io::Result<()> {
        // A large batch leaves a large allocation behind; it is dropped once written.
        let large = self.write_buf.len() > RETAIN_BUFFER_BYTES;
        while !self.write_buf.is_empty() {
            if self.stopping() {
                return self.flush_with_grace().await;
            }
            tokio::select! {
                biased;
                // `write_buf` writes nothing when another branch wins, so the loop can resume.
                written = self.stream.write_buf(&mut self.write_buf) => {
                    if written? == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                }
                () = stopped(&mut self.stop) => {}
            }
        }
        if large {
            self.write_buf = BytesMut::new();
        }
        self.stream.flush().await
    }

    async fn flush_with_grace(&mut self) -> io::Result<()> {
        let shared = self.shared.clone();
        let mut grace = std::pin::pin!(shared.env.sleep(SHUTDOWN_FLUSH_GRACE));
        while !self.write_buf.is_empty() {
            tokio::select! {
                biased;
                written = self.stream.write_buf(&mut self.write_buf) => {
                    if written? == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                }
                () = &mut grace => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client did not read its replies before shutdown",
                    ));
                }
            }
        }
        self.stream.flush().await
    }

    fn write(&mut self, frame: &Frame) {
        net::encode(frame, self.protocol, &mut self.write_buf);
    }

    fn writer(&mut self) -> Writer<'_> {
        Writer::new(&mut self.write_buf, self.protocol)
    }

    /// Writes a reply that may be written in place.
    fn answer(&mut self, reply: &execute::Reply) -> Flow {
        reply.write(&mut self.writer());
        Flow::Continue
    }

    fn write_error(&mut self, error: &ServerError) {
        self.write(&error.to_frame());
    }

    /// Executes one request and writes its reply.
    async fn handle_request(&mut self, frame: Frame) -> Flow {
        let args = match request_args(frame) {
            Ok(args) => args,
            Err(error) => {
                self.finish_appends().await;
                self.write_error(&error.into());
                return Flow::Close;
            }
        };
        // Redis ignores an empty request (`*0`, a blank inline line) without a reply.
        if args.is_empty() {
            return Flow::Continue;
        }
        let command = match command::parse(&args, &self.shared.parse) {
            Ok(command) => command,
            Err(error) => return self.answer_error(error).await,
        };
        // Appends are submitted without waiting for their fsync, so the appends a client
        // pipelines share one group commit; their replies are written in request order.
        let submitted = match command {
            Command::Append(append) => execute::prepare_append(&self.shared, append)
                .map(|txn| (execute::AppendKind::Single, txn)),
            Command::MultiAppend(append) => execute::prepare_multi_append(&self.shared, append)
                .map(|txn| (execute::AppendKind::Multi, txn)),
            other => {
                // Anything else sees the effects of every append before it.
                self.finish_appends().await;
                return match self.execute(other).await {
                    Ok(flow) => flow,
                    Err(error) => self.answer_error(error).await,
                };
            }
        };
        match submitted {
            Ok((kind, txn)) => match self.shared.db.submit(txn).await {
                Ok(pending) => {
                    self.pending
                        .push_back((kind, pending, self.shared.env.now()));
                    Flow::Continue
                }
                Err(error) => self.answer_error(error.into()).await,
            },
            Err(error) => self.answer_error(error).await,
        }
    }

    /// Writes an error reply after the replies of earlier appends.
    async fn answer_error(&mut self, error: ServerError) -> Flow {
        self.finish_appends().await;
        self.write_error(&error);
        if error.closes_connection() {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    /// Waits for every submitted append, in order, and writes its reply.
    async fn finish_appends(&mut self) {
        while let Some((kind, pending, submitted)) = self.pending.pop_front() {
            let outcome = pending.outcome().await;
            let elapsed = self.shared.env.now().saturating_duration_since(submitted);
            self.shared
                .db
                .metrics()
                .append_latency
                .observe_duration(elapsed);
            if let Err(error) = execute::write_append_reply(&mut self.writer(), kind, outcome) {
                self.write_error(&error);
            }
        }
    }

    async fn execute(&mut self, command: Command) -> Result<Flow, ServerError> {
        let shared = self.shared.clone();
        let store = shared.db.store();
        let reply = match command {
            Command::Append(_) | Command::MultiAppend(_) => {
                unreachable!("appends are submitted by handle_request, not executed here")
            }
            Command::Get(id) => return Ok(self.answer(&execute::get(store, id)?)),
            Command::ScanStream(scan) => {
                return Ok(self.answer(&execute::scan_stream(store, &shared.keys, &scan)?));
            }
            Command::StreamVersion {
                stream_id,
                partition_key,
            } => execute::stream_version(store, &shared.keys, &stream_id, partition_key),
            Command::ScanPartition(scan) => {
                return Ok(self.answer(&execute::scan_partition(store, &scan)?));
            }
            Command::PartitionSequence(partition) => execute::partition_sequence(store, partition),
            Command::Subscribe(subscribe) => {
                let id = self
                    .subscriptions
                    .subscribe(subscribe.targets, subscribe.window)?;
                self.write(&reply::uuid(id));
                reply::subscribe_push(id, self.subscriptions.len())
            }
            Command::Ack {
                subscription,
                cursor,
            } => {
                self.subscriptions.ack(subscription, cursor)?;
                ok()
            }
            Command::Unsubscribe { subscription } => {
                let remaining = self.subscriptions.unsubscribe(subscription)?;
                self.write(&ok());
                reply::unsubscribe_push(subscription, remaining)
            }
            Command::Hello(hello) => {
                match hello.protocol {
                    Some(2) => self.protocol = Protocol::Resp2,
                    Some(3) => self.protocol = Protocol::Resp3,
                    _ => {}
                }
                // `AUTH` is accepted and ignored: there are no users or passwords yet.
                if let Some(name) = hello.set_name {
                    self.set_name(name);
                }
                reply::hello(&HelloInfo {
                    version: &shared.config.version,
                    protocol: match self.protocol {
                        Protocol::Resp2 => 2,
                        Protocol::Resp3 => 3,
                    },
                    connection_id: self.id,
                    peer_id: &shared.config.peer_id,
                    partition_count: shared.parse.partition_count,
                })
            }
            Command::Ping(None) => Frame::simple("PONG"),
            Command::Ping(Some(message)) => Frame::bulk(message),
            Command::Info(sections) => {
                // Lag reads the store once per target of every subscription: only on request.
                let lag = if reply::info_includes(&sections, "subscriptions") {
                    shared.db.metrics().live_subscriptions.summary()
                } else {
                    LagSummary::default()
                };
                reply::info(&self.info_snapshot(lag), &sections)
            }
            Command::ClientSetName(name) => {
                self.set_name(name);
                ok()
            }
            Command::ClientGetName => self.name.clone().map_or(Frame::Null, Frame::bulk),
            Command::ClientId => reply::int(self.id),
            Command::ClientSetInfo => ok(),
            Command::CommandList => reply::command_list(),
            Command::CommandCount => reply::int(COMMANDS.len() as u64),
            Command::CommandDocs => Frame::map(Vec::new()),
            Command::Quit => {
                self.write(&ok());
                return Ok(Flow::Close);
            }
            Command::Reset => {
                self.subscriptions.clear();
                self.protocol = Protocol::Resp2;
                self.name = None;
                Frame::simple("RESET")
            }
        };
        self.write(&reply);
        Ok(Flow::Continue)
    }

    /// Sets the client name; an empty name clears it, as in Redis.
    fn set_name(&mut self, name: Bytes) {
        self.name = (!name.is_empty()).then_some(name);
    }

    /// Writes what a delivery asks for.
    fn deliver(&mut self, delivery: Delivery) {
        match self.subscriptions.accept(delivery) {
            None => {}
            Some(Received::Message {
                subscription,
                cursor,
                event,
            }) => {
                self.shared
                    .db
                    .metrics()
                    .deliveries
                    .fetch_add(1, Ordering::Relaxed);
                reply::message_push(&mut self.writer(), subscription, cursor, &event);
            }
            Some(Received::Failed {
                subscription,
                error,
                remaining,
            }) => {
                let text = ServerError::Read(error).reply().to_string();
                self.write(&reply::error_push(subscription, &text));
                self.write(&reply::unsubscribe_push(subscription, remaining));
            }
        }
    }

    fn info_snapshot(&self, lag: LagSummary) -> InfoSnapshot {
        let shared = &self.shared;
        let store = shared.db.store();
        let stats = store.stats();
        let segments = store
            .buckets()
            .iter()
            .map(|bucket| {
                let view = bucket.view.read().expect("bucket view lock poisoned");
                view.sealed.len() + 1
            })
            .sum();
        InfoSnapshot {
            version: shared.config.version.clone(),
            peer_id: shared.config.peer_id.clone(),
            tcp_port: shared.local_port,
            uptime_seconds: shared
                .env
                .now()
                .saturating_duration_since(shared.started)
                .as_secs(),
            connected_clients: shared.connections.load(Ordering::Relaxed),
            max_clients: shared.config.max_connections,
            partitions: store.config().partition_count,
            buckets: store.config().bucket_count,
            segments,
            appended_events: stats.events,
            appended_transactions: stats.transactions,
            syncs: stats.syncs,
            appended_bytes: stats.bytes,
            connection_subscriptions: self.subscriptions.len(),
            total_subscriptions: shared.subscriptions.load(Ordering::Relaxed),
            max_subscriptions_per_connection: shared.config.max_subscriptions_per_connection,
            default_window: shared.config.default_window,
            max_window: shared.config.max_window,
            lag,
        }
    }
}

/// Resolves once the server is stopping (or has gone away).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&stopping| stopping).await;
}
