//! Zeros written ahead of the open segment's frames (`store::prealloc`), through `Db` on tokio:
//! the fill really happens off the commit path, recovery and `check` take the zeros for unused
//! space, a seal cuts them off, and a full disk stops the fill without losing anything.
//! (Crashes in the middle of fills: `tests/crash.rs`, every other seed.)

#![expect(
    clippy::disallowed_methods,
    reason = "the test harness drives tokio directly; the code under test goes through Env"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use db::env::TokioEnv;
use db::error::AppendError;
use db::model::{
    EventId, ExpectedVersion, NewEvent, PartitionKey, PartitionSeq, StreamId, StreamVersion,
    Transaction, TransactionId,
};
use db::store::check::{self, CheckOptions};
use db::store::layout;
use db::{Db, StoreConfig};
use disk::{Disk, FaultConfig, File, OpenMode, RealDisk, SimDisk};
use uuid::Uuid;

fn txn(n: u128, stream: &str) -> Transaction {
    let stream_id = StreamId::new(stream).unwrap();
    Transaction {
        transaction_id: TransactionId(Uuid::from_u128(n | (1 << 120))),
        partition_key: PartitionKey::for_stream(&stream_id),
        events: vec![NewEvent {
            event_id: EventId(Uuid::from_u128(n)),
            stream_id,
            event_name: "E".into(),
            expected_version: ExpectedVersion::Any,
            timestamp_ms: 0,
            metadata: Bytes::new(),
            payload: Bytes::from(vec![b'x'; 100]),
        }],
    }
}

/// One bucket, so every append lands in the same segment log.
fn config(segment_size_bytes: u64, preallocate_bytes: u64) -> StoreConfig {
    StoreConfig {
        partition_count: 4,
        bucket_count: 1,
        segment_size_bytes,
        max_transaction_bytes: 1024,
        preallocate_bytes,
        ..StoreConfig::default()
    }
}

fn segment_len(disk: &impl Disk, root: &Path, segment: u32) -> u64 {
    let path = layout::segment_file(&layout::bucket_dir(root, 0), segment);
    disk.open(&path, OpenMode::Read).unwrap().len().unwrap()
}

fn versions(db: &Db<impl Disk>, stream: &str) -> Vec<u64> {
    let id = StreamId::new(stream).unwrap();
    db.store()
        .scan_stream(
            PartitionKey::for_stream(&id),
            &id,
            StreamVersion(0),
            None,
            10_000,
        )
        .unwrap()
        .events
        .iter()
        .map(|e| e.stream_version.0)
        .collect()
}

/// Waits (a few seconds at most) until the open segment 0 is longer than `frames` bytes.
async fn wait_for_zeros(disk: &impl Disk, root: &Path, frames: u64) -> u64 {
    for _ in 0..500 {
        let len = segment_len(disk, root, 0);
        if len > frames {
            return len;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no zeros were written ahead of {frames} bytes of frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeros_are_written_ahead_and_a_reopen_keeps_them_as_unused_space() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let env = TokioEnv::new(1);
    let config = config(1 << 20, 64 * 1024);
    let (db, _) = Db::open(&env, &RealDisk, root, config.clone()).unwrap();
    for n in 0..20 {
        db.append(txn(n, "s")).await.unwrap();
    }
    let frames = db.store().stats().bytes;
    // The fill runs in the background: the file grows past the frames by about 64 KiB.
    let len = wait_for_zeros(&RealDisk, root, frames).await;
    assert!(
        len >= 32 * 1024,
        "{len} bytes after {frames} bytes of frames"
    );
    // Dropped without a shutdown, as a killed process would be.
    drop(db);

    let (db, report) = Db::open(&env, &RealDisk, root, config.clone()).unwrap();
    assert!(report.buckets[0].truncated.is_none(), "{report}");
    assert_eq!(versions(&db, "s"), (0..20).collect::<Vec<_>>());
    assert_eq!(segment_len(&RealDisk, root, 0), len, "the zeros stay");
    let checked = check::check(&RealDisk, root, CheckOptions { repair: false }).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);

    // Appends go on over the zeros, and a reopen finds them too.
    for n in 20..40 {
        db.append(txn(n, "s")).await.unwrap();
    }
    db.shutdown().await;
    drop(db);
    let (db, report) = Db::open(&env, &RealDisk, root, config).unwrap();
    assert!(report.buckets[0].truncated.is_none(), "{report}");
    assert_eq!(versions(&db, "s"), (0..40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_segment_is_cut_back_to_its_frames() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let env = TokioEnv::new(2);
    // Frames of about 200 bytes: a seal every ~80 appends, zeros 4 KiB ahead.
    let config = config(16 * 1024, 4 * 1024);
    let (db, _) = Db::open(&env, &RealDisk, root, config.clone()).unwrap();
    for n in 0..400 {
        db.append(txn(n, "s")).await.unwrap();
        if n % 50 == 0 {
            // Give the fills time to run, so seals find zeros to cut.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let seals = db.store().stats().seals;
    assert!(seals >= 4, "{seals} seals");
    db.shutdown().await;
    drop(db);
    // A sealed segment with zeros after its frames would be a corrupt frame to `check`.
    let checked = check::check(&RealDisk, root, CheckOptions { repair: false }).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    let (db, report) = Db::open(&env, &RealDisk, root, config).unwrap();
    assert!(report.buckets[0].truncated.is_none(), "{report}");
    assert_eq!(versions(&db, "s"), (0..400).collect::<Vec<_>>());
}

/// A full disk: appends keep landing in the space already written ahead, the fill fails
/// without harm, appends past the reserved space fail cleanly, and once space returns they
/// resume. After a crash exactly the acknowledged events are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_fill_and_appends_resume_when_space_returns() {
    let disk = SimDisk::new(5, FaultConfig::default());
    let env = TokioEnv::new(5);
    let root = PathBuf::from("/data");
    let config = config(1 << 20, 8 * 1024);
    let (db, _) = Db::open(&env, &disk, &root, config.clone()).unwrap();
    db.append(txn(0, "s")).await.unwrap();
    let frames = db.store().stats().bytes;
    wait_for_zeros(&disk, &root, frames + 4 * 1024).await;
    disk.set_capacity(Some(disk.used_bytes()));
    let mut acknowledged = 1;
    let mut refused = 0;
    for n in 1..200 {
        match db.append(txn(n, "s")).await {
            Ok(outcome) => {
                assert_eq!(refused, 0, "an append after a refusal went through");
                assert_eq!(outcome.events[0].stream_version, StreamVersion(n as u64));
                acknowledged += 1;
            }
            Err(AppendError::Unavailable(err)) => {
                assert!(err.to_string().contains("disk full"), "{err}");
                refused += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    // About 4 KiB of zeros were left: some 20 appends of ~200 bytes fit, then none.
    assert!(
        acknowledged > 10,
        "only {acknowledged} appends fit the zeros"
    );
    assert!(refused > 100, "only {refused} appends refused");
    assert_eq!(versions(&db, "s"), (0..acknowledged).collect::<Vec<_>>());

    disk.set_capacity(None);
    let outcome = db.append(txn(1000, "s")).await.unwrap();
    assert_eq!(
        outcome.events[0].stream_version,
        StreamVersion(acknowledged)
    );
    db.shutdown().await;
    drop(db);
    disk.crash();
    let (db, report) = Db::open(&env, &disk, &root, config).unwrap();
    let partition = db
        .store()
        .partition_of(PartitionKey::for_stream(&StreamId::new("s").unwrap()));
    assert_eq!(
        db.store().partition_sequence(partition),
        Some(PartitionSeq(acknowledged)),
        "{report}"
    );
    assert_eq!(versions(&db, "s"), (0..=acknowledged).collect::<Vec<_>>());
}
