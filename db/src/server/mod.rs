//! # The client server: RESP3 commands over a [`Listener`]
//!
//! [`serve`] accepts client connections and runs each as one task that reads requests,
//! executes them against the store ([`Db`]) and writes replies, speaking SierraDB's command set
//! (`EAPPEND`, `ESCAN`, `ESUB`, ...) plus the Redis connection commands clients expect
//! (`HELLO`, `PING`, `INFO`, `CLIENT`, `COMMAND`, `QUIT`, `RESET`). `docs/protocol.md` is the
//! reference for clients.
//!
//! It is not the storage engine, the configuration or the process: the binary builds a
//! [`ServerConfig`], opens the [`Db`] and calls [`serve`]; `serve` reaches time, tasks and
//! randomness only through [`Env`], so the simulator runs it too.
//!
//! | module | what it holds |
//! |---|---|
//! | [`command`] | the pure parser: request frame → [`command::Command`], and the command table |
//! | [`errors`] | every client-visible error and the one table mapping it to `-CODE message` |
//! | [`reply`] | model values → reply frames (event maps in SierraDB's field order, pushes, `INFO`) |
//! | [`subscription`] | subscriptions: one feed task each, reading the store from its positions |
//! | [`id`] | SierraDB-style event ids for appends without `EVENT_ID` |
//! | `connection` | the per-connection loop: decode, execute, batch replies, interleave pushes |
//! | `execute` | the store commands: appends, reads, scans |
//!
//! # Invariants
//!
//! - Requests of a connection are executed one at a time, in order, and their replies are
//!   written in the same order. Replies are batched: the write buffer is flushed when the read
//!   buffer holds no further complete request (or grows past a bound), not after each reply.
//! - Replies follow the protocol the client chose with `HELLO` (RESP2 until `HELLO 3`).
//! - A protocol error (malformed bytes, a limit of [`net::Limits`] exceeded, a request that is
//!   not an array of strings) is answered with `-ERR Protocol error: ...` and closes that
//!   connection; nothing else does. No input stops the server or changes stored data.
//! - A subscription delivers every event of its targets from its start position exactly once,
//!   in position order (see [`subscription`]), and never more than its window ahead of the
//!   last acknowledgement.
//! - Memory per connection is bounded whatever the client does: a client that stops reading
//!   stops being read from, and its subscriptions stop being fed (see `connection`).
//! - On shutdown the server stops accepting, lets each connection finish the request it is
//!   executing (an append in flight completes and is answered), then closes every connection
//!   and stops every subscription before [`serve`] returns.

pub mod command;
mod connection;
pub mod errors;
mod execute;
pub mod id;
mod keys;
pub mod reply;
pub mod subscription;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use disk::Disk;
use net::{Frame, Listener, Protocol};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::env::{Env, Instant};
use crate::store::group_commit::Db;
use command::ParseContext;
use connection::Connection;
use errors::ServerError;

/// How the server treats clients. The binary fills it from flags and the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// SierraDB's `append.strict_versioning`: when true, `EXPECTED_VERSION any|exists` and an
    /// append without `EXPECTED_VERSION` are refused. Default false.
    pub strict_versioning: bool,
    /// Bounds on one request frame.
    pub limits: net::Limits,
    /// Connections served at once; one more is answered `-ERR max number of clients reached`
    /// and closed. Default 10,000.
    pub max_connections: usize,
    /// Subscriptions one connection may hold. Default 64.
    pub max_subscriptions_per_connection: usize,
    /// Window of a subscription without `WINDOW`. Default 1,000 (SierraDB's).
    pub default_window: u32,
    /// Largest `WINDOW` accepted. Default 100,000.
    pub max_window: u32,
    /// The server version `HELLO` and `INFO` report.
    pub version: String,
    /// The node id `HELLO` and `INFO` report.
    pub peer_id: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            strict_versioning: false,
            limits: net::Limits::default(),
            max_connections: 10_000,
            max_subscriptions_per_connection: 64,
            default_window: 1_000,
            max_window: 100_000,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            peer_id: "standalone".to_owned(),
        }
    }
}

impl ServerConfig {
    fn validate(&self) -> io::Result<()> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if self.max_connections == 0 {
            return invalid("max_connections must be at least 1".into());
        }
        if self.default_window == 0 || self.default_window > self.max_window {
            return invalid(format!(
                "default_window must be between 1 and max_window ({}), got {}",
                self.max_window, self.default_window
            ));
        }
        Ok(())
    }
}

/// Pause after a failed `accept` (the process may be out of file descriptors), doubling up to
/// [`ACCEPT_BACKOFF_MAX`], so a persistent failure does not spin.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What every connection of one server shares. Counters are atomics because connections
/// update them from their own tasks; nothing here is iterated.
pub(crate) struct Shared<E: Env, D: Disk> {
    env: E,
    db: Db<D>,
    config: ServerConfig,
    parse: ParseContext,
    local_port: Option<u16>,
    started: Instant,
    connections: Arc<AtomicUsize>,
    subscriptions: Arc<AtomicUsize>,
    next_connection_id: AtomicU64,
    keys: keys::PartitionKeys,
}

/// Holds a connection's place in [`Shared::connections`] while it is served.
struct ConnectionSlot<E: Env, D: Disk>(Arc<Shared<E, D>>);

impl<E: Env, D: Disk> Drop for ConnectionSlot<E, D> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves clients from `listener` until `shutdown` resolves, then stops accepting, lets every
/// connection finish the request it is executing, closes the connections, waits for their
/// tasks and subscriptions to end, and returns. It does not shut the [`Db`] down: the caller
/// does that after `serve` returns, so every append a client was told about is durable first.
///
/// Each connection is a task spawned through `env`. Errors on one connection end only that
/// connection; a failing `accept` is logged and retried with a backoff. The `Err` case is an
/// invalid `config`.
pub async fn serve<L: Listener, E: Env, D: Disk>(
    mut listener: L,
    env: E,
    db: Db<D>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    config.validate()?;
    let local_port = listener.local_addr().ok().map(|addr| addr.port());
    let partition_count = db.store().config().partition_count;
    let shared = Arc::new(Shared {
        started: env.now(),
        env: env.clone(),
        connections: db.metrics().connections.clone(),
        subscriptions: db.metrics().subscriptions.clone(),
        db,
        config,
        parse: ParseContext { partition_count },
        local_port,
        next_connection_id: AtomicU64::new(1),
        keys: keys::PartitionKeys::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task and subscription feed holds a clone; `recv` returns `None` once all
    // of them have ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tracing::info!(port = ?local_port, "serving clients");
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = env.sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        // Only this loop increments the count, so checking then incrementing cannot overshoot.
        if shared.connections.load(Ordering::Relaxed) >= shared.config.max_connections {
            tracing::warn!(%peer, "refusing connection: max_connections reached");
            env.spawn("refuse-connection", Box::pin(refuse(stream)));
            continue;
        }
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let slot = ConnectionSlot(shared.clone());
        let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, connection = id, "accepted");
        let connection = Connection::new(
            stream,
            shared.clone(),
            id,
            stop_rx.clone(),
            alive_tx.clone(),
        );
        env.spawn(
            "connection",
            Box::pin(async move {
                connection.run().await;
                drop(slot);
            }),
        );
    }
    tracing::info!("shutting down: no longer accepting connections");
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
    tracing::info!("every connection closed");
    Ok(())
}

/// Answers a connection over the limit and closes it.
async fn refuse<C: tokio::io::AsyncWrite + Unpin>(mut stream: C) {
    let mut out = bytes::BytesMut::new();
    net::encode(
        &ServerError::MaxClients.to_frame(),
        Protocol::Resp2,
        &mut out,
    );
    // A fresh socket's send buffer takes these few bytes at once; if the peer is gone there is
    // nobody to tell.
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// `+OK`, the most common reply.
fn ok() -> Frame {
    Frame::SimpleString(bytes::Bytes::from_static(b"OK"))
}
