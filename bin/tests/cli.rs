//! The real `sierradb` binary, started on 127.0.0.1 with a free port, driven by the `redis`
//! crate (RESP3) and by raw bytes: commands, configuration precedence, the directory lock,
//! SIGTERM, and `kill -9` during a write burst.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Value;

mod common;

use common::{Server, field, int, text};

#[test]
fn a_redis_client_appends_scans_and_reads_over_resp3() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let mut con = server.redis();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let mut ids = Vec::new();
    for i in 0..3 {
        let reply: Value = redis::cmd("EAPPEND")
            .arg("order-1")
            .arg("Placed")
            .arg("EXPECTED_VERSION")
            .arg(if i == 0 {
                "empty".to_string()
            } else {
                (i - 1).to_string()
            })
            .arg("PAYLOAD")
            .arg(format!("{{\"n\":{i}}}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(int(field(&reply, "stream_version")), i);
        ids.push(text(field(&reply, "event_id")));
    }
    let err = redis::cmd("EAPPEND")
        .arg("order-1")
        .arg("Placed")
        .arg("EXPECTED_VERSION")
        .arg("0")
        .query::<Value>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("WRONGVER"), "{err}");

    let scan: Value = redis::cmd("ESCAN")
        .arg("order-1")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let Value::Array(events) = field(&scan, "events") else {
        panic!("{scan:?}")
    };
    assert_eq!(events.len(), 3);
    assert_eq!(text(field(&events[2], "payload")), "{\"n\":2}");
    assert_eq!(text(field(&events[1], "event_id")), ids[1]);

    let got: Value = redis::cmd("EGET").arg(&ids[0]).query(&mut con).unwrap();
    assert_eq!(text(field(&got, "stream_id")), "order-1");
    let version: i64 = redis::cmd("ESVER").arg("order-1").query(&mut con).unwrap();
    assert_eq!(version, 2);
    let missing: Value = redis::cmd("ESVER").arg("nobody").query(&mut con).unwrap();
    assert_eq!(missing, Value::Nil);
}

/// A raw RESP2 request/response over a socket, without any client library.
fn raw(address: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn plain_resp2_clients_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    assert_eq!(raw(server.address, b"*1\r\n$4\r\nPING\r\n"), b"+PONG\r\n");
    let reply = raw(server.address, b"*1\r\n$7\r\nNOTACMD\r\n");
    assert!(
        reply.starts_with(b"-ERR unknown command 'NOTACMD'"),
        "{reply:?}"
    );
    let reply = raw(server.address, b"$4294967296\r\n");
    assert!(reply.starts_with(b"-ERR Protocol error"), "{reply:?}");
    // The server is still up for others.
    assert_eq!(raw(server.address, b"PING\r\n"), b"+PONG\r\n");
}

#[test]
fn configuration_precedence_is_flags_then_environment_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sierradb.toml");
    std::fs::write(&file, "partitions = 64\nbuckets = 2\n").unwrap();
    let partitions = |server: &Server| -> i64 {
        let mut con = server.redis();
        let hello: Value = redis::cmd("HELLO").arg(3).query(&mut con).unwrap();
        int(field(&hello, "num_partitions"))
    };
    let file_arg = file.to_str().unwrap();
    let from_file = Server::start(&dir.path().join("a"), &["--config", file_arg], &[]);
    assert_eq!(partitions(&from_file), 64);
    drop(from_file);
    let from_env = Server::start(
        &dir.path().join("b"),
        &["--config", file_arg],
        &[("SIERRADB_PARTITIONS", "16")],
    );
    assert_eq!(partitions(&from_env), 16);
    drop(from_env);
    let from_flag = Server::start(
        &dir.path().join("c"),
        &["--config", file_arg, "--partitions", "8"],
        &[("SIERRADB_PARTITIONS", "16")],
    );
    assert_eq!(partitions(&from_flag), 8);
}

#[test]
fn worker_threads_come_from_the_environment_and_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("a"),
        &[],
        &[("SIERRADB_WORKER_THREADS", "3")],
    );
    let mut con = server.redis();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|line| line.contains("sierradb listening") && line.contains("worker_threads=3")),
        "{log:?}"
    );
    drop(server);
    let stderr = refused_serve(&dir.path().join("b"), &["--worker-threads", "0"]);
    assert!(
        stderr.contains("worker threads must be at least 1"),
        "{stderr}"
    );
}

/// Runs `sierradb serve` on `dir` with `args`, which must make it fail; returns its stderr.
fn refused_serve(dir: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sierradb"))
        .args(["serve", "--client-address", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_second_server_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Server::start(dir.path(), &[], &[]);
    let stderr = refused_serve(dir.path(), &[]);
    assert!(
        stderr.contains("in use by another sierradb process"),
        "{stderr}"
    );
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let mut con = server.redis();
    let _: Value = redis::cmd("EAPPEND")
        .arg("s")
        .arg("E")
        .query(&mut con)
        .unwrap();
    server.signal("TERM");
    let log = server.log.clone();
    let status = server.wait();
    assert!(status.success(), "{status:?}: {:?}", log.lock().unwrap());
}

/// Appends from several connections until stopped; returns the acknowledged
/// (event id, stream, version) triples.
fn burst(address: SocketAddr, writers: usize, stop: Arc<AtomicBool>) -> Vec<(String, String, i64)> {
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let Ok(client) = redis::Client::open(format!("redis://{address}/?protocol=resp3"))
                else {
                    return acked;
                };
                let Ok(mut con) = client.get_connection() else {
                    return acked;
                };
                let stream = format!("burst-{w}");
                while !stop.load(Ordering::Relaxed) {
                    let reply: Result<Value, _> = redis::cmd("EAPPEND")
                        .arg(&stream)
                        .arg("E")
                        .arg("PAYLOAD")
                        .arg(format!("w{w}-{}", acked.len()))
                        .query(&mut con);
                    match reply {
                        Ok(v) => acked.push((
                            text(field(&v, "event_id")),
                            stream.clone(),
                            int(field(&v, "stream_version")),
                        )),
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

#[test]
fn kill_9_during_a_write_burst_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().to_owned();
    let server = Server::start(&data, &[], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let address = server.address;
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || burst(address, 8, stop))
    };
    std::thread::sleep(Duration::from_millis(700));
    server.signal("KILL");
    let acked = writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    drop(server);
    assert!(
        acked.len() > 50,
        "only {} appends acknowledged",
        acked.len()
    );

    let server = Server::start(&data, &[], &[]);
    let mut con = server.redis();
    for (id, stream, version) in &acked {
        let got: Value = redis::cmd("EGET").arg(id).query(&mut con).unwrap();
        assert_eq!(text(field(&got, "stream_id")), *stream, "event {id}");
        assert_eq!(int(field(&got, "stream_version")), *version);
    }
    // Versions stay gapless: every stream scans 0..=last without holes.
    for w in 0..8 {
        let stream = format!("burst-{w}");
        let scan: Value = redis::cmd("ESCAN")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1_000_000)
            .query(&mut con)
            .unwrap();
        let Value::Array(events) = field(&scan, "events") else {
            panic!()
        };
        for (n, e) in events.iter().enumerate() {
            assert_eq!(int(field(e, "stream_version")), n as i64);
        }
    }
}

fn eappend(con: &mut redis::Connection, stream: &str) {
    let _: Value = redis::cmd("EAPPEND")
        .arg(stream)
        .arg("E")
        .query(con)
        .unwrap();
}

/// `sierradb check --dir DIR [--repair]`.
fn check(dir: &std::path::Path, repair: bool) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sierradb"));
    command.args(["check", "--dir"]).arg(dir);
    if repair {
        command.arg("--repair");
    }
    command.output().unwrap()
}

/// By default the server keeps zeros written ahead of each open segment's frames
/// (`--preallocate-bytes`): `check` takes them for unused space, and a restart appends over them.
#[test]
fn check_accepts_the_zeros_written_ahead_of_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let mut con = server.redis();
    for i in 0..20 {
        eappend(&mut con, "s");
        if i == 10 {
            // The zeros are written in the background, a moment after the first appends.
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    server.signal("TERM");
    assert!(server.wait().success());
    // One stream: one bucket's open segment holds the 21 frames, then the zeros.
    let longest = (0..4)
        .map(|b| {
            let path = dir
                .path()
                .join(format!("bucket-{b:03}/segment-0000000000.log"));
            std::fs::metadata(path).unwrap().len()
        })
        .max()
        .unwrap();
    assert!(
        longest >= 1 << 20,
        "no zeros ahead of the frames: {longest} bytes"
    );
    let out = check(dir.path(), false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let server = Server::start(dir.path(), &[], &[]);
    let mut con = server.redis();
    eappend(&mut con, "s");
    let v: i64 = redis::cmd("ESVER").arg("s").query(&mut con).unwrap();
    assert_eq!(v, 20);
}

#[test]
fn check_reports_a_torn_tail_and_repair_cuts_it_keeping_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Without zeros ahead of the frames, so the garbage written below directly follows them.
    let server = Server::start(dir.path(), &["--preallocate-bytes", "0"], &[]);
    let mut con = server.redis();
    for i in 0..20 {
        let _: Value = redis::cmd("EAPPEND")
            .arg(format!("s-{i}"))
            .arg("E")
            .query(&mut con)
            .unwrap();
    }
    server.signal("TERM");
    assert!(server.wait().success());
    let segment = dir.path().join("bucket-000").join("segment-0000000000.log");
    let clean_len = std::fs::metadata(&segment).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    file.write_all(&[7u8; 13]).unwrap();
    drop(file);

    let check = |repair| check(dir.path(), repair);
    let out = check(false);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.to_lowercase().contains("torn"), "{report}");
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), clean_len + 13);

    let out = check(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), clean_len);
    let saved = dir
        .path()
        .join("bucket-000")
        .join(format!("segment-0000000000.log.torn-{clean_len}"));
    assert_eq!(std::fs::read(saved).unwrap(), vec![7u8; 13]);
    assert!(check(false).status.success());

    let server = Server::start(dir.path(), &[], &[]);
    let mut con = server.redis();
    for i in 0..20 {
        let v: i64 = redis::cmd("ESVER")
            .arg(format!("s-{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(v, 0);
    }
}

#[test]
fn metrics_endpoint_and_configured_limits() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let metrics = format!("127.0.0.1:{port}");
    let server = Server::start(
        dir.path(),
        &[
            "--metrics-address",
            &metrics,
            "--max-subscriptions-per-connection",
            "1",
            "--max-transaction-events",
            "2",
        ],
        &[],
    );
    let mut con = server.redis();
    for i in 0..5 {
        let _: Value = redis::cmd("EAPPEND")
            .arg(format!("m-{i}"))
            .arg("E")
            .query(&mut con)
            .unwrap();
    }
    let _: Value = redis::cmd("ESUB")
        .arg("m-0")
        .arg("FROM")
        .arg(0)
        .query(&mut con)
        .unwrap();
    let err = redis::cmd("ESUB")
        .arg("m-1")
        .query::<Value>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("subscriptions"), "{err}");
    let key = "550e8400-e29b-41d4-a716-446655440000";
    let err = redis::cmd("EMAPPEND")
        .arg(key)
        .arg("a")
        .arg("E")
        .arg("b")
        .arg("E")
        .arg("c")
        .arg("E")
        .query::<Value>(&mut con)
        .unwrap_err();
    assert!(err.to_string().contains("at most 2 events"), "{err}");

    let body = (0..50)
        .find_map(|_| {
            let mut s = TcpStream::connect(&metrics).ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            Some(text)
        })
        .expect("metrics endpoint answers");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    // Five appends and the refused EMAPPEND, which the store answered.
    assert!(
        body.contains("sierradb_append_latency_seconds_count 6\n"),
        "{body}"
    );
    assert!(
        body.contains("sierradb_appended_events_total 5\n"),
        "{body}"
    );
    assert!(body.contains("sierradb_subscriptions 1\n"), "{body}");
    // The subscription from version 0 of `m-0` has acknowledged none of its one event.
    assert!(
        body.contains("sierradb_subscription_lag_max_events 1\n"),
        "{body}"
    );
    assert!(
        body.contains("sierradb_fsync_latency_seconds_bucket{le=\"+Inf\"}"),
        "{body}"
    );
}
