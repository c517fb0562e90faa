//! The real `sierradb` binary under load that is hostile by neglect: hundreds of subscribers
//! that never read their socket or never acknowledge while a writer floods the store, and ten
//! thousand idle connections. Each test measures the server's resident memory from
//! `/proc/<pid>/status` against a bound derived from the configured limits, and checks that
//! the writer keeps going, that stored events are unchanged and that a fresh connection works.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Value;

mod common;

use common::{Server, field, int, text};

/// Both tests open thousands of sockets and measure the server's memory: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// What the server answers a connection over `max_connections`, before closing it.
const MAX_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";

/// Raises this process's soft limit on open files to the hard limit (the server started by a
/// test inherits it, and raises its own too); returns the limit in force.
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a pointer to a live, writable value.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    // An unlimited hard limit cannot be the soft one: Linux caps both at `fs.nr_open`.
    limit.rlim_cur = limit.rlim_max.min(nr_open());
    // SAFETY: `setrlimit` reads one `rlimit` through a pointer to a live value.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
    }
    limit.rlim_cur
}

/// The kernel's most open files per process, if it says.
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// The server's resident memory, in KiB: `(VmRSS, RssAnon)`. `RssAnon` is the heap and stacks;
/// `VmRSS` adds mapped files (the binary, sealed segments: none here) and shared memory.
fn rss_kib(server: &Server) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("read the server's /proc status");
    let kib = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (kib("VmRSS:"), kib("RssAnon:"))
}

/// Samples the server's `VmRSS` every few milliseconds until dropped; keeps the peak.
struct PeakRss {
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl PeakRss {
    fn start(pid: u32) -> PeakRss {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(&path)
                    && let Some(kib) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|rest| rest.split_whitespace().next())
                        .and_then(|n| n.parse::<u64>().ok())
                {
                    peak = peak.max(kib);
                }
                // A sampling period, not a synchronisation: the peak is a maximum over samples.
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        PeakRss {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
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

/// A field of `INFO`, as a number.
fn info(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = redis::cmd("INFO").query(con).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

/// Polls `done` until it holds, failing after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The payload of event `n`: `PAYLOAD_BYTES` of text that names it.
fn payload(n: usize) -> Vec<u8> {
    let mut bytes = format!("event-{n}:").into_bytes();
    bytes.resize(PAYLOAD_BYTES, b'x');
    bytes
}

const PAYLOAD_BYTES: usize = 1024;

// ------------------------------------------------------------------ slow subscribers

/// Connections that subscribe to every partition and then never read their socket.
const STALLED: usize = 200;
/// Connections that read their pushes but never acknowledge them.
const UNACKED: usize = 20;
/// The window of the connections that never acknowledge.
const UNACKED_WINDOW: usize = 50;
const STREAMS: usize = 10;
const EVENTS: usize = 30_000;
/// Appends per pipelined round trip of the writer.
const PIPELINE: usize = 250;

/// Events the server holds in memory for one subscription whose client does not read, at
/// most (`db/src/server/connection.rs`, `subscription.rs`): the pushes of one round encoded in
/// the write buffer (`DELIVERIES_PER_ROUND` = 64, plus the one that woke the round), the
/// connection's delivery queue (`DELIVERY_QUEUE` = 64) and the feed's scan batch
/// (`SCAN_BATCH` = 32). Then the connection waits for its socket to drain.
const HELD_EVENTS_PER_STALLED_SUBSCRIPTION: u64 = 65 + 64 + 32;
/// Connections that pipeline reads and never read the replies.
const DEAF: usize = 20;
/// What the server holds for a connection that does not read its replies, at most: the write
/// buffer it stops at (`WRITE_FLUSH_BYTES`, 1 MiB) plus the reply that crossed it, and the
/// read buffer (one 16 KiB chunk beyond a partial request). Then it stops reading requests.
/// A reply of 10 events is about 13 KiB, and exists up to three times while it is built (the
/// events read, the reply frame, its encoding).
const HELD_KIB_PER_DEAF_CONNECTION: u64 = 1024 + 3 * 14 + 64;
/// Each deaf connection's request: 62 bytes that ask for 13 KiB, cheap to execute, so a server
/// that kept reading and answering would outrun any bound in a second or two.
const DEAF_REQUEST: &[&[u8]] = &[b"ESCAN", b"flood-0", b"-", b"+", b"COUNT", b"10"];

#[test]
fn slow_and_stalled_subscribers_do_not_grow_memory_or_stop_writers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let mut writer = server.redis();
    let (baseline_kib, _) = rss_kib(&server);

    // Subscribers that never read: a window far above what is written, so only the server's
    // output buffering can hold them back.
    let subscribe_all = |window: usize| {
        let mut bytes = request(&[b"HELLO", b"3"]);
        bytes.extend(request(&[
            b"EPSUB",
            b"*",
            b"WINDOW",
            window.to_string().as_bytes(),
        ]));
        bytes
    };
    let stalled: Vec<TcpStream> = (0..STALLED)
        .map(|_| {
            let mut s = TcpStream::connect(server.address).unwrap();
            s.write_all(&subscribe_all(100_000)).unwrap();
            s
        })
        .collect();
    // Subscribers that read everything they are sent and never acknowledge.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let unacked: Vec<_> = (0..UNACKED)
        .map(|_| {
            let mut s = TcpStream::connect(server.address).unwrap();
            s.write_all(&subscribe_all(UNACKED_WINDOW)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut received = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(e) => panic!("subscriber read: {e}"),
                    }
                }
                received
            })
        })
        .collect();
    wait_until(
        "every subscription is live",
        Duration::from_secs(10),
        || info(&mut writer, "total_subscriptions") == (STALLED + UNACKED) as u64,
    );

    let peak = PeakRss::start(server.child.id());
    let started = Instant::now();
    for round in 0..EVENTS / PIPELINE {
        let mut pipe = redis::pipe();
        for i in round * PIPELINE..(round + 1) * PIPELINE {
            pipe.cmd("EAPPEND")
                .arg(format!("flood-{}", i % STREAMS))
                .arg("Flooded")
                .arg("PAYLOAD")
                .arg(payload(i));
        }
        let replies: Vec<Value> = pipe.query(&mut writer).expect("appends keep succeeding");
        for (k, reply) in replies.iter().enumerate() {
            let i = round * PIPELINE + k;
            assert_eq!(
                int(field(reply, "stream_version")),
                (i / STREAMS) as i64,
                "append {i}"
            );
        }
    }
    let write_time = started.elapsed();
    // Let the feeds catch up with the last appends before the final measurement.
    wait_until(
        "every subscription's lag covers every event",
        Duration::from_secs(10),
        || info(&mut writer, "subscription_lag_max_events") == EVENTS as u64,
    );

    // Event size in memory, generously: the payload plus the rest of the event map, twice
    // (the decoded event and its encoded push), plus allocator slack.
    let event_kib = 2 * (PAYLOAD_BYTES as u64 + 512) / 1024 + 1;
    let held_kib = (STALLED + UNACKED) as u64 * HELD_EVENTS_PER_STALLED_SUBSCRIPTION * event_kib
        + DEAF as u64 * HELD_KIB_PER_DEAF_CONNECTION;
    // The runtime's threads and buffers, the store's indexes for 30,000 events and the
    // allocator's arenas: measured at about 20 MiB; 96 MiB of headroom.
    let bound_kib = baseline_kib + held_kib + 96 * 1024;
    let (flooded_kib, _) = rss_kib(&server);
    assert!(
        flooded_kib < bound_kib,
        "VmRSS {flooded_kib} KiB over the bound {bound_kib} KiB after the flood"
    );

    // Clients that pipeline reads and never read a reply: the server must stop reading their
    // requests once their replies back up, so their writes block. Were it to keep reading and
    // answering, they would send on and its memory would grow with every request; each one
    // checks the bound as it goes, so that failure shows before the machine runs short.
    let pid = server.child.id();
    let deaf: Vec<_> = (0..DEAF)
        .map(|_| {
            let address = server.address;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(address).unwrap();
                // Blocked this long, the server has stopped reading this client: its requests
                // are cheap, so a server still reading them would make room within the time.
                s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let requests = request(DEAF_REQUEST).repeat(1_000);
                let (mut offset, mut sent) = (0, 0usize);
                loop {
                    match s.write(&requests[offset..]) {
                        Ok(n) => {
                            offset = (offset + n) % requests.len();
                            sent += n;
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            return (s, sent);
                        }
                        Err(e) => panic!("deaf client write: {e}"),
                    }
                    let pid_rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(|status| {
                            status
                                .lines()
                                .find_map(|l| l.strip_prefix("VmRSS:"))
                                .and_then(|rest| rest.split_whitespace().next())
                                .and_then(|n| n.parse::<u64>().ok())
                        })
                        .unwrap_or(0);
                    assert!(
                        pid_rss < bound_kib,
                        "VmRSS {pid_rss} KiB over the bound {bound_kib} KiB after {sent} bytes of \
                         requests whose replies are not read"
                    );
                }
            })
        })
        .collect();
    let deaf: Vec<(TcpStream, usize)> = deaf.into_iter().map(|t| t.join().unwrap()).collect();
    let deaf_sent = deaf.iter().map(|(_, sent)| sent).max().unwrap();

    let (end_kib, end_anon_kib) = rss_kib(&server);
    let peak_kib = peak.finish();
    eprintln!(
        "flood: {EVENTS} events of {PAYLOAD_BYTES} B written in {write_time:?} with {STALLED} \
         stalled and {UNACKED} unacknowledging subscribers, then {DEAF} clients sent up to \
         {deaf_sent} B of reads without reading a reply; VmRSS baseline {baseline_kib} KiB, \
         peak {peak_kib} KiB, end {end_kib} KiB (RssAnon {end_anon_kib} KiB); bound {bound_kib} KiB"
    );
    assert!(
        peak_kib < bound_kib,
        "peak VmRSS {peak_kib} KiB over the bound {bound_kib} KiB"
    );

    // The subscribers that read got exactly their window, and nothing beyond it.
    stop.store(true, Ordering::Relaxed);
    for reader in unacked {
        let received = reader.join().unwrap();
        let messages = received
            .windows(14)
            .filter(|w| *w == b">4\r\n+message\r\n")
            .count();
        assert_eq!(messages, UNACKED_WINDOW);
    }

    // A fresh connection reads every event, unchanged, while the stalled ones stay open.
    let mut fresh = server.redis();
    for stream in 0..STREAMS {
        let scan: Value = redis::cmd("ESCAN")
            .arg(format!("flood-{stream}"))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query(&mut fresh)
            .unwrap();
        let Value::Array(events) = field(&scan, "events") else {
            panic!("{scan:?}")
        };
        assert_eq!(events.len(), EVENTS / STREAMS);
        for (version, event) in events.iter().enumerate() {
            assert_eq!(int(field(event, "stream_version")), version as i64);
            let Value::BulkString(bytes) = field(event, "payload") else {
                panic!("{event:?}")
            };
            assert_eq!(bytes, &payload(version * STREAMS + stream));
        }
    }
    drop((stalled, deaf));
}

// ------------------------------------------------------------------ idle connections

/// Opens `n` connections to `address`, each with a read timeout.
fn open(address: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let s = TcpStream::connect(address).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect()
}

/// Sends `PING` on every connection, then reads every answer: each must be `+PONG`.
fn ping_all(connections: &mut [TcpStream]) {
    for s in connections.iter_mut() {
        s.write_all(b"PING\r\n").unwrap();
    }
    for (i, s) in connections.iter_mut().enumerate() {
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(&reply, b"+PONG\r\n", "connection {i}");
    }
}

/// Waits until `expected` of `connections` have been refused (answered with the error and
/// closed), and returns the others, which the server has sent nothing, with how many were
/// refused. Nothing is written to any of them, so a refused one cannot be reset before its
/// error is read.
fn split_refused(connections: Vec<TcpStream>, expected: usize) -> (Vec<TcpStream>, usize) {
    let mut undecided: Vec<(TcpStream, Vec<u8>)> = connections
        .into_iter()
        .map(|s| {
            s.set_nonblocking(true).unwrap();
            (s, Vec::new())
        })
        .collect();
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused < expected {
        assert!(
            Instant::now() < deadline,
            "only {refused} of {expected} connections refused"
        );
        let mut buf = [0u8; 256];
        undecided.retain_mut(|(s, received)| match s.read(&mut buf) {
            Ok(0) => {
                assert_eq!(received.as_slice(), MAX_CLIENTS);
                refused += 1;
                false
            }
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Err(e) => panic!("read: {e}"),
        });
        std::thread::sleep(Duration::from_millis(10));
    }
    let served = undecided
        .into_iter()
        .map(|(s, received)| {
            assert!(received.is_empty(), "{received:?}");
            s.set_nonblocking(false).unwrap();
            s
        })
        .collect();
    (served, refused)
}

/// Reads one bulk string reply (`$<len>\r\n<data>\r\n`), however many reads it arrives in.
fn read_bulk(s: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("the reply arrives");
        assert!(n > 0, "closed after {received:?}");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received);
        if let Some((header, rest)) = text.split_once("\r\n") {
            let len: usize = header
                .strip_prefix('$')
                .and_then(|len| len.parse().ok())
                .unwrap_or_else(|| panic!("not a bulk string: {text}"));
            if rest.len() >= len + 2 {
                return rest[..len].to_owned();
            }
        }
    }
}

/// Reads until the server closes the connection.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("the server closes");
    out
}

/// A connection that the server accepts (retrying while closed connections are still counted).
fn fresh(server: &Server) -> redis::Connection {
    let mut con = None;
    wait_until(
        "a fresh connection is accepted",
        Duration::from_secs(10),
        || {
            let mut c = server.redis();
            let ok = redis::cmd("PING").query::<String>(&mut c).is_ok();
            con = ok.then_some(c);
            ok
        },
    );
    con.unwrap()
}

/// The events of `stream`, as the server returns them.
fn scan(con: &mut redis::Connection, stream: &str) -> Value {
    redis::cmd("ESCAN")
        .arg(stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(10_000)
        .query(con)
        .unwrap()
}

#[test]
fn ten_thousand_idle_connections_are_served_or_refused_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let open_files = raise_open_files_limit();
    // The test holds one descriptor per connection and so does the server; keep 200 for the
    // rest of each process. With a hard limit below 10,200 (`ulimit -Hn`), the test opens as
    // many connections as it allows, and the server is configured for that many.
    let idle = 10_000.min(open_files.saturating_sub(200) as usize);
    assert!(
        idle >= 1_500,
        "open files hard limit {open_files} is too low"
    );
    let dir = tempfile::tempdir().unwrap();

    // 1. Over a limit of 1,000: 1,000 are served, the other 500 get the error and are closed.
    //    Which ones is up to the order the kernel hands them to the server (usually the order
    //    they were made, not always when its accept queue overflows), so the test does not
    //    assume it.
    {
        let server = Server::start(&dir.path().join("a"), &["--max-connections", "1000"], &[]);
        let connections = open(server.address, 1_500);
        let (mut served, refused) = split_refused(connections, 500);
        assert_eq!(refused, 500);
        ping_all(&mut served);
        drop(served);
        let mut con = fresh(&server);
        assert_eq!(info(&mut con, "maxclients"), 1_000);
    }

    // 2. Up to the default limit (10,000, or what the open-files limit allows): all served,
    //    each costing little memory.
    let limit = idle.to_string();
    let args: &[&str] = if idle == 10_000 {
        &[]
    } else {
        &["--max-connections", &limit]
    };
    let server = Server::start(&dir.path().join("b"), args, &[]);
    let logged = server.log.lock().unwrap().join("\n");
    assert!(logged.contains("open files limit"), "{logged}");
    let mut con = server.redis();
    for i in 0..100 {
        let _: Value = redis::cmd("EAPPEND")
            .arg(format!("kept-{}", i % 10))
            .arg("Kept")
            .arg("PAYLOAD")
            .arg(payload(i))
            .query(&mut con)
            .unwrap();
    }
    let before: Vec<Value> = (0..10)
        .map(|s| scan(&mut con, &format!("kept-{s}")))
        .collect();
    drop(con);
    wait_until(
        "the writer's connection is closed",
        Duration::from_secs(10),
        || {
            let mut c = server.redis();
            info(&mut c, "connected_clients") == 1
        },
    );
    let (baseline_kib, baseline_anon_kib) = rss_kib(&server);
    let started = Instant::now();
    let mut connections = open(server.address, idle);
    ping_all(&mut connections);
    let opened = started.elapsed();
    let (loaded_kib, loaded_anon_kib) = rss_kib(&server);
    // One connection more than the limit is refused.
    let mut extra = TcpStream::connect(server.address).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(read_to_close(&mut extra), MAX_CLIENTS);
    {
        // Every connection is counted, and they still answer.
        let mut s = connections.pop().unwrap();
        s.write_all(&request(&[b"INFO", b"clients"])).unwrap();
        let reply = read_bulk(&mut s);
        assert!(
            reply.contains(&format!("connected_clients:{idle}\r\n")),
            "{reply}"
        );
    }
    let per_connection = (loaded_kib.saturating_sub(baseline_kib)) as f64 / idle as f64;
    eprintln!(
        "idle: {idle} connections opened and pinged in {opened:?}; VmRSS {baseline_kib} -> \
         {loaded_kib} KiB (RssAnon {baseline_anon_kib} -> {loaded_anon_kib} KiB), \
         {per_connection:.1} KiB per connection"
    );
    // An idle connection holds its task, a 16 KiB read buffer (touched only as far as the
    // request read), an empty write buffer and its subscription queue: 32 KiB is generous.
    assert!(
        per_connection < 32.0,
        "{per_connection:.1} KiB per idle connection"
    );
    drop(connections);

    // A fresh connection works and nothing stored changed.
    let mut con = fresh(&server);
    let after: Vec<Value> = (0..10)
        .map(|s| scan(&mut con, &format!("kept-{s}")))
        .collect();
    assert_eq!(before, after);
    let reply: Value = redis::cmd("EAPPEND")
        .arg("kept-0")
        .arg("Kept")
        .arg("EXPECTED_VERSION")
        .arg(9)
        .query(&mut con)
        .unwrap();
    assert_eq!(int(field(&reply, "stream_version")), 10);
    let Value::Array(events) = field(&scan(&mut con, "kept-0"), "events").clone() else {
        panic!("ESCAN events")
    };
    assert_eq!(events.len(), 11);
    assert_eq!(text(field(&events[10], "event_name")), "Kept");
}
