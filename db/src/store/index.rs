//! Per-segment indexes and their file format. Pure code, no I/O.
//!
//! A [`SegmentIndex`] maps, for one segment:
//! - event id → [`Pos`];
//! - (partition, stream) → the run of versions the segment holds, each with its [`Pos`];
//! - partition → the run of sequences the segment holds, each with its [`Pos`].
//!
//! Versions and sequences are gapless and appended in order, so inside one segment each stream
//! and each partition occupies one contiguous run: a first number and a vector of positions.
//!
//! The open segment's index lives in memory and is rebuilt on recovery. A sealed segment's
//! index is written once to `segment-N.idx` (byte table below), fsynced, and carries two bloom
//! filters (event ids, streams) so lookups skip segments that cannot hold a key. In memory a
//! sealed segment keeps its event ids as the file's sorted table ([`EventTable`], searched by
//! bisection) rather than a map: recovery reads every sealed index at each start.
//!
//! Index file, little-endian:
//!
//! | size | field |
//! |---|---|
//! | 8 | magic `SRDBIDX\0` |
//! | 2 | format version |
//! | 4 | segment id |
//! | 8 | `data_end`: offset just past the segment's last frame |
//! | 4+… | events: count, then `(event id 16, offset u64, slot u32)` sorted by id |
//! | 4+… | streams: count, then `(partition u16, id len u8, id, partition key 16, first version u64, n u32, n × (offset u64, slot u32))` |
//! | 4+… | partitions: count, then `(partition u16, first sequence u64, n u32, n × (offset u64, slot u32))` |
//! | … | event bloom, then stream bloom: `(k u8, words u32, words × u64)` |
//! | 4 | CRC-32 of everything before |

use std::collections::BTreeMap;

use bytes::{Buf, BufMut};
use uuid::Uuid;

use crate::model::{EventId, PartitionId, PartitionKey, PartitionSeq, StreamId, StreamVersion};
use crate::store::record::TransactionRecord;

/// Where an event is: the offset of its transaction's frame and its slot inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub offset: u64,
    pub slot: u32,
}

/// A contiguous run of numbers (versions or sequences) starting at `first`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    pub first: u64,
    pub positions: Vec<Pos>,
}

impl Run {
    /// One past the last number in the run.
    pub fn end(&self) -> u64 {
        self.first + self.positions.len() as u64
    }

    /// The position of number `n`, if the run holds it.
    pub fn get(&self, n: u64) -> Option<Pos> {
        let i = n.checked_sub(self.first)?;
        self.positions.get(usize::try_from(i).ok()?).copied()
    }

    fn push(&mut self, n: u64, pos: Pos) {
        if self.positions.is_empty() {
            self.first = n;
        }
        assert_eq!(n, self.end(), "runs are gapless: checked before indexing");
        self.positions.push(pos);
    }
}

/// A stream's run in one segment, with the partition key all its events share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRun {
    pub partition_key: PartitionKey,
    pub run: Run,
}

/// A stream's key inside a bucket: streams are told apart by partition too, so a stream id
/// reused with a key of another partition is another stream, never a silent merge.
pub type StreamKey = (PartitionId, StreamId);

/// A [`StreamKey`] by reference: looks up a map keyed by `StreamKey` without cloning the
/// stream id (a shared count that appenders on other threads touch too). Hashes as the tuple
/// does, field by field.
#[derive(Hash)]
pub struct StreamKeyRef<'a>(pub PartitionId, pub &'a StreamId);

impl indexmap::Equivalent<StreamKey> for StreamKeyRef<'_> {
    fn equivalent(&self, key: &StreamKey) -> bool {
        self.0 == key.0 && *self.1 == key.1
    }
}

/// Sets the value of a stream in `map`, cloning its id only when the stream is new there.
pub fn set_stream<V>(
    map: &mut FixedMap<StreamKey, V>,
    partition: PartitionId,
    id: &StreamId,
    value: V,
) {
    match map.get_mut(&StreamKeyRef(partition, id)) {
        Some(slot) => *slot = value,
        None => {
            map.insert((partition, id.clone()), value);
        }
    }
}

/// A hash map with a fixed hasher that iterates in insertion order: lookups cost a hash instead
/// of a tree walk of key comparisons, and iteration stays deterministic (same inserts, same
/// order), which the simulator's reproducibility needs. Code that needs sorted order sorts.
pub type FixedMap<K, V> = indexmap::IndexMap<K, V, rustc_hash::FxBuildHasher>;

/// The indexes of one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    pub events: FixedMap<EventId, Pos>,
    pub streams: FixedMap<StreamKey, StreamRun>,
    pub partitions: BTreeMap<PartitionId, Run>,
}

impl SegmentIndex {
    /// Adds every event of the transaction at `offset`.
    pub fn insert(&mut self, offset: u64, record: &TransactionRecord) {
        for (slot, event) in record.events.iter().enumerate() {
            let pos = Pos {
                offset,
                slot: slot as u32,
            };
            self.events.insert(event.event_id, pos);
            let key = StreamKeyRef(record.partition_id, &event.stream_id);
            let run = match self.streams.get_mut(&key) {
                Some(stream) => &mut stream.run,
                None => {
                    let stream = StreamRun {
                        partition_key: record.partition_key,
                        run: Run::default(),
                    };
                    let key = (record.partition_id, event.stream_id.clone());
                    &mut self.streams.entry(key).or_insert(stream).run
                }
            };
            run.push(event.stream_version.0, pos);
            self.partitions
                .entry(record.partition_id)
                .or_default()
                .push(record.first_sequence.0 + slot as u64, pos);
        }
    }

    pub fn stream_version(&self, key: &StreamKey, version: StreamVersion) -> Option<Pos> {
        self.streams.get(key)?.run.get(version.0)
    }

    pub fn partition_seq(&self, partition: PartitionId, seq: PartitionSeq) -> Option<Pos> {
        self.partitions.get(&partition)?.get(seq.0)
    }
}

/// A sealed segment's event ids and their positions, sorted by id with each id once: the
/// layout of the index file's event table. Recovery reads every sealed index at each start,
/// and taking the file's sorted table as it is costs a fraction of hashing every id into a
/// map; a lookup is a binary search, which a segment's bloom filter (and the bucket-wide
/// [`SealedEvents`]) spares almost every id a sealed segment does not hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventTable(Vec<(EventId, Pos)>);

impl EventTable {
    /// The table of an open segment's map of events.
    pub fn from_map(events: &FixedMap<EventId, Pos>) -> Self {
        let mut entries: Vec<(EventId, Pos)> = events.iter().map(|(id, pos)| (*id, *pos)).collect();
        entries.sort_unstable_by_key(|(id, _)| *id);
        EventTable(entries)
    }

    /// The table of `entries` in any order. An id given more than once keeps its last
    /// position, as inserting them one by one into a map would.
    fn from_entries(mut entries: Vec<(EventId, Pos)>) -> Self {
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            // Never the case in a file this store wrote (they are sorted and unique); a
            // stable sort keeps repeated ids in their given order, and the last one wins.
            entries.sort_by_key(|(id, _)| *id);
            let mut unique: Vec<(EventId, Pos)> = Vec::with_capacity(entries.len());
            for (id, pos) in entries {
                match unique.last_mut() {
                    Some(last) if last.0 == id => last.1 = pos,
                    _ => unique.push((id, pos)),
                }
            }
            entries = unique;
        }
        EventTable(entries)
    }

    pub fn get(&self, id: &EventId) -> Option<&Pos> {
        let i = self.0.binary_search_by(|(e, _)| e.cmp(id)).ok()?;
        Some(&self.0[i].1)
    }

    pub fn contains_key(&self, id: &EventId) -> bool {
        self.get(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids, ascending.
    pub fn keys(&self) -> impl Iterator<Item = &EventId> {
        self.0.iter().map(|(id, _)| id)
    }

    /// The ids with their positions, ascending by id.
    pub fn iter(&self) -> impl Iterator<Item = (&EventId, &Pos)> {
        self.0.iter().map(|(id, pos)| (id, pos))
    }
}

impl FromIterator<(EventId, Pos)> for EventTable {
    fn from_iter<I: IntoIterator<Item = (EventId, Pos)>>(entries: I) -> Self {
        EventTable::from_entries(entries.into_iter().collect())
    }
}

/// The indexes of one sealed segment: a [`SegmentIndex`] with its events as an
/// [`EventTable`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SealedTables {
    pub events: EventTable,
    pub streams: FixedMap<StreamKey, StreamRun>,
    pub partitions: BTreeMap<PartitionId, Run>,
}

impl SealedTables {
    pub fn stream_version(&self, key: &StreamKey, version: StreamVersion) -> Option<Pos> {
        self.streams.get(key)?.run.get(version.0)
    }

    pub fn partition_seq(&self, partition: PartitionId, seq: PartitionSeq) -> Option<Pos> {
        self.partitions.get(&partition)?.get(seq.0)
    }
}

/// A bloom filter with `k` probes by double hashing. Small and hand-written because the
/// crates of the field seed their hashers randomly, and the index file needs a stable layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    k: u8,
    words: Vec<u64>,
}

impl Bloom {
    /// Sized for `items` at about a 1% false-positive rate (10 bits per item, 7 probes).
    pub fn with_capacity(items: usize) -> Self {
        let bits = (items.max(1) * 10).next_power_of_two().max(64);
        Bloom {
            k: 7,
            words: vec![0; bits / 64],
        }
    }

    fn probes(&self, hash: u64) -> impl Iterator<Item = usize> + use<> {
        let bits = (self.words.len() * 64) as u64;
        // `with_capacity` sizes every filter to a power of two, where the remainder is a mask
        // (a division per probe costs more than the rest of a lookup); a filter read from a
        // file could in principle have another size, and keeps the division.
        let mask = bits.is_power_of_two().then(|| bits - 1);
        let h1 = hash;
        let h2 = mix64(hash ^ 0x9e37_79b9_7f4a_7c15) | 1;
        let k = self.k;
        (0..u64::from(k)).map(move |i| {
            let h = h1.wrapping_add(i.wrapping_mul(h2));
            match mask {
                Some(mask) => (h & mask) as usize,
                None => (h % bits) as usize,
            }
        })
    }

    pub fn insert(&mut self, hash: u64) {
        if let Some(mask) = self.mask() {
            // The probes of `probes` for a power-of-two size, as one loop: recovery inserts
            // every sealed id into the bucket-wide filter at each start.
            let h2 = mix64(hash ^ 0x9e37_79b9_7f4a_7c15) | 1;
            let mut h = hash;
            for _ in 0..self.k {
                let bit = h & mask;
                self.words[(bit / 64) as usize] |= 1 << (bit % 64);
                h = h.wrapping_add(h2);
            }
            return;
        }
        for bit in self.probes(hash) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    pub fn may_contain(&self, hash: u64) -> bool {
        if let Some(mask) = self.mask() {
            let h2 = mix64(hash ^ 0x9e37_79b9_7f4a_7c15) | 1;
            let mut h = hash;
            for _ in 0..self.k {
                let bit = h & mask;
                if self.words[(bit / 64) as usize] & (1 << (bit % 64)) == 0 {
                    return false;
                }
                h = h.wrapping_add(h2);
            }
            return true;
        }
        self.probes(hash)
            .all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// `bits - 1` when the filter's size in bits is a power of two.
    fn mask(&self) -> Option<u64> {
        let bits = (self.words.len() * 64) as u64;
        bits.is_power_of_two().then(|| bits - 1)
    }
}

/// A stable 64-bit finaliser (splitmix64).
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into a running FNV-1a.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a, then mixed: stable across Rust releases, unlike `DefaultHasher`.
fn hash_bytes(bytes: &[u8]) -> u64 {
    mix64(fnv1a(FNV_OFFSET_BASIS, bytes))
}

pub fn event_hash(id: &EventId) -> u64 {
    hash_bytes(id.0.as_bytes())
}

/// [`hash_bytes`] of the partition (two bytes, little-endian) followed by the stream id, without
/// gathering them in a buffer first.
pub fn stream_hash(key: &StreamKey) -> u64 {
    let h = fnv1a(FNV_OFFSET_BASIS, &key.0.0.to_le_bytes());
    mix64(fnv1a(h, key.1.as_str().as_bytes()))
}

/// A sealed segment's index: the maps plus bloom filters over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedIndex {
    pub segment: u32,
    pub data_end: u64,
    pub index: SealedTables,
    pub event_bloom: Bloom,
    pub stream_bloom: Bloom,
}

impl SealedIndex {
    pub fn build(segment: u32, data_end: u64, index: SegmentIndex) -> Self {
        let mut event_bloom = Bloom::with_capacity(index.events.len());
        for id in index.events.keys() {
            event_bloom.insert(event_hash(id));
        }
        let mut stream_bloom = Bloom::with_capacity(index.streams.len());
        for key in index.streams.keys() {
            stream_bloom.insert(stream_hash(key));
        }
        SealedIndex {
            segment,
            data_end,
            index: SealedTables {
                events: EventTable::from_map(&index.events),
                streams: index.streams,
                partitions: index.partitions,
            },
            event_bloom,
            stream_bloom,
        }
    }

    pub fn event(&self, id: &EventId) -> Option<Pos> {
        self.event_hashed(id, event_hash(id))
    }

    /// [`SealedIndex::event`] with the id's [`event_hash`] worked out once by a caller that
    /// asks every sealed segment in turn.
    pub fn event_hashed(&self, id: &EventId, hash: u64) -> Option<Pos> {
        if !self.event_bloom.may_contain(hash) {
            return None;
        }
        self.index.events.get(id).copied()
    }

    pub fn stream(&self, key: &StreamKey) -> Option<&Run> {
        self.stream_hashed(key, stream_hash(key))
    }

    /// [`SealedIndex::stream`] with the key's [`stream_hash`] worked out once.
    pub fn stream_hashed(&self, key: &StreamKey, hash: u64) -> Option<&Run> {
        if !self.stream_bloom.may_contain(hash) {
            return None;
        }
        self.index.streams.get(key).map(|s| &s.run)
    }
}

/// The event ids of all of a bucket's sealed segments in one bloom filter. An append looks its
/// ids up for idempotency, and almost every id is new: without this, each lookup would probe
/// the filter of every sealed segment in turn, a cost that grows with the data stored (a
/// thousand segments, seven cache misses each). With it, a new id usually costs one filter.
#[derive(Clone, Debug)]
pub struct SealedEvents {
    bloom: Bloom,
    items: usize,
    /// The items the filter is sized for; past it, it is built again twice as large.
    capacity: usize,
}

impl SealedEvents {
    /// The filter over every id of `indexes`.
    pub fn build<'a>(indexes: impl Iterator<Item = &'a SealedIndex> + Clone) -> Self {
        let items: usize = indexes.clone().map(|s| s.index.events.len()).sum();
        let capacity = (items * 2).max(1024);
        let mut filter = SealedEvents {
            bloom: Bloom::with_capacity(capacity),
            items: 0,
            capacity,
        };
        for index in indexes {
            filter.insert(index);
        }
        filter
    }

    /// Adds a newly sealed segment's ids; `all` is every sealed index, that one included, for
    /// when the filter must be built again larger.
    pub fn add<'a>(
        &mut self,
        sealed: &SealedIndex,
        all: impl Iterator<Item = &'a SealedIndex> + Clone,
    ) {
        if self.items + sealed.index.events.len() > self.capacity {
            *self = SealedEvents::build(all);
        } else {
            self.insert(sealed);
        }
    }

    fn insert(&mut self, sealed: &SealedIndex) {
        for id in sealed.index.events.keys() {
            self.bloom.insert(Self::hash(id));
        }
        self.items += sealed.index.events.len();
    }

    /// False when no sealed segment holds `id`.
    pub fn may_contain(&self, id: &EventId) -> bool {
        self.bloom.may_contain(Self::hash(id))
    }

    /// The filter's hash of an id. It lives in memory only, so unlike [`event_hash`] (fixed
    /// by the index files' filters) it can be a cheap mix of the id's two halves: recovery
    /// hashes every sealed id again, and an append hashes each of its ids.
    fn hash(id: &EventId) -> u64 {
        let id = id.0.as_u128();
        mix64(id as u64 ^ mix64((id >> 64) as u64))
    }
}

/// Where one stream's or one partition's run sits in a sealed segment, as [`SealedRuns`]
/// lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAt {
    /// The segment's place in the bucket's list of sealed segments (oldest first).
    pub sealed: u32,
    /// The run's first number and one past its last.
    pub first: u64,
    pub end: u64,
}

/// Every stream's and partition's runs over all of a bucket's sealed segments, oldest first.
///
/// A read of a stream or partition needs the runs that overlap the numbers it asks for.
/// Without this it would look the key up in every sealed segment (a bloom probe and a map
/// lookup each), a cost that grows with the data stored; with it, the key's list is found in
/// one lookup. A key's runs follow each other in segment order without overlap (recovery
/// refuses segments whose numbers do not continue, and appends only extend a key's last
/// number), so the overlapping ones are found by binary search; a list that were ever out of
/// that order would be handed out whole, which the reader filters run by run as it would
/// the segments' own maps.
#[derive(Clone, Debug, Default)]
pub struct SealedRuns {
    streams: FixedMap<StreamKey, RunList>,
    partitions: FixedMap<PartitionId, RunList>,
}

/// One key's sealed runs, oldest first, and whether each starts at or past the previous end.
#[derive(Clone, Debug)]
struct RunList {
    ordered: bool,
    runs: Vec<RunAt>,
}

impl RunList {
    fn new(at: RunAt) -> RunList {
        RunList {
            ordered: true,
            runs: vec![at],
        }
    }

    fn push(&mut self, at: RunAt) {
        if self.runs.last().is_some_and(|last| at.first < last.end) {
            self.ordered = false;
        }
        self.runs.push(at);
    }

    /// The runs that may hold a number in `from..=to`: exactly those when ordered.
    fn overlapping(&self, from: u64, to: u64) -> &[RunAt] {
        if !self.ordered {
            return &self.runs;
        }
        if from > to {
            return &[];
        }
        let start = self.runs.partition_point(|r| r.end <= from);
        let stop = self.runs.partition_point(|r| r.first <= to);
        self.runs.get(start..stop).unwrap_or(&[])
    }
}

impl SealedRuns {
    /// The runs of `indexes`, the bucket's sealed segments in order.
    pub fn build<'a>(indexes: impl Iterator<Item = &'a SealedIndex>) -> Self {
        let mut runs = SealedRuns::default();
        for (sealed, index) in indexes.enumerate() {
            runs.add(sealed, index);
        }
        runs
    }

    /// Adds the runs of the segment sealed at place `sealed` (after every earlier one).
    pub fn add(&mut self, sealed: usize, index: &SealedIndex) {
        let sealed = u32::try_from(sealed).expect("fewer than 2^32 sealed segments");
        let at = |run: &Run| RunAt {
            sealed,
            first: run.first,
            end: run.end(),
        };
        for (key, stream) in &index.index.streams {
            match self.streams.get_mut(key) {
                Some(list) => list.push(at(&stream.run)),
                None => {
                    self.streams
                        .insert(key.clone(), RunList::new(at(&stream.run)));
                }
            }
        }
        for (partition, run) in &index.index.partitions {
            match self.partitions.get_mut(partition) {
                Some(list) => list.push(at(run)),
                None => {
                    self.partitions.insert(*partition, RunList::new(at(run)));
                }
            }
        }
    }

    /// The sealed runs of a stream that may hold a number in `from..=to`, oldest first.
    pub fn stream(&self, key: &StreamKey, from: u64, to: u64) -> &[RunAt] {
        self.streams
            .get(key)
            .map_or(&[], |list| list.overlapping(from, to))
    }

    /// The sealed runs of a partition that may hold a number in `from..=to`, oldest first.
    pub fn partition(&self, partition: PartitionId, from: u64, to: u64) -> &[RunAt] {
        self.partitions
            .get(&partition)
            .map_or(&[], |list| list.overlapping(from, to))
    }
}

pub const INDEX_MAGIC: [u8; 8] = *b"SRDBIDX\0";
pub const INDEX_FORMAT_VERSION: u16 = 1;

/// Why an index file was refused; the caller rebuilds it from the segment's data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("index file invalid: {0}")]
pub struct IndexFileError(pub &'static str);

fn put_run(out: &mut Vec<u8>, run: &Run) {
    out.put_u32_le(run.positions.len() as u32);
    for pos in &run.positions {
        out.put_u64_le(pos.offset);
        out.put_u32_le(pos.slot);
    }
}

pub fn encode_index_file(sealed: &SealedIndex) -> Vec<u8> {
    let index = &sealed.index;
    let mut out = Vec::new();
    out.extend_from_slice(&INDEX_MAGIC);
    out.put_u16_le(INDEX_FORMAT_VERSION);
    out.put_u32_le(sealed.segment);
    out.put_u64_le(sealed.data_end);
    // Sorted (an event table always is), so the file's bytes depend only on what the segment
    // holds.
    out.put_u32_le(index.events.len() as u32);
    for (id, pos) in index.events.iter() {
        out.extend_from_slice(id.0.as_bytes());
        out.put_u64_le(pos.offset);
        out.put_u32_le(pos.slot);
    }
    let mut streams: Vec<_> = index.streams.iter().collect();
    streams.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.put_u32_le(streams.len() as u32);
    for ((partition, stream), s) in streams {
        out.put_u16_le(partition.0);
        out.put_u8(stream.as_str().len() as u8);
        out.extend_from_slice(stream.as_str().as_bytes());
        out.extend_from_slice(s.partition_key.0.as_bytes());
        out.put_u64_le(s.run.first);
        put_run(&mut out, &s.run);
    }
    out.put_u32_le(index.partitions.len() as u32);
    for (partition, run) in &index.partitions {
        out.put_u16_le(partition.0);
        out.put_u64_le(run.first);
        put_run(&mut out, run);
    }
    for bloom in [&sealed.event_bloom, &sealed.stream_bloom] {
        out.put_u8(bloom.k);
        out.put_u32_le(bloom.words.len() as u32);
        for word in &bloom.words {
            out.put_u64_le(*word);
        }
    }
    let crc = crc32fast::hash(&out);
    out.put_u32_le(crc);
    out
}

/// The position stored in `bytes`: offset (u64) then slot (u32), little-endian.
fn pos_at(bytes: &[u8]) -> Pos {
    Pos {
        offset: u64::from_le_bytes(bytes[..8].try_into().unwrap()),
        slot: u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
    }
}

/// A bounds-checked reader over an index file body.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn need(&self, n: usize) -> Result<(), IndexFileError> {
        if self.0.len() < n {
            return Err(IndexFileError("truncated"));
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, IndexFileError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> Result<u16, IndexFileError> {
        self.need(2)?;
        Ok(self.0.get_u16_le())
    }
    fn u32(&mut self) -> Result<u32, IndexFileError> {
        self.need(4)?;
        Ok(self.0.get_u32_le())
    }
    fn u64(&mut self) -> Result<u64, IndexFileError> {
        self.need(8)?;
        Ok(self.0.get_u64_le())
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], IndexFileError> {
        self.need(n)?;
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    /// A count of items of at least `item_bytes` each, refused if the rest cannot hold them.
    fn count(&mut self, item_bytes: usize) -> Result<usize, IndexFileError> {
        let n = self.u32()? as usize;
        if n > self.0.len() / item_bytes {
            return Err(IndexFileError("count exceeds the file"));
        }
        Ok(n)
    }
    fn run(&mut self, first: u64) -> Result<Run, IndexFileError> {
        let n = self.count(12)?;
        // `count` checked that the rest holds all `n`, so they are read without a check each.
        let positions = self.bytes(n * 12)?.chunks_exact(12).map(pos_at).collect();
        Ok(Run { first, positions })
    }
    fn bloom(&mut self) -> Result<Bloom, IndexFileError> {
        let k = self.u8()?;
        let n = self.count(8)?;
        if n == 0 || !n.is_power_of_two() || k == 0 {
            return Err(IndexFileError("bad bloom filter"));
        }
        let words = (0..n).map(|_| self.u64()).collect::<Result<_, _>>()?;
        Ok(Bloom { k, words })
    }
}

pub fn decode_index_file(bytes: &[u8]) -> Result<SealedIndex, IndexFileError> {
    if bytes.len() < 4 {
        return Err(IndexFileError("truncated"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err(IndexFileError("checksum mismatch"));
    }
    let mut c = Cursor(body);
    if c.bytes(8)? != INDEX_MAGIC {
        return Err(IndexFileError("bad magic"));
    }
    if c.u16()? != INDEX_FORMAT_VERSION {
        return Err(IndexFileError("unsupported format version"));
    }
    let segment = c.u32()?;
    let data_end = c.u64()?;
    let mut index = SealedTables::default();
    let events = c.count(28)?;
    index.events = EventTable::from_entries(
        c.bytes(events * 28)?
            .chunks_exact(28)
            .map(|e| {
                let id = EventId(Uuid::from_bytes(e[..16].try_into().unwrap()));
                (id, pos_at(&e[16..]))
            })
            .collect(),
    );
    let streams = c.count(35)?;
    index.streams.reserve(streams);
    for _ in 0..streams {
        let partition = PartitionId(c.u16()?);
        let len = c.u8()? as usize;
        let stream =
            StreamId::from_bytes(c.bytes(len)?).map_err(|_| IndexFileError("invalid stream id"))?;
        let partition_key = PartitionKey(Uuid::from_bytes(c.bytes(16)?.try_into().unwrap()));
        let first = c.u64()?;
        let run = c.run(first)?;
        index
            .streams
            .insert((partition, stream), StreamRun { partition_key, run });
    }
    for _ in 0..c.count(14)? {
        let partition = PartitionId(c.u16()?);
        let first = c.u64()?;
        index.partitions.insert(partition, c.run(first)?);
    }
    let event_bloom = c.bloom()?;
    let stream_bloom = c.bloom()?;
    if !c.0.is_empty() {
        return Err(IndexFileError("trailing bytes"));
    }
    Ok(SealedIndex {
        segment,
        data_end,
        index,
        event_bloom,
        stream_bloom,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TransactionId;
    use crate::store::record::EventRecord;

    #[test]
    fn sealed_events_holds_every_id_through_growth() {
        let mut all: Vec<SealedIndex> = Vec::new();
        let mut filter = SealedEvents::build(all.iter());
        for segment in 0..40u32 {
            let mut index = SegmentIndex::default();
            for n in 0..100u32 {
                let id = EventId(Uuid::from_u128(u128::from(segment) << 32 | u128::from(n)));
                index.events.insert(id, Pos { offset: 0, slot: n });
            }
            all.push(SealedIndex::build(segment, 0, index));
            filter.add(all.last().unwrap(), all.iter());
        }
        assert!(filter.capacity >= 4000, "grew to {}", filter.capacity);
        for sealed in &all {
            for id in sealed.index.events.keys() {
                assert!(filter.may_contain(id), "{id:?} missing");
            }
        }
        let absent = (0..10_000u128)
            .filter(|n| filter.may_contain(&EventId(Uuid::from_u128(n | 1 << 100))))
            .count();
        assert!(absent < 300, "{absent} of 10,000 absent ids pass");
        assert_eq!(
            SealedEvents::build(all.iter()).items,
            filter.items,
            "rebuilt and grown filters count the same ids"
        );
    }

    #[test]
    fn an_event_table_answers_as_the_map_it_replaces() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for round in 0..200 {
            let n = rng.random_range(0..60);
            // Few distinct ids, so that rounds with repeats (and unsorted input) are common.
            let ids = if round % 2 == 0 { 1u128 << 100 } else { 40 };
            let entries: Vec<(EventId, Pos)> = (0..n)
                .map(|slot| {
                    let id = EventId(Uuid::from_u128(rng.random_range(0..ids)));
                    let pos = Pos {
                        offset: rng.random_range(0..1000),
                        slot,
                    };
                    (id, pos)
                })
                .collect();
            let mut map = FixedMap::default();
            for (id, pos) in &entries {
                map.insert(*id, *pos);
            }
            let table: EventTable = entries.iter().copied().collect();
            assert_eq!(table, EventTable::from_map(&map));
            assert_eq!(table.len(), map.len());
            assert!(table.keys().is_sorted());
            for (id, pos) in &map {
                assert_eq!(table.get(id), Some(pos));
            }
            for _ in 0..20 {
                let id = EventId(Uuid::from_u128(rng.random_range(0..ids)));
                assert_eq!(table.get(&id), map.get(&id));
                assert_eq!(table.contains_key(&id), map.contains_key(&id));
            }
        }
    }

    #[test]
    fn an_index_file_with_a_repeated_event_id_decodes_as_before() {
        // Files this store writes never repeat an id, but one with a valid checksum that did
        // keeps the last position of each id, as the map this table replaced did.
        let sealed = sample();
        let mut bytes = encode_index_file(&sealed);
        let events = u32::from_le_bytes(bytes[22..26].try_into().unwrap()) as usize;
        assert!(events >= 2);
        let (first, second) = (26, 26 + 28);
        let id: [u8; 16] = bytes[first..first + 16].try_into().unwrap();
        bytes[second..second + 16].copy_from_slice(&id);
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        let decoded = decode_index_file(&bytes).unwrap();
        let id = EventId(Uuid::from_bytes(id));
        assert_eq!(decoded.index.events.len(), events - 1);
        assert_eq!(
            decoded.index.events.get(&id),
            Some(&pos_at(&bytes[second + 16..]))
        );
        assert!(decoded.index.events.keys().is_sorted());
    }

    #[test]
    fn run_lists_give_the_runs_that_overlap_a_range() {
        let at = |sealed, first, end| RunAt { sealed, first, end };
        let mut list = RunList::new(at(0, 0, 5));
        list.push(at(2, 5, 9));
        list.push(at(3, 9, 20));
        assert!(list.ordered);
        assert_eq!(list.overlapping(0, u64::MAX), &list.runs[..]);
        assert_eq!(list.overlapping(0, 0), &list.runs[..1]);
        assert_eq!(list.overlapping(4, 5), &list.runs[..2]);
        assert_eq!(list.overlapping(6, 9), &list.runs[1..]);
        assert_eq!(list.overlapping(19, 19), &list.runs[2..]);
        assert!(list.overlapping(20, u64::MAX).is_empty());
        assert!(list.overlapping(7, 6).is_empty());
        // Out of order (never the case in a bucket): every run, for the reader to filter.
        list.push(at(4, 3, 4));
        assert!(!list.ordered);
        assert_eq!(list.overlapping(30, 40).len(), 4);
    }

    #[test]
    fn a_stream_key_by_reference_finds_the_owned_key() {
        use indexmap::Equivalent;
        use std::hash::BuildHasher;
        let id = StreamId::new("orders-42").unwrap();
        let hasher = rustc_hash::FxBuildHasher;
        assert_eq!(
            hasher.hash_one((PartitionId(7), id.clone())),
            hasher.hash_one(StreamKeyRef(PartitionId(7), &id)),
        );
        let mut map = FixedMap::default();
        set_stream(&mut map, PartitionId(7), &id, 1);
        set_stream(&mut map, PartitionId(7), &id, 2);
        set_stream(&mut map, PartitionId(8), &id, 3);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&StreamKeyRef(PartitionId(7), &id)), Some(&2));
        assert_eq!(map.get(&(PartitionId(8), id.clone())), Some(&3));
        assert!(!StreamKeyRef(PartitionId(8), &id).equivalent(&(PartitionId(7), id.clone())));
    }

    fn sample() -> SealedIndex {
        let mut index = SegmentIndex::default();
        for t in 0..20u64 {
            let record = TransactionRecord {
                transaction_id: TransactionId(Uuid::from_u128(t as u128)),
                partition_key: PartitionKey(Uuid::from_u128(1)),
                partition_id: PartitionId((t % 3) as u16),
                first_sequence: PartitionSeq(t / 3 * 2),
                events: (0..2)
                    .map(|i| EventRecord {
                        event_id: EventId(Uuid::from_u128((t * 2 + i) as u128 + 1000)),
                        stream_id: StreamId::new(&format!("s{}", t % 3)).unwrap(),
                        stream_version: StreamVersion(t / 3 * 2 + i),
                        event_name: String::new(),
                        timestamp_ms: 0,
                        metadata: Default::default(),
                        payload: Default::default(),
                    })
                    .collect(),
            };
            index.insert(t * 100, &record);
        }
        SealedIndex::build(4, 2000, index)
    }

    #[test]
    fn index_file_round_trips_and_finds_everything() {
        let sealed = sample();
        let bytes = encode_index_file(&sealed);
        let decoded = decode_index_file(&bytes).unwrap();
        assert_eq!(decoded, sealed);
        for (id, pos) in sealed.index.events.iter() {
            assert_eq!(decoded.event(id), Some(*pos));
        }
        let key = (PartitionId(1), StreamId::new("s1").unwrap());
        let run = decoded.stream(&key).unwrap();
        assert_eq!(run.first, 0);
        assert_eq!(run.positions.len(), 14);
        assert_eq!(
            decoded.index.partition_seq(PartitionId(1), PartitionSeq(3)),
            Some(Pos {
                offset: 400,
                slot: 1
            })
        );
    }

    #[test]
    fn stream_hash_is_the_hash_of_partition_then_id() {
        // The layout the index files' bloom filters were built with.
        let key = (PartitionId(515), StreamId::new("orders-17").unwrap());
        let mut bytes = key.0.0.to_le_bytes().to_vec();
        bytes.extend_from_slice(key.1.as_str().as_bytes());
        assert_eq!(stream_hash(&key), hash_bytes(&bytes));
    }

    #[test]
    fn bloom_probes_are_the_remainders_of_the_double_hash() {
        for words in [1, 3, 8, 48] {
            let mut bloom = Bloom {
                k: 7,
                words: vec![0; words],
            };
            let bits = words as u64 * 64;
            for n in 0..50u64 {
                let hash = mix64(n);
                let h2 = mix64(hash ^ 0x9e37_79b9_7f4a_7c15) | 1;
                let expected: Vec<usize> = (0..7u64)
                    .map(|i| (hash.wrapping_add(i.wrapping_mul(h2)) % bits) as usize)
                    .collect();
                assert_eq!(bloom.probes(hash).collect::<Vec<_>>(), expected);
                bloom.insert(hash);
                assert!(bloom.may_contain(hash));
            }
        }
    }

    #[test]
    fn bloom_inserts_and_lookups_set_and_test_exactly_the_probed_bits() {
        for (k, words) in [(7, 1), (7, 16), (3, 8), (1, 64), (11, 4), (7, 3), (5, 48)] {
            let mut bloom = Bloom {
                k,
                words: vec![0; words],
            };
            let mut by_probes = bloom.clone();
            for n in 0..200u64 {
                let hash = mix64(n.wrapping_mul(0x2545_f491_4f6c_dd1d));
                let probed = by_probes
                    .probes(hash)
                    .all(|bit| by_probes.words[bit / 64] & (1 << (bit % 64)) != 0);
                assert_eq!(bloom.may_contain(hash), probed, "k {k}, {words} words, {n}");
                if n % 3 != 0 {
                    bloom.insert(hash);
                    for bit in by_probes.probes(hash) {
                        by_probes.words[bit / 64] |= 1 << (bit % 64);
                    }
                    assert_eq!(bloom, by_probes, "k {k}, {words} words, {n}");
                }
            }
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_of_an_index_file_is_rejected() {
        let bytes = encode_index_file(&sample());
        for len in (0..bytes.len()).step_by(7) {
            assert!(decode_index_file(&bytes[..len]).is_err());
        }
        for bit in (0..bytes.len() * 8).step_by(13) {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_index_file(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let mut bloom = Bloom::with_capacity(1000);
        for i in 0..1000u64 {
            bloom.insert(mix64(i));
        }
        assert!((0..1000u64).all(|i| bloom.may_contain(mix64(i))));
        let false_positives = (1000..101_000u64)
            .filter(|i| bloom.may_contain(mix64(*i)))
            .count();
        assert!(false_positives < 3000, "{false_positives} false positives");
    }
}
