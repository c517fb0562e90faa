//! Frames and records: the bytes of a segment file. Pure code, no I/O.
//!
//! A segment is a sequence of frames. Every frame is
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `len`: byte length of `body` (u32 LE) |
//! | 4 | 4 | `crc`: CRC-32 (IEEE, crc32fast) of `len ‖ kind ‖ body` |
//! | 8 | 1 | `kind`: 1 = segment header, 2 = transaction |
//! | 9 | len | `body` |
//!
//! A whole transaction is one frame, so a torn write can never expose half of it: either
//! the CRC covers every event or the frame is rejected. Zeroed bytes never decode (kind 0 is
//! invalid and the CRC of zeros is not zero).
//!
//! Segment header body (kind 1): `magic "SRDBSEG\0" (8) ‖ format u16 ‖ bucket u16 ‖ segment u32`.
//!
//! Transaction body (kind 2), little-endian:
//!
//! | size | field |
//! |---|---|
//! | 16 | transaction id |
//! | 16 | partition key |
//! | 2 | partition id |
//! | 8 | sequence of the first event (the others follow, +1 each) |
//! | 4 | event count `n` (≥ 1) |
//! | … | `n` events |
//!
//! Each event: `event id (16) ‖ stream version u64 ‖ timestamp ms u64 ‖ stream id len u8 ‖
//! stream id ‖ event name len u8 ‖ event name ‖ metadata len u32 ‖ metadata ‖ payload len u32 ‖
//! payload`.

use bytes::{Buf, BufMut, Bytes};
use uuid::Uuid;

use crate::model::{
    Event, EventId, PartitionId, PartitionKey, PartitionSeq, StreamId, StreamVersion, TransactionId,
};

/// Bytes before a frame's body.
pub const FRAME_HEADER_BYTES: u64 = 9;
pub const KIND_SEGMENT_HEADER: u8 = 1;
pub const KIND_TRANSACTION: u8 = 2;
pub const SEGMENT_MAGIC: [u8; 8] = *b"SRDBSEG\0";
pub const FORMAT_VERSION: u16 = 1;
/// The whole segment header frame's length.
pub const SEGMENT_HEADER_FRAME_BYTES: u64 = FRAME_HEADER_BYTES + 16;

/// Why bytes did not decode as a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes end before the frame does: a torn or short tail.
    #[error("frame truncated: need {needed} bytes, have {available}")]
    Truncated { needed: u64, available: u64 },
    /// The header claims a body longer than any frame may be.
    #[error("frame length {len} exceeds the maximum {max}")]
    TooLong { len: u64, max: u64 },
    #[error("frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    /// The CRC matched but the body is not a valid record: a bug or a collision.
    #[error("malformed {what} record: {reason}")]
    Malformed {
        what: &'static str,
        reason: &'static str,
    },
}

/// A decoded frame: its kind and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub body: &'a [u8],
}

impl Frame<'_> {
    pub fn encoded_len(&self) -> u64 {
        FRAME_HEADER_BYTES + self.body.len() as u64
    }
}

fn frame_crc(len: u32, kind: u8, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&[kind]);
    hasher.update(body);
    hasher.finalize()
}

/// Appends one frame to `out`.
pub fn encode_frame(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).expect("bodies are bounded by the transaction limit");
    out.put_u32_le(len);
    out.put_u32_le(frame_crc(len, kind, body));
    out.put_u8(kind);
    out.extend_from_slice(body);
}

/// Decodes the frame at the start of `bytes`. `max_body` bounds the length a header may
/// claim, so garbage never makes a reader wait for (or allocate) gigabytes.
pub fn decode_frame(bytes: &[u8], max_body: u64) -> Result<Frame<'_>, FrameError> {
    let available = bytes.len() as u64;
    if available < FRAME_HEADER_BYTES {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_BYTES,
            available,
        });
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let stored = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    let kind = bytes[8];
    if u64::from(len) > max_body {
        return Err(FrameError::TooLong {
            len: len.into(),
            max: max_body,
        });
    }
    let needed = FRAME_HEADER_BYTES + u64::from(len);
    if available < needed {
        return Err(FrameError::Truncated { needed, available });
    }
    let body = &bytes[FRAME_HEADER_BYTES as usize..needed as usize];
    let computed = frame_crc(len, kind, body);
    #[cfg(feature = "planted-bugs")]
    let computed = match crate::planted::active(crate::planted::PlantedBug::SkipCrcCheck) {
        true => stored,
        false => computed,
    };
    if computed != stored {
        return Err(FrameError::BadCrc { stored, computed });
    }
    if kind != KIND_SEGMENT_HEADER && kind != KIND_TRANSACTION {
        return Err(FrameError::BadKind(kind));
    }
    Ok(Frame { kind, body })
}

/// The identity of a segment, stored in its first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub bucket: u16,
    pub segment: u32,
}

pub fn encode_segment_header(header: SegmentHeader, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&SEGMENT_MAGIC);
    body.put_u16_le(FORMAT_VERSION);
    body.put_u16_le(header.bucket);
    body.put_u32_le(header.segment);
    encode_frame(KIND_SEGMENT_HEADER, &body, out);
}

pub fn decode_segment_header(frame: &Frame<'_>) -> Result<SegmentHeader, FrameError> {
    let malformed = |reason| FrameError::Malformed {
        what: "segment header",
        reason,
    };
    if frame.kind != KIND_SEGMENT_HEADER {
        return Err(malformed("first frame is not a segment header"));
    }
    let mut body = frame.body;
    if body.len() != 16 || body[..8] != SEGMENT_MAGIC {
        return Err(malformed("bad magic"));
    }
    body.advance(8);
    if body.get_u16_le() != FORMAT_VERSION {
        return Err(malformed("unsupported format version"));
    }
    Ok(SegmentHeader {
        bucket: body.get_u16_le(),
        segment: body.get_u32_le(),
    })
}

/// One event inside a transaction record, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub event_id: EventId,
    pub stream_id: StreamId,
    pub stream_version: StreamVersion,
    pub event_name: String,
    pub timestamp_ms: u64,
    pub metadata: Bytes,
    pub payload: Bytes,
}

/// The stream id a read decoded last. Events of one stream usually follow one another (a
/// stream scan reads nothing else), so the next id is most often the same one, and sharing it
/// saves checking and allocating it per event.
#[derive(Default)]
pub struct LastStream(Option<StreamId>);

impl LastStream {
    /// The stream id stored as `bytes`, `None` if they are not a valid one.
    fn stream_id(&mut self, bytes: &[u8]) -> Option<StreamId> {
        if let Some(last) = &self.0
            && last.as_str().as_bytes() == bytes
        {
            return Some(last.clone());
        }
        let id = StreamId::from_bytes(bytes).ok()?;
        self.0 = Some(id.clone());
        Some(id)
    }
}

/// A transaction as stored: one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionRecord {
    pub transaction_id: TransactionId,
    pub partition_key: PartitionKey,
    pub partition_id: PartitionId,
    pub first_sequence: PartitionSeq,
    pub events: Vec<EventRecord>,
}

pub(crate) const TXN_FIXED_BYTES: usize = 16 + 16 + 2 + 8 + 4;
const EVENT_FIXED_BYTES: usize = 16 + 8 + 8 + 1 + 1 + 4 + 4;

impl TransactionRecord {
    /// The body length this record encodes to.
    pub fn body_len(&self) -> u64 {
        let events: usize = self
            .events
            .iter()
            .map(|e| {
                EVENT_FIXED_BYTES
                    + e.stream_id.as_str().len()
                    + e.event_name.len()
                    + e.metadata.len()
                    + e.payload.len()
            })
            .sum();
        (TXN_FIXED_BYTES + events) as u64
    }

    /// Appends this record as one frame to `out`: the body is written in place after a header
    /// that is filled in once the body's length and CRC are known.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let body_len = self.body_len() as usize;
        out.reserve(FRAME_HEADER_BYTES as usize + body_len);
        out.extend_from_slice(&[0; FRAME_HEADER_BYTES as usize]);
        out.extend_from_slice(self.transaction_id.0.as_bytes());
        out.extend_from_slice(self.partition_key.0.as_bytes());
        out.put_u16_le(self.partition_id.0);
        out.put_u64_le(self.first_sequence.0);
        out.put_u32_le(self.events.len() as u32);
        for e in &self.events {
            out.extend_from_slice(e.event_id.0.as_bytes());
            out.put_u64_le(e.stream_version.0);
            out.put_u64_le(e.timestamp_ms);
            out.put_u8(e.stream_id.as_str().len() as u8);
            out.extend_from_slice(e.stream_id.as_str().as_bytes());
            out.put_u8(e.event_name.len() as u8);
            out.extend_from_slice(e.event_name.as_bytes());
            out.put_u32_le(e.metadata.len() as u32);
            out.extend_from_slice(&e.metadata);
            out.put_u32_le(e.payload.len() as u32);
            out.extend_from_slice(&e.payload);
        }
        let header = start..start + FRAME_HEADER_BYTES as usize;
        let body = &out[header.end..];
        debug_assert_eq!(body.len(), body_len);
        let len = u32::try_from(body.len()).expect("bodies are bounded by the transaction limit");
        let crc = frame_crc(len, KIND_TRANSACTION, body);
        let frame = &mut out[header];
        frame[0..4].copy_from_slice(&len.to_le_bytes());
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        frame[8] = KIND_TRANSACTION;
    }

    /// Decodes a transaction frame's body. Every length is checked against what remains, so
    /// a malformed body is an error, never a panic or an oversized allocation.
    pub fn decode(frame: &Frame<'_>) -> Result<Self, FrameError> {
        Self::decode_with(frame, Bytes::copy_from_slice, &mut LastStream::default())
    }

    /// As [`TransactionRecord::decode`], for a frame read out of `owner`: metadata and
    /// payloads are slices of `owner` rather than copies, and a stream id equal to the one
    /// `last` holds is shared rather than checked and allocated again.
    pub fn decode_shared(
        frame: &Frame<'_>,
        owner: &Bytes,
        last: &mut LastStream,
    ) -> Result<Self, FrameError> {
        Self::decode_with(frame, |bytes| owner.slice_ref(bytes), last)
    }

    fn decode_with(
        frame: &Frame<'_>,
        bytes_of: impl Fn(&[u8]) -> Bytes,
        last: &mut LastStream,
    ) -> Result<Self, FrameError> {
        let malformed = |reason| FrameError::Malformed {
            what: "transaction",
            reason,
        };
        if frame.kind != KIND_TRANSACTION {
            return Err(malformed("not a transaction frame"));
        }
        let mut body = frame.body;
        if body.len() < TXN_FIXED_BYTES {
            return Err(malformed("short header"));
        }
        let transaction_id = TransactionId(take_uuid(&mut body));
        let partition_key = PartitionKey(take_uuid(&mut body));
        let partition_id = PartitionId(body.get_u16_le());
        let first_sequence = PartitionSeq(body.get_u64_le());
        let count = body.get_u32_le() as usize;
        if count == 0 {
            return Err(malformed("no events"));
        }
        if count > body.len() / EVENT_FIXED_BYTES {
            return Err(malformed("event count exceeds the body"));
        }
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            if body.len() < 16 + 8 + 8 + 1 {
                return Err(malformed("short event"));
            }
            let event_id = EventId(take_uuid(&mut body));
            let stream_version = StreamVersion(body.get_u64_le());
            let timestamp_ms = body.get_u64_le();
            let stream_id = take_bytes(&mut body, 1).ok_or(malformed("short stream id"))?;
            let stream_id = last
                .stream_id(stream_id)
                .ok_or(malformed("invalid stream id"))?;
            let event_name = take_bytes(&mut body, 1).ok_or(malformed("short event name"))?;
            let event_name = std::str::from_utf8(event_name)
                .map_err(|_| malformed("event name is not UTF-8"))?
                .to_owned();
            let metadata = take_bytes(&mut body, 4).ok_or(malformed("short metadata"))?;
            let metadata = bytes_of(metadata);
            let payload = take_bytes(&mut body, 4).ok_or(malformed("short payload"))?;
            let payload = bytes_of(payload);
            events.push(EventRecord {
                event_id,
                stream_id,
                stream_version,
                event_name,
                timestamp_ms,
                metadata,
                payload,
            });
        }
        if !body.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        if first_sequence.0.checked_add(count as u64).is_none() {
            return Err(malformed("sequence overflow"));
        }
        Ok(TransactionRecord {
            transaction_id,
            partition_key,
            partition_id,
            first_sequence,
            events,
        })
    }

    /// The full event at `slot`, moving its name and bytes out of the record: cheaper than
    /// [`TransactionRecord::event`], and the record's copy of that event is left empty.
    pub fn take_event(&mut self, slot: usize) -> Event {
        let e = &mut self.events[slot];
        let taken = EventRecord {
            stream_id: e.stream_id.clone(),
            event_name: std::mem::take(&mut e.event_name),
            metadata: std::mem::take(&mut e.metadata),
            payload: std::mem::take(&mut e.payload),
            ..*e
        };
        self.complete(slot, taken)
    }

    /// The full event at `slot`, with the fields the transaction holds once.
    pub fn event(&self, slot: usize) -> Event {
        self.complete(slot, self.events[slot].clone())
    }

    fn complete(&self, slot: usize, e: EventRecord) -> Event {
        Event {
            event_id: e.event_id,
            partition_key: self.partition_key,
            partition_id: self.partition_id,
            transaction_id: self.transaction_id,
            partition_sequence: PartitionSeq(self.first_sequence.0 + slot as u64),
            stream_id: e.stream_id,
            stream_version: e.stream_version,
            event_name: e.event_name,
            timestamp_ms: e.timestamp_ms,
            metadata: e.metadata,
            payload: e.payload,
        }
    }
}

fn take_uuid(body: &mut &[u8]) -> Uuid {
    let (id, rest) = body.split_at(16);
    *body = rest;
    Uuid::from_bytes(id.try_into().unwrap())
}

/// Takes a length-prefixed byte string (`len_bytes` is 1 or 4), or `None` if it overruns.
fn take_bytes<'a>(body: &mut &'a [u8], len_bytes: usize) -> Option<&'a [u8]> {
    if body.len() < len_bytes {
        return None;
    }
    let len = match len_bytes {
        1 => body.get_u8() as usize,
        4 => body.get_u32_le() as usize,
        _ => unreachable!("only 1- and 4-byte lengths are used"),
    };
    if body.len() < len {
        return None;
    }
    let (bytes, rest) = body.split_at(len);
    *body = rest;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(events: usize, payload: usize) -> TransactionRecord {
        TransactionRecord {
            transaction_id: TransactionId(Uuid::from_u128(7)),
            partition_key: PartitionKey(Uuid::from_u128(9)),
            partition_id: PartitionId(3),
            first_sequence: PartitionSeq(41),
            events: (0..events)
                .map(|i| EventRecord {
                    event_id: EventId(Uuid::from_u128(100 + i as u128)),
                    stream_id: StreamId::new(&format!("s-{i}")).unwrap(),
                    stream_version: StreamVersion(i as u64),
                    event_name: "Created".into(),
                    timestamp_ms: 1_700_000_000_000 + i as u64,
                    metadata: Bytes::from_static(b"{}"),
                    payload: Bytes::from(vec![i as u8; payload]),
                })
                .collect(),
        }
    }

    fn arb_record() -> impl Strategy<Value = TransactionRecord> {
        let event = (
            any::<u128>(),
            "[a-z0-9-]{1,64}",
            any::<u64>(),
            "[A-Za-z]{0,20}",
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(
                |(id, stream, version, name, ts, meta, payload)| EventRecord {
                    event_id: EventId(Uuid::from_u128(id)),
                    stream_id: StreamId::new(&stream).unwrap(),
                    stream_version: StreamVersion(version),
                    event_name: name,
                    timestamp_ms: ts,
                    metadata: meta.into(),
                    payload: payload.into(),
                },
            );
        (
            any::<u128>(),
            any::<u128>(),
            any::<u16>(),
            0u64..u64::MAX / 2,
            proptest::collection::vec(event, 1..5),
        )
            .prop_map(|(txn, key, partition, seq, events)| TransactionRecord {
                transaction_id: TransactionId(Uuid::from_u128(txn)),
                partition_key: PartitionKey(Uuid::from_u128(key)),
                partition_id: PartitionId(partition),
                first_sequence: PartitionSeq(seq),
                events,
            })
    }

    fn decode_record(bytes: &[u8]) -> Result<TransactionRecord, FrameError> {
        let frame = decode_frame(bytes, u32::MAX.into())?;
        if frame.encoded_len() != bytes.len() as u64 {
            return Err(FrameError::Malformed {
                what: "test",
                reason: "frame shorter than input",
            });
        }
        TransactionRecord::decode(&frame)
    }

    #[test]
    fn transaction_round_trips() {
        let rec = record(3, 10);
        let mut out = Vec::new();
        rec.encode(&mut out);
        assert_eq!(out.len() as u64, FRAME_HEADER_BYTES + rec.body_len());
        assert_eq!(decode_record(&out).unwrap(), rec);
        let event = rec.event(2);
        assert_eq!(event.partition_sequence, PartitionSeq(43));
        assert_eq!(event.stream_id.as_str(), "s-2");
    }

    #[test]
    fn segment_header_round_trips() {
        let mut out = Vec::new();
        let header = SegmentHeader {
            bucket: 3,
            segment: 17,
        };
        encode_segment_header(header, &mut out);
        assert_eq!(out.len() as u64, SEGMENT_HEADER_FRAME_BYTES);
        let frame = decode_frame(&out, 1024).unwrap();
        assert_eq!(decode_segment_header(&frame).unwrap(), header);
    }

    #[test]
    fn zeroes_never_decode() {
        for n in [0usize, 5, 9, 64, 4096] {
            assert!(decode_frame(&vec![0u8; n], 1 << 20).is_err());
        }
    }

    #[test]
    fn huge_claimed_length_is_rejected_without_waiting() {
        let mut out = Vec::new();
        record(1, 1).encode(&mut out);
        out[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_frame(&out, 1 << 20),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_rejected() {
        let mut out = Vec::new();
        record(2, 7).encode(&mut out);
        for len in 0..out.len() {
            assert!(decode_record(&out[..len]).is_err(), "truncated to {len}");
        }
        for bit in 0..out.len() * 8 {
            let mut flipped = out.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&flipped).is_err(), "bit {bit} flipped");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_transactions_round_trip(rec in arb_record()) {
            let mut out = Vec::new();
            rec.encode(&mut out);
            prop_assert_eq!(decode_record(&out).unwrap(), rec);
        }

        /// Decoding out of a shared buffer, behind other bytes, gives the same record, and taking
        /// each event out gives what `event` copies.
        #[test]
        fn shared_decoding_and_taking_events_agree(rec in arb_record(), skip in 0usize..64) {
            let mut out = vec![0xee; skip];
            rec.encode(&mut out);
            let owner = Bytes::from(out);
            let frame = decode_frame(&owner[skip..], u32::MAX.into()).unwrap();
            let mut last = LastStream::default();
            let mut shared = TransactionRecord::decode_shared(&frame, &owner, &mut last).unwrap();
            prop_assert_eq!(&shared, &rec);
            for slot in 0..rec.events.len() {
                prop_assert_eq!(shared.take_event(slot), rec.event(slot));
            }
        }

        #[test]
        fn arbitrary_truncations_and_flips_are_rejected(rec in arb_record(), cut in any::<prop::sample::Index>(), bit in any::<prop::sample::Index>()) {
            let mut out = Vec::new();
            rec.encode(&mut out);
            let len = cut.index(out.len());
            prop_assert!(decode_record(&out[..len]).is_err());
            let bit = bit.index(out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_record(&out).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(frame) = decode_frame(&bytes, 1 << 16) {
                let _ = TransactionRecord::decode(&frame);
                let _ = decode_segment_header(&frame);
            }
        }
    }
}
