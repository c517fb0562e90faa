//! [`Pipe`]: one direction of a simulated connection, a bounded queue of bytes in flight.
//!
//! Pure bookkeeping, no clock and no randomness: the caller stamps each write with the virtual
//! time it may be read from and says how many bytes a read may take, so every decision that
//! depends on the seed is made (and counted) in one place, [`super::stream`].

use std::collections::VecDeque;
use std::task::Waker;

use bytes::{Buf, Bytes};
use db::env::Instant;
use tokio::io::ReadBuf;

/// Bytes written into one direction and not yet read, plus the wakers of the two tasks that
/// wait on it.
///
/// Queued bytes count against `capacity_bytes` from the moment they are written until they
/// are read, in flight or not, the way a TCP window covers unacknowledged bytes: a writer
/// that outruns its reader is held back ([`Pipe::space`] is 0) rather than buffered without
/// bound.
pub(super) struct Pipe {
    /// Writes in order, each readable from its own delivery time.
    segments: VecDeque<Segment>,
    queued_bytes: usize,
    capacity_bytes: usize,
    /// The writer shut its side down: once the queue drains, reads see end of file.
    closed: bool,
    /// The latest delivery time stamped so far; a later write never arrives before it, since
    /// a byte stream keeps its order whatever each packet's delay.
    last_delivery: Instant,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

struct Segment {
    deliver_at: Instant,
    bytes: Bytes,
}

impl Pipe {
    pub(super) fn new(capacity_bytes: usize) -> Pipe {
        assert!(capacity_bytes > 0, "a pipe must hold at least one byte");
        Pipe {
            segments: VecDeque::new(),
            queued_bytes: 0,
            capacity_bytes,
            closed: false,
            last_delivery: Instant(0),
            reader: None,
            writer: None,
        }
    }

    /// Bytes a write may add now.
    pub(super) fn space(&self) -> usize {
        self.capacity_bytes - self.queued_bytes
    }

    pub(super) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Queues `bytes`, readable from `deliver_at` or from the previous write's delivery time,
    /// whichever is later. The caller has checked that they fit in [`Pipe::space`].
    pub(super) fn write(&mut self, bytes: &[u8], deliver_at: Instant) {
        assert!(
            bytes.len() <= self.space(),
            "a write never exceeds the pipe's space"
        );
        assert!(!self.closed, "nothing is written after shutdown");
        self.last_delivery = self.last_delivery.max(deliver_at);
        self.queued_bytes += bytes.len();
        self.segments.push_back(Segment {
            deliver_at: self.last_delivery,
            bytes: Bytes::copy_from_slice(bytes),
        });
    }

    /// When the first queued byte may be read; `None` if nothing is queued.
    pub(super) fn next_delivery(&self) -> Option<Instant> {
        self.segments.front().map(|segment| segment.deliver_at)
    }

    /// Moves up to `limit` bytes that have arrived by `now` into `out`, across as many writes
    /// as they span, and returns how many.
    pub(super) fn read(&mut self, now: Instant, limit: usize, out: &mut ReadBuf<'_>) -> usize {
        let mut read = 0;
        while read < limit && out.remaining() > 0 {
            let Some(front) = self.segments.front_mut() else {
                break;
            };
            if front.deliver_at > now {
                break;
            }
            let take = front.bytes.len().min(limit - read).min(out.remaining());
            out.put_slice(&front.bytes[..take]);
            front.bytes.advance(take);
            if front.bytes.is_empty() {
                self.segments.pop_front();
            }
            read += take;
        }
        self.queued_bytes -= read;
        read
    }

    /// Whether bytes that have arrived by `now` are still queued.
    pub(super) fn has_arrived(&self, now: Instant) -> bool {
        self.next_delivery().is_some_and(|at| at <= now)
    }

    /// The writer's end of file: reads drain the queue, then return 0.
    pub(super) fn close(&mut self) {
        self.closed = true;
    }

    /// A reset drops everything in flight.
    pub(super) fn discard(&mut self) {
        self.segments.clear();
        self.queued_bytes = 0;
    }

    /// Remembers the task to wake when bytes arrive or the pipe closes.
    pub(super) fn park_reader(&mut self, waker: &Waker) {
        park(&mut self.reader, waker);
    }

    /// Remembers the task to wake when space frees up.
    pub(super) fn park_writer(&mut self, waker: &Waker) {
        park(&mut self.writer, waker);
    }

    pub(super) fn take_reader(&mut self) -> Option<Waker> {
        self.reader.take()
    }

    pub(super) fn take_writer(&mut self) -> Option<Waker> {
        self.writer.take()
    }
}

/// Stores `waker` in `slot` unless an equivalent one is there: a task polled again with the
/// same waker need not clone it.
fn park(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(parked) => parked.clone_from(waker),
        None => *slot = Some(waker.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(pipe: &mut Pipe, now: Instant, limit: usize) -> Vec<u8> {
        let mut storage = [0u8; 64];
        let mut out = ReadBuf::new(&mut storage);
        pipe.read(now, limit, &mut out);
        out.filled().to_vec()
    }

    #[test]
    fn reads_span_writes_and_stop_at_bytes_still_in_flight() {
        let mut pipe = Pipe::new(10);
        pipe.write(b"abc", Instant(0));
        pipe.write(b"de", Instant(5));
        assert_eq!(pipe.space(), 5);
        assert_eq!(read_all(&mut pipe, Instant(1), usize::MAX), b"abc");
        assert_eq!(pipe.next_delivery(), Some(Instant(5)));
        assert_eq!(read_all(&mut pipe, Instant(5), 1), b"d");
        assert_eq!(read_all(&mut pipe, Instant(5), usize::MAX), b"e");
        assert!(pipe.is_empty());
        assert_eq!(pipe.space(), 10);
    }

    #[test]
    fn a_later_write_never_overtakes_an_earlier_one() {
        let mut pipe = Pipe::new(10);
        pipe.write(b"slow", Instant(100));
        pipe.write(b"fast", Instant(1));
        assert!(!pipe.has_arrived(Instant(99)));
        assert_eq!(read_all(&mut pipe, Instant(100), usize::MAX), b"slowfast");
    }
}
