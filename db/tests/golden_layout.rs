//! Golden snapshot of the on-disk layout of a small fixed workload: file names, sizes, and
//! the bytes of the first frames and an index file. A format change shows here as a diff and
//! must be accepted deliberately (`cargo insta review`), with `docs/format.md` updated.

use std::fmt::Write;
use std::path::Path;

use bytes::Bytes;
use db::StoreConfig;
use db::model::{
    EventId, ExpectedVersion, NewEvent, PartitionKey, StreamId, Transaction, TransactionId,
};
use db::store;
use disk::{Disk, FaultConfig, SimDisk};
use uuid::Uuid;

fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:04x}:", i * 16);
        for b in chunk {
            let _ = write!(out, " {b:02x}");
        }
        out.push('\n');
    }
    out
}

#[test]
fn on_disk_layout_of_a_fixed_workload() {
    let disk = SimDisk::new(0, FaultConfig::default());
    let root = Path::new("/data");
    let config = StoreConfig {
        partition_count: 4,
        bucket_count: 2,
        segment_size_bytes: 1024,
        max_transaction_bytes: 512,
        ..StoreConfig::default()
    };
    let (store, mut writers, _) = store::open(&disk, root, config).unwrap();
    for n in 0..12u128 {
        let stream = StreamId::new(&format!("account-{}", n % 3)).unwrap();
        let key = PartitionKey::for_stream(&stream);
        let partition = store.partition_of(key);
        let bucket = usize::from(store.config().bucket_of(partition.0));
        let txn = Transaction {
            transaction_id: TransactionId(Uuid::from_u128(1000 + n)),
            partition_key: key,
            events: vec![NewEvent {
                event_id: EventId(Uuid::from_u128(n)),
                stream_id: stream,
                event_name: "Deposited".into(),
                expected_version: ExpectedVersion::Any,
                timestamp_ms: 1_700_000_000_000 + n as u64,
                metadata: Bytes::from_static(b"{}"),
                payload: Bytes::from(format!("{{\"amount\":{}}}", n * 10)),
            }],
        };
        writers[bucket].append_batch(vec![txn]).remove(0).unwrap();
    }
    let mut out = String::new();
    for name in disk.list_dir(root).unwrap() {
        let path = root.join(&name);
        match disk.written_contents(&path) {
            Some(bytes) => {
                let _ = writeln!(out, "{name} ({} bytes)", bytes.len());
                if name.ends_with(".layout") {
                    out.push_str(&String::from_utf8(bytes).unwrap());
                }
            }
            None => {
                let _ = writeln!(out, "{name}/");
                for file in disk.list_dir(&path).unwrap() {
                    let bytes = disk.written_contents(&path.join(&file)).unwrap();
                    let _ = writeln!(out, "  {file} ({} bytes)", bytes.len());
                }
            }
        }
    }
    let sealed = ["bucket-000", "bucket-001"]
        .into_iter()
        .find(|b| disk.exists(&root.join(b).join("segment-0000000000.idx")))
        .expect("the workload seals a segment");
    let bucket = root.join(sealed);
    let segment = disk
        .written_contents(&bucket.join("segment-0000000000.log"))
        .unwrap();
    let _ = writeln!(out, "\n{sealed}/segment-0000000000.log, first 160 bytes:");
    out.push_str(&hex(&segment[..160]));
    let index = disk
        .written_contents(&bucket.join("segment-0000000000.idx"))
        .unwrap();
    let _ = writeln!(out, "\n{sealed}/segment-0000000000.idx, first 96 bytes:");
    out.push_str(&hex(&index[..96]));
    insta::assert_snapshot!(out);
}
