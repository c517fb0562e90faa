//! Requests as typed commands: a pure parser from a request frame to a [`Command`], with no
//! I/O and no store access (the partition count comes in a [`ParseContext`]).
//!
//! The grammar is SierraDB's (`docs/protocol.md` has it in full), with its parser bugs fixed:
//!
//! - `ESUB` ends its stream list at the keywords `FROM` and `WINDOW`, so
//!   `ESUB s FROM 50 WINDOW 100` is stream `s` from version 50 with window 100, not the five
//!   streams `s`, `FROM`, `50`, `WINDOW` and `100`;
//! - every option may be given at most once (SierraDB lets `EXPECTED_VERSION` repeat after
//!   `any`);
//! - `EPSUB`, `EPSCAN` and `EPSEQ` take a UUID partition key wherever they take a partition id,
//!   and a partition id must exist (SierraDB answers `CLUSTERDOWN` for partition 42 of 32).
//!
//! Command names, subcommands and keywords are case-insensitive. Arguments may arrive as blob,
//! simple or verbatim strings, or as integers (see [`request_args`]).

use bytes::Bytes;
use net::Frame;
use uuid::Uuid;

use super::errors::{ArgError, ProtocolError, ServerError, quote};
use super::subscription::{Start, Target};
use crate::model::{
    EventId, ExpectedVersion, InvalidInput, PartitionId, PartitionKey, StreamId,
    validate_event_name,
};

/// `COUNT` of `ESCAN`/`EPSCAN` when none is given (SierraDB's default).
pub const DEFAULT_SCAN_COUNT: usize = 100;
/// Largest `COUNT` served in one reply. A larger `COUNT` is served as this many events with
/// `has_more` set, so a client pages on as it would anyway; a reply's memory stays bounded.
pub const MAX_SCAN_COUNT: usize = 10_000;
/// Largest timestamp accepted in milliseconds: SierraDB keeps nanoseconds below 2^63, and a
/// larger value is almost always nanoseconds sent by mistake.
pub const MAX_TIMESTAMP_MS: u64 = (i64::MAX as u64) / 1_000_000;

/// One entry of the command table: the name, the arity in Redis's convention (positive: exactly
/// that many arguments including the name; negative: at least that many), and the flags
/// `COMMAND` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: &'static str,
    pub arity: i64,
    pub flags: &'static [&'static str],
}

/// Every command the server knows, for lookup, arity checks and `COMMAND`.
pub const COMMANDS: &[CommandSpec] = &[
    spec("eappend", -3, &["write"]),
    spec("emappend", -4, &["write"]),
    spec("eget", 2, &["readonly"]),
    spec("escan", -4, &["readonly"]),
    spec("esver", -2, &["readonly", "fast"]),
    spec("epscan", -4, &["readonly"]),
    spec("epseq", 2, &["readonly", "fast"]),
    spec("esub", -2, &["pubsub"]),
    spec("epsub", -2, &["pubsub"]),
    spec("eack", 3, &["pubsub", "fast"]),
    spec("eunsub", 2, &["pubsub", "fast"]),
    spec("hello", -1, &["fast"]),
    spec("ping", -1, &["fast"]),
    spec("info", -1, &[]),
    spec("client", -2, &[]),
    spec("command", -1, &[]),
    spec("quit", -1, &["fast"]),
    spec("reset", 1, &["fast"]),
];

const fn spec(name: &'static str, arity: i64, flags: &'static [&'static str]) -> CommandSpec {
    CommandSpec { name, arity, flags }
}

/// What the parser needs to know about the server: partition ids are checked against the
/// partition count, and UUID partition keys are reduced to their partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseContext {
    pub partition_count: u16,
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `EAPPEND`: one event.
    Append(Append),
    /// `EMAPPEND`: several events in one partition, atomically.
    MultiAppend(MultiAppend),
    /// `EGET <event_id>`.
    Get(EventId),
    /// `ESCAN`.
    ScanStream(ScanStream),
    /// `ESVER <stream> [PARTITION_KEY <key>]`.
    StreamVersion {
        stream_id: StreamId,
        partition_key: Option<PartitionKey>,
    },
    /// `EPSCAN`.
    ScanPartition(ScanPartition),
    /// `EPSEQ <partition>`.
    PartitionSequence(PartitionId),
    /// `ESUB` and `EPSUB`.
    Subscribe(Subscribe),
    /// `EACK <subscription> <cursor>`.
    Ack {
        subscription: Uuid,
        cursor: u64,
    },
    /// `EUNSUB <subscription>`.
    Unsubscribe {
        subscription: Uuid,
    },
    Hello(Hello),
    Ping(Option<Bytes>),
    /// `INFO [section ...]`, sections lower-cased; empty means the default set.
    Info(Vec<String>),
    ClientSetName(Bytes),
    ClientGetName,
    ClientId,
    /// `CLIENT SETINFO <attr> <value>`, sent by redis-py and others on connect; accepted and
    /// ignored.
    ClientSetInfo,
    /// `COMMAND` with no subcommand: the command table.
    CommandList,
    CommandCount,
    /// `COMMAND DOCS [...]`: an empty map, which tells redis-cli to use its built-in help.
    CommandDocs,
    Quit,
    Reset,
}

/// One event of `EAPPEND` or `EMAPPEND`, as the client gave it; the server fills in what is
/// missing (id, timestamp, expected version) when it executes the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    pub stream_id: StreamId,
    pub event_name: String,
    pub event_id: Option<EventId>,
    pub expected_version: Option<ExpectedVersion>,
    pub timestamp_ms: Option<u64>,
    pub payload: Bytes,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Append {
    pub partition_key: Option<PartitionKey>,
    pub event: EventSpec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiAppend {
    pub partition_key: PartitionKey,
    pub events: Vec<EventSpec>,
}

/// `ESCAN <stream> <start> <end> [PARTITION_KEY <key>] [COUNT <n>] [REV|REVERSE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanStream {
    pub stream_id: StreamId,
    pub partition_key: Option<PartitionKey>,
    pub start: u64,
    /// Inclusive; `None` for `+`.
    pub end: Option<u64>,
    pub count: usize,
    /// Walk from `end` down to `start` (our extension; SierraDB scans forward only).
    pub reverse: bool,
}

/// `EPSCAN <partition> <start> <end> [COUNT <n>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPartition {
    pub partition: PartitionId,
    pub start: u64,
    pub end: Option<u64>,
    pub count: usize,
}

/// `ESUB` or `EPSUB`: the targets in the order given, each with where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    pub targets: Vec<(Target, Start)>,
    pub window: Option<u64>,
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// 2 or 3; `None` keeps the current protocol.
    pub protocol: Option<u8>,
    /// Given credentials are accepted and ignored: there is no authentication yet.
    pub auth: Option<(Bytes, Bytes)>,
    pub set_name: Option<Bytes>,
}

/// The arguments of a request frame: an array whose items are strings (blob, simple or
/// verbatim) or integers, which are taken as their decimal text. Anything else means the client
/// does not speak the request protocol, a protocol error that closes the connection.
pub fn request_args(frame: Frame) -> Result<Vec<Bytes>, ProtocolError> {
    let items = match frame.without_attributes() {
        Frame::Array(items) => items,
        other => return Err(ProtocolError::NotArray { kind: other.kind() }),
    };
    items
        .into_iter()
        .map(|item| match item.without_attributes() {
            Frame::BlobString(bytes)
            | Frame::SimpleString(bytes)
            | Frame::VerbatimString { data: bytes, .. } => Ok(bytes),
            Frame::Integer(n) => Ok(Bytes::from(n.to_string())),
            Frame::BigNumber(text) => Ok(Bytes::from(text)),
            other => Err(ProtocolError::BadArgument { kind: other.kind() }),
        })
        .collect()
}

/// Parses a request's arguments (name first; the caller skips empty requests).
pub fn parse(args: &[Bytes], ctx: &ParseContext) -> Result<Command, ServerError> {
    let (name, rest) = args.split_first().expect("the caller skips empty requests");
    let Some(spec) = COMMANDS
        .iter()
        .find(|spec| name.eq_ignore_ascii_case(spec.name.as_bytes()))
    else {
        return Err(ServerError::UnknownCommand { name: quote(name) });
    };
    let given = args.len() as i64;
    let arity_ok = if spec.arity >= 0 {
        given == spec.arity
    } else {
        given >= -spec.arity
    };
    if !arity_ok {
        return Err(ServerError::WrongArity { command: spec.name });
    }
    let mut args = Args::new(rest);
    let command = match spec.name {
        "eappend" => Command::Append(parse_append(&mut args)?),
        "emappend" => Command::MultiAppend(parse_multi_append(&mut args)?),
        "eget" => Command::Get(EventId(uuid(args.next_value("an event id")?, "event id")?)),
        "escan" => Command::ScanStream(parse_scan_stream(&mut args)?),
        "esver" => parse_stream_version(&mut args)?,
        "epscan" => Command::ScanPartition(parse_scan_partition(&mut args, ctx)?),
        "epseq" => Command::PartitionSequence(partition(args.next_value("a partition")?, ctx)?),
        "esub" => Command::Subscribe(parse_stream_subscribe(&mut args)?),
        "epsub" => Command::Subscribe(parse_partition_subscribe(&mut args, ctx)?),
        "eack" => Command::Ack {
            subscription: uuid(args.next_value("a subscription id")?, "subscription id")?,
            cursor: number(args.next_value("a cursor")?, "cursor")?,
        },
        "eunsub" => Command::Unsubscribe {
            subscription: uuid(args.next_value("a subscription id")?, "subscription id")?,
        },
        "hello" => Command::Hello(parse_hello(&mut args)?),
        "ping" => match rest {
            [] => Command::Ping(None),
            [message] => Command::Ping(Some(message.clone())),
            _ => return Err(ServerError::WrongArity { command: "ping" }),
        },
        "info" => Command::Info(
            rest.iter()
                .map(|section| quote(section).to_ascii_lowercase())
                .collect(),
        ),
        "client" => parse_client(rest)?,
        "command" => parse_command(rest)?,
        "quit" => Command::Quit,
        "reset" => Command::Reset,
        other => unreachable!("command {other} is in the table but has no parser"),
    };
    // Nothing is left over: fixed-arity commands are held to their count by the table, and the
    // option loops of the others consume every argument or fail.
    debug_assert!(
        args.peek().is_none()
            || matches!(spec.name, "ping" | "info" | "client" | "command" | "quit"),
        "{} left arguments unparsed",
        spec.name
    );
    Ok(command)
}

/// A cursor over a request's arguments.
struct Args<'a> {
    args: &'a [Bytes],
    pos: usize,
}

impl<'a> Args<'a> {
    fn new(args: &'a [Bytes]) -> Self {
        Args { args, pos: 0 }
    }

    fn peek(&self) -> Option<&'a Bytes> {
        self.args.get(self.pos)
    }

    fn next(&mut self) -> Option<&'a Bytes> {
        let arg = self.args.get(self.pos)?;
        self.pos += 1;
        Some(arg)
    }

    /// The next argument, which must be there.
    fn next_value(&mut self, expected: &'static str) -> Result<&'a Bytes, ArgError> {
        self.next().ok_or(ArgError::MissingArgument { expected })
    }

    /// Whether the next argument is one of `keywords` (case-insensitive).
    fn peek_is(&self, keywords: &[&str]) -> bool {
        self.peek()
            .is_some_and(|arg| keywords.iter().any(|kw| is_keyword(arg, kw)))
    }
}

fn is_keyword(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// Sets an option that may be given once.
fn set_once<T>(slot: &mut Option<T>, option: &'static str, value: T) -> Result<(), ArgError> {
    if slot.is_some() {
        return Err(ArgError::Duplicate { option });
    }
    *slot = Some(value);
    Ok(())
}

fn text<'a>(arg: &'a [u8], what: &'static str) -> Result<&'a str, ArgError> {
    std::str::from_utf8(arg).map_err(|_| InvalidInput::NotUtf8 { what }.into())
}

fn uuid(arg: &[u8], what: &'static str) -> Result<Uuid, ArgError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|text| Uuid::parse_str(text).ok())
        .ok_or_else(|| ArgError::InvalidUuid {
            what,
            found: quote(arg),
        })
}

/// A non-negative decimal integer. A sign, spaces or anything but digits are refused, so
/// `-1` is an error and never wraps.
fn number(arg: &[u8], what: &'static str) -> Result<u64, ArgError> {
    let digits = !arg.is_empty() && arg.iter().all(u8::is_ascii_digit);
    digits
        .then(|| std::str::from_utf8(arg).ok()?.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| ArgError::InvalidNumber {
            what,
            found: quote(arg),
        })
}

fn number_at_least(arg: &[u8], what: &'static str, min: u64) -> Result<u64, ArgError> {
    let found = number(arg, what)?;
    if found < min {
        return Err(ArgError::TooSmall { what, min, found });
    }
    Ok(found)
}

fn stream_id(arg: &[u8]) -> Result<StreamId, ArgError> {
    Ok(StreamId::from_bytes(arg)?)
}

fn event_name(arg: &[u8]) -> Result<String, ArgError> {
    let name = text(arg, "event name")?;
    validate_event_name(name)?;
    Ok(name.to_owned())
}

fn partition_key(arg: &[u8]) -> Result<PartitionKey, ArgError> {
    Ok(PartitionKey(uuid(arg, "partition key")?))
}

fn expected_version(arg: &[u8]) -> Result<ExpectedVersion, ArgError> {
    if is_keyword(arg, "any") {
        Ok(ExpectedVersion::Any)
    } else if is_keyword(arg, "exists") {
        Ok(ExpectedVersion::Exists)
    } else if is_keyword(arg, "empty") {
        Ok(ExpectedVersion::Empty)
    } else {
        number(arg, "expected version")
            .map(ExpectedVersion::Exact)
            .map_err(|_| ArgError::InvalidExpectedVersion { found: quote(arg) })
    }
}

fn timestamp(arg: &[u8]) -> Result<u64, ArgError> {
    let ms = number(arg, "timestamp")?;
    if ms > MAX_TIMESTAMP_MS {
        return Err(ArgError::TimestampTooLarge);
    }
    Ok(ms)
}

fn count(arg: &[u8]) -> Result<usize, ArgError> {
    let n = number(arg, "COUNT")?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX).min(MAX_SCAN_COUNT))
}

/// A partition given as a numeric id (which must exist) or as a UUID partition key (reduced to
/// its partition, as appends place it).
fn partition(arg: &[u8], ctx: &ParseContext) -> Result<PartitionId, ArgError> {
    if !arg.is_empty() && arg.iter().all(u8::is_ascii_digit) {
        let id = number(arg, "partition")?;
        return match u16::try_from(id) {
            Ok(id) if id < ctx.partition_count => Ok(PartitionId(id)),
            _ => Err(ArgError::NoSuchPartition {
                partition: id,
                count: ctx.partition_count,
            }),
        };
    }
    match uuid(arg, "partition") {
        Ok(key) => Ok(PartitionKey(key).partition(ctx.partition_count)),
        Err(_) => Err(ArgError::InvalidPartition { found: quote(arg) }),
    }
}

/// The start of an inclusive range: `-` or a number.
fn range_start(arg: &[u8], what: &'static str) -> Result<u64, ArgError> {
    match arg {
        b"-" => Ok(0),
        b"+" => Err(ArgError::StartIsEnd { what }),
        _ => number(arg, what),
    }
}

/// The end of an inclusive range: `+` (no end) or a number.
fn range_end(arg: &[u8], what: &'static str) -> Result<Option<u64>, ArgError> {
    match arg {
        b"+" => Ok(None),
        b"-" => Err(ArgError::EndIsStart { what }),
        _ => number(arg, what).map(Some),
    }
}

/// The options of one event: `EVENT_ID`, `EXPECTED_VERSION`, `TIMESTAMP`, `PAYLOAD`, `METADATA`.
#[derive(Default)]
struct EventOptions {
    event_id: Option<EventId>,
    expected_version: Option<ExpectedVersion>,
    timestamp_ms: Option<u64>,
    payload: Option<Bytes>,
    metadata: Option<Bytes>,
}

const EVENT_OPTIONS: [&str; 5] = [
    "EVENT_ID",
    "EXPECTED_VERSION",
    "TIMESTAMP",
    "PAYLOAD",
    "METADATA",
];

impl EventOptions {
    /// Parses the option `keyword` and its value; `Ok(false)` if `keyword` is not an event
    /// option.
    fn parse(&mut self, keyword: &[u8], args: &mut Args<'_>) -> Result<bool, ArgError> {
        if is_keyword(keyword, "EVENT_ID") {
            let value = args.next_value("a value for EVENT_ID")?;
            set_once(
                &mut self.event_id,
                "EVENT_ID",
                EventId(uuid(value, "event id")?),
            )?;
        } else if is_keyword(keyword, "EXPECTED_VERSION") {
            let value = args.next_value("a value for EXPECTED_VERSION")?;
            set_once(
                &mut self.expected_version,
                "EXPECTED_VERSION",
                expected_version(value)?,
            )?;
        } else if is_keyword(keyword, "TIMESTAMP") {
            let value = args.next_value("a value for TIMESTAMP")?;
            set_once(&mut self.timestamp_ms, "TIMESTAMP", timestamp(value)?)?;
        } else if is_keyword(keyword, "PAYLOAD") {
            let value = args.next_value("a value for PAYLOAD")?;
            set_once(&mut self.payload, "PAYLOAD", value.clone())?;
        } else if is_keyword(keyword, "METADATA") {
            let value = args.next_value("a value for METADATA")?;
            set_once(&mut self.metadata, "METADATA", value.clone())?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn into_spec(self, stream_id: StreamId, event_name: String) -> EventSpec {
        EventSpec {
            stream_id,
            event_name,
            event_id: self.event_id,
            expected_version: self.expected_version,
            timestamp_ms: self.timestamp_ms,
            payload: self.payload.unwrap_or_default(),
            metadata: self.metadata.unwrap_or_default(),
        }
    }
}

/// `EAPPEND <stream> <name> [EVENT_ID id] [PARTITION_KEY key] [EXPECTED_VERSION v]
/// [TIMESTAMP ms] [PAYLOAD bytes] [METADATA bytes]`, options in any order.
fn parse_append(args: &mut Args<'_>) -> Result<Append, ArgError> {
    let stream_id = stream_id(args.next_value("a stream id")?)?;
    let event_name = event_name(args.next_value("an event name")?)?;
    let mut options = EventOptions::default();
    let mut key = None;
    while let Some(keyword) = args.next() {
        if options.parse(keyword, args)? {
            continue;
        }
        if is_keyword(keyword, "PARTITION_KEY") {
            let value = args.next_value("a value for PARTITION_KEY")?;
            set_once(&mut key, "PARTITION_KEY", partition_key(value)?)?;
            continue;
        }
        return Err(ArgError::Unexpected {
            found: quote(keyword),
            expected: "EVENT_ID, PARTITION_KEY, EXPECTED_VERSION, TIMESTAMP, PAYLOAD or METADATA",
        });
    }
    Ok(Append {
        partition_key: key,
        event: options.into_spec(stream_id, event_name),
    })
}

/// `EMAPPEND <partition_key> <stream> <name> [options] [<stream> <name> [options]]...`.
///
/// After an event's name, arguments are taken as its options while they are option keywords;
/// the first that is not starts the next event. So a stream named like an option keyword
/// (`PAYLOAD`) cannot follow another event; it can come first.
fn parse_multi_append(args: &mut Args<'_>) -> Result<MultiAppend, ArgError> {
    let key = partition_key(args.next_value("a partition key")?)?;
    let mut events = Vec::new();
    while args.peek().is_some() {
        if args.peek_is(&["PARTITION_KEY"]) {
            return Err(ArgError::PartitionKeyInMultiAppend);
        }
        let stream_id = stream_id(args.next_value("a stream id")?)?;
        let event_name = event_name(args.next_value("an event name")?)?;
        let mut options = EventOptions::default();
        while args.peek_is(&EVENT_OPTIONS) {
            let keyword = args.next().expect("peeked");
            options.parse(keyword, args)?;
        }
        events.push(options.into_spec(stream_id, event_name));
    }
    Ok(MultiAppend {
        partition_key: key,
        events,
    })
}

fn parse_scan_stream(args: &mut Args<'_>) -> Result<ScanStream, ArgError> {
    let stream_id = stream_id(args.next_value("a stream id")?)?;
    let start = range_start(args.next_value("a start version")?, "version")?;
    let end = range_end(args.next_value("an end version")?, "version")?;
    let mut key = None;
    let mut count_given = None;
    let mut reverse = None;
    while let Some(keyword) = args.next() {
        if is_keyword(keyword, "PARTITION_KEY") {
            let value = args.next_value("a value for PARTITION_KEY")?;
            set_once(&mut key, "PARTITION_KEY", partition_key(value)?)?;
        } else if is_keyword(keyword, "COUNT") {
            let value = args.next_value("a value for COUNT")?;
            set_once(&mut count_given, "COUNT", count(value)?)?;
        } else if is_keyword(keyword, "REV") || is_keyword(keyword, "REVERSE") {
            set_once(&mut reverse, "REVERSE", true)?;
        } else {
            return Err(ArgError::Unexpected {
                found: quote(keyword),
                expected: "PARTITION_KEY, COUNT or REVERSE",
            });
        }
    }
    Ok(ScanStream {
        stream_id,
        partition_key: key,
        start,
        end,
        count: count_given.unwrap_or(DEFAULT_SCAN_COUNT),
        reverse: reverse.unwrap_or(false),
    })
}

fn parse_stream_version(args: &mut Args<'_>) -> Result<Command, ArgError> {
    let stream_id = stream_id(args.next_value("a stream id")?)?;
    let mut key = None;
    while let Some(keyword) = args.next() {
        if is_keyword(keyword, "PARTITION_KEY") {
            let value = args.next_value("a value for PARTITION_KEY")?;
            set_once(&mut key, "PARTITION_KEY", partition_key(value)?)?;
        } else {
            return Err(ArgError::Unexpected {
                found: quote(keyword),
                expected: "PARTITION_KEY",
            });
        }
    }
    Ok(Command::StreamVersion {
        stream_id,
        partition_key: key,
    })
}

fn parse_scan_partition(
    args: &mut Args<'_>,
    ctx: &ParseContext,
) -> Result<ScanPartition, ArgError> {
    let partition = partition(args.next_value("a partition")?, ctx)?;
    let start = range_start(args.next_value("a start sequence")?, "sequence")?;
    let end = range_end(args.next_value("an end sequence")?, "sequence")?;
    let mut count_given = None;
    while let Some(keyword) = args.next() {
        if is_keyword(keyword, "COUNT") {
            let value = args.next_value("a value for COUNT")?;
            set_once(&mut count_given, "COUNT", count(value)?)?;
        } else {
            return Err(ArgError::Unexpected {
                found: quote(keyword),
                expected: "COUNT",
            });
        }
    }
    Ok(ScanPartition {
        partition,
        start,
        end,
        count: count_given.unwrap_or(DEFAULT_SCAN_COUNT),
    })
}

/// Where a subscription's targets start, as `FROM` gave it.
enum FromClause<K> {
    Latest,
    All(u64),
    Map {
        entries: Vec<(K, u64)>,
        default: Option<u64>,
    },
}

/// `ESUB <stream> [PARTITION_KEY <key>] [<stream> [PARTITION_KEY <key>]]... [FROM LATEST |
/// FROM <version> | FROM MAP <stream>=<version>...] [WINDOW <n>]`.
fn parse_stream_subscribe(args: &mut Args<'_>) -> Result<Subscribe, ArgError> {
    let mut streams: Vec<(PartitionKey, StreamId)> = Vec::new();
    // The stream list ends at the first FROM or WINDOW (SierraDB's parser did not stop there).
    while args.peek().is_some() && !args.peek_is(&["FROM", "WINDOW"]) {
        let stream_id = stream_id(args.next().expect("peeked"))?;
        let key = if args.peek_is(&["PARTITION_KEY"]) {
            args.next();
            partition_key(args.next_value("a value for PARTITION_KEY")?)?
        } else {
            PartitionKey::for_stream(&stream_id)
        };
        if streams.contains(&(key, stream_id.clone())) {
            return Err(ArgError::DuplicateStream {
                stream: stream_id.to_string(),
            });
        }
        streams.push((key, stream_id));
    }
    if streams.is_empty() {
        return Err(ArgError::MissingArgument {
            expected: "a stream id",
        });
    }
    let (from, window) = parse_subscribe_options(args, "version", |entry| {
        let (stream, version) = entry.rsplit_once('=')?;
        Some((StreamId::new(stream).ok()?, version.parse().ok()?))
    })?;
    let targets = streams
        .into_iter()
        .map(|(partition_key, stream_id)| {
            let start = match &from {
                FromClause::Latest => Start::Latest,
                FromClause::All(version) => Start::At(*version),
                FromClause::Map { entries, .. } => entries
                    .iter()
                    .find(|(stream, _)| *stream == stream_id)
                    .map_or(Start::Latest, |(_, version)| Start::At(*version)),
            };
            let target = Target::Stream {
                partition_key,
                stream_id,
            };
            (target, start)
        })
        .collect::<Vec<_>>();
    if let FromClause::Map { entries, .. } = &from {
        check_map_subscribed(entries, "stream", |stream| {
            targets
                .iter()
                .any(|(target, _)| matches!(target, Target::Stream { stream_id, .. } if stream_id == stream))
        })?;
    }
    Ok(Subscribe { targets, window })
}

/// `EPSUB <* | partition | p1,p2,...> [FROM LATEST | FROM <sequence> | FROM MAP
/// <partition>=<sequence>... [DEFAULT <sequence>]] [WINDOW <n>]`; a partition is an id or a
/// UUID partition key.
fn parse_partition_subscribe(
    args: &mut Args<'_>,
    ctx: &ParseContext,
) -> Result<Subscribe, ArgError> {
    let selector = args.next_value("*, a partition or a comma-separated list of partitions")?;
    let partitions: Vec<PartitionId> = if selector.as_ref() == b"*" {
        (0..ctx.partition_count).map(PartitionId).collect()
    } else {
        let mut list = Vec::new();
        for part in selector.split(|&b| b == b',') {
            let partition = partition(part.trim_ascii(), ctx)?;
            if list.contains(&partition) {
                return Err(ArgError::DuplicatePartition {
                    partition: partition.0,
                });
            }
            list.push(partition);
        }
        list
    };
    let (from, window) = parse_subscribe_options(args, "sequence", |entry| {
        let (part, sequence) = entry.split_once('=')?;
        Some((
            partition(part.trim().as_bytes(), ctx).ok()?,
            sequence.parse().ok()?,
        ))
    })?;
    if let FromClause::Map { entries, .. } = &from {
        check_map_subscribed(entries, "partition", |p| partitions.contains(p))?;
    }
    let targets = partitions
        .into_iter()
        .map(|partition| {
            let start = match &from {
                FromClause::Latest => Start::Latest,
                FromClause::All(sequence) => Start::At(*sequence),
                FromClause::Map { entries, default } => entries
                    .iter()
                    .find(|(p, _)| *p == partition)
                    .map(|(_, sequence)| *sequence)
                    .or(*default)
                    .map_or(Start::Latest, Start::At),
            };
            (Target::Partition(partition), start)
        })
        .collect();
    Ok(Subscribe { targets, window })
}

fn check_map_subscribed<K: std::fmt::Display>(
    entries: &[(K, u64)],
    what: &'static str,
    subscribed: impl Fn(&K) -> bool,
) -> Result<(), ArgError> {
    match entries.iter().find(|(key, _)| !subscribed(key)) {
        Some((key, _)) => Err(ArgError::MapNotSubscribed {
            what,
            found: key.to_string(),
        }),
        None => Ok(()),
    }
}

/// `FROM ...` and `WINDOW <n>`, in either order, each at most once. `entry` parses one
/// `FROM MAP` entry; `DEFAULT` is accepted after `FROM MAP` of partitions only.
fn parse_subscribe_options<K: PartialEq>(
    args: &mut Args<'_>,
    position: &'static str,
    entry: impl Fn(&str) -> Option<(K, u64)>,
) -> Result<(FromClause<K>, Option<u64>), ArgError> {
    let key_name = if position == "version" {
        "stream"
    } else {
        "partition"
    };
    let mut from = None;
    let mut window = None;
    while let Some(keyword) = args.next() {
        if is_keyword(keyword, "WINDOW") {
            let value = args.next_value("a value for WINDOW")?;
            set_once(&mut window, "WINDOW", number_at_least(value, "WINDOW", 1)?)?;
        } else if is_keyword(keyword, "FROM") {
            if from.is_some() {
                return Err(ArgError::Duplicate { option: "FROM" });
            }
            let value = args.next_value("LATEST, MAP or a position after FROM")?;
            from = Some(if is_keyword(value, "LATEST") {
                FromClause::Latest
            } else if is_keyword(value, "MAP") {
                let mut entries: Vec<(K, u64)> = Vec::new();
                while args.peek().is_some() && !args.peek_is(&["WINDOW", "DEFAULT"]) {
                    let raw = args.next().expect("peeked");
                    let parsed = std::str::from_utf8(raw).ok().and_then(&entry);
                    let Some((key, at)) = parsed else {
                        return Err(ArgError::InvalidMapEntry {
                            found: quote(raw),
                            key: key_name,
                            position,
                        });
                    };
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(ArgError::Duplicate {
                            option: "a FROM MAP entry",
                        });
                    }
                    entries.push((key, at));
                }
                if entries.is_empty() {
                    return Err(ArgError::MissingArgument {
                        expected: "FROM MAP entries",
                    });
                }
                let mut default = None;
                if position == "sequence" && args.peek_is(&["DEFAULT"]) {
                    args.next();
                    let value = args.next_value("a value for DEFAULT")?;
                    default = Some(number(value, "DEFAULT")?);
                }
                FromClause::Map { entries, default }
            } else {
                FromClause::All(number(value, position)?)
            });
        } else if is_keyword(keyword, "DEFAULT") && position == "sequence" {
            return Err(ArgError::DefaultWithoutMap);
        } else {
            return Err(ArgError::Unexpected {
                found: quote(keyword),
                expected: "FROM or WINDOW",
            });
        }
    }
    Ok((from.unwrap_or(FromClause::Latest), window))
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, checked in Redis's order: the version
/// must be an integer, then the options must parse, then the version must be supported.
fn parse_hello(args: &mut Args<'_>) -> Result<Hello, ServerError> {
    let Some(version) = args.next() else {
        return Ok(Hello {
            protocol: None,
            auth: None,
            set_name: None,
        });
    };
    let version = std::str::from_utf8(version)
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or(ServerError::ProtocolVersionNotInteger)?;
    let mut auth = None;
    let mut set_name = None;
    while let Some(option) = args.next() {
        let syntax = || ServerError::HelloSyntax {
            option: quote(option),
        };
        if is_keyword(option, "AUTH") {
            let (Some(user), Some(pass)) = (args.next(), args.next()) else {
                return Err(syntax());
            };
            auth = Some((user.clone(), pass.clone()));
        } else if is_keyword(option, "SETNAME") {
            let name = args.next().ok_or_else(syntax)?;
            check_client_name(name)?;
            set_name = Some(name.clone());
        } else {
            return Err(syntax());
        }
    }
    let protocol = match version {
        2 => 2,
        3 => 3,
        _ => return Err(ServerError::UnsupportedProtocol),
    };
    Ok(Hello {
        protocol: Some(protocol),
        auth,
        set_name,
    })
}

/// Redis's rule: a client name is printable ASCII without spaces (empty clears the name).
fn check_client_name(name: &[u8]) -> Result<(), ServerError> {
    if name.iter().all(|b| (b'!'..=b'~').contains(b)) {
        Ok(())
    } else {
        Err(ServerError::InvalidClientName)
    }
}

fn parse_client(rest: &[Bytes]) -> Result<Command, ServerError> {
    let (sub, args) = rest.split_first().expect("arity checked");
    let (command, expected_args, name) = if is_keyword(sub, "SETNAME") {
        (None, 1, "client|setname")
    } else if is_keyword(sub, "GETNAME") {
        (Some(Command::ClientGetName), 0, "client|getname")
    } else if is_keyword(sub, "ID") {
        (Some(Command::ClientId), 0, "client|id")
    } else if is_keyword(sub, "SETINFO") {
        (Some(Command::ClientSetInfo), 2, "client|setinfo")
    } else {
        return Err(ServerError::UnknownSubcommand {
            command: "client",
            subcommand: quote(sub),
        });
    };
    if args.len() != expected_args {
        return Err(ServerError::WrongArity { command: name });
    }
    match command {
        Some(command) => Ok(command),
        None => {
            check_client_name(&args[0])?;
            Ok(Command::ClientSetName(args[0].clone()))
        }
    }
}

fn parse_command(rest: &[Bytes]) -> Result<Command, ServerError> {
    let Some((sub, args)) = rest.split_first() else {
        return Ok(Command::CommandList);
    };
    if is_keyword(sub, "COUNT") {
        if !args.is_empty() {
            return Err(ServerError::WrongArity {
                command: "command|count",
            });
        }
        Ok(Command::CommandCount)
    } else if is_keyword(sub, "DOCS") {
        Ok(Command::CommandDocs)
    } else {
        Err(ServerError::UnknownSubcommand {
            command: "command",
            subcommand: quote(sub),
        })
    }
}

#[cfg(test)]
mod tests;
