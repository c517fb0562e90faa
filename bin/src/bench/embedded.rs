//! `sierradb bench --embedded`: appends and reads through the store in process, on the real
//! disk, and prints durable events/s, fsyncs/s, events per fsync and latency percentiles.
//!
//! Durable throughput is bounded by how many fsyncs the disk does per second times how many
//! events ride on each, so the benchmark measures the raw fsync rate (4 KiB write +
//! fdatasync, one thread) in the same directory just before each durable workload and prints
//! the ceiling `writers × events per transaction × raw fsyncs/s` beside its result. It also
//! measures, once, how many fsyncs the disk does with one thread per bucket in parallel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use db::env::TokioEnv;
use db::model::{
    EventId, ExpectedVersion, NewEvent, PartitionKey, StreamId, StreamVersion, Transaction,
    TransactionId,
};
use db::{Db, StoreConfig, SyncPolicy};
use disk::RealDisk;
use uuid::Uuid;

use super::Common;
use super::stats::{Latencies, Report};

#[derive(clap::Args, Debug, Clone)]
pub struct EmbeddedArgs {
    /// Directory to benchmark in (a fresh subdirectory is made and removed). Defaults to the
    /// current directory, so the figures are those of the disk you will run on.
    #[arg(long, default_value = ".")]
    pub bench_dir: PathBuf,
    /// Concurrent writers for the concurrent workloads.
    #[arg(long, default_value_t = 64)]
    pub writers: usize,
    /// Events stored before the random-get workload.
    #[arg(long, default_value_t = 1_000_000)]
    pub get_events: u64,
    /// Run only the workloads whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Bytes of zeros kept ahead of each open segment's frames, as `serve
    /// --preallocate-bytes` (0 = off), to measure what preallocation changes.
    #[arg(long, default_value_t = db::config::DEFAULT_PREALLOCATE_BYTES)]
    pub preallocate_bytes: u64,
}

/// A small deterministic generator; benchmarks need spread, not cryptography.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn fresh_uuid(tag: u64) -> Uuid {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    Uuid::from_u64_pair(tag, n)
}

/// A stream and its partition key, worked out once: a client that appends to a stream many
/// times need not hash its name each time.
#[derive(Clone)]
struct Target {
    stream: StreamId,
    key: PartitionKey,
}

impl Target {
    fn new(name: &str) -> Self {
        let stream = StreamId::new(name).unwrap();
        let key = PartitionKey::for_stream(&stream);
        Target { stream, key }
    }
}

fn transaction(target: &Target, events: usize, payload: &Bytes) -> Transaction {
    let stream = &target.stream;
    Transaction {
        transaction_id: TransactionId(fresh_uuid(1)),
        partition_key: target.key,
        events: (0..events)
            .map(|_| NewEvent {
                event_id: EventId(fresh_uuid(2)),
                stream_id: stream.clone(),
                event_name: "BenchEvent".into(),
                expected_version: ExpectedVersion::Any,
                timestamp_ms: 0,
                metadata: Bytes::new(),
                payload: payload.clone(),
            })
            .collect(),
    }
}

/// Raw fsyncs per second: 4 KiB write + fdatasync in a loop for about a second, on `files`
/// files at once (one thread each), in total.
fn raw_fsync_rate(dir: &Path, files: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let counts = std::thread::scope(|scope| {
        let probes: Vec<_> = (0..files)
            .map(|i| {
                scope.spawn(move || -> anyhow::Result<u64> {
                    let path = dir.join(format!("fsync-probe-{i}"));
                    let mut file = std::fs::File::create(&path)?;
                    let block = vec![0xabu8; 4096];
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_secs(1) {
                        file.write_all(&block)?;
                        file.sync_data()?;
                        n += 1;
                    }
                    std::fs::remove_file(&path)?;
                    Ok(n)
                })
            })
            .collect();
        probes
            .into_iter()
            .map(|p| p.join().expect("fsync probe panicked"))
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    Ok(counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64())
}

struct AppendWorkload<'a> {
    name: &'a str,
    writers: usize,
    streams: usize,
    events_per_txn: usize,
    sync: SyncPolicy,
}

async fn run_appends(
    common: &Common,
    root: &Path,
    w: AppendWorkload<'_>,
    fsync_rate: f64,
    preallocate_bytes: u64,
) -> anyhow::Result<Report> {
    let dir = root.join(w.name.replace(' ', "-"));
    let env = TokioEnv::new(TokioEnv::seed_from_clock());
    let config = StoreConfig {
        sync: w.sync,
        preallocate_bytes,
        ..StoreConfig::default()
    };
    let (db, _) = Db::open(&env, &RealDisk, &dir, config)?;
    let streams: Arc<Vec<Target>> = Arc::new(
        (0..w.streams)
            .map(|i| Target::new(&format!("bench-{i}")))
            .collect(),
    );
    let payload = Bytes::from(vec![b'x'; common.payload]);
    let stop = Arc::new(AtomicBool::new(false));
    let before = db.store().stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..w.writers {
        let db = db.clone();
        let streams = streams.clone();
        let payload = payload.clone();
        let stop = stop.clone();
        let events_per_txn = w.events_per_txn;
        tasks.push(tokio::spawn(async move {
            let mut rng = SplitMix(writer as u64 + 1);
            let mut latencies = Latencies::default();
            while !stop.load(Ordering::Relaxed) {
                let stream = &streams[rng.below(streams.len())];
                let txn = transaction(stream, events_per_txn, &payload);
                let t = Instant::now();
                db.append(txn).await.expect("append");
                latencies.record(t.elapsed());
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(common.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Latencies::default();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let elapsed = start.elapsed();
    let after = db.store().stats();
    db.shutdown().await;
    drop(db);
    std::fs::remove_dir_all(&dir).ok();
    let durable = w.sync == SyncPolicy::Always;
    Ok(Report {
        name: w.name.to_string(),
        ops: latencies.len() as u64,
        events: after.events - before.events,
        elapsed,
        fsyncs: after.syncs - before.syncs,
        writes: after.batches - before.batches,
        p50_us: latencies.quantile_us(0.5),
        p99_us: latencies.quantile_us(0.99),
        p999_us: latencies.quantile_us(0.999),
        ceiling_events_per_sec: durable.then(|| fsync_rate * (w.writers * w.events_per_txn) as f64),
    })
}

/// Loads `events` events into `streams` streams with fsync off (loading is not what is
/// measured), then reopens the store durably for the read workloads.
async fn load(dir: &Path, streams: usize, events: u64, payload: usize) -> anyhow::Result<()> {
    let env = TokioEnv::new(TokioEnv::seed_from_clock());
    let config = StoreConfig {
        sync: SyncPolicy::NeverUnsafe,
        ..StoreConfig::default()
    };
    let (db, _) = Db::open(&env, &RealDisk, dir, config)?;
    let payload = Bytes::from(vec![b'y'; payload]);
    let per_stream = events / streams as u64;
    let mut tasks = Vec::new();
    for s in 0..streams {
        let db = db.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let stream = Target::new(&format!("load-{s}"));
            let mut written = 0;
            while written < per_stream {
                let n = (per_stream - written).min(10) as usize;
                db.append(transaction(&stream, n, &payload))
                    .await
                    .expect("load");
                written += n as u64;
            }
        }));
        if tasks.len() >= 64 {
            for t in tasks.drain(..) {
                t.await?;
            }
        }
    }
    for t in tasks {
        t.await?;
    }
    db.shutdown().await;
    Ok(())
}

async fn run_reads(
    common: &Common,
    root: &Path,
    name: &str,
    streams: usize,
    events: u64,
    scan: bool,
) -> anyhow::Result<Report> {
    let dir = root.join(name.replace(' ', "-"));
    load(&dir, streams, events, common.payload).await?;
    let env = TokioEnv::new(TokioEnv::seed_from_clock());
    let (db, _) = Db::open(&env, &RealDisk, &dir, StoreConfig::default())?;
    let store = db.store().clone();
    // Collect the ids to get from the data itself.
    let mut ids = Vec::new();
    if !scan {
        for s in 0..streams {
            let stream = StreamId::new(&format!("load-{s}")).unwrap();
            let key = PartitionKey::for_stream(&stream);
            let all = store.scan_stream(key, &stream, StreamVersion(0), None, usize::MAX)?;
            ids.extend(all.events.iter().map(|e| e.event_id));
        }
    }
    let ids = Arc::new(ids);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..2 {
        let store = store.clone();
        let ids = ids.clone();
        let stop = stop.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut rng = SplitMix(worker + 7);
            let mut latencies = Latencies::default();
            let mut events = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if scan {
                    let stream = StreamId::new(&format!("load-{}", rng.below(streams))).unwrap();
                    let key = PartitionKey::for_stream(&stream);
                    let got = store
                        .scan_stream(key, &stream, StreamVersion(0), None, 1000)
                        .expect("scan");
                    events += got.events.len() as u64;
                } else {
                    let id = ids[rng.below(ids.len())];
                    store.get(&id).expect("get").expect("stored");
                    events += 1;
                }
                latencies.record(t.elapsed());
            }
            (latencies, events)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(common.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Latencies::default();
    let mut total_events = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        total_events += e;
    }
    let elapsed = start.elapsed();
    db.shutdown().await;
    drop((db, store));
    std::fs::remove_dir_all(&dir).ok();
    Ok(Report {
        name: name.to_string(),
        ops: latencies.len() as u64,
        events: total_events,
        elapsed,
        fsyncs: 0,
        writes: 0,
        p50_us: latencies.quantile_us(0.5),
        p99_us: latencies.quantile_us(0.99),
        p999_us: latencies.quantile_us(0.999),
        ceiling_events_per_sec: None,
    })
}

pub async fn run(args: EmbeddedArgs, common: Common, json: bool) -> anyhow::Result<()> {
    let root = args
        .bench_dir
        .join(format!("sierradb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    let result = run_all(&args, &common, &root, json).await;
    std::fs::remove_dir_all(&root).ok();
    result
}

async fn run_all(
    args: &EmbeddedArgs,
    common: &Common,
    root: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let fsync_rate = raw_fsync_rate(root, 1)?;
    // The store's buckets sync their own files in parallel; how far that adds up is the
    // disk's, so it is measured too (it bounds durable events/s with the events per fsync).
    let buckets = usize::from(StoreConfig::default().bucket_count);
    let parallel_rate = raw_fsync_rate(root, buckets)?;
    let wanted = |name: &str| args.only.as_deref().is_none_or(|o| name.contains(o));
    if !json {
        println!(
            "raw fsync rate in {}: {fsync_rate:.0}/s (4 KiB write + fdatasync, one thread); \
             {parallel_rate:.0}/s in total with {buckets} threads on {buckets} files, one per bucket",
            root.display()
        );
    }
    let mut reports = Vec::new();
    let appends = [
        AppendWorkload {
            name: "append 1 writer",
            writers: 1,
            streams: 1,
            events_per_txn: 1,
            sync: SyncPolicy::Always,
        },
        AppendWorkload {
            name: "append concurrent writers",
            writers: args.writers,
            streams: common.streams,
            events_per_txn: 1,
            sync: SyncPolicy::Always,
        },
        AppendWorkload {
            name: "append 10-event transactions",
            writers: args.writers,
            streams: common.streams,
            events_per_txn: 10,
            sync: SyncPolicy::Always,
        },
        AppendWorkload {
            name: "append UNSAFE no fsync",
            writers: args.writers,
            streams: common.streams,
            events_per_txn: 1,
            sync: SyncPolicy::NeverUnsafe,
        },
    ];
    for w in appends {
        if wanted(w.name) {
            // The disk's fsync rate drifts from minute to minute: each durable workload is
            // held against a probe taken just before it.
            let probe = if w.sync == SyncPolicy::Always {
                raw_fsync_rate(root, 1)?
            } else {
                fsync_rate
            };
            let report = run_appends(common, root, w, probe, args.preallocate_bytes).await?;
            emit(&report, json);
            reports.push(report);
        }
    }
    if wanted("scan 1000 events") {
        let report = run_reads(common, root, "scan 1000 events", 100, 100_000, true).await?;
        emit(&report, json);
    }
    if wanted("get random id") {
        let report = run_reads(common, root, "get random id", 1000, args.get_events, false).await?;
        emit(&report, json);
    }
    Ok(())
}

fn emit(report: &Report, json: bool) {
    if json {
        println!("{}", report.json());
    } else {
        report.print_text();
    }
}
