//! [`MadsimListener`]: the server's [`Listener`] over madsim's simulated TCP.
//!
//! madsim's `TcpStream` implements tokio's `AsyncRead` and `AsyncWrite`, so this is the same
//! thin wrapper as the production `TokioListener`, and `db::server::serve` runs unchanged.

use std::io;
use std::net::SocketAddr;

use madsim::net::{TcpListener, TcpStream};
use net::Listener;

pub struct MadsimListener {
    listener: TcpListener,
}

impl MadsimListener {
    /// Binds on the current node. madsim frees the port when the node is killed, so a
    /// restarted node binds the same address again.
    pub async fn bind(addr: SocketAddr) -> io::Result<MadsimListener> {
        Ok(MadsimListener {
            listener: TcpListener::bind(addr).await?,
        })
    }
}

impl Listener for MadsimListener {
    type Conn = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.listener.accept().await?;
        // A no-op in madsim; kept so the adapter does what `TokioListener` does.
        stream.set_nodelay(true)?;
        Ok((stream, addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
