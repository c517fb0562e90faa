//! Crash loops on the real file system: `sierradb serve` under appends from many connections,
//! killed with `kill -9` (or paused with SIGSTOP/SIGCONT) at random moments, restarted, and
//! checked after every cycle: every acknowledged event present exactly once with its content,
//! and versions gapless.
//!
//! A short loop runs with the normal tests; `scripts/crash-loop.sh [CYCLES]` runs the long one
//! (`CRASH_LOOP_CYCLES`, release build).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Server, field, int, text};
use redis::Value;

/// An acknowledged append: what the server said and what was sent.
#[derive(Clone, Debug)]
struct Acked {
    stream: String,
    version: i64,
    payload: String,
}

/// A small generator for the harness's own choices (cycle lengths, signals).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Appends from `writers` connections until `stop`, each writer to its own streams with exact
/// expected versions taken from `versions`. Returns what was acknowledged.
fn burst(
    address: SocketAddr,
    writers: usize,
    cycle: u64,
    versions: &BTreeMap<String, i64>,
    stop: Arc<AtomicBool>,
) -> BTreeMap<String, Acked> {
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let stop = stop.clone();
            let streams: Vec<(String, i64)> = (0..4)
                .map(|s| {
                    let name = format!("loop-{w}-{s}");
                    let v = versions.get(&name).copied().unwrap_or(-1);
                    (name, v)
                })
                .collect();
            std::thread::spawn(move || {
                let mut acked = BTreeMap::new();
                let mut streams = streams;
                let Ok(client) = redis::Client::open(format!("redis://{address}/?protocol=resp3"))
                else {
                    return acked;
                };
                let Ok(mut con) = client.get_connection() else {
                    return acked;
                };
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let (stream, last) = &mut streams[n % 4];
                    n += 1;
                    let expected = if *last < 0 {
                        "empty".to_string()
                    } else {
                        last.to_string()
                    };
                    let payload = format!("c{cycle}-w{w}-n{n}");
                    let reply: Result<Value, _> = redis::cmd("EAPPEND")
                        .arg(&*stream)
                        .arg("E")
                        .arg("EXPECTED_VERSION")
                        .arg(&expected)
                        .arg("PAYLOAD")
                        .arg(&payload)
                        .query(&mut con);
                    match reply {
                        Ok(v) => {
                            let version = int(field(&v, "stream_version"));
                            assert_eq!(version, *last + 1, "version skipped on {stream}");
                            *last = version;
                            acked.insert(
                                text(field(&v, "event_id")),
                                Acked {
                                    stream: stream.clone(),
                                    version,
                                    payload,
                                },
                            );
                        }
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// Checks every acknowledged event and the gaplessness of every stream; returns the last
/// version of each stream, as the restarted server reports it.
fn verify(server: &Server, acked: &BTreeMap<String, Acked>, cycle: u64) -> BTreeMap<String, i64> {
    let mut con = server.redis();
    for (id, a) in acked {
        let got: Value = redis::cmd("EGET").arg(id).query(&mut con).unwrap();
        assert_ne!(
            got,
            Value::Nil,
            "cycle {cycle}: acknowledged event {id} lost"
        );
        assert_eq!(text(field(&got, "stream_id")), a.stream);
        assert_eq!(int(field(&got, "stream_version")), a.version);
        assert_eq!(
            text(field(&got, "payload")),
            a.payload,
            "cycle {cycle}: {id} changed"
        );
    }
    let mut streams: BTreeMap<String, i64> = BTreeMap::new();
    for a in acked.values() {
        streams.entry(a.stream.clone()).or_insert(-1);
    }
    for (stream, last) in streams.iter_mut() {
        let scan: Value = redis::cmd("ESCAN")
            .arg(stream.as_str())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query(&mut con)
            .unwrap();
        let Value::Array(events) = field(&scan, "events") else {
            panic!("{scan:?}")
        };
        let mut seen = std::collections::BTreeSet::new();
        for (n, e) in events.iter().enumerate() {
            assert_eq!(
                int(field(e, "stream_version")),
                n as i64,
                "cycle {cycle}: gap in {stream}"
            );
            assert!(
                seen.insert(text(field(e, "event_id"))),
                "cycle {cycle}: duplicate in {stream}"
            );
        }
        *last = events.len() as i64 - 1;
    }
    streams
}

fn crash_loop(dir: &Path, cycles: u64, seed: u64) -> (u64, usize) {
    let mut rng = Rng(seed | 1);
    let mut acked_all: BTreeMap<String, Acked> = BTreeMap::new();
    let mut versions: BTreeMap<String, i64> = BTreeMap::new();
    let mut pauses = 0;
    for cycle in 0..cycles {
        let server = Server::start(dir, &[], &[]);
        if cycle > 0 {
            versions = verify(&server, &acked_all, cycle);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let address = server.address;
        let writer = {
            let stop = stop.clone();
            let versions = versions.clone();
            std::thread::spawn(move || burst(address, 16, cycle, &versions, stop))
        };
        std::thread::sleep(Duration::from_millis(50 + rng.below(250)));
        if rng.below(4) == 0 {
            // A pause: the process stops mid-write and resumes; nothing may be lost or doubled.
            server.signal("STOP");
            std::thread::sleep(Duration::from_millis(50 + rng.below(100)));
            server.signal("CONT");
            std::thread::sleep(Duration::from_millis(rng.below(100)));
            pauses += 1;
        }
        server.signal("KILL");
        stop.store(true, Ordering::Relaxed);
        acked_all.extend(writer.join().unwrap());
        drop(server);
    }
    let server = Server::start(dir, &[], &[]);
    verify(&server, &acked_all, cycles);
    (pauses, acked_all.len())
}

#[test]
fn a_short_crash_loop_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, acked) = crash_loop(dir.path(), 3, 0x5eed);
    assert!(acked > 30, "only {acked} appends acknowledged");
}

#[test]
#[ignore = "long: scripts/crash-loop.sh [CYCLES]"]
fn long_crash_loop() {
    let cycles = std::env::var("CRASH_LOOP_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(50);
    let dir = match std::env::var("CRASH_LOOP_DIR") {
        Ok(d) => std::path::PathBuf::from(d),
        Err(_) => tempfile::tempdir().unwrap().keep(),
    };
    let seed = std::env::var("CRASH_LOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let (pauses, acked) = crash_loop(&dir, cycles, seed);
    println!(
        "crash loop: {cycles} kill -9 cycles ({pauses} with SIGSTOP/SIGCONT pauses), {acked} acknowledged events verified after every restart, seed {seed}"
    );
}

/// On a small file system that fills up: appends fail with a clean, retryable `TRYAGAIN`,
/// reads keep working, appends resume when space returns, and nothing acknowledged is lost.
/// Needs a directory on a small file system in `CRASH_LOOP_FULL_DIR` (the script mounts a
/// tmpfs); the filler file there takes all but a little of its space.
#[test]
#[ignore = "needs a small file system: scripts/crash-loop.sh"]
fn a_full_disk_fails_appends_cleanly_and_they_resume() {
    use std::io::Write;
    let root = std::path::PathBuf::from(
        std::env::var("CRASH_LOOP_FULL_DIR").expect("CRASH_LOOP_FULL_DIR"),
    );
    let dir = root.join("data");
    let server = Server::start(&dir, &[], &[]);
    // Fill the file system, leaving about 256 KiB.
    let filler = root.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    drop(f);
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len.saturating_sub(256 * 1024))
        .unwrap();

    let mut con = server.redis();
    let mut acked = BTreeMap::new();
    let payload = "x".repeat(1000);
    let mut refused = 0;
    for n in 0..2_000 {
        let reply: Result<Value, _> = redis::cmd("EAPPEND")
            .arg("full")
            .arg("E")
            .arg("PAYLOAD")
            .arg(format!("{n}-{payload}"))
            .query(&mut con);
        match reply {
            Ok(v) => {
                acked.insert(
                    text(field(&v, "event_id")),
                    Acked {
                        stream: "full".into(),
                        version: int(field(&v, "stream_version")),
                        payload: format!("{n}-{payload}"),
                    },
                );
            }
            Err(e) => {
                assert!(e.to_string().to_uppercase().contains("TRYAGAIN"), "{e}");
                refused += 1;
                if refused >= 20 {
                    break;
                }
            }
        }
    }
    assert!(refused >= 20, "the disk never filled");
    // Reads keep working while the disk is full.
    let version: i64 = redis::cmd("ESVER").arg("full").query(&mut con).unwrap();
    assert_eq!(version, acked.len() as i64 - 1);
    std::fs::remove_file(&filler).unwrap();
    let resumed: Value = redis::cmd("EAPPEND")
        .arg("full")
        .arg("E")
        .query(&mut con)
        .unwrap();
    assert_eq!(int(field(&resumed, "stream_version")), acked.len() as i64);
    server.signal("KILL");
    drop(server);
    let server = Server::start(&dir, &[], &[]);
    verify(&server, &acked, 1);
    println!(
        "disk full: {} appends acknowledged, {refused} refused with TRYAGAIN, resumed after space returned",
        acked.len()
    );
}
