//! # net: the wire between clients and the server
//!
//! SierraDB speaks RESP3, the protocol of Redis 6 and later, so any Redis client library can
//! talk to it. This crate holds the protocol as a pure codec and the listener seam that lets
//! the server accept connections from real sockets or from the simulator.
//!
//! It is *not* the command layer: it knows frames (strings, integers, arrays, maps), not
//! `EAPPEND` or stream versions. Parsing a frame into a command and mapping errors to
//! replies belong to `db`.
//!
//! | module | what it holds |
//! |---|---|
//! | [`resp3`] | [`Frame`], [`decode`] with its [`Limits`] and [`DecodeError`], [`encode`] and [`Writer`] for a [`Protocol`]; pure, no I/O |
//! | [`listener`] | the [`Listener`] trait the server is generic over, and [`TokioListener`] over TCP |
//!
//! # Invariants
//!
//! - [`decode`] never consumes a partial frame: until a whole frame is buffered it returns
//!   `Ok(None)` and leaves the buffer untouched, so a caller simply reads more and retries.
//!   Pipelined frames come out one per call, in order.
//! - Limits are checked before allocation: a header that announces more than [`Limits`]
//!   allow (a 4 GiB blob, a million-element array, nesting beyond `max_depth`) fails when
//!   the header is read, and nothing is preallocated from a count the buffer does not back.
//!   Nesting is checked without recursion before a frame is built, so hostile input cannot
//!   overflow the stack.
//! - After a [`DecodeError`] the stream cannot be resynchronised: reply
//!   `-ERR Protocol error: {error}` and close the connection.
//! - [`encode`] always writes a well-formed stream, whatever the frame holds.

pub mod listener;
pub mod resp3;

pub use listener::{Listener, TokioListener};
pub use resp3::{
    DecodeError, FlatDecoder, FlatFrame, Frame, FrameKind, FrameRef, Limits, Line, Protocol,
    Writer, decode, decode_flat, encode,
};
