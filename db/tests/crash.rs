//! Crash consistency on `SimDisk`: random batches of concurrent appends, a power cut at a
//! random operation (mid-write, mid-fsync, mid-seal), a crash that tears or drops whatever
//! was not synced, then reopen and check:
//!
//! - every acknowledged event is present with its exact content, version and sequence;
//! - every present event was attempted, and every attempted transaction is all there or not
//!   at all (never half visible);
//! - versions and sequences are gapless;
//! - the indexes agree with a full scan of the data.
//!
//! `cargo test -p sierradb-db --test crash` runs 500 seeds; the ignored soak runs
//! `CRASH_SEEDS` (default 20,000).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bytes::Bytes;
use db::StoreConfig;
use db::error::AppendError;
use db::model::{
    EventId, ExpectedVersion, NewEvent, PartitionId, PartitionKey, PartitionSeq, StreamId,
    StreamVersion, Transaction, TransactionId,
};
use db::store::{self, Store};
use disk::{FaultConfig, SimDisk};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

fn config(seed: u64) -> StoreConfig {
    StoreConfig {
        partition_count: 8,
        bucket_count: 2,
        // Small segments so seals (and crashes during them) are frequent.
        segment_size_bytes: 3 * 1024,
        max_transaction_bytes: 1024,
        // Every other seed keeps zeros written ahead of the frames (`store::prealloc`), so
        // crashes also land mid-fill and recovery meets zero tails, torn frames over zeros,
        // and zeros lost with their unsynced fill.
        preallocate_bytes: if seed % 2 == 1 { 1024 } else { 0 },
        ..StoreConfig::default()
    }
}

/// What the test knows of one event it tried to append.
#[derive(Clone, Debug)]
struct Attempted {
    txn: TransactionId,
    stream: StreamId,
    payload: Bytes,
}

#[derive(Default)]
struct Model {
    attempted: BTreeMap<EventId, Attempted>,
    txn_events: BTreeMap<TransactionId, Vec<EventId>>,
    /// Acknowledged events with the version and sequence the append returned.
    acked: BTreeMap<EventId, (StreamVersion, PartitionSeq)>,
    /// Last durable version per stream, when known for certain.
    versions: BTreeMap<StreamId, Option<u64>>,
}

impl Model {
    /// Records a transaction as attempted, before its outcome is known.
    fn attempt(&mut self, txn: &Transaction) {
        for e in &txn.events {
            self.attempted.insert(
                e.event_id,
                Attempted {
                    txn: txn.transaction_id,
                    stream: e.stream_id.clone(),
                    payload: e.payload.clone(),
                },
            );
        }
        self.txn_events.insert(
            txn.transaction_id,
            txn.events.iter().map(|e| e.event_id).collect(),
        );
    }
}

const STREAMS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

fn random_txn(rng: &mut ChaCha8Rng, model: &Model, next_id: &mut u128) -> Transaction {
    let stream = StreamId::new(STREAMS[rng.random_range(0..STREAMS.len())]).unwrap();
    let key = PartitionKey::for_stream(&stream);
    let count = rng.random_range(1..=3);
    let mut events = Vec::new();
    for i in 0..count {
        *next_id += 1;
        // Exact versions where the model is sure; they must then never be refused.
        let expected = match (i, model.versions.get(&stream)) {
            (0, Some(Some(v))) if rng.random_bool(0.5) => ExpectedVersion::Exact(*v),
            (0, Some(None)) if rng.random_bool(0.5) => ExpectedVersion::Empty,
            _ => ExpectedVersion::Any,
        };
        let len = rng.random_range(0..200);
        let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        events.push(NewEvent {
            event_id: EventId(Uuid::from_u128(*next_id)),
            stream_id: stream.clone(),
            event_name: "E".into(),
            expected_version: expected,
            timestamp_ms: 0,
            metadata: Bytes::new(),
            payload: payload.into(),
        });
    }
    *next_id += 1;
    Transaction {
        transaction_id: TransactionId(Uuid::from_u128(*next_id)),
        partition_key: key,
        events,
    }
}

fn verify(store: &Store<SimDisk>, model: &mut Model, seed: u64, life: u32) {
    let ctx = format!("seed {seed}, life {life}");
    // Full scan of the data, bucket by bucket, in file order.
    let mut present: BTreeMap<EventId, db::model::Event> = BTreeMap::new();
    let mut by_partition: BTreeMap<PartitionId, Vec<EventId>> = BTreeMap::new();
    for bucket in store.buckets() {
        for (_, _, record) in bucket.scan_all_frames().expect(&ctx) {
            for slot in 0..record.events.len() {
                let event = record.event(slot);
                by_partition
                    .entry(event.partition_id)
                    .or_default()
                    .push(event.event_id);
                assert!(
                    present.insert(event.event_id, event).is_none(),
                    "{ctx}: event stored twice"
                );
            }
        }
    }
    // Acknowledged events are present, exactly.
    for (id, (version, seq)) in &model.acked {
        let attempted = &model.attempted[id];
        let event = present
            .get(id)
            .unwrap_or_else(|| panic!("{ctx}: acknowledged event {id} lost"));
        assert_eq!(event.stream_version, *version, "{ctx}: {id} moved");
        assert_eq!(event.partition_sequence, *seq, "{ctx}: {id} moved");
        assert_eq!(event.payload, attempted.payload, "{ctx}: {id} changed");
        assert_eq!(event.stream_id, attempted.stream, "{ctx}: {id} changed");
    }
    // Everything present was attempted, and transactions are whole.
    for (id, event) in &present {
        let attempted = model
            .attempted
            .get(id)
            .unwrap_or_else(|| panic!("{ctx}: event {id} was never appended"));
        assert_eq!(event.payload, attempted.payload, "{ctx}: {id} changed");
        for other in &model.txn_events[&attempted.txn] {
            assert!(present.contains_key(other), "{ctx}: half a transaction");
        }
    }
    // Sequences gapless per partition, and the index agrees with the scan.
    for (partition, ids) in &by_partition {
        let scan = store
            .scan_partition(*partition, PartitionSeq(0), None, usize::MAX)
            .expect(&ctx);
        let indexed: Vec<EventId> = scan.events.iter().map(|e| e.event_id).collect();
        assert_eq!(&indexed, ids, "{ctx}: partition index disagrees with data");
        for (n, e) in scan.events.iter().enumerate() {
            assert_eq!(e.partition_sequence.0, n as u64, "{ctx}: sequence gap");
        }
        assert_eq!(
            store.partition_sequence(*partition),
            Some(PartitionSeq(ids.len() as u64 - 1))
        );
    }
    // Versions gapless per stream; the model learns the recovered state.
    model.versions.clear();
    for name in STREAMS {
        let stream = StreamId::new(name).unwrap();
        let key = PartitionKey::for_stream(&stream);
        let scan = store
            .scan_stream(key, &stream, StreamVersion(0), None, usize::MAX)
            .expect(&ctx);
        for (n, e) in scan.events.iter().enumerate() {
            assert_eq!(e.stream_version.0, n as u64, "{ctx}: version gap in {name}");
            assert_eq!(
                store.get(&e.event_id).expect(&ctx).as_ref(),
                Some(e),
                "{ctx}: id index disagrees"
            );
        }
        let last = scan.events.last().map(|e| e.stream_version.0);
        assert_eq!(store.stream_version(key, &stream).map(|v| v.0), last);
        model.versions.insert(stream, last);
    }
    // Whatever survived is now durable: it counts as acknowledged from here on.
    for (id, event) in &present {
        model
            .acked
            .insert(*id, (event.stream_version, event.partition_sequence));
    }
}

/// What a seed exercised, so the test can show it hit what it claims to.
#[derive(Default, Debug)]
struct Coverage {
    power_cuts: u32,
    truncations: u32,
    rebuilt_indexes: u32,
    removed_files: u32,
    acked: usize,
    failed_appends: u32,
    /// Fills of zeros ahead of the frames that ran.
    fills: u32,
}

fn run_seed(seed: u64) -> Coverage {
    let mut coverage = Coverage::default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Small sectors too: some hardware tears writes finer than 512 bytes, and frames here are
    // small, so 512-byte tears alone would rarely leave a partial frame behind.
    let faults = FaultConfig {
        sector_size: [8, 64, 512][seed as usize % 3],
        unsynced_write_kept_probability: 0.3,
        torn_write_probability: 0.7,
        ..FaultConfig::default()
    };
    let disk = SimDisk::new(seed, faults);
    let root = Path::new("/data");
    let mut model = Model::default();
    let mut next_id = 0u128;
    for life in 0..4 {
        let (store, mut writers, report) = store::open(&disk, root, config(seed))
            .unwrap_or_else(|e| panic!("seed {seed}, life {life}: reopen failed: {e}"));
        for b in &report.buckets {
            coverage.truncations += u32::from(b.truncated.is_some());
            coverage.rebuilt_indexes += b.rebuilt_indexes.len() as u32;
            coverage.removed_files += b.removed_files.len() as u32;
        }
        verify(&store, &mut model, seed, life);
        disk.crash_after_ops(rng.random_range(0..120));
        'batches: for _ in 0..40 {
            // A batch is what group commit would gather from concurrent appenders.
            let bucket = rng.random_range(0..writers.len());
            let mut txns = Vec::new();
            for _ in 0..rng.random_range(1..6) {
                let txn = random_txn(&mut rng, &model, &mut next_id);
                let partition = store.partition_of(txn.partition_key);
                if usize::from(store.config().bucket_of(partition.0)) != bucket {
                    continue;
                }
                model.attempt(&txn);
                // Later transactions of this batch cannot know the version this one makes.
                model.versions.remove(&txn.events[0].stream_id);
                txns.push(txn);
            }
            if txns.is_empty() {
                continue;
            }
            let sent = txns.clone();
            let results = writers[bucket].append_batch(txns);
            // As group commit does after a batch, here inline: the fill writes and syncs
            // through a handle of its own, and a power cut may come in the middle of it.
            if let Some(job) = writers[bucket].preallocation_job() {
                job.run();
                coverage.fills += 1;
            }
            for (txn, result) in sent.iter().zip(results) {
                match result {
                    Ok(outcome) => {
                        for e in &outcome.events {
                            model
                                .acked
                                .insert(e.event_id, (e.stream_version, e.partition_sequence));
                            model
                                .versions
                                .insert(e.stream_id.clone(), Some(e.stream_version.0));
                        }
                    }
                    Err(AppendError::WrongExpectedVersion { stream, .. }) => {
                        panic!(
                            "seed {seed}: refused an expected version the model knew for {stream}: {txn:?}"
                        )
                    }
                    Err(AppendError::Unavailable(_) | AppendError::Indeterminate(_)) => {
                        coverage.failed_appends += 1;
                        // The power is off (or the bucket poisoned): the stream's version is
                        // unknown until recovery tells.
                        for e in &txn.events {
                            model.versions.remove(&e.stream_id);
                        }
                    }
                    Err(other) => panic!("seed {seed}: unexpected error {other}"),
                }
            }
            if disk.is_powered_off() {
                coverage.power_cuts += 1;
                break 'batches;
            }
        }
        drop(writers);
        drop(store);
        disk.crash();
    }
    let (store, _, _) = store::open(&disk, root, config(seed)).expect("final reopen");
    verify(&store, &mut model, seed, 99);
    coverage.acked = model.acked.len();
    coverage
}

fn run_seeds(seeds: std::ops::Range<u64>) {
    let mut total = Coverage::default();
    for seed in seeds.clone() {
        let c = run_seed(seed);
        total.power_cuts += c.power_cuts;
        total.truncations += c.truncations;
        total.rebuilt_indexes += c.rebuilt_indexes;
        total.removed_files += c.removed_files;
        total.acked += c.acked;
        total.failed_appends += c.failed_appends;
        total.fills += c.fills;
    }
    eprintln!("seeds {seeds:?}: {total:?}");
    // The workload must really cut power mid-operation and make recovery repair things.
    let n = (seeds.end - seeds.start) as u32;
    assert!(total.power_cuts > n, "{total:?}");
    assert!(total.truncations > n / 10, "{total:?}");
    assert!(total.fills > n, "{total:?}");
}

#[test]
fn crash_consistency_500_seeds() {
    run_seeds(0..500);
}

#[test]
#[ignore = "soak: CRASH_SEEDS=N cargo test -p sierradb-db --release --test crash -- --ignored"]
fn crash_consistency_soak() {
    let seeds: u64 = std::env::var("CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    run_seeds(500..500 + seeds);
}

#[test]
fn acknowledged_appends_survive_even_when_every_unsynced_write_is_lost() {
    let faults = FaultConfig {
        unsynced_write_kept_probability: 0.0,
        torn_write_probability: 1.0,
        ..FaultConfig::default()
    };
    let disk = SimDisk::new(7, faults);
    let root = Path::new("/data");
    let mut model = Model::default();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut next_id = 0;
    let (store, mut writers, _) = store::open(&disk, root, config(0)).unwrap();
    for _ in 0..50 {
        let txn = random_txn(&mut rng, &model, &mut next_id);
        let bucket = usize::from(
            store
                .config()
                .bucket_of(store.partition_of(txn.partition_key).0),
        );
        model.attempt(&txn);
        let outcome = writers[bucket].append_batch(vec![txn]).remove(0).unwrap();
        for e in &outcome.events {
            model
                .acked
                .insert(e.event_id, (e.stream_version, e.partition_sequence));
            model
                .versions
                .insert(e.stream_id.clone(), Some(e.stream_version.0));
        }
    }
    drop((store, writers));
    disk.crash();
    let (store, _, report) = store::open(&disk, root, config(0)).unwrap();
    assert!(!report.repaired_anything(), "{report}");
    let acked: BTreeSet<EventId> = model.acked.keys().copied().collect();
    verify(&store, &mut model, 7, 1);
    assert_eq!(acked.len(), model.acked.len());
}

/// The test has teeth: with acknowledgement before fsync planted, some seed loses an
/// acknowledged event.
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_ack_before_sync_is_caught() {
    db::planted::set(Some(db::planted::PlantedBug::AckBeforeSync));
    let caught = (0..200).any(|seed| std::panic::catch_unwind(|| run_seed(seed)).is_err());
    db::planted::set(None);
    assert!(caught, "no seed caught ack-before-sync");
}

/// A read that returns a flipped bit (a transient fault: the stored bytes are intact) while
/// recovery reads the open segment must not be taken for a torn tail: cutting there would
/// throw away acknowledged frames, and the next appends would reuse their positions. Opening
/// may fail (a flip in the layout file, or in a frame with others after it, refuses to open
/// until a clean read), but it never cuts anything. One read in ten flips a bit; with the open
/// segment read once, as before, some of these 100 seeds cut an acknowledged frame.
#[test]
fn a_flipped_bit_read_during_recovery_never_cuts_acknowledged_frames() {
    let root = Path::new("/data");
    let config = StoreConfig {
        partition_count: 1,
        bucket_count: 1,
        segment_size_bytes: 1 << 20,
        ..config(0)
    };
    let mut cuts = Vec::new();
    let mut opened = 0;
    for seed in 0..100u64 {
        let disk = SimDisk::new(seed, FaultConfig::default());
        let (store, mut writers, _) = store::open(&disk, root, config.clone()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut next_id = 0;
        let model = Model::default();
        // Two frames in the open segment: a flip lands in the last one about half the time.
        for _ in 0..2 {
            let txn = random_txn(&mut rng, &model, &mut next_id);
            writers[0].append_batch(vec![txn]).remove(0).unwrap();
        }
        drop((store, writers));
        disk.set_faults(FaultConfig {
            read_bit_flip_probability: 0.1,
            ..FaultConfig::default()
        });
        if let Ok((_, _, report)) = store::open(&disk, root, config.clone()) {
            opened += 1;
            if report.truncated_bytes() > 0 {
                cuts.push((seed, report.to_string()));
            }
        }
    }
    assert!(opened >= 50, "only {opened} of 100 opens succeeded");
    assert!(cuts.is_empty(), "acknowledged frames cut: {cuts:?}");
}
