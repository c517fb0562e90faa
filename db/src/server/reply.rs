//! Replies: model values to [`Frame`]s. Pure; the connection encodes them for the protocol the
//! client chose (RESP3 maps become flat arrays for RESP2 clients, pushes become arrays).
//!
//! Field names and their order are SierraDB's, so its clients parse our replies unchanged. UUIDs
//! are simple strings, numbers integers, stream ids in event maps and all byte payloads blob
//! strings, exactly as `research/sierradb-replies.md` records them.

use std::fmt::Write as _;

use bytes::Bytes;
use net::{Frame, Writer, simple_line};
use uuid::Uuid;

use super::command::COMMANDS;
use crate::metrics::LagSummary;
use crate::model::{AppendOutcome, Event};
use crate::store::Scan;

fn key(name: &'static str) -> Frame {
    Frame::SimpleString(Bytes::from_static(name.as_bytes()))
}

fn blob_key(name: &'static str) -> Frame {
    Frame::BlobString(Bytes::from_static(name.as_bytes()))
}

/// A UUID as SierraDB sends it: a simple string, hyphenated, lower case.
pub fn uuid(id: Uuid) -> Frame {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    Frame::SimpleString(Bytes::copy_from_slice(
        id.hyphenated().encode_lower(&mut text).as_bytes(),
    ))
}

/// An unsigned count or position as a RESP integer (they never reach 2^63 in practice; if one
/// did, it would saturate rather than turn negative).
fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count or position as a frame (see [`saturating`]).
pub fn int(n: u64) -> Frame {
    Frame::int(saturating(n))
}

/// A UUID written in place, as [`uuid`] makes it.
fn put_uuid(w: &mut Writer<'_>, id: Uuid) {
    w.uuid(id.into_bytes());
}

/// A count or position written in place, as [`int`] makes it.
fn put_int(w: &mut Writer<'_>, n: u64) {
    w.int(saturating(n));
}

/// Text that SierraDB sends as a simple string, as a blob string when it holds CR or LF, which
/// a simple string cannot carry.
fn put_line_safe(w: &mut Writer<'_>, text: &str) {
    if text.contains(['\r', '\n']) {
        w.blob(text.as_bytes());
    } else {
        w.simple(text.as_bytes());
    }
}

// Replies that carry events are written in place rather than built as frames: an `ESCAN` of
// 100 events would otherwise be some 2,300 frames and as many allocations.

/// The event map, fields in SierraDB's fixed order.
pub fn event(w: &mut Writer<'_>, event: &Event) {
    w.map(11);
    w.line(simple_line!("event_id"));
    put_uuid(w, event.event_id.0);
    w.line(simple_line!("partition_key"));
    put_uuid(w, event.partition_key.0);
    w.line(simple_line!("partition_id"));
    w.int(event.partition_id.0.into());
    w.line(simple_line!("transaction_id"));
    put_uuid(w, event.transaction_id.0);
    w.line(simple_line!("partition_sequence"));
    put_int(w, event.partition_sequence.0);
    w.line(simple_line!("stream_version"));
    put_int(w, event.stream_version.0);
    w.line(simple_line!("timestamp"));
    put_int(w, event.timestamp_ms);
    w.line(simple_line!("stream_id"));
    w.blob(event.stream_id.as_str().as_bytes());
    w.line(simple_line!("event_name"));
    w.blob(event.event_name.as_bytes());
    w.line(simple_line!("metadata"));
    w.blob(&event.metadata);
    w.line(simple_line!("payload"));
    w.blob(&event.payload);
}

/// `EGET`: the event map, or null when no event has the id.
pub fn found_event(w: &mut Writer<'_>, found: Option<&Event>) {
    match found {
        Some(found) => event(w, found),
        None => w.null(),
    }
}

/// `EAPPEND`: where the one event landed.
pub fn append(w: &mut Writer<'_>, outcome: &AppendOutcome) {
    let appended = &outcome.events[0];
    w.map(6);
    w.line(simple_line!("event_id"));
    put_uuid(w, appended.event_id.0);
    w.line(simple_line!("partition_key"));
    put_uuid(w, outcome.partition_key.0);
    w.line(simple_line!("partition_id"));
    w.int(outcome.partition_id.0.into());
    w.line(simple_line!("partition_sequence"));
    put_int(w, appended.partition_sequence.0);
    w.line(simple_line!("stream_version"));
    put_int(w, appended.stream_version.0);
    w.line(simple_line!("timestamp"));
    put_int(w, appended.timestamp_ms);
}

/// `EMAPPEND`: the partition, the sequence range, and each event.
pub fn multi_append(w: &mut Writer<'_>, outcome: &AppendOutcome) {
    w.map(5);
    w.line(simple_line!("partition_key"));
    put_uuid(w, outcome.partition_key.0);
    w.line(simple_line!("partition_id"));
    w.int(outcome.partition_id.0.into());
    w.line(simple_line!("first_partition_sequence"));
    put_int(w, outcome.first_sequence().0);
    w.line(simple_line!("last_partition_sequence"));
    put_int(w, outcome.last_sequence().0);
    w.line(simple_line!("events"));
    w.array(outcome.events.len());
    for appended in &outcome.events {
        w.map(4);
        w.line(simple_line!("event_id"));
        put_uuid(w, appended.event_id.0);
        w.line(simple_line!("stream_id"));
        put_line_safe(w, appended.stream_id.as_str());
        w.line(simple_line!("stream_version"));
        put_int(w, appended.stream_version.0);
        w.line(simple_line!("timestamp"));
        put_int(w, appended.timestamp_ms);
    }
}

/// `ESCAN`, `EPSCAN`: `{has_more, events}`.
pub fn scan(w: &mut Writer<'_>, scan: &Scan) {
    w.map(2);
    w.line(simple_line!("has_more"));
    w.boolean(scan.has_more);
    w.line(simple_line!("events"));
    w.array(scan.events.len());
    for e in &scan.events {
        event(w, e);
    }
}

/// An optional position (`ESVER`, `EPSEQ`): an integer or null.
pub fn position(position: Option<u64>) -> Frame {
    position.map_or(Frame::Null, int)
}

/// What `HELLO` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloInfo<'a> {
    pub version: &'a str,
    pub protocol: u8,
    pub connection_id: u64,
    pub peer_id: &'a str,
    pub partition_count: u16,
}

/// `HELLO`: Redis's fields (so Redis clients accept the handshake) then SierraDB's, with blob
/// string keys as both send them.
pub fn hello(info: &HelloInfo<'_>) -> Frame {
    let text = |s: &str| Frame::bulk(Bytes::copy_from_slice(s.as_bytes()));
    Frame::map(vec![
        (blob_key("server"), text("sierradb")),
        (blob_key("version"), text(info.version)),
        (blob_key("proto"), Frame::int(info.protocol.into())),
        (blob_key("id"), int(info.connection_id)),
        (blob_key("mode"), text("standalone")),
        (blob_key("role"), text("master")),
        (blob_key("modules"), Frame::array(Vec::new())),
        (blob_key("peer_id"), text(info.peer_id)),
        (
            blob_key("num_partitions"),
            Frame::int(info.partition_count.into()),
        ),
    ])
}

/// `COMMAND`: one entry per command in Redis's first six fields (name, arity, flags, first
/// key, last key, step). Keys are reported as none: there is no cluster slot routing to help.
pub fn command_list() -> Frame {
    Frame::array(
        COMMANDS
            .iter()
            .map(|spec| {
                Frame::array(vec![
                    Frame::bulk(Bytes::from_static(spec.name.as_bytes())),
                    Frame::int(spec.arity),
                    Frame::set(
                        spec.flags
                            .iter()
                            .map(|flag| Frame::SimpleString(Bytes::from_static(flag.as_bytes())))
                            .collect(),
                    ),
                    Frame::int(0),
                    Frame::int(0),
                    Frame::int(0),
                ])
            })
            .collect(),
    )
}

/// `["subscribe", <id>, <subscriptions on this connection>]`.
pub fn subscribe_push(id: Uuid, count: usize) -> Frame {
    Frame::push(vec![key("subscribe"), uuid(id), int(count as u64)])
}

/// `["message", <id>, <cursor>, <event map>]`.
pub fn message_push(w: &mut Writer<'_>, id: Uuid, cursor: u64, delivered: &Event) {
    w.push(4);
    w.line(simple_line!("message"));
    put_uuid(w, id);
    put_int(w, cursor);
    event(w, delivered);
}

/// `["unsubscribe", <id>, <subscriptions left on this connection>]`.
pub fn unsubscribe_push(id: Uuid, remaining: usize) -> Frame {
    Frame::push(vec![key("unsubscribe"), uuid(id), int(remaining as u64)])
}

/// `["error", <id>, <error reply text>]`: a subscription stopped on a server-side error. An
/// `unsubscribe` push follows.
pub fn error_push(id: Uuid, error: &str) -> Frame {
    Frame::push(vec![
        key("error"),
        uuid(id),
        Frame::bulk(Bytes::copy_from_slice(error.as_bytes())),
    ])
}

/// The sections `INFO` knows, with their titles, in the order it prints them.
pub const INFO_SECTIONS: [(&str, &str); 5] = [
    ("server", "Server"),
    ("clients", "Clients"),
    ("storage", "Storage"),
    ("subscriptions", "Subscriptions"),
    ("cluster", "Cluster"),
];

/// The numbers `INFO` reports, gathered by the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfoSnapshot {
    pub version: String,
    pub peer_id: String,
    pub tcp_port: Option<u16>,
    pub uptime_seconds: u64,
    pub connected_clients: usize,
    pub max_clients: usize,
    pub partitions: u16,
    pub buckets: u16,
    pub segments: usize,
    pub appended_events: u64,
    pub appended_transactions: u64,
    pub syncs: u64,
    pub appended_bytes: u64,
    pub connection_subscriptions: usize,
    pub total_subscriptions: usize,
    pub max_subscriptions_per_connection: usize,
    pub default_window: u32,
    pub max_window: u32,
    /// Lag over the server's live subscriptions.
    pub lag: LagSummary,
}

/// Whether `INFO` with these sections reports `section`.
pub fn info_includes(requested: &[String], section: &str) -> bool {
    requested.is_empty()
        || requested
            .iter()
            .any(|s| s == section || matches!(s.as_str(), "all" | "everything" | "default"))
}

/// `INFO [section ...]`: Redis's text format (`# Section` headers, `field:value` lines, a blank
/// line between sections) in a bulk string. No section or `all`/`everything`/`default` means
/// every section; unknown sections are skipped, as Redis skips them.
pub fn info(snapshot: &InfoSnapshot, requested: &[String]) -> Frame {
    let mut out = String::new();
    for (section, title) in INFO_SECTIONS {
        if !info_includes(requested, section) {
            continue;
        }
        let fields: Vec<(&str, String)> = match section {
            "server" => vec![
                ("server", "sierradb".into()),
                ("sierradb_version", snapshot.version.clone()),
                ("peer_id", snapshot.peer_id.clone()),
                ("mode", "standalone".into()),
                (
                    "tcp_port",
                    snapshot.tcp_port.map(|p| p.to_string()).unwrap_or_default(),
                ),
                ("uptime_in_seconds", snapshot.uptime_seconds.to_string()),
            ],
            "clients" => vec![
                ("connected_clients", snapshot.connected_clients.to_string()),
                ("maxclients", snapshot.max_clients.to_string()),
            ],
            "storage" => vec![
                ("partitions", snapshot.partitions.to_string()),
                ("buckets", snapshot.buckets.to_string()),
                ("segments", snapshot.segments.to_string()),
                ("appended_events", snapshot.appended_events.to_string()),
                (
                    "appended_transactions",
                    snapshot.appended_transactions.to_string(),
                ),
                ("appended_bytes", snapshot.appended_bytes.to_string()),
                ("syncs", snapshot.syncs.to_string()),
            ],
            "subscriptions" => vec![
                (
                    "connection_subscriptions",
                    snapshot.connection_subscriptions.to_string(),
                ),
                (
                    "total_subscriptions",
                    snapshot.total_subscriptions.to_string(),
                ),
                (
                    "max_subscriptions_per_connection",
                    snapshot.max_subscriptions_per_connection.to_string(),
                ),
                ("default_window", snapshot.default_window.to_string()),
                ("max_window", snapshot.max_window.to_string()),
                (
                    "subscription_lag_max_events",
                    snapshot.lag.max_lag.to_string(),
                ),
                (
                    "subscription_undelivered_max_events",
                    snapshot.lag.max_undelivered.to_string(),
                ),
                (
                    "subscription_undelivered_events",
                    snapshot.lag.undelivered.to_string(),
                ),
                (
                    "subscription_unacked_events",
                    snapshot.lag.unacked.to_string(),
                ),
            ],
            // A single node until replication lands: every bucket is local and led here.
            "cluster" => vec![
                ("cluster_enabled", "0".into()),
                ("nodes", "1".into()),
                ("replication_factor", "1".into()),
                ("buckets_led", snapshot.buckets.to_string()),
            ],
            other => unreachable!("INFO_SECTIONS has no {other}"),
        };
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        write!(out, "# {title}\r\n").expect("writing to a String cannot fail");
        for (name, value) in fields {
            write!(out, "{name}:{value}\r\n").expect("writing to a String cannot fail");
        }
    }
    Frame::bulk(out)
}

#[cfg(test)]
mod tests;
