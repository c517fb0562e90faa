//! `sierradb check` on real and simulated disks: what it reports for each kind of damage,
//! that it never changes a byte without `repair`, and that repair fixes exactly what it may
//! (index files, leftovers, torn tails, saving what it cuts) and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use db::StoreConfig;
use db::model::{
    BucketId, EventId, ExpectedVersion, NewEvent, PartitionKey, StreamId, StreamVersion,
    Transaction, TransactionId,
};
use db::store::check::{
    self, CheckOptions, CheckReport, HeaderFault, IndexDifference, LayoutFault, Problem, Repair,
    Resync, Severity,
};
use db::store::index::{IndexFileError, decode_index_file, encode_index_file};
use db::store::layout;
use db::store::record::{FRAME_HEADER_BYTES, FrameError, TransactionRecord, decode_frame};
use db::store::{self as store};
use disk::{Disk, FaultConfig, File, OpenMode, RealDisk, SimDisk};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

/// What a fill appended: transactions, and every event with its stream and payload.
struct Appended {
    transactions: u64,
    events: Vec<(EventId, StreamId, Bytes)>,
}

/// Appends `rounds` rounds over `streams` streams; every fifth append is one transaction of
/// three events, so events and transactions count differently.
fn fill<D: Disk>(disk: &D, root: &Path, streams: usize, rounds: usize) -> Appended {
    let (store, mut writers, _) = store::open(disk, root, small_config()).expect("open");
    let mut appended = Appended {
        transactions: 0,
        events: Vec::new(),
    };
    let mut n = 0u128;
    for round in 0..rounds {
        for s in 0..streams {
            let stream = StreamId::new(&format!("stream-{s}")).unwrap();
            let key = PartitionKey::for_stream(&stream);
            let count = if (round * streams + s).is_multiple_of(5) {
                3
            } else {
                1
            };
            let mut events = Vec::new();
            for _ in 0..count {
                n += 1;
                let payload = Bytes::from(format!("payload-{n}-{}", "y".repeat(100)));
                appended.events.push((
                    EventId(Uuid::from_u128(n)),
                    stream.clone(),
                    payload.clone(),
                ));
                events.push(NewEvent {
                    event_id: EventId(Uuid::from_u128(n)),
                    stream_id: stream.clone(),
                    event_name: "Happened".into(),
                    expected_version: ExpectedVersion::Any,
                    timestamp_ms: 1_700_000_000_000 + n as u64,
                    metadata: Bytes::from_static(b"m"),
                    payload,
                });
            }
            let txn = Transaction {
                transaction_id: TransactionId(Uuid::from_u128(n + (1 << 100))),
                partition_key: key,
                events,
            };
            let bucket = usize::from(store.config().bucket_of(store.partition_of(key).0));
            writers[bucket].append_batch(vec![txn]).remove(0).unwrap();
            appended.transactions += 1;
        }
    }
    appended
}

/// A store with several sealed segments in bucket 0, on a real disk.
fn real_store() -> (tempfile::TempDir, Appended) {
    let dir = tempfile::tempdir().unwrap();
    let appended = fill(&RealDisk, dir.path(), 8, 40);
    assert!(
        segment_ids(&RealDisk, &bucket0(dir.path())).len() >= 3,
        "bucket 0 needs sealed segments for these tests"
    );
    (dir, appended)
}

fn bucket0(root: &Path) -> PathBuf {
    layout::bucket_dir(root, 0)
}

fn segment_ids(disk: &impl Disk, dir: &Path) -> Vec<u32> {
    disk.list_dir(dir)
        .unwrap()
        .iter()
        .filter_map(|name| match layout::parse_bucket_entry(name) {
            layout::BucketEntry::Segment(id) => Some(id),
            _ => None,
        })
        .collect()
}

fn open_segment(disk: &impl Disk, root: &Path) -> (u32, PathBuf) {
    let id = *segment_ids(disk, &bucket0(root)).last().unwrap();
    (id, layout::segment_file(&bucket0(root), id))
}

fn read(disk: &impl Disk, path: &Path) -> Vec<u8> {
    disk.open(path, OpenMode::Read)
        .unwrap()
        .map()
        .unwrap()
        .to_vec()
}

fn write(disk: &impl Disk, path: &Path, bytes: &[u8]) {
    let file = disk.open(path, OpenMode::CreateOrOpen).unwrap();
    file.truncate(0).unwrap();
    file.write_at(0, bytes).unwrap();
    file.sync().unwrap();
}

/// Every entry under `root`, with the bytes of each file (`None` for a directory): what
/// "changed nothing" is checked against.
fn snapshot(disk: &impl Disk, root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut entries = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for name in disk.list_dir(&dir).unwrap() {
            let path = dir.join(name);
            if disk.list_dir(&path).is_ok() {
                entries.insert(path.clone(), None);
                dirs.push(path);
            } else {
                let bytes = read(disk, &path);
                entries.insert(path, Some(bytes));
            }
        }
    }
    entries
}

/// Offsets of the transaction frames of a segment.
fn frame_offsets(bytes: &[u8]) -> Vec<u64> {
    let mut offsets = Vec::new();
    let mut offset = 25u64;
    while let Ok(frame) = decode_frame(&bytes[offset as usize..], u32::MAX.into()) {
        offsets.push(offset);
        offset += frame.encoded_len();
    }
    offsets
}

fn events_in_frame(bytes: &[u8], offset: u64) -> u64 {
    let frame = decode_frame(&bytes[offset as usize..], u32::MAX.into()).unwrap();
    TransactionRecord::decode(&frame).unwrap().events.len() as u64
}

fn run(disk: &impl Disk, root: &Path, repair: bool) -> CheckReport {
    check::check(disk, root, CheckOptions { repair }).expect("check")
}

/// Runs a check without repair and asserts it changed nothing.
fn check_read_only(disk: &impl Disk, root: &Path) -> CheckReport {
    let before = snapshot(disk, root);
    let report = run(disk, root, false);
    assert_eq!(
        snapshot(disk, root),
        before,
        "check without repair changed files"
    );
    assert!(report.repairs.is_empty());
    assert_eq!(report.remaining, report.problems);
    report
}

/// Opens the store and reads every appended event by id and through its stream, except
/// `lost` (which must be absent).
fn assert_readable(disk: &impl Disk, root: &Path, appended: &Appended, lost: &BTreeSet<EventId>) {
    let (store, _, recovery) = store::open(disk, root, small_config()).expect("open");
    assert!(!recovery.repaired_anything(), "{recovery}");
    let mut per_stream: BTreeMap<StreamId, Vec<EventId>> = BTreeMap::new();
    for (id, stream, payload) in &appended.events {
        let got = store.get(id).unwrap();
        if lost.contains(id) {
            assert!(got.is_none(), "{id} should be gone");
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("{id} is missing"));
        assert_eq!(&got.payload, payload);
        per_stream.entry(stream.clone()).or_default().push(*id);
    }
    for (stream, ids) in per_stream {
        let key = PartitionKey::for_stream(&stream);
        let scan = store
            .scan_stream(key, &stream, StreamVersion(0), None, usize::MAX)
            .unwrap();
        let got: Vec<EventId> = scan.events.iter().map(|e| e.event_id).collect();
        assert_eq!(got, ids, "stream {stream}");
    }
}

#[test]
fn a_clean_directory_checks_clean_with_exact_counts() {
    let (dir, appended) = real_store();
    let root = dir.path();
    let report = check_read_only(&RealDisk, root);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.problems, []);
    assert_eq!(report.events(), appended.events.len() as u64);
    assert_eq!(report.transactions(), appended.transactions);
    assert!(report.events() > report.transactions());
    assert_eq!(report.buckets.len(), 2);
    for b in &report.buckets {
        let segments = segment_ids(&RealDisk, &layout::bucket_dir(root, b.bucket.0));
        assert_eq!(b.segments as usize, segments.len());
        assert_eq!(b.sealed_segments as usize, segments.len() - 1);
        assert_eq!(b.indexes_verified, b.sealed_segments, "{report}");
    }
    let text = report.to_string();
    assert!(
        text.contains("bucket 0:") && text.trim_end().ends_with("clean"),
        "{text}"
    );

    // With repair allowed, a clean directory is left exactly as it is.
    let before = snapshot(&RealDisk, root);
    let repaired = run(&RealDisk, root, true);
    assert!(
        repaired.is_clean() && repaired.repairs.is_empty(),
        "{repaired}"
    );
    assert_eq!(snapshot(&RealDisk, root), before);
}

#[test]
fn a_clean_simulated_directory_checks_clean() {
    let disk = SimDisk::new(7, FaultConfig::default());
    let root = Path::new("/data");
    let appended = fill(&disk, root, 5, 30);
    let report = check_read_only(&disk, root);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.events(), appended.events.len() as u64);
    assert_eq!(report.transactions(), appended.transactions);
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_a_corrupt_frame_repair_leaves_alone() {
    let (dir, appended) = real_store();
    let root = dir.path();
    let path = layout::segment_file(&bucket0(root), 1);
    let mut bytes = read(&RealDisk, &path);
    let offsets = frame_offsets(&bytes);
    let (damaged, next) = (offsets[2], offsets[3]);
    let lost = events_in_frame(&bytes, damaged);
    bytes[(damaged + FRAME_HEADER_BYTES + 20) as usize] ^= 0x04;
    write(&RealDisk, &path, &bytes);

    let report = check_read_only(&RealDisk, root);
    assert!(!report.is_clean(), "{report}");
    match report.problems.as_slice() {
        [
            Problem::CorruptFrame {
                bucket: BucketId(0),
                segment: 1,
                offset,
                reason: FrameError::BadCrc { .. },
                resync: Resync::ClaimedLength { next: resumed },
            },
        ] => assert_eq!((*offset, *resumed), (damaged, next)),
        other => panic!("{other:#?}"),
    }
    assert_eq!(report.problems[0].severity(), Severity::NeedsAttention);
    // The frames after the damaged one were still read.
    assert_eq!(report.events(), appended.events.len() as u64 - lost);
    assert!(report.to_string().contains("replica"), "{report}");

    let before = snapshot(&RealDisk, root);
    let repaired = run(&RealDisk, root, true);
    assert_eq!(repaired.repairs, []);
    assert!(!repaired.is_clean());
    assert_eq!(repaired.remaining, report.problems);
    assert_eq!(snapshot(&RealDisk, root), before, "repair changed files");
    assert_eq!(read(&RealDisk, &path), bytes);
}

#[test]
fn garbage_after_the_open_segment_is_a_torn_tail_that_repair_cuts_and_saves() {
    let (dir, appended) = real_store();
    let root = dir.path();
    let (open_id, path) = open_segment(&RealDisk, root);
    let original = read(&RealDisk, &path);
    let garbage = [0xab; 40];
    let mut bytes = original.clone();
    bytes.extend_from_slice(&garbage);
    write(&RealDisk, &path, &bytes);

    let report = check_read_only(&RealDisk, root);
    let torn_at = original.len() as u64;
    assert_eq!(
        report.problems,
        [Problem::TornTail {
            bucket: BucketId(0),
            segment: open_id,
            offset: torn_at,
            bytes: 40,
        }],
        "{report}"
    );
    assert!(!report.is_clean());
    assert_eq!(read(&RealDisk, &path), bytes);

    let repaired = run(&RealDisk, root, true);
    let saved = bucket0(root).join(format!("segment-{open_id:010}.log.torn-{torn_at}"));
    assert_eq!(
        repaired.repairs,
        [Repair::TruncatedTail {
            bucket: BucketId(0),
            segment: open_id,
            offset: torn_at,
            bytes: 40,
            moved_to: saved.clone(),
        }]
    );
    assert!(repaired.is_clean(), "{repaired}");
    assert_eq!(read(&RealDisk, &path), original);
    assert_eq!(read(&RealDisk, &saved), garbage);

    // The saved bytes are a notice, not a problem.
    let again = check_read_only(&RealDisk, root);
    assert!(again.is_clean(), "{again}");
    assert_eq!(again.problems, [Problem::SavedTail { path: saved }]);
    assert_readable(&RealDisk, root, &appended, &BTreeSet::new());
}

#[test]
fn a_truncated_last_frame_is_a_torn_tail_and_the_cut_bytes_are_kept() {
    let (dir, appended) = real_store();
    let root = dir.path();
    let (open_id, path) = open_segment(&RealDisk, root);
    let original = read(&RealDisk, &path);
    let last = *frame_offsets(&original).last().unwrap();
    let frame = decode_frame(&original[last as usize..], u32::MAX.into()).unwrap();
    let record = TransactionRecord::decode(&frame).unwrap();
    let lost: BTreeSet<EventId> = record.events.iter().map(|e| e.event_id).collect();
    let torn = &original[..original.len() - 10];
    write(&RealDisk, &path, torn);

    let report = check_read_only(&RealDisk, root);
    assert_eq!(
        report.problems,
        [Problem::TornTail {
            bucket: BucketId(0),
            segment: open_id,
            offset: last,
            bytes: torn.len() as u64 - last,
        }],
        "{report}"
    );
    assert_eq!(read(&RealDisk, &path), torn);

    let repaired = run(&RealDisk, root, true);
    let saved = bucket0(root).join(format!("segment-{open_id:010}.log.torn-{last}"));
    assert!(
        matches!(&repaired.repairs[..], [Repair::TruncatedTail { moved_to, .. }] if *moved_to == saved),
        "{repaired}"
    );
    assert!(repaired.is_clean(), "{repaired}");
    assert_eq!(read(&RealDisk, &path), &original[..last as usize]);
    assert_eq!(read(&RealDisk, &saved), &torn[last as usize..]);
    assert!(check_read_only(&RealDisk, root).is_clean());
    assert_readable(&RealDisk, root, &appended, &lost);
}

#[test]
fn missing_and_corrupt_index_files_are_rebuilt_byte_for_byte() {
    let (dir, appended) = real_store();
    let root = dir.path();
    let (idx0, idx1) = (
        layout::index_file(&bucket0(root), 0),
        layout::index_file(&bucket0(root), 1),
    );
    let (original0, original1) = (read(&RealDisk, &idx0), read(&RealDisk, &idx1));
    std::fs::remove_file(&idx0).unwrap();
    let mut corrupt = original1.clone();
    corrupt[40] ^= 0x10;
    write(&RealDisk, &idx1, &corrupt);

    let report = check_read_only(&RealDisk, root);
    assert_eq!(
        report.problems,
        [
            Problem::IndexMissing {
                bucket: BucketId(0),
                segment: 0,
            },
            Problem::IndexCorrupt {
                bucket: BucketId(0),
                segment: 1,
                reason: IndexFileError("checksum mismatch"),
            },
        ],
        "{report}"
    );
    assert!(!report.is_clean());
    assert!(report.to_string().contains("--repair"), "{report}");

    let repaired = run(&RealDisk, root, true);
    assert_eq!(
        repaired.repairs,
        [
            Repair::RebuiltIndex {
                bucket: BucketId(0),
                segment: 0,
                path: idx0.clone(),
            },
            Repair::RebuiltIndex {
                bucket: BucketId(0),
                segment: 1,
                path: idx1.clone(),
            },
        ]
    );
    assert!(repaired.is_clean(), "{repaired}");
    // Exactly the bytes the writer wrote when it sealed those segments.
    assert_eq!(read(&RealDisk, &idx0), original0);
    assert_eq!(read(&RealDisk, &idx1), original1);
    let again = check_read_only(&RealDisk, root);
    assert_eq!(again.problems, []);
    assert_eq!(again.events(), appended.events.len() as u64);
}

#[test]
fn an_index_file_that_disagrees_with_the_frames_is_a_mismatch() {
    let (dir, _) = real_store();
    let root = dir.path();
    let (idx0, idx1) = (
        layout::index_file(&bucket0(root), 0),
        layout::index_file(&bucket0(root), 1),
    );
    let (original0, original1) = (read(&RealDisk, &idx0), read(&RealDisk, &idx1));
    // Well-formed index files (valid CRC) that lie.
    let mut short = decode_index_file(&original0).unwrap();
    let data_end = short.data_end;
    short.data_end -= 1;
    write(&RealDisk, &idx0, &encode_index_file(&short));
    let mut forgetful = decode_index_file(&original1).unwrap();
    let events = forgetful.index.events.len();
    forgetful.index.events = forgetful
        .index
        .events
        .iter()
        .skip(1)
        .map(|(id, pos)| (*id, *pos))
        .collect();
    write(&RealDisk, &idx1, &encode_index_file(&forgetful));

    let report = check_read_only(&RealDisk, root);
    assert_eq!(
        report.problems,
        [
            Problem::IndexMismatch {
                bucket: BucketId(0),
                segment: 0,
                detail: IndexDifference::DataEnd {
                    stored: data_end - 1,
                    actual: data_end,
                },
            },
            Problem::IndexMismatch {
                bucket: BucketId(0),
                segment: 1,
                detail: IndexDifference::Events {
                    stored: events - 1,
                    actual: events,
                },
            },
        ],
        "{report}"
    );
    let repaired = run(&RealDisk, root, true);
    assert_eq!(repaired.repairs.len(), 2, "{repaired}");
    assert!(repaired.is_clean(), "{repaired}");
    assert_eq!(read(&RealDisk, &idx0), original0);
    assert_eq!(read(&RealDisk, &idx1), original1);
}

#[test]
fn a_sealed_segment_cut_at_a_frame_boundary_is_lost_data_not_a_bad_index() {
    let (dir, _) = real_store();
    let root = dir.path();
    let path = layout::segment_file(&bucket0(root), 1);
    let bytes = read(&RealDisk, &path);
    let cut = *frame_offsets(&bytes).last().unwrap();
    // Every remaining frame decodes; only the index file remembers the lost one.
    write(&RealDisk, &path, &bytes[..cut as usize]);
    let report = check_read_only(&RealDisk, root);
    assert!(
        report.problems.contains(&Problem::SegmentTruncated {
            bucket: BucketId(0),
            segment: 1,
            file_bytes: cut,
            data_end: bytes.len() as u64,
        }),
        "{report}"
    );
    // Rebuilding the index from what is left would hide the loss: repair does not.
    let before = snapshot(&RealDisk, root);
    let repaired = run(&RealDisk, root, true);
    assert_eq!(repaired.repairs, []);
    assert!(!repaired.is_clean());
    assert_eq!(snapshot(&RealDisk, root), before);
}

#[test]
fn a_leftover_index_temp_file_is_reported_and_removed_by_repair() {
    let (dir, _) = real_store();
    let root = dir.path();
    let temp = layout::index_temp_file(&bucket0(root), 1);
    write(&RealDisk, &temp, b"half an index");

    let report = check_read_only(&RealDisk, root);
    assert_eq!(
        report.problems,
        [Problem::IndexTempFile {
            bucket: BucketId(0),
            path: temp.clone(),
        }]
    );
    assert!(!report.is_clean());
    let repaired = run(&RealDisk, root, true);
    assert_eq!(
        repaired.repairs,
        [Repair::RemovedTempFile {
            bucket: BucketId(0),
            path: temp.clone(),
        }]
    );
    assert!(repaired.is_clean(), "{repaired}");
    assert!(!temp.exists());
}

#[test]
fn an_index_file_of_the_open_segment_is_reported_and_removed_by_repair() {
    let (dir, _) = real_store();
    let root = dir.path();
    let (open_id, _) = open_segment(&RealDisk, root);
    let stale = layout::index_file(&bucket0(root), open_id);
    write(
        &RealDisk,
        &stale,
        &read(&RealDisk, &layout::index_file(&bucket0(root), 0)),
    );
    let report = check_read_only(&RealDisk, root);
    assert_eq!(
        report.problems,
        [Problem::OpenSegmentIndex {
            bucket: BucketId(0),
            segment: open_id,
        }]
    );
    let repaired = run(&RealDisk, root, true);
    assert!(
        matches!(&repaired.repairs[..], [Repair::RemovedOpenSegmentIndex { path, .. }] if *path == stale)
    );
    assert!(repaired.is_clean(), "{repaired}");
    assert!(!stale.exists());
}

#[test]
fn a_missing_middle_segment_is_reported_and_never_repaired() {
    let (dir, _) = real_store();
    let root = dir.path();
    std::fs::remove_file(layout::segment_file(&bucket0(root), 1)).unwrap();

    // The lost segment is reported once; the numbers that jump over it are not reported
    // again as gaps.
    let report = check_read_only(&RealDisk, root);
    assert_eq!(
        report.problems,
        [Problem::SegmentMissing {
            bucket: BucketId(0),
            segments: 1..=1,
        }],
        "{report}"
    );
    assert!(!report.is_clean());

    let before = snapshot(&RealDisk, root);
    let repaired = run(&RealDisk, root, true);
    assert_eq!(repaired.repairs, []);
    assert!(!repaired.is_clean());
    assert_eq!(snapshot(&RealDisk, root), before);
}

#[test]
fn damage_followed_by_valid_frames_in_the_open_segment_is_never_cut() {
    let (dir, _) = real_store();
    let root = dir.path();
    let (open_id, path) = open_segment(&RealDisk, root);
    let mut bytes = read(&RealDisk, &path);
    let offsets = frame_offsets(&bytes);
    assert!(offsets.len() >= 4, "the open segment needs a few frames");
    // One frame with a damaged body, one with a damaged length (its claimed length then
    // leads nowhere, so the next frame is found by searching).
    let (body, length) = (offsets[0], offsets[2]);
    bytes[(body + FRAME_HEADER_BYTES + 30) as usize] ^= 0x01;
    bytes[length as usize + 2] ^= 0x10;
    write(&RealDisk, &path, &bytes);

    let report = check_read_only(&RealDisk, root);
    let claimed = u64::from(u32::from_le_bytes(
        bytes[length as usize..length as usize + 4]
            .try_into()
            .unwrap(),
    ));
    match report.problems.as_slice() {
        [
            Problem::CorruptFrame {
                bucket: BucketId(0),
                segment: s1,
                offset: o1,
                reason: FrameError::BadCrc { .. },
                resync: Resync::ClaimedLength { next: n1 },
            },
            Problem::CorruptFrame {
                bucket: BucketId(0),
                segment: s2,
                offset: o2,
                reason: FrameError::TooLong { len, max },
                resync: Resync::Searched { next: n2 },
            },
        ] => {
            assert_eq!((*s1, *o1, *n1), (open_id, body, offsets[1]));
            assert_eq!((*s2, *o2, *n2), (open_id, length, offsets[3]));
            assert_eq!((*len, *max), (claimed, 8 * 1024 - 25 - 9));
        }
        other => panic!("{other:#?}"),
    }
    let before = snapshot(&RealDisk, root);
    let repaired = run(&RealDisk, root, true);
    assert_eq!(repaired.repairs, []);
    assert!(!repaired.is_clean());
    assert_eq!(snapshot(&RealDisk, root), before);
}

#[test]
fn a_damaged_header_of_the_open_segment_with_frames_after_it_is_not_a_torn_tail() {
    let (dir, _) = real_store();
    let root = dir.path();
    let (open_id, path) = open_segment(&RealDisk, root);
    let mut bytes = read(&RealDisk, &path);
    assert!(bytes.len() > 25 + 9);
    bytes[12] ^= 0x01;
    write(&RealDisk, &path, &bytes);
    let report = check_read_only(&RealDisk, root);
    assert!(
        matches!(
            &report.problems[..],
            [Problem::BadHeader {
                bucket: BucketId(0),
                segment,
                fault: HeaderFault::Frame(FrameError::BadCrc { .. }),
            }] if *segment == open_id
        ),
        "{report}"
    );
    let before = snapshot(&RealDisk, root);
    let repaired = run(&RealDisk, root, true);
    assert_eq!(repaired.repairs, []);
    assert_eq!(snapshot(&RealDisk, root), before);
}

#[test]
fn a_torn_header_of_a_new_open_segment_is_cut_and_written_again() {
    let (dir, appended) = real_store();
    let root = dir.path();
    let (open_id, path) = open_segment(&RealDisk, root);
    // A crash while the segment was created: a part of its header, nothing after it. (The
    // frames it held are dropped to make that so; they are not expected back.)
    let original = read(&RealDisk, &path);
    let lost: BTreeSet<EventId> = frame_offsets(&original)
        .into_iter()
        .flat_map(|offset| {
            let frame = decode_frame(&original[offset as usize..], u32::MAX.into()).unwrap();
            TransactionRecord::decode(&frame).unwrap().events
        })
        .map(|e| e.event_id)
        .collect();
    write(&RealDisk, &path, &original[..11]);
    let report = check_read_only(&RealDisk, root);
    assert_eq!(
        report.problems,
        [Problem::TornTail {
            bucket: BucketId(0),
            segment: open_id,
            offset: 0,
            bytes: 11,
        }],
        "{report}"
    );
    let repaired = run(&RealDisk, root, true);
    assert!(
        matches!(
            &repaired.repairs[..],
            [
                Repair::TruncatedTail {
                    offset: 0,
                    bytes: 11,
                    ..
                },
                Repair::RewroteHeader { .. }
            ]
        ),
        "{repaired}"
    );
    assert!(repaired.is_clean(), "{repaired}");
    assert_eq!(read(&RealDisk, &path), &original[..25]);
    assert_readable(&RealDisk, root, &appended, &lost);
}

#[test]
fn a_missing_or_damaged_layout_file_stops_the_check_without_creating_anything() {
    let (dir, _) = real_store();
    let root = dir.path();
    let path = root.join(layout::LAYOUT_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    write(
        &RealDisk,
        &path,
        text.replace("buckets = 2", "buckets = 3").as_bytes(),
    );
    let report = check_read_only(&RealDisk, root);
    assert_eq!(
        report.problems,
        [Problem::LayoutInvalid {
            path: path.clone(),
            fault: LayoutFault::ChecksumMismatch,
        }]
    );
    assert!(!report.is_clean());

    std::fs::remove_file(&path).unwrap();
    let report = check_read_only(&RealDisk, root);
    assert_eq!(
        report.problems,
        [Problem::LayoutInvalid {
            path: path.clone(),
            fault: LayoutFault::Missing,
        }]
    );
    let repaired = run(&RealDisk, root, true);
    assert!(!repaired.is_clean() && repaired.repairs.is_empty());
    assert!(!path.exists());
}

#[test]
fn repairs_are_durable_across_a_crash() {
    let disk = SimDisk::new(11, FaultConfig::default());
    let root = Path::new("/data");
    let appended = fill(&disk, root, 8, 40);
    let dir = bucket0(root);
    let (open_id, path) = open_segment(&disk, root);
    let bytes = read(&disk, &path);
    let last = *frame_offsets(&bytes).last().unwrap();
    // A bad sector in the last frame: indistinguishable from a torn write of it.
    disk.corrupt(&path, bytes.len() as u64 - 3, 0x80).unwrap();
    let lost: BTreeSet<EventId> = {
        let frame = decode_frame(&bytes[last as usize..], u32::MAX.into()).unwrap();
        let record = TransactionRecord::decode(&frame).unwrap();
        record.events.iter().map(|e| e.event_id).collect()
    };
    let idx = layout::index_file(&dir, 0);
    let original_index = read(&disk, &idx);
    disk.remove_file(&idx).unwrap();
    write(&disk, &layout::index_temp_file(&dir, 1), b"junk");
    disk.sync_dir(&dir).unwrap();

    let report = check_read_only(&disk, root);
    assert_eq!(report.problems.len(), 3, "{report}");
    let repaired = run(&disk, root, true);
    assert_eq!(repaired.repairs.len(), 3, "{repaired}");
    assert!(repaired.is_clean(), "{repaired}");

    disk.crash();
    let after = check_read_only(&disk, root);
    assert!(after.is_clean(), "{after}");
    let saved = dir.join(format!("segment-{open_id:010}.log.torn-{last}"));
    assert_eq!(
        after.problems,
        [Problem::SavedTail {
            path: saved.clone()
        }]
    );
    let mut cut = bytes[last as usize..].to_vec();
    let n = cut.len();
    cut[n - 3] ^= 0x80;
    assert_eq!(disk.durable_contents(&saved).unwrap(), cut);
    assert_eq!(
        disk.durable_contents(&path).unwrap(),
        &bytes[..last as usize]
    );
    assert_eq!(disk.durable_contents(&idx).unwrap(), original_index);
    assert_readable(&disk, root, &appended, &lost);
}

/// Random damage to random files of a small store: the check never panics and never writes
/// without repair; repair never fails on a healthy disk, is idempotent, and makes clean
/// every directory whose problems were all repairable, which then opens with nothing for
/// recovery to do. `CHECK_SEEDS` sets the number of seeds (default 150).
#[test]
fn random_damage_never_panics_and_repair_fixes_all_it_claims_to() {
    let root = Path::new("/data");
    let seeds: u64 = std::env::var("CHECK_SEEDS").map_or(150, |s| s.parse().unwrap());
    let mut became_clean = 0;
    for seed in 0..seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let disk = SimDisk::new(seed, FaultConfig::default());
        fill(&disk, root, 4, rng.random_range(5..40));
        let files: Vec<PathBuf> = snapshot(&disk, root)
            .into_iter()
            .filter_map(|(path, bytes)| bytes.map(|_| path))
            .collect();
        for _ in 0..rng.random_range(1..4) {
            let path = &files[rng.random_range(0..files.len())];
            let Some(len) = disk.written_contents(path).map(|b| b.len() as u64) else {
                continue;
            };
            match rng.random_range(0..5) {
                0 | 1 if len > 0 => {
                    let offset = rng.random_range(0..len);
                    disk.corrupt(path, offset, 1 << rng.random_range(0..8))
                        .unwrap();
                }
                2 => {
                    let file = disk.open(path, OpenMode::ReadWrite).unwrap();
                    file.truncate(rng.random_range(0..=len)).unwrap();
                }
                3 => {
                    let garbage: Vec<u8> = (0..rng.random_range(1..300))
                        .map(|_| rng.random())
                        .collect();
                    disk.open(path, OpenMode::ReadWrite)
                        .unwrap()
                        .write_at(len, &garbage)
                        .unwrap();
                }
                _ => disk.remove_file(path).unwrap(),
            }
        }
        let report = check_read_only(&disk, root);
        let repaired = run(&disk, root, true);
        let again = run(&disk, root, true);
        assert_eq!(
            again.repairs,
            [],
            "seed {seed}: repair is not idempotent\n{repaired}\n{again}"
        );
        assert_eq!(again.problems, repaired.remaining, "seed {seed}");
        let all_repairable = report
            .problems
            .iter()
            .all(|p| p.severity() != Severity::NeedsAttention);
        if all_repairable {
            assert!(repaired.is_clean(), "seed {seed}:\n{report}\n{repaired}");
        }
        if repaired.is_clean() {
            became_clean += 1;
            let (_, _, recovery) = store::open(&disk, root, small_config())
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{repaired}"));
            assert!(
                !recovery.repaired_anything(),
                "seed {seed}: {recovery}\n{repaired}"
            );
        }
    }
    assert!(became_clean > 10, "only {became_clean} seeds ended clean");
}

/// A read that returns a flipped bit (the stored bytes are intact) must not make `check`
/// report a torn tail, nor `--repair` cut acknowledged frames: the open segment is read again,
/// up to three reads, as recovery does. One read in ten flips a bit; with one read, as before,
/// some of these 100 disks had their last frame reported torn and cut.
#[test]
fn a_flipped_bit_on_read_is_not_a_torn_tail_to_check_or_repair() {
    let root = Path::new("/data");
    let mut torn = Vec::new();
    for seed in 0..100u64 {
        let disk = SimDisk::new(seed, FaultConfig::default());
        // A few transactions per bucket: every segment is an open one.
        fill(&disk, root, 2, 2);
        disk.set_faults(FaultConfig {
            read_bit_flip_probability: 0.1,
            ..FaultConfig::default()
        });
        let report = check::check(&disk, root, CheckOptions { repair: true }).expect("check");
        let tails = report
            .problems
            .iter()
            .filter(|p| matches!(p, Problem::TornTail { .. }))
            .count();
        let cuts = report
            .repairs
            .iter()
            .filter(|r| matches!(r, Repair::TruncatedTail { .. }))
            .count();
        if tails + cuts > 0 {
            torn.push((seed, report.to_string()));
        }
    }
    assert!(torn.is_empty(), "{torn:?}");
}
