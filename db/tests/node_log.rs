//! The node log (`store::log`), through `Db` on tokio: zeros written ahead of its records, a
//! killed store's log replayed on reopening and removed by a clean stop, files taking turns
//! across checkpoints, and a full disk refusing appends cleanly until space returns. (Crashes
//! in the middle of all of it: `tests/crash.rs`, and the simulator's `node_log` scenario.)

use std::path::{Path, PathBuf};

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

/// One bucket, so every append lands in the same segment.
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

/// The node log files in `root`: (generation, length), by generation.
fn log_files(disk: &impl Disk, root: &Path) -> Vec<(u64, u64)> {
    let mut files: Vec<(u64, u64)> = disk
        .list_dir(root)
        .unwrap()
        .iter()
        .filter_map(|name| {
            let generation = layout::parse_log_file(name)?;
            let file = disk.open(&root.join(name), OpenMode::Read).unwrap();
            Some((generation, file.len().unwrap()))
        })
        .collect();
    files.sort();
    files
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stores_log_is_replayed_and_a_clean_stop_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let env = TokioEnv::new(1);
    let config = config(1 << 20, 64 * 1024);
    let (db, _) = Db::open(&env, &RealDisk, root, config.clone()).unwrap();
    for n in 0..20 {
        db.append(txn(n, "s")).await.unwrap();
    }
    // One log file, grown with its zeros ahead in the first commit's sync.
    let files = log_files(&RealDisk, root);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].1 >= 64 * 1024, "{files:?}");
    // Dropped without a shutdown, as a killed process would be: the log stays.
    drop(db);
    assert_eq!(log_files(&RealDisk, root).len(), 1);
    let checked = check::check(&RealDisk, root, CheckOptions { repair: false }).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);

    let (db, report) = Db::open(&env, &RealDisk, root, config.clone()).unwrap();
    assert_eq!(report.log.records, 20, "{report}");
    assert!(report.buckets[0].truncated.is_none(), "{report}");
    assert_eq!(versions(&db, "s"), (0..20).collect::<Vec<_>>());
    // The old file is written over as the next generation.
    let files = log_files(&RealDisk, root);
    assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1]);
    for n in 20..40 {
        db.append(txn(n, "s")).await.unwrap();
    }
    db.shutdown().await;
    drop(db);
    assert_eq!(
        log_files(&RealDisk, root),
        Vec::new(),
        "a clean stop leaves no log"
    );
    let (db, report) = Db::open(&env, &RealDisk, root, config).unwrap();
    assert!(report.log.files.is_empty(), "{report}");
    assert!(!report.repaired_anything(), "{report}");
    assert_eq!(versions(&db, "s"), (0..40).collect::<Vec<_>>());
}

/// Every acknowledged append survives a power cut that loses every write not synced, across
/// many checkpoints: the segments are synced only when the log moves on, the two log files
/// take turns, and recovery writes back from the log what the segments lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_files_take_turns_and_a_power_cut_loses_nothing_acknowledged() {
    let faults = FaultConfig {
        unsynced_write_kept_probability: 0.0,
        ..FaultConfig::default()
    };
    let disk = SimDisk::new(3, faults);
    let env = TokioEnv::new(3);
    let root = PathBuf::from("/data");
    let config = StoreConfig {
        log_rotate_bytes: 4 * 1024,
        ..config(16 * 1024, 1024)
    };
    let (db, _) = Db::open(&env, &disk, &root, config.clone()).unwrap();
    for n in 0..300 {
        db.append(txn(n, "s")).await.unwrap();
    }
    let seals = db.store().stats().seals;
    assert!(seals >= 2, "{seals} seals");
    let files = log_files(&disk, &root);
    assert_eq!(
        files.len(),
        2,
        "the current file and the one before: {files:?}"
    );
    assert!(
        files[1].0 >= 10,
        "the log moved on only {} times",
        files[1].0
    );
    drop(db);
    disk.crash();
    let (db, report) = Db::open(&env, &disk, &root, config).unwrap();
    assert!(report.log.rewritten > 0, "{report}");
    assert_eq!(versions(&db, "s"), (0..300).collect::<Vec<_>>());
    let checked = check::check(&disk, &root, CheckOptions { repair: false }).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_segment_is_cut_back_to_its_frames() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let env = TokioEnv::new(2);
    // Frames of about 200 bytes: a seal every ~80 appends.
    let config = config(16 * 1024, 4 * 1024);
    let (db, _) = Db::open(&env, &RealDisk, root, config.clone()).unwrap();
    for n in 0..400 {
        db.append(txn(n, "s")).await.unwrap();
    }
    let seals = db.store().stats().seals;
    assert!(seals >= 4, "{seals} seals");
    db.shutdown().await;
    drop(db);
    // A sealed segment with anything after its frames would be a corrupt frame to `check`.
    let checked = check::check(&RealDisk, root, CheckOptions { repair: false }).unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    let (db, report) = Db::open(&env, &RealDisk, root, config).unwrap();
    assert!(report.buckets[0].truncated.is_none(), "{report}");
    assert_eq!(versions(&db, "s"), (0..400).collect::<Vec<_>>());
}

/// A full disk: appends are refused cleanly (nothing of them stays), none goes through after
/// a refusal while the disk is full, and once space returns they resume. After a crash exactly
/// the acknowledged events are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_appends_and_they_resume_when_space_returns() {
    let disk = SimDisk::new(5, FaultConfig::default());
    let env = TokioEnv::new(5);
    let root = PathBuf::from("/data");
    let config = config(1 << 20, 8 * 1024);
    let (db, _) = Db::open(&env, &disk, &root, config.clone()).unwrap();
    db.append(txn(0, "s")).await.unwrap();
    disk.set_capacity(Some(disk.used_bytes() + 2 * 1024));
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
    // About 2 KiB were left: a few appends of ~200 bytes fit, then none.
    assert!(acknowledged > 2, "only {acknowledged} appends fit");
    assert!(refused > 100, "only {refused} appends refused");
    assert_eq!(versions(&db, "s"), (0..acknowledged).collect::<Vec<_>>());

    disk.set_capacity(None);
    let outcome = db.append(txn(1000, "s")).await.unwrap();
    assert_eq!(
        outcome.events[0].stream_version,
        StreamVersion(acknowledged)
    );
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
