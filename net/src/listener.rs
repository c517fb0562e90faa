//! The client-facing listener: the one seam between the server and the OS's TCP stack.
//!
//! The server is generic over [`Listener`], so the same accept loop runs on real sockets
//! ([`TokioListener`]) and on the simulator's in-memory connections. A connection is any
//! tokio `AsyncRead + AsyncWrite` byte stream; framing is [`resp3`](crate::resp3)'s job.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

/// A source of client connections.
pub trait Listener: Send + 'static {
    /// One client connection: a reliable, ordered byte stream in both directions.
    type Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next client and returns its connection and address.
    ///
    /// An error may concern only the connection being accepted (the peer reset it, the
    /// process ran out of file descriptors for a moment); the caller should log it and keep
    /// accepting rather than stop serving.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;

    /// The address clients connect to; with port 0 at bind time, the port actually chosen.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// [`Listener`] over a tokio TCP socket.
///
/// Accepted streams have `TCP_NODELAY` set: replies are small and written whole, so Nagle's
/// algorithm would only hold each one back waiting for an ACK, adding latency to every
/// request.
#[derive(Debug)]
pub struct TokioListener {
    listener: TcpListener,
}

impl TokioListener {
    /// Binds a TCP listener to `addr` (port 0 picks a free port; see [`Listener::local_addr`]).
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TokioListener> {
        Ok(TokioListener {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// Wraps a listener bound elsewhere.
    pub fn from_tokio(listener: TcpListener) -> TokioListener {
        TokioListener { listener }
    }
}

impl Listener for TokioListener {
    type Conn = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
