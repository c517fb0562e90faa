//! One test per grammar rule: every option, duplicates, bad values, and SierraDB's parser bugs
//! that must not come back.

use super::*;

const CTX: ParseContext = ParseContext {
    partition_count: 32,
};

const KEY: &str = "550e8400-e29b-41d4-a716-446655440000";
const ID: &str = "00000000-0000-4000-8000-000000000002";

fn args(line: &str) -> Vec<Bytes> {
    line.split_whitespace()
        .map(|word| Bytes::copy_from_slice(word.as_bytes()))
        .collect()
}

fn ok(line: &str) -> Command {
    match parse(&args(line), &CTX) {
        Ok(command) => command,
        Err(error) => panic!("{line}: {}", error.reply()),
    }
}

fn err(line: &str) -> String {
    match parse(&args(line), &CTX) {
        Ok(command) => panic!("{line}: parsed as {command:?}"),
        Err(error) => error.reply().to_string(),
    }
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

fn key() -> PartitionKey {
    PartitionKey(Uuid::parse_str(KEY).unwrap())
}

fn event(name: &str, event_name: &str) -> EventSpec {
    EventSpec {
        stream_id: stream(name),
        event_name: event_name.into(),
        event_id: None,
        expected_version: None,
        timestamp_ms: None,
        payload: Bytes::new(),
        metadata: Bytes::new(),
    }
}

fn stream_target(name: &str) -> Target {
    Target::Stream {
        partition_key: PartitionKey::for_stream(&stream(name)),
        stream_id: stream(name),
    }
}

// ---------------------------------------------------------------- names, arity, table

#[test]
fn unknown_command_keeps_the_name_as_sent() {
    assert_eq!(err("sEt foo bar"), "ERR unknown command 'sEt'");
    assert_eq!(err("CONFIG GET save"), "ERR unknown command 'CONFIG'");
}

#[test]
fn command_names_are_case_insensitive() {
    assert_eq!(ok("ping"), Command::Ping(None));
    assert_eq!(ok("PiNg"), Command::Ping(None));
    assert_eq!(ok("eGeT 00000000-0000-0000-0000-000000000001"), {
        Command::Get(EventId(Uuid::from_u128(1)))
    });
}

#[test]
fn wrong_arity_is_reported_per_command() {
    for (line, command) in [
        ("EAPPEND s", "eappend"),
        ("EMAPPEND k s", "emappend"),
        ("EGET", "eget"),
        ("EGET a b", "eget"),
        ("ESCAN s -", "escan"),
        ("ESVER", "esver"),
        ("EPSCAN 1 -", "epscan"),
        ("EPSEQ", "epseq"),
        ("EPSEQ 1 2", "epseq"),
        ("ESUB", "esub"),
        ("EPSUB", "epsub"),
        ("EACK x", "eack"),
        ("EUNSUB", "eunsub"),
        ("PING a b", "ping"),
        ("CLIENT", "client"),
        ("RESET now", "reset"),
    ] {
        assert_eq!(
            err(line),
            format!("ERR wrong number of arguments for '{command}' command"),
            "{line}"
        );
    }
}

#[test]
fn the_command_table_is_lower_case_and_unique() {
    let mut names: Vec<_> = COMMANDS.iter().map(|spec| spec.name).collect();
    assert!(
        names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase()))
    );
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), COMMANDS.len());
}

// ---------------------------------------------------------------- request frames

#[test]
fn request_args_accept_strings_and_integers() {
    let frame = Frame::array(vec![
        Frame::bulk("EACK"),
        Frame::simple(KEY),
        Frame::int(7),
        Frame::BigNumber("8".into()),
        Frame::verbatim(*b"txt", "v"),
        Frame::Attribute {
            attributes: vec![],
            frame: Box::new(Frame::bulk("a")),
        },
    ]);
    let args = request_args(frame).unwrap();
    assert_eq!(
        args,
        vec![
            Bytes::from("EACK"),
            Bytes::from(KEY),
            Bytes::from("7"),
            Bytes::from("8"),
            Bytes::from("v"),
            Bytes::from("a")
        ]
    );
}

#[test]
fn request_args_refuse_non_arrays_and_nested_values() {
    assert_eq!(
        request_args(Frame::bulk("PING")),
        Err(ProtocolError::NotArray {
            kind: net::FrameKind::BlobString
        })
    );
    assert_eq!(
        request_args(Frame::array(vec![
            Frame::bulk("PING"),
            Frame::array(vec![])
        ])),
        Err(ProtocolError::BadArgument {
            kind: net::FrameKind::Array
        })
    );
    assert_eq!(
        request_args(Frame::array(vec![Frame::Null])),
        Err(ProtocolError::BadArgument {
            kind: net::FrameKind::Null
        })
    );
}

// ---------------------------------------------------------------- EAPPEND

#[test]
fn eappend_minimal() {
    assert_eq!(
        ok("EAPPEND user-1 Created"),
        Command::Append(Append {
            partition_key: None,
            event: event("user-1", "Created"),
        })
    );
}

#[test]
fn eappend_every_option_in_any_order_and_case() {
    let command = ok(&format!(
        "EAPPEND s E payload {{}} metadata m timestamp 1700000000000 expected_version 4 partition_key {KEY} event_id {ID}"
    ));
    assert_eq!(
        command,
        Command::Append(Append {
            partition_key: Some(key()),
            event: EventSpec {
                event_id: Some(EventId(Uuid::parse_str(ID).unwrap())),
                expected_version: Some(ExpectedVersion::Exact(4)),
                timestamp_ms: Some(1_700_000_000_000),
                payload: Bytes::from("{}"),
                metadata: Bytes::from("m"),
                ..event("s", "E")
            },
        })
    );
}

#[test]
fn eappend_expected_version_keywords() {
    for (word, expected) in [
        ("empty", ExpectedVersion::Empty),
        ("ANY", ExpectedVersion::Any),
        ("Exists", ExpectedVersion::Exists),
        ("0", ExpectedVersion::Exact(0)),
        ("18446744073709551615", ExpectedVersion::Exact(u64::MAX)),
    ] {
        let Command::Append(append) = ok(&format!("EAPPEND s E EXPECTED_VERSION {word}")) else {
            panic!("not an append");
        };
        assert_eq!(append.event.expected_version, Some(expected));
    }
}

#[test]
fn eappend_refuses_negative_or_non_numeric_versions() {
    for word in ["-1", "abc", "1.5", "+1", "18446744073709551616"] {
        assert_eq!(
            err(&format!("EAPPEND s E EXPECTED_VERSION {word}")),
            format!(
                "INVALIDARG invalid expected version '{word}': expected a version number or 'any', 'exists', 'empty'"
            )
        );
    }
}

#[test]
fn eappend_options_may_be_given_once() {
    for (option, value) in [
        ("EVENT_ID", ID),
        ("PARTITION_KEY", KEY),
        ("EXPECTED_VERSION", "any"),
        ("TIMESTAMP", "1"),
        ("PAYLOAD", "x"),
        ("METADATA", "x"),
    ] {
        assert_eq!(
            err(&format!("EAPPEND s E {option} {value} {option} {value}")),
            format!("INVALIDARG {option} already specified")
        );
    }
    // SierraDB accepted a second EXPECTED_VERSION after `any`; we do not.
    assert_eq!(
        err("EAPPEND s E EXPECTED_VERSION any EXPECTED_VERSION 3"),
        "INVALIDARG EXPECTED_VERSION already specified"
    );
}

#[test]
fn eappend_options_need_values() {
    for option in [
        "EVENT_ID",
        "PARTITION_KEY",
        "EXPECTED_VERSION",
        "TIMESTAMP",
        "PAYLOAD",
        "METADATA",
    ] {
        assert_eq!(
            err(&format!("EAPPEND s E {option}")),
            format!("INVALIDARG unexpected end of input: expected a value for {option}")
        );
    }
}

#[test]
fn eappend_unknown_option() {
    assert_eq!(
        err("EAPPEND s E COLOR red"),
        "INVALIDARG unexpected argument 'COLOR': expected EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD or METADATA"
    );
}

#[test]
fn eappend_refuses_bad_uuids() {
    assert_eq!(
        err("EAPPEND s E EVENT_ID nope"),
        "INVALIDARG invalid event id 'nope': expected a UUID"
    );
    assert_eq!(
        err("EAPPEND s E PARTITION_KEY 1234"),
        "INVALIDARG invalid partition key '1234': expected a UUID"
    );
}

#[test]
fn eappend_timestamps_are_milliseconds() {
    assert_eq!(
        err("EAPPEND s E TIMESTAMP 1700000000000000000"),
        "INVALIDARG invalid timestamp format: expected milliseconds, got nanoseconds"
    );
    assert_eq!(
        err("EAPPEND s E TIMESTAMP -5"),
        "INVALIDARG invalid timestamp '-5': expected a non-negative integer"
    );
    let Command::Append(append) = ok(&format!("EAPPEND s E TIMESTAMP {MAX_TIMESTAMP_MS}")) else {
        panic!("not an append");
    };
    assert_eq!(append.event.timestamp_ms, Some(MAX_TIMESTAMP_MS));
}

#[test]
fn eappend_stream_id_and_event_name_rules() {
    assert_eq!(
        err(&format!("EAPPEND {} E", "x".repeat(65))),
        "INVALIDARG stream id must be between 1 and 64 bytes in length, but got 65"
    );
    assert_eq!(
        err(&format!("EAPPEND s {}", "n".repeat(256))),
        "INVALIDARG event name must be at most 255 bytes, but got 256"
    );
    let binary = vec![
        Bytes::from("EAPPEND"),
        Bytes::from(vec![0xff]),
        Bytes::from("E"),
    ];
    assert_eq!(
        parse(&binary, &CTX).unwrap_err().reply().to_string(),
        "INVALIDARG stream id is not valid UTF-8"
    );
    let nul = vec![
        Bytes::from("EAPPEND"),
        Bytes::from("a\0b"),
        Bytes::from("E"),
    ];
    assert_eq!(
        parse(&nul, &CTX).unwrap_err().reply().to_string(),
        "INVALIDARG stream id cannot contain null bytes"
    );
}

#[test]
fn eappend_payload_is_binary() {
    let request = vec![
        Bytes::from("EAPPEND"),
        Bytes::from("s"),
        Bytes::from("E"),
        Bytes::from("PAYLOAD"),
        Bytes::from(vec![0, 0xff, b'\r', b'\n']),
    ];
    let Command::Append(append) = parse(&request, &CTX).unwrap() else {
        panic!("not an append");
    };
    assert_eq!(&append.event.payload[..], &[0, 0xff, b'\r', b'\n']);
}

// ---------------------------------------------------------------- EMAPPEND

#[test]
fn emappend_events_with_options_and_a_repeated_stream() {
    let command = ok(&format!(
        "EMAPPEND {KEY} stream1 EventA EXPECTED_VERSION empty PAYLOAD a stream2 EventB stream1 EventC EXPECTED_VERSION 0 EVENT_ID {ID}"
    ));
    assert_eq!(
        command,
        Command::MultiAppend(MultiAppend {
            partition_key: key(),
            events: vec![
                EventSpec {
                    expected_version: Some(ExpectedVersion::Empty),
                    payload: Bytes::from("a"),
                    ..event("stream1", "EventA")
                },
                event("stream2", "EventB"),
                EventSpec {
                    expected_version: Some(ExpectedVersion::Exact(0)),
                    event_id: Some(EventId(Uuid::parse_str(ID).unwrap())),
                    ..event("stream1", "EventC")
                },
            ],
        })
    );
}

#[test]
fn emappend_options_are_per_event() {
    assert_eq!(
        err(&format!("EMAPPEND {KEY} s E PAYLOAD a PAYLOAD b")),
        "INVALIDARG PAYLOAD already specified"
    );
    // The same option on two events is fine.
    ok(&format!("EMAPPEND {KEY} s E PAYLOAD a t F PAYLOAD b"));
}

#[test]
fn emappend_refuses_per_event_partition_keys() {
    assert_eq!(
        err(&format!("EMAPPEND {KEY} s E PARTITION_KEY {KEY}")),
        "INVALIDARG EMAPPEND takes one partition key, before the first stream"
    );
}

#[test]
fn emappend_needs_a_name_for_every_event() {
    assert_eq!(
        err(&format!("EMAPPEND {KEY} s E t")),
        "INVALIDARG unexpected end of input: expected an event name"
    );
    assert_eq!(
        err("EMAPPEND not-a-key s E"),
        "INVALIDARG invalid partition key 'not-a-key': expected a UUID"
    );
}

// ---------------------------------------------------------------- EGET

#[test]
fn eget_takes_a_uuid() {
    assert_eq!(
        ok(&format!("EGET {ID}")),
        Command::Get(EventId(Uuid::parse_str(ID).unwrap()))
    );
    assert_eq!(
        err("EGET 12"),
        "INVALIDARG invalid event id '12': expected a UUID"
    );
}

// ---------------------------------------------------------------- ESCAN, ESVER

fn scan(line: &str) -> ScanStream {
    match ok(line) {
        Command::ScanStream(scan) => scan,
        other => panic!("{other:?}"),
    }
}

#[test]
fn escan_ranges() {
    let all = scan("ESCAN s - +");
    assert_eq!(
        (all.start, all.end, all.count, all.reverse),
        (0, None, 100, false)
    );
    let some = scan("ESCAN s 3 9");
    assert_eq!((some.start, some.end), (3, Some(9)));
    assert_eq!(err("ESCAN s + +"), "INVALIDARG start version cannot be '+'");
    assert_eq!(err("ESCAN s - -"), "INVALIDARG end version cannot be '-'");
    assert_eq!(
        err("ESCAN s -1 +"),
        "INVALIDARG invalid version '-1': expected a non-negative integer"
    );
}

#[test]
fn escan_options() {
    let with = scan(&format!("ESCAN s - + count 5 PARTITION_KEY {KEY} rev"));
    assert_eq!(with.count, 5);
    assert_eq!(with.partition_key, Some(key()));
    assert!(with.reverse);
    assert!(scan("ESCAN s - + REVERSE").reverse);
    assert_eq!(scan("ESCAN s - + COUNT 0").count, 0);
    assert_eq!(scan("ESCAN s - + COUNT 99999999").count, MAX_SCAN_COUNT);
    assert_eq!(
        err("ESCAN s - + COUNT 1 COUNT 2"),
        "INVALIDARG COUNT already specified"
    );
    assert_eq!(
        err("ESCAN s - + REV REVERSE"),
        "INVALIDARG REVERSE already specified"
    );
    assert_eq!(
        err("ESCAN s - + COUNT -1"),
        "INVALIDARG invalid COUNT '-1': expected a non-negative integer"
    );
    assert_eq!(
        err("ESCAN s - + LIMIT 1"),
        "INVALIDARG unexpected argument 'LIMIT': expected PARTITION_KEY, COUNT or REVERSE"
    );
}

#[test]
fn esver_with_and_without_partition_key() {
    assert_eq!(
        ok("ESVER s"),
        Command::StreamVersion {
            stream_id: stream("s"),
            partition_key: None
        }
    );
    assert_eq!(
        ok(&format!("ESVER s PARTITION_KEY {KEY}")),
        Command::StreamVersion {
            stream_id: stream("s"),
            partition_key: Some(key())
        }
    );
    assert_eq!(
        err("ESVER s COUNT 1"),
        "INVALIDARG unexpected argument 'COUNT': expected PARTITION_KEY"
    );
}

// ---------------------------------------------------------------- EPSCAN, EPSEQ

#[test]
fn partitions_are_ids_or_keys() {
    assert_eq!(ok("EPSEQ 0"), Command::PartitionSequence(PartitionId(0)));
    assert_eq!(ok("EPSEQ 31"), Command::PartitionSequence(PartitionId(31)));
    assert_eq!(
        ok(&format!("EPSEQ {KEY}")),
        Command::PartitionSequence(key().partition(32))
    );
    assert_eq!(
        err("EPSEQ 32"),
        "INVALIDARG partition 32 does not exist (there are 32)"
    );
    assert_eq!(
        err("EPSEQ 70000"),
        "INVALIDARG partition 70000 does not exist (there are 32)"
    );
    assert_eq!(
        err("EPSEQ -1"),
        "INVALIDARG invalid partition '-1': expected a partition id or a UUID partition key"
    );
}

#[test]
fn epscan_ranges_and_count() {
    assert_eq!(
        ok("EPSCAN 5 10 + COUNT 7"),
        Command::ScanPartition(ScanPartition {
            partition: PartitionId(5),
            start: 10,
            end: None,
            count: 7,
        })
    );
    assert_eq!(
        err("EPSCAN 5 + +"),
        "INVALIDARG start sequence cannot be '+'"
    );
    assert_eq!(err("EPSCAN 5 - -"), "INVALIDARG end sequence cannot be '-'");
    assert_eq!(
        err("EPSCAN 42 100 200 COUNT 50"),
        "INVALIDARG partition 42 does not exist (there are 32)"
    );
    assert_eq!(
        err("EPSCAN 5 - + REV"),
        "INVALIDARG unexpected argument 'REV': expected COUNT"
    );
}

// ---------------------------------------------------------------- ESUB

fn subscribe(line: &str) -> Subscribe {
    match ok(line) {
        Command::Subscribe(subscribe) => subscribe,
        other => panic!("{other:?}"),
    }
}

#[test]
fn esub_from_and_window_end_the_stream_list() {
    // SierraDB read this as five streams from LATEST; it is one stream from version 50.
    assert_eq!(
        subscribe("ESUB user-123 FROM 50 WINDOW 100"),
        Subscribe {
            targets: vec![(stream_target("user-123"), Start::At(50))],
            window: Some(100),
        }
    );
    assert_eq!(
        subscribe("esub user-123 window 7 from 2"),
        Subscribe {
            targets: vec![(stream_target("user-123"), Start::At(2))],
            window: Some(7),
        }
    );
}

#[test]
fn esub_defaults_to_latest_and_no_window() {
    assert_eq!(
        subscribe("ESUB a"),
        Subscribe {
            targets: vec![(stream_target("a"), Start::Latest)],
            window: None,
        }
    );
    assert_eq!(
        subscribe("ESUB a FROM LATEST").targets,
        vec![(stream_target("a"), Start::Latest)]
    );
}

#[test]
fn esub_several_streams_with_partition_keys() {
    let sub = subscribe(&format!("ESUB a PARTITION_KEY {KEY} b c FROM 3"));
    assert_eq!(
        sub.targets,
        vec![
            (
                Target::Stream {
                    partition_key: key(),
                    stream_id: stream("a")
                },
                Start::At(3)
            ),
            (stream_target("b"), Start::At(3)),
            (stream_target("c"), Start::At(3)),
        ]
    );
}

#[test]
fn esub_from_map() {
    let sub = subscribe("ESUB a b c FROM MAP a=10 c=30 WINDOW 5");
    assert_eq!(
        sub.targets,
        vec![
            (stream_target("a"), Start::At(10)),
            // Streams not in the map start at LATEST, as in SierraDB.
            (stream_target("b"), Start::Latest),
            (stream_target("c"), Start::At(30)),
        ]
    );
    assert_eq!(sub.window, Some(5));
    // The version follows the last '=', so stream ids may contain '='.
    assert_eq!(
        subscribe("ESUB k=v FROM MAP k=v=4").targets,
        vec![(stream_target("k=v"), Start::At(4))]
    );
}

#[test]
fn esub_from_map_errors() {
    assert_eq!(
        err("ESUB a FROM MAP b=1"),
        "INVALIDARG FROM MAP names stream b, which is not in the subscription"
    );
    assert_eq!(
        err("ESUB a FROM MAP a"),
        "INVALIDARG invalid FROM MAP entry 'a': expected <stream>=<version>"
    );
    assert_eq!(
        err("ESUB a FROM MAP a=-1"),
        "INVALIDARG invalid FROM MAP entry 'a=-1': expected <stream>=<version>"
    );
    assert_eq!(
        err("ESUB a FROM MAP"),
        "INVALIDARG unexpected end of input: expected FROM MAP entries"
    );
    assert_eq!(
        err("ESUB a FROM MAP a=1 a=2"),
        "INVALIDARG a FROM MAP entry already specified"
    );
    assert_eq!(
        err("ESUB a FROM MAP a=1 DEFAULT 0"),
        "INVALIDARG unexpected argument 'DEFAULT': expected FROM or WINDOW"
    );
}

#[test]
fn esub_option_errors() {
    assert_eq!(
        err("ESUB a WINDOW 0"),
        "INVALIDARG WINDOW must not be less than 1, but got 0"
    );
    assert_eq!(
        err("ESUB a WINDOW 1 WINDOW 2"),
        "INVALIDARG WINDOW already specified"
    );
    assert_eq!(
        err("ESUB a FROM 1 FROM 2"),
        "INVALIDARG FROM already specified"
    );
    assert_eq!(
        err("ESUB a FROM soon"),
        "INVALIDARG invalid version 'soon': expected a non-negative integer"
    );
    assert_eq!(
        err("ESUB a FROM"),
        "INVALIDARG unexpected end of input: expected LATEST, MAP or a position after FROM"
    );
    assert_eq!(
        err("ESUB FROM 5"),
        "INVALIDARG unexpected end of input: expected a stream id"
    );
    assert_eq!(
        err("ESUB a FROM 1 b"),
        "INVALIDARG unexpected argument 'b': expected FROM or WINDOW"
    );
    assert_eq!(
        err("ESUB a b a"),
        "INVALIDARG stream a is listed more than once"
    );
    assert_eq!(
        err("ESUB a PARTITION_KEY"),
        "INVALIDARG unexpected end of input: expected a value for PARTITION_KEY"
    );
}

#[test]
fn esub_same_stream_under_two_keys_is_two_targets() {
    let sub = subscribe(&format!("ESUB a a PARTITION_KEY {KEY}"));
    assert_eq!(sub.targets.len(), 2);
}

// ---------------------------------------------------------------- EPSUB

fn partition_targets(line: &str) -> Vec<(Target, Start)> {
    subscribe(line).targets
}

#[test]
fn epsub_star_is_every_partition() {
    let targets = partition_targets("EPSUB * FROM 0");
    assert_eq!(targets.len(), 32);
    assert_eq!(
        targets[0],
        (Target::Partition(PartitionId(0)), Start::At(0))
    );
    assert_eq!(
        targets[31],
        (Target::Partition(PartitionId(31)), Start::At(0))
    );
}

#[test]
fn epsub_single_list_and_keys() {
    assert_eq!(
        partition_targets("EPSUB 5"),
        vec![(Target::Partition(PartitionId(5)), Start::Latest)]
    );
    let by_key = key().partition(32);
    let other = if by_key.0 == 1 { 2 } else { 1 };
    assert_eq!(
        partition_targets(&format!("EPSUB 3,{other},{KEY} FROM 4 WINDOW 9")),
        vec![
            (Target::Partition(PartitionId(3)), Start::At(4)),
            (Target::Partition(PartitionId(other)), Start::At(4)),
            (Target::Partition(by_key), Start::At(4)),
        ]
    );
}

#[test]
fn epsub_selector_errors() {
    assert_eq!(
        err("EPSUB 1,1"),
        "INVALIDARG partition 1 is listed more than once"
    );
    assert_eq!(
        err("EPSUB 0,99"),
        "INVALIDARG partition 99 does not exist (there are 32)"
    );
    assert_eq!(
        err("EPSUB 0-127"),
        "INVALIDARG invalid partition '0-127': expected a partition id or a UUID partition key"
    );
}

#[test]
fn epsub_from_map_with_and_without_default() {
    assert_eq!(
        partition_targets("EPSUB 1,2,3 FROM MAP 1=100 2=200 DEFAULT 7 WINDOW 500"),
        vec![
            (Target::Partition(PartitionId(1)), Start::At(100)),
            (Target::Partition(PartitionId(2)), Start::At(200)),
            (Target::Partition(PartitionId(3)), Start::At(7)),
        ]
    );
    assert_eq!(
        partition_targets("EPSUB 1,2 FROM MAP 2=5"),
        vec![
            (Target::Partition(PartitionId(1)), Start::Latest),
            (Target::Partition(PartitionId(2)), Start::At(5)),
        ]
    );
}

#[test]
fn epsub_option_errors() {
    assert_eq!(
        err("EPSUB 1 DEFAULT 3"),
        "INVALIDARG DEFAULT is only valid after FROM MAP"
    );
    assert_eq!(
        err("EPSUB 1 FROM MAP 2=5"),
        "INVALIDARG FROM MAP names partition 2, which is not in the subscription"
    );
    assert_eq!(
        err("EPSUB 1 FROM MAP 1=x"),
        "INVALIDARG invalid FROM MAP entry '1=x': expected <partition>=<sequence>"
    );
    assert_eq!(
        err("EPSUB 1 FROM MAP 1=2 DEFAULT"),
        "INVALIDARG unexpected end of input: expected a value for DEFAULT"
    );
    assert_eq!(
        err("EPSUB 1 WINDOW 0"),
        "INVALIDARG WINDOW must not be less than 1, but got 0"
    );
    assert_eq!(
        err("EPSUB 1 FROM -3"),
        "INVALIDARG invalid sequence '-3': expected a non-negative integer"
    );
}

// ---------------------------------------------------------------- EACK, EUNSUB

#[test]
fn eack_and_eunsub() {
    let id = Uuid::parse_str(ID).unwrap();
    assert_eq!(
        ok(&format!("EACK {ID} 12")),
        Command::Ack {
            subscription: id,
            cursor: 12
        }
    );
    assert_eq!(
        ok(&format!("EUNSUB {ID}")),
        Command::Unsubscribe { subscription: id }
    );
    assert_eq!(
        err(&format!("EACK {ID} -1")),
        "INVALIDARG invalid cursor '-1': expected a non-negative integer"
    );
    assert_eq!(
        err("EACK x 1"),
        "INVALIDARG invalid subscription id 'x': expected a UUID"
    );
}

// ---------------------------------------------------------------- connection commands

#[test]
fn hello_forms() {
    assert_eq!(
        ok("HELLO"),
        Command::Hello(Hello {
            protocol: None,
            auth: None,
            set_name: None
        })
    );
    assert_eq!(
        ok("hello 2"),
        Command::Hello(Hello {
            protocol: Some(2),
            auth: None,
            set_name: None
        })
    );
    assert_eq!(
        ok("HELLO 3 AUTH default secret SETNAME app-1"),
        Command::Hello(Hello {
            protocol: Some(3),
            auth: Some((Bytes::from("default"), Bytes::from("secret"))),
            set_name: Some(Bytes::from("app-1")),
        })
    );
    assert_eq!(
        ok("HELLO 3 setname a auth u p"),
        Command::Hello(Hello {
            protocol: Some(3),
            auth: Some((Bytes::from("u"), Bytes::from("p"))),
            set_name: Some(Bytes::from("a")),
        })
    );
}

#[test]
fn hello_errors_in_redis_order() {
    assert_eq!(err("HELLO 4"), "NOPROTO unsupported protocol version");
    assert_eq!(err("HELLO 1"), "NOPROTO unsupported protocol version");
    assert_eq!(
        err("HELLO three"),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(
        err("HELLO 3 AUTH u"),
        "ERR Syntax error in HELLO option 'AUTH'"
    );
    assert_eq!(
        err("HELLO 3 SETNAME"),
        "ERR Syntax error in HELLO option 'SETNAME'"
    );
    // Options are checked before the version is.
    assert_eq!(err("HELLO 4 FOO"), "ERR Syntax error in HELLO option 'FOO'");
    let spaced = vec![
        Bytes::from("HELLO"),
        Bytes::from("3"),
        Bytes::from("SETNAME"),
        Bytes::from("a b"),
    ];
    assert_eq!(
        parse(&spaced, &CTX).unwrap_err().reply().to_string(),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
}

#[test]
fn ping_and_info() {
    assert_eq!(ok("PING hi"), Command::Ping(Some(Bytes::from("hi"))));
    assert_eq!(ok("INFO"), Command::Info(vec![]));
    assert_eq!(
        ok("INFO Server STORAGE"),
        Command::Info(vec!["server".into(), "storage".into()])
    );
}

#[test]
fn client_subcommands() {
    assert_eq!(
        ok("CLIENT SETNAME worker-1"),
        Command::ClientSetName(Bytes::from("worker-1"))
    );
    assert_eq!(ok("client getname"), Command::ClientGetName);
    assert_eq!(ok("CLIENT ID"), Command::ClientId);
    assert_eq!(
        ok("CLIENT SETINFO LIB-NAME redis-py"),
        Command::ClientSetInfo
    );
    assert_eq!(
        err("CLIENT KILL x"),
        "ERR unknown subcommand 'KILL' for 'client'"
    );
    assert_eq!(
        err("CLIENT SETNAME"),
        "ERR wrong number of arguments for 'client|setname' command"
    );
    assert_eq!(
        err("CLIENT ID 1"),
        "ERR wrong number of arguments for 'client|id' command"
    );
}

#[test]
fn command_subcommands() {
    assert_eq!(ok("COMMAND"), Command::CommandList);
    assert_eq!(ok("COMMAND COUNT"), Command::CommandCount);
    assert_eq!(ok("COMMAND DOCS"), Command::CommandDocs);
    assert_eq!(ok("COMMAND DOCS eappend"), Command::CommandDocs);
    assert_eq!(
        err("COMMAND GETKEYS x"),
        "ERR unknown subcommand 'GETKEYS' for 'command'"
    );
    assert_eq!(
        err("COMMAND COUNT 1"),
        "ERR wrong number of arguments for 'command|count' command"
    );
}

#[test]
fn quit_and_reset() {
    assert_eq!(ok("QUIT"), Command::Quit);
    assert_eq!(ok("RESET"), Command::Reset);
}

#[test]
fn long_bad_input_is_quoted_briefly() {
    let long = "x".repeat(10_000);
    let reply = err(&long);
    assert!(reply.len() < 200, "{reply}");
}
