//! [`Client`]: a RESP3 connection to the server that reconnects (and says `HELLO 3` again)
//! whenever the old one is lost or silent for too long.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use madsim::net::TcpStream;
use net::{Frame, Limits, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::transcript::Transcript;

/// Pause between connection attempts while the server is down or the link is clogged
/// (madsim refuses a connection over a clogged link at once).
const CONNECT_RETRY: Duration = Duration::from_millis(20);
/// How long `HELLO` may take before the attempt is abandoned.
const HELLO_TIMEOUT: Duration = Duration::from_millis(250);

/// A request as RESP: an array of blob strings, encoded by the production codec.
pub fn request(args: &[&str]) -> Vec<u8> {
    let frame = Frame::array(
        args.iter()
            .map(|arg| Frame::bulk(arg.as_bytes().to_vec()))
            .collect(),
    );
    let mut out = BytesMut::new();
    net::encode(&frame, Protocol::Resp2, &mut out);
    out.to_vec()
}

/// The value of `name` in a RESP3 map reply.
pub fn field<'a>(frame: &'a Frame, name: &str) -> &'a Frame {
    let map = frame
        .as_map()
        .unwrap_or_else(|| panic!("not a map: {frame:?}"));
    map.iter()
        .find(|(key, _)| key.as_str() == Some(name))
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no field {name} in {frame:?}"))
}

pub fn text(frame: &Frame) -> String {
    let bytes = frame
        .as_bytes()
        .unwrap_or_else(|| panic!("not a string: {frame:?}"));
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn int(frame: &Frame) -> u64 {
    let value = frame
        .as_integer()
        .unwrap_or_else(|| panic!("not an integer: {frame:?}"));
    u64::try_from(value).unwrap_or_else(|_| panic!("negative: {frame:?}"))
}

pub fn is_error(frame: &Frame) -> bool {
    matches!(frame, Frame::SimpleError(_) | Frame::BlobError(_))
}

pub struct Client {
    server: SocketAddr,
    /// Who this client is in the transcript.
    name: &'static str,
    log: Transcript,
    stream: Option<TcpStream>,
    /// Bytes read but not yet decoded into a frame.
    buf: BytesMut,
    /// Connections given up (lost, timed out) so far.
    pub reconnects: u64,
}

impl Client {
    pub fn new(server: SocketAddr, name: &'static str, log: Transcript) -> Client {
        Client {
            server,
            name,
            log,
            stream: None,
            buf: BytesMut::new(),
            reconnects: 0,
        }
    }

    pub fn note(&self, line: impl AsRef<str>) {
        self.log.note(self.name, line);
    }

    /// Connects if not connected, retrying until the server answers `HELLO 3`.
    pub async fn ensure_connected(&mut self) {
        while self.stream.is_none() {
            if !self.try_connect().await {
                madsim::time::sleep(CONNECT_RETRY).await;
            }
        }
    }

    async fn try_connect(&mut self) -> bool {
        self.buf.clear();
        let Ok(stream) = TcpStream::connect(self.server).await else {
            return false;
        };
        self.stream = Some(stream);
        let hello = match self.send(&request(&["HELLO", "3"])).await {
            Ok(()) => self.read(HELLO_TIMEOUT).await,
            Err(err) => Err(err),
        };
        match hello {
            Ok(reply) if int(field(&reply, "proto")) == 3 => {
                self.note(format!("connected: {}", int(field(&reply, "id"))));
                true
            }
            Ok(reply) => panic!("{}: HELLO 3 answered {reply:?}", self.name),
            Err(err) => {
                self.stream = None;
                self.note(format!("HELLO failed: {:?}", err.kind()));
                false
            }
        }
    }

    /// Drops the connection; the next request connects anew.
    pub fn disconnect(&mut self, why: &str) {
        self.note(format!("disconnect: {why}"));
        self.stream = None;
        self.buf.clear();
        self.reconnects += 1;
    }

    /// Writes `bytes` and flushes (madsim's stream sends only on flush).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        stream.write_all(bytes).await?;
        stream.flush().await
    }

    /// The next frame, or an error if the connection ends or nothing arrives for `timeout`.
    pub async fn read(&mut self, timeout: Duration) -> io::Result<Frame> {
        loop {
            let decoded = net::decode(&mut self.buf, &Limits::default())
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
            if let Some(frame) = decoded {
                return Ok(frame);
            }
            let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            match madsim::time::timeout(timeout, stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(err),
            }
        }
    }

    /// Sends a read-only request until some connection answers it.
    pub async fn call(&mut self, args: &[&str], timeout: Duration) -> Frame {
        loop {
            self.ensure_connected().await;
            if self.send(&request(args)).await.is_ok()
                && let Ok(frame) = self.read(timeout).await
            {
                return frame;
            }
            self.disconnect(&format!("{} unanswered", args[0]));
        }
    }
}
