//! Group commit through `Db` on tokio: concurrent appends share fsyncs, each is acknowledged
//! only after a sync covers it, and a full disk fails appends cleanly until space returns.

#![expect(
    clippy::disallowed_methods,
    reason = "the test harness drives tokio directly; the code under test goes through Env"
)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use db::env::TokioEnv;
use db::error::AppendError;
use db::model::{
    EventId, ExpectedVersion, NewEvent, PartitionKey, PartitionSeq, StreamId, StreamVersion,
    Transaction, TransactionId,
};
use db::{Db, StoreConfig};
use disk::{Disk, FaultConfig, File, Mapped, OpenMode, RealDisk, SimDisk};
use uuid::Uuid;

/// A real disk whose syncs take at least 3 ms and are counted, so batches must form.
#[derive(Clone, Default)]
struct SlowSyncDisk {
    syncs: Arc<AtomicU64>,
}

struct SlowFile {
    inner: <RealDisk as Disk>::File,
    disk: SlowSyncDisk,
}

impl Disk for SlowSyncDisk {
    type File = SlowFile;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SlowFile> {
        Ok(SlowFile {
            inner: RealDisk.open(path, mode)?,
            disk: self.clone(),
        })
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealDisk.create_dir_all(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealDisk.list_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealDisk.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealDisk.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealDisk.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        RealDisk.exists(path)
    }
}

impl File for SlowFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, bytes)
    }
    fn sync(&self) -> io::Result<()> {
        std::thread::sleep(Duration::from_millis(3));
        self.disk.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn map(&self) -> io::Result<Mapped> {
        self.inner.map()
    }
}

fn event(n: u128, stream: &str, expected: ExpectedVersion) -> NewEvent {
    NewEvent {
        event_id: EventId(Uuid::from_u128(n)),
        stream_id: StreamId::new(stream).unwrap(),
        event_name: "E".into(),
        expected_version: expected,
        timestamp_ms: 0,
        metadata: Bytes::new(),
        payload: Bytes::from(vec![n as u8; 50]),
    }
}

fn txn(n: u128, stream: &str, expected: ExpectedVersion) -> Transaction {
    let e = event(n, stream, expected);
    Transaction {
        transaction_id: TransactionId(Uuid::from_u128(n | (1 << 120))),
        partition_key: PartitionKey::for_stream(&e.stream_id),
        events: vec![e],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SlowSyncDisk::default();
    let env = TokioEnv::new(1);
    // Without zeros written ahead, whose syncs the disk would count too.
    let config = StoreConfig {
        preallocate_bytes: 0,
        ..StoreConfig::default()
    };
    let (db, _) = Db::open(&env, &disk, dir.path(), config).unwrap();
    let syncs_before = disk.syncs.load(Ordering::SeqCst);
    let writers = 64;
    let per_writer = 20;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let n = (w * 1000 + i) as u128;
                let outcome = db
                    .append(txn(n, &format!("writer-{w}"), expect_after(i)))
                    .await
                    .unwrap();
                assert_eq!(outcome.events[0].stream_version, StreamVersion(i as u64));
                // Acknowledged means durable and visible.
                assert!(
                    db.store()
                        .get(&EventId(Uuid::from_u128(n)))
                        .unwrap()
                        .is_some()
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = db.store().stats();
    let syncs = disk.syncs.load(Ordering::SeqCst) - syncs_before;
    assert_eq!(stats.transactions, (writers * per_writer) as u64);
    assert_eq!(stats.syncs, syncs);
    // 1,280 appends from 64 concurrent writers: group commit must share syncs widely.
    assert!(
        syncs * 4 < stats.transactions,
        "{syncs} syncs for {} appends",
        stats.transactions
    );
    db.shutdown().await;
    let err = db
        .append(txn(1, "late", ExpectedVersion::Any))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Unavailable(_)), "{err}");
}

/// `Empty` for the first append of a stream, then the previous version.
fn expect_after(i: usize) -> ExpectedVersion {
    if i == 0 {
        ExpectedVersion::Empty
    } else {
        ExpectedVersion::Exact(i as u64 - 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_appends_cleanly_and_they_resume_when_space_returns() {
    let disk = SimDisk::new(3, FaultConfig::default());
    let env = TokioEnv::new(3);
    let root = PathBuf::from("/data");
    let config = StoreConfig {
        partition_count: 4,
        bucket_count: 1,
        segment_size_bytes: 64 * 1024,
        max_transaction_bytes: 4 * 1024,
        // Zeros written ahead would reserve the space this test fills (tests/prealloc.rs).
        preallocate_bytes: 0,
        ..StoreConfig::default()
    };
    let (db, _) = Db::open(&env, &disk, &root, config.clone()).unwrap();
    for i in 0..10 {
        db.append(txn(i, "s", ExpectedVersion::Any)).await.unwrap();
    }
    disk.set_capacity(Some(disk.used_bytes() + 100));
    let mut refused = 0;
    for i in 10..40 {
        match db.append(txn(i, "s", ExpectedVersion::Any)).await {
            Ok(_) => {}
            Err(AppendError::Unavailable(err)) => {
                assert!(err.to_string().contains("disk full"), "{err}");
                refused += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(refused > 20, "only {refused} appends refused");
    // Reads keep working, and nothing half-written is visible.
    let key = PartitionKey::for_stream(&StreamId::new("s").unwrap());
    let stored = db
        .store()
        .scan_stream(
            key,
            &StreamId::new("s").unwrap(),
            StreamVersion(0),
            None,
            1000,
        )
        .unwrap()
        .events
        .len();
    assert!((10..20).contains(&stored), "{stored}");
    disk.set_capacity(None);
    let outcome = db
        .append(txn(100, "s", ExpectedVersion::Any))
        .await
        .unwrap();
    assert_eq!(
        outcome.events[0].stream_version,
        StreamVersion(stored as u64)
    );
    // And after a crash, exactly the acknowledged events are there.
    db.shutdown().await;
    drop(db);
    disk.crash();
    let (db, report) = Db::open(&env, &disk, &root, config).unwrap();
    let partition = db.store().partition_of(key);
    assert_eq!(
        db.store().partition_sequence(partition),
        Some(PartitionSeq(stored as u64)),
        "{report}"
    );
}

/// A data directory that turns read-only (an `errors=remount-ro` file system, or permissions
/// taken away): appends fail with a typed, retryable error naming the cause, reads keep
/// working, nothing stored changes, and appends resume once it is writable again. Opening a
/// store where nothing can be created fails with the same typed error.
#[tokio::test]
async fn a_read_only_directory_refuses_appends_cleanly_and_they_resume() {
    let disk = SimDisk::new(4, FaultConfig::default());
    let env = TokioEnv::new(4);
    let root = PathBuf::from("/data");
    let config = StoreConfig {
        partition_count: 4,
        bucket_count: 1,
        ..StoreConfig::default()
    };
    let (db, _) = Db::open(&env, &disk, &root, config.clone()).unwrap();
    for i in 0..5 {
        db.append(txn(i, "s", ExpectedVersion::Any)).await.unwrap();
    }
    disk.set_read_only(true);
    for i in 5..8 {
        match db.append(txn(i, "s", ExpectedVersion::Any)).await {
            Err(err @ AppendError::Unavailable(_)) => {
                assert!(err.is_retryable(), "{err}");
                assert!(err.to_string().contains("read-only"), "{err}");
            }
            other => panic!("expected a read-only refusal, got {other:?}"),
        }
    }
    let stream = StreamId::new("s").unwrap();
    let key = PartitionKey::for_stream(&stream);
    let read = |db: &Db<SimDisk>| {
        db.store()
            .scan_stream(key, &stream, StreamVersion(0), None, 100)
            .unwrap()
            .events
            .iter()
            .map(|e| e.event_id)
            .collect::<Vec<_>>()
    };
    let id = |n: u128| EventId(Uuid::from_u128(n));
    let stored: Vec<EventId> = (0..5).map(id).collect();
    assert_eq!(read(&db), stored);

    // A new store cannot even be laid out on it.
    let refused = Db::open(&env, &disk, Path::new("/other"), config.clone());
    let err = refused
        .err()
        .expect("opening on a read-only disk must fail");
    assert!(err.to_string().contains("read-only"), "{err}");

    disk.set_read_only(false);
    let outcome = db.append(txn(9, "s", ExpectedVersion::Any)).await.unwrap();
    assert_eq!(outcome.events[0].stream_version, StreamVersion(5));
    db.shutdown().await;
    drop(db);
    disk.crash();
    let (db, _) = Db::open(&env, &disk, &root, config).unwrap();
    let mut expected = stored;
    expected.push(id(9));
    assert_eq!(read(&db), expected);
}
