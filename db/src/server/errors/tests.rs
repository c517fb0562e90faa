//! One test per row of the error table.

use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::model::{BucketId, CurrentVersion, EventId, PartitionKey, StreamId, StreamVersion};

fn line(err: impl Into<ServerError>) -> String {
    err.into().reply().to_string()
}

fn key(n: u128) -> PartitionKey {
    PartitionKey(Uuid::from_u128(n))
}

#[test]
fn unknown_command_keeps_the_name_as_sent() {
    let err = ServerError::UnknownCommand { name: "sEt".into() };
    assert_eq!(line(err), "ERR unknown command 'sEt'");
}

#[test]
fn wrong_arity_names_the_command() {
    let err = ServerError::WrongArity { command: "eget" };
    assert_eq!(
        line(err),
        "ERR wrong number of arguments for 'eget' command"
    );
}

#[test]
fn unknown_subcommand() {
    let err = ServerError::UnknownSubcommand {
        command: "client",
        subcommand: "KILL".into(),
    };
    assert_eq!(line(err), "ERR unknown subcommand 'KILL' for 'client'");
}

#[test]
fn protocol_errors_close_the_connection() {
    let err = ServerError::from(ProtocolError::Decode(DecodeError::TooDeep { max: 32 }));
    assert!(err.closes_connection());
    assert_eq!(
        line(err),
        "ERR Protocol error: nesting exceeds max_depth (32)"
    );
    let err = ServerError::from(ProtocolError::NotArray {
        kind: FrameKind::BlobString,
    });
    assert_eq!(
        line(err),
        "ERR Protocol error: expected array, got blob string"
    );
    let err = ServerError::from(ProtocolError::BadArgument {
        kind: FrameKind::Map,
    });
    assert_eq!(
        line(err),
        "ERR Protocol error: expected a string argument, got map"
    );
    assert!(!ServerError::SubscriptionNotFound.closes_connection());
}

#[test]
fn argument_errors_are_invalidarg() {
    let cases: Vec<(ArgError, &str)> = vec![
        (
            ArgError::MissingArgument {
                expected: "a value for PAYLOAD",
            },
            "INVALIDARG unexpected end of input: expected a value for PAYLOAD",
        ),
        (
            ArgError::Unexpected {
                found: "FOO".into(),
                expected: "FROM or WINDOW",
            },
            "INVALIDARG unexpected argument 'FOO': expected FROM or WINDOW",
        ),
        (
            ArgError::Duplicate {
                option: "EXPECTED_VERSION",
            },
            "INVALIDARG EXPECTED_VERSION already specified",
        ),
        (
            ArgError::InvalidUuid {
                what: "event id",
                found: "nope".into(),
            },
            "INVALIDARG invalid event id 'nope': expected a UUID",
        ),
        (
            ArgError::InvalidNumber {
                what: "COUNT",
                found: "-1".into(),
            },
            "INVALIDARG invalid COUNT '-1': expected a non-negative integer",
        ),
        (
            ArgError::TooSmall {
                what: "WINDOW",
                min: 1,
                found: 0,
            },
            "INVALIDARG WINDOW must not be less than 1, but got 0",
        ),
        (
            ArgError::InvalidExpectedVersion { found: "-1".into() },
            "INVALIDARG invalid expected version '-1': expected a version number or 'any', 'exists', 'empty'",
        ),
        (
            ArgError::TimestampTooLarge,
            "INVALIDARG invalid timestamp format: expected milliseconds, got nanoseconds",
        ),
        (
            ArgError::StartIsEnd { what: "version" },
            "INVALIDARG start version cannot be '+'",
        ),
        (
            ArgError::EndIsStart { what: "sequence" },
            "INVALIDARG end sequence cannot be '-'",
        ),
        (
            ArgError::InvalidPartition { found: "x".into() },
            "INVALIDARG invalid partition 'x': expected a partition id or a UUID partition key",
        ),
        (
            ArgError::NoSuchPartition {
                partition: 42,
                count: 32,
            },
            "INVALIDARG partition 42 does not exist (there are 32)",
        ),
        (
            ArgError::DuplicateStream { stream: "a".into() },
            "INVALIDARG stream a is listed more than once",
        ),
        (
            ArgError::DuplicatePartition { partition: 3 },
            "INVALIDARG partition 3 is listed more than once",
        ),
        (
            ArgError::InvalidMapEntry {
                found: "a".into(),
                key: "stream",
                position: "version",
            },
            "INVALIDARG invalid FROM MAP entry 'a': expected <stream>=<version>",
        ),
        (
            ArgError::MapNotSubscribed {
                what: "stream",
                found: "b".into(),
            },
            "INVALIDARG FROM MAP names stream b, which is not in the subscription",
        ),
        (
            ArgError::DefaultWithoutMap,
            "INVALIDARG DEFAULT is only valid after FROM MAP",
        ),
        (
            ArgError::PartitionKeyInMultiAppend,
            "INVALIDARG EMAPPEND takes one partition key, before the first stream",
        ),
        (
            ArgError::Input(InvalidInput::StreamIdLength { len: 65 }),
            "INVALIDARG stream id must be between 1 and 64 bytes in length, but got 65",
        ),
    ];
    for (err, expected) in cases {
        assert_eq!(line(err), expected);
    }
}

#[test]
fn hello_errors_match_redis() {
    assert_eq!(
        line(ServerError::UnsupportedProtocol),
        "NOPROTO unsupported protocol version"
    );
    assert_eq!(
        line(ServerError::ProtocolVersionNotInteger),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(
        line(ServerError::HelloSyntax {
            option: "FOO".into()
        }),
        "ERR Syntax error in HELLO option 'FOO'"
    );
    assert_eq!(
        line(ServerError::InvalidClientName),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
}

#[test]
fn strict_versioning_matches_sierradb() {
    let err = ServerError::StrictVersioning {
        expected: ExpectedVersion::Any,
    };
    assert_eq!(
        line(err),
        "INVALIDARG strict versioning mode rejects EXPECTED_VERSION any"
    );
    let err = ServerError::StrictVersioning {
        expected: ExpectedVersion::Exists,
    };
    assert_eq!(
        line(err),
        "INVALIDARG strict versioning mode rejects EXPECTED_VERSION exists"
    );
}

#[test]
fn subscription_errors() {
    assert_eq!(
        line(ServerError::WindowTooLarge {
            window: 200_000,
            max: 100_000
        }),
        "INVALIDARG window 200000 exceeds the maximum of 100000"
    );
    assert_eq!(
        line(ServerError::TooManySubscriptions { max: 64 }),
        "ERR max number of subscriptions per connection reached (64)"
    );
    assert_eq!(
        line(ServerError::SubscriptionNotFound),
        "NOTFOUND subscription not found"
    );
    assert_eq!(
        line(ServerError::AckBeyondDelivered {
            cursor: 9,
            delivered: 5
        }),
        "INVALIDARG cannot acknowledge cursor 9: 5 messages delivered so far"
    );
}

#[test]
fn max_clients() {
    assert_eq!(
        line(ServerError::MaxClients),
        "ERR max number of clients reached"
    );
}

#[test]
fn invalid_append_is_invalidarg() {
    let err = AppendError::Invalid(InvalidInput::TransactionTooLarge { len: 10, max: 5 });
    assert_eq!(
        line(err),
        "INVALIDARG transaction of 10 bytes exceeds the limit of 5 bytes"
    );
}

#[test]
fn wrong_expected_version_matches_sierradb() {
    let err = AppendError::WrongExpectedVersion {
        stream: StreamId::new("orders").unwrap(),
        partition_key: PartitionKey(
            Uuid::parse_str("4a5bf0d6-7d0e-50b2-b05f-ea5a8c8b597f").unwrap(),
        ),
        expected: ExpectedVersion::Exact(5),
        actual: CurrentVersion(None),
    };
    // Byte for byte the reply SierraDB 0.3.1 gives (sierradb-replies.md).
    assert_eq!(
        line(err),
        "WRONGVER current stream version is empty but expected 5 for partition key 4a5bf0d6-7d0e-50b2-b05f-ea5a8c8b597f and stream id orders"
    );
    let err = AppendError::WrongExpectedVersion {
        stream: StreamId::new("user-123").unwrap(),
        partition_key: key(1),
        expected: ExpectedVersion::Empty,
        actual: CurrentVersion(Some(StreamVersion(2))),
    };
    assert_eq!(
        line(err),
        "WRONGVER current stream version is 2 but expected empty for partition key 00000000-0000-0000-0000-000000000001 and stream id user-123"
    );
}

#[test]
fn partition_key_mismatch_matches_sierradb() {
    let err = AppendError::PartitionKeyMismatch {
        stream: StreamId::new("s").unwrap(),
        stored: key(1),
        given: key(2),
    };
    assert_eq!(
        line(err),
        "DBOPFAILED database operation failed: partition key must be the same for all events in a stream: expected 00000000-0000-0000-0000-000000000001, got 00000000-0000-0000-0000-000000000002"
    );
}

#[test]
fn event_id_conflict_is_dbopfailed() {
    let err = AppendError::EventIdConflict {
        event_id: EventId(Uuid::from_u128(7)),
    };
    assert_eq!(
        line(err),
        "DBOPFAILED database operation failed: event id 00000000-0000-0000-0000-000000000007 is already stored with different content"
    );
}

#[test]
fn unavailable_is_tryagain() {
    let err = AppendError::Unavailable(Arc::new(StoreError::Closed));
    assert_eq!(
        line(err),
        "TRYAGAIN append not written, retry later: the store is shut down"
    );
}

#[test]
fn indeterminate_is_unknownoutcome() {
    let err = AppendError::Indeterminate(Arc::new(StoreError::Poisoned {
        bucket: BucketId(1),
        reason: "EIO".into(),
    }));
    assert_eq!(
        line(err),
        "UNKNOWNOUTCOME append outcome unknown, it may or may not be durable: bucket 1 stopped accepting appends after a failed sync (EIO); restart the server to recover it; retry with the same EVENT_ID to find out"
    );
}

#[test]
fn store_faults_on_reads_are_readerr() {
    let err = StoreError::Corrupt {
        path: PathBuf::from("b/0.seg"),
        offset: 40,
        reason: "crc mismatch".into(),
    };
    assert_eq!(
        line(err),
        "READERR read error: corrupt data in b/0.seg at offset 40: crc mismatch"
    );
}

#[test]
fn quote_truncates_and_is_lossy() {
    assert_eq!(quote(b"abc"), "abc");
    assert_eq!(quote(&[b'x'; 500]).len(), QUOTE_MAX_BYTES);
    assert_eq!(quote(&[0xff]), "\u{fffd}");
}
