//! Writes seed inputs for the fuzz targets in `fuzz/`: valid segment frames and index files,
//! which random bytes would almost never reach past their CRCs.
//!
//! `cargo run -p sierradb-db --example fuzz_corpus -- fuzz/corpus`

use std::path::PathBuf;

use bytes::Bytes;
use db::model::{
    EventId, PartitionId, PartitionKey, PartitionSeq, StreamId, StreamVersion, TransactionId,
};
use db::store::index::{SealedIndex, SegmentIndex, encode_index_file};
use db::store::record::{EventRecord, SegmentHeader, TransactionRecord, encode_segment_header};
use uuid::Uuid;

fn record(events: usize, seed: u128) -> TransactionRecord {
    TransactionRecord {
        transaction_id: TransactionId(Uuid::from_u128(seed)),
        partition_key: PartitionKey(Uuid::from_u128(seed * 7)),
        partition_id: PartitionId((seed % 32) as u16),
        first_sequence: PartitionSeq(0),
        events: (0..events)
            .map(|i| EventRecord {
                event_id: EventId(Uuid::from_u128(seed * 100 + i as u128)),
                stream_id: StreamId::new(&format!("stream-{seed}-{i}")).unwrap(),
                stream_version: StreamVersion(0),
                event_name: "Happened".into(),
                timestamp_ms: 1_700_000_000_000,
                metadata: Bytes::from_static(b"{\"k\":1}"),
                payload: Bytes::from(vec![b'p'; i * 3]),
            })
            .collect(),
    }
}

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let records = root.join("record_decode");
    let indexes = root.join("index_decode");
    std::fs::create_dir_all(&records)?;
    std::fs::create_dir_all(&indexes)?;
    let mut header = Vec::new();
    encode_segment_header(
        SegmentHeader {
            bucket: 1,
            segment: 2,
        },
        &mut header,
    );
    std::fs::write(records.join("segment-header"), &header)?;
    let mut index = SegmentIndex::default();
    let mut offset = 25;
    for (n, events) in [1usize, 2, 5].into_iter().enumerate() {
        let rec = record(events, n as u128 + 1);
        let mut out = Vec::new();
        rec.encode(&mut out);
        std::fs::write(records.join(format!("transaction-{events}")), &out)?;
        index.insert(offset, &rec);
        offset += out.len() as u64;
    }
    let sealed = SealedIndex::build(3, offset, index);
    std::fs::write(indexes.join("index-3"), encode_index_file(&sealed))?;
    let resp = root.join("resp3_decode");
    std::fs::create_dir_all(&resp)?;
    let samples: [&[u8]; 6] = [
        b"*1\r\n$4\r\nPING\r\n",
        b"*3\r\n$7\r\nEAPPEND\r\n$1\r\ns\r\n$1\r\nE\r\n",
        b"%2\r\n+a\r\n:1\r\n+b\r\n,1.5\r\n",
        b">2\r\n+message\r\n_\r\n",
        b"|1\r\n+k\r\n#t\r\n$3\r\nabc\r\n",
        b"EAPPEND s E PAYLOAD \"x y\"\r\n",
    ];
    for (i, s) in samples.iter().enumerate() {
        std::fs::write(resp.join(format!("sample-{i}")), s)?;
    }
    Ok(())
}
