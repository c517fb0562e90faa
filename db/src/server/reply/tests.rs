//! Reply builders against the bytes SierraDB 0.3.1 sends (`research/sierradb-replies.md`), and
//! their RESP2 renderings.

use bytes::BytesMut;
use net::Protocol;

use super::*;
use crate::model::{
    AppendedEvent, EventId, PartitionId, PartitionKey, PartitionSeq, StreamId, StreamVersion,
    TransactionId,
};

fn encode(frame: &Frame, proto: Protocol) -> String {
    written(proto, |w| w.frame(frame))
}

/// What a reply written in place puts on the wire.
fn written(proto: Protocol, write: impl FnOnce(&mut Writer<'_>)) -> String {
    let mut out = BytesMut::new();
    write(&mut Writer::new(&mut out, proto));
    String::from_utf8(out.to_vec()).unwrap()
}

fn id(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap()
}

fn user_registered() -> Event {
    Event {
        event_id: EventId(id("01a21ac6-648f-78f7-bb95-6feef04f9c90")),
        partition_key: PartitionKey(id("7e124fe8-fe28-5398-bb95-53973100148f")),
        partition_id: PartitionId(21),
        transaction_id: TransactionId(id("f310b899-b1bb-4c03-95a6-1b9832151b17")),
        partition_sequence: PartitionSeq(0),
        stream_id: StreamId::new("user-123").unwrap(),
        stream_version: StreamVersion(0),
        event_name: "UserRegistered".into(),
        timestamp_ms: 1_795_745_539_215,
        metadata: Bytes::new(),
        payload: Bytes::from_static(br#"{"email":"alice@example.com","name":"Alice"}"#),
    }
}

#[test]
fn scan_reply_matches_sierradb_byte_for_byte() {
    let reply = Scan {
        events: vec![user_registered()],
        has_more: false,
    };
    let sierradb = "%2\r\n+has_more\r\n#f\r\n+events\r\n*1\r\n%11\r\n+event_id\r\n+01a21ac6-648f-78f7-bb95-6feef04f9c90\r\n+partition_key\r\n+7e124fe8-fe28-5398-bb95-53973100148f\r\n+partition_id\r\n:21\r\n+transaction_id\r\n+f310b899-b1bb-4c03-95a6-1b9832151b17\r\n+partition_sequence\r\n:0\r\n+stream_version\r\n:0\r\n+timestamp\r\n:1795745539215\r\n+stream_id\r\n$8\r\nuser-123\r\n+event_name\r\n$14\r\nUserRegistered\r\n+metadata\r\n$0\r\n\r\n+payload\r\n$44\r\n{\"email\":\"alice@example.com\",\"name\":\"Alice\"}\r\n";
    assert_eq!(written(Protocol::Resp3, |w| scan(w, &reply)), sierradb);
    assert_eq!(sierradb.len(), 430);
}

#[test]
fn scan_reply_in_resp2_is_flat_arrays() {
    let reply = Scan {
        events: vec![],
        has_more: true,
    };
    assert_eq!(
        written(Protocol::Resp2, |w| scan(w, &reply)),
        "*4\r\n+has_more\r\n:1\r\n+events\r\n*0\r\n"
    );
}

#[test]
fn append_reply_matches_sierradb_byte_for_byte() {
    let outcome = AppendOutcome {
        transaction_id: TransactionId(Uuid::from_u128(1)),
        partition_key: PartitionKey(id("c88a8aa0-0bcf-5aea-beb7-e0656332131f")),
        partition_id: PartitionId(31),
        events: vec![AppendedEvent {
            event_id: EventId(id("01a21ac7-0d7f-dd47-beb7-dfa70055c1a6")),
            stream_id: StreamId::new("raw-s").unwrap(),
            stream_version: StreamVersion(0),
            partition_sequence: PartitionSeq(0),
            timestamp_ms: 1_795_745_582_463,
        }],
        already_stored: false,
    };
    let sierradb = "%6\r\n+event_id\r\n+01a21ac7-0d7f-dd47-beb7-dfa70055c1a6\r\n+partition_key\r\n+c88a8aa0-0bcf-5aea-beb7-e0656332131f\r\n+partition_id\r\n:31\r\n+partition_sequence\r\n:0\r\n+stream_version\r\n:0\r\n+timestamp\r\n:1795745582463\r\n";
    assert_eq!(written(Protocol::Resp3, |w| append(w, &outcome)), sierradb);
    assert_eq!(sierradb.len(), 203);
}

#[test]
fn multi_append_reply_has_sierradb_fields() {
    let appended = |n: u128, stream: &str, seq: u64| AppendedEvent {
        event_id: EventId(Uuid::from_u128(n)),
        stream_id: StreamId::new(stream).unwrap(),
        stream_version: StreamVersion(0),
        partition_sequence: PartitionSeq(seq),
        timestamp_ms: 5,
    };
    let outcome = AppendOutcome {
        transaction_id: TransactionId(Uuid::from_u128(9)),
        partition_key: PartitionKey(Uuid::from_u128(3)),
        partition_id: PartitionId(25),
        events: vec![appended(1, "stream1", 7), appended(2, "line\nbreak", 8)],
        already_stored: false,
    };
    assert_eq!(
        written(Protocol::Resp3, |w| multi_append(w, &outcome)),
        "%5\r\n+partition_key\r\n+00000000-0000-0000-0000-000000000003\r\n+partition_id\r\n:25\r\n\
         +first_partition_sequence\r\n:7\r\n+last_partition_sequence\r\n:8\r\n+events\r\n*2\r\n\
         %4\r\n+event_id\r\n+00000000-0000-0000-0000-000000000001\r\n+stream_id\r\n+stream1\r\n\
         +stream_version\r\n:0\r\n+timestamp\r\n:5\r\n\
         %4\r\n+event_id\r\n+00000000-0000-0000-0000-000000000002\r\n+stream_id\r\n$10\r\nline\nbreak\r\n\
         +stream_version\r\n:0\r\n+timestamp\r\n:5\r\n"
    );
}

#[test]
fn message_push_matches_sierradb_byte_for_byte() {
    let event = Event {
        event_id: EventId(id("01a21ac7-15bb-cac7-bb95-7e394a21e97c")),
        transaction_id: TransactionId(id("57c8176e-5a6a-4988-9885-9bfa81d2a570")),
        partition_sequence: PartitionSeq(5),
        stream_version: StreamVersion(4),
        timestamp_ms: 1_795_745_584_571,
        event_name: "LiveEvent2".into(),
        payload: Bytes::from_static(br#"{"live":2}"#),
        ..user_registered()
    };
    let push = |proto| {
        written(proto, |w| {
            message_push(w, id("5b933ea2-9896-4f02-8a46-09d02cad5ac7"), 0, &event)
        })
    };
    let sierradb = ">4\r\n+message\r\n+5b933ea2-9896-4f02-8a46-09d02cad5ac7\r\n:0\r\n%11\r\n+event_id\r\n+01a21ac7-15bb-cac7-bb95-7e394a21e97c\r\n+partition_key\r\n+7e124fe8-fe28-5398-bb95-53973100148f\r\n+partition_id\r\n:21\r\n+transaction_id\r\n+57c8176e-5a6a-4988-9885-9bfa81d2a570\r\n+partition_sequence\r\n:5\r\n+stream_version\r\n:4\r\n+timestamp\r\n:1795745584571\r\n+stream_id\r\n$8\r\nuser-123\r\n+event_name\r\n$10\r\nLiveEvent2\r\n+metadata\r\n$0\r\n\r\n+payload\r\n$10\r\n{\"live\":2}\r\n";
    assert_eq!(push(Protocol::Resp3), sierradb);
    assert_eq!(sierradb.len(), 417);
    // RESP2 clients get the same push as an array with the map flattened.
    assert!(push(Protocol::Resp2).starts_with("*4\r\n+message\r\n"));
    assert!(push(Protocol::Resp2).contains(":0\r\n*22\r\n+event_id\r\n"));
}

#[test]
fn subscribe_and_unsubscribe_pushes() {
    let sub = id("5b933ea2-9896-4f02-8a46-09d02cad5ac7");
    assert_eq!(
        encode(&subscribe_push(sub, 1), Protocol::Resp3),
        ">3\r\n+subscribe\r\n+5b933ea2-9896-4f02-8a46-09d02cad5ac7\r\n:1\r\n"
    );
    assert_eq!(
        encode(&unsubscribe_push(sub, 0), Protocol::Resp2),
        "*3\r\n+unsubscribe\r\n+5b933ea2-9896-4f02-8a46-09d02cad5ac7\r\n:0\r\n"
    );
    assert_eq!(
        encode(&error_push(sub, "READERR read error: x"), Protocol::Resp3),
        ">3\r\n+error\r\n+5b933ea2-9896-4f02-8a46-09d02cad5ac7\r\n$21\r\nREADERR read error: x\r\n"
    );
}

#[test]
fn positions_are_integers_or_null() {
    assert_eq!(encode(&position(Some(3)), Protocol::Resp3), ":3\r\n");
    assert_eq!(encode(&position(None), Protocol::Resp3), "_\r\n");
    assert_eq!(encode(&position(None), Protocol::Resp2), "$-1\r\n");
    assert_eq!(int(u64::MAX), Frame::int(i64::MAX));
}

#[test]
fn hello_has_redis_and_sierradb_fields_in_order() {
    let info = HelloInfo {
        version: "0.1.0",
        protocol: 3,
        connection_id: 7,
        peer_id: "node-a",
        partition_count: 32,
    };
    assert_eq!(
        encode(&hello(&info), Protocol::Resp3),
        "%9\r\n$6\r\nserver\r\n$8\r\nsierradb\r\n$7\r\nversion\r\n$5\r\n0.1.0\r\n\
         $5\r\nproto\r\n:3\r\n$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
         $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n$7\r\npeer_id\r\n$6\r\nnode-a\r\n\
         $14\r\nnum_partitions\r\n:32\r\n"
    );
    assert!(encode(&hello(&info), Protocol::Resp2).starts_with("*18\r\n$6\r\nserver\r\n"));
}

#[test]
fn command_list_has_an_entry_per_command() {
    let Frame::Array(entries) = command_list() else {
        panic!("not an array");
    };
    assert_eq!(entries.len(), COMMANDS.len());
    assert_eq!(
        encode(&entries[2], Protocol::Resp3),
        "*6\r\n$4\r\neget\r\n:2\r\n~1\r\n+readonly\r\n:0\r\n:0\r\n:0\r\n"
    );
}

fn snapshot() -> InfoSnapshot {
    InfoSnapshot {
        version: "0.1.0".into(),
        peer_id: "p".into(),
        tcp_port: Some(9090),
        uptime_seconds: 12,
        connected_clients: 2,
        max_clients: 10,
        partitions: 32,
        buckets: 4,
        segments: 5,
        appended_events: 100,
        appended_transactions: 90,
        syncs: 80,
        appended_bytes: 4096,
        connection_subscriptions: 1,
        total_subscriptions: 3,
        max_subscriptions_per_connection: 64,
        default_window: 1000,
        max_window: 100_000,
        lag: LagSummary {
            subscriptions: 3,
            max_lag: 40,
            max_undelivered: 25,
            undelivered: 30,
            unacked: 17,
        },
    }
}

fn info_text(sections: &[&str]) -> String {
    let sections: Vec<String> = sections.iter().map(|s| s.to_string()).collect();
    let Frame::BlobString(text) = info(&snapshot(), &sections) else {
        panic!("INFO is a bulk string");
    };
    String::from_utf8(text.to_vec()).unwrap()
}

#[test]
fn info_sections_in_redis_format() {
    assert_eq!(
        info_text(&["storage"]),
        "# Storage\r\npartitions:32\r\nbuckets:4\r\nsegments:5\r\nappended_events:100\r\n\
         appended_transactions:90\r\nappended_bytes:4096\r\nsyncs:80\r\n"
    );
    assert_eq!(
        info_text(&["subscriptions", "clients"]),
        "# Clients\r\nconnected_clients:2\r\nmaxclients:10\r\n\r\n# Subscriptions\r\n\
         connection_subscriptions:1\r\ntotal_subscriptions:3\r\n\
         max_subscriptions_per_connection:64\r\ndefault_window:1000\r\nmax_window:100000\r\n\
         subscription_lag_max_events:40\r\nsubscription_undelivered_max_events:25\r\n\
         subscription_undelivered_events:30\r\n\
         subscription_unacked_events:17\r\n"
    );
    assert_eq!(
        info_text(&["server"]),
        "# Server\r\nserver:sierradb\r\nsierradb_version:0.1.0\r\npeer_id:p\r\nmode:standalone\r\n\
         tcp_port:9090\r\nuptime_in_seconds:12\r\n"
    );
}

#[test]
fn info_defaults_to_every_section_and_skips_unknown_ones() {
    let all = info_text(&[]);
    for (_, title) in INFO_SECTIONS {
        assert!(all.contains(&format!("# {title}\r\n")), "{title}");
    }
    assert_eq!(info_text(&["everything"]), all);
    assert_eq!(info_text(&["cache"]), "");
}
