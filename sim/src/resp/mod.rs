//! `resp`: the simulator's RESP3 client, so the workload can reach each node through its real
//! server loop (`db::server::serve`) over the simulated client network ([`crate::net`]).
//!
//! It is a test client, written for the history rather than for speed: one request at a time
//! per connection, every request and reply built and read with the `net` codec
//! ([`net::encode`]; [`net::decode_flat`], whose replies are read in place rather than built
//! into trees of frames), every reply mapped into the same [`Output`] records the
//! `Db`-level workload produces, so every checker judges both transports alike.
//!
//! | module | what it holds |
//! |---|---|
//! | [`command`] | request frames: `EAPPEND`/`EMAPPEND` from a transaction (event ids, partition key, expected versions, timestamps: all chosen by the client, so a retry is the same request), and the reads |
//! | [`reply`] | reply frames → [`Output`]: append maps, error codes, event maps, scans, positions |
//!
//! # Outcomes of an exchange ([`Exchange`])
//!
//! - **Not sent**: the connection could not be made (nothing listens, the node is down, the
//!   link is cut), its `HELLO 3` handshake failed, or the very first write failed. Nothing of
//!   the request reached the server: for an append, "not written" ([`Output::NotSent`]).
//! - **Lost**: the connection broke (reset, end of file, a reply that does not decode) after
//!   some of the request was written: the outcome is unknown ([`Output::ConnectionLost`]).
//! - **Timed out**: no reply within the client's timeout, which covers the handshake, the
//!   request and the reply: unknown too ([`Output::TimedOut`]).
//!
//! After anything but a reply the connection is dropped (a late reply would otherwise be read
//! as the answer to the next request) and the next request connects again. A retry of an
//! append sends the same bytes: same event ids, same content, same timestamp, so the server
//! answers a retry of a stored append with the original result.
//!
//! # Transaction ids
//!
//! `EAPPEND`/`EMAPPEND` have no transaction id argument: the server draws one per request
//! (`Env::new_uuid`), and reads report it. The history records the client's own transaction
//! id in each append's input, so after a run [`relabel_transactions`] renames each server id
//! found in the history and the snapshot to the client's id of the request that stored it
//! (found by event id and content), leaving ids that fit no single request as they are. The
//! checkers then compare transactions exactly as for the `Db`-level workload: a transaction
//! split across server ids, merged with another, or never sent still shows.

pub mod command;
pub mod reply;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use db::env::Env;
use net::{FlatDecoder, FlatFrame, Frame, FrameKind, Limits, Protocol};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use crate::history::{Eid, EidIndex, History, Output, SeenEvent};
use crate::net::{SimNetwork, SimStream};
use crate::node::timeout;
use crate::rt::SimEnv;
use crate::snapshot::Snapshot;

/// The port every node's server listens on.
pub const SERVER_PORT: u16 = 9090;

/// The address of node `n`'s server: `10.0.0.<n + 1>:9090`.
pub fn node_addr(node: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 1)) + node);
    SocketAddr::new(IpAddr::V4(ip), SERVER_PORT)
}

/// The client hosts: workload clients on `10.1.x.y`, subscribers on `10.2.x.y`, liveness
/// probes on `10.3.x.y`, numbered from 0 (`x.y` is the index in base 256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Client(u32),
    Subscriber(u32),
    Probe(u32),
}

impl Host {
    pub fn ip(self) -> IpAddr {
        let (net, index) = match self {
            Host::Client(j) => (1, j),
            Host::Subscriber(j) => (2, j),
            Host::Probe(j) => (3, j),
        };
        let base = u32::from(Ipv4Addr::new(10, net, 0, 0));
        IpAddr::V4(Ipv4Addr::from(base | (index & 0xffff)))
    }
}

/// How one request went; the reply as it was read (flat), or as a tree after
/// [`Exchange::into_tree`].
#[derive(Clone, Debug, PartialEq)]
pub enum Exchange<R = FlatFrame> {
    Reply(R),
    /// Nothing of the request reached the server.
    NotSent(String),
    /// The connection broke after the request was (perhaps partly) sent.
    Lost(String),
    TimedOut,
}

impl<R> Exchange<R> {
    /// The outcome of an exchange that brought no reply.
    pub fn failure(self) -> Result<R, Output> {
        match self {
            Exchange::Reply(frame) => Ok(frame),
            Exchange::NotSent(reason) => Err(Output::NotSent { reason }),
            Exchange::Lost(reason) => Err(Output::ConnectionLost { reason }),
            Exchange::TimedOut => Err(Output::TimedOut),
        }
    }
}

impl Exchange {
    /// The exchange with its reply built into a tree, for matching on.
    pub fn into_tree(self) -> Exchange<Frame> {
        match self {
            Exchange::Reply(reply) => Exchange::Reply(reply.to_frame()),
            Exchange::NotSent(reason) => Exchange::NotSent(reason),
            Exchange::Lost(reason) => Exchange::Lost(reason),
            Exchange::TimedOut => Exchange::TimedOut,
        }
    }
}

/// Why a connection is no use any more.
fn describe(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::BrokenPipe => "connection closed by the server".into(),
        io::ErrorKind::UnexpectedEof => "end of file".into(),
        _ => err.to_string(),
    }
}

/// Room one read takes bytes into.
const READ_CHUNK: usize = 64 * 1024;

/// One RESP3 connection: the stream, bytes read but not yet decoded, and pushes read while
/// waiting for a reply.
pub struct RespConn {
    stream: SimStream,
    buf: BytesMut,
    /// Where [`RespConn::read_arrived`] reads into.
    scratch: Vec<u8>,
    pushes: VecDeque<FlatFrame>,
    /// Decodes `buf`, going on from where it stopped when a frame came in pieces.
    decoder: FlatDecoder,
}

impl RespConn {
    /// Connects from `host` to `addr`; no handshake yet.
    pub fn connect(net: &SimNetwork, host: IpAddr, addr: SocketAddr) -> io::Result<RespConn> {
        Ok(RespConn {
            stream: net.connect_from(host, addr)?,
            buf: BytesMut::new(),
            scratch: vec![0; READ_CHUNK],
            pushes: VecDeque::new(),
            decoder: FlatDecoder::default(),
        })
    }

    /// Writes `frame`; returns how many bytes went out before an error, if one came.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), (usize, io::Error)> {
        let mut out = BytesMut::new();
        net::encode(frame, Protocol::Resp3, &mut out);
        let mut written = 0;
        while written < out.len() {
            match self.stream.write(&out[written..]).await {
                Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(err) => return Err((written, err)),
            }
        }
        Ok(())
    }

    /// The next frame off the wire, push or not.
    pub async fn read_frame(&mut self) -> io::Result<FlatFrame> {
        loop {
            // The answer is `decode`'s, flat; a frame in pieces is read once, not once per piece.
            match self.decoder.decode(&mut self.buf, &Limits::default()) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(err) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("undecodable reply: {err}"),
                    ));
                }
            }
            self.buf.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.read_arrived();
        }
    }

    /// A push that is already here (set aside, or whole in the bytes that have arrived),
    /// without waiting: a client reads every message a socket holds before it answers.
    pub fn try_next_push(&mut self) -> io::Result<Option<FlatFrame>> {
        if let Some(push) = self.pushes.pop_front() {
            return Ok(Some(push));
        }
        self.read_arrived();
        match self.decoder.decode(&mut self.buf, &Limits::default()) {
            Ok(Some(push)) if push.root().kind() == FrameKind::Push => Ok(Some(push)),
            Ok(Some(other)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a reply nobody asked for: {}", reply::render(other.root())),
            )),
            Ok(None) => Ok(None),
            Err(err) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("undecodable push: {err}"),
            )),
        }
    }

    /// Takes every byte that has already arrived, without waiting, so a reply that came in
    /// many pieces (split reads) is decoded in one step rather than one per piece. End of
    /// file and errors are left for the next read that waits, which reports them.
    fn read_arrived(&mut self) {
        // Never woken: this poll only looks. Whoever waits next polls with its own waker.
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut read = ReadBuf::new(&mut self.scratch);
            match Pin::new(&mut self.stream).poll_read(&mut cx, &mut read) {
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                    self.buf.extend_from_slice(read.filled());
                }
                _ => return,
            }
        }
    }

    /// The next reply; pushes read on the way are set aside for [`RespConn::next_push`].
    pub async fn read_reply(&mut self) -> io::Result<FlatFrame> {
        loop {
            let frame = self.read_frame().await?;
            if frame.root().kind() == FrameKind::Push {
                self.pushes.push_back(frame);
            } else {
                return Ok(frame);
            }
        }
    }

    /// The next push: one set aside earlier, else the next frame off the wire, which must be
    /// a push (no request is waiting for its reply). Safe to drop while waiting: bytes read
    /// stay buffered.
    pub async fn next_push(&mut self) -> io::Result<FlatFrame> {
        if let Some(push) = self.pushes.pop_front() {
            return Ok(push);
        }
        let frame = self.read_frame().await?;
        if frame.root().kind() == FrameKind::Push {
            Ok(frame)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a reply nobody asked for: {}", reply::render(frame.root())),
            ))
        }
    }

    /// Sends `frame` and reads its reply, classifying what went wrong.
    pub async fn call(&mut self, frame: &Frame) -> Exchange {
        if let Err((written, err)) = self.send(frame).await {
            return if written == 0 {
                Exchange::NotSent(describe(&err))
            } else {
                Exchange::Lost(describe(&err))
            };
        }
        match self.read_reply().await {
            Ok(reply) => Exchange::Reply(reply),
            Err(err) => Exchange::Lost(describe(&err)),
        }
    }

    /// `HELLO 3`: the reply must be a map saying `proto` 3.
    pub async fn hello(&mut self) -> Result<(), Exchange> {
        let hello = command::words(&["HELLO", "3"]);
        match self.call(&hello).await {
            Exchange::Reply(reply) if reply::field_int(reply.root(), "proto") == Some(3) => Ok(()),
            // Nothing of a request has been sent yet, whatever happened to the handshake.
            Exchange::Reply(other) => Err(Exchange::NotSent(format!(
                "HELLO 3 answered {}",
                reply::render(other.root())
            ))),
            Exchange::NotSent(reason) | Exchange::Lost(reason) => {
                Err(Exchange::NotSent(format!("handshake failed: {reason}")))
            }
            Exchange::TimedOut => Err(Exchange::NotSent("handshake timed out".into())),
        }
    }
}

/// A client's way to one node: connects on demand, one request at a time, drops the
/// connection after anything but a reply.
pub struct RespLink {
    net: SimNetwork,
    env: SimEnv,
    host: IpAddr,
    addr: SocketAddr,
    conn: Option<RespConn>,
    /// Connections opened so far (the first one and every reconnect).
    pub connects: u64,
}

impl RespLink {
    pub fn new(net: SimNetwork, env: SimEnv, host: Host, node: u32) -> RespLink {
        RespLink {
            net,
            env,
            host: host.ip(),
            addr: node_addr(node),
            conn: None,
            connects: 0,
        }
    }

    /// Drops the connection (the next request connects again).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// A connected, greeted connection, or why there is none.
    async fn connection(&mut self) -> Result<&mut RespConn, Exchange> {
        if self.conn.is_none() {
            let mut conn = RespConn::connect(&self.net, self.host, self.addr)
                .map_err(|err| Exchange::NotSent(describe(&err)))?;
            self.connects += 1;
            conn.hello().await?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected just above"))
    }

    /// Sends `request` and waits up to `limit` (handshake included) for its reply. Time
    /// running out before the request was handed to the connection is "not sent".
    pub async fn request(&mut self, request: &Frame, limit: Duration) -> Exchange {
        let env = self.env.clone();
        let mut sending = false;
        let exchange = timeout(&env, limit, async {
            match self.connection().await {
                Ok(conn) => {
                    sending = true;
                    conn.call(request).await
                }
                Err(failed) => failed,
            }
        })
        .await;
        let exchange = match exchange {
            Some(exchange) => exchange,
            None if sending => Exchange::TimedOut,
            None => Exchange::NotSent("timed out connecting".into()),
        };
        if !matches!(exchange, Exchange::Reply(_)) {
            self.disconnect();
        }
        exchange
    }

    /// The virtual clock.
    pub fn now(&self) -> u64 {
        self.env.now().0
    }
}

/// Renames the server's transaction ids in `history` and `snapshot` to the client's (see the
/// module docs). Per node, a server id becomes client transaction `T` when every event seen
/// with it was sent, with that content, by an append of `T` only, and no other server id
/// claims `T`; otherwise it stays as it is, which the checkers report.
///
/// Events are looked at in the final state first (each once, in its partition), then in reads
/// and deliveries only where the final state does not have them (lost or unreadable data):
/// reads return the same events many times over, and judging them is the checkers' job.
pub fn relabel_transactions(history: &mut History, snapshot: &mut Snapshot) {
    // (node, event id, content digest) -> the client transaction that sent it.
    let mut sent: BTreeMap<(u32, Eid, u64), Option<Eid>> = BTreeMap::new();
    for op in &history.ops {
        if let crate::history::Input::Append { txn, events, .. } = &op.input {
            for e in events {
                let slot = sent.entry((op.node, e.id, e.digest)).or_insert(Some(*txn));
                if *slot != Some(*txn) {
                    *slot = None;
                }
            }
        }
    }
    // (node, server id) -> the client transactions its events map to.
    let mut seen: BTreeMap<(u32, Eid), Vec<Option<Eid>>> = BTreeMap::new();
    // Per node, the ids the final state holds (O(1) lookups: every read event asks).
    let mut stored: Vec<EidIndex> = Vec::new();
    let mut observe = |node: u32, e: &SeenEvent| {
        let client = sent.get(&(node, e.id, e.digest)).copied().flatten();
        let list = seen.entry((node, e.txn)).or_default();
        if !list.contains(&client) {
            list.push(client);
        }
    };
    for (node, state) in snapshot.nodes.iter().enumerate() {
        if let crate::snapshot::NodeState::Up { partitions, .. } = state {
            for e in partitions
                .values()
                .flat_map(|log| log.slots.iter().filter_map(|s| s.event()))
            {
                if stored.len() <= node {
                    stored.resize_with(node + 1, EidIndex::default);
                }
                stored[node].insert_new(e.id, 0);
                observe(node as u32, e);
            }
        }
    }
    let mut elsewhere = |node: u32, e: &SeenEvent| {
        let held = stored
            .get(node as usize)
            .is_some_and(|ids| ids.get(e.id).is_some());
        if !held {
            observe(node, e);
        }
    };
    for op in &history.ops {
        if let Some(Output::Events { events, .. }) = &op.output {
            events.iter().for_each(|e| elsewhere(op.node, e));
        }
    }
    for sub in &history.subscriptions {
        sub.deliveries
            .iter()
            .for_each(|d| elsewhere(sub.node, &d.event));
    }
    let mut rename: BTreeMap<(u32, Eid), Eid> = BTreeMap::new();
    let mut claimed: BTreeMap<(u32, Eid), Eid> = BTreeMap::new();
    for ((node, server), clients) in &seen {
        if let [Some(client)] = clients.as_slice() {
            match claimed.get(&(*node, *client)) {
                Some(other) if other != server => {
                    // Two server transactions hold events of one request: keep both as they
                    // are so the atomicity and phantom checks see it.
                    rename.remove(&(*node, *other));
                }
                _ => {
                    claimed.insert((*node, *client), *server);
                    rename.insert((*node, *server), *client);
                }
            }
        }
    }
    // Events of one transaction come together (scans, deliveries): remember the last answer.
    let mut last: Option<((u32, Eid), Option<Eid>)> = None;
    let mut relabel = |node: u32, e: &mut SeenEvent| {
        let key = (node, e.txn);
        let client = match last {
            Some((k, client)) if k == key => client,
            _ => {
                let client = rename.get(&key).copied();
                last = Some((key, client));
                client
            }
        };
        if let Some(client) = client {
            e.txn = client;
        }
    };
    for op in &mut history.ops {
        if let Some(Output::Events { events, .. }) = &mut op.output {
            events.iter_mut().for_each(|e| relabel(op.node, e));
        }
    }
    for sub in &mut history.subscriptions {
        let node = sub.node;
        sub.deliveries
            .iter_mut()
            .for_each(|d| relabel(node, &mut d.event));
    }
    for (node, state) in snapshot.nodes.iter_mut().enumerate() {
        if let crate::snapshot::NodeState::Up {
            partitions,
            streams,
        } = state
        {
            for log in partitions.values_mut().chain(streams.values_mut()) {
                for slot in &mut log.slots {
                    if let crate::snapshot::Slot::Event(e) = slot {
                        relabel(node as u32, e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_per_node_and_host() {
        assert_eq!(node_addr(0).to_string(), "10.0.0.1:9090");
        assert_eq!(node_addr(2).to_string(), "10.0.0.3:9090");
        assert_eq!(Host::Client(0).ip().to_string(), "10.1.0.0");
        assert_eq!(Host::Client(258).ip().to_string(), "10.1.1.2");
        assert_eq!(Host::Subscriber(1).ip().to_string(), "10.2.0.1");
        assert_eq!(Host::Probe(1).ip().to_string(), "10.3.0.1");
    }
}
