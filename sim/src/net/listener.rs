//! [`SimListener`]: the server's side of [`SimNetwork`], implementing [`net::Listener`].

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};

use net::Listener;

use super::{Side, SimNetwork, SimStream};

/// A bound address, handing out the server's end of each connection made to it, in connect
/// order. Dropping it unbinds the address and resets the connections still in its backlog,
/// as closing a listening socket does.
pub struct SimListener {
    net: SimNetwork,
    addr: SocketAddr,
}

impl SimListener {
    pub(super) fn new(net: SimNetwork, addr: SocketAddr) -> SimListener {
        SimListener { net, addr }
    }

    /// The next connection from the backlog, or `Pending` with the waker parked until
    /// [`SimNetwork::connect`] queues one.
    fn poll_accept(&self, cx: &Context<'_>) -> Poll<io::Result<(SimStream, SocketAddr)>> {
        let mut state = self.net.lock();
        let backlog = state
            .listeners
            .get_mut(&self.addr)
            .expect("a listener's backlog lives as long as the listener");
        match backlog.pending.pop_front() {
            Some((conn, peer)) => {
                drop(state);
                let stream = SimStream::new(self.net.clone(), conn, Side::Server, self.addr, peer);
                Poll::Ready(Ok((stream, peer)))
            }
            None => {
                match &mut backlog.acceptor {
                    Some(parked) => parked.clone_from(cx.waker()),
                    slot @ None => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl Listener for SimListener {
    type Conn = SimStream;

    async fn accept(&mut self) -> io::Result<(SimStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        let mut wake: Vec<Waker> = Vec::new();
        {
            let mut state = self.net.lock();
            let Some(backlog) = state.listeners.remove(&self.addr) else {
                return;
            };
            for (conn, _) in backlog.pending {
                if let Some(link) = state.links.get_mut(&conn)
                    && !link.reset
                {
                    link.reset(&mut wake);
                }
                state.release(conn, Side::Server);
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }
}

impl fmt::Debug for SimListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimListener")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
