//! The subscriber: `ESUB` on one stream from version 0, receiving history and then live events,
//! and subscribing again from the next version whenever its connection is lost.

use std::net::SocketAddr;
use std::time::Duration;

use net::Frame;

use crate::client::{Client, field, int, text};
use crate::transcript::Transcript;
use crate::workload::{self, SUBSCRIBED};

/// How long the subscriber waits for a push before assuming its connection is dead. madsim's
/// TCP delays, never drops, what a clogged link carries, so only silence tells.
const IDLE_TIMEOUT: Duration = Duration::from_millis(1_000);

pub struct SubscriberReport {
    /// Versions received, each exactly once and in order.
    pub received: u64,
    pub reconnects: u64,
}

/// Reads until every intended version of [`SUBSCRIBED`] arrived, checking each arrives once,
/// in order, with the intended id and payload.
pub async fn run(seed: u64, server: SocketAddr, log: Transcript) -> SubscriberReport {
    let intended = workload::stream_events(seed, SUBSCRIBED);
    let mut client = Client::new(server, "subscriber", log);
    let mut next = 0u64;
    while next < intended.len() as u64 {
        client.ensure_connected().await;
        let from = next.to_string();
        let esub = crate::client::request(&["ESUB", SUBSCRIBED, "FROM", &from]);
        if client.send(&esub).await.is_err() {
            client.disconnect("ESUB not sent");
            continue;
        }
        while next < intended.len() as u64 {
            let frame = match client.read(IDLE_TIMEOUT).await {
                Ok(frame) => frame,
                Err(err) => {
                    client.disconnect(&format!("{:?} waiting for v{next}", err.kind()));
                    break;
                }
            };
            if let Some(event) = message_event(&frame) {
                let want = &intended[next as usize];
                assert_eq!(
                    int(field(event, "stream_version")),
                    next,
                    "skipped or repeated"
                );
                assert_eq!(text(field(event, "event_id")), want.event_id.to_string());
                assert_eq!(text(field(event, "payload")), want.payload);
                next += 1;
            }
            client.note(format!("{frame:?}"));
        }
    }
    SubscriberReport {
        received: next,
        reconnects: client.reconnects,
    }
}

/// The event of a `["message", id, cursor, event]` push; `None` for the other frames an
/// `ESUB` brings: its reply (the subscription id) and the `subscribe` push.
fn message_event(frame: &Frame) -> Option<&Frame> {
    match frame {
        Frame::Push(items) if items.first().and_then(Frame::as_str) == Some("message") => {
            items.get(3)
        }
        Frame::Push(_) | Frame::SimpleString(_) => None,
        other => panic!("ESUB: unexpected {other:?}"),
    }
}
