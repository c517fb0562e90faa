//! The simulated client network: its byte pipes keep order under random splits and delays,
//! push back on a fast writer, end and reset like TCP, refuse and stall under partitions; and
//! the real RESP3 server (`db::server::serve`) runs over it inside the deterministic executor,
//! with the same transcript and trace hash for the same seed.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use db::env::{Env, Instant};
use db::server::{ServerConfig, serve};
use db::{Db, StoreConfig};
use disk::SimDisk;
use net::{Frame, Limits, Listener, Protocol};
use sim::net::{DelayRange, Direction, NetConfig, SimNetwork, SimStream};
use sim::rt::{Sim, SimEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const SERVER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    6379,
);

/// A byte of a deterministic test pattern: position `i` of stream `tag`.
fn pattern(tag: u8, i: usize) -> u8 {
    (i as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(u32::from(tag))
        .to_le_bytes()[3]
}

fn pattern_bytes(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern(tag, i)).collect()
}

fn below(env: &SimEnv, bound: u64) -> u64 {
    env.random_u64() % bound
}

/// Writes `data` in writes of random sizes, sometimes pausing on the virtual clock.
async fn write_in_pieces(env: &SimEnv, stream: &mut SimStream, data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        let end = (at + 1 + below(env, 3_000) as usize).min(data.len());
        stream.write_all(&data[at..end]).await.unwrap();
        at = end;
        if below(env, 4) == 0 {
            env.sleep(Duration::from_micros(below(env, 100))).await;
        }
    }
}

/// Reads to end of file with buffers of random sizes; returns the bytes and each read's size.
async fn read_to_end(env: &SimEnv, stream: &mut SimStream) -> (Vec<u8>, Vec<usize>) {
    let mut data = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let mut buf = vec![0; 1 + below(env, 4_096) as usize];
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            return (data, sizes);
        }
        data.extend_from_slice(&buf[..n]);
        sizes.push(n);
    }
}

/// What one exchange of [`exchange`] observed.
#[derive(Debug, PartialEq, Eq)]
struct Exchange {
    read_sizes: Vec<usize>,
    delivery_hash: u64,
    trace_hash: u64,
    split_reads: u64,
    delayed_writes: u64,
}

const EXCHANGE_BYTES: usize = 20_000;

/// A client sends 20,000 bytes and shuts down; the server checks them and answers with
/// 20,000 of its own, then closes. Both directions split reads and writes at random and delay
/// each write by up to 300 µs.
fn exchange(seed: u64) -> Exchange {
    let mut sim = Sim::new(seed);
    let config = NetConfig {
        to_server_delay: DelayRange::between(Duration::ZERO, Duration::from_micros(300)),
        to_client_delay: DelayRange::between(Duration::from_micros(50), Duration::from_micros(300)),
        ..NetConfig::default()
    };
    let net = SimNetwork::new(sim.env(), seed, config);
    let mut listener = net.bind(SERVER).unwrap();
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();

    let (env, server_sizes) = (sim.env(), sizes.clone());
    sim.spawn("server", async move {
        let (mut stream, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, stream.peer_addr());
        let (data, read) = read_to_end(&env, &mut stream).await;
        assert!(
            data == pattern_bytes(1, EXCHANGE_BYTES),
            "client bytes intact"
        );
        server_sizes.lock().unwrap().extend(read);
        write_in_pieces(&env, &mut stream, &pattern_bytes(2, EXCHANGE_BYTES)).await;
    });
    let (env, client_net) = (sim.env(), net.clone());
    let client_sizes = sim.block_on(async move {
        let mut stream = client_net.connect(SERVER).unwrap();
        assert_eq!(stream.peer_addr(), SERVER);
        write_in_pieces(&env, &mut stream, &pattern_bytes(1, EXCHANGE_BYTES)).await;
        stream.shutdown().await.unwrap();
        let (data, read) = read_to_end(&env, &mut stream).await;
        assert!(
            data == pattern_bytes(2, EXCHANGE_BYTES),
            "server bytes intact"
        );
        read
    });
    sim.run_until_idle();
    assert_eq!(sim.task_count(), 0);
    assert_eq!(net.connection_count(), 0, "both ends dropped");
    let mut read_sizes = sizes.lock().unwrap().clone();
    read_sizes.extend(client_sizes);
    let faults = net.faults();
    Exchange {
        read_sizes,
        delivery_hash: net.delivery_hash(),
        trace_hash: sim.trace_hash(),
        split_reads: faults.split_reads,
        delayed_writes: faults.delayed_writes,
    }
}

// ------------------------------------------------------------------ pipes

#[test]
fn bytes_arrive_intact_and_in_order_across_random_splits_and_delays() {
    let mut tiny_reads = 0;
    for seed in 0..40 {
        let run = exchange(seed);
        assert!(run.split_reads > 0, "seed {seed}: {run:?}");
        assert!(run.delayed_writes > 0, "seed {seed}");
        tiny_reads += run.read_sizes.iter().filter(|&&n| n == 1).count();
    }
    assert!(tiny_reads > 40, "1-byte reads happen: {tiny_reads}");
}

#[test]
fn same_seed_splits_the_same_bytes_and_other_seeds_differ() {
    assert_eq!(exchange(7), exchange(7));
    let mut splits: Vec<Vec<usize>> = (0..10).map(|seed| exchange(seed).read_sizes).collect();
    splits.sort();
    splits.dedup();
    assert_eq!(splits.len(), 10, "every seed splits differently");
}

#[test]
fn a_mebibyte_writer_completes_only_as_the_reader_drains() {
    const TOTAL: usize = 1 << 20;
    const BUFFER: usize = 64 * 1024;
    let mut sim = Sim::new(3);
    let net = SimNetwork::new(sim.env(), 3, NetConfig::default());
    let mut listener = net.bind(SERVER).unwrap();
    let written = Arc::new(Mutex::new(0usize));
    let done = Arc::new(Mutex::new(false));

    let (writer_net, progress, finished) = (net.clone(), written.clone(), done.clone());
    sim.spawn("writer", async move {
        let mut stream = writer_net.connect(SERVER).unwrap();
        let data = pattern_bytes(3, TOTAL);
        let mut at = 0;
        while at < TOTAL {
            let n = stream.write(&data[at..]).await.unwrap();
            at += n;
            *progress.lock().unwrap() = at;
        }
        *finished.lock().unwrap() = true;
    });
    let (env, progress) = (sim.env(), written.clone());
    sim.spawn("reader", async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        // Let the writer fill the pipe before reading anything.
        env.sleep(Duration::from_millis(10)).await;
        let mut received = Vec::with_capacity(TOTAL);
        let mut buf = vec![0; 16 * 1024];
        while received.len() < TOTAL {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "no early end of file");
            received.extend_from_slice(&buf[..n]);
            let ahead = *progress.lock().unwrap() - received.len();
            assert!(
                ahead <= BUFFER,
                "the writer is at most one buffer ahead: {ahead}"
            );
            // A slow reader: the writer must keep waiting on it.
            env.sleep(Duration::from_micros(10)).await;
        }
        assert!(received == pattern_bytes(3, TOTAL));
    });

    sim.run_for(Duration::from_millis(5));
    assert_eq!(
        *written.lock().unwrap(),
        BUFFER,
        "blocked with a full buffer"
    );
    assert!(!*done.lock().unwrap());
    sim.run_until_idle();
    assert!(*done.lock().unwrap());
    assert_eq!(*written.lock().unwrap(), TOTAL);
    assert!(
        sim.now() > Instant(10_000_000 + 16 * 10_000),
        "the writer finished only after the reader drained, at the reader's pace: {:?}",
        sim.now()
    );
}

#[test]
fn shutdown_and_close_end_the_stream_after_the_bytes_sent() {
    let mut sim = Sim::new(5);
    let net = SimNetwork::new(sim.env(), 5, NetConfig::default());
    let mut listener = net.bind(SERVER).unwrap();
    let client_net = net.clone();
    sim.block_on(async move {
        let mut client = client_net.connect(SERVER).unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        assert_eq!(client.conn_id(), server.conn_id());

        // Half close: the server reads the bytes, then end of file, and can still answer.
        client.write_all(b"last words").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
        assert_eq!(
            server.read(&mut [0; 8]).await.unwrap(),
            0,
            "end of file stays"
        );
        let err = client.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        server.write_all(b"reply").await.unwrap();
        let mut reply = [0; 5];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply");

        // Close: the client reads what was sent before it, then end of file; writing towards
        // the closed end fails.
        server.write_all(b"bye").await.unwrap();
        drop(server);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"bye");
    });
    sim.run_until_idle();
    assert_eq!(net.connection_count(), 0);
    assert_eq!(net.faults().resets, 0, "closes are not faults");

    // Closing with unread bytes resets the connection, as Linux does.
    let mut listener = net.bind(SocketAddr::new(SERVER.ip(), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    let client_net = net.clone();
    sim.block_on(async move {
        let mut client = client_net.connect(addr).unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b"unread").await.unwrap();
        drop(server);
        let err = client.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    });
}

#[test]
fn a_reset_fails_both_ends_and_wakes_their_waiting_tasks() {
    let mut sim = Sim::new(8);
    let net = SimNetwork::new(sim.env(), 8, NetConfig::default());
    let mut listener = net.bind(SERVER).unwrap();
    let accept_net = net.clone();
    // Connection `idle`: both ends wait to read. Connection `full`: both ends wait to write,
    // since neither reads.
    let [idle, full] = sim.block_on(async move {
        let mut pairs = Vec::new();
        for _ in 0..2 {
            let client = accept_net.connect(SERVER).unwrap();
            let (server, _) = listener.accept().await.unwrap();
            pairs.push([client, server]);
        }
        let full = pairs.pop().unwrap();
        [pairs.pop().unwrap(), full]
    });
    let idle_conn = idle[0].conn_id();
    let outcomes: Arc<Mutex<Vec<String>>> = Arc::default();
    for (end, mut stream) in ["idle client", "idle server"].into_iter().zip(idle) {
        let log = outcomes.clone();
        sim.spawn("reader", async move {
            let err = stream.read(&mut [0; 8]).await.unwrap_err();
            let again = stream.write_all(b"x").await.unwrap_err();
            log.lock()
                .unwrap()
                .push(format!("{end}: {:?} {:?}", err.kind(), again.kind()));
        });
    }
    for (end, mut stream) in ["full client", "full server"].into_iter().zip(full) {
        let log = outcomes.clone();
        sim.spawn("writer", async move {
            let err = stream.write_all(&[0; 200 * 1024]).await.unwrap_err();
            let again = stream.read(&mut [0; 8]).await.unwrap_err();
            log.lock()
                .unwrap()
                .push(format!("{end}: {:?} {:?}", err.kind(), again.kind()));
        });
    }
    sim.run_until_idle();
    assert!(outcomes.lock().unwrap().is_empty(), "every end waits");
    assert_eq!(sim.task_count(), 4);

    assert!(net.reset(idle_conn));
    assert!(!net.reset(idle_conn), "already reset");
    assert_eq!(net.reset_all(), 1, "only `full` was left to reset");
    sim.run_until_idle();
    let mut outcomes = outcomes.lock().unwrap().clone();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "full client: ConnectionReset ConnectionReset",
            "full server: ConnectionReset ConnectionReset",
            "idle client: ConnectionReset ConnectionReset",
            "idle server: ConnectionReset ConnectionReset",
        ]
    );
    assert_eq!(net.faults().resets, 2);
    assert_eq!(sim.task_count(), 0);
    assert_eq!(net.connection_count(), 0);
}

#[test]
fn partitions_refuse_connects_and_stall_connections_until_healed() {
    let mut sim = Sim::new(4);
    let net = SimNetwork::new(sim.env(), 4, NetConfig::default());
    let err = net.connect(SERVER).unwrap_err();
    assert_eq!(
        err.kind(),
        io::ErrorKind::ConnectionRefused,
        "nobody listens"
    );
    let mut listener = net.bind(SERVER).unwrap();
    assert_eq!(
        net.bind(SERVER).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();

    let mut client = net.connect(SERVER).unwrap();
    let got = received.clone();
    sim.spawn("server", async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0; 64];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    sim.run_until_idle();

    net.partition(SERVER);
    net.partition(SERVER);
    assert!(net.is_partitioned(SERVER));
    assert_eq!(
        net.connect(SERVER).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    sim.block_on(async move {
        // Writes still fill the buffer; nothing, not even end of file, gets through.
        client.write_all(b"held back").await.unwrap();
        client.shutdown().await.unwrap();
    });
    sim.run_for(Duration::from_secs(60));
    assert!(received.lock().unwrap().is_empty(), "stalled");
    assert_eq!(sim.task_count(), 1, "the server still waits");

    net.heal_all();
    sim.run_until_idle();
    assert_eq!(*received.lock().unwrap(), b"held back", "delivered on heal");
    assert_eq!(sim.task_count(), 0, "then end of file");
    let faults = net.faults();
    assert_eq!((faults.partitions, faults.refused_connects), (1, 1));
    // The server task dropped its listener; a new one takes the address.
    assert!(net.connect(SERVER).is_err());
    let _listener = net.bind(SERVER).unwrap();
    let _client = net.connect(SERVER).unwrap();
    assert_eq!(net.reset_addr(SERVER), 1);
}

#[test]
fn delays_hold_bytes_for_virtual_time_only() {
    let mut sim = Sim::new(6);
    let config = NetConfig {
        to_server_delay: DelayRange::between(Duration::from_millis(5), Duration::from_millis(5)),
        ..NetConfig::no_faults()
    };
    let net = SimNetwork::new(sim.env(), 6, config);
    let mut listener = net.bind(SERVER).unwrap();
    let (env, client_net) = (sim.env(), net.clone());
    let arrived = sim.block_on(async move {
        let mut client = client_net.connect(SERVER).unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        env.sleep(Duration::from_millis(1)).await;
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        // The other direction has no delay.
        server.write_all(b"pong").await.unwrap();
        let sent = env.now();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(env.now(), sent);
        sent
    });
    assert_eq!(arrived, Instant(6_000_000));
    assert_eq!(net.faults().delayed_writes, 1);
}

#[test]
fn a_one_way_cut_lets_requests_through_and_holds_replies_until_healed() {
    let mut sim = Sim::new(9);
    let net = SimNetwork::new(sim.env(), 9, NetConfig::default());
    let mut listener = net.bind(SERVER).unwrap();
    let (cut, other) = (
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7)),
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 8)),
    );
    let mut client = net.connect_from(cut, SERVER).unwrap();
    assert_eq!(client.local_addr().ip(), cut);
    let (mut server, peer, _listener) = sim.block_on(async move {
        let (server, peer) = listener.accept().await.unwrap();
        (server, peer, listener)
    });
    assert_eq!(peer.ip(), cut);

    net.partition_link(cut, SERVER, Direction::ToClient);
    assert_eq!(
        net.connect_from(cut, SERVER).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused,
        "a handshake needs both ways"
    );
    let _unaffected = net
        .connect_from(other, SERVER)
        .expect("another host still connects");
    let request = sim.block_on(async move {
        client.write_all(b"request").await.unwrap();
        let mut buf = [0; 7];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(b"reply").await.unwrap();
        (buf, client)
    });
    assert_eq!(&request.0, b"request", "the request got through");
    let mut client = request.1;
    let got: Arc<Mutex<Vec<u8>>> = Arc::default();
    let into = got.clone();
    sim.spawn("reader", async move {
        let mut buf = [0; 5];
        client.read_exact(&mut buf).await.unwrap();
        into.lock().unwrap().extend_from_slice(&buf);
    });
    sim.run_for(Duration::from_secs(30));
    assert!(got.lock().unwrap().is_empty(), "the reply stalls");

    net.heal_link(cut, SERVER);
    sim.run_until_idle();
    assert_eq!(*got.lock().unwrap(), b"reply", "delivered on heal");
    let faults = net.faults();
    assert_eq!((faults.partitions, faults.refused_connects), (1, 1));
    assert!(net.connect_from(cut, SERVER).is_ok());
    assert_eq!(
        net.reset_link(cut, SERVER),
        1,
        "only the new connection is open"
    );
}

#[test]
fn resets_on_write_fail_the_write_and_the_peer() {
    let mut sim = Sim::new(10);
    let config = NetConfig {
        reset_on_write: 1.0,
        ..NetConfig::no_faults()
    };
    let net = SimNetwork::new(sim.env(), 10, config);
    let mut listener = net.bind(SERVER).unwrap();
    let client_net = net.clone();
    let kinds = sim.block_on(async move {
        let mut client = client_net.connect(SERVER).unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let write = client.write_all(b"lost").await.unwrap_err().kind();
        let read = server.read(&mut [0; 4]).await.unwrap_err().kind();
        (write, read)
    });
    assert_eq!(
        kinds,
        (
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionReset
        )
    );
    let faults = net.faults();
    assert_eq!((faults.resets, faults.write_resets), (1, 1));

    // Switched off, writes go through again.
    net.set_config(NetConfig::no_faults());
    let mut listener = net.bind(SocketAddr::new(SERVER.ip(), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let client_net = net.clone();
    sim.block_on(async move {
        let mut client = client_net.connect(addr).unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(b"kept").await.unwrap();
        let mut buf = [0; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"kept");
    });
}

#[test]
fn the_split_chance_bounds_how_many_reads_are_cut() {
    let splits = |chance: f64| {
        let mut sim = Sim::new(12);
        let config = NetConfig {
            split_chance: chance,
            ..NetConfig::default()
        };
        let net = SimNetwork::new(sim.env(), 12, config);
        let mut listener = net.bind(SERVER).unwrap();
        let (env, client_net) = (sim.env(), net.clone());
        sim.block_on(async move {
            let mut client = client_net.connect(SERVER).unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            write_in_pieces(&env, &mut client, &pattern_bytes(4, EXCHANGE_BYTES)).await;
            client.shutdown().await.unwrap();
            let (data, _) = read_to_end(&env, &mut server).await;
            assert!(data == pattern_bytes(4, EXCHANGE_BYTES), "bytes intact");
        });
        let faults = net.faults();
        faults.split_reads + faults.split_writes
    };
    assert_eq!(splits(0.0), 0, "never cut");
    assert!(
        splits(1.0) > splits(0.2),
        "{} vs {}",
        splits(1.0),
        splits(0.2)
    );
    assert!(splits(0.2) > 0);
}

// ------------------------------------------------------------------ the real server

/// Everything the clients received, one line per frame: client, virtual time, frame.
type Transcript = Arc<Mutex<Vec<String>>>;

/// A RESP3 client over a simulated connection, using the `net` codec both ways.
struct Client {
    name: String,
    env: SimEnv,
    stream: SimStream,
    buf: BytesMut,
    /// Pushes read while looking for a reply, handed out first by [`Client::read`].
    pushes: VecDeque<Frame>,
    transcript: Transcript,
}

fn request(line: &str) -> Frame {
    Frame::array(
        line.split_whitespace()
            .map(|word| Frame::bulk(word.as_bytes().to_vec()))
            .collect(),
    )
}

fn encode_requests(lines: &[String]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for line in lines {
        net::encode(&request(line), Protocol::Resp3, &mut out);
    }
    out.to_vec()
}

impl Client {
    fn connect(net: &SimNetwork, env: &SimEnv, name: &str, transcript: &Transcript) -> Client {
        Client {
            name: name.to_owned(),
            env: env.clone(),
            stream: net.connect(SERVER).expect("the server listens"),
            buf: BytesMut::new(),
            pushes: VecDeque::new(),
            transcript: transcript.clone(),
        }
    }

    /// Connects and switches to RESP3.
    async fn connect3(
        net: &SimNetwork,
        env: &SimEnv,
        name: &str,
        transcript: &Transcript,
    ) -> Client {
        let mut client = Client::connect(net, env, name, transcript);
        let hello = client.call("HELLO 3").await;
        assert_eq!(field(&hello, "proto"), &Frame::int(3));
        client
    }

    /// Sends every line in one write: a pipeline.
    async fn send(&mut self, lines: &[String]) -> io::Result<()> {
        self.stream.write_all(&encode_requests(lines)).await
    }

    /// The next frame off the wire.
    async fn read_wire(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(frame) = net::decode(&mut self.buf, &Limits::default()).unwrap() {
                let line = format!("{} {} {frame:?}", self.name, self.env.now().0);
                self.transcript.lock().unwrap().push(line);
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The next frame, pushes set aside earlier first.
    async fn read(&mut self) -> Frame {
        match self.pushes.pop_front() {
            Some(push) => push,
            None => self.read_wire().await.unwrap(),
        }
    }

    /// The next reply, setting aside pushes that arrive before it.
    async fn read_reply(&mut self) -> io::Result<Frame> {
        loop {
            match self.read_wire().await? {
                push @ Frame::Push(_) => self.pushes.push_back(push),
                reply => return Ok(reply),
            }
        }
    }

    async fn call(&mut self, line: &str) -> Frame {
        self.send(&[line.to_owned()]).await.unwrap();
        self.read_reply().await.unwrap()
    }
}

fn field<'a>(frame: &'a Frame, name: &str) -> &'a Frame {
    frame
        .as_map()
        .unwrap_or_else(|| panic!("not a map: {frame:?}"))
        .iter()
        .find(|(key, _)| key.as_str() == Some(name))
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no field {name} in {frame:?}"))
}

fn int_field(frame: &Frame, name: &str) -> i64 {
    field(frame, name)
        .as_integer()
        .unwrap_or_else(|| panic!("{name} is not an integer in {frame:?}"))
}

fn text(frame: &Frame) -> String {
    match frame {
        Frame::SimpleString(b) | Frame::BlobString(b) | Frame::SimpleError(b) => {
            String::from_utf8_lossy(b).into_owned()
        }
        other => panic!("not a string: {other:?}"),
    }
}

fn append_line(stream: &str, version: u64, event_id: Option<&str>) -> String {
    let expected = match version {
        0 => "empty".to_owned(),
        v => (v - 1).to_string(),
    };
    let id = event_id.map_or(String::new(), |id| format!(" EVENT_ID {id}"));
    format!("EAPPEND {stream} E EXPECTED_VERSION {expected}{id} PAYLOAD {stream}:{version}")
}

/// Appends `from..to` to `stream` with exact expected versions, pipelined in batches of random
/// size with pauses between; checks every reply and returns the event ids in version order.
async fn append_range(client: &mut Client, stream: &str, from: u64, to: u64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut version = from;
    while version < to {
        let batch = (1 + below(&client.env, 12)).min(to - version);
        let lines: Vec<String> = (version..version + batch)
            .map(|v| append_line(stream, v, None))
            .collect();
        client.send(&lines).await.unwrap();
        for v in version..version + batch {
            let reply = client.read_reply().await.unwrap();
            assert_eq!(int_field(&reply, "stream_version"), v as i64, "{reply:?}");
            ids.push(text(field(&reply, "event_id")));
        }
        version += batch;
        let pause = Duration::from_micros(below(&client.env, 200));
        client.env.sleep(pause).await;
    }
    ids
}

fn small_store_config() -> StoreConfig {
    StoreConfig {
        partition_count: 4,
        bucket_count: 2,
        segment_size_bytes: 256 * 1024,
        max_transaction_bytes: 8 * 1024,
        ..StoreConfig::default()
    }
}

/// A store on a simulated disk served over the simulated network, all inside one `Sim`.
struct World {
    sim: Sim,
    net: SimNetwork,
    db: Db<SimDisk>,
    stop: Option<oneshot::Sender<()>>,
    served: Arc<Mutex<Option<io::Result<()>>>>,
    transcript: Transcript,
}

impl World {
    fn start(seed: u64, config: NetConfig) -> World {
        let sim = Sim::new(seed);
        let env = sim.env();
        let disk = SimDisk::new(seed ^ 0xd15c, Default::default());
        let (db, _) = Db::open(&env, &disk, Path::new("/data/sierra"), small_store_config())
            .expect("open the store");
        let net = SimNetwork::new(env.clone(), seed, config);
        let listener = net.bind(SERVER).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served: Arc<Mutex<Option<io::Result<()>>>> = Arc::default();
        let (server_db, result) = (db.clone(), served.clone());
        sim.spawn("serve", async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let outcome = serve(listener, env, server_db, ServerConfig::default(), shutdown).await;
            *result.lock().unwrap() = Some(outcome);
        });
        World {
            sim,
            net,
            db,
            stop: Some(stop),
            served,
            transcript: Arc::default(),
        }
    }

    /// Stops the server, waits for `serve` to return Ok, and shuts the store down.
    fn stop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.sim.run_until_idle();
        let served = self.served.lock().unwrap().take();
        assert!(matches!(served, Some(Ok(()))), "serve returned: {served:?}");
        let db = self.db.clone();
        self.sim.block_on(async move { db.shutdown().await });
        self.sim.run_until_idle();
        assert_eq!(self.sim.task_count(), 0, "nothing left running");
    }
}

/// What one run of [`server_workload`] produced.
#[derive(Debug, PartialEq, Eq)]
struct ServerRun {
    trace_hash: u64,
    delivery_hash: u64,
    transcript: Vec<String>,
    appends: u64,
}

const HISTORY: u64 = 50;
const LIVE: u64 = 150;
const WINDOW: i64 = 8;
const SIDE_CLIENTS: u64 = 4;
const SIDE_APPENDS: u64 = 60;

/// One server, seven clients: a writer builds history on `live`; a subscriber reads it from
/// version 0 through a window of 8 while a second writer appends live events to it; four more
/// clients append to their own streams (one also tries a stale expected version). Every reply
/// is checked, and so is the subscription: gapless, duplicate-free and in order.
fn server_workload(seed: u64) -> ServerRun {
    let config = NetConfig {
        to_server_delay: DelayRange::between(Duration::ZERO, Duration::from_micros(50)),
        to_client_delay: DelayRange::between(Duration::ZERO, Duration::from_micros(50)),
        ..NetConfig::default()
    };
    let mut world = World::start(seed, config);
    let (net, env, transcript) = (world.net.clone(), world.sim.env(), world.transcript.clone());

    // History first, so the subscription starts behind the head.
    let (history_net, history_env, history_log) = (net.clone(), env.clone(), transcript.clone());
    let history_ids = world.sim.block_on(async move {
        let mut writer =
            Client::connect3(&history_net, &history_env, "history", &history_log).await;
        append_range(&mut writer, "live", 0, HISTORY).await
    });
    assert_eq!(history_ids.len() as u64, HISTORY);

    let finished = Arc::new(Mutex::new(0u64));
    let (live_net, live_env, live_log) = (net.clone(), env.clone(), transcript.clone());
    let live_finished = finished.clone();
    world.sim.spawn("live-writer", async move {
        let mut writer = Client::connect3(&live_net, &live_env, "live", &live_log).await;
        append_range(&mut writer, "live", HISTORY, HISTORY + LIVE).await;
        *live_finished.lock().unwrap() += 1;
    });
    for k in 0..SIDE_CLIENTS {
        let (side_net, side_env, side_log) = (net.clone(), env.clone(), transcript.clone());
        let side_finished = finished.clone();
        world.sim.spawn("side-writer", async move {
            let name = format!("side-{k}");
            let mut client = Client::connect3(&side_net, &side_env, &name, &side_log).await;
            let ids = append_range(&mut client, &name, 0, SIDE_APPENDS).await;
            // A stale expected version is refused and changes nothing.
            let stale = client.call(&append_line(&name, 3, None)).await;
            assert!(text(&stale).starts_with("WRONGVER"), "{stale:?}");
            let last = client.call(&format!("EGET {}", ids.last().unwrap())).await;
            assert_eq!(int_field(&last, "stream_version"), SIDE_APPENDS as i64 - 1);
            assert_eq!(text(field(&last, "stream_id")), name);
            *side_finished.lock().unwrap() += 1;
        });
    }
    let subscriber = world.sim.block_on(async move {
        let mut sub = Client::connect3(&net, &env, "subscriber", &transcript).await;
        sub.send(&[format!("ESUB live FROM 0 WINDOW {WINDOW}")])
            .await
            .unwrap();
        let id = text(&sub.read_reply().await.unwrap());
        let Frame::Push(items) = sub.read().await else {
            panic!("the subscribe push follows the reply");
        };
        assert_eq!(
            (text(&items[0]), text(&items[1])),
            ("subscribe".into(), id.clone())
        );
        let (mut acks_sent, mut oks) = (0, 0);
        let mut next = 0i64;
        while next < (HISTORY + LIVE) as i64 {
            match sub.read().await {
                Frame::Push(items) => {
                    assert_eq!(text(&items[0]), "message");
                    assert_eq!(text(&items[1]), id);
                    let cursor = items[2].as_integer().unwrap();
                    assert_eq!(cursor, next, "gapless, no duplicate, in order");
                    let event = &items[3];
                    assert_eq!(int_field(event, "stream_version"), cursor);
                    assert_eq!(text(field(event, "payload")), format!("live:{cursor}"));
                    next += 1;
                    // Acknowledge every fourth message, without waiting for the +OK.
                    if next % 4 == 0 {
                        sub.send(&[format!("EACK {id} {cursor}")]).await.unwrap();
                        acks_sent += 1;
                    }
                }
                Frame::SimpleString(ok) if &ok[..] == b"OK" => oks += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        while oks < acks_sent {
            assert_eq!(sub.read_reply().await.unwrap(), Frame::simple("OK"));
            oks += 1;
        }
        // The history writer's ids are the first 50 events, and the stream reads back whole.
        let first = sub.call(&format!("EGET {}", history_ids[7])).await;
        assert_eq!(int_field(&first, "stream_version"), 7);
        let scan = sub.call("ESCAN live - + COUNT 1000").await;
        let events = field(&scan, "events").as_array().unwrap().to_vec();
        let versions: Vec<i64> = events
            .iter()
            .map(|e| int_field(e, "stream_version"))
            .collect();
        assert_eq!(versions, (0..(HISTORY + LIVE) as i64).collect::<Vec<_>>());
        assert_eq!(field(&scan, "has_more"), &Frame::Boolean(false));
        next
    });
    assert_eq!(subscriber as u64, HISTORY + LIVE);
    world.sim.run_until_idle();
    assert_eq!(
        *finished.lock().unwrap(),
        1 + SIDE_CLIENTS,
        "every writer finished"
    );
    world.stop();
    let faults = world.net.faults();
    assert!(faults.split_reads > 100, "{faults:?}");
    assert!(faults.split_writes > 10, "{faults:?}");
    let transcript = world.transcript.lock().unwrap().clone();
    let first_message = transcript
        .iter()
        .position(|line| line.starts_with("subscriber ") && line.contains("Push"))
        .unwrap();
    let last_live_reply = transcript
        .iter()
        .rposition(|line| line.starts_with("live "))
        .unwrap();
    assert!(
        first_message < last_live_reply,
        "the subscription was delivering while live appends were still being made"
    );
    ServerRun {
        trace_hash: world.sim.trace_hash(),
        delivery_hash: world.net.delivery_hash(),
        transcript,
        appends: HISTORY + LIVE + SIDE_CLIENTS * (SIDE_APPENDS + 1),
    }
}

#[test]
fn the_real_server_runs_in_the_simulator_deterministically() {
    #[expect(
        clippy::disallowed_methods,
        reason = "measures the simulated server's speed in wall time"
    )]
    let started = std::time::Instant::now();
    let first = server_workload(11);
    let wall = started.elapsed();
    eprintln!(
        "{} appends through the simulated server in {wall:?}: {:.0} appends per wall second ({} frames received)",
        first.appends,
        first.appends as f64 / wall.as_secs_f64(),
        first.transcript.len()
    );
    let again = server_workload(11);
    assert_eq!(first.trace_hash, again.trace_hash);
    assert_eq!(first.delivery_hash, again.delivery_hash);
    assert!(
        first.transcript == again.transcript,
        "identical transcripts"
    );
    let other = server_workload(12);
    assert_ne!(
        first.delivery_hash, other.delivery_hash,
        "other byte splits"
    );
    assert_ne!(first.trace_hash, other.trace_hash);
}

/// What the burst writer learnt before its connection was reset.
#[derive(Debug, Default)]
struct Burst {
    /// Event ids whose `EAPPEND` was answered, in request order, with their versions.
    acked: Vec<(String, i64)>,
    read_error: Option<io::ErrorKind>,
}

const BURST: u64 = 1_000;

/// A client pipelines 1,000 appends (its own event ids) from one task while another reads the
/// replies and resets the connection after a seed-chosen number; meanwhile another client keeps
/// appending. Afterwards the server still serves, the other client finished, and every append
/// answered before the reset is readable, in order, at its version.
fn reset_mid_burst(seed: u64) {
    let config = NetConfig {
        to_server_delay: DelayRange::between(Duration::ZERO, Duration::from_micros(20)),
        ..NetConfig::default()
    };
    let mut world = World::start(seed, config);
    let (net, env, log) = (world.net.clone(), world.sim.env(), world.transcript.clone());
    let reset_after = 1 + below(&env, BURST / 2);

    let (keep_net, keep_env, keep_log) = (net.clone(), env.clone(), log.clone());
    world.sim.spawn("keeper", async move {
        let mut keeper = Client::connect3(&keep_net, &keep_env, "keeper", &keep_log).await;
        append_range(&mut keeper, "keep", 0, 200).await;
    });

    let burst = Arc::new(Mutex::new(Burst::default()));
    let (burst_net, burst_env, burst_log, outcome) =
        (net.clone(), env.clone(), log.clone(), burst.clone());
    world.sim.spawn("burst", async move {
        let client = Client::connect3(&burst_net, &burst_env, "burst", &burst_log).await;
        let conn = client.stream.conn_id();
        let ids: Vec<String> = (0..BURST)
            .map(|_| burst_env.new_uuid().to_string())
            .collect();
        let lines: Vec<String> = (0..BURST)
            .map(|v| append_line("burst", v, Some(&ids[v as usize])))
            .collect();
        let Client {
            stream, mut buf, ..
        } = client;
        let (mut reader, mut writer) = tokio::io::split(stream);
        let bytes = encode_requests(&lines);
        let sender_env = burst_env.clone();
        burst_env.spawn(
            "burst-sender",
            Box::pin(async move {
                // Fails with ConnectionReset if the reset comes first; either way is fine.
                let mut at = 0;
                while at < bytes.len() {
                    let end = (at + 1 + below(&sender_env, 4_000) as usize).min(bytes.len());
                    if writer.write_all(&bytes[at..end]).await.is_err() {
                        return;
                    }
                    at = end;
                }
            }),
        );
        let mut answered = 0;
        loop {
            while let Some(frame) = net::decode(&mut buf, &Limits::default()).unwrap() {
                let version = int_field(&frame, "stream_version");
                assert_eq!(text(field(&frame, "event_id")), ids[answered]);
                assert_eq!(version, answered as i64);
                outcome
                    .lock()
                    .unwrap()
                    .acked
                    .push((ids[answered].clone(), version));
                answered += 1;
                if answered as u64 == reset_after {
                    assert!(burst_net.reset(conn));
                }
            }
            match reader.read_buf(&mut buf).await {
                Ok(0) => panic!("closed without a reset"),
                Ok(_) => {}
                Err(error) => {
                    outcome.lock().unwrap().read_error = Some(error.kind());
                    return;
                }
            }
        }
    });
    world.sim.run_until_idle();

    let burst = std::mem::take(&mut *burst.lock().unwrap());
    assert_eq!(burst.read_error, Some(io::ErrorKind::ConnectionReset));
    assert!(burst.acked.len() as u64 >= reset_after);
    assert_eq!(world.net.faults().resets, 1);

    // A new client: the server still serves, and everything acknowledged is there.
    let (check_net, check_env) = (net.clone(), env.clone());
    let acked = burst.acked.clone();
    let stored = world.sim.block_on(async move {
        let mut c = Client::connect3(&check_net, &check_env, "checker", &log).await;
        for (id, version) in &acked {
            let event = c.call(&format!("EGET {id}")).await;
            assert_eq!(int_field(&event, "stream_version"), *version);
            assert_eq!(text(field(&event, "stream_id")), "burst");
        }
        let scan = c.call("ESCAN burst - + COUNT 10000").await;
        let events = field(&scan, "events").as_array().unwrap().to_vec();
        for (position, event) in events.iter().enumerate() {
            assert_eq!(
                int_field(event, "stream_version"),
                position as i64,
                "gapless"
            );
        }
        for ((id, _), event) in acked.iter().zip(&events) {
            assert_eq!(
                &text(field(event, "event_id")),
                id,
                "acked events lead, in order"
            );
        }
        let keep = c.call("ESCAN keep - + COUNT 1000").await;
        let kept = field(&keep, "events").as_array().unwrap().len();
        // The server noticed the reset: the checker is its only connection left.
        let info = text(&c.call("INFO clients").await);
        assert!(info.contains("connected_clients:1\r\n"), "{info}");
        (events.len(), kept)
    });
    assert!(stored.0 >= burst.acked.len());
    assert!(
        (stored.0 as u64) < BURST,
        "the reset cut the burst short: {} of {BURST} stored",
        stored.0
    );
    assert_eq!(stored.1, 200, "the other client's appends all went through");
    world.stop();
}

#[test]
fn a_reset_mid_burst_loses_no_acknowledged_append_and_the_server_stays_up() {
    for seed in [1, 2, 3] {
        reset_mid_burst(seed);
    }
}

/// Not a test: how fast the real server runs in the simulator. Eight clients each append
/// 2,000 events to their own stream in pipelined batches of 50, with random splits on.
/// `cargo test -p sierradb-sim --test net -- --ignored --nocapture` prints the rate.
#[test]
#[ignore = "a measurement, not a check"]
fn throughput_of_the_simulated_server() {
    const CLIENTS: u64 = 8;
    const APPENDS: u64 = 2_000;
    const BATCH: u64 = 50;
    #[expect(
        clippy::disallowed_methods,
        reason = "measures the simulated server's speed in wall time"
    )]
    let started = std::time::Instant::now();
    let mut world = World::start(21, NetConfig::default());
    for k in 0..CLIENTS {
        let (net, env, log) = (world.net.clone(), world.sim.env(), Arc::default());
        world.sim.spawn("appender", async move {
            let name = format!("bulk-{k}");
            let mut client = Client::connect3(&net, &env, &name, &log).await;
            for from in (0..APPENDS).step_by(BATCH as usize) {
                let lines: Vec<String> = (from..from + BATCH)
                    .map(|v| append_line(&name, v, None))
                    .collect();
                client.send(&lines).await.unwrap();
                for v in from..from + BATCH {
                    let reply = client.read_reply().await.unwrap();
                    assert_eq!(int_field(&reply, "stream_version"), v as i64);
                }
            }
        });
    }
    world.sim.run_until_idle();
    world.stop();
    let wall = started.elapsed();
    let appends = CLIENTS * APPENDS;
    eprintln!(
        "{appends} appends in {wall:?} wall ({} polls, {:?} of network faults): {:.0} appends per wall second",
        world.sim.steps(),
        world.net.faults(),
        appends as f64 / wall.as_secs_f64()
    );
}
