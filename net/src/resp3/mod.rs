//! RESP3, the Redis serialization protocol, as a pure codec: [`decode`] turns bytes into
//! [`Frame`]s and [`encode`] turns frames into bytes. No sockets, no async, no clock, so it
//! runs the same under tokio, in the simulator and in a proptest. [`decode_flat`] answers as
//! [`decode`] does but keeps the frame flat ([`FlatFrame`]), to be read in place through
//! [`FrameRef`] rather than built into a tree: what a client reading large replies wants.
//!
//! # The format
//!
//! Every frame starts with a type byte. Simple types are one line ending in CRLF; blob types
//! carry a decimal byte length, CRLF, that many bytes, CRLF; aggregates carry a decimal
//! element count, CRLF, then that many frames (maps and attributes: that many key/value
//! pairs, so twice as many frames).
//!
//! | byte | type | example | [`Frame`] |
//! |---|---|---|---|
//! | `+` | simple string | `+OK\r\n` | [`SimpleString`](Frame::SimpleString) |
//! | `-` | simple error | `-NOTFOUND subscription not found\r\n` | [`SimpleError`](Frame::SimpleError) |
//! | `:` | integer | `:-42\r\n` | [`Integer`](Frame::Integer) |
//! | `$` | blob string | `$5\r\nhello\r\n` | [`BlobString`](Frame::BlobString) |
//! | `!` | blob error | `!10\r\nERR broken\r\n` | [`BlobError`](Frame::BlobError) |
//! | `=` | verbatim string | `=8\r\ntxt:text\r\n` | [`VerbatimString`](Frame::VerbatimString) |
//! | `_` | null | `_\r\n` | [`Null`](Frame::Null) |
//! | `,` | double | `,1.5\r\n`, `,inf\r\n`, `,-inf\r\n`, `,nan\r\n` | [`Double`](Frame::Double) |
//! | `#` | boolean | `#t\r\n`, `#f\r\n` | [`Boolean`](Frame::Boolean) |
//! | `(` | big number | `(123456789012345678901234567890\r\n` | [`BigNumber`](Frame::BigNumber) |
//! | `*` | array | `*2\r\n:1\r\n:2\r\n` | [`Array`](Frame::Array) |
//! | `%` | map | `%1\r\n+key\r\n:1\r\n` | [`Map`](Frame::Map) |
//! | `~` | set | `~1\r\n+a\r\n` | [`Set`](Frame::Set) |
//! | `\|` | attribute | `\|1\r\n+ttl\r\n:5\r\n+value\r\n` | [`Attribute`](Frame::Attribute), attached to the frame after it |
//! | `>` | push | `>2\r\n+message\r\n:1\r\n` | [`Push`](Frame::Push) |
//!
//! The decoder also accepts what a RESP2 peer sends:
//!
//! - `$-1\r\n` and `*-1\r\n`, RESP2's nulls, decode to [`Frame::Null`];
//! - a line whose first byte is not a type byte is an inline command (`PING\r\n`, typed in
//!   telnet) and decodes to an array of blob strings, split into arguments as Redis splits
//!   them (quotes and escapes included; `inline.rs` states the rules).
//!
//! RESP3's streamed strings and aggregates (`$?`, `*?`) are rejected with
//! [`DecodeError::Streamed`]: Redis never accepts them in requests, so no client sends them.
//!
//! # Contract
//!
//! - [`decode`] never consumes part of a frame: it returns `Ok(None)` and leaves the buffer
//!   alone until the whole frame is buffered, then consumes exactly that frame.
//! - [`Limits`] are checked before anything is allocated or awaited: a header announcing more
//!   than a limit allows fails as soon as the header is read, and no allocation is sized by a
//!   count the buffer does not yet back.
//! - A [`DecodeError`] leaves the stream unusable; the caller replies with the error and
//!   closes the connection.
//! - [`encode`] accepts every [`Frame`] and always writes a well-formed stream; what it does
//!   for RESP2 peers is documented on it.

mod decode;
mod encode;
mod flat;
mod frame;
mod inline;

pub use decode::{DecodeError, Limits, MAX_DEPTH_CEILING, decode};
pub use encode::{Line, Protocol, Writer, encode};
pub use flat::{Children, FlatDecoder, FlatFrame, FrameRef, Pairs, decode_flat};
pub use frame::{Frame, FrameKind};
