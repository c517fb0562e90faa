//! [`SimStream`]: one end of a simulated connection, a tokio byte stream.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use db::env::{BoxFuture, Env, Instant};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{ConnId, Side, SimNetwork, below, nanos, reset_drawn, split_drawn};

/// One end of a connection made by [`SimNetwork::connect`] (the client's) or accepted from a
/// [`super::SimListener`] (the server's): a reliable, ordered byte stream in both directions
/// with the network's faults (see the [module docs](super)).
///
/// Dropping it closes the connection: the peer reads what was sent, then end of file; if
/// bytes sent to this end were still unread, the connection is reset instead.
pub struct SimStream {
    net: SimNetwork,
    conn: ConnId,
    side: Side,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    /// The virtual-clock timer a read waits on while the next bytes are in flight, with the
    /// delivery time it was set for. Kept across polls so the timer is registered once.
    delivery_timer: Option<(Instant, BoxFuture)>,
}

/// What one look at the inbound pipe found.
enum ReadAttempt {
    /// Bytes were read, or end of file, or an error.
    Done(io::Result<()>),
    /// Nothing to read yet; the reader's waker is parked in the pipe.
    Wait,
    /// The next bytes arrive at this time; the waker is parked in the pipe too, so a reset
    /// still wakes the reader early.
    InFlight(Instant),
}

impl SimStream {
    pub(super) fn new(
        net: SimNetwork,
        conn: ConnId,
        side: Side,
        local_addr: SocketAddr,
        peer_addr: SocketAddr,
    ) -> SimStream {
        SimStream {
            net,
            conn,
            side,
            local_addr,
            peer_addr,
            delivery_timer: None,
        }
    }

    /// The connection this stream is an end of; the same for both ends.
    pub fn conn_id(&self) -> ConnId {
        self.conn
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Resets this connection, as [`SimNetwork::reset`] does (counted as a fault). Returns
    /// false if it was already reset.
    pub fn reset(&self) -> bool {
        self.net.reset(self.conn)
    }

    fn try_read(&self, cx: &Context<'_>, now: Instant, buf: &mut ReadBuf<'_>) -> ReadAttempt {
        let writer;
        {
            let mut state = self.net.lock();
            let state = &mut *state;
            let link = state
                .links
                .get(&self.conn)
                .expect("a link lives as long as either of its streams");
            let stalled = state.stalled(link, self.side);
            let link = state
                .links
                .get_mut(&self.conn)
                .expect("a link lives as long as either of its streams");
            if link.reset {
                return ReadAttempt::Done(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let pipe = &mut link.pipes[self.side.index()];
            // A partition holds back everything, end of file included, until it heals.
            if stalled {
                pipe.park_reader(cx.waker());
                return ReadAttempt::Wait;
            }
            match pipe.next_delivery() {
                None if pipe.is_closed() => return ReadAttempt::Done(Ok(())),
                None => {
                    pipe.park_reader(cx.waker());
                    return ReadAttempt::Wait;
                }
                Some(at) if at > now => {
                    pipe.park_reader(cx.waker());
                    return ReadAttempt::InFlight(at);
                }
                Some(_) => {}
            }
            let limit = if state.config.split_reads && split_drawn(&state.config, &mut state.rng) {
                read_limit(&mut state.rng)
            } else {
                usize::MAX
            };
            let read = pipe.read(now, limit, buf);
            if read == limit && buf.remaining() > 0 && pipe.has_arrived(now) {
                state.faults.split_reads += 1;
            }
            state.delivery_hash.write_u64(self.conn.0);
            state.delivery_hash.write(&[self.side.index() as u8]);
            state.delivery_hash.write_u64(read as u64);
            writer = pipe.take_writer();
        }
        // Space freed up: the peer's writer may go on.
        if let Some(writer) = writer {
            writer.wake();
        }
        ReadAttempt::Done(Ok(()))
    }

    /// Polls the timer for bytes that arrive at `at`, setting it first if it is not set for
    /// that time.
    fn poll_delivery_timer(&mut self, cx: &mut Context<'_>, at: Instant) -> Poll<()> {
        if self
            .delivery_timer
            .as_ref()
            .is_none_or(|(deadline, _)| *deadline != at)
        {
            let env = self.net.env().clone();
            let wait = at.saturating_duration_since(env.now());
            // The future owns its environment, so it can be boxed as `'static`.
            let timer: BoxFuture = Box::pin(async move { env.sleep(wait).await });
            self.delivery_timer = Some((at, timer));
        }
        let (_, timer) = self.delivery_timer.as_mut().expect("set just above");
        let poll = timer.as_mut().poll(cx);
        if poll.is_ready() {
            self.delivery_timer = None;
        }
        poll
    }

    fn write_now(&self, cx: &Context<'_>, now: Instant, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut wake: Vec<Waker> = Vec::new();
        let result = self.write_locked(cx, now, buf, &mut wake);
        // Wakers run outside the lock: a waker is arbitrary code.
        wake.into_iter().for_each(Waker::wake);
        result
    }

    /// The body of [`SimStream::write_now`], under the network's lock; the wakers to call once
    /// it is released go into `wake`.
    fn write_locked(
        &self,
        cx: &Context<'_>,
        now: Instant,
        buf: &[u8],
        wake: &mut Vec<Waker>,
    ) -> Poll<io::Result<usize>> {
        let mut state = self.net.lock();
        let state = &mut *state;
        let link = state
            .links
            .get_mut(&self.conn)
            .expect("a link lives as long as either of its streams");
        if link.reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let peer = self.side.peer();
        if !link.open[peer.index()] {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the peer closed the connection",
            )));
        }
        let pipe = &mut link.pipes[peer.index()];
        if pipe.is_closed() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "this end was shut down for writing",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let space = pipe.space();
        if space == 0 {
            pipe.park_writer(cx.waker());
            return Poll::Pending;
        }
        if reset_drawn(&state.config, &mut state.rng) {
            link.reset(wake);
            state.faults.resets += 1;
            state.faults.write_resets += 1;
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let pipe = &mut link.pipes[peer.index()];
        let fits = buf.len().min(space);
        let taken = if state.config.split_writes && split_drawn(&state.config, &mut state.rng) {
            write_limit(&mut state.rng, fits)
        } else {
            fits
        };
        if taken < fits {
            state.faults.split_writes += 1;
        }
        let delay = match self.side {
            Side::Client => state.config.to_server_delay,
            Side::Server => state.config.to_client_delay,
        }
        .draw(&mut state.rng);
        if !delay.is_zero() {
            state.faults.delayed_writes += 1;
        }
        pipe.write(&buf[..taken], Instant(now.0.saturating_add(nanos(delay))));
        wake.extend(pipe.take_reader());
        Poll::Ready(Ok(taken))
    }

    /// The check before a flush or shutdown: only a reset makes them fail.
    fn ensure_not_reset(&self) -> io::Result<()> {
        let state = self.net.lock();
        match state.links.get(&self.conn) {
            Some(link) if !link.reset => Ok(()),
            _ => Err(io::ErrorKind::ConnectionReset.into()),
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let now = this.net.env().now();
            match this.try_read(cx, now, buf) {
                ReadAttempt::Done(result) => return Poll::Ready(result),
                ReadAttempt::Wait => return Poll::Pending,
                ReadAttempt::InFlight(at) => {
                    if this.poll_delivery_timer(cx, at).is_pending() {
                        return Poll::Pending;
                    }
                    // The clock reached `at`: look again (a reset or partition may have come
                    // first).
                }
            }
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let now = self.net.env().now();
        self.write_now(cx, now, buf)
    }

    /// Bytes are sent as they are written, so there is nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.ensure_not_reset())
    }

    /// Sends end of file after the bytes already written; reading stays possible.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let reader;
        {
            let mut state = self.net.lock();
            let link = state
                .links
                .get_mut(&self.conn)
                .expect("a link lives as long as either of its streams");
            if link.reset {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let pipe = &mut link.pipes[self.side.peer().index()];
            pipe.close();
            reader = pipe.take_reader();
        }
        if let Some(reader) = reader {
            reader.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimStream {
    /// A `close`: end of file for the peer, or a reset if bytes sent here were never read.
    fn drop(&mut self) {
        let mut wake: Vec<Waker> = Vec::new();
        {
            let mut state = self.net.lock();
            if let Some(link) = state.links.get_mut(&self.conn) {
                if !link.reset {
                    if link.pipes[self.side.index()].is_empty() {
                        link.pipes[self.side.peer().index()].close();
                        // The peer's reader sees end of file; its writer, a broken pipe.
                        link.take_wakers(&mut wake);
                    } else {
                        link.reset(&mut wake);
                    }
                }
                state.release(self.conn, self.side);
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }
}

impl fmt::Debug for SimStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimStream")
            .field("conn", &self.conn)
            .field("side", &self.side)
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

/// Most bytes one read may return. A quarter of reads take everything that has arrived; the
/// rest are cut at a size drawn from one of three scales, so both 1-byte fragments and splits
/// inside large frames are common.
fn read_limit(rng: &mut ChaCha8Rng) -> usize {
    let bound = match below(rng, 4) {
        0 => 8,
        1 => 256,
        2 => 8 * 1024,
        _ => return usize::MAX,
    };
    1 + below(rng, bound) as usize
}

/// Bytes one write accepts out of `fits` (at least 1): half of all writes take everything,
/// the others a uniform prefix.
fn write_limit(rng: &mut ChaCha8Rng, fits: usize) -> usize {
    if fits <= 1 || below(rng, 2) == 0 {
        return fits;
    }
    1 + below(rng, fits as u64) as usize
}
