//! The server over real TCP on 127.0.0.1, with the store on a real disk in a temporary
//! directory, asserting raw RESP bytes: every command, every documented error, RESP2 against
//! RESP3, pipelining, subscriptions (history then live, window, `FROM LATEST`, `EUNSUB`),
//! hostile input, idempotent retries, connection limits and shutdown. The exact bytes of each
//! command's reply are pinned by the insta snapshots in `tests/snapshots/`.

#![expect(
    clippy::disallowed_methods,
    reason = "integration tests drive real sockets with tokio tasks and real timeouts"
)]

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use db::env::TokioEnv;
use db::server::{ServerConfig, serve};
use db::{Db, StoreConfig};
use disk::RealDisk;
use net::{Frame, Limits, Listener, TokioListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Generous: only reached when a test is about to fail anyway.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(200);

const KEY: &str = "550e8400-e29b-41d4-a716-446655440000";
/// Another partition key with the same partition hash as [`KEY`] (bits 61..46 are equal).
const KEY_SAME_PARTITION: &str = "550e8400-e29b-41d4-a716-446655440001";

fn store_config() -> StoreConfig {
    StoreConfig {
        segment_size_bytes: 1 << 20,
        max_transaction_bytes: 64 * 1024,
        ..StoreConfig::default()
    }
}

struct Server {
    addr: SocketAddr,
    db: Db<RealDisk>,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

async fn start(config: ServerConfig) -> Server {
    start_with(config, store_config()).await
}

async fn start_with(config: ServerConfig, store: StoreConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let env = TokioEnv::new(7);
    let (db, _) = Db::open(&env, &RealDisk::new(), dir.path(), store).unwrap();
    let listener = TokioListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve(listener, env, db.clone(), config, shutdown));
    Server {
        addr,
        db,
        dir,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// A client that has switched to RESP3.
    async fn client3(&self) -> Client {
        let mut client = self.client().await;
        let hello = client.call("HELLO 3").await;
        assert_eq!(field(&hello, "proto"), &Frame::int(3));
        client
    }

    /// Stops the server and waits for `serve` to return.
    async fn stop(&mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(READ_TIMEOUT, &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
    }
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    /// Pushes read while looking for a reply, handed out first by [`Client::read`].
    pending: VecDeque<Frame>,
}

/// A request as RESP: an array of blob strings.
fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn words(line: &str) -> Vec<&[u8]> {
    line.split_whitespace().map(str::as_bytes).collect()
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            pending: VecDeque::new(),
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, line: &str) {
        self.send_raw(&request(&words(line))).await;
    }

    async fn send_args(&mut self, args: &[&[u8]]) {
        self.send_raw(&request(args)).await;
    }

    async fn fill(&mut self) -> usize {
        tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf))
            .await
            .expect("the server answers in time")
            .unwrap()
    }

    /// The next frame.
    async fn read(&mut self) -> Frame {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        self.read_wire().await
    }

    /// The next reply, setting aside pushes that arrive before it (a subscription's messages
    /// interleave with the replies of the same connection).
    async fn read_reply(&mut self) -> Frame {
        loop {
            match self.read_wire().await {
                push @ Frame::Push(_) => self.pending.push_back(push),
                reply => return reply,
            }
        }
    }

    /// The next frame off the wire.
    async fn read_wire(&mut self) -> Frame {
        loop {
            if let Some(frame) = net::decode(&mut self.buf, &Limits::default()).unwrap() {
                return frame;
            }
            assert!(self.fill().await > 0, "connection closed");
        }
    }

    /// The exact bytes of the next frame.
    async fn read_raw(&mut self) -> Vec<u8> {
        loop {
            let before = self.buf.clone();
            if net::decode(&mut self.buf, &Limits::default())
                .unwrap()
                .is_some()
            {
                return before[..before.len() - self.buf.len()].to_vec();
            }
            assert!(self.fill().await > 0, "connection closed");
        }
    }

    async fn call(&mut self, line: &str) -> Frame {
        self.send(line).await;
        self.read().await
    }

    async fn call_args(&mut self, args: &[&[u8]]) -> Frame {
        self.send_args(args).await;
        self.read().await
    }

    /// The exact reply bytes, as text.
    async fn call_raw(&mut self, line: &str) -> String {
        self.send(line).await;
        String::from_utf8(self.read_raw().await).unwrap()
    }

    /// Asserts that nothing arrives for a while.
    async fn assert_quiet(&mut self) {
        assert!(self.pending.is_empty(), "unread pushes: {:?}", self.pending);
        assert!(self.buf.is_empty(), "unread bytes: {:?}", self.buf);
        let read = tokio::time::timeout(QUIET, self.stream.read_buf(&mut self.buf)).await;
        assert!(read.is_err(), "unexpected bytes: {:?}", self.buf);
    }

    /// Asserts that the server closes the connection (after any bytes still buffered).
    async fn assert_closed(&mut self) {
        loop {
            let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("the server closes the connection");
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

fn text(frame: &Frame) -> String {
    match frame {
        Frame::SimpleString(b) | Frame::BlobString(b) | Frame::SimpleError(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        other => panic!("not a string: {other:?}"),
    }
}

fn field<'a>(frame: &'a Frame, name: &str) -> &'a Frame {
    let pairs = frame
        .as_map()
        .unwrap_or_else(|| panic!("not a map: {frame:?}"));
    pairs
        .iter()
        .find(|(key, _)| key.as_str() == Some(name))
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no field {name} in {frame:?}"))
}

fn int_field(frame: &Frame, name: &str) -> i64 {
    field(frame, name)
        .as_integer()
        .unwrap_or_else(|| panic!("{name} is not an integer"))
}

fn error(frame: &Frame) -> String {
    match frame {
        Frame::SimpleError(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("not an error: {other:?}"),
    }
}

/// A push's parts: kind, subscription id, and the rest.
fn push(frame: &Frame) -> (String, String, Vec<Frame>) {
    let Frame::Push(items) = frame else {
        panic!("not a push: {frame:?}");
    };
    (text(&items[0]), text(&items[1]), items[2..].to_vec())
}

/// Reads a `message` push of `subscription` and returns its cursor and event map.
async fn message(client: &mut Client, subscription: &str) -> (i64, Frame) {
    let frame = client.read().await;
    let (kind, id, rest) = push(&frame);
    assert_eq!(kind, "message", "{frame:?}");
    assert_eq!(id, subscription);
    (rest[0].as_integer().unwrap(), rest[1].clone())
}

/// Subscribes and returns the subscription id, checking the reply and the `subscribe` push,
/// which follows the reply at once.
async fn subscribe(client: &mut Client, line: &str, expected_count: i64) -> String {
    client.send(line).await;
    let reply = client.read_reply().await;
    let Frame::SimpleString(id) = &reply else {
        panic!("{line}: {reply:?}");
    };
    let id = String::from_utf8(id.to_vec()).unwrap();
    let (kind, push_id, rest) = push(&client.read_wire().await);
    assert_eq!(
        (kind.as_str(), push_id.as_str()),
        ("subscribe", id.as_str())
    );
    assert_eq!(rest, vec![Frame::int(expected_count)]);
    id
}

/// Appends `count` events to `stream` with expected versions `from..from+count`, pipelined.
async fn append_many(client: &mut Client, stream: &str, from: u64, count: u64) {
    let mut batch = Vec::new();
    for version in from..from + count {
        let expected = match version {
            0 => "empty".to_owned(),
            v => (v - 1).to_string(),
        };
        let payload = format!("{stream}:{version}");
        batch.extend(request(&[
            b"EAPPEND",
            stream.as_bytes(),
            b"E",
            b"EXPECTED_VERSION",
            expected.as_bytes(),
            b"PAYLOAD",
            payload.as_bytes(),
        ]));
    }
    client.send_raw(&batch).await;
    for version in from..from + count {
        let reply = client.read().await;
        assert!(
            !matches!(reply, Frame::SimpleError(_)),
            "append {version}: {reply:?}"
        );
    }
}

fn with_timeout<F: Future>(future: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(READ_TIMEOUT, future)
}

// ------------------------------------------------------------------ basics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_echo_and_command_names() {
    let server = start(ServerConfig::default()).await;
    let mut c = server.client().await;
    assert_eq!(c.call_raw("PING").await, "+PONG\r\n");
    assert_eq!(c.call_raw("ping hello").await, "$5\r\nhello\r\n");
    assert_eq!(
        c.call_raw("SET foo bar").await,
        "-ERR unknown command 'SET'\r\n"
    );
    assert_eq!(
        c.call_raw("config get save").await,
        "-ERR unknown command 'config'\r\n"
    );
    assert_eq!(
        c.call_raw("EGET").await,
        "-ERR wrong number of arguments for 'eget' command\r\n"
    );
    // Inline commands, as telnet sends them.
    c.send_raw(b"PING\r\n").await;
    assert_eq!(c.read().await, Frame::simple("PONG"));
    // An empty request is ignored, as Redis ignores it.
    c.send_raw(b"*0\r\n\r\n").await;
    assert_eq!(c.call_raw("PING").await, "+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_follow_the_protocol_chosen_with_hello() {
    let server = start(ServerConfig::default()).await;
    let mut c = server.client().await;
    // RESP2 by default: maps are flat arrays, null is $-1, booleans are integers.
    let append = c
        .call_raw(&format!(
            "EAPPEND s E EVENT_ID {KEY} TIMESTAMP 1700000000000 PAYLOAD p"
        ))
        .await;
    assert!(append.starts_with("*12\r\n+event_id\r\n+"), "{append}");
    assert_eq!(c.call_raw("ESVER nope").await, "$-1\r\n");
    assert!(
        c.call_raw("ESCAN s - +")
            .await
            .starts_with("*4\r\n+has_more\r\n:0\r\n")
    );
    // HELLO 3 switches; the HELLO reply itself is in the new protocol.
    let hello = c.call_raw("HELLO 3").await;
    assert!(
        hello.starts_with("%9\r\n$6\r\nserver\r\n$8\r\nsierradb\r\n"),
        "{hello}"
    );
    assert_eq!(c.call_raw("ESVER nope").await, "_\r\n");
    assert!(
        c.call_raw("ESCAN s - +")
            .await
            .starts_with("%2\r\n+has_more\r\n#f\r\n")
    );
    // HELLO with no version keeps the protocol.
    assert!(c.call_raw("HELLO").await.starts_with("%9\r\n"));
    // HELLO 2 goes back.
    assert!(c.call_raw("HELLO 2").await.starts_with("*18\r\n"));
    assert_eq!(c.call_raw("ESVER nope").await, "$-1\r\n");
    // RESET also goes back to RESP2.
    c.call("HELLO 3").await;
    assert_eq!(c.call_raw("RESET").await, "+RESET\r\n");
    assert_eq!(c.call_raw("ESVER nope").await, "$-1\r\n");
    // Pushes are arrays in RESP2.
    c.send("ESUB s FROM 0").await;
    let id = text(&c.read().await);
    assert_eq!(
        String::from_utf8(c.read_raw().await).unwrap(),
        format!("*3\r\n+subscribe\r\n+{id}\r\n:1\r\n")
    );
    let message = String::from_utf8(c.read_raw().await).unwrap();
    assert!(
        message.starts_with(&format!(
            "*4\r\n+message\r\n+{id}\r\n:0\r\n*22\r\n+event_id\r\n"
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_client_and_command_commands() {
    let server = start(ServerConfig {
        version: "9.9.9".into(),
        peer_id: "node-a".into(),
        ..ServerConfig::default()
    })
    .await;
    let mut c = server.client().await;
    let hello = c.call("HELLO 3 AUTH default secret SETNAME app-1").await;
    assert_eq!(text(field(&hello, "server")), "sierradb");
    assert_eq!(text(field(&hello, "version")), "9.9.9");
    assert_eq!(int_field(&hello, "proto"), 3);
    assert_eq!(text(field(&hello, "mode")), "standalone");
    assert_eq!(text(field(&hello, "role")), "master");
    assert_eq!(field(&hello, "modules"), &Frame::array(vec![]));
    assert_eq!(text(field(&hello, "peer_id")), "node-a");
    assert_eq!(int_field(&hello, "num_partitions"), 32);
    let id = int_field(&hello, "id");
    assert_eq!(c.call("CLIENT ID").await, Frame::int(id));
    assert_eq!(text(&c.call("CLIENT GETNAME").await), "app-1");
    assert_eq!(c.call_raw("CLIENT SETNAME worker").await, "+OK\r\n");
    assert_eq!(text(&c.call("CLIENT GETNAME").await), "worker");
    assert_eq!(c.call_raw("CLIENT SETINFO LIB-NAME test").await, "+OK\r\n");
    assert_eq!(
        c.call_raw("HELLO 4").await,
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        c.call_raw("HELLO 3 FOO").await,
        "-ERR Syntax error in HELLO option 'FOO'\r\n"
    );
    assert_eq!(
        c.call_raw("CLIENT KILL x").await,
        "-ERR unknown subcommand 'KILL' for 'client'\r\n"
    );
    assert_eq!(
        c.call_args(&[b"CLIENT", b"SETNAME", b"a b"]).await,
        Frame::SimpleError(Bytes::from(
            "ERR Client names cannot contain spaces, newlines or special characters."
        ))
    );
    let count = c.call("COMMAND COUNT").await.as_integer().unwrap();
    let Frame::Array(list) = c.call("COMMAND").await else {
        panic!("COMMAND is an array");
    };
    assert_eq!(list.len() as i64, count);
    assert_eq!(c.call_raw("COMMAND DOCS").await, "%0\r\n");
    // Another connection gets another id.
    let mut other = server.client().await;
    assert_ne!(other.call("CLIENT ID").await, Frame::int(id));
    assert_eq!(other.call_raw("CLIENT GETNAME").await, "$-1\r\n");
    // QUIT answers, then closes.
    assert_eq!(c.call_raw("QUIT").await, "+OK\r\n");
    c.assert_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reports_every_section() {
    let server = start(ServerConfig::default()).await;
    let mut a = server.client3().await;
    let mut b = server.client3().await;
    subscribe(&mut a, "ESUB s", 1).await;
    subscribe(&mut b, "EPSUB *", 1).await;
    subscribe(&mut b, "EPSUB 1", 2).await;
    let info = text(&a.call("INFO").await);
    for line in [
        "# Server\r\nserver:sierradb\r\n",
        &format!("tcp_port:{}\r\n", server.addr.port()),
        "# Clients\r\nconnected_clients:2\r\nmaxclients:10000\r\n",
        "# Storage\r\npartitions:32\r\nbuckets:4\r\nsegments:4\r\n",
        "# Subscriptions\r\nconnection_subscriptions:1\r\ntotal_subscriptions:3\r\n",
        "# Cluster\r\ncluster_enabled:0\r\nnodes:1\r\nreplication_factor:1\r\nbuckets_led:4\r\n",
    ] {
        assert!(info.contains(line), "{line:?} not in {info:?}");
    }
    let storage = text(&b.call("INFO storage").await);
    assert!(storage.starts_with("# Storage\r\n") && !storage.contains("# Server"));
    let subs = text(&b.call("INFO SUBSCRIPTIONS").await);
    assert!(subs.contains("connection_subscriptions:2\r\n"), "{subs}");
    assert_eq!(text(&b.call("INFO cache").await), "");
}

// ------------------------------------------------------------------ commands

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_commands_append_and_read() {
    let server = start(ServerConfig::default()).await;
    let mut c = server.client3().await;
    let first = c
        .call("EAPPEND user-123 UserRegistered EXPECTED_VERSION empty PAYLOAD {} METADATA m")
        .await;
    // The stream's default key is SierraDB's UUIDv5 derivation.
    assert_eq!(
        text(field(&first, "partition_key")),
        "7e124fe8-fe28-5398-bb95-53973100148f"
    );
    assert_eq!(int_field(&first, "partition_id"), 21);
    assert_eq!(int_field(&first, "stream_version"), 0);
    // A generated event id carries the partition hash in bits 61..46, as SierraDB's do.
    let event_id = uuid::Uuid::parse_str(&text(field(&first, "event_id"))).unwrap();
    let key = uuid::Uuid::parse_str("7e124fe8-fe28-5398-bb95-53973100148f").unwrap();
    assert_eq!(
        (event_id.as_u128() >> 46) & 0xFFFF,
        (key.as_u128() >> 46) & 0xFFFF
    );
    assert_eq!((event_id.as_u128() >> 64) & 0xF, 0x7);
    let second = c
        .call("EAPPEND user-123 EmailVerified EXPECTED_VERSION 0")
        .await;
    assert_eq!(int_field(&second, "stream_version"), 1);
    assert_eq!(int_field(&second, "partition_sequence"), 1);

    // EGET by generated id and by a client id that embeds no partition hash.
    let got = c.call(&format!("EGET {event_id}")).await;
    assert_eq!(text(field(&got, "event_name")), "UserRegistered");
    assert_eq!(text(field(&got, "metadata")), "m");
    let mine = "00000000-0000-4000-8000-000000000002";
    c.call(&format!("EAPPEND other E EVENT_ID {mine}")).await;
    let got = c.call(&format!("EGET {mine}")).await;
    assert_eq!(text(field(&got, "stream_id")), "other");
    assert_eq!(
        c.call("EGET 00000000-0000-0000-0000-00000000dead").await,
        Frame::Null
    );

    // ESCAN forward, bounded, and reversed.
    let scan = c.call("ESCAN user-123 - +").await;
    assert_eq!(field(&scan, "has_more"), &Frame::boolean(false));
    let Frame::Array(events) = field(&scan, "events") else {
        panic!("events is an array");
    };
    assert_eq!(events.len(), 2);
    let scan = c.call("ESCAN user-123 0 + COUNT 1").await;
    assert_eq!(field(&scan, "has_more"), &Frame::boolean(true));
    let scan = c.call("ESCAN user-123 - + REV COUNT 1").await;
    let Frame::Array(events) = field(&scan, "events") else {
        panic!("events is an array");
    };
    assert_eq!(int_field(&events[0], "stream_version"), 1);

    // ESVER and EPSEQ.
    assert_eq!(c.call("ESVER user-123").await, Frame::int(1));
    assert_eq!(c.call("ESVER nope").await, Frame::Null);
    assert_eq!(
        c.call(&format!("ESVER user-123 PARTITION_KEY {KEY}")).await,
        Frame::Null
    );
    assert_eq!(c.call("EPSEQ 21").await, Frame::int(1));
    assert_eq!(
        c.call("EPSEQ 7e124fe8-fe28-5398-bb95-53973100148f").await,
        Frame::int(1)
    );
    assert_eq!(c.call("EPSEQ 0").await, Frame::Null);

    // EMAPPEND: atomic, one partition, versions chain for a repeated stream.
    let multi = c
        .call(&format!(
            "EMAPPEND {KEY} stream1 EventA EXPECTED_VERSION empty stream2 EventB stream1 EventC EXPECTED_VERSION 0"
        ))
        .await;
    assert_eq!(text(field(&multi, "partition_key")), KEY);
    assert_eq!(int_field(&multi, "partition_id"), 25);
    assert_eq!(int_field(&multi, "first_partition_sequence"), 0);
    assert_eq!(int_field(&multi, "last_partition_sequence"), 2);
    let Frame::Array(events) = field(&multi, "events") else {
        panic!("events is an array");
    };
    let versions: Vec<(String, i64)> = events
        .iter()
        .map(|e| (text(field(e, "stream_id")), int_field(e, "stream_version")))
        .collect();
    assert_eq!(
        versions,
        vec![
            ("stream1".into(), 0),
            ("stream2".into(), 0),
            ("stream1".into(), 1)
        ]
    );
    // The stream lives under its explicit key, not its default one.
    let scan = c.call("ESCAN stream1 - +").await;
    assert_eq!(field(&scan, "events"), &Frame::array(vec![]));
    let scan = c
        .call(&format!("ESCAN stream1 - + PARTITION_KEY {KEY}"))
        .await;
    let Frame::Array(events) = field(&scan, "events") else {
        panic!("events is an array");
    };
    assert_eq!(events.len(), 2);

    // EPSCAN by id and by key.
    let scan = c.call("EPSCAN 25 - + COUNT 2").await;
    assert_eq!(field(&scan, "has_more"), &Frame::boolean(true));
    let scan = c.call(&format!("EPSCAN {KEY} 1 2")).await;
    let Frame::Array(events) = field(&scan, "events") else {
        panic!("events is an array");
    };
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| int_field(e, "partition_sequence"))
        .collect();
    assert_eq!(sequences, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_an_append_with_the_same_event_id_returns_the_original_result() {
    let server = start(ServerConfig::default()).await;
    let mut c = server.client().await;
    let id = "0190b1a2-0000-7000-8000-000000000001";
    let line = format!("EAPPEND retry E EVENT_ID {id} EXPECTED_VERSION empty PAYLOAD once");
    let first = c.call_raw(&line).await;
    // Later appends must not change what the retry answers.
    c.call("EAPPEND retry E2 EXPECTED_VERSION 0").await;
    let again = c.call_raw(&line).await;
    assert_eq!(first, again);
    assert_eq!(c.call("ESVER retry").await, Frame::int(1));
    // The same id with other content is a conflict, not a retry.
    let conflict = c
        .call(&format!("EAPPEND retry E EVENT_ID {id} PAYLOAD other"))
        .await;
    assert_eq!(
        error(&conflict),
        format!(
            "DBOPFAILED database operation failed: event id {id} is already stored with different content"
        )
    );
    // EMAPPEND retries too.
    let multi = format!(
        "EMAPPEND {KEY} m1 A EVENT_ID 0190b1a2-0000-7000-8000-0000000000a1 m2 B EVENT_ID 0190b1a2-0000-7000-8000-0000000000a2"
    );
    let first = c.call_raw(&multi).await;
    assert_eq!(c.call_raw(&multi).await, first);
    assert_eq!(c.call("EPSEQ 25").await, Frame::int(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pipelined_commands_in_one_write_are_answered_in_order() {
    let server = start(ServerConfig::default()).await;
    let mut c = server.client().await;
    let mut batch = Vec::new();
    for i in 0..1000u64 {
        if i % 2 == 0 {
            let expected = match i {
                0 => "empty".to_owned(),
                _ => (i / 2 - 1).to_string(),
            };
            batch.extend(request(&[
                b"EAPPEND",
                b"pipe",
                b"E",
                b"EXPECTED_VERSION",
                expected.as_bytes(),
            ]));
        } else {
            batch.extend(request(&[b"PING", i.to_string().as_bytes()]));
        }
    }
    c.send_raw(&batch).await;
    for i in 0..1000u64 {
        let reply = c.read().await;
        if i % 2 == 0 {
            // RESP2: a flat array; stream_version is the 10th item.
            let items = reply.as_array().unwrap_or_else(|| panic!("{i}: {reply:?}"));
            assert_eq!(text(&items[8]), "stream_version");
            assert_eq!(items[9], Frame::int((i / 2) as i64), "reply {i}");
        } else {
            assert_eq!(text(&reply), i.to_string());
        }
    }
    assert_eq!(c.call("ESVER pipe").await, Frame::int(499));
}

// ------------------------------------------------------------------ errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_error() {
    let mut server = start(ServerConfig {
        max_subscriptions_per_connection: 2,
        ..ServerConfig::default()
    })
    .await;
    let mut c = server.client3().await;
    // WRONGVER, byte for byte SierraDB's.
    assert_eq!(
        c.call_raw("EAPPEND orders OrderPlaced EXPECTED_VERSION 5 PAYLOAD {}")
            .await,
        "-WRONGVER current stream version is empty but expected 5 for partition key 4a5bf0d6-7d0e-50b2-b05f-ea5a8c8b597f and stream id orders\r\n"
    );
    // INVALIDARG from the parser.
    assert_eq!(
        c.call_raw("EGET not-a-uuid").await,
        "-INVALIDARG invalid event id 'not-a-uuid': expected a UUID\r\n"
    );
    assert_eq!(
        c.call_raw("EAPPEND s E EXPECTED_VERSION -1").await,
        "-INVALIDARG invalid expected version '-1': expected a version number or 'any', 'exists', 'empty'\r\n"
    );
    assert_eq!(
        c.call_raw("EPSCAN 42 100 200 COUNT 50").await,
        "-INVALIDARG partition 42 does not exist (there are 32)\r\n"
    );
    assert_eq!(
        c.call_raw("ESCAN s + +").await,
        "-INVALIDARG start version cannot be '+'\r\n"
    );
    // DBOPFAILED: a stream keeps its partition key.
    c.call(&format!("EAPPEND keyed E PARTITION_KEY {KEY}"))
        .await;
    assert_eq!(
        c.call_raw(&format!(
            "EAPPEND keyed E PARTITION_KEY {KEY_SAME_PARTITION}"
        ))
        .await,
        format!(
            "-DBOPFAILED database operation failed: partition key must be the same for all events in a stream: expected {KEY}, got {KEY_SAME_PARTITION}\r\n"
        )
    );
    // NOTFOUND.
    assert_eq!(
        c.call_raw(&format!("EACK {KEY} 1000")).await,
        "-NOTFOUND subscription not found\r\n"
    );
    assert_eq!(
        c.call_raw(&format!("EUNSUB {KEY}")).await,
        "-NOTFOUND subscription not found\r\n"
    );
    // Subscription limits.
    assert_eq!(
        c.call_raw("ESUB s WINDOW 100001").await,
        "-INVALIDARG window 100001 exceeds the maximum of 100000\r\n"
    );
    let id = subscribe(&mut c, "ESUB s", 1).await;
    subscribe(&mut c, "ESUB t", 2).await;
    assert_eq!(
        c.call_raw("ESUB u").await,
        "-ERR max number of subscriptions per connection reached (2)\r\n"
    );
    assert_eq!(
        c.call_raw(&format!("EACK {id} 0")).await,
        format!("-INVALIDARG cannot acknowledge cursor 0: 0 messages delivered so far\r\n")
    );
    // A payload over the store's transaction limit.
    let big = vec![b'x'; 100 * 1024];
    let reply = c
        .call_args(&[b"EAPPEND", b"big", b"E", b"PAYLOAD", &big])
        .await;
    assert!(
        error(&reply).starts_with("INVALIDARG transaction of "),
        "{reply:?}"
    );
    assert_eq!(c.call("ESVER big").await, Frame::Null);

    // READERR: corrupt the stored bytes of an event, then read it.
    let marker = "corrupt-me-please-0123456789";
    let appended = c.call(&format!("EAPPEND rot E PAYLOAD {marker}")).await;
    let event_id = text(field(&appended, "event_id"));
    corrupt(server.dir.path(), marker.as_bytes());
    let reply = c.call(&format!("EGET {event_id}")).await;
    assert!(
        error(&reply).starts_with("READERR read error: corrupt data in "),
        "{reply:?}"
    );
    let reply = c.call("ESCAN rot - +").await;
    assert!(error(&reply).starts_with("READERR "), "{reply:?}");
    // A subscription that meets the damage says so, then ends.
    let mut reader = server.client3().await;
    let sub = subscribe(&mut reader, "ESUB rot FROM 0", 1).await;
    let (kind, id, rest) = push(&reader.read().await);
    assert_eq!((kind.as_str(), id.as_str()), ("error", sub.as_str()));
    assert!(text(&rest[0]).starts_with("READERR read error: corrupt data in "));
    let (kind, id, rest) = push(&reader.read().await);
    assert_eq!((kind.as_str(), id.as_str()), ("unsubscribe", sub.as_str()));
    assert_eq!(rest, vec![Frame::int(0)]);
    assert_eq!(
        error(&reader.call(&format!("EACK {sub} 0")).await),
        "NOTFOUND subscription not found"
    );

    // TRYAGAIN: the store no longer takes appends.
    server.db.shutdown().await;
    assert_eq!(
        c.call_raw("EAPPEND late E").await,
        "-TRYAGAIN append not written, retry later: the store is shut down\r\n"
    );
    // The connection still serves reads.
    assert_eq!(c.call("ESVER orders").await, Frame::Null);
    server.stop().await.unwrap();
}

/// Flips a byte inside the first occurrence of `marker` in any file under `dir`.
fn corrupt(dir: &Path, marker: &[u8]) {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    files(dir, &mut all);
    all.sort();
    for path in all {
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(marker.len()).position(|w| w == marker) {
            bytes[at] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            return;
        }
    }
    panic!("marker not found on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_versioning_refuses_any_exists_and_missing() {
    let server = start(ServerConfig {
        strict_versioning: true,
        ..ServerConfig::default()
    })
    .await;
    let mut c = server.client().await;
    for (line, word) in [
        (
            "EAPPEND strict-test Ev EXPECTED_VERSION any PAYLOAD {}",
            "any",
        ),
        ("EAPPEND strict-test Ev PAYLOAD {}", "any"),
        (
            "EAPPEND strict-test Ev EXPECTED_VERSION exists PAYLOAD {}",
            "exists",
        ),
    ] {
        assert_eq!(
            c.call_raw(line).await,
            format!("-INVALIDARG strict versioning mode rejects EXPECTED_VERSION {word}\r\n")
        );
    }
    assert_eq!(
        c.call_raw(&format!("EMAPPEND {KEY} a E EXPECTED_VERSION empty b E"))
            .await,
        "-INVALIDARG strict versioning mode rejects EXPECTED_VERSION any\r\n"
    );
    assert!(!matches!(
        c.call("EAPPEND strict-test Ev EXPECTED_VERSION empty")
            .await,
        Frame::SimpleError(_)
    ));
    assert!(!matches!(
        c.call("EAPPEND strict-test Ev EXPECTED_VERSION 0").await,
        Frame::SimpleError(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused() {
    let server = start(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    })
    .await;
    let mut first = server.client().await;
    assert_eq!(first.call_raw("PING").await, "+PONG\r\n");
    let mut second = server.client().await;
    assert_eq!(
        String::from_utf8(second.read_raw().await).unwrap(),
        "-ERR max number of clients reached\r\n"
    );
    second.assert_closed().await;
    // Once the first leaves, a new client is served.
    drop(first);
    for _ in 0..100 {
        let mut next = server.client().await;
        next.send("PING").await;
        if next.read().await == Frame::simple("PONG") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the slot was never freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_closes_only_that_connection_and_changes_nothing() {
    let server = start(ServerConfig::default()).await;
    let mut keeper = server.client3().await;
    append_many(&mut keeper, "kept", 0, 3).await;
    let before = keeper.call("ESCAN kept - +").await;
    let sequence = keeper.call("EPSEQ kept").await;

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"\x00\x01\x02garbage\r\n".to_vec(),
            "-ERR Protocol error: invalid type byte 0x00\r\n",
        ),
        (
            b"*1\r\n$4294967296\r\n".to_vec(),
            "-ERR Protocol error: blob string length 4294967296 exceeds max_bulk_bytes (67108864)\r\n",
        ),
        (
            b"*4294967296\r\n".to_vec(),
            "-ERR Protocol error: array length 4294967296 exceeds max_elements (1048576)\r\n",
        ),
        (
            b"*1\r\n".repeat(10_000),
            "-ERR Protocol error: nesting exceeds max_depth (32)\r\n",
        ),
        (
            b"$4\r\nPING\r\n".to_vec(),
            "-ERR Protocol error: expected array, got blob string\r\n",
        ),
        (
            b"*2\r\n$4\r\nPING\r\n*0\r\n".to_vec(),
            "-ERR Protocol error: expected a string argument, got array\r\n",
        ),
        (
            b"*1\r\n$4\r\nPINGxx\r\n".to_vec(),
            "-ERR Protocol error: expected CRLF after blob string\r\n",
        ),
    ];
    for (bytes, expected) in cases {
        let mut c = server.client().await;
        c.send_raw(&bytes).await;
        assert_eq!(
            String::from_utf8(c.read_raw().await).unwrap(),
            expected,
            "{:?}",
            &bytes[..bytes.len().min(20)]
        );
        c.assert_closed().await;
    }

    // Half a frame, then the client goes away.
    let mut half = server.client().await;
    half.send_raw(b"*3\r\n$7\r\nEAPPEND\r\n$4\r\nkept\r\n$1\r\n")
        .await;
    drop(half);
    // A half frame that stays: the connection waits without harm.
    let mut waiting = server.client().await;
    waiting.send_raw(b"*2\r\n$4\r\nPING\r\n$5\r\nhel").await;
    waiting.assert_quiet().await;
    waiting.send_raw(b"lo\r\n").await;
    assert_eq!(text(&waiting.read().await), "hello");

    // Bad values are errors on a connection that stays usable.
    let mut c = server.client().await;
    assert!(error(&c.call("EGET 1234").await).starts_with("INVALIDARG"));
    assert!(error(&c.call("EAPPEND kept E EVENT_ID zz").await).starts_with("INVALIDARG"));
    assert!(error(&c.call("ESUB kept FROM x").await).starts_with("INVALIDARG"));
    assert_eq!(c.call_raw("PING").await, "+PONG\r\n");

    // Others were served throughout, and nothing stored changed.
    assert_eq!(keeper.call("ESCAN kept - +").await, before);
    assert_eq!(keeper.call("EPSEQ kept").await, sequence);
}

// ------------------------------------------------------------------ subscriptions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_receives_history_then_live_events_without_gap_duplicate_or_reorder() {
    let server = start(ServerConfig::default()).await;
    let mut writer = server.client3().await;
    append_many(&mut writer, "live", 0, 50).await;
    let mut sub = server.client3().await;
    let id = subscribe(&mut sub, "ESUB live FROM 0", 1).await;

    // The exact bytes of the first push.
    let first = String::from_utf8(sub.read_raw().await).unwrap();
    assert!(
        first.starts_with(&format!(
            ">4\r\n+message\r\n+{id}\r\n:0\r\n%11\r\n+event_id\r\n+"
        )),
        "{first}"
    );
    assert!(first.ends_with("+payload\r\n$6\r\nlive:0\r\n"), "{first}");

    // Live appends from another connection while history is still being delivered.
    let addr = server.addr;
    let appender = tokio::spawn(async move {
        let mut c = Client::connect(addr).await;
        append_many(&mut c, "live", 50, 150).await;
    });
    for expected in 1..200i64 {
        let (cursor, event) = message(&mut sub, &id).await;
        assert_eq!(cursor, expected);
        assert_eq!(int_field(&event, "stream_version"), expected);
        assert_eq!(text(field(&event, "payload")), format!("live:{expected}"));
    }
    with_timeout(appender).await.unwrap().unwrap();
    sub.assert_quiet().await;
    // Still live afterwards.
    writer.call("EAPPEND live E EXPECTED_VERSION 199").await;
    let (cursor, event) = message(&mut sub, &id).await;
    assert_eq!((cursor, int_field(&event, "stream_version")), (200, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_stream_and_partition_subscriptions_keep_per_target_order() {
    let server = start(ServerConfig::default()).await;
    let mut writer = server.client3().await;
    append_many(&mut writer, "a", 0, 40).await;
    append_many(&mut writer, "b", 0, 5).await;
    let mut sub = server.client3().await;
    let streams = subscribe(&mut sub, "ESUB a b FROM MAP a=10 b=0 WINDOW 1000", 1).await;
    let all = subscribe(&mut sub, "EPSUB * FROM 0", 2).await;

    let addr = server.addr;
    let mut appenders = Vec::new();
    for stream in ["c", "d", "e"] {
        appenders.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            append_many(&mut c, stream, 0, 30).await;
        }));
    }
    for appender in appenders {
        with_timeout(appender).await.unwrap().unwrap();
    }
    // Streams a (from 10) and b (from 0): 35 events. Partitions: 45 + 90 events.
    let mut stream_cursor = 0;
    let mut partition_cursor = 0;
    let mut next_version: BTreeMap<String, i64> =
        BTreeMap::from([("a".into(), 10), ("b".into(), 0)]);
    let mut next_sequence: BTreeMap<i64, i64> = BTreeMap::new();
    let mut per_stream_seen: BTreeMap<String, i64> = BTreeMap::new();
    while stream_cursor < 35 || partition_cursor < 135 {
        let frame = sub.read().await;
        let (kind, id, rest) = push(&frame);
        assert_eq!(kind, "message");
        let cursor = rest[0].as_integer().unwrap();
        let event = &rest[1];
        let stream = text(field(event, "stream_id"));
        if id == streams {
            assert_eq!(cursor, stream_cursor);
            stream_cursor += 1;
            let next = next_version.get_mut(&stream).unwrap();
            assert_eq!(int_field(event, "stream_version"), *next, "{stream}");
            *next += 1;
        } else {
            assert_eq!(id, all);
            assert_eq!(cursor, partition_cursor);
            partition_cursor += 1;
            let partition = int_field(event, "partition_id");
            let next = next_sequence.entry(partition).or_insert(0);
            assert_eq!(int_field(event, "partition_sequence"), *next);
            *next += 1;
            *per_stream_seen.entry(stream).or_insert(0) += 1;
        }
    }
    assert_eq!(
        per_stream_seen,
        BTreeMap::from([
            ("a".into(), 40),
            ("b".into(), 5),
            ("c".into(), 30),
            ("d".into(), 30),
            ("e".into(), 30)
        ])
    );
    sub.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_holds_deliveries_until_acknowledged() {
    let server = start(ServerConfig::default()).await;
    let mut writer = server.client3().await;
    append_many(&mut writer, "w", 0, 20).await;
    let mut sub = server.client3().await;
    let id = subscribe(&mut sub, "ESUB w FROM 0 WINDOW 5", 1).await;
    for expected in 0..5 {
        assert_eq!(message(&mut sub, &id).await.0, expected);
    }
    sub.assert_quiet().await;
    // Acking cursor 2 allows cursors up to 2 + 5 = 7.
    assert_eq!(sub.call(&format!("EACK {id} 2")).await, Frame::simple("OK"));
    for expected in 5..8 {
        assert_eq!(message(&mut sub, &id).await.0, expected);
    }
    sub.assert_quiet().await;
    // Acks are monotonic: a lower one changes nothing.
    assert_eq!(sub.call(&format!("EACK {id} 1")).await, Frame::simple("OK"));
    sub.assert_quiet().await;
    // Nothing beyond what was delivered can be acked.
    assert_eq!(
        error(&sub.call(&format!("EACK {id} 8")).await),
        "INVALIDARG cannot acknowledge cursor 8: 8 messages delivered so far"
    );
    // A slow subscriber holds back only itself: another subscription and connection flow.
    let mut other = server.client3().await;
    let free = subscribe(&mut other, "ESUB w FROM 0", 1).await;
    for expected in 0..20 {
        assert_eq!(message(&mut other, &free).await.0, expected);
    }
    assert_eq!(sub.call(&format!("EACK {id} 7")).await, Frame::simple("OK"));
    for expected in 8..13 {
        assert_eq!(message(&mut sub, &id).await.0, expected);
    }
    sub.assert_quiet().await;
}

/// A sample of the Prometheus text, by metric name.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Polls the metrics until the subscription lag is `want` — `[lag_max, undelivered_max,
/// undelivered, unacked]` — then checks that `INFO subscriptions` on `client` says the same.
async fn wait_for_lag(server: &Server, client: &mut Client, want: [u64; 4]) {
    let names = [
        "subscription_lag_max_events",
        "subscription_undelivered_max_events",
        "subscription_undelivered_events",
        "subscription_unacked_events",
    ];
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    loop {
        let text = server.db.render_metrics();
        let got = names.map(|name| metric(&text, &format!("sierradb_{name}")));
        if got == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lag stayed {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let info = text(&client.call("INFO subscriptions").await);
    for (name, value) in names.iter().zip(want) {
        assert!(
            info.contains(&format!("\r\n{name}:{value}\r\n")),
            "{name}:{value} not in {info}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_lag_grows_while_unacknowledged_and_returns_to_zero_after_acks() {
    let server = start(ServerConfig::default()).await;
    let mut writer = server.client3().await;
    let mut sub = server.client3().await;
    let id = subscribe(&mut sub, "ESUB lagging WINDOW 4", 1).await;
    wait_for_lag(&server, &mut sub, [0, 0, 0, 0]).await;
    // Three events: all pushed, none acknowledged.
    append_many(&mut writer, "lagging", 0, 3).await;
    for cursor in 0..3 {
        assert_eq!(message(&mut sub, &id).await.0, cursor);
    }
    wait_for_lag(&server, &mut sub, [3, 0, 0, 3]).await;
    // Seven more: the window holds back all but one, so six wait undelivered.
    append_many(&mut writer, "lagging", 3, 7).await;
    assert_eq!(message(&mut sub, &id).await.0, 3);
    wait_for_lag(&server, &mut sub, [10, 6, 6, 4]).await;
    // Acking cursor 3 admits cursors 4..=7.
    assert_eq!(sub.call(&format!("EACK {id} 3")).await, Frame::simple("OK"));
    for cursor in 4..8 {
        assert_eq!(message(&mut sub, &id).await.0, cursor);
    }
    wait_for_lag(&server, &mut sub, [6, 2, 2, 4]).await;
    assert_eq!(sub.call(&format!("EACK {id} 7")).await, Frame::simple("OK"));
    for cursor in 8..10 {
        assert_eq!(message(&mut sub, &id).await.0, cursor);
    }
    wait_for_lag(&server, &mut sub, [2, 0, 0, 2]).await;
    assert_eq!(sub.call(&format!("EACK {id} 9")).await, Frame::simple("OK"));
    wait_for_lag(&server, &mut sub, [0, 0, 0, 0]).await;
    // Another subscriber that never acknowledges, from the start of the stream: its lag is
    // every stored event, and it ends with the subscription.
    let mut other = server.client3().await;
    let from_zero = subscribe(&mut other, "ESUB lagging FROM 0 WINDOW 100", 1).await;
    for cursor in 0..10 {
        assert_eq!(message(&mut other, &from_zero).await.0, cursor);
    }
    wait_for_lag(&server, &mut sub, [10, 0, 0, 10]).await;
    assert_eq!(
        other.call_args(&[b"EUNSUB", from_zero.as_bytes()]).await,
        Frame::simple("OK")
    );
    wait_for_lag(&server, &mut sub, [0, 0, 0, 0]).await;
    assert_eq!(
        metric(&server.db.render_metrics(), "sierradb_subscriptions"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_latest_never_receives_old_events() {
    let server = start(ServerConfig::default()).await;
    let mut writer = server.client3().await;
    append_many(&mut writer, "old", 0, 10).await;
    let mut sub = server.client3().await;
    let explicit = subscribe(&mut sub, "ESUB old FROM LATEST", 1).await;
    let implicit = subscribe(&mut sub, "ESUB old", 2).await;
    sub.assert_quiet().await;
    append_many(&mut writer, "old", 10, 3).await;
    let mut seen: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for _ in 0..6 {
        let frame = sub.read().await;
        let (kind, id, rest) = push(&frame);
        assert_eq!(kind, "message");
        seen.entry(id).or_default().push((
            rest[0].as_integer().unwrap(),
            int_field(&rest[1], "stream_version"),
        ));
    }
    for id in [explicit, implicit] {
        assert_eq!(seen[&id], vec![(0, 10), (1, 11), (2, 12)]);
    }
    sub.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epsub_from_latest_never_receives_old_events() {
    let server = start(ServerConfig::default()).await;
    let mut writer = server.client3().await;
    append_many(&mut writer, "old", 0, 10).await;
    let mut sub = server.client3().await;
    // The partition of stream `old`, by its key.
    let key = text(field(
        &writer.call("EAPPEND old E EXPECTED_VERSION 9").await,
        "partition_key",
    ));
    let id = subscribe(&mut sub, &format!("EPSUB {key} FROM LATEST"), 1).await;
    sub.assert_quiet().await;
    writer.call("EAPPEND old E EXPECTED_VERSION 10").await;
    let (cursor, event) = message(&mut sub, &id).await;
    assert_eq!((cursor, int_field(&event, "stream_version")), (0, 11));
    sub.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eunsub_and_reset_stop_pushes() {
    let server = start(ServerConfig::default()).await;
    let mut writer = server.client3().await;
    let mut sub = server.client3().await;
    let first = subscribe(&mut sub, "ESUB u", 1).await;
    let second = subscribe(&mut sub, "EPSUB *", 2).await;
    writer.call("EAPPEND u E EXPECTED_VERSION empty").await;
    let mut kinds = BTreeMap::new();
    for _ in 0..2 {
        let (kind, id, _) = push(&sub.read().await);
        assert_eq!(kind, "message");
        *kinds.entry(id).or_insert(0) += 1;
    }
    assert_eq!(
        kinds,
        BTreeMap::from([(first.clone(), 1), (second.clone(), 1)])
    );
    assert_eq!(sub.call_raw(&format!("EUNSUB {first}")).await, "+OK\r\n");
    assert_eq!(
        String::from_utf8(sub.read_raw().await).unwrap(),
        format!(">3\r\n+unsubscribe\r\n+{first}\r\n:1\r\n")
    );
    writer.call("EAPPEND u E EXPECTED_VERSION 0").await;
    let (kind, id, _) = push(&sub.read().await);
    assert_eq!((kind.as_str(), id.as_str()), ("message", second.as_str()));
    sub.assert_quiet().await;
    assert_eq!(
        error(&sub.call(&format!("EACK {first} 0")).await),
        "NOTFOUND subscription not found"
    );
    // RESET drops every subscription without pushes.
    assert_eq!(sub.call_raw("RESET").await, "+RESET\r\n");
    writer.call("EAPPEND u E EXPECTED_VERSION 1").await;
    sub.assert_quiet().await;
    let info = text(&writer.call("INFO subscriptions").await);
    assert!(info.contains("total_subscriptions:0\r\n"), "{info}");
    // A subscription on a connection that goes away ends with it.
    let mut gone = server.client3().await;
    subscribe(&mut gone, "EPSUB *", 1).await;
    drop(gone);
    for _ in 0..100 {
        let info = text(&writer.call("INFO subscriptions").await);
        if info.contains("total_subscriptions:0\r\n") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the subscription outlived its connection");
}

// ------------------------------------------------------------------ shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_what_it_took_then_closes_everything() {
    let mut server = start(ServerConfig::default()).await;
    let mut a = server.client().await;
    let mut b = server.client3().await;
    subscribe(&mut b, "EPSUB *", 1).await;
    assert_eq!(a.call_raw("PING").await, "+PONG\r\n");
    // An append whose request is on the wire when the shutdown starts.
    a.send("EAPPEND down E EXPECTED_VERSION empty").await;
    let reply = a.read().await;
    assert!(!matches!(reply, Frame::SimpleError(_)), "{reply:?}");
    server.stop().await.unwrap();
    a.assert_closed().await;
    b.assert_closed().await;
    // The listener is gone.
    assert!(TcpStream::connect(server.addr).await.is_err());
    // What was acknowledged is stored.
    assert_eq!(
        server
            .db
            .store()
            .stream_version(
                db::model::PartitionKey::for_stream(&db::model::StreamId::new("down").unwrap()),
                &db::model::StreamId::new("down").unwrap()
            )
            .map(|v| v.0),
        Some(0)
    );
}

// ------------------------------------------------------------------ exact bytes

/// Renders reply bytes for a snapshot: CRLF shown as `\r\n` and a line break, other control
/// bytes escaped, so the snapshot is both exact and readable.
fn render(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.push_str("\\r\\n\n");
                i += 1;
            }
            b if b.is_ascii_graphic() || b == b' ' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
        i += 1;
    }
    out
}

/// Runs the same script of every command on a fresh server and records each reply's bytes.
async fn transcript(hello: &str) -> String {
    let server = start(ServerConfig {
        version: "0.1.0".into(),
        peer_id: "test-peer".into(),
        ..ServerConfig::default()
    })
    .await;
    let mut c = server.client().await;
    let mut out = String::new();
    let ts = "TIMESTAMP 1795745539215";
    let id = |n: u8| format!("01a21ac6-648f-78f7-bb95-6feef04f9c{n:02x}");
    let step = |out: &mut String, line: &str, bytes: Vec<u8>| {
        out.push_str("> ");
        out.push_str(line);
        out.push('\n');
        out.push_str(&render(&bytes));
    };
    let script: Vec<String> = vec![
        hello.into(),
        "PING".into(),
        "PING hi".into(),
        format!(
            "EAPPEND user-123 UserRegistered EVENT_ID {} EXPECTED_VERSION empty {ts} PAYLOAD {{\"name\":\"Alice\"}}",
            id(1)
        ),
        format!(
            "EAPPEND user-123 EmailVerified EVENT_ID {} EXPECTED_VERSION 0 {ts} METADATA {{\"m\":1}}",
            id(2)
        ),
        format!(
            "EMAPPEND {KEY} stream1 EventA EVENT_ID {} EXPECTED_VERSION empty {ts} stream2 EventB EVENT_ID {} {ts}",
            id(3),
            id(4)
        ),
        format!("EGET {}", id(1)),
        "EGET 00000000-0000-0000-0000-000000000000".into(),
        "ESCAN user-123 - +".into(),
        "ESCAN user-123 - + COUNT 1 REV".into(),
        format!("ESCAN stream1 - + PARTITION_KEY {KEY}"),
        "ESCAN nothing - +".into(),
        "ESVER user-123".into(),
        "ESVER nothing".into(),
        format!("EPSCAN {KEY} - + COUNT 1"),
        "EPSEQ 21".into(),
        "EPSEQ 0".into(),
        "EAPPEND orders OrderPlaced EXPECTED_VERSION 5".into(),
        "EAPPEND user-123 Dup EXPECTED_VERSION empty".into(),
        "EPSEQ 42".into(),
        "ESCAN s - -".into(),
        "FOO".into(),
        "EACK".into(),
        format!("EACK {KEY} 1"),
        "CLIENT SETNAME app".into(),
        "CLIENT GETNAME".into(),
        "CLIENT ID".into(),
        "COMMAND COUNT".into(),
        "COMMAND DOCS".into(),
        "HELLO 4".into(),
    ];
    for line in &script {
        c.send(line).await;
        let bytes = c.read_raw().await;
        step(&mut out, line, bytes);
    }
    // A subscription: its id, the subscribe push, one message (window 1), an ack releasing the
    // second, and the unsubscribe.
    let line = "ESUB user-123 FROM 0 WINDOW 1";
    c.send(line).await;
    let reply = c.read_raw().await;
    let sub = String::from_utf8(reply[1..reply.len() - 2].to_vec()).unwrap();
    let mut bytes = reply;
    bytes.extend(c.read_raw().await);
    bytes.extend(c.read_raw().await);
    step(&mut out, line, bytes);
    let line = format!("EACK {sub} 0");
    c.send(&line).await;
    let mut bytes = c.read_raw().await;
    bytes.extend(c.read_raw().await);
    step(&mut out, &line, bytes);
    let line = format!("EUNSUB {sub}");
    c.send(&line).await;
    let mut bytes = c.read_raw().await;
    bytes.extend(c.read_raw().await);
    step(&mut out, &line, bytes);
    c.assert_quiet().await;
    c.send("QUIT").await;
    let bytes = c.read_raw().await;
    step(&mut out, "QUIT", bytes);
    c.assert_closed().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_bytes_resp3() {
    insta::assert_snapshot!("transcript_resp3", transcript("HELLO 3").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_bytes_resp2() {
    insta::assert_snapshot!("transcript_resp2", transcript("HELLO 2").await);
}

/// Appends pipelined on one connection are submitted without waiting for each other's fsync,
/// so they share group commits, while their expected versions still chain in request order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_appends_share_fsyncs_and_keep_their_order() {
    let server = start(ServerConfig::default()).await;
    let mut client = server.client().await;
    let before = server.db.store().stats();
    append_many(&mut client, "piped", 0, 200).await;
    let after = server.db.store().stats();
    assert_eq!(after.transactions - before.transactions, 200);
    let syncs = after.syncs - before.syncs;
    assert!(syncs <= 100, "{syncs} fsyncs for 200 pipelined appends");
    let version = client.call("ESVER piped").await;
    assert_eq!(version, Frame::int(199));
}
