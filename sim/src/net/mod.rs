//! `net`: simulated client connections, so the real RESP3 server loop
//! ([`db::server::serve`]) runs inside the deterministic executor ([`crate::rt`]).
//!
//! # What it models
//!
//! - **Listeners and connections.** [`SimNetwork::bind`] gives a [`SimListener`], which
//!   implements [`net::Listener`]; [`SimNetwork::connect`] gives the client's [`SimStream`]
//!   and queues the server's end for `accept`. Connecting completes at once (no handshake
//!   latency) or fails with `ConnectionRefused` when nothing listens, the listener's backlog
//!   is full, or the address is partitioned.
//! - **Byte streams.** A [`SimStream`] is one end of an in-memory duplex pipe and implements
//!   tokio's `AsyncRead` and `AsyncWrite`. Each direction holds at most
//!   [`NetConfig::buffer_bytes`] unread bytes (in flight included): a writer that outruns its
//!   reader gets `Pending` and is woken as the reader drains, as a full TCP window holds
//!   back a sender. Bytes arrive intact and in order. `flush` does nothing: bytes are sent
//!   as they are written, as by a socket with `TCP_NODELAY`, so code written for tokio, which
//!   need not flush a `TcpStream`, is never held up (madsim's TCP holds writes until a flush).
//! - **End of stream.** `poll_shutdown` is a FIN: the peer reads what is queued, then 0.
//!   Dropping a stream is a `close`: a FIN, except that closing with unread bytes queued
//!   towards it resets the connection, as Linux sends an RST then. Writing towards a closed
//!   end fails with `BrokenPipe`.
//!
//! # Faults, all drawn from the network's seed
//!
//! - **Split reads** ([`NetConfig::split_reads`]): a read returns a random share of the bytes
//!   that have arrived, from 1 byte up (a 1,000-byte write may come out as 1 + 999 bytes, or
//!   as 70 reads), because TCP keeps no message boundaries. **Split writes**
//!   ([`NetConfig::split_writes`]): a write accepts a random prefix, as a nearly full socket
//!   buffer does.
//! - **Delivery delay** ([`NetConfig::to_server_delay`], [`NetConfig::to_client_delay`]): each
//!   write is readable only after a random delay in the direction's range, on the virtual
//!   clock (the reader sleeps through [`db::env::Env::sleep`]). Delays never reorder bytes.
//! - **Reset**: [`SimStream::reset`], [`SimNetwork::reset`], [`SimNetwork::reset_addr`] and
//!   [`SimNetwork::reset_all`] drop the bytes in flight; both ends get `ConnectionReset` from
//!   their next read, write, flush or shutdown, and tasks waiting on either end are woken.
//! - **Partition** of a listener's address ([`SimNetwork::partition`] until
//!   [`SimNetwork::heal`]): new connects are refused, and existing connections to it
//!   *stall*: both directions stop delivering (end of file included) while writes still
//!   fill the buffers, and on heal everything queued arrives, in order, with nothing lost.
//!   That is TCP retransmitting through a partition shorter than its timeout; to model a
//!   longer one, follow the partition with [`SimNetwork::reset_addr`].
//! - **Link partitions** ([`SimNetwork::partition_link`] until [`SimNetwork::heal_link`]): the
//!   same, for the connections of one client host ([`SimNetwork::connect_from`]) to one
//!   listener, in one [`Direction`] or both. A one-way cut towards the client is the case
//!   that matters for request/reply protocols: requests arrive and are executed, their replies
//!   stall (TCP delivers the data whose acknowledgements are lost; the other way stalls).
//!   Connects over a cut link are refused whatever its direction (the handshake needs both).
//! - **Resets on write** ([`NetConfig::reset_on_write`]): a write resets its connection instead
//!   of sending, with this probability, so a reply can be lost after its request took effect.
//!
//! [`SimNetwork::faults`] counts each kind ([`FaultCounts`]).
//!
//! # What it does not model
//!
//! Packets, the handshake, Nagle, retransmission timers, keepalive, half-open connections
//! after a crash (a crashed node's tasks drop their streams, which closes them cleanly or with
//! an RST as above), bandwidth, and node-to-node messages (a separate transport). Addresses are
//! labels: nothing routes by IP, and partitions are per listening address, not per host pair.
//!
//! # Determinism
//!
//! All state lives behind one mutex in `BTreeMap`s keyed by [`ConnId`] (assigned in connect
//! order) and addresses; the only randomness is the network's `ChaCha8Rng`, seeded once; the
//! only clock is the simulator's. Draws happen in the order tasks poll, which the executor
//! fixes per seed, so the same seed splits the same bytes at the same places.
//! [`SimNetwork::delivery_hash`] folds every read's connection, direction and length, so a
//! test can compare splits across runs. Wakers are always called after the mutex is released:
//! a waker is arbitrary code and may come back into the network.
//!
//! `sim/tests/net.rs` shows the whole setup: a `db::Db` on a `SimDisk`, `serve` on a
//! [`SimListener`], and RESP3 clients on [`SimStream`]s, all in one `Sim`.

mod listener;
mod pipe;
mod stream;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Duration;

use db::env::Env;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::rt::SimEnv;
use crate::trace::Fnv64;
pub use listener::SimListener;
use pipe::Pipe;
pub use stream::SimStream;

/// How the network behaves. [`NetConfig::default`] splits reads and writes at random and
/// delays nothing; [`NetConfig::no_faults`] does neither.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Unread bytes one direction of a connection holds before writes wait. Default 64 KiB.
    pub buffer_bytes: usize,
    /// Reads return a random share of the bytes that have arrived. Default true.
    pub split_reads: bool,
    /// Writes accept a random prefix of what they are given. Default true.
    pub split_writes: bool,
    /// Delay of each write from a client to a server. Default none.
    pub to_server_delay: DelayRange,
    /// Delay of each write from a server to a client. Default none.
    pub to_client_delay: DelayRange,
    /// Connections one listener queues before `accept`; beyond that, connects are refused.
    /// Default 128.
    pub backlog: usize,
    /// With `split_reads`/`split_writes` on, the chance that one read or write is cut short;
    /// the rest go whole. Default 1 (every read and write may be cut; no draw is spent on
    /// this chance then).
    pub split_chance: f64,
    /// The chance that a write resets its connection instead of sending (both ends then get
    /// `ConnectionReset`). Default 0 (no draw is spent then).
    pub reset_on_write: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            buffer_bytes: 64 * 1024,
            split_reads: true,
            split_writes: true,
            to_server_delay: DelayRange::ZERO,
            to_client_delay: DelayRange::ZERO,
            backlog: 128,
            split_chance: 1.0,
            reset_on_write: 0.0,
        }
    }
}

impl NetConfig {
    /// Whole reads and writes, no delay: a network that only ever behaves.
    pub fn no_faults() -> NetConfig {
        NetConfig {
            split_reads: false,
            split_writes: false,
            ..NetConfig::default()
        }
    }
}

/// A range of delivery delays, both ends inclusive; each write draws uniformly from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayRange {
    pub min: Duration,
    pub max: Duration,
}

impl DelayRange {
    /// No delay.
    pub const ZERO: DelayRange = DelayRange {
        min: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// # Panics
    /// If `min > max`.
    pub fn between(min: Duration, max: Duration) -> DelayRange {
        assert!(min <= max, "delay range {min:?}..={max:?} is empty");
        DelayRange { min, max }
    }

    fn draw(self, rng: &mut ChaCha8Rng) -> Duration {
        let min = nanos(self.min);
        let span = nanos(self.max) - min;
        if span == 0 {
            return self.min;
        }
        Duration::from_nanos(min + below(rng, span.saturating_add(1)))
    }
}

/// Which way a cut link stops carrying bytes (see [`SimNetwork::partition_link`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to server: requests stall.
    ToServer,
    /// Server to client: replies stall.
    ToClient,
    Both,
}

impl Direction {
    /// Whether bytes flowing towards `side` are held back.
    fn blocks(self, towards: Side) -> bool {
        match self {
            Direction::ToServer => towards == Side::Server,
            Direction::ToClient => towards == Side::Client,
            Direction::Both => true,
        }
    }
}

/// Faults the network injected so far, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Reads that returned fewer bytes than had arrived and fitted the caller's buffer.
    pub split_reads: u64,
    /// Writes that accepted fewer bytes than they were given and had room for.
    pub split_writes: u64,
    /// Writes delivered after a nonzero delay.
    pub delayed_writes: u64,
    /// Connections reset by a fault (not by a close with unread bytes, which is ordinary TCP),
    /// including resets on write.
    pub resets: u64,
    /// Of `resets`, those a write drew ([`NetConfig::reset_on_write`]).
    pub write_resets: u64,
    /// Addresses and links partitioned (a partition of one already partitioned is not
    /// counted).
    pub partitions: u64,
    /// Connects refused because their address or link was partitioned.
    pub refused_connects: u64,
}

/// A connection's id: assigned in connect order, so it is the same in every run of a seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// The simulated network: listeners, connections and the faults between them. Cheap to clone;
/// clones share everything.
#[derive(Clone)]
pub struct SimNetwork {
    inner: Arc<Inner>,
}

struct Inner {
    /// The clock that times delivery delays. Which node's environment it is does not matter:
    /// virtual time is the same everywhere, and the network draws from its own generator.
    env: SimEnv,
    state: Mutex<NetState>,
}

struct NetState {
    config: NetConfig,
    rng: ChaCha8Rng,
    listeners: BTreeMap<SocketAddr, Backlog>,
    links: BTreeMap<ConnId, Link>,
    partitioned: BTreeSet<SocketAddr>,
    /// Cut links: (client host, listener address) and which way they stall.
    cut_links: BTreeMap<(IpAddr, SocketAddr), Direction>,
    next_conn: u64,
    faults: FaultCounts,
    delivery_hash: Fnv64,
}

/// Connections made to one listener and not yet accepted.
struct Backlog {
    pending: VecDeque<(ConnId, SocketAddr)>,
    acceptor: Option<Waker>,
}

/// Which end of a connection a [`SimStream`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

impl Side {
    /// Index into [`Link::pipes`] and [`Link::open`].
    fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }

    fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// One connection. `pipes[s.index()]` carries bytes *towards* side `s`, so an end reads from
/// its own index and writes into its peer's.
struct Link {
    /// The listener's address: what partitions and `reset_addr` select connections by.
    server_addr: SocketAddr,
    /// The client's host: what link partitions and `reset_link` select connections by.
    client_ip: IpAddr,
    pipes: [Pipe; 2],
    /// Reset, by a fault or by a close with unread bytes: every call on either end fails.
    reset: bool,
    /// Ends still held: a stream, or for the server's end a place in the backlog.
    open: [bool; 2],
}

impl Link {
    /// Resets the connection and returns the wakers of everyone waiting on it.
    fn reset(&mut self, wake: &mut Vec<Waker>) {
        self.reset = true;
        for pipe in &mut self.pipes {
            pipe.discard();
            wake.extend(pipe.take_reader());
            wake.extend(pipe.take_writer());
        }
    }

    fn take_wakers(&mut self, wake: &mut Vec<Waker>) {
        for pipe in &mut self.pipes {
            wake.extend(pipe.take_reader());
            wake.extend(pipe.take_writer());
        }
    }
}

/// First port handed out for `bind` with port 0 (Linux's default ephemeral range starts
/// here).
const EPHEMERAL_PORT_MIN: u16 = 32_768;
/// Client ends get addresses from here on: one per connection, so server logs tell them apart.
const CLIENT_ADDR_BASE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
const CLIENT_PORT_MIN: u16 = 49_152;

impl SimNetwork {
    /// A network whose every choice derives from `seed`. `env` supplies the virtual clock for
    /// delivery delays.
    pub fn new(env: SimEnv, seed: u64, config: NetConfig) -> SimNetwork {
        assert!(config.buffer_bytes > 0, "buffer_bytes must be at least 1");
        let state = NetState {
            config,
            // A named stream, so the network never draws what the scheduler or a node draws,
            // even when a test seeds it with the simulation's own seed.
            rng: crate::seeds::rng(seed, "net", 0),
            listeners: BTreeMap::new(),
            links: BTreeMap::new(),
            partitioned: BTreeSet::new(),
            cut_links: BTreeMap::new(),
            next_conn: 0,
            faults: FaultCounts::default(),
            delivery_hash: Fnv64::default(),
        };
        SimNetwork {
            inner: Arc::new(Inner {
                env,
                state: Mutex::new(state),
            }),
        }
    }

    /// A network seeded by a draw from `env`'s generator.
    pub fn from_env(env: SimEnv, config: NetConfig) -> SimNetwork {
        let seed = env.random_u64();
        SimNetwork::new(env, seed, config)
    }

    /// Listens on `addr`; port 0 picks a free port (see [`net::Listener::local_addr`]).
    ///
    /// # Errors
    /// `AddrInUse` if a listener holds `addr`, or every port of its IP is taken.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<SimListener> {
        let mut state = self.lock();
        let addr = if addr.port() == 0 {
            (EPHEMERAL_PORT_MIN..=u16::MAX)
                .map(|port| SocketAddr::new(addr.ip(), port))
                .find(|candidate| !state.listeners.contains_key(candidate))
                .ok_or(io::ErrorKind::AddrInUse)?
        } else {
            addr
        };
        if state.listeners.contains_key(&addr) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        state.listeners.insert(
            addr,
            Backlog {
                pending: VecDeque::new(),
                acceptor: None,
            },
        );
        drop(state);
        Ok(SimListener::new(self.clone(), addr))
    }

    /// Opens a connection to the listener on `addr` and returns the client's end; the server's
    /// end waits in the listener's backlog for `accept`.
    ///
    /// # Errors
    /// `ConnectionRefused` if nothing listens on `addr`, its backlog is full, or it is
    /// partitioned.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<SimStream> {
        self.connect_with(None, addr)
    }

    /// [`SimNetwork::connect`] from the client host `host`: the connection's client address
    /// is on `host`, and [`SimNetwork::partition_link`] and [`SimNetwork::reset_link`] name
    /// the host to reach its connections.
    ///
    /// # Errors
    /// As [`SimNetwork::connect`], and `ConnectionRefused` if the link from `host` to `addr`
    /// is cut.
    pub fn connect_from(&self, host: IpAddr, addr: SocketAddr) -> io::Result<SimStream> {
        self.connect_with(Some(host), addr)
    }

    fn connect_with(&self, host: Option<IpAddr>, addr: SocketAddr) -> io::Result<SimStream> {
        let (conn, client_addr, acceptor) = self.open_link(host, addr)?;
        if let Some(acceptor) = acceptor {
            acceptor.wake();
        }
        Ok(SimStream::new(
            self.clone(),
            conn,
            Side::Client,
            client_addr,
            addr,
        ))
    }

    /// Queues a new connection on `addr`'s listener; returns it with the acceptor to wake.
    fn open_link(
        &self,
        host: Option<IpAddr>,
        addr: SocketAddr,
    ) -> io::Result<(ConnId, SocketAddr, Option<Waker>)> {
        let mut state = self.lock();
        let state = &mut *state;
        let cut = host.is_some_and(|host| state.cut_links.contains_key(&(host, addr)));
        if state.partitioned.contains(&addr) || cut {
            state.faults.refused_connects += 1;
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        let Some(backlog) = state.listeners.get_mut(&addr) else {
            return Err(io::ErrorKind::ConnectionRefused.into());
        };
        if backlog.pending.len() >= state.config.backlog {
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        let conn = ConnId(state.next_conn);
        state.next_conn += 1;
        let client_addr = match host {
            Some(host) => SocketAddr::new(host, client_port(conn)),
            None => client_addr(conn),
        };
        backlog.pending.push_back((conn, client_addr));
        let acceptor = backlog.acceptor.take();
        let capacity = state.config.buffer_bytes;
        state.links.insert(
            conn,
            Link {
                server_addr: addr,
                client_ip: client_addr.ip(),
                pipes: [Pipe::new(capacity), Pipe::new(capacity)],
                reset: false,
                open: [true, true],
            },
        );
        Ok((conn, client_addr, acceptor))
    }

    /// Resets connection `conn`: both ends fail their next call with `ConnectionReset`.
    /// Returns false if it is gone or already reset.
    pub fn reset(&self, conn: ConnId) -> bool {
        self.reset_where(|id, _| id == conn) == 1
    }

    /// Resets every connection to the listener on `addr`; returns how many.
    pub fn reset_addr(&self, addr: SocketAddr) -> usize {
        self.reset_where(|_, link| link.server_addr == addr)
    }

    /// Resets every connection; returns how many.
    pub fn reset_all(&self) -> usize {
        self.reset_where(|_, _| true)
    }

    /// Partitions the listener on `addr` from its clients until [`SimNetwork::heal`]: connects
    /// are refused and existing connections stall (see the module docs).
    pub fn partition(&self, addr: SocketAddr) {
        let mut state = self.lock();
        if state.partitioned.insert(addr) {
            state.faults.partitions += 1;
        }
    }

    /// Ends the partition of `addr`: connects succeed again and stalled connections deliver
    /// what they queued meanwhile.
    pub fn heal(&self, addr: SocketAddr) {
        let mut wake = Vec::new();
        {
            let mut state = self.lock();
            if state.partitioned.remove(&addr) {
                state
                    .links
                    .values_mut()
                    .filter(|link| link.server_addr == addr)
                    .for_each(|link| link.take_wakers(&mut wake));
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }

    /// Heals every partition.
    pub fn heal_all(&self) {
        let partitioned: Vec<SocketAddr> = self.lock().partitioned.iter().copied().collect();
        for addr in partitioned {
            self.heal(addr);
        }
    }

    /// Whether `addr` is partitioned.
    pub fn is_partitioned(&self, addr: SocketAddr) -> bool {
        self.lock().partitioned.contains(&addr)
    }

    /// Cuts the link from client host `host` to the listener on `addr` in `direction` until
    /// [`SimNetwork::heal_link`]: connects from `host` to `addr` are refused, and its existing
    /// connections stop delivering bytes that flow that way (as a partition of the address
    /// does, for that host only). Cutting a cut link again replaces its direction.
    pub fn partition_link(&self, host: IpAddr, addr: SocketAddr, direction: Direction) {
        // Nobody need be woken: a reader looks at the cut before it reads, and one waiting
        // for bytes in flight looks again when they would have arrived.
        let mut state = self.lock();
        if state.cut_links.insert((host, addr), direction).is_none() {
            state.faults.partitions += 1;
        }
    }

    /// Mends the link from `host` to `addr`: connects succeed again and its stalled
    /// connections deliver what they queued meanwhile.
    pub fn heal_link(&self, host: IpAddr, addr: SocketAddr) {
        let mut wake = Vec::new();
        {
            let mut state = self.lock();
            let state = &mut *state;
            if state.cut_links.remove(&(host, addr)).is_some() {
                state
                    .links
                    .values_mut()
                    .filter(|link| link.server_addr == addr && link.client_ip == host)
                    .for_each(|link| link.take_wakers(&mut wake));
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }

    /// Mends every cut link and heals every partitioned address.
    pub fn heal_everything(&self) {
        let links: Vec<(IpAddr, SocketAddr)> = self.lock().cut_links.keys().copied().collect();
        for (host, addr) in links {
            self.heal_link(host, addr);
        }
        self.heal_all();
    }

    /// Resets every connection from client host `host` to the listener on `addr`; returns
    /// how many.
    pub fn reset_link(&self, host: IpAddr, addr: SocketAddr) -> usize {
        self.reset_where(|_, link| link.server_addr == addr && link.client_ip == host)
    }

    /// The configuration now.
    pub fn config(&self) -> NetConfig {
        self.lock().config.clone()
    }

    /// Changes the configuration from now on: draws, delays and resets follow it at once;
    /// connections already open keep their buffer size.
    pub fn set_config(&self, config: NetConfig) {
        assert!(config.buffer_bytes > 0, "buffer_bytes must be at least 1");
        self.lock().config = config;
    }

    /// Faults injected so far, by kind.
    pub fn faults(&self) -> FaultCounts {
        self.lock().faults
    }

    /// A running FNV-1a 64 hash over every successful read: connection, direction and length.
    /// The same seed and code give the same hash; another seed splits differently.
    pub fn delivery_hash(&self) -> u64 {
        self.lock().delivery_hash.0
    }

    /// Connections with at least one end still held.
    pub fn connection_count(&self) -> usize {
        self.lock().links.len()
    }

    fn reset_where(&self, mut select: impl FnMut(ConnId, &Link) -> bool) -> usize {
        let mut wake = Vec::new();
        let mut count = 0;
        {
            let mut state = self.lock();
            let state = &mut *state;
            for (&id, link) in &mut state.links {
                if !link.reset && select(id, link) {
                    link.reset(&mut wake);
                    count += 1;
                }
            }
            state.faults.resets += count as u64;
        }
        wake.into_iter().for_each(Waker::wake);
        count
    }

    fn env(&self) -> &SimEnv {
        &self.inner.env
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        // A task that panicked was never inside one of our critical sections (no user code
        // runs under this lock), so the state is consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl NetState {
    /// Whether bytes of `link` flowing towards `side` are held back by a partition.
    fn stalled(&self, link: &Link, towards: Side) -> bool {
        self.partitioned.contains(&link.server_addr)
            || self
                .cut_links
                .get(&(link.client_ip, link.server_addr))
                .is_some_and(|direction| direction.blocks(towards))
    }

    /// Marks `side` of `conn` as no longer held and forgets the link once neither end is.
    fn release(&mut self, conn: ConnId, side: Side) {
        if let Some(link) = self.links.get_mut(&conn) {
            link.open[side.index()] = false;
            if link.open == [false, false] {
                self.links.remove(&conn);
            }
        }
    }
}

/// The client's address for connection `conn`: unique until 2^30 connections.
fn client_addr(conn: ConnId) -> SocketAddr {
    let ports = u64::from(u16::MAX - CLIENT_PORT_MIN) + 1;
    let host = u32::try_from(conn.0 / ports).unwrap_or(u32::MAX) & 0xffff;
    let ip = Ipv4Addr::from(u32::from(CLIENT_ADDR_BASE) | host);
    SocketAddr::new(IpAddr::V4(ip), client_port(conn))
}

/// The client port of connection `conn` (ports repeat every 16,384 connections).
fn client_port(conn: ConnId) -> u16 {
    let ports = u64::from(u16::MAX - CLIENT_PORT_MIN) + 1;
    CLIENT_PORT_MIN + (conn.0 % ports) as u16
}

/// Whether a draw of the split chance says to cut this read or write short (no draw at a
/// chance of 1 or 0).
fn split_drawn(config: &NetConfig, rng: &mut ChaCha8Rng) -> bool {
    let chance = config.split_chance;
    chance >= 1.0 || (chance > 0.0 && unit(rng) < chance)
}

/// Whether a draw says this write resets its connection (no draw at a chance of 0).
fn reset_drawn(config: &NetConfig, rng: &mut ChaCha8Rng) -> bool {
    config.reset_on_write > 0.0 && unit(rng) < config.reset_on_write
}

/// A uniform draw in `[0, 1)`.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A uniform draw below `bound` (which is at least 1) by multiply-shift, as the executor does.
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(bound)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_are_distinct() {
        let a = client_addr(ConnId(0));
        let b = client_addr(ConnId(16_383));
        let c = client_addr(ConnId(16_384));
        assert_eq!(a.to_string(), "10.1.0.0:49152");
        assert_eq!(b.to_string(), "10.1.0.0:65535");
        assert_eq!(c.to_string(), "10.1.0.1:49152");
    }

    #[test]
    fn delays_stay_in_range() {
        let mut rng = crate::seeds::rng(1, "test", 0);
        let range = DelayRange::between(Duration::from_micros(5), Duration::from_micros(7));
        for _ in 0..100 {
            let delay = range.draw(&mut rng);
            assert!(range.min <= delay && delay <= range.max, "{delay:?}");
        }
        assert_eq!(DelayRange::ZERO.draw(&mut rng), Duration::ZERO);
    }
}
