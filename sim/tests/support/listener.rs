//! [`TurmoilListener`]: the server's [`Listener`] over `turmoil::net::TcpListener`.
//!
//! The production listener ([`net::TokioListener`]) is a thin wrapper over tokio's; this is the
//! same wrapper over turmoil's simulated TCP, whose streams implement tokio's `AsyncRead` and
//! `AsyncWrite`, so `db::server::serve` runs unchanged on it.

use std::io;
use std::net::SocketAddr;

use net::Listener;
use turmoil::net::{TcpListener, TcpStream};

/// A simulated TCP listener on the current turmoil host.
pub struct TurmoilListener {
    listener: TcpListener,
}

impl TurmoilListener {
    /// Binds to `port` on every address of the current host.
    pub async fn bind(port: u16) -> io::Result<TurmoilListener> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await?;
        Ok(TurmoilListener { listener })
    }
}

impl Listener for TurmoilListener {
    type Conn = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.listener.accept().await?;
        // A no-op in turmoil; kept so the adapter does what `TokioListener` does.
        stream.set_nodelay(true)?;
        Ok((stream, addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
