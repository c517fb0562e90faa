//! The store on a real disk in a temporary directory: appends, reads, expected versions,
//! idempotency, sealing, reopening, and recovery from damaged files.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use db::StoreConfig;
use db::error::{AppendError, StoreError};
use db::model::{
    AppendOutcome, EventId, ExpectedVersion, InvalidInput, NewEvent, PartitionKey, PartitionSeq,
    StreamId, StreamVersion, Transaction, TransactionId,
};
use db::store::{self, BucketWriter, RecoveryReport, Store};
use disk::{Disk, RealDisk};
use uuid::Uuid;

fn small_config() -> StoreConfig {
    StoreConfig {
        partition_count: 8,
        bucket_count: 2,
        segment_size_bytes: 8 * 1024,
        max_transaction_bytes: 2 * 1024,
        ..StoreConfig::default()
    }
}

struct Fixture<D: Disk> {
    store: Store<D>,
    writers: Vec<BucketWriter<D>>,
    report: RecoveryReport,
}

impl<D: Disk> Fixture<D> {
    fn open(disk: &D, root: &Path, config: StoreConfig) -> Self {
        let (store, writers, report) = store::open(disk, root, config).expect("open");
        Fixture {
            store,
            writers,
            report,
        }
    }

    fn append(&mut self, txn: Transaction) -> Result<AppendOutcome, AppendError> {
        let partition = self.store.partition_of(txn.partition_key);
        let bucket = usize::from(self.store.config().bucket_of(partition.0));
        self.writers[bucket].append_batch(vec![txn]).remove(0)
    }
}

fn id(n: u128) -> EventId {
    EventId(Uuid::from_u128(n))
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn event(n: u128, stream_name: &str, expected: ExpectedVersion, payload: &str) -> NewEvent {
    NewEvent {
        event_id: id(n),
        stream_id: stream(stream_name),
        event_name: "Happened".into(),
        expected_version: expected,
        timestamp_ms: 1_700_000_000_000 + n as u64,
        metadata: Bytes::from_static(b"m"),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

fn single(e: NewEvent) -> Transaction {
    Transaction {
        transaction_id: TransactionId(Uuid::from_u128(e.event_id.0.as_u128() + (1 << 100))),
        partition_key: PartitionKey::for_stream(&e.stream_id),
        events: vec![e],
    }
}

#[test]
fn appends_are_readable_by_id_stream_and_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
    for i in 0..5u128 {
        let out = f
            .append(single(event(i, "orders-1", ExpectedVersion::Any, "x")))
            .unwrap();
        assert_eq!(out.events[0].stream_version, StreamVersion(i as u64));
        assert!(!out.already_stored);
    }
    let key = PartitionKey::for_stream(&stream("orders-1"));
    let got = f.store.get(&id(3)).unwrap().unwrap();
    assert_eq!(got.stream_version, StreamVersion(3));
    assert_eq!(got.payload, Bytes::from_static(b"x"));
    assert_eq!(got.partition_id, f.store.partition_of(key));
    assert!(f.store.get(&id(99)).unwrap().is_none());

    let scan = f
        .store
        .scan_stream(
            key,
            &stream("orders-1"),
            StreamVersion(1),
            Some(StreamVersion(3)),
            10,
        )
        .unwrap();
    let versions: Vec<u64> = scan.events.iter().map(|e| e.stream_version.0).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert!(!scan.has_more);

    let scan = f
        .store
        .scan_stream(key, &stream("orders-1"), StreamVersion(0), None, 2)
        .unwrap();
    assert_eq!(scan.events.len(), 2);
    assert!(scan.has_more);

    let back = f
        .store
        .scan_stream_backward(key, &stream("orders-1"), StreamVersion(0), None, 3)
        .unwrap();
    let versions: Vec<u64> = back.events.iter().map(|e| e.stream_version.0).collect();
    assert_eq!(versions, [4, 3, 2]);
    assert!(back.has_more);

    let partition = f.store.partition_of(key);
    assert_eq!(f.store.partition_sequence(partition), Some(PartitionSeq(4)));
    let scan = f
        .store
        .scan_partition(partition, PartitionSeq(2), None, 100)
        .unwrap();
    let seqs: Vec<u64> = scan.events.iter().map(|e| e.partition_sequence.0).collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert_eq!(
        f.store.stream_version(key, &stream("orders-1")),
        Some(StreamVersion(4))
    );
    assert_eq!(f.store.stream_version(key, &stream("other")), None);
}

#[test]
fn expected_versions_are_enforced_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
    let err = f
        .append(single(event(1, "s", ExpectedVersion::Exists, "")))
        .unwrap_err();
    assert!(
        matches!(err, AppendError::WrongExpectedVersion { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "current stream version is empty but expected exists for partition key {} and stream id s",
            PartitionKey::for_stream(&stream("s"))
        )
    );
    f.append(single(event(2, "s", ExpectedVersion::Empty, "")))
        .unwrap();
    let err = f
        .append(single(event(3, "s", ExpectedVersion::Empty, "")))
        .unwrap_err();
    assert!(matches!(err, AppendError::WrongExpectedVersion { .. }));
    let err = f
        .append(single(event(4, "s", ExpectedVersion::Exact(1), "")))
        .unwrap_err();
    match err {
        AppendError::WrongExpectedVersion {
            expected, actual, ..
        } => {
            assert_eq!(expected, ExpectedVersion::Exact(1));
            assert_eq!(actual.0, Some(StreamVersion(0)));
        }
        other => panic!("{other}"),
    }
    f.append(single(event(5, "s", ExpectedVersion::Exact(0), "")))
        .unwrap();
    f.append(single(event(6, "s", ExpectedVersion::Exists, "")))
        .unwrap();
    // A rejected append leaves no trace: versions stay gapless.
    let key = PartitionKey::for_stream(&stream("s"));
    let scan = f
        .store
        .scan_stream(key, &stream("s"), StreamVersion(0), None, 10)
        .unwrap();
    let ids: Vec<EventId> = scan.events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, [id(2), id(5), id(6)]);
}

#[test]
fn multi_event_transactions_chain_versions_and_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
    let key = PartitionKey(Uuid::from_u128(42));
    let txn = Transaction {
        transaction_id: TransactionId(Uuid::from_u128(1)),
        partition_key: key,
        events: vec![
            event(10, "a", ExpectedVersion::Empty, "1"),
            event(11, "b", ExpectedVersion::Any, "2"),
            event(12, "a", ExpectedVersion::Exact(0), "3"),
        ],
    };
    let out = f.append(txn).unwrap();
    let versions: Vec<(String, u64, u64)> = out
        .events
        .iter()
        .map(|e| {
            (
                e.stream_id.to_string(),
                e.stream_version.0,
                e.partition_sequence.0,
            )
        })
        .collect();
    assert_eq!(
        versions,
        [("a".into(), 0, 0), ("b".into(), 0, 1), ("a".into(), 1, 2)]
    );
    // One failing check refuses the whole transaction.
    let txn = Transaction {
        transaction_id: TransactionId(Uuid::from_u128(2)),
        partition_key: key,
        events: vec![
            event(20, "b", ExpectedVersion::Exact(0), ""),
            event(21, "a", ExpectedVersion::Exact(0), ""),
        ],
    };
    assert!(matches!(
        f.append(txn),
        Err(AppendError::WrongExpectedVersion { .. })
    ));
    assert!(f.store.get(&id(20)).unwrap().is_none());
    let partition = f.store.partition_of(key);
    assert_eq!(f.store.partition_sequence(partition), Some(PartitionSeq(2)));
}

/// A transaction large enough that the writer's per-transaction bookkeeping switches from
/// lists to maps: versions still chain per stream, and a duplicate id late in it is refused.
#[test]
fn large_transactions_chain_many_streams_and_refuse_late_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        max_transaction_bytes: 64 * 1024,
        segment_size_bytes: 1 << 20,
        ..small_config()
    };
    let mut f = Fixture::open(&RealDisk, dir.path(), config);
    let key = PartitionKey(Uuid::from_u128(7));
    // 60 events over 20 streams, each stream three times, interleaved.
    let names: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    let events: Vec<NewEvent> = (0..60usize)
        .map(|i| {
            let expected = match i / 20 {
                0 => ExpectedVersion::Empty,
                round => ExpectedVersion::Exact(round as u64 - 1),
            };
            event(100 + i as u128, &names[i % 20], expected, "x")
        })
        .collect();
    let txn = Transaction {
        transaction_id: TransactionId(Uuid::from_u128(3)),
        partition_key: key,
        events,
    };
    let out = f.append(txn).unwrap();
    for (i, e) in out.events.iter().enumerate() {
        assert_eq!(e.stream_id.as_str(), names[i % 20]);
        assert_eq!(e.stream_version, StreamVersion((i / 20) as u64));
        assert_eq!(e.partition_sequence, PartitionSeq(i as u64));
    }
    for name in &names {
        assert_eq!(
            f.store.stream_version(key, &stream(name)),
            Some(StreamVersion(2))
        );
    }
    // The same shape again with one id repeated near the end: refused as a whole.
    let mut again: Vec<NewEvent> = (0..40)
        .map(|i| event(1_000 + i as u128, &names[i % 20], ExpectedVersion::Any, "y"))
        .collect();
    again[37].event_id = again[3].event_id;
    let txn = Transaction {
        transaction_id: TransactionId(Uuid::from_u128(4)),
        partition_key: key,
        events: again,
    };
    assert!(matches!(
        f.append(txn),
        Err(AppendError::Invalid(InvalidInput::DuplicateEventId(dup))) if dup == id(1_003)
    ));
    assert!(f.store.get(&id(1_000)).unwrap().is_none());
}

#[test]
fn retries_with_the_same_event_ids_return_the_original_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
    let first = f
        .append(single(event(1, "s", ExpectedVersion::Empty, "p")))
        .unwrap();
    f.append(single(event(2, "s", ExpectedVersion::Any, "q")))
        .unwrap();
    // The retry carries the same expected version, now stale: idempotency answers first.
    let again = f
        .append(single(event(1, "s", ExpectedVersion::Empty, "p")))
        .unwrap();
    assert!(again.already_stored);
    assert_eq!(again.events, first.events);
    assert_eq!(again.transaction_id, first.transaction_id);
    let key = PartitionKey::for_stream(&stream("s"));
    assert_eq!(
        f.store.stream_version(key, &stream("s")),
        Some(StreamVersion(1))
    );

    let err = f
        .append(single(event(1, "s", ExpectedVersion::Any, "different")))
        .unwrap_err();
    assert!(matches!(err, AppendError::EventIdConflict { event_id } if event_id == id(1)));
    // Partly stored transactions are conflicts too, never half-applied.
    let txn = Transaction {
        transaction_id: TransactionId(Uuid::from_u128(9)),
        partition_key: key,
        events: vec![
            event(2, "s", ExpectedVersion::Any, "q"),
            event(3, "s", ExpectedVersion::Any, "r"),
        ],
    };
    assert!(matches!(
        f.append(txn),
        Err(AppendError::EventIdConflict { .. })
    ));
    // Inside one batch, a duplicate of an earlier transaction is answered from it.
    let bucket = usize::from(f.store.config().bucket_of(f.store.partition_of(key).0));
    let results = f.writers[bucket].append_batch(vec![
        single(event(7, "s", ExpectedVersion::Any, "z")),
        single(event(7, "s", ExpectedVersion::Any, "z")),
    ]);
    let a = results[0].as_ref().unwrap();
    let b = results[1].as_ref().unwrap();
    assert!(!a.already_stored && b.already_stored);
    assert_eq!(a.events, b.events);
}

#[test]
fn bad_input_is_refused_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
    let empty = Transaction {
        transaction_id: TransactionId(Uuid::from_u128(1)),
        partition_key: PartitionKey(Uuid::from_u128(1)),
        events: vec![],
    };
    assert!(matches!(
        f.append(empty),
        Err(AppendError::Invalid(InvalidInput::EmptyTransaction))
    ));
    let big = single(event(1, "s", ExpectedVersion::Any, &"x".repeat(4096)));
    assert!(matches!(
        f.append(big),
        Err(AppendError::Invalid(
            InvalidInput::TransactionTooLarge { .. }
        ))
    ));
    let mut long_name = event(2, "s", ExpectedVersion::Any, "");
    long_name.event_name = "n".repeat(256);
    assert!(matches!(
        f.append(single(long_name)),
        Err(AppendError::Invalid(InvalidInput::EventNameLength {
            len: 256
        }))
    ));
    let dup = Transaction {
        transaction_id: TransactionId(Uuid::from_u128(1)),
        partition_key: PartitionKey(Uuid::from_u128(1)),
        events: vec![
            event(3, "s", ExpectedVersion::Any, ""),
            event(3, "s", ExpectedVersion::Any, ""),
        ],
    };
    assert!(matches!(
        f.append(dup),
        Err(AppendError::Invalid(InvalidInput::DuplicateEventId(_)))
    ));
    // Nothing above was stored.
    assert!(
        f.store
            .buckets()
            .iter()
            .all(|b| b.scan_all_frames().unwrap().is_empty())
    );
    // A stream keeps its partition key.
    let key = PartitionKey::for_stream(&stream("s"));
    f.append(single(event(4, "s", ExpectedVersion::Any, "")))
        .unwrap();
    let partition = f.store.partition_of(key);
    let other_key = (0..10_000u128)
        .map(|n| {
            PartitionKey(Uuid::from_u128(
                n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
            ))
        })
        .find(|k| *k != key && f.store.partition_of(*k) == partition)
        .unwrap();
    let txn = Transaction {
        transaction_id: TransactionId(Uuid::from_u128(5)),
        partition_key: other_key,
        events: vec![event(5, "s", ExpectedVersion::Any, "")],
    };
    assert!(matches!(
        f.append(txn),
        Err(AppendError::PartitionKeyMismatch { .. })
    ));
}

fn fill(f: &mut Fixture<impl Disk>, streams: usize, per_stream: usize) {
    for round in 0..per_stream {
        for s in 0..streams {
            let n = (round * streams + s) as u128;
            f.append(single(event(
                n,
                &format!("stream-{s}"),
                expect_after(round),
                &format!("payload-{n}-{}", "y".repeat(100)),
            )))
            .unwrap();
        }
    }
}

/// The first round expects an empty stream, later rounds the previous version.
fn expect_after(round: usize) -> ExpectedVersion {
    if round == 0 {
        ExpectedVersion::Empty
    } else {
        ExpectedVersion::Exact(round as u64 - 1)
    }
}

fn assert_all_readable(f: &Fixture<impl Disk>, streams: usize, per_stream: usize) {
    for s in 0..streams {
        let name = stream(&format!("stream-{s}"));
        let key = PartitionKey::for_stream(&name);
        let scan = f
            .store
            .scan_stream(key, &name, StreamVersion(0), None, usize::MAX)
            .unwrap();
        assert_eq!(scan.events.len(), per_stream, "stream {s}");
        for (round, e) in scan.events.iter().enumerate() {
            let n = (round * streams + s) as u128;
            assert_eq!(e.event_id, id(n));
            assert_eq!(e.stream_version.0, round as u64);
            assert_eq!(
                e.payload,
                Bytes::from(format!("payload-{n}-{}", "y".repeat(100)))
            );
            assert_eq!(f.store.get(&id(n)).unwrap().as_ref(), Some(e));
        }
    }
}

#[test]
fn segments_seal_and_everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
        fill(&mut f, 7, 30);
        assert_all_readable(&f, 7, 30);
        let sealed: usize = f
            .store
            .buckets()
            .iter()
            .map(|b| {
                std::fs::read_dir(&b.dir)
                    .unwrap()
                    .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "idx")
                    .count()
            })
            .sum();
        assert!(sealed >= 4, "only {sealed} sealed segments");
    }
    let f = Fixture::open(&RealDisk, dir.path(), small_config());
    assert!(!f.report.repaired_anything(), "{}", f.report);
    assert_all_readable(&f, 7, 30);
}

#[test]
fn a_missing_or_corrupt_index_file_is_rebuilt_from_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
        fill(&mut f, 5, 30);
    }
    let bucket0 = dir.path().join("bucket-000");
    std::fs::remove_file(bucket0.join("segment-0000000000.idx")).unwrap();
    let idx1 = bucket0.join("segment-0000000001.idx");
    let mut bytes = std::fs::read(&idx1).unwrap();
    bytes[40] ^= 0x10;
    std::fs::write(&idx1, bytes).unwrap();
    let f = Fixture::open(&RealDisk, dir.path(), small_config());
    let rebuilt: Vec<u32> = f.report.buckets[0]
        .rebuilt_indexes
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(rebuilt, [0, 1], "{}", f.report);
    assert_all_readable(&f, 5, 30);
    let again = Fixture::open(&RealDisk, dir.path(), small_config());
    assert!(!again.report.repaired_anything(), "{}", again.report);
}

#[test]
fn recovery_truncates_a_torn_tail_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let open_segment;
    {
        let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
        fill(&mut f, 1, 3);
        let partition = f
            .store
            .partition_of(PartitionKey::for_stream(&stream("stream-0")));
        let bucket = f.store.bucket_of(partition);
        open_segment = bucket.dir.join("segment-0000000000.log");
    }
    // A torn frame: the first 20 bytes of a copy of the last frame.
    let mut bytes = std::fs::read(&open_segment).unwrap();
    let len = bytes.len();
    let tail: Vec<u8> = bytes[len - 60..len - 40].to_vec();
    bytes.extend_from_slice(&tail);
    std::fs::write(&open_segment, &bytes).unwrap();
    let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
    let truncated: Vec<_> = f
        .report
        .buckets
        .iter()
        .filter_map(|b| b.truncated.clone())
        .collect();
    assert_eq!(truncated.len(), 1, "{}", f.report);
    assert_eq!(truncated[0].bytes, 20);
    assert_eq!(std::fs::metadata(&open_segment).unwrap().len(), len as u64);
    assert_all_readable(&f, 1, 3);
    f.append(single(event(
        100,
        "stream-0",
        ExpectedVersion::Exact(2),
        "after",
    )))
    .unwrap();
}

#[test]
fn damage_followed_by_valid_frames_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let segment;
    {
        let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
        fill(&mut f, 1, 4);
        let partition = f
            .store
            .partition_of(PartitionKey::for_stream(&stream("stream-0")));
        segment = f
            .store
            .bucket_of(partition)
            .dir
            .join("segment-0000000000.log");
    }
    let mut bytes = std::fs::read(&segment).unwrap();
    // Flip a payload byte of the second frame: CRC fails, yet valid frames follow.
    let second = 25 + 9 + (bytes.len() - 25) / 4 / 2;
    bytes[second + 9 + 20] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    match store::open(&RealDisk, dir.path(), small_config()) {
        Err(StoreError::Corrupt { reason, .. }) => {
            assert!(reason.contains("not a torn tail"), "{reason}")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a damaged segment"),
    }
    // Nothing was cut: the file is as it was.
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);
}

#[test]
fn corruption_in_a_sealed_segment_is_a_read_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
        fill(&mut f, 3, 40);
    }
    // Corrupt a byte inside the first frame of a sealed segment of each bucket.
    for bucket in ["bucket-000", "bucket-001"] {
        let path = dir.path().join(bucket).join("segment-0000000000.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[25 + 9 + 60] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    }
    let f = Fixture::open(&RealDisk, dir.path(), small_config());
    let mut errors = 0;
    for s in 0..3 {
        let name = stream(&format!("stream-{s}"));
        let key = PartitionKey::for_stream(&name);
        match f
            .store
            .scan_stream(key, &name, StreamVersion(0), None, usize::MAX)
        {
            Ok(scan) => assert_eq!(scan.events.len(), 40),
            Err(StoreError::Corrupt { offset, .. }) => {
                assert_eq!(offset, 25);
                errors += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(errors >= 1);
}

#[test]
fn a_reopened_directory_must_keep_its_layout() {
    let dir = tempfile::tempdir().unwrap();
    drop(Fixture::open(&RealDisk, dir.path(), small_config()));
    let changed = StoreConfig {
        partition_count: 16,
        ..small_config()
    };
    match store::open(&RealDisk, dir.path(), changed) {
        Err(StoreError::LayoutMismatch {
            field,
            on_disk,
            configured,
            ..
        }) => {
            assert_eq!(
                (field, on_disk.as_str(), configured.as_str()),
                ("partition count", "8", "16")
            );
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened with a different layout"),
    }
    let bad = StoreConfig {
        bucket_count: 9,
        ..small_config()
    };
    assert!(matches!(
        store::open(&RealDisk, dir.path(), bad),
        Err(StoreError::InvalidConfig(_))
    ));
}

/// Damage that a crash cannot explain must refuse to open and leave the bytes alone, never be
/// cut away as if it were a torn tail.
#[test]
fn damage_a_crash_cannot_explain_refuses_to_open() {
    type Damage = fn(&Path);
    let open_segment = |root: &Path| root.join("bucket-000").join("segment-0000000002.log");
    let cases: [(&str, Damage); 4] = [
        ("flipped bit in the open segment's header", |root| {
            let path = root.join("bucket-000").join("segment-0000000002.log");
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[3] ^= 0x40;
            std::fs::write(&path, bytes).unwrap();
        }),
        (
            "flipped bit in a frame length in the open segment",
            |root| {
                let path = root.join("bucket-000").join("segment-0000000002.log");
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[25 + 2] ^= 0x01;
                std::fs::write(&path, bytes).unwrap();
            },
        ),
        ("sealed segment cut at a frame boundary", |root| {
            let path = root.join("bucket-000").join("segment-0000000000.log");
            let bytes = std::fs::read(&path).unwrap();
            let frame = db::store::record::decode_frame(&bytes[25..], 1 << 20).unwrap();
            std::fs::write(&path, &bytes[..25 + frame.encoded_len() as usize]).unwrap();
        }),
        ("the last segment lost after a seal", |root| {
            let dir = root.join("bucket-000");
            std::fs::remove_file(dir.join("segment-0000000002.log")).unwrap();
        }),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut f = Fixture::open(&RealDisk, dir.path(), small_config());
            // Enough events in bucket 0 for two sealed segments and frames in the third.
            let mut n = 0u128;
            while !open_segment(dir.path()).exists()
                || std::fs::metadata(open_segment(dir.path())).unwrap().len() < 300
            {
                for s in 0..8 {
                    let name = format!("stream-{s}");
                    let key = PartitionKey::for_stream(&stream(&name));
                    if f.store.config().bucket_of(f.store.partition_of(key).0) == 0 {
                        n += 1;
                        f.append(single(event(n, &name, ExpectedVersion::Any, "payload")))
                            .unwrap();
                    }
                }
            }
        }
        damage(dir.path());
        let before: Vec<(PathBuf, Vec<u8>)> = walk(dir.path());
        match store::open(&RealDisk, dir.path(), small_config()) {
            Err(StoreError::Corrupt { .. }) => {}
            Err(other) => panic!("{what}: {other}"),
            Ok(_) => panic!("{what}: opened"),
        }
        assert_eq!(walk(dir.path()), before, "{what}: files changed");
    }
}

fn walk(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}
